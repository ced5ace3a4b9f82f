use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestServer, eventually, expect_error, expect_json, report};

/// Every (method, path) of the API as the OpenAPI document lists it.
fn api_routes() -> Vec<(Method, String)> {
    let doc: Value = serde_json::from_str(&dragonfly::api::openapi_json()).unwrap();
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            out.push((method.to_uppercase().parse().unwrap(), path.clone()));
        }
    }
    assert!(out.len() > 20, "the route table looks too small: {out:?}");
    out
}

#[tokio::test]
async fn every_non_public_route_refuses_an_anonymous_request() {
    let s = TestServer::start().await;
    let id = s.register(report(1)).await["machine_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut routes = api_routes();
    // Routes served outside the OpenAPI document.
    routes.push((Method::GET, "/api/openapi.json".into()));
    let mut checked = 0;
    for (method, template) in routes {
        let path = template.replace("{id}", &id).replace("{slug}", "debian-12");
        let resp = s
            .anon
            .request(method.clone(), format!("{}{path}", s.url))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let public = dragonfly::api::PUBLIC_PATHS.contains(&template.as_str());
        if public && template != "/api/v1/agent/heartbeat" {
            assert_ne!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} is public"
            );
        } else {
            expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized", None).await;
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} routes checked");
    // Nothing changed anonymously.
    let m = expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["state"], "discovered");
}

#[tokio::test]
async fn an_agent_token_opens_no_operator_route() {
    let s = TestServer::start().await;
    let a = s.register(report(1)).await;
    let b = s.register(report(2)).await;
    let token_a = a["token"].as_str().unwrap();
    for path in [
        format!("/api/v1/machines/{}", b["machine_id"].as_str().unwrap()),
        format!("/api/v1/machines/{}", a["machine_id"].as_str().unwrap()),
        "/api/v1/machines".to_string(),
    ] {
        let resp = s
            .anon
            .get(format!("{}{path}", s.url))
            .bearer_auth(token_a)
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized", None).await;
    }
    let resp = s
        .anon
        .post(format!(
            "{}/api/v1/machines/{}/assign",
            s.url,
            b["machine_id"].as_str().unwrap()
        ))
        .bearer_auth(token_a)
        .json(&json!({"os": "debian-12"}))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized", None).await;
}

