//! `normalize_mac` on arbitrary strings, and the `/boot/{file}` rule built on it: a file
//! named `{mac}.ipxe` is the script of the machine with that boot MAC. (The server's
//! `boot_file` handler is private and async, so the split is repeated here.)

#![no_main]

use dragonfly_proto::{MacError, normalize_mac};
use libfuzzer_sys::fuzz_target;

/// The hex digits of `s`, lower-cased, in order.
fn digits(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn check(input: &str) {
    match normalize_mac(input) {
        Ok(mac) => {
            // Canonical: six lower-case octets joined by colons, unicast.
            let octets: Vec<&str> = mac.split(':').collect();
            assert_eq!(octets.len(), 6, "{input:?} -> {mac:?}");
            for o in &octets {
                assert!(
                    o.len() == 2
                        && o.bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                    "{input:?} -> {mac:?}"
                );
            }
            let first = u8::from_str_radix(octets[0], 16).unwrap_or(1);
            assert_eq!(first & 1, 0, "multicast accepted: {input:?}");
            // Idempotent, and made of the input's own digits (BOOTIF's `01-` prefix aside).
            assert_eq!(normalize_mac(&mac).as_deref(), Ok(mac.as_str()));
            let (have, got) = (digits(input), digits(&mac));
            assert!(
                have == got || have == format!("01{got}"),
                "{input:?} -> {mac:?}"
            );
        }
        Err(MacError::Malformed | MacError::NotUnicast) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = std::str::from_utf8(data) else {
        return;
    };
    check(file);
    // `/boot/{file}`: `boot.ipxe` is the generic script, `{mac}.ipxe` a machine's.
    if file != "boot.ipxe" {
        if let Some(stem) = file.strip_suffix(".ipxe") {
            check(stem);
        }
    }
});
