//! Who may re-register a known machine: an unproven claim on a machine past discovery, or
//! one that disagrees with a known machine's identity, changes nothing and waits for an
//! operator; the machine's own boot script (its secret) or its last token proves it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, expect_error, expect_json, report};

async fn claim(s: &TestServer, report: Value, proof: Value) -> reqwest::Response {
    let mut body = json!({"agent_version": "test", "report": report});
    if let Value::Object(p) = proof {
        body.as_object_mut().unwrap().extend(p);
    }
    s.anon
        .post(format!("{}/api/v1/agent/register", s.url))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn machine(s: &TestServer, id: &str) -> Value {
    expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await
}

async fn assign(s: &TestServer, id: &str) {
    let path = format!("/api/v1/machines/{id}/assign");
    expect_json(
        s.post(&path, json!({"os": "debian-12"})).await,
        StatusCode::OK,
    )
    .await;
}

/// Asserts that a registration was held for an operator.
async fn is_held(resp: reqwest::Response) {
    expect_error(resp, StatusCode::CONFLICT, "pending_approval", None).await;
}

/// A netboot artefact to boot (its content does not matter here).
fn netboot_artefact(s: &TestServer) {
    let dir = s.dir.path().join("netboot");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["vmlinuz", "initramfs.zst"] {
        std::fs::write(dir.join(f), b"x").unwrap();
    }
}

fn kinds(m: &Value) -> Vec<String> {
    m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

/// The `dragonfly.machine=` secret of a machine's boot script.
async fn script_secret(s: &TestServer, mac: &str) -> Option<String> {
    let text = s
        .anon
        .get(format!("{}/boot/{mac}.ipxe", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("dragonfly.machine="))
        .map(str::to_string)
}

#[tokio::test]
async fn an_unproven_claim_on_an_assigned_machine_changes_nothing() {
    let s = TestServer::start().await;
    let r = s.register(report(51)).await;
    let id = r["machine_id"].as_str().unwrap();
    let token = r["token"].as_str().unwrap();
    assign(&s, id).await;
    // The same report again, as anyone on the network could send it.
    for _ in 0..3 {
        let held = claim(&s, report(51), json!({})).await;
        expect_error(held, StatusCode::CONFLICT, "pending_approval", None).await;
    }
    // The real agent keeps its token and its machine its state.
    let hb = expect_json(
        s.heartbeat(token, json!({"phase": "waiting"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(hb["instruction"]["action"], "chainload");
    let m = machine(&s, id).await;
    assert_eq!(m["state"], "assigned");
    // One held claim (retries add attempts, not rows), one event, visible to the operator.
    let held = expect_json(s.get("/api/v1/registrations").await, StatusCode::OK).await;
    assert_eq!(held.as_array().unwrap().len(), 1, "{held}");
    assert_eq!(held[0]["attempts"], 3);
    assert_eq!(held[0]["machine_id"], id);
    let k = kinds(&m);
    assert_eq!(k.iter().filter(|k| *k == "registration_held").count(), 1);
    // A wrong secret or someone else's token proves nothing.
    let other = s.register(report(52)).await;
    for proof in [
        json!({"machine_secret": "not-the-secret"}),
        json!({"previous_token": other["token"]}),
    ] {
        let held = claim(&s, report(51), proof).await;
        expect_error(held, StatusCode::CONFLICT, "pending_approval", None).await;
    }
}

#[tokio::test]
async fn another_nic_or_the_uuid_of_a_known_machine_cannot_move_it() {
    let s = TestServer::start().await;
    let victim = s.register(report(53)).await;
    let id = victim["machine_id"].as_str().unwrap();
    // The attacker's own boot MAC, and the victim's MAC as a second NIC.
    let mut a = report(54);
    a["nics"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "eth1", "mac": "52:54:00:00:00:35"}));
    is_held(claim(&s, a, json!({})).await).await;
    // The attacker's own boot MAC with the victim's SMBIOS UUID.
    let mut b = report(55);
    b["smbios"]["system"]["uuid"] = victim_uuid();
    is_held(claim(&s, b, json!({})).await).await;
    let m = machine(&s, id).await;
    assert_eq!(m["boot_mac"], "52:54:00:00:00:35");
    // The attacker's MACs are served nothing of the victim's: the generic image, no secret.
    for mac in ["52-54-00-00-00-36", "52-54-00-00-00-37"] {
        assert_eq!(script_secret(&s, mac).await, None);
    }
    let list = expect_json(s.get("/api/v1/machines").await, StatusCode::OK).await;
    assert_eq!(list["total"], 1, "no machine was created or merged");
}

fn victim_uuid() -> Value {
    report(53)["smbios"]["system"]["uuid"].clone()
}

#[tokio::test]
async fn an_honest_reboot_proves_itself_with_its_boot_script() {
    let s = TestServer::start().await;
    netboot_artefact(&s);
    let r = s.register(report(56)).await;
    let id = r["machine_id"].as_str().unwrap();
    let old = r["token"].as_str().unwrap();
    assign(&s, id).await;
    expect_json(
        s.heartbeat(old, json!({"phase": "failed", "message": "disk gone"}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(machine(&s, id).await["state"], "failed");
    // The failed machine PXE-boots the image again; its script carries its secret.
    let secret = script_secret(&s, "52-54-00-00-00-38")
        .await
        .expect("no secret");
    let again = claim(&s, report(56), json!({"machine_secret": secret})).await;
    let again = expect_json(again, StatusCode::OK).await;
    assert_eq!(again["machine_id"], id);
    assert_eq!(machine(&s, id).await["state"], "failed");
    // The new token works; the old one was replaced.
    let new = again["token"].as_str().unwrap();
    assert_eq!(
        s.heartbeat(new, json!({"phase": "waiting"})).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        s.heartbeat(old, json!({"phase": "waiting"})).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Each machine's script has its own secret.
    s.register(report(57)).await;
    assert_ne!(script_secret(&s, "52-54-00-00-00-39").await, Some(secret));
    // The agent's last token is proof too (a re-registration within one boot).
    let third = claim(&s, report(56), json!({"previous_token": new})).await;
    expect_json(third, StatusCode::OK).await;
}

#[tokio::test]
async fn an_operator_approves_or_rejects_a_held_claim() {
    let s = TestServer::start().await;
    let r = s.register(report(58)).await;
    let id = r["machine_id"].as_str().unwrap();
    assign(&s, id).await;
    claim(&s, report(58), json!({})).await;
    let held = expect_json(
        s.get(&format!("/api/v1/registrations?machine={id}")).await,
        StatusCode::OK,
    )
    .await;
    let hid = held[0]["id"].as_i64().unwrap();
    let rejected = expect_json(
        s.post(&format!("/api/v1/registrations/{hid}/reject"), json!({}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rejected["decision"], "rejected");
    // Decided once only.
    expect_error(
        s.post(&format!("/api/v1/registrations/{hid}/approve"), json!({}))
            .await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;
    // Identical claims are refused outright and no longer listed.
    expect_error(
        claim(&s, report(58), json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    )
    .await;
    let open = expect_json(s.get("/api/v1/registrations").await, StatusCode::OK).await;
    assert_eq!(open.as_array().unwrap().len(), 0, "{open}");
    // A different report is a new claim; approved, it goes through once.
    let mut changed = report(58);
    changed["memory_bytes"] = json!(16u64 << 30);
    claim(&s, changed.clone(), json!({})).await;
    let open = expect_json(s.get("/api/v1/registrations").await, StatusCode::OK).await;
    let hid = open[0]["id"].as_i64().unwrap();
    expect_json(
        s.post(&format!("/api/v1/registrations/{hid}/approve"), json!({}))
            .await,
        StatusCode::OK,
    )
    .await;
    let ok = expect_json(claim(&s, changed.clone(), json!({})).await, StatusCode::OK).await;
    assert_eq!(ok["machine_id"], id);
    let m = machine(&s, id).await;
    assert_eq!(
        m["state"], "assigned",
        "approval changes identity, not state"
    );
    for k in [
        "registration_held",
        "registration_rejected",
        "registration_approved",
    ] {
        assert!(kinds(&m).iter().any(|x| x == k), "{k}");
    }
    is_held(claim(&s, changed, json!({})).await).await;
    expect_error(
        s.post("/api/v1/registrations/999999/approve", json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
}

#[tokio::test]
async fn the_machine_page_shows_held_claims_and_takes_the_answer() {
    let s = TestServer::start().await;
    let r = s.register(report(59)).await;
    let id = r["machine_id"].as_str().unwrap();
    assign(&s, id).await;
    claim(&s, report(59), json!({})).await;
    let page = s
        .get(&format!("/machines/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Held registrations"), "{page}");
    assert!(page.contains("without proof"), "{page}");
    let dash = s.get("/").await.text().await.unwrap();
    assert!(dash.contains("Held registrations"));
    let held = expect_json(s.get("/api/v1/registrations").await, StatusCode::OK).await;
    let hid = held[0]["id"].as_i64().unwrap();
    let resp = s
        .post(&format!("/machines/{id}/held/{hid}/approve"), json!({}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!resp.text().await.unwrap().contains("Approve"));
    let open = expect_json(s.get("/api/v1/registrations").await, StatusCode::OK).await;
    assert_eq!(open.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn leaving_out_an_identifier_or_borrowing_another_machines_is_held() {
    let s = TestServer::start().await;
    let a = s.register(report(60)).await;
    s.register(report(61)).await;
    // A discovered machine's boot MAC without its UUID and serial: not a way to blank them.
    let mut blank = report(60);
    blank["smbios"]["system"] = json!({"vendor": "QEMU"});
    is_held(claim(&s, blank, json!({})).await).await;
    // Even with its own proof, a machine may not take another's NIC.
    let mut borrow = report(60);
    borrow["nics"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "eth9", "mac": "52:54:00:00:00:3d"}));
    is_held(claim(&s, borrow, json!({"previous_token": a["token"]})).await).await;
    let m = machine(&s, a["machine_id"].as_str().unwrap()).await;
    assert_eq!(m["serial"], "SN-00060");
    assert_eq!(m["nics"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_boot_secret_proves_once_then_a_new_one_is_served() {
    let s = TestServer::start().await;
    netboot_artefact(&s);
    let r = s.register(report(62)).await;
    let id = r["machine_id"].as_str().unwrap();
    let seen = script_secret(&s, "52-54-00-00-00-3e").await.unwrap();
    // The machine is chosen for an install: the secret read before no longer proves.
    assign(&s, id).await;
    is_held(claim(&s, report(62), json!({"machine_secret": seen})).await).await;
}

#[tokio::test]
async fn held_claims_of_one_machine_are_bounded_and_the_newest_kept() {
    let s = TestServer::start().await;
    let r = s.register(report(63)).await;
    let id = r["machine_id"].as_str().unwrap();
    assign(&s, id).await;
    // Each claim a different report (a different digest): 30 rows' worth.
    for i in 0..30u64 {
        let mut r = report(63);
        r["memory_bytes"] = json!((i + 1) << 30);
        claim(&s, r, json!({})).await;
    }
    let open = expect_json(
        s.get(&format!("/api/v1/registrations?machine={id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(open.as_array().unwrap().len(), 20, "{open}");
}
