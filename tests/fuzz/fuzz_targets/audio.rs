//! Fuzz target: our own Ogg page scan and AMR frame walk
//! (`pipeline::audio::walk_fuzz_entry`), panics fatal: a panic here is a bug in our code.
//! Decoders are fuzzed, panics caught as in production, by `audio_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    interop_media::pipeline::audio::walk_fuzz_entry(data);
});
