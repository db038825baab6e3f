//! Group fan-out (issue 14 items 1 and 2): one request mints tokens for many audiences; the
//! hostile requests mint nothing; then a burst of 512 concurrent downloads of two media across
//! the group's audiences (a share with `Range`), all byte-exact, with the p99 latency and the
//! store reads per download printed (figures, not assertions: timing is measured, not tested).
//!
//! Metrics are read from `server.metrics_listen`, set explicitly, so the test does not depend
//! on whether `/metrics` is also on the public listener.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Service, ServiceBuilder, block_on, http};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    format!("127.0.0.1:{port}")
}

/// A service with its metrics on a listener of their own; returns it and that listener's base.
fn spawn(extra_toml: &str) -> (Service, String) {
    let metrics = free_addr();
    let svc = ServiceBuilder::new()
        .config_toml(format!(
            "[server]\nmetrics_listen = \"{metrics}\"\n{extra_toml}"
        ))
        .spawn();
    (svc, format!("http://{metrics}"))
}

async fn upload(svc: &Service, body: &[u8]) -> String {
    let r = http()
        .post(svc.url("/v1/media"))
        .bearer_auth(&svc.partner_key)
        .header("X-Media-Kind", "video")
        .header("X-Media-Format", "opaque")
        .header("X-Media-Sha256", sha_hex(body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn mint(svc: &Service, id: &str, body: Value) -> (StatusCode, Value) {
    let r = http()
        .post(svc.url(&format!("/v1/media/{id}/tokens")))
        .bearer_auth(&svc.partner_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn metrics(base: &str) -> String {
    http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Sum of the series of `name` whose label set contains `labels` (e.g. `op="get"`).
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn store_reads(text: &str) -> f64 {
    let n = "interop_media_store_request_duration_seconds_count";
    metric(text, n, "op=\"get\"") + metric(text, n, "op=\"get_ranges\"")
}

#[test]
fn fanout_mints_one_token_per_audience_in_order_and_refuses_hostile_lists_whole() {
    let (svc, mbase) = spawn("[tokens]\nmax_audiences = 8\n");
    block_on(async {
        let body = pattern(70_000, 3);
        let id = upload(&svc, &body).await;
        let audiences: Vec<String> = (0..8).map(|i| format!("member-{i}:app")).collect();
        let (s, v) = mint(&svc, &id, json!({"audiences": audiences, "ttl_s": 120})).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let list = v["tokens"].as_array().unwrap();
        assert_eq!(list.len(), 8);
        let expires = list[0]["expires_at"].clone();
        for (entry, want) in list.iter().zip(&audiences) {
            assert_eq!(entry["audience"], want.as_str(), "request order kept");
            assert_eq!(entry["expires_at"], expires);
            let url = entry["url"].as_str().unwrap();
            assert!(url.ends_with(entry["token"].as_str().unwrap()));
            let got = http().get(url).send().await.unwrap();
            assert_eq!(got.status(), StatusCode::OK);
            assert_eq!(got.bytes().await.unwrap().as_ref(), &body[..]);
        }
        // Distinct tokens: each binds its own audience.
        let mut tokens: Vec<_> = list.iter().map(|e| e["token"].to_string()).collect();
        tokens.sort();
        tokens.dedup();
        assert_eq!(tokens.len(), 8);

        // The single-audience form is unchanged.
        let (s, v) = mint(&svc, &id, json!({"audience": "solo"})).await;
        assert_eq!(s, StatusCode::CREATED);
        assert!(v.get("tokens").is_none() && v["token"].is_string() && v["url"].is_string());

        let before = metrics(&mbase).await;
        let minted = "interop_media_tokens_minted_total";
        assert_eq!(metric(&before, minted, ""), 9.0);
        let req = "interop_media_token_mint_requests_total";
        assert_eq!(metric(&before, req, "class=\"fanout\""), 1.0);
        assert_eq!(metric(&before, req, "audiences=\"2-8\""), 1.0);
        assert_eq!(metric(&before, req, "class=\"single\""), 1.0);
        assert!(
            !before.contains("member-0"),
            "audience strings are no metric label"
        );

        // Hostile lists: status, code, and nothing minted.
        let nine: Vec<String> = (0..9).map(|i| format!("m{i}")).collect();
        let cases = [
            (json!({"audiences": nine}), "too-many-audiences"),
            (json!({"audiences": ["a", "b", "a"]}), "duplicate-audience"),
            (json!({"audiences": []}), "invalid-field"),
            (json!({"audiences": ["ok", "not ok"]}), "invalid-field"),
            (json!({"audiences": ["ok", ""]}), "invalid-field"),
            (
                json!({"audiences": ["ok", "x".repeat(33)]}),
                "invalid-field",
            ),
            (
                json!({"audiences": ["ok"], "audience": "ok"}),
                "invalid-field",
            ),
            (json!({"ttl_s": 60}), "invalid-field"),
            (json!({"audiences": ["ok"], "ttl_s": 0}), "invalid-field"),
            (json!({"audiences": "ok"}), "malformed-json"),
            (json!({"audiences": [1, 2]}), "malformed-json"),
        ];
        for (body, code) in cases {
            let (s, v) = mint(&svc, &id, body.clone()).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {v}");
            assert_eq!(v["code"], code, "{body} -> {v}");
        }
        // Unknown media: 404 even for a valid list, nothing minted.
        let (s, v) = mint(&svc, &"0".repeat(32), json!({"audiences": ["a", "b"]})).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(v["code"], "media-not-found");
        // A body past the route's JSON limit is refused before parsing.
        let huge = json!({"audiences": vec!["a".repeat(32); 3000]});
        let (s, v) = mint(&svc, &id, huge).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");

        let after = metrics(&mbase).await;
        assert_eq!(
            metric(&after, minted, ""),
            9.0,
            "a refused request minted something"
        );
        assert_eq!(metric(&after, req, ""), 2.0);
    });
    // Audit: one event per minted token, naming partner, media and audience, never the token.
    let log = svc.log();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("audit") && l.contains("token.mint"))
        .collect();
    let minted: Vec<&&str> = audit.iter().filter(|l| l.contains("minted")).collect();
    assert_eq!(minted.len(), 9, "{log}");
    assert!(
        minted
            .iter()
            .any(|l| l.contains("member-7:app") && l.contains("dev"))
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("refused") && l.contains("too-many-audiences"))
    );
    assert!(
        !log.contains("/v1/download/A"),
        "a token URL leaked into the log"
    );
}

/// One download: the whole blob (hashed as it streams, never held) or one range.
async fn fetch(
    c: &reqwest::Client,
    url: &str,
    range: Option<(usize, usize)>,
    want: &[u8],
) -> Duration {
    let t = Instant::now();
    let mut req = c.get(url);
    if let Some((a, b)) = range {
        req = req.header("Range", format!("bytes={a}-{b}"));
    }
    let r = req.send().await.unwrap();
    let expect_status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    assert_eq!(r.status(), expect_status);
    let slice = match range {
        Some((a, b)) => &want[a..=b],
        None => want,
    };
    let mut h = Sha256::new();
    let mut n = 0usize;
    let mut s = r.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.unwrap();
        // Compare in place: a mismatch names its offset.
        assert_eq!(
            &chunk[..],
            &slice[n..n + chunk.len()],
            "bytes differ at {n}"
        );
        h.update(&chunk);
        n += chunk.len();
    }
    assert_eq!(n, slice.len());
    assert_eq!(h.finalize()[..], Sha256::digest(slice)[..]);
    t.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Issue 14 item 2: a 16 MiB and a 64 KiB upload, then 512 concurrent token downloads across
/// the group's audiences; a quarter of the video's and of the photo's requests are `Range`.
#[test]
fn fanout_512_concurrent_downloads_are_byte_exact() {
    const DOWNLOADS: usize = 512;
    const MEMBERS: usize = 64;
    let (svc, mbase) = spawn("");
    block_on(async {
        let video = Arc::new(pattern(16 << 20, 7));
        let photo = Arc::new(pattern(64 << 10, 9));
        let video_id = upload(&svc, &video).await;
        let photo_id = upload(&svc, &photo).await;
        let members: Vec<String> = (0..MEMBERS).map(|i| format!("provider-{i}")).collect();
        let mut urls = BTreeMap::new();
        for (name, id) in [("video", &video_id), ("photo", &photo_id)] {
            let (s, v) = mint(&svc, id, json!({"audiences": members})).await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            let list: Vec<String> = v["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["url"].as_str().unwrap().to_owned())
                .collect();
            urls.insert(name, list);
        }
        let before = metrics(&mbase).await;
        let c = reqwest::Client::builder()
            .pool_max_idle_per_host(DOWNLOADS)
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap();
        // One in four downloads is the video (players stream it), the rest the photo; every
        // fourth request of each is a `Range`, spread over the blob.
        let mut tasks = Vec::with_capacity(DOWNLOADS);
        let wall = Instant::now();
        for i in 0..DOWNLOADS {
            let (name, blob) = if i % 4 == 0 {
                ("video", video.clone())
            } else {
                ("photo", photo.clone())
            };
            let url = urls[name][i % MEMBERS].clone();
            let ranged = (i / 4) % 4 == 1 || i % 4 == 3;
            let range = ranged.then(|| {
                let len = blob.len();
                let a = (i * 7919 * 4099) % (len - 1);
                let b = (a + len / 16).min(len - 1);
                (a, b)
            });
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                (range.is_some(), fetch(&c, &url, range, &blob).await)
            }));
        }
        let mut all = Vec::with_capacity(DOWNLOADS);
        let mut ranged = 0;
        for t in tasks {
            let (r, d) = t.await.expect("download task");
            ranged += usize::from(r);
            all.push(d);
        }
        let wall = wall.elapsed();
        all.sort();
        let after = metrics(&mbase).await;
        let reads = store_reads(&after) - store_reads(&before);
        println!(
            "fanout: {DOWNLOADS} downloads ({ranged} ranged) across {MEMBERS} audiences in {:.2?}: \
             p50 {:.2?}, p99 {:.2?}, max {:.2?}; store reads {reads} = {:.2} per download",
            wall,
            percentile(&all, 0.50),
            percentile(&all, 0.99),
            all[all.len() - 1],
            reads / DOWNLOADS as f64,
        );
        assert!(
            reads >= DOWNLOADS as f64,
            "every download reads the store at least once"
        );
    });
}
