//! Supervises worker processes (`interop-media worker`): a warm pool, so a request does not
//! pay a process start, a wall-clock deadline per request, and replacement of any worker that
//! died, timed out or has served its quota. A worker's failure costs only its request.
//!
//! A worker cannot open files (see `cage`): each request goes over a Unix socket (the
//! worker's stdin) with the input and output descriptors attached (`SCM_RIGHTS`).

use std::fs::File;
use std::io::{BufRead, BufReader, IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The uid (and gid) workers run as when the service runs as root (`media.worker_uid`).
    pub worker_uid: u32,
}

/// Default of `media.worker_uid`: nobody (and nogroup) on Debian.
pub const NOBODY: u32 = 65534;

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
    /// Our end of the request socket (the worker's stdin).
    requests: UnixStream,
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
    /// Set once the worker uid proved unable to execute the binary.
    same_uid: AtomicBool,
    /// Where busy workers, queue waits and lost workers are counted, once the service has
    /// set it (`observe_with`); the CLI's pool has none.
    metrics: std::sync::OnceLock<crate::metrics::Metrics>,
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
        // Before any worker exists: a worker running as our uid must not be able to read our
        // memory through /proc/<pid>/mem or ptrace.
        super::cage::harden_service().map_err(PoolError::Spawn)?;
        let pool = Pool {
            slots: Semaphore::new(cfg.workers.max(1)),
            idle: Mutex::new(Vec::new()),
            same_uid: AtomicBool::new(false),
            metrics: std::sync::OnceLock::new(),
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

    /// Report to these metrics from now on.
    pub fn observe_with(&self, metrics: crate::metrics::Metrics) {
        let _ = self.metrics.set(metrics);
    }

    /// A pool of this very binary.
    pub fn start_self(cfg: PoolConfig) -> Result<Pool, PoolError> {
        let exe = std::env::current_exe().map_err(|e| PoolError::Spawn(e.to_string()))?;
        Pool::start(exe, cfg)
    }

    fn spawn(&self) -> Result<Worker, PoolError> {
        let c = &self.cfg.cage;
        let command = |as_worker_uid: bool| -> Result<(Command, UnixStream, bool), PoolError> {
            let (ours, theirs) =
                UnixStream::pair().map_err(|e| PoolError::Spawn(format!("socketpair: {e}")))?;
            let mut cmd = Command::new(&self.exe);
            cmd.arg("worker")
                .arg("--memory-bytes")
                .arg(c.memory_bytes.to_string())
                .arg("--cpu-seconds")
                .arg(c.cpu_seconds.to_string())
                .arg("--max-file-bytes")
                .arg(c.max_file_bytes.to_string())
                .stdin(Stdio::from(OwnedFd::from(theirs)))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            let uid = as_worker_uid.then_some(self.cfg.worker_uid);
            let switched = super::cage::worker_command(&mut cmd, uid);
            Ok((cmd, ours, switched))
        };
        let use_uid = !self.same_uid.load(Ordering::Relaxed);
        let (mut cmd, mut ours, switched) = command(use_uid)?;
        let mut spawned = cmd.spawn();
        if switched
            && let Err(e) = &spawned
            && e.kind() == std::io::ErrorKind::PermissionDenied
        {
            // The binary lies where the worker uid cannot reach (a 0700 home or build dir):
            // run workers as our own uid, still inside seccomp and Landlock, and say so once.
            tracing::warn!(
                exe = %self.exe.display(),
                worker_uid = self.cfg.worker_uid,
                "the worker uid cannot execute the binary; workers run as the service's uid \
                 (move the binary somewhere world-executable to separate them)"
            );
            self.same_uid.store(true, Ordering::Relaxed);
            (cmd, ours, _) = command(false)?;
            spawned = cmd.spawn();
        }
        let mut child =
            spawned.map_err(|e| PoolError::Spawn(format!("{}: {e}", self.exe.display())))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(PoolError::Spawn("worker pipe missing".into()));
        };
        Ok(Worker {
            child: Arc::new(Mutex::new(child)),
            requests: ours,
            stdout: BufReader::new(stdout),
            served: 0,
        })
    }

    /// Analyze `input` (declared `kind`) in a worker; a cleaned copy may be written to
    /// `output` (from its start; the caller rewinds before reading it). The worker gets
    /// duplicates of both descriptors and nothing else.
    ///
    /// A video whose worker died (the thumbnail's C++ decoder crashed, ran out of memory or past
    /// its frame deadline) is analysed once more without a thumbnail: the thumbnail is optional,
    /// the upload is not. That answer says `thumbnail_skipped: decoder-failed`.
    pub async fn analyze(
        self: &Arc<Self>,
        kind: MediaKind,
        input: &File,
        output: &File,
    ) -> Result<Analysis, PoolError> {
        let limits = self.cfg.limits.clone();
        match self.analyze_once(kind, input, output, limits.clone()).await {
            Err(PoolError::WorkerFailed(why))
                if kind == MediaKind::Video && limits.video_thumbnail =>
            {
                tracing::info!(why, "video thumbnail decoder failed; analysing without it");
                let without = Limits {
                    video_thumbnail: false,
                    ..limits
                };
                self.analyze_once(kind, input, output, without).await
            }
            other => other,
        }
    }

    /// One analysis in one worker, counted in the pipeline metrics.
    async fn analyze_once(
        self: &Arc<Self>,
        kind: MediaKind,
        input: &File,
        output: &File,
        limits: Limits,
    ) -> Result<Analysis, PoolError> {
        let dup = |f: &File| {
            f.try_clone()
                .map_err(|e| PoolError::Spawn(format!("dup: {e}")))
        };
        let (input, output) = (dup(input)?, dup(output)?);
        let len = input
            .metadata()
            .map_err(|e| PoolError::Spawn(format!("stat: {e}")))?
            .len();
        let metrics = self.metrics.get();
        let waited = std::time::Instant::now();
        let acquired = tokio::time::timeout(self.cfg.queue_wait, self.slots.acquire()).await;
        if let Some(m) = metrics {
            let outcome = if acquired.is_ok() {
                "acquired"
            } else {
                "timeout"
            };
            m.media_queue_wait
                .with_label_values(&[outcome])
                .observe(waited.elapsed().as_secs_f64());
        }
        let permit = acquired
            .map_err(|_| PoolError::Busy)?
            .map_err(|_| PoolError::Busy)?;
        let _busy = metrics.map(|m| crate::metrics::GaugeGuard::new(&m.media_workers_busy));
        let result = self
            .analyze_with(permit, kind, len, input, output, limits)
            .await;
        if let (Some(m), Err(PoolError::WorkerFailed(why))) = (metrics, &result) {
            m.media_worker_failures
                .with_label_values(&[failure_reason(why)])
                .inc();
        }
        result
    }

    async fn analyze_with(
        self: &Arc<Self>,
        permit: tokio::sync::SemaphorePermit<'_>,
        kind: MediaKind,
        len: u64,
        input: File,
        output: File,
        limits: Limits,
    ) -> Result<Analysis, PoolError> {
        let req = Request { kind, len, limits };
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
            let answer = exchange(&mut worker, &req, &input, &output);
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

/// The metric label of a worker failure, from a fixed set.
fn failure_reason(why: &str) -> &'static str {
    match why {
        "deadline exceeded" => "deadline",
        "CPU or time limit" => "cpu_limit",
        "aborted (out of memory or a decoder abort)" => "memory_or_abort",
        "crashed" | "killed by a signal" => "crash",
        "decoder panicked" => "panic",
        _ => "other",
    }
}

/// One request/response over the worker's socket and pipe. `Err` means the worker is gone
/// (crashed, killed by a limit or by the deadline).
fn exchange(
    worker: &mut Worker,
    req: &Request,
    input: &File,
    output: &File,
) -> Result<Response, &'static str> {
    let mut line = serde_json::to_vec(req).map_err(|_| "request encoding")?;
    line.push(b'\n');
    send_with_fds(&worker.requests, &line, &[input, output]).map_err(|_| "worker exited")?;
    let mut answer = String::new();
    match worker.stdout.read_line(&mut answer) {
        Ok(0) | Err(_) => Err(worker_death(worker)),
        Ok(_) => serde_json::from_str(&answer).map_err(|_| "malformed worker answer"),
    }
}

/// Send `bytes` on `socket` with `files` attached to the first byte.
fn send_with_fds(socket: &UnixStream, bytes: &[u8], files: &[&File]) -> std::io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let fds: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("too many descriptors"));
    }
    let sent = loop {
        match rustix::net::sendmsg(
            socket,
            &[IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => break n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    // The rest, if the socket took only part of it (the descriptors went with the first).
    let mut rest = socket;
    rest.write_all(&bytes[sent..])?;
    rest.flush()
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
