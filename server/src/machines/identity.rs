//! Who is this machine? Validation and normalisation of hardware reports, matching a report
//! to a known machine, and noticing when its hardware changed.
//!
//! A machine is keyed by its boot NIC MAC and cross-checked with the SMBIOS UUID and serial.
//! The server cleans every report again with the same rules as the agent (`dragonfly_proto`),
//! so junk from any agent version counts as absent.

use std::collections::BTreeSet;

use dragonfly_proto::{HardwareReport, clean_smbios, clean_uuid, normalize_mac};
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::machines::{self as store, DiskRow, Identity, MachineRow, NicRow};

/// Longest string in a report, in characters (stated in the API document).
pub const MAX_STRING: usize = 256;
const MAX_NICS: usize = 128;
const MAX_DISKS: usize = 512;
const MAX_PCI: usize = 2048;
const MAX_DIMMS: usize = 512;

fn clean_opt(v: &mut Option<String>, field: &str) -> Result<()> {
    if let Some(s) = v.as_deref() {
        if s.chars().count() > MAX_STRING {
            return Err(Error::invalid(
                field,
                format!("longer than {MAX_STRING} characters"),
            ));
        }
        *v = clean_smbios(s);
    }
    Ok(())
}

fn check_opt_len(s: &Option<String>, field: &str) -> Result<()> {
    s.as_deref().map_or(Ok(()), |s| check_len(s, field))
}

fn check_len(s: &str, field: &str) -> Result<()> {
    if s.chars().count() > MAX_STRING {
        return Err(Error::invalid(
            field,
            format!("longer than {MAX_STRING} characters"),
        ));
    }
    Ok(())
}

/// SQLite integers are signed 64-bit; larger sizes are not real hardware.
fn check_size(v: Option<u64>, field: &str) -> Result<()> {
    match v {
        Some(n) if n > i64::MAX as u64 => Err(Error::invalid(field, "larger than any real device")),
        _ => Ok(()),
    }
}

fn check_count(n: usize, max: usize, field: &str) -> Result<()> {
    if n > max {
        return Err(Error::invalid(field, format!("more than {max} entries")));
    }
    Ok(())
}

