//! Unit tests of the audio path: durations and waveforms per container, Ogg granule checks,
//! AMR frame walking, and hostile or truncated files refused without a panic.

use std::io::Cursor;
use std::time::{Duration, Instant};

use super::ogg::{
    OPUS_MAX_SAMPLES_PER_BYTE, OggOpus, ogg_page_crc, opus_packet_samples, parse_ogg_page,
};
use super::waveform::WAVEFORM_LEN;
use super::*;
use crate::pipeline::testing::{undecodable, xorshift};

const VOICE: &[u8] = include_bytes!("../../../tests/media/av/voice.opus");
const TONE_OGG: &[u8] = include_bytes!("../../../tests/media/av/tone.ogg");
const TONE_MP3: &[u8] = include_bytes!("../../../tests/media/av/tone.mp3");
const TONE_AAC: &[u8] = include_bytes!("../../../tests/media/av/tone.aac");
const TONE_M4A: &[u8] = include_bytes!("../../../tests/media/av/tone.m4a");
const TONE_FLAC: &[u8] = include_bytes!("../../../tests/media/av/tone.flac");

fn limits() -> Limits {
    Limits::default()
}

/// 16-bit PCM WAV, mono, with `f(t)` giving the amplitude envelope.
fn wav(rate: u32, secs: f64, envelope: impl Fn(f64) -> f64) -> Vec<u8> {
    let n = (f64::from(rate) * secs) as u32;
    let mut data = Vec::with_capacity(n as usize * 2);
    for i in 0..n {
        let t = f64::from(i) / f64::from(rate);
        let s = envelope(t) * (2.0 * std::f64::consts::PI * 440.0 * t).sin();
        data.extend_from_slice(&((s * 32767.0) as i16).to_le_bytes());
    }
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * 2).to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(&data);
    v
}

#[test]
fn wav_sine_duration_and_rate() {
    let w = wav(8000, 1.5, |_| 0.5);
    let a = analyze_bytes(&w, "wav", false, &limits()).unwrap();
    assert_eq!(a.duration_ms, Some(1500));
    assert_eq!(
        a.audio,
        Some(AudioInfo {
            codec: "pcm".into(),
            sample_rate: 8000,
            channels: 1
        })
    );
    assert_eq!(a.waveform, None);
    // Through the file entry point too.
    let mut tmp = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut tmp, &w).unwrap();
    let s = Sniffed {
        name: "wav",
        mime: "audio/wav",
    };
    let input = FileSlice::open(tmp.path()).unwrap();
    assert_eq!(analyze(input, &s, false, &limits()).unwrap(), a);
}

#[test]
fn wav_waveform_follows_the_envelope() {
    // Loud first half, a quarter as loud second half: RMS buckets 100 then 25.
    let w = wav(8000, 2.0, |t| if t < 1.0 { 0.8 } else { 0.2 });
    let a = analyze_bytes(&w, "wav", true, &limits()).unwrap();
    let wf = a.waveform.unwrap();
    assert_eq!(wf.len(), WAVEFORM_LEN);
    assert!(wf[..32].iter().all(|&v| v >= 99), "{wf:?}");
    assert!(wf[32..].iter().all(|&v| (24..=26).contains(&v)), "{wf:?}");
    assert_eq!(a.duration_ms, Some(2000));
}

#[test]
fn silence_is_all_zeros() {
    let w = wav(8000, 1.0, |_| 0.0);
    let wf = analyze_bytes(&w, "wav", true, &limits())
        .unwrap()
        .waveform
        .unwrap();
    assert_eq!(wf, vec![0u8; WAVEFORM_LEN]);
}

#[test]
fn wav_too_long() {
    let w = wav(8000, 1.5, |_| 0.5);
    let l = Limits {
        max_duration_ms: 1000,
        ..limits()
    };
    assert_eq!(
        analyze_bytes(&w, "wav", false, &l),
        Err(MediaError::TooLong)
    );
    assert_eq!(analyze_bytes(&w, "wav", true, &l), Err(MediaError::TooLong));
}

