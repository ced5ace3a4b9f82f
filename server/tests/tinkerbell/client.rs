//! The writer and the workflow follower against the fake API server.

use std::pin::Pin;
use std::time::Duration;

use dragonfly::tinkerbell::follow::follow;
use dragonfly::tinkerbell::objects::{self, MachineFacts};
use dragonfly::tinkerbell::templates::OsFacts;
use dragonfly::tinkerbell::writer::Applied;
use dragonfly::tinkerbell::{BootSignal, Error, FollowOptions, Phase, WorkflowUpdate, rbac};
use dragonfly_proto::{Disk, Transport};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::fake::FakeApi;
use super::objects::{current_status, legacy_status};
use super::{NS, clock, fast, tink};

const MAC: &str = "52:54:00:00:00:01";
const NAME: &str = "dragonfly-52-54-00-00-00-01";

fn machine() -> MachineFacts {
    MachineFacts {
        id: "9a3c1a52-0000-4000-8000-000000000001".into(),
        mac: MAC.into(),
        hostname: Some("node-1".into()),
        arch: Some("x86_64".into()),
        disks: vec![Disk {
            name: "vda".into(),
            serial: Some("DISK-1".into()),
            transport: Some(Transport::Virtio),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn debian() -> OsFacts {
    OsFacts {
        slug: "debian-12".into(),
        name: "Debian 12".into(),
        family: "debian".into(),
        version: "12".into(),
        arch: "x86_64".into(),
        image_url: "http://images.example/debian-12-generic-amd64.raw".into(),
    }
}

fn count(fake: &FakeApi, prefix: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.starts_with(prefix))
        .count()
}

#[tokio::test]
async fn hardware_is_created_then_reread_and_patched_on_conflict() {
    let fake = FakeApi::start().await;
    let t = tink(&fake);
    let m = machine();
    let hw = objects::hardware(&m, None, NS).unwrap();
    assert_eq!(t.apply_hardware(&hw).await.unwrap(), Applied::Created);
    let stored = fake.get("hardware", NS, NAME).unwrap();
    assert_eq!(
        stored["spec"]["interfaces"][0]["dhcp"]["hostname"],
        "node-1"
    );
    // The API server filled in the CRD default; that is not a difference.
    assert_eq!(stored["spec"]["interfaces"][0]["disableDhcp"], false);
    assert_eq!(t.apply_hardware(&hw).await.unwrap(), Applied::Unchanged);
    assert_eq!(count(&fake, "PATCH"), 0);

    // Renamed, and an OS assigned: create says 409, so re-read and patch.
    let mut renamed = m.clone();
    renamed.hostname = Some("node-1b".into());
    let hw2 = objects::hardware(&renamed, Some(&debian()), NS).unwrap();
    assert_eq!(t.apply_hardware(&hw2).await.unwrap(), Applied::Updated);
    let stored = fake.get("hardware", NS, NAME).unwrap();
    assert_eq!(
        stored["spec"]["interfaces"][0]["dhcp"]["hostname"],
        "node-1b"
    );
    assert_eq!(
        stored["spec"]["metadata"]["instance"]["hostname"],
        "node-1b"
    );
    assert_eq!(
        stored["spec"]["metadata"]["instance"]["operating_system"]["os_slug"],
        "debian-12"
    );
    let tail: Vec<String> = fake.requests().into_iter().rev().take(3).collect();
    assert!(tail[2].starts_with("POST "), "{tail:?}");
    assert!(
        tail[1].starts_with(&format!(
            "GET /apis/tinkerbell.org/v1alpha1/namespaces/{NS}/hardware/{NAME}"
        )),
        "{tail:?}"
    );
    assert!(tail[0].starts_with("PATCH "), "{tail:?}");

    // The host name cleared and the OS withdrawn: a merge patch must remove them.
    let mut cleared = m.clone();
    cleared.hostname = None;
    let hw3 = objects::hardware(&cleared, None, NS).unwrap();
    assert_eq!(t.apply_hardware(&hw3).await.unwrap(), Applied::Updated);
    let stored = fake.get("hardware", NS, NAME).unwrap();
    let instance = &stored["spec"]["metadata"]["instance"];
    assert!(instance.get("hostname").is_none(), "{instance}");
    assert!(instance.get("operating_system").is_none(), "{instance}");
    assert!(
        stored["spec"]["interfaces"][0]["dhcp"]
            .get("hostname")
            .is_none()
    );
}

#[tokio::test]
async fn objects_dragonfly_does_not_manage_are_left_alone() {
    let fake = FakeApi::start().await;
    let foreign = json!({
        "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
        "metadata": {"name": NAME},
        "spec": {"interfaces": [{"dhcp": {"mac": MAC, "hostname": "hand-made"}}]},
    });
    fake.insert("hardware", NS, foreign);
    let hw = objects::hardware(&machine(), None, NS).unwrap();
    let err = tink(&fake).apply_hardware(&hw).await.unwrap_err();
    assert!(matches!(err, Error::NotManaged { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("app.kubernetes.io/managed-by=dragonfly"),
        "{err}"
    );
    let stored = fake.get("hardware", NS, NAME).unwrap();
    assert_eq!(
        stored["spec"]["interfaces"][0]["dhcp"]["hostname"],
        "hand-made"
    );
    assert_eq!(count(&fake, "PATCH"), 0);
}

#[tokio::test]
async fn a_concurrent_write_makes_dragonfly_read_again_and_retry() {
    let fake = FakeApi::start().await;
    let t = tink(&fake);
    let m = machine();
    t.apply_hardware(&objects::hardware(&m, None, NS).unwrap())
        .await
        .unwrap();
    let mut renamed = m.clone();
    renamed.hostname = Some("node-2".into());
    let hw = objects::hardware(&renamed, None, NS).unwrap();
    fake.fail_next_patches(1);
    assert_eq!(t.apply_hardware(&hw).await.unwrap(), Applied::Updated);
    assert_eq!(count(&fake, "PATCH"), 2);
    assert_eq!(
        count(
            &fake,
            &format!("GET /apis/tinkerbell.org/v1alpha1/namespaces/{NS}/hardware/{NAME}")
        ),
        2
    );
    // Someone who never stops writing: Dragonfly gives up with a clear error.
    renamed.hostname = Some("node-3".into());
    fake.fail_next_patches(100);
    let err = t
        .apply_hardware(&objects::hardware(&renamed, None, NS).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn an_object_the_crd_rejects_is_an_error_not_a_retry() {
    let fake = FakeApi::start().await;
    let mut hw = objects::hardware(&machine(), None, NS).unwrap();
    // An upper-case MAC breaks the CRD's pattern; the (fake) API server says 422.
    hw.spec.interfaces[0].dhcp.as_mut().unwrap().mac = Some("52:54:00:AA:00:01".into());
    let err = tink(&fake).apply_hardware(&hw).await.unwrap_err();
    assert!(
        matches!(&err, Error::Kube(kube::Error::Api(e)) if e.code == 422),
        "{err}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn workflows_start_once_and_a_finished_one_is_replaced() {
    let fake = FakeApi::start().await;
    let t = tink(&fake);
    let m = machine();
    let os = debian();
    let template = objects::template(&os, t.settings(), NS).unwrap();
    assert_eq!(t.apply_template(&template).await.unwrap(), Applied::Created);
    assert_eq!(
        t.apply_template(&template).await.unwrap(),
        Applied::Unchanged
    );
    let wf = objects::workflow(&m, &os, NS).unwrap();
    assert_eq!(t.start_workflow(&wf).await.unwrap(), Applied::Created);
    let first_uid = fake.get("workflows", NS, NAME).unwrap()["metadata"]["uid"].clone();
    // The same install asked for again (a replayed event) keeps a workflow not yet started.
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("PENDING", &[("stream-image", "PENDING")]),
    );
    assert_eq!(t.start_workflow(&wf).await.unwrap(), Applied::Unchanged);
    assert_eq!(
        fake.get("workflows", NS, NAME).unwrap()["metadata"]["uid"],
        first_uid
    );
    // Catching up after a restart keeps one that is running...
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("RUNNING", &[("stream-image", "RUNNING")]),
    );
    assert_eq!(t.ensure_workflow(&wf).await.unwrap(), Applied::Unchanged);
    assert_eq!(
        fake.get("workflows", NS, NAME).unwrap()["metadata"]["uid"],
        first_uid
    );
    // ...but a new install (a reimage) replaces it, as it replaces a finished one.
    assert_eq!(t.start_workflow(&wf).await.unwrap(), Applied::Created);
    let second = fake.get("workflows", NS, NAME).unwrap();
    assert_ne!(second["metadata"]["uid"], first_uid);
    assert!(second.get("status").is_none());
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("SUCCESS", &[("stream-image", "SUCCESS")]),
    );
    assert_eq!(t.ensure_workflow(&wf).await.unwrap(), Applied::Created);
    assert_ne!(
        fake.get("workflows", NS, NAME).unwrap()["metadata"]["uid"],
        second["metadata"]["uid"]
    );
    // Cancel and delete remove what belongs to the machine, and only that.
    let mut other = machine();
    other.id = "9a3c1a52-0000-4000-8000-000000000002".into();
    other.mac = "52:54:00:00:00:02".into();
    t.start_workflow(&objects::workflow(&other, &os, NS).unwrap())
        .await
        .unwrap();
    t.apply_hardware(&objects::hardware(&m, None, NS).unwrap())
        .await
        .unwrap();
    assert_eq!(t.delete_workflows(&m.id).await.unwrap(), 1);
    assert_eq!(t.delete_hardware(&m.id).await.unwrap(), 1);
    assert_eq!(t.delete_workflows(&m.id).await.unwrap(), 0);
    assert!(fake.get("workflows", NS, NAME).is_none());
    assert!(fake.get("hardware", NS, NAME).is_none());
    assert_eq!(
        fake.objects("workflows").len(),
        1,
        "the other machine's stays"
    );
}

type Updates = Pin<Box<dyn Stream<Item = WorkflowUpdate> + Send>>;

struct Following {
    updates: Updates,
    boots: mpsc::UnboundedSender<BootSignal>,
}

fn start_following(fake: &FakeApi, opts: FollowOptions) -> Following {
    let (tx, rx) = mpsc::unbounded_channel();
    let updates = follow(
        tink(fake).workflow_api(),
        UnboundedReceiverStream::new(rx),
        clock(),
        opts,
    );
    Following {
        updates: Box::pin(updates),
        boots: tx,
    }
}

async fn next(f: &mut Following) -> WorkflowUpdate {
    tokio::time::timeout(Duration::from_secs(15), f.updates.next())
        .await
        .expect("no workflow update in time")
        .expect("the update stream ended")
}

async fn create_workflow(fake: &FakeApi, m: &MachineFacts) {
    tink(fake)
        .start_workflow(&objects::workflow(m, &debian(), NS).unwrap())
        .await
        .unwrap();
}

fn running(progress: u8, action: &str) -> Phase {
    Phase::Running {
        progress,
        action: action.into(),
    }
}

const THREE: [&str; 3] = ["stream-image", "write-cloud-init", "reboot"];

fn actions(states: [&'static str; 3]) -> Vec<(&'static str, &'static str)> {
    THREE.iter().copied().zip(states).collect()
}

#[tokio::test]
async fn progress_and_success_are_followed_in_the_current_shape() {
    let fake = FakeApi::start().await;
    let m = machine();
    create_workflow(&fake, &m).await;
    let mut f = start_following(&fake, fast());
    let st = |s, a| current_status(s, &actions(a));
    fake.set_status(
        "workflows",
        NS,
        NAME,
        st("PENDING", ["PENDING", "PENDING", "PENDING"]),
    );
    fake.set_status(
        "workflows",
        NS,
        NAME,
        st("RUNNING", ["RUNNING", "PENDING", "PENDING"]),
    );
    let u = next(&mut f).await;
    assert_eq!(u.phase, running(0, "stream-image"), "pending says nothing");
    assert_eq!(u.machine_id.as_deref(), Some(m.id.as_str()));
    assert_eq!(u.mac.as_deref(), Some(MAC));
    assert_eq!(u.os.as_deref(), Some("debian-12"));
    assert_eq!(u.workflow, NAME);
    fake.set_status(
        "workflows",
        NS,
        NAME,
        st("RUNNING", ["SUCCESS", "RUNNING", "PENDING"]),
    );
    assert_eq!(next(&mut f).await.phase, running(33, "write-cloud-init"));
    fake.set_status(
        "workflows",
        NS,
        NAME,
        st("SUCCESS", ["SUCCESS", "SUCCESS", "SUCCESS"]),
    );
    assert_eq!(next(&mut f).await.phase, Phase::Succeeded);
}

#[tokio::test]
async fn the_legacy_shape_is_followed_too_and_failures_carry_the_reason() {
    let fake = FakeApi::start().await;
    create_workflow(&fake, &machine()).await;
    let mut f = start_following(&fake, fast());
    let mut st = legacy_status("RUNNING", &actions(["SUCCESS", "RUNNING", "PENDING"]));
    fake.set_status("workflows", NS, NAME, st.clone());
    assert_eq!(next(&mut f).await.phase, running(33, "write-cloud-init"));
    st["state"] = json!("STATE_FAILED");
    st["tasks"][0]["actions"][1]["status"] = json!("STATE_FAILED");
    st["tasks"][0]["actions"][1]["message"] = json!("mount: wrong fs type");
    fake.set_status("workflows", NS, NAME, st);
    assert_eq!(
        next(&mut f).await.phase,
        Phase::Failed {
            message: "Tinkerbell action 'write-cloud-init' failed: mount: wrong fs type".into()
        }
    );
}

#[tokio::test]
async fn workflows_written_by_others_are_not_followed() {
    let fake = FakeApi::start().await;
    fake.insert(
        "workflows",
        NS,
        json!({"apiVersion": "tinkerbell.org/v1alpha1", "kind": "Workflow",
               "metadata": {"name": "someone-elses"}, "spec": {"templateRef": "x"}}),
    );
    create_workflow(&fake, &machine()).await;
    let mut f = start_following(&fake, fast());
    fake.set_status(
        "workflows",
        NS,
        "someone-elses",
        current_status("RUNNING", &actions(["RUNNING", "PENDING", "PENDING"])),
    );
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("SUCCESS", &actions(["SUCCESS", "SUCCESS", "SUCCESS"])),
    );
    let u = next(&mut f).await;
    assert_eq!(u.workflow, NAME);
    assert!(fake.requests().iter().any(|r| r.contains("workflows?")
        && r.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Ddragonfly")));
}

#[tokio::test]
async fn the_watch_resumes_after_the_api_server_is_gone_and_back() {
    let fake = FakeApi::start().await;
    create_workflow(&fake, &machine()).await;
    let mut f = start_following(&fake, fast());
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("RUNNING", &actions(["RUNNING", "PENDING", "PENDING"])),
    );
    assert_eq!(next(&mut f).await.phase, running(0, "stream-image"));
    let lists = count_lists(&fake);

    fake.stop().await;
    // Progress made while Dragonfly cannot see it.
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("RUNNING", &actions(["SUCCESS", "RUNNING", "PENDING"])),
    );
    // Long enough for several failed attempts (connection refused) with backoff.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.restart().await;
    assert_eq!(next(&mut f).await.phase, running(33, "write-cloud-init"));
    // Resumed from its resource version: no second list was needed.
    let lists_after = count_lists(&fake);
    assert_eq!(lists, lists_after, "{:#?}", fake.requests());
    // And the stream goes on.
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("SUCCESS", &actions(["SUCCESS", "SUCCESS", "SUCCESS"])),
    );
    assert_eq!(next(&mut f).await.phase, Phase::Succeeded);
}

fn count_watches(fake: &FakeApi) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.contains("/workflows?") && r.contains("watch=true"))
        .count()
}

fn count_lists(fake: &FakeApi) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/workflows?") && !r.contains("watch=true"))
        .count()
}

#[tokio::test]
async fn after_410_gone_the_watch_lists_again() {
    let fake = FakeApi::start().await;
    let m = machine();
    create_workflow(&fake, &m).await;
    let mut f = start_following(&fake, fast());
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("RUNNING", &actions(["RUNNING", "PENDING", "PENDING"])),
    );
    assert_eq!(next(&mut f).await.phase, running(0, "stream-image"));
    assert_eq!(count_lists(&fake), 1);

    fake.stop().await;
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("RUNNING", &actions(["SUCCESS", "SUCCESS", "RUNNING"])),
    );
    // A second machine's workflow appears, and the history Dragonfly would resume from is gone.
    let mut other = machine();
    other.id = "9a3c1a52-0000-4000-8000-000000000002".into();
    other.mac = "52:54:00:00:00:02".into();
    let wf2 = objects::workflow(&other, &debian(), NS).unwrap();
    let mut wf2 = serde_json::to_value(&wf2).unwrap();
    wf2["status"] = current_status("FAILED", &actions(["FAILED", "PENDING", "PENDING"]));
    fake.insert("workflows", NS, wf2);
    fake.compact();
    fake.restart().await;

    let mut got: Vec<WorkflowUpdate> = vec![next(&mut f).await, next(&mut f).await];
    got.sort_by(|a, b| a.workflow.cmp(&b.workflow));
    assert_eq!(got[0].phase, running(66, "reboot"));
    assert!(matches!(got[1].phase, Phase::Failed { .. }), "{:?}", got[1]);
    assert_eq!(
        count_lists(&fake),
        2,
        "a relist after 410 Gone: {:#?}",
        fake.requests()
    );

    // And the stream goes on after the relist.
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("SUCCESS", &actions(["SUCCESS", "SUCCESS", "SUCCESS"])),
    );
    assert_eq!(next(&mut f).await.phase, Phase::Succeeded);
}

