//! Unit tests of the video thumbnail: real H.264 files against ffmpeg's decode, refused
//! profiles and codecs, SPS parsing, and mutated key frames.

use std::io::Cursor;

use super::h264::{Bits, unescape};
use super::*;
use crate::pipeline::mp4;
use crate::pipeline::testing::xorshift;

// ffmpeg (libx264/libx265, testsrc2 96x64, 2 frames, +faststart); h264-frame0.png is
// ffmpeg's own decode of h264-high.mp4's first frame (`-frames:v 1 h264-frame0.png`).
const BASELINE: &[u8] = include_bytes!("../../../tests/media/av/h264-baseline.mp4");
const MAIN: &[u8] = include_bytes!("../../../tests/media/av/h264-main.mp4");
const HIGH: &[u8] = include_bytes!("../../../tests/media/av/h264-high.mp4");
const HIGH10: &[u8] = include_bytes!("../../../tests/media/av/h264-high10.mp4");
const HEVC: &[u8] = include_bytes!("../../../tests/media/av/hevc.mp4");
const PLAIN_3GP: &[u8] = include_bytes!("../../../tests/media/av/plain.3gp");
const FRAME0: &[u8] = include_bytes!("../../../tests/media/av/h264-frame0.png");

fn key_frame(file: &[u8]) -> Result<KeyFrame, Skip> {
    let limits = Limits::default();
    mp4::parse(Cursor::new(file), file.len() as u64, &limits, true)
        .expect("parses")
        .1
}

fn grey(jpeg: &[u8]) -> image::GrayImage {
    image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .expect("a JPEG")
        .into_luma8()
}

/// Mean absolute difference of two grey images of one size.
fn mad(a: &image::GrayImage, b: &image::GrayImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

fn reference() -> image::GrayImage {
    image::load_from_memory_with_format(FRAME0, image::ImageFormat::Png)
        .expect("a PNG")
        .into_luma8()
}

#[test]
fn baseline_main_high_decode_like_ffmpeg() {
    for (name, file) in [("baseline", BASELINE), ("main", MAIN), ("high", HIGH)] {
        let frame = key_frame(file).unwrap_or_else(|s| panic!("{name}: {s:?}"));
        assert_eq!(&frame.codec, b"avc1");
        let t =
            thumbnail(&frame, 0, &Limits::default()).unwrap_or_else(|s| panic!("{name}: {s:?}"));
        let g = grey(&t.jpeg);
        let d = mad(&g, &reference());
        assert!(
            d < 6.0,
            "{name}: mean abs difference {d:.2} from ffmpeg's frame"
        );
        assert!(!t.blurhash.is_empty());
    }
}

#[test]
fn rotation_turns_the_thumbnail() {
    let frame = key_frame(HIGH).unwrap();
    let reference = DynamicImage::ImageLuma8(reference());
    for (rotation, turned) in [
        (90, reference.rotate90()),
        (180, reference.rotate180()),
        (270, reference.rotate270()),
    ] {
        let t = thumbnail(&frame, rotation, &Limits::default()).unwrap();
        let g = grey(&t.jpeg);
        let d = mad(&g, &turned.to_luma8());
        assert!(d < 6.0, "{rotation}: mean abs difference {d:.2}");
        // The bound tells orientations apart: the picture turned the other way is far off.
        let wrong = reference.rotate180().to_luma8();
        if rotation == 180 {
            let wrong = DynamicImage::ImageLuma8(wrong).rotate180().to_luma8();
            assert!(mad(&g, &wrong) > 20.0, "180 vs upright");
        } else {
            let wrong = DynamicImage::ImageLuma8(wrong).rotate90().to_luma8();
            let opposite = if rotation == 90 {
                wrong
            } else {
                turned.rotate180().to_luma8()
            };
            let o = mad(&g, &opposite);
            assert!(o > 20.0, "{rotation}: the opposite turn is only {o:.2} off");
        }
    }
}

#[test]
fn thumbnail_side_is_respected() {
    let frame = key_frame(MAIN).unwrap();
    let limits = Limits {
        thumb_side: 48,
        ..Limits::default()
    };
    let t = thumbnail(&frame, 90, &limits).unwrap();
    assert_eq!(grey(&t.jpeg).dimensions(), (32, 48));
}

#[test]
fn undecodable_profiles_and_codecs_are_skipped_with_a_reason() {
    let frame = key_frame(HIGH10).unwrap();
    assert_eq!(
        thumbnail(&frame, 0, &Limits::default()).unwrap_err(),
        Skip::Profile
    );
    assert_eq!(key_frame(HEVC).unwrap_err(), Skip::Hevc);
    assert_eq!(key_frame(PLAIN_3GP).unwrap_err(), Skip::Codec);
    let tight = Limits {
        max_pixels: 96 * 64 - 1,
        ..Limits::default()
    };
    assert_eq!(
        thumbnail(&key_frame(HIGH).unwrap(), 0, &tight).unwrap_err(),
        Skip::FrameTooLarge
    );
    let strs: Vec<_> = Skip::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        strs,
        [
            "hevc-not-supported",
            "codec-not-supported",
            "profile-not-supported",
            "frame-too-large",
            "no-key-frame",
            "frame-undecodable",
            "decoder-failed"
        ]
    );
}

