//! The client CLI end to end: `upload` seals and uploads through a running service, `download`
//! fetches with the token, verifies and decrypts, and the plaintext comes back identical;
//! `open` refuses tampered blobs and bad descriptors with distinct exit codes.

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
