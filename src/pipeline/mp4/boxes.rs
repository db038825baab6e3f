//! What is read from each leaf box's first bytes: movie and media header durations, the track
//! header's size and rotation, and the first sample description (codec, audio rate and
//! channels, with the AAC `esds` parsed for the real values).

use super::{Track, bad};
use crate::pipeline::MediaError;

/// The first bytes of a box body; every accessor is bounds-checked.
pub(super) struct Payload<'a>(pub(super) &'a [u8]);

impl Payload<'_> {
    fn get<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        let s = self.0.get(at..at.checked_add(N)?)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Some(out)
    }
    fn u8(&self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        self.get::<2>(at).map(u16::from_be_bytes)
    }
    fn u32(&self, at: usize) -> Option<u32> {
        self.get::<4>(at).map(u32::from_be_bytes)
    }
    fn i32(&self, at: usize) -> Option<i32> {
        self.get::<4>(at).map(i32::from_be_bytes)
    }
    fn u64(&self, at: usize) -> Option<u64> {
        self.get::<8>(at).map(u64::from_be_bytes)
    }
    pub(super) fn bytes4(&self, at: usize) -> Option<[u8; 4]> {
        self.get::<4>(at)
    }
    pub(super) fn fourcc(&self, at: usize) -> Option<String> {
        self.bytes4(at).map(|b| fourcc(&b))
    }
}

/// A four-character code as text; bytes outside printable ASCII become `?` so hostile codes
/// cannot smuggle control characters into logs or JSON consumers.
pub(super) fn fourcc(b: &[u8; 4]) -> String {
    b.iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                char::from(c)
            } else {
                '?'
            }
        })
        .collect()
}

/// Duration from `mvhd`/`mdhd` (same layout up to the duration field): `None` when the timescale
/// is 0 or the duration is 0 or all-ones, which both mean "unknown".
pub(super) fn header_duration_ms(p: &Payload<'_>, name: &str) -> Result<Option<u64>, MediaError> {
    let short = || bad(&format!("{name} too short"));
    let version = p.u8(0).ok_or_else(short)?;
    let (timescale, duration) = match version {
        0 => {
            let d = p.u32(16).ok_or_else(short)?;
            let d = if d == u32::MAX { 0 } else { u64::from(d) };
            (p.u32(12).ok_or_else(short)?, d)
        }
        1 => {
            let d = p.u64(24).ok_or_else(short)?;
            let d = if d == u64::MAX { 0 } else { d };
            (p.u32(20).ok_or_else(short)?, d)
        }
        _ => return Err(bad(&format!("{name} version {version}"))),
    };
    if timescale == 0 || duration == 0 {
        return Ok(None);
    }
    // u128: duration × 1000 does not fit u64 for 64-bit durations.
    let ms = u128::from(duration) * 1000 / u128::from(timescale);
    Ok(Some(u64::try_from(ms).unwrap_or(u64::MAX)))
}

/// Track header: display width/height (16.16) and rotation from the matrix.
pub(super) fn parse_tkhd(p: &Payload<'_>, t: &mut Track) -> Result<(), MediaError> {
    let short = || bad("tkhd too short");
    let version = p.u8(0).ok_or_else(short)?;
    // Full box header, then times/track id/duration (v0: 20 bytes, v1: 32), reserved (8),
    // layer, alternate group, volume, reserved (2 each).
    let matrix_at = match version {
        0 => 4 + 20 + 16,
        1 => 4 + 32 + 16,
        _ => return Err(bad(&format!("tkhd version {version}"))),
    };
    let a = p.i32(matrix_at).ok_or_else(short)?;
    let b = p.i32(matrix_at + 4).ok_or_else(short)?;
    let w = p.u32(matrix_at + 36).ok_or_else(short)?;
    let h = p.u32(matrix_at + 40).ok_or_else(short)?;
    t.rotation = rotation(a, b);
    t.width = w >> 16;
    t.height = h >> 16;
    Ok(())
}

/// Clockwise display rotation from the first row of the transformation matrix
/// `{a, b, u; c, d, v; x, y, w}`: (a, b) = (1, 0) is upright, (0, 1) is 90°, (−1, 0) is 180°,
/// (0, −1) is 270°. Matrices with scaling or shear snap to the nearest quarter turn.
pub(super) fn rotation(a: i32, b: i32) -> u16 {
    let (ua, ub) = (a.unsigned_abs(), b.unsigned_abs());
    if ua >= ub {
        if a >= 0 { 0 } else { 180 }
    } else if b > 0 {
        90
    } else {
        270
    }
}

