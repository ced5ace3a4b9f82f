//! The whole netboot loop in real QEMU (TCG unless a probe proves KVM usable) against the
//! real server, booting the real artefact from `out/netboot` (built by `image/build.sh`):
//!
//! (a) BIOS: PXE → registered with exactly the SMBIOS serial and UUID, MAC and disk serial
//!     QEMU was given → OS assigned through the API → the agent kexecs into iPXE → that
//!     machine requests hookos.ipxe (on its timeline; without Tinkerbell nothing installs);
//! (b) UEFI (OVMF): the same loop through the reboot path;
//! (c) an installed machine's next PXE boot is sent to its disk (`exit 1`).
//!
//! Pass/fail is judged from the server's API; QEMU is killed by its PID when done. Serial
//! consoles are kept in tests/artifacts/ for a failing run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dragonfly_e2e::{Server, wait_for as eventually, workspace};
use serde_json::{Value, json};

/// Generous: TCG on a loaded 2-core CI machine.
const BOOT: Duration = Duration::from_secs(240);

struct Vm {
    child: tokio::process::Child,
    serial: PathBuf,
    stderr: PathBuf,
    accel: &'static str,
    _dir: tempfile::TempDir,
}

impl Vm {
    /// The serial console's last lines, and QEMU's own complaints and exit status when it
    /// ended (an empty console otherwise says nothing about why).
    fn console_tail(&mut self) -> String {
        let text = std::fs::read_to_string(&self.serial).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut out = lines[lines.len().saturating_sub(40)..].join("\n");
        let status = match self.child.try_wait() {
            Ok(Some(s)) => format!("exited: {s}"),
            Ok(None) => "still running".to_string(),
            Err(e) => format!("unknown: {e}"),
        };
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        out.push_str(&format!(
            "\n[qemu -accel {}: {status}; stderr: {}]",
            self.accel,
            stderr.trim()
        ));
        out
    }

    async fn kill(mut self, keep_as: &str) {
        let _ = self.child.kill().await;
        let dest = workspace().join("tests/artifacts");
        let _ = std::fs::create_dir_all(&dest);
        let _ = std::fs::copy(&self.serial, dest.join(format!("{keep_as}.serial.log")));
    }
}

