//! Server wiring: shared state, middleware, the route table, listeners and graceful shutdown.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_http::{HttpService, KeepAlive, Request, Response, body::BoxBody};
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpMessage, ResponseError, web};
use object_store::ObjectStore;
use object_store::multipart::MultipartStore;
use tracing::Instrument;

use crate::admission::Admission;
use crate::cleanup::Cleanup;
use crate::config::Settings;
use crate::error::{ApiError, BadRequest};
use crate::ingest::Ingest;
use crate::metrics::{InstrumentedStore, Metrics};
use crate::pipeline::pool::Pool;
use crate::retrieve::Retrieve;
use crate::routes;
use crate::seal::{self, Seal};
use crate::storage::{Backend, Retrier, RetryPolicy, RetryingMultipart, RetryingStore};
use crate::token_service::TokenService;
use crate::uploads::Uploads;
use crate::uploads::parts::PartStore;

/// Everything a request handler may use. Cheap to share; no per-request state.
#[derive(Debug)]
pub struct AppState {
    pub settings: Settings,
    pub store: Arc<dyn ObjectStore>,
    /// Where resumable uploads put their parts.
    pub parts: PartStore,
    /// The resumable-upload flow.
    pub uploads: Uploads,
    /// Token policy and minting.
    pub tokens: TokenService,
    /// The seal-for-me flow (caged workers; refused when `media.workers = 0`).
    pub seal: Seal,
    pub metrics: Metrics,
    /// The single-upload flow (and the lookup and commit steps the others share).
    pub ingest: Ingest,
    /// Set on SIGTERM: readiness fails so the load balancer stops sending work.
    pub draining: AtomicBool,
    /// Background cleanup (multipart aborts) that must outlive the request that started it.
    pub cleanup: Cleanup,
    /// Base of minted download URLs: `server.public_url`, or (dev mode, tests) the bound
    /// address. Never derived from a request's `Host` / `X-Forwarded-*`.
    pub link_base: String,
    /// `/readyz`'s cached store probe.
    pub readiness: routes::health::Readiness,
    /// The download flow.
    pub retrieve: Retrieve,
}

