//! Fuzz target: the stored-object header parser (`crypto::object::open_header`) on arbitrary
//! bytes, against a fixed key ring: magic, version, key id, salt and metadata length are
//! parsed before the tag is checked.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use interop_media::crypto::keys::{KeyRing, SecretKey};

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let mut keys = BTreeMap::new();
        keys.insert("k1".to_string(), SecretKey::from_bytes([7; 32]));
        KeyRing::new("k1".to_string(), keys).expect("a valid ring")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = interop_media::crypto::object::open_header(ring(), "media-id", data);
});
