//! MP4/3GP video: a box parser that bounds every size and table before trusting it.
//!
//! Only the facts needed for the message (brand, duration, displayed size, rotation, codecs,
//! fast start) are read. Every box header is checked against its parent before it is used, only
//! a fixed set of container boxes is entered, nesting depth and the number of boxes visited are
//! capped, and payloads are read through a small fixed window (never a whole box: `mdat` is
//! skipped with a seek).
//!
//! For the video thumbnail it also locates the video track's first key frame: the decoder
//! configuration (`avcC`) of the first sample entry and the bytes of the first sync sample
//! (`stss`, resolved through `stsc`, `stsz` and `stco`/`co64`), each table bounded by its box and
//! the sample by [`MAX_KEY_FRAME_BYTES`]. Decoding it is `video_thumb`'s job.

use std::io::{Cursor, Read, Seek, SeekFrom};

use super::video_thumb::{self, Skip};
use super::{Analysis, AudioInfo, Limits, MediaError, VideoInfo};

/// Most boxes visited in one file; a real file has a few hundred (a long fragmented one a few
/// tens of thousands), so hitting this means the file is built to waste time.
pub const MAX_BOXES: u32 = 100_000;

/// Deepest container nesting entered (`moov/trak/mdia/minf/stbl` is 5; `udta` and `edts` add
/// one). Deeper nesting is refused rather than followed.
pub const MAX_DEPTH: u32 = 8;

/// Most payload bytes read from any one leaf box: enough for `tkhd` v1 (92 bytes) and the head
/// of the first `stsd` entry with its `esds` (about 100 bytes), never a whole box.
const PAYLOAD_WINDOW: usize = 256;

/// Largest key frame read for the thumbnail. A phone's 4K IDR frame is 1–3 MB; a bigger sample
/// is skipped (`frame-too-large`) rather than read.
pub const MAX_KEY_FRAME_BYTES: u64 = 16 << 20;

/// Largest decoder configuration (`avcC`) read: SPS and PPS are tens of bytes each.
const MAX_CONFIG_BYTES: u64 = 64 << 10;

/// Most sample-table entries read to locate the key frame (a key frame deep in a huge chunk, or
/// a sync sample behind millions of `stsc` runs, is a file built to waste time).
const MAX_TABLE_ENTRIES: u64 = 1 << 20;

/// The first key frame of the video track, as the decoder needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFrame {
    /// Sample entry code, e.g. `avc1`.
    pub codec: [u8; 4],
    /// The body of the entry's `avcC` box (AVCDecoderConfigurationRecord).
    pub config: Vec<u8>,
    /// The sample: NAL units, each behind a big-endian length (size from `config`).
    pub sample: Vec<u8>,
}

fn bad(msg: &str) -> MediaError {
    MediaError::Undecodable(msg.to_string())
}

/// Analyze the MP4/3GP file `input`.
pub fn analyze(input: super::FileSlice, limits: &Limits) -> Result<Analysis, MediaError> {
    let len = input.len();
    let (mut a, frame) = parse(input, len, limits, limits.video_thumbnail)?;
    // Sent as a video, it must have a video track (an audio-only MP4 is an m4a, and a file
    // whose tracks we could not find tells the recipient nothing it can play).
    if a.video.as_ref().is_none_or(|v| v.video_codec.is_none()) {
        return Err(bad("no video track"));
    }
    if limits.video_thumbnail {
        let rotation = a.video.as_ref().map_or(0, |v| v.rotation);
        // A thumbnail that cannot be made never fails the upload: the reason is reported.
        match frame.and_then(|f| video_thumb::thumbnail(&f, rotation, limits)) {
            Ok(t) => {
                a.thumbnail = Some(t.jpeg);
                a.blurhash = Some(t.blurhash);
            }
            Err(skip) => a.thumbnail_skipped = Some(skip.as_str().to_string()),
        }
    } else {
        a.thumbnail_skipped = Some(Skip::DecoderFailed.as_str().to_string());
    }
    Ok(a)
}

/// Analyze `len` bytes of MP4/3GP from `r` (a file, or bytes in memory for tests and fuzzing).
pub fn analyze_reader<R: Read + Seek>(
    r: R,
    len: u64,
    limits: &Limits,
) -> Result<Analysis, MediaError> {
    parse(r, len, limits, false).map(|(a, _)| a)
}

/// The analysis, and (when `want_frame`) the video track's first key frame or why there is
/// none to decode.
pub fn parse<R: Read + Seek>(
    r: R,
    len: u64,
    limits: &Limits,
    want_frame: bool,
) -> Result<(Analysis, Result<KeyFrame, Skip>), MediaError> {
    let mut p = Parser {
        r,
        len,
        boxes: 0,
        facts: Facts::default(),
        track: None,
    };
    p.walk(0, len, 0)?;
    let frame = match (want_frame, p.facts.video.take()) {
        (true, Some(v)) => {
            let frame = p.key_frame(&v);
            p.facts.video = Some(v);
            frame
        }
        (_, v) => {
            p.facts.video = v;
            Err(Skip::NoKeyFrame)
        }
    };
    let f = p.facts;
    let Some(moov_at) = f.moov_at else {
        return Err(bad("no moov box"));
    };
    // The movie header is authoritative; tracks' media headers are the fallback for files
    // (fragmented ones, some muxers) that leave it at 0 or all-ones ("unknown").
    let duration_ms = f.movie_duration_ms.or(f.track_duration_ms);
    if duration_ms.is_some_and(|d| d > limits.max_duration_ms) {
        return Err(MediaError::TooLong);
    }
    let video = f.video.as_ref();
    let rotation = video.map_or(0, |v| v.rotation);
    let (width, height) = match video.map(|v| (v.width, v.height)) {
        Some((w, h)) if w > 0 && h > 0 => {
            if rotation == 90 || rotation == 270 {
                (Some(h), Some(w))
            } else {
                (Some(w), Some(h))
            }
        }
        _ => (None, None),
    };
    let audio = f.audio.as_ref().map(|a| AudioInfo {
        codec: a.codec.clone().unwrap_or_default(),
        sample_rate: a.sample_rate,
        channels: a.channels,
    });
    let analysis = Analysis {
        width,
        height,
        duration_ms,
        audio,
        video: Some(VideoInfo {
            brand: f.brand.unwrap_or_default(),
            video_codec: video.and_then(|v| v.codec.clone()),
            audio_codec: f.audio.and_then(|a| a.codec),
            rotation,
            fast_start: f.mdat_at.is_none_or(|m| moov_at < m),
        }),
        ..Analysis::default()
    };
    Ok((analysis, frame))
}

/// Run the parser on arbitrary bytes, ignoring the result (for fuzzers: it must return, quickly,
/// without panicking, whatever the bytes).
pub fn fuzz_entry(data: &[u8]) {
    // With the key frame located too: the sample tables are read only on that path.
    let _ = parse(
        Cursor::new(data),
        data.len() as u64,
        &Limits::default(),
        true,
    );
}

