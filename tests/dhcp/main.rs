//! Dragonfly's own DHCP on a real virtual network, built by this test and torn down after
//! (scripts/netns.sh): a network namespace with a bridge; dnsmasq as the site's DHCP server
//! (addresses only, no boot options) in a namespace of its own; a plain client in another;
//! the real `dragonfly` binary on the host end of a veth into the bridge; QEMU VMs on tap
//! devices on the bridge. Nothing touches the host's own interfaces, and no packet leaves
//! the namespaces (the network has no route out).
//!
//! 1. proxy mode beside dnsmasq: a plain client gets exactly one offer (dnsmasq's); PXE
//!    clients of each kind get dnsmasq's address plus Dragonfly's boot file;
//! 2. BIOS (iPXE ROM), UEFI PXE (OVMF, TFTP `snponly.efi`) and UEFI HTTP boot (OVMF, the EFI
//!    binary by URL) VMs each PXE-boot and register; their timelines show the DHCP steps;
//! 3. a machine set to "do not PXE" gets no answer from Dragonfly (dnsmasq still answers);
//! 4. full mode refuses to start while dnsmasq answers;
//! 5. full mode alone: a VM boots and registers with an address from Dragonfly's pool, and a
//!    plain client gets exactly one offer, Dragonfly's.
//!
//! Needs root (namespaces, ports 67/68/69/4011), dnsmasq and QEMU (`scripts/deps.sh netboot
//! dhcp`), and the netboot image (`image/build.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dragonfly_e2e::qemu::{Firmware, Identity, Vm};
use dragonfly_e2e::{wait_for, workspace};
use serde_json::{Value, json};

/// Generous: TCG on a loaded 2-core CI machine, three VMs at once.
const BOOT: Duration = Duration::from_secs(420);

/// The test network: scripts/netns.sh's namespaces, deleted when dropped.
struct Net {
    name: String,
    prefix: String,
    dir: tempfile::TempDir,
}

impl Net {
    fn up() -> Net {
        let pid = std::process::id() % 100_000;
        let name = format!("dfly-dhcp-{pid}");
        // A /24 this host does not route (netns.sh refuses one it does).
        let prefix = format!("10.213.{}", pid % 200 + 20);
        // Made first, so that whatever `up` managed is torn down even if it fails.
        let net = Net {
            name,
            prefix,
            dir: tempfile::tempdir().unwrap(),
        };
        script(&["up", &net.name, &net.prefix]);
        net
    }

    fn ip(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }

    fn start_dnsmasq(&self) {
        script(&["dnsmasq", &self.name, self.dir.path().to_str().unwrap()]);
    }

    fn stop_dnsmasq(&self) {
        let pid = std::fs::read_to_string(self.dir.path().join("dnsmasq.pid")).unwrap();
        let ok = std::process::Command::new("kill")
            .arg(pid.trim())
            .status()
            .unwrap()
            .success();
        assert!(ok, "dnsmasq was not running");
        std::thread::sleep(Duration::from_millis(300));
    }

    fn tap(&self, tap: &str) {
        script(&["tap", &self.name, tap]);
    }

    /// `dragonfly dhcp probe` from the plain client's namespace: (server, address,
    /// boot file) per offer.
    fn probe(&self, client: &str, mac: Option<&str>) -> Vec<(String, String, Option<String>)> {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &format!("{}-cli", self.name)])
            .arg(binary())
            .args([
                "dhcp",
                "probe",
                "--interface",
                "cli0",
                "--wait-secs",
                "4",
                "--as",
                client,
            ]);
        if let Some(m) = mac {
            cmd.args(["--mac", m]);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (
                    f[0].to_string(),
                    f[1].to_string(),
                    f.get(2).map(|s| s.to_string()),
                )
            })
            .collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        script(&["down", &self.name]);
    }
}

