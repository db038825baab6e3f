//! Ogg: the page walker (CRC-checked pages, RFC 3533) and what is read from it without a
//! decoder: Ogg Opus granule positions, bounded (RFC 7845), and the end-granule check applied
//! to Vorbis.

use std::io::{Read, Seek, SeekFrom};

use super::bad;
use crate::pipeline::MediaError;

/// Largest Ogg page: header (27) + 255 lacing values + 255 × 255 body bytes.
const OGG_MAX_PAGE: usize = 27 + 255 + 255 * 255;

/// Bytes read from the end of an Ogg file to find its last pages: two maximal pages plus slack,
/// so the last complete page is in the window even after a truncated one.
const OGG_TAIL_WINDOW: u64 = 3 * 65_536;

/// Head scan bounds (header pages, then the first audio page). Comment headers with cover art
/// can span many pages; past these bounds the stream is assumed to start at granule 0.
const OGG_HEAD_MAX_PAGES: usize = 256;
const OGG_HEAD_MAX_BYTES: u64 = 4 << 20;

/// Most 48 kHz samples one byte of Ogg Opus can carry: a 1-byte code-1 packet holds two 60 ms
/// frames (120 ms = 5760 samples) and costs at least one more byte of lacing. Granule positions
/// claiming more than this per file byte are lies.
pub(super) const OPUS_MAX_SAMPLES_PER_BYTE: u64 = 5_760;

/// Most samples one byte of Ogg Vorbis can carry: a packet yields at most half a long block
/// (4096 samples) and takes at least one byte plus one lacing byte; doubled for slack.
const VORBIS_MAX_SAMPLES_PER_BYTE: u64 = 4_096;

/// What the page scan learned about the Opus stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OggOpus {
    pub(super) serial: u32,
    pub(super) channels: u8,
    pub(super) pre_skip: u16,
    /// Playable samples at 48 kHz: end granule − start granule − pre-skip.
    pub(super) samples: u64,
}

/// Ogg CRC-32: polynomial 0x04C11DB7, no reflection, initial value 0, no final XOR.
/// Hand-written on purpose: `crc32fast` computes only the reflected IEEE CRC (PNG's), and
/// `crc-fast` (in the lock through `object_store`) would need custom parameters for 20 lines.
const OGG_CRC: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04C1_1DB7
            } else {
                r << 1
            };
            k += 1;
        }
        t[i] = r;
        i += 1;
    }
    t
};

/// CRC of a whole page, with the CRC field (bytes 22..26) taken as zero.
pub(super) fn ogg_page_crc(page: &[u8]) -> u32 {
    page.iter().enumerate().fold(0u32, |crc, (i, &b)| {
        let b = if (22..26).contains(&i) { 0 } else { b };
        (crc << 8) ^ OGG_CRC[usize::from((crc >> 24) as u8 ^ b)]
    })
}

pub(super) struct OggPage<'a> {
    flags: u8,
    granule: u64,
    serial: u32,
    lacing: &'a [u8],
    body: &'a [u8],
    /// Total length of the page in bytes.
    pub(super) len: usize,
}

const OGG_CONTINUED: u8 = 0x01;
const OGG_BOS: u8 = 0x02;
const OGG_EOS: u8 = 0x04;

/// Parse the page at the start of `b`, if a whole valid one (version 0, CRC) is there.
pub(super) fn parse_ogg_page(b: &[u8]) -> Option<OggPage<'_>> {
    let h = b.get(..27)?;
    if &h[..4] != b"OggS" || h[4] != 0 {
        return None;
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&h[6..14]);
    let serial = u32::from_le_bytes([h[14], h[15], h[16], h[17]]);
    let crc = u32::from_le_bytes([h[22], h[23], h[24], h[25]]);
    let nseg = usize::from(h[26]);
    let lacing = b.get(27..27 + nseg)?;
    let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
    let len = 27 + nseg + body_len;
    let page = b.get(..len)?;
    if ogg_page_crc(page) != crc {
        return None;
    }
    Some(OggPage {
        flags: h[5],
        granule: u64::from_le_bytes(g),
        serial,
        lacing,
        body: &page[27 + nseg..],
        len,
    })
}

