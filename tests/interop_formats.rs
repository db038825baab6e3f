//! Proof of interoperability of `interop_media::formats` with independent implementations.
//!
//! Peers (installed by `tests/interop/setup.sh` from the npm registry, pinned in
//! `tests/interop/package-lock.json`; driven by `tests/interop/peer.js`, one Node process per
//! direction with every case batched):
//!
//! * WhatsApp: `@whiskeysockets/baileys` 6.17.16 — `encryptedStream` (Baileys → us) and
//!   `getMediaKeys` + `downloadEncryptedContent` over a loopback HTTP server (us → Baileys).
//!   Baileys never checks the MAC or the digests, so the peer script computes them from
//!   Baileys' own keys and this test asserts them.
//! * Signal attachments: `@signalapp/mock-server` 27.0.0, Signal's own test server, whose
//!   `src/crypto.js` `encryptAttachment` builds `IV || AES-256-CBC || HMAC` blobs and digests
//!   (Signal → us), and re-encrypts our plaintext under our key and IV for a byte-for-byte
//!   comparison (us → Signal); the padding buckets are compared with Signal-Desktop's
//!   `logPadSize` expression evaluated by JavaScript itself.
//! * Signal incremental MAC: `@signalapp/libsignal-client` 0.103.0 `DigestingPassThrough`,
//!   `ValidatingPassThrough`, `inferChunkSize` (libsignal's Rust code through its Node binding).
//!
//! Set `INTEROP_SKIP_NODE=1` to skip the Node-backed tests on a machine without Node.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use interop_media::formats::{
    self, Descriptor, FormatError, KeyMaterial, MediaFormat, MediaKind, SealOptions,
    incremental_mac, signal, whatsapp,
};
use serde_json::{Value, json};

const SIZES: [usize; 8] = [0, 1, 15, 16, 17, 65535, 65536, 65537];
const BIG: usize = 3 * 1024 * 1024 + 12_345;

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(s: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().expect("base64 string"))
        .expect("valid base64 from peer")
}

fn arr32(s: &Value) -> [u8; 32] {
    unb64(s).try_into().expect("32 bytes")
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

/// Deterministic, incompressible-looking test data.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn node_skipped() -> bool {
    if std::env::var_os("INTEROP_SKIP_NODE").is_some() {
        eprintln!("INTEROP_SKIP_NODE set: skipping Node-backed interop test");
        return true;
    }
    false
}

/// Installs the peers once per test binary (no-op when `node_modules` is complete).
fn ensure_peers() {
    static SETUP: OnceLock<()> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = interop_dir();
        let ready = [
            "@whiskeysockets/baileys",
            "@signalapp/libsignal-client",
            "@signalapp/mock-server",
        ]
        .iter()
        .all(|p| dir.join("node_modules").join(p).is_dir());
        if !ready {
            let status = Command::new("bash")
                .arg(dir.join("setup.sh"))
                .status()
                .expect("run tests/interop/setup.sh (needs bash, node and npm)");
            assert!(status.success(), "tests/interop/setup.sh failed");
        }
    });
}

/// Runs one batched peer command and returns its `result`.
fn peer(command: &str, work: &Path, manifest: Value) -> Value {
    ensure_peers();
    let manifest_path = work.join(format!("{command}.manifest.json"));
    let result_path = work.join(format!("{command}.result.json"));
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let out = Command::new("node")
        .arg(interop_dir().join("peer.js"))
        .arg(command)
        .arg(&manifest_path)
        .arg(&result_path)
        .current_dir(interop_dir())
        .output()
        .expect("run node (is Node.js installed?)");
    assert!(
        out.status.success(),
        "peer {command} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&result_path).unwrap()).unwrap();
    v["result"].clone()
}

fn open_bytes(d: &Descriptor, blob: &[u8]) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    formats::open(d, Cursor::new(blob), &mut out)?;
    Ok(out)
}

