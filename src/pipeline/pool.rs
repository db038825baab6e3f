//! Supervises worker processes (`interop-media worker`): a warm pool, so a request does not
//! pay a process start, a wall-clock deadline per request, and replacement of any worker that
//! died, timed out or has served its quota. A worker's failure costs only its request.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::worker::{Cage, Request, Response};
use super::{Analysis, Limits, MediaError};
use crate::media::MediaKind;

/// Pool settings (`[media]` in the configuration).
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Workers kept warm; also the number of analyses running at once.
    pub workers: usize,
    pub cage: Cage,
    /// Wall-clock budget of one analysis.
    pub deadline: Duration,
    /// How long a request may wait for a free worker before 503.
    pub queue_wait: Duration,
    /// Analyses a worker serves before it is replaced (its CPU limit is per process).
    pub max_requests: u32,
    pub limits: Limits,
}

/// Why an analysis produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{0}")]
    Media(MediaError),
    /// The worker exceeded its deadline, ran out of memory or CPU, or crashed.
    #[error("the worker failed: {0}")]
    WorkerFailed(&'static str),
    /// Every worker stayed busy for `queue_wait`.
    #[error("no worker free")]
    Busy,
    /// Workers cannot be started (misconfiguration, missing binary).
    #[error("cannot start a worker: {0}")]
    Spawn(String),
}

struct Worker {
    child: Arc<Mutex<Child>>,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    served: u32,
}

