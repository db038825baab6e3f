//! PNG: chunks walked from IHDR to IEND; kept chunks are copied with their CRCs.

use image::ImageFormat;

use super::exif::{exif_facts, minimal_exif};
use super::{Removed, Scan, be32, check_dimensions, undecodable};
use crate::pipeline::{Limits, MediaError};

pub(super) const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// CRC-32 (ISO 3309, as PNG uses it): `crc32fast`, already in the tree through `png`/`flate2`.
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

pub(super) fn png_chunk(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
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

pub(super) fn scan_png(data: &[u8], limits: &Limits) -> Result<Scan, MediaError> {
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
