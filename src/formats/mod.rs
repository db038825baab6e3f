//! End-to-end encrypted attachment formats (DESIGN.md §3), byte-compatible with the clients
//! that produce and consume them.
//!
//! * [`whatsapp`]: WhatsApp's media format (HKDF-expanded 32-byte media key, AES-256-CBC,
//!   10-byte truncated HMAC-SHA256), with its streaming [`sidecar`] and CBC random access.
//! * [`signal`]: Signal's attachment format (64-byte key, random IV, size-bucket padding,
//!   AES-256-CBC, 32-byte HMAC-SHA256), with libsignal's [`incremental_mac`].
//!
//! # Shape of the API
//!
//! Every format has a synchronous, I/O-free core that is fed `&[u8]` pieces and writes its
//! output incrementally into any [`std::io::Write`] (a `Vec<u8>` never fails), so memory stays
//! flat whatever the size of the attachment:
//!
//! * encrypt: `Encryptor::update` / `Encryptor::finish`;
//! * decrypt, in two explicit passes so that **no plaintext leaves the library before the blob
//!   digest and the MAC have been checked**:
//!   1. `Verifier::update` / `Verifier::finish` over the whole blob → a `Verified` proof;
//!   2. `Decryptor::new(.., &Verified, ..)`, `update` / `finish` over the same blob again;
//!      padding is checked only now (after the MAC), then the plaintext length and digest.
//!
//! The convenience layer in this module ([`seal`], [`verify`], [`open`], and the [`Sealer`]
//! state machine) works on a [`Descriptor`], the JSON document a sender hands to a recipient
//! (kind, key, digests, lengths, optional sidecar / incremental MAC).
//!
//! Keys live in zeroize-on-drop types whose `Debug` output is redacted.

mod cbc_hmac;
mod descriptor;
pub mod incremental_mac;
mod seal_open;
pub mod sidecar;
pub mod signal;
pub mod whatsapp;

use std::io;

use base64::Engine as _;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use crate::media::{MediaFormat, MediaKind};
pub use descriptor::{Descriptor, IncrementalMacInfo, KeyMaterial};
pub use seal_open::{
    Opened, SealOptions, Sealer, Verified, decrypt_verified, open, open_async, open_to_path, seal,
    seal_async, verify,
};

/// Size of the I/O buffer used by the `Read`/`Write` convenience functions.
pub const IO_CHUNK: usize = 64 * 1024;

/// Everything that can go wrong while sealing, verifying or opening an attachment.
///
/// Each integrity failure is its own variant, in the order they are checked when opening:
/// [`MalformedBlob`](Self::MalformedBlob) → [`BlobLengthMismatch`](Self::BlobLengthMismatch) →
/// [`EncDigestMismatch`](Self::EncDigestMismatch) → [`MacMismatch`](Self::MacMismatch) →
/// (plaintext released from here on) [`CorruptPlaintext`](Self::CorruptPlaintext) →
/// [`PlainLengthMismatch`](Self::PlainLengthMismatch) →
/// [`PlainDigestMismatch`](Self::PlainDigestMismatch).
///
/// Every MAC failure (whole-blob MAC, sidecar window, incremental MAC, wrong key) is
/// [`MacMismatch`](Self::MacMismatch) and carries no detail; CBC padding is never looked at
/// before the MAC has passed, so there is no padding oracle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A key of the wrong size was supplied.
    #[error("{what} must be {expected} bytes, got {actual}")]
    KeyLength {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// A descriptor field is not valid base64.
    #[error("descriptor field `{field}` is not valid base64")]
    InvalidBase64 { field: &'static str },
    /// A descriptor field decoded to the wrong number of bytes.
    #[error("descriptor field `{field}` decodes to {actual} bytes, expected {expected}")]
    FieldLength {
        field: &'static str,
        expected: usize,
        actual: usize,
    },
    /// The descriptor is not valid JSON, misses a field, or is inconsistent.
    #[error("invalid descriptor: {0}")]
    Descriptor(String),
    /// The blob length cannot be a blob of this format (truncated or extended).
    #[error("a {format} blob cannot be {len} bytes long (truncated or extended)")]
    MalformedBlob { format: &'static str, len: u64 },
    /// The blob length differs from the length in the descriptor.
    #[error("blob is {actual} bytes, the descriptor says {expected}")]
    BlobLengthMismatch { expected: u64, actual: u64 },
    /// SHA-256 of the blob differs from `fileEncSha256` / Signal's `digest`.
    #[error("blob SHA-256 does not match the declared digest")]
    EncDigestMismatch,
    /// A MAC did not verify (wrong key or tampered ciphertext).
    #[error("MAC verification failed")]
    MacMismatch,
    /// The sidecar does not have one 10-byte MAC per window of the blob.
    #[error("sidecar is {actual} bytes, a blob of this size needs {expected}")]
    InvalidSidecar { expected: u64, actual: u64 },
    /// The incremental MAC parameters are inconsistent (chunk size 0, digest length).
    #[error("invalid incremental MAC: {0}")]
    InvalidIncrementalMac(&'static str),
    /// The MAC verified but the plaintext is malformed (bad PKCS#7 padding, or shorter than
    /// the declared size): the sender produced a corrupt blob.
    #[error("authenticated blob decrypts to malformed plaintext")]
    CorruptPlaintext,
    /// The plaintext length differs from `fileLength` / `size`.
    #[error("plaintext is {actual} bytes, the descriptor says {expected}")]
    PlainLengthMismatch { expected: u64, actual: u64 },
    /// SHA-256 of the plaintext differs from `fileSha256` / `plaintextHash`.
    #[error("plaintext SHA-256 does not match the declared digest")]
    PlainDigestMismatch,
    /// The bytes read in the decrypt pass differ from the ones verified in the first pass.
    #[error("blob changed between verification and decryption")]
    BlobChanged,
    /// A requested plaintext range is empty or outside the file.
    #[error("invalid range {start}..{end} for a file of {len} bytes")]
    InvalidRange { start: u64, end: u64, len: u64 },
    /// The fetched ciphertext does not match what the range plan asked for.
    #[error("fetched {actual} bytes for a range plan that needs {expected}")]
    RangeFetchLength { expected: u64, actual: u64 },
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Rng,
    /// Reading the input or writing the output failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Result alias for this module.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

pub(crate) fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>> {
    crate::crypto::random_array::<N>().map_err(|_| FormatError::Rng)
}

/// Constant-time equality of two byte strings (length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// SHA-256 of `data`, as an array.
#[cfg(test)]
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

pub(crate) fn finalize_sha256(h: sha2::Sha256) -> [u8; 32] {
    use sha2::Digest as _;
    h.finalize().into()
}

// ---------------------------------------------------------------------------------------------
// Base64 helpers (standard alphabet, padded on output; lenient on input).

pub(crate) fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes standard or URL-safe base64, padded or not (WhatsApp tooling uses both).
pub(crate) fn b64_decode(field: &'static str, value: &str) -> Result<Zeroizing<Vec<u8>>> {
    crate::crypto::encoding::b64_decode_lenient(value).ok_or(FormatError::InvalidBase64 { field })
}

pub(crate) fn b64_array<const N: usize>(field: &'static str, value: &str) -> Result<[u8; N]> {
    let bytes = b64_decode(field, value)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| FormatError::FieldLength {
        field,
        expected: N,
        actual: bytes.len(),
    })
}

pub(crate) use crate::crypto::mac::{HmacSha256, hmac_sha256};

#[cfg(test)]
mod tests;
