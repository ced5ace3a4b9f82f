//! Property tests of bad input. Generated bodies, valid and hostile, for every JSON request of
//! the API, each property against one real server: no answer is a 5xx, every 4xx has the
//! error shape, valid input is accepted and reads back as the server normalises it. Then pure
//! properties of MAC normalisation and of TFTP packet parsing.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use dragonfly::api::machines::{AssignRequest, InstructRequest, ReimageRequest};
use dragonfly::api::{BODY_LIMIT, REGISTER_BODY_LIMIT};
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

use crate::support::{TestServer, report};

type Outcome = Result<(), TestCaseError>;

// ---- running properties against a live server -------------------------------------------

fn runner(cases: u32) -> TestRunner {
    // No regression files: a failure prints its shrunk input, which is the reproduction.
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs `test` on `cases` values of `strategy`; a failure panics with the shrunk input.
fn check<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Outcome) {
    if let Err(e) = runner(cases).run(&strategy, test) {
        panic!("{e}");
    }
}

/// One runtime and one server for a whole property.
fn server() -> (Runtime, TestServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(TestServer::start());
    (rt, s)
}

fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

fn clip(s: &str) -> String {
    s.chars().take(400).collect()
}

/// An answer that passed the checks every answer must pass: not a 5xx, and a 4xx is
/// `application/json` holding only `error` and `message` (non-empty strings) and `field`.
struct Answer {
    status: StatusCode,
    /// The body as JSON; `Null` when it is not JSON.
    body: Value,
    text: String,
}

async fn answer(req: RequestBuilder) -> Result<Answer, TestCaseError> {
    let resp = req.send().await.map_err(|e| fail(format!("send: {e}")))?;
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
fn bytes_of(body: &Value) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

/// Sends `body` as JSON with `client`.
async fn send_json(
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

async fn get_json(s: &TestServer, path: &str) -> Result<Value, TestCaseError> {
    let a = answer(s.client.get(format!("{}{path}", s.url))).await?;
    prop_assert_eq!(a.status, StatusCode::OK, "GET {}: {}", path, clip(&a.text));
    Ok(a.body)
}

/// Checks the status of an answer to a body of `size` bytes that the server should accept
/// (with `ok`) when `valid`, and refuse otherwise.
fn expect_status(a: &Answer, valid: bool, ok: StatusCode, size: usize, limit: usize) -> Outcome {
    if size > limit {
        prop_assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", clip(&a.text));
    } else if valid {
        prop_assert_eq!(a.status, ok, "valid input refused: {}", clip(&a.text));
    } else {
        prop_assert!(
            matches!(a.status.as_u16(), 400 | 422),
            "invalid input got {}: {}",
            a.status,
            clip(&a.text)
        );
    }
    Ok(())
}

/// Parses `body` as the server's extractor does: from the bytes, so with serde_json's
/// nesting limit. Also returns the size of the body.
fn parse<T: DeserializeOwned>(body: &Value) -> (Option<T>, usize) {
    let bytes = bytes_of(body);
    (serde_json::from_slice(&bytes).ok(), bytes.len())
}

// ---- strategies ------------------------------------------------------------------------

const WEIRD: &[&str] = &[
    "",
    " ",
    "\0",
    "\u{202e}evil",
    "\u{feff}",
    "e\u{301}",
    "🦀",
    "\u{10ffff}",
    "\u{fffd}",
    "null",
    "00000000",
    "To Be Filled By O.E.M.",
    "'; DROP TABLE machines; --",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "%00%2F",
    "\\\"",
    "\r\n",
];

/// Short strings, at most 256 bytes: ASCII, any Unicode (controls and astral planes
/// included), and known troublemakers.
fn short_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 ._:-]{0,24}",
        3 => ".{0,24}",
        1 => prop::sample::select(WEIRD).prop_map(str::to_string),
    ]
    .boxed()
}

/// Any string, including ones around the 256-byte field limit and huge ones.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        8 => short_text(),
        1 => (250usize..=260, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
        1 => (1usize..=48).prop_map(|k| "é".repeat(k * 1024)),
    ]
    .boxed()
}

#[derive(Debug, Clone, Copy)]
enum MacStyle {
    Colon,
    Dash,
    Dotted,
    Bare,
    Bootif,
}

fn mac_style() -> impl Strategy<Value = MacStyle> {
    prop_oneof![
        Just(MacStyle::Colon),
        Just(MacStyle::Dash),
        Just(MacStyle::Dotted),
        Just(MacStyle::Bare),
        Just(MacStyle::Bootif),
    ]
}

fn spell(o: [u8; 6], style: MacStyle, upper: bool) -> String {
    let hex: Vec<String> = o
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect();
    match style {
        MacStyle::Colon => hex.join(":"),
        MacStyle::Dash => hex.join("-"),
        MacStyle::Dotted => hex
            .chunks(2)
            .map(|c| c.concat())
            .collect::<Vec<_>>()
            .join("."),
        MacStyle::Bare => hex.concat(),
        MacStyle::Bootif => format!("01-{}", hex.join("-")),
    }
}

/// Unicast octets, often from a small pool so that reports collide with earlier ones.
fn unicast() -> BoxedStrategy<[u8; 6]> {
    prop_oneof![
        1 => (0u8..6).prop_map(|i| [0x52, 0x54, 0x00, 0xee, 0x00, i]),
        2 => any::<[u8; 6]>().prop_map(|mut o| {
            o[0] &= 0xfe;
            if o == [0; 6] {
                o[5] = 1;
            }
            o
        }),
    ]
    .boxed()
}

