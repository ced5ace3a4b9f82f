//! Writing to the cluster: create, and on 409 re-read and patch (only objects Dragonfly
//! manages); start workflows (replacing a finished one of the same name); delete by machine.

use std::fmt::Debug;
use std::time::Duration;

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::objects::machine_selector;
use super::progress::{Progress, State};
use super::resources::{Hardware, Template, Workflow};
use super::{Error, INSTALL_ANNOTATION, INSTANCE_LABEL, MANAGED_BY, Result, Tinkerbell};

const FIELD_MANAGER: &str = "dragonfly";

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    /// The existing object was patched to Dragonfly's content.
    Updated,
    /// The existing object already had Dragonfly's content.
    Unchanged,
}

/// Which existing Workflow of the same machine and template is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    NotStarted,
    Unfinished,
    /// Any state: what Tinkerbell did while Dragonfly was away is the follower's to read.
    Any,
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(r) if r.code == code)
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn is_managed(meta: &kube::core::ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1)
}

/// True when every value `want` sets is in `have` (the API server adds defaults and status,
/// so equality would be too strict). Arrays must match element by element.
pub fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| contains(hv, wv))),
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(hv, wv)| contains(hv, wv))
        }
        _ => have == want,
    }
}

/// The merge patch that gives an existing object Dragonfly's labels, annotations and spec,
/// conditional on the version that was read. Keys Dragonfly owns but no longer sets are
/// cleared explicitly (a merge patch keeps what it does not mention).
fn merge_patch(want: &Value, resource_version: Option<&str>) -> Value {
    let mut spec = want.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(instance) = spec
        .pointer_mut("/metadata/instance")
        .and_then(Value::as_object_mut)
    {
        for owned in ["hostname", "operating_system"] {
            instance.entry(owned).or_insert(Value::Null);
        }
    }
    let mut meta = serde_json::Map::new();
    for key in ["labels", "annotations"] {
        if let Some(v) = want.pointer(&format!("/metadata/{key}")) {
            meta.insert(key.into(), v.clone());
        }
    }
    meta.insert("resourceVersion".into(), json!(resource_version));
    json!({ "metadata": meta, "spec": spec })
}

/// `obj` labelled with `instance` (when known).
fn stamped<K: kube::Resource + Clone>(obj: &K, instance: Option<&str>) -> K {
    let mut obj = obj.clone();
    if let Some(instance) = instance {
        obj.meta_mut()
            .labels
            .get_or_insert_with(Default::default)
            .insert(INSTANCE_LABEL.into(), instance.into());
    }
    obj
}

/// Refuses an object another Dragonfly owns (an unlabelled one is adopted).
fn check_owner(
    meta: &kube::core::ObjectMeta,
    instance: Option<&str>,
    kind: &'static str,
) -> Result<()> {
    let theirs = meta.labels.as_ref().and_then(|l| l.get(INSTANCE_LABEL));
    match (theirs, instance) {
        (Some(theirs), Some(ours)) if theirs != ours => Err(Error::OtherInstance {
            kind,
            name: meta.name.clone().unwrap_or_default(),
            instance: theirs.clone(),
        }),
        _ => Ok(()),
    }
}

/// Creates `obj`; when it exists, re-reads it and patches it to `obj`'s content, unless
/// another Dragonfly (another `instance`) owns it.
async fn apply<K>(
    api: &Api<K>,
    obj: &K,
    kind: &'static str,
    instance: Option<&str>,
) -> Result<Applied>
where
    K: kube::Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let obj = &stamped(obj, instance);
    let name = obj.meta().name.clone().unwrap_or_default();
    let want = serde_json::to_value(obj).map_err(|e| Error::Invalid(e.to_string()))?;
    for _ in 0..4 {
        match api.create(&post_params(), obj).await {
            Ok(_) => return Ok(Applied::Created),
            Err(e) if is_code(&e, 409) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(existing) = api.get_opt(&name).await? else {
            // Deleted between our create and our read: create again.
            continue;
        };
        if !is_managed(existing.meta()) {
            return Err(Error::NotManaged {
                kind,
                namespace: existing.meta().namespace.clone().unwrap_or_default(),
                name,
            });
        }
        check_owner(existing.meta(), instance, kind)?;
        let have = serde_json::to_value(&existing).map_err(|e| Error::Invalid(e.to_string()))?;
        // What the object must contain (the patch without its clearing nulls and version).
        let mut want_meta = merge_patch(&want, None);
        strip_nulls(&mut want_meta);
        if contains(&have, &want_meta) && !has_stale_owned_keys(&have, &want) {
            return Ok(Applied::Unchanged);
        }
        let patch = merge_patch(&want, existing.meta().resource_version.as_deref());
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api.patch(&name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(Applied::Updated),
            // Changed since we read it: read again.
            Err(e) if is_code(&e, 409) => {
                tracing::debug!(%name, kind, "changed while being patched; reading it again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Busy {
        kind,
        name,
        message: "kept changing while Dragonfly wrote it".into(),
    })
}

/// Drops the explicit nulls of a patch, leaving what the object must contain.
fn strip_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, v| !v.is_null());
        m.values_mut().for_each(strip_nulls);
    }
}

