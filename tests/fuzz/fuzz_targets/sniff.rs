//! Fuzz target: `pipeline::sniff::fuzz_entry` on arbitrary bytes (must never panic or hang).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    interop_media::pipeline::sniff::fuzz_entry(data);
});
