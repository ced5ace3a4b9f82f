//! The protocol loop against a scripted HTTP server: registration with retries, heartbeats,
//! and every instruction, with a host that records the commands instead of running them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dragonfly_agent::agent::{AfterTerminal, Agent, AgentOptions, Outcome, ReportSource};
use dragonfly_agent::backoff::{Backoff, Rng};
use dragonfly_agent::client::Client;
use dragonfly_agent::host::DryRunHost;
use dragonfly_proto::HardwareReport;
use serde_json::json;

use crate::util::{Did, FakeServer, RecordingHost, Reply, TempDir, ok};

const REGISTER: &str = "/api/v1/agent/register";
const HEARTBEAT: &str = "/api/v1/agent/heartbeat";

fn report() -> HardwareReport {
    HardwareReport {
        boot_mac: "52:54:00:12:34:56".into(),
        ..Default::default()
    }
}

fn registered(token: &str, instruction: serde_json::Value) -> Reply {
    ok(json!({
        "machine_id": "m-1",
        "token": token,
        "heartbeat_secs": 10,
        "instruction": instruction,
    }))
}

fn instruction(i: serde_json::Value) -> Reply {
    ok(json!({ "instruction": i }))
}

struct Run {
    outcome: Outcome,
    host: RecordingHost,
    collected: usize,
}

/// Runs the agent against `server` with a recording host until an outcome; `root` decides
/// BIOS or UEFI.
fn run_with(
    server: &FakeServer,
    host: RecordingHost,
    root: &TempDir,
    secret: Option<&str>,
    once: bool,
) -> Run {
    let collected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = collected.clone();
    let source: ReportSource = Box::new(move || {
        c.fetch_add(1, Ordering::Relaxed);
        report()
    });
    let client = Client::with_timeouts(
        &server.url,
        secret.map(str::to_string),
        Duration::from_secs(2),
        Duration::from_secs(10),
    );
    let mut opts = AgentOptions::new(root.path());
    opts.after_terminal = AfterTerminal::Stop;
    opts.scratch_dir = root.path().to_path_buf();
    opts.stop = Some(host.stop.clone());
    opts.once = once;
    let mut agent = Agent::new(client, host, source, opts, Backoff::standard(Rng::new(42)));
    let outcome = agent.run();
    Run {
        outcome,
        host: agent.host().clone(),
        collected: collected.load(Ordering::Relaxed),
    }
}

fn run(server: &FakeServer) -> Run {
    run_with(
        server,
        RecordingHost::new(),
        &TempDir::new("bios"),
        None,
        false,
    )
}

#[test]
fn registers_waits_heartbeats_and_reboots() {
    let s = FakeServer::start();
    s.on(
        REGISTER,
        registered("tok-1", json!({"action": "wait", "seconds": 7})),
    );
    s.on(HEARTBEAT, instruction(json!({"action": "reboot"})));
    let r = run(&s);
    assert_eq!(r.outcome, Outcome::Rebooting);
    // The wait is a long-poll: the server answered with news, so nothing was slept.
    assert_eq!(r.host.did(), vec![Did::Run("reboot -f".into())]);
    let reg = &s.seen_on(REGISTER)[0];
    assert_eq!(reg.method, "POST");
    let body = reg.json();
    assert_eq!(body["report"]["boot_mac"], "52:54:00:12:34:56");
    assert_eq!(body["protocol"], 1);
    assert_eq!(body["agent_version"], dragonfly_agent::VERSION);
    assert!(!reg.headers.contains_key("x-dragonfly-enrollment"));
    let hb = &s.seen_on(HEARTBEAT)[0];
    assert_eq!(hb.query.as_deref(), Some("wait=7"));
    assert_eq!(hb.headers["authorization"], "Bearer tok-1");
    assert_eq!(
        hb.json(),
        json!({"phase": "waiting", "progress": null, "message": null})
    );
}

#[test]
fn the_enrollment_secret_is_sent_at_registration() {
    let s = FakeServer::start();
    s.on(REGISTER, registered("t", json!({"action": "reboot"})));
    let r = run_with(
        &s,
        RecordingHost::new(),
        &TempDir::new("secret"),
        Some("s3cret"),
        false,
    );
    assert_eq!(r.outcome, Outcome::Rebooting);
    assert_eq!(
        s.seen_on(REGISTER)[0].headers["x-dragonfly-enrollment"],
        "s3cret"
    );
}

