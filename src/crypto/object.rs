//! The stored object: a small authenticated header carrying the encrypted metadata, then the
//! STREAM payload. See `docs/FORMAT.md`; every constant here is frozen by committed vectors.
//!
//! ```text
//! magic(4) version(1) kid_len(1) kid salt(32) meta_len(2, BE) meta(meta_len) | payload…
//! ```
//! The per-object keys come from HKDF-SHA256(master[kid], salt, "interop-media/v1/object" 0x00 id),
//! so a blob copied under another id, or sealed under another key, does not open.

use super::kdf::hkdf_sha256;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::CryptoError;
use super::keys::{KeyRing, MAX_KID_LEN, SecretKey};
use super::stream::{ChunkCipher, TAG_SIZE};
use crate::media::{MediaFormat, MediaKind};

/// First bytes of every stored object. DO NOT CHANGE.
pub const MAGIC: [u8; 4] = [0x89, b'I', b'M', b'O'];
/// Format version written by this build. DO NOT CHANGE for version 1.
pub const VERSION: u8 = 1;
/// Salt length. DO NOT CHANGE.
pub const SALT_LEN: usize = 32;
/// HKDF info prefix. DO NOT CHANGE.
pub const KDF_INFO: &[u8] = b"interop-media/v1/object";
/// Upper bound on the sealed metadata, so a header always fits one small read.
pub const MAX_META_LEN: usize = 2048;
/// A prefix this long always holds the whole header.
pub const MAX_HEADER_LEN: usize = 4 + 1 + 1 + MAX_KID_LEN + SALT_LEN + 2 + MAX_META_LEN;

/// What the service knows about a stored media, sealed inside the object's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub partner: String,
    pub kind: MediaKind,
    pub format: MediaFormat,
    /// SHA-256 of the stored blob, hex.
    pub sha256: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; the media answers 410 from then on.
    pub expires: u64,
    /// Random per stored object: tokens bind it, so a token minted before a delete does not
    /// come back to life if the same content is uploaded again.
    pub generation: String,
}

/// An opened header: the metadata and the cipher for the payload that follows it.
#[derive(Debug)]
pub struct OpenedHeader {
    pub meta: ObjectMeta,
    pub header_len: u64,
    pub kid: String,
    pub cipher: ChunkCipher,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header needs at least {0} bytes")]
    Truncated(usize),
    #[error("not an interop-media object")]
    BadMagic,
    #[error("unsupported object version {0}")]
    Version(u8),
    #[error("object sealed with a key id not in the key ring")]
    UnknownKid,
    #[error("header failed authentication")]
    Auth,
    #[error("header is malformed")]
    Malformed,
}

struct ObjectKeys {
    payload: Zeroizing<[u8; 32]>,
    meta: Zeroizing<[u8; 32]>,
}

fn derive(master: &SecretKey, salt: &[u8], object_id: &str) -> ObjectKeys {
    let okm: Zeroizing<[u8; 64]> = hkdf_sha256(
        Some(salt),
        master.expose(),
        &[KDF_INFO, &[0], object_id.as_bytes()],
    );
    let mut payload = Zeroizing::new([0u8; 32]);
    let mut meta = Zeroizing::new([0u8; 32]);
    payload.copy_from_slice(&okm[..32]);
    meta.copy_from_slice(&okm[32..]);
    ObjectKeys { payload, meta }
}

// The metadata key is used exactly once per object (fresh salt each time), so a fixed nonce is safe.
const META_NONCE: [u8; 12] = [0; 12];

/// Build the header for a new object under the ring's active key.
pub fn seal_header(
    ring: &KeyRing,
    object_id: &str,
    meta: &ObjectMeta,
) -> Result<(Vec<u8>, ChunkCipher), CryptoError> {
    let mut salt = [0u8; SALT_LEN];
    super::random_bytes(&mut salt)?;
    let (kid, key) = ring.active();
    seal_header_with(kid, key, &salt, object_id, meta)
}

/// Deterministic core of [`seal_header`], public for the committed test vectors.
pub fn seal_header_with(
    kid: &str,
    key: &SecretKey,
    salt: &[u8; SALT_LEN],
    object_id: &str,
    meta: &ObjectMeta,
) -> Result<(Vec<u8>, ChunkCipher), CryptoError> {
    let keys = derive(key, salt, object_id);
    let mut meta_buf = serde_json::to_vec(meta).map_err(|_| CryptoError::Malformed)?;
    let sealed_meta_len = meta_buf.len() + TAG_SIZE;
    if sealed_meta_len > MAX_META_LEN || kid.len() > MAX_KID_LEN || kid.is_empty() {
        return Err(CryptoError::Malformed);
    }
    let mut header = Vec::with_capacity(6 + kid.len() + SALT_LEN + 2 + sealed_meta_len);
    header.extend_from_slice(&MAGIC);
    header.push(VERSION);
    header.push(kid.len() as u8);
    header.extend_from_slice(kid.as_bytes());
    header.extend_from_slice(salt);
    header.extend_from_slice(&(sealed_meta_len as u16).to_be_bytes());
    let aead = Aes256Gcm::new(&(*keys.meta).into());
    let tag = aead
        .encrypt_inout_detached(
            &Nonce::from(META_NONCE),
            &header,
            meta_buf.as_mut_slice().into(),
        )
        .map_err(|_| CryptoError::Malformed)?;
    header.extend_from_slice(&meta_buf);
    header.extend_from_slice(&tag);
    Ok((header, ChunkCipher::new(&keys.payload)))
}

