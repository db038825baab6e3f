//! Seal-for-me uploads: plaintext in; checked, described and cleaned by a caged worker;
//! sealed in the requested end-to-end format under a fresh key; stored like any sealed
//! upload. The key goes back to the gateway in the response and nowhere else: it is not
//! stored, logged or put in metrics.
//!
//! Plaintext never has a name on disk: the received file, the worker's cleaned copy and the
//! sealed blob are unnamed temporary files (`O_TMPFILE` under `media.tmp_dir`, mode 0600),
//! handed to the worker as open descriptors. The kernel frees them when the last descriptor
//! closes, so they end with the request however it ends, SIGKILL and OOM included: there is
//! nothing for a restart to find.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::auth::Partner;
use crate::body_limit::BodyLimit;
use crate::body_pace::{BodyError, Pace, PacePolicy};
use crate::config::{KindLimits, Settings};
use crate::error::ApiError;
use crate::formats::{self, Descriptor, SealOptions};
use crate::ingest::{Ingest, MediaInfo, Outcome, UploadRequest};
use crate::media::{MediaFormat, MediaKind};
use crate::pipeline::pool::{Pool, PoolError};
use crate::pipeline::{Analysis, MediaError};

/// Directories of versions that kept named plaintext (purged at start-up, see [`purge_stale`]).
const TMP_PREFIX: &str = "interop-media-seal-";

/// A seal-for-me request as declared by its headers.
#[derive(Debug, Clone)]
pub struct SealRequest {
    pub partner: Partner,
    pub kind: MediaKind,
    /// `whatsapp` or `signal`.
    pub format: MediaFormat,
    pub declared_len: Option<u64>,
}

/// The 201 body: what the gateway puts into its end-to-end encrypted message.
#[derive(Debug, Serialize)]
pub struct SealedMedia {
    pub id: String,
    pub kind: MediaKind,
    pub format: MediaFormat,
    /// Plaintext length (WhatsApp `fileLength`, Signal `size`), after cleaning.
    pub size: u64,
    /// SHA-256 of the plaintext, hex (`fileSha256`, Signal `plaintextHash`).
    pub sha256: String,
    /// Length and SHA-256 of the stored blob (`fileEncSha256`, Signal `digest`).
    pub enc_size: u64,
    pub enc_sha256: String,
    /// The media key (WhatsApp: 32 bytes; Signal: 64 bytes), base64.
    pub key: String,
    /// `sniffed`, `mime`, dimensions, duration, waveform, thumbnail, … (flattened).
    #[serde(flatten)]
    pub analysis: Analysis,
    /// WhatsApp streaming sidecar, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    /// The same, as the descriptor `interop-media open --descriptor` reads.
    pub descriptor: Descriptor,
}

/// The seal-for-me flow, holding only what it needs: the caged worker pool, the plaintext
/// limits, where unnamed temp files go, and the single-upload flow
/// that stores the sealed result. Built once in `app.rs`.
#[derive(Clone, Debug)]
pub struct Seal {
    pool: Option<Arc<Pool>>,
    limits: KindLimits,
    tmp_base: PathBuf,
    ingest: Ingest,
}

impl Seal {
    pub fn new(settings: &Settings, pool: Option<Arc<Pool>>, ingest: Ingest) -> Seal {
        Seal {
            pool,
            limits: settings.seal_limits.clone(),
            tmp_base: tmp_base(settings.media_tmp_dir.as_deref()),
            ingest,
        }
    }

    /// Run a seal-for-me upload. `Ok((true, …))` when a new media was stored.
    pub async fn seal_for_me<S>(
        &self,
        req: SealRequest,
        body: S,
    ) -> Result<(bool, SealedMedia), ApiError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        seal_for_me(self, req, body).await
    }
}

async fn seal_for_me<S>(
    seal: &Seal,
    req: SealRequest,
    body: S,
) -> Result<(bool, SealedMedia), ApiError>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    let pool = seal
        .pool
        .clone()
        .ok_or(ApiError::NotImplemented("seal-for-me (media.workers = 0)"))?;
    let limit = seal.limits.get(req.kind);
    if let Some(declared) = req.declared_len
        && declared > limit
    {
        return Err(ApiError::TooLarge {
            kind: req.kind.as_str(),
            declared,
            limit,
        });
    }
    let base = &seal.tmp_base;
    let input = receive(seal.ingest.pace(), &req, body, unnamed(base)?, limit).await?;
    let cleaned = unnamed(base)?;

    let analysis = pool
        .analyze(req.kind, &input, &cleaned)
        .await
        .map_err(|e| match e {
            PoolError::Media(m) => ApiError::from(m),
            PoolError::WorkerFailed(why) => {
                tracing::info!(why, kind = req.kind.as_str(), "media worker failed");
                ApiError::MediaUndecodable
            }
            PoolError::Busy => ApiError::MediaBusy,
            PoolError::Spawn(e) => {
                tracing::error!(error = %e, "cannot start a media worker");
                ApiError::Internal
            }
        })?;
    let plain = if analysis.removed.is_empty() {
        drop(cleaned);
        input
    } else {
        drop(input);
        cleaned
    };

    let (desc, sealed) = seal_file(&req, &analysis, plain, unnamed(base)?).await?;
    let upload = UploadRequest {
        partner: req.partner.clone(),
        kind: req.kind,
        format: req.format,
        sha256: desc.file_enc_sha256,
        declared_len: Some(desc.blob_length),
    };
    let blob =
        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(sealed), 256 << 10)
            .map(|r| r.map_err(|_| BodyError::Aborted));
    let (created, info) = match seal.ingest.ingest(upload, blob).await? {
        Outcome::Created(info) => (true, info),
        Outcome::Existing(info) => (false, info),
    };
    Ok((created, describe(info, analysis, desc)))
}

