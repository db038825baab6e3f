//! Retention: delete media whose expiry has passed, resumable uploads that expired
//! unfinished or were terminated, and staging data that crashed uploads left behind. Run by `interop-media sweep` (a cron job or Kubernetes
//! CronJob); safe to run on several replicas at once.

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use crate::config::StorageSettings;
use crate::crypto::keys::KeyRing;
use crate::error::StoreError;
use crate::storage::{MEDIA_PREFIX, STAGING_PREFIX, read_head};
use crate::uploads::parts::PartStore;
use crate::uploads::record::{self, Loaded, UPLOADS_PREFIX};

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    pub scanned: u64,
    pub expired: u64,
    pub deleted: u64,
    /// Sealed under a key no longer in the ring, or not written by this service: left alone.
    pub unreadable: u64,
    pub errors: u64,
    /// Resumable uploads looked at, and removed (expired, finished and past expiry, or
    /// terminated), each with its multipart upload aborted.
    pub uploads_scanned: u64,
    pub uploads_removed: u64,
    /// Staging data left by uploads that never finished (a crash, a shutdown grace that ran
    /// out): `staging/` objects, local `name#N` files, S3 multipart uploads, each older than
    /// `storage.orphan_age_s`.
    pub orphans_removed: u64,
    /// Multipart upload ids that live resumable uploads reference (filled by
    /// [`sweep_uploads`]): never aborted as orphans, whatever their age.
    #[serde(skip)]
    pub live_multipart: std::collections::BTreeSet<String>,
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

/// Remove resumable uploads that are over: expired (finished or not), or terminated more
/// than twice the lease ago (so no PATCH that held the upload can still append to its log).
pub async fn sweep_uploads(
    store: &dyn ObjectStore,
    parts: &PartStore,
    ring: &KeyRing,
    now: u64,
    lease_s: u64,
    dry_run: bool,
    report: &mut SweepReport,
) -> Result<(), String> {
    let prefix = Path::from(UPLOADS_PREFIX);
    let listing = store
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|e| format!("listing {prefix} failed: {e}"))?;
    let now_ms = now.saturating_mul(1000);
    for dir in listing.common_prefixes {
        let Some(uid) = dir.filename().map(str::to_string) else {
            continue;
        };
        report.uploads_scanned += 1;
        let (over, multipart) = match record::load(store, ring, &uid).await {
            Ok(Loaded::Live(v)) => {
                let claimed = v.claim.as_ref().is_some_and(|c| c.lease_until_ms > now_ms);
                let over = v.state.expires <= now && !claimed;
                if !over && let Some(id) = &v.state.multipart {
                    report.live_multipart.insert(id.clone());
                }
                let mp = (!v.state.completed)
                    .then(|| {
                        v.state
                            .multipart
                            .clone()
                            .map(|id| (v.state.target(&uid), id))
                    })
                    .flatten();
                (over, mp)
            }
            Ok(Loaded::Terminated { at, .. }) => (at + 2 * lease_s <= now, None),
            // Leftovers of a removal that was cut short.
            Ok(Loaded::Missing) => (true, None),
            Err(StoreError::UnknownKey | StoreError::Corrupt(_)) => {
                report.unreadable += 1;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "sweep: reading upload state failed");
                report.errors += 1;
                continue;
            }
        };
        if !over || dry_run {
            report.uploads_removed += u64::from(over);
            continue;
        }
        if let Some((target, id)) = &multipart {
            parts.abort(target, Some(id)).await;
        }
        let mut files = store.list(Some(&record::upload_dir(&uid)));
        let mut failed = false;
        // Log records go last and newest-first would not matter: nothing is live any more.
        while let Some(item) = files.next().await {
            let ok = match item {
                Ok(meta) => match store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "sweep: delete failed");
                        false
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "sweep: listing upload failed");
                    false
                }
            };
            failed |= !ok;
        }
        if failed {
            report.errors += 1;
        } else {
            report.uploads_removed += 1;
        }
    }
    Ok(())
}

/// Remove staging data older than `storage.orphan_age` that no upload will come back for:
/// `staging/` objects (a large upload that died between its multipart completion and its
/// create-only commit) and, on local files, object_store's hidden `name#N` staging files,
/// which its listing never shows (an upload killed while streaming). Live uploads keep their
/// staging data younger than the age: a local staging file's mtime moves with every part.
pub async fn sweep_orphans(
    store: &dyn ObjectStore,
    storage: &StorageSettings,
    now: u64,
    dry_run: bool,
    report: &mut SweepReport,
) -> Result<(), String> {
    let cutoff = now.saturating_sub(storage.orphan_age.as_secs()) as i64;
    let prefix = Path::from(STAGING_PREFIX);
    let mut listing = store.list(Some(&prefix));
    while let Some(item) = listing.next().await {
        let meta = item.map_err(|e| format!("listing {prefix} failed: {e}"))?;
        if meta.last_modified.timestamp() > cutoff {
            continue;
        }
        if dry_run {
            report.orphans_removed += 1;
            continue;
        }
        match store.delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => report.orphans_removed += 1,
            Err(e) => {
                tracing::warn!(error = %e, "sweep: deleting a staging object failed");
                report.errors += 1;
            }
        }
    }
    if let Some(root) = crate::storage::local_root(&storage.url) {
        let (removed, errors) =
            tokio::task::spawn_blocking(move || remove_hidden_staging(&root, cutoff, dry_run))
                .await
                .map_err(|e| format!("sweep: walking the storage directory failed: {e}"))?;
        report.orphans_removed += removed;
        report.errors += errors;
    }
    crate::storage::abort_stale_multipart(storage, cutoff, dry_run, report).await;
    Ok(())
}

/// Walk a local storage root for `name#N` files (object_store's in-progress writes) last
/// modified at or before `cutoff`; remove them, and directories they leave empty.
fn remove_hidden_staging(root: &std::path::Path, cutoff: i64, dry_run: bool) -> (u64, u64) {
    fn walk(dir: &std::path::Path, cutoff: i64, dry_run: bool, out: &mut (u64, u64)) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                walk(&path, cutoff, dry_run, out);
                continue;
            }
            let hidden = entry.file_name().to_string_lossy().contains('#');
            let old = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .is_some_and(|d| d.as_secs() as i64 <= cutoff);
            if !(hidden && old) {
                continue;
            }
            if dry_run {
                out.0 += 1;
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => out.0 += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, "sweep: removing a staging file failed");
                    out.1 += 1;
                }
            }
        }
    }
    let mut out = (0, 0);
    walk(root, cutoff, dry_run, &mut out);
    out
}