/// Parse and authenticate a header from the start of an object.
pub fn open_header(
    ring: &KeyRing,
    object_id: &str,
    prefix: &[u8],
) -> Result<OpenedHeader, HeaderError> {
    let need = |n: usize| {
        if prefix.len() < n {
            Err(HeaderError::Truncated(n))
        } else {
            Ok(())
        }
    };
    need(6)?;
    if prefix[..4] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    if prefix[4] != VERSION {
        return Err(HeaderError::Version(prefix[4]));
    }
    let kid_len = usize::from(prefix[5]);
    if kid_len == 0 || kid_len > MAX_KID_LEN {
        return Err(HeaderError::Malformed);
    }
    let salt_at = 6 + kid_len;
    let len_at = salt_at + SALT_LEN;
    need(len_at + 2)?;
    let kid = std::str::from_utf8(&prefix[6..salt_at]).map_err(|_| HeaderError::Malformed)?;
    let meta_len = usize::from(u16::from_be_bytes([prefix[len_at], prefix[len_at + 1]]));
    if !(TAG_SIZE..=MAX_META_LEN).contains(&meta_len) {
        return Err(HeaderError::Malformed);
    }
    let meta_at = len_at + 2;
    let header_len = meta_at + meta_len;
    need(header_len)?;
    let key = ring.get(kid).ok_or(HeaderError::UnknownKid)?;
    let keys = derive(key, &prefix[salt_at..len_at], object_id);
    let mut meta_buf = Zeroizing::new(prefix[meta_at..header_len].to_vec());
    let body_len = meta_len - TAG_SIZE;
    let (body, tag) = meta_buf.split_at_mut(body_len);
    let tag = aes_gcm::Tag::try_from(&*tag).map_err(|_| HeaderError::Malformed)?;
    Aes256Gcm::new(&(*keys.meta).into())
        .decrypt_inout_detached(
            &Nonce::from(META_NONCE),
            &prefix[..meta_at],
            body.into(),
            &tag,
        )
        .map_err(|_| HeaderError::Auth)?;
    let meta: ObjectMeta = serde_json::from_slice(body).map_err(|_| HeaderError::Malformed)?;
    Ok(OpenedHeader {
        meta,
        header_len: header_len as u64,
        kid: kid.to_string(),
        cipher: ChunkCipher::new(&keys.payload),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    pub(crate) fn sample_meta() -> ObjectMeta {
        ObjectMeta {
            partner: "birdychat".into(),
            kind: MediaKind::Image,
            format: MediaFormat::Whatsapp,
            sha256: hex::encode([0x11; 32]),
            created: 1_790_000_000,
            expires: 1_792_592_000,
            generation: "0011223344556677".into(),
        }
    }

    fn ring() -> KeyRing {
        KeyRing::new(
            "k2".into(),
            BTreeMap::from([
                ("k1".into(), SecretKey::from_bytes([1; 32])),
                ("k2".into(), SecretKey::from_bytes([2; 32])),
            ]),
        )
        .unwrap()
    }

    #[test]
    fn header_roundtrip_and_binding() {
        let ring = ring();
        let (h, _) = seal_header(&ring, "abc", &sample_meta()).unwrap();
        let opened = open_header(&ring, "abc", &h).unwrap();
        assert_eq!(opened.meta, sample_meta());
        assert_eq!(opened.kid, "k2");
        assert_eq!(opened.header_len, h.len() as u64);
        // Another id: the derived key differs.
        assert_eq!(
            open_header(&ring, "abd", &h).unwrap_err(),
            HeaderError::Auth
        );
        // Every prefix shorter than the header asks for more.
        for cut in 0..h.len() {
            assert!(
                matches!(
                    open_header(&ring, "abc", &h[..cut]),
                    Err(HeaderError::Truncated(_)) | Err(HeaderError::BadMagic)
                ) || cut < 6
            );
        }
        // Any flipped bit fails (magic/version/kid get their own errors).
        for pos in 0..h.len() {
            let mut t = h.clone();
            t[pos] ^= 0x40;
            assert!(open_header(&ring, "abc", &t).is_err(), "pos {pos}");
        }
        // A ring without the kid.
        let other = KeyRing::new(
            "k1".into(),
            BTreeMap::from([("k1".into(), SecretKey::from_bytes([1; 32]))]),
        )
        .unwrap();
        assert_eq!(
            open_header(&other, "abc", &h).unwrap_err(),
            HeaderError::UnknownKid
        );
    }
}