fn valid_mac() -> BoxedStrategy<String> {
    (unicast(), mac_style(), any::<bool>())
        .prop_map(|(o, st, up)| spell(o, st, up))
        .boxed()
}

fn opt<S: Strategy + 'static>(s: S) -> BoxedStrategy<Option<S::Value>>
where
    S::Value: std::fmt::Debug,
{
    prop::option::of(s).boxed()
}

/// Sizes and counters: mostly plausible, sometimes near or past what SQLite can store
/// (i64::MAX), or anything a u64 can hold.
fn big() -> BoxedStrategy<u64> {
    const EDGE: u64 = i64::MAX as u64;
    prop_oneof![
        6 => 0u64..(1 << 45),
        1 => (1u64 << 61)..(1 << 63),
        1 => (EDGE - 2)..=(EDGE + 2),
        1 => any::<u64>(),
    ]
    .boxed()
}

/// SMBIOS-ish values from a small pool (to make identities collide), junk, or text.
fn ident(pool: &'static [&'static str]) -> BoxedStrategy<Option<String>> {
    opt(prop_oneof![
        2 => prop::sample::select(pool).prop_map(str::to_string),
        1 => short_text(),
    ])
}

const SERIALS: &[&str] = &[
    "SN-1",
    "SN-2",
    " sn-1 ",
    "To Be Filled By O.E.M.",
    "0000000",
];
const VENDORS: &[&str] = &["QEMU", "Dell Inc.", "System manufacturer"];
const UUIDS: &[&str] = &[
    "6a1f0a4e-1c2b-4d3e-8f90-000000000001",
    "6A1F0A4E1C2B4D3E8F90000000000002",
    "00000000-0000-0000-0000-000000000000",
    "not-a-uuid",
];

