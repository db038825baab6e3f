//! Issue 13, two "promises to measure", as repeatable tests that print their figures.
//!
//! * `sigkill_at_random_moments_under_mixed_load` (local files and S3): ~100 concurrent
//!   clients upload (single `POST /v1/media`, some above one 5 MiB part), download acknowledged
//!   media through tokens, and upload resumably (tus, several PATCHes); the service is
//!   SIGKILLed at a random moment and restarted on the same data dir / bucket. After every
//!   restart: each acknowledged upload downloads byte-identical, every media object the store
//!   shows is a complete upload (acknowledged, or in flight at the kill and then complete),
//!   every interrupted tus upload resumes from the offset `HEAD` reports and ends
//!   byte-identical. At the end `interop-media sweep` (orphan age 0, service stopped) leaves
//!   no staging data and no stored file holds uploaded bytes verbatim.
//!   Rounds: `INTEROP_MEDIA_CHAOS_ROUNDS` (default 3; the documented long run is 20);
//!   backends: `INTEROP_MEDIA_TEST_BACKENDS=local|s3`; seed: `INTEROP_MEDIA_CHAOS_SEED`.
//! * `s3_server_killed_and_restarted_under_load`: the embedded S3 server dies during load and
//!   comes back on the same port and files. While it is down every upload and download
//!   answers 503 + `Retry-After` + `storage-unavailable` within the retry budget and
//!   `/readyz` answers 503; once it is back the service recovers by itself.
//!
//! `cargo test --test chaos -- --nocapture` prints one summary line per case.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Backend, S3Server, Service, ServiceBuilder, backends};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Written into every uploaded blob every 64 KiB: a stored file containing it holds uploaded
/// bytes verbatim (the service seals everything at rest).
const MARKER: &[u8] = b"CHAOS-UPLOADED-BYTES-MARKER-4e1f0a9d7c3b";

const PART_MIB: usize = 5;

/// xorshift64*: a failing round can be replayed from the printed seed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }
}

fn seed_from_env() -> u64 {
    match std::env::var("INTEROP_MEDIA_CHAOS_SEED") {
        Ok(s) => s.parse().expect("INTEROP_MEDIA_CHAOS_SEED: a u64"),
        Err(_) => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("getrandom");
            u64::from_le_bytes(b)
        }
    }
}

/// The blob of `len` bytes for `seed`, with [`MARKER`] every 64 KiB (from offset 100).
fn blob(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(len);
    let mut at = 100;
    while at + MARKER.len() <= len {
        v[at..at + MARKER.len()].copy_from_slice(MARKER);
        at += 64 << 10;
    }
    v
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut i = 0;
    while let Some(p) = hay[i..].iter().position(|&b| b == first) {
        let at = i + p;
        if hay.len() - at < needle.len() {
            return false;
        }
        if &hay[at + 1..at + needle.len()] == rest {
            return true;
        }
        i = at + 1;
    }
    false
}

/// Files under `dir` (recursively, dot-files included) whose bytes contain [`MARKER`].
fn files_with_marker(dir: &Path) -> Vec<PathBuf> {
    common::s3::files_under(dir)
        .into_iter()
        .filter(|p| std::fs::read(dir.join(p)).is_ok_and(|b| contains(&b, MARKER)))
        .collect()
}

/// A client for a load: bounded, so nothing can hang the test.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(128)
        .build()
        .expect("build reqwest client")
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// One blob the clients sent (its bytes are re-made from the seed).
#[derive(Clone, Copy, Debug)]
struct Sent {
    seed: u64,
    len: usize,
}

impl Sent {
    fn bytes(&self) -> Vec<u8> {
        blob(self.seed, self.len)
    }
}

/// What the clients did and saw, shared between them.
#[derive(Default)]
struct Ledger {
    /// Every blob sent and not settled yet, or acknowledged (by SHA-256 hex).
    sent: HashMap<String, Sent>,
    /// Acknowledged media still stored: id → SHA-256 hex.
    acked: BTreeMap<String, String>,
    /// Ids of `acked` for picking one at random.
    acked_ids: Vec<String>,
    /// tus uploads created and not finished: path → blob SHA-256 hex.
    tus_open: BTreeMap<String, String>,
    /// Answers seen during the load, by kind and status.
    statuses: BTreeMap<String, u64>,
    acked_total: u64,
    acked_this_round: u64,
    tus_done_live: u64,
    downloads_ok: u64,
    /// Complete download bodies that differ from what was uploaded (must stay 0).
    downloads_bad: u64,
    transport_errors: u64,
}

impl Ledger {
    fn ack(&mut self, id: &str, sha: &str) {
        if self.acked.insert(id.to_owned(), sha.to_owned()).is_none() {
            self.acked_ids.push(id.to_owned());
            self.acked_total += 1;
            self.acked_this_round += 1;
        }
    }

