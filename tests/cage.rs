//! The decoder cage: a confined worker can read its input and write its answer and nothing
//! else (each escape a hostile decoder would try fails); the pool turns a hung, crashing or
//! babbling worker into an error for that one request and keeps serving with fresh workers;
//! and seal-for-me plaintext does not outlive its request, not even a SIGKILL of the service.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]
// The escape probes make the raw system calls an exploited decoder would.
#![allow(unsafe_code)]

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interop_media::media::MediaKind;
use interop_media::pipeline::cage;
use interop_media::pipeline::pool::{NOBODY, Pool, PoolConfig, PoolError};
use interop_media::pipeline::worker::{Cage, confine};
use interop_media::pipeline::{Limits, MediaError};

const CHILD_ENV: &str = "INTEROP_CAGE_CHILD";
const KEY_ENV: &str = "INTEROP_CAGE_KEY";
const PARENT_ENV: &str = "INTEROP_CAGE_PARENT";
const SECRET: &[u8] = b"master-key-0123456789abcdef-do-not-leak";
const INPUT: &[u8] = b"the worker's input, readable through the descriptor it was given";

fn test_cage() -> Cage {
    Cage {
        memory_bytes: 512 << 20,
        cpu_seconds: 10,
        max_file_bytes: 1 << 20,
    }
}

