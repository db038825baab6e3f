//! Fuzz target: download token verification (`tokens::verify`) on arbitrary text, against a
//! fixed key ring. Everything before the MAC check is attacker-controlled parsing.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use interop_media::crypto::keys::{KeyRing, SecretKey};

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let mut keys = BTreeMap::new();
        keys.insert("k1".to_string(), SecretKey::from_bytes([7; 32]));
        keys.insert("k2".to_string(), SecretKey::from_bytes([9; 32]));
        KeyRing::new("k1".to_string(), keys).expect("a valid ring")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = interop_media::tokens::verify(ring(), text, 1_800_000_000, 30);
    }
});
