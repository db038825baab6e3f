//! JPEG: markers walked from SOI to EOI. Entropy-coded data is copied verbatim, so the cleaned
//! file decodes to exactly the same pixels.

use image::ImageFormat;

use super::exif::{ExifFacts, exif_facts, minimal_exif};
use super::{Removed, Scan, be16, check_dimensions, undecodable};
use crate::pipeline::{Limits, MediaError};

/// Most scans a JPEG may have. Every progressive scan walks every block of the image again, so
/// a small file with thousands of near-empty scans is a CPU bomb (libjpeg-turbo's advisory on
/// such files suggests a limit of 500, as its `tjbench -limitscans` uses). Real encoders write
/// about 10.
pub(crate) const MAX_JPEG_SCANS: usize = 500;

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

pub(super) fn scan_jpeg(data: &[u8], limits: &Limits) -> Result<Scan, MediaError> {
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
