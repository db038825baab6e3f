//! Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI contract.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::app::AppState;

/// The API contract, served as written in `docs/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Ready when not draining and the store answers. Keys are checked at start-up: a replica
/// whose keys failed to load never starts listening.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.is_draining() {
        return HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("draining\n");
    }
    match state.store.head(&Path::from("readyz-probe")).await {
        Ok(_) | Err(object_store::Error::NotFound { .. }) => HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: object store unreachable");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain")
                .body("store unreachable\n")
        }
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; version=0.0.4"))
        .body(state.metrics.render())
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}
