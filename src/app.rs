//! Server wiring: shared state, middleware, the route table, listeners and graceful shutdown.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{App, HttpMessage, HttpServer, web};
use object_store::ObjectStore;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Settings;
use crate::error::{ApiError, BadRequest};
use crate::ingest::MediaIds;
use crate::metrics::{InstrumentedStore, Metrics};
use crate::routes;

/// Everything a request handler may use. Cheap to share; no per-request state.
#[derive(Debug)]
pub struct AppState {
    pub settings: Settings,
    pub store: Arc<dyn ObjectStore>,
    pub metrics: Metrics,
    pub ids: MediaIds,
    /// Set on SIGTERM: readiness fails so the load balancer stops sending work.
    pub draining: AtomicBool,
    /// Background cleanup (multipart aborts) that must outlive the request that started it.
    pub cleanup: Cleanup,
}

/// Runs cleanup work on the main runtime, which outlives the HTTP workers, and lets shutdown
/// wait for it.
#[derive(Debug, Clone)]
pub struct Cleanup {
    handle: tokio::runtime::Handle,
    tracker: TaskTracker,
}

impl Cleanup {
    pub fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, fut: F) {
        self.handle.spawn(self.tracker.track_future(fut));
    }
}

impl AppState {
    pub fn new(settings: Settings, store: Arc<dyn ObjectStore>) -> Result<AppState, String> {
        let metrics = Metrics::new().map_err(|e| format!("metrics: {e}"))?;
        let ids = MediaIds::new(settings.master_keys.active().1);
        let store: Arc<dyn ObjectStore> = Arc::new(InstrumentedStore::new(store, metrics.clone()));
        Ok(AppState {
            settings,
            store,
            metrics,
            ids,
            draining: AtomicBool::new(false),
            cleanup: Cleanup {
                handle: tokio::runtime::Handle::try_current()
                    .map_err(|_| "no tokio runtime".to_string())?,
                tracker: TaskTracker::new(),
            },
        })
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The route table: every route of the service, in one place.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .route("/media", web::post().to(routes::upload::upload))
            .route("/media/{id}", web::get().to(routes::media::get))
            .route("/media/{id}", web::delete().to(routes::media::delete))
            .route("/media/{id}/tokens", web::post().to(routes::tokens::mint))
            .route(
                "/download/{token}",
                web::get().to(routes::download::download),
            )
            .route(
                "/download/{token}",
                web::head().to(routes::download::download),
            ),
    )
    .route("/healthz", web::get().to(routes::health::healthz))
    .route("/readyz", web::get().to(routes::health::readyz))
    .route("/metrics", web::get().to(routes::health::metrics))
    .route("/openapi.json", web::get().to(routes::health::openapi));
}

fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(4096)
        .error_handler(|err, _| ApiError::from(BadRequest::MalformedJson(err.to_string())).into())
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, _| ApiError::MediaNotFound.into())
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A caller's request id if it is short and plain, else a fresh one.
fn request_id(req: &actix_web::dev::ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_string)
        .unwrap_or_else(|| {
            let mut b = [0u8; 8];
            let _ = crate::crypto::random_bytes(&mut b);
            hex::encode(b)
        })
}

/// Build and start the HTTP server(s) on the given listeners. Returns when they have stopped.
///
/// `shutdown` resolving starts the drain: readiness goes 503, in-flight requests get
/// `shutdown_grace` to finish, then remaining connections are dropped, which aborts their
/// uploads; the function then waits for those aborts to reach the store.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(std::net::SocketAddr),
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let data = web::Data::from(state.clone());
    let workers = match state.settings.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let grace = state.settings.shutdown_grace;
    let server = HttpServer::new({
        let data = data.clone();
        move || {
            App::new()
                .app_data(data.clone())
                .app_data(json_config())
                .app_data(path_config())
                .wrap_fn(|req, srv| {
                    let started = Instant::now();
                    let rid = request_id(&req);
                    // The route template, never the raw path: download paths carry tokens.
                    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                    let method = req.method().clone();
                    let metrics = req
                        .app_data::<web::Data<AppState>>()
                        .map(|d| d.metrics.clone());
                    req.extensions_mut().insert(RequestId(rid.clone()));
                    let span =
                        tracing::info_span!("request", id = %rid, method = %method, route = %route);
                    let fut = srv.call(req);
                    async move {
                        let mut res: ServiceResponse = fut.await?;
                        let status = res.status();
                        let elapsed = started.elapsed();
                        if let Some(m) = metrics {
                            m.http_requests
                                .with_label_values(&[
                                    route.as_str(),
                                    method.as_str(),
                                    status.as_str(),
                                ])
                                .inc();
                            m.http_duration
                                .with_label_values(&[route.as_str(), method.as_str()])
                                .observe(elapsed.as_secs_f64());
                        }
                        if let Ok(v) = HeaderValue::from_str(&rid) {
                            res.headers_mut().insert(REQUEST_ID.clone(), v);
                        }
                        if status.is_server_error() {
                            tracing::warn!(
                                status = status.as_u16(),
                                ms = elapsed.as_millis() as u64,
                                "request failed"
                            );
                        } else {
                            tracing::info!(
                                status = status.as_u16(),
                                ms = elapsed.as_millis() as u64,
                                "request"
                            );
                        }
                        Ok(res)
                    }
                    .instrument(span)
                })
                .configure(routes)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(ApiError::NotFoundRoute)
                }))
        }
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(grace.as_secs())
    .client_request_timeout(Duration::from_secs(5))
    .listen(listener)?
    .run();

    let metrics_server = match metrics_listener {
        Some(l) => {
            let data = data.clone();
            Some(
                HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .route("/metrics", web::get().to(routes::health::metrics))
                })
                .workers(1)
                .disable_signals()
                .listen(l)?
                .run(),
            )
        }
        None => None,
    };

    let handle = server.handle();
    let metrics_handle = metrics_server.as_ref().map(|s| s.handle());
    let server_task = tokio::spawn(server);
    let metrics_task = metrics_server.map(tokio::spawn);
    ready(addr);

    shutdown.await;
    tracing::info!(grace_s = grace.as_secs(), "shutdown requested: draining");
    state.draining.store(true, Ordering::SeqCst);
    // Graceful stop: stop accepting, let in-flight requests finish within the grace period;
    // actix then drops what is left, and dropped uploads schedule their aborts.
    handle.stop(true).await;
    if let Some(h) = metrics_handle {
        h.stop(true).await;
    }
    let _ = server_task.await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    state.cleanup.tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), state.cleanup.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "some multipart aborts did not finish; the bucket lifecycle rule will collect them"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// The request id, for handlers that log.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);
