//! The worker role of the binary (`interop-media worker`): the cage media decoders run in.
//!
//! At start-up, before it reads any media, the worker confines itself ([`super::cage`]):
//! rlimits, Landlock with no filesystem access, and a seccomp allowlist. From then on it can
//! read what it is handed and write its answer, and nothing else: it cannot open a path, so
//! the input and output files arrive as open descriptors (`SCM_RIGHTS`) with each request on
//! its stdin, a Unix socket. It answers one JSON request per line with one JSON response per
//! line on stdout, a decoder panic becoming an answer rather than an exit. Anything worse
//! (abort, OOM, a signal) ends the process; the supervising `pool` sees the pipe close and
//! fails only that request.

use std::fs::File;
use std::io::{IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use serde::{Deserialize, Serialize};

pub use super::cage::{Cage, CageStatus, confine};
use super::{Analysis, Limits, MediaError, analyze};
use crate::media::MediaKind;

/// One analysis job, as sent by the pool. The input (read-only) and the output (write-only)
/// travel with it as two descriptors, in that order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub kind: MediaKind,
    /// Length of the input in bytes (the worker may not `stat`).
    pub len: u64,
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

/// Longest request line accepted (requests are a few hundred bytes).
const MAX_REQUEST: usize = 64 << 10;

/// Answer one request on the given input and output.
pub fn handle(req: &Request, input: File, output: File) -> Response {
    let run = move || analyze(req.kind, input, req.len, output, &req.limits);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(a)) => Response::Done(Box::new(a)),
        Ok(Err(e)) => Response::Refused(e),
        Err(_) => Response::Panicked,
    }
}

/// One request line and the descriptors that came with it.
type Received = (Vec<u8>, Vec<OwnedFd>);

/// Reads request lines and the descriptors sent with them from the pool's socket.
struct Requests {
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Requests {
    /// The next line and every descriptor received up to its end; `None` at end of input.
    fn next(&mut self) -> Result<Option<Received>, String> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Ok(Some((line, std::mem::take(&mut self.fds))));
            }
            if self.buf.len() > MAX_REQUEST {
                return Err("request line too long".into());
            }
            let mut chunk = [0u8; 4096];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let stdin = std::io::stdin();
            let msg = rustix::net::recvmsg(
                stdin.as_fd(),
                &mut [IoSliceMut::new(&mut chunk)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            );
            let msg = match msg {
                Ok(m) => m,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(format!("reading a request: {e}")),
            };
            for m in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = m {
                    self.fds.extend(fds);
                }
            }
            if msg.bytes == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..msg.bytes]);
        }
    }
}

/// The worker's main loop: confine, then serve requests until stdin closes.
pub fn run(cage: Cage) -> Result<(), String> {
    confine(&cage)?;
    // Panics are answered, not printed: their messages may quote media bytes.
    std::panic::set_hook(Box::new(|_| {}));
    let mut stdout = std::io::stdout().lock();
    let mut requests = Requests {
        buf: Vec::new(),
        fds: Vec::new(),
    };
    while let Some((line, fds)) = requests.next()? {
        let mut fds = fds.into_iter();
        let response = match (
            serde_json::from_slice::<Request>(&line),
            fds.next(),
            fds.next(),
        ) {
            (Ok(req), Some(input), Some(output)) => {
                handle(&req, File::from(input), File::from(output))
            }
            _ => Response::Refused(MediaError::Undecodable("malformed request".into())),
        };
        // Any extra descriptor is closed here, before the next request.
        drop(fds);
        let mut out =
            serde_json::to_vec(&response).map_err(|e| format!("encoding a response: {e}"))?;
        out.push(b'\n');
        stdout
            .write_all(&out)
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("writing a response: {e}"))?;
    }
    Ok(())
}
