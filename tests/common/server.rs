//! Run the real `interop-media` binary for integration tests.
//!
//! ```ignore
//! let svc = ServiceBuilder::new().spawn();                  // local files in a temp data dir
//! let s3 = S3Server::start_blocking();
//! let svc = ServiceBuilder::new().envs(s3.env()).spawn();   // same, on the embedded S3 server
//! for backend in backends() {                               // API suites: Local and S3
//!     let svc = ServiceBuilder::new().backend(&backend).spawn();
//!     ...
//! }
//! ```
//!
//! `spawn` starts `interop-media serve --dev --listen 127.0.0.1:0 --data-dir DIR [--config F]`,
//! waits for the `listening on ADDR` line on stdout (30 s by default), and reads the dev
//! partner key from `DIR/dev-partner-key`. The child's stderr goes to a log file in the data
//! dir; it is printed when startup fails and when a test panics while the `Service` is alive.
//! Dropping the `Service` kills the child (SIGKILL) unless it already exited.
//!
//! Everything here is synchronous (threads, `std::process`) so it works from plain `#[test]`s
//! and from `#[tokio::test]`s alike; in async tests prefer [`Service::wait_exit_async`] over
//! the blocking [`Service::wait_exit`] when something on the same runtime must keep running
//! (e.g. an `S3Server::start()` server).

use std::ffi::OsString;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::s3::S3Server;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_interop-media");

/// Prefix of the service's environment overrides; inherited variables with this prefix (and
/// `AWS_*`) are removed from the child's environment so a developer's shell cannot leak into
/// tests.
pub const ENV_PREFIX: &str = "INTEROP_MEDIA_";

const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TAIL_BYTES: usize = 64 * 1024;

static SPAWN_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// How to start the binary. Cheap to clone; [`Service::restart`] reuses it.
#[derive(Debug, Clone)]
pub struct ServiceBuilder {
    envs: Vec<(String, String)>,
    config_toml: Option<String>,
    data_dir: Option<PathBuf>,
    args: Vec<OsString>,
    dev: bool,
    listen: String,
    startup_timeout: Duration,
}

impl Default for ServiceBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceBuilder {
    /// `serve --dev --listen 127.0.0.1:0`, fresh temp data dir, local-file storage.
    pub fn new() -> Self {
        Self {
            envs: Vec::new(),
            config_toml: None,
            data_dir: None,
            args: Vec::new(),
            dev: true,
            listen: "127.0.0.1:0".to_owned(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }

    /// Set an environment variable for the child (later calls win).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Set several environment variables (e.g. `S3Server::env()`).
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.envs
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Point the service at a storage backend (see [`backends`]).
    pub fn backend(self, backend: &Backend) -> Self {
        self.envs(backend.env())
    }

    /// Write this TOML to `DATA_DIR/harness-config.toml` and pass `--config` with it.
    pub fn config_toml(mut self, toml: impl Into<String>) -> Self {
        self.config_toml = Some(toml.into());
        self
    }

    /// Use this data dir (created if missing, never removed by the harness). Default: a fresh
    /// temp dir owned by the `Service` and removed on drop.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Append an extra argument after the standard ones.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Pass `--dev` (default `true`). Without it no dev partner key is written, and
    /// `Service::partner_key` is empty unless the data dir already holds one.
    pub fn dev(mut self, on: bool) -> Self {
        self.dev = on;
        self
    }

    /// `--listen` address (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// How long to wait for `listening on` (default 30 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Start and wait until it listens. Panics (printing the child's log) on failure.
    pub fn spawn(self) -> Service {
        match self.try_spawn() {
            Ok(svc) => svc,
            Err(e) => panic!("{e}"),
        }
    }

    /// Start and wait until it listens; on failure return what happened, with the log
    /// (for tests that expect startup to fail, e.g. on a bad config).
    pub fn try_spawn(self) -> Result<Service, StartError> {
        let (data_dir, tmp) = match &self.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StartError::setup("create data dir", e))?;
                (dir.clone(), None)
            }
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("interop-media-test-")
                    .tempdir()
                    .map_err(|e| StartError::setup("create temp data dir", e))?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        let (child, started) = self.launch(&data_dir)?;
        Ok(Service {
            addr: started.addr,
            base: format!("http://{}", started.addr),
            data_dir,
            partner_key: started.partner_key,
            log_path: started.log_path,
            child,
            stdout: started.stdout,
            exit: None,
            builder: self,
            tmp,
        })
    }

