//! The native install in real QEMU, real all the way: a VM PXE-boots the Dragonfly image,
//! registers, gets an OS assigned (BIOS: through the API; UEFI: by an assignment rule at
//! registration), and its agent writes a real Debian 12
//! cloud image (built from Debian packages by `scripts/os-image.sh`; BIOS: raw.zst served by
//! the server from its image directory; UEFI: qcow2 from a mirror that drops the first
//! connection mid-file) to the VM's disk with a cloud-init seed; the VM reboots, its
//! firmware is sent to the disk, GRUB boots Debian, cloud-init sets the assigned hostname,
//! installs the SSH key and phones home, and the machine is `installed`. BIOS and UEFI.
//!
//! Pass/fail is judged from the server's API and the VM's serial console; timings are
//! printed (assignment → written → installed) for BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dragonfly::config::Installer;
use dragonfly_e2e::flaky::FlakyServer;
use dragonfly_e2e::qemu::{Identity, Vm, machine_by_mac};
use dragonfly_e2e::{Server, wait_for, workspace};
use serde_json::{Value, json};

/// PXE + write + reboot + first boot under TCG on a loaded 2-core machine.
const INSTALL: Duration = Duration::from_secs(900);

/// At most two VMs at once: each has one vCPU, the machine two cores.
static VMS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRyYWdvbmZseS1lMmUtdGVzdC1rZXktMDAwMDAwMDAh dragonfly-e2e@lab";

/// The directory where scripts/os-image.sh put its images (recorded in out/os-image.path).
fn os_image_dir() -> PathBuf {
    let recorded = workspace().join("out/os-image.path");
    let dir = std::fs::read_to_string(&recorded).unwrap_or_else(|_| {
        panic!(
            "{} missing: build the OS image with scripts/os-image.sh",
            recorded.display()
        )
    });
    PathBuf::from(dir.trim())
}

fn sha_of(file: &Path) -> String {
    let mut name = file.as_os_str().to_owned();
    name.push(".sha256");
    std::fs::read_to_string(name).unwrap().trim().to_string()
}

/// The raw.zst OS image, its SHA-256 and its size once written.
fn os_image() -> (PathBuf, String, u64) {
    let dir = os_image_dir();
    let sha = sha_of(&dir.join("debian-12.raw.zst"));
    let size = std::fs::read_to_string(dir.join("size_bytes")).unwrap();
    (
        dir.join("debian-12.raw.zst"),
        sha,
        size.trim().parse().unwrap(),
    )
}

