//! Any bytes to every JSON endpoint, any list query, any boot script path.

use super::*;

#[test]
fn any_bytes_to_any_json_endpoint_get_a_4xx_in_the_error_shape() {
    let (rt, server) = server();
    let s = &server;
    let (id, token) = rt.block_on(machine(s));
    let endpoints: Vec<(Method, String)> = vec![
        (Method::POST, "/api/v1/agent/register".into()),
        (Method::POST, "/api/v1/agent/heartbeat".into()),
        (Method::PATCH, format!("/api/v1/machines/{id}")),
        (Method::POST, format!("/api/v1/machines/{id}/assign")),
        (Method::POST, format!("/api/v1/machines/{id}/reimage")),
        (Method::POST, format!("/api/v1/machines/{id}/instructions")),
        (Method::POST, "/api/v1/os".into()),
        (Method::PUT, "/api/v1/os/debian-13".into()),
        (Method::POST, "/api/v1/tokens".into()),
        (Method::POST, "/api/v1/auth/login".into()),
    ];
    let raw = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        ".{0,64}".prop_map(String::into_bytes),
        json_value().prop_map(|v| bytes_of(&v)),
        (json_value(), any::<Index>()).prop_map(|(v, i)| {
            let b = bytes_of(&v);
            b[..i.index(b.len() + 1)].to_vec()
        }),
        (1usize..400).prop_map(|d| "[".repeat(d).into_bytes()),
    ];
    let content_type = prop::sample::select(
        &[
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("application/merge-patch+json"),
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ][..],
    );
    let strategy = (prop::sample::select(endpoints), raw, content_type);
    check(256, strategy, |((method, path), body, ct)| {
        rt.block_on(async {
            let client = if path.contains("/agent/") {
                &s.anon
            } else {
                &s.client
            };
            let mut req = client
                .request(method, format!("{}{path}", s.url))
                .body(body);
            if path.ends_with("/heartbeat") {
                req = req.bearer_auth(&token);
            }
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            let a = answer(req).await?;
            let json_ct =
                ct.is_some_and(|c| c.starts_with("application/json") || c.ends_with("+json"));
            if !json_ct {
                prop_assert_eq!(
                    a.status,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "{}",
                    clip(&a.text)
                );
            }
            Ok(())
        })
    });
}

#[test]
fn machine_list_queries_never_fail_on_the_server() {
    let (rt, server) = server();
    let s = &server;
    rt.block_on(machine(s));
    let key = prop::sample::select(
        &[
            "state", "tag", "q", "sort", "order", "page", "per_page", "bogus",
        ][..],
    );
    let value = prop_oneof![
        short_text(),
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(
            &[
                "offline",
                "discovered,failed",
                "desc",
                "mac",
                "0",
                "500",
                "501"
            ][..]
        )
        .prop_map(str::to_string),
    ];
    check(128, prop::collection::vec((key, value), 0..5), |params| {
        rt.block_on(async {
            let req = s
                .client
                .get(format!("{}/api/v1/machines", s.url))
                .query(&params);
            let a = answer(req).await?;
            prop_assert!(
                matches!(a.status.as_u16(), 200 | 400 | 422),
                "{}",
                clip(&a.text)
            );
            Ok(())
        })
    });
}

#[test]
fn boot_script_paths_take_any_mac_spelling_and_refuse_the_rest() {
    let (rt, server) = server();
    let s = &server;
    let file = prop_oneof![
        3 => (any::<[u8; 6]>(), mac_style(), any::<bool>())
            .prop_map(|(o, st, up)| format!("{}.ipxe", spell(o, st, up))),
        2 => short_text().prop_map(|t| format!("{t}.ipxe")),
        1 => short_text(),
    ]
    .prop_filter("not a dot segment", |f| f != "." && f != "..");
    check(128, file, |file| {
        rt.block_on(async {
            let mut url = reqwest::Url::parse(&s.url).map_err(|e| fail(e.to_string()))?;
            url.path_segments_mut()
                .map_err(|_| fail("base URL"))?
                .push("boot")
                .push(&file);
            let a = answer(s.anon.get(url)).await?;
            let mac_ok = file
                .strip_suffix(".ipxe")
                .is_some_and(|m| normalize_mac(m).is_ok());
            if mac_ok || file == "boot.ipxe" {
                prop_assert_eq!(a.status, StatusCode::OK, "{}", clip(&a.text));
                prop_assert!(a.text.starts_with("#!ipxe"), "{}", clip(&a.text));
            } else if file.ends_with(".ipxe") {
                prop_assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
            }
            Ok(())
        })
    });
}
