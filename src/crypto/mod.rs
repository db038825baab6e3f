//! Cryptography the service itself performs: keys, at-rest STREAM encryption, stored-object
//! framing, record envelopes, media ids, and the one helper each for HKDF, HMAC, randomness
//! and lenient base64 that every other module uses.
//!
//! The end-to-end attachment formats (WhatsApp, Signal) live in `crate::formats`: those are the
//! senders' cryptography, which the service only reproduces for seal-for-me and the CLI.

pub mod encoding;
pub mod envelope;
pub mod ids;
pub mod kdf;
pub mod keys;
pub mod mac;
pub mod object;
pub mod stream;

/// Fill `buf` from the operating system's CSPRNG.
///
/// A failing CSPRNG leaves the process unable to do anything safely, so callers treat this
/// as an internal error rather than retrying.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|_| CryptoError::Rng)
}

/// `N` random bytes, wiped on drop (they are usually key material).
pub fn random_array<const N: usize>() -> Result<zeroize::Zeroizing<[u8; N]>, CryptoError> {
    let mut out = zeroize::Zeroizing::new([0u8; N]);
    random_bytes(out.as_mut())?;
    Ok(out)
}

/// `N` random bytes as lowercase hex (ids of uploads, staging objects).
pub fn random_hex<const N: usize>() -> Result<String, CryptoError> {
    Ok(hex::encode(random_array::<N>()?.as_ref()))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the operating system's random number generator failed")]
    Rng,
    #[error("authentication failed")]
    Auth,
    #[error("malformed input")]
    Malformed,
}
