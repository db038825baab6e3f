//! libsignal's incremental MAC (`rust/protocol/src/incremental_mac.rs`), used by Signal for
//! streamable video: one running HMAC-SHA256 over the whole blob, whose value is emitted at
//! every `chunk_size` boundary and once more at the end. A player verifies each chunk as it
//! arrives instead of waiting for the whole-file MAC.
//!
//! The digests are the cumulative HMACs of the prefixes `data[..k*chunk]` for every whole
//! chunk, then of all of `data` (so a length that is a multiple of the chunk size repeats the
//! last digest, exactly as libsignal does).

use hmac::Mac as _;

use super::{FormatError, Result, ct_eq};

use super::{HmacSha256, hmac_sha256};

/// Length of one digest.
pub const DIGEST_LEN: usize = 32;
/// Smallest chunk size libsignal picks.
pub const MIN_CHUNK_SIZE: u64 = 64 * 1024;
/// Largest chunk size libsignal picks.
pub const MAX_CHUNK_SIZE: u64 = 2 * 1024 * 1024;
/// libsignal aims at 8 KiB of digests.
pub const TARGET_TOTAL_DIGEST_SIZE: u64 = 8 * 1024;

/// libsignal's `calculate_chunk_size::<Sha256>(data_size)` (`inferChunkSize` in Node).
pub fn chunk_size(data_size: u64) -> u32 {
    let target_chunks = TARGET_TOTAL_DIGEST_SIZE / DIGEST_LEN as u64;
    let size = if data_size < target_chunks * MIN_CHUNK_SIZE {
        MIN_CHUNK_SIZE
    } else if data_size < target_chunks * MAX_CHUNK_SIZE {
        data_size.div_ceil(target_chunks)
    } else {
        MAX_CHUNK_SIZE
    };
    // At most MAX_CHUNK_SIZE, which fits in u32.
    u32::try_from(size).unwrap_or(u32::MAX)
}

/// Streaming producer of incremental digests.
#[derive(Clone)]
pub struct IncrementalMac {
    mac: HmacSha256,
    chunk: u64,
    unused: u64,
    digests: Vec<u8>,
}

impl std::fmt::Debug for IncrementalMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncrementalMac")
            .field("chunk", &self.chunk)
            .finish_non_exhaustive()
    }
}

impl IncrementalMac {
    /// A producer keyed with Signal's HMAC key.
    pub fn new(mac_key: &[u8; 32], chunk_size: u32) -> Result<Self> {
        if chunk_size == 0 {
            return Err(FormatError::InvalidIncrementalMac(
                "chunk size must be positive",
            ));
        }
        Ok(IncrementalMac {
            mac: hmac_sha256(mac_key),
            chunk: u64::from(chunk_size),
            unused: u64::from(chunk_size),
            digests: Vec::new(),
        })
    }

    fn update_with(&mut self, mut data: &[u8], mut emit: impl FnMut([u8; DIGEST_LEN])) {
        while !data.is_empty() {
            let take = usize::try_from(self.unused)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let (now, rest) = data.split_at(take);
            self.mac.update(now);
            self.unused -= take as u64;
            data = rest;
            if self.unused == 0 {
                self.unused = self.chunk;
                emit(self.mac.clone().finalize().into_bytes().into());
            }
        }
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        let mut digests = std::mem::take(&mut self.digests);
        self.update_with(data, |d| digests.extend_from_slice(&d));
        self.digests = digests;
    }

    /// The concatenated digests, the final one included.
    pub fn finish(mut self) -> Vec<u8> {
        let last: [u8; DIGEST_LEN] = self.mac.clone().finalize().into_bytes().into();
        self.digests.extend_from_slice(&last);
        self.digests
    }
}

/// Streaming verifier of incremental digests (libsignal's `Validating`).
#[derive(Clone, Debug)]
pub struct ValidatingMac {
    inner: IncrementalMac,
    expected: Vec<u8>,
    next: usize,
    failed: bool,
}

