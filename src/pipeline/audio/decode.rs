//! The symphonia side: probing the container, the codec registry (with the pure-Rust Opus
//! adapter), the codec names reported, and decoding packets into the waveform accumulator.

use std::sync::OnceLock;

use symphonia::core::codecs::audio::well_known::{
    CODEC_ID_AAC, CODEC_ID_ADPCM_G722, CODEC_ID_ADPCM_IMA_QT, CODEC_ID_ALAC, CODEC_ID_FLAC,
    CODEC_ID_MP1, CODEC_ID_MP2, CODEC_ID_MP3, CODEC_ID_OPUS, CODEC_ID_PCM_ALAW,
    CODEC_ID_PCM_F64BE_PLANAR, CODEC_ID_PCM_MULAW, CODEC_ID_PCM_S32LE, CODEC_ID_VORBIS,
};
use symphonia::core::codecs::audio::{AudioCodecId, AudioCodecParameters, AudioDecoderOptions};
use symphonia::core::codecs::registry::CodecRegistry;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, Track};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use super::waveform::Accumulator;
use super::{bad, sym};
use crate::pipeline::opus::OpusDecoder;
use crate::pipeline::{Limits, MediaError};

pub(super) fn probe<'a>(
    src: Box<dyn MediaSource + 'a>,
    name: &str,
) -> Result<Box<dyn FormatReader + 'a>, MediaError> {
    let mss = MediaSourceStream::new(src, Default::default());
    let mut hint = Hint::new();
    let ext = match name {
        "ogg-opus" => "opus",
        "ogg-vorbis" => "ogg",
        other => other,
    };
    hint.with_extension(ext);
    symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(sym)
}

/// The default symphonia codecs plus the pure-Rust Opus adapter.
fn codecs() -> &'static CodecRegistry {
    static REGISTRY: OnceLock<CodecRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut r = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut r);
        r.register_audio_decoder::<OpusDecoder>();
        r
    })
}

pub(super) fn codec_name(id: AudioCodecId) -> &'static str {
    match id {
        CODEC_ID_OPUS => "opus",
        CODEC_ID_VORBIS => "vorbis",
        CODEC_ID_MP3 => "mp3",
        CODEC_ID_MP2 => "mp2",
        CODEC_ID_MP1 => "mp1",
        CODEC_ID_AAC => "aac",
        CODEC_ID_FLAC => "flac",
        CODEC_ID_ALAC => "alac",
        CODEC_ID_PCM_ALAW => "alaw",
        CODEC_ID_PCM_MULAW => "mulaw",
        id if (CODEC_ID_PCM_S32LE..=CODEC_ID_PCM_F64BE_PLANAR).contains(&id) => "pcm",
        id if (CODEC_ID_ADPCM_G722..=CODEC_ID_ADPCM_IMA_QT).contains(&id) => "adpcm",
        _ => "unknown",
    }
}

/// Codecs a sniffed type may hold; a container carrying something else is refused, so what is
/// reported is always what the allow-list approved.
pub(super) fn expected_codec(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "ogg-opus" => Some(&["opus"]),
        "ogg-vorbis" => Some(&["vorbis"]),
        "mp3" => Some(&["mp3", "mp2", "mp1"]),
        "aac" => Some(&["aac"]),
        "flac" => Some(&["flac"]),
        _ => None,
    }
}

/// Playable frames the container declares, if it does.
pub(super) fn declared_frames(track: &Track, sample_rate: u32) -> Option<u64> {
    if let Some(n) = track.num_frames {
        return Some(n);
    }
    let (d, tb) = (track.duration?, track.time_base?);
    // Convert timebase units to frames: d × numer / denom seconds × rate.
    let f = u128::from(d.get()) * u128::from(tb.numer.get()) * u128::from(sample_rate)
        / u128::from(tb.denom.get());
    Some(u64::try_from(f).unwrap_or(u64::MAX))
}

/// Decode every packet of `track` into `acc`, refusing once more than the longest allowed
/// duration has come out (so a lying container cannot make us decode forever).
pub(super) fn decode(
    format: &mut dyn FormatReader,
    track: &Track,
    params: &AudioCodecParameters,
    rate: u32,
    limits: &Limits,
    acc: &mut Accumulator,
) -> Result<(), MediaError> {
    let mut decoder = codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(sym)?;
    let max_frames =
        u128::from(limits.max_duration_ms) * u128::from(rate) / 1000 + u128::from(rate);
    let max_frames = u64::try_from(max_frames).unwrap_or(u64::MAX);
    let mut scratch: Vec<f32> = Vec::new();
    let (mut good, mut failed) = (0u64, 0u64);
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // A chained stream (new track list) or a truncated tail ends the audio we analyze.
            Err(SymError::ResetRequired) => break,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(sym(e)),
        };
        if packet.track_id != track.id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                good += 1;
                let channels = buf.spec().channels().count();
                buf.copy_to_vec_interleaved::<f32>(&mut scratch);
                acc.push(&scratch, channels);
            }
            Err(SymError::DecodeError(_)) | Err(SymError::IoError(_)) => {
                failed += 1;
                acc.push_silence(packet.dur.get());
            }
            Err(e) => return Err(sym(e)),
        }
        if acc.pos > max_frames {
            return Err(MediaError::TooLong);
        }
    }
    // A few damaged packets are tolerated (players conceal them); a stream that is mostly
    // undecodable is not audio.
    if good == 0 || failed > good {
        return Err(bad("the audio packets do not decode"));
    }
    Ok(())
}
