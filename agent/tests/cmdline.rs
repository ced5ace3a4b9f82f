//! Where the server is and which NIC booted, from the kernel command line.

use dragonfly_agent::cmdline::KernelCmdline;
use dragonfly_agent::config::{self, ConfigError, UrlSource};

fn c(line: &str) -> KernelCmdline {
    KernelCmdline::parse(line)
}

#[test]
fn the_url_comes_from_dragonfly_url_on_the_command_line() {
    let cfg = config::discover(
        &c("initrd=initrd.img console=ttyS0,115200 dragonfly.url=http://10.0.0.1:8080/ quiet"),
        None,
        None,
        None,
    )
    .unwrap();
    assert_eq!(cfg.url, "http://10.0.0.1:8080");
    assert_eq!(cfg.source, UrlSource::KernelCmdline);
    assert_eq!(cfg.enrollment_secret, None);
}

#[test]
fn a_flag_or_the_environment_wins_over_the_command_line() {
    let line = c("dragonfly.url=http://10.0.0.1:8080");
    let cfg = config::discover(
        &line,
        Some("http://127.0.0.1:3000"),
        Some("http://e:1"),
        None,
    )
    .unwrap();
    assert_eq!(
        (cfg.url.as_str(), cfg.source),
        ("http://127.0.0.1:3000", UrlSource::Flag)
    );
    let cfg = config::discover(&line, None, Some("http://e:1"), None).unwrap();
    assert_eq!(
        (cfg.url.as_str(), cfg.source),
        ("http://e:1", UrlSource::Env)
    );
    // An empty flag is no flag.
    let cfg = config::discover(&line, Some(" "), None, None).unwrap();
    assert_eq!(cfg.source, UrlSource::KernelCmdline);
}

#[test]
fn no_server_is_a_clear_message() {
    let err = config::discover(&c("console=ttyS0 dragonfly.url="), None, None, None).unwrap_err();
    assert_eq!(err, ConfigError::NoServer);
    let msg = err.to_string();
    assert!(
        msg.contains("dragonfly.url=") && msg.contains("--server"),
        "{msg}"
    );
    let err = config::discover(&c("dragonfly.url=https://x"), None, None, None).unwrap_err();
    assert!(err.to_string().contains("https is not supported"), "{err}");
}

#[test]
fn the_enrollment_secret_is_read_from_the_command_line() {
    let cfg = config::discover(
        &c("dragonfly.url=http://s dragonfly.secret=\"s3cr3t value\""),
        None,
        None,
        None,
    )
    .unwrap();
    assert_eq!(cfg.enrollment_secret.as_deref(), Some("s3cr3t value"));
    let cfg = config::discover(
        &c("dragonfly.url=http://s dragonfly.secret=x"),
        None,
        None,
        Some("y"),
    )
    .unwrap();
    assert_eq!(cfg.enrollment_secret.as_deref(), Some("y"));
}

#[test]
fn bootif_names_the_boot_mac() {
    assert_eq!(
        c("BOOTIF=01-52-54-00-AB-CD-EF").bootif_mac().as_deref(),
        Some("52:54:00:ab:cd:ef")
    );
    assert_eq!(c("BOOTIF=01-ff-ff-ff-ff-ff-ff").bootif_mac(), None);
    assert_eq!(c("BOOTIF=nonsense").bootif_mac(), None);
    assert_eq!(c("quiet").bootif_mac(), None);
}

#[test]
fn ip_names_the_boot_device_in_both_forms() {
    assert_eq!(
        c("ip=10.0.0.5:10.0.0.1:10.0.0.1:255.255.255.0:node1:eno1:off").ip_device(),
        Some("eno1")
    );
    assert_eq!(c("ip=:::::eth2:dhcp").ip_device(), Some("eth2"));
    assert_eq!(c("ip=enp3s0:dhcp").ip_device(), Some("enp3s0"));
    assert_eq!(
        c("ip=[2001:db8::5]::[2001:db8::1]:64:node1:eth1:none").ip_device(),
        Some("eth1")
    );
    assert_eq!(c("ip=dhcp").ip_device(), None);
    assert_eq!(c("ip=10.0.0.5:::::").ip_device(), None);
}

#[test]
fn the_boot_nic_follows_bootif_then_ip_then_the_default_route() {
    use crate::util::TempDir;
    use dragonfly_agent::Inventory;

    let tree = TempDir::new("boot");
    for (i, name) in ["eth0", "eth1", "eth2"].iter().enumerate() {
        let pci = format!("devices/pci0000:00/0000:00:0{i}.0");
        let dev = format!("sys/{pci}");
        tree.mkdir(&dev);
        tree.write(
            &format!("{dev}/net/{name}/address"),
            format!("52:54:00:00:00:0{i}\n"),
        );
        tree.write(&format!("{dev}/net/{name}/carrier"), "1\n");
        tree.symlink(
            &format!("{dev}/net/{name}/device"),
            &format!("../../../0000:00:0{i}.0"),
        );
        tree.symlink(
            &format!("sys/class/net/{name}"),
            &format!("../../{pci}/net/{name}"),
        );
    }
    tree.write(
        "proc/net/route",
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
         eth2\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
    );
    let boot = |line: &str| {
        tree.write("proc/cmdline", line);
        let r = Inventory::collect(tree.path()).unwrap();
        let flagged: Vec<String> = r
            .nics
            .iter()
            .filter(|n| n.boot)
            .map(|n| n.name.clone())
            .collect();
        (r.boot_mac, flagged)
    };
    assert_eq!(
        boot("BOOTIF=01-52-54-00-00-00-01 ip=:::::eth0:dhcp"),
        ("52:54:00:00:00:01".into(), vec!["eth1".to_string()])
    );
    assert_eq!(
        boot("ip=:::::eth0:dhcp"),
        ("52:54:00:00:00:00".into(), vec!["eth0".to_string()])
    );
    assert_eq!(
        boot("quiet"),
        ("52:54:00:00:00:02".into(), vec!["eth2".to_string()]),
        "default route"
    );
    // A BOOTIF MAC no visible NIC has (no driver for it) is still the boot MAC.
    assert_eq!(
        boot("BOOTIF=01-52-54-00-00-00-09"),
        ("52:54:00:00:00:09".into(), Vec::<String>::new())
    );
}

#[test]
fn the_machine_secret_comes_from_dragonfly_machine() {
    let cfg = config::discover(
        &c("dragonfly.url=http://10.0.0.1:8080 dragonfly.machine=Zm9vYmFy_-"),
        None,
        None,
        None,
    )
    .unwrap();
    assert_eq!(cfg.machine_secret.as_deref(), Some("Zm9vYmFy_-"));
    let cfg = config::discover(&c("dragonfly.url=http://10.0.0.1:8080"), None, None, None).unwrap();
    assert_eq!(cfg.machine_secret, None);
}
