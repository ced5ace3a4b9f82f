use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, expect_error, expect_json, report};

#[tokio::test]
async fn malformed_json_is_a_400_in_the_error_shape() {
    let s = TestServer::start().await;
    let resp = s
        .client
        .post(format!("{}/api/v1/agent/register", s.url))
        .header("content-type", "application/json")
        .body("{\"agent_version\": ")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, "invalid_json", None).await;
}

#[tokio::test]
async fn wrong_content_type_is_a_415() {
    let s = TestServer::start().await;
    let resp = s
        .client
        .post(format!("{}/api/v1/agent/register", s.url))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(
        resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    )
    .await;
    let resp = s
        .client
        .post(format!("{}/api/v1/os", s.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(
        resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    )
    .await;
}

#[tokio::test]
async fn oversized_bodies_are_a_413_and_store_nothing() {
    let s = TestServer::start().await;
    let mut r = report(1);
    r["smbios"]["system"]["family"] = json!("x".repeat(2 * 1024 * 1024));
    let resp = s
        .post(
            "/api/v1/agent/register",
            json!({"agent_version": "t", "report": r}),
        )
        .await;
    expect_error(
        resp,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
    )
    .await;
    let big_notes = json!({"name": "x".repeat(600 * 1024), "family": "f", "version": "1", "image_url": "http://a/b"});
    expect_error(
        s.put("/api/v1/os/debian-12", big_notes).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
    )
    .await;
    let page = expect_json(s.get("/api/v1/machines").await, StatusCode::OK).await;
    assert_eq!(page["total"], 0);
}

#[tokio::test]
async fn wrong_types_and_missing_fields_name_the_field() {
    let s = TestServer::start().await;
    let resp = s
        .post("/api/v1/agent/register", json!({"agent_version": "t"}))
        .await;
    expect_error(
        resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("report"),
    )
    .await;
    let mut r = report(1);
    r["disks"][0]["size_bytes"] = json!("big");
    let resp = s
        .post(
            "/api/v1/agent/register",
            json!({"agent_version": "t", "report": r}),
        )
        .await;
    expect_error(
        resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("report.disks[0].size_bytes"),
    )
    .await;
}

#[tokio::test]
async fn invalid_macs_are_refused_naming_the_field() {
    let s = TestServer::start().await;
    let mut r = report(1);
    r["boot_mac"] = json!("not-a-mac");
    let resp = s
        .post(
            "/api/v1/agent/register",
            json!({"agent_version": "t", "report": r}),
        )
        .await;
    expect_error(
        resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("report.boot_mac"),
    )
    .await;
    let mut r = report(1);
    r["nics"][0]["mac"] = json!("ff:ff:ff:ff:ff:ff");
    let resp = s
        .post(
            "/api/v1/agent/register",
            json!({"agent_version": "t", "report": r}),
        )
        .await;
    expect_error(
        resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("report.nics[0].mac"),
    )
    .await;
    let page = expect_json(s.get("/api/v1/machines").await, StatusCode::OK).await;
    assert_eq!(page["total"], 0);
}

#[tokio::test]
async fn invalid_hostnames_and_tags_are_refused_and_change_nothing() {
    let s = TestServer::start().await;
    let id = s.register(report(1)).await["machine_id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/v1/machines/{id}");
    s.patch(&path, json!({"hostname": "good-name", "notes": "keep me"}))
        .await;
    for bad in [
        "-leading",
        "under_score",
        "a..b",
        &"x".repeat(64),
        "spa ce",
        "ünï",
    ] {
        let resp = s
            .patch(&path, json!({"hostname": bad, "notes": "changed"}))
            .await;
        expect_error(
            resp,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some("hostname"),
        )
        .await;
    }
    let resp = s.patch(&path, json!({"tags": ["ok", "Not OK"]})).await;
    expect_error(
        resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("tags[1]"),
    )
    .await;
    let resp = s.patch(&path, json!({"colour": "blue"})).await;
    expect_error(
        resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("colour"),
    )
    .await;
    let m = expect_json(s.get(&path).await, StatusCode::OK).await;
    assert_eq!(m["hostname"], "good-name");
    assert_eq!(m["notes"], "keep me");
    assert_eq!(m["tags"], json!([]));
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let s = TestServer::start().await;
    for path in ["/api/v1/machines/nope", "/api/v1/os/nope"] {
        expect_error(s.get(path).await, StatusCode::NOT_FOUND, "not_found", None).await;
    }
    expect_error(
        s.post("/api/v1/machines/nope/assign", json!({"os": "debian-12"}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    expect_error(
        s.patch("/api/v1/machines/nope", json!({"notes": "x"}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
}

#[tokio::test]
async fn unknown_routes_methods_and_bad_query_parameters_use_the_error_shape() {
    let s = TestServer::start().await;
    expect_error(
        s.get("/api/v1/nothing-here").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    expect_error(
        s.delete("/api/v1/os").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    )
    .await;
    expect_error(
        s.get("/api/v1/machines?state=sleeping").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("state"),
    )
    .await;
    expect_error(
        s.get("/api/v1/machines?per_page=0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("per_page"),
    )
    .await;
    expect_error(
        s.get("/api/v1/machines?page=x").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("page"),
    )
    .await;
    expect_error(
        s.get("/api/v1/machines?sort=colour").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("sort"),
    )
    .await;
    expect_error(
        s.get("/api/v1/events/log?limit=100000").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("limit"),
    )
    .await;
}

#[tokio::test]
async fn illegal_transitions_are_409_and_change_nothing() {
    let s = TestServer::start().await;
    let r = s.register(report(1)).await;
    let id = r["machine_id"].as_str().unwrap();
    let token = r["token"].as_str().unwrap();
    s.post(
        &format!("/api/v1/machines/{id}/assign"),
        json!({"os": "debian-12"}),
    )
    .await;
    s.heartbeat(token, json!({"phase": "installing"})).await;
    s.heartbeat(token, json!({"phase": "installed"})).await;
    let e = expect_error(
        s.post(
            &format!("/api/v1/machines/{id}/assign"),
            json!({"os": "debian-13"}),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("use reimage"));
    expect_error(
        s.post(&format!("/api/v1/machines/{id}/cancel"), json!({}))
            .await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;
    let m = expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["state"], "installed");
    assert_eq!(m["os"], "debian-12");
}

#[tokio::test]
async fn heartbeat_values_are_bounded() {
    let s = TestServer::start().await;
    let token = s.register(report(1)).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    expect_error(
        s.heartbeat(&token, json!({"phase": "installing", "progress": 101}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("progress"),
    )
    .await;
    expect_error(
        s.heartbeat(&token, json!({"phase": "sleeping"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("phase"),
    )
    .await;
    expect_error(
        s.heartbeat(
            &token,
            json!({"phase": "waiting", "message": "m".repeat(2000)}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("message"),
    )
    .await;
}

#[tokio::test]
async fn every_string_of_a_report_has_a_length_limit() {
    let s = TestServer::start().await;
    let long = "x".repeat(257);
    // (JSON pointer into the report, the field the error must name)
    let cases = [
        ("/arch", "report.arch"),
        ("/smbios/system/vendor", "report.smbios.system.vendor"),
        ("/smbios/memory/0/kind", "report.smbios.memory[0].kind"),
        ("/cpu/model", "report.cpu.model"),
        ("/nics/0/driver", "report.nics[0].driver"),
        ("/nics/0/addresses/0", "report.nics[0].addresses[0]"),
        ("/disks/0/model", "report.disks[0].model"),
        ("/pci/0/driver", "report.pci[0].driver"),
        ("/pci/0/class", "report.pci[0].class"),
    ];
    for (pointer, field) in cases {
        let mut r = report(1);
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match r.pointer_mut(parent).unwrap() {
            Value::Array(items) => items[key.parse::<usize>().unwrap()] = json!(long),
            object => object[key] = json!(long),
        }
        let resp = s
            .post(
                "/api/v1/agent/register",
                json!({"agent_version": "t", "report": r}),
            )
            .await;
        let body = expect_error(
            resp,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some(field),
        )
        .await;
        assert!(body["message"].as_str().unwrap().contains("256"), "{body}");
    }
    // Nothing was stored on the way.
    let page = expect_json(s.get("/api/v1/machines").await, StatusCode::OK).await;
    assert_eq!(page["total"], 0);
}