#[tokio::test]
async fn read_only_tokens_read_and_admin_tokens_manage_tokens() {
    let s = TestServer::start().await;
    let created = expect_json(
        s.post(
            "/api/v1/tokens",
            json!({"name": "grafana", "scope": "read"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("dfo_"));
    let list = expect_json(s.get("/api/v1/tokens").await, StatusCode::OK).await;
    assert!(
        !list.to_string().contains(&secret),
        "a listing never shows secrets"
    );
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "grafana" && t["scope"] == "read")
    );

    let read = |m: Method, p: &str| {
        s.anon
            .request(m, format!("{}{p}", s.url))
            .bearer_auth(&secret)
    };
    assert_eq!(
        read(Method::GET, "/api/v1/machines")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        read(Method::GET, "/metrics").send().await.unwrap().status(),
        StatusCode::OK
    );
    let resp = read(Method::POST, "/api/v1/os")
        .json(&json!({"slug": "x-1", "name": "X", "family": "x", "version": "1", "image_url": "http://a.lab/x"}))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::FORBIDDEN, "forbidden", None).await;
    expect_error(
        read(Method::GET, "/api/v1/tokens").send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    )
    .await;

    let id = created["id"].as_str().unwrap();
    assert_eq!(
        s.delete(&format!("/api/v1/tokens/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_error(
        read(Method::GET, "/api/v1/machines").send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        None,
    )
    .await;
    expect_error(
        s.delete(&format!("/api/v1/tokens/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    expect_error(
        s.post("/api/v1/tokens", json!({"name": "", "scope": "admin"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("name"),
    )
    .await;
    expect_error(
        s.post("/api/v1/tokens", json!({"name": "x", "scope": "root"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("scope"),
    )
    .await;
}

/// Logs in as admin with a known password; returns a cookie-keeping client and the CSRF token.
async fn session(s: &TestServer) -> (reqwest::Client, String) {
    s.state
        .auth
        .set_password("admin", "operator passphrase")
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let me = expect_json(
        client
            .post(format!("{}/api/v1/auth/login", s.url))
            .json(&json!({"username": "admin", "password": "operator passphrase"}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    (client, me["csrf_token"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn sessions_need_csrf_tokens_to_change_anything_and_end_at_logout() {
    let s = TestServer::start().await;
    let id = s.register(report(1)).await["machine_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (client, csrf) = session(&s).await;
    let url = format!("{}/api/v1/machines/{id}", s.url);
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    let resp = client
        .patch(&url)
        .json(&json!({"hostname": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::FORBIDDEN, "forbidden", None).await;
    let resp = client
        .patch(&url)
        .header("x-csrf-token", "wrong")
        .json(&json!({"hostname": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::FORBIDDEN, "forbidden", None).await;
    let resp = client
        .patch(&url)
        .header("x-csrf-token", &csrf)
        .json(&json!({"hostname": "web-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(resp, StatusCode::OK).await["hostname"], "web-1");

    let resp = client
        .post(format!("{}/api/v1/auth/logout", s.url))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    expect_error(
        client.get(&url).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        None,
    )
    .await;
}

#[tokio::test]
async fn idle_and_old_sessions_expire() {
    let s = TestServer::start_with_manual_clock().await;
    let clock = s.clock.clone().unwrap();
    let (client, _) = session(&s).await;
    let me = format!("{}/api/v1/auth/me", s.url);
    assert_eq!(
        client.get(&me).send().await.unwrap().status(),
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(2 * 3600 + 60));
    assert_eq!(
        client.get(&me).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // Active all along, a session still ends 12 h after login.
    let (client, _) = session(&s).await;
    for _ in 0..13 {
        clock.advance(Duration::from_secs(3600 - 60));
        if client.get(&me).send().await.unwrap().status() == StatusCode::UNAUTHORIZED {
            return;
        }
    }
    panic!("an active session outlived the absolute limit");
}

#[tokio::test]
async fn login_is_rate_limited_per_account() {
    let s = TestServer::start().await;
    s.state
        .auth
        .set_password("admin", "operator passphrase")
        .await
        .unwrap();
    let attempt = |password: &'static str| {
        s.anon
            .post(format!("{}/api/v1/auth/login", s.url))
            .json(&json!({"username": "admin", "password": password}))
            .send()
    };
    for _ in 0..5 {
        expect_error(
            attempt("wrong guess").await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
        )
        .await;
    }
    let resp = attempt("operator passphrase").await.unwrap();
    assert_eq!(resp.headers()["retry-after"], "60");
    expect_error(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None).await;
}

#[tokio::test]
async fn failed_logins_from_elsewhere_do_not_lock_the_operator_out() {
    let s = TestServer::start().await;
    s.state
        .auth
        .set_password("admin", "operator passphrase")
        .await
        .unwrap();
    // The attacker guesses from another address (loopback has many).
    let attacker = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    for _ in 0..8 {
        let resp = attacker
            .post(format!("{}/api/v1/auth/login", s.url))
            .json(&json!({"username": "admin", "password": "wrong guess"}))
            .send()
            .await
            .unwrap();
        assert!(matches!(resp.status().as_u16(), 401 | 429));
    }
    let resp = s
        .anon
        .post(format!("{}/api/v1/auth/login", s.url))
        .json(&json!({"username": "admin", "password": "operator passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_enrollment_secret_keeps_unknown_agents_out() {
    let secret = "lab-enrollment-0123456789";
    let s = TestServer::start_custom(None, |c| c.enrollment_secret = Some(secret.into())).await;
    let body = json!({"agent_version": "t", "report": report(1)});
    let resp = s.post("/api/v1/agent/register", body.clone()).await;
    expect_error(resp, StatusCode::FORBIDDEN, "forbidden", None).await;
    let resp = s
        .client
        .post(format!("{}/api/v1/agent/register", s.url))
        .header("x-dragonfly-enrollment", "wrong-secret-000000")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::FORBIDDEN, "forbidden", None).await;
    let page = expect_json(s.get("/api/v1/machines").await, StatusCode::OK).await;
    assert_eq!(page["total"], 0);
    let resp = s
        .client
        .post(format!("{}/api/v1/agent/register", s.url))
        .header("x-dragonfly-enrollment", secret)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;
    // The netboot image is told the secret on its kernel command line.
    let dir = s.dir.path().join("netboot");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vmlinuz"), b"k").unwrap();
    std::fs::write(dir.join("initramfs.zst"), b"i").unwrap();
    // The boot directory is looked at again after a second or two, not on every request.
    let script = eventually("the netboot script", || async {
        let script = s
            .get("/boot/52-54-00-00-99-99.ipxe")
            .await
            .text()
            .await
            .unwrap();
        script.contains("kernel ").then_some(script)
    })
    .await;
    assert!(
        script.contains(&format!("dragonfly.secret={secret}")),
        "{script}"
    );
}

#[tokio::test]
async fn responses_carry_the_security_headers() {
    let s = TestServer::start().await;
    for path in ["/healthz", "/api/v1/machines", "/boot/boot.ipxe", "/nope"] {
        let resp = s.get(path).await;
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
}

#[tokio::test]
async fn bearer_is_case_insensitive_and_operator_answers_are_not_cached() {
    let s = TestServer::start().await;
    let (_, token) = s
        .state
        .auth
        .create_token("t", dragonfly::auth::Scope::Read, "tests")
        .await
        .unwrap();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = s
            .anon
            .get(format!("{}/api/v1/machines", s.url))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{scheme}");
        assert_eq!(resp.headers()["cache-control"], "no-store");
    }
    let page = s.get("/machines").await;
    assert_eq!(page.headers()["cache-control"], "no-store");
    // Plain HTTP: no HSTS (it is sent over TLS only; see cli::tls_serves_https...).
    assert!(page.headers().get("strict-transport-security").is_none());
}
