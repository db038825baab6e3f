//! Fuzz target: the whole image analysis (`pipeline::photo::fuzz_entry`), decoders included.
//!
//! Third-party decoders do panic on hostile input and the pipeline catches that by design
//! (the worker answers 422), so this target silences the panic hook libFuzzer installs: what it
//! hunts is what the cage must absorb instead: hangs, runaway memory, aborts. Our own walkers
//! are fuzzed with panics fatal by `photo`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    std::panic::set_hook(Box::new(|_| {}));
    interop_media::pipeline::photo::fuzz_entry(data);
});
