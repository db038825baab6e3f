//! The single-upload flow without the HTTP server, over a memory store with a multipart
//! interface (as S3 has): what is stored, what a duplicate finds, what a refusal leaves.

use std::collections::BTreeMap;

use futures::{StreamExt, stream};
use object_store::memory::InMemory;
use object_store::path::Path;

use super::*;
use crate::auth::Scope;
use crate::crypto::keys::SecretKey;
use crate::retrieve::Retrieve;
use crate::tokens::{Claims, mint};

const PART: usize = 64 << 10;

fn ring(kid: &str, byte: u8) -> KeyRing {
    KeyRing::new(
        kid.into(),
        BTreeMap::from([(kid.to_string(), SecretKey::from_bytes([byte; 32]))]),
    )
    .unwrap()
}

struct Fixture {
    store: Arc<InMemory>,
    ingest: Ingest,
    metrics: Metrics,
}

fn fixture() -> Fixture {
    let store = Arc::new(InMemory::new());
    let metrics = Metrics::new().unwrap();
    let master_keys = ring("m1", 9);
    let limit = 4 << 20;
    let ingest = Ingest {
        store: store.clone(),
        native: Some(store.clone()),
        ids: MediaIds::new(master_keys.active().1),
        master_keys,
        limits: KindLimits {
            image: limit,
            sticker: limit,
            voice: limit,
            audio: limit,
            video: limit,
            document: limit,
        },
        retention: Duration::from_secs(3600),
        pace: PacePolicy::idle_only(Duration::from_secs(5)),
        admission: Admission::new(
            crate::admission::AdmissionLimits {
                memory: 64 << 20,
                partner_memory: 64 << 20,
                max_uploads: 16,
                wait: Duration::from_millis(100),
                part_size: PART as u64,
                upload_concurrency: 2,
            },
            metrics.admission(),
        ),
        part_size: PART,
        upload_concurrency: 2,
        metrics: metrics.clone(),
        cleanup: Cleanup::on_current_runtime().unwrap(),
    };
    Fixture {
        store,
        ingest,
        metrics,
    }
}

fn partner() -> Partner {
    Partner {
        id: "p1".into(),
        key_hashes: vec![],
        scopes: vec![Scope::Upload],
        max_token_ttl: 300,
    }
}

fn request(body: &[u8], declared: Option<u64>) -> UploadRequest {
    UploadRequest {
        partner: partner(),
        kind: MediaKind::Document,
        format: MediaFormat::Opaque,
        sha256: Sha256::digest(body).into(),
        declared_len: declared,
    }
}

/// `body` in pieces of 10 000 bytes, as a request body arrives.
fn pieces(body: &[u8]) -> impl Stream<Item = Result<Bytes, BodyError>> + Unpin + use<> {
    let chunks: Vec<Result<Bytes, BodyError>> = body
        .chunks(10_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(chunks)
}

fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 7 + usize::from(seed)) as u8)
        .collect()
}

impl Fixture {
    async fn upload(&self, body: &[u8]) -> Result<Outcome, ApiError> {
        let declared = Some(body.len() as u64);
        self.ingest
            .ingest(request(body, declared), pieces(body))
            .await
    }

    async fn objects(&self, prefix: &str) -> Vec<Path> {
        self.store
            .list(Some(&Path::from(prefix)))
            .map(|m| m.unwrap().location)
            .collect()
            .await
    }

    /// Download the whole media through the download flow on the same store.
    async fn download(&self, id: &str) -> Vec<u8> {
        let head = self.ingest.lookup("p1", id).await.unwrap().unwrap();
        let tokens = ring("t1", 3);
        let mut media_id = [0u8; 16];
        hex::decode_to_slice(id, &mut media_id).unwrap();
        let mut generation = [0u8; 8];
        hex::decode_to_slice(&head.header.meta.generation, &mut generation).unwrap();
        let now = now_unix();
        let token = mint(
            &tokens,
            &Claims {
                media_id,
                generation,
                partner: "p1".into(),
                audience: "app".into(),
                issued: now,
                expires: now + 60,
            },
        )
        .unwrap();
        let retrieve = Retrieve::new(
            self.store.clone(),
            self.ingest.master_keys.clone(),
            tokens,
            30,
            &self.metrics,
        );
        let r = retrieve.resolve(&token, now).await.unwrap();
        let body: Vec<Bytes> = retrieve
            .body(&r, 0, r.len - 1)
            .map(|p| p.unwrap())
            .collect()
            .await;
        body.concat()
    }
}

