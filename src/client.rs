//! The command-line client: `prepare` and `open` (E2EE formats, offline), `upload` and
//! `download` (against a running service). Exit codes a script can rely on: 0 success,
//! 2 usage or configuration, 3 verification failed, 4 server or network error.
//! Large uploads go through the resumable (tus) endpoint and survive dropped connections and
//! a killed CLI ([`upload_resumable`], [`UploadState`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::formats::{self, Descriptor, FormatError, SealOptions};
use crate::media::{MediaFormat, MediaKind};
use crate::pipeline::{Analysis, Limits};

/// A client failure with the exit code that classifies it.
#[derive(Debug)]
pub struct ClientError {
    pub code: u8,
    pub message: String,
}

impl ClientError {
    fn usage(m: impl Into<String>) -> Self {
        ClientError {
            code: 2,
            message: m.into(),
        }
    }
    fn verify(m: impl Into<String>) -> Self {
        ClientError {
            code: 3,
            message: m.into(),
        }
    }
    fn remote(m: impl Into<String>) -> Self {
        ClientError {
            code: 4,
            message: m.into(),
        }
    }
}

fn io(path: &Path, e: std::io::Error) -> ClientError {
    ClientError::usage(format!("{}: {e}", path.display()))
}

fn format_error(e: FormatError) -> ClientError {
    match e {
        FormatError::Io(err) => ClientError::usage(err.to_string()),
        other => ClientError::verify(other.to_string()),
    }
}

/// A file checked and described by the media pipeline, as the recipient needs it.
pub struct Inspected {
    pub analysis: Analysis,
    /// The file to seal: the input, or the cleaned copy when metadata was removed.
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// Run the seal-for-me pipeline on a local file, in one caged worker process (the same cage
/// the service uses: a sender's own machine deserves it too). Refusals exit with code 3.
pub async fn inspect(kind: MediaKind, input: &Path) -> Result<Inspected, ClientError> {
    use crate::pipeline::pool::{Pool, PoolConfig, PoolError};
    use crate::pipeline::worker::Cage;
    let size = std::fs::metadata(input).map_err(|e| io(input, e))?.len();
    let cfg = PoolConfig {
        workers: 1,
        cage: Cage {
            memory_bytes: 1 << 30,
            cpu_seconds: 120,
            max_file_bytes: size + (1 << 20),
        },
        deadline: std::time::Duration::from_secs(120),
        queue_wait: std::time::Duration::from_secs(1),
        max_requests: 1,
        limits: Limits::default(),
        worker_uid: crate::pipeline::pool::NOBODY,
    };
    let pool =
        std::sync::Arc::new(Pool::start_self(cfg).map_err(|e| ClientError::usage(e.to_string()))?);
    let dir = tempfile::Builder::new()
        .prefix("interop-media-prepare-")
        .tempdir()
        .map_err(|e| ClientError::usage(format!("temp dir: {e}")))?;
    let cleaned = dir.path().join("cleaned");
    let input_file = std::fs::File::open(input).map_err(|e| io(input, e))?;
    let cleaned_file = std::fs::File::create(&cleaned).map_err(|e| io(&cleaned, e))?;
    let analysis = pool
        .analyze(kind, &input_file, &cleaned_file)
        .await
        .map_err(|e| match e {
            PoolError::Media(m) => ClientError::verify(m.to_string()),
            other => ClientError::verify(other.to_string()),
        })?;
    let (path, dir) = if analysis.removed.is_empty() {
        (input.to_path_buf(), None)
    } else {
        (cleaned, Some(dir))
    };
    Ok(Inspected {
        analysis,
        path,
        _dir: dir,
    })
}

/// Encrypt `input` into `output` in an E2EE attachment format; returns the descriptor.
pub fn prepare(
    input: &Path,
    output: &Path,
    format: MediaFormat,
    kind: MediaKind,
    sidecar: Option<bool>,
) -> Result<Descriptor, ClientError> {
    if format == MediaFormat::Opaque {
        return Err(ClientError::usage(
            "prepare needs --format whatsapp or signal",
        ));
    }
    let mut opts = SealOptions::new(format, kind);
    if let Some(s) = sidecar {
        opts.sidecar = s && format == MediaFormat::Whatsapp;
    }
    let file = std::fs::File::open(input).map_err(|e| io(input, e))?;
    let size = file.metadata().map_err(|e| io(input, e))?.len();
    if format == MediaFormat::Signal && kind == MediaKind::Video {
        opts.incremental_mac_for_size = Some(size);
    }
    let out = std::fs::File::create(output).map_err(|e| io(output, e))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, out);
    let desc = formats::seal(
        &opts,
        std::io::BufReader::with_capacity(1 << 20, file),
        &mut writer,
    )
    .map_err(format_error)?;
    use std::io::Write as _;
    writer.flush().map_err(|e| io(output, e))?;
    Ok(desc)
}

