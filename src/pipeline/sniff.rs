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
mod tests {
    use super::*;

    fn name(h: &[u8]) -> &'static str {
        sniff(h).name
    }

    fn ftyp_box(major: &[u8; 4], compat: &[&[u8; 4]]) -> Vec<u8> {
        let len = 16 + 4 * compat.len();
        let mut v = (len as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b"ftyp");
        v.extend_from_slice(major);
        v.extend_from_slice(&[0, 0, 0, 0]);
        for c in compat {
            v.extend_from_slice(*c);
        }
        v.extend_from_slice(&[0, 0, 0, 8, b'f', b'r', b'e', b'e']);
        v
    }

    fn riff(form: &[u8; 4], chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut body = form.to_vec();
        for (cc, data) in chunks {
            body.extend_from_slice(*cc);
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut v = b"RIFF".to_vec();
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(&body);
        v
    }

    fn ogg_page(packet: &[u8]) -> Vec<u8> {
        let mut v = b"OggS".to_vec();
        v.push(0); // version
        v.push(0x02); // BOS
        v.extend_from_slice(&[0; 8]); // granule
        v.extend_from_slice(&[1, 0, 0, 0]); // serial
        v.extend_from_slice(&[0; 4]); // sequence
        v.extend_from_slice(&[0; 4]); // crc (not checked by sniffing)
        v.push(1);
        v.push(packet.len() as u8);
        v.extend_from_slice(packet);
        v
    }

    /// MPEG-1 layer III, 128 kbps, 44.1 kHz, no padding: 417-byte frames.
    fn mp3_frames(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..n {
            let mut f = vec![0u8; 417];
            f[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
            v.extend_from_slice(&f);
        }
        v
    }

    /// ADTS, AAC LC, 44.1 kHz, stereo, no CRC, frames of `len` bytes.
    fn adts_frames(n: usize, len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..n {
            let mut f = vec![0u8; len];
            f[0] = 0xFF;
            f[1] = 0xF1;
            f[2] = (1 << 6) | (4 << 2); // profile LC, sf index 4 (44.1 kHz)
            f[3] = (2 << 6) | ((len >> 11) as u8 & 0x03);
            f[4] = (len >> 3) as u8;
            f[5] = (((len & 0x07) as u8) << 5) | 0x1F;
            f[6] = 0xFC;
            v.extend_from_slice(&f);
        }
        v
    }

    #[test]
    fn images() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 16]), JPEG);
        assert_eq!(name(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "png");
        assert_eq!(name(b"GIF89a\x01\0\x01\0"), "gif");
        assert_eq!(name(b"GIF87a"), "gif");
        assert_eq!(name(b"II*\0\x08\0\0\0"), "tiff");
        assert_eq!(name(b"MM\0*\0\0\0\x08"), "tiff");
        let mut bmp = b"BM".to_vec();
        bmp.extend_from_slice(&[0x46, 0, 0, 0, 0, 0, 0, 0, 0x36, 0, 0, 0, 40, 0, 0, 0]);
        assert_eq!(name(&bmp), "bmp");
    }

    #[test]
    fn webp_static_and_animated() {
        let vp8l = riff(b"WEBP", &[(b"VP8L", &[0x2F, 0, 0, 0, 0])]);
        assert_eq!(sniff(&vp8l), WEBP);
        let vp8 = riff(b"WEBP", &[(b"VP8 ", &[0; 10])]);
        assert_eq!(name(&vp8), "webp");
        let mut vp8x = [0u8; 10];
        vp8x[0] = 0x02;
        let anim = riff(b"WEBP", &[(b"VP8X", &vp8x), (b"ANIM", &[0; 6])]);
        assert_eq!(sniff(&anim), WEBP_ANIMATED);
        // ANIM chunk without the flag (sloppy muxer) still counts as animated.
        let anim_no_flag = riff(b"WEBP", &[(b"VP8X", &[0; 10]), (b"ANIM", &[0; 6])]);
        assert_eq!(name(&anim_no_flag), "webp-animated");
        // VP8X without the flag and with a still image is static.
        let still = riff(
            b"WEBP",
            &[
                (b"VP8X", &[0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                (b"VP8L", &[0x2F]),
            ],
        );
        assert_eq!(name(&still), "webp");
        // A chunk size near u32::MAX must not overflow the walk.
        let mut huge = b"RIFF\0\0\0\0WEBPJUNK\xff\xff\xff\xff".to_vec();
        huge.extend_from_slice(&[0; 8]);
        assert_eq!(name(&huge), "webp");
    }

    #[test]
    fn riff_lookalikes() {
        assert_eq!(name(&riff(b"WAVE", &[(b"fmt ", &[0; 16])])), "wav");
        assert_eq!(name(b"RIFF\x24\0\0\0WAVEfmt "), "wav");
        assert_eq!(name(b"RF64\xff\xff\xff\xffWAVEds64"), "wav");
        assert_eq!(name(b"RIFF\x24\0\0\0AVI LIST"), "avi");
        assert_eq!(name(b"RIFF\x24\0\0\0CDXAfmt "), "unknown");
        assert_eq!(name(b"RIFF\x24\0\0\0WEB"), "unknown");
        assert_eq!(name(b"RF64\x24\0\0\0WEBPVP8L"), "unknown");
    }

    #[test]
    fn iso_bmff_brands() {
        assert_eq!(
            sniff(&ftyp_box(b"isom", &[b"isom", b"iso2", b"avc1", b"mp41"])),
            MP4
        );
        assert_eq!(name(&ftyp_box(b"mp42", &[b"mp42", b"isom"])), "mp4");
        assert_eq!(name(&ftyp_box(b"avc1", &[])), "mp4");
        assert_eq!(name(&ftyp_box(b"dash", &[b"iso6"])), "mp4");
        assert_eq!(sniff(&ftyp_box(b"M4A ", &[b"M4A ", b"mp42", b"isom"])), M4A);
        assert_eq!(name(&ftyp_box(b"M4B ", &[])), "m4a");
        assert_eq!(sniff(&ftyp_box(b"3gp4", &[b"isom", b"3gp4"])), GPP);
        assert_eq!(sniff(&ftyp_box(b"3g2a", &[])), GPP2);
        assert_eq!(name(&ftyp_box(b"3g2a", &[])), "3gp");
        assert_eq!(name(&ftyp_box(b"qt  ", &[b"qt  "])), "mov");
        assert_eq!(sniff(&ftyp_box(b"heic", &[b"mif1", b"heic"])), HEIC);
        assert_eq!(name(&ftyp_box(b"heix", &[])), "heic");
        assert_eq!(name(&ftyp_box(b"mif1", &[b"mif1", b"heic"])), "heic");
        assert_eq!(
            name(&ftyp_box(b"mif1", &[b"avif", b"mif1", b"miaf"])),
            "avif"
        );
        assert_eq!(name(&ftyp_box(b"msf1", &[b"msf1"])), "heif");
        assert_eq!(sniff(&ftyp_box(b"avif", &[b"avif", b"mif1"])), AVIF);
        // Unknown major brand: the compatible brands decide, or nothing does.
        assert_eq!(name(&ftyp_box(b"xyzw", &[b"xyzw", b"isom"])), "mp4");
        assert_eq!(name(&ftyp_box(b"xyzw", &[b"abcd"])), "unknown");
        // A box length larger than the head (or absurd) is clamped, not trusted.
        let mut big = ftyp_box(b"xyzw", &[b"mp41"]);
        big[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(name(&big), "mp4");
        let mut tiny = ftyp_box(b"isom", &[]);
        tiny[..4].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(name(&tiny), "mp4");
        assert_eq!(name(&tiny[..12]), "mp4");
        assert_eq!(name(&tiny[..11]), "unknown");
    }

    #[test]
    fn ogg_codecs() {
        let opus = ogg_page(b"OpusHead\x01\x02\x38\x01\x80\xbb\0\0\0\0\0");
        assert_eq!(sniff(&opus), OGG_OPUS);
        assert_eq!(sniff(&opus).mime, "audio/ogg; codecs=opus");
        assert_eq!(name(&ogg_page(b"\x01vorbis\0\0\0\0\x02")), "ogg-vorbis");
        assert_eq!(name(&ogg_page(b"\x7fFLAC\x01\0")), "ogg-flac");
        assert_eq!(name(&ogg_page(b"Speex   1.2")), "ogg-speex");
        assert_eq!(name(&ogg_page(b"\x80theora\x03\x02")), "ogg-theora");
        assert_eq!(name(&ogg_page(b"something")), "ogg");
        // OpusHead with an incompatible major version, or zero channels.
        assert_eq!(name(&ogg_page(b"OpusHead\x10\x02")), "ogg");
        assert_eq!(name(&ogg_page(b"OpusHead\x01\x00")), "ogg");
        // Not a beginning-of-stream page.
        let mut mid = opus.clone();
        mid[5] = 0;
        assert_eq!(name(&mid), "ogg");
        // Truncated inside the page header or the segment table.
        assert_eq!(name(&opus[..20]), "unknown");
        assert_eq!(name(&opus[..28]), "ogg");
    }

    #[test]
    fn audio_signatures() {
        assert_eq!(sniff(b"#!AMR\n\x3c\x91"), AMR_NB);
        assert_eq!(sniff(b"#!AMR-WB\n\x24"), AMR_WB);
        assert_eq!(name(b"#!AMR"), "unknown");
        assert_eq!(name(b"fLaC\0\0\0\x22"), "flac");
        assert_eq!(name(&mp3_frames(3)), "mp3");
        assert_eq!(name(&adts_frames(3, 200)), "aac");
        let mut id3 = b"ID3\x04\0\0\0\0\0\x0a".to_vec();
        id3.extend_from_slice(&[0; 10]);
        let mut id3_mp3 = id3.clone();
        id3_mp3.extend_from_slice(&mp3_frames(2));
        assert_eq!(name(&id3_mp3), "mp3");
        let mut id3_aac = id3.clone();
        id3_aac.extend_from_slice(&adts_frames(2, 100));
        assert_eq!(name(&id3_aac), "aac");
        let mut id3_flac = id3.clone();
        id3_flac.extend_from_slice(b"fLaC\0\0\0\x22");
        assert_eq!(name(&id3_flac), "flac");
        // A tag larger than the head: assume MP3.
        assert_eq!(name(b"ID3\x03\0\0\0\x7f\x7f\x7f"), "mp3");
        // Not syncsafe, or a bad version: not ID3.
        assert_eq!(name(b"ID3\x03\0\0\x80\0\0\0"), "unknown");
        assert_eq!(name(b"ID3\x07\0\0\0\0\0\0"), "unknown");
        // MPEG layer II is recognised but is not mp3.
        let mut mp2 = vec![0u8; 417 * 3];
        for frame in mp2.chunks_exact_mut(417) {
            // MPEG-1 layer II, 128 kbps, 44.1 kHz, no padding: 417-byte frames.
            frame[..4].copy_from_slice(&[0xFF, 0xFD, 0x80, 0x04]);
        }
        assert_eq!(name(&mp2), "mp2");
    }

    #[test]
    fn frame_sync_lookalikes() {
        // Valid-looking first header, garbage where the second should be.
        let mut bad_next = mp3_frames(1);
        bad_next.extend_from_slice(&[0x12; 100]);
        assert_eq!(name(&bad_next), "unknown");
        let mut bad_next = adts_frames(1, 50);
        bad_next.extend_from_slice(&[0x34; 100]);
        assert_eq!(name(&bad_next), "unknown");
        // Reserved fields.
        assert_eq!(name(&[0xFF, 0xEB, 0x90, 0x64]), "unknown"); // version 01 reserved
        assert_eq!(name(&[0xFF, 0xF9, 0x90, 0x64]), "unknown"); // layer 00 (and not ADTS-valid)
        assert_eq!(name(&[0xFF, 0xFB, 0xF0, 0x64]), "unknown"); // bitrate 15
        assert_eq!(name(&[0xFF, 0xFB, 0x00, 0x64]), "unknown"); // free format
        assert_eq!(name(&[0xFF, 0xFB, 0x9C, 0x64]), "unknown"); // sample rate 3
        assert_eq!(name(&[0xFF, 0xFB, 0x90, 0x66]), "unknown"); // emphasis 2
        // ADTS with a reserved sampling-frequency index or a frame shorter than its header.
        assert_eq!(name(&[0xFF, 0xF1, 0x74, 0x80, 0x10, 0x1F, 0xFC]), "unknown");
        assert_eq!(name(&[0xFF, 0xF1, 0x50, 0x80, 0x00, 0x1F, 0xFC]), "unknown");
        // A lone short header that ends the file is accepted (nothing to contradict it).
        assert_eq!(name(&mp3_frames(1)), "mp3");
    }

    #[test]
    fn documents_and_archives() {
        assert_eq!(sniff(b"%PDF-1.7\n"), PDF);
        assert_eq!(name(b"PK\x03\x04\x14\0\x06\0"), "zip");
        assert_eq!(name(b"PK\x05\x06\0\0"), "zip");
        assert_eq!(name(&[0x1F, 0x8B, 0x08, 0, 0]), "gzip");
        assert_eq!(name(&[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C, 0, 4]), "7z");
        assert_eq!(name(b"Rar!\x1a\x07\x01\0"), "rar");
        assert_eq!(name(b"\xfd7zXZ\0\0"), "xz");
        assert_eq!(name(b"BZh91AY&SY"), "bzip2");
        assert_eq!(name(b"BZh91AY"), "unknown");
        assert_eq!(
            name(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0]),
            "ole"
        );
        assert_eq!(name(b"{\\rtf1\\ansi"), "rtf");
        assert_eq!(name(b"%!PS-Adobe-3.0"), "postscript");
        assert_eq!(
            name(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm"),
            "webm"
        );
        assert_eq!(
            name(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska"),
            "mkv"
        );
    }

    #[test]
    fn polyglots_sniff_by_their_first_bytes() {
        // A PDF named photo.jpg is a PDF, and not an allowed image.
        let pdf = sniff(b"%PDF-1.4\n%\xff\xd8\xff");
        assert_eq!(pdf, PDF);
        assert!(!allowed(MediaKind::Image, &pdf));
        // A JPEG with a ZIP appended is a JPEG (photo.rs drops the tail).
        let mut jpeg_zip = vec![0xFF, 0xD8, 0xFF, 0xD9];
        jpeg_zip.extend_from_slice(b"PK\x03\x04");
        assert_eq!(sniff(&jpeg_zip), JPEG);
        // A ZIP whose first entry is named like a JPEG is a ZIP.
        assert_eq!(name(b"PK\x03\x04\x14\0\0\0\0\0\xff\xd8\xff"), "zip");
    }

    #[test]
    fn short_and_empty_inputs() {
        for h in [
            &b""[..],
            b"\xff",
            b"\xff\xd8",
            b"\x89PNG",
            b"GIF8",
            b"RIFF",
            b"RIFF\0\0\0\0WEB",
            b"\0\0\0\x18ftyp",
            b"OggS",
            b"ID3",
            b"%PDF",
            b"PK",
            b"\xff\xfb",
            b"\xff\xf1\x50",
            b"BM",
        ] {
            assert_eq!(sniff(h), UNKNOWN, "{h:?}");
            fuzz_entry(h);
        }
        // Every prefix of every sample is handled without panicking.
        let samples = [
            ftyp_box(b"mif1", &[b"heic"]),
            ogg_page(b"OpusHead\x01\x02"),
            mp3_frames(2),
            adts_frames(2, 64),
            riff(b"WEBP", &[(b"VP8X", &[2; 10])]),
        ];
        for sample in &samples {
            for n in 0..sample.len() {
                fuzz_entry(&sample[..n]);
            }
        }
    }

    #[test]
    fn allow_lists() {
        use MediaKind::*;
        let ok = |k, s: Sniffed| allowed(k, &s);
        for s in [JPEG, PNG, WEBP, GIF] {
            assert!(ok(Image, s), "{s:?}");
        }
        for s in [
            HEIC,
            HEIF,
            AVIF,
            BMP,
            TIFF,
            PDF,
            WEBP_ANIMATED,
            UNKNOWN,
            MP4,
        ] {
            assert!(!ok(Image, s), "{s:?}");
        }
        assert!(ok(Sticker, WEBP) && ok(Sticker, WEBP_ANIMATED));
        for s in [JPEG, PNG, GIF, UNKNOWN] {
            assert!(!ok(Sticker, s), "{s:?}");
        }
        assert!(ok(Voice, OGG_OPUS));
        for s in [OGG_VORBIS, MP3, AAC, M4A, AMR_NB, OGG, UNKNOWN] {
            assert!(!ok(Voice, s), "{s:?}");
        }
        for s in [
            AAC, M4A, MP3, AMR_NB, AMR_WB, OGG_OPUS, OGG_VORBIS, WAV, FLAC,
        ] {
            assert!(ok(Audio, s), "{s:?}");
        }
        for s in [MP2, OGG, OGG_SPEEX, MP4, UNKNOWN, PDF] {
            assert!(!ok(Audio, s), "{s:?}");
        }
        assert!(ok(Video, MP4) && ok(Video, GPP) && ok(Video, GPP2));
        for s in [M4A, MOV, WEBM, MKV, AVI, OGG_THEORA, HEIC, UNKNOWN] {
            assert!(!ok(Video, s), "{s:?}");
        }
        for s in [UNKNOWN, PDF, ZIP, JPEG, MP4, HEIC, OLE] {
            assert!(ok(Document, s), "{s:?}");
        }
    }
}