/// Read the page at the reader's position into `buf`; `Ok(None)` at a clean end of file.
fn read_ogg_page<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<Option<()>, MediaError> {
    buf.clear();
    buf.resize(27, 0);
    let mut got = 0;
    while got < 27 {
        match r.read(&mut buf[got..27]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(bad("truncated Ogg page")),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(bad(format!("read: {e}"))),
        }
    }
    if &buf[..4] != b"OggS" {
        return Err(bad("not an Ogg page"));
    }
    let nseg = usize::from(buf[26]);
    buf.resize(27 + nseg, 0);
    r.read_exact(&mut buf[27..])
        .map_err(|_| bad("truncated Ogg page"))?;
    let body: usize = buf[27..].iter().map(|&l| usize::from(l)).sum();
    let start = buf.len();
    buf.resize(start + body, 0);
    r.read_exact(&mut buf[start..])
        .map_err(|_| bad("truncated Ogg page"))?;
    Ok(Some(()))
}

/// Samples (48 kHz) in an Opus packet, from its TOC byte and, for code 3, its frame-count byte
/// (RFC 6716 §3.1–3.2). `None` for malformed packets.
pub(super) fn opus_packet_samples(toc: u8, second: Option<u8>) -> Option<u64> {
    let config = toc >> 3;
    let frame: u64 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(second? & 0x3F),
    };
    let n = frame * frames;
    (frames > 0 && n <= 5_760).then_some(n)
}

/// Scan an Ogg Opus file: the header pages and first audio page from the start, the last pages
/// from a tail window. Reads at most `OGG_HEAD_MAX_BYTES + OGG_TAIL_WINDOW` bytes.
pub(super) fn ogg_opus_info<R: Read + Seek>(r: &mut R, len: u64) -> Result<OggOpus, MediaError> {
    let mut head: Option<(u32, u8, u16)> = None;
    let mut buf = Vec::with_capacity(OGG_MAX_PAGE);
    // Packets of the Opus stream completed so far (0: OpusHead, 1: OpusTags, 2..: audio).
    let mut completed = 0u64;
    // First two bytes of the packet in progress (it may span pages), whether one is open, and
    // whether its start was never seen (its duration is then unknown).
    let mut first_bytes: Vec<u8> = Vec::with_capacity(2);
    let mut in_packet = false;
    let mut orphan = false;
    let mut start: Option<(u64, u64)> = None; // (start granule, first audio page granule)
    let mut read = 0u64;
    for _ in 0..OGG_HEAD_MAX_PAGES {
        if read > OGG_HEAD_MAX_BYTES || read_ogg_page(r, &mut buf)?.is_none() {
            break;
        }
        read += buf.len() as u64;
        let page = parse_ogg_page(&buf).ok_or_else(|| bad("corrupt Ogg page"))?;
        let Some((serial, _, _)) = head else {
            if page.flags & OGG_BOS == 0 {
                return Err(bad("no Opus header"));
            }
            if page.body.starts_with(b"OpusHead") {
                let (channels, pre_skip) = parse_opus_head(page.body)?;
                head = Some((page.serial, channels, pre_skip));
                completed = 1;
            }
            continue;
        };
        if page.serial != serial {
            continue;
        }
        if page.flags & OGG_CONTINUED != 0 {
            if !in_packet {
                // Continues a packet whose start was never seen.
                in_packet = true;
                orphan = true;
            }
        } else if in_packet {
            // The previous packet never finished: it is lost, as a demuxer would drop it.
            in_packet = false;
            orphan = false;
            first_bytes.clear();
        }
        let mut offset = 0usize;
        let mut audio_samples = 0u64;
        let mut audio_on_page = false;
        for &l in page.lacing {
            let seg = page
                .body
                .get(offset..offset + usize::from(l))
                .unwrap_or(&[]);
            offset += usize::from(l);
            in_packet = true;
            if !orphan {
                let want = 2usize.saturating_sub(first_bytes.len());
                first_bytes.extend(seg.iter().take(want));
            }
            if l < 255 {
                if completed >= 2 {
                    audio_on_page = true;
                    if !orphan {
                        audio_samples += first_bytes
                            .first()
                            .and_then(|&t| opus_packet_samples(t, first_bytes.get(1).copied()))
                            .unwrap_or(0);
                    }
                }
                completed += 1;
                in_packet = false;
                orphan = false;
                first_bytes.clear();
            }
        }
        if audio_on_page {
            let gp = page.granule;
            if gp == u64::MAX {
                return Err(bad("audio page without a granule position"));
            }
            let s = if gp >= audio_samples {
                gp - audio_samples
            } else if page.flags & OGG_EOS != 0 {
                // RFC 7845 §4.5: only a stream that ends on its first audio page may trim from
                // the end this way; it starts at 0.
                0
            } else {
                return Err(bad("first granule position is smaller than its audio"));
            };
            start = Some((s, gp));
            break;
        }
    }
    let (serial, channels, pre_skip) = head.ok_or_else(|| bad("no Opus header"))?;

    let end = ogg_last_granule(r, len, serial)?;
    let (start, first_audio) = start.unwrap_or((0, 0));
    if end < first_audio {
        return Err(bad("granule positions go backwards"));
    }
    let samples = end
        .checked_sub(start)
        .and_then(|s| s.checked_sub(u64::from(pre_skip)))
        .filter(|&s| s > 0)
        .ok_or_else(|| bad("no audio after the pre-skip"))?;
    if samples / OPUS_MAX_SAMPLES_PER_BYTE > len {
        return Err(bad("granule position implausible for the file size"));
    }
    Ok(OggOpus {
        serial,
        channels,
        pre_skip,
        samples,
    })
}