pub fn read_descriptor(path: &Path) -> Result<Descriptor, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    Descriptor::from_json(&text).map_err(|e| ClientError::usage(format!("{}: {e}", path.display())))
}

/// Verify and decrypt `blob` into `output`; nothing is written unless every check passes.
pub fn open(
    blob: &Path,
    descriptor: &Descriptor,
    output: &Path,
) -> Result<formats::Opened, ClientError> {
    formats::open_to_path(descriptor, blob, output).map_err(format_error)
}

/// A byte progress bar on stderr; indicatif draws nothing when stderr is not a terminal, so
/// scripts and logs see only the JSON result.
fn progress(len: Option<u64>, what: &'static str) -> indicatif::ProgressBar {
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::no_length(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bytes}/{total_bytes} {bytes_per_sec} {wide_bar} {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what);
    bar
}

fn http() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ClientError::remote(e.to_string()))
}

async fn problem(resp: reqwest::Response) -> ClientError {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    ClientError::remote(format!("server answered {status}: {body}"))
}

/// What `upload` prints.
#[derive(Debug, serde::Serialize)]
pub struct Uploaded {
    pub media: serde_json::Value,
    pub token: serde_json::Value,
    pub descriptor: Option<serde_json::Value>,
}

/// How `upload` treats its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealMode {
    /// Check and describe it with the media pipeline, then seal it.
    Inspect,
    /// Seal the bytes as they are.
    Raw,
    /// It is a sealed blob already: upload as is.
    AlreadySealed,
}

/// Seal (see [`SealMode`]), upload, and mint a token for `audience`.
pub async fn upload(
    file: &Path,
    server: &str,
    key: &str,
    format: MediaFormat,
    kind: MediaKind,
    mode: SealMode,
    audience: &str,
) -> Result<Uploaded, ClientError> {
    let tmp;
    let (blob_path, descriptor): (PathBuf, Option<Descriptor>) =
        if mode == SealMode::AlreadySealed || format == MediaFormat::Opaque {
            (file.to_path_buf(), None)
        } else {
            tmp = temp_path()?;
            let d = if mode == SealMode::Raw {
                prepare(file, &tmp.0, format, kind, None)?
            } else {
                let inspected = inspect(kind, file).await?;
                let mut d = prepare(&inspected.path, &tmp.0, format, kind, None)?;
                d.mime = Some(inspected.analysis.mime.clone());
                d.metadata = serde_json::to_value(&inspected.analysis).ok();
                d
            };
            (tmp.0.clone(), Some(d))
        };
    let digest = sha256_file(&blob_path)?;
    let f = tokio::fs::File::open(&blob_path)
        .await
        .map_err(|e| io(&blob_path, e))?;
    let len = f.metadata().await.map_err(|e| io(&blob_path, e))?.len();
    let bar = progress(Some(len), "upload");
    let counted = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20).inspect(move |piece| {
        if let Ok(b) = piece {
            counted.inc(b.len() as u64);
        }
    });
    let body = reqwest::Body::wrap_stream(stream);
    let c = http()?;
    let server = server.trim_end_matches('/');
    let resp = c
        .post(format!("{server}/v1/media"))
        .bearer_auth(key)
        .header("X-Media-Kind", kind.as_str())
        .header("X-Media-Format", format.as_str())
        .header("X-Media-Sha256", hex::encode(digest))
        .header("Content-Length", len)
        .body(body)
        .send()
        .await
        .map_err(|e| ClientError::remote(e.to_string()))?;
    bar.finish_and_clear();
    if !resp.status().is_success() {
        return Err(problem(resp).await);
    }
    let media: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| ClientError::remote(e.to_string()))?;
    let id = media["id"]
        .as_str()
        .ok_or_else(|| ClientError::remote("no id in response"))?
        .to_string();
    let token = mint_token(&c, server, key, &id, audience).await?;
    let descriptor = descriptor
        .map(|d| serde_json::from_str(&d.to_json_pretty()))
        .transpose()
        .map_err(|e| ClientError::usage(e.to_string()))?;
    Ok(Uploaded {
        media,
        token,
        descriptor,
    })
}

