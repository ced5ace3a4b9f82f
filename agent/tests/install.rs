//! The native install's write path against a real HTTP server on loopback and a disk that is
//! a file: every format streams to the disk byte for byte, a wrong checksum leaves the disk's
//! first MiB as it was, a dropped connection is resumed with a Range request, the seed lands
//! at the end of the disk where cloud-init and growpart expect it. The results are checked
//! with independent tools (sfdisk for the partition table, mtools for the seed's FAT), not
//! with the crates that wrote them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dragonfly_agent::install::{self, InstallError, Resuming};
use dragonfly_proto::{Disk, DiskSelector, ImageFormat, ImageSource, InstallPlan, Seed, Transport};
use sha2::{Digest, Sha256};

use crate::util::TempDir;

const IMAGE: u64 = 8 << 20;
const DISK: u64 = 64 << 20;

/// An 8 MiB GPT disk image made by sfdisk, its partitions filled with incompressible and
/// compressible data.
fn image(dir: &TempDir) -> Vec<u8> {
    let path = dir.path().join("image.raw");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(IMAGE)
        .unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .arg("--quiet")
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk (scripts/deps.sh)");
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: gpt\n,4MiB,L\n,,L\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let mut bytes = std::fs::read(&path).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in &mut bytes[1 << 20..5 << 20] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    for (i, b) in bytes[5 << 20..7 << 20].iter_mut().enumerate() {
        *b = b"dragonfly "[i % 10];
    }
    bytes
}

fn sha256(b: &[u8]) -> String {
    install::hex(&Sha256::digest(b))
}

fn encode(raw: &[u8], format: ImageFormat) -> Vec<u8> {
    match format {
        ImageFormat::Raw => raw.to_vec(),
        ImageFormat::RawGz => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(raw).unwrap();
            e.finish().unwrap()
        }
        ImageFormat::RawZst => {
            ruzstd::encoding::compress_to_vec(raw, ruzstd::encoding::CompressionLevel::Fastest)
        }
        ImageFormat::RawXz => {
            let mut out = Vec::new();
            lzma_rs::xz_compress(&mut BufReader::new(raw), &mut out).unwrap();
            out
        }
        ImageFormat::Qcow2 => qcow2(raw, &["-c"]),
    }
}

/// `raw` as a qcow2 file made by QEMU's own qemu-img, with its `options`.
fn qcow2(raw: &[u8], options: &[&str]) -> Vec<u8> {
    let dir = TempDir::new("qcow2");
    let from = dir.path().join("in.raw");
    let to = dir.path().join("out.qcow2");
    std::fs::write(&from, raw).unwrap();
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .args(options)
        .arg(&from)
        .arg(&to)
        .output()
        .expect("qemu-img (scripts/deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&to).unwrap()
}

/// A file server on loopback with Range support; it can drop the first connections after
/// some bytes of body.
struct FileServer {
    url: String,
    ranges: Arc<AtomicUsize>,
}

impl FileServer {
    fn start(body: Vec<u8>, drops: usize, drop_after: usize) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/image", listener.local_addr().unwrap());
        let body = Arc::new(body);
        let ranges = Arc::new(AtomicUsize::new(0));
        let seen = ranges.clone();
        std::thread::spawn(move || {
            let mut served = 0;
            for conn in listener.incoming().take(64) {
                let Ok(conn) = conn else { continue };
                served += 1;
                let cut = (served <= drops).then_some(drop_after);
                let _ = serve_file(conn, &body, cut, &seen);
            }
        });
        FileServer { url, ranges }
    }
}

fn serve_file(
    mut conn: TcpStream,
    body: &[u8],
    cut: Option<usize>,
    ranges: &AtomicUsize,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut start = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(r) = lower.strip_prefix("range: bytes=") {
            start = r.trim().trim_end_matches('-').parse().unwrap();
            ranges.fetch_add(1, Ordering::Relaxed);
        }
    }
    let part = &body[start..];
    let head = if start == 0 {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n",
            body.len()
        )
    } else {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n",
            part.len(),
            body.len() - 1,
            body.len()
        )
    };
    conn.write_all(head.as_bytes())?;
    match cut {
        Some(n) => conn.write_all(&part[..n.min(part.len())])?,
        None => conn.write_all(part)?,
    }
    Ok(())
}

