//! Looks for DHCP servers on an interface the way a plain client would: one broadcast
//! DISCOVER (no PXE options, a random locally administered MAC), then every OFFER to it for a
//! while. Full DHCP mode runs it before starting; `dragonfly dhcp probe` runs it by hand.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use anyhow::Context;

use super::packet::{self, Offer};
use crate::config::ProbeAs;

/// Offers kept at most (a hostile network could send any number).
const MAX_OFFERS: usize = 64;

/// The OFFERs seen on `interface` within `wait`, one per server, to a DISCOVER sent as
/// `client` from `mac` (default: a random locally administered address).
pub async fn probe(
    interface: &str,
    wait: Duration,
    client: ProbeAs,
    mac: Option<[u8; 6]>,
) -> anyhow::Result<Vec<Offer>> {
    let socket = super::bind_on(interface, 68, || {
        format!("cannot listen on {interface} port 68 for DHCP offers")
    })?;
    let mac = mac.unwrap_or_else(|| {
        let mut m: [u8; 6] = rand::random();
        m[0] = (m[0] | 0x02) & 0xfe;
        m
    });
    let xid: u32 = rand::random();
    socket
        .send_to(
            &packet::discover(mac, xid, client),
            SocketAddrV4::new(Ipv4Addr::BROADCAST, 67),
        )
        .await
        .with_context(|| format!("cannot send a DHCP DISCOVER on {interface}"))?;
    let mut offers: Vec<Offer> = Vec::new();
    let mut buf = vec![0u8; packet::MAX_PACKET + 1];
    let deadline = tokio::time::Instant::now() + wait;
    while offers.len() < MAX_OFFERS {
        let got = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await;
        let Ok(Ok((n, _))) = got else { break };
        if let Some(offer) = packet::parse_offer(&buf[..n], xid) {
            if !offers.iter().any(|o| o.server == offer.server) {
                offers.push(offer);
            }
        }
    }
    Ok(offers)
}