#[test]
fn sps_of_the_samples() {
    let frame = key_frame(HIGH).unwrap();
    let avc = AvcConfig::parse(&frame.config).unwrap();
    let sps = Sps::parse(avc.sps[0]).unwrap();
    assert_eq!((sps.width, sps.height), (96, 64));
    assert_eq!((sps.coded_width, sps.coded_height), (96, 64));
    assert!(sps.frame_mbs_only);
    let frame = key_frame(HIGH10).unwrap();
    let avc = AvcConfig::parse(&frame.config).unwrap();
    let sps = Sps::parse(avc.sps[0]).unwrap();
    assert_eq!((sps.bit_depth_luma, sps.chroma_format), (10, 1));
}

#[test]
fn corrupt_frames_are_refused_not_crashed() {
    let frame = key_frame(HIGH).unwrap();
    // Truncated samples, flipped bytes in the slice data, and a broken avcC.
    for cut in [0, 5, 40, frame.sample.len() / 2, frame.sample.len() - 1] {
        let mut f = frame.clone();
        f.sample.truncate(cut);
        let _ = thumbnail(&f, 0, &Limits::default());
    }
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..300 {
        let mut f = frame.clone();
        for _ in 0..8 {
            xorshift(&mut x);
            let i = (x as usize) % f.sample.len();
            f.sample[i] = (x >> 40) as u8;
        }
        let _ = thumbnail(&f, 0, &Limits::default());
    }
    let mut f = frame.clone();
    f.config.truncate(7);
    assert_eq!(
        thumbnail(&f, 0, &Limits::default()).unwrap_err(),
        Skip::FrameUndecodable
    );
    fuzz_entry(&[]);
    fuzz_entry(&[3, 1, 2]);
}

#[test]
fn fuzz_seeds_are_decodable_frames() {
    // tests/fuzz/seeds/video_thumb: [1 + avcC length][avcC][first sample] of the fixtures.
    for seed in [
        &include_bytes!("../../../tests/fuzz/seeds/video_thumb/h264-baseline")[..],
        &include_bytes!("../../../tests/fuzz/seeds/video_thumb/h264-high")[..],
    ] {
        let frame = fuzz_frame(seed);
        assert!(thumbnail(&frame, 0, &Limits::default()).is_ok());
    }
}

#[test]
fn bit_reader_codes() {
    // ue: 1 → 0, 010 → 1, 011 → 2, 00100 → 3; se of 2 is -1.
    let mut r = Bits {
        b: &[0b1010_0110, 0b0100_0000],
        pos: 0,
    };
    assert_eq!(
        (r.ue(), r.ue(), r.ue(), r.ue()),
        (Some(0), Some(1), Some(2), Some(3))
    );
    let mut r = Bits {
        b: &[0b0110_0000],
        pos: 0,
    };
    assert_eq!(r.se(), Some(-1));
    // 32 leading zeros: not a 32-bit code.
    let mut r = Bits {
        b: &[0, 0, 0, 0, 0x80],
        pos: 0,
    };
    assert_eq!(r.ue(), None);
    assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3]), [0, 0, 1, 0, 0]);
}
