//! Images and stickers: dimension limits before decoding, EXIF orientation, metadata removal,
//! JPEG thumbnail and blurhash.
//!
//! Order of work, cheapest first, so hostile input is refused before it costs anything:
//!
//! 1. **Structure walk** (no pixel decoding): JPEG markers, PNG chunks, WebP RIFF chunks or GIF
//!    blocks are walked once, bounds-checked. The declared dimensions are checked against
//!    [`Limits`] the moment the header that declares them is read (a PNG claiming
//!    100000×100000 is refused after 33 bytes). The same walk collects the EXIF orientation and
//!    writes the cleaned copy: metadata segments are dropped **losslessly** (compressed image
//!    data is copied byte for byte, never re-encoded: re-encoding would cost quality and time),
//!    and everything after the format's end marker (EOI, IEND, RIFF size, GIF trailer) — an
//!    appended ZIP, say — is dropped as "trailing-data".
//! 2. **Decode**, with `image::Limits` on size and allocation. JPEGs are decoded at 1/2–1/8
//!    scale in the DCT ("shrink-on-load", as libvips' vipsthumbnail does) when the thumbnail is
//!    small, which skips most of the inverse DCT, upsampling and colour conversion.
//! 3. **Thumbnail** (JPEG, longest side `Limits::thumb_side`, EXIF orientation applied) and a
//!    4×3 blurhash from the thumbnail's pixels.
//!
//! The pipeline runs in a sandboxed worker (rlimits, seccomp), which is the backstop; still,
//! nothing here may panic on any input, and decoder panics are caught and reported as
//! [`MediaError::Undecodable`].

use std::io::{Cursor, Read};
use std::os::unix::fs::FileExt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::imageops::{self, FilterType};
use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};

use super::{Analysis, FileSlice, Limits, MediaError, Sniffed};
use crate::media::MediaKind;

/// Most scans a JPEG may have. Every progressive scan walks every block of the image again, so
/// a small file with thousands of near-empty scans is a CPU bomb (libjpeg-turbo's advisory on
/// such files suggests a limit of 500, as its `tjbench -limitscans` uses). Real encoders write
/// about 10.
pub const MAX_JPEG_SCANS: usize = 500;

/// JPEG quality of the thumbnail: small and good enough for a preview.
pub const THUMB_QUALITY: u8 = 70;

/// Side of a WhatsApp sticker. Other sizes are accepted and reported as they are.
pub const STICKER_SIDE: u32 = 512;

/// Analyze the image `input`; when metadata was removed the cleaned file is written to the
/// (empty) `output`.
pub fn analyze(
    mut input: FileSlice,
    output: std::fs::File,
    sniffed: &Sniffed,
    sticker: bool,
    limits: &Limits,
) -> Result<Analysis, MediaError> {
    let mut data = Vec::new();
    input
        .read_to_end(&mut data)
        .map_err(|e| MediaError::Undecodable(format!("cannot read the image: {}", e.kind())))?;
    let (analysis, cleaned) = analyze_bytes(&data, sniffed, sticker, limits)?;
    if let Some(cleaned) = cleaned {
        // MediaError has no I/O variant; a write failure in the worker is reported like a
        // failed decode (the media is refused, nothing is stored).
        output.write_all_at(&cleaned, 0).map_err(|e| {
            MediaError::Undecodable(format!("cannot write the cleaned image: {}", e.kind()))
        })?;
    }
    Ok(analysis)
}

/// [`analyze`] on bytes: the analysis and, when metadata was removed, the cleaned file.
pub fn analyze_bytes(
    data: &[u8],
    sniffed: &Sniffed,
    sticker: bool,
    limits: &Limits,
) -> Result<(Analysis, Option<Vec<u8>>), MediaError> {
    let format = match sniffed.name {
        "webp" | "webp-animated" => ImageFormat::WebP,
        "jpeg" if !sticker => ImageFormat::Jpeg,
        "png" if !sticker => ImageFormat::Png,
        "gif" if !sticker => ImageFormat::Gif,
        other => {
            let kind = if sticker {
                MediaKind::Sticker
            } else {
                MediaKind::Image
            };
            return Err(MediaError::NotAllowed {
                kind: kind.as_str().to_string(),
                sniffed: other.to_string(),
            });
        }
    };
    let scan = match format {
        ImageFormat::Jpeg => scan_jpeg(data, limits)?,
        ImageFormat::Png => scan_png(data, limits)?,
        ImageFormat::Gif => scan_gif(data, limits)?,
        _ => scan_webp(data, limits, sticker)?,
    };
    let (width, height) = display_dimensions(scan.width, scan.height, scan.orientation);
    let decoded = decode(data, &scan, limits)?;
    let (thumbnail, blurhash) = thumbnail(decoded, scan.orientation, limits.thumb_side)?;
    let analysis = Analysis {
        sniffed: sniffed.name.to_string(),
        mime: sniffed.mime.to_string(),
        width: Some(width),
        height: Some(height),
        thumbnail: Some(thumbnail),
        blurhash: Some(blurhash),
        animated: Some(scan.animated),
        removed: scan.removed.0,
        ..Analysis::default()
    };
    Ok((analysis, scan.cleaned))
}

/// Fuzz target body: the whole analysis (sniffing, image and sticker paths, decoders and
/// all) on arbitrary bytes, in memory. Results are ignored; only panics, hangs and runaway
/// allocations count. Decoder panics are caught here as in production ([`walk_fuzz_entry`]
/// fuzzes our own walkers with nothing caught).
pub fn fuzz_entry(data: &[u8]) {
    let sniffed = super::sniff::sniff(&data[..data.len().min(4096)]);
    let limits = Limits::default();
    let _ = analyze_bytes(data, &sniffed, false, &limits);
    let _ = analyze_bytes(data, &sniffed, true, &limits);
}

/// Fuzz target body for our own structure walkers (JPEG markers, PNG chunks, WebP RIFF, GIF
/// blocks, EXIF) and the metadata stripping they do, with nothing caught: a panic here is a
/// bug in our code. No decoder runs.
pub fn walk_fuzz_entry(data: &[u8]) {
    let limits = Limits::default();
    let _ = scan_jpeg(data, &limits);
    let _ = scan_png(data, &limits);
    let _ = scan_gif(data, &limits);
    let _ = scan_webp(data, &limits, false);
    let _ = scan_webp(data, &limits, true);
    let _ = exif_facts(data);
}

/// What the structure walk learned, and the cleaned file if anything was removed.
struct Scan {
    format: ImageFormat,
    /// As stored (before EXIF orientation).
    width: u32,
    height: u32,
    /// EXIF orientation value, 1–8 (1 when absent or invalid).
    orientation: u8,
    animated: bool,
    removed: Removed,
    cleaned: Option<Vec<u8>>,
}

/// Labels of removed metadata, in order of discovery, without repeats.
#[derive(Default)]
struct Removed(Vec<String>);

impl Removed {
    fn add(&mut self, label: &str) {
        if !self.0.iter().any(|l| l == label) {
            self.0.push(label.to_string());
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn undecodable(msg: impl Into<String>) -> MediaError {
    MediaError::Undecodable(msg.into())
}

fn check_dimensions(width: u64, height: u64, limits: &Limits) -> Result<(), MediaError> {
    let max_side = u64::from(limits.max_dimension);
    if width > max_side || height > max_side || width.saturating_mul(height) > limits.max_pixels {
        return Err(MediaError::TooManyPixels { width, height });
    }
    Ok(())
}

/// Width and height as displayed: EXIF orientations 5–8 turn the image a quarter.
fn display_dimensions(width: u32, height: u32, orientation: u8) -> (u32, u32) {
    if (5..=8).contains(&orientation) {
        (height, width)
    } else {
        (width, height)
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn le16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn le24(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(3)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], 0]))
}

fn le32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

// ---------------------------------------------------------------------------------------------
// EXIF (a TIFF structure): only IFD0 is read, for the orientation, the GPS pointer and the
// WhatsApp sticker-pack tag. Everything else in it is dropped unread.

/// What IFD0 of an EXIF block says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ExifFacts {
    /// 1–8; 1 when absent or out of range.
    orientation: u8,
    /// IFD0 points to a GPS IFD (tag 0x8825).
    gps: bool,
    /// IFD0 holds only WhatsApp's sticker-pack JSON (tag 0x5741): pack id, name, publisher,
    /// emojis. It is what lets the recipient open the sticker's pack, and holds nothing about
    /// the sender's device or whereabouts.
    sticker_pack_only: bool,
}

const TAG_ORIENTATION: u16 = 0x0112;
const TAG_GPS_IFD: u16 = 0x8825;
const TAG_WHATSAPP_STICKER: u16 = 0x5741;

