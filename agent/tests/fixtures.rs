//! Each tree under `fixtures/<name>/` was captured by `fixtures/capture.sh` (the QEMU one by
//! `fixtures/capture-qemu.sh`); `fixtures/<name>.json` is its report. Set
//! `DRAGONFLY_UPDATE_GOLDEN=1` to rewrite the JSON after a deliberate change, then review the
//! diff.

use dragonfly_agent::Inventory;
use dragonfly_proto::{Firmware, HardwareReport, Transport};

use crate::util::crate_dir;

fn golden(name: &str) -> HardwareReport {
    let dir = crate_dir().join("fixtures");
    let report = Inventory::collect(&dir.join(name)).unwrap();
    let json = serde_json::to_string_pretty(&report).unwrap() + "\n";
    let path = dir.join(format!("{name}.json"));
    if std::env::var_os("DRAGONFLY_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &json).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with DRAGONFLY_UPDATE_GOLDEN=1)",
            path.display()
        )
    });
    assert_eq!(
        json, expected,
        "the report of fixtures/{name} differs from fixtures/{name}.json"
    );
    report
}

#[test]
fn qemu_vm_report_matches_its_golden_file() {
    let r = golden("qemu-q35");
    // Values set on the QEMU command line come through exactly.
    assert_eq!(r.smbios.system.vendor.as_deref(), Some("Dragonfly Labs"));
    assert_eq!(r.smbios.system.serial.as_deref(), Some("DF1000-0042"));
    assert_eq!(
        r.smbios.system.uuid.as_deref(),
        Some("6a1b9c2e-3f4d-4e5f-8a9b-0c1d2e3f4a5b")
    );
    // ...and the junk ones set there are absent.
    assert_eq!(r.smbios.baseboard.serial, None, "Default string");
    assert_eq!(r.smbios.baseboard.asset_tag, None, "To Be Filled By O.E.M.");
    assert_eq!(r.smbios.chassis.asset_tag, None, "0123456789");
    assert_eq!(r.smbios.memory[0].serial, None, "00000000");
    assert_eq!(r.smbios.processors.len(), 2);
    let cpu = r.cpu.as_ref().unwrap();
    assert_eq!((cpu.sockets, cpu.cores, cpu.threads), (2, 4, 4));
    // BOOTIF on the command line names the boot NIC.
    assert_eq!(r.boot_mac, "52:54:00:12:34:56");
    assert!(r.nics.iter().any(|n| n.boot && n.name == "eth0"));
    assert_eq!(r.nics[0].pci_address.as_deref(), Some("0000:00:06.0"));
    assert!(r.nics[0].addresses.contains(&"10.0.2.15/24".to_string()));
    let nvme = r.disks.iter().find(|d| d.name == "nvme0n1").unwrap();
    assert_eq!(nvme.transport, Some(Transport::Nvme));
    assert_eq!(nvme.serial.as_deref(), Some("NVME-DISK-3"));
    let scsi = r.disks.iter().find(|d| d.name == "sda").unwrap();
    assert_eq!(scsi.serial.as_deref(), Some("SCSI-DISK-2"), "from vpd_pg80");
    assert_eq!(scsi.wwn.as_deref(), Some("naa.5000c500a1b2c3d4"));
    assert_eq!(r.firmware, Some(Firmware::Bios));
}

#[test]
fn micro_vm_without_smbios_reports_what_it_has() {
    let r = golden("virtio-microvm");
    // No SMBIOS tables on this kind of VM: the section is empty, not an error.
    assert_eq!(r.smbios, Default::default());
    // No BOOTIF: the NIC holding the default route is the boot NIC; virtual ones are skipped.
    assert_eq!(r.nics.len(), 1);
    assert!(r.nics[0].boot);
    assert_eq!(r.boot_mac, r.nics[0].mac);
    assert_eq!(r.nics[0].driver.as_deref(), Some("virtio_net"));
    // loop and zram devices are not disks.
    assert_eq!(r.disks.len(), 1);
    assert_eq!(r.disks[0].transport, Some(Transport::Virtio));
    assert!(r.memory_bytes.unwrap() > 0);
}
