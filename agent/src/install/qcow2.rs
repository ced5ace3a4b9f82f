//! qcow2 images (the format Debian's and Ubuntu's cloud images are published in). A qcow2
//! file is not a stream: its tables point anywhere in the file. The agent therefore spools
//! the downloaded file onto the target disk itself, just past the end of the virtual disk
//! the file holds, verifies the file's checksum there, and only then converts it cluster by
//! cluster onto the start of the disk, the first MiB last. Memory stays bounded (one L2
//! table and two clusters, at most 2 MiB each) and nothing but the disk is needed; the disk
//! must hold the virtual disk plus the file (and the seed).
//!
//! Read here: version 2 and 3 images without a backing file, encryption, external data file
//! or extended L2 entries (what `qemu-img convert` and the distributions' image builders
//! write), with zlib or zstd compressed clusters. Anything else is refused by name before a
//! byte is written to the disk. A small reader of its own rather than a crate: the one
//! complete, well-kept qcow2 crate adds over 300 KB to the agent, past its 2 MB budget
//! (see the agent's README).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

/// The file's first bytes, read before anything else: the header and its extensions.
pub const PEEK: usize = 4096;
const MAGIC: u32 = 0x5146_49fb;
/// Incompatible features understood: dirty (refcounts only) and the compression type.
const KNOWN_INCOMPATIBLE: u64 = 0b1001;
/// Bits 9..=55 of L1 and standard L2 entries: a host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;
/// Standard L2 entry, version 3: the cluster reads as zeros.
const ZERO: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zlib,
    Zstd,
}

/// What the conversion needs from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub cluster_bits: u32,
    /// Bytes of the virtual disk.
    pub size: u64,
    pub l1_entries: u64,
    pub l1_offset: u64,
    pub compression: Compression,
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut x = [0; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(x)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Parses the header from the file's first bytes; refuses what this reader cannot
    /// convert faithfully, naming it.
    pub fn parse(b: &[u8]) -> Result<Header, String> {
        if b.len() < 72 || be32(b, 0) != MAGIC {
            return Err("not a qcow2 file (no QFI magic)".into());
        }
        let version = be32(b, 4);
        if !(2..=3).contains(&version) {
            return Err(format!("qcow2 version {version} is not supported"));
        }
        if be64(b, 8) != 0 {
            return Err("the image has a backing file; publish a self-contained image".into());
        }
        let cluster_bits = be32(b, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(format!("cluster_bits {cluster_bits} is out of range"));
        }
        let size = be64(b, 24);
        if be32(b, 32) != 0 {
            return Err("the image is encrypted".into());
        }
        let mut compression = Compression::Zlib;
        if version == 3 {
            if b.len() < 104 {
                return Err("the version 3 header is truncated".into());
            }
            let incompatible = be64(b, 72);
            if incompatible & 2 != 0 {
                return Err("the image is marked corrupt".into());
            }
            if incompatible & !KNOWN_INCOMPATIBLE != 0 {
                return Err(format!(
                    "the image uses incompatible features {incompatible:#x} (external data \
                     file or extended L2 entries) this agent does not read"
                ));
            }
            let header_length = be32(b, 100) as usize;
            if incompatible & 8 != 0 {
                if header_length <= 104 || b.len() <= 104 {
                    return Err("the compression type is missing from the header".into());
                }
                compression = match b[104] {
                    0 => Compression::Zlib,
                    1 => Compression::Zstd,
                    t => return Err(format!("compression type {t} is not supported")),
                };
            }
        }
        let cluster = 1u64 << cluster_bits;
        let per_l2 = cluster / 8;
        let needed = size.div_ceil(cluster).div_ceil(per_l2);
        let l1_size = u64::from(be32(b, 36));
        if l1_size < needed {
            return Err(format!(
                "the L1 table has {l1_size} entries; a {size}-byte disk needs {needed}"
            ));
        }
        Ok(Header {
            cluster_bits,
            size,
            l1_entries: needed,
            l1_offset: be64(b, 40),
            compression,
        })
    }
}

