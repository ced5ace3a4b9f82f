//! The CRDs' `openAPIV3Schema` as plain JSON Schema, for validating what Dragonfly writes.
//!
//! Kubernetes structural schemas differ from JSON Schema in a few ways, handled here:
//! - `x-kubernetes-int-or-string: true` means integer or string: it becomes an `anyOf`.
//! - `nullable: true` also allows `null`.
//! - other `x-kubernetes-*` extensions (list/map types, CEL `x-kubernetes-validations`) are
//!   dropped: a JSON Schema validator would ignore them anyway, and the only CEL rule on the
//!   fields Dragonfly writes (tftp_server_name with boot_file_name) concerns fields it never sets.
//! - the API server silently prunes fields a schema does not declare; here an undeclared
//!   field is an error (`additionalProperties: false`), so a misspelt field fails the tests
//!   instead of vanishing in a real cluster.
//! - `metadata` is only `type: object` in a CRD; [`check_metadata`] checks names and labels
//!   the way the API server does.

use serde_json::{Value, json};

/// The v1alpha1 schema of a CRD file, converted.
pub fn crd_schema(crd_yaml: &str) -> Value {
    let crd: Value = serde_yaml::from_str(crd_yaml).expect("CRD YAML");
    let version = crd["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["name"] == "v1alpha1")
        .expect("a v1alpha1 version");
    let mut schema = version["schema"]["openAPIV3Schema"].clone();
    convert(&mut schema);
    schema
}

fn convert(s: &mut Value) {
    let Value::Object(m) = s else { return };
    if m.remove("x-kubernetes-int-or-string") == Some(Value::Bool(true)) {
        m.remove("type");
        if !m.contains_key("anyOf") {
            m.insert(
                "anyOf".into(),
                json!([{ "type": "integer" }, { "type": "string" }]),
            );
        }
    }
    if m.remove("nullable") == Some(Value::Bool(true)) {
        if let Some(Value::String(t)) = m.get("type").cloned() {
            m.insert("type".into(), json!([t, "null"]));
        }
    }
    let preserve = m.remove("x-kubernetes-preserve-unknown-fields") == Some(Value::Bool(true));
    m.retain(|k, _| !k.starts_with("x-kubernetes-"));
    if m.get("type") == Some(&json!("object"))
        && m.contains_key("properties")
        && !m.contains_key("additionalProperties")
        && !preserve
    {
        m.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(props)) = m.get_mut("properties") {
        props.values_mut().for_each(convert);
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(v @ Value::Object(_)) = m.get_mut(key) {
            convert(v);
        }
    }
    for key in ["anyOf", "allOf", "oneOf"] {
        if let Some(Value::Array(list)) = m.get_mut(key) {
            list.iter_mut().for_each(convert);
        }
    }
}

/// Validates `instance` against a converted schema; the errors as text, empty when valid.
pub fn errors(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(true)
        .build(schema)
        .expect("the converted CRD schema compiles");
    let mut out: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    out.extend(check_metadata(&instance["metadata"]));
    out
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
}

fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Object names, namespaces, labels and annotations as the API server checks them.
pub fn check_metadata(meta: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match meta["name"].as_str() {
        Some(n) if is_dns_subdomain(n) => {}
        other => out.push(format!(
            "metadata.name {other:?} is not a DNS-1123 subdomain"
        )),
    }
    if let Some(ns) = meta.get("namespace") {
        if !ns.as_str().is_some_and(is_dns_label) {
            out.push(format!("metadata.namespace {ns} is not a DNS-1123 label"));
        }
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if !is_label_key(k) || !v.as_str().is_some_and(is_label_value) {
                out.push(format!("label {k}={v} is not valid"));
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        for (k, v) in annotations {
            if !is_label_key(k) || !v.is_string() {
                out.push(format!("annotation {k} is not valid"));
            }
        }
    }
    out
}

/// Fills in the `default`s the schema declares, as the API server does on create.
pub fn apply_defaults(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, s) in props {
                    if let (false, Some(d)) = (m.contains_key(k), s.get("default")) {
                        m.insert(k.clone(), d.clone());
                    }
                    if let Some(child) = m.get_mut(k) {
                        apply_defaults(s, child);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                items.iter_mut().for_each(|i| apply_defaults(s, i));
            }
        }
        _ => {}
    }
}

#[test]
fn the_conversion_keeps_checks_and_adds_strictness() {
    let s = crd_schema(include_str!("crds/tinkerbell.org_hardware.yaml"));
    let ok = json!({"apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
        "metadata": {"name": "m1"},
        "spec": {"interfaces": [{"dhcp": {"mac": "52:54:00:ab:cd:ef"}}],
                 "resources": {"cpu": 2, "memory": "4Gi"}}});
    assert_eq!(errors(&s, &ok), Vec::<String>::new());
    // The CRD's MAC pattern is lower-case.
    let upper = json!({"metadata": {"name": "m1"},
        "spec": {"interfaces": [{"dhcp": {"mac": "52:54:00:AB:CD:EF"}}]}});
    assert!(!errors(&s, &upper).is_empty());
    // A misspelt field would be pruned by a real API server: here it fails.
    let typo = json!({"metadata": {"name": "m1"},
        "spec": {"interfaces": [{"netboot": {"allowPxe": true}}]}});
    assert!(
        errors(&s, &typo).iter().any(|e| e.contains("allowPxe")),
        "{:?}",
        errors(&s, &typo)
    );
    // int-or-string is honoured, and not everything passes.
    let bad_quantity = json!({"metadata": {"name": "m1"}, "spec": {"resources": {"cpu": true}}});
    assert!(!errors(&s, &bad_quantity).is_empty());
    let bad_name = json!({"metadata": {"name": "Node_1"}, "spec": {}});
    assert!(
        errors(&s, &bad_name)
            .iter()
            .any(|e| e.contains("metadata.name"))
    );
}

#[test]
fn defaults_are_applied_where_objects_exist() {
    let s = crd_schema(include_str!("crds/tinkerbell.org_hardware.yaml"));
    let mut v = json!({"spec": {"interfaces": [{"dhcp": {"mac": "52:54:00:ab:cd:ef"}}]}});
    apply_defaults(&s, &mut v);
    assert_eq!(v["spec"]["interfaces"][0]["disableDhcp"], false);
    assert!(v["spec"].get("auto").is_none());
}
