//! QEMU VMs that PXE-boot from the test server (TCG unless the CPU really offers KVM): a NIC
//! first in the boot order, a sparse disk second, SMBIOS identity as given, the serial
//! console in a file. Killed when dropped; `kill` keeps the console in tests/artifacts/.

use std::path::PathBuf;
use std::process::Stdio;

use crate::{Server, workspace};

/// What a VM is, as the server will see it (virtio-blk keeps at most 20 characters of a
/// disk serial).
pub struct Identity {
    pub mac: &'static str,
    pub serial: &'static str,
    pub uuid: &'static str,
    pub disk: &'static str,
}

/// The firmware a VM boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, PXE through the NIC's iPXE option ROM.
    Bios,
    /// OVMF, PXE (TFTP).
    Uefi,
    /// OVMF, HTTP boot.
    UefiHttp,
}

pub struct Vm {
    child: tokio::process::Child,
    disk: PathBuf,
    serial: PathBuf,
    stderr: PathBuf,
    accel: &'static str,
    _dir: tempfile::TempDir,
}

impl Vm {
    /// Starts a VM that PXE-boots from `server` (which must be reachable as 10.0.2.2), with
    /// a `disk_bytes` sparse disk and `memory_mb` of RAM: QEMU's own DHCP (user networking)
    /// names the boot script.
    pub fn boot(server: &Server, id: &Identity, uefi: bool, disk_bytes: u64, memory_mb: u32) -> Vm {
        let port = server.url.rsplit(':').next().unwrap().to_string();
        let firmware = if uefi { Firmware::Uefi } else { Firmware::Bios };
        let net = format!("user,id=n0,bootfile=http://10.0.2.2:{port}/boot/boot.ipxe");
        Vm::spawn(None, &net, id, firmware, disk_bytes, memory_mb)
    }

    /// Starts a VM in network namespace `netns` on its tap device `tap` (on a bridge): it
    /// finds its boot server through whatever DHCP servers that network has. UEFI VMs boot
    /// with the firmware's own network stack (no iPXE option ROM), as real UEFI machines do.
    pub fn boot_on_tap(
        netns: &str,
        tap: &str,
        id: &Identity,
        firmware: Firmware,
        disk_bytes: u64,
        memory_mb: u32,
    ) -> Vm {
        let net = format!("tap,id=n0,ifname={tap},script=no,downscript=no");
        Vm::spawn(Some(netns), &net, id, firmware, disk_bytes, memory_mb)
    }

    fn spawn(
        netns: Option<&str>,
        netdev: &str,
        id: &Identity,
        firmware: Firmware,
        disk_bytes: u64,
        memory_mb: u32,
    ) -> Vm {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(disk_bytes)
            .unwrap();
        let serial = dir.path().join("serial.log");
        let stderr = dir.path().join("qemu.stderr");
        let (accel, cpu) = accel();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", ns, "qemu-system-x86_64"]);
                c
            }
            None => tokio::process::Command::new("qemu-system-x86_64"),
        };
        cmd.args(["-machine", "q35", "-accel", accel, "-cpu", cpu, "-smp", "1"])
            .arg("-m")
            .arg(memory_mb.to_string());
        if firmware != Firmware::Bios {
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
        if firmware == Firmware::UefiHttp {
            // OVMF offers PXE before HTTP boot: without PXE, HTTP boot is what it does.
            cmd.args(["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n"]);
            cmd.args(["-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=n"]);
        }
        // QEMU's NIC option ROM is iPXE, which would take over from the UEFI firmware's own
        // PXE and HTTP boot: off for those VMs on a tap (user networking keeps it).
        let rom = if netns.is_some() && firmware != Firmware::Bios {
            ",romfile="
        } else {
            ""
        };
        cmd.arg("-smbios")
            .arg(format!(
                "type=1,manufacturer=Dragonfly E2E,product=Test VM,serial={},uuid={}",
                id.serial, id.uuid
            ))
            .arg("-netdev")
            .arg(netdev)
            .arg("-device")
            .arg(format!(
                "virtio-net-pci,netdev=n0,mac={},bootindex=1{rom}",
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
            disk,
            serial,
            stderr,
            accel,
            _dir: dir,
        }
    }

    /// The VM's disk image (raw, sparse).
    pub fn disk(&self) -> &std::path::Path {
        &self.disk
    }

    /// Everything the serial console printed so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    /// The serial console's last lines, and QEMU's own complaints and exit status when it
    /// ended (an empty console otherwise says nothing about why).
    pub fn console_tail(&mut self) -> String {
        let text = self.console();
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

    /// Stops the VM and keeps its console as tests/artifacts/KEEP_AS.serial.log.
    pub async fn kill(mut self, keep_as: &str) {
        let _ = self.child.kill().await;
        let dest = workspace().join("tests/artifacts");
        let _ = std::fs::create_dir_all(&dest);
        let _ = std::fs::copy(&self.serial, dest.join(format!("{keep_as}.serial.log")));
    }
}

/// The machine a VM registered as (found by its boot MAC), once it has.
pub async fn machine_by_mac(s: &Server, mac: &str) -> Option<serde_json::Value> {
    let page: serde_json::Value = s
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

/// KVM only when the CPU offers virtualisation (a `vmx` or `svm` flag) and a probe VM really
/// runs: on machines where `/dev/kvm` exists without them, a KVM guest starts but never prints
/// anything, and the probe alone cannot tell. `DRAGONFLY_E2E_ACCEL=tcg|kvm` overrides.
pub fn accel() -> (&'static str, &'static str) {
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
