//! Download tokens: compact, stateless capabilities signed with HMAC-SHA256 under a key ring,
//! so any replica verifies what any other minted.
//!
//! ```text
//! version(1) op(1) kid_len(1) kid media_id(16) generation(8) issued(u64) ttl(u32)
//! partner_len(1) partner audience_len(1) audience | tag = HMAC-SHA256(key, all before)[..16]
//! ```
//! base64url without padding: at most 184 characters, so a token fits in a URL path. The
//! payload is signed, not encrypted; it holds nothing the token's holder may not know.

use base64::Engine as _;
use hmac::Mac;

use crate::crypto::mac::{HmacSha256, hmac_sha256};

use crate::crypto::keys::{KeyRing, MAX_KID_LEN};
use crate::error::ApiError;

const VERSION: u8 = 1;
const OP_DOWNLOAD: u8 = 1;
const TAG_LEN: usize = 16;
/// Longest audience accepted when minting.
pub const MAX_AUDIENCE_LEN: usize = 32;
const MAX_PARTNER_LEN: usize = 32;
/// No valid token is longer; longer input is refused before any decoding work.
pub const MAX_TOKEN_CHARS: usize = 200;

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub media_id: [u8; 16],
    pub generation: [u8; 8],
    pub partner: String,
    pub audience: String,
    pub issued: u64,
    pub expires: u64,
}

/// Why a token was refused: a bounded set, used as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Malformed,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
}

impl Rejection {
    pub const fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::UnknownKey => "unknown_kid",
            Rejection::BadSignature => "bad_signature",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::Expired => ApiError::TokenExpired,
            Rejection::UnknownKey => ApiError::TokenUnknownKey,
            Rejection::Malformed | Rejection::BadSignature | Rejection::NotYetValid => {
                ApiError::TokenInvalid
            }
        }
    }
}

fn mac(key: &[u8; 32], data: &[u8]) -> HmacSha256 {
    let mut m = hmac_sha256(key);
    m.update(data);
    m
}

/// Mint a token under the ring's active key. Caller validates partner and audience lengths.
pub fn mint(ring: &KeyRing, c: &Claims) -> Result<String, ApiError> {
    if c.audience.len() > MAX_AUDIENCE_LEN || c.partner.len() > MAX_PARTNER_LEN {
        return Err(ApiError::Internal);
    }
    let ttl = u32::try_from(c.expires.saturating_sub(c.issued)).map_err(|_| ApiError::Internal)?;
    let (kid, key) = ring.active();
    let mut raw = Vec::with_capacity(140);
    raw.extend_from_slice(&[VERSION, OP_DOWNLOAD, kid.len() as u8]);
    raw.extend_from_slice(kid.as_bytes());
    raw.extend_from_slice(&c.media_id);
    raw.extend_from_slice(&c.generation);
    raw.extend_from_slice(&c.issued.to_be_bytes());
    raw.extend_from_slice(&ttl.to_be_bytes());
    raw.push(c.partner.len() as u8);
    raw.extend_from_slice(c.partner.as_bytes());
    raw.push(c.audience.len() as u8);
    raw.extend_from_slice(c.audience.as_bytes());
    let tag = mac(key.expose(), &raw).finalize().into_bytes();
    raw.extend_from_slice(&tag[..TAG_LEN]);
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

/// A cursor over the token bytes that fails instead of panicking on short input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Rejection> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(Rejection::Malformed)?;
        self.0 = rest;
        Ok(head)
    }
    fn byte(&mut self) -> Result<u8, Rejection> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Rejection> {
        self.take(N)?.try_into().map_err(|_| Rejection::Malformed)
    }
    fn string(&mut self, max: usize) -> Result<String, Rejection> {
        let n = usize::from(self.byte()?);
        if n > max {
            return Err(Rejection::Malformed);
        }
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Rejection::Malformed)
    }
}

