//! Fuzz target: the `Range` header (`range::interpret`); the first 8 bytes are the length.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (len, rest) = data.split_at(8);
    let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    if let Ok(text) = std::str::from_utf8(rest) {
        let answer = interop_media::range::interpret(Some(text), len);
        let _ = format!("{answer:?}");
    }
});