impl Worker {
    fn kill(&self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A pool of caged workers. Cheap to share (`Arc`).
pub struct Pool {
    exe: PathBuf,
    cfg: PoolConfig,
    idle: Mutex<Vec<Worker>>,
    slots: Semaphore,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.cfg.workers)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Start `cfg.workers` workers of the executable `exe` (normally this binary).
    pub fn start(exe: PathBuf, cfg: PoolConfig) -> Result<Pool, PoolError> {
        let pool = Pool {
            slots: Semaphore::new(cfg.workers.max(1)),
            idle: Mutex::new(Vec::new()),
            exe,
            cfg,
        };
        let mut warm = Vec::with_capacity(pool.cfg.workers);
        for _ in 0..pool.cfg.workers {
            warm.push(pool.spawn()?);
        }
        if let Ok(mut idle) = pool.idle.lock() {
            *idle = warm;
        }
        Ok(pool)
    }

    /// A pool of this very binary.
    pub fn start_self(cfg: PoolConfig) -> Result<Pool, PoolError> {
        let exe = std::env::current_exe().map_err(|e| PoolError::Spawn(e.to_string()))?;
        Pool::start(exe, cfg)
    }

    pub fn limits(&self) -> &Limits {
        &self.cfg.limits
    }

    fn spawn(&self) -> Result<Worker, PoolError> {
        let c = &self.cfg.cage;
        let mut child = Command::new(&self.exe)
            .arg("worker")
            .arg("--memory-bytes")
            .arg(c.memory_bytes.to_string())
            .arg("--cpu-seconds")
            .arg(c.cpu_seconds.to_string())
            .arg("--max-file-bytes")
            .arg(c.max_file_bytes.to_string())
            // Nothing of the service's environment (keys given as values live there).
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| PoolError::Spawn(format!("{}: {e}", self.exe.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(PoolError::Spawn("worker pipes missing".into()));
        };
        Ok(Worker {
            child: Arc::new(Mutex::new(child)),
            stdin,
            stdout: BufReader::new(stdout),
            served: 0,
        })
    }

    /// Analyze `input` (declared `kind`) in a worker; a cleaned copy may go to `output`.
    ///
    /// A video whose worker died (the thumbnail's C++ decoder crashed, ran out of memory or past
    /// its frame deadline) is analysed once more without a thumbnail: the thumbnail is optional,
    /// the upload is not. That answer says `thumbnail_skipped: decoder-failed`.
    pub async fn analyze(
        self: &Arc<Self>,
        kind: MediaKind,
        input: &Path,
        output: &Path,
    ) -> Result<Analysis, PoolError> {
        let limits = self.cfg.limits.clone();
        match self.analyze_with(kind, input, output, limits.clone()).await {
            Err(PoolError::WorkerFailed(why))
                if kind == MediaKind::Video && limits.video_thumbnail =>
            {
                tracing::info!(why, "video thumbnail decoder failed; analysing without it");
                let without = Limits {
                    video_thumbnail: false,
                    ..limits
                };
                self.analyze_with(kind, input, output, without).await
            }
            other => other,
        }
    }

    async fn analyze_with(
        self: &Arc<Self>,
        kind: MediaKind,
        input: &Path,
        output: &Path,
        limits: Limits,
    ) -> Result<Analysis, PoolError> {
        let permit = tokio::time::timeout(self.cfg.queue_wait, self.slots.acquire())
            .await
            .map_err(|_| PoolError::Busy)?
            .map_err(|_| PoolError::Busy)?;
        let req = Request {
            kind,
            input: input.to_path_buf(),
            output: output.to_path_buf(),
            limits,
        };
        let pool = self.clone();
        let worker = match self.idle.lock().ok().and_then(|mut v| v.pop()) {
            Some(w) => w,
            None => tokio::task::spawn_blocking(move || pool.spawn())
                .await
                .map_err(|_| PoolError::Spawn("spawn task failed".into()))??,
        };
        let child = worker.child.clone();
        // The exchange blocks on pipes, so it runs on the blocking pool; the deadline is kept
        // here and enforced by killing the process, which ends the blocked read.
        let exchange = tokio::task::spawn_blocking(move || {
            let mut worker = worker;
            let answer = exchange(&mut worker, &req);
            (worker, answer)
        });
        let outcome = tokio::time::timeout(self.cfg.deadline, exchange).await;
        drop(permit);
        match outcome {
            Err(_) => {
                if let Ok(mut c) = child.lock() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                Err(PoolError::WorkerFailed("deadline exceeded"))
            }
            Ok(Err(_)) => Err(PoolError::WorkerFailed("supervisor task failed")),
            Ok(Ok((mut worker, answer))) => {
                // A worker that panicked may be in any state: replace it.
                let healthy = matches!(answer, Ok(Response::Done(_) | Response::Refused(_)));
                let keep = healthy && worker.served + 1 < self.cfg.max_requests;
                worker.served += 1;
                if keep {
                    if let Ok(mut idle) = self.idle.lock() {
                        idle.push(worker);
                    }
                } else {
                    worker.kill();
                }
                match answer {
                    Ok(Response::Done(a)) => Ok(*a),
                    Ok(Response::Refused(e)) => Err(PoolError::Media(e)),
                    Ok(Response::Panicked) => Err(PoolError::WorkerFailed("decoder panicked")),
                    Err(why) => Err(PoolError::WorkerFailed(why)),
                }
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Ok(idle) = self.idle.get_mut() {
            for w in idle.drain(..) {
                w.kill();
            }
        }
    }
}

/// One request/response over the worker's pipes. `Err` means the worker is gone (crashed,
/// killed by a limit or by the deadline).
fn exchange(worker: &mut Worker, req: &Request) -> Result<Response, &'static str> {
    let mut line = serde_json::to_vec(req).map_err(|_| "request encoding")?;
    line.push(b'\n');
    worker
        .stdin
        .write_all(&line)
        .and_then(|()| worker.stdin.flush())
        .map_err(|_| "worker exited")?;
    let mut answer = String::new();
    match worker.stdout.read_line(&mut answer) {
        Ok(0) | Err(_) => Err(worker_death(worker)),
        Ok(_) => serde_json::from_str(&answer).map_err(|_| "malformed worker answer"),
    }
}

/// Why a worker's pipe closed, from its exit status (signal or code).
fn worker_death(worker: &Worker) -> &'static str {
    use std::os::unix::process::ExitStatusExt;
    let status = worker.child.lock().ok().and_then(|mut c| c.wait().ok());
    match status.and_then(|s| s.signal()) {
        Some(libc::SIGXCPU) | Some(libc::SIGKILL) => "CPU or time limit",
        Some(libc::SIGABRT) => "aborted (out of memory or a decoder abort)",
        Some(libc::SIGSEGV) | Some(libc::SIGBUS) => "crashed",
        Some(_) => "killed by a signal",
        None => "exited",
    }
}
