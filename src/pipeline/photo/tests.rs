//! Unit tests of the image path: metadata stripped losslessly per format, orientation kept,
//! limits checked before decoding, thumbnails, and hostile or truncated files refused without
//! a panic.

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::codecs::gif::{GifEncoder, Repeat};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::metadata::Orientation;
use image::{ExtendedColorType, Frame, ImageDecoder, ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};

use super::decode::{decode_full, decode_jpeg_scaled};
use super::exif::{ExifFacts, minimal_exif};
use super::jpeg::MAX_JPEG_SCANS;
use super::png::{PNG_SIGNATURE, crc32, png_chunk};
use super::webp::{VP8X_ANIMATION, VP8X_EXIF, VP8X_XMP};
use super::*;
use crate::pipeline::sniff;
use crate::pipeline::testing::{riff, xorshift};

fn limits() -> Limits {
    Limits::default()
}

/// Left half red, right half blue, with a vertical gradient: orientation is visible.
fn pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let g = (y * 255 / h.max(1)) as u8 / 4;
        if x < w / 2 {
            Rgb([230, g, 20])
        } else {
            Rgb([20, g, 230])
        }
    })
}

fn rgba_pattern(w: u32, h: u32) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, y| {
        Rgba([
            (x * 7) as u8,
            (y * 5) as u8,
            128,
            if (x + y) % 3 == 0 { 0 } else { 255 },
        ])
    })
}

fn jpeg_bytes(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut v = Vec::new();
    JpegEncoder::new_with_quality(&mut v, quality)
        .encode_image(img)
        .expect("encode jpeg");
    v
}

fn png_bytes(img: &RgbaImage) -> Vec<u8> {
    let mut v = Vec::new();
    PngEncoder::new(&mut v)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgba8,
        )
        .expect("encode png");
    v
}

fn webp_lossless(img: &RgbaImage) -> Vec<u8> {
    let mut v = Vec::new();
    WebPEncoder::new_lossless(&mut v)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgba8,
        )
        .expect("encode webp");
    v
}

fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0xFF, marker];
    v.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// `jpeg` with `segments` inserted right after SOI.
fn with_segments(jpeg: &[u8], segments: &[Vec<u8>]) -> Vec<u8> {
    let mut v = jpeg[..2].to_vec();
    for s in segments {
        v.extend_from_slice(s);
    }
    v.extend_from_slice(&jpeg[2..]);
    v
}

/// Big-endian TIFF: IFD0 with Make "SECRETCAM", optionally Orientation and a GPS IFD
/// holding a latitude, as cameras and phones write them.
fn exif_tiff(orientation: Option<u16>, gps: bool) -> Vec<u8> {
    let make = b"SECRETCAM\0";
    let n0 = 1 + u16::from(orientation.is_some()) + u16::from(gps);
    let make_off = 8 + 2 + 12 * u32::from(n0) + 4;
    let gps_off = make_off + make.len() as u32;
    let lat_off = gps_off + 2 + 24 + 4;
    let mut v = b"MM\0\x2a\0\0\0\x08".to_vec();
    let entry = |v: &mut Vec<u8>, tag: u16, kind: u16, n: u32, value: [u8; 4]| {
        v.extend_from_slice(&tag.to_be_bytes());
        v.extend_from_slice(&kind.to_be_bytes());
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(&value);
    };
    v.extend_from_slice(&n0.to_be_bytes());
    entry(&mut v, 0x010F, 2, make.len() as u32, make_off.to_be_bytes());
    if let Some(o) = orientation {
        let o = o.to_be_bytes();
        entry(&mut v, 0x0112, 3, 1, [o[0], o[1], 0, 0]);
    }
    if gps {
        entry(&mut v, 0x8825, 4, 1, gps_off.to_be_bytes());
    }
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(make);
    if gps {
        v.extend_from_slice(&2u16.to_be_bytes());
        entry(&mut v, 0x0001, 2, 2, *b"N\0\0\0");
        entry(&mut v, 0x0002, 5, 3, lat_off.to_be_bytes());
        v.extend_from_slice(&[0; 4]);
        for (num, den) in [(52u32, 1u32), (31, 1), (4242, 100)] {
            v.extend_from_slice(&num.to_be_bytes());
            v.extend_from_slice(&den.to_be_bytes());
        }
    }
    v
}