/// A hardware report that the server must accept: valid MACs, strings of at most 256 bytes,
/// at most a few entries in each list.
fn valid_report() -> impl Strategy<Value = HardwareReport> {
    let system = (
        ident(VENDORS),
        opt(short_text()),
        opt(short_text()),
        ident(SERIALS),
        ident(UUIDS),
        opt(short_text()),
        opt(short_text()),
    )
        .prop_map(
            |(vendor, product, version, serial, uuid, sku, family)| SystemInfo {
                vendor,
                product,
                version,
                serial,
                uuid,
                sku,
                family,
            },
        );
    let board = (opt(short_text()), opt(short_text()), ident(SERIALS)).prop_map(
        |(vendor, product, serial)| BoardInfo {
            vendor,
            product,
            serial,
            ..Default::default()
        },
    );
    let chassis =
        (opt(short_text()), opt(short_text())).prop_map(|(kind, asset_tag)| ChassisInfo {
            kind,
            asset_tag,
            ..Default::default()
        });
    let bios = (opt(short_text()), opt(short_text())).prop_map(|(version, date)| BiosInfo {
        version,
        date,
        ..Default::default()
    });
    let dimm = (
        opt(short_text()),
        opt(big()),
        opt(any::<u32>()),
        opt(short_text()),
    )
        .prop_map(|(locator, size_bytes, speed_mts, serial)| MemoryDevice {
            locator,
            size_bytes,
            speed_mts,
            serial,
            ..Default::default()
        });
    let socket =
        (opt(short_text()), opt(any::<u32>())).prop_map(|(version, cores)| ProcessorSocket {
            version,
            cores,
            ..Default::default()
        });
    let smbios = (
        system,
        board,
        chassis,
        bios,
        prop::collection::vec(dimm, 0..3),
        prop::collection::vec(socket, 0..3),
    )
        .prop_map(
            |(system, baseboard, chassis, bios, memory, processors)| Smbios {
                system,
                baseboard,
                chassis,
                bios,
                memory,
                processors,
            },
        );
    let cpu = (
        opt(short_text()),
        any::<u32>(),
        any::<u32>(),
        opt(short_text()),
    )
        .prop_map(|(model, cores, threads, virtualization)| Cpu {
            model,
            sockets: 1,
            cores,
            threads,
            virtualization,
        });
    let nic = (
        short_text(),
        valid_mac(),
        opt(short_text()),
        opt(any::<bool>()),
        opt(any::<u32>()),
        prop::collection::vec(short_text(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(name, mac, driver, link_up, mtu, addresses, boot)| Nic {
            name,
            mac,
            driver,
            link_up,
            mtu,
            addresses,
            boot,
            ..Default::default()
        });
    let transport = prop_oneof![
        Just(Transport::Nvme),
        Just(Transport::Virtio),
        Just(Transport::Other)
    ];
    let disk = (
        short_text(),
        big(),
        ident(SERIALS),
        opt(short_text()),
        opt(transport),
    )
        .prop_map(|(name, size_bytes, serial, wwn, transport)| Disk {
            name,
            size_bytes,
            serial,
            wwn,
            transport,
            ..Default::default()
        });
    let pci =
        (short_text(), short_text(), opt(short_text())).prop_map(|(address, vendor_id, driver)| {
            PciDevice {
                address,
                vendor_id,
                driver,
                ..Default::default()
            }
        });
    let firmware = prop_oneof![Just(Firmware::Bios), Just(Firmware::Uefi)];
    (
        valid_mac(),
        opt(prop_oneof![Just("x86_64".to_string()), short_text()]),
        opt(firmware),
        smbios,
        opt(cpu),
        opt(big()),
        prop::collection::vec(nic, 0..4),
        prop::collection::vec(disk, 0..4),
        prop::collection::vec(pci, 0..3),
    )
        .prop_map(
            |(boot_mac, arch, firmware, smbios, cpu, memory_bytes, nics, disks, pci)| {
                HardwareReport {
                    boot_mac,
                    arch,
                    firmware,
                    smbios,
                    cpu,
                    memory_bytes,
                    nics,
                    disks,
                    pci,
                }
            },
        )
}

/// Any JSON value: scalars of every type, strings from [`text`], small arrays and objects.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((short_text(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// One change that makes a body hostile.
#[derive(Debug, Clone)]
enum Mutation {
    /// Drop the value at a path (a missing field).
    Remove(Index),
    /// A value of any type where another was expected.
    Replace(Index, Value),
    /// The value buried under this many arrays (past serde_json's limit of 128 too).
    Nest(Index, usize),
    /// A field nobody asked for.
    Extra(Index, String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => any::<Index>().prop_map(Mutation::Remove),
        4 => (any::<Index>(), json_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => (any::<Index>(), 1usize..200).prop_map(|(i, d)| Mutation::Nest(i, d)),
        1 => (any::<Index>(), short_text(), json_value()).prop_map(|(i, k, v)| Mutation::Extra(i, k, v)),
    ]
}

/// JSON pointers of every value in `v`, the root included.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn apply(v: &mut Value, m: &Mutation) {
    let mut all = Vec::new();
    pointers(v, String::new(), &mut all);
    let pick = |i: &Index| all[i.index(all.len())].clone();
    match m {
        Mutation::Remove(i) => {
            let p = pick(i);
            let Some((parent, key)) = p.rsplit_once('/') else {
                *v = Value::Null;
                return;
            };
            let key = key.replace("~1", "/").replace("~0", "~");
            match v.pointer_mut(parent) {
                Some(Value::Object(o)) => {
                    o.remove(&key);
                }
                Some(Value::Array(a)) => {
                    if let Ok(n) = key.parse::<usize>() {
                        if n < a.len() {
                            a.remove(n);
                        }
                    }
                }
                _ => {}
            }
        }
        Mutation::Replace(i, new) => {
            if let Some(slot) = v.pointer_mut(&pick(i)) {
                *slot = new.clone();
            }
        }
        Mutation::Nest(i, depth) => {
            if let Some(slot) = v.pointer_mut(&pick(i)) {
                let mut nested = slot.take();
                for _ in 0..*depth {
                    nested = Value::Array(vec![nested]);
                }
                *slot = nested;
            }
        }
        Mutation::Extra(i, key, new) => {
            if let Some(Value::Object(o)) = v.pointer_mut(&pick(i)) {
                o.insert(key.clone(), new.clone());
            }
        }
    }
}

/// Valid bodies from `valid`, and hostile ones: a valid body with one to three mutations, or
/// any JSON value at all.
fn bodies(valid: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let mutated =
        (valid.clone(), prop::collection::vec(mutation(), 1..4)).prop_map(|(mut v, ms)| {
            for m in &ms {
                apply(&mut v, m);
            }
            v
        });
    prop_oneof![3 => valid, 3 => mutated, 1 => json_value()].boxed()
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

// ---- registration and heartbeats -----------------------------------------------------------

/// The report without what the server does not keep between boots when nothing else changed
/// (addresses, link state, speed), in its order: the form in which reports are compared.
fn comparable(mut r: HardwareReport) -> HardwareReport {
    for n in &mut r.nics {
        n.addresses.clear();
        n.link_up = None;
        n.speed_mbps = None;
    }
    r.nics.sort_by(|a, b| a.mac.cmp(&b.mac));
    r.disks
        .sort_by(|a, b| (&a.serial, &a.wwn, &a.name).cmp(&(&b.serial, &b.wwn, &b.name)));
    r.pci.sort_by(|a, b| a.address.cmp(&b.address));
    r
}

/// What the server must do with a registration, worked out without it: the same parse and
/// the same normalisation. `None` when it must refuse.
fn expected_registration(body: &Value) -> (Option<RegisterRequest>, usize) {
    let (req, size) = parse::<RegisterRequest>(body);
    let req = req.and_then(|mut req| {
        let ok = identity::normalise(&mut req.report).is_ok() && req.agent_version.len() <= 64;
        ok.then_some(req)
    });
    (req, size)
}

async fn check_registration(s: &TestServer, body: Value) -> Outcome {
    let (expected, size) = expected_registration(&body);
    let url = format!("{}/api/v1/agent/register", s.url);
    let a = send_json(&s.anon, Method::POST, url, &body).await?;
    expect_status(
        &a,
        expected.is_some(),
        StatusCode::OK,
        size,
        REGISTER_BODY_LIMIT,
    )?;
    let Some(req) = expected.filter(|_| a.status == StatusCode::OK) else {
        return Ok(());
    };
    let r = req.report;
    let id = a.body["machine_id"].as_str().unwrap_or_default();
    let m = get_json(s, &format!("/api/v1/machines/{id}")).await?;
    let sys = &r.smbios.system;
    for (field, want) in [
        ("boot_mac", json!(r.boot_mac)),
        ("serial", json!(sys.serial)),
        ("smbios_uuid", json!(sys.uuid)),
        ("vendor", json!(sys.vendor)),
        ("product", json!(sys.product)),
        ("arch", json!(r.arch)),
        ("memory_bytes", json!(r.memory_bytes)),
        ("cpu_threads", json!(r.cpu.as_ref().map(|c| c.threads))),
        ("agent_version", json!(req.agent_version)),
    ] {
        prop_assert_eq!(&m[field], &want, "{} of machine {}", field, id);
    }
    // The server stores sizes as SQLite integers: a total past i64::MAX is clamped.
    let total = r
        .disks
        .iter()
        .fold(0u64, |t, d| t.saturating_add(d.size_bytes));
    prop_assert_eq!(&m["disk_bytes"], &json!(total.min(i64::MAX as u64)));
    let macs = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["mac"].as_str().map(str::to_string))
            .collect()
    };
    let sent: BTreeSet<String> = r.nics.iter().map(|n| n.mac.clone()).collect();
    prop_assert_eq!(macs(&m["nics"]), sent);
    let stored: HardwareReport = serde_json::from_value(m["hardware"].clone())
        .map_err(|e| fail(format!("hardware of {id}: {e}")))?;
    prop_assert_eq!(comparable(stored), comparable(r));
    Ok(())
}

fn register_body(report: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let version = prop_oneof![3 => Just("0.1.0".to_string()), 1 => short_text()];
    (version, any::<u32>(), report)
        .prop_map(|(v, p, r)| json!({"agent_version": v, "protocol": p, "report": r}))
        .boxed()
}

#[test]
fn registration_accepts_valid_reports_and_reads_them_back() {
    let (rt, server) = server();
    let s = &server;
    let valid = valid_report().prop_map(|r| to_json(&r)).boxed();
    check(256, register_body(valid), |body| {
        rt.block_on(check_registration(s, body))
    });
}

#[test]
fn registration_refuses_hostile_reports_in_the_error_shape() {
    let (rt, server) = server();
    let s = &server;
    let valid = valid_report().prop_map(|r| to_json(&r)).boxed();
    check(256, bodies(register_body(valid)), |body| {
        rt.block_on(check_registration(s, body))
    });
}

/// A registered machine, with disks an assignment can name; returns its id and agent token.
async fn machine(s: &TestServer) -> (String, String) {
    let mut r = report(7);
    r["disks"] = json!([
        {"name": "vda", "size_bytes": 1u64 << 34, "serial": "D1", "wwn": "W1"},
        {"name": "vdb", "size_bytes": 1u64 << 34, "serial": "D2"},
    ]);
    let reg = s.register(r).await;
    let id = reg["machine_id"].as_str().unwrap().to_string();
    (id, reg["token"].as_str().unwrap().to_string())
}

fn phase() -> impl Strategy<Value = &'static str> {
    prop::sample::select(
        &[
            "waiting",
            "chainloading",
            "installing",
            "installed",
            "failed",
        ][..],
    )
}

