//! Access log and audit trail: one line per request (partner, route template, media id,
//! status, error code, bytes, duration) and one `audit` event per upload, token mint,
//! download, delete and refusal. Never a key, a token, a raw path or a plaintext size.

use actix_web::HttpMessage;
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::{Method, StatusCode, header};
use std::time::Duration;

use crate::crypto::ids::id_is_valid;
use crate::metrics::Metrics;

/// What handlers learned about a request, for its log line (request extensions).
#[derive(Debug, Default, Clone)]
pub struct Noted {
    pub partner: Option<String>,
    pub media_id: Option<String>,
    pub audience: Option<String>,
}

/// The problem+json `code` of an error response (response extensions, set in `error.rs`).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// Record something about the request being served.
pub fn note(req: &impl HttpMessage, f: impl FnOnce(&mut Noted)) {
    let mut ext = req.extensions_mut();
    if let Some(n) = ext.get_mut::<Noted>() {
        f(n);
    } else {
        let mut n = Noted::default();
        f(&mut n);
        ext.insert(n);
    }
}

/// What the middleware knew before the handler ran.
#[derive(Debug)]
pub struct Arrival {
    pub route: String,
    pub method: Method,
    /// Request body bytes as declared, unless the body is plaintext (seal-for-me), whose size
    /// must not be logged.
    pub bytes_in: Option<u64>,
}

impl Arrival {
    pub fn new(req: &actix_web::dev::ServiceRequest, route: String) -> Arrival {
        let plaintext = req.query_string().contains("seal=");
        let bytes_in = (!plaintext)
            .then(|| {
                req.headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
            })
            .flatten();
        Arrival {
            route,
            method: req.method().clone(),
            bytes_in,
        }
    }
}

/// The audited action of a route, if it is one.
fn action(route: &str, method: &Method) -> Option<&'static str> {
    Some(match (method.as_str(), route) {
        ("POST", "/v1/media") => "upload",
        ("POST", "/v1/uploads/" | "/v1/uploads") => "upload_create",
        ("PATCH", "/v1/uploads/{uid}") => "upload_append",
        ("DELETE", "/v1/uploads/{uid}") => "upload_terminate",
        ("POST", "/v1/media/{id}/tokens") => "token_mint",
        ("GET" | "HEAD", "/v1/download/{token}") => "download",
        ("DELETE", "/v1/media/{id}") => "delete",
        _ => return None,
    })
}

/// The media id of a request: noted by a handler, in the path, or in the answer's headers.
fn media_id<B>(res: &ServiceResponse<B>, noted: &Noted) -> Option<String> {
    let from_header = |name: &str| {
        res.response()
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.rsplit('/').next().unwrap_or(v).to_string())
    };
    noted
        .media_id
        .clone()
        .or_else(|| res.request().match_info().get("id").map(str::to_string))
        .or_else(|| from_header("media-id"))
        .or_else(|| from_header(header::LOCATION.as_str()))
        // Only well-formed ids: a path segment is caller-chosen text.
        .filter(|id| id_is_valid(id))
}

/// Write the access line and audit event of a finished request, and count tus events.
pub fn finish<B: MessageBody>(
    res: &ServiceResponse<B>,
    arrival: &Arrival,
    elapsed: Duration,
    metrics: Option<&Metrics>,
) {
    let status = res.status();
    let noted = res
        .request()
        .extensions()
        .get::<Noted>()
        .cloned()
        .unwrap_or_default();
    let code = res.response().extensions().get::<ErrorCode>().map(|c| c.0);
    let media = media_id(res, &noted);
    let bytes_out = match res.response().body().size() {
        BodySize::Sized(n) => Some(n),
        BodySize::None => Some(0),
        BodySize::Stream => None,
    };
    let route = arrival.route.as_str();
    let ms = elapsed.as_millis() as u64;
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                target: "access",
                partner = noted.partner.as_deref().unwrap_or("-"),
                method = %arrival.method,
                route,
                media_id = media.as_deref().unwrap_or("-"),
                status = status.as_u16(),
                code = code.unwrap_or("-"),
                bytes_in = arrival.bytes_in,
                bytes_out,
                ms,
                "request"
            )
        };
    }
    // Client faults are the client's problem: WARN at most. Server faults are ours: ERROR.
    if status.is_server_error() {
        line!(error);
    } else if status.is_client_error() {
        line!(warn);
    } else {
        line!(info);
    }
    let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
    let Some(act) = action(route, &arrival.method).or(refused.then_some("refusal")) else {
        return;
    };
    let outcome = if status.is_success() || status.is_redirection() {
        "ok"
    } else if status.is_client_error() {
        "refused"
    } else {
        "failed"
    };
    tracing::info!(
        target: "audit",
        action = act,
        partner = noted.partner.as_deref().unwrap_or("-"),
        media_id = media.as_deref().unwrap_or("-"),
        audience = noted.audience.as_deref().unwrap_or("-"),
        outcome,
        status = status.as_u16(),
        code = code.unwrap_or("-"),
        "audit"
    );
    if let Some(m) = metrics {
        match act {
            "upload_create" if status == StatusCode::CREATED => m.tus_created.inc(),
            "upload_append" | "upload_create"
                if status.is_success() && res.response().headers().contains_key("media-id") =>
            {
                m.tus_finished.inc()
            }
            _ if code == Some("upload-busy") => m.tus_lease_conflicts.inc(),
            _ => {}
        }
    }
}
