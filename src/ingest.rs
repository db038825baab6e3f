//! Sealed upload pipeline: body stream → limits → digest → at-rest seal → single put or
//! multipart, with a guard that aborts the multipart upload if the request goes away.
//!
//! Nothing becomes visible before the whole body has arrived and matched its declared
//! length, digest and format: small objects are one atomic conditional put, large ones a
//! multipart upload that is completed only after those checks and aborted otherwise.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use object_store::multipart::MultipartStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::admission::{Admission, Ticket};
use crate::auth::Partner;
use crate::body_limit::BodyLimit;
use crate::body_pace::{BodyError, Pace, PacePolicy};
use crate::cleanup::Cleanup;
use crate::config::{KindLimits, Settings};
use crate::crypto::keys::KeyRing;
use crate::crypto::object::{ObjectMeta, seal_header};
use crate::crypto::stream::{Sealer, plain_len, sealed_len};
use crate::error::{ApiError, StoreError};
use crate::media::{MediaFormat, MediaKind};
use crate::metrics::Metrics;
use crate::storage::{Head, PartWriter, media_path, read_head};

/// What a gateway declared about a sealed upload.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    pub partner: Partner,
    pub kind: MediaKind,
    pub format: MediaFormat,
    pub sha256: [u8; 32],
    /// `Content-Length`, when the body is not chunked.
    pub declared_len: Option<u64>,
}

/// The public description of a stored media (the 201/200 body and `GET /v1/media/{id}`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MediaInfo {
    pub id: String,
    pub kind: MediaKind,
    pub format: MediaFormat,
    pub size: u64,
    pub sha256: String,
    pub created_at: String,
    pub expires_at: String,
}

impl MediaInfo {
    pub fn from_head(id: &str, head: &Head) -> Result<MediaInfo, StoreError> {
        let m = &head.header.meta;
        let payload = head.object_size.saturating_sub(head.header.header_len);
        Ok(MediaInfo {
            id: id.to_string(),
            kind: m.kind,
            format: m.format,
            size: plain_len(payload).ok_or(StoreError::Corrupt("payload length"))?,
            sha256: m.sha256.clone(),
            created_at: rfc3339(m.created),
            expires_at: rfc3339(m.expires),
        })
    }
}

#[derive(Debug)]
pub enum Outcome {
    Created(MediaInfo),
    Existing(MediaInfo),
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

pub use crate::crypto::ids::{MediaIds, id_is_valid};

/// At most how long the stored object of a `plain_len`-byte body is (longest header).
fn stored_len_bound(plain_len: u64) -> u64 {
    crate::crypto::object::MAX_HEADER_LEN as u64 + sealed_len(plain_len)
}

/// Counts and hashes the body and enforces the length limits shared by both paths.
struct Intake {
    hasher: Sha256,
    count: BodyLimit,
}

impl Intake {
    fn take(&mut self, piece: &[u8]) -> Result<(), ApiError> {
        self.count.take(piece.len())?;
        self.hasher.update(piece);
        Ok(())
    }

