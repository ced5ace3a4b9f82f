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
/// Hardware addresses not yet known as machines whose DHCP steps are kept for the timeline
/// they will have once they register, and how many steps each, and for how long.
const PENDING_MACS: usize = 4096;
const PENDING_STEPS: usize = 4;
const PENDING_MS: i64 = 15 * 60 * 1000;

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
    /// Steps of clients that are not machines yet, by MAC: (first seen ms, steps).
    pending: Mutex<std::collections::HashMap<String, (i64, Vec<PxeSeen>)>>,
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

    /// Keeps a step of a client not known as a machine, for its timeline once it registers.
    /// Bounded: at most [`PENDING_STEPS`] per MAC, [`PENDING_MACS`] MACs, 15 minutes.
    pub fn pending(&self, seen: &PxeSeen, now_ms: i64) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if p.len() >= PENDING_MACS && !p.contains_key(&seen.mac) {
            p.retain(|_, (at, _)| now_ms - *at < PENDING_MS);
            if p.len() >= PENDING_MACS {
                return;
            }
        }
        let entry = p
            .entry(seen.mac.clone())
            .or_insert_with(|| (now_ms, Vec::new()));
        if entry.1.len() < PENDING_STEPS {
            entry.1.push(seen.clone());
        }
    }

    /// The steps kept for `mac` (oldest first), forgotten here.
    pub fn take_pending(&self, mac: &str, now_ms: i64) -> Vec<PxeSeen> {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match p.remove(mac) {
            Some((at, steps)) if now_ms - at < PENDING_MS => steps,
            _ => Vec::new(),
        }
    }

    /// A request answered and not worth a line (a plain client's address in full mode).
    pub fn answered(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
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

    #[test]
    fn steps_of_unknown_clients_wait_for_their_registration_bounded() {
        let s = DhcpStatus::on("proxy", "eth1", Ipv4Addr::new(10, 0, 0, 1));
        let seen = |mac: &str| PxeSeen {
            at: String::new(),
            mac: mac.into(),
            firmware: "BIOS".into(),
            message: "DISCOVER".into(),
            answer: "offered".into(),
        };
        for _ in 0..10 {
            s.pending(&seen("a"), 0);
        }
        assert_eq!(s.take_pending("a", 1000).len(), PENDING_STEPS);
        assert!(s.take_pending("a", 1000).is_empty(), "taken once");
        s.pending(&seen("b"), 0);
        assert!(s.take_pending("b", PENDING_MS + 1).is_empty(), "too old");
        for i in 0..(PENDING_MACS + 10) {
            s.pending(&seen(&format!("m{i}")), 0);
        }
        assert_eq!(s.pending.lock().unwrap().len(), PENDING_MACS);
    }
}
