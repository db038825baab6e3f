//! Download pipeline: token → object header → plaintext range → chunk span → one ranged read
//! → decrypt → trimmed stream. A range costs the chunks it touches, not the object.

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectStore};
use prometheus::{IntCounter, IntCounterVec};
use std::sync::Arc;

use crate::crypto::keys::KeyRing;
use crate::crypto::stream::{Opener, chunk_count, chunk_span, plain_len};
use crate::error::{ApiError, StoreError};
use crate::metrics::Metrics;
use crate::storage::{DOWNLOAD_FIRST_READ, Head, media_path, read_head_and_more};
use crate::tokens::{self, Claims};

/// A verified download: the token's claims and the object's header.
#[derive(Debug)]
pub struct Resolved {
    pub claims: Claims,
    pub id: String,
    pub head: Head,
    /// Plaintext length of the stored blob.
    pub len: u64,
}

impl Resolved {
    /// Strong validator: the blob's digest never changes for a media id's content.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.head.header.meta.sha256)
    }
}

/// The download flow, holding only what it needs: the store, the two key rings, the clock
/// skew tolerated on tokens, and the counters it feeds. Built once in `app.rs`.
#[derive(Clone)]
pub struct Retrieve {
    store: Arc<dyn ObjectStore>,
    master_keys: KeyRing,
    token_keys: KeyRing,
    clock_skew: u64,
    rejected: IntCounterVec,
    decrypt_failures: IntCounter,
}

impl std::fmt::Debug for Retrieve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrieve").finish_non_exhaustive()
    }
}

impl Retrieve {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        master_keys: KeyRing,
        token_keys: KeyRing,
        clock_skew: u64,
        metrics: &Metrics,
    ) -> Retrieve {
        Retrieve {
            store,
            master_keys,
            token_keys,
            clock_skew,
            rejected: metrics.tokens_rejected.clone(),
            decrypt_failures: metrics.decrypt_failures.clone(),
        }
    }

    /// Check a token and load the media it grants. Counts refusals by reason.
    pub async fn resolve(&self, token: &str, now: u64) -> Result<Resolved, ApiError> {
        let claims =
            tokens::verify(&self.token_keys, token, now, self.clock_skew).map_err(|r| {
                self.rejected.with_label_values(&[r.as_str()]).inc();
                ApiError::from(r)
            })?;
        let id = hex::encode(claims.media_id);
        let gone = || {
            self.rejected.with_label_values(&["media_gone"]).inc();
            ApiError::MediaNotFound
        };
        let head = match read_head_and_more(
            self.store.as_ref(),
            &self.master_keys,
            &id,
            DOWNLOAD_FIRST_READ,
        )
        .await
        {
            Ok(h) => h,
            Err(StoreError::NotFound | StoreError::UnknownKey) => return Err(gone()),
            Err(e) => return Err(e.into()),
        };
        let meta = &head.header.meta;
        // A token names one stored generation of one partner's media: after a delete (even if
        // the same content is uploaded again) earlier tokens stop working.
        if meta.partner != claims.partner || meta.generation != hex::encode(claims.generation) {
            return Err(gone());
        }
        if meta.expires <= now {
            return Err(ApiError::MediaExpired);
        }
        let len = plain_len(head.object_size.saturating_sub(head.header.header_len))
            .ok_or(StoreError::Corrupt("payload length"))?;
        Ok(Resolved {
            claims,
            id,
            head,
            len,
        })
    }

    /// Plaintext bytes `first..=last` of a resolved media (see [`body`]).
    pub fn body(
        &self,
        r: &Resolved,
        first: u64,
        last: u64,
    ) -> BoxStream<'static, Result<Bytes, ApiError>> {
        body(
            self.store.clone(),
            r,
            first,
            last,
            self.decrypt_failures.clone(),
        )
    }
}

/// Output is handed to the socket in pieces of about this size: fewer, larger writes are
/// markedly faster on loopback and real NICs than one write per 64 KiB chunk.
const COALESCE: usize = 256 * 1024;

