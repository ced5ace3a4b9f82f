//! Registration and heartbeats: what agents send.

use super::*;

/// The report without what the server does not keep between boots when nothing else changed
/// (addresses, link state, speed), in its order: the form in which reports are compared.
pub(super) fn comparable(mut r: HardwareReport) -> HardwareReport {
    for n in &mut r.nics {
        n.addresses.clear();
        n.link_up = None;
        n.speed_mbps = None;
    }
    r.nics.sort_by(|a, b| a.mac.cmp(&b.mac));
    r.disks
        .sort_by(|a, b| (&a.serial, &a.wwn, &a.name).cmp(&(&b.serial, &b.wwn, &b.name)));
    r.pci.sort_by(|a, b| a.address.cmp(&b.address));
    r
}

/// What the server must do with a registration, worked out without it: the same parse and
/// the same normalisation. `None` when it must refuse.
pub(super) fn expected_registration(body: &Value) -> (Option<RegisterRequest>, usize) {
    let (req, size) = parse::<RegisterRequest>(body);
    let req = req.and_then(|mut req| {
        let ok = identity::normalise(&mut req.report).is_ok() && req.agent_version.len() <= 64;
        ok.then_some(req)
    });
    (req, size)
}

pub(super) async fn check_registration(s: &TestServer, body: Value) -> Outcome {
    let (expected, size) = expected_registration(&body);
    let url = format!("{}/api/v1/agent/register", s.url);
    let a = send_json(&s.anon, Method::POST, url, &body).await?;
    if let (Some(req), StatusCode::CONFLICT) = (&expected, a.status) {
        // Generated reports share NICs, UUIDs and serials with earlier cases: a valid report
        // that claims a known machine with a different identity is held for an operator,
        // and is then listed for the operator, under its own boot MAC.
        prop_assert_eq!(&a.body["error"], "pending_approval", "{}", clip(&a.text));
        let mac = dragonfly_proto::normalize_mac(&req.report.boot_mac).unwrap_or_default();
        let held = get_json(s, "/api/v1/registrations").await?;
        prop_assert!(
            held.as_array()
                .into_iter()
                .flatten()
                .any(|h| h["boot_mac"] == json!(mac)),
            "held but not listed: {}",
            held
        );
        return Ok(());
    }
    expect_status(
        &a,
        expected.is_some(),
        StatusCode::OK,
        size,
        REGISTER_BODY_LIMIT,
    )?;
    let Some(req) = expected.filter(|_| a.status == StatusCode::OK) else {
        return Ok(());
    };
    let r = req.report;
    let id = a.body["machine_id"].as_str().unwrap_or_default();
    let m = get_json(s, &format!("/api/v1/machines/{id}")).await?;
    let sys = &r.smbios.system;
    for (field, want) in [
        ("boot_mac", json!(r.boot_mac)),
        ("serial", json!(sys.serial)),
        ("smbios_uuid", json!(sys.uuid)),
        ("vendor", json!(sys.vendor)),
        ("product", json!(sys.product)),
        ("arch", json!(r.arch)),
        ("memory_bytes", json!(r.memory_bytes)),
        ("cpu_threads", json!(r.cpu.as_ref().map(|c| c.threads))),
        ("agent_version", json!(req.agent_version)),
    ] {
        prop_assert_eq!(&m[field], &want, "{} of machine {}", field, id);
    }
    // The server stores sizes as SQLite integers: a total past i64::MAX is clamped.
    let total = r
        .disks
        .iter()
        .fold(0u64, |t, d| t.saturating_add(d.size_bytes));
    prop_assert_eq!(&m["disk_bytes"], &json!(total.min(i64::MAX as u64)));
    let macs = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["mac"].as_str().map(str::to_string))
            .collect()
    };
    let sent: BTreeSet<String> = r.nics.iter().map(|n| n.mac.clone()).collect();
    prop_assert_eq!(macs(&m["nics"]), sent);
    let stored: HardwareReport = serde_json::from_value(m["hardware"].clone())
        .map_err(|e| fail(format!("hardware of {id}: {e}")))?;
    prop_assert_eq!(comparable(stored), comparable(r));
    Ok(())
}

pub(super) fn register_body(report: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let version = prop_oneof![3 => Just("0.1.0".to_string()), 1 => short_text()];
    (version, any::<u32>(), report)
        .prop_map(|(v, p, r)| json!({"agent_version": v, "protocol": p, "report": r}))
        .boxed()
}

#[test]
pub(super) fn registration_accepts_valid_reports_and_reads_them_back() {
    let (rt, server) = server();
    let s = &server;
    let valid = valid_report().prop_map(|r| to_json(&r)).boxed();
    check(256, register_body(valid), |body| {
        rt.block_on(check_registration(s, body))
    });
}

#[test]
pub(super) fn registration_refuses_hostile_reports_in_the_error_shape() {
    let (rt, server) = server();
    let s = &server;
    let valid = valid_report().prop_map(|r| to_json(&r)).boxed();
    check(256, bodies(register_body(valid)), |body| {
        rt.block_on(check_registration(s, body))
    });
}

/// A registered machine, with disks an assignment can name; returns its id and agent token.
pub(super) async fn machine(s: &TestServer) -> (String, String) {
    let mut r = report(7);
    r["disks"] = json!([
        {"name": "vda", "size_bytes": 1u64 << 34, "serial": "D1", "wwn": "W1"},
        {"name": "vdb", "size_bytes": 1u64 << 34, "serial": "D2"},
    ]);
    let reg = s.register(r).await;
    let id = reg["machine_id"].as_str().unwrap().to_string();
    (id, reg["token"].as_str().unwrap().to_string())
}

pub(super) fn phase() -> impl Strategy<Value = &'static str> {
    prop::sample::select(
        &[
            "waiting",
            "chainloading",
            "installing",
            "installed",
            "failed",
        ][..],
    )
}

#[test]
pub(super) fn heartbeats_are_accepted_or_refused_as_the_protocol_says() {
    let (rt, server) = server();
    let s = &server;
    let (id, token) = rt.block_on(machine(s));
    let valid = (phase(), opt(0u8..=100), opt(short_text()))
        .prop_map(
            |(p, progress, message)| json!({"phase": p, "progress": progress, "message": message}),
        )
        .boxed();
    check(128, bodies(valid), |body| {
        rt.block_on(async {
            let (hb, size) = parse::<Heartbeat>(&body);
            let hb = hb.filter(|h| {
                h.progress.is_none_or(|p| p <= 100)
                    && h.message.as_ref().is_none_or(|m| m.len() <= 1024)
            });
            let req = s
                .anon
                .post(format!("{}/api/v1/agent/heartbeat", s.url))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(bytes_of(&body));
            let a = answer(req).await?;
            expect_status(&a, hb.is_some(), StatusCode::OK, size, BODY_LIMIT)?;
            prop_assert!(a.status != StatusCode::OK || a.body["instruction"]["action"].is_string());
            if let Some(hb) = hb.filter(|_| a.status == StatusCode::OK) {
                let m = get_json(s, &format!("/api/v1/machines/{id}")).await?;
                prop_assert_eq!(&m["phase"], &to_json(&hb.phase));
                if let Some(p) = hb.progress {
                    prop_assert_eq!(&m["progress"], &json!(p));
                }
                if let Some(msg) = hb.message {
                    prop_assert_eq!(&m["status_message"], &json!(msg));
                }
            }
            Ok(())
        })
    });
}
