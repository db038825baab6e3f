//! `POST /v1/media/{id}/tokens`: mint download tokens for a partner's media, for one audience
//! (`{"audience"}`) or many (`{"audiences": […]}`, a group's members' providers). Policy lives
//! in [`crate::token_service`]; this handler parses and formats.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Authorized, needs};
use crate::error::{ApiError, BadRequest};
use crate::ingest::{now_unix, rfc3339};
use crate::token_service::{Class, MintRequest};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintBody {
    audience: Option<String>,
    audiences: Option<Vec<String>>,
    ttl_s: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct MintResponse {
    token: String,
    url: String,
    expires_at: String,
}

#[derive(Debug, Serialize)]
pub struct FanoutEntry {
    audience: String,
    token: String,
    url: String,
    expires_at: String,
}

#[derive(Debug, Serialize)]
pub struct FanoutResponse {
    tokens: Vec<FanoutEntry>,
}

pub async fn mint(
    state: web::Data<AppState>,
    gw: Authorized<needs::Token>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<MintBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let single;
    let (class, audiences): (Class, &[String]) = match (&body.audience, &body.audiences) {
        (Some(a), None) => {
            // The access line names a single audience; a fan-out's are in its audit events.
            crate::access::note(&req, |n| n.audience = Some(a.clone()));
            single = [a.clone()];
            (Class::Single, &single)
        }
        (None, Some(list)) => (Class::Fanout, list),
        // Neither or both: which one the caller meant is a guess.
        (None, None) => return Err(BadRequest::InvalidField("audience").into()),
        (Some(_), Some(_)) => return Err(BadRequest::InvalidField("audiences").into()),
    };
    let request = MintRequest {
        class,
        audiences,
        ttl_s: body.ttl_s,
    };
    let service = &state.tokens;
    let ttl = service.precheck(&gw.0, &request)?;
    let head = super::media::owned(&state, &gw.0, &id).await?;
    let minted = service.mint_all(&gw.0, &id, &head, &request, ttl, now_unix())?;
    // Configured and validated at start-up (`server.public_url`, or the bound address in dev
    // mode), never the request's Host / X-Forwarded-*: a client must not choose the origin.
    let base = state.link_base.as_str();
    let url = |token: &str| format!("{base}/v1/download/{token}");
    match class {
        Class::Single => {
            let m = minted.into_iter().next().ok_or(ApiError::Internal)?;
            Ok(HttpResponse::Created().json(MintResponse {
                url: url(&m.token),
                token: m.token,
                expires_at: rfc3339(m.expires),
            }))
        }
        Class::Fanout => Ok(HttpResponse::Created()
            .insert_header(("cache-control", "no-store"))
            .json(FanoutResponse {
                tokens: minted
                    .into_iter()
                    .map(|m| FanoutEntry {
                        url: url(&m.token),
                        expires_at: rfc3339(m.expires),
                        audience: m.audience,
                        token: m.token,
                    })
                    .collect(),
            })),
    }
}
