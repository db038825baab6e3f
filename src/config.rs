//! Typed configuration: layering (built-in defaults, dev keys, file, environment), secrets as
//! value or file, and validation into the resolved [`Settings`] the service runs on.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::auth::{Partner, Partners, Scope};
use crate::crypto::keys::{KeyRing, SecretKey, kid_is_valid};
use crate::media::MediaKind;

mod upload_limits;
pub use upload_limits::UploadLimitsConfig;

/// The documented defaults, compiled in so the file and the code cannot disagree.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
/// Environment prefix of every setting.
pub const ENV_PREFIX: &str = "INTEROP_MEDIA_";

/// A secret string from configuration: zeroized on drop, never shown by `Debug`.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub keys: KeysConfig,
    pub tokens: TokensConfig,
    pub retention: RetentionConfig,
    pub uploads: UploadsConfig,
    pub media: MediaConfig,
    pub limits: LimitsConfig,
    #[serde(default)]
    pub partners: BTreeMap<String, PartnerConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub metrics_listen: String,
    pub workers: usize,
    pub public_url: String,
    pub drain_delay_s: u64,
    pub shutdown_grace_s: u64,
    pub body_idle_timeout_s: u64,
    pub max_connections: usize,
    pub log_format: String,
    pub log_level: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub url: String,
    pub part_size_mib: u64,
    pub upload_concurrency: usize,
    pub orphan_age_s: u64,
    pub connect_timeout_ms: u64,
    pub request_timeout_s: u64,
    pub max_retries: usize,
    pub retry_timeout_s: u64,
    pub stall_timeout_s: u64,
    pub probe_timeout_ms: u64,
    pub probe_cache_ms: u64,
    pub s3: S3Config,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Option<SecretString>,
    pub secret_access_key_file: Option<PathBuf>,
    pub allow_http: bool,
    pub path_style: bool,
}

/// A key given as a value or as a file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub key: Option<SecretString>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    pub active: String,
    #[serde(default)]
    pub master: BTreeMap<String, KeyEntry>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokensConfig {
    pub active: String,
    pub default_ttl_s: u64,
    pub max_ttl_s: u64,
    pub clock_skew_s: u64,
    pub max_audiences: usize,
    #[serde(default)]
    pub keys: BTreeMap<String, KeyEntry>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub ttl_s: u64,
}

/// The seal-for-me media pipeline and its worker processes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    pub workers: usize,
    pub memory_mib: u64,
    pub cpu_s: u64,
    pub deadline_s: u64,
    pub queue_wait_ms: u64,
    pub max_requests: u32,
    pub thumb_side: u32,
    pub max_pixels: u64,
    pub max_dimension: u32,
    pub max_duration_s: u64,
    pub tmp_dir: String,
    /// The uid (and gid) workers run as when the service runs as root.
    #[serde(default = "default_worker_uid")]
    pub worker_uid: u32,
}

fn default_worker_uid() -> u32 {
    crate::pipeline::pool::NOBODY
}

/// Resumable (tus) uploads.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsConfig {
    pub expiry_s: u64,
    pub lease_s: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub sealed: KindLimits,
    /// Plaintext limits of seal-for-me uploads.
    pub seal: KindLimits,
    /// Memory, waiting and pace of uploads (see `admission` and `body_pace`).
    pub uploads: UploadLimitsConfig,
}

/// A byte limit per media kind.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KindLimits {
    pub image: u64,
    pub sticker: u64,
    pub voice: u64,
    pub audio: u64,
    pub video: u64,
    pub document: u64,
}

impl KindLimits {
    pub fn get(&self, kind: MediaKind) -> u64 {
        match kind {
            MediaKind::Image => self.image,
            MediaKind::Sticker => self.sticker,
            MediaKind::Voice => self.voice,
            MediaKind::Audio => self.audio,
            MediaKind::Video => self.video,
            MediaKind::Document => self.document,
        }
    }

    /// The largest limit of any kind (`Tus-Max-Size`).
    pub fn max(&self) -> u64 {
        [
            self.image,
            self.sticker,
            self.voice,
            self.audio,
            self.video,
            self.document,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    /// One hex SHA-256, or a list of two while the partner rotates its API key.
    pub key_sha256: KeyHashes,
    pub scopes: Vec<String>,
    pub max_token_ttl_s: Option<u64>,
}

/// `key_sha256 = "hex"` or `key_sha256 = ["old hex", "new hex"]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum KeyHashes {
    One(String),
    Many(Vec<String>),
}

impl KeyHashes {
    fn list(&self) -> Vec<&str> {
        match self {
            KeyHashes::One(h) => vec![h.as_str()],
            KeyHashes::Many(hs) => hs.iter().map(String::as_str).collect(),
        }
    }
}

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        let key = if e.path.is_empty() {
            "(config)".to_string()
        } else {
            e.path.join(".")
        };
        ConfigError::new(key, e.kind.to_string())
    }
}