fn exif_app1(orientation: Option<u16>, gps: bool) -> Vec<u8> {
    let mut p = b"Exif\0\0".to_vec();
    p.extend_from_slice(&exif_tiff(orientation, gps));
    segment(0xE1, &p)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn run(data: &[u8], sticker: bool) -> Result<(Analysis, Option<Vec<u8>>), MediaError> {
    let sniffed = sniff::sniff(&data[..data.len().min(4096)]);
    analyze_bytes(data, &sniffed, sticker, &limits())
}

fn rgba_of(data: &[u8]) -> RgbaImage {
    image::load_from_memory(data).expect("decode").into_rgba8()
}

fn thumb_of(a: &Analysis) -> RgbImage {
    let t = a.thumbnail.as_deref().expect("thumbnail");
    assert!(t.starts_with(&[0xFF, 0xD8, 0xFF]), "thumbnail is a JPEG");
    image::load_from_memory_with_format(t, ImageFormat::Jpeg)
        .expect("decode thumbnail")
        .into_rgb8()
}

fn png_chunks(png: &[u8]) -> Vec<([u8; 4], Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut pos = 8;
    while pos + 12 <= png.len() {
        let len = be32(png, pos).unwrap() as usize;
        let kind: [u8; 4] = png[pos + 4..pos + 8].try_into().unwrap();
        let body = png[pos + 8..pos + 8 + len].to_vec();
        let crc = be32(png, pos + 8 + len).unwrap();
        let ok = crc == crc32(&png[pos + 4..pos + 8 + len]);
        out.push((kind, body, ok));
        pos += 12 + len;
    }
    assert_eq!(pos, png.len(), "chunks end where the file ends");
    out
}

fn insert_png_chunks(png: &[u8], chunks: &[Vec<u8>]) -> Vec<u8> {
    let ihdr_end = 8 + 25;
    let mut v = png[..ihdr_end].to_vec();
    for c in chunks {
        v.extend_from_slice(c);
    }
    v.extend_from_slice(&png[ihdr_end..]);
    v
}

fn riff_webp(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    riff(b"WEBP", chunks)
}

/// The VP8L chunk payload of a simple lossless WebP from the encoder.
fn vp8l_payload(webp: &[u8]) -> Vec<u8> {
    assert_eq!(&webp[12..16], b"VP8L");
    let size = le32(webp, 16).unwrap() as usize;
    webp[20..20 + size].to_vec()
}

fn vp8x(flags: u8, w: u32, h: u32) -> Vec<u8> {
    let mut v = vec![flags, 0, 0, 0];
    v.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
    v.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
    v
}

fn webp_chunk_names(webp: &[u8]) -> Vec<[u8; 4]> {
    let mut names = Vec::new();
    let mut pos = 12;
    while pos + 8 <= webp.len() {
        names.push(webp[pos..pos + 4].try_into().unwrap());
        let size = le32(webp, pos + 4).unwrap() as usize;
        pos += 8 + size + (size & 1);
    }
    names
}

#[test]
fn jpeg_metadata_is_stripped_losslessly() {
    let original = jpeg_bytes(&pattern(64, 48), 90);
    let xmp = segment(
        0xE1,
        b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>Home, 52.5N</x:xmpmeta>",
    );
    let iptc = segment(0xED, b"Photoshop 3.0\08BIM\x04\x04\0\0\0\0\0\x0bJane Doe");
    let icc = segment(0xE2, b"ICC_PROFILE\0\x01\x01fake-profile-bytes");
    let maker = segment(0xEB, b"JP\0\0maker data");
    let comment = segment(0xFE, b"shot at home");
    let mut dirty = with_segments(
        &original,
        &[exif_app1(None, true), xmp, iptc, icc, maker, comment],
    );
    dirty.extend_from_slice(b"PK\x03\x04\x14\0\0\0appended zip");

    let (a, cleaned) = run(&dirty, false).expect("analysis");
    let cleaned = cleaned.expect("cleaned file");
    assert_eq!(
        a.removed,
        [
            "exif",
            "xmp",
            "iptc",
            "app11",
            "comment",
            "trailing-data",
            "gps"
        ]
    );
    for gone in [
        &b"Exif"[..],
        b"SECRETCAM",
        b"xmpmeta",
        b"Photoshop",
        b"Jane Doe",
        b"maker data",
        b"shot at home",
        b"PK\x03\x04",
        &4242u32.to_be_bytes(),
    ] {
        assert!(
            !contains(&cleaned, gone),
            "{:?} left",
            String::from_utf8_lossy(gone)
        );
    }
    assert!(contains(&cleaned, b"ICC_PROFILE"), "colour profile kept");
    assert!(cleaned.ends_with(&[0xFF, 0xD9]), "ends at EOI");
    // Lossless: exactly the pixels of the untouched encoder output.
    assert_eq!(rgba_of(&cleaned), rgba_of(&original));
    // Cleaning the cleaned file finds nothing more.
    let (again, none) = run(&cleaned, false).expect("analysis");
    assert!(again.removed.is_empty() && none.is_none());

    assert_eq!((a.width, a.height), (Some(64), Some(48)));
    assert_eq!(a.animated, Some(false));
    assert_eq!(
        (a.sniffed.as_str(), a.mime.as_str()),
        ("jpeg", "image/jpeg")
    );
    assert_eq!(thumb_of(&a).dimensions(), (64, 48));
    let hash = a.blurhash.as_deref().expect("blurhash");
    assert_eq!(hash.len(), 28, "4x3 components: 6 + 2 x 11 characters");
    assert!(blurhash::decode(hash, 8, 6, 1.0).is_ok());
}

#[test]
fn jpeg_orientation_survives_as_a_minimal_exif() {
    let original = jpeg_bytes(&pattern(40, 20), 95);
    let dirty = with_segments(&original, &[exif_app1(Some(6), true)]);
    let (a, cleaned) = run(&dirty, false).expect("analysis");
    let cleaned = cleaned.expect("cleaned");
    assert_eq!(a.removed, ["exif", "gps"]);
    assert!(!contains(&cleaned, b"SECRETCAM"));
    // Display size is turned a quarter; the thumbnail is upright.
    assert_eq!((a.width, a.height), (Some(20), Some(40)));
    let thumb = thumb_of(&a);
    assert_eq!(thumb.dimensions(), (20, 40));
    // Rotating 90° clockwise puts the left (red) half on top.
    let top = thumb.get_pixel(10, 3);
    let bottom = thumb.get_pixel(10, 36);
    assert!(top[0] > 150 && top[2] < 100, "top is red: {top:?}");
    assert!(
        bottom[2] > 150 && bottom[0] < 100,
        "bottom is blue: {bottom:?}"
    );
    // Other decoders still read the orientation from the cleaned file.
    let mut dec = image::codecs::jpeg::JpegDecoder::new(Cursor::new(&cleaned)).unwrap();
    assert_eq!(dec.orientation().unwrap(), Orientation::Rotate90);
    // JFIF stays first, the new EXIF right behind it.
    assert_eq!(&cleaned[2..4], &[0xFF, 0xE0]);
    assert_eq!(&cleaned[20..22], &[0xFF, 0xE1]);
    assert_eq!(rgba_of(&cleaned), rgba_of(&original));
}

#[test]
fn exif_parsing_both_byte_orders() {
    assert_eq!(
        exif_facts(&exif_tiff(Some(8), true)),
        ExifFacts {
            orientation: 8,
            gps: true,
            sticker_pack_only: false
        }
    );
    // Little-endian, orientation 3, no GPS.
    let le = b"II\x2a\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x03\0\0\0\0\0\0\0";
    assert_eq!(exif_facts(le).orientation, 3);
    assert!(!exif_facts(le).gps);
    // Out-of-range orientation, entry count past the end, garbage: defaults, no panic.
    assert_eq!(exif_facts(&exif_tiff(Some(9), false)).orientation, 1);
    let mut long = exif_tiff(Some(6), false);
    long[8..10].copy_from_slice(&[0xFF, 0xFF]);
    assert_eq!(exif_facts(&long).orientation, 6);
    let mut far = exif_tiff(Some(6), false);
    far[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(exif_facts(&far).orientation, 1);
    for n in 0..40 {
        let _ = exif_facts(&exif_tiff(Some(6), true)[..n]);
    }
    assert_eq!(
        Orientation::from_exif_chunk(&minimal_exif(5)),
        Some(Orientation::Rotate90FlipH)
    );
}

#[test]
fn jpeg_without_metadata_is_left_alone() {
    let original = jpeg_bytes(&pattern(32, 32), 80);
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.jpg"), dir.path().join("out.jpg"));
    std::fs::write(&input, &original).unwrap();
    let run = || {
        let out = std::fs::File::create(&output).unwrap();
        analyze(
            FileSlice::open(&input).unwrap(),
            out,
            &sniff::JPEG,
            false,
            &limits(),
        )
    };
    let a = run().expect("analysis");
    assert!(a.removed.is_empty());
    assert_eq!(
        std::fs::metadata(&output).unwrap().len(),
        0,
        "nothing removed, nothing written"
    );
    // With metadata, the cleaned copy is written to the output file.
    std::fs::write(&input, with_segments(&original, &[segment(0xFE, b"hi")])).unwrap();
    let a = run().expect("analysis");
    assert_eq!(a.removed, ["comment"]);
    assert_eq!(std::fs::read(&output).unwrap(), original);
}

#[test]
fn jpeg_jfif_thumbnail_is_dropped() {
    let original = jpeg_bytes(&pattern(16, 16), 90);
    assert_eq!(&original[2..4], &[0xFF, 0xE0], "the encoder writes JFIF");
    let jfif_len = usize::from(be16(&original, 4).unwrap());
    let mut app0 = original[6..4 + jfif_len].to_vec();
    app0[12] = 2;
    app0[13] = 1;
    app0.extend_from_slice(&[255, 0, 0, 0, 255, 0]); // 2x1 RGB thumbnail
    let mut dirty = original[..2].to_vec();
    dirty.extend_from_slice(&segment(0xE0, &app0));
    dirty.extend_from_slice(&original[4 + jfif_len..]);
    dirty = with_segments(&dirty, &[segment(0xE0, b"JFXX\0\x10thumb")]);
    let (a, cleaned) = run(&dirty, false).expect("analysis");
    let cleaned = cleaned.expect("cleaned");
    assert_eq!(a.removed, ["thumbnail"]);
    assert_eq!(
        cleaned, original,
        "JFIF rewritten to its thumbnail-less form"
    );
}

#[test]
fn jpeg_dct_scaled_decode_leaves_room_for_the_filter() {
    let original = jpeg_bytes(&pattern(1000, 500), 85);
    let scan = scan_jpeg(&original, &limits()).unwrap();
    let small = decode_jpeg_scaled(&original, &scan, &limits()).expect("scaled decode");
    // Target 100x50; twice that is 200x100; 1/4 scale (250x125) is the smallest above.
    assert_eq!((small.width(), small.height()), (250, 125));
    let (a, _) = run(&original, false).unwrap();
    assert_eq!(thumb_of(&a).dimensions(), (100, 50));
    // Grayscale JPEGs take the same path.
    let gray = image::DynamicImage::ImageRgb8(pattern(800, 600)).into_luma8();
    let mut g = Vec::new();
    JpegEncoder::new_with_quality(&mut g, 80)
        .encode_image(&gray)
        .unwrap();
    let scan = scan_jpeg(&g, &limits()).unwrap();
    let small = decode_jpeg_scaled(&g, &scan, &limits()).expect("gray scaled decode");
    assert_eq!((small.width(), small.height()), (200, 150));
    assert_eq!(thumb_of(&run(&g, false).unwrap().0).dimensions(), (100, 75));
}

#[test]
fn png_text_exif_and_time_are_stripped() {
    let img = rgba_pattern(30, 20);
    let original = png_bytes(&img);
    let mut dirty = insert_png_chunks(
        &original,
        &[
            png_chunk(b"tEXt", b"Comment\0taken at home"),
            png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta/>"),
            png_chunk(b"eXIf", &exif_tiff(None, true)),
            png_chunk(b"tIME", &[7, 0xE9, 1, 2, 3, 4, 5]),
            png_chunk(b"zTXt", b"Author\0\0x"),
        ],
    );
    dirty.extend_from_slice(b"PK\x03\x04zip");
    let (a, cleaned) = run(&dirty, false).expect("analysis");
    let cleaned = cleaned.expect("cleaned");
    assert_eq!(
        a.removed,
        [
            "comment",
            "xmp",
            "exif",
            "gps",
            "time",
            "text",
            "trailing-data"
        ]
    );
    let chunks = png_chunks(&cleaned);
    assert!(chunks.iter().all(|c| c.2), "every chunk keeps a valid CRC");
    let kinds: Vec<&[u8; 4]> = chunks.iter().map(|c| &c.0).collect();
    assert_eq!(kinds.first(), Some(&b"IHDR"));
    assert_eq!(kinds.last(), Some(&b"IEND"));
    for gone in [b"tEXt", b"iTXt", b"eXIf", b"tIME", b"zTXt"] {
        assert!(!kinds.contains(&gone));
    }
    assert_eq!(cleaned, original, "exactly the encoder's file again");
    assert_eq!(rgba_of(&cleaned), img);
    assert_eq!((a.width, a.height), (Some(30), Some(20)));
    assert_eq!(thumb_of(&a).dimensions(), (30, 20));
}

#[test]
fn png_orientation_survives_as_a_minimal_exif() {
    let original = png_bytes(&rgba_pattern(30, 20));
    let dirty = insert_png_chunks(&original, &[png_chunk(b"eXIf", &exif_tiff(Some(8), true))]);
    let (a, cleaned) = run(&dirty, false).expect("analysis");
    let cleaned = cleaned.expect("cleaned");
    assert_eq!(a.removed, ["exif", "gps"]);
    assert_eq!((a.width, a.height), (Some(20), Some(30)));
    assert_eq!(thumb_of(&a).dimensions(), (20, 30));
    assert!(png_chunks(&cleaned).iter().all(|c| c.2));
    assert!(!contains(&cleaned, b"SECRETCAM"));
    let mut dec = image::codecs::png::PngDecoder::new(Cursor::new(&cleaned)).unwrap();
    assert_eq!(dec.orientation().unwrap(), Orientation::Rotate270);
}

#[test]
fn png_animation_is_reported() {
    let original = png_bytes(&rgba_pattern(8, 8));
    let apng = insert_png_chunks(&original, &[png_chunk(b"acTL", &[0, 0, 0, 1, 0, 0, 0, 0])]);
    let (a, cleaned) = run(&apng, false).expect("analysis");
    assert_eq!(a.animated, Some(true));
    assert!(cleaned.is_none());
}

#[test]
fn webp_exif_and_xmp_are_stripped() {
    let img = rgba_pattern(24, 16);
    let simple = webp_lossless(&img);
    let vp8l = vp8l_payload(&simple);
    let tiff = exif_tiff(None, true);
    let dirty = riff_webp(&[
        (b"VP8X", &vp8x(0x10 | VP8X_EXIF | VP8X_XMP, 24, 16)),
        (b"VP8L", &vp8l),
        (b"EXIF", &tiff),
        (b"XMP ", b"<x:xmpmeta>secret</x:xmpmeta>"),
    ]);
    let mut with_tail = dirty.clone();
    with_tail.extend_from_slice(b"PK\x03\x04");
    let (a, cleaned) = run(&with_tail, false).expect("analysis");
    let cleaned = cleaned.expect("cleaned");
    assert_eq!(a.removed, ["trailing-data", "exif", "gps", "xmp"]);
    assert_eq!(webp_chunk_names(&cleaned), [*b"VP8X", *b"VP8L"]);
    assert_eq!(cleaned[20] & (VP8X_EXIF | VP8X_XMP), 0, "flags cleared");
    assert_eq!(cleaned[20] & 0x10, 0x10, "alpha flag kept");
    assert_eq!(
        le32(&cleaned, 4),
        Some(cleaned.len() as u32 - 8),
        "RIFF size"
    );
    assert!(!contains(&cleaned, b"SECRETCAM") && !contains(&cleaned, b"secret"));
    assert_eq!(rgba_of(&cleaned), img);
    assert_eq!(rgba_of(&dirty), img);
    assert_eq!(
        (a.width, a.height, a.animated),
        (Some(24), Some(16), Some(false))
    );
}

#[test]
fn webp_orientation_keeps_a_minimal_exif_chunk() {
    let img = rgba_pattern(24, 16);
    let vp8l = vp8l_payload(&webp_lossless(&img));
    let dirty = riff_webp(&[
        (b"VP8X", &vp8x(0x10 | VP8X_EXIF, 24, 16)),
        (b"VP8L", &vp8l),
        (b"EXIF", &exif_tiff(Some(6), true)),
    ]);
    let (a, cleaned) = run(&dirty, false).expect("analysis");
    let cleaned = cleaned.expect("cleaned");
    assert_eq!(a.removed, ["exif", "gps"]);
    assert_eq!((a.width, a.height), (Some(16), Some(24)));
    assert_eq!(
        cleaned[20] & VP8X_EXIF,
        VP8X_EXIF,
        "EXIF flag stays with the chunk"
    );
    let mut dec = image::codecs::webp::WebPDecoder::new(Cursor::new(&cleaned)).unwrap();
    assert_eq!(dec.orientation().unwrap(), Orientation::Rotate90);
    assert!(!contains(&cleaned, b"SECRETCAM"));
}

/// WhatsApp's sticker-pack EXIF: IFD0 with the single tag 0x5741 holding JSON.
fn sticker_pack_exif() -> Vec<u8> {
    let json = br#"{"sticker-pack-id":"p1","sticker-pack-name":"Cats","emojis":["x"]}"#;
    let mut v = b"II\x2a\0\x08\0\0\0\x01\0\x41\x57\x07\0".to_vec();
    v.extend_from_slice(&(json.len() as u32).to_le_bytes());
    v.extend_from_slice(&22u32.to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(json);
    v
}

#[test]
fn stickers() {
    let img = rgba_pattern(512, 512);
    let simple = webp_lossless(&img);
    let (a, cleaned) = run(&simple, true).expect("sticker");
    assert_eq!(
        (a.width, a.height, a.animated),
        (Some(512), Some(512), Some(false))
    );
    assert!(cleaned.is_none() && a.removed.is_empty());
    assert_eq!(thumb_of(&a).dimensions(), (100, 100));
    // Other sizes are reported, not refused.
    let (a, _) = run(&webp_lossless(&rgba_pattern(300, 200)), true).expect("sticker");
    assert_eq!((a.width, a.height), (Some(300), Some(200)));
    // The sticker-pack metadata stays on stickers, and goes on images.
    let pack = riff_webp(&[
        (b"VP8X", &vp8x(0x10 | VP8X_EXIF, 512, 512)),
        (b"VP8L", &vp8l_payload(&simple)),
        (b"EXIF", &sticker_pack_exif()),
    ]);
    let (a, cleaned) = run(&pack, true).expect("sticker");
    assert!(a.removed.is_empty() && cleaned.is_none());
    let (a, cleaned) = run(&pack, false).expect("image");
    assert_eq!(a.removed, ["exif"]);
    assert!(!contains(&cleaned.expect("cleaned"), b"sticker-pack-id"));
    // A sticker must be WebP.
    let jpeg = jpeg_bytes(&pattern(512, 512), 80);
    assert!(matches!(
        run(&jpeg, true),
        Err(MediaError::NotAllowed { ref kind, ref sniffed }) if kind == "sticker" && sniffed == "jpeg"
    ));
}

fn animated_webp(w: u32, h: u32) -> Vec<u8> {
    let frame = |img: &RgbaImage| {
        let mut anmf = vec![0u8; 6]; // x/2, y/2
        anmf.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
        anmf.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
        anmf.extend_from_slice(&[100, 0, 0, 0]); // duration 100 ms, flags
        let vp8l = vp8l_payload(&webp_lossless(img));
        anmf.extend_from_slice(b"VP8L");
        anmf.extend_from_slice(&(vp8l.len() as u32).to_le_bytes());
        anmf.extend_from_slice(&vp8l);
        if vp8l.len() % 2 == 1 {
            anmf.push(0);
        }
        anmf
    };
    let f1 = frame(&rgba_pattern(w, h));
    let f2 = frame(&RgbaImage::from_pixel(w, h, Rgba([0, 200, 0, 255])));
    riff_webp(&[
        (b"VP8X", &vp8x(0x10 | VP8X_ANIMATION, w, h)),
        (b"ANIM", &[255, 255, 255, 255, 0, 0]),
        (b"ANMF", &f1),
        (b"ANMF", &f2),
    ])
}

#[test]
fn animated_webp_sticker() {
    let anim = animated_webp(64, 64);
    assert_eq!(sniff::sniff(&anim), sniff::WEBP_ANIMATED);
    let (a, cleaned) = run(&anim, true).expect("animated sticker");
    assert_eq!(a.animated, Some(true));
    assert_eq!((a.width, a.height), (Some(64), Some(64)));
    assert!(cleaned.is_none());
    // The thumbnail is the first frame (the pattern), not the green second one.
    let t = thumb_of(&a);
    assert!(t.get_pixel(40, 10)[1] < 150, "{:?}", t.get_pixel(40, 10));
    // A frame larger than the limits is refused before decoding.
    let mut huge = anim.clone();
    let anmf = huge.windows(4).position(|w| w == b"ANMF").unwrap();
    huge[anmf + 8 + 6..anmf + 8 + 12].copy_from_slice(&[0xFF; 6]);
    assert!(matches!(
        run(&huge, true),
        Err(MediaError::TooManyPixels { .. })
    ));
}

fn gif_bytes(frames: &[RgbaImage]) -> Vec<u8> {
    let mut v = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut v);
        enc.set_repeat(Repeat::Infinite).unwrap();
        enc.encode_frames(frames.iter().map(|f| Frame::new(f.clone())))
            .unwrap();
    }
    v
}

#[test]
fn gif_comments_and_application_data_are_stripped() {
    let f1 = RgbaImage::from_fn(20, 10, |x, _| {
        Rgba([if x < 10 { 255 } else { 0 }, 0, 0, 255])
    });
    let f2 = RgbaImage::from_pixel(20, 10, Rgba([0, 0, 255, 255]));
    let original = gif_bytes(&[f1.clone(), f2]);
    assert_eq!(original.last(), Some(&0x3B));
    let mut dirty = original[..original.len() - 1].to_vec();
    dirty.extend_from_slice(b"\x21\xFE\x0Cshot at home\x00");
    dirty.extend_from_slice(b"\x21\xFF\x0BXMP DataXMP\x03abc\x00");
    dirty.extend_from_slice(b"\x21\xFF\x0BEDITOR 1.0\x00\x01z\x00");
    dirty.push(0x3B);
    dirty.extend_from_slice(b"PK\x03\x04");
    let (a, cleaned) = run(&dirty, false).expect("analysis");
    let cleaned = cleaned.expect("cleaned");
    assert_eq!(
        a.removed,
        ["comment", "xmp", "application-data", "trailing-data"]
    );
    assert_eq!(cleaned, original);
    assert!(contains(&cleaned, b"NETSCAPE2.0"), "looping kept");
    assert_eq!(a.animated, Some(true));
    assert_eq!((a.width, a.height), (Some(20), Some(10)));
    assert_eq!(rgba_of(&cleaned), f1, "first frame");
    // A single frame is not animated.
    let (a, _) = run(&gif_bytes(&[f1]), false).expect("analysis");
    assert_eq!(a.animated, Some(false));
}

fn png_with_ihdr(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut v = PNG_SIGNATURE.to_vec();
    v.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
    v.extend_from_slice(&png_chunk(
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    v.extend_from_slice(&png_chunk(b"IEND", &[]));
    v
}

#[test]
fn huge_png_header_is_refused_before_decoding() {
    let bomb = png_with_ihdr(100_000, 100_000);
    assert_eq!(
        &bomb[29..33],
        &crc32(&bomb[12..29]).to_be_bytes(),
        "valid IHDR CRC"
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bomb.png");
    std::fs::write(&input, &bomb).unwrap();
    let started = Instant::now();
    let result = crate::pipeline::analyze_paths(
        MediaKind::Image,
        &input,
        &dir.path().join("out"),
        &limits(),
    );
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        result,
        Err(MediaError::TooManyPixels {
            width: 100_000,
            height: 100_000
        })
    );
    // One side over max_dimension is enough, even when the area is small.
    assert!(matches!(
        run(&png_with_ihdr(20_000, 1), false),
        Err(MediaError::TooManyPixels {
            width: 20_000,
            height: 1
        })
    ));
    // Within the limits, the same tiny file is simply undecodable (its IDAT is empty).
    assert!(matches!(
        run(&png_with_ihdr(4, 4), false),
        Err(MediaError::Undecodable(_))
    ));
}

/// SOI, a baseline SOF with the given size, and `scans` empty scans, then EOI.
fn jpeg_skeleton(w: u16, h: u16, scans: usize) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8];
    let mut sof = vec![8];
    sof.extend_from_slice(&h.to_be_bytes());
    sof.extend_from_slice(&w.to_be_bytes());
    sof.extend_from_slice(&[1, 1, 0x11, 0]);
    v.extend_from_slice(&segment(0xC0, &sof));
    for _ in 0..scans {
        v.extend_from_slice(&segment(0xDA, &[1, 1, 0, 0, 63, 0]));
        v.extend_from_slice(&[0x12, 0x34]);
    }
    v.extend_from_slice(&[0xFF, 0xD9]);
    v
}

#[test]
fn huge_jpeg_frame_is_refused_before_decoding() {
    let started = Instant::now();
    assert_eq!(
        run(&jpeg_skeleton(65_535, 65_535, 1), false).map(|_| ()),
        Err(MediaError::TooManyPixels {
            width: 65_535,
            height: 65_535
        })
    );
    assert!(matches!(
        run(&jpeg_skeleton(16_385, 8, 1), false),
        Err(MediaError::TooManyPixels { .. })
    ));
    assert!(started.elapsed() < Duration::from_millis(50));
    // Tighter limits apply too.
    let tight = Limits {
        max_pixels: 1000,
        ..Limits::default()
    };
    let original = jpeg_bytes(&pattern(40, 30), 80);
    assert!(matches!(
        analyze_bytes(&original, &sniff::JPEG, false, &tight),
        Err(MediaError::TooManyPixels {
            width: 40,
            height: 30
        })
    ));
}

#[test]
fn scan_bombs_and_odd_jpeg_structure_are_refused() {
    let started = Instant::now();
    assert_eq!(
        run(&jpeg_skeleton(4000, 3000, MAX_JPEG_SCANS + 1), false).map(|_| ()),
        Err(MediaError::Undecodable("JPEG: too many scans".into()))
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0xFF, 0xD8, 0xFF, 0xD9], "JPEG: no frame header"),
        (jpeg_skeleton(8, 8, 0), "JPEG: no image data"),
        (jpeg_skeleton(0, 8, 1), "JPEG: zero or deferred dimensions"),
        (
            {
                let mut v = jpeg_skeleton(8, 8, 1);
                v.truncate(v.len() - 2);
                v
            },
            "truncated JPEG (no EOI marker)",
        ),
        (
            {
                let mut v = vec![0xFF, 0xD8];
                v.extend_from_slice(&segment(0xDA, &[1, 1, 0, 0, 63, 0]));
                v
            },
            "JPEG: scan before the frame header",
        ),
        (
            {
                let mut v = jpeg_skeleton(8, 8, 1);
                v.splice(15..15, *b"garbage"); // after the frame header
                v
            },
            "JPEG: bytes between segments",
        ),
    ];
    for (bytes, msg) in cases {
        assert_eq!(
            run(&bytes, false).map(|_| ()),
            Err(MediaError::Undecodable(msg.into()))
        );
    }
}

