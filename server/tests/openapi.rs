//! The OpenAPI document is generated from the code; the checked-in copy must match it.
//! Refresh it with `cargo run -p dragonfly -- openapi > openapi.json`, or run this test
//! with UPDATE_OPENAPI=1.

use reqwest::StatusCode;

use crate::support::TestServer;

fn checked_in_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.json")
}

#[test]
fn the_checked_in_openapi_document_is_current() {
    let generated = dragonfly::api::openapi_json();
    let path = checked_in_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, format!("{generated}\n")).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk.trim_end() == generated.trim_end(),
        "openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p dragonfly --test tests openapi`"
    );
}

#[tokio::test]
async fn the_server_serves_the_same_document() {
    let s = TestServer::start().await;
    let resp = s.get("/api/openapi.json").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let served: serde_json::Value = resp.json().await.unwrap();
    let generated: serde_json::Value =
        serde_json::from_str(&dragonfly::api::openapi_json()).unwrap();
    assert_eq!(served, generated);
    assert_eq!(
        served["openapi"].as_str().unwrap().chars().next(),
        Some('3')
    );
    for path in [
        "/api/v1/agent/register",
        "/api/v1/agent/heartbeat",
        "/api/v1/machines",
        "/api/v1/machines/{id}/assign",
        "/api/v1/os",
        "/api/v1/events",
        "/healthz",
        "/metrics",
    ] {
        assert!(served["paths"][path].is_object(), "{path} missing");
    }
}
