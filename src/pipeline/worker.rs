//! The worker role of the binary (`interop-media worker`): the cage media decoders run in.
//!
//! At start-up, before it reads any media, the worker limits itself: address space
//! (`RLIMIT_AS`, so a decompression bomb ends in an allocation failure, i.e. an abort of
//! this process only), CPU seconds (`RLIMIT_CPU`, SIGXCPU), file size it may write, no core
//! dumps (plaintext must not land on disk), no new processes; then a seccomp filter makes
//! every network and exec system call fail. It then answers one JSON request per line on
//! stdin with one JSON response per line on stdout, a decoder panic becoming an answer
//! rather than an exit. Anything worse (abort, OOM, a signal) ends the process; the
//! supervising `pool` sees the pipe close and fails only that request.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Analysis, Limits, MediaError, analyze};
use crate::media::MediaKind;

/// One analysis job, as sent by the pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub kind: MediaKind,
    pub input: PathBuf,
    pub output: PathBuf,
    pub limits: Limits,
}

/// The worker's answer to one [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Done(Box<Analysis>),
    Refused(MediaError),
    /// A decoder panicked; the message is not forwarded (it may quote input).
    Panicked,
}

/// The cage's bounds, passed on the worker's command line by the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cage {
    pub memory_bytes: u64,
    pub cpu_seconds: u64,
    pub max_file_bytes: u64,
}

/// Lower this process's limits and install the seccomp filter. Failing to confine is fatal:
/// a worker never decodes unconfined.
pub fn confine(cage: &Cage) -> Result<(), String> {
    use rlimit::Resource;
    let set = |r: Resource, name: &str, soft: u64, hard: u64| {
        rlimit::setrlimit(r, soft, hard).map_err(|e| format!("setrlimit {name}: {e}"))
    };
    set(Resource::AS, "AS", cage.memory_bytes, cage.memory_bytes)?;
    // The soft limit sends SIGXCPU (fatal by default); the hard one a second later, SIGKILL.
    set(Resource::CPU, "CPU", cage.cpu_seconds, cage.cpu_seconds + 1)?;
    set(
        Resource::FSIZE,
        "FSIZE",
        cage.max_file_bytes,
        cage.max_file_bytes,
    )?;
    set(Resource::CORE, "CORE", 0, 0)?;
    set(Resource::NOFILE, "NOFILE", 64, 64)?;
    deny_network_and_exec()
}

/// System calls a media decoder has no business making. They fail with EPERM.
const DENIED: &[i64] = &[
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_connect,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
];

fn deny_network_and_exec() -> Result<(), String> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("seccomp: unsupported architecture: {e}"))?;
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| format!("seccomp filter: {e}"))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e| format!("seccomp compile: {e:?}"))?;
    // Also sets no_new_privs.
    seccompiler::apply_filter(&program).map_err(|e| format!("seccomp apply: {e}"))
}

/// Answer one request.
pub fn handle(req: &Request) -> Response {
    let run = || analyze(req.kind, &req.input, &req.output, &req.limits);
    match std::panic::catch_unwind(run) {
        Ok(Ok(a)) => Response::Done(Box::new(a)),
        Ok(Err(e)) => Response::Refused(e),
        Err(_) => Response::Panicked,
    }
}

/// The worker's main loop: confine, then serve requests until stdin closes.
pub fn run(cage: Cage) -> Result<(), String> {
    confine(&cage)?;
    // Panics are answered, not printed: their messages may quote media bytes.
    std::panic::set_hook(Box::new(|_| {}));
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading a request: {e}")),
        }
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(req) => handle(&req),
            Err(_) => Response::Refused(MediaError::Undecodable("malformed request".into())),
        };
        let mut out =
            serde_json::to_vec(&response).map_err(|e| format!("encoding a response: {e}"))?;
        out.push(b'\n');
        stdout
            .write_all(&out)
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("writing a response: {e}"))?;
    }
}
