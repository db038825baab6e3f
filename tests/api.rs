//! The HTTP API, end to end against the real binary: the happy paths on every storage backend
//! (local files and a real S3-compatible server), and the hostile cases of issue #2, each
//! asserting status, error `code`, and that nothing partial became visible.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Backend, Service, ServiceBuilder, backends, block_on, http};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- helpers

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

struct Api {
    base: String,
    key: String,
    c: reqwest::Client,
}

impl Api {
    fn new(svc: &Service) -> Api {
        Api {
            base: svc.base.clone(),
            key: svc.partner_key.clone(),
            c: http(),
        }
    }

    fn with_key(svc: &Service, key: &str) -> Api {
        Api {
            base: svc.base.clone(),
            key: key.to_string(),
            c: http(),
        }
    }

    async fn upload_raw(
        &self,
        kind: &str,
        format: &str,
        sha: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.c
            .post(format!("{}/v1/media", self.base))
            .bearer_auth(&self.key)
            .header("X-Media-Kind", kind)
            .header("X-Media-Format", format)
            .header("X-Media-Sha256", sha)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Upload and return (status, body JSON).
    async fn upload(&self, kind: &str, format: &str, body: &[u8]) -> (StatusCode, Value) {
        let r = self
            .upload_raw(kind, format, &sha_hex(body), body.to_vec())
            .await;
        let s = r.status();
        (s, r.json().await.unwrap())
    }

    async fn upload_ok(&self, body: &[u8]) -> String {
        let (s, v) = self.upload("document", "opaque", body).await;
        assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{s} {v}");
        v["id"].as_str().unwrap().to_string()
    }

    async fn mint(&self, id: &str, body: Value) -> reqwest::Response {
        self.c
            .post(format!("{}/v1/media/{id}/tokens", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn token(&self, id: &str) -> (String, String) {
        let r = self
            .mint(id, serde_json::json!({"audience": "peer-proxy"}))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        (
            v["token"].as_str().unwrap().to_string(),
            v["url"].as_str().unwrap().to_string(),
        )
    }

    async fn download(&self, token: &str) -> reqwest::Response {
        self.c
            .get(format!("{}/v1/download/{token}", self.base))
            .send()
            .await
            .unwrap()
    }

    async fn get_meta(&self, id: &str) -> reqwest::Response {
        self.c
            .get(format!("{}/v1/media/{id}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
    }

    async fn delete(&self, id: &str) -> reqwest::Response {
        self.c
            .delete(format!("{}/v1/media/{id}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
    }
}

/// Assert an RFC 9457 problem with this status and code.
async fn assert_problem(r: reqwest::Response, status: StatusCode, code: &str) {
    let got = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    assert_eq!(ct.as_deref(), Some("application/problem+json"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["code"], code, "{text}");
    assert_eq!(v["status"], status.as_u16());
}

/// Every stored media object of a local-file service.
fn local_media(svc: &Service) -> Vec<PathBuf> {
    common::s3::files_under(&svc.data_dir.join("objects").join("media"))
}

/// Stored media objects, whichever backend holds them (the bucket dir for S3).
fn stored(svc: &Service, backend: &Backend) -> Vec<PathBuf> {
    match backend {
        Backend::S3(s3) => s3
            .bucket_files()
            .into_iter()
            .filter(|p| p.starts_with("media"))
            .collect(),
        _ => local_media(svc),
    }
}

/// Send a raw HTTP/1.1 request head plus body pieces, then read whatever answer comes.
fn raw_request(
    addr: SocketAddr,
    head: &str,
    pieces: &[&[u8]],
    pause: Duration,
    close_write: bool,
) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    for p in pieces {
        if s.write_all(p).is_err() {
            break;
        }
        std::thread::sleep(pause);
    }
    if close_write {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn upload_head(key: &str, kind: &str, format: &str, sha: &str, framing: &str) -> String {
    format!(
        "POST /v1/media HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\nX-Media-Kind: {kind}\r\n\
         X-Media-Format: {format}\r\nX-Media-Sha256: {sha}\r\n{framing}\r\n"
    )
}

fn partner_config(id: &str, key: &str, scopes: &[&str]) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[partners.{id}]\nkey_sha256 = \"{}\"\nscopes = [{}]\n",
        sha_hex(key.as_bytes()),
        scopes.join(", ")
    )
}

// ---------------------------------------------------------------- every backend

async fn roundtrip_suite(svc: &Service, backend: &Backend) {
    let api = Api::new(svc);
    let name = backend.name();

    // Sizes around the 64 KiB at-rest chunk and the 5 MiB part size (multipart on S3).
    for (i, len) in [
        0usize,
        1,
        65_535,
        65_536,
        65_537,
        1_000_000,
        12 * 1024 * 1024 + 3,
    ]
    .into_iter()
    .enumerate()
    {
        let body = pattern(len, i as u8);
        let (s, v) = api.upload("document", "opaque", &body).await;
        assert_eq!(s, StatusCode::CREATED, "{name} len {len}: {v}");
        assert_eq!(v["size"], len as u64);
        assert_eq!(v["sha256"], sha_hex(&body));
        for k in ["id", "kind", "format", "created_at", "expires_at"] {
            assert!(v.get(k).is_some(), "{k} missing");
        }
        let id = v["id"].as_str().unwrap();
        let (token, url) = api.token(id).await;
        assert!(token.len() <= 200);
        let r = api.c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-length"], len.to_string().as_str());
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(r.headers()["cache-control"], "private");
        assert_eq!(
            r.headers()["etag"],
            format!("\"{}\"", sha_hex(&body)).as_str()
        );
        let got = r.bytes().await.unwrap();
        assert!(
            got[..] == body[..],
            "{name} len {len}: downloaded bytes differ"
        );
    }

    // Ranges over a 3-chunk blob.
    let body = pattern(200_000, 9);
    let id = api.upload_ok(&body).await;
    let (token, url) = api.token(&id).await;
    let range = |h: &'static str| {
        let c = api.c.clone();
        let url = url.clone();
        async move { c.get(&url).header("Range", h).send().await.unwrap() }
    };
    for (h, first, last) in [
        ("bytes=0-0", 0, 0),
        ("bytes=65530-65545", 65_530, 65_545),
        ("bytes=131072-", 131_072, 199_999),
        ("bytes=-10", 199_990, 199_999),
        ("bytes=5-999999999", 5, 199_999),
        ("bytes=0-99999999999999999999999", 0, 199_999),
    ] {
        let r = range(h).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{h}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes {first}-{last}/200000").as_str()
        );
        assert_eq!(&r.bytes().await.unwrap()[..], &body[first..=last], "{h}");
    }
    for h in ["bytes=0-1,5-6", "bytes=9-5", "bytes=abc", "lines=1-2"] {
        let r = range(h).await;
        assert_eq!(r.status(), StatusCode::OK, "{h} is ignored: whole body");
        assert_eq!(r.bytes().await.unwrap().len(), 200_000);
    }
    for h in ["bytes=200000-", "bytes=999999999999999999999-", "bytes=-0"] {
        let r = range(h).await;
        assert_eq!(r.headers()["content-range"], "bytes */200000", "{h}");
        assert_problem(
            r,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range-not-satisfiable",
        )
        .await;
    }
    // Conditional requests and HEAD.
    let etag = format!("\"{}\"", sha_hex(&body));
    let r = api
        .c
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = api
        .c
        .get(&url)
        .header("If-None-Match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = api
        .c
        .get(&url)
        .header("Range", "bytes=0-9")
        .header("If-Range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "If-Range mismatch sends everything"
    );
    let r = api.c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "200000");
    assert!(r.bytes().await.unwrap().is_empty());

    // Same blob again: the existing media, 200, nothing new stored.
    let before = stored(svc, backend).len();
    let (s, v) = api.upload("document", "opaque", &body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], id.as_str());
    assert_eq!(stored(svc, backend).len(), before);
    // Metadata.
    let r = api.get_meta(&id).await;
    assert_eq!(r.status(), StatusCode::OK);
    let m: Value = r.json().await.unwrap();
    assert_eq!(
        (m["id"].as_str(), m["size"].as_u64()),
        (Some(id.as_str()), Some(200_000))
    );

    // Formats with structure: accepted when well-formed.
    for (format, len) in [
        ("whatsapp", 26),
        ("whatsapp", 10 + 16 * 100),
        ("signal", 64),
        ("signal", 48 + 16 * 70),
    ] {
        let (s, v) = api.upload("image", format, &pattern(len, 3)).await;
        assert_eq!(s, StatusCode::CREATED, "{format} {len}: {v}");
        assert_eq!(v["format"], format);
    }
    // ...and rejected otherwise, with nothing stored.
    let before = stored(svc, backend).len();
    for (format, len) in [
        ("whatsapp", 25),
        ("whatsapp", 27),
        ("signal", 63),
        ("signal", 65),
    ] {
        let body = pattern(len, 4);
        let r = api.upload_raw("image", format, &sha_hex(&body), body).await;
        assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "format-invalid").await;
    }
    let body = pattern(5000, 5);
    let r = api
        .upload_raw("document", "opaque", &sha_hex(b"something else"), body)
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "digest-mismatch").await;
    assert_eq!(
        stored(svc, backend).len(),
        before,
        "{name}: a rejected upload left an object"
    );

    // At rest nothing of the blob is visible: not the marker, not the digest.
    let marker = b"INTEROP-MEDIA-PLAINTEXT-MARKER-7f3a9c";
    let mut blob = Vec::new();
    for _ in 0..20_000 {
        blob.extend_from_slice(marker);
    }
    let id = api.upload_ok(&blob).await;
    let files = stored(svc, backend);
    assert!(!files.is_empty());
    let root = match backend {
        Backend::S3(s3) => s3.bucket_dir(),
        _ => svc.data_dir.join("objects"),
    };
    let digest_hex = sha_hex(&blob);
    let digest_head = Sha256::digest(&blob)[..16].to_vec();
    for f in common::s3::files_under(&root) {
        let bytes = std::fs::read(root.join(&f)).unwrap_or_default();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "{name}: marker found in {f:?}"
        );
        assert!(
            !bytes.windows(16).any(|w| w == digest_head.as_slice()),
            "{name}: digest in {f:?}"
        );
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&digest_hex),
            "{name}: hex digest in {f:?}"
        );
        assert!(
            !f.to_string_lossy().contains("dev"),
            "{name}: partner id in object name {f:?}"
        );
    }

