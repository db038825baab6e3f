//! The API contract (`docs/openapi.json`, served at `/openapi.json`) against the code:
//! the routes it describes are exactly `app::ROUTES` (and those are really routed by the
//! running binary), and its `Problem.code` enum is exactly the codes of `src/error.rs`,
//! each used under the status the code answers with.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use actix_web::ResponseError;
use actix_web::http::StatusCode;
use common::{ServiceBuilder, block_on, http};
use interop_media::app::ROUTES;
use interop_media::error::{ApiError, BadRequest};
use serde_json::Value;

/// The document as committed (the binary serves the same bytes, compiled in).
const DOC: &str = include_str!("../docs/openapi.json");
/// The one place that maps errors to codes.
const ERROR_RS: &str = include_str!("../src/error.rs");

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn doc() -> Value {
    serde_json::from_str(DOC).expect("docs/openapi.json is not valid JSON")
}

/// (METHOD, path) of every operation in an OpenAPI document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("`paths` is an object");
    let mut ops = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for method in item.keys().filter(|k| METHODS.contains(&k.as_str())) {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

fn routes() -> BTreeSet<(String, String)> {
    let set: BTreeSet<_> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(set.len(), ROUTES.len(), "app::ROUTES has duplicates");
    set
}

/// A request path for a route template, with placeholder parameters.
fn placeholder_path(template: &str) -> String {
    template
        .replace("{id}", &"0".repeat(32))
        .replace("{token}", "AAAA")
        .replace("{uid}", &"0".repeat(32))
}

/// Paths whose every answer carries `Tus-Resumable: 1.0.0`.
fn is_tus(path: &str) -> bool {
    path.starts_with("/v1/uploads")
}

fn diff(what: &str, doc: &BTreeSet<(String, String)>, code: &BTreeSet<(String, String)>) {
    let missing: Vec<_> = code.difference(doc).collect();
    let extra: Vec<_> = doc.difference(code).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: routes in app::ROUTES but not in the document: {missing:?}; \
         in the document but not in app::ROUTES: {extra:?}"
    );
}

/// The codes returned by every `fn code` in `src/error.rs` (the `=> "…"` arms).
fn codes_in_error_rs() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let mut rest = ERROR_RS;
    let mut functions = 0;
    while let Some(at) = rest.find("fn code(") {
        let body = &rest[at..];
        let open = body.find('{').expect("fn code has a body");
        let mut depth = 0usize;
        let mut end = body.len();
        for (i, c) in body[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        for arm in body[open..end].split("=>").skip(1) {
            let arm = arm.trim_start();
            if let Some(lit) = arm.strip_prefix('"') {
                let code = &lit[..lit.find('"').expect("closed string literal")];
                codes.insert(code.to_string());
            }
        }
        functions += 1;
        rest = &body[end..];
    }
    assert!(
        functions >= 2,
        "expected ApiError::code and BadRequest::code"
    );
    codes
}

/// One value of every error variant, to learn each code's status from the code itself.
/// `every_code_is_documented` fails if a variant is added to `src/error.rs` and not here.
fn every_error() -> Vec<ApiError> {
    vec![
        ApiError::Unauthenticated,
        ApiError::Forbidden("upload"),
        ApiError::BadRequest(BadRequest::UnknownKind),
        ApiError::BadRequest(BadRequest::UnknownFormat),
        ApiError::BadRequest(BadRequest::MalformedDigest),
        ApiError::BadRequest(BadRequest::MissingHeader("x-media-kind")),
        ApiError::BadRequest(BadRequest::MalformedJson(String::new())),
        ApiError::BadRequest(BadRequest::InvalidField("audience")),
        ApiError::BadRequest(BadRequest::Metadata("Upload-Metadata needs `kind`")),
        ApiError::BadRequest(BadRequest::ChecksumAlgorithm),
        ApiError::MediaNotFound,
        ApiError::NotFoundRoute,
        ApiError::MethodNotAllowed("GET"),
        ApiError::NotImplemented("x"),
        ApiError::MediaExpired,
        ApiError::TokenInvalid,
        ApiError::TokenExpired,
        ApiError::TooManyAudiences { max: 256 },
        ApiError::DuplicateAudience,
        ApiError::TokenUnknownKey,
        ApiError::TooLarge {
            kind: "image",
            declared: 2,
            limit: 1,
        },
        ApiError::LengthMismatch,
        ApiError::DigestMismatch,
        ApiError::FormatInvalid {
            format: "signal",
            len: 1,
        },
        ApiError::RangeNotSatisfiable { size: 1 },
        ApiError::BodyTimeout,
        ApiError::BodyTooSlow,
        ApiError::UploadsBusy,
        ApiError::PartnerUploadLimit,
        ApiError::BodyAborted,
        ApiError::UploadNotFound,
        ApiError::UploadExpired,
        ApiError::UploadOffsetMismatch { expected: 0 },
        ApiError::UploadBusy,
        ApiError::ChecksumMismatch,
        ApiError::TusVersion,
        ApiError::UnsupportedContentType("application/offset+octet-stream"),
        ApiError::MediaTypeNotAllowed {
            kind: "image".into(),
            sniffed: "pdf".into(),
        },
        ApiError::MediaLimits("20000x20000 exceeds the image limits".into()),
        ApiError::MediaUndecodable,
        ApiError::MediaBusy,
        ApiError::StorageUnavailable,
        ApiError::ShuttingDown,
        ApiError::Internal,
        ApiError::Refused(StatusCode::BAD_REQUEST),
        ApiError::Refused(StatusCode::REQUEST_TIMEOUT),
        ApiError::Refused(StatusCode::LENGTH_REQUIRED),
        ApiError::Refused(StatusCode::URI_TOO_LONG),
        ApiError::Refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
    ]
}

