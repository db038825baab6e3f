//! Resumable-upload state in the object store: a log of sealed records that are only ever
//! created, never overwritten.
//!
//! Each upload owns `uploads/<uid>/`. Its state is the newest record of `log/<seq>`.
//! Appending record `seq + 1` with `PutMode::Create` is the compare-and-swap: of two replicas
//! that read the same state, exactly one can move it on, and the other learns it lost.
//! Create-if-absent behaves the same on S3 and on local files (which lack `PutMode::Update`),
//! so one design runs on every backend. Records are never deleted while an upload is live,
//! so a replica holding a stale view can never re-create a sequence number that was taken.
//!
//! Records and staged tails are sealed (AES-256-GCM, key from the master ring, the object
//! path as associated data): the store sees neither partner, digest nor offsets, and a
//! record copied to another upload or sequence number does not open.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::envelope::{self, EnvelopeError};
use crate::crypto::keys::KeyRing;
use crate::error::StoreError;
use crate::media::{MediaFormat, MediaKind};

/// Every resumable upload's records live under this prefix.
pub const UPLOADS_PREFIX: &str = "uploads";
const KDF_INFO: &[u8] = b"interop-media/v1/upload";

/// Whether a string has the shape of an upload id (32 lowercase hex digits).
pub fn uid_is_valid(uid: &str) -> bool {
    uid.len() == 32 && uid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn upload_dir(uid: &str) -> Path {
    Path::from_iter([UPLOADS_PREFIX, uid])
}

fn log_dir(uid: &str) -> Path {
    Path::from_iter([UPLOADS_PREFIX, uid, "log"])
}

// Zero-padded so that names sort in sequence order in listings.
pub fn log_path(uid: &str, seq: u64) -> Path {
    Path::from_iter([UPLOADS_PREFIX, uid, "log", &format!("{seq:020}")])
}

pub fn tail_path(uid: &str, seq: u64) -> Path {
    Path::from_iter([UPLOADS_PREFIX, uid, "tail", &format!("{seq:020}")])
}

/// The assembled object of a resumable upload, before its create-only commit to `media/<id>`.
pub fn object_path(uid: &str) -> Path {
    Path::from_iter([UPLOADS_PREFIX, uid, "object"])
}

pub fn part_path(uid: &str, idx: usize) -> Path {
    Path::from_iter([UPLOADS_PREFIX, uid, "parts", &format!("{idx:05}")])
}

/// Where a resumable upload stands after its last committed PATCH.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadState {
    pub partner: String,
    pub kind: MediaKind,
    pub format: MediaFormat,
    /// Declared SHA-256 of the whole blob, hex.
    pub sha256: String,
    /// `Upload-Length`.
    pub length: u64,
    /// Bytes received and durable (parts plus staged tail).
    pub offset: u64,
    /// `Upload-Metadata` as the client sent it, echoed on `HEAD`.
    pub metadata: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds: unfinished uploads are refused (410) and swept from then on.
    pub expires: u64,
    /// The id the media gets on completion (keyed by partner, kind, format, digest).
    pub media_id: String,
    /// The stored object's header (base64), fixed at creation: it carries the salt, so it
    /// determines the payload key of every chunk sealed later.
    pub header: String,
    /// Multipart upload id, once the first part has been written (native multipart only).
    pub multipart: Option<String>,
    /// Content ids (ETags) of the parts written so far, in order.
    pub parts: Vec<String>,
    /// Next STREAM chunk index.
    pub sealer_index: u64,
    /// SHA-256 midstate over the bytes received so far (base64).
    pub hash_state: String,
    /// The staged tail: sealed bytes not yet forming a whole part, then held-back plaintext.
    pub tail: Option<Tail>,
    /// Set once the media object exists; the upload then only answers `HEAD`.
    pub completed: bool,
    /// Parts are assembled into `uploads/<uid>/object` and committed to the media path
    /// create-only. Absent in records of earlier releases, whose parts target the media path.
    #[serde(default)]
    pub staged: bool,
    /// Set on progress checkpoints written while a PATCH still runs: its claim (the PATCH
    /// renews it with claim records on top). `None` on every other state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Claim>,
}