    /// A media found stored whose upload's answer never arrived (not counted as acknowledged).
    fn adopt(&mut self, id: &str, sha: &str) {
        if self.acked.insert(id.to_owned(), sha.to_owned()).is_none() {
            self.acked_ids.push(id.to_owned());
        }
    }

    fn status(&mut self, what: &str, s: StatusCode) {
        *self
            .statuses
            .entry(format!("{what} {}", s.as_u16()))
            .or_default() += 1;
    }

    fn forget(&mut self, id: &str) {
        if let Some(sha) = self.acked.remove(id) {
            self.sent.remove(&sha);
        }
        self.acked_ids.retain(|x| x != id);
    }
}

struct Load {
    base: String,
    key: String,
    http: reqwest::Client,
    stop: AtomicBool,
    ledger: Mutex<Ledger>,
}

impl Load {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Res<T> = Result<T, reqwest::Error>;

/// Plaintext sizes: mostly small, some of a few parts' worth of chunks, 15 % above one part.
fn single_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..55 => rng.range(1, 64 << 10) as usize,
        55..85 => rng.range(64 << 10, 2 << 20) as usize,
        _ => rng.range((PART_MIB as u64) << 20, 9 << 20) as usize,
    }
}

async fn single_upload(load: &Load, rng: &mut Rng) -> Res<()> {
    let sent = Sent {
        seed: rng.next(),
        len: single_size(rng),
    };
    let body = sent.bytes();
    let sha = sha_hex(&body);
    load.ledger().sent.insert(sha.clone(), sent);
    let r = load
        .http
        .post(format!("{}/v1/media", load.base))
        .bearer_auth(&load.key)
        .header("X-Media-Kind", "document")
        .header("X-Media-Format", "opaque")
        .header("X-Media-Sha256", &sha)
        .body(body)
        .send()
        .await?;
    let status = r.status();
    load.ledger().status("upload", status);
    if status == StatusCode::CREATED || status == StatusCode::OK {
        let v: Value = r.json().await?;
        let id = v["id"].as_str().expect("id in the upload answer");
        load.ledger().ack(id, &sha);
    }
    Ok(())
}

async fn mint(http: &reqwest::Client, base: &str, key: &str, id: &str) -> Res<Option<String>> {
    let r = http
        .post(format!("{base}/v1/media/{id}/tokens"))
        .bearer_auth(key)
        .json(&serde_json::json!({"audience": "chaos"}))
        .send()
        .await?;
    if r.status() != StatusCode::CREATED {
        return Ok(None);
    }
    let v: Value = r.json().await?;
    Ok(v["token"].as_str().map(str::to_owned))
}

/// `(status, body)` of a download with a fresh token; `None` if no token could be minted.
async fn fetch(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
) -> Res<Option<(StatusCode, bytes::Bytes)>> {
    let Some(token) = mint(http, base, key, id).await? else {
        return Ok(None);
    };
    let r = http
        .get(format!("{base}/v1/download/{token}"))
        .send()
        .await?;
    let s = r.status();
    let body = r.bytes().await?;
    Ok(Some((s, body)))
}

async fn download(load: &Load, rng: &mut Rng) -> Res<()> {
    let picked = {
        let l = load.ledger();
        if l.acked_ids.is_empty() {
            None
        } else {
            let id = l.acked_ids[rng.below(l.acked_ids.len() as u64) as usize].clone();
            let sha = l.acked[&id].clone();
            Some((id, sha))
        }
    };
    let Some((id, sha)) = picked else {
        return Ok(());
    };
    let got = fetch(&load.http, &load.base, &load.key, &id).await?;
    let mut l = load.ledger();
    match got {
        Some((s, body)) if s == StatusCode::OK => {
            l.status("download", s);
            if sha_hex(&body) == sha {
                l.downloads_ok += 1;
            } else {
                l.downloads_bad += 1;
            }
        }
        Some((s, _)) => l.status("download", s),
        None => l.status("download", StatusCode::from_u16(599).unwrap_or_default()),
    }
    Ok(())
}

fn tus_req(load: &Load, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    tus_req_at(&load.http, &load.base, &load.key, method, path)
}

fn tus_req_at(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    http.request(method, format!("{base}{path}"))
        .bearer_auth(key)
        .header("tus-resumable", "1.0.0")
}

