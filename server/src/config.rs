//! Configuration: command-line flags, `DRAGONFLY_*` environment variables and an optional
//! TOML file, in that order of precedence, resolved into one [`Config`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// Dragonfly: bare-metal provisioning from the first PXE boot until an OS is on disk.
#[derive(Debug, Parser)]
#[command(name = "dragonfly", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve,
    /// Print the OpenAPI document of the JSON API.
    Openapi,
    /// Drive Tinkerbell: check access, print RBAC manifests, render objects.
    #[command(subcommand)]
    Tinkerbell(crate::tinkerbell::TinkerbellCommand),
    /// Operator accounts and tokens, offline (works on the database directly).
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Set an operator's password (creating the account if needed), read from the terminal
    /// or, when standard input is not a terminal, from its first line.
    SetPassword {
        #[arg(long, default_value = "admin")]
        username: String,
    },
    /// Create an API token and print its secret (once).
    CreateToken {
        #[arg(long)]
        name: String,
        /// read or admin.
        #[arg(long, default_value = "admin", value_parser = ["read", "admin"])]
        scope: String,
    },
}

/// Server flags. Each is also read from the environment variable shown, then from the
/// `--config` file; the flag wins over the environment, which wins over the file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of: port, host, db, base_url, heartbeat_secs, offline_after_secs.
    #[arg(long, env = "DRAGONFLY_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// TCP port for HTTP [default: 3000].
    #[arg(long, env = "DRAGONFLY_PORT", global = true)]
    pub port: Option<u16>,
    /// Address to listen on [default: 0.0.0.0].
    #[arg(long, env = "DRAGONFLY_HOST", global = true)]
    pub host: Option<IpAddr>,
    /// SQLite database file [default: sqlite.db].
    #[arg(long, env = "DRAGONFLY_DB", value_name = "FILE", global = true)]
    pub db: Option<PathBuf>,
    /// URL machines use to reach this server, e.g. http://10.0.0.5:3000 [default: derived
    /// from the listening address and logged at start].
    #[arg(long, env = "DRAGONFLY_BASE_URL", value_name = "URL", global = true)]
    pub base_url: Option<String>,
    /// Directory with the netboot artefact (vmlinuz, initramfs.zst, ipxe.lkrn, manifest.json)
    /// and tftp/ [default: out/netboot].
    #[arg(long, env = "DRAGONFLY_BOOT_DIR", value_name = "DIR", global = true)]
    pub boot_dir: Option<PathBuf>,
    /// Serve the iPXE first stage (boot-dir/tftp/) over TFTP, for DHCP servers that point
    /// machines at Dragonfly.
    #[arg(long, env = "DRAGONFLY_TFTP", global = true)]
    pub tftp: bool,
    /// UDP port for TFTP [default: 69].
    #[arg(long, env = "DRAGONFLY_TFTP_PORT", value_name = "PORT", global = true)]
    pub tftp_port: Option<u16>,
    /// Require this secret from agents at registration (403 without it); the netboot image
    /// passes it on the kernel command line as dragonfly.secret=.
    #[arg(
        long,
        env = "DRAGONFLY_ENROLLMENT_SECRET",
        value_name = "SECRET",
        global = true
    )]
    pub enrollment_secret: Option<String>,
    /// PEM certificate chain: serve HTTPS instead of HTTP (with --tls-key).
    #[arg(
        long,
        env = "DRAGONFLY_TLS_CERT",
        value_name = "FILE",
        global = true,
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(
        long,
        env = "DRAGONFLY_TLS_KEY",
        value_name = "FILE",
        global = true,
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub hookos: HookosArgs,
    #[command(flatten)]
    pub tinkerbell: crate::tinkerbell::TinkerbellArgs,
}

/// Where Tinkerbell's HookOS and its services are. Defaults assume they run on the host in
/// the base URL.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Tinkerbell HookOS")]
pub struct HookosArgs {
    /// URL of the directory holding vmlinuz-x86_64 and initramfs-x86_64
    /// [default: BASE_URL/hookos, served from boot-dir/hookos/].
    #[arg(long, env = "DRAGONFLY_HOOKOS_URL", value_name = "URL", global = true)]
    pub hookos_url: Option<String>,
    /// tink-server gRPC endpoint as host:port [default: the base URL's host:42113].
    #[arg(
        long,
        env = "DRAGONFLY_TINK_GRPC_AUTHORITY",
        value_name = "HOST:PORT",
        global = true
    )]
    pub tink_grpc_authority: Option<String>,
    /// Syslog receiver for HookOS [default: the base URL's host].
    #[arg(
        long,
        env = "DRAGONFLY_TINK_SYSLOG_HOST",
        value_name = "HOST",
        global = true
    )]
    pub tink_syslog_host: Option<String>,
    /// Whether tink-worker talks TLS to tink-server.
    #[arg(long, env = "DRAGONFLY_TINK_TLS", global = true)]
    pub tink_tls: bool,
    /// tink-worker container image [default: tinkerbell/tink-worker:latest].
    #[arg(
        long,
        env = "DRAGONFLY_TINK_WORKER_IMAGE",
        value_name = "IMAGE",
        global = true
    )]
    pub tink_worker_image: Option<String>,
    /// Serial console HookOS logs to [default: ttyS0,115200].
    #[arg(
        long,
        env = "DRAGONFLY_HOOKOS_CONSOLE",
        value_name = "TTY",
        global = true
    )]
    pub hookos_console: Option<String>,
}

