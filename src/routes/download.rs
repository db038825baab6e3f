//! `GET`/`HEAD /v1/download/{token}`: the stored blob for anyone holding a valid token.

use actix_web::body::SizedStream;
use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use futures::StreamExt;

use crate::app::AppState;
use crate::error::ApiError;
use crate::ingest::now_unix;
use crate::range::{RangeAnswer, interpret};

/// Whether an `If-None-Match` value matches our (strong) ETag; weak comparison, per RFC 9110.
fn none_match(value: &str, etag: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

fn common(resp: &mut HttpResponseBuilder, etag: &str) {
    resp.insert_header((header::ETAG, etag.to_string()))
        .insert_header((header::CACHE_CONTROL, "private"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
}

pub async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let r = state.retrieve.resolve(&token, now_unix()).await?;
    crate::access::note(&req, |n| {
        n.media_id = Some(r.id.clone());
        n.partner = Some(r.claims.partner.clone());
        n.audience = Some(r.claims.audience.clone());
    });
    let etag = r.etag();
    let headers = req.headers();
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && none_match(inm, &etag)
    {
        let mut resp = HttpResponse::NotModified();
        common(&mut resp, &etag);
        return Ok(resp.finish());
    }
    // If-Range with a different validator: the client's partial copy is stale, send it all.
    let range_header = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| {
            headers
                .get(header::IF_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.trim() == etag)
        });
    let (mut resp, first, last) = match interpret(range_header, r.len) {
        RangeAnswer::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { size: r.len }),
        RangeAnswer::Full => (HttpResponse::Ok(), 0, r.len.saturating_sub(1)),
        RangeAnswer::Partial { first, last } => {
            let mut resp = HttpResponse::PartialContent();
            resp.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{}", r.len),
            ));
            (resp, first, last)
        }
    };
    common(&mut resp, &etag);
    resp.content_type("application/octet-stream");
    let len = if r.len == 0 { 0 } else { last - first + 1 };
    if req.method() == Method::HEAD || len == 0 {
        // Content-Length of what a GET would send, no body and no store read.
        return Ok(resp.body(SizedStream::new(
            len,
            futures::stream::empty::<Result<bytes::Bytes, ApiError>>(),
        )));
    }
    let kind = r.head.header.meta.kind.as_str();
    let counter = state.metrics.bytes_out.with_label_values(&[kind]);
    // The timer lives in the body stream: it is observed when the last byte went out or the
    // body was dropped (client gone), not when the headers were sent.
    let mut timer = state.metrics.download_started(started);
    let mut sent = 0u64;
    let mut stream = state.retrieve.body(&r, first, last);
    // The first piece (up to 256 KiB: the range's first chunks) is read and authenticated
    // before the status line, so an object whose start fails to open answers 500, not 200.
    // A later chunk that fails ends the stream with an error: actix then drops the connection
    // short of Content-Length, which clients report as a truncated transfer.
    let head = match stream.next().await {
        Some(Ok(piece)) => Some(Ok(piece)),
        Some(Err(e)) => return Err(e),
        None => None,
    };
    let stream = futures::stream::iter(head)
        .chain(stream)
        .inspect(move |piece| {
            if let Ok(b) = piece {
                counter.inc_by(b.len() as u64);
                sent += b.len() as u64;
                if sent >= len {
                    timer.finished();
                }
            }
        });
    Ok(resp.body(SizedStream::new(len, stream)))
}
