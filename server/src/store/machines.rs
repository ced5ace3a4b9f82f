//! The machines table family: machines, their tags, NICs, disks and hardware-report history.

use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter, types::Value};

use dragonfly_proto::{Firmware, Phase, Transport, WriteProgress};

use super::{StoreError, typed};
use crate::vocab::{State, TargetDisk};

/// A machine as stored. Typed columns hold only their type's names: anything else read
/// back is an error naming the column and the row.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineRow {
    pub id: String,
    pub boot_mac: String,
    pub smbios_uuid: Option<String>,
    pub serial: Option<String>,
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub hostname: Option<String>,
    pub notes: String,
    pub state: State,
    pub os_slug: Option<String>,
    pub target_disk: Option<TargetDisk>,
    pub phase: Option<Phase>,
    pub progress: Option<u8>,
    pub status_message: Option<String>,
    pub pending_instruction: Option<String>,
    pub agent_version: Option<String>,
    pub arch: Option<String>,
    pub firmware: Option<Firmware>,
    pub cpu_model: Option<String>,
    pub cpu_threads: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_seen_at: Option<i64>,
    pub tags: Vec<String>,
    /// When a native install's image was written (it awaits the installed system's report).
    pub written_at: Option<i64>,
    /// The agent's last write progress during a native install.
    pub write_progress: Option<WriteProgress>,
}

const COLUMNS: &str = "id, boot_mac, smbios_uuid, serial, vendor, product, hostname, notes, \
    state, os_slug, target_disk, phase, progress, status_message, pending_instruction, \
    agent_version, arch, firmware, cpu_model, cpu_threads, memory_bytes, disk_bytes, \
    created_at, updated_at, last_seen_at, \
    (SELECT group_concat(tag, char(31)) FROM (SELECT tag FROM machine_tags t \
        WHERE t.machine_id = machines.id ORDER BY tag)) AS tags, written_at, \
    write_progress";

fn from_row(r: &Row<'_>) -> rusqlite::Result<MachineRow> {
    let tags: Option<String> = r.get(25)?;
    let id: String = r.get(0)?;
    Ok(MachineRow {
        state: typed(r, 8, "machines.state", &id)?,
        target_disk: typed(r, 10, "machines.target_disk", &id)?,
        phase: typed(r, 11, "machines.phase", &id)?,
        firmware: typed(r, 17, "machines.firmware", &id)?,
        id,
        boot_mac: r.get(1)?,
        smbios_uuid: r.get(2)?,
        serial: r.get(3)?,
        vendor: r.get(4)?,
        product: r.get(5)?,
        hostname: r.get(6)?,
        notes: r.get(7)?,
        os_slug: r.get(9)?,
        progress: r.get(12)?,
        status_message: r.get(13)?,
        pending_instruction: r.get(14)?,
        agent_version: r.get(15)?,
        arch: r.get(16)?,
        cpu_model: r.get(18)?,
        cpu_threads: r.get(19)?,
        memory_bytes: r.get(20)?,
        disk_bytes: r.get(21)?,
        created_at: r.get(22)?,
        updated_at: r.get(23)?,
        last_seen_at: r.get(24)?,
        tags: tags
            .map(|t| t.split('\u{1f}').map(str::to_string).collect())
            .unwrap_or_default(),
        written_at: r.get(26)?,
        // Written by this server from a checked value; a bad one is only a lost progress bar.
        write_progress: r
            .get::<_, Option<String>>(27)?
            .and_then(|j| serde_json::from_str(&j).ok()),
    })
}

