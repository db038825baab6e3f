//! Audio and voice notes: codec, sample rate, channels, duration; a 64-value waveform for
//! voice notes from decoded samples.
//!
//! Containers and codecs go through symphonia, with the pure-Rust `opus-decoder` (adapter in
//! `opus.rs`) registered for Opus, which symphonia cannot decode itself. Two
//! things are done here rather than trusted to a library:
//!
//! * Ogg Opus duration comes from our own bounded page scan (RFC 7845): the first audio page
//!   gives the start, the last pages (read from a fixed-size tail window) give the end, every
//!   page's CRC is checked, and granule positions that go backwards, are negative, or claim more
//!   audio than the file can hold are refused before anything is decoded.
//! * AMR (RFC 4867 §5 storage format) has no decoder in the stack: its frame headers are walked
//!   to count 20 ms frames.
//!
//! Voice notes are decoded packet by packet into a fixed 64-bucket accumulator (no sample is
//! kept), and the decoded length is checked against the container's claim.
//!
//! Symphonia `assert!`s on some malformed headers (fuzzing found Vorbis codebook overflows);
//! such panics are caught at the entry point and reported as undecodable, so the release
//! profile must keep unwinding (no `panic = "abort"`) for this to hold.
//!
//! One file a concept: `ogg` (the page walker and its granule checks), `amr` (the frame
//! walker), `decode` (symphonia: probing, the codec registry, packets into the waveform) and
//! `waveform` (the 64-bucket accumulator). This file holds the entry points and the
//! decision of what to believe about the duration.

mod amr;
mod decode;
mod ogg;
#[cfg(test)]
mod tests;
mod waveform;

use std::io::Cursor;
use std::panic::AssertUnwindSafe;

use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::TrackType;
use symphonia::core::io::MediaSource;

use super::{Analysis, AudioInfo, FileSlice, Limits, MediaError, Sniffed};
use amr::amr_frames;
use decode::{codec_name, declared_frames, decode, expected_codec, probe};
use ogg::{ogg_check_granules, ogg_last_granule, ogg_opus_info};
use waveform::Accumulator;

/// Files at most this large are decoded to count their frames when the container does not say
/// how long they are; larger ones are reported without a duration rather than decoded twice.
const DECODE_COUNT_MAX_BYTES: u64 = 16 << 20;

/// Decoded voice audio may differ from the granule-position claim by at most this (48 kHz
/// samples, 1 s); more means the container lies about the audio it holds.
const OPUS_DURATION_TOLERANCE: u64 = 48_000;

fn bad(msg: impl Into<String>) -> MediaError {
    MediaError::Undecodable(msg.into())
}

fn sym(e: SymError) -> MediaError {
    bad(e.to_string())
}

/// Opens a fresh reader over the media (a second pass re-opens rather than seeks, which not
/// every demuxer does reliably).
type Opener<'a> = dyn Fn() -> std::io::Result<Box<dyn MediaSource + 'a>> + 'a;

/// Analyze the audio `input`, sniffed as `sniffed`; `voice` adds the waveform.
pub fn analyze(
    input: FileSlice,
    sniffed: &Sniffed,
    voice: bool,
    limits: &Limits,
) -> Result<Analysis, MediaError> {
    let len = input.len();
    let open = move || -> std::io::Result<Box<dyn MediaSource>> { Ok(Box::new(input.rewound())) };
    guarded(&open, len, sniffed.name, voice, limits)
}

impl MediaSource for FileSlice {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len())
    }
}

/// Analyze audio held in memory (tests, fuzzing, callers that already hold the bytes).
pub fn analyze_bytes<'a>(
    data: &'a [u8],
    sniffed_name: &str,
    voice: bool,
    limits: &Limits,
) -> Result<Analysis, MediaError> {
    let open =
        move || -> std::io::Result<Box<dyn MediaSource + 'a>> { Ok(Box::new(Cursor::new(data))) };
    guarded(&open, data.len() as u64, sniffed_name, voice, limits)
}