fn describe(info: MediaInfo, analysis: Analysis, desc: Descriptor) -> SealedMedia {
    SealedMedia {
        id: info.id,
        kind: info.kind,
        format: info.format,
        size: desc.file_length,
        sha256: hex::encode(desc.file_sha256),
        enc_size: desc.blob_length,
        enc_sha256: hex::encode(desc.file_enc_sha256),
        key: STANDARD.encode(desc.key.as_bytes()),
        sidecar: desc.sidecar.as_ref().map(|s| STANDARD.encode(s)),
        analysis,
        created_at: info.created_at,
        expires_at: info.expires_at,
        descriptor: desc,
    }
}

fn tmp_base(base: Option<&Path>) -> PathBuf {
    base.map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir)
}

/// A fresh unnamed file under `base` (`O_TMPFILE`, 0600): no path ever names it, and the
/// kernel frees it with its last descriptor, whatever ends the process. (On a filesystem
/// without `O_TMPFILE`, tempfile creates a random name and unlinks it at once.)
fn unnamed(base: &Path) -> Result<File, ApiError> {
    tempfile::tempfile_in(base).map_err(|e| {
        tracing::error!(error = %e, "cannot create a temp file for seal-for-me");
        ApiError::StorageUnavailable
    })
}

fn io_error(e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, "seal-for-me temp file I/O failed");
    ApiError::StorageUnavailable
}

/// Write the body to `file`, enforcing the kind's plaintext limit and the declared length.
async fn receive<S>(
    pace: PacePolicy,
    req: &SealRequest,
    mut body: S,
    file: File,
    limit: u64,
) -> Result<File, ApiError>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    let mut file = tokio::fs::File::from_std(file);
    let mut count = BodyLimit::new(req.kind.as_str(), limit, req.declared_len);
    let mut pace = Pace::new(pace);
    while let Some(piece) = pace.next(&mut body).await? {
        count.take(piece.len())?;
        file.write_all(&piece).await.map_err(io_error)?;
    }
    count.finish()?;
    file.flush().await.map_err(io_error)?;
    Ok(file.into_std().await)
}

/// Seal `plain` into `sealed` under a fresh key, on the blocking pool (it is CPU work); the
/// sealed file comes back rewound.
async fn seal_file(
    req: &SealRequest,
    analysis: &Analysis,
    mut plain: File,
    mut sealed: File,
) -> Result<(Descriptor, File), ApiError> {
    let mut opts = SealOptions::new(req.format, req.kind);
    opts.mime = Some(analysis.mime.clone());
    let metadata = serde_json::to_value(analysis).ok();
    let task = tokio::task::spawn_blocking(move || -> Result<(Descriptor, File), String> {
        let size = plain.metadata().map_err(|e| e.to_string())?.len();
        plain.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        if opts.format == MediaFormat::Signal && opts.kind == MediaKind::Video {
            opts.incremental_mac_for_size = Some(size);
        }
        let desc = formats::seal(
            &opts,
            std::io::BufReader::with_capacity(1 << 20, plain),
            std::io::BufWriter::with_capacity(1 << 20, &mut sealed),
        )
        .map_err(|e| e.to_string())?;
        sealed.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        Ok((desc, sealed))
    });
    let (mut desc, sealed) = task.await.map_err(|_| ApiError::Internal)?.map_err(|e| {
        tracing::error!(error = %e, "sealing a seal-for-me upload failed");
        ApiError::Internal
    })?;
    desc.metadata = metadata;
    Ok((desc, sealed))
}

/// Remove private directories left behind by versions that kept named plaintext and died
/// mid-request (older than an hour, so an old replica sharing the directory during a rolling
/// upgrade keeps its live ones). This version leaves none: its files are unnamed.
pub fn purge_stale(base: Option<&Path>) {
    let dir = base
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let cutoff = SystemTime::now() - Duration::from_secs(3600);
    for e in entries.flatten() {
        let stale = e.file_name().to_string_lossy().starts_with(TMP_PREFIX)
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff);
        if stale {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::NotAllowed { kind, sniffed } => {
                ApiError::MediaTypeNotAllowed { kind, sniffed }
            }
            MediaError::TooManyPixels { .. } | MediaError::TooLong => {
                ApiError::MediaLimits(e.to_string())
            }
            MediaError::Undecodable(_) => ApiError::MediaUndecodable,
        }
    }
}