fn problem_enum(doc: &Value) -> BTreeSet<String> {
    doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
        .as_array()
        .expect("components.schemas.Problem.properties.code.enum is an array")
        .iter()
        .map(|v| v.as_str().expect("codes are strings").to_string())
        .collect()
}

#[test]
fn document_routes_equal_app_routes() {
    let doc = doc();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "not an OpenAPI 3.1 document"
    );
    diff("docs/openapi.json", &operations(&doc), &routes());
}

#[test]
fn served_document_routes_equal_app_routes_and_are_routed() {
    let svc = ServiceBuilder::new().spawn();
    block_on(async {
        let client = http();
        let resp = client
            .get(svc.url("/openapi.json"))
            .send()
            .await
            .expect("GET /openapi.json");
        assert_eq!(resp.status().as_u16(), 200);
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let text = resp.text().await.expect("body");
        let served: Value = serde_json::from_str(&text).expect("served document is JSON");
        assert_eq!(
            served,
            doc(),
            "served document differs from docs/openapi.json"
        );
        diff("/openapi.json", &operations(&served), &routes());

        // Every listed route reaches a handler: the router's own misses are 404 `not-found`
        // (unknown path) and 405 `method-not-allowed` (known path, other method); placeholder
        // parameters and no API key give some other answer (401, 200, 204 for tus `OPTIONS`,
        // 412 for a tus request without `Tus-Resumable`, ...). tus answers, whatever they are,
        // come from the tus resources, which stamp `Tus-Resumable`.
        for (method, template) in ROUTES {
            let path = placeholder_path(template);
            let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let resp = client
                .request(m, svc.url(&path))
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            if is_tus(template) {
                assert_eq!(
                    header(&resp, "tus-resumable"),
                    "1.0.0",
                    "{method} {template}: {status} without Tus-Resumable"
                );
            }
            let body = resp.text().await.unwrap_or_default();
            let code = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_string));
            assert!(
                !(status == 404 && (*method == "HEAD" || code.as_deref() == Some("not-found")))
                    && status != 405,
                "{method} {template} is in app::ROUTES but not routed: {status} {body}"
            );
        }
        // And a route that is not listed is a router miss, so the probe above means something.
        let resp = client
            .get(svc.url("/v1/no-such-route"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 404);
        let v: Value = resp.json().await.expect("problem body");
        assert_eq!(v["code"], "not-found");
    });
}