#[test]
fn truncated_files_are_refused_without_panicking() {
    let samples: Vec<Vec<u8>> = vec![
        with_segments(
            &jpeg_bytes(&pattern(24, 16), 90),
            &[exif_app1(Some(6), true)],
        ),
        insert_png_chunks(
            &png_bytes(&rgba_pattern(12, 9)),
            &[png_chunk(b"eXIf", &exif_tiff(Some(3), true))],
        ),
        webp_lossless(&rgba_pattern(12, 9)),
        animated_webp(8, 8),
        gif_bytes(&[rgba_pattern(6, 5), rgba_pattern(6, 5)]),
    ];
    for sample in &samples {
        assert!(run(sample, false).is_ok() || run(sample, true).is_ok());
        for n in 0..sample.len() {
            let cut = &sample[..n];
            assert!(run(cut, false).is_err(), "prefix {n} of {:?}", &sample[..4]);
            let _ = run(cut, true);
        }
    }
}

#[test]
fn garbage_after_a_valid_header_is_refused() {
    let mut noise = Vec::with_capacity(4096);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..4096 {
        xorshift(&mut x);
        noise.push(x as u8);
    }
    let png = png_bytes(&rgba_pattern(12, 9));
    let jpeg = jpeg_bytes(&pattern(16, 16), 90);
    let gif = gif_bytes(&[rgba_pattern(6, 5)]);
    let webp = webp_lossless(&rgba_pattern(12, 9));
    let heads: Vec<Vec<u8>> = vec![
        png[..33].to_vec(),
        jpeg[..20].to_vec(),
        gif[..13].to_vec(),
        {
            // A VP8L chunk header claiming the whole rest of the file.
            let mut v = webp[..25].to_vec();
            v[4..8].copy_from_slice(&((17 + noise.len()) as u32).to_le_bytes());
            v[16..20].copy_from_slice(&((5 + noise.len()) as u32).to_le_bytes());
            v
        },
    ];
    for head in heads {
        let mut bytes = head.clone();
        bytes.extend_from_slice(&noise);
        match run(&bytes, false) {
            Err(MediaError::Undecodable(_)) => {}
            other => panic!("{:?}: {other:?}", &head[..4]),
        }
    }
    // Noise inside a JPEG's entropy-coded data: decoders may conceal or refuse; either
    // way no panic, and an accepted file still has a thumbnail.
    let mut corrupt = jpeg_bytes(&pattern(64, 64), 90);
    let mid = corrupt.len() / 2;
    for (i, b) in noise.iter().take(64).enumerate() {
        if *b != 0xFF {
            corrupt[mid + i] = *b;
        }
    }
    if let Ok((a, _)) = run(&corrupt, false) {
        assert!(a.thumbnail.is_some());
    }
}

