//! Signal's attachment format (Signal-Desktop `ts/AttachmentCrypto.node.ts`, Signal-Android
//! `AttachmentCipherOutputStream`, Signal's mock server `src/crypto.js`).
//!
//! ```text
//! key      = aesKey (32 B) || macKey (32 B)                 (64 random bytes)
//! padded   = plaintext || 0x00 * (padSize(|plaintext|) - |plaintext|)
//! blob     = IV (16 random B) || AES-256-CBC-PKCS7(aesKey, IV, padded) || HMAC-SHA256(macKey, IV || ct)
//! digest   = SHA-256(blob)       size = |plaintext|       plaintextHash = SHA-256(plaintext)
//! padSize(n) = max(541, floor(1.05 ^ ceil(ln(n) / ln(1.05))))        (padSize(0) = 541)
//! ```
//!
//! Receivers check the MAC and the digest, decrypt, and truncate to `size` (the padding bytes
//! are not checked, as in Signal's clients). Unpadded blobs (as Signal's mock server makes
//! them) are therefore accepted too.

use std::fmt;
use std::io::Write;

use hmac::Mac as _;
use sha2::Digest as _;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::cbc_hmac::{CbcEncryptor, CbcHmacOpener};
use super::incremental_mac::{self, IncrementalMac, ValidatingMac};
use super::{
    Descriptor, FormatError, IO_CHUNK, IncrementalMacInfo, Opened, Result, ct_eq, finalize_sha256,
};

/// Length of an attachment key (AES key || HMAC key).
pub const KEY_LEN: usize = 64;
/// Length of the IV at the start of the blob.
pub const IV_LEN: usize = 16;
/// Length of the MAC at the end of the blob.
pub const MAC_LEN: usize = 32;
/// Smallest padded plaintext.
pub const MIN_PADDED_SIZE: u64 = 541;
/// Smallest possible blob: IV, one block, MAC.
pub const MIN_BLOB_LEN: u64 = (IV_LEN + 16 + MAC_LEN) as u64;

use super::HmacSha256;

/// Signal-Desktop's `logPadSize`: the padded plaintext size for `size` bytes.
///
/// Evaluated in IEEE-754 doubles exactly as the JavaScript original
/// (`Math.max(541, Math.floor(1.05 ** Math.ceil(Math.log(size) / Math.log(1.05))))`),
/// including `size == 0` (`log(0) = -Infinity`, giving 541). Cross-checked against the
/// JavaScript expression for every bucket boundary in `tests/interop_formats.rs`.
pub fn pad_size(size: u64) -> u64 {
    let exp = ((size as f64).ln() / 1.05f64.ln()).ceil();
    let bucket = 1.05f64.powf(exp).floor();
    // `as` saturates; buckets are far below u64::MAX for any real file.
    let bucket = if bucket.is_finite() && bucket > 0.0 {
        bucket as u64
    } else {
        0
    };
    bucket.max(MIN_PADDED_SIZE).max(size)
}

/// Blob length for a plaintext of `size` bytes, padded as Signal clients pad.
pub fn blob_length(size: u64) -> u64 {
    IV_LEN as u64 + (pad_size(size) / 16 + 1) * 16 + MAC_LEN as u64
}

/// Whether `len` can be the length of a Signal blob.
pub const fn blob_length_is_valid(len: u64) -> bool {
    len >= MIN_BLOB_LEN && (len - (IV_LEN + MAC_LEN) as u64).is_multiple_of(16)
}

/// A 64-byte Signal attachment key. Wiped on drop; `Debug` is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SignalKey([u8; KEY_LEN]);

impl SignalKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self> {
        Ok(SignalKey(*super::random_bytes::<KEY_LEN>()?))
    }

    /// Wraps existing key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        <[u8; KEY_LEN]>::try_from(bytes)
            .map(SignalKey)
            .map_err(|_| FormatError::KeyLength {
                what: "Signal attachment key",
                expected: KEY_LEN,
                actual: bytes.len(),
            })
    }

    /// Builds a key from its two halves.
    pub fn from_parts(aes_key: &[u8; 32], mac_key: &[u8; 32]) -> Self {
        let mut k = [0u8; KEY_LEN];
        k[..32].copy_from_slice(aes_key);
        k[32..].copy_from_slice(mac_key);
        SignalKey(k)
    }

    /// The key bytes (secret).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The AES-256 half.
    pub fn aes_key(&self) -> &[u8; 32] {
        self.0.first_chunk::<32>().unwrap_or(&[0; 32])
    }

    /// The HMAC-SHA256 half.
    pub fn mac_key(&self) -> &[u8; 32] {
        self.0.last_chunk::<32>().unwrap_or(&[0; 32])
    }
}

