use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestServer, eventually, expect_error, expect_json, report};

#[tokio::test]
async fn registration_creates_a_machine_with_its_hardware() {
    let s = TestServer::start().await;
    let r = s.register(report(1)).await;
    assert!(r["token"].as_str().unwrap().starts_with("dfm_"));
    assert_eq!(r["instruction"]["action"], "wait");
    assert_eq!(r["heartbeat_secs"], 10);
    let id = r["machine_id"].as_str().unwrap();

    let m = expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["boot_mac"], "52:54:00:00:00:01");
    assert_eq!(m["serial"], "SN-00001");
    assert_eq!(m["state"], "discovered");
    assert_eq!(m["offline"], false);
    assert_eq!(m["disks"][0]["serial"], "DISK-00001");
    assert_eq!(m["nics"][0]["boot"], true);
    assert_eq!(m["hardware"]["cpu"]["model"], "QEMU Virtual CPU");
    assert_eq!(m["events"][0]["kind"], "registered");
}

#[tokio::test]
async fn the_token_is_stored_hashed_only() {
    let s = TestServer::start().await;
    let r = s.register(report(2)).await;
    let token = r["token"].as_str().unwrap().to_string();
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    let stored: String = conn
        .query_row("SELECT agent_token_hash FROM machines", [], |r| r.get(0))
        .unwrap();
    assert_ne!(stored, token);
    assert_eq!(stored.len(), 64);
    let dump: i64 = conn
        .query_row(
            "SELECT count(*) FROM machines WHERE instr(agent_token_hash, ?1) > 0",
            [&token],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dump, 0);
}

#[tokio::test]
async fn reregistration_updates_and_never_duplicates() {
    let s = TestServer::start().await;
    let first = s.register(report(3)).await;
    let second = s.register(report(3)).await;
    assert_eq!(first["machine_id"], second["machine_id"]);
    assert_ne!(first["token"], second["token"]);
    // The old token is replaced.
    let resp = s
        .heartbeat(
            first["token"].as_str().unwrap(),
            json!({"phase": "waiting"}),
        )
        .await;
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized", None).await;
    let page = expect_json(s.get("/api/v1/machines").await, StatusCode::OK).await;
    assert_eq!(page["total"], 1);
}

#[tokio::test]
async fn junk_smbios_values_count_as_absent_and_do_not_merge_machines() {
    let s = TestServer::start().await;
    let mut a = report(4);
    a["smbios"]["system"]["serial"] = json!("To Be Filled By O.E.M.");
    a["smbios"]["system"]["uuid"] = json!("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF");
    let mut b = report(5);
    b["smbios"]["system"]["serial"] = json!("To Be Filled By O.E.M.");
    b["smbios"]["system"]["uuid"] = json!("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF");
    let ra = s.register(a).await;
    let rb = s.register(b).await;
    assert_ne!(ra["machine_id"], rb["machine_id"]);
    let m = expect_json(
        s.get(&format!(
            "/api/v1/machines/{}",
            ra["machine_id"].as_str().unwrap()
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["serial"], serde_json::Value::Null);
    assert_eq!(m["smbios_uuid"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_machine_booting_from_another_nic_is_matched_by_uuid() {
    let s = TestServer::start().await;
    let first = s.register(report(6)).await;
    let mut moved = report(6);
    moved["boot_mac"] = json!("52:54:00:ff:00:06");
    moved["nics"][0]["mac"] = json!("52:54:00:ff:00:06");
    // A new boot NIC is an identity change nothing proves: held until an operator approves.
    let held = s
        .post(
            "/api/v1/agent/register",
            json!({"agent_version": "test", "report": moved}),
        )
        .await;
    expect_error(held, StatusCode::CONFLICT, "pending_approval", None).await;
    let list = expect_json(s.get("/api/v1/registrations").await, StatusCode::OK).await;
    assert_eq!(list[0]["boot_mac"], "52:54:00:ff:00:06", "{list}");
    assert_eq!(list[0]["machine_id"], first["machine_id"]);
    let approve = format!("/api/v1/registrations/{}/approve", list[0]["id"]);
    expect_json(s.post(&approve, json!({})).await, StatusCode::OK).await;
    let second = s.register(moved).await;
    assert_eq!(first["machine_id"], second["machine_id"]);
    let id = first["machine_id"].as_str().unwrap();
    let m = expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["boot_mac"], "52:54:00:ff:00:06");
    let kinds: Vec<&str> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"identity_mismatch"), "{kinds:?}");
    assert!(kinds.contains(&"hardware_changed"), "{kinds:?}");
}

#[tokio::test]
async fn a_hardware_change_is_recorded_with_what_changed() {
    let s = TestServer::start().await;
    let r = s.register(report(7)).await;
    let id = r["machine_id"].as_str().unwrap();
    // Same hardware, new DHCP address: no change event.
    let mut same = report(7);
    same["nics"][0]["addresses"] = json!(["10.0.2.99/24"]);
    s.register(same).await;
    let mut more = report(7);
    more["disks"].as_array_mut().unwrap().push(json!({
        "name": "vdb", "size_bytes": 1073741824u64, "serial": "NEWDISK"
    }));
    s.register(more).await;
    let m = expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await;
    let changes: Vec<&serde_json::Value> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "hardware_changed")
        .collect();
    assert_eq!(changes.len(), 1, "{}", m["events"]);
    assert_eq!(changes[0]["message"], "disk NEWDISK added");
    assert_eq!(m["disks"].as_array().unwrap().len(), 2);
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    let reports: i64 = conn
        .query_row("SELECT count(*) FROM hardware_reports", [], |r| r.get(0))
        .unwrap();
    assert_eq!(reports, 2);
}

#[tokio::test]
async fn a_hundred_concurrent_registrations_of_one_machine_leave_one_machine() {
    let s = TestServer::start().await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let client = s.client.clone();
        let url = format!("{}/api/v1/agent/register", s.url);
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"agent_version": "t", "report": report(8)}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let page = expect_json(s.get("/api/v1/machines").await, StatusCode::OK).await;
    assert_eq!(page["total"], 1);
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM machines", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    let nics: i64 = conn
        .query_row("SELECT count(*) FROM nics", [], |r| r.get(0))
        .unwrap();
    assert_eq!(nics, 1);
}

