//! The DHCP decisions, without sockets: who is asking (a PXE ROM, UEFI HTTP boot, iPXE, or
//! a plain client), what it should boot, and the reply that says so. Packets are parsed and
//! written by `dhcproto`; everything here is a pure function of its inputs, so the unit tests
//! and the fuzz target exercise exactly what the server runs.

use std::net::Ipv4Addr;

use dhcproto::v4::{
    Architecture, DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

pub use crate::config::UefiBinary;

/// Largest datagram read. A BOOTP/DHCP request fits in an Ethernet frame; anything longer is
/// not one (and is dropped unread).
pub const MAX_PACKET: usize = 1500;
/// Replies are padded to the BOOTP minimum: some PXE ROMs drop shorter ones.
const MIN_REPLY: usize = 300;

/// Why a datagram got no reply at all (logged at debug level, counted in the status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// Not a DHCP request we can read: truncated, garbage, a reply, not Ethernet.
    Malformed(String),
    /// A DHCP request that is not for this server (a plain client in proxy mode, a request
    /// to another server...).
    Ignored(&'static str),
}

/// The client firmware's kind, from options 60, 77 and 93.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// Legacy BIOS PXE ROM (architecture 0).
    Bios,
    /// UEFI x86-64 PXE (architecture 7, or 9 as some firmware sends).
    UefiX64,
    /// UEFI x86-64 HTTP boot (architecture 16, class `HTTPClient`).
    UefiHttpX64,
    /// Anything else: named by its number, never answered (no iPXE binary for it).
    Other(u16),
}

impl Firmware {
    pub fn label(self) -> String {
        match self {
            Firmware::Bios => "BIOS".into(),
            Firmware::UefiX64 => "UEFI x64".into(),
            Firmware::UefiHttpX64 => "UEFI x64 HTTP".into(),
            Firmware::Other(n) => format!("architecture {n}"),
        }
    }
}

/// dhcproto 0.15 *asserts* (in debug builds) the lengths of a few fixed-size options
/// instead of refusing them: option 80 (0 bytes), 81 (at least 3), 94 (3), 152-155 (4). The
/// fuzz target found it. Those lengths are checked here first, for each run of adjacent
/// instances of one option as dhcproto joins them (RFC 3396), so every build refuses such a
/// packet the same way.
fn unusual_option_length(bytes: &[u8]) -> Option<String> {
    let check = |code: u8, len: usize| {
        let ok = match code {
            80 => len == 0,
            81 => len >= 3,
            94 => len == 3,
            152..=155 => len == 4,
            _ => true,
        };
        (!ok).then(|| format!("option {code} is {len} bytes long"))
    };
    // The run being read: (code, summed length).
    let mut run: Option<(u8, usize)> = None;
    let mut i = 240; // after the fixed header and the magic cookie
    while i < bytes.len() {
        let code = bytes[i];
        if code == 0 || code == 255 {
            if let Some(bad) = run.take().and_then(|(c, n)| check(c, n)) {
                return Some(bad);
            }
            if code == 255 {
                return None;
            }
            i += 1;
            continue;
        }
        let Some(&len) = bytes.get(i + 1) else { break };
        run = match run {
            Some((c, n)) if c == code => Some((c, n + usize::from(len))),
            Some((c, n)) => {
                if let Some(bad) = check(c, n) {
                    return Some(bad);
                }
                Some((code, usize::from(len)))
            }
            None => Some((code, usize::from(len))),
        };
        i += 2 + usize::from(len);
    }
    run.and_then(|(c, n)| check(c, n))
}

/// A DHCP request, as far as the boot decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: MessageType,
    /// The client's hardware address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub chaddr: [u8; 6],
    pub xid: u32,
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub broadcast: bool,
    /// Sent option 60 `PXEClient...` or `HTTPClient...`.
    pub pxe: bool,
    /// Sent `HTTPClient` (UEFI HTTP boot): it wants a URL, not a TFTP file name.
    pub http: bool,
    /// Already running iPXE (user class `iPXE`, or iPXE's own option 175).
    pub ipxe: bool,
    pub firmware: Firmware,
    /// Option 97, echoed back as PXE requires.
    pub machine_id: Option<Vec<u8>>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54: the server the client chose (or is talking to).
    pub server_id: Option<Ipv4Addr>,
    /// Option 12, when printable.
    pub hostname: Option<String>,
    /// Option 82 from a relay agent, echoed in the reply as RFC 3046 requires.
    pub relay: Option<DhcpOption>,
}

