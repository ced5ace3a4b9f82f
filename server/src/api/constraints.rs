//! What the validators enforce, stated in the OpenAPI document: generated clients (and
//! schemathesis) then reject what the server rejects. utoipa writes each type's shape; the
//! rules below add the bounds and patterns the domain checks, in one place, after the
//! document is generated:
//!
//! - unsigned integers get their real range (`u32`: 0–4294967295; `u64`: stored as SQLite's
//!   signed 64-bit integers, so 0–2^63-1);
//! - every string of a hardware report is at most [`REPORT_STRING`] characters;
//! - the per-field table [`FIELDS`]: lengths, patterns, enums, item counts;
//! - the target disk is exactly one of `{"serial": ...}` or `{"wwn": ...}`;
//! - `disk_model` is required (and not blank) when a rule's `disk_rule` is `model`;
//! - creating an OS entry requires its `slug`.
//!
//! Not stateable in a schema, and answered 409 `unknown_reference` instead of 422: a name of
//! something that does not exist (an OS slug, a disk the machine did not report). Not stated
//! either: that `user_data` parses as YAML.

use serde_json::{Value, json};

/// Longest string in a hardware report.
const REPORT_STRING: usize = crate::machines::identity::MAX_STRING;

/// A MAC address as the server reads one: six octets separated by `:` or `-`, three groups
/// of four hex digits separated by `.`, or twelve hex digits; optionally behind PXE's `01-`
/// (the ARP hardware type); unicast and not all zeros. Checked by `normalize_mac`.
pub const MAC_PATTERN: &str = r"^(?!(?:01-)?00(?:[:.-]?00){5}$)(?:01-)?(?:[0-9a-fA-F][02468aceACE](?:[:-][0-9a-fA-F]{2}){5}|[0-9a-fA-F][02468aceACE][0-9a-fA-F]{2}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}|[0-9a-fA-F][02468aceACE][0-9a-fA-F]{10})$";

/// A tag: `machines::validate_tag`.
pub const TAG_PATTERN: &str = r"^[a-z0-9_.:-]{1,63}$";

/// An RFC 1123 host name, or "" (which clears it): `machines::validate_hostname`.
pub const HOSTNAME_PATTERN: &str = r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)?$";

/// An http(s) URL this server accepts (a subset of what parses as one: a host of letters,
/// digits, dots and dashes, an optional port, a path and query of URL characters).
const HTTP_URL: &str = r"https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,4})?(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?(?:\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?";

/// An image URL: http(s), or `/images/NAME` for a file this server serves.
fn image_url_pattern() -> String {
    format!("^(?:{HTTP_URL}|/images/[A-Za-z0-9_-][A-Za-z0-9._-]{{0,127}})$")
}

/// The states a machine list filters on, comma-separated.
const STATE_LIST_PATTERN: &str = r"^\s*(?:(?:discovered|assigned|installing|installed|failed|offline)\s*)?(?:,\s*(?:(?:discovered|assigned|installing|installed|failed|offline)\s*)?)*$";

/// Not blank: at least one character that is not white space.
const NOT_BLANK: &str = r"\S";

/// The schemas of a hardware report: every string in them is bounded.
const REPORT_SCHEMAS: &[&str] = &[
    "HardwareReport",
    "Nic",
    "Disk",
    "Cpu",
    "Firmware",
    "PciDevice",
    "Smbios",
    "SystemInfo",
    "BoardInfo",
    "ChassisInfo",
    "BiosInfo",
    "MemoryDevice",
    "ProcessorSocket",
];

/// (schema, property, what to add). Schemas are components; `?name` is a query parameter
/// of the operation `GET path`.
fn fields() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("Heartbeat", "progress", json!({"maximum": 100})),
        ("Heartbeat", "message", json!({"maxLength": 1024})),
        ("RegisterRequest", "agent_version", json!({"maxLength": 64})),
        (
            "HardwareReport",
            "boot_mac",
            json!({"pattern": MAC_PATTERN}),
        ),
        ("HardwareReport", "nics", json!({"maxItems": 128})),
        ("HardwareReport", "disks", json!({"maxItems": 512})),
        ("HardwareReport", "pci", json!({"maxItems": 2048})),
        ("Smbios", "memory", json!({"maxItems": 512})),
        ("Smbios", "processors", json!({"maxItems": 512})),
        ("Nic", "mac", json!({"pattern": MAC_PATTERN})),
        ("Nic", "addresses", json!({"maxItems": 64})),
        (
            "MachineUpdate",
            "hostname",
            json!({"maxLength": 253, "pattern": HOSTNAME_PATTERN}),
        ),
        ("MachineUpdate", "notes", json!({"maxLength": 4096})),
        (
            "MachineUpdate",
            "tags",
            json!({"maxItems": 64, "items": {"type": "string", "pattern": TAG_PATTERN}}),
        ),
        (
            "OsInput",
            "slug",
            json!({"pattern": "^[a-z0-9][a-z0-9.-]{1,63}$"}),
        ),
        (
            "OsInput",
            "name",
            json!({"minLength": 1, "maxLength": 128, "pattern": NOT_BLANK}),
        ),
        (
            "OsInput",
            "family",
            json!({"minLength": 1, "maxLength": 32, "pattern": NOT_BLANK}),
        ),
        (
            "OsInput",
            "version",
            json!({"minLength": 1, "maxLength": 32, "pattern": NOT_BLANK}),
        ),
        ("OsInput", "arch", json!({"enum": ["x86_64", "aarch64"]})),
        (
            "OsInput",
            "image_url",
            json!({"maxLength": 2048, "pattern": image_url_pattern()}),
        ),
        (
            "OsInput",
            "checksum_url",
            json!({"pattern": format!("^{HTTP_URL}$")}),
        ),
        (
            "OsInput",
            "user_data",
            json!({"pattern": r"^(?:#cloud-config[\s\S]*)?$"}),
        ),
        ("RuleInput", "name", json!({"pattern": NOT_BLANK})),
        (
            "Netboot",
            "reserved_ip",
            json!({"pattern": crate::machines::netboot::HOST_ADDRESS_PATTERN}),
        ),
        (
            "CreateToken",
            "name",
            json!({"minLength": 1, "maxLength": 64, "pattern": NOT_BLANK}),
        ),
        (
            "SshKeysInput",
            "authorized_keys",
            json!({"pattern": crate::config::ssh_keys_pattern()}),
        ),
        (
            "LoginRequest",
            "username",
            json!({"minLength": 1, "maxLength": 64}),
        ),
        (
            "LoginRequest",
            "password",
            json!({"minLength": 1, "maxLength": 1024}),
        ),
    ]
}

