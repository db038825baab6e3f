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
pub mod incremental_mac;
pub mod sidecar;
pub mod signal;
pub mod whatsapp;

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub use crate::media::{MediaFormat, MediaKind};

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

// ---------------------------------------------------------------------------------------------
// Key material.

/// The key of one attachment, whichever format it is in.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// A 32-byte WhatsApp media key.
    Whatsapp(whatsapp::MediaKey),
    /// A 64-byte Signal attachment key (AES key || HMAC key).
    Signal(signal::SignalKey),
}

impl KeyMaterial {
    /// The format this key belongs to.
    pub fn format(&self) -> MediaFormat {
        match self {
            KeyMaterial::Whatsapp(_) => MediaFormat::Whatsapp,
            KeyMaterial::Signal(_) => MediaFormat::Signal,
        }
    }

    /// The raw key bytes (secret).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            KeyMaterial::Whatsapp(k) => k.as_bytes(),
            KeyMaterial::Signal(k) => k.as_bytes(),
        }
    }

    /// Parses key bytes for `format`.
    pub fn from_bytes(format: MediaFormat, bytes: &[u8]) -> Result<Self> {
        match format {
            MediaFormat::Whatsapp => Ok(KeyMaterial::Whatsapp(whatsapp::MediaKey::from_bytes(
                bytes,
            )?)),
            MediaFormat::Signal => Ok(KeyMaterial::Signal(signal::SignalKey::from_bytes(bytes)?)),
            MediaFormat::Opaque => Err(FormatError::Descriptor(
                "the opaque format has no key material".into(),
            )),
        }
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyMaterial::{:?}(<redacted>)", self.format())
    }
}

// ---------------------------------------------------------------------------------------------
// Descriptor.

/// What a recipient needs to verify and open one sealed attachment; printed as JSON by
/// `interop-media prepare` and read by `open`.
///
/// ```json
/// {
///   "format": "whatsapp", "kind": "video", "mime": "video/mp4",
///   "key": "<base64>", "file_sha256": "<base64>", "file_enc_sha256": "<base64>",
///   "file_length": 1234, "blob_length": 1258, "sidecar": "<base64>"
/// }
/// ```
///
/// For `signal`, `file_enc_sha256` is Signal's `digest` (alias `digest` accepted on input),
/// `file_length` its unpadded `size` (alias `size`), `file_sha256` its `plaintextHash`, and
/// `incremental_mac` / `chunk_size` are set for streamable video.
///
/// All binary fields are base64 (standard alphabet, padded; URL-safe and unpadded accepted on
/// input). `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DescriptorWire", into = "DescriptorWire")]
pub struct Descriptor {
    /// Media kind; selects the WhatsApp HKDF info string.
    pub kind: MediaKind,
    /// MIME type, when known.
    pub mime: Option<String>,
    /// Key material; its variant is the format.
    pub key: KeyMaterial,
    /// SHA-256 of the plaintext (`fileSha256`, Signal `plaintextHash`).
    pub file_sha256: [u8; 32],
    /// SHA-256 of the blob (`fileEncSha256`, Signal `digest`).
    pub file_enc_sha256: [u8; 32],
    /// Plaintext length in bytes (`fileLength`, Signal `size`).
    pub file_length: u64,
    /// Blob length in bytes (what is uploaded and stored).
    pub blob_length: u64,
    /// WhatsApp streaming sidecar: 10 bytes per 64 KiB window (video/audio).
    pub sidecar: Option<Vec<u8>>,
    /// Signal incremental MAC (concatenated 32-byte digests) and its chunk size.
    pub incremental_mac: Option<IncrementalMacInfo>,
    /// Media metadata for the recipient (dimensions, duration, waveform, thumbnail, …).
    /// Filled by the media-inspection pipeline; passed through untouched here.
    pub metadata: Option<serde_json::Value>,
}

/// A Signal incremental MAC as carried in an `AttachmentPointer`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IncrementalMacInfo {
    /// Concatenated 32-byte HMAC-SHA256 digests.
    pub digests: Vec<u8>,
    /// Chunk size in bytes.
    pub chunk_size: u32,
}

impl Descriptor {
    /// The attachment format of this descriptor.
    pub fn format(&self) -> MediaFormat {
        self.key.format()
    }

    /// Parses a descriptor, with an error naming the bad field.
    pub fn from_json(json: &str) -> Result<Self> {
        let wire: DescriptorWire =
            serde_json::from_str(json).map_err(|e| FormatError::Descriptor(e.to_string()))?;
        Descriptor::try_from(wire)
    }

    /// Pretty-printed JSON (contains the key: treat as secret).
    pub fn to_json_pretty(&self) -> String {
        // Serializing plain strings and numbers into a String cannot fail.
        serde_json::to_string_pretty(&DescriptorWire::from(self.clone())).unwrap_or_default()
    }

    /// Expected blob length for this descriptor's format and plaintext length.
    pub fn expected_blob_length(&self) -> u64 {
        match self.format() {
            MediaFormat::Signal => signal::blob_length(self.file_length),
            _ => whatsapp::blob_length(self.file_length),
        }
    }
}