impl AppState {
    pub fn new(settings: Settings, backend: Backend) -> Result<AppState, String> {
        let metrics = Metrics::new().map_err(|e| format!("metrics: {e}"))?;
        // Retries outermost: every attempt is timed and counted by the instrumentation.
        let retrier = Retrier::new(
            RetryPolicy::from_settings(&settings.storage),
            metrics.store_retries.clone(),
        );
        let store: Arc<dyn ObjectStore> = Arc::new(RetryingStore::new(
            Arc::new(InstrumentedStore::new(backend.store, metrics.clone())),
            retrier.clone(),
        ));
        let multipart = backend.multipart.map(|m| {
            Arc::new(RetryingMultipart::new(m, retrier.clone())) as Arc<dyn MultipartStore>
        });
        let parts = PartStore::new(store.clone(), multipart, metrics.clone());
        let cleanup = Cleanup::on_current_runtime().ok_or("no tokio runtime")?;
        let admission = Admission::new(settings.upload_admission.clone(), metrics.admission());
        let ingest = Ingest::new(
            &settings,
            store.clone(),
            parts.native().cloned(),
            metrics.clone(),
            cleanup.clone(),
            admission,
        );
        let retrieve = Retrieve::new(
            store.clone(),
            settings.master_keys.clone(),
            settings.token_keys.clone(),
            settings.clock_skew,
            &metrics,
        );
        seal::purge_stale(settings.media_tmp_dir.as_deref());
        let pool = match &settings.media {
            Some(cfg) => {
                let pool =
                    Pool::start_self(cfg.clone()).map_err(|e| format!("media workers: {e}"))?;
                pool.observe_with(metrics.clone());
                Some(Arc::new(pool))
            }
            None => None,
        };
        let seal = Seal::new(&settings, pool, ingest.clone());
        let tokens = TokenService::new(&settings, metrics.clone());
        let uploads = Uploads::new(
            &settings,
            store.clone(),
            parts.clone(),
            ingest.clone(),
            metrics.clone(),
            cleanup.clone(),
        );
        Ok(AppState {
            settings,
            store,
            parts,
            seal,
            tokens,
            uploads,
            metrics,
            ingest,
            draining: AtomicBool::new(false),
            link_base: String::new(),
            readiness: Default::default(),
            retrieve,
            cleanup,
        })
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Every route of [`routes`] as (HTTP method, path template), for the API contract test
/// (`tests/openapi.rs` checks that `docs/openapi.json` describes exactly these).
/// MUST match the table in `routes` below: add, change or remove a route in both places.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/media"),
    ("GET", "/v1/media/{id}"),
    ("DELETE", "/v1/media/{id}"),
    ("POST", "/v1/media/{id}/tokens"),
    ("GET", "/v1/download/{token}"),
    ("HEAD", "/v1/download/{token}"),
    ("OPTIONS", "/v1/uploads/"),
    ("POST", "/v1/uploads/"),
    ("HEAD", "/v1/uploads/{uid}"),
    ("PATCH", "/v1/uploads/{uid}"),
    ("DELETE", "/v1/uploads/{uid}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

/// Answer for a known path with a method it does not serve.
fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(
        move || async move { Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed(allow)) },
    )
}

/// The route table: every route of the service, in one place. `/metrics` is served here
/// only when it has no listener of its own.
pub fn routes(cfg: &mut web::ServiceConfig, metrics_here: bool) {
    use routes::{download, health, media, tokens, tus, upload};
    // tus answers carry the protocol version, errors included.
    let tus = || DefaultHeaders::new().add(("tus-resumable", "1.0.0"));
    cfg.service(
        web::resource("/v1/media")
            .post(upload::upload)
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/v1/media/{id}")
            .get(media::get)
            .delete(media::delete)
            .default_service(not_allowed("GET, DELETE")),
    )
    .service(
        web::resource("/v1/media/{id}/tokens")
            // A fan-out request names up to `tokens.max_audiences` audiences.
            .app_data(json_config_limit(crate::token_service::JSON_LIMIT))
            .post(tokens::mint)
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/v1/download/{token}")
            .get(download::download)
            .head(download::download)
            .default_service(not_allowed("GET, HEAD")),
    )
    .service(
        // Clients are given the collection URL with or without the trailing slash.
        web::resource(["/v1/uploads/", "/v1/uploads"])
            .wrap(tus())
            .route(web::method(Method::OPTIONS).to(tus::options))
            .post(tus::create)
            .default_service(not_allowed("OPTIONS, POST")),
    )
    .service(
        web::resource("/v1/uploads/{uid}")
            .wrap(tus())
            .head(tus::head)
            .route(web::method(Method::PATCH).to(tus::patch))
            .delete(tus::terminate)
            .default_service(not_allowed("HEAD, PATCH, DELETE")),
    )
    .service(
        web::resource("/healthz")
            .get(health::healthz)
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/readyz")
            .get(health::readyz)
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/openapi.json")
            .get(health::openapi)
            .default_service(not_allowed("GET")),
    );
    if metrics_here {
        cfg.service(
            web::resource("/metrics")
                .get(health::metrics)
                .default_service(not_allowed("GET")),
        );
    }
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|_, _| ApiError::from(BadRequest::InvalidField("query")).into())
}

fn json_config() -> web::JsonConfig {
    json_config_limit(crate::expect::JSON_LIMIT)
}

fn json_config_limit(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _| {
            use actix_web::error::JsonPayloadError;
            match err {
                JsonPayloadError::Overflow { limit }
                | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::TooLarge {
                    kind: "json",
                    declared: limit as u64 + 1,
                    limit: limit as u64,
                }
                .into(),
                other => ApiError::from(BadRequest::MalformedJson(other.to_string())).into(),
            }
        })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, _| ApiError::MediaNotFound.into())
}

