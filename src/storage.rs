//! Object storage: the backend chosen by URL, the key scheme, and reading object headers.

mod body;
mod part_writer;
mod resume;
mod retry;

pub use body::body_stream;
pub use part_writer::PartWriter;
pub use retry::{Retrier, RetryPolicy, RetryingMultipart, RetryingStore, is_transient};

use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    ClientOptions, GetOptions, GetRange, MultipartId, ObjectStore, PutPayload, PutResult,
    RetryConfig,
};

use crate::config::StorageSettings;
use crate::crypto::keys::KeyRing;
use crate::crypto::object::{HeaderError, MAX_HEADER_LEN, OpenedHeader, open_header};
use crate::error::StoreError;

/// Every stored media lives under this prefix, named by its opaque id and nothing else, so a
/// bucket listing reveals neither partner nor kind.
pub const MEDIA_PREFIX: &str = "media";

/// The object path of a media id (lowercase hex).
pub fn media_path(id: &str) -> Path {
    Path::from_iter([MEDIA_PREFIX, id])
}

/// Large single uploads are written here first (`staging/<id>.<random>`), then committed to
/// `media/<id>` with a create-only copy, so that of several uploads racing on one id exactly
/// one becomes the media (a multipart completion would silently overwrite). What a crash
/// leaves here is an ordinary listable object that `sweep` removes once it is old enough.
pub const STAGING_PREFIX: &str = "staging";

/// A fresh staging path for media `id`.
pub fn staging_path(id: &str) -> Result<Path, crate::crypto::CryptoError> {
    let r = crate::crypto::random_hex::<8>()?;
    Ok(Path::from_iter([STAGING_PREFIX, &format!("{id}.{r}")]))
}

enum Url<'a> {
    File(&'a str),
    Memory,
    S3 { bucket: &'a str, prefix: &'a str },
}

fn parse(url: &str) -> Result<Url<'_>, String> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(
                "file:// URLs need an absolute path, e.g. file:///var/lib/interop-media".into(),
            );
        }
        Ok(Url::File(path))
    } else if url == "memory://" || url == "memory:///" {
        Ok(Url::Memory)
    } else if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("s3:// URLs name a bucket: s3://bucket[/prefix]".into());
        }
        Ok(Url::S3 {
            bucket,
            prefix: prefix.trim_matches('/'),
        })
    } else if url.starts_with("gs://") || url.starts_with("az://") {
        Err("gs:// and az:// are not built into this release; use s3:// (GCS and Azure speak S3 through their interop endpoints) or file://".into())
    } else {
        Err("expected file:///dir, memory:// or s3://bucket[/prefix]".into())
    }
}

/// Whether the storage URL names a backend this build can open.
pub fn check_url(url: &str) -> Result<(), String> {
    parse(url).map(|_| ())
}

/// An opened backend: the object store, plus its low-level multipart interface when it has
/// one. Resumable uploads need the latter to add parts to one multipart upload across
/// requests and replicas; without it (local files) they keep parts as objects instead.
#[derive(Clone)]
pub struct Backend {
    pub store: Arc<dyn ObjectStore>,
    pub multipart: Option<Arc<dyn MultipartStore>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("store", &self.store.to_string())
            .field("multipart", &self.multipart.is_some())
            .finish()
    }
}

/// Open the configured backend with its multipart interface.
pub fn open_backend(s: &StorageSettings) -> Result<Backend, String> {
    Ok(match parse(&s.url)? {
        Url::File(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
            Backend {
                store: Arc::new(
                    LocalFileSystem::new_with_prefix(dir)
                        .map_err(|e| format!("cannot open {dir}: {e}"))?
                        // Empty directories left by deletes are removed, so sweeps don't grow the tree.
                        .with_automatic_cleanup(true),
                ),
                multipart: None,
            }
        }
        Url::Memory => {
            let m = Arc::new(InMemory::new());
            Backend {
                store: m.clone(),
                multipart: Some(m),
            }
        }
        Url::S3 { bucket, prefix } => {
            let store = Arc::new(
                s3_builder(s, bucket)?
                    .build()
                    .map_err(|e| format!("cannot configure S3: {e}"))?,
            );
            if prefix.is_empty() {
                Backend {
                    store: store.clone(),
                    multipart: Some(store),
                }
            } else {
                Backend {
                    store: Arc::new(PrefixStore::new(store.clone(), prefix)),
                    multipart: Some(Arc::new(PrefixedMultipart {
                        inner: store,
                        prefix: Path::from(prefix),
                    })),
                }
            }
        }
    })
}

