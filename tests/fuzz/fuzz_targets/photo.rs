//! Fuzz target: our own image structure walkers and metadata stripping
//! (`pipeline::photo::walk_fuzz_entry`), panics fatal: a panic here is a bug in our code.
//! Decoders are fuzzed, panics caught as in production, by `photo_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    interop_media::pipeline::photo::walk_fuzz_entry(data);
});
