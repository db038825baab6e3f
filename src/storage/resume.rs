//! A store read whose body breaks off or stalls continues with a ranged read from the first
//! byte not yet delivered, pinned to the same object by its ETag (`If-Match`), so a download
//! survives a dropped connection to the store and never splices two versions of an object.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResult, ObjectStore};

use super::retry::{Retrier, is_transient};

struct Reader {
    store: Arc<dyn ObjectStore>,
    retrier: Retrier,
    location: Path,
    e_tag: Option<String>,
    version: Option<String>,
    /// Absolute offset of the next byte to deliver, and the end of the requested range.
    next: u64,
    end: u64,
    body: BoxStream<'static, object_store::Result<Bytes>>,
    resumes: u32,
    done: bool,
}

/// Wrap the body of `got` (a read of `location`) so that it resumes after transient failures
/// and after `retrier`'s stall timeout passes without a byte.
pub(super) fn resuming(
    store: Arc<dyn ObjectStore>,
    retrier: Retrier,
    location: Path,
    got: &GetResult,
    body: BoxStream<'static, object_store::Result<Bytes>>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    let reader = Reader {
        store,
        retrier,
        location,
        e_tag: got.meta.e_tag.clone(),
        version: got.meta.version.clone(),
        next: got.range.start,
        end: got.range.end,
        body,
        resumes: 0,
        done: false,
    };
    futures::stream::unfold(reader, |mut r| async move {
        if r.done {
            return None;
        }
        loop {
            let idle = r.retrier.policy.stall_timeout;
            let failure = match tokio::time::timeout(idle, r.body.next()).await {
                Ok(Some(Ok(piece))) => {
                    r.next += piece.len() as u64;
                    return Some((Ok(piece), r));
                }
                Ok(None) if r.next >= r.end => return None,
                Ok(None) => generic("the body ended before its length"),
                Ok(Some(Err(e))) if is_transient(&e) => e,
                Ok(Some(Err(e))) => {
                    r.done = true;
                    return Some((Err(e), r));
                }
                Err(_) => generic(&format!("no byte for {} ms", idle.as_millis())),
            };
            if r.next >= r.end {
                // Everything asked for was delivered; the failure came after the last byte.
                return None;
            }
            if let Err(e) = r.reopen(failure).await {
                r.done = true;
                return Some((Err(e), r));
            }
        }
    })
    .boxed()
}

impl Reader {
    /// Replace the broken body with a read of the rest, or give back `failure` when that is
    /// not possible (no ETag to pin the object, resumes spent) or the read fails.
    async fn reopen(&mut self, failure: object_store::Error) -> object_store::Result<()> {
        let policy = self.retrier.policy;
        if self.e_tag.is_none() || self.resumes as usize >= policy.max_retries {
            return Err(failure);
        }
        tracing::debug!(error = %failure, offset = self.next, "resuming a store read");
        self.retrier.count("get_resume");
        tokio::time::sleep(policy.delay(self.resumes)).await;
        self.resumes += 1;
        let options = GetOptions {
            range: Some(GetRange::Bounded(self.next..self.end)),
            if_match: self.e_tag.clone(),
            version: self.version.clone(),
            ..GetOptions::default()
        };
        let (got, _) = self
            .retrier
            .run("get", || {
                self.store.get_opts(&self.location, options.clone())
            })
            .await;
        let got = got?;
        if got.range.start != self.next {
            return Err(generic("the store answered a different range"));
        }
        self.body = got.into_stream();
        Ok(())
    }
}

fn generic(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "resume",
        source: what.to_string().into(),
    }
}
