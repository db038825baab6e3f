//! The decoder cage: what a worker process may do once it has started, and what the service
//! does so that a compromised worker cannot reach into it.
//!
//! A worker can read the input and write the answer it was handed (open file descriptors,
//! received from the pool) and nothing else. Layers, each enough on its own for some escapes
//! and together for all the ones `tests/cage.rs` tries:
//!
//! - **rlimits**: address space, CPU seconds, file size, no core dumps, few fds, and
//!   `RLIMIT_NPROC` 0 (no new processes or threads; ignored for root, hence the next layer);
//! - **a separate uid** (`media.worker_uid`, nobody by default) when the service runs as root,
//!   so the worker cannot read root's key files even before the filters go on;
//! - **Landlock** with every filesystem right, TCP bind/connect and signal/abstract-socket
//!   scopes handled and no rule granted: no path can be opened (best effort: on kernels without
//!   Landlock this layer is absent and the status says so);
//! - **a seccomp allowlist** (no-new-privs is set with it): I/O on descriptors already open,
//!   memory management without `PROT_EXEC`, futex, signals to itself, clocks, exit. Everything
//!   else, including `open*`, `clone*`, `fork`, `execve`, `socket`, `io_uring_*`, `ptrace`,
//!   `process_vm_*`, `kill`, `prctl` and `prlimit64`, fails with `EPERM`. (`EPERM`, not a kill:
//!   std's own fallbacks probe `statx` and must keep working; nothing a decoder could gain
//!   from a refused call differs between the two, and the escape test can observe each one);
//! - the **service non-dumpable** (`PR_SET_DUMPABLE` 0), so a same-uid worker cannot open
//!   `/proc/<service>/mem` or attach to it.
//!
//! The worker confines itself right after `exec`, before it reads any media: the dynamic
//! loader and std's start-up need system calls the allowlist does not give.

use std::collections::BTreeMap;
use std::process::Command;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The cage's bounds, passed on the worker's command line by the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cage {
    pub memory_bytes: u64,
    pub cpu_seconds: u64,
    pub max_file_bytes: u64,
}

/// What the cage could enforce on this kernel (reported by the escape test and `worker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CageStatus {
    /// Landlock ABI version of the running kernel, 0 when it has none.
    pub landlock_abi: i32,
    /// Whether the Landlock ruleset is fully enforced (false: partly or not at all).
    pub landlock_full: bool,
}

/// The file descriptor requests arrive on (the pool's socket, also carrying the input and
/// output descriptors): the only one the worker may `recvmsg` from.
pub const REQUEST_FD: u64 = 0;

/// Lower this process's limits, restrict it with Landlock, then install the seccomp
/// allowlist. Failing to confine is fatal: a worker never decodes unconfined.
pub fn confine(cage: &Cage) -> Result<CageStatus, String> {
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
    // No new tasks for this uid from here: fork and threads fail with EAGAIN (except as root,
    // which the pool avoids by starting workers under `media.worker_uid`).
    set(Resource::NPROC, "NPROC", 0, 0)?;
    rustix::thread::set_no_new_privs(true).map_err(|e| format!("no_new_privs: {e}"))?;
    let status = landlock_nothing()?;
    allowlist()?;
    Ok(status)
}

/// Landlock: handle every filesystem and network right and grant none; scope signals and
/// abstract Unix sockets to the worker itself. Already-open descriptors keep working.
fn landlock_nothing() -> Result<CageStatus, String> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, LandlockStatus, Ruleset, RulesetAttr, RulesetStatus,
        Scope,
    };
    // The newest ABI this crate knows; BestEffort drops what the kernel lacks.
    let abi = ABI::V6;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("landlock: {e}"))?;
    let landlock_abi = match status.landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => kernel_abi.unwrap_or(effective_abi as i32),
        _ => 0,
    };
    Ok(CageStatus {
        landlock_abi,
        landlock_full: status.ruleset == RulesetStatus::FullyEnforced,
    })
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| format!("seccomp condition: {e}"))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<Vec<SeccompRule>, String> {
    Ok(vec![
        SeccompRule::new(conditions).map_err(|e| format!("seccomp rule: {e}"))?,
    ])
}

/// System calls allowed with any arguments. None of them takes a path or creates a task,
/// a descriptor of a new object, or a mapping.
const ALLOWED: &[i64] = &[
    // I/O on descriptors the worker already holds (its pipes, the input, the output).
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_pread64,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_pwrite64,
    libc::SYS_lseek,
    libc::SYS_fstat,
    libc::SYS_close,
    // Memory (mmap and mprotect are below, without PROT_EXEC).
    libc::SYS_brk,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    // Locks, signals to itself (panic, abort), time, exit.
    libc::SYS_futex,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_sched_yield,
    libc::SYS_getrandom,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The seccomp allowlist; whatever is not listed fails with EPERM.
fn allowlist() -> Result<(), String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("seccomp: unsupported architecture: {e}"))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    let no_exec = || cond(2, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0);
    // No executable memory: a decoder exploit cannot map new code.
    rules.insert(libc::SYS_mmap, rule(vec![no_exec()?])?);
    rules.insert(libc::SYS_mprotect, rule(vec![no_exec()?])?);
    // Requests (and their descriptors) come only from the pool's socket.
    rules.insert(
        libc::SYS_recvmsg,
        rule(vec![cond(0, SeccompCmpOp::Eq, REQUEST_FD)?])?,
    );
    // abort() signals its own thread group only.
    rules.insert(
        libc::SYS_tgkill,
        rule(vec![cond(
            0,
            SeccompCmpOp::Eq,
            u64::from(std::process::id()),
        )?])?,
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| format!("seccomp filter: {e}"))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e| format!("seccomp compile: {e:?}"))?;
    seccompiler::apply_filter(&program).map_err(|e| format!("seccomp apply: {e}"))
}

/// Make the service process non-dumpable: no core dumps of its memory (keys, plaintext), and
/// a same-uid process (a compromised worker) can neither open `/proc/<service>/mem` nor
/// `ptrace` it. Called by the pool before it starts workers.
pub fn harden_service() -> Result<(), String> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("PR_SET_DUMPABLE: {e}"))
}

/// Prepare a worker command: empty environment (keys given as values live in the service's),
/// `/` as working directory, and when the service runs as root and `uid` is given, that uid
/// (and the group of the same number) with no supplementary groups, so the worker owns
/// nothing the service owns. Returns whether the uid is switched.
pub fn worker_command(cmd: &mut Command, uid: Option<u32>) -> bool {
    use std::os::unix::process::CommandExt;
    cmd.env_clear().current_dir("/");
    match uid {
        Some(uid) if rustix::process::geteuid().is_root() && uid != 0 => {
            // std drops supplementary groups (setgroups(0)) when it changes uid as root.
            cmd.gid(uid).uid(uid);
            true
        }
        _ => false,
    }
}
