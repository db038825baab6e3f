//! `Expect: 100-continue`: refuse from the request head (key, scope, declared size) before the
//! client is told to send its body, so only a request that would be accepted gets the 100.

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap};

use crate::app::AppState;
use crate::auth::{self, Scope};
use crate::error::{ApiError, BadRequest};
use crate::media::MediaKind;

/// Largest JSON body a token request may have (`app::json_config`).
pub const JSON_LIMIT: usize = 4096;

fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| BadRequest::InvalidField("content-length").into()),
    }
}

fn kind(headers: &HeaderMap) -> Result<MediaKind, ApiError> {
    headers
        .get("x-media-kind")
        .ok_or(BadRequest::MissingHeader("x-media-kind"))?
        .to_str()
        .ok()
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| BadRequest::UnknownKind.into())
}

fn over(declared: Option<u64>, kind: &'static str, limit: u64) -> Result<(), ApiError> {
    match declared {
        Some(declared) if declared > limit => Err(ApiError::TooLarge {
            kind,
            declared,
            limit,
        }),
        _ => Ok(()),
    }
}

/// What the handler of this request would refuse before reading any body. Requests to other
/// routes pass: they take no body worth protecting, and their handlers answer as usual.
pub fn check(
    state: &AppState,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let scope = match (method, segments.as_slice()) {
        (&Method::POST, ["v1", "media"]) => {
            let seal = query.is_some_and(|q| {
                url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "seal")
            });
            let partner = auth::authenticate(&state.settings.partners, headers)?;
            let (scope, limits) = if seal {
                (Scope::Seal, &state.settings.seal_limits)
            } else {
                (Scope::Upload, &state.settings.sealed_limits)
            };
            partner.require(scope)?;
            let kind = kind(headers)?;
            return over(declared_length(headers)?, kind.as_str(), limits.get(kind));
        }
        (&Method::POST, ["v1", "media", _, "tokens"]) => {
            let partner = auth::authenticate(&state.settings.partners, headers)?;
            partner.require(Scope::Token)?;
            // The tokens route takes fan-out lists, so its JSON limit is the token service's.
            return over(
                declared_length(headers)?,
                "json",
                crate::token_service::JSON_LIMIT as u64,
            );
        }
        (&Method::DELETE, ["v1", "media", _]) => Scope::Delete,
        (&Method::POST, ["v1", "uploads"]) | (&Method::PATCH, ["v1", "uploads", _]) => {
            Scope::Upload
        }
        _ => return Ok(()),
    };
    auth::authenticate(&state.settings.partners, headers)?.require(scope)
}
