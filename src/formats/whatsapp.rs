//! WhatsApp's E2EE media format, as implemented by WhatsApp clients, whatsmeow and Baileys.
//!
//! ```text
//! expanded  = HKDF-SHA256(ikm = mediaKey (32 B), salt = none, info = kind string, L = 112)
//! iv        = expanded[0..16]    cipherKey = expanded[16..48]
//! macKey    = expanded[48..80]   refKey    = expanded[80..112] (unused)
//! enc       = AES-256-CBC-PKCS7(cipherKey, iv, plaintext)
//! mac       = HMAC-SHA256(macKey, iv || enc)[..10]
//! blob      = enc || mac                       (the IV is not in the blob)
//! fileSha256 = SHA-256(plaintext)   fileEncSha256 = SHA-256(blob)   fileLength = |plaintext|
//! ```
//!
//! Streaming sidecar: see [`super::sidecar`]. Random access: [`RangePlan`] and
//! [`decrypt_range`].

use std::fmt;
use std::io::Write;
use std::ops::{Range, RangeInclusive};

use hmac::Mac as _;
use sha2::Digest as _;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::cbc_hmac::{CbcEncryptor, CbcHmacOpener, cbc_decrypt_in_place, cbc_decryptor, write_to};
use super::sidecar::{self, SidecarBuilder, SidecarVerifier};
use super::{
    Descriptor, FormatError, KeyMaterial, MediaKind, Opened, Result, ct_eq, finalize_sha256,
};

/// Length of a media key.
pub const MEDIA_KEY_LEN: usize = 32;
/// Length of the truncated MAC at the end of the blob.
pub const MAC_LEN: usize = 10;
/// Smallest possible blob: one CBC block and the MAC.
pub const MIN_BLOB_LEN: u64 = 16 + MAC_LEN as u64;

use super::HmacSha256;

/// The HKDF `info` string WhatsApp uses for a media kind.
pub const fn hkdf_info(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image | MediaKind::Sticker => "WhatsApp Image Keys",
        MediaKind::Video => "WhatsApp Video Keys",
        MediaKind::Audio | MediaKind::Voice => "WhatsApp Audio Keys",
        MediaKind::Document => "WhatsApp Document Keys",
    }
}

/// Blob length for a plaintext of `file_length` bytes.
pub const fn blob_length(file_length: u64) -> u64 {
    (file_length / 16 + 1) * 16 + MAC_LEN as u64
}

/// Whether `len` can be the length of a WhatsApp blob.
pub const fn blob_length_is_valid(len: u64) -> bool {
    len >= MIN_BLOB_LEN && (len - MAC_LEN as u64).is_multiple_of(16)
}

/// A 32-byte WhatsApp media key (`mediaKey`). Wiped on drop; `Debug` is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MediaKey([u8; MEDIA_KEY_LEN]);

impl MediaKey {
    /// A fresh random key from the operating system.
    pub fn generate() -> Result<Self> {
        Ok(MediaKey(*super::random_bytes::<MEDIA_KEY_LEN>()?))
    }

    /// Wraps existing key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        <[u8; MEDIA_KEY_LEN]>::try_from(bytes)
            .map(MediaKey)
            .map_err(|_| FormatError::KeyLength {
                what: "WhatsApp media key",
                expected: MEDIA_KEY_LEN,
                actual: bytes.len(),
            })
    }

    /// The key bytes (secret).
    pub fn as_bytes(&self) -> &[u8; MEDIA_KEY_LEN] {
        &self.0
    }

    /// HKDF-expands the key for `kind`.
    pub fn expand(&self, kind: MediaKind) -> ExpandedKeys {
        let okm: zeroize::Zeroizing<[u8; 112]> =
            crate::crypto::kdf::hkdf_sha256(None, &self.0, &[hkdf_info(kind).as_bytes()]);
        let mut k = ExpandedKeys {
            iv: [0; 16],
            cipher_key: [0; 32],
            mac_key: [0; 32],
            ref_key: [0; 32],
        };
        k.iv.copy_from_slice(&okm[0..16]);
        k.cipher_key.copy_from_slice(&okm[16..48]);
        k.mac_key.copy_from_slice(&okm[48..80]);
        k.ref_key.copy_from_slice(&okm[80..112]);
        k
    }
}

