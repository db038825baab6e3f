//! Frozen at-rest format: committed vectors that any change to the object layout, key
//! derivation, nonce construction or chunking breaks. Regenerate only for a new format
//! version: `REGENERATE_VECTORS=1 cargo test --test format_vectors`.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::collections::BTreeMap;

use bytes::BytesMut;
use interop_media::crypto::keys::{KeyRing, SecretKey};
use interop_media::crypto::object::{ObjectMeta, open_header, seal_header_with};
use interop_media::crypto::stream::{Opener, Sealer, chunk_count, plain_len};
use interop_media::media::{MediaFormat, MediaKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/at_rest_v1.json");
const ID: &str = "0123456789abcdef0123456789abcdef";
const KID: &str = "v1";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Vector {
    plaintext_len: usize,
    /// Whole object as hex, for the small cases.
    object_hex: Option<String>,
    object_len: usize,
    object_sha256: String,
}

fn key() -> SecretKey {
    SecretKey::from_bytes([0x42; 32])
}

fn meta() -> ObjectMeta {
    ObjectMeta {
        partner: "birdychat".into(),
        kind: MediaKind::Video,
        format: MediaFormat::Signal,
        sha256: hex::encode([0xab; 32]),
        created: 1_790_000_000,
        expires: 1_792_592_000,
        generation: "0102030405060708".into(),
    }
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31).wrapping_add(7) % 256) as u8)
        .collect()
}

fn seal(len: usize) -> Vec<u8> {
    let (header, cipher) = seal_header_with(KID, &key(), &[0x5a; 32], ID, &meta()).unwrap();
    let mut out = BytesMut::from(&header[..]);
    let mut s = Sealer::new(cipher);
    // Uneven pieces: the output must not depend on how the body arrived.
    for piece in plaintext(len).chunks(7777) {
        s.push(piece, &mut out).unwrap();
    }
    s.finish(&mut out).unwrap();
    out.to_vec()
}

const LENGTHS: [usize; 6] = [0, 1, 100, 65_536, 65_537, 200_000];

#[test]
fn at_rest_format_is_frozen() {
    let computed: Vec<Vector> = LENGTHS
        .iter()
        .map(|&len| {
            let obj = seal(len);
            Vector {
                plaintext_len: len,
                object_hex: (obj.len() <= 512).then(|| hex::encode(&obj)),
                object_len: obj.len(),
                object_sha256: hex::encode(Sha256::digest(&obj)),
            }
        })
        .collect();
    if std::env::var_os("REGENERATE_VECTORS").is_some() {
        std::fs::write(
            VECTORS,
            serde_json::to_string_pretty(&computed).unwrap() + "\n",
        )
        .unwrap();
    }
    let committed: Vec<Vector> =
        serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    assert_eq!(
        computed, committed,
        "the at-rest format changed: that needs a new VERSION, not new vectors"
    );
}

#[test]
fn committed_vectors_open() {
    let committed: Vec<Vector> =
        serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let ring = KeyRing::new(KID.into(), BTreeMap::from([(KID.to_string(), key())])).unwrap();
    for v in committed.iter().filter(|v| v.object_hex.is_some()) {
        let obj = hex::decode(v.object_hex.as_ref().unwrap()).unwrap();
        let h = open_header(&ring, ID, &obj).unwrap();
        assert_eq!(h.meta, meta());
        let payload = &obj[h.header_len as usize..];
        let len = plain_len(payload.len() as u64).unwrap();
        let mut out = BytesMut::new();
        let mut o = Opener::new(h.cipher, 0, chunk_count(len));
        o.push(payload, &mut out).unwrap();
        o.finish(&mut out).unwrap();
        assert_eq!(out.to_vec(), plaintext(v.plaintext_len));
    }
}

/// The record envelope (`src/crypto/envelope.rs`), frozen like the object format. The
/// vectors were computed independently of this crate (Python `cryptography`'s AESGCM and an
/// RFC 5869 HKDF over `hmac`), not by this code.
#[derive(Debug, Deserialize)]
struct EnvelopeVector {
    kid: String,
    master_hex: String,
    label: String,
    context: String,
    aad: String,
    nonce_hex: String,
    plaintext_hex: String,
    envelope_hex: String,
}

#[test]
fn record_envelope_is_frozen() {
    use interop_media::crypto::envelope;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/envelope_v1.json"
    );
    let vectors: Vec<EnvelopeVector> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(vectors.len(), 3);
    for v in &vectors {
        let master: [u8; 32] = hex::decode(&v.master_hex).unwrap().try_into().unwrap();
        let ring = KeyRing::new(
            v.kid.clone(),
            BTreeMap::from([(v.kid.clone(), SecretKey::from_bytes(master))]),
        )
        .unwrap();
        let nonce: [u8; 12] = hex::decode(&v.nonce_hex).unwrap().try_into().unwrap();
        let plain = hex::decode(&v.plaintext_hex).unwrap();
        let want = hex::decode(&v.envelope_hex).unwrap();
        let (label, aad) = (v.label.as_bytes(), v.aad.as_bytes());
        let sealed =
            envelope::seal_with_nonce(&ring, label, &v.context, aad, &plain, nonce).unwrap();
        assert_eq!(
            hex::encode(&sealed),
            v.envelope_hex,
            "sealing {}",
            v.context
        );
        let opened = envelope::open(&ring, label, &v.context, aad, &want).unwrap();
        assert_eq!(&opened[..], &plain[..]);
        // Bound to where it is stored and to what it belongs to.
        assert!(envelope::open(&ring, label, &v.context, b"elsewhere", &want).is_err());
        assert!(envelope::open(&ring, label, "another-upload", aad, &want).is_err());
        let mut flipped = want.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            envelope::open(&ring, label, &v.context, aad, &flipped),
            Err(envelope::EnvelopeError::Auth)
        );
    }
}