impl fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Descriptor")
            .field("format", &self.format())
            .field("kind", &self.kind)
            .field("mime", &self.mime)
            .field("key", &"<redacted>")
            .field("file_sha256", &hex::encode(self.file_sha256))
            .field("file_enc_sha256", &hex::encode(self.file_enc_sha256))
            .field("file_length", &self.file_length)
            .field("blob_length", &self.blob_length)
            .field("sidecar_len", &self.sidecar.as_ref().map(Vec::len))
            .field("incremental_mac", &self.incremental_mac.is_some())
            .finish()
    }
}

/// The JSON shape of a [`Descriptor`]; binary fields as base64 strings.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DescriptorWire {
    format: MediaFormat,
    kind: MediaKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mime: Option<String>,
    key: WireSecret,
    file_sha256: String,
    #[serde(alias = "digest")]
    file_enc_sha256: String,
    #[serde(alias = "size")]
    file_length: u64,
    blob_length: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sidecar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incremental_mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunk_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<serde_json::Value>,
}

/// A base64 key string that is wiped when dropped.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
struct WireSecret(String);

impl TryFrom<DescriptorWire> for Descriptor {
    type Error = FormatError;

    fn try_from(w: DescriptorWire) -> Result<Self> {
        let key_bytes = b64_decode("key", &w.key.0)?;
        let key = match w.format {
            MediaFormat::Whatsapp if key_bytes.len() != whatsapp::MEDIA_KEY_LEN => {
                return Err(FormatError::FieldLength {
                    field: "key",
                    expected: whatsapp::MEDIA_KEY_LEN,
                    actual: key_bytes.len(),
                });
            }
            MediaFormat::Signal if key_bytes.len() != signal::KEY_LEN => {
                return Err(FormatError::FieldLength {
                    field: "key",
                    expected: signal::KEY_LEN,
                    actual: key_bytes.len(),
                });
            }
            f => KeyMaterial::from_bytes(f, &key_bytes)?,
        };
        let incremental_mac = match (w.incremental_mac, w.chunk_size) {
            (None, None) => None,
            (Some(mac), Some(chunk_size)) => {
                let digests = b64_decode("incremental_mac", &mac)?.to_vec();
                if chunk_size == 0 || digests.is_empty() || !digests.len().is_multiple_of(32) {
                    return Err(FormatError::InvalidIncrementalMac(
                        "chunk_size must be positive and incremental_mac whole 32-byte digests",
                    ));
                }
                Some(IncrementalMacInfo {
                    digests,
                    chunk_size,
                })
            }
            _ => {
                return Err(FormatError::Descriptor(
                    "`incremental_mac` and `chunk_size` go together".into(),
                ));
            }
        };
        if incremental_mac.is_some() && w.format != MediaFormat::Signal {
            return Err(FormatError::Descriptor(
                "`incremental_mac` is a signal-format field".into(),
            ));
        }
        let sidecar = match w.sidecar {
            Some(s) if w.format == MediaFormat::Whatsapp => {
                Some(b64_decode("sidecar", &s)?.to_vec())
            }
            Some(_) => {
                return Err(FormatError::Descriptor(
                    "`sidecar` is a whatsapp-format field".into(),
                ));
            }
            None => None,
        };
        Ok(Descriptor {
            kind: w.kind,
            mime: w.mime,
            key,
            file_sha256: b64_array("file_sha256", &w.file_sha256)?,
            file_enc_sha256: b64_array("file_enc_sha256", &w.file_enc_sha256)?,
            file_length: w.file_length,
            blob_length: w.blob_length,
            sidecar,
            incremental_mac,
            metadata: w.metadata,
        })
    }
}