#[test]
fn accumulator_buckets_are_equal_slices() {
    // 640 frames: 10 per bucket; frame value = bucket index + 1.
    let mut a = Accumulator::new(640, 0);
    let samples: Vec<f32> = (0..640).map(|i| (i / 10 + 1) as f32 / 64.0).collect();
    for chunk in samples.chunks(37) {
        a.push(chunk, 1);
    }
    assert_eq!(a.count, [10u64; WAVEFORM_LEN]);
    let wf = a.waveform();
    assert_eq!(wf[63], 100);
    assert_eq!(wf[31], 50);
    assert_eq!(wf[0], 2);
    // Pre-skip drops leading frames; silence keeps time.
    let mut a = Accumulator::new(64, 5);
    a.push(&[1.0; 10], 1);
    a.push_silence(59);
    assert_eq!(a.pos, 64);
    assert_eq!(a.count.iter().sum::<u64>(), 64);
    assert_eq!(a.waveform()[..5], [100, 100, 100, 100, 100]);
    assert_eq!(a.waveform()[5], 0);
    // An absurd duration for an undecodable packet saturates instead of overflowing.
    a.push_silence(u64::MAX);
    assert_eq!(a.pos, u64::MAX);
    // Stereo is mixed to mono: opposite channels cancel.
    let mut a = Accumulator::new(64, 0);
    a.push(&[0.5, -0.5].repeat(64), 2);
    assert_eq!(a.waveform(), vec![0; WAVEFORM_LEN]);
}

#[test]
fn ogg_opus_voice_note() {
    let t = Instant::now();
    let a = analyze_bytes(VOICE, "ogg-opus", true, &limits()).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    // ffprobe: 5.728 s = last granule 274944 / 48 kHz; minus the 312-sample pre-skip the
    // playable length is 5.7215 s (the source WAV was 5.7215 s).
    assert_eq!(a.duration_ms, Some(5721));
    assert_eq!(
        a.audio,
        Some(AudioInfo {
            codec: "opus".into(),
            sample_rate: 48_000,
            channels: 1
        })
    );
    let wf = a.waveform.unwrap();
    assert_eq!(wf.len(), WAVEFORM_LEN);
    assert_eq!(wf.iter().copied().max(), Some(100));
    // Speech has pauses: some buckets are much quieter than the loudest.
    assert!(wf.iter().any(|&v| v < 30), "{wf:?}");
    // Not a voice note: no waveform, same facts.
    let b = analyze_bytes(VOICE, "ogg-opus", false, &limits()).unwrap();
    assert_eq!(
        (b.duration_ms, b.audio, b.waveform),
        (a.duration_ms, a.audio, None)
    );
}

#[test]
fn ogg_opus_scan_facts() {
    let info = ogg_opus_info(&mut Cursor::new(VOICE), VOICE.len() as u64).unwrap();
    assert_eq!(
        info,
        OggOpus {
            serial: info.serial,
            channels: 1,
            pre_skip: 312,
            samples: 274_944 - 312
        }
    );
}

/// Offsets of every page in an Ogg file.
fn pages(f: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut i = 0;
    while let Some(p) = parse_ogg_page(&f[i..]) {
        v.push(i);
        i += p.len;
    }
    assert_eq!(i, f.len());
    v
}

fn set_granule(f: &mut [u8], page_at: usize, gp: u64) {
    f[page_at + 6..page_at + 14].copy_from_slice(&gp.to_le_bytes());
    let len = parse_len(&f[page_at..]);
    let crc = ogg_page_crc(&f[page_at..page_at + len]);
    f[page_at + 22..page_at + 26].copy_from_slice(&crc.to_le_bytes());
}

fn parse_len(b: &[u8]) -> usize {
    let n = usize::from(b[26]);
    27 + n + b[27..27 + n].iter().map(|&l| usize::from(l)).sum::<usize>()
}

#[test]
fn ogg_crc_matches_real_pages() {
    for at in pages(VOICE) {
        let len = parse_len(&VOICE[at..]);
        let stored = u32::from_le_bytes(VOICE[at + 22..at + 26].try_into().unwrap());
        assert_eq!(ogg_page_crc(&VOICE[at..at + len]), stored);
    }
}

