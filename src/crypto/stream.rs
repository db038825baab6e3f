//! At-rest STREAM: AES-256-GCM over 64 KiB chunks with age-style `counter || last` nonces.
//!
//! Each chunk is sealed under the per-object payload key with nonce = 11-byte big-endian chunk
//! counter followed by a 1-byte flag that is 1 only on the final chunk. Truncating, reordering
//! or swapping chunks therefore fails authentication, and any chunk can be opened on its own,
//! which is what makes ranged reads cost only what they return.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use bytes::{BufMut, BytesMut};

use super::CryptoError;

/// Plaintext bytes per chunk. Part of the stored format: DO NOT CHANGE.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// AES-GCM tag appended to each chunk. Part of the stored format: DO NOT CHANGE.
pub const TAG_SIZE: usize = 16;
/// A full chunk as stored.
pub const SEALED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_SIZE;

const C: u64 = CHUNK_SIZE as u64;
const SC: u64 = SEALED_CHUNK_SIZE as u64;

/// The STREAM nonce: 11-byte big-endian counter, then the last-chunk flag.
fn nonce(index: u64, last: bool) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::from(n)
}

/// Number of chunks a plaintext of `plain_len` bytes is stored as (an empty plaintext is one
/// empty final chunk, so that even it is authenticated).
pub fn chunk_count(plain_len: u64) -> u64 {
    plain_len.div_ceil(C).max(1)
}

/// Stored payload length for a plaintext length.
pub fn sealed_len(plain_len: u64) -> u64 {
    plain_len + chunk_count(plain_len) * TAG_SIZE as u64
}

/// Plaintext length for a stored payload length, or `None` when no writer of this format
/// could have produced that length (only the lone chunk of an empty plaintext may be empty).
pub fn plain_len(sealed: u64) -> Option<u64> {
    let n = sealed.div_ceil(SC);
    if n == 0 {
        return None;
    }
    let last = sealed - (n - 1) * SC;
    let min_last = if n == 1 {
        TAG_SIZE as u64
    } else {
        TAG_SIZE as u64 + 1
    };
    (last >= min_last).then(|| sealed - n * TAG_SIZE as u64)
}

/// The chunks covering plaintext bytes `first..=last` and where they sit in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpan {
    pub first_chunk: u64,
    pub chunks: u64,
    /// Byte range in the sealed payload (relative to the payload start).
    pub sealed_start: u64,
    pub sealed_end: u64,
    /// Plaintext bytes to drop from the first opened chunk.
    pub skip: u64,
}

/// Map an inclusive plaintext range to whole chunks. Caller guarantees `first <= last < plain_len`.
pub fn chunk_span(first: u64, last: u64, plain_len: u64) -> ChunkSpan {
    let first_chunk = first / C;
    let last_chunk = last / C;
    ChunkSpan {
        first_chunk,
        chunks: last_chunk - first_chunk + 1,
        sealed_start: first_chunk * SC,
        sealed_end: ((last_chunk + 1) * SC).min(sealed_len(plain_len)),
        skip: first - first_chunk * C,
    }
}

/// AES-256-GCM keyed with one object's payload key.
#[derive(Clone)]
pub struct ChunkCipher(Aes256Gcm);

impl std::fmt::Debug for ChunkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkCipher(<redacted>)")
    }
}

impl ChunkCipher {
    pub fn new(key: &[u8; 32]) -> Self {
        ChunkCipher(Aes256Gcm::new(&(*key).into()))
    }

    /// Seal `buf` in place as chunk `index` and append its tag.
    fn seal_into(
        &self,
        index: u64,
        last: bool,
        out: &mut BytesMut,
        start: usize,
    ) -> Result<(), CryptoError> {
        // GCM refuses only inputs over 64 GiB and chunks are 64 KiB, so this does not fail;
        // if it ever did, the chunk would lack its tag, so the error goes to the caller.
        let tag = self
            .0
            .encrypt_inout_detached(&nonce(index, last), b"", (&mut out[start..]).into())
            .map_err(|_| CryptoError::Malformed)?;
        out.put_slice(&tag);
        Ok(())
    }

    /// Open chunk `index` in place; on success the plaintext is `buf[..buf.len() - TAG_SIZE]`.
    pub fn open_in_place(
        &self,
        index: u64,
        last: bool,
        buf: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let Some(body_len) = buf.len().checked_sub(TAG_SIZE) else {
            return Err(CryptoError::Malformed);
        };
        let (body, tag) = buf.split_at_mut(body_len);
        let tag = Tag::try_from(&*tag).map_err(|_| CryptoError::Malformed)?;
        self.0
            .decrypt_inout_detached(&nonce(index, last), b"", body.into(), &tag)
            .map_err(|_| CryptoError::Auth)?;
        Ok(body_len)
    }
}

/// Streaming encryptor. It always holds back the newest chunk until more data arrives, so
/// `finish` can seal the true final chunk with the last flag. A `Sealer` that is dropped
/// without `finish` has produced an unauthenticatable stream by design: the upload guard
/// aborts such uploads instead of storing them.
#[derive(Debug)]
pub struct Sealer {
    cipher: ChunkCipher,
    index: u64,
    pending: BytesMut,
}

