//! Prometheus metrics: names, the registry, and an `ObjectStore` wrapper that times every call.
//! Every label comes from a bounded set (route templates, kinds, fixed reasons).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// All metrics of one service instance; clones share them (one `Arc`).
#[derive(Clone)]
pub struct Metrics(Arc<MetricsInner>);

impl std::ops::Deref for Metrics {
    type Target = MetricsInner;
    fn deref(&self) -> &MetricsInner {
        &self.0
    }
}

/// The metrics themselves (see [`Metrics`]).
pub struct MetricsInner {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub bytes_in: IntCounterVec,
    pub bytes_out: IntCounterVec,
    pub store_duration: HistogramVec,
    pub store_errors: IntCounterVec,
    /// Store calls repeated after a transient failure (and reads resumed), by operation.
    pub store_retries: IntCounterVec,
    pub tokens_minted: IntCounter,
    pub token_mint_requests: IntCounterVec,
    pub tokens_rejected: IntCounterVec,
    pub uploads_rejected: IntCounterVec,
    pub uploads_in_flight: IntGauge,
    /// Memory reserved by uploads under `[limits.uploads]` (see `admission`).
    pub upload_memory_reserved: IntGauge,
    /// Uploads refused for want of room, by which limit was full.
    pub upload_admission_refused: IntCounterVec,
    pub uploads_aborted: IntCounter,
    /// Stored chunks that failed authentication while being served (corruption, tampering).
    pub decrypt_failures: IntCounter,
    /// Requests between arrival and response headers.
    pub http_in_flight: IntGauge,
    /// Download bodies being sent.
    pub downloads_in_flight: IntGauge,
    /// A download from arrival until its body ended (`complete`) or was dropped (`aborted`).
    pub download_duration: HistogramVec,
    /// 1 when the last readiness probe passed.
    pub ready: IntGauge,
    /// Seal-for-me pipeline: workers analysing now, time waited for one, workers lost.
    pub media_workers_busy: IntGauge,
    pub media_queue_wait: HistogramVec,
    pub media_worker_failures: IntCounterVec,
    /// Resumable uploads: created, finished, and PATCHes refused because another held the lease.
    pub tus_created: IntCounter,
    pub tus_finished: IntCounter,
    pub tus_lease_conflicts: IntCounter,
    /// Stock `process_*` metrics, kept out of the prefixed registry so standard dashboards match.
    process: Registry,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

impl Metrics {
    /// The counters upload admission feeds.
    pub fn admission(&self) -> crate::admission::AdmissionMetrics {
        crate::admission::AdmissionMetrics {
            reserved: self.upload_memory_reserved.clone(),
            refused: self.upload_admission_refused.clone(),
        }
    }

    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("interop_media".into()), None)?;
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                    labels,
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let m = MetricsInner {
            http_requests: counter_vec(
                "http_requests_total",
                "HTTP requests by route template, method and status.",
                &["route", "method", "status"],
            )?,
            http_duration: histogram_vec(
                "http_request_duration_seconds",
                "Time to response headers, by route template and method.",
                &["route", "method"],
            )?,
            bytes_in: counter_vec(
                "media_bytes_in_total",
                "Media bytes received, by kind.",
                &["kind"],
            )?,
            bytes_out: counter_vec(
                "media_bytes_out_total",
                "Media bytes sent to downloaders, by kind.",
                &["kind"],
            )?,
            store_duration: histogram_vec(
                "store_request_duration_seconds",
                "Object store call latency, by operation.",
                &["op"],
            )?,
            store_errors: counter_vec(
                "store_errors_total",
                "Object store calls that failed, by operation.",
                &["op"],
            )?,
            store_retries: counter_vec(
                "store_retries_total",
                "Object store calls repeated after a transient failure, and reads resumed, by operation.",
                &["op"],
            )?,
            tokens_minted: IntCounter::new("tokens_minted_total", "Download tokens minted.")?,
            token_mint_requests: counter_vec(
                "token_mint_requests_total",
                "Successful token requests, by class (single, fanout) and audience-count bucket.",
                &["class", "audiences"],
            )?,
            tokens_rejected: counter_vec(
                "tokens_rejected_total",
                "Download tokens refused, by reason.",
                &["reason"],
            )?,
            uploads_rejected: counter_vec(
                "uploads_rejected_total",
                "Uploads refused, by reason (the error code).",
                &["reason"],
            )?,
            uploads_in_flight: IntGauge::new("uploads_in_flight", "Uploads currently streaming.")?,
            upload_memory_reserved: IntGauge::new(
                "upload_memory_reserved_bytes",
                "Memory reserved by uploads in progress, out of limits.uploads.memory_mib.",
            )?,
            upload_admission_refused: counter_vec(
                "upload_admission_refused_total",
                "Uploads refused for want of room, by limit (service_memory, service_uploads, partner_memory).",
                &["reason"],
            )?,
            uploads_aborted: IntCounter::new(
                "uploads_aborted_total",
                "Unfinished uploads whose storage writes were aborted.",
            )?,
            http_in_flight: IntGauge::new(
                "http_requests_in_flight",
                "Requests received and not yet answered.",
            )?,
            downloads_in_flight: IntGauge::new(
                "downloads_in_flight",
                "Download bodies being sent.",
            )?,
            download_duration: histogram_vec(
                "download_duration_seconds",
                "Whole downloads, from the request until the body ended or the client left.",
                &["outcome"],
            )?,
            ready: IntGauge::new("ready", "1 when the last readiness probe passed, else 0.")?,
            media_workers_busy: IntGauge::new(
                "media_workers_busy",
                "Seal-for-me workers analysing a file now.",
            )?,
            media_queue_wait: histogram_vec(
                "media_queue_wait_seconds",
                "Time a seal-for-me request waited for a free worker, by outcome.",
                &["outcome"],
            )?,
            media_worker_failures: counter_vec(
                "media_worker_failures_total",
                "Seal-for-me workers lost, by reason (deadline, limit, crash, panic).",
                &["reason"],
            )?,
            tus_created: IntCounter::new(
                "tus_uploads_created_total",
                "Resumable uploads created.",
            )?,
            tus_finished: IntCounter::new(
                "tus_uploads_finished_total",
                "Resumable uploads completed into stored media.",
            )?,
            tus_lease_conflicts: IntCounter::new(
                "tus_lease_conflicts_total",
                "PATCH requests refused because another request held the upload's lease.",
            )?,
            decrypt_failures: IntCounter::new(
                "stored_decrypt_failures_total",
                "Stored chunks that failed authentication while being served.",
            )?,
            process: Registry::new(),
            registry,
        };
        for c in [
            &m.tokens_minted,
            &m.uploads_aborted,
            &m.tus_created,
            &m.tus_finished,
            &m.tus_lease_conflicts,
            &m.decrypt_failures,
        ] {
            m.registry.register(Box::new(c.clone()))?;
        }
        for g in [
            &m.uploads_in_flight,
            &m.upload_memory_reserved,
            &m.http_in_flight,
            &m.downloads_in_flight,
            &m.ready,
            &m.media_workers_busy,
        ] {
            m.registry.register(Box::new(g.clone()))?;
        }
        let build_info = IntGaugeVec::new(
            Opts::new(
                "build_info",
                "Always 1; the labels say which build is running.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m.registry.register(Box::new(build_info))?;
        #[cfg(target_os = "linux")]
        m.process.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics(Arc::new(m)))
    }

