//! Published checksum lists (`SHA256SUMS`, `SHA512SUMS`): fetched over HTTP or HTTPS with a
//! size and a time limit, and searched for one file's line. This is how the catalogue's
//! entries for "current" distribution images keep a checksum that matches what the mirror
//! serves today (`dragonfly os refresh`, the OS page's button).

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A checksum list is a few lines per published file; Ubuntu's is about 1 KiB.
pub const MAX_BYTES: usize = 1 << 20;
/// The whole fetch, redirects included.
pub const TIMEOUT: Duration = Duration::from_secs(30);
const REDIRECTS: usize = 5;

/// A file's checksum, by the algorithm its list uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sum {
    Sha256(String),
    Sha512(String),
}

impl Sum {
    pub fn name(&self) -> &'static str {
        match self {
            Sum::Sha256(_) => "SHA-256",
            Sum::Sha512(_) => "SHA-512",
        }
    }

    pub fn hex(&self) -> &str {
        match self {
            Sum::Sha256(h) | Sum::Sha512(h) => h,
        }
    }

    fn from_hex(hex: &str) -> Option<Sum> {
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        match hex.len() {
            64 => Some(Sum::Sha256(hex.to_ascii_lowercase())),
            128 => Some(Sum::Sha512(hex.to_ascii_lowercase())),
            _ => None,
        }
    }
}

/// The checksum of `file` in `list`: coreutils lines (`HASH  NAME`, `HASH *NAME` for binary
/// mode, a leading `./` allowed) or BSD tagged lines (`SHA256 (NAME) = HASH`).
pub fn find(list: &str, file: &str) -> Option<Sum> {
    list.lines().find_map(|line| {
        let line = line.trim_end();
        if let Some((tag, rest)) = line.split_once(" (") {
            let (name, hex) = rest.split_once(") = ")?;
            let sum = Sum::from_hex(hex.trim())?;
            let tag_ok = matches!(
                (tag, &sum),
                ("SHA256", Sum::Sha256(_)) | ("SHA512", Sum::Sha512(_))
            );
            return (tag_ok && name.trim_start_matches("./") == file).then_some(sum);
        }
        let (hex, name) = line.split_once(char::is_whitespace)?;
        let name = name.trim_start();
        let name = name.strip_prefix('*').unwrap_or(name);
        (name.trim_start_matches("./") == file)
            .then(|| Sum::from_hex(hex))
            .flatten()
    })
}

/// The last path segment of an image URL: the name its checksum list uses.
pub fn file_name(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next()?;
    path.rsplit('/').next().filter(|n| !n.is_empty())
}

/// GETs `url` (http or https, redirects followed) and returns its body as text; every
/// failure is a sentence naming the URL.
pub async fn fetch(url: &str) -> Result<String, String> {
    tokio::time::timeout(TIMEOUT, fetch_inner(url))
        .await
        .unwrap_or_else(|_| Err(format!("{url}: no answer within {} s", TIMEOUT.as_secs())))
}

async fn fetch_inner(url: &str) -> Result<String, String> {
    // Loading the system's CA certificates reads files: not on an async worker.
    let https = tokio::task::spawn_blocking(|| {
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map(|b| b.https_or_http().enable_http1().build())
    })
    .await
    .map_err(|e| format!("loading the system's CA certificates: {e}"))?
    .map_err(|e| format!("the system's CA certificates: {e}"))?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let mut url = url.to_string();
    for _ in 0..=REDIRECTS {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let req = hyper::Request::get(uri.clone())
            .header(hyper::header::USER_AGENT, "dragonfly")
            .body(Empty::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        if status.is_redirection() {
            let next = resp
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| format!("{url}: HTTP {status} without a Location"))?;
            url = redirect_target(&uri, next);
            continue;
        }
        if !status.is_success() {
            return Err(format!("{url}: HTTP {status}"));
        }
        let body = Limited::new(resp.into_body(), MAX_BYTES)
            .collect()
            .await
            .map_err(|e| format!("{url}: {e} (a checksum list is at most {MAX_BYTES} bytes here)"))?
            .to_bytes();
        return String::from_utf8(body.to_vec()).map_err(|_| format!("{url}: not text"));
    }
    Err(format!("{url}: more than {REDIRECTS} redirects"))
}

/// A Location header's target: absolute, or a path on the same host.
fn redirect_target(from: &hyper::Uri, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let scheme = from.scheme_str().unwrap_or("http");
    let authority = from.authority().map(|a| a.as_str()).unwrap_or_default();
    format!("{scheme}://{authority}{location}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "ab";

    #[test]
    fn finds_a_file_in_every_published_layout() {
        let h256 = "a".repeat(64);
        let h512 = "B".repeat(128);
        let coreutils = format!(
            "{h256} *noble-server-cloudimg-amd64.img\n{} other.img\n",
            "c".repeat(64)
        );
        assert_eq!(
            find(&coreutils, "noble-server-cloudimg-amd64.img"),
            Some(Sum::Sha256(h256.clone()))
        );
        let debian = format!("{h512}  debian-12-generic-amd64.qcow2\n");
        assert_eq!(
            find(&debian, "debian-12-generic-amd64.qcow2"),
            Some(Sum::Sha512(h512.to_ascii_lowercase()))
        );
        let bsd = format!("SHA256 (./x.raw.zst) = {h256}\n");
        assert_eq!(find(&bsd, "x.raw.zst"), Some(Sum::Sha256(h256.clone())));
        // Not listed, a prefix of a listed name, a mislabelled or malformed hash: nothing.
        assert_eq!(find(&coreutils, "noble-server-cloudimg-amd64"), None);
        assert_eq!(find(&format!("SHA512 (x) = {h256}"), "x"), None);
        assert_eq!(find(&format!("{A}  x"), "x"), None);
        assert_eq!(find("", "x"), None);
    }

    #[test]
    fn the_file_name_is_the_urls_last_segment() {
        assert_eq!(
            file_name("https://m/images/debian-12-generic-amd64.qcow2?x=1"),
            Some("debian-12-generic-amd64.qcow2")
        );
        assert_eq!(file_name("https://m/dir/"), None);
    }
}
