//! Unit tests of the sniffer: magic bytes of every allowed and refused type, look-alikes,
//! short and hostile heads.

use super::*;
use crate::pipeline::testing::riff;

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
