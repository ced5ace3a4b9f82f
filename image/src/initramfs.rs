//! The initramfs: a staging directory written as a newc cpio archive, zstd-compressed, with
//! every field that could differ between two builds fixed, so the same tree gives the same
//! bytes whoever builds it, wherever, under whatever umask:
//!
//! - entries sorted bytewise by path (a directory always comes before its contents);
//! - inode numbers 1, 2, 3... in that order, device 0:0, owner 0:0, one mtime for all;
//! - permissions normalised: directories 0755, files 0755 when any execute bit is set and
//!   0644 otherwise, symlinks 0777;
//! - device nodes (`/dev/console`) come from the command line, so no root is needed to build;
//! - one zstd frame, single-threaded, with a content checksum.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;

/// A device node to add, as `PATH:c|b:MAJOR:MINOR:MODE` (`dev/console:c:5:1:600`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: String,
    pub block: bool,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
}

impl FromStr for Node {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [path, kind, major, minor, mode] = parts[..] else {
            return Err(format!("{s:?}: expected PATH:c|b:MAJOR:MINOR:MODE"));
        };
        let block = match kind {
            "c" => false,
            "b" => true,
            _ => return Err(format!("{s:?}: the type is c or b, not {kind:?}")),
        };
        let num = |v: &str, radix| {
            u32::from_str_radix(v, radix).map_err(|e| format!("{s:?}: {v:?}: {e}"))
        };
        Ok(Node {
            path: archive_path(path).map_err(|e| format!("{s:?}: {e}"))?,
            block,
            major: num(major, 10)?,
            minor: num(minor, 10)?,
            mode: num(mode, 8)? & 0o7777,
        })
    }
}

/// What one archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(PathBuf),
    Symlink(String),
    Device { block: bool, major: u32, minor: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, without a leading `/` (`bin/busybox`).
    pub path: String,
    pub kind: Kind,
    /// Permission bits only; the file type comes from `kind`.
    pub perm: u32,
}

impl Entry {
    pub fn mode(&self) -> u32 {
        let kind = match self.kind {
            Kind::Dir => S_IFDIR,
            Kind::File(_) => S_IFREG,
            Kind::Symlink(_) => S_IFLNK,
            Kind::Device { block: true, .. } => S_IFBLK,
            Kind::Device { block: false, .. } => S_IFCHR,
        };
        kind | self.perm
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06o} {}", self.mode(), self.path)?;
        if let Kind::Symlink(target) = &self.kind {
            write!(f, " -> {target}")?;
        }
        Ok(())
    }
}

/// Normalises a path given on the command line to the archive form: no leading `/` or `./`,
/// no empty, `.` or `..` components.
fn archive_path(p: &str) -> Result<String, String> {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return Err(format!("{p:?} is not a path inside the archive"));
    }
    Ok(parts.join("/"))
}

