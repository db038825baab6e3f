//! Video thumbnail: the first H.264 key frame, decoded by OpenH264 inside the worker, scaled to
//! `Limits::thumb_side`, turned upright by the track's rotation and encoded like a photo's.
//!
//! OpenH264 is Cisco's C++ decoder, compiled from the `openh264` crate's bundled sources by
//! `cc`. It decodes 8-bit 4:2:0 progressive H.264: Constrained Baseline, Main and High as
//! phones record them. Everything else is refused *before* the decoder sees a byte, from the
//! sequence parameter set parsed here: 10-bit, 4:2:2/4:4:4 and interlaced streams
//! (`profile-not-supported`), frames over `Limits::max_pixels`/`max_dimension`
//! (`frame-too-large`). HEVC and other codecs are not decoded at all. A thumbnail that cannot
//! be made is never an error of the upload: the analysis reports the [`Skip`] reason instead.
//!
//! Bounds: the key frame is at most `mp4::MAX_KEY_FRAME_BYTES`, and the frame size is checked
//! from the SPS. Time is bounded by the cage, not here: the allowlist cage refuses threads (so
//! no in-process watchdog) and a C++ decoder cannot be interrupted, so a decode that runs past
//! the pool's wall-clock deadline or the worker's CPU limit costs the worker, and the pool
//! redoes the analysis without a thumbnail (`decoder-failed`). OpenH264 decodes a 1080p intra
//! frame in a few milliseconds and an 8K one in well under a second, so only hostile input
//! gets there.

use std::panic::{AssertUnwindSafe, catch_unwind};

use image::{DynamicImage, RgbImage};
use openh264::decoder::{Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;

use super::Limits;
use super::mp4::KeyFrame;
use super::photo;

/// Why a video has no thumbnail. The strings are the API's stable `thumbnail_skipped` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// HEVC (`hvc1`/`hev1`): no decoder for it is built in.
    Hevc,
    /// Any other codec than H.264 and HEVC (H.263, MPEG-4 Part 2, AV1, VP9, …).
    Codec,
    /// H.264 the decoder does not handle: more than 8 bits, chroma other than 4:2:0,
    /// interlaced.
    Profile,
    /// The frame is larger than the limits (or the key frame larger than its byte limit).
    FrameTooLarge,
    /// The sample tables lead to no key frame inside the file (fragmented MP4, broken tables).
    NoKeyFrame,
    /// The decoder refused the key frame or its parameter sets (corrupt data).
    FrameUndecodable,
    /// The decoder crashed or overran its deadline; the worker was replaced.
    DecoderFailed,
}

impl Skip {
    /// Every value, for documentation and tests.
    pub const ALL: [Skip; 7] = [
        Skip::Hevc,
        Skip::Codec,
        Skip::Profile,
        Skip::FrameTooLarge,
        Skip::NoKeyFrame,
        Skip::FrameUndecodable,
        Skip::DecoderFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Hevc => "hevc-not-supported",
            Skip::Codec => "codec-not-supported",
            Skip::Profile => "profile-not-supported",
            Skip::FrameTooLarge => "frame-too-large",
            Skip::NoKeyFrame => "no-key-frame",
            Skip::FrameUndecodable => "frame-undecodable",
            Skip::DecoderFailed => "decoder-failed",
        }
    }
}

/// A thumbnail and its blurhash.
#[derive(Debug)]
pub struct Thumb {
    pub jpeg: Vec<u8>,
    pub blurhash: String,
}

/// The thumbnail of `frame`, shown turned `rotation` degrees clockwise.
pub fn thumbnail(frame: &KeyFrame, rotation: u16, limits: &Limits) -> Result<Thumb, Skip> {
    let avc = AvcConfig::parse(&frame.config).ok_or(Skip::FrameUndecodable)?;
    let nals = split_sample(&frame.sample, avc.length_size).ok_or(Skip::FrameUndecodable)?;
    // avc3 streams carry their parameter sets in band; the first SPS seen describes the frame.
    let sps_nal = avc
        .sps
        .iter()
        .copied()
        .chain(nals.iter().copied().filter(|n| nal_type(n) == 7))
        .next()
        .ok_or(Skip::FrameUndecodable)?;
    let sps = Sps::parse(sps_nal).ok_or(Skip::FrameUndecodable)?;
    check(&sps, limits)?;
    if !nals.iter().any(|n| matches!(nal_type(n), 1 | 5)) {
        return Err(Skip::NoKeyFrame);
    }
    let mut annexb = Vec::with_capacity(frame.config.len() + frame.sample.len() + 64);
    for nal in avc.sps.iter().chain(avc.pps.iter()).chain(nals.iter()) {
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend_from_slice(nal);
    }
    let image = decode_guarded(&annexb, limits)?;
    let orientation = match rotation {
        90 => 6,
        180 => 3,
        270 => 8,
        _ => 1,
    };
    let (jpeg, blurhash) = photo::thumbnail(
        DynamicImage::ImageRgb8(image),
        orientation,
        limits.thumb_side,
    )
    .map_err(|_| Skip::FrameUndecodable)?;
    Ok(Thumb { jpeg, blurhash })
}

