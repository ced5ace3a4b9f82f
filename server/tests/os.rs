use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestServer, expect_error, expect_json, report};

#[tokio::test]
async fn the_catalogue_has_the_built_in_entries() {
    let s = TestServer::start().await;
    let list = expect_json(s.get("/api/v1/os").await, StatusCode::OK).await;
    let slugs: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["slug"].as_str().unwrap())
        .collect();
    assert_eq!(
        slugs,
        ["debian-12", "debian-13", "ubuntu-22.04", "ubuntu-24.04"]
    );
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|o| o["builtin"] == true)
    );
}

#[tokio::test]
async fn entries_can_be_created_updated_and_deleted() {
    let s = TestServer::start().await;
    let body = json!({"slug": "rocky-9", "name": "Rocky Linux 9", "family": "Rocky", "version": "9", "image_url": "http://mirror.lab/rocky-9.raw.gz"});
    let created = expect_json(
        s.post("/api/v1/os", body.clone()).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["family"], "rocky");
    assert_eq!(created["builtin"], false);
    expect_error(
        s.post("/api/v1/os", body).await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;

    let updated = expect_json(
        s.put("/api/v1/os/rocky-9", json!({"name": "Rocky Linux 9.4", "family": "rocky", "version": "9.4", "image_url": "http://mirror.lab/rocky-9.4.raw.gz"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(updated["version"], "9.4");
    assert_eq!(
        expect_json(s.get("/api/v1/os/rocky-9").await, StatusCode::OK).await["name"],
        "Rocky Linux 9.4"
    );

    assert_eq!(
        s.delete("/api/v1/os/rocky-9").await.status(),
        StatusCode::NO_CONTENT
    );
    expect_error(
        s.get("/api/v1/os/rocky-9").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
}

#[tokio::test]
async fn built_in_and_assigned_entries_cannot_be_deleted() {
    let s = TestServer::start().await;
    expect_error(
        s.delete("/api/v1/os/debian-12").await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;
    // A local mirror for a built-in entry is an edit, not a delete.
    let m = expect_json(
        s.put("/api/v1/os/debian-12", json!({"name": "Debian 12", "family": "debian", "version": "12", "image_url": "http://mirror.lab/debian-12.raw"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["builtin"], true);

    s.post("/api/v1/os", json!({"slug": "custom", "name": "C", "family": "c", "version": "1", "image_url": "https://x.lab/c.img"})).await;
    let id = s.register(report(1)).await["machine_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.post(
        &format!("/api/v1/machines/{id}/assign"),
        json!({"os": "custom"}),
    )
    .await;
    let e = expect_error(
        s.delete("/api/v1/os/custom").await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("1 machine"));
}

#[tokio::test]
async fn invalid_entries_name_the_field() {
    let s = TestServer::start().await;
    let base = json!({"slug": "ok-1", "name": "N", "family": "f", "version": "1", "image_url": "http://a.lab/x"});
    for (field, value) in [
        ("slug", json!("Bad Slug")),
        ("name", json!("")),
        ("image_url", json!("file:///etc/passwd")),
        ("arch", json!("sparc")),
    ] {
        let mut b = base.clone();
        b[field] = value;
        expect_error(
            s.post("/api/v1/os", b).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some(field),
        )
        .await;
    }
    let mut b = base.clone();
    b.as_object_mut().unwrap().remove("image_url");
    expect_error(
        s.post("/api/v1/os", b).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("image_url"),
    )
    .await;
}
