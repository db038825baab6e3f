//! Images and stickers: dimension limits before decoding, EXIF orientation, metadata removal,
//! JPEG thumbnail and blurhash.

use std::path::Path;

use super::{Analysis, Limits, MediaError, Sniffed};

pub fn analyze(
    input: &Path,
    output: &Path,
    sniffed: &Sniffed,
    sticker: bool,
    limits: &Limits,
) -> Result<Analysis, MediaError> {
    let _ = (input, output, sniffed, sticker, limits);
    Err(MediaError::Undecodable(
        "images are not supported yet".into(),
    ))
}