#[test]
fn gif_and_webp_limits_are_checked_per_frame() {
    // A 10x10 screen holding a 65535x65535 frame.
    let mut gif = b"GIF89a\x0a\0\x0a\0\0\0\0".to_vec();
    gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 2, 1, 0, 0]);
    gif.push(0x3B);
    assert!(matches!(
        run(&gif, false),
        Err(MediaError::TooManyPixels {
            width: 65_535,
            height: 65_535
        })
    ));
    // A VP8X canvas of 2^24 x 2^24.
    let webp = riff_webp(&[(b"VP8X", &vp8x(0, 1 << 24, 1 << 24)), (b"VP8L", &[0x2F; 5])]);
    assert!(matches!(
        run(&webp, false),
        Err(MediaError::TooManyPixels { .. })
    ));
}

#[test]
fn other_types_are_not_images() {
    let pdf = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n";
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("photo.jpg");
    std::fs::write(&input, pdf).unwrap();
    let out = dir.path().join("out");
    assert_eq!(
        crate::pipeline::analyze_paths(MediaKind::Image, &input, &out, &limits()),
        Err(MediaError::NotAllowed {
            kind: "image".into(),
            sniffed: "pdf".into()
        })
    );
    assert!(matches!(
        analyze_bytes(pdf, &sniff::PDF, false, &limits()),
        Err(MediaError::NotAllowed { .. })
    ));
}

