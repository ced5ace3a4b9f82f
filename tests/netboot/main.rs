//! The whole netboot loop in real QEMU (TCG unless a probe proves KVM usable) against the
//! real server, booting the real artefact from `out/netboot` (built by `image/build.sh`; or
//! `DRAGONFLY_NETBOOT_DIR`, e.g. the Alpine flavour in `out/netboot-alpine`):
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

use std::time::{Duration, Instant};

use dragonfly_e2e::qemu::{Identity, Vm, machine_by_mac};
use dragonfly_e2e::{Server, wait_for as eventually};
use serde_json::{Value, json};

/// Generous: TCG on a loaded 2-core CI machine.
const BOOT: Duration = Duration::from_secs(240);

fn boot_vm(server: &Server, id: &Identity, uefi: bool) -> Vm {
    Vm::boot(server, id, uefi, 1 << 30, 768)
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
    let dir = dragonfly_testkit::netboot_dir();
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
