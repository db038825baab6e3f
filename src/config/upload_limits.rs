//! `[limits.uploads]`: the memory uploads may hold, how long a request waits for room, and
//! the slowest pace a body may keep, checked and resolved for `admission` and `body_pace`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, StorageConfig};
use crate::admission::AdmissionLimits;
use crate::body_pace::PacePolicy;

const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UploadLimitsConfig {
    pub memory_mib: u64,
    pub partner_memory_mib: u64,
    pub max_concurrent: usize,
    pub wait_ms: u64,
    pub min_rate_kib_s: u64,
    pub rate_window_s: u64,
}

/// Check `[limits.uploads]` against the part sizing of `[storage]` and resolve it, with the
/// body idle timeout, into what admission and body pacing run on.
pub(super) fn resolve(
    c: &UploadLimitsConfig,
    storage: &StorageConfig,
    body_idle: Duration,
) -> Result<(AdmissionLimits, PacePolicy), ConfigError> {
    let limits = AdmissionLimits {
        memory: c.memory_mib.saturating_mul(MIB),
        partner_memory: c.partner_memory_mib.saturating_mul(MIB),
        max_uploads: c.max_concurrent,
        wait: Duration::from_millis(c.wait_ms),
        part_size: storage.part_size_mib.saturating_mul(MIB),
        upload_concurrency: storage.upload_concurrency as u64,
    };
    // Every budget must hold the largest upload, or such uploads could never start.
    let largest = limits.largest_footprint().div_ceil(MIB);
    let at_least = |key: &str, mib: u64| {
        if mib < largest {
            Err(ConfigError::new(
                format!("limits.uploads.{key}"),
                format!(
                    "must be at least {largest} MiB: one large upload holds up to \
                     (storage.upload_concurrency + 1) x storage.part_size_mib plus a little"
                ),
            ))
        } else {
            Ok(())
        }
    };
    at_least("memory_mib", c.memory_mib)?;
    at_least("partner_memory_mib", c.partner_memory_mib)?;
    // Permits are counted in KiB in a u32.
    if c.memory_mib > 4 << 20 {
        return Err(ConfigError::new(
            "limits.uploads.memory_mib",
            "must be at most 4194304 (4 TiB)",
        ));
    }
    if c.partner_memory_mib > c.memory_mib {
        return Err(ConfigError::new(
            "limits.uploads.partner_memory_mib",
            "must not exceed limits.uploads.memory_mib",
        ));
    }
    if !(1..=100_000).contains(&c.max_concurrent) {
        return Err(ConfigError::new(
            "limits.uploads.max_concurrent",
            "must be between 1 and 100000",
        ));
    }
    if c.wait_ms > 600_000 {
        return Err(ConfigError::new(
            "limits.uploads.wait_ms",
            "must be at most 600000 (10 minutes)",
        ));
    }
    if !(1..=3600).contains(&c.rate_window_s) {
        return Err(ConfigError::new(
            "limits.uploads.rate_window_s",
            "must be between 1 and 3600",
        ));
    }
    let pace = PacePolicy {
        idle: body_idle,
        min_rate: c.min_rate_kib_s.saturating_mul(1024),
        window: Duration::from_secs(c.rate_window_s),
    };
    Ok((limits, pace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Sources};

    /// `[limits.uploads]` and `[storage]` from the defaults with `extra` TOML on top.
    fn resolved(extra: &str) -> Result<(AdmissionLimits, PacePolicy), ConfigError> {
        let c = Config::load(&Sources {
            dev_layer: Some(extra.to_owned()),
            ..Default::default()
        })?;
        resolve(&c.limits.uploads, &c.storage, Duration::from_secs(30))
    }

    #[test]
    fn defaults_resolve() {
        let (a, p) = resolved("").unwrap();
        assert_eq!(a.memory, 80 * MIB);
        assert_eq!(a.partner_memory, 80 * MIB);
        assert_eq!(a.max_uploads, 256);
        assert_eq!(a.wait, Duration::from_secs(10));
        assert_eq!(
            a.largest_footprint(),
            24 * MIB + crate::admission::UPLOAD_OVERHEAD
        );
        assert_eq!((p.min_rate, p.window), (8 * 1024, Duration::from_secs(30)));
    }

    #[test]
    fn a_budget_that_cannot_hold_one_large_upload_is_refused_by_name() {
        let e = resolved("[limits.uploads]\nmemory_mib = 24\n").unwrap_err();
        assert_eq!(e.key, "limits.uploads.memory_mib");
        assert!(e.message.contains("25 MiB"), "{}", e.message);
        // Larger parts need a larger budget.
        let e = resolved("[storage]\npart_size_mib = 64\n").unwrap_err();
        assert_eq!(e.key, "limits.uploads.memory_mib");
        let e = resolved("[limits.uploads]\npartner_memory_mib = 10\n").unwrap_err();
        assert_eq!(e.key, "limits.uploads.partner_memory_mib");
        let e = resolved("[limits.uploads]\npartner_memory_mib = 200\n").unwrap_err();
        assert_eq!(e.key, "limits.uploads.partner_memory_mib");
    }

    #[test]
    fn out_of_range_values_are_refused_by_name() {
        for (toml, key) in [
            ("max_concurrent = 0", "limits.uploads.max_concurrent"),
            ("wait_ms = 600001", "limits.uploads.wait_ms"),
            ("rate_window_s = 0", "limits.uploads.rate_window_s"),
            ("memory_mib = 5000000", "limits.uploads.memory_mib"),
        ] {
            let e = resolved(&format!("[limits.uploads]\n{toml}\n")).unwrap_err();
            assert_eq!(e.key, key, "{toml}");
        }
        let (_, p) = resolved("[limits.uploads]\nmin_rate_kib_s = 0\n").unwrap();
        assert_eq!(p.min_rate, 0);
    }
}
