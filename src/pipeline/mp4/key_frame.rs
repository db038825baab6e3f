//! Locating the video track's first key frame for the thumbnail: the decoder configuration
//! (`avcC`) of the first sample entry and the bytes of the first sync sample (`stss`, resolved
//! through `stsc`, `stsz` and `stco`/`co64`), each table read within its box.

use std::io::{Read, Seek};

use super::{KeyFrame, Parser, Track};
use crate::pipeline::video_thumb::Skip;

/// Largest key frame read for the thumbnail. A phone's 4K IDR frame is 1–3 MB; a bigger sample
/// is skipped (`frame-too-large`) rather than read.
const MAX_KEY_FRAME_BYTES: u64 = 16 << 20;

/// Largest decoder configuration (`avcC`) read: SPS and PPS are tens of bytes each.
const MAX_CONFIG_BYTES: u64 = 64 << 10;

/// Most sample-table entries read to locate the key frame (a key frame deep in a huge chunk, or
/// a sync sample behind millions of `stsc` runs, is a file built to waste time).
const MAX_TABLE_ENTRIES: u64 = 1 << 20;

impl<R: Read + Seek> Parser<R> {
    /// The video track's first key frame: its `avcC` and the bytes of its first sync sample.
    /// Every table entry is read within its box; a table that does not lead to a sample inside
    /// the file is `no-key-frame` (fragmented files, whose samples live in `moof`, end here too).
    pub(super) fn key_frame(&mut self, t: &Track) -> Result<KeyFrame, Skip> {
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