/// The top-level sections of [`Config`]: only environment variables naming one of these
/// (`INTEROP_MEDIA_<SECTION>__…`) are configuration.
pub const SECTIONS: &[&str] = &[
    "server",
    "storage",
    "keys",
    "tokens",
    "retention",
    "uploads",
    "media",
    "limits",
    "partners",
];

/// Whether an `INTEROP_MEDIA_*` variable (prefix stripped, any case) is configuration.
/// Kubernetes injects service-link variables for a Service named `interop-media`
/// (`INTEROP_MEDIA_PORT=tcp://…`, `INTEROP_MEDIA_SERVICE_HOST`, `…_PORT_8080_TCP_ADDR`); they
/// name no section, so they are ignored instead of failing the strict loader. A misspelled key
/// *inside* a known section still fails, naming the key.
fn is_config_var(rest: &str) -> bool {
    let lower = rest.to_ascii_lowercase();
    let section = lower.split("__").next().unwrap_or("");
    lower.contains("__") && SECTIONS.contains(&section) || SECTIONS.contains(&lower.as_str())
}

/// `INTEROP_MEDIA_*` variables of this process that are not configuration and are ignored
/// (besides `INTEROP_MEDIA_CONFIG`, the config file's path), sorted, for one warning.
pub fn ignored_env_vars() -> Vec<String> {
    let mut v: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            k.strip_prefix(ENV_PREFIX)
                .is_some_and(|rest| rest != "CONFIG" && !is_config_var(rest))
        })
        .collect();
    v.sort();
    v
}

/// Where the layers come from.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// TOML written by `serve --dev` (dev keys); sits above the defaults.
    pub dev_layer: Option<String>,
    pub file: Option<PathBuf>,
    /// Read `INTEROP_MEDIA_*` from the process environment.
    pub env: bool,
}

impl Config {
    /// Merge the layers. Environment variables win over the file, the file over dev keys,
    /// dev keys over the defaults.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(dev) = &sources.dev_layer {
            fig = fig.merge(Toml::string(dev));
        }
        if let Some(file) = &sources.file {
            if !file.exists() {
                return Err(ConfigError::new(
                    "--config",
                    format!("{} does not exist", file.display()),
                ));
            }
            fig = fig.merge(Toml::file(file));
        }
        if sources.env {
            fig = fig.merge(
                Env::prefixed(ENV_PREFIX)
                    .filter(|k| is_config_var(k.as_str()))
                    .split("__"),
            );
        }
        Ok(fig.extract()?)
    }
}

/// Resolved settings: every secret loaded, every value checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub metrics_listen: Option<String>,
    /// Serve `/metrics` on the main listener too. Never from configuration: only `serve --dev`
    /// on a loopback address sets it (metrics are not public by default).
    pub metrics_on_main: bool,
    pub workers: usize,
    /// Base of minted download URLs; validated http(s). Required by `serve` outside `--dev`,
    /// never taken from a request's Host or X-Forwarded-* headers.
    pub public_url: Option<String>,
    pub drain_delay: Duration,
    pub shutdown_grace: Duration,
    pub body_idle_timeout: Duration,
    /// How slowly an upload body may arrive.
    pub body_pace: crate::body_pace::PacePolicy,
    /// Open connections the public listener keeps at once, over all workers.
    pub max_connections: usize,
    /// What uploads may hold in memory, and how long a request waits for room.
    pub upload_admission: crate::admission::AdmissionLimits,
    pub log_json: bool,
    pub log_level: String,
    pub storage: StorageSettings,
    pub master_keys: KeyRing,
    pub token_keys: KeyRing,
    pub token_default_ttl: u64,
    pub token_max_ttl: u64,
    /// Most audiences one fan-out token request may name.
    pub token_max_audiences: usize,
    pub clock_skew: u64,
    pub retention: Duration,
    /// How long an unfinished resumable upload lives (`Upload-Expires`).
    pub upload_expiry: Duration,
    /// How long a PATCH owns an upload without renewing; a replica that dies mid-PATCH
    /// blocks the upload for at most this long.
    pub upload_lease: Duration,
    pub sealed_limits: KindLimits,
    pub seal_limits: KindLimits,
    /// `None` when `media.workers = 0` (seal-for-me and its pipeline are off).
    pub media: Option<crate::pipeline::pool::PoolConfig>,
    /// Where plaintext of seal-for-me uploads is kept while it is processed.
    pub media_tmp_dir: Option<PathBuf>,
    pub partners: Partners,
}

