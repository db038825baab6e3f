//! WhatsApp's streaming sidecar: one truncated MAC per 64 KiB window of the encrypted stream,
//! so a player can verify what it fetched with HTTP `Range` before playing it.
//!
//! # Definition (confirmed, see `docs/FORMATS-E2EE.md`)
//!
//! Let `S = iv || blob = iv || ciphertext || mac10` (the derived IV, then the uploaded bytes,
//! the 10-byte whole-file MAC included), `L = |S|`, `K = 65536`.
//! For `n = 0 .. ceil(L / K)`:
//!
//! ```text
//! window[n]  = S[n*K .. min(L, (n+1)*K + 16)]          (end exclusive)
//! sidecar   ||= HMAC-SHA256(macKey, window[n])[..10]
//! ```
//!
//! In blob coordinates window `n` is `blob[n*K - 16 .. (n+1)*K]` (for `n = 0`: `iv ||
//! blob[..K]`): the 16 bytes before a 64 KiB chunk of ciphertext are exactly the CBC IV that
//! chunk needs, so one window is everything a player needs to verify and decrypt 64 KiB.
//!
//! This reproduces, byte for byte, the `VIDEO.sidecar` sample that circulates with the
//! WhatsApp-media test assignment (the same file in `savinmikhail/encrypting@0d945329:
//! samples/VIDEO.sidecar` and `Vimpil/whatsapp-media-crypto@d0e902ab:
//! samples/original/VIDEO.sidecar`), whose key, plaintext and ciphertext are published with it.

use hmac::Mac as _;

use super::{FormatError, Result, ct_eq};

/// Window stride of the WhatsApp sidecar.
pub const WINDOW: u64 = 64 * 1024;
/// Bytes each window reaches into the next one.
pub const OVERLAP: u64 = 16;
/// Bytes of MAC kept per window.
pub const MAC_LEN: usize = 10;

use super::{HmacSha256, hmac_sha256};

/// Number of windows for a blob of `blob_len` bytes.
pub fn window_count(blob_len: u64) -> u64 {
    (blob_len + 16).div_ceil(WINDOW)
}

/// Sidecar length in bytes for a blob of `blob_len` bytes (what this crate generates).
pub fn sidecar_len(blob_len: u64) -> u64 {
    window_count(blob_len) * MAC_LEN as u64
}

/// Whether the last window lies wholly inside the previous window's 16-byte overlap, so that
/// it authenticates nothing the previous one does not. For WhatsApp blobs that happens exactly
/// when `16 + |enc|` is a multiple of 64 KiB (plaintext length ≡ 65 504–65 519 mod 65 536):
/// the last window is then the 10-byte MAC alone. Some implementations do not emit it
/// (`docs/FORMATS-E2EE.md` §1.1); verification accepts a sidecar with or without it.
pub fn last_window_redundant(blob_len: u64) -> bool {
    let l = blob_len + 16;
    let n = window_count(blob_len);
    n >= 2 && l - (n - 1) * WINDOW <= OVERLAP
}

/// Sidecar lengths verification accepts for a blob of `blob_len` bytes: ours, and one entry
/// fewer when the last window is redundant (the only case where the readings differ, and then
/// by exactly one entry, so the length says unambiguously which reading a sidecar follows).
pub fn accepted_lens(blob_len: u64) -> (u64, Option<u64>) {
    let ours = sidecar_len(blob_len);
    (
        ours,
        last_window_redundant(blob_len).then(|| ours - MAC_LEN as u64),
    )
}

/// Streaming generator of window MACs over `S`, fed in arbitrary pieces.
///
/// At most two HMAC states are live at once (a window and the next one during the 16 bytes
/// they share), so memory is constant.
#[derive(Clone)]
pub struct SidecarBuilder {
    key: HmacSha256,
    pos: u64,
    next_start: u64,
    active: Vec<(u64, HmacSha256)>,
    out: Vec<u8>,
}

impl std::fmt::Debug for SidecarBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarBuilder")
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl SidecarBuilder {
    /// A builder keyed with the WhatsApp `macKey`. Feed it `iv` first, then the blob.
    pub fn new(mac_key: &[u8; 32]) -> Self {
        SidecarBuilder {
            key: hmac_sha256(mac_key),
            pos: 0,
            next_start: 0,
            active: Vec::with_capacity(2),
            out: Vec::new(),
        }
    }

    /// Feeds the next bytes of `S`.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.pos == self.next_start {
                self.active.push((self.next_start, self.key.clone()));
                self.next_start += WINDOW;
            }
            let mut boundary = self.next_start;
            if let Some((start, _)) = self.active.first() {
                boundary = boundary.min(start + WINDOW + OVERLAP);
            }
            let take = usize::try_from(boundary - self.pos)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let (now, rest) = data.split_at(take);
            for (_, h) in &mut self.active {
                h.update(now);
            }
            self.pos += take as u64;
            data = rest;
            if let Some((start, _)) = self.active.first()
                && self.pos == start + WINDOW + OVERLAP
            {
                let (_, h) = self.active.remove(0);
                self.out
                    .extend_from_slice(&h.finalize().into_bytes()[..MAC_LEN]);
            }
        }
    }

    /// Closes the open windows and returns the sidecar.
    pub fn finish(mut self) -> Vec<u8> {
        for (_, h) in self.active.drain(..) {
            self.out
                .extend_from_slice(&h.finalize().into_bytes()[..MAC_LEN]);
        }
        self.out
    }
}