/// Run the thumbnail path on arbitrary bytes as a key frame (for fuzzers): the first bytes
/// split off as the `avcC`, the rest as the sample. Must return, quickly, without panicking.
pub fn fuzz_entry(data: &[u8]) {
    let frame = fuzz_frame(data);
    // Small frames only, so a fuzzer explores the bitstream rather than allocations.
    let limits = Limits {
        max_pixels: 1 << 20,
        max_dimension: 2048,
        ..Limits::default()
    };
    let _ = thumbnail(&frame, 0, &limits);
}

/// The fuzz input layout: byte 0 is `n`, bytes `1..n` the `avcC` body, the rest the sample.
fn fuzz_frame(data: &[u8]) -> KeyFrame {
    let cut = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    KeyFrame {
        codec: *b"avc1",
        config: data.get(1..cut).unwrap_or_default().to_vec(),
        sample: data.get(cut..).unwrap_or_default().to_vec(),
    }
}

fn check(sps: &Sps, limits: &Limits) -> Result<(), Skip> {
    if sps.chroma_format != 1 || sps.bit_depth_luma != 8 || sps.bit_depth_chroma != 8 {
        return Err(Skip::Profile);
    }
    if !sps.frame_mbs_only {
        return Err(Skip::Profile);
    }
    // The decoder allocates for the coded size (whole macroblocks), so that is what is bounded.
    let (cw, ch) = (sps.coded_width, sps.coded_height);
    if cw.saturating_mul(ch) > limits.max_pixels
        || cw > u64::from(limits.max_dimension)
        || ch > u64::from(limits.max_dimension)
    {
        return Err(Skip::FrameTooLarge);
    }
    if sps.width == 0 || sps.height == 0 {
        return Err(Skip::FrameUndecodable);
    }
    Ok(())
}

/// Decode, with a panic in the bindings (an assertion on a buffer) a refusal of this frame.
fn decode_guarded(annexb: &[u8], limits: &Limits) -> Result<RgbImage, Skip> {
    catch_unwind(AssertUnwindSafe(|| decode(annexb, limits))).unwrap_or(Err(Skip::FrameUndecodable))
}

fn decode(annexb: &[u8], limits: &Limits) -> Result<RgbImage, Skip> {
    let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
    let mut decoder = Decoder::with_api_config(openh264::OpenH264API::from_source(), config)
        .map_err(|_| Skip::DecoderFailed)?;
    let first = decoder
        .decode(annexb)
        .map_err(|_| Skip::FrameUndecodable)?
        .map(|yuv| downscale(&yuv, limits));
    if let Some(image) = first {
        return image;
    }
    // One frame in, so at most one frame waits in the decoder's buffer.
    let frames = decoder
        .flush_remaining()
        .map_err(|_| Skip::FrameUndecodable)?;
    match frames.first() {
        Some(yuv) => downscale(yuv, limits),
        None => Err(Skip::FrameUndecodable),
    }
}

/// Area-average the decoded I420 frame straight to about twice the thumbnail size (never a
/// full-size RGB copy: an 8K frame would be 100 MB), converting BT.601 video range to RGB.
/// The photo path's Lanczos3 then makes the final size.
fn downscale(yuv: &impl YUVSource, limits: &Limits) -> Result<RgbImage, Skip> {
    let (w, h) = yuv.dimensions();
    let (sy, su, sv) = yuv.strides();
    let (y, u, v) = (yuv.y(), yuv.u(), yuv.v());
    if w == 0 || h == 0 || (w as u64).saturating_mul(h as u64) > limits.max_pixels {
        return Err(Skip::FrameTooLarge);
    }
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    // The planes must hold what their strides and the size say.
    let fits = |plane: &[u8], stride: usize, pw: usize, ph: usize| {
        stride >= pw
            && stride
                .checked_mul(ph - 1)
                .and_then(|n| n.checked_add(pw))
                .is_some_and(|n| n <= plane.len())
    };
    if !fits(y, sy, w, h) || !fits(u, su, cw, ch) || !fits(v, sv, cw, ch) {
        return Err(Skip::FrameUndecodable);
    }
    let side = limits.thumb_side.max(1) as usize;
    let (tw, th) = photo::fit(w as u32, h as u32, side as u32);
    let (ow, oh) = ((tw as usize * 2).min(w), (th as usize * 2).min(h));
    let span = |o: usize, out: usize, full: usize| {
        (
            o * full / out,
            ((o + 1) * full / out).max(o * full / out + 1),
        )
    };
    let mut out = RgbImage::new(ow as u32, oh as u32);
    for oy in 0..oh {
        let (y0, y1) = span(oy, oh, h);
        for ox in 0..ow {
            let (x0, x1) = span(ox, ow, w);
            let mut luma = 0u64;
            for row in y0..y1 {
                luma += y[row * sy + x0..row * sy + x1]
                    .iter()
                    .map(|&p| u64::from(p))
                    .sum::<u64>();
            }
            let n = ((y1 - y0) * (x1 - x0)) as u64;
            let (cx0, cx1, cy0, cy1) = (x0 / 2, (x1 - 1) / 2 + 1, y0 / 2, (y1 - 1) / 2 + 1);
            let (mut cb, mut cr) = (0u64, 0u64);
            for row in cy0..cy1 {
                cb += u[row * su + cx0..row * su + cx1]
                    .iter()
                    .map(|&p| u64::from(p))
                    .sum::<u64>();
                cr += v[row * sv + cx0..row * sv + cx1]
                    .iter()
                    .map(|&p| u64::from(p))
                    .sum::<u64>();
            }
            let cn = ((cy1 - cy0) * (cx1 - cx0)) as u64;
            let rgb = bt601(
                luma as f32 / n as f32,
                cb as f32 / cn as f32,
                cr as f32 / cn as f32,
            );
            out.put_pixel(ox as u32, oy as u32, image::Rgb(rgb));
        }
    }
    Ok(out)
}

