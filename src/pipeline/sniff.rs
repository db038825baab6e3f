//! Media type by magic bytes (never by name or Content-Type), and the allow-list per kind.
//!
//! Only the first bytes of a file are looked at (`analyze` passes up to 4 KiB), so a type is
//! recognised by its leading signature. A polyglot is therefore whatever its first bytes say:
//! a PDF renamed `.jpg` is "pdf" (and refused as an image), while a JPEG with a ZIP appended
//! is "jpeg" — the photo parser then drops everything after the JPEG's EOI. Weak signatures
//! (MPEG audio and ADTS frame syncs, BMP) are checked field by field and, where the head holds
//! it, against the next frame header, so random binary rarely passes for audio.

use crate::media::MediaKind;

/// A sniffed type: a short stable name and its MIME type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    pub name: &'static str,
    pub mime: &'static str,
}

const fn s(name: &'static str, mime: &'static str) -> Sniffed {
    Sniffed { name, mime }
}

pub const UNKNOWN: Sniffed = s("unknown", "application/octet-stream");
pub const JPEG: Sniffed = s("jpeg", "image/jpeg");
pub const PNG: Sniffed = s("png", "image/png");
pub const GIF: Sniffed = s("gif", "image/gif");
pub const WEBP: Sniffed = s("webp", "image/webp");
pub const WEBP_ANIMATED: Sniffed = s("webp-animated", "image/webp");
pub const HEIC: Sniffed = s("heic", "image/heic");
pub const HEIF: Sniffed = s("heif", "image/heif");
pub const AVIF: Sniffed = s("avif", "image/avif");
pub const BMP: Sniffed = s("bmp", "image/bmp");
pub const TIFF: Sniffed = s("tiff", "image/tiff");
/// WhatsApp labels voice notes with the codec parameter; the rest of the world accepts it too.
pub const OGG_OPUS: Sniffed = s("ogg-opus", "audio/ogg; codecs=opus");
pub const OGG_VORBIS: Sniffed = s("ogg-vorbis", "audio/ogg");
pub const OGG_FLAC: Sniffed = s("ogg-flac", "audio/ogg");
pub const OGG_SPEEX: Sniffed = s("ogg-speex", "audio/ogg");
pub const OGG_THEORA: Sniffed = s("ogg-theora", "video/ogg");
pub const OGG: Sniffed = s("ogg", "application/ogg");
pub const MP3: Sniffed = s("mp3", "audio/mpeg");
/// MPEG-1/2 audio layers I and II: same family as mp3, but no decoder for them here.
pub const MP2: Sniffed = s("mp2", "audio/mpeg");
pub const AAC: Sniffed = s("aac", "audio/aac");
pub const M4A: Sniffed = s("m4a", "audio/mp4");
pub const AMR_NB: Sniffed = s("amr-nb", "audio/amr");
pub const AMR_WB: Sniffed = s("amr-wb", "audio/amr-wb");
pub const WAV: Sniffed = s("wav", "audio/wav");
pub const FLAC: Sniffed = s("flac", "audio/flac");
pub const MP4: Sniffed = s("mp4", "video/mp4");
pub const GPP: Sniffed = s("3gp", "video/3gpp");
pub const GPP2: Sniffed = s("3gp", "video/3gpp2");
pub const MOV: Sniffed = s("mov", "video/quicktime");
pub const WEBM: Sniffed = s("webm", "video/webm");
pub const MKV: Sniffed = s("mkv", "video/x-matroska");
pub const AVI: Sniffed = s("avi", "video/x-msvideo");
pub const PDF: Sniffed = s("pdf", "application/pdf");
/// Also docx/xlsx/pptx/odt/epub/apk: all ZIP containers, told apart only by their content.
pub const ZIP: Sniffed = s("zip", "application/zip");
pub const GZIP: Sniffed = s("gzip", "application/gzip");
pub const SEVEN_Z: Sniffed = s("7z", "application/x-7z-compressed");
pub const RAR: Sniffed = s("rar", "application/vnd.rar");
pub const XZ: Sniffed = s("xz", "application/x-xz");
pub const BZIP2: Sniffed = s("bzip2", "application/x-bzip2");
/// OLE2 compound file: legacy .doc/.xls/.ppt/.msg.
pub const OLE: Sniffed = s("ole", "application/x-ole-storage");
pub const RTF: Sniffed = s("rtf", "application/rtf");
pub const POSTSCRIPT: Sniffed = s("postscript", "application/postscript");

