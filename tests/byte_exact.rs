//! Promise (issue 13): byte-exactness. Uploads of sizes on and around every STREAM chunk
//! (64 KiB of plaintext) and multipart part (8 MiB of sealed bytes) boundary, plus random
//! sizes, come back identical in full and in random ranges, on every backend.
//!
//! `cargo test --test byte_exact` runs the fast subset (sizes up to ~16 MiB). The full sweep
//! (0–64 MiB: every part boundary ± 1, every chunk boundary ± 1 of the first part, 40
//! random sizes, 8 random ranges each) runs with
//! `INTEROP_MEDIA_FULL_SWEEP=1 cargo test --test byte_exact -- --nocapture`.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod common;

use common::{ServiceBuilder, backends, block_on, http};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

const CHUNK: u64 = 64 << 10;
const SEALED_CHUNK: u64 = CHUNK + 16;
const PART: u64 = 8 << 20;

/// A small deterministic PRNG (xorshift64*), so a failing size can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

fn body(len: u64, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    let mut v = Vec::with_capacity(len as usize);
    while (v.len() as u64) < len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(len as usize);
    v
}

/// Plaintext sizes whose sealed object (header ≈ 200 bytes, then chunks of 64 KiB + 16)
/// ends near `k` whole parts: a few sizes either side of the estimate.
fn near_part(k: u64) -> Vec<u64> {
    let chunks = (k * PART) / SEALED_CHUNK;
    let plain = (k * PART).saturating_sub(chunks * 16 + 200);
    (0..5).map(|d| plain + d * 40 - 80).collect()
}

fn sizes(full: bool, rng: &mut Rng) -> Vec<u64> {
    let mut s = vec![0, 1, 2, 15, 16, 17];
    let chunk_edges = if full { 1..=128 } else { 1..=2 };
    for k in chunk_edges {
        s.extend([k * CHUNK - 1, k * CHUNK, k * CHUNK + 1]);
    }
    let parts = if full { 1..=7 } else { 1..=1 };
    for k in parts {
        s.extend([k * PART - 1, k * PART, k * PART + 1]);
        s.extend(near_part(k));
    }
    let randoms = if full { 40 } else { 3 };
    let max = if full { 64 << 20 } else { 12 << 20 };
    for _ in 0..randoms {
        s.push(rng.below(max));
    }
    s.retain(|&n| n <= 64 << 20);
    s.sort();
    s.dedup();
    s
}

#[test]
fn uploads_download_byte_exact_at_every_boundary() {
    let full = std::env::var_os("INTEROP_MEDIA_FULL_SWEEP").is_some();
    for backend in backends() {
        let svc = ServiceBuilder::new().backend(&backend).spawn();
        let mut rng = Rng(0x5eed_1234);
        let sizes = sizes(full, &mut rng);
        let ranges_per = if full { 8 } else { 3 };
        let (mut checks, mut mismatches) = (0u64, Vec::new());
        block_on(async {
            let c = http();
            for (i, &len) in sizes.iter().enumerate() {
                let data = body(len, i as u64 + 7);
                let r = c
                    .post(svc.url("/v1/media"))
                    .bearer_auth(&svc.partner_key)
                    .header("X-Media-Kind", "document")
                    .header("X-Media-Format", "opaque")
                    .header("X-Media-Sha256", hex::encode(Sha256::digest(&data)))
                    .body(data.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "size {len}: {}", r.status());
                let v: serde_json::Value = r.json().await.unwrap();
                let id = v["id"].as_str().unwrap().to_string();
                let t: serde_json::Value = c
                    .post(svc.url(&format!("/v1/media/{id}/tokens")))
                    .bearer_auth(&svc.partner_key)
                    .json(&serde_json::json!({"audience": "sweep"}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let url = svc.url(&format!("/v1/download/{}", t["token"].as_str().unwrap()));
                let got = c.get(&url).send().await.unwrap().bytes().await.unwrap();
                checks += 1;
                if got[..] != data[..] {
                    mismatches.push(format!("size {len}: full download differs"));
                }
                for _ in 0..ranges_per {
                    if len == 0 {
                        break;
                    }
                    let first = rng.below(len);
                    let last = first + rng.below((len - first).min(3 * CHUNK));
                    let r = c
                        .get(&url)
                        .header("range", format!("bytes={first}-{last}"))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status();
                    let got = r.bytes().await.unwrap();
                    checks += 1;
                    if status != StatusCode::PARTIAL_CONTENT
                        || got[..] != data[first as usize..=last as usize]
                    {
                        mismatches.push(format!("size {len}: range {first}-{last} differs"));
                    }
                }
                // Keep the store small: each media goes once checked.
                c.delete(svc.url(&format!("/v1/media/{id}")))
                    .bearer_auth(&svc.partner_key)
                    .send()
                    .await
                    .unwrap();
            }
        });
        println!(
            "byte-exactness ({}, {}): {} sizes, {checks} downloads, {} mismatches",
            backend.name(),
            if full { "full" } else { "fast" },
            sizes.len(),
            mismatches.len()
        );
        assert!(mismatches.is_empty(), "{mismatches:?}");
    }
}