    /// Start timing a download body; the returned guard records it when dropped.
    pub fn download_started(&self, started: Instant) -> DownloadTimer {
        self.downloads_in_flight.inc();
        DownloadTimer {
            metrics: self.clone(),
            started,
            complete: false,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail on I/O; a failure would mean a malformed metric family.
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        if TextEncoder::new().encode(&families, &mut buf).is_err() {
            buf.clear();
        }
        buf
    }
}

/// Holds a gauge up by one while alive.
#[derive(Debug)]
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    pub fn new(g: &IntGauge) -> GaugeGuard {
        g.inc();
        GaugeGuard(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Times one download body: in flight until dropped, then observed as `complete` if the
/// stream reached its end, else `aborted` (client gone, store failure).
#[derive(Debug)]
pub struct DownloadTimer {
    metrics: Metrics,
    started: Instant,
    complete: bool,
}

impl DownloadTimer {
    /// The body stream yielded its last piece.
    pub fn finished(&mut self) {
        self.complete = true;
    }
}

impl Drop for DownloadTimer {
    fn drop(&mut self) {
        self.metrics.downloads_in_flight.dec();
        let outcome = if self.complete { "complete" } else { "aborted" };
        self.metrics
            .download_duration
            .with_label_values(&[outcome])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// An `ObjectStore` that records latency and errors of every call of the store it wraps.
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    metrics: Metrics,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: Metrics) -> Self {
        InstrumentedStore { inner, metrics }
    }

    fn observe<T>(&self, op: &str, start: Instant, r: &object_store::Result<T>) {
        observe(&self.metrics, op, start, r.as_ref().err());
    }
}

/// Record one object store call (also used for the multipart calls of resumable uploads).
pub fn observe(m: &Metrics, op: &str, start: Instant, err: Option<&object_store::Error>) {
    m.store_duration
        .with_label_values(&[op])
        .observe(start.elapsed().as_secs_f64());
    // A missing object is an answer, not a store failure.
    if let Some(e) = err
        && !matches!(
            e,
            object_store::Error::NotFound { .. } | object_store::Error::AlreadyExists { .. }
        )
    {
        m.store_errors.with_label_values(&[op]).inc();
    }
}

impl fmt::Display for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for InstrumentedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let t = Instant::now();
        let r = self.inner.put_opts(location, payload, opts).await;
        self.observe("put", t, &r);
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let t = Instant::now();
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.observe("multipart_create", t, &r);
        Ok(Box::new(InstrumentedUpload {
            inner: r?,
            metrics: self.metrics.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let t = Instant::now();
        let r = self.inner.get_opts(location, options).await;
        self.observe("get", t, &r);
        r
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let t = Instant::now();
        let r = self.inner.get_ranges(location, ranges).await;
        self.observe("get_ranges", t, &r);
        r
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let m = self.metrics.clone();
        // Each delete is timed from when the previous one answered (the first from here):
        // the stream is created when the caller starts deleting.
        let mut since = Instant::now();
        self.inner
            .delete_stream(locations)
            .map(move |r| {
                observe(&m, "delete", since, r.as_ref().err());
                since = Instant::now();
                r
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
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
        let t = Instant::now();
        let r = self.inner.list_with_delimiter(prefix).await;
        self.observe("list", t, &r);
        r
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let t = Instant::now();
        let r = self.inner.copy_opts(from, to, options).await;
        self.observe("copy", t, &r);
        r
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let t = Instant::now();
        let r = self.inner.rename_opts(from, to, options).await;
        self.observe("rename", t, &r);
        r
    }
}

#[derive(Debug)]
struct InstrumentedUpload {
    inner: Box<dyn MultipartUpload>,
    metrics: Metrics,
}

#[async_trait]
impl MultipartUpload for InstrumentedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let fut = self.inner.put_part(data);
        let m = self.metrics.clone();
        Box::pin(async move {
            let t = Instant::now();
            let r = fut.await;
            observe(&m, "put_part", t, r.as_ref().err());
            r
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let t = Instant::now();
        let r = self.inner.complete().await;
        observe(&self.metrics, "multipart_complete", t, r.as_ref().err());
        r
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let t = Instant::now();
        let r = self.inner.abort().await;
        observe(&self.metrics, "multipart_abort", t, r.as_ref().err());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use object_store::throttle::{ThrottleConfig, ThrottledStore};
    use std::time::Duration;

    fn sample_sum(m: &Metrics, name: &str, label: &str) -> f64 {
        let h = match name {
            "store" => m.store_duration.with_label_values(&[label]),
            _ => m.download_duration.with_label_values(&[label]),
        };
        h.get_sample_sum()
    }

    /// The delete timer used to start when the delete had already answered (≈ 0 s).
    #[tokio::test]
    async fn delete_latency_is_timed_from_the_start() {
        let m = Metrics::new().unwrap();
        let slow = ThrottledStore::new(
            InMemory::new(),
            ThrottleConfig {
                wait_delete_per_call: Duration::from_millis(60),
                ..Default::default()
            },
        );
        let store = InstrumentedStore::new(Arc::new(slow), m.clone());
        let p = Path::from("a");
        store.put(&p, PutPayload::from_static(b"x")).await.unwrap();
        store.delete(&p).await.unwrap();
        let sum = sample_sum(&m, "store", "delete");
        assert!(sum >= 0.05, "delete observed {sum} s for a 60 ms delete");
    }

    #[test]
    fn exposition_has_stock_process_names_and_build_info() {
        let m = Metrics::new().unwrap();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(!text.contains("interop_media_process_"), "{text}");
        #[cfg(target_os = "linux")]
        assert!(
            text.lines()
                .any(|l| l.starts_with("process_resident_memory_bytes ")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "interop_media_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }

    #[test]
    fn download_timer_covers_the_body_and_counts_aborts() {
        let m = Metrics::new().unwrap();
        let mut t = m.download_started(Instant::now() - Duration::from_millis(30));
        assert_eq!(m.downloads_in_flight.get(), 1);
        t.finished();
        drop(t);
        let aborted = m.download_started(Instant::now());
        drop(aborted);
        assert_eq!(m.downloads_in_flight.get(), 0);
        assert!(sample_sum(&m, "dl", "complete") >= 0.03);
        assert_eq!(
            m.download_duration
                .with_label_values(&["aborted"])
                .get_sample_count(),
            1
        );
    }
}
