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

/// A mirror on loopback publishing checksum lists; `sums` is what `/SUMS` answers and can
/// change under the test, as a republished list does.
pub(crate) struct Mirror {
    pub url: String,
    pub sums: std::sync::Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Mirror {
    pub async fn start(sums: String) -> Mirror {
        use axum::routing::get;
        let shared = std::sync::Arc::new(std::sync::Mutex::new(sums));
        let state = shared.clone();
        let app = axum::Router::new()
            .route(
                "/SUMS",
                get(move || {
                    let s = state.clone();
                    async move { s.lock().unwrap().clone() }
                }),
            )
            .route(
                "/moved",
                get(|| async { axum::response::Redirect::temporary("/SUMS") }),
            )
            .route("/huge", get(|| async { "0".repeat(2 << 20) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Mirror {
            url,
            sums: shared,
            task,
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn add_listed(s: &TestServer, slug: &str, checksum_url: &str) {
    let r = s
        .post(
            "/api/v1/os",
            json!({"slug": slug, "name": slug, "family": "debian", "version": "13",
                   "image_url": "http://mirror.lab/images/debian-13-generic-amd64.qcow2",
                   "format": "qcow2", "checksum_url": checksum_url}),
        )
        .await;
    expect_json(r, StatusCode::CREATED).await;
}

#[tokio::test]
async fn a_checksum_is_refreshed_from_the_published_list() {
    let s = TestServer::start().await;
    let old = "a".repeat(128);
    let mirror = Mirror::start(format!(
        "{}  debian-13-generic-amd64.raw\n{old}  debian-13-generic-amd64.qcow2\n",
        "f".repeat(128)
    ))
    .await;
    add_listed(&s, "mirror-13", &format!("{}/SUMS", mirror.url)).await;
    let before = expect_json(s.get("/api/v1/os/mirror-13").await, StatusCode::OK).await;
    assert!(before["sha512"].is_null() && before["checksum_checked_at"].is_null());

    let r = expect_json(
        s.post("/api/v1/os/mirror-13/refresh", json!({})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(r["changed"], true, "{r}");
    assert_eq!(r["algorithm"], "SHA-512");
    assert_eq!(r["os"]["sha512"], old.as_str());
    assert!(r["os"]["checksum_checked_at"].is_string());
    // Unchanged list, unchanged checksum.
    let r = expect_json(
        s.post("/api/v1/os/mirror-13/refresh", json!({})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(r["changed"], false, "{r}");
    // The image is republished: a SHA256SUMS now, in binary-mode lines. The list is the
    // truth: the old SHA-512 goes.
    let new = "b".repeat(64);
    *mirror.sums.lock().unwrap() = format!("{new} *debian-13-generic-amd64.qcow2\n");
    let r = expect_json(
        s.post("/api/v1/os/mirror-13/refresh", json!({})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(r["changed"], true);
    assert_eq!(r["os"]["sha256"], new.as_str());
    assert!(r["os"]["sha512"].is_null(), "{r}");
    // A redirect is followed.
    add_listed(&s, "moved-13", &format!("{}/moved", mirror.url)).await;
    let r = expect_json(
        s.post("/api/v1/os/moved-13/refresh", json!({})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(r["os"]["sha256"], new.as_str());
}

#[tokio::test]
async fn a_refresh_that_cannot_succeed_says_why_and_changes_nothing() {
    let s = TestServer::start().await;
    let mirror = Mirror::start(format!("{}  other.qcow2\n", "c".repeat(64))).await;
    // Not listed.
    add_listed(&s, "unlisted", &format!("{}/SUMS", mirror.url)).await;
    let e = expect_error(
        s.post("/api/v1/os/unlisted/refresh", json!({})).await,
        StatusCode::BAD_GATEWAY,
        "upstream",
        None,
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("lists no checksum for debian-13-generic-amd64.qcow2"),
        "{e}"
    );
    // Larger than any checksum list.
    add_listed(&s, "huge", &format!("{}/huge", mirror.url)).await;
    let e = expect_error(
        s.post("/api/v1/os/huge/refresh", json!({})).await,
        StatusCode::BAD_GATEWAY,
        "upstream",
        None,
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("at most"), "{e}");
    // A 404 from the mirror.
    add_listed(&s, "gone", &format!("{}/nothing-here", mirror.url)).await;
    let e = expect_error(
        s.post("/api/v1/os/gone/refresh", json!({})).await,
        StatusCode::BAD_GATEWAY,
        "upstream",
        None,
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("404"), "{e}");
    for slug in ["unlisted", "huge", "gone"] {
        let os = expect_json(s.get(&format!("/api/v1/os/{slug}")).await, StatusCode::OK).await;
        assert!(os["sha256"].is_null() && os["sha512"].is_null(), "{os}");
        assert!(os["checksum_checked_at"].is_null(), "{os}");
    }
    // No list to read.
    let r = s
        .post(
            "/api/v1/os",
            json!({"slug": "no-list", "name": "n", "family": "x", "version": "1",
                   "image_url": "http://mirror.lab/x.raw"}),
        )
        .await;
    expect_json(r, StatusCode::CREATED).await;
    expect_error(
        s.post("/api/v1/os/no-list/refresh", json!({})).await,
        StatusCode::CONFLICT,
        "unknown_reference",
        Some("checksum_url"),
    )
    .await;
    expect_error(
        s.post("/api/v1/os/nope/refresh", json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    // Bad values are refused with the field named.
    for (field, value) in [
        ("checksum_url", json!("ftp://mirror.lab/SUMS")),
        ("sha512", json!("abc")),
    ] {
        let mut body = json!({"slug": "bad", "name": "b", "family": "x", "version": "1",
                              "image_url": "http://mirror.lab/x.raw"});
        body[field] = value;
        expect_error(
            s.post("/api/v1/os", body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some(field),
        )
        .await;
    }
}

#[tokio::test]
async fn the_built_in_debian_entries_are_qcow2_with_their_sha512sums() {
    let s = TestServer::start().await;
    let os = expect_json(s.get("/api/v1/os/debian-12").await, StatusCode::OK).await;
    assert_eq!(os["format"], "qcow2");
    assert!(
        os["image_url"]
            .as_str()
            .unwrap()
            .ends_with("/bookworm/latest/debian-12-generic-amd64.qcow2")
    );
    assert!(
        os["checksum_url"]
            .as_str()
            .unwrap()
            .ends_with("/bookworm/latest/SHA512SUMS")
    );
    let os = expect_json(s.get("/api/v1/os/ubuntu-24.04").await, StatusCode::OK).await;
    assert!(
        os["checksum_url"]
            .as_str()
            .unwrap()
            .ends_with("/noble/current/SHA256SUMS")
    );
}