impl UploadState {
    /// Where this upload's parts are assembled (and its multipart upload lives on S3).
    pub fn target(&self, uid: &str) -> Path {
        if self.staged {
            object_path(uid)
        } else {
            crate::storage::media_path(&self.media_id)
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Tail {
    /// Sequence number of the record that staged it (its object name).
    pub seq: u64,
    pub sealed_len: u64,
    pub plain_len: u64,
}

/// A PATCH in progress owns the upload until `lease_until_ms` (and renews while it runs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    pub holder: String,
    pub lease_until_ms: u64,
    /// The state record this PATCH builds on.
    pub base_seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    State(Box<UploadState>),
    Claim(Claim),
    /// Terminated or discarded; kept as a tombstone until the sweep, so no replica can
    /// revive the upload with a stale view.
    Terminated {
        at: u64,
    },
}

/// What the log says about an upload.
#[derive(Debug)]
pub enum Loaded {
    Missing,
    Terminated { seq: u64, at: u64 },
    Live(Box<View>),
}

/// The newest record and the state it rests on.
#[derive(Debug, Clone)]
pub struct View {
    pub latest_seq: u64,
    /// The newest record when it is a claim.
    pub claim: Option<Claim>,
    pub state_seq: u64,
    pub state: UploadState,
}

/// Seal bytes for `path` of upload `uid` under the ring's active key (the envelope of
/// `crate::crypto::envelope`).
pub fn seal(ring: &KeyRing, uid: &str, path: &Path, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
    envelope::seal(ring, KDF_INFO, uid, path.as_ref().as_bytes(), plain).map_err(store_error)
}

/// Open what [`seal`] produced for the same upload and path.
pub fn open(
    ring: &KeyRing,
    uid: &str,
    path: &Path,
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    envelope::open(ring, KDF_INFO, uid, path.as_ref().as_bytes(), data).map_err(store_error)
}

fn store_error(e: EnvelopeError) -> StoreError {
    match e {
        EnvelopeError::UnknownKey => StoreError::UnknownKey,
        EnvelopeError::Malformed => StoreError::Corrupt("upload record"),
        EnvelopeError::Auth => StoreError::Corrupt("upload record failed authentication"),
        EnvelopeError::Rng => StoreError::Corrupt("rng"),
    }
}

async fn read_entry(
    store: &dyn ObjectStore,
    ring: &KeyRing,
    uid: &str,
    seq: u64,
) -> Result<Entry, StoreError> {
    let path = log_path(uid, seq);
    let bytes = store.get(&path).await?.bytes().await?;
    let plain = open(ring, uid, &path, &bytes)?;
    serde_json::from_slice(&plain).map_err(|_| StoreError::Corrupt("upload record json"))
}

/// The highest sequence number in an upload's log.
async fn latest_seq(store: &dyn ObjectStore, uid: &str) -> Result<Option<u64>, StoreError> {
    let metas: Vec<_> = store.list(Some(&log_dir(uid))).try_collect().await?;
    Ok(metas
        .iter()
        .filter_map(|m| m.location.filename()?.parse::<u64>().ok())
        .max())
}

/// Read an upload's current state.
pub async fn load(
    store: &dyn ObjectStore,
    ring: &KeyRing,
    uid: &str,
) -> Result<Loaded, StoreError> {
    let Some(latest_seq) = latest_seq(store, uid).await? else {
        return Ok(Loaded::Missing);
    };
    match read_entry(store, ring, uid, latest_seq).await? {
        Entry::Terminated { at } => Ok(Loaded::Terminated {
            seq: latest_seq,
            at,
        }),
        Entry::State(state) => Ok(Loaded::Live(Box::new(View {
            latest_seq,
            // A progress checkpoint carries the claim of the PATCH that wrote it, so the
            // upload stays busy without a window for another PATCH to step in.
            claim: state.held.clone(),
            state_seq: latest_seq,
            state: *state,
        }))),
        Entry::Claim(claim) => match read_entry(store, ring, uid, claim.base_seq).await? {
            Entry::State(state) => Ok(Loaded::Live(Box::new(View {
                latest_seq,
                state_seq: claim.base_seq,
                claim: Some(claim),
                state: *state,
            }))),
            _ => Err(StoreError::Corrupt("claim does not rest on a state")),
        },
    }
}

/// Append record `seq`. `Ok(false)`: another writer took that number first.
pub async fn append(
    store: &dyn ObjectStore,
    ring: &KeyRing,
    uid: &str,
    seq: u64,
    entry: &Entry,
) -> Result<bool, StoreError> {
    let path = log_path(uid, seq);
    let json = Zeroizing::new(
        serde_json::to_vec(entry).map_err(|_| StoreError::Corrupt("upload record json"))?,
    );
    let sealed = seal(ring, uid, &path, &json)?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store.put_opts(&path, PutPayload::from(sealed), opts).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::SecretKey;
    use std::collections::BTreeMap;

    fn ring() -> KeyRing {
        let mut m = BTreeMap::new();
        m.insert("k1".to_string(), SecretKey::from_bytes([7; 32]));
        KeyRing::new("k1".into(), m).unwrap()
    }

    #[test]
    fn sealed_records_bind_upload_and_path() {
        let r = ring();
        let uid = "0123456789abcdef0123456789abcdef";
        let p = log_path(uid, 3);
        let sealed = seal(&r, uid, &p, b"hello").unwrap();
        assert_eq!(&**open(&r, uid, &p, &sealed).unwrap(), b"hello");
        assert!(open(&r, uid, &log_path(uid, 4), &sealed).is_err());
        assert!(open(&r, "ffffffffffffffffffffffffffffffff", &p, &sealed).is_err());
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(open(&r, uid, &p, &bad).is_err());
        assert!(open(&r, uid, &p, &sealed[..10]).is_err());
    }

    #[test]
    fn paths_sort_by_sequence() {
        let a = log_path("u", 9);
        let b = log_path("u", 10);
        assert!(a.as_ref() < b.as_ref());
        assert!(uid_is_valid("0123456789abcdef0123456789abcdef"));
        assert!(!uid_is_valid("../etc"));
    }
}
