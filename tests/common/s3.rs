//! An embedded, real S3-compatible server for tests: `s3s` + `s3s-fs` 0.14.1 on 127.0.0.1:0.
//!
//! * SigV4 is really checked (`SimpleAuth` with a random access key and secret), so a wrong
//!   secret fails the way it would against AWS.
//! * Objects live as plain files under `root/<bucket>/<key>` (s3s-fs keeps small JSON side files
//!   and in-flight multipart parts as dot-files directly under `root`).
//! * Every accepted socket gets `TCP_NODELAY`; without it GETs on reused connections take ~40 ms
//!   (Nagle + delayed ACK).
//! * By default, writes to one key (PUT object, CompleteMultipartUpload, DELETE object) are
//!   serialized per key. s3s-fs 0.14.1 checks `If-None-Match: *` / `If-Match` and then writes a
//!   temp file and renames it, with nothing held in between, so concurrent conditional puts can
//!   all "win". AWS S3 decides conditional writes atomically; the lock restores that behaviour.
//! * By default, a suffix range longer than the object (`Range: bytes=-N`, N ≥ size) is
//!   served as `bytes=0-` (an `S3Access` hook edits the parsed request after SigV4 checked it).
//!   s3s-fs 0.14.1 seeks `N` bytes back from the end without clamping and answers 500
//!   InternalError (which object_store retries); AWS returns the whole object.
//! * Each request is handled on its own task, so a client that disconnects (or is killed)
//!   does not cancel the server's work half-way: s3s-fs 0.14.1 handlers are not
//!   cancellation-safe (a dropped CompleteMultipartUpload leaves parts and metadata with no
//!   upload record, which no ListMultipartUploads shows); AWS carries a received request out.
//! * `S3Server::builder().raw()` turns both fixes off (plain s3s-fs behaviour).
//! * ListMultipartUploads (`GET /bucket?uploads`), which s3s-fs 0.14.1 answers 501, is
//!   answered from s3s-fs's own in-flight upload records (`.upload-<id>.json`, and the
//!   `.bucket-<b64>.object-<b64>.upload-<id>.metadata.json` naming bucket and key), with the
//!   record's mtime as `Initiated`. The request still goes through s3s first, so SigV4 is
//!   checked: only its 501 is replaced.
//!
//! Two ways to run it:
//! * [`S3Server::start`] spawns the accept loop on the *current* tokio runtime (for
//!   `#[tokio::test]`s that talk to it with `object_store` themselves);
//! * [`S3Server::start_blocking`] runs it on its own thread with its own runtime. Use this one
//!   whenever another process (the service binary) talks to the server, or from plain `#[test]`s:
//!   it keeps serving while the test thread blocks.
//!
//! [`S3Server::kill`] stops it abruptly and keeps its files; [`S3Server::restart`] brings it
//! back on the same port, root and credentials (a storage outage for the service under test).
//!
//! Dropping the `S3Server` stops it and removes its directory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::dto::{GetObjectInput, Range};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Request, S3Result, s3_error};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::{Mutex as AsyncMutex, oneshot};

/// Region the embedded server answers for (s3s does not check it, but SigV4 signs it).
pub const REGION: &str = "us-east-1";
/// Default bucket created by [`S3Server::start`].
pub const DEFAULT_BUCKET: &str = "interop-media-test";

/// Options for the embedded server.
#[derive(Debug, Clone)]
pub struct S3ServerBuilder {
    bucket: String,
    serialize_writes: bool,
    fix_suffix_ranges: bool,
}

impl Default for S3ServerBuilder {
    fn default() -> Self {
        Self {
            bucket: DEFAULT_BUCKET.to_owned(),
            serialize_writes: true,
            fix_suffix_ranges: true,
        }
    }
}