/// The one-time phone-home token of the machine's current native install.
pub fn install_token(conn: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT install_token FROM machines WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Sets (or clears) the current native install's token and written time.
pub fn set_install(
    conn: &Connection,
    id: &str,
    token: Option<&str>,
    written_at: Option<i64>,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE machines SET install_token = ?2, written_at = ?3 WHERE id = ?1")?
        .execute(params![id, token, written_at])?;
    Ok(())
}

/// Records (or clears) the agent's write progress.
pub fn set_write_progress(
    conn: &Connection,
    id: &str,
    progress: Option<&WriteProgress>,
) -> Result<(), StoreError> {
    let json = progress.and_then(|p| serde_json::to_string(p).ok());
    conn.prepare_cached("UPDATE machines SET write_progress = ?2 WHERE id = ?1")?
        .execute(params![id, json])?;
    Ok(())
}

/// The machine whose current native install has this phone-home token.
pub fn by_install_token(conn: &Connection, token: &str) -> Result<Option<MachineRow>, StoreError> {
    one(conn, "install_token = ?1", token)
}

/// Installing machines whose image was written before `before` (ms) and that never reported.
pub fn written_before(conn: &Connection, before: i64) -> Result<Vec<MachineRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM machines WHERE written_at IS NOT NULL AND written_at < ?1 \
         AND state = 'installing' LIMIT 100"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([before], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn one(conn: &Connection, filter: &str, value: &str) -> Result<Option<MachineRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM machines WHERE {filter} LIMIT 1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([value], from_row)
        .optional()?)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<MachineRow>, StoreError> {
    one(conn, "id = ?1", id)
}

pub fn by_boot_mac(conn: &Connection, mac: &str) -> Result<Option<MachineRow>, StoreError> {
    one(conn, "boot_mac = ?1", mac)
}

/// A machine that has `mac` on any of its NICs (it may have booted from another one before).
pub fn by_any_mac(conn: &Connection, mac: &str) -> Result<Option<MachineRow>, StoreError> {
    one(
        conn,
        "id IN (SELECT machine_id FROM nics WHERE mac = ?1)",
        mac,
    )
}

pub fn by_uuid(conn: &Connection, uuid: &str) -> Result<Option<MachineRow>, StoreError> {
    one(conn, "smbios_uuid = ?1", uuid)
}

/// A machine with this SMBIOS serial from the same vendor (serials are unique per vendor only).
pub fn by_serial(
    conn: &Connection,
    serial: &str,
    vendor: Option<&str>,
) -> Result<Option<MachineRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM machines WHERE serial = ?1 AND vendor IS ?2 LIMIT 1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![serial, vendor], from_row)
        .optional()?)
}

pub fn by_token_hash(conn: &Connection, hash: &str) -> Result<Option<MachineRow>, StoreError> {
    one(conn, "agent_token_hash = ?1", hash)
}

/// Identity and summary columns written from a hardware report.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub boot_mac: String,
    pub smbios_uuid: Option<String>,
    pub serial: Option<String>,
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub agent_version: Option<String>,
    pub arch: Option<String>,
    pub firmware: Option<Firmware>,
    pub cpu_model: Option<String>,
    pub cpu_threads: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
}

pub fn insert(
    conn: &Connection,
    id: &str,
    ident: &Identity,
    state: State,
    token_hash: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO machines (id, boot_mac, smbios_uuid, serial, vendor, product, agent_version,
            arch, firmware, cpu_model, cpu_threads, memory_bytes, disk_bytes, state,
            agent_token_hash, created_at, updated_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16, ?16)",
    )?
    .execute(params![
        id,
        ident.boot_mac,
        ident.smbios_uuid,
        ident.serial,
        ident.vendor,
        ident.product,
        ident.agent_version,
        ident.arch,
        ident.firmware,
        ident.cpu_model,
        ident.cpu_threads,
        ident.memory_bytes,
        ident.disk_bytes,
        state,
        token_hash,
        now
    ])?;
    Ok(())
}

/// Re-registration: new identity columns and a new agent token; state is left alone.
pub fn update_identity(
    conn: &Connection,
    id: &str,
    ident: &Identity,
    token_hash: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE machines SET boot_mac = ?2, smbios_uuid = ?3, serial = ?4, vendor = ?5,
            product = ?6, agent_version = ?7, arch = ?8, firmware = ?9, cpu_model = ?10,
            cpu_threads = ?11, memory_bytes = ?12, disk_bytes = ?13, agent_token_hash = ?14,
            updated_at = ?15, last_seen_at = ?15
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        ident.boot_mac,
        ident.smbios_uuid,
        ident.serial,
        ident.vendor,
        ident.product,
        ident.agent_version,
        ident.arch,
        ident.firmware,
        ident.cpu_model,
        ident.cpu_threads,
        ident.memory_bytes,
        ident.disk_bytes,
        token_hash,
        now
    ])?;
    Ok(())
}

