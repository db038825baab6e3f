//! Seal-for-me uploads (`POST /v1/media?seal=whatsapp|signal`) end to end against the real
//! binary, with samples made by real tools (ffmpeg/ffprobe, sox, ImageMagick, espeak-ng,
//! exiftool) and the extracted metadata checked against those tools:
//!
//! * every kind in both E2EE formats: status, headers, `kind`/`format`/`mime`/`sniffed`/`size`,
//!   dimensions, durations, codecs, rotation, fast start, waveform, thumbnail, blurhash;
//! * the sealed blob, downloaded with a token, opens with `interop-media open` to exactly the
//!   plaintext the response describes (stripped of GPS and camera metadata for photos);
//! * a hostile corpus (pixel floods, truncations, MP4 box bombs, lying Ogg granules, polyglots)
//!   answered with a stable 4xx code within a time bound, nothing stored, service still up;
//! * the media key is never stored or logged, and no plaintext outlives its request.
//!
//! Each case also asserts that nothing partial became visible (no new object under
//! `objects/media` on a refusal). The samples are generated once per test binary; when a tool
//! is missing the tests that need it are skipped with a message, except under `CI=true`, where
//! a missing tool is a failure.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]
// `atexit` removes the shared samples directory (statics are never dropped).
#![allow(unsafe_code)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use common::server::BIN;
use common::{Service, ServiceBuilder, block_on, http};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Every hostile input must be answered within this (the pixel flood is refused from its
/// header, the box bombs from their first boxes): a decoder that starts working on them would
/// take seconds.
const HOSTILE_BUDGET: Duration = Duration::from_secs(2);

/// Allowed difference between our duration and the tools' (ms).
const DURATION_TOLERANCE_MS: f64 = 20.0;

/// Length of every audio sample made from `tone.wav` (sox `synth 3`), in seconds.
const TONE_SECONDS: f64 = 3.0;

// ---------------------------------------------------------------- tools and samples

const TOOLS: &[&str] = &[
    "ffmpeg",
    "ffprobe",
    "sox",
    "convert",
    "identify",
    "espeak-ng",
    "exiftool",
];

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|d| {
        std::fs::metadata(d.join(tool))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Tools that are missing. `convert` must be ImageMagick's, not a stand-in of the same name.
fn missing_tools() -> Vec<String> {
    let mut missing: Vec<String> = TOOLS
        .iter()
        .filter(|t| !on_path(t))
        .map(|t| t.to_string())
        .collect();
    if on_path("convert") {
        let im = Command::new("convert")
            .arg("-version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ImageMagick"));
        if !im {
            missing.push("convert (ImageMagick)".into());
        }
    }
    missing
}

/// Media samples made by real tools, once per test binary.
struct Samples {
    dir: PathBuf,
}

impl Samples {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_else(|e| panic!("sample {name}: {e}"))
    }
}

static SAMPLES: OnceLock<Result<Samples, String>> = OnceLock::new();
static SAMPLES_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_samples_dir() {
    if let Some(dir) = SAMPLES_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The samples, or `None` (with a message) when a tool is missing outside CI.
fn samples() -> Option<&'static Samples> {
    let missing = missing_tools();
    if !missing.is_empty() {
        if ci() {
            panic!(
                "CI: the seal-for-me tests need {missing:?} (Debian: ffmpeg sox imagemagick \
                 espeak-ng libimage-exiftool-perl; .ci/run installs them)"
            );
        }
        // Written to the real stderr once (the test harness captures `eprintln!` of passing
        // tests, and a skip must not go unnoticed).
        static SKIP_NOTICE: OnceLock<()> = OnceLock::new();
        SKIP_NOTICE.get_or_init(|| {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED seal-for-me media tests: tools missing: {missing:?}. Install ffmpeg, \
                 sox, imagemagick, espeak-ng and libimage-exiftool-perl (under CI=true this \
                 fails)."
            );
        });
        eprintln!("SKIPPED: media tools missing: {missing:?}");
        return None;
    }
    match SAMPLES.get_or_init(generate_samples) {
        Ok(s) => Some(s),
        Err(e) => panic!("generating media samples failed (all tools are present): {e}"),
    }
}