/// Computes the sidecar of a whole blob held in memory.
pub fn generate(mac_key: &[u8; 32], iv: &[u8; 16], blob: &[u8]) -> Vec<u8> {
    let mut b = SidecarBuilder::new(mac_key);
    b.update(iv);
    b.update(blob);
    b.finish()
}

/// Checks the length of a sidecar against the blob length (either reading, see
/// [`accepted_lens`]).
pub fn check_len(sidecar: &[u8], blob_len: u64) -> Result<()> {
    let (expected, short) = accepted_lens(blob_len);
    let len = sidecar.len() as u64;
    if len != expected && Some(len) != short {
        return Err(FormatError::InvalidSidecar {
            expected,
            actual: sidecar.len() as u64,
        });
    }
    Ok(())
}

/// Blob byte range (end exclusive) that window `n` covers, and whether the derived IV
/// precedes it (window 0).
pub fn window_blob_range(n: u64, blob_len: u64) -> (std::ops::Range<u64>, bool) {
    let start_s = n * WINDOW;
    let end_s = ((n + 1) * WINDOW + OVERLAP).min(blob_len + 16);
    if n == 0 {
        (0..end_s.saturating_sub(16), true)
    } else {
        (start_s - 16..end_s - 16, false)
    }
}

/// Verifies `windows` (inclusive) against `sidecar`, given the blob bytes `fetched` that
/// start at blob offset `fetched_start` and cover those windows. Constant-time comparison;
/// any mismatch is [`FormatError::MacMismatch`].
pub fn verify_windows(
    mac_key: &[u8; 32],
    iv: &[u8; 16],
    sidecar: &[u8],
    blob_len: u64,
    windows: std::ops::RangeInclusive<u64>,
    fetched_start: u64,
    fetched: &[u8],
) -> Result<()> {
    check_len(sidecar, blob_len)?;
    let key = hmac_sha256(mac_key);
    let mut all_ok = true;
    for n in windows {
        let (range, with_iv) = window_blob_range(n, blob_len);
        let fetched_end = fetched_start + fetched.len() as u64;
        if range.start < fetched_start || range.end > fetched_end {
            return Err(FormatError::RangeFetchLength {
                expected: range.end.saturating_sub(fetched_start),
                actual: fetched.len() as u64,
            });
        }
        let lo = usize::try_from(range.start - fetched_start).unwrap_or(usize::MAX);
        let hi = usize::try_from(range.end - fetched_start).unwrap_or(usize::MAX);
        let mut h = key.clone();
        if with_iv {
            h.update(iv);
        }
        h.update(fetched.get(lo..hi).unwrap_or_default());
        let tag = h.finalize().into_bytes();
        let i = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .saturating_mul(MAC_LEN);
        let expected = sidecar.get(i..i + MAC_LEN).unwrap_or_default();
        all_ok &= ct_eq(&tag[..MAC_LEN], expected);
    }
    if all_ok {
        Ok(())
    } else {
        Err(FormatError::MacMismatch)
    }
}

/// Streaming verifier of a whole sidecar: feed `iv` then the blob.
#[derive(Clone, Debug)]
pub struct SidecarVerifier {
    builder: SidecarBuilder,
    expected: Vec<u8>,
}

impl SidecarVerifier {
    /// Verifies against `expected` (the sidecar from the descriptor).
    pub fn new(mac_key: &[u8; 32], expected: Vec<u8>) -> Self {
        SidecarVerifier {
            builder: SidecarBuilder::new(mac_key),
            expected,
        }
    }

    /// Feeds the next bytes of `iv || blob`.
    pub fn update(&mut self, data: &[u8]) {
        self.builder.update(data);
    }

