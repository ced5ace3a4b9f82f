//! Workflow statuses as Tinkerbell writes them: the current shape (tink-controller v0.10+)
//! and the legacy `STATE_*` one (tink v0.12). Shared with tests/kube.rs.

use serde_json::{Value, json};

/// A Workflow status as Tinkerbell v0.25 writes it.
pub fn current_status(state: &str, actions: &[(&str, &str)]) -> Value {
    json!({
        "state": state,
        "currentState": {
            "agentID": "52:54:00:00:00:01", "taskID": "t1", "taskName": "os-installation",
            "actionID": "a", "actionName": actions.iter().find(|(_, s)| *s == "RUNNING").map(|(n, _)| *n).unwrap_or(""),
            "state": state,
        },
        "globalTimeout": 3600,
        "templateRendering": "successful",
        "tasks": [{
            "id": "t1", "name": "os-installation", "agentID": "52:54:00:00:00:01",
            "actions": actions.iter().enumerate().map(|(i, (n, s))| {
                let mut a = json!({"id": format!("a{i}"), "name": n, "image": "img", "timeout": 90, "state": s});
                if *s != "PENDING" {
                    a["executionStart"] = json!("2025-01-01T10:00:00Z");
                }
                if *s == "SUCCESS" {
                    a["executionStop"] = json!("2025-01-01T10:01:00Z");
                    a["executionDuration"] = json!("1m0s");
                }
                a
            }).collect::<Vec<_>>(),
        }],
    })
}

/// A Workflow status as legacy tink v0.12 writes it.
pub fn legacy_status(state: &str, actions: &[(&str, &str)]) -> Value {
    json!({
        "state": format!("STATE_{state}"),
        "currentAction": actions.iter().find(|(_, s)| *s == "RUNNING").map(|(n, _)| *n).unwrap_or(""),
        "globalTimeout": 3600,
        "templateRending": "successful",
        "tasks": [{
            "name": "os-installation", "worker": "52:54:00:00:00:01",
            "actions": actions.iter().map(|(n, s)| {
                let mut a = json!({"name": n, "image": "img", "timeout": 90, "status": format!("STATE_{s}")});
                if *s != "PENDING" {
                    a["startedAt"] = json!("2025-01-01T10:00:00Z");
                    a["seconds"] = json!(60);
                }
                a
            }).collect::<Vec<_>>(),
        }],
    })
}
