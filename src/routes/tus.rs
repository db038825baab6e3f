//! `/v1/uploads/`: tus 1.0 resumable uploads. Headers in, headers out; the work is in
//! `crate::uploads`.

use actix_web::http::header::{self, HttpDate};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use futures::StreamExt;

use crate::app::AppState;
use crate::auth::{Authorized, needs};
use crate::body_pace::BodyError;
use crate::error::{ApiError, BadRequest};
use crate::media::parse_sha256;
use crate::uploads::protocol::{
    ChecksumError, OFFSET_OCTET_STREAM, TUS_CHECKSUMS, TUS_EXTENSIONS, TUS_VERSION, parse_checksum,
    parse_metadata,
};
use crate::uploads::{self, NewUpload, PatchRequest, Progress};

fn text<'a>(req: &'a HttpRequest, name: &'static str) -> Result<Option<&'a str>, ApiError> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| BadRequest::InvalidField(name).into()),
    }
}

fn number(req: &HttpRequest, name: &'static str) -> Result<Option<u64>, ApiError> {
    match text(req, name)? {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| BadRequest::InvalidField(name).into()),
    }
}

/// Every request but `OPTIONS` must speak our protocol version (tus: 412 otherwise).
fn require_tus(req: &HttpRequest) -> Result<(), ApiError> {
    match text(req, "tus-resumable") {
        Ok(Some(TUS_VERSION)) => Ok(()),
        _ => Err(ApiError::TusVersion),
    }
}

fn require_octet_stream(req: &HttpRequest) -> Result<(), ApiError> {
    let ct = text(req, "content-type")?.unwrap_or_default();
    let essence = ct.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case(OFFSET_OCTET_STREAM) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedContentType(OFFSET_OCTET_STREAM))
    }
}

fn has_body(req: &HttpRequest) -> Result<bool, ApiError> {
    Ok(match number(req, "content-length")? {
        Some(n) => n > 0,
        None => req.headers().contains_key(header::TRANSFER_ENCODING),
    })
}