async fn patch(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
    offset: usize,
    piece: Vec<u8>,
) -> Res<reqwest::Response> {
    tus_req_at(http, base, key, reqwest::Method::PATCH, path)
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", offset.to_string())
        .body(piece)
        .send()
        .await
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn tus_upload(load: &Load, rng: &mut Rng) -> Res<()> {
    let sent = Sent {
        seed: rng.next(),
        len: rng.range(256 << 10, 12 << 20) as usize,
    };
    let body = sent.bytes();
    let sha = sha_hex(&body);
    load.ledger().sent.insert(sha.clone(), sent);
    let r = tus_req(load, reqwest::Method::POST, "/v1/uploads/")
        .header("upload-length", body.len().to_string())
        .header(
            "upload-metadata",
            format!(
                "kind {},format {},sha256 {}",
                b64("document"),
                b64("opaque"),
                b64(&sha)
            ),
        )
        .send()
        .await?;
    load.ledger().status("tus-create", r.status());
    if r.status() != StatusCode::CREATED {
        return Ok(());
    }
    let Some(path) = header(&r, "location").map(str::to_owned) else {
        panic!("tus creation without Location");
    };
    load.ledger().tus_open.insert(path.clone(), sha.clone());
    let pieces = rng.range(2, 6) as usize;
    let step = body.len().div_ceil(pieces);
    let mut offset = 0;
    while offset < body.len() {
        let end = (offset + step).min(body.len());
        let r = patch(
            &load.http,
            &load.base,
            &load.key,
            &path,
            offset,
            body[offset..end].to_vec(),
        )
        .await?;
        load.ledger().status("tus-patch", r.status());
        if r.status() != StatusCode::NO_CONTENT {
            return Ok(());
        }
        offset = end;
        if let Some(id) = header(&r, "media-id") {
            let mut l = load.ledger();
            l.tus_open.remove(&path);
            l.ack(id, &sha);
            l.tus_done_live += 1;
        }
    }
    Ok(())
}

/// One of the ~100 clients: a random mix until told to stop (or the service is gone).
async fn load_client(load: Arc<Load>, mut rng: Rng) {
    while !load.stop.load(Ordering::Relaxed) {
        let res = match rng.below(100) {
            0..50 => single_upload(&load, &mut rng).await,
            50..75 => download(&load, &mut rng).await,
            _ => tus_upload(&load, &mut rng).await,
        };
        if res.is_err() {
            load.ledger().transport_errors += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Media ids the store shows (`media/<32 hex>`), and the hidden temp files beside them.
fn stored_media(backend: &Backend, svc: &Service) -> (BTreeSet<String>, usize) {
    let dir = backend
        .storage_dir(svc)
        .expect("a backend with files")
        .join("media");
    let mut ids = BTreeSet::new();
    let mut hidden = 0;
    for p in common::s3::files_under(&dir) {
        let name = p.to_string_lossy().into_owned();
        if name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            ids.insert(name);
        } else {
            hidden += 1;
        }
    }
    (ids, hidden)
}

/// Staging data `sweep` must leave none of: `staging/` objects, local `name#N` files, tus
/// part files and assembly objects, S3 multipart uploads.
fn orphans(backend: &Backend, svc: &Service) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = backend
        .stored_files(svc)
        .into_iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            s.starts_with("staging/") || s.contains('#')
        })
        .collect();
    if let Some(s3) = backend.s3() {
        out.extend(s3.pending_multipart_files());
    }
    out
}