#[derive(Debug, Clone)]
pub struct StorageSettings {
    pub url: String,
    pub part_size: usize,
    pub upload_concurrency: usize,
    /// Staging data (and S3 multipart uploads) older than this is an orphan for `sweep`.
    pub orphan_age: Duration,
    /// S3 client: TCP connect timeout, whole-request timeout, retry budget (count and time).
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_retries: usize,
    pub retry_timeout: Duration,
    /// A store read that delivers no byte for this long is resumed from where it stopped.
    pub stall_timeout: Duration,
    /// `/readyz`: how long it waits for the store, and how long a probe result is reused.
    pub probe_timeout: Duration,
    pub probe_cache: Duration,
    pub s3: S3Settings,
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
    pub allow_http: bool,
    pub path_style: bool,
}

/// Read a secret given as a value or as a file, never both.
fn secret(
    key_name: &str,
    value: Option<&SecretString>,
    file: Option<&Path>,
) -> Result<Option<SecretString>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            key_name,
            format!("set either `{key_name}` or `{key_name}_file`, not both"),
        )),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(SecretString(s.trim().to_string())))
            .map_err(|e| {
                ConfigError::new(
                    format!("{key_name}_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            }),
        (None, None) => Ok(None),
    }
}

fn key_ring(
    section: &str,
    map_name: &str,
    active: &str,
    entries: &BTreeMap<String, KeyEntry>,
) -> Result<KeyRing, ConfigError> {
    let mut keys = BTreeMap::new();
    for (kid, entry) in entries {
        let path = format!("{section}.{map_name}.{kid}.key");
        if !kid_is_valid(kid) {
            return Err(ConfigError::new(
                format!("{section}.{map_name}.{kid}"),
                "key ids are 1-16 characters of A-Z a-z 0-9 . _ -",
            ));
        }
        let text = secret(&path, entry.key.as_ref(), entry.key_file.as_deref())?
            .ok_or_else(|| ConfigError::new(&path, "missing: set `key` or `key_file`"))?;
        let key =
            SecretKey::parse(text.expose()).map_err(|e| ConfigError::new(&path, e.to_string()))?;
        keys.insert(kid.clone(), key);
    }
    if active.is_empty() {
        return Err(ConfigError::new(
            format!("{section}.active"),
            "no active key: configure one (`interop-media keygen` prints keys) or run `serve --dev`",
        ));
    }
    KeyRing::new(active.to_string(), keys)
        .map_err(|e| ConfigError::new(format!("{section}.active"), e.to_string()))
}

/// The worker pool's settings; `None` when the pipeline is switched off.
fn media_pool(m: &MediaConfig, seal: &KindLimits) -> Option<crate::pipeline::pool::PoolConfig> {
    use crate::pipeline::{Limits, pool::PoolConfig, worker::Cage};
    (m.workers > 0).then(|| PoolConfig {
        workers: m.workers,
        cage: Cage {
            memory_bytes: m.memory_mib << 20,
            cpu_seconds: m.cpu_s,
            // A cleaned copy is never larger than the input, which is within the kind limit.
            max_file_bytes: seal.max() + (1 << 20),
        },
        deadline: Duration::from_secs(m.deadline_s),
        queue_wait: Duration::from_millis(m.queue_wait_ms),
        max_requests: m.max_requests,
        limits: Limits {
            max_pixels: m.max_pixels,
            max_dimension: m.max_dimension,
            // Decoders get at most half the cage; the rest is the process itself.
            max_alloc: (m.memory_mib << 20) / 2,
            thumb_side: m.thumb_side,
            max_duration_ms: m.max_duration_s * 1000,
            video_thumbnail: true,
        },
        worker_uid: m.worker_uid,
    })
}

/// A base URL that minted links may start with: http(s), a host, nothing that could smuggle
/// another origin or a script (no credentials, query or fragment).
fn check_public_url(s: &str) -> Result<(), &'static str> {
    let u = url::Url::parse(s).map_err(|_| "not a URL")?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL");
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("must name a host");
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry credentials");
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("must not have a query or fragment");
    }
    Ok(())
}

