//! The `dragonfly` binary as a process: started on an ephemeral loopback port, stopped with
//! SIGTERM; an admin API token minted offline. Shared by the CLI tests and the tests against
//! a real Kubernetes API server.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;

pub fn dragonfly() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dragonfly"));
    c.env_remove("DRAGONFLY_PORT")
        .env_remove("DRAGONFLY_HOST")
        .env_remove("DRAGONFLY_DB")
        .env_remove("DRAGONFLY_BASE_URL")
        .env_remove("DRAGONFLY_CONFIG")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    c
}

/// A running `dragonfly` process; stopped with SIGTERM on drop.
pub struct Running {
    pub child: Child,
    pub url: String,
    /// What it printed before it was ready (the one-time admin password, for instance).
    #[allow(dead_code)] // read by the CLI tests, not by tests/kube.rs
    pub banner: Vec<String>,
    /// Its log after it was ready (the last 5,000 lines).
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Running {
    /// Starts the binary on an ephemeral port and waits until its log says where it listens.
    pub fn start(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = dragonfly();
        cmd.current_dir(dir)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        let url = loop {
            let line = lines
                .next()
                .expect("dragonfly exited before it was ready")
                .unwrap();
            let plain = line.replace("\u{1b}", "");
            if let Some(rest) = plain.split("listen=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                break format!("http://{addr}");
            }
            banner.push(plain);
        };
        // Keep draining the log so the process never blocks on a full pipe.
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut kept = kept.lock().unwrap();
                if kept.len() == 5_000 {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        Running {
            child,
            url,
            banner,
            log,
        }
    }

    /// The log lines so far that contain `text`.
    #[allow(dead_code)] // read by tests/kube.rs, not by the CLI tests
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.contains(text)).cloned().collect()
    }

    pub fn stop(mut self) {
        self.terminate();
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

pub async fn wait_healthy(client: &reqwest::Client, url: &str) -> serde_json::Value {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{url}/healthz")).send().await {
            if r.status() == StatusCode::OK {
                return r.json().await.unwrap();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{url} never became healthy");
}

/// Mints an admin API token offline with `dragonfly admin create-token` and returns a
/// client that sends it.
pub fn authed_client(dir: &Path) -> reqwest::Client {
    let out = dragonfly()
        .current_dir(dir)
        .args(["admin", "create-token", "--name", "tests"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(secret.starts_with("dfo_"), "{secret}");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {secret}").parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}