impl From<Descriptor> for DescriptorWire {
    fn from(d: Descriptor) -> Self {
        let (incremental_mac, chunk_size) = match &d.incremental_mac {
            Some(m) => (Some(b64(&m.digests)), Some(m.chunk_size)),
            None => (None, None),
        };
        DescriptorWire {
            format: d.format(),
            kind: d.kind,
            mime: d.mime.clone(),
            key: WireSecret(b64(d.key.as_bytes())),
            file_sha256: b64(&d.file_sha256),
            file_enc_sha256: b64(&d.file_enc_sha256),
            file_length: d.file_length,
            blob_length: d.blob_length,
            sidecar: d.sidecar.as_deref().map(b64),
            incremental_mac,
            chunk_size,
            metadata: d.metadata.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Format-independent sealing.

/// What to produce when sealing.
#[derive(Clone, Debug)]
pub struct SealOptions {
    /// `whatsapp` or `signal` (`opaque` is rejected).
    pub format: MediaFormat,
    /// Media kind (selects the WhatsApp HKDF info string; recorded in the descriptor).
    pub kind: MediaKind,
    /// MIME type to record.
    pub mime: Option<String>,
    /// WhatsApp: also produce the streaming sidecar (meant for video and audio).
    pub sidecar: bool,
    /// Signal: produce the incremental MAC; needs the exact plaintext size up front.
    pub incremental_mac_for_size: Option<u64>,
}

impl SealOptions {
    /// Defaults that match what the clients do: sidecar for WhatsApp video/audio/voice,
    /// no incremental MAC (it needs the size: see [`SealOptions::incremental_mac_for_size`]).
    pub fn new(format: MediaFormat, kind: MediaKind) -> Self {
        SealOptions {
            format,
            kind,
            mime: None,
            sidecar: format == MediaFormat::Whatsapp
                && matches!(kind, MediaKind::Video | MediaKind::Audio | MediaKind::Voice),
            incremental_mac_for_size: None,
        }
    }
}

/// An encryptor for either format: feed plaintext, get a blob and a [`Descriptor`].
pub enum Sealer {
    Whatsapp {
        enc: Box<whatsapp::Encryptor>,
        key: whatsapp::MediaKey,
        kind: MediaKind,
        mime: Option<String>,
    },
    Signal {
        enc: Box<signal::Encryptor>,
        key: signal::SignalKey,
        kind: MediaKind,
        mime: Option<String>,
    },
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sealer::Whatsapp { kind, .. } => write!(f, "Sealer::Whatsapp({kind})"),
            Sealer::Signal { kind, .. } => write!(f, "Sealer::Signal({kind})"),
        }
    }
}

impl Sealer {
    /// A sealer with a fresh random key (and, for Signal, a fresh random IV).
    pub fn new(opts: &SealOptions) -> Result<Self> {
        match opts.format {
            MediaFormat::Whatsapp => {
                Self::with_key(opts, KeyMaterial::Whatsapp(whatsapp::MediaKey::generate()?))
            }
            MediaFormat::Signal => {
                Self::with_key(opts, KeyMaterial::Signal(signal::SignalKey::generate()?))
            }
            MediaFormat::Opaque => Err(FormatError::Descriptor(
                "cannot seal in the opaque format".into(),
            )),
        }
    }

    /// A sealer with a caller-chosen key. Never reuse a WhatsApp media key for different
    /// plaintexts (its IV is derived from the key).
    pub fn with_key(opts: &SealOptions, key: KeyMaterial) -> Result<Self> {
        match key {
            KeyMaterial::Whatsapp(key) => {
                let mut enc = whatsapp::Encryptor::new(&key, opts.kind);
                if opts.sidecar {
                    enc = enc.with_sidecar();
                }
                Ok(Sealer::Whatsapp {
                    enc: Box::new(enc),
                    key,
                    kind: opts.kind,
                    mime: opts.mime.clone(),
                })
            }
            KeyMaterial::Signal(key) => {
                let mut enc = signal::Encryptor::new(&key)?;
                if let Some(size) = opts.incremental_mac_for_size {
                    enc = enc.with_incremental_mac(size);
                }
                Ok(Sealer::Signal {
                    enc: Box::new(enc),
                    key,
                    kind: opts.kind,
                    mime: opts.mime.clone(),
                })
            }
        }
    }

    /// Encrypts `plain`, writing whatever ciphertext is ready to `out`.
    pub fn update<W: Write + ?Sized>(&mut self, plain: &[u8], out: &mut W) -> Result<()> {
        match self {
            Sealer::Whatsapp { enc, .. } => enc.update(plain, out),
            Sealer::Signal { enc, .. } => enc.update(plain, out),
        }
    }

    /// Writes the rest of the blob and returns its descriptor.
    pub fn finish<W: Write + ?Sized>(self, out: &mut W) -> Result<Descriptor> {
        match self {
            Sealer::Whatsapp {
                enc,
                key,
                kind,
                mime,
            } => {
                let s = enc.finish(out)?;
                Ok(Descriptor {
                    kind,
                    mime,
                    key: KeyMaterial::Whatsapp(key),
                    file_sha256: s.file_sha256,
                    file_enc_sha256: s.file_enc_sha256,
                    file_length: s.file_length,
                    blob_length: s.blob_length,
                    sidecar: s.sidecar,
                    incremental_mac: None,
                    metadata: None,
                })
            }
            Sealer::Signal {
                enc,
                key,
                kind,
                mime,
            } => {
                let s = enc.finish(out)?;
                Ok(Descriptor {
                    kind,
                    mime,
                    key: KeyMaterial::Signal(key),
                    file_sha256: s.plaintext_sha256,
                    file_enc_sha256: s.digest,
                    file_length: s.size,
                    blob_length: s.blob_length,
                    sidecar: None,
                    incremental_mac: s.incremental_mac,
                    metadata: None,
                })
            }
        }
    }
}

/// Encrypts everything `input` yields into `output` with a fresh key; returns the descriptor.
pub fn seal<R: Read, W: Write>(
    opts: &SealOptions,
    mut input: R,
    mut output: W,
) -> Result<Descriptor> {
    let mut sealer = Sealer::new(opts)?;
    let mut buf = vec![0u8; IO_CHUNK];
    loop {
        let n = read_some(&mut input, &mut buf)?;
        if n == 0 {
            break;
        }
        sealer.update(&buf[..n], &mut output)?;
    }
    let d = sealer.finish(&mut output)?;
    output.flush()?;
    Ok(d)
}

/// Proof that a blob passed structure, length, digest and MAC checks (pass 1 of opening).
#[derive(Clone, Debug)]
pub enum Verified {
    Whatsapp(whatsapp::Verified),
    Signal(signal::Verified),
}

/// Pass 1 of opening: checks length, blob digest, MAC (and sidecar / incremental MAC when the
/// descriptor has them) over everything `blob` yields. Releases nothing.
pub fn verify<R: Read>(desc: &Descriptor, mut blob: R) -> Result<Verified> {
    let mut buf = vec![0u8; IO_CHUNK];
    match &desc.key {
        KeyMaterial::Whatsapp(key) => {
            let keys = key.expand(desc.kind);
            let mut v = whatsapp::Verifier::new(&keys, whatsapp::Expect::from_descriptor(desc));
            loop {
                let n = read_some(&mut blob, &mut buf)?;
                if n == 0 {
                    break;
                }
                v.update(&buf[..n]);
            }
            Ok(Verified::Whatsapp(v.finish()?))
        }
        KeyMaterial::Signal(key) => {
            let mut v = signal::Verifier::new(key, signal::Expect::from_descriptor(desc))?;
            loop {
                let n = read_some(&mut blob, &mut buf)?;
                if n == 0 {
                    break;
                }
                v.update(&buf[..n]);
            }
            Ok(Verified::Signal(v.finish()?))
        }
    }
}

/// What [`open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Plaintext bytes written.
    pub plaintext_length: u64,
    /// SHA-256 of the plaintext written (equal to the descriptor's).
    pub plaintext_sha256: [u8; 32],
}