/// Run a tool in `dir`; its stdout, or an error with its stderr.
fn tool(dir: &Path, prog: &str, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new(prog)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{prog} {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

fn generate_samples() -> Result<Samples, String> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("interop-media-seal-samples-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    // Statics are never dropped: remove the directory when the test binary exits.
    let _ = SAMPLES_DIR.set(dir.clone());
    // SAFETY: registers a plain `extern "C" fn` with no captured state.
    unsafe {
        libc::atexit(remove_samples_dir);
    }
    let d = dir.as_path();
    // A command line without quoting (arguments with spaces go through `tool`).
    let run = |line: &str| {
        let mut words = line.split_whitespace();
        let prog = words.next().unwrap();
        let mut args: Vec<&str> = words.collect();
        if prog == "ffmpeg" {
            args.splice(0..0, ["-nostdin", "-hide_banner", "-v", "error", "-y"]);
        }
        tool(d, prog, &args).map(|_| ())
    };

    // Photo: 640x480 JPEG with GPS, camera make/model and Orientation=6 (displayed 480x640).
    run("convert -seed 7 -size 640x480 plasma:fractal -quality 90 photo.jpg")?;
    run(
        "exiftool -q -overwrite_original -n -GPSLatitude=52.516275 -GPSLatitudeRef=N \
         -GPSLongitude=13.377704 -GPSLongitudeRef=E -Orientation=6 -Make=InteropTestCam \
         -Model=T-1000 photo.jpg",
    )?;
    // A plain JPEG (no EXIF) for the appended-ZIP polyglot.
    run("convert -seed 3 -size 160x120 plasma:fractal -quality 85 plain.jpg")?;
    // PNG with a text comment chunk, and a larger noisy one to truncate.
    tool(
        d,
        "convert",
        &[
            "-size",
            "300x200",
            "gradient:red-blue",
            "-depth",
            "8",
            "-set",
            "comment",
            "shot at Brandenburger Tor",
            "comment.png",
        ],
    )?;
    run("convert -seed 5 -size 200x150 plasma:fractal -depth 8 noise.png")?;
    // WebP: a static image, a static 512x512 sticker, an animated 512x512 sticker; a GIF.
    run(
        "ffmpeg -f lavfi -i testsrc=size=320x240:rate=1 -frames:v 1 -c:v libwebp -quality 80 \
         static.webp",
    )?;
    run(
        "ffmpeg -f lavfi -i testsrc=size=512x512:rate=1 -frames:v 1 -c:v libwebp -quality 60 \
         sticker.webp",
    )?;
    run(
        "ffmpeg -f lavfi -i testsrc=size=512x512:rate=10 -t 1 -c:v libwebp_anim -loop 0 \
         -quality 40 anim.webp",
    )?;
    run("ffmpeg -f lavfi -i testsrc=size=160x120:rate=5 -t 1 anim.gif")?;

    // Voice notes: spoken (espeak-ng) and silent, Ogg Opus 48 kHz mono as WhatsApp records.
    tool(
        d,
        "espeak-ng",
        &[
            "-w",
            "speech.wav",
            "Hello, this is a voice note for the interop media test suite.",
        ],
    )?;
    run("ffmpeg -i speech.wav -c:a libopus -b:a 24k -ar 48000 -ac 1 voice.ogg")?;
    run("ffmpeg -f lavfi -i anullsrc=r=48000:cl=mono -t 2 -c:a libopus -b:a 24k silence.ogg")?;

    // Audio: a 3 s two-tone stereo signal in every allowed codec.
    run("sox -n -r 44100 -b 16 -c 2 tone.wav synth 3 sine 440 sine 660")?;
    run("ffmpeg -i tone.wav -c:a libmp3lame -b:a 64k tone.mp3")?;
    run("ffmpeg -i tone.wav -c:a aac -b:a 64k tone.m4a")?;
    run("ffmpeg -i tone.wav -c:a aac -b:a 64k -f adts tone.aac")?;
    run("ffmpeg -i tone.wav -c:a libvorbis -q:a 2 tone.ogg")?;
    // AMR-NB: Debian's ffmpeg 5.1 has no libopencore_amrnb *encoder* (decoder only); sox's
    // amr-nb format (libsox-fmt-base, which `sox` depends on) encodes with libopencore-amrnb.
    run("sox tone.wav -r 8000 -c 1 -t amr-nb tone.amr")?;

    // Video: H.264 + AAC with and without faststart, rotated, and a 3GP (H.263 + AMR-NB).
    let av = "ffmpeg -f lavfi -i testsrc=size=320x240:rate=25 -f lavfi \
              -i sine=frequency=440:sample_rate=44100 -t 2 -c:v libx264 -preset ultrafast \
              -pix_fmt yuv420p -c:a aac -b:a 64k";
    run(&format!("{av} -movflags +faststart fast.mp4"))?;
    run(&format!("{av} slow.mp4"))?;
    // ffmpeg 5.1 turns the legacy `rotate` tag into a display matrix whose angle is
    // counter-clockwise: rotate=-90 writes the matrix {0,1,-1,0} a phone writes for a portrait
    // recording (90° clockwise; ffprobe reports rotation=-90), rotate=90 the opposite (270°).
    run("ffmpeg -i fast.mp4 -c copy -metadata:s:v:0 rotate=-90 -movflags +faststart rot90.mp4")?;
    run("ffmpeg -i fast.mp4 -c copy -metadata:s:v:0 rotate=90 -movflags +faststart rot270.mp4")?;
    run("ffmpeg -i tone.wav -c:a aac -b:a 32k -brand isom -f mp4 audio-only.mp4")?;
    run("sox tone.wav -r 8000 -c 1 -t amr-nb clip-audio.amr")?;
    run(
        "ffmpeg -f lavfi -i testsrc=size=176x144:rate=15 -i clip-audio.amr -t 2 -c:v h263 \
         -c:a copy clip.3gp",
    )?;

    // Video thumbnails: H.264 in the profiles phones record (Baseline, Main, High), a half
    // turn (quarter turns: rot90/rot270 above), a 3GP with H.264, and what is not decoded:
    // HEVC and 10-bit H.264 (High 10).
    let vt = "ffmpeg -f lavfi -i testsrc=size=320x240:rate=25 -f lavfi -i sine=sample_rate=44100 \
              -t 1 -c:a aac -b:a 32k -c:v libx264 -pix_fmt yuv420p";
    for profile in ["baseline", "main", "high"] {
        run(&format!(
            "{vt} -profile:v {profile} -movflags +faststart h264-{profile}.mp4"
        ))?;
    }
    run("ffmpeg -i h264-high.mp4 -c copy -metadata:s:v:0 rotate=180 rot180.mp4")?;
    run(
        "ffmpeg -f lavfi -i testsrc=size=176x144:rate=15 -i clip-audio.amr -t 2 -c:v libx264 \
         -profile:v baseline -pix_fmt yuv420p -c:a copy clip-h264.3gp",
    )?;
    run(
        "ffmpeg -i h264-high.mp4 -c:a copy -c:v libx265 -x265-params log-level=error -tag:v hvc1 hevc.mp4",
    )?;
    run(
        "ffmpeg -i h264-high.mp4 -c:a copy -c:v libx264 -profile:v high10 -pix_fmt yuv420p10le h264-high10.mp4",
    )?;
    // One 7680x4320 frame (33 Mpx, under media.max_pixels): more than a 128 MiB cage decodes.
    run(
        "ffmpeg -f lavfi -i color=c=navy:s=7680x4320:r=1 -f lavfi -i sine=sample_rate=8000 \
         -t 1 -c:a aac -c:v libx264 -preset ultrafast -pix_fmt yuv420p 8k.mp4",
    )?;

    // A PDF document (ImageMagick's policy forbids writing PDF; it is small enough to write).
    std::fs::write(d.join("doc.pdf"), minimal_pdf()).map_err(|e| e.to_string())?;
    let pdf: Value = serde_json::from_slice(&tool(d, "exiftool", &["-json", "-n", "doc.pdf"])?)
        .map_err(|e| e.to_string())?;
    if pdf[0]["PageCount"] != 1 {
        return Err(format!(
            "exiftool does not read doc.pdf as a 1-page PDF: {pdf}"
        ));
    }

    for entry in std::fs::read_dir(d).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let len = entry.metadata().map_err(|e| e.to_string())?.len();
        let name = entry.file_name().to_string_lossy().into_owned();
        if len >= 1 << 20 {
            return Err(format!(
                "sample {name} is {len} bytes; keep samples under 1 MB"
            ));
        }
    }
    eprintln!("seal samples generated in {:?}", started.elapsed());
    Ok(Samples { dir })
}

/// A one-page PDF with a correct cross-reference table.
fn minimal_pdf() -> Vec<u8> {
    let content = "BT /F1 18 Tf 20 40 Td (interop-media test document) Tj ET";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 100] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_string(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{obj}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        pdf.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

// ---------------------------------------------------------------- what the tools say

fn ffprobe(path: &Path) -> Value {
    let out = tool(
        Path::new("/"),
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_packets",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
            path.to_str().unwrap(),
        ],
    )
    .unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn stream<'a>(probe: &'a Value, codec_type: &str) -> &'a Value {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == codec_type)
        .unwrap_or_else(|| panic!("no {codec_type} stream in {probe}"))
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.as_f64().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

/// Width and height as displayed (EXIF orientations 5–8 turn the picture a quarter), of the
/// first frame's canvas, per ImageMagick.
fn identify_display(path: &Path) -> (u64, u64) {
    let spec = format!("{}[0]", path.display());
    let out = tool(
        Path::new("/"),
        "identify",
        &["-format", "%W %H %[orientation]\n", &spec],
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let f: Vec<&str> = text.lines().next().unwrap().split(' ').collect();
    let (w, h): (u64, u64) = (f[0].parse().unwrap(), f[1].parse().unwrap());
    if matches!(f[2], "LeftTop" | "RightTop" | "RightBottom" | "LeftBottom") {
        (h, w)
    } else {
        (w, h)
    }
}

/// `(format, width, height)` of a single image per ImageMagick.
fn identify_plain(path: &Path) -> (String, u64, u64) {
    let out = tool(
        Path::new("/"),
        "identify",
        &["-format", "%m %w %h\n", path.to_str().unwrap()],
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let f: Vec<&str> = text.lines().next().unwrap().split(' ').collect();
    (
        f[0].to_string(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
    )
}

/// ImageMagick's signature of the decoded pixels (SHA-256), first frame.
fn pixel_signature(path: &Path) -> String {
    let spec = format!("{}[0]", path.display());
    String::from_utf8(tool(Path::new("/"), "identify", &["-format", "%#", &spec]).unwrap()).unwrap()
}

fn exif_json(path: &Path) -> serde_json::Map<String, Value> {
    let out = tool(
        Path::new("/"),
        "exiftool",
        &["-json", "-n", path.to_str().unwrap()],
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    v[0].as_object().unwrap().clone()
}

// ---------------------------------------------------------------- the API

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

struct Api {
    base: String,
    key: String,
    c: reqwest::Client,
}

/// A request bounded in time (a hung service fails the test instead of hanging it).
async fn send(rb: reqwest::RequestBuilder) -> reqwest::Response {
    tokio::time::timeout(Duration::from_secs(60), rb.send())
        .await
        .expect("request took over 60 s")
        .expect("request failed")
}

impl Api {
    fn new(svc: &Service) -> Api {
        Api::with_key(svc, &svc.partner_key)
    }

    fn with_key(svc: &Service, key: &str) -> Api {
        Api {
            base: svc.base.clone(),
            key: key.to_string(),
            c: http(),
        }
    }

    /// `POST /v1/media?seal=FORMAT` with `X-Media-Kind: KIND`.
    async fn seal(&self, kind: &str, format: &str, body: Vec<u8>) -> reqwest::Response {
        send(
            self.c
                .post(format!("{}/v1/media?seal={format}", self.base))
                .bearer_auth(&self.key)
                .header("X-Media-Kind", kind)
                .body(body),
        )
        .await
    }

    async fn token_url(&self, id: &str) -> String {
        let r = send(
            self.c
                .post(format!("{}/v1/media/{id}/tokens", self.base))
                .bearer_auth(&self.key)
                .json(&json!({"audience": "t"})),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        v["url"].as_str().unwrap().to_string()
    }
}

/// Assert an RFC 9457 problem with this status and code; returns the body.
async fn assert_problem(r: reqwest::Response, status: StatusCode, code: &str) -> Value {
    let got = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    assert_eq!(ct.as_deref(), Some("application/problem+json"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["code"], code, "{text}");
    assert_eq!(v["status"], status.as_u16());
    v
}

/// Stored media objects of a local-file service.
fn media_objects(svc: &Service) -> Vec<PathBuf> {
    common::s3::files_under(&svc.data_dir.join("objects").join("media"))
}

/// A service and a scratch directory for one test.
struct Ctx {
    svc: Service,
    api: Api,
    work: tempfile::TempDir,
}

impl Ctx {
    fn new(svc: Service) -> Ctx {
        let api = Api::new(&svc);
        let work = tempfile::Builder::new()
            .prefix("interop-media-seal-test-")
            .tempdir()
            .unwrap();
        Ctx { svc, api, work }
    }

    fn scratch(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.work.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Seal-for-me upload that must succeed: 201, `Cache-Control: no-store`, the E2EE fields
    /// consistent with the format, exactly one new stored object. Returns the body.
    async fn seal_ok(&self, kind: &str, format: &str, body: &[u8]) -> Value {
        let before = media_objects(&self.svc).len();
        let r = self.api.seal(kind, format, body.to_vec()).await;
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{kind}/{format}: {text}");
        assert_eq!(
            headers.get("cache-control").map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "the 201 carries the media key"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        let id = v["id"].as_str().unwrap();
        assert_eq!(
            headers
                .get("location")
                .map(|v| v.to_str().unwrap().to_string()),
            Some(format!("/v1/media/{id}"))
        );
        assert_eq!(v["kind"], kind, "{text}");
        assert_eq!(v["format"], format, "{text}");
        let key = STANDARD.decode(v["key"].as_str().unwrap()).unwrap();
        assert_eq!(
            key.len(),
            if format == "whatsapp" { 32 } else { 64 },
            "{format} key"
        );
        assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(v["enc_sha256"].as_str().unwrap().len(), 64);
        let d = &v["descriptor"];
        assert_eq!(d["format"], format);
        assert_eq!(d["kind"], kind);
        assert_eq!(d["key"], v["key"]);
        assert_eq!(d["file_length"], v["size"]);
        assert_eq!(d["blob_length"], v["enc_size"]);
        assert_eq!(d["mime"], v["mime"]);
        let b64_hex = |x: &Value| hex::encode(STANDARD.decode(x.as_str().unwrap()).unwrap());
        assert_eq!(b64_hex(&d["file_sha256"]), v["sha256"].as_str().unwrap());
        assert_eq!(
            b64_hex(&d["file_enc_sha256"]),
            v["enc_sha256"].as_str().unwrap()
        );
        // The descriptor carries the same description for `open`'s users.
        for field in [
            "sniffed",
            "mime",
            "width",
            "height",
            "duration_ms",
            "blurhash",
        ] {
            assert_eq!(
                d["metadata"].get(field),
                v.get(field),
                "descriptor metadata {field}"
            );
        }
        let streams = matches!(kind, "video" | "audio" | "voice");
        assert_eq!(
            v.get("sidecar").is_some(),
            format == "whatsapp" && streams,
            "WhatsApp sidecar for video/audio/voice only: {text}"
        );
        assert_eq!(d.get("sidecar"), v.get("sidecar"));
        if format == "signal" && kind == "video" {
            assert!(
                d.get("incremental_mac").is_some(),
                "Signal video: incremental MAC"
            );
        }
        let removed = v["removed"].as_array().expect("removed is a list");
        if removed.is_empty() {
            assert_eq!(
                v["size"],
                body.len(),
                "nothing removed: size is the upload's"
            );
            assert_eq!(v["sha256"], sha_hex(body).as_str());
        }
        assert_eq!(media_objects(&self.svc).len(), before + 1, "one new object");
        v
    }

    /// Mint a token, download the blob, check it against the response, open it with the CLI;
    /// the plaintext.
    async fn open(&self, v: &Value) -> Vec<u8> {
        let id = v["id"].as_str().unwrap();
        let url = self.api.token_url(id).await;
        let r = send(self.api.c.get(&url)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let blob = r.bytes().await.unwrap().to_vec();
        assert_eq!(blob.len() as u64, v["enc_size"].as_u64().unwrap());
        assert_eq!(sha_hex(&blob), v["enc_sha256"].as_str().unwrap());
        let meta: Value = send(
            self.api
                .c
                .get(format!("{}/v1/media/{id}", self.api.base))
                .bearer_auth(&self.api.key),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(meta["size"], v["enc_size"], "{meta}");
        assert_eq!(meta["sha256"], v["enc_sha256"], "{meta}");

        let blob_path = self.scratch(&format!("{id}.blob"), &blob);
        let desc_path = self.scratch(
            &format!("{id}.json"),
            v["descriptor"].to_string().as_bytes(),
        );
        let out_path = self.work.path().join(format!("{id}.out"));
        let out = Command::new(BIN)
            .args(["open", blob_path.to_str().unwrap(), "--descriptor"])
            .arg(&desc_path)
            .arg("-o")
            .arg(&out_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "interop-media open: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let plain = std::fs::read(&out_path).unwrap();
        assert_eq!(
            sha_hex(&plain),
            v["sha256"].as_str().unwrap(),
            "opened sha256"
        );
        assert_eq!(
            plain.len() as u64,
            v["size"].as_u64().unwrap(),
            "opened size"
        );
        plain
    }

    /// Seal, open, and when nothing was removed check the plaintext is the upload itself.
    async fn seal_open(&self, kind: &str, format: &str, body: &[u8]) -> (Value, Vec<u8>) {
        let v = self.seal_ok(kind, format, body).await;
        let plain = self.open(&v).await;
        if v["removed"].as_array().unwrap().is_empty() {
            assert!(
                plain == body,
                "{kind}/{format}: nothing removed, plaintext differs"
            );
        }
        (v, plain)
    }
}

/// A response body without its bulky or secret fields, for messages.
fn brief(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for bulky in ["descriptor", "thumbnail", "key", "sidecar", "waveform"] {
            if o.contains_key(bulky) {
                o.insert(bulky.into(), json!("…"));
            }
        }
    }
    v
}

fn assert_type(v: &Value, sniffed: &str, mime: &str) {
    assert_eq!(v["sniffed"], sniffed, "{v}");
    assert_eq!(v["mime"], mime, "{v}");
}

fn removed(v: &Value) -> Vec<String> {
    v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Blurhash: base83, and as long as its component count says (4 + 2 × x × y).
fn check_blurhash(v: &Value) {
    const B83: &str =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";
    let h = v["blurhash"]
        .as_str()
        .unwrap_or_else(|| panic!("no blurhash: {v}"));
    assert!(
        h.chars().all(|c| B83.contains(c)),
        "blurhash {h:?} is not base83"
    );
    let flag = B83.find(h.chars().next().unwrap()).unwrap();
    let (nx, ny) = (flag % 9 + 1, flag / 9 + 1);
    assert_eq!(
        h.len(),
        4 + 2 * nx * ny,
        "blurhash {h:?} length for {nx}x{ny}"
    );
}

/// Thumbnail: a JPEG per ImageMagick, longest side 100, the picture's displayed aspect.
fn check_thumbnail(ctx: &Ctx, v: &Value, w: u64, h: u64) {
    let b64 = v["thumbnail"]
        .as_str()
        .unwrap_or_else(|| panic!("no thumbnail: {v}"));
    let jpeg = STANDARD.decode(b64).unwrap();
    assert!(
        jpeg.starts_with(&[0xFF, 0xD8, 0xFF]),
        "thumbnail is not a JPEG"
    );
    let path = ctx.scratch(&format!("thumb-{}.jpg", v["id"].as_str().unwrap()), &jpeg);
    let (fmt, tw, th) = identify_plain(&path);
    assert_eq!(fmt, "JPEG");
    assert_eq!(tw.max(th), 100, "thumbnail {tw}x{th} for {w}x{h}");
    let expect_short = ((100 * w.min(h)) as f64 / w.max(h) as f64).round() as i64;
    assert!(
        (tw.min(th) as i64 - expect_short).abs() <= 1,
        "thumbnail {tw}x{th} does not keep the aspect of {w}x{h}"
    );
    assert_eq!(
        tw >= th,
        w >= h,
        "thumbnail {tw}x{th} turned unlike {w}x{h}"
    );
}

/// An image or sticker response against ImageMagick.
fn check_image(ctx: &Ctx, v: &Value, sample: &Path) {
    let (w, h) = identify_display(sample);
    assert_eq!(v["width"], w, "width vs identify: {v}");
    assert_eq!(v["height"], h, "height vs identify: {v}");
    check_thumbnail(ctx, v, w, h);
    check_blurhash(v);
    assert!(v.get("duration_ms").is_none());
}

fn duration_ms(v: &Value) -> f64 {
    v["duration_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no duration_ms: {v}")) as f64
}

/// Audio codec names in the API for ffprobe's.
fn api_codec(ffprobe_codec: &str) -> &str {
    match ffprobe_codec {
        "amr_nb" => "amr-nb",
        "amr_wb" => "amr-wb",
        other => other,
    }
}

/// An audio or voice response against ffprobe.
fn check_audio(v: &Value, sample: &Path) {
    let p = ffprobe(sample);
    let a = stream(&p, "audio");
    let codec = a["codec_name"].as_str().unwrap();
    assert_eq!(v["audio"]["codec"], api_codec(codec), "{v}");
    assert_eq!(
        v["audio"]["sample_rate"],
        num(&a["sample_rate"]) as u64,
        "{v}"
    );
    assert_eq!(v["audio"]["channels"], a["channels"], "{v}");
    let got = duration_ms(v);
    let name = sample.file_name().unwrap().to_str().unwrap();
    // ffprobe estimates an ADTS stream's duration from the bitrate ("may be inaccurate"); the
    // exact figure is its frame count × 1024 samples.
    let reference = if name.ends_with(".aac") {
        num(&a["nb_read_packets"]) * 1024.0 / num(&a["sample_rate"]) * 1000.0
    } else {
        num(&p["format"]["duration"]) * 1000.0
    };
    eprintln!("{name}: duration {got} ms, ffprobe {reference:.1} ms");
    if (got - reference).abs() <= DURATION_TOLERANCE_MS {
        return;
    }
    // MP3 and AAC carry encoder priming and padding: LAME writes 1105 samples of delay plus
    // padding up to a whole 1152-sample frame (ffprobe counts the frames: 3.030 s for 3 s of
    // audio), and ADTS has no edit list to say the first 1024 samples are priming (3.04 s).
    // The audio's real length, 3 s, is then just as right as the frame count, so for these
    // two codecs a duration within 20 ms of the source's length is accepted instead; nothing
    // else is loosened.
    let primed = matches!(codec, "mp3" | "aac");
    assert!(
        primed && (got - TONE_SECONDS * 1000.0).abs() <= DURATION_TOLERANCE_MS,
        "{name}: duration {got} ms, ffprobe {reference:.1} ms (source {TONE_SECONDS} s): {v}"
    );
}

fn check_waveform(v: &Value) -> Vec<u64> {
    let wf: Vec<u64> = v["waveform"]
        .as_array()
        .unwrap_or_else(|| panic!("voice note without waveform: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(wf.len(), 64, "{wf:?}");
    assert!(wf.iter().all(|&x| x <= 100), "{wf:?}");
    wf
}

/// Top-level boxes of an MP4: `(offset, size, type)`.
fn top_boxes(mp4: &[u8]) -> Vec<(usize, usize, [u8; 4])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 8 <= mp4.len() {
        let size = u32::from_be_bytes(mp4[i..i + 4].try_into().unwrap()) as usize;
        let ty: [u8; 4] = mp4[i + 4..i + 8].try_into().unwrap();
        assert!(size >= 8, "sample uses only 32-bit box sizes");
        out.push((i, size, ty));
        i += size;
    }
    out
}

/// A video response against ffprobe (and the file's own box order for fast start).
fn check_video(v: &Value, sample: &Path) {
    let p = ffprobe(sample);
    let vs = stream(&p, "video");
    let aus = stream(&p, "audio");
    // ffprobe reports the display matrix angle counter-clockwise; the API clockwise.
    let ccw = vs["side_data_list"]
        .as_array()
        .and_then(|l| l.iter().find_map(|s| s["rotation"].as_i64()))
        .unwrap_or(0);
    let cw = (-ccw).rem_euclid(360) as u64;
    let vid = &v["video"];
    assert_eq!(vid["rotation"], cw, "rotation vs ffprobe's {ccw}: {v}");
    let (cw_w, cw_h) = (
        vs["width"].as_u64().unwrap(),
        vs["height"].as_u64().unwrap(),
    );
    let (w, h) = if cw % 180 == 90 {
        (cw_h, cw_w)
    } else {
        (cw_w, cw_h)
    };
    assert_eq!(v["width"], w, "displayed width: {v}");
    assert_eq!(v["height"], h, "displayed height: {v}");
    assert_eq!(vid["video_codec"], vs["codec_tag_string"], "{v}");
    assert_eq!(vid["audio_codec"], aus["codec_tag_string"], "{v}");
    assert_eq!(vid["brand"], p["format"]["tags"]["major_brand"], "{v}");
    let bytes = std::fs::read(sample).unwrap();
    let boxes = top_boxes(&bytes);
    let pos = |t: &[u8; 4]| boxes.iter().position(|b| &b.2 == t).unwrap();
    assert_eq!(vid["fast_start"], pos(b"moov") < pos(b"mdat"), "{v}");
    let expect = num(&p["format"]["duration"]) * 1000.0;
    let got = duration_ms(v);
    assert!(
        (got - expect).abs() <= DURATION_TOLERANCE_MS,
        "video duration {got} ms, ffprobe {expect:.1} ms"
    );
}

// ---------------------------------------------------------------- hostile inputs

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Ogg's page CRC: CRC-32 polynomial 0x04C11DB7, not reflected, initial value 0, no final xor.
fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn png_chunk(ty: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = ty.to_vec();
    body.extend_from_slice(data);
    v.extend_from_slice(&body);
    v.extend_from_slice(&crc32(&body).to_be_bytes());
    v
}

/// A zlib stream holding `data` in one stored block.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let len = data.len() as u16;
    let mut v = vec![0x78, 0x01, 0x01];
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&(!len).to_le_bytes());
    v.extend_from_slice(data);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    v.extend_from_slice(&((b << 16) | a).to_be_bytes());
    v
}

/// A valid-CRC PNG declaring `w`×`h` RGB pixels, with a tiny IDAT (a decompression bomb if the
/// decoder allocated the declared size).
fn pixel_flood_png(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &zlib_stored(&[0u8; 64])));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

/// The JPEG with its frame header (SOFn) declaring `w`×`h`.
fn jpeg_with_dimensions(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let mut i = 2;
    loop {
        assert_eq!(out[i], 0xFF, "JPEG marker expected at {i}");
        let marker = out[i + 1];
        let len = u16::from_be_bytes([out[i + 2], out[i + 3]]) as usize;
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            out[i + 5..i + 7].copy_from_slice(&h.to_be_bytes());
            out[i + 7..i + 9].copy_from_slice(&w.to_be_bytes());
            return out;
        }
        i += 2 + len;
    }
}

/// An extended WebP (VP8X) declaring a `w`×`h` canvas around the image chunk of `webp`.
fn webp_with_canvas(webp: &[u8], w: u32, h: u32) -> Vec<u8> {
    assert_eq!(&webp[8..12], b"WEBP");
    let mut body = b"WEBPVP8X".to_vec();
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend_from_slice(&[0, 0, 0, 0]);
    body.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
    body.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
    body.extend_from_slice(&webp[12..]);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A one-entry ZIP archive (stored), as appended to make a JPEG/ZIP polyglot.
fn zip_archive(name: &str, data: &[u8]) -> Vec<u8> {
    let crc = crc32(data).to_le_bytes();
    let size = (data.len() as u32).to_le_bytes();
    let name_len = (name.len() as u16).to_le_bytes();
    let mut z = b"PK\x03\x04\x14\0\0\0\0\0\0\0\0\0".to_vec();
    z.extend_from_slice(&crc);
    z.extend_from_slice(&size);
    z.extend_from_slice(&size);
    z.extend_from_slice(&name_len);
    z.extend_from_slice(&[0, 0]);
    z.extend_from_slice(name.as_bytes());
    z.extend_from_slice(data);
    let cd_at = (z.len() as u32).to_le_bytes();
    let mut cd = b"PK\x01\x02\x14\0\x14\0\0\0\0\0\0\0\0\0".to_vec();
    cd.extend_from_slice(&crc);
    cd.extend_from_slice(&size);
    cd.extend_from_slice(&size);
    cd.extend_from_slice(&name_len);
    cd.extend_from_slice(&[0; 12]);
    cd.extend_from_slice(name.as_bytes());
    let cd_len = (cd.len() as u32).to_le_bytes();
    z.extend_from_slice(&cd);
    z.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
    z.extend_from_slice(&cd_len);
    z.extend_from_slice(&cd_at);
    z.extend_from_slice(&[0, 0]);
    z
}

/// The MP4 with its `moov` box header replaced.
fn mp4_with_moov_header(mp4: &[u8], header: &[u8]) -> Vec<u8> {
    let (at, _, _) = *top_boxes(mp4).iter().find(|b| &b.2 == b"moov").unwrap();
    let mut out = mp4[..at].to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(&mp4[at + 8..]);
    out
}

/// The boxes from a movie to its sample tables, then a movie box again, over and over.
const TRACK_PATH: [&[u8; 4]; 5] = [b"trak", b"mdia", b"minf", b"stbl", b"moov"];

/// `ftyp`, then a `moov` holding containers nested `depth` deep, named from `repeat` over and
/// over, each size exact: a parser that recurses without a bound runs out of stack, one that
/// stops early finds no track.
fn mp4_depth_bomb(ftyp: &[u8], depth: usize, repeat: &[&[u8; 4]]) -> Vec<u8> {
    let mut out = ftyp.to_vec();
    for level in 0..depth {
        out.extend_from_slice(&(8 * (depth - level) as u32).to_be_bytes());
        out.extend_from_slice(if level == 0 {
            b"moov"
        } else {
            repeat[(level - 1) % repeat.len()]
        });
    }
    out
}

/// Offsets of an Ogg file's pages.
fn ogg_pages(ogg: &[u8]) -> Vec<usize> {
    let mut pages = Vec::new();
    let mut i = 0;
    while i + 27 <= ogg.len() {
        assert_eq!(&ogg[i..i + 4], b"OggS", "page at {i}");
        let nseg = ogg[i + 26] as usize;
        let body: usize = ogg[i + 27..i + 27 + nseg].iter().map(|&x| x as usize).sum();
        pages.push(i);
        i += 27 + nseg + body;
    }
    assert_eq!(i, ogg.len(), "whole pages");
    pages
}

/// The Ogg file with its last page's granule position replaced (and the page CRC fixed, so
/// only the claim is false).
fn ogg_with_last_granule(ogg: &[u8], granule: u64) -> Vec<u8> {
    let mut out = ogg.to_vec();
    let last = *ogg_pages(ogg).last().unwrap();
    out[last + 6..last + 14].copy_from_slice(&granule.to_le_bytes());
    out[last + 22..last + 26].copy_from_slice(&[0; 4]);
    let crc = ogg_crc(&out[last..]);
    out[last + 22..last + 26].copy_from_slice(&crc.to_le_bytes());
    out
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Send a raw HTTP/1.1 request head plus body pieces; the answer, if any comes.
fn raw_request(addr: SocketAddr, head: &str, pieces: &[&[u8]], close_write: bool) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    for p in pieces {
        if s.write_all(p).is_err() {
            break;
        }
    }
    if close_write {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn seal_head(key: &str, kind: &str, framing: &str) -> String {
    format!(
        "POST /v1/media?seal=whatsapp HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n\
         X-Media-Kind: {kind}\r\n{framing}\r\n"
    )
}

fn partner_config(id: &str, key: &str, scopes: &[&str]) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[partners.{id}]\nkey_sha256 = \"{}\"\nscopes = [{}]\n",
        sha_hex(key.as_bytes()),
        scopes.join(", ")
    )
}

// ---------------------------------------------------------------- 1 + 2: every kind

#[test]
fn images_and_stickers_in_both_formats() {
    let Some(s) = samples() else { return };
    let ctx = Ctx::new(ServiceBuilder::new().spawn());
    block_on(async {
        // The GPS photo: displayed 480x640 (Orientation 6); location and camera gone.
        let original = s.path("photo.jpg");
        let before = exif_json(&original);
        assert!(before.contains_key("GPSLatitude") && before["Orientation"] == 6);
        for format in ["whatsapp", "signal"] {
            let (v, plain) = ctx.seal_open("image", format, &s.bytes("photo.jpg")).await;
            assert_type(&v, "jpeg", "image/jpeg");
            check_image(&ctx, &v, &original);
            assert_eq!(
                (v["width"].as_u64(), v["height"].as_u64()),
                (Some(480), Some(640))
            );
            let gone = removed(&v);
            assert!(
                gone.iter().any(|r| r == "gps"),
                "removed {gone:?} must name gps"
            );
            assert!(plain.starts_with(&[0xFF, 0xD8]) && plain.ends_with(&[0xFF, 0xD9]));
            let out = ctx.scratch(&format!("photo-{format}.jpg"), &plain);
            let exif = exif_json(&out);
            let gps: Vec<&String> = exif.keys().filter(|k| k.starts_with("GPS")).collect();
            assert!(gps.is_empty(), "GPS left in the sealed photo: {gps:?}");
            for camera in ["Make", "Model"] {
                assert!(
                    !exif.contains_key(camera),
                    "{camera} left: {:?}",
                    exif.get(camera)
                );
            }
            // photo.rs removes metadata losslessly and keeps the orientation in a minimal
            // EXIF block: same pixels as stored, still displayed upright.
            assert_eq!(exif.get("Orientation"), Some(&json!(6)), "{exif:?}");
            assert_eq!(identify_display(&out), (480, 640));
            assert_eq!(
                pixel_signature(&out),
                pixel_signature(&original),
                "pixels changed"
            );
        }

        // PNG with a text comment: the comment is removed, the pixels are not touched.
        let (v, plain) = ctx
            .seal_open("image", "whatsapp", &s.bytes("comment.png"))
            .await;
        assert_type(&v, "png", "image/png");
        check_image(&ctx, &v, &s.path("comment.png"));
        // ImageMagick writes the keyword in lower case ("comment"); photo.rs names
        // "Comment" chunks "comment" and other text chunks "text".
        let gone = removed(&v);
        assert!(
            gone.iter().any(|r| r == "comment" || r == "text"),
            "{gone:?}"
        );
        let out = ctx.scratch("comment-out.png", &plain);
        let exif = exif_json(&out);
        assert!(!exif.contains_key("Comment"), "comment left: {exif:?}");
        assert!(!String::from_utf8_lossy(&plain).contains("Brandenburger"));
        assert_eq!(
            pixel_signature(&out),
            pixel_signature(&s.path("comment.png"))
        );

        // Static WebP and an animated GIF as images.
        let (v, _) = ctx
            .seal_open("image", "signal", &s.bytes("static.webp"))
            .await;
        assert_type(&v, "webp", "image/webp");
        check_image(&ctx, &v, &s.path("static.webp"));
        assert_ne!(v["animated"], true, "{v}");
        let (v, plain) = ctx
            .seal_open("image", "whatsapp", &s.bytes("anim.gif"))
            .await;
        assert_type(&v, "gif", "image/gif");
        check_image(&ctx, &v, &s.path("anim.gif"));
        assert_eq!(v["animated"], true, "5-frame GIF: {v}");
        let out = ctx.scratch("anim-out.gif", &plain);
        assert_eq!(pixel_signature(&out), pixel_signature(&s.path("anim.gif")));

        // Stickers: static and animated 512x512 WebP.
        for format in ["whatsapp", "signal"] {
            let (v, _) = ctx
                .seal_open("sticker", format, &s.bytes("sticker.webp"))
                .await;
            assert_type(&v, "webp", "image/webp");
            check_image(&ctx, &v, &s.path("sticker.webp"));
            assert_ne!(v["animated"], true, "{v}");
            let (v, _) = ctx
                .seal_open("sticker", format, &s.bytes("anim.webp"))
                .await;
            assert_type(&v, "webp-animated", "image/webp");
            check_image(&ctx, &v, &s.path("anim.webp"));
            assert_eq!(
                (v["width"].as_u64(), v["height"].as_u64()),
                (Some(512), Some(512))
            );
            assert_eq!(v["animated"], true, "{v}");
        }
    });
}

#[test]
fn voice_notes_and_audio_in_both_formats() {
    let Some(s) = samples() else { return };
    let ctx = Ctx::new(ServiceBuilder::new().spawn());
    block_on(async {
        for format in ["whatsapp", "signal"] {
            let (v, _) = ctx.seal_open("voice", format, &s.bytes("voice.ogg")).await;
            assert_type(&v, "ogg-opus", "audio/ogg; codecs=opus");
            check_audio(&v, &s.path("voice.ogg"));
            let wf = check_waveform(&v);
            let loud = wf.iter().filter(|&&x| x > 0).count();
            assert!(loud >= 32, "speech fills most of the note: {wf:?}");
            assert!(
                wf.iter().max() > wf.iter().min(),
                "a flat waveform for speech: {wf:?}"
            );
            assert!(
                v.get("thumbnail").is_none() && v.get("width").is_none(),
                "{v}"
            );
        }
        // A silent note has a flat, near-zero waveform (not its noise floor blown up).
        let (v, _) = ctx
            .seal_open("voice", "whatsapp", &s.bytes("silence.ogg"))
            .await;
        check_audio(&v, &s.path("silence.ogg"));
        let wf = check_waveform(&v);
        assert!(wf.iter().all(|&x| x <= 5), "silence: {wf:?}");

        for (i, (file, sniffed, mime)) in [
            ("tone.mp3", "mp3", "audio/mpeg"),
            ("tone.m4a", "m4a", "audio/mp4"),
            ("tone.aac", "aac", "audio/aac"),
            ("tone.amr", "amr-nb", "audio/amr"),
            ("tone.ogg", "ogg-vorbis", "audio/ogg"),
            ("voice.ogg", "ogg-opus", "audio/ogg; codecs=opus"),
        ]
        .into_iter()
        .enumerate()
        {
            let format = if i % 2 == 0 { "whatsapp" } else { "signal" };
            let (v, _) = ctx.seal_open("audio", format, &s.bytes(file)).await;
            assert_type(&v, sniffed, mime);
            check_audio(&v, &s.path(file));
            assert!(
                v.get("waveform").is_none(),
                "waveforms are for voice notes: {v}"
            );
        }
        // Ogg Vorbis is audio, not a voice note.
        let r = ctx.api.seal("voice", "whatsapp", s.bytes("tone.ogg")).await;
        let p = assert_problem(
            r,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "media-type-not-allowed",
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains("ogg-vorbis"), "{p}");
    });
}

#[test]
fn videos_in_both_formats() {
    let Some(s) = samples() else { return };
    let ctx = Ctx::new(ServiceBuilder::new().spawn());
    block_on(async {
        for format in ["whatsapp", "signal"] {
            let (v, _) = ctx.seal_open("video", format, &s.bytes("fast.mp4")).await;
            assert_type(&v, "mp4", "video/mp4");
            check_video(&v, &s.path("fast.mp4"));
            assert_eq!(v["video"]["fast_start"], true);
            assert_eq!(v["video"]["rotation"], 0);
        }
        let (v, _) = ctx.seal_open("video", "signal", &s.bytes("slow.mp4")).await;
        check_video(&v, &s.path("slow.mp4"));
        assert_eq!(v["video"]["fast_start"], false, "moov after mdat: {v}");

        let (v, _) = ctx
            .seal_open("video", "whatsapp", &s.bytes("rot90.mp4"))
            .await;
        check_video(&v, &s.path("rot90.mp4"));
        assert_eq!(v["video"]["rotation"], 90, "{v}");
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(240), Some(320))
        );
        let (v, _) = ctx
            .seal_open("video", "signal", &s.bytes("rot270.mp4"))
            .await;
        check_video(&v, &s.path("rot270.mp4"));
        assert_eq!(v["video"]["rotation"], 270, "{v}");

        let (v, _) = ctx
            .seal_open("video", "whatsapp", &s.bytes("clip.3gp"))
            .await;
        assert_type(&v, "3gp", "video/3gpp");
        check_video(&v, &s.path("clip.3gp"));
        assert_eq!(v["video"]["video_codec"], "s263");
        assert_eq!(v["video"]["audio_codec"], "samr");

        // An M4A is audio, not video (by its brand).
        let r = ctx.api.seal("video", "whatsapp", s.bytes("tone.m4a")).await;
        assert_problem(
            r,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "media-type-not-allowed",
        )
        .await;
        // Nor is an MP4 (brand isom) that holds no video track: a video message without a
        // picture, size or codec is nothing a recipient can show.
        let before = media_objects(&ctx.svc).len();
        let r = ctx
            .api
            .seal("video", "whatsapp", s.bytes("audio-only.mp4"))
            .await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (status, v["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("media-undecodable")),
            "audio-only MP4 as video: {}",
            brief(&v)
        );
        assert_eq!(media_objects(&ctx.svc).len(), before);
    });
}

/// The thumbnail ffmpeg makes of the first frame, displayed (ffmpeg applies the display matrix),
/// fitted into 100x100; as a grey image of `w`x`h`.
fn ffmpeg_thumbnail(ctx: &Ctx, sample: &Path, w: u32, h: u32) -> image::GrayImage {
    let name = format!(
        "ffmpeg-thumb-{}.png",
        sample.file_name().unwrap().to_string_lossy()
    );
    let out = ctx.scratch(&name, b"");
    tool(
        Path::new("/"),
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            sample.to_str().unwrap(),
            "-frames:v",
            "1",
            "-vf",
            "scale=100:100:force_original_aspect_ratio=decrease",
            out.to_str().unwrap(),
        ],
    )
    .unwrap();
    let img = image::open(&out).unwrap().into_luma8();
    image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle)
}

/// Mean absolute difference of two grey images of one size (0–255).
fn grey_mad(a: &image::GrayImage, b: &image::GrayImage) -> f64 {
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

/// A video's thumbnail: a JPEG fitted to ffprobe's displayed size, showing what ffmpeg shows
/// of the first frame (mean absolute grey difference under a bound that a picture turned the
/// wrong way does not meet).
fn check_video_thumbnail(ctx: &Ctx, v: &Value, sample: &Path) -> f64 {
    assert!(v.get("thumbnail_skipped").is_none(), "{}", brief(v));
    let (w, h) = (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap());
    check_thumbnail(ctx, v, w, h);
    check_blurhash(v);
    let jpeg = STANDARD.decode(v["thumbnail"].as_str().unwrap()).unwrap();
    let ours = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .unwrap()
        .into_luma8();
    let (tw, th) = ours.dimensions();
    let theirs = ffmpeg_thumbnail(ctx, sample, tw, th);
    let mad = grey_mad(&ours, &theirs);
    let turned = image::imageops::rotate180(&theirs);
    let wrong = grey_mad(&ours, &turned);
    eprintln!(
        "{}: thumbnail {tw}x{th}, MAD vs ffmpeg {mad:.2} (half-turned: {wrong:.2})",
        sample.file_name().unwrap().to_string_lossy()
    );
    assert!(
        mad < 12.0,
        "{sample:?}: thumbnail differs from ffmpeg's by {mad:.2}"
    );
    assert!(
        wrong > mad * 2.0,
        "{sample:?}: the bound does not tell orientations apart"
    );
    mad
}

#[test]
fn video_thumbnails_match_ffmpeg() {
    let Some(s) = samples() else { return };
    let ctx = Ctx::new(ServiceBuilder::new().spawn());
    block_on(async {
        let mut formats = ["whatsapp", "signal"].into_iter().cycle();
        for name in [
            "h264-baseline.mp4",
            "h264-main.mp4",
            "h264-high.mp4",
            "fast.mp4",
            "slow.mp4",
            "rot90.mp4",
            "rot180.mp4",
            "rot270.mp4",
        ] {
            let format = formats.next().unwrap();
            let (v, _) = ctx.seal_open("video", format, &s.bytes(name)).await;
            check_video(&v, &s.path(name));
            check_video_thumbnail(&ctx, &v, &s.path(name));
        }
        let (v, _) = ctx
            .seal_open("video", "whatsapp", &s.bytes("clip-h264.3gp"))
            .await;
        assert_type(&v, "3gp", "video/3gpp");
        check_video(&v, &s.path("clip-h264.3gp"));
        check_video_thumbnail(&ctx, &v, &s.path("clip-h264.3gp"));

        // Not decoded: the upload succeeds, described as before, without a thumbnail and with
        // the reason.
        for (name, format, reason) in [
            ("hevc.mp4", "whatsapp", "hevc-not-supported"),
            ("h264-high10.mp4", "signal", "profile-not-supported"),
            ("clip.3gp", "whatsapp", "codec-not-supported"),
        ] {
            let (v, _) = ctx.seal_open("video", format, &s.bytes(name)).await;
            check_video(&v, &s.path(name));
            assert_eq!(v["thumbnail_skipped"], reason, "{name}: {}", brief(&v));
            assert!(
                v.get("thumbnail").is_none() && v.get("blurhash").is_none(),
                "{name}"
            );
        }
    });
}

#[test]
fn video_thumbnail_failures_do_not_fail_the_upload() {
    let Some(s) = samples() else { return };
    // A frame over media.max_pixels is not handed to the decoder.
    let ctx = Ctx::new(
        ServiceBuilder::new()
            .env("INTEROP_MEDIA_MEDIA__MAX_PIXELS", "50000")
            .spawn(),
    );
    block_on(async {
        let (v, _) = ctx
            .seal_open("video", "whatsapp", &s.bytes("h264-main.mp4"))
            .await;
        check_video(&v, &s.path("h264-main.mp4"));
        assert_eq!(v["thumbnail_skipped"], "frame-too-large", "{}", brief(&v));
    });
    // A 33 Mpx frame in a 128 MiB cage: the decoder runs out of memory (an error, or the
    // worker's death and a second analysis without the decoder); the upload succeeds either
    // way, and the service goes on serving.
    let ctx = Ctx::new(
        ServiceBuilder::new()
            .env("INTEROP_MEDIA_MEDIA__MEMORY_MIB", "128")
            .spawn(),
    );
    block_on(async {
        let (v, _) = ctx.seal_open("video", "signal", &s.bytes("8k.mp4")).await;
        check_video(&v, &s.path("8k.mp4"));
        let reason = v["thumbnail_skipped"].as_str().unwrap_or("");
        eprintln!("8k frame in a 128 MiB cage: thumbnail_skipped = {reason:?}");
        assert!(
            ["decoder-failed", "frame-undecodable"].contains(&reason),
            "{}",
            brief(&v)
        );
        let (v, _) = ctx
            .seal_open("video", "whatsapp", &s.bytes("h264-baseline.mp4"))
            .await;
        check_video_thumbnail(&ctx, &v, &s.path("h264-baseline.mp4"));
    });
}

#[test]
fn documents_in_both_formats() {
    let Some(s) = samples() else { return };
    let ctx = Ctx::new(ServiceBuilder::new().spawn());
    block_on(async {
        for format in ["whatsapp", "signal"] {
            let (v, plain) = ctx.seal_open("document", format, &s.bytes("doc.pdf")).await;
            assert_type(&v, "pdf", "application/pdf");
            assert_eq!(v["size"], s.bytes("doc.pdf").len());
            assert!(
                removed(&v).is_empty(),
                "documents are stored as they are: {v}"
            );
            assert!(plain == s.bytes("doc.pdf"));
            for field in ["width", "height", "duration_ms", "thumbnail", "waveform"] {
                assert!(v.get(field).is_none(), "{field} on a document: {v}");
            }
        }
        // Anything may be a document; a photo sent as one keeps its metadata (nothing is
        // parsed), as it would in any E2EE messenger's "send as file".
        let (v, plain) = ctx
            .seal_open("document", "signal", &s.bytes("photo.jpg"))
            .await;
        assert_type(&v, "jpeg", "image/jpeg");
        assert!(plain == s.bytes("photo.jpg"));
    });
}

// ---------------------------------------------------------------- 3: hostile corpus

/// Name, `X-Media-Kind`, body, expected status and code.
type HostileCase = (
    &'static str,
    &'static str,
    Vec<u8>,
    (StatusCode, &'static str),
);

#[test]
fn hostile_corpus_is_refused_quickly_with_stable_codes() {
    let Some(s) = samples() else { return };
    let ctx = Ctx::new(ServiceBuilder::new().spawn());
    let jpeg = s.bytes("photo.jpg");
    let png = s.bytes("noise.png");
    let voice = s.bytes("voice.ogg");
    let fast = s.bytes("fast.mp4");
    let slow = s.bytes("slow.mp4");
    let ftyp = &fast[..top_boxes(&fast)[0].1];
    let voice_pages = ogg_pages(&voice);
    let mut moov_64 = vec![0, 0, 0, 1];
    moov_64.extend_from_slice(b"moov");
    moov_64.extend_from_slice(&u64::MAX.to_be_bytes());

    let limits = (StatusCode::UNPROCESSABLE_ENTITY, "media-limits-exceeded");
    let undecodable = (StatusCode::UNPROCESSABLE_ENTITY, "media-undecodable");
    let not_allowed = (StatusCode::UNSUPPORTED_MEDIA_TYPE, "media-type-not-allowed");
    let static_webp = s.bytes("static.webp");
    let sticker_webp = s.bytes("sticker.webp");
    #[rustfmt::skip]
    let cases: Vec<HostileCase> = vec![
        ("pixel-flood PNG 100000x100000", "image", pixel_flood_png(100_000, 100_000), limits),
        ("JPEG SOF 65000x65000", "image", jpeg_with_dimensions(&jpeg, 65_000, 65_000), limits),
        ("WebP VP8X canvas 16384x16384", "image", webp_with_canvas(&static_webp, 16_384, 16_384), limits),
        ("sticker VP8X canvas 16384x16384", "sticker", webp_with_canvas(&sticker_webp, 16_384, 16_384), limits),
        ("truncated JPEG", "image", jpeg[..jpeg.len() / 2].to_vec(), undecodable),
        ("truncated PNG", "image", png[..png.len() * 6 / 10].to_vec(), undecodable),
        ("Ogg cut in its header pages", "voice", voice[..voice_pages[1] + 20].to_vec(), undecodable),
        ("Ogg cut mid-page, mid-stream", "voice", voice[..voice.len() / 2 + 7].to_vec(), undecodable),
        ("faststart MP4 cut in mdat", "video", fast[..fast.len() / 2].to_vec(), undecodable),
        ("MP4 cut before its moov", "video", slow[..slow.len() / 2].to_vec(), undecodable),
        ("MP4 moov size 0xFFFFFFFF", "video", mp4_with_moov_header(&fast, b"\xff\xff\xff\xffmoov"), undecodable),
        ("MP4 moov 64-bit size u64::MAX", "video", mp4_with_moov_header(&fast, &moov_64), undecodable),
        ("MP4 moov/trak/mdia/minf/stbl/moov/… 50000 deep", "video", mp4_depth_bomb(ftyp, 50_000, &TRACK_PATH), undecodable),
        ("MP4 moov/udta/udta/… 50000 deep", "video", mp4_depth_bomb(ftyp, 50_000, &[b"udta"]), undecodable),
        // The last page claims an hour of a 3.5 s note; its CRC is right, so only the claim is
        // false (ffprobe believes it: 3600 s). Refused rather than shown as a 1-hour note.
        ("Ogg last granule = 1 h", "voice", ogg_with_last_granule(&voice, 48_000 * 3600), undecodable),
        ("PDF as image", "image", s.bytes("doc.pdf"), not_allowed),
        ("random bytes as video", "video", pseudo_random(64 << 10, 9), not_allowed),
        ("JPEG as sticker", "sticker", jpeg.clone(), not_allowed),
        ("MP4 as voice", "voice", fast.clone(), not_allowed),
        ("empty body as image", "image", Vec::new(), not_allowed),
    ];
    block_on(async {
        // Every case runs; the mismatches are reported together.
        let mut wrong = Vec::new();
        let mut timings = Vec::new();
        for (name, kind, body, (status, code)) in cases {
            let before = media_objects(&ctx.svc).len();
            let started = Instant::now();
            let r = ctx.api.seal(kind, "whatsapp", body).await;
            let got = r.status();
            let ct = r.headers().get("content-type").cloned();
            let text = r.text().await.unwrap();
            let took = started.elapsed();
            timings.push(format!("{name}: {took:?}"));
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if got != status || v["code"] != code {
                wrong.push(format!(
                    "{name} (X-Media-Kind: {kind}): want {status} {code}, got {got} {}",
                    brief(&v)
                ));
            } else if ct.as_ref().map(|c| c.to_str().unwrap()) != Some("application/problem+json") {
                wrong.push(format!("{name}: content-type {ct:?}"));
            }
            if took >= HOSTILE_BUDGET {
                wrong.push(format!("{name}: took {took:?} (budget {HOSTILE_BUDGET:?})"));
            }
            if got.is_client_error() && media_objects(&ctx.svc).len() != before {
                wrong.push(format!("{name}: refused, but an object was stored"));
            }
            if name == "PDF as image" && !v["detail"].as_str().unwrap_or("").contains("pdf") {
                wrong.push(format!(
                    "{name}: the 415 detail does not name the type: {v}"
                ));
            }
        }
        eprintln!("hostile corpus timings:\n  {}", timings.join("\n  "));
        if !wrong.is_empty() {
            // Reported at the end (the checks below still run); shown now in case they fail.
            eprintln!("hostile corpus mismatches:\n  {}", wrong.join("\n  "));
        }

        // The last page's granule is -1 ("no packet ends here"), which a last page cannot be.
        // Accepted, with the duration players will show: ffprobe (libavformat) drops that page
        // and plays up to the previous one, 3.0 s of the 3.5 s; so does the service. What
        // matters is that the claim is not taken as 2^64-1 samples.
        let lying = ogg_with_last_granule(&voice, u64::MAX);
        let started = Instant::now();
        let (v, _) = ctx.seal_open("voice", "whatsapp", &lying).await;
        assert!(started.elapsed() < HOSTILE_BUDGET * 2);
        let path = ctx.scratch("granule-minus-1.ogg", &lying);
        let played = num(&ffprobe(&path)["format"]["duration"]) * 1000.0;
        let got = duration_ms(&v);
        assert!(
            (got - played).abs() <= DURATION_TOLERANCE_MS,
            "granule -1: {got} ms, ffprobe {played} ms"
        );
        assert!(got <= num(&ffprobe(&s.path("voice.ogg"))["format"]["duration"]) * 1000.0);

        // A JPEG with a ZIP appended: accepted, and the ZIP is not part of what is sealed.
        let plain_jpeg = s.bytes("plain.jpg");
        let mut polyglot = plain_jpeg.clone();
        polyglot.extend(zip_archive("payload.txt", b"not part of a photo"));
        let (v, plain) = ctx.seal_open("image", "whatsapp", &polyglot).await;
        assert_type(&v, "jpeg", "image/jpeg");
        assert!(removed(&v).iter().any(|r| r == "trailing-data"), "{v}");
        assert!(
            plain.ends_with(&[0xFF, 0xD9]),
            "the sealed JPEG ends at its EOI"
        );
        assert!(
            !plain.windows(4).any(|w| w == b"PK\x03\x04"),
            "ZIP left in the photo"
        );
        assert!(plain.len() <= plain_jpeg.len());
        let out = ctx.scratch("polyglot-out.jpg", &plain);
        assert_eq!(pixel_signature(&out), pixel_signature(&s.path("plain.jpg")));

        // Still serving, and the workers still work.
        let r = send(ctx.api.c.get(format!("{}/healthz", ctx.svc.base))).await;
        assert_eq!(r.status(), StatusCode::OK);
        let (v, _) = ctx
            .seal_open("image", "signal", &s.bytes("plain.jpg"))
            .await;
        assert_eq!(v["width"], 160);
        assert!(
            wrong.is_empty(),
            "hostile corpus:\n  {}",
            wrong.join("\n  ")
        );
    });
}

/// A refusal that stored nothing.
async fn check_refused(ctx: &Ctx, r: reqwest::Response, status: StatusCode, code: &str) -> Value {
    let before = media_objects(&ctx.svc).len();
    let p = assert_problem(r, status, code).await;
    assert_eq!(media_objects(&ctx.svc).len(), before);
    p
}

/// Request errors that need no media parser: scope, query, headers, size.
#[test]
fn malformed_seal_requests() {
    let noseal_key = "imk_gateway-without-seal-scope";
    let svc = ServiceBuilder::new()
        .config_toml(partner_config(
            "noseal",
            noseal_key,
            &["upload", "token", "delete"],
        ))
        .spawn();
    let ctx = Ctx::new(svc);
    let pdf = minimal_pdf();
    block_on(async {
        let c = &ctx.api.c;
        let url = |q: &str| format!("{}/v1/media{q}", ctx.svc.base);
        let check = |r, status, code| check_refused(&ctx, r, status, code);
        // No `seal` scope.
        let r = Api::with_key(&ctx.svc, noseal_key)
            .seal("document", "whatsapp", pdf.clone())
            .await;
        let p = check(r, StatusCode::FORBIDDEN, "forbidden").await;
        assert!(p["detail"].as_str().unwrap().contains("seal"), "{p}");
        // `opaque` (or anything but whatsapp/signal) cannot be sealed for the gateway.
        for q in [
            "?seal=opaque",
            "?seal=",
            "?seal=WhatsApp",
            "?seal=whatsapp,signal",
        ] {
            let r = send(
                c.post(url(q))
                    .bearer_auth(&ctx.api.key)
                    .header("X-Media-Kind", "document")
                    .body(pdf.clone()),
            )
            .await;
            check(r, StatusCode::BAD_REQUEST, "invalid-field").await;
        }
        // Kind missing or unknown.
        let r = send(
            c.post(url("?seal=signal"))
                .bearer_auth(&ctx.api.key)
                .body(pdf.clone()),
        )
        .await;
        let p = check(r, StatusCode::BAD_REQUEST, "missing-header").await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("x-media-kind"),
            "{p}"
        );
        let r = ctx.api.seal("photo", "signal", pdf.clone()).await;
        check(r, StatusCode::BAD_REQUEST, "unknown-kind").await;
        // No key at all.
        let r = send(
            c.post(url("?seal=signal"))
                .header("X-Media-Kind", "document")
                .body(pdf.clone()),
        )
        .await;
        check(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    });

    // Declared over the kind's plaintext limit (sticker: 500 KB): 413 before any body byte.
    let before = media_objects(&ctx.svc).len();
    let started = Instant::now();
    let resp = raw_request(
        ctx.svc.addr,
        &seal_head(
            &ctx.svc.partner_key,
            "sticker",
            "Content-Length: 600000\r\n",
        ),
        &[],
        false,
    );
    let took = started.elapsed();
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("\"code\":\"too-large\""), "{resp}");
    assert!(
        took < HOSTILE_BUDGET,
        "413 took {took:?}: it must not wait for the body"
    );
    // Just over the limit is over; the limit itself is for the parser to judge.
    let resp = raw_request(
        ctx.svc.addr,
        &seal_head(
            &ctx.svc.partner_key,
            "sticker",
            "Content-Length: 512001\r\n",
        ),
        &[],
        false,
    );
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    // Chunked, growing past the limit: 413 once it crosses.
    let piece = vec![7u8; 100_000];
    let mut chunks = Vec::new();
    for _ in 0..6 {
        chunks.push(format!("{:x}\r\n", piece.len()).into_bytes());
        chunks.push(piece.clone());
        chunks.push(b"\r\n".to_vec());
    }
    chunks.push(b"0\r\n\r\n".to_vec());
    let refs: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
    let resp = raw_request(
        ctx.svc.addr,
        &seal_head(
            &ctx.svc.partner_key,
            "sticker",
            "Transfer-Encoding: chunked\r\n",
        ),
        &refs,
        false,
    );
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("\"code\":\"too-large\""), "{resp}");
    assert_eq!(media_objects(&ctx.svc).len(), before);
    let r = block_on(send(http().get(format!("{}/healthz", ctx.svc.base))));
    assert_eq!(r.status(), StatusCode::OK);
}

// ---------------------------------------------------------------- 4: the key is not kept

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every encoding of `key` a careless log line or file could hold.
fn key_forms(key: &[u8]) -> Vec<(String, Vec<u8>)> {
    vec![
        ("raw".into(), key.to_vec()),
        ("base64".into(), STANDARD.encode(key).into_bytes()),
        (
            "base64 unpadded".into(),
            STANDARD_NO_PAD.encode(key).into_bytes(),
        ),
        ("base64url".into(), URL_SAFE.encode(key).into_bytes()),
        (
            "base64url unpadded".into(),
            URL_SAFE_NO_PAD.encode(key).into_bytes(),
        ),
        ("hex".into(), hex::encode(key).into_bytes()),
        ("HEX".into(), hex::encode_upper(key).into_bytes()),
        // The first 16 bytes alone (a WhatsApp key's IV half, or a truncated log).
        ("hex prefix".into(), hex::encode(&key[..16]).into_bytes()),
    ]
}

/// The stored object is the at-rest header (exactly the service's own metadata, nothing
/// more) and the sealed blob (exactly `enc_size` bytes of payload): there is no room in it for
/// a media key. Opened with the dev master key from `dev-keys.toml`.
fn assert_object_is_header_and_blob(data_dir: &Path, v: &Value) {
    use interop_media::crypto::keys::{KeyRing, SecretKey};
    use interop_media::crypto::object::{SALT_LEN, open_header};
    use interop_media::crypto::stream::{TAG_SIZE, plain_len};
    let keys: toml::Table = std::fs::read_to_string(data_dir.join("dev-keys.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let active = keys["keys"]["active"].as_str().unwrap().to_string();
    let secret = keys["keys"]["master"][&active]["key"].as_str().unwrap();
    let ring = KeyRing::new(
        active.clone(),
        [(active.clone(), SecretKey::parse(secret).unwrap())].into(),
    )
    .unwrap();
    let id = v["id"].as_str().unwrap();
    let object = std::fs::read(data_dir.join("objects").join("media").join(id)).unwrap();
    let header = open_header(&ring, id, &object).unwrap();
    assert_eq!(header.meta.sha256, v["enc_sha256"].as_str().unwrap());
    assert_eq!(header.meta.partner, "dev");
    let sealed_meta = header.header_len as usize - (6 + header.kid.len() + SALT_LEN + 2);
    assert_eq!(
        sealed_meta,
        serde_json::to_vec(&header.meta).unwrap().len() + TAG_SIZE,
        "the object header holds more than its metadata"
    );
    let payload = object.len() as u64 - header.header_len;
    assert_eq!(
        plain_len(payload),
        v["enc_size"].as_u64(),
        "payload is the blob alone"
    );
}

#[test]
fn media_key_is_never_stored_or_logged() {
    let Some(s) = samples() else { return };
    let data = tempfile::Builder::new()
        .prefix("interop-media-seal-keys-")
        .tempdir()
        .unwrap();
    let tmp = data.path().join("seal-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let svc = ServiceBuilder::new()
        .data_dir(data.path())
        .env("INTEROP_MEDIA_SERVER__LOG_LEVEL", "debug")
        .env("INTEROP_MEDIA_MEDIA__TMP_DIR", tmp.to_str().unwrap())
        .spawn();
    let ctx = Ctx::new(svc);
    let keys: Vec<Vec<u8>> = block_on(async {
        let mut keys = Vec::new();
        for (kind, format, file) in [
            ("document", "whatsapp", "doc.pdf"),
            ("document", "signal", "doc.pdf"),
            ("image", "whatsapp", "photo.jpg"),
            ("voice", "signal", "voice.ogg"),
            ("video", "whatsapp", "fast.mp4"),
        ] {
            let v = ctx.seal_ok(kind, format, &s.bytes(file)).await;
            // What any later reader of the media sees: metadata, download.
            ctx.open(&v).await;
            let id = v["id"].as_str().unwrap();
            let meta = send(
                ctx.api
                    .c
                    .get(format!("{}/v1/media/{id}", ctx.svc.base))
                    .bearer_auth(&ctx.api.key),
            )
            .await
            .text()
            .await
            .unwrap();
            assert_object_is_header_and_blob(&ctx.svc.data_dir, &v);
            let key = STANDARD.decode(v["key"].as_str().unwrap()).unwrap();
            for (form, needle) in key_forms(&key) {
                assert!(
                    !contains(meta.as_bytes(), &needle),
                    "GET /v1/media has the key ({form})"
                );
            }
            keys.push(key);
        }
        let metrics = send(ctx.api.c.get(format!("{}/metrics", ctx.svc.base)))
            .await
            .text()
            .await
            .unwrap();
        for key in &keys {
            for (form, needle) in key_forms(key) {
                assert!(
                    !contains(metrics.as_bytes(), &needle),
                    "/metrics has a key ({form})"
                );
            }
        }
        keys
    });
    // Let the last log lines reach the file, then look everywhere the service writes.
    std::thread::sleep(Duration::from_millis(300));
    let files = common::s3::files_under(data.path());
    let log_rel = ctx
        .svc
        .log_path
        .strip_prefix(data.path())
        .unwrap()
        .to_path_buf();
    assert!(
        files.contains(&log_rel),
        "the service log is among the scanned files"
    );
    let log = std::fs::read_to_string(&ctx.svc.log_path).unwrap();
    assert!(
        log.lines().count() >= 5,
        "the debug log is not empty:\n{log}"
    );
    let stdout = ctx.svc.stdout_lines().join("\n");
    for rel in &files {
        let bytes = std::fs::read(data.path().join(rel)).unwrap();
        for key in &keys {
            for (form, needle) in key_forms(key) {
                assert!(
                    !contains(&bytes, &needle),
                    "{} holds a media key ({form})",
                    rel.display()
                );
                assert!(
                    !contains(stdout.as_bytes(), &needle),
                    "stdout has a media key ({form})"
                );
            }
        }
    }
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "seal tmp dir not empty"
    );
    drop(ctx);
}

// ---------------------------------------------------------------- 5: plaintext is transient

fn tmp_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[track_caller]
fn assert_tmp_empty(dir: &Path, after: &str) {
    let left = tmp_entries(dir);
    assert!(
        left.is_empty(),
        "plaintext left behind after {after}: {left:?}"
    );
}

#[test]
fn plaintext_does_not_outlive_the_request() {
    let Some(s) = samples() else { return };
    let tmp = tempfile::Builder::new()
        .prefix("interop-media-seal-tmp-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    // Left by a process that died mid-request two hours ago: purged at start-up. A fresh one
    // (another replica's live request) and anything not ours are left alone.
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    for (name, old) in [
        ("interop-media-seal-crashed", true),
        ("interop-media-seal-live", false),
        ("not-ours", true),
    ] {
        std::fs::create_dir(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("plain"), b"plaintext").unwrap();
        if old {
            std::fs::File::open(dir.join(name))
                .unwrap()
                .set_modified(two_hours_ago)
                .unwrap();
        }
    }
    let svc = ServiceBuilder::new()
        .env("INTEROP_MEDIA_MEDIA__TMP_DIR", dir.to_str().unwrap())
        .env("INTEROP_MEDIA_SERVER__BODY_IDLE_TIMEOUT_S", "2")
        .spawn();
    let ctx = Ctx::new(svc);
    let mut left = tmp_entries(dir);
    left.sort();
    assert_eq!(
        left,
        ["interop-media-seal-live", "not-ours"],
        "start-up purge"
    );
    for name in left {
        std::fs::remove_dir_all(dir.join(name)).unwrap();
    }
    block_on(async {
        for (kind, format, file) in [
            ("document", "whatsapp", "doc.pdf"),
            ("image", "signal", "photo.jpg"),
            ("image", "whatsapp", "comment.png"),
            ("voice", "whatsapp", "voice.ogg"),
            ("audio", "signal", "tone.mp3"),
            ("video", "signal", "slow.mp4"),
            ("sticker", "whatsapp", "anim.webp"),
        ] {
            ctx.seal_ok(kind, format, &s.bytes(file)).await;
            assert_tmp_empty(dir, &format!("a stored {kind} ({file})"));
        }
        let jpeg = s.bytes("photo.jpg");
        // Refusals at each stage: sniffing, the structure walk, decoding. (Which code each
        // gets is the hostile corpus's business; here only the temp dir matters.)
        let voice = s.bytes("voice.ogg");
        for (what, kind, body) in [
            ("random bytes as video", "video", pseudo_random(100_000, 3)),
            ("a PDF as image", "image", s.bytes("doc.pdf")),
            ("a truncated JPEG", "image", jpeg[..jpeg.len() / 2].to_vec()),
            ("a pixel flood", "image", pixel_flood_png(100_000, 100_000)),
            (
                "a lying Ogg",
                "voice",
                ogg_with_last_granule(&voice, 48_000 * 3600),
            ),
            (
                "a JPEG with a 65000x65000 SOF",
                "image",
                jpeg_with_dimensions(&jpeg, 65_000, 65_000),
            ),
        ] {
            let r = ctx.api.seal(kind, "whatsapp", body).await;
            assert!(r.status().is_client_error(), "{what}: {}", r.status());
            assert_tmp_empty(dir, what);
        }
    });
    let key = ctx.svc.partner_key.clone();
    let addr = ctx.svc.addr;

    // Over the limit mid-body (chunked): the part received so far is deleted.
    let piece = vec![1u8; 100_000];
    let mut chunks = Vec::new();
    for _ in 0..6 {
        chunks.push(format!("{:x}\r\n", piece.len()).into_bytes());
        chunks.push(piece.clone());
        chunks.push(b"\r\n".to_vec());
    }
    chunks.push(b"0\r\n\r\n".to_vec());
    let refs: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
    let resp = raw_request(
        addr,
        &seal_head(&key, "sticker", "Transfer-Encoding: chunked\r\n"),
        &refs,
        false,
    );
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert_tmp_empty(dir, "a body over the limit");

    // A stalled body: while it waits, the plaintext is an unnamed file; the 408
    // drops it.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stalled
        .write_all(seal_head(&key, "image", "Content-Length: 200000\r\n").as_bytes())
        .unwrap();
    stalled.write_all(&s.bytes("photo.jpg")[..50_000]).unwrap();
    // src/seal.rs: the plaintext is an unnamed file (O_TMPFILE) under the temp dir: the
    // service holds it open, and nothing in the directory names it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let held = loop {
        let held: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", ctx.svc.pid()))
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|t| t.display().to_string())
            .filter(|t| t.starts_with(&dir.display().to_string()))
            .collect();
        if !held.is_empty() {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "the service holds no file under {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let private_mode = held
        .iter()
        .all(|t| t.ends_with("(deleted)"))
        .then_some(())
        .ok_or(format!(
            "plaintext under a name while the request runs: {held:?}"
        ));
    assert_tmp_empty(dir, "a stalled body, while it waits");
    let mut answer = Vec::new();
    let _ = stalled.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_tmp_empty(dir, "a stalled body (408)");

    // The client goes away mid-body: cleaned up once the service notices (at once, on EOF).
    let mut gone = TcpStream::connect(addr).unwrap();
    gone.write_all(seal_head(&key, "image", "Content-Length: 200000\r\n").as_bytes())
        .unwrap();
    gone.write_all(&s.bytes("photo.jpg")[..50_000]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(gone);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tmp_entries(dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_tmp_empty(dir, "a client that disconnected mid-body");
    let r = block_on(send(http().get(format!("{}/healthz", ctx.svc.base))));
    assert_eq!(r.status(), StatusCode::OK);
    if let Err(e) = private_mode {
        panic!("{e}");
    }
}
