//! Upload admission: the memory uploads may hold is a budget from configuration, shared by
//! all uploads and capped per partner, so it does not grow with the number of clients.
//!
//! Before it reads a byte of its body, an upload reserves what it can hold at worst: its
//! sealed object when that fits one part, else the part being filled plus
//! `upload_concurrency` parts in flight. A request that finds no room waits up to `wait`
//! (its body stays unread, in the kernel's socket buffers, which is what pushes back on the
//! client), then is refused: `429` when its partner's share is full, `503` when the
//! service's budget or its count of concurrent uploads is. The waits are first come, first
//! served, so a large upload is not starved by a stream of small ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::ApiError;

const KIB: u64 = 1024;
/// Memory of one upload beside its part buffers: sealer, hasher, pieces of the body on their
/// way through.
pub const UPLOAD_OVERHEAD: u64 = 256 * KIB;

/// The limits, resolved from `[limits.uploads]` and `[storage]`.
#[derive(Debug, Clone)]
pub struct AdmissionLimits {
    /// Bytes all uploads together may hold.
    pub memory: u64,
    /// Bytes the uploads of one partner may hold.
    pub partner_memory: u64,
    /// Uploads receiving their body at once.
    pub max_uploads: usize,
    /// How long a request may wait for room before it is refused.
    pub wait: Duration,
    /// Multipart part size and parts in flight per upload (from `[storage]`).
    pub part_size: u64,
    pub upload_concurrency: u64,
}

impl AdmissionLimits {
    /// What one upload may hold at worst, given the size of the object it stores
    /// (`None`: unknown, as for a chunked body).
    pub fn footprint(&self, object_len: Option<u64>) -> u64 {
        match object_len {
            // One part or less: the whole object is assembled in memory for one put.
            Some(n) if n <= self.part_size => n + UPLOAD_OVERHEAD,
            // The part being filled, and the ones in flight.
            _ => (self.upload_concurrency + 1) * self.part_size + UPLOAD_OVERHEAD,
        }
    }

    /// The largest footprint any upload can have: every budget must hold at least one.
    pub fn largest_footprint(&self) -> u64 {
        self.footprint(None)
    }
}

/// The counters admission feeds.
#[derive(Clone)]
pub struct AdmissionMetrics {
    /// Bytes reserved by uploads now.
    pub reserved: IntGauge,
    /// Requests refused, by reason (`service_memory`, `service_uploads`, `partner_memory`).
    pub refused: IntCounterVec,
}

/// The shared budget (one per process; clones share it).
#[derive(Clone)]
pub struct Admission(Arc<Inner>);

struct Inner {
    limits: AdmissionLimits,
    uploads: Arc<Semaphore>,
    /// Permits are KiB.
    memory: Arc<Semaphore>,
    /// One share per partner that uploaded, made on first use: partners are the configured
    /// ones, so the map is as bounded as the configuration.
    partners: Mutex<HashMap<String, Arc<Semaphore>>>,
    metrics: AdmissionMetrics,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("limits", &self.0.limits)
            .field("uploads_free", &self.0.uploads.available_permits())
            .field("memory_free_kib", &self.0.memory.available_permits())
            .finish()
    }
}

/// An upload's reservation; dropping it gives the room back.
#[must_use = "the reservation is given back when this is dropped"]
pub struct Ticket {
    _upload: OwnedSemaphorePermit,
    _memory: OwnedSemaphorePermit,
    _partner: OwnedSemaphorePermit,
    bytes: i64,
    reserved: IntGauge,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.reserved.sub(self.bytes);
    }
}

/// Semaphores count in `u32` permits; budgets are validated far below this.
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(KIB)).unwrap_or(u32::MAX)
}

impl Admission {
    pub fn new(limits: AdmissionLimits, metrics: AdmissionMetrics) -> Admission {
        Admission(Arc::new(Inner {
            uploads: Arc::new(Semaphore::new(limits.max_uploads)),
            memory: Arc::new(Semaphore::new(kib(limits.memory) as usize)),
            partners: Mutex::new(HashMap::new()),
            limits,
            metrics,
        }))
    }

    /// Reserve room for one upload of `partner` that stores an object of `object_len` bytes
    /// (`None`: unknown), waiting up to the configured time.
    pub async fn admit(&self, partner: &str, object_len: Option<u64>) -> Result<Ticket, ApiError> {
        let inner = &self.0;
        let bytes = inner.limits.footprint(object_len);
        let need = kib(bytes);
        let deadline = Instant::now() + inner.limits.wait;
        let refused = |reason: &str| inner.metrics.refused.with_label_values(&[reason]).inc();
        // The partner's share first: a partner over it is told so (429) without taking a
        // place in the service-wide queue that other partners wait in.
        let share = self.share(partner);
        let partner_permit = acquire(share, need, deadline).await.ok_or_else(|| {
            refused("partner_memory");
            ApiError::PartnerUploadLimit
        })?;
        let upload = acquire(inner.uploads.clone(), 1, deadline)
            .await
            .ok_or_else(|| {
                refused("service_uploads");
                ApiError::UploadsBusy
            })?;
        let memory = acquire(inner.memory.clone(), need, deadline)
            .await
            .ok_or_else(|| {
                refused("service_memory");
                ApiError::UploadsBusy
            })?;
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        inner.metrics.reserved.add(bytes);
        Ok(Ticket {
            _upload: upload,
            _memory: memory,
            _partner: partner_permit,
            bytes,
            reserved: inner.metrics.reserved.clone(),
        })
    }

    fn share(&self, partner: &str) -> Arc<Semaphore> {
        let mut map = self
            .0
            .partners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(partner.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(kib(self.0.limits.partner_memory) as usize)))
            .clone()
    }
}

/// `n` permits of `sem` by `deadline`, or `None`.
async fn acquire(sem: Arc<Semaphore>, n: u32, deadline: Instant) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = sem.clone().try_acquire_many_owned(n) {
        return Some(p);
    }
    match tokio::time::timeout_at(deadline, sem.acquire_many_owned(n)).await {
        Ok(Ok(p)) => Some(p),
        // Timed out, or closed (never: the semaphores are not closed).
        _ => None,
    }
}

#[cfg(test)]
mod tests;