#[test]
fn heartbeats_are_accepted_or_refused_as_the_protocol_says() {
    let (rt, server) = server();
    let s = &server;
    let (id, token) = rt.block_on(machine(s));
    let valid = (phase(), opt(0u8..=100), opt(short_text()))
        .prop_map(
            |(p, progress, message)| json!({"phase": p, "progress": progress, "message": message}),
        )
        .boxed();
    check(128, bodies(valid), |body| {
        rt.block_on(async {
            let (hb, size) = parse::<Heartbeat>(&body);
            let hb = hb.filter(|h| {
                h.progress.is_none_or(|p| p <= 100)
                    && h.message.as_ref().is_none_or(|m| m.len() <= 1024)
            });
            let req = s
                .anon
                .post(format!("{}/api/v1/agent/heartbeat", s.url))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(bytes_of(&body));
            let a = answer(req).await?;
            expect_status(&a, hb.is_some(), StatusCode::OK, size, BODY_LIMIT)?;
            prop_assert!(a.status != StatusCode::OK || a.body["instruction"]["action"].is_string());
            if let Some(hb) = hb.filter(|_| a.status == StatusCode::OK) {
                let m = get_json(s, &format!("/api/v1/machines/{id}")).await?;
                prop_assert_eq!(&m["phase"], &to_json(&hb.phase));
                if let Some(p) = hb.progress {
                    prop_assert_eq!(&m["progress"], &json!(p));
                }
                if let Some(msg) = hb.message {
                    prop_assert_eq!(&m["status_message"], &json!(msg));
                }
            }
            Ok(())
        })
    });
}

// ---- operator actions on machines -------------------------------------------------------

const BUILTIN_OS: &[&str] = &["ubuntu-22.04", "ubuntu-24.04", "debian-12", "debian-13"];

/// An object holding only the fields that are `Some`.
fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect(),
    )
}

fn hostname() -> BoxedStrategy<String> {
    prop::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", 1..4)
        .prop_map(|labels| labels.join("."))
        .boxed()
}

fn update_body() -> BoxedStrategy<Value> {
    let host = opt(prop_oneof![
        4 => hostname().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => Just(json!("")),
        1 => short_text().prop_map(Value::from),
    ]);
    let tags = opt(prop::collection::vec("[a-z0-9_.:-]{1,20}", 0..8).prop_map(|t| json!(t)));
    let notes = opt(prop_oneof![
        4 => ".{0,64}".prop_map(Value::from),
        1 => (4090usize..=4100).prop_map(|n| json!("é".repeat(n))),
    ]);
    (host, tags, notes)
        .prop_map(|(h, t, n)| object(vec![("hostname", h), ("tags", t), ("notes", n)]))
        .boxed()
}

fn update_is_valid(u: &MachineUpdate) -> bool {
    let host_ok = match &u.hostname {
        Some(Some(h)) => h.is_empty() || validate_hostname(h).is_ok(),
        _ => true,
    };
    let tags_ok = u.tags.as_ref().is_none_or(|t| {
        t.len() <= 64
            && t.iter()
                .enumerate()
                .all(|(i, t)| validate_tag(i, t).is_ok())
    });
    let notes_ok = u.notes.as_ref().is_none_or(|n| n.chars().count() <= 4096);
    host_ok && tags_ok && notes_ok
}

