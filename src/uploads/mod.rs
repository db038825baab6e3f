//! Resumable uploads (tus 1.0): an upload is created, fed by PATCHes on any replica, and on
//! its last byte becomes an ordinary media object, sealed at rest exactly like a single upload.
//!
//! How a PATCH runs:
//! 1. Read the log (`record`) and claim the upload by appending a claim record: the
//!    compare-and-swap that makes a second replica answer 409 instead of accepting the same
//!    offset. The claim is a lease, renewed while the PATCH runs, so a replica that dies
//!    mid-PATCH blocks the upload for at most `uploads.lease_s`.
//! 2. Resume the sealer, the digest midstate and the staged tail, then seal the body and
//!    write whole parts to the multipart upload as they fill (`parts`).
//! 3. Stage what is left below a part, then append the new state. Only then does `HEAD`
//!    report the new offset: it never runs ahead of durable data.
//! 4. On the last byte: check the digest, write the object (one conditional put, or the last
//!    part and the completion), then record completion with the media id.
//!
//! Chunks are sealed with positional nonces, so bytes are sealed only when they will be
//! committed: a PATCH with `Upload-Checksum` is spooled to a private temp file and checked
//! before any of it is sealed, and an interrupted PATCH commits what it received.

mod lease;
pub mod parts;
mod patch;
pub mod protocol;
pub mod record;
mod writer;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256};

use std::sync::Arc;

use object_store::ObjectStore;

use crate::auth::Partner;
use crate::cleanup::Cleanup;
use crate::config::{KindLimits, Settings};
use crate::crypto::keys::KeyRing;
use crate::crypto::object::{ObjectMeta, seal_header};
use crate::error::{ApiError, StoreError};
use crate::ingest::Ingest;
use crate::ingest::now_unix;
use crate::media::{MediaFormat, MediaKind};
use crate::metrics::Metrics;
use parts::PartStore;
use record::{Entry, Loaded, UploadState, View};

pub use patch::patch;

/// The resumable-upload flow, holding only what it needs: the store and where parts go, the
/// single-upload flow whose commit step it shares, the master ring, limits and timings, the
/// counters it feeds, and the cleanup runtime for releases and aborts. Built once in `app.rs`.
#[derive(Clone)]
pub struct Uploads {
    store: Arc<dyn ObjectStore>,
    parts: PartStore,
    ingest: Ingest,
    master_keys: KeyRing,
    sealed_limits: KindLimits,
    retention: Duration,
    lease: Duration,
    expiry: Duration,
    part_size: usize,
    upload_concurrency: usize,
    metrics: Metrics,
    cleanup: Cleanup,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads")
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

impl Uploads {
    pub fn new(
        settings: &Settings,
        store: Arc<dyn ObjectStore>,
        parts: PartStore,
        ingest: Ingest,
        metrics: Metrics,
        cleanup: Cleanup,
    ) -> Uploads {
        Uploads {
            store,
            parts,
            ingest,
            master_keys: settings.master_keys.clone(),
            sealed_limits: settings.sealed_limits.clone(),
            retention: settings.retention,
            lease: settings.upload_lease,
            expiry: settings.upload_expiry,
            part_size: settings.storage.part_size,
            upload_concurrency: settings.storage.upload_concurrency,
            metrics,
            cleanup,
        }
    }
}

/// What a creation request declared.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub partner: Partner,
    pub kind: MediaKind,
    pub format: MediaFormat,
    pub sha256: [u8; 32],
    pub length: u64,
    /// The raw `Upload-Metadata` header, echoed by `HEAD`.
    pub metadata: String,
}

/// Where an upload stands, as the tus headers report it.
#[derive(Debug, Clone)]
pub struct Progress {
    pub uid: String,
    pub offset: u64,
    pub length: u64,
    /// Unix seconds.
    pub expires: u64,
    pub metadata: String,
    /// Set once the upload has become a media.
    pub media_id: Option<String>,
}

impl Progress {
    fn of(uid: &str, st: &UploadState) -> Progress {
        Progress {
            uid: uid.to_string(),
            offset: if st.completed { st.length } else { st.offset },
            length: st.length,
            expires: st.expires,
            metadata: st.metadata.clone(),
            media_id: st.completed.then(|| st.media_id.clone()),
        }
    }
}