/// Run the named test of this binary in a child process started like a worker (empty
/// environment, `/` as working directory, nobody's uid when we are root) with `CHILD_ENV`
/// set, its stdin an open input file; true if it passed there.
fn in_child(test: &str, env: &[(&str, String)]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::write(&input, INPUT).unwrap();
    let command = |uid: Option<u32>| {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cage::worker_command(&mut cmd, uid);
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env("RUST_BACKTRACE", "0")
            .stdin(std::fs::File::open(&input).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    };
    // As the pool does: nobody's uid when root, unless nobody cannot reach this binary.
    let out = match command(Some(NOBODY)).output() {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("nobody cannot execute the test binary here: child runs as our uid");
            command(None).output().unwrap()
        }
        other => other.unwrap(),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "child {test}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A raw system call's return value as an escape: `Ok` when the kernel let it through.
fn allowed(ret: i64) -> Result<(), i32> {
    if ret >= 0 { Ok(()) } else { Err(errno()) }
}

/// Every escape a hostile decoder would try, each `Ok` when it worked. Fork-like calls that
/// succeed end the new process at once.
fn escapes(key: &Path, parent: u32, try_exec: bool) -> Vec<(&'static str, Result<(), i32>)> {
    let io = |r: std::io::Result<()>| r.map_err(|e| e.raw_os_error().unwrap_or(0));
    let mut out = Vec::new();
    out.push((
        "read the key file",
        io(std::fs::read(key).map(|k| assert_eq!(k, SECRET))),
    ));
    out.push((
        "open /etc/passwd",
        io(std::fs::File::open("/etc/passwd").map(drop)),
    ));
    out.push((
        "open /proc/<parent>/mem",
        io(std::fs::File::open(format!("/proc/{parent}/mem")).map(drop)),
    ));
    out.push((
        "create a file in /tmp",
        io(std::fs::File::create(format!("/tmp/cage-escape-{}", std::process::id())).map(drop)),
    ));
    // SAFETY (this block and the ones below): raw system calls with valid buffers; a fork
    // that succeeds exits in the child at once without touching Rust state.
    let mut local = [0u8; 16];
    let local_iov = libc::iovec {
        iov_base: local.as_mut_ptr().cast(),
        iov_len: local.len(),
    };
    let remote_iov = libc::iovec {
        iov_base: 0x1000 as *mut libc::c_void,
        iov_len: 16,
    };
    let r = unsafe { libc::process_vm_readv(parent as i32, &local_iov, 1, &remote_iov, 1, 0) };
    // EFAULT means the call was permitted (and only the test address was bad).
    let vm = if r >= 0 || errno() == libc::EFAULT {
        Ok(())
    } else {
        Err(errno())
    };
    out.push(("process_vm_readv(parent)", vm));
    let forked = |pid: i64| {
        if pid == 0 {
            unsafe { libc::_exit(0) };
        }
        if pid > 0 {
            unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
        }
        allowed(pid)
    };
    out.push(("fork", forked(unsafe { libc::fork() } as i64)));
    out.push((
        "clone(SIGCHLD)",
        forked(unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as i64, 0, 0, 0, 0) }),
    ));
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
    // tls, set_tid, set_tid_size, cgroup.
    let mut args = [0u64; 11];
    args[4] = libc::SIGCHLD as u64;
    out.push((
        "clone3",
        forked(unsafe { libc::syscall(libc::SYS_clone3, args.as_mut_ptr(), 88usize) }),
    ));
    out.push((
        "spawn a thread",
        io(std::thread::Builder::new()
            .spawn(|| ())
            .map(|h| drop(h.join()))),
    ));
    let mut params = [0u8; 120];
    out.push((
        "io_uring_setup",
        allowed(unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()) }),
    ));
    out.push((
        "socket(AF_INET)",
        allowed(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) } as i64),
    ));
    out.push((
        "socket(AF_UNIX)",
        allowed(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) } as i64),
    ));
    let mut pair = [0i32; 2];
    out.push((
        "socketpair",
        allowed(
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) }
                as i64,
        ),
    ));
    // /bin/false: if exec worked, this process would exit 1 and the test fail.
    let path = c"/bin/false";
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    if try_exec {
        out.push((
            "execve /bin/false",
            allowed(unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) } as i64),
        ));
    }
    out.push((
        "ptrace(ATTACH, parent)",
        allowed(unsafe {
            libc::ptrace(
                libc::PTRACE_ATTACH,
                parent as libc::pid_t,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )
        }),
    ));
    out.push((
        "kill(parent, 0)",
        allowed(unsafe { libc::kill(parent as libc::pid_t, 0) } as i64),
    ));
    out.push((
        "unshare(CLONE_NEWUSER)",
        allowed(unsafe { libc::unshare(libc::CLONE_NEWUSER) } as i64),
    ));
    out.push((
        "memfd_create",
        allowed(unsafe { libc::memfd_create(c"x".as_ptr(), 0) } as i64),
    ));
    let exec_map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    out.push((
        "mmap(PROT_EXEC)",
        if exec_map == libc::MAP_FAILED {
            Err(errno())
        } else {
            Ok(())
        },
    ));
    out.push((
        "raise RLIMIT_NPROC",
        io(rlimit::setrlimit(rlimit::Resource::NPROC, 1, 1)),
    ));
    out
}

/// A key file anyone may read, in a directory anyone may enter: only the cage stands between
/// the worker and it (as the worker runs as nobody when we are root).
fn world_readable_key(dir: &Path) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = dir.join("master.key");
    std::fs::write(&key, SECRET).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    key
}

#[test]
fn caged_worker_fails_every_escape() {
    if std::env::var_os(CHILD_ENV).is_none() {
        // The parent does what the service does before it starts workers.
        cage::harden_service().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = world_readable_key(dir.path());
        assert!(in_child(
            "caged_worker_fails_every_escape",
            &[
                (KEY_ENV, key.display().to_string()),
                (PARENT_ENV, std::process::id().to_string()),
            ],
        ));
        return;
    }
    // In the child: the worker's own confinement, then every escape.
    let status = confine(&test_cage()).unwrap();
    println!(
        "landlock ABI {}, fully enforced: {}",
        status.landlock_abi, status.landlock_full
    );
    let key = PathBuf::from(std::env::var_os(KEY_ENV).unwrap());
    let parent: u32 = std::env::var(PARENT_ENV).unwrap().parse().unwrap();
    let mut escaped = Vec::new();
    for (what, outcome) in escapes(&key, parent, true) {
        match outcome {
            Ok(()) => {
                println!("ESCAPED: {what}");
                escaped.push(what);
            }
            Err(errno) => println!("refused: {what} (errno {errno})"),
        }
    }
    // What a worker must still do: read its input, write its answer.
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).unwrap();
    assert_eq!(input, INPUT, "the input descriptor is readable");
    std::io::stdout().write_all(b"answer written\n").unwrap();
    assert!(escaped.is_empty(), "escaped the cage: {escaped:?}");
}

