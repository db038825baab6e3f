//! Format-independent sealing, verifying and opening over a [`Descriptor`]: the [`Sealer`]
//! state machine and the `Read`/`Write` and async conveniences built on the two-pass cores.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

use super::{
    Descriptor, FormatError, IO_CHUNK, KeyMaterial, MediaFormat, MediaKind, Result, random_bytes,
    signal, whatsapp,
};

/// What to produce when sealing.
#[derive(Clone, Debug)]
pub struct SealOptions {
    /// `whatsapp` or `signal` (`opaque` is rejected).
    pub format: MediaFormat,
    /// Media kind (selects the WhatsApp HKDF info string; recorded in the descriptor).
    pub kind: MediaKind,
    /// MIME type to record.
    pub mime: Option<String>,
    /// WhatsApp: also produce the streaming sidecar (meant for video and audio).
    pub sidecar: bool,
    /// Signal: produce the incremental MAC; needs the exact plaintext size up front.
    pub incremental_mac_for_size: Option<u64>,
}

impl SealOptions {
    /// Defaults that match what the clients do: sidecar for WhatsApp video/audio/voice,
    /// no incremental MAC (it needs the size: see [`SealOptions::incremental_mac_for_size`]).
    pub fn new(format: MediaFormat, kind: MediaKind) -> Self {
        SealOptions {
            format,
            kind,
            mime: None,
            sidecar: format == MediaFormat::Whatsapp
                && matches!(kind, MediaKind::Video | MediaKind::Audio | MediaKind::Voice),
            incremental_mac_for_size: None,
        }
    }
}

/// An encryptor for either format: feed plaintext, get a blob and a [`Descriptor`].
pub enum Sealer {
    Whatsapp {
        enc: Box<whatsapp::Encryptor>,
        key: whatsapp::MediaKey,
        kind: MediaKind,
        mime: Option<String>,
    },
    Signal {
        enc: Box<signal::Encryptor>,
        key: signal::SignalKey,
        kind: MediaKind,
        mime: Option<String>,
    },
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sealer::Whatsapp { kind, .. } => write!(f, "Sealer::Whatsapp({kind})"),
            Sealer::Signal { kind, .. } => write!(f, "Sealer::Signal({kind})"),
        }
    }
}

impl Sealer {
    /// A sealer with a fresh random key (and, for Signal, a fresh random IV).
    pub fn new(opts: &SealOptions) -> Result<Self> {
        match opts.format {
            MediaFormat::Whatsapp => {
                Self::with_key(opts, KeyMaterial::Whatsapp(whatsapp::MediaKey::generate()?))
            }
            MediaFormat::Signal => {
                Self::with_key(opts, KeyMaterial::Signal(signal::SignalKey::generate()?))
            }
            MediaFormat::Opaque => Err(FormatError::Descriptor(
                "cannot seal in the opaque format".into(),
            )),
        }
    }

    /// A sealer with a caller-chosen key. Never reuse a WhatsApp media key for different
    /// plaintexts (its IV is derived from the key).
    pub fn with_key(opts: &SealOptions, key: KeyMaterial) -> Result<Self> {
        match key {
            KeyMaterial::Whatsapp(key) => {
                let mut enc = whatsapp::Encryptor::new(&key, opts.kind);
                if opts.sidecar {
                    enc = enc.with_sidecar();
                }
                Ok(Sealer::Whatsapp {
                    enc: Box::new(enc),
                    key,
                    kind: opts.kind,
                    mime: opts.mime.clone(),
                })
            }
            KeyMaterial::Signal(key) => {
                let mut enc = signal::Encryptor::new(&key)?;
                if let Some(size) = opts.incremental_mac_for_size {
                    enc = enc.with_incremental_mac(size);
                }
                Ok(Sealer::Signal {
                    enc: Box::new(enc),
                    key,
                    kind: opts.kind,
                    mime: opts.mime.clone(),
                })
            }
        }
    }

    /// Encrypts `plain`, writing whatever ciphertext is ready to `out`.
    pub fn update<W: Write + ?Sized>(&mut self, plain: &[u8], out: &mut W) -> Result<()> {
        match self {
            Sealer::Whatsapp { enc, .. } => enc.update(plain, out),
            Sealer::Signal { enc, .. } => enc.update(plain, out),
        }
    }

