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

pub mod parts;
pub mod protocol;
pub mod record;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::app::AppState;
use crate::auth::Partner;
use crate::body_limit::BodyLimit;
use crate::crypto::object::{ObjectMeta, open_header, seal_header};
use crate::crypto::stream::Sealer;
use crate::error::{ApiError, StoreError};
use crate::ingest::{BodyError, InFlight, commit_staged, lookup, next_piece, now_unix, put_once};
use crate::media::{MediaFormat, MediaKind};
use crate::storage::media_path;
use record::{Claim, Entry, Loaded, Tail, UploadState, View};

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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random_hex<const N: usize>() -> Result<String, ApiError> {
    crate::crypto::random_hex::<N>().map_err(|_| ApiError::Internal)
}

/// Create an upload. With `Upload-Length: 0` the caller completes it with an empty PATCH.
pub async fn create(state: &AppState, req: NewUpload) -> Result<Progress, ApiError> {
    let limit = state.settings.sealed_limits.get(req.kind);
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
    let media_id = state
        .ids
        .derive(&req.partner.id, req.kind, req.format, &req.sha256);
    let now = now_unix();
    let meta = ObjectMeta {
        partner: req.partner.id.clone(),
        kind: req.kind,
        format: req.format,
        sha256: hex::encode(req.sha256),
        created: now,
        expires: now + state.settings.retention.as_secs(),
        generation: random_hex::<8>()?,
    };
    let (header, _) = seal_header(&state.settings.master_keys, &media_id, &meta)
        .map_err(|_| ApiError::Internal)?;
    let st = UploadState {
        partner: req.partner.id,
        kind: req.kind,
        format: req.format,
        sha256: meta.sha256,
        length: req.length,
        offset: 0,
        metadata: req.metadata,
        created: now,
        expires: now + state.settings.upload_expiry.as_secs(),
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
    let store = state.store.as_ref();
    let ring = &state.settings.master_keys;
    if !record::append(store, ring, &uid, 0, &Entry::State(Box::new(st.clone()))).await? {
        // 128 random bits collided: the CSPRNG is broken.
        return Err(ApiError::Internal);
    }
    Ok(Progress::of(&uid, &st))
}

/// The state of `uid` for `partner`; other partners' uploads do not exist for them.
async fn live_view(state: &AppState, partner: &Partner, uid: &str) -> Result<View, ApiError> {
    if !record::uid_is_valid(uid) {
        return Err(ApiError::UploadNotFound);
    }
    match record::load(state.store.as_ref(), &state.settings.master_keys, uid).await {
        Ok(Loaded::Live(v)) if v.state.partner == partner.id => Ok(*v),
        Ok(_) | Err(StoreError::NotFound | StoreError::UnknownKey) => Err(ApiError::UploadNotFound),
        Err(e) => Err(e.into()),
    }
}

/// `HEAD`: the durable offset (never ahead of stored data), or the media id once complete.
pub async fn status(state: &AppState, partner: &Partner, uid: &str) -> Result<Progress, ApiError> {
    let view = live_view(state, partner, uid).await?;
    if !view.state.completed && now_unix() >= view.state.expires {
        return Err(ApiError::UploadExpired);
    }
    Ok(Progress::of(uid, &view.state))
}

/// `DELETE` (termination): a tombstone first, so no PATCH can commit afterwards, then the
/// multipart upload and staged data go. A completed upload's media stays.
pub async fn terminate(state: &AppState, partner: &Partner, uid: &str) -> Result<(), ApiError> {
    for _ in 0..3 {
        let view = live_view(state, partner, uid).await?;
        let seq = view.latest_seq + 1;
        let tomb = Entry::Terminated { at: now_unix() };
        if record::append(
            state.store.as_ref(),
            &state.settings.master_keys,
            uid,
            seq,
            &tomb,
        )
        .await?
        {
            state.metrics.uploads_aborted.inc();
            let multipart = (!view.state.completed)
                .then(|| view.state.multipart.clone())
                .flatten();
            discard_data(state, uid, &view.state.target(uid), multipart, Some(seq)).await;
            return Ok(());
        }
    }
    Err(ApiError::UploadBusy)
}

/// Remove an upload's multipart upload, staged tails and part objects, and with `below`
/// its log records under that sequence number (the tombstone stays).
pub async fn discard_data(
    state: &AppState,
    uid: &str,
    target: &Path,
    multipart: Option<String>,
    below: Option<u64>,
) {
    state.parts.abort(target, multipart.as_deref()).await;
    let store = state.store.clone();
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
    state.cleanup.spawn(work);
}

/// The claim a PATCH holds: the newest log record is ours while `seq` is.
struct Lease {
    holder: String,
    /// Our newest record (the claim or its latest renewal).
    seq: u64,
    base_seq: u64,
    until_ms: u64,
    lease_ms: u64,
}

impl Lease {
    async fn acquire(state: &AppState, uid: &str, view: &View) -> Result<Lease, ApiError> {
        let lease_ms = state.settings.upload_lease.as_millis() as u64;
        let mut lease = Lease {
            holder: random_hex::<8>()?,
            seq: view.latest_seq,
            base_seq: view.state_seq,
            until_ms: 0,
            lease_ms,
        };
        lease.renew(state, uid).await?;
        Ok(lease)
    }

    async fn renew(&mut self, state: &AppState, uid: &str) -> Result<(), ApiError> {
        let until_ms = now_ms() + self.lease_ms;
        let claim = Entry::Claim(Claim {
            holder: self.holder.clone(),
            lease_until_ms: until_ms,
            base_seq: self.base_seq,
        });
        let seq = self.seq + 1;
        if !record::append(
            state.store.as_ref(),
            &state.settings.master_keys,
            uid,
            seq,
            &claim,
        )
        .await?
        {
            // Someone else holds the upload now (or took it over after our lease ran out).
            return Err(ApiError::UploadBusy);
        }
        self.seq = seq;
        self.until_ms = until_ms;
        Ok(())
    }

    /// Renew once less than half the lease is left.
    async fn keep(&mut self, state: &AppState, uid: &str) -> Result<(), ApiError> {
        if now_ms() + self.lease_ms / 2 >= self.until_ms {
            self.renew(state, uid).await?;
        }
        Ok(())
    }
}

/// Gives the upload back when a PATCH ends without committing, so the next PATCH need not
/// wait out the lease: the base state is appended again. Dropped futures (server shutdown)
/// release from the cleanup runtime.
struct Release<'a> {
    state: &'a AppState,
    uid: String,
    base: UploadState,
}

