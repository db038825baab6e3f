//! AMR storage format (RFC 4867 §5): "#!AMR\n" or "#!AMR-WB\n", then frames of one header
//! byte (F | FT(4) | Q | P P) and a payload whose size depends on FT. Every frame is 20 ms.

use std::io::Read;

use super::bad;
use crate::pipeline::{Limits, MediaError};

/// Payload bytes per frame type (RFC 4867 §5.3, from 3GPP TS 26.101 / 26.201), `None` for
/// types that cannot appear in a single-channel storage file (legacy SIDs, reserved).
const AMR_NB_SIZES: [Option<u8>; 16] = [
    Some(12),
    Some(13),
    Some(15),
    Some(17),
    Some(19),
    Some(20),
    Some(26),
    Some(31),
    Some(5),
    None,
    None,
    None,
    None,
    None,
    None,
    Some(0),
];
const AMR_WB_SIZES: [Option<u8>; 16] = [
    Some(17),
    Some(23),
    Some(32),
    Some(36),
    Some(40),
    Some(46),
    Some(50),
    Some(58),
    Some(60),
    Some(5),
    None,
    None,
    None,
    None,
    Some(0),
    Some(0),
];

/// Count the frames of an AMR file, refusing once the count passes the longest allowed
/// duration. A truncated last frame is not counted.
pub(super) fn amr_frames<R: Read>(r: R, wb: bool, limits: &Limits) -> Result<u64, MediaError> {
    let mut r = std::io::BufReader::with_capacity(64 << 10, r);
    let magic: &[u8] = if wb { b"#!AMR-WB\n" } else { b"#!AMR\n" };
    let mut m = [0u8; 9];
    r.read_exact(&mut m[..magic.len()])
        .map_err(|_| bad("truncated AMR header"))?;
    if &m[..magic.len()] != magic {
        return Err(bad("not a single-channel AMR file"));
    }
    let sizes = if wb { &AMR_WB_SIZES } else { &AMR_NB_SIZES };
    let max_frames = limits.max_duration_ms / 20;
    let mut frames = 0u64;
    let mut payload = [0u8; 64];
    loop {
        let mut h = [0u8; 1];
        match r.read(&mut h) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(bad(format!("read: {e}"))),
        }
        let ft = usize::from((h[0] >> 3) & 0x0F);
        let size = sizes[ft].ok_or_else(|| bad(format!("AMR frame type {ft} is not allowed")))?;
        if r.read_exact(&mut payload[..usize::from(size)]).is_err() {
            break;
        }
        frames += 1;
        if frames > max_frames {
            return Err(MediaError::TooLong);
        }
    }
    if frames == 0 {
        return Err(bad("no AMR frames"));
    }
    Ok(frames)
}
