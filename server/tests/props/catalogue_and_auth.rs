//! The OS catalogue, API tokens and login.

use super::*;

fn os_body(with_slug: bool) -> BoxedStrategy<Value> {
    let pad = || prop::sample::select(&["", " ", "  \t"][..]);
    let name = (pad(), "[A-Za-z0-9][A-Za-z0-9 ().-]{0,40}", pad())
        .prop_map(|(a, n, b)| format!("{a}{n}{b}"));
    let slug = if with_slug {
        "[a-z0-9][a-z0-9.-]{1,30}".prop_map(Some).boxed()
    } else {
        Just(None).boxed()
    };
    (
        slug,
        name,
        "[a-zA-Z]{1,16}",
        "[0-9][0-9.]{0,8}",
        opt(prop::sample::select(&["x86_64", "aarch64"][..])),
        "https?://[a-z]{1,12}\\.example/[a-z0-9/]{0,20}",
    )
        .prop_map(|(slug, name, family, version, arch, url)| {
            object(vec![
                ("slug", slug.map(Value::from)),
                ("name", Some(json!(name))),
                ("family", Some(json!(family))),
                ("version", Some(json!(version))),
                ("arch", arch.map(Value::from)),
                ("image_url", Some(json!(url))),
            ])
        })
        .boxed()
}

/// Valid bodies tagged `true`; hostile ones (which may still happen to be valid) `false`.
fn tagged(valid: BoxedStrategy<Value>) -> BoxedStrategy<(Value, bool)> {
    prop_oneof![
        valid.clone().prop_map(|v| (v, true)),
        bodies(valid).prop_map(|v| (v, false)),
    ]
    .boxed()
}

/// An accepted catalogue entry reads back as sent, trimmed (and the family lower-cased).
async fn check_os_reads_back(s: &TestServer, slug: &str, body: &Value) -> Outcome {
    let input: OsInput = serde_json::from_value(body.clone()).map_err(|e| fail(e.to_string()))?;
    let got = get_json(s, &format!("/api/v1/os/{}", urlencode(slug))).await?;
    prop_assert_eq!(&got["name"], input.name.trim());
    prop_assert_eq!(
        &got["family"],
        &json!(input.family.trim().to_ascii_lowercase())
    );
    prop_assert_eq!(&got["version"], input.version.trim());
    prop_assert_eq!(&got["arch"], &json!(input.arch));
    prop_assert_eq!(&got["image_url"], input.image_url.trim());
    Ok(())
}

#[test]
fn catalogue_entries_are_validated_and_read_back() {
    let (rt, server) = server();
    let s = &server;
    let taken = RefCell::new(
        BUILTIN_OS
            .iter()
            .map(|s| s.to_string())
            .collect::<HashSet<_>>(),
    );
    check(128, tagged(os_body(true)), |(body, valid)| {
        rt.block_on(async {
            let slug = body["slug"].as_str().map(str::to_string);
            let exists = slug.as_ref().is_some_and(|sl| taken.borrow().contains(sl));
            let url = format!("{}/api/v1/os", s.url);
            let a = send_json(&s.client, Method::POST, url, &body).await?;
            if valid {
                let want = if exists {
                    StatusCode::CONFLICT
                } else {
                    StatusCode::CREATED
                };
                prop_assert_eq!(a.status, want, "{}", clip(&a.text));
            }
            if a.status == StatusCode::CREATED {
                let slug = slug.unwrap_or_default();
                taken.borrow_mut().insert(slug.clone());
                check_os_reads_back(s, &slug, &body).await?;
            }
            Ok(())
        })
    });
}

#[test]
fn catalogue_updates_are_validated_and_read_back() {
    let (rt, server) = server();
    let s = &server;
    let target = prop::sample::select(&["debian-12", "ubuntu-24.04"][..]);
    check(
        96,
        (target, tagged(os_body(false))),
        |(slug, (body, valid))| {
            rt.block_on(async {
                let url = format!("{}/api/v1/os/{slug}", s.url);
                let a = send_json(&s.client, Method::PUT, url, &body).await?;
                if valid {
                    prop_assert_eq!(a.status, StatusCode::OK, "{}", clip(&a.text));
                }
                if a.status == StatusCode::OK {
                    check_os_reads_back(s, slug, &body).await?;
                }
                Ok(())
            })
        },
    );
}

#[test]
fn api_tokens_are_created_for_valid_names_and_work() {
    let (rt, server) = server();
    let s = &server;
    let name = short_text().prop_filter("1–64 bytes once trimmed", |n| {
        !n.trim().is_empty() && n.trim().len() <= 64
    });
    let scope = prop::sample::select(&["read", "admin"][..]);
    let valid = (name, scope)
        .prop_map(|(n, sc)| json!({"name": n, "scope": sc}))
        .boxed();
    check(96, tagged(valid), |(body, valid)| {
        rt.block_on(async {
            let url = format!("{}/api/v1/tokens", s.url);
            let a = send_json(&s.client, Method::POST, url, &body).await?;
            if valid {
                prop_assert_eq!(a.status, StatusCode::CREATED, "{}", clip(&a.text));
            }
            if a.status == StatusCode::CREATED {
                let name = body["name"].as_str().unwrap_or_default().trim();
                prop_assert_eq!(&a.body["name"], name);
                prop_assert_eq!(&a.body["scope"], &body["scope"]);
                let secret = a.body["secret"].as_str().unwrap_or_default();
                let me = s
                    .anon
                    .get(format!("{}/api/v1/auth/me", s.url))
                    .bearer_auth(secret);
                let me = answer(me).await?;
                prop_assert_eq!(me.status, StatusCode::OK);
                prop_assert_eq!(&me.body["username"], name);
            }
            Ok(())
        })
    });
}

#[test]
fn logins_with_anything_but_the_password_are_refused_in_the_error_shape() {
    let (rt, server) = server();
    let s = &server;
    let password = rt
        .block_on(s.state.auth.ensure_admin())
        .unwrap()
        .expect("a fresh database has no operator yet");
    rt.block_on(async {
        let body = json!({"username": "admin", "password": password});
        let url = format!("{}/api/v1/auth/login", s.url);
        let a = send_json(&s.anon, Method::POST, url, &body).await.unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert!(a.body["csrf_token"].is_string());
    });
    // The limit is per client address: spread the attempts over loopback addresses so that
    // most of them reach the password check rather than the limiter.
    let attempt = std::cell::Cell::new(0u8);
    let valid = (short_text(), text())
        .prop_map(|(u, p)| json!({"username": u, "password": p}))
        .boxed();
    check(48, bodies(valid), |body| {
        rt.block_on(async {
            attempt.set(attempt.get().wrapping_add(1));
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 1, attempt.get()));
            let client = Client::builder()
                .local_address(from)
                .build()
                .map_err(|e| fail(e.to_string()))?;
            let url = format!("{}/api/v1/auth/login", s.url);
            let a = send_json(&client, Method::POST, url, &body).await?;
            prop_assert!(
                matches!(a.status.as_u16(), 400 | 401 | 413 | 422 | 429),
                "{}: {}",
                a.status,
                clip(&a.text)
            );
            Ok(())
        })
    });
}
