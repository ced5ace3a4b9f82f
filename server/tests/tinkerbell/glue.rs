//! provision.rs end to end: the real machine service and event hub, the fake API server.

use std::sync::Arc;

use dragonfly::config::Command;
use dragonfly::config::Config;
use dragonfly::machines::{State, TargetDisk};
use dragonfly::provision;
use dragonfly::state::AppState;
use dragonfly::tinkerbell::TinkerbellCommand;
use dragonfly_proto::{HardwareReport, RegisterRequest};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::fake::FakeApi;
use super::objects::current_status;
use super::schema::{crd_schema, errors};
use super::{NS, clock, fast, tink};
use crate::support::eventually;

struct Env {
    fake: Arc<FakeApi>,
    state: AppState,
    dir: tempfile::TempDir,
    glue: Option<JoinHandle<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(g) = &self.glue {
            g.abort();
        }
    }
}

async fn env(with_glue: bool) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_tests(&dir.path().join("sqlite.db"));
    let state = dragonfly::build_state(&config, "http://127.0.0.1:9".into(), clock())
        .await
        .unwrap();
    let fake = FakeApi::start().await;
    let mut e = Env {
        fake,
        state,
        dir,
        glue: None,
    };
    if with_glue {
        e.start_glue();
    }
    e
}

impl Env {
    fn start_glue(&mut self) {
        self.glue = Some(provision::spawn_with(
            tink(&self.fake),
            self.state.machines.clone(),
            self.state.catalogue.clone(),
            clock(),
            fast(),
        ));
    }

    async fn register(&self, report: Value) -> String {
        let report: HardwareReport = serde_json::from_value(report).unwrap();
        self.state
            .machines
            .register(RegisterRequest {
                agent_version: "test".into(),
                protocol: 1,
                report,
                machine_secret: None,
                previous_token: None,
            })
            .await
            .unwrap()
            .machine_id
    }

    async fn wait_for(&self, plural: &str, name: &str) -> Value {
        let fake = self.fake.clone();
        eventually(&format!("{plural}/{name}"), || {
            let fake = fake.clone();
            async move { fake.get(plural, NS, name) }
        })
        .await
    }

    async fn wait_gone(&self, plural: &str, name: &str) {
        let fake = self.fake.clone();
        eventually(&format!("{plural}/{name} to go"), || {
            let fake = fake.clone();
            async move { fake.get(plural, NS, name).is_none().then_some(()) }
        })
        .await
    }

    /// Waits until the machine satisfies `ok`.
    async fn wait_machine(
        &self,
        id: &str,
        what: &str,
        ok: impl Fn(&dragonfly::machines::Machine) -> bool,
    ) -> dragonfly::machines::MachineDetail {
        let ok = &ok;
        eventually(what, || async move {
            let d = self.state.machines.get(id).await.unwrap();
            ok(&d.machine).then_some(d)
        })
        .await
    }
}

fn name(n: u32) -> String {
    format!(
        "dragonfly-52-54-00-00-{:02x}-{:02x}",
        (n >> 8) & 0xff,
        n & 0xff
    )
}

const THREE: [&str; 3] = ["stream-image", "write-cloud-init", "reboot"];

