//! Resumable uploads (tus 1.0) against the real binary, on local files and on a real
//! S3-compatible server: the reference client `tus-js-client` interrupted and resumed on a
//! second replica, replicas racing on one offset, and the hostile cases, each asserting the
//! status, the error `code`, and that nothing partial became visible.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Backend, Service, ServiceBuilder, backends, block_on, http};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Part size the replicas run with (the smallest S3 accepts), so tests cross part
/// boundaries with small files.
const P: usize = 5 << 20;

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn data(len: usize, seed: u64) -> Vec<u8> {
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

fn metadata(kind: &str, format: &str, sha: &str) -> String {
    format!(
        "kind {},format {},sha256 {},filename {}",
        STANDARD.encode(kind),
        STANDARD.encode(format),
        STANDARD.encode(sha),
        STANDARD.encode("clip.mp4.enc"),
    )
}

/// Two replicas of the service sharing one data dir (so one set of keys) and one store.
struct Replicas {
    a: Service,
    b: Service,
    _dir: tempfile::TempDir,
}

fn replicas(backend: &Backend, env: &[(&str, &str)]) -> Replicas {
    let dir = tempfile::Builder::new()
        .prefix("interop-media-tus-")
        .tempdir()
        .unwrap();
    let spawn = || {
        let mut b = ServiceBuilder::new()
            .data_dir(dir.path())
            .backend(backend)
            .env(
                "INTEROP_MEDIA_STORAGE__PART_SIZE_MIB",
                (P >> 20).to_string(),
            );
        for (k, v) in env {
            b = b.env(*k, *v);
        }
        b.spawn()
    };
    let a = spawn();
    let b = spawn();
    Replicas { a, b, _dir: dir }
}

/// A minimal tus client for the protocol-level cases.
struct Tus {
    base: String,
    key: String,
    c: reqwest::Client,
}

impl Tus {
    fn new(svc: &Service) -> Tus {
        Tus {
            base: svc.base.clone(),
            key: svc.partner_key.clone(),
            c: http(),
        }
    }

    fn with_key(svc: &Service, key: &str) -> Tus {
        Tus {
            base: svc.base.clone(),
            key: key.to_string(),
            c: http(),
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.c
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.key)
            .header("tus-resumable", "1.0.0")
    }

    /// POST creation (no body); returns the upload path.
    async fn create(&self, len: usize, meta: &str) -> String {
        let r = self
            .req(reqwest::Method::POST, "/v1/uploads/")
            .header("upload-length", len.to_string())
            .header("upload-metadata", meta)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        assert!(loc.starts_with("/v1/uploads/"), "{loc}");
        loc
    }

    async fn create_for(&self, body: &[u8]) -> String {
        self.create(body.len(), &metadata("video", "opaque", &sha_hex(body)))
            .await
    }

    async fn head(&self, path: &str) -> reqwest::Response {
        self.req(reqwest::Method::HEAD, path).send().await.unwrap()
    }

    async fn offset(&self, path: &str) -> u64 {
        let r = self.head(path).await;
        assert_eq!(r.status(), StatusCode::OK, "HEAD {path}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        r.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    async fn patch(&self, path: &str, offset: u64, body: Vec<u8>) -> reqwest::Response {
        self.patch_with(path, offset, body, None).await
    }

    async fn patch_with(
        &self,
        path: &str,
        offset: u64,
        body: Vec<u8>,
        checksum: Option<String>,
    ) -> reqwest::Response {
        let mut r = self
            .req(reqwest::Method::PATCH, path)
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset.to_string());
        if let Some(c) = checksum {
            r = r.header("upload-checksum", c);
        }
        r.body(body).send().await.unwrap()
    }

    async fn delete(&self, path: &str) -> reqwest::Response {
        self.req(reqwest::Method::DELETE, path)
            .send()
            .await
            .unwrap()
    }

    /// Mint a token for a media and download it.
    async fn download(&self, id: &str) -> Vec<u8> {
        let r = self
            .c
            .post(format!("{}/v1/media/{id}/tokens", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"audience": "tests"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "mint for {id}");
        let v: Value = r.json().await.unwrap();
        let r = self.c.get(v["url"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.bytes().await.unwrap().to_vec()
    }
}

fn media_id(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("media-id")
        .map(|v| v.to_str().unwrap().to_string())
}

async fn assert_problem(r: reqwest::Response, status: u16, code: &str) {
    assert_eq!(r.status().as_u16(), status, "expected {status} {code}");
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    if r.status().as_u16() == 404 && r.headers().get("content-type").is_none() {
        return; // HEAD: no body
    }
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !v.is_null() {
        assert_eq!(v["code"], code, "{v}");
    }
}

/// Files the backend keeps for one upload, and every media object.
fn upload_files(backend: &Backend, svc: &Service, path: &str) -> Vec<PathBuf> {
    let uid = path.rsplit('/').next().unwrap();
    let dir = backend.storage_dir(svc).unwrap();
    common::s3::files_under(&dir.join("uploads").join(uid))
}

fn media_files(backend: &Backend, svc: &Service) -> Vec<PathBuf> {
    let dir = backend.storage_dir(svc).unwrap().join("media");
    common::s3::files_under(&dir)
}

/// After a finished or discarded upload only log records may remain, and no multipart
/// upload may be pending (cleanup runs just after the response, so allow it a moment).
fn assert_clean(backend: &Backend, svc: &Service, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stray: Vec<_> = upload_files(backend, svc, path)
            .into_iter()
            .filter(|p| !p.starts_with("log"))
            .collect();
        let pending = backend
            .s3()
            .map(|s3| s3.pending_multipart_files())
            .unwrap_or_default();
        if stray.is_empty() && pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: leftovers {stray:?}, pending multipart {pending:?}",
            backend.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- tus-js-client

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn ensure_client() {
    static SETUP: OnceLock<()> = OnceLock::new();
    SETUP.get_or_init(|| {
        if !interop_dir().join("node_modules/tus-js-client").is_dir() {
            let status = Command::new("bash")
                .arg(interop_dir().join("setup.sh"))
                .status()
                .expect("run tests/interop/setup.sh (needs bash, node and npm)");
            assert!(status.success(), "tests/interop/setup.sh failed");
        }
    });
}

/// Run tus-js-client over `steps` (see tests/interop/tus.js).
fn tus_js(work: &Path, manifest: Value) -> Value {
    ensure_client();
    let path = work.join("tus-manifest.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let out = Command::new("node")
        .arg(interop_dir().join("tus.js"))
        .arg(&path)
        .current_dir(interop_dir())
        .output()
        .expect("run node (is Node.js installed?)");
    assert!(
        out.status.success(),
        "tus.js failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The plan for one size: created on A by a bare POST, then fed by tus-js-client in steps
/// that alternate replicas, stopping after whole PATCHes and cutting connections mid-PATCH.
fn steps_for(len: usize, a: &str, b: &str) -> Vec<Value> {
    match len {
        0 | 1 => vec![json!({"endpoint": b})],
        n if n < 8 * P => vec![
            json!({"endpoint": b, "chunkSize": n / 2 + 7, "abortAfterChunks": 1}),
            json!({"endpoint": a, "abortAtBytes": (n - n / 2) / 2}),
            json!({"endpoint": b}),
        ],
        _ => vec![
            json!({"endpoint": b, "chunkSize": P + 1, "abortAfterChunks": 2}),
            json!({"endpoint": a, "abortAtBytes": 3 * P}),
            json!({"endpoint": b, "chunkSize": 2 * P - 1, "abortAfterChunks": 1}),
            json!({"endpoint": a}),
        ],
    }
}

#[test]
fn tus_js_client_resumes_on_a_second_replica() {
    for backend in backends() {
        let r = replicas(&backend, &[]);
        let work = tempfile::tempdir().unwrap();
        let (ta, tb) = (Tus::new(&r.a), Tus::new(&r.b));
        for (i, len) in [0, 1, P - 1, P, P + 1, 10 * P + 1].into_iter().enumerate() {
            let body = data(len, 1000 + i as u64);
            let file = work.path().join(format!("blob-{len}"));
            std::fs::write(&file, &body).unwrap();
            let sha = sha_hex(&body);
            let path = block_on(ta.create(len, &metadata("video", "opaque", &sha)));
            let manifest = json!({
                "file": file,
                "key": r.a.partner_key,
                "kind": "video",
                "format": "opaque",
                "sha256": sha,
                "uploadUrl": format!("{}{}", r.a.base, path),
                "steps": steps_for(len, &r.a.base, &r.b.base),
            });
            let result = tus_js(work.path(), manifest);
            let steps = result["steps"].as_array().unwrap();
            assert_eq!(steps.last().unwrap()["done"], true, "{result}");
            // Every interrupted step left the upload further along than it found it.
            for w in steps.windows(2) {
                if let (Some(x), Some(y)) =
                    (w[0]["startOffset"].as_u64(), w[1]["startOffset"].as_u64())
                {
                    assert!(
                        y > x || len == 0,
                        "{}: no progress across {w:?}",
                        backend.name()
                    );
                }
            }
            block_on(async {
                // Either replica reports the result, with the media id.
                for t in [&ta, &tb] {
                    let h = t.head(&path).await;
                    assert_eq!(h.status(), StatusCode::OK);
                    assert_eq!(h.headers()["upload-offset"], len.to_string().as_str());
                    assert_eq!(h.headers()["upload-length"], len.to_string().as_str());
                    let id = media_id(&h).expect("Media-Id on a finished upload");
                    if let Some(from_client) = result["mediaId"].as_str() {
                        assert_eq!(from_client, id);
                    }
                    let got = t.download(&id).await;
                    assert_eq!(got.len(), len, "{} len {len}", backend.name());
                    assert!(got == body, "{} len {len}: bytes differ", backend.name());
                }
            });
            assert_clean(&backend, &r.a, &path);
        }
    }
}

// ---------------------------------------------------------------- protocol and hostile cases

#[test]
fn options_advertise_the_protocol_without_a_key() {
    let svc = ServiceBuilder::new().spawn();
    block_on(async {
        for path in ["/v1/uploads/", "/v1/uploads"] {
            let r = http()
                .request(reqwest::Method::OPTIONS, svc.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
            let h = r.headers();
            assert_eq!(h["tus-version"], "1.0.0");
            assert_eq!(h["tus-resumable"], "1.0.0");
            assert_eq!(h["tus-checksum-algorithm"], "sha256");
            let ext: Vec<_> = h["tus-extension"].to_str().unwrap().split(',').collect();
            for e in [
                "creation",
                "creation-with-upload",
                "expiration",
                "checksum",
                "termination",
            ] {
                assert!(ext.contains(&e), "{ext:?} lacks {e}");
            }
            let max: u64 = h["tus-max-size"].to_str().unwrap().parse().unwrap();
            assert!(max >= 2 << 30, "{max}");
        }
    });
}

#[test]
fn protocol_and_hostile_cases_on_every_backend() {
    for backend in backends() {
        let r = replicas(&backend, &[]);
        block_on(hostile_suite(&backend, &r));
    }
}

async fn hostile_suite(backend: &Backend, r: &Replicas) {
    let name = backend.name();
    let t = Tus::new(&r.a);
    let body = data(P + 3, 7);
    let meta = metadata("video", "opaque", &sha_hex(&body));

    // Creation: refused requests leave nothing behind.
    let before = common::s3::files_under(&backend.storage_dir(&r.a).unwrap().join("uploads"));
    let post = || t.req(reqwest::Method::POST, "/v1/uploads/");
    let no_version = http()
        .post(r.a.url("/v1/uploads/"))
        .bearer_auth(&r.a.partner_key)
        .header("upload-length", "10")
        .header("upload-metadata", &meta)
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.headers()["tus-version"], "1.0.0");
    assert_problem(no_version, 412, "tus-version-unsupported").await;
    let no_key = http()
        .post(r.a.url("/v1/uploads/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10")
        .send()
        .await
        .unwrap();
    assert_problem(no_key, 401, "unauthenticated").await;
    let r1 = post()
        .header("upload-metadata", &meta)
        .send()
        .await
        .unwrap();
    assert_problem(r1, 400, "missing-header").await;
    let r1 = post()
        .header("upload-defer-length", "1")
        .header("upload-metadata", &meta)
        .send()
        .await
        .unwrap();
    assert_problem(r1, 400, "invalid-field").await;
    let r1 = post()
        .header("upload-length", "10")
        .header(
            "upload-metadata",
            format!("kind {}", STANDARD.encode("video")),
        )
        .send()
        .await
        .unwrap();
    assert_problem(r1, 400, "malformed-metadata").await;
    let r1 = post()
        .header("upload-length", "10")
        .header("upload-metadata", "kind !!!notbase64")
        .send()
        .await
        .unwrap();
    assert_problem(r1, 400, "malformed-metadata").await;
    let r1 = post()
        .header("upload-length", "10")
        .header(
            "upload-metadata",
            metadata("hologram", "opaque", &sha_hex(b"x")),
        )
        .send()
        .await
        .unwrap();
    assert_problem(r1, 400, "unknown-kind").await;
    let r1 = post()
        .header("upload-length", "10")
        .header("upload-metadata", metadata("video", "opaque", "abc"))
        .send()
        .await
        .unwrap();
    assert_problem(r1, 400, "malformed-digest").await;
    let r1 = post()
        .header("upload-length", (6u64 << 20).to_string())
        .header(
            "upload-metadata",
            metadata("image", "opaque", &sha_hex(b"x")),
        )
        .send()
        .await
        .unwrap();
    assert_problem(r1, 413, "too-large").await;
    let r1 = post()
        .header("upload-length", "100")
        .header(
            "upload-metadata",
            metadata("image", "whatsapp", &sha_hex(b"x")),
        )
        .send()
        .await
        .unwrap();
    assert_problem(r1, 422, "format-invalid").await;
    let after = common::s3::files_under(&backend.storage_dir(&r.a).unwrap().join("uploads"));
    assert_eq!(before, after, "{name}: a refused creation stored something");

    // A fresh upload reports offset 0 and no media: never a 0-byte "complete" object.
    let path = t.create(body.len(), &meta).await;
    let h = t.head(&path).await;
    assert_eq!(h.headers()["upload-offset"], "0");
    assert_eq!(
        h.headers()["upload-length"],
        body.len().to_string().as_str()
    );
    assert_eq!(h.headers()["upload-metadata"], meta.as_str());
    assert!(h.headers().contains_key("upload-expires"));
    assert!(media_id(&h).is_none());
    let empty = t.patch(&path, 0, Vec::new()).await;
    assert_eq!(empty.status(), StatusCode::NO_CONTENT);
    assert_eq!(empty.headers()["upload-offset"], "0");
    assert!(media_id(&empty).is_none());
    assert!(media_files(backend, &r.a).is_empty(), "{name}");

    // Wrong offset, wrong content type, no offset: 409 / 415 / 400, offset unchanged.
    let res = t.patch(&path, 5, body[5..10].to_vec()).await;
    assert_problem(res, 409, "upload-offset-mismatch").await;
    let res = t
        .req(reqwest::Method::PATCH, &path)
        .header("content-type", "application/octet-stream")
        .header("upload-offset", "0")
        .body(body[..10].to_vec())
        .send()
        .await
        .unwrap();
    assert_problem(res, 415, "unsupported-content-type").await;
    let res = t
        .req(reqwest::Method::PATCH, &path)
        .header("content-type", "application/offset+octet-stream")
        .body(body[..10].to_vec())
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "missing-header").await;
    assert_eq!(t.offset(&path).await, 0);

    // Checksums: a mismatch is 460 and keeps nothing; an unknown algorithm is 400.
    let first = body[..1_000_000].to_vec();
    let good = format!("sha256 {}", STANDARD.encode(Sha256::digest(&first)));
    let bad = format!("sha256 {}", STANDARD.encode(Sha256::digest(b"other")));
    let res = t.patch_with(&path, 0, first.clone(), Some(bad)).await;
    assert_problem(res, 460, "checksum-mismatch").await;
    assert_eq!(t.offset(&path).await, 0, "{name}: 460 moved the offset");
    let res = t
        .patch_with(
            &path,
            0,
            first.clone(),
            Some(format!("sha1 {}", STANDARD.encode([0u8; 20]))),
        )
        .await;
    assert_problem(res, 400, "checksum-algorithm-unsupported").await;
    let res = t.patch_with(&path, 0, first.clone(), Some(good)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT, "{name}");
    assert_eq!(res.headers()["upload-offset"], "1000000");

    // Another partner does not see it; a body longer than the rest is 413.
    let other = Tus::with_key(&r.a, "imk_not-a-partner");
    assert_problem(other.head(&path).await, 401, "unauthenticated").await;
    let res = t.patch(&path, 1_000_000, vec![0; body.len()]).await;
    assert_problem(res, 413, "too-large").await;
    assert_eq!(t.offset(&path).await, 1_000_000);

    // The rest on the other replica, split so the final PATCH is a single byte (the "lost
    // tiny final chunk" bug of other servers).
    let tb = Tus::new(&r.b);
    let res = tb
        .patch(&path, 1_000_000, body[1_000_000..body.len() - 1].to_vec())
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT, "{name}");
    assert!(media_id(&res).is_none());
    let last = body.len() as u64 - 1;
    let res = tb.patch(&path, last, body[body.len() - 1..].to_vec()).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT, "{name}");
    let id = media_id(&res).expect("Media-Id on the final PATCH");
    assert_eq!(t.download(&id).await, body, "{name}");
    assert_clean(backend, &r.a, &path);
    // The finished upload answers HEAD, and a repeated final PATCH, with the media id.
    assert_eq!(media_id(&t.head(&path).await).as_deref(), Some(id.as_str()));
    let again = t.patch(&path, body.len() as u64, Vec::new()).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    assert_eq!(media_id(&again).as_deref(), Some(id.as_str()));
    assert_problem(
        t.patch(&path, 0, vec![1]).await,
        409,
        "upload-offset-mismatch",
    )
    .await;

    // Whole-blob digest mismatch: the upload is discarded, nothing becomes visible.
    let media_before = media_files(backend, &r.a);
    let liar = data(P + 100, 99);
    let path2 = t
        .create(
            liar.len(),
            &metadata("video", "opaque", &sha_hex(b"something else")),
        )
        .await;
    let res = t.patch(&path2, 0, liar.clone()).await;
    assert_problem(res, 422, "digest-mismatch").await;
    assert_problem(t.head(&path2).await, 404, "upload-not-found").await;
    assert_problem(t.patch(&path2, 0, vec![1]).await, 404, "upload-not-found").await;
    assert_eq!(media_files(backend, &r.a), media_before, "{name}");
    assert_clean(backend, &r.a, &path2);

    // Termination: 204, then 404 for HEAD, PATCH and DELETE; parts and multipart gone.
    let body3 = data(2 * P + 5, 3);
    let path3 = t.create_for(&body3).await;
    let res = t.patch(&path3, 0, body3[..P + 1].to_vec()).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = tb.delete(&path3).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_problem(t.head(&path3).await, 404, "upload-not-found").await;
    assert_problem(
        t.patch(&path3, (P + 1) as u64, vec![1]).await,
        404,
        "upload-not-found",
    )
    .await;
    assert_problem(t.delete(&path3).await, 404, "upload-not-found").await;
    assert_clean(backend, &r.a, &path3);
    assert_eq!(media_files(backend, &r.a), media_before, "{name}");

    // Unknown and malformed upload ids.
    assert_problem(
        t.head("/v1/uploads/0123456789abcdef0123456789abcdef").await,
        404,
        "upload-not-found",
    )
    .await;
    assert_problem(
        t.patch("/v1/uploads/..%2F..%2Fmedia", 0, vec![1]).await,
        404,
        "upload-not-found",
    )
    .await;

    // Creation with upload, and the same content again: dedup to the same media id.
    let small = data(70_000, 5);
    let res = t
        .req(reqwest::Method::POST, "/v1/uploads/")
        .header("upload-length", small.len().to_string())
        .header(
            "upload-metadata",
            metadata("image", "opaque", &sha_hex(&small)),
        )
        .header("content-type", "application/offset+octet-stream")
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        res.headers()["upload-offset"],
        small.len().to_string().as_str()
    );
    let id1 = media_id(&res).expect("creation-with-upload completes");
    let path4 = t
        .create(small.len(), &metadata("image", "opaque", &sha_hex(&small)))
        .await;
    let res = tb.patch(&path4, 0, small.clone()).await;
    assert_eq!(
        media_id(&res).as_deref(),
        Some(id1.as_str()),
        "{name}: dedup"
    );
    assert_eq!(t.download(&id1).await, small);

    // Zero-length: created complete, downloadable, empty.
    let res = t
        .req(reqwest::Method::POST, "/v1/uploads/")
        .header("upload-length", "0")
        .header(
            "upload-metadata",
            metadata("document", "opaque", &sha_hex(b"")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let id0 = media_id(&res).expect("an empty upload is complete at creation");
    assert!(t.download(&id0).await.is_empty());
}

#[test]
fn another_partner_cannot_see_or_touch_an_upload() {
    let key = "imk_second-partner-for-tus";
    let cfg = format!(
        "[partners.second]\nkey_sha256 = \"{}\"\nscopes = [\"upload\"]\n",
        sha_hex(key.as_bytes())
    );
    let svc = ServiceBuilder::new().config_toml(cfg).spawn();
    block_on(async {
        let t = Tus::new(&svc);
        let other = Tus::with_key(&svc, key);
        let body = data(1000, 1);
        let path = t.create_for(&body).await;
        assert_problem(other.head(&path).await, 404, "upload-not-found").await;
        assert_problem(
            other.patch(&path, 0, body.clone()).await,
            404,
            "upload-not-found",
        )
        .await;
        assert_problem(other.delete(&path).await, 404, "upload-not-found").await;
        assert_eq!(t.offset(&path).await, 0);
    });
}

/// Two replicas get a PATCH for the same upload at the same offset at once: exactly one
/// takes it, the other answers 409, and the result is byte-exact. Repeated, on every backend.
#[test]
fn replicas_racing_on_one_offset() {
    for backend in backends() {
        let r = replicas(&backend, &[]);
        let (ta, tb) = (Tus::new(&r.a), Tus::new(&r.b));
        block_on(async {
            for round in 0..12u64 {
                let body = data(if round % 3 == 0 { P + 4321 } else { 300_000 }, round);
                let path = ta.create_for(&body).await;
                let half = body.len() / 2;
                let (x, y) = tokio::join!(
                    ta.patch(&path, 0, body[..half].to_vec()),
                    tb.patch(&path, 0, body[..half].to_vec())
                );
                let codes = [x.status().as_u16(), y.status().as_u16()];
                let won = codes.iter().filter(|&&c| c == 204).count();
                assert_eq!(won, 1, "{} round {round}: {codes:?}", backend.name());
                assert!(codes.contains(&409), "{codes:?}");
                let loser = if codes[0] == 409 { x } else { y };
                let v: Value = loser.json().await.unwrap();
                assert!(
                    v["code"] == "upload-busy" || v["code"] == "upload-offset-mismatch",
                    "{v}"
                );
                assert_eq!(ta.offset(&path).await, half as u64);
                // Finish the rest racing too.
                let (x, y) = tokio::join!(
                    ta.patch(&path, half as u64, body[half..].to_vec()),
                    tb.patch(&path, half as u64, body[half..].to_vec())
                );
                let done: Vec<_> = [&x, &y].iter().filter_map(|r| media_id(r)).collect();
                assert_eq!(done.len(), 1, "{} round {round}", backend.name());
                assert_eq!(ta.download(&done[0]).await, body, "round {round}");
                assert_clean(&backend, &r.a, &path);
            }
        });
    }
}

/// A replica killed mid-PATCH holds the upload only until its lease runs out; the other
/// replica then takes over from the last durable offset, and the result is byte-exact.
#[test]
fn a_dead_replica_blocks_an_upload_only_for_its_lease() {
    let backend = Backend::Local;
    let r = replicas(&backend, &[("INTEROP_MEDIA_UPLOADS__LEASE_S", "5")]);
    let (ta, tb) = (Tus::new(&r.a), Tus::new(&r.b));
    let body = data(3 * P, 11);
    let path = block_on(async {
        let path = ta.create_for(&body).await;
        let res = ta.patch(&path, 0, body[..P].to_vec()).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        path
    });
    // A PATCH that stalls after 1 MiB, then its replica is killed.
    let addr = r.a.addr;
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: {P}\r\nContent-Length: {P}\r\n\r\n",
        r.a.partner_key
    );
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    use std::io::Write;
    sock.write_all(head.as_bytes()).unwrap();
    sock.write_all(&body[P..P + (1 << 20)]).unwrap();
    sock.flush().unwrap();
    // Wait until the claim is visible: B's PATCH is refused as busy. The probe carries a
    // wrong checksum, so before the claim exists it gets 460 and changes nothing. A's PATCH
    // claims the upload as soon as its headers are read; give it that moment first, so the
    // probe (which briefly claims the upload itself) cannot get there before it.
    std::thread::sleep(Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(5);
    let wrong = format!(
        "sha256 {}",
        STANDARD.encode(Sha256::digest(b"not these bytes"))
    );
    block_on(async {
        loop {
            // A's PATCH commits progress as its parts are stored (it cuts a part once the
            // staged tail and ~160 KiB fill one), so probe at the current durable offset; a
            // commit between HEAD and the probe answers 409 upload-offset-mismatch: probe again.
            let off = tb.offset(&path).await as usize;
            let res = tb
                .patch_with(
                    &path,
                    off as u64,
                    body[off..off + 10].to_vec(),
                    Some(wrong.clone()),
                )
                .await;
            if res.status() == StatusCode::CONFLICT {
                let v: Value = res.json().await.unwrap();
                if v["code"] == "upload-offset-mismatch" {
                    continue;
                }
                assert_eq!(v["code"], "upload-busy", "{v}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "claim never appeared: {}",
                res.status()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    r.a.signal(libc::SIGKILL).unwrap();
    drop(sock);
    let killed_at = Instant::now();
    block_on(async {
        // HEAD reports the durable offset: at least where A's PATCH started (A may have
        // committed a part since); once the lease is out, B takes over from there.
        let off = tb.offset(&path).await as usize;
        assert!(off >= P, "offset {off} went back");
        let res = loop {
            let res = tb.patch(&path, off as u64, body[off..].to_vec()).await;
            if res.status() == StatusCode::NO_CONTENT {
                break res;
            }
            assert_eq!(res.status(), StatusCode::CONFLICT);
            assert!(
                killed_at.elapsed() < Duration::from_secs(20),
                "never taken over"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert!(
            killed_at.elapsed() >= Duration::from_secs(2),
            "taken over before the lease ran out"
        );
        let id = media_id(&res).unwrap();
        assert_eq!(tb.download(&id).await, body);
    });
}

/// Unfinished uploads expire: PATCH and HEAD answer 410, and `sweep` removes their state
/// and aborts their multipart uploads.
#[test]
fn expired_uploads_are_refused_and_swept() {
    for backend in backends() {
        let r = replicas(&backend, &[("INTEROP_MEDIA_UPLOADS__EXPIRY_S", "2")]);
        let t = Tus::new(&r.a);
        let body = data(P + 10, 21);
        let path = block_on(async {
            let path = t.create_for(&body).await;
            let res = t.patch(&path, 0, body[..P + 1].to_vec()).await;
            assert_eq!(res.status(), StatusCode::NO_CONTENT);
            path
        });
        std::thread::sleep(Duration::from_millis(2200));
        block_on(async {
            assert_problem(t.head(&path).await, 410, "upload-expired").await;
            let res = t.patch(&path, (P + 1) as u64, body[P + 1..].to_vec()).await;
            assert_problem(res, 410, "upload-expired").await;
        });
        assert!(!upload_files(&backend, &r.a, &path).is_empty());
        let mut cmd = Command::new(common::server::BIN);
        cmd.arg("sweep")
            .arg("--config")
            .arg(r.a.data_dir.join("dev-keys.toml"))
            .env(
                "INTEROP_MEDIA_STORAGE__URL",
                format!("file://{}", r.a.data_dir.join("objects").display()),
            );
        for (k, v) in backend.env() {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(report["uploads_removed"].as_u64().unwrap() >= 1, "{report}");
        assert!(
            upload_files(&backend, &r.a, &path).is_empty(),
            "{}",
            backend.name()
        );
        if let Some(s3) = backend.s3() {
            assert!(s3.pending_multipart_files().is_empty());
        }
        assert!(media_files(&backend, &r.a).is_empty());
    }
}
