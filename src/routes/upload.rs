//! `POST /v1/media`: sealed upload.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::{Gateway, Scope};
use crate::error::{ApiError, BadRequest};
use crate::ingest::{BodyError, Outcome, UploadRequest, ingest};
use crate::media::parse_sha256;

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    seal: Option<String>,
}

fn header<'a>(req: &'a HttpRequest, name: &'static str) -> Result<&'a str, ApiError> {
    req.headers()
        .get(name)
        .ok_or(BadRequest::MissingHeader(name))?
        .to_str()
        .map_err(|_| BadRequest::MissingHeader(name).into())
}

fn parse_request(req: &HttpRequest, gw: Gateway) -> Result<UploadRequest, ApiError> {
    let kind = header(req, "x-media-kind")?
        .parse()
        .map_err(|()| BadRequest::UnknownKind)?;
    let format = header(req, "x-media-format")?
        .parse()
        .map_err(|()| BadRequest::UnknownFormat)?;
    let digest = req
        .headers()
        .get("x-media-sha256")
        .ok_or(BadRequest::MissingHeader("x-media-sha256"))?;
    let sha256 = digest
        .to_str()
        .ok()
        .and_then(parse_sha256)
        .ok_or(BadRequest::MalformedDigest)?;
    // actix has already refused requests with both Content-Length and chunked encoding.
    let declared_len = match req.headers().get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(BadRequest::InvalidField("content-length"))?,
        ),
    };
    Ok(UploadRequest {
        partner: gw.0,
        kind,
        format,
        sha256,
        declared_len,
    })
}

pub async fn upload(
    state: web::Data<AppState>,
    gw: Gateway,
    req: HttpRequest,
    query: web::Query<UploadQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let result = async {
        if let Some(seal) = &query.seal {
            gw.0.require(Scope::Seal)?;
            if !matches!(seal.as_str(), "whatsapp" | "signal") {
                return Err(BadRequest::InvalidField("seal").into());
            }
            return Err(ApiError::NotImplemented("seal-for-me upload"));
        }
        gw.0.require(Scope::Upload)?;
        if state.is_draining() {
            return Err(ApiError::ShuttingDown);
        }
        let upload = parse_request(&req, gw)?;
        let body = payload
            .map(|r| r.map_err(|_| BodyError::Aborted))
            .boxed_local();
        ingest(&state, upload, body).await
    }
    .await;
    match result {
        Ok(Outcome::Created(info)) => Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, format!("/v1/media/{}", info.id)))
            .json(info)),
        Ok(Outcome::Existing(info)) => Ok(HttpResponse::Ok().json(info)),
        Err(e) => {
            state
                .metrics
                .uploads_rejected
                .with_label_values(&[e.code()])
                .inc();
            Err(e)
        }
    }
}
