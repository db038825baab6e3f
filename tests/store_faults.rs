//! Promise (issue 13): a fault-injecting store (object store and multipart interface, as S3
//! has) driven through the real service in-process (`run_with_backend`): random errors on a
//! share of store calls (1 %, 10 %) — half of the failed writes *after* the write happened,
//! as a lost answer would — bodies that break off or stall, failing the Nth call, added
//! latency. Prints the share of uploads and downloads that succeeded; asserts ≥ 99.9 % of
//! uploads at 1 %, and what must hold whatever the error rate: no duplicate or partial media,
//! every acknowledged upload downloads byte-exact, a download never delivers wrong bytes as
//! complete, and no request outlives its deadline (answers are 2xx or 503 with Retry-After).
//!
//! `cargo test --test store_faults -- --nocapture`

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

#[path = "common/in_process.rs"]
mod in_process;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use in_process::InProcess;
use object_store::memory::InMemory;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartId, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    UploadPart,
};
use sha2::{Digest, Sha256};

/// What to inject: `per_million` of calls fail at random; call number `fail_nth` fails;
/// `stall_per_million` of bodies stop delivering after their first piece.
#[derive(Debug, Default)]
struct Faults {
    per_million: AtomicU64,
    stall_per_million: AtomicU64,
    fail_nth: AtomicU64,
    stalled: AtomicU64,
    latency_ms: AtomicU64,
    calls: AtomicU64,
    injected: AtomicU64,
    rng: AtomicU64,
}

impl Faults {
    /// A pseudo-random number (xorshift on a shared state: deterministic per run order,
    /// good enough to spread faults).
    fn next(&self) -> u64 {
        let mut x = self.rng.load(Ordering::SeqCst) | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::SeqCst);
        x
    }

    /// Whether this call fails (and count it).
    fn roll(&self) -> bool {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let fail = n == self.fail_nth.load(Ordering::SeqCst)
            || self.next() % 1_000_000 < self.per_million.load(Ordering::SeqCst);
        if fail {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        fail
    }

    /// Whether a failed write fails before it happened (else after: the answer was lost).
    fn before(&self) -> bool {
        self.next().is_multiple_of(2)
    }

    /// Whether this body stalls.
    fn stall(&self) -> bool {
        let stall = self.next() % 1_000_000 < self.stall_per_million.load(Ordering::SeqCst);
        if stall {
            self.stalled.fetch_add(1, Ordering::SeqCst);
        }
        stall
    }

    async fn delay(&self) {
        let ms = self.latency_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "faulty",
        source: "injected failure".into(),
    }
}

#[derive(Debug)]
struct FaultStore {
    inner: Arc<InMemory>,
    faults: Arc<Faults>,
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FaultStore")
    }
}

macro_rules! faulty {
    ($self:ident, $call:expr) => {{
        $self.faults.delay().await;
        if $self.faults.roll() {
            return Err(injected());
        }
        $call.await
    }};
}

/// A write that fails either before it happens or after (its answer lost on the way).
macro_rules! faulty_write {
    ($self:ident, $call:expr) => {{
        $self.faults.delay().await;
        if $self.faults.roll() {
            if $self.faults.before() {
                return Err(injected());
            }
            let _ = $call.await;
            return Err(injected());
        }
        $call.await
    }};
}

