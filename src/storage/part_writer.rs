//! One object written as a multipart upload, part by part as bytes arrive, with a bounded
//! number of parts in flight. On stores with a multipart interface (S3, memory) parts are
//! addressed by index, so each part is retried on its own; elsewhere (local files) this is
//! object_store's `WriteMultipart`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartId, ObjectStore, ObjectStoreExt, PutPayloadMut, WriteMultipart};
use tokio::task::JoinSet;

/// A multipart write in progress. Drop it only after [`PartWriter::finish`] or
/// [`PartWriter::abort`]; dropped otherwise, the parts stay until the store (or `sweep`)
/// collects them.
#[derive(Debug)]
pub enum PartWriter {
    Indexed(Box<Indexed>),
    Sequential(WriteMultipart),
}

pub struct Indexed {
    store: Arc<dyn MultipartStore>,
    path: Path,
    id: MultipartId,
    part_size: usize,
    buffer: PutPayloadMut,
    next_idx: usize,
    in_flight: JoinSet<object_store::Result<(usize, PartId)>>,
    done: BTreeMap<usize, PartId>,
}

impl std::fmt::Debug for Indexed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexed")
            .field("path", &self.path)
            .field("next_idx", &self.next_idx)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl PartWriter {
    /// Start a multipart upload of `path` in parts of `part_size` bytes (the last may be
    /// shorter), through `native` when the store has that interface.
    pub async fn begin(
        store: &dyn ObjectStore,
        native: Option<&Arc<dyn MultipartStore>>,
        path: &Path,
        part_size: usize,
    ) -> object_store::Result<PartWriter> {
        Ok(match native {
            Some(native) => PartWriter::Indexed(Box::new(Indexed {
                id: native.create_multipart(path).await?,
                store: native.clone(),
                path: path.clone(),
                part_size,
                buffer: PutPayloadMut::new(),
                next_idx: 0,
                in_flight: JoinSet::new(),
                done: BTreeMap::new(),
            })),
            None => PartWriter::Sequential(WriteMultipart::new_with_chunk_size(
                store.put_multipart(path).await?,
                part_size,
            )),
        })
    }

    /// Add bytes; every full part is sent in the background.
    pub fn put(&mut self, mut bytes: Bytes) {
        let w = match self {
            PartWriter::Sequential(w) => return w.put(bytes),
            PartWriter::Indexed(w) => w,
        };
        while !bytes.is_empty() {
            let room = w.part_size - w.buffer.content_length();
            if bytes.len() < room {
                w.buffer.push(bytes);
                return;
            }
            w.buffer.push(bytes.split_to(room));
            w.send_part();
        }
    }

    /// Wait until fewer than `max` parts are in flight (backpressure on the body).
    pub async fn wait_for_capacity(&mut self, max: usize) -> object_store::Result<()> {
        match self {
            PartWriter::Sequential(w) => w.wait_for_capacity(max).await,
            PartWriter::Indexed(w) => {
                while w.in_flight.len() >= max.max(1) {
                    w.join_one().await?;
                }
                Ok(())
            }
        }
    }

    /// Send what is buffered as the last part, wait for every part, and complete the upload.
    pub async fn finish(self) -> object_store::Result<()> {
        match self {
            PartWriter::Sequential(w) => w.finish().await.map(|_| ()),
            PartWriter::Indexed(mut w) => {
                if w.buffer.content_length() > 0 || w.next_idx == 0 {
                    w.send_part();
                }
                while !w.in_flight.is_empty() {
                    w.join_one().await?;
                }
                let parts = std::mem::take(&mut w.done).into_values().collect();
                w.store.complete_multipart(&w.path, &w.id, parts).await?;
                Ok(())
            }
        }
    }

    /// Stop sending parts and discard the upload.
    pub async fn abort(self) -> object_store::Result<()> {
        match self {
            PartWriter::Sequential(w) => w.abort().await,
            PartWriter::Indexed(mut w) => {
                w.in_flight.abort_all();
                w.store.abort_multipart(&w.path, &w.id).await
            }
        }
    }
}

impl Indexed {
    fn send_part(&mut self) {
        let data = std::mem::take(&mut self.buffer).freeze();
        let idx = self.next_idx;
        self.next_idx += 1;
        let store = self.store.clone();
        let path = self.path.clone();
        let id = self.id.clone();
        self.in_flight.spawn(async move {
            let part = store.put_part(&path, &id, idx, data).await?;
            Ok((idx, part))
        });
    }

    async fn join_one(&mut self) -> object_store::Result<()> {
        let Some(joined) = self.in_flight.join_next().await else {
            return Ok(());
        };
        let (idx, part) = joined.map_err(|e| object_store::Error::JoinError { source: e })??;
        self.done.insert(idx, part);
        Ok(())
    }
}