#[test]
fn machine_updates_are_validated_and_read_back() {
    let (rt, server) = server();
    let s = &server;
    let (id, _) = rt.block_on(machine(s));
    let path = format!("/api/v1/machines/{id}");
    check(128, bodies(update_body()), |body| {
        rt.block_on(async {
            let (u, size) = parse::<MachineUpdate>(&body);
            let u = u.filter(update_is_valid);
            let before = get_json(s, &path).await?;
            let a = send_json(&s.client, Method::PATCH, format!("{}{path}", s.url), &body).await?;
            expect_status(&a, u.is_some(), StatusCode::OK, size, BODY_LIMIT)?;
            let Some(u) = u.filter(|_| a.status == StatusCode::OK) else {
                return Ok(());
            };
            let hostname = match u.hostname {
                Some(h) => json!(h.filter(|h| !h.is_empty()).map(|h| h.to_ascii_lowercase())),
                None => before["hostname"].clone(),
            };
            let tags = match u.tags {
                Some(t) => json!(t.into_iter().collect::<BTreeSet<_>>()),
                None => before["tags"].clone(),
            };
            let notes = u.notes.map_or(before["notes"].clone(), Value::from);
            let after = get_json(s, &path).await?;
            prop_assert_eq!(&after["hostname"], &hostname);
            prop_assert_eq!(&after["tags"], &tags);
            prop_assert_eq!(&after["notes"], &notes);
            prop_assert_eq!(&a.body["hostname"], &hostname);
            Ok(())
        })
    });
}

/// `{"serial": ..}` or `{"wwn": ..}`, mostly naming a disk the test machine has.
fn target_disk() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => prop::sample::select(&["D1", "D2"][..]).prop_map(|d| json!({"serial": d})),
        1 => Just(json!({"wwn": "W1"})),
        1 => Just(Value::Null),
        1 => short_text().prop_map(|d| json!({"serial": d})),
    ]
    .boxed()
}

fn os_slug() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(BUILTIN_OS).prop_map(str::to_string),
        1 => short_text(),
    ]
    .boxed()
}

fn disk_is_known(d: &Option<dragonfly::machines::TargetDisk>) -> bool {
    use dragonfly::machines::TargetDisk;
    match d {
        None => true,
        Some(TargetDisk::Serial(s)) => s == "D1" || s == "D2",
        Some(TargetDisk::Wwn(w)) => w == "W1",
    }
}

#[test]
fn assignments_name_a_known_os_and_disk() {
    let (rt, server) = server();
    let s = &server;
    let (id, _) = rt.block_on(machine(s));
    let valid = (os_slug(), opt(target_disk()))
        .prop_map(|(os, disk)| object(vec![("os", Some(json!(os))), ("target_disk", disk)]))
        .boxed();
    check(128, bodies(valid), |body| {
        rt.block_on(async {
            let (req, size) = parse::<AssignRequest>(&body);
            let req = req
                .filter(|r| BUILTIN_OS.contains(&r.os.as_str()) && disk_is_known(&r.target_disk));
            let url = format!("{}/api/v1/machines/{id}/assign", s.url);
            let a = send_json(&s.client, Method::POST, url, &body).await?;
            expect_status(&a, req.is_some(), StatusCode::OK, size, BODY_LIMIT)?;
            if let Some(r) = req.filter(|_| a.status == StatusCode::OK) {
                let m = get_json(s, &format!("/api/v1/machines/{id}")).await?;
                prop_assert_eq!(&m["state"], "assigned");
                prop_assert_eq!(&m["os"], &json!(r.os));
                prop_assert_eq!(&m["target_disk"], &to_json(&r.target_disk));
            }
            Ok(())
        })
    });
}

