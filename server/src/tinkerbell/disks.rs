//! Stable device paths for the disks a machine reported: the `/dev/disk/by-id/...` names
//! udev creates (rules `60-persistent-storage.rules`), derived from the WWN or serial. Kernel
//! names such as `sda` are never used: they can change between boots.
//!
//! Only names Dragonfly can derive exactly are produced. SATA/SAS/USB disks without a WWN get
//! none (udev builds their names from ATA/SCSI inquiry data the report does not carry).

use dragonfly_proto::{Disk, Transport};

const BY_ID: &str = "/dev/disk/by-id/";

/// udev's escaping of a symlink component: whitespace runs become one `_`, characters
/// outside `0-9A-Za-z#+-.:=@_` become `_`.
fn udev_escape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.trim().chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push('_');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        if c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c) {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    (!out.is_empty()).then_some(out)
}

fn is_nvme(d: &Disk) -> bool {
    d.transport == Some(Transport::Nvme) || d.name.starts_with("nvme")
}

fn is_virtio(d: &Disk) -> bool {
    d.transport == Some(Transport::Virtio) || d.name.starts_with("vd")
}

/// The by-id name from a WWN as sysfs reports it (`naa.5000c500...`, `eui....`, `nvme....`,
/// or already `0x...`).
fn from_wwn(d: &Disk, wwn: &str) -> Option<String> {
    let w = wwn.trim().to_ascii_lowercase();
    if let Some(hex) = w.strip_prefix("naa.") {
        return hex
            .chars()
            .all(|c| c.is_ascii_hexdigit())
            .then(|| format!("wwn-0x{hex}"));
    }
    if w.starts_with("0x") && w.len() > 2 && w[2..].chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(format!("wwn-{w}"));
    }
    if is_nvme(d) && (w.starts_with("eui.") || w.starts_with("nvme.") || w.starts_with("uuid.")) {
        // udev: SYMLINK+="disk/by-id/nvme-$attr{wwid}", attribute text as the kernel gives it.
        return udev_escape(wwn.trim()).map(|s| format!("nvme-{s}"));
    }
    None
}

fn from_serial(d: &Disk, serial: &str) -> Option<String> {
    if is_virtio(d) {
        return udev_escape(serial).map(|s| format!("virtio-{s}"));
    }
    if is_nvme(d) {
        let model = udev_escape(d.model.as_deref()?)?;
        return udev_escape(serial).map(|s| format!("nvme-{model}_{s}"));
    }
    None
}

/// The `/dev/disk/by-id/...` path of a disk, when one can be derived exactly.
pub fn by_id_path(d: &Disk) -> Option<String> {
    let name = d
        .wwn
        .as_deref()
        .and_then(|w| from_wwn(d, w))
        .or_else(|| d.serial.as_deref().and_then(|s| from_serial(d, s)))?;
    Some(format!("{BY_ID}{name}"))
}

/// The disk the OS goes on, chosen by a stable identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskRef {
    Serial(String),
    Wwn(String),
}