fn exif_facts(tiff: &[u8]) -> ExifFacts {
    let mut facts = ExifFacts {
        orientation: 1,
        gps: false,
        sticker_pack_only: false,
    };
    let big = match tiff.get(..4) {
        Some(b"MM\0\x2a") => true,
        Some(b"II\x2a\0") => false,
        _ => return facts,
    };
    let u16_at = |at: usize| {
        let b = tiff.get(at..at.checked_add(2)?)?;
        Some(if big {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    };
    let u32_at = |at: usize| {
        let b = tiff.get(at..at.checked_add(4)?)?;
        let b = [b[0], b[1], b[2], b[3]];
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let Some(ifd) = u32_at(4).map(|o| o as usize) else {
        return facts;
    };
    let Some(count) = u16_at(ifd) else {
        return facts;
    };
    let mut tags = 0usize;
    let mut only_sticker = true;
    for i in 0..usize::from(count) {
        let entry = ifd.saturating_add(2 + 12 * i);
        let (Some(tag), Some(kind), Some(n)) =
            (u16_at(entry), u16_at(entry + 2), u32_at(entry + 4))
        else {
            break; // the IFD runs past the block: stop at what is there
        };
        tags += 1;
        only_sticker &= tag == TAG_WHATSAPP_STICKER;
        match tag {
            // SHORT, one value, stored in the first two bytes of the value field.
            TAG_ORIENTATION if kind == 3 && n == 1 => {
                if let Some(v) = u16_at(entry + 8).filter(|v| (1..=8).contains(v)) {
                    facts.orientation = v as u8;
                }
            }
            TAG_GPS_IFD => facts.gps = true,
            _ => {}
        }
    }
    facts.sticker_pack_only = tags > 0 && only_sticker;
    facts
}

/// A TIFF block holding only IFD0 with one entry, the orientation. Written in place of a
/// removed EXIF block whose orientation was not 1, so viewers still turn the image upright.
fn minimal_exif(orientation: u8) -> Vec<u8> {
    let mut v = b"MM\0\x2a\0\0\0\x08".to_vec(); // big-endian TIFF, IFD0 at offset 8
    v.extend_from_slice(&[0, 1]); // one entry
    v.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0]);
    v.extend_from_slice(&[0, 0, 0, 0]); // no next IFD (no EXIF thumbnail)
    v
}

// ---------------------------------------------------------------------------------------------
// JPEG: markers walked from SOI to EOI. Entropy-coded data is copied verbatim, so the cleaned
// file decodes to exactly the same pixels.

const APP_LABELS: [&str; 16] = [
    "app0", "app1", "app2", "app3", "app4", "app5", "app6", "app7", "app8", "app9", "app10",
    "app11", "app12", "app13", "app14", "app15",
];

/// What to do with an APPn or COM segment.
enum Segment {
    Keep,
    Drop(&'static str),
    /// Write these bytes (a whole segment, marker included) instead, and report the label.
    Replace(Vec<u8>, &'static str),
}

/// Keep only what changes how the pixels look: the JFIF header (without its thumbnail), ICC
/// colour profiles and the Adobe segment (it says whether the data is YCbCr, RGB or CMYK).
/// Everything else can carry personal data (EXIF camera, time and GPS; XMP; IPTC captions and
/// names; comments; maker segments; MPF pointers to further images; embedded thumbnails that
/// may show the uncropped photo) and none of it is needed to display the image.
fn classify_segment(marker: u8, payload: &[u8]) -> Segment {
    match marker {
        0xE0 if payload.starts_with(b"JFIF\0") => {
            if payload.len() < 14 {
                return Segment::Drop("app0");
            }
            if payload.len() == 14 && payload[12] == 0 && payload[13] == 0 {
                return Segment::Keep;
            }
            // Keep version, units and density; drop the thumbnail (and any bytes after it).
            let label = if payload[12] != 0 && payload[13] != 0 {
                "thumbnail"
            } else {
                "app0"
            };
            let mut seg = vec![0xFF, 0xE0, 0, 16];
            seg.extend_from_slice(&payload[..12]);
            seg.extend_from_slice(&[0, 0]);
            Segment::Replace(seg, label)
        }
        0xE0 if payload.starts_with(b"JFXX\0") => Segment::Drop("thumbnail"),
        0xE1 if payload.starts_with(b"Exif\0") => Segment::Drop("exif"),
        0xE1 if payload.starts_with(b"http://ns.adobe.com/") => Segment::Drop("xmp"),
        0xE2 if payload.starts_with(b"ICC_PROFILE\0") => Segment::Keep,
        0xE2 if payload.starts_with(b"MPF\0") => Segment::Drop("mpf"),
        0xED if payload.starts_with(b"Photoshop 3.0\0") => Segment::Drop("iptc"),
        0xEE if payload.starts_with(b"Adobe") => Segment::Keep,
        0xFE => Segment::Drop("comment"),
        m => Segment::Drop(APP_LABELS[usize::from(m & 0x0F)]),
    }
}

fn scan_jpeg(data: &[u8], limits: &Limits) -> Result<Scan, MediaError> {
    let truncated = || undecodable("truncated JPEG (no EOI marker)");
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(undecodable("not a JPEG"));
    }
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut removed = Removed::default();
    let mut frame: Option<(u32, u32)> = None;
    let mut exif: Option<ExifFacts> = None;
    let mut gps = false;
    // Where a minimal EXIF segment would go: after SOI, or after a JFIF APP0 that comes first
    // in the cleaned file (JFIF wants to be first).
    let mut exif_at = 2usize;
    let mut scans = 0usize;
    let mut pos = 2usize;
    loop {
        match data.get(pos) {
            Some(0xFF) => {}
            Some(_) => return Err(undecodable("JPEG: bytes between segments")),
            None => return Err(truncated()),
        }
        // Any number of 0xFF fill bytes may precede a marker.
        while data.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = data.get(pos) else {
            return Err(truncated());
        };
        pos += 1;
        match marker {
            0xD9 => {
                out.extend_from_slice(&[0xFF, 0xD9]);
                if pos < data.len() {
                    removed.add("trailing-data");
                }
                break;
            }
            0x00 | 0xD8 => return Err(undecodable("JPEG: unexpected marker")),
            // Markers without a length (TEM, stray restart markers).
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&[0xFF, marker]);
                continue;
            }
            _ => {}
        }
        let len = usize::from(be16(data, pos).ok_or_else(truncated)?);
        if len < 2 {
            return Err(undecodable("JPEG: bad segment length"));
        }
        let end = pos + len;
        let Some(payload) = data.get(pos + 2..end) else {
            return Err(truncated());
        };
        let segment = &data[pos - 2..end];
        pos = end;
        match marker {
            0xE0..=0xEF | 0xFE => {
                if marker == 0xE1 && payload.starts_with(b"Exif\0") {
                    let facts = exif_facts(payload.get(6..).unwrap_or_default());
                    gps |= facts.gps;
                    exif.get_or_insert(facts);
                }
                let first_kept = out.len() == 2;
                match classify_segment(marker, payload) {
                    Segment::Keep => out.extend_from_slice(segment),
                    Segment::Drop(label) => removed.add(label),
                    Segment::Replace(bytes, label) => {
                        out.extend_from_slice(&bytes);
                        removed.add(label);
                    }
                }
                if first_kept && marker == 0xE0 && out.len() > 2 {
                    exif_at = out.len();
                }
            }
            // Start of frame: baseline, extended, progressive, lossless; Huffman or arithmetic.
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                if frame.is_some() {
                    return Err(undecodable("JPEG: more than one frame"));
                }
                let (Some(h), Some(w)) = (be16(payload, 1), be16(payload, 3)) else {
                    return Err(undecodable("JPEG: short frame header"));
                };
                if w == 0 || h == 0 {
                    // Height 0 means "defined later by DNL", which no decoder here supports.
                    return Err(undecodable("JPEG: zero or deferred dimensions"));
                }
                check_dimensions(u64::from(w), u64::from(h), limits)?;
                frame = Some((u32::from(w), u32::from(h)));
                out.extend_from_slice(segment);
            }
            0xDA => {
                if frame.is_none() {
                    return Err(undecodable("JPEG: scan before the frame header"));
                }
                scans += 1;
                if scans > MAX_JPEG_SCANS {
                    return Err(undecodable("JPEG: too many scans"));
                }
                out.extend_from_slice(segment);
                // Entropy-coded data runs to the next marker: 0xFF followed by anything but a
                // stuffed zero, a restart marker or another 0xFF (fill).
                let start = pos;
                let mut i = pos;
                loop {
                    let Some(off) = data
                        .get(i..)
                        .and_then(|d| d.iter().position(|&b| b == 0xFF))
                    else {
                        return Err(truncated());
                    };
                    i += off;
                    match data.get(i + 1) {
                        None => return Err(truncated()),
                        Some(0x00 | 0xD0..=0xD7) => i += 2,
                        Some(0xFF) => i += 1,
                        Some(_) => break,
                    }
                }
                out.extend_from_slice(&data[start..i]);
                pos = i;
            }
            _ => out.extend_from_slice(segment),
        }
    }
    let (width, height) = frame.ok_or_else(|| undecodable("JPEG: no frame header"))?;
    if scans == 0 {
        return Err(undecodable("JPEG: no image data"));
    }
    if gps {
        removed.add("gps");
    }
    let orientation = exif.map_or(1, |f| f.orientation);
    if orientation != 1 {
        let tiff = minimal_exif(orientation);
        let mut seg = vec![0xFF, 0xE1];
        seg.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
        seg.extend_from_slice(b"Exif\0\0");
        seg.extend_from_slice(&tiff);
        out.splice(exif_at..exif_at, seg);
    }
    Ok(Scan {
        format: ImageFormat::Jpeg,
        width,
        height,
        orientation,
        animated: false,
        cleaned: (!removed.is_empty()).then_some(out),
        removed,
    })
}

// ---------------------------------------------------------------------------------------------
// PNG: chunks walked from IHDR to IEND; kept chunks are copied with their CRCs.

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// CRC-32 (ISO 3309, as PNG uses it), bitwise: only ever run over a few dozen bytes.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 12);
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(kind);
    v.extend_from_slice(body);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(body);
    v.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    v
}

/// Label for a text chunk, from its keyword.
fn png_text_label(body: &[u8]) -> &'static str {
    let keyword = body.split(|&b| b == 0).next().unwrap_or_default();
    match keyword {
        b"XML:com.adobe.xmp" => "xmp",
        b"Comment" => "comment",
        // ImageMagick and exiftool store whole metadata blocks as hex "raw profiles".
        k if k.starts_with(b"Raw profile type exif") || k.starts_with(b"Raw profile type APP1") => {
            "exif"
        }
        k if k.starts_with(b"Raw profile type iptc") || k.starts_with(b"Raw profile type 8bim") => {
            "iptc"
        }
        k if k.starts_with(b"Raw profile type xmp") => "xmp",
        _ => "text",
    }
}

