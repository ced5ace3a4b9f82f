//! What the Tinkerbell builders need to know about a machine and an OS, taken from the
//! machine domain.

use dragonfly_proto::Firmware;

use crate::machines::{MachineDetail, OsImage, TargetDisk};
use crate::tinkerbell::disks::DiskRef;
use crate::tinkerbell::objects::MachineFacts;
use crate::tinkerbell::templates::OsFacts;

/// Facts for the Tinkerbell builders from a machine of the domain.
pub fn facts(m: &MachineDetail) -> MachineFacts {
    let (nics, disks) = match &m.hardware {
        Some(r) => (r.nics.clone(), r.disks.clone()),
        None => (
            m.nics
                .iter()
                .map(|n| dragonfly_proto::Nic {
                    name: n.name.clone(),
                    mac: n.mac.clone(),
                    addresses: n.addresses.clone(),
                    boot: n.boot,
                    ..Default::default()
                })
                .collect(),
            m.disks
                .iter()
                .map(|d| dragonfly_proto::Disk {
                    name: d.name.clone(),
                    size_bytes: d.size_bytes,
                    model: d.model.clone(),
                    serial: d.serial.clone(),
                    wwn: d.wwn.clone(),
                    rotational: d.rotational,
                    transport: d.transport,
                })
                .collect(),
        ),
    };
    let uefi = match m.hardware.as_ref().and_then(|r| r.firmware) {
        Some(f) => f == Firmware::Uefi,
        None => m.machine.firmware == Some(Firmware::Uefi),
    };
    MachineFacts {
        id: m.machine.id.clone(),
        mac: m.machine.boot_mac.clone(),
        hostname: m.machine.hostname.clone(),
        arch: m.machine.arch.clone(),
        uefi,
        nics,
        disks,
        target: m.machine.target_disk.as_ref().map(disk_ref),
    }
}

pub(super) fn disk_ref(t: &TargetDisk) -> DiskRef {
    match t {
        TargetDisk::Serial(s) => DiskRef::Serial(s.clone()),
        TargetDisk::Wwn(w) => DiskRef::Wwn(w.clone()),
    }
}

pub fn os_facts(os: &OsImage) -> OsFacts {
    OsFacts {
        slug: os.slug.clone(),
        name: os.name.clone(),
        family: os.family.clone(),
        version: os.version.clone(),
        arch: os.arch.clone(),
        image_url: os.image_url.clone(),
    }
}