/// Identify `head` (the first bytes of a file, up to 4 KiB).
pub fn sniff(head: &[u8]) -> Sniffed {
    let h = head;
    if h.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return JPEG;
    }
    if h.starts_with(b"\x89PNG\r\n\x1a\n") {
        return PNG;
    }
    if h.starts_with(b"GIF87a") || h.starts_with(b"GIF89a") {
        return GIF;
    }
    if h.len() >= 12 && (h.starts_with(b"RIFF") || h.starts_with(b"RF64")) {
        match &h[8..12] {
            b"WEBP" if h.starts_with(b"RIFF") => return webp(h),
            b"WAVE" => return WAV,
            b"AVI " if h.starts_with(b"RIFF") => return AVI,
            _ => {}
        }
    }
    if h.len() >= 12 && &h[4..8] == b"ftyp" {
        return ftyp(h);
    }
    if h.starts_with(b"OggS") {
        return ogg(h);
    }
    if h.starts_with(b"#!AMR\n") {
        return AMR_NB;
    }
    if h.starts_with(b"#!AMR-WB\n") {
        return AMR_WB;
    }
    if h.starts_with(b"fLaC") {
        return FLAC;
    }
    if let Some(found) = id3(h) {
        return found;
    }
    if h.starts_with(b"%PDF-") {
        return PDF;
    }
    if h.starts_with(b"PK\x03\x04") || h.starts_with(b"PK\x05\x06") || h.starts_with(b"PK\x07\x08")
    {
        return ZIP;
    }
    if h.starts_with(&[0x1F, 0x8B, 0x08]) {
        return GZIP;
    }
    if h.starts_with(&[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C]) {
        return SEVEN_Z;
    }
    if h.starts_with(b"Rar!\x1a\x07") {
        return RAR;
    }
    if h.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) {
        return XZ;
    }
    if h.len() >= 10
        && h.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&h[3])
        && &h[4..10] == b"1AY&SY"
    {
        return BZIP2;
    }
    if h.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return OLE;
    }
    if h.starts_with(b"{\\rtf") {
        return RTF;
    }
    if h.starts_with(b"%!PS") {
        return POSTSCRIPT;
    }
    if h.starts_with(b"II*\0") || h.starts_with(b"MM\0*") {
        return TIFF;
    }
    if h.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        // EBML: the DocType string sits in the first few dozen bytes of the header.
        let window = &h[..h.len().min(64)];
        return if window.windows(4).any(|w| w == b"webm") {
            WEBM
        } else {
            MKV
        };
    }
    if is_bmp(h) {
        return BMP;
    }
    // Bare frame syncs last: they are the weakest signatures.
    if adts_frame_len(h).is_some() && next_frame_ok(h, adts_frame_len) {
        return AAC;
    }
    if let Some((_, layer)) = mpeg_audio_frame(h)
        && next_frame_ok(h, |f| mpeg_audio_frame(f).map(|(l, _)| l))
    {
        return if layer == 3 { MP3 } else { MP2 };
    }
    UNKNOWN
}

/// Whether a file of this type may be sent as `kind`.
///
/// Images are what the image crate here decodes (HEIC/AVIF are recognised but refused: no
/// safe decoder is built in); stickers are WebP as WhatsApp defines them; voice notes are
/// Ogg Opus as WhatsApp records them; video is MP4/3GP (an `M4A ` brand is audio, not video);
/// documents may be anything.
pub fn allowed(kind: MediaKind, s: &Sniffed) -> bool {
    let name = s.name;
    match kind {
        MediaKind::Image => matches!(name, "jpeg" | "png" | "webp" | "gif"),
        MediaKind::Sticker => matches!(name, "webp" | "webp-animated"),
        MediaKind::Voice => name == "ogg-opus",
        MediaKind::Audio => matches!(
            name,
            "aac"
                | "m4a"
                | "mp3"
                | "amr-nb"
                | "amr-wb"
                | "ogg-opus"
                | "ogg-vorbis"
                | "wav"
                | "flac"
        ),
        MediaKind::Video => matches!(name, "mp4" | "3gp"),
        MediaKind::Document => true,
    }
}

/// Fuzz target body: sniffing and the allow-list must accept any bytes without panicking.
pub fn fuzz_entry(data: &[u8]) {
    let head = &data[..data.len().min(4096)];
    let sniffed = sniff(head);
    for kind in MediaKind::ALL {
        let _ = allowed(kind, &sniffed);
    }
}

