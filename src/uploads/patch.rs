//! `PATCH`: claim the upload, take the body (spooled and checked first when it carries
//! `Upload-Checksum`), and commit what arrived; the sealing and storing is `writer`'s.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;

use super::lease::{Lease, Release, ReleaseOnDrop};
use super::record::UploadState;
use super::writer::Writer;
use super::{PatchRequest, Progress, Uploads, live_view, now_ms};
use crate::auth::Partner;
use crate::body_limit::BodyLimit;
use crate::body_pace::{BodyError, Pace};
use crate::error::ApiError;
use crate::ingest::{InFlight, now_unix};

/// `PATCH`: append the body at `req.offset`.
pub async fn patch<S>(
    up: &Uploads,
    partner: &Partner,
    uid: &str,
    req: PatchRequest,
    body: S,
) -> Result<Progress, ApiError>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    let view = live_view(up, partner, uid).await?;
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

    // Room for what this PATCH holds in memory, before the upload is taken.
    let _ticket = up.ingest.admit(&partner.id, Some(st.length)).await?;
    let _in_flight = InFlight::new(&up.metrics);
    let mut lease = Lease::acquire(up, uid, &view).await?;
    let mut guard = ReleaseOnDrop {
        release: Some(Release {
            up,
            uid: uid.to_string(),
            base: UploadState {
                held: None,
                ..st.clone()
            },
        }),
        seq: lease.seq,
    };
    let mut writer = match Writer::resume(up, uid, st).await {
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
        Some(sum) => match spool(up, &mut lease, &mut guard, uid, body, remaining, sum).await {
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
pub(super) async fn spool<S>(
    up: &Uploads,
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
    let mut pace = Pace::new(up.ingest.pace());
    let io = |e: std::io::Error| {
        tracing::error!(error = %e, "writing the spool file failed");
        ApiError::StorageUnavailable
    };
    while let Some(piece) = pace.next(&mut body).await? {
        count.take(piece.len())?;
        hasher.update(&piece);
        file.write_all(&piece).await.map_err(io)?;
        lease.keep(up, uid).await?;
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
pub(super) enum Failure {
    /// The upload was already given back (or taken over, or discarded).
    Released(ApiError),
    /// Still ours: release it, aborting this multipart upload if we started it.
    Keep(ApiError, Option<String>),
}