    fn launch(&self, data_dir: &Path) -> Result<(Child, Started), StartError> {
        let n = SPAWN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let log_path = data_dir.join(format!("harness-stderr-{n}.log"));
        let log_file = std::fs::File::create(&log_path)
            .map_err(|e| StartError::setup("create stderr log file", e))?;

        let mut cmd = Command::new(BIN);
        cmd.arg("serve");
        if self.dev {
            cmd.arg("--dev");
        }
        cmd.arg("--listen").arg(&self.listen);
        cmd.arg("--data-dir").arg(data_dir);
        if let Some(toml) = &self.config_toml {
            let path = data_dir.join("harness-config.toml");
            std::fs::write(&path, toml).map_err(|e| StartError::setup("write config", e))?;
            cmd.arg("--config").arg(path);
        }
        cmd.args(&self.args);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            // The developer's shell must not leak into tests: service overrides, and AWS_*
            // (the S3 client also reads the AWS environment, e.g. a session token).
            if k.starts_with(ENV_PREFIX) || k.starts_with("AWS_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("RUST_BACKTRACE", "1");
        cmd.envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));

        let mut child = cmd
            .spawn()
            .map_err(|e| StartError::setup(&format!("spawn {BIN}"), e))?;

        let stdout_lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let (tx, rx) = mpsc::channel::<Result<SocketAddr, String>>();
        let Some(pipe) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartError::setup(
                "take child stdout",
                std::io::Error::other("no stdout pipe"),
            ));
        };
        {
            let lines = Arc::clone(&stdout_lines);
            // Not joined: a grandchild holding the pipe open must not hang the test.
            std::thread::Builder::new()
                .name("interop-media-stdout".into())
                .spawn(move || read_stdout(pipe, &lines, &tx))
                .map_err(|e| StartError::setup("spawn stdout reader thread", e))?;
        }

        let fail = |child: &mut Child, reason: String| {
            let status = match child.try_wait() {
                Ok(Some(s)) => Some(s),
                _ => {
                    let _ = child.kill();
                    child.wait().ok()
                }
            };
            StartError {
                reason,
                status,
                stdout: lock(&stdout_lines).join("\n"),
                log: read_tail(&log_path, LOG_TAIL_BYTES),
                log_path: log_path.clone(),
            }
        };

        let deadline = Instant::now() + self.startup_timeout;
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(addr)) => break addr,
                Ok(Err(msg)) => return Err(fail(&mut child, msg)),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(fail(&mut child, "stdout reader stopped".into()));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Give the reader a moment to deliver a line printed just before exit.
                if let Ok(Ok(addr)) = rx.recv_timeout(Duration::from_millis(200)) {
                    break addr;
                }
                return Err(fail(
                    &mut child,
                    format!("exited with {status} before printing `listening on`"),
                ));
            }
            if Instant::now() > deadline {
                return Err(fail(
                    &mut child,
                    format!("no `listening on` line within {:?}", self.startup_timeout),
                ));
            }
        };

        let partner_key = if self.dev {
            match wait_for_file(&data_dir.join("dev-partner-key"), Duration::from_secs(5)) {
                Some(key) => key,
                None => {
                    return Err(fail(
                        &mut child,
                        format!(
                            "listening on {addr}, but {}/dev-partner-key was not written",
                            data_dir.display()
                        ),
                    ));
                }
            }
        } else {
            std::fs::read_to_string(data_dir.join("dev-partner-key"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };

        Ok((
            child,
            Started {
                addr,
                partner_key,
                log_path,
                stdout: stdout_lines,
            },
        ))
    }
}

struct Started {
    addr: SocketAddr,
    partner_key: String,
    log_path: PathBuf,
    stdout: Arc<Mutex<Vec<String>>>,
}

/// Why [`ServiceBuilder::try_spawn`] failed.
#[derive(Debug)]
pub struct StartError {
    pub reason: String,
    /// Exit status if the child exited (or was killed by the harness).
    pub status: Option<ExitStatus>,
    /// Everything the child printed to stdout.
    pub stdout: String,
    /// The tail of the child's stderr.
    pub log: String,
    pub log_path: PathBuf,
}