/// Lists `root` (recursively) plus `nodes`, sorted, with normalised permissions. Anything
/// that is not a directory, regular file or symlink in the tree is an error: device nodes
/// belong on the command line, sockets and FIFOs nowhere.
pub fn collect(root: &Path, nodes: &[Node]) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    walk(root, "", &mut entries)?;
    for n in nodes {
        if entries.iter().any(|e| e.path == n.path) {
            bail!(
                "{}: both in {} and given as a device node",
                n.path,
                root.display()
            );
        }
        entries.push(Entry {
            path: n.path.clone(),
            kind: Kind::Device {
                block: n.block,
                major: n.major,
                minor: n.minor,
            },
            perm: n.mode,
        });
    }
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let dirs: HashSet<&str> = entries
        .iter()
        .filter(|e| matches!(e.kind, Kind::Dir))
        .map(|e| e.path.as_str())
        .collect();
    for e in &entries {
        if let Some((parent, _)) = e.path.rsplit_once('/') {
            if !dirs.contains(parent) {
                bail!("{}: its directory {parent} is not in the archive", e.path);
            }
        }
    }
    Ok(entries)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> Result<()> {
    let read = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for item in read {
        let item = item.with_context(|| format!("reading {}", dir.display()))?;
        let path = item.path();
        let Some(name) = item.file_name().to_str().map(str::to_string) else {
            bail!("{}: the name is not UTF-8", path.display());
        };
        let archive = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::symlink_metadata(&path).with_context(|| path.display().to_string())?;
        let ft = meta.file_type();
        if ft.is_dir() {
            out.push(Entry {
                path: archive.clone(),
                kind: Kind::Dir,
                perm: 0o755,
            });
            walk(&path, &archive, out)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).with_context(|| path.display().to_string())?;
            let Some(target) = target.to_str().map(str::to_string) else {
                bail!("{}: the link target is not UTF-8", path.display());
            };
            out.push(Entry {
                path: archive,
                kind: Kind::Symlink(target),
                perm: 0o777,
            });
        } else if ft.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let exec = meta.permissions().mode() & 0o111 != 0;
            out.push(Entry {
                path: archive,
                kind: Kind::File(path),
                perm: if exec { 0o755 } else { 0o644 },
            });
        } else {
            bail!(
                "{}: only directories, files and symlinks can be staged (add device nodes with --node)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Writes `entries` as an uncompressed newc archive (with its trailer) to `w`.
pub fn write_cpio<W: Write>(entries: &[Entry], mtime: u32, mut w: W) -> Result<W> {
    for (i, e) in entries.iter().enumerate() {
        let ino = u32::try_from(i + 1).context("too many entries")?;
        let mut b = cpio::NewcBuilder::new(&e.path)
            .ino(ino)
            .mode(e.mode())
            .uid(0)
            .gid(0)
            .nlink(if matches!(e.kind, Kind::Dir) { 2 } else { 1 })
            .mtime(mtime);
        if let Kind::Device { major, minor, .. } = e.kind {
            b = b.rdev_major(major).rdev_minor(minor);
        }
        w = match &e.kind {
            Kind::Dir | Kind::Device { .. } => b.write(w, 0).finish()?,
            Kind::Symlink(target) => {
                let mut out = b.write(w, len32(target.len(), &e.path)?);
                out.write_all(target.as_bytes())?;
                out.finish()?
            }
            Kind::File(src) => {
                let mut f = File::open(src).with_context(|| src.display().to_string())?;
                let size = f.metadata()?.len();
                let size = u32::try_from(size)
                    .with_context(|| format!("{}: larger than 4 GiB", src.display()))?;
                let mut out = b.write(w, size);
                let copied = io::copy(&mut (&mut f).take(u64::from(size)), &mut out)?;
                if copied != u64::from(size) {
                    bail!("{}: changed while being archived", src.display());
                }
                out.finish()?
            }
        };
    }
    Ok(cpio::newc::trailer(w)?)
}

fn len32(n: usize, path: &str) -> Result<u32> {
    u32::try_from(n).with_context(|| format!("{path}: too large"))
}

/// Writes the zstd-compressed archive of `entries` to `out` (atomically: a temporary file
/// renamed into place) and returns the uncompressed archive size.
pub fn write(entries: &[Entry], mtime: u32, level: i32, out: &Path) -> Result<u64> {
    let tmp = out.with_extension("zst.tmp");
    let file = File::create(&tmp).with_context(|| tmp.display().to_string())?;
    let mut enc = zstd::stream::write::Encoder::new(BufWriter::new(file), level)?;
    enc.include_checksum(true)?;
    let counted = write_cpio(entries, mtime, Counter { inner: enc, n: 0 })?;
    let size = counted.n;
    let mut buf = counted.inner.finish()?;
    buf.flush()?;
    buf.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    fs::rename(&tmp, out)
        .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    Ok(size)
}

/// Counts the bytes written through it.
struct Counter<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One entry read back from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEntry {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub data: Vec<u8>,
}

/// Reads every entry of an uncompressed newc archive.
pub fn read_cpio<R: Read>(mut r: R) -> Result<Vec<ReadEntry>> {
    let mut out = Vec::new();
    loop {
        let mut reader = cpio::NewcReader::new(r)?;
        if reader.entry().is_trailer() {
            return Ok(out);
        }
        let e = reader.entry();
        let (path, mode, uid, gid, mtime) =
            (e.name().to_string(), e.mode(), e.uid(), e.gid(), e.mtime());
        let mut data = Vec::new();
        reader.read_to_end(&mut data)?;
        out.push(ReadEntry {
            path,
            mode,
            uid,
            gid,
            mtime,
            data,
        });
        r = reader.finish()?;
    }
}

/// Decompresses and reads a `.zst` initramfs.
pub fn read(path: &Path) -> Result<Vec<ReadEntry>> {
    let file = File::open(path).with_context(|| path.display().to_string())?;
    let dec = zstd::stream::read::Decoder::new(file)?;
    read_cpio(io::BufReader::new(dec)).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn tree() -> tempdir::TempDir {
        let t = tempdir::TempDir::new();
        let r = t.path();
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::create_dir_all(r.join("dev")).unwrap();
        fs::write(r.join("init"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(r.join("init"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(r.join("bin/busybox"), vec![7u8; 1001]).unwrap();
        fs::set_permissions(r.join("bin/busybox"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(r.join("bin-notes"), "x").unwrap();
        fs::set_permissions(r.join("bin-notes"), fs::Permissions::from_mode(0o600)).unwrap();
        symlink("busybox", r.join("bin/sh")).unwrap();
        t
    }

    fn console() -> Node {
        "/dev/console:c:5:1:600".parse().unwrap()
    }

    #[test]
    fn parses_device_nodes() {
        assert_eq!(
            console(),
            Node {
                path: "dev/console".into(),
                block: false,
                major: 5,
                minor: 1,
                mode: 0o600
            }
        );
        assert!("dev/x:q:1:2:600".parse::<Node>().is_err());
        assert!("../x:c:1:2:600".parse::<Node>().is_err());
        assert!("dev/x:c:1:2".parse::<Node>().is_err());
    }

    #[test]
    fn sorts_and_normalises() {
        let t = tree();
        let entries = collect(t.path(), &[console()]).unwrap();
        let listed: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            listed,
            [
                "040755 bin",
                "100644 bin-notes",
                "100755 bin/busybox",
                "120777 bin/sh -> busybox",
                "040755 dev",
                "020600 dev/console",
                "100755 init",
            ]
        );
    }

    #[test]
    fn refuses_a_node_without_its_directory() {
        let t = tree();
        let n: Node = "run/x:c:1:3:666".parse().unwrap();
        let err = collect(t.path(), &[n]).unwrap_err().to_string();
        assert!(err.contains("its directory run"), "{err}");
    }

    #[test]
    fn round_trips_with_fixed_metadata() {
        let t = tree();
        let entries = collect(t.path(), &[console()]).unwrap();
        let bytes = write_cpio(&entries, 1_700_000_000, Vec::new()).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let back = read_cpio(&bytes[..]).unwrap();
        assert_eq!(back.len(), entries.len());
        for (e, r) in entries.iter().zip(&back) {
            assert_eq!(e.path, r.path);
            assert_eq!(e.mode(), r.mode);
            assert_eq!((r.uid, r.gid, r.mtime), (0, 0, 1_700_000_000));
        }
        let sh = back.iter().find(|r| r.path == "bin/sh").unwrap();
        assert_eq!(sh.data, b"busybox");
        let bb = back.iter().find(|r| r.path == "bin/busybox").unwrap();
        assert_eq!(bb.data, vec![7u8; 1001]);
    }

    #[test]
    fn same_tree_same_bytes() {
        let a = tree();
        let b = tree();
        // Different mtimes and umask-dependent modes on disk must not matter.
        fs::set_permissions(b.path().join("bin"), fs::Permissions::from_mode(0o700)).unwrap();
        let out_a = a.path().join("../a.zst");
        let out_b = b.path().join("../b.zst");
        let ea = collect(a.path(), &[console()]).unwrap();
        let eb = collect(b.path(), &[console()]).unwrap();
        write(&ea, 1, 3, &out_a).unwrap();
        write(&eb, 1, 3, &out_b).unwrap();
        assert_eq!(fs::read(&out_a).unwrap(), fs::read(&out_b).unwrap());
        let back = read(&out_a).unwrap();
        assert_eq!(back.len(), 7);
    }

    /// A temporary directory removed on drop (no extra dev-dependency for one helper).
    mod tempdir {
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicU32, Ordering};

        static N: AtomicU32 = AtomicU32::new(0);

        pub struct TempDir(PathBuf);

        impl TempDir {
            pub fn new() -> Self {
                let n = N.fetch_add(1, Ordering::SeqCst);
                let base = std::env::temp_dir()
                    .join(format!("dragonfly-image-test-{}-{n}", std::process::id()));
                let root = base.join("root");
                std::fs::create_dir_all(&root).unwrap();
                TempDir(root)
            }

            pub fn path(&self) -> &Path {
                &self.0
            }
        }

        impl Drop for TempDir {
            fn drop(&mut self) {
                if let Some(base) = self.0.parent() {
                    let _ = std::fs::remove_dir_all(base);
                }
            }
        }
    }
}