/// Validates a report and normalises it in place: MACs lower-case, junk SMBIOS values absent,
/// every string bounded. Errors name the offending field as `report.path`.
pub fn normalise(report: &mut HardwareReport) -> Result<()> {
    report.boot_mac = normalize_mac(&report.boot_mac)
        .map_err(|e| Error::invalid("report.boot_mac", e.to_string()))?;
    check_count(report.nics.len(), MAX_NICS, "report.nics")?;
    check_count(report.disks.len(), MAX_DISKS, "report.disks")?;
    check_count(report.pci.len(), MAX_PCI, "report.pci")?;
    check_count(
        report.smbios.memory.len(),
        MAX_DIMMS,
        "report.smbios.memory",
    )?;
    check_count(
        report.smbios.processors.len(),
        MAX_DIMMS,
        "report.smbios.processors",
    )?;

    check_size(report.memory_bytes, "report.memory_bytes")?;
    for (i, d) in report.disks.iter().enumerate() {
        check_size(Some(d.size_bytes), &format!("report.disks[{i}].size_bytes"))?;
    }
    for (i, m) in report.smbios.memory.iter().enumerate() {
        check_size(
            m.size_bytes,
            &format!("report.smbios.memory[{i}].size_bytes"),
        )?;
    }
    let s = &mut report.smbios;
    let sys = &mut s.system;
    if let Some(u) = sys.uuid.as_deref() {
        check_len(u, "report.smbios.system.uuid")?;
        sys.uuid = clean_uuid(u);
    }
    for (v, f) in [
        (&mut sys.vendor, "report.smbios.system.vendor"),
        (&mut sys.product, "report.smbios.system.product"),
        (&mut sys.version, "report.smbios.system.version"),
        (&mut sys.serial, "report.smbios.system.serial"),
        (&mut sys.sku, "report.smbios.system.sku"),
        (&mut sys.family, "report.smbios.system.family"),
        (&mut s.baseboard.vendor, "report.smbios.baseboard.vendor"),
        (&mut s.baseboard.product, "report.smbios.baseboard.product"),
        (&mut s.baseboard.version, "report.smbios.baseboard.version"),
        (&mut s.baseboard.serial, "report.smbios.baseboard.serial"),
        (
            &mut s.baseboard.asset_tag,
            "report.smbios.baseboard.asset_tag",
        ),
        (&mut s.chassis.vendor, "report.smbios.chassis.vendor"),
        (&mut s.chassis.kind, "report.smbios.chassis.kind"),
        (&mut s.chassis.serial, "report.smbios.chassis.serial"),
        (&mut s.chassis.asset_tag, "report.smbios.chassis.asset_tag"),
        (&mut s.bios.vendor, "report.smbios.bios.vendor"),
        (&mut s.bios.version, "report.smbios.bios.version"),
        (&mut s.bios.date, "report.smbios.bios.date"),
    ] {
        clean_opt(v, f)?;
    }
    for (i, m) in s.memory.iter_mut().enumerate() {
        clean_opt(&mut m.serial, &format!("report.smbios.memory[{i}].serial"))?;
        clean_opt(
            &mut m.part_number,
            &format!("report.smbios.memory[{i}].part_number"),
        )?;
        clean_opt(
            &mut m.manufacturer,
            &format!("report.smbios.memory[{i}].manufacturer"),
        )?;
    }
    for (i, p) in s.processors.iter().enumerate() {
        for (v, f) in [
            (&p.socket, "socket"),
            (&p.manufacturer, "manufacturer"),
            (&p.version, "version"),
        ] {
            check_opt_len(v, &format!("report.smbios.processors[{i}].{f}"))?;
        }
    }
    for (i, m) in s.memory.iter().enumerate() {
        check_opt_len(&m.locator, &format!("report.smbios.memory[{i}].locator"))?;
        check_opt_len(&m.kind, &format!("report.smbios.memory[{i}].kind"))?;
    }
    check_opt_len(&report.arch, "report.arch")?;
    for (i, n) in report.nics.iter_mut().enumerate() {
        n.mac = normalize_mac(&n.mac)
            .map_err(|e| Error::invalid(format!("report.nics[{i}].mac"), e.to_string()))?;
        check_len(&n.name, &format!("report.nics[{i}].name"))?;
        check_opt_len(&n.driver, &format!("report.nics[{i}].driver"))?;
        check_opt_len(&n.pci_address, &format!("report.nics[{i}].pci_address"))?;
        check_count(
            n.addresses.len(),
            64,
            &format!("report.nics[{i}].addresses"),
        )?;
        for (j, a) in n.addresses.iter().enumerate() {
            check_len(a, &format!("report.nics[{i}].addresses[{j}]"))?;
        }
        n.boot = n.mac == report.boot_mac;
    }
    for (i, d) in report.disks.iter_mut().enumerate() {
        check_len(&d.name, &format!("report.disks[{i}].name"))?;
        clean_opt(&mut d.serial, &format!("report.disks[{i}].serial"))?;
        clean_opt(&mut d.wwn, &format!("report.disks[{i}].wwn"))?;
        clean_opt(&mut d.model, &format!("report.disks[{i}].model"))?;
    }
    if let Some(cpu) = report.cpu.as_mut() {
        clean_opt(&mut cpu.model, "report.cpu.model")?;
        check_opt_len(&cpu.virtualization, "report.cpu.virtualization")?;
    }
    for (i, p) in report.pci.iter().enumerate() {
        for (v, f) in [
            (&p.address, "address"),
            (&p.vendor_id, "vendor_id"),
            (&p.device_id, "device_id"),
            (&p.class, "class"),
        ] {
            check_len(v, &format!("report.pci[{i}].{f}"))?;
        }
        check_opt_len(&p.driver, &format!("report.pci[{i}].driver"))?;
    }
    Ok(())
}

/// The identity and summary columns for a normalised report.
pub fn identity(report: &HardwareReport, agent_version: &str) -> Identity {
    let sys = &report.smbios.system;
    Identity {
        boot_mac: report.boot_mac.clone(),
        smbios_uuid: sys.uuid.clone(),
        serial: sys.serial.clone(),
        vendor: sys.vendor.clone(),
        product: sys.product.clone(),
        agent_version: Some(agent_version.chars().take(64).collect()),
        arch: report.arch.clone(),
        firmware: report.firmware,
        cpu_model: report.cpu.as_ref().and_then(|c| c.model.clone()),
        cpu_threads: report.cpu.as_ref().map(|c| c.threads),
        memory_bytes: report.memory_bytes,
        disk_bytes: Some(
            report
                .disks
                .iter()
                .fold(0u64, |acc, d| acc.saturating_add(d.size_bytes))
                .min(i64::MAX as u64),
        ),
    }
}