    /// Checks length, then every window (constant-time). A sidecar without the redundant
    /// last window is compared with ours minus that window: every byte of the blob is still
    /// covered by a window it does hold.
    pub fn finish(self, blob_len: u64) -> Result<()> {
        check_len(&self.expected, blob_len)?;
        let got = self.builder.finish();
        let got = got.get(..self.expected.len()).unwrap_or_default();
        if ct_eq(got, &self.expected) {
            Ok(())
        } else {
            Err(FormatError::MacMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both readings of the window rule, written independently of the streaming code:
    /// windows start every K bytes while a window starts inside the stream (`n*K < L`, ours),
    /// or, for the other reading, only while a window holds a byte the previous one does not
    /// (`n*K + 16 < L`; window 0 always).
    fn reference_with(mac_key: &[u8; 32], s: &[u8], short: bool) -> Vec<u8> {
        let k = WINDOW as usize;
        let mut out = Vec::new();
        let mut n = 0;
        let more = |n: usize| {
            if short {
                n == 0 || n * k + 16 < s.len()
            } else {
                n * k < s.len()
            }
        };
        while more(n) {
            let end = s.len().min((n + 1) * k + 16);
            let mut h = hmac_sha256(mac_key);
            h.update(&s[n * k..end]);
            out.extend_from_slice(&h.finalize().into_bytes()[..10]);
            n += 1;
        }
        out
    }

    fn reference_short(mac_key: &[u8; 32], s: &[u8]) -> Vec<u8> {
        reference_with(mac_key, s, true)
    }

    fn reference(mac_key: &[u8; 32], s: &[u8]) -> Vec<u8> {
        reference_with(mac_key, s, false)
    }

    #[test]
    fn last_window_rule_at_the_boundary_sizes() {
        let key = [3u8; 32];
        let iv = [5u8; 16];
        let k = WINDOW as usize;
        // WhatsApp blob lengths are 16*m + 10; the readings differ only at 16 + enc = j*K.
        for enc in (16..5 * k).step_by(16) {
            let blob_len = enc as u64 + 10;
            let boundary = (16 + enc) % k == 0;
            assert_eq!(last_window_redundant(blob_len), boundary, "enc {enc}");
        }
        for j in 1..=3usize {
            for delta in [-32i64, -16, 0, 16] {
                let enc = (j * k) as i64 - 16 + delta;
                let blob_len = (enc + 10) as usize;
                let blob: Vec<u8> = (0..blob_len).map(|i| (i * 13 % 251) as u8).collect();
                let mut s = iv.to_vec();
                s.extend_from_slice(&blob);
                let ours = generate(&key, &iv, &blob);
                let short = reference_short(&key, &s);
                let boundary = delta == 0;
                assert_eq!(
                    ours.len() - short.len(),
                    if boundary { 10 } else { 0 },
                    "{j} {delta}"
                );
                assert_eq!(&ours[..short.len()], &short[..], "shared windows equal");
                for sc in [&ours, &short] {
                    check_len(sc, blob_len as u64).unwrap();
                    let mut v = SidecarVerifier::new(&key, sc.to_vec());
                    v.update(&iv);
                    v.update(&blob);
                    v.finish(blob_len as u64).unwrap();
                    // Tampering with any entry of either reading fails.
                    for at in (0..sc.len()).step_by(10) {
                        let mut bad = sc.to_vec();
                        bad[at] ^= 1;
                        let mut v = SidecarVerifier::new(&key, bad);
                        v.update(&iv);
                        v.update(&blob);
                        assert!(matches!(
                            v.finish(blob_len as u64),
                            Err(FormatError::MacMismatch)
                        ));
                    }
                }
                // One entry fewer is accepted only at the boundary; two fewer never.
                let cut = &ours[..ours.len() - 10];
                assert_eq!(check_len(cut, blob_len as u64).is_ok(), boundary);
                if ours.len() >= 20 {
                    assert!(check_len(&ours[..ours.len() - 20], blob_len as u64).is_err());
                }
                let mut longer = ours.clone();
                longer.extend_from_slice(&[0; 10]);
                assert!(check_len(&longer, blob_len as u64).is_err());
            }
        }
    }

    #[test]
    fn streaming_matches_reference_at_edges() {
        let key = [7u8; 32];
        let iv = [9u8; 16];
        let k = WINDOW as usize;
        for blob_len in [
            26usize,
            k - 16,
            k - 15,
            k - 1,
            k,
            k + 1,
            2 * k - 16,
            2 * k - 10,
            2 * k,
            3 * k + 5,
        ] {
            let blob: Vec<u8> = (0..blob_len).map(|i| (i * 31 % 251) as u8).collect();
            let mut s = iv.to_vec();
            s.extend_from_slice(&blob);
            let want = reference(&key, &s);
            assert_eq!(
                want.len() as u64,
                sidecar_len(blob_len as u64),
                "len {blob_len}"
            );
            assert_eq!(generate(&key, &iv, &blob), want, "whole {blob_len}");
            for piece in [1usize, 7, 16, 4096, 65551] {
                let mut b = SidecarBuilder::new(&key);
                b.update(&iv);
                for c in blob.chunks(piece) {
                    b.update(c);
                }
                assert_eq!(b.finish(), want, "len {blob_len} piece {piece}");
            }
            let last = window_count(blob_len as u64) - 1;
            verify_windows(&key, &iv, &want, blob_len as u64, 0..=last, 0, &blob).unwrap();
            let mut bad = want.clone();
            bad[0] ^= 1;
            assert!(matches!(
                verify_windows(&key, &iv, &bad, blob_len as u64, 0..=last, 0, &blob),
                Err(FormatError::MacMismatch)
            ));
        }
    }
}
