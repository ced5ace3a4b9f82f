use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::json;

use crate::binary::{Running, authed_client, dragonfly, wait_healthy};
use crate::support::{expect_json, report};

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

fn printed_password(banner: &[String]) -> Option<String> {
    let at = banner.iter().position(|l| l.contains("with password:"))?;
    banner[at + 1..]
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

async fn login(url: &str, username: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_first_start_prints_the_admin_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = Running::start(dir.path(), &[], &[]);
    let password = printed_password(&first.banner).expect("no password printed on first start");
    assert!(password.len() >= 16, "{password}");
    let resp = login(&first.url, "admin", &password).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("HttpOnly")
    );
    first.stop();
    let second = Running::start(dir.path(), &[], &[]);
    assert_eq!(
        printed_password(&second.banner),
        None,
        "{:?}",
        second.banner
    );
    assert!(!second.banner.iter().any(|l| l.contains(&password)));
    second.stop();
}

#[tokio::test]
async fn admin_set_password_reads_stdin_and_replaces_the_password() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let first = Running::start(dir.path(), &[], &[]);
    let old = printed_password(&first.banner).unwrap();
    let mut child = dragonfly()
        .current_dir(dir.path())
        .args(["admin", "set-password"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a much better passphrase\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        login(&first.url, "admin", &old).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&first.url, "admin", "a much better passphrase")
            .await
            .status(),
        StatusCode::OK
    );
    // Too short a password is refused and changes nothing.
    let mut child = dragonfly()
        .current_dir(dir.path())
        .args(["admin", "set-password"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("12 characters"));
    assert_eq!(
        login(&first.url, "admin", "a much better passphrase")
            .await
            .status(),
        StatusCode::OK
    );
    first.stop();
}

#[tokio::test]
async fn a_restart_on_the_same_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let client = authed_client(dir.path());
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
    // Standalone, the binary installs natively: the OS needs a verified image.
    let os = client
        .post(format!("{}/api/v1/os", first.url))
        .json(&json!({
            "slug": "mirror-os", "name": "Mirror OS", "family": "debian", "version": "12",
            "image_url": "/images/mirror-os.raw.zst", "format": "raw.zst",
            "sha256": "ab".repeat(32)
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        os.status(),
        StatusCode::CREATED,
        "{}",
        os.text().await.unwrap()
    );
    let assigned = client
        .post(format!("{}/api/v1/machines/{id}/assign", first.url))
        .json(&json!({"os": "mirror-os"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        assigned.status(),
        StatusCode::OK,
        "{}",
        assigned.text().await.unwrap()
    );
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
    assert_eq!(m["os"], "mirror-os");
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
    // Standalone: the agent installs it itself, from the image the server serves.
    assert_eq!(hb["instruction"]["action"], "install", "{hb}");
    assert!(
        hb["instruction"]["image"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/images/mirror-os.raw.zst"),
        "{hb}"
    );
    assert_eq!(hb["instruction"]["disk"]["serial"], "DISK-00001");
    second.stop();
}

#[tokio::test]
async fn tls_serves_https_with_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let server = Running::start(
        dir.path(),
        &["--tls-cert", "cert.pem", "--tls-key", "key.pem"],
        &[],
    );
    let password = printed_password(&server.banner).unwrap();
    let url = server.url.replacen("http://", "https://", 1);
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let h = wait_healthy(&client, &url).await;
    assert!(
        h["base_url"].as_str().unwrap().starts_with("https://"),
        "{h}"
    );
    let resp = client
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    server.stop();
}

#[test]
fn tls_flags_go_together_and_bad_files_are_named() {
    let out = dragonfly().args(["--tls-cert", "c.pem"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
    let dir = tempfile::tempdir().unwrap();
    let out = dragonfly()
        .current_dir(dir.path())
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-cert",
            "missing.pem",
            "--tls-key",
            "missing.key",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert missing.pem"), "{err}");
}

/// `dragonfly os refresh` on the database, against a mirror on loopback: the checksum is
/// stored and printed; an unknown slug names the flag; a failure exits 1 with the reason.
#[tokio::test]
async fn os_refresh_reads_the_published_list_into_the_database() {
    use dragonfly::machines::catalogue::{Catalogue, OsInput};
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sqlite.db");
    let sum = "d".repeat(128);
    let mirror = crate::os::Mirror::start(format!("{sum}  disk.qcow2\n")).await;
    let catalogue = Catalogue::new(
        dragonfly::store::Db::open(&db_path).unwrap(),
        std::sync::Arc::new(dragonfly::clock::SystemClock),
    );
    for (slug, list) in [("lab-os", "SUMS"), ("lab-gone", "nothing")] {
        catalogue
            .create(OsInput {
                slug: Some(slug.into()),
                name: slug.into(),
                family: "debian".into(),
                version: "13".into(),
                arch: "x86_64".into(),
                image_url: "http://mirror.lab/disk.qcow2".into(),
                format: "qcow2".into(),
                sha256: None,
                sha512: None,
                checksum_url: Some(format!("{}/{list}", mirror.url)),
                size_bytes: None,
                user_data: None,
            })
            .await
            .unwrap();
    }
    let run = |args: &'static [&'static str]| {
        let db = db_path.clone();
        tokio::task::spawn_blocking(move || {
            dragonfly()
                .args(["os", "refresh", "--db"])
                .arg(db)
                .args(args)
                .output()
                .unwrap()
        })
    };
    let out = run(&["--os", "lab-os"]).await.unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(said.trim(), format!("lab-os: SHA-512 new {sum}"));
    assert_eq!(
        catalogue.get("lab-os").await.unwrap().sha512.as_deref(),
        Some(sum.as_str())
    );

    let out = run(&["--os", "lab-gone"]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("lab-gone: failed:") && said.contains("404"),
        "{said}"
    );

    let out = run(&["--os", "no-such-os"]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--os no-such-os"), "{err}");
}