pub fn nic_rows(report: &HardwareReport) -> Vec<NicRow> {
    report
        .nics
        .iter()
        .map(|n| NicRow {
            mac: n.mac.clone(),
            name: n.name.clone(),
            driver: n.driver.clone(),
            pci_address: n.pci_address.clone(),
            link_up: n.link_up,
            speed_mbps: n.speed_mbps,
            mtu: n.mtu,
            addresses: n.addresses.clone(),
            is_boot: n.boot,
        })
        .collect()
}

pub fn disk_rows(report: &HardwareReport) -> Vec<DiskRow> {
    report
        .disks
        .iter()
        .map(|d| DiskRow {
            name: d.name.clone(),
            size_bytes: d.size_bytes,
            model: d.model.clone(),
            serial: d.serial.clone(),
            wwn: d.wwn.clone(),
            rotational: d.rotational,
            transport: d.transport,
        })
        .collect()
}

/// How a report was matched to a known machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    BootMac,
    OtherNic,
    Uuid,
    Serial,
}

/// Finds the machine this report belongs to: boot MAC first, then any NIC's MAC, then the
/// SMBIOS UUID, then serial + vendor.
pub fn find_existing(
    conn: &Connection,
    ident: &Identity,
    report: &HardwareReport,
) -> Result<Option<(MachineRow, MatchedBy)>> {
    if let Some(m) = store::by_boot_mac(conn, &ident.boot_mac)? {
        return Ok(Some((m, MatchedBy::BootMac)));
    }
    for nic in &report.nics {
        if let Some(m) = store::by_any_mac(conn, &nic.mac)? {
            return Ok(Some((m, MatchedBy::OtherNic)));
        }
    }
    if let Some(uuid) = &ident.smbios_uuid {
        if let Some(m) = store::by_uuid(conn, uuid)? {
            return Ok(Some((m, MatchedBy::Uuid)));
        }
    }
    if let Some(serial) = &ident.serial {
        if let Some(m) = store::by_serial(conn, serial, ident.vendor.as_deref())? {
            return Ok(Some((m, MatchedBy::Serial)));
        }
    }
    Ok(None)
}

/// Identity disagreements between a stored machine and a new report (a swapped mainboard
/// keeps the NIC but changes the UUID; a moved NIC keeps the UUID but changes the MAC).
pub fn identity_conflicts(stored: &MachineRow, ident: &Identity) -> Vec<String> {
    let mut out = Vec::new();
    // A known identifier that goes missing is a change too: leaving it out must not be a
    // way to blank a machine's identity.
    match (&stored.smbios_uuid, &ident.smbios_uuid) {
        (Some(a), Some(b)) if a != b => out.push(format!("SMBIOS UUID changed from {a} to {b}")),
        (Some(a), None) => out.push(format!("SMBIOS UUID {a} is no longer reported")),
        _ => {}
    }
    match (&stored.serial, &ident.serial) {
        (Some(a), Some(b)) if a != b => out.push(format!("serial changed from {a} to {b}")),
        (Some(a), None) => out.push(format!("serial {a} is no longer reported")),
        _ => {}
    }
    if stored.boot_mac != ident.boot_mac {
        out.push(format!(
            "boot NIC changed from {} to {}",
            stored.boot_mac, ident.boot_mac
        ));
    }
    out
}

/// Identifiers of the report that belong to another known machine than `m`: its NICs'
/// MACs, its SMBIOS UUID, its serial. A claim carrying them is held for an operator even
/// with proof, so that no machine can take another's identifiers.
pub fn foreign_identifiers(
    conn: &Connection,
    m: &MachineRow,
    ident: &Identity,
    report: &HardwareReport,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for nic in &report.nics {
        if let Some(other) = store::by_any_mac(conn, &nic.mac)? {
            if other.id != m.id {
                out.push(format!(
                    "NIC {} belongs to machine {}",
                    nic.mac, other.boot_mac
                ));
            }
        }
    }
    if let Some(uuid) = &ident.smbios_uuid {
        if let Some(other) = store::by_uuid(conn, uuid)? {
            if other.id != m.id {
                out.push(format!(
                    "SMBIOS UUID {uuid} belongs to machine {}",
                    other.boot_mac
                ));
            }
        }
    }
    if let Some(serial) = &ident.serial {
        if let Some(other) = store::by_serial(conn, serial, ident.vendor.as_deref())? {
            if other.id != m.id {
                out.push(format!(
                    "serial {serial} belongs to machine {}",
                    other.boot_mac
                ));
            }
        }
    }
    Ok(out)
}

