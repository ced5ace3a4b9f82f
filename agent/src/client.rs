//! The agent's side of the HTTP API: register, heartbeat, download. Blocking HTTP/1.1 over
//! plain TCP (ureq without TLS), every call bounded by a timeout. Each failure is classified
//! so the loop knows whether to retry soon (unreachable, 5xx, garbage), slowly (refused), or
//! register again (401); retrying is the loop's business, not this module's.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use dragonfly_proto::{Heartbeat, HeartbeatResponse, RegisterRequest, RegisterResponse};
use serde::de::DeserializeOwned;

/// Header carrying the enrollment secret at registration.
pub const ENROLLMENT_HEADER: &str = "X-Dragonfly-Enrollment";
/// Largest JSON answer accepted from the server.
const MAX_JSON: u64 = 1 << 20;
/// Largest download accepted (`ipxe.lkrn` is well under 1 MiB).
const MAX_DOWNLOAD: u64 = 64 << 20;
/// How much of an error body goes into a log line.
const BODY_IN_LOG: usize = 300;

/// Why a call did not produce the expected answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No HTTP answer at all: refused, reset, timed out, name not found.
    Unreachable(String),
    /// A 5xx answer: the server is there but failing.
    Server { status: u16, body: String },
    /// 401: the token is unknown or stale (the server restarted, or the machine was
    /// re-registered elsewhere); register again.
    Unauthorized { body: String },
    /// Another non-success answer (4xx, or an unexpected 1xx/3xx): the server refused the
    /// request as sent.
    Rejected { status: u16, body: String },
    /// A success status with a body that is not the expected JSON.
    Malformed {
        status: u16,
        error: String,
        body: String,
    },
    /// Writing a download to disk failed.
    Local(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "server unreachable: {e}"),
            CallError::Server { status, body } => write!(f, "server error {status}: {body}"),
            CallError::Unauthorized { body } => write!(f, "unauthorized (401): {body}"),
            CallError::Rejected { status, body } => write!(f, "refused with {status}: {body}"),
            CallError::Malformed {
                status,
                error,
                body,
            } => write!(f, "malformed answer ({status}): {error}; body: {body}"),
            CallError::Local(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for CallError {}

/// A client for one server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    enrollment_secret: Option<String>,
    agent: ureq::Agent,
    download_agent: ureq::Agent,
    image_agent: ureq::Agent,
}

impl Client {
    /// `base` is the server's base URL without a trailing slash.
    pub fn new(base: &str, enrollment_secret: Option<String>) -> Self {
        Self::with_timeouts(
            base,
            enrollment_secret,
            Duration::from_secs(5),
            Duration::from_secs(120),
        )
    }

