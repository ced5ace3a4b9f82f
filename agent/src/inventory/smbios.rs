//! SMBIOS (DMI) identity and inventory from `root/sys/firmware/dmi/tables/{smbios_entry_point,
//! DMI}`, parsed with smbios-lib. Machines without SMBIOS (some micro-VMs) have no tables:
//! the section is then empty, not an error. Junk strings are dropped by [`super::clean`].

use std::path::Path;

use dragonfly_proto::{
    BiosInfo, BoardInfo, ChassisInfo, MemoryDevice, ProcessorSocket, Smbios, SystemInfo,
};
use smbioslib::{
    CoreCount, CoreCount2, MemorySize, MemorySizeExtended, MemorySpeed, MemorySpeedExtended,
    ProcessorSpeed, SMBiosBaseboardInformation, SMBiosData, SMBiosEntryPoint32, SMBiosEntryPoint64,
    SMBiosInformation, SMBiosMemoryDevice, SMBiosProcessorInformation, SMBiosString,
    SMBiosSystemChassisInformation, SMBiosSystemInformation, SMBiosVersion, ThreadCount,
    ThreadCount2,
};

use super::InventoryError;
use super::clean::{text, uuid};
use super::sysfs::read_bytes_opt;

const ENTRY_POINT: &str = "sys/firmware/dmi/tables/smbios_entry_point";
const TABLE: &str = "sys/firmware/dmi/tables/DMI";

pub fn read(root: &Path) -> Result<Smbios, InventoryError> {
    let Some(table) = read_bytes_opt(&root.join(TABLE))? else {
        return Ok(Smbios::default());
    };
    let version = read_bytes_opt(&root.join(ENTRY_POINT))?.and_then(version_of);
    Ok(from_data(&SMBiosData::from_vec_and_version(table, version)))
}

/// The SMBIOS version from the entry point (64-bit `_SM3_` or 32-bit `_SM_`); `None` when it
/// is neither. The table parses without it.
fn version_of(entry: Vec<u8>) -> Option<SMBiosVersion> {
    if entry.starts_with(b"_SM3_") {
        let ep = SMBiosEntryPoint64::try_from(entry).ok()?;
        return Some(SMBiosVersion::new(
            ep.major_version(),
            ep.minor_version(),
            ep.docrev(),
        ));
    }
    if entry.starts_with(b"_SM_") && entry.len() >= SMBiosEntryPoint32::MINIMUM_SIZE {
        // smbios-lib expects exactly the 0x1F bytes of the structure; a longer file (some
        // firmware pads it) would trip an assertion inside the library.
        let mut entry = entry;
        entry.truncate(SMBiosEntryPoint32::MINIMUM_SIZE);
        let ep = SMBiosEntryPoint32::try_from(entry).ok()?;
        return Some(SMBiosVersion::new(
            ep.major_version(),
            ep.minor_version(),
            0,
        ));
    }
    None
}

fn s(v: SMBiosString) -> Option<String> {
    v.to_utf8_lossy().and_then(|v| text(&v))
}

/// Maps parsed tables to the report.
pub fn from_data(data: &SMBiosData) -> Smbios {
    let system = data
        .first::<SMBiosSystemInformation>()
        .map(|t| SystemInfo {
            vendor: s(t.manufacturer()),
            product: s(t.product_name()),
            version: s(t.version()),
            serial: s(t.serial_number()),
            uuid: t.uuid().and_then(|u| uuid(&u.to_string())),
            sku: s(t.sku_number()),
            family: s(t.family()),
        })
        .unwrap_or_default();
    let baseboard = data
        .first::<SMBiosBaseboardInformation>()
        .map(|t| BoardInfo {
            vendor: s(t.manufacturer()),
            product: s(t.product()),
            version: s(t.version()),
            serial: s(t.serial_number()),
            asset_tag: s(t.asset_tag()),
        })
        .unwrap_or_default();
    let chassis = data
        .first::<SMBiosSystemChassisInformation>()
        .map(|t| ChassisInfo {
            vendor: s(t.manufacturer()),
            kind: t
                .chassis_type()
                .and_then(|k| chassis_kind(k.raw))
                .and_then(text),
            serial: s(t.serial_number()),
            asset_tag: s(t.asset_tag_number()),
        })
        .unwrap_or_default();
    let bios = data
        .first::<SMBiosInformation>()
        .map(|t| BiosInfo {
            vendor: s(t.vendor()),
            version: s(t.version()),
            date: s(t.release_date()),
        })
        .unwrap_or_default();
    let memory = data
        .collect::<SMBiosMemoryDevice>()
        .iter()
        .filter_map(memory_device)
        .collect();
    let processors = data
        .collect::<SMBiosProcessorInformation>()
        .iter()
        .filter_map(processor)
        .collect();
    Smbios {
        system,
        baseboard,
        chassis,
        bios,
        memory,
        processors,
    }
}