/// The `Expect: 100-continue` hook: the request goes on (and gets its 100) only if
/// [`crate::expect::check`] passes; otherwise its refusal is the final answer, with
/// `Connection: close` since the body the client holds back will never be read.
fn expect_continue(state: &AppState, req: Request) -> Result<Request, Response<BoxBody>> {
    let head = req.head();
    match crate::expect::check(
        state,
        &head.method,
        head.uri.path(),
        head.uri.query(),
        &head.headers,
    ) {
        Ok(()) => Ok(req),
        Err(e) => {
            tracing::info!(
                status = e.status_code().as_u16(),
                code = e.code(),
                "refused before 100-continue"
            );
            if head.method == Method::POST || head.method == Method::PATCH {
                state
                    .metrics
                    .uploads_rejected
                    .with_label_values(&[e.code()])
                    .inc();
            }
            let mut res: Response<BoxBody> = e.error_response().into();
            res.head_mut()
                .set_connection_type(actix_http::ConnectionType::Close);
            Err(res)
        }
    }
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
        // Without randomness a request still gets an id, just not a unique one.
        .unwrap_or_else(|| crate::crypto::random_hex::<8>().unwrap_or_default())
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
    let metrics_here = state.settings.metrics_on_main && metrics_listener.is_none();
    // Assembled from actix-server and actix-http rather than actix-web's `HttpServer`, which
    // has no hook for `Expect: 100-continue` (issue 13, defect 6). The settings below are the
    // ones `HttpServer` applied.
    let builder = actix_server::Server::build();
    let graceful = builder.graceful_shutdown_signal();
    let server = builder
        .workers(workers)
        // actix counts per worker; the setting is for the whole listener.
        .max_concurrent_connections(state.settings.max_connections.div_ceil(workers))
        .disable_signals()
        .shutdown_timeout(grace.as_secs())
        .listen("interop-media", listener, {
            let data = data.clone();
            move || {
                let data = data.clone();
                let app = {
                    App::new()
                        .app_data(data.clone())
                        .app_data(json_config())
                        .app_data(path_config())
                        .app_data(query_config())
                        .wrap_fn(|req, srv| {
                            let started = Instant::now();
                            let rid = request_id(&req);
                            // The route template, never the raw path: download paths carry tokens.
                            let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                            let arrival = crate::access::Arrival::new(&req, route);
                            let metrics = req
                                .app_data::<web::Data<AppState>>()
                                .map(|d| d.metrics.clone());
                            let in_flight = metrics
                                .as_ref()
                                .map(|m| crate::metrics::GaugeGuard::new(&m.http_in_flight));
                            req.extensions_mut().insert(RequestId(rid.clone()));
                            let span = tracing::info_span!("request", id = %rid);
                            let fut = srv.call(req);
                            async move {
                                // Handler and extractor errors arrive here as responses already.
                                let mut res: ServiceResponse = fut.await?;
                                drop(in_flight);
                                // Every 4xx carries a problem body with a stable code, including
                                // refusals from actix itself (extractors, payload handling).
                                let problem = res
                                    .headers()
                                    .get(actix_web::http::header::CONTENT_TYPE)
                                    .is_some_and(|v| v.as_bytes() == b"application/problem+json");
                                // (5xx keep their own bodies: /readyz answers 503 as plain text.)
                                if res.status().is_client_error() && !problem {
                                    let body = ApiError::Refused(res.status()).error_response();
                                    res = res.into_response(body);
                                }
                                let status = res.status();
                                let elapsed = started.elapsed();
                                let (route, method) =
                                    (arrival.route.as_str(), arrival.method.as_str());
                                if let Some(m) = &metrics {
                                    m.http_requests
                                        .with_label_values(&[route, method, status.as_str()])
                                        .inc();
                                    m.http_duration
                                        .with_label_values(&[route, method])
                                        .observe(elapsed.as_secs_f64());
                                }
                                if let Ok(v) = HeaderValue::from_str(&rid) {
                                    res.headers_mut().insert(REQUEST_ID.clone(), v);
                                }
                                crate::access::finish(&res, &arrival, elapsed, metrics.as_ref());
                                Ok(res)
                            }
                            .instrument(span)
                        })
                        .configure(|cfg| routes(cfg, metrics_here))
                        .default_service(web::to(|| async {
                            Err::<actix_web::HttpResponse, _>(ApiError::NotFoundRoute)
                        }))
                };
                let graceful = graceful.clone();
                let expect_state = data.clone();
                HttpService::build()
                    .graceful_shutdown_signal(move || {
                        let signal = graceful.clone();
                        async move { signal.notified().await }
                    })
                    .keep_alive(KeepAlive::Timeout(Duration::from_secs(5)))
                    .client_request_timeout(Duration::from_secs(5))
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .local_addr(addr)
                    .expect(fn_service(move |req: Request| {
                        let state = expect_state.clone();
                        async move { expect_continue(&state, req) }
                    }))
                    .finish(map_config(
                        app.into_factory()
                            .map_err(|e: actix_web::Error| e.error_response()),
                        |_| AppConfig::default(),
                    ))
                    .tcp()
            }
        })?
        .run();

    let metrics_server = match metrics_listener {
        Some(l) => {
            let data = data.clone();
            Some(
                actix_web::HttpServer::new(move || {
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
    // Keep serving while load balancers notice the failing readiness probe.
    tokio::time::sleep(state.settings.drain_delay).await;
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
    if !state.cleanup.drain(Duration::from_secs(10)).await {
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
