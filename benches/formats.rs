//! Throughput of the E2EE attachment formats (`cargo bench --bench formats`).
//!
//! `encrypt` seals plaintext into a discarding sink; `open` is the full recipient path: pass 1
//! (blob SHA-256 + MAC) and pass 2 (decrypt + MAC again + plaintext SHA-256). Throughput is
//! plaintext bytes per second. Compare with `openssl speed -evp aes-256-cbc` (CBC encryption
//! alone): the formats add SHA-256 and HMAC-SHA256 passes over the data.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::hint::black_box;
use std::io::{Cursor, sink};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use interop_media::formats::{self, MediaFormat, MediaKind, SealOptions, Sealer};

const SIZES: [(usize, &str); 2] = [(64 * 1024, "64KiB"), (64 * 1024 * 1024, "64MiB")];

fn plaintext(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn bench(c: &mut Criterion) {
    for format in [MediaFormat::Whatsapp, MediaFormat::Signal] {
        let mut group = c.benchmark_group(format.as_str());
        for (len, label) in SIZES {
            if len > 1 << 20 {
                group.sample_size(10);
                group.warm_up_time(Duration::from_secs(1));
                group.measurement_time(Duration::from_secs(6));
            } else {
                group.sample_size(50);
                group.warm_up_time(Duration::from_millis(500));
                group.measurement_time(Duration::from_secs(2));
            }
            group.throughput(Throughput::Bytes(len as u64));
            let plain = plaintext(len);
            // No sidecar / incremental MAC: the base format only.
            let mut opts = SealOptions::new(format, MediaKind::Document);
            opts.sidecar = false;
            group.bench_with_input(BenchmarkId::new("encrypt", label), &plain, |b, plain| {
                b.iter(|| {
                    let mut s = Sealer::new(&opts).expect("sealer");
                    let mut out = sink();
                    for chunk in plain.chunks(formats::IO_CHUNK) {
                        s.update(chunk, &mut out).expect("update");
                    }
                    black_box(s.finish(&mut out).expect("finish"))
                })
            });
            let mut blob = Vec::new();
            let d = formats::seal(&opts, plain.as_slice(), &mut blob).expect("seal");
            group.bench_with_input(BenchmarkId::new("open", label), &blob, |b, blob| {
                b.iter(|| black_box(formats::open(&d, Cursor::new(blob), sink()).expect("open")))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