fn scan_png(data: &[u8], limits: &Limits) -> Result<Scan, MediaError> {
    let truncated = || undecodable("truncated PNG (no IEND chunk)");
    if !data.starts_with(PNG_SIGNATURE) {
        return Err(undecodable("not a PNG"));
    }
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(PNG_SIGNATURE);
    let mut removed = Removed::default();
    let mut dims: Option<(u32, u32)> = None;
    let mut orientation = 1u8;
    let mut animated = false;
    let mut pos = PNG_SIGNATURE.len();
    loop {
        let len = be32(data, pos).ok_or_else(truncated)?;
        if len > 0x7FFF_FFFF {
            return Err(undecodable("PNG: bad chunk length"));
        }
        let Some(kind) = data.get(pos + 4..pos + 8) else {
            return Err(truncated());
        };
        let kind = [kind[0], kind[1], kind[2], kind[3]];
        if !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(undecodable("PNG: bad chunk type"));
        }
        let body_end = pos + 8 + len as usize;
        let end = body_end + 4;
        let (Some(body), Some(chunk)) = (data.get(pos + 8..body_end), data.get(pos..end)) else {
            return Err(truncated());
        };
        pos = end;
        if dims.is_none() {
            if &kind != b"IHDR" || body.len() != 13 {
                return Err(undecodable("PNG: IHDR is not the first chunk"));
            }
            let (w, h) = (be32(body, 0).unwrap_or(0), be32(body, 4).unwrap_or(0));
            if w == 0 || h == 0 || w > 0x7FFF_FFFF || h > 0x7FFF_FFFF {
                return Err(undecodable("PNG: bad dimensions"));
            }
            check_dimensions(u64::from(w), u64::from(h), limits)?;
            dims = Some((w, h));
            out.extend_from_slice(chunk);
            continue;
        }
        match &kind {
            b"eXIf" => {
                let facts = exif_facts(body);
                removed.add("exif");
                if facts.gps {
                    removed.add("gps");
                }
                if facts.orientation != 1 {
                    orientation = facts.orientation;
                    out.extend_from_slice(&png_chunk(b"eXIf", &minimal_exif(facts.orientation)));
                }
            }
            b"tEXt" | b"zTXt" | b"iTXt" => removed.add(png_text_label(body)),
            b"tIME" => removed.add("time"),
            b"IEND" => {
                out.extend_from_slice(chunk);
                if pos < data.len() {
                    removed.add("trailing-data");
                }
                break;
            }
            _ => {
                // APNG: an animation control chunk before the image data.
                animated |= &kind == b"acTL";
                out.extend_from_slice(chunk);
            }
        }
    }
    let (width, height) = dims.ok_or_else(truncated)?;
    Ok(Scan {
        format: ImageFormat::Png,
        width,
        height,
        orientation,
        animated,
        cleaned: (!removed.is_empty()).then_some(out),
        removed,
    })
}

// ---------------------------------------------------------------------------------------------
// WebP: RIFF chunks. EXIF and XMP chunks are dropped and their VP8X flags cleared.

const VP8X_XMP: u8 = 0x04;
const VP8X_EXIF: u8 = 0x08;
const VP8X_ANIMATION: u8 = 0x02;

fn scan_webp(data: &[u8], limits: &Limits, sticker: bool) -> Result<Scan, MediaError> {
    let truncated = || undecodable("truncated WebP");
    if data.len() < 12 || !data.starts_with(b"RIFF") || &data[8..12] != b"WEBP" {
        return Err(undecodable("not a WebP"));
    }
    let riff_end = le32(data, 4)
        .and_then(|n| (n as usize).checked_add(8))
        .ok_or_else(truncated)?;
    if riff_end > data.len() {
        return Err(truncated());
    }
    let mut removed = Removed::default();
    if riff_end < data.len() {
        removed.add("trailing-data");
    }
    // (fourcc, payload) of every chunk.
    let mut chunks: Vec<([u8; 4], &[u8])> = Vec::new();
    let mut pos = 12usize;
    while pos < riff_end {
        let (Some(fourcc), Some(size)) = (data.get(pos..pos + 4), le32(data, pos + 4)) else {
            return Err(truncated());
        };
        let start = pos + 8;
        let end = start.checked_add(size as usize).ok_or_else(truncated)?;
        if end > riff_end {
            return Err(truncated());
        }
        chunks.push((
            [fourcc[0], fourcc[1], fourcc[2], fourcc[3]],
            &data[start..end],
        ));
        // Chunks are padded to even sizes; tolerate a missing pad byte at the very end.
        pos = (end + (size as usize & 1)).min(riff_end);
    }
    let Some((first, payload)) = chunks.first().copied() else {
        return Err(undecodable("WebP: no chunks"));
    };
    let (width, height, flags) = match &first {
        b"VP8 " => {
            // Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and height.
            if payload.get(3..6) != Some(&[0x9D, 0x01, 0x2A]) {
                return Err(undecodable("WebP: bad VP8 header"));
            }
            let w = le16(payload, 6).ok_or_else(truncated)? & 0x3FFF;
            let h = le16(payload, 8).ok_or_else(truncated)? & 0x3FFF;
            (u32::from(w), u32::from(h), 0u8)
        }
        b"VP8L" => {
            if payload.first() != Some(&0x2F) {
                return Err(undecodable("WebP: bad VP8L header"));
            }
            let bits = le32(payload, 1).ok_or_else(truncated)?;
            ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 0u8)
        }
        b"VP8X" => {
            let (Some(&flags), Some(w), Some(h)) =
                (payload.first(), le24(payload, 4), le24(payload, 7))
            else {
                return Err(truncated());
            };
            (w + 1, h + 1, flags)
        }
        _ => return Err(undecodable("WebP: unknown first chunk")),
    };
    if width == 0 || height == 0 {
        return Err(undecodable("WebP: zero dimensions"));
    }
    check_dimensions(u64::from(width), u64::from(height), limits)?;
    let mut animated = flags & VP8X_ANIMATION != 0;
    let mut orientation = 1u8;
    let mut kept: Vec<([u8; 4], Vec<u8>)> = Vec::with_capacity(chunks.len());
    let mut has_exif = false;
    for (fourcc, payload) in chunks {
        match &fourcc {
            b"EXIF" => {
                // Some writers wrongly keep JPEG's "Exif\0\0" prefix.
                let tiff = payload.strip_prefix(b"Exif\0\0").unwrap_or(payload);
                let facts = exif_facts(tiff);
                orientation = facts.orientation;
                if sticker && facts.sticker_pack_only {
                    has_exif = true;
                    kept.push((fourcc, payload.to_vec()));
                    continue;
                }
                removed.add("exif");
                if facts.gps {
                    removed.add("gps");
                }
                if facts.orientation != 1 {
                    has_exif = true;
                    kept.push((fourcc, minimal_exif(facts.orientation)));
                }
            }
            b"XMP " => removed.add("xmp"),
            _ => {
                if &fourcc == b"ANIM" {
                    animated = true;
                }
                if &fourcc == b"ANMF" {
                    // Each frame declares its own size; bound it before any decoder sees it.
                    let (Some(w), Some(h)) = (le24(payload, 6), le24(payload, 9)) else {
                        return Err(truncated());
                    };
                    check_dimensions(u64::from(w) + 1, u64::from(h) + 1, limits)?;
                }
                kept.push((fourcc, payload.to_vec()));
            }
        }
    }
    let cleaned = (!removed.is_empty()).then(|| {
        let mut body = b"WEBP".to_vec();
        for (fourcc, mut payload) in kept {
            // XMP chunks are never kept; an EXIF chunk may be (orientation only, or a sticker
            // pack's metadata).
            if &fourcc == b"VP8X"
                && let Some(f) = payload.first_mut()
            {
                *f &= !VP8X_XMP;
                if !has_exif {
                    *f &= !VP8X_EXIF;
                }
            }
            body.extend_from_slice(&fourcc);
            body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            body.extend_from_slice(&payload);
            if payload.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    });
    Ok(Scan {
        format: ImageFormat::WebP,
        width,
        height,
        orientation,
        animated,
        cleaned,
        removed,
    })
}

// ---------------------------------------------------------------------------------------------
// GIF: blocks walked from the logical screen descriptor to the trailer.

fn scan_gif(data: &[u8], limits: &Limits) -> Result<Scan, MediaError> {
    let truncated = || undecodable("truncated GIF (no trailer)");
    if !(data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a")) {
        return Err(undecodable("not a GIF"));
    }
    let (Some(width), Some(height), Some(&packed)) = (le16(data, 6), le16(data, 8), data.get(10))
    else {
        return Err(truncated());
    };
    if width == 0 || height == 0 {
        return Err(undecodable("GIF: zero screen size"));
    }
    check_dimensions(u64::from(width), u64::from(height), limits)?;
    let mut pos = 13usize;
    if packed & 0x80 != 0 {
        pos += 3 << ((packed & 0x07) + 1); // global colour table
    }
    if pos > data.len() {
        return Err(truncated());
    }
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&data[..pos]);
    let mut removed = Removed::default();
    let mut frames = 0usize;
    // Skips a run of data sub-blocks (length byte, bytes; a zero length ends the run).
    let sub_blocks_end = |mut at: usize| -> Option<usize> {
        loop {
            let n = usize::from(*data.get(at)?);
            at += 1 + n;
            if n == 0 {
                return (at <= data.len()).then_some(at);
            }
        }
    };
    loop {
        let Some(&introducer) = data.get(pos) else {
            return Err(truncated());
        };
        match introducer {
            0x3B => {
                out.push(0x3B);
                if pos + 1 < data.len() {
                    removed.add("trailing-data");
                }
                break;
            }
            0x21 => {
                let label = *data.get(pos + 1).ok_or_else(truncated)?;
                let end = sub_blocks_end(pos + 2).ok_or_else(truncated)?;
                let block = &data[pos..end];
                let drop = match label {
                    0xFE => Some("comment"),
                    0xFF => {
                        // Application extension: an 11-byte identifier sub-block first.
                        let id = data.get(pos + 3..pos + 14).unwrap_or_default();
                        match id {
                            // Looping (Netscape / Adobe) and colour profiles change playback
                            // or colours; everything else (XMP, editor data) does not.
                            b"NETSCAPE2.0" | b"ANIMEXTS1.0" | b"ICCRGBG1012" => None,
                            b"XMP DataXMP" => Some("xmp"),
                            _ => Some("application-data"),
                        }
                    }
                    _ => None,
                };
                match drop {
                    Some(label) => removed.add(label),
                    None => out.extend_from_slice(block),
                }
                pos = end;
            }
            0x2C => {
                let desc = data.get(pos..pos + 10).ok_or_else(truncated)?;
                let (w, h) = (le16(desc, 5).unwrap_or(0), le16(desc, 7).unwrap_or(0));
                check_dimensions(u64::from(w), u64::from(h), limits)?;
                let mut at = pos + 10;
                if desc[9] & 0x80 != 0 {
                    at += 3 << ((desc[9] & 0x07) + 1); // local colour table
                }
                at += 1; // LZW minimum code size
                let end = sub_blocks_end(at).ok_or_else(truncated)?;
                out.extend_from_slice(&data[pos..end]);
                frames += 1;
                pos = end;
            }
            _ => return Err(undecodable("GIF: unknown block")),
        }
    }
    if frames == 0 {
        return Err(undecodable("GIF: no image"));
    }
    Ok(Scan {
        format: ImageFormat::Gif,
        width: u32::from(width),
        height: u32::from(height),
        orientation: 1,
        animated: frames > 1,
        cleaned: (!removed.is_empty()).then_some(out),
        removed,
    })
}

