//! Download tokens: mint and verify rate (one token per iteration, reported as elements/s
//! = ops/s), the cost of rejecting a tampered token (full decode + HMAC, then refusal), and
//! of rejecting a 10 KB garbage string (should be refused before any decoding work).
//!
//! Run: `cargo bench --bench tokens`.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use interop_media::crypto::keys::{KeyRing, SecretKey};
use interop_media::tokens::{Claims, Rejection, mint, verify};

const NOW: u64 = 1_790_000_100;
const SKEW: u64 = 30;

fn ring() -> KeyRing {
    KeyRing::new(
        "t2".into(),
        BTreeMap::from([
            ("t1".to_string(), SecretKey::from_bytes([1; 32])),
            ("t2".to_string(), SecretKey::from_bytes([2; 32])),
        ]),
    )
    .expect("key ring")
}

/// A realistic token: a partner id and audience of typical length, five minutes of validity.
fn claims() -> Claims {
    Claims {
        media_id: [0xab; 16],
        generation: [0x5c; 8],
        partner: "birdychat".into(),
        audience: "gw-eu-1.birdychat".into(),
        issued: 1_790_000_000,
        expires: 1_790_000_300,
    }
}

/// Flip one character of the signature part (the last characters of the token) to another
/// base64url character, so the token still decodes and the HMAC is computed and refused.
fn tamper(token: &str) -> String {
    let mut t = token.as_bytes().to_vec();
    let i = t.len() - 3;
    t[i] = if t[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(t).expect("ascii")
}

fn bench(c: &mut Criterion) {
    let ring = ring();
    let claims = claims();
    let token = mint(&ring, &claims).expect("mint");
    let tampered = tamper(&token);
    let garbage = "A".repeat(10_000);
    assert_eq!(verify(&ring, &token, NOW, SKEW), Ok(claims.clone()));
    assert_eq!(
        verify(&ring, &tampered, NOW, SKEW),
        Err(Rejection::BadSignature)
    );
    assert_eq!(
        verify(&ring, &garbage, NOW, SKEW),
        Err(Rejection::Malformed)
    );

    let mut group = c.benchmark_group("tokens");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    group.bench_function("mint", |b| {
        b.iter(|| mint(&ring, black_box(&claims)).expect("mint"))
    });
    group.bench_function("verify", |b| {
        b.iter(|| verify(&ring, black_box(&token), NOW, SKEW).expect("verify"))
    });
    group.bench_function("verify_tampered", |b| {
        b.iter(|| verify(&ring, black_box(&tampered), NOW, SKEW).unwrap_err())
    });
    group.bench_function("verify_garbage_10KB", |b| {
        b.iter(|| verify(&ring, black_box(&garbage), NOW, SKEW).unwrap_err())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
