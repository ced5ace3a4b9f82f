//! The OpenAPI document is generated from the code; the checked-in copy must match it.
//! Refresh it with `cargo run -p dragonfly -- openapi > openapi.json`, or run this test
//! with UPDATE_OPENAPI=1.

use reqwest::StatusCode;

use crate::support::TestServer;

fn checked_in_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.json")
}

#[test]
fn the_checked_in_openapi_document_is_current() {
    let generated = dragonfly::api::openapi_json();
    let path = checked_in_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, format!("{generated}\n")).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk.trim_end() == generated.trim_end(),
        "openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p dragonfly --test tests openapi`"
    );
}

#[tokio::test]
async fn the_server_serves_the_same_document() {
    let s = TestServer::start().await;
    let resp = s.get("/api/openapi.json").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let served: serde_json::Value = resp.json().await.unwrap();
    let generated: serde_json::Value =
        serde_json::from_str(&dragonfly::api::openapi_json()).unwrap();
    assert_eq!(served, generated);
    assert_eq!(
        served["openapi"].as_str().unwrap().chars().next(),
        Some('3')
    );
    for path in [
        "/api/v1/agent/register",
        "/api/v1/agent/heartbeat",
        "/api/v1/machines",
        "/api/v1/machines/{id}/assign",
        "/api/v1/os",
        "/api/v1/events",
        "/healthz",
        "/metrics",
    ] {
        assert!(served["paths"][path].is_object(), "{path} missing");
    }
}

/// The property `prop` of schema `schema` in the served document, as a validator.
fn validator(schema: &str, prop: &str) -> jsonschema::Validator {
    let doc: serde_json::Value = serde_json::from_str(&dragonfly::api::openapi_json()).unwrap();
    let s = &doc["components"]["schemas"][schema]["properties"][prop];
    assert!(s.is_object(), "no {schema}.{prop} in the document");
    jsonschema::validator_for(s).unwrap()
}

mod patterns {
    use proptest::prelude::*;
    use serde_json::json;

    /// Strings drawn from `strategy` (a regex): the documented schema of `schema.prop`
    /// accepts exactly those `server` accepts.
    fn agree(schema: &str, prop: &str, strategy: &str, server: impl Fn(&str) -> bool) {
        let v = super::validator(schema, prop);
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&strategy, |text| {
                prop_assert_eq!(v.is_valid(&json!(text)), server(&text), "{:?}", text);
                Ok(())
            })
            .unwrap();
    }

    /// MACs: the documented pattern and the server's reader agree, on the usual spellings,
    /// on the refused ones, and on strings made of hex digits and separators.
    #[test]
    fn the_mac_pattern_is_what_normalize_mac_accepts() {
        let v = super::validator("Nic", "mac");
        for m in [
            "52:54:00:ab:cd:01",
            "52-54-00-AB-cd-01",
            "5254.00ab.cd01",
            "525400abcd01",
            "01-52-54-00-ab-cd-01",
            "01-5254.00ab.cd01",
            "00:00:00:00:00:00",
            "01-00-00-00-00-00-00",
            "0000.0000.0000",
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "52:54:00:ab:cd",
            "52:5400abcd01",
            "52.54.00.ab.cd.01",
            "",
        ] {
            let server = dragonfly_proto::normalize_mac(m).is_ok();
            assert_eq!(v.is_valid(&json!(m)), server, "{m:?}");
        }
        agree("Nic", "mac", "(01-)?[0-9a-fA-F:.-]{10,18}", |m| {
            dragonfly_proto::normalize_mac(m).is_ok()
        });
    }

    /// SSH keys: the documented pattern is the server's own line grammar.
    #[test]
    fn the_ssh_keys_pattern_is_what_the_server_accepts() {
        let v = super::validator("SshKeysInput", "authorized_keys");
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDragonflyTestKey";
        for text in [
            String::new(),
            key.to_string(),
            format!("{key} me@host\n# a comment\n\n  {key}\r\n"),
            format!("{key}\nnot a key"),
            "ssh-ed25519 short".to_string(),
            "rsa AAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
            format!("\t{key}\t comment"),
        ] {
            let server = dragonfly::config::parse_ssh_keys(&text).is_ok();
            assert_eq!(v.is_valid(&json!(text)), server, "{text:?}");
        }
        agree(
            "SshKeysInput",
            "authorized_keys",
            "(([ \t]{0,2}(ssh-|ecdsa-|sk-|#)?[a-zA-Z0-9+/=é!~ \t\r#-]{0,30})\n?){0,3}",
            |t| dragonfly::config::parse_ssh_keys(t).is_ok(),
        );
    }

    /// Key-shaped lines, around the edges of the grammar: short bodies, odd separators.
    #[test]
    fn the_ssh_keys_pattern_and_the_server_agree_on_key_shaped_lines() {
        agree(
            "SshKeysInput",
            "authorized_keys",
            "([ \t]?(ssh|sk|ecdsa)-[a-z0-9é]{0,3}[ \t]{0,2}[A-Za-z0-9+/=]{14,18}([ \t!é][a-z\r]{0,3})?\r?\n?){1,3}",
            |t| dragonfly::config::parse_ssh_keys(t).is_ok(),
        );
    }

    /// Host names: the documented pattern (and length) is RFC 1123 as the server checks it.
    #[test]
    fn the_hostname_pattern_is_what_the_server_accepts() {
        agree("MachineUpdate", "hostname", "[a-zA-Z0-9.-]{0,20}", |h| {
            h.is_empty() || dragonfly::machines::validate_hostname(h).is_ok()
        });
    }
}