impl Release<'_> {
    fn entry(&self) -> Entry {
        Entry::State(Box::new(self.base.clone()))
    }

    async fn now(self, lease: &Lease, orphan: Option<String>) {
        let store = self.state.store.as_ref();
        let ring = &self.state.settings.master_keys;
        if let Err(e) = record::append(store, ring, &self.uid, lease.seq + 1, &self.entry()).await {
            tracing::warn!(error = %e, "releasing an upload failed; its lease will run out");
        }
        if orphan.is_some() {
            self.state
                .parts
                .abort(&self.base.target(&self.uid), orphan.as_deref())
                .await;
        }
    }
}

/// Holds the release while a lease is held (`None` once the PATCH committed or released),
/// with the lease's newest sequence number.
struct ReleaseOnDrop<'a> {
    release: Option<Release<'a>>,
    seq: u64,
}

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        let Some(r) = self.release.take() else { return };
        let store = r.state.store.clone();
        let ring = r.state.settings.master_keys.clone();
        let entry = r.entry();
        let (uid, seq) = (r.uid.clone(), self.seq + 1);
        r.state.cleanup.spawn(async move {
            let _ = record::append(store.as_ref(), &ring, &uid, seq, &entry).await;
        });
    }
}

/// `PATCH`: append the body at `req.offset`.
pub async fn patch<S>(
    state: &AppState,
    partner: &Partner,
    uid: &str,
    req: PatchRequest,
    body: S,
) -> Result<Progress, ApiError>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    let view = live_view(state, partner, uid).await?;
    let st = &view.state;
    if st.completed {
        // A retried final PATCH whose response was lost: report the result again.
        return if req.offset == st.length && req.declared_len.unwrap_or(0) == 0 {
            Ok(Progress::of(uid, st))
        } else {
            Err(ApiError::UploadOffsetMismatch {
                expected: st.length,
            })
        };
    }
    if now_unix() >= st.expires {
        return Err(ApiError::UploadExpired);
    }
    if req.offset != st.offset {
        return Err(ApiError::UploadOffsetMismatch {
            expected: st.offset,
        });
    }
    let remaining = st.length - st.offset;
    if let Some(d) = req.declared_len
        && d > remaining
    {
        return Err(ApiError::TooLarge {
            kind: "upload",
            declared: st.offset + d,
            limit: st.length,
        });
    }
    if view
        .claim
        .as_ref()
        .is_some_and(|c| c.lease_until_ms > now_ms())
    {
        return Err(ApiError::UploadBusy);
    }
    // Nothing to add and nothing to finish: no need to take the upload.
    if req.declared_len == Some(0) && remaining > 0 {
        return Ok(Progress::of(uid, st));
    }

    let _in_flight = InFlight::new(&state.metrics);
    let mut lease = Lease::acquire(state, uid, &view).await?;
    let mut guard = ReleaseOnDrop {
        release: Some(Release {
            state,
            uid: uid.to_string(),
            base: UploadState {
                held: None,
                ..st.clone()
            },
        }),
        seq: lease.seq,
    };
    let mut writer = match Writer::resume(state, uid, st).await {
        Ok(w) => w,
        Err(e) => {
            if let Some(r) = guard.release.take() {
                r.now(&lease, None).await;
            }
            return Err(e);
        }
    };

    // Feed the writer; `stop` is why the body ended early (its data up to there is kept).
    let fed = match req.checksum {
        None => writer.feed(&mut lease, &mut guard, st, body).await,
        Some(sum) => match spool(state, &mut lease, &mut guard, uid, body, remaining, sum).await {
            Ok(file) => {
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10)
                    .map(|r| r.map_err(|_| BodyError::Aborted));
                writer.feed(&mut lease, &mut guard, st, stream).await
            }
            Err(e) => Err(e),
        },
    };
    let stop = match fed {
        Ok(stop) => stop,
        Err(e) => {
            let orphan = writer.abandon().await;
            if let Some(r) = guard.release.take() {
                r.now(&lease, orphan).await;
            }
            return Err(e);
        }
    };

    let done = st.offset + writer.count.received() == st.length;
    let result = if done && stop.is_none() {
        writer.finish(&mut lease, st).await
    } else {
        writer.commit(&mut lease, st).await
    };
    match result {
        Ok(progress) => {
            // Committed (or given back elsewhere): nothing to release on drop.
            guard.release = None;
            match stop {
                Some(e) => Err(e),
                None => Ok(progress),
            }
        }
        Err(Failure::Released(e)) => {
            // Committed (or given back elsewhere): nothing to release on drop.
            guard.release = None;
            Err(e)
        }
        Err(Failure::Keep(e, orphan)) => {
            if let Some(r) = guard.release.take() {
                r.now(&lease, orphan).await;
            }
            Err(e)
        }
    }
}