/// A 64 MiB disk whose first MiB holds a pattern (to see whether it was touched).
fn disk(dir: &TempDir) -> PathBuf {
    let path = dir.path().join("disk");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&[0xAB; 1 << 20]).unwrap();
    f.set_len(DISK).unwrap();
    path
}

fn seed() -> Seed {
    Seed {
        instance_id: "dragonfly-test-1".into(),
        hostname: "node-7".into(),
        user_data: "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAA test\n".into(),
        boot_mac: Some("52:54:00:12:34:56".into()),
    }
}

fn write(
    url: &str,
    format: ImageFormat,
    sha: &str,
    disk: &Path,
) -> Result<install::Written, InstallError> {
    let mut source = Resuming::open(ureq::Agent::new_with_defaults(), url, Box::new(|_| {}))
        .map_err(|e| InstallError::Download(e.to_string()))?
        .with_pause(Duration::from_millis(10));
    let mut reports = 0;
    let image = ImageSource {
        url: url.to_string(),
        format,
        sha256: Some(sha.to_string()),
        sha512: None,
        size: Some(IMAGE),
    };
    let file_len = source.length();
    install::write_image(&mut source, &image, file_len, disk, DISK, &mut |_| {
        reports += 1
    })
}

fn sfdisk_json(disk: &Path) -> serde_json::Value {
    let out = Command::new("sfdisk")
        .arg("--json")
        .arg(disk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_format_lands_byte_for_byte_with_a_seed_at_the_end() {
    let dir = TempDir::new("install-formats");
    let raw = image(&dir);
    for format in [
        ImageFormat::Raw,
        ImageFormat::RawGz,
        ImageFormat::RawZst,
        ImageFormat::RawXz,
        ImageFormat::Qcow2,
    ] {
        let file = encode(&raw, format);
        let server = FileServer::start(file.clone(), 0, 0);
        let disk = disk(&dir);
        let w = write(&server.url, format, &sha256(&file), &disk).unwrap();
        assert_eq!(w.written, IMAGE, "{format:?}");
        assert_eq!(w.downloaded, file.len() as u64, "{format:?}");
        let written = std::fs::read(&disk).unwrap();
        assert!(
            written[..IMAGE as usize] == raw[..],
            "{format:?}: the image differs on disk"
        );

        let at = install::add_seed(&disk, &seed()).unwrap();
        // sfdisk: the table is valid, the backup header moved to the disk's end, the seed
        // is the last partition, aligned, right before it.
        let verify = Command::new("sfdisk")
            .arg("--verify")
            .arg(&disk)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&verify.stdout).to_string()
            + &String::from_utf8_lossy(&verify.stderr);
        assert!(
            verify.status.success() && !said.contains("arning"),
            "{said}"
        );
        let table = sfdisk_json(&disk);
        let t = &table["partitiontable"];
        assert_eq!(t["lastlba"], DISK / 512 - 34, "{table}");
        let parts = t["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 3, "{table}");
        let seed_part = &parts[2];
        assert_eq!(seed_part["start"].as_u64().unwrap() * 512, at);
        assert_eq!(seed_part["start"].as_u64().unwrap() % 2048, 0);
        assert_eq!(seed_part["size"], 32768);
        assert!(seed_part["start"].as_u64().unwrap() + 32768 <= DISK / 512 - 34 + 1);
        // The image's own partitions are untouched.
        assert_eq!(parts[0]["start"], 2048);
        // mtools reads the seed: label CIDATA, the three files cloud-init looks for.
        let fat = format!("{}@@{at}", disk.display());
        let label = Command::new("mlabel")
            .args(["-s", "-i", &fat, "::"])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&label.stdout).contains("CIDATA"),
            "{}",
            String::from_utf8_lossy(&label.stdout)
        );
        let user_data = Command::new("mtype")
            .args(["-i", &fat, "::user-data"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&user_data.stdout), seed().user_data);
        let meta = Command::new("mtype")
            .args(["-i", &fat, "::meta-data"])
            .output()
            .unwrap();
        let meta = String::from_utf8_lossy(&meta.stdout).to_string();
        assert!(meta.contains("instance-id: \"dragonfly-test-1\""), "{meta}");
        assert!(meta.contains("local-hostname: \"node-7\""), "{meta}");
        let net = Command::new("mtype")
            .args(["-i", &fat, "::network-config"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&net.stdout).contains("macaddress: \"52:54:00:12:34:56\""));
    }
}