#[test]
fn thumbnails_fit_the_box_and_flatten_alpha() {
    assert_eq!(fit(4000, 3000, 100), (100, 75));
    assert_eq!(fit(300, 1200, 100), (25, 100));
    assert_eq!(fit(10_000, 1, 100), (100, 1));
    assert_eq!(fit(80, 60, 100), (80, 60));
    assert_eq!(fit(80, 60, 0), (1, 1));
    let tall = png_bytes(&rgba_pattern(300, 1200));
    let (a, _) = run(&tall, false).unwrap();
    assert_eq!(thumb_of(&a).dimensions(), (25, 100));
    // Fully transparent pixels become white, not black.
    let clear = png_bytes(&RgbaImage::from_pixel(50, 50, Rgba([0, 0, 0, 0])));
    let (a, _) = run(&clear, false).unwrap();
    let p = *thumb_of(&a).get_pixel(25, 25);
    assert!(p.0.iter().all(|&c| c > 240), "{p:?}");
}

#[test]
fn fuzz_entry_survives_samples() {
    fuzz_entry(b"");
    fuzz_entry(&jpeg_bytes(&pattern(8, 8), 50));
    fuzz_entry(&png_with_ihdr(100_000, 100_000));
    fuzz_entry(&animated_webp(4, 4));
    let gif = gif_bytes(&[rgba_pattern(3, 3)]);
    for n in (0..gif.len()).step_by(7) {
        fuzz_entry(&gif[..n]);
    }
}

