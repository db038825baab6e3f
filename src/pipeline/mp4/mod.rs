//! MP4/3GP video: a box parser that bounds every size and table before trusting it.
//!
//! Only the facts needed for the message (brand, duration, displayed size, rotation, codecs,
//! fast start) are read. Every box header is checked against its parent before it is used, only
//! a fixed set of container boxes is entered, nesting depth and the number of boxes visited are
//! capped, and payloads are read through a small fixed window (never a whole box: `mdat` is
//! skipped with a seek).
//!
//! For the video thumbnail it also locates the video track's first key frame: the decoder
//! configuration (`avcC`) of the first sample entry and the bytes of the first sync sample
//! (`stss`, resolved through `stsc`, `stsz` and `stco`/`co64`), each table bounded by its box and
//! the sample by `key_frame::MAX_KEY_FRAME_BYTES`. Decoding it is `video_thumb`'s job.
//!
//! One file a concept: `walk` (the box walker), `boxes` (the facts read from each leaf
//! box) and `key_frame` (locating the first sync sample through the sample tables). This
//! file holds the entry points and what the walk collects.

mod boxes;
mod key_frame;
#[cfg(test)]
mod tests;
mod walk;

use std::io::{Cursor, Read, Seek};

use super::video_thumb::{self, Skip};
use super::{Analysis, AudioInfo, Limits, MediaError, VideoInfo};

/// The first key frame of the video track, as the decoder needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFrame {
    /// Sample entry code, e.g. `avc1`.
    pub codec: [u8; 4],
    /// The body of the entry's `avcC` box (AVCDecoderConfigurationRecord).
    pub config: Vec<u8>,
    /// The sample: NAL units, each behind a big-endian length (size from `config`).
    pub sample: Vec<u8>,
}

fn bad(msg: &str) -> MediaError {
    MediaError::Undecodable(msg.to_string())
}

/// Analyze the MP4/3GP file `input`.
pub fn analyze(input: super::FileSlice, limits: &Limits) -> Result<Analysis, MediaError> {
    let len = input.len();
    let (mut a, frame) = parse(input, len, limits, limits.video_thumbnail)?;
    // Sent as a video, it must have a video track (an audio-only MP4 is an m4a, and a file
    // whose tracks we could not find tells the recipient nothing it can play).
    if a.video.as_ref().is_none_or(|v| v.video_codec.is_none()) {
        return Err(bad("no video track"));
    }
    if limits.video_thumbnail {
        let rotation = a.video.as_ref().map_or(0, |v| v.rotation);
        // A thumbnail that cannot be made never fails the upload: the reason is reported.
        match frame.and_then(|f| video_thumb::thumbnail(&f, rotation, limits)) {
            Ok(t) => {
                a.thumbnail = Some(t.jpeg);
                a.blurhash = Some(t.blurhash);
            }
            Err(skip) => a.thumbnail_skipped = Some(skip.as_str().to_string()),
        }
    } else {
        a.thumbnail_skipped = Some(Skip::DecoderFailed.as_str().to_string());
    }
    Ok(a)
}

/// Analyze `len` bytes of MP4/3GP from `r` (a file, or bytes in memory for tests and fuzzing).
pub fn analyze_reader<R: Read + Seek>(
    r: R,
    len: u64,
    limits: &Limits,
) -> Result<Analysis, MediaError> {
    parse(r, len, limits, false).map(|(a, _)| a)
}

/// The analysis, and (when `want_frame`) the video track's first key frame or why there is
/// none to decode.
pub fn parse<R: Read + Seek>(
    r: R,
    len: u64,
    limits: &Limits,
    want_frame: bool,
) -> Result<(Analysis, Result<KeyFrame, Skip>), MediaError> {
    let mut p = Parser {
        r,
        len,
        boxes: 0,
        facts: Facts::default(),
        track: None,
    };
    p.walk(0, len, 0)?;
    let frame = match (want_frame, p.facts.video.take()) {
        (true, Some(v)) => {
            let frame = p.key_frame(&v);
            p.facts.video = Some(v);
            frame
        }
        (_, v) => {
            p.facts.video = v;
            Err(Skip::NoKeyFrame)
        }
    };
    let f = p.facts;
    let Some(moov_at) = f.moov_at else {
        return Err(bad("no moov box"));
    };
    // The movie header is authoritative; tracks' media headers are the fallback for files
    // (fragmented ones, some muxers) that leave it at 0 or all-ones ("unknown").
    let duration_ms = f.movie_duration_ms.or(f.track_duration_ms);
    if duration_ms.is_some_and(|d| d > limits.max_duration_ms) {
        return Err(MediaError::TooLong);
    }
    let video = f.video.as_ref();
    let rotation = video.map_or(0, |v| v.rotation);
    let (width, height) = match video.map(|v| (v.width, v.height)) {
        Some((w, h)) if w > 0 && h > 0 => {
            if rotation == 90 || rotation == 270 {
                (Some(h), Some(w))
            } else {
                (Some(w), Some(h))
            }
        }
        _ => (None, None),
    };
    let audio = f.audio.as_ref().map(|a| AudioInfo {
        codec: a.codec.clone().unwrap_or_default(),
        sample_rate: a.sample_rate,
        channels: a.channels,
    });
    let analysis = Analysis {
        width,
        height,
        duration_ms,
        audio,
        video: Some(VideoInfo {
            brand: f.brand.unwrap_or_default(),
            video_codec: video.and_then(|v| v.codec.clone()),
            audio_codec: f.audio.and_then(|a| a.codec),
            rotation,
            fast_start: f.mdat_at.is_none_or(|m| moov_at < m),
        }),
        ..Analysis::default()
    };
    Ok((analysis, frame))
}

/// Run the parser on arbitrary bytes, ignoring the result (for fuzzers: it must return, quickly,
/// without panicking, whatever the bytes).
pub fn fuzz_entry(data: &[u8]) {
    // With the key frame located too: the sample tables are read only on that path.
    let _ = parse(
        Cursor::new(data),
        data.len() as u64,
        &Limits::default(),
        true,
    );
}

/// What one `trak` told us.
#[derive(Debug, Default, Clone)]
struct Track {
    handler: Option<[u8; 4]>,
    codec: Option<String>,
    /// From `tkhd` (16.16 fixed point, integer part), else from the visual sample entry.
    width: u32,
    height: u32,
    rotation: u16,
    sample_rate: u32,
    channels: u16,
    duration_ms: Option<u64>,
    /// Code, file offset and size of the first sample entry (for its `avcC` child).
    entry: Option<([u8; 4], u64, u64)>,
    /// Sample table boxes, as (body start, body end) in the file.
    stss: Option<(u64, u64)>,
    stsz: Option<(u64, u64)>,
    stsc: Option<(u64, u64)>,
    /// `stco` (32-bit offsets) or `co64` (64-bit): (body start, body end, is 64-bit).
    chunk_offsets: Option<(u64, u64, bool)>,
}

#[derive(Debug, Default)]
struct Facts {
    brand: Option<String>,
    moov_at: Option<u64>,
    mdat_at: Option<u64>,
    movie_duration_ms: Option<u64>,
    /// Longest track duration from `mdhd`.
    track_duration_ms: Option<u64>,
    video: Option<Track>,
    audio: Option<Track>,
}

struct Parser<R> {
    r: R,
    /// Length of the file.
    len: u64,
    boxes: u32,
    facts: Facts,
    /// The `trak` being walked, if any.
    track: Option<Track>,
}