#[test]
fn reimages_of_failed_machines_are_validated() {
    let (rt, server) = server();
    let s = &server;
    let (id, token) = rt.block_on(machine(s));
    rt.block_on(async {
        let resp = s
            .post(
                &format!("/api/v1/machines/{id}/assign"),
                json!({"os": "debian-12"}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    });
    let valid = (opt(os_slug()), opt(target_disk()))
        .prop_map(|(os, disk)| object(vec![("os", os.map(Value::from)), ("target_disk", disk)]))
        .boxed();
    check(96, bodies(valid), |body| {
        rt.block_on(async {
            // Assigned (after the last reimage) → Failed; Failed stays Failed.
            let fail_hb = s.heartbeat(&token, json!({"phase": "failed"})).await;
            prop_assert_eq!(fail_hb.status(), StatusCode::OK);
            let before = get_json(s, &format!("/api/v1/machines/{id}")).await?;
            prop_assert_eq!(&before["state"], "failed");
            let (req, size) = parse::<ReimageRequest>(&body);
            let req = req.filter(|r| {
                r.os.as_ref()
                    .is_none_or(|o| BUILTIN_OS.contains(&o.as_str()))
                    && disk_is_known(&r.target_disk)
            });
            let url = format!("{}/api/v1/machines/{id}/reimage", s.url);
            let a = send_json(&s.client, Method::POST, url, &body).await?;
            expect_status(&a, req.is_some(), StatusCode::OK, size, BODY_LIMIT)?;
            if let Some(r) = req.filter(|_| a.status == StatusCode::OK) {
                let m = get_json(s, &format!("/api/v1/machines/{id}")).await?;
                prop_assert_eq!(&m["state"], "assigned");
                let os = r.os.map_or(before["os"].clone(), Value::from);
                prop_assert_eq!(&m["os"], &os);
                let disk = r
                    .target_disk
                    .map_or(before["target_disk"].clone(), |d| to_json(&d));
                prop_assert_eq!(&m["target_disk"], &disk);
            }
            Ok(())
        })
    });
}

#[test]
fn queued_instructions_reach_the_agent() {
    let (rt, server) = server();
    let s = &server;
    let (id, token) = rt.block_on(machine(s));
    let action = prop_oneof![
        4 => prop::sample::select(&["reboot", "poweroff", "reinventory"][..]).prop_map(Value::from),
        1 => short_text().prop_map(Value::from),
    ];
    let valid = action.prop_map(|a| json!({"action": a})).boxed();
    check(96, bodies(valid), |body| {
        rt.block_on(async {
            let (req, size) = parse::<InstructRequest>(&body);
            let url = format!("{}/api/v1/machines/{id}/instructions", s.url);
            let a = send_json(&s.client, Method::POST, url, &body).await?;
            expect_status(&a, req.is_some(), StatusCode::ACCEPTED, size, BODY_LIMIT)?;
            if let Some(r) = req.filter(|_| a.status == StatusCode::ACCEPTED) {
                let hb = s.heartbeat(&token, json!({"phase": "waiting"})).await;
                let hb: Value = hb.json().await.map_err(|e| fail(e.to_string()))?;
                prop_assert_eq!(&hb["instruction"]["action"], &to_json(&r.action));
            }
            Ok(())
        })
    });
}

// ---- the OS catalogue, tokens, login --------------------------------------------------------

fn os_body(with_slug: bool) -> BoxedStrategy<Value> {
    let pad = || prop::sample::select(&["", " ", "  \t"][..]);
    let name = (pad(), "[A-Za-z0-9][A-Za-z0-9 ().-]{0,40}", pad())
        .prop_map(|(a, n, b)| format!("{a}{n}{b}"));
    let slug = if with_slug {
        "[a-z0-9][a-z0-9.-]{1,30}".prop_map(Some).boxed()
    } else {
        Just(None).boxed()
    };
    (
        slug,
        name,
        "[a-zA-Z]{1,16}",
        "[0-9][0-9.]{0,8}",
        opt(prop::sample::select(&["x86_64", "aarch64"][..])),
        "https?://[a-z]{1,12}\\.example/[a-z0-9/]{0,20}",
    )
        .prop_map(|(slug, name, family, version, arch, url)| {
            object(vec![
                ("slug", slug.map(Value::from)),
                ("name", Some(json!(name))),
                ("family", Some(json!(family))),
                ("version", Some(json!(version))),
                ("arch", arch.map(Value::from)),
                ("image_url", Some(json!(url))),
            ])
        })
        .boxed()
}

/// Valid bodies tagged `true`; hostile ones (which may still happen to be valid) `false`.
fn tagged(valid: BoxedStrategy<Value>) -> BoxedStrategy<(Value, bool)> {
    prop_oneof![
        valid.clone().prop_map(|v| (v, true)),
        bodies(valid).prop_map(|v| (v, false)),
    ]
    .boxed()
}

/// An accepted catalogue entry reads back as sent, trimmed (and the family lower-cased).
async fn check_os_reads_back(s: &TestServer, slug: &str, body: &Value) -> Outcome {
    let input: OsInput = serde_json::from_value(body.clone()).map_err(|e| fail(e.to_string()))?;
    let got = get_json(s, &format!("/api/v1/os/{}", urlencode(slug))).await?;
    prop_assert_eq!(&got["name"], input.name.trim());
    prop_assert_eq!(
        &got["family"],
        &json!(input.family.trim().to_ascii_lowercase())
    );
    prop_assert_eq!(&got["version"], input.version.trim());
    prop_assert_eq!(&got["arch"], &json!(input.arch));
    prop_assert_eq!(&got["image_url"], input.image_url.trim());
    Ok(())
}

fn urlencode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[test]
fn catalogue_entries_are_validated_and_read_back() {
    let (rt, server) = server();
    let s = &server;
    let taken = RefCell::new(
        BUILTIN_OS
            .iter()
            .map(|s| s.to_string())
            .collect::<HashSet<_>>(),
    );
    check(128, tagged(os_body(true)), |(body, valid)| {
        rt.block_on(async {
            let slug = body["slug"].as_str().map(str::to_string);
            let exists = slug.as_ref().is_some_and(|sl| taken.borrow().contains(sl));
            let url = format!("{}/api/v1/os", s.url);
            let a = send_json(&s.client, Method::POST, url, &body).await?;
            if valid {
                let want = if exists {
                    StatusCode::CONFLICT
                } else {
                    StatusCode::CREATED
                };
                prop_assert_eq!(a.status, want, "{}", clip(&a.text));
            }
            if a.status == StatusCode::CREATED {
                let slug = slug.unwrap_or_default();
                taken.borrow_mut().insert(slug.clone());
                check_os_reads_back(s, &slug, &body).await?;
            }
            Ok(())
        })
    });
}

#[test]
fn catalogue_updates_are_validated_and_read_back() {
    let (rt, server) = server();
    let s = &server;
    let target = prop::sample::select(&["debian-12", "ubuntu-24.04"][..]);
    check(
        96,
        (target, tagged(os_body(false))),
        |(slug, (body, valid))| {
            rt.block_on(async {
                let url = format!("{}/api/v1/os/{slug}", s.url);
                let a = send_json(&s.client, Method::PUT, url, &body).await?;
                if valid {
                    prop_assert_eq!(a.status, StatusCode::OK, "{}", clip(&a.text));
                }
                if a.status == StatusCode::OK {
                    check_os_reads_back(s, slug, &body).await?;
                }
                Ok(())
            })
        },
    );
}

#[test]
fn api_tokens_are_created_for_valid_names_and_work() {
    let (rt, server) = server();
    let s = &server;
    let name = short_text().prop_filter("1–64 bytes once trimmed", |n| {
        !n.trim().is_empty() && n.trim().len() <= 64
    });
    let scope = prop::sample::select(&["read", "admin"][..]);
    let valid = (name, scope)
        .prop_map(|(n, sc)| json!({"name": n, "scope": sc}))
        .boxed();
    check(96, tagged(valid), |(body, valid)| {
        rt.block_on(async {
            let url = format!("{}/api/v1/tokens", s.url);
            let a = send_json(&s.client, Method::POST, url, &body).await?;
            if valid {
                prop_assert_eq!(a.status, StatusCode::CREATED, "{}", clip(&a.text));
            }
            if a.status == StatusCode::CREATED {
                let name = body["name"].as_str().unwrap_or_default().trim();
                prop_assert_eq!(&a.body["name"], name);
                prop_assert_eq!(&a.body["scope"], &body["scope"]);
                let secret = a.body["secret"].as_str().unwrap_or_default();
                let me = s
                    .anon
                    .get(format!("{}/api/v1/auth/me", s.url))
                    .bearer_auth(secret);
                let me = answer(me).await?;
                prop_assert_eq!(me.status, StatusCode::OK);
                prop_assert_eq!(&me.body["username"], name);
            }
            Ok(())
        })
    });
}

#[test]
fn logins_with_anything_but_the_password_are_refused_in_the_error_shape() {
    let (rt, server) = server();
    let s = &server;
    let password = rt
        .block_on(s.state.auth.ensure_admin())
        .unwrap()
        .expect("a fresh database has no operator yet");
    rt.block_on(async {
        let body = json!({"username": "admin", "password": password});
        let url = format!("{}/api/v1/auth/login", s.url);
        let a = send_json(&s.anon, Method::POST, url, &body).await.unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert!(a.body["csrf_token"].is_string());
    });
    // The limit is per client address: spread the attempts over loopback addresses so that
    // most of them reach the password check rather than the limiter.
    let attempt = std::cell::Cell::new(0u8);
    let valid = (short_text(), text())
        .prop_map(|(u, p)| json!({"username": u, "password": p}))
        .boxed();
    check(48, bodies(valid), |body| {
        rt.block_on(async {
            attempt.set(attempt.get().wrapping_add(1));
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 1, attempt.get()));
            let client = Client::builder()
                .local_address(from)
                .build()
                .map_err(|e| fail(e.to_string()))?;
            let url = format!("{}/api/v1/auth/login", s.url);
            let a = send_json(&client, Method::POST, url, &body).await?;
            prop_assert!(
                matches!(a.status.as_u16(), 400 | 401 | 413 | 422 | 429),
                "{}: {}",
                a.status,
                clip(&a.text)
            );
            Ok(())
        })
    });
}

