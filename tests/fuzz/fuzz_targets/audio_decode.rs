//! Fuzz target: the whole audio analysis (`pipeline::audio::fuzz_entry`), decoders included.
//!
//! Third-party decoders do panic on hostile input (symphonia's Vorbis setup, for one) and the
//! pipeline catches that by design, so this target silences the panic hook: it hunts hangs,
//! runaway memory and aborts. Our own walkers are fuzzed with panics fatal by `audio`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    std::panic::set_hook(Box::new(|_| {}));
    interop_media::pipeline::audio::fuzz_entry(data);
});