/// Read a checksummed PATCH body into a private temp file and verify it before any of it
/// is sealed. Returns the file rewound to its start.
async fn spool<S>(
    state: &AppState,
    lease: &mut Lease,
    guard: &mut ReleaseOnDrop<'_>,
    uid: &str,
    mut body: S,
    remaining: u64,
    expected: [u8; 32],
) -> Result<tokio::fs::File, ApiError>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    // Unlinked at once: nothing else can open it, and it vanishes with the handle.
    let file = tempfile::tempfile().map_err(|e| {
        tracing::error!(error = %e, "cannot create a spool file");
        ApiError::StorageUnavailable
    })?;
    let mut file = tokio::fs::File::from_std(file);
    let mut hasher = Sha256::new();
    let mut count = BodyLimit::new("upload", remaining, None);
    let idle = state.settings.body_idle_timeout;
    let io = |e: std::io::Error| {
        tracing::error!(error = %e, "writing the spool file failed");
        ApiError::StorageUnavailable
    };
    while let Some(piece) = next_piece(&mut body, idle).await? {
        count.take(piece.len())?;
        hasher.update(&piece);
        file.write_all(&piece).await.map_err(io)?;
        lease.keep(state, uid).await?;
        guard.seq = lease.seq;
    }
    let digest: [u8; 32] = hasher.finalize().into();
    if !bool::from(digest.ct_eq(&expected)) {
        return Err(ApiError::ChecksumMismatch);
    }
    file.flush().await.map_err(io)?;
    use tokio::io::AsyncSeekExt;
    file.seek(std::io::SeekFrom::Start(0)).await.map_err(io)?;
    Ok(file)
}

