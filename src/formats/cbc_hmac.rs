//! The AES-256-CBC + HMAC-SHA256 streaming core that both E2EE formats are built on:
//! encryption in whole blocks with PKCS#7 at the end, and the second-pass decryption that
//! holds back the last block and the MAC until the end. WhatsApp and Signal differ only
//! around it (key expansion, where the IV lives, MAC length, Signal's zero padding), which
//! stays in `whatsapp.rs` and `signal.rs`.

use std::io::Write;

use hmac::Mac as _;
use zeroize::Zeroize;

use super::{FormatError, HmacSha256, IO_CHUNK, Result, ct_eq};

pub(crate) type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
pub(crate) type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

pub(crate) fn cbc_encryptor(key: &[u8; 32], iv: &[u8; 16]) -> Aes256CbcEnc {
    use cbc::cipher::KeyIvInit as _;
    Aes256CbcEnc::new(key.into(), iv.into())
}

pub(crate) fn cbc_decryptor(key: &[u8; 32], iv: &[u8; 16]) -> Aes256CbcDec {
    use cbc::cipher::KeyIvInit as _;
    Aes256CbcDec::new(key.into(), iv.into())
}

/// Encrypts whole blocks in place (`buf.len()` must be a multiple of 16; a tail is ignored).
pub(crate) fn cbc_encrypt_in_place(enc: &mut Aes256CbcEnc, buf: &mut [u8]) {
    use cbc::cipher::BlockModeEncrypt as _;
    let (blocks, _) = cbc::cipher::array::Array::slice_as_chunks_mut(buf);
    enc.encrypt_blocks(blocks);
}

/// Decrypts whole blocks in place (`buf.len()` must be a multiple of 16; a tail is ignored).
pub(crate) fn cbc_decrypt_in_place(dec: &mut Aes256CbcDec, buf: &mut [u8]) {
    use cbc::cipher::BlockModeDecrypt as _;
    let (blocks, _) = cbc::cipher::array::Array::slice_as_chunks_mut(buf);
    dec.decrypt_blocks(blocks);
}

/// Length of the PKCS#7 padding of the final block, or `None` if it is malformed. Only ever
/// called on authenticated data.
pub(crate) fn pkcs7_pad_len(last_block: &[u8]) -> Option<usize> {
    let pad = *last_block.last()? as usize;
    if pad == 0 || pad > 16 || pad > last_block.len() {
        return None;
    }
    let ok = last_block[last_block.len() - pad..]
        .iter()
        .fold(0u8, |acc, &b| acc | (b ^ pad as u8));
    (ok == 0).then_some(pad)
}

/// Streaming CBC encryption: input in any pieces, ciphertext out in whole blocks (at most
/// `IO_CHUNK` at a time), PKCS#7 on the last block.
pub(crate) struct CbcEncryptor {
    cbc: Aes256CbcEnc,
    pending: [u8; 16],
    pending_len: usize,
    buf: Vec<u8>,
}

impl Drop for CbcEncryptor {
    fn drop(&mut self) {
        self.pending.zeroize();
        self.buf.zeroize();
    }
}

impl CbcEncryptor {
    pub(crate) fn new(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        CbcEncryptor {
            cbc: cbc_encryptor(key, iv),
            pending: [0; 16],
            pending_len: 0,
            buf: Vec::with_capacity(IO_CHUNK),
        }
    }

    /// Encrypt `input`; whole blocks go to `sink`, a partial block waits for more.
    pub(crate) fn update(
        &mut self,
        mut input: &[u8],
        sink: &mut impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        if self.pending_len > 0 {
            let take = (16 - self.pending_len).min(input.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&input[..take]);
            self.pending_len += take;
            input = &input[take..];
            if self.pending_len < 16 {
                return Ok(());
            }
            self.buf.clear();
            self.buf.extend_from_slice(&self.pending);
            self.pending_len = 0;
            self.emit(sink)?;
        }
        while input.len() >= 16 {
            let n = (input.len() / 16 * 16).min(IO_CHUNK);
            self.buf.clear();
            self.buf.extend_from_slice(&input[..n]);
            input = &input[n..];
            self.emit(sink)?;
        }
        self.pending[..input.len()].copy_from_slice(input);
        self.pending_len = input.len();
        Ok(())
    }

    /// PKCS#7-pad what waits and send the last block to `sink`. Call once, last.
    pub(crate) fn finish(&mut self, sink: &mut impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let pad = 16 - self.pending_len;
        self.pending[self.pending_len..].fill(pad as u8);
        self.buf.clear();
        self.buf.extend_from_slice(&self.pending);
        self.emit(sink)
    }

