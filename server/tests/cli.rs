use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{expect_json, report};

fn dragonfly() -> Command {
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
struct Running {
    child: Child,
    url: String,
}

impl Running {
    /// Starts the binary on an ephemeral port and waits until its log says where it listens.
    fn start(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
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
        };
        // Keep draining the log so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Running { child, url }
    }

    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
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

async fn wait_healthy(client: &reqwest::Client, url: &str) -> serde_json::Value {
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

#[test]
fn help_lists_every_flag() {
    let out = dragonfly().arg("--help").output().unwrap();
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8(out.stdout).unwrap());
}

#[test]
fn a_bad_flag_names_the_flag() {
    let out = dragonfly().args(["--port", "http"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--port"), "{err}");
    let out = dragonfly()
        .args(["--base-url", "ftp://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--base-url") && err.contains("http://"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_is_one_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = dragonfly()
        .current_dir(dir.path())
        .args(["--host", "127.0.0.1", "--port", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("in use"), "{err}");
}

#[test]
fn a_database_that_cannot_be_opened_is_one_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        dir.path().join("missing-dir/x.db"),
        dir.path().to_path_buf(),
    ] {
        let out = dragonfly()
            .args(["--host", "127.0.0.1", "--port", "0", "--db"])
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("--db") && err.contains("cannot open database"),
            "{err}"
        );
    }
}

#[test]
fn a_broken_config_file_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dragonfly.toml");
    std::fs::write(&file, "port = \"many\"\n").unwrap();
    let out = dragonfly().arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--config") && err.contains("port"), "{err}");
    let out = dragonfly()
        .args(["--config", "/nonexistent/dragonfly.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn flags_win_over_environment_over_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dragonfly.toml");
    std::fs::write(
        &file,
        "base_url = \"http://from-file:1\"\ndb = \"file.db\"\n",
    )
    .unwrap();
    let cfg = file.to_str().unwrap();
    let client = reqwest::Client::new();

    let only_file = Running::start(dir.path(), &["--config", cfg], &[]);
    let h = wait_healthy(&client, &only_file.url).await;
    assert_eq!(h["base_url"], "http://from-file:1");
    only_file.stop();
    assert!(dir.path().join("file.db").exists());

    let env = [("DRAGONFLY_BASE_URL", "http://from-env:2")];
    let with_env = Running::start(dir.path(), &["--config", cfg], &env);
    assert_eq!(
        wait_healthy(&client, &with_env.url).await["base_url"],
        "http://from-env:2"
    );
    with_env.stop();

    let with_flag = Running::start(
        dir.path(),
        &["--config", cfg, "--base-url", "http://from-flag:3/"],
        &env,
    );
    assert_eq!(
        wait_healthy(&client, &with_flag.url).await["base_url"],
        "http://from-flag:3"
    );
    with_flag.stop();
}

#[tokio::test]
async fn a_restart_on_the_same_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let first = Running::start(dir.path(), &[], &[]);
    wait_healthy(&client, &first.url).await;
    let r: serde_json::Value = client
        .post(format!("{}/api/v1/agent/register", first.url))
        .json(&json!({"agent_version": "t", "report": report(1)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["machine_id"].as_str().unwrap().to_string();
    let token = r["token"].as_str().unwrap().to_string();
    client
        .patch(format!("{}/api/v1/machines/{id}", first.url))
        .json(&json!({"hostname": "keeper", "tags": ["t1"]}))
        .send()
        .await
        .unwrap();
    client
        .post(format!("{}/api/v1/machines/{id}/assign", first.url))
        .json(&json!({"os": "ubuntu-24.04"}))
        .send()
        .await
        .unwrap();
    first.stop();
    assert!(
        dir.path().join("sqlite.db").exists(),
        "default database file is sqlite.db"
    );

    let second = Running::start(dir.path(), &[], &[]);
    wait_healthy(&client, &second.url).await;
    let m = expect_json(
        client
            .get(format!("{}/api/v1/machines/{id}", second.url))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["hostname"], "keeper");
    assert_eq!(m["tags"], json!(["t1"]));
    assert_eq!(m["state"], "assigned");
    assert_eq!(m["os"], "ubuntu-24.04");
    assert_eq!(m["disks"][0]["serial"], "DISK-00001");
    assert_eq!(m["events"].as_array().unwrap().len(), 3);
    // The agent's token survives the restart too.
    let hb = client
        .post(format!("{}/api/v1/agent/heartbeat", second.url))
        .bearer_auth(&token)
        .json(&json!({"phase": "waiting"}))
        .send()
        .await
        .unwrap();
    let hb = expect_json(hb, StatusCode::OK).await;
    assert_eq!(hb["instruction"]["action"], "chainload");
    second.stop();
}
