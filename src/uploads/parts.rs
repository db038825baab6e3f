//! Where the parts of a resumable upload go: one native multipart upload on the final media
//! path (S3, memory), or part objects assembled on completion (local files, which have no
//! multipart interface that survives a request).

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::record::part_path;
use crate::error::StoreError;
use crate::metrics::{Metrics, observe};

#[derive(Clone)]
pub struct PartStore {
    store: Arc<dyn ObjectStore>,
    native: Option<Arc<dyn MultipartStore>>,
    metrics: Metrics,
}

impl std::fmt::Debug for PartStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartStore")
            .field("native", &self.native.is_some())
            .finish()
    }
}

impl PartStore {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        native: Option<Arc<dyn MultipartStore>>,
        metrics: Metrics,
    ) -> Self {
        PartStore {
            store,
            native,
            metrics,
        }
    }

    /// The store's multipart interface, when it has one.
    pub fn native(&self) -> Option<&Arc<dyn MultipartStore>> {
        self.native.as_ref()
    }

    /// Start a multipart upload to `target`; `None` when parts are kept as objects.
    pub async fn begin(&self, target: &Path) -> Result<Option<String>, StoreError> {
        let Some(native) = &self.native else {
            return Ok(None);
        };
        let start = Instant::now();
        let r = native.create_multipart(target).await;
        observe(&self.metrics, "create_multipart", start, r.as_ref().err());
        Ok(Some(r?))
    }

    /// Write part `idx` (0-based; every part but the last must be at least 5 MiB on S3).
    /// Returns the content id (ETag) to complete with.
    pub async fn put(
        &self,
        uid: &str,
        target: &Path,
        multipart: Option<&str>,
        idx: usize,
        data: PutPayload,
    ) -> Result<String, StoreError> {
        let start = Instant::now();
        match (&self.native, multipart) {
            (Some(native), Some(id)) => {
                let r = native.put_part(target, &id.to_string(), idx, data).await;
                observe(&self.metrics, "put_part", start, r.as_ref().err());
                Ok(r?.content_id)
            }
            (None, _) => {
                let r = self.store.put(&part_path(uid, idx), data).await?;
                Ok(r.e_tag.unwrap_or_default())
            }
            (Some(_), None) => Err(StoreError::Corrupt("part without a multipart upload")),
        }
    }

    /// Make the parts the object at `target`. Overwrites: callers check for an existing
    /// media first.
    pub async fn complete(
        &self,
        uid: &str,
        target: &Path,
        multipart: Option<&str>,
        parts: &[String],
    ) -> Result<(), StoreError> {
        let start = Instant::now();
        match (&self.native, multipart) {
            (Some(native), Some(id)) => {
                let ids = parts
                    .iter()
                    .map(|c| PartId {
                        content_id: c.clone(),
                    })
                    .collect();
                let r = native
                    .complete_multipart(target, &id.to_string(), ids)
                    .await;
                observe(&self.metrics, "complete_multipart", start, r.as_ref().err());
                r?;
                Ok(())
            }
            (None, _) => self.assemble(uid, target, parts).await,
            (Some(_), None) => Err(StoreError::Corrupt("parts without a multipart upload")),
        }
    }

    /// Copy part objects, in order, into one multipart write of the target (an atomic
    /// rename on local files). Each part must still be the one the state recorded.
    async fn assemble(&self, uid: &str, target: &Path, parts: &[String]) -> Result<(), StoreError> {
        let upload = self.store.put_multipart(target).await?;
        let mut w = WriteMultipart::new(upload);
        let copied = async {
            for (idx, etag) in parts.iter().enumerate() {
                let got = self.store.get(&part_path(uid, idx)).await?;
                if got.meta.e_tag.as_deref().unwrap_or_default() != etag {
                    return Err(StoreError::Corrupt("part changed after it was recorded"));
                }
                let mut stream = got.into_stream();
                while let Some(chunk) = stream.next().await {
                    w.wait_for_capacity(2).await?;
                    w.write(&chunk?);
                }
            }
            Ok(())
        }
        .await;
        match copied {
            Ok(()) => {
                w.finish().await?;
                Ok(())
            }
            Err(e) => {
                let _ = w.abort().await;
                Err(e)
            }
        }
    }

    /// Discard a multipart upload (part objects go with the upload's directory).
    pub async fn abort(&self, target: &Path, multipart: Option<&str>) {
        if let (Some(native), Some(id)) = (&self.native, multipart) {
            let start = Instant::now();
            let r = native.abort_multipart(target, &id.to_string()).await;
            observe(&self.metrics, "abort_multipart", start, r.as_ref().err());
            if let Err(e) = r {
                tracing::warn!(error = %e, "aborting multipart upload failed; the bucket lifecycle rule will collect it");
            }
        }
    }
}
