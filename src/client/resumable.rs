//! Resumable uploads from the CLI over tus: the state file that lets a killed `upload` carry
//! on (never holding the media key), sealing once, and the create/HEAD/PATCH rounds that
//! survive dropped connections.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// Files larger than this go through the resumable (tus) endpoint unless `--resumable` says
/// otherwise.
pub const RESUMABLE_THRESHOLD: u64 = 8 << 20;

/// What a killed `upload` needs to carry on, kept as JSON at `--state` (default
/// `FILE.upload-state.json`), mode 0600, rewritten atomically.
///
/// It never holds the media key: the sealed bytes are kept beside it (`STATE.sealed`) so a
/// resumed run uploads the very same bytes (sealing again would draw a fresh key and IV), and
/// the descriptor — which holds the key — lives only in the user's own `--descriptor-out`
/// file, written before the first byte leaves; the state names that file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct UploadState {
    pub version: u32,
    pub server: String,
    pub source: PathBuf,
    pub source_len: u64,
    pub format: String,
    pub kind: String,
    /// The bytes uploaded: the sealed copy, or the source itself when it is sent as is.
    pub blob: PathBuf,
    pub blob_len: u64,
    pub blob_sha256: String,
    pub descriptor_out: Option<PathBuf>,
    /// The tus upload URL, once created.
    pub upload_url: Option<String>,
}

impl UploadState {
    fn load(path: &Path) -> Result<Option<UploadState>, ClientError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| ClientError::usage(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path, e)),
        }
    }

    fn save(&self, path: &Path) -> Result<(), ClientError> {
        let text =
            serde_json::to_vec_pretty(self).map_err(|e| ClientError::usage(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        write_private(&tmp, &text)?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))
    }
}

/// Write a file readable by its owner only (it may hold a descriptor, i.e. a media key).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), ClientError> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| io(path, e))?;
    f.write_all(data).map_err(|e| io(path, e))?;
    f.sync_all().map_err(|e| io(path, e))
}

/// Options of a resumable upload.
#[derive(Debug, Clone)]
pub struct Resumable {
    pub state: PathBuf,
    pub descriptor_out: Option<PathBuf>,
    /// Network attempts in a row without progress before giving up (exit 4).
    pub attempts: u32,
    /// Upload bandwidth cap in bytes per second (none: as fast as the link allows).
    pub max_rate: Option<u64>,
}

/// The state file's default place: beside the input.
pub fn default_state_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".upload-state.json");
    file.with_file_name(name)
}

fn sealed_path(state: &Path) -> PathBuf {
    state.with_extension("sealed")
}

/// Prepare (or pick up) the state of a resumable upload: seal once, write the descriptor to
/// `--descriptor-out`, remember digest and length.
async fn resumable_state(
    file: &Path,
    server: &str,
    format: MediaFormat,
    kind: MediaKind,
    mode: SealMode,
    opts: &Resumable,
) -> Result<UploadState, ClientError> {
    let source_len = std::fs::metadata(file).map_err(|e| io(file, e))?.len();
    if let Some(s) = UploadState::load(&opts.state)? {
        let same = s.server == server
            && s.source == file
            && s.source_len == source_len
            && s.format == format.as_str()
            && s.kind == kind.as_str()
            && s.descriptor_out == opts.descriptor_out;
        if !same {
            return Err(ClientError::usage(format!(
                "{} belongs to another upload (file, server, format, kind or --descriptor-out \
                 differ); remove it or pass another --state",
                opts.state.display()
            )));
        }
        let len = std::fs::metadata(&s.blob)
            .map_err(|e| io(&s.blob, e))?
            .len();
        if len != s.blob_len {
            return Err(ClientError::usage(format!(
                "{} changed since the upload started; remove {} to start over",
                s.blob.display(),
                opts.state.display()
            )));
        }
        return Ok(s);
    }
    let sealing = !(mode == SealMode::AlreadySealed || format == MediaFormat::Opaque);
    let blob = if sealing {
        let Some(out) = &opts.descriptor_out else {
            return Err(ClientError::usage(
                "a resumable upload that seals needs --descriptor-out FILE: the descriptor holds \
                 the media key, and it must be somewhere you chose before the first byte leaves \
                 (the state file never holds the key)",
            ));
        };
        let sealed = sealed_path(&opts.state);
        let d = if mode == SealMode::Raw {
            prepare(file, &sealed, format, kind, None)?
        } else {
            let inspected = inspect(kind, file).await?;
            let mut d = prepare(&inspected.path, &sealed, format, kind, None)?;
            d.mime = Some(inspected.analysis.mime.clone());
            d.metadata = serde_json::to_value(&inspected.analysis).ok();
            d
        };
        write_private(out, d.to_json_pretty().as_bytes())?;
        sealed
    } else {
        file.to_path_buf()
    };
    let blob_len = std::fs::metadata(&blob).map_err(|e| io(&blob, e))?.len();
    let state = UploadState {
        version: 1,
        server: server.to_owned(),
        source: file.to_path_buf(),
        source_len,
        format: format.as_str().to_owned(),
        kind: kind.as_str().to_owned(),
        blob_sha256: hex::encode(sha256_file(&blob)?),
        blob,
        blob_len,
        descriptor_out: opts.descriptor_out.clone(),
        upload_url: None,
    };
    state.save(&opts.state)?;
    Ok(state)
}

