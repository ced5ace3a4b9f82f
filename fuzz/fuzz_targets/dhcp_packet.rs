//! The DHCP packet path on arbitrary datagrams: `packet::parse` never panics; for what it
//! accepts, choosing a boot file and writing every kind of reply never panics either, and
//! each reply parses back as a BOOTREPLY to the same client (a probe reads it as an offer
//! when it is one).

#![no_main]

use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;
use dragonfly::boot::dhcp::packet::{self, Lease};
use dragonfly::config::UefiBinary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = packet::parse_offer(data, 0);
    let Ok(req) = packet::parse(data) else {
        return;
    };
    assert_eq!(req.mac.len(), 17);
    let server = Ipv4Addr::new(10, 0, 0, 1);
    let boot = packet::choose(&req, UefiBinary::Snponly, "http://10.0.0.1:3000").ok();
    let lease = Lease {
        ip: Ipv4Addr::new(10, 0, 0, 100),
        netmask: Ipv4Addr::new(255, 255, 255, 0),
        gateway: Some(server),
        dns: vec![server],
        lease_secs: 3600,
    };
    for (kind, lease) in [
        (MessageType::Offer, None),
        (MessageType::Offer, Some(&lease)),
        (MessageType::Ack, Some(&lease)),
        (MessageType::Ack, None),
        (MessageType::Nak, None),
    ] {
        let bytes = packet::reply(&req, kind, server, lease, boot.as_ref());
        assert!(bytes.len() >= 300 && bytes.len() <= packet::MAX_PACKET, "{}", bytes.len());
        let offer = packet::parse_offer(&bytes, req.xid);
        assert_eq!(offer.is_some(), kind == MessageType::Offer, "{kind:?}");
        if let Some(o) = offer {
            assert_eq!(o.server, server);
        }
    }
});
