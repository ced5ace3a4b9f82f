//! Interface addresses and the default route from procfs text, so they can be read under a
//! root like everything else (no netlink socket): IPv4 local addresses from
//! `proc/net/fib_trie` matched to an interface through `proc/net/route`, IPv6 from
//! `proc/net/if_inet6`. The interface holding the default route is the one that took the
//! DHCP lease in the netboot image.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::InventoryError;
use super::sysfs::read_opt;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetState {
    /// Interface name → addresses in CIDR form, IPv4 first.
    pub addresses: BTreeMap<String, Vec<String>>,
    /// Interfaces with an IPv4 default route, in table order.
    pub default_route: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    iface: String,
    dest: u32,
    mask: u32,
}

pub fn read(root: &Path) -> Result<NetState, InventoryError> {
    let routes = read_opt(&root.join("proc/net/route"))?
        .map(|s| parse_routes(&s))
        .unwrap_or_default();
    let locals = read_opt(&root.join("proc/net/fib_trie"))?
        .map(|s| parse_fib_locals(&s))
        .unwrap_or_default();
    let inet6 = read_opt(&root.join("proc/net/if_inet6"))?
        .map(|s| parse_if_inet6(&s))
        .unwrap_or_default();

    let mut state = NetState {
        default_route: routes
            .iter()
            .filter(|r| r.dest == 0 && r.mask == 0)
            .map(|r| r.iface.clone())
            .collect(),
        ..NetState::default()
    };
    for ip in locals {
        let n = u32::from(ip);
        let best = routes
            .iter()
            .filter(|r| r.mask != 0 && n & r.mask == r.dest & r.mask)
            .max_by_key(|r| r.mask.count_ones());
        if let Some(r) = best {
            push_unique(
                state.addresses.entry(r.iface.clone()).or_default(),
                format!("{ip}/{}", r.mask.count_ones()),
            );
        }
    }
    for (iface, cidr) in inet6 {
        push_unique(state.addresses.entry(iface).or_default(), cidr);
    }
    Ok(state)
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// `/proc/net/route` prints addresses as the hex of the in-memory (network order) value read
/// as a native integer; this machine's byte order undoes it.
fn route_addr(hex: &str) -> Option<u32> {
    let raw = u32::from_str_radix(hex, 16).ok()?;
    Some(u32::from(Ipv4Addr::from(raw.to_ne_bytes())))
}

fn parse_routes(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            const RTF_UP: u32 = 0x1;
            (flags & RTF_UP != 0).then_some(())?;
            Some(Route {
                iface: f.first()?.to_string(),
                dest: route_addr(f.get(1)?)?,
                mask: route_addr(f.get(7)?)?,
            })
        })
        .collect()
}

/// The host-local IPv4 addresses (`/32 host LOCAL` leaves) in `fib_trie`, first seen first.
fn parse_fib_locals(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("|-- ") {
            last = addr.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(ip) = last {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    out
}

/// `(interface, "addr/prefix")` from `if_inet6`; addresses whose duplicate detection failed
/// are not in use and are left out.
fn parse_if_inet6(text: &str) -> Vec<(String, String)> {
    const IFA_F_DADFAILED: u32 = 0x08;
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let hex = f.first()?;
            let raw = u128::from_str_radix(hex, 16).ok()?;
            let prefix = u32::from_str_radix(f.get(2)?, 16).ok()?;
            let flags = u32::from_str_radix(f.get(4)?, 16).ok()?;
            if flags & IFA_F_DADFAILED != 0 || hex.len() != 32 {
                return None;
            }
            Some((
                f.get(5)?.to_string(),
                format!("{}/{prefix}", Ipv6Addr::from(raw)),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_inet6_lines_become_cidrs() {
        let v = parse_if_inet6(
            "fe80000000000000505400fffe123456 02 40 20 c0     eth0\n\
             20010db8000000000000000000000001 02 40 00 08     eth0\n",
        );
        assert_eq!(
            v,
            vec![("eth0".into(), "fe80::5054:ff:fe12:3456/64".into())]
        );
    }

    #[test]
    fn fib_trie_local_leaves_are_found_once() {
        let t = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.0.2.15\n        /32 host LOCAL\n\
                 Local:\n     |-- 10.0.2.15\n        /32 host LOCAL\n     |-- 10.0.2.255\n\
                 \x20       /32 link BROADCAST\n";
        assert_eq!(parse_fib_locals(t), vec![Ipv4Addr::new(10, 0, 2, 15)]);
    }
}
