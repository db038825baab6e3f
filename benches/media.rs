//! Media pipeline benchmarks, each beside its anchor in the same run:
//!
//! - `thumbnail/12mp-jpeg`: the photo analysis of a 12-megapixel JPEG (header check, lossless
//!   metadata strip, thumbnail, blurhash) in process, beside `vipsthumbnail` (libvips) making
//!   a 100 px thumbnail of the same file (`thumbnail/vipsthumbnail-cli`, which includes its
//!   process start, and `thumbnail/vipsthumbnail-cli-per-photo-of-10`, one invocation for 10
//!   photos divided by 10, which spreads that start; `thumbnail/pool-roundtrip` is our analysis
//!   through a caged worker, which includes the pipe round trip the service really pays).
//! - `waveform/60s-voice`: duration and 64-value waveform of a 60 s Ogg Opus voice note.
//! - `worker/roundtrip`: a request through the worker pool that does no decoding (a document).
//! - `video-thumbnail/{1080p,2160p}-high`: the video analysis of an H.264 High MP4 including
//!   the OpenH264 decode of its first key frame and the thumbnail, beside `ffmpeg` making a
//!   100 px thumbnail of the same frame (`…/ffmpeg-cli`, which includes its process start).
//!
//! Samples are generated at start: the JPEG with the image crate, the voice note with
//! `ffmpeg` (skipped with a message when ffmpeg is missing). `cargo bench --bench media`.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use interop_media::media::MediaKind;
use interop_media::pipeline::pool::{Pool, PoolConfig};
use interop_media::pipeline::worker::Cage;
use interop_media::pipeline::{FileSlice, Limits, audio, mp4, photo, sniff};

fn jpeg_12mp(dir: &Path) -> PathBuf {
    let (w, h) = (4000u32, 3000u32);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let img = image::RgbImage::from_fn(w, h, |i, j| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let noise = (x >> 59) as u8;
        image::Rgb([
            ((i * 255 / w) as u8).wrapping_add(noise),
            ((j * 255 / h) as u8).wrapping_add(noise),
            (((i + j) * 255 / (w + h)) as u8) ^ noise,
        ])
    });
    let path = dir.join("photo-12mp.jpg");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    path
}

fn voice_60s(dir: &Path) -> Option<PathBuf> {
    let path = dir.join("voice-60s.ogg");
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("sine=frequency=220:duration=60,volume=0.5")
        .args(["-c:a", "libopus", "-b:a", "24k", "-ar", "48000", "-ac", "1"])
        .arg(&path)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(path)
}

fn sniffed(path: &Path) -> interop_media::pipeline::Sniffed {
    let head = std::fs::read(path).unwrap();
    sniff::sniff(&head[..head.len().min(4096)])
}