struct Case {
    id: String,
    kind: MediaKind,
    plain: Vec<u8>,
    plain_path: PathBuf,
    blob_path: PathBuf,
}

fn cases(work: &Path, sizes: &[usize], kinds: &[MediaKind], big_for: &[MediaKind]) -> Vec<Case> {
    let mut out = Vec::new();
    for (ki, &kind) in kinds.iter().enumerate() {
        let mut sz = sizes.to_vec();
        if big_for.contains(&kind) {
            sz.push(BIG);
        }
        for (si, &len) in sz.iter().enumerate() {
            let id = format!("{kind}-{len}");
            let plain = pattern(len, (ki * 100 + si) as u64 + 1);
            let plain_path = work.join(format!("{id}.plain"));
            std::fs::write(&plain_path, &plain).unwrap();
            out.push(Case {
                blob_path: work.join(format!("{id}.blob")),
                id,
                kind,
                plain,
                plain_path,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// WhatsApp ↔ Baileys

#[test]
fn whatsapp_baileys_encrypts_we_verify_and_open() {
    if node_skipped() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cs = cases(tmp.path(), &SIZES, &MediaKind::ALL, &MediaKind::ALL);
    let manifest = json!({ "cases": cs.iter().map(|c| json!({
        "id": c.id, "kind": c.kind.as_str(),
        "plain": c.plain_path, "blob": c.blob_path,
    })).collect::<Vec<_>>() });
    let results = peer("wa-encrypt", tmp.path(), manifest);
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), cs.len());
    for (c, r) in cs.iter().zip(results) {
        assert_eq!(r["id"], c.id.as_str());
        let blob = std::fs::read(&c.blob_path).unwrap();
        let key = whatsapp::MediaKey::from_bytes(&unb64(&r["media_key"])).unwrap();
        let d = Descriptor {
            kind: c.kind,
            mime: None,
            key: KeyMaterial::Whatsapp(key.clone()),
            file_sha256: arr32(&r["file_sha256"]),
            file_enc_sha256: arr32(&r["file_enc_sha256"]),
            file_length: r["file_length"].as_u64().unwrap(),
            blob_length: blob.len() as u64,
            sidecar: None,
            incremental_mac: None,
            metadata: None,
        };
        assert_eq!(d.file_length, c.plain.len() as u64, "{}", c.id);
        assert_eq!(
            blob.len() as u64,
            whatsapp::blob_length(c.plain.len() as u64),
            "{}",
            c.id
        );
        // Verify (digest + MAC) and open through the streaming two-pass path.
        let plain = open_bytes(&d, &blob).unwrap_or_else(|e| panic!("{}: {e}", c.id));
        assert!(plain == c.plain, "{}: plaintext differs", c.id);
        // Byte-for-byte: our encryption under Baileys' key gives Baileys' blob.
        let (ours, sealed) = whatsapp::encrypt(&key.expand(c.kind), &c.plain, false).unwrap();
        assert!(ours == blob, "{}: our blob differs from Baileys'", c.id);
        assert_eq!(sealed.file_enc_sha256, d.file_enc_sha256);
        assert_eq!(sealed.file_sha256, d.file_sha256);
        assert_eq!(&sealed.mac[..], &unb64(&r["mac"])[..]);
        // And a tampered Baileys blob is refused before any plaintext is released.
        let mut bad = blob.clone();
        let i = bad.len() / 2;
        bad[i] ^= 0x20;
        let mut forged = d.clone();
        forged.file_enc_sha256 = sha256(&bad);
        let mut out = Vec::new();
        let err = formats::open(&forged, Cursor::new(&bad), &mut out).unwrap_err();
        assert!(matches!(err, FormatError::MacMismatch), "{}: {err}", c.id);
        assert!(out.is_empty());
    }
}

#[test]
fn whatsapp_we_encrypt_baileys_decrypts() {
    if node_skipped() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cs = cases(tmp.path(), &SIZES, &MediaKind::ALL, &MediaKind::ALL);
    let mut descriptors = Vec::new();
    let mut entries = Vec::new();
    for c in &cs {
        let opts = SealOptions::new(MediaFormat::Whatsapp, c.kind);
        let file = std::fs::File::create(&c.blob_path).unwrap();
        let d = formats::seal(&opts, c.plain.as_slice(), std::io::BufWriter::new(file)).unwrap();
        let ranges: Vec<[u64; 2]> = if c.plain.len() == BIG {
            vec![
                [1, 17],
                [16, 32],
                [65_530, 65_600],
                [100_000, 1_500_001],
                [BIG as u64 - 40, BIG as u64 - 1],
            ]
        } else {
            vec![]
        };
        entries.push(json!({
            "id": c.id, "kind": c.kind.as_str(), "media_key": b64(d.key.as_bytes()),
            "blob": c.blob_path, "ranges": ranges,
        }));
        descriptors.push(d);
    }
    let results = peer("wa-decrypt", tmp.path(), json!({ "cases": entries }));
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), cs.len());
    for ((c, d), r) in cs.iter().zip(&descriptors).zip(results) {
        assert_eq!(r["id"], c.id.as_str());
        // Baileys' key schedule equals ours.
        let KeyMaterial::Whatsapp(key) = &d.key else {
            unreachable!()
        };
        let keys = key.expand(c.kind);
        assert_eq!(unb64(&r["iv"]), keys.iv, "{}", c.id);
        assert_eq!(unb64(&r["cipher_key"]), keys.cipher_key, "{}", c.id);
        assert_eq!(unb64(&r["mac_key"]), keys.mac_key, "{}", c.id);
        // Baileys' AES path recovers the plaintext; MAC and digests hold under its keys.
        assert_eq!(
            r["plain_length"].as_u64(),
            Some(c.plain.len() as u64),
            "{}",
            c.id
        );
        assert_eq!(arr32(&r["plain_sha256"]), d.file_sha256, "{}", c.id);
        assert_eq!(arr32(&r["plain_sha256"]), sha256(&c.plain), "{}", c.id);
        assert_eq!(
            r["mac_ok"], true,
            "{}: MAC does not verify under Baileys' keys",
            c.id
        );
        assert_eq!(arr32(&r["enc_sha256"]), d.file_enc_sha256, "{}", c.id);
        // Ranged downloads: Baileys (startByte..endByte, previous block as IV) agrees with the
        // plaintext and with our sidecar-verified random access.
        let blob = std::fs::read(&c.blob_path).unwrap();
        for range in r["ranges"].as_array().unwrap() {
            let (s, e) = (
                range["start"].as_u64().unwrap(),
                range["end"].as_u64().unwrap(),
            );
            let want = &c.plain[s as usize..e as usize];
            assert_eq!(
                range["length"].as_u64(),
                Some(want.len() as u64),
                "{} {s}..{e}",
                c.id
            );
            assert_eq!(arr32(&range["sha256"]), sha256(want), "{} {s}..{e}", c.id);
            let plan =
                whatsapp::RangePlan::new(s..e, c.plain.len() as u64, d.sidecar.is_some()).unwrap();
            let fetched = &blob[plan.fetch.start as usize..plan.fetch.end as usize];
            let ours =
                whatsapp::decrypt_range(&keys, &plan, fetched, d.sidecar.as_deref()).unwrap();
            assert!(ours == want, "{} {s}..{e}: our range decrypt differs", c.id);
        }
    }
}

/// The sample that circulates with the WhatsApp-media test assignment (a real `VIDEO` blob,
/// its key and its `VIDEO.sidecar`) is not redistributable here; point
/// `INTEROP_WA_SAMPLES` at a directory holding `VIDEO.key`, `VIDEO.original` and
/// `VIDEO.sidecar` (e.g. `savinmikhail/encrypting` `samples/`, renaming `VIDEO.mp4`) to check
/// our sidecar against it. See docs/FORMATS-E2EE.md.
#[test]
fn whatsapp_sidecar_matches_published_sample_when_available() {
    let Some(dir) = std::env::var_os("INTEROP_WA_SAMPLES") else {
        eprintln!("INTEROP_WA_SAMPLES not set: skipping the published sidecar sample check");
        return;
    };
    let dir = PathBuf::from(dir);
    let key =
        whatsapp::MediaKey::from_bytes(&std::fs::read(dir.join("VIDEO.key")).unwrap()).unwrap();
    let plain = std::fs::read(dir.join("VIDEO.original")).unwrap();
    let want = std::fs::read(dir.join("VIDEO.sidecar")).unwrap();
    let (_, sealed) = whatsapp::encrypt(&key.expand(MediaKind::Video), &plain, true).unwrap();
    assert_eq!(sealed.sidecar.unwrap(), want);
    if let Ok(enc) = std::fs::read(dir.join("VIDEO.encrypted")) {
        assert_eq!(sealed.file_enc_sha256, sha256(&enc));
    }
}

// ---------------------------------------------------------------------------------------------
// Signal ↔ Signal's mock server and libsignal-client

#[test]
fn signal_mock_server_encrypts_we_verify_and_open() {
    if node_skipped() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = cases(tmp.path(), &SIZES, &[MediaKind::Video], &[MediaKind::Video]);
    let mut entries = Vec::new();
    for c in &base {
        for padded in [false, true] {
            let blob = tmp.path().join(format!("{}-{padded}.blob", c.id));
            entries.push(json!({ "id": format!("{}-{padded}", c.id), "plain": c.plain_path, "blob": blob, "padded": padded }));
        }
    }
    let results = peer(
        "signal-encrypt",
        tmp.path(),
        json!({ "cases": entries.clone() }),
    );
    for (i, r) in results.as_array().unwrap().iter().enumerate() {
        let c = &base[i / 2];
        let blob = std::fs::read(entries[i]["blob"].as_str().unwrap()).unwrap();
        let d = Descriptor {
            kind: MediaKind::Video,
            mime: None,
            key: KeyMaterial::Signal(signal::SignalKey::from_bytes(&unb64(&r["key"])).unwrap()),
            file_sha256: arr32(&r["plaintext_sha256"]),
            file_enc_sha256: arr32(&r["digest"]),
            file_length: r["size"].as_u64().unwrap(),
            blob_length: blob.len() as u64,
            sidecar: None,
            incremental_mac: None,
            metadata: None,
        };
        assert_eq!(sha256(&blob), d.file_enc_sha256, "{}", r["id"]);
        let plain = open_bytes(&d, &blob).unwrap_or_else(|e| panic!("{}: {e}", r["id"]));
        assert!(plain == c.plain, "{}: plaintext differs", r["id"]);
        if i % 2 == 1 {
            // Padded like Signal-Desktop: exactly our blob length for this size.
            assert_eq!(
                blob.len() as u64,
                signal::blob_length(c.plain.len() as u64),
                "{}",
                r["id"]
            );
        }
        let mut wrong = d.clone();
        wrong.key = KeyMaterial::Signal(signal::SignalKey::generate().unwrap());
        assert!(matches!(
            open_bytes(&wrong, &blob),
            Err(FormatError::MacMismatch)
        ));
    }
}

#[test]
fn signal_we_encrypt_mock_server_agrees_byte_for_byte() {
    if node_skipped() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut sizes = SIZES.to_vec();
    sizes.extend([540, 541, 542, 567, 568, 569]);
    let cs = cases(
        tmp.path(),
        &sizes,
        &[MediaKind::Document],
        &[MediaKind::Document],
    );
    let mut entries = Vec::new();
    let mut sealed = Vec::new();
    for c in &cs {
        let key = signal::SignalKey::generate().unwrap();
        let iv: [u8; 16] = pattern(16, c.plain.len() as u64)[..].try_into().unwrap();
        let (blob, s) = signal::encrypt_with_iv(&key, iv, &c.plain).unwrap();
        std::fs::write(&c.blob_path, &blob).unwrap();
        entries.push(json!({
            "id": c.id, "key": b64(key.as_bytes()), "blob": c.blob_path,
            "plain": c.plain_path, "size": c.plain.len(),
        }));
        sealed.push(s);
    }
    let results = peer("signal-check", tmp.path(), json!({ "cases": entries }));
    for ((c, s), r) in cs.iter().zip(&sealed).zip(results.as_array().unwrap()) {
        assert_eq!(r["id"], c.id.as_str());
        assert_eq!(r["mac_ok"], true, "{}", c.id);
        assert_eq!(arr32(&r["digest"]), s.digest, "{}", c.id);
        assert_eq!(arr32(&r["plain_sha256"]), sha256(&c.plain), "{}", c.id);
        assert_eq!(
            r["padded_length"].as_u64(),
            Some(signal::pad_size(c.plain.len() as u64)),
            "{}",
            c.id
        );
        assert_eq!(
            r["mock_server_blob_equal"], true,
            "{}: differs from Signal's encryptAttachment",
            c.id
        );
        assert_eq!(arr32(&r["mock_server_digest"]), s.digest, "{}", c.id);
    }
}

#[test]
fn signal_incremental_mac_matches_libsignal() {
    if node_skipped() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // 17 MiB makes the blob exceed 256 × 64 KiB, so libsignal picks a chunk above 64 KiB.
    let sizes = [0usize, 100, 65_536 * 3 + 5, 5 << 20, 17 << 20];
    let cs = cases(tmp.path(), &sizes, &[MediaKind::Video], &[]);
    let mut entries = Vec::new();
    let mut sealed = Vec::new();
    for c in &cs {
        let key = signal::SignalKey::generate().unwrap();
        let mut enc = signal::Encryptor::new(&key)
            .unwrap()
            .with_incremental_mac(c.plain.len() as u64);
        let mut blob = Vec::new();
        enc.update(&c.plain, &mut blob).unwrap();
        let s = enc.finish(&mut blob).unwrap();
        std::fs::write(&c.blob_path, &blob).unwrap();
        let im = s.incremental_mac.clone().unwrap();
        entries.push(json!({
            "id": c.id, "key": b64(key.as_bytes()), "blob": c.blob_path,
            "digests": b64(&im.digests), "chunk_size": im.chunk_size,
        }));
        sealed.push((key, s, blob.len()));
    }
    let results = peer("signal-incmac", tmp.path(), json!({ "cases": entries }));
    for ((c, (key, s, blob_len)), r) in cs.iter().zip(&sealed).zip(results.as_array().unwrap()) {
        let im = s.incremental_mac.as_ref().unwrap();
        assert_eq!(
            r["chunk_size"].as_u64(),
            Some(u64::from(im.chunk_size)),
            "{}",
            c.id
        );
        assert_eq!(
            u64::from(incremental_mac::chunk_size(*blob_len as u64)),
            u64::from(im.chunk_size)
        );
        assert_eq!(
            unb64(&r["digests"]),
            im.digests,
            "{}: digests differ from libsignal",
            c.id
        );
        assert_eq!(r["validates_ours"], true, "{}", c.id);
        assert_eq!(r["accepts_tampered"], false, "{}", c.id);
        // And ours validates libsignal's digests over the same blob.
        let blob = std::fs::read(&c.blob_path).unwrap();
        let mut v = incremental_mac::ValidatingMac::new(
            key.mac_key(),
            im.chunk_size,
            &unb64(&r["digests"]),
        )
        .unwrap();
        let mut n = 0;
        for piece in blob.chunks(100_003) {
            n += v.update(piece).unwrap();
        }
        n += v.finish().unwrap();
        assert_eq!(n, blob.len() as u64);
    }
    assert!(
        cs[4].plain.len() > 16 << 20
            && sealed[4].1.incremental_mac.as_ref().unwrap().chunk_size > 65_536
    );
}

#[test]
fn signal_pad_size_matches_javascript() {
    if node_skipped() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut sizes: Vec<u64> = (0..3000).collect();
    let mut b = 1.0f64;
    while b < 5e9 {
        let v = b.floor() as u64;
        sizes.extend([v.saturating_sub(1), v, v + 1]);
        b *= 1.05;
    }
    sizes.extend([1 << 31, (1 << 32) - 1, 1 << 32, 100 << 20, 2_000_000_000]);
    let results = peer("signal-padsize", tmp.path(), json!({ "sizes": sizes }));
    let js: Vec<u64> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(js.len(), sizes.len());
    for (s, j) in sizes.iter().zip(js) {
        assert_eq!(signal::pad_size(*s), j, "logPadSize({s})");
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming with flat memory

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// A reader yielding `len` pattern bytes without holding them.
struct PatternReader {
    left: u64,
    x: u8,
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for b in &mut buf[..n] {
            self.x = self.x.wrapping_mul(31).wrapping_add(7);
            *b = self.x;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that only hashes.
struct HashSink(sha2::Sha256, u64);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        self.0.update(buf);
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Child half of `streaming_uses_flat_memory` (run in its own process so that the peak RSS
/// is its own). Size from `INTEROP_FLAT_MEMORY_BYTES`.
#[test]
#[ignore = "spawned by streaming_uses_flat_memory"]
fn flat_memory_child() {
    use sha2::Digest as _;
    let len: u64 = std::env::var("INTEROP_FLAT_MEMORY_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64 << 20);
    let tmp = tempfile::tempdir().unwrap();
    let before = peak_rss_kib();
    for format in [MediaFormat::Whatsapp, MediaFormat::Signal] {
        let mut opts = SealOptions::new(format, MediaKind::Video);
        opts.incremental_mac_for_size = Some(len);
        let path = tmp.path().join(format!("{format}.blob"));
        let file = std::fs::File::create(&path).unwrap();
        let d = formats::seal(
            &opts,
            PatternReader { left: len, x: 1 },
            std::io::BufWriter::new(file),
        )
        .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), d.blob_length);
        let mut sink = HashSink(sha2::Sha256::new(), 0);
        let opened = formats::open(
            &d,
            std::io::BufReader::new(std::fs::File::open(&path).unwrap()),
            &mut sink,
        )
        .unwrap();
        assert_eq!(sink.1, len);
        assert_eq!(opened.plaintext_sha256, <[u8; 32]>::from(sink.0.finalize()));
        std::fs::remove_file(&path).unwrap();
    }
    let after = peak_rss_kib();
    println!("FLAT_MEMORY bytes={len} peak_rss_before_kib={before} peak_rss_after_kib={after}");
}

#[test]
fn streaming_uses_flat_memory() {
    // 256 MiB by default (2 GiB with INTEROP_FLAT_MEMORY_BYTES=2147483648).
    let len =
        std::env::var("INTEROP_FLAT_MEMORY_BYTES").unwrap_or_else(|_| (256u64 << 20).to_string());
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "flat_memory_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("INTEROP_FLAT_MEMORY_BYTES", &len)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.find("FLAT_MEMORY").map(|i| &l[i..]))
        .expect("child report");
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let grown = field("peak_rss_after_kib").saturating_sub(field("peak_rss_before_kib"));
    eprintln!("{line} (grew {grown} KiB)");
    assert!(
        grown < 32 * 1024,
        "streaming {len} bytes grew peak RSS by {grown} KiB"
    );
}

/// Issue 14 item 5: at plaintext lengths ≡ 65 504–65 519 (mod 65 536) the sealed stream
/// `iv || enc` is a whole number of 64 KiB windows and the last sidecar window is the 10-byte
/// MAC alone, inside the previous window's overlap. We generate it (the `while n*K < |S|`
/// reading the published sample fixes); sidecars without it (one entry fewer, as some public
/// implementations produce) verify too, whole-file and ranged; anything else does not.
/// The other reading is computed here with `hmac` directly, not through `formats::sidecar`.
#[test]
fn whatsapp_sidecar_last_window_boundary_sizes_accept_both_readings() {
    use hmac::{KeyInit, Mac};
    let k = 65_536usize;
    let sizes = [
        65_503usize,
        65_504,
        65_511,
        65_519,
        65_520,
        2 * k - 32,
        2 * k - 17,
        3 * k - 25,
    ];
    for &p in &sizes {
        let plain = pattern(p, p as u64);
        let key = whatsapp::MediaKey::generate().unwrap();
        let keys = key.expand(MediaKind::Video);
        let (blob, sealed) = whatsapp::encrypt(&keys, &plain, true).unwrap();
        let ours = sealed.sidecar.clone().unwrap();
        let enc = blob.len() - 10;
        let boundary = (16 + enc) % k == 0;
        assert_eq!(boundary, (p % k) >= 65_504 && (p % k) <= 65_519, "{p}");
        // The other reading: a window only while it holds a byte the previous one does not.
        let mut s = keys.iv.to_vec();
        s.extend_from_slice(&blob);
        let mut short = Vec::new();
        let mut n = 0;
        while n == 0 || n * k + 16 < s.len() {
            let end = s.len().min((n + 1) * k + 16);
            let mut h =
                <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&keys.mac_key).unwrap();
            h.update(&s[n * k..end]);
            short.extend_from_slice(&h.finalize().into_bytes()[..10]);
            n += 1;
        }
        assert_eq!(
            ours.len() / 10,
            (blob.len() + 16).div_ceil(k),
            "{p}: our rule"
        );
        assert_eq!(
            ours.len() - short.len(),
            if boundary { 10 } else { 0 },
            "{p}"
        );
        for sc in [ours.clone(), short.clone()] {
            let expect = whatsapp::Expect {
                file_enc_sha256: Some(sealed.file_enc_sha256),
                file_sha256: Some(sealed.file_sha256),
                file_length: Some(p as u64),
                blob_length: Some(blob.len() as u64),
                sidecar: Some(sc.clone()),
            };
            assert!(
                whatsapp::decrypt(&keys, &blob, expect).unwrap() == plain,
                "{p}"
            );
            // Ranged, sidecar-verified: the tail (the window before the MAC-only one) too.
            for (a, b) in [(0, 100), (p.saturating_sub(40), p), (p / 2, p / 2 + 1)] {
                let plan = whatsapp::RangePlan::new(a as u64..b as u64, p as u64, true).unwrap();
                let fetched = &blob[plan.fetch.start as usize..plan.fetch.end as usize];
                let got = whatsapp::decrypt_range(&keys, &plan, fetched, Some(&sc)).unwrap();
                assert!(got == plain[a..b], "{p} {a}..{b}");
            }
            let mut bad = sc.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            let expect = whatsapp::Expect {
                sidecar: Some(bad),
                ..Default::default()
            };
            assert!(matches!(
                whatsapp::decrypt(&keys, &blob, expect),
                Err(FormatError::MacMismatch)
            ));
        }
        // One entry fewer is accepted only at the boundary.
        let cut = ours[..ours.len() - 10].to_vec();
        let expect = whatsapp::Expect {
            sidecar: Some(cut),
            ..Default::default()
        };
        let r = whatsapp::decrypt(&keys, &blob, expect);
        assert_eq!(r.is_ok(), boundary, "{p}: {r:?}");
    }
}
