//! The service in-process over object stores that fail on purpose: a store failing
//! mid-upload gives the client 503 + Retry-After, leaves no object, and aborts the multipart
//! upload; a client that disconnects mid-upload gets its multipart upload aborted too; a
//! resumable upload whose part write fails keeps its last durable offset and resumes.

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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use in_process::InProcess;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counters and switches shared by a [`FlakyStore`] and the test.
#[derive(Debug, Default)]
struct Faults {
    /// Fail every part after this many succeeded (0 = never).
    fail_parts_after: AtomicUsize,
    fail_puts: AtomicBool,
    /// Fail writes of resumable-upload parts (objects under `uploads/<uid>/parts/`).
    fail_upload_parts: AtomicBool,
    parts_ok: AtomicUsize,
    aborts: AtomicUsize,
    completes: AtomicUsize,
}

fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "flaky",
        source: "injected failure".into(),
    }
}

#[derive(Debug)]
struct FlakyStore {
    inner: InMemory,
    faults: Arc<Faults>,
}

impl fmt::Display for FlakyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FlakyStore")
    }
}

#[async_trait]
impl ObjectStore for FlakyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.faults.fail_puts.load(Ordering::SeqCst)
            || (self.faults.fail_upload_parts.load(Ordering::SeqCst)
                && location.as_ref().contains("/parts/"))
        {
            return Err(injected());
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FlakyUpload {
            inner,
            faults: self.faults.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct FlakyUpload {
    inner: Box<dyn MultipartUpload>,
    faults: Arc<Faults>,
}

#[async_trait]
impl MultipartUpload for FlakyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let after = self.faults.fail_parts_after.load(Ordering::SeqCst);
        if after > 0 && self.faults.parts_ok.load(Ordering::SeqCst) >= after {
            return Box::pin(async { Err(injected()) });
        }
        self.faults.parts_ok.fetch_add(1, Ordering::SeqCst);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.faults.completes.fetch_add(1, Ordering::SeqCst);
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.faults.aborts.fetch_add(1, Ordering::SeqCst);
        self.inner.abort().await
    }
}

/// The service over a flaky store, and the store itself.
struct Running {
    svc: InProcess,
    store: Arc<FlakyStore>,
    faults: Arc<Faults>,
}

impl std::ops::Deref for Running {
    type Target = InProcess;
    fn deref(&self) -> &InProcess {
        &self.svc
    }
}

async fn start() -> Running {
    let faults = Arc::new(Faults::default());
    let store = Arc::new(FlakyStore {
        inner: InMemory::new(),
        faults: faults.clone(),
    });
    let shared: Arc<dyn ObjectStore> = store.clone();
    Running {
        svc: in_process::start(shared, 1),
        store,
        faults,
    }
}

impl Running {
    async fn stored_media(&self) -> usize {
        use futures::StreamExt;
        self.store
            .inner
            .list(Some(&Path::from("media")))
            .collect::<Vec<_>>()
            .await
            .len()
    }

    async fn stop(mut self) {
        self.svc.stop().await.unwrap();
    }
}

async fn upload(r: &Running, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/v1/media", r.addr))
        .bearer_auth(&r.key)
        .header("X-Media-Kind", "video")
        .header("X-Media-Format", "opaque")
        .header("X-Media-Sha256", hex::encode(Sha256::digest(&body)))
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn assert_503(resp: reqwest::Response) {
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "5");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "storage-unavailable");
    assert!(
        v.get("detail").is_none(),
        "5xx bodies carry no internal detail: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failing_mid_upload_aborts_and_answers_503() {
    let r = start().await;
    // Parts 1 and 2 succeed, part 3 fails: 20 MiB in 5 MiB parts.
    r.faults.fail_parts_after.store(2, Ordering::SeqCst);
    let body: Vec<u8> = (0..20 << 20).map(|i| (i % 253) as u8).collect();
    assert_503(upload(&r, body.clone()).await).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(r.stored_media().await, 0, "nothing visible");
    assert_eq!(
        r.faults.aborts.load(Ordering::SeqCst),
        1,
        "multipart upload aborted"
    );
    assert_eq!(r.faults.completes.load(Ordering::SeqCst), 0);

    // Single-put path failing.
    r.faults.fail_parts_after.store(0, Ordering::SeqCst);
    r.faults.fail_puts.store(true, Ordering::SeqCst);
    assert_503(upload(&r, vec![1u8; 1000]).await).await;
    assert_eq!(r.stored_media().await, 0);

    // The store recovers, so does the service.
    r.faults.fail_puts.store(false, Ordering::SeqCst);
    assert_eq!(upload(&r, body).await.status(), 201);
    assert_eq!(r.stored_media().await, 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_upload_aborts_multipart() {
    let r = start().await;
    let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    let head = format!(
        "POST /v1/media HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nX-Media-Kind: video\r\nX-Media-Format: opaque\r\n\
         X-Media-Sha256: {}\r\nContent-Length: {}\r\n\r\n",
        r.key,
        "0".repeat(64),
        30 << 20
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // 12 MiB: past the first 5 MiB part, so a multipart upload is open.
    let chunk = vec![9u8; 1 << 20];
    for _ in 0..12 {
        s.write_all(&chunk).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        r.faults.parts_ok.load(Ordering::SeqCst) >= 1,
        "a part was written"
    );
    drop(s);
    let mut aborted = false;
    for _ in 0..50 {
        if r.faults.aborts.load(Ordering::SeqCst) == 1 {
            aborted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        aborted,
        "multipart upload not aborted after the client went away"
    );
    assert_eq!(r.faults.completes.load(Ordering::SeqCst), 0);
    assert_eq!(r.stored_media().await, 0);
    // Service keeps serving.
    let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failing_mid_resumable_patch_keeps_the_offset() {
    use base64::Engine;
    let r = start().await;
    let c = reqwest::Client::new();
    let body: Vec<u8> = (0..(12 << 20) + 17).map(|i| (i % 251) as u8).collect();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let sha = hex::encode(Sha256::digest(&body));
    let created = c
        .post(format!("http://{}/v1/uploads/", r.addr))
        .bearer_auth(&r.key)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", body.len().to_string())
        .header(
            "upload-metadata",
            format!(
                "kind {},format {},sha256 {}",
                b64("video"),
                b64("opaque"),
                b64(&sha)
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let url = format!(
        "http://{}{}",
        r.addr,
        created.headers()["location"].to_str().unwrap()
    );
    let patch = |offset: usize| {
        c.patch(&url)
            .bearer_auth(&r.key)
            .header("tus-resumable", "1.0.0")
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset.to_string())
            .body(body[offset..].to_vec())
            .send()
    };
    let offset = || async {
        let h = c
            .head(&url)
            .bearer_auth(&r.key)
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap();
        assert_eq!(h.status(), 200);
        h.headers()["upload-offset"].to_str().unwrap().to_string()
    };

    r.faults.fail_upload_parts.store(true, Ordering::SeqCst);
    assert_503(patch(0).await.unwrap()).await;
    assert_eq!(offset().await, "0", "a failed PATCH moved the offset");
    assert_eq!(r.stored_media().await, 0, "nothing visible");

    // The store recovers: the upload was given back (no 409 waiting for a lease) and
    // completes byte-exact.
    r.faults.fail_upload_parts.store(false, Ordering::SeqCst);
    let done = patch(0).await.unwrap();
    assert_eq!(done.status(), 204);
    assert!(done.headers().contains_key("media-id"));
    assert_eq!(offset().await, body.len().to_string());
    assert_eq!(r.stored_media().await, 1);
    r.stop().await;
}
