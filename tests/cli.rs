//! The client CLI end to end: `upload` seals and uploads through a running service, `download`
//! fetches with the token, verifies and decrypts, and the plaintext comes back identical;
//! `open` refuses tampered blobs and bad descriptors with distinct exit codes.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod common;

use std::process::Command;

use common::ServiceBuilder;
use common::server::BIN;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn upload_download_open_roundtrip_in_both_formats() {
    let svc = ServiceBuilder::new().spawn();
    let dir = tempfile::tempdir().unwrap();
    let plain: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let p = dir.path().join("plain");
    std::fs::write(&p, &plain).unwrap();
    let key_file = svc.data_dir.join("dev-partner-key");
    for (format, kind) in [
        ("whatsapp", "video"),
        ("signal", "document"),
        ("whatsapp", "voice"),
    ] {
        let out = run(&[
            "upload",
            p.to_str().unwrap(),
            "--server",
            &svc.base,
            "--key-file",
            key_file.to_str().unwrap(),
            "--format",
            format,
            "--kind",
            kind,
            // Pseudo-random bytes, not a real video or voice note: seal them as they are.
            "--raw",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let up: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(up["media"]["format"], format);
        let desc = dir.path().join(format!("{format}-{kind}.json"));
        std::fs::write(&desc, up["descriptor"].to_string()).unwrap();
        let back = dir.path().join(format!("{format}-{kind}.out"));
        let url = up["token"]["url"].as_str().unwrap();
        let out = run(&[
            "download",
            url,
            "-o",
            back.to_str().unwrap(),
            "--descriptor",
            desc.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            std::fs::read(&back).unwrap() == plain,
            "{format}: plaintext differs"
        );

        // The raw blob, tampered, fails verification (exit 3) and writes nothing.
        let blob = dir.path().join("blob");
        let out = run(&["download", url, "-o", blob.to_str().unwrap()]);
        assert!(out.status.success());
        let mut bytes = std::fs::read(&blob).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&blob, &bytes).unwrap();
        let opened = dir.path().join("opened");
        let out = run(&[
            "open",
            blob.to_str().unwrap(),
            "--descriptor",
            desc.to_str().unwrap(),
            "-o",
            opened.to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!opened.exists(), "no plaintext from a tampered blob");
    }

    // Bytes that are not an image, prepared as one: the media pipeline refuses (exit 3).
    let refused = run(&[
        "prepare",
        p.to_str().unwrap(),
        "--format",
        "whatsapp",
        "--kind",
        "image",
        "-o",
        dir.path().join("r").to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not an allowed image"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // A descriptor with invalid base64: usage error (exit 2).
    let bad = dir.path().join("bad.json");
    let d = run(&[
        "prepare",
        p.to_str().unwrap(),
        "--format",
        "whatsapp",
        "--kind",
        "image",
        "--raw",
        "-o",
        dir.path().join("b").to_str().unwrap(),
    ]);
    assert!(d.status.success());
    let mut v: serde_json::Value = serde_json::from_slice(&d.stdout).unwrap();
    v["key"] = serde_json::Value::String("***not base64***".into());
    std::fs::write(&bad, v.to_string()).unwrap();
    let out = run(&[
        "open",
        dir.path().join("b").to_str().unwrap(),
        "--descriptor",
        bad.to_str().unwrap(),
        "-o",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A token for a deleted media: server error, exit 4.
    let out = run(&[
        "download",
        &format!("{}/v1/download/garbage", svc.base),
        "-o",
        dir.path().join("g").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4));
}

/// `--format` and `--kind` list their values, and every client command states its exit codes.
#[test]
fn help_lists_values_and_exit_codes() {
    for cmd in ["prepare", "open", "upload", "download"] {
        let out = run(&[cmd, "--help"]);
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Exit codes"), "{cmd}: {help}");
        if cmd == "prepare" || cmd == "upload" {
            for v in [
                "whatsapp", "signal", "image", "sticker", "voice", "video", "document",
            ] {
                assert!(help.contains(v), "{cmd} --help lacks {v}: {help}");
            }
        }
    }
    // A value outside the list is a usage error (exit 2).
    let out = run(&[
        "prepare", "x", "--format", "telegram", "--kind", "image", "-o", "y",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// Writes `len` pseudo-random bytes in 1 MiB pieces (never the whole file in memory);
/// returns their SHA-256.
fn pseudo_random_file(path: &std::path::Path, len: usize, seed: u64) -> [u8; 32] {
    use sha2::Digest as _;
    use std::io::Write as _;
    let mut x = seed | 1;
    let mut h = sha2::Sha256::new();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut left = len;
    while left > 0 {
        let n = left.min(1 << 20);
        let piece: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        h.update(&piece);
        f.write_all(&piece).unwrap();
        left -= n;
    }
    f.flush().unwrap();
    h.finalize().into()
}

fn sha256_of(path: &std::path::Path) -> ([u8; 32], u64) {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    (h.finalize().into(), total)
}

/// Upload `len` bytes resumably with the CLI, kill the CLI once the server holds part of it,
/// run the same command again: it resumes (HEAD for the offset) and the download is
/// byte-exact. The state file never holds the media key.
fn killed_upload_resumes(len: usize, rate: u64) {
    use std::time::{Duration, Instant};
    let svc = ServiceBuilder::new().spawn();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("clip.bin");
    let plain = pseudo_random_file(&p, len, 0x1234_5678);
    let key_file = svc.data_dir.join("dev-partner-key");
    let state = dir.path().join("clip.state.json");
    let desc = dir.path().join("clip.descriptor.json");
    let rate = rate.to_string();
    let args = [
        "upload",
        p.to_str().unwrap(),
        "--server",
        &svc.base,
        "--key-file",
        key_file.to_str().unwrap(),
        "--format",
        "whatsapp",
        "--kind",
        "video",
        "--raw",
        "--state",
        state.to_str().unwrap(),
        "--descriptor-out",
        desc.to_str().unwrap(),
        "--max-rate",
        &rate,
    ];
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the server reports part of the upload stored, then kill the CLI.
    let c = common::http();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut killed_at = 0;
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&state)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = v["upload_url"].as_str()
            && let Ok(r) = common::block_on(
                c.head(url)
                    .bearer_auth(&svc.partner_key)
                    .header("Tus-Resumable", "1.0.0")
                    .send(),
            )
            && let Some(off) = r.headers().get("upload-offset")
        {
            let off: u64 = off.to_str().unwrap().parse().unwrap();
            if off > 0 {
                assert!(off < len as u64, "the upload finished before the kill");
                killed_at = off;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(killed_at > 0, "no progress seen");
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&state).unwrap();
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(&desc).unwrap()).unwrap();
    let media_key = d["key"].as_str().unwrap();
    assert!(
        !text.contains(media_key),
        "the state file holds the media key"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for f in [&state, &desc] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
    }
    // Run again: it resumes from the server's offset, not from zero.
    let out = Command::new(BIN)
        .args(&args[..args.len() - 2])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!state.exists(), "state removed once the media exists");
    let printed = dir.path().join("upload.json");
    std::fs::write(&printed, &out.stdout).unwrap();
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(up["media"]["format"], "whatsapp");
    // `download --descriptor` takes the JSON `upload` printed, as is.
    let back = dir.path().join("back.bin");
    let out = run(&[
        "download",
        up["token"]["url"].as_str().unwrap(),
        "-o",
        back.to_str().unwrap(),
        "--descriptor",
        printed.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (got, n) = sha256_of(&back);
    assert_eq!(n, len as u64);
    assert!(got == plain, "resumed upload is not byte-exact");
    eprintln!("killed at offset {killed_at} of {len}; resumed byte-exact");
}

#[test]
fn killed_resumable_upload_of_40_mib_resumes_byte_exact() {
    // 40 MiB at 16 MiB/s: the first 8 MiB part is stored after ~0.5 s, the kill comes well
    // before the end.
    killed_upload_resumes(40 << 20, 16 << 20);
}

/// The 1 GiB variant (minutes; not in `cargo test`):
/// `cargo test --release --test cli killed_resumable_upload_of_1_gib -- --ignored --nocapture`
#[test]
#[ignore = "long: 1 GiB through the CLI; run with --ignored"]
fn killed_resumable_upload_of_1_gib_resumes_byte_exact() {
    killed_upload_resumes(1 << 30, 128 << 20);
}