#[tokio::test]
async fn a_silent_final_action_ends_with_a_boot_or_fails_after_the_timeout() {
    let fake = FakeApi::start().await;
    let m = machine();
    create_workflow(&fake, &m).await;
    let mut f = start_following(&fake, fast());
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("RUNNING", &actions(["SUCCESS", "SUCCESS", "RUNNING"])),
    );
    assert_eq!(next(&mut f).await.phase, running(66, "reboot"));
    f.boots
        .send(BootSignal {
            mac: MAC.into(),
            at_ms: dragonfly::clock::Clock::now_ms(&dragonfly::clock::SystemClock) + 1,
        })
        .unwrap();
    assert_eq!(next(&mut f).await.phase, Phase::Succeeded);

    // Another install whose machine never shows up again.
    let fake = FakeApi::start().await;
    create_workflow(&fake, &m).await;
    let mut f = start_following(
        &fake,
        FollowOptions {
            final_action_timeout: Duration::from_millis(300),
            ..fast()
        },
    );
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("RUNNING", &actions(["SUCCESS", "SUCCESS", "RUNNING"])),
    );
    assert_eq!(next(&mut f).await.phase, running(66, "reboot"));
    let Phase::Failed { message } = next(&mut f).await.phase else {
        panic!("not failed")
    };
    assert!(
        message.contains("'reboot'") && message.contains("console"),
        "{message}"
    );
}