/// BT.601 video-range YCbCr to RGB (what decoders assume for an untagged stream).
fn bt601(y: f32, cb: f32, cr: f32) -> [u8; 3] {
    let (y, cb, cr) = (1.164_383 * (y - 16.0), cb - 128.0, cr - 128.0);
    let c = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [
        c(y + 1.596_027 * cr),
        c(y - 0.391_762 * cb - 0.812_968 * cr),
        c(y + 2.017_232 * cb),
    ]
}

fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1F)
}

/// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1): NAL length size and the
/// parameter sets.
struct AvcConfig<'a> {
    length_size: usize,
    sps: Vec<&'a [u8]>,
    pps: Vec<&'a [u8]>,
}

impl<'a> AvcConfig<'a> {
    fn parse(b: &'a [u8]) -> Option<AvcConfig<'a>> {
        if *b.first()? != 1 {
            return None;
        }
        let length_size = usize::from(b.get(4)? & 3) + 1;
        if length_size == 3 {
            return None;
        }
        let mut at = 5;
        let n_sps = usize::from(b.get(at)? & 0x1F);
        at += 1;
        let sps = parameter_sets(b, n_sps, &mut at)?;
        let n_pps = usize::from(*b.get(at)?);
        at += 1;
        let pps = parameter_sets(b, n_pps, &mut at)?;
        Some(AvcConfig {
            length_size,
            sps,
            pps,
        })
    }
}

/// `count` parameter sets, each behind a 16-bit length, from `at` on.
fn parameter_sets<'a>(b: &'a [u8], count: usize, at: &mut usize) -> Option<Vec<&'a [u8]>> {
    let mut sets = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(u16::from_be_bytes([*b.get(*at)?, *b.get(*at + 1)?]));
        let nal = b.get(*at + 2..*at + 2 + len)?;
        *at += 2 + len;
        if !nal.is_empty() {
            sets.push(nal);
        }
    }
    Some(sets)
}

/// The NAL units of a length-prefixed sample; `None` if a length overruns it.
fn split_sample(sample: &[u8], length_size: usize) -> Option<Vec<&[u8]>> {
    let mut nals = Vec::new();
    let mut at = 0;
    while at < sample.len() {
        let len = sample
            .get(at..at + length_size)?
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        at += length_size;
        let nal = sample.get(at..at.checked_add(len)?)?;
        at += len;
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    Some(nals)
}

/// What the sequence parameter set says about the picture (ITU-T H.264 §7.3.2.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sps {
    chroma_format: u32,
    bit_depth_luma: u32,
    bit_depth_chroma: u32,
    frame_mbs_only: bool,
    /// Whole macroblocks, before cropping: what the decoder allocates for.
    coded_width: u64,
    coded_height: u64,
    /// After the cropping window: what is shown.
    width: u64,
    height: u64,
}

