//! Block devices from `root/sys/block/*`. Virtual devices (loop, ram, zram, device-mapper,
//! md, nbd), optical drives, hidden NVMe multipath paths and empty media slots are not
//! reported: they are not disks an OS can be installed on.

use std::path::Path;

use dragonfly_proto::{Disk, Transport};

use super::InventoryError;
use super::clean::text;
use super::sysfs::{link_name, list_dir, read_bytes_opt, read_opt, resolve};

const SKIPPED_PREFIXES: &[&str] = &["loop", "ram", "zram", "dm-", "md", "nbd", "sr", "fd"];

pub fn read(root: &Path) -> Result<Vec<Disk>, InventoryError> {
    let mut disks = Vec::new();
    for (name, path) in list_dir(&root.join("sys/block"))? {
        if SKIPPED_PREFIXES.iter().any(|p| name.starts_with(p))
            || std::fs::symlink_metadata(path.join("device")).is_err()
            || read_opt(&path.join("hidden"))?.as_deref() == Some("1")
        {
            continue;
        }
        let sectors: u64 = read_opt(&path.join("size"))?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if sectors == 0 {
            continue;
        }
        let serial = match read_opt(&path.join("device/serial"))? {
            Some(s) => text(&s),
            None => match read_opt(&path.join("serial"))? {
                Some(s) => text(&s),
                None => read_bytes_opt(&path.join("device/vpd_pg80"))?
                    .and_then(|b| unit_serial(&b))
                    .and_then(|s| text(&s)),
            },
        };
        let wwn = match read_opt(&path.join("wwid"))? {
            Some(w) => text(&w),
            None => read_opt(&path.join("device/wwid"))?.and_then(|w| text(&w)),
        };
        let driver = link_name(&path.join("device/driver"))?;
        let real = resolve(root, &path).unwrap_or_default();
        disks.push(Disk {
            // The kernel counts `size` in 512-byte sectors whatever the logical block size.
            size_bytes: sectors.saturating_mul(512),
            model: read_opt(&path.join("device/model"))?.and_then(|m| text(&m)),
            serial,
            wwn,
            rotational: match read_opt(&path.join("queue/rotational"))?.as_deref() {
                Some("1") => Some(true),
                Some("0") => Some(false),
                _ => None,
            },
            transport: Some(transport(&name, &real, driver.as_deref())),
            name,
        });
    }
    Ok(disks)
}

/// The unit serial number from SCSI VPD page 0x80 (`device/vpd_pg80`): a 4-byte header whose
/// last two bytes are the length, then the ASCII serial (space padded).
pub fn unit_serial(page: &[u8]) -> Option<String> {
    if page.len() < 4 || page[1] != 0x80 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([page[2], page[3]]));
    let body = page.get(4..4 + len).unwrap_or(&page[4..]);
    let s = String::from_utf8_lossy(body);
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!s.is_empty()).then(|| s.to_string())
}

/// How the disk is attached, from its kernel name, the sysfs path of its device (relative
/// to the root) and its driver.
pub fn transport(name: &str, real_path: &str, driver: Option<&str>) -> Transport {
    let p = real_path;
    if name.starts_with("nvme") || p.contains("/nvme") {
        Transport::Nvme
    } else if p.contains("/usb") {
        Transport::Usb
    } else if p.contains("/virtio") || driver.is_some_and(|d| d.starts_with("virtio")) {
        Transport::Virtio
    } else if name.starts_with("mmcblk") || p.contains("/mmc") {
        Transport::Mmc
    } else if p.contains("/ata") {
        Transport::Sata
    } else if p.contains("/end_device-") || p.contains("/sas_") || p.contains("/port-") {
        Transport::Sas
    } else if p.contains("/host") && p.contains("/target") {
        Transport::Scsi
    } else {
        Transport::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_follow_the_device_path() {
        let t = |name, p| transport(name, p, None);
        assert_eq!(
            t(
                "nvme0n1",
                "/sys/devices/pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1"
            ),
            Transport::Nvme
        );
        assert_eq!(
            t(
                "sda",
                "/sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda"
            ),
            Transport::Sata
        );
        assert_eq!(
            t(
                "sdb",
                "/sys/devices/pci0000:00/0000:3b:00.0/host0/port-0:0/end_device-0:0/target0:0:0/0:0:0:0/block/sdb"
            ),
            Transport::Sas
        );
        assert_eq!(
            t(
                "sdc",
                "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdc"
            ),
            Transport::Usb
        );
        assert_eq!(
            t(
                "vda",
                "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda"
            ),
            Transport::Virtio
        );
        assert_eq!(
            t(
                "sdd",
                "/sys/devices/pci0000:00/0000:18:00.0/host3/target3:2:0/3:2:0:0/block/sdd"
            ),
            Transport::Scsi
        );
        assert_eq!(
            t(
                "mmcblk0",
                "/sys/devices/platform/soc/mmc_host/mmc0/mmc0:0001/block/mmcblk0"
            ),
            Transport::Mmc
        );
        assert_eq!(transport("xvda", "", Some("virtio_blk")), Transport::Virtio);
        assert_eq!(transport("xvda", "", None), Transport::Other);
    }

    #[test]
    fn vpd_page_80_yields_the_unit_serial() {
        let mut page = vec![0x00, 0x80, 0x00, 0x0c];
        page.extend_from_slice(b"  S3Z9NB0K  ");
        assert_eq!(unit_serial(&page).as_deref(), Some("S3Z9NB0K"));
        assert_eq!(unit_serial(&[0, 0x83, 0, 0]), None);
        assert_eq!(unit_serial(&[0, 0x80, 0, 0]), None);
    }
}