fn script(args: &[&str]) {
    let out = std::process::Command::new(workspace().join("scripts/netns.sh"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/netns.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `dragonfly` binary, built (if needed) by cargo as this test's own dependency is.
fn binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let ok = std::process::Command::new(cargo)
                .args(["build", "--quiet", "-p", "dragonfly", "--bin", "dragonfly"])
                .current_dir(workspace())
                .status()
                .unwrap()
                .success();
            assert!(ok, "cargo build -p dragonfly failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace().join("target"));
            target.join("debug/dragonfly")
        })
        .clone()
}

/// The real binary, listening only on the host end of the test network (machines and the
/// test reach it there), with an API token.
struct Dragonfly {
    child: std::process::Child,
    url: String,
    client: reqwest::Client,
    log: PathBuf,
}

impl Dragonfly {
    fn start(host: &str, db: &Path, args: &[&str]) -> Dragonfly {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = db.with_file_name(format!("dragonfly-{port}.log"));
        // The token first: it creates the database the server then opens.
        let token = String::from_utf8(
            std::process::Command::new(binary())
                .args(["admin", "create-token", "--name", "dhcp-e2e", "--db"])
                .arg(db)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_string();
        let child = std::process::Command::new(binary())
            .args(["--host", host, "--port", &port.to_string()])
            .arg("--db")
            .arg(db)
            .arg("--boot-dir")
            .arg(dragonfly_testkit::netboot_dir())
            .args(["--installer", "native"])
            .args(args)
            .env("RUST_LOG", "info,dragonfly::boot::dhcp=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        Dragonfly {
            child,
            url: format!("http://{host}:{port}"),
            client: reqwest::Client::builder()
                .default_headers(headers)
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            log,
        }
    }

    async fn ready(&mut self) {
        let r = wait_for(Duration::from_secs(30), "dragonfly's /healthz", || async {
            let ok = self
                .client
                .get(format!("{}/healthz", self.url))
                .send()
                .await
                .ok()?;
            ok.status().is_success().then_some(())
        })
        .await;
        if let Err(e) = r {
            panic!("{e}\n{}", self.log_text());
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn machine_by_mac(&self, mac: &str) -> Option<Value> {
        let page = self.get(&format!("/api/v1/machines?q={mac}")).await;
        let m = page["items"]
            .as_array()?
            .iter()
            .find(|m| m["boot_mac"] == mac)?
            .clone();
        Some(
            self.get(&format!("/api/v1/machines/{}", m["id"].as_str()?))
                .await,
        )
    }

    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log_text()
    }
}

impl Drop for Dragonfly {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn identity(n: u8, what: &'static str) -> Identity {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    Identity {
        mac: leak(format!("52:54:00:d4:c0:{n:02x}")),
        serial: leak(format!("E2E-DHCP-{what}")),
        uuid: leak(format!("e2e0d4c0-0000-4000-8000-0000000000{n:02x}")),
        disk: leak(format!("E2E-DHCP-DISK-{n}")),
    }
}

fn events(m: &Value) -> String {
    m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until the VM registered; returns the machine with its timeline.
async fn registered(d: &Dragonfly, id: &Identity, vm: &mut Vm, started: Instant) -> Value {
    match wait_for(BOOT, "registration", || d.machine_by_mac(id.mac)).await {
        Ok(m) => {
            println!("{}: registered after {:?}", id.serial, started.elapsed());
            assert_eq!(m["serial"], id.serial, "{m}");
            m
        }
        Err(e) => panic!(
            "{} ({}): {e}\nconsole:\n{}\nserver log:\n{}",
            id.serial,
            id.mac,
            vm.console_tail(),
            d.log_text()
        ),
    }
}

fn require() {
    assert!(
        rustix_is_root(),
        "the DHCP tests build network namespaces: run them as root"
    );
    for bin in ["/usr/sbin/dnsmasq", "/usr/bin/qemu-system-x86_64"] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: scripts/deps.sh netboot dhcp"
        );
    }
    let dir = dragonfly_testkit::netboot_dir();
    for f in ["vmlinuz", "initramfs.zst", "tftp/snponly.efi"] {
        assert!(
            dir.join(f).exists(),
            "{} missing: build the netboot image with image/build.sh",
            dir.join(f).display()
        );
    }
}

fn rustix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

#[tokio::test]
async fn proxy_beside_dnsmasq_then_full_alone_on_a_real_virtual_network() {
    require();
    let net = Net::up();
    net.start_dnsmasq();
    let db = net.dir.path().join("sqlite.db");
    let site = net.ip(2);
    let ours = net.ip(1);

    // 1. proxy beside the site's DHCP server.
    let mut d = Dragonfly::start(
        &ours,
        &db,
        &["--dhcp", "proxy", "--dhcp-interface", &net.name],
    );
    d.ready().await;
    let health = d.get("/healthz").await;
    assert_eq!(health["dhcp"]["mode"], "proxy", "{health}");
    assert_eq!(health["dhcp"]["interface"], net.name.as_str(), "{health}");
    assert_eq!(
        health["base_url"].as_str().unwrap(),
        d.url.replace("127.0.0.1", &ours)
    );

    let plain = net.probe("plain", None);
    assert_eq!(
        plain.len(),
        1,
        "a plain client gets exactly one offer: {plain:?}"
    );
    assert_eq!(plain[0].0, site, "{plain:?}");
    assert_eq!(plain[0].2, None, "dnsmasq gives no boot file: {plain:?}");
    for (client, file) in [
        ("bios", "undionly.kpxe".to_string()),
        ("uefi", "snponly.efi".to_string()),
        (
            "uefi-http",
            format!("http://{ours}:{}/boot/efi/snponly.efi", port(&d.url)),
        ),
        (
            "ipxe",
            format!("http://{ours}:{}/boot/boot.ipxe", port(&d.url)),
        ),
    ] {
        let offers = net.probe(client, None);
        assert_eq!(offers.len(), 2, "{client}: {offers:?}");
        let mine = offers
            .iter()
            .find(|o| o.0 == ours)
            .expect("Dragonfly's offer");
        assert_eq!(mine.1, "0.0.0.0", "a proxy offers no address: {offers:?}");
        assert_eq!(mine.2.as_deref(), Some(file.as_str()), "{client}");
        assert!(
            offers.iter().any(|o| o.0 == site && o.2.is_none()),
            "{offers:?}"
        );
    }

    // 2. Three firmwares PXE-boot through the proxy and register.
    let kinds = [
        (Firmware::Bios, identity(1, "BIOS"), "iPXE (BIOS)"),
        (Firmware::Uefi, identity(2, "UEFI"), "UEFI x64"),
        (Firmware::UefiHttp, identity(3, "HTTP"), "UEFI x64 HTTP"),
    ];
    let started = Instant::now();
    let mut vms = Vec::new();
    for (i, (fw, id, _)) in kinds.iter().enumerate() {
        let tap = format!("tap{i}");
        net.tap(&tap);
        vms.push(Vm::boot_on_tap(&net.name, &tap, id, *fw, 1 << 30, 768));
    }
    let mut machines = Vec::new();
    for ((_, id, _), vm) in kinds.iter().zip(vms.iter_mut()) {
        machines.push(registered(&d, id, vm, started).await);
    }
    for ((fw, id, label), m) in kinds.iter().zip(&machines) {
        let log = events(m);
        assert!(
            log.contains(&format!("DHCP DISCOVER ({label}): offered")),
            "{fw:?}: the timeline shows the DHCP answer:\n{log}"
        );
        let nic_ip = m["nics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["mac"] == id.mac)
            .unwrap()["addresses"]
            .to_string();
        assert!(
            nic_ip.contains(&format!("{}.1", net.prefix)),
            "{fw:?}: dnsmasq's pool .100-.199: {nic_ip}"
        );
    }
    // The UEFI PXE machine fetched snponly.efi over TFTP, the HTTP-boot one over HTTP.
    let log = events(&machines[1]);
    assert!(log.contains("snponly.efi over TFTP"), "{log}");
    let log = events(&machines[2]);
    assert!(log.contains("snponly.efi over HTTP"), "{log}");
    let recent = d.get("/healthz").await["dhcp"]["recent"].clone();
    for (_, id, _) in &kinds {
        assert!(recent.to_string().contains(id.mac), "{recent}");
    }
    for (vm, (_, id, _)) in vms.into_iter().zip(&kinds) {
        vm.kill(&format!("dhcp-{}", id.serial)).await;
    }

    // 3. "Do not PXE": Dragonfly stays silent for that machine; the site's server answers.
    let bios = machines[0]["id"].as_str().unwrap();
    let r = d
        .client
        .put(format!("{}/api/v1/machines/{bios}/netboot", d.url))
        .json(&json!({"pxe": "off"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let offers = net.probe("bios", Some(kinds[0].1.mac));
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(offers[0].0, site, "{offers:?}");
    let health = d.get("/healthz").await;
    assert_eq!(
        health["dhcp"]["recent"][0]["answer"], "no answer: PXE is off for this machine",
        "{health}"
    );
    let m = d.machine_by_mac(kinds[0].1.mac).await.unwrap();
    assert!(
        events(&m).contains("no answer: PXE is off for this machine"),
        "{}",
        events(&m)
    );
    d.stop();

    // 4. Full mode will not start beside another DHCP server.
    let refused = std::process::Command::new(binary())
        .args([
            "--host",
            &ours,
            "--port",
            "0",
            "--dhcp",
            "full",
            "--dhcp-interface",
            &net.name,
        ])
        .arg("--dhcp-range")
        .arg(format!("{}-{}", net.ip(20), net.ip(40)))
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "another DHCP server answers on {}: {site}",
            net.name
        )),
        "{said}"
    );

    // 5. Full mode alone: addresses from Dragonfly's pool, boot files as before.
    net.stop_dnsmasq();
    let range = format!("{}-{}", net.ip(20), net.ip(40));
    let mut d = Dragonfly::start(
        &ours,
        &db,
        &[
            "--dhcp",
            "full",
            "--dhcp-interface",
            &net.name,
            "--dhcp-range",
            &range,
            "--dhcp-gateway",
            &ours,
        ],
    );
    d.ready().await;
    let id = identity(4, "FULL");
    net.tap("tap9");
    let started = Instant::now();
    let mut vm = Vm::boot_on_tap(&net.name, "tap9", &id, Firmware::Bios, 1 << 30, 768);
    let m = registered(&d, &id, &mut vm, started).await;
    let log = events(&m);
    assert!(
        log.contains(&format!("offered {}.2", net.prefix)),
        "an address from .20-.40:\n{log}"
    );
    vm.kill("dhcp-full").await;
    let plain = net.probe("plain", None);
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert_eq!(plain[0].0, ours, "{plain:?}");
    let addr: std::net::Ipv4Addr = plain[0].1.parse().unwrap();
    assert!((20..=40).contains(&addr.octets()[3]), "{plain:?}");
    d.stop();
}

fn port(url: &str) -> &str {
    url.rsplit(':').next().unwrap()
}