/// A private temporary file path (the file is removed on drop).
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_path() -> Result<TempPath, ClientError> {
    let r = crate::crypto::random_hex::<8>().map_err(|e| ClientError::usage(e.to_string()))?;
    let dir = std::env::temp_dir();
    let name = format!(".interop-media-{r}.blob");
    Ok(TempPath(dir.join(name)))
}

fn sha256_file(path: &Path) -> Result<[u8; 32], ClientError> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Fetch a token URL into `output`, resuming with `Range` after a dropped connection.
pub async fn download(url: &str, output: &Path, attempts: u32) -> Result<u64, ClientError> {
    let c = http()?;
    let partial = output.with_extension("partial");
    let mut file = tokio::fs::File::create(&partial)
        .await
        .map_err(|e| io(&partial, e))?;
    let mut have: u64 = 0;
    let mut total: Option<u64> = None;
    let mut tries = 0;
    let bar = progress(None, "download");
    loop {
        tries += 1;
        let mut req = c.get(url);
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
        }
        let result: Result<(), String> = async {
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            if have > 0 && status != reqwest::StatusCode::PARTIAL_CONTENT {
                return Err(format!("resume refused: {status}"));
            }
            if !status.is_success() {
                let body = resp.text().await.unwrap_or_default();
                return Err(format!("FATAL server answered {status}: {body}"));
            }
            if total.is_none() {
                total = resp.content_length();
                if let Some(t) = total {
                    bar.set_length(t);
                }
            }
            let mut stream = resp.bytes_stream();
            while let Some(piece) = stream.next().await {
                let piece = piece.map_err(|e| e.to_string())?;
                file.write_all(&piece)
                    .await
                    .map_err(|e| format!("FATAL {e}"))?;
                have += piece.len() as u64;
                bar.set_position(have);
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) if total.is_none_or(|t| t == have) => break,
            Ok(()) => {}
            Err(e) if e.starts_with("FATAL") || tries >= attempts => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(ClientError::remote(
                    e.trim_start_matches("FATAL ").to_string(),
                ));
            }
            Err(e) => eprintln!("download interrupted at {have} bytes ({e}); resuming"),
        }
        if tries >= attempts {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(ClientError::remote(format!(
                "incomplete after {tries} attempts"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500 * u64::from(tries))).await;
    }
    bar.finish_and_clear();
    file.flush().await.map_err(|e| io(&partial, e))?;
    drop(file);
    tokio::fs::rename(&partial, output)
        .await
        .map_err(|e| io(output, e))?;
    Ok(have)
}

mod resumable;
pub use resumable::{
    RESUMABLE_THRESHOLD, Resumable, UploadState, default_state_path, upload_resumable,
    write_private,
};

async fn mint_token(
    c: &reqwest::Client,
    server: &str,
    key: &str,
    id: &str,
    audience: &str,
) -> Result<serde_json::Value, ClientError> {
    let resp = c
        .post(format!("{server}/v1/media/{id}/tokens"))
        .bearer_auth(key)
        .json(&json!({ "audience": audience }))
        .send()
        .await
        .map_err(|e| ClientError::remote(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(problem(resp).await);
    }
    resp.json()
        .await
        .map_err(|e| ClientError::remote(e.to_string()))
}

/// Read a descriptor file: a bare descriptor, or the JSON `upload` printed (its `descriptor`).
pub fn read_descriptor_any(path: &Path) -> Result<Descriptor, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ClientError::usage(format!("{}: {e}", path.display())))?;
    let inner = match v.get("descriptor") {
        Some(d) if v.get("media").is_some() => {
            if d.is_null() {
                return Err(ClientError::usage(format!(
                    "{}: this upload was sent as is (no descriptor)",
                    path.display()
                )));
            }
            d.to_string()
        }
        _ => text,
    };
    Descriptor::from_json(&inner)
        .map_err(|e| ClientError::usage(format!("{}: {e}", path.display())))
}