impl Sps {
    fn parse(nal: &[u8]) -> Option<Sps> {
        if nal_type(nal) != 7 {
            return None;
        }
        let rbsp = unescape(nal.get(1..)?);
        let mut r = Bits { b: &rbsp, pos: 0 };
        let profile_idc = r.u(8)? as u8;
        r.u(16)?; // constraint flags, level
        r.ue()?; // seq_parameter_set_id
        let (mut chroma_format, mut separate_planes) = (1, false);
        let (mut bit_depth_luma, mut bit_depth_chroma) = (8, 8);
        if matches!(
            profile_idc,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            chroma_format = r.ue()?;
            if chroma_format > 3 {
                return None;
            }
            if chroma_format == 3 {
                separate_planes = r.u(1)? == 1;
            }
            bit_depth_luma = r.ue()?.checked_add(8)?;
            bit_depth_chroma = r.ue()?.checked_add(8)?;
            r.u(1)?; // qpprime_y_zero_transform_bypass
            if r.u(1)? == 1 {
                let lists = if chroma_format == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.u(1)? == 1 {
                        r.skip_scaling_list(if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        r.ue()?; // log2_max_frame_num_minus4
        match r.ue()? {
            0 => {
                r.ue()?;
            }
            1 => {
                r.u(1)?;
                r.se()?;
                r.se()?;
                let cycle = r.ue()?;
                if cycle > 255 {
                    return None;
                }
                for _ in 0..cycle {
                    r.se()?;
                }
            }
            2 => {}
            _ => return None,
        }
        r.ue()?; // max_num_ref_frames
        r.u(1)?; // gaps_in_frame_num_value_allowed
        let width_mbs = u64::from(r.ue()?) + 1;
        let height_map_units = u64::from(r.ue()?) + 1;
        let frame_mbs_only = r.u(1)? == 1;
        if !frame_mbs_only {
            r.u(1)?; // mb_adaptive_frame_field
        }
        r.u(1)?; // direct_8x8_inference
        let field_factor = if frame_mbs_only { 1 } else { 2 };
        let coded_width = width_mbs * 16;
        let coded_height = height_map_units * 16 * field_factor;
        let (mut width, mut height) = (coded_width, coded_height);
        if r.u(1)? == 1 {
            let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
            let chroma_array = if separate_planes { 0 } else { chroma_format };
            let (unit_x, unit_y) = match chroma_array {
                0 => (1, field_factor),
                1 => (2, 2 * field_factor),
                2 => (2, field_factor),
                _ => (1, field_factor),
            };
            width = width.checked_sub(unit_x * (u64::from(l) + u64::from(rt)))?;
            height = height.checked_sub(unit_y * (u64::from(t) + u64::from(b)))?;
        }
        Some(Sps {
            chroma_format,
            bit_depth_luma,
            bit_depth_chroma,
            frame_mbs_only,
            coded_width,
            coded_height,
            width,
            height,
        })
    }
}

/// RBSP from a NAL payload: every `00 00 03` loses its emulation-prevention byte.
fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut zeros = 0;
    for &byte in b {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

/// A big-endian bit reader with Exp-Golomb codes; every read is bounds-checked.
struct Bits<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.b.get(self.pos / 8)?;
        let v = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(v))
    }

    fn u(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |v, _| Some((v << 1) | self.bit()?))
    }

    /// ue(v): at most 31 leading zeros (a 32-bit value), more is not H.264.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.u(zeros)?;
        u32::try_from((1u64 << zeros) - 1 + u64::from(rest)).ok()
    }

    fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).ok()
    }

    fn skip_scaling_list(&mut self, size: usize) -> Option<()> {
        let (mut last, mut next) = (8i32, 8i32);
        for _ in 0..size {
            if next != 0 {
                let delta = self.se()?;
                if !(-128..=127).contains(&delta) {
                    return None;
                }
                next = (last + delta + 256).rem_euclid(256);
            }
            if next != 0 {
                last = next;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::pipeline::mp4;

    // ffmpeg (libx264/libx265, testsrc2 96x64, 2 frames, +faststart); h264-frame0.png is
    // ffmpeg's own decode of h264-high.mp4's first frame (`-frames:v 1 h264-frame0.png`).
    const BASELINE: &[u8] = include_bytes!("../../tests/media/av/h264-baseline.mp4");
    const MAIN: &[u8] = include_bytes!("../../tests/media/av/h264-main.mp4");
    const HIGH: &[u8] = include_bytes!("../../tests/media/av/h264-high.mp4");
    const HIGH10: &[u8] = include_bytes!("../../tests/media/av/h264-high10.mp4");
    const HEVC: &[u8] = include_bytes!("../../tests/media/av/hevc.mp4");
    const PLAIN_3GP: &[u8] = include_bytes!("../../tests/media/av/plain.3gp");
    const FRAME0: &[u8] = include_bytes!("../../tests/media/av/h264-frame0.png");

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
            let t = thumbnail(&frame, 0, &Limits::default())
                .unwrap_or_else(|s| panic!("{name}: {s:?}"));
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
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
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
            &include_bytes!("../../tests/fuzz/seeds/video_thumb/h264-baseline")[..],
            &include_bytes!("../../tests/fuzz/seeds/video_thumb/h264-high")[..],
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
}
