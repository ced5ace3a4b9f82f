//! An agent's registration body as the server reads it: the API's JSON extractor parses a
//! `HardwareReport`, then `identity::normalise` validates and cleans it, and the registration
//! derives its identity, stored rows and digest. None of it may panic; normalising is
//! idempotent; the stored JSON reads back as the same report.

#![no_main]

use dragonfly::api::extract::parse_json;
use dragonfly::error::Error;
use dragonfly::machines::identity;
use dragonfly_proto::HardwareReport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut report: HardwareReport = match parse_json(data) {
        Ok(r) => r,
        // What the API answers with 400/422; anything else would be a 500.
        Err(Error::Invalid { .. } | Error::BadRequest { .. }) => return,
        Err(other) => panic!("parse error that is not a 4xx: {other:?}"),
    };
    if identity::normalise(&mut report).is_err() {
        return;
    }
    let mut again = report.clone();
    assert!(
        identity::normalise(&mut again).is_ok(),
        "normalised report refused: {report:?}"
    );
    assert_eq!(again, report, "normalise is not idempotent");

    // What registration does with an accepted report, outside the database.
    let ident = identity::identity(&report, "fuzz");
    assert_eq!(ident.boot_mac, report.boot_mac);
    let _ = (identity::nic_rows(&report), identity::disk_rows(&report));
    assert_eq!(identity::digest(&report), identity::digest(&again));
    let _ = identity::diff(&report, &HardwareReport::default());

    let stored = serde_json::to_string(&report).unwrap_or_default();
    let read: Result<HardwareReport, _> = serde_json::from_str(&stored);
    assert_eq!(
        read.ok().as_ref(),
        Some(&report),
        "stored JSON reads back differently"
    );
});
