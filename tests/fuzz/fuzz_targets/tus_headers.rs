//! Fuzz target: the tus header parsers (`Upload-Metadata`, `Upload-Checksum`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = interop_media::uploads::protocol::parse_metadata(text);
        let _ = interop_media::uploads::protocol::parse_checksum(text);
    }
});