/// Pass 2 of opening: decrypts `blob` (read again from its start) into `out`, given the proof
/// of pass 1. Checks padding, plaintext length and digest, and that the blob did not change.
pub fn decrypt_verified<R: Read, W: Write>(
    desc: &Descriptor,
    verified: &Verified,
    mut blob: R,
    mut out: W,
) -> Result<Opened> {
    let mut buf = vec![0u8; IO_CHUNK];
    let opened = match (&desc.key, verified) {
        (KeyMaterial::Whatsapp(key), Verified::Whatsapp(v)) => {
            let keys = key.expand(desc.kind);
            let mut d = whatsapp::Decryptor::new(&keys, v, whatsapp::Expect::from_descriptor(desc));
            loop {
                let n = read_some(&mut blob, &mut buf)?;
                if n == 0 {
                    break;
                }
                d.update(&buf[..n], &mut out)?;
            }
            d.finish(&mut out)?
        }
        (KeyMaterial::Signal(key), Verified::Signal(v)) => {
            let mut d = signal::Decryptor::new(key, v, signal::Expect::from_descriptor(desc));
            loop {
                let n = read_some(&mut blob, &mut buf)?;
                if n == 0 {
                    break;
                }
                d.update(&buf[..n], &mut out)?;
            }
            d.finish(&mut out)?
        }
        _ => {
            return Err(FormatError::Descriptor(
                "verification proof is for another format".into(),
            ));
        }
    };
    out.flush()?;
    Ok(opened)
}

/// Verifies then decrypts a re-readable blob: pass 1 ([`verify`]) over the whole blob, seek
/// back to where it started, pass 2 ([`decrypt_verified`]). Nothing is written to `out` unless
/// pass 1 succeeded.
pub fn open<R: Read + Seek, W: Write>(desc: &Descriptor, mut blob: R, out: W) -> Result<Opened> {
    let start = blob.stream_position()?;
    let verified = verify(desc, &mut blob)?;
    blob.seek(SeekFrom::Start(start))?;
    decrypt_verified(desc, &verified, blob, out)
}

/// Opens the blob file `blob` into the file `out`, which appears only if every check passed:
/// the plaintext is written to a fresh sibling file (`<out>.partial-<random>`, mode 0600 on
/// Unix) that is renamed over `out` on success and removed on any failure, so a plaintext
/// that fails its length or digest check is never left behind.
pub fn open_to_path(
    desc: &Descriptor,
    blob: &std::path::Path,
    out: &std::path::Path,
) -> Result<Opened> {
    let suffix = hex::encode(*random_bytes::<6>()?);
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{suffix}"));
    let tmp = out.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let file = options.open(&tmp)?;
        let blob = io::BufReader::new(std::fs::File::open(blob)?);
        let mut writer = io::BufWriter::new(file);
        let opened = open(desc, blob, &mut writer)?;
        writer
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()?;
        std::fs::rename(&tmp, out)?;
        Ok(opened)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Async [`seal`]: reads plaintext from `input`, writes the blob to `output` (tokio I/O; the
/// crypto runs inline in 64 KiB steps, so memory stays flat).
pub async fn seal_async<R, W>(opts: &SealOptions, mut input: R, mut output: W) -> Result<Descriptor>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut sealer = Sealer::new(opts)?;
    let mut buf = vec![0u8; IO_CHUNK];
    let mut out = Vec::with_capacity(IO_CHUNK + 64);
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.clear();
        sealer.update(&buf[..n], &mut out)?;
        output.write_all(&out).await?;
    }
    out.clear();
    let d = sealer.finish(&mut out)?;
    output.write_all(&out).await?;
    output.flush().await?;
    Ok(d)
}