#[test]
fn a_wrong_checksum_fails_and_leaves_the_first_mib_as_it_was() {
    let dir = TempDir::new("install-checksum");
    let raw = image(&dir);
    let file = encode(&raw, ImageFormat::RawZst);
    let server = FileServer::start(file, 0, 0);
    let disk = disk(&dir);
    let wrong = "0".repeat(64);
    let err = write(&server.url, ImageFormat::RawZst, &wrong, &disk).unwrap_err();
    assert!(matches!(err, InstallError::Checksum { .. }), "{err}");
    assert!(
        err.to_string().contains("first MiB was left as it was"),
        "{err}"
    );
    let after = std::fs::read(&disk).unwrap();
    assert!(
        after[..1 << 20].iter().all(|b| *b == 0xAB),
        "the first MiB was written"
    );
}

#[test]
fn a_dropped_connection_is_resumed_with_a_range_request() {
    let dir = TempDir::new("install-resume");
    let raw = image(&dir);
    let file = encode(&raw, ImageFormat::RawGz);
    // The first two connections break after 1 MiB each.
    let server = FileServer::start(file.clone(), 2, 1 << 20);
    let disk = disk(&dir);
    let w = write(&server.url, ImageFormat::RawGz, &sha256(&file), &disk).unwrap();
    assert_eq!(w.written, IMAGE);
    assert_eq!(server.ranges.load(Ordering::Relaxed), 2, "two resumes");
    assert!(std::fs::read(&disk).unwrap()[..IMAGE as usize] == raw[..]);
}

#[test]
fn a_server_that_keeps_dropping_fails_the_install_with_the_reason() {
    let dir = TempDir::new("install-drops");
    let raw = image(&dir);
    let server = FileServer::start(raw.clone(), 64, 1000);
    let disk = disk(&dir);
    let err = write(&server.url, ImageFormat::Raw, &sha256(&raw), &disk).unwrap_err();
    assert!(err.to_string().contains("gave up after"), "{err}");
    assert!(
        std::fs::read(&disk).unwrap()[..1 << 20]
            .iter()
            .all(|b| *b == 0xAB)
    );
}

fn disk_entry(name: &str, serial: &str, size: u64) -> Disk {
    Disk {
        name: name.into(),
        size_bytes: size,
        model: None,
        serial: Some(serial.into()),
        wwn: Some("0x5000c500a1b2c3d4".into()),
        rotational: Some(false),
        transport: Some(Transport::Virtio),
    }
}

fn plan(disk: DiskSelector, size: Option<u64>, format: ImageFormat) -> InstallPlan {
    InstallPlan {
        image: ImageSource {
            url: "http://127.0.0.1:1/x".into(),
            format,
            sha256: Some("0".repeat(64)),
            sha512: None,
            size,
        },
        disk,
        seed: seed(),
    }
}

