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
//!
//! One file a concept: the structure walkers `jpeg`, `png`, `webp` and `gif` (with
//! `exif`, which they share), then `decode` and `thumbnail`. This file holds the entry
//! points and what the walkers have in common.

mod decode;
mod exif;
mod gif;
mod jpeg;
mod png;
#[cfg(test)]
mod tests;
mod thumbnail;
mod webp;

use std::io::Read;
use std::os::unix::fs::FileExt;

use image::ImageFormat;

use super::{Analysis, FileSlice, Limits, MediaError, Sniffed};
use crate::media::MediaKind;
use decode::decode;
use exif::exif_facts;
use gif::scan_gif;
use jpeg::scan_jpeg;
use png::scan_png;
pub(crate) use thumbnail::{fit, thumbnail};
use webp::scan_webp;

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