/// Constant-time comparison.
impl PartialEq for MediaKey {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl Eq for MediaKey {}

impl fmt::Debug for MediaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MediaKey(<redacted>)")
    }
}

/// The 112 expanded bytes, split. Wiped on drop; `Debug` is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ExpandedKeys {
    /// CBC IV (also the start of the sidecar's stream).
    pub iv: [u8; 16],
    /// AES-256 key.
    pub cipher_key: [u8; 32],
    /// HMAC-SHA256 key.
    pub mac_key: [u8; 32],
    /// Unused by media encryption.
    pub ref_key: [u8; 32],
}

impl fmt::Debug for ExpandedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExpandedKeys(<redacted>)")
    }
}

fn new_hmac(keys: &ExpandedKeys) -> HmacSha256 {
    let mut h = super::hmac_sha256(&keys.mac_key);
    h.update(&keys.iv);
    h
}

// ---------------------------------------------------------------------------------------------
// Encryption.

/// What encryption produced, besides the blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// `fileSha256`.
    pub file_sha256: [u8; 32],
    /// `fileEncSha256`.
    pub file_enc_sha256: [u8; 32],
    /// `fileLength`.
    pub file_length: u64,
    /// Bytes of blob written.
    pub blob_length: u64,
    /// The 10-byte MAC (the last bytes of the blob).
    pub mac: [u8; MAC_LEN],
    /// The streaming sidecar, when asked for.
    pub sidecar: Option<Vec<u8>>,
}

/// Streaming encryptor: `update` with plaintext pieces, then `finish`.
pub struct Encryptor {
    cbc: CbcEncryptor,
    sink: BlobSink,
    plain_hash: sha2::Sha256,
    file_length: u64,
    iv: [u8; 16],
    mac_key: [u8; 32],
}

/// Where ciphertext goes: the MAC, the blob digest, the sidecar, and the byte count.
struct BlobSink {
    hmac: HmacSha256,
    enc_hash: sha2::Sha256,
    sidecar: Option<SidecarBuilder>,
    blob_length: u64,
}

impl BlobSink {
    fn take<W: Write + ?Sized>(&mut self, ct: &[u8], out: &mut W) -> Result<()> {
        self.hmac.update(ct);
        self.enc_hash.update(ct);
        if let Some(s) = &mut self.sidecar {
            s.update(ct);
        }
        self.blob_length += ct.len() as u64;
        out.write_all(ct)?;
        Ok(())
    }
}

impl fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("whatsapp::Encryptor")
            .field("file_length", &self.file_length)
            .finish_non_exhaustive()
    }
}

impl Drop for Encryptor {
    fn drop(&mut self) {
        self.iv.zeroize();
        self.mac_key.zeroize();
    }
}

impl Encryptor {
    /// An encryptor for `kind` under `key`.
    pub fn new(key: &MediaKey, kind: MediaKind) -> Self {
        Self::with_keys(&key.expand(kind))
    }

    /// An encryptor from already expanded keys.
    pub fn with_keys(keys: &ExpandedKeys) -> Self {
        Encryptor {
            cbc: CbcEncryptor::new(&keys.cipher_key, &keys.iv),
            sink: BlobSink {
                hmac: new_hmac(keys),
                enc_hash: sha2::Sha256::new(),
                sidecar: None,
                blob_length: 0,
            },
            plain_hash: sha2::Sha256::new(),
            file_length: 0,
            iv: keys.iv,
            mac_key: keys.mac_key,
        }
    }