fn sweep(svc: &Service, backend: &Backend) -> Value {
    let mut cmd = std::process::Command::new(common::server::BIN);
    cmd.arg("sweep")
        .arg("--config")
        .arg(svc.data_dir.join("dev-keys.toml"))
        .env("INTEROP_MEDIA_STORAGE__ORPHAN_AGE_S", "0");
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
    let out = cmd.output().expect("run interop-media sweep");
    serde_json::from_slice::<Value>(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "sweep output: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[derive(Default, Debug)]
struct Figures {
    rounds: u64,
    acked: u64,
    lost: u64,
    mismatched: u64,
    partial_visible: u64,
    landed_in_flight: u64,
    hidden_temp_after_kill: u64,
    tus_resumed: u64,
    tus_completed_before_kill: u64,
    tus_not_resumed: u64,
    tus_done_live: u64,
    downloads_ok: u64,
    downloads_bad: u64,
    verified_downloads: u64,
    orphans_before_sweep: u64,
    orphans_after_sweep: u64,
    plaintext_files: u64,
    unexpected: Vec<String>,
}

/// After a restart: every media the store shows is a complete upload, every acknowledged
/// upload is there byte-identical.
async fn check_store(
    backend: &Backend,
    svc: &Service,
    http: &reqwest::Client,
    ledger: &mut Ledger,
    f: &mut Figures,
    label: &str,
) {
    let (ids, hidden) = stored_media(backend, svc);
    f.hidden_temp_after_kill += hidden as u64;
    let key = svc.partner_key.clone();
    for id in &ids {
        let r = http
            .get(svc.url(&format!("/v1/media/{id}")))
            .bearer_auth(&key)
            .send()
            .await
            .expect("GET /v1/media/{id}");
        if r.status() != StatusCode::OK {
            f.partial_visible += 1;
            f.unexpected.push(format!(
                "{label}: stored {id}: GET /v1/media answers {}",
                r.status()
            ));
            continue;
        }
        let v: Value = r.json().await.expect("media json");
        let sha = v["sha256"].as_str().unwrap_or_default().to_owned();
        let size = v["size"].as_u64().unwrap_or(u64::MAX);
        let Some(sent) = ledger.sent.get(&sha).copied() else {
            f.partial_visible += 1;
            f.unexpected.push(format!(
                "{label}: stored {id} (sha {sha}) matches no upload sent"
            ));
            continue;
        };
        let acked = ledger.acked.get(id);
        if acked.is_some_and(|a| *a != sha) {
            f.mismatched += 1;
            f.unexpected.push(format!(
                "{label}: {id} stored with another sha than acknowledged"
            ));
        }
        if size != sent.len as u64 {
            f.partial_visible += 1;
            f.unexpected.push(format!(
                "{label}: stored {id} has size {size}, its upload {}",
                sent.len
            ));
            continue;
        }
        let got = fetch(http, &svc.base, &key, id).await.expect("download");
        f.verified_downloads += 1;
        match got {
            Some((s, body)) if s == StatusCode::OK && sha_hex(&body) == sha => {
                if acked.is_none() {
                    // Committed just before the kill; the answer never reached its client.
                    f.landed_in_flight += 1;
                    ledger.adopt(id, &sha);
                }
            }
            other => {
                let what = other.map(|(s, b)| (s, b.len()));
                if acked.is_some() {
                    f.mismatched += 1;
                } else {
                    f.partial_visible += 1;
                }
                f.unexpected.push(format!(
                    "{label}: stored {id} does not download byte-identical: {what:?}, {} bytes sent",
                    sent.len
                ));
            }
        }
    }
    let lost: Vec<String> = ledger
        .acked
        .keys()
        .filter(|id| !ids.contains(*id))
        .cloned()
        .collect();
    for id in lost {
        f.lost += 1;
        f.unexpected
            .push(format!("{label}: acknowledged {id} is not in the store"));
        ledger.forget(&id);
    }
}

/// Resume every interrupted tus upload from the offset `HEAD` reports; check the result.
async fn resume_tus(svc: &Service, http: &reqwest::Client, ledger: &mut Ledger, f: &mut Figures) {
    let key = svc.partner_key.clone();
    let open = std::mem::take(&mut ledger.tus_open);
    for (path, sha) in open {
        let sent = ledger.sent[&sha];
        let body = sent.bytes();
        let deadline = Instant::now() + Duration::from_secs(30);
        let id = loop {
            let r = tus_req_at(http, &svc.base, &key, reqwest::Method::HEAD, &path)
                .send()
                .await
                .expect("tus HEAD");
            if r.status() != StatusCode::OK {
                break Err(format!("HEAD {path}: {}", r.status()));
            }
            let offset: usize = header(&r, "upload-offset")
                .and_then(|s| s.parse().ok())
                .expect("Upload-Offset");
            if let Some(id) = header(&r, "media-id") {
                f.tus_completed_before_kill += 1;
                break Ok(id.to_owned());
            }
            let r = patch(
                http,
                &svc.base,
                &key,
                &path,
                offset,
                body[offset..].to_vec(),
            )
            .await
            .expect("tus PATCH");
            if r.status() == StatusCode::NO_CONTENT {
                f.tus_resumed += 1;
                match header(&r, "media-id") {
                    Some(id) => break Ok(id.to_owned()),
                    None => break Err(format!("PATCH {path}: 204 without Media-Id")),
                }
            }
            // 409 while the killed PATCH's lease runs out.
            if r.status() != StatusCode::CONFLICT || Instant::now() > deadline {
                break Err(format!("PATCH {path} at {offset}: {}", r.status()));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        match id {
            Ok(id) => {
                let got = fetch(http, &svc.base, &key, &id).await.expect("download");
                f.verified_downloads += 1;
                if got.is_some_and(|(s, b)| s == StatusCode::OK && sha_hex(&b) == sha) {
                    ledger.ack(&id, &sha);
                } else {
                    f.mismatched += 1;
                    f.unexpected.push(format!(
                        "resumed {path} ({id}) does not download byte-identical"
                    ));
                }
            }
            Err(e) => {
                f.tus_not_resumed += 1;
                let log = svc.log();
                let warnings: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .collect();
                let tail = &warnings[warnings.len().saturating_sub(6)..];
                f.unexpected
                    .push(format!("{e}; service log (last warnings): {tail:#?}"));
            }
        }
    }
}

fn rounds() -> usize {
    std::env::var("INTEROP_MEDIA_CHAOS_ROUNDS")
        .ok()
        .map(|s| s.parse().expect("INTEROP_MEDIA_CHAOS_ROUNDS: a number"))
        .unwrap_or(3)
}

const CLIENTS: usize = 100;
/// Acknowledged media kept from one round to the next (downloaded under the next load).
const KEEP: usize = 40;

#[test]
fn sigkill_at_random_moments_under_mixed_load() {
    let rounds = rounds();
    let seed = seed_from_env();
    println!("chaos: seed {seed} (INTEROP_MEDIA_CHAOS_SEED to replay), {rounds} rounds");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut failures = Vec::new();
    for backend in backends() {
        let name = backend.name();
        let started = Instant::now();
        let mut rng = Rng::new(seed ^ name.len() as u64);
        let data = tempfile::Builder::new()
            .prefix("interop-media-chaos-")
            .tempdir()
            .expect("temp dir");
        let tmp = data.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        let mut svc = ServiceBuilder::new()
            .backend(&backend)
            .data_dir(data.path())
            .env("INTEROP_MEDIA_STORAGE__PART_SIZE_MIB", PART_MIB.to_string())
            .env("INTEROP_MEDIA_UPLOADS__LEASE_S", "5")
            .env("INTEROP_MEDIA_MEDIA__TMP_DIR", tmp.to_string_lossy())
            .env("INTEROP_MEDIA_SERVER__LOG_LEVEL", "warn")
            .spawn();
        let http = client();
        let mut ledger = Ledger::default();
        let mut f = Figures::default();
        let mut kill_delays = Vec::new();
        for round in 0..rounds {
            let label = format!("{name} round {round}");
            ledger.acked_this_round = 0;
            let load = Arc::new(Load {
                base: svc.base.clone(),
                key: svc.partner_key.clone(),
                http: http.clone(),
                stop: AtomicBool::new(false),
                ledger: Mutex::new(std::mem::take(&mut ledger)),
            });
            let delay = Duration::from_millis(rng.range(300, 3000));
            kill_delays.push(delay.as_millis());
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..CLIENTS {
                    set.spawn(load_client(Arc::clone(&load), Rng::new(rng.next())));
                }
                tokio::time::sleep(delay).await;
                svc.kill();
                load.stop.store(true, Ordering::Relaxed);
                let joined = tokio::time::timeout(Duration::from_secs(60), set.join_all()).await;
                assert!(
                    joined.is_ok(),
                    "{label}: clients still running 60 s after the kill"
                );
            });
            ledger = std::mem::take(&mut *load.ledger());
            let acked_now = ledger.acked_this_round;
            svc.restart();
            rt.block_on(async {
                check_store(&backend, &svc, &http, &mut ledger, &mut f, &label).await;
                resume_tus(&svc, &http, &mut ledger, &mut f).await;
            });
            // Blobs sent and not found stored stay known: a store request sent just before
            // the kill may still complete afterwards (the S3 server carries it out), and the
            // media then shows up in a later round.
            // Nothing stored holds uploaded bytes verbatim (checked before media are deleted).
            let mut dirs = vec![data.path().to_path_buf()];
            if let Some(s3) = backend.s3() {
                dirs.push(s3.root.clone());
            }
            let plain: Vec<PathBuf> = dirs.iter().flat_map(|d| files_with_marker(d)).collect();
            f.plaintext_files += plain.len() as u64;
            if !plain.is_empty() {
                f.unexpected.push(format!(
                    "{label}: uploaded bytes stored verbatim: {plain:?}"
                ));
            }
            println!(
                "{label}: killed after {} ms, {acked_now} acknowledged, {} in the store, {} tus open",
                delay.as_millis(),
                ledger.acked.len(),
                ledger.tus_open.len()
            );
            // Keep a few media for the next round's downloads; delete the rest.
            rt.block_on(async {
                while ledger.acked_ids.len() > KEEP {
                    let i = rng.below(ledger.acked_ids.len() as u64) as usize;
                    let id = ledger.acked_ids[i].clone();
                    let r = http
                        .delete(svc.url(&format!("/v1/media/{id}")))
                        .bearer_auth(&svc.partner_key)
                        .send()
                        .await
                        .expect("DELETE");
                    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{label}: DELETE {id}");
                    ledger.forget(&id);
                }
            });
            f.rounds += 1;
        }
        f.acked = ledger.acked_total;
        f.tus_done_live = ledger.tus_done_live;
        f.downloads_ok = ledger.downloads_ok;
        f.downloads_bad = ledger.downloads_bad;
        // Sweep with the service stopped, then look for staging data and uploaded bytes.
        svc.kill();
        f.orphans_before_sweep = orphans(&backend, &svc).len() as u64;
        let report = sweep(&svc, &backend);
        if report["errors"] != 0 {
            f.unexpected.push(format!("{name}: sweep errors: {report}"));
        }
        let left = orphans(&backend, &svc);
        f.orphans_after_sweep = left.len() as u64;
        if !left.is_empty() {
            f.unexpected
                .push(format!("{name}: orphans after sweep: {left:?}"));
        }
        let mut dirs = vec![data.path().to_path_buf()];
        if let Some(s3) = backend.s3() {
            dirs.push(s3.root.clone());
        }
        let plain: Vec<PathBuf> = dirs.iter().flat_map(|d| files_with_marker(d)).collect();
        f.plaintext_files += plain.len() as u64;
        println!(
            "chaos {name}: {} rounds, {} uploads acknowledged, {} lost, {} mismatched, {} partial visible, \
             {} tus resumed, {} orphans after sweep, {} plaintext files",
            f.rounds,
            f.acked,
            f.lost,
            f.mismatched,
            f.partial_visible,
            f.tus_resumed,
            f.orphans_after_sweep,
            f.plaintext_files
        );
        println!(
            "chaos {name}: kills after {kill_delays:?} ms; {} commits landed in flight (answer lost), \
             {} hidden temp files after kills, {} tus completed before a kill (answer lost), \
             {} tus finished under load, {} not resumed; under load {} downloads byte-identical, \
             {} differing; {} downloads verified after restarts; {} orphans before sweep, sweep: {report}; \
             answers under load: {:?}; {} transport errors (kills); {:.1} s",
            f.landed_in_flight,
            f.hidden_temp_after_kill,
            f.tus_completed_before_kill,
            f.tus_done_live,
            f.tus_not_resumed,
            f.downloads_ok,
            f.downloads_bad,
            f.verified_downloads,
            f.orphans_before_sweep,
            ledger.statuses,
            ledger.transport_errors,
            started.elapsed().as_secs_f64()
        );
        let server_errors: Vec<&String> = ledger
            .statuses
            .keys()
            .filter(|k| k.ends_with(" 500"))
            .collect();
        if !server_errors.is_empty() {
            f.unexpected
                .push(format!("{name}: 500 answers under load: {server_errors:?}"));
        }
        if f.downloads_bad > 0 {
            f.unexpected.push(format!(
                "{name}: {} complete downloads differed from the upload",
                f.downloads_bad
            ));
        }
        for u in &f.unexpected {
            println!("  {u}");
        }
        failures.extend(f.unexpected.iter().cloned());
    }
    assert!(
        failures.is_empty(),
        "{} problems: {failures:#?}",
        failures.len()
    );
}

/// One answer (or its absence) during the S3 outage test.
#[derive(Debug, Clone)]
struct Answer {
    what: &'static str,
    started: Instant,
    took: Duration,
    /// `None`: no whole answer (transport error, client timeout, or a body cut short).
    status: Option<u16>,
    /// A status line arrived (with `status: None`: the body was cut short).
    status_line: bool,
    retry_after: bool,
    code: Option<String>,
}

async fn answer(
    what: &'static str,
    req: reqwest::RequestBuilder,
) -> (Answer, Option<bytes::Bytes>) {
    let started = Instant::now();
    let mut a = Answer {
        what,
        started,
        took: Duration::ZERO,
        status: None,
        status_line: false,
        retry_after: false,
        code: None,
    };
    let body = match tokio::time::timeout(Duration::from_secs(60), req.send()).await {
        Ok(Ok(r)) => {
            a.status = Some(r.status().as_u16());
            a.status_line = true;
            a.retry_after = r.headers().contains_key("retry-after");
            let problem = header(&r, "content-type") == Some("application/problem+json");
            match r.bytes().await {
                Ok(b) => {
                    if problem {
                        a.code = serde_json::from_slice::<Value>(&b)
                            .ok()
                            .and_then(|v| v["code"].as_str().map(str::to_owned));
                    }
                    Some(b)
                }
                Err(_) => {
                    a.status = None;
                    None
                }
            }
        }
        _ => None,
    };
    a.took = started.elapsed();
    (a, body)
}

struct Outage {
    http: reqwest::Client,
    base: String,
    key: String,
    stop: AtomicBool,
    /// Tokens minted before the outage: id → (token, sha).
    tokens: Vec<(String, String, String)>,
    answers: Mutex<Vec<Answer>>,
    /// Acknowledged uploads: id → sha.
    acked: Mutex<BTreeMap<String, (String, Sent)>>,
    download_mismatches: Mutex<u64>,
}

async fn outage_upload(o: &Outage, sent: Sent) -> Answer {
    let body = sent.bytes();
    let sha = sha_hex(&body);
    let req = o
        .http
        .post(format!("{}/v1/media", o.base))
        .bearer_auth(&o.key)
        .header("X-Media-Kind", "document")
        .header("X-Media-Format", "opaque")
        .header("X-Media-Sha256", &sha)
        .body(body);
    let (a, body) = answer("upload", req).await;
    if matches!(a.status, Some(200 | 201))
        && let Some(id) = body
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["id"].as_str().map(str::to_owned))
    {
        o.acked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (sha, sent));
    }
    a
}

