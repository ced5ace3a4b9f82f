//! The binary itself: `inventory` output, the message when no server is known, `--dry-run`.

use std::process::Command;

use serde_json::json;

use crate::util::{FakeServer, crate_dir, ok};

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dragonfly-agent"));
    c.env_remove("DRAGONFLY_URL")
        .env_remove("DRAGONFLY_ENROLLMENT_SECRET");
    c
}

#[test]
fn inventory_prints_the_golden_report() {
    let dir = crate_dir().join("fixtures");
    let out = agent()
        .args(["inventory", "--root"])
        .arg(dir.join("qemu-q35"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("qemu-q35.json")).unwrap()).unwrap();
    assert_eq!(printed, golden);
}

#[test]
fn without_a_server_it_says_how_to_name_one() {
    let out = agent()
        .args(["--root"])
        .arg(crate_dir().join("fixtures/virtio-microvm"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no server URL") && err.contains("dragonfly.url="),
        "{err}"
    );
}

#[test]
fn dry_run_prints_the_exact_commands() {
    let s = FakeServer::start();
    s.on(
        "/api/v1/agent/register",
        ok(json!({"machine_id": "m", "token": "t", "heartbeat_secs": 5,
                  "instruction": {"action": "chainload", "script_url": "/boot/m.ipxe",
                                  "ipxe_lkrn_url": "/boot/ipxe.lkrn"}})),
    );
    s.default(
        "/api/v1/agent/heartbeat",
        ok(json!({"instruction": {"action": "wait", "seconds": 5}})),
    );
    let out = agent()
        .args(["--dry-run", "--server", &s.url, "--root"])
        .arg(crate_dir().join("fixtures/qemu-q35"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "would run: kexec -c -l {}",
            std::env::temp_dir().display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "--type=bzImage --real-mode '--append=dhcp && chain {}/boot/m.ipxe'",
            s.url
        )),
        "{err}"
    );
    assert!(err.contains("would run: kexec -e"), "{err}");
    assert!(s.seen_on("/boot/ipxe.lkrn").is_empty());
    let hb = &s.seen_on("/api/v1/agent/heartbeat")[0];
    assert!(
        hb.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("dry run: "),
        "{:?}",
        hb.json()
    );
}
