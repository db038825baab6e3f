//! HKDF-SHA256: the one key-derivation function behind every key the service derives.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// `N` bytes of HKDF-SHA256 output keyed by `ikm`, with `info` given as parts that are
/// concatenated (callers separate variable-length parts themselves).
pub fn hkdf_sha256<const N: usize>(
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[&[u8]],
) -> Zeroizing<[u8; N]> {
    // HKDF-SHA256 expands to at most 255 blocks of 32 bytes; checked when compiled, so the
    // expansion below cannot fail.
    const { assert!(N <= 255 * 32) };
    let mut okm = Zeroizing::new([0u8; N]);
    if Hkdf::<Sha256>::new(salt, ikm)
        .expand_multi_info(info, okm.as_mut())
        .is_err()
    {
        okm.fill(0);
    }
    okm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5869, test case 1.
    #[test]
    fn rfc5869_case_1() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let okm = hkdf_sha256::<42>(Some(&salt), &ikm, &[&info[..4], &info[4..]]);
        assert_eq!(
            hex::encode(okm.as_ref()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }
}
