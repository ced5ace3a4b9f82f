//! Assignment rules over HTTP: off by default; a new machine that matches the first rule (by
//! priority) is assigned its OS on the disk the rule picks, at registration, with an event
//! naming the rule; conditions, disk choice and the maximum count hold; bad rules are 422
//! with the field named; known machines are never reassigned.

use axum::http::StatusCode;
use dragonfly::config::Installer;
use serde_json::{Value, json};

use crate::support::{TestServer as Server, expect_error, expect_json, report};

const SHA: &str = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

async fn server() -> Server {
    let s = Server::start_custom(None, |c| c.installer = Some(Installer::Native)).await;
    let os = s
        .post(
            "/api/v1/os",
            json!({"slug": "lab-os", "name": "Lab", "family": "debian", "version": "12",
                   "image_url": "http://mirror.lab/lab.raw.zst", "format": "raw.zst", "sha256": SHA}),
        )
        .await;
    expect_json(os, StatusCode::CREATED).await;
    s
}

/// A report for machine `n` with two disks: a 500 GB SSD and a 4 TB hard disk.
fn two_disks(n: u32, vendor: &str) -> Value {
    let mut r = report(n);
    r["smbios"]["system"]["vendor"] = json!(vendor);
    r["disks"] = json!([
        {"name": "sda", "size_bytes": 4_000_000_000_000u64, "serial": format!("HDD-{n}"), "rotational": true, "transport": "sata"},
        {"name": "nvme0n1", "size_bytes": 500_000_000_000u64, "serial": format!("SSD-{n}"), "rotational": false, "transport": "nvme"}
    ]);
    r
}

async fn rule(s: &Server, body: Value) -> Value {
    expect_json(s.post("/api/v1/rules", body).await, StatusCode::CREATED).await
}

#[tokio::test]
async fn new_machines_get_the_os_of_the_first_matching_rule() {
    let s = server().await;
    // Off by default: no rule, no assignment.
    let r = s.register(two_disks(1, "Dell Inc.")).await;
    assert_eq!(r["instruction"]["action"], "wait");
    assert_eq!(
        s.machine(r["machine_id"].as_str().unwrap()).await["state"],
        "discovered"
    );

    rule(&s, json!({"name": "big dell", "priority": 10, "vendor": "dell", "min_memory_bytes": 64_000_000_000u64,
                    "os": "lab-os", "disk_rule": "largest"})).await;
    rule(
        &s,
        json!({"name": "dell", "priority": 20, "vendor": "dell", "os": "lab-os",
                    "disk_rule": "smallest_non_rotational", "max_count": 1}),
    )
    .await;
    rule(
        &s,
        json!({"name": "lab VMs", "priority": 30, "mac_prefix": "52:54:00", "os": "lab-os",
                    "disk_rule": "largest"}),
    )
    .await;

    // 8 GB of memory: not "big dell"; "dell" matches and picks the SSD.
    let r = s.register(two_disks(2, "Dell Inc.")).await;
    assert_eq!(r["instruction"]["action"], "install", "{r}");
    assert_eq!(r["instruction"]["disk"], json!({"serial": "SSD-2"}));
    let m = s.machine(r["machine_id"].as_str().unwrap()).await;
    assert_eq!(m["state"], "assigned");
    assert_eq!(m["os"], "lab-os");
    let event = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "os_assigned")
        .unwrap()
        .clone();
    assert_eq!(event["actor"], "system");
    assert_eq!(
        event["message"],
        "rule 'dell' assigned lab-os on disk serial SSD-2"
    );

    // "dell" is used up (max 1): the next Dell falls through to "lab VMs", largest disk.
    let r = s.register(two_disks(3, "Dell Inc.")).await;
    let m = s.machine(r["machine_id"].as_str().unwrap()).await;
    assert_eq!(m["target_disk"], json!({"serial": "HDD-3"}), "{m}");
    assert!(m["events"].to_string().contains("rule 'lab VMs'"));

    // Another vendor and another MAC: nothing matches.
    let mut other = two_disks(4, "Supermicro");
    other["boot_mac"] = json!("0c:c4:7a:00:00:04");
    other["nics"][0]["mac"] = json!("0c:c4:7a:00:00:04");
    let r = s.register(other).await;
    assert_eq!(
        s.machine(r["machine_id"].as_str().unwrap()).await["state"],
        "discovered"
    );

    let list = expect_json(s.get("/api/v1/rules").await, StatusCode::OK).await;
    let applied: Vec<(String, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["applied"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        applied,
        [
            ("big dell".into(), 0),
            ("dell".into(), 1),
            ("lab VMs".into(), 1)
        ]
    );
}

#[tokio::test]
async fn known_machines_are_never_reassigned_by_a_rule() {
    let s = server().await;
    let first = s.register(two_disks(5, "Dell Inc.")).await;
    let id = first["machine_id"].as_str().unwrap();
    rule(
        &s,
        json!({"name": "all", "os": "lab-os", "disk_rule": "smallest"}),
    )
    .await;
    // The same machine registers again (it proves itself with its token): still discovered.
    s.register_proven(two_disks(5, "Dell Inc."), first["token"].as_str().unwrap())
        .await;
    assert_eq!(s.machine(id).await["state"], "discovered");
}

#[tokio::test]
async fn bad_rules_name_the_field_and_rules_can_be_deleted() {
    let s = server().await;
    // A well-formed slug of no OS: a conflict with the catalogue, naming the field.
    expect_error(
        s.post(
            "/api/v1/rules",
            json!({"name": "x", "os": "nope", "disk_rule": "largest"}),
        )
        .await,
        StatusCode::CONFLICT,
        "unknown_reference",
        Some("os"),
    )
    .await;
    for (body, field) in [
        (
            json!({"name": "", "os": "lab-os", "disk_rule": "largest"}),
            "name",
        ),
        (
            json!({"name": "x", "os": "lab-os", "disk_rule": "largest", "mac_prefix": "zz"}),
            "mac_prefix",
        ),
        (
            json!({"name": "x", "os": "lab-os", "disk_rule": "model"}),
            "disk_model",
        ),
        (
            json!({"name": "x", "os": "lab-os", "disk_rule": "largest", "max_count": 0}),
            "max_count",
        ),
    ] {
        expect_error(
            s.post("/api/v1/rules", body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some(field),
        )
        .await;
    }
    // Natively, a rule's OS must be installable (a checksum).
    let os = s
        .post(
            "/api/v1/os",
            json!({"slug": "unsummed", "name": "U", "family": "debian", "version": "12",
                                   "image_url": "http://mirror.lab/u.raw"}),
        )
        .await;
    expect_json(os, StatusCode::CREATED).await;
    expect_error(
        s.post(
            "/api/v1/rules",
            json!({"name": "u", "os": "unsummed", "disk_rule": "largest"}),
        )
        .await,
        StatusCode::CONFLICT,
        "unknown_reference",
        Some("os"),
    )
    .await;
    let r = rule(
        &s,
        json!({"name": "keep", "os": "lab-os", "disk_rule": "largest"}),
    )
    .await;
    expect_error(
        s.post(
            "/api/v1/rules",
            json!({"name": "keep", "os": "lab-os", "disk_rule": "largest"}),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;
    // The OS a rule assigns cannot be deleted from under it.
    expect_error(
        s.delete("/api/v1/os/lab-os").await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;
    let id = r["id"].as_i64().unwrap();
    assert_eq!(
        s.delete(&format!("/api/v1/rules/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_error(
        s.delete(&format!("/api/v1/rules/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
}