impl StartError {
    fn setup(what: &str, e: std::io::Error) -> Self {
        Self {
            reason: format!("{what}: {e}"),
            status: None,
            stdout: String::new(),
            log: String::new(),
            log_path: PathBuf::new(),
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "interop-media did not start: {}", self.reason)?;
        if let Some(status) = self.status {
            writeln!(f, "{status}")?;
        }
        writeln!(f, "---- stdout ----\n{}", self.stdout)?;
        write!(
            f,
            "---- stderr ({}) ----\n{}",
            self.log_path.display(),
            self.log
        )
    }
}

impl std::error::Error for StartError {}

/// A running `interop-media serve`.
pub struct Service {
    /// The address it listens on (the real port).
    pub addr: SocketAddr,
    /// `http://ADDR`
    pub base: String,
    pub data_dir: PathBuf,
    /// The dev partner's API key (partner id `dev`, all scopes) from `DATA_DIR/dev-partner-key`.
    pub partner_key: String,
    /// The child's stderr.
    pub log_path: PathBuf,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    exit: Option<ExitStatus>,
    builder: ServiceBuilder,
    tmp: Option<TempDir>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("addr", &self.addr)
            .field("data_dir", &self.data_dir)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// `base + path` (path starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `Bearer <dev partner key>`
    pub fn auth_header(&self) -> String {
        format!("Bearer {}", self.partner_key)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal (e.g. `libc::SIGTERM`) to the child.
    pub fn signal(&self, signal: libc::c_int) -> std::io::Result<()> {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| std::io::Error::other("pid out of range"))?;
        let signal = rustix::process::Signal::from_named_raw(signal)
            .ok_or_else(|| std::io::Error::other("unknown signal"))?;
        // The pid is our own child, which is not reaped before `exit` is set, so it cannot
        // have been reused.
        rustix::process::kill_process(pid, signal).map_err(std::io::Error::from)
    }

    /// Send SIGTERM (graceful shutdown). Panics if the child was already reaped.
    pub fn sigterm(&mut self) {
        assert!(
            self.exit.is_none(),
            "sigterm: the service already exited with {:?}",
            self.exit
        );
        if let Err(e) = self.signal(libc::SIGTERM) {
            panic!("kill(SIGTERM) failed: {e}");
        }
    }

    /// Exit status if it has exited (non-blocking).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit = Some(status);
        }
        self.exit
    }

    /// Wait up to `timeout` for the child to exit; `None` if it is still running.
    pub fn try_wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait up to `timeout` for the child to exit; panics (with the log) on timeout.
    /// Blocks the thread: in async tests see [`Service::wait_exit_async`].
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.try_wait_exit(timeout) {
            Some(status) => status,
            None => panic!(
                "interop-media (pid {}) still running after {timeout:?}\n---- stderr ----\n{}",
                self.pid(),
                self.log()
            ),
        }
    }

    /// Like [`Service::wait_exit`] but yields to the tokio runtime while waiting.
    pub async fn wait_exit_async(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "interop-media (pid {}) still running after {timeout:?}\n---- stderr ----\n{}",
                    self.pid(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL and reap (no-op if it already exited).
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_status() {
            return status;
        }
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => {
                self.exit = Some(status);
                status
            }
            Err(e) => panic!("wait for killed interop-media failed: {e}"),
        }
    }

    /// Stop (SIGTERM, then SIGKILL after 15 s) and start again with the same builder and
    /// data dir. Updates `addr`, `base`, `partner_key`, `log_path`. Panics if it doesn't start.
    pub fn restart(&mut self) {
        if self.try_status().is_none() {
            let _ = self.signal(libc::SIGTERM);
            if self.try_wait_exit(Duration::from_secs(15)).is_none() {
                self.kill();
            }
        }
        match self.builder.launch(&self.data_dir) {
            Ok((child, started)) => {
                self.child = child;
                self.exit = None;
                self.addr = started.addr;
                self.base = format!("http://{}", started.addr);
                self.partner_key = started.partner_key;
                self.log_path = started.log_path;
                self.stdout = started.stdout;
            }
            Err(e) => panic!("restart: {e}"),
        }
    }

    /// The child's stderr so far (last 64 KiB).
    pub fn log(&self) -> String {
        read_tail(&self.log_path, LOG_TAIL_BYTES)
    }

    /// Lines the child printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        lock(&self.stdout).clone()
    }

    /// Take ownership of the temp data dir so it outlives this `Service` (e.g. to start a
    /// second service on the same dir with `ServiceBuilder::data_dir`). `None` if the dir was
    /// supplied by the test.
    pub fn take_data_dir(&mut self) -> Option<TempDir> {
        self.tmp.take()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exit = Some(status);
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "==== interop-media (pid {}) stderr, {} ====\n{}\n==== end of stderr ====",
                self.child.id(),
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// A reqwest client for talking to the service (no proxy, plain HTTP, 10 s connect timeout).
///
/// No total or read timeout on purpose: reqwest creates those timers when `send()` is called,
/// which panics outside a runtime, and `block_on(http().get(url).send())` must work from plain
/// `#[test]`s. Bound a request with `tokio::time::timeout` where a test needs it.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("build reqwest client")
}

