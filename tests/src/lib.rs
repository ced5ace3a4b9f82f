//! Harness for the end-to-end tests: the shared test kit's real server, and headless
//! Chromium driven through ChromeDriver (Debian's `chromium` and `chromium-driver`; installed
//! by `scripts/deps.sh e2e`).

// A panic in the harness is a test failure, which is what these unwraps mean.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub use dragonfly_testkit::{PASSWORD, Server, wait_for, workspace};

pub mod flaky;
pub mod qemu;

/// Registers machine `n` through the agent API with a small report of its own (serial
/// `E2E-{n:04}`, disk `E2E-DISK-{n}`); returns its id.
pub async fn register(s: &Server, n: u32) -> String {
    let mac = format!("52:54:00:e2:{:02x}:{:02x}", n >> 8, n & 0xff);
    let body = json!({"agent_version": "e2e", "report": {
        "boot_mac": mac,
        "smbios": {"system": {"vendor": "QEMU", "product": "Standard PC", "serial": format!("E2E-{n:04}")}},
        "nics": [{"name": "eth0", "mac": mac, "link_up": true}],
        "disks": [{"name": "vda", "size_bytes": 10737418240u64, "serial": format!("E2E-DISK-{n}")}]
    }});
    let r: Value = s
        .post("/api/v1/agent/register", body)
        .await
        .json()
        .await
        .unwrap();
    r["machine_id"].as_str().unwrap().to_string()
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