    /// Length, digest and structure checks once the body has ended.
    fn verify(self, req: &UploadRequest) -> Result<u64, ApiError> {
        let received = self.count.finish()?;
        let digest: [u8; 32] = self.hasher.finalize().into();
        if !bool::from(digest.ct_eq(&req.sha256)) {
            return Err(ApiError::DigestMismatch);
        }
        if !req.format.length_is_valid(received) {
            return Err(ApiError::FormatInvalid {
                format: req.format.as_str(),
                len: received,
            });
        }
        Ok(received)
    }
}

/// A multipart upload that is aborted unless it was completed: dropping the request future
/// (client gone, shutdown) spawns the abort, so no parts linger.
struct MultipartGuard {
    upload: Option<PartWriter>,
    metrics: crate::metrics::Metrics,
    cleanup: Cleanup,
}

impl MultipartGuard {
    async fn abort(mut self) {
        if let Some(w) = self.upload.take() {
            self.metrics.uploads_aborted.inc();
            if let Err(e) = w.abort().await {
                tracing::warn!(error = %e, "aborting multipart upload failed; the bucket lifecycle rule will collect it");
            }
        }
    }
}

impl Drop for MultipartGuard {
    fn drop(&mut self) {
        if let Some(w) = self.upload.take() {
            self.metrics.uploads_aborted.inc();
            // On the main runtime: the HTTP worker that dropped us may be shutting down.
            self.cleanup.spawn(async move {
                if let Err(e) = w.abort().await {
                    tracing::warn!(error = %e, "aborting multipart upload failed; the bucket lifecycle rule will collect it");
                }
            });
        }
    }
}

/// Where sealed bytes go: held in memory until they exceed one part, then a multipart upload.
enum Sink {
    Buffer(BytesMut),
    /// Boxed: the guard is large and the small-body variant is the common one.
    Multipart(Box<MultipartGuard>),
}

/// The single-upload flow, holding only what it needs: the store (and its multipart
/// interface), the master ring, the id key, limits, retention, part sizing, the counters it
/// feeds, and the cleanup runtime for aborts. Built once in `app.rs`; resumable uploads and
/// seal-for-me use its lookup and commit steps.
#[derive(Clone)]
pub struct Ingest {
    store: Arc<dyn ObjectStore>,
    native: Option<Arc<dyn MultipartStore>>,
    master_keys: KeyRing,
    ids: MediaIds,
    limits: KindLimits,
    retention: Duration,
    pace: PacePolicy,
    admission: Admission,
    part_size: usize,
    upload_concurrency: usize,
    metrics: Metrics,
    cleanup: Cleanup,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

impl Ingest {
    pub fn new(
        settings: &Settings,
        store: Arc<dyn ObjectStore>,
        native: Option<Arc<dyn MultipartStore>>,
        metrics: Metrics,
        cleanup: Cleanup,
        admission: Admission,
    ) -> Ingest {
        Ingest {
            store,
            native,
            master_keys: settings.master_keys.clone(),
            ids: MediaIds::new(settings.master_keys.active().1),
            limits: settings.sealed_limits.clone(),
            retention: settings.retention,
            pace: settings.body_pace,
            admission,
            part_size: settings.storage.part_size,
            upload_concurrency: settings.storage.upload_concurrency,
            metrics,
            cleanup,
        }
    }

    /// The id a blob gets (see [`MediaIds`]).
    pub fn media_id(
        &self,
        partner: &str,
        kind: MediaKind,
        format: MediaFormat,
        sha256: &[u8; 32],
    ) -> String {
        self.ids.derive(partner, kind, format, sha256)
    }

    /// Reserve memory for one upload of `plain_len` bytes (`None`: unknown) by `partner`;
    /// held until the ticket drops (see [`Admission`]).
    pub(crate) async fn admit(
        &self,
        partner: &str,
        plain_len: Option<u64>,
    ) -> Result<Ticket, ApiError> {
        self.admission
            .admit(partner, plain_len.map(stored_len_bound))
            .await
    }

    /// The pace upload bodies must keep.
    pub(crate) fn pace(&self) -> PacePolicy {
        self.pace
    }