/// The same probe without the cage: the escapes work, so the test above can fail.
#[test]
fn the_escape_probe_sees_an_open_door() {
    if std::env::var_os(CHILD_ENV).is_none() {
        let dir = tempfile::tempdir().unwrap();
        let key = world_readable_key(dir.path());
        assert!(in_child(
            "the_escape_probe_sees_an_open_door",
            &[
                (KEY_ENV, key.display().to_string()),
                (PARENT_ENV, std::process::id().to_string()),
            ],
        ));
        return;
    }
    let key = PathBuf::from(std::env::var_os(KEY_ENV).unwrap());
    let parent: u32 = std::env::var(PARENT_ENV).unwrap().parse().unwrap();
    // (Without exec: it would work, and replace this process.)
    let worked: Vec<&str> = escapes(&key, parent, false)
        .into_iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(w, _)| w)
        .collect();
    println!("worked without the cage: {worked:?}");
    for what in [
        "read the key file",
        "open /etc/passwd",
        "fork",
        "clone3",
        "io_uring_setup",
        "socket(AF_INET)",
        "memfd_create",
    ] {
        assert!(worked.contains(&what), "{what} failed even without a cage");
    }
}

#[test]
fn confined_process_has_no_network_no_exec_and_bounded_memory() {
    if std::env::var_os(CHILD_ENV).is_none() {
        assert!(in_child(
            "confined_process_has_no_network_no_exec_and_bounded_memory",
            &[]
        ));
        return;
    }
    // In the child: confine, then try what a hostile decoder would.
    confine(&test_cage()).unwrap();
    let err = std::net::TcpStream::connect("127.0.0.1:9").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    let err = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    assert!(std::process::Command::new("/bin/true").status().is_err());
    let mut big: Vec<u8> = Vec::new();
    assert!(
        big.try_reserve_exact(1 << 30).is_err(),
        "1 GiB under a 512 MiB cage"
    );
    let mut ok: Vec<u8> = Vec::new();
    assert!(ok.try_reserve_exact(64 << 20).is_ok());
}

/// A stand-in worker (a shell script reading requests from its socket) whose behaviour
/// depends on the request's kind.
fn fake_worker(dir: &Path) -> PathBuf {
    // Workers run as nobody when the tests run as root: the script must be reachable.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("fake-worker.sh");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        r#"#!/bin/sh
while read -r line; do
  case "$line" in
    *'"image"'*) exec sleep 60 ;;
    *'"audio"'*) kill -SEGV $$ ;;
    *'"voice"'*) echo 'not json' ;;
    *'"video"'*) echo '{{"refused":{{"Undecodable":"bad"}}}}' ;;
    *) echo '{{"done":{{"sniffed":"pdf","mime":"application/pdf","removed":[]}}}}' ;;
  esac
done"#
    )
    .unwrap();
    drop(f);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn config(workers: usize) -> PoolConfig {
    PoolConfig {
        workers,
        cage: test_cage(),
        deadline: Duration::from_millis(800),
        queue_wait: Duration::from_millis(300),
        max_requests: 3,
        limits: Limits::default(),
        worker_uid: NOBODY,
    }
}

/// Kinds the fake worker maps to behaviours.
const FINE: MediaKind = MediaKind::Document;
const HANG: MediaKind = MediaKind::Image;
const CRASH: MediaKind = MediaKind::Audio;
const BABBLE: MediaKind = MediaKind::Voice;
const REFUSE: MediaKind = MediaKind::Video;