/// The device paths for the Hardware: the install disk first (the Template writes to
/// `.Hardware.Disks 0`), then every other disk with a stable path.
///
/// With `target`, that disk must exist and have a stable path. Without, the first disk
/// in inventory order that has one and is not on USB.
pub fn ordered_paths(disks: &[Disk], target: Option<&DiskRef>) -> Result<Vec<String>, String> {
    let stable: Vec<(&Disk, String)> = disks
        .iter()
        .filter_map(|d| by_id_path(d).map(|p| (d, p)))
        .collect();
    let first = match target {
        Some(t) => {
            let (what, value) = match t {
                DiskRef::Serial(s) => ("serial", s),
                DiskRef::Wwn(w) => ("WWN", w),
            };
            let d = disks
                .iter()
                .find(|d| match t {
                    DiskRef::Serial(s) => d.serial.as_deref() == Some(s.as_str()),
                    DiskRef::Wwn(w) => d.wwn.as_deref() == Some(w.as_str()),
                })
                .ok_or_else(|| {
                    format!("the target disk ({what} {value}) is not in the machine's inventory")
                })?;
            by_id_path(d).ok_or_else(|| {
                format!(
                    "the target disk {} ({what} {value}) has no /dev/disk/by-id name Dragonfly \
                     can derive (that needs a WWN, or a serial on NVMe or virtio): choose a disk \
                     with a WWN",
                    d.name
                )
            })?
        }
        None => stable
            .iter()
            .find(|(d, _)| d.transport != Some(Transport::Usb))
            .map(|(_, p)| p.clone())
            .ok_or_else(|| {
                "no disk with a stable /dev/disk/by-id name (a WWN, or a serial on NVMe or \
                 virtio) to install on: choose a target disk"
                    .to_string()
            })?,
    };
    let mut out = vec![first];
    for (_, p) in stable {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, t: Transport, serial: Option<&str>, wwn: Option<&str>) -> Disk {
        Disk {
            name: name.into(),
            size_bytes: 1 << 30,
            model: Some("QEMU NVMe Ctrl                          ".into()),
            serial: serial.map(Into::into),
            wwn: wwn.map(Into::into),
            transport: Some(t),
            ..Default::default()
        }
    }

    #[test]
    fn wwn_names_follow_udev() {
        let sata = disk("sda", Transport::Sata, None, Some("naa.5000C500A1B2C3D4"));
        assert_eq!(
            by_id_path(&sata).as_deref(),
            Some("/dev/disk/by-id/wwn-0x5000c500a1b2c3d4")
        );
        let nvme = disk(
            "nvme0n1",
            Transport::Nvme,
            Some("NVME-DISK-3"),
            Some("eui.0025388b91c3d1c5"),
        );
        assert_eq!(
            by_id_path(&nvme).as_deref(),
            Some("/dev/disk/by-id/nvme-eui.0025388b91c3d1c5")
        );
        let t10 = disk(
            "sdb",
            Transport::Sata,
            Some("S3Z9NB0K"),
            Some("t10.ATA     QEMU"),
        );
        assert_eq!(by_id_path(&t10), None, "ATA names need inquiry data");
    }

    #[test]
    fn serial_names_for_virtio_and_nvme() {
        let vd = disk("vda", Transport::Virtio, Some("VIRTIO-DISK-1"), None);
        assert_eq!(
            by_id_path(&vd).as_deref(),
            Some("/dev/disk/by-id/virtio-VIRTIO-DISK-1")
        );
        let nvme = disk("nvme0n1", Transport::Nvme, Some("NVME DISK 3  "), None);
        assert_eq!(
            by_id_path(&nvme).as_deref(),
            Some("/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_NVME_DISK_3")
        );
    }

    #[test]
    fn the_target_comes_first_and_must_resolve() {
        let disks = vec![
            disk("vda", Transport::Virtio, Some("A"), None),
            disk("vdb", Transport::Virtio, Some("B"), None),
            disk("sda", Transport::Sata, Some("C"), None),
        ];
        assert_eq!(
            ordered_paths(&disks, Some(&DiskRef::Serial("B".into()))).unwrap(),
            vec!["/dev/disk/by-id/virtio-B", "/dev/disk/by-id/virtio-A"]
        );
        let err = ordered_paths(&disks, Some(&DiskRef::Serial("C".into()))).unwrap_err();
        assert!(err.contains("no /dev/disk/by-id name"), "{err}");
        let err = ordered_paths(&disks, Some(&DiskRef::Wwn("nope".into()))).unwrap_err();
        assert!(err.contains("not in the machine's inventory"), "{err}");
    }

    #[test]
    fn without_target_the_first_stable_non_usb_disk() {
        let disks = vec![
            disk("sda", Transport::Usb, None, Some("naa.5000000000000001")),
            disk("sdb", Transport::Sata, Some("X"), None),
            disk("vda", Transport::Virtio, Some("A"), None),
        ];
        assert_eq!(
            ordered_paths(&disks, None).unwrap(),
            vec![
                "/dev/disk/by-id/virtio-A",
                "/dev/disk/by-id/wwn-0x5000000000000001"
            ]
        );
        let only_usb = vec![disks[0].clone()];
        assert!(ordered_paths(&only_usb, None).is_err());
        assert!(ordered_paths(&[], None).is_err());
    }
}
