//! The simulator: unique identities per fake machine, and a short run against a fake server.

use std::collections::BTreeSet;
use std::time::Duration;

use dragonfly_agent::Inventory;
use dragonfly_agent::sim::{self, SimOptions, personalise, sim_mac};
use dragonfly_proto::{clean_uuid, normalize_mac};
use serde_json::json;

use crate::util::{FakeServer, crate_dir, ok};

#[test]
fn every_simulated_machine_has_its_own_identity() {
    let template = Inventory::collect(&crate_dir().join("fixtures/qemu-q35")).unwrap();
    let mut macs = BTreeSet::new();
    let mut serials = BTreeSet::new();
    let mut uuids = BTreeSet::new();
    for i in [0, 1, 2, 255, 256, 65_535, 65_536, 1_000_000, u32::MAX] {
        let r = personalise(&template, i);
        assert_eq!(
            normalize_mac(&r.boot_mac).as_deref(),
            Ok(r.boot_mac.as_str())
        );
        assert!(r.nics.iter().any(|n| n.boot && n.mac == r.boot_mac));
        for n in &r.nics {
            assert!(macs.insert(n.mac.clone()), "duplicate MAC {}", n.mac);
        }
        let uuid = r.smbios.system.uuid.clone().unwrap();
        assert_eq!(clean_uuid(&uuid).as_deref(), Some(uuid.as_str()));
        assert!(uuids.insert(uuid));
        assert!(serials.insert(r.smbios.system.serial.clone().unwrap()));
    }
    assert_eq!(sim_mac(1, 0), "02:d0:00:00:00:01");
}

#[test]
fn a_short_simulation_registers_every_machine_and_heartbeats() {
    let s = FakeServer::start();
    s.default(
        "/api/v1/agent/register",
        ok(json!({"machine_id": "m", "token": "t", "heartbeat_secs": 1,
                  "instruction": {"action": "wait", "seconds": 1}})),
    );
    s.default(
        "/api/v1/agent/heartbeat",
        ok(json!({"instruction": {"action": "wait", "seconds": 1}})),
    );
    let totals = sim::run(&SimOptions {
        server: s.url.clone(),
        enrollment_secret: None,
        count: 3,
        fixtures: Some(crate_dir().join("fixtures")),
        root: "/".into(),
        duration: Some(Duration::from_millis(2500)),
        ramp: Duration::ZERO,
        report_every: Duration::from_secs(1),
    })
    .unwrap();
    assert_eq!(totals.registrations, 3);
    assert!(totals.heartbeats >= 3, "{totals:?}");
    assert_eq!(totals.failures, 0);
    let macs: BTreeSet<String> = s
        .seen_on("/api/v1/agent/register")
        .iter()
        .map(|r| r.json()["report"]["boot_mac"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(macs.len(), 3);
}
