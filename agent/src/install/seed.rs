//! The cloud-init NoCloud seed: a small FAT partition labelled `CIDATA` at the very end of
//! the disk, holding `meta-data`, `user-data` and (for the boot NIC) `network-config`.
//!
//! A raw image is usually smaller than the disk, so its GPT's backup header sits where the
//! image ended. Re-reading the table against the whole device moves the backup header to the
//! disk's last sector (`gpt` computes it from the device size), which frees the space behind
//! the image; the seed goes at the end, aligned, so growpart can still grow the root
//! partition up to it.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Cursor, Seek, SeekFrom, Write};
use std::path::Path;

use dragonfly_proto::Seed;
use gpt::partition::Partition;

/// Room the seed takes at the end of the disk: the partition plus the backup GPT.
pub const SEED_BYTES: u64 = SEED_PARTITION + (1 << 20);
/// The seed partition itself.
const SEED_PARTITION: u64 = 16 << 20;
const SECTOR: u64 = 512;
const ALIGN: u64 = 2048;

fn meta_data(seed: &Seed) -> String {
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        yaml_scalar(&seed.instance_id),
        yaml_scalar(&seed.hostname)
    )
}

/// A version 2 network-config that runs DHCP on the boot NIC only, matched by MAC.
fn network_config(mac: &str) -> String {
    format!(
        "version: 2\nethernets:\n  boot:\n    match:\n      macaddress: {}\n    dhcp4: true\n",
        yaml_scalar(mac)
    )
}

/// A YAML double-quoted scalar.
fn yaml_scalar(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The FAT image of the seed, built in memory (16 MiB).
pub fn seed_image(seed: &Seed) -> Result<Vec<u8>, String> {
    let mut image = Cursor::new(vec![0u8; SEED_PARTITION as usize]);
    fatfs::format_volume(
        &mut image,
        fatfs::FormatVolumeOptions::new().volume_label(*b"CIDATA     "),
    )
    .map_err(|e| format!("formatting the seed: {e}"))?;
    image.set_position(0);
    {
        let fs = fatfs::FileSystem::new(&mut image, fatfs::FsOptions::new())
            .map_err(|e| format!("opening the seed: {e}"))?;
        let root = fs.root_dir();
        let mut files = vec![
            ("meta-data", meta_data(seed)),
            ("user-data", seed.user_data.clone()),
        ];
        if let Some(mac) = &seed.boot_mac {
            files.push(("network-config", network_config(mac)));
        }
        for (name, text) in files {
            let mut f = root
                .create_file(name)
                .map_err(|e| format!("writing {name}: {e}"))?;
            f.truncate().map_err(|e| format!("writing {name}: {e}"))?;
            f.write_all(text.as_bytes())
                .map_err(|e| format!("writing {name}: {e}"))?;
        }
    }
    Ok(image.into_inner())
}

/// Adds the seed partition to the GPT of the image just written to `device` and writes the
/// seed's file system into it. Returns the partition's first byte.
pub fn add_seed(device: &Path, seed: &Seed) -> Result<u64, String> {
    let image = seed_image(seed)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|e| format!("{}: {e}", device.display()))?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        // The backup header is where the image ended, not at the end of this disk.
        .only_valid_headers(false)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .open_from_device(file)
        .map_err(|e| format!("the image has no readable GPT partition table: {e}"))?;
    // Rebuilding the headers against the whole device moves the backup to its end.
    let parts: BTreeMap<u32, Partition> = disk.partitions().clone();
    disk.update_partitions(parts)
        .map_err(|e| format!("relocating the backup GPT: {e}"))?;
    let header = disk.header().clone();
    let length = SEED_PARTITION / SECTOR;
    let start = (header.last_usable + 1 - length) / ALIGN * ALIGN;
    if disk
        .partitions()
        .values()
        .any(|p| p.is_used() && p.last_lba >= start)
    {
        return Err("no room for the seed behind the image's partitions".into());
    }
    let id = disk
        .find_next_partition_id()
        .ok_or("the partition table is full")?;
    disk.add_partition_at("cidata", id, start, length, gpt::partition_types::BASIC, 0)
        .map_err(|e| format!("adding the seed partition: {e}"))?;
    let mut file = disk
        .write()
        .map_err(|e| format!("writing the partition table: {e}"))?;
    let at = start * SECTOR;
    file.seek(SeekFrom::Start(at))
        .and_then(|_| file.write_all(&image))
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing the seed: {e}"))?;
    Ok(at)
}
