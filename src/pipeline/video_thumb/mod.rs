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
//! Bounds: the key frame is at most `mp4::key_frame::MAX_KEY_FRAME_BYTES`, and the frame size is checked
//! from the SPS. Time is bounded by the cage, not here: the allowlist cage refuses threads (so
//! no in-process watchdog) and a C++ decoder cannot be interrupted, so a decode that runs past
//! the pool's wall-clock deadline or the worker's CPU limit costs the worker, and the pool
//! redoes the analysis without a thumbnail (`decoder-failed`). OpenH264 decodes a 1080p intra
//! frame in a few milliseconds and an 8K one in well under a second, so only hostile input
//! gets there.
//!
//! The H.264 structures read before decoding (avcC, SPS, NAL units) are in `h264`.

mod h264;
#[cfg(test)]
mod tests;

use std::panic::{AssertUnwindSafe, catch_unwind};

use image::{DynamicImage, RgbImage};
use openh264::decoder::{Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;

use super::Limits;
use super::mp4::KeyFrame;
use super::photo;
use h264::{AvcConfig, Sps, nal_type, split_sample};

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