/// KVM only when the CPU offers virtualisation (a `vmx` or `svm` flag) and a probe VM really
/// runs: on machines where `/dev/kvm` exists without them, a KVM guest starts but never prints
/// anything, and the probe alone cannot tell. `DRAGONFLY_E2E_ACCEL=tcg|kvm` overrides.
fn accel() -> (&'static str, &'static str) {
    match std::env::var("DRAGONFLY_E2E_ACCEL").as_deref() {
        Ok("tcg") => return ("tcg", "max"),
        Ok("kvm") => return ("kvm", "host"),
        _ => {}
    }
    let cpu_flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let virtualisation = cpu_flags
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !virtualisation {
        return ("tcg", "max");
    }
    let ok = std::process::Command::new("timeout")
        .args([
            "3",
            "qemu-system-x86_64",
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-machine",
            "q35",
            "-m",
            "64",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.code() == Some(124))
        .unwrap_or(false);
    if ok { ("kvm", "host") } else { ("tcg", "max") }
}

struct Identity {
    mac: &'static str,
    serial: &'static str,
    uuid: &'static str,
    disk: &'static str,
}

fn boot_vm(server: &Server, id: &Identity, uefi: bool) -> Vm {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let serial = dir.path().join("serial.log");
    let stderr = dir.path().join("qemu.stderr");
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let (accel, cpu) = accel();
    let mut cmd = tokio::process::Command::new("qemu-system-x86_64");
    cmd.args([
        "-machine", "q35", "-accel", accel, "-cpu", cpu, "-smp", "1", "-m", "768",
    ]);
    if uefi {
        let vars = dir.path().join("vars.fd");
        std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars)
            .expect("OVMF (scripts/deps.sh netboot)");
        cmd.args([
            "-drive",
            "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
        ]);
        cmd.arg("-drive").arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ));
    }
    cmd.arg("-smbios")
        .arg(format!(
            "type=1,manufacturer=Dragonfly E2E,product=Test VM,serial={},uuid={}",
            id.serial, id.uuid
        ))
        .arg("-netdev")
        .arg(format!(
            "user,id=n0,bootfile=http://10.0.2.2:{port}/boot/boot.ipxe"
        ))
        .arg("-device")
        .arg(format!(
            "virtio-net-pci,netdev=n0,mac={},bootindex=1",
            id.mac
        ))
        .arg("-drive")
        .arg(format!("if=none,id=d0,format=raw,file={}", disk.display()))
        .arg("-device")
        .arg(format!(
            "virtio-blk-pci,drive=d0,serial={},bootindex=2",
            id.disk
        ))
        .args(["-display", "none", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .expect("qemu-system-x86_64 (scripts/deps.sh netboot)");
    Vm {
        child,
        serial,
        stderr,
        accel,
        _dir: dir,
    }
}

async fn machine_by_mac(s: &Server, mac: &str) -> Option<Value> {
    let page: Value = s
        .client
        .get(format!("{}/api/v1/machines", s.url))
        .query(&[("q", mac)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    page["items"]
        .as_array()?
        .iter()
        .find(|m| m["boot_mac"] == mac)
        .cloned()
}

/// Waits until the machine fetched its HookOS script (the hand-over to Tinkerbell).
async fn wait_hookos(s: &Server, id: &str, vm: &mut Vm) -> Value {
    let r = eventually(BOOT, "the HookOS script served", || async {
        let m = s.machine(id).await;
        kinds(&m)
            .iter()
            .any(|e| e.contains("served hookos.ipxe"))
            .then_some(m)
    })
    .await;
    match r {
        Ok(m) => m,
        Err(e) => panic!(
            "{e}; machine: {}\nconsole:\n{}",
            s.machine(id).await,
            vm.console_tail()
        ),
    }
}

fn require_artefact() {
    let dir = workspace().join("out/netboot");
    for f in ["vmlinuz", "initramfs.zst", "ipxe.lkrn"] {
        assert!(
            dir.join(f).exists(),
            "{} missing: build the netboot image with image/build.sh",
            dir.join(f).display()
        );
    }
}

/// Registers through a real PXE boot and checks the identity is exactly QEMU's.
async fn register(s: &Server, id: &Identity, vm: &mut Vm) -> String {
    let m = match eventually(BOOT, "registration", || machine_by_mac(s, id.mac)).await {
        Ok(m) => m,
        Err(e) => panic!("{e}\nconsole:\n{}", vm.console_tail()),
    };
    assert_eq!(m["serial"], id.serial, "{m}");
    assert_eq!(m["smbios_uuid"], id.uuid, "{m}");
    assert_eq!(m["vendor"], "Dragonfly E2E", "{m}");
    let machine_id = m["id"].as_str().unwrap().to_string();
    let detail = s.machine(&machine_id).await;
    let disks: Vec<&str> = detail["disks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["serial"].as_str())
        .collect();
    assert!(disks.contains(&id.disk), "disks {disks:?}");
    let nic = detail["nics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["boot"] == true)
        .cloned();
    assert_eq!(nic.map(|n| n["mac"].clone()), Some(json!(id.mac)));
    machine_id
}

async fn assign(s: &Server, machine_id: &str, disk: &str) {
    let r = s
        .client
        .post(format!("{}/api/v1/machines/{machine_id}/assign", s.url))
        .json(&json!({"os": "debian-12", "target_disk": {"serial": disk}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

fn kinds(m: &Value) -> Vec<String> {
    m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["kind"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn bios_pxe_register_assign_kexec_hookos_then_local_disk() {
    require_artefact();
    let s = Server::start_for_vms().await;
    let id = Identity {
        mac: "52:54:00:e2:b1:05",
        serial: "E2E-BIOS-0001",
        uuid: "e2e0b105-0000-4000-8000-000000000001",
        disk: "E2E-BIOS-DISK",
    };
    let started = Instant::now();
    let mut vm = boot_vm(&s, &id, false);
    let machine_id = register(&s, &id, &mut vm).await;
    let registered = started.elapsed();
    assign(&s, &machine_id, id.disk).await;
    let m = wait_hookos(&s, &machine_id, &mut vm).await;
    println!(
        "BIOS: registered after {registered:?}, hookos after {:?}",
        started.elapsed()
    );
    let k = kinds(&m);
    assert!(
        k.iter().any(|e| e.starts_with("chainloading")),
        "the agent reported its chainload: {k:?}"
    );
    assert!(
        k.iter().any(|e| e.contains("served chain-hookos.ipxe")),
        "the second iPXE asked for its script: {k:?}"
    );
    vm.kill("bios").await;

    // (c) The installer ran and finished; the machine's next PXE boot goes to its disk.
    s.state
        .machines
        .start_install(
            &machine_id,
            dragonfly::machines::Actor::Tinkerbell,
            "test".into(),
        )
        .await
        .unwrap();
    s.state
        .machines
        .finish_install(
            &machine_id,
            dragonfly::machines::Actor::Tinkerbell,
            true,
            "test".into(),
        )
        .await
        .unwrap();
    let mut vm = boot_vm(&s, &id, false);
    let r = eventually(BOOT, "a PXE boot served local.ipxe", || async {
        let m = s.machine(&machine_id).await;
        kinds(&m)
            .iter()
            .any(|e| e.contains("served local.ipxe"))
            .then_some(())
    })
    .await;
    if let Err(e) = r {
        panic!("{e}\nconsole:\n{}", vm.console_tail());
    }
    assert_eq!(s.machine(&machine_id).await["state"], "installed");
    vm.kill("bios-installed").await;
}

#[tokio::test]
async fn uefi_pxe_register_assign_reboot_hookos() {
    require_artefact();
    let s = Server::start_for_vms().await;
    let id = Identity {
        mac: "52:54:00:e2:ef:01",
        serial: "E2E-UEFI-0001",
        uuid: "e2e0ef01-0000-4000-8000-000000000001",
        disk: "E2E-UEFI-DISK",
    };
    let started = Instant::now();
    let mut vm = boot_vm(&s, &id, true);
    let machine_id = register(&s, &id, &mut vm).await;
    let registered = started.elapsed();
    assign(&s, &machine_id, id.disk).await;
    let m = wait_hookos(&s, &machine_id, &mut vm).await;
    println!(
        "UEFI: registered after {registered:?}, hookos after {:?}",
        started.elapsed()
    );
    let k = kinds(&m);
    assert!(k.iter().any(|e| e.starts_with("chainloading")), "{k:?}");
    vm.kill("uefi").await;
}