/// Async [`open`]: pass 1 over `blob`, seek back, pass 2 into `output`. Nothing is written
/// unless pass 1 succeeded.
pub async fn open_async<R, W>(desc: &Descriptor, mut blob: R, mut output: W) -> Result<Opened>
where
    R: tokio::io::AsyncRead + tokio::io::AsyncSeek + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};
    let start = blob.stream_position().await?;
    let mut buf = vec![0u8; IO_CHUNK];
    let verified = match &desc.key {
        KeyMaterial::Whatsapp(key) => {
            let keys = key.expand(desc.kind);
            let mut v = whatsapp::Verifier::new(&keys, whatsapp::Expect::from_descriptor(desc));
            loop {
                let n = blob.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                v.update(&buf[..n]);
            }
            Verified::Whatsapp(v.finish()?)
        }
        KeyMaterial::Signal(key) => {
            let mut v = signal::Verifier::new(key, signal::Expect::from_descriptor(desc))?;
            loop {
                let n = blob.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                v.update(&buf[..n]);
            }
            Verified::Signal(v.finish()?)
        }
    };
    blob.seek(SeekFrom::Start(start)).await?;
    enum Pass2 {
        W(whatsapp::Decryptor),
        S(signal::Decryptor),
    }
    let mut dec = match (&desc.key, &verified) {
        (KeyMaterial::Whatsapp(key), Verified::Whatsapp(v)) => Pass2::W(whatsapp::Decryptor::new(
            &key.expand(desc.kind),
            v,
            whatsapp::Expect::from_descriptor(desc),
        )),
        (KeyMaterial::Signal(key), Verified::Signal(v)) => Pass2::S(signal::Decryptor::new(
            key,
            v,
            signal::Expect::from_descriptor(desc),
        )),
        _ => {
            return Err(FormatError::Descriptor(
                "verification proof is for another format".into(),
            ));
        }
    };
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(IO_CHUNK + 64));
    loop {
        let n = blob.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.clear();
        match &mut dec {
            Pass2::W(d) => d.update(&buf[..n], &mut *out)?,
            Pass2::S(d) => d.update(&buf[..n], &mut *out)?,
        }
        output.write_all(&out).await?;
    }
    out.clear();
    let opened = match dec {
        Pass2::W(d) => d.finish(&mut *out)?,
        Pass2::S(d) => d.finish(&mut *out)?,
    };
    output.write_all(&out).await?;
    output.flush().await?;
    Ok(opened)
}

/// Like `Read::read`, retrying on `Interrupted`.
pub(crate) fn read_some<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

// The HMAC both formats use (one helper for the whole crate).
pub(crate) use crate::crypto::mac::{HmacSha256, hmac_sha256};

#[cfg(test)]
mod tests {
    use super::cbc_hmac::{cbc_encrypt_in_place, cbc_encryptor};
    use std::io::Cursor;

