//! What the machine really is: SMBIOS identity, CPU, memory, NICs (and the boot NIC), disks
//! and PCI functions. Every reader works under a root path — `/` in production, a fixture
//! tree captured from a real machine in tests — and every error names the file that failed.
//!
//! A missing source (no SMBIOS tables in a micro-VM, no `fib_trie`) is absent, not an error;
//! a source that exists but cannot be read (permission, I/O error) is an error. The agent uses
//! [`Inventory::collect_lenient`] so one unreadable file costs one section of the report, not
//! the registration.

mod addrs;
mod clean;
mod cpu;
pub mod disks;
mod nics;
mod pci;
mod smbios;
mod sysfs;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use dragonfly_proto::{Firmware, HardwareReport};

use crate::cmdline::KernelCmdline;

pub use cpu::{parse_cpuinfo, parse_memtotal};
pub use disks::{transport, unit_serial};

/// A file under the root that exists but could not be read.
#[derive(Debug)]
pub struct InventoryError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl InventoryError {
    pub fn new(path: &Path, source: io::Error) -> Self {
        Self {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reading {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for InventoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The value of a reader, or `None` with its error recorded.
fn keep<T>(r: Result<T, InventoryError>, errors: &mut Vec<InventoryError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// The hardware inventory.
pub struct Inventory;

impl Inventory {
    /// The full report, or the first file that could not be read.
    pub fn collect(root: &Path) -> Result<HardwareReport, InventoryError> {
        let (report, mut errors) = Self::collect_lenient(root);
        if errors.is_empty() {
            Ok(report)
        } else {
            Err(errors.swap_remove(0))
        }
    }

    /// The report with every section that could be read, and the errors of those that could
    /// not (their sections are left empty).
    pub fn collect_lenient(root: &Path) -> (HardwareReport, Vec<InventoryError>) {
        let mut errors = Vec::new();
        let e = &mut errors;
        let cmdline = keep(
            KernelCmdline::read(root)
                .map_err(|err| InventoryError::new(&root.join("proc/cmdline"), err)),
            e,
        )
        .unwrap_or_default();
        let smbios = keep(smbios::read(root), e).unwrap_or_default();
        let cpu = keep(cpu::read(root), e).flatten();
        let memory_bytes = keep(cpu::read_memory(root), e).flatten();
        let net = keep(addrs::read(root), e).unwrap_or_default();
        let (nics, boot_mac) = keep(nics::read(root, &cmdline, &net), e).unwrap_or_default();
        let disks = keep(disks::read(root), e).unwrap_or_default();
        let pci = keep(pci::read(root), e).unwrap_or_default();
        let firmware = if root.join("sys/firmware/efi").exists() {
            Firmware::Uefi
        } else {
            Firmware::Bios
        };
        let report = HardwareReport {
            boot_mac,
            arch: Some(std::env::consts::ARCH.to_string()),
            firmware: Some(firmware),
            smbios,
            cpu,
            memory_bytes,
            nics,
            disks,
            pci,
        };
        (report, errors)
    }

    /// True when the machine booted through UEFI (`root/sys/firmware/efi` exists).
    pub fn is_uefi(root: &Path) -> bool {
        root.join("sys/firmware/efi").exists()
    }
}