/// Query parameters: (path, parameter, what to add).
fn query_params() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "/api/v1/machines",
            "page",
            json!({"minimum": 1, "maximum": 4_294_967_295u64}),
        ),
        (
            "/api/v1/machines",
            "per_page",
            json!({"minimum": 1, "maximum": 500}),
        ),
        (
            "/api/v1/machines",
            "state",
            json!({"pattern": STATE_LIST_PATTERN}),
        ),
        (
            "/api/v1/machines",
            "tag",
            json!({"pattern": "^(?:[a-z0-9_.:-]{1,63})?$"}),
        ),
        (
            "/api/v1/machines",
            "q",
            json!({"maxLength": 128, "pattern": r"^[^\x00-\x1f\x7f-\x9f]*$"}),
        ),
        (
            "/api/v1/machines",
            "sort",
            json!({"enum": ["created", "hostname", "state", "last_seen", "mac"]}),
        ),
        (
            "/api/v1/machines",
            "order",
            json!({"enum": ["asc", "desc"]}),
        ),
        (
            "/api/v1/events/log",
            "limit",
            json!({"minimum": 1, "maximum": 500}),
        ),
    ]
}

/// Adds the constraints to a generated document (as JSON).
pub fn apply(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    for name in REPORT_SCHEMAS {
        let props = schemas
            .get_mut(*name)
            .and_then(|s| s.get_mut("properties"))
            .and_then(Value::as_object_mut);
        if let Some(props) = props {
            for prop in props.values_mut() {
                bound_strings(prop);
            }
        }
    }
    for (schema, prop, add) in fields() {
        let target = &mut schemas[schema]["properties"][prop];
        assert!(target.is_object(), "no property {schema}.{prop}");
        merge(target, add);
    }
    // The target disk: exactly one key, nothing else.
    if let Some(variants) = schemas["TargetDisk"]["oneOf"].as_array_mut() {
        for v in variants {
            v["additionalProperties"] = json!(false);
            if let Some(props) = v["properties"].as_object_mut() {
                for p in props.values_mut() {
                    merge(p, json!({"minLength": 1, "maxLength": 256}));
                }
            }
        }
    }
    // A rule choosing its disk by model needs the model.
    schemas["RuleInput"]["anyOf"] = json!([
        {"properties": {"disk_rule": {"not": {"const": "model"}}}},
        {"required": ["disk_model"], "properties": {"disk_model": {"type": "string", "pattern": NOT_BLANK}}}
    ]);
    let paths = &mut doc["paths"];
    // Creating an entry names it; updating takes the name from the path.
    let create =
        &mut paths["/api/v1/os"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert!(create.is_object(), "no POST /api/v1/os body");
    *create = json!({"allOf": [
        {"$ref": "#/components/schemas/OsInput"},
        {"required": ["slug"], "properties": {"slug": {"type": "string"}}}
    ]});
    for (path, param, add) in query_params() {
        let params = paths[path]["get"]["parameters"]
            .as_array_mut()
            .unwrap_or_else(|| panic!("no parameters for GET {path}"));
        let p = params
            .iter_mut()
            .find(|p| p["name"] == param)
            .unwrap_or_else(|| panic!("no parameter {param} of GET {path}"));
        merge(&mut p["schema"], add);
    }
    unsigned_ranges(doc);
}

fn merge(target: &mut Value, add: Value) {
    if let (Some(t), Value::Object(a)) = (target.as_object_mut(), add) {
        t.extend(a);
    }
}

fn is_type(v: &Value, ty: &str) -> bool {
    match &v["type"] {
        Value::String(s) => s == ty,
        Value::Array(a) => a.iter().any(|t| t == ty),
        _ => false,
    }
}

/// Report strings (also inside arrays and nullable wrappers) get the report's bound.
fn bound_strings(v: &mut Value) {
    if is_type(v, "string") && v.get("maxLength").is_none() {
        v["maxLength"] = json!(REPORT_STRING);
    }
    if is_type(v, "array") {
        if let Some(items) = v.get_mut("items") {
            bound_strings(items);
        }
    }
}

/// `minimum: 0` with an integer format is how utoipa writes an unsigned type.
fn unsigned_ranges(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let unsigned = map
                .get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| m >= 0.0);
            let format = map
                .get("format")
                .and_then(Value::as_str)
                .map(str::to_string);
            if unsigned && !map.contains_key("maximum") {
                match format.as_deref() {
                    Some("int32") => {
                        map.remove("format");
                        map.insert("maximum".into(), json!(u32::MAX));
                    }
                    Some("int64") => {
                        map.insert("maximum".into(), json!(i64::MAX));
                    }
                    _ => {}
                }
            } else if unsigned && format.as_deref() == Some("int32") {
                map.remove("format");
            }
            for child in map.values_mut() {
                unsigned_ranges(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_ranges),
        _ => {}
    }
}