#[test]
fn bogus_granules_are_refused_quickly() {
    let p = pages(VOICE);
    let last = *p.last().unwrap();
    let cases: [(usize, u64, &str); 5] = [
        (last, (1u64 << 63) - 1, "implausible"),
        (last, 100_000, "backwards"),
        (last, 1u64 << 63, "negative"),
        // A middle page far ahead of its successors.
        (p[4], 1u64 << 40, "backwards"),
        // Exactly at the limit of plausibility.
        (
            last,
            VOICE.len() as u64 * OPUS_MAX_SAMPLES_PER_BYTE * 2,
            "implausible",
        ),
    ];
    for (at, gp, why) in cases {
        let mut f = VOICE.to_vec();
        set_granule(&mut f, at, gp);
        for voice in [false, true] {
            let t = Instant::now();
            let m = undecodable(analyze_bytes(&f, "ogg-opus", voice, &limits()));
            assert!(m.contains(why), "{gp}: {m}");
            assert!(t.elapsed() < Duration::from_secs(2));
        }
    }
}

#[test]
fn granule_beyond_the_limit_is_too_long() {
    // Plausible for the size but longer than allowed.
    let l = Limits {
        max_duration_ms: 5000,
        ..limits()
    };
    assert_eq!(
        analyze_bytes(VOICE, "ogg-opus", true, &l),
        Err(MediaError::TooLong)
    );
}

#[test]
fn granule_that_overstates_the_audio_is_refused_for_voice() {
    // Last granule claims 60 s in a 5.7 s file: plausible for the size, but decoding shows
    // the lie.
    let mut f = VOICE.to_vec();
    let last = *pages(&f).last().unwrap();
    set_granule(&mut f, last, 60 * 48_000);
    let m = undecodable(analyze_bytes(&f, "ogg-opus", true, &limits()));
    assert!(m.contains("disagree"), "{m}");
    // Without decoding, the (monotonic, plausible) claim is what the container says.
    let a = analyze_bytes(&f, "ogg-opus", false, &limits()).unwrap();
    assert_eq!(a.duration_ms, Some((60 * 48_000 - 312) / 48));
}

