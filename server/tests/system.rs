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

#[tokio::test]
async fn metrics_labels_come_from_a_fixed_set() {
    let s = TestServer::start().await;
    // Methods are client text, read before any authentication.
    for i in 0..20 {
        let method =
            reqwest::Method::from_bytes(format!("X{i}{}", "Y".repeat(4000)).as_bytes()).unwrap();
        let _ = s
            .anon
            .request(method, format!("{}/healthz", s.url))
            .send()
            .await;
    }
    let text = s.get("/metrics").await.text().await.unwrap();
    assert!(!text.contains("YYYY"), "a client's method became a label");
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
}
