//! Fuzz target: `pipeline::video_thumb::fuzz_entry` (the H.264 thumbnail path: avcC, SPS, NAL
//! splitting and the OpenH264 decode of one frame) on arbitrary bytes. Must never panic, crash
//! or hang; frames are capped at 1 Mpx so each input decodes in milliseconds.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    interop_media::pipeline::video_thumb::fuzz_entry(data);
});