/// Re-seal the page at `at` after its bytes were edited.
fn reseal(f: &mut [u8], at: usize) {
    let len = parse_len(&f[at..]);
    let crc = ogg_page_crc(&f[at..at + len]);
    f[at + 22..at + 26].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn stream_starting_after_zero() {
    // RFC 7845 §4.5: a stream may start at a granule position above 0 (e.g. cut from a
    // live stream); the duration counts from the first audio page's start.
    let mut f = VOICE.to_vec();
    for at in pages(VOICE).into_iter().skip(2) {
        let gp = u64::from_le_bytes(f[at + 6..at + 14].try_into().unwrap());
        set_granule(&mut f, at, gp + 1_000_000);
    }
    let a = analyze_bytes(&f, "ogg-opus", true, &limits()).unwrap();
    assert_eq!(a.duration_ms, Some(5721));
    assert_eq!(a.waveform.unwrap().len(), WAVEFORM_LEN);
}

#[test]
fn pre_skip_longer_than_a_packet() {
    // opusenc-style 80 ms pre-skip (3840 samples, four 20 ms packets): all of it is dropped
    // from the waveform's timeline, and the decoded length still matches the granules.
    let mut f = VOICE.to_vec();
    f[28 + 10..28 + 12].copy_from_slice(&3840u16.to_le_bytes());
    reseal(&mut f, 0);
    let info = ogg_opus_info(&mut Cursor::new(&f), f.len() as u64).unwrap();
    assert_eq!((info.pre_skip, info.samples), (3840, 274_944 - 3840));
    let a = analyze_bytes(&f, "ogg-opus", true, &limits()).unwrap();
    assert_eq!(a.duration_ms, Some((274_944 - 3840) / 48));
}

#[test]
fn last_page_without_granule_uses_the_previous_one() {
    let mut f = VOICE.to_vec();
    let p = pages(&f);
    set_granule(&mut f, *p.last().unwrap(), u64::MAX);
    let a = analyze_bytes(&f, "ogg-opus", true, &limits()).unwrap();
    assert_eq!(a.duration_ms, Some((240_000 - 312) / 48));
}

#[test]
fn truncated_and_damaged_ogg() {
    for cut in [0, 10, 47, 137, 500, VOICE.len() / 2, VOICE.len() - 1] {
        let r = analyze_bytes(&VOICE[..cut], "ogg-opus", true, &limits());
        match r {
            Ok(a) => assert!(a.duration_ms.unwrap() < 5721),
            Err(MediaError::Undecodable(_)) => {}
            Err(e) => panic!("cut {cut}: {e:?}"),
        }
    }
    // Flipped bytes in the audio: CRCs fail, pages are skipped; no panic, no hang.
    let mut f = VOICE.to_vec();
    for i in (3000..f.len()).step_by(97) {
        f[i] ^= 0x5A;
    }
    let _ = analyze_bytes(&f, "ogg-opus", true, &limits());
}

#[test]
fn opus_toc_durations() {
    assert_eq!(opus_packet_samples(0x00, None), Some(480)); // SILK NB 10 ms
    assert_eq!(opus_packet_samples(0x08 | 1, None), Some(1920)); // SILK 20 ms × 2
    assert_eq!(opus_packet_samples(0x78, None), Some(960)); // Hybrid FB 20 ms
    assert_eq!(opus_packet_samples(0xF8 | 3, Some(6)), Some(5760)); // CELT 20 ms × 6
    assert_eq!(opus_packet_samples(0xF8 | 3, Some(7)), None); // 140 ms: too long
    assert_eq!(opus_packet_samples(0xF8 | 3, Some(0)), None);
    assert_eq!(opus_packet_samples(0xF8 | 3, None), None);
}

#[test]
fn other_codecs() {
    let cases: [(&[u8], &str, &str, u32, u64); 5] = [
        (TONE_OGG, "ogg-vorbis", "vorbis", 8000, 1000),
        (TONE_MP3, "mp3", "mp3", 22_050, 1071),
        (TONE_AAC, "aac", "aac", 22_050, 1068),
        (TONE_M4A, "m4a", "aac", 22_050, 1000),
        (TONE_FLAC, "flac", "flac", 8000, 1000),
    ];
    for (data, name, codec, rate, ffprobe_ms) in cases {
        let a = analyze_bytes(data, name, false, &limits()).unwrap();
        let info = a.audio.unwrap();
        assert_eq!(
            (info.codec.as_str(), info.sample_rate, info.channels),
            (codec, rate, 1)
        );
        let d = a.duration_ms.unwrap();
        assert!(d.abs_diff(ffprobe_ms) <= 80, "{name}: {d} vs {ffprobe_ms}");
        // Decoding (the voice path) works for every codec too.
        let v = analyze_bytes(data, name, true, &limits()).unwrap();
        assert_eq!(v.waveform.unwrap().len(), WAVEFORM_LEN);
        assert!(v.duration_ms.unwrap().abs_diff(1000) <= 80, "{name}");
    }
}

#[test]
fn m4a_duration_follows_the_edit_list() {
    // ffprobe: 1.000000; symphonia alone counts the 1024 priming frames too.
    let a = analyze_bytes(TONE_M4A, "m4a", false, &limits()).unwrap();
    assert_eq!(a.duration_ms, Some(1000));
}

#[test]
fn vorbis_bogus_granules_are_refused() {
    let last = *pages(TONE_OGG).last().unwrap();
    let cases = [
        ((1u64 << 63) - 1, "implausible"),
        (100, "backwards"),
        (1u64 << 63, "negative"),
    ];
    for (gp, why) in cases {
        let mut f = TONE_OGG.to_vec();
        set_granule(&mut f, last, gp);
        for voice in [false, true] {
            let t = Instant::now();
            let m = undecodable(analyze_bytes(&f, "ogg-vorbis", voice, &limits()));
            assert!(m.contains(why), "{gp}: {m}");
            assert!(t.elapsed() < Duration::from_secs(2));
        }
    }
}

#[test]
fn container_must_hold_the_sniffed_codec() {
    let m = undecodable(analyze_bytes(TONE_OGG, "ogg-opus", false, &limits()));
    assert!(m.contains("Opus"), "{m}");
    let m = undecodable(analyze_bytes(TONE_FLAC, "mp3", false, &limits()));
    assert!(m.contains("holds flac"), "{m}");
}

fn amr(magic: &[u8], frames: &[(u8, usize)]) -> Vec<u8> {
    let mut v = magic.to_vec();
    for &(ft, size) in frames {
        v.push((ft << 3) | 0x04);
        v.extend(std::iter::repeat_n(0x55, size));
    }
    v
}

#[test]
fn amr_nb_and_wb() {
    // 50 frames of 12.2 kbit/s (31 bytes) + 10 NO_DATA = 60 frames = 1.2 s.
    let mut frames = vec![(7u8, 31usize); 50];
    frames.extend([(15, 0); 10]);
    let f = amr(b"#!AMR\n", &frames);
    let a = analyze_bytes(&f, "amr-nb", true, &limits()).unwrap();
    assert_eq!(a.duration_ms, Some(1200));
    assert_eq!(
        a.audio,
        Some(AudioInfo {
            codec: "amr-nb".into(),
            sample_rate: 8000,
            channels: 1
        })
    );
    assert_eq!(a.waveform, None);
    // WB: 23.85 kbit/s frames are 60 bytes; SID 5.
    let f = amr(b"#!AMR-WB\n", &[(8, 60), (9, 5), (14, 0), (8, 60)]);
    let a = analyze_bytes(&f, "amr-wb", false, &limits()).unwrap();
    assert_eq!(a.duration_ms, Some(80));
    assert_eq!(a.audio.unwrap().sample_rate, 16_000);
    // Truncated last frame is not counted.
    let mut f = amr(b"#!AMR\n", &[(7, 31), (7, 31)]);
    f.truncate(f.len() - 3);
    assert_eq!(
        analyze_bytes(&f, "amr-nb", false, &limits())
            .unwrap()
            .duration_ms,
        Some(20)
    );
}

#[test]
fn amr_hostile() {
    assert!(undecodable(analyze_bytes(b"#!AMR\n", "amr-nb", false, &limits())).contains("no AMR"));
    assert!(undecodable(analyze_bytes(b"#!AM", "amr-nb", false, &limits())).contains("truncated"));
    // WB magic sniffed as NB and vice versa.
    assert!(
        undecodable(analyze_bytes(b"#!AMR-WB\n\x3c", "amr-nb", false, &limits()))
            .contains("not a single-channel")
    );
    let f = amr(b"#!AMR\n", &[(7, 31), (12, 0)]);
    assert!(undecodable(analyze_bytes(&f, "amr-nb", false, &limits())).contains("frame type 12"));
    // Longer than allowed: stops counting at the limit.
    let f = amr(b"#!AMR\n", &vec![(15u8, 0usize); 100_000]);
    let l = Limits {
        max_duration_ms: 60_000,
        ..limits()
    };
    assert_eq!(
        analyze_bytes(&f, "amr-nb", false, &l),
        Err(MediaError::TooLong)
    );
}

#[test]
fn garbage_is_refused() {
    for name in [
        "ogg-opus",
        "ogg-vorbis",
        "mp3",
        "aac",
        "m4a",
        "wav",
        "flac",
        "amr-nb",
    ] {
        for data in [&b""[..], b"OggS", b"RIFF\0\0\0\0WAVE", &[0u8; 4096]] {
            match analyze_bytes(data, name, true, &limits()) {
                Err(MediaError::Undecodable(_)) => {}
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}

#[test]
fn fuzz_entry_survives_mutations() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let seeds: [&[u8]; 4] = [VOICE, TONE_OGG, TONE_FLAC, TONE_M4A];
    let t = Instant::now();
    for round in 0..300 {
        let mut f = seeds[round % seeds.len()].to_vec();
        for _ in 0..8 {
            xorshift(&mut x);
            let i = (x as usize) % f.len();
            f[i] = (x >> 40) as u8;
        }
        // Every other Ogg round, re-seal the pages so the content (not the CRC) is tested.
        if round % 2 == 0 && f.starts_with(b"OggS") {
            let mut at = 0;
            while at + 27 <= f.len() && f[at..].starts_with(b"OggS") {
                let n = usize::from(f[at + 26]);
                let Some(lacing) = f.get(at + 27..at + 27 + n) else {
                    break;
                };
                let len = 27 + n + lacing.iter().map(|&l| usize::from(l)).sum::<usize>();
                if at + len > f.len() {
                    break;
                }
                let crc = ogg_page_crc(&f[at..at + len]);
                f[at + 22..at + 26].copy_from_slice(&crc.to_le_bytes());
                at += len;
            }
        }
        fuzz_entry(&f);
    }
    assert!(t.elapsed() < Duration::from_secs(60));
    fuzz_entry(b"");
    fuzz_entry(b"#!AMR-WB\n\xff");
}