fn status(state: &str, actions: [&'static str; 3]) -> Value {
    let a: Vec<(&str, &str)> = THREE.iter().copied().zip(actions).collect();
    current_status(state, &a)
}

#[tokio::test]
async fn an_assignment_becomes_a_workflow_whose_progress_is_the_machine_state() {
    let e = env(true).await;
    let id = e.register(crate::support::report(1)).await;
    let hw = e.wait_for("hardware", &name(1)).await;
    assert_eq!(
        hw["metadata"]["labels"]["dragonfly/machine-id"],
        id.as_str()
    );
    assert_eq!(
        hw["spec"]["interfaces"][0]["dhcp"]["mac"],
        "52:54:00:00:00:01"
    );
    assert_eq!(
        hw["spec"]["interfaces"][0]["dhcp"]["ip"]["address"],
        "10.0.2.15"
    );

    e.state
        .machines
        .assign(
            &id,
            "debian-12".into(),
            Some(TargetDisk::Serial("DISK-00001".into())),
        )
        .await
        .unwrap();
    let wf = e.wait_for("workflows", &name(1)).await;
    assert_eq!(wf["spec"]["templateRef"], "dragonfly-debian-12");
    assert_eq!(wf["spec"]["hardwareMap"]["device_1"], "52:54:00:00:00:01");
    let template = e.wait_for("templates", "dragonfly-debian-12").await;
    // The built-in Debian entry is the published qcow2 image: Tinkerbell's qemuimg2disk
    // action writes it.
    let data = template["spec"]["data"].as_str().unwrap();
    assert!(data.contains("debian-12-generic-amd64.qcow2"), "{data}");
    assert!(data.contains("qemuimg2disk"), "{data}");
    let hw = e.wait_for("hardware", &name(1)).await;
    assert_eq!(
        hw["spec"]["disks"][0]["device"],
        "/dev/disk/by-id/wwn-0x5000c50000000001"
    );
    assert_eq!(
        hw["spec"]["metadata"]["instance"]["operating_system"]["os_slug"],
        "debian-12"
    );

    e.fake.set_status(
        "workflows",
        NS,
        &name(1),
        status("RUNNING", ["SUCCESS", "RUNNING", "PENDING"]),
    );
    let d = e
        .wait_machine(&id, "installing at 33%", |m| {
            m.state == State::Installing && m.progress == Some(33)
        })
        .await;
    assert_eq!(
        d.machine.status_message.as_deref(),
        Some("write-cloud-init")
    );
    assert!(
        d.events
            .iter()
            .any(|ev| ev.kind == "install_started" && ev.actor == "tinkerbell"),
        "{:?}",
        d.events
    );

    e.fake.set_status(
        "workflows",
        NS,
        &name(1),
        status("SUCCESS", ["SUCCESS", "SUCCESS", "SUCCESS"]),
    );
    let d = e
        .wait_machine(&id, "installed", |m| m.state == State::Installed)
        .await;
    assert_eq!(d.machine.progress, Some(100));

    // A reimage replaces the finished workflow with a new one.
    let old_uid = e.fake.get("workflows", NS, &name(1)).unwrap()["metadata"]["uid"].clone();
    e.state.machines.reimage(&id, None, None).await.unwrap();
    let fake = e.fake.clone();
    let n1 = name(1);
    let new = eventually("a new workflow", || {
        let fake = fake.clone();
        let n1 = n1.clone();
        let old_uid = old_uid.clone();
        async move {
            fake.get("workflows", NS, &n1)
                .filter(|w| w["metadata"]["uid"] != old_uid)
        }
    })
    .await;
    assert!(new.get("status").is_none());
}

#[tokio::test]
async fn failures_cancels_and_deletes_reach_both_sides() {
    let e = env(true).await;
    let failing = e.register(crate::support::report(2)).await;
    e.wait_for("hardware", &name(2)).await;
    e.state
        .machines
        .assign(&failing, "ubuntu-24.04".into(), None)
        .await
        .unwrap();
    e.wait_for("workflows", &name(2)).await;
    let mut st = status("FAILED", ["FAILED", "PENDING", "PENDING"]);
    st["tasks"][0]["actions"][0]["message"] = json!("404 Not Found");
    e.fake.set_status("workflows", NS, &name(2), st);
    let d = e
        .wait_machine(&failing, "failed", |m| m.state == State::Failed)
        .await;
    assert_eq!(
        d.machine.status_message.as_deref(),
        Some("Tinkerbell action 'stream-image' failed: 404 Not Found")
    );

    let cancelled = e.register(crate::support::report(3)).await;
    e.wait_for("hardware", &name(3)).await;
    e.state
        .machines
        .assign(&cancelled, "debian-13".into(), None)
        .await
        .unwrap();
    e.wait_for("workflows", &name(3)).await;
    e.state.machines.cancel(&cancelled).await.unwrap();
    e.wait_gone("workflows", &name(3)).await;
    assert!(
        e.fake.get("hardware", NS, &name(3)).is_some(),
        "the machine is still known"
    );

    e.state.machines.delete(&cancelled).await.unwrap();
    e.wait_gone("hardware", &name(3)).await;
    assert!(
        e.fake.get("hardware", NS, &name(2)).is_some(),
        "only that machine's objects go"
    );
}

#[tokio::test]
async fn an_install_without_a_usable_disk_fails_the_machine_with_the_reason() {
    let e = env(true).await;
    let mut report = crate::support::report(4);
    // A SATA disk without a WWN: no /dev/disk/by-id name Dragonfly can derive.
    report["disks"] = json!([{"name": "sda", "size_bytes": 1u64 << 35, "serial": "S3Z9",
                              "transport": "sata"}]);
    let id = e.register(report).await;
    e.wait_for("hardware", &name(4)).await;
    e.state
        .machines
        .assign(&id, "debian-12".into(), None)
        .await
        .unwrap();
    let d = e
        .wait_machine(&id, "failed", |m| m.state == State::Failed)
        .await;
    let message = d.machine.status_message.unwrap_or_default();
    assert!(message.contains("/dev/disk/by-id"), "{message}");
    assert!(e.fake.get("workflows", NS, &name(4)).is_none());
}

#[tokio::test]
async fn a_pxe_boot_after_the_final_action_started_means_installed() {
    let e = env(true).await;
    let id = e.register(crate::support::report(5)).await;
    e.wait_for("hardware", &name(5)).await;
    e.state
        .machines
        .assign(&id, "debian-12".into(), None)
        .await
        .unwrap();
    e.wait_for("workflows", &name(5)).await;
    e.fake.set_status(
        "workflows",
        NS,
        &name(5),
        status("RUNNING", ["SUCCESS", "SUCCESS", "RUNNING"]),
    );
    let d = e
        .wait_machine(&id, "installing at 66%", |m| m.progress == Some(66))
        .await;
    assert_eq!(d.machine.state, State::Installing);
    // The machine reboots and PXE-boots: the real boot route serves its script and the
    // boot face puts that on the hub.
    let resp = tower::ServiceExt::oneshot(
        dragonfly::router(e.state.clone()),
        axum::http::Request::get("/boot/52-54-00-00-00-05.ipxe")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), axum::http::StatusCode::OK);
    e.wait_machine(&id, "installed", |m| m.state == State::Installed)
        .await;
}