// ---------------------------------------------------------------------------------------------
// Decoding and the thumbnail.

/// Size that fits in a `side`×`side` box, aspect kept; never larger than the image.
pub(super) fn fit(width: u32, height: u32, side: u32) -> (u32, u32) {
    let side = side.max(1);
    if width <= side && height <= side {
        return (width, height);
    }
    let (w, h, s) = (u64::from(width), u64::from(height), u64::from(side));
    if w >= h {
        (side, ((h * s + w / 2) / w).max(1) as u32)
    } else {
        (((w * s + h / 2) / h).max(1) as u32, side)
    }
}

fn decode(data: &[u8], scan: &Scan, limits: &Limits) -> Result<DynamicImage, MediaError> {
    if scan.format == ImageFormat::Jpeg
        && let Some(image) = decode_jpeg_scaled(data, scan, limits)
    {
        return Ok(image);
    }
    decode_full(data, scan.format, limits)
}

/// JPEG "shrink-on-load": jpeg-decoder's scaled IDCT yields 1/2, 1/4 or 1/8 of the size for
/// a fraction of the work. As vipsthumbnail does, leave at least a factor of two for the real
/// resampling filter, so the result is not the blockier look of a pure DCT shrink.
///
/// `None` when jpeg-decoder cannot do it (CMYK, 12-bit, an error or a panic); the caller then
/// decodes at full size with the image crate, which also reports the error if there is one.
fn decode_jpeg_scaled(data: &[u8], scan: &Scan, limits: &Limits) -> Option<DynamicImage> {
    let (tw, th) = fit(scan.width, scan.height, limits.thumb_side);
    let request = |v: u32| u16::try_from(v.saturating_mul(2)).unwrap_or(u16::MAX);
    let run = || {
        let mut decoder = jpeg_decoder::Decoder::new(data);
        decoder
            .set_max_decoding_buffer_size(usize::try_from(limits.max_alloc).unwrap_or(usize::MAX));
        let (w, h) = decoder.scale(request(tw), request(th)).ok()?;
        let pixels = decoder.decode().ok()?;
        let info = decoder.info()?;
        let (w, h) = (u32::from(w), u32::from(h));
        match info.pixel_format {
            jpeg_decoder::PixelFormat::RGB24 => {
                RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
            }
            jpeg_decoder::PixelFormat::L8 => {
                GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
            }
            _ => None,
        }
    };
    catch_unwind(AssertUnwindSafe(run)).ok().flatten()
}

fn decode_full(
    data: &[u8],
    format: ImageFormat,
    limits: &Limits,
) -> Result<DynamicImage, MediaError> {
    let mut reader = image::ImageReader::with_format(Cursor::new(data), format);
    let mut bounds = image::Limits::default();
    bounds.max_image_width = Some(limits.max_dimension);
    bounds.max_image_height = Some(limits.max_dimension);
    bounds.max_alloc = Some(limits.max_alloc);
    reader.limits(bounds);
    match catch_unwind(AssertUnwindSafe(|| reader.decode())) {
        Ok(Ok(image)) => Ok(image),
        Ok(Err(image::ImageError::Limits(_))) => {
            Err(undecodable("the image needs more memory than allowed"))
        }
        Ok(Err(e)) => {
            let mut msg = e.to_string();
            if msg.len() > 160 {
                let cut = (0..=160)
                    .rev()
                    .find(|&i| msg.is_char_boundary(i))
                    .unwrap_or(0);
                msg.truncate(cut);
            }
            Err(undecodable(msg))
        }
        Err(_) => Err(undecodable("the decoder failed on this image")),
    }
}

