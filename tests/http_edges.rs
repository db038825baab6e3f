//! HTTP at the edges (issue 13, defects 3, 6 and 8), against the real binary over raw sockets:
//! pipelined requests framed by their own request, `Expect: 100-continue` refused before the
//! 100 when the key, scope or declared size would be refused, and nothing exposed by default.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Service, ServiceBuilder, block_on, http};
use serde_json::Value;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- a strict HTTP/1 reader

/// One response as a conforming client reads it: the body framing follows the method of the
/// request it answers (no body for HEAD, 1xx, 204, 304), then `Content-Length` or chunked.
#[derive(Debug)]
struct Resp {
    version: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    String::from_utf8(line)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|_| std::io::Error::other("response head is not UTF-8 (a body read as a head?)"))
}

/// Read one final response (skipping, but returning the count of, interim 1xx responses).
fn read_response(r: &mut impl BufRead, method: &str) -> std::io::Result<(Resp, usize)> {
    let mut interim = 0;
    loop {
        let status_line = read_line(r)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| std::io::Error::other(format!("not a status line: {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(r)?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| std::io::Error::other(format!("bad header line {line:?}")))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        if (100..200).contains(&status) {
            interim += 1;
            continue;
        }
        let mut resp = Resp {
            version,
            status,
            headers,
            body: Vec::new(),
        };
        if method == "HEAD" || status == 204 || status == 304 {
            return Ok((resp, interim));
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size_line = read_line(r)?;
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| {
                            std::io::Error::other(format!("bad chunk size {size_line:?}"))
                        })?;
                if size == 0 {
                    while !read_line(r)?.is_empty() {}
                    break;
                }
                let mut chunk = vec![0; size];
                r.read_exact(&mut chunk)?;
                resp.body.extend_from_slice(&chunk);
                read_line(r)?;
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| std::io::Error::other("bad content-length"))?;
            resp.body = vec![0; len];
            r.read_exact(&mut resp.body)?;
        } else {
            r.read_to_end(&mut resp.body)?;
        }
        return Ok((resp, interim));
    }
}

fn connect(svc: &Service) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(svc.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// After the expected responses, nothing else may arrive (a HEAD answered with a body would
/// leave those bytes behind).
fn assert_nothing_more(r: &mut BufReader<TcpStream>, what: &str) {
    r.get_ref()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut extra = [0u8; 64];
    let buffered = r.buffer().len();
    let n = match r.read(&mut extra) {
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            0
        }
        Err(e) => panic!("{what}: {e}"),
    };
    assert_eq!(
        buffered + n,
        0,
        "{what}: unexpected bytes after the last response: {:?}",
        String::from_utf8_lossy(&extra[..n])
    );
}