/// What one `trak` told us.
#[derive(Debug, Default, Clone)]
struct Track {
    handler: Option<[u8; 4]>,
    codec: Option<String>,
    /// From `tkhd` (16.16 fixed point, integer part), else from the visual sample entry.
    width: u32,
    height: u32,
    rotation: u16,
    sample_rate: u32,
    channels: u16,
    duration_ms: Option<u64>,
    /// Code, file offset and size of the first sample entry (for its `avcC` child).
    entry: Option<([u8; 4], u64, u64)>,
    /// Sample table boxes, as (body start, body end) in the file.
    stss: Option<(u64, u64)>,
    stsz: Option<(u64, u64)>,
    stsc: Option<(u64, u64)>,
    /// `stco` (32-bit offsets) or `co64` (64-bit): (body start, body end, is 64-bit).
    chunk_offsets: Option<(u64, u64, bool)>,
}

#[derive(Debug, Default)]
struct Facts {
    brand: Option<String>,
    moov_at: Option<u64>,
    mdat_at: Option<u64>,
    movie_duration_ms: Option<u64>,
    /// Longest track duration from `mdhd`.
    track_duration_ms: Option<u64>,
    video: Option<Track>,
    audio: Option<Track>,
}

struct Parser<R> {
    r: R,
    /// Length of the file.
    len: u64,
    boxes: u32,
    facts: Facts,
    /// The `trak` being walked, if any.
    track: Option<Track>,
}

/// Containers the parser enters; everything else is a leaf (read through the window, or
/// skipped).
const CONTAINERS: [&[u8; 4]; 7] = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta",
];

