//! PCI functions from `root/sys/bus/pci/devices/*`: address, ids, class and bound driver.

use std::path::Path;

use dragonfly_proto::PciDevice;

use super::InventoryError;
use super::sysfs::{link_name, list_dir, read_opt};

pub fn read(root: &Path) -> Result<Vec<PciDevice>, InventoryError> {
    let mut out = Vec::new();
    for (address, path) in list_dir(&root.join("sys/bus/pci/devices"))? {
        let field = |name: &str| -> Result<String, InventoryError> {
            Ok(read_opt(&path.join(name))?
                .unwrap_or_default()
                .to_ascii_lowercase())
        };
        out.push(PciDevice {
            vendor_id: field("vendor")?,
            device_id: field("device")?,
            class: field("class")?,
            driver: link_name(&path.join("driver"))?,
            address,
        });
    }
    Ok(out)
}