/// Run a future to completion from a plain `#[test]` (fresh current-thread runtime).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime")
        .block_on(fut)
}

/// A storage backend for the service.
#[derive(Debug)]
pub enum Backend {
    /// `file://DATA_DIR/objects` (the service's default; no env needed).
    Local,
    /// `memory://`
    Memory,
    /// The embedded s3s-fs server (on its own thread; boxed to keep the enum small).
    S3(Box<S3Server>),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Memory => "memory",
            Backend::S3(_) => "s3",
        }
    }

    /// Environment for the service binary.
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Backend::Local => Vec::new(),
            Backend::Memory => vec![(
                "INTEROP_MEDIA_STORAGE__URL".to_owned(),
                "memory://".to_owned(),
            )],
            Backend::S3(s3) => s3.env(),
        }
    }

    pub fn s3(&self) -> Option<&S3Server> {
        match self {
            Backend::S3(s3) => Some(s3),
            _ => None,
        }
    }

    /// Directory where this backend keeps the blobs of `svc` (`None` for memory).
    pub fn storage_dir(&self, svc: &Service) -> Option<PathBuf> {
        match self {
            Backend::Local => Some(svc.data_dir.join("objects")),
            Backend::Memory => None,
            Backend::S3(s3) => Some(s3.bucket_dir()),
        }
    }

    /// Every file the backend stores for `svc` (relative to [`Backend::storage_dir`]).
    pub fn stored_files(&self, svc: &Service) -> Vec<PathBuf> {
        self.storage_dir(svc)
            .map(|d| super::s3::files_under(&d))
            .unwrap_or_default()
    }
}

/// The backends API suites run against: `Local` and `S3` (a fresh embedded server).
/// `INTEROP_MEDIA_TEST_BACKENDS=local,s3,memory` (comma-separated) selects others.
pub fn backends() -> Vec<Backend> {
    let wanted =
        std::env::var("INTEROP_MEDIA_TEST_BACKENDS").unwrap_or_else(|_| "local,s3".to_owned());
    wanted
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| match name {
            "local" => Backend::Local,
            "memory" => Backend::Memory,
            "s3" => Backend::S3(Box::new(S3Server::start_blocking())),
            other => panic!("INTEROP_MEDIA_TEST_BACKENDS: unknown backend {other:?}"),
        })
        .collect()
}

fn read_stdout(
    pipe: std::process::ChildStdout,
    lines: &Mutex<Vec<String>>,
    tx: &mpsc::Sender<Result<SocketAddr, String>>,
) {
    let mut announced = false;
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                if !announced && let Some(addr) = parse_listening(&line) {
                    announced = true;
                    let _ = tx.send(Ok(addr));
                }
                lock(lines).push(line);
            }
            Err(e) => {
                if !announced {
                    let _ = tx.send(Err(format!("reading stdout: {e}")));
                }
                return;
            }
        }
    }
    if !announced {
        let _ = tx.send(Err("stdout closed before `listening on`".into()));
    }
}

/// `... listening on 127.0.0.1:PORT ...` (an `http://` prefix is tolerated).
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let idx = line.find("listening on ")?;
    let rest = line[idx + "listening on ".len()..].trim_start();
    let rest = rest.strip_prefix("http://").unwrap_or(rest);
    let token = rest
        .split(|c: char| c.is_whitespace() || c == ',' || c == '"' || c == '/')
        .next()?;
    token.parse().ok()
}

fn wait_for_file(path: &Path, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            let s = s.trim();
            if !s.is_empty() {
                return Some(s.to_owned());
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_tail(path: &Path, max: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let start = buf.len().saturating_sub(max);
    let prefix = if start > 0 {
        "[... truncated ...]\n"
    } else {
        ""
    };
    format!("{prefix}{}", String::from_utf8_lossy(&buf[start..]))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