/// The optional TOML file. Unknown keys are an error, so a typo does not go unnoticed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub port: Option<u16>,
    pub host: Option<IpAddr>,
    pub db: Option<PathBuf>,
    pub base_url: Option<String>,
    pub heartbeat_secs: Option<u32>,
    pub offline_after_secs: Option<u32>,
    pub boot_dir: Option<PathBuf>,
    pub enrollment_secret: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tftp: Option<bool>,
    pub tftp_port: Option<u16>,
    pub hookos_url: Option<String>,
    pub tink_grpc_authority: Option<String>,
    pub tink_syslog_host: Option<String>,
    pub tink_tls: Option<bool>,
    pub tink_worker_image: Option<String>,
    pub hookos_console: Option<String>,
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub db: PathBuf,
    /// As configured; `None` means derive it from the bound address.
    pub base_url: Option<String>,
    pub heartbeat_secs: u32,
    pub offline_after_secs: u32,
    pub boot_dir: PathBuf,
    /// TFTP listening address when enabled.
    pub tftp: Option<SocketAddr>,
    pub hookos: Hookos,
    pub enrollment_secret: Option<String>,
    /// Certificate and key files for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The Kubernetes connection for the Tinkerbell backend.
    pub tinkerbell: crate::tinkerbell::TinkerbellArgs,
}

/// HookOS settings as configured; `None` values are derived from the base URL at start.
#[derive(Debug, Clone, Default)]
pub struct Hookos {
    pub url: Option<String>,
    pub grpc_authority: Option<String>,
    pub syslog_host: Option<String>,
    pub tls: bool,
    pub worker_image: String,
    pub console: String,
}

fn check_param(flag: &str, v: Option<String>) -> anyhow::Result<Option<String>> {
    match v {
        Some(v) if v.is_empty() || v.len() > 256 || !v.chars().all(|c| c.is_ascii_graphic()) => {
            bail!("{flag} must be 1-256 printable characters without spaces")
        }
        other => Ok(other),
    }
}

impl Config {
    /// A config for tests and embedding: loopback, an ephemeral port, the given database.
    pub fn for_tests(db: &Path) -> Config {
        Config {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            db: db.to_path_buf(),
            base_url: None,
            heartbeat_secs: 10,
            offline_after_secs: 60,
            boot_dir: db.with_file_name("netboot"),
            tftp: None,
            enrollment_secret: None,
            tls: None,
            // Tests never connect to a cluster.
            tinkerbell: crate::tinkerbell::TinkerbellArgs {
                tinkerbell: crate::tinkerbell::Mode::Off,
                ..Default::default()
            },
            hookos: Hookos {
                worker_image: "tinkerbell/tink-worker:latest".into(),
                console: "ttyS0,115200".into(),
                ..Default::default()
            },
        }
    }

