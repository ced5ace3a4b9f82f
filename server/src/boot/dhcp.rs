//! Dragonfly's own DHCP service on one interface (`--dhcp proxy|full`).
//!
//! **proxy**: beside the site's DHCP server. Only PXE clients (option 60 `PXEClient` or
//! `HTTPClient`, or iPXE) are answered, with boot information and never an address: an OFFER
//! on port 67 to their DISCOVER, an ACK on port 4011 to the request PXE firmware and iPXE send
//! there after taking the site's address. **full**: the network's only DHCP server, on an
//! isolated provisioning network or in a lab: addresses from a pool, leases in SQLite,
//! reservations per machine, the same boot information for PXE clients. It refuses to start
//! when another DHCP server answers on the interface (unless `--dhcp-force`).
//!
//! A machine set to "do not PXE" gets no boot answer at all. Every datagram is bounded
//! (1,500 bytes), parsed by `dhcproto` (never a panic: the fuzz target `dhcp_packet` holds it
//! to that), and rate-limited per hardware address and overall; at most 256 requests per
//! socket are answered at once, so a flood costs bounded memory.

pub mod packet;
pub mod probe;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dhcproto::v4::MessageType;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::net::UdpSocket;

use crate::clock::rfc3339;
use crate::config::{Dhcp, DhcpMode, UefiBinary};
use crate::dhcp_status::{DhcpStatus, PxeSeen};
use crate::machines::Machines;
use crate::machines::netboot::PxeMode;
use packet::{Boot, Dropped, Lease, Request};

/// PXE firmware sends its boot-server request here (after taking an address elsewhere).
pub const PXE_PORT: u16 = 4011;
/// Requests per second one hardware address may make (PXE retries every few seconds; a
/// booting iPXE asks a handful of times).
const PER_MAC_PER_SEC: u32 = 4;
const PER_MAC_BURST: u32 = 10;
/// Requests per second over all clients: a rack powering on at once stays well under it.
const TOTAL_PER_SEC: u32 = 5_000;
/// Hardware addresses the per-MAC limiter tracks at once; past it, idle ones are forgotten,
/// and new ones wait until there is room (a flood of random MACs cannot grow memory).
const MAX_TRACKED: usize = 16_384;
/// Requests being answered at once, per socket.
const MAX_IN_FLIGHT: usize = 256;
/// How long a full-mode OFFER holds its address for the client's REQUEST.
const OFFER_HOLD_SECS: u32 = 60;
/// How long the start-up probe listens for other DHCP servers.
/// (dnsmasq, for one, pings an address for 3 s before offering it.)
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// The running service's shared parts.
struct Service {
    cfg: Dhcp,
    machines: Machines,
    status: Arc<DhcpStatus>,
    /// `scheme://server-ip:port`: where boot scripts and EFI binaries are fetched.
    http_base: String,
    limiter: Limiter,
}

/// Requests admitted per hardware address and overall, in bounded memory.
pub struct Limiter {
    per_mac: DefaultKeyedRateLimiter<[u8; 6]>,
    total: DefaultDirectRateLimiter,
    max_tracked: usize,
}

impl Limiter {
    pub fn new(
        per_mac_per_sec: u32,
        per_mac_burst: u32,
        total_per_sec: u32,
        max_tracked: usize,
    ) -> Limiter {
        let quota = |per_sec: u32, burst: u32| {
            Quota::per_second(NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
        };
        Limiter {
            per_mac: RateLimiter::keyed(quota(per_mac_per_sec, per_mac_burst)),
            total: RateLimiter::direct(quota(total_per_sec, total_per_sec)),
            max_tracked,
        }
    }

    /// Whether a request from `mac` may be answered now.
    /// One client's flood spends its own budget, not everyone's: per MAC first.
    pub fn admit(&self, mac: &[u8; 6]) -> bool {
        if self.per_mac.len() >= self.max_tracked {
            self.per_mac.retain_recent();
            if self.per_mac.len() >= self.max_tracked {
                return false;
            }
        }
        self.per_mac.check_key(mac).is_ok() && self.total.check().is_ok()
    }

    /// Forgets addresses whose budget is full again.
    pub fn tidy(&self) {
        self.per_mac.retain_recent();
        self.per_mac.shrink_to_fit();
    }

    /// Hardware addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.per_mac.len()
    }
}

