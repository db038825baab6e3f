//! HMAC-SHA256 keyed with the service's 32-byte keys, without a fallible constructor.

use hmac::Hmac;
use sha2::Sha256;
use zeroize::Zeroizing;

pub type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 keyed with `key`. HMAC zero-pads keys shorter than its 64-byte block, so
/// building the padded block here is exactly HMAC with `key`, and nothing can fail.
pub fn hmac_sha256(key: &[u8; 32]) -> HmacSha256 {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    <HmacSha256 as hmac::KeyInit>::new((&*block).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{KeyInit, Mac};

    #[test]
    fn equals_hmac_with_the_short_key() {
        let key = [7u8; 32];
        let mut a = hmac_sha256(&key);
        a.update(b"interop");
        let mut b = <HmacSha256 as KeyInit>::new_from_slice(&key).unwrap();
        b.update(b"interop");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
    }
}