/// How committing or finishing failed.
enum Failure {
    /// The upload was already given back (or taken over, or discarded).
    Released(ApiError),
    /// Still ours: release it, aborting this multipart upload if we started it.
    Keep(ApiError, Option<String>),
}

/// The sealing pipeline of one PATCH: resumed state in, parts out.
struct Writer<'a> {
    state: &'a AppState,
    uid: String,
    target: Path,
    /// Sealed bytes not yet written as a part, as the pieces the sealer produced (no part-sized
    /// contiguous buffer: those fragment the allocator and measured twice the memory).
    sealed: Pieces,
    sealer: Option<Sealer>,
    hasher: Sha256,
    parts: Vec<String>,
    multipart: Option<String>,
    /// Whether `multipart` was started by this PATCH (so it is ours to abort on failure).
    started_multipart: bool,
    in_flight: JoinSet<(usize, Result<String, StoreError>)>,
    /// This PATCH's body, counted against what the upload has left.
    count: BodyLimit,
    /// Positions right after a part was cut, committed once the parts up to them are stored.
    checkpoints: std::collections::VecDeque<Checkpoint>,
    /// The staged tail of the newest committed state (removed once a newer one commits).
    committed_tail: Option<Tail>,
}

/// Where a PATCH stood right after cutting a part: everything needed to resume there. Once
/// every part up to it is stored it is committed as a `state` record (durable progress while
/// one long PATCH runs, so a crash loses at most the parts in flight, not the whole PATCH).
struct Checkpoint {
    /// Bytes of this PATCH's body sealed so far.
    received: u64,
    /// Parts written (or in flight) up to here.
    parts: usize,
    /// The sealer position: next chunk index and held-back plaintext.
    index: u64,
    pending: zeroize::Zeroizing<Vec<u8>>,
    /// Sealed bytes past the last part (at most one body piece, staged as the tail).
    sealed: Vec<u8>,
    hasher: Sha256,
}

/// A checkpoint whose leftover is larger than this is skipped (the next one is taken).
const MAX_CHECKPOINT_TAIL: usize = 1 << 20;