/// Verify a token's signature and validity window at `now` (unix seconds).
///
/// Order matters: nothing inside the token is believed before the MAC is checked, except the
/// key id needed to pick the key.
pub fn verify(ring: &KeyRing, token: &str, now: u64, skew: u64) -> Result<Claims, Rejection> {
    if token.len() > MAX_TOKEN_CHARS {
        return Err(Rejection::Malformed);
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| Rejection::Malformed)?;
    let signed_len = raw.len().checked_sub(TAG_LEN).ok_or(Rejection::Malformed)?;
    let (signed, tag) = raw.split_at(signed_len);
    let mut r = Reader(signed);
    if r.byte()? != VERSION {
        return Err(Rejection::Malformed);
    }
    let op = r.byte()?;
    let kid_len = usize::from(r.byte()?);
    if kid_len == 0 || kid_len > MAX_KID_LEN {
        return Err(Rejection::Malformed);
    }
    let kid = std::str::from_utf8(r.take(kid_len)?).map_err(|_| Rejection::Malformed)?;
    let key = ring.get(kid).ok_or(Rejection::UnknownKey)?;
    mac(key.expose(), signed)
        .verify_truncated_left(tag)
        .map_err(|_| Rejection::BadSignature)?;
    if op != OP_DOWNLOAD {
        return Err(Rejection::Malformed);
    }
    let media_id = r.array::<16>()?;
    let generation = r.array::<8>()?;
    let issued = u64::from_be_bytes(r.array::<8>()?);
    let ttl = u64::from(u32::from_be_bytes(r.array::<4>()?));
    let partner = r.string(MAX_PARTNER_LEN)?;
    let audience = r.string(MAX_AUDIENCE_LEN)?;
    if !r.0.is_empty() {
        return Err(Rejection::Malformed);
    }
    let expires = issued.saturating_add(ttl);
    if issued > now.saturating_add(skew) {
        return Err(Rejection::NotYetValid);
    }
    if now >= expires.saturating_add(skew) {
        return Err(Rejection::Expired);
    }
    Ok(Claims {
        media_id,
        generation,
        partner,
        audience,
        issued,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::crypto::keys::SecretKey;

    fn ring(active: &str, kids: &[(&str, u8)]) -> KeyRing {
        KeyRing::new(
            active.into(),
            kids.iter()
                .map(|(k, b)| (k.to_string(), SecretKey::from_bytes([*b; 32])))
                .collect::<BTreeMap<_, _>>(),
        )
        .unwrap()
    }

    fn claims() -> Claims {
        Claims {
            media_id: [7; 16],
            generation: [9; 8],
            partner: "a".repeat(32),
            audience: "b".repeat(32),
            issued: 1_000_000,
            expires: 1_000_300,
        }
    }

    #[test]
    fn roundtrip_and_size() {
        let r = ring("t1", &[("t1", 1)]);
        let t = mint(&r, &claims()).unwrap();
        assert!(t.len() <= MAX_TOKEN_CHARS, "{}", t.len());
        assert_eq!(verify(&r, &t, 1_000_100, 30).unwrap(), claims());
    }

    #[test]
    fn expiry_with_skew() {
        let r = ring("t1", &[("t1", 1)]);
        let t = mint(&r, &claims()).unwrap();
        assert!(verify(&r, &t, 1_000_329, 30).is_ok());
        assert_eq!(verify(&r, &t, 1_000_330, 30), Err(Rejection::Expired));
        assert!(verify(&r, &t, 999_970, 30).is_ok());
        assert_eq!(verify(&r, &t, 999_969, 30), Err(Rejection::NotYetValid));
    }

    #[test]
    fn every_byte_tampered_fails() {
        let r = ring("t1", &[("t1", 1)]);
        let t = mint(&r, &claims()).unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&t)
            .unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bad);
            assert!(verify(&r, &s, 1_000_100, 30).is_err(), "byte {i}");
        }
        for cut in 0..raw.len() {
            let s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw[..cut]);
            assert!(verify(&r, &s, 1_000_100, 30).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn rotation_and_unknown_kid() {
        let old = ring("t1", &[("t1", 1)]);
        let t = mint(&old, &claims()).unwrap();
        let rotated = ring("t2", &[("t1", 1), ("t2", 2)]);
        assert!(verify(&rotated, &t, 1_000_100, 30).is_ok());
        let removed = ring("t2", &[("t2", 2)]);
        assert_eq!(
            verify(&removed, &t, 1_000_100, 30),
            Err(Rejection::UnknownKey)
        );
        let same_kid_other_key = ring("t1", &[("t1", 3)]);
        assert_eq!(
            verify(&same_kid_other_key, &t, 1_000_100, 30),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn garbage() {
        let r = ring("t1", &[("t1", 1)]);
        for g in ["", "!!!!", "AAAA", &"A".repeat(10_000), "a.b.c"] {
            assert!(verify(&r, g, 0, 30).is_err());
        }
    }
}
