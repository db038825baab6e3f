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
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// All metrics of one service instance.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub bytes_in: IntCounterVec,
    pub bytes_out: IntCounterVec,
    pub store_duration: HistogramVec,
    pub store_errors: IntCounterVec,
    pub tokens_minted: IntCounter,
    pub token_mint_requests: IntCounterVec,
    pub tokens_rejected: IntCounterVec,
    pub uploads_rejected: IntCounterVec,
    pub uploads_in_flight: IntGauge,
    pub uploads_aborted: IntCounter,
    /// Stored chunks that failed authentication while being served (corruption, tampering).
    pub decrypt_failures: IntCounter,
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
        let m = Metrics {
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
            uploads_aborted: IntCounter::new(
                "uploads_aborted_total",
                "Unfinished uploads whose storage writes were aborted.",
            )?,
            decrypt_failures: IntCounter::new(
                "stored_decrypt_failures_total",
                "Stored chunks that failed authentication while being served.",
            )?,
            registry,
        };
        m.registry.register(Box::new(m.tokens_minted.clone()))?;
        m.registry.register(Box::new(m.uploads_in_flight.clone()))?;
        m.registry.register(Box::new(m.uploads_aborted.clone()))?;
        m.registry.register(Box::new(m.decrypt_failures.clone()))?;
        #[cfg(target_os = "linux")]
        m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(m)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail on I/O; a failure would mean a malformed metric family.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            buf.clear();
        }
        buf
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
        self.inner
            .delete_stream(locations)
            .map(move |r| {
                observe(&m, "delete", Instant::now(), r.as_ref().err());
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
