//! Settings and the command line.
//!
//! Each setting is declared once, as a field of one of the groups below: its flag, its
//! `DRAGONFLY_*` environment variable, its default and its help are the field's clap
//! attributes, and its key in the `--config` TOML file is the field's name. Values are layered
//! flag > environment > file > default: [`parse`] turns every file key that neither a flag
//! nor the environment set into the flag it names, checked by the flag's own parser, so a
//! value means the same wherever it comes from. Each subcommand flattens only the groups it
//! reads, so its `--help` shows only those.
//!
//! [`Config`] is what the server starts from, resolved from [`ServeArgs`] once.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Dragonfly: bare-metal provisioning from the first PXE boot until an OS is on disk.
#[derive(Debug, Parser)]
#[command(name = "dragonfly", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

// Parsed once at start: the size of the serve variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Print the OpenAPI document of the JSON API.
    Openapi,
    /// Drive Tinkerbell: check access, print RBAC manifests, render objects.
    #[command(subcommand)]
    Tinkerbell(TinkerbellCommand),
    /// Operator accounts and tokens, offline (works on the database directly).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The OS catalogue (works on the database directly).
    #[command(subcommand)]
    Os(OsCommand),
    /// DHCP on a network: which servers answer there.
    #[command(subcommand)]
    Dhcp(DhcpCommand),
}

#[derive(Debug, Subcommand)]
pub enum DhcpCommand {
    /// Send one DHCP DISCOVER on an interface, as a plain (non-PXE) client would, and print
    /// every server that offers an address: one line each, `SERVER ADDRESS [BOOT-FILE]`.
    /// Exits 0 when at least one answered, 1 when none did. Needs root (port 68).
    Probe {
        /// The interface to ask on.
        #[arg(long, value_name = "IFACE")]
        interface: String,
        /// How long to wait for offers, in seconds (1-60). Servers may check an address
        /// is unused before offering it (dnsmasq pings it for 3 s).
        #[arg(long, value_name = "SECS", default_value_t = 5)]
        wait_secs: u64,
        /// Ask as this kind of client: `plain` (no PXE options: what a server or laptop
        /// sends), or as PXE firmware would: `bios`, `uefi`, `uefi-http`, `ipxe`.
        #[arg(long = "as", value_enum, value_name = "CLIENT", default_value_t = ProbeAs::Plain)]
        client: ProbeAs,
        /// The hardware address to ask with [default: a random locally administered one].
        #[arg(long, value_name = "MAC")]
        mac: Option<String>,
    },
}

/// The kind of client `dragonfly dhcp probe` pretends to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeAs {
    Plain,
    Bios,
    Uefi,
    UefiHttp,
    Ipxe,
}

