//! Media kinds, E2EE attachment formats and what can be checked about a sealed blob without keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a blob is, as declared by the gateway (`X-Media-Kind`); also the CLI's `--kind`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Image,
    Sticker,
    Voice,
    Audio,
    Video,
    Document,
}

impl MediaKind {
    pub const ALL: [MediaKind; 6] = [
        MediaKind::Image,
        MediaKind::Sticker,
        MediaKind::Voice,
        MediaKind::Audio,
        MediaKind::Video,
        MediaKind::Document,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Sticker => "sticker",
            MediaKind::Voice => "voice",
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Document => "document",
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MediaKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        MediaKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(())
    }
}

/// The end-to-end attachment format a sealed blob claims to be in (`X-Media-Format`); also the
/// CLI's `--format` (`opaque`: upload only, no sealing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MediaFormat {
    /// `AES-256-CBC(enc) || HMAC-SHA256[..10]`.
    Whatsapp,
    /// `IV(16) || AES-256-CBC || HMAC-SHA256(32)`.
    Signal,
    /// No structure known to the service.
    Opaque,
}

impl MediaFormat {
    pub const ALL: [MediaFormat; 3] = [
        MediaFormat::Whatsapp,
        MediaFormat::Signal,
        MediaFormat::Opaque,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            MediaFormat::Whatsapp => "whatsapp",
            MediaFormat::Signal => "signal",
            MediaFormat::Opaque => "opaque",
        }
    }

    /// Whether a blob of `len` bytes can be a well-formed blob of this format.
    ///
    /// CBC output is whole 16-byte blocks and PKCS#7 always adds at least one byte, so the
    /// ciphertext is at least one block; the MAC and (for Signal) the IV frame it.
    pub fn length_is_valid(self, len: u64) -> bool {
        match self {
            MediaFormat::Whatsapp => len >= 26 && (len - 10).is_multiple_of(16),
            MediaFormat::Signal => len >= 64 && (len - 48).is_multiple_of(16),
            MediaFormat::Opaque => true,
        }
    }
}

impl fmt::Display for MediaFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MediaFormat {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        MediaFormat::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(())
    }
}

/// A SHA-256 digest as declared in `X-Media-Sha256`: 64 hex digits or 44 base64 characters
/// (standard or URL-safe alphabet, padded or not), since WhatsApp-family gateways carry
/// `fileEncSha256` as base64 and most tooling prints hex.
pub fn parse_sha256(value: &str) -> Option<[u8; 32]> {
    let value = value.trim();
    let mut out = [0u8; 32];
    if value.len() == 64 {
        return hex::decode_to_slice(value, &mut out).ok().map(|()| out);
    }
    let bytes = crate::crypto::encoding::b64_decode_lenient(value)?;
    out.copy_from_slice(bytes.get(..32)?);
    (bytes.len() == 32).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn format_lengths() {
        assert!(!MediaFormat::Whatsapp.length_is_valid(25));
        assert!(MediaFormat::Whatsapp.length_is_valid(26));
        assert!(!MediaFormat::Whatsapp.length_is_valid(27));
        assert!(MediaFormat::Whatsapp.length_is_valid(42));
        assert!(!MediaFormat::Signal.length_is_valid(48));
        assert!(MediaFormat::Signal.length_is_valid(64));
        assert!(!MediaFormat::Signal.length_is_valid(65));
        assert!(MediaFormat::Signal.length_is_valid(80));
        assert!(MediaFormat::Opaque.length_is_valid(0));
    }

    #[test]
    fn digest_parsing() {
        let d = [0xabu8; 32];
        let hex = hex::encode(d);
        assert_eq!(parse_sha256(&hex), Some(d));
        assert_eq!(parse_sha256(&hex.to_uppercase()), Some(d));
        let b64 = base64::engine::general_purpose::STANDARD.encode(d);
        assert_eq!(parse_sha256(&b64), Some(d));
        let b64u = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        assert_eq!(parse_sha256(&b64u), Some([0xfb; 32]));
        assert_eq!(parse_sha256("abc"), None);
        assert_eq!(parse_sha256(&"g".repeat(64)), None);
        assert_eq!(parse_sha256(&"A".repeat(44)), None);
    }
}