/// Lifecycle and progress columns, written together by every transition.
#[derive(Debug, Clone)]
pub struct Status {
    pub state: State,
    pub os_slug: Option<String>,
    pub target_disk: Option<TargetDisk>,
    pub phase: Option<Phase>,
    pub progress: Option<u8>,
    pub status_message: Option<String>,
}

pub fn set_status(conn: &Connection, id: &str, s: &Status, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE machines SET state = ?2, os_slug = ?3, target_disk = ?4, phase = ?5,
            progress = ?6, status_message = ?7, updated_at = ?8 WHERE id = ?1",
    )?
    .execute(params![
        id,
        s.state,
        s.os_slug,
        s.target_disk,
        s.phase,
        s.progress,
        s.status_message,
        now
    ])?;
    Ok(())
}

/// Records contact at `now` (never moving last_seen backwards).
pub fn touch(conn: &Connection, id: &str, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE machines SET last_seen_at = max(coalesce(last_seen_at, 0), ?2) WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    Ok(())
}

pub fn set_pending_instruction(
    conn: &Connection,
    id: &str,
    instruction: Option<&str>,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE machines SET pending_instruction = ?2 WHERE id = ?1")?
        .execute(params![id, instruction])?;
    Ok(())
}

pub fn set_details(
    conn: &Connection,
    id: &str,
    hostname: Option<&str>,
    notes: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE machines SET hostname = ?2, notes = ?3, updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![id, hostname, notes, now])?;
    refresh_search(conn, id)
}

pub fn set_tags(conn: &Connection, id: &str, tags: &[String]) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM machine_tags WHERE machine_id = ?1")?
        .execute([id])?;
    let mut ins = conn.prepare_cached("INSERT OR IGNORE INTO machine_tags VALUES (?1, ?2)")?;
    for t in tags {
        ins.execute(params![id, t])?;
    }
    Ok(())
}

/// Deletes a machine; returns false when it did not exist.
pub fn delete(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM machines WHERE id = ?1")?
        .execute([id])?
        > 0)
}

/// A NIC as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NicRow {
    pub mac: String,
    pub name: String,
    pub driver: Option<String>,
    pub pci_address: Option<String>,
    pub link_up: Option<bool>,
    pub speed_mbps: Option<u32>,
    pub mtu: Option<u32>,
    pub addresses: Vec<String>,
    pub is_boot: bool,
}

pub fn replace_nics(conn: &Connection, id: &str, nics: &[NicRow]) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM nics WHERE machine_id = ?1")?
        .execute([id])?;
    let mut ins = conn.prepare_cached(
        "INSERT OR REPLACE INTO nics (machine_id, mac, name, driver, pci_address, link_up,
            speed_mbps, mtu, addresses, is_boot) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
    )?;
    for n in nics {
        ins.execute(params![
            id,
            n.mac,
            n.name,
            n.driver,
            n.pci_address,
            n.link_up,
            n.speed_mbps,
            n.mtu,
            serde_json::to_string(&n.addresses)?,
            n.is_boot
        ])?;
    }
    refresh_search(conn, id)
}

/// Rebuilds the machine's search text from its row and NICs. Every registration replaces the
/// NICs (and with them calls this); hostname changes call it too.
pub fn refresh_search(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE machines SET search =
            coalesce(hostname, '') || char(31) || boot_mac || char(31) || coalesce(serial, '')
            || char(31) || coalesce(vendor, '') || char(31) || coalesce(product, '') || char(31)
            || coalesce((SELECT group_concat(mac, char(31)) FROM nics WHERE machine_id = ?1), '')
         WHERE id = ?1",
    )?
    .execute([id])?;
    Ok(())
}

