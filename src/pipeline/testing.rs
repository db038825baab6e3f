//! Helpers the pipeline's unit tests share: input builders and a deterministic noise source.

use super::{Analysis, MediaError};

/// A RIFF file of form `form` (`WEBP`, `WAVE`, …) holding `chunks`, each padded to an even size.
pub(crate) fn riff(form: &[u8; 4], chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut body = form.to_vec();
    for (cc, data) in chunks {
        body.extend_from_slice(*cc);
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

/// The message of an `Undecodable` refusal; anything else fails the test.
pub(crate) fn undecodable(r: Result<Analysis, MediaError>) -> String {
    match r {
        Err(MediaError::Undecodable(m)) => m,
        other => panic!("expected Undecodable, got {other:?}"),
    }
}

/// One step of xorshift64: deterministic noise for mutation tests (`x` must not start at 0).
pub(crate) fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}
