//! `POST /v1/media/{id}/tokens`: mint a download token for a partner's media.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Gateway, Scope};
use crate::error::{ApiError, BadRequest};
use crate::ingest::{now_unix, rfc3339};
use crate::tokens::{self, Claims, MAX_AUDIENCE_LEN};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    audience: String,
    ttl_s: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct MintResponse {
    token: String,
    url: String,
    expires_at: String,
}

fn audience_is_valid(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= MAX_AUDIENCE_LEN
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

pub async fn mint(
    state: web::Data<AppState>,
    gw: Gateway,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<MintRequest>,
) -> Result<HttpResponse, ApiError> {
    gw.0.require(Scope::Token)?;
    if !audience_is_valid(&body.audience) {
        return Err(BadRequest::InvalidField("audience").into());
    }
    crate::access::note(&req, |n| n.audience = Some(body.audience.clone()));
    let s = &state.settings;
    let ttl = match body.ttl_s {
        Some(0) => return Err(BadRequest::InvalidField("ttl_s").into()),
        // Capped, not refused: a gateway asking for more simply gets the most it may have.
        Some(t) => t.min(gw.0.max_token_ttl),
        None => s.token_default_ttl.min(gw.0.max_token_ttl),
    };
    let head = super::media::owned(&state, &gw, &id).await?;
    let meta = &head.header.meta;
    let now = now_unix();
    let mut media_id = [0u8; 16];
    let mut generation = [0u8; 8];
    hex::decode_to_slice(id.as_str(), &mut media_id).map_err(|_| ApiError::MediaNotFound)?;
    hex::decode_to_slice(&meta.generation, &mut generation).map_err(|_| ApiError::Internal)?;
    // Never outlive the media itself.
    let expires = (now + ttl).min(meta.expires);
    let claims = Claims {
        media_id,
        generation,
        partner: gw.0.id.clone(),
        audience: body.audience.clone(),
        issued: now,
        expires,
    };
    let token = tokens::mint(&s.token_keys, &claims)?;
    state.metrics.tokens_minted.inc();
    let base = match &s.public_url {
        Some(u) => u.clone(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    };
    Ok(HttpResponse::Created().json(MintResponse {
        url: format!("{base}/v1/download/{token}"),
        token,
        expires_at: rfc3339(expires),
    }))
}
