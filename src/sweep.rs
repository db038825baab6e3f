//! Retention: delete media whose expiry has passed. Run by `interop-media sweep` (a cron job
//! or Kubernetes CronJob); safe to run on several replicas at once.

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use crate::crypto::keys::KeyRing;
use crate::error::StoreError;
use crate::storage::{MEDIA_PREFIX, read_head};

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    pub scanned: u64,
    pub expired: u64,
    pub deleted: u64,
    /// Sealed under a key no longer in the ring, or not written by this service: left alone.
    pub unreadable: u64,
    pub errors: u64,
}

/// Delete every media object expired at `now`. With `dry_run`, only count.
pub async fn sweep(
    store: &dyn ObjectStore,
    ring: &KeyRing,
    now: u64,
    dry_run: bool,
) -> Result<SweepReport, String> {
    let mut report = SweepReport::default();
    let prefix = Path::from(MEDIA_PREFIX);
    let mut listing = store.list(Some(&prefix));
    while let Some(item) = listing.next().await {
        let meta = item.map_err(|e| format!("listing {prefix} failed: {e}"))?;
        report.scanned += 1;
        let Some(id) = meta.location.filename().map(str::to_string) else {
            continue;
        };
        match read_head(store, ring, &id).await {
            Ok(head) if head.header.meta.expires <= now => {
                report.expired += 1;
                if dry_run {
                    continue;
                }
                match store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => report.deleted += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, "sweep: delete failed");
                        report.errors += 1;
                    }
                }
            }
            Ok(_) | Err(StoreError::NotFound) => {}
            Err(StoreError::UnknownKey | StoreError::Corrupt(_)) => report.unreadable += 1,
            Err(e) => {
                tracing::warn!(error = %e, "sweep: reading header failed");
                report.errors += 1;
            }
        }
    }
    Ok(report)
}
