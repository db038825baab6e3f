//! The preview: a small upright JPEG and its blurhash, from decoded pixels of any scale (photos
//! here, video key frames through `video_thumb`).

use image::imageops::{self, FilterType};
use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};

use super::undecodable;
use crate::pipeline::MediaError;

/// JPEG quality of the thumbnail: small and good enough for a preview.
const THUMB_QUALITY: u8 = 70;

/// Size that fits in a `side`×`side` box, aspect kept; never larger than the image.
pub(crate) fn fit(width: u32, height: u32, side: u32) -> (u32, u32) {
    let side = side.max(1);
    if width <= side && height <= side {
        return (width, height);
    }
    let (w, h, s) = (u64::from(width), u64::from(height), u64::from(side));
    if w >= h {
        (side, ((h * s + w / 2) / w).max(1) as u32)
    } else {
        (((w * s + h / 2) / h).max(1) as u32, side)
    }
}

/// Opaque RGB: transparent pixels are shown over white (a JPEG thumbnail has no alpha, and
/// dropping alpha would reveal whatever colour hides under transparent areas, often black).
fn flatten(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut rgb = RgbImage::new(w, h);
    for (dst, src) in rgb.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(src[3]);
        for c in 0..3 {
            dst[c] = ((u32::from(src[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    rgb
}

/// JPEG thumbnail and blurhash of a decoded image (any scale), turned upright (EXIF
/// `orientation`). Also makes the video thumbnails.
pub(crate) fn thumbnail(
    image: DynamicImage,
    orientation: u8,
    side: u32,
) -> Result<(Vec<u8>, String), MediaError> {
    let rgb = flatten(image);
    let (w, h) = rgb.dimensions();
    if w == 0 || h == 0 {
        return Err(undecodable("empty image"));
    }
    let (tw, th) = fit(w, h, side);
    let small = if (tw, th) == (w, h) {
        rgb
    } else {
        // Two steps, like libvips' shrink + reduce: an area-averaging shrink to about twice the
        // target (cheap, alias-free), then Lanczos3 for a sharp final size. Lanczos3 alone over
        // a 40× reduction would read hundreds of source pixels per output pixel.
        let src = if w >= tw.saturating_mul(4) && h >= th.saturating_mul(4) {
            imageops::thumbnail(&rgb, tw * 2, th * 2)
        } else {
            rgb
        };
        imageops::resize(&src, tw, th, FilterType::Lanczos3)
    };
    let mut upright = DynamicImage::ImageRgb8(small);
    if let Some(o) = Orientation::from_exif(orientation) {
        upright.apply_orientation(o);
    }
    let upright = upright.into_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, THUMB_QUALITY)
        .encode_image(&upright)
        .map_err(|_| undecodable("cannot encode the thumbnail"))?;
    let (uw, uh) = upright.dimensions();
    let rgba = DynamicImage::ImageRgb8(upright).into_rgba8();
    let hash = blurhash::encode(4, 3, uw, uh, rgba.as_raw())
        .map_err(|_| undecodable("cannot compute the blurhash"))?;
    Ok((jpeg, hash))
}
