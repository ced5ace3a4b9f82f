//! Operator actions on machines: updates, assignments, reimages, queued instructions.

use super::*;

pub(super) const BUILTIN_OS: &[&str] = &["ubuntu-22.04", "ubuntu-24.04", "debian-12", "debian-13"];

/// An object holding only the fields that are `Some`.
pub(super) fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect(),
    )
}

pub(super) fn hostname() -> BoxedStrategy<String> {
    prop::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", 1..4)
        .prop_map(|labels| labels.join("."))
        .boxed()
}

pub(super) fn update_body() -> BoxedStrategy<Value> {
    let host = opt(prop_oneof![
        4 => hostname().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => Just(json!("")),
        1 => short_text().prop_map(Value::from),
    ]);
    let tags = opt(prop::collection::vec("[a-z0-9_.:-]{1,20}", 0..8).prop_map(|t| json!(t)));
    let notes = opt(prop_oneof![
        4 => ".{0,64}".prop_map(Value::from),
        1 => (4090usize..=4100).prop_map(|n| json!("é".repeat(n))),
    ]);
    (host, tags, notes)
        .prop_map(|(h, t, n)| object(vec![("hostname", h), ("tags", t), ("notes", n)]))
        .boxed()
}

pub(super) fn update_is_valid(u: &MachineUpdate) -> bool {
    let host_ok = match &u.hostname {
        Some(Some(h)) => h.is_empty() || validate_hostname(h).is_ok(),
        _ => true,
    };
    let tags_ok = u.tags.as_ref().is_none_or(|t| {
        t.len() <= 64
            && t.iter()
                .enumerate()
                .all(|(i, t)| validate_tag(i, t).is_ok())
    });
    let notes_ok = u.notes.as_ref().is_none_or(|n| n.chars().count() <= 4096);
    host_ok && tags_ok && notes_ok
}

#[test]
pub(super) fn machine_updates_are_validated_and_read_back() {
    let (rt, server) = server();
    let s = &server;
    let (id, _) = rt.block_on(machine(s));
    let path = format!("/api/v1/machines/{id}");
    check(128, bodies(update_body()), |body| {
        rt.block_on(async {
            let (u, size) = parse::<MachineUpdate>(&body);
            let u = u.filter(update_is_valid);
            let before = get_json(s, &path).await?;
            let a = send_json(&s.client, Method::PATCH, format!("{}{path}", s.url), &body).await?;
            expect_status(&a, u.is_some(), StatusCode::OK, size, OPERATOR_BODY_LIMIT)?;
            let Some(u) = u.filter(|_| a.status == StatusCode::OK) else {
                return Ok(());
            };
            let hostname = match u.hostname {
                Some(h) => json!(h.filter(|h| !h.is_empty()).map(|h| h.to_ascii_lowercase())),
                None => before["hostname"].clone(),
            };
            let tags = match u.tags {
                Some(t) => json!(t.into_iter().collect::<BTreeSet<_>>()),
                None => before["tags"].clone(),
            };
            let notes = u.notes.map_or(before["notes"].clone(), Value::from);
            let after = get_json(s, &path).await?;
            prop_assert_eq!(&after["hostname"], &hostname);
            prop_assert_eq!(&after["tags"], &tags);
            prop_assert_eq!(&after["notes"], &notes);
            prop_assert_eq!(&a.body["hostname"], &hostname);
            Ok(())
        })
    });
}

/// `{"serial": ..}` or `{"wwn": ..}`, mostly naming a disk the test machine has.
pub(super) fn target_disk() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => prop::sample::select(&["D1", "D2"][..]).prop_map(|d| json!({"serial": d})),
        1 => Just(json!({"wwn": "W1"})),
        1 => Just(Value::Null),
        1 => short_text().prop_map(|d| json!({"serial": d})),
    ]
    .boxed()
}

pub(super) fn os_slug() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(BUILTIN_OS).prop_map(str::to_string),
        1 => short_text(),
    ]
    .boxed()
}

pub(super) fn disk_is_known(d: &Option<dragonfly::machines::TargetDisk>) -> bool {
    use dragonfly::machines::TargetDisk;
    match d {
        None => true,
        Some(TargetDisk::Serial(s)) => s == "D1" || s == "D2",
        Some(TargetDisk::Wwn(w)) => w == "W1",
    }
}