    /// Writes the rest of the blob and returns its descriptor.
    pub fn finish<W: Write + ?Sized>(self, out: &mut W) -> Result<Descriptor> {
        match self {
            Sealer::Whatsapp {
                enc,
                key,
                kind,
                mime,
            } => {
                let s = enc.finish(out)?;
                Ok(Descriptor {
                    kind,
                    mime,
                    key: KeyMaterial::Whatsapp(key),
                    file_sha256: s.file_sha256,
                    file_enc_sha256: s.file_enc_sha256,
                    file_length: s.file_length,
                    blob_length: s.blob_length,
                    sidecar: s.sidecar,
                    incremental_mac: None,
                    metadata: None,
                })
            }
            Sealer::Signal {
                enc,
                key,
                kind,
                mime,
            } => {
                let s = enc.finish(out)?;
                Ok(Descriptor {
                    kind,
                    mime,
                    key: KeyMaterial::Signal(key),
                    file_sha256: s.plaintext_sha256,
                    file_enc_sha256: s.digest,
                    file_length: s.size,
                    blob_length: s.blob_length,
                    sidecar: None,
                    incremental_mac: s.incremental_mac,
                    metadata: None,
                })
            }
        }
    }
}

/// Encrypts everything `input` yields into `output` with a fresh key; returns the descriptor.
pub fn seal<R: Read, W: Write>(
    opts: &SealOptions,
    mut input: R,
    mut output: W,
) -> Result<Descriptor> {
    let mut sealer = Sealer::new(opts)?;
    let mut buf = vec![0u8; IO_CHUNK];
    loop {
        let n = read_some(&mut input, &mut buf)?;
        if n == 0 {
            break;
        }
        sealer.update(&buf[..n], &mut output)?;
    }
    let d = sealer.finish(&mut output)?;
    output.flush()?;
    Ok(d)
}

/// Proof that a blob passed structure, length, digest and MAC checks (pass 1 of opening).
#[derive(Clone, Debug)]
pub enum Verified {
    Whatsapp(whatsapp::Verified),
    Signal(signal::Verified),
}

/// Pass 1 of opening: checks length, blob digest, MAC (and sidecar / incremental MAC when the
/// descriptor has them) over everything `blob` yields. Releases nothing.
pub fn verify<R: Read>(desc: &Descriptor, mut blob: R) -> Result<Verified> {
    let mut buf = vec![0u8; IO_CHUNK];
    match &desc.key {
        KeyMaterial::Whatsapp(key) => {
            let keys = key.expand(desc.kind);
            let mut v = whatsapp::Verifier::new(&keys, whatsapp::Expect::from_descriptor(desc));
            loop {
                let n = read_some(&mut blob, &mut buf)?;
                if n == 0 {
                    break;
                }
                v.update(&buf[..n]);
            }
            Ok(Verified::Whatsapp(v.finish()?))
        }
        KeyMaterial::Signal(key) => {
            let mut v = signal::Verifier::new(key, signal::Expect::from_descriptor(desc))?;
            loop {
                let n = read_some(&mut blob, &mut buf)?;
                if n == 0 {
                    break;
                }
                v.update(&buf[..n]);
            }
            Ok(Verified::Signal(v.finish()?))
        }
    }
}

/// What [`open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Plaintext bytes written.
    pub plaintext_length: u64,
    /// SHA-256 of the plaintext written (equal to the descriptor's).
    pub plaintext_sha256: [u8; 32],
}

/// Pass 2 of opening: decrypts `blob` (read again from its start) into `out`, given the proof
/// of pass 1. Checks padding, plaintext length and digest, and that the blob did not change.
pub fn decrypt_verified<R: Read, W: Write>(
    desc: &Descriptor,
    verified: &Verified,
    mut blob: R,
    mut out: W,
) -> Result<Opened> {
    let mut buf = vec![0u8; IO_CHUNK];
    let opened = match (&desc.key, verified) {
        (KeyMaterial::Whatsapp(key), Verified::Whatsapp(v)) => {
            let keys = key.expand(desc.kind);
            let mut d = whatsapp::Decryptor::new(&keys, v, whatsapp::Expect::from_descriptor(desc));
            loop {
                let n = read_some(&mut blob, &mut buf)?;
                if n == 0 {
                    break;
                }
                d.update(&buf[..n], &mut out)?;
            }
            d.finish(&mut out)?
        }
        (KeyMaterial::Signal(key), Verified::Signal(v)) => {
            let mut d = signal::Decryptor::new(key, v, signal::Expect::from_descriptor(desc));
            loop {
                let n = read_some(&mut blob, &mut buf)?;
                if n == 0 {
                    break;
                }
                d.update(&buf[..n], &mut out)?;
            }
            d.finish(&mut out)?
        }
        _ => {
            return Err(FormatError::Descriptor(
                "verification proof is for another format".into(),
            ));
        }
    };
    out.flush()?;
    Ok(opened)
}

