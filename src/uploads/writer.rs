//! The sealing half of a PATCH: body → sealer → whole parts to the store while it arrives,
//! durable checkpoints as parts complete, the staged tail, and completion into a media
//! object on the last byte.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use futures::Stream;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::task::JoinSet;

use super::lease::{Lease, ReleaseOnDrop};
use super::patch::Failure;
use super::record::{self, Claim, Entry, Tail, UploadState};
use super::{Progress, Uploads, discard_data};
use crate::body_limit::BodyLimit;
use crate::body_pace::{BodyError, Pace};
use crate::crypto::object::open_header;
use crate::crypto::stream::Sealer;
use crate::error::{ApiError, StoreError};
use crate::ingest::now_unix;
use crate::storage::media_path;

/// The sealing pipeline of one PATCH: resumed state in, parts out.
pub(super) struct Writer<'a> {
    pub(super) up: &'a Uploads,
    pub(super) uid: String,
    pub(super) target: Path,
    /// Sealed bytes not yet written as a part, as the pieces the sealer produced (no part-sized
    /// contiguous buffer: those fragment the allocator and measured twice the memory).
    pub(super) sealed: Pieces,
    pub(super) sealer: Option<Sealer>,
    pub(super) hasher: Sha256,
    pub(super) parts: Vec<String>,
    pub(super) multipart: Option<String>,
    /// Whether `multipart` was started by this PATCH (so it is ours to abort on failure).
    pub(super) started_multipart: bool,
    pub(super) in_flight: JoinSet<(usize, Result<String, StoreError>)>,
    /// This PATCH's body, counted against what the upload has left.
    pub(super) count: BodyLimit,
    /// Positions right after a part was cut, committed once the parts up to them are stored.
    pub(super) checkpoints: std::collections::VecDeque<Checkpoint>,
    /// The staged tail of the newest committed state (removed once a newer one commits).
    pub(super) committed_tail: Option<Tail>,
}

/// Where a PATCH stood right after cutting a part: everything needed to resume there. Once
/// every part up to it is stored it is committed as a `state` record (durable progress while
/// one long PATCH runs, so a crash loses at most the parts in flight, not the whole PATCH).
pub(super) struct Checkpoint {
    /// Bytes of this PATCH's body sealed so far.
    pub(super) received: u64,
    /// Parts written (or in flight) up to here.
    pub(super) parts: usize,
    /// The sealer position: next chunk index and held-back plaintext.
    pub(super) index: u64,
    pub(super) pending: zeroize::Zeroizing<Vec<u8>>,
    /// Sealed bytes past the last part (at most one body piece, staged as the tail).
    pub(super) sealed: Vec<u8>,
    pub(super) hasher: Sha256,
}

/// A checkpoint whose leftover is larger than this is skipped (the next one is taken).
pub(super) const MAX_CHECKPOINT_TAIL: usize = 1 << 20;

