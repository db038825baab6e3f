//! Object storage: the backend chosen by URL, the key scheme, and reading object headers.

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

/// Open the configured backend's object store.
pub fn open(s: &StorageSettings) -> Result<Arc<dyn ObjectStore>, String> {
    open_backend(s).map(|b| b.store)
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
            // Client options first: `with_client_options` replaces them whole, and
            // `with_allow_http` is stored inside them.
            let mut b = AmazonS3Builder::from_env()
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
            let store = Arc::new(b.build().map_err(|e| format!("cannot configure S3: {e}"))?);
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
}

/// Read and authenticate a media object's header with one ranged read.
pub async fn read_head(
    store: &dyn ObjectStore,
    ring: &KeyRing,
    id: &str,
) -> Result<Head, StoreError> {
    let opts = GetOptions {
        range: Some(GetRange::Bounded(0..MAX_HEADER_LEN as u64)),
        ..Default::default()
    };
    let got = store.get_opts(&media_path(id), opts).await?;
    let object_size = got.meta.size;
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