/// Where the spooled file can be read from: the disk, or memory (the fuzz target).
pub trait ReadAt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for &[u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| corrupt("offset".into()))?;
        let src = self
            .get(start..start.saturating_add(buf.len()))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// The spooled file: `len` bytes at `base` on the disk.
pub struct Spool<'a> {
    pub file: &'a dyn ReadAt,
    pub base: u64,
    pub len: u64,
}

impl Spool<'_> {
    /// Reads `buf.len()` bytes at `offset` of the qcow2 file.
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(corrupt(format!(
                "a table or cluster at byte {offset} lies past the end of the file ({} bytes)",
                self.len
            )));
        }
        self.file.read_exact_at(buf, self.base + offset)
    }
}

fn corrupt(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Writes the virtual disk of the spooled qcow2 file to `out`, from its first byte to its
/// last: unallocated and zero clusters as zeros, since the disk may hold anything.
pub fn convert(header: &Header, spool: &Spool, out: &mut dyn Write) -> io::Result<()> {
    let cluster = header.cluster_size() as usize;
    let per_l2 = cluster / 8;
    // The table is read from the file: no bigger than the file (checked before allocating).
    let l1_bytes = header.l1_entries.saturating_mul(8);
    if l1_bytes > spool.len {
        return Err(corrupt(format!(
            "an L1 table of {l1_bytes} bytes cannot fit a {}-byte file",
            spool.len
        )));
    }
    let mut l1 = vec![0u8; l1_bytes as usize];
    spool.read(header.l1_offset, &mut l1)?;
    let mut l2 = vec![0u8; cluster];
    let mut data = vec![0u8; cluster];
    let zeros = vec![0u8; cluster];
    // Compressed data may take a little more than a cluster (a partial sector either side).
    let mut packed = Vec::with_capacity(cluster + 1024);
    // Compressed clusters: x bits of offset, then the count of extra 512-byte sectors.
    let x = 62 - (header.cluster_bits - 8);
    let mut left = header.size;
    for l1_entry in l1.chunks_exact(8) {
        let l2_offset = be64(l1_entry, 0) & OFFSET_MASK;
        if l2_offset != 0 {
            spool.read(l2_offset, &mut l2)?;
        }
        for i in 0..per_l2 {
            if left == 0 {
                return Ok(());
            }
            let n = (cluster as u64).min(left) as usize;
            let entry = if l2_offset == 0 { 0 } else { be64(&l2, i * 8) };
            if entry & COMPRESSED != 0 {
                let offset = entry & ((1u64 << x) - 1);
                let sectors = ((entry >> x) & ((1u64 << (header.cluster_bits - 8)) - 1)) + 1;
                let len = (sectors * 512 - (offset & 511)).min(spool.len.saturating_sub(offset));
                packed.resize(len as usize, 0);
                spool.read(offset, &mut packed)?;
                inflate(header.compression, &packed, &mut data)?;
                out.write_all(&data[..n])?;
            } else if entry & ZERO != 0 || entry & OFFSET_MASK == 0 {
                out.write_all(&zeros[..n])?;
            } else {
                spool.read(entry & OFFSET_MASK, &mut data)?;
                out.write_all(&data[..n])?;
            }
            left -= n as u64;
        }
    }
    if left > 0 {
        return Err(corrupt(
            "the L1 table ends before the virtual disk does".into(),
        ));
    }
    Ok(())
}

/// Decompresses one cluster: exactly `out.len()` bytes, as QEMU requires.
fn inflate(compression: Compression, packed: &[u8], out: &mut [u8]) -> io::Result<()> {
    let filled = match compression {
        // QEMU writes raw deflate streams (no zlib header).
        Compression::Zlib => flate2::read::DeflateDecoder::new(packed).read_exact(out),
        Compression::Zstd => zstd::stream::read::Decoder::with_buffer(packed)?.read_exact(out),
    };
    filled.map_err(|e| corrupt(format!("a compressed cluster does not decompress: {e}")))
}
