//! Token policy: which audiences may be asked for, how long a token lives, and what it binds.
//! The route only parses and formats; everything decided about a mint is decided here.
//!
//! Fan-out policy (one request, many audiences — a group conversation's members' providers):
//! - at most `tokens.max_audiences` per request (default 256): `too-many-audiences` (400);
//! - an empty list: `invalid-field` (`audiences`);
//! - the same audience twice: `duplicate-audience` (400). A duplicate is a gateway bug (two
//!   members' providers collapsed into one name, or a retry loop); silently merging it would
//!   break the one-token-per-requested-audience, in-request-order contract;
//! - any audience outside `[A-Za-z0-9._:-]{1,32}`: `invalid-field` (`audiences`).
//!
//! A request is all or nothing: every audience is checked before the first token is minted.

use crate::auth::Partner;
use crate::config::Settings;
use crate::crypto::keys::KeyRing;
use crate::error::{ApiError, BadRequest};
use crate::metrics::Metrics;
use crate::storage::Head;
use crate::tokens::{self, Claims, MAX_AUDIENCE_LEN};

/// Default for `tokens.max_audiences`.
pub const DEFAULT_MAX_AUDIENCES: usize = 256;
/// Hard ceiling for `tokens.max_audiences`: keeps the request body under the tokens route's
/// JSON limit ([`JSON_LIMIT`]) and one request's work (HMACs, audit lines) small.
pub const MAX_AUDIENCES_CEILING: usize = 1024;
/// JSON body limit of the tokens route: 1024 audiences of 32 characters, quoted and
/// comma-separated, plus the rest of the object.
pub const JSON_LIMIT: usize = 64 * 1024;

/// Whether a request named one audience or many: the only audience dimension in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Single,
    Fanout,
}

impl Class {
    pub const fn as_str(self) -> &'static str {
        match self {
            Class::Single => "single",
            Class::Fanout => "fanout",
        }
    }
}

/// Audience counts of a fan-out request, bucketed so the label set stays fixed.
pub fn size_bucket(n: usize) -> &'static str {
    match n {
        0..=1 => "1",
        2..=8 => "2-8",
        9..=32 => "9-32",
        33..=128 => "33-128",
        _ => "129+",
    }
}

/// What the caller asked for, already parsed.
pub struct MintRequest<'a> {
    pub class: Class,
    pub audiences: &'a [String],
    pub ttl_s: Option<u64>,
}

/// One minted token.
pub struct Minted {
    pub audience: String,
    pub token: String,
    pub expires: u64,
}

/// The limits a mint is held to (from `Settings`).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub default_ttl: u64,
    pub max_audiences: usize,
}

pub fn audience_is_valid(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= MAX_AUDIENCE_LEN
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// Check the audience list against the fan-out policy (module docs).
pub fn check_audiences(audiences: &[String], max: usize) -> Result<(), ApiError> {
    if audiences.is_empty() {
        return Err(BadRequest::InvalidField("audiences").into());
    }
    if audiences.len() > max {
        return Err(ApiError::TooManyAudiences { max });
    }
    if !audiences.iter().all(|a| audience_is_valid(a)) {
        return Err(BadRequest::InvalidField("audiences").into());
    }
    // Bounded by `max` (≤ 1024): a sorted copy of references costs nothing worth a set.
    let mut sorted: Vec<&str> = audiences.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(ApiError::DuplicateAudience);
    }
    Ok(())
}

/// The TTL a partner gets: capped, not refused — a gateway asking for more simply gets the
/// most it may have; zero is a mistake.
pub fn ttl(policy: &Policy, partner: &Partner, asked: Option<u64>) -> Result<u64, ApiError> {
    match asked {
        Some(0) => Err(BadRequest::InvalidField("ttl_s").into()),
        Some(t) => Ok(t.min(partner.max_token_ttl)),
        None => Ok(policy.default_ttl.min(partner.max_token_ttl)),
    }
}

/// The token service of one app: its key ring, metrics and policy. Built once in `app.rs`.
#[derive(Clone)]
pub struct TokenService {
    ring: KeyRing,
    metrics: Metrics,
    policy: Policy,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    pub fn new(settings: &Settings, metrics: Metrics) -> Self {
        TokenService {
            ring: settings.token_keys.clone(),
            metrics,
            policy: Policy {
                default_ttl: settings.token_default_ttl,
                max_audiences: settings.token_max_audiences,
            },
        }
    }