fn info(o: Outcome) -> (bool, MediaInfo) {
    match o {
        Outcome::Created(i) => (true, i),
        Outcome::Existing(i) => (false, i),
    }
}

#[tokio::test]
async fn a_small_upload_is_stored_once_and_found_again() {
    let f = fixture();
    let body = blob(30_000, 1);
    let (created, first) = info(f.upload(&body).await.unwrap());
    assert!(created);
    assert_eq!(first.size, 30_000);
    let (created, again) = info(f.upload(&body).await.unwrap());
    assert!(!created, "the same blob finds the stored media");
    assert_eq!(again, first);
    assert_eq!(f.objects("media").await.len(), 1);
    assert_eq!(f.download(&first.id).await, body);
}

#[tokio::test]
async fn a_multipart_upload_is_committed_whole_and_leaves_no_staging() {
    let f = fixture();
    let body = blob(5 * PART + 123, 2);
    let (created, media) = info(f.upload(&body).await.unwrap());
    assert!(created);
    assert_eq!(f.objects("media").await.len(), 1);
    assert!(f.objects("staging").await.is_empty());
    assert_eq!(f.download(&media.id).await, body);
}

#[tokio::test]
async fn racing_identical_uploads_keep_one_winner() {
    let f = fixture();
    let body = blob(3 * PART + 5, 3);
    let answers = futures::future::join_all((0..4).map(|_| f.upload(&body))).await;
    let infos: Vec<(bool, MediaInfo)> = answers.into_iter().map(|a| info(a.unwrap())).collect();
    assert_eq!(infos.iter().filter(|(created, _)| *created).count(), 1);
    assert!(infos.iter().all(|(_, i)| i.id == infos[0].1.id));
    assert_eq!(f.objects("media").await.len(), 1);
    assert!(f.objects("staging").await.is_empty());
    assert_eq!(f.download(&infos[0].1.id).await, body);
}

#[tokio::test]
async fn refusals_store_nothing() {
    let f = fixture();
    let body = blob(3 * PART, 4);

    // The declared digest is of other bytes: refused after the whole body, nothing kept.
    let mut req = request(&body, Some(body.len() as u64));
    req.sha256 = [0; 32];
    let err = f.ingest.ingest(req, pieces(&body)).await.unwrap_err();
    assert!(matches!(err, ApiError::DigestMismatch), "{err:?}");

    // Shorter than declared.
    let req = request(&body, Some(body.len() as u64 + 1));
    let err = f.ingest.ingest(req, pieces(&body)).await.unwrap_err();
    assert!(matches!(err, ApiError::LengthMismatch), "{err:?}");

    // Declared over the kind's limit: refused before the body is read.
    let req = request(&body, Some(5 << 20));
    let err = f.ingest.ingest(req, pieces(&body)).await.unwrap_err();
    assert!(matches!(err, ApiError::TooLarge { .. }), "{err:?}");

    // A body that breaks off.
    let broken = stream::iter(vec![
        Ok(Bytes::from(body[..PART * 2].to_vec())),
        Err(BodyError::Aborted),
    ]);
    let err = f
        .ingest
        .ingest(request(&body, None), broken)
        .await
        .unwrap_err();
    assert!(!matches!(err, ApiError::Internal), "{err:?}");

    // Aborted multipart uploads are cleaned up in the background.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(f.objects("media").await.is_empty());
    assert!(f.objects("staging").await.is_empty());
}
