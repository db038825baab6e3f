//! Repeats store calls that are safe to repeat after a transient failure, within one time
//! budget per call, so a store that drops one request in a hundred costs a retry, not an
//! upload.
//!
//! What is repeated, and why it is safe:
//! * reads (`get`, `head`, ranged reads, listings by delimiter): no effect to repeat; a read
//!   whose body breaks or stalls resumes where it stopped (see [`super::resume`]);
//! * puts: an overwrite writes the same bytes again. A create-only (or conditional) put whose
//!   earlier attempt failed ambiguously may meet its own object on the retry; the stored bytes
//!   are compared with the payload, and the put counts as done when they are equal. Every
//!   object this service writes starts with fresh random bytes (sealed headers, nonces), so
//!   equal bytes can only be this call's own write;
//! * copies and renames: repeated as such. A create-only copy that meets its own earlier
//!   success answers `AlreadyExists`, which callers already read as "an equal object holds
//!   the name" (media ids are derived from content);
//! * deletes: idempotent; `NotFound` after a failed attempt means the attempt did delete;
//! * multipart parts by index ([`RetryingMultipart`]): a part written again under the same
//!   index replaces itself. Parts written through object_store's `MultipartUpload` (which
//!   numbers parts by call order) are not repeatable and are not retried; the service uses
//!   that interface only on local files.
//!
//! Only `Generic` errors (I/O, timeouts, 5xx after the client's own retries) are transient.
//! Answers such as `NotFound`, `AlreadyExists`, `Precondition` or a refused credential are
//! returned at once. On S3, object_store's client already retries transport failures inside
//! the same budget; a failure that arrives after the budget is spent is not repeated again.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartId, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions,
};
use prometheus::IntCounterVec;

use crate::config::StorageSettings;

/// How often and for how long a call is repeated.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Repeats after the first attempt.
    pub max_retries: usize,
    /// No repeat starts once this much time has passed since the first attempt.
    pub budget: Duration,
    /// One attempt may last this long.
    pub attempt_timeout: Duration,
    /// A body that delivers no byte for this long is resumed.
    pub stall_timeout: Duration,
    /// Backoff: the n-th repeat waits a random time below `min(base * 2^n, max)`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub fn from_settings(s: &StorageSettings) -> RetryPolicy {
        RetryPolicy {
            max_retries: s.max_retries,
            budget: s.retry_timeout,
            attempt_timeout: s.request_timeout,
            stall_timeout: s.stall_timeout,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(1),
        }
    }

    /// The wait before repeat number `n` (0-based): "full jitter", so replicas that failed
    /// together do not retry together.
    pub(super) fn delay(&self, n: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1u32 << n.min(16))
            .min(self.max_delay);
        let mut r = [0u8; 4];
        // Without randomness the wait is the cap itself: slower, still correct.
        if crate::crypto::random_bytes(&mut r).is_err() {
            return cap;
        }
        cap.mul_f64(f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX))
    }
}

/// Whether a failure may go away when the call is repeated.
pub fn is_transient(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
    )
}

fn timed_out(op: &'static str, after: Duration) -> object_store::Error {
    object_store::Error::Generic {
        store: "retry",
        source: format!("{op}: no answer within {} ms", after.as_millis()).into(),
    }
}

/// Runs calls under a [`RetryPolicy`] and counts the repeats.
#[derive(Clone)]
pub struct Retrier {
    pub(super) policy: RetryPolicy,
    retries: IntCounterVec,
}

impl fmt::Debug for Retrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retrier")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Retrier {
    pub fn new(policy: RetryPolicy, retries: IntCounterVec) -> Retrier {
        Retrier { policy, retries }
    }

    /// Run `call` until it succeeds, fails for good, or the policy is spent. Returns the last
    /// result and the number of attempts made.
    pub async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        mut call: F,
    ) -> (object_store::Result<T>, u32)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let start = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let result = match tokio::time::timeout(self.policy.attempt_timeout, call()).await {
                Ok(r) => r,
                Err(_) => Err(timed_out(op, self.policy.attempt_timeout)),
            };
            match result {
                Err(e) if is_transient(&e) && (attempts as usize) <= self.policy.max_retries => {
                    let wait = self.policy.delay(attempts - 1);
                    if start.elapsed() + wait >= self.policy.budget {
                        return (Err(e), attempts);
                    }
                    self.count(op);
                    tracing::debug!(op, attempts, error = %e, "repeating a store call");
                    tokio::time::sleep(wait).await;
                }
                other => return (other, attempts),
            }
        }
    }

    pub(super) fn count(&self, op: &'static str) {
        self.retries.with_label_values(&[op]).inc();
    }
}

/// An [`ObjectStore`] that repeats the calls that are safe to repeat (see the module doc).
#[derive(Debug, Clone)]
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    retrier: Retrier,
}

