//! interop-media: the media host for messaging interoperability. Accepts end-to-end
//! encrypted attachments from gateways, stores them encrypted again at rest in object
//! storage, and serves them to holders of short-lived download tokens.
//!
//! The binary (`src/main.rs`) is a thin CLI over this library; [`run`] is the whole service.

#![forbid(unsafe_code)]

pub mod access;
pub mod admission;
pub mod app;
pub mod auth;
pub mod body_limit;
pub mod body_pace;
pub mod cleanup;
pub mod client;
pub mod config;
pub mod crypto;
pub mod devkeys;
pub mod error;
pub mod expect;
pub mod formats;
pub mod ingest;
pub mod media;
pub mod metrics;
pub mod pipeline;
pub mod range;
pub mod retrieve;
pub mod routes;
pub mod seal;
pub mod storage;
pub mod sweep;
pub mod token_service;
pub mod tokens;
pub mod uploads;

use std::net::TcpListener;
use std::sync::Arc;

use object_store::ObjectStore;

use crate::app::AppState;
use crate::config::Settings;

/// Run the service on `listener` until `shutdown` resolves, then drain and stop.
/// `ready` is called with the bound address once the server accepts connections.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), String> {
    let backend = storage::open_backend(&settings.storage)?;
    run_with_backend(settings, backend, listener, shutdown, ready).await
}

/// [`run`] with a caller-supplied store (tests inject failing stores this way).
pub async fn run_with_store(
    settings: Settings,
    store: Arc<dyn ObjectStore>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), String> {
    let backend = storage::Backend {
        store,
        multipart: None,
    };
    run_with_backend(settings, backend, listener, shutdown, ready).await
}

/// [`run`] on an opened backend. Without `public_url` (dev mode, tests) minted links use the
/// bound address: never the request's `Host`.
pub async fn run_with_backend(
    settings: Settings,
    backend: storage::Backend,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), String> {
    let metrics_listener = match &settings.metrics_listen {
        Some(addr) => {
            Some(TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?)
        }
        None => None,
    };
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut state = AppState::new(settings, backend)?;
    if let Some(url) = &state.settings.public_url {
        state.link_base = url.clone();
    } else {
        state.link_base = format!("http://{addr}");
    }
    let state = Arc::new(state);
    app::serve(state, listener, metrics_listener, shutdown, ready)
        .await
        .map_err(|e| format!("server error: {e}"))
}
