//! Generators of valid and hostile input: text, MACs, sizes, hardware reports, any JSON,
//! and mutations that make a valid body hostile.

use super::*;

pub(super) const WEIRD: &[&str] = &[
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
pub(super) fn short_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 ._:-]{0,24}",
        3 => ".{0,24}",
        1 => prop::sample::select(WEIRD).prop_map(str::to_string),
    ]
    .boxed()
}

/// Any string, including ones around the 256-byte field limit and huge ones.
pub(super) fn text() -> BoxedStrategy<String> {
    prop_oneof![
        8 => short_text(),
        1 => (250usize..=260, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
        1 => (1usize..=48).prop_map(|k| "é".repeat(k * 1024)),
    ]
    .boxed()
}

#[derive(Debug, Clone, Copy)]
pub(super) enum MacStyle {
    Colon,
    Dash,
    Dotted,
    Bare,
    Bootif,
}

pub(super) fn mac_style() -> impl Strategy<Value = MacStyle> {
    prop_oneof![
        Just(MacStyle::Colon),
        Just(MacStyle::Dash),
        Just(MacStyle::Dotted),
        Just(MacStyle::Bare),
        Just(MacStyle::Bootif),
    ]
}

pub(super) fn spell(o: [u8; 6], style: MacStyle, upper: bool) -> String {
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
pub(super) fn unicast() -> BoxedStrategy<[u8; 6]> {
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

pub(super) fn valid_mac() -> BoxedStrategy<String> {
    (unicast(), mac_style(), any::<bool>())
        .prop_map(|(o, st, up)| spell(o, st, up))
        .boxed()
}

pub(super) fn opt<S: Strategy + 'static>(s: S) -> BoxedStrategy<Option<S::Value>>
where
    S::Value: std::fmt::Debug,
{
    prop::option::of(s).boxed()
}

/// Sizes and counters: mostly plausible, sometimes near or past what SQLite can store
/// (i64::MAX), or anything a u64 can hold.
pub(super) fn big() -> BoxedStrategy<u64> {
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
pub(super) fn ident(pool: &'static [&'static str]) -> BoxedStrategy<Option<String>> {
    opt(prop_oneof![
        2 => prop::sample::select(pool).prop_map(str::to_string),
        1 => short_text(),
    ])
}

pub(super) const SERIALS: &[&str] = &[
    "SN-1",
    "SN-2",
    " sn-1 ",
    "To Be Filled By O.E.M.",
    "0000000",
];
pub(super) const VENDORS: &[&str] = &["QEMU", "Dell Inc.", "System manufacturer"];
pub(super) const UUIDS: &[&str] = &[
    "6a1f0a4e-1c2b-4d3e-8f90-000000000001",
    "6A1F0A4E1C2B4D3E8F90000000000002",
    "00000000-0000-0000-0000-000000000000",
    "not-a-uuid",
];

/// A hardware report that the server must accept: valid MACs, strings of at most 256 bytes,
/// at most a few entries in each list.
pub(super) fn valid_report() -> impl Strategy<Value = HardwareReport> {
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
pub(super) fn json_value() -> BoxedStrategy<Value> {
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
pub(super) enum Mutation {
    /// Drop the value at a path (a missing field).
    Remove(Index),
    /// A value of any type where another was expected.
    Replace(Index, Value),
    /// The value buried under this many arrays (past serde_json's limit of 128 too).
    Nest(Index, usize),
    /// A field nobody asked for.
    Extra(Index, String, Value),
}

pub(super) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => any::<Index>().prop_map(Mutation::Remove),
        4 => (any::<Index>(), json_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => (any::<Index>(), 1usize..200).prop_map(|(i, d)| Mutation::Nest(i, d)),
        1 => (any::<Index>(), short_text(), json_value()).prop_map(|(i, k, v)| Mutation::Extra(i, k, v)),
    ]
}

/// JSON pointers of every value in `v`, the root included.
pub(super) fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
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

pub(super) fn apply(v: &mut Value, m: &Mutation) {
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
pub(super) fn bodies(valid: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let mutated =
        (valid.clone(), prop::collection::vec(mutation(), 1..4)).prop_map(|(mut v, ms)| {
            for m in &ms {
                apply(&mut v, m);
            }
            v
        });
    prop_oneof![3 => valid, 3 => mutated, 1 => json_value()].boxed()
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
