//! Reading sysfs and procfs files under a root: what "absent" means, and errors that name
//! the file.

use std::io;
use std::path::{Path, PathBuf};

use super::InventoryError;

/// Errors that mean "this attribute has no value here", not "something is wrong": the file
/// does not exist, or the kernel refuses the read for this device right now (`speed` of a link
/// that is down answers EINVAL, some drivers answer ENODEV or EOPNOTSUPP).
fn is_absent(e: &io::Error) -> bool {
    const ENXIO: i32 = 6;
    const ENODEV: i32 = 19;
    const EOPNOTSUPP: i32 = 95;
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
    ) || matches!(e.raw_os_error(), Some(ENXIO | ENODEV | EOPNOTSUPP))
}

/// The trimmed text of a file, `None` when absent or empty.
pub fn read_opt(path: &Path) -> Result<Option<String>, InventoryError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let s = String::from_utf8_lossy(&bytes);
            let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
            Ok((!t.is_empty()).then(|| t.to_string()))
        }
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(InventoryError::new(path, e)),
    }
}

/// The bytes of a file, `None` when absent.
pub fn read_bytes_opt(path: &Path) -> Result<Option<Vec<u8>>, InventoryError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(InventoryError::new(path, e)),
    }
}

/// The last component of a symlink's target (`device/driver` → `virtio_net`), `None` when
/// there is no such link.
pub fn link_name(path: &Path) -> Result<Option<String>, InventoryError> {
    match std::fs::read_link(path) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(InventoryError::new(path, e)),
    }
}

/// Entries of a directory as (name, path), sorted by name; a missing directory is empty.
pub fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, InventoryError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_absent(&e) => return Ok(Vec::new()),
        Err(e) => return Err(InventoryError::new(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| InventoryError::new(dir, e))?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    out.sort();
    Ok(out)
}

/// Where `path` really is, all symlinks followed, as a path string relative to `root`
/// (`/sys/devices/pci0000:00/0000:00:03.0/virtio2` for `root/sys/class/net/eth0/device`).
/// `None` when it does not resolve (dangling link in a partial fixture).
pub fn resolve(root: &Path, path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    let real_root = std::fs::canonicalize(root).ok()?;
    let rel = real.strip_prefix(&real_root).ok()?;
    Some(format!("/{}", rel.to_string_lossy()))
}

/// `dddd:bb:dd.f`, a PCI address as sysfs spells it.
pub fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_are_recognised() {
        assert!(is_pci_address("0000:00:1f.2"));
        assert!(is_pci_address("0000:af:00.1"));
        assert!(!is_pci_address("virtio2"));
        assert!(!is_pci_address("0000:00:1f"));
        assert!(!is_pci_address("pci0000:00"));
    }
}