#[tokio::test]
async fn heartbeats_need_the_machines_own_token() {
    let s = TestServer::start().await;
    let resp = s
        .post("/api/v1/agent/heartbeat", json!({"phase": "waiting"}))
        .await;
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized", None).await;
    let resp = s
        .heartbeat("dfm_not-a-real-token", json!({"phase": "waiting"}))
        .await;
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized", None).await;

    let a = s.register(report(9)).await;
    let b = s.register(report(10)).await;
    // A's token moves only A.
    let resp = s
        .heartbeat(
            a["token"].as_str().unwrap(),
            json!({"phase": "waiting", "message": "hello from A"}),
        )
        .await;
    let body = expect_json(resp, StatusCode::OK).await;
    assert_eq!(body["instruction"]["action"], "wait");
    let ma = expect_json(
        s.get(&format!(
            "/api/v1/machines/{}",
            a["machine_id"].as_str().unwrap()
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    let mb = expect_json(
        s.get(&format!(
            "/api/v1/machines/{}",
            b["machine_id"].as_str().unwrap()
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ma["status_message"], "hello from A");
    assert_eq!(mb["status_message"], serde_json::Value::Null);
}

#[tokio::test]
async fn an_assigned_machine_is_told_to_chainload_its_boot_script() {
    let s = TestServer::start().await;
    let r = s.register(report(11)).await;
    let id = r["machine_id"].as_str().unwrap();
    let token = r["token"].as_str().unwrap();
    expect_json(
        s.post(
            &format!("/api/v1/machines/{id}/assign"),
            json!({"os": "ubuntu-24.04"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let body = expect_json(
        s.heartbeat(token, json!({"phase": "waiting"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["instruction"]["action"], "chainload");
    assert_eq!(
        body["instruction"]["script_url"],
        format!("{}/boot/52-54-00-00-00-0b.ipxe", s.url)
    );
    assert_eq!(
        body["instruction"]["ipxe_lkrn_url"],
        format!("{}/boot/ipxe.lkrn", s.url)
    );
}

#[tokio::test]
async fn agent_reported_install_phases_drive_the_lifecycle() {
    let s = TestServer::start().await;
    let r = s.register(report(12)).await;
    let id = r["machine_id"].as_str().unwrap();
    let token = r["token"].as_str().unwrap();
    s.post(
        &format!("/api/v1/machines/{id}/assign"),
        json!({"os": "debian-12"}),
    )
    .await;
    s.heartbeat(
        token,
        json!({"phase": "installing", "progress": 40, "message": "writing image"}),
    )
    .await;
    let m = expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["state"], "installing");
    assert_eq!(m["progress"], 40);
    s.heartbeat(token, json!({"phase": "installed", "progress": 100}))
        .await;
    let m = expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["state"], "installed");
    // A bogus report in a state that does not allow it changes nothing.
    s.heartbeat(token, json!({"phase": "failed", "message": "nope"}))
        .await;
    let m = expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["state"], "installed");
}

#[tokio::test]
async fn queued_instructions_are_delivered_once() {
    let s = TestServer::start().await;
    let r = s.register(report(13)).await;
    let id = r["machine_id"].as_str().unwrap();
    let token = r["token"].as_str().unwrap();
    let resp = s
        .post(
            &format!("/api/v1/machines/{id}/instructions"),
            json!({"action": "reinventory"}),
        )
        .await;
    expect_json(resp, StatusCode::ACCEPTED).await;
    let hb = expect_json(
        s.heartbeat(token, json!({"phase": "waiting"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(hb["instruction"]["action"], "reinventory");
    let hb = expect_json(
        s.heartbeat(token, json!({"phase": "waiting"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(hb["instruction"]["action"], "wait");
}

#[tokio::test]
async fn a_long_polling_heartbeat_returns_as_soon_as_the_machine_is_assigned() {
    let s = TestServer::start().await;
    let r = s.register(report(14)).await;
    let id = r["machine_id"].as_str().unwrap().to_string();
    let token = r["token"].as_str().unwrap().to_string();
    let url = format!("{}/api/v1/agent/heartbeat?wait=30", s.url);
    let client = s.client.clone();
    let poll = tokio::spawn(async move {
        let resp = client
            .post(url)
            .bearer_auth(token)
            .json(&json!({"phase": "waiting"}))
            .send()
            .await
            .unwrap();
        resp.json::<serde_json::Value>().await.unwrap()
    });
    // Once the poll waits on this machine, assign; the poll must answer chainload, not wait.
    eventually("the long-poll to wait on its machine", || async {
        (s.state.machines.waiting(&id) > 0).then_some(())
    })
    .await;
    expect_json(
        s.post(
            &format!("/api/v1/machines/{id}/assign"),
            json!({"os": "ubuntu-22.04"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let body = tokio::time::timeout(std::time::Duration::from_secs(10), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body["instruction"]["action"], "chainload");
}

#[tokio::test]
async fn reports_and_change_messages_are_bounded() {
    let s = TestServer::start().await;
    let first = s.register(report(31)).await;
    let id = first["machine_id"].as_str().unwrap().to_string();
    let mut token = first["token"].as_str().unwrap().to_string();
    // Eight re-registrations, each with 120 new NICs: a long change summary every time.
    for round in 0..8u32 {
        let mut r = report(31);
        let nics = r["nics"].as_array_mut().unwrap();
        for i in 0..120u32 {
            nics.push(json!({"name": format!("e{i}"), "mac": format!("0e:00:00:{round:02x}:{:02x}:{:02x}", i >> 8, i & 0xff)}));
        }
        token = s.register_proven(r, &token).await["token"]
            .as_str()
            .unwrap()
            .to_string();
    }
    let m = expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await;
    for e in m["events"].as_array().unwrap() {
        assert!(e["message"].as_str().unwrap().len() <= 2048, "{e}");
    }
    let db = rusqlite::Connection::open(s.db_path()).unwrap();
    let reports: i64 = db
        .query_row(
            "SELECT count(*) FROM hardware_reports WHERE machine_id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reports, 5, "only the newest reports are kept");
}

#[tokio::test]
async fn a_long_poll_on_a_replaced_token_takes_nothing() {
    let s = TestServer::start().await;
    let first = s.register(report(32)).await;
    let id = first["machine_id"].as_str().unwrap().to_string();
    let old = first["token"].as_str().unwrap().to_string();
    let url = format!("{}/api/v1/agent/heartbeat?wait=30", s.url);
    let client = s.client.clone();
    let poll = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(old)
            .json(&json!({"phase": "waiting"}))
            .send()
            .await
            .unwrap()
            .status()
    });
    eventually("the long-poll to wait on its machine", || async {
        (s.state.machines.waiting(&id) > 0).then_some(())
    })
    .await;
    // The machine registers again (its agent restarted): the old token is replaced.
    let new = s.register(report(32)).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    expect_json(
        s.post(
            &format!("/api/v1/machines/{id}/instructions"),
            json!({"action": "reboot"}),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The queued instruction waits for the current agent.
    let hb = expect_json(
        s.heartbeat(&new, json!({"phase": "waiting"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(hb["instruction"]["action"], "reboot");
}
