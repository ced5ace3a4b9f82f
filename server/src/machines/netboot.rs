//! How machines network-boot through Dragonfly's own DHCP: each machine's PXE setting and
//! reserved address (operator choices), and the address leases of full DHCP mode.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Actor, Committed, Log, MachineEvent, Machines, load};
use crate::config::Pool;
use crate::error::{Error, Result};
use crate::store::dhcp as store;

/// How a machine may PXE-boot when Dragonfly answers DHCP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PxeMode {
    /// Boot files by firmware, as the server is configured.
    #[default]
    Auto,
    /// UEFI: `ipxe.efi` (iPXE's own NIC drivers) instead of the server's choice, for NICs
    /// whose firmware network driver misbehaves under `snponly.efi`.
    IpxeEfi,
    /// Never answer this machine's PXE requests ("do not PXE").
    Off,
}

impl PxeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PxeMode::Auto => "auto",
            PxeMode::IpxeEfi => "ipxe_efi",
            PxeMode::Off => "off",
        }
    }

    fn parse(s: Option<&str>) -> PxeMode {
        match s {
            Some("ipxe_efi") => PxeMode::IpxeEfi,
            Some("off") => PxeMode::Off,
            _ => PxeMode::Auto,
        }
    }
}

/// An IPv4 address a machine can have: the first octet 1-223 and not 127 (not "this
/// network", loopback, multicast or reserved). The document states it; [`Machines::set_netboot`]
/// checks the same.
pub const HOST_ADDRESS_PATTERN: &str = r"^(?:[1-9]|[1-9]\d|1[01]\d|12[0-6]|12[89]|1[3-9]\d|2[01]\d|22[0-3])(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$";

fn host_address(ip: Ipv4Addr) -> bool {
    let first = ip.octets()[0];
    (1..=223).contains(&first) && first != 127
}

/// A machine's network-boot settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Netboot {
    #[serde(default)]
    pub pxe: PxeMode,
    /// The address full DHCP mode always gives this machine (`null`: from the pool).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Ipv4)]
    pub reserved_ip: Option<Ipv4Addr>,
}

/// What DHCP knows about a hardware address that belongs to a known machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpClient {
    pub machine_id: String,
    pub pxe: PxeMode,
    pub reserved_ip: Option<Ipv4Addr>,
}

impl Machines {
    pub async fn netboot(&self, id: &str) -> Result<Netboot> {
        let id = id.to_string();
        self.db
            .read(move |c| -> Result<_> {
                load(c, &id)?;
                Ok(from_row(store::netboot(c, &id)?))
            })
            .await
    }

    /// Replaces a machine's network-boot settings; a change is on its timeline. A reserved
    /// address held by another machine is a conflict.
    pub async fn set_netboot(&self, id: &str, input: Netboot) -> Result<Netboot> {
        if let Some(ip) = input.reserved_ip {
            if !host_address(ip) {
                return Err(Error::invalid(
                    "reserved_ip",
                    format!("{ip} cannot be a machine's address"),
                ));
            }
        }
        let now = self.clock.now_ms();
        let id = id.to_string();
        let kept = input.clone();
        let change = self
            .db
            .write(move |tx| -> Result<_> {
                load(tx, &id)?;
                let before = from_row(store::netboot(tx, &id)?);
                let ip = input.reserved_ip.map(|i| i.to_string());
                if let Some(ip) = &ip {
                    if let Some(other) = store::reserved_by(tx, ip)?.filter(|o| *o != id) {
                        return Err(Error::Conflict(format!(
                            "reserved_ip {ip} is already reserved for machine {other}"
                        )));
                    }
                }
                store::set_netboot(tx, &id, input.pxe.as_str(), ip.as_deref(), now)?;
                let mut log = Log::new(now);
                if before != input {
                    log.add(
                        tx,
                        &id,
                        MachineEvent::Updated,
                        Actor::Operator,
                        None,
                        format!(
                            "network boot: PXE {}, reserved address {}",
                            input.pxe.as_str(),
                            ip.as_deref().unwrap_or("none")
                        ),
                    )?;
                }
                Ok(Committed {
                    events: log.events,
                    machine: Some(load(tx, &id)?),
                })
            })
            .await?;
        self.publish(change);
        Ok(kept)
    }

    /// The known machine whose boot NIC is `mac`, with its DHCP settings.
    pub async fn dhcp_client(&self, mac: &str) -> Result<Option<DhcpClient>> {
        let mac = mac.to_string();
        let row = self.db.read(move |c| store::client(c, &mac)).await?;
        Ok(row.map(|r| DhcpClient {
            machine_id: r.machine_id,
            pxe: PxeMode::parse(r.pxe.as_deref()),
            reserved_ip: r.reserved_ip.and_then(|i| i.parse().ok()),
        }))
    }

