//! Builders: a machine's facts in, the Hardware, Template and Workflow Dragonfly applies out.
//! Pure functions, so `dragonfly tinkerbell render` and the tests see exactly what a
//! cluster would get.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use dragonfly_proto::{Disk as ReportDisk, Nic, normalize_mac};

use super::disks::{DiskRef, ordered_paths};
use super::resources::{
    Dhcp, Disk, Hardware, HardwareMetadata, HardwareSpec, Instance, Interface, Ip, Netboot,
    OperatingSystem, Template, TemplateSpec, Workflow, WorkflowSpec,
};
use super::templates::{OsFacts, TemplateSettings, tink_template};
use super::{Error, MACHINE_ID_LABEL, MANAGED_BY, OS_ANNOTATION, Result};

/// What Dragonfly knows about a machine, as plain values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineFacts {
    /// Dragonfly's machine id.
    pub id: String,
    /// Boot NIC MAC, any common spelling.
    pub mac: String,
    pub hostname: Option<String>,
    /// `x86_64`, `aarch64`, ...
    pub arch: Option<String>,
    pub uefi: bool,
    pub nics: Vec<Nic>,
    pub disks: Vec<ReportDisk>,
    /// The disk chosen at assignment, if any.
    pub target: Option<DiskRef>,
}

/// `dragonfly-52-54-00-12-34-56`: the Hardware and the Workflow of a machine share it.
pub fn machine_object_name(mac: &str) -> String {
    format!("dragonfly-{}", mac.replace(':', "-"))
}

/// `dragonfly-ubuntu-24.04`: a valid object name from a catalogue slug.
pub fn template_name(slug: &str) -> String {
    let mut s: String = slug
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.ends_with(['-', '.']) {
        s.pop();
    }
    format!("dragonfly-{s}")
}

fn labels(machine_id: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())]);
    if let Some(id) = machine_id {
        l.insert(MACHINE_ID_LABEL.into(), id.into());
    }
    l
}

/// The label selector of everything Dragonfly wrote for one machine.
pub fn machine_selector(machine_id: &str) -> String {
    format!(
        "{}={},{MACHINE_ID_LABEL}={machine_id}",
        MANAGED_BY.0, MANAGED_BY.1
    )
}

/// The label selector of everything Dragonfly wrote.
pub fn managed_selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

fn mac_of(f: &MachineFacts) -> Result<String> {
    normalize_mac(&f.mac).map_err(|e| Error::Invalid(format!("boot MAC {:?}: {e}", f.mac)))
}

/// The first IPv4 address (not link-local) of the boot NIC, with its netmask.
fn boot_ipv4(f: &MachineFacts, mac: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let nic = f
        .nics
        .iter()
        .find(|n| normalize_mac(&n.mac).is_ok_and(|m| m == mac))
        .or_else(|| f.nics.iter().find(|n| n.boot))?;
    nic.addresses.iter().find_map(|cidr| {
        let (addr, prefix) = cidr.split_once('/')?;
        let ip: Ipv4Addr = addr.parse().ok()?;
        let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
        if ip.is_link_local() || ip.is_loopback() || ip.is_unspecified() {
            return None;
        }
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        Some((ip, Ipv4Addr::from(mask)))
    })
}