#[tokio::test]
async fn check_lists_exactly_what_is_missing() {
    let fake = FakeApi::start().await;
    let report = rbac::check(&tink(&fake)).await;
    assert_eq!(report.missing, Vec::<String>::new());
    assert!(
        report.lines.iter().any(|l| l.contains("v1.32.0-fake")),
        "{report:?}"
    );
    assert_eq!(
        report
            .lines
            .iter()
            .filter(|l| l.starts_with("ok: "))
            .count(),
        1 + rbac::permissions().len() + 3
    );

    fake.deny("watch", "workflows");
    fake.deny("get", "workflows/status");
    fake.hide("templates");
    let report = rbac::check(&tink(&fake)).await;
    assert_eq!(
        report.missing,
        vec![
            format!("missing: watch workflows.tinkerbell.org in namespace {NS}"),
            format!("missing: get workflows/status.tinkerbell.org in namespace {NS}"),
            "missing: the Template CRD (templates.tinkerbell.org): install Tinkerbell".to_string(),
        ]
    );
}

#[tokio::test]
async fn check_says_when_the_api_server_is_unreachable() {
    let fake = FakeApi::start().await;
    let t = tink(&fake);
    fake.stop().await;
    let report = rbac::check(&t).await;
    assert_eq!(report.missing.len(), 1, "{report:?}");
    assert!(
        report.missing[0].starts_with("cannot reach the Kubernetes API server"),
        "{report:?}"
    );
}