/// Constant-time comparison.
impl PartialEq for SignalKey {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl Eq for SignalKey {}

impl fmt::Debug for SignalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignalKey(<redacted>)")
    }
}

fn new_hmac(key: &SignalKey) -> HmacSha256 {
    super::hmac_sha256(key.mac_key())
}

// ---------------------------------------------------------------------------------------------
// Encryption.

/// What encryption produced, besides the blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// `digest`: SHA-256 of the blob.
    pub digest: [u8; 32],
    /// `size`: unpadded plaintext length.
    pub size: u64,
    /// Bytes of blob written.
    pub blob_length: u64,
    /// `plaintextHash`: SHA-256 of the unpadded plaintext.
    pub plaintext_sha256: [u8; 32],
    /// The IV used (also the first 16 bytes of the blob).
    pub iv: [u8; IV_LEN],
    /// Incremental MAC, when asked for.
    pub incremental_mac: Option<IncrementalMacInfo>,
}

/// Streaming encryptor: `update` with plaintext pieces, then `finish` (which appends the
/// zero padding, the PKCS#7 block and the MAC).
pub struct Encryptor {
    cbc: CbcEncryptor,
    sink: BlobSink,
    plain_hash: sha2::Sha256,
    size: u64,
    iv: [u8; IV_LEN],
    iv_written: bool,
    mac_key: [u8; 32],
}

/// Where the blob's bytes go: the MAC (all but the MAC itself), the digest, the incremental
/// MAC, and the byte count.
struct BlobSink {
    hmac: HmacSha256,
    digest: sha2::Sha256,
    incremental: Option<(IncrementalMac, u64, u32)>,
    blob_length: u64,
}

impl BlobSink {
    fn take<W: Write + ?Sized>(&mut self, bytes: &[u8], out: &mut W, in_mac: bool) -> Result<()> {
        if in_mac {
            self.hmac.update(bytes);
        }
        self.digest.update(bytes);
        if let Some((m, _, _)) = &mut self.incremental {
            m.update(bytes);
        }
        self.blob_length += bytes.len() as u64;
        out.write_all(bytes)?;
        Ok(())
    }
}

impl fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("signal::Encryptor")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Drop for Encryptor {
    fn drop(&mut self) {
        self.mac_key.zeroize();
    }
}

impl Encryptor {
    /// An encryptor with a fresh random IV.
    pub fn new(key: &SignalKey) -> Result<Self> {
        Ok(Self::with_iv(key, *super::random_bytes::<IV_LEN>()?))
    }

    /// An encryptor with a caller-chosen IV: for deterministic re-encryption and test vectors
    /// only. Never reuse a (key, IV) pair for different plaintexts.
    pub fn with_iv(key: &SignalKey, iv: [u8; IV_LEN]) -> Self {
        Encryptor {
            cbc: CbcEncryptor::new(key.aes_key(), &iv),
            sink: BlobSink {
                hmac: new_hmac(key),
                digest: sha2::Sha256::new(),
                incremental: None,
                blob_length: 0,
            },
            plain_hash: sha2::Sha256::new(),
            size: 0,
            iv,
            iv_written: false,
            mac_key: *key.mac_key(),
        }
    }

    /// Also compute the incremental MAC (Signal does this for `video/mp4`). `size` is the
    /// exact plaintext size; the chunk size is inferred from the resulting blob length, as
    /// Signal-Desktop does. `finish` fails if a different number of bytes was sealed.
    pub fn with_incremental_mac(mut self, size: u64) -> Self {
        let chunk = incremental_mac::chunk_size(blob_length(size));
        self.sink.incremental = IncrementalMac::new(&self.mac_key, chunk)
            .ok()
            .map(|m| (m, size, chunk));
        self
    }

    fn ensure_iv<W: Write + ?Sized>(&mut self, out: &mut W) -> Result<()> {
        if !self.iv_written {
            self.iv_written = true;
            self.sink.take(&self.iv, out, true)?;
        }
        Ok(())
    }

    /// Encrypts `plain`; the IV and whole blocks are written to `out`.
    pub fn update<W: Write + ?Sized>(&mut self, plain: &[u8], out: &mut W) -> Result<()> {
        self.ensure_iv(out)?;
        self.plain_hash.update(plain);
        self.size += plain.len() as u64;
        let sink = &mut self.sink;
        self.cbc.update(plain, &mut |ct| sink.take(ct, out, true))
    }

