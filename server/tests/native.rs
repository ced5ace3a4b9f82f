//! The native install on the server's side, over real HTTP: an OS needs a verified image to
//! be assigned; the agent gets an `install` plan with a seed carrying the SSH keys and a
//! one-time phone-home URL; the machine stays in the Dragonfly image until the image is
//! written, then boots its disk; the installed system's phone-home makes it `installed`,
//! once; a system that never reports fails after the first-boot timeout; an agent's failure
//! fails the machine and kills the token.

use std::time::Duration;

use axum::http::StatusCode;
use dragonfly::clock::ManualClock;
use dragonfly::config::Installer;
use serde_json::{Value, json};

use crate::support::{TestServer as Server, expect_error, expect_json, report};

const SHA: &str = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

async fn native_server(clock: bool) -> Server {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        keys.path(),
        "# the lab's keys\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDragonflyTestKey ops@lab\n",
    )
    .unwrap();
    let path = keys.into_temp_path().keep().unwrap();
    let edit = move |c: &mut dragonfly::config::Config| {
        c.installer = Some(Installer::Native);
        // A netboot artefact to keep machines in (its content does not matter here).
        std::fs::create_dir_all(&c.boot_dir).unwrap();
        std::fs::write(c.boot_dir.join("vmlinuz"), b"kernel").unwrap();
        std::fs::write(c.boot_dir.join("initramfs.zst"), b"initramfs").unwrap();
        c.first_boot_timeout_secs = 600;
        c.ssh_keys = vec![
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .nth(1)
                .unwrap()
                .to_string(),
        ];
    };
    let clock = clock.then(|| std::sync::Arc::new(ManualClock::new(1_700_000_000_000)));
    Server::start_custom(clock, edit).await
}

async fn add_os(s: &Server, slug: &str, format: &str, sha256: Option<&str>) {
    let mut body = json!({
        "slug": slug, "name": slug, "family": "debian", "version": "12",
        "image_url": format!("/images/{slug}.{format}"), "format": format,
        "size_bytes": 1073741824u64,
        "user_data": "#cloud-config\npackages: [htop]\n"
    });
    if let Some(sum) = sha256 {
        body["sha256"] = json!(sum);
    }
    expect_json(s.post("/api/v1/os", body).await, StatusCode::CREATED).await;
}

/// Registers machine `n`, assigns `os` on its disk and returns (id, token, plan).
async fn assigned(s: &Server, n: u32, os: &str) -> (String, String, Value) {
    let r = s.register(report(n)).await;
    let id = r["machine_id"].as_str().unwrap().to_string();
    let token = r["token"].as_str().unwrap().to_string();
    let a = s
        .post(
            &format!("/api/v1/machines/{id}/assign"),
            json!({"os": os, "target_disk": {"serial": format!("DISK-{n:05}")}}),
        )
        .await;
    expect_json(a, StatusCode::OK).await;
    let hb = expect_json(
        s.heartbeat(&token, json!({"phase": "waiting"})).await,
        StatusCode::OK,
    )
    .await;
    (id, token, hb["instruction"].clone())
}

fn phone_home_token(plan: &Value) -> String {
    let user_data = plan["seed"]["user_data"].as_str().unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(user_data).unwrap();
    let url = doc["phone_home"]["url"].as_str().unwrap().to_string();
    url.rsplit('/').next().unwrap().to_string()
}

