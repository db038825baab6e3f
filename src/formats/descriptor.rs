//! The descriptor a sender hands a recipient (kind, key, digests, lengths, optional
//! sidecar or incremental MAC), its JSON wire form, and the key material it carries.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{
    FormatError, MediaFormat, MediaKind, Result, b64, b64_array, b64_decode, signal, whatsapp,
};

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
