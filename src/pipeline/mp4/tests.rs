//! Unit tests of the MP4/3GP parser: hand-built and real files against ffprobe's figures,
//! hostile box structures, and key-frame location through the sample tables.

use super::boxes::{fourcc, parse_esds, rotation};
use super::*;
use crate::pipeline::testing::{undecodable, xorshift};

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

const ROT90_MP4: &[u8] = include_bytes!("../../../tests/media/av/rot90.mp4");
const PLAIN_3GP: &[u8] = include_bytes!("../../../tests/media/av/plain.3gp");
const TONE_M4A: &[u8] = include_bytes!("../../../tests/media/av/tone.m4a");

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
            xorshift(&mut x);
            let i = (x as usize) % f.len();
            f[i] = (x >> 32) as u8;
        }
        fuzz_entry(&f);
    }
}
