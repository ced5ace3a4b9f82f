//! Harness for the end-to-end tests: the real server on 127.0.0.1, and headless Chromium
//! driven through ChromeDriver (Debian's `chromium` and `chromium-driver`; installed by
//! `scripts/deps.sh e2e`).

// A panic in the harness is a test failure, which is what these unwraps mean.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dragonfly::config::Config;
use serde_json::{Value, json};

/// The real server (the library's `serve_http` over the same router as the binary).
pub struct Server {
    pub url: String,
    pub state: dragonfly::state::AppState,
    pub api: reqwest::Client,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub const PASSWORD: &str = "e2e operator passphrase";

impl Server {
    pub async fn start() -> Server {
        Self::start_with(|_| {}, |addr| format!("http://{addr}")).await
    }

    /// A server for QEMU guests: they reach the host's loopback as 10.0.2.2, and boot the
    /// netboot artefact from `out/netboot` at the top of the workspace.
    pub async fn start_for_vms() -> Server {
        let boot_dir = workspace().join("out/netboot");
        Self::start_with(
            |c| c.boot_dir = boot_dir,
            |addr| format!("http://10.0.2.2:{}", addr.port()),
        )
        .await
    }

    pub async fn start_with(
        edit: impl FnOnce(&mut Config),
        base_url: impl FnOnce(std::net::SocketAddr) -> String,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(&dir.path().join("sqlite.db"));
        edit(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let state = dragonfly::build_state(
            &config,
            base_url(addr),
            std::sync::Arc::new(dragonfly::clock::SystemClock),
        )
        .await
        .unwrap();
        state.auth.set_password("admin", PASSWORD).await.unwrap();
        let (_, token) = state
            .auth
            .create_token("e2e", dragonfly::auth::Scope::Admin, "e2e")
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = dragonfly::router(state.clone());
        tokio::spawn(async move {
            dragonfly::serve_http(listener, app, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        Server {
            url,
            state,
            api: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
            _dir: dir,
            _stop: tx,
        }
    }

    /// Registers machine `n` through the agent API; returns its id.
    pub async fn register(&self, n: u32) -> String {
        let mac = format!("52:54:00:e2:{:02x}:{:02x}", n >> 8, n & 0xff);
        let body = json!({"agent_version": "e2e", "report": {
            "boot_mac": mac,
            "smbios": {"system": {"vendor": "QEMU", "product": "Standard PC", "serial": format!("E2E-{n:04}")}},
            "nics": [{"name": "eth0", "mac": mac, "link_up": true}],
            "disks": [{"name": "vda", "size_bytes": 10737418240u64, "serial": format!("E2E-DISK-{n}")}]
        }});
        let r: Value = self
            .api
            .post(format!("{}/api/v1/agent/register", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["machine_id"].as_str().unwrap().to_string()
    }

    pub async fn machine(&self, id: &str) -> Value {
        self.api
            .get(format!("{}/api/v1/machines/{id}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A ChromeDriver process with one headless Chromium session.
pub struct Browser {
    pub client: fantoccini::Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    pub async fn start() -> anyhow::Result<Browser> {
        for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            if !std::path::Path::new(bin).exists() {
                bail!(
                    "{bin} is missing: install Chromium and ChromeDriver with `scripts/deps.sh e2e`"
                );
            }
        }
        let port = free_port();
        let driver = tokio::process::Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting chromedriver")?;
        let profile = tempfile::tempdir()?;
        let caps = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps: serde_json::Map<String, Value> = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match fantoccini::ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e).context("connecting to chromedriver"),
            }
        };
        Ok(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Saves a screenshot under tests/artifacts/ (kept when a test fails).
    pub async fn screenshot(&self, name: &str) -> Option<PathBuf> {
        let png = self.client.screenshot().await.ok()?;
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts");
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).ok()?;
        Some(path)
    }

    /// With `E2E_SCREENSHOTS=1`, saves a screenshot of the current page (for looking at
    /// the UI, not for pass/fail).
    pub async fn snap(&self, name: &str) {
        if std::env::var_os("E2E_SCREENSHOTS").is_some() {
            self.screenshot(name).await;
        }
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}

/// Polls `check` every 50 ms until it yields `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