    // Delete: earlier tokens stop working, even after the same content comes back.
    let (old_token, _) = api.token(&id).await;
    assert_eq!(api.delete(&id).await.status(), StatusCode::NO_CONTENT);
    assert_problem(
        api.download(&old_token).await,
        StatusCode::NOT_FOUND,
        "media-not-found",
    )
    .await;
    assert_problem(
        api.get_meta(&id).await,
        StatusCode::NOT_FOUND,
        "media-not-found",
    )
    .await;
    assert_problem(
        api.delete(&id).await,
        StatusCode::NOT_FOUND,
        "media-not-found",
    )
    .await;
    let (s, v) = api.upload("document", "opaque", &blob).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["id"], id.as_str(), "same content, same id");
    assert_problem(
        api.download(&old_token).await,
        StatusCode::NOT_FOUND,
        "media-not-found",
    )
    .await;
    let (new_token, _) = api.token(&id).await;
    assert_eq!(api.download(&new_token).await.status(), StatusCode::OK);
    let _ = token;

    if let Backend::S3(s3) = backend {
        assert!(
            s3.pending_multipart_files().is_empty(),
            "open multipart uploads left behind"
        );
    }
}

#[test]
fn api_roundtrip_on_every_backend() {
    for backend in backends() {
        // 5 MiB parts so the 12 MiB upload is a real three-part multipart upload.
        let svc = ServiceBuilder::new()
            .backend(&backend)
            .env("INTEROP_MEDIA_STORAGE__PART_SIZE_MIB", "5")
            .spawn();
        block_on(roundtrip_suite(&svc, &backend));
    }
}