impl<R: Read + Seek> Parser<R> {
    /// Walk the boxes in `[start, end)`.
    fn walk(&mut self, start: u64, end: u64, depth: u32) -> Result<(), MediaError> {
        let mut pos = start;
        while pos < end {
            let left = end - pos;
            if left < 8 {
                // A few stray bytes after the last top-level box (some muxers pad) are harmless;
                // inside a container they mean the container lied about its contents.
                if depth == 0 {
                    break;
                }
                return Err(bad("truncated box header"));
            }
            self.boxes += 1;
            if self.boxes > MAX_BOXES {
                return Err(bad("too many boxes"));
            }
            let mut hdr = [0u8; 16];
            self.read_at(pos, &mut hdr[..8])?;
            let size32 = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
            let kind = [hdr[4], hdr[5], hdr[6], hdr[7]];
            let (size, header_len) = match size32 {
                // Size 0: the box runs to the end of its parent (in practice the file).
                0 => (left, 8u64),
                1 => {
                    if left < 16 {
                        return Err(bad("truncated 64-bit box header"));
                    }
                    self.read_at(pos + 8, &mut hdr[8..16])?;
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&hdr[8..16]);
                    (u64::from_be_bytes(b), 16u64)
                }
                n => (u64::from(n), 8u64),
            };
            if size < header_len {
                return Err(bad("box size smaller than its header"));
            }
            if size > left {
                return Err(bad("box overruns its parent"));
            }
            // `size <= left = end - pos`, so this cannot overflow.
            let box_end = pos + size;
            let body = pos + header_len;
            self.visit(kind, pos, body, box_end, depth)?;
            pos = box_end;
        }
        Ok(())
    }

    fn visit(
        &mut self,
        kind: [u8; 4],
        at: u64,
        body: u64,
        end: u64,
        depth: u32,
    ) -> Result<(), MediaError> {
        if CONTAINERS.contains(&&kind) {
            if depth + 1 > MAX_DEPTH {
                return Err(bad("boxes nested too deep"));
            }
            match &kind {
                b"moov" => {
                    // A movie box belongs at the top level; one nested in another box is a
                    // malformed (or hostile) file, not something to skip over quietly.
                    if depth != 0 {
                        return Err(bad("moov nested inside another box"));
                    }
                    // A second top-level movie box is ignored: players use the first.
                    if self.facts.moov_at.is_some() {
                        return Ok(());
                    }
                    self.facts.moov_at = Some(at);
                    return self.walk(body, end, depth + 1);
                }
                b"trak" => {
                    if self.track.is_some() {
                        return Err(bad("trak inside trak"));
                    }
                    self.track = Some(Track::default());
                    let walked = self.walk(body, end, depth + 1);
                    let track = self.track.take().unwrap_or_default();
                    walked?;
                    self.finish_track(track);
                    return Ok(());
                }
                _ => return self.walk(body, end, depth + 1),
            }
        }
        let mut win = [0u8; PAYLOAD_WINDOW];
        let avail = usize::try_from((end - body).min(PAYLOAD_WINDOW as u64)).unwrap_or(0);
        let needs_payload = matches!(
            &kind,
            b"ftyp" | b"mvhd" | b"tkhd" | b"mdhd" | b"hdlr" | b"stsd"
        );
        if !needs_payload {
            if &kind == b"mdat" && self.facts.mdat_at.is_none() && depth == 0 {
                self.facts.mdat_at = Some(at);
            }
            // Sample tables: only where they are is noted; the few entries the key frame needs
            // are read after the walk, and only for the video track.
            if let Some(t) = self.track.as_mut() {
                let span = Some((body, end));
                match &kind {
                    b"stss" if t.stss.is_none() => t.stss = span,
                    b"stsz" if t.stsz.is_none() => t.stsz = span,
                    b"stsc" if t.stsc.is_none() => t.stsc = span,
                    b"stco" if t.chunk_offsets.is_none() => {
                        t.chunk_offsets = Some((body, end, false));
                    }
                    b"co64" if t.chunk_offsets.is_none() => {
                        t.chunk_offsets = Some((body, end, true));
                    }
                    _ => {}
                }
            }
            // Nothing to read: the walk seeks to the next header (mdat is never read).
            return Ok(());
        }
        self.read_at(body, &mut win[..avail])?;
        // Every field read below lies within PAYLOAD_WINDOW, so a field past `avail` means the
        // box itself is too short.
        let p = Payload(&win[..avail]);
        match &kind {
            b"ftyp" if depth == 0 && self.facts.brand.is_none() => {
                let brand = p.fourcc(0).ok_or_else(|| bad("ftyp too short"))?;
                self.facts.brand = Some(brand);
            }
            b"mvhd" if self.facts.movie_duration_ms.is_none() => {
                self.facts.movie_duration_ms = header_duration_ms(&p, "mvhd")?;
            }
            b"mdhd" => {
                let d = header_duration_ms(&p, "mdhd")?;
                if let (Some(d), Some(t)) = (d, self.track.as_mut()) {
                    t.duration_ms = Some(d);
                }
            }
            b"tkhd" => {
                if let Some(t) = self.track.as_mut() {
                    parse_tkhd(&p, t)?;
                }
            }
            b"hdlr" => {
                let h = p.bytes4(8).ok_or_else(|| bad("hdlr too short"))?;
                if let Some(t) = self.track.as_mut() {
                    // The media handler is the one inside mdia; a later hdlr (e.g. in a `meta`
                    // box, which is never entered anyway) must not override it.
                    if t.handler.is_none() {
                        t.handler = Some(h);
                    }
                }
            }
            b"stsd" => {
                if let Some(t) = self.track.as_mut() {
                    parse_stsd(&p, body, end - body, t)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish_track(&mut self, t: Track) {
        if let Some(d) = t.duration_ms {
            let longest = self.facts.track_duration_ms.get_or_insert(d);
            *longest = (*longest).max(d);
        }
        match t.handler.as_ref() {
            Some(b"vide") if self.facts.video.is_none() => self.facts.video = Some(t),
            Some(b"soun") if self.facts.audio.is_none() => self.facts.audio = Some(t),
            _ => {}
        }
    }

    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> Result<(), MediaError> {
        self.r
            .seek(SeekFrom::Start(pos))
            .map_err(|e| bad(&format!("seek: {e}")))?;
        self.r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad("truncated file"),
            _ => bad(&format!("read: {e}")),
        })
    }

    /// The video track's first key frame: its `avcC` and the bytes of its first sync sample.
    /// Every table entry is read within its box; a table that does not lead to a sample inside
    /// the file is `no-key-frame` (fragmented files, whose samples live in `moof`, end here too).
    fn key_frame(&mut self, t: &Track) -> Result<KeyFrame, Skip> {
        let Some((codec, entry_at, entry_size)) = t.entry else {
            return Err(Skip::NoKeyFrame);
        };
        match &codec {
            b"avc1" | b"avc3" => {}
            b"hvc1" | b"hev1" => return Err(Skip::Hevc),
            _ => return Err(Skip::Codec),
        }
        let config = self
            .avcc(entry_at, entry_size)
            .ok_or(Skip::FrameUndecodable)?;
        let n = self.first_sync_sample(t).ok_or(Skip::NoKeyFrame)?;
        let (offset, size) = self.sample_location(t, n).ok_or(Skip::NoKeyFrame)?;
        if size > MAX_KEY_FRAME_BYTES {
            return Err(Skip::FrameTooLarge);
        }
        let mut sample = vec![0u8; usize::try_from(size).map_err(|_| Skip::FrameTooLarge)?];
        self.read_at(offset, &mut sample)
            .map_err(|_| Skip::NoKeyFrame)?;
        Ok(KeyFrame {
            codec,
            config,
            sample,
        })
    }

    /// The body of the `avcC` box among the visual sample entry's children.
    fn avcc(&mut self, entry_at: u64, entry_size: u64) -> Option<Vec<u8>> {
        // SampleEntry (16 bytes) + VisualSampleEntry fields (70 bytes), then child boxes.
        let end = entry_at.checked_add(entry_size)?;
        let mut pos = entry_at + 86;
        for _ in 0..16 {
            if end.checked_sub(pos)? < 8 {
                return None;
            }
            let mut h = [0u8; 8];
            self.read_at(pos, &mut h).ok()?;
            let size = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
            if size < 8 || size > end - pos {
                return None;
            }
            if &h[4..8] == b"avcC" {
                if size - 8 > MAX_CONFIG_BYTES {
                    return None;
                }
                let mut body = vec![0u8; usize::try_from(size - 8).ok()?];
                self.read_at(pos + 8, &mut body).ok()?;
                return Some(body);
            }
            pos += size;
        }
        None
    }

    /// 1-based number of the first sync sample: the first `stss` entry, or sample 1 when the
    /// track has no `stss` (every sample is a sync sample).
    fn first_sync_sample(&mut self, t: &Track) -> Option<u64> {
        let Some((body, end)) = t.stss else {
            return Some(1);
        };
        let mut table = Table::new(body, end);
        let count = table.u32(self, 4)?;
        if count == 0 {
            return None;
        }
        let n = table.u32(self, 8)?;
        (n > 0).then_some(u64::from(n))
    }

    /// File offset and size of sample `n` (1-based), from `stsz`, `stsc` and `stco`/`co64`.
    fn sample_location(&mut self, t: &Track, n: u64) -> Option<(u64, u64)> {
        let (sz_body, sz_end) = t.stsz?;
        let mut stsz = Table::new(sz_body, sz_end);
        let uniform = u64::from(stsz.u32(self, 4)?);
        let count = u64::from(stsz.u32(self, 8)?);
        if n > count {
            return None;
        }
        let mut size_of = |p: &mut Self, k: u64| -> Option<u64> {
            if uniform != 0 {
                Some(uniform)
            } else {
                stsz.u32(p, 12 + 4 * (k - 1)).map(u64::from)
            }
        };
        let size = size_of(self, n)?;

        // stsc: runs of chunks with the same samples-per-chunk; find the chunk holding `n`.
        let (sc_body, sc_end) = t.stsc?;
        let mut stsc = Table::new(sc_body, sc_end);
        let runs = u64::from(stsc.u32(self, 4)?);
        let mut before = 0u64; // samples in the runs already passed
        let mut found = None;
        for i in 0..runs.min(MAX_TABLE_ENTRIES) {
            let first = u64::from(stsc.u32(self, 8 + 12 * i)?);
            let per_chunk = u64::from(stsc.u32(self, 8 + 12 * i + 4)?);
            if first == 0 || per_chunk == 0 {
                return None;
            }
            let in_run = if i + 1 < runs {
                let next = u64::from(stsc.u32(self, 8 + 12 * (i + 1))?);
                next.checked_sub(first)
                    .filter(|&c| c > 0)?
                    .checked_mul(per_chunk)?
            } else {
                u64::MAX
            };
            let idx = n - 1 - before;
            if idx < in_run {
                found = Some((first + idx / per_chunk, idx % per_chunk));
                break;
            }
            before = before.checked_add(in_run)?;
        }
        let (chunk, in_chunk) = found?;
        if in_chunk > MAX_TABLE_ENTRIES {
            return None;
        }

        let (co_body, co_end, wide) = t.chunk_offsets?;
        let mut co = Table::new(co_body, co_end);
        if chunk > u64::from(co.u32(self, 4)?) {
            return None;
        }
        let chunk_at = if wide {
            co.u64(self, 8 + 8 * (chunk - 1))?
        } else {
            u64::from(co.u32(self, 8 + 4 * (chunk - 1))?)
        };
        // The sample follows the chunk's earlier samples.
        let mut offset = chunk_at;
        for k in (n - in_chunk)..n {
            offset = offset.checked_add(size_of(self, k)?)?;
        }
        (offset.checked_add(size)? <= self.len).then_some((offset, size))
    }
}

/// Reads big-endian fields of one table box through a small cached block, never past its end.
struct Table {
    body: u64,
    end: u64,
    block_at: u64,
    block: Vec<u8>,
}

impl Table {
    const BLOCK: u64 = 4096;

    fn new(body: u64, end: u64) -> Table {
        Table {
            body,
            end,
            block_at: 0,
            block: Vec::new(),
        }
    }

    /// `N` bytes at `rel` (from the body start), or `None` past the box.
    fn get<const N: usize, R: Read + Seek>(
        &mut self,
        p: &mut Parser<R>,
        rel: u64,
    ) -> Option<[u8; N]> {
        let at = self.body.checked_add(rel)?;
        if at.checked_add(N as u64)? > self.end {
            return None;
        }
        let cached =
            at >= self.block_at && at + N as u64 <= self.block_at + self.block.len() as u64;
        if !cached {
            let len = (self.end - at).min(Self::BLOCK);
            self.block = vec![0u8; usize::try_from(len).ok()?];
            p.read_at(at, &mut self.block).ok()?;
            self.block_at = at;
        }
        let from = usize::try_from(at - self.block_at).ok()?;
        let mut out = [0u8; N];
        out.copy_from_slice(self.block.get(from..from + N)?);
        Some(out)
    }

    fn u32<R: Read + Seek>(&mut self, p: &mut Parser<R>, rel: u64) -> Option<u32> {
        self.get::<4, R>(p, rel).map(u32::from_be_bytes)
    }

    fn u64<R: Read + Seek>(&mut self, p: &mut Parser<R>, rel: u64) -> Option<u64> {
        self.get::<8, R>(p, rel).map(u64::from_be_bytes)
    }
}

/// The first bytes of a box body; every accessor is bounds-checked.
struct Payload<'a>(&'a [u8]);

