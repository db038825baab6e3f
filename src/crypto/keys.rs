//! Secret keys and key rings: zeroized on drop, redacted in `Debug`, looked up by `kid`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 256-bit secret key. Never printed: `Debug` shows only that it is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub const LEN: usize = 32;

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, super::CryptoError> {
        let mut k = [0u8; 32];
        super::random_bytes(&mut k)?;
        let key = SecretKey(k);
        k.zeroize();
        Ok(key)
    }

    /// Parse a key written as base64 (standard or URL-safe, padding optional) or 64 hex digits.
    pub fn parse(text: &str) -> Result<Self, KeyParseError> {
        let text = text.trim();
        let mut bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| KeyParseError::Encoding)?
        } else {
            super::encoding::b64_decode_lenient(text)
                .ok_or(KeyParseError::Encoding)?
                .to_vec()
        };
        let result = <[u8; 32]>::try_from(bytes.as_slice())
            .map(SecretKey)
            .map_err(|_| KeyParseError::Length(bytes.len()));
        bytes.zeroize();
        result
    }

    /// Base64 (standard, padded): how keys are written into configuration.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyParseError {
    #[error("not base64 or hex")]
    Encoding,
    #[error("decodes to {0} bytes, expected 32")]
    Length(usize),
}

/// Longest key id accepted: key ids are written into every stored object and token.
pub const MAX_KID_LEN: usize = 16;

/// Whether `kid` is a usable key id: 1–16 characters of `[A-Za-z0-9._-]`.
pub fn kid_is_valid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One active key for new work and older keys kept for reading what they sealed.
#[derive(Clone)]
pub struct KeyRing {
    active: String,
    keys: BTreeMap<String, SecretKey>,
}

impl KeyRing {
    pub fn new(active: String, keys: BTreeMap<String, SecretKey>) -> Result<Self, KeyRingError> {
        if let Some(bad) = keys.keys().find(|k| !kid_is_valid(k)) {
            return Err(KeyRingError::BadKid(bad.clone()));
        }
        if !keys.contains_key(&active) {
            return Err(KeyRingError::ActiveMissing(active));
        }
        Ok(KeyRing { active, keys })
    }

    /// The key id and key used for everything new.
    pub fn active(&self) -> (&str, &SecretKey) {
        // Invariant from `new`: the active kid is present.
        match self.keys.get_key_value(&self.active) {
            Some((kid, key)) => (kid.as_str(), key),
            None => unreachable!("KeyRing::new checks the active kid is present"),
        }
    }

    pub fn get(&self, kid: &str) -> Option<&SecretKey> {
        self.keys.get(kid)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRingError {
    #[error("key id `{0}` must be 1-16 characters of A-Z a-z 0-9 . _ -")]
    BadKid(String),
    #[error("the active key id `{0}` has no key")]
    ActiveMissing(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let k = SecretKey::from_bytes([0x41; 32]);
        let ring =
            KeyRing::new("k1".into(), BTreeMap::from([("k1".to_string(), k.clone())])).unwrap();
        let shown = format!("{k:?} {ring:?}");
        assert!(!shown.contains("41"), "{shown}");
        assert!(!shown.contains(&k.to_base64()));
    }

    #[test]
    fn parse_roundtrip_and_errors() {
        let k = SecretKey::from_bytes([7; 32]);
        assert_eq!(SecretKey::parse(&k.to_base64()).unwrap().expose(), &[7; 32]);
        assert_eq!(
            SecretKey::parse(&hex::encode([9u8; 32])).unwrap().expose(),
            &[9; 32]
        );
        assert_eq!(
            SecretKey::parse("AAAA").unwrap_err(),
            KeyParseError::Length(3)
        );
        assert_eq!(SecretKey::parse("!!").unwrap_err(), KeyParseError::Encoding);
    }

    #[test]
    fn ring_checks() {
        let k = SecretKey::from_bytes([1; 32]);
        assert!(KeyRing::new("x".into(), BTreeMap::from([("k1".into(), k.clone())])).is_err());
        assert!(KeyRing::new("a/b".into(), BTreeMap::from([("a/b".into(), k)])).is_err());
    }
}