    /// Look up a media id for `partner`: `Ok(None)` when it does not exist for them.
    /// A partner never learns whether another partner's media exists.
    pub async fn lookup(&self, partner: &str, id: &str) -> Result<Option<Head>, ApiError> {
        match read_head(self.store.as_ref(), &self.master_keys, id).await {
            Ok(head) if head.header.meta.partner == partner => Ok(Some(head)),
            Ok(_) | Err(StoreError::NotFound) => Ok(None),
            // Sealed under a retired key: crypto-shredded, as good as gone.
            Err(StoreError::UnknownKey) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The sealed upload: stores the body, or finds the same media already stored.
    pub async fn ingest<S>(&self, req: UploadRequest, mut body: S) -> Result<Outcome, ApiError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        let limit = self.limits.get(req.kind);
        if let Some(declared) = req.declared_len {
            // Both checks run before a byte of the body is read.
            if declared > limit {
                return Err(ApiError::TooLarge {
                    kind: req.kind.as_str(),
                    declared,
                    limit,
                });
            }
            if !req.format.length_is_valid(declared) {
                return Err(ApiError::FormatInvalid {
                    format: req.format.as_str(),
                    len: declared,
                });
            }
        }
        let id = self
            .ids
            .derive(&req.partner.id, req.kind, req.format, &req.sha256);
        let mut intake = Intake {
            hasher: Sha256::new(),
            count: BodyLimit::new(req.kind.as_str(), limit, req.declared_len),
        };
        let mut pace = Pace::new(self.pace);
        let now = now_unix();

        let existing = self.lookup(&req.partner.id, &id).await?;
        let replacing = match existing {
            Some(head) if head.header.meta.expires > now => {
                // Same content already stored: read the body to prove it is the same blob (and
                // to leave the connection reusable), store nothing.
                while let Some(piece) = pace.next(&mut body).await? {
                    intake.take(&piece)?;
                }
                intake.verify(&req)?;
                return Ok(Outcome::Existing(MediaInfo::from_head(&id, &head)?));
            }
            // Expired but not yet swept: the new upload takes its place.
            Some(_) => true,
            None => false,
        };
        // Room for what this upload holds in memory, before a byte of it is stored.
        let _ticket = self.admit(&req.partner.id, req.declared_len).await?;

        let mut generation = [0u8; 8];
        crate::crypto::random_bytes(&mut generation).map_err(|_| ApiError::Internal)?;
        let meta = ObjectMeta {
            partner: req.partner.id.clone(),
            kind: req.kind,
            format: req.format,
            sha256: hex::encode(req.sha256),
            created: now,
            expires: now + self.retention.as_secs(),
            generation: hex::encode(generation),
        };
        let (header, cipher) =
            seal_header(&self.master_keys, &id, &meta).map_err(|_| ApiError::Internal)?;
        let mut sealer = Sealer::new(cipher);
        let part_size = self.part_size;
        let path = media_path(&id);
        // Sized once when the length is known: growing by doubling would copy the part
        // several times and leave the freed buffers in the allocator (RSS above the
        // reservation). The first part is cut once it exceeds `part_size`, i.e. at most one
        // sealed piece later.
        let first_cap = match req.declared_len {
            Some(n) => usize::try_from(stored_len_bound(n))
                .unwrap_or(usize::MAX)
                .min(part_size + 2 * crate::crypto::stream::SEALED_CHUNK_SIZE),
            None => part_size.min(1 << 20),
        };
        let mut first = BytesMut::with_capacity(first_cap);
        first.extend_from_slice(&header);
        let mut sink = Sink::Buffer(first);

        let _in_flight = InFlight::new(&self.metrics);
        // Objects beyond one part are written to a staging path and committed create-only.
        let staged = crate::storage::staging_path(&id).map_err(|_| ApiError::Internal)?;
        let received = self
            .receive(
                &mut body,
                &mut pace,
                &mut intake,
                &mut sealer,
                &mut sink,
                &staged,
            )
            .await;
        let size = match received.and_then(|()| intake.verify(&req)) {
            Ok(size) => size,
            Err(e) => {
                if let Sink::Multipart(guard) = sink {
                    guard.abort().await;
                }
                return Err(e);
            }
        };

        let info = MediaInfo {
            id: id.clone(),
            kind: req.kind,
            format: req.format,
            size,
            sha256: meta.sha256.clone(),
            created_at: rfc3339(meta.created),
            expires_at: rfc3339(meta.expires),
        };
        let outcome = match sink {
            Sink::Buffer(mut buf) => {
                sealer.finish(&mut buf).map_err(|_| ApiError::Internal)?;
                self.put_small(&req, &id, &path, buf.freeze(), replacing, info)
                    .await?
            }
            Sink::Multipart(mut guard) => {
                let Some(mut w) = guard.upload.take() else {
                    return Err(ApiError::Internal);
                };
                let mut tail = BytesMut::new();
                sealer.finish(&mut tail).map_err(|_| ApiError::Internal)?;
                w.put(tail.freeze());
                // Completing a multipart upload overwrites, so it completes the staging object;
                // the create-only commit below decides which of several racing uploads of the
                // same content becomes the media (each has its own generation, which tokens bind).
                if let Err(e) = w.finish().await {
                    tracing::warn!(error = %e, "completing multipart upload failed");
                    self.metrics.uploads_aborted.inc();
                    return Err(StoreError::from(e).into());
                }
                match self
                    .commit_staged(&req.partner.id, &id, &staged, replacing)
                    .await?
                {
                    None => Outcome::Created(info),
                    Some(head) => Outcome::Existing(MediaInfo::from_head(&id, &head)?),
                }
            }
        };
        self.metrics
            .bytes_in
            .with_label_values(&[req.kind.as_str()])
            .inc_by(size);
        Ok(outcome)
    }

    /// Stream the body through the intake checks and the sealer into the sink. The first part
    /// stays in memory so that small objects can be written with one conditional put.
    async fn receive<S>(
        &self,
        body: &mut S,
        pace: &mut Pace,
        intake: &mut Intake,
        sealer: &mut Sealer,
        sink: &mut Sink,
        path: &object_store::path::Path,
    ) -> Result<(), ApiError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        while let Some(piece) = pace.next(body).await? {
            intake.take(&piece)?;
            match sink {
                Sink::Buffer(buf) => {
                    sealer.push(&piece, buf).map_err(|_| ApiError::Internal)?;
                    if buf.len() > self.part_size {
                        let mut w = PartWriter::begin(
                            self.store.as_ref(),
                            self.native.as_ref(),
                            path,
                            self.part_size,
                        )
                        .await
                        .map_err(StoreError::from)?;
                        w.put(buf.split().freeze());
                        *sink = Sink::Multipart(Box::new(MultipartGuard {
                            upload: Some(w),
                            metrics: self.metrics.clone(),
                            cleanup: self.cleanup.clone(),
                        }));
                    }
                }
                Sink::Multipart(guard) => {
                    let mut out = BytesMut::with_capacity(piece.len() + 64);
                    sealer
                        .push(&piece, &mut out)
                        .map_err(|_| ApiError::Internal)?;
                    if let Some(w) = guard.upload.as_mut() {
                        // Backpressure: at most `upload_concurrency` parts in flight, so memory
                        // per upload stays near (concurrency + 1) x part size.
                        w.wait_for_capacity(self.upload_concurrency)
                            .await
                            .map_err(StoreError::from)?;
                        w.put(out.freeze());
                    }
                }
            }
        }
        Ok(())
    }

