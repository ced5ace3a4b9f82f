//! The native install: stream an OS image over HTTP, decompress it, write it to the chosen
//! disk with bounded memory (a qcow2 image by way of a spool on the disk itself, see
//! [`qcow2`]), verify its SHA-256, add a cloud-init NoCloud seed partition at
//! the end of the disk, and re-read the partition table. The caller reports `written` and
//! reboots.
//!
//! Nothing that decides whether to write is left until after writing: the disk is found by
//! serial or WWN and checked for size first. The image's first MiB (partition table, boot
//! code) is held in memory and written only after the checksum matched, so a corrupt or
//! tampered download leaves a disk its firmware will not boot from a half-written image.

pub mod qcow2;
mod seed;
mod stream;

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dragonfly_proto::{Disk, DiskSelector, ImageFormat, ImageSource, InstallPlan, WriteProgress};
use sha2::{Digest, Sha256, Sha512};

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
    #[error("download failed: {0}")]
    Download(String),
    #[error(
        "checksum mismatch: expected {expected}, downloaded {actual}; the disk's first MiB was left as it was"
    )]
    Checksum { expected: String, actual: String },
    #[error("the image has no SHA-256 or SHA-512 to verify it by; nothing was written")]
    NoChecksum,
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
    /// The checksum verified, e.g. `SHA-256 ab12…`.
    pub checksum: String,
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

/// Checks everything that can be checked before a byte is written. (A qcow2 image's own
/// size is known only from its header: [`write_image`] checks it before writing.)
pub fn preflight<'a>(plan: &InstallPlan, disks: &'a [Disk]) -> Result<&'a Disk, InstallError> {
    if plan.image.sha256.is_none() && plan.image.sha512.is_none() {
        return Err(InstallError::NoChecksum);
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

/// Writes `image` to `device` (a block device, or a file in tests) of `disk_bytes`, reading
/// the published file (`file_len` bytes, when known) through `source`. `progress` is called
/// every few seconds.
pub fn write_image(
    source: &mut dyn Read,
    image: &ImageSource,
    file_len: Option<u64>,
    device: &Path,
    disk_bytes: u64,
    progress: &mut dyn FnMut(WriteProgress),
) -> Result<Written, InstallError> {
    let disk = device.display().to_string();
    if image.sha256.is_none() && image.sha512.is_none() {
        return Err(InstallError::NoChecksum);
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|e| InstallError::Disk {
            disk: disk.clone(),
            why: e.to_string(),
        })?;
    let mut hashing = Hashing {
        inner: source,
        sha256: image.sha256.as_ref().map(|_| Sha256::new()),
        sha512: image.sha512.as_ref().map(|_| Sha512::new()),
        read: 0,
    };
    let limit = disk_bytes.saturating_sub(SEED_BYTES);
    let format = image.format;
    let fail = |why: io::Error| classify(why, &disk, limit, format_name(format));
    if format == ImageFormat::Qcow2 {
        let (downloaded, written, checksum) =
            write_qcow2(&mut hashing, image, file_len, file, &disk, limit, progress)?;
        return Ok(Written {
            device: device.to_path_buf(),
            downloaded,
            written,
            checksum,
        });
    }
    let mut sink = DiskSink::new(file, limit, image.size, progress);
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
            .map_err(&fail)?;
            io::copy(&mut d, &mut sink).map(|_| ())
        }
        ImageFormat::RawXz => {
            let mut input = BufReader::with_capacity(1 << 16, &mut hashing);
            lzma_rs::xz_decompress(&mut input, &mut sink).map_err(|e| match e {
                lzma_rs::error::Error::IoError(io) => io,
                other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
            })
        }
        ImageFormat::Qcow2 => unreachable_qcow2(),
    }
    .map_err(&fail)?;
    // A decoder may stop at the end of its frame with bytes left: they are part of the file
    // (and of its checksum) all the same.
    io::copy(&mut hashing, &mut io::sink()).map_err(&fail)?;
    let (downloaded, checksum) = verify(&mut hashing, image)?;
    let written = sink.finish().map_err(|e| InstallError::Disk {
        disk: disk.clone(),
        why: e.to_string(),
    })?;
    Ok(Written {
        device: device.to_path_buf(),
        downloaded,
        written,
        checksum,
    })
}

/// `write_image` has handled qcow2 before its match.
fn unreachable_qcow2() -> io::Result<()> {
    Err(io::Error::other("qcow2 takes its own path"))
}

/// A qcow2 image: spooled past its virtual disk's end, verified, then converted onto the
/// start of the disk (see [`qcow2`]).
fn write_qcow2(
    hashing: &mut Hashing<'_>,
    image: &ImageSource,
    file_len: Option<u64>,
    file: File,
    disk: &str,
    limit: u64,
    progress: &mut dyn FnMut(WriteProgress),
) -> Result<(u64, u64, String), InstallError> {
    let fail = |why: io::Error| classify(why, disk, limit, "qcow2");
    let mut peek = Vec::with_capacity(qcow2::PEEK);
    (&mut *hashing)
        .take(qcow2::PEEK as u64)
        .read_to_end(&mut peek)
        .map_err(&fail)?;
    let header = qcow2::Header::parse(&peek).map_err(|why| InstallError::Decode {
        format: "qcow2",
        why,
    })?;
    // The spool starts at the first MiB boundary past the virtual disk.
    let base = header
        .size
        .checked_next_multiple_of(1 << 20)
        .ok_or_else(|| InstallError::Decode {
            format: "qcow2",
            why: format!("a virtual disk of {} bytes", header.size),
        })?;
    let need = base.saturating_add(file_len.unwrap_or(0));
    if need > limit {
        return Err(InstallError::TooSmall {
            disk: disk.to_string(),
            have: limit + SEED_BYTES,
            need,
        });
    }
    let total = file_len.map(|l| l + header.size);
    let spool_file = file.try_clone().map_err(|e| InstallError::Disk {
        disk: disk.to_string(),
        why: e.to_string(),
    })?;
    let mut spool = DiskSink::new(spool_file, limit, total, progress).at(base, 0, 0);
    spool.write_all(&peek).map_err(&fail)?;
    io::copy(hashing, &mut spool).map_err(&fail)?;
    let spooled = spool.finish().map_err(&fail)?;
    let (downloaded, checksum) = verify(hashing, image)?;
    // The converter reads the spool through its own handle while the sink writes.
    let reader = file.try_clone().map_err(&fail)?;
    let mut sink = DiskSink::new(file, base, total, progress).at(0, HEAD, spooled);
    let spool = qcow2::Spool {
        file: &reader,
        base,
        len: spooled,
    };
    qcow2::convert(&header, &spool, &mut sink).map_err(&fail)?;
    let written = sink.finish().map_err(&fail)?;
    Ok((downloaded, written, checksum))
}

