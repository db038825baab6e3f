//! The sealed envelope of the service's own small records (resumable-upload state and staged
//! tails): AES-256-GCM under a key derived from the master ring for one `label` and
//! `context`, with where the record is stored as associated data, so a record copied to
//! another upload or path does not open.
//!
//! ```text
//! version(1) = 0x01 | kid_len(1) | kid | nonce(12) | ciphertext || tag(16)
//! key = HKDF-SHA256(ikm = master[kid], salt = none, info = label || 0x00 || context)
//! ```
//!
//! Frozen like the stored-object format: `tests/vectors/envelope_v1.json` holds vectors.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::CryptoError;
use super::kdf::hkdf_sha256;
use super::keys::KeyRing;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Why an envelope did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("sealed under an unknown key id")]
    UnknownKey,
    #[error("not an envelope of this version")]
    Malformed,
    #[error("failed authentication")]
    Auth,
    #[error("the random number generator failed")]
    Rng,
}

impl From<CryptoError> for EnvelopeError {
    fn from(_: CryptoError) -> Self {
        EnvelopeError::Rng
    }
}

fn cipher(ring: &KeyRing, kid: &str, label: &[u8], context: &str) -> Option<Aes256Gcm> {
    let master = ring.get(kid)?;
    let key: Zeroizing<[u8; 32]> =
        hkdf_sha256(None, master.expose(), &[label, &[0], context.as_bytes()]);
    Some(Aes256Gcm::new(&(*key).into()))
}

/// Seal `plain` under the ring's active key.
pub fn seal(
    ring: &KeyRing,
    label: &[u8],
    context: &str,
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let mut nonce = [0u8; NONCE_LEN];
    // Random nonces: one key seals a handful of records per context, far from the 2^32 bound.
    super::random_bytes(&mut nonce)?;
    seal_with_nonce(ring, label, context, aad, plain, nonce)
}

/// [`seal`] with a given nonce: for the frozen vectors only.
#[doc(hidden)]
pub fn seal_with_nonce(
    ring: &KeyRing,
    label: &[u8],
    context: &str,
    aad: &[u8],
    plain: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, EnvelopeError> {
    let (kid, _) = ring.active();
    let aead = cipher(ring, kid, label, context).ok_or(EnvelopeError::UnknownKey)?;
    let ct = aead
        .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
        .map_err(|_| EnvelopeError::Malformed)?;
    let kid_len = u8::try_from(kid.len()).map_err(|_| EnvelopeError::Malformed)?;
    let mut out = Vec::with_capacity(2 + kid.len() + NONCE_LEN + ct.len());
    out.push(VERSION);
    out.push(kid_len);
    out.extend_from_slice(kid.as_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Open what [`seal`] produced for the same label, context and associated data.
pub fn open(
    ring: &KeyRing,
    label: &[u8],
    context: &str,
    aad: &[u8],
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let Some((&VERSION, rest)) = data.split_first() else {
        return Err(EnvelopeError::Malformed);
    };
    let (&kid_len, rest) = rest.split_first().ok_or(EnvelopeError::Malformed)?;
    let kid_len = usize::from(kid_len);
    if rest.len() < kid_len + NONCE_LEN {
        return Err(EnvelopeError::Malformed);
    }
    let (kid, rest) = rest.split_at(kid_len);
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let kid = std::str::from_utf8(kid).map_err(|_| EnvelopeError::Malformed)?;
    let aead = cipher(ring, kid, label, context).ok_or(EnvelopeError::UnknownKey)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| EnvelopeError::Malformed)?;
    aead.decrypt(&Nonce::from(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| EnvelopeError::Auth)
}