async fn outage_client(o: Arc<Outage>, mut rng: Rng) {
    while !o.stop.load(Ordering::Relaxed) {
        let a = if rng.below(2) == 0 {
            let sent = Sent {
                seed: rng.next(),
                len: rng.range(1, 1 << 20) as usize,
            };
            outage_upload(&o, sent).await
        } else {
            let (_, token, sha) = &o.tokens[rng.below(o.tokens.len() as u64) as usize];
            let (a, body) = answer(
                "download",
                o.http.get(format!("{}/v1/download/{token}", o.base)),
            )
            .await;
            if a.status == Some(200) && body.is_some_and(|b| sha_hex(&b) != *sha) {
                *o.download_mismatches
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) += 1;
            }
            a
        };
        o.answers.lock().unwrap_or_else(|p| p.into_inner()).push(a);
        tokio::time::sleep(Duration::from_millis(rng.range(10, 60))).await;
    }
}

async fn readyz(http: &reqwest::Client, base: &str) -> Option<u16> {
    tokio::time::timeout(
        Duration::from_secs(10),
        http.get(format!("{base}/readyz")).send(),
    )
    .await
    .ok()
    .and_then(|r| r.ok())
    .map(|r| r.status().as_u16())
}

/// Poll `/readyz` until it answers `want`; how long that took, or `None` within `limit`.
async fn readyz_becomes(
    http: &reqwest::Client,
    base: &str,
    want: u16,
    limit: Duration,
) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if readyz(http, base).await == Some(want) {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

const OUTAGE_CLIENTS: usize = 20;

#[test]
fn s3_server_killed_and_restarted_under_load() {
    let selected = std::env::var("INTEROP_MEDIA_TEST_BACKENDS").unwrap_or_else(|_| "s3".into());
    if !selected.split(',').any(|b| b.trim() == "s3") {
        println!("s3 outage: skipped (INTEROP_MEDIA_TEST_BACKENDS={selected})");
        return;
    }
    let seed = seed_from_env();
    let mut rng = Rng::new(seed);
    let mut s3 = S3Server::start_blocking();
    // A small retry budget, so a dead store is reported quickly.
    let svc = ServiceBuilder::new()
        .envs(s3.env())
        .env("INTEROP_MEDIA_STORAGE__PART_SIZE_MIB", PART_MIB.to_string())
        .env("INTEROP_MEDIA_STORAGE__MAX_RETRIES", "1")
        .env("INTEROP_MEDIA_STORAGE__RETRY_TIMEOUT_S", "2")
        .env("INTEROP_MEDIA_STORAGE__CONNECT_TIMEOUT_MS", "500")
        .env("INTEROP_MEDIA_STORAGE__REQUEST_TIMEOUT_S", "5")
        .env("INTEROP_MEDIA_STORAGE__PROBE_TIMEOUT_MS", "500")
        .env("INTEROP_MEDIA_STORAGE__PROBE_CACHE_MS", "100")
        .env("INTEROP_MEDIA_SERVER__LOG_LEVEL", "warn")
        .spawn();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let http = client();
    let key = svc.partner_key.clone();
    let mut problems = Vec::new();
    rt.block_on(async {
        // Before: media to download during the outage, one of them above one part.
        let o = Outage {
            http: http.clone(),
            base: svc.base.clone(),
            key: key.clone(),
            stop: AtomicBool::new(false),
            tokens: Vec::new(),
            answers: Mutex::new(Vec::new()),
            acked: Mutex::new(BTreeMap::new()),
            download_mismatches: Mutex::new(0),
        };
        for i in 0..10 {
            let len = if i == 0 { 6 << 20 } else { rng.range(1, 1 << 20) as usize };
            let a = outage_upload(&o, Sent { seed: rng.next(), len }).await;
            assert_eq!(a.status, Some(201), "upload before the outage: {a:?}");
        }
        let mut tokens = Vec::new();
        let before = o.acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (id, (sha, _)) in &before {
            let t = mint(&http, &svc.base, &key, id)
                .await
                .expect("mint")
                .expect("token");
            tokens.push((id.clone(), t, sha.clone()));
        }
        let o = Arc::new(Outage { tokens, ..o });
        assert_eq!(readyz(&http, &svc.base).await, Some(200));

        let mut set = tokio::task::JoinSet::new();
        for _ in 0..OUTAGE_CLIENTS {
            set.spawn(outage_client(Arc::clone(&o), Rng::new(rng.next())));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let kill_begin = Instant::now();
        s3.kill();
        let down = Instant::now();
        let to_503 = readyz_becomes(&http, &svc.base, 503, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let restart_begin = Instant::now();
        s3.restart();
        let back = Instant::now();
        let to_ready = readyz_becomes(&http, &svc.base, 200, Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        o.stop.store(true, Ordering::Relaxed);
        let joined = tokio::time::timeout(Duration::from_secs(90), set.join_all()).await;
        assert!(joined.is_ok(), "clients still running");

        let answers = o.answers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let good_503 = |a: &Answer| {
            a.status == Some(503) && a.retry_after && a.code.as_deref() == Some("storage-unavailable")
        };
        // Started and answered while the server was certainly down (killed, not yet
        // restarting). A request still retrying when it comes back may succeed.
        let during: Vec<&Answer> = answers
            .iter()
            .filter(|a| a.started >= down && a.started + a.took < restart_begin)
            .collect();
        let straddling = answers
            .iter()
            .filter(|a| a.started >= down && a.started < restart_begin)
            .count()
            - during.len();
        let during_503 = during.iter().filter(|a| good_503(a)).count();
        let during_ok = during
            .iter()
            .filter(|a| matches!(a.status, Some(200..=299)))
            .count();
        let slowest = during.iter().map(|a| a.took).max().unwrap_or_default();
        // A download whose status line went out before the kill is cut short: expected (a
        // body cannot be finished without its store), as long as it ends at once.
        let cut: Vec<&Answer> = answers
            .iter()
            .filter(|a| a.status_line && a.status.is_none() && a.started < down)
            .collect();
        // Anything else anywhere in the run: a 500, another status, no answer.
        let bad: Vec<&Answer> = answers
            .iter()
            .filter(|a| {
                let cut = a.status_line && a.status.is_none() && a.started < down;
                !(matches!(a.status, Some(200..=299)) || good_503(a) || cut)
            })
            .collect();
        let edge_503 = answers
            .iter()
            .filter(|a| good_503(a) && (a.started < down || a.started >= restart_begin))
            .count();
        let ready_at = to_ready.map(|d| back + d);
        let after: Vec<&Answer> = answers
            .iter()
            .filter(|a| ready_at.is_some_and(|t| a.started >= t))
            .collect();
        let after_uploads_ok = after
            .iter()
            .filter(|a| a.what == "upload" && matches!(a.status, Some(200 | 201)))
            .count();
        let after_failed = after
            .iter()
            .filter(|a| !matches!(a.status, Some(200..=299)))
            .count();

        // Recovered by itself: new uploads, and everything acknowledged downloads byte-identical.
        let mut post = Vec::new();
        for _ in 0..5 {
            let len = rng.range(1, 7 << 20) as usize;
            post.push(outage_upload(&o, Sent { seed: rng.next(), len }).await);
        }
        let acked = o.acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut lost = 0;
        for (id, (sha, sent)) in &acked {
            let got = fetch(&http, &svc.base, &key, id).await.ok().flatten();
            if !got.is_some_and(|(s, b)| s == StatusCode::OK && sha_hex(&b) == *sha && b.len() == sent.len) {
                lost += 1;
                problems.push(format!("acknowledged {id} does not download byte-identical"));
            }
        }
        let mismatches = *o.download_mismatches.lock().unwrap_or_else(|p| p.into_inner());
        println!(
            "s3 outage: {} requests while the S3 server was down, {during_503} answered 503 + Retry-After + \
             storage-unavailable, {during_ok} succeeded, slowest answer {:.2} s; /readyz 503 {} ms after the kill, \
             200 {} ms after the server returned; {} answers 2xx, {edge_503} more 503 around the edges ({straddling} requests \
             straddled the restart), {} downloads \
             cut at the kill, {} other; \
             after recovery {after_uploads_ok} uploads ok and {after_failed} failed under load, {} of 5 new uploads ok; \
             {} acknowledged, {lost} lost, {mismatches} download mismatches (kill took {} ms)",
            during.len(),
            slowest.as_secs_f64(),
            to_503.map_or("never".to_owned(), |d| d.as_millis().to_string()),
            to_ready.map_or("never".to_owned(), |d| d.as_millis().to_string()),
            answers.iter().filter(|a| matches!(a.status, Some(200..=299))).count(),
            cut.len(),
            bad.len(),
            post.iter().filter(|a| a.status == Some(201)).count(),
            acked.len(),
            (down - kill_begin).as_millis(),
        );
        if during.len() < 10 {
            problems.push(format!("only {} requests during the outage", during.len()));
        }
        for a in during.iter().filter(|a| matches!(a.status, Some(200..=299))) {
            problems.push(format!(
                "answered {:?} while the store was down: {} started {} ms after the kill, took {} ms",
                a.status,
                a.what,
                (a.started - down).as_millis(),
                a.took.as_millis()
            ));
        }
        if during_503 + during_ok != during.len() {
            problems.push("a request during the outage got neither 2xx nor 503 + Retry-After".into());
        }
        if slowest > Duration::from_secs(10) {
            problems.push(format!("slowest answer during the outage {slowest:?} (budget 10 s)"));
        }
        for a in &bad {
            problems.push(format!("not 2xx nor 503 + Retry-After + storage-unavailable: {a:?}"));
        }
        if to_503.is_none() {
            problems.push("/readyz never answered 503 while the store was down".into());
        }
        match to_ready {
            None => problems.push("/readyz not 200 within 30 s of the server's return".into()),
            Some(d) if d > Duration::from_secs(10) => {
                problems.push(format!("/readyz 200 only {d:?} after the server returned"));
            }
            Some(_) => {}
        }
        if after_failed > 0 {
            problems.push(format!("{after_failed} requests failed after recovery"));
        }
        if let Some(a) = post.iter().find(|a| a.status != Some(201)) {
            problems.push(format!("upload after recovery: {a:?}"));
        }
        if mismatches > 0 {
            problems.push(format!("{mismatches} downloads differed"));
        }
    });
    drop(svc);
    drop(s3);
    assert!(problems.is_empty(), "{problems:#?}");
}
