//! Pixel decoding under `image::Limits`, with JPEG "shrink-on-load" when the thumbnail is small.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};

use super::thumbnail::fit;
use super::{Scan, undecodable};
use crate::pipeline::{Limits, MediaError};

pub(super) fn decode(
    data: &[u8],
    scan: &Scan,
    limits: &Limits,
) -> Result<DynamicImage, MediaError> {
    if scan.format == ImageFormat::Jpeg
        && let Some(image) = decode_jpeg_scaled(data, scan, limits)
    {
        return Ok(image);
    }
    decode_full(data, scan.format, limits)
}

/// JPEG "shrink-on-load": jpeg-decoder's scaled IDCT yields 1/2, 1/4 or 1/8 of the size for
/// a fraction of the work. As vipsthumbnail does, leave at least a factor of two for the real
/// resampling filter, so the result is not the blockier look of a pure DCT shrink.
///
/// `None` when jpeg-decoder cannot do it (CMYK, 12-bit, an error or a panic); the caller then
/// decodes at full size with the image crate, which also reports the error if there is one.
pub(super) fn decode_jpeg_scaled(
    data: &[u8],
    scan: &Scan,
    limits: &Limits,
) -> Option<DynamicImage> {
    let (tw, th) = fit(scan.width, scan.height, limits.thumb_side);
    let request = |v: u32| u16::try_from(v.saturating_mul(2)).unwrap_or(u16::MAX);
    let run = || {
        let mut decoder = jpeg_decoder::Decoder::new(data);
        decoder
            .set_max_decoding_buffer_size(usize::try_from(limits.max_alloc).unwrap_or(usize::MAX));
        let (w, h) = decoder.scale(request(tw), request(th)).ok()?;
        let pixels = decoder.decode().ok()?;
        let info = decoder.info()?;
        let (w, h) = (u32::from(w), u32::from(h));
        match info.pixel_format {
            jpeg_decoder::PixelFormat::RGB24 => {
                RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
            }
            jpeg_decoder::PixelFormat::L8 => {
                GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
            }
            _ => None,
        }
    };
    catch_unwind(AssertUnwindSafe(run)).ok().flatten()
}

pub(super) fn decode_full(
    data: &[u8],
    format: ImageFormat,
    limits: &Limits,
) -> Result<DynamicImage, MediaError> {
    let mut reader = image::ImageReader::with_format(Cursor::new(data), format);
    let mut bounds = image::Limits::default();
    bounds.max_image_width = Some(limits.max_dimension);
    bounds.max_image_height = Some(limits.max_dimension);
    bounds.max_alloc = Some(limits.max_alloc);
    reader.limits(bounds);
    match catch_unwind(AssertUnwindSafe(|| reader.decode())) {
        Ok(Ok(image)) => Ok(image),
        Ok(Err(image::ImageError::Limits(_))) => {
            Err(undecodable("the image needs more memory than allowed"))
        }
        Ok(Err(e)) => {
            let mut msg = e.to_string();
            if msg.len() > 160 {
                let cut = (0..=160)
                    .rev()
                    .find(|&i| msg.is_char_boundary(i))
                    .unwrap_or(0);
                msg.truncate(cut);
            }
            Err(undecodable(msg))
        }
        Err(_) => Err(undecodable("the decoder failed on this image")),
    }
}