/// Cut a body into 64 KiB pieces; a failing body breaks off after its first piece, a
/// stalling one never delivers its second.
fn faulty_body(faults: &Faults, got: &mut GetResult) {
    let fail = faults.roll();
    let stall = !fail && faults.stall();
    let placeholder = GetResultPayload::Stream(futures::stream::empty().boxed());
    let GetResultPayload::Stream(body) = std::mem::replace(&mut got.payload, placeholder) else {
        unreachable!("memory stores answer streams")
    };
    let pieces = body
        .flat_map(|r| match r {
            Ok(b) => {
                let n = b.len().div_ceil(65536);
                futures::stream::iter(
                    (0..n).map(move |i| Ok(b.slice(i * 65536..((i + 1) * 65536).min(b.len())))),
                )
                .boxed()
            }
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        })
        .boxed();
    got.payload = GetResultPayload::Stream(if fail {
        pieces
            .take(1)
            .chain(futures::stream::once(async { Err(injected()) }))
            .boxed()
    } else if stall {
        pieces.take(1).chain(futures::stream::pending()).boxed()
    } else {
        pieces
    });
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        faulty_write!(
            self,
            self.inner.put_opts(location, payload.clone(), opts.clone())
        )
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = faulty!(self, self.inner.put_multipart_opts(location, opts))?;
        Ok(Box::new(FaultUpload {
            inner,
            faults: self.faults.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let head = options.head;
        let mut got = faulty!(self, self.inner.get_opts(location, options))?;
        if !head {
            faulty_body(&self.faults, &mut got);
        }
        Ok(got)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        faulty!(self, self.inner.get_ranges(location, ranges))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // A failed delete may or may not have deleted.
        let faults = self.faults.clone();
        self.inner
            .delete_stream(locations)
            .map(move |r| if faults.roll() { Err(injected()) } else { r })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        faulty!(self, self.inner.list_with_delimiter(prefix))
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        faulty_write!(self, self.inner.copy_opts(from, to, options.clone()))
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        faulty!(self, self.inner.rename_opts(from, to, options))
    }
}

#[derive(Debug)]
struct FaultUpload {
    inner: Box<dyn MultipartUpload>,
    faults: Arc<Faults>,
}

#[async_trait]
impl MultipartUpload for FaultUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        if self.faults.roll() {
            return Box::pin(async { Err(injected()) });
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if self.faults.roll() {
            return Err(injected());
        }
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl MultipartStore for FaultStore {
    async fn create_multipart(&self, path: &Path) -> object_store::Result<MultipartId> {
        faulty!(self, self.inner.create_multipart(path))
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<PartId> {
        faulty_write!(self, self.inner.put_part(path, id, part_idx, data.clone()))
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> object_store::Result<PutResult> {
        // Before only: a completion whose answer is lost is not recovered by a repeat (the
        // upload is gone), so the request fails; see docs/RELIABILITY.md.
        faulty!(self, self.inner.complete_multipart(path, id, parts))
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> object_store::Result<()> {
        faulty!(self, self.inner.abort_multipart(path, id))
    }
}

/// The service over a fault-injecting store, and the store underneath.
struct Running {
    svc: InProcess,
    store: Arc<InMemory>,
    faults: Arc<Faults>,
}

impl std::ops::Deref for Running {
    type Target = InProcess;
    fn deref(&self) -> &InProcess {
        &self.svc
    }
}

async fn start() -> Running {
    let faults = Arc::new(Faults {
        rng: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
        ..Default::default()
    });
    let inner = Arc::new(InMemory::new());
    let faulty = Arc::new(FaultStore {
        inner: inner.clone(),
        faults: faults.clone(),
    });
    Running {
        // Stalled bodies are resumed after 1 s (the default is 30 s).
        svc: in_process::start_backend(faulty.clone(), Some(faulty), 2, |s| {
            s.storage.stall_timeout = Duration::from_secs(1);
        }),
        store: inner,
        faults,
    }
}

impl Running {
    async fn objects(&self, prefix: &str) -> Vec<ObjectMeta> {
        self.store
            .list(Some(&Path::from(prefix)))
            .filter_map(|r| async { r.ok() })
            .collect()
            .await
    }
}

/// Bytes unique to `seed` (its 8 bytes lead; same-length blobs of two seeds differ).
fn blob(len: usize, seed: u64) -> Vec<u8> {
    let mut b: Vec<u8> = (0..len)
        .map(|i| ((i as u64).wrapping_mul(2654435761) ^ seed) as u8)
        .collect();
    let n = b.len().min(8);
    b[..n].copy_from_slice(&seed.to_le_bytes()[..n]);
    b
}

/// What one round measured.
struct Figures {
    uploads: f64,
    downloads: f64,
}

/// `n` uploads (a quarter of them multipart, 12 MiB) and then a download of each acknowledged
/// one, at `per_million` faults; returns the shares that succeeded. Checks the invariants
/// that hold at any error rate.
async fn round(r: &Running, n: usize, per_million: u64, label: &str) -> Figures {
    r.faults.per_million.store(per_million, Ordering::SeqCst);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut ok = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let len = if i % 4 == 3 { 12 << 20 } else { 20_000 + i * 7 };
        let body = blob(len, per_million * 1000 + i as u64);
        let t0 = Instant::now();
        let resp = c
            .post(format!("http://{}/v1/media", r.addr))
            .bearer_auth(&r.key)
            .header("X-Media-Kind", "document")
            .header("X-Media-Format", "opaque")
            .header("X-Media-Sha256", hex::encode(Sha256::digest(&body)))
            .body(body.clone())
            .send()
            .await
            .expect("no request outlives the client deadline");
        slowest = slowest.max(t0.elapsed());
        let status = resp.status().as_u16();
        match status {
            200 | 201 => {
                let v: serde_json::Value = resp.json().await.unwrap();
                ok.push((v["id"].as_str().unwrap().to_string(), body));
            }
            503 => assert!(resp.headers().contains_key("retry-after")),
            s => panic!("{label}: unexpected status {s}"),
        }
    }
    // Downloads under the same faults: a token, then the whole body. What arrives complete
    // must be exact; a failure is a 503 or a body cut short, never other bytes.
    let mut downloaded = 0usize;
    for (id, body) in &ok {
        let t0 = Instant::now();
        if download(&c, r, id, body, label).await {
            downloaded += 1;
        }
        slowest = slowest.max(t0.elapsed());
    }
    // Invariants, checked with faults off.
    r.faults.per_million.store(0, Ordering::SeqCst);
    let stalls = r.faults.stall_per_million.swap(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let media = r.objects("media").await;
    assert_eq!(
        media.len(),
        ok.len(),
        "{label}: one object per acknowledged upload"
    );
    // A failed cleanup may leave a staging object (the sweep's job); count, don't assert.
    let staged = r.objects("staging").await;
    for (id, body) in &ok {
        assert!(download(&c, r, id, body, label).await, "{label}: {id} lost");
        c.delete(format!("http://{}/v1/media/{id}", r.addr))
            .bearer_auth(&r.key)
            .send()
            .await
            .unwrap();
    }
    r.faults.stall_per_million.store(stalls, Ordering::SeqCst);
    let figures = Figures {
        uploads: ok.len() as f64 / n as f64,
        downloads: if ok.is_empty() {
            1.0
        } else {
            downloaded as f64 / ok.len() as f64
        },
    };
    println!(
        "store faults {label}: {}/{n} uploads succeeded ({:.1} %), {downloaded}/{} downloads ({:.1} %), {} faults injected, {} bodies stalled, {} staging objects left, slowest answer {:?}",
        ok.len(),
        figures.uploads * 100.0,
        ok.len(),
        figures.downloads * 100.0,
        r.faults.injected.swap(0, Ordering::SeqCst),
        r.faults.stalled.swap(0, Ordering::SeqCst),
        staged.len(),
        slowest
    );
    figures
}

/// Mint a token for `id` and download it; true when the whole body arrived and equals
/// `body`. Panics on anything that is neither that nor a clean failure.
async fn download(c: &reqwest::Client, r: &Running, id: &str, body: &[u8], label: &str) -> bool {
    let resp = c
        .post(format!("http://{}/v1/media/{id}/tokens", r.addr))
        .bearer_auth(&r.key)
        .json(&serde_json::json!({"audience": "faults"}))
        .send()
        .await
        .expect("no request outlives the client deadline");
    match resp.status().as_u16() {
        200 | 201 => {}
        503 => {
            assert!(resp.headers().contains_key("retry-after"));
            return false;
        }
        s => panic!("{label}: token for {id}: unexpected status {s}"),
    }
    let t: serde_json::Value = resp.json().await.unwrap();
    let resp = c
        .get(format!(
            "http://{}/v1/download/{}",
            r.addr,
            t["token"].as_str().unwrap()
        ))
        .send()
        .await
        .expect("no request outlives the client deadline");
    match resp.status().as_u16() {
        200 => {}
        503 => {
            assert!(resp.headers().contains_key("retry-after"));
            return false;
        }
        s => panic!("{label}: download of {id}: unexpected status {s}"),
    }
    // A body cut short is an error here (it never ends cleanly short of Content-Length).
    match resp.bytes().await {
        Ok(got) => {
            assert!(got[..] == body[..], "{label}: {id} differs");
            true
        }
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_under_injected_store_faults() {
    let mut r = start().await;
    let none = round(&r, 40, 0, "0 %").await;
    assert_eq!(none.uploads, 1.0);
    assert_eq!(none.downloads, 1.0);
    let one = round(&r, 1000, 10_000, "1 %").await;
    assert!(
        one.uploads >= 0.999,
        "at 1 % store faults at least 99.9 % of uploads succeed"
    );
    assert!(one.downloads >= 0.999, "and of downloads");
    round(&r, 100, 100_000, "10 %").await;
    // Bodies that stall: resumed after the stall timeout (1 s here).
    r.faults.stall_per_million.store(100_000, Ordering::SeqCst);
    let stalled = round(&r, 40, 0, "10 % of bodies stall").await;
    r.faults.stall_per_million.store(0, Ordering::SeqCst);
    assert_eq!(stalled.downloads, 1.0, "stalled bodies are resumed");
    // The Nth call fails: whichever step it is, the invariants above hold.
    for nth in 1..=12 {
        r.faults.calls.store(0, Ordering::SeqCst);
        r.faults.fail_nth.store(nth, Ordering::SeqCst);
        round(&r, 4, 0, &format!("call {nth} fails")).await;
    }
    r.faults.fail_nth.store(0, Ordering::SeqCst);
    r.faults.latency_ms.store(20, Ordering::SeqCst);
    let slow = round(&r, 8, 0, "20 ms per call").await;
    assert_eq!(slow.uploads, 1.0);
    let _ = r.svc.stop().await;
}