/// Random byte flips and cuts of valid files with metadata: the structure walkers and the
/// decoders behind them must answer every variant without panicking. A cheap stand-in for
/// the fuzz targets; `PHOTO_MUTATIONS` raises the count.
#[test]
fn mutated_files_never_panic() {
    let rounds: usize = std::env::var("PHOTO_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let small = Limits {
        max_pixels: 1 << 20,
        ..Limits::default()
    };
    let samples: Vec<Vec<u8>> = vec![
        with_segments(
            &jpeg_bytes(&pattern(24, 16), 90),
            &[exif_app1(Some(6), true), segment(0xFE, b"c")],
        ),
        insert_png_chunks(
            &png_bytes(&rgba_pattern(12, 9)),
            &[
                png_chunk(b"eXIf", &exif_tiff(Some(3), true)),
                png_chunk(b"tEXt", b"a\0b"),
            ],
        ),
        riff_webp(&[
            (b"VP8X", &vp8x(0x10 | VP8X_EXIF, 12, 9)),
            (b"VP8L", &vp8l_payload(&webp_lossless(&rgba_pattern(12, 9)))),
            (b"EXIF", &exif_tiff(Some(6), true)),
        ]),
        animated_webp(8, 8),
        gif_bytes(&[rgba_pattern(6, 5), rgba_pattern(6, 5)]),
    ];
    let mut x = 0xD1B5_4A32_D192_ED03u64;
    let mut next = move || {
        xorshift(&mut x);
        x
    };
    for sample in &samples {
        let sniffed = sniff::sniff(sample);
        for _ in 0..rounds {
            let mut m = sample.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % m.len() as u64) as usize;
                m[at] = next() as u8;
            }
            if next() % 4 == 0 {
                m.truncate((next() % m.len() as u64) as usize);
            }
            for sticker in [false, true] {
                let _ = analyze_bytes(&m, &sniffed, sticker, &small);
            }
        }
    }
}

