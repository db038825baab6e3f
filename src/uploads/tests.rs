//! The resumable-upload flow without the HTTP server, over a memory store with a multipart
//! interface (as S3 has) and the dev configuration: offsets, completion into a media, and
//! what refusals leave behind.

use futures::{StreamExt, stream};
use object_store::memory::InMemory;

use super::*;
use crate::admission::Admission;
use crate::auth::Scope;
use crate::body_pace::BodyError;
use crate::config::{Config, Sources};
use crate::ingest::Ingest;

const PART: usize = 64 << 10;

struct Fixture {
    store: Arc<InMemory>,
    uploads: Uploads,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let dev = crate::devkeys::ensure(dir.path()).unwrap();
    let config = Config::load(&Sources {
        dev_layer: Some(dev.layer),
        file: None,
        env: false,
    })
    .unwrap();
    let mut settings = Settings::resolve(&config).unwrap();
    settings.storage.part_size = PART;
    let store = Arc::new(InMemory::new());
    let metrics = Metrics::new().unwrap();
    let cleanup = Cleanup::on_current_runtime().unwrap();
    let ingest = Ingest::new(
        &settings,
        store.clone(),
        Some(store.clone()),
        metrics.clone(),
        cleanup.clone(),
        Admission::new(settings.upload_admission.clone(), metrics.admission()),
    );
    let parts = PartStore::new(store.clone(), Some(store.clone()), metrics.clone());
    let uploads = Uploads::new(&settings, store.clone(), parts, ingest, metrics, cleanup);
    Fixture {
        store,
        uploads,
        _dir: dir,
    }
}

fn partner(id: &str) -> Partner {
    Partner {
        id: id.into(),
        key_hashes: vec![],
        scopes: vec![Scope::Upload],
        max_token_ttl: 300,
    }
}

fn blob(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

fn body(
    bytes: &[u8],
) -> impl futures::Stream<Item = Result<bytes::Bytes, BodyError>> + Unpin + use<> {
    let pieces: Vec<Result<bytes::Bytes, BodyError>> = bytes
        .chunks(7_000)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(pieces)
}

impl Fixture {
    async fn create(&self, whole: &[u8], sha256: [u8; 32]) -> Progress {
        create(
            &self.uploads,
            NewUpload {
                partner: partner("p1"),
                kind: MediaKind::Document,
                format: MediaFormat::Opaque,
                sha256,
                length: whole.len() as u64,
                metadata: String::new(),
            },
        )
        .await
        .unwrap()
    }

    async fn patch(&self, uid: &str, offset: u64, bytes: &[u8]) -> Result<Progress, ApiError> {
        let req = PatchRequest {
            offset,
            declared_len: Some(bytes.len() as u64),
            checksum: None,
        };
        patch(&self.uploads, &partner("p1"), uid, req, body(bytes)).await
    }

    async fn count(&self, prefix: &str) -> usize {
        self.store
            .list(Some(&Path::from(prefix)))
            .collect::<Vec<_>>()
            .await
            .len()
    }
}

#[tokio::test]
async fn patches_across_parts_become_one_media() {
    let f = fixture();
    let whole = blob(3 * PART + 1_234);
    let created = f.create(&whole, Sha256::digest(&whole).into()).await;
    assert_eq!(created.offset, 0);
    let cuts = [0, PART / 2, 2 * PART + 5, whole.len()];
    let mut last = None;
    for w in cuts.windows(2) {
        let p = f
            .patch(&created.uid, w[0] as u64, &whole[w[0]..w[1]])
            .await
            .unwrap();
        assert_eq!(p.offset, w[1] as u64);
        last = Some(p);
    }
    let media_id = last
        .unwrap()
        .media_id
        .expect("the last PATCH completes the upload");
    let head = f
        .uploads
        .ingest
        .lookup("p1", &media_id)
        .await
        .unwrap()
        .expect("the media exists");
    assert_eq!(head.header.meta.sha256, hex::encode(Sha256::digest(&whole)));
    assert_eq!(f.count("media").await, 1);
    // Completed: HEAD reports the whole length and the media id.
    let st = status(&f.uploads, &partner("p1"), &created.uid)
        .await
        .unwrap();
    assert_eq!(st.offset, whole.len() as u64);
    assert_eq!(st.media_id.as_deref(), Some(media_id.as_str()));
}

#[tokio::test]
async fn a_patch_at_the_wrong_offset_or_by_another_partner_is_refused() {
    let f = fixture();
    let whole = blob(PART + 10);
    let created = f.create(&whole, Sha256::digest(&whole).into()).await;
    f.patch(&created.uid, 0, &whole[..100]).await.unwrap();
    let err = f.patch(&created.uid, 0, &whole[..100]).await.unwrap_err();
    assert!(
        matches!(err, ApiError::UploadOffsetMismatch { expected: 100 }),
        "{err:?}"
    );
    let err = status(&f.uploads, &partner("p2"), &created.uid)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::UploadNotFound), "{err:?}");
    // More than the upload has left.
    let err = f.patch(&created.uid, 100, &whole).await.unwrap_err();
    assert!(matches!(err, ApiError::TooLarge { .. }), "{err:?}");
    let st = status(&f.uploads, &partner("p1"), &created.uid)
        .await
        .unwrap();
    assert!(st.offset <= whole.len() as u64);
}

#[tokio::test]
async fn a_wrong_digest_discards_the_upload_and_stores_nothing() {
    let f = fixture();
    let whole = blob(2 * PART + 3);
    let created = f.create(&whole, [0; 32]).await;
    let err = f.patch(&created.uid, 0, &whole).await.unwrap_err();
    assert!(matches!(err, ApiError::DigestMismatch), "{err:?}");
    assert_eq!(f.count("media").await, 0);
    let err = status(&f.uploads, &partner("p1"), &created.uid)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::UploadNotFound | ApiError::UploadExpired),
        "{err:?}"
    );
}

#[tokio::test]
async fn termination_ends_the_upload() {
    let f = fixture();
    let whole = blob(PART * 2);
    let created = f.create(&whole, Sha256::digest(&whole).into()).await;
    f.patch(&created.uid, 0, &whole[..PART + 1]).await.unwrap();
    terminate(&f.uploads, &partner("p1"), &created.uid)
        .await
        .unwrap();
    let err = f
        .patch(&created.uid, (PART + 1) as u64, &whole[PART + 1..])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::UploadNotFound | ApiError::UploadExpired),
        "{err:?}"
    );
    assert_eq!(f.count("media").await, 0);
}