/// Opens the sockets (after the probe, in full mode) and serves until `stop` turns true.
/// Errors here stop the server's start: a DHCP service asked for and not running is loud.
pub async fn start(
    cfg: Dhcp,
    machines: Machines,
    status: Arc<DhcpStatus>,
    http_base: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if cfg.mode == DhcpMode::Full {
        let others: Vec<_> = probe::probe(
            &cfg.interface,
            PROBE_WAIT,
            crate::config::ProbeAs::Plain,
            None,
        )
        .await
        .with_context(|| format!("cannot probe {} for other DHCP servers", cfg.interface))?
        .into_iter()
        .filter(|o| o.server != cfg.server_ip)
        .collect();
        if !others.is_empty() {
            let list = others
                .iter()
                .map(|o| format!("{} (offered {})", o.server, o.address))
                .collect::<Vec<_>>()
                .join(", ");
            if cfg.force {
                tracing::warn!(interface = %cfg.interface, servers = %list,
                    "another DHCP server answers here; starting anyway (--dhcp-force)");
            } else {
                anyhow::bail!(
                    "--dhcp full: another DHCP server answers on {}: {list}. Two servers \
                     handing out addresses break a network: use --dhcp proxy beside it, or \
                     --dhcp-force if you are sure",
                    cfg.interface
                );
            }
        }
    }
    let main = bind(&cfg.interface, 67)?;
    let pxe = match cfg.mode {
        DhcpMode::Proxy => Some(bind(&cfg.interface, PXE_PORT)?),
        _ => None,
    };
    tracing::info!(
        mode = cfg.mode.as_str(),
        interface = %cfg.interface,
        server_ip = %cfg.server_ip,
        pool = ?cfg.pool.as_ref().map(|p| format!("{}-{}", p.first, p.last)),
        "DHCP ready"
    );
    let service = Arc::new(Service {
        cfg,
        machines,
        status,
        http_base,
        limiter: Limiter::new(PER_MAC_PER_SEC, PER_MAC_BURST, TOTAL_PER_SEC, MAX_TRACKED),
    });
    tokio::spawn(serve(service.clone(), main, 67, stop.clone()));
    if let Some(socket) = pxe {
        tokio::spawn(serve(service, socket, PXE_PORT, stop));
    }
    Ok(())
}

fn bind(interface: &str, port: u16) -> anyhow::Result<UdpSocket> {
    bind_on(interface, port, || {
        format!("cannot listen for DHCP on {interface} port {port} (--dhcp-interface)")
    })
}

/// A UDP socket on `0.0.0.0:port` that sees only `interface`'s traffic and may broadcast;
/// `what` names the failure.
pub(crate) fn bind_on(
    interface: &str,
    port: u16,
    what: impl Fn() -> String,
) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let what = &what;
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).with_context(what)?;
    s.set_reuse_address(true).with_context(what)?;
    s.set_broadcast(true).with_context(what)?;
    // Room for a burst of requests (the kernel caps it at net.core.rmem_max).
    let _ = s.set_recv_buffer_size(1 << 20);
    s.bind_device(Some(interface.as_bytes()))
        .with_context(what)?;
    s.set_nonblocking(true).with_context(what)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).into())
        .with_context(what)?;
    UdpSocket::from_std(s.into()).with_context(what)
}

async fn serve(
    service: Arc<Service>,
    socket: UdpSocket,
    port: u16,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let stopped = stopped(stop);
    tokio::pin!(stopped);
    let mut buf = vec![0u8; packet::MAX_PACKET + 1];
    let mut tidy = tokio::time::interval(Duration::from_secs(30));
    loop {
        let (n, peer) = tokio::select! {
            () = &mut stopped => return,
            _ = tidy.tick() => {
                service.limiter.tidy();
                continue;
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, port, "DHCP receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let req = match packet::parse(&buf[..n]) {
            Ok(req) => req,
            Err(Dropped::Malformed(why)) => {
                tracing::debug!(%peer, bytes = n, %why, "DHCP datagram dropped");
                service.status.dropped();
                continue;
            }
            Err(Dropped::Ignored(why)) => {
                tracing::debug!(%peer, why, "DHCP datagram ignored");
                service.status.ignored();
                continue;
            }
        };
        if !service.limiter.admit(&req.chaddr) {
            tracing::debug!(%peer, mac = %req.mac, "DHCP request over the rate limit: dropped");
            service.status.ignored();
            continue;
        }
        // Answered concurrently (a rack powering on at once must not wait in the socket's
        // small buffer behind one database lookup after another), at most MAX_IN_FLIGHT at a
        // time: past that a request is dropped, as a full buffer would drop it.
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            tracing::debug!(%peer, mac = %req.mac, "DHCP busy: request dropped");
            service.status.ignored();
            continue;
        };
        let (service, socket) = (service.clone(), socket.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Some((bytes, to)) = service.handle(&req, port, peer).await {
                if let Err(e) = socket.send_to(&bytes, to).await {
                    tracing::warn!(%to, error = %e, "DHCP reply not sent");
                }
            }
        });
    }
}