/// Run the analysis on arbitrary bytes, ignoring the result (for fuzzers: it must return,
/// quickly, without panicking). The type is guessed from the magic bytes the way the sniffer
/// would, and Ogg Opus is also run as a voice note so the decoder is exercised. In memory rather
/// than through a temporary file: same code path after the open, many times faster to fuzz.
pub fn fuzz_entry(data: &[u8]) {
    let limits = Limits::default();
    let name = guess_name(data);
    let _ = analyze_bytes(data, name, false, &limits);
    if name == "ogg-opus" {
        let _ = analyze_bytes(data, name, true, &limits);
    }
}

/// Fuzz target body for our own walkers, with nothing caught: the Ogg page scan (Opus head,
/// last granule, granule checks) and the AMR frame walk. A panic here is a bug in our code
/// (the pipeline's `catch_unwind` is for the third-party decoders).
pub fn walk_fuzz_entry(data: &[u8]) {
    let len = data.len() as u64;
    let limits = Limits::default();
    let _ = ogg_opus_info(&mut Cursor::new(data), len);
    let serial = data
        .get(14..18)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let _ = ogg_last_granule(&mut Cursor::new(data), len, serial);
    let _ = ogg_check_granules(&mut Cursor::new(data), len);
    let _ = amr_frames(Cursor::new(data), false, &limits);
    let _ = amr_frames(Cursor::new(data), true, &limits);
}

/// A cheap stand-in for the sniffer, for `fuzz_entry` only.
fn guess_name(d: &[u8]) -> &'static str {
    let has = |needle: &[u8]| d.windows(needle.len()).take(512).any(|w| w == needle);
    if d.starts_with(b"#!AMR-WB\n") {
        "amr-wb"
    } else if d.starts_with(b"#!AMR\n") {
        "amr-nb"
    } else if d.starts_with(b"OggS") && has(b"OpusHead") {
        "ogg-opus"
    } else if d.starts_with(b"OggS") {
        "ogg-vorbis"
    } else if d.starts_with(b"RIFF") {
        "wav"
    } else if d.starts_with(b"fLaC") {
        "flac"
    } else if d.get(4..8) == Some(b"ftyp") {
        "m4a"
    } else if d.len() > 1 && d[0] == 0xFF && d[1] & 0xF6 == 0xF0 {
        "aac"
    } else {
        "mp3"
    }
}

/// Symphonia and libopus are not ours: a panic inside them on hostile input must become a
/// refusal, not take the worker down mid-job.
fn guarded(
    open: &Opener<'_>,
    len: u64,
    name: &str,
    voice: bool,
    limits: &Limits,
) -> Result<Analysis, MediaError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| run(open, len, name, voice, limits)))
        .unwrap_or_else(|_| Err(bad("the decoder failed on this input")))
}