/// The Hardware of a machine. With `install`, the install disk must resolve to a stable
/// path (it becomes `.Hardware.Disks 0`) and the OS is recorded in the metadata; without,
/// the disks with stable paths are listed as far as they are known.
pub fn hardware(f: &MachineFacts, install: Option<&OsFacts>, namespace: &str) -> Result<Hardware> {
    let mac = mac_of(f)?;
    let disks = match (ordered_paths(&f.disks, f.target.as_ref()), install) {
        (Ok(paths), _) => paths,
        (Err(e), Some(_)) => return Err(Error::Invalid(e)),
        (Err(_), None) => f
            .disks
            .iter()
            .filter_map(super::disks::by_id_path)
            .collect(),
    };
    let ip = boot_ipv4(f, &mac).map(|(address, netmask)| Ip {
        address: Some(address.to_string()),
        netmask: Some(netmask.to_string()),
        ..Default::default()
    });
    let spec = HardwareSpec {
        disks: disks
            .into_iter()
            .map(|d| Disk { device: Some(d) })
            .collect(),
        interfaces: vec![Interface {
            dhcp: Some(Dhcp {
                arch: f.arch.clone(),
                hostname: f.hostname.clone(),
                ip,
                mac: Some(mac.clone()),
                uefi: Some(f.uefi),
                ..Default::default()
            }),
            netboot: Some(Netboot {
                allow_pxe: Some(true),
                allow_workflow: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }],
        metadata: Some(HardwareMetadata {
            instance: Some(Instance {
                id: Some(f.id.clone()),
                hostname: f.hostname.clone(),
                operating_system: install.map(|os| OperatingSystem {
                    distro: Some(os.family.clone()),
                    os_slug: Some(os.slug.clone()),
                    version: Some(os.version.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut hw = Hardware::new(&machine_object_name(&mac), spec);
    hw.metadata.namespace = Some(namespace.into());
    hw.metadata.labels = Some(labels(Some(&f.id)));
    Ok(hw)
}

/// The Template for an OS.
pub fn template(os: &OsFacts, settings: &TemplateSettings, namespace: &str) -> Result<Template> {
    let name = template_name(&os.slug);
    let data = serde_yaml::to_string(&tink_template(&name, os, settings))
        .map_err(|e| Error::Invalid(format!("cannot write the template YAML: {e}")))?;
    let mut t = Template::new(&name, TemplateSpec { data: Some(data) });
    t.metadata.namespace = Some(namespace.into());
    t.metadata.labels = Some(labels(None));
    t.metadata.annotations = Some(BTreeMap::from([(OS_ANNOTATION.into(), os.slug.clone())]));
    Ok(t)
}

/// The Workflow that installs `os` on the machine.
pub fn workflow(f: &MachineFacts, os: &OsFacts, namespace: &str) -> Result<Workflow> {
    let mac = mac_of(f)?;
    let name = machine_object_name(&mac);
    let spec = WorkflowSpec {
        hardware_map: BTreeMap::from([("device_1".to_string(), mac)]),
        hardware_ref: Some(name.clone()),
        template_ref: Some(template_name(&os.slug)),
        ..Default::default()
    };
    let mut wf = Workflow::new(&name, spec);
    wf.metadata.namespace = Some(namespace.into());
    wf.metadata.labels = Some(labels(Some(&f.id)));
    wf.metadata.annotations = Some(BTreeMap::from([(OS_ANNOTATION.into(), os.slug.clone())]));
    Ok(wf)
}

/// The three objects of an install, as the YAML documents `kubectl apply -f` takes.
pub fn render_yaml(hw: &Hardware, t: &Template, wf: &Workflow) -> Result<String> {
    let mut out = String::new();
    for doc in [
        serde_yaml::to_string(hw),
        serde_yaml::to_string(t),
        serde_yaml::to_string(wf),
    ] {
        out.push_str("---\n");
        out.push_str(&doc.map_err(|e| Error::Invalid(format!("cannot write YAML: {e}")))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dragonfly_proto::Transport;

    pub(crate) fn facts() -> MachineFacts {
        MachineFacts {
            id: "6f1c1a52-0000-4000-8000-000000000001".into(),
            mac: "52:54:00:AB:CD:EF".into(),
            hostname: Some("node-1".into()),
            arch: Some("x86_64".into()),
            uefi: true,
            nics: vec![Nic {
                name: "eth0".into(),
                mac: "52:54:00:ab:cd:ef".into(),
                addresses: vec!["fe80::1/64".into(), "10.0.2.15/24".into()],
                boot: true,
                ..Default::default()
            }],
            disks: vec![
                ReportDisk {
                    name: "vda".into(),
                    serial: Some("DISK-A".into()),
                    transport: Some(Transport::Virtio),
                    ..Default::default()
                },
                ReportDisk {
                    name: "sda".into(),
                    wwn: Some("naa.5000c500a1b2c3d4".into()),
                    transport: Some(Transport::Sata),
                    ..Default::default()
                },
            ],
            target: None,
        }
    }

    #[test]
    fn hardware_carries_the_boot_nic_disks_and_labels() {
        let hw = hardware(&facts(), None, "tink-system").unwrap();
        assert_eq!(hw.name(), "dragonfly-52-54-00-ab-cd-ef");
        assert_eq!(hw.label(MANAGED_BY.0), Some("dragonfly"));
        let dhcp = hw.spec.interfaces[0].dhcp.as_ref().unwrap();
        assert_eq!(dhcp.mac.as_deref(), Some("52:54:00:ab:cd:ef"));
        let ip = dhcp.ip.as_ref().unwrap();
        assert_eq!(ip.address.as_deref(), Some("10.0.2.15"));
        assert_eq!(ip.netmask.as_deref(), Some("255.255.255.0"));
        assert_eq!(dhcp.uefi, Some(true));
        let devices: Vec<_> = hw
            .spec
            .disks
            .iter()
            .map(|d| d.device.clone().unwrap())
            .collect();
        assert_eq!(
            devices,
            [
                "/dev/disk/by-id/virtio-DISK-A",
                "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"
            ]
        );
    }

    #[test]
    fn an_install_puts_the_target_disk_first_or_fails_clearly() {
        let mut f = facts();
        f.target = Some(DiskRef::Wwn("naa.5000c500a1b2c3d4".into()));
        let os = OsFacts {
            slug: "debian-12".into(),
            name: "Debian 12".into(),
            family: "debian".into(),
            version: "12".into(),
            arch: "x86_64".into(),
            image_url: "http://m/d.raw".into(),
        };
        let hw = hardware(&f, Some(&os), "ns").unwrap();
        assert_eq!(
            hw.spec.disks[0].device.as_deref(),
            Some("/dev/disk/by-id/wwn-0x5000c500a1b2c3d4")
        );
        f.disks.clear();
        f.target = None;
        assert!(matches!(
            hardware(&f, Some(&os), "ns"),
            Err(Error::Invalid(_))
        ));
        // Registration still works without a usable disk.
        assert!(hardware(&f, None, "ns").unwrap().spec.disks.is_empty());
    }

    #[test]
    fn template_names_are_valid_object_names() {
        assert_eq!(template_name("ubuntu-24.04"), "dragonfly-ubuntu-24.04");
        assert_eq!(template_name("Weird_OS."), "dragonfly-weird-os");
    }
}
