//! interop-media command line: `serve` (default), `keygen`, `config check`, `sweep`, and the
//! client commands `prepare`, `open`, `upload`, `download`.

#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use interop_media::client::{self, ClientError};
use interop_media::config::{Config, Settings, Sources};
use interop_media::crypto::keys::SecretKey;
use interop_media::media::{MediaFormat, MediaKind};
use interop_media::uploads::parts::PartStore;
use interop_media::{devkeys, ingest, storage, sweep};

#[derive(Debug, Parser)]
#[command(
    name = "interop-media",
    version,
    about = "Media host for messaging interoperability"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Args, Default)]
struct ConfigArgs {
    /// Configuration file (TOML); see config/default.toml for every key.
    #[arg(long, env = "INTEROP_MEDIA_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args, Default)]
struct ServeArgs {
    /// DEV ONLY: generate and keep keys and a partner key in the data dir, store media there.
    #[arg(long)]
    dev: bool,
    /// Listen address (overrides server.listen); port 0 picks a free port.
    #[arg(long)]
    listen: Option<String>,
    /// Data directory for --dev (keys, objects).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
}

const CLIENT_EXIT_CODES: &str = "Exit codes: 0 ok; 2 usage or configuration (bad arguments, \
unreadable file, bad descriptor or state file); 3 verification failed (digest, MAC, padding, \
length) or the media pipeline refused the file; 4 server or network error (for a resumable \
upload: run the same command again to resume).";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (the default command).
    Serve(ServeArgs),
    /// Print fresh keys: at-rest master key, token key, and a partner API key with its hash.
    Keygen,
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Encrypt a file in an E2EE attachment format; prints the descriptor (JSON).
    #[command(after_help = CLIENT_EXIT_CODES)]
    Prepare {
        file: PathBuf,
        #[arg(long, value_enum)]
        format: MediaFormat,
        #[arg(long, value_enum)]
        kind: MediaKind,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// WhatsApp streaming sidecar (default: on for video, audio and voice).
        #[arg(long)]
        sidecar: Option<bool>,
        /// Also write the descriptor to this file.
        #[arg(long)]
        descriptor_out: Option<PathBuf>,
        /// Seal the bytes as they are: skip the media pipeline (type check, metadata
        /// removal, dimensions, duration, waveform, thumbnail).
        #[arg(long)]
        raw: bool,
    },
    /// Verify and decrypt a blob with its descriptor; writes nothing unless every check passes.
    #[command(after_help = CLIENT_EXIT_CODES)]
    Open {
        blob: PathBuf,
        /// The descriptor: as `prepare` printed it, or the whole JSON `upload` printed.
        #[arg(long)]
        descriptor: PathBuf,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Prepare (unless --sealed), upload, mint a token; prints id, token URL and descriptor.
    ///
    /// Files over 8 MiB (or with --resumable) go through the resumable tus endpoint with a
    /// progress bar (on a terminal): a dropped connection is retried with backoff from the
    /// server's offset, and a killed upload resumes when the same command runs again. The
    /// state (upload URL, sealed file's digest, where the descriptor is) is kept at --state,
    /// mode 0600, beside the sealed copy (STATE.sealed), which is re-used so the resumed bytes
    /// are the same; both are removed when the media exists. The state never holds the media
    /// key: a resumable upload that seals needs --descriptor-out, written (0600) before the
    /// first byte leaves.
    #[command(after_help = CLIENT_EXIT_CODES)]
    Upload {
        file: PathBuf,
        #[arg(long)]
        server: String,
        /// File holding the partner API key.
        #[arg(long)]
        key_file: PathBuf,
        #[arg(long, value_enum, default_value = "whatsapp")]
        format: MediaFormat,
        #[arg(long, value_enum, default_value = "document")]
        kind: MediaKind,
        /// The file is already sealed: upload it as is.
        #[arg(long)]
        sealed: bool,
        /// Seal the bytes as they are, skipping the media pipeline (see `prepare --raw`).
        #[arg(long)]
        raw: bool,
        #[arg(long, default_value = "cli")]
        audience: String,
        /// Also write the descriptor (it holds the media key) to this file, mode 0600.
        #[arg(long)]
        descriptor_out: Option<PathBuf>,
        /// Use the resumable (tus) endpoint whatever the size.
        #[arg(long)]
        resumable: bool,
        /// State file of a resumable upload [default: FILE.upload-state.json].
        #[arg(long)]
        state: Option<PathBuf>,
        /// Resumable: attempts in a row without finishing before giving up (exit 4).
        #[arg(long, default_value_t = 10)]
        attempts: u32,
        /// Resumable: cap the upload rate, in bytes per second.
        #[arg(long)]
        max_rate: Option<u64>,
    },
    /// Fetch a token URL (resuming after dropped connections), optionally verify and decrypt.
    #[command(after_help = CLIENT_EXIT_CODES)]
    Download {
        url: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Decrypt with this descriptor (as `prepare` printed it, or the whole JSON `upload`
        /// printed); OUTPUT then receives the plaintext.
        #[arg(long)]
        descriptor: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        attempts: u32,
    },
    /// Internal: the caged media worker the service spawns (reads requests on stdin).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        memory_bytes: u64,
        #[arg(long)]
        cpu_seconds: u64,
        #[arg(long)]
        max_file_bytes: u64,
    },
    /// Probe a running service (for container HEALTHCHECKs: the image needs no shell or
    /// curl). Exit 0 when the URL answers 2xx within the timeout, else 1.
    Healthcheck {
        /// Default: liveness on this host, at the port of INTEROP_MEDIA_SERVER__LISTEN (8080).
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value_t = 3)]
        timeout_s: u64,
    },
    /// Delete expired media from the store. Exits 1 if any object could not be handled
    /// (the report's `errors`), so a failing scheduled job shows as failed.
    Sweep {
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Validate the configuration (file + environment) and name the offending key.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn load(config: &ConfigArgs, dev_layer: Option<String>) -> Result<Settings, String> {
    let sources = Sources {
        dev_layer,
        file: config.config.clone(),
        env: true,
    };
    let c = Config::load(&sources).map_err(|e| format!("configuration error: {e}"))?;
    Settings::resolve(&c).map_err(|e| format!("configuration error: {e}"))
}

fn init_logging(json: bool, level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person at a terminal, never into files, pipes or collectors.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    warn_ignored_env(|names| {
        tracing::warn!(
            variables = %names,
            "ignoring INTEROP_MEDIA_* variables that name no configuration section (e.g. Kubernetes service links)"
        );
    });
}

/// Say once which `INTEROP_MEDIA_*` variables were not taken as configuration.
fn warn_ignored_env(warn: impl FnOnce(&str)) {
    let ignored = interop_media::config::ignored_env_vars();
    if !ignored.is_empty() {
        warn(&ignored.join(", "));
    }
}

/// The URL `healthcheck` probes when none is given: liveness, on loopback, at the port the
/// service listens on.
fn default_health_url() -> String {
    let listen = std::env::var("INTEROP_MEDIA_SERVER__LISTEN").unwrap_or_default();
    let port = listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(8080);
    format!("http://127.0.0.1:{port}/healthz")
}

async fn healthcheck(url: Option<String>, timeout_s: u64) -> Result<(), String> {
    let url = url.unwrap_or_else(default_health_url);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(timeout_s.max(1)))
        .build()
        .map_err(|e| e.to_string())?;
    let res = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if res.status().is_success() {
        println!("{url}: {}", res.status());
        Ok(())
    } else {
        Err(format!("{url}: {}", res.status()))
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let dev = if args.dev {
        Some(devkeys::ensure(&args.data_dir)?)
    } else {
        None
    };
    let mut settings = load(&args.config, dev.as_ref().map(|d| d.layer.clone()))?;
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    init_logging(settings.log_json, &settings.log_level);
    if let Some(d) = &dev {
        eprintln!(
            "WARNING: --dev mode: keys are generated and stored unencrypted in {}. Not for production.",
            args.data_dir.display()
        );
        match &d.new_partner_key {
            Some(key) => eprintln!(
                "dev partner key (shown once; also in {}): {key}",
                args.data_dir.join(devkeys::PARTNER_KEY_FILE).display()
            ),
            None => eprintln!(
                "dev partner key: see {}",
                args.data_dir.join(devkeys::PARTNER_KEY_FILE).display()
            ),
        }
    }
    let listener = TcpListener::bind(&settings.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    if dev.is_some() {
        // Dev convenience: /metrics next to the API, but only where nobody else can reach it.
        let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
        settings.metrics_on_main = settings.metrics_listen.is_none() && loopback;
    } else {
        settings
            .check_serve()
            .map_err(|e| format!("configuration error: {e}"))?;
    }
    tracing::info!(storage = %settings.storage.url, partners = settings.partners.len(), "starting");
    interop_media::run(settings, listener, shutdown_signal(), |addr| {
        println!("listening on {addr}");
    })
    .await
}

fn keygen() -> Result<(), String> {
    let master = SecretKey::generate().map_err(|e| e.to_string())?;
    let token = SecretKey::generate().map_err(|e| e.to_string())?;
    let partner = devkeys::new_partner_key()?;
    println!("# Fresh keys. Put the secrets in your secret store; only the hash goes in config.");
    println!(
        "[server]\n# the base of minted download URLs: change to this service's public URL\npublic_url = \"https://media.example.net\"\n"
    );
    println!(
        "[keys]\nactive = \"k1\"\n[keys.master.k1]\nkey = \"{}\"\n",
        master.to_base64()
    );
    println!(
        "[tokens]\nactive = \"t1\"\n[tokens.keys.t1]\nkey = \"{}\"\n",
        token.to_base64()
    );
    println!("# Give this API key to the partner's gateway (it is not stored anywhere):");
    println!("#   {partner}");
    println!(
        "[partners.example]\nkey_sha256 = \"{}\"\nscopes = [\"upload\", \"token\", \"delete\"]",
        devkeys::partner_key_hash(&partner)
    );
    Ok(())
}

/// Run a sweep; `Ok(errors)` is how many objects it could not handle.
async fn run_sweep(config: ConfigArgs, dry_run: bool) -> Result<u64, String> {
    let settings = load(&config, None)?;
    init_logging(settings.log_json, &settings.log_level);
    let backend = storage::open_backend(&settings.storage)?;
    let store = backend.store.clone();
    let now = ingest::now_unix();
    let mut report = sweep::sweep(store.as_ref(), &settings.master_keys, now, dry_run).await?;
    let metrics = interop_media::metrics::Metrics::new().map_err(|e| e.to_string())?;
    let parts = PartStore::new(store.clone(), backend.multipart, metrics);
    sweep::sweep_uploads(
        store.as_ref(),
        &parts,
        &settings.master_keys,
        now,
        settings.upload_lease.as_secs(),
        dry_run,
        &mut report,
    )
    .await?;
    sweep::sweep_orphans(store.as_ref(), &settings.storage, now, dry_run, &mut report).await?;
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(report.errors)
}

fn client_command(command: Command, runtime: &tokio::runtime::Runtime) -> Result<(), ClientError> {
    match command {
        Command::Prepare {
            file,
            format,
            kind,
            output,
            sidecar,
            descriptor_out,
            raw,
        } => {
            let d = if raw {
                client::prepare(&file, &output, format, kind, sidecar)?
            } else {
                let inspected = runtime.block_on(client::inspect(kind, &file))?;
                let mut d = client::prepare(&inspected.path, &output, format, kind, sidecar)?;
                d.mime = Some(inspected.analysis.mime.clone());
                d.metadata = serde_json::to_value(&inspected.analysis).ok();
                d
            };
            let json = d.to_json_pretty();
            if let Some(p) = descriptor_out {
                std::fs::write(&p, &json).map_err(|e| ClientError {
                    code: 2,
                    message: format!("{}: {e}", p.display()),
                })?;
            }
            println!("{json}");
        }
        Command::Open {
            blob,
            descriptor,
            output,
        } => {
            let d = client::read_descriptor_any(&descriptor)?;
            let opened = client::open(&blob, &d, &output)?;
            println!(
                "{}",
                serde_json::json!({ "plaintext_length": opened.plaintext_length, "output": output })
            );
        }
        Command::Upload {
            file,
            server,
            key_file,
            format,
            kind,
            sealed,
            raw,
            audience,
            descriptor_out,
            resumable,
            state,
            attempts,
            max_rate,
        } => {
            let key = std::fs::read_to_string(&key_file).map_err(|e| ClientError {
                code: 2,
                message: format!("{}: {e}", key_file.display()),
            })?;
            let mode = match (sealed, raw) {
                (true, _) => client::SealMode::AlreadySealed,
                (false, true) => client::SealMode::Raw,
                (false, false) => client::SealMode::Inspect,
            };
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            let up = if resumable || state.is_some() || size > client::RESUMABLE_THRESHOLD {
                let opts = client::Resumable {
                    state: state.unwrap_or_else(|| client::default_state_path(&file)),
                    descriptor_out,
                    attempts: attempts.max(1),
                    max_rate,
                };
                runtime.block_on(client::upload_resumable(
                    &file,
                    &server,
                    key.trim(),
                    format,
                    kind,
                    mode,
                    &audience,
                    &opts,
                ))?
            } else {
                let up = runtime.block_on(client::upload(
                    &file,
                    &server,
                    key.trim(),
                    format,
                    kind,
                    mode,
                    &audience,
                ))?;
                if let (Some(p), Some(d)) = (&descriptor_out, &up.descriptor) {
                    let text = serde_json::to_vec_pretty(d).unwrap_or_default();
                    client::write_private(p, &text)?;
                }
                up
            };
            println!("{}", serde_json::to_string_pretty(&up).unwrap_or_default());
        }
        Command::Download {
            url,
            output,
            descriptor,
            attempts,
        } => {
            let desc = descriptor
                .as_deref()
                .map(client::read_descriptor_any)
                .transpose()?;
            match desc {
                None => {
                    let n = runtime.block_on(client::download(&url, &output, attempts))?;
                    println!("{}", serde_json::json!({ "bytes": n, "output": output }));
                }
                Some(d) => {
                    let blob = output.with_extension("blob");
                    runtime.block_on(client::download(&url, &blob, attempts))?;
                    let opened = client::open(&blob, &d, &output);
                    let _ = std::fs::remove_file(&blob);
                    println!(
                        "{}",
                        serde_json::json!({ "plaintext_length": opened?.plaintext_length, "output": output })
                    );
                }
            }
        }
        _ => {
            return Err(ClientError {
                code: 2,
                message: "not a client command".into(),
            });
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs {
        data_dir: PathBuf::from("data"),
        ..Default::default()
    }));
    // The worker confines itself first thing, before any runtime or thread exists.
    if let Command::Worker {
        memory_bytes,
        cpu_seconds,
        max_file_bytes,
    } = command
    {
        let cage = interop_media::pipeline::worker::Cage {
            memory_bytes,
            cpu_seconds,
            max_file_bytes,
        };
        return match interop_media::pipeline::worker::run(cage) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("worker: {e}");
                ExitCode::from(70)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Keygen => keygen(),
        Command::Config {
            action: ConfigAction::Check { config },
        } => {
            warn_ignored_env(|names| {
                eprintln!(
                    "warning: ignoring {names}: no configuration section (e.g. Kubernetes service links)"
                )
            });
            load(&config, None)
                .and_then(|s| {
                    s.check_serve()
                        .map_err(|e| format!("configuration error: {e}"))
                })
                .map(|()| println!("config ok"))
        }
        Command::Healthcheck { url, timeout_s } => {
            return match runtime.block_on(healthcheck(url, timeout_s)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Sweep { dry_run, config } => match runtime.block_on(run_sweep(config, dry_run)) {
            Ok(0) => Ok(()),
            Ok(errors) => {
                eprintln!("error: sweep: {errors} object(s) could not be handled (see the log)");
                return ExitCode::FAILURE;
            }
            Err(e) => Err(e),
        },
        other => {
            return match client_command(other, &runtime) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {}", e.message);
                    ExitCode::from(e.code)
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
