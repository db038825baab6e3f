//! Background cleanup (multipart aborts, lease releases) that must outlive the request that
//! started it: run on the main runtime, which outlives the HTTP workers, and tracked so that
//! shutdown can wait for it.

use tokio_util::task::TaskTracker;

#[derive(Debug, Clone)]
pub struct Cleanup {
    handle: tokio::runtime::Handle,
    tracker: TaskTracker,
}

impl Cleanup {
    /// On the current runtime (`None` outside one).
    pub fn on_current_runtime() -> Option<Cleanup> {
        Some(Cleanup {
            handle: tokio::runtime::Handle::try_current().ok()?,
            tracker: TaskTracker::new(),
        })
    }

    pub fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, fut: F) {
        self.handle.spawn(self.tracker.track_future(fut));
    }

    /// Accept no more work and wait up to `limit` for what runs; false if it did not finish.
    pub async fn drain(&self, limit: std::time::Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok()
    }
}