/// Stream plaintext bytes `first..=last` of a resolved media.
///
/// A chunk that fails authentication ends the stream with an error (logged at ERROR with the
/// media id and counted in `failures`): the response is then cut off short of its
/// `Content-Length`, which no HTTP client takes for a complete body.
pub fn body(
    store: Arc<dyn ObjectStore>,
    r: &Resolved,
    first: u64,
    last: u64,
    failures: prometheus::IntCounter,
) -> BoxStream<'static, Result<Bytes, ApiError>> {
    let span = chunk_span(first, last, r.len);
    let header_len = r.head.header.header_len;
    let opener = Opener::new(
        r.head.header.cipher.clone(),
        span.first_chunk,
        chunk_count(r.len),
    );
    let want = last - first + 1;
    let start = header_len + span.sealed_start;
    let end = header_len + span.sealed_end;
    // The first read fetched the start of the payload too: serve what it holds, and read
    // only the rest from the store (nothing at all for a small media).
    let prefix_end = header_len + r.head.prefix.len() as u64;
    let from_prefix = (start < prefix_end).then(|| {
        let from = (start - header_len) as usize;
        let to = (end.min(prefix_end) - header_len) as usize;
        r.head.prefix.slice(from..to)
    });
    let rest_start = start.max(prefix_end);
    let e_tag = r.head.e_tag.clone();
    let rest: Option<BoxStream<'static, Result<Bytes, ApiError>>> = (rest_start < end).then(|| {
        let path = media_path(&r.id);
        stream::once(async move {
            let opts = GetOptions {
                range: Some(GetRange::Bounded(rest_start..end)),
                if_match: e_tag,
                ..Default::default()
            };
            let got = store
                .get_opts(&path, opts)
                .await
                .map_err(|e| ApiError::from(StoreError::from(e)))?;
            Ok::<_, ApiError>(
                crate::storage::body_stream(got).map_err(|e| ApiError::from(StoreError::from(e))),
            )
        })
        .try_flatten()
        .boxed()
    });
    let source: BoxStream<'static, Result<Bytes, ApiError>> = match (from_prefix, rest) {
        (Some(p), None) => stream::once(futures::future::ready(Ok(p))).boxed(),
        (Some(p), Some(rest)) => stream::once(futures::future::ready(Ok(p)))
            .chain(rest)
            .boxed(),
        (None, Some(rest)) => rest,
        (None, None) => stream::empty().boxed(),
    };
    let state = Decrypting {
        source,
        opener: Some(opener),
        skip: span.skip,
        remaining: want,
        rest: Bytes::new(),
        out: BytesMut::with_capacity(COALESCE + crate::crypto::stream::SEALED_CHUNK_SIZE),
        id: r.id.clone(),
        failures,
    };
    stream::try_unfold(state, Decrypting::step).boxed()
}

struct Decrypting {
    source: BoxStream<'static, Result<Bytes, ApiError>>,
    opener: Option<Opener>,
    skip: u64,
    remaining: u64,
    /// Store bytes not yet decrypted: stores may hand over a whole ranged GET as one piece,
    /// so it is fed to the opener at most `COALESCE` bytes per step, keeping memory per
    /// download bounded and the first byte early.
    rest: Bytes,
    out: BytesMut,
    /// For the log line and the metric when a chunk fails to open.
    id: String,
    failures: prometheus::IntCounter,
}

impl Decrypting {
    async fn step(mut self) -> Result<Option<(Bytes, Self)>, ApiError> {
        loop {
            if self.remaining == 0 {
                return Ok(None);
            }
            while self.rest.is_empty() && self.opener.is_some() {
                match self.source.next().await {
                    Some(piece) => self.rest = piece?,
                    None => break,
                }
            }
            if !self.rest.is_empty() {
                let take = self.rest.split_to(COALESCE.min(self.rest.len()));
                let Some(opener) = self.opener.as_mut() else {
                    return Ok(None);
                };
                if let Err(e) = opener.push(&take, &mut self.out) {
                    return Err(self.corrupt(e));
                }
            } else {
                match self.opener.take() {
                    Some(opener) => {
                        if let Err(e) = opener.finish(&mut self.out) {
                            return Err(self.corrupt(e));
                        }
                    }
                    None => return Ok(None),
                }
            }
            if self.skip > 0 {
                let n = (self.skip as usize).min(self.out.len());
                let _ = self.out.split_to(n);
                self.skip -= n as u64;
            }
            if self.out.len() as u64 > self.remaining {
                self.out.truncate(self.remaining as usize);
            }
            if self.out.len() >= COALESCE
                || (self.opener.is_none() || self.out.len() as u64 == self.remaining)
                    && !self.out.is_empty()
            {
                let chunk = self.out.split().freeze();
                self.remaining -= chunk.len() as u64;
                return Ok(Some((chunk, self)));
            }
            if self.opener.is_none() {
                return Err(self.corrupt(crate::crypto::CryptoError::Malformed));
            }
        }
    }

    fn corrupt(&self, e: crate::crypto::CryptoError) -> ApiError {
        // A stored chunk failing to open means storage corruption or tampering: loud, counted,
        // and never served as data (the error cuts the response off, or is the 500 itself).
        self.failures.inc();
        tracing::error!(media_id = %self.id, error = %e, "stored object failed to decrypt");
        ApiError::Internal
    }
}

#[cfg(test)]
mod tests;