#[test]
pub(super) fn assignments_name_a_known_os_and_disk() {
    let (rt, server) = server();
    let s = &server;
    let (id, _) = rt.block_on(machine(s));
    let valid = (os_slug(), opt(target_disk()))
        .prop_map(|(os, disk)| object(vec![("os", Some(json!(os))), ("target_disk", disk)]))
        .boxed();
    check(128, bodies(valid), |body| {
        rt.block_on(async {
            let (req, size) = parse::<AssignRequest>(&body);
            let req = req
                .filter(|r| BUILTIN_OS.contains(&r.os.as_str()) && disk_is_known(&r.target_disk));
            let url = format!("{}/api/v1/machines/{id}/assign", s.url);
            let a = send_json(&s.client, Method::POST, url, &body).await?;
            expect_status(&a, req.is_some(), StatusCode::OK, size, OPERATOR_BODY_LIMIT)?;
            if let Some(r) = req.filter(|_| a.status == StatusCode::OK) {
                let m = get_json(s, &format!("/api/v1/machines/{id}")).await?;
                prop_assert_eq!(&m["state"], "assigned");
                prop_assert_eq!(&m["os"], &json!(r.os));
                prop_assert_eq!(&m["target_disk"], &to_json(&r.target_disk));
            }
            Ok(())
        })
    });
}

#[test]
pub(super) fn reimages_of_failed_machines_are_validated() {
    let (rt, server) = server();
    let s = &server;
    let (id, token) = rt.block_on(machine(s));
    rt.block_on(async {
        let resp = s
            .post(
                &format!("/api/v1/machines/{id}/assign"),
                json!({"os": "debian-12"}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    });
    let valid = (opt(os_slug()), opt(target_disk()))
        .prop_map(|(os, disk)| object(vec![("os", os.map(Value::from)), ("target_disk", disk)]))
        .boxed();
    check(96, bodies(valid), |body| {
        rt.block_on(async {
            // Assigned (after the last reimage) → Failed; Failed stays Failed.
            let fail_hb = s.heartbeat(&token, json!({"phase": "failed"})).await;
            prop_assert_eq!(fail_hb.status(), StatusCode::OK);
            let before = get_json(s, &format!("/api/v1/machines/{id}")).await?;
            prop_assert_eq!(&before["state"], "failed");
            let (req, size) = parse::<ReimageRequest>(&body);
            let req = req.filter(|r| {
                r.os.as_ref()
                    .is_none_or(|o| BUILTIN_OS.contains(&o.as_str()))
                    && disk_is_known(&r.target_disk)
            });
            let url = format!("{}/api/v1/machines/{id}/reimage", s.url);
            let a = send_json(&s.client, Method::POST, url, &body).await?;
            expect_status(&a, req.is_some(), StatusCode::OK, size, OPERATOR_BODY_LIMIT)?;
            if let Some(r) = req.filter(|_| a.status == StatusCode::OK) {
                let m = get_json(s, &format!("/api/v1/machines/{id}")).await?;
                prop_assert_eq!(&m["state"], "assigned");
                let os = r.os.map_or(before["os"].clone(), Value::from);
                prop_assert_eq!(&m["os"], &os);
                let disk = r
                    .target_disk
                    .map_or(before["target_disk"].clone(), |d| to_json(&d));
                prop_assert_eq!(&m["target_disk"], &disk);
            }
            Ok(())
        })
    });
}

#[test]
pub(super) fn queued_instructions_reach_the_agent() {
    let (rt, server) = server();
    let s = &server;
    let (id, token) = rt.block_on(machine(s));
    let action = prop_oneof![
        4 => prop::sample::select(&["reboot", "poweroff", "reinventory"][..]).prop_map(Value::from),
        1 => short_text().prop_map(Value::from),
    ];
    let valid = action.prop_map(|a| json!({"action": a})).boxed();
    check(96, bodies(valid), |body| {
        rt.block_on(async {
            let (req, size) = parse::<InstructRequest>(&body);
            let url = format!("{}/api/v1/machines/{id}/instructions", s.url);
            let a = send_json(&s.client, Method::POST, url, &body).await?;
            expect_status(
                &a,
                req.is_some(),
                StatusCode::ACCEPTED,
                size,
                OPERATOR_BODY_LIMIT,
            )?;
            if let Some(r) = req.filter(|_| a.status == StatusCode::ACCEPTED) {
                let hb = s.heartbeat(&token, json!({"phase": "waiting"})).await;
                let hb: Value = hb.json().await.map_err(|e| fail(e.to_string()))?;
                prop_assert_eq!(&hb["instruction"]["action"], &to_json(&r.action));
            }
            Ok(())
        })
    });
}
