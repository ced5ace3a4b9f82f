use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, expect_json, report};

/// Reads SSE frames until one of event type `machine` satisfies `want`.
async fn next_matching(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    want: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut event = "";
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = if e.trim() == "machine" {
                        "machine"
                    } else {
                        "other"
                    };
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if event == "machine" {
                let v: Value = serde_json::from_str(&data).unwrap();
                if want(&v) {
                    return v;
                }
            }
        }
        let chunk = stream.next().await.expect("stream ended").unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_stream_carries_registrations_and_state_changes() {
    let s = TestServer::start().await;
    let resp = s.get("/api/v1/events").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();

    let r = s.register(report(1)).await;
    let id = r["machine_id"].as_str().unwrap().to_string();
    let reg = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        next_matching(&mut stream, &mut buf, |v| {
            v["event"]["kind"] == "registered"
        }),
    )
    .await
    .unwrap();
    assert_eq!(reg["machine"]["id"], id.as_str());
    assert_eq!(reg["machine"]["state"], "discovered");

    s.post(
        &format!("/api/v1/machines/{id}/assign"),
        json!({"os": "debian-12"}),
    )
    .await;
    let assigned = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        next_matching(&mut stream, &mut buf, |v| {
            v["event"]["kind"] == "os_assigned"
        }),
    )
    .await
    .unwrap();
    assert_eq!(assigned["machine"]["state"], "assigned");
    assert_eq!(assigned["event"]["from_state"], "discovered");

    s.delete(&format!("/api/v1/machines/{id}")).await;
    let deleted = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        next_matching(&mut stream, &mut buf, |v| v["event"]["kind"] == "deleted"),
    )
    .await
    .unwrap();
    assert_eq!(deleted["machine"], Value::Null);
}

#[tokio::test]
async fn the_stream_can_follow_one_machine() {
    let s = TestServer::start().await;
    let a = s.register(report(1)).await["machine_id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = s.get(&format!("/api/v1/events?machine={a}")).await;
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    s.register(report(2)).await;
    s.patch(
        &format!("/api/v1/machines/{a}"),
        json!({"hostname": "only-a"}),
    )
    .await;
    let v = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        next_matching(&mut stream, &mut buf, |_| true),
    )
    .await
    .unwrap();
    // The first message seen is A's update, not B's registration.
    assert_eq!(v["machine"]["id"], a.as_str());
    assert_eq!(v["event"]["kind"], "updated");
}

#[tokio::test]
async fn the_log_pages_backwards_newest_first() {
    let s = TestServer::start().await;
    for i in 0..5 {
        s.register(report(i)).await;
    }
    let first = expect_json(s.get("/api/v1/events/log?limit=3").await, StatusCode::OK).await;
    let first = first.as_array().unwrap();
    assert_eq!(first.len(), 3);
    assert!(first[0]["id"].as_i64() > first[1]["id"].as_i64());
    let before = first[2]["id"].as_i64().unwrap();
    let rest = expect_json(
        s.get(&format!("/api/v1/events/log?before={before}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rest.as_array().unwrap().len(), 2);
    assert!(rest[0]["id"].as_i64().unwrap() < before);
}

#[tokio::test]
async fn the_dashboard_names_machines_in_recent_events_by_hostname_or_boot_mac() {
    let s = TestServer::start().await;
    // Registered in the same instant: their time-ordered ids share their first digits.
    let a = s.register(report(41)).await["machine_id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = s.register(report(42)).await["machine_id"]
        .as_str()
        .unwrap()
        .to_string();
    expect_json(
        s.patch(
            &format!("/api/v1/machines/{a}"),
            json!({"hostname": "web-01"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let html = s.get("/").await.text().await.unwrap();
    let events = &html[html.find("Recent events").expect("no recent events")..];
    assert!(events.contains(">web-01<"), "{events}");
    assert!(events.contains(">52:54:00:00:00:2a<"), "{events}");
    for id in [&a, &b] {
        assert!(!events.contains(&format!(">{}<", &id[..8])), "{events}");
    }
}