impl<'a> Writer<'a> {
    async fn resume(
        state: &'a AppState,
        uid: &str,
        st: &UploadState,
    ) -> Result<Writer<'a>, ApiError> {
        let ring = &state.settings.master_keys;
        let header = STANDARD
            .decode(&st.header)
            .map_err(|_| StoreError::Corrupt("upload header"))?;
        let opened = open_header(ring, &st.media_id, &header).map_err(|_| {
            // The key that sealed the header left the ring: the upload cannot go on.
            ApiError::UploadNotFound
        })?;
        let hash_state = STANDARD
            .decode(&st.hash_state)
            .ok()
            .and_then(|b| Sha256::deserialize(b.as_slice().try_into().ok()?).ok())
            .ok_or(StoreError::Corrupt("upload digest state"))?;
        let mut sealed = Pieces::default();
        let mut pending: &[u8] = &[];
        let tail_plain;
        if let Some(t) = st.tail {
            let path = record::tail_path(uid, t.seq);
            let bytes = state
                .store
                .get(&path)
                .await
                .map_err(StoreError::from)?
                .bytes()
                .await
                .map_err(StoreError::from)?;
            tail_plain = record::open(ring, uid, &path, &bytes)?;
            let split = t.sealed_len as usize;
            if tail_plain.len() != split + t.plain_len as usize {
                return Err(StoreError::Corrupt("staged tail length").into());
            }
            sealed.push(Bytes::copy_from_slice(&tail_plain[..split]));
            pending = &tail_plain[split..];
        } else if st.parts.is_empty() && st.sealer_index == 0 {
            // Nothing written yet: the object starts with its header.
            sealed.push(Bytes::from(header.clone()));
        }
        let sealer = Sealer::resume(opened.cipher, st.sealer_index, pending)
            .ok_or(StoreError::Corrupt("staged plaintext"))?;
        Ok(Writer {
            state,
            uid: uid.to_string(),
            target: st.target(uid),
            sealed,
            sealer: Some(sealer),
            hasher: hash_state,
            parts: st.parts.clone(),
            multipart: st.multipart.clone(),
            started_multipart: false,
            in_flight: JoinSet::new(),
            count: BodyLimit::new("upload", st.length - st.offset, None),
            checkpoints: std::collections::VecDeque::new(),
            committed_tail: st.tail,
        })
    }

    /// Seal and store the body until it ends. `Ok(Some(e))`: it ended early with `e`
    /// (disconnect, stall, too long), and what arrived before is ready to commit.
    async fn feed<S>(
        &mut self,
        lease: &mut Lease,
        guard: &mut ReleaseOnDrop<'a>,
        st: &UploadState,
        mut body: S,
    ) -> Result<Option<ApiError>, ApiError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        let idle = self.state.settings.body_idle_timeout;
        let part_size = self.state.settings.storage.part_size;
        loop {
            // Parts that finished since the last piece: commit the progress they make durable.
            while let Some(joined) = self.in_flight.try_join_next() {
                self.joined(joined)?;
            }
            self.commit_checkpoint(lease, guard, st).await?;
            // While a checkpoint waits for its parts, a part finishing commits it even if the
            // body has paused (the client may be slow, or about to vanish).
            let next = loop {
                if self.checkpoints.is_empty() || self.in_flight.is_empty() {
                    break next_piece(&mut body, idle).await;
                }
                tokio::select! {
                    p = next_piece(&mut body, idle) => break p,
                    Some(joined) = self.in_flight.join_next() => {
                        self.joined(joined)?;
                        self.commit_checkpoint(lease, guard, st).await?;
                    }
                }
            };
            let piece = match next {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(None),
                Err(e) => return Ok(Some(e)),
            };
            if let Err(e) = self.count.take(piece.len()) {
                return Ok(Some(e));
            }
            self.hasher.update(&piece);
            if let Some(s) = self.sealer.as_mut() {
                let mut out = BytesMut::with_capacity(piece.len() + 64);
                s.push(&piece, &mut out).map_err(|_| ApiError::Internal)?;
                self.sealed.push(out.freeze());
            }
            while self.sealed.len() >= part_size {
                lease.keep(self.state, &self.uid).await?;
                guard.seq = lease.seq;
                // Wait for a free upload slot before cutting the part, so at most
                // `upload_concurrency` parts plus the one being filled are in memory.
                self.make_room().await?;
                let part = self.sealed.take(part_size);
                self.put_part(part).await?;
                if self.sealed.len() < part_size {
                    self.take_checkpoint();
                }
            }
        }
    }

    /// Remember where this PATCH stands right after a part was cut.
    fn take_checkpoint(&mut self) {
        let Some(sealer) = self.sealer.as_ref() else {
            return;
        };
        if self.sealed.len() > MAX_CHECKPOINT_TAIL {
            return;
        }
        let (index, pending) = sealer.position();
        let mut sealed = Vec::with_capacity(self.sealed.len());
        for b in &self.sealed.pieces {
            sealed.extend_from_slice(b);
        }
        self.checkpoints.push_back(Checkpoint {
            received: self.count.received(),
            parts: self.parts.len(),
            index,
            pending: zeroize::Zeroizing::new(pending.to_vec()),
            sealed,
            hasher: self.hasher.clone(),
        });
    }

    /// Commit the newest checkpoint whose parts are all stored: stage its tail, append its
    /// state, then claim again on top of it (so the newest record stays our claim and other
    /// PATCHes keep answering 409). From then on a failure gives back this state, and the
    /// multipart upload belongs to the committed state (no longer ours to abort).
    async fn commit_checkpoint(
        &mut self,
        lease: &mut Lease,
        guard: &mut ReleaseOnDrop<'a>,
        st: &UploadState,
    ) -> Result<(), ApiError> {
        let mut ready = None;
        while let Some(cp) = self.checkpoints.front() {
            if self.parts[..cp.parts].iter().any(String::is_empty) {
                break;
            }
            ready = self.checkpoints.pop_front();
        }
        let Some(cp) = ready else { return Ok(()) };
        let store = self.state.store.as_ref();
        let ring = &self.state.settings.master_keys;
        let seq = lease.seq + 1;
        let mut next = st.clone();
        next.offset = st.offset + cp.received;
        next.parts = self.parts[..cp.parts].to_vec();
        next.multipart = self.multipart.clone();
        next.sealer_index = cp.index;
        next.hash_state = STANDARD.encode(cp.hasher.serialize());
        next.tail = None;
        // The PATCH goes on: the checkpoint itself carries its claim (same holder and lease),
        // so the newest record says "busy" at every moment.
        next.held = Some(Claim {
            holder: lease.holder.clone(),
            lease_until_ms: lease.until_ms,
            base_seq: seq,
        });
        if !cp.sealed.is_empty() || !cp.pending.is_empty() {
            let path = record::tail_path(&self.uid, seq);
            let mut plain = zeroize::Zeroizing::new(cp.sealed.clone());
            plain.extend_from_slice(&cp.pending);
            let payload = record::seal(ring, &self.uid, &path, &plain).map(PutPayload::from)?;
            store.put(&path, payload).await.map_err(StoreError::from)?;
            next.tail = Some(Tail {
                seq,
                sealed_len: cp.sealed.len() as u64,
                plain_len: cp.pending.len() as u64,
            });
        }
        let entry = Entry::State(Box::new(next.clone()));
        if !record::append(store, ring, &self.uid, seq, &entry).await? {
            return Err(ApiError::UploadBusy);
        }
        lease.seq = seq;
        lease.base_seq = seq;
        guard.seq = seq;
        self.started_multipart = false;
        next.held = None;
        if let Some(r) = guard.release.as_mut() {
            r.base = next.clone();
        }
        if let Some(old) = std::mem::replace(&mut self.committed_tail, next.tail) {
            let store = self.state.store.clone();
            let path = record::tail_path(&self.uid, old.seq);
            self.state.cleanup.spawn(async move {
                let _ = store.delete(&path).await;
            });
        }
        Ok(())
    }

    /// Start writing the next part, waiting while `upload_concurrency` parts are in flight.
    async fn put_part(&mut self, data: PutPayload) -> Result<(), ApiError> {
        if self.multipart.is_none() {
            self.multipart = self.state.parts.begin(&self.target).await?;
            self.started_multipart = self.multipart.is_some();
        }
        self.make_room().await?;
        let idx = self.parts.len();
        self.parts.push(String::new());
        let parts = self.state.parts.clone();
        let (uid, target, mp) = (
            self.uid.clone(),
            self.target.clone(),
            self.multipart.clone(),
        );
        self.in_flight.spawn(async move {
            let r = parts.put(&uid, &target, mp.as_deref(), idx, data).await;
            (idx, r)
        });
        Ok(())
    }

    /// Wait while `upload_concurrency` parts are in flight.
    async fn make_room(&mut self) -> Result<(), ApiError> {
        while self.in_flight.len() >= self.state.settings.storage.upload_concurrency.max(1) {
            self.join_one().await?;
        }
        Ok(())
    }

    async fn join_one(&mut self) -> Result<(), ApiError> {
        match self.in_flight.join_next().await {
            None => Ok(()),
            Some(joined) => self.joined(joined),
        }
    }

    fn joined(
        &mut self,
        joined: Result<(usize, Result<String, StoreError>), tokio::task::JoinError>,
    ) -> Result<(), ApiError> {
        match joined {
            Ok((idx, Ok(etag))) => {
                self.parts[idx] = etag;
                Ok(())
            }
            Ok((_, Err(e))) => Err(e.into()),
            Err(_) => Err(ApiError::Internal),
        }
    }

    async fn drain(&mut self) -> Result<(), ApiError> {
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }

    /// Stop writing; the multipart upload to abort if this PATCH started it.
    async fn abandon(mut self) -> Option<String> {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        self.started_multipart
            .then(|| self.multipart.take())
            .flatten()
    }

    fn orphan(&self) -> Option<String> {
        self.started_multipart
            .then(|| self.multipart.clone())
            .flatten()
    }

    /// Stage the tail and append the new state: the offset becomes visible only now.
    async fn commit(mut self, lease: &mut Lease, st: &UploadState) -> Result<Progress, Failure> {
        if let Err(e) = self.drain().await {
            return Err(Failure::Keep(e, self.orphan()));
        }
        let store = self.state.store.as_ref();
        let ring = &self.state.settings.master_keys;
        let seq = lease.seq + 1;
        let Some(sealer) = self.sealer.as_ref() else {
            return Err(Failure::Keep(ApiError::Internal, self.orphan()));
        };
        let (index, pending) = sealer.position();
        let mut next = st.clone();
        next.held = None;
        next.offset += self.count.received();
        next.parts = self.parts.clone();
        next.multipart = self.multipart.clone();
        next.sealer_index = index;
        next.hash_state = STANDARD.encode(self.hasher.serialize());
        next.tail = None;
        if !self.sealed.is_empty() || !pending.is_empty() {
            let path = record::tail_path(&self.uid, seq);
            let mut plain =
                zeroize::Zeroizing::new(Vec::with_capacity(self.sealed.len() + pending.len()));
            for b in &self.sealed.pieces {
                plain.extend_from_slice(b);
            }
            plain.extend_from_slice(pending);
            let staged = record::seal(ring, &self.uid, &path, &plain).map(PutPayload::from);
            let put = match staged {
                Ok(payload) => store.put(&path, payload).await.map_err(StoreError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = put {
                return Err(Failure::Keep(e.into(), self.orphan()));
            }
            next.tail = Some(Tail {
                seq,
                sealed_len: self.sealed.len() as u64,
                plain_len: pending.len() as u64,
            });
        }
        match record::append(
            store,
            ring,
            &self.uid,
            seq,
            &Entry::State(Box::new(next.clone())),
        )
        .await
        {
            Ok(true) => {}
            // Our lease ran out and another PATCH took the upload, or it was terminated: this
            // data is not ours to commit. (Its staged tail is unreferenced; the sweep removes
            // it.) A multipart upload we started is referenced by nobody: abort it.
            Ok(false) => {
                let orphan = self.orphan();
                if orphan.is_some() {
                    self.state
                        .parts
                        .abort(&self.target, orphan.as_deref())
                        .await;
                }
                return Err(Failure::Released(ApiError::UploadBusy));
            }
            Err(e) => return Err(Failure::Keep(e.into(), self.orphan())),
        }
        lease.seq = seq;
        if let Some(old) = self.committed_tail {
            let store = self.state.store.clone();
            let path = record::tail_path(&self.uid, old.seq);
            self.state.cleanup.spawn(async move {
                let _ = store.delete(&path).await;
            });
        }
        Ok(Progress::of(&self.uid, &next))
    }

    /// The last byte arrived: verify, write the media object, record completion.
    async fn finish(mut self, lease: &mut Lease, st: &UploadState) -> Result<Progress, Failure> {
        let state = self.state;
        if let Err(e) = self.drain().await {
            return Err(Failure::Keep(e, self.orphan()));
        }
        let Some(sealer) = self.sealer.take() else {
            return Err(Failure::Keep(ApiError::Internal, self.orphan()));
        };
        let mut last = BytesMut::new();
        if sealer.finish(&mut last).is_err() {
            return Err(Failure::Keep(ApiError::Internal, self.orphan()));
        }
        self.sealed.push(last.freeze());
        let digest: [u8; 32] = self.hasher.clone().finalize().into();
        let declared = hex::decode(&st.sha256).unwrap_or_default();
        if !bool::from(digest.as_slice().ct_eq(&declared)) {
            // The whole blob is not what was declared: discard the upload.
            let tomb = Entry::Terminated { at: now_unix() };
            let seq = lease.seq + 1;
            let _ = record::append(
                state.store.as_ref(),
                &state.settings.master_keys,
                &self.uid,
                seq,
                &tomb,
            )
            .await;
            state.metrics.uploads_aborted.inc();
            discard_data(
                state,
                &self.uid,
                &self.target,
                self.multipart.clone(),
                Some(seq),
            )
            .await;
            return Err(Failure::Released(ApiError::DigestMismatch));
        }

        let existing = match lookup(state, &st.partner, &st.media_id).await {
            Ok(e) => e.filter(|h| h.header.meta.expires > now_unix()),
            Err(e) => return Err(Failure::Keep(e, self.orphan())),
        };
        let written = if existing.is_some() {
            // Same content already stored (forwarded media): keep that one.
            state
                .parts
                .abort(&self.target, self.multipart.as_deref())
                .await;
            Ok(())
        } else if self.parts.is_empty() {
            let object = std::mem::take(&mut self.sealed).into_payload();
            if let Some(mp) = self.multipart.take() {
                state.parts.abort(&self.target, Some(&mp)).await;
            }
            put_once(
                state,
                &st.partner,
                &st.media_id,
                &media_path(&st.media_id),
                object,
                false,
            )
            .await
            .map(|_| ())
        } else {
            let last = std::mem::take(&mut self.sealed).into_payload();
            match self.put_part(last).await.and(self.drain().await) {
                Ok(()) => state
                    .parts
                    .complete(
                        &self.uid,
                        &self.target,
                        self.multipart.as_deref(),
                        &self.parts,
                    )
                    .await
                    .map_err(ApiError::from),
                Err(e) => Err(e),
            }
        };
        // Parts were completed into the upload's own staging object (current uploads): make
        // it the media with a create-only commit, so a racing upload of the same content
        // cannot replace a media (and its generation) that tokens were minted for.
        let written = match written {
            Ok(()) if !self.parts.is_empty() && existing.is_none() && st.staged => {
                commit_staged(state, &st.partner, &st.media_id, &self.target, false)
                    .await
                    .map(|_| ())
            }
            other => other,
        };
        if let Err(e) = written {
            tracing::warn!(code = e.code(), "completing a resumable upload failed");
            return Err(Failure::Keep(e, self.orphan()));
        }

        let mut done = st.clone();
        done.held = None;
        done.offset = st.length;
        done.completed = true;
        done.parts.clear();
        done.multipart = None;
        done.tail = None;
        let seq = lease.seq + 1;
        let ring = &state.settings.master_keys;
        match record::append(
            state.store.as_ref(),
            ring,
            &self.uid,
            seq,
            &Entry::State(Box::new(done.clone())),
        )
        .await
        {
            Ok(true) => lease.seq = seq,
            // The media exists either way; a replica that took over finds it on completion.
            Ok(false) | Err(_) => {
                tracing::warn!("recording a completed upload failed; the media is stored");
            }
        }
        state
            .metrics
            .bytes_in
            .with_label_values(&[st.kind.as_str()])
            .inc_by(st.length);
        discard_data(state, &self.uid, &self.target, None, None).await;
        Ok(Progress::of(&self.uid, &done))
    }
}

/// How long `HEAD`/`PATCH` responses say the upload stays resumable.
pub fn expires_at(p: &Progress) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(p.expires)
}

/// Sealed bytes as a list of pieces, cut into parts without copying.
#[derive(Debug, Default)]
struct Pieces {
    pieces: std::collections::VecDeque<Bytes>,
    len: usize,
}

impl Pieces {
    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.pieces.push_back(b);
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `n` bytes (at most `len`) as a part; a piece that straddles the cut is split,
    /// sharing its allocation.
    fn take(&mut self, n: usize) -> PutPayload {
        let mut out = Vec::new();
        let mut want = n.min(self.len);
        while want > 0 {
            let Some(mut b) = self.pieces.pop_front() else {
                break;
            };
            if b.len() > want {
                let rest = b.split_off(want);
                self.pieces.push_front(rest);
            }
            want -= b.len();
            self.len -= b.len();
            out.push(b);
        }
        out.into_iter().collect()
    }

    fn into_payload(self) -> PutPayload {
        self.pieces.into_iter().collect()
    }
}
