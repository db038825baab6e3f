//! Key rotation without downtime (issue 13): a partner holding two API keys at once, and the
//! token key ring rolled across two replicas — new `kid` added, made active, the old one kept
//! verify-only, then removed. Zero failures during the overlap, zero old tokens accepted after.

// Tests and benches fail loudly: unwrap, expect and panic are how they report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod common;

use std::path::Path;

use common::{Service, ServiceBuilder, block_on, http};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn b64(b: [u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A replica on the shared data dir (same store and master key) with this token ring.
fn replica(dir: &Path, active: &str, kids: &[&str]) -> Service {
    let mut toml = format!("[tokens]\nactive = \"{active}\"\n");
    for kid in kids {
        let byte = match *kid {
            "r1" => 11,
            _ => 12,
        };
        toml.push_str(&format!(
            "[tokens.keys.{kid}]\nkey = \"{}\"\n",
            b64([byte; 32])
        ));
    }
    ServiceBuilder::new()
        .data_dir(dir)
        .config_toml(toml)
        .spawn()
}

async fn upload(svc: &Service, key: &str, blob: &[u8]) -> reqwest::Response {
    http()
        .post(svc.url("/v1/media"))
        .bearer_auth(key)
        .header("X-Media-Kind", "document")
        .header("X-Media-Format", "opaque")
        .header("X-Media-Sha256", sha_hex(blob))
        .body(blob.to_vec())
        .send()
        .await
        .unwrap()
}

async fn mint(svc: &Service, id: &str) -> String {
    let r = http()
        .post(svc.url(&format!("/v1/media/{id}/tokens")))
        .bearer_auth(&svc.partner_key)
        .json(&serde_json::json!({"audience": "rotation"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// Status and problem code of downloading `token` from `svc`.
async fn fetch(svc: &Service, token: &str, blob: &[u8]) -> (u16, String) {
    let r = http()
        .get(svc.url(&format!("/v1/download/{token}")))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    if status == 200 {
        assert!(body.as_ref() == blob, "wrong bytes");
        return (200, String::new());
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    (status, v["code"].as_str().unwrap_or_default().to_string())
}

#[test]
fn token_key_rotation_across_two_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let blob: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    block_on(async {
        // Phase 0: both replicas on r1.
        let a = replica(dir.path(), "r1", &["r1"]);
        let r = upload(&a, &a.partner_key, &blob).await;
        assert!(r.status().is_success());
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let mut old_tokens = vec![mint(&a, &id).await];

        // Phase 1: r2 added verify-only everywhere (a restart of each replica), r1 active.
        drop(a);
        let a = replica(dir.path(), "r1", &["r1", "r2"]);
        let b = replica(dir.path(), "r1", &["r1", "r2"]);
        old_tokens.push(mint(&a, &id).await);

        // Phase 2, the overlap: b switched to r2 first, a still mints with r1.
        drop(b);
        let b = replica(dir.path(), "r2", &["r1", "r2"]);
        let mut new_tokens = Vec::new();
        let mut failures = 0;
        let mut checks = 0;
        for _ in 0..10 {
            old_tokens.push(mint(&a, &id).await);
            new_tokens.push(mint(&b, &id).await);
            for t in old_tokens.iter().chain(&new_tokens) {
                for svc in [&a, &b] {
                    checks += 1;
                    if fetch(svc, t, &blob).await.0 != 200 {
                        failures += 1;
                    }
                }
            }
        }
        println!("rotation overlap: {checks} downloads across two replicas, {failures} failures");
        assert_eq!(failures, 0);

        // Phase 3: r1 removed everywhere.
        drop(a);
        drop(b);
        let a = replica(dir.path(), "r2", &["r2"]);
        let b = replica(dir.path(), "r2", &["r2"]);
        let mut accepted_old = 0;
        for t in &old_tokens {
            for svc in [&a, &b] {
                let (status, code) = fetch(svc, t, &blob).await;
                if status == 200 {
                    accepted_old += 1;
                } else {
                    assert_eq!((status, code.as_str()), (401, "token-unknown-key"));
                }
            }
        }
        for t in &new_tokens {
            for svc in [&a, &b] {
                assert_eq!(fetch(svc, t, &blob).await.0, 200);
            }
        }
        println!(
            "after removal: {} old-kid tokens tried on two replicas, {accepted_old} accepted",
            old_tokens.len()
        );
        assert_eq!(accepted_old, 0);
    });
}

const OLD_KEY: &str = "imk_gateway-key-old-0000000000000000000000";
const NEW_KEY: &str = "imk_gateway-key-new-1111111111111111111111";

fn gateway(dir: &Path, hashes: &str) -> Service {
    ServiceBuilder::new()
        .data_dir(dir)
        .config_toml(format!(
            "[partners.gw]\nkey_sha256 = {hashes}\nscopes = [\"upload\", \"token\"]\n"
        ))
        .spawn()
}

#[test]
fn partner_holds_two_api_keys_while_rotating() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (sha_hex(OLD_KEY.as_bytes()), sha_hex(NEW_KEY.as_bytes()));
    block_on(async {
        // Before: the old key only.
        let svc = gateway(dir.path(), &format!("\"{old}\""));
        assert!(
            upload(&svc, OLD_KEY, b"one-blob")
                .await
                .status()
                .is_success()
        );
        assert_eq!(
            upload(&svc, NEW_KEY, b"two-blob").await.status().as_u16(),
            401
        );
        drop(svc);
        // During: both keys work, as the same partner (the same blob dedups to one media).
        let svc = gateway(dir.path(), &format!("[\"{old}\", \"{new}\"]"));
        let a: Value = upload(&svc, OLD_KEY, b"three-blob")
            .await
            .json()
            .await
            .unwrap();
        let r = upload(&svc, NEW_KEY, b"three-blob").await;
        assert_eq!(
            r.status().as_u16(),
            200,
            "same partner: dedup, not a new media"
        );
        let b: Value = r.json().await.unwrap();
        assert_eq!(a["id"], b["id"]);
        drop(svc);
        // After: the old key is refused.
        let svc = gateway(dir.path(), &format!("[\"{new}\"]"));
        let r = upload(&svc, OLD_KEY, b"four-blob").await;
        assert_eq!(r.status().as_u16(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "unauthenticated");
        assert!(
            upload(&svc, NEW_KEY, b"four-blob")
                .await
                .status()
                .is_success()
        );
        // Three keys is a configuration error naming the key.
        drop(svc);
        let err = match ServiceBuilder::new()
            .data_dir(dir.path())
            .config_toml(format!(
                "[partners.gw]\nkey_sha256 = [\"{old}\", \"{new}\", \"{old}\"]\nscopes = [\"upload\"]\n"
            ))
            .try_spawn()
        {
            Ok(_) => panic!("three keys accepted"),
            Err(e) => e,
        };
        assert!(format!("{err}").contains("partners.gw.key_sha256"), "{err}");
    });
}