async fn script(s: &Server, n: u32) -> String {
    let mac = format!("52-54-00-00-{:02x}-{:02x}", (n >> 8) & 0xff, n & 0xff);
    s.get(&format!("/boot/{mac}.ipxe"))
        .await
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_native_install_runs_from_plan_to_phone_home() {
    let s = native_server(false).await;
    let health = expect_json(s.get("/healthz").await, StatusCode::OK).await;
    assert_eq!(health["installer"], "native");
    add_os(&s, "lab-debian", "raw.zst", Some(SHA)).await;
    let (id, token, plan) = assigned(&s, 1, "lab-debian").await;

    // The plan: the image served here, its checksum and format, the disk by serial, a seed.
    assert_eq!(plan["action"], "install", "{plan}");
    assert_eq!(
        plan["image"]["url"],
        format!("{}/images/lab-debian.raw.zst", s.url)
    );
    assert_eq!(plan["image"]["format"], "raw.zst");
    assert_eq!(plan["image"]["sha256"], SHA);
    assert_eq!(plan["image"]["size"], 1073741824u64);
    assert_eq!(plan["disk"], json!({"serial": "DISK-00001"}));
    assert_eq!(plan["seed"]["boot_mac"], "52:54:00:00:00:01");
    let user_data = plan["seed"]["user_data"].as_str().unwrap();
    assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
    let doc: serde_yaml::Value = serde_yaml::from_str(user_data).unwrap();
    assert_eq!(
        doc["packages"][0], "htop",
        "the OS's own cloud-config is kept"
    );
    assert_eq!(doc["hostname"], "node-525400000001");
    assert!(
        doc["ssh_authorized_keys"][0]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDragonflyTestKey")
    );
    let phone = doc["phone_home"]["url"].as_str().unwrap();
    assert!(
        phone.starts_with(&format!("{}/api/v1/phone-home/", s.url)),
        "{phone}"
    );
    let one_time = phone_home_token(&plan);
    assert_eq!(one_time.len(), 43);
    // Asking again gives the same install (one token per install), not a new one.
    let again = expect_json(
        s.heartbeat(&token, json!({"phase": "waiting"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(phone_home_token(&again["instruction"]), one_time);

    // Until the image is written, a PXE boot keeps the machine in the Dragonfly image.
    assert!(
        script(&s, 1).await.contains("initramfs"),
        "netboot while assigned"
    );
    // Too early: the system cannot have booted before its image was written.
    let early = s
        .post(&format!("/api/v1/phone-home/{one_time}"), json!({}))
        .await;
    expect_error(early, StatusCode::CONFLICT, "conflict", None).await;

    // Writing: progress in heartbeats.
    let hb = s
        .heartbeat(
            &token,
            json!({"phase": "installing", "progress": 40, "message": "writing: 400 MiB of 1024 MiB at 120.0 MB/s",
                   "write": {"written": 419430400u64, "total": 1073741824u64, "bytes_per_sec": 120000000u64}}),
        )
        .await;
    expect_json(hb, StatusCode::OK).await;
    let m = s.machine(&id).await;
    assert_eq!(m["state"], "installing");
    assert_eq!(m["progress"], 40);
    assert!(
        script(&s, 1).await.contains("initramfs"),
        "still netboot while writing"
    );

    // Written: the next PXE boot goes to the disk.
    let hb = s
        .heartbeat(
            &token,
            json!({"phase": "written", "message": "wrote 1024 MiB, SHA-256 verified"}),
        )
        .await;
    expect_json(hb, StatusCode::OK).await;
    let m = s.machine(&id).await;
    assert_eq!(m["state"], "installing");
    assert!(m["written_at"].is_string(), "{m}");
    assert!(
        script(&s, 1).await.contains("booting from the local disk"),
        "local disk once written"
    );
    let kinds: Vec<&str> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"install_written"), "{kinds:?}");

    // The installed system reports back (cloud-init posts a form): installed, once.
    let resp = s
        .client
        .post(format!("{}/api/v1/phone-home/{one_time}", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("instance_id=dragonfly-1&hostname=node-525400000001&fqdn=node-525400000001.lab")
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;
    let m = s.machine(&id).await;
    assert_eq!(m["state"], "installed");
    let last = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "install_succeeded")
        .cloned()
        .unwrap();
    assert_eq!(last["actor"], "installed_os");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("as node-525400000001"),
        "{last}"
    );
    let replay = s
        .post(&format!("/api/v1/phone-home/{one_time}"), json!({}))
        .await;
    expect_error(replay, StatusCode::NOT_FOUND, "not_found", None).await;
    assert!(script(&s, 1).await.contains("booting from the local disk"));

    // A reimage is a new install with a new token; the old one is never trusted again.
    let r = s
        .post(&format!("/api/v1/machines/{id}/reimage"), json!({}))
        .await;
    expect_json(r, StatusCode::OK).await;
    let hb = expect_json(
        s.heartbeat(&token, json!({"phase": "waiting"})).await,
        StatusCode::OK,
    )
    .await;
    let second = phone_home_token(&hb["instruction"]);
    assert_ne!(second, one_time);
    let old = s
        .post(&format!("/api/v1/phone-home/{one_time}"), json!({}))
        .await;
    expect_error(old, StatusCode::NOT_FOUND, "not_found", None).await;
}

#[tokio::test]
async fn only_verified_images_can_be_assigned() {
    let s = native_server(false).await;
    add_os(&s, "no-sum", "raw.gz", None).await;
    add_os(&s, "a-qcow", "qcow2", Some(SHA)).await;
    let r = s.register(report(2)).await;
    let id = r["machine_id"].as_str().unwrap();
    let e = expect_error(
        s.post(
            &format!("/api/v1/machines/{id}/assign"),
            json!({"os": "no-sum"}),
        )
        .await,
        StatusCode::CONFLICT,
        "unknown_reference",
        Some("os"),
    )
    .await;
    assert_eq!(e["field"], "os");
    assert!(e["message"].as_str().unwrap().contains("no sha256"), "{e}");
    assert_eq!(s.machine(id).await["state"], "discovered");
    // A verified qcow2 image is written like the others (the agent spools and converts it).
    let r = s
        .post(
            &format!("/api/v1/machines/{id}/assign"),
            json!({"os": "a-qcow", "target_disk": {"serial": "DISK-00002"}}),
        )
        .await;
    let m = expect_json(r, StatusCode::OK).await;
    assert_eq!(m["state"], "assigned", "{m}");
    // A SHA-512 alone (what Debian publishes) is enough, and is what the plan carries.
    let sha512 = "e".repeat(128);
    let r = s
        .post(
            "/api/v1/os",
            json!({"slug": "sha512-only", "name": "d", "family": "debian", "version": "13",
                   "image_url": "/images/d.qcow2", "format": "qcow2", "sha512": sha512}),
        )
        .await;
    expect_json(r, StatusCode::CREATED).await;
    let (_, _, plan) = assigned(&s, 3, "sha512-only").await;
    assert_eq!(plan["image"]["sha512"], sha512.as_str(), "{plan}");
    assert!(plan["image"].get("sha256").is_none(), "{plan}");
    // A bad checksum or format in the catalogue is refused with the field named.
    let bad = s
        .post(
            "/api/v1/os",
            json!({"slug": "bad", "name": "b", "family": "x", "version": "1",
            "image_url": "http://mirror.lab/x.raw", "sha256": "xyz"}),
        )
        .await;
    expect_error(
        bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("sha256"),
    )
    .await;
    let bad = s
        .post(
            "/api/v1/os",
            json!({"slug": "bad", "name": "b", "family": "x", "version": "1",
            "image_url": "http://mirror.lab/x.raw", "format": "vmdk"}),
        )
        .await;
    expect_error(
        bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("format"),
    )
    .await;
}

#[tokio::test]
async fn an_agent_failure_fails_the_machine_and_spends_the_token() {
    let s = native_server(false).await;
    add_os(&s, "lab-debian", "raw.zst", Some(SHA)).await;
    let (id, token, plan) = assigned(&s, 3, "lab-debian").await;
    let one_time = phone_home_token(&plan);
    s.heartbeat(&token, json!({"phase": "installing", "progress": 1}))
        .await;
    let hb = s
        .heartbeat(
            &token,
            json!({"phase": "failed", "message": "install failed: checksum mismatch"}),
        )
        .await;
    let hb = expect_json(hb, StatusCode::OK).await;
    assert_eq!(
        hb["instruction"]["action"], "wait",
        "the agent stays, awaiting the operator"
    );
    let m = s.machine(&id).await;
    assert_eq!(m["state"], "failed");
    assert!(
        m["status_message"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch")
    );
    let r = s
        .post(&format!("/api/v1/phone-home/{one_time}"), json!({}))
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "not_found", None).await;
}

#[tokio::test]
async fn a_system_that_never_reports_fails_after_the_first_boot_timeout() {
    let s = native_server(true).await;
    let clock = s.clock.clone().unwrap();
    add_os(&s, "lab-debian", "raw.zst", Some(SHA)).await;
    let (id, token, _) = assigned(&s, 4, "lab-debian").await;
    s.heartbeat(&token, json!({"phase": "written", "message": "wrote it"}))
        .await;
    s.state.machines.expire_first_boots().await.unwrap();
    assert_eq!(s.machine(&id).await["state"], "installing", "not yet");
    clock.advance(Duration::from_secs(601));
    s.state.machines.expire_first_boots().await.unwrap();
    let m = s.machine(&id).await;
    assert_eq!(m["state"], "failed");
    assert!(
        m["status_message"]
            .as_str()
            .unwrap()
            .contains("never reported back"),
        "{m}"
    );
}

#[tokio::test]
async fn stored_ssh_keys_join_the_file_keys_in_every_plan() {
    let s = native_server(false).await;
    let keys = expect_json(s.get("/api/v1/settings/ssh-keys").await, StatusCode::OK).await;
    assert_eq!(keys["from_file"].as_array().unwrap().len(), 1);
    assert_eq!(keys["stored"], json!([]));
    let bad = s
        .put(
            "/api/v1/settings/ssh-keys",
            json!({"authorized_keys": "# ops\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStoredKey1 a@b\nnot a key\n"}),
        )
        .await;
    let e = expect_error(
        bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("authorized_keys"),
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("line 3"), "{e}");
    let put = s
        .put(
            "/api/v1/settings/ssh-keys",
            json!({"authorized_keys": "# ops\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStoredKey1 stored@ops\n"}),
        )
        .await;
    let keys = expect_json(put, StatusCode::OK).await;
    assert_eq!(
        keys["stored"],
        json!(["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStoredKey1 stored@ops"])
    );
    add_os(&s, "lab-debian", "raw.zst", Some(SHA)).await;
    let (_, _, plan) = assigned(&s, 6, "lab-debian").await;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(plan["seed"]["user_data"].as_str().unwrap()).unwrap();
    let keys: Vec<&str> = doc["ssh_authorized_keys"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].ends_with("ops@lab"));
    assert!(keys[1].ends_with("stored@ops"));
}

fn plan_keys(plan: &Value) -> Vec<String> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(plan["seed"]["user_data"].as_str().unwrap()).unwrap();
    doc["ssh_authorized_keys"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_machines_own_ssh_keys_join_the_servers_for_that_machine_only() {
    let s = native_server(false).await;
    add_os(&s, "lab-debian", "raw.zst", Some(SHA)).await;
    let (id, token, plan) = assigned(&s, 7, "lab-debian").await;
    assert_eq!(plan_keys(&plan).len(), 1, "{plan}");
    let path = format!("/api/v1/machines/{id}/ssh-keys");
    let e = expect_error(
        s.put(&path, json!({"authorized_keys": "ssh-rsa"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("authorized_keys"),
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("line 1"), "{e}");
    expect_error(
        s.put(
            "/api/v1/machines/no-such-machine/ssh-keys",
            json!({"authorized_keys": ""}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwnerKey0001 owner@team";
    let put = expect_json(
        s.put(&path, json!({"authorized_keys": format!("{key}\n")}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(put["keys"], json!([key]));
    assert_eq!(
        expect_json(s.get(&path).await, StatusCode::OK).await["keys"],
        json!([key])
    );
    // The next plan this machine gets carries it after the server's key.
    let hb = expect_json(
        s.heartbeat(&token, json!({"phase": "waiting"})).await,
        StatusCode::OK,
    )
    .await;
    let keys = plan_keys(&hb["instruction"]);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].ends_with("ops@lab") && keys[1] == key, "{keys:?}");
    // Another machine's plan does not.
    let (_, _, other) = assigned(&s, 8, "lab-debian").await;
    assert_eq!(plan_keys(&other).len(), 1);
    // The change is on the timeline (the count, not the keys); empty removes them.
    let events = s.machine(&id).await["events"].to_string();
    assert!(
        events.contains("SSH keys for native installs: 1"),
        "{events}"
    );
    let cleared = expect_json(
        s.put(&path, json!({"authorized_keys": ""})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(cleared["keys"], json!([]));
}