    /// `call_timeout` bounds each whole API call (a heartbeat may be long-polled, so it is
    /// generous); connecting is bounded by `connect_timeout`.
    pub fn with_timeouts(
        base: &str,
        enrollment_secret: Option<String>,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> Self {
        let build = |global: Duration| -> ureq::Agent {
            ureq::Agent::config_builder()
                // Statuses are classified here, with their bodies, not turned into bare errors.
                .http_status_as_error(false)
                // The provisioning network is direct; a proxy from the environment of a
                // person's shell would only misroute a hand-run agent.
                .proxy(None)
                .user_agent(format!("dragonfly-agent/{}", crate::VERSION))
                .timeout_connect(Some(connect_timeout))
                .timeout_global(Some(global))
                .build()
                .into()
        };
        Self {
            base: base.trim_end_matches('/').to_string(),
            enrollment_secret,
            agent: build(call_timeout),
            download_agent: build(call_timeout.max(Duration::from_secs(300))),
            // An OS image can take many minutes: no overall limit, but each request's body
            // is bounded, and a stalled or slow one is resumed with a Range request.
            image_agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .user_agent(format!("dragonfly-agent/{}", crate::VERSION))
                .timeout_connect(Some(connect_timeout))
                .timeout_recv_response(Some(Duration::from_secs(60)))
                .timeout_recv_body(Some(Duration::from_secs(300)))
                .build()
                .into(),
        }
    }

    /// The HTTP agent for OS image downloads (see [`crate::install::Resuming`]).
    pub fn image_agent(&self) -> ureq::Agent {
        self.image_agent.clone()
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST {base}/api/v1/agent/register`.
    pub fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, CallError> {
        let url = format!("{}/api/v1/agent/register", self.base);
        let mut builder = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(secret) = &self.enrollment_secret {
            builder = builder.header(ENROLLMENT_HEADER, secret);
        }
        let body = serde_json::to_vec(req).map_err(|e| CallError::Local(e.to_string()))?;
        let resp = builder.send(&body[..]).map_err(unreachable)?;
        json_answer(resp)
    }

    /// `POST {base}/api/v1/agent/heartbeat` with the machine's bearer token. With `wait`, the
    /// server holds a `wait` answer up to that many seconds and answers at once when the
    /// machine's instruction changes (long-poll), so an assignment reaches the machine in
    /// milliseconds instead of a heartbeat period.
    pub fn heartbeat(
        &self,
        token: &str,
        hb: &Heartbeat,
        wait: Option<u32>,
    ) -> Result<HeartbeatResponse, CallError> {
        let url = match wait {
            Some(w) => format!("{}/api/v1/agent/heartbeat?wait={w}", self.base),
            None => format!("{}/api/v1/agent/heartbeat", self.base),
        };
        let body = serde_json::to_vec(hb).map_err(|e| CallError::Local(e.to_string()))?;
        let resp = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Authorization", format!("Bearer {token}"))
            .send(&body[..])
            .map_err(unreachable)?;
        json_answer(resp)
    }

    /// Downloads `url` (absolute, or a path on the server) into `dest`; returns its size.
    pub fn download(&self, url: &str, dest: &Path) -> Result<u64, CallError> {
        let url = self.absolute(url);
        let mut resp = self.download_agent.get(&url).call().map_err(unreachable)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(classify(status, body_text(&mut resp)));
        }
        let mut file = std::fs::File::create(dest)
            .map_err(|e| CallError::Local(format!("{}: {e}", dest.display())))?;
        let mut reader = resp.body_mut().with_config().limit(MAX_DOWNLOAD).reader();
        let n = std::io::copy(&mut reader, &mut file)
            .map_err(|e| CallError::Unreachable(format!("reading {url}: {e}")))?;
        file.flush()
            .and_then(|()| file.sync_all())
            .map_err(|e| CallError::Local(format!("{}: {e}", dest.display())))?;
        Ok(n)
    }

    /// `url` itself when absolute, else joined to the base URL.
    pub fn absolute(&self, url: &str) -> String {
        if url.starts_with("http://") || url.starts_with("https://") {
            url.to_string()
        } else {
            format!("{}/{}", self.base, url.trim_start_matches('/'))
        }
    }
}

fn unreachable(e: ureq::Error) -> CallError {
    CallError::Unreachable(e.to_string())
}

fn json_answer<T: DeserializeOwned>(
    mut resp: ureq::http::Response<ureq::Body>,
) -> Result<T, CallError> {
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(classify(status, body_text(&mut resp)));
    }
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(MAX_JSON)
        .read_to_vec()
        .map_err(|e| CallError::Unreachable(format!("reading the answer: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| CallError::Malformed {
        status,
        error: e.to_string(),
        body: excerpt(&String::from_utf8_lossy(&bytes)),
    })
}

fn classify(status: u16, body: String) -> CallError {
    match status {
        401 => CallError::Unauthorized { body },
        500..=599 => CallError::Server { status, body },
        _ => CallError::Rejected { status, body },
    }
}

/// The start of an error body, for the log (the API's errors are small JSON objects).
fn body_text(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    match resp
        .body_mut()
        .with_config()
        .limit(MAX_JSON)
        .lossy_utf8(true)
        .read_to_string()
    {
        Ok(s) => excerpt(&s),
        Err(e) => format!("(body unreadable: {e})"),
    }
}

fn excerpt(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(BODY_IN_LOG) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
