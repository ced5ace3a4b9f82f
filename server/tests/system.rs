use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestServer, expect_json, report};

#[tokio::test]
async fn healthz_reports_ok_and_the_base_url() {
    let s = TestServer::start().await;
    let h = expect_json(s.get("/healthz").await, StatusCode::OK).await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["base_url"], s.url.as_str());
}

#[tokio::test]
async fn metrics_count_machines_registrations_and_latency() {
    let s = TestServer::start().await;
    let a = s.register(report(1)).await["machine_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.register(report(2)).await;
    s.post(
        &format!("/api/v1/machines/{a}/assign"),
        json!({"os": "debian-12"}),
    )
    .await;
    let resp = s.get("/metrics").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("dragonfly_machines{state=\"assigned\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("dragonfly_machines{state=\"discovered\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("dragonfly_agent_registrations_total 2"),
        "{text}"
    );
    assert!(
        text.contains("dragonfly_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/agent/register\",status=\"200\"} 2"),
        "{text}"
    );
}