async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl Service {
    /// The reply to one request and where it goes, or `None` (with the reason recorded).
    async fn handle(
        &self,
        req: &Request,
        port: u16,
        peer: SocketAddr,
    ) -> Option<(Vec<u8>, SocketAddr)> {
        let full = self.cfg.mode == DhcpMode::Full;
        let message = match req.kind {
            MessageType::Discover => "DISCOVER",
            MessageType::Request => "REQUEST",
            MessageType::Inform => "INFORM",
            MessageType::Release | MessageType::Decline if full && port == 67 => {
                // Only for this server's leases.
                if req.server_id.is_some_and(|s| s != self.cfg.server_ip) {
                    return None;
                }
                let r = if req.kind == MessageType::Decline {
                    // The client found the address in use: out of the pool for a lease time.
                    self.machines
                        .decline_lease(&req.mac, req.requested_ip, self.cfg.lease_secs)
                        .await
                } else {
                    self.machines.release_lease(&req.mac).await
                };
                if let Err(e) = r {
                    tracing::warn!(mac = %req.mac, error = %e, "DHCP lease not released");
                }
                return None;
            }
            _ => {
                self.status.ignored();
                return None;
            }
        };
        // proxyDHCP: only PXE clients, and on port 67 only their DISCOVER (the REQUEST there
        // is for the site's server). Port 4011 takes REQUEST and INFORM.
        if !full {
            let wanted = req.pxe || req.ipxe;
            let on_port = if port == PXE_PORT {
                req.kind != MessageType::Discover
            } else {
                req.kind == MessageType::Discover
            };
            if !wanted || !on_port {
                tracing::debug!(mac = %req.mac, message, pxe = req.pxe, "not for the proxy");
                self.status.ignored();
                return None;
            }
        }
        let client = match self.machines.dhcp_client(&req.mac).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(mac = %req.mac, error = %e, "DHCP: machine lookup failed");
                return None;
            }
        };
        let firmware = if req.ipxe {
            format!("iPXE ({})", req.firmware.label())
        } else {
            req.firmware.label()
        };
        // The boot answer, or why there is none.
        let boot: Result<Boot, String> = if !(req.pxe || req.ipxe) {
            Err("not a PXE client".into())
        } else if client.as_ref().is_some_and(|c| c.pxe == PxeMode::Off) {
            Err("PXE is off for this machine".into())
        } else {
            let uefi = match client.as_ref().map(|c| c.pxe) {
                Some(PxeMode::IpxeEfi) => UefiBinary::Ipxe,
                _ => self.cfg.uefi,
            };
            packet::choose(req, uefi, &self.http_base)
        };
        let (kind, lease) = if full {
            match self.address(req).await {
                Ok(v) => v,
                Err(why) => return self.refuse(req, &client, &firmware, message, why).await,
            }
        } else if let Err(why) = &boot {
            return self
                .refuse(req, &client, &firmware, message, why.clone())
                .await;
        } else if req.kind == MessageType::Discover {
            (MessageType::Offer, None)
        } else {
            (MessageType::Ack, None)
        };
        let bytes = packet::reply(
            req,
            kind,
            self.cfg.server_ip,
            lease.as_ref(),
            boot.as_ref().ok(),
        );
        if bytes.is_empty() {
            return None;
        }
        let verb = match kind {
            MessageType::Offer => "offered",
            MessageType::Ack => "acknowledged",
            _ => "refused (NAK)",
        };
        let mut answer = verb.to_string();
        if let Some(l) = &lease {
            answer.push_str(&format!(" {}", l.ip));
        }
        match &boot {
            Ok(b) if kind != MessageType::Nak => answer.push_str(&format!(" {}", b.describe())),
            Err(why) if req.pxe || req.ipxe => answer.push_str(&format!(" (no boot file: {why})")),
            _ => {}
        }
        if req.pxe || req.ipxe || client.is_some() {
            self.record(req, &client, &firmware, message, answer, true)
                .await;
        } else {
            tracing::debug!(mac = %req.mac, message, %answer, "DHCP");
            self.status.answered();
        }
        // RFC 2131 4.1: to the relay; else to a client that has an address (RENEW,
        // INFORM) at that address; else broadcast (it has none yet). A NAK is broadcast.
        let to = if port == PXE_PORT {
            peer
        } else if !req.giaddr.is_unspecified() {
            SocketAddr::V4(SocketAddrV4::new(req.giaddr, 67))
        } else if !req.ciaddr.is_unspecified() && kind != MessageType::Nak {
            SocketAddr::V4(SocketAddrV4::new(req.ciaddr, 68))
        } else {
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, 68))
        };
        Some((bytes, to))
    }

    /// Full mode: the address for this request, as (OFFER | ACK | NAK, lease).
    async fn address(&self, req: &Request) -> Result<(MessageType, Option<Lease>), String> {
        let Some(pool) = &self.cfg.pool else {
            return Err("no pool".into());
        };
        if !req.giaddr.is_unspecified() && !pool.in_subnet(req.giaddr) {
            // The pool is this interface's subnet: useless to a client behind a relay elsewhere.
            return Err(format!(
                "relayed from {}, outside the pool's subnet",
                req.giaddr
            ));
        }
        let lease_for = |ip| Lease {
            ip,
            netmask: pool.netmask,
            gateway: self.cfg.gateway,
            dns: self.cfg.dns.clone(),
            lease_secs: self.cfg.lease_secs,
        };
        match req.kind {
            MessageType::Discover => {
                let got = self
                    .machines
                    .lease(
                        &req.mac,
                        pool,
                        req.requested_ip,
                        OFFER_HOLD_SECS,
                        req.hostname.clone(),
                        false,
                    )
                    .await
                    .map_err(|e| format!("lease not stored: {e}"))?;
                let ip = got.ok_or("the address pool is exhausted")?;
                Ok((MessageType::Offer, Some(lease_for(ip))))
            }
            MessageType::Request => {
                if req.server_id.is_some_and(|s| s != self.cfg.server_ip) {
                    // It chose another server's offer: free what we held for it.
                    let _ = self.machines.release_lease(&req.mac).await;
                    return Err("it chose another server".into());
                }
                let wanted = req
                    .requested_ip
                    .or((!req.ciaddr.is_unspecified()).then_some(req.ciaddr))
                    .ok_or("a REQUEST naming no address")?;
                let got = self
                    .machines
                    .lease(
                        &req.mac,
                        pool,
                        Some(wanted),
                        self.cfg.lease_secs,
                        req.hostname.clone(),
                        true,
                    )
                    .await
                    .map_err(|e| format!("lease not stored: {e}"))?;
                match got {
                    Some(ip) if ip == wanted => Ok((MessageType::Ack, Some(lease_for(ip)))),
                    _ => Ok((MessageType::Nak, None)),
                }
            }
            // INFORM: the client has an address; it wants settings (and boot information).
            _ => Ok((MessageType::Ack, None)),
        }
    }

    /// Records why `req` gets no answer; `None` (nothing to send).
    async fn refuse(
        &self,
        req: &Request,
        client: &Option<crate::machines::netboot::DhcpClient>,
        firmware: &str,
        message: &'static str,
        why: String,
    ) -> Option<(Vec<u8>, SocketAddr)> {
        let answer = format!("no answer: {why}");
        self.record(req, client, firmware, message, answer, false)
            .await;
        None
    }

    async fn record(
        &self,
        req: &Request,
        client: &Option<crate::machines::netboot::DhcpClient>,
        firmware: &str,
        message: &'static str,
        answer: String,
        answered: bool,
    ) {
        tracing::info!(mac = %req.mac, %firmware, message, %answer, "DHCP");
        if let Some(c) = client {
            let key = if answered { "dhcp" } else { "dhcp-no-answer" };
            self.machines
                .boot_step(
                    &c.machine_id,
                    key,
                    format!("DHCP {message} ({firmware}): {answer}"),
                )
                .await;
        }
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let seen = PxeSeen {
            at: rfc3339(now),
            mac: req.mac.clone(),
            firmware: firmware.to_string(),
            message: message.to_string(),
            answer,
        };
        if client.is_none() {
            // Not a machine yet: these steps go on its timeline when it registers.
            self.status.pending(&seen, now);
        }
        self.status.saw(seen, answered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_is_held_to_its_burst() {
        let l = Limiter::new(1, 5, 10_000, 100);
        let mac = [2, 0, 0, 0, 0, 1];
        let admitted = (0..50).filter(|_| l.admit(&mac)).count();
        assert_eq!(admitted, 5);
        assert!(l.admit(&[2, 0, 0, 0, 0, 2]), "others are not held back");
    }

    #[test]
    fn a_flood_of_new_addresses_is_tracked_in_bounded_memory() {
        let l = Limiter::new(1, 5, 1_000_000, 1_000);
        let mut admitted = 0;
        for i in 0..20_000u32 {
            let b = i.to_be_bytes();
            if l.admit(&[2, 0, b[0], b[1], b[2], b[3]]) {
                admitted += 1;
            }
            assert!(l.tracked() <= 1_000);
        }
        assert_eq!(admitted, 1_000, "new addresses wait once the table is full");
    }

    #[test]
    fn everyone_together_is_held_to_the_total() {
        let l = Limiter::new(100, 100, 50, 100_000);
        let admitted = (0..1_000u32)
            .filter(|i| {
                let b = i.to_be_bytes();
                l.admit(&[2, 0, b[0], b[1], b[2], b[3]])
            })
            .count();
        assert_eq!(admitted, 50);
    }
}