impl<'a> Writer<'a> {
    pub(super) async fn resume(
        up: &'a Uploads,
        uid: &str,
        st: &UploadState,
    ) -> Result<Writer<'a>, ApiError> {
        let ring = &up.master_keys;
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
            .ok_or(StoreError::Corrupt("upload digest up"))?;
        let mut sealed = Pieces::default();
        let mut pending: &[u8] = &[];
        let tail_plain;
        if let Some(t) = st.tail {
            let path = record::tail_path(uid, t.seq);
            let bytes = up
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
            up,
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
    pub(super) async fn feed<S>(
        &mut self,
        lease: &mut Lease,
        guard: &mut ReleaseOnDrop<'a>,
        st: &UploadState,
        mut body: S,
    ) -> Result<Option<ApiError>, ApiError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        let mut pace = Pace::new(self.up.ingest.pace());
        let part_size = self.up.part_size;
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
                    break pace.next(&mut body).await;
                }
                tokio::select! {
                    p = pace.next(&mut body) => break p,
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
                lease.keep(self.up, &self.uid).await?;
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
    pub(super) fn take_checkpoint(&mut self) {
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
    pub(super) async fn commit_checkpoint(
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
        let store = self.up.store.as_ref();
        let ring = &self.up.master_keys;
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
            let store = self.up.store.clone();
            let path = record::tail_path(&self.uid, old.seq);
            self.up.cleanup.spawn(async move {
                let _ = store.delete(&path).await;
            });
        }
        Ok(())
    }

    /// Start writing the next part, waiting while `upload_concurrency` parts are in flight.
    pub(super) async fn put_part(&mut self, data: PutPayload) -> Result<(), ApiError> {
        if self.multipart.is_none() {
            self.multipart = self.up.parts.begin(&self.target).await?;
            self.started_multipart = self.multipart.is_some();
        }
        self.make_room().await?;
        let idx = self.parts.len();
        self.parts.push(String::new());
        let parts = self.up.parts.clone();
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
    pub(super) async fn make_room(&mut self) -> Result<(), ApiError> {
        while self.in_flight.len() >= self.up.upload_concurrency.max(1) {
            self.join_one().await?;
        }
        Ok(())
    }

    pub(super) async fn join_one(&mut self) -> Result<(), ApiError> {
        match self.in_flight.join_next().await {
            None => Ok(()),
            Some(joined) => self.joined(joined),
        }
    }

    pub(super) fn joined(
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

    pub(super) async fn drain(&mut self) -> Result<(), ApiError> {
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }

    /// Stop writing; the multipart upload to abort if this PATCH started it.
    pub(super) async fn abandon(mut self) -> Option<String> {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        self.started_multipart
            .then(|| self.multipart.take())
            .flatten()
    }

    pub(super) fn orphan(&self) -> Option<String> {
        self.started_multipart
            .then(|| self.multipart.clone())
            .flatten()
    }

    /// Stage the tail and append the new state: the offset becomes visible only now.
    pub(super) async fn commit(
        mut self,
        lease: &mut Lease,
        st: &UploadState,
    ) -> Result<Progress, Failure> {
        if let Err(e) = self.drain().await {
            return Err(Failure::Keep(e, self.orphan()));
        }
        let store = self.up.store.as_ref();
        let ring = &self.up.master_keys;
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
                    self.up.parts.abort(&self.target, orphan.as_deref()).await;
                }
                return Err(Failure::Released(ApiError::UploadBusy));
            }
            Err(e) => return Err(Failure::Keep(e.into(), self.orphan())),
        }
        lease.seq = seq;
        if let Some(old) = self.committed_tail {
            let store = self.up.store.clone();
            let path = record::tail_path(&self.uid, old.seq);
            self.up.cleanup.spawn(async move {
                let _ = store.delete(&path).await;
            });
        }
        Ok(Progress::of(&self.uid, &next))
    }

    /// The last byte arrived: verify, write the media object, record completion.
    pub(super) async fn finish(
        mut self,
        lease: &mut Lease,
        st: &UploadState,
    ) -> Result<Progress, Failure> {
        let up = self.up;
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
            let _ = record::append(up.store.as_ref(), &up.master_keys, &self.uid, seq, &tomb).await;
            up.metrics.uploads_aborted.inc();
            discard_data(
                up,
                &self.uid,
                &self.target,
                self.multipart.clone(),
                Some(seq),
            )
            .await;
            return Err(Failure::Released(ApiError::DigestMismatch));
        }

        let existing = match up.ingest.lookup(&st.partner, &st.media_id).await {
            Ok(e) => e.filter(|h| h.header.meta.expires > now_unix()),
            Err(e) => return Err(Failure::Keep(e, self.orphan())),
        };
        let written = if existing.is_some() {
            // Same content already stored (forwarded media): keep that one.
            up.parts
                .abort(&self.target, self.multipart.as_deref())
                .await;
            Ok(())
        } else if self.parts.is_empty() {
            let object = std::mem::take(&mut self.sealed).into_payload();
            if let Some(mp) = self.multipart.take() {
                up.parts.abort(&self.target, Some(&mp)).await;
            }
            up.ingest
                .put_once(
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
                Ok(()) => up
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
            Ok(()) if !self.parts.is_empty() && existing.is_none() && st.staged => up
                .ingest
                .commit_staged(&st.partner, &st.media_id, &self.target, false)
                .await
                .map(|_| ()),
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
        let ring = &up.master_keys;
        match record::append(
            up.store.as_ref(),
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
        up.metrics
            .bytes_in
            .with_label_values(&[st.kind.as_str()])
            .inc_by(st.length);
        discard_data(up, &self.uid, &self.target, None, None).await;
        Ok(Progress::of(&self.uid, &done))
    }
}

/// Sealed bytes as a list of pieces, cut into parts without copying.
#[derive(Debug, Default)]
pub(super) struct Pieces {
    pub(super) pieces: std::collections::VecDeque<Bytes>,
    pub(super) len: usize,
}

impl Pieces {
    pub(super) fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.pieces.push_back(b);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `n` bytes (at most `len`) as a part; a piece that straddles the cut is split,
    /// sharing its allocation.
    pub(super) fn take(&mut self, n: usize) -> PutPayload {
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

    pub(super) fn into_payload(self) -> PutPayload {
        self.pieces.into_iter().collect()
    }
}