fn pool(workers: usize) -> Arc<Pool> {
    let cfg = PoolConfig {
        workers,
        cage: Cage {
            memory_bytes: 1 << 30,
            cpu_seconds: 600,
            max_file_bytes: 256 << 20,
        },
        deadline: Duration::from_secs(60),
        queue_wait: Duration::from_secs(10),
        max_requests: u32::MAX,
        limits: Limits::default(),
        worker_uid: interop_media::pipeline::pool::NOBODY,
    };
    Arc::new(Pool::start(PathBuf::from(env!("CARGO_BIN_EXE_interop-media")), cfg).unwrap())
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let jpeg = jpeg_12mp(dir.path());
    let s = sniffed(&jpeg);
    let out = dir.path().join("cleaned.jpg");
    let mut g = c.benchmark_group("thumbnail");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("12mp-jpeg", |b| {
        b.iter(|| {
            let input = FileSlice::open(&jpeg).unwrap();
            let output = std::fs::File::create(&out).unwrap();
            photo::analyze(input, output, &s, false, &limits).unwrap()
        })
    });
    let vips = Command::new("vipsthumbnail")
        .arg("--vips-version")
        .output()
        .is_ok();
    if vips {
        let thumb = dir.path().join("vips-thumb.jpg");
        g.bench_function("vipsthumbnail-cli", |b| {
            b.iter(|| {
                let st = Command::new("vipsthumbnail")
                    .arg(&jpeg)
                    .args(["-s", "100", "-o"])
                    .arg(&thumb)
                    .status()
                    .unwrap();
                assert!(st.success());
            })
        });
        // The same, with libvips' start-up shared by 10 photos in one invocation: per photo.
        let copies: Vec<PathBuf> = (0..10)
            .map(|i| {
                let p = dir.path().join(format!("copy-{i}.jpg"));
                std::fs::copy(&jpeg, &p).unwrap();
                p
            })
            .collect();
        g.bench_function("vipsthumbnail-cli-per-photo-of-10", |b| {
            b.iter_custom(|iters| {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let st = Command::new("vipsthumbnail")
                        .args(&copies)
                        .args(["-s", "100", "-o", "%s-thumb.jpg"])
                        .status()
                        .unwrap();
                    assert!(st.success());
                }
                start.elapsed() / 10
            })
        });
    } else {
        eprintln!("vipsthumbnail not installed (Debian: libvips-tools): anchor skipped");
    }
    let p = pool(1);
    let (jpeg_file, out_file) = (
        std::fs::File::open(&jpeg).unwrap(),
        std::fs::File::create(&out).unwrap(),
    );
    g.bench_function("pool-roundtrip", |b| {
        b.iter(|| {
            rt.block_on(p.analyze(MediaKind::Image, &jpeg_file, &out_file))
                .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("waveform");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    match voice_60s(dir.path()) {
        Some(voice) => {
            let s = sniffed(&voice);
            g.bench_function("60s-voice", |b| {
                b.iter(|| {
                    let input = FileSlice::open(&voice).unwrap();
                    let a = audio::analyze(input, &s, true, &limits).unwrap();
                    assert_eq!(a.waveform.map(|w| w.len()), Some(64));
                })
            });
        }
        None => eprintln!("ffmpeg not installed: waveform benchmark skipped"),
    }
    g.finish();

    let mut g = c.benchmark_group("video-thumbnail");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, size) in [("1080p-high", "1920x1080"), ("2160p-high", "3840x2160")] {
        let video = dir.path().join(format!("{name}.mp4"));
        let made = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={size}:rate=30"))
            .args([
                "-t",
                "1",
                "-c:v",
                "libx264",
                "-profile:v",
                "high",
                "-preset",
                "fast",
            ])
            .args(["-pix_fmt", "yuv420p"])
            .arg(&video)
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            eprintln!("ffmpeg not installed: video thumbnail benchmark skipped");
            break;
        }
        g.bench_function(name, |b| {
            b.iter(|| {
                let a = mp4::analyze(FileSlice::open(&video).unwrap(), &limits).unwrap();
                assert!(a.thumbnail.is_some(), "{:?}", a.thumbnail_skipped);
            })
        });
        let thumb = dir.path().join("ffmpeg-thumb.jpg");
        g.bench_function(format!("{name}/ffmpeg-cli"), |b| {
            b.iter(|| {
                let st = Command::new("ffmpeg")
                    .args(["-v", "error", "-y", "-i"])
                    .arg(&video)
                    .args(["-frames:v", "1", "-vf"])
                    .arg("scale=100:100:force_original_aspect_ratio=decrease")
                    .arg(&thumb)
                    .status()
                    .unwrap();
                assert!(st.success());
            })
        });
    }
    g.finish();

    let doc = dir.path().join("doc.bin");
    std::fs::write(&doc, b"%PDF-1.4 tiny").unwrap();
    let doc_out = std::fs::File::create(dir.path().join("doc.out")).unwrap();
    let doc = std::fs::File::open(&doc).unwrap();
    let mut g = c.benchmark_group("worker");
    g.bench_function("roundtrip", |b| {
        b.iter(|| {
            rt.block_on(p.analyze(MediaKind::Document, &doc, &doc_out))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(media, benches);
criterion_main!(media);
