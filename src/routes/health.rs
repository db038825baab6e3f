//! Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI contract.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use std::time::Instant;

use crate::app::AppState;

/// The API contract, served as written in `docs/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// The last store probe of `/readyz`, reused for `storage.probe_cache_ms` so that many
/// probes (replicas x load balancers) cost the store one request per period.
#[derive(Debug, Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl Readiness {
    /// Whether the store answered: at most one probe at a time, answered from the cache when
    /// recent, and never waiting longer than `timeout` (a store that does not answer in time
    /// counts as down, and that is cached too).
    async fn store_ok(&self, state: &AppState) -> bool {
        let st = &state.settings.storage;
        let probe = async {
            let mut last = self.last.lock().await;
            if let Some((at, ok)) = *last
                && at.elapsed() < st.probe_cache
            {
                return ok;
            }
            let ok = match state.store.head(&Path::from("readyz-probe")).await {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "readiness: object store unreachable");
                    false
                }
            };
            *last = Some((Instant::now(), ok));
            ok
        };
        match tokio::time::timeout(st.probe_timeout, probe).await {
            Ok(ok) => ok,
            Err(_) => {
                // The probe was cut; remember the failure unless another probe holds the lock.
                if let Ok(mut last) = self.last.try_lock() {
                    *last = Some((Instant::now(), false));
                }
                tracing::warn!(
                    timeout_ms = st.probe_timeout.as_millis() as u64,
                    "readiness: object store did not answer in time"
                );
                false
            }
        }
    }
}

/// Ready when not draining and the store answers within `storage.probe_timeout_ms`. Keys
/// are checked at start-up: a replica whose keys failed to load never starts listening.
/// Liveness (`/healthz`) never looks at the store: a store outage must not restart replicas.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.is_draining() {
        state.metrics.ready.set(0);
        return HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("draining\n");
    }
    let ok = state.readiness.store_ok(&state).await;
    state.metrics.ready.set(i64::from(ok));
    if ok {
        HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("store unreachable\n")
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
