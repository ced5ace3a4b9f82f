//! `manifest.json` beside the artefact: every file of the boot directory and every entry of
//! the initramfs (read back from `initramfs.zst` itself, so the manifest also proves that the
//! archive decompresses and parses), the Debian package versions it was built from, and a
//! `version` derived from the content: the same bytes always get the same version.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::initramfs;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

#[derive(Debug, Serialize)]
pub struct Manifest {
    /// The first 12 hex digits of the SHA-256 over the sorted `path sha256` lines of `files`.
    pub version: String,
    /// `uname -r` of the kernel in `vmlinuz`.
    pub kernel: String,
    /// `debian` or `alpine`: whose kernel, modules and busybox.
    pub flavour: String,
    /// `any`, or the hardware the kernel is limited to ("virtual machines only ...").
    pub hardware: String,
    /// Where the flavour's files came from, when that is a choice (the Alpine source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The timestamp every initramfs entry carries.
    pub source_date_epoch: u64,
    /// Package name -> version (Alpine's as `alpine:NAME`).
    pub packages: BTreeMap<String, String>,
    /// The boot directory's files (paths relative to it), sorted.
    pub files: Vec<File>,
    /// The initramfs entries, in archive order.
    pub initramfs: Vec<InitramfsEntry>,
}

#[derive(Debug, Serialize)]
pub struct File {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct InitramfsEntry {
    pub path: String,
    /// Octal, with the file type: `100755`, `040755`, `120777`, `020600`.
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

pub struct Inputs<'a> {
    pub boot_dir: &'a Path,
    pub kernel: String,
    pub source_date_epoch: u64,
    pub packages: BTreeMap<String, String>,
    pub flavour: String,
    pub hardware: String,
    pub source: Option<String>,
}

pub const FILE_NAME: &str = "manifest.json";

pub fn build(inputs: Inputs<'_>) -> Result<Manifest> {
    let mut files = Vec::new();
    list(inputs.boot_dir, "", &mut files)?;
    files.retain(|f| f.path != FILE_NAME);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if !files.iter().any(|f| f.path == "initramfs.zst") {
        bail!("{}: no initramfs.zst", inputs.boot_dir.display());
    }
    let mut h = Sha256::new();
    for f in &files {
        h.update(format!("{} {}\n", f.path, f.sha256));
    }
    let version = hex(&h.finalize())[..12].to_string();

    let entries = initramfs::read(&inputs.boot_dir.join("initramfs.zst"))?;
    let initramfs = entries
        .into_iter()
        .map(|e| {
            let kind = e.mode & S_IFMT;
            let (size, sha256, target) = match kind {
                S_IFREG => (
                    Some(e.data.len() as u64),
                    Some(hex(&Sha256::digest(&e.data))),
                    None,
                ),
                S_IFLNK => (
                    None,
                    None,
                    Some(String::from_utf8_lossy(&e.data).into_owned()),
                ),
                _ => (None, None, None),
            };
            InitramfsEntry {
                path: e.path,
                mode: format!("{:06o}", e.mode),
                size,
                sha256,
                target,
            }
        })
        .collect();

    Ok(Manifest {
        version,
        kernel: inputs.kernel,
        flavour: inputs.flavour,
        hardware: inputs.hardware,
        source: inputs.source,
        source_date_epoch: inputs.source_date_epoch,
        packages: inputs.packages,
        files,
        initramfs,
    })
}

fn list(dir: &Path, prefix: &str, out: &mut Vec<File>) -> Result<()> {
    for item in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = item.path();
        let meta = fs::metadata(&path).with_context(|| path.display().to_string())?;
        if meta.is_dir() {
            list(&path, &rel, out)?;
        } else {
            let data = fs::read(&path).with_context(|| path.display().to_string())?;
            out.push(File {
                path: rel,
                size: data.len() as u64,
                sha256: hex(&Sha256::digest(&data)),
            });
        }
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The manifest as written: pretty JSON with a final newline.
pub fn to_json(m: &Manifest) -> Result<String> {
    let mut s = serde_json::to_string_pretty(m)?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0, 1, 0xab]), "0001ab");
    }

    #[test]
    fn lists_the_boot_dir_and_reads_the_initramfs_back() {
        let base =
            std::env::temp_dir().join(format!("dragonfly-manifest-test-{}", std::process::id()));
        let boot = base.join("boot");
        let root = base.join("root");
        fs::create_dir_all(boot.join("tftp")).unwrap();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("init"), "#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        fs::write(boot.join("vmlinuz"), "kernel").unwrap();
        fs::write(boot.join("tftp/undionly.kpxe"), "pxe").unwrap();
        fs::write(boot.join(FILE_NAME), "old").unwrap();
        let entries = initramfs::collect(&root, &[]).unwrap();
        initramfs::write(&entries, 5, 3, &boot.join("initramfs.zst")).unwrap();

        let m = build(Inputs {
            boot_dir: &boot,
            kernel: "6.1.0-1-amd64".into(),
            source_date_epoch: 5,
            packages: BTreeMap::from([("ipxe".into(), "1".into())]),
            flavour: "alpine".into(),
            hardware: "virtual machines only".into(),
            source: Some("a wheel".into()),
        })
        .unwrap();
        let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["initramfs.zst", "tftp/undionly.kpxe", "vmlinuz"]);
        assert_eq!(m.version.len(), 12);
        let init = m.initramfs.iter().find(|e| e.path == "init").unwrap();
        assert_eq!(init.mode, "100644");
        assert_eq!(init.size, Some(10));
        let sh = m.initramfs.iter().find(|e| e.path == "bin/sh").unwrap();
        assert_eq!(sh.target.as_deref(), Some("busybox"));
        let again = build(Inputs {
            boot_dir: &boot,
            kernel: "6.1.0-1-amd64".into(),
            source_date_epoch: 5,
            packages: BTreeMap::new(),
            flavour: "debian".into(),
            hardware: "any".into(),
            source: None,
        })
        .unwrap();
        assert_eq!(m.version, again.version);
        let json = to_json(&m).unwrap();
        assert!(
            json.contains(r#""hardware": "virtual machines only""#),
            "{json}"
        );
        fs::remove_dir_all(&base).unwrap();
    }
}
