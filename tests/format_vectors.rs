//! Frozen at-rest format: committed vectors that any change to the object layout, key
//! derivation, nonce construction or chunking breaks. Regenerate only for a new format
//! version: `REGENERATE_VECTORS=1 cargo test --test format_vectors`.

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
        s.push(piece, &mut out);
    }
    s.finish(&mut out);
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