/// 12-megapixel JPEG (noise + gradient, quality 90) → thumbnail, as the issue benchmarks
/// against `vipsthumbnail`. Run with
/// `cargo test --release --lib photo::tests::bench_thumbnail_12mp -- --ignored --nocapture`;
/// the JPEG is left at `$PHOTO_BENCH_JPEG` (default /tmp/photo-bench-12mp.jpg) for
/// `vipsthumbnail --size 100 -o tn.jpg[Q=70]` to compare.
#[test]
#[ignore = "benchmark; run in release"]
fn bench_thumbnail_12mp() {
    let path = std::env::var("PHOTO_BENCH_JPEG")
        .unwrap_or_else(|_| "/tmp/photo-bench-12mp.jpg".to_string());
    let (w, h) = (4000u32, 3000u32);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let img = RgbImage::from_fn(w, h, |px, py| {
        xorshift(&mut x);
        let n = (x & 0x3F) as u32;
        Rgb([
            ((px * 200 / w) + n) as u8,
            ((py * 200 / h) + n) as u8,
            (((px + py) * 100 / (w + h)) + n) as u8,
        ])
    });
    let jpeg = jpeg_bytes(&img, 90);
    std::fs::write(&path, &jpeg).unwrap();
    println!("{path}: {} bytes", jpeg.len());
    let mut times = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let (a, _) = analyze_bytes(&jpeg, &sniff::JPEG, false, &limits()).unwrap();
        times.push(started.elapsed());
        assert_eq!(thumb_of(&a).dimensions(), (100, 75));
    }
    times.sort();
    println!(
        "analyze (scan + shrink-on-load decode + thumbnail + blurhash): min {:?} median {:?}",
        times[0], times[3]
    );
    let started = Instant::now();
    let scan = scan_jpeg(&jpeg, &limits()).unwrap();
    println!("structure walk alone: {:?}", started.elapsed());
    let started = Instant::now();
    let _ = decode_full(&jpeg, ImageFormat::Jpeg, &limits()).unwrap();
    println!(
        "for comparison, full-size decode alone (zune-jpeg): {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let _ = decode_jpeg_scaled(&jpeg, &scan, &limits()).unwrap();
    println!(
        "1/8-scale decode alone (jpeg-decoder): {:?}",
        started.elapsed()
    );
}
