//! EXIF (a TIFF structure): only IFD0 is read, for the orientation, the GPS pointer and the
//! WhatsApp sticker-pack tag. Everything else in it is dropped unread.

use super::{be16, be32, le16, le32};

/// What IFD0 of an EXIF block says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ExifFacts {
    /// 1–8; 1 when absent or out of range.
    pub(super) orientation: u8,
    /// IFD0 points to a GPS IFD (tag 0x8825).
    pub(super) gps: bool,
    /// IFD0 holds only WhatsApp's sticker-pack JSON (tag 0x5741): pack id, name, publisher,
    /// emojis. It is what lets the recipient open the sticker's pack, and holds nothing about
    /// the sender's device or whereabouts.
    pub(super) sticker_pack_only: bool,
}

const TAG_ORIENTATION: u16 = 0x0112;
const TAG_GPS_IFD: u16 = 0x8825;
const TAG_WHATSAPP_STICKER: u16 = 0x5741;

pub(super) fn exif_facts(tiff: &[u8]) -> ExifFacts {
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
    // The same bounds-checked readers as the format walkers, in the block's own byte order.
    let u16_at = |at: usize| if big { be16(tiff, at) } else { le16(tiff, at) };
    let u32_at = |at: usize| if big { be32(tiff, at) } else { le32(tiff, at) };
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
pub(super) fn minimal_exif(orientation: u8) -> Vec<u8> {
    let mut v = b"MM\0\x2a\0\0\0\x08".to_vec(); // big-endian TIFF, IFD0 at offset 8
    v.extend_from_slice(&[0, 1]); // one entry
    v.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0]);
    v.extend_from_slice(&[0, 0, 0, 0]); // no next IFD (no EXIF thumbnail)
    v
}
