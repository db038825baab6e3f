//! The service in this test process over a store the test wraps (`run_with_store`), for
//! tests that inject store faults. Dev keys in a temporary directory; no media workers (a
//! test binary cannot serve as one). Include with
//! `#[path = "common/in_process.rs"] mod in_process;`.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use interop_media::config::{Config, Settings, Sources};
use object_store::ObjectStore;
use object_store::multipart::MultipartStore;

/// A running in-process service.
pub struct InProcess {
    pub addr: SocketAddr,
    /// The dev partner's API key.
    pub key: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
    _dir: tempfile::TempDir,
}

/// Start the service on a random loopback port over `store`, with 5 MiB parts and `workers`
/// HTTP workers.
#[allow(dead_code)] // each test binary includes this file and uses one of the two starts
pub fn start(store: Arc<dyn ObjectStore>, workers: usize) -> InProcess {
    start_backend(store, None, workers, |_| {})
}

/// [`start`] with the store's multipart interface (as S3 has), and a last say on settings.
pub fn start_backend(
    store: Arc<dyn ObjectStore>,
    multipart: Option<Arc<dyn MultipartStore>>,
    workers: usize,
    adjust: impl FnOnce(&mut Settings),
) -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let dev = interop_media::devkeys::ensure(dir.path()).unwrap();
    let config = Config::load(&Sources {
        dev_layer: Some(dev.layer),
        file: None,
        env: false,
    })
    .unwrap();
    let mut settings = Settings::resolve(&config).unwrap();
    settings.storage.part_size = 5 << 20;
    settings.workers = workers;
    settings.media = None;
    adjust(&mut settings);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(interop_media::run_with_backend(
        settings,
        interop_media::storage::Backend { store, multipart },
        listener,
        async move {
            let _ = rx.await;
        },
        |_| {},
    ));
    InProcess {
        addr,
        key: dev.new_partner_key.unwrap(),
        stop: Some(tx),
        task: Some(task),
        _dir: dir,
    }
}

impl InProcess {
    /// Ask for shutdown and wait (20 s at most) for the service's result.
    pub async fn stop(&mut self) -> Result<(), String> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(Duration::from_secs(20), task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(format!("service task: {e}")),
            Err(_) => Err("service did not stop within 20 s".into()),
        }
    }
}
