//! Hand-made trees: the placeholder values vendors ship become absent, a missing source is
//! not an error, and an unreadable one names its file.

use dragonfly_agent::Inventory;
use dragonfly_proto::{MemoryDevice, ProcessorSocket, Transport};

use crate::util::{SmbiosTable, TempDir, entry_point_64};

/// SMBIOS tables the way cheap boards ship them: every identity string a placeholder.
fn junk_tables() -> Vec<u8> {
    let mut t = SmbiosTable::default();
    // Type 0, BIOS: vendor, version, segment, date, ROM size, characteristics.
    t.add(
        0,
        &[1, 2, 0, 0xE0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &["To Be Filled By O.E.M.", "1.0", "Not Specified"],
    );
    // Type 1, system: strings 1-4, an all-zero UUID, wake-up, SKU 5, family 6.
    let mut sys = vec![1, 2, 3, 4];
    sys.extend_from_slice(&[0; 16]);
    sys.extend_from_slice(&[6, 5, 6]);
    t.add(
        1,
        &sys,
        &[
            "System manufacturer",
            "System Product Name",
            "System Version",
            "System Serial Number",
            "Default string",
            "To be filled by O.E.M.",
        ],
    );
    // Type 2, baseboard: a real vendor and product, junk serial and asset tag.
    t.add(
        2,
        &[1, 2, 3, 4, 5, 0, 0, 0, 0, 0x0A, 0],
        &[
            "ASUSTeK COMPUTER INC.",
            "PRIME X570-P",
            "Rev X.0x",
            "Base Board Serial Number",
            "Default string",
        ],
    );
    // Type 3, chassis: type 3 (Desktop) with the lock bit set.
    t.add(
        3,
        &[1, 0x83, 2, 3, 4, 3, 3, 3, 3, 0, 0, 0, 0, 0, 1, 0, 0],
        &[
            "Default string",
            "Default string",
            "Chassis Serial Number",
            "          ",
        ],
    );
    // Type 4: an empty socket (status 0), then a populated one whose core and thread counts
    // need the 2.x fields (0xFF in the byte fields).
    let cpu = |status: u8| {
        let mut f = vec![0u8; 0x30 - 4];
        f[0] = 1; // socket designation
        f[3] = 2; // manufacturer
        f[0x10 - 4] = 3; // version
        f[0x14 - 4..0x16 - 4].copy_from_slice(&3500u16.to_le_bytes());
        f[0x18 - 4] = status;
        f[0x23 - 4] = 0xFF;
        f[0x25 - 4] = 0xFF;
        f[0x2A - 4..0x2C - 4].copy_from_slice(&300u16.to_le_bytes());
        f[0x2E - 4..0x30 - 4].copy_from_slice(&600u16.to_le_bytes());
        f
    };
    t.add(4, &cpu(0x00), &["CPU0", "Unknown", "Unknown"]);
    t.add(
        4,
        &cpu(0x41),
        &["CPU1", "AMD", "AMD EPYC 9654 96-Core Processor"],
    );
    // Type 17: a 64 GiB DDR4 module (size in the extended field) with a junk serial, and an
    // empty slot.
    let dimm = |size: u16| {
        let mut f = vec![0u8; 0x28 - 4];
        f[0x0C - 4..0x0E - 4].copy_from_slice(&size.to_le_bytes());
        f[0x10 - 4] = 1; // locator
        f[0x12 - 4] = 0x1A; // DDR4
        f[0x15 - 4..0x17 - 4].copy_from_slice(&3200u16.to_le_bytes());
        f[0x17 - 4] = 2; // manufacturer
        f[0x18 - 4] = 3; // serial
        f[0x1A - 4] = 4; // part number
        f[0x1C - 4..0x20 - 4].copy_from_slice(&65536u32.to_le_bytes());
        f[0x20 - 4..0x22 - 4].copy_from_slice(&2933u16.to_le_bytes());
        f
    };
    t.add(
        17,
        &dimm(0x7FFF),
        &["DIMM_A1", "Samsung", "00000000", "M393A8G40AB2-CWE    "],
    );
    t.add(17, &dimm(0), &["DIMM_A2", "NO DIMM", "NO DIMM", "NO DIMM"]);
    t.finish()
}

fn junk_tree() -> TempDir {
    let t = TempDir::new("junk");
    let table = junk_tables();
    t.write("sys/firmware/dmi/tables/DMI", &table);
    t.write(
        "sys/firmware/dmi/tables/smbios_entry_point",
        entry_point_64(table.len() as u32),
    );
    // eth0 has a link but an all-zero MAC; eth1 a real MAC and no link.
    for (name, mac, carrier, fn_) in [
        ("eth0", "00:00:00:00:00:00", "1", "0"),
        ("eth1", "3C:EC:EF:12:34:56", "0", "1"),
    ] {
        let dev = format!("sys/devices/pci0000:00/0000:01:00.{fn_}");
        t.mkdir(&dev);
        t.write(&format!("{dev}/net/{name}/address"), format!("{mac}\n"));
        t.write(&format!("{dev}/net/{name}/carrier"), format!("{carrier}\n"));
        t.write(&format!("{dev}/net/{name}/speed"), "-1\n");
        t.symlink(
            &format!("{dev}/net/{name}/device"),
            &format!("../../../0000:01:00.{fn_}"),
        );
        t.symlink(&format!("{dev}/driver"), "../../../bus/pci/drivers/igb");
        t.symlink(
            &format!("sys/class/net/{name}"),
            &format!("../../devices/pci0000:00/0000:01:00.{fn_}/net/{name}"),
        );
    }
    // A SATA disk with a junk serial and a model padded with spaces.
    let sda = "sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0";
    t.write(&format!("{sda}/model"), "Samsung SSD 870     \n");
    let mut vpd = vec![0, 0x80, 0, 16];
    vpd.extend_from_slice(b"0000000000000000");
    t.write(&format!("{sda}/vpd_pg80"), vpd);
    t.write(&format!("{sda}/block/sda/size"), "1953525168\n");
    t.write(&format!("{sda}/block/sda/queue/rotational"), "0\n");
    t.symlink(&format!("{sda}/block/sda/device"), "../../../0:0:0:0");
    t.symlink(
        "sys/block/sda",
        "../devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda",
    );
    t
}

#[test]
fn junk_smbios_values_are_absent() {
    let tree = junk_tree();
    let r = Inventory::collect(tree.path()).unwrap();
    let s = &r.smbios;
    assert_eq!(
        s.system,
        Default::default(),
        "every system string and the UUID were junk"
    );
    assert_eq!(s.bios.vendor, None);
    assert_eq!(s.bios.version.as_deref(), Some("1.0"));
    assert_eq!(s.bios.date, None);
    assert_eq!(s.baseboard.vendor.as_deref(), Some("ASUSTeK COMPUTER INC."));
    assert_eq!(s.baseboard.product.as_deref(), Some("PRIME X570-P"));
    assert_eq!(s.baseboard.serial, None);
    assert_eq!(s.baseboard.asset_tag, None);
    assert_eq!(s.chassis.vendor, None);
    assert_eq!(s.chassis.kind.as_deref(), Some("Desktop"));
    assert_eq!(s.chassis.serial, None);
    assert_eq!(s.chassis.asset_tag, None, "blank");
    assert_eq!(
        s.processors,
        vec![ProcessorSocket {
            socket: Some("CPU1".into()),
            manufacturer: Some("AMD".into()),
            version: Some("AMD EPYC 9654 96-Core Processor".into()),
            cores: Some(300),
            threads: Some(600),
            max_speed_mhz: Some(3500),
        }],
        "the empty socket is left out"
    );
    assert_eq!(
        s.memory,
        vec![MemoryDevice {
            locator: Some("DIMM_A1".into()),
            size_bytes: Some(64 << 30),
            speed_mts: Some(2933),
            kind: Some("DDR4".into()),
            manufacturer: Some("Samsung".into()),
            serial: None,
            part_number: Some("M393A8G40AB2-CWE".into()),
        }],
        "the empty slot is left out"
    );
}

#[test]
fn junk_disk_serials_and_nic_macs_are_not_used() {
    let tree = junk_tree();
    let r = Inventory::collect(tree.path()).unwrap();
    assert_eq!(r.disks.len(), 1);
    let d = &r.disks[0];
    assert_eq!(d.serial, None);
    assert_eq!(d.model.as_deref(), Some("Samsung SSD 870"));
    assert_eq!(d.size_bytes, 1_953_525_168 * 512);
    assert_eq!(d.rotational, Some(false));
    assert_eq!(d.transport, Some(Transport::Sata));
    // The zero-MAC NIC is reported as it is but never taken for the boot NIC.
    assert_eq!(r.nics.len(), 2);
    assert_eq!(r.nics[0].mac, "00:00:00:00:00:00");
    assert!(!r.nics[0].boot);
    assert!(r.nics[1].boot);
    assert_eq!(r.boot_mac, "3c:ec:ef:12:34:56");
    assert_eq!(r.nics[1].speed_mbps, None, "-1 means unknown");
    assert_eq!(r.nics[1].link_up, Some(false));
    assert_eq!(r.nics[1].pci_address.as_deref(), Some("0000:01:00.1"));
}

#[test]
fn an_empty_root_is_an_empty_report_not_an_error() {
    let tree = TempDir::new("empty");
    let r = Inventory::collect(tree.path()).unwrap();
    assert_eq!(r.boot_mac, "");
    assert!(r.nics.is_empty() && r.disks.is_empty() && r.pci.is_empty());
    assert_eq!(r.cpu, None);
    assert_eq!(r.memory_bytes, None);
}

#[test]
fn an_unreadable_source_names_its_file_and_costs_only_its_section() {
    let tree = TempDir::new("unreadable");
    // A directory where a file should be: reading it fails with EISDIR.
    tree.mkdir("proc/cpuinfo");
    tree.write("proc/meminfo", "MemTotal: 1024 kB\n");
    let err = Inventory::collect(tree.path()).unwrap_err();
    assert!(err.to_string().contains("proc/cpuinfo"), "{err}");
    let (r, errors) = Inventory::collect_lenient(tree.path());
    assert_eq!(errors.len(), 1);
    assert_eq!(r.cpu, None);
    assert_eq!(r.memory_bytes, Some(1024 * 1024));
}

#[test]
fn a_padded_or_broken_entry_point_does_not_stop_the_table() {
    let table = junk_tables();
    for entry in [
        // A 32-bit entry point followed by padding (seen on some firmware).
        {
            let mut e = vec![0u8; 0x1F];
            e[..4].copy_from_slice(b"_SM_");
            e[5] = 0x1F;
            e[6] = 2;
            e[7] = 8;
            e[0x10..0x15].copy_from_slice(b"_DMI_");
            e.extend_from_slice(&[0xAA; 16]);
            e
        },
        b"garbage".to_vec(),
        Vec::new(),
    ] {
        let tree = TempDir::new("entry");
        tree.write("sys/firmware/dmi/tables/DMI", &table);
        tree.write("sys/firmware/dmi/tables/smbios_entry_point", entry);
        let r = Inventory::collect(tree.path()).unwrap();
        assert_eq!(r.smbios.baseboard.product.as_deref(), Some("PRIME X570-P"));
    }
}

#[test]
fn a_uefi_boot_is_recognised() {
    let tree = TempDir::new("uefi");
    tree.mkdir("sys/firmware/efi");
    let r = Inventory::collect(tree.path()).unwrap();
    assert_eq!(r.firmware, Some(dragonfly_proto::Firmware::Uefi));
}