/// Sample rate and channels from an `esds` body (after its full-box header): ES_Descriptor →
/// DecoderConfigDescriptor → DecoderSpecificInfo (an MPEG-4 AudioSpecificConfig, ISO/IEC
/// 14496-3 §1.6.2.1). `None` when anything is missing or not plain AAC.
pub(super) fn parse_esds(b: &[u8]) -> Option<(u32, u16)> {
    /// A descriptor's tag and length (1–4 bytes, 7 bits each); advances `at` past the header.
    fn descriptor(b: &[u8], at: &mut usize) -> Option<(u8, usize)> {
        let tag = *b.get(*at)?;
        *at += 1;
        let mut len = 0usize;
        for _ in 0..4 {
            let c = *b.get(*at)?;
            *at += 1;
            len = (len << 7) | usize::from(c & 0x7F);
            if c & 0x80 == 0 {
                break;
            }
        }
        Some((tag, len))
    }
    let mut at = 0;
    if descriptor(b, &mut at)?.0 != 3 {
        return None;
    }
    // ES_ID (2), then flags: stream dependence (+2), URL (+1+len), OCR stream (+2).
    let flags = *b.get(at + 2)?;
    at += 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*b.get(at)?);
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    if descriptor(b, &mut at)?.0 != 4 {
        return None;
    }
    // objectTypeIndication: 0x40 MPEG-4 audio, 0x66–0x68 MPEG-2 AAC; others (MP3…) carry no
    // AudioSpecificConfig.
    let object_type = *b.get(at)?;
    if object_type != 0x40 && !(0x66..=0x68).contains(&object_type) {
        return None;
    }
    at += 13;
    if descriptor(b, &mut at)?.0 != 5 {
        return None;
    }
    let asc = b.get(at..)?;
    let bits = |from: usize, n: usize| -> Option<u32> {
        (from..from + n).try_fold(0u32, |v, i| {
            let byte = *asc.get(i / 8)?;
            Some((v << 1) | u32::from((byte >> (7 - i % 8)) & 1))
        })
    };
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    let rate_at = |pos: usize| -> Option<(u32, usize)> {
        match bits(pos, 4)? {
            15 => Some((bits(pos + 4, 24)?, pos + 28)),
            i => Some((*RATES.get(i as usize)?, pos + 4)),
        }
    };
    let object = bits(0, 5)?;
    if object == 31 {
        return None;
    }
    let (mut rate, pos) = rate_at(5)?;
    let channels = match bits(pos, 4)? {
        c @ 1..=6 => c as u16,
        7 => 8,
        _ => return None,
    };
    // HE-AAC (SBR, PS) signalled explicitly: the output rate is the extension rate, and
    // parametric stereo turns a mono core into stereo.
    let mut channels = channels;
    if object == 5 || object == 29 {
        rate = rate_at(pos + 4)?.0;
    }
    if object == 29 && channels == 1 {
        channels = 2;
    }
    (rate > 0).then_some((rate, channels))
}

/// Sample description: the first entry's four-character code, plus audio rate/channels or
/// visual width/height when the entry is a plain ISO one.
pub(super) fn parse_stsd(
    p: &Payload<'_>,
    body_at: u64,
    body_len: u64,
    t: &mut Track,
) -> Result<(), MediaError> {
    let short = || bad("stsd too short");
    let count = p.u32(4).ok_or_else(short)?;
    // Each entry is at least a size and a type (8 bytes): a count that cannot fit in the box is
    // a lie, refused before anything trusts it.
    if count == 0 || u64::from(count) > body_len.saturating_sub(8) / 8 {
        return Err(bad("stsd entry count does not fit the box"));
    }
    let entry_size = u64::from(p.u32(8).ok_or_else(short)?);
    if entry_size < 16 || entry_size > body_len - 8 {
        return Err(bad("stsd entry size does not fit the box"));
    }
    let codec = p.bytes4(12).ok_or_else(short)?;
    t.codec = Some(fourcc(&codec));
    t.entry = Some((codec, body_at + 8, entry_size));
    // Entry fields, relative to the entry start (offset 8 in the body): size, type, 6 reserved
    // bytes, data reference index (2) = 16 bytes of SampleEntry, then the specific fields.
    let e = 8usize;
    let fits = |end: usize| (end as u64) <= entry_size;
    match t.handler.as_ref() {
        Some(b"soun") => {
            // AudioSampleEntry: version (2), revision (2), vendor (4), channels (2), sample size
            // (2), pre-defined (2), reserved (2), rate (16.16). QuickTime version 2 entries keep
            // the real values elsewhere; those are reported as unknown (0).
            let version = p.u16(e + 16).unwrap_or(u16::MAX);
            if fits(36) && version < 2 {
                t.channels = p.u16(e + 24).unwrap_or(0);
                t.sample_rate = p.u32(e + 32).map_or(0, |r| r >> 16);
            }
            match &codec {
                // Muxers write the ISO template (2 channels) into AMR entries; AMR in 3GP is
                // always mono, 8 kHz (NB) or 16 kHz (WB).
                b"samr" => (t.channels, t.sample_rate) = (1, 8_000),
                b"sawb" => (t.channels, t.sample_rate) = (1, 16_000),
                // For AAC the entry also holds the template; the AudioSpecificConfig in `esds`
                // (the first child box of a version 0 entry) has the real values.
                b"mp4a" if version == 0 => {
                    let child = e + 36;
                    let size = p.u32(child).map_or(0, |s| s as usize);
                    if p.bytes4(child + 4) == Some(*b"esds")
                        && size >= 12
                        && fits(36 + size)
                        && let Some(esds) = p.0.get(child + 12..child + size)
                        && let Some((rate, channels)) = parse_esds(esds)
                    {
                        (t.sample_rate, t.channels) = (rate, channels);
                    }
                }
                _ => {}
            }
        }
        // VisualSampleEntry: pre-defined/reserved (16 bytes), then width and height (2 each).
        // Used only when tkhd gave no size.
        Some(b"vide") if fits(36) && (t.width == 0 || t.height == 0) => {
            t.width = u32::from(p.u16(e + 32).unwrap_or(0));
            t.height = u32::from(p.u16(e + 34).unwrap_or(0));
        }
        _ => {}
    }
    Ok(())
}