/// A PATCH as declared by its headers.
#[derive(Debug, Clone, Copy)]
pub struct PatchRequest {
    pub offset: u64,
    /// `Content-Length`, when the body is not chunked.
    pub declared_len: Option<u64>,
    /// `Upload-Checksum` (sha256 of this PATCH's body).
    pub checksum: Option<[u8; 32]>,
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(super) fn random_hex<const N: usize>() -> Result<String, ApiError> {
    crate::crypto::random_hex::<N>().map_err(|_| ApiError::Internal)
}

/// Create an upload. With `Upload-Length: 0` the caller completes it with an empty PATCH.
pub async fn create(up: &Uploads, req: NewUpload) -> Result<Progress, ApiError> {
    let limit = up.sealed_limits.get(req.kind);
    if req.length > limit {
        return Err(ApiError::TooLarge {
            kind: req.kind.as_str(),
            declared: req.length,
            limit,
        });
    }
    if !req.format.length_is_valid(req.length) {
        return Err(ApiError::FormatInvalid {
            format: req.format.as_str(),
            len: req.length,
        });
    }
    let uid = random_hex::<16>()?;
    let media_id = up
        .ingest
        .media_id(&req.partner.id, req.kind, req.format, &req.sha256);
    let now = now_unix();
    let meta = ObjectMeta {
        partner: req.partner.id.clone(),
        kind: req.kind,
        format: req.format,
        sha256: hex::encode(req.sha256),
        created: now,
        expires: now + up.retention.as_secs(),
        generation: random_hex::<8>()?,
    };
    let (header, _) =
        seal_header(&up.master_keys, &media_id, &meta).map_err(|_| ApiError::Internal)?;
    let st = UploadState {
        partner: req.partner.id,
        kind: req.kind,
        format: req.format,
        sha256: meta.sha256,
        length: req.length,
        offset: 0,
        metadata: req.metadata,
        created: now,
        expires: now + up.expiry.as_secs(),
        media_id,
        header: STANDARD.encode(&header),
        multipart: None,
        parts: Vec::new(),
        sealer_index: 0,
        hash_state: STANDARD.encode(Sha256::new().serialize()),
        tail: None,
        completed: false,
        staged: true,
        held: None,
    };
    let store = up.store.as_ref();
    let ring = &up.master_keys;
    if !record::append(store, ring, &uid, 0, &Entry::State(Box::new(st.clone()))).await? {
        // 128 random bits collided: the CSPRNG is broken.
        return Err(ApiError::Internal);
    }
    Ok(Progress::of(&uid, &st))
}

/// The state of `uid` for `partner`; other partners' uploads do not exist for them.
pub(super) async fn live_view(
    up: &Uploads,
    partner: &Partner,
    uid: &str,
) -> Result<View, ApiError> {
    if !record::uid_is_valid(uid) {
        return Err(ApiError::UploadNotFound);
    }
    match record::load(up.store.as_ref(), &up.master_keys, uid).await {
        Ok(Loaded::Live(v)) if v.state.partner == partner.id => Ok(*v),
        Ok(_) | Err(StoreError::NotFound | StoreError::UnknownKey) => Err(ApiError::UploadNotFound),
        Err(e) => Err(e.into()),
    }
}

/// `HEAD`: the durable offset (never ahead of stored data), or the media id once complete.
pub async fn status(up: &Uploads, partner: &Partner, uid: &str) -> Result<Progress, ApiError> {
    let view = live_view(up, partner, uid).await?;
    if !view.state.completed && now_unix() >= view.state.expires {
        return Err(ApiError::UploadExpired);
    }
    Ok(Progress::of(uid, &view.state))
}

/// `DELETE` (termination): a tombstone first, so no PATCH can commit afterwards, then the
/// multipart upload and staged data go. A completed upload's media stays.
pub async fn terminate(up: &Uploads, partner: &Partner, uid: &str) -> Result<(), ApiError> {
    for _ in 0..3 {
        let view = live_view(up, partner, uid).await?;
        let seq = view.latest_seq + 1;
        let tomb = Entry::Terminated { at: now_unix() };
        if record::append(up.store.as_ref(), &up.master_keys, uid, seq, &tomb).await? {
            up.metrics.uploads_aborted.inc();
            let multipart = (!view.state.completed)
                .then(|| view.state.multipart.clone())
                .flatten();
            discard_data(up, uid, &view.state.target(uid), multipart, Some(seq)).await;
            return Ok(());
        }
    }
    Err(ApiError::UploadBusy)
}

/// Remove an upload's multipart upload, staged tails and part objects, and with `below`
/// its log records under that sequence number (the tombstone stays).
pub async fn discard_data(
    up: &Uploads,
    uid: &str,
    target: &Path,
    multipart: Option<String>,
    below: Option<u64>,
) {
    up.parts.abort(target, multipart.as_deref()).await;
    let store = up.store.clone();
    let uid = uid.to_string();
    let work = async move {
        let keep = below.map(|s| record::log_path(&uid, s));
        let listing: Result<Vec<_>, _> = store
            .list(Some(&record::upload_dir(&uid)))
            .try_collect()
            .await;
        let Ok(metas) = listing else { return };
        for m in metas {
            let is_log = m.location.as_ref().contains("/log/");
            let doomed = match (&keep, is_log) {
                (_, false) => true,
                (Some(keep), true) => m.location.as_ref() < keep.as_ref(),
                (None, true) => false,
            };
            if doomed && let Err(e) = store.delete(&m.location).await {
                tracing::warn!(error = %e, "removing upload data failed; the sweep will retry");
            }
        }
    };
    up.cleanup.spawn(work);
}

/// How long `HEAD`/`PATCH` responses say the upload stays resumable.
pub fn expires_at(p: &Progress) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(p.expires)
}

#[cfg(test)]
mod tests;