/// Gives an io error that crossed a decoder its own meaning back.
fn classify(why: io::Error, disk: &str, limit: u64, format: &'static str) -> InstallError {
    match why.get_ref().and_then(|e| e.downcast_ref::<Tagged>()) {
        Some(Tagged::Disk(m)) => InstallError::Disk {
            disk: disk.to_string(),
            why: m.clone(),
        },
        Some(Tagged::Overflow) => InstallError::Overflow {
            disk: disk.to_string(),
            limit,
        },
        Some(Tagged::Download(m)) => InstallError::Download(m.clone()),
        None => InstallError::Decode {
            format,
            why: why.to_string(),
        },
    }
}

/// The download's length and the checksum verified, if every one given matched.
fn verify(hashing: &mut Hashing<'_>, image: &ImageSource) -> Result<(u64, String), InstallError> {
    let mut verified = Vec::new();
    let sums = [
        (
            "SHA-256",
            hashing.sha256.take().map(|h| hex(&h.finalize())),
            &image.sha256,
        ),
        (
            "SHA-512",
            hashing.sha512.take().map(|h| hex(&h.finalize())),
            &image.sha512,
        ),
    ];
    for (name, actual, expected) in sums {
        if let (Some(actual), Some(expected)) = (actual, expected) {
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(InstallError::Checksum {
                    expected: format!("{name} {expected}"),
                    actual,
                });
            }
            verified.push(format!("{name} {actual}"));
        }
    }
    if verified.is_empty() {
        return Err(InstallError::NoChecksum);
    }
    Ok((hashing.read, verified.join(", ")))
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

/// Counts and hashes what the decoder reads: the published file, byte for byte, with each
/// digest the image has a checksum of.
struct Hashing<'a> {
    inner: &'a mut dyn Read,
    sha256: Option<Sha256>,
    sha512: Option<Sha512>,
    read: u64,
}

impl Read for Hashing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.sha256 {
            h.update(&buf[..n]);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(&buf[..n]);
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// The disk as a byte sink: the first MiB kept in memory, the rest written in large
/// chunks, never past `limit` (the seed's room at the end stays free).
struct DiskSink<'a> {
    file: File,
    /// Where on the disk the sink's first byte goes.
    base: u64,
    /// How many of the first bytes are held back until `finish`.
    hold: usize,
    head: Vec<u8>,
    buf: Vec<u8>,
    /// Bytes accepted so far (head included).
    offset: u64,
    limit: u64,
    /// Progress already reported by an earlier sink of the same install.
    reported: u64,
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
            base: 0,
            hold: HEAD,
            head: Vec::with_capacity(HEAD),
            buf: Vec::with_capacity(CHUNK),
            offset: 0,
            limit,
            reported: 0,
            total,
            progress,
            last_report: Instant::now(),
            last_offset: 0,
        }
    }

    /// Writes from `base` on, holding back `hold` bytes, its progress counted after
    /// `reported` bytes of an earlier stage.
    fn at(mut self, base: u64, hold: usize, reported: u64) -> Self {
        self.base = base;
        self.hold = hold;
        self.head = Vec::with_capacity(hold);
        self.reported = reported;
        self
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let at = self.base + self.offset - self.buf.len() as u64;
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.write_all(&self.buf))
            .map_err(|e| io::Error::other(Tagged::Disk(e.to_string())))?;
        self.buf.clear();
        let elapsed = self.last_report.elapsed();
        if elapsed >= PROGRESS_EVERY {
            let rate = (self.offset - self.last_offset) as f64 / elapsed.as_secs_f64();
            (self.progress)(WriteProgress {
                written: self.reported + self.offset,
                total: self.total,
                bytes_per_sec: rate as u64,
            });
            self.last_report = Instant::now();
            self.last_offset = self.offset;
        }
        Ok(())
    }

    /// Writes the held-back head, flushes everything to the device; the bytes accepted.
    fn finish(mut self) -> io::Result<u64> {
        self.flush_buf()?;
        self.file.seek(SeekFrom::Start(self.base))?;
        self.file.write_all(&self.head)?;
        self.file.sync_all()?;
        let done = self.reported + self.offset;
        (self.progress)(WriteProgress {
            written: done,
            total: self.total.or(Some(done)),
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
        if self.base + self.offset + data.len() as u64 > self.limit {
            return Err(io::Error::other(Tagged::Overflow));
        }
        let mut taken = 0;
        if self.head.len() < self.hold {
            taken = (self.hold - self.head.len()).min(data.len());
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