// ---- any bytes to every JSON endpoint, queries, boot paths -----------------------------------

#[test]
fn any_bytes_to_any_json_endpoint_get_a_4xx_in_the_error_shape() {
    let (rt, server) = server();
    let s = &server;
    let (id, token) = rt.block_on(machine(s));
    let endpoints: Vec<(Method, String)> = vec![
        (Method::POST, "/api/v1/agent/register".into()),
        (Method::POST, "/api/v1/agent/heartbeat".into()),
        (Method::PATCH, format!("/api/v1/machines/{id}")),
        (Method::POST, format!("/api/v1/machines/{id}/assign")),
        (Method::POST, format!("/api/v1/machines/{id}/reimage")),
        (Method::POST, format!("/api/v1/machines/{id}/instructions")),
        (Method::POST, "/api/v1/os".into()),
        (Method::PUT, "/api/v1/os/debian-13".into()),
        (Method::POST, "/api/v1/tokens".into()),
        (Method::POST, "/api/v1/auth/login".into()),
    ];
    let raw = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        ".{0,64}".prop_map(String::into_bytes),
        json_value().prop_map(|v| bytes_of(&v)),
        (json_value(), any::<Index>()).prop_map(|(v, i)| {
            let b = bytes_of(&v);
            b[..i.index(b.len() + 1)].to_vec()
        }),
        (1usize..400).prop_map(|d| "[".repeat(d).into_bytes()),
    ];
    let content_type = prop::sample::select(
        &[
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("application/merge-patch+json"),
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ][..],
    );
    let strategy = (prop::sample::select(endpoints), raw, content_type);
    check(256, strategy, |((method, path), body, ct)| {
        rt.block_on(async {
            let client = if path.contains("/agent/") {
                &s.anon
            } else {
                &s.client
            };
            let mut req = client
                .request(method, format!("{}{path}", s.url))
                .body(body);
            if path.ends_with("/heartbeat") {
                req = req.bearer_auth(&token);
            }
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            let a = answer(req).await?;
            let json_ct =
                ct.is_some_and(|c| c.starts_with("application/json") || c.ends_with("+json"));
            if !json_ct {
                prop_assert_eq!(
                    a.status,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "{}",
                    clip(&a.text)
                );
            }
            Ok(())
        })
    });
}

#[test]
fn machine_list_queries_never_fail_on_the_server() {
    let (rt, server) = server();
    let s = &server;
    rt.block_on(machine(s));
    let key = prop::sample::select(
        &[
            "state", "tag", "q", "sort", "order", "page", "per_page", "bogus",
        ][..],
    );
    let value = prop_oneof![
        short_text(),
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(
            &[
                "offline",
                "discovered,failed",
                "desc",
                "mac",
                "0",
                "500",
                "501"
            ][..]
        )
        .prop_map(str::to_string),
    ];
    check(128, prop::collection::vec((key, value), 0..5), |params| {
        rt.block_on(async {
            let req = s
                .client
                .get(format!("{}/api/v1/machines", s.url))
                .query(&params);
            let a = answer(req).await?;
            prop_assert!(
                matches!(a.status.as_u16(), 200 | 400 | 422),
                "{}",
                clip(&a.text)
            );
            Ok(())
        })
    });
}