/// Verifies then decrypts a re-readable blob: pass 1 ([`verify`]) over the whole blob, seek
/// back to where it started, pass 2 ([`decrypt_verified`]). Nothing is written to `out` unless
/// pass 1 succeeded.
pub fn open<R: Read + Seek, W: Write>(desc: &Descriptor, mut blob: R, out: W) -> Result<Opened> {
    let start = blob.stream_position()?;
    let verified = verify(desc, &mut blob)?;
    blob.seek(SeekFrom::Start(start))?;
    decrypt_verified(desc, &verified, blob, out)
}

/// Opens the blob file `blob` into the file `out`, which appears only if every check passed:
/// the plaintext is written to a fresh sibling file (`<out>.partial-<random>`, mode 0600 on
/// Unix) that is renamed over `out` on success and removed on any failure, so a plaintext
/// that fails its length or digest check is never left behind.
pub fn open_to_path(
    desc: &Descriptor,
    blob: &std::path::Path,
    out: &std::path::Path,
) -> Result<Opened> {
    let suffix = hex::encode(*random_bytes::<6>()?);
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{suffix}"));
    let tmp = out.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let file = options.open(&tmp)?;
        let blob = io::BufReader::new(std::fs::File::open(blob)?);
        let mut writer = io::BufWriter::new(file);
        let opened = open(desc, blob, &mut writer)?;
        writer
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()?;
        std::fs::rename(&tmp, out)?;
        Ok(opened)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Async [`seal`]: reads plaintext from `input`, writes the blob to `output` (tokio I/O; the
/// crypto runs inline in 64 KiB steps, so memory stays flat).
pub async fn seal_async<R, W>(opts: &SealOptions, mut input: R, mut output: W) -> Result<Descriptor>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut sealer = Sealer::new(opts)?;
    let mut buf = vec![0u8; IO_CHUNK];
    let mut out = Vec::with_capacity(IO_CHUNK + 64);
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.clear();
        sealer.update(&buf[..n], &mut out)?;
        output.write_all(&out).await?;
    }
    out.clear();
    let d = sealer.finish(&mut out)?;
    output.write_all(&out).await?;
    output.flush().await?;
    Ok(d)
}

/// Async [`open`]: pass 1 over `blob`, seek back, pass 2 into `output`. Nothing is written
/// unless pass 1 succeeded.
pub async fn open_async<R, W>(desc: &Descriptor, mut blob: R, mut output: W) -> Result<Opened>
where
    R: tokio::io::AsyncRead + tokio::io::AsyncSeek + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};
    let start = blob.stream_position().await?;
    let mut buf = vec![0u8; IO_CHUNK];
    let verified = match &desc.key {
        KeyMaterial::Whatsapp(key) => {
            let keys = key.expand(desc.kind);
            let mut v = whatsapp::Verifier::new(&keys, whatsapp::Expect::from_descriptor(desc));
            loop {
                let n = blob.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                v.update(&buf[..n]);
            }
            Verified::Whatsapp(v.finish()?)
        }
        KeyMaterial::Signal(key) => {
            let mut v = signal::Verifier::new(key, signal::Expect::from_descriptor(desc))?;
            loop {
                let n = blob.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                v.update(&buf[..n]);
            }
            Verified::Signal(v.finish()?)
        }
    };
    blob.seek(SeekFrom::Start(start)).await?;
    enum Pass2 {
        W(whatsapp::Decryptor),
        S(signal::Decryptor),
    }
    let mut dec = match (&desc.key, &verified) {
        (KeyMaterial::Whatsapp(key), Verified::Whatsapp(v)) => Pass2::W(whatsapp::Decryptor::new(
            &key.expand(desc.kind),
            v,
            whatsapp::Expect::from_descriptor(desc),
        )),
        (KeyMaterial::Signal(key), Verified::Signal(v)) => Pass2::S(signal::Decryptor::new(
            key,
            v,
            signal::Expect::from_descriptor(desc),
        )),
        _ => {
            return Err(FormatError::Descriptor(
                "verification proof is for another format".into(),
            ));
        }
    };
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(IO_CHUNK + 64));
    loop {
        let n = blob.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.clear();
        match &mut dec {
            Pass2::W(d) => d.update(&buf[..n], &mut *out)?,
            Pass2::S(d) => d.update(&buf[..n], &mut *out)?,
        }
        output.write_all(&out).await?;
    }
    out.clear();
    let opened = match dec {
        Pass2::W(d) => d.finish(&mut *out)?,
        Pass2::S(d) => d.finish(&mut *out)?,
    };
    output.write_all(&out).await?;
    output.flush().await?;
    Ok(opened)
}

/// Like `Read::read`, retrying on `Interrupted`.
pub(crate) fn read_some<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

// The HMAC both formats use (one helper for the whole crate).