impl S3ServerBuilder {
    /// Bucket to create (a directory under the root). Default [`DEFAULT_BUCKET`].
    pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = bucket.into();
        self
    }

    /// Serialize writes per key so conditional puts are atomic like on AWS (default `true`).
    /// `false` = raw s3s-fs 0.14.1 behaviour (racy `If-None-Match: *`).
    pub fn serialize_writes(mut self, on: bool) -> Self {
        self.serialize_writes = on;
        self
    }

    /// Serve `bytes=-N` with N ≥ object size as `bytes=0-` (default `true`), as AWS answers
    /// the whole object where s3s-fs 0.14.1 fails with 500.
    pub fn fix_suffix_ranges(mut self, on: bool) -> Self {
        self.fix_suffix_ranges = on;
        self
    }

    /// Plain s3s-fs 0.14.1: no write serialization, no suffix-range fix.
    pub fn raw(self) -> Self {
        self.serialize_writes(false).fix_suffix_ranges(false)
    }

    /// Start on the current tokio runtime. Panics outside a runtime.
    pub async fn start(self) -> S3Server {
        let prepared = Prepared::new(&self);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the S3 server");
        let addr = listener
            .local_addr()
            .expect("local_addr of the S3 listener");
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(accept_loop(listener, prepared.service.clone(), stop_rx));
        prepared.into_server(addr, stop_tx, None)
    }

    /// Start on a dedicated background thread with its own (2-worker) tokio runtime.
    /// Works from plain `#[test]`s and from inside async tests alike.
    pub fn start_blocking(self) -> S3Server {
        let prepared = Prepared::new(&self);
        let (addr, stop_tx, thread) = serve_on_thread(prepared.service.clone(), None)
            .unwrap_or_else(|e| panic!("S3 server failed to start: {e}"));
        prepared.into_server(addr, stop_tx, Some(thread))
    }
}

/// Run the accept loop for `service` on its own thread and runtime, bound to `bind` (or a
/// fresh port on 127.0.0.1). Returns the address, the stop switch and the thread.
fn serve_on_thread(
    service: Svc,
    bind: Option<SocketAddr>,
) -> std::io::Result<(SocketAddr, oneshot::Sender<()>, JoinHandle<()>)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<SocketAddr>>();
    let (stop_tx, stop_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("s3s-fs-server".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("s3s-fs-worker")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match bind_listener(bind).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(listener.local_addr());
                accept_loop(listener, service, stop_rx).await;
            });
            // Do not wait for keep-alive connections of clients that are still around.
            rt.shutdown_timeout(Duration::from_secs(1));
        })?;
    let addr = ready_rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| std::io::Error::other("S3 server thread did not report its address"))??;
    Ok((addr, stop_tx, thread))
}