/// The S3 client configuration for `bucket`.
fn s3_builder(s: &StorageSettings, bucket: &str) -> Result<AmazonS3Builder, String> {
    {
        {
            // Client options first: `with_client_options` replaces them whole, and
            // `with_allow_http` is stored inside them.
            let mut b = AmazonS3Builder::from_env();
            // Staged objects become media with a create-only copy. AWS S3 (and servers that
            // honour `If-None-Match: *` on CompleteMultipartUpload) do that as a one-part
            // multipart copy completed only if the target is absent; other servers can set
            // `AWS_COPY_IF_NOT_EXISTS` (e.g. `header: cf-copy-destination-if-none-match: *`).
            if std::env::var_os("AWS_COPY_IF_NOT_EXISTS").is_none() {
                b = b.with_copy_if_not_exists(object_store::aws::S3CopyIfNotExists::Multipart);
            }
            let mut b = b
                .with_client_options(
                    ClientOptions::new()
                        .with_connect_timeout(s.connect_timeout)
                        .with_timeout(s.request_timeout),
                )
                // The retry budget bounds how long a call keeps trying against a store that
                // is down (object_store's default: 10 retries within 3 minutes).
                .with_retry(RetryConfig {
                    max_retries: s.max_retries,
                    retry_timeout: s.retry_timeout,
                    ..RetryConfig::default()
                })
                .with_bucket_name(bucket)
                .with_region(&s.s3.region)
                .with_allow_http(s.s3.allow_http)
                .with_virtual_hosted_style_request(!s.s3.path_style);
            if let Some(e) = &s.s3.endpoint {
                b = b.with_endpoint(e);
            }
            if let (Some(id), Some(secret)) = (&s.s3.access_key_id, &s.s3.secret_access_key) {
                b = b
                    .with_access_key_id(id)
                    .with_secret_access_key(secret.expose());
            }
            Ok(b)
        }
    }
}

/// The directory of a `file://` storage URL.
pub fn local_root(url: &str) -> Option<std::path::PathBuf> {
    match parse(url) {
        Ok(Url::File(dir)) => Some(dir.into()),
        _ => None,
    }
}

/// S3 only: abort multipart uploads under our prefix initiated at or before `cutoff` (unix
/// seconds). object_store has no ListMultipartUploads, so it is one signed request here
/// (SigV4 by object_store's own signer) and a small reading of its XML answer.
pub async fn abort_stale_multipart(
    s: &StorageSettings,
    cutoff: i64,
    dry_run: bool,
    report: &mut crate::sweep::SweepReport,
) {
    let Ok(Url::S3 { bucket, prefix }) = parse(&s.url) else {
        return;
    };
    let live = std::mem::take(&mut report.live_multipart);
    match list_and_abort(s, bucket, prefix, cutoff, dry_run, &live).await {
        Ok(n) => report.orphans_removed += n,
        Err(e) => {
            tracing::warn!(error = %e, "sweep: stale multipart uploads could not be listed or aborted");
            report.errors += 1;
        }
    }
}

async fn list_and_abort(
    s: &StorageSettings,
    bucket: &str,
    prefix: &str,
    cutoff: i64,
    dry_run: bool,
    live: &std::collections::BTreeSet<String>,
) -> Result<u64, String> {
    let s3 = s3_builder(s, bucket)?
        .build()
        .map_err(|e| format!("cannot configure S3: {e}"))?;
    let cred = s3
        .credentials()
        .get_credential()
        .await
        .map_err(|e| e.to_string())?;
    let base = match &s.s3.endpoint {
        Some(e) if s.s3.path_style => format!("{}/{bucket}", e.trim_end_matches('/')),
        Some(e) => {
            let (scheme, host) = e.split_once("://").unwrap_or(("https", e));
            format!("{scheme}://{bucket}.{}", host.trim_end_matches('/'))
        }
        None => format!("https://{bucket}.s3.{}.amazonaws.com", s.s3.region),
    };
    let our_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let client = reqwest::Client::builder()
        .connect_timeout(s.connect_timeout)
        .timeout(s.request_timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let mut aborted = 0;
    let mut markers: Option<(String, String)> = None;
    loop {
        let mut query = format!("uploads=&prefix={}", urlencode(&our_prefix));
        if let Some((k, u)) = &markers {
            query.push_str(&format!(
                "&key-marker={}&upload-id-marker={}",
                urlencode(k),
                urlencode(u)
            ));
        }
        // Path style names the bucket in the path (`/bucket?uploads`), else the host.
        let url = if s.s3.endpoint.is_some() && s.s3.path_style {
            format!("{base}?{query}")
        } else {
            format!("{base}/?{query}")
        };
        let mut req = object_store::client::HttpRequest::new(Bytes::new().into());
        *req.uri_mut() = url.parse().map_err(|e| format!("bad S3 URL: {e}"))?;
        object_store::aws::AwsAuthorizer::new(&cred, "s3", &s.s3.region)
            .try_authorize(&mut req, None)
            .map_err(|e| e.to_string())?;
        let resp = client
            .get(&url)
            .headers(req.headers().clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("ListMultipartUploads answered {status}"));
        }
        for block in xml_blocks(&body, "Upload") {
            let (Some(key), Some(id), Some(at)) = (
                xml_text(block, "Key"),
                xml_text(block, "UploadId"),
                xml_text(block, "Initiated"),
            ) else {
                continue;
            };
            let initiated = humantime::parse_rfc3339_weak(at.trim_end_matches('Z'))
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            // Young ones may belong to an upload in progress; live resumable uploads keep theirs.
            if initiated.is_none_or(|t| t > cutoff) || live.contains(&id) {
                continue;
            }
            if dry_run {
                aborted += 1;
                continue;
            }
            let path = Path::parse(&key).map_err(|e| e.to_string())?;
            match s3.abort_multipart(&path, &id).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => aborted += 1,
                Err(e) => return Err(format!("aborting a stale multipart upload failed: {e}")),
            }
        }
        let truncated = xml_text(&body, "IsTruncated").is_some_and(|t| t == "true");
        match (
            xml_text(&body, "NextKeyMarker"),
            xml_text(&body, "NextUploadIdMarker"),
        ) {
            (Some(k), Some(u)) if truncated => markers = Some((k, u)),
            _ => return Ok(aborted),
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The contents of each `<tag>…</tag>` element in `xml`.
fn xml_blocks<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// The unescaped text of the first `<tag>` element in `xml`.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    xml_blocks(xml, tag).first().map(|t| {
        t.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    })
}

