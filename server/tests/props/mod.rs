//! Property tests of bad input. Generated bodies, valid and hostile, for every JSON request of
//! the API, each property against one real server: no answer is a 5xx, every 4xx has the
//! error shape, valid input is accepted and reads back as the server normalises it. Then pure
//! properties of MAC normalisation and of TFTP packet parsing.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use dragonfly::api::machines::{AssignRequest, InstructRequest, ReimageRequest};
use dragonfly::api::{BODY_LIMIT, OPERATOR_BODY_LIMIT, REGISTER_BODY_LIMIT};
use dragonfly::boot::tftp::{self, Packet, Request};
use dragonfly::machines::catalogue::OsInput;
use dragonfly::machines::{MachineUpdate, identity, validate_hostname, validate_tag};
use dragonfly_proto::{
    BiosInfo, BoardInfo, ChassisInfo, Cpu, Disk, Firmware, HardwareReport, Heartbeat, MacError,
    MemoryDevice, Nic, PciDevice, ProcessorSocket, RegisterRequest, Smbios, SystemInfo, Transport,
    normalize_mac,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::support::{TestServer, report, urlencode};

type Outcome = Result<(), TestCaseError>;

mod agent;
mod any_input;
mod catalogue_and_auth;
mod machines;
mod pure;
mod strategies;

use self::{agent::*, machines::*, strategies::*};

// ---- running properties against a live server -------------------------------------------

pub(super) fn runner(cases: u32) -> TestRunner {
    // No regression files: a failure prints its shrunk input, which is the reproduction.
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs `test` on `cases` values of `strategy`; a failure panics with the shrunk input.
pub(super) fn check<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Outcome) {
    if let Err(e) = runner(cases).run(&strategy, test) {
        panic!("{e}");
    }
}

/// One runtime and one server for a whole property.
pub(super) fn server() -> (Runtime, TestServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(TestServer::start());
    (rt, s)
}

pub(super) fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

pub(super) fn clip(s: &str) -> String {
    s.chars().take(400).collect()
}

/// An answer that passed the checks every answer must pass: not a 5xx, and a 4xx is
/// `application/json` holding only `error` and `message` (non-empty strings) and `field`.
pub(super) struct Answer {
    status: StatusCode,
    /// The body as JSON; `Null` when it is not JSON.
    body: Value,
    text: String,
}

pub(super) async fn answer(req: RequestBuilder) -> Result<Answer, TestCaseError> {
    let resp = req.send().await.map_err(|e| fail(format!("send: {e:?}")))?;
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await.map_err(|e| fail(format!("body: {e}")))?;
    let shown = clip(&text);
    prop_assert!(!status.is_server_error(), "{status}: {shown}");
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_client_error() {
        prop_assert_eq!(
            ct.as_deref(),
            Some("application/json"),
            "{}: {}",
            status,
            shown
        );
        let only_known = body.as_object().is_some_and(|o| {
            o.keys()
                .all(|k| matches!(k.as_str(), "error" | "message" | "field"))
        });
        prop_assert!(only_known, "{status}: {shown}");
        for key in ["error", "message"] {
            let ok = body[key].as_str().is_some_and(|v| !v.is_empty());
            prop_assert!(ok, "{status}: no {key}: {shown}");
        }
        prop_assert!(body.get("field").is_none_or(Value::is_string), "{shown}");
    }
    Ok(Answer { status, body, text })
}

/// `body` as the exact JSON bytes sent, and their length.
pub(super) fn bytes_of(body: &Value) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

/// Sends `body` as JSON with `client`.
pub(super) async fn send_json(
    client: &Client,
    method: Method,
    url: String,
    body: &Value,
) -> Result<Answer, TestCaseError> {
    let req = client
        .request(method, url)
        .header("content-type", "application/json")
        .body(bytes_of(body));
    answer(req).await
}

pub(super) async fn get_json(s: &TestServer, path: &str) -> Result<Value, TestCaseError> {
    let a = answer(s.client.get(format!("{}{path}", s.url))).await?;
    prop_assert_eq!(a.status, StatusCode::OK, "GET {}: {}", path, clip(&a.text));
    Ok(a.body)
}

/// Checks the status of an answer to a body of `size` bytes that the server should accept
/// (with `ok`) when `valid`, and refuse otherwise.
pub(super) fn expect_status(
    a: &Answer,
    valid: bool,
    ok: StatusCode,
    size: usize,
    limit: usize,
) -> Outcome {
    if size > limit {
        prop_assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", clip(&a.text));
    } else if valid {
        prop_assert_eq!(a.status, ok, "valid input refused: {}", clip(&a.text));
    } else {
        // 409 only for a well-formed name of something that does not exist.
        let unresolved = a.status == StatusCode::CONFLICT && a.body["error"] == "unknown_reference";
        prop_assert!(
            matches!(a.status.as_u16(), 400 | 422) || unresolved,
            "invalid input got {}: {}",
            a.status,
            clip(&a.text)
        );
    }
    Ok(())
}

/// Parses `body` as the server's extractor does: from the bytes, so with serde_json's
/// nesting limit. Also returns the size of the body.
pub(super) fn parse<T: DeserializeOwned>(body: &Value) -> (Option<T>, usize) {
    let bytes = bytes_of(body);
    (serde_json::from_slice(&bytes).ok(), bytes.len())
}
