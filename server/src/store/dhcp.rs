//! Network-boot settings per machine and the leases of full DHCP mode.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// A machine's row: how it may PXE-boot (`auto`, `ipxe_efi`, `off`) and its reserved address.
pub fn netboot(
    conn: &Connection,
    machine: &str,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT pxe, reserved_ip FROM machine_netboot WHERE machine_id = ?1")?
        .query_row([machine], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Replaces a machine's row; the defaults (`auto`, no address) remove it.
pub fn set_netboot(
    conn: &Connection,
    machine: &str,
    pxe: &str,
    reserved_ip: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    if pxe == "auto" && reserved_ip.is_none() {
        conn.prepare_cached("DELETE FROM machine_netboot WHERE machine_id = ?1")?
            .execute([machine])?;
    } else {
        conn.prepare_cached(
            "INSERT INTO machine_netboot (machine_id, pxe, reserved_ip, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (machine_id) DO UPDATE SET pxe = excluded.pxe,
                 reserved_ip = excluded.reserved_ip, updated_at = excluded.updated_at",
        )?
        .execute(params![machine, pxe, reserved_ip, now])?;
    }
    Ok(())
}

/// The machine that holds `ip` as its reserved address.
pub fn reserved_by(conn: &Connection, ip: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT machine_id FROM machine_netboot WHERE reserved_ip = ?1")?
        .query_row([ip], |r| r.get(0))
        .optional()?)
}

/// A known machine as DHCP sees it.
pub struct ClientRow {
    pub machine_id: String,
    pub pxe: Option<String>,
    pub reserved_ip: Option<String>,
}

/// The known machine booting from `mac`: its id, PXE setting and reserved address.
pub fn client(conn: &Connection, mac: &str) -> Result<Option<ClientRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT m.id, n.pxe, n.reserved_ip FROM machines m
             LEFT JOIN machine_netboot n ON n.machine_id = m.id WHERE m.boot_mac = ?1",
        )?
        .query_row([mac], |r| {
            Ok(ClientRow {
                machine_id: r.get(0)?,
                pxe: r.get(1)?,
                reserved_ip: r.get(2)?,
            })
        })
        .optional()?)
}

/// The address `mac` holds or last held.
pub fn lease_of(conn: &Connection, mac: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT ip FROM dhcp_leases WHERE mac = ?1")?
        .query_row([mac], |r| r.get(0))
        .optional()?)
}

/// Addresses `mac` may not have at `now`: leased to someone else and not expired, or reserved
/// for another machine.
pub fn taken(conn: &Connection, mac: &str, now: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT ip FROM dhcp_leases WHERE mac != ?1 AND expires_at > ?2
         UNION
         SELECT n.reserved_ip FROM machine_netboot n JOIN machines m ON m.id = n.machine_id
         WHERE n.reserved_ip IS NOT NULL AND m.boot_mac != ?1",
    )?;
    let rows = stmt.query_map(params![mac, now], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Gives `ip` to `mac` until `expires_at`, taking it from an expired holder.
pub fn put_lease(
    conn: &Connection,
    mac: &str,
    ip: &str,
    expires_at: i64,
    hostname: Option<&str>,
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM dhcp_leases WHERE ip = ?1 AND mac != ?2")?
        .execute(params![ip, mac])?;
    conn.prepare_cached(
        "INSERT INTO dhcp_leases (mac, ip, expires_at, hostname) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (mac) DO UPDATE SET ip = excluded.ip, expires_at = excluded.expires_at,
             hostname = COALESCE(excluded.hostname, dhcp_leases.hostname)",
    )?
    .execute(params![mac, ip, expires_at, hostname])?;
    Ok(())
}

/// Ends `mac`'s lease now (the row stays: the client gets the same address back if free).
pub fn release(conn: &Connection, mac: &str, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE dhcp_leases SET expires_at = ?2 WHERE mac = ?1 AND expires_at > ?2",
    )?
    .execute(params![mac, now])?;
    Ok(())
}

/// Moves `mac`'s lease to a placeholder holder until `until`: the address is in use by an
/// unknown host (DHCPDECLINE), so nobody gets it meanwhile.
pub fn quarantine(conn: &Connection, mac: &str, until: i64) -> Result<(), StoreError> {
    let Some(ip) = lease_of(conn, mac)? else {
        return Ok(());
    };
    let holder = format!("declined:{ip}");
    conn.prepare_cached("DELETE FROM dhcp_leases WHERE mac = ?1")?
        .execute([&holder])?;
    conn.prepare_cached("UPDATE dhcp_leases SET mac = ?2, expires_at = ?3 WHERE mac = ?1")?
        .execute(params![mac, holder, until])?;
    Ok(())
}

/// Leases not yet expired.
pub fn active_leases(conn: &Connection, now: i64) -> Result<u64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM dhcp_leases WHERE expires_at > ?1")?
        .query_row([now], |r| r.get(0))?)
}