/// The granule position of the last page of stream `serial` that has one, from every valid
/// page in a fixed-size tail window (the whole file when it is small). Granules that go
/// backwards or are negative (other than −1, "no packet ends here") are refused.
pub(super) fn ogg_last_granule<R: Read + Seek>(
    r: &mut R,
    len: u64,
    serial: u32,
) -> Result<u64, MediaError> {
    let window = len.min(OGG_TAIL_WINDOW);
    r.seek(SeekFrom::Start(len - window))
        .map_err(|e| bad(format!("seek: {e}")))?;
    let mut tail = vec![0u8; usize::try_from(window).unwrap_or(0)];
    r.read_exact(&mut tail)
        .map_err(|e| bad(format!("read: {e}")))?;
    let mut last: Option<u64> = None;
    let mut i = 0usize;
    let mut end_of_pages = 0usize;
    while i + 27 <= tail.len() {
        let Some(page) = (tail[i..].starts_with(b"OggS"))
            .then(|| parse_ogg_page(&tail[i..]))
            .flatten()
        else {
            i += 1;
            continue;
        };
        i += page.len;
        end_of_pages = i;
        if page.serial != serial || page.granule == u64::MAX {
            continue;
        }
        if page.granule > i64::MAX as u64 {
            return Err(bad("negative granule position"));
        }
        if last.is_some_and(|l| page.granule < l) {
            return Err(bad("granule positions go backwards"));
        }
        last = Some(page.granule);
    }
    // A file that does not end with a complete page was cut (or carries trailing data): the
    // sender would deliver less than it recorded, so it is refused rather than stored.
    if end_of_pages != tail.len() {
        return Err(bad("the Ogg stream ends inside a page (truncated)"));
    }
    last.ok_or_else(|| bad("no final Ogg page"))
}

/// Ogg streams other than Opus (Vorbis): symphonia reports their length, but the end granule is
/// checked first the same way, so a forged one is refused rather than believed.
pub(super) fn ogg_check_granules<R: Read + Seek>(r: &mut R, len: u64) -> Result<(), MediaError> {
    let mut buf = Vec::with_capacity(OGG_MAX_PAGE);
    read_ogg_page(r, &mut buf)?.ok_or_else(|| bad("empty Ogg file"))?;
    let first = parse_ogg_page(&buf).ok_or_else(|| bad("corrupt Ogg page"))?;
    let end = ogg_last_granule(r, len, first.serial)?;
    if end / VORBIS_MAX_SAMPLES_PER_BYTE > len {
        return Err(bad("granule position implausible for the file size"));
    }
    Ok(())
}

/// `OpusHead` (RFC 7845 §5.1): channel count and pre-skip.
fn parse_opus_head(b: &[u8]) -> Result<(u8, u16), MediaError> {
    if b.len() < 19 {
        return Err(bad("OpusHead too short"));
    }
    // Major version (upper nibble) 0 is the only one defined; others are incompatible.
    if b[8] >> 4 != 0 {
        return Err(bad("unsupported Opus mapping version"));
    }
    let channels = b[9];
    if channels == 0 {
        return Err(bad("Opus stream without channels"));
    }
    Ok((channels, u16::from_le_bytes([b[10], b[11]])))
}