    /// Appends the zero padding (in pieces, so memory stays flat), the PKCS#7 block and the
    /// MAC; returns digest, sizes and the incremental MAC.
    pub fn finish<W: Write + ?Sized>(mut self, out: &mut W) -> Result<Sealed> {
        self.ensure_iv(out)?;
        let mut padding = pad_size(self.size) - self.size;
        let zeros = vec![0u8; IO_CHUNK];
        let sink = &mut self.sink;
        while padding > 0 {
            let n = usize::try_from(padding).unwrap_or(IO_CHUNK).min(IO_CHUNK);
            self.cbc
                .update(&zeros[..n], &mut |ct| sink.take(ct, out, true))?;
            padding -= n as u64;
        }
        self.cbc.finish(&mut |ct| sink.take(ct, out, true))?;
        let mac: [u8; MAC_LEN] = self.sink.hmac.clone().finalize().into_bytes().into();
        self.sink.take(&mac, out, false)?;
        let incremental_mac = match self.sink.incremental.take() {
            None => None,
            Some((m, declared, chunk_size)) => {
                if declared != self.size {
                    return Err(FormatError::Descriptor(format!(
                        "incremental MAC was planned for {declared} bytes but {} were sealed",
                        self.size
                    )));
                }
                Some(IncrementalMacInfo {
                    digests: m.finish(),
                    chunk_size,
                })
            }
        };
        Ok(Sealed {
            digest: finalize_sha256(self.sink.digest.clone()),
            size: self.size,
            blob_length: self.sink.blob_length,
            plaintext_sha256: finalize_sha256(self.plain_hash.clone()),
            iv: self.iv,
            incremental_mac,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Verification (pass 1).

/// What the recipient knows from the `AttachmentPointer`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// `digest`.
    pub digest: Option<[u8; 32]>,
    /// `size` (unpadded plaintext length); without it the padded plaintext is returned.
    pub size: Option<u64>,
    /// `plaintextHash`.
    pub plaintext_sha256: Option<[u8; 32]>,
    /// Blob length.
    pub blob_length: Option<u64>,
    /// `incrementalMac` and `chunkSize`.
    pub incremental_mac: Option<IncrementalMacInfo>,
}

impl Expect {
    /// Everything a descriptor declares.
    pub fn from_descriptor(d: &Descriptor) -> Self {
        Expect {
            digest: Some(d.file_enc_sha256),
            size: Some(d.file_length),
            plaintext_sha256: Some(d.file_sha256),
            blob_length: Some(d.blob_length),
            incremental_mac: d.incremental_mac.clone(),
        }
    }
}

/// Proof that pass 1 succeeded, required by [`Decryptor::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Length of the verified blob.
    pub blob_length: u64,
    /// SHA-256 of the verified blob.
    pub digest: [u8; 32],
    mac: [u8; MAC_LEN],
}

/// Keeps the last `N` bytes of a stream back, passing everything before them on.
#[derive(Clone, Debug)]
struct Holdback<const N: usize> {
    tail: [u8; N],
    len: usize,
}

impl<const N: usize> Holdback<N> {
    fn new() -> Self {
        Holdback {
            tail: [0; N],
            len: 0,
        }
    }

    fn feed(&mut self, data: &[u8], mut pass: impl FnMut(&[u8])) {
        if data.len() >= N {
            pass(&self.tail[..self.len]);
            let (body, last) = data.split_at(data.len() - N);
            pass(body);
            self.tail.copy_from_slice(last);
            self.len = N;
        } else {
            let total = self.len + data.len();
            if total > N {
                let excess = total - N;
                pass(&self.tail[..excess]);
                self.tail.copy_within(excess..self.len, 0);
                self.len -= excess;
            }
            self.tail[self.len..self.len + data.len()].copy_from_slice(data);
            self.len += data.len();
        }
    }
}

/// Pass 1: digest, MAC and incremental MAC over the whole blob. Releases no plaintext.
pub struct Verifier {
    hmac: HmacSha256,
    digest: sha2::Sha256,
    hold: Holdback<MAC_LEN>,
    len: u64,
    incremental: Option<ValidatingMac>,
    incremental_failed: bool,
    expect: Expect,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("signal::Verifier")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier checking the blob against `expect`.
    pub fn new(key: &SignalKey, expect: Expect) -> Result<Self> {
        let incremental = match &expect.incremental_mac {
            Some(m) => Some(ValidatingMac::new(key.mac_key(), m.chunk_size, &m.digests)?),
            None => None,
        };
        Ok(Verifier {
            hmac: new_hmac(key),
            digest: sha2::Sha256::new(),
            hold: Holdback::new(),
            len: 0,
            incremental,
            incremental_failed: false,
            expect,
        })
    }

    /// Feeds the next blob bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
        self.len += data.len() as u64;
        if let Some(v) = &mut self.incremental
            && v.update(data).is_err()
        {
            // Reported (as a MAC failure, after the digest check) by `finish`.
            self.incremental = None;
            self.incremental_failed = true;
        }
        let hmac = &mut self.hmac;
        self.hold.feed(data, |b| hmac.update(b));
    }

    /// Runs the checks in order: structure, length, digest, MAC, incremental MAC.
    pub fn finish(self) -> Result<Verified> {
        let len = self.len;
        if !blob_length_is_valid(len) {
            return Err(FormatError::MalformedBlob {
                format: "signal",
                len,
            });
        }
        if let Some(expected) = self.expect.blob_length
            && expected != len
        {
            return Err(FormatError::BlobLengthMismatch {
                expected,
                actual: len,
            });
        }
        let digest = finalize_sha256(self.digest);
        if let Some(expected) = self.expect.digest
            && !ct_eq(&digest, &expected)
        {
            return Err(FormatError::EncDigestMismatch);
        }
        let tag = self.hmac.finalize().into_bytes();
        let mac_ok = ct_eq(&tag, &self.hold.tail);
        let incremental_ok = match self.incremental {
            Some(v) => v.finish().is_ok(),
            None => !self.incremental_failed,
        };
        if !(mac_ok & incremental_ok) {
            return Err(FormatError::MacMismatch);
        }
        Ok(Verified {
            blob_length: len,
            digest,
            mac: self.hold.tail,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Decryption (pass 2).

/// Pass 2: decrypts a blob that passed [`Verifier`], truncating to `size`.
pub struct Decryptor {
    core: CbcHmacOpener,
    release: Release,
    verified: Verified,
    expect: Expect,
}

/// Plaintext going out: the padded offset reached, what was written (at most `size`).
struct Release {
    plain_hash: sha2::Sha256,
    decrypted: u64,
    written: u64,
    size: Option<u64>,
}

impl Release {
    /// Write the part of `plain` (at padded offset `self.decrypted`) that is within `size`.
    fn take<W: Write + ?Sized>(&mut self, plain: &[u8], out: &mut W) -> Result<()> {
        let keep = match self.size {
            Some(size) => usize::try_from(size.saturating_sub(self.decrypted))
                .unwrap_or(usize::MAX)
                .min(plain.len()),
            None => plain.len(),
        };
        self.plain_hash.update(&plain[..keep]);
        out.write_all(&plain[..keep])?;
        self.written += keep as u64;
        self.decrypted += plain.len() as u64;
        Ok(())
    }
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("signal::Decryptor")
            .field("written", &self.release.written)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    /// A decryptor for a blob that `verified` vouches for.
    pub fn new(key: &SignalKey, verified: &Verified, expect: Expect) -> Self {
        Decryptor {
            core: CbcHmacOpener::iv_in_blob(key.aes_key(), new_hmac(key), MAC_LEN),
            release: Release {
                plain_hash: sha2::Sha256::new(),
                decrypted: 0,
                written: 0,
                size: expect.size,
            },
            verified: verified.clone(),
            expect,
        }
    }

    /// Feeds the next blob bytes; writes the plaintext that is ready.
    pub fn update<W: Write + ?Sized>(&mut self, data: &[u8], out: &mut W) -> Result<()> {
        let release = &mut self.release;
        self.core
            .update(data, &mut |plain| release.take(plain, out))
    }

    /// Decrypts the last block; checks the MAC equals pass 1's, padding, size and
    /// plaintext digest.
    pub fn finish<W: Write + ?Sized>(mut self, out: &mut W) -> Result<Opened> {
        let plain = self
            .core
            .finish(self.verified.blob_length, &self.verified.mac)?;
        let padded_total = self.release.decrypted + plain.len() as u64;
        if let Some(size) = self.expect.size
            && padded_total < size
        {
            return Err(FormatError::CorruptPlaintext);
        }
        self.release.take(plain, out)?;
        let digest = finalize_sha256(self.release.plain_hash.clone());
        if let Some(expected) = self.expect.plaintext_sha256
            && !ct_eq(&digest, &expected)
        {
            return Err(FormatError::PlainDigestMismatch);
        }
        Ok(Opened {
            plaintext_length: self.release.written,
            plaintext_sha256: digest,
        })
    }
}

/// Encrypts a whole plaintext in memory with a caller-chosen IV: `(blob, sealed)`.
pub fn encrypt_with_iv(
    key: &SignalKey,
    iv: [u8; IV_LEN],
    plain: &[u8],
) -> Result<(Vec<u8>, Sealed)> {
    let mut enc = Encryptor::with_iv(key, iv);
    let mut blob = Vec::new();
    enc.update(plain, &mut blob)?;
    let sealed = enc.finish(&mut blob)?;
    Ok((blob, sealed))
}

/// Verifies then decrypts a blob held in memory.
pub fn decrypt(key: &SignalKey, blob: &[u8], expect: Expect) -> Result<Vec<u8>> {
    let mut v = Verifier::new(key, expect.clone())?;
    v.update(blob);
    let verified = v.finish()?;
    let mut d = Decryptor::new(key, &verified, expect);
    let mut out = Vec::new();
    d.update(blob, &mut out)?;
    d.finish(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_sizes() {
        assert_eq!(pad_size(0), 541);
        assert_eq!(pad_size(1), 541);
        assert_eq!(pad_size(541), 541);
        assert_eq!(pad_size(542), 568);
        // Every bucket holds its size and is at most ~5 % larger.
        for s in (1..2_000_000u64).step_by(997) {
            let p = pad_size(s);
            assert!(
                p >= s && (p <= 541 || p as f64 <= s as f64 * 1.05 + 1.0),
                "{s} -> {p}"
            );
        }
        assert_eq!(blob_length(0), 16 + 544 + 32);
    }

    #[test]
    fn roundtrip_piecewise_and_truncation() {
        let key = SignalKey::from_bytes(&[9; 64]).unwrap();
        for len in [0usize, 1, 15, 16, 17, 540, 541, 542, 65536, 100_000] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let (blob, sealed) = encrypt_with_iv(&key, [4; 16], &plain).unwrap();
            assert_eq!(blob.len() as u64, blob_length(len as u64));
            assert_eq!(&blob[..16], &[4; 16]);
            let expect = Expect {
                digest: Some(sealed.digest),
                size: Some(len as u64),
                plaintext_sha256: Some(sealed.plaintext_sha256),
                blob_length: Some(blob.len() as u64),
                incremental_mac: None,
            };
            assert_eq!(decrypt(&key, &blob, expect.clone()).unwrap(), plain);
            for piece in [1usize, 15, 16, 47, 48, 49, 4096] {
                let mut v = Verifier::new(&key, expect.clone()).unwrap();
                blob.chunks(piece).for_each(|c| v.update(c));
                let verified = v.finish().unwrap();
                let mut d = Decryptor::new(&key, &verified, expect.clone());
                let mut out = Vec::new();
                for c in blob.chunks(piece) {
                    d.update(c, &mut out).unwrap();
                }
                d.finish(&mut out).unwrap();
                assert_eq!(out, plain, "{len} {piece}");
            }
        }
    }

    #[test]
    fn incremental_mac_roundtrip() {
        let key = SignalKey::generate().unwrap();
        let plain = vec![0x5a; 300_000];
        let mut enc = Encryptor::new(&key)
            .unwrap()
            .with_incremental_mac(plain.len() as u64);
        let mut blob = Vec::new();
        enc.update(&plain, &mut blob).unwrap();
        let sealed = enc.finish(&mut blob).unwrap();
        let im = sealed.incremental_mac.clone().unwrap();
        assert_eq!(im.chunk_size, 65536);
        assert_eq!(im.digests.len(), 32 * (blob.len() / 65536 + 1));
        let mut expect = Expect {
            digest: Some(sealed.digest),
            size: Some(plain.len() as u64),
            incremental_mac: Some(im),
            ..Expect::default()
        };
        assert_eq!(decrypt(&key, &blob, expect.clone()).unwrap(), plain);
        if let Some(m) = &mut expect.incremental_mac {
            m.digests[40] ^= 1;
        }
        assert!(matches!(
            decrypt(&key, &blob, expect),
            Err(FormatError::MacMismatch)
        ));
        let mut enc = Encryptor::new(&key).unwrap().with_incremental_mac(5);
        let mut blob = Vec::new();
        enc.update(&[1, 2, 3], &mut blob).unwrap();
        assert!(enc.finish(&mut blob).is_err());
    }
}
