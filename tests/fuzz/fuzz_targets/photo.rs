//! Fuzz target: `pipeline::photo::fuzz_entry` on arbitrary bytes.
//!
//! The pipeline catches decoder panics by design (third-party decoders do panic on hostile
//! input: symphonia's Vorbis setup, for one, and the caged worker answers 422), so this target
//! silences the panic hook libFuzzer installs: what it hunts is what the cage must absorb
//! instead: hangs, runaway memory, aborts and crashes that do not unwind. The targets of our
//! own parsers (sniff, mp4, tus_headers) keep panics fatal.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    std::panic::set_hook(Box::new(|_| {}));
    interop_media::pipeline::photo::fuzz_entry(data);
});