/// Reads one datagram. Never panics, whatever the bytes.
pub fn parse(bytes: &[u8]) -> Result<Request, Dropped> {
    if bytes.len() > MAX_PACKET {
        return Err(Dropped::Malformed(format!(
            "{} bytes, too long",
            bytes.len()
        )));
    }
    if let Some(why) = unusual_option_length(bytes) {
        return Err(Dropped::Malformed(why));
    }
    let msg = Message::decode(&mut Decoder::new(bytes))
        .map_err(|e| Dropped::Malformed(format!("not DHCP: {e}")))?;
    if msg.opcode() != Opcode::BootRequest {
        return Err(Dropped::Ignored("not a request"));
    }
    // chaddr() slices by hlen: check it before asking (a hostile hlen would overrun).
    if msg.htype() != HType::Eth || msg.hlen() != 6 {
        return Err(Dropped::Malformed("not an Ethernet client".into()));
    }
    let mut chaddr = [0u8; 6];
    chaddr.copy_from_slice(msg.chaddr());
    if chaddr[0] & 1 == 1 || chaddr == [0; 6] {
        return Err(Dropped::Malformed("not a unicast hardware address".into()));
    }
    let opts = msg.opts();
    let kind = opts
        .msg_type()
        .ok_or(Dropped::Ignored("BOOTP without a DHCP message type"))?;
    let class = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(c)) => c.as_slice(),
        _ => &[],
    };
    let http = class.starts_with(b"HTTPClient");
    let pxe = http || class.starts_with(b"PXEClient");
    let user_class_ipxe = matches!(opts.get(OptionCode::UserClass),
        Some(DhcpOption::UserClass(u)) if u.windows(4).any(|w| w == b"iPXE"));
    // iPXE's encapsulated option 175 marks it too (even when a user class is configured).
    let ipxe_options = opts.get(OptionCode::Unknown(175)).is_some();
    let arch = match opts.get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(*a),
        _ => None,
    };
    // Without option 93, the class may still name the architecture ("PXEClient:Arch:00007").
    let arch = arch.or_else(|| {
        let text = std::str::from_utf8(class).ok()?;
        let digits = text.split("Arch:").nth(1)?.get(..5)?;
        digits.parse::<u16>().ok().map(Architecture)
    });
    let firmware = match arch {
        None | Some(Architecture::X86_Bios) => Firmware::Bios,
        Some(Architecture::X64 | Architecture::BC) => Firmware::UefiX64,
        Some(Architecture::X64_Http) => Firmware::UefiHttpX64,
        Some(Architecture(n)) => Firmware::Other(n),
    };
    Ok(Request {
        kind,
        mac: chaddr
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        chaddr,
        xid: msg.xid(),
        ciaddr: msg.ciaddr(),
        giaddr: msg.giaddr(),
        broadcast: msg.flags().broadcast(),
        pxe,
        http,
        ipxe: user_class_ipxe || ipxe_options,
        firmware,
        machine_id: match opts.get(OptionCode::ClientMachineIdentifier) {
            Some(DhcpOption::ClientMachineIdentifier(id)) if id.len() <= 17 => Some(id.clone()),
            _ => None,
        },
        requested_ip: match opts.get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => None,
        },
        server_id: match opts.get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
            _ => None,
        },
        hostname: match opts.get(OptionCode::Hostname) {
            Some(DhcpOption::Hostname(h))
                if h.len() <= 63 && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
            {
                Some(h.to_ascii_lowercase())
            }
            _ => None,
        },
        relay: opts.get(OptionCode::RelayAgentInformation).cloned(),
    })
}

/// What a PXE client is told to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// A file on this server's TFTP (BIOS and UEFI PXE ROMs).
    Tftp(&'static str),
    /// An HTTP URL: the iPXE script for iPXE, the EFI binary for UEFI HTTP boot.
    Http(String),
}

impl Boot {
    pub fn describe(&self) -> String {
        match self {
            Boot::Tftp(f) => format!("{f} over TFTP"),
            Boot::Http(u) => u.rsplit('/').next().unwrap_or(u).to_string() + " over HTTP",
        }
    }
}

