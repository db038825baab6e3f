//! GIF: blocks walked from the logical screen descriptor to the trailer.

use image::ImageFormat;

use super::{Removed, Scan, check_dimensions, le16, undecodable};
use crate::pipeline::{Limits, MediaError};

pub(super) fn scan_gif(data: &[u8], limits: &Limits) -> Result<Scan, MediaError> {
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