    /// Write an object that fits one part with a single atomic put. A fresh id uses a
    /// conditional create: of two replicas racing on the same content exactly one creates it,
    /// and the other reports the stored media.
    async fn put_small(
        &self,
        req: &UploadRequest,
        id: &str,
        path: &object_store::path::Path,
        object: Bytes,
        replacing: bool,
        info: MediaInfo,
    ) -> Result<Outcome, ApiError> {
        match self
            .put_once(&req.partner.id, id, path, object.into(), replacing)
            .await?
        {
            None => Ok(Outcome::Created(info)),
            Some(head) => Ok(Outcome::Existing(MediaInfo::from_head(id, &head)?)),
        }
    }

    /// Store a whole media object with one put: a conditional create, or an overwrite when
    /// `replacing` a known-stale object. `Ok(Some(head))`: the same partner's live media already
    /// holds the id (same content, by construction of ids) and nothing was written. Shared by
    /// single uploads and resumable uploads that never needed a part.
    pub(crate) async fn put_once(
        &self,
        partner: &str,
        id: &str,
        path: &object_store::path::Path,
        object: PutPayload,
        replacing: bool,
    ) -> Result<Option<Head>, ApiError> {
        let put = |mode| {
            let opts = PutOptions {
                mode,
                ..Default::default()
            };
            self.store.put_opts(path, object.clone(), opts)
        };
        if replacing {
            put(PutMode::Overwrite).await.map_err(StoreError::from)?;
            return Ok(None);
        }
        match put(PutMode::Create).await {
            Ok(_) => Ok(None),
            Err(object_store::Error::AlreadyExists { .. }) => {
                if let Some(head) = self.lookup(partner, id).await?
                    && head.header.meta.expires > now_unix()
                {
                    return Ok(Some(head));
                }
                // A stale object (expired, or sealed under a retired key) holds the id.
                put(PutMode::Overwrite).await.map_err(StoreError::from)?;
                Ok(None)
            }
            Err(e) => Err(StoreError::from(e).into()),
        }
    }

    /// Make a completed staging object the media `id` with a create-only copy (a hard link on
    /// local files, a conditional one-part multipart copy on S3), then remove the staging object.
    /// Same answers as [`put_once`]: `Ok(Some(head))` when the same partner's live media already
    /// holds the id, which is then kept (its generation, and every token bound to it, stay valid).
    pub(crate) async fn commit_staged(
        &self,
        partner: &str,
        id: &str,
        staged: &object_store::path::Path,
        replacing: bool,
    ) -> Result<Option<Head>, ApiError> {
        let store = self.store.as_ref();
        let target = media_path(id);
        let result = async {
            if replacing {
                store
                    .copy(staged, &target)
                    .await
                    .map_err(StoreError::from)?;
                return Ok(None);
            }
            match store.copy_if_not_exists(staged, &target).await {
                Ok(()) => Ok(None),
                Err(object_store::Error::AlreadyExists { .. }) => {
                    if let Some(head) = self.lookup(partner, id).await?
                        && head.header.meta.expires > now_unix()
                    {
                        return Ok(Some(head));
                    }
                    // A stale object (expired, or sealed under a retired key) holds the id.
                    store
                        .copy(staged, &target)
                        .await
                        .map_err(StoreError::from)?;
                    Ok(None)
                }
                Err(e) => Err(StoreError::from(e).into()),
            }
        }
        .await;
        // Committed or not, the staging copy is done with; if this delete fails (or the process
        // dies first) the sweep removes it once it is older than `storage.orphan_age_s`.
        match store.delete(staged).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %e, "removing a staging object failed; the sweep will")
            }
        }
        result
    }
}

/// Counts an upload as in flight for as long as it lives.
pub(crate) struct InFlight(prometheus::IntGauge);

impl InFlight {
    pub(crate) fn new(m: &crate::metrics::Metrics) -> Self {
        m.uploads_in_flight.inc();
        InFlight(m.uploads_in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests;
