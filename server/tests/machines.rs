use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, expect_error, expect_json, report, urlencode};

async fn seed(s: &TestServer, n: u32) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            s.register(report(100 + i)).await["machine_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ids
}

fn macs(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["boot_mac"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn list_filters_searches_sorts_and_pages() {
    let s = TestServer::start().await;
    let ids = seed(&s, 12).await;
    for (i, id) in ids.iter().enumerate().take(4) {
        s.patch(
            &format!("/api/v1/machines/{id}"),
            json!({"hostname": format!("web-{i}"), "tags": ["rack-a", "web"]}),
        )
        .await;
    }
    s.post(
        &format!("/api/v1/machines/{}/assign", ids[0]),
        json!({"os": "debian-12"}),
    )
    .await;

    let all = expect_json(s.get("/api/v1/machines?per_page=5").await, StatusCode::OK).await;
    assert_eq!(all["total"], 12);
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    let page3 = expect_json(
        s.get("/api/v1/machines?per_page=5&page=3").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page3["items"].as_array().unwrap().len(), 2);
    let past_the_end = expect_json(
        s.get("/api/v1/machines?per_page=5&page=4").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(past_the_end["total"], 12);
    assert_eq!(past_the_end["items"], json!([]));

    let assigned = expect_json(
        s.get("/api/v1/machines?state=assigned").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(assigned["total"], 1);
    assert_eq!(assigned["items"][0]["id"], ids[0].as_str());
    let two_states = expect_json(
        s.get("/api/v1/machines?state=assigned,discovered").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(two_states["total"], 12);

    let tagged = expect_json(s.get("/api/v1/machines?tag=web").await, StatusCode::OK).await;
    assert_eq!(tagged["total"], 4);
    let search = expect_json(s.get("/api/v1/machines?q=web-2").await, StatusCode::OK).await;
    assert_eq!(search["total"], 1);
    let by_serial = expect_json(s.get("/api/v1/machines?q=SN-00105").await, StatusCode::OK).await;
    assert_eq!(by_serial["total"], 1);
    let by_mac = expect_json(s.get("/api/v1/machines?q=00:6b").await, StatusCode::OK).await;
    assert_eq!(by_mac["total"], 1, "{by_mac}");
    // LIKE wildcards in the search are literal.
    let wild = expect_json(s.get("/api/v1/machines?q=%25").await, StatusCode::OK).await;
    assert_eq!(wild["total"], 0);

    let asc = expect_json(
        s.get("/api/v1/machines?sort=mac&per_page=500").await,
        StatusCode::OK,
    )
    .await;
    let desc = expect_json(
        s.get("/api/v1/machines?sort=mac&order=desc&per_page=500")
            .await,
        StatusCode::OK,
    )
    .await;
    let mut sorted = macs(&asc);
    sorted.sort();
    assert_eq!(macs(&asc), sorted);
    let mut reversed = macs(&desc);
    reversed.reverse();
    assert_eq!(reversed, sorted);
    let by_host = expect_json(
        s.get("/api/v1/machines?sort=hostname&per_page=3").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(by_host["items"][0]["hostname"], "web-0");
}

/// Total of `GET /api/v1/machines?q=...`.
async fn found(s: &TestServer, q: &str) -> u64 {
    let url = format!("/api/v1/machines?q={}", urlencode(q));
    expect_json(s.get(&url).await, StatusCode::OK).await["total"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn search_follows_every_change_to_the_searched_facts() {
    let s = TestServer::start().await;
    let mut r = report(7);
    r["nics"].as_array_mut().unwrap().push(json!({
        "name": "eth1", "mac": "0e:aa:bb:cc:dd:ee", "driver": "e1000e", "link_up": false
    }));
    let first = s.register(r.clone()).await;
    let id = first["machine_id"].as_str().unwrap().to_string();
    let token = first["token"].as_str().unwrap().to_string();
    s.register(report(8)).await;
    // Every searched fact, in any case.
    for q in [
        "52:54:00:00:00:07",
        "0E:AA:BB",
        "sn-00007",
        "qemu",
        "Q35 + ICH9",
    ] {
        assert!(found(&s, q).await >= 1, "{q}");
    }
    assert_eq!(found(&s, "0e:aa:bb").await, 1);
    assert_eq!(found(&s, "SN-00007").await, 1);

    // A re-registration with a new serial and without the second NIC (an identity change:
    // the agent proves it is the same machine with its token).
    r["smbios"]["system"]["serial"] = json!("NEW-SERIAL-9");
    r["nics"].as_array_mut().unwrap().pop();
    s.register_proven(r, &token).await;
    assert_eq!(found(&s, "SN-00007").await, 0);
    assert_eq!(found(&s, "new-serial-9").await, 1);
    assert_eq!(found(&s, "0e:aa:bb").await, 0);

    // A hostname set, then changed.
    s.patch(
        &format!("/api/v1/machines/{id}"),
        json!({"hostname": "db-7"}),
    )
    .await;
    assert_eq!(found(&s, "db-7").await, 1);
    s.patch(
        &format!("/api/v1/machines/{id}"),
        json!({"hostname": "cache-7"}),
    )
    .await;
    assert_eq!(found(&s, "db-7").await, 0);
    assert_eq!(found(&s, "CACHE").await, 1);

    // A match never spans two fields (hostname "cache-7", then the boot MAC).
    assert_eq!(found(&s, "cache-752:54").await, 0);
    let resp = s.get("/api/v1/machines?q=cache%1F52").await;
    expect_error(
        resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("q"),
    )
    .await;
}

#[tokio::test]
async fn offline_is_derived_from_the_last_heartbeat() {
    let s = TestServer::start_with_manual_clock().await;
    let ids = seed(&s, 2).await;
    let token_b = s.register(report(101)).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let clock = s.clock.clone().unwrap();
    clock.advance(std::time::Duration::from_secs(45));
    s.heartbeat(&token_b, json!({"phase": "waiting"})).await;
    clock.advance(std::time::Duration::from_secs(30));
    // A's last contact is 75 s old (> 60 s threshold); B's is 30 s old.
    let offline = expect_json(
        s.get("/api/v1/machines?state=offline").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(offline["total"], 1);
    assert_eq!(offline["items"][0]["id"], ids[0].as_str());
    assert_eq!(offline["items"][0]["offline"], true);
    let b = expect_json(
        s.get(&format!("/api/v1/machines/{}", ids[1])).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(b["offline"], false);
    assert_eq!(b["state"], "discovered");
}

#[tokio::test]
async fn update_edits_hostname_tags_and_notes() {
    let s = TestServer::start().await;
    let id = seed(&s, 1).await.remove(0);
    let m = expect_json(
        s.patch(
            &format!("/api/v1/machines/{id}"),
            json!({"hostname": "Node-01.lab", "tags": ["b", "a", "a"], "notes": "rack 4"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["hostname"], "node-01.lab");
    assert_eq!(m["tags"], json!(["a", "b"]));
    assert_eq!(m["notes"], "rack 4");
    // Absent fields stay; null clears the hostname.
    let m = expect_json(
        s.patch(&format!("/api/v1/machines/{id}"), json!({"hostname": null}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["hostname"], Value::Null);
    assert_eq!(m["notes"], "rack 4");
    assert_eq!(m["tags"], json!(["a", "b"]));
}

#[tokio::test]
async fn delete_removes_the_machine_but_keeps_its_history() {
    let s = TestServer::start().await;
    let id = seed(&s, 1).await.remove(0);
    assert_eq!(
        s.delete(&format!("/api/v1/machines/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_error(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    expect_error(
        s.delete(&format!("/api/v1/machines/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    let log = expect_json(
        s.get(&format!("/api/v1/events/log?machine={id}")).await,
        StatusCode::OK,
    )
    .await;
    let kinds: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["deleted", "registered"]);
}

#[tokio::test]
async fn assign_reimage_and_cancel_follow_the_lifecycle() {
    let s = TestServer::start().await;
    let r = s.register(report(150)).await;
    let id = r["machine_id"].as_str().unwrap();
    let token = r["token"].as_str().unwrap();
    let path = |a: &str| format!("/api/v1/machines/{id}/{a}");

    // Reimage needs an installed or failed machine.
    expect_error(
        s.post(&path("reimage"), json!({})).await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;
    // Cancel needs something to cancel.
    expect_error(
        s.post(&path("cancel"), json!({})).await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;

    let m = expect_json(
        s.post(
            &path("assign"),
            json!({"os": "ubuntu-24.04", "target_disk": {"serial": "DISK-00150"}}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["state"], "assigned");
    assert_eq!(m["os"], "ubuntu-24.04");
    assert_eq!(m["target_disk"], json!({"serial": "DISK-00150"}));

    let m = expect_json(s.post(&path("cancel"), json!({})).await, StatusCode::OK).await;
    assert_eq!(m["state"], "discovered");
    assert_eq!(m["os"], Value::Null);

    s.post(
        &path("assign"),
        json!({"os": "ubuntu-24.04", "target_disk": {"wwn": "0x5000c50000000096"}}),
    )
    .await;
    s.heartbeat(token, json!({"phase": "installing", "progress": 10}))
        .await;
    let e = expect_error(
        s.post(&path("assign"), json!({"os": "debian-12"})).await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;
    assert!(
        e["message"].as_str().unwrap().contains("cancel it first"),
        "{e}"
    );
    s.heartbeat(
        token,
        json!({"phase": "failed", "message": "image2disk: 404"}),
    )
    .await;
    let m = expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["state"], "failed");
    assert_eq!(m["status_message"], "image2disk: 404");

    let m = expect_json(
        s.post(&path("reimage"), json!({"os": "debian-13"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["state"], "assigned");
    assert_eq!(m["os"], "debian-13");

    let log = expect_json(
        s.get(&format!("/api/v1/events/log?machine={id}")).await,
        StatusCode::OK,
    )
    .await;
    let arrows: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter(|e| e["from_state"].is_string())
        .map(|e| {
            format!(
                "{}:{}->{}",
                e["kind"].as_str().unwrap(),
                e["from_state"].as_str().unwrap(),
                e["to_state"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        arrows,
        [
            "registered:discovered->discovered",
            "os_assigned:discovered->assigned",
            "cancelled:assigned->discovered",
            "os_assigned:discovered->assigned",
            "install_started:assigned->installing",
            "install_failed:installing->failed",
            "reimaged:failed->assigned",
        ]
    );
}

#[tokio::test]
async fn assignment_refuses_unknown_os_and_unknown_disks() {
    let s = TestServer::start().await;
    let id = seed(&s, 1).await.remove(0);
    let path = format!("/api/v1/machines/{id}/assign");
    expect_error(
        s.post(&path, json!({"os": "windows-95"})).await,
        StatusCode::CONFLICT,
        "unknown_reference",
        Some("os"),
    )
    .await;
    expect_error(
        s.post(
            &path,
            json!({"os": "debian-12", "target_disk": {"serial": "NOPE"}}),
        )
        .await,
        StatusCode::CONFLICT,
        "unknown_reference",
        Some("target_disk"),
    )
    .await;
    // Kernel names are not a way to pick a disk.
    expect_error(
        s.post(
            &path,
            json!({"os": "debian-12", "target_disk": {"name": "sda"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("target_disk"),
    )
    .await;
    let m = expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["state"], "discovered");
}
