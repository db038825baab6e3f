//! Upload admission and body pacing on the real binary: memory held by uploads stays within
//! `[limits.uploads]` however many clients connect; past it, 503 `uploads-busy` or 429
//! `partner-upload-limit` with `Retry-After`; a waiting upload goes through once room frees;
//! a body slower than the minimum rate is cut with 408 `body-too-slow`. Nothing refused or
//! cut leaves a stored object behind.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Backend, Service, ServiceBuilder};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1 << 20;

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Resident memory of a process in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A parsed answer: status, `code` of the problem body, whether `Retry-After` was present.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    code: Option<String>,
    retry_after: bool,
    /// `Connection: close`: a refused body is not read, so the connection cannot go on.
    close: bool,
}

fn parse(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let retry_after = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("retry-after:"));
    let close = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "connection:close");
    let code = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned));
    Some(Answer {
        status,
        code,
        retry_after,
        close,
    })
}

/// Whether `raw` holds a whole response (headers and `Content-Length` bytes of body).
fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head
        .lines()
        .find_map(|l| {
            let l = l.to_ascii_lowercase();
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        })
        .unwrap_or(0);
    body.len() >= len
}

/// One upload over a raw connection: `head`, then each `(pause, bytes)` of `plan` in turn,
/// while the answer is read. The connection stays open after the plan (a client that
/// stalls). The answer, or `None` if none came within `limit`.
async fn raw_upload(
    addr: SocketAddr,
    head: String,
    plan: Vec<(Duration, Vec<u8>)>,
    limit: Duration,
) -> Option<Answer> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return wr;
        }
        for (pause, bytes) in plan {
            tokio::time::sleep(pause).await;
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        wr
    });
    let deadline = tokio::time::Instant::now() + limit;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while !complete(&raw) {
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    }
    writer.abort();
    parse(&raw)
}

fn upload_head(key: &str, len: usize, sha: &str) -> String {
    format!(
        "POST /v1/media HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\nX-Media-Kind: document\r\n\
         X-Media-Format: opaque\r\nX-Media-Sha256: {sha}\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// A whole upload by `key`, sent at once; its answer.
async fn upload_now(svc: &Service, key: &str, body: &[u8]) -> Answer {
    raw_upload(
        svc.addr,
        upload_head(key, body.len(), &sha_hex(body)),
        vec![(Duration::ZERO, body.to_vec())],
        Duration::from_secs(20),
    )
    .await
    .expect("an answer")
}

/// `total` bytes in pieces of `piece`, each after `pause`.
fn paced(total: usize, piece: usize, pause: Duration) -> Vec<(Duration, Vec<u8>)> {
    let mut plan = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = piece.min(left);
        plan.push((pause, vec![b'x'; n]));
        left -= n;
    }
    plan
}

/// Stored media or staging objects (not the upload-state records of other tests).
fn stored_media(svc: &Service) -> Vec<PathBuf> {
    Backend::Local
        .stored_files(svc)
        .into_iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            s.starts_with("media") || s.starts_with("staging")
        })
        .collect()
}

