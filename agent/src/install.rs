//! The native install: stream an OS image over HTTP, decompress it, write it to the chosen
//! disk with bounded memory, verify its SHA-256, add a cloud-init NoCloud seed partition at
//! the end of the disk, and re-read the partition table. The caller reports `written` and
//! reboots.
//!
//! Nothing that decides whether to write is left until after writing: the disk is found by
//! serial or WWN and checked for size first. The image's first MiB (partition table, boot
//! code) is held in memory and written only after the checksum matched, so a corrupt or
//! tampered download leaves a disk its firmware will not boot from a half-written image.

mod seed;
mod stream;

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dragonfly_proto::{Disk, DiskSelector, ImageFormat, InstallPlan, WriteProgress};
use sha2::{Digest, Sha256};

pub use seed::{SEED_BYTES, add_seed};
pub use stream::Resuming;

/// The part of the image held back until the checksum is known.
pub const HEAD: usize = 1 << 20;
/// Size of each write to the disk.
const CHUNK: usize = 4 << 20;
/// How often progress is handed to the caller.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Why an install stopped. Each message names what an operator needs to act on.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("no disk with {wanted} (disks: {seen})")]
    NoDisk { wanted: String, seen: String },
    #[error(
        "disk {disk} holds {have} bytes; the image needs {need} plus {SEED_BYTES} for the seed"
    )]
    TooSmall { disk: String, have: u64, need: u64 },
    #[error(
        "{0} images are not supported by this agent; publish the image as raw, raw.gz, raw.xz or raw.zst"
    )]
    Unsupported(&'static str),
    #[error("download failed: {0}")]
    Download(String),
    #[error(
        "checksum mismatch: expected {expected}, downloaded {actual}; the disk's first MiB was left as it was"
    )]
    Checksum { expected: String, actual: String },
    #[error("the image is larger than disk {disk} ({limit} bytes usable)")]
    Overflow { disk: String, limit: u64 },
    #[error("decompressing the {format} image: {why}")]
    Decode { format: &'static str, why: String },
    #[error("writing {disk}: {why}")]
    Disk { disk: String, why: String },
    #[error("adding the cloud-init seed: {0}")]
    Seed(String),
}

/// What a finished write came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub device: PathBuf,
    /// Bytes of the published file downloaded.
    pub downloaded: u64,
    /// Bytes written to the disk (the decompressed image).
    pub written: u64,
    pub sha256: String,
}

/// The format's name as the catalogue spells it.
pub fn format_name(f: ImageFormat) -> &'static str {
    f.as_str()
}

/// The disk `wanted` names among `disks`.
pub fn find_disk<'a>(disks: &'a [Disk], wanted: &DiskSelector) -> Result<&'a Disk, InstallError> {
    let found = disks.iter().find(|d| match wanted {
        DiskSelector::Serial(s) => d.serial.as_deref() == Some(s.as_str()),
        DiskSelector::Wwn(w) => d.wwn.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(w)),
    });
    found.ok_or_else(|| InstallError::NoDisk {
        wanted: wanted.to_string(),
        seen: if disks.is_empty() {
            "none".into()
        } else {
            disks
                .iter()
                .map(|d| {
                    format!(
                        "{} serial {} WWN {}",
                        d.name,
                        d.serial.as_deref().unwrap_or("-"),
                        d.wwn.as_deref().unwrap_or("-")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
    })
}

/// Checks everything that can be checked before a byte is written.
pub fn preflight<'a>(plan: &InstallPlan, disks: &'a [Disk]) -> Result<&'a Disk, InstallError> {
    if plan.image.format == ImageFormat::Qcow2 {
        return Err(InstallError::Unsupported("qcow2"));
    }
    let disk = find_disk(disks, &plan.disk)?;
    let need = plan.image.size.unwrap_or(0);
    if disk.size_bytes < need.saturating_add(SEED_BYTES + HEAD as u64) {
        return Err(InstallError::TooSmall {
            disk: disk.name.clone(),
            have: disk.size_bytes,
            need,
        });
    }
    Ok(disk)
}

/// Writes the image of `plan` to `device` (a block device, or a file in tests) of
/// `disk_bytes`, reading it through `source`. `progress` is called every few seconds.
pub fn write_image(
    source: &mut dyn Read,
    format: ImageFormat,
    expected_sha256: &str,
    device: &Path,
    disk_bytes: u64,
    total: Option<u64>,
    progress: &mut dyn FnMut(WriteProgress),
) -> Result<Written, InstallError> {
    let disk_name = device.display().to_string();
    let file = OpenOptions::new()
        .write(true)
        .open(device)
        .map_err(|e| InstallError::Disk {
            disk: disk_name.clone(),
            why: e.to_string(),
        })?;
    let mut hashing = Hashing {
        inner: source,
        hasher: Sha256::new(),
        read: 0,
    };
    let limit = disk_bytes.saturating_sub(SEED_BYTES);
    let mut sink = DiskSink::new(file, limit, total, progress);
    let fmt = format_name(format);
    let decode = |why: io::Error| -> InstallError {
        // Errors of the disk and the download travel through the decoder as io errors;
        // give them back their own names.
        match why.get_ref().and_then(|e| e.downcast_ref::<Tagged>()) {
            Some(Tagged::Disk(m)) => InstallError::Disk {
                disk: disk_name.clone(),
                why: m.clone(),
            },
            Some(Tagged::Overflow) => InstallError::Overflow {
                disk: disk_name.clone(),
                limit,
            },
            Some(Tagged::Download(m)) => InstallError::Download(m.clone()),
            None => InstallError::Decode {
                format: fmt,
                why: why.to_string(),
            },
        }
    };
    match format {
        ImageFormat::Raw => io::copy(&mut hashing, &mut sink).map(|_| ()),
        ImageFormat::RawGz => {
            let mut d =
                flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, &mut hashing));
            io::copy(&mut d, &mut sink).map(|_| ())
        }
        ImageFormat::RawZst => {
            let mut d = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
                1 << 16,
                &mut hashing,
            ))
            .map_err(&decode)?;
            io::copy(&mut d, &mut sink).map(|_| ())
        }
        ImageFormat::RawXz => {
            let mut input = BufReader::with_capacity(1 << 16, &mut hashing);
            lzma_rs::xz_decompress(&mut input, &mut sink).map_err(|e| match e {
                lzma_rs::error::Error::IoError(io) => io,
                other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
            })
        }
        ImageFormat::Qcow2 => return Err(InstallError::Unsupported("qcow2")),
    }
    .map_err(&decode)?;
    // A decoder may stop at the end of its frame with bytes left: they are part of the file
    // (and of its checksum) all the same.
    io::copy(&mut hashing, &mut io::sink()).map_err(&decode)?;
    let actual = hex(&hashing.hasher.finalize());
    let downloaded = hashing.read;
    if !actual.eq_ignore_ascii_case(expected_sha256) {
        return Err(InstallError::Checksum {
            expected: expected_sha256.to_string(),
            actual,
        });
    }
    let written = sink.finish().map_err(|e| InstallError::Disk {
        disk: disk_name.clone(),
        why: e.to_string(),
    })?;
    Ok(Written {
        device: device.to_path_buf(),
        downloaded,
        written,
        sha256: actual,
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An error that must keep its meaning while passing through a decoder as an `io::Error`.
#[derive(Debug)]
enum Tagged {
    Disk(String),
    Overflow,
    Download(String),
}

impl std::fmt::Display for Tagged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tagged::Disk(m) => write!(f, "disk: {m}"),
            Tagged::Overflow => f.write_str("the image does not fit the disk"),
            Tagged::Download(m) => write!(f, "download: {m}"),
        }
    }
}