impl Sealer {
    pub fn new(cipher: ChunkCipher) -> Self {
        Sealer {
            cipher,
            index: 0,
            pending: BytesMut::with_capacity(CHUNK_SIZE),
        }
    }

    /// Continue a stream whose chunks before `index` were sealed elsewhere (a resumable upload
    /// picked up by another request or replica). `pending` is the plaintext that sealer held
    /// back; it is at most one chunk.
    pub fn resume(cipher: ChunkCipher, index: u64, pending: &[u8]) -> Option<Self> {
        if pending.len() > CHUNK_SIZE {
            return None;
        }
        let mut buf = BytesMut::with_capacity(CHUNK_SIZE);
        buf.put_slice(pending);
        Some(Sealer {
            cipher,
            index,
            pending: buf,
        })
    }

    /// The next chunk index and the held-back plaintext, i.e. what [`Sealer::resume`] needs.
    pub fn position(&self) -> (u64, &[u8]) {
        (self.index, &self.pending)
    }

    /// Add plaintext; every chunk that is certainly not the last is sealed onto `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut BytesMut) -> Result<(), CryptoError> {
        while !data.is_empty() {
            if self.pending.len() == CHUNK_SIZE {
                self.flush_chunk(false, out)?;
            }
            let take = (CHUNK_SIZE - self.pending.len()).min(data.len());
            self.pending.put_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    fn flush_chunk(&mut self, last: bool, out: &mut BytesMut) -> Result<(), CryptoError> {
        let start = out.len();
        out.reserve(self.pending.len() + TAG_SIZE);
        out.put_slice(&self.pending);
        self.cipher.seal_into(self.index, last, out, start)?;
        self.pending.clear();
        self.index += 1;
        Ok(())
    }

    /// Seal the final chunk (possibly empty) with the last flag.
    pub fn finish(mut self, out: &mut BytesMut) -> Result<(), CryptoError> {
        self.flush_chunk(true, out)
    }
}

/// Streaming decryptor for a run of consecutive chunks of one object.
#[derive(Debug)]
pub struct Opener {
    cipher: ChunkCipher,
    index: u64,
    last_index: u64,
    buf: BytesMut,
}

impl Opener {
    /// `first_chunk` is the index of the first chunk that will be pushed, `total_chunks`
    /// the object's chunk count (which tells which chunk carries the last flag).
    pub fn new(cipher: ChunkCipher, first_chunk: u64, total_chunks: u64) -> Self {
        Opener {
            cipher,
            index: first_chunk,
            last_index: total_chunks.saturating_sub(1),
            buf: BytesMut::with_capacity(SEALED_CHUNK_SIZE),
        }
    }

    /// Add sealed bytes; every complete chunk is opened and its plaintext appended to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut BytesMut) -> Result<(), CryptoError> {
        while !data.is_empty() {
            let take = (SEALED_CHUNK_SIZE - self.buf.len()).min(data.len());
            self.buf.put_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == SEALED_CHUNK_SIZE {
                self.open_buffered(out)?;
            }
        }
        Ok(())
    }