    use proptest::prelude::*;

    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(7919) >> 3) as u8)
            .collect()
    }

    fn sealed(format: MediaFormat, kind: MediaKind, plain: &[u8]) -> (Vec<u8>, Descriptor) {
        let mut opts = SealOptions::new(format, kind);
        opts.mime = Some("application/octet-stream".into());
        let mut blob = Vec::new();
        let d = seal(&opts, plain, &mut blob).unwrap();
        (blob, d)
    }

    fn open_vec(d: &Descriptor, blob: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        open(d, Cursor::new(blob), &mut out)?;
        Ok(out)
    }

    /// The descriptor an attacker who controls the transport *and* the digest (but not the
    /// key) would need: blob length and digest recomputed for the tampered blob.
    fn with_digest_of(d: &Descriptor, blob: &[u8]) -> Descriptor {
        let mut d = d.clone();
        d.file_enc_sha256 = sha256(blob);
        d.blob_length = blob.len() as u64;
        d
    }

    const FORMATS: [MediaFormat; 2] = [MediaFormat::Whatsapp, MediaFormat::Signal];

    /// Frozen vectors, computed independently of this crate (Python `cryptography` + `hmac`,
    /// following the format definitions in docs/FORMATS-E2EE.md). Do not change.
    #[test]
    fn frozen_vectors() {
        // WhatsApp video: key 00..1f, plaintext i % 251 for 70 000 bytes, with sidecar.
        let key = whatsapp::MediaKey::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap();
        let plain: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let (blob, s) = whatsapp::encrypt(&key.expand(MediaKind::Video), &plain, true).unwrap();
        assert_eq!(blob.len(), 70_026);
        assert_eq!(
            hex::encode(s.file_sha256),
            "9dc177c2fde29dea8e7c29f7ddf147b7c449c99d049c62f3aac0a5933ecf76a3"
        );
        assert_eq!(
            hex::encode(s.file_enc_sha256),
            "58928e4db5a42915a45fabeee3c47d192db27cae09be915c4472c05cece17a44"
        );
        assert_eq!(hex::encode(s.mac), "fd7f3efa53b93c651c90");
        assert_eq!(
            hex::encode(s.sidecar.unwrap()),
            "06fd19b0092b6c93e4b288d3cbde71e16e70a2bd"
        );
        // Signal: key 40..7f, IV c8..d7, plaintext i % 7 for 1000 bytes (padded to 1020).
        let key = signal::SignalKey::from_bytes(&(64u8..128).collect::<Vec<_>>()).unwrap();
        let iv: [u8; 16] = core::array::from_fn(|i| 200 + i as u8);
        let plain: Vec<u8> = (0..1000u32).map(|i| (i % 7) as u8).collect();
        let (blob, s) = signal::encrypt_with_iv(&key, iv, &plain).unwrap();
        assert_eq!(signal::pad_size(1000), 1020);
        assert_eq!(blob.len(), 1072);
        assert_eq!(
            hex::encode(s.digest),
            "994023800bbcca101e316138a164e1b31cc86f7b2d88141b98afa155c9547684"
        );
    }

    #[test]
    fn descriptor_json_roundtrip_and_redaction() {
        for format in FORMATS {
            let (blob, d) = sealed(format, MediaKind::Video, &sample(70_000));
            let json = d.to_json_pretty();
            let back = Descriptor::from_json(&json).unwrap();
            assert_eq!(back, d);
            let via_serde: Descriptor = serde_json::from_str(&json).unwrap();
            assert_eq!(via_serde, d);
            assert_eq!(open_vec(&back, &blob).unwrap(), sample(70_000));
            let dbg = format!("{d:?}");
            assert!(dbg.contains("<redacted>"));
            assert!(!dbg.contains(&b64(d.key.as_bytes())));
            assert_eq!(d.blob_length, d.expected_blob_length());
            if format == MediaFormat::Whatsapp {
                assert_eq!(d.sidecar.as_ref().map(Vec::len), Some(20));
            }
        }
    }

    #[test]
    fn descriptor_errors_are_clear() {
        let (_, d) = sealed(MediaFormat::Whatsapp, MediaKind::Image, b"hi");
        let json = d.to_json_pretty();
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["file_sha256"] = "not*base64!".into();
        let err = Descriptor::from_json(&v.to_string()).unwrap_err();
        assert!(
            matches!(
                err,
                FormatError::InvalidBase64 {
                    field: "file_sha256"
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "descriptor field `file_sha256` is not valid base64"
        );

        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["key"] = "@@@@".into();
        assert!(matches!(
            Descriptor::from_json(&v.to_string()),
            Err(FormatError::InvalidBase64 { field: "key" })
        ));
        v["key"] = b64(&[1; 16]).into();
        assert!(matches!(
            Descriptor::from_json(&v.to_string()),
            Err(FormatError::FieldLength {
                field: "key",
                expected: 32,
                actual: 16
            })
        ));
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["file_enc_sha256"] = b64(&[1; 31]).into();
        assert!(matches!(
            Descriptor::from_json(&v.to_string()),
            Err(FormatError::FieldLength {
                field: "file_enc_sha256",
                ..
            })
        ));
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["format"] = "opaque".into();
        assert!(matches!(
            Descriptor::from_json(&v.to_string()),
            Err(FormatError::Descriptor(_))
        ));
        assert!(matches!(
            Descriptor::from_json("{"),
            Err(FormatError::Descriptor(_))
        ));
        // URL-safe unpadded base64 and Signal's field names are accepted.
        let (_, s) = sealed(MediaFormat::Signal, MediaKind::Document, b"x");
        let mut v: serde_json::Value = serde_json::from_str(&s.to_json_pretty()).unwrap();
        let obj = v.as_object_mut().unwrap();
        let digest = obj.remove("file_enc_sha256").unwrap();
        obj.insert("digest".into(), digest);
        let size = obj.remove("file_length").unwrap();
        obj.insert("size".into(), size);
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.key.as_bytes());
        obj.insert("key".into(), key.into());
        assert_eq!(Descriptor::from_json(&v.to_string()).unwrap(), s);
    }

    #[test]
    fn wrong_key_is_a_mac_failure() {
        for format in FORMATS {
            let (blob, d) = sealed(format, MediaKind::Document, &sample(1000));
            let mut wrong = d.clone();
            wrong.key = match format {
                MediaFormat::Whatsapp => {
                    KeyMaterial::Whatsapp(whatsapp::MediaKey::generate().unwrap())
                }
                _ => KeyMaterial::Signal(signal::SignalKey::generate().unwrap()),
            };
            assert!(matches!(
                open_vec(&wrong, &blob),
                Err(FormatError::MacMismatch)
            ));
            // The same key under another kind is another WhatsApp key too.
            if format == MediaFormat::Whatsapp {
                let mut other = d.clone();
                other.kind = MediaKind::Audio;
                assert!(matches!(
                    open_vec(&other, &blob),
                    Err(FormatError::MacMismatch)
                ));
            }
        }
    }

    #[test]
    fn flipped_bits_in_every_region() {
        for format in FORMATS {
            let plain = sample(5000);
            let (blob, d) = sealed(format, MediaKind::Video, &plain);
            let n = blob.len();
            let mac_len = if format == MediaFormat::Whatsapp {
                10
            } else {
                32
            };
            // (region, byte index): Signal's IV is in the blob; WhatsApp's is derived, so its
            // first ciphertext block (the one the IV whitens) stands in for it.
            let regions = [
                ("iv/first block", 3),
                ("body", n / 2),
                ("last block", n - mac_len - 5),
                ("mac first byte", n - mac_len),
                ("mac last byte", n - 1),
            ];
            for (region, i) in regions {
                let mut bad = blob.clone();
                bad[i] ^= 0x01;
                let mut out = Vec::new();
                let err = open(&d, Cursor::new(&bad), &mut out).unwrap_err();
                assert!(
                    matches!(err, FormatError::EncDigestMismatch),
                    "{format} {region}: {err}"
                );
                assert!(out.is_empty(), "no plaintext may leave on failure");
                let forged = with_digest_of(&d, &bad);
                let err = open(&forged, Cursor::new(&bad), &mut out).unwrap_err();
                assert!(
                    matches!(err, FormatError::MacMismatch),
                    "{format} {region}: {err}"
                );
                assert!(out.is_empty(), "no plaintext may leave on failure");
            }
            // Sidecar tampering is a MAC failure too.
            if let Some(sc) = &d.sidecar {
                let mut bad = d.clone();
                let mut s = sc.clone();
                s[3] ^= 1;
                bad.sidecar = Some(s);
                assert!(matches!(
                    open_vec(&bad, &blob),
                    Err(FormatError::MacMismatch)
                ));
                bad.sidecar = Some(sc[..sc.len() - 1].to_vec());
                assert!(matches!(
                    open_vec(&bad, &blob),
                    Err(FormatError::InvalidSidecar { .. })
                ));
            }
        }
    }

    #[test]
    fn truncated_and_extended_blobs() {
        for format in FORMATS {
            let (blob, d) = sealed(format, MediaKind::Image, &sample(3000));
            let n = blob.len();
            for bad in [&blob[..n - 1], &blob[..n - 16], &blob[..10]] {
                let err = open_vec(&d, bad).unwrap_err();
                assert!(
                    matches!(
                        err,
                        FormatError::MalformedBlob { .. } | FormatError::BlobLengthMismatch { .. }
                    ),
                    "{format}: {err}"
                );
            }
            assert!(matches!(
                open_vec(&d, &blob[..n - 1]),
                Err(FormatError::MalformedBlob { .. })
            ));
            assert!(matches!(
                open_vec(&d, &blob[..n - 16]),
                Err(FormatError::BlobLengthMismatch { .. })
            ));
            let mut longer = blob.clone();
            longer.push(0);
            assert!(matches!(
                open_vec(&d, &longer),
                Err(FormatError::MalformedBlob { .. })
            ));
            longer.extend_from_slice(&[0; 15]);
            assert!(matches!(
                open_vec(&d, &longer),
                Err(FormatError::BlobLengthMismatch { .. })
            ));
            // Even with a forged digest and length, a truncated blob fails its MAC.
            let cut = [&blob[..16], &blob[32..]].concat();
            let mut forged = with_digest_of(&d, &cut);
            forged.file_length = d.file_length - 16;
            assert!(matches!(
                open_vec(&forged, &cut),
                Err(FormatError::MacMismatch)
            ));
        }
    }

    #[test]
    fn wrong_digests_in_descriptor() {
        for format in FORMATS {
            let (blob, d) = sealed(format, MediaKind::Voice, &sample(777));
            let mut bad = d.clone();
            bad.file_enc_sha256[0] ^= 1;
            assert!(matches!(
                open_vec(&bad, &blob),
                Err(FormatError::EncDigestMismatch)
            ));
            let mut bad = d.clone();
            bad.file_sha256[31] ^= 1;
            assert!(matches!(
                open_vec(&bad, &blob),
                Err(FormatError::PlainDigestMismatch)
            ));
            let mut bad = d.clone();
            bad.file_length += 1;
            let err = open_vec(&bad, &blob).unwrap_err();
            assert!(
                matches!(
                    err,
                    FormatError::BlobLengthMismatch { .. }
                        | FormatError::PlainLengthMismatch { .. }
                        | FormatError::PlainDigestMismatch
                        | FormatError::CorruptPlaintext
                ),
                "{format}: {err}"
            );
        }
    }

    #[test]
    fn bad_padding_behind_a_good_mac_is_corrupt_plaintext() {
        // WhatsApp: a final block that is not PKCS#7, authenticated with the right MAC.
        let key = whatsapp::MediaKey::generate().unwrap();
        let keys = key.expand(MediaKind::Document);
        let mut ct = [0xA5u8; 32];
        ct[31] = 0;
        cbc_encrypt_in_place(&mut cbc_encryptor(&keys.cipher_key, &keys.iv), &mut ct);
        let mut h = hmac_sha256(&keys.mac_key);
        hmac::Mac::update(&mut h, &keys.iv);
        hmac::Mac::update(&mut h, &ct);
        let tag = hmac::Mac::finalize(h).into_bytes();
        let blob = [&ct[..], &tag[..10]].concat();
        let d = Descriptor {
            kind: MediaKind::Document,
            mime: None,
            key: KeyMaterial::Whatsapp(key),
            file_sha256: [0; 32],
            file_enc_sha256: sha256(&blob),
            file_length: 31,
            blob_length: blob.len() as u64,
            sidecar: None,
            incremental_mac: None,
            metadata: None,
        };
        assert!(matches!(
            open_vec(&d, &blob),
            Err(FormatError::CorruptPlaintext)
        ));

        // Signal: same, with the IV in the blob.
        let skey = signal::SignalKey::generate().unwrap();
        let iv = [7u8; 16];
        let mut ct = [0x5Au8; 32];
        ct[31] = 17;
        cbc_encrypt_in_place(&mut cbc_encryptor(skey.aes_key(), &iv), &mut ct);
        let mut h = hmac_sha256(skey.mac_key());
        hmac::Mac::update(&mut h, &iv);
        hmac::Mac::update(&mut h, &ct);
        let tag = hmac::Mac::finalize(h).into_bytes();
        let blob = [&iv[..], &ct[..], &tag[..]].concat();
        let d = Descriptor {
            key: KeyMaterial::Signal(skey),
            file_enc_sha256: sha256(&blob),
            file_length: 10,
            blob_length: blob.len() as u64,
            ..d
        };
        assert!(matches!(
            open_vec(&d, &blob),
            Err(FormatError::CorruptPlaintext)
        ));
    }

    #[test]
    fn padding_oracle_probes_all_look_the_same() {
        // Classic CBC padding-oracle probes (tweaking the second-to-last block so the last
        // plaintext byte takes every value) never reach the padding check: every probe is the
        // same MAC failure, and nothing is written.
        for format in FORMATS {
            let (blob, d) = sealed(format, MediaKind::Document, &sample(100));
            let mac_len = if format == MediaFormat::Whatsapp {
                10
            } else {
                32
            };
            let target = blob.len() - mac_len - 16 - 1;
            for guess in 0..=255u8 {
                let mut probe = blob.clone();
                probe[target] ^= guess | 1;
                let forged = with_digest_of(&d, &probe);
                let mut out = Vec::new();
                let err = open(&forged, Cursor::new(&probe), &mut out).unwrap_err();
                assert!(matches!(err, FormatError::MacMismatch));
                assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn sealer_streams_in_pieces() {
        for format in FORMATS {
            let plain = sample(200_001);
            let mut opts = SealOptions::new(format, MediaKind::Video);
            opts.incremental_mac_for_size = Some(plain.len() as u64);
            let mut s = Sealer::new(&opts).unwrap();
            let mut blob = Vec::new();
            for c in plain.chunks(12_345) {
                s.update(c, &mut blob).unwrap();
            }
            let d = s.finish(&mut blob).unwrap();
            assert_eq!(d.blob_length, blob.len() as u64);
            assert_eq!(d.incremental_mac.is_some(), format == MediaFormat::Signal);
            assert_eq!(open_vec(&d, &blob).unwrap(), plain);
        }
        assert!(Sealer::new(&SealOptions::new(MediaFormat::Opaque, MediaKind::Image)).is_err());
    }

    #[test]
    fn open_to_path_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (blob, d) = sealed(MediaFormat::Signal, MediaKind::Image, &sample(2000));
        let blob_path = dir.path().join("blob");
        std::fs::write(&blob_path, &blob).unwrap();
        let out = dir.path().join("plain.bin");
        let mut bad = d.clone();
        bad.file_sha256[0] ^= 1;
        assert!(matches!(
            open_to_path(&bad, &blob_path, &out),
            Err(FormatError::PlainDigestMismatch)
        ));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "only the blob"
        );
        open_to_path(&d, &blob_path, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), sample(2000));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[tokio::test]
    async fn async_seal_and_open() {
        for format in FORMATS {
            let plain = sample(150_000);
            let opts = SealOptions::new(format, MediaKind::Audio);
            let mut blob = Vec::new();
            let d = seal_async(&opts, plain.as_slice(), &mut blob)
                .await
                .unwrap();
            let mut out = Vec::new();
            let opened = open_async(&d, Cursor::new(&blob), &mut out).await.unwrap();
            assert_eq!(out, plain);
            assert_eq!(opened.plaintext_length, plain.len() as u64);
            let mut bad = blob.clone();
            bad[100] ^= 1;
            let mut out = Vec::new();
            let err = open_async(&with_digest_of(&d, &bad), Cursor::new(&bad), &mut out)
                .await
                .unwrap_err();
            assert!(matches!(err, FormatError::MacMismatch));
            assert!(out.is_empty());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn roundtrip(
            plain in proptest::collection::vec(any::<u8>(), 0..5000),
            kind_ix in 0usize..6,
            signal in any::<bool>(),
            piece in 1usize..700,
        ) {
            let format = if signal { MediaFormat::Signal } else { MediaFormat::Whatsapp };
            let kind = MediaKind::ALL[kind_ix];
            let mut s = Sealer::new(&SealOptions::new(format, kind)).unwrap();
            let mut blob = Vec::new();
            for c in plain.chunks(piece) {
                s.update(c, &mut blob).unwrap();
            }
            let d = s.finish(&mut blob).unwrap();
            prop_assert!(format.length_is_valid(blob.len() as u64));
            let d = Descriptor::from_json(&d.to_json_pretty()).unwrap();
            let verified = verify(&d, blob.chunks(piece).flatten().copied().collect::<Vec<_>>().as_slice()).unwrap();
            let mut out = Vec::new();
            decrypt_verified(&d, &verified, blob.as_slice(), &mut out).unwrap();
            prop_assert_eq!(out, plain);
        }
    }
}