pub fn nics(conn: &Connection, id: &str) -> Result<Vec<NicRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT mac, name, driver, pci_address, link_up, speed_mbps, mtu, addresses, is_boot
         FROM nics WHERE machine_id = ?1 ORDER BY is_boot DESC, name",
    )?;
    let rows = stmt.query_map([id], |r| {
        let addresses: String = r.get(7)?;
        Ok(NicRow {
            mac: r.get(0)?,
            name: r.get(1)?,
            driver: r.get(2)?,
            pci_address: r.get(3)?,
            link_up: r.get(4)?,
            speed_mbps: r.get(5)?,
            mtu: r.get(6)?,
            addresses: serde_json::from_str(&addresses).unwrap_or_default(),
            is_boot: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A disk as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskRow {
    pub name: String,
    pub size_bytes: u64,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub rotational: Option<bool>,
    pub transport: Option<Transport>,
}

pub fn replace_disks(conn: &Connection, id: &str, disks: &[DiskRow]) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM disks WHERE machine_id = ?1")?
        .execute([id])?;
    let mut ins = conn.prepare_cached(
        "INSERT OR REPLACE INTO disks (machine_id, name, size_bytes, model, serial, wwn,
            rotational, transport) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
    )?;
    for d in disks {
        ins.execute(params![
            id,
            d.name,
            d.size_bytes,
            d.model,
            d.serial,
            d.wwn,
            d.rotational,
            d.transport
        ])?;
    }
    Ok(())
}

pub fn disks(conn: &Connection, id: &str) -> Result<Vec<DiskRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, size_bytes, model, serial, wwn, rotational, transport
         FROM disks WHERE machine_id = ?1 ORDER BY name",
    )?;
    let rows = stmt.query_map([id], |r| {
        let name: String = r.get(0)?;
        Ok(DiskRow {
            transport: typed(r, 6, "disks.transport", &format_args!("{id}/{name}"))?,
            name,
            size_bytes: r.get(1)?,
            model: r.get(2)?,
            serial: r.get(3)?,
            wwn: r.get(4)?,
            rotational: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest stored report: (digest, JSON).
pub fn latest_report(conn: &Connection, id: &str) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT digest, report FROM hardware_reports WHERE machine_id = ?1
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub fn insert_report(
    conn: &Connection,
    id: &str,
    digest: &str,
    report: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO hardware_reports (machine_id, received_at, digest, report)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, now, digest, report])?;
    // Retention: the newest few reports of a machine are history enough; the hardware
    // changes between them are in the event log.
    conn.prepare_cached(
        "DELETE FROM hardware_reports WHERE machine_id = ?1 AND id NOT IN
            (SELECT id FROM hardware_reports WHERE machine_id = ?1 ORDER BY id DESC LIMIT ?2)",
    )?
    .execute(params![id, REPORTS_KEPT])?;
    Ok(())
}

/// Hardware reports kept per machine.
pub const REPORTS_KEPT: i64 = 5;

pub fn count_machines(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM machines")?
        .query_row([], |r| r.get(0))?)
}

/// Columns the list can be sorted by. A closed set, so no caller text reaches the SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Created,
    Hostname,
    State,
    LastSeen,
    Mac,
}

impl SortKey {
    fn column(self) -> &'static str {
        match self {
            SortKey::Created => "created_at",
            SortKey::Hostname => "hostname",
            SortKey::State => "state",
            SortKey::LastSeen => "last_seen_at",
            SortKey::Mac => "boot_mac",
        }
    }
}

/// A list query. Empty `states` means any state.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub states: Vec<State>,
    /// Only machines last seen before this time (the domain's "offline").
    pub seen_before: Option<i64>,
    pub tag: Option<String>,
    pub search: Option<String>,
    pub sort: SortKey,
    pub descending: bool,
    pub limit: u32,
    pub offset: u32,
}