/// Chooses the boot file: iPXE gets the boot script; BIOS `undionly.kpxe`; UEFI x64 the
/// chosen EFI binary over TFTP, or over HTTP for HTTP boot. `http_base` is this server's
/// `scheme://ip:port` (an IP: UEFI HTTP boot resolves no names given by a proxy).
/// `Err` names why there is nothing to boot.
pub fn choose(req: &Request, uefi: UefiBinary, http_base: &str) -> Result<Boot, String> {
    if req.ipxe {
        return Ok(Boot::Http(format!("{http_base}/boot/boot.ipxe")));
    }
    match req.firmware {
        Firmware::Bios if !req.http => Ok(Boot::Tftp("undionly.kpxe")),
        Firmware::UefiX64 if !req.http => Ok(Boot::Tftp(uefi.file())),
        Firmware::UefiHttpX64 | Firmware::UefiX64 => {
            Ok(Boot::Http(format!("{http_base}/boot/efi/{}", uefi.file())))
        }
        other => Err(format!("no iPXE binary for {}", other.label())),
    }
}

/// An address offered or acknowledged in full DHCP mode, with the network's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: u32,
}

/// Builds a reply to `req`: `kind` OFFER, ACK or NAK; with `lease` it hands out an address
/// (full mode), without it only boot information (proxyDHCP, `yiaddr` 0.0.0.0). `boot` is
/// omitted for clients that get no boot file.
pub fn reply(
    req: &Request,
    kind: MessageType,
    server: Ipv4Addr,
    lease: Option<&Lease>,
    boot: Option<&Boot>,
) -> Vec<u8> {
    let mut msg = Message::new_with_id(
        req.xid,
        Ipv4Addr::UNSPECIFIED,
        lease.map_or(Ipv4Addr::UNSPECIFIED, |l| l.ip),
        server,
        req.giaddr,
        &req.chaddr,
    );
    msg.set_opcode(Opcode::BootReply);
    msg.set_htype(HType::Eth);
    if kind == MessageType::Nak {
        msg.set_siaddr(Ipv4Addr::UNSPECIFIED);
    }
    if req.broadcast {
        msg.set_flags(Flags::default().set_broadcast());
    }
    if kind == MessageType::Ack && lease.is_none() {
        // A proxy ACK on port 4011, or an INFORM's: the client keeps its address.
        msg.set_ciaddr(req.ciaddr);
    }
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(server));
    if let Some(relay) = &req.relay {
        opts.insert(relay.clone());
    }
    if kind != MessageType::Nak {
        if let Some(l) = lease {
            opts.insert(DhcpOption::SubnetMask(l.netmask));
            opts.insert(DhcpOption::AddressLeaseTime(l.lease_secs));
            opts.insert(DhcpOption::Renewal(l.lease_secs / 2));
            opts.insert(DhcpOption::Rebinding(l.lease_secs / 8 * 7));
            if let Some(g) = l.gateway {
                opts.insert(DhcpOption::Router(vec![g]));
            }
            if !l.dns.is_empty() {
                opts.insert(DhcpOption::DomainNameServer(l.dns.clone()));
            }
        }
    }
    if let (Some(boot), true) = (boot, kind != MessageType::Nak) {
        // The class tells the firmware which kind of offer this is; PXE ROMs want it echoed.
        let class: &[u8] = if req.http {
            b"HTTPClient"
        } else {
            b"PXEClient"
        };
        opts.insert(DhcpOption::ClassIdentifier(class.to_vec()));
        if let Some(id) = &req.machine_id {
            opts.insert(DhcpOption::ClientMachineIdentifier(id.clone()));
        }
        if req.pxe && !req.http && !req.ipxe {
            // PXE discovery control (sub-option 6) = 8: boot the file named here, no boot
            // server discovery, no menu.
            opts.insert(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]));
        }
        match boot {
            Boot::Tftp(file) => {
                msg.set_fname_str(file);
                msg.set_sname_str(server.to_string());
            }
            Boot::Http(url) => {
                // dhcproto asserts the 128-byte field; URLs here are an IP, a port and a
                // fixed path (about 50 bytes), but a long one must not stop the server.
                if url.len() < 128 {
                    msg.set_fname_str(url);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(MIN_REPLY);
    // Writing into a Vec cannot fail; an option too long for one byte of length is split.
    if let Err(e) = msg.encode(&mut Encoder::new(&mut out)) {
        tracing::warn!(error = %e, "DHCP reply not encodable");
        return Vec::new();
    }
    if out.len() < MIN_REPLY {
        out.resize(MIN_REPLY, 0);
    }
    out
}

/// A DISCOVER as `client` sends it (a plain client has no PXE options): for probing a
/// network for DHCP servers.
pub fn discover(chaddr: [u8; 6], xid: u32, client: crate::config::ProbeAs) -> Vec<u8> {
    use crate::config::ProbeAs;
    let mut msg = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &chaddr,
    );
    msg.set_flags(Flags::default().set_broadcast());
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(MessageType::Discover));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
    ]));
    let (class, arch): (&[u8], u16) = match client {
        ProbeAs::Plain => (b"", 0),
        ProbeAs::Bios | ProbeAs::Ipxe => (b"PXEClient:Arch:00000:UNDI:002001", 0),
        ProbeAs::Uefi => (b"PXEClient:Arch:00007:UNDI:003016", 7),
        ProbeAs::UefiHttp => (b"HTTPClient:Arch:00016:UNDI:003001", 16),
    };
    if !class.is_empty() {
        opts.insert(DhcpOption::ClassIdentifier(class.to_vec()));
        opts.insert(DhcpOption::ClientSystemArchitecture(Architecture(arch)));
        let mut uuid = vec![0u8];
        uuid.extend_from_slice(&xid.to_be_bytes().repeat(4));
        opts.insert(DhcpOption::ClientMachineIdentifier(uuid));
    }
    if client == ProbeAs::Ipxe {
        opts.insert(DhcpOption::UserClass(b"iPXE".to_vec()));
    }
    let mut out = Vec::with_capacity(MIN_REPLY);
    if msg.encode(&mut Encoder::new(&mut out)).is_err() {
        return Vec::new();
    }
    if out.len() < MIN_REPLY {
        out.resize(MIN_REPLY, 0);
    }
    out
}