fn progress_headers(mut resp: HttpResponseBuilder, p: &Progress) -> HttpResponseBuilder {
    resp.insert_header(("upload-offset", p.offset.to_string()))
        .insert_header((
            "upload-expires",
            HttpDate::from(uploads::expires_at(p)).to_string(),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(id) = &p.media_id {
        resp.insert_header(("media-id", id.as_str()));
    }
    resp
}

fn body_stream(
    payload: web::Payload,
) -> impl futures::Stream<Item = Result<bytes::Bytes, BodyError>> + Unpin {
    payload
        .map(|r| r.map_err(|_| BodyError::Aborted))
        .boxed_local()
}

fn patch_request(req: &HttpRequest, offset: u64) -> Result<PatchRequest, ApiError> {
    let checksum = match text(req, "upload-checksum")? {
        None => None,
        Some(v) => Some(parse_checksum(v).map_err(|e| match e {
            ChecksumError::Unsupported => BadRequest::ChecksumAlgorithm,
            ChecksumError::Malformed => BadRequest::InvalidField("upload-checksum"),
        })?),
    };
    Ok(PatchRequest {
        offset,
        declared_len: number(req, "content-length")?,
        checksum,
    })
}

/// Run a PATCH as its own task on this worker. actix drops a handler when its client goes
/// away; the task instead sees the body end and commits what arrived, which is the point of
/// a resumable upload (a dropped PATCH would otherwise lose everything since its start).
async fn detached_patch(
    state: &web::Data<AppState>,
    partner: crate::auth::Partner,
    uid: String,
    patch: PatchRequest,
    payload: web::Payload,
) -> Result<Progress, ApiError> {
    let state = state.clone();
    let metrics = state.metrics.clone();
    let task = actix_web::rt::spawn(async move {
        uploads::patch(&state.uploads, &partner, &uid, patch, body_stream(payload)).await
    });
    let result = task.await.map_err(|_| ApiError::Internal)?;
    if let Err(e) = &result {
        metrics
            .uploads_rejected
            .with_label_values(&[e.code()])
            .inc();
    }
    result
}

/// `OPTIONS /v1/uploads/`: what this server supports (no key needed, as tus clients and
/// CORS preflights ask before authenticating).
pub async fn options(state: web::Data<AppState>) -> HttpResponse {
    let max = state.settings.sealed_limits.max();
    HttpResponse::NoContent()
        .insert_header(("tus-version", TUS_VERSION))
        .insert_header(("tus-extension", TUS_EXTENSIONS))
        .insert_header(("tus-max-size", max.to_string()))
        .insert_header(("tus-checksum-algorithm", TUS_CHECKSUMS))
        .finish()
}

/// `POST /v1/uploads/`: creation, and creation-with-upload when a body comes along.
pub async fn create(
    state: web::Data<AppState>,
    gw: Authorized<needs::Upload>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require_tus(&req)?;
    if state.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    let length = match number(&req, "upload-length")? {
        Some(n) => n,
        None if req.headers().contains_key("upload-defer-length") => {
            return Err(BadRequest::InvalidField("upload-defer-length").into());
        }
        None => return Err(BadRequest::MissingHeader("upload-length").into()),
    };
    let raw = text(&req, "upload-metadata")?.unwrap_or_default();
    let meta = parse_metadata(raw).map_err(BadRequest::Metadata)?;
    let field = |k: &'static str, missing: &'static str| {
        meta.get(k)
            .and_then(|v| std::str::from_utf8(v).ok())
            .ok_or(BadRequest::Metadata(missing))
    };
    let kind = field("kind", "Upload-Metadata needs `kind`")?
        .parse()
        .map_err(|()| BadRequest::UnknownKind)?;
    let format = field("format", "Upload-Metadata needs `format`")?
        .parse()
        .map_err(|()| BadRequest::UnknownFormat)?;
    let sha256 = parse_sha256(field("sha256", "Upload-Metadata needs `sha256`")?)
        .ok_or(BadRequest::MalformedDigest)?;
    let with_body = has_body(&req)?;
    if with_body {
        require_octet_stream(&req)?;
    }
    let patch = patch_request(&req, 0)?;

    let partner = gw.0.clone();
    let created = uploads::create(
        &state.uploads,
        NewUpload {
            partner: gw.0,
            kind,
            format,
            sha256,
            length,
            metadata: raw.to_string(),
        },
    )
    .await?;
    let location = format!(
        "{}/v1/uploads/{}",
        state.settings.public_url.as_deref().unwrap_or_default(),
        created.uid
    );
    let progress = if with_body || length == 0 {
        match detached_patch(&state, partner.clone(), created.uid.clone(), patch, payload).await {
            Ok(p) => p,
            // The upload is gone with its body.
            Err(e @ ApiError::DigestMismatch) => return Err(e),
            // The upload exists; the client resumes from what was kept.
            Err(e) => {
                tracing::info!(code = e.code(), "creation-with-upload body not fully taken");
                uploads::status(&state.uploads, &partner, &created.uid)
                    .await
                    .unwrap_or(created)
            }
        }
    } else {
        created
    };
    Ok(progress_headers(HttpResponse::Created(), &progress)
        .insert_header((header::LOCATION, location))
        .finish())
}

/// `HEAD /v1/uploads/{uid}`: the durable offset.
pub async fn head(
    state: web::Data<AppState>,
    gw: Authorized<needs::Upload>,
    req: HttpRequest,
    uid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_tus(&req)?;
    let p = uploads::status(&state.uploads, &gw.0, &uid).await?;
    let mut resp = progress_headers(HttpResponse::Ok(), &p);
    resp.insert_header(("upload-length", p.length.to_string()));
    if !p.metadata.is_empty() {
        resp.insert_header(("upload-metadata", p.metadata.as_str()));
    }
    Ok(resp.finish())
}

/// `PATCH /v1/uploads/{uid}`: append at `Upload-Offset`.
pub async fn patch(
    state: web::Data<AppState>,
    gw: Authorized<needs::Upload>,
    req: HttpRequest,
    uid: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require_tus(&req)?;
    if state.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    require_octet_stream(&req)?;
    let offset =
        number(&req, "upload-offset")?.ok_or(BadRequest::MissingHeader("upload-offset"))?;
    let patch = patch_request(&req, offset)?;
    let p = detached_patch(&state, gw.0, uid.into_inner(), patch, payload).await?;
    Ok(progress_headers(HttpResponse::NoContent(), &p).finish())
}

/// `DELETE /v1/uploads/{uid}`: termination.
pub async fn terminate(
    state: web::Data<AppState>,
    gw: Authorized<needs::Upload>,
    req: HttpRequest,
    uid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_tus(&req)?;
    uploads::terminate(&state.uploads, &gw.0, &uid).await?;
    Ok(HttpResponse::NoContent().finish())
}