/// A Hardware that still has a host name or OS Dragonfly no longer sets.
fn has_stale_owned_keys(have: &Value, want: &Value) -> bool {
    let (Some(h), Some(w)) = (
        have.pointer("/spec/metadata/instance"),
        want.pointer("/spec/metadata/instance"),
    ) else {
        return false;
    };
    ["hostname", "operating_system"]
        .iter()
        .any(|k| w.get(k).is_none() && h.get(k).is_some_and(|v| !v.is_null()))
}

/// Lists what Dragonfly wrote for a machine and deletes it.
async fn delete_machine_objects<K>(api: &Api<K>, machine_id: &str) -> Result<usize>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let list = api
        .list(&ListParams::default().labels(&machine_selector(machine_id)))
        .await?;
    let mut deleted = 0;
    for obj in list.items {
        let Some(name) = obj.meta().name.clone() else {
            continue;
        };
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => deleted += 1,
            Err(e) if is_code(&e, 404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

async fn owned_of<K>(
    api: &Api<K>,
    kind: &'static str,
    selector: &str,
    out: &mut Vec<(&'static str, String, String)>,
) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    for obj in api
        .list(&ListParams::default().labels(selector))
        .await?
        .items
    {
        let meta = obj.meta();
        if meta.deletion_timestamp.is_some() {
            continue;
        }
        let machine = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(super::MACHINE_ID_LABEL));
        if let (Some(name), Some(machine)) = (meta.name.clone(), machine) {
            out.push((kind, name, machine.clone()));
        }
    }
    Ok(())
}

impl Tinkerbell {
    pub fn hardware_api(&self) -> Api<Hardware> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn template_api(&self) -> Api<Template> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn workflow_api(&self) -> Api<Workflow> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates or updates a machine's Hardware.
    pub async fn apply_hardware(&self, hw: &Hardware) -> Result<Applied> {
        apply(&self.hardware_api(), hw, Hardware::KIND, self.instance()).await
    }

    /// Creates or updates an OS's Template.
    pub async fn apply_template(&self, t: &Template) -> Result<Applied> {
        // Templates are per OS and shared by every Dragonfly of the namespace: not stamped.
        apply(&self.template_api(), t, Template::KIND, None).await
    }

    /// Creates the Workflow for a new install (an assignment or a reimage). An existing one
    /// of the same name is kept only when it runs the same template on the same machine and
    /// no worker has started it yet; otherwise it is deleted and created anew.
    pub async fn start_workflow(&self, wf: &Workflow) -> Result<Applied> {
        self.create_workflow(wf, Keep::NotStarted).await
    }

    /// Makes sure the install has a Workflow, keeping one that is still running (used when
    /// catching up after a restart, where the install may be under way).
    pub async fn ensure_workflow(&self, wf: &Workflow) -> Result<Applied> {
        self.create_workflow(wf, Keep::Unfinished).await
    }

    async fn create_workflow(&self, wf: &Workflow, keep: Keep) -> Result<Applied> {
        let api = self.workflow_api();
        let wf = &stamped(wf, self.instance());
        let name = wf.name().to_string();
        let mut wait = Duration::from_millis(100);
        for _ in 0..10 {
            match api.create(&post_params(), wf).await {
                Ok(_) => return Ok(Applied::Created),
                Err(e) if is_code(&e, 409) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(existing) = api.get_opt(&name).await? {
                if !is_managed(&existing.metadata) {
                    return Err(Error::NotManaged {
                        kind: Workflow::KIND,
                        namespace: self.namespace.clone(),
                        name,
                    });
                }
                check_owner(&existing.metadata, self.instance(), Workflow::KIND)?;
                let state = Progress::of(existing.status.as_ref()).state;
                let install = |w: &Workflow| {
                    w.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(INSTALL_ANNOTATION))
                        .cloned()
                };
                // The same install: a finished Workflow of an earlier one is replaced.
                let same = existing.spec.template_ref == wf.spec.template_ref
                    && existing.spec.hardware_ref == wf.spec.hardware_ref
                    && existing.spec.hardware_map == wf.spec.hardware_map
                    && (install(wf).is_none() || install(&existing) == install(wf));
                let keepable = match keep {
                    Keep::NotStarted => {
                        matches!(state, State::Unknown | State::Preparing | State::Pending)
                    }
                    Keep::Unfinished => !state.is_terminal(),
                    Keep::Any => true,
                };
                if same && keepable && existing.metadata.deletion_timestamp.is_none() {
                    return Ok(Applied::Unchanged);
                }
                if existing.metadata.deletion_timestamp.is_none() {
                    tracing::info!(
                        workflow = %name,
                        state = ?state,
                        "replacing the previous workflow of this machine"
                    );
                    match api.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(e) if is_code(&e, 404) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            // The old one may take a moment to go (finalizers): try again shortly.
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        Err(Error::Busy {
            kind: Workflow::KIND,
            name,
            message: "the previous workflow of this machine is still being deleted".into(),
        })
    }

    /// Re-creates the machine's Workflow when it is missing or not this install's; keeps
    /// an existing one in any state (reconciliation: a Workflow that finished while Dragonfly
    /// was stopped is read by the follower, never started again).
    pub async fn restore_workflow(&self, wf: &Workflow) -> Result<Applied> {
        self.create_workflow(wf, Keep::Any).await
    }

    /// This Dragonfly's Hardware and Workflows, as (kind, name, machine id); none while its
    /// instance id is unknown (another Dragonfly's objects must never look like its own).
    pub async fn owned(&self) -> Result<Vec<(&'static str, String, String)>> {
        let Some(instance) = self.instance() else {
            return Ok(Vec::new());
        };
        let selector = format!(
            "{}={},{INSTANCE_LABEL}={instance}",
            MANAGED_BY.0, MANAGED_BY.1
        );
        let mut out = Vec::new();
        owned_of(&self.hardware_api(), Hardware::KIND, &selector, &mut out).await?;
        owned_of(&self.workflow_api(), Workflow::KIND, &selector, &mut out).await?;
        Ok(out)
    }

    /// Deletes one object [`Tinkerbell::owned`] listed; false when it was already gone.
    pub async fn delete_owned(&self, kind: &'static str, name: &str) -> Result<bool> {
        let r = if kind == Hardware::KIND {
            self.hardware_api()
                .delete(name, &DeleteParams::default())
                .await
                .map(|_| ())
        } else {
            self.workflow_api()
                .delete(name, &DeleteParams::default())
                .await
                .map(|_| ())
        };
        match r {
            Ok(()) => Ok(true),
            Err(e) if is_code(&e, 404) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the machine's Workflows; returns how many went.
    pub async fn delete_workflows(&self, machine_id: &str) -> Result<usize> {
        delete_machine_objects(&self.workflow_api(), machine_id).await
    }

    /// Deletes the machine's Hardware; returns how many went.
    pub async fn delete_hardware(&self, machine_id: &str) -> Result<usize> {
        delete_machine_objects(&self.hardware_api(), machine_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_ignores_server_defaults_but_not_changes() {
        let have = json!({"spec": {"interfaces": [{"disableDhcp": false, "dhcp": {"mac": "a"}}]},
                          "status": {"state": "x"}});
        assert!(contains(
            &have,
            &json!({"spec": {"interfaces": [{"dhcp": {"mac": "a"}}]}})
        ));
        assert!(!contains(
            &have,
            &json!({"spec": {"interfaces": [{"dhcp": {"mac": "b"}}]}})
        ));
        assert!(!contains(&have, &json!({"spec": {"interfaces": []}})));
    }

    #[test]
    fn patches_clear_owned_keys_and_carry_the_version() {
        let want = json!({"metadata": {"labels": {"a": "b"}},
                          "spec": {"metadata": {"instance": {"id": "1"}}}});
        let p = merge_patch(&want, Some("42"));
        assert_eq!(p["metadata"]["resourceVersion"], "42");
        assert_eq!(p["spec"]["metadata"]["instance"]["hostname"], Value::Null);
        assert!(
            p["spec"]["metadata"]["instance"]
                .as_object()
                .unwrap()
                .contains_key("operating_system")
        );
    }
}