    /// Merges flags/environment (already combined by clap) over the file over defaults.
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("invalid --config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let host = args
            .host
            .or(file.host)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let port = args.port.or(file.port).unwrap_or(3000);
        let base_url = match args.base_url.clone().or(file.base_url) {
            Some(u) => Some(validate_base_url(&u)?),
            None => None,
        };
        let heartbeat_secs = file.heartbeat_secs.unwrap_or(10);
        if !(1..=3600).contains(&heartbeat_secs) {
            bail!("heartbeat_secs in the --config file must be between 1 and 3600");
        }
        let offline_after_secs = file.offline_after_secs.unwrap_or(heartbeat_secs * 6);
        if offline_after_secs <= heartbeat_secs {
            bail!("offline_after_secs in the --config file must be larger than heartbeat_secs");
        }
        let h = &args.hookos;
        let hookos = Hookos {
            url: match h.hookos_url.clone().or(file.hookos_url) {
                Some(u) => Some(validate_base_url(&u).context("--hookos-url")?),
                None => None,
            },
            grpc_authority: check_param(
                "--tink-grpc-authority",
                h.tink_grpc_authority.clone().or(file.tink_grpc_authority),
            )?,
            syslog_host: check_param(
                "--tink-syslog-host",
                h.tink_syslog_host.clone().or(file.tink_syslog_host),
            )?,
            tls: h.tink_tls || file.tink_tls.unwrap_or(false),
            worker_image: check_param(
                "--tink-worker-image",
                h.tink_worker_image.clone().or(file.tink_worker_image),
            )?
            .unwrap_or_else(|| "tinkerbell/tink-worker:latest".into()),
            console: check_param(
                "--hookos-console",
                h.hookos_console.clone().or(file.hookos_console),
            )?
            .unwrap_or_else(|| "ttyS0,115200".into()),
        };
        let enrollment_secret = args.enrollment_secret.clone().or(file.enrollment_secret);
        if let Some(s) = &enrollment_secret {
            if s.len() < 16
                || s.len() > 128
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                bail!(
                    "--enrollment-secret must be 16-128 characters of A-Z, a-z, 0-9, '-', '_', '.'"
                );
            }
        }
        let tls = match (
            args.tls_cert.clone().or(file.tls_cert),
            args.tls_key.clone().or(file.tls_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        let tftp_enabled = args.tftp || file.tftp.unwrap_or(false);
        let tftp_port = args.tftp_port.or(file.tftp_port).unwrap_or(69);
        Ok(Config {
            listen: SocketAddr::new(host, port),
            boot_dir: args
                .boot_dir
                .clone()
                .or(file.boot_dir)
                .unwrap_or_else(|| PathBuf::from("out/netboot")),
            tftp: tftp_enabled.then_some(SocketAddr::new(host, tftp_port)),
            hookos,
            enrollment_secret,
            tls,
            tinkerbell: args.tinkerbell.clone(),
            db: args
                .db
                .clone()
                .or(file.db)
                .unwrap_or_else(|| PathBuf::from("sqlite.db")),
            base_url,
            heartbeat_secs,
            offline_after_secs,
        })
    }
}

/// Checks a base URL (http or https, a host, no query) and drops a trailing slash.
pub fn validate_base_url(raw: &str) -> anyhow::Result<String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let uri: axum::http::Uri = trimmed
        .parse()
        .with_context(|| format!("--base-url {raw:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => bail!("--base-url {raw:?} must start with http:// or https://"),
    }
    if uri.host().is_none_or(str::is_empty) {
        bail!("--base-url {raw:?} has no host");
    }
    if uri.query().is_some() {
        bail!("--base-url {raw:?} must not have a query string");
    }
    Ok(trimmed.to_string())
}

/// The URL machines should use when none is configured: the listening address, or when
/// listening on every address, the first non-loopback IPv4 address of this host.
pub fn derive_base_url(bound: SocketAddr) -> String {
    let ip = if bound.ip().is_unspecified() {
        if_addrs::get_if_addrs()
            .ok()
            .and_then(|ifs| {
                ifs.into_iter()
                    .filter(|i| !i.is_loopback())
                    .map(|i| i.ip())
                    .find(IpAddr::is_ipv4)
            })
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    } else {
        bound.ip()
    };
    match ip {
        IpAddr::V6(v6) => format!("http://[{v6}]:{}", bound.port()),
        IpAddr::V4(v4) => format!("http://{v4}:{}", bound.port()),
    }
}

/// Runtime settings derived from [`Config`] once the listener is bound.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where machines reach this server, without a trailing slash.
    pub base_url: String,
    pub heartbeat_secs: u32,
    pub offline_after_ms: i64,
    pub boot_dir: PathBuf,
    /// Whether the TFTP server runs (for the dashboard and /healthz).
    pub tftp: bool,
    pub hookos: HookosSettings,
    pub enrollment_secret: Option<String>,
    /// Served over HTTPS (cookies are then marked Secure).
    pub tls: bool,
}

/// HookOS settings with every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookosSettings {
    pub url: String,
    pub grpc_authority: String,
    pub syslog_host: String,
    pub tls: bool,
    pub worker_image: String,
    pub console: String,
}

impl HookosSettings {
    pub fn resolve(h: &Hookos, base_url: &str) -> HookosSettings {
        let host = base_url
            .parse::<axum::http::Uri>()
            .ok()
            .and_then(|u| {
                u.host()
                    .map(|h| h.trim_matches(|c| c == '[' || c == ']').to_string())
            })
            .unwrap_or_else(|| "127.0.0.1".into());
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        HookosSettings {
            url: h
                .url
                .clone()
                .unwrap_or_else(|| format!("{base_url}/hookos")),
            grpc_authority: h
                .grpc_authority
                .clone()
                .unwrap_or_else(|| format!("{bracketed}:42113")),
            syslog_host: h.syslog_host.clone().unwrap_or(host),
            tls: h.tls,
            worker_image: h.worker_image.clone(),
            console: h.console.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            validate_base_url("http://10.0.0.5:3000/").unwrap(),
            "http://10.0.0.5:3000"
        );
        assert!(validate_base_url("ftp://x").is_err());
        assert!(validate_base_url("10.0.0.5").is_err());
        assert!(validate_base_url("http://x/?a=b").is_err());
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.toml");
        std::fs::write(&file, "port = 4000\ndb = \"from-file.db\"\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            port: Some(5000),
            ..Default::default()
        };
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.listen.port(), 5000);
        assert_eq!(c.db, PathBuf::from("from-file.db"));
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.toml");
        std::fs::write(&file, "prot = 4000\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..Default::default()
        };
        let err = format!("{:#}", Config::resolve(&args).unwrap_err());
        assert!(err.contains("unknown field `prot`"), "{err}");
    }
}
