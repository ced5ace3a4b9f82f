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
        Ok(Config {
            listen: SocketAddr::new(host, port),
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