    fn emit(&mut self, sink: &mut impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        cbc_encrypt_in_place(&mut self.cbc, &mut self.buf);
        sink(&self.buf)
    }
}

/// Second-pass decryption of a blob `[iv] ciphertext mac` that a first pass verified: whole
/// blocks are MACed and decrypted as they arrive, except the last block and the MAC, which
/// are held back until [`CbcHmacOpener::finish`] checks the MAC (equal to the first pass's)
/// and the padding.
pub(crate) struct CbcHmacOpener {
    aes_key: [u8; 32],
    cbc: Option<Aes256CbcDec>,
    hmac: HmacSha256,
    mac_len: usize,
    tail: Vec<u8>,
    consumed: u64,
}

impl Drop for CbcHmacOpener {
    fn drop(&mut self) {
        self.tail.zeroize();
        self.aes_key.zeroize();
    }
}

impl CbcHmacOpener {
    /// The IV is known (WhatsApp derives it); `hmac` already covers whatever precedes the
    /// ciphertext in the MAC.
    pub(crate) fn with_iv(
        aes_key: &[u8; 32],
        iv: &[u8; 16],
        hmac: HmacSha256,
        mac_len: usize,
    ) -> Self {
        let mut o = Self::iv_in_blob(aes_key, hmac, mac_len);
        o.cbc = Some(cbc_decryptor(aes_key, iv));
        o
    }

    /// The blob starts with the IV, which the MAC covers (Signal).
    pub(crate) fn iv_in_blob(aes_key: &[u8; 32], hmac: HmacSha256, mac_len: usize) -> Self {
        CbcHmacOpener {
            aes_key: *aes_key,
            cbc: None,
            hmac,
            mac_len,
            tail: Vec::with_capacity(IO_CHUNK + 16 + mac_len + 16),
            consumed: 0,
        }
    }

    /// Feed blob bytes; decrypted whole blocks that are certainly not the last go to `sink`.
    pub(crate) fn update(
        &mut self,
        data: &[u8],
        sink: &mut impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let hold = 16 + self.mac_len;
        for piece in data.chunks(IO_CHUNK) {
            self.tail.extend_from_slice(piece);
            if self.cbc.is_none() {
                if self.tail.len() < 16 {
                    continue;
                }
                let mut iv = [0u8; 16];
                iv.copy_from_slice(&self.tail[..16]);
                self.hmac.update(&iv);
                self.cbc = Some(cbc_decryptor(&self.aes_key, &iv));
                self.tail.drain(..16);
                self.consumed += 16;
            }
            if self.tail.len() > hold {
                let n = (self.tail.len() - hold) / 16 * 16;
                if n > 0
                    && let Some(cbc) = &mut self.cbc
                {
                    let body = &mut self.tail[..n];
                    self.hmac.update(body);
                    cbc_decrypt_in_place(cbc, body);
                    sink(body)?;
                    self.consumed += n as u64;
                    self.tail.drain(..n);
                }
            }
        }
        Ok(())
    }

    /// Check that the blob was `blob_length` bytes long and ends in `verified_mac` (the MAC
    /// the first pass checked), decrypt the last block, and return the plaintext left after
    /// removing the PKCS#7 padding.
    pub(crate) fn finish(&mut self, blob_length: u64, verified_mac: &[u8]) -> Result<&[u8]> {
        let total = self.consumed + self.tail.len() as u64;
        if total != blob_length || self.tail.len() < 16 + self.mac_len {
            return Err(FormatError::BlobChanged);
        }
        let ct_len = self.tail.len() - self.mac_len;
        let Some(cbc) = self.cbc.as_mut() else {
            return Err(FormatError::BlobChanged);
        };
        if !ct_len.is_multiple_of(16) {
            return Err(FormatError::BlobChanged);
        }
        let (ct, mac) = self.tail.split_at_mut(ct_len);
        self.hmac.update(ct);
        let tag = self.hmac.clone().finalize().into_bytes();
        if !ct_eq(&tag[..self.mac_len], mac) || !ct_eq(mac, verified_mac) {
            return Err(FormatError::BlobChanged);
        }
        cbc_decrypt_in_place(cbc, ct);
        let pad = pkcs7_pad_len(&ct[ct_len - 16..]).ok_or(FormatError::CorruptPlaintext)?;
        Ok(&ct[..ct_len - pad])
    }
}

/// Write `data` to `out`: the usual sink of the encryptor and the opener.
pub(crate) fn write_to<W: Write + ?Sized>(out: &mut W, data: &[u8]) -> Result<()> {
    out.write_all(data)?;
    Ok(())
}