#[test]
fn boot_script_paths_take_any_mac_spelling_and_refuse_the_rest() {
    let (rt, server) = server();
    let s = &server;
    let file = prop_oneof![
        3 => (any::<[u8; 6]>(), mac_style(), any::<bool>())
            .prop_map(|(o, st, up)| format!("{}.ipxe", spell(o, st, up))),
        2 => short_text().prop_map(|t| format!("{t}.ipxe")),
        1 => short_text(),
    ]
    .prop_filter("not a dot segment", |f| f != "." && f != "..");
    check(128, file, |file| {
        rt.block_on(async {
            let mut url = reqwest::Url::parse(&s.url).map_err(|e| fail(e.to_string()))?;
            url.path_segments_mut()
                .map_err(|_| fail("base URL"))?
                .push("boot")
                .push(&file);
            let a = answer(s.anon.get(url)).await?;
            let mac_ok = file
                .strip_suffix(".ipxe")
                .is_some_and(|m| normalize_mac(m).is_ok());
            if mac_ok || file == "boot.ipxe" {
                prop_assert_eq!(a.status, StatusCode::OK, "{}", clip(&a.text));
                prop_assert!(a.text.starts_with("#!ipxe"), "{}", clip(&a.text));
            } else if file.ends_with(".ipxe") {
                prop_assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
            }
            Ok(())
        })
    });
}

// ---- pure properties -----------------------------------------------------------------------

#[test]
fn every_spelling_of_six_octets_normalises_to_the_colon_form() {
    check(
        4096,
        (any::<[u8; 6]>(), mac_style(), any::<bool>(), "[ \t]{0,2}"),
        |(o, st, up, pad)| {
            let spelled = format!("{pad}{}{pad}", spell(o, st, up));
            let colon = o
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":");
            let want = if o == [0; 6] || o == [0xff; 6] || o[0] & 1 == 1 {
                Err(MacError::NotUnicast)
            } else {
                Ok(colon)
            };
            prop_assert_eq!(normalize_mac(&spelled), want, "{:?}", spelled);
            Ok(())
        },
    );
}

#[test]
fn normalize_mac_is_idempotent_and_its_output_canonical() {
    let input = prop_oneof![
        "[0-9a-fA-F:.\\- ]{0,24}",
        any::<String>(),
        (unicast(), mac_style(), any::<bool>()).prop_map(|(o, st, up)| spell(o, st, up)),
    ];
    check(4096, input, |s| {
        if let Ok(m) = normalize_mac(&s) {
            prop_assert_eq!(normalize_mac(&m), Ok(m.clone()));
            let canonical = m.len() == 17
                && m.split(':').all(|o| {
                    o.len() == 2
                        && o.chars()
                            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
                });
            prop_assert!(canonical, "{s:?} → {m:?}");
        }
        Ok(())
    });
}

fn tftp_text() -> BoxedStrategy<String> {
    "[\\x01-\\x7f]{0,16}".boxed()
}

/// What `parse` lower-cases (modes, option names) generated lower-case already.
fn tftp_lower() -> BoxedStrategy<String> {
    "[\\x01-\\x40\\x5b-\\x7f]{0,12}".boxed()
}

fn tftp_options() -> BoxedStrategy<Vec<(String, String)>> {
    prop::collection::vec((tftp_lower(), tftp_text()), 0..=16).boxed()
}

fn tftp_packet() -> impl Strategy<Value = Packet> {
    let request =
        (tftp_text(), tftp_lower(), tftp_options()).prop_map(|(filename, mode, options)| Request {
            filename,
            mode,
            options,
        });
    prop_oneof![
        request.clone().prop_map(Packet::Read),
        request.prop_map(Packet::Write),
        (any::<u16>(), prop::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(block, data)| Packet::Data { block, data }),
        any::<u16>().prop_map(|block| Packet::Ack { block }),
        (any::<u16>(), tftp_text()).prop_map(|(code, message)| Packet::Error { code, message }),
        tftp_options().prop_map(Packet::OptionAck),
    ]
}

#[test]
fn tftp_packets_round_trip() {
    check(4096, tftp_packet(), |p| {
        prop_assert_eq!(tftp::parse(&tftp::encode(&p)), Ok(p));
        Ok(())
    });
}

#[test]
fn tftp_parse_never_panics_and_what_it_parses_round_trips() {
    let alphabet = prop::sample::select(&[0u8, 1, b'a', b'Z', b'9', 0x7f, 0x80, 0xff][..]);
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (0u16..8, prop::collection::vec(alphabet, 0..48)).prop_map(|(op, rest)| [
            op.to_be_bytes().to_vec(),
            rest
        ]
        .concat()),
        (
            tftp_packet(),
            any::<Index>(),
            prop::collection::vec(any::<u8>(), 0..4)
        )
            .prop_map(|(p, cut, tail)| {
                let b = tftp::encode(&p);
                [&b[..cut.index(b.len() + 1)], &tail[..]].concat()
            }),
    ];
    let dir = std::path::Path::new("/srv/tftp");
    check(8192, bytes, |b| {
        if let Ok(p) = tftp::parse(&b) {
            prop_assert_eq!(tftp::parse(&tftp::encode(&p)), Ok(p.clone()));
            if let Packet::Read(r) = &p {
                let _ = tftp::plan(dir, r, |_| Some(1 << 20));
            }
        }
        Ok(())
    });
}