impl Payload<'_> {
    fn get<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        let s = self.0.get(at..at.checked_add(N)?)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Some(out)
    }
    fn u8(&self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        self.get::<2>(at).map(u16::from_be_bytes)
    }
    fn u32(&self, at: usize) -> Option<u32> {
        self.get::<4>(at).map(u32::from_be_bytes)
    }
    fn i32(&self, at: usize) -> Option<i32> {
        self.get::<4>(at).map(i32::from_be_bytes)
    }
    fn u64(&self, at: usize) -> Option<u64> {
        self.get::<8>(at).map(u64::from_be_bytes)
    }
    fn bytes4(&self, at: usize) -> Option<[u8; 4]> {
        self.get::<4>(at)
    }
    fn fourcc(&self, at: usize) -> Option<String> {
        self.bytes4(at).map(|b| fourcc(&b))
    }
}

/// A four-character code as text; bytes outside printable ASCII become `?` so hostile codes
/// cannot smuggle control characters into logs or JSON consumers.
fn fourcc(b: &[u8; 4]) -> String {
    b.iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                char::from(c)
            } else {
                '?'
            }
        })
        .collect()
}

/// Duration from `mvhd`/`mdhd` (same layout up to the duration field): `None` when the timescale
/// is 0 or the duration is 0 or all-ones, which both mean "unknown".
fn header_duration_ms(p: &Payload<'_>, name: &str) -> Result<Option<u64>, MediaError> {
    let short = || bad(&format!("{name} too short"));
    let version = p.u8(0).ok_or_else(short)?;
    let (timescale, duration) = match version {
        0 => {
            let d = p.u32(16).ok_or_else(short)?;
            let d = if d == u32::MAX { 0 } else { u64::from(d) };
            (p.u32(12).ok_or_else(short)?, d)
        }
        1 => {
            let d = p.u64(24).ok_or_else(short)?;
            let d = if d == u64::MAX { 0 } else { d };
            (p.u32(20).ok_or_else(short)?, d)
        }
        _ => return Err(bad(&format!("{name} version {version}"))),
    };
    if timescale == 0 || duration == 0 {
        return Ok(None);
    }
    // u128: duration × 1000 does not fit u64 for 64-bit durations.
    let ms = u128::from(duration) * 1000 / u128::from(timescale);
    Ok(Some(u64::try_from(ms).unwrap_or(u64::MAX)))
}

/// Track header: display width/height (16.16) and rotation from the matrix.
fn parse_tkhd(p: &Payload<'_>, t: &mut Track) -> Result<(), MediaError> {
    let short = || bad("tkhd too short");
    let version = p.u8(0).ok_or_else(short)?;
    // Full box header, then times/track id/duration (v0: 20 bytes, v1: 32), reserved (8),
    // layer, alternate group, volume, reserved (2 each).
    let matrix_at = match version {
        0 => 4 + 20 + 16,
        1 => 4 + 32 + 16,
        _ => return Err(bad(&format!("tkhd version {version}"))),
    };
    let a = p.i32(matrix_at).ok_or_else(short)?;
    let b = p.i32(matrix_at + 4).ok_or_else(short)?;
    let w = p.u32(matrix_at + 36).ok_or_else(short)?;
    let h = p.u32(matrix_at + 40).ok_or_else(short)?;
    t.rotation = rotation(a, b);
    t.width = w >> 16;
    t.height = h >> 16;
    Ok(())
}

/// Clockwise display rotation from the first row of the transformation matrix
/// `{a, b, u; c, d, v; x, y, w}`: (a, b) = (1, 0) is upright, (0, 1) is 90°, (−1, 0) is 180°,
/// (0, −1) is 270°. Matrices with scaling or shear snap to the nearest quarter turn.
fn rotation(a: i32, b: i32) -> u16 {
    let (ua, ub) = (a.unsigned_abs(), b.unsigned_abs());
    if ua >= ub {
        if a >= 0 { 0 } else { 180 }
    } else if b > 0 {
        90
    } else {
        270
    }
}

/// Sample rate and channels from an `esds` body (after its full-box header): ES_Descriptor →
/// DecoderConfigDescriptor → DecoderSpecificInfo (an MPEG-4 AudioSpecificConfig, ISO/IEC
/// 14496-3 §1.6.2.1). `None` when anything is missing or not plain AAC.
fn parse_esds(b: &[u8]) -> Option<(u32, u16)> {
    /// A descriptor's tag and length (1–4 bytes, 7 bits each); advances `at` past the header.
    fn descriptor(b: &[u8], at: &mut usize) -> Option<(u8, usize)> {
        let tag = *b.get(*at)?;
        *at += 1;
        let mut len = 0usize;
        for _ in 0..4 {
            let c = *b.get(*at)?;
            *at += 1;
            len = (len << 7) | usize::from(c & 0x7F);
            if c & 0x80 == 0 {
                break;
            }
        }
        Some((tag, len))
    }
    let mut at = 0;
    if descriptor(b, &mut at)?.0 != 3 {
        return None;
    }
    // ES_ID (2), then flags: stream dependence (+2), URL (+1+len), OCR stream (+2).
    let flags = *b.get(at + 2)?;
    at += 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*b.get(at)?);
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    if descriptor(b, &mut at)?.0 != 4 {
        return None;
    }
    // objectTypeIndication: 0x40 MPEG-4 audio, 0x66–0x68 MPEG-2 AAC; others (MP3…) carry no
    // AudioSpecificConfig.
    let object_type = *b.get(at)?;
    if object_type != 0x40 && !(0x66..=0x68).contains(&object_type) {
        return None;
    }
    at += 13;
    if descriptor(b, &mut at)?.0 != 5 {
        return None;
    }
    let asc = b.get(at..)?;
    let bits = |from: usize, n: usize| -> Option<u32> {
        (from..from + n).try_fold(0u32, |v, i| {
            let byte = *asc.get(i / 8)?;
            Some((v << 1) | u32::from((byte >> (7 - i % 8)) & 1))
        })
    };
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    let rate_at = |pos: usize| -> Option<(u32, usize)> {
        match bits(pos, 4)? {
            15 => Some((bits(pos + 4, 24)?, pos + 28)),
            i => Some((*RATES.get(i as usize)?, pos + 4)),
        }
    };
    let object = bits(0, 5)?;
    if object == 31 {
        return None;
    }
    let (mut rate, pos) = rate_at(5)?;
    let channels = match bits(pos, 4)? {
        c @ 1..=6 => c as u16,
        7 => 8,
        _ => return None,
    };
    // HE-AAC (SBR, PS) signalled explicitly: the output rate is the extension rate, and
    // parametric stereo turns a mono core into stereo.
    let mut channels = channels;
    if object == 5 || object == 29 {
        rate = rate_at(pos + 4)?.0;
    }
    if object == 29 && channels == 1 {
        channels = 2;
    }
    (rate > 0).then_some((rate, channels))
}