/// An OFFER seen by a probe: who offered what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub server: Ipv4Addr,
    pub address: Ipv4Addr,
    pub boot_file: Option<String>,
}

/// Reads a reply to the probe `xid`; `None` for anything else.
pub fn parse_offer(bytes: &[u8], xid: u32) -> Option<Offer> {
    if bytes.len() > MAX_PACKET || unusual_option_length(bytes).is_some() {
        return None;
    }
    let msg = Message::decode(&mut Decoder::new(bytes)).ok()?;
    if msg.opcode() != Opcode::BootReply
        || msg.xid() != xid
        || msg.opts().msg_type() != Some(MessageType::Offer)
    {
        return None;
    }
    let server = match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => *ip,
        _ => msg.siaddr(),
    };
    Some(Offer {
        server,
        address: msg.yiaddr(),
        boot_file: msg.fname().and_then(c_string),
    })
}

/// A NUL-terminated field as text; `None` when empty or not UTF-8.
fn c_string(field: &[u8]) -> Option<String> {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end])
        .ok()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const BASE: &str = "http://10.0.0.1:3000";

    /// A request as firmware sends it: `class` option 60, `arch` option 93, `user` option 77.
    fn request(
        kind: MessageType,
        class: Option<&str>,
        arch: Option<u16>,
        user: Option<&str>,
    ) -> Vec<u8> {
        let mut msg = Message::new_with_id(
            0xdead_beef,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &MAC,
        );
        msg.set_flags(Flags::default().set_broadcast());
        let o = msg.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        if let Some(c) = class {
            o.insert(DhcpOption::ClassIdentifier(c.as_bytes().to_vec()));
        }
        if let Some(a) = arch {
            o.insert(DhcpOption::ClientSystemArchitecture(Architecture(a)));
        }
        if let Some(u) = user {
            o.insert(DhcpOption::UserClass(u.as_bytes().to_vec()));
        }
        o.insert(DhcpOption::ClientMachineIdentifier(vec![0; 17]));
        let mut out = Vec::new();
        msg.encode(&mut Encoder::new(&mut out)).unwrap();
        out
    }

    fn decoded(bytes: &[u8]) -> Message {
        Message::decode(&mut Decoder::new(bytes)).unwrap()
    }

    #[test]
    fn the_boot_file_follows_the_firmware() {
        let cases = [
            (
                Some("PXEClient:Arch:00000:UNDI:002001"),
                Some(0),
                None,
                Boot::Tftp("undionly.kpxe"),
            ),
            (
                Some("PXEClient:Arch:00007:UNDI:003016"),
                Some(7),
                None,
                Boot::Tftp("snponly.efi"),
            ),
            (
                Some("PXEClient:Arch:00009:UNDI:003016"),
                Some(9),
                None,
                Boot::Tftp("snponly.efi"),
            ),
            (
                Some("HTTPClient:Arch:00016:UNDI:003001"),
                Some(16),
                None,
                Boot::Http(format!("{BASE}/boot/efi/snponly.efi")),
            ),
            (
                Some("PXEClient:Arch:00000:UNDI:002001"),
                Some(0),
                Some("iPXE"),
                Boot::Http(format!("{BASE}/boot/boot.ipxe")),
            ),
            (
                Some("PXEClient:Arch:00007:UNDI:003016"),
                Some(7),
                Some("iPXE"),
                Boot::Http(format!("{BASE}/boot/boot.ipxe")),
            ),
        ];
        for (class, arch, user, want) in cases {
            let req = parse(&request(MessageType::Discover, class, arch, user)).unwrap();
            assert!(req.pxe, "{class:?}");
            assert_eq!(
                choose(&req, UefiBinary::Snponly, BASE).unwrap(),
                want,
                "{class:?} {user:?}"
            );
        }
        let uefi = parse(&request(
            MessageType::Discover,
            Some("PXEClient"),
            Some(7),
            None,
        ))
        .unwrap();
        assert_eq!(
            choose(&uefi, UefiBinary::Ipxe, BASE).unwrap(),
            Boot::Tftp("ipxe.efi")
        );
    }

    #[test]
    fn architectures_without_an_ipxe_binary_get_nothing_and_a_reason() {
        for arch in [11, 6, 19] {
            let req = parse(&request(
                MessageType::Discover,
                Some("PXEClient"),
                Some(arch),
                None,
            ))
            .unwrap();
            let why = choose(&req, UefiBinary::Snponly, BASE).unwrap_err();
            assert!(why.contains(&format!("architecture {arch}")), "{why}");
        }
    }

    #[test]
    fn the_class_names_the_architecture_when_option_93_is_missing() {
        let req = parse(&request(
            MessageType::Discover,
            Some("PXEClient:Arch:00007:UNDI:003016"),
            None,
            None,
        ))
        .unwrap();
        assert_eq!(req.firmware, Firmware::UefiX64);
        let req = parse(&request(
            MessageType::Discover,
            Some("PXEClient"),
            None,
            None,
        ))
        .unwrap();
        assert_eq!(req.firmware, Firmware::Bios);
    }

    #[test]
    fn a_plain_client_is_not_pxe() {
        let req = parse(&request(
            MessageType::Discover,
            Some("android-dhcp-14"),
            None,
            None,
        ))
        .unwrap();
        assert!(!req.pxe && !req.ipxe);
        let req = parse(&request(MessageType::Discover, None, None, None)).unwrap();
        assert!(!req.pxe);
        assert_eq!(req.mac, "52:54:00:12:34:56");
    }

    #[test]
    fn a_proxy_offer_carries_boot_information_and_no_address() {
        let req = parse(&request(
            MessageType::Discover,
            Some("PXEClient:Arch:00007"),
            Some(7),
            None,
        ))
        .unwrap();
        let boot = choose(&req, UefiBinary::Snponly, BASE).unwrap();
        let bytes = reply(&req, MessageType::Offer, SERVER, None, Some(&boot));
        assert!(bytes.len() >= MIN_REPLY);
        let m = decoded(&bytes);
        assert_eq!(m.opcode(), Opcode::BootReply);
        assert_eq!(m.xid(), 0xdead_beef);
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.siaddr(), SERVER);
        assert_eq!(m.chaddr(), MAC);
        assert_eq!(c_string(m.fname().unwrap()).unwrap(), "snponly.efi");
        assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(
            m.opts().get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
        );
        assert_eq!(
            m.opts().get(OptionCode::VendorExtensions),
            Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255]))
        );
        assert!(m.opts().get(OptionCode::ClientMachineIdentifier).is_some());
        assert!(
            m.opts().get(OptionCode::SubnetMask).is_none(),
            "a proxy offers no network"
        );
        assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
    }

    #[test]
    fn an_http_boot_offer_names_a_url_and_the_http_class() {
        let req = parse(&request(
            MessageType::Discover,
            Some("HTTPClient:Arch:00016"),
            Some(16),
            None,
        ))
        .unwrap();
        let boot = choose(&req, UefiBinary::Ipxe, BASE).unwrap();
        let m = decoded(&reply(&req, MessageType::Offer, SERVER, None, Some(&boot)));
        assert_eq!(
            c_string(m.fname().unwrap()).unwrap(),
            "http://10.0.0.1:3000/boot/efi/ipxe.efi"
        );
        assert_eq!(
            m.opts().get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
        );
        assert!(m.opts().get(OptionCode::VendorExtensions).is_none());
    }

    #[test]
    fn a_full_offer_carries_the_network_and_a_nak_nothing_else() {
        let req = parse(&request(MessageType::Discover, None, None, None)).unwrap();
        let lease = Lease {
            ip: Ipv4Addr::new(10, 0, 0, 100),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            gateway: Some(SERVER),
            dns: vec![Ipv4Addr::new(10, 0, 0, 53)],
            lease_secs: 3600,
        };
        let m = decoded(&reply(&req, MessageType::Offer, SERVER, Some(&lease), None));
        assert_eq!(m.yiaddr(), lease.ip);
        assert_eq!(
            m.opts().get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(3600))
        );
        assert_eq!(
            m.opts().get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![SERVER]))
        );
        assert_eq!(
            m.fname().and_then(c_string),
            None,
            "no boot file for a plain client"
        );
        assert!(m.opts().get(OptionCode::ClassIdentifier).is_none());
        let nak = decoded(&reply(&req, MessageType::Nak, SERVER, None, None));
        assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn bad_datagrams_are_refused_with_a_reason() {
        let good = request(MessageType::Discover, Some("PXEClient"), Some(0), None);
        assert!(matches!(parse(&[]), Err(Dropped::Malformed(_))));
        for n in [1, 20, 235, 239] {
            assert!(
                matches!(parse(&good[..n]), Err(Dropped::Malformed(_))),
                "{n} bytes"
            );
        }
        assert!(matches!(
            parse(&vec![0u8; MAX_PACKET + 1]),
            Err(Dropped::Malformed(_))
        ));
        let mut bad_hlen = good.clone();
        bad_hlen[2] = 200; // hlen
        assert!(matches!(parse(&bad_hlen), Err(Dropped::Malformed(_))));
        let mut multicast = good.clone();
        multicast[28] = 0x01;
        assert!(matches!(parse(&multicast), Err(Dropped::Malformed(_))));
        // Lengths dhcproto would assert instead of refusing (found by the fuzz target).
        for (code, len) in [(94u8, 2u8), (80, 1), (81, 2), (152, 3)] {
            let mut odd = good[..good.len() - 1].to_vec(); // without the end option
            odd.extend([code, len]);
            odd.extend(std::iter::repeat_n(1u8, usize::from(len)));
            odd.push(255);
            let got = parse(&odd);
            assert!(
                matches!(&got, Err(Dropped::Malformed(m)) if m.contains(&format!("option {code}"))),
                "{got:?}"
            );
        }
        let mut twice = good[..good.len() - 1].to_vec();
        twice.extend([94, 3, 1, 2, 1, 94, 3, 1, 2, 1, 255]);
        assert!(
            matches!(parse(&twice), Err(Dropped::Malformed(_))),
            "repeats are joined"
        );
        let mut a_reply = good.clone();
        a_reply[0] = 2;
        assert_eq!(parse(&a_reply), Err(Dropped::Ignored("not a request")));
    }

    #[test]
    fn a_probe_asks_as_each_kind_of_firmware() {
        use crate::config::ProbeAs;
        let want = [
            (ProbeAs::Bios, Boot::Tftp("undionly.kpxe")),
            (ProbeAs::Uefi, Boot::Tftp("snponly.efi")),
            (
                ProbeAs::UefiHttp,
                Boot::Http(format!("{BASE}/boot/efi/snponly.efi")),
            ),
            (ProbeAs::Ipxe, Boot::Http(format!("{BASE}/boot/boot.ipxe"))),
        ];
        for (client, boot) in want {
            let req = parse(&discover(MAC, 1, client)).unwrap();
            assert!(req.pxe, "{client:?}");
            assert_eq!(
                choose(&req, UefiBinary::Snponly, BASE).unwrap(),
                boot,
                "{client:?}"
            );
        }
    }

    #[test]
    fn a_probe_reads_only_offers_to_its_own_discover() {
        let d = discover(MAC, 7, crate::config::ProbeAs::Plain);
        let req = parse(&d).unwrap();
        assert!(!req.pxe && req.broadcast && req.kind == MessageType::Discover);
        let lease = Lease {
            ip: Ipv4Addr::new(10, 0, 0, 100),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            gateway: None,
            dns: vec![],
            lease_secs: 60,
        };
        let offer = reply(&req, MessageType::Offer, SERVER, Some(&lease), None);
        assert_eq!(
            parse_offer(&offer, 7),
            Some(Offer {
                server: SERVER,
                address: lease.ip,
                boot_file: None
            })
        );
        assert_eq!(parse_offer(&offer, 8), None);
        assert_eq!(parse_offer(&d, 7), None, "a request is not an offer");
    }
}