// ---------------------------------------------------------------- authentication

#[test]
fn auth_scopes_and_partner_isolation() {
    let other_key = "imk_other-partner-key-for-tests";
    let uploader_key = "imk_upload-only-key";
    let cfg = format!(
        "{}{}",
        partner_config("other", other_key, &["upload", "token", "delete"]),
        partner_config("uploader", uploader_key, &["upload"])
    );
    let mut svc = ServiceBuilder::new().config_toml(cfg).spawn();
    block_on(async {
        let dev = Api::new(&svc);
        let id = dev.upload_ok(b"partner A's media").await;
        let c = http();
        // No key, wrong scheme, unknown key.
        let r = c
            .post(format!("{}/v1/media", svc.base))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer")
        );
        assert_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        let r = c
            .get(format!("{}/v1/media/{id}", svc.base))
            .header("Authorization", format!("Basic {}", svc.partner_key))
            .send()
            .await
            .unwrap();
        assert_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        for key in [
            "imk_wrong",
            "",
            &svc.partner_key[..svc.partner_key.len() - 1],
        ] {
            let r = c
                .get(format!("{}/v1/media/{id}", svc.base))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            assert_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        }
        // Partner B sees nothing of A's media: 404, not 403.
        let b = Api::with_key(&svc, other_key);
        assert_problem(
            b.get_meta(&id).await,
            StatusCode::NOT_FOUND,
            "media-not-found",
        )
        .await;
        assert_problem(
            b.delete(&id).await,
            StatusCode::NOT_FOUND,
            "media-not-found",
        )
        .await;
        assert_problem(
            b.mint(&id, serde_json::json!({"audience": "x"})).await,
            StatusCode::NOT_FOUND,
            "media-not-found",
        )
        .await;
        assert_eq!(
            dev.get_meta(&id).await.status(),
            StatusCode::OK,
            "A's media survived B's delete"
        );
        // B uploading the same bytes gets its own media.
        let b_id = b.upload_ok(b"partner A's media").await;
        assert_ne!(b_id, id);
        // Scopes.
        let u = Api::with_key(&svc, uploader_key);
        let u_id = u.upload_ok(b"uploader's media").await;
        assert_problem(
            u.mint(&u_id, serde_json::json!({"audience": "x"})).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        assert_problem(u.delete(&u_id).await, StatusCode::FORBIDDEN, "forbidden").await;
        let r =
            u.c.post(format!("{}/v1/media?seal=whatsapp", svc.base))
                .bearer_auth(uploader_key)
                .body("x")
                .send()
                .await
                .unwrap();
        assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
        // Malformed ids are just unknown media.
        for bad in ["nothex", "00", "../../etc/passwd", &"A".repeat(32)] {
            let r = dev.get_meta(bad).await;
            assert!(r.status() == StatusCode::NOT_FOUND, "{bad}: {}", r.status());
        }
    });
    // Revoked: the partner is removed from configuration; its key stops working.
    let data = svc.data_dir.clone();
    svc.sigterm();
    svc.wait_exit(Duration::from_secs(20));
    let svc2 = ServiceBuilder::new().data_dir(&data).spawn();
    block_on(async {
        let r = Api::with_key(&svc2, other_key)
            .get_meta("00000000000000000000000000000000")
            .await;
        assert_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        assert_eq!(
            Api::new(&svc2)
                .upload("document", "opaque", b"dev still works")
                .await
                .0,
            StatusCode::CREATED
        );
    });
}