// ---------------------------------------------------------------- setup

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Upload `blob` as the dev partner and mint a token; returns the token.
fn upload_and_mint(svc: &Service, blob: &[u8]) -> String {
    block_on(async {
        let c = http();
        let r = c
            .post(svc.url("/v1/media"))
            .bearer_auth(&svc.partner_key)
            .header("X-Media-Kind", "document")
            .header("X-Media-Format", "opaque")
            .header("X-Media-Sha256", sha_hex(blob))
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "upload: {}", r.status());
        let v: Value = r.json().await.unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        let r = c
            .post(svc.url(&format!("/v1/media/{id}/tokens")))
            .bearer_auth(&svc.partner_key)
            .json(&serde_json::json!({"audience": "edge-test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_string()
    })
}

fn blob() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect()
}

// ---------------------------------------------------------------- defect 3: pipelining

/// Tries per shape: the mix-up needs request N+1 decoded while N's store read is pending,
/// which happened in 30–100 % of tries before the fix.
const TRIES: usize = 25;

#[test]
fn pipelined_get_then_head_is_framed_per_request() {
    let svc = ServiceBuilder::new().spawn();
    let blob = blob();
    let token = upload_and_mint(&svc, &blob);
    let path = format!("/v1/download/{token}");
    for i in 0..TRIES {
        let (mut w, mut r) = connect(&svc);
        w.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: t\r\n\r\nHEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let (get, _) = read_response(&mut r, "GET").unwrap_or_else(|e| panic!("try {i}: GET: {e}"));
        assert_eq!(get.status, 200, "try {i}");
        assert!(
            get.body == blob,
            "try {i}: GET body is not the blob ({} bytes)",
            get.body.len()
        );
        let (head, _) =
            read_response(&mut r, "HEAD").unwrap_or_else(|e| panic!("try {i}: HEAD: {e}"));
        assert_eq!(head.status, 200, "try {i}");
        assert_eq!(
            head.header("content-length"),
            Some(blob.len().to_string().as_str())
        );
        assert_nothing_more(&mut r, &format!("try {i}"));
    }
}

#[test]
fn pipelined_head_then_get_is_framed_per_request() {
    let svc = ServiceBuilder::new().spawn();
    let blob = blob();
    let token = upload_and_mint(&svc, &blob);
    let path = format!("/v1/download/{token}");
    for i in 0..TRIES {
        let (mut w, mut r) = connect(&svc);
        w.write_all(
            format!(
                "HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let (head, _) =
            read_response(&mut r, "HEAD").unwrap_or_else(|e| panic!("try {i}: HEAD: {e}"));
        assert_eq!(head.status, 200, "try {i}");
        let (get, _) = read_response(&mut r, "GET")
            .unwrap_or_else(|e| panic!("try {i}: the GET's response was lost: {e}"));
        assert_eq!(get.status, 200, "try {i}");
        assert_eq!(get.body, b"ok\n", "try {i}");
        assert_nothing_more(&mut r, &format!("try {i}"));
    }
}

#[test]
fn pipelined_http11_then_http10_keeps_each_version() {
    let svc = ServiceBuilder::new().spawn();
    let blob = blob();
    let token = upload_and_mint(&svc, &blob);
    let path = format!("/v1/download/{token}");
    for i in 0..TRIES {
        let (mut w, mut r) = connect(&svc);
        w.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n\
                 GET /healthz HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let (first, _) = read_response(&mut r, "GET").unwrap_or_else(|e| panic!("try {i}: {e}"));
        assert_eq!(
            first.version, "HTTP/1.1",
            "try {i}: the 1.1 request got a 1.0 answer"
        );
        assert!(first.body == blob, "try {i}");
        let (second, _) = read_response(&mut r, "GET").unwrap_or_else(|e| panic!("try {i}: {e}"));
        assert_eq!(second.version, "HTTP/1.0", "try {i}");
        assert_eq!(second.body, b"ok\n", "try {i}");
    }
}

/// Keep-alive still works for the ordinary, one-at-a-time case: three requests, one connection.
#[test]
fn sequential_requests_reuse_the_connection() {
    let svc = ServiceBuilder::new().spawn();
    let blob = blob();
    let token = upload_and_mint(&svc, &blob);
    let path = format!("/v1/download/{token}");
    let (mut w, mut r) = connect(&svc);
    for method in ["GET", "HEAD", "GET"] {
        w.write_all(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let (resp, _) = read_response(&mut r, method).unwrap();
        assert_eq!(resp.status, 200);
        assert_ne!(resp.header("connection"), Some("close"));
        if method == "GET" {
            assert!(resp.body == blob);
        }
    }
    assert_nothing_more(&mut r, "sequential");
}

// ---------------------------------------------------------------- defect 6: Expect

const LIMITED_KEY: &str = "imk_limited-partner-with-token-scope-only";

/// The dev service plus a partner `limited` holding only the `token` scope.
fn service_with_limited_partner() -> Service {
    ServiceBuilder::new()
        .config_toml(format!(
            "[partners.limited]\nkey_sha256 = \"{}\"\nscopes = [\"token\"]\n",
            sha_hex(LIMITED_KEY.as_bytes())
        ))
        .spawn()
}

/// Send a request head with `Expect: 100-continue` and no body; read what comes back.
fn expect_head(svc: &Service, head: &str) -> (Resp, usize, BufReader<TcpStream>) {
    let (mut w, mut r) = connect(svc);
    w.write_all(head.as_bytes()).unwrap();
    let (resp, interim) = read_response(&mut r, "POST").expect("a final response without the body");
    (resp, interim, r)
}

fn problem_code(resp: &Resp) -> String {
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json"),
        "{resp:?}"
    );
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    v["code"].as_str().unwrap_or_default().to_string()
}

fn upload_head(key: &str, kind: &str, len: u64, query: &str) -> String {
    format!(
        "POST /v1/media{query} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n\
         X-Media-Kind: {kind}\r\nX-Media-Format: opaque\r\nX-Media-Sha256: {}\r\n\
         Content-Length: {len}\r\nExpect: 100-continue\r\n\r\n",
        "0".repeat(64)
    )
}

/// The refusal is the final answer: no `100 Continue` before it, and the connection closes
/// (the body the client held back is never wanted).
fn assert_refused_before_continue(
    (resp, interim, mut r): (Resp, usize, BufReader<TcpStream>),
    status: u16,
    code: &str,
) {
    assert_eq!(interim, 0, "a 100 Continue came before the {status}");
    assert_eq!(resp.status, status, "{resp:?}");
    assert_eq!(problem_code(&resp), code);
    assert_eq!(resp.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "more after the refusal: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn expect_continue_refuses_bad_key_scope_and_size_first() {
    let svc = service_with_limited_partner();
    let key = svc.partner_key.clone();
    // A wrong key: 401 before any body.
    assert_refused_before_continue(
        expect_head(&svc, &upload_head("imk_wrong", "document", 1000, "")),
        401,
        "unauthenticated",
    );
    // A key without the upload scope: 403.
    assert_refused_before_continue(
        expect_head(&svc, &upload_head(LIMITED_KEY, "document", 1000, "")),
        403,
        "forbidden",
    );
    // Without the seal scope, for a seal-for-me upload: 403.
    assert_refused_before_continue(
        expect_head(
            &svc,
            &upload_head(LIMITED_KEY, "image", 1000, "?seal=whatsapp"),
        ),
        403,
        "forbidden",
    );
    // A declared length over the kind's limit (image: 5 MiB + 10 %): 413.
    assert_refused_before_continue(
        expect_head(&svc, &upload_head(&key, "image", 100_000_000, "")),
        413,
        "too-large",
    );
    // A token request body over the JSON limit: 413.
    assert_refused_before_continue(
        expect_head(
            &svc,
            &format!(
                "POST /v1/media/{}/tokens HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n",
                "0".repeat(32)
            ),
        ),
        413,
        "too-large",
    );
    // A resumable upload without a key: 401.
    assert_refused_before_continue(
        expect_head(
            &svc,
            "PATCH /v1/uploads/abc HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n\
             Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n\
             Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
        ),
        401,
        "unauthenticated",
    );
}

#[test]
fn expect_continue_accepted_upload_gets_100_then_201() {
    let svc = ServiceBuilder::new().spawn();
    let blob = blob();
    let (mut w, mut r) = connect(&svc);
    w.write_all(
        format!(
            "POST /v1/media HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
             X-Media-Kind: document\r\nX-Media-Format: opaque\r\nX-Media-Sha256: {}\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            svc.partner_key,
            sha_hex(&blob),
            blob.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let status = read_line(&mut r).unwrap();
    assert_eq!(status, "HTTP/1.1 100 Continue");
    assert_eq!(read_line(&mut r).unwrap(), "");
    w.write_all(&blob).unwrap();
    let (resp, _) = read_response(&mut r, "POST").unwrap();
    assert_eq!(resp.status, 201, "{resp:?}");
}

// ---------------------------------------------------------------- defect 8: exposure

fn b64(b: [u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A production-style configuration (no `--dev`), local files under `dir`.
fn prod_config(dir: &std::path::Path, public_url: Option<&str>) -> String {
    let mut c = format!(
        "[server]\n{}\n[storage]\nurl = \"file://{}\"\n\
         [keys]\nactive = \"k1\"\n[keys.master.k1]\nkey = \"{}\"\n\
         [tokens]\nactive = \"t1\"\n[tokens.keys.t1]\nkey = \"{}\"\n\
         [partners.gw]\nkey_sha256 = \"{}\"\nscopes = [\"upload\", \"token\"]\n",
        public_url
            .map(|u| format!("public_url = \"{u}\""))
            .unwrap_or_default(),
        dir.join("objects").display(),
        b64([1; 32]),
        b64([2; 32]),
        sha_hex(b"imk_prod-gateway-key"),
    );
    c.push('\n');
    c
}

#[test]
fn metrics_are_not_on_the_public_listener_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ServiceBuilder::new()
        .dev(false)
        .data_dir(dir.path())
        .config_toml(prod_config(dir.path(), Some("https://media.example.net")))
        .spawn();
    let (mut w, mut r) = connect(&svc);
    w.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (resp, _) = read_response(&mut r, "GET").unwrap();
    assert_eq!(resp.status, 404, "{resp:?}");
    assert_eq!(problem_code(&resp), "not-found");
    // The rest of the service is there.
    w.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, "GET").unwrap().0.status, 200);
}

#[test]
fn serve_without_public_url_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = match ServiceBuilder::new()
        .dev(false)
        .data_dir(dir.path())
        .config_toml(prod_config(dir.path(), None))
        .startup_timeout(Duration::from_secs(15))
        .try_spawn()
    {
        Ok(_) => panic!("must not start without server.public_url"),
        Err(e) => e,
    };
    assert!(format!("{err}").contains("server.public_url"), "{err}");
    for bad in [
        "javascript:alert(1)",
        "ftp://media.example.net",
        "https://u:p@h.example",
        "https://h.example/?x=1",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let err = ServiceBuilder::new()
            .dev(false)
            .data_dir(dir.path())
            .config_toml(prod_config(dir.path(), Some(bad)))
            .startup_timeout(Duration::from_secs(15))
            .try_spawn()
            .err()
            .unwrap_or_else(|| panic!("started with public_url = {bad}"));
        assert!(
            format!("{err}").contains("server.public_url"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn minted_urls_ignore_host_and_forwarded_headers() {
    let svc = ServiceBuilder::new().spawn();
    let blob = blob();
    let id = block_on(async {
        let r = http()
            .post(svc.url("/v1/media"))
            .bearer_auth(&svc.partner_key)
            .header("X-Media-Kind", "document")
            .header("X-Media-Format", "opaque")
            .header("X-Media-Sha256", sha_hex(&blob))
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    });
    let body = r#"{"audience":"edge-test"}"#;
    for extra in [
        "Host: evil.example\r\n",
        "Host: t\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: javascript\r\n",
        "Host: t\r\nForwarded: proto=javascript;host=evil.example\r\n",
    ] {
        let (mut w, mut r) = connect(&svc);
        w.write_all(
            format!(
                "POST /v1/media/{id}/tokens HTTP/1.1\r\n{extra}Authorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                svc.partner_key,
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        let (resp, _) = read_response(&mut r, "POST").unwrap();
        assert_eq!(resp.status, 201, "{resp:?}");
        let v: Value = serde_json::from_slice(&resp.body).unwrap();
        let url = v["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/v1/download/", svc.base)),
            "{extra:?} chose the origin: {url}"
        );
    }
}

/// A request head actix refuses itself (here a negative Content-Length) still gets a problem
/// document (issue 13: "an actix-level 400 today has none").
#[test]
fn malformed_head_gets_a_problem_body() {
    let svc = ServiceBuilder::new().spawn();
    let (mut w, mut r) = connect(&svc);
    w.write_all(b"POST /v1/media HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n")
        .unwrap();
    let (resp, _) = read_response(&mut r, "POST").unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(problem_code(&resp), "malformed-request");
}
