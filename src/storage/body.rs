//! A store read's body as a stream of large pieces. object_store streams a local file 8 KiB
//! per blocking-pool task (2 048 hand-offs and allocations for a 16 MiB download); here a
//! local file is read [`FILE_PIECE`] bytes at a time with positioned reads, and other stores'
//! bodies pass through as they come.

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::{GetResult, GetResultPayload};

/// Bytes of a local file read per blocking task: the size of the piece a download decrypts
/// and hands to the socket at once, so no more is held per download than before.
pub(crate) const FILE_PIECE: usize = 256 * 1024;

/// The body of `got`, in pieces of at most [`FILE_PIECE`] bytes for local files.
pub fn body_stream(got: GetResult) -> BoxStream<'static, object_store::Result<Bytes>> {
    let range = got.range.clone();
    match got.payload {
        GetResultPayload::File(file, path) => file_pieces(file, path, range),
        GetResultPayload::Stream(stream) => stream,
    }
}

fn file_pieces(
    file: std::fs::File,
    path: PathBuf,
    range: Range<u64>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    let file = std::sync::Arc::new(file);
    futures::stream::try_unfold(range.start, move |pos| {
        let (file, path) = (file.clone(), path.clone());
        let end = range.end;
        async move {
            if pos >= end {
                return Ok(None);
            }
            let n = usize::try_from((end - pos).min(FILE_PIECE as u64)).unwrap_or(FILE_PIECE);
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                // Positioned: no seek state to keep between pieces. A file cut short since it
                // was opened fails here rather than ending the body early.
                file.read_exact_at(&mut buf, pos).map(|()| buf)
            })
            .await;
            let failed =
                |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!("reading {}: {source}", path.display()).into(),
                };
            match read {
                Ok(Ok(buf)) => Ok(Some((Bytes::from(buf), pos + n as u64))),
                Ok(Err(e)) => Err(failed(Box::new(e))),
                Err(e) => Err(failed(Box::new(e))),
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::local::LocalFileSystem;
    use object_store::path::Path;
    use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

    #[tokio::test]
    async fn a_local_file_comes_in_large_pieces_and_exactly_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        let path = Path::from("o");
        store.put(&path, data.clone().into()).await.unwrap();
        for range in [0..1_000_003u64, 1..2, 100_000..900_001, 999_000..1_000_003] {
            let opts = GetOptions {
                range: Some(GetRange::Bounded(range.clone())),
                ..Default::default()
            };
            let got = store.get_opts(&path, opts).await.unwrap();
            assert!(matches!(got.payload, GetResultPayload::File(..)));
            let pieces: Vec<Bytes> = body_stream(got).try_collect().await.unwrap();
            assert!(pieces.iter().all(|p| p.len() <= FILE_PIECE));
            assert!(pieces.len() as u64 <= (range.end - range.start).div_ceil(FILE_PIECE as u64));
            let (a, b) = (range.start as usize, range.end as usize);
            assert_eq!(pieces.concat(), data[a..b], "{range:?}");
        }
    }

    #[tokio::test]
    async fn a_file_cut_short_after_opening_is_an_error_not_a_short_body() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let path = Path::from("o");
        store.put(&path, vec![1u8; 600_000].into()).await.unwrap();
        let got = store.get(&path).await.unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("o"))
            .unwrap()
            .set_len(300_000)
            .unwrap();
        let got: Result<Vec<Bytes>, _> = body_stream(got).try_collect().await;
        assert!(got.is_err());
    }
}