    /// Also compute the streaming sidecar.
    pub fn with_sidecar(mut self) -> Self {
        let mut b = SidecarBuilder::new(&self.mac_key);
        b.update(&self.iv);
        self.sink.sidecar = Some(b);
        self
    }

    /// Encrypts `plain`; whole blocks are written to `out`, a partial block is kept.
    pub fn update<W: Write + ?Sized>(&mut self, plain: &[u8], out: &mut W) -> Result<()> {
        self.plain_hash.update(plain);
        self.file_length += plain.len() as u64;
        let sink = &mut self.sink;
        self.cbc.update(plain, &mut |ct| sink.take(ct, out))
    }

    /// Pads, writes the last block and the MAC; returns digests, lengths and sidecar.
    pub fn finish<W: Write + ?Sized>(mut self, out: &mut W) -> Result<Sealed> {
        let sink = &mut self.sink;
        self.cbc.finish(&mut |ct| sink.take(ct, out))?;
        let tag = self.sink.hmac.clone().finalize().into_bytes();
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&tag[..MAC_LEN]);
        self.sink.enc_hash.update(mac);
        out.write_all(&mac)?;
        self.sink.blob_length += MAC_LEN as u64;
        let sidecar = self.sink.sidecar.take().map(|mut s| {
            s.update(&mac);
            s.finish()
        });
        Ok(Sealed {
            file_sha256: finalize_sha256(self.plain_hash.clone()),
            file_enc_sha256: finalize_sha256(self.sink.enc_hash.clone()),
            file_length: self.file_length,
            blob_length: self.sink.blob_length,
            mac,
            sidecar,
        })
    }
}

/// Encrypts a whole plaintext in memory: `(blob, sealed)`.
pub fn encrypt(keys: &ExpandedKeys, plain: &[u8], with_sidecar: bool) -> Result<(Vec<u8>, Sealed)> {
    let mut enc = Encryptor::with_keys(keys);
    if with_sidecar {
        enc = enc.with_sidecar();
    }
    let mut blob =
        Vec::with_capacity(usize::try_from(blob_length(plain.len() as u64)).unwrap_or(0));
    enc.update(plain, &mut blob)?;
    let sealed = enc.finish(&mut blob)?;
    Ok((blob, sealed))
}

// ---------------------------------------------------------------------------------------------
// Verification (pass 1).

/// What the recipient knows about the blob from the message (all optional, but `open`
/// always fills the digests and lengths from the descriptor).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// `fileEncSha256`.
    pub file_enc_sha256: Option<[u8; 32]>,
    /// `fileSha256`.
    pub file_sha256: Option<[u8; 32]>,
    /// `fileLength`.
    pub file_length: Option<u64>,
    /// Blob length.
    pub blob_length: Option<u64>,
    /// Streaming sidecar to verify too.
    pub sidecar: Option<Vec<u8>>,
}

impl Expect {
    /// Everything a descriptor declares.
    pub fn from_descriptor(d: &Descriptor) -> Self {
        Expect {
            file_enc_sha256: Some(d.file_enc_sha256),
            file_sha256: Some(d.file_sha256),
            file_length: Some(d.file_length),
            blob_length: Some(d.blob_length),
            sidecar: d.sidecar.clone(),
        }
    }
}

/// Proof that pass 1 succeeded, required by [`Decryptor::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Length of the verified blob.
    pub blob_length: u64,
    /// SHA-256 of the verified blob.
    pub file_enc_sha256: [u8; 32],
    mac: [u8; MAC_LEN],
}

/// Pass 1: digest, MAC and sidecar over the whole blob. Releases no plaintext.
pub struct Verifier {
    hmac: HmacSha256,
    enc_hash: sha2::Sha256,
    tail: [u8; MAC_LEN],
    tail_len: usize,
    len: u64,
    sidecar: Option<SidecarVerifier>,
    expect: Expect,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("whatsapp::Verifier")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier checking the blob against `expect`.
    pub fn new(keys: &ExpandedKeys, expect: Expect) -> Self {
        let sidecar = expect.sidecar.clone().map(|s| {
            let mut v = SidecarVerifier::new(&keys.mac_key, s);
            v.update(&keys.iv);
            v
        });
        Verifier {
            hmac: new_hmac(keys),
            enc_hash: sha2::Sha256::new(),
            tail: [0; MAC_LEN],
            tail_len: 0,
            len: 0,
            sidecar,
            expect,
        }
    }