#[test]
fn the_disk_is_chosen_by_serial_or_wwn_and_checked_before_writing() {
    let disks = [
        disk_entry("vda", "OS-DISK", 4 << 30),
        disk_entry("vdb", "DATA", 1 << 40),
    ];
    let by_serial = plan(
        DiskSelector::Serial("OS-DISK".into()),
        Some(1 << 30),
        ImageFormat::Raw,
    );
    assert_eq!(install::preflight(&by_serial, &disks).unwrap().name, "vda");
    let by_wwn = plan(
        DiskSelector::Wwn("0x5000C500A1B2C3D4".into()),
        None,
        ImageFormat::RawZst,
    );
    assert_eq!(install::preflight(&by_wwn, &disks).unwrap().name, "vda");

    let missing = plan(
        DiskSelector::Serial("GONE-42".into()),
        None,
        ImageFormat::Raw,
    );
    let e = install::preflight(&missing, &disks)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no disk with serial GONE-42"), "{e}");
    assert!(e.contains("vda serial OS-DISK"), "{e}");

    let big = plan(
        DiskSelector::Serial("OS-DISK".into()),
        Some(4 << 30),
        ImageFormat::Raw,
    );
    let e = install::preflight(&big, &disks).unwrap_err().to_string();
    assert!(
        e.contains("disk vda holds 4294967296 bytes; the image needs 4294967296"),
        "{e}"
    );
}

#[test]
fn an_image_larger_than_the_disk_stops_before_the_seed_area() {
    let dir = TempDir::new("install-overflow");
    let raw = vec![7u8; 70 << 20];
    let server = FileServer::start(raw.clone(), 0, 0);
    let disk = disk(&dir);
    let err = write(&server.url, ImageFormat::Raw, &sha256(&raw), &disk).unwrap_err();
    assert!(matches!(err, InstallError::Overflow { .. }), "{err}");
    let _ = Read::bytes(std::io::empty()).count();
}

/// The first MiB of the test disk still holds its pattern.
fn first_mib_untouched(disk: &Path) -> bool {
    std::fs::read(disk).unwrap()[..1 << 20]
        .iter()
        .all(|b| *b == 0xAB)
}

#[test]
fn qcow2_images_of_every_kind_qemu_writes_convert_byte_for_byte() {
    let dir = TempDir::new("install-qcow2");
    let raw = image(&dir);
    // Uncompressed with small clusters (many L2 tables), version 2, zlib and zstd
    // compressed clusters, and large clusters.
    for options in [
        &["-o", "cluster_size=4096"][..],
        &["-o", "compat=0.10"][..],
        &["-c", "-o", "compression_type=zlib"][..],
        &["-c", "-o", "compression_type=zstd"][..],
        &["-o", "cluster_size=2M"][..],
    ] {
        let file = qcow2(&raw, options);
        // The first connection drops after 1 MiB: the spool resumes like any download.
        let server = FileServer::start(file.clone(), 1, 1 << 20);
        let disk = disk(&dir);
        let w = write(&server.url, ImageFormat::Qcow2, &sha256(&file), &disk)
            .unwrap_or_else(|e| panic!("{options:?}: {e}"));
        assert_eq!(w.written, IMAGE, "{options:?}");
        assert_eq!(w.downloaded, file.len() as u64, "{options:?}");
        assert_eq!(server.ranges.load(Ordering::Relaxed), 1, "{options:?}");
        let written = std::fs::read(&disk).unwrap();
        assert!(
            written[..IMAGE as usize] == raw[..],
            "{options:?}: the image differs on disk"
        );
    }
}

#[test]
fn a_qcow2_with_a_wrong_checksum_leaves_the_first_mib_as_it_was() {
    let dir = TempDir::new("install-qcow2-sum");
    let file = qcow2(&image(&dir), &["-c"]);
    let server = FileServer::start(file, 0, 0);
    let disk = disk(&dir);
    let err = write(&server.url, ImageFormat::Qcow2, &"0".repeat(64), &disk).unwrap_err();
    assert!(matches!(err, InstallError::Checksum { .. }), "{err}");
    assert!(first_mib_untouched(&disk));
}