/// The documented paths with their methods, from `app::ROUTES` (equal to the document's, see
/// `document_routes_equal_app_routes`).
fn methods_by_path() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut by_path: BTreeMap<_, BTreeSet<_>> = BTreeMap::new();
    for (method, path) in ROUTES {
        by_path.entry(*path).or_default().insert(*method);
    }
    by_path
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Router answers, as the document's `NotFound` and `MethodNotAllowed` responses describe
/// them: a known path with a method it does not serve is 405 `method-not-allowed` with
/// `Allow` listing exactly its documented methods; an unknown path is 404 `not-found`. Both
/// are problem documents with `nosniff` and `no-store`, and need no API key.
#[test]
fn router_answers_405_with_allow_and_404_for_unknown_paths() {
    let doc = doc();
    for (name, status, code) in [
        ("NotFound", 404, "not-found"),
        ("MethodNotAllowed", 405, "method-not-allowed"),
    ] {
        let r = &doc["components"]["responses"][name];
        let narrowed = r
            .pointer("/content/application~1problem+json/schema/allOf/1/properties")
            .unwrap_or_else(|| panic!("components.responses.{name}: no problem schema"));
        assert_eq!(narrowed["status"]["const"], status, "{name}");
        assert_eq!(
            narrowed["code"]["enum"],
            serde_json::json!([code]),
            "{name}"
        );
    }
    assert!(
        doc["components"]["responses"]["MethodNotAllowed"]["headers"]
            .get("Allow")
            .is_some(),
        "MethodNotAllowed documents no Allow header"
    );

    let svc = ServiceBuilder::new().spawn();
    block_on(async {
        let client = http();
        let problem_headers = |what: &str, resp: &reqwest::Response| {
            assert_eq!(
                header(resp, "content-type"),
                "application/problem+json",
                "{what}"
            );
            assert_eq!(header(resp, "x-content-type-options"), "nosniff", "{what}");
            assert_eq!(header(resp, "cache-control"), "no-store", "{what}");
        };
        for (path, served) in methods_by_path() {
            let url = svc.url(&placeholder_path(path));
            for method in METHODS.iter().map(|m| m.to_uppercase()) {
                if served.contains(method.as_str()) {
                    continue;
                }
                let what = format!("{method} {path}");
                let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
                let resp = client.request(m, &url).send().await.expect("request");
                assert_eq!(resp.status().as_u16(), 405, "{what}");
                problem_headers(&what, &resp);
                let allow: BTreeSet<&str> = header(&resp, "allow")
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .collect();
                assert_eq!(allow, served, "{what}: Allow");
                if is_tus(path) {
                    assert_eq!(header(&resp, "tus-resumable"), "1.0.0", "{what}");
                }
                if method != "HEAD" {
                    let v: Value = resp.json().await.expect("problem body");
                    assert_eq!(v["code"], "method-not-allowed", "{what}");
                    assert_eq!(v["status"], 405, "{what}");
                }
            }
        }
        for (method, path) in [
            ("GET", "/v1/no-such-route"),
            ("PUT", "/v1/no-such-route"),
            ("GET", "/v1/media/x/y/z"),
            ("POST", "/"),
        ] {
            let what = format!("{method} {path}");
            let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let resp = client
                .request(m, svc.url(path))
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status().as_u16(), 404, "{what}");
            problem_headers(&what, &resp);
            let v: Value = resp.json().await.expect("problem body");
            assert_eq!(v["code"], "not-found", "{what}");
        }
    });
}

/// `/metrics` is on the main listener only in `--dev` on loopback without `server.metrics_listen`; with a
/// metrics listener it is served there only, and the main listener answers 404 `not-found`.
#[test]
fn metrics_listener_takes_metrics_off_the_main_listener() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let svc = ServiceBuilder::new()
        .env("INTEROP_MEDIA_SERVER__METRICS_LISTEN", &metrics_addr)
        .spawn();
    block_on(async {
        let client = http();
        let resp = client
            .get(svc.url("/metrics"))
            .send()
            .await
            .expect("main /metrics");
        assert_eq!(resp.status().as_u16(), 404);
        let v: Value = resp.json().await.expect("problem body");
        assert_eq!(v["code"], "not-found");
        let resp = client
            .get(format!("http://{metrics_addr}/metrics"))
            .send()
            .await
            .expect("metrics listener /metrics");
        assert_eq!(resp.status().as_u16(), 200);
    });
}

#[test]
fn every_code_is_documented() {
    let doc = doc();
    let documented = problem_enum(&doc);
    let in_source = codes_in_error_rs();
    let missing: Vec<_> = in_source.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&in_source).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "src/error.rs codes missing from Problem.code enum: {missing:?}; \
         documented codes not in src/error.rs: {stale:?}"
    );
    let constructed: BTreeSet<String> =
        every_error().iter().map(|e| e.code().to_string()).collect();
    assert_eq!(
        constructed, in_source,
        "every_error() in tests/openapi.rs must list one value of every error variant"
    );
}

