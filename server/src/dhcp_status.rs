//! What Dragonfly's DHCP service is doing, for the dashboard and /healthz: its mode, its
//! interface, counters, and the last PXE requests it saw with what it answered (or why it
//! did not). Written by `boot::dhcp`, read by the faces; bounded in memory.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use utoipa::ToSchema;

/// Requests kept for display.
pub const RECENT: usize = 20;

/// One PXE request and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PxeSeen {
    /// RFC 3339.
    pub at: String,
    pub mac: String,
    /// `BIOS`, `UEFI x64`, `UEFI x64 HTTP`, `iPXE (BIOS)`, `architecture N`.
    pub firmware: String,
    /// The DHCP message: DISCOVER, REQUEST, INFORM.
    pub message: String,
    /// What was answered (`offered snponly.efi over TFTP`), or why nothing was.
    pub answer: String,
}

/// The DHCP service as /healthz and the dashboard show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DhcpView {
    /// `off`, `proxy` (boot information beside the site's DHCP) or `full` (addresses too).
    pub mode: String,
    pub interface: Option<String>,
    #[schema(value_type = Option<String>)]
    pub server_ip: Option<Ipv4Addr>,
    /// Requests answered since start.
    pub answered: u64,
    /// Requests deliberately not answered (not PXE in proxy mode, "do not PXE", rate limit).
    pub ignored: u64,
    /// Datagrams that were not DHCP requests (malformed, truncated, oversized).
    pub dropped: u64,
    /// The last PXE requests, newest first.
    pub recent: Vec<PxeSeen>,
}

#[derive(Debug, Default)]
pub struct DhcpStatus {
    mode: &'static str,
    interface: Option<String>,
    server_ip: Option<Ipv4Addr>,
    answered: AtomicU64,
    ignored: AtomicU64,
    dropped: AtomicU64,
    recent: Mutex<VecDeque<PxeSeen>>,
}

impl DhcpStatus {
    pub fn off() -> DhcpStatus {
        DhcpStatus {
            mode: "off",
            ..DhcpStatus::default()
        }
    }

    pub fn on(mode: &'static str, interface: &str, server_ip: Ipv4Addr) -> DhcpStatus {
        DhcpStatus {
            mode,
            interface: Some(interface.to_string()),
            server_ip: Some(server_ip),
            ..DhcpStatus::default()
        }
    }

    pub fn is_on(&self) -> bool {
        self.mode != "off"
    }

    /// A PXE request seen: `answered` says whether a reply went out.
    pub fn saw(&self, seen: PxeSeen, answered: bool) {
        if answered {
            self.answered.fetch_add(1, Ordering::Relaxed);
        } else {
            self.ignored.fetch_add(1, Ordering::Relaxed);
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT {
            recent.pop_back();
        }
        recent.push_front(seen);
    }

    /// A request not answered and not worth a line (a plain client in proxy mode).
    pub fn ignored(&self) {
        self.ignored.fetch_add(1, Ordering::Relaxed);
    }

    /// A datagram that was not a readable DHCP request.
    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn view(&self) -> DhcpView {
        DhcpView {
            mode: self.mode.to_string(),
            interface: self.interface.clone(),
            server_ip: self.server_ip,
            answered: self.answered.load(Ordering::Relaxed),
            ignored: self.ignored.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            recent: self
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_keeps_the_newest_and_stays_bounded() {
        let s = DhcpStatus::on("proxy", "eth1", Ipv4Addr::new(10, 0, 0, 1));
        for i in 0..(RECENT + 5) {
            s.saw(
                PxeSeen {
                    at: String::new(),
                    mac: format!("{i}"),
                    firmware: "BIOS".into(),
                    message: "DISCOVER".into(),
                    answer: "x".into(),
                },
                i % 2 == 0,
            );
        }
        s.dropped();
        let v = s.view();
        assert_eq!(v.recent.len(), RECENT);
        assert_eq!(v.recent[0].mac, format!("{}", RECENT + 4));
        assert_eq!((v.answered, v.ignored, v.dropped), (13, 12, 1));
        assert_eq!(v.mode, "proxy");
        assert!(!DhcpStatus::off().is_on());
    }
}
