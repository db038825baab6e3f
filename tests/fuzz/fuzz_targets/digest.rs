//! Fuzz target: the `X-Media-Sha256` header (`media::parse_sha256`): hex or base64.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = interop_media::media::parse_sha256(text);
    }
});
