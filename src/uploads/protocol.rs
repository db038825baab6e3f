//! tus 1.0 header values: `Upload-Metadata` and `Upload-Checksum`.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The protocol version this server speaks; the only value of `Tus-Resumable` it accepts.
pub const TUS_VERSION: &str = "1.0.0";
/// What `OPTIONS` advertises.
pub const TUS_EXTENSIONS: &str = "creation,creation-with-upload,expiration,checksum,termination";
pub const TUS_CHECKSUMS: &str = "sha256";
/// The body type of `PATCH` (and of `POST` with creation-with-upload).
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
/// `Upload-Metadata` is echoed from the state record; keep it small.
pub const MAX_METADATA_LEN: usize = 4096;

/// Parse `Upload-Metadata`: comma-separated `key base64value` pairs (the value may be
/// absent), keys unique and free of spaces and commas.
pub fn parse_metadata(header: &str) -> Result<BTreeMap<String, Vec<u8>>, &'static str> {
    if header.len() > MAX_METADATA_LEN {
        return Err("Upload-Metadata is longer than 4096 bytes");
    }
    let mut out = BTreeMap::new();
    if header.trim().is_empty() {
        return Ok(out);
    }
    for pair in header.split(',') {
        let mut words = pair.trim().split(' ');
        let key = words.next().unwrap_or_default();
        let value = words.next().unwrap_or_default();
        if words.next().is_some() {
            return Err("Upload-Metadata pairs are `key base64value`");
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err("Upload-Metadata keys are printable ASCII without spaces or commas");
        }
        let decoded = STANDARD
            .decode(value)
            .map_err(|_| "Upload-Metadata values are base64")?;
        if out.insert(key.to_string(), decoded).is_some() {
            return Err("Upload-Metadata keys must be unique");
        }
    }
    Ok(out)
}

#[derive(Debug, PartialEq, Eq)]
pub enum ChecksumError {
    /// An algorithm other than sha256 (tus: 400).
    Unsupported,
    Malformed,
}

/// Parse `Upload-Checksum: sha256 <base64 digest>`.
pub fn parse_checksum(header: &str) -> Result<[u8; 32], ChecksumError> {
    let (algo, value) = header
        .trim()
        .split_once(' ')
        .ok_or(ChecksumError::Malformed)?;
    if !algo.eq_ignore_ascii_case("sha256") {
        return Err(ChecksumError::Unsupported);
    }
    STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|d| <[u8; 32]>::try_from(d).ok())
        .ok_or(ChecksumError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata() {
        let m = parse_metadata(
            "kind aW1hZ2U=,format b3BhcXVl, empty,filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==",
        )
        .unwrap();
        assert_eq!(m["kind"], b"image");
        assert_eq!(m["format"], b"opaque");
        assert_eq!(m["empty"], b"");
        assert_eq!(m["filename"], b"world_domination_plan.pdf");
        assert!(parse_metadata("").unwrap().is_empty());
        assert!(parse_metadata("a x y").is_err());
        assert!(parse_metadata("a !!!").is_err());
        assert!(parse_metadata("a YQ==,a YQ==").is_err());
        assert!(parse_metadata(",a YQ==").is_err());
        assert!(parse_metadata(&"a".repeat(5000)).is_err());
    }

    #[test]
    fn checksum() {
        let d = STANDARD.encode([1u8; 32]);
        assert_eq!(parse_checksum(&format!("sha256 {d}")), Ok([1u8; 32]));
        assert_eq!(
            parse_checksum(&format!("sha1 {d}")),
            Err(ChecksumError::Unsupported)
        );
        assert_eq!(parse_checksum("sha256 abc"), Err(ChecksumError::Malformed));
        assert_eq!(parse_checksum("sha256"), Err(ChecksumError::Malformed));
    }
}
