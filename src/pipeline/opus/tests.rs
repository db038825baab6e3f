//! The adapter against libopus, the reference decoder: the same Ogg Opus files decoded by
//! both must agree sample for sample within a small error. libopus is reached through
//! Debian's `ffmpeg -c:a libopus`; without ffmpeg the test is skipped with a message,
//! except under `CI=true`, where `.ci/run` installs it and a skip would hide a regression.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::codecs::registry::RegisterableAudioDecoder;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::default::formats::OggReader;

use super::OpusDecoder;

const VOICE: &[u8] = include_bytes!("../../../tests/media/av/voice.opus");

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn ffmpeg(args: &[&str]) -> Option<Vec<u8>> {
    match Command::new("ffmpeg").args(args).output() {
        Ok(out) if out.status.success() => Some(out.stdout),
        Ok(out) => panic!("ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) if !ci() => {
            eprintln!("SKIPPED opus-vs-libopus: ffmpeg not runnable ({e})");
            None
        }
        Err(e) => panic!("CI: the opus test needs ffmpeg with libopus: {e}"),
    }
}

/// Interleaved samples from our adapter, with the OpusHead pre-skip dropped as the
/// pipeline's accumulator drops it.
fn ours(file: &[u8]) -> (usize, Vec<f32>) {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(file.to_vec())), Default::default());
    let mut reader = OggReader::try_new(mss, FormatOptions::default()).unwrap();
    let track = reader.default_track(TrackType::Audio).unwrap().clone();
    let params = track
        .codec_params
        .as_ref()
        .unwrap()
        .audio()
        .unwrap()
        .clone();
    let head = params.extra_data.clone().unwrap();
    let pre_skip = usize::from(u16::from_le_bytes([head[10], head[11]]));
    let mut dec = OpusDecoder::try_registry_new(&params, &AudioDecoderOptions::default()).unwrap();
    let mut out = Vec::new();
    let mut channels = 0;
    let mut scratch = Vec::new();
    while let Some(packet) = reader.next_packet().unwrap() {
        let buf = dec.decode(&packet).unwrap();
        channels = buf.spec().channels().count();
        buf.copy_to_vec_interleaved::<f32>(&mut scratch);
        out.extend_from_slice(&scratch);
    }
    (
        channels,
        out.split_off((pre_skip * channels).min(out.len())),
    )
}

/// The same file through libopus, as 16-bit PCM at 48 kHz.
fn reference(path: &Path, channels: usize) -> Option<Vec<f32>> {
    let ch = channels.to_string();
    let path = path.to_str().unwrap();
    let pcm = ffmpeg(&[
        "-v", "error", "-c:a", "libopus", "-i", path, "-f", "s16le", "-ar", "48000", "-ac", &ch,
        "-",
    ])?;
    Some(
        pcm.chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0)
            .collect(),
    )
}

/// Signal-to-noise ratio of `ours` against `reference` in dB, over the common length
/// (libopus output is trimmed at the end by the last granule; ours is not).
fn snr_db(ours: &[f32], reference: &[f32]) -> f64 {
    let n = ours.len().min(reference.len());
    assert!(n > 48_000 / 2, "too little audio compared: {n} samples");
    let (mut signal, mut noise) = (0f64, 0f64);
    for (a, b) in ours[..n].iter().zip(&reference[..n]) {
        signal += f64::from(*b) * f64::from(*b);
        noise += f64::from(a - b) * f64::from(a - b);
    }
    10.0 * (signal / noise.max(1e-20)).log10()
}

fn compare(path: &Path, file: &[u8], min_db: f64) {
    let (channels, ours) = ours(file);
    let Some(reference) = reference(path, channels) else {
        return;
    };
    let db = snr_db(&ours, &reference);
    eprintln!(
        "{}: {channels} ch, SNR vs libopus {db:.1} dB",
        path.display()
    );
    assert!(
        db >= min_db,
        "{}: SNR {db:.1} dB < {min_db}",
        path.display()
    );
}

#[test]
fn voice_fixture_matches_libopus() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media/av/voice.opus");
    compare(&path, VOICE, 50.0);
}

/// SILK (narrow-band speech), hybrid and CELT (stereo music) streams made by libopus.
#[test]
fn every_mode_matches_libopus() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 3] = [
        (
            "silk.opus",
            &["-ac", "1", "-application", "voip", "-b:a", "10k"],
        ),
        (
            "hybrid.opus",
            &["-ac", "1", "-application", "voip", "-b:a", "24k"],
        ),
        (
            "celt.opus",
            &["-ac", "2", "-application", "audio", "-b:a", "96k"],
        ),
    ];
    for (name, opts) in cases {
        let out = dir.path().join(name);
        let mut args = vec![
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=3,aeval=val(0)*(0.5+0.5*sin(2*PI*3*t))",
            "-f",
            "lavfi",
            "-i",
            "anoisesrc=d=3:a=0.05",
            "-filter_complex",
            "amix=inputs=2",
            "-c:a",
            "libopus",
        ];
        args.extend_from_slice(opts);
        args.push(out.to_str().unwrap());
        if ffmpeg(&args).is_none() {
            return;
        }
        let file = std::fs::read(&out).unwrap();
        compare(&out, &file, 50.0);
    }
}