#[tokio::test]
async fn at_start_the_glue_catches_up_with_machines_assigned_meanwhile() {
    let mut e = env(false).await;
    let id = e.register(crate::support::report(6)).await;
    e.state
        .machines
        .assign(&id, "ubuntu-22.04".into(), None)
        .await
        .unwrap();
    let other = e.register(crate::support::report(7)).await;
    e.start_glue();
    let wf = e.wait_for("workflows", &name(6)).await;
    assert_eq!(wf["spec"]["templateRef"], "dragonfly-ubuntu-22.04");
    let hw = e.wait_for("hardware", &name(7)).await;
    assert_eq!(
        hw["metadata"]["labels"]["dragonfly/machine-id"],
        other.as_str()
    );
    assert!(e.fake.get("workflows", NS, &name(7)).is_none());
}

#[tokio::test]
async fn render_prints_what_would_be_applied_without_a_cluster() {
    let e = env(false).await;
    let id = e.register(crate::support::report(8)).await;
    e.state
        .machines
        .assign(
            &id,
            "ubuntu-24.04".into(),
            Some(TargetDisk::Wwn("0x5000c50000000008".into())),
        )
        .await
        .unwrap();
    let db = e.dir.path().join("sqlite.db");
    let db = db.to_str().unwrap();
    let mut out = Vec::new();
    let cmd = tinkerbell_cmd(&["render", "--db", db, "--mac", "52-54-00-00-00-08"]);
    let code = dragonfly::cli::tinkerbell(&cmd, &mut out).await.unwrap();
    assert_eq!(code, 0);
    let text = String::from_utf8(out).unwrap();
    let docs: Vec<Value> = text
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Hardware", "Template", "Workflow"]);
    for (doc, crd) in docs.iter().zip([
        include_str!("crds/tinkerbell.org_hardware.yaml"),
        include_str!("crds/tinkerbell.org_templates.yaml"),
        include_str!("crds/tinkerbell.org_workflows.yaml"),
    ]) {
        assert_eq!(errors(&crd_schema(crd), doc), Vec::<String>::new());
    }
    assert_eq!(
        docs[0]["spec"]["disks"][0]["device"],
        "/dev/disk/by-id/wwn-0x5000c50000000008"
    );
    assert_eq!(docs[2]["spec"]["templateRef"], "dragonfly-ubuntu-24.04");

    // Another OS by name; unknown machines and OSes are errors that say so.
    let mut out = Vec::new();
    let cmd = tinkerbell_cmd(&[
        "render",
        "--db",
        db,
        "--mac",
        "52:54:00:00:00:08",
        "--os",
        "debian-13",
    ]);
    dragonfly::cli::tinkerbell(&cmd, &mut out).await.unwrap();
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("dragonfly-debian-13")
    );
    for (mac, os, want) in [
        ("52:54:00:00:00:99", None, "no machine with boot MAC"),
        ("52:54:00:00:00:08", Some("plan9"), "no OS 'plan9'"),
        ("not-a-mac", None, "--mac"),
    ] {
        let mut argv = vec!["render", "--db", db, "--mac", mac];
        if let Some(os) = os {
            argv.extend(["--os", os]);
        }
        let cmd = tinkerbell_cmd(&argv);
        let err = dragonfly::cli::tinkerbell(&cmd, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains(want), "{err:#}");
    }
}