/// Opaque RGB: transparent pixels are shown over white (a JPEG thumbnail has no alpha, and
/// dropping alpha would reveal whatever colour hides under transparent areas, often black).
fn flatten(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut rgb = RgbImage::new(w, h);
    for (dst, src) in rgb.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(src[3]);
        for c in 0..3 {
            dst[c] = ((u32::from(src[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    rgb
}

/// JPEG thumbnail and blurhash of a decoded image (any scale), turned upright (EXIF
/// `orientation`). Also makes the video thumbnails.
pub(super) fn thumbnail(
    image: DynamicImage,
    orientation: u8,
    side: u32,
) -> Result<(Vec<u8>, String), MediaError> {
    let rgb = flatten(image);
    let (w, h) = rgb.dimensions();
    if w == 0 || h == 0 {
        return Err(undecodable("empty image"));
    }
    let (tw, th) = fit(w, h, side);
    let small = if (tw, th) == (w, h) {
        rgb
    } else {
        // Two steps, like libvips' shrink + reduce: an area-averaging shrink to about twice the
        // target (cheap, alias-free), then Lanczos3 for a sharp final size. Lanczos3 alone over
        // a 40× reduction would read hundreds of source pixels per output pixel.
        let src = if w >= tw.saturating_mul(4) && h >= th.saturating_mul(4) {
            imageops::thumbnail(&rgb, tw * 2, th * 2)
        } else {
            rgb
        };
        imageops::resize(&src, tw, th, FilterType::Lanczos3)
    };
    let mut upright = DynamicImage::ImageRgb8(small);
    if let Some(o) = Orientation::from_exif(orientation) {
        upright.apply_orientation(o);
    }
    let upright = upright.into_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, THUMB_QUALITY)
        .encode_image(&upright)
        .map_err(|_| undecodable("cannot encode the thumbnail"))?;
    let (uw, uh) = upright.dimensions();
    let rgba = DynamicImage::ImageRgb8(upright).into_rgba8();
    let hash = blurhash::encode(4, 3, uw, uh, rgba.as_raw())
        .map_err(|_| undecodable("cannot compute the blurhash"))?;
    Ok((jpeg, hash))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use image::codecs::gif::{GifEncoder, Repeat};
    use image::codecs::jpeg::JpegEncoder;
    use image::codecs::png::PngEncoder;
    use image::codecs::webp::WebPEncoder;
    use image::{ExtendedColorType, Frame, ImageDecoder, ImageEncoder, Rgb, Rgba, RgbaImage};

    use super::*;
    use crate::pipeline::sniff;

    fn limits() -> Limits {
        Limits::default()
    }

    /// Left half red, right half blue, with a vertical gradient: orientation is visible.
    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let g = (y * 255 / h.max(1)) as u8 / 4;
            if x < w / 2 {
                Rgb([230, g, 20])
            } else {
                Rgb([20, g, 230])
            }
        })
    }

    fn rgba_pattern(w: u32, h: u32) -> RgbaImage {
        RgbaImage::from_fn(w, h, |x, y| {
            Rgba([
                (x * 7) as u8,
                (y * 5) as u8,
                128,
                if (x + y) % 3 == 0 { 0 } else { 255 },
            ])
        })
    }

    fn jpeg_bytes(img: &RgbImage, quality: u8) -> Vec<u8> {
        let mut v = Vec::new();
        JpegEncoder::new_with_quality(&mut v, quality)
            .encode_image(img)
            .expect("encode jpeg");
        v
    }

    fn png_bytes(img: &RgbaImage) -> Vec<u8> {
        let mut v = Vec::new();
        PngEncoder::new(&mut v)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                ExtendedColorType::Rgba8,
            )
            .expect("encode png");
        v
    }

    fn webp_lossless(img: &RgbaImage) -> Vec<u8> {
        let mut v = Vec::new();
        WebPEncoder::new_lossless(&mut v)
            .encode(
                img.as_raw(),
                img.width(),
                img.height(),
                ExtendedColorType::Rgba8,
            )
            .expect("encode webp");
        v
    }

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, marker];
        v.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// `jpeg` with `segments` inserted right after SOI.
    fn with_segments(jpeg: &[u8], segments: &[Vec<u8>]) -> Vec<u8> {
        let mut v = jpeg[..2].to_vec();
        for s in segments {
            v.extend_from_slice(s);
        }
        v.extend_from_slice(&jpeg[2..]);
        v
    }

    /// Big-endian TIFF: IFD0 with Make "SECRETCAM", optionally Orientation and a GPS IFD
    /// holding a latitude, as cameras and phones write them.
    fn exif_tiff(orientation: Option<u16>, gps: bool) -> Vec<u8> {
        let make = b"SECRETCAM\0";
        let n0 = 1 + u16::from(orientation.is_some()) + u16::from(gps);
        let make_off = 8 + 2 + 12 * u32::from(n0) + 4;
        let gps_off = make_off + make.len() as u32;
        let lat_off = gps_off + 2 + 24 + 4;
        let mut v = b"MM\0\x2a\0\0\0\x08".to_vec();
        let entry = |v: &mut Vec<u8>, tag: u16, kind: u16, n: u32, value: [u8; 4]| {
            v.extend_from_slice(&tag.to_be_bytes());
            v.extend_from_slice(&kind.to_be_bytes());
            v.extend_from_slice(&n.to_be_bytes());
            v.extend_from_slice(&value);
        };
        v.extend_from_slice(&n0.to_be_bytes());
        entry(&mut v, 0x010F, 2, make.len() as u32, make_off.to_be_bytes());
        if let Some(o) = orientation {
            let o = o.to_be_bytes();
            entry(&mut v, 0x0112, 3, 1, [o[0], o[1], 0, 0]);
        }
        if gps {
            entry(&mut v, 0x8825, 4, 1, gps_off.to_be_bytes());
        }
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(make);
        if gps {
            v.extend_from_slice(&2u16.to_be_bytes());
            entry(&mut v, 0x0001, 2, 2, *b"N\0\0\0");
            entry(&mut v, 0x0002, 5, 3, lat_off.to_be_bytes());
            v.extend_from_slice(&[0; 4]);
            for (num, den) in [(52u32, 1u32), (31, 1), (4242, 100)] {
                v.extend_from_slice(&num.to_be_bytes());
                v.extend_from_slice(&den.to_be_bytes());
            }
        }
        v
    }

    fn exif_app1(orientation: Option<u16>, gps: bool) -> Vec<u8> {
        let mut p = b"Exif\0\0".to_vec();
        p.extend_from_slice(&exif_tiff(orientation, gps));
        segment(0xE1, &p)
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    fn run(data: &[u8], sticker: bool) -> Result<(Analysis, Option<Vec<u8>>), MediaError> {
        let sniffed = sniff::sniff(&data[..data.len().min(4096)]);
        analyze_bytes(data, &sniffed, sticker, &limits())
    }

    fn rgba_of(data: &[u8]) -> RgbaImage {
        image::load_from_memory(data).expect("decode").into_rgba8()
    }

    fn thumb_of(a: &Analysis) -> RgbImage {
        let t = a.thumbnail.as_deref().expect("thumbnail");
        assert!(t.starts_with(&[0xFF, 0xD8, 0xFF]), "thumbnail is a JPEG");
        image::load_from_memory_with_format(t, ImageFormat::Jpeg)
            .expect("decode thumbnail")
            .into_rgb8()
    }

    fn png_chunks(png: &[u8]) -> Vec<([u8; 4], Vec<u8>, bool)> {
        let mut out = Vec::new();
        let mut pos = 8;
        while pos + 12 <= png.len() {
            let len = be32(png, pos).unwrap() as usize;
            let kind: [u8; 4] = png[pos + 4..pos + 8].try_into().unwrap();
            let body = png[pos + 8..pos + 8 + len].to_vec();
            let crc = be32(png, pos + 8 + len).unwrap();
            let ok = crc == crc32(&png[pos + 4..pos + 8 + len]);
            out.push((kind, body, ok));
            pos += 12 + len;
        }
        assert_eq!(pos, png.len(), "chunks end where the file ends");
        out
    }

    fn insert_png_chunks(png: &[u8], chunks: &[Vec<u8>]) -> Vec<u8> {
        let ihdr_end = 8 + 25;
        let mut v = png[..ihdr_end].to_vec();
        for c in chunks {
            v.extend_from_slice(c);
        }
        v.extend_from_slice(&png[ihdr_end..]);
        v
    }

    fn riff_webp(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut body = b"WEBP".to_vec();
        for (fourcc, data) in chunks {
            body.extend_from_slice(*fourcc);
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut v = b"RIFF".to_vec();
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(&body);
        v
    }

    /// The VP8L chunk payload of a simple lossless WebP from the encoder.
    fn vp8l_payload(webp: &[u8]) -> Vec<u8> {
        assert_eq!(&webp[12..16], b"VP8L");
        let size = le32(webp, 16).unwrap() as usize;
        webp[20..20 + size].to_vec()
    }

    fn vp8x(flags: u8, w: u32, h: u32) -> Vec<u8> {
        let mut v = vec![flags, 0, 0, 0];
        v.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
        v.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
        v
    }

    fn webp_chunk_names(webp: &[u8]) -> Vec<[u8; 4]> {
        let mut names = Vec::new();
        let mut pos = 12;
        while pos + 8 <= webp.len() {
            names.push(webp[pos..pos + 4].try_into().unwrap());
            let size = le32(webp, pos + 4).unwrap() as usize;
            pos += 8 + size + (size & 1);
        }
        names
    }

    #[test]
    fn jpeg_metadata_is_stripped_losslessly() {
        let original = jpeg_bytes(&pattern(64, 48), 90);
        let xmp = segment(
            0xE1,
            b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>Home, 52.5N</x:xmpmeta>",
        );
        let iptc = segment(0xED, b"Photoshop 3.0\08BIM\x04\x04\0\0\0\0\0\x0bJane Doe");
        let icc = segment(0xE2, b"ICC_PROFILE\0\x01\x01fake-profile-bytes");
        let maker = segment(0xEB, b"JP\0\0maker data");
        let comment = segment(0xFE, b"shot at home");
        let mut dirty = with_segments(
            &original,
            &[exif_app1(None, true), xmp, iptc, icc, maker, comment],
        );
        dirty.extend_from_slice(b"PK\x03\x04\x14\0\0\0appended zip");

        let (a, cleaned) = run(&dirty, false).expect("analysis");
        let cleaned = cleaned.expect("cleaned file");
        assert_eq!(
            a.removed,
            [
                "exif",
                "xmp",
                "iptc",
                "app11",
                "comment",
                "trailing-data",
                "gps"
            ]
        );
        for gone in [
            &b"Exif"[..],
            b"SECRETCAM",
            b"xmpmeta",
            b"Photoshop",
            b"Jane Doe",
            b"maker data",
            b"shot at home",
            b"PK\x03\x04",
            &4242u32.to_be_bytes(),
        ] {
            assert!(
                !contains(&cleaned, gone),
                "{:?} left",
                String::from_utf8_lossy(gone)
            );
        }
        assert!(contains(&cleaned, b"ICC_PROFILE"), "colour profile kept");
        assert!(cleaned.ends_with(&[0xFF, 0xD9]), "ends at EOI");
        // Lossless: exactly the pixels of the untouched encoder output.
        assert_eq!(rgba_of(&cleaned), rgba_of(&original));
        // Cleaning the cleaned file finds nothing more.
        let (again, none) = run(&cleaned, false).expect("analysis");
        assert!(again.removed.is_empty() && none.is_none());

        assert_eq!((a.width, a.height), (Some(64), Some(48)));
        assert_eq!(a.animated, Some(false));
        assert_eq!(
            (a.sniffed.as_str(), a.mime.as_str()),
            ("jpeg", "image/jpeg")
        );
        assert_eq!(thumb_of(&a).dimensions(), (64, 48));
        let hash = a.blurhash.as_deref().expect("blurhash");
        assert_eq!(hash.len(), 28, "4x3 components: 6 + 2 x 11 characters");
        assert!(blurhash::decode(hash, 8, 6, 1.0).is_ok());
    }

    #[test]
    fn jpeg_orientation_survives_as_a_minimal_exif() {
        let original = jpeg_bytes(&pattern(40, 20), 95);
        let dirty = with_segments(&original, &[exif_app1(Some(6), true)]);
        let (a, cleaned) = run(&dirty, false).expect("analysis");
        let cleaned = cleaned.expect("cleaned");
        assert_eq!(a.removed, ["exif", "gps"]);
        assert!(!contains(&cleaned, b"SECRETCAM"));
        // Display size is turned a quarter; the thumbnail is upright.
        assert_eq!((a.width, a.height), (Some(20), Some(40)));
        let thumb = thumb_of(&a);
        assert_eq!(thumb.dimensions(), (20, 40));
        // Rotating 90° clockwise puts the left (red) half on top.
        let top = thumb.get_pixel(10, 3);
        let bottom = thumb.get_pixel(10, 36);
        assert!(top[0] > 150 && top[2] < 100, "top is red: {top:?}");
        assert!(
            bottom[2] > 150 && bottom[0] < 100,
            "bottom is blue: {bottom:?}"
        );
        // Other decoders still read the orientation from the cleaned file.
        let mut dec = image::codecs::jpeg::JpegDecoder::new(Cursor::new(&cleaned)).unwrap();
        assert_eq!(dec.orientation().unwrap(), Orientation::Rotate90);
        // JFIF stays first, the new EXIF right behind it.
        assert_eq!(&cleaned[2..4], &[0xFF, 0xE0]);
        assert_eq!(&cleaned[20..22], &[0xFF, 0xE1]);
        assert_eq!(rgba_of(&cleaned), rgba_of(&original));
    }

    #[test]
    fn exif_parsing_both_byte_orders() {
        assert_eq!(
            exif_facts(&exif_tiff(Some(8), true)),
            ExifFacts {
                orientation: 8,
                gps: true,
                sticker_pack_only: false
            }
        );
        // Little-endian, orientation 3, no GPS.
        let le = b"II\x2a\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x03\0\0\0\0\0\0\0";
        assert_eq!(exif_facts(le).orientation, 3);
        assert!(!exif_facts(le).gps);
        // Out-of-range orientation, entry count past the end, garbage: defaults, no panic.
        assert_eq!(exif_facts(&exif_tiff(Some(9), false)).orientation, 1);
        let mut long = exif_tiff(Some(6), false);
        long[8..10].copy_from_slice(&[0xFF, 0xFF]);
        assert_eq!(exif_facts(&long).orientation, 6);
        let mut far = exif_tiff(Some(6), false);
        far[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(exif_facts(&far).orientation, 1);
        for n in 0..40 {
            let _ = exif_facts(&exif_tiff(Some(6), true)[..n]);
        }
        assert_eq!(
            Orientation::from_exif_chunk(&minimal_exif(5)),
            Some(Orientation::Rotate90FlipH)
        );
    }

    #[test]
    fn jpeg_without_metadata_is_left_alone() {
        let original = jpeg_bytes(&pattern(32, 32), 80);
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("in.jpg"), dir.path().join("out.jpg"));
        std::fs::write(&input, &original).unwrap();
        let run = || {
            let out = std::fs::File::create(&output).unwrap();
            analyze(
                FileSlice::open(&input).unwrap(),
                out,
                &sniff::JPEG,
                false,
                &limits(),
            )
        };
        let a = run().expect("analysis");
        assert!(a.removed.is_empty());
        assert_eq!(
            std::fs::metadata(&output).unwrap().len(),
            0,
            "nothing removed, nothing written"
        );
        // With metadata, the cleaned copy is written to the output file.
        std::fs::write(&input, with_segments(&original, &[segment(0xFE, b"hi")])).unwrap();
        let a = run().expect("analysis");
        assert_eq!(a.removed, ["comment"]);
        assert_eq!(std::fs::read(&output).unwrap(), original);
    }

    #[test]
    fn jpeg_jfif_thumbnail_is_dropped() {
        let original = jpeg_bytes(&pattern(16, 16), 90);
        assert_eq!(&original[2..4], &[0xFF, 0xE0], "the encoder writes JFIF");
        let jfif_len = usize::from(be16(&original, 4).unwrap());
        let mut app0 = original[6..4 + jfif_len].to_vec();
        app0[12] = 2;
        app0[13] = 1;
        app0.extend_from_slice(&[255, 0, 0, 0, 255, 0]); // 2x1 RGB thumbnail
        let mut dirty = original[..2].to_vec();
        dirty.extend_from_slice(&segment(0xE0, &app0));
        dirty.extend_from_slice(&original[4 + jfif_len..]);
        dirty = with_segments(&dirty, &[segment(0xE0, b"JFXX\0\x10thumb")]);
        let (a, cleaned) = run(&dirty, false).expect("analysis");
        let cleaned = cleaned.expect("cleaned");
        assert_eq!(a.removed, ["thumbnail"]);
        assert_eq!(
            cleaned, original,
            "JFIF rewritten to its thumbnail-less form"
        );
    }

    #[test]
    fn jpeg_dct_scaled_decode_leaves_room_for_the_filter() {
        let original = jpeg_bytes(&pattern(1000, 500), 85);
        let scan = scan_jpeg(&original, &limits()).unwrap();
        let small = decode_jpeg_scaled(&original, &scan, &limits()).expect("scaled decode");
        // Target 100x50; twice that is 200x100; 1/4 scale (250x125) is the smallest above.
        assert_eq!((small.width(), small.height()), (250, 125));
        let (a, _) = run(&original, false).unwrap();
        assert_eq!(thumb_of(&a).dimensions(), (100, 50));
        // Grayscale JPEGs take the same path.
        let gray = image::DynamicImage::ImageRgb8(pattern(800, 600)).into_luma8();
        let mut g = Vec::new();
        JpegEncoder::new_with_quality(&mut g, 80)
            .encode_image(&gray)
            .unwrap();
        let scan = scan_jpeg(&g, &limits()).unwrap();
        let small = decode_jpeg_scaled(&g, &scan, &limits()).expect("gray scaled decode");
        assert_eq!((small.width(), small.height()), (200, 150));
        assert_eq!(thumb_of(&run(&g, false).unwrap().0).dimensions(), (100, 75));
    }

    #[test]
    fn png_text_exif_and_time_are_stripped() {
        let img = rgba_pattern(30, 20);
        let original = png_bytes(&img);
        let mut dirty = insert_png_chunks(
            &original,
            &[
                png_chunk(b"tEXt", b"Comment\0taken at home"),
                png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta/>"),
                png_chunk(b"eXIf", &exif_tiff(None, true)),
                png_chunk(b"tIME", &[7, 0xE9, 1, 2, 3, 4, 5]),
                png_chunk(b"zTXt", b"Author\0\0x"),
            ],
        );
        dirty.extend_from_slice(b"PK\x03\x04zip");
        let (a, cleaned) = run(&dirty, false).expect("analysis");
        let cleaned = cleaned.expect("cleaned");
        assert_eq!(
            a.removed,
            [
                "comment",
                "xmp",
                "exif",
                "gps",
                "time",
                "text",
                "trailing-data"
            ]
        );
        let chunks = png_chunks(&cleaned);
        assert!(chunks.iter().all(|c| c.2), "every chunk keeps a valid CRC");
        let kinds: Vec<&[u8; 4]> = chunks.iter().map(|c| &c.0).collect();
        assert_eq!(kinds.first(), Some(&b"IHDR"));
        assert_eq!(kinds.last(), Some(&b"IEND"));
        for gone in [b"tEXt", b"iTXt", b"eXIf", b"tIME", b"zTXt"] {
            assert!(!kinds.contains(&gone));
        }
        assert_eq!(cleaned, original, "exactly the encoder's file again");
        assert_eq!(rgba_of(&cleaned), img);
        assert_eq!((a.width, a.height), (Some(30), Some(20)));
        assert_eq!(thumb_of(&a).dimensions(), (30, 20));
    }

    #[test]
    fn png_orientation_survives_as_a_minimal_exif() {
        let original = png_bytes(&rgba_pattern(30, 20));
        let dirty = insert_png_chunks(&original, &[png_chunk(b"eXIf", &exif_tiff(Some(8), true))]);
        let (a, cleaned) = run(&dirty, false).expect("analysis");
        let cleaned = cleaned.expect("cleaned");
        assert_eq!(a.removed, ["exif", "gps"]);
        assert_eq!((a.width, a.height), (Some(20), Some(30)));
        assert_eq!(thumb_of(&a).dimensions(), (20, 30));
        assert!(png_chunks(&cleaned).iter().all(|c| c.2));
        assert!(!contains(&cleaned, b"SECRETCAM"));
        let mut dec = image::codecs::png::PngDecoder::new(Cursor::new(&cleaned)).unwrap();
        assert_eq!(dec.orientation().unwrap(), Orientation::Rotate270);
    }

    #[test]
    fn png_animation_is_reported() {
        let original = png_bytes(&rgba_pattern(8, 8));
        let apng = insert_png_chunks(&original, &[png_chunk(b"acTL", &[0, 0, 0, 1, 0, 0, 0, 0])]);
        let (a, cleaned) = run(&apng, false).expect("analysis");
        assert_eq!(a.animated, Some(true));
        assert!(cleaned.is_none());
    }

    #[test]
    fn webp_exif_and_xmp_are_stripped() {
        let img = rgba_pattern(24, 16);
        let simple = webp_lossless(&img);
        let vp8l = vp8l_payload(&simple);
        let tiff = exif_tiff(None, true);
        let dirty = riff_webp(&[
            (b"VP8X", &vp8x(0x10 | VP8X_EXIF | VP8X_XMP, 24, 16)),
            (b"VP8L", &vp8l),
            (b"EXIF", &tiff),
            (b"XMP ", b"<x:xmpmeta>secret</x:xmpmeta>"),
        ]);
        let mut with_tail = dirty.clone();
        with_tail.extend_from_slice(b"PK\x03\x04");
        let (a, cleaned) = run(&with_tail, false).expect("analysis");
        let cleaned = cleaned.expect("cleaned");
        assert_eq!(a.removed, ["trailing-data", "exif", "gps", "xmp"]);
        assert_eq!(webp_chunk_names(&cleaned), [*b"VP8X", *b"VP8L"]);
        assert_eq!(cleaned[20] & (VP8X_EXIF | VP8X_XMP), 0, "flags cleared");
        assert_eq!(cleaned[20] & 0x10, 0x10, "alpha flag kept");
        assert_eq!(
            le32(&cleaned, 4),
            Some(cleaned.len() as u32 - 8),
            "RIFF size"
        );
        assert!(!contains(&cleaned, b"SECRETCAM") && !contains(&cleaned, b"secret"));
        assert_eq!(rgba_of(&cleaned), img);
        assert_eq!(rgba_of(&dirty), img);
        assert_eq!(
            (a.width, a.height, a.animated),
            (Some(24), Some(16), Some(false))
        );
    }

    #[test]
    fn webp_orientation_keeps_a_minimal_exif_chunk() {
        let img = rgba_pattern(24, 16);
        let vp8l = vp8l_payload(&webp_lossless(&img));
        let dirty = riff_webp(&[
            (b"VP8X", &vp8x(0x10 | VP8X_EXIF, 24, 16)),
            (b"VP8L", &vp8l),
            (b"EXIF", &exif_tiff(Some(6), true)),
        ]);
        let (a, cleaned) = run(&dirty, false).expect("analysis");
        let cleaned = cleaned.expect("cleaned");
        assert_eq!(a.removed, ["exif", "gps"]);
        assert_eq!((a.width, a.height), (Some(16), Some(24)));
        assert_eq!(
            cleaned[20] & VP8X_EXIF,
            VP8X_EXIF,
            "EXIF flag stays with the chunk"
        );
        let mut dec = image::codecs::webp::WebPDecoder::new(Cursor::new(&cleaned)).unwrap();
        assert_eq!(dec.orientation().unwrap(), Orientation::Rotate90);
        assert!(!contains(&cleaned, b"SECRETCAM"));
    }

    /// WhatsApp's sticker-pack EXIF: IFD0 with the single tag 0x5741 holding JSON.
    fn sticker_pack_exif() -> Vec<u8> {
        let json = br#"{"sticker-pack-id":"p1","sticker-pack-name":"Cats","emojis":["x"]}"#;
        let mut v = b"II\x2a\0\x08\0\0\0\x01\0\x41\x57\x07\0".to_vec();
        v.extend_from_slice(&(json.len() as u32).to_le_bytes());
        v.extend_from_slice(&22u32.to_le_bytes());
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(json);
        v
    }

    #[test]
    fn stickers() {
        let img = rgba_pattern(512, 512);
        let simple = webp_lossless(&img);
        let (a, cleaned) = run(&simple, true).expect("sticker");
        assert_eq!(
            (a.width, a.height, a.animated),
            (Some(512), Some(512), Some(false))
        );
        assert!(cleaned.is_none() && a.removed.is_empty());
        assert_eq!(thumb_of(&a).dimensions(), (100, 100));
        // Other sizes are reported, not refused.
        let (a, _) = run(&webp_lossless(&rgba_pattern(300, 200)), true).expect("sticker");
        assert_eq!((a.width, a.height), (Some(300), Some(200)));
        // The sticker-pack metadata stays on stickers, and goes on images.
        let pack = riff_webp(&[
            (b"VP8X", &vp8x(0x10 | VP8X_EXIF, 512, 512)),
            (b"VP8L", &vp8l_payload(&simple)),
            (b"EXIF", &sticker_pack_exif()),
        ]);
        let (a, cleaned) = run(&pack, true).expect("sticker");
        assert!(a.removed.is_empty() && cleaned.is_none());
        let (a, cleaned) = run(&pack, false).expect("image");
        assert_eq!(a.removed, ["exif"]);
        assert!(!contains(&cleaned.expect("cleaned"), b"sticker-pack-id"));
        // A sticker must be WebP.
        let jpeg = jpeg_bytes(&pattern(512, 512), 80);
        assert!(matches!(
            run(&jpeg, true),
            Err(MediaError::NotAllowed { ref kind, ref sniffed }) if kind == "sticker" && sniffed == "jpeg"
        ));
    }

    fn animated_webp(w: u32, h: u32) -> Vec<u8> {
        let frame = |img: &RgbaImage| {
            let mut anmf = vec![0u8; 6]; // x/2, y/2
            anmf.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
            anmf.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
            anmf.extend_from_slice(&[100, 0, 0, 0]); // duration 100 ms, flags
            let vp8l = vp8l_payload(&webp_lossless(img));
            anmf.extend_from_slice(b"VP8L");
            anmf.extend_from_slice(&(vp8l.len() as u32).to_le_bytes());
            anmf.extend_from_slice(&vp8l);
            if vp8l.len() % 2 == 1 {
                anmf.push(0);
            }
            anmf
        };
        let f1 = frame(&rgba_pattern(w, h));
        let f2 = frame(&RgbaImage::from_pixel(w, h, Rgba([0, 200, 0, 255])));
        riff_webp(&[
            (b"VP8X", &vp8x(0x10 | VP8X_ANIMATION, w, h)),
            (b"ANIM", &[255, 255, 255, 255, 0, 0]),
            (b"ANMF", &f1),
            (b"ANMF", &f2),
        ])
    }

    #[test]
    fn animated_webp_sticker() {
        let anim = animated_webp(64, 64);
        assert_eq!(sniff::sniff(&anim), sniff::WEBP_ANIMATED);
        let (a, cleaned) = run(&anim, true).expect("animated sticker");
        assert_eq!(a.animated, Some(true));
        assert_eq!((a.width, a.height), (Some(64), Some(64)));
        assert!(cleaned.is_none());
        // The thumbnail is the first frame (the pattern), not the green second one.
        let t = thumb_of(&a);
        assert!(t.get_pixel(40, 10)[1] < 150, "{:?}", t.get_pixel(40, 10));
        // A frame larger than the limits is refused before decoding.
        let mut huge = anim.clone();
        let anmf = huge.windows(4).position(|w| w == b"ANMF").unwrap();
        huge[anmf + 8 + 6..anmf + 8 + 12].copy_from_slice(&[0xFF; 6]);
        assert!(matches!(
            run(&huge, true),
            Err(MediaError::TooManyPixels { .. })
        ));
    }

    fn gif_bytes(frames: &[RgbaImage]) -> Vec<u8> {
        let mut v = Vec::new();
        {
            let mut enc = GifEncoder::new(&mut v);
            enc.set_repeat(Repeat::Infinite).unwrap();
            enc.encode_frames(frames.iter().map(|f| Frame::new(f.clone())))
                .unwrap();
        }
        v
    }

    #[test]
    fn gif_comments_and_application_data_are_stripped() {
        let f1 = RgbaImage::from_fn(20, 10, |x, _| {
            Rgba([if x < 10 { 255 } else { 0 }, 0, 0, 255])
        });
        let f2 = RgbaImage::from_pixel(20, 10, Rgba([0, 0, 255, 255]));
        let original = gif_bytes(&[f1.clone(), f2]);
        assert_eq!(original.last(), Some(&0x3B));
        let mut dirty = original[..original.len() - 1].to_vec();
        dirty.extend_from_slice(b"\x21\xFE\x0Cshot at home\x00");
        dirty.extend_from_slice(b"\x21\xFF\x0BXMP DataXMP\x03abc\x00");
        dirty.extend_from_slice(b"\x21\xFF\x0BEDITOR 1.0\x00\x01z\x00");
        dirty.push(0x3B);
        dirty.extend_from_slice(b"PK\x03\x04");
        let (a, cleaned) = run(&dirty, false).expect("analysis");
        let cleaned = cleaned.expect("cleaned");
        assert_eq!(
            a.removed,
            ["comment", "xmp", "application-data", "trailing-data"]
        );
        assert_eq!(cleaned, original);
        assert!(contains(&cleaned, b"NETSCAPE2.0"), "looping kept");
        assert_eq!(a.animated, Some(true));
        assert_eq!((a.width, a.height), (Some(20), Some(10)));
        assert_eq!(rgba_of(&cleaned), f1, "first frame");
        // A single frame is not animated.
        let (a, _) = run(&gif_bytes(&[f1]), false).expect("analysis");
        assert_eq!(a.animated, Some(false));
    }

    fn png_with_ihdr(w: u32, h: u32) -> Vec<u8> {
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
        let mut v = PNG_SIGNATURE.to_vec();
        v.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
        v.extend_from_slice(&png_chunk(
            b"IDAT",
            &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        ));
        v.extend_from_slice(&png_chunk(b"IEND", &[]));
        v
    }

    #[test]
    fn huge_png_header_is_refused_before_decoding() {
        let bomb = png_with_ihdr(100_000, 100_000);
        assert_eq!(
            &bomb[29..33],
            &crc32(&bomb[12..29]).to_be_bytes(),
            "valid IHDR CRC"
        );
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("bomb.png");
        std::fs::write(&input, &bomb).unwrap();
        let started = Instant::now();
        let result = crate::pipeline::analyze_paths(
            MediaKind::Image,
            &input,
            &dir.path().join("out"),
            &limits(),
        );
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            result,
            Err(MediaError::TooManyPixels {
                width: 100_000,
                height: 100_000
            })
        );
        // One side over max_dimension is enough, even when the area is small.
        assert!(matches!(
            run(&png_with_ihdr(20_000, 1), false),
            Err(MediaError::TooManyPixels {
                width: 20_000,
                height: 1
            })
        ));
        // Within the limits, the same tiny file is simply undecodable (its IDAT is empty).
        assert!(matches!(
            run(&png_with_ihdr(4, 4), false),
            Err(MediaError::Undecodable(_))
        ));
    }

    /// SOI, a baseline SOF with the given size, and `scans` empty scans, then EOI.
    fn jpeg_skeleton(w: u16, h: u16, scans: usize) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        let mut sof = vec![8];
        sof.extend_from_slice(&h.to_be_bytes());
        sof.extend_from_slice(&w.to_be_bytes());
        sof.extend_from_slice(&[1, 1, 0x11, 0]);
        v.extend_from_slice(&segment(0xC0, &sof));
        for _ in 0..scans {
            v.extend_from_slice(&segment(0xDA, &[1, 1, 0, 0, 63, 0]));
            v.extend_from_slice(&[0x12, 0x34]);
        }
        v.extend_from_slice(&[0xFF, 0xD9]);
        v
    }

    #[test]
    fn huge_jpeg_frame_is_refused_before_decoding() {
        let started = Instant::now();
        assert_eq!(
            run(&jpeg_skeleton(65_535, 65_535, 1), false).map(|_| ()),
            Err(MediaError::TooManyPixels {
                width: 65_535,
                height: 65_535
            })
        );
        assert!(matches!(
            run(&jpeg_skeleton(16_385, 8, 1), false),
            Err(MediaError::TooManyPixels { .. })
        ));
        assert!(started.elapsed() < Duration::from_millis(50));
        // Tighter limits apply too.
        let tight = Limits {
            max_pixels: 1000,
            ..Limits::default()
        };
        let original = jpeg_bytes(&pattern(40, 30), 80);
        assert!(matches!(
            analyze_bytes(&original, &sniff::JPEG, false, &tight),
            Err(MediaError::TooManyPixels {
                width: 40,
                height: 30
            })
        ));
    }

    #[test]
    fn scan_bombs_and_odd_jpeg_structure_are_refused() {
        let started = Instant::now();
        assert_eq!(
            run(&jpeg_skeleton(4000, 3000, MAX_JPEG_SCANS + 1), false).map(|_| ()),
            Err(MediaError::Undecodable("JPEG: too many scans".into()))
        );
        assert!(started.elapsed() < Duration::from_millis(100));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0xFF, 0xD8, 0xFF, 0xD9], "JPEG: no frame header"),
            (jpeg_skeleton(8, 8, 0), "JPEG: no image data"),
            (jpeg_skeleton(0, 8, 1), "JPEG: zero or deferred dimensions"),
            (
                {
                    let mut v = jpeg_skeleton(8, 8, 1);
                    v.truncate(v.len() - 2);
                    v
                },
                "truncated JPEG (no EOI marker)",
            ),
            (
                {
                    let mut v = vec![0xFF, 0xD8];
                    v.extend_from_slice(&segment(0xDA, &[1, 1, 0, 0, 63, 0]));
                    v
                },
                "JPEG: scan before the frame header",
            ),
            (
                {
                    let mut v = jpeg_skeleton(8, 8, 1);
                    v.splice(15..15, *b"garbage"); // after the frame header
                    v
                },
                "JPEG: bytes between segments",
            ),
        ];
        for (bytes, msg) in cases {
            assert_eq!(
                run(&bytes, false).map(|_| ()),
                Err(MediaError::Undecodable(msg.into()))
            );
        }
    }

    #[test]
    fn truncated_files_are_refused_without_panicking() {
        let samples: Vec<Vec<u8>> = vec![
            with_segments(
                &jpeg_bytes(&pattern(24, 16), 90),
                &[exif_app1(Some(6), true)],
            ),
            insert_png_chunks(
                &png_bytes(&rgba_pattern(12, 9)),
                &[png_chunk(b"eXIf", &exif_tiff(Some(3), true))],
            ),
            webp_lossless(&rgba_pattern(12, 9)),
            animated_webp(8, 8),
            gif_bytes(&[rgba_pattern(6, 5), rgba_pattern(6, 5)]),
        ];
        for sample in &samples {
            assert!(run(sample, false).is_ok() || run(sample, true).is_ok());
            for n in 0..sample.len() {
                let cut = &sample[..n];
                assert!(run(cut, false).is_err(), "prefix {n} of {:?}", &sample[..4]);
                let _ = run(cut, true);
            }
        }
    }

    #[test]
    fn garbage_after_a_valid_header_is_refused() {
        let mut noise = Vec::with_capacity(4096);
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..4096 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(x as u8);
        }
        let png = png_bytes(&rgba_pattern(12, 9));
        let jpeg = jpeg_bytes(&pattern(16, 16), 90);
        let gif = gif_bytes(&[rgba_pattern(6, 5)]);
        let webp = webp_lossless(&rgba_pattern(12, 9));
        let heads: Vec<Vec<u8>> = vec![
            png[..33].to_vec(),
            jpeg[..20].to_vec(),
            gif[..13].to_vec(),
            {
                // A VP8L chunk header claiming the whole rest of the file.
                let mut v = webp[..25].to_vec();
                v[4..8].copy_from_slice(&((17 + noise.len()) as u32).to_le_bytes());
                v[16..20].copy_from_slice(&((5 + noise.len()) as u32).to_le_bytes());
                v
            },
        ];
        for head in heads {
            let mut bytes = head.clone();
            bytes.extend_from_slice(&noise);
            match run(&bytes, false) {
                Err(MediaError::Undecodable(_)) => {}
                other => panic!("{:?}: {other:?}", &head[..4]),
            }
        }
        // Noise inside a JPEG's entropy-coded data: decoders may conceal or refuse; either
        // way no panic, and an accepted file still has a thumbnail.
        let mut corrupt = jpeg_bytes(&pattern(64, 64), 90);
        let mid = corrupt.len() / 2;
        for (i, b) in noise.iter().take(64).enumerate() {
            if *b != 0xFF {
                corrupt[mid + i] = *b;
            }
        }
        if let Ok((a, _)) = run(&corrupt, false) {
            assert!(a.thumbnail.is_some());
        }
    }

    #[test]
    fn gif_and_webp_limits_are_checked_per_frame() {
        // A 10x10 screen holding a 65535x65535 frame.
        let mut gif = b"GIF89a\x0a\0\x0a\0\0\0\0".to_vec();
        gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 2, 1, 0, 0]);
        gif.push(0x3B);
        assert!(matches!(
            run(&gif, false),
            Err(MediaError::TooManyPixels {
                width: 65_535,
                height: 65_535
            })
        ));
        // A VP8X canvas of 2^24 x 2^24.
        let webp = riff_webp(&[(b"VP8X", &vp8x(0, 1 << 24, 1 << 24)), (b"VP8L", &[0x2F; 5])]);
        assert!(matches!(
            run(&webp, false),
            Err(MediaError::TooManyPixels { .. })
        ));
    }

    #[test]
    fn other_types_are_not_images() {
        let pdf = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n";
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("photo.jpg");
        std::fs::write(&input, pdf).unwrap();
        let out = dir.path().join("out");
        assert_eq!(
            crate::pipeline::analyze_paths(MediaKind::Image, &input, &out, &limits()),
            Err(MediaError::NotAllowed {
                kind: "image".into(),
                sniffed: "pdf".into()
            })
        );
        assert!(matches!(
            analyze_bytes(pdf, &sniff::PDF, false, &limits()),
            Err(MediaError::NotAllowed { .. })
        ));
    }

    #[test]
    fn thumbnails_fit_the_box_and_flatten_alpha() {
        assert_eq!(fit(4000, 3000, 100), (100, 75));
        assert_eq!(fit(300, 1200, 100), (25, 100));
        assert_eq!(fit(10_000, 1, 100), (100, 1));
        assert_eq!(fit(80, 60, 100), (80, 60));
        assert_eq!(fit(80, 60, 0), (1, 1));
        let tall = png_bytes(&rgba_pattern(300, 1200));
        let (a, _) = run(&tall, false).unwrap();
        assert_eq!(thumb_of(&a).dimensions(), (25, 100));
        // Fully transparent pixels become white, not black.
        let clear = png_bytes(&RgbaImage::from_pixel(50, 50, Rgba([0, 0, 0, 0])));
        let (a, _) = run(&clear, false).unwrap();
        let p = *thumb_of(&a).get_pixel(25, 25);
        assert!(p.0.iter().all(|&c| c > 240), "{p:?}");
    }

    #[test]
    fn fuzz_entry_survives_samples() {
        fuzz_entry(b"");
        fuzz_entry(&jpeg_bytes(&pattern(8, 8), 50));
        fuzz_entry(&png_with_ihdr(100_000, 100_000));
        fuzz_entry(&animated_webp(4, 4));
        let gif = gif_bytes(&[rgba_pattern(3, 3)]);
        for n in (0..gif.len()).step_by(7) {
            fuzz_entry(&gif[..n]);
        }
    }

    /// Random byte flips and cuts of valid files with metadata: the structure walkers and the
    /// decoders behind them must answer every variant without panicking. A cheap stand-in for
    /// the fuzz targets; `PHOTO_MUTATIONS` raises the count.
    #[test]
    fn mutated_files_never_panic() {
        let rounds: usize = std::env::var("PHOTO_MUTATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(150);
        let small = Limits {
            max_pixels: 1 << 20,
            ..Limits::default()
        };
        let samples: Vec<Vec<u8>> = vec![
            with_segments(
                &jpeg_bytes(&pattern(24, 16), 90),
                &[exif_app1(Some(6), true), segment(0xFE, b"c")],
            ),
            insert_png_chunks(
                &png_bytes(&rgba_pattern(12, 9)),
                &[
                    png_chunk(b"eXIf", &exif_tiff(Some(3), true)),
                    png_chunk(b"tEXt", b"a\0b"),
                ],
            ),
            riff_webp(&[
                (b"VP8X", &vp8x(0x10 | VP8X_EXIF, 12, 9)),
                (b"VP8L", &vp8l_payload(&webp_lossless(&rgba_pattern(12, 9)))),
                (b"EXIF", &exif_tiff(Some(6), true)),
            ]),
            animated_webp(8, 8),
            gif_bytes(&[rgba_pattern(6, 5), rgba_pattern(6, 5)]),
        ];
        let mut x = 0xD1B5_4A32_D192_ED03u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for sample in &samples {
            let sniffed = sniff::sniff(sample);
            for _ in 0..rounds {
                let mut m = sample.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() % m.len() as u64) as usize;
                    m[at] = next() as u8;
                }
                if next() % 4 == 0 {
                    m.truncate((next() % m.len() as u64) as usize);
                }
                for sticker in [false, true] {
                    let _ = analyze_bytes(&m, &sniffed, sticker, &small);
                }
            }
        }
    }

    /// 12-megapixel JPEG (noise + gradient, quality 90) → thumbnail, as the issue benchmarks
    /// against `vipsthumbnail`. Run with
    /// `cargo test --release --lib photo::tests::bench_thumbnail_12mp -- --ignored --nocapture`;
    /// the JPEG is left at `$PHOTO_BENCH_JPEG` (default /tmp/photo-bench-12mp.jpg) for
    /// `vipsthumbnail --size 100 -o tn.jpg[Q=70]` to compare.
    #[test]
    #[ignore = "benchmark; run in release"]
    fn bench_thumbnail_12mp() {
        let path = std::env::var("PHOTO_BENCH_JPEG")
            .unwrap_or_else(|_| "/tmp/photo-bench-12mp.jpg".to_string());
        let (w, h) = (4000u32, 3000u32);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let img = RgbImage::from_fn(w, h, |px, py| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x & 0x3F) as u32;
            Rgb([
                ((px * 200 / w) + n) as u8,
                ((py * 200 / h) + n) as u8,
                (((px + py) * 100 / (w + h)) + n) as u8,
            ])
        });
        let jpeg = jpeg_bytes(&img, 90);
        std::fs::write(&path, &jpeg).unwrap();
        println!("{path}: {} bytes", jpeg.len());
        let mut times = Vec::new();
        for _ in 0..7 {
            let started = Instant::now();
            let (a, _) = analyze_bytes(&jpeg, &sniff::JPEG, false, &limits()).unwrap();
            times.push(started.elapsed());
            assert_eq!(thumb_of(&a).dimensions(), (100, 75));
        }
        times.sort();
        println!(
            "analyze (scan + shrink-on-load decode + thumbnail + blurhash): min {:?} median {:?}",
            times[0], times[3]
        );
        let started = Instant::now();
        let scan = scan_jpeg(&jpeg, &limits()).unwrap();
        println!("structure walk alone: {:?}", started.elapsed());
        let started = Instant::now();
        let _ = decode_full(&jpeg, ImageFormat::Jpeg, &limits()).unwrap();
        println!(
            "for comparison, full-size decode alone (zune-jpeg): {:?}",
            started.elapsed()
        );
        let started = Instant::now();
        let _ = decode_jpeg_scaled(&jpeg, &scan, &limits()).unwrap();
        println!(
            "1/8-scale decode alone (jpeg-decoder): {:?}",
            started.elapsed()
        );
    }
}