fn files(dir: &Path) -> (std::fs::File, std::fs::File) {
    let input = tempfile::tempfile_in(dir).unwrap();
    let output = tempfile::tempfile_in(dir).unwrap();
    (input, output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_survives_hung_crashing_and_babbling_workers() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Arc::new(Pool::start(fake_worker(dir.path()), config(2)).unwrap());
    let (input, output) = files(dir.path());
    let run = |kind: MediaKind| {
        let pool = pool.clone();
        let (input, output) = (&input, &output);
        async move { pool.analyze(kind, input, output).await }
    };
    assert_eq!(run(FINE).await.unwrap().sniffed, "pdf");

    let start = Instant::now();
    let hung = run(HANG).await;
    assert!(
        matches!(hung, Err(PoolError::WorkerFailed("deadline exceeded"))),
        "{hung:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "deadline not enforced"
    );

    let crashed = run(CRASH).await;
    assert!(
        matches!(crashed, Err(PoolError::WorkerFailed("crashed"))),
        "{crashed:?}"
    );
    let babbled = run(BABBLE).await;
    assert!(
        matches!(babbled, Err(PoolError::WorkerFailed(_))),
        "{babbled:?}"
    );
    let refused = run(REFUSE).await;
    assert!(
        matches!(refused, Err(PoolError::Media(MediaError::Undecodable(_)))),
        "{refused:?}"
    );
    // Still serving, more times than a worker's quota (3): replaced workers take over.
    for _ in 0..8 {
        assert_eq!(run(FINE).await.unwrap().sniffed, "pdf");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_answers_busy_instead_of_queueing_forever() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Arc::new(Pool::start(fake_worker(dir.path()), config(1)).unwrap());
    let p = pool.clone();
    let (input, output) = files(dir.path());
    let (i2, o2) = (input.try_clone().unwrap(), output.try_clone().unwrap());
    let blocker = tokio::spawn(async move { p.analyze(HANG, &i2, &o2).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = pool.analyze(FINE, &input, &output).await;
    assert!(matches!(busy, Err(PoolError::Busy)), "{busy:?}");
    assert!(blocker.await.unwrap().is_err());
    assert!(pool.analyze(FINE, &input, &output).await.is_ok());
}

/// Regular files under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}

/// Whether `needle` occurs in any regular file under `dir`.
fn found_in(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        .collect()
}

/// Links in /proc/<pid>/fd that point into `dir`.
fn open_files_in(pid: u32, dir: &Path) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.display().to_string())
        .filter(|t| t.starts_with(&dir.display().to_string()))
        .collect()
}

/// A large seal-for-me upload in flight when the service is SIGKILLed: no plaintext file is
/// left on disk, before or after the restart; while it runs, the plaintext has no name.
#[test]
fn plaintext_does_not_survive_a_sigkill() {
    let data = tempfile::Builder::new()
        .prefix("interop-media-cage-kill-")
        .tempdir()
        .unwrap();
    let tmp = data.path().join("seal-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut svc = common::ServiceBuilder::new()
        .data_dir(data.path())
        .env("INTEROP_MEDIA_MEDIA__TMP_DIR", tmp.to_str().unwrap())
        .spawn();
    // 16 MiB of a declared 64 MiB document, every 64 KiB marked so any copy is found.
    let marker = b"PLAINTEXT-MARKER-a1b2c3d4e5f6-that-must-not-outlive-its-request";
    let mut piece = vec![0x5au8; 64 << 10];
    piece[..marker.len()].copy_from_slice(marker);
    let mut conn = std::net::TcpStream::connect(svc.addr).unwrap();
    let head = format!(
        "POST /v1/media?seal=whatsapp HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         X-Media-Kind: document\r\nContent-Length: {}\r\n\r\n",
        svc.partner_key,
        64u64 << 20
    );
    conn.write_all(head.as_bytes()).unwrap();
    for _ in 0..256 {
        conn.write_all(&piece).unwrap();
    }
    // Wait until the service holds the received bytes in a file under the temp dir.
    let deadline = Instant::now() + Duration::from_secs(10);
    let open = loop {
        let open = open_files_in(svc.pid(), &tmp);
        if !open.is_empty() || Instant::now() > deadline {
            break open;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    let named_while_running = files_under(&tmp);
    svc.kill();
    drop(conn);
    let after_kill = found_in(data.path(), marker);
    let files_after_kill = files_under(&tmp);
    svc.restart();
    let after_restart = found_in(data.path(), marker);
    let files_after_restart = files_under(&tmp);
    drop(svc);
    assert!(
        !open.is_empty(),
        "the upload never reached a temp file (the test saw nothing)"
    );
    let mut wrong = Vec::new();
    if !open.iter().all(|t| t.ends_with("(deleted)")) {
        wrong.push(format!(
            "plaintext under a name while the request ran: {open:?}"
        ));
    }
    if !named_while_running.is_empty() {
        wrong.push(format!(
            "named files while the request ran: {named_while_running:?}"
        ));
    }
    if !(after_kill.is_empty() && files_after_kill.is_empty()) {
        wrong.push(format!(
            "plaintext left after SIGKILL: {after_kill:?} {files_after_kill:?}"
        ));
    }
    if !(after_restart.is_empty() && files_after_restart.is_empty()) {
        wrong.push(format!(
            "plaintext kept by the restart: {after_restart:?} {files_after_restart:?}"
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A stand-in worker that dies whenever it is asked for a video thumbnail (and, for a 7-byte
/// input, always), and counts the requests it saw with and without one.
fn thumbnail_crashing_worker(dir: &Path) -> PathBuf {
    // Workers run as nobody when the tests run as root: the script must be reachable and the
    // log writable.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("thumb-worker.sh");
    let log = dir.join("requests.log");
    std::fs::File::create(&log).unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        r#"#!/bin/sh
while read -r line; do
  case "$line" in
    *'"video_thumbnail":true'*) echo with >> '{log}'; kill -SEGV $$ ;;
    *'"len":7,'*) echo without >> '{log}'; kill -SEGV $$ ;;
    *) echo without >> '{log}'; echo '{{"done":{{"sniffed":"mp4","mime":"video/mp4","thumbnail_skipped":"decoder-failed","removed":[]}}}}' ;;
  esac
done"#,
        log = log.display()
    )
    .unwrap();
    drop(f);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_whose_thumbnail_kills_the_worker_is_analysed_again_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Arc::new(Pool::start(thumbnail_crashing_worker(dir.path()), config(1)).unwrap());
    let log = || std::fs::read_to_string(dir.path().join("requests.log")).unwrap_or_default();
    let input = tempfile::tempfile().unwrap();
    let out = tempfile::tempfile().unwrap();
    let a = pool.analyze(MediaKind::Video, &input, &out).await.unwrap();
    assert_eq!(a.thumbnail_skipped.as_deref(), Some("decoder-failed"));
    assert_eq!(log(), "with\nwithout\n");
    // Other kinds are not retried: a crash is the request's failure (422).
    let doc = pool.analyze(MediaKind::Document, &input, &out).await;
    assert!(
        matches!(doc, Err(PoolError::WorkerFailed("crashed"))),
        "{doc:?}"
    );
    // A video whose second analysis dies too fails like any crash, after one retry only.
    let mut input = tempfile::tempfile().unwrap();
    input.write_all(b"crash!!").unwrap();
    let again = pool.analyze(MediaKind::Video, &input, &out).await;
    assert!(
        matches!(again, Err(PoolError::WorkerFailed("crashed"))),
        "{again:?}"
    );
    assert_eq!(log(), "with\nwithout\nwith\nwith\nwithout\n");
}