    fn open_buffered(&mut self, out: &mut BytesMut) -> Result<(), CryptoError> {
        if self.index > self.last_index {
            return Err(CryptoError::Malformed);
        }
        let last = self.index == self.last_index;
        let n = self.cipher.open_in_place(self.index, last, &mut self.buf)?;
        out.put_slice(&self.buf[..n]);
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// Open a trailing short chunk, if any. Fails if bytes are left that cannot be a chunk.
    pub fn finish(mut self, out: &mut BytesMut) -> Result<(), CryptoError> {
        if !self.buf.is_empty() {
            self.open_buffered(out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal_all(plain: &[u8], cipher: &ChunkCipher, step: usize) -> Vec<u8> {
        let mut s = Sealer::new(cipher.clone());
        let mut out = BytesMut::new();
        for piece in plain.chunks(step.max(1)) {
            s.push(piece, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        out.to_vec()
    }

    fn open_all(sealed: &[u8], cipher: &ChunkCipher) -> Result<Vec<u8>, CryptoError> {
        let plain = plain_len(sealed.len() as u64).ok_or(CryptoError::Malformed)?;
        let mut o = Opener::new(cipher.clone(), 0, chunk_count(plain));
        let mut out = BytesMut::new();
        o.push(sealed, &mut out)?;
        o.finish(&mut out)?;
        Ok(out.to_vec())
    }

    #[test]
    fn roundtrip_boundaries() {
        let cipher = ChunkCipher::new(&[3; 32]);
        for len in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE,
            3 * CHUNK_SIZE + 7,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for step in [1000, CHUNK_SIZE, 7 * CHUNK_SIZE] {
                let sealed = seal_all(&plain, &cipher, step);
                assert_eq!(sealed.len() as u64, sealed_len(len as u64), "len {len}");
                assert_eq!(plain_len(sealed.len() as u64), Some(len as u64));
                assert_eq!(open_all(&sealed, &cipher).unwrap(), plain, "len {len}");
            }
        }
    }

    /// A stream sealed in two sittings (a resumable upload picked up elsewhere) is byte for
    /// byte the stream sealed in one.
    #[test]
    fn resumed_sealer_continues_the_same_stream() {
        let cipher = ChunkCipher::new(&[4; 32]);
        let plain: Vec<u8> = (0..3 * CHUNK_SIZE + 99).map(|i| (i % 241) as u8).collect();
        let whole = seal_all(&plain, &cipher, 5000);
        for cut in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            2 * CHUNK_SIZE,
            plain.len(),
        ] {
            let mut first = Sealer::new(cipher.clone());
            let mut out = BytesMut::new();
            first.push(&plain[..cut], &mut out).unwrap();
            let (index, pending) = first.position();
            let mut second = Sealer::resume(cipher.clone(), index, pending).unwrap();
            second.push(&plain[cut..], &mut out).unwrap();
            second.finish(&mut out).unwrap();
            assert_eq!(out.to_vec(), whole, "cut at {cut}");
        }
        assert!(Sealer::resume(cipher, 0, &[0; CHUNK_SIZE + 1]).is_none());
    }

    #[test]
    fn truncation_reorder_and_tamper_fail() {
        let cipher = ChunkCipher::new(&[5; 32]);
        let plain = vec![9u8; 3 * CHUNK_SIZE + 10];
        let sealed = seal_all(&plain, &cipher, CHUNK_SIZE);
        // Drop the final chunk: the new last chunk was not sealed as last.
        let cut = &sealed[..3 * SEALED_CHUNK_SIZE];
        assert!(open_all(cut, &cipher).is_err());
        // Swap two chunks.
        let mut swapped = sealed.clone();
        swapped[..SEALED_CHUNK_SIZE]
            .copy_from_slice(&sealed[SEALED_CHUNK_SIZE..2 * SEALED_CHUNK_SIZE]);
        swapped[SEALED_CHUNK_SIZE..2 * SEALED_CHUNK_SIZE]
            .copy_from_slice(&sealed[..SEALED_CHUNK_SIZE]);
        assert_eq!(open_all(&swapped, &cipher), Err(CryptoError::Auth));
        // Flip one bit anywhere.
        for pos in [0, 100, SEALED_CHUNK_SIZE - 1, sealed.len() - 1] {
            let mut t = sealed.clone();
            t[pos] ^= 1;
            assert_eq!(open_all(&t, &cipher), Err(CryptoError::Auth), "pos {pos}");
        }
        // Wrong key.
        assert_eq!(
            open_all(&sealed, &ChunkCipher::new(&[6; 32])),
            Err(CryptoError::Auth)
        );
    }

    #[test]
    fn lengths_that_no_writer_produces() {
        assert_eq!(plain_len(0), None);
        assert_eq!(plain_len(15), None);
        assert_eq!(plain_len(16), Some(0));
        assert_eq!(plain_len(SC + 16), None);
        assert_eq!(plain_len(SC + 17), Some(C + 1));
        assert_eq!(plain_len(SC), Some(C));
    }

    #[test]
    fn spans() {
        let len = 3 * C + 10;
        let s = chunk_span(0, len - 1, len);
        assert_eq!(
            (
                s.first_chunk,
                s.chunks,
                s.sealed_start,
                s.sealed_end,
                s.skip
            ),
            (0, 4, 0, sealed_len(len), 0)
        );
        let s = chunk_span(C + 5, C + 5, len);
        assert_eq!(
            (
                s.first_chunk,
                s.chunks,
                s.sealed_start,
                s.sealed_end,
                s.skip
            ),
            (1, 1, SC, 2 * SC, 5)
        );
        let s = chunk_span(len - 1, len - 1, len);
        assert_eq!(
            (s.first_chunk, s.sealed_start, s.sealed_end, s.skip),
            (3, 3 * SC, sealed_len(len), 9)
        );
    }

    #[test]
    fn ranged_open_from_the_middle() {
        let cipher = ChunkCipher::new(&[8; 32]);
        let plain: Vec<u8> = (0..5 * CHUNK_SIZE + 123)
            .map(|i| (i * 7 % 256) as u8)
            .collect();
        let sealed = seal_all(&plain, &cipher, CHUNK_SIZE);
        let total = chunk_count(plain.len() as u64);
        let span = chunk_span(2 * C + 3, 4 * C + 1, plain.len() as u64);
        let mut o = Opener::new(cipher.clone(), span.first_chunk, total);
        let mut out = BytesMut::new();
        o.push(
            &sealed[span.sealed_start as usize..span.sealed_end as usize],
            &mut out,
        )
        .unwrap();
        o.finish(&mut out).unwrap();
        assert_eq!(
            &out[span.skip as usize..][..(2 * CHUNK_SIZE - 1)],
            &plain[2 * CHUNK_SIZE + 3..=4 * CHUNK_SIZE + 1]
        );
    }
}
