//! The decoder cage: a confined worker has no network, cannot exec and cannot allocate past
//! its memory limit; the pool turns a hung, crashing or babbling worker into an error for
//! that one request and keeps serving with fresh workers.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interop_media::media::MediaKind;
use interop_media::pipeline::pool::{Pool, PoolConfig, PoolError};
use interop_media::pipeline::worker::{Cage, confine};
use interop_media::pipeline::{Limits, MediaError};

const CHILD_ENV: &str = "INTEROP_CAGE_CHILD";

/// Run the named test of this binary in a child process with `CHILD_ENV` set; true if it
/// passed there.
fn in_child(test: &str) -> bool {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "child {test}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

#[test]
fn confined_process_has_no_network_no_exec_and_bounded_memory() {
    if std::env::var_os(CHILD_ENV).is_none() {
        assert!(in_child(
            "confined_process_has_no_network_no_exec_and_bounded_memory"
        ));
        return;
    }
    // In the child: confine, then try what a hostile decoder would.
    confine(&Cage {
        memory_bytes: 512 << 20,
        cpu_seconds: 10,
        max_file_bytes: 1 << 20,
    })
    .unwrap();
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

/// A stand-in worker (a shell script) whose behaviour depends on the input file's name.
fn fake_worker(dir: &Path) -> PathBuf {
    let path = dir.join("fake-worker.sh");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        r#"#!/bin/sh
while read -r line; do
  case "$line" in
    *hang*) exec sleep 60 ;;
    *crash*) kill -SEGV $$ ;;
    *babble*) echo 'not json' ;;
    *refuse*) echo '{{"refused":{{"Undecodable":"bad"}}}}' ;;
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
        cage: Cage {
            memory_bytes: 512 << 20,
            cpu_seconds: 10,
            max_file_bytes: 1 << 20,
        },
        deadline: Duration::from_millis(800),
        queue_wait: Duration::from_millis(300),
        max_requests: 3,
        limits: Limits::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_survives_hung_crashing_and_babbling_workers() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Arc::new(Pool::start(fake_worker(dir.path()), config(2)).unwrap());
    let run = |name: &str| {
        let pool = pool.clone();
        let input = dir.path().join(name);
        async move {
            pool.analyze(MediaKind::Document, &input, &input.with_extension("out"))
                .await
        }
    };
    assert_eq!(run("fine").await.unwrap().sniffed, "pdf");

    let start = Instant::now();
    let hung = run("hang").await;
    assert!(
        matches!(hung, Err(PoolError::WorkerFailed("deadline exceeded"))),
        "{hung:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "deadline not enforced"
    );

    let crashed = run("crash").await;
    assert!(
        matches!(crashed, Err(PoolError::WorkerFailed("crashed"))),
        "{crashed:?}"
    );
    let babbled = run("babble").await;
    assert!(
        matches!(babbled, Err(PoolError::WorkerFailed(_))),
        "{babbled:?}"
    );
    let refused = run("refuse").await;
    assert!(
        matches!(refused, Err(PoolError::Media(MediaError::Undecodable(_)))),
        "{refused:?}"
    );
    // Still serving, more times than a worker's quota (3): replaced workers take over.
    for _ in 0..8 {
        assert_eq!(run("fine").await.unwrap().sniffed, "pdf");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_answers_busy_instead_of_queueing_forever() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Arc::new(Pool::start(fake_worker(dir.path()), config(1)).unwrap());
    let p = pool.clone();
    let hang = dir.path().join("hang");
    let blocker = tokio::spawn(async move {
        p.analyze(MediaKind::Document, &hang, &hang.with_extension("out"))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fine = dir.path().join("fine");
    let busy = pool
        .analyze(MediaKind::Document, &fine, &fine.with_extension("out"))
        .await;
    assert!(matches!(busy, Err(PoolError::Busy)), "{busy:?}");
    assert!(blocker.await.unwrap().is_err());
    assert!(
        pool.analyze(MediaKind::Document, &fine, &fine.with_extension("out"))
            .await
            .is_ok()
    );
}

/// A stand-in worker that dies whenever it is asked for a video thumbnail, and counts the
/// requests it saw with and without one.
fn thumbnail_crashing_worker(dir: &Path) -> PathBuf {
    let path = dir.join("thumb-worker.sh");
    let log = dir.join("requests.log");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        r#"#!/bin/sh
while read -r line; do
  case "$line" in
    *'"video_thumbnail":true'*) echo with >> '{log}'; kill -SEGV $$ ;;
    *always-crash*) echo without >> '{log}'; kill -SEGV $$ ;;
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
    let input = dir.path().join("clip.mp4");
    let out = input.with_extension("out");
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
    let input = dir.path().join("always-crash.mp4");
    let again = pool.analyze(MediaKind::Video, &input, &out).await;
    assert!(
        matches!(again, Err(PoolError::WorkerFailed("crashed"))),
        "{again:?}"
    );
    assert_eq!(log(), "with\nwithout\nwith\nwith\nwithout\n");
}