impl RetryingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, retrier: Retrier) -> RetryingStore {
        RetryingStore { inner, retrier }
    }

    /// Whether `location` holds exactly `payload` (a conditional put that failed ambiguously
    /// and then met an object: was it its own write?).
    async fn holds(&self, location: &Path, payload: &PutPayload) -> Option<PutResult> {
        let (got, _) = self
            .retrier
            .run("get", || {
                self.inner.get_opts(location, GetOptions::default())
            })
            .await;
        let got = got.ok()?;
        if got.meta.size != payload.content_length() as u64 {
            return None;
        }
        let result = PutResult {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
            extensions: Default::default(),
        };
        let mut want = payload.iter().flat_map(|b| b.iter().copied());
        let mut stream = got.into_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece.ok()?;
            if !piece.iter().copied().eq(want.by_ref().take(piece.len())) {
                return None;
            }
        }
        want.next().is_none().then_some(result)
    }

    async fn delete_one(&self, location: Path) -> object_store::Result<Path> {
        let (r, attempts) = self
            .retrier
            .run("delete", || {
                let location = location.clone();
                let one = futures::stream::once(futures::future::ready(Ok(location.clone())));
                let mut results = self.inner.delete_stream(one.boxed());
                async move { results.next().await.unwrap_or(Ok(location)) }
            })
            .await;
        match r {
            // An earlier attempt that "failed" did delete it.
            Err(object_store::Error::NotFound { .. }) if attempts > 1 => Ok(location),
            other => other,
        }
    }
}

impl fmt::Display for RetryingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Retrying({})", self.inner)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for RetryingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let conditional = !matches!(opts.mode, PutMode::Overwrite);
        let (r, attempts) = self
            .retrier
            .run("put", || {
                self.inner.put_opts(location, payload.clone(), opts.clone())
            })
            .await;
        match r {
            Err(
                e @ (object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }),
            ) if conditional && attempts > 1 => match self.holds(location, &payload).await {
                Some(done) => Ok(done),
                None => Err(e),
            },
            other => other,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        // Starting an upload twice leaves an empty upload behind, which `sweep` aborts.
        self.retrier
            .run("multipart_create", || {
                self.inner.put_multipart_opts(location, opts.clone())
            })
            .await
            .0
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let head = options.head;
        let (r, _) = self
            .retrier
            .run("get", || self.inner.get_opts(location, options.clone()))
            .await;
        let mut got = r?;
        if head {
            return Ok(got);
        }
        let placeholder = GetResultPayload::Stream(futures::stream::empty().boxed());
        got.payload = match std::mem::replace(&mut got.payload, placeholder) {
            GetResultPayload::Stream(stream) => GetResultPayload::Stream(super::resume::resuming(
                self.inner.clone(),
                self.retrier.clone(),
                location.clone(),
                &got,
                stream,
            )),
            // A local file is read by the caller; there is no request to resume.
            file => file,
        };
        Ok(got)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.retrier
            .run("get_ranges", || self.inner.get_ranges(location, ranges))
            .await
            .0
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // One path at a time (a few in parallel), so a failure is retried for the path it
        // belongs to; deletes are rare outside `sweep`.
        let this = self.clone();
        locations
            .map(move |location| {
                let this = this.clone();
                async move { this.delete_one(location?).await }
            })
            .buffered(8)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        // A listing is paged by the store; a failed page ends it with an error that `sweep`
        // counts (and the next sweep lists again).
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.retrier
            .run("list", || self.inner.list_with_delimiter(prefix))
            .await
            .0
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.retrier
            .run("copy", || self.inner.copy_opts(from, to, options.clone()))
            .await
            .0
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.retrier
            .run("rename", || {
                self.inner.rename_opts(from, to, options.clone())
            })
            .await
            .0
    }
}

/// A [`MultipartStore`] whose calls are repeated: parts are addressed by index, so a part
/// written twice is the same part.
#[derive(Clone)]
pub struct RetryingMultipart {
    inner: Arc<dyn MultipartStore>,
    retrier: Retrier,
}

impl fmt::Debug for RetryingMultipart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingMultipart")
            .field("retrier", &self.retrier)
            .finish_non_exhaustive()
    }
}

impl RetryingMultipart {
    pub fn new(inner: Arc<dyn MultipartStore>, retrier: Retrier) -> RetryingMultipart {
        RetryingMultipart { inner, retrier }
    }
}

#[async_trait]
impl MultipartStore for RetryingMultipart {
    async fn create_multipart(&self, path: &Path) -> object_store::Result<MultipartId> {
        // A second upload started by a repeat stays empty; `sweep` aborts it.
        self.retrier
            .run("create_multipart", || self.inner.create_multipart(path))
            .await
            .0
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<PartId> {
        self.retrier
            .run("put_part", || {
                self.inner.put_part(path, id, part_idx, data.clone())
            })
            .await
            .0
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> object_store::Result<PutResult> {
        self.retrier
            .run("complete_multipart", || {
                self.inner.complete_multipart(path, id, parts.clone())
            })
            .await
            .0
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> object_store::Result<()> {
        self.retrier
            .run("abort_multipart", || self.inner.abort_multipart(path, id))
            .await
            .0
    }
}
