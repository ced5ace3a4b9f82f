//! The one test kit: the real server (the library's router over `serve_http`, exactly what
//! the binary serves) on an ephemeral loopback port with its own temporary SQLite file, an
//! admin API token, hardware reports, registration, and bounded waiting. Used by the
//! server's integration tests and by the end-to-end tests (Chromium, QEMU).

// A panic in the harness is a test failure, which is what these unwraps mean.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dragonfly::clock::{Clock, ManualClock, SystemClock};
use dragonfly::config::Config;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The password `Server::set_admin_password` gives the `admin` account.
pub const PASSWORD: &str = "e2e operator passphrase";

/// The real server, stopped when dropped.
pub struct Server {
    pub url: String,
    /// Sends an admin API token with every request.
    pub client: Client,
    /// Sends no credentials.
    pub anon: Client,
    pub state: dragonfly::state::AppState,
    pub dir: tempfile::TempDir,
    pub clock: Option<Arc<ManualClock>>,
    /// Dropping the sender stops the server.
    _stop: oneshot::Sender<()>,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_custom(None, |_| {}).await
    }

    /// A server whose clock only moves when the test says so.
    pub async fn start_with_manual_clock() -> Server {
        Self::start_custom(Some(Arc::new(ManualClock::new(1_700_000_000_000))), |_| {}).await
    }

    /// A server whose configuration `edit` adjusts first.
    pub async fn start_custom(
        clock: Option<Arc<ManualClock>>,
        edit: impl FnOnce(&mut Config),
    ) -> Server {
        Self::launch(clock, edit, |addr| format!("http://{addr}")).await
    }

    /// A server whose base URL (what machines are told) `base_url` makes from its address.
    pub async fn start_with(
        edit: impl FnOnce(&mut Config),
        base_url: impl FnOnce(SocketAddr) -> String,
    ) -> Server {
        Self::launch(None, edit, base_url).await
    }

    /// A server for QEMU guests: they reach the host's loopback as 10.0.2.2, and boot the
    /// netboot artefact from [`netboot_dir`].
    pub async fn start_for_vms() -> Server {
        let boot_dir = netboot_dir();
        Self::start_with(
            |c| {
                c.boot_dir = boot_dir;
                // These VMs are handed to Tinkerbell (HookOS); the native install has its own.
                c.installer = Some(dragonfly::config::Installer::Tinkerbell);
            },
            |addr| format!("http://10.0.2.2:{}", addr.port()),
        )
        .await
    }

    async fn launch(
        clock: Option<Arc<ManualClock>>,
        edit: impl FnOnce(&mut Config),
        base_url: impl FnOnce(SocketAddr) -> String,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(&dir.path().join("sqlite.db"));
        edit(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let c: Arc<dyn Clock> = match &clock {
            Some(m) => m.clone(),
            None => Arc::new(SystemClock),
        };
        let state = dragonfly::build_state(&config, base_url(addr), c)
            .await
            .unwrap();
        let (_, token) = state
            .auth
            .create_token("tests", dragonfly::auth::Scope::Admin, "tests")
            .await
            .unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let app = dragonfly::router(state.clone());
        tokio::spawn(async move {
            dragonfly::serve_http(listener, app, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        // No idle connections are reused: the server rightly closes a connection whose
        // request body it refused unread (415, 413...), and a pooled client can pick that
        // connection for its next request in the instant before it notices.
        let client = Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let anon = Client::builder().pool_max_idle_per_host(0).build().unwrap();
        Server {
            url,
            client,
            anon,
            state,
            dir,
            clock,
            _stop: tx,
        }
    }

    /// Gives the `admin` account [`PASSWORD`] (for tests that log in through the UI).
    pub async fn set_admin_password(&self) {
        self.state
            .auth
            .set_password("admin", PASSWORD)
            .await
            .unwrap();
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("sqlite.db")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.client
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str, body: Value) -> Response {
        self.client
            .patch(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.client
            .put(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    /// Registers a machine and returns the response JSON (machine_id, token, instruction).
    pub async fn register(&self, report: Value) -> Value {
        let resp = self
            .post(
                "/api/v1/agent/register",
                json!({ "agent_version": "test", "protocol": 1, "report": report }),
            )
            .await;
        expect_json(resp, StatusCode::OK).await
    }

    /// Registers with proof of identity: the token of the machine's last registration.
    pub async fn register_proven(&self, report: Value, previous_token: &str) -> Value {
        let resp = self
            .post(
                "/api/v1/agent/register",
                json!({ "agent_version": "test", "protocol": 1, "report": report,
                        "previous_token": previous_token }),
            )
            .await;
        expect_json(resp, StatusCode::OK).await
    }

    /// Registers machine number `n` (see [`report`]) and returns its id.
    pub async fn register_machine(&self, n: u32) -> String {
        let r = self.register(report(n)).await;
        r["machine_id"].as_str().unwrap().to_string()
    }

    pub async fn heartbeat(&self, token: &str, body: Value) -> Response {
        self.client
            .post(format!("{}/api/v1/agent/heartbeat", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The machine as the API shows it.
    pub async fn machine(&self, id: &str) -> Value {
        expect_json(
            self.get(&format!("/api/v1/machines/{id}")).await,
            StatusCode::OK,
        )
        .await
    }
}

/// Asserts the status and returns the JSON body.
pub async fn expect_json(resp: Response, status: StatusCode) -> Value {
    let got = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts an error response: status, `error` code and (when given) `field`.
pub async fn expect_error(
    resp: Response,
    status: StatusCode,
    code: &str,
    field: Option<&str>,
) -> Value {
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body = expect_json(resp, status).await;
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    if let Some(f) = field {
        assert_eq!(body["field"], f, "{body}");
    }
    body
}

/// A hardware report for machine number `n`: unique MAC, serial, UUID and disk serial.
pub fn report(n: u32) -> Value {
    json!({
        "boot_mac": format!("52:54:00:00:{:02x}:{:02x}", (n >> 8) & 0xff, n & 0xff),
        "arch": "x86_64",
        "firmware": "bios",
        "smbios": {
            "system": {
                "vendor": "QEMU",
                "product": "Standard PC (Q35 + ICH9, 2009)",
                "serial": format!("SN-{n:05}"),
                "uuid": format!("6a1f0a4e-1c2b-4d3e-8f90-{n:012x}"),
            },
            "memory": [{"locator": "DIMM 0", "size_bytes": 8589934592u64, "kind": "DDR4"}]
        },
        "cpu": {"model": "QEMU Virtual CPU", "sockets": 1, "cores": 2, "threads": 2},
        "memory_bytes": 8_000_000_000u64,
        "nics": [{
            "name": "eth0",
            "mac": format!("52:54:00:00:{:02x}:{:02x}", (n >> 8) & 0xff, n & 0xff),
            "driver": "virtio_net",
            "link_up": true,
            "addresses": ["10.0.2.15/24"]
        }],
        "disks": [{
            "name": "vda", "size_bytes": 21474836480u64, "serial": format!("DISK-{n:05}"),
            "wwn": format!("0x5000c500{n:08x}"), "rotational": false, "transport": "virtio"
        }],
        "pci": [{"address": "0000:00:02.0", "vendor_id": "0x1af4", "device_id": "0x1041",
                 "class": "0x020000", "driver": "virtio-pci"}]
    })
}

/// Waits (at most 15 s, polling every 20 ms) until `f` returns something; panics otherwise.
pub async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match wait_for(Duration::from_secs(15), what, f).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// Polls `check` until it yields `Some`, or fails after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, check: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Percent-encodes `segment` for a URL path segment or query value.
pub fn urlencode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The netboot artefact the VM tests boot: `out/netboot` at the top of the workspace, or
/// `DRAGONFLY_NETBOOT_DIR` (relative to the workspace) for another flavour's build
/// (`image/build.sh --flavour alpine --out out/netboot-alpine`).
pub fn netboot_dir() -> PathBuf {
    let dir = std::env::var_os("DRAGONFLY_NETBOOT_DIR").unwrap_or_else(|| "out/netboot".into());
    workspace().join(dir)
}