/// Why one round against the server stopped.
enum Round {
    /// Finished: the media id.
    Done(String),
    /// Worth retrying after a pause (network, 5xx, 409 busy/offset moved).
    Retry(String),
    /// The upload is gone (404/410): start a new one.
    Gone,
}

fn tus_metadata(s: &UploadState) -> String {
    use base64::Engine as _;
    let b = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    format!(
        "kind {},format {},sha256 {}",
        b(&s.kind),
        b(&s.format),
        b(&s.blob_sha256)
    )
}

fn header_u64(resp: &reqwest::Response, name: &str) -> Option<u64> {
    resp.headers().get(name)?.to_str().ok()?.parse().ok()
}

fn header_str(resp: &reqwest::Response, name: &str) -> Option<String> {
    Some(resp.headers().get(name)?.to_str().ok()?.to_owned())
}

/// One round: create the upload if needed, ask its offset, send the rest.
async fn tus_round(
    c: &reqwest::Client,
    key: &str,
    state: &mut UploadState,
    state_path: &Path,
    bar: &indicatif::ProgressBar,
    max_rate: Option<u64>,
) -> Result<Round, ClientError> {
    let server = state.server.trim_end_matches('/').to_owned();
    let url = match &state.upload_url {
        Some(u) => u.clone(),
        None => {
            let resp = match c
                .post(format!("{server}/v1/uploads/"))
                .bearer_auth(key)
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Length", state.blob_len)
                .header("Upload-Metadata", tus_metadata(state))
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => return Ok(Round::Retry(e.to_string())),
            };
            if resp.status().is_server_error() {
                return Ok(Round::Retry(format!("server answered {}", resp.status())));
            }
            if resp.status() != reqwest::StatusCode::CREATED {
                return Err(problem(resp).await);
            }
            let loc = header_str(&resp, "location")
                .ok_or_else(|| ClientError::remote("no Location in the tus answer"))?;
            let url = if loc.starts_with("http://") || loc.starts_with("https://") {
                loc
            } else {
                format!("{server}{loc}")
            };
            state.upload_url = Some(url.clone());
            state.save(state_path)?;
            url
        }
    };
    let head = match c
        .head(&url)
        .bearer_auth(key)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Ok(Round::Retry(e.to_string())),
    };
    match head.status() {
        s if s.is_success() => {}
        reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::GONE => return Ok(Round::Gone),
        s if s.is_server_error() || s == reqwest::StatusCode::CONFLICT => {
            return Ok(Round::Retry(format!("server answered {s}")));
        }
        _ => return Err(problem(head).await),
    }
    if let Some(id) = header_str(&head, "media-id") {
        return Ok(Round::Done(id));
    }
    let mut offset = header_u64(&head, "upload-offset")
        .ok_or_else(|| ClientError::remote("no Upload-Offset in the tus answer"))?;
    let started = std::time::Instant::now();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    // One PATCH per chunk: the server records the offset at the end of each, so a killed CLI
    // loses at most the chunk in flight (and the server keeps whole parts of that one too).
    loop {
        bar.set_position(offset);
        let take = (state.blob_len - offset).min(PATCH_CHUNK);
        let mut f = tokio::fs::File::open(&state.blob)
            .await
            .map_err(|e| io(&state.blob, e))?;
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        f.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| io(&state.blob, e))?;
        let counted = bar.clone();
        let sent = sent.clone();
        let stream = tokio_util::io::ReaderStream::with_capacity(f.take(take), 256 << 10).then(
            move |piece| {
                let counted = counted.clone();
                let sent = sent.clone();
                async move {
                    if let Ok(b) = &piece {
                        let n = b.len() as u64;
                        let total = sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                        counted.inc(n);
                        if let Some(rate) = max_rate.filter(|r| *r > 0) {
                            // Sleep until the bytes sent so far fit the rate.
                            let due = Duration::from_secs_f64(total as f64 / rate as f64);
                            if let Some(wait) = due.checked_sub(started.elapsed()) {
                                tokio::time::sleep(wait).await;
                            }
                        }
                    }
                    piece
                }
            },
        );
        let resp = c
            .patch(&url)
            .bearer_auth(key)
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset)
            .header("Content-Length", take)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Ok(Round::Retry(e.to_string())),
        };
        match resp.status() {
            s if s.is_success() => {
                if let Some(id) = header_str(&resp, "media-id") {
                    return Ok(Round::Done(id));
                }
                match header_u64(&resp, "upload-offset") {
                    Some(o) if o > offset && o < state.blob_len => offset = o,
                    _ => return Ok(Round::Retry("no progress reported".into())),
                }
            }
            reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::GONE => return Ok(Round::Gone),
            s if s.is_server_error()
                || s == reqwest::StatusCode::CONFLICT
                || s == reqwest::StatusCode::REQUEST_TIMEOUT =>
            {
                return Ok(Round::Retry(format!("server answered {s}")));
            }
            _ => return Err(problem(resp).await),
        }
    }
}