/// The codes a problem response lists in its description (`Codes: `a`, `b`.`), for answers
/// that have no body to carry a schema.
fn codes_listed_in(resp: &Value) -> Option<Vec<String>> {
    let (_, list) = resp["description"].as_str()?.rsplit_once("Codes: ")?;
    let list = &list[..list.find("`.")? + 1];
    let codes: Vec<String> = list
        .split(", ")
        .map(|c| c.strip_prefix('`')?.strip_suffix('`').map(str::to_string))
        .collect::<Option<_>>()?;
    (!codes.is_empty()).then_some(codes)
}

/// Each operation's problem responses carry codes from the enum, under the status those
/// codes really answer with; every one documents `X-Content-Type-Options` and
/// `Cache-Control`, and every documented 503 has `Retry-After`.
#[test]
fn response_codes_match_their_status() {
    let doc = doc();
    let documented = problem_enum(&doc);
    let status_of: BTreeMap<String, u16> = every_error()
        .iter()
        .map(|e| (e.code().to_string(), e.status_code().as_u16()))
        .collect();
    let mut used = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            for (status, resp) in op["responses"].as_object().expect("responses") {
                let schema = resp
                    .pointer("/content/application~1problem+json/schema")
                    .or_else(|| {
                        // HEAD: no body, the codes are those of the matching GET.
                        doc["paths"][path]["get"]["responses"][status]
                            .pointer("/content/application~1problem+json/schema")
                            .filter(|_| method == "head")
                    });
                let codes: Vec<String> = match schema {
                    Some(schema) => {
                        let narrowed = &schema["allOf"][1]["properties"];
                        assert_eq!(
                            narrowed["status"]["const"].as_u64(),
                            status.parse::<u64>().ok(),
                            "{method} {path} {status}: status const"
                        );
                        narrowed["code"]["enum"]
                            .as_array()
                            .unwrap_or_else(|| panic!("{method} {path} {status}: no code enum"))
                            .iter()
                            .map(|c| c.as_str().expect("code string").to_string())
                            .collect()
                    }
                    // HEAD without a GET (tus): no body, so the codes are only listed.
                    None if method == "head" && status.starts_with(['4', '5']) => {
                        codes_listed_in(resp).unwrap_or_else(|| {
                            panic!("{method} {path} {status}: problem answer lists no codes")
                        })
                    }
                    None => continue,
                };
                for code in &codes {
                    let code = code.as_str();
                    assert!(documented.contains(code), "{method} {path}: unknown {code}");
                    assert_eq!(
                        status_of.get(code).map(|s| s.to_string()).as_deref(),
                        Some(status.as_str()),
                        "{method} {path}: `{code}` documented under {status}"
                    );
                    used.insert(code.to_string());
                }
                for h in ["X-Content-Type-Options", "Cache-Control"] {
                    assert!(
                        resp["headers"].get(h).is_some(),
                        "{method} {path} {status}: problem without {h}"
                    );
                }
                if status == "503" {
                    assert!(
                        resp["headers"].get("Retry-After").is_some(),
                        "{method} {path}: 503 without Retry-After"
                    );
                }
            }
        }
    }
    // Codes no operation lists: only those the router itself answers with (documented as
    // `components.responses`, checked by `router_answers_405_with_allow_and_404_for_unknown_paths`).
    let unused: BTreeSet<_> = documented.difference(&used).map(String::as_str).collect();
    let allowed: BTreeSet<_> = [
        "not-found",
        "method-not-allowed",
        "malformed-request",
        "request-timeout",
        "length-required",
        "uri-too-long",
        "headers-too-large",
    ]
    .into();
    assert!(
        unused.is_subset(&allowed),
        "codes no operation documents: {:?}",
        unused.difference(&allowed).collect::<Vec<_>>()
    );
}

/// Every documented answer of a tus operation lists `Tus-Resumable` (the service sends it on
/// all of them, checked in `served_document_routes_equal_app_routes_and_are_routed`).
#[test]
fn tus_answers_document_tus_resumable() {
    let doc = doc();
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !is_tus(path) {
            continue;
        }
        for (method, op) in item.as_object().expect("path item") {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            for (status, resp) in op["responses"].as_object().expect("responses") {
                assert!(
                    resp["headers"].get("Tus-Resumable").is_some(),
                    "{method} {path} {status}: no Tus-Resumable"
                );
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "the document describes no tus operation");
}
