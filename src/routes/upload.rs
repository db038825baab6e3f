//! `POST /v1/media`: sealed upload, and seal-for-me upload (`?seal=whatsapp|signal`).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::{Gateway, Scope};
use crate::body_pace::BodyError;
use crate::error::{ApiError, BadRequest};
use crate::ingest::{Outcome, UploadRequest};
use crate::media::{MediaFormat, parse_sha256};
use crate::seal::SealRequest;

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

fn content_length(req: &HttpRequest) -> Result<Option<u64>, ApiError> {
    // actix has already refused requests with both Content-Length and chunked encoding.
    match req.headers().get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => Ok(Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(BadRequest::InvalidField("content-length"))?,
        )),
    }
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
    let declared_len = content_length(req)?;
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
        let body = payload
            .map(|r| r.map_err(|_| BodyError::Aborted))
            .boxed_local();
        if let Some(seal) = &query.seal {
            gw.0.require(Scope::Seal)?;
            let format = match seal.as_str() {
                "whatsapp" => MediaFormat::Whatsapp,
                "signal" => MediaFormat::Signal,
                _ => return Err(BadRequest::InvalidField("seal").into()),
            };
            if state.is_draining() {
                return Err(ApiError::ShuttingDown);
            }
            let kind = header(&req, "x-media-kind")?
                .parse()
                .map_err(|()| BadRequest::UnknownKind)?;
            let sealed = SealRequest {
                partner: gw.0,
                kind,
                format,
                declared_len: content_length(&req)?,
            };
            let (created, media) = state.seal.seal_for_me(sealed, body).await?;
            let mut resp = if created {
                HttpResponse::Created()
            } else {
                HttpResponse::Ok()
            };
            // The body carries the media key.
            return Ok(resp
                .insert_header((header::LOCATION, format!("/v1/media/{}", media.id)))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(media));
        }
        gw.0.require(Scope::Upload)?;
        if state.is_draining() {
            return Err(ApiError::ShuttingDown);
        }
        let upload = parse_request(&req, gw)?;
        match state.ingest.ingest(upload, body).await? {
            Outcome::Created(info) => Ok(HttpResponse::Created()
                .insert_header((header::LOCATION, format!("/v1/media/{}", info.id)))
                .json(info)),
            Outcome::Existing(info) => Ok(HttpResponse::Ok().json(info)),
        }
    }
    .await;
    match result {
        Ok(resp) => Ok(resp),
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
