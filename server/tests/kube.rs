//! The Tinkerbell backend against a real Kubernetes API server: kube-apiserver 1.20 and etcd
//! on loopback, built and started by `scripts/kube.sh` (RBAC, token authentication, the
//! Tinkerbell CRDs copied unmodified into `tinkerbell/crds/`). The real `dragonfly` binary
//! authenticates as the ServiceAccount `dragonfly tinkerbell manifests` creates, with a token
//! the API server mints; only the set-up (namespaces, applying the manifests, the status
//! patches tink-controller would make) uses the admin token.
//!
//! ```sh
//! scripts/kube.sh start /tmp/kube
//! DRAGONFLY_KUBE_DIR=/tmp/kube cargo test -p dragonfly --test kube -- --ignored --test-threads=1
//! scripts/kube.sh stop /tmp/kube
//! ```
//!
//! Ignored by default (they need that server); `scripts/test` runs them. One at a time: one
//! test swaps the cluster's CRDs for the legacy set and back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;
#[path = "tinkerbell/status.rs"]
mod status;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dragonfly_testkit::{expect_json, report, wait_for};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use binary::{Running, authed_client, dragonfly, wait_healthy};
use status::{current_status, legacy_status};

const WAIT: Duration = Duration::from_secs(30);

/// The running API server (`DRAGONFLY_KUBE_DIR`, written by `scripts/kube.sh start`).
struct Cluster {
    dir: PathBuf,
    url: String,
    ca: String,
    admin: Client,
    /// Plain HTTPS as the admin, for what kubectl would send as YAML.
    http: reqwest::Client,
}

async fn cluster() -> Cluster {
    let dir = PathBuf::from(std::env::var("DRAGONFLY_KUBE_DIR").expect(
        "DRAGONFLY_KUBE_DIR is not set: start a server with `scripts/kube.sh start DIR` first",
    ));
    let env = std::fs::read_to_string(dir.join("env")).expect("DIR/env of scripts/kube.sh");
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let admin = client_from(&dir.join("kubeconfig")).await;
    let ca = std::fs::read(var("KUBE_CA")).unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {}", var("KUBE_ADMIN_TOKEN"))
            .parse()
            .unwrap(),
    );
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .default_headers(headers)
        .build()
        .unwrap();
    Cluster {
        url: var("KUBE_URL"),
        ca: var("KUBE_CA"),
        dir,
        admin,
        http,
    }
}

