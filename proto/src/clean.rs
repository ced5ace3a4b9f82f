//! Normalisation shared by the agent (which reports) and the server (which matches
//! identities): junk SMBIOS values become absent, MAC addresses become `aa:bb:cc:dd:ee:ff`.
//! Keeping it in one place means both sides agree on what "no serial" means.

/// Values that vendors ship in SMBIOS strings instead of real data. Compared
/// case-insensitively after trimming.
const JUNK: &[&str] = &[
    "",
    "to be filled by o.e.m.",
    "to be filled by oem",
    "default string",
    "0123456789",
    "123456789",
    "none",
    "n/a",
    "na",
    "not specified",
    "not applicable",
    "not available",
    "system serial number",
    "system product name",
    "system manufacturer",
    "system version",
    "chassis serial number",
    "base board serial number",
    "invalid",
    "unknown",
    "o.e.m.",
    "oem",
    "x.x",
    "xxxxxxxx",
];

/// Returns the trimmed value, or `None` when it is empty or a known placeholder.
pub fn clean_smbios(value: &str) -> Option<String> {
    let trimmed = value.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let lower = trimmed.to_ascii_lowercase();
    if JUNK.contains(&lower.as_str()) {
        return None;
    }
    // A string of one repeated filler character ("00000000", "FFFFFFFF", "........") is junk.
    let mut chars = lower.chars().filter(|c| *c != '-' && *c != ' ');
    if let Some(first) = chars.next() {
        if matches!(first, '0' | 'f' | '.' | 'x' | '*' | '#') && chars.all(|c| c == first) {
            return None;
        }
    }
    Some(trimmed.to_string())
}

/// Normalises an SMBIOS system UUID to lower-case hyphenated form; all-zero and all-F UUIDs
/// (and anything that is not a UUID) are absent.
pub fn clean_uuid(value: &str) -> Option<String> {
    let hex: String = value
        .trim()
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    if hex.chars().all(|c| c == '0') || hex.chars().all(|c| c == 'f') {
        return None;
    }
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Why a string is not a usable MAC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacError {
    /// Not six hexadecimal octets.
    Malformed,
    /// All zeros, broadcast, or multicast: never the address of a NIC that booted.
    NotUnicast,
}

impl std::fmt::Display for MacError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MacError::Malformed => {
                f.write_str("not a MAC address (expected six hex octets, e.g. 52:54:00:12:34:56)")
            }
            MacError::NotUnicast => f.write_str("not a unicast MAC address"),
        }
    }
}

impl std::error::Error for MacError {}

/// Parses `AA:BB:CC:DD:EE:FF`, `aa-bb-cc-dd-ee-ff`, `aabb.ccdd.eeff` or `aabbccddeeff`
/// (also iPXE's `01-aa-bb-..` BOOTIF form) into lower-case colon form.
pub fn normalize_mac(value: &str) -> Result<String, MacError> {
    let v = value.trim();
    // BOOTIF=01-aa-bb-cc-dd-ee-ff: the leading 01 is the ARP hardware type (Ethernet).
    let digits = match v.strip_prefix("01-").and_then(mac_digits) {
        Some(d) => d,
        None => mac_digits(v).ok_or(MacError::Malformed)?,
    };
    let lower = digits.to_ascii_lowercase();
    let octets: Vec<&str> = (0..6).map(|i| &lower[i * 2..i * 2 + 2]).collect();
    let first = u8::from_str_radix(octets[0], 16).map_err(|_| MacError::Malformed)?;
    if lower == "000000000000" || lower == "ffffffffffff" || first & 1 == 1 {
        return Err(MacError::NotUnicast);
    }
    Ok(octets.join(":"))
}

/// The twelve hex digits of one of the usual spellings: `aa:bb:cc:dd:ee:ff` (or with `-`),
/// `aabb.ccdd.eeff`, `aabbccddeeff`.
fn mac_digits(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let hex = |s: &[u8]| s.iter().all(u8::is_ascii_hexdigit);
    let ok = match b.len() {
        12 => hex(b),
        14 => b[4] == b'.' && b[9] == b'.' && hex(&b[..4]) && hex(&b[5..9]) && hex(&b[10..]),
        17 => {
            (0..6).all(|i| hex(&b[i * 3..i * 3 + 2]))
                && (1..6).all(|i| matches!(b[i * 3 - 1], b':' | b'-'))
        }
        _ => false,
    };
    ok.then(|| v.chars().filter(char::is_ascii_hexdigit).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_smbios_values_are_absent() {
        for junk in [
            "",
            "   ",
            "To Be Filled By O.E.M.",
            "Default string",
            "0123456789",
            "Not Specified",
            "System Serial Number",
            "00000000",
            "FFFFFFFF",
            "........",
            "\0\0",
        ] {
            assert_eq!(clean_smbios(junk), None, "{junk:?} should be junk");
        }
    }

    #[test]
    fn real_smbios_values_are_kept_trimmed() {
        assert_eq!(
            clean_smbios("  PowerEdge R650 "),
            Some("PowerEdge R650".into())
        );
        assert_eq!(clean_smbios("CZ2D1203A1"), Some("CZ2D1203A1".into()));
        assert_eq!(clean_smbios("0"), None);
        assert_eq!(clean_smbios("01"), Some("01".into()));
    }

    #[test]
    fn uuids_are_normalised_and_junk_uuids_dropped() {
        assert_eq!(
            clean_uuid("4C4C4544-0042-3510-8052-B4C04F4B4D32"),
            Some("4c4c4544-0042-3510-8052-b4c04f4b4d32".into())
        );
        assert_eq!(clean_uuid("00000000-0000-0000-0000-000000000000"), None);
        assert_eq!(clean_uuid("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"), None);
        assert_eq!(clean_uuid("Not Settable"), None);
        assert_eq!(clean_uuid(""), None);
    }

    #[test]
    fn macs_in_every_common_spelling_normalise() {
        for m in [
            "52:54:00:AB:cd:01",
            "52-54-00-ab-cd-01",
            "5254.00ab.cd01",
            "525400abcd01",
            "01-52-54-00-ab-cd-01",
        ] {
            assert_eq!(normalize_mac(m).as_deref(), Ok("52:54:00:ab:cd:01"), "{m}");
        }
    }

    #[test]
    fn bad_macs_are_refused_with_a_reason() {
        assert_eq!(normalize_mac("52:54:00:ab:cd"), Err(MacError::Malformed));
        assert_eq!(normalize_mac("52:54:00:ab:cd:zz"), Err(MacError::Malformed));
        assert_eq!(normalize_mac("../../etc/passwd"), Err(MacError::Malformed));
        // Only the usual spellings: separators in their places, one kind per spelling.
        for odd in [
            "5:2:5:4:0:0:a:b:c:d:0:1",
            "5254:00ab:cd01",
            "52:5400abcd01",
            "52.54.00.ab.cd.01",
        ] {
            assert_eq!(normalize_mac(odd), Err(MacError::Malformed), "{odd}");
        }
        assert_eq!(
            normalize_mac("00:00:00:00:00:00"),
            Err(MacError::NotUnicast)
        );
        assert_eq!(
            normalize_mac("ff:ff:ff:ff:ff:ff"),
            Err(MacError::NotUnicast)
        );
        assert_eq!(
            normalize_mac("01:00:5e:00:00:01"),
            Err(MacError::NotUnicast)
        );
    }
}
