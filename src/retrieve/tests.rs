//! The download flow without the HTTP server: a memory store, objects sealed as the upload
//! path seals them, tokens minted as the token route mints them.

use std::collections::BTreeMap;

use bytes::BytesMut;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::memory::InMemory;

use super::*;
use crate::crypto::keys::SecretKey;
use crate::crypto::object::{ObjectMeta, seal_header};
use crate::crypto::stream::Sealer;
use crate::media::{MediaFormat, MediaKind};
use crate::storage::media_path;
use crate::tokens::{Claims, mint};

const NOW: u64 = 1_790_000_000;
const ID: &str = "00112233445566778899aabbccddeeff";

fn ring(kid: &str, byte: u8) -> KeyRing {
    KeyRing::new(
        kid.into(),
        BTreeMap::from([(kid.to_string(), SecretKey::from_bytes([byte; 32]))]),
    )
    .unwrap()
}

struct Fixture {
    store: Arc<InMemory>,
    retrieve: Retrieve,
    metrics: Metrics,
    tokens: KeyRing,
}

fn fixture() -> Fixture {
    let store = Arc::new(InMemory::new());
    let metrics = Metrics::new().unwrap();
    let tokens = ring("t1", 7);
    let retrieve = Retrieve::new(store.clone(), ring("m1", 9), tokens.clone(), 30, &metrics);
    Fixture {
        store,
        retrieve,
        metrics,
        tokens,
    }
}

impl Fixture {
    /// Store `plain` as media `ID` of partner `p1`, generation `generation`, expiring at
    /// `expires`.
    async fn put(&self, plain: &[u8], generation: [u8; 8], expires: u64) {
        let meta = ObjectMeta {
            partner: "p1".into(),
            kind: MediaKind::Document,
            format: MediaFormat::Opaque,
            sha256: hex::encode([0xab; 32]),
            created: NOW - 10,
            expires,
            generation: hex::encode(generation),
        };
        let (header, cipher) = seal_header(&ring("m1", 9), ID, &meta).unwrap();
        let mut out = BytesMut::from(&header[..]);
        let mut sealer = Sealer::new(cipher);
        sealer.push(plain, &mut out).unwrap();
        sealer.finish(&mut out).unwrap();
        self.store
            .put(&media_path(ID), out.freeze().into())
            .await
            .unwrap();
    }

    fn token(&self, generation: [u8; 8]) -> String {
        let mut media_id = [0u8; 16];
        hex::decode_to_slice(ID, &mut media_id).unwrap();
        mint(
            &self.tokens,
            &Claims {
                media_id,
                generation,
                partner: "p1".into(),
                audience: "app".into(),
                issued: NOW,
                expires: NOW + 300,
            },
        )
        .unwrap()
    }