    /// Check the request before any store read, so a malformed request costs nothing.
    /// Returns the TTL to mint with.
    pub fn precheck(&self, partner: &Partner, req: &MintRequest<'_>) -> Result<u64, ApiError> {
        let checked = match req.class {
            Class::Single => match req.audiences {
                [one] if audience_is_valid(one) => Ok(()),
                _ => Err(BadRequest::InvalidField("audience").into()),
            },
            Class::Fanout => check_audiences(req.audiences, self.policy.max_audiences),
        };
        let r = checked.and_then(|()| ttl(&self.policy, partner, req.ttl_s));
        if let Err(e) = &r {
            audit_refused(partner, None, req.class, e);
        }
        r
    }

    /// Mint one token per audience, in request order, for media the partner owns (`head`).
    /// `ttl` comes from [`TokenService::precheck`]. Each mint is an audit event (never the
    /// token itself).
    pub fn mint_all(
        &self,
        partner: &Partner,
        media_id_hex: &str,
        head: &Head,
        req: &MintRequest<'_>,
        ttl: u64,
        now: u64,
    ) -> Result<Vec<Minted>, ApiError> {
        let meta = &head.header.meta;
        let mut media_id = [0u8; 16];
        let mut generation = [0u8; 8];
        hex::decode_to_slice(media_id_hex, &mut media_id).map_err(|_| ApiError::MediaNotFound)?;
        hex::decode_to_slice(&meta.generation, &mut generation).map_err(|_| ApiError::Internal)?;
        // Never outlive the media itself.
        let expires = (now + ttl).min(meta.expires);
        let mut out = Vec::with_capacity(req.audiences.len());
        for audience in req.audiences {
            let claims = Claims {
                media_id,
                generation,
                partner: partner.id.clone(),
                audience: audience.clone(),
                issued: now,
                expires,
            };
            let token = match tokens::mint(&self.ring, &claims) {
                Ok(t) => t,
                Err(e) => {
                    audit_refused(partner, Some(media_id_hex), req.class, &e);
                    return Err(e);
                }
            };
            tracing::info!(
                target: "audit",
                event = "token.mint",
                partner = %partner.id,
                media_id = %media_id_hex,
                audience = %audience,
                class = req.class.as_str(),
                expires,
                outcome = "minted",
            );
            out.push(Minted {
                audience: audience.clone(),
                token,
                expires,
            });
        }
        self.metrics.tokens_minted.inc_by(out.len() as u64);
        self.metrics
            .token_mint_requests
            .with_label_values(&[req.class.as_str(), size_bucket(out.len())])
            .inc();
        Ok(out)
    }
}

/// A refused mint request: one audit event naming the stable code (not each audience, which a
/// refused request may hold by the thousand).
pub fn audit_refused(partner: &Partner, media_id: Option<&str>, class: Class, e: &ApiError) {
    tracing::info!(
        target: "audit",
        event = "token.mint",
        partner = %partner.id,
        media_id = media_id.unwrap_or("-"),
        class = class.as_str(),
        outcome = "refused",
        code = e.code(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn audience_policy() {
        assert!(check_audiences(&v(&["a", "b:c", "x.y_z-1"]), 3).is_ok());
        let code = |a: &[&str], max| check_audiences(&v(a), max).unwrap_err().code();
        assert_eq!(code(&[], 4), "invalid-field");
        assert_eq!(code(&["a", "b", "c"], 2), "too-many-audiences");
        assert_eq!(code(&["a", "b", "a"], 4), "duplicate-audience");
        assert_eq!(code(&["a", "b c"], 4), "invalid-field");
        assert_eq!(code(&["a", &"x".repeat(33)], 4), "invalid-field");
        assert_eq!(code(&["a", ""], 4), "invalid-field");
    }

    #[test]
    fn buckets_are_fixed() {
        let all: std::collections::BTreeSet<_> = (0..5000).map(size_bucket).collect();
        assert_eq!(all.len(), 5);
    }
}