async fn client_from(kubeconfig: &Path) -> Client {
    let k = Kubeconfig::read_from(kubeconfig).unwrap();
    let c = kube::Config::from_custom_kubeconfig(k, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(c).unwrap()
}

fn resource(plural: &str, kind: &str) -> ApiResource {
    ApiResource {
        group: "tinkerbell.org".into(),
        version: "v1alpha1".into(),
        api_version: "tinkerbell.org/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// A namespace of its own for one test, with Dragonfly's ServiceAccount, Role and RoleBinding
/// applied from `dragonfly tinkerbell manifests`, and a kubeconfig holding a token the API
/// server minted for that account.
struct Tenant {
    ns: String,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Makes sure the cluster serves `set` ("current" or "legacy") CRDs.
    fn crds(&self, set: &str) {
        let now = std::fs::read_to_string(self.dir.join("crds")).unwrap_or_default();
        if now.trim() != set {
            let ok = Command::new(dragonfly_workspace().join("scripts/kube.sh"))
                .args(["crds", self.dir.to_str().unwrap(), set])
                .status()
                .unwrap();
            assert!(ok.success(), "scripts/kube.sh crds {set}");
        }
    }

    async fn tenant(&self, name: &str) -> Tenant {
        let ns = format!("{name}-{}", std::process::id());
        let namespaces: Api<Namespace> = Api::all(self.admin.clone());
        let _ = namespaces
            .delete(&ns, &Default::default())
            .await
            .map(|_| ());
        wait_for(WAIT, "the old namespace to go", || async {
            namespaces
                .get_opt(&ns)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        })
        .await
        .unwrap();
        let mut n = Namespace::default();
        n.metadata.name = Some(ns.clone());
        namespaces.create(&PostParams::default(), &n).await.unwrap();

        let out = dragonfly()
            .args(["tinkerbell", "manifests", "--tinkerbell-namespace", &ns])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        for doc in documents(&text) {
            let (status, body) = self.post_yaml(&ns, doc, false).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let pp = PostParams::default();
        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), &ns);
        let token = accounts
            .create_token_request(
                "dragonfly",
                &pp,
                &TokenRequest {
                    spec: TokenRequestSpec {
                        expiration_seconds: Some(3600),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .status
            .unwrap()
            .token;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    \
                 certificate-authority: {}\nusers:\n- name: dragonfly\n  user:\n    token: {token}\n\
                 contexts:\n- name: c\n  context: {{cluster: c, user: dragonfly, namespace: {ns}}}\n\
                 current-context: c\n",
                self.url, self.ca
            ),
        )
        .unwrap();
        Tenant {
            ns,
            kubeconfig,
            _dir: dir,
        }
    }

    /// Sends one YAML document to the API server as kubectl does (the server's own YAML
    /// reader), as the admin; `dry_run`: admission and validation in full, nothing stored.
    /// Returns the status and body.
    async fn post_yaml(&self, ns: &str, doc: &str, dry_run: bool) -> (StatusCode, String) {
        let v = serde_yaml::Value::deserialize(serde_yaml::Deserializer::from_str(doc)).unwrap();
        let obj: DynamicObject = serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
        let gvk = kube::core::GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
        let (ar, _) = kube::discovery::pinned_kind(&self.admin, &gvk)
            .await
            .unwrap();
        let base = if ar.group.is_empty() {
            format!("{}/api/{}", self.url, ar.version)
        } else {
            format!("{}/apis/{}/{}", self.url, ar.group, ar.version)
        };
        let dry = if dry_run { "dryRun=All&" } else { "" };
        let r = self
            .http
            .post(format!(
                "{base}/namespaces/{ns}/{}?{dry}fieldManager=kubectl",
                ar.plural
            ))
            .header("content-type", "application/yaml")
            .body(doc.to_string())
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    fn api(&self, t: &Tenant, plural: &str, kind: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.admin.clone(), &t.ns, &resource(plural, kind))
    }

    /// Waits until the object exists and returns it as JSON.
    async fn object(&self, t: &Tenant, plural: &str, kind: &str, name: &str) -> Value {
        let api = self.api(t, plural, kind);
        wait_for(WAIT, &format!("{plural}/{name}"), || async {
            api.get_opt(name)
                .await
                .unwrap()
                .map(|o| serde_json::to_value(o).unwrap())
        })
        .await
        .unwrap()
    }

    /// Writes a Workflow's status the way tink-controller does: through the status
    /// subresource.
    async fn set_status(&self, t: &Tenant, name: &str, status: Value) {
        self.api(t, "workflows", "Workflow")
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .unwrap();
    }
}

/// The YAML documents of a manifest file.
fn documents(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n---\n").filter(|d| d.contains("kind:"))
}

fn dragonfly_workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

fn check(t: &Tenant) -> (bool, String) {
    let out = dragonfly()
        .args(["tinkerbell", "check", "--kubeconfig"])
        .arg(&t.kubeconfig)
        .args(["--tinkerbell-namespace", &t.ns])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver: scripts/kube.sh start DIR, then DRAGONFLY_KUBE_DIR=DIR"]
async fn check_passes_as_the_service_account_and_names_a_removed_verb() {
    let c = cluster().await;
    c.crds("current");
    let t = c.tenant("df-check").await;
    // RBAC reaches the authorizer through its informer: allow it a moment.
    let (ok, text) = wait_for(WAIT, "check to pass", || async {
        let r = check(&t);
        r.0.then_some(r)
    })
    .await
    .unwrap_or_else(|_| check(&t));
    assert!(ok, "{text}");
    assert!(text.contains("connected to Kubernetes v1.20"), "{text}");
    assert!(!text.contains("missing"), "{text}");

    // The Role loses "delete": check fails and says so.
    let roles: Api<Role> = Api::namespaced(c.admin.clone(), &t.ns);
    let mut role = roles.get("dragonfly").await.unwrap();
    let rules = role.rules.as_mut().unwrap();
    rules[0].verbs.retain(|v| v != "delete");
    roles
        .replace("dragonfly", &PostParams::default(), &role)
        .await
        .unwrap();
    let text = wait_for(WAIT, "check to name the missing verb", || async {
        let (ok, text) = check(&t);
        (!ok && text.contains("missing")).then_some(text)
    })
    .await
    .unwrap();
    assert!(
        text.lines()
            .filter(|l| l.contains("missing"))
            .all(|l| l.contains("delete")),
        "{text}"
    );
    assert!(!text.contains("missing: get"), "{text}");
}

/// The machine as the binary's API shows it.
async fn machine(http: &reqwest::Client, url: &str, id: &str) -> Value {
    expect_json(
        http.get(format!("{url}/api/v1/machines/{id}"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await
}

async fn wait_machine(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let ok = &ok;
    wait_for(WAIT, what, || async move {
        let m = machine(http, url, id).await;
        ok(&m).then_some(m)
    })
    .await
    .unwrap()
}

/// The binary in `dir` (its sqlite.db), driving Tinkerbell in the tenant's namespace as the
/// tenant's ServiceAccount, reconciling every second.
async fn start(dir: &Path, t: &Tenant, http: &reqwest::Client) -> Running {
    let kubeconfig = t.kubeconfig.to_str().unwrap().to_string();
    let df = Running::start(
        dir,
        &[
            "--tinkerbell",
            "on",
            "--kubeconfig",
            &kubeconfig,
            "--tinkerbell-namespace",
            &t.ns,
            "--tink-reconcile-interval",
            "1s",
        ],
        &[("RUST_LOG", "info,dragonfly::tinkerbell::follow=debug")],
    );
    let health = wait_healthy(http, &df.url).await;
    assert_eq!(health["installer"], "tinkerbell", "{health}");
    df
}

/// Registers machine `n` (`report(n)`) as its agent would; returns its id.
async fn register(http: &reqwest::Client, url: &str, n: u32) -> String {
    let r = expect_json(
        http.post(format!("{url}/api/v1/agent/register"))
            .json(&json!({"agent_version": "t", "protocol": 1, "report": report(n)}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    r["machine_id"].as_str().unwrap().to_string()
}

async fn assign(http: &reqwest::Client, url: &str, id: &str) {
    let r = http
        .post(format!("{url}/api/v1/machines/{id}/assign"))
        .json(&json!({"os": "debian-12"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

/// The Tinkerbell object name of machine `n`.
fn name(n: u32) -> String {
    format!("dragonfly-52-54-00-00-00-{n:02x}")
}

const THREE: [&str; 3] = ["stream-image", "write-cloud-init", "reboot"];

fn actions(states: [&'static str; 3]) -> Vec<(&'static str, &'static str)> {
    THREE.iter().copied().zip(states).collect()
}

/// The binary driving Tinkerbell in the tenant's namespace as its ServiceAccount: a machine
/// registers (Hardware), is assigned (Template, Workflow), and follows the Workflow's status
/// written in `shape` to installing, installed; a second machine to failed.
async fn the_whole_flow(set: &str, shape: fn(&str, &[(&str, &str)]) -> Value) {
    let c = cluster().await;
    c.crds(set);
    let t = c.tenant(&format!("df-flow-{set}")).await;
    let dir = tempfile::tempdir().unwrap();
    let http = authed_client(dir.path());
    let df = start(dir.path(), &t, &http).await;
    let ids = [
        register(&http, &df.url, 1).await,
        register(&http, &df.url, 2).await,
    ];
    let hw = c.object(&t, "hardware", "Hardware", &name(1)).await;
    assert_eq!(hw["metadata"]["labels"]["dragonfly/machine-id"], ids[0]);
    assert_eq!(
        hw["spec"]["interfaces"][0]["dhcp"]["mac"],
        "52:54:00:00:00:01"
    );
    assert_eq!(
        hw["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "dragonfly"
    );

    for id in &ids {
        assign(&http, &df.url, id).await;
    }
    let wf = c.object(&t, "workflows", "Workflow", &name(1)).await;
    assert_eq!(wf["spec"]["templateRef"], "dragonfly-debian-12");
    assert_eq!(wf["spec"]["hardwareMap"]["device_1"], "52:54:00:00:00:01");
    let template = c
        .object(&t, "templates", "Template", "dragonfly-debian-12")
        .await;
    assert!(
        template["spec"]["data"]
            .as_str()
            .unwrap()
            .contains("debian-12"),
        "{template}"
    );
    c.object(&t, "workflows", "Workflow", &name(2)).await;

    c.set_status(
        &t,
        &name(1),
        shape("RUNNING", &actions(["SUCCESS", "RUNNING", "PENDING"])),
    )
    .await;
    let m = wait_machine(&http, &df.url, &ids[0], "installing at 33%", |m| {
        m["state"] == "installing" && m["progress"] == 33
    })
    .await;
    assert_eq!(m["status_message"], "write-cloud-init", "{m}");
    c.set_status(
        &t,
        &name(1),
        shape("SUCCESS", &actions(["SUCCESS", "SUCCESS", "SUCCESS"])),
    )
    .await;
    wait_machine(&http, &df.url, &ids[0], "installed", |m| {
        m["state"] == "installed"
    })
    .await;

    c.set_status(
        &t,
        &name(2),
        shape("FAILED", &actions(["FAILED", "PENDING", "PENDING"])),
    )
    .await;
    let m = wait_machine(&http, &df.url, &ids[1], "failed", |m| {
        m["state"] == "failed"
    })
    .await;
    assert!(
        m["status_message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Tinkerbell action 'stream-image' failed"),
        "{m}"
    );

    // The installed machine's next PXE boot goes to its disk.
    let script = http
        .get(format!("{}/boot/52-54-00-00-00-01.ipxe", df.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(script.contains("exit 1"), "{script}");
    df.stop();
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver: scripts/kube.sh start DIR, then DRAGONFLY_KUBE_DIR=DIR"]
async fn registration_assignment_and_status_with_the_current_crds() {
    the_whole_flow("current", current_status).await;
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver: scripts/kube.sh start DIR, then DRAGONFLY_KUBE_DIR=DIR"]
async fn registration_assignment_and_status_with_the_legacy_crds() {
    the_whole_flow("legacy", legacy_status).await;
    cluster().await.crds("current");
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver: scripts/kube.sh start DIR, then DRAGONFLY_KUBE_DIR=DIR"]
async fn the_deployment_manifests_pass_a_server_side_dry_run() {
    let c = cluster().await;
    let ns = format!("df-deploy-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(c.admin.clone());
    if namespaces.get_opt(&ns).await.unwrap().is_none() {
        let mut n = Namespace::default();
        n.metadata.name = Some(ns.clone());
        namespaces.create(&PostParams::default(), &n).await.unwrap();
    }
    let out = dragonfly()
        .args([
            "tinkerbell",
            "manifests",
            "--deploy",
            "--tinkerbell-namespace",
            &ns,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // Each document as kubectl would send it: the YAML itself, read by the API server's own
    // YAML reader (YAML 1.1: a bare `on` would be a boolean), with a server-side dry run,
    // which runs admission and validation in full and stores nothing.
    let mut kinds = Vec::new();
    for doc in documents(&text) {
        let v = serde_yaml::Value::deserialize(serde_yaml::Deserializer::from_str(doc)).unwrap();
        let obj: DynamicObject = serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
        let kind = obj.types.clone().unwrap().kind;
        let (status, body) = c.post_yaml(&ns, doc, true).await;
        assert_eq!(status, StatusCode::CREATED, "{kind} refused: {body}");
        let gvk = kube::core::GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
        let (ar, _) = kube::discovery::pinned_kind(&c.admin, &gvk).await.unwrap();
        let api: Api<DynamicObject> = Api::namespaced_with(c.admin.clone(), &ns, &ar);
        assert!(
            api.get_opt(obj.metadata.name.as_deref().unwrap())
                .await
                .unwrap()
                .is_none()
        );
        kinds.push(kind);
    }
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "PersistentVolumeClaim",
            "Deployment",
            "Service",
            "Service"
        ]
    );
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    // And a broken one is refused: the check can fail.
    let mut bad: Value = serde_json::to_value(
        serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde_yaml::Value::deserialize(d).unwrap())
            .find(|v| v["kind"].as_str() == Some("Deployment"))
            .unwrap(),
    )
    .unwrap();
    bad["spec"]["replicas"] = json!(-1);
    let obj: DynamicObject = serde_json::from_value(bad).unwrap();
    let ar = ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "apps",
        "v1",
        "Deployment",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(c.admin.clone(), &ns, &ar);
    let err = api.create(&dry, &obj).await.unwrap_err();
    assert!(format!("{err}").contains("replicas"), "{err}");
}

/// The machine's `cluster_repaired` events, as messages.
async fn repairs(http: &reqwest::Client, url: &str, id: &str) -> Vec<String> {
    machine(http, url, id).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "cluster_repaired")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

/// A copy of `obj` under another name, without what the API server set.
fn copy_as(obj: &Value, name: &str, machine: &str) -> DynamicObject {
    let mut v = obj.clone();
    v["metadata"] = json!({
        "name": name,
        "labels": obj["metadata"]["labels"].clone(),
    });
    v["metadata"]["labels"]["dragonfly/machine-id"] = json!(machine);
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver: scripts/kube.sh start DIR, then DRAGONFLY_KUBE_DIR=DIR"]
async fn reconciliation_repairs_what_changed_while_stopped_and_while_running() {
    let c = cluster().await;
    c.crds("current");
    let t = c.tenant("df-reconcile").await;
    let dir = tempfile::tempdir().unwrap();
    let http = authed_client(dir.path());
    let df = start(dir.path(), &t, &http).await;
    let ids: Vec<String> =
        futures_util::future::join_all((1..=3).map(|n| register(&http, &df.url, n))).await;
    assign(&http, &df.url, &ids[0]).await;
    assign(&http, &df.url, &ids[2]).await;
    let hw = c.api(&t, "hardware", "Hardware");
    let wf = c.api(&t, "workflows", "Workflow");
    let hw1 = c.object(&t, "hardware", "Hardware", &name(1)).await;
    let wf1 = c.object(&t, "workflows", "Workflow", &name(1)).await;
    let wf3 = c.object(&t, "workflows", "Workflow", &name(3)).await;
    c.object(&t, "hardware", "Hardware", &name(2)).await;
    let address = hw1["spec"]["interfaces"][0]["dhcp"]["ip"]["address"].clone();
    df.stop();

    // Behind its back, while it is stopped:
    let dp = Default::default();
    // machine 1's Workflow deleted, its Hardware edited;
    wf.delete(&name(1), &dp).await.unwrap();
    hw.patch(
        &name(1),
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "replace",
                "path": "/spec/interfaces/0/dhcp/ip/address", "value": "10.9.9.9"}]))
            .unwrap(),
        ),
    )
    .await
    .unwrap();
    // machine 2's Hardware deleted, and a Workflow for it (it has no install) left behind;
    hw.delete(&name(2), &dp).await.unwrap();
    let pp = PostParams::default();
    wf.create(&pp, &copy_as(&wf1, "dragonfly-stray-workflow", &ids[1]))
        .await
        .unwrap();
    // a Hardware of a machine this Dragonfly deleted;
    hw.create(
        &pp,
        &copy_as(&hw1, "dragonfly-stray-hardware", "a-deleted-machine"),
    )
    .await
    .unwrap();
    // machine 3's install finished.
    c.set_status(
        &t,
        &name(3),
        current_status("SUCCESS", &actions(["SUCCESS", "SUCCESS", "SUCCESS"])),
    )
    .await;

    let df = start(dir.path(), &t, &http).await;
    let restored = c.object(&t, "workflows", "Workflow", &name(1)).await;
    assert_ne!(restored["metadata"]["uid"], wf1["metadata"]["uid"]);
    c.object(&t, "hardware", "Hardware", &name(2)).await;
    wait_for(WAIT, "machine 1's Hardware restored", || async {
        let h = serde_json::to_value(hw.get(&name(1)).await.unwrap()).unwrap();
        (h["spec"]["interfaces"][0]["dhcp"]["ip"]["address"] == address).then_some(())
    })
    .await
    .unwrap();
    wait_for(WAIT, "the strays deleted", || async {
        (hw.get_opt("dragonfly-stray-hardware")
            .await
            .unwrap()
            .is_none()
            && wf
                .get_opt("dragonfly-stray-workflow")
                .await
                .unwrap()
                .is_none())
        .then_some(())
    })
    .await
    .unwrap();
    // The Workflow that finished meanwhile is applied, not started again.
    wait_machine(&http, &df.url, &ids[2], "machine 3 installed", |m| {
        m["state"] == "installed"
    })
    .await;
    let w3 = c.object(&t, "workflows", "Workflow", &name(3)).await;
    assert_eq!(w3["metadata"]["uid"], wf3["metadata"]["uid"]);
    // Every repair is on its machine's timeline.
    let r1 = repairs(&http, &df.url, &ids[0]).await;
    assert!(
        r1.iter()
            .any(|m| m.contains(&format!("Workflow {} re-created", name(1)))),
        "{r1:?}"
    );
    assert!(
        r1.iter()
            .any(|m| m.contains(&format!("Hardware {} restored", name(1)))),
        "{r1:?}"
    );
    let r2 = repairs(&http, &df.url, &ids[1]).await;
    assert!(
        r2.iter()
            .any(|m| m.contains(&format!("Hardware {} re-created", name(2)))),
        "{r2:?}"
    );
    assert!(
        r2.iter()
            .any(|m| m.contains("Workflow dragonfly-stray-workflow deleted")),
        "{r2:?}"
    );

    // While it runs: the next periodic pass (every second here) puts a deleted Workflow back.
    let before = repairs(&http, &df.url, &ids[0]).await.len();
    let uid = restored["metadata"]["uid"].clone();
    wf.delete(&name(1), &dp).await.unwrap();
    wait_for(WAIT, "the Workflow re-created while running", || async {
        wf.get_opt(&name(1))
            .await
            .unwrap()
            .filter(|w| serde_json::to_value(w).unwrap()["metadata"]["uid"] != uid)
    })
    .await
    .unwrap();
    let after = wait_for(WAIT, "the repair on the timeline", || async {
        let r = repairs(&http, &df.url, &ids[0]).await;
        (r.len() > before).then_some(r)
    })
    .await
    .unwrap();
    // Newest first.
    assert!(after[0].contains("re-created"), "{after:?}");
    df.stop();
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver: scripts/kube.sh start DIR, then DRAGONFLY_KUBE_DIR=DIR"]
async fn two_dragonflies_in_one_namespace_never_fight() {
    let c = cluster().await;
    c.crds("current");
    let t = c.tenant("df-two").await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (http_a, http_b) = (authed_client(dir_a.path()), authed_client(dir_b.path()));
    let a = start(dir_a.path(), &t, &http_a).await;
    let b = start(dir_b.path(), &t, &http_b).await;
    // Each has machines of its own; machine 1 registers with both (the same name in the
    // cluster): the first keeps it.
    register(&http_a, &a.url, 1).await;
    register(&http_a, &a.url, 2).await;
    c.object(&t, "hardware", "Hardware", &name(1)).await;
    let b1 = register(&http_b, &b.url, 1).await;
    register(&http_b, &b.url, 3).await;
    c.object(&t, "hardware", "Hardware", &name(3)).await;
    let hw = c.api(&t, "hardware", "Hardware");
    let versions = || async {
        let mut v = Vec::new();
        for n in 1..=3 {
            let h = serde_json::to_value(hw.get(&name(n)).await.unwrap()).unwrap();
            v.push((
                h["metadata"]["resourceVersion"].clone(),
                h["metadata"]["labels"]["dragonfly/instance"].clone(),
            ));
        }
        v
    };
    let first = versions().await;
    assert_eq!(
        first[0].1, first[1].1,
        "machine 1 stays with the first: {first:?}"
    );
    assert_ne!(first[1].1, first[2].1, "{first:?}");
    // Several reconcile passes of both (every second): nothing deleted, nothing rewritten.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(versions().await, first);
    // The second one says why it cannot install its machine 1.
    assign(&http_b, &b.url, &b1).await;
    let m = wait_machine(&http_b, &b.url, &b1, "b's machine 1 failed", |m| {
        m["state"] == "failed"
    })
    .await;
    assert!(
        m["status_message"]
            .as_str()
            .unwrap_or_default()
            .contains("belongs to another Dragonfly"),
        "{m}"
    );
    a.stop();
    b.stop();
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver: scripts/kube.sh start DIR, then DRAGONFLY_KUBE_DIR=DIR"]
async fn the_watch_resumes_after_a_restart_and_after_410_gone() {
    let c = cluster().await;
    c.crds("current");
    let t = c.tenant("df-watch").await;
    let dir = tempfile::tempdir().unwrap();
    let http = authed_client(dir.path());
    let df = start(dir.path(), &t, &http).await;
    let ids = [
        register(&http, &df.url, 1).await,
        register(&http, &df.url, 2).await,
    ];
    for id in &ids {
        assign(&http, &df.url, id).await;
    }
    c.object(&t, "workflows", "Workflow", &name(1)).await;
    c.object(&t, "workflows", "Workflow", &name(2)).await;
    let restart = |compact: bool| {
        let mut cmd = Command::new(dragonfly_workspace().join("scripts/kube.sh"));
        cmd.args(["restart", c.dir.to_str().unwrap()]);
        if compact {
            cmd.arg("--compact");
        }
        assert!(cmd.status().unwrap().success(), "scripts/kube.sh restart");
    };
    // Backoff after a broken watch reaches 30 s: allow for it.
    let long = Duration::from_secs(90);
    let installing = |m: &Value| m["state"] == "installing" && m["progress"] == 33;

    // The API server restarts: the watch resumes from where it was.
    restart(false);
    c.set_status(
        &t,
        &name(1),
        current_status("RUNNING", &actions(["SUCCESS", "RUNNING", "PENDING"])),
    )
    .await;
    wait_for(long, "machine 1 installing after the restart", || async {
        let m = machine(&http, &df.url, &ids[0]).await;
        installing(&m).then_some(())
    })
    .await
    .unwrap();

    let expired_before = df.log_lines("too old resource version").len();
    // etcd moves on and is compacted while the API server is down: resuming from the old
    // version is 410 Gone, and the follower lists again. Updates made before it resumes are
    // not lost.
    restart(true);
    c.set_status(
        &t,
        &name(2),
        current_status("RUNNING", &actions(["SUCCESS", "RUNNING", "PENDING"])),
    )
    .await;
    c.set_status(
        &t,
        &name(1),
        current_status("SUCCESS", &actions(["SUCCESS", "SUCCESS", "SUCCESS"])),
    )
    .await;
    wait_for(long, "both updates after 410", || async {
        let m1 = machine(&http, &df.url, &ids[0]).await;
        let m2 = machine(&http, &df.url, &ids[1]).await;
        (m1["state"] == "installed" && installing(&m2)).then_some(())
    })
    .await
    .unwrap();
    // And it was the 410 path: the watch reported the expired version (410 Gone, reason
    // Expired; logged at debug while the watch was already failing).
    let expired = df.log_lines("too old resource version").len();
    assert!(
        expired > expired_before,
        "no 410 after the compaction: {:?}",
        df.log_lines("watch")
    );
    df.stop();
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver: scripts/kube.sh start DIR, then DRAGONFLY_KUBE_DIR=DIR"]
async fn a_finished_workflow_of_an_earlier_install_is_never_taken_for_the_current_one() {
    let c = cluster().await;
    c.crds("current");
    let t = c.tenant("df-reimage").await;
    let dir = tempfile::tempdir().unwrap();
    let http = authed_client(dir.path());
    let df = start(dir.path(), &t, &http).await;
    let id = register(&http, &df.url, 1).await;
    assign(&http, &df.url, &id).await;
    c.object(&t, "workflows", "Workflow", &name(1)).await;
    let done = current_status("SUCCESS", &actions(["SUCCESS", "SUCCESS", "SUCCESS"]));
    c.set_status(&t, &name(1), done.clone()).await;
    wait_machine(&http, &df.url, &id, "installed", |m| {
        m["state"] == "installed"
    })
    .await;
    let old = c.object(&t, "workflows", "Workflow", &name(1)).await;
    // The same OS again: a new install, a new Workflow.
    let r = http
        .post(format!("{}/api/v1/machines/{id}/reimage", df.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let wf = c.api(&t, "workflows", "Workflow");
    wait_for(WAIT, "the reimage's Workflow", || async {
        wf.get_opt(&name(1)).await.unwrap().filter(|w| {
            serde_json::to_value(w).unwrap()["metadata"]["uid"] != old["metadata"]["uid"]
        })
    })
    .await
    .unwrap();
    df.stop();

    // While it is stopped, the earlier install's finished Workflow comes back in its place
    // (as if the reimage had never reached the cluster).
    wf.delete(&name(1), &Default::default()).await.unwrap();
    let mut stale = old.clone();
    stale["metadata"] = json!({
        "name": name(1),
        "labels": old["metadata"]["labels"].clone(),
        "annotations": old["metadata"]["annotations"].clone(),
    });
    stale.as_object_mut().unwrap().remove("status");
    let stale: DynamicObject = serde_json::from_value(stale).unwrap();
    let created = wait_for(WAIT, "the stale copy created", || async {
        wf.create(&PostParams::default(), &stale).await.ok()
    })
    .await
    .unwrap();
    c.set_status(&t, &name(1), done).await;

    let df = start(dir.path(), &t, &http).await;
    // Reconciliation replaces it with this install's ...
    wait_for(WAIT, "the stale Workflow replaced", || async {
        wf.get_opt(&name(1))
            .await
            .unwrap()
            .filter(|w| w.metadata.uid != created.metadata.uid)
    })
    .await
    .unwrap();
    // ... and its SUCCESS never made the machine installed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = machine(&http, &df.url, &id).await;
    assert_eq!(m["state"], "assigned", "{m}");
    let r = repairs(&http, &df.url, &id).await;
    assert!(r.iter().any(|m| m.contains("earlier install")), "{r:?}");
    df.stop();
}