// ---------------------------------------------------------------- upload validation

#[test]
fn malformed_upload_headers() {
    let svc = ServiceBuilder::new().spawn();
    block_on(async {
        let api = Api::new(&svc);
        let body = b"0123456789".to_vec();
        let sha = sha_hex(&body);
        for (kind, format, digest, code) in [
            ("gif", "opaque", sha.as_str(), "unknown-kind"),
            ("IMAGE", "opaque", sha.as_str(), "unknown-kind"),
            ("image", "pgp", sha.as_str(), "unknown-format"),
            ("image", "opaque", "abc", "malformed-digest"),
            ("image", "opaque", &sha[..63], "malformed-digest"),
            ("image", "opaque", "zz", "malformed-digest"),
        ] {
            let r = api.upload_raw(kind, format, digest, body.clone()).await;
            assert_problem(r, StatusCode::BAD_REQUEST, code).await;
        }
        let r = api
            .c
            .post(format!("{}/v1/media", svc.base))
            .bearer_auth(&api.key)
            .header("X-Media-Kind", "image")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_problem(r, StatusCode::BAD_REQUEST, "missing-header").await;
        // Base64 digests are accepted too.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&body));
        assert_eq!(
            api.upload_raw("document", "opaque", &b64, body.clone())
                .await
                .status(),
            StatusCode::CREATED
        );
        assert_eq!(local_media(&svc).len(), 1);
    });
}

