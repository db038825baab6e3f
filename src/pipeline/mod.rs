//! Seal-for-me media pipeline: what is learned from (and removed from) plaintext media before
//! it is sealed. Everything here runs inside the sandboxed worker process (`worker`, spawned
//! and supervised by `pool`), never in the service process.
//!
//! `analyze` sniffs the type by magic bytes, checks it against the declared kind's allow-list,
//! and hands the file to the parser for its class: `photo` (images and stickers), `audio`
//! (audio and voice notes), `mp4` (video), or nothing (documents).

pub mod audio;
pub mod cage;
pub mod mp4;
mod opus;
pub mod photo;
pub mod pool;
pub mod sniff;
#[cfg(test)]
mod testing;
pub mod video_thumb;
pub mod worker;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::media::MediaKind;
pub use sniff::Sniffed;

/// Bounds for decoders, checked before the expensive work starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest width × height an image may declare (checked from its header, before decoding).
    pub max_pixels: u64,
    /// Largest width or height an image may declare.
    pub max_dimension: u32,
    /// Most bytes a decoder may allocate for one image.
    pub max_alloc: u64,
    /// Longest side of the JPEG thumbnail.
    pub thumb_side: u32,
    /// Longest media duration accepted (audio, voice, video), in milliseconds.
    pub max_duration_ms: u64,
    /// Decode a video key frame for a thumbnail. The pool clears it to redo an analysis whose
    /// decoder killed the worker (see `video_thumb`).
    #[serde(default = "yes")]
    pub video_thumbnail: bool,
}

fn yes() -> bool {
    true
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 50_000_000,
            max_dimension: 16_384,
            max_alloc: 512 << 20,
            thumb_side: 100,
            max_duration_ms: 4 * 3600 * 1000,
            video_thumbnail: true,
        }
    }
}

/// Audio stream facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioInfo {
    /// e.g. "opus", "aac", "mp3", "amr-nb", "vorbis"
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
}

/// Video container facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoInfo {
    /// Major brand of the `ftyp` box, e.g. "isom", "mp42", "3gp4".
    pub brand: String,
    /// Sample entry of the video track, e.g. "avc1", "hvc1".
    pub video_codec: Option<String>,
    /// Sample entry of the first audio track, e.g. "mp4a".
    pub audio_codec: Option<String>,
    /// Clockwise rotation from the video track's matrix: 0, 90, 180 or 270.
    pub rotation: u16,
    /// Whether `moov` precedes `mdat` (playback can start before the download ends).
    pub fast_start: bool,
}

/// What the pipeline learned about one media, and what it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// The sniffed type, e.g. "jpeg", "png", "webp", "gif", "ogg-opus", "mp3", "mp4", "pdf".
    pub sniffed: String,
    pub mime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Voice notes: 64 values, 0–100, like WhatsApp's waveform.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waveform: Option<Vec<u8>>,
    /// A small JPEG (longest side `Limits::thumb_side`).
    #[serde(skip_serializing_if = "Option::is_none", with = "b64_opt", default)]
    pub thumbnail: Option<Vec<u8>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blurhash: Option<String>,
    /// Video without a thumbnail: why (a stable `video_thumb::Skip` value, e.g.
    /// `hevc-not-supported`). The upload itself succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_skipped: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub animated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoInfo>,
    /// Metadata removed from the stored file, e.g. ["exif", "xmp", "gps"]. When non-empty the
    /// cleaned file was written to the output path; when empty the input is stored as is.
    #[serde(default)]
    pub removed: Vec<String>,
}

/// Why a media was refused. Each maps to a stable HTTP error in the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MediaError {
    /// The bytes are a type the declared kind does not allow (415).
    #[error("the file is {sniffed}, which is not an allowed {kind}")]
    NotAllowed { kind: String, sniffed: String },
    /// An image declares more pixels than the limits allow (422), found from its header.
    #[error("{width}x{height} exceeds the image limits")]
    TooManyPixels { width: u64, height: u64 },
    /// Longer than `Limits::max_duration_ms` (422).
    #[error("the media lasts longer than allowed")]
    TooLong,
    /// Truncated, corrupt or hostile input the decoder refused (422).
    #[error("the media could not be decoded: {0}")]
    Undecodable(String),
}

/// Analyze `len` bytes of the open file `input` declared as `kind`; a cleaned copy is written
/// to `output` when metadata was removed (see [`Analysis::removed`]). Files, not paths: in the
/// worker no path can be opened.
pub fn analyze(
    kind: MediaKind,
    input: File,
    len: u64,
    output: File,
    limits: &Limits,
) -> Result<Analysis, MediaError> {
    let mut head = [0u8; 4096];
    let n = read_head(&input, &mut head).map_err(|e| MediaError::Undecodable(e.to_string()))?;
    let sniffed = sniff::sniff(&head[..n]);
    if !sniff::allowed(kind, &sniffed) {
        return Err(MediaError::NotAllowed {
            kind: kind.as_str().to_string(),
            sniffed: sniffed.name.to_string(),
        });
    }
    let input = FileSlice::new(input, len);
    let mut analysis = match kind {
        MediaKind::Image | MediaKind::Sticker => {
            photo::analyze(input, output, &sniffed, kind == MediaKind::Sticker, limits)?
        }
        MediaKind::Voice | MediaKind::Audio => {
            audio::analyze(input, &sniffed, kind == MediaKind::Voice, limits)?
        }
        MediaKind::Video => mp4::analyze(input, limits)?,
        MediaKind::Document => Analysis::default(),
    };
    analysis.sniffed = sniffed.name.to_string();
    analysis.mime = sniffed.mime.to_string();
    Ok(analysis)
}

/// [`analyze`] on paths, for unit tests.
#[cfg(test)]
pub(crate) fn analyze_paths(
    kind: MediaKind,
    input: &std::path::Path,
    output: &std::path::Path,
    limits: &Limits,
) -> Result<Analysis, MediaError> {
    let slice = FileSlice::open(input).map_err(|e| MediaError::Undecodable(e.to_string()))?;
    let out = File::create(output).map_err(|e| MediaError::Undecodable(e.to_string()))?;
    let len = slice.len();
    let file = Arc::try_unwrap(slice.file).map_err(|_| MediaError::Undecodable("shared".into()))?;
    analyze(kind, file, len, out, limits)
}

fn read_head(f: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A reader over the first `len` bytes of a shared open file, with its own position
/// (positioned reads: no `stat`, no shared file offset). Clones read independently, which is
/// how a second pass re-reads the media from its start.
#[derive(Debug, Clone)]
pub struct FileSlice {
    file: Arc<File>,
    len: u64,
    pos: u64,
}

impl FileSlice {
    pub fn new(file: File, len: u64) -> FileSlice {
        FileSlice {
            file: Arc::new(file),
            len,
            pos: 0,
        }
    }

    /// The first `len` bytes of `file`, for callers that still hold a path (tests, the CLI).
    pub fn open(path: &std::path::Path) -> std::io::Result<FileSlice> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(FileSlice::new(file, len))
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A fresh reader at the start.
    pub fn rewound(&self) -> FileSlice {
        FileSlice {
            pos: 0,
            ..self.clone()
        }
    }
}

impl Read for FileSlice {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for FileSlice {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start",
            )),
        }
    }
}

/// Optional bytes as base64 in JSON (thumbnails cross the worker pipe and the API as text).
mod b64_opt {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| STANDARD.decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