fn limits_env(
    memory_mib: u64,
    partner_mib: u64,
    wait_ms: u64,
    min_rate_kib_s: u64,
) -> Vec<(String, String)> {
    [
        ("INTEROP_MEDIA_LIMITS__UPLOADS__MEMORY_MIB", memory_mib),
        (
            "INTEROP_MEDIA_LIMITS__UPLOADS__PARTNER_MEMORY_MIB",
            partner_mib,
        ),
        ("INTEROP_MEDIA_LIMITS__UPLOADS__WAIT_MS", wait_ms),
        (
            "INTEROP_MEDIA_LIMITS__UPLOADS__MIN_RATE_KIB_S",
            min_rate_kib_s,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_string()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_uploads_waits_then_is_refused_and_memory_stays_within_the_budget() {
    // 50 MiB holds two large uploads (24.25 MiB each with 8 MiB parts, 2 in flight). One
    // partner sends them all, and its share is the whole budget: the others get 429.
    let svc = ServiceBuilder::new()
        .envs(limits_env(50, 50, 500, 0))
        .env("INTEROP_MEDIA_SERVER__BODY_IDLE_TIMEOUT_S", "3")
        .env("INTEROP_MEDIA_SERVER__LOG_LEVEL", "warn")
        .spawn();
    let pid = svc.pid();
    let before = rss(pid);
    const CLIENTS: usize = 100;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        // Each declares 64 MiB and sends 6 MiB at once, then stalls.
        let head = upload_head(&svc.partner_key, 64 * MIB, &"a".repeat(64));
        tasks.push(tokio::spawn(raw_upload(
            svc.addr,
            head,
            paced(6 * MIB, 256 * 1024, Duration::ZERO),
            Duration::from_secs(30),
        )));
    }
    let started = Instant::now();
    let mut peak = before;
    while tasks.iter().any(|t| !t.is_finished()) && started.elapsed() < Duration::from_secs(40) {
        peak = peak.max(rss(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let busy = answers
        .iter()
        .filter(|a| {
            a.as_ref().is_some_and(|a| {
                a.status == 429
                    && a.retry_after
                    && a.code.as_deref() == Some("partner-upload-limit")
            })
        })
        .count();
    let cut = answers
        .iter()
        .filter(|a| {
            a.as_ref()
                .is_some_and(|a| a.status == 408 && a.code.as_deref() == Some("body-timeout"))
        })
        .count();
    let growth = peak.saturating_sub(before);
    println!(
        "{CLIENTS} uploads of 64 MiB sending 6 MiB then stalling, budget 50 MiB: {busy} answered 429 \
         partner-upload-limit + Retry-After after waiting 0.5 s, {cut} admitted and cut at the idle timeout (408); server RSS {} MiB \
         before, peak {} MiB (+{} MiB)",
        before >> 20,
        peak >> 20,
        growth >> 20
    );
    assert_eq!(busy + cut, CLIENTS, "other answers: {answers:?}");
    assert!((1..=2).contains(&cut), "{cut} uploads admitted at once");
    // Admitted uploads hold 6 MiB of body each; without admission every client's 6 MiB (and
    // a part buffer) was held: +600 MiB and more.
    assert!(
        growth < 80 * MIB as u64,
        "RSS grew by {} MiB with a 50 MiB budget",
        growth >> 20
    );
    assert!(stored_media(&svc).is_empty(), "{:?}", stored_media(&svc));
    // Room came back: a new upload goes through.
    let body = vec![7u8; 3 * MIB];
    let a = upload_now(&svc, &svc.partner_key, &body).await;
    assert_eq!(a.status, 201, "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_over_its_share_gets_429_while_others_upload() {
    let other_key = "other-partner-key-0123456789abcdef";
    let svc = ServiceBuilder::new()
        .envs(limits_env(100, 25, 300, 0))
        .config_toml(format!(
            "[partners.other]\nkey_sha256 = \"{}\"\nscopes = [\"upload\", \"token\"]\n",
            sha_hex(other_key.as_bytes())
        ))
        .env("INTEROP_MEDIA_SERVER__LOG_LEVEL", "warn")
        .spawn();
    // The dev partner holds one large upload (24.25 MiB of its 25 MiB share), slowly.
    let big = vec![1u8; 20 * MIB];
    let holder = tokio::spawn(raw_upload(
        svc.addr,
        upload_head(&svc.partner_key, big.len(), &sha_hex(&big)),
        [
            vec![(Duration::ZERO, big[..MIB].to_vec())],
            vec![(Duration::from_secs(2), big[MIB..].to_vec())],
        ]
        .concat(),
        Duration::from_secs(30),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A second large upload of the same partner: over its share.
    let second = vec![2u8; 20 * MIB];
    let a = upload_now(&svc, &svc.partner_key, &second).await;
    assert_eq!(
        (a.status, a.code.as_deref(), a.retry_after, a.close),
        (429, Some("partner-upload-limit"), true, true),
        "{a:?}"
    );
    // A small one of the same partner still fits in what is left of its share.
    let small = vec![3u8; 64 * 1024];
    let a = upload_now(&svc, &svc.partner_key, &small).await;
    assert_eq!(a.status, 201, "{a:?}");
    // Another partner's large upload is not held back.
    let theirs = vec![4u8; 20 * MIB];
    let a = upload_now(&svc, other_key, &theirs).await;
    assert_eq!(a.status, 201, "{a:?}");
    let held = holder.await.unwrap().unwrap();
    assert_eq!(held.status, 201, "{held:?}");
    // Stored: the three accepted media, nothing of the refused one.
    let media = stored_media(&svc);
    assert_eq!(media.len(), 3, "{media:?}");
    println!(
        "partner share 25 MiB: 2nd large upload 429 partner-upload-limit; small upload, other partner 201"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_service_gives_503_to_every_partner() {
    let other_key = "other-partner-key-0123456789abcdef";
    // Room in the service for one large upload; each partner's share could hold one.
    let svc = ServiceBuilder::new()
        .envs(limits_env(25, 25, 300, 0))
        .env("INTEROP_MEDIA_LIMITS__UPLOADS__MAX_CONCURRENT", "2")
        .config_toml(format!(
            "[partners.other]\nkey_sha256 = \"{}\"\nscopes = [\"upload\", \"token\"]\n",
            sha_hex(other_key.as_bytes())
        ))
        .env("INTEROP_MEDIA_SERVER__LOG_LEVEL", "warn")
        .spawn();
    let big = vec![1u8; 20 * MIB];
    let slow = |body: &[u8]| {
        vec![
            (Duration::ZERO, body[..MIB].to_vec()),
            (Duration::from_secs(2), body[MIB..].to_vec()),
        ]
    };
    let holder = tokio::spawn(raw_upload(
        svc.addr,
        upload_head(&svc.partner_key, big.len(), &sha_hex(&big)),
        slow(&big),
        Duration::from_secs(30),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let theirs = vec![4u8; 20 * MIB];
    let a = upload_now(&svc, other_key, &theirs).await;
    assert_eq!(
        (a.status, a.code.as_deref(), a.retry_after, a.close),
        (503, Some("uploads-busy"), true, true),
        "{a:?}"
    );
    // Past max_concurrent, even a small upload waits, then gets 503.
    let small = vec![3u8; 1024];
    let second_holder = tokio::spawn(raw_upload(
        svc.addr,
        upload_head(other_key, small.len(), &sha_hex(&small)),
        vec![
            (Duration::ZERO, small[..10].to_vec()),
            (Duration::from_secs(2), small[10..].to_vec()),
        ],
        Duration::from_secs(30),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tiny = vec![9u8; 100];
    let a = upload_now(&svc, other_key, &tiny).await;
    // (Its 100 bytes were all buffered with the head: actix may keep that connection.)
    assert_eq!(
        (a.status, a.code.as_deref(), a.retry_after),
        (503, Some("uploads-busy"), true),
        "{a:?}"
    );
    assert_eq!(holder.await.unwrap().map(|a| a.status), Some(201));
    assert_eq!(second_holder.await.unwrap().map(|a| a.status), Some(201));
    // The refused uploads left nothing; the room is back for them.
    assert_eq!(stored_media(&svc).len(), 2);
    let a = upload_now(&svc, other_key, &theirs).await;
    assert_eq!(a.status, 201, "{a:?}");
    println!(
        "service budget full: another partner's large upload and (past max_concurrent) a small one got 503 uploads-busy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_upload_goes_through_when_room_frees() {
    // Room for one large upload; the second waits (its body unread) instead of failing.
    let svc = ServiceBuilder::new()
        .envs(limits_env(25, 25, 15_000, 0))
        .env("INTEROP_MEDIA_SERVER__LOG_LEVEL", "warn")
        .spawn();
    let first = vec![5u8; 20 * MIB];
    let second = vec![6u8; 20 * MIB];
    let t0 = Instant::now();
    let a = tokio::spawn(raw_upload(
        svc.addr,
        upload_head(&svc.partner_key, first.len(), &sha_hex(&first)),
        vec![
            (Duration::ZERO, first[..MIB].to_vec()),
            (Duration::from_millis(1500), first[MIB..].to_vec()),
        ],
        Duration::from_secs(30),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = raw_upload(
        svc.addr,
        upload_head(&svc.partner_key, second.len(), &sha_hex(&second)),
        vec![(Duration::ZERO, second)],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let b_done = t0.elapsed();
    let a = a.await.unwrap().unwrap();
    println!(
        "budget for one large upload: the second waited and finished {} ms after the first began",
        b_done.as_millis()
    );
    assert_eq!((a.status, b.status), (201, 201), "{a:?} {b:?}");
    assert!(
        b_done >= Duration::from_millis(1500),
        "the second upload did not wait for room ({b_done:?})"
    );
    assert_eq!(stored_media(&svc).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_below_the_minimum_rate_is_cut_with_408_and_nothing_is_stored() {
    // 64 KiB/s over 2 s windows; the idle timeout (30 s) alone would never cut this client.
    let svc = ServiceBuilder::new()
        .envs(limits_env(100, 100, 1000, 64))
        .env("INTEROP_MEDIA_LIMITS__UPLOADS__RATE_WINDOW_S", "2")
        .env("INTEROP_MEDIA_SERVER__LOG_LEVEL", "warn")
        .spawn();
    let t0 = Instant::now();
    let a = raw_upload(
        svc.addr,
        upload_head(&svc.partner_key, MIB, &"c".repeat(64)),
        paced(MIB, 1024, Duration::from_millis(200)),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let took = t0.elapsed();
    println!(
        "1 KiB every 200 ms against a 64 KiB/s floor: {} {:?} after {} ms",
        a.status,
        a.code,
        took.as_millis()
    );
    assert_eq!(
        (a.status, a.code.as_deref()),
        (408, Some("body-too-slow")),
        "{a:?}"
    );
    assert!(took < Duration::from_secs(10), "cut only after {took:?}");
    assert!(stored_media(&svc).is_empty());

    // A resumable upload's PATCH is held to the same pace; what arrived before the cut is
    // kept, as tus promises, and the upload can go on.
    let http = common::http();
    let created = http
        .post(svc.url("/v1/uploads/"))
        .bearer_auth(&svc.partner_key)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", MIB.to_string())
        .header(
            "Upload-Metadata",
            format!(
                "kind {},format {},sha256 {}",
                b64("document"),
                b64("opaque"),
                b64(&"d".repeat(64))
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{:?}", created.text().await);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let path = location
        .find("/v1/uploads/")
        .map(|i| location[i..].to_owned())
        .unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {MIB}\r\n\r\n",
        svc.partner_key
    );
    let a = raw_upload(
        svc.addr,
        head,
        paced(MIB, 1024, Duration::from_millis(200)),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(
        (a.status, a.code.as_deref()),
        (408, Some("body-too-slow")),
        "{a:?}"
    );
    let head = http
        .head(svc.url(&path))
        .bearer_auth(&svc.partner_key)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let offset: usize = head.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(offset <= 16 * 1024, "offset {offset} beyond what was sent");
    assert!(stored_media(&svc).is_empty());
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
