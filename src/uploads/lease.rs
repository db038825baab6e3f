//! The claim on an upload while a PATCH runs: a lease appended to the log, renewed as the
//! PATCH goes, and given back when it ends (at once on failure, so the upload is free again).

use super::record::{self, Claim, Entry, UploadState, View};
use super::{Uploads, now_ms, random_hex};
use crate::error::ApiError;

/// The claim a PATCH holds: the newest log record is ours while `seq` is.
pub(super) struct Lease {
    pub(super) holder: String,
    /// Our newest record (the claim or its latest renewal).
    pub(super) seq: u64,
    pub(super) base_seq: u64,
    pub(super) until_ms: u64,
    pub(super) lease_ms: u64,
}

impl Lease {
    pub(super) async fn acquire(up: &Uploads, uid: &str, view: &View) -> Result<Lease, ApiError> {
        let lease_ms = up.lease.as_millis() as u64;
        let mut lease = Lease {
            holder: random_hex::<8>()?,
            seq: view.latest_seq,
            base_seq: view.state_seq,
            until_ms: 0,
            lease_ms,
        };
        lease.renew(up, uid).await?;
        Ok(lease)
    }

    pub(super) async fn renew(&mut self, up: &Uploads, uid: &str) -> Result<(), ApiError> {
        let until_ms = now_ms() + self.lease_ms;
        let claim = Entry::Claim(Claim {
            holder: self.holder.clone(),
            lease_until_ms: until_ms,
            base_seq: self.base_seq,
        });
        let seq = self.seq + 1;
        if !record::append(up.store.as_ref(), &up.master_keys, uid, seq, &claim).await? {
            // Someone else holds the upload now (or took it over after our lease ran out).
            return Err(ApiError::UploadBusy);
        }
        self.seq = seq;
        self.until_ms = until_ms;
        Ok(())
    }

    /// Renew once less than half the lease is left.
    pub(super) async fn keep(&mut self, up: &Uploads, uid: &str) -> Result<(), ApiError> {
        if now_ms() + self.lease_ms / 2 >= self.until_ms {
            self.renew(up, uid).await?;
        }
        Ok(())
    }
}

/// Gives the upload back when a PATCH ends without committing, so the next PATCH need not
/// wait out the lease: the base state is appended again. Dropped futures (server shutdown)
/// release from the cleanup runtime.
pub(super) struct Release<'a> {
    pub(super) up: &'a Uploads,
    pub(super) uid: String,
    pub(super) base: UploadState,
}

impl Release<'_> {
    pub(super) fn entry(&self) -> Entry {
        Entry::State(Box::new(self.base.clone()))
    }

    pub(super) async fn now(self, lease: &Lease, orphan: Option<String>) {
        let store = self.up.store.as_ref();
        let ring = &self.up.master_keys;
        if let Err(e) = record::append(store, ring, &self.uid, lease.seq + 1, &self.entry()).await {
            tracing::warn!(error = %e, "releasing an upload failed; its lease will run out");
        }
        if orphan.is_some() {
            self.up
                .parts
                .abort(&self.base.target(&self.uid), orphan.as_deref())
                .await;
        }
    }
}

/// Holds the release while a lease is held (`None` once the PATCH committed or released),
/// with the lease's newest sequence number.
pub(super) struct ReleaseOnDrop<'a> {
    pub(super) release: Option<Release<'a>>,
    pub(super) seq: u64,
}

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        let Some(r) = self.release.take() else { return };
        let store = r.up.store.clone();
        let ring = r.up.master_keys.clone();
        let entry = r.entry();
        let (uid, seq) = (r.uid.clone(), self.seq + 1);
        r.up.cleanup.spawn(async move {
            let _ = record::append(store.as_ref(), &ring, &uid, seq, &entry).await;
        });
    }
}
