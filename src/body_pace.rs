//! How slowly an upload body may arrive. A gap longer than the idle timeout cuts it (408
//! `body-timeout`), and so does an average below the minimum rate (408 `body-too-slow`):
//! without the second, a client that sends a byte just inside every idle timeout would hold
//! its upload's memory reservation for as long as it likes.
//!
//! It is also where a fast upload gives way: an actix worker thread runs many requests, and a
//! body whose pieces are always ready (loopback, a fast gateway) would otherwise be hashed and
//! sealed without pause while downloads on the same thread wait. Every [`YIELD_EVERY`] bytes
//! the upload yields to the worker's other tasks.
//!
//! The rate counts only the time spent waiting for the client, not the time the service
//! itself spends (a slow store pushing back), and is judged over windows of `window`, so a
//! short pause in a fast upload is not punished.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use crate::error::ApiError;

/// An upload yields to the other tasks of its worker after this many body bytes.
pub const YIELD_EVERY: u64 = 256 * 1024;

/// Why reading a request body failed.
#[derive(Debug)]
pub enum BodyError {
    /// The client closed the connection or sent a malformed body.
    Aborted,
}

/// The pace a body must keep (from `server.body_idle_timeout_s` and `[limits.uploads]`).
#[derive(Debug, Clone, Copy)]
pub struct PacePolicy {
    /// Longest gap between two pieces.
    pub idle: Duration,
    /// Slowest average, in bytes per second, over each window; 0 turns the check off.
    pub min_rate: u64,
    /// How much waiting for the client the average is taken over.
    pub window: Duration,
}

impl PacePolicy {
    /// Only the idle timeout, no rate floor.
    pub fn idle_only(idle: Duration) -> PacePolicy {
        PacePolicy {
            idle,
            min_rate: 0,
            window: Duration::from_secs(1),
        }
    }
}

/// One body's pace so far.
#[derive(Debug)]
pub struct Pace {
    policy: PacePolicy,
    /// Time spent waiting for the client in this window, and the bytes it sent in it.
    waited: Duration,
    bytes: u64,
    /// Body bytes handed out since the last yield.
    since_yield: u64,
}

impl Pace {
    pub fn new(policy: PacePolicy) -> Pace {
        Pace {
            policy,
            waited: Duration::ZERO,
            bytes: 0,
            since_yield: 0,
        }
    }

    /// The next piece of `body`, `Ok(None)` at its end.
    ///
    /// Cancel-safe in the sense that matters here: dropped while waiting, the wait is not
    /// counted (which can only make the judgement more lenient).
    pub async fn next<S>(&mut self, body: &mut S) -> Result<Option<Bytes>, ApiError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        if self.since_yield >= YIELD_EVERY {
            self.since_yield = 0;
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        let piece = match tokio::time::timeout(self.policy.idle, body.next()).await {
            Err(_) => return Err(ApiError::BodyTimeout),
            Ok(None) => return Ok(None),
            Ok(Some(Err(BodyError::Aborted))) => return Err(ApiError::BodyAborted),
            Ok(Some(Ok(b))) => b,
        };
        self.count(piece.len(), started.elapsed())?;
        self.since_yield += piece.len() as u64;
        Ok(Some(piece))
    }

    /// Account `len` bytes that took `waited` to arrive.
    fn count(&mut self, len: usize, waited: Duration) -> Result<(), ApiError> {
        if self.policy.min_rate == 0 {
            return Ok(());
        }
        self.waited += waited;
        self.bytes += len as u64;
        if self.waited >= self.policy.window {
            let floor = self.policy.min_rate as f64 * self.waited.as_secs_f64();
            if (self.bytes as f64) < floor {
                return Err(ApiError::BodyTooSlow);
            }
            self.waited = Duration::ZERO;
            self.bytes = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min_rate: u64, window_s: u64) -> PacePolicy {
        PacePolicy {
            idle: Duration::from_secs(30),
            min_rate,
            window: Duration::from_secs(window_s),
        }
    }

    #[test]
    fn a_trickle_below_the_rate_is_cut_once_a_window_has_passed() {
        let mut p = Pace::new(policy(1000, 10));
        // 1 byte every 9 s: under the idle timeout every time.
        assert!(p.count(1, Duration::from_secs(9)).is_ok());
        let err = p.count(1, Duration::from_secs(9)).unwrap_err();
        assert!(matches!(err, ApiError::BodyTooSlow), "{err:?}");
    }

    #[test]
    fn a_fast_body_with_a_pause_passes() {
        let mut p = Pace::new(policy(1000, 10));
        for _ in 0..100 {
            assert!(p.count(64 * 1024, Duration::from_millis(1)).is_ok());
        }
        // A 9 s pause after plenty of bytes: the window's average is still far above 1000 B/s.
        assert!(p.count(1, Duration::from_secs(9)).is_ok());
        // Each window is judged on its own: the next one starts from nothing.
        assert!(p.count(20_000, Duration::from_secs(10)).is_ok());
        assert!(matches!(
            p.count(5_000, Duration::from_secs(10)),
            Err(ApiError::BodyTooSlow)
        ));
    }

    #[test]
    fn rate_zero_is_off() {
        let mut p = Pace::new(policy(0, 1));
        assert!(p.count(1, Duration::from_secs(29)).is_ok());
        assert!(p.count(1, Duration::from_secs(29)).is_ok());
    }

    #[tokio::test]
    async fn idle_gap_and_abort_map_to_their_errors() {
        let mut p = Pace::new(PacePolicy::idle_only(Duration::from_millis(20)));
        let mut stalled = futures::stream::pending::<Result<Bytes, BodyError>>();
        assert!(matches!(
            p.next(&mut stalled).await,
            Err(ApiError::BodyTimeout)
        ));
        let mut aborted =
            futures::stream::iter([Ok(Bytes::from_static(b"ab")), Err(BodyError::Aborted)]);
        assert_eq!(p.next(&mut aborted).await.unwrap().unwrap(), "ab");
        assert!(matches!(
            p.next(&mut aborted).await,
            Err(ApiError::BodyAborted)
        ));
    }
}
