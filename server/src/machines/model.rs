//! The domain's views of machines, events and OS images, as the API and UI show them.

use dragonfly_proto::{Firmware, HardwareReport, Phase, Transport};
use dragonfly_proto::{ImageFormat, WriteProgress};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::store::events::EventRow;
use crate::store::machines::{DiskRow, MachineRow, NicRow};
use crate::store::os::OsRow;
use crate::vocab::{Actor, MachineEvent, State, TargetDisk};

/// A machine as listed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Machine {
    pub id: String,
    /// MAC of the NIC it PXE-boots from, lower-case.
    pub boot_mac: String,
    pub hostname: Option<String>,
    pub state: State,
    /// Derived: no heartbeat or registration for longer than the offline threshold.
    pub offline: bool,
    pub serial: Option<String>,
    pub smbios_uuid: Option<String>,
    pub vendor: Option<String>,
    pub product: Option<String>,
    /// Slug of the assigned OS.
    pub os: Option<String>,
    pub target_disk: Option<TargetDisk>,
    /// Last phase the agent or installer reported.
    pub phase: Option<Phase>,
    /// Install progress, 0–100.
    pub progress: Option<u8>,
    pub status_message: Option<String>,
    pub tags: Vec<String>,
    pub notes: String,
    pub arch: Option<String>,
    pub firmware: Option<Firmware>,
    pub cpu_model: Option<String>,
    pub cpu_threads: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
    pub agent_version: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_seen_at: Option<String>,
    /// When a native install wrote its image; the machine then boots the installed system
    /// and waits for its report.
    pub written_at: Option<String>,
    /// The image write of a native install: bytes written, total, rate.
    pub write_progress: Option<WriteProgress>,
}

impl Machine {
    /// `offline_before`: machines last seen before this time (ms) are offline.
    pub fn from_row(r: MachineRow, offline_before: i64) -> Machine {
        Machine {
            offline: r.last_seen_at.is_none_or(|t| t < offline_before),
            state: r.state,
            target_disk: r.target_disk,
            id: r.id,
            boot_mac: r.boot_mac,
            hostname: r.hostname,
            serial: r.serial,
            smbios_uuid: r.smbios_uuid,
            vendor: r.vendor,
            product: r.product,
            os: r.os_slug,
            phase: r.phase,
            progress: r.progress,
            status_message: r.status_message,
            tags: r.tags,
            notes: r.notes,
            arch: r.arch,
            firmware: r.firmware,
            cpu_model: r.cpu_model,
            cpu_threads: r.cpu_threads,
            memory_bytes: r.memory_bytes,
            disk_bytes: r.disk_bytes,
            agent_version: r.agent_version,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            last_seen_at: r.last_seen_at.map(rfc3339),
            written_at: r.written_at.map(rfc3339),
            write_progress: r.write_progress,
        }
    }
}

/// A NIC of a machine.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NicView {
    pub mac: String,
    pub name: String,
    pub driver: Option<String>,
    pub pci_address: Option<String>,
    pub link_up: Option<bool>,
    pub speed_mbps: Option<u32>,
    pub mtu: Option<u32>,
    pub addresses: Vec<String>,
    pub boot: bool,
}

impl From<NicRow> for NicView {
    fn from(n: NicRow) -> NicView {
        NicView {
            mac: n.mac,
            name: n.name,
            driver: n.driver,
            pci_address: n.pci_address,
            link_up: n.link_up,
            speed_mbps: n.speed_mbps,
            mtu: n.mtu,
            addresses: n.addresses,
            boot: n.is_boot,
        }
    }
}

/// A disk of a machine.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DiskView {
    pub name: String,
    pub size_bytes: u64,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub rotational: Option<bool>,
    pub transport: Option<Transport>,
}

impl From<DiskRow> for DiskView {
    fn from(d: DiskRow) -> DiskView {
        DiskView {
            name: d.name,
            size_bytes: d.size_bytes,
            model: d.model,
            serial: d.serial,
            wwn: d.wwn,
            rotational: d.rotational,
            transport: d.transport,
        }
    }
}

/// One machine with its hardware and recent history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MachineDetail {
    #[serde(flatten)]
    pub machine: Machine,
    pub nics: Vec<NicView>,
    pub disks: Vec<DiskView>,
    /// The latest hardware report, as received and normalised.
    pub hardware: Option<HardwareReport>,
    /// The most recent events, newest first.
    pub events: Vec<EventView>,
}

/// An entry of the append-only event log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    pub id: i64,
    pub at: String,
    pub machine_id: Option<String>,
    pub kind: MachineEvent,
    pub actor: Actor,
    pub from_state: Option<State>,
    pub to_state: Option<State>,
    pub message: String,
}

impl From<EventRow> for EventView {
    fn from(e: EventRow) -> EventView {
        EventView {
            id: e.id,
            at: rfc3339(e.at),
            machine_id: e.machine_id,
            kind: e.kind,
            actor: e.actor,
            from_state: e.from_state,
            to_state: e.to_state,
            message: e.message,
        }
    }
}

/// An OS the catalogue offers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OsImage {
    /// Identifier used in assignments, e.g. `ubuntu-24.04`.
    pub slug: String,
    pub name: String,
    pub family: String,
    pub version: String,
    pub arch: String,
    /// Disk image the installer writes.
    pub image_url: String,
    /// How the file is encoded: raw, raw.gz, raw.xz, raw.zst or qcow2.
    #[schema(value_type = String, pattern = "^(raw|raw\\.gz|raw\\.xz|raw\\.zst|qcow2)$")]
    pub format: ImageFormat,
    /// Lower-case hex SHA-256 of the published file (a native install needs this or
    /// `sha512`).
    pub sha256: Option<String>,
    /// Lower-case hex SHA-512 of the published file.
    pub sha512: Option<String>,
    /// The published checksum list the checksum is refreshed from.
    pub checksum_url: Option<String>,
    /// When the checksum was last read from `checksum_url` (RFC 3339).
    pub checksum_checked_at: Option<String>,
    /// Bytes the image takes once written.
    pub size_bytes: Option<u64>,
    /// A `#cloud-config` document added to every install of this OS.
    pub user_data: Option<String>,
    /// Built-in entries can be edited but not deleted.
    pub builtin: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<OsRow> for OsImage {
    fn from(o: OsRow) -> OsImage {
        OsImage {
            slug: o.slug,
            name: o.name,
            family: o.family,
            version: o.version,
            arch: o.arch,
            image_url: o.image_url,
            format: o.format,
            sha256: o.sha256,
            sha512: o.sha512,
            checksum_url: o.checksum_url,
            checksum_checked_at: o.checked_at.map(rfc3339),
            size_bytes: o.size_bytes,
            user_data: o.user_data,
            builtin: o.builtin,
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
        }
    }
}

/// One page of a machine list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MachinePage {
    pub items: Vec<Machine>,
    /// Machines matching the filter, over all pages.
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
}