/// Bytes per PATCH of a resumable upload (the service's default part size).
const PATCH_CHUNK: u64 = 8 << 20;

/// Upload through the tus endpoint, resuming after dropped connections (HEAD for the offset,
/// backoff) and after the CLI itself was killed (the state file). Returns what `upload`
/// prints; the state file and the sealed copy are removed once the media exists.
#[allow(clippy::too_many_arguments)]
pub async fn upload_resumable(
    file: &Path,
    server: &str,
    key: &str,
    format: MediaFormat,
    kind: MediaKind,
    mode: SealMode,
    audience: &str,
    opts: &Resumable,
) -> Result<Uploaded, ClientError> {
    let server = server.trim_end_matches('/');
    let mut state = resumable_state(file, server, format, kind, mode, opts).await?;
    let c = http()?;
    let bar = progress(Some(state.blob_len), "upload");
    let mut failures = 0u32;
    let id = loop {
        match tus_round(&c, key, &mut state, &opts.state, &bar, opts.max_rate).await? {
            Round::Done(id) => break id,
            Round::Gone => {
                // Expired or terminated: a fresh upload of the same bytes.
                state.upload_url = None;
                state.save(&opts.state)?;
                failures += 1;
            }
            Round::Retry(why) => {
                failures += 1;
                bar.suspend(|| {
                    eprintln!(
                        "upload interrupted ({why}); retrying ({failures}/{})",
                        opts.attempts
                    )
                });
            }
        }
        if failures >= opts.attempts {
            return Err(ClientError::remote(format!(
                "upload incomplete after {failures} attempts; run the same command again to \
                 resume (state: {})",
                opts.state.display()
            )));
        }
        // Exponential backoff, 0.5 s doubling up to 16 s.
        let pause = Duration::from_millis(500u64 << failures.min(5));
        tokio::time::sleep(pause).await;
    };
    bar.finish_and_clear();
    let resp = c
        .get(format!("{server}/v1/media/{id}"))
        .bearer_auth(key)
        .send()
        .await
        .map_err(|e| ClientError::remote(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(problem(resp).await);
    }
    let media: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| ClientError::remote(e.to_string()))?;
    let token = mint_token(&c, server, key, &id, audience).await?;
    let descriptor = match &state.descriptor_out {
        Some(p) if state.blob != state.source => {
            let text = std::fs::read_to_string(p).map_err(|e| io(p, e))?;
            Some(serde_json::from_str(&text).map_err(|e| ClientError::usage(e.to_string()))?)
        }
        _ => None,
    };
    if state.blob != state.source {
        let _ = std::fs::remove_file(&state.blob);
    }
    let _ = std::fs::remove_file(&opts.state);
    Ok(Uploaded {
        media,
        token,
        descriptor,
    })
}
