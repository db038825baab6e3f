//! Cryptography the service itself performs: keys, at-rest STREAM encryption, stored-object framing.
//!
//! The end-to-end attachment formats (WhatsApp, Signal) live in `crate::formats`: those are the
//! senders' cryptography, which the service only reproduces for seal-for-me and the CLI.

pub mod keys;
pub mod object;
pub mod stream;

/// Fill `buf` from the operating system's CSPRNG.
///
/// A failing CSPRNG leaves the process unable to do anything safely, so callers treat this
/// as an internal error rather than retrying.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|_| CryptoError::Rng)
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