/// Bind `addr` (retrying for a few seconds while the port is still held by a server that is
/// going away), or a fresh port on 127.0.0.1.
async fn bind_listener(addr: Option<SocketAddr>) -> std::io::Result<TcpListener> {
    let Some(addr) = addr else {
        return TcpListener::bind("127.0.0.1:0").await;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A running embedded S3 server with one bucket.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub addr: SocketAddr,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    pub region: String,
    /// The on-disk root: objects are at `root/<bucket>/<key>`.
    pub root: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// The running service's kill switch (see `Svc::killed`).
    killed: Arc<AtomicBool>,
    opts: S3ServerBuilder,
    // Dropped last (after the server stopped): removes the files.
    _dir: TempDir,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl S3Server {
    pub fn builder() -> S3ServerBuilder {
        S3ServerBuilder::default()
    }

    /// Start on the current tokio runtime, with the default bucket created.
    pub async fn start() -> S3Server {
        Self::builder().start().await
    }

    /// Start on its own thread and runtime (see module docs), with the default bucket created.
    pub fn start_blocking() -> S3Server {
        Self::builder().start_blocking()
    }

    /// Directory holding the bucket's objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.join(&self.bucket)
    }

    /// `s3://<bucket>`
    pub fn url(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    /// Environment for the service binary to use this server (see the config contract).
    pub fn env(&self) -> Vec<(String, String)> {
        self.env_with_secret(&self.secret_key)
    }

    /// Like [`S3Server::env`] but with another secret key (to provoke auth failures).
    pub fn env_with_secret(&self, secret: &str) -> Vec<(String, String)> {
        [
            ("INTEROP_MEDIA_STORAGE__URL", self.url()),
            ("INTEROP_MEDIA_STORAGE__S3__ENDPOINT", self.endpoint.clone()),
            ("INTEROP_MEDIA_STORAGE__S3__REGION", self.region.clone()),
            (
                "INTEROP_MEDIA_STORAGE__S3__ACCESS_KEY_ID",
                self.access_key.clone(),
            ),
            (
                "INTEROP_MEDIA_STORAGE__S3__SECRET_ACCESS_KEY",
                secret.to_owned(),
            ),
            ("INTEROP_MEDIA_STORAGE__S3__ALLOW_HTTP", "true".to_owned()),
            ("INTEROP_MEDIA_STORAGE__S3__PATH_STYLE", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// `AmazonS3Builder` preconfigured for this server (path-style, http, region, credentials,
    /// short retries). Customize further and `.build()`.
    pub fn s3_builder(&self) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_region(&self.region)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .with_retry(object_store::RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..Default::default()
            })
    }

    /// An `object_store` client for the bucket.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(self.s3_builder().build().expect("build AmazonS3 client"))
    }

    /// A client that signs with a wrong secret key (every request must fail auth).
    pub fn object_store_wrong_secret(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            self.s3_builder()
                .with_secret_access_key(format!("{}x", self.secret_key))
                .build()
                .expect("build AmazonS3 client"),
        )
    }

    /// Every regular file under the bucket directory, relative to it (sorted). Use it to look
    /// for stray or leaked objects, or to grep stored bytes.
    pub fn bucket_files(&self) -> Vec<PathBuf> {
        files_under(&self.bucket_dir())
    }

    /// In-flight multipart state s3s-fs keeps under the root (`.upload_id-*` part files and
    /// `.upload-*.json` records): non-empty means an upload was neither completed nor aborted.
    pub fn pending_multipart_files(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(".upload_id-") || n.contains(".upload-"))
            })
            .collect();
        out.sort();
        out
    }

    /// Stop abruptly, as a crashed server would: the listener closes and open connections
    /// are dropped (in-flight requests get no answer), but the files, the port and the
    /// credentials are kept so that [`S3Server::restart`] brings the same server back.
    pub fn kill(&mut self) {
        self.killed.store(true, Ordering::SeqCst);
        self.shutdown();
    }

    /// Whether the server is serving (false between [`S3Server::kill`] and
    /// [`S3Server::restart`]).
    pub fn is_running(&self) -> bool {
        self.stop.is_some()
    }

    /// Start again (killing it first if it runs) on the same port, root directory, bucket and
    /// credentials, with the same options; existing objects and in-flight multipart state
    /// are kept. The new server always runs on its own thread (as with `start_blocking`).
    pub fn restart(&mut self) {
        self.shutdown();
        let service = build_service(&self.root, &self.access_key, &self.secret_key, &self.opts);
        self.killed = Arc::clone(&service.killed);
        let (addr, stop, thread) = serve_on_thread(service, Some(self.addr))
            .unwrap_or_else(|e| panic!("S3 server failed to restart on {}: {e}", self.addr));
        debug_assert_eq!(addr, self.addr);
        self.stop = Some(stop);
        self.thread = Some(thread);
    }

    /// Stop now (same as dropping).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// All regular files below `dir`, relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in rd.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => walk(base, &path, out),
                Ok(t) if t.is_file() => {
                    out.push(path.strip_prefix(base).unwrap_or(&path).to_path_buf());
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A random lowercase-hex string of `n_bytes` random bytes.
pub fn random_hex(n_bytes: usize) -> String {
    let mut buf = vec![0u8; n_bytes];
    getrandom::fill(&mut buf).expect("getrandom");
    hex::encode(buf)
}

struct Prepared {
    dir: TempDir,
    root: PathBuf,
    bucket: String,
    access_key: String,
    secret_key: String,
    service: Svc,
    opts: S3ServerBuilder,
}

impl Prepared {
    fn new(opts: &S3ServerBuilder) -> Self {
        let bucket = opts.bucket.as_str();
        let dir = tempfile::Builder::new()
            .prefix("s3s-fs-")
            .tempdir()
            .expect("create temp dir for the S3 server");
        // s3s-fs canonicalizes its root; use the same spelling for `root`.
        let root = dir.path().canonicalize().expect("canonicalize S3 root dir");
        // A bucket is a directory under the root in s3s-fs.
        std::fs::create_dir_all(root.join(bucket)).expect("create bucket directory");
        let access_key = format!("AK{}", random_hex(8).to_uppercase());
        let secret_key = random_hex(20);
        let service = build_service(&root, &access_key, &secret_key, opts);
        Self {
            dir,
            root,
            bucket: bucket.to_owned(),
            access_key,
            secret_key,
            service,
            opts: opts.clone(),
        }
    }

    fn into_server(
        self,
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        thread: Option<JoinHandle<()>>,
    ) -> S3Server {
        S3Server {
            endpoint: format!("http://{addr}"),
            addr,
            access_key: self.access_key,
            secret_key: self.secret_key,
            bucket: self.bucket,
            region: REGION.to_owned(),
            root: self.root,
            stop: Some(stop),
            thread,
            killed: Arc::clone(&self.service.killed),
            opts: self.opts,
            _dir: self.dir,
        }
    }
}

/// The s3s service over the files under `root`, with these credentials and options.
fn build_service(root: &Path, access_key: &str, secret_key: &str, opts: &S3ServerBuilder) -> Svc {
    let fs = s3s_fs::FileSystem::new(root).expect("s3s_fs::FileSystem::new");
    let mut b = S3ServiceBuilder::new(fs);
    b.set_auth(SimpleAuth::from_single(
        access_key.to_owned(),
        secret_key.to_owned(),
    ));
    if opts.fix_suffix_ranges {
        // Runs after SigV4 verification, on the parsed input (the Range header is signed,
        // so it cannot be rewritten on the wire).
        b.set_access(SuffixRangeFix {
            root: root.to_path_buf(),
        });
    }
    Svc {
        root: root.to_path_buf(),
        killed: Arc::new(AtomicBool::new(false)),
        inner: b.build(),
        locks: opts
            .serialize_writes
            .then(|| Arc::new(StdMutex::new(HashMap::new()))),
    }
}

async fn accept_loop(listener: TcpListener, service: Svc, mut stop: oneshot::Receiver<()>) {
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let socket = tokio::select! {
            res = listener.accept() => match res {
                Ok((socket, _)) => socket,
                Err(e) => {
                    eprintln!("s3s-fs test server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        // Without this, GETs on reused connections stall ~40 ms (Nagle + delayed ACK).
        let _ = socket.set_nodelay(true);
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// Access hook that keeps the default rule (no anonymous requests) and clamps suffix ranges
/// longer than the object: `bytes=-N` with N ≥ size becomes `bytes=0-` (the whole object, or 416
/// for an empty one), as on AWS.
struct SuffixRangeFix {
    root: PathBuf,
}

#[async_trait::async_trait]
impl S3Access for SuffixRangeFix {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        match cx.credentials() {
            Some(_) => Ok(()),
            None => Err(s3_error!(AccessDenied, "Signature is required")),
        }
    }

    async fn get_object(&self, req: &mut S3Request<GetObjectInput>) -> S3Result<()> {
        if let Some(Range::Suffix { length }) = req.input.range {
            let (bucket, key) = (&req.input.bucket, &req.input.key);
            let safe = !key.split('/').any(|seg| seg == ".." || seg == ".");
            if safe
                && let Ok(meta) = std::fs::metadata(self.root.join(bucket).join(key))
                && meta.is_file()
                && length >= meta.len()
            {
                req.input.range = Some(Range::Int {
                    first: 0,
                    last: None,
                });
            }
        }
        Ok(())
    }
}

type KeyLocks = Arc<StdMutex<HashMap<String, Arc<AsyncMutex<()>>>>>;

/// `S3Service` plus optional per-key serialization of writes.
#[derive(Clone)]
struct Svc {
    root: PathBuf,
    inner: S3Service,
    locks: Option<KeyLocks>,
    /// Set by [`S3Server::kill`]: from then on no request gets an answer (the connection is
    /// closed instead), as with a crashed server. Without it, requests in flight while the runtime shuts down get answers made
    /// up by that shutdown (s3s-fs maps a failed file open, which a dying blocking pool
    /// causes, to `404 NoSuchKey`).
    killed: Arc<AtomicBool>,
}

impl Svc {
    /// The object path for requests that replace or remove an object (PUT object without
    /// `uploadId`/`partNumber`, POST `?uploadId=` = CompleteMultipartUpload, DELETE object),
    /// `None` for everything else.
    fn write_key<B>(req: &hyper::Request<B>) -> Option<String> {
        let query = req.uri().query().unwrap_or("");
        let has = |name: &str| {
            query
                .split('&')
                .any(|kv| kv == name || kv.starts_with(&format!("{name}=")))
        };
        let path = req.uri().path();
        // Only object paths: "/bucket/key..."
        let is_object = path.trim_start_matches('/').contains('/');
        if !is_object {
            return None;
        }
        let method = req.method();
        let write = (method == hyper::Method::PUT && !has("uploadId") && !has("partNumber"))
            || (method == hyper::Method::POST && has("uploadId"))
            || (method == hyper::Method::DELETE && !has("uploadId"));
        write.then(|| path.to_owned())
    }
}

impl Svc {
    /// `(bucket, prefix)` of a path-style ListMultipartUploads request.
    fn list_uploads_query<B>(req: &hyper::Request<B>) -> Option<(String, String)> {
        if req.method() != hyper::Method::GET {
            return None;
        }
        let bucket = req.uri().path().trim_matches('/');
        if bucket.is_empty() || bucket.contains('/') {
            return None;
        }
        let query = req.uri().query().unwrap_or("");
        let mut uploads = false;
        let mut prefix = String::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "uploads" => uploads = true,
                "prefix" => prefix = v.into_owned(),
                _ => {}
            }
        }
        uploads.then(|| (bucket.to_owned(), prefix))
    }
}

/// A ListMultipartUploads answer (one page) from s3s-fs's upload records under `root`.
fn list_multipart_uploads(root: &Path, bucket: &str, prefix: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut uploads = String::new();
    let names: Vec<String> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for name in &names {
        let Some(id) = name
            .strip_prefix(".upload-")
            .and_then(|r| r.strip_suffix(".json"))
        else {
            continue;
        };
        let suffix = format!(".upload-{id}.metadata.json");
        let Some(meta) = names.iter().find(|n| n.ends_with(&suffix)) else {
            continue;
        };
        let Some((b, k)) = meta
            .strip_prefix(".bucket-")
            .and_then(|r| r.strip_suffix(&suffix))
            .and_then(|r| r.split_once(".object-"))
        else {
            continue;
        };
        let decode = |s: &str| b64.decode(s).ok().and_then(|v| String::from_utf8(v).ok());
        let (Some(b), Some(key)) = (decode(b), decode(k)) else {
            continue;
        };
        if b != bucket || !key.starts_with(prefix) {
            continue;
        }
        let initiated = std::fs::metadata(root.join(name))
            .and_then(|m| m.modified())
            .map(|t| humantime::format_rfc3339_millis(t).to_string())
            .unwrap_or_default();
        uploads.push_str(&format!(
            "<Upload><Key>{key}</Key><UploadId>{id}</UploadId><Initiated>{initiated}</Initiated></Upload>"
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListMultipartUploadsResult><Bucket>{bucket}</Bucket>\
         <Prefix>{prefix}</Prefix><IsTruncated>false</IsTruncated>{uploads}</ListMultipartUploadsResult>"
    )
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Svc {
    type Response =
        <S3Service as hyper::service::Service<hyper::Request<hyper::body::Incoming>>>::Response;
    type Error =
        <S3Service as hyper::service::Service<hyper::Request<hyper::body::Incoming>>>::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let lock = match (&self.locks, Self::write_key(&req)) {
            (Some(locks), Some(key)) => {
                let mut map = locks.lock().unwrap_or_else(|p| p.into_inner());
                Some(map.entry(key).or_default().clone())
            }
            _ => None,
        };
        let list_uploads = Self::list_uploads_query(&req);
        let root = self.root.clone();
        let killed = Arc::clone(&self.killed);
        let fut = hyper::service::Service::call(&self.inner, req);
        // On its own task: a request the server has received is carried out even if the
        // client goes away (as on AWS). s3s-fs handlers are not cancellation-safe: dropped
        // half-way (the client killed), CompleteMultipartUpload leaves its parts and
        // metadata behind with no upload record, CreateMultipartUpload a record with no key.
        let fut = tokio::spawn(async move {
            let _guard = match &lock {
                Some(l) => Some(l.lock().await),
                None => None,
            };
            fut.await
        });
        Box::pin(async move {
            let joined = fut.await;
            // An error makes hyper close the connection without an answer.
            let crashed = || s3s::HttpError::new("the S3 test server was killed".into());
            if killed.load(Ordering::SeqCst) {
                return Err(crashed());
            }
            let resp = match joined {
                Ok(resp) => resp?,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => return Err(crashed()),
            };
            match list_uploads {
                Some((bucket, prefix)) if resp.status() == hyper::StatusCode::NOT_IMPLEMENTED => {
                    let xml = list_multipart_uploads(&root, &bucket, &prefix);
                    Ok(hyper::Response::builder()
                        .status(200)
                        .header("content-type", "application/xml")
                        .body(s3s::Body::from(xml))
                        .expect("response"))
                }
                _ => Ok(resp),
            }
        })
    }
}