#[test]
fn an_unreachable_or_failing_server_is_retried_with_growing_delays() {
    let s = FakeServer::start();
    s.on(REGISTER, Reply::Hangup)
        .on(REGISTER, Reply::Json(500, r#"{"error":"internal"}"#.into()))
        .on(REGISTER, Reply::Json(503, "busy".into()))
        .on(REGISTER, Reply::Json(200, "{ not json".into()))
        .on(REGISTER, registered("t", json!({"action": "reboot"})));
    let r = run(&s);
    assert_eq!(r.outcome, Outcome::Rebooting);
    assert_eq!(s.seen_on(REGISTER).len(), 5);
    let sleeps = r.host.sleeps();
    assert_eq!(sleeps.len(), 4, "one backoff per failure: {sleeps:?}");
    let mut ceiling = Duration::from_millis(250);
    for d in sleeps {
        assert!(
            d >= ceiling / 2 && d <= ceiling,
            "{d:?} not in [{:?}, {ceiling:?}]",
            ceiling / 2
        );
        ceiling *= 2;
    }
}

#[test]
fn a_refused_registration_is_retried_slowly() {
    let s = FakeServer::start();
    s.on(
        REGISTER,
        Reply::Json(
            400,
            r#"{"error":"invalid_report","message":"no boot_mac"}"#.into(),
        ),
    )
    .on(
        REGISTER,
        Reply::Json(403, r#"{"error":"enrollment_secret"}"#.into()),
    )
    .on(REGISTER, registered("t", json!({"action": "poweroff"})));
    let r = run(&s);
    assert_eq!(r.outcome, Outcome::PoweringOff);
    let sleeps = r.host.sleeps();
    assert_eq!(sleeps.len(), 2);
    for d in sleeps {
        assert!(
            d >= Duration::from_secs(27) && d <= Duration::from_secs(33),
            "{d:?}"
        );
    }
    assert_eq!(r.host.commands(), vec!["poweroff -f"]);
}

#[test]
fn a_401_heartbeat_means_register_again() {
    let s = FakeServer::start();
    s.on(
        REGISTER,
        registered("old", json!({"action": "wait", "seconds": 1})),
    )
    .on(
        REGISTER,
        registered("new", json!({"action": "wait", "seconds": 1})),
    );
    s.on(
        HEARTBEAT,
        Reply::Json(401, r#"{"error":"unauthorized"}"#.into()),
    )
    .on(HEARTBEAT, instruction(json!({"action": "reboot"})));
    let r = run(&s);
    assert_eq!(r.outcome, Outcome::Rebooting);
    let hbs = s.seen_on(HEARTBEAT);
    assert_eq!(hbs[0].headers["authorization"], "Bearer old");
    assert_eq!(hbs[1].headers["authorization"], "Bearer new");
    assert_eq!(r.collected, 1, "re-registering reuses the report");
    // The first registration has no token to show; the second proves itself with the last.
    let regs = s.seen_on(REGISTER);
    assert!(regs[0].json().get("previous_token").is_none());
    assert_eq!(regs[1].json()["previous_token"], "old");
}

#[test]
fn a_malformed_heartbeat_answer_is_retried_not_a_panic() {
    let s = FakeServer::start();
    s.on(
        REGISTER,
        registered("t", json!({"action": "wait", "seconds": 2})),
    );
    s.on(HEARTBEAT, Reply::Json(200, r#"{"instruction": 42}"#.into()))
        .on(
            HEARTBEAT,
            Reply::Json(200, "<html>proxy error</html>".into()),
        )
        .on(HEARTBEAT, instruction(json!({"action": "reboot"})));
    let r = run(&s);
    assert_eq!(r.outcome, Outcome::Rebooting);
    assert_eq!(s.seen_on(HEARTBEAT).len(), 3);
}

#[test]
fn an_unknown_instruction_is_refused_and_heartbeats_go_on() {
    let s = FakeServer::start();
    s.on(
        REGISTER,
        registered("t", json!({"action": "self_destruct", "when": "now"})),
    );
    s.on(HEARTBEAT, instruction(json!({"action": "format_disks"})))
        .on(HEARTBEAT, instruction(json!({"action": "reboot"})));
    let r = run(&s);
    assert_eq!(r.outcome, Outcome::Rebooting);
    let hbs = s.seen_on(HEARTBEAT);
    assert_eq!(hbs.len(), 2);
    for hb in hbs {
        assert_eq!(hb.json()["message"], "refused unknown instruction");
        assert_eq!(hb.json()["phase"], "waiting");
    }
    // It waited heartbeat_secs between, and ran nothing but the final reboot.
    assert_eq!(r.host.sleeps(), vec![Duration::from_secs(10); 2]);
    assert_eq!(r.host.commands(), vec!["reboot -f"]);
}

#[test]
fn chainload_on_bios_kexecs_ipxe_with_the_script() {
    let s = FakeServer::start();
    let lkrn = b"fake ipxe.lkrn bytes".to_vec();
    s.on(
        REGISTER,
        registered(
            "t",
            json!({"action": "chainload",
                   "script_url": "/boot/52:54:00:12:34:56.ipxe",
                   "ipxe_lkrn_url": "/boot/ipxe.lkrn"}),
        ),
    );
    s.on("/boot/ipxe.lkrn", Reply::Bytes(lkrn.clone()));
    s.default(
        HEARTBEAT,
        instruction(json!({"action": "wait", "seconds": 5})),
    );
    let root = TempDir::new("chain");
    let r = run_with(&s, RecordingHost::new(), &root, None, false);
    assert_eq!(r.outcome, Outcome::Chainloading);
    let file = root
        .path()
        .join(format!("dragonfly-ipxe-{}.lkrn", std::process::id()));
    assert_eq!(std::fs::read(&file).unwrap(), lkrn);
    assert_eq!(
        r.host.commands(),
        vec![
            format!(
                "kexec -c -l {} --type=bzImage --real-mode '--append=dhcp && chain {}/boot/52:54:00:12:34:56.ipxe'",
                file.display(),
                s.url
            ),
            "kexec -e".to_string(),
        ]
    );
    let hb = &s.seen_on(HEARTBEAT)[0];
    assert_eq!(hb.json()["phase"], "chainloading");
}

#[test]
fn a_failed_kexec_is_reported_then_the_machine_reboots() {
    let s = FakeServer::start();
    s.on(
        REGISTER,
        registered(
            "t",
            json!({"action": "chainload", "script_url": "http://x/s.ipxe", "ipxe_lkrn_url": "/boot/ipxe.lkrn"}),
        ),
    );
    s.on("/boot/ipxe.lkrn", Reply::Bytes(b"lkrn".to_vec()));
    s.default(
        HEARTBEAT,
        instruction(json!({"action": "wait", "seconds": 5})),
    );
    let mut host = RecordingHost::new();
    host.failing
        .insert("kexec".into(), "`kexec` failed (exit status: 255)".into());
    let r = run_with(&s, host, &TempDir::new("kexecfail"), None, false);
    assert_eq!(r.outcome, Outcome::Rebooting);
    let hbs = s.seen_on(HEARTBEAT);
    let last = hbs.last().unwrap().json();
    assert_eq!(last["phase"], "chainloading");
    let msg = last["message"].as_str().unwrap();
    assert!(
        msg.starts_with("kexec failed: ") && msg.ends_with(", rebooting"),
        "{msg}"
    );
    let cmds = r.host.commands();
    assert!(cmds[0].starts_with("kexec -c -l "), "{cmds:?}");
    assert_eq!(cmds[1], "reboot -f");
}

#[test]
fn a_missing_ipxe_lkrn_means_reboot() {
    let s = FakeServer::start();
    s.on(
        REGISTER,
        registered(
            "t",
            json!({"action": "chainload", "script_url": "/s.ipxe", "ipxe_lkrn_url": "/missing.lkrn"}),
        ),
    );
    s.default(
        HEARTBEAT,
        instruction(json!({"action": "wait", "seconds": 5})),
    );
    let r = run(&s);
    assert_eq!(r.outcome, Outcome::Rebooting);
    assert_eq!(r.host.commands(), vec!["reboot -f"]);
    let msg = s.seen_on(HEARTBEAT).last().unwrap().json()["message"].clone();
    assert!(msg.as_str().unwrap().contains("404"), "{msg}");
}

#[test]
fn chainload_on_uefi_reboots_instead_of_kexec() {
    let s = FakeServer::start();
    s.on(
        REGISTER,
        registered(
            "t",
            json!({"action": "chainload", "script_url": "/s.ipxe", "ipxe_lkrn_url": "/boot/ipxe.lkrn"}),
        ),
    );
    s.default(
        HEARTBEAT,
        instruction(json!({"action": "wait", "seconds": 5})),
    );
    let root = TempDir::new("uefi");
    root.mkdir("sys/firmware/efi");
    let r = run_with(&s, RecordingHost::new(), &root, None, false);
    assert_eq!(r.outcome, Outcome::Rebooting);
    assert_eq!(r.host.commands(), vec!["reboot -f"]);
    assert!(
        s.seen_on("/boot/ipxe.lkrn").is_empty(),
        "no download on UEFI"
    );
    assert_eq!(s.seen_on(HEARTBEAT)[0].json()["phase"], "chainloading");
}

#[test]
fn reinventory_collects_again_and_registers_again() {
    let s = FakeServer::start();
    s.on(REGISTER, registered("a", json!({"action": "reinventory"})))
        .on(REGISTER, registered("b", json!({"action": "reboot"})));
    let r = run(&s);
    assert_eq!(r.outcome, Outcome::Rebooting);
    assert_eq!(r.collected, 2);
    assert_eq!(s.seen_on(REGISTER).len(), 2);
}

#[test]
fn when_reboot_fails_sysrq_is_tried_and_the_failure_reported() {
    let s = FakeServer::start();
    s.on(REGISTER, registered("t", json!({"action": "reboot"})));
    s.on(HEARTBEAT, instruction(json!({"action": "poweroff"})));
    let mut host = RecordingHost::new();
    host.failing.insert(
        "reboot".into(),
        "could not start `reboot`: No such file".into(),
    );
    host.sysrq_fails = true;
    let r = run_with(&s, host, &TempDir::new("rebootfail"), None, false);
    assert_eq!(r.outcome, Outcome::PoweringOff);
    assert_eq!(
        r.host.did(),
        vec![
            Did::Run("reboot -f".into()),
            Did::Sysrq('b'),
            Did::Run("poweroff -f".into())
        ]
    );
    let hb = s.seen_on(HEARTBEAT)[0].json();
    assert_eq!(hb["phase"], "failed");
    assert!(
        hb["message"].as_str().unwrap().contains("rebooting failed"),
        "{hb}"
    );
}

#[test]
fn once_stops_after_the_first_instruction_without_sleeping() {
    let s = FakeServer::start();
    s.on(
        REGISTER,
        registered("t", json!({"action": "wait", "seconds": 30})),
    );
    let r = run_with(&s, RecordingHost::new(), &TempDir::new("once"), None, true);
    assert_eq!(r.outcome, Outcome::Waiting { seconds: 30 });
    assert!(r.host.did().is_empty());
    assert!(s.seen_on(HEARTBEAT).is_empty());
}

#[test]
fn dry_run_downloads_nothing_and_runs_nothing() {
    let s = FakeServer::start();
    s.on(
        REGISTER,
        registered(
            "t",
            json!({"action": "chainload", "script_url": "/s.ipxe", "ipxe_lkrn_url": "/boot/ipxe.lkrn"}),
        ),
    );
    s.default(
        HEARTBEAT,
        instruction(json!({"action": "wait", "seconds": 5})),
    );
    let root = TempDir::new("dry");
    let client = Client::new(&s.url, None);
    let mut opts = AgentOptions::new(root.path());
    opts.after_terminal = AfterTerminal::Stop;
    opts.scratch_dir = root.path().to_path_buf();
    let source: ReportSource = Box::new(report);
    let outcome = Agent::new(
        client,
        DryRunHost,
        source,
        opts,
        Backoff::standard(Rng::new(1)),
    )
    .run();
    assert_eq!(outcome, Outcome::Chainloading);
    assert!(s.seen_on("/boot/ipxe.lkrn").is_empty());
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn an_agent_keeps_retrying_a_dead_server_until_stopped() {
    // Nothing listens on this port once the listener is dropped: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let root = TempDir::new("dead");
    let mut host = RecordingHost::new();
    host.max_sleeps = 8;
    let client = Client::with_timeouts(
        &format!("http://127.0.0.1:{port}"),
        None,
        Duration::from_secs(1),
        Duration::from_secs(2),
    );
    let mut opts = AgentOptions::new(root.path());
    opts.stop = Some(host.stop.clone());
    let source: ReportSource = Box::new(report);
    let mut agent = Agent::new(client, host, source, opts, Backoff::standard(Rng::new(5)));
    assert_eq!(agent.run(), Outcome::Stopped);
    let sleeps = agent.host().sleeps();
    assert_eq!(sleeps.len(), 8);
    assert!(sleeps.iter().all(|d| *d <= Duration::from_secs(5)));
    assert!(
        sleeps[7] >= Duration::from_millis(2500),
        "capped at 5 s: {sleeps:?}"
    );
}

#[test]
fn a_server_that_does_not_hold_the_long_poll_is_not_hammered() {
    let s = FakeServer::start();
    s.on(
        REGISTER,
        registered("tok-1", json!({"action": "wait", "seconds": 8})),
    );
    // The first heartbeat answers "wait" at once, as a server without long-poll would.
    s.on(
        HEARTBEAT,
        instruction(json!({"action": "wait", "seconds": 8})),
    );
    s.on(HEARTBEAT, instruction(json!({"action": "reboot"})));
    let r = run(&s);
    assert_eq!(r.outcome, Outcome::Rebooting);
    let did = r.host.did();
    assert_eq!(did.len(), 2, "{did:?}");
    match &did[0] {
        Did::Sleep(d) => assert!(
            *d > Duration::from_secs(4) && *d <= Duration::from_secs(8),
            "slept {d:?}"
        ),
        other => panic!("expected a sleep, got {other:?}"),
    }
    assert_eq!(did[1], Did::Run("reboot -f".into()));
}
