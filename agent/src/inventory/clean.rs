//! The one place where raw hardware strings become report values: junk SMBIOS strings, junk
//! UUIDs and unusable MACs are absent, using the rules the server shares
//! (`dragonfly_proto::clean`).

use dragonfly_proto::{clean_smbios, clean_uuid, normalize_mac};

/// A string from firmware or sysfs; `None` for empty and placeholder values.
pub fn text(raw: &str) -> Option<String> {
    clean_smbios(raw)
}

/// An SMBIOS system UUID, lower-case hyphenated; `None` for all-zero/all-F and non-UUIDs.
pub fn uuid(raw: &str) -> Option<String> {
    clean_uuid(raw)
}

/// A unicast MAC in `aa:bb:cc:dd:ee:ff` form; `None` otherwise.
pub fn mac(raw: &str) -> Option<String> {
    normalize_mac(raw).ok()
}
