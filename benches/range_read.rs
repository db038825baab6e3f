//! Ranged vs full reads through the real download path.
//!
//! A 64 MiB plaintext is sealed with the stored format (header from `seal_header`, payload
//! from `Sealer`) and put under `storage::media_path(id)` in an `InMemory` store and in a
//! `LocalFileSystem` store in a temp dir. Each iteration then does what a download does after
//! the token check: `storage::read_head` (one ranged GET + header authentication), then
//! `retrieve::body(..)` collected to completion (one ranged GET of the covering chunks,
//! decrypt, trim). Throughput is the plaintext bytes returned (decimal MB/s), so the point
//! shows directly: a range costs what it returns (rounded up to 64 KiB chunks plus the fixed
//! header read), not the object size.
//!
//! Run: `cargo bench --bench range_read` (filter with e.g. `-- memory/`).

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use interop_media::crypto::keys::{KeyRing, SecretKey};
use interop_media::crypto::object::{ObjectMeta, seal_header};
use interop_media::crypto::stream::{Sealer, plain_len, sealed_len};
use interop_media::media::{MediaFormat, MediaKind};
use interop_media::retrieve::{Resolved, body};
use interop_media::storage::{media_path, read_head};
use interop_media::tokens::Claims;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;

const MIB: u64 = 1024 * 1024;
const OBJECT_LEN: u64 = 64 * MIB;
const ID: &str = "00112233445566778899aabbccddeeff";

fn ring() -> KeyRing {
    KeyRing::new(
        "k1".into(),
        BTreeMap::from([("k1".to_string(), SecretKey::from_bytes([0x17; 32]))]),
    )
    .expect("key ring")
}

fn claims() -> Claims {
    let mut media_id = [0u8; 16];
    hex::decode_to_slice(ID, &mut media_id).expect("hex id");
    Claims {
        media_id,
        generation: [0x01; 8],
        partner: "birdychat".into(),
        audience: "gw".into(),
        issued: 1_790_000_000,
        expires: 1_790_000_300,
    }
}

fn plaintext() -> Vec<u8> {
    (0..OBJECT_LEN as usize)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect()
}

/// The stored object, exactly as ingest writes it: header, then the STREAM payload.
fn sealed_object(ring: &KeyRing, plain: &[u8]) -> bytes::Bytes {
    let meta = ObjectMeta {
        partner: "birdychat".into(),
        kind: MediaKind::Video,
        format: MediaFormat::Opaque,
        sha256: hex::encode(Sha256::digest(plain)),
        created: 1_790_000_000,
        expires: 1_792_592_000,
        generation: hex::encode([0x01; 8]),
    };
    let (header, cipher) = seal_header(ring, ID, &meta).expect("seal header");
    let mut out = BytesMut::with_capacity(header.len() + sealed_len(plain.len() as u64) as usize);
    out.extend_from_slice(&header);
    let mut s = Sealer::new(cipher);
    s.push(plain, &mut out).expect("seal");
    s.finish(&mut out).expect("seal final");
    out.freeze()
}

/// What to do with the body stream.
enum Mode<'a> {
    /// Drain to completion (what is timed).
    Drain,
    /// Drain and keep the bytes and the piece sizes (the correctness pass).
    Collect(&'a mut Vec<u8>, &'a mut Vec<usize>),
    /// Stop after the first piece: the time to first byte a client would see.
    FirstPiece,
}