    /// Picks `mac`'s address in full DHCP mode and holds it for `secs`: its reservation (when
    /// nobody else holds it), else `want` when free, else the address it had, else the first
    /// free one. `None` when the pool is exhausted. With `exact` (a REQUEST) nothing is held
    /// unless the pick is `want`: a refused request takes no address. One write transaction:
    /// two clients never get one address.
    pub async fn lease(
        &self,
        mac: &str,
        pool: &Pool,
        want: Option<Ipv4Addr>,
        secs: u32,
        hostname: Option<String>,
        exact: bool,
    ) -> Result<Option<Ipv4Addr>> {
        let now = self.clock.now_ms();
        let mac = mac.to_string();
        let pool = pool.clone();
        self.db
            .write(move |tx| -> Result<_> {
                let taken: HashSet<Ipv4Addr> = store::taken(tx, &mac, now)?
                    .iter()
                    .filter_map(|s| s.parse().ok())
                    .collect();
                let free = |ip: &Ipv4Addr| pool.in_range(*ip) && !taken.contains(ip);
                let reserved = store::client(tx, &mac)?
                    .and_then(|r| r.reserved_ip)
                    .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
                    .filter(|ip| {
                        pool.in_subnet(*ip) && !pool.excluded.contains(ip) && !taken.contains(ip)
                    });
                let previous = store::lease_of(tx, &mac)?.and_then(|s| s.parse().ok());
                let chosen = reserved
                    .or(want.filter(free))
                    .or(previous.filter(free))
                    .or_else(|| pool.addresses().find(|ip| !taken.contains(ip)));
                if exact && chosen != want {
                    return Ok(chosen);
                }
                if let Some(ip) = chosen {
                    store::put_lease(
                        tx,
                        &mac,
                        &ip.to_string(),
                        now + i64::from(secs) * 1000,
                        hostname.as_deref(),
                    )?;
                }
                Ok(chosen)
            })
            .await
    }

    /// Ends `mac`'s lease (DHCPRELEASE, DHCPDECLINE).
    pub async fn release_lease(&self, mac: &str) -> Result<()> {
        let now = self.clock.now_ms();
        let mac = mac.to_string();
        self.db
            .write(move |tx| -> Result<_> { Ok(store::release(tx, &mac, now)?) })
            .await
    }

    /// DHCPDECLINE: the client found `ip` (its lease) in use by someone else. The address is
    /// held out of the pool for `secs`, and the client gets another one next time.
    pub async fn decline_lease(&self, mac: &str, ip: Option<Ipv4Addr>, secs: u32) -> Result<()> {
        let now = self.clock.now_ms();
        let mac = mac.to_string();
        self.db
            .write(move |tx| -> Result<_> {
                let held = store::lease_of(tx, &mac)?;
                if held.is_some() && held == ip.map(|i| i.to_string()) {
                    store::quarantine(tx, &mac, now + i64::from(secs) * 1000)?;
                }
                Ok(())
            })
            .await
    }

    /// Leases not yet expired.
    pub async fn active_leases(&self) -> Result<u64> {
        let now = self.clock.now_ms();
        Ok(self.db.read(move |c| store::active_leases(c, now)).await?)
    }
}

fn from_row(row: Option<(String, Option<String>)>) -> Netboot {
    match row {
        None => Netboot::default(),
        Some((pxe, ip)) => Netboot {
            pxe: PxeMode::parse(Some(&pxe)),
            reserved_ip: ip.and_then(|i| i.parse().ok()),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_documented_pattern_and_the_check_agree() {
        let re = regex_lite(HOST_ADDRESS_PATTERN);
        for n in (0..=u32::MAX).step_by(9_973_451).chain([
            0x7f00_0001,
            0x0a00_0001,
            0xe000_0001,
            0xdfff_ffff,
        ]) {
            let ip = Ipv4Addr::from(n);
            assert_eq!(re(&ip.to_string()), host_address(ip), "{ip}");
        }
        for first in 0..=255u8 {
            let ip = Ipv4Addr::new(first, 1, 2, 3);
            assert_eq!(re(&ip.to_string()), host_address(ip), "{ip}");
        }
    }

    /// The pattern through the JSON Schema validator the API tests use.
    fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
        let schema = serde_json::json!({"type": "string", "pattern": pattern});
        move |s: &str| jsonschema::is_valid(&schema, &serde_json::json!(s))
    }
}