#[test]
fn oversized_truncated_overlong_and_stalled_bodies() {
    let svc = ServiceBuilder::new()
        .env("INTEROP_MEDIA_SERVER__BODY_IDLE_TIMEOUT_S", "1")
        .spawn();
    let key = svc.partner_key.clone();
    let addr = svc.addr;

    // Declared over the kind's limit: 413 before any body byte is sent.
    let started = Instant::now();
    let resp = raw_request(
        addr,
        &upload_head(
            &key,
            "image",
            "opaque",
            &"a".repeat(64),
            "Content-Length: 6000000\r\n",
        ),
        &[],
        Duration::ZERO,
        false,
    );
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("\"code\":\"too-large\""), "{resp}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // 2 GB sealed video: allowed size, but a whatsapp blob of that length is malformed: 422 early.
    let resp = raw_request(
        addr,
        &upload_head(
            &key,
            "video",
            "whatsapp",
            &"a".repeat(64),
            "Content-Length: 2000000001\r\n",
        ),
        &[],
        Duration::ZERO,
        false,
    );
    assert!(
        resp.starts_with("HTTP/1.1 422") && resp.contains("format-invalid"),
        "{resp}"
    );

    // Chunked body that grows past the limit: 413 once it crosses.
    let sticker_limit = 563_200usize;
    let piece = vec![7u8; 100_000];
    let mut chunks = Vec::new();
    for _ in 0..7 {
        chunks.push(format!("{:x}\r\n", piece.len()).into_bytes());
        chunks.push(piece.clone());
        chunks.push(b"\r\n".to_vec());
    }
    chunks.push(b"0\r\n\r\n".to_vec());
    let refs: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
    let resp = raw_request(
        addr,
        &upload_head(
            &key,
            "sticker",
            "opaque",
            &"a".repeat(64),
            "Transfer-Encoding: chunked\r\n",
        ),
        &refs,
        Duration::ZERO,
        false,
    );
    assert!(
        resp.starts_with("HTTP/1.1 413") && resp.contains("too-large"),
        "limit {sticker_limit}: {resp}"
    );

    // Chunked, well-formed: accepted.
    let body = pattern(150_000, 1);
    let framed = [
        format!("{:x}\r\n", body.len()).into_bytes(),
        body.clone(),
        b"\r\n0\r\n\r\n".to_vec(),
    ];
    let refs: Vec<&[u8]> = framed.iter().map(|c| c.as_slice()).collect();
    let resp = raw_request(
        addr,
        &upload_head(
            &key,
            "document",
            "opaque",
            &sha_hex(&body),
            "Transfer-Encoding: chunked\r\nConnection: close\r\n",
        ),
        &refs,
        Duration::ZERO,
        false,
    );
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let baseline = local_media(&svc).len();
    assert_eq!(baseline, 1);

    // Body longer than Content-Length: only Content-Length bytes belong to the upload; they do
    // not hash to the digest of the whole thing, so nothing is stored.
    let long = pattern(10_010, 2);
    let resp = raw_request(
        addr,
        &upload_head(
            &key,
            "document",
            "opaque",
            &sha_hex(&long),
            "Content-Length: 10000\r\n",
        ),
        &[&long],
        Duration::ZERO,
        true,
    );
    assert!(
        resp.starts_with("HTTP/1.1 422") && resp.contains("digest-mismatch"),
        "{resp}"
    );

    // Body shorter than Content-Length, then the client hangs up: nothing stored.
    let short = pattern(4_000, 3);
    let _ = raw_request(
        addr,
        &upload_head(
            &key,
            "document",
            "opaque",
            &sha_hex(&pattern(10_000, 3)),
            "Content-Length: 10000\r\n",
        ),
        &[&short],
        Duration::ZERO,
        true,
    );

    // A body that stalls is cut after the idle timeout (1 s here) with 408.
    let started = Instant::now();
    let resp = raw_request(
        addr,
        &upload_head(
            &key,
            "document",
            "opaque",
            &"b".repeat(64),
            "Content-Length: 10000\r\n",
        ),
        &[b"only a little"],
        Duration::ZERO,
        false,
    );
    assert!(
        resp.starts_with("HTTP/1.1 408") && resp.contains("body-timeout"),
        "{resp}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cut after {:?}",
        started.elapsed()
    );

    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        local_media(&svc).len(),
        baseline,
        "a failed upload became visible"
    );
    // No staging leftovers from the aborted ones either.
    let leftovers: Vec<_> = common::s3::files_under(&svc.data_dir.join("objects"))
        .into_iter()
        .filter(|p| !p.starts_with("media"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The service is still healthy.
    assert!(
        block_on(http().get(svc.url("/healthz")).send())
            .unwrap()
            .status()
            .is_success()
    );
}

// ---------------------------------------------------------------- tokens

#[test]
fn token_attacks() {
    let svc = ServiceBuilder::new()
        .env("INTEROP_MEDIA_TOKENS__CLOCK_SKEW_S", "0")
        .spawn();
    // A second service with other keys: its tokens must not open this one's media.
    let stranger = ServiceBuilder::new().spawn();
    block_on(async {
        let api = Api::new(&svc);
        let body = pattern(1000, 8);
        let id = api.upload_ok(&body).await;
        let (token, _) = api.token(&id).await;
        assert_eq!(api.download(&token).await.status(), StatusCode::OK);

        // TTL: default 300 s, capped at the configured max (3600 s), 0 refused.
        let v: Value = api
            .mint(&id, serde_json::json!({"audience": "a", "ttl_s": 999_999}))
            .await
            .json()
            .await
            .unwrap();
        let exp = humantime::parse_rfc3339(v["expires_at"].as_str().unwrap()).unwrap();
        let left = exp
            .duration_since(std::time::SystemTime::now())
            .unwrap()
            .as_secs();
        assert!((3590..=3600).contains(&left), "{left}");
        assert_problem(
            api.mint(&id, serde_json::json!({"audience": "a", "ttl_s": 0}))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid-field",
        )
        .await;
        assert_problem(
            api.mint(&id, serde_json::json!({"audience": ""})).await,
            StatusCode::BAD_REQUEST,
            "invalid-field",
        )
        .await;
        assert_problem(
            api.mint(&id, serde_json::json!({"audience": "x".repeat(33)}))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid-field",
        )
        .await;
        let r = api
            .c
            .post(format!("{}/v1/media/{id}/tokens", svc.base))
            .bearer_auth(&api.key)
            .header("content-type", "application/json")
            .body("{nope")
            .send()
            .await
            .unwrap();
        assert_problem(r, StatusCode::BAD_REQUEST, "malformed-json").await;

        // Every single-character change is refused (401), never a 5xx or the media.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for i in 0..token.len() {
            let mut t = token.clone().into_bytes();
            t[i] = if t[i] == alphabet[0] {
                alphabet[1]
            } else {
                alphabet[0]
            };
            let t = String::from_utf8(t).unwrap();
            let r = api.download(&t).await;
            let s = r.status();
            assert!(s == StatusCode::UNAUTHORIZED, "char {i}: {s}");
        }
        // Truncated, garbage, huge.
        for t in [
            &token[..token.len() - 1],
            &token[..20],
            "garbage",
            "....",
            &"A".repeat(10_000),
        ] {
            let r = api.download(t).await;
            assert!(
                r.status() == StatusCode::UNAUTHORIZED || r.status() == StatusCode::NOT_FOUND,
                "{}",
                r.status()
            );
            let v: Value = r.json().await.unwrap();
            assert!(
                v["code"].as_str().unwrap().starts_with("token-") || v["code"] == "not-found",
                "{v}"
            );
        }
        assert_problem(
            api.download(&token[..token.len() - 2]).await,
            StatusCode::UNAUTHORIZED,
            "token-invalid",
        )
        .await;
        // Signed by another deployment with the same kid: bad signature.
        let s_api = Api::new(&stranger);
        let s_id = s_api.upload_ok(&body).await;
        let (s_token, _) = s_api.token(&s_id).await;
        assert_problem(
            api.download(&s_token).await,
            StatusCode::UNAUTHORIZED,
            "token-invalid",
        )
        .await;

        // Expired (ttl 1 s, no skew allowance configured here).
        let v: Value = api
            .mint(&id, serde_json::json!({"audience": "a", "ttl_s": 1}))
            .await
            .json()
            .await
            .unwrap();
        let short = v["token"].as_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_problem(
            api.download(&short).await,
            StatusCode::UNAUTHORIZED,
            "token-expired",
        )
        .await;

        // Minted for media that was then deleted.
        let other = api.upload_ok(b"to be deleted").await;
        let (t_other, _) = api.token(&other).await;
        assert_eq!(api.delete(&other).await.status(), StatusCode::NO_CONTENT);
        assert_problem(
            api.download(&t_other).await,
            StatusCode::NOT_FOUND,
            "media-not-found",
        )
        .await;
        // The original token still works.
        assert_eq!(
            &api.download(&token).await.bytes().await.unwrap()[..],
            &body[..]
        );
    });

    // Unknown kid: a token key ring rotated to a new kid, then the old kid removed.
    let data = svc.data_dir.clone();
    let keys = std::fs::read_to_string(data.join("dev-keys.toml")).unwrap();
    let rotated = ServiceBuilder::new()
        .data_dir(&data)
        .env("INTEROP_MEDIA_TOKENS__ACTIVE", "t2")
        .env(
            "INTEROP_MEDIA_TOKENS__KEYS__T2__KEY",
            "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
        )
        .spawn();
    let token_t2 = block_on(async {
        let api = Api::new(&rotated);
        let id = api.upload_ok(&pattern(1000, 8)).await;
        api.token(&id).await.0
    });
    drop(rotated);
    assert!(keys.contains("[tokens.keys.dev]"));
    let back = ServiceBuilder::new().data_dir(&data).spawn();
    block_on(async {
        assert_problem(
            Api::new(&back).download(&token_t2).await,
            StatusCode::UNAUTHORIZED,
            "token-unknown-key",
        )
        .await;
    });
}