/// Keeps the JSON helpers honest: a status built here is what the fake stores.
#[tokio::test]
async fn the_fake_keeps_status_out_of_create() {
    let fake = FakeApi::start().await;
    let mut wf: Value =
        serde_json::to_value(objects::workflow(&machine(), &debian(), NS).unwrap()).unwrap();
    wf["status"] = json!({"state": "SUCCESS"});
    let wf: dragonfly::tinkerbell::Workflow = serde_json::from_value(wf).unwrap();
    tink(&fake).start_workflow(&wf).await.unwrap();
    assert!(
        fake.get("workflows", NS, NAME)
            .unwrap()
            .get("status")
            .is_none()
    );
}

#[tokio::test]
async fn a_watch_the_server_ends_is_resumed_without_a_new_list() {
    let fake = FakeApi::start().await;
    create_workflow(&fake, &machine()).await;
    let mut f = start_following(&fake, fast());
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("RUNNING", &actions(["RUNNING", "PENDING", "PENDING"])),
    );
    assert_eq!(next(&mut f).await.phase, running(0, "stream-image"));
    let watches = count_watches(&fake);
    fake.end_watches();
    fake.set_status(
        "workflows",
        NS,
        NAME,
        current_status("RUNNING", &actions(["SUCCESS", "RUNNING", "PENDING"])),
    );
    assert_eq!(next(&mut f).await.phase, running(33, "write-cloud-init"));
    assert_eq!(count_lists(&fake), 1);
    assert!(count_watches(&fake) > watches, "{:#?}", fake.requests());
}
