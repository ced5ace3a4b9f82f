//! `tftp::parse` on arbitrary datagrams: it never panics, what it parses encodes and parses
//! back to the same packet, and planning a parsed read request never panics either.

#![no_main]

use std::path::Path;

use dragonfly::boot::tftp::{self, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = tftp::parse(data) else {
        return;
    };
    let bytes = tftp::encode(&packet);
    assert_eq!(
        tftp::parse(&bytes).as_ref(),
        Ok(&packet),
        "re-encoded as {bytes:?}"
    );
    if let Packet::Read(req) = &packet {
        let dir = Path::new("/srv/tftp");
        if let Ok(plan) = tftp::plan(dir, req, |_| Some(1 << 20)) {
            assert!(plan.path.starts_with(dir), "{plan:?}");
            assert!((8..=1468).contains(&plan.blksize), "{plan:?}");
        }
    }
});