/// The report without what changes on every boot (addresses, link state, speed), as the
/// text that is hashed and compared between boots.
fn comparable(report: &HardwareReport) -> HardwareReport {
    let mut r = report.clone();
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

/// SHA-256 of the comparable form of a report.
pub fn digest(report: &HardwareReport) -> String {
    let json = serde_json::to_vec(&comparable(report)).unwrap_or_default();
    let hash = Sha256::digest(&json);
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn disk_key(d: &dragonfly_proto::Disk) -> String {
    d.serial
        .clone()
        .or_else(|| d.wwn.clone())
        .unwrap_or_else(|| d.name.clone())
}

/// A short human summary of what differs between two reports of the same machine.
pub fn diff(old: &HardwareReport, new: &HardwareReport) -> Vec<String> {
    let mut out = Vec::new();
    let set = |r: &HardwareReport| {
        r.nics
            .iter()
            .map(|n| n.mac.clone())
            .collect::<BTreeSet<_>>()
    };
    let (a, b) = (set(old), set(new));
    for m in b.difference(&a) {
        out.push(format!("NIC {m} added"));
    }
    for m in a.difference(&b) {
        out.push(format!("NIC {m} removed"));
    }
    let dset = |r: &HardwareReport| r.disks.iter().map(disk_key).collect::<BTreeSet<_>>();
    let (a, b) = (dset(old), dset(new));
    for d in b.difference(&a) {
        out.push(format!("disk {d} added"));
    }
    for d in a.difference(&b) {
        out.push(format!("disk {d} removed"));
    }
    if let Some(change) = memory_change(old, new) {
        out.push(change);
    }
    let cpu = |r: &HardwareReport| r.cpu.as_ref().and_then(|c| c.model.clone());
    if cpu(old) != cpu(new) {
        out.push(format!(
            "CPU {} → {}",
            cpu(old).unwrap_or_else(|| "unknown".into()),
            cpu(new).unwrap_or_else(|| "unknown".into())
        ));
    }
    if old.smbios.bios.version != new.smbios.bios.version {
        out.push(format!(
            "BIOS {} → {}",
            old.smbios.bios.version.as_deref().unwrap_or("unknown"),
            new.smbios.bios.version.as_deref().unwrap_or("unknown")
        ));
    }
    let pci = |r: &HardwareReport| {
        r.pci
            .iter()
            .map(|p| format!("{} {}:{}", p.address, p.vendor_id, p.device_id))
            .collect::<BTreeSet<_>>()
    };
    let (a, b) = (pci(old), pci(new));
    for p in b.difference(&a) {
        out.push(format!("PCI device {p} added"));
    }
    for p in a.difference(&b) {
        out.push(format!("PCI device {p} removed"));
    }
    if out.is_empty() {
        out.push("hardware report changed".into());
    }
    out
}

/// Installed memory as a person counts it: the DIMMs (count and total size) when both reports
/// list them, else the kernel's MemTotal with a tolerance, since MemTotal moves by a few MiB
/// between kernels and boots (reserved and firmware memory) while the hardware stays the same.
fn memory_change(old: &HardwareReport, new: &HardwareReport) -> Option<String> {
    let dimms = |r: &HardwareReport| {
        let sizes: Vec<u64> = r
            .smbios
            .memory
            .iter()
            .filter_map(|m| m.size_bytes)
            .collect();
        (!sizes.is_empty()).then(|| {
            (
                sizes.len(),
                sizes.iter().fold(0u64, |a, b| a.saturating_add(*b)),
            )
        })
    };
    if let (Some((n_old, old_total)), Some((n_new, new_total))) = (dimms(old), dimms(new)) {
        return ((n_old, old_total) != (n_new, new_total)).then(|| {
            format!(
                "memory {n_old} DIMM(s), {} → {n_new} DIMM(s), {}",
                size(old_total, new_total),
                size(new_total, old_total)
            )
        });
    }
    match (old.memory_bytes, new.memory_bytes) {
        (Some(a), Some(b)) => {
            // 2 % or 256 MiB, whichever is larger: no DIMM is smaller than that.
            let tolerance = (a.max(b) / 50).max(256 << 20);
            (a.abs_diff(b) > tolerance).then(|| format!("memory {} → {}", size(a, b), size(b, a)))
        }
        (None, None) => None,
        (a, b) => Some(format!(
            "memory {} → {}",
            a.map_or("unknown".into(), |a| size(a, b.unwrap_or(a))),
            b.map_or("unknown".into(), |b| size(b, a.unwrap_or(b)))
        )),
    }
}

/// `bytes` in GiB, with as many decimals as it takes to tell it from `other` (up to three).
fn size(bytes: u64, other: u64) -> String {
    let gib = |b: u64, d: usize| format!("{:.*} GiB", d, b as f64 / (1u64 << 30) as f64);
    (1..=3)
        .map(|d| (gib(bytes, d), gib(other, d)))
        .find(|(a, b)| a != b)
        .map_or_else(|| gib(bytes, 1), |(a, _)| a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dragonfly_proto::{Disk, Nic};

    fn report() -> HardwareReport {
        let mut r = HardwareReport {
            boot_mac: "52:54:00:AA:BB:01".into(),
            memory_bytes: Some(8 << 30),
            ..Default::default()
        };
        r.smbios.system.serial = Some("To Be Filled By O.E.M.".into());
        r.smbios.system.uuid = Some("00000000-0000-0000-0000-000000000000".into());
        r.smbios.system.vendor = Some(" QEMU ".into());
        r.nics.push(Nic {
            name: "eth0".into(),
            mac: "52-54-00-aa-bb-01".into(),
            addresses: vec!["10.0.2.15/24".into()],
            ..Default::default()
        });
        r.disks.push(Disk {
            name: "vda".into(),
            size_bytes: 1 << 30,
            serial: Some("DISK1".into()),
            ..Default::default()
        });
        r
    }

    #[test]
    fn normalise_cleans_junk_and_macs() {
        let mut r = report();
        normalise(&mut r).unwrap();
        assert_eq!(r.boot_mac, "52:54:00:aa:bb:01");
        assert_eq!(r.smbios.system.serial, None);
        assert_eq!(r.smbios.system.uuid, None);
        assert_eq!(r.smbios.system.vendor.as_deref(), Some("QEMU"));
        assert_eq!(r.nics[0].mac, "52:54:00:aa:bb:01");
        assert!(r.nics[0].boot);
    }

    #[test]
    fn normalise_names_the_bad_field() {
        let mut r = report();
        r.nics[0].mac = "nope".into();
        match normalise(&mut r) {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "report.nics[0].mac"),
            other => panic!("unexpected {other:?}"),
        }
        let mut r = report();
        r.smbios.system.product = Some("x".repeat(300));
        match normalise(&mut r) {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "report.smbios.system.product"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn digest_ignores_addresses_but_not_disks() {
        let mut a = report();
        normalise(&mut a).unwrap();
        let mut b = a.clone();
        b.nics[0].addresses = vec!["10.0.2.16/24".into()];
        assert_eq!(digest(&a), digest(&b));
        b.disks.push(Disk {
            name: "vdb".into(),
            size_bytes: 2 << 30,
            serial: Some("DISK2".into()),
            ..Default::default()
        });
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(diff(&a, &b), vec!["disk DISK2 added".to_string()]);
    }

    #[test]
    fn memory_changes_are_told_as_a_person_would() {
        let mut old = report();
        let mut new = report();
        // MemTotal moves by a few KiB between boots: not a change.
        old.memory_bytes = Some(433_000_000);
        new.memory_bytes = Some(433_004_096);
        assert_eq!(memory_change(&old, &new), None);
        // A DIMM more is, and the values printed differ.
        new.memory_bytes = Some(16 << 30);
        let said = memory_change(&old, &new).unwrap();
        assert_eq!(said, "memory 0.4 GiB → 16.0 GiB");
        // With DIMMs on both sides they decide, whatever MemTotal says.
        let dimm = |gib: u64| dragonfly_proto::MemoryDevice {
            size_bytes: Some(gib << 30),
            ..Default::default()
        };
        old.smbios.memory = vec![dimm(8), dimm(8)];
        new.smbios.memory = vec![dimm(8), dimm(8)];
        assert_eq!(memory_change(&old, &new), None);
        new.smbios.memory.push(dimm(16));
        assert_eq!(
            memory_change(&old, &new).unwrap(),
            "memory 2 DIMM(s), 16.0 GiB → 3 DIMM(s), 32.0 GiB"
        );
        // Close values get the decimals that tell them apart.
        assert_eq!(size(1 << 30, (1 << 30) + (20 << 20)), "1.00 GiB");
    }
}