impl std::error::Error for Tagged {}

pub(crate) fn download_error(why: String) -> io::Error {
    io::Error::other(Tagged::Download(why))
}

/// Counts and hashes what the decoder reads: the published file, byte for byte.
struct Hashing<'a> {
    inner: &'a mut dyn Read,
    hasher: Sha256,
    read: u64,
}

impl Read for Hashing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// The disk as a byte sink: the first MiB kept in memory, the rest written in large
/// chunks, never past `limit` (the seed's room at the end stays free).
struct DiskSink<'a> {
    file: File,
    head: Vec<u8>,
    buf: Vec<u8>,
    /// Bytes accepted so far (head included).
    offset: u64,
    limit: u64,
    total: Option<u64>,
    progress: &'a mut dyn FnMut(WriteProgress),
    last_report: Instant,
    last_offset: u64,
}

impl<'a> DiskSink<'a> {
    fn new(
        file: File,
        limit: u64,
        total: Option<u64>,
        progress: &'a mut dyn FnMut(WriteProgress),
    ) -> Self {
        Self {
            file,
            head: Vec::with_capacity(HEAD),
            buf: Vec::with_capacity(CHUNK),
            offset: 0,
            limit,
            total,
            progress,
            last_report: Instant::now(),
            last_offset: 0,
        }
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let at = self.offset - self.buf.len() as u64;
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.write_all(&self.buf))
            .map_err(|e| io::Error::other(Tagged::Disk(e.to_string())))?;
        self.buf.clear();
        let elapsed = self.last_report.elapsed();
        if elapsed >= PROGRESS_EVERY {
            let rate = (self.offset - self.last_offset) as f64 / elapsed.as_secs_f64();
            (self.progress)(WriteProgress {
                written: self.offset,
                total: self.total,
                bytes_per_sec: rate as u64,
            });
            self.last_report = Instant::now();
            self.last_offset = self.offset;
        }
        Ok(())
    }

    /// Writes the held-back head, flushes everything to the device.
    fn finish(mut self) -> io::Result<u64> {
        self.flush_buf()?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&self.head)?;
        self.file.sync_all()?;
        (self.progress)(WriteProgress {
            written: self.offset,
            total: self.total.or(Some(self.offset)),
            bytes_per_sec: 0,
        });
        Ok(self.offset)
    }
}

impl Write for DiskSink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.offset + data.len() as u64 > self.limit {
            return Err(io::Error::other(Tagged::Overflow));
        }
        let mut taken = 0;
        if self.head.len() < HEAD {
            taken = (HEAD - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..taken]);
            self.offset += taken as u64;
            if taken == data.len() {
                return Ok(taken);
            }
        }
        let rest = &data[taken..];
        let n = (CHUNK - self.buf.len()).min(rest.len());
        self.buf.extend_from_slice(&rest[..n]);
        self.offset += n as u64;
        if self.buf.len() == CHUNK {
            self.flush_buf()?;
        }
        Ok(taken + n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