    fn rejected(&self, reason: &str) -> u64 {
        self.metrics
            .tokens_rejected
            .with_label_values(&[reason])
            .get()
    }
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn a_valid_token_streams_any_range_of_the_media() {
    let f = fixture();
    let plain = plaintext(200_000);
    f.put(&plain, [1; 8], NOW + 3600).await;
    let r = f.retrieve.resolve(&f.token([1; 8]), NOW).await.unwrap();
    assert_eq!(r.len, plain.len() as u64);
    assert_eq!(r.id, ID);
    for (first, last) in [(0, 199_999), (0, 0), (65_535, 65_537), (150_000, 199_999)] {
        let pieces: Vec<Bytes> = f
            .retrieve
            .body(&r, first, last)
            .try_collect()
            .await
            .unwrap();
        let got = pieces.concat();
        assert_eq!(got, plain[first as usize..=last as usize], "{first}-{last}");
    }
}

#[tokio::test]
async fn a_token_for_an_earlier_generation_finds_nothing() {
    let f = fixture();
    f.put(b"first", [1; 8], NOW + 3600).await;
    let old = f.token([1; 8]);
    // Deleted and uploaded again: same id, new generation.
    f.put(b"first", [2; 8], NOW + 3600).await;
    let err = f.retrieve.resolve(&old, NOW).await.unwrap_err();
    assert!(matches!(err, ApiError::MediaNotFound), "{err:?}");
    assert_eq!(f.rejected("media_gone"), 1);
    assert!(f.retrieve.resolve(&f.token([2; 8]), NOW).await.is_ok());
}

#[tokio::test]
async fn a_deleted_media_stops_every_token_at_once() {
    let f = fixture();
    f.put(b"bytes", [3; 8], NOW + 3600).await;
    let t = f.token([3; 8]);
    assert!(f.retrieve.resolve(&t, NOW).await.is_ok());
    f.store.delete(&media_path(ID)).await.unwrap();
    let err = f.retrieve.resolve(&t, NOW).await.unwrap_err();
    assert!(matches!(err, ApiError::MediaNotFound), "{err:?}");
    assert_eq!(f.rejected("media_gone"), 1);
}

#[tokio::test]
async fn expired_media_and_bad_tokens_are_refused() {
    let f = fixture();
    f.put(b"bytes", [4; 8], NOW).await;
    let err = f.retrieve.resolve(&f.token([4; 8]), NOW).await.unwrap_err();
    assert!(matches!(err, ApiError::MediaExpired), "{err:?}");

    let err = f.retrieve.resolve("not-a-token", NOW).await.unwrap_err();
    assert!(matches!(err, ApiError::TokenInvalid), "{err:?}");
    assert_eq!(f.rejected("malformed"), 1);

    // Outside its validity (beyond the clock skew): refused before the store is asked.
    let err = f
        .retrieve
        .resolve(&f.token([4; 8]), NOW + 3600)
        .await
        .unwrap_err();
    assert!(!matches!(err, ApiError::MediaExpired), "{err:?}");
}

/// The fixture's media read through the instrumented store, counting store reads.
fn counting(f: &Fixture) -> Retrieve {
    let store = Arc::new(crate::metrics::InstrumentedStore::new(
        f.store.clone(),
        f.metrics.clone(),
    ));
    Retrieve::new(store, ring("m1", 9), f.tokens.clone(), 30, &f.metrics)
}

fn store_reads(f: &Fixture) -> u64 {
    f.metrics
        .store_duration
        .with_label_values(&["get"])
        .get_sample_count()
}

#[tokio::test]
async fn a_small_media_costs_one_store_read_and_a_large_one_two() {
    let f = fixture();
    let retrieve = counting(&f);
    for (len, reads) in [(64 * 1024, 1), (120 * 1024, 1), (2 << 20, 2)] {
        let plain = plaintext(len);
        f.put(&plain, [5; 8], NOW + 3600).await;
        let before = store_reads(&f);
        let r = retrieve.resolve(&f.token([5; 8]), NOW).await.unwrap();
        let got: Vec<Bytes> = retrieve.body(&r, 0, r.len - 1).try_collect().await.unwrap();
        assert_eq!(got.concat(), plain, "{len}");
        assert_eq!(
            store_reads(&f) - before,
            reads,
            "store reads for {len} bytes"
        );
    }
}

#[tokio::test]
async fn ranges_on_both_sides_of_the_first_read_are_exact() {
    let f = fixture();
    let plain = plaintext(400_000);
    f.put(&plain, [6; 8], NOW + 3600).await;
    let r = f.retrieve.resolve(&f.token([6; 8]), NOW).await.unwrap();
    let inside = r.head.prefix.len() as u64;
    assert!(inside > 64 * 1024 && inside < 400_000, "{inside}");
    for (first, last) in [
        (0, 399_999),
        (0, 0),
        (1000, inside - 1000),
        (inside - 70_000, inside + 70_000),
        (inside - 1, inside),
        (inside + 1, 399_999),
        (399_999, 399_999),
    ] {
        let pieces: Vec<Bytes> = f
            .retrieve
            .body(&r, first, last)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            pieces.concat(),
            plain[first as usize..=last as usize],
            "{first}-{last}"
        );
    }
}

#[tokio::test]
async fn the_rest_of_a_download_is_never_read_from_a_replaced_object() {
    let f = fixture();
    f.put(&plaintext(1 << 20), [7; 8], NOW + 3600).await;
    let r = f.retrieve.resolve(&f.token([7; 8]), NOW).await.unwrap();
    // Deleted and uploaded again between the first read and the rest.
    f.put(&plaintext(1 << 20), [8; 8], NOW + 3600).await;
    let got: Result<Vec<Bytes>, ApiError> = f.retrieve.body(&r, 0, r.len - 1).try_collect().await;
    assert!(got.is_err(), "the download went on over another object");
    // Refused by the pin, not by failing authentication of the other object's chunks.
    assert_eq!(f.metrics.decrypt_failures.get(), 0);
}