/// RIFF/WEBP: animated when the VP8X header sets the animation flag or an ANIM/ANMF chunk
/// shows up among the chunks the head holds.
fn webp(h: &[u8]) -> Sniffed {
    // VP8X payload starts at 20; its first byte holds the feature flags (0x02 = animation).
    if h.len() > 20 && &h[12..16] == b"VP8X" && h[20] & 0x02 != 0 {
        return WEBP_ANIMATED;
    }
    let mut pos = 12usize;
    while let Some(chunk) = h.get(pos..pos + 8) {
        let fourcc = &chunk[..4];
        if fourcc == b"ANIM" || fourcc == b"ANMF" {
            return WEBP_ANIMATED;
        }
        let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]) as usize;
        pos = match pos
            .checked_add(8)
            .and_then(|p| p.checked_add(size))
            .and_then(|p| p.checked_add(size & 1))
        {
            Some(p) => p,
            None => break,
        };
    }
    WEBP
}

/// ISO base media file (`ftyp` box first): the major brand decides, compatible brands break
/// ties (a `mif1` HEIF file lists `heic` or `avif` there) or stand in for an unknown major.
fn ftyp(h: &[u8]) -> Sniffed {
    let major: &[u8] = &h[8..12];
    let box_len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let end = box_len.clamp(16, h.len().max(16)).min(h.len());
    let compat: Vec<&[u8]> = if end > 16 {
        h[16..end].chunks_exact(4).collect()
    } else {
        Vec::new()
    };
    if matches!(major, b"mif1" | b"msf1" | b"mif2" | b"miaf") {
        // Generic HEIF structural brands: the codec brand is among the compatible ones.
        for b in &compat {
            match brand(b) {
                Some(found) if found == AVIF || found == HEIC => return found,
                _ => {}
            }
        }
        return HEIF;
    }
    if let Some(found) = brand(major) {
        return found;
    }
    compat.iter().find_map(|b| brand(b)).unwrap_or(UNKNOWN)
}

fn brand(b: &[u8]) -> Option<Sniffed> {
    Some(match b {
        b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" | b"hevm" | b"hevs" => HEIC,
        b"avif" | b"avis" => AVIF,
        b"mif1" | b"msf1" | b"mif2" => HEIF,
        b"M4A " | b"M4B " | b"M4P " => M4A,
        b"qt  " => MOV,
        b"isom" | b"iso2" | b"iso3" | b"iso4" | b"iso5" | b"iso6" | b"iso7" | b"iso8" | b"iso9"
        | b"mp41" | b"mp42" | b"mp71" | b"avc1" | b"dash" | b"M4V " | b"M4VH" | b"M4VP"
        | b"mmp4" | b"MSNV" | b"NDAS" | b"f4v " | b"F4V " | b"XAVC" => MP4,
        _ if b.starts_with(b"3g2") => GPP2,
        _ if b.starts_with(b"3gp")
            || b.starts_with(b"3ge")
            || b.starts_with(b"3gg")
            || b.starts_with(b"3gr")
            || b.starts_with(b"3gs") =>
        {
            GPP
        }
        _ => return None,
    })
}

/// Ogg: the first page must be a beginning-of-stream page; its first packet names the codec.
fn ogg(h: &[u8]) -> Sniffed {
    // Page header: "OggS", version 0, header type (0x02 = BOS), …, segment count at 26.
    // Four letters alone are too little to call a file Ogg.
    if h.len() < 27 {
        return UNKNOWN;
    }
    if h[4] != 0 || h[5] & 0x02 == 0 {
        return OGG;
    }
    let start = 27 + usize::from(h[26]);
    let Some(p) = h.get(start..) else {
        return OGG;
    };
    if p.len() >= 10 && p.starts_with(b"OpusHead") {
        // RFC 7845: major version 0 (values 0–15 are compatible), at least one channel.
        return if p[8] & 0xF0 == 0 && p[9] >= 1 {
            OGG_OPUS
        } else {
            OGG
        };
    }
    if p.starts_with(b"\x01vorbis") {
        return OGG_VORBIS;
    }
    if p.starts_with(b"\x7fFLAC") {
        return OGG_FLAC;
    }
    if p.starts_with(b"Speex   ") {
        return OGG_SPEEX;
    }
    if p.starts_with(b"\x80theora") {
        return OGG_THEORA;
    }
    OGG
}

