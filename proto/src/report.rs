//! The hardware report an agent sends at registration: what the machine really is.
//! Every field that a reader may fail to find is optional; lists default to empty, so an
//! older agent that knows fewer readers still produces a valid report.

use serde::{Deserialize, Serialize};

/// Everything the agent learned about the machine it runs on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HardwareReport {
    /// MAC of the NIC the machine PXE-booted from (any common spelling; the server normalises).
    pub boot_mac: String,
    /// `x86_64`, `aarch64`, ...
    #[serde(default)]
    pub arch: Option<String>,
    /// How the machine booted.
    #[serde(default)]
    pub firmware: Option<Firmware>,
    #[serde(default)]
    pub smbios: Smbios,
    #[serde(default)]
    pub cpu: Option<Cpu>,
    /// Usable memory as the kernel sees it (MemTotal), in bytes.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    #[serde(default)]
    pub nics: Vec<Nic>,
    #[serde(default)]
    pub disks: Vec<Disk>,
    #[serde(default)]
    pub pci: Vec<PciDevice>,
}

/// Firmware interface the machine booted through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Bios,
    Uefi,
}

/// Identity and inventory from the SMBIOS (DMI) tables. Junk strings are already absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Smbios {
    #[serde(default)]
    pub system: SystemInfo,
    #[serde(default)]
    pub baseboard: BoardInfo,
    #[serde(default)]
    pub chassis: ChassisInfo,
    #[serde(default)]
    pub bios: BiosInfo,
    #[serde(default)]
    pub memory: Vec<MemoryDevice>,
    #[serde(default)]
    pub processors: Vec<ProcessorSocket>,
}

/// SMBIOS type 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SystemInfo {
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub version: Option<String>,
    pub serial: Option<String>,
    pub uuid: Option<String>,
    pub sku: Option<String>,
    pub family: Option<String>,
}

/// SMBIOS type 2.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BoardInfo {
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub version: Option<String>,
    pub serial: Option<String>,
    pub asset_tag: Option<String>,
}

/// SMBIOS type 3.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChassisInfo {
    pub vendor: Option<String>,
    /// Chassis type as SMBIOS names it ("Rack Mount Chassis", "Desktop", ...).
    pub kind: Option<String>,
    pub serial: Option<String>,
    pub asset_tag: Option<String>,
}

/// SMBIOS type 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BiosInfo {
    pub vendor: Option<String>,
    pub version: Option<String>,
    pub date: Option<String>,
}

/// SMBIOS type 17, one per populated slot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemoryDevice {
    pub locator: Option<String>,
    pub size_bytes: Option<u64>,
    /// Configured (else maximum) speed in MT/s.
    pub speed_mts: Option<u32>,
    /// "DDR4", "DDR5", "RAM", ...
    pub kind: Option<String>,
    pub manufacturer: Option<String>,
    pub serial: Option<String>,
    pub part_number: Option<String>,
}

/// SMBIOS type 4, one per populated socket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessorSocket {
    pub socket: Option<String>,
    pub manufacturer: Option<String>,
    pub version: Option<String>,
    pub cores: Option<u32>,
    pub threads: Option<u32>,
    pub max_speed_mhz: Option<u32>,
}

/// CPU as the kernel sees it (/proc/cpuinfo).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cpu {
    pub model: Option<String>,
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
    /// Hardware virtualisation support: "vmx" (Intel VT-x), "svm" (AMD-V), absent when none.
    pub virtualization: Option<String>,
}

/// A network interface from /sys/class/net.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Nic {
    pub name: String,
    pub mac: String,
    pub driver: Option<String>,
    pub pci_address: Option<String>,
    pub link_up: Option<bool>,
    pub speed_mbps: Option<u32>,
    pub mtu: Option<u32>,
    /// Addresses in CIDR form.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// True for the NIC the machine booted from.
    #[serde(default)]
    pub boot: bool,
}

/// How a disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Nvme,
    Sata,
    Sas,
    Scsi,
    Virtio,
    Usb,
    Mmc,
    Other,
}

/// A block device from /sys/block (loop and ram devices are not reported).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Disk {
    /// Kernel name (`sda`, `nvme0n1`): informative only, it can change between boots.
    pub name: String,
    pub size_bytes: u64,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub rotational: Option<bool>,
    pub transport: Option<Transport>,
}

/// A PCI function from /sys/bus/pci/devices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PciDevice {
    /// `0000:00:1f.2`
    pub address: String,
    /// `0x8086`
    pub vendor_id: String,
    pub device_id: String,
    /// Class code, `0x020000` for an Ethernet controller.
    pub class: String,
    pub driver: Option<String>,
}