/// One page of machines and the total that match the filter.
pub fn list(conn: &Connection, f: &ListFilter) -> Result<(Vec<MachineRow>, u64), StoreError> {
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    // A tag drives the query from the tag index (a join measured faster than `IN`).
    let from = match &f.tag {
        Some(tag) => {
            args.push(Value::Text(tag.clone()));
            "machines JOIN machine_tags t ON t.machine_id = machines.id AND t.tag = ?"
        }
        None => "machines",
    };
    if !f.states.is_empty() {
        let marks = vec!["?"; f.states.len()].join(",");
        clauses.push(format!("state IN ({marks})"));
        args.extend(f.states.iter().map(|s| Value::Text(s.as_str().into())));
    }
    if let Some(t) = f.seen_before {
        clauses.push("(last_seen_at IS NULL OR last_seen_at < ?)".into());
        args.push(Value::Integer(t));
    }
    if let Some(q) = &f.search {
        let pattern = format!("%{}%", escape_like(q));
        // The search text joins its fields with U+001F, which a search term cannot contain
        // (the API refuses control characters), so a match never spans two fields.
        clauses.push("search LIKE ? ESCAPE '\\'".into());
        args.push(Value::Text(pattern));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let total: u64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM {from} {filter}"))?
        .query_row(params_from_iter(args.iter()), |r| r.get(0))?;
    if total <= u64::from(f.offset) {
        // Nothing on this page: no need to look at the rows again.
        return Ok((Vec::new(), total));
    }
    let dir = if f.descending { "DESC" } else { "ASC" };
    let order = format!(
        "ORDER BY {col} {dir} NULLS LAST, machines.id {dir}",
        col = f.sort.column()
    );
    // The page is chosen by sorting row ids only, then its rows are read: sorting a
    // thousand whole rows to keep fifty cost more than the filter itself.
    let sql = format!(
        "SELECT {COLUMNS} FROM machines WHERE rowid IN \
           (SELECT machines.rowid FROM {from} {filter} {order} LIMIT ? OFFSET ?) \
         {order}"
    );
    args.push(Value::Integer(i64::from(f.limit)));
    args.push(Value::Integer(i64::from(f.offset)));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params_from_iter(args.iter()), from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((rows, total))
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Hostname, else boot MAC, of each of these machines that exists.
pub fn labels(
    conn: &Connection,
    ids: &[String],
) -> Result<std::collections::HashMap<String, String>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT coalesce(hostname, boot_mac) FROM machines WHERE id = ?1")?;
    let mut out = std::collections::HashMap::new();
    for id in ids {
        if out.contains_key(id) {
            continue;
        }
        if let Some(label) = stmt.query_row([id], |r| r.get(0)).optional()? {
            out.insert(id.clone(), label);
        }
    }
    Ok(out)
}

/// Machine counts per stored state, plus how many were last seen before `offline_before`.
pub fn count_by_state(
    conn: &Connection,
    offline_before: i64,
) -> Result<(Vec<(State, u64)>, u64), StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT state, count(*) FROM machines GROUP BY state ORDER BY state")?;
    let counts = stmt
        .query_map([], |r| {
            Ok((typed(r, 0, "machines.state", &"(count)")?, r.get(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let offline = conn
        .prepare_cached(
            "SELECT count(*) FROM machines WHERE last_seen_at IS NULL OR last_seen_at < ?1",
        )?
        .query_row([offline_before], |r| r.get(0))?;
    Ok((counts, offline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Db;

    /// A value no type knows, written behind the store's back (an older or newer binary, a
    /// hand edit), is an error naming the column and the row: never a silent default.
    #[tokio::test]
    async fn an_unknown_stored_value_names_its_column_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let ident = Identity {
            boot_mac: "52:54:00:00:00:01".into(),
            ..Default::default()
        };
        for (column, value) in [
            ("state", "'retired'"),
            ("phase", "'dancing'"),
            ("firmware", "'coreboot'"),
            ("target_disk", "'{\"name\":\"sda\"}'"),
        ] {
            let ident = ident.clone();
            let sql = format!("UPDATE machines SET {column} = {value} WHERE id = 'm1'");
            db.write(move |tx| -> Result<(), StoreError> {
                tx.execute("DELETE FROM machines", [])?;
                insert(tx, "m1", &ident, State::Discovered, "hash", 1)?;
                tx.execute(&sql, [])?;
                Ok(())
            })
            .await
            .unwrap();
            let err = db.read(|c| get(c, "m1")).await.unwrap_err().to_string();
            assert!(
                err.contains(&format!("machines.{column} of row m1")),
                "{column}: {err}"
            );
        }
    }
}
