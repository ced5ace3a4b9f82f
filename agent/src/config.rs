//! Where the server is. In the netboot image iPXE puts `dragonfly.url=` (and, when the server
//! has one, `dragonfly.secret=`) on the kernel command line; a person running the agent by
//! hand passes `--server URL` or sets `DRAGONFLY_URL`.
//!
//! An explicit `--server` (or `DRAGONFLY_URL`) wins over the command line: whoever typed it
//! meant it, and a fixture root given with `--root` carries the command line of the machine it
//! was captured on. In the netboot image neither is set, so the command line rules there.

use std::fmt;

use crate::cmdline::KernelCmdline;

/// The kernel parameter naming the server's base URL.
pub const URL_PARAM: &str = "dragonfly.url";
/// The kernel parameter carrying the enrollment secret, sent at registration.
pub const SECRET_PARAM: &str = "dragonfly.secret";
/// The kernel parameter carrying this machine's secret, which only its own boot script
/// has; sent at registration as proof of identity.
pub const MACHINE_SECRET_PARAM: &str = "dragonfly.machine";
/// The environment variable naming the server's base URL.
pub const URL_ENV: &str = "DRAGONFLY_URL";

/// Where the server URL came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlSource {
    Flag,
    Env,
    KernelCmdline,
}

impl fmt::Display for UrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlSource::Flag => "--server",
            UrlSource::Env => URL_ENV,
            UrlSource::KernelCmdline => "the kernel command line (dragonfly.url=)",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Base URL without a trailing slash, e.g. `http://10.0.0.1:8080`.
    pub url: String,
    pub source: UrlSource,
    /// Sent as `X-Dragonfly-Enrollment` at registration when present.
    pub enrollment_secret: Option<String>,
    /// This machine's secret from its boot script, sent at registration when present.
    pub machine_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    NoServer,
    BadUrl {
        url: String,
        source: UrlSource,
        reason: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoServer => write!(
                f,
                "no server URL: boot with {URL_PARAM}=http://HOST:PORT on the kernel command \
                 line, or pass --server URL, or set {URL_ENV}"
            ),
            ConfigError::BadUrl {
                url,
                source,
                reason,
            } => write!(f, "server URL {url:?} from {source}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Finds the server: `--server`, else `DRAGONFLY_URL`, else `dragonfly.url=` on the command
/// line. The secret comes from `secret_flag`, else `dragonfly.secret=`.
pub fn discover(
    cmdline: &KernelCmdline,
    flag: Option<&str>,
    env: Option<&str>,
    secret_flag: Option<&str>,
) -> Result<ServerConfig, ConfigError> {
    let (raw, source) = if let Some(u) = nonempty(flag) {
        (u, UrlSource::Flag)
    } else if let Some(u) = nonempty(env) {
        (u, UrlSource::Env)
    } else if let Some(u) = nonempty(cmdline.get(URL_PARAM)) {
        (u, UrlSource::KernelCmdline)
    } else {
        return Err(ConfigError::NoServer);
    };
    let url = validate_url(raw).map_err(|reason| ConfigError::BadUrl {
        url: raw.to_string(),
        source,
        reason,
    })?;
    let enrollment_secret = nonempty(secret_flag)
        .or_else(|| nonempty(cmdline.get(SECRET_PARAM)))
        .map(str::to_string);
    let machine_secret = nonempty(cmdline.get(MACHINE_SECRET_PARAM)).map(str::to_string);
    Ok(ServerConfig {
        url,
        source,
        enrollment_secret,
        machine_secret,
    })
}

fn nonempty(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

/// Checks that `raw` is a plain-HTTP base URL with a host and returns it without trailing
/// slashes.
pub fn validate_url(raw: &str) -> Result<String, &'static str> {
    let lower = raw.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(
            "https is not supported: the agent speaks plain HTTP, like iPXE on the \
                    provisioning network",
        );
    }
    let Some(rest) = raw
        .get("http://".len()..)
        .filter(|_| lower.starts_with("http://"))
    else {
        return Err("expected http://HOST[:PORT]");
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err("no host in the URL");
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the URL contains whitespace");
    }
    Ok(raw.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_trimmed() {
        assert_eq!(
            validate_url("http://10.0.0.1:8080/"),
            Ok("http://10.0.0.1:8080".into())
        );
        assert!(validate_url("https://x").is_err());
        assert!(validate_url("ftp://x").is_err());
        assert!(validate_url("http://").is_err());
        assert!(validate_url("http://:80").is_err());
    }
}