impl ValidatingMac {
    /// A verifier for `expected` (concatenated 32-byte digests).
    pub fn new(mac_key: &[u8; 32], chunk_size: u32, expected: &[u8]) -> Result<Self> {
        if expected.is_empty() || !expected.len().is_multiple_of(DIGEST_LEN) {
            return Err(FormatError::InvalidIncrementalMac(
                "digests must be a non-empty sequence of 32-byte values",
            ));
        }
        Ok(ValidatingMac {
            inner: IncrementalMac::new(mac_key, chunk_size)?,
            expected: expected.to_vec(),
            next: 0,
            failed: false,
        })
    }

    /// Feeds the next bytes; returns how many more bytes are now verified (whole chunks).
    pub fn update(&mut self, data: &[u8]) -> Result<u64> {
        let mut chunks = 0u64;
        let (expected, next, failed) = (&self.expected, &mut self.next, &mut self.failed);
        self.inner.update_with(data, |d| {
            match expected.get(*next * DIGEST_LEN..(*next + 1) * DIGEST_LEN) {
                Some(want) if ct_eq(want, &d) => chunks += 1,
                _ => *failed = true,
            }
            *next += 1;
        });
        if self.failed {
            return Err(FormatError::MacMismatch);
        }
        Ok(chunks * self.inner.chunk)
    }

    /// Checks the final digest; returns the bytes verified by it (the partial last chunk).
    pub fn finish(self) -> Result<u64> {
        let pending = self.inner.chunk - self.inner.unused;
        let last: [u8; DIGEST_LEN] = self.inner.mac.clone().finalize().into_bytes().into();
        let rest = self
            .expected
            .get(self.next * DIGEST_LEN..)
            .unwrap_or_default();
        if self.failed || !ct_eq(rest, &last) {
            return Err(FormatError::MacMismatch);
        }
        Ok(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;

    #[test]
    fn chunk_sizes_match_libsignal_table() {
        // The table of libsignal's `chunk_sizes_sha256` test.
        for (size, want) in [
            (0, MIN_CHUNK_SIZE),
            (KIB, MIN_CHUNK_SIZE),
            (MIB, MIN_CHUNK_SIZE),
            (10 * MIB, MIN_CHUNK_SIZE),
            (20 * MIB, 80 * KIB),
            (100 * MIB, 400 * KIB),
            (200 * MIB, 800 * KIB),
            (256 * MIB, MIB),
            (512 * MIB, 2 * MIB),
            (1024 * MIB, 2 * MIB),
            (2048 * MIB, 2 * MIB),
        ] {
            assert_eq!(u64::from(chunk_size(size)), want, "{size}");
        }
    }

    fn hmac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
        let mut h = super::hmac_sha256(key);
        h.update(data);
        h.finalize().into_bytes().into()
    }

    #[test]
    fn digests_are_prefix_macs_and_validate() {
        let key = [0x11; 32];
        for len in [0usize, 1, 31, 32, 33, 64, 100] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut m = IncrementalMac::new(&key, 32).unwrap();
            for c in data.chunks(7) {
                m.update(c);
            }
            let got = m.finish();
            let mut want = Vec::new();
            for k in 1..=len / 32 {
                want.extend_from_slice(&hmac(&key, &data[..k * 32]));
            }
            want.extend_from_slice(&hmac(&key, &data));
            assert_eq!(got, want, "{len}");

            let mut v = ValidatingMac::new(&key, 32, &got).unwrap();
            let mut validated = 0;
            for c in data.chunks(5) {
                validated += v.update(c).unwrap();
            }
            validated += v.finish().unwrap();
            assert_eq!(validated, len as u64);

            let mut bad = got.clone();
            bad[0] ^= 1;
            let mut v = ValidatingMac::new(&key, 32, &bad).unwrap();
            let r = v.update(&data).and_then(|_| v.finish());
            assert!(matches!(r, Err(FormatError::MacMismatch)));
        }
        assert!(IncrementalMac::new(&key, 0).is_err());
        assert!(ValidatingMac::new(&key, 32, &[0; 31]).is_err());
    }
}