/// A populated memory slot; empty slots (size 0) are not reported.
fn memory_device(t: &SMBiosMemoryDevice) -> Option<MemoryDevice> {
    const MIB: u64 = 1024 * 1024;
    let size_bytes = match t.size()? {
        MemorySize::NotInstalled => return None,
        MemorySize::Unknown => None,
        MemorySize::Kilobytes(k) => Some(u64::from(k) * 1024),
        MemorySize::Megabytes(m) => Some(u64::from(m) * MIB),
        MemorySize::SeeExtendedSize => match t.extended_size() {
            Some(MemorySizeExtended::Megabytes(m)) => Some(u64::from(m) * MIB),
            _ => None,
        },
    };
    let speed = |basic: Option<MemorySpeed>, extended: Option<MemorySpeedExtended>| match basic {
        Some(MemorySpeed::MTs(v)) => Some(u32::from(v)),
        Some(MemorySpeed::SeeExtendedSpeed) => match extended {
            Some(MemorySpeedExtended::MTs(v)) => Some(v),
            _ => None,
        },
        _ => None,
    };
    let speed_mts = speed(
        t.configured_memory_speed(),
        t.extended_configured_memory_speed(),
    )
    .or_else(|| speed(t.speed(), t.extended_speed()));
    Some(MemoryDevice {
        locator: s(t.device_locator()),
        size_bytes,
        speed_mts,
        kind: t
            .memory_type()
            .and_then(|k| memory_kind(k.raw))
            .and_then(text),
        manufacturer: s(t.manufacturer()),
        serial: s(t.serial_number()),
        part_number: s(t.part_number()),
    })
}

/// A populated processor socket.
fn processor(t: &SMBiosProcessorInformation) -> Option<ProcessorSocket> {
    if let Some(status) = t.status() {
        if !status.socket_populated() {
            return None;
        }
    }
    let cores = match t.core_count() {
        Some(CoreCount::Count(n)) => Some(u32::from(n)),
        Some(CoreCount::SeeCoreCount2) => match t.core_count_2() {
            Some(CoreCount2::Count(n)) => Some(u32::from(n)),
            _ => None,
        },
        _ => None,
    };
    let threads = match t.thread_count() {
        Some(ThreadCount::Count(n)) => Some(u32::from(n)),
        Some(ThreadCount::SeeThreadCount2) => match t.thread_count_2() {
            Some(ThreadCount2::Count(n)) => Some(u32::from(n)),
            _ => None,
        },
        _ => None,
    };
    Some(ProcessorSocket {
        socket: s(t.socket_designation()),
        manufacturer: s(t.processor_manufacturer()),
        version: s(t.processor_version()),
        cores,
        threads,
        max_speed_mhz: match t.max_speed() {
            Some(ProcessorSpeed::MHz(m)) => Some(u32::from(m)),
            _ => None,
        },
    })
}

/// Memory type names as the SMBIOS specification (7.18.2) spells them.
fn memory_kind(raw: u8) -> Option<&'static str> {
    Some(match raw {
        0x01 => "Other",
        0x02 => "Unknown",
        0x03 => "DRAM",
        0x04 => "EDRAM",
        0x05 => "VRAM",
        0x06 => "SRAM",
        0x07 => "RAM",
        0x08 => "ROM",
        0x09 => "FLASH",
        0x0A => "EEPROM",
        0x0B => "FEPROM",
        0x0C => "EPROM",
        0x0D => "CDRAM",
        0x0E => "3DRAM",
        0x0F => "SDRAM",
        0x10 => "SGRAM",
        0x11 => "RDRAM",
        0x12 => "DDR",
        0x13 => "DDR2",
        0x14 => "DDR2 FB-DIMM",
        0x18 => "DDR3",
        0x19 => "FBD2",
        0x1A => "DDR4",
        0x1B => "LPDDR",
        0x1C => "LPDDR2",
        0x1D => "LPDDR3",
        0x1E => "LPDDR4",
        0x1F => "Logical non-volatile device",
        0x20 => "HBM",
        0x21 => "HBM2",
        0x22 => "DDR5",
        0x23 => "LPDDR5",
        0x24 => "HBM3",
        _ => return None,
    })
}

/// Chassis type names as the SMBIOS specification (7.4.1) spells them; bit 7 is the lock.
fn chassis_kind(raw: u8) -> Option<&'static str> {
    Some(match raw & 0x7F {
        0x01 => "Other",
        0x02 => "Unknown",
        0x03 => "Desktop",
        0x04 => "Low Profile Desktop",
        0x05 => "Pizza Box",
        0x06 => "Mini Tower",
        0x07 => "Tower",
        0x08 => "Portable",
        0x09 => "Laptop",
        0x0A => "Notebook",
        0x0B => "Hand Held",
        0x0C => "Docking Station",
        0x0D => "All in One",
        0x0E => "Sub Notebook",
        0x0F => "Space-saving",
        0x10 => "Lunch Box",
        0x11 => "Main Server Chassis",
        0x12 => "Expansion Chassis",
        0x13 => "SubChassis",
        0x14 => "Bus Expansion Chassis",
        0x15 => "Peripheral Chassis",
        0x16 => "RAID Chassis",
        0x17 => "Rack Mount Chassis",
        0x18 => "Sealed-case PC",
        0x19 => "Multi-system chassis",
        0x1A => "Compact PCI",
        0x1B => "Advanced TCA",
        0x1C => "Blade",
        0x1D => "Blade Enclosure",
        0x1E => "Tablet",
        0x1F => "Convertible",
        0x20 => "Detachable",
        0x21 => "IoT Gateway",
        0x22 => "Embedded PC",
        0x23 => "Mini PC",
        0x24 => "Stick PC",
        _ => return None,
    })
}
