//! The box walker: every box header is checked against its parent before it is used, only a
//! fixed set of container boxes is entered, nesting depth and the number of boxes visited are
//! capped, and leaf payloads are read through a small fixed window (`mdat` is skipped with a
//! seek, never read).

use std::io::{Read, Seek, SeekFrom};

use super::boxes::{Payload, header_duration_ms, parse_stsd, parse_tkhd};
use super::{Parser, Track, bad};
use crate::pipeline::MediaError;

/// Most boxes visited in one file; a real file has a few hundred (a long fragmented one a few
/// tens of thousands), so hitting this means the file is built to waste time.
const MAX_BOXES: u32 = 100_000;

/// Deepest container nesting entered (`moov/trak/mdia/minf/stbl` is 5; `udta` and `edts` add
/// one). Deeper nesting is refused rather than followed.
const MAX_DEPTH: u32 = 8;

/// Most payload bytes read from any one leaf box: enough for `tkhd` v1 (92 bytes) and the head
/// of the first `stsd` entry with its `esds` (about 100 bytes), never a whole box.
const PAYLOAD_WINDOW: usize = 256;

/// Containers the parser enters; everything else is a leaf (read through the window, or
/// skipped).
const CONTAINERS: [&[u8; 4]; 7] = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta",
];

impl<R: Read + Seek> Parser<R> {
    /// Walk the boxes in `[start, end)`.
    pub(super) fn walk(&mut self, start: u64, end: u64, depth: u32) -> Result<(), MediaError> {
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

    pub(super) fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> Result<(), MediaError> {
        self.r
            .seek(SeekFrom::Start(pos))
            .map_err(|e| bad(&format!("seek: {e}")))?;
        self.r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad("truncated file"),
            _ => bad(&format!("read: {e}")),
        })
    }
}