#[derive(Debug, Subcommand)]
pub enum OsCommand {
    /// Read each entry's published checksum list (SHA256SUMS, SHA512SUMS) again and store the
    /// checksum it gives for the entry's image file: "current" images are republished.
    /// Exits 1 when any entry could not be refreshed.
    Refresh {
        /// Only this entry (a slug); default: every entry with a checksum_url.
        #[arg(long, value_name = "SLUG")]
        os: Option<String>,
        #[command(flatten)]
        file: ConfigFile,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Set an operator's password (creating the account if needed), read from the terminal
    /// or, when standard input is not a terminal, from its first line.
    SetPassword {
        #[arg(long, default_value = "admin")]
        username: String,
        #[command(flatten)]
        file: ConfigFile,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Create an API token and print its secret (once).
    CreateToken {
        #[arg(long)]
        name: String,
        /// read or admin.
        #[arg(long, default_value = "admin", value_parser = ["read", "admin"])]
        scope: String,
        #[command(flatten)]
        file: ConfigFile,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `dragonfly tinkerbell ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TinkerbellCommand {
    /// Test the connection and the RBAC permissions Dragonfly needs; print what is missing
    /// and exit non-zero when anything is.
    Check {
        #[command(flatten)]
        file: ConfigFile,
        #[command(flatten)]
        tinkerbell: TinkerbellArgs,
    },
    /// Print the ServiceAccount, Role and RoleBinding Dragonfly needs (deploy/tinkerbell-rbac.yaml);
    /// with --deploy also the PVC, Deployment and Service that run it in the cluster
    /// (deploy/dragonfly.yaml).
    Manifests {
        #[command(flatten)]
        file: ConfigFile,
        #[command(flatten)]
        namespace: NamespaceArgs,
        /// Also print the PersistentVolumeClaim, Deployment and Service running Dragonfly in
        /// the namespace.
        #[arg(long)]
        deploy: bool,
        /// Container image of the Deployment (the static binary at /dragonfly).
        #[arg(long, value_name = "IMAGE", default_value = concat!("dragonfly:", env!("CARGO_PKG_VERSION")))]
        image: String,
    },
    /// Print, without a cluster, the Hardware, Template and Workflow Dragonfly would apply
    /// for a machine of the store (--db).
    Render {
        /// Boot MAC of the machine.
        #[arg(long, value_name = "MAC")]
        mac: String,
        /// Catalogue slug of the OS [default: the machine's assigned OS].
        #[arg(long, value_name = "SLUG")]
        os: Option<String>,
        #[command(flatten)]
        file: ConfigFile,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        namespace: NamespaceArgs,
        #[command(flatten)]
        workflow: WorkflowArgs,
        #[command(flatten)]
        hookos: HookosArgs,
    },
}

/// The settings file itself.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigFile {
    /// TOML file of settings, keyed by their flag names with `_` for `-` (port, db,
    /// tink_finish, ...). Flags and the environment win over it.
    #[arg(long, env = "DRAGONFLY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The database.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// SQLite database file.
    #[arg(
        long,
        env = "DRAGONFLY_DB",
        value_name = "FILE",
        default_value = "sqlite.db"
    )]
    pub db: PathBuf,
}

/// Everything `dragonfly serve` (and plain `dragonfly`) reads.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub file: ConfigFile,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub dhcp: DhcpArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub hookos: HookosArgs,
    #[command(flatten)]
    pub tinkerbell: TinkerbellArgs,
}

/// Where the server listens, how machines reach it, and how it talks to them.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// TCP port for HTTP.
    #[arg(long, env = "DRAGONFLY_PORT", default_value_t = 3000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "DRAGONFLY_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// URL machines use to reach this server, e.g. http://10.0.0.5:3000 [default: derived
    /// from the listening address and logged at start].
    #[arg(long, env = "DRAGONFLY_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// Directory with the netboot artefact (vmlinuz, initramfs.zst, ipxe.lkrn, manifest.json)
    /// and tftp/.
    #[arg(
        long,
        env = "DRAGONFLY_BOOT_DIR",
        value_name = "DIR",
        default_value = "out/netboot"
    )]
    pub boot_dir: PathBuf,
    /// Serve the iPXE first stage (boot-dir/tftp/) over TFTP, for DHCP servers that point
    /// machines at Dragonfly.
    #[arg(long, env = "DRAGONFLY_TFTP")]
    pub tftp: bool,
    /// UDP port for TFTP.
    #[arg(
        long,
        env = "DRAGONFLY_TFTP_PORT",
        value_name = "PORT",
        default_value_t = 69
    )]
    pub tftp_port: u16,
    /// Require this secret from agents at registration (403 without it); the netboot image
    /// passes it on the kernel command line as dragonfly.secret=.
    #[arg(long, env = "DRAGONFLY_ENROLLMENT_SECRET", value_name = "SECRET")]
    pub enrollment_secret: Option<String>,
    /// PEM certificate chain: serve HTTPS instead of HTTP (with --tls-key).
    #[arg(
        long,
        env = "DRAGONFLY_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(
        long,
        env = "DRAGONFLY_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// How often idle agents check in, in seconds (1–3600).
    #[arg(
        long,
        env = "DRAGONFLY_HEARTBEAT_SECS",
        value_name = "SECS",
        default_value_t = 10
    )]
    pub heartbeat_secs: u32,
    /// No contact for this long makes a machine offline [default: 6 × heartbeat-secs].
    #[arg(long, env = "DRAGONFLY_OFFLINE_AFTER_SECS", value_name = "SECS")]
    pub offline_after_secs: Option<u32>,
    /// Open HTTP connections allowed from one client address (machines behind one NAT, or
    /// a load test from one host, need more).
    #[arg(
        long,
        env = "DRAGONFLY_MAX_CONNECTIONS_PER_ADDRESS",
        value_name = "N",
        default_value_t = 256
    )]
    pub max_connections_per_address: usize,
    /// Registrations one client address may make in a minute (all of a lab's VMs behind one
    /// NAT share an address; a load test from one host needs more).
    #[arg(
        long,
        env = "DRAGONFLY_REGISTRATIONS_PER_MINUTE_PER_ADDRESS",
        value_name = "N",
        default_value_t = 600
    )]
    pub registrations_per_minute_per_address: u32,
    /// How assigned machines get their OS: `native` (the agent in the Dragonfly image writes
    /// the image itself) or `tinkerbell` (a Tinkerbell workflow in HookOS) [default:
    /// tinkerbell when a cluster is connected, else native].
    #[arg(long, env = "DRAGONFLY_INSTALLER", value_name = "ENGINE")]
    pub installer: Option<Installer>,
    /// Seconds a natively installed system has to report back (cloud-init phone-home)
    /// after its image was written, before the install counts as failed.
    #[arg(
        long,
        env = "DRAGONFLY_FIRST_BOOT_TIMEOUT_SECS",
        value_name = "SECS",
        default_value_t = 1800
    )]
    pub first_boot_timeout_secs: u32,
    /// Longest a waiting agent's heartbeat is held open for a change (1–60 s). Lower it when
    /// a proxy between the agents and the server cuts idle requests sooner.
    #[arg(
        long,
        env = "DRAGONFLY_LONG_POLL_SECS",
        value_name = "SECS",
        default_value_t = 60
    )]
    pub long_poll_secs: u32,
    /// A file of SSH public keys (authorized_keys format) that every natively installed
    /// machine gets for its default user.
    #[arg(long, env = "DRAGONFLY_SSH_AUTHORIZED_KEYS", value_name = "FILE")]
    pub ssh_authorized_keys: Option<PathBuf>,
}

/// Dragonfly's own DHCP service: proxyDHCP beside the site's DHCP server, or full DHCP on
/// an isolated provisioning network.
#[derive(Debug, Clone, Args)]
pub struct DhcpArgs {
    /// Answer DHCP on --dhcp-interface: `off`; `proxy` (only PXE clients, with boot
    /// information, never an address: the site's DHCP server keeps handing out addresses);
    /// `full` (addresses from --dhcp-range too, for an isolated provisioning network or a
    /// lab). Either turns the TFTP server on.
    #[arg(long, env = "DRAGONFLY_DHCP", value_enum, default_value_t = DhcpMode::Off)]
    pub dhcp: DhcpMode,
    /// The network interface DHCP listens and answers on (needed with --dhcp).
    #[arg(long, env = "DRAGONFLY_DHCP_INTERFACE", value_name = "IFACE")]
    pub dhcp_interface: Option<String>,
    /// Full DHCP: the addresses handed out, FIRST-LAST, inside the interface's subnet.
    #[arg(long, env = "DRAGONFLY_DHCP_RANGE", value_name = "FIRST-LAST")]
    pub dhcp_range: Option<String>,
    /// Full DHCP: the router handed out.
    #[arg(long, env = "DRAGONFLY_DHCP_GATEWAY", value_name = "IP")]
    pub dhcp_gateway: Option<Ipv4Addr>,
    /// Full DHCP: DNS servers handed out, comma-separated.
    #[arg(long, env = "DRAGONFLY_DHCP_DNS", value_name = "IP,...")]
    pub dhcp_dns: Option<String>,
    /// Full DHCP: lease length in seconds (60-86400).
    #[arg(
        long,
        env = "DRAGONFLY_DHCP_LEASE_SECS",
        value_name = "SECS",
        default_value_t = 3600
    )]
    pub dhcp_lease_secs: u32,
    /// The iPXE binary UEFI machines get first: `snponly` (over the firmware's network
    /// driver) or `ipxe` (iPXE's own drivers). A machine's own setting wins.
    #[arg(
        long,
        env = "DRAGONFLY_DHCP_UEFI_BINARY",
        value_enum,
        default_value_t = UefiBinary::Snponly
    )]
    pub dhcp_uefi_binary: UefiBinary,
    /// Full DHCP: start even when another DHCP server answers on the interface.
    #[arg(long, env = "DRAGONFLY_DHCP_FORCE")]
    pub dhcp_force: bool,
}

/// Which DHCP service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DhcpMode {
    Off,
    Proxy,
    Full,
}

impl DhcpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DhcpMode::Off => "off",
            DhcpMode::Proxy => "proxy",
            DhcpMode::Full => "full",
        }
    }
}

/// The iPXE binary UEFI machines get first (per machine, or server-wide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UefiBinary {
    /// `snponly.efi`: iPXE over the firmware's own network driver (works with most NICs).
    Snponly,
    /// `ipxe.efi`: iPXE with its own drivers, for NICs whose firmware driver misbehaves.
    Ipxe,
}

impl UefiBinary {
    pub fn file(self) -> &'static str {
        match self {
            UefiBinary::Snponly => "snponly.efi",
            UefiBinary::Ipxe => "ipxe.efi",
        }
    }
}

/// The addresses full DHCP mode hands out, and the subnet they are in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub network: Ipv4Addr,
    pub netmask: Ipv4Addr,
    /// Never handed out (this server, the gateway, DNS servers in the range).
    pub excluded: Vec<Ipv4Addr>,
}

/// Largest pool: a /16. Allocation walks it, so it stays bounded.
pub const MAX_POOL: u32 = 65_536;

impl Pool {
    /// In the subnet, and neither its network nor its broadcast address.
    pub fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask);
        let net = u32::from(self.network);
        let n = u32::from(ip);
        n & mask == net && n != net && n != net | !mask
    }

    /// In the pool and free to hand out.
    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
            && self.in_subnet(ip)
            && !self.excluded.contains(&ip)
    }

    /// Every address the pool may hand out, in order.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        (u32::from(self.first)..=u32::from(self.last))
            .take(MAX_POOL as usize)
            .map(Ipv4Addr::from)
            .filter(|ip| self.in_range(*ip))
    }
}

/// The DHCP service, resolved: the interface exists and has an IPv4 address.
#[derive(Debug, Clone)]
pub struct Dhcp {
    pub mode: DhcpMode,
    pub interface: String,
    /// This server's address on the interface: the server identifier and next-server.
    pub server_ip: Ipv4Addr,
    /// Full mode only.
    pub pool: Option<Pool>,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: u32,
    pub uefi: UefiBinary,
    pub force: bool,
}

impl Dhcp {
    /// Checks the DHCP settings against the host's interfaces.
    pub fn resolve(d: &DhcpArgs) -> anyhow::Result<Option<Dhcp>> {
        if d.dhcp == DhcpMode::Off {
            return Ok(None);
        }
        let Some(interface) = d.dhcp_interface.clone() else {
            bail!("--dhcp {} needs --dhcp-interface", d.dhcp.as_str());
        };
        if interface.is_empty() || interface.len() > 15 || interface.contains('/') {
            bail!("--dhcp-interface: {interface:?} is not an interface name");
        }
        let addrs = if_addrs::get_if_addrs().context("cannot list network interfaces")?;
        let v4 = addrs
            .iter()
            .filter(|i| i.name == interface)
            .find_map(|i| match &i.addr {
                if_addrs::IfAddr::V4(a) => Some((a.ip, a.netmask)),
                _ => None,
            });
        let Some((server_ip, netmask)) = v4 else {
            bail!("--dhcp-interface {interface}: no such interface with an IPv4 address");
        };
        if !(60..=86_400).contains(&d.dhcp_lease_secs) {
            bail!("--dhcp-lease-secs must be between 60 and 86400");
        }
        let dns = match &d.dhcp_dns {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|s| s.trim().parse::<Ipv4Addr>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("--dhcp-dns: {e} (comma-separated IPv4 addresses)"))?,
        };
        let pool = match (d.dhcp, &d.dhcp_range) {
            (DhcpMode::Full, None) => bail!("--dhcp full needs --dhcp-range FIRST-LAST"),
            (DhcpMode::Full, Some(range)) => {
                let (first, last) = range
                    .split_once('-')
                    .and_then(|(a, b)| {
                        Some((
                            a.trim().parse::<Ipv4Addr>().ok()?,
                            b.trim().parse::<Ipv4Addr>().ok()?,
                        ))
                    })
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--dhcp-range must be FIRST-LAST, e.g. 10.0.0.100-10.0.0.200"
                        )
                    })?;
                let network = Ipv4Addr::from(u32::from(server_ip) & u32::from(netmask));
                let mut excluded = vec![server_ip];
                excluded.extend(d.dhcp_gateway);
                excluded.extend(dns.iter().copied());
                let pool = Pool {
                    first,
                    last,
                    network,
                    netmask,
                    excluded,
                };
                if u32::from(first) > u32::from(last) {
                    bail!("--dhcp-range: {first} comes after {last}");
                }
                if !pool.in_subnet(first) || !pool.in_subnet(last) {
                    bail!(
                        "--dhcp-range {range} is not inside {interface}'s subnet {network}/{}",
                        u32::from(netmask).count_ones()
                    );
                }
                if u32::from(last) - u32::from(first) >= MAX_POOL {
                    bail!("--dhcp-range: at most {MAX_POOL} addresses");
                }
                Some(pool)
            }
            (_, Some(_)) => {
                bail!("--dhcp-range is for --dhcp full (a proxy hands out no addresses)")
            }
            (_, None) => None,
        };
        if d.dhcp == DhcpMode::Proxy && (d.dhcp_gateway.is_some() || !dns.is_empty()) {
            bail!(
                "--dhcp-gateway and --dhcp-dns are for --dhcp full (a proxy hands out no network settings)"
            );
        }
        Ok(Some(Dhcp {
            mode: d.dhcp,
            interface,
            server_ip,
            pool,
            gateway: d.dhcp_gateway,
            dns,
            lease_secs: d.dhcp_lease_secs,
            uefi: d.dhcp_uefi_binary,
            force: d.dhcp_force,
        }))
    }
}

/// Who puts the OS on an assigned machine's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Installer {
    /// The Dragonfly agent streams the image to the disk; cloud-init reports back.
    Native,
    /// A Tinkerbell workflow in HookOS (needs a Kubernetes connection).
    Tinkerbell,
}

impl Installer {
    pub fn as_str(self) -> &'static str {
        match self {
            Installer::Native => "native",
            Installer::Tinkerbell => "tinkerbell",
        }
    }
}

/// Where Tinkerbell's HookOS and its services are. Defaults assume they run on the host in
/// the base URL.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tinkerbell HookOS")]
pub struct HookosArgs {
    /// URL of the directory holding vmlinuz-x86_64 and initramfs-x86_64
    /// [default: BASE_URL/hookos, served from boot-dir/hookos/].
    #[arg(long, env = "DRAGONFLY_HOOKOS_URL", value_name = "URL")]
    pub hookos_url: Option<String>,
    /// tink-server gRPC endpoint as host:port [default: the base URL's host:42113].
    #[arg(long, env = "DRAGONFLY_TINK_GRPC_AUTHORITY", value_name = "HOST:PORT")]
    pub tink_grpc_authority: Option<String>,
    /// Syslog receiver for HookOS [default: the base URL's host].
    #[arg(long, env = "DRAGONFLY_TINK_SYSLOG_HOST", value_name = "HOST")]
    pub tink_syslog_host: Option<String>,
    /// Whether tink-worker talks TLS to tink-server.
    #[arg(long, env = "DRAGONFLY_TINK_TLS")]
    pub tink_tls: bool,
    /// tink-worker container image.
    #[arg(
        long,
        env = "DRAGONFLY_TINK_WORKER_IMAGE",
        value_name = "IMAGE",
        default_value = "tinkerbell/tink-worker:latest"
    )]
    pub tink_worker_image: String,
    /// Serial console HookOS logs to.
    #[arg(
        long,
        env = "DRAGONFLY_HOOKOS_CONSOLE",
        value_name = "TTY",
        default_value = "ttyS0,115200"
    )]
    pub hookos_console: String,
}

/// Whether Dragonfly drives Tinkerbell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Mode {
    /// Connect when --kubeconfig is given or when running in a pod.
    #[default]
    Auto,
    /// Always connect; fail at start when no cluster can be reached.
    On,
    /// Never connect: Dragonfly runs standalone.
    Off,
}

/// How the install ends once the image and the cloud-init configuration are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Finish {
    /// Reboot; the machine PXE-boots, and Dragonfly tells it to boot its local disk.
    #[default]
    Reboot,
    /// kexec into the installed kernel (faster; needs the OS's partition layout, known for
    /// Ubuntu and Debian on x86_64; other systems reboot).
    Kexec,
}

/// The Tinkerbell backend: the cluster connection, the namespace, and the workflows.
#[derive(Debug, Clone, Args)]
pub struct TinkerbellArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub namespace: NamespaceArgs,
    #[command(flatten)]
    pub workflow: WorkflowArgs,
}

/// Which Kubernetes cluster, if any.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tinkerbell backend")]
pub struct ClusterArgs {
    /// Drive Tinkerbell in a Kubernetes cluster: auto, on or off.
    #[arg(long, env = "DRAGONFLY_TINKERBELL", value_enum, default_value_t = Mode::Auto)]
    pub tinkerbell: Mode,
    /// kubeconfig file of the cluster [default: the pod's ServiceAccount when in a pod].
    #[arg(long, env = "DRAGONFLY_KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context [default: the file's current context].
    #[arg(long, env = "DRAGONFLY_KUBE_CONTEXT", value_name = "NAME")]
    pub kube_context: Option<String>,
}

/// Where the Tinkerbell objects live.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tinkerbell backend")]
pub struct NamespaceArgs {
    /// Namespace of the Tinkerbell objects.
    #[arg(
        long,
        env = "DRAGONFLY_TINKERBELL_NAMESPACE",
        value_name = "NAMESPACE",
        default_value = "tink-system"
    )]
    pub tinkerbell_namespace: String,
}

/// What the Tinkerbell workflows run.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tinkerbell workflows")]
pub struct WorkflowArgs {
    /// Registry path of the Tinkerbell actions (image2disk, qemuimg2disk, writefile, kexec),
    /// for a mirror.
    #[arg(
        long,
        env = "DRAGONFLY_TINK_ACTIONS",
        value_name = "REGISTRY/PATH",
        default_value = "quay.io/tinkerbell/actions"
    )]
    pub tink_actions: String,
    /// Tag of the Tinkerbell action images.
    #[arg(
        long,
        env = "DRAGONFLY_TINK_ACTIONS_TAG",
        value_name = "TAG",
        default_value = "latest"
    )]
    pub tink_actions_tag: String,
    /// Image that reports the last action done and then runs it (reboot or kexec), so the
    /// workflow ends SUCCESS; `none` runs the last action directly (its success is then
    /// inferred from the machine booting again, see --tink-final-action-timeout).
    #[arg(
        long,
        env = "DRAGONFLY_TINK_WAITDAEMON_IMAGE",
        value_name = "IMAGE",
        default_value = "ghcr.io/jacobweinstock/waitdaemon:latest"
    )]
    pub tink_waitdaemon_image: String,
    /// Small image with a shell, used to reboot through sysrq.
    #[arg(
        long,
        env = "DRAGONFLY_TINK_REBOOT_IMAGE",
        value_name = "IMAGE",
        default_value = "alpine:3"
    )]
    pub tink_reboot_image: String,
    /// How the install ends: reboot or kexec.
    #[arg(long, env = "DRAGONFLY_TINK_FINISH", value_enum, default_value_t = Finish::Reboot)]
    pub tink_finish: Finish,
    /// EC2-style metadata service the installed OS's cloud-init reads (Tinkerbell's metadata
    /// service) [default: none; cloud-init only sets the host name].
    #[arg(long, env = "DRAGONFLY_TINK_METADATA_URL", value_name = "URL")]
    pub tink_metadata_url: Option<String>,
    /// When the last action (reboot or kexec) is running and no success is reported, how long
    /// to wait for the machine to boot again before marking the install failed.
    #[arg(
        long,
        env = "DRAGONFLY_TINK_FINAL_ACTION_TIMEOUT",
        value_name = "DURATION",
        default_value = "10m"
    )]
    pub tink_final_action_timeout: humantime::Duration,
    /// How often what Dragonfly owns in the cluster (Hardware, Template, Workflow labelled
    /// app.kubernetes.io/managed-by=dragonfly) is compared with the database and repaired;
    /// also at start (at least 1s).
    #[arg(
        long,
        env = "DRAGONFLY_TINK_RECONCILE_INTERVAL",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub tink_reconcile_interval: humantime::Duration,
}

/// A group's values with nothing given: its declared defaults, the environment ignored.
fn defaults<T: Args + FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("defaults"))
        .mut_args(|a| a.env(None::<&'static str>))
        .no_binary_name(true);
    let matches = cmd.get_matches_from(Vec::<OsString>::new());
    match T::from_arg_matches(&matches) {
        Ok(t) => t,
        // Every setting has a default or is optional; a group that fails here is a bug in
        // its declaration, caught by the tests below.
        Err(e) => e.exit(),
    }
}

macro_rules! defaults_for {
    ($($t:ty),*) => {$(
        impl Default for $t {
            /// The declared defaults (the environment ignored).
            fn default() -> Self {
                defaults()
            }
        }
    )*};
}

defaults_for!(
    DbArgs,
    ServeArgs,
    ServerArgs,
    HookosArgs,
    TinkerbellArgs,
    ClusterArgs,
    NamespaceArgs,
    WorkflowArgs
);

/// Why the command line could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// A usage error (it names the flag), or help and version output: `exit()` prints it.
    #[error(transparent)]
    Usage(#[from] clap::Error),
    /// The `--config` file: unreadable, not TOML, an unknown key or a bad value.
    #[error("{0:#}")]
    File(anyhow::Error),
}

/// Parses the command line, with the `--config` file layered under flags and environment.
pub fn parse<I, T>(args: I) -> Result<Cli, ParseError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = Cli::command();
    // First without the flags' relations (--tls-cert needs --tls-key): one of a pair may be
    // in the file. The final parse below checks them, file values included.
    let matches = relaxed(cmd.clone()).try_get_matches_from(&argv)?;
    let (leaf_cmd, leaf) = leaf(&cmd, &matches);
    let extra = match leaf.try_get_one::<PathBuf>("config").ok().flatten() {
        Some(path) => file_args(&cmd, leaf_cmd, leaf, path).map_err(ParseError::File)?,
        None => Vec::new(),
    };
    // Again, with the flags' relations, and the file's values after everything the user
    // typed: they are only for settings the user did not set, so nothing is given twice.
    let matches = cmd.try_get_matches_from(argv.into_iter().chain(extra))?;
    Ok(Cli::from_arg_matches(&matches)?)
}

/// `cmd` with no flag requiring another, in every subcommand.
fn relaxed(cmd: clap::Command) -> clap::Command {
    let mut cmd = cmd.mut_args(|a| a.requires(clap::builder::Resettable::<clap::Id>::Reset));
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, relaxed);
    }
    cmd
}

/// The innermost subcommand given, and its matches.
fn leaf<'a>(cmd: &'a clap::Command, m: &'a ArgMatches) -> (&'a clap::Command, &'a ArgMatches) {
    match m.subcommand() {
        Some((name, sub)) => match cmd.find_subcommand(name) {
            Some(c) => leaf(c, sub),
            None => (cmd, m),
        },
        None => (cmd, m),
    }
}

/// Every setting of every command: the arguments with an environment variable, `--config`
/// aside. Their ids (field names) are the file's keys.
fn setting_keys(cmd: &clap::Command, out: &mut Vec<String>) {
    for a in cmd.get_arguments() {
        let id = a.get_id().as_str();
        if a.get_env().is_some() && id != "config" && !out.iter().any(|k| k == id) {
            out.push(id.to_string());
        }
    }
    for sub in cmd.get_subcommands() {
        setting_keys(sub, out);
    }
}

/// The file's settings for `leaf_cmd`, as flags, for those not set by flag or environment.
fn file_args(
    root: &clap::Command,
    leaf_cmd: &clap::Command,
    leaf: &ArgMatches,
    path: &Path,
) -> anyhow::Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --config file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("invalid --config file {}", path.display()))?;
    let mut known = Vec::new();
    setting_keys(root, &mut known);
    let mut out = Vec::new();
    for (key, value) in &table {
        let bad = |why: String| anyhow::anyhow!("--config file {}: `{key}`: {why}", path.display());
        if !known.iter().any(|k| k == key) {
            return Err(bad("unknown setting".into()));
        }
        // A setting this subcommand does not read.
        let Some(arg) = leaf_cmd
            .get_arguments()
            .find(|a| a.get_id().as_str() == key)
        else {
            continue;
        };
        use clap::parser::ValueSource;
        if matches!(
            leaf.value_source(key),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let Some(long) = arg.get_long() else {
            continue;
        };
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => return Err(bad("must be a string, a number or a boolean".into())),
        };
        if !arg.get_action().takes_values() {
            // A switch such as --tftp: `true` turns it on, `false` leaves the default.
            match value {
                toml::Value::Boolean(true) => out.push(format!("--{long}").into()),
                toml::Value::Boolean(false) => {}
                _ => return Err(bad("must be true or false".into())),
            }
            continue;
        }
        // The flag's own parser: a file value is checked exactly like the flag.
        // The flag's parser alone (not its relations to other flags).
        let alone = clap::Arg::new("value")
            .allow_hyphen_values(true)
            .action(arg.get_action().clone())
            .value_parser(arg.get_value_parser().clone());
        clap::Command::new("dragonfly")
            .no_binary_name(true)
            .arg(alone)
            .try_get_matches_from([text.clone()])
            .map_err(|e| {
                let said = e.to_string();
                let first = said.lines().next().unwrap_or("invalid value");
                bad(first
                    .trim_start_matches("error: ")
                    .replace(" for '<value>'", "")
                    .to_string())
            })?;
        // One argument, so a value that starts with '-' stays a value.
        out.push(format!("--{long}={text}").into());
    }
    Ok(out)
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub db: PathBuf,
    /// As configured; `None` means derive it from the bound address.
    pub base_url: Option<String>,
    pub heartbeat_secs: u32,
    pub offline_after_secs: u32,
    pub boot_dir: PathBuf,
    /// TFTP listening address when enabled (--tftp, or any --dhcp mode).
    pub tftp: Option<SocketAddr>,
    /// Dragonfly's own DHCP service, when on.
    pub dhcp: Option<Dhcp>,
    pub hookos: Hookos,
    pub enrollment_secret: Option<String>,
    /// Certificate and key files for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The Kubernetes connection for the Tinkerbell backend.
    pub tinkerbell: TinkerbellArgs,
    /// Open HTTP connections allowed from one client address.
    pub max_connections_per_address: usize,
    /// Open HTTP connections allowed at once (see [`Config::fit_descriptors`]).
    pub max_connections: usize,
    /// Registrations one client address may make in a minute.
    pub registrations_per_minute_per_address: u32,
    /// As configured; `None` until [`Config::choose_installer`] knows about the cluster.
    pub installer: Option<Installer>,
    pub first_boot_timeout_secs: u32,
    /// Longest a heartbeat long-poll is held, in seconds.
    pub long_poll_secs: u32,
    /// Keys from --ssh-authorized-keys, one per entry.
    pub ssh_keys: Vec<String>,
}

/// HookOS settings as configured; `None` values are derived from the base URL at start.
#[derive(Debug, Clone, Default)]
pub struct Hookos {
    pub url: Option<String>,
    pub grpc_authority: Option<String>,
    pub syslog_host: Option<String>,
    pub tls: bool,
    pub worker_image: String,
    pub console: String,
}

fn check_param(flag: &str, v: Option<String>) -> anyhow::Result<Option<String>> {
    match v {
        Some(v) if v.is_empty() || v.len() > 256 || !v.chars().all(|c| c.is_ascii_graphic()) => {
            bail!("{flag} must be 1-256 printable characters without spaces")
        }
        other => Ok(other),
    }
}

impl Hookos {
    pub fn resolve(h: &HookosArgs) -> anyhow::Result<Hookos> {
        Ok(Hookos {
            url: match &h.hookos_url {
                Some(u) => Some(validate_base_url(u).context("--hookos-url")?),
                None => None,
            },
            grpc_authority: check_param("--tink-grpc-authority", h.tink_grpc_authority.clone())?,
            syslog_host: check_param("--tink-syslog-host", h.tink_syslog_host.clone())?,
            tls: h.tink_tls,
            worker_image: check_param("--tink-worker-image", Some(h.tink_worker_image.clone()))?
                .unwrap_or_default(),
            console: check_param("--hookos-console", Some(h.hookos_console.clone()))?
                .unwrap_or_default(),
        })
    }
}

impl Config {
    /// A config for tests: [`Config::offline`], with the Tinkerbell hand-over as the
    /// installer (what most tests of the lifecycle follow; the native install's tests choose
    /// it explicitly).
    pub fn for_tests(db: &Path) -> Config {
        let mut c = Config::offline(db);
        c.installer = Some(Installer::Tinkerbell);
        c
    }

    /// A config for tests, embedding and offline commands: the declared defaults, on
    /// loopback with an ephemeral port, the given database, and never a cluster.
    pub fn offline(db: &Path) -> Config {
        let mut args = ServeArgs::default();
        args.server.host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        args.server.port = 0;
        args.server.boot_dir = db.with_file_name("netboot");
        args.db.db = db.to_path_buf();
        args.tinkerbell.cluster.tinkerbell = Mode::Off;
        match Config::resolve(&args) {
            Ok(c) => c,
            // The defaults are valid (a unit test below says so).
            Err(e) => panic!("the default settings do not resolve: {e:#}"),
        }
    }

    /// Checks the settings and puts them in the shape the server uses.
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Config> {
        let s = &args.server;
        let base_url = match &s.base_url {
            Some(u) => Some(validate_base_url(u)?),
            None => None,
        };
        if !(1..=3600).contains(&s.heartbeat_secs) {
            bail!("--heartbeat-secs must be between 1 and 3600");
        }
        let offline_after_secs = s.offline_after_secs.unwrap_or(s.heartbeat_secs * 6);
        if offline_after_secs <= s.heartbeat_secs {
            bail!("--offline-after-secs must be larger than --heartbeat-secs");
        }
        if let Some(secret) = &s.enrollment_secret {
            if secret.len() < 16
                || secret.len() > 128
                || !secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                bail!(
                    "--enrollment-secret must be 16-128 characters of A-Z, a-z, 0-9, '-', '_', '.'"
                );
            }
        }
        if !(1..=60).contains(&s.long_poll_secs) {
            bail!("--long-poll-secs must be between 1 and 60");
        }
        let dhcp = Dhcp::resolve(&args.dhcp)?;
        if let Some(d) = &dhcp {
            if s.host.is_loopback() {
                bail!(
                    "--dhcp {} tells machines to fetch boot files from {}, but --host {} \
                     listens only on loopback: use --host 0.0.0.0 or --host {}",
                    d.mode.as_str(),
                    d.server_ip,
                    s.host,
                    d.server_ip
                );
            }
        }
        let tls = match (&s.tls_cert, &s.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        Ok(Config {
            listen: SocketAddr::new(s.host, s.port),
            db: args.db.db.clone(),
            base_url,
            heartbeat_secs: s.heartbeat_secs,
            offline_after_secs,
            boot_dir: s.boot_dir.clone(),
            tftp: (s.tftp || dhcp.is_some()).then_some(SocketAddr::new(s.host, s.tftp_port)),
            dhcp,
            hookos: Hookos::resolve(&args.hookos)?,
            enrollment_secret: s.enrollment_secret.clone(),
            tls,
            tinkerbell: args.tinkerbell.clone(),
            max_connections_per_address: s.max_connections_per_address.max(1),
            max_connections: MAX_CONNECTIONS,
            registrations_per_minute_per_address: s.registrations_per_minute_per_address.max(1),
            installer: s.installer,
            first_boot_timeout_secs: s.first_boot_timeout_secs.max(60),
            long_poll_secs: s.long_poll_secs,
            ssh_keys: match &s.ssh_authorized_keys {
                Some(path) => read_ssh_keys(path)?,
                None => Vec::new(),
            },
        })
    }

    /// Settles the install engine once it is known whether a cluster is connected.
    pub fn choose_installer(&mut self, cluster: bool) -> anyhow::Result<Installer> {
        let chosen = match self.installer {
            Some(Installer::Tinkerbell) if !cluster => bail!(
                "--installer tinkerbell needs a Kubernetes connection (--tinkerbell, --kubeconfig)"
            ),
            Some(i) => i,
            None if cluster => Installer::Tinkerbell,
            None => Installer::Native,
        };
        self.installer = Some(chosen);
        Ok(chosen)
    }

    /// Caps open connections to what `nofile` descriptors allow: 128 stay in reserve for
    /// the database, served files, TFTP and the log.
    pub fn fit_descriptors(&mut self, nofile: u64) {
        let usable = usize::try_from(nofile.saturating_sub(128)).unwrap_or(usize::MAX);
        self.max_connections = self.max_connections.min(usable.max(16));
    }
}

/// The public keys of an authorized_keys file: blank lines and comments skipped, each line
/// checked for a key type and base64 body.
fn read_ssh_keys(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--ssh-authorized-keys {}", path.display()))?;
    parse_ssh_keys(&text)
        .map_err(|e| anyhow::anyhow!("--ssh-authorized-keys {}: {e}", path.display()))
}

/// One line of an authorized_keys text: blank, a comment, or `TYPE BASE64 [comment]` with a
/// type starting `ssh-`, `ecdsa-` or `sk-` and at least 16 characters of base64. Stated in the
/// API document; [`ssh_key_line_ok`] is the same grammar (the tests hold them together).
const SSH_KEY_LINE: &str =
    r"[ \t]*(?:#[^\n]*|(?:ssh-|ecdsa-|sk-)[!-~]*[ \t]+[A-Za-z0-9+/=]{16,}(?:[ \t][^\n]*)?)?\r?";

/// A whole authorized_keys text, as the API document states it (lines of
/// [`SSH_KEY_LINE`]); [`parse_ssh_keys`] accepts exactly these.
pub fn ssh_keys_pattern() -> String {
    format!(r"^(?:{SSH_KEY_LINE}\n)*{SSH_KEY_LINE}$")
}

/// Whether one line (no `\n`) matches [`SSH_KEY_LINE`].
fn ssh_key_line_ok(line: &str) -> bool {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let rest = line.trim_start_matches([' ', '\t']);
    if rest.is_empty() || rest.starts_with('#') {
        return true;
    }
    if !["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|p| rest.starts_with(p))
    {
        return false;
    }
    let kind_end = rest
        .find(|c: char| !('!'..='~').contains(&c))
        .unwrap_or(rest.len());
    let after = &rest[kind_end..];
    let body = after.trim_start_matches([' ', '\t']);
    if body.len() == after.len() {
        return false;
    }
    let body_end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c)))
        .unwrap_or(body.len());
    let tail = &body[body_end..];
    body_end >= 16 && (tail.is_empty() || tail.starts_with([' ', '\t']))
}

/// The public keys of an authorized_keys text: blank lines and comments skipped, each line
/// checked for a key type and a base64 body. The error names the line. (The text's length
/// bounds the count: a request body is bounded, and so is the file an operator points at.)
pub fn parse_ssh_keys(text: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        if !ssh_key_line_ok(line) {
            return Err(format!(
                "line {}: not a public key (expected e.g. \"ssh-ed25519 AAAA... comment\")",
                n + 1
            ));
        }
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') {
            keys.push(line.to_string());
        }
    }
    Ok(keys)
}

/// Open HTTP connections at most, whatever the descriptor limit allows.
pub const MAX_CONNECTIONS: usize = 16_384;

/// Checks a base URL (http or https, a host, no query) and drops a trailing slash.
pub fn validate_base_url(raw: &str) -> anyhow::Result<String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let uri: axum::http::Uri = trimmed
        .parse()
        .with_context(|| format!("--base-url {raw:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => bail!("--base-url {raw:?} must start with http:// or https://"),
    }
    if uri.host().is_none_or(str::is_empty) {
        bail!("--base-url {raw:?} has no host");
    }
    if uri.query().is_some() {
        bail!("--base-url {raw:?} must not have a query string");
    }
    Ok(trimmed.to_string())
}

/// The URL machines should use when none is configured: the listening address, or when
/// listening on every address, the first non-loopback IPv4 address of this host.
pub fn derive_base_url(bound: SocketAddr) -> String {
    let ip = if bound.ip().is_unspecified() {
        if_addrs::get_if_addrs()
            .ok()
            .and_then(|ifs| {
                ifs.into_iter()
                    .filter(|i| !i.is_loopback())
                    .map(|i| i.ip())
                    .find(IpAddr::is_ipv4)
            })
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    } else {
        bound.ip()
    };
    match ip {
        IpAddr::V6(v6) => format!("http://[{v6}]:{}", bound.port()),
        IpAddr::V4(v4) => format!("http://{v4}:{}", bound.port()),
    }
}

/// Runtime settings derived from [`Config`] once the listener is bound.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where machines reach this server, without a trailing slash.
    pub base_url: String,
    pub heartbeat_secs: u32,
    pub offline_after_ms: i64,
    pub boot_dir: PathBuf,
    /// Whether the TFTP server runs (for the dashboard and /healthz).
    pub tftp: bool,
    pub hookos: HookosSettings,
    pub enrollment_secret: Option<String>,
    /// Served over HTTPS (cookies are then marked Secure).
    pub tls: bool,
    pub installer: Installer,
    pub first_boot_timeout_ms: i64,
    /// Longest a heartbeat long-poll is held, in seconds.
    pub long_poll_secs: u32,
    pub ssh_keys: Vec<String>,
}

/// HookOS settings with every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookosSettings {
    pub url: String,
    pub grpc_authority: String,
    pub syslog_host: String,
    pub tls: bool,
    pub worker_image: String,
    pub console: String,
}

impl HookosSettings {
    pub fn resolve(h: &Hookos, base_url: &str) -> HookosSettings {
        let host = base_url
            .parse::<axum::http::Uri>()
            .ok()
            .and_then(|u| {
                u.host()
                    .map(|h| h.trim_matches(|c| c == '[' || c == ']').to_string())
            })
            .unwrap_or_else(|| "127.0.0.1".into());
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        HookosSettings {
            url: h
                .url
                .clone()
                .unwrap_or_else(|| format!("{base_url}/hookos")),
            grpc_authority: h
                .grpc_authority
                .clone()
                .unwrap_or_else(|| format!("{bracketed}:42113")),
            syslog_host: h.syslog_host.clone().unwrap_or(host),
            tls: h.tls,
            worker_image: h.worker_image.clone(),
            console: h.console.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let cli = parse(std::iter::once("dragonfly").chain(args.iter().copied())).unwrap();
        match cli.command {
            Some(Command::Serve(s)) => s,
            _ => cli.serve,
        }
    }

    fn file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.toml");
        std::fs::write(&path, text).unwrap();
        let p = path.to_string_lossy().into_owned();
        (dir, p)
    }

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            validate_base_url("http://10.0.0.5:3000/").unwrap(),
            "http://10.0.0.5:3000"
        );
        assert!(validate_base_url("ftp://x").is_err());
        assert!(validate_base_url("10.0.0.5").is_err());
        assert!(validate_base_url("http://x/?a=b").is_err());
    }

    #[test]
    fn flags_win_over_the_file() {
        let (_dir, f) = file("port = 4000\ndb = \"from-file.db\"\n");
        let c = Config::resolve(&serve(&["--config", &f, "--port", "5000"])).unwrap();
        assert_eq!(c.listen.port(), 5000);
        assert_eq!(c.db, PathBuf::from("from-file.db"));
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let (_dir, f) = file("prot = 4000\n");
        let err = parse(["dragonfly", "--config", &f])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`prot`: unknown setting"), "{err}");
    }

    #[test]
    fn every_setting_can_come_from_the_file_and_is_checked_by_its_flag_parser() {
        let (_dir, f) = file(
            "tink_finish = \"kexec\"\ntinkerbell_namespace = \"tink\"\ntftp = true\n\
             heartbeat_secs = 5\ntink_final_action_timeout = \"90s\"\nhost = \"127.0.0.1\"\n",
        );
        let s = serve(&["--config", &f]);
        assert_eq!(s.tinkerbell.workflow.tink_finish, Finish::Kexec);
        assert_eq!(s.tinkerbell.namespace.tinkerbell_namespace, "tink");
        assert!(s.server.tftp);
        assert_eq!(s.server.heartbeat_secs, 5);
        assert_eq!(
            std::time::Duration::from(s.tinkerbell.workflow.tink_final_action_timeout),
            std::time::Duration::from_secs(90)
        );
        let (_dir, f) = file("tink_finish = \"sideways\"\n");
        let err = parse(["dragonfly", "--config", &f])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`tink_finish`"), "{err}");
        let (_dir, f) = file("port = \"many\"\n");
        assert!(parse(["dragonfly", "--config", &f]).is_err());
    }

    #[test]
    fn a_pair_may_be_split_between_flags_and_the_file_and_values_may_start_with_a_dash() {
        let (_dir, f) = file("tls_key = \"k.pem\"\nenrollment_secret = \"-starts-with-a-dash\"\n");
        let s = serve(&["--config", &f, "--tls-cert", "c.pem"]);
        assert_eq!(s.server.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(s.server.tls_key, Some(PathBuf::from("k.pem")));
        assert_eq!(
            s.server.enrollment_secret.as_deref(),
            Some("-starts-with-a-dash")
        );
        // Alone, the flag still needs its partner.
        assert!(parse(["dragonfly", "--tls-cert", "c.pem"]).is_err());
    }

    #[test]
    fn subcommands_read_the_file_for_their_own_settings_only() {
        let (_dir, f) = file("db = \"x.db\"\nport = 4000\n");
        let cli = parse([
            "dragonfly",
            "admin",
            "create-token",
            "--name",
            "n",
            "--config",
            &f,
        ])
        .unwrap();
        let Some(Command::Admin(AdminCommand::CreateToken { db, .. })) = cli.command else {
            panic!("not parsed as create-token");
        };
        assert_eq!(db.db, PathBuf::from("x.db"));
    }

    #[test]
    fn tinkerbell_flags_parse() {
        let s = serve(&[
            "--tinkerbell",
            "on",
            "--kubeconfig",
            "k.yaml",
            "--tinkerbell-namespace",
            "tink",
            "--tink-finish",
            "kexec",
            "--tink-final-action-timeout",
            "90s",
        ]);
        let t = &s.tinkerbell;
        assert_eq!(t.cluster.tinkerbell, Mode::On);
        assert_eq!(t.cluster.kubeconfig, Some(PathBuf::from("k.yaml")));
        assert_eq!(t.namespace.tinkerbell_namespace, "tink");
        assert_eq!(t.workflow.tink_finish, Finish::Kexec);
        assert_eq!(
            std::time::Duration::from(t.workflow.tink_final_action_timeout),
            std::time::Duration::from_secs(90)
        );
    }

    #[test]
    fn a_subcommand_shows_only_the_options_it_reads() {
        let mut cmd = Cli::command();
        let help = |path: &[&str], cmd: &mut clap::Command| {
            let mut c = cmd.clone();
            for p in path {
                c = c.find_subcommand(p).unwrap().clone();
            }
            c.render_long_help().to_string()
        };
        let manifests = help(&["tinkerbell", "manifests"], &mut cmd);
        assert!(manifests.contains("--tinkerbell-namespace"), "{manifests}");
        for other in [
            "--port",
            "--db",
            "--kubeconfig",
            "--tink-finish",
            "--hookos-url",
        ] {
            assert!(!manifests.contains(other), "manifests shows {other}");
        }
        let admin = help(&["admin", "create-token"], &mut cmd);
        assert!(admin.contains("--db"));
        assert!(!admin.contains("--port") && !admin.contains("--kubeconfig"));
        let serve = help(&["serve"], &mut cmd);
        for all in [
            "--port",
            "--db",
            "--kubeconfig",
            "--tink-finish",
            "--hookos-url",
        ] {
            assert!(serve.contains(all), "serve lacks {all}");
        }
    }

    #[test]
    fn the_connection_cap_leaves_descriptors_in_reserve() {
        let mut c = Config::for_tests(Path::new("/tmp/x.db"));
        c.fit_descriptors(1 << 20);
        assert_eq!(c.max_connections, MAX_CONNECTIONS);
        c.fit_descriptors(1024);
        assert_eq!(c.max_connections, 896);
    }

    #[test]
    fn the_declared_defaults_resolve() {
        let c = Config::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(c.listen.port(), 3000);
        assert_eq!(c.db, PathBuf::from("sqlite.db"));
        assert_eq!(c.offline_after_secs, 60);
        assert_eq!(c.hookos.console, "ttyS0,115200");
        Config::for_tests(Path::new("/tmp/x.db"));
    }
}
