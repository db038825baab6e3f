//! The one place that turns errors into HTTP: status, stable `code`, RFC 9457 problem body.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// Everything a request can fail with. Each variant owns its status and its stable,
/// machine-readable `code`; messages may change, codes may not.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key")]
    Unauthenticated,
    #[error("this API key lacks the `{0}` scope")]
    Forbidden(&'static str),
    #[error("{0}")]
    BadRequest(BadRequest),
    #[error("no such media")]
    MediaNotFound,
    #[error("no such route")]
    NotFoundRoute,
    #[error("method not allowed; this path serves {0}")]
    MethodNotAllowed(&'static str),
    #[error("{0} is not available in this release")]
    NotImplemented(&'static str),
    #[error("the media has expired")]
    MediaExpired,
    #[error("the download token is invalid")]
    TokenInvalid,
    #[error("the download token has expired")]
    TokenExpired,
    #[error("at most {max} audiences per token request")]
    TooManyAudiences { max: usize },
    #[error("an audience is named twice in `audiences`")]
    DuplicateAudience,
    #[error("the download token was signed with a key this service does not know")]
    TokenUnknownKey,
    #[error("{declared} bytes exceed the {kind} limit of {limit} bytes")]
    TooLarge {
        kind: &'static str,
        declared: u64,
        limit: u64,
    },
    #[error("the body length does not match Content-Length")]
    LengthMismatch,
    #[error("the SHA-256 of the received bytes does not match the declared digest")]
    DigestMismatch,
    #[error("a {format} blob cannot be {len} bytes long")]
    FormatInvalid { format: &'static str, len: u64 },
    #[error("the requested range cannot be satisfied")]
    RangeNotSatisfiable { size: u64 },
    #[error("the request body stalled for longer than the idle timeout")]
    BodyTimeout,
    #[error("the request body could not be read")]
    BodyAborted,
    #[error("the request body arrived slower than the minimum upload rate")]
    BodyTooSlow,
    #[error("the service is receiving as many uploads as its memory budget allows; try again")]
    UploadsBusy,
    #[error("this partner's uploads use all of its memory share; try again")]
    PartnerUploadLimit,
    #[error("no such upload")]
    UploadNotFound,
    #[error("the upload has expired")]
    UploadExpired,
    #[error("Upload-Offset does not match the upload's offset of {expected}")]
    UploadOffsetMismatch { expected: u64 },
    #[error("another request is writing to this upload; retry after a HEAD")]
    UploadBusy,
    #[error("the body does not match Upload-Checksum; nothing of it was kept")]
    ChecksumMismatch,
    #[error("this server speaks tus 1.0.0; send Tus-Resumable: 1.0.0")]
    TusVersion,
    #[error("the body must be {0}")]
    UnsupportedContentType(&'static str),
    #[error("the file is {sniffed}, which is not an allowed {kind}")]
    MediaTypeNotAllowed { kind: String, sniffed: String },
    #[error("{0}")]
    MediaLimits(String),
    #[error("the media could not be decoded")]
    MediaUndecodable,
    #[error("every media worker is busy; try again")]
    MediaBusy,
    #[error("storage is unavailable; try again")]
    StorageUnavailable,
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("internal error")]
    Internal,
    /// A refusal made below the handlers (actix's extractors, routing, payload handling)
    /// that carried no problem body; the middleware in `app` gives it one.
    #[error("the request was refused ({})", .0.as_u16())]
    Refused(StatusCode),
}

/// Malformed request parts, each with its own code so clients can tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    #[error("unknown media kind; expected one of image, sticker, voice, audio, video, document")]
    UnknownKind,
    #[error("unknown media format; expected one of whatsapp, signal, opaque")]
    UnknownFormat,
    #[error("X-Media-Sha256 must be a SHA-256 digest as 64 hex digits or base64")]
    MalformedDigest,
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    #[error("invalid field `{0}`")]
    InvalidField(&'static str),
    #[error("{0}")]
    Metadata(&'static str),
    #[error("Upload-Checksum supports only sha256")]
    ChecksumAlgorithm,
}

impl BadRequest {
    fn code(&self) -> &'static str {
        match self {
            BadRequest::UnknownKind => "unknown-kind",
            BadRequest::UnknownFormat => "unknown-format",
            BadRequest::MalformedDigest => "malformed-digest",
            BadRequest::MissingHeader(_) => "missing-header",
            BadRequest::MalformedJson(_) => "malformed-json",
            BadRequest::InvalidField(_) => "invalid-field",
            BadRequest::Metadata(_) => "malformed-metadata",
            BadRequest::ChecksumAlgorithm => "checksum-algorithm-unsupported",
        }
    }
}

impl From<BadRequest> for ApiError {
    fn from(e: BadRequest) -> Self {
        ApiError::BadRequest(e)
    }
}

impl ApiError {
    /// The stable machine-readable code carried in the problem body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::BadRequest(b) => b.code(),
            ApiError::MediaNotFound => "media-not-found",
            ApiError::NotFoundRoute => "not-found",
            ApiError::MethodNotAllowed(_) => "method-not-allowed",
            ApiError::NotImplemented(_) => "not-implemented",
            ApiError::MediaExpired => "media-expired",
            ApiError::TokenInvalid => "token-invalid",
            ApiError::TokenExpired => "token-expired",
            ApiError::TooManyAudiences { .. } => "too-many-audiences",
            ApiError::DuplicateAudience => "duplicate-audience",
            ApiError::TokenUnknownKey => "token-unknown-key",
            ApiError::TooLarge { .. } => "too-large",
            ApiError::LengthMismatch => "length-mismatch",
            ApiError::DigestMismatch => "digest-mismatch",
            ApiError::FormatInvalid { .. } => "format-invalid",
            ApiError::RangeNotSatisfiable { .. } => "range-not-satisfiable",
            ApiError::BodyTimeout => "body-timeout",
            ApiError::BodyAborted => "body-aborted",
            ApiError::BodyTooSlow => "body-too-slow",
            ApiError::UploadsBusy => "uploads-busy",
            ApiError::PartnerUploadLimit => "partner-upload-limit",
            ApiError::UploadNotFound => "upload-not-found",
            ApiError::UploadExpired => "upload-expired",
            ApiError::UploadOffsetMismatch { .. } => "upload-offset-mismatch",
            ApiError::UploadBusy => "upload-busy",
            ApiError::ChecksumMismatch => "checksum-mismatch",
            ApiError::TusVersion => "tus-version-unsupported",
            ApiError::UnsupportedContentType(_) => "unsupported-content-type",
            ApiError::MediaTypeNotAllowed { .. } => "media-type-not-allowed",
            ApiError::MediaLimits(_) => "media-limits-exceeded",
            ApiError::MediaUndecodable => "media-undecodable",
            ApiError::MediaBusy => "media-busy",
            ApiError::StorageUnavailable => "storage-unavailable",
            ApiError::ShuttingDown => "shutting-down",
            ApiError::Internal => "internal",
            ApiError::Refused(_) => match self.status_code().as_u16() {
                404 => "not-found",
                405 => "method-not-allowed",
                408 => "request-timeout",
                411 => "length-required",
                413 => "too-large",
                414 => "uri-too-long",
                415 => "unsupported-content-type",
                431 => "headers-too-large",
                500 => "internal",
                _ => "malformed-request",
            },
        }
    }

    fn title(&self) -> &'static str {
        if matches!(self, ApiError::ChecksumMismatch) {
            return "Checksum Mismatch";
        }
        match self.status_code().canonical_reason() {
            Some(reason) => reason,
            None => "Error",
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated
            | ApiError::TokenInvalid
            | ApiError::TokenExpired
            | ApiError::TokenUnknownKey => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_)
            | ApiError::LengthMismatch
            | ApiError::BodyAborted
            | ApiError::TooManyAudiences { .. }
            | ApiError::DuplicateAudience => StatusCode::BAD_REQUEST,
            ApiError::MediaNotFound | ApiError::NotFoundRoute | ApiError::UploadNotFound => {
                StatusCode::NOT_FOUND
            }
            ApiError::UploadExpired => StatusCode::GONE,
            ApiError::UploadOffsetMismatch { .. } | ApiError::UploadBusy => StatusCode::CONFLICT,
            // tus's own status for a checksum mismatch.
            ApiError::ChecksumMismatch => {
                StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::TusVersion => StatusCode::PRECONDITION_FAILED,
            ApiError::UnsupportedContentType(_) | ApiError::MediaTypeNotAllowed { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::MediaLimits(_) | ApiError::MediaUndecodable => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::MediaBusy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::MediaExpired => StatusCode::GONE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::DigestMismatch | ApiError::FormatInvalid { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::BodyTimeout | ApiError::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            ApiError::UploadsBusy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::PartnerUploadLimit => StatusCode::TOO_MANY_REQUESTS,
            ApiError::StorageUnavailable | ApiError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            // One status per code: other client errors become 400, server errors 500.
            ApiError::Refused(status) => match status.as_u16() {
                404 | 405 | 408 | 411 | 413 | 414 | 415 | 431 => *status,
                s if s >= 500 => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // 5xx bodies carry the code only: their Display may one day wrap internal detail.
        let detail = (!status.is_server_error()).then(|| self.to_string());
        let body = Problem {
            kind: format!("https://interop-media.dev/problems/{}", self.code()),
            title: self.title(),
            status: status.as_u16(),
            code: self.code(),
            detail,
        };
        let mut resp = HttpResponse::build(status);
        // For the access log and audit trail, which see only the response.
        resp.extensions_mut()
            .insert(crate::access::ErrorCode(self.code()));
        resp.insert_header((header::CONTENT_TYPE, "application/problem+json"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::CACHE_CONTROL, "no-store"));
        match self {
            ApiError::Unauthenticated => {
                resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::StorageUnavailable | ApiError::ShuttingDown | ApiError::MediaBusy => {
                resp.insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")));
            }
            // Room for an upload frees as soon as one ends: worth asking again soon. The body
            // was not read, and draining it would cost what the refusal saves.
            ApiError::UploadsBusy | ApiError::PartnerUploadLimit => {
                resp.insert_header((header::RETRY_AFTER, HeaderValue::from_static("2")));
                resp.insert_header((header::CONNECTION, "close"));
            }
            ApiError::TusVersion => {
                resp.insert_header(("tus-version", "1.0.0"));
            }
            ApiError::MethodNotAllowed(allow) => {
                resp.insert_header((header::ALLOW, *allow));
            }
            ApiError::RangeNotSatisfiable { size } => {
                resp.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            ApiError::BodyTimeout
            | ApiError::BodyTooSlow
            | ApiError::BodyAborted
            | ApiError::LengthMismatch => {
                // The rest of the body is unread: the connection cannot be reused.
                resp.insert_header((header::CONNECTION, "close"));
            }
            _ => {}
        }
        match serde_json::to_vec(&body) {
            Ok(bytes) => resp.body(bytes),
            Err(_) => resp.finish(),
        }
    }
}

/// Errors from the storage layer, sorted into what a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object not found")]
    NotFound,
    #[error("object already exists")]
    AlreadyExists,
    #[error("object store failure: {0}")]
    Backend(object_store::Error),
    #[error("stored object is corrupt or was not written by this service: {0}")]
    Corrupt(&'static str),
    #[error("stored object was sealed with unknown key id")]
    UnknownKey,
}

impl From<object_store::Error> for StoreError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound,
            object_store::Error::AlreadyExists { .. } => StoreError::AlreadyExists,
            other => StoreError::Backend(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::MediaNotFound,
            StoreError::Backend(err) => {
                tracing::warn!(error = %err, "object store call failed");
                ApiError::StorageUnavailable
            }
            StoreError::AlreadyExists | StoreError::Corrupt(_) | StoreError::UnknownKey => {
                tracing::error!(error = %e, "unexpected storage state");
                ApiError::Internal
            }
        }
    }
}