#[tokio::test]
async fn the_commands_print_manifests_and_check_through_a_kubeconfig() {
    let e = env(false).await;
    let mut out = Vec::new();
    let code = dragonfly::cli::tinkerbell(&tinkerbell_cmd(&["manifests"]), &mut out)
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        dragonfly::tinkerbell::rbac::manifests(NS)
    );

    let kubeconfig = e.dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             users:\n- name: fake\n  user:\n    token: not-a-secret\n",
            e.fake.url
        ),
    )
    .unwrap();
    let check = tinkerbell_cmd(&["check", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    let mut out = Vec::new();
    let code = dragonfly::cli::tinkerbell(&check, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("all good"), "{text}");

    e.fake.deny("create", "workflows");
    let mut out = Vec::new();
    let code = dragonfly::cli::tinkerbell(&check, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("missing: create workflows.tinkerbell.org in namespace tink-system"),
        "{text}"
    );
    assert!(text.contains("1 problem(s) found"), "{text}");
}

#[tokio::test]
async fn a_rename_during_an_install_keeps_the_install_disk_first() {
    let e = env(true).await;
    let mut report = crate::support::report(9);
    report["disks"] = json!([
        {"name": "vda", "size_bytes": 1u64 << 34, "serial": "FIRST", "transport": "virtio"},
        {"name": "vdb", "size_bytes": 1u64 << 35, "serial": "SECOND", "transport": "virtio"},
    ]);
    let id = e.register(report).await;
    e.wait_for("hardware", &name(9)).await;
    e.state
        .machines
        .assign(
            &id,
            "debian-12".into(),
            Some(TargetDisk::Serial("SECOND".into())),
        )
        .await
        .unwrap();
    e.wait_for("workflows", &name(9)).await;
    let update = dragonfly::machines::MachineUpdate {
        hostname: Some(Some("renamed".into())),
        ..Default::default()
    };
    e.state.machines.update(&id, update).await.unwrap();
    let fake = e.fake.clone();
    let hw = eventually("the renamed Hardware", || {
        let fake = fake.clone();
        async move {
            fake.get("hardware", NS, &name(9))
                .filter(|h| h["spec"]["interfaces"][0]["dhcp"]["hostname"] == "renamed")
        }
    })
    .await;
    assert_eq!(
        hw["spec"]["disks"][0]["device"],
        "/dev/disk/by-id/virtio-SECOND"
    );
    assert_eq!(
        hw["spec"]["disks"][1]["device"],
        "/dev/disk/by-id/virtio-FIRST"
    );
    assert_eq!(
        hw["spec"]["metadata"]["instance"]["operating_system"]["os_slug"],
        "debian-12"
    );
}

/// `dragonfly tinkerbell ARGS...` as the binary parses it.
fn tinkerbell_cmd(args: &[&str]) -> TinkerbellCommand {
    let argv = ["dragonfly", "tinkerbell"].iter().chain(args).copied();
    match dragonfly::config::parse(argv).unwrap().command {
        Some(Command::Tinkerbell(cmd)) => cmd,
        other => panic!("not a tinkerbell command: {other:?}"),
    }
}
