//! Audio and voice notes: codec, sample rate, channels, duration; a 64-value waveform for
//! voice notes from decoded samples.

use std::path::Path;

use super::{Analysis, Limits, MediaError, Sniffed};

pub fn analyze(
    input: &Path,
    sniffed: &Sniffed,
    voice: bool,
    limits: &Limits,
) -> Result<Analysis, MediaError> {
    let _ = (input, sniffed, voice, limits);
    Err(MediaError::Undecodable("audio is not supported yet".into()))
}