// ---------------------------------------------------------------- replicas

#[test]
fn duplicate_uploads_race_on_two_replicas() {
    for backend in backends() {
        let a = ServiceBuilder::new().backend(&backend).spawn();
        // Same data dir: same dev keys (and, for local files, the same store).
        let b = ServiceBuilder::new()
            .backend(&backend)
            .data_dir(&a.data_dir)
            .spawn();
        block_on(async {
            let (ra, rb) = (Api::new(&a), Api::new(&b));
            for round in 0..15u8 {
                let body = pattern(100_000 + round as usize, round);
                let (x, y) = tokio::join!(
                    ra.upload("video", "opaque", &body),
                    rb.upload("video", "opaque", &body)
                );
                assert_eq!(x.1["id"], y.1["id"], "round {round}");
                let mut statuses = [x.0.as_u16(), y.0.as_u16()];
                statuses.sort();
                assert_eq!(
                    statuses,
                    [200, 201],
                    "round {round}: exactly one replica creates"
                );
                // Either replica serves a token minted by the other.
                let id = x.1["id"].as_str().unwrap();
                let (t, _) = ra.token(id).await;
                assert_eq!(&rb.download(&t).await.bytes().await.unwrap()[..], &body[..]);
            }
        });
    }
}

// ---------------------------------------------------------------- retention