fn run(
    open: &Opener<'_>,
    len: u64,
    name: &str,
    voice: bool,
    limits: &Limits,
) -> Result<Analysis, MediaError> {
    let io = |e: std::io::Error| bad(format!("read: {e}"));
    match name {
        "amr-nb" | "amr-wb" => {
            let wb = name == "amr-wb";
            let frames = amr_frames(open().map_err(io)?, wb, limits)?;
            return Ok(Analysis {
                duration_ms: Some(frames * 20),
                audio: Some(AudioInfo {
                    codec: name.to_string(),
                    sample_rate: if wb { 16_000 } else { 8_000 },
                    channels: 1,
                }),
                ..Analysis::default()
            });
        }
        _ => {}
    }
    let opus = if name == "ogg-opus" {
        let info = ogg_opus_info(&mut open().map_err(io)?, len)?;
        if frames_to_ms(info.samples, 48_000) > limits.max_duration_ms {
            return Err(MediaError::TooLong);
        }
        Some(info)
    } else {
        if name == "ogg-vorbis" {
            ogg_check_granules(&mut open().map_err(io)?, len)?;
        }
        None
    };

    let mut format = probe(open().map_err(io)?, name)?;
    let track = match &opus {
        Some(o) => format
            .tracks()
            .iter()
            .find(|t| t.id == o.serial)
            .ok_or_else(|| bad("no Opus track"))?,
        None => format
            .default_track(TrackType::Audio)
            .ok_or_else(|| bad("no audio track"))?,
    }
    .clone();
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| bad("no audio track"))?
        .clone();
    let codec = codec_name(params.codec);
    if let Some(expected) = expected_codec(name)
        && !expected.contains(&codec)
    {
        return Err(bad(format!("the {name} file holds {codec} audio")));
    }
    let sample_rate = params.sample_rate.unwrap_or(0);
    let channels = match &opus {
        Some(o) => u16::from(o.channels),
        None => params
            .channels
            .as_ref()
            .map_or(0, |c| u16::try_from(c.count()).unwrap_or(u16::MAX)),
    };
    let info = AudioInfo {
        codec: codec.to_string(),
        sample_rate,
        channels,
    };

    let (duration_ms, waveform) = match &opus {
        Some(o) => {
            let waveform = if voice {
                let mut w = Accumulator::new(o.samples, u64::from(o.pre_skip));
                // Pre-skip is applied here, in the accumulator: the adapter would trim it from the
                // first packet only, which loses part of it when pre-skip exceeds one packet.
                let mut p = params.clone();
                p.extra_data = None;
                decode(&mut *format, &track, &p, 48_000, limits, &mut w)?;
                if w.pos.abs_diff(o.samples) > OPUS_DURATION_TOLERANCE {
                    return Err(bad("granule positions disagree with the audio"));
                }
                Some(w.waveform())
            } else {
                None
            };
            (Some(frames_to_ms(o.samples, 48_000)), waveform)
        }
        None => {
            if sample_rate == 0 {
                return Err(bad("no sample rate"));
            }
            let declared = declared_frames(&track, sample_rate);
            if declared.is_some_and(|f| frames_to_ms(f, sample_rate) > limits.max_duration_ms) {
                return Err(MediaError::TooLong);
            }
            if voice {
                // The waveform needs the length up front to cut equal buckets: count first when
                // the container does not say.
                let total = match declared {
                    Some(f) => f,
                    None => {
                        let mut c = Accumulator::counter();
                        decode(&mut *format, &track, &params, sample_rate, limits, &mut c)?;
                        format = probe(open().map_err(io)?, name)?;
                        c.pos
                    }
                };
                let mut w = Accumulator::new(total, 0);
                decode(&mut *format, &track, &params, sample_rate, limits, &mut w)?;
                // Decoded frames are the exact length; the container's figure may be an
                // estimate (MP3 and ADTS without an index are estimated from the bitrate).
                (Some(frames_to_ms(w.pos, sample_rate)), Some(w.waveform()))
            } else {
                let frames = match declared {
                    Some(f) => Some(f),
                    None if len <= DECODE_COUNT_MAX_BYTES => {
                        let mut c = Accumulator::counter();
                        decode(&mut *format, &track, &params, sample_rate, limits, &mut c)?;
                        Some(c.pos)
                    }
                    None => None,
                };
                let mut ms = frames.map(|f| frames_to_ms(f, sample_rate));
                if name == "m4a" {
                    // The movie header accounts for the edit list (encoder priming), as players
                    // and ffprobe do; symphonia's frame count includes the priming frames.
                    match super::mp4::analyze_reader(open().map_err(io)?, len, limits) {
                        Ok(a) if a.duration_ms.is_some() => ms = a.duration_ms,
                        Err(MediaError::TooLong) => return Err(MediaError::TooLong),
                        _ => {}
                    }
                }
                (ms, None)
            }
        }
    };
    if duration_ms.is_some_and(|d| d > limits.max_duration_ms) {
        return Err(MediaError::TooLong);
    }
    Ok(Analysis {
        duration_ms,
        waveform,
        audio: Some(info),
        ..Analysis::default()
    })
}

fn frames_to_ms(frames: u64, rate: u32) -> u64 {
    let ms = u128::from(frames) * 1000 / u128::from(rate.max(1));
    u64::try_from(ms).unwrap_or(u64::MAX)
}
