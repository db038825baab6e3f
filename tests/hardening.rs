//! Issue 13, store side, end to end against the real binary: racing identical uploads keep
//! one winner whose tokens all work (defect 1), a SIGKILL mid-upload leaves nothing that
//! `sweep` cannot find and remove (defect 4), and a stored chunk that fails authentication
//! mid-download never looks like a complete response (defect 9).

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Backend, Service, ServiceBuilder, backends, block_on, http};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

/// Upload `body`, then mint a token at once from the answer (before the other racers end).
async fn upload_then_mint(svc_base: &str, key: &str, body: bytes::Bytes) -> (u16, String, String) {
    let c = http();
    let r = c
        .post(format!("{svc_base}/v1/media"))
        .bearer_auth(key)
        .header("X-Media-Kind", "video")
        .header("X-Media-Format", "opaque")
        .header("X-Media-Sha256", sha_hex(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert!(status == 200 || status == 201, "{status} {v}");
    let id = v["id"].as_str().unwrap().to_string();
    let r = c
        .post(format!("{svc_base}/v1/media/{id}/tokens"))
        .bearer_auth(key)
        .json(&serde_json::json!({"audience": "peer-proxy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: Value = r.json().await.unwrap();
    (status, id, t["token"].as_str().unwrap().to_string())
}

async fn download(base: &str, token: &str) -> (StatusCode, Vec<u8>) {
    let r = http()
        .get(format!("{base}/v1/download/{token}"))
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
}

/// Defect 1: `n` identical 20 MiB uploads (several parts each) race on `replicas`; exactly one
/// creates the media, the others answer 200 with it, and a token minted from every answer
/// downloads the blob byte-exact afterwards.
fn race(replicas: &[&Service], n: usize, seed: u8, label: &str) {
    let body = bytes::Bytes::from(pattern(20 << 20, seed));
    let answers = block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n {
            let svc = replicas[i % replicas.len()];
            let (base, key, body) = (svc.base.clone(), svc.partner_key.clone(), body.clone());
            set.spawn(async move { upload_then_mint(&base, &key, body).await });
        }
        set.join_all().await
    });
    let ids: std::collections::BTreeSet<_> = answers.iter().map(|a| a.1.clone()).collect();
    assert_eq!(ids.len(), 1, "{label}: one id");
    let created = answers.iter().filter(|a| a.0 == 201).count();
    let mut failed = 0;
    block_on(async {
        for (i, (_, _, token)) in answers.iter().enumerate() {
            let (s, got) = download(&replicas[(i + 1) % replicas.len()].base, token).await;
            if s != StatusCode::OK || got != body {
                failed += 1;
            }
        }
    });
    println!("{label}: {n} racers, {created} created, {failed} tokens failed");
    assert_eq!(
        failed, 0,
        "{label}: every token minted from an answer works"
    );
    assert_eq!(created, 1, "{label}: exactly one upload creates the media");
}

#[test]
fn racing_identical_multipart_uploads_keep_one_winner() {
    for backend in backends() {
        let a = ServiceBuilder::new().backend(&backend).spawn();
        race(&[&a], 8, 1, &format!("{} one replica", backend.name()));
        let b = ServiceBuilder::new()
            .backend(&backend)
            .data_dir(&a.data_dir)
            .spawn();
        race(&[&a, &b], 8, 2, &format!("{} two replicas", backend.name()));
        // Nothing staged is left over once the racers are done.
        let leftovers: Vec<PathBuf> = backend
            .stored_files(&a)
            .into_iter()
            .filter(|p| !p.starts_with("media"))
            .collect();
        assert!(leftovers.is_empty(), "{}: {leftovers:?}", backend.name());
        let media: Vec<PathBuf> = backend
            .stored_files(&a)
            .into_iter()
            .filter(|p| p.starts_with("media"))
            .collect();
        assert_eq!(media.len(), 2, "{}: {media:?}", backend.name());
    }
}

/// Every file under `dir`, relative, including the hidden multipart staging files
/// (`name#N`) that object_store's listing does not show.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    common::s3::files_under(dir)
}

fn sweep(svc: &Service, backend: &Backend, orphan_age_s: &str) -> Value {
    let mut cmd = std::process::Command::new(common::server::BIN);
    cmd.arg("sweep")
        .arg("--config")
        .arg(svc.data_dir.join("dev-keys.toml"))
        .env("INTEROP_MEDIA_STORAGE__ORPHAN_AGE_S", orphan_age_s);
    match backend {
        Backend::Local => {
            cmd.env(
                "INTEROP_MEDIA_STORAGE__URL",
                format!("file://{}", svc.data_dir.join("objects").display()),
            );
        }
        _ => {
            cmd.envs(backend.env());
        }
    }
    let out = cmd.output().unwrap();
    serde_json::from_slice::<Value>(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "sweep output: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Defect 4: SIGKILL while a large upload is streaming leaves staging data (hidden `#N`
/// files on local storage, an open multipart upload on S3); `sweep` finds and removes it.
#[test]
fn sigkill_mid_upload_then_sweep_leaves_nothing() {
    for backend in backends() {
        let mut svc = ServiceBuilder::new().backend(&backend).spawn();
        let (base, key) = (svc.base.clone(), svc.partner_key.clone());
        // 40 MiB declared, 20 MiB sent, then the body stalls: parts are written, nothing done.
        let uploader = std::thread::spawn(move || {
            block_on(async move {
                let (tx, rx) =
                    futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
                let send = async move {
                    let mut tx = tx;
                    use futures::SinkExt;
                    for i in 0..20u8 {
                        if tx.send(Ok(pattern(1 << 20, i))).await.is_err() {
                            return;
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(30)).await;
                };
                let req = http()
                    .post(format!("{base}/v1/media"))
                    .bearer_auth(&key)
                    .header("X-Media-Kind", "video")
                    .header("X-Media-Format", "opaque")
                    .header("X-Media-Sha256", "c".repeat(64))
                    .header("Content-Length", (40u64 << 20).to_string())
                    .body(reqwest::Body::wrap_stream(rx))
                    .send();
                let _ = tokio::time::timeout(Duration::from_secs(30), async {
                    tokio::join!(send, req)
                })
                .await;
            })
        });
        // Wait until staging data exists, then kill.
        let dir = backend.storage_dir(&svc).unwrap();
        let root = match &backend {
            Backend::S3(s3) => s3.bucket_dir().parent().unwrap().to_path_buf(),
            _ => dir.clone(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let staged = match &backend {
                Backend::S3(s3) => !s3.pending_multipart_files().is_empty(),
                _ => all_files(&dir)
                    .iter()
                    .any(|p| std::fs::metadata(dir.join(p)).is_ok_and(|m| m.len() >= 8 << 20)),
            };
            if staged {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no staging data appeared"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        svc.kill();
        let _ = uploader.join();
        let before = match &backend {
            Backend::S3(s3) => s3.pending_multipart_files(),
            _ => all_files(&dir),
        };
        assert!(
            !before.is_empty(),
            "{}: the kill left staging data",
            backend.name()
        );
        // A sweep with the default age keeps young staging data (it may be a live upload).
        let kept = sweep(&svc, &backend, "86400");
        assert_eq!(kept["errors"], 0, "{kept}");
        let report = sweep(&svc, &backend, "0");
        println!("{}: sweep after SIGKILL: {report}", backend.name());
        assert_eq!(report["errors"], 0, "{report}");
        let left: Vec<PathBuf> = match &backend {
            Backend::S3(s3) => {
                let mut v = s3.pending_multipart_files();
                v.extend(s3.bucket_files());
                v
            }
            _ => all_files(&dir),
        };
        let _ = root;
        assert!(
            left.is_empty(),
            "{}: orphans after sweep: {left:?}",
            backend.name()
        );
    }
}

/// Defect 5: a replica SIGKILLed after 12 MiB of a 24 MiB PATCH (8 MiB parts) has made the
/// completed part durable: `HEAD` answers offset ≥ 8 MiB on the restarted service, and the
/// upload resumes from there byte-exact.
#[test]
fn tus_progress_survives_sigkill_mid_patch() {
    use base64::Engine as _;
    use std::io::Write;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for backend in backends() {
        let mut svc = ServiceBuilder::new()
            .backend(&backend)
            .env("INTEROP_MEDIA_UPLOADS__LEASE_S", "5")
            .spawn();
        let body = pattern(24 << 20, 5);
        let c = http();
        let auth = format!("Bearer {}", svc.partner_key);
        let path = block_on(async {
            let r = c
                .post(svc.url("/v1/uploads/"))
                .header("authorization", &auth)
                .header("tus-resumable", "1.0.0")
                .header("upload-length", body.len().to_string())
                .header(
                    "upload-metadata",
                    format!(
                        "kind {},format {},sha256 {}",
                        b64("video"),
                        b64("opaque"),
                        b64(&sha_hex(&body))
                    ),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            r.headers()["location"].to_str().unwrap().to_string()
        });
        // One PATCH for the whole file (as tus-js-client sends it); 12 MiB arrive, then the
        // replica dies.
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\nTus-Resumable: 1.0.0\r\n\
             Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut sock = std::net::TcpStream::connect(svc.addr).unwrap();
        sock.write_all(head.as_bytes()).unwrap();
        sock.write_all(&body[..12 << 20]).unwrap();
        sock.flush().unwrap();
        // Give the first part time to reach the store, then kill.
        std::thread::sleep(Duration::from_millis(2500));
        svc.kill();
        drop(sock);
        svc.restart();
        let auth = format!("Bearer {}", svc.partner_key);
        let offset: u64 = block_on(async {
            let r = c
                .head(svc.url(&path))
                .header("authorization", &auth)
                .header("tus-resumable", "1.0.0")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.headers()["upload-offset"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        });
        println!(
            "{}: offset after SIGKILL at 12 MiB: {offset}",
            backend.name()
        );
        assert!(
            offset >= 8 << 20,
            "{}: progress lost: offset {offset}",
            backend.name()
        );
        // Resume (after the dead PATCH's lease) and check the result byte for byte.
        let id = block_on(async {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let r = c
                    .patch(svc.url(&path))
                    .header("authorization", &auth)
                    .header("tus-resumable", "1.0.0")
                    .header("content-type", "application/offset+octet-stream")
                    .header("upload-offset", offset.to_string())
                    .body(body[offset as usize..].to_vec())
                    .send()
                    .await
                    .unwrap();
                if r.status() == StatusCode::NO_CONTENT {
                    break r.headers()["media-id"].to_str().unwrap().to_string();
                }
                assert_eq!(r.status(), StatusCode::CONFLICT);
                assert!(std::time::Instant::now() < deadline, "never resumed");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let got = block_on(async {
            let r = c
                .post(svc.url(&format!("/v1/media/{id}/tokens")))
                .header("authorization", &auth)
                .json(&serde_json::json!({"audience": "t"}))
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            download(&svc.base, v["token"].as_str().unwrap()).await
        });
        assert_eq!(got.0, StatusCode::OK);
        assert!(got.1 == body, "{}: resumed upload differs", backend.name());
    }
}

/// Defect 9: a stored chunk that fails authentication is never served as a complete body.
/// A failure in the first chunks of the range answers 500 before any status line; a later
/// one cuts the transfer short of `Content-Length`. Both are logged with the media id.
#[test]
fn corrupt_stored_chunk_never_looks_complete() {
    let svc = ServiceBuilder::new().spawn();
    let body = pattern(3 << 20, 9);
    let (id, token) = block_on(async {
        let (_, id, token) = upload_then_mint(
            &svc.base,
            &svc.partner_key,
            bytes::Bytes::from(body.clone()),
        )
        .await;
        (id, token)
    });
    let file = svc.data_dir.join("objects").join("media").join(&id);
    let flip = |at: u64| {
        let mut data = std::fs::read(&file).unwrap();
        data[at as usize] ^= 0x01;
        std::fs::write(&file, data).unwrap();
    };
    let len = std::fs::metadata(&file).unwrap().len();
    // A chunk near the end: the status line has gone out; the body must not end "complete".
    flip(len - 100_000);
    block_on(async {
        let r = http()
            .get(format!("{}/v1/download/{token}", svc.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let got = r.bytes().await;
        assert!(
            got.is_err(),
            "a body cut by a failed chunk was read as complete ({} of {} bytes)",
            got.map(|b| b.len()).unwrap_or(0),
            body.len()
        );
        // A range that starts in the bad chunk fails before the status line.
        let r = http()
            .get(format!("{}/v1/download/{token}", svc.base))
            .header("range", format!("bytes={}-", body.len() - 90_000))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    });
    // The first chunk: 500, not 200.
    flip(len - 100_000);
    flip(2000);
    block_on(async {
        let r = http()
            .get(format!("{}/v1/download/{token}", svc.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "internal", "{v}");
    });
    let log = svc.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("failed to decrypt"))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    assert!(
        lines.iter().all(|l| l.contains("ERROR") && l.contains(&id)),
        "{lines:?}"
    );
    let metrics = block_on(async {
        let r = http().get(svc.url("/metrics")).send().await.unwrap();
        (r.status(), r.text().await.unwrap_or_default())
    });
    if metrics.0 == StatusCode::OK {
        assert!(
            metrics.1.contains("stored_decrypt_failures_total 3"),
            "{}",
            metrics.1
        );
    }
}
