//! Network interfaces from `root/sys/class/net/*`, and which one the machine booted from.
//! Only interfaces backed by a device are reported: `lo`, bridges, bonds, VLANs and tunnels
//! have no `device` link.

use std::path::Path;

use dragonfly_proto::Nic;

use super::InventoryError;
use super::addrs::NetState;
use super::clean::mac;
use super::sysfs::{is_pci_address, link_name, list_dir, read_opt, resolve};
use crate::cmdline::KernelCmdline;

/// Physical NICs sorted by name, and the boot MAC (empty when no NIC was found).
pub fn read(
    root: &Path,
    cmdline: &KernelCmdline,
    net: &NetState,
) -> Result<(Vec<Nic>, String), InventoryError> {
    let mut nics = Vec::new();
    for (name, path) in list_dir(&root.join("sys/class/net"))? {
        if name == "lo" || std::fs::symlink_metadata(path.join("device")).is_err() {
            continue;
        }
        let Some(address) = read_opt(&path.join("address"))? else {
            continue;
        };
        let carrier = read_opt(&path.join("carrier"))?;
        let operstate = read_opt(&path.join("operstate"))?;
        let link_up = match (carrier.as_deref(), operstate.as_deref()) {
            (Some("1"), _) => Some(true),
            (Some("0"), _) => Some(false),
            (_, Some("up")) => Some(true),
            (_, Some("down" | "lowerlayerdown" | "dormant" | "notpresent")) => Some(false),
            _ => None,
        };
        nics.push(Nic {
            mac: mac(&address).unwrap_or_else(|| address.to_ascii_lowercase()),
            driver: link_name(&path.join("device/driver"))?,
            pci_address: pci_address(root, &path.join("device")),
            link_up,
            speed_mbps: read_opt(&path.join("speed"))?
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| *s > 0)
                .and_then(|s| u32::try_from(s).ok()),
            mtu: read_opt(&path.join("mtu"))?.and_then(|s| s.parse().ok()),
            addresses: net.addresses.get(&name).cloned().unwrap_or_default(),
            boot: false,
            name,
        });
    }
    let boot_mac = mark_boot(&mut nics, cmdline, net);
    Ok((nics, boot_mac))
}

/// The PCI function behind a NIC's `device` link: the link's own target for most drivers,
/// its parent for virtio (`…/0000:00:03.0/virtio2`).
fn pci_address(root: &Path, device: &Path) -> Option<String> {
    let real = resolve(root, device)?;
    let mut parts = real.rsplit('/');
    let last = parts.next()?;
    if is_pci_address(last) {
        return Some(last.to_string());
    }
    let parent = parts.next()?;
    (last.starts_with("virtio") && is_pci_address(parent)).then(|| parent.to_string())
}

/// Marks the boot NIC and returns the boot MAC. In order: `BOOTIF=` (iPXE's word for it,
/// taken even when no visible NIC matches: the firmware booted from that MAC), the `ip=`
/// device, the interface holding the default route (the DHCP lease), the first NIC with a
/// link, the first NIC — skipping NICs without a usable MAC.
pub fn mark_boot(nics: &mut [Nic], cmdline: &KernelCmdline, net: &NetState) -> String {
    let by_mac = cmdline.bootif_mac();
    // A NIC without a usable MAC (all zeros, say) cannot be the one that PXE-booted.
    let usable = |n: &Nic| mac(&n.mac).is_some();
    let chosen = match &by_mac {
        Some(m) => nics.iter().position(|n| &n.mac == m),
        None => cmdline
            .ip_device()
            .and_then(|d| nics.iter().position(|n| n.name == d && usable(n)))
            .or_else(|| {
                net.default_route
                    .iter()
                    .find_map(|d| nics.iter().position(|n| &n.name == d && usable(n)))
            })
            .or_else(|| {
                nics.iter()
                    .position(|n| n.link_up == Some(true) && usable(n))
            })
            .or_else(|| nics.iter().position(usable)),
    };
    if let Some(i) = chosen {
        nics[i].boot = true;
    }
    by_mac
        .or_else(|| chosen.map(|i| nics[i].mac.clone()))
        .unwrap_or_default()
}