#[test]
fn expired_media_answers_410_and_sweep_deletes_it() {
    let svc = ServiceBuilder::new()
        .env("INTEROP_MEDIA_RETENTION__TTL_S", "2")
        .spawn();
    let (id, token) = block_on(async {
        let api = Api::new(&svc);
        let id = api.upload_ok(&pattern(5000, 1)).await;
        let (t, _) = api.token(&id).await;
        (id, t)
    });
    let keep = block_on(async { Api::new(&svc).upload_ok(&pattern(10, 1)).await });
    std::thread::sleep(Duration::from_millis(2500));
    block_on(async {
        let api = Api::new(&svc);
        assert_problem(api.get_meta(&id).await, StatusCode::GONE, "media-expired").await;
        assert_problem(
            api.download(&token).await,
            StatusCode::GONE,
            "media-expired",
        )
        .await;
        assert_problem(
            api.mint(&id, serde_json::json!({"audience": "a"})).await,
            StatusCode::GONE,
            "media-expired",
        )
        .await;
    });
    let _ = keep;
    assert_eq!(local_media(&svc).len(), 2);
    let sweep = |extra: &[&str]| {
        let out = std::process::Command::new(common::server::BIN)
            .arg("sweep")
            .args(extra)
            .arg("--config")
            .arg(svc.data_dir.join("dev-keys.toml"))
            .env(
                "INTEROP_MEDIA_STORAGE__URL",
                format!("file://{}", svc.data_dir.join("objects").display()),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let dry = sweep(&["--dry-run"]);
    assert_eq!(
        (
            dry["scanned"].as_u64(),
            dry["expired"].as_u64(),
            dry["deleted"].as_u64()
        ),
        (Some(2), Some(2), Some(0))
    );
    assert_eq!(local_media(&svc).len(), 2);
    let done = sweep(&[]);
    assert_eq!(done["deleted"], 2);
    assert!(local_media(&svc).is_empty());
}

// ---------------------------------------------------------------- operations

#[test]
fn health_metrics_and_openapi() {
    let svc = ServiceBuilder::new().spawn();
    block_on(async {
        let c = http();
        assert_eq!(
            c.get(svc.url("/healthz")).send().await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(
            c.get(svc.url("/readyz")).send().await.unwrap().status(),
            StatusCode::OK
        );
        let api = Api::new(&svc);
        let id = api.upload_ok(&pattern(70_000, 1)).await;
        let (t, _) = api.token(&id).await;
        api.download(&t).await.bytes().await.unwrap();
        api.download("garbage").await;
        let _ = api
            .upload_raw("image", "opaque", &"0".repeat(64), b"x".to_vec())
            .await;
        let text = c
            .get(svc.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for name in [
            "interop_media_http_requests_total{method=\"POST\",route=\"/v1/media\",status=\"201\"}",
            "interop_media_http_request_duration_seconds_bucket",
            "interop_media_media_bytes_in_total{kind=\"document\"} 70000",
            "interop_media_media_bytes_out_total{kind=\"document\"} 70000",
            "interop_media_store_request_duration_seconds_bucket",
            "interop_media_tokens_minted_total 1",
            "interop_media_tokens_rejected_total{reason=\"malformed\"} 1",
            "interop_media_uploads_rejected_total{reason=\"digest-mismatch\"} 1",
            "interop_media_uploads_in_flight 0",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(!text.contains(&t), "a token leaked into metrics");
        assert!(text.contains("route=\"/v1/download/{token}\""));
        let doc: Value = c
            .get(svc.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let r = c.get(svc.url("/no/such/route")).send().await.unwrap();
        assert_problem(r, StatusCode::NOT_FOUND, "not-found").await;
    });
    // Logs carry neither the partner key nor tokens.
    // (--dev prints its generated partner key once, on the line that says so.)
    let log = std::fs::read_to_string(&svc.log_path).unwrap();
    let mentions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&svc.partner_key))
        .collect();
    assert_eq!(mentions.len(), 1, "{mentions:?}");
    assert!(
        mentions[0].starts_with("dev partner key (shown once"),
        "{mentions:?}"
    );
    assert!(!log.contains("AQE"), "something token-shaped was logged");
}

#[test]
fn sigterm_drains_then_exits_zero_and_aborts_unfinished_uploads() {
    let mut svc = ServiceBuilder::new()
        .env("INTEROP_MEDIA_SERVER__DRAIN_DELAY_S", "2")
        .env("INTEROP_MEDIA_SERVER__SHUTDOWN_GRACE_S", "2")
        .env("INTEROP_MEDIA_STORAGE__PART_SIZE_MIB", "5")
        .spawn();
    let addr = svc.addr;
    let key = svc.partner_key.clone();
    // An upload that will still be running at the deadline: 6 MiB sent of 20 MiB declared,
    // so a multipart upload is open.
    let slow = std::thread::spawn(move || {
        let head = upload_head(
            &key,
            "video",
            "opaque",
            &"c".repeat(64),
            "Content-Length: 20971520\r\n",
        );
        let first = vec![1u8; 6 << 20];
        let trickle = vec![2u8; 1024];
        let mut pieces: Vec<&[u8]> = vec![&first];
        pieces.extend(std::iter::repeat_n(trickle.as_slice(), 12));
        raw_request(addr, &head, &pieces, Duration::from_millis(500), false)
    });
    std::thread::sleep(Duration::from_millis(800));
    svc.sigterm();
    std::thread::sleep(Duration::from_millis(500));
    let r = block_on(http().get(svc.url("/readyz")).send()).unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "readiness fails while draining"
    );
    // New uploads are refused while draining.
    let r =
        block_on(Api::new(&svc).upload_raw("document", "opaque", &sha_hex(b"x"), b"x".to_vec()));
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let status = svc.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    let _ = slow.join();
    assert!(
        local_media(&svc).is_empty(),
        "the unfinished upload must not become visible"
    );
    let staged: Vec<_> = common::s3::files_under(&svc.data_dir.join("objects"));
    assert!(
        staged.is_empty(),
        "multipart staging left behind: {staged:?}"
    );
}

#[test]
fn config_check_and_keygen() {
    let bin = common::server::BIN;
    let dir = tempfile::tempdir().unwrap();
    let keygen = std::process::Command::new(bin)
        .arg("keygen")
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let generated = String::from_utf8(keygen.stdout).unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &generated).unwrap();
    let check = |path: &Path, envs: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["config", "check", "--config"]).arg(path);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = check(&good, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Environment overrides the file, and errors name the offending key.
    let out = check(&good, &[("INTEROP_MEDIA_SERVER__LISTEN", "not-an-address")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.listen"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        generated.replace("scopes = [\"upload\"", "scopes = [\"uplaod\""),
    )
    .unwrap();
    let out = check(&bad, &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("partners.example.scopes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A secret as value and file at once is refused.
    let out = check(
        &good,
        &[("INTEROP_MEDIA_KEYS__MASTER__K1__KEY_FILE", "/dev/null")],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("keys.master.k1.key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Keys never appear in `config check` output.
    let key_line = generated.lines().find(|l| l.starts_with("key = ")).unwrap();
    assert!(!String::from_utf8_lossy(&check(&good, &[]).stdout).contains(&key_line[7..20]));
}