/// A boot directory with the netboot artefact and the OS image under images/.
fn boot_dir(image: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let netboot = workspace().join("out/netboot");
    for f in ["vmlinuz", "initramfs.zst", "ipxe.lkrn", "manifest.json"] {
        assert!(
            netboot.join(f).exists(),
            "build the netboot image with image/build.sh"
        );
        std::os::unix::fs::symlink(netboot.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::create_dir(dir.path().join("images")).unwrap();
    std::os::unix::fs::symlink(image, dir.path().join("images/debian-12.raw.zst")).unwrap();
    dir
}

async fn server() -> (Server, tempfile::TempDir) {
    let (image, sha, size) = os_image();
    let boot = boot_dir(&image);
    let path = boot.path().to_path_buf();
    let s = Server::start_with(
        move |c| {
            c.boot_dir = path;
            c.installer = Some(Installer::Native);
            c.ssh_keys = vec![KEY.to_string()];
        },
        |addr| format!("http://10.0.2.2:{}", addr.port()),
    )
    .await;
    let r = s
        .post(
            "/api/v1/os",
            json!({
                "slug": "lab-debian-12", "name": "Debian 12 (lab build)", "family": "debian",
                "version": "12", "image_url": "/images/debian-12.raw.zst", "format": "raw.zst",
                "sha256": sha, "size_bytes": size,
                "user_data": "#cloud-config\nruncmd:\n  - [sh, -c, 'echo dragonfly-first-boot-done > /dev/ttyS0']\n"
            }),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    (s, boot)
}

fn event_time(m: &Value, kind: &str) -> Option<String> {
    m["events"]
        .as_array()?
        .iter()
        .find(|e| e["kind"] == kind)
        .map(|e| e["at"].as_str().unwrap_or_default().to_string())
}

/// How the OS gets assigned.
#[derive(PartialEq)]
enum By {
    /// An operator, through the API, after registration (with a hostname set first).
    Api,
    /// An assignment rule matching the VM's MAC, at registration. The rule's OS is the
    /// same disk as a qcow2 image, from a mirror that drops the first connection mid-file.
    Rule,
}

async fn install(name: &str, id: Identity, uefi: bool, by: By) {
    let _slot = VMS.acquire().await.unwrap();
    let (s, _boot) = server().await;
    let mut mirror = None;
    if by == By::Rule {
        let qcow2 = os_image_dir().join("debian-12.qcow2");
        let flaky = FlakyServer::start(qcow2.clone(), 1, 64 << 20).await;
        let (_, _, size) = os_image();
        let r = s
            .post(
                "/api/v1/os",
                json!({
                    "slug": "lab-debian-12-qcow2", "name": "Debian 12 (lab build, qcow2)",
                    "family": "debian", "version": "12",
                    "image_url": format!("http://10.0.2.2:{}/image", flaky.port),
                    "format": "qcow2", "sha256": sha_of(&qcow2), "size_bytes": size,
                    "user_data": "#cloud-config\nruncmd:\n  - [sh, -c, 'echo dragonfly-first-boot-done > /dev/ttyS0']\n"
                }),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        mirror = Some(flaky);
        let prefix = &id.mac[..14];
        let r = s
            .post(
                "/api/v1/rules",
                json!({"name": "lab VMs", "mac_prefix": prefix, "os": "lab-debian-12-qcow2",
                       "disk_rule": "smallest"}),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let started = Instant::now();
    // A 4 GiB disk: the 1 GiB image, room for growpart, the seed at the end.
    let mut vm = Vm::boot(&s, &id, uefi, 4 << 30, 1024);
    let m = match wait_for(INSTALL, "registration", || machine_by_mac(&s, id.mac)).await {
        Ok(m) => m,
        Err(e) => panic!("{e}\nconsole:\n{}", vm.console_tail()),
    };
    let machine = m["id"].as_str().unwrap().to_string();
    let registered = started.elapsed();
    let hostname = match by {
        By::Api => {
            let hostname = format!("{name}-node");
            let r = s
                .patch(
                    &format!("/api/v1/machines/{machine}"),
                    json!({"hostname": hostname}),
                )
                .await;
            assert_eq!(r.status(), 200);
            let r = s
                .post(
                    &format!("/api/v1/machines/{machine}/assign"),
                    json!({"os": "lab-debian-12", "target_disk": {"serial": id.disk}}),
                )
                .await;
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            hostname
        }
        By::Rule => {
            // Assigned in the registration itself, on the only disk; the machine's default
            // hostname comes from its boot MAC.
            assert_eq!(m["state"], "assigned", "{m}");
            assert_eq!(m["target_disk"], json!({"serial": id.disk}));
            let events = s.machine(&machine).await["events"].to_string();
            assert!(
                events.contains("rule 'lab VMs' assigned lab-debian-12-qcow2"),
                "{events}"
            );
            format!("node-{}", id.mac.replace(':', ""))
        }
    };
    let assigned = started.elapsed();

    // Polled by hand (not `wait_for`) to note when the image was written.
    let mut written = None;
    let deadline = Instant::now() + INSTALL;
    let m = loop {
        let m = s.machine(&machine).await;
        if written.is_none() && m["written_at"].is_string() {
            written = Some(started.elapsed());
        }
        if matches!(m["state"].as_str(), Some("installed" | "failed")) {
            break m;
        }
        if Instant::now() > deadline {
            panic!(
                "not installed after {INSTALL:?}; machine: {m}\nconsole:\n{}",
                vm.console_tail()
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let installed = started.elapsed();
    assert_eq!(
        m["state"],
        "installed",
        "{m}\nconsole:\n{}",
        vm.console_tail()
    );
    assert!(event_time(&m, "install_written").is_some(), "{m}");
    if let Some(mirror) = mirror {
        // The mirror cut the first connection at 64 MiB: the agent resumed with a Range
        // request and said so.
        assert_eq!(mirror.resumes.load(Ordering::Relaxed), 1);
        let written = m["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "install_written")
            .unwrap();
        assert!(
            written["message"]
                .as_str()
                .unwrap()
                .contains("download resumed 1 times"),
            "{written}"
        );
    }
    // The phone-home came from the installed system, with the hostname it was given.
    let success = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "install_succeeded")
        .unwrap();
    assert_eq!(success["actor"], "installed_os");
    assert!(
        success["message"]
            .as_str()
            .unwrap()
            .contains(&format!("as {hostname}")),
        "{success}"
    );
    // The serial console: Debian booted from the disk, cloud-init ran the OS's own
    // cloud-config and installed the key for the image's default user.
    let console = vm.console();
    assert!(
        console.contains("dragonfly-first-boot-done"),
        "runcmd did not run"
    );
    assert!(
        console.contains("Authorized keys from /home/debian/.ssh/authorized_keys"),
        "cloud-init printed no authorized keys"
    );
    assert!(
        console.contains("dragonfly-e2e@lab"),
        "the key is not the one configured"
    );
    let written = written.unwrap_or(installed);
    println!(
        "{name}: registered {:.0} s, assigned {:.0} s, written {:.0} s, installed {:.0} s \
         (assignment → written {:.0} s, written → installed {:.0} s)",
        registered.as_secs_f64(),
        assigned.as_secs_f64(),
        written.as_secs_f64(),
        installed.as_secs_f64(),
        (written - assigned).as_secs_f64(),
        (installed - written).as_secs_f64()
    );
    vm.kill(&format!("install-{name}")).await;
}

#[tokio::test]
async fn bios_pxe_to_an_installed_debian_that_phones_home() {
    install(
        "bios",
        Identity {
            mac: "52:54:00:e2:1b:01",
            serial: "E2E-INSTALL-BIOS",
            uuid: "e2e01b01-0000-4000-8000-000000000001",
            disk: "E2E-INST-BIOS-DISK",
        },
        false,
        By::Api,
    )
    .await;
}

#[tokio::test]
async fn uefi_pxe_to_an_installed_debian_assigned_by_a_rule() {
    install(
        "uefi",
        Identity {
            mac: "52:54:00:e2:1e:01",
            serial: "E2E-INSTALL-UEFI",
            uuid: "e2e01e01-0000-4000-8000-000000000001",
            disk: "E2E-INST-UEFI-DISK",
        },
        true,
        By::Rule,
    )
    .await;
}

async fn state_of(s: &Server, machine: &str, wanted: &str) -> Value {
    let deadline = Instant::now() + INSTALL;
    loop {
        let m = s.machine(machine).await;
        if m["state"] == wanted || Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The failures an operator must be told about, in a real VM: a disk too small is refused
/// before anything is written; a wrong checksum fails after the download with the disk's
/// first MiB as it was (zeros here); the agent stays in the Dragonfly image, awaiting the
/// operator, and takes the next assignment; a target disk that is gone (swapped while the
/// machine was off) fails with the serial wanted and the disks found.
#[tokio::test]
async fn a_too_small_disk_a_wrong_checksum_and_a_missing_disk_fail_with_the_reason() {
    let _slot = VMS.acquire().await.unwrap();
    let (s, _boot) = server().await;
    let (_, sha, _) = os_image();
    for (slug, sum, size) in [
        ("too-big", sha.clone(), 4u64 << 30),
        ("bad-sum", "0".repeat(64), 1u64 << 30),
    ] {
        let r = s
            .post(
                "/api/v1/os",
                json!({"slug": slug, "name": slug, "family": "debian", "version": "12",
                       "image_url": "/images/debian-12.raw.zst", "format": "raw.zst",
                       "sha256": sum, "size_bytes": size}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let id = Identity {
        mac: "52:54:00:e2:fa:01",
        serial: "E2E-INST-FAIL",
        uuid: "e2e0fa01-0000-4000-8000-000000000001",
        disk: "E2E-INST-FAIL-DISK",
    };
    // 2 GiB: room for the 1 GiB image, not for the 4 GiB one the first entry claims.
    let mut vm = Vm::boot(&s, &id, false, 2 << 30, 1024);
    let m = match wait_for(INSTALL, "registration", || machine_by_mac(&s, id.mac)).await {
        Ok(m) => m,
        Err(e) => panic!("{e}\nconsole:\n{}", vm.console_tail()),
    };
    let machine = m["id"].as_str().unwrap().to_string();

    let r = s
        .post(
            &format!("/api/v1/machines/{machine}/assign"),
            json!({"os": "too-big", "target_disk": {"serial": id.disk}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let m = state_of(&s, &machine, "failed").await;
    let why = m["status_message"].as_str().unwrap_or_default().to_string();
    assert!(
        why.contains("holds 2147483648 bytes; the image needs 4294967296"),
        "{m}\nconsole:\n{}",
        vm.console_tail()
    );

    let r = s
        .post(
            &format!("/api/v1/machines/{machine}/reimage"),
            json!({"os": "bad-sum"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let m = state_of(&s, &machine, "failed").await;
    let why = m["status_message"].as_str().unwrap_or_default().to_string();
    assert!(
        why.contains("checksum mismatch") && why.contains("first MiB was left as it was"),
        "{m}\nconsole:\n{}",
        vm.console_tail()
    );
    assert!(m["written_at"].is_null(), "{m}");
    // The whole image went to the disk but its first MiB: no partition table, no boot code.
    let mut head = vec![0u8; 1 << 20];
    std::io::Read::read_exact(&mut std::fs::File::open(vm.disk()).unwrap(), &mut head).unwrap();
    assert!(
        head.iter().all(|b| *b == 0),
        "the disk's first MiB was written"
    );
    vm.kill("install-failures").await;

    // The disk was swapped while the machine was off: the install names the serial it
    // wanted and the disks it found, and writes nothing.
    let r = s
        .post(
            &format!("/api/v1/machines/{machine}/reimage"),
            json!({"os": "lab-debian-12"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let swapped = Identity {
        disk: "E2E-INST-SWAPPED",
        ..id
    };
    let vm = Vm::boot(&s, &swapped, false, 2 << 30, 1024);
    let m = state_of(&s, &machine, "failed").await;
    let why = m["status_message"].as_str().unwrap_or_default().to_string();
    assert!(
        why.contains("no disk with serial E2E-INST-FAIL-DISK")
            && why.contains("serial E2E-INST-SWAPPED"),
        "{m}\nconsole:\n{}",
        vm.console()
    );
    vm.kill("install-failures-swapped").await;
}