#[test]
fn a_qcow2_that_cannot_be_converted_here_is_refused_before_writing() {
    let dir = TempDir::new("install-qcow2-refused");
    // A virtual disk that, with its spool, does not fit the 64 MiB disk: refused from the
    // header and the download's length, before anything is written.
    let big = qcow2(&vec![0u8; 60 << 20], &[]);
    let server = FileServer::start(big.clone(), 0, 0);
    let disk = disk(&dir);
    let err = write(&server.url, ImageFormat::Qcow2, &sha256(&big), &disk).unwrap_err();
    assert!(matches!(err, InstallError::TooSmall { .. }), "{err}");
    assert!(first_mib_untouched(&disk));

    // A backing file (an overlay) is refused by name.
    let base = dir.path().join("base.qcow2");
    std::fs::write(&base, qcow2(&image(&dir), &[])).unwrap();
    let top = dir.path().join("top.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&base)
        .arg(&top)
        .output()
        .unwrap();
    assert!(made.status.success());
    let overlay = std::fs::read(&top).unwrap();
    let server = FileServer::start(overlay.clone(), 0, 0);
    let err = write(&server.url, ImageFormat::Qcow2, &sha256(&overlay), &disk).unwrap_err();
    assert!(err.to_string().contains("backing file"), "{err}");
    assert!(first_mib_untouched(&disk));

    // Not a qcow2 at all.
    let raw = image(&dir);
    let server = FileServer::start(raw.clone(), 0, 0);
    let err = write(&server.url, ImageFormat::Qcow2, &sha256(&raw), &disk).unwrap_err();
    assert!(err.to_string().contains("not a qcow2 file"), "{err}");
    assert!(first_mib_untouched(&disk));
}

#[test]
fn a_sha512_alone_verifies_the_image_and_a_wrong_one_fails() {
    let dir = TempDir::new("install-sha512");
    let raw = image(&dir);
    let file = encode(&raw, ImageFormat::RawGz);
    let sum = install::hex(&sha2::Sha512::digest(&file));
    for (sha512, ok) in [(sum.clone(), true), ("1".repeat(128), false)] {
        let server = FileServer::start(file.clone(), 0, 0);
        let disk = disk(&dir);
        let mut source = Resuming::open(
            ureq::Agent::new_with_defaults(),
            &server.url,
            Box::new(|_| {}),
        )
        .unwrap();
        let image = ImageSource {
            url: server.url.clone(),
            format: ImageFormat::RawGz,
            sha256: None,
            sha512: Some(sha512),
            size: Some(IMAGE),
        };
        let r = install::write_image(&mut source, &image, None, &disk, DISK, &mut |_| {});
        if ok {
            assert_eq!(r.unwrap().checksum, format!("SHA-512 {sum}"));
            assert!(std::fs::read(&disk).unwrap()[..IMAGE as usize] == raw[..]);
        } else {
            let err = r.unwrap_err();
            assert!(err.to_string().contains("expected SHA-512 1111"), "{err}");
            assert!(first_mib_untouched(&disk));
        }
    }
    // No checksum at all: refused before the download.
    let none = plan(
        DiskSelector::Serial("OS-DISK".into()),
        None,
        ImageFormat::Raw,
    );
    let none = InstallPlan {
        image: ImageSource {
            sha256: None,
            ..none.image
        },
        ..none
    };
    let disks = [disk_entry("vda", "OS-DISK", 4 << 30)];
    let e = install::preflight(&none, &disks).unwrap_err().to_string();
    assert!(e.contains("no SHA-256 or SHA-512"), "{e}");
}

#[test]
fn every_resume_is_counted_for_the_report_even_after_progress_forgave_it() {
    // 20 MiB; the first two connections break after 9 MiB each, more than the progress
    // that forgives earlier failures (so the give-up count starts again each time).
    let body: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    let server = FileServer::start(body.clone(), 2, 9 << 20);
    let mut source = Resuming::open(
        ureq::Agent::new_with_defaults(),
        &server.url,
        Box::new(|_| {}),
    )
    .unwrap()
    .with_pause(Duration::from_millis(10));
    let mut got = Vec::new();
    source.read_to_end(&mut got).unwrap();
    assert!(got == body);
    assert_eq!(source.resumes(), 2);
}