impl Settings {
    /// What `serve` needs beyond [`Settings::resolve`] outside `--dev`: a configured public
    /// URL, so minted links never depend on what a client put in `Host`.
    pub fn check_serve(&self) -> Result<(), ConfigError> {
        if self.public_url.is_none() {
            return Err(ConfigError::new(
                "server.public_url",
                "required: the base URL of minted download links, e.g. https://media.example.net",
            ));
        }
        Ok(())
    }

    pub fn resolve(c: &Config) -> Result<Settings, ConfigError> {
        let s = &c.server;
        if s.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::new(
                "server.listen",
                "expected host:port, e.g. 127.0.0.1:8080",
            ));
        }
        if !s.metrics_listen.is_empty() && s.metrics_listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError::new(
                "server.metrics_listen",
                "expected host:port or empty",
            ));
        }
        if !matches!(s.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::new(
                "server.log_format",
                "expected \"text\" or \"json\"",
            ));
        }
        if s.body_idle_timeout_s == 0 {
            return Err(ConfigError::new(
                "server.body_idle_timeout_s",
                "must be at least 1",
            ));
        }
        if !(16..=1_000_000).contains(&s.max_connections) {
            return Err(ConfigError::new(
                "server.max_connections",
                "must be between 16 and 1000000",
            ));
        }
        if !s.public_url.is_empty() {
            check_public_url(&s.public_url)
                .map_err(|m| ConfigError::new("server.public_url", m))?;
        }
        let st = &c.storage;
        crate::storage::check_url(&st.url).map_err(|m| ConfigError::new("storage.url", m))?;
        if !(5..=512).contains(&st.part_size_mib) {
            return Err(ConfigError::new(
                "storage.part_size_mib",
                "must be between 5 and 512",
            ));
        }
        if !(1..=16).contains(&st.upload_concurrency) {
            return Err(ConfigError::new(
                "storage.upload_concurrency",
                "must be between 1 and 16",
            ));
        }
        if st.connect_timeout_ms == 0
            || st.request_timeout_s == 0
            || st.retry_timeout_s == 0
            || st.stall_timeout_s == 0
        {
            return Err(ConfigError::new(
                "storage",
                "connect_timeout_ms, request_timeout_s, retry_timeout_s and stall_timeout_s must be at least 1",
            ));
        }
        if !(50..=30_000).contains(&st.probe_timeout_ms) {
            return Err(ConfigError::new(
                "storage.probe_timeout_ms",
                "must be between 50 and 30000",
            ));
        }
        let s3 = &st.s3;
        let secret_access_key = secret(
            "storage.s3.secret_access_key",
            s3.secret_access_key.as_ref(),
            s3.secret_access_key_file.as_deref(),
        )?;
        if s3.access_key_id.is_empty() != secret_access_key.is_none() {
            return Err(ConfigError::new(
                "storage.s3.secret_access_key",
                "access_key_id and secret_access_key go together",
            ));
        }
        let t = &c.tokens;
        if t.default_ttl_s == 0 || t.default_ttl_s > t.max_ttl_s {
            return Err(ConfigError::new(
                "tokens.default_ttl_s",
                "must be between 1 and tokens.max_ttl_s",
            ));
        }
        if t.max_audiences == 0 || t.max_audiences > crate::token_service::MAX_AUDIENCES_CEILING {
            return Err(ConfigError::new(
                "tokens.max_audiences",
                "must be between 1 and 1024",
            ));
        }
        let m = &c.media;
        if m.workers > 64 {
            return Err(ConfigError::new("media.workers", "at most 64"));
        }
        if m.memory_mib < 128 {
            return Err(ConfigError::new("media.memory_mib", "at least 128"));
        }
        if m.cpu_s == 0 || m.deadline_s == 0 || m.max_requests == 0 {
            return Err(ConfigError::new(
                "media",
                "cpu_s, deadline_s and max_requests must be at least 1",
            ));
        }
        if !(16..=1024).contains(&m.thumb_side) {
            return Err(ConfigError::new("media.thumb_side", "between 16 and 1024"));
        }
        if c.uploads.expiry_s == 0 {
            return Err(ConfigError::new("uploads.expiry_s", "must be at least 1"));
        }
        if !(5..=3600).contains(&c.uploads.lease_s) {
            return Err(ConfigError::new(
                "uploads.lease_s",
                "must be between 5 and 3600 seconds",
            ));
        }
        if c.retention.ttl_s == 0 {
            return Err(ConfigError::new("retention.ttl_s", "must be at least 1"));
        }
        let mut partners = Vec::new();
        for (id, p) in &c.partners {
            let at = format!("partners.{id}");
            if !crate::auth::partner_id_is_valid(id) {
                return Err(ConfigError::new(
                    at,
                    "partner ids are 1-32 characters of a-z 0-9 . _ -",
                ));
            }
            let listed = p.key_sha256.list();
            if !(1..=2).contains(&listed.len()) {
                return Err(ConfigError::new(
                    format!("{at}.key_sha256"),
                    "one hash, or two while the partner rotates its key",
                ));
            }
            let mut key_hashes = Vec::new();
            for h in listed {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(h.trim(), &mut hash).map_err(|_| {
                    ConfigError::new(format!("{at}.key_sha256"), "expected 64 hex digits")
                })?;
                key_hashes.push(hash);
            }
            let mut scopes = Vec::new();
            for sc in &p.scopes {
                scopes.push(Scope::parse(sc).ok_or_else(|| {
                    ConfigError::new(
                        format!("{at}.scopes"),
                        format!("unknown scope `{sc}`; expected upload, token, delete, seal"),
                    )
                })?);
            }
            if p.max_token_ttl_s.is_some_and(|m| m == 0 || m > t.max_ttl_s) {
                return Err(ConfigError::new(
                    format!("{at}.max_token_ttl_s"),
                    "must be between 1 and tokens.max_ttl_s",
                ));
            }
            partners.push(Partner {
                id: id.clone(),
                key_hashes,
                scopes,
                max_token_ttl: p.max_token_ttl_s.unwrap_or(t.max_ttl_s),
            });
        }
        let (upload_admission, body_pace) = upload_limits::resolve(
            &c.limits.uploads,
            st,
            Duration::from_secs(s.body_idle_timeout_s),
        )?;
        Ok(Settings {
            listen: s.listen.clone(),
            metrics_listen: (!s.metrics_listen.is_empty()).then(|| s.metrics_listen.clone()),
            metrics_on_main: false,
            workers: s.workers,
            public_url: (!s.public_url.is_empty())
                .then(|| s.public_url.trim_end_matches('/').to_string()),
            drain_delay: Duration::from_secs(s.drain_delay_s),
            shutdown_grace: Duration::from_secs(s.shutdown_grace_s),
            body_idle_timeout: Duration::from_secs(s.body_idle_timeout_s),
            body_pace,
            max_connections: s.max_connections,
            upload_admission,
            log_json: s.log_format == "json",
            log_level: s.log_level.clone(),
            storage: StorageSettings {
                url: st.url.clone(),
                part_size: (st.part_size_mib as usize) << 20,
                upload_concurrency: st.upload_concurrency,
                orphan_age: Duration::from_secs(st.orphan_age_s),
                connect_timeout: Duration::from_millis(st.connect_timeout_ms),
                request_timeout: Duration::from_secs(st.request_timeout_s),
                max_retries: st.max_retries,
                retry_timeout: Duration::from_secs(st.retry_timeout_s),
                stall_timeout: Duration::from_secs(st.stall_timeout_s),
                probe_timeout: Duration::from_millis(st.probe_timeout_ms),
                probe_cache: Duration::from_millis(st.probe_cache_ms),
                s3: S3Settings {
                    endpoint: (!s3.endpoint.is_empty()).then(|| s3.endpoint.clone()),
                    region: s3.region.clone(),
                    access_key_id: (!s3.access_key_id.is_empty()).then(|| s3.access_key_id.clone()),
                    secret_access_key,
                    allow_http: s3.allow_http,
                    path_style: s3.path_style,
                },
            },
            master_keys: key_ring("keys", "master", &c.keys.active, &c.keys.master)?,
            token_keys: key_ring("tokens", "keys", &t.active, &t.keys)?,
            token_default_ttl: t.default_ttl_s,
            token_max_ttl: t.max_ttl_s,
            token_max_audiences: t.max_audiences,
            clock_skew: t.clock_skew_s,
            retention: Duration::from_secs(c.retention.ttl_s),
            upload_expiry: Duration::from_secs(c.uploads.expiry_s),
            upload_lease: Duration::from_secs(c.uploads.lease_s),
            sealed_limits: c.limits.sealed.clone(),
            seal_limits: c.limits.seal.clone(),
            media: media_pool(&c.media, &c.limits.seal),
            media_tmp_dir: (!c.media.tmp_dir.is_empty()).then(|| PathBuf::from(&c.media.tmp_dir)),
            partners: Partners::new(partners),
        })
    }
}

#[cfg(test)]
mod tests;
