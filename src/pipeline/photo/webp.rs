//! WebP: RIFF chunks. EXIF and XMP chunks are dropped and their VP8X flags cleared.

use image::ImageFormat;

use super::exif::{exif_facts, minimal_exif};
use super::{Removed, Scan, check_dimensions, le16, le24, le32, undecodable};
use crate::pipeline::{Limits, MediaError};

pub(super) const VP8X_XMP: u8 = 0x04;
pub(super) const VP8X_EXIF: u8 = 0x08;
pub(super) const VP8X_ANIMATION: u8 = 0x02;

pub(super) fn scan_webp(data: &[u8], limits: &Limits, sticker: bool) -> Result<Scan, MediaError> {
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
