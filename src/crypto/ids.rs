//! Media ids: a keyed derivation, so the same blob from the same partner, kind and format
//! gets the same id on every replica (that is how duplicate uploads find each other), while
//! the id reveals nothing about the content to anyone without the key.

use hmac::Mac;
use zeroize::Zeroizing;

use super::kdf::hkdf_sha256;
use super::keys::SecretKey;
use super::mac::hmac_sha256;
use crate::media::{MediaFormat, MediaKind};

const KDF_INFO: &[u8] = b"interop-media/v1/media-id";

#[derive(Clone)]
pub struct MediaIds(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MediaIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaIds(<redacted>)")
    }
}

impl MediaIds {
    pub fn new(master: &SecretKey) -> Self {
        MediaIds(hkdf_sha256(None, master.expose(), &[KDF_INFO]))
    }

    /// The id (32 lowercase hex digits) of a blob with digest `sha256`.
    pub fn derive(
        &self,
        partner: &str,
        kind: MediaKind,
        format: MediaFormat,
        sha256: &[u8; 32],
    ) -> String {
        let mut m = hmac_sha256(&self.0);
        // Length-prefixed parts: ("ab", "c") and ("a", "bc") derive different ids.
        for part in [
            partner.as_bytes(),
            kind.as_str().as_bytes(),
            format.as_str().as_bytes(),
        ] {
            m.update(&(part.len() as u32).to_be_bytes());
            m.update(part);
        }
        m.update(sha256);
        hex::encode(&m.finalize().into_bytes()[..16])
    }
}

/// Whether a string has the shape of a media id; anything else is refused before storage.
pub fn id_is_valid(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frozen: ids of stored media must not change between versions.
    #[test]
    fn derivation_is_frozen() {
        let ids = MediaIds::new(&SecretKey::from_bytes([0x42; 32]));
        let id = ids.derive(
            "birdychat",
            MediaKind::Image,
            MediaFormat::Whatsapp,
            &[0xab; 32],
        );
        assert!(id_is_valid(&id));
        assert_eq!(id, FROZEN_ID);
        assert_ne!(
            id,
            ids.derive(
                "birdychat",
                MediaKind::Image,
                MediaFormat::Signal,
                &[0xab; 32]
            )
        );
    }

    /// Computed independently (Python `hmac` + `hashlib`: HKDF by RFC 5869, then HMAC).
    const FROZEN_ID: &str = "9b5a1b0b876c1b7f6999e9526193f86d";
}