/// An ID3v2 tag usually precedes MP3, sometimes ADTS AAC or FLAC: look past it when the head
/// holds what follows, and otherwise call it MP3 (by far the common case).
fn id3(h: &[u8]) -> Option<Sniffed> {
    if h.len() < 10 || !h.starts_with(b"ID3") || !(2..=4).contains(&h[3]) || h[4] == 0xFF {
        return None;
    }
    // The size is "syncsafe": 4 × 7 bits, so every byte must have its top bit clear.
    if h[6..10].iter().any(|&b| b & 0x80 != 0) {
        return None;
    }
    let size = h[6..10]
        .iter()
        .fold(0usize, |acc, &b| (acc << 7) | usize::from(b));
    let footer = if h[5] & 0x10 != 0 { 10 } else { 0 };
    let after = 10 + size + footer;
    if let Some(rest) = h.get(after..) {
        if rest.starts_with(b"fLaC") {
            return Some(FLAC);
        }
        if adts_frame_len(rest).is_some() {
            return Some(AAC);
        }
    }
    Some(MP3)
}

/// ADTS header (AAC): 12-bit sync, layer 0, a defined sampling rate and a frame length that
/// at least covers the header. Returns the frame length.
fn adts_frame_len(h: &[u8]) -> Option<usize> {
    if h.len() < 7 || h[0] != 0xFF || h[1] & 0xF6 != 0xF0 {
        return None;
    }
    let sf_index = (h[2] >> 2) & 0x0F;
    if sf_index > 12 {
        return None;
    }
    let len = (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
    let header = if h[1] & 0x01 == 0 { 9 } else { 7 };
    (len >= header).then_some(len)
}

/// MPEG-1/2/2.5 audio frame header with every field in range. Returns the frame length and
/// the layer (1, 2 or 3). Free-format bitrate is refused: its length cannot be known.
fn mpeg_audio_frame(h: &[u8]) -> Option<(usize, u8)> {
    if h.len() < 4 || h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
        return None;
    }
    let version = (h[1] >> 3) & 0x03; // 0 = 2.5, 1 = reserved, 2 = MPEG-2, 3 = MPEG-1
    let layer = match (h[1] >> 1) & 0x03 {
        1 => 3u8,
        2 => 2,
        3 => 1,
        _ => return None,
    };
    let bitrate_index = usize::from(h[2] >> 4);
    let rate_index = usize::from((h[2] >> 2) & 0x03);
    let padding = usize::from((h[2] >> 1) & 0x01);
    if version == 1 || bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
        return None;
    }
    if h[3] & 0x03 == 2 {
        return None; // reserved emphasis
    }
    const V1_L1: [u32; 14] = [
        32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
    ];
    const V1_L2: [u32; 14] = [
        32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
    ];
    const V1_L3: [u32; 14] = [
        32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ];
    const V2_L1: [u32; 14] = [
        32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
    ];
    const V2_L23: [u32; 14] = [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    const RATES: [[u32; 3]; 3] = [
        [11025, 12000, 8000],
        [22050, 24000, 16000],
        [44100, 48000, 32000],
    ];
    let mpeg1 = version == 3;
    let table = match (mpeg1, layer) {
        (true, 1) => &V1_L1,
        (true, 2) => &V1_L2,
        (true, _) => &V1_L3,
        (false, 1) => &V2_L1,
        (false, _) => &V2_L23,
    };
    let kbps = table[bitrate_index - 1];
    let rate = RATES[match version {
        0 => 0,
        2 => 1,
        _ => 2,
    }][rate_index];
    let bps = kbps * 1000;
    let len = match layer {
        1 => ((12 * bps / rate) as usize + padding) * 4,
        3 if !mpeg1 => (72 * bps / rate) as usize + padding,
        _ => (144 * bps / rate) as usize + padding,
    };
    Some((len, layer))
}

/// When the head reaches the next frame, it must start with a valid header too.
fn next_frame_ok(h: &[u8], frame_len: impl Fn(&[u8]) -> Option<usize>) -> bool {
    let Some(len) = frame_len(h) else {
        return false;
    };
    match h.get(len..) {
        Some(next) if next.len() >= 7 => frame_len(next).is_some(),
        // The head (or the whole file) ends before the next header: one header is all we get.
        _ => true,
    }
}

/// BMP: "BM", zero reserved fields and a known DIB header size (two letters alone would match
/// plenty of text files).
fn is_bmp(h: &[u8]) -> bool {
    if h.len() < 18 || !h.starts_with(b"BM") || h[6..10] != [0, 0, 0, 0] {
        return false;
    }
    let dib = u32::from_le_bytes([h[14], h[15], h[16], h[17]]);
    matches!(dib, 12 | 40 | 52 | 56 | 64 | 108 | 124)
}

#[cfg(test)]
mod tests;
