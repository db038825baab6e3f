//! Lenient base64 input: standard or URL-safe alphabet, padded or not, surrounding
//! whitespace ignored. Gateways, key files and WhatsApp tooling use every variant.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

/// Decode `text` as either base64 alphabet; `None` when it is neither. The result is wiped
/// on drop, since callers decode keys with it.
pub fn b64_decode_lenient(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let t = text.trim().trim_end_matches('=');
    let engine = if t.contains(['-', '_']) {
        &URL_SAFE_NO_PAD
    } else {
        &STANDARD_NO_PAD
    };
    engine.decode(t).ok().map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_decodes_to_the_same_bytes() {
        let want = vec![0xfbu8, 0xff, 0xbf, 0x01];
        for text in ["+/+/AQ==", "+/+/AQ", "-_-_AQ", "-_-_AQ==", "  +/+/AQ==\n"] {
            assert_eq!(b64_decode_lenient(text).as_deref(), Some(&want), "{text}");
        }
        assert!(b64_decode_lenient("+/-_").is_none(), "mixed alphabets");
        assert!(b64_decode_lenient("a").is_none());
    }
}