/// `PrefixStore` for the multipart interface, which object_store does not wrap.
struct PrefixedMultipart {
    inner: Arc<dyn MultipartStore>,
    prefix: Path,
}

impl std::fmt::Debug for PrefixedMultipart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrefixedMultipart({})", self.prefix)
    }
}

impl PrefixedMultipart {
    fn full(&self, path: &Path) -> Path {
        self.prefix.parts().chain(path.parts()).collect()
    }
}

#[async_trait::async_trait]
impl MultipartStore for PrefixedMultipart {
    async fn create_multipart(&self, path: &Path) -> object_store::Result<MultipartId> {
        self.inner.create_multipart(&self.full(path)).await
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<PartId> {
        self.inner
            .put_part(&self.full(path), id, part_idx, data)
            .await
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> object_store::Result<PutResult> {
        self.inner
            .complete_multipart(&self.full(path), id, parts)
            .await
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> object_store::Result<()> {
        self.inner.abort_multipart(&self.full(path), id).await
    }
}

/// A media object's opened header plus what the first read returned.
#[derive(Debug)]
pub struct Head {
    pub header: OpenedHeader,
    /// Size of the whole stored object.
    pub object_size: u64,
    /// Bytes already read past the header (the start of the payload), reused by small downloads.
    pub prefix: Bytes,
    /// The object's ETag when the store gives one: later reads of the same download are
    /// pinned to it, so they never splice in another object written since.
    pub e_tag: Option<String>,
}

/// How much a download's first read fetches: the header and, after it, enough payload that a
/// media of up to about 125 KiB is served from this one read (and a larger one continues
/// where it ends). Small media are most requests; each store read costs a file open or an
/// HTTP round trip.
pub const DOWNLOAD_FIRST_READ: usize = 128 * 1024;

/// Read and authenticate a media object's header with one ranged read.
pub async fn read_head(
    store: &dyn ObjectStore,
    ring: &KeyRing,
    id: &str,
) -> Result<Head, StoreError> {
    read_head_and_more(store, ring, id, MAX_HEADER_LEN).await
}

/// Read and authenticate a media object's header, fetching the first `first_read` bytes of
/// the object (at least the longest header) in one ranged read; what follows the header
/// comes back as [`Head::prefix`].
pub async fn read_head_and_more(
    store: &dyn ObjectStore,
    ring: &KeyRing,
    id: &str,
    first_read: usize,
) -> Result<Head, StoreError> {
    let opts = GetOptions {
        range: Some(GetRange::Bounded(0..first_read.max(MAX_HEADER_LEN) as u64)),
        ..Default::default()
    };
    let got = store.get_opts(&media_path(id), opts).await?;
    let object_size = got.meta.size;
    let e_tag = got.meta.e_tag.clone();
    let bytes = got.bytes().await?;
    let header = open_header(ring, id, &bytes).map_err(|e| match e {
        HeaderError::UnknownKid => StoreError::UnknownKey,
        HeaderError::Truncated(_) => StoreError::Corrupt("header truncated"),
        HeaderError::BadMagic => StoreError::Corrupt("bad magic"),
        HeaderError::Version(_) => StoreError::Corrupt("unsupported version"),
        HeaderError::Auth => StoreError::Corrupt("header authentication failed"),
        HeaderError::Malformed => StoreError::Corrupt("header malformed"),
    })?;
    let prefix = bytes.slice((header.header_len as usize).min(bytes.len())..);
    Ok(Head {
        header,
        object_size,
        prefix,
        e_tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("file:///tmp/x").is_ok());
        assert!(check_url("file://relative").is_err());
        assert!(check_url("memory://").is_ok());
        assert!(check_url("s3://bucket").is_ok());
        assert!(check_url("s3://bucket/some/prefix").is_ok());
        assert!(check_url("s3://").is_err());
        assert!(check_url("http://x").is_err());
        assert_eq!(media_path("abc").as_ref(), "media/abc");
    }
}