    /// Feeds the next blob bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.enc_hash.update(data);
        self.len += data.len() as u64;
        if let Some(s) = &mut self.sidecar {
            s.update(data);
        }
        if data.len() >= MAC_LEN {
            self.hmac.update(&self.tail[..self.tail_len]);
            let (body, last) = data.split_at(data.len() - MAC_LEN);
            self.hmac.update(body);
            self.tail.copy_from_slice(last);
            self.tail_len = MAC_LEN;
        } else {
            let total = self.tail_len + data.len();
            if total > MAC_LEN {
                let excess = total - MAC_LEN;
                self.hmac.update(&self.tail[..excess]);
                self.tail.copy_within(excess..self.tail_len, 0);
                self.tail_len -= excess;
            }
            self.tail[self.tail_len..self.tail_len + data.len()].copy_from_slice(data);
            self.tail_len += data.len();
        }
    }

    /// Runs the checks in order: structure, lengths, blob digest, MAC, sidecar.
    pub fn finish(self) -> Result<Verified> {
        let len = self.len;
        if !blob_length_is_valid(len) {
            return Err(FormatError::MalformedBlob {
                format: "whatsapp",
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
        if let Some(fl) = self.expect.file_length
            && blob_length(fl) != len
        {
            return Err(FormatError::BlobLengthMismatch {
                expected: blob_length(fl),
                actual: len,
            });
        }
        let digest = finalize_sha256(self.enc_hash);
        if let Some(expected) = self.expect.file_enc_sha256
            && !ct_eq(&digest, &expected)
        {
            return Err(FormatError::EncDigestMismatch);
        }
        let tag = self.hmac.finalize().into_bytes();
        if !ct_eq(&tag[..MAC_LEN], &self.tail) {
            return Err(FormatError::MacMismatch);
        }
        if let Some(s) = self.sidecar {
            s.finish(len)?;
        }
        Ok(Verified {
            blob_length: len,
            file_enc_sha256: digest,
            mac: self.tail,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Decryption (pass 2).

/// Pass 2: decrypts a blob that passed [`Verifier`]. Also recomputes the MAC and fails with
/// [`FormatError::BlobChanged`] if the bytes differ from the verified ones.
pub struct Decryptor {
    core: CbcHmacOpener,
    plain_hash: sha2::Sha256,
    written: u64,
    verified: Verified,
    expect_sha256: Option<[u8; 32]>,
    expect_len: Option<u64>,
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("whatsapp::Decryptor")
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    /// A decryptor for a blob that `verified` vouches for.
    pub fn new(keys: &ExpandedKeys, verified: &Verified, expect: Expect) -> Self {
        Decryptor {
            core: CbcHmacOpener::with_iv(&keys.cipher_key, &keys.iv, new_hmac(keys), MAC_LEN),
            plain_hash: sha2::Sha256::new(),
            written: 0,
            verified: verified.clone(),
            expect_sha256: expect.file_sha256,
            expect_len: expect.file_length,
        }
    }

    /// Feeds the next blob bytes; writes the plaintext that is ready.
    pub fn update<W: Write + ?Sized>(&mut self, data: &[u8], out: &mut W) -> Result<()> {
        let (hash, written) = (&mut self.plain_hash, &mut self.written);
        self.core.update(data, &mut |plain| {
            hash.update(plain);
            *written += plain.len() as u64;
            write_to(out, plain)
        })
    }

    /// Decrypts the last block, checks padding, MAC equality with pass 1, plaintext length
    /// and digest.
    pub fn finish<W: Write + ?Sized>(mut self, out: &mut W) -> Result<Opened> {
        let plain = self
            .core
            .finish(self.verified.blob_length, &self.verified.mac)?;
        self.plain_hash.update(plain);
        out.write_all(plain)?;
        self.written += plain.len() as u64;
        if let Some(expected) = self.expect_len
            && expected != self.written
        {
            return Err(FormatError::PlainLengthMismatch {
                expected,
                actual: self.written,
            });
        }
        let digest = finalize_sha256(self.plain_hash.clone());
        if let Some(expected) = self.expect_sha256
            && !ct_eq(&digest, &expected)
        {
            return Err(FormatError::PlainDigestMismatch);
        }
        Ok(Opened {
            plaintext_length: self.written,
            plaintext_sha256: digest,
        })
    }
}

/// Verifies then decrypts a blob held in memory.
pub fn decrypt(keys: &ExpandedKeys, blob: &[u8], expect: Expect) -> Result<Vec<u8>> {
    let mut v = Verifier::new(keys, expect.clone());
    v.update(blob);
    let verified = v.finish()?;
    let mut d = Decryptor::new(keys, &verified, expect);
    let mut out = Vec::with_capacity(blob.len());
    d.update(blob, &mut out)?;
    d.finish(&mut out)?;
    Ok(out)
}

/// Convenience: a descriptor for an in-memory WhatsApp encryption.
pub fn descriptor(key: &MediaKey, kind: MediaKind, sealed: &Sealed) -> Descriptor {
    Descriptor {
        kind,
        mime: None,
        key: KeyMaterial::Whatsapp(key.clone()),
        file_sha256: sealed.file_sha256,
        file_enc_sha256: sealed.file_enc_sha256,
        file_length: sealed.file_length,
        blob_length: sealed.blob_length,
        sidecar: sealed.sidecar.clone(),
        incremental_mac: None,
        metadata: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Random access.

/// Which blob bytes to fetch to decrypt a plaintext range, and how to verify them.
///
/// CBC decrypts block `i` from ciphertext block `i` and the block before it (the derived IV
/// for block 0), so a plaintext range needs only its covering blocks plus one. With a sidecar
/// the fetch is widened to whole sidecar windows, each of which is verified before anything
/// is decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangePlan {
    /// The plaintext range asked for (end exclusive).
    pub plain: Range<u64>,
    /// The blob bytes to fetch (end exclusive).
    pub fetch: Range<u64>,
    /// Sidecar windows to verify, when planned with a sidecar.
    pub windows: Option<RangeInclusive<u64>>,
    /// Blob offset of the first ciphertext block to decrypt.
    decrypt_from: u64,
    /// Blob offset after the last ciphertext block to decrypt.
    decrypt_to: u64,
    blob_length: u64,
}

impl RangePlan {
    /// Plans the fetch for plaintext bytes `plain` of a file of `file_length` bytes.
    pub fn new(plain: Range<u64>, file_length: u64, with_sidecar: bool) -> Result<Self> {
        if plain.start >= plain.end || plain.end > file_length {
            return Err(FormatError::InvalidRange {
                start: plain.start,
                end: plain.end,
                len: file_length,
            });
        }
        let blob_len = blob_length(file_length);
        let first_block = plain.start / 16;
        let last_block = (plain.end - 1) / 16;
        let decrypt_from = first_block * 16;
        let decrypt_to = (last_block + 1) * 16;
        let (fetch, windows) = if with_sidecar {
            // In stream coordinates (S = iv || blob) the bytes needed are
            // S[decrypt_from .. decrypt_to + 16]: the IV block, then the ciphertext.
            let last_window = sidecar::window_count(blob_len) - 1;
            let first = (decrypt_from / sidecar::WINDOW).min(last_window);
            let last = ((decrypt_to - 1) / sidecar::WINDOW).clamp(first, last_window);
            let (start, _) = sidecar::window_blob_range(first, blob_len);
            let (end, _) = sidecar::window_blob_range(last, blob_len);
            (start.start..end.end, Some(first..=last))
        } else {
            (decrypt_from.saturating_sub(16)..decrypt_to, None)
        };
        Ok(RangePlan {
            plain,
            fetch,
            windows,
            decrypt_from,
            decrypt_to,
            blob_length: blob_len,
        })
    }

    /// The HTTP `Range` header value for [`RangePlan::fetch`].
    pub fn http_range(&self) -> String {
        format!("bytes={}-{}", self.fetch.start, self.fetch.end - 1)
    }

    /// Number of bytes to fetch.
    pub fn fetch_len(&self) -> u64 {
        self.fetch.end - self.fetch.start
    }
}

/// Decrypts the plaintext range of `plan` from the fetched blob bytes.
///
/// If the plan has sidecar windows, `sidecar` must be given and every covering window is
/// verified (constant time) before decryption: any failure is [`FormatError::MacMismatch`].
/// A plan made without a sidecar decrypts **unauthenticated** bytes: the caller must not
/// trust them beyond what the transport guarantees.
pub fn decrypt_range(
    keys: &ExpandedKeys,
    plan: &RangePlan,
    fetched: &[u8],
    sidecar: Option<&[u8]>,
) -> Result<Vec<u8>> {
    if fetched.len() as u64 != plan.fetch_len() {
        return Err(FormatError::RangeFetchLength {
            expected: plan.fetch_len(),
            actual: fetched.len() as u64,
        });
    }
    if let Some(windows) = &plan.windows {
        let sc = sidecar.ok_or_else(|| {
            FormatError::Descriptor("this range plan needs the sidecar to verify".into())
        })?;
        sidecar::verify_windows(
            &keys.mac_key,
            &keys.iv,
            sc,
            plan.blob_length,
            windows.clone(),
            plan.fetch.start,
            fetched,
        )?;
    }
    let off =
        |blob_offset: u64| usize::try_from(blob_offset - plan.fetch.start).unwrap_or(usize::MAX);
    let mut iv = keys.iv;
    if plan.decrypt_from > 0 {
        let at = off(plan.decrypt_from - 16);
        iv.copy_from_slice(fetched.get(at..at + 16).unwrap_or(&[0u8; 16]));
    }
    let mut ct = fetched
        .get(off(plan.decrypt_from)..off(plan.decrypt_to))
        .unwrap_or_default()
        .to_vec();
    let mut dec = cbc_decryptor(&keys.cipher_key, &iv);
    cbc_decrypt_in_place(&mut dec, &mut ct);
    let lo = usize::try_from(plan.plain.start - plan.decrypt_from).unwrap_or(0);
    let hi = usize::try_from(plan.plain.end - plan.decrypt_from).unwrap_or(0);
    let out = ct.get(lo..hi).unwrap_or_default().to_vec();
    ct.zeroize();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[0] ^ seed)
            .collect()
    }

    #[test]
    fn info_strings() {
        assert_eq!(hkdf_info(MediaKind::Sticker), "WhatsApp Image Keys");
        assert_eq!(hkdf_info(MediaKind::Voice), "WhatsApp Audio Keys");
        assert_eq!(hkdf_info(MediaKind::Document), "WhatsApp Document Keys");
        assert_eq!(hkdf_info(MediaKind::Video), "WhatsApp Video Keys");
    }

    #[test]
    fn debug_is_redacted() {
        let k = MediaKey::from_bytes(&[0x41; 32]).unwrap();
        let e = k.expand(MediaKind::Image);
        assert_eq!(format!("{k:?}"), "MediaKey(<redacted>)");
        assert_eq!(format!("{e:?}"), "ExpandedKeys(<redacted>)");
        assert!(MediaKey::from_bytes(&[0; 31]).is_err());
    }

    #[test]
    fn roundtrip_sizes_and_piecewise() {
        let key = MediaKey::from_bytes(&[3; 32]).unwrap();
        let keys = key.expand(MediaKind::Video);
        for len in [
            0usize, 1, 15, 16, 17, 31, 32, 33, 65535, 65536, 65537, 200_000,
        ] {
            let plain = data(len, 1);
            let (blob, sealed) = encrypt(&keys, &plain, true).unwrap();
            assert_eq!(blob.len() as u64, blob_length(len as u64));
            assert_eq!(sealed.blob_length, blob.len() as u64);
            assert_eq!(&blob[blob.len() - 10..], &sealed.mac);
            // piecewise encryption gives the same bytes
            for piece in [1usize, 5, 16, 1000] {
                let mut enc = Encryptor::with_keys(&keys).with_sidecar();
                let mut b2 = Vec::new();
                for c in plain.chunks(piece) {
                    enc.update(c, &mut b2).unwrap();
                }
                let s2 = enc.finish(&mut b2).unwrap();
                assert_eq!(b2, blob);
                assert_eq!(s2, sealed);
            }
            let expect = Expect {
                file_enc_sha256: Some(sealed.file_enc_sha256),
                file_sha256: Some(sealed.file_sha256),
                file_length: Some(len as u64),
                blob_length: Some(blob.len() as u64),
                sidecar: sealed.sidecar.clone(),
            };
            assert_eq!(decrypt(&keys, &blob, expect.clone()).unwrap(), plain);
            // piecewise verify/decrypt
            for piece in [1usize, 9, 10, 11, 26, 4096] {
                let mut v = Verifier::new(&keys, expect.clone());
                for c in blob.chunks(piece) {
                    v.update(c);
                }
                let verified = v.finish().unwrap();
                let mut d = Decryptor::new(&keys, &verified, expect.clone());
                let mut out = Vec::new();
                for c in blob.chunks(piece) {
                    d.update(c, &mut out).unwrap();
                }
                d.finish(&mut out).unwrap();
                assert_eq!(out, plain, "len {len} piece {piece}");
            }
        }
    }

    #[test]
    fn range_plans_decrypt_with_and_without_sidecar() {
        let key = MediaKey::from_bytes(&[5; 32]).unwrap();
        let keys = key.expand(MediaKind::Audio);
        let len = 3 * 65536 + 100;
        let plain = data(len, 7);
        let (blob, sealed) = encrypt(&keys, &plain, true).unwrap();
        let sc = sealed.sidecar.clone().unwrap();
        let ranges = [
            0..1u64,
            0..16,
            15..17,
            16..32,
            65530..65560,
            65536..65537,
            100..(len as u64),
            (len as u64 - 1)..(len as u64),
            131_000..196_700,
        ];
        for r in ranges {
            for with_sidecar in [false, true] {
                let plan = RangePlan::new(r.clone(), len as u64, with_sidecar).unwrap();
                let fetched = &blob[plan.fetch.start as usize..plan.fetch.end as usize];
                let got = decrypt_range(&keys, &plan, fetched, Some(&sc)).unwrap();
                assert_eq!(
                    got,
                    &plain[r.start as usize..r.end as usize],
                    "{r:?} {with_sidecar}"
                );
                if with_sidecar {
                    let mut bad = fetched.to_vec();
                    let i = bad.len() / 2;
                    bad[i] ^= 0x80;
                    assert!(matches!(
                        decrypt_range(&keys, &plan, &bad, Some(&sc)),
                        Err(FormatError::MacMismatch)
                    ));
                    assert!(decrypt_range(&keys, &plan, fetched, None).is_err());
                }
            }
        }
        assert!(RangePlan::new(5..5, 10, false).is_err());
        assert!(RangePlan::new(0..11, 10, false).is_err());
        let plan = RangePlan::new(0..1, 10, false).unwrap();
        assert_eq!(plan.http_range(), "bytes=0-15");
    }
}