/// `read_head` + `body(first..=last)`; returns the plaintext bytes received.
async fn download(
    store: &Arc<dyn ObjectStore>,
    ring: &KeyRing,
    claims: &Claims,
    first: u64,
    last: u64,
    mut mode: Mode<'_>,
) -> u64 {
    let head = read_head(store.as_ref(), ring, ID)
        .await
        .expect("read_head");
    let len = plain_len(head.object_size - head.header.header_len).expect("payload length");
    let r = Resolved {
        claims: claims.clone(),
        id: ID.to_string(),
        head,
        len,
    };
    let mut s = body(
        store.clone(),
        &r,
        first,
        last,
        prometheus::IntCounter::new("x", "x").unwrap(),
    );
    let mut n = 0u64;
    while let Some(piece) = s.next().await {
        let piece = piece.expect("body piece");
        n += piece.len() as u64;
        match &mut mode {
            Mode::Drain => {}
            Mode::Collect(bytes, sizes) => {
                bytes.extend_from_slice(&piece);
                sizes.push(piece.len());
            }
            Mode::FirstPiece => return black_box(n),
        }
        black_box(&piece);
    }
    n
}

struct Case {
    name: &'static str,
    first: u64,
    last: u64,
}

fn cases() -> [Case; 3] {
    // Unaligned on purpose: a real client's range rarely starts on a chunk boundary.
    let mid = OBJECT_LEN / 2 - MIB / 2 + 1234;
    let tail = OBJECT_LEN - 1000;
    [
        Case {
            name: "full_64MiB",
            first: 0,
            last: OBJECT_LEN - 1,
        },
        Case {
            name: "mid_1MiB",
            first: mid,
            last: mid + MIB - 1,
        },
        Case {
            name: "tail_100B",
            first: tail,
            last: tail + 99,
        },
    ]
}

fn bench_store(
    c: &mut Criterion,
    rt: &Runtime,
    label: &str,
    store: Arc<dyn ObjectStore>,
    object: bytes::Bytes,
    plain: &[u8],
) {
    let ring = ring();
    let claims = claims();
    rt.block_on(store.put(&media_path(ID), PutPayload::from(object)))
        .expect("put");

    let mut group = c.benchmark_group(format!("range_read/{label}"));
    group.warm_up_time(Duration::from_secs(1));

    // The fixed cost every download pays before its first payload byte.
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    group.bench_function("read_head_only", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(read_head(store.as_ref(), &ring, ID).await.expect("head"));
                }
                t.elapsed()
            })
        })
    });

    for case in cases() {
        // Correctness once, outside the timing: what came back is exactly the range.
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        let n = rt.block_on(download(
            &store,
            &ring,
            &claims,
            case.first,
            case.last,
            Mode::Collect(&mut got, &mut sizes),
        ));
        assert_eq!(n, case.last - case.first + 1, "{label}/{}", case.name);
        assert!(
            got == plain[case.first as usize..=case.last as usize],
            "{label}/{}: wrong bytes",
            case.name
        );
        eprintln!(
            "range_read/{label}/{}: {} bytes in {} pieces, largest {} bytes",
            case.name,
            n,
            sizes.len(),
            sizes.iter().max().copied().unwrap_or(0)
        );

        if case.last - case.first + 1 == OBJECT_LEN {
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(8));
        } else {
            group
                .sample_size(50)
                .measurement_time(Duration::from_secs(3));
        }
        group.throughput(Throughput::BytesDecimal(n));
        group.bench_function(case.name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        black_box(
                            download(&store, &ring, &claims, case.first, case.last, Mode::Drain)
                                .await,
                        );
                    }
                    t.elapsed()
                })
            })
        });
    }

    // Time to first byte of a full read: how long a client waits before the first piece.
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    group.bench_function("full_64MiB_first_piece", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(
                        download(&store, &ring, &claims, 0, OBJECT_LEN - 1, Mode::FirstPiece).await,
                    );
                }
                t.elapsed()
            })
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    // actix-web runs each worker on a current-thread runtime; do the same here.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let plain = plaintext();
    let object = sealed_object(&ring(), &plain);

    bench_store(
        c,
        &rt,
        "memory",
        Arc::new(InMemory::new()),
        object.clone(),
        &plain,
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let local = LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
    bench_store(c, &rt, "local", Arc::new(local), object, &plain);
}

criterion_group!(benches, bench);
criterion_main!(benches);