/// Sample description: the first entry's four-character code, plus audio rate/channels or
/// visual width/height when the entry is a plain ISO one.
fn parse_stsd(
    p: &Payload<'_>,
    body_at: u64,
    body_len: u64,
    t: &mut Track,
) -> Result<(), MediaError> {
    let short = || bad("stsd too short");
    let count = p.u32(4).ok_or_else(short)?;
    // Each entry is at least a size and a type (8 bytes): a count that cannot fit in the box is
    // a lie, refused before anything trusts it.
    if count == 0 || u64::from(count) > body_len.saturating_sub(8) / 8 {
        return Err(bad("stsd entry count does not fit the box"));
    }
    let entry_size = u64::from(p.u32(8).ok_or_else(short)?);
    if entry_size < 16 || entry_size > body_len - 8 {
        return Err(bad("stsd entry size does not fit the box"));
    }
    let codec = p.bytes4(12).ok_or_else(short)?;
    t.codec = Some(fourcc(&codec));
    t.entry = Some((codec, body_at + 8, entry_size));
    // Entry fields, relative to the entry start (offset 8 in the body): size, type, 6 reserved
    // bytes, data reference index (2) = 16 bytes of SampleEntry, then the specific fields.
    let e = 8usize;
    let fits = |end: usize| (end as u64) <= entry_size;
    match t.handler.as_ref() {
        Some(b"soun") => {
            // AudioSampleEntry: version (2), revision (2), vendor (4), channels (2), sample size
            // (2), pre-defined (2), reserved (2), rate (16.16). QuickTime version 2 entries keep
            // the real values elsewhere; those are reported as unknown (0).
            let version = p.u16(e + 16).unwrap_or(u16::MAX);
            if fits(36) && version < 2 {
                t.channels = p.u16(e + 24).unwrap_or(0);
                t.sample_rate = p.u32(e + 32).map_or(0, |r| r >> 16);
            }
            match &codec {
                // Muxers write the ISO template (2 channels) into AMR entries; AMR in 3GP is
                // always mono, 8 kHz (NB) or 16 kHz (WB).
                b"samr" => (t.channels, t.sample_rate) = (1, 8_000),
                b"sawb" => (t.channels, t.sample_rate) = (1, 16_000),
                // For AAC the entry also holds the template; the AudioSpecificConfig in `esds`
                // (the first child box of a version 0 entry) has the real values.
                b"mp4a" if version == 0 => {
                    let child = e + 36;
                    let size = p.u32(child).map_or(0, |s| s as usize);
                    if p.bytes4(child + 4) == Some(*b"esds")
                        && size >= 12
                        && fits(36 + size)
                        && let Some(esds) = p.0.get(child + 12..child + size)
                        && let Some((rate, channels)) = parse_esds(esds)
                    {
                        (t.sample_rate, t.channels) = (rate, channels);
                    }
                }
                _ => {}
            }
        }
        // VisualSampleEntry: pre-defined/reserved (16 bytes), then width and height (2 each).
        // Used only when tkhd gave no size.
        Some(b"vide") if fits(36) && (t.width == 0 || t.height == 0) => {
            t.width = u32::from(p.u16(e + 32).unwrap_or(0));
            t.height = u32::from(p.u16(e + 34).unwrap_or(0));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(body.len() + 8);
        v.extend_from_slice(&u32::try_from(body.len() + 8).unwrap().to_be_bytes());
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    fn ftyp(brand: &[u8; 4]) -> Vec<u8> {
        let mut b = brand.to_vec();
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(b"isomiso2avc1mp41");
        bx(b"ftyp", &b)
    }

    fn mvhd(timescale: u32, duration: u32) -> Vec<u8> {
        let mut b = vec![0u8; 4 + 8];
        b.extend_from_slice(&timescale.to_be_bytes());
        b.extend_from_slice(&duration.to_be_bytes());
        b.resize(100, 0);
        bx(b"mvhd", &b)
    }

    fn mdhd(timescale: u32, duration: u32) -> Vec<u8> {
        let mut b = vec![0u8; 4 + 8];
        b.extend_from_slice(&timescale.to_be_bytes());
        b.extend_from_slice(&duration.to_be_bytes());
        b.extend_from_slice(&[0x55, 0xc4, 0, 0]);
        bx(b"mdhd", &b)
    }

    /// tkhd v0 with the given first matrix rows and a 16.16 size.
    fn tkhd(matrix: [i32; 9], width: u32, height: u32) -> Vec<u8> {
        let mut b = vec![0, 0, 0, 3];
        b.extend_from_slice(&[0u8; 20]);
        b.extend_from_slice(&[0u8; 16]);
        for m in matrix {
            b.extend_from_slice(&m.to_be_bytes());
        }
        b.extend_from_slice(&(width << 16).to_be_bytes());
        b.extend_from_slice(&(height << 16).to_be_bytes());
        assert_eq!(b.len(), 84);
        bx(b"tkhd", &b)
    }

    fn hdlr(h: &[u8; 4]) -> Vec<u8> {
        let mut b = vec![0u8; 8];
        b.extend_from_slice(h);
        b.extend_from_slice(&[0u8; 12]);
        b.extend_from_slice(b"handler\0");
        bx(b"hdlr", &b)
    }

    fn stsd_entry(entry: Vec<u8>) -> Vec<u8> {
        let mut b = vec![0u8; 4];
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&entry);
        bx(b"stsd", &b)
    }

    fn avc1(w: u16, h: u16) -> Vec<u8> {
        let mut b = vec![0u8; 6];
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&[0u8; 16]);
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&[0u8; 50]);
        bx(b"avc1", &b)
    }

    fn mp4a(channels: u16, rate: u32) -> Vec<u8> {
        let mut b = vec![0u8; 6];
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&[0u8; 8]);
        b.extend_from_slice(&channels.to_be_bytes());
        b.extend_from_slice(&16u16.to_be_bytes());
        b.extend_from_slice(&[0u8; 4]);
        b.extend_from_slice(&(rate << 16).to_be_bytes());
        bx(b"mp4a", &b)
    }

    const ROT90: [i32; 9] = [0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x4000_0000];
    const IDENTITY: [i32; 9] = [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000];

    fn video_trak(matrix: [i32; 9]) -> Vec<u8> {
        let stbl = bx(b"stbl", &stsd_entry(avc1(1920, 1080)));
        let minf = bx(b"minf", &stbl);
        let mdia = bx(b"mdia", &cat(&[mdhd(90_000, 450_000), hdlr(b"vide"), minf]));
        bx(b"trak", &cat(&[tkhd(matrix, 1920, 1080), mdia]))
    }

    fn audio_trak() -> Vec<u8> {
        let stbl = bx(b"stbl", &stsd_entry(mp4a(2, 44_100)));
        let minf = bx(b"minf", &stbl);
        let mdia = bx(b"mdia", &cat(&[mdhd(44_100, 220_500), hdlr(b"soun"), minf]));
        bx(b"trak", &cat(&[tkhd(IDENTITY, 0, 0), mdia]))
    }

    fn moov(traks: &[Vec<u8>]) -> Vec<u8> {
        let mut parts = vec![mvhd(1000, 5_000)];
        parts.extend_from_slice(traks);
        bx(b"moov", &cat(&parts))
    }

    fn run(data: &[u8]) -> Result<Analysis, MediaError> {
        analyze_reader(Cursor::new(data), data.len() as u64, &Limits::default())
    }

    fn undecodable(r: Result<Analysis, MediaError>) -> String {
        match r {
            Err(MediaError::Undecodable(m)) => m,
            other => panic!("expected Undecodable, got {other:?}"),
        }
    }

    #[test]
    fn hand_built_mp4_every_field() {
        let file = cat(&[
            ftyp(b"mp42"),
            moov(&[video_trak(ROT90), audio_trak()]),
            bx(b"mdat", &[0u8; 64]),
        ]);
        let a = run(&file).unwrap();
        assert_eq!(a.duration_ms, Some(5_000));
        // 1920x1080 coded, rotated 90° → displayed portrait.
        assert_eq!((a.width, a.height), (Some(1080), Some(1920)));
        assert_eq!(
            a.video,
            Some(VideoInfo {
                brand: "mp42".into(),
                video_codec: Some("avc1".into()),
                audio_codec: Some("mp4a".into()),
                rotation: 90,
                fast_start: true,
            })
        );
        assert_eq!(
            a.audio,
            Some(AudioInfo {
                codec: "mp4a".into(),
                sample_rate: 44_100,
                channels: 2
            })
        );
        assert_eq!(a.thumbnail, None);
    }

    #[test]
    fn file_path_entry_point() {
        let file = cat(&[ftyp(b"isom"), moov(&[video_trak(IDENTITY)])]);
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut tmp, &file).unwrap();
        let input = crate::pipeline::FileSlice::open(tmp.path()).unwrap();
        let a = analyze(input, &Limits::default()).unwrap();
        assert_eq!((a.width, a.height), (Some(1920), Some(1080)));
        let v = a.video.unwrap();
        assert_eq!((v.rotation, v.fast_start, v.audio_codec), (0, true, None));
        assert_eq!(a.audio, None);
    }

    #[test]
    fn moov_after_mdat_is_not_fast_start() {
        let file = cat(&[
            ftyp(b"isom"),
            bx(b"mdat", &[0u8; 64]),
            moov(&[video_trak(IDENTITY)]),
        ]);
        let v = run(&file).unwrap().video.unwrap();
        assert!(!v.fast_start);
    }

    #[test]
    fn rotations_from_matrix() {
        assert_eq!(rotation(0x10000, 0), 0);
        assert_eq!(rotation(0, 0x10000), 90);
        assert_eq!(rotation(-0x10000, 0), 180);
        assert_eq!(rotation(0, -0x10000), 270);
        // Scaled matrices snap to the nearest quarter turn.
        assert_eq!(rotation(0, 0x20000), 90);
        assert_eq!(rotation(i32::MIN, 0), 180);
        let r180 = [-0x10000, 0, 0, 0, -0x10000, 0, 0, 0, 0x4000_0000];
        let file = cat(&[ftyp(b"isom"), moov(&[video_trak(r180)])]);
        let a = run(&file).unwrap();
        assert_eq!(a.video.unwrap().rotation, 180);
        assert_eq!((a.width, a.height), (Some(1920), Some(1080)));
    }

    #[test]
    fn size_zero_runs_to_end_and_largesize_is_read() {
        let mut mdat = vec![0, 0, 0, 0];
        mdat.extend_from_slice(b"mdat");
        mdat.extend_from_slice(&[7u8; 100]);
        let file = cat(&[ftyp(b"isom"), moov(&[video_trak(IDENTITY)]), mdat]);
        assert!(run(&file).unwrap().video.unwrap().fast_start);

        let mut big = 1u32.to_be_bytes().to_vec();
        big.extend_from_slice(b"free");
        big.extend_from_slice(&24u64.to_be_bytes());
        big.extend_from_slice(&[0u8; 8]);
        let file = cat(&[ftyp(b"isom"), big, moov(&[video_trak(IDENTITY)])]);
        assert_eq!(run(&file).unwrap().duration_ms, Some(5_000));
    }

    #[test]
    fn hostile_sizes() {
        // 32-bit size far past the end of the file.
        let mut f = ftyp(b"isom");
        f.extend_from_slice(&0xFFFF_FFFFu32.to_be_bytes());
        f.extend_from_slice(b"mdat");
        assert!(undecodable(run(&f)).contains("overruns"));
        // 64-bit size that overflows pos + size.
        let mut f = ftyp(b"isom");
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(b"mdat");
        f.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(undecodable(run(&f)).contains("overruns"));
        // 64-bit size smaller than its 16-byte header.
        let mut f = ftyp(b"isom");
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(b"free");
        f.extend_from_slice(&8u64.to_be_bytes());
        assert!(undecodable(run(&f)).contains("smaller than its header"));
        // 32-bit sizes 2..7.
        for s in 2u32..8 {
            let mut f = ftyp(b"isom");
            f.extend_from_slice(&s.to_be_bytes());
            f.extend_from_slice(b"free");
            f.extend_from_slice(&[0u8; 8]);
            assert!(undecodable(run(&f)).contains("smaller than its header"));
        }
        // A child that overruns its parent even though the file is long enough.
        let mut inner = 500u32.to_be_bytes().to_vec();
        inner.extend_from_slice(b"trak");
        let file = cat(&[bx(b"moov", &inner), vec![0u8; 600]]);
        assert!(undecodable(run(&file)).contains("overruns"));
    }

    #[test]
    fn depth_bomb_is_refused() {
        // 1000 nested containers: refused at MAX_DEPTH without recursing further.
        let mut b = Vec::new();
        for _ in 0..1000 {
            b = bx(b"udta", &b);
        }
        let file = cat(&[ftyp(b"isom"), bx(b"moov", &b)]);
        assert!(undecodable(run(&file)).contains("nested too deep"));
        // trak inside trak is never legitimate.
        let t = bx(b"trak", &bx(b"trak", &[]));
        let file = cat(&[ftyp(b"isom"), bx(b"moov", &t)]);
        assert!(undecodable(run(&file)).contains("trak inside trak"));
    }

    #[test]
    fn too_many_boxes_ends_quickly() {
        // 200k empty `free` boxes (1.6 MB): refused after MAX_BOXES.
        let mut file = ftyp(b"isom");
        for _ in 0..200_000 {
            file.extend_from_slice(&8u32.to_be_bytes());
            file.extend_from_slice(b"free");
        }
        let t = std::time::Instant::now();
        assert!(undecodable(run(&file)).contains("too many boxes"));
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn stsd_absurd_entry_count() {
        let mut body = vec![0u8; 4];
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        body.extend_from_slice(&avc1(16, 16));
        let stbl = bx(b"stbl", &bx(b"stsd", &body));
        let mdia = bx(b"mdia", &cat(&[hdlr(b"vide"), bx(b"minf", &stbl)]));
        let file = cat(&[ftyp(b"isom"), moov(&[bx(b"trak", &mdia)])]);
        assert!(undecodable(run(&file)).contains("entry count"));
        // An entry that claims more than the box holds.
        let mut body = vec![0u8; 4];
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&0x7000_0000u32.to_be_bytes());
        body.extend_from_slice(b"avc1");
        body.extend_from_slice(&[0u8; 8]);
        let stbl = bx(b"stbl", &bx(b"stsd", &body));
        let mdia = bx(b"mdia", &cat(&[hdlr(b"vide"), bx(b"minf", &stbl)]));
        let file = cat(&[ftyp(b"isom"), moov(&[bx(b"trak", &mdia)])]);
        assert!(undecodable(run(&file)).contains("entry size"));
    }

    #[test]
    fn truncated_files() {
        let file = cat(&[
            ftyp(b"mp42"),
            moov(&[video_trak(ROT90), audio_trak()]),
            bx(b"mdat", &[0u8; 64]),
        ]);
        // Every prefix either parses (when it ends between top-level boxes) or is refused; none
        // panics.
        let whole = file.len();
        for n in 0..whole {
            let r = run(&file[..n]);
            match r {
                Ok(_) | Err(MediaError::Undecodable(_)) => {}
                Err(e) => panic!("prefix {n}: {e:?}"),
            }
        }
        // Cut inside mdat: the box overruns the file.
        assert!(undecodable(run(&file[..whole - 10])).contains("overruns"));
        // Cut inside moov.
        assert!(run(&file[..100]).is_err());
        assert!(undecodable(run(&[])).contains("no moov"));
    }

    #[test]
    fn short_leaf_boxes_are_refused() {
        let file = cat(&[ftyp(b"isom"), bx(b"moov", &bx(b"mvhd", &[0u8; 10]))]);
        assert!(undecodable(run(&file)).contains("mvhd too short"));
        let t = bx(b"trak", &bx(b"tkhd", &[0u8; 30]));
        let file = cat(&[ftyp(b"isom"), bx(b"moov", &t)]);
        assert!(undecodable(run(&file)).contains("tkhd too short"));
        let file = bx(b"ftyp", b"is");
        assert!(undecodable(run(&file)).contains("ftyp too short"));
    }

    #[test]
    fn durations() {
        // 64-bit mvhd duration: v1 layout.
        let mut b = vec![1u8, 0, 0, 0];
        b.extend_from_slice(&[0u8; 16]);
        b.extend_from_slice(&1000u32.to_be_bytes());
        b.extend_from_slice(&u64::MAX.wrapping_sub(1).to_be_bytes());
        b.resize(112, 0);
        let file = cat(&[ftyp(b"isom"), bx(b"moov", &bx(b"mvhd", &b))]);
        assert_eq!(run(&file), Err(MediaError::TooLong));
        // Unknown movie duration falls back to the track's mdhd; timescale 0 is not a division.
        let file = cat(&[
            ftyp(b"isom"),
            bx(b"moov", &cat(&[mvhd(0, 5), video_trak(IDENTITY)])),
        ]);
        assert_eq!(run(&file).unwrap().duration_ms, Some(5_000));
        let file = cat(&[ftyp(b"isom"), bx(b"moov", &mvhd(600, u32::MAX))]);
        assert_eq!(run(&file).unwrap().duration_ms, None);
        // Over the limit.
        let limits = Limits {
            max_duration_ms: 4_999,
            ..Limits::default()
        };
        let file = cat(&[ftyp(b"isom"), moov(&[])]);
        assert_eq!(
            analyze_reader(Cursor::new(&file), file.len() as u64, &limits),
            Err(MediaError::TooLong)
        );
    }

    const ROT90_MP4: &[u8] = include_bytes!("../../tests/media/av/rot90.mp4");
    const PLAIN_3GP: &[u8] = include_bytes!("../../tests/media/av/plain.3gp");
    const TONE_M4A: &[u8] = include_bytes!("../../tests/media/av/tone.m4a");

    #[test]
    fn real_files_match_ffprobe() {
        // rot90.mp4: ffmpeg (libx264 160x120 + AAC mono 22.05 kHz, +faststart), tkhd matrix
        // patched to a 90° turn; ffprobe: rotation=-90 (its sign convention), 1.000 s.
        let a = run(ROT90_MP4).unwrap();
        assert_eq!(a.duration_ms, Some(1000));
        assert_eq!((a.width, a.height), (Some(120), Some(160)));
        assert_eq!(
            a.video,
            Some(VideoInfo {
                brand: "isom".into(),
                video_codec: Some("avc1".into()),
                audio_codec: Some("mp4a".into()),
                rotation: 90,
                fast_start: true,
            })
        );
        assert_eq!(
            a.audio,
            Some(AudioInfo {
                codec: "mp4a".into(),
                sample_rate: 22_050,
                channels: 1
            })
        );
        // plain.3gp: H.263 176x144 + AAC mono 8 kHz, moov at the end.
        let a = run(PLAIN_3GP).unwrap();
        assert_eq!(a.duration_ms, Some(1000));
        assert_eq!((a.width, a.height), (Some(176), Some(144)));
        let v = a.video.unwrap();
        assert_eq!(
            (
                v.brand.as_str(),
                v.video_codec.as_deref(),
                v.rotation,
                v.fast_start
            ),
            ("3gp4", Some("s263"), 0, false)
        );
        assert_eq!(a.audio.unwrap().sample_rate, 8000);
        // An audio-only MP4 (m4a): no video codec, no size.
        let a = run(TONE_M4A).unwrap();
        assert_eq!((a.width, a.height, a.duration_ms), (None, None, Some(1000)));
        let v = a.video.unwrap();
        assert_eq!((v.brand.as_str(), v.video_codec), ("M4A ", None));
        assert_eq!(a.audio.unwrap().channels, 1);
    }

    fn esds(asc: &[u8]) -> Vec<u8> {
        let mut dsi = vec![5u8, asc.len() as u8];
        dsi.extend_from_slice(asc);
        // DecoderConfigDescriptor with a 4-byte (0x80-continued) length, as some muxers write.
        let mut dcd = vec![4u8, 0x80, 0x80, 0x80, (13 + dsi.len()) as u8, 0x40, 0x15];
        dcd.extend_from_slice(&[0u8; 11]);
        dcd.extend_from_slice(&dsi);
        let mut es = vec![3u8, (3 + dcd.len()) as u8, 0, 1, 0];
        es.extend_from_slice(&dcd);
        let mut body = vec![0u8; 4];
        body.extend_from_slice(&es);
        body
    }

    #[test]
    fn esds_audio_specific_config() {
        // AAC-LC (2), 44.1 kHz (4), stereo (2): 00010 0100 0010 000
        assert_eq!(parse_esds(&esds(&[0x12, 0x10])[4..]), Some((44_100, 2)));
        // HE-AAC v2 (29), core 24 kHz (6), mono, extension 48 kHz (3): stereo at 48 kHz.
        // 11101 0110 0001 0011 → E B 0 9 8
        assert_eq!(
            parse_esds(&esds(&[0xEB, 0x09, 0x80])[4..]),
            Some((48_000, 2))
        );
        // Explicit 24-bit rate (index 15): 00010 1111 <24 bits 8000> 0001
        let asc = [0x17, 0x80, 0x0F, 0xA0, 0x08];
        assert_eq!(parse_esds(&esds(&asc)[4..]), Some((8_000, 1)));
        // Truncated or foreign descriptors: nothing, no panic.
        let full = esds(&[0x12, 0x10]);
        for n in 0..full.len() - 4 {
            let _ = parse_esds(&full[4..4 + n]);
        }
        assert_eq!(parse_esds(&[9, 1, 0]), None);
        // Inside a file: the esds overrides the entry's template of 2 channels.
        let mut entry_body = vec![0u8; 6];
        entry_body.extend_from_slice(&1u16.to_be_bytes());
        entry_body.extend_from_slice(&[0u8; 8]);
        entry_body.extend_from_slice(&2u16.to_be_bytes());
        entry_body.extend_from_slice(&16u16.to_be_bytes());
        entry_body.extend_from_slice(&[0u8; 4]);
        entry_body.extend_from_slice(&(44_100u32 << 16).to_be_bytes());
        entry_body.extend_from_slice(&bx(b"esds", &esds(&[0x13, 0x88])));
        let stbl = bx(b"stbl", &stsd_entry(bx(b"mp4a", &entry_body)));
        let mdia = bx(b"mdia", &cat(&[hdlr(b"soun"), bx(b"minf", &stbl)]));
        let file = cat(&[ftyp(b"M4A "), moov(&[bx(b"trak", &mdia)])]);
        // 00010 0111 0001 000: AAC-LC 22.05 kHz mono.
        assert_eq!(
            run(&file).unwrap().audio,
            Some(AudioInfo {
                codec: "mp4a".into(),
                sample_rate: 22_050,
                channels: 1
            })
        );
    }

    #[test]
    fn amr_entries_are_mono() {
        for (code, rate) in [(b"samr", 8000), (b"sawb", 16_000)] {
            let stbl = bx(b"stbl", &stsd_entry(bx(code, &mp4a(2, 8000)[8..])));
            let mdia = bx(b"mdia", &cat(&[hdlr(b"soun"), bx(b"minf", &stbl)]));
            let file = cat(&[ftyp(b"3gp4"), moov(&[bx(b"trak", &mdia)])]);
            let a = run(&file).unwrap();
            assert_eq!(
                a.audio.unwrap(),
                AudioInfo {
                    codec: String::from_utf8_lossy(code).into_owned(),
                    sample_rate: rate,
                    channels: 1
                }
            );
        }
    }

    /// A video track whose tables put the `n`-th sample (`sizes`, one chunk per `per_chunk`
    /// samples) at `chunk_at`; `stss` lists `sync` unless empty.
    fn table_trak(sizes: &[u32], per_chunk: u32, chunks: &[u32], sync: &[u32]) -> Vec<u8> {
        let mut avcc_entry = avc1(64, 48);
        let avcc = bx(b"avcC", &[1, 66, 0, 30, 0xFF, 0xE0, 0]);
        avcc_entry.extend_from_slice(&avcc);
        let len = u32::try_from(avcc_entry.len()).unwrap();
        avcc_entry[..4].copy_from_slice(&len.to_be_bytes());
        let full = |v: &[u32]| {
            let mut b = vec![0u8; 4];
            for x in v {
                b.extend_from_slice(&x.to_be_bytes());
            }
            b
        };
        let mut stsz = vec![0u32, u32::try_from(sizes.len()).unwrap()];
        stsz.extend_from_slice(sizes);
        let mut stco = vec![u32::try_from(chunks.len()).unwrap()];
        stco.extend_from_slice(chunks);
        let mut tables = vec![
            stsd_entry(avcc_entry),
            bx(b"stsz", &full(&stsz)),
            bx(b"stsc", &full(&[1, 1, per_chunk, 1])),
            bx(b"stco", &full(&stco)),
        ];
        if !sync.is_empty() {
            let mut stss = vec![u32::try_from(sync.len()).unwrap()];
            stss.extend_from_slice(sync);
            tables.push(bx(b"stss", &full(&stss)));
        }
        let stbl = bx(b"stbl", &cat(&tables));
        let mdia = bx(
            b"mdia",
            &cat(&[mdhd(90_000, 450_000), hdlr(b"vide"), bx(b"minf", &stbl)]),
        );
        bx(b"trak", &cat(&[tkhd(IDENTITY, 64, 48), mdia]))
    }

    fn frame_of(file: &[u8]) -> Result<KeyFrame, Skip> {
        parse(
            Cursor::new(file),
            file.len() as u64,
            &Limits::default(),
            true,
        )
        .unwrap()
        .1
    }

    #[test]
    fn key_frame_is_located_through_the_tables() {
        // mdat at a known offset: ftyp (32) + mdat header (8) = 40; samples of 3, 4, 5 bytes.
        let mdat = bx(b"mdat", b"aaabbbbccccc");
        let head = cat(&[ftyp(b"isom"), mdat]);
        assert_eq!(head.len(), 52);
        // Two samples per chunk, chunks at 40 and 47; stss says the key frame is sample 3.
        let file = cat(&[
            head.clone(),
            moov(&[table_trak(&[3, 4, 5], 2, &[40, 47], &[3])]),
        ]);
        let f = frame_of(&file).unwrap();
        assert_eq!((f.codec, f.sample.as_slice()), (*b"avc1", &b"ccccc"[..]));
        assert_eq!(f.config, [1, 66, 0, 30, 0xFF, 0xE0, 0]);
        // No stss: every sample is a key frame, so the first one.
        let file = cat(&[head.clone(), moov(&[table_trak(&[3, 4, 5], 3, &[40], &[])])]);
        assert_eq!(frame_of(&file).unwrap().sample, b"aaa");
        // Second sample of a chunk: after the first one.
        let file = cat(&[
            head.clone(),
            moov(&[table_trak(&[3, 4, 5], 3, &[40], &[2])]),
        ]);
        assert_eq!(frame_of(&file).unwrap().sample, b"bbbb");
    }

    #[test]
    fn hostile_tables_give_no_key_frame() {
        let head = cat(&[ftyp(b"isom"), bx(b"mdat", b"aaabbbbccccc")]);
        for (name, trak) in [
            (
                "sync sample past the count",
                table_trak(&[3], 1, &[40], &[9]),
            ),
            ("sync sample 0", table_trak(&[3], 1, &[40], &[0])),
            (
                "chunk offset past the file",
                table_trak(&[3], 1, &[4000], &[]),
            ),
            ("size past the file", table_trak(&[u32::MAX], 1, &[40], &[])),
            (
                "no chunk for the sample",
                table_trak(&[3, 4], 1, &[40], &[2]),
            ),
            ("zero samples per chunk", table_trak(&[3], 0, &[40], &[])),
        ] {
            let file = cat(&[head.clone(), moov(&[trak])]);
            let got = frame_of(&file);
            assert!(
                matches!(got, Err(Skip::NoKeyFrame | Skip::FrameTooLarge)),
                "{name}: {got:?}"
            );
        }
        // The synthetic tracks without tables or avcC.
        let file = cat(&[ftyp(b"isom"), moov(&[video_trak(IDENTITY)])]);
        assert_eq!(frame_of(&file), Err(Skip::FrameUndecodable));
    }

    #[test]
    fn fourcc_is_sanitised() {
        assert_eq!(fourcc(b"av\x001"), "av?1");
        assert_eq!(fourcc(b"s263"), "s263");
    }

    #[test]
    fn fuzz_entry_survives_mutations() {
        let file = cat(&[
            ftyp(b"3gp4"),
            moov(&[video_trak(ROT90), audio_trak()]),
            bx(b"mdat", &[0u8; 16]),
        ]);
        // Deterministic byte flips over the whole file (xorshift).
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..3000 {
            let mut f = file.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % f.len();
                f[i] = (x >> 32) as u8;
            }
            fuzz_entry(&f);
        }
    }
}
