//! Assignment rules: the server assigns an OS to a newly registered machine that matches
//! one (lowest priority first), on a disk the rule picks, each application an event naming
//! the rule. Off until an operator adds a rule.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Actor, Log, MachineEvent, Machines, State, lifecycle, status_of};
use crate::error::{Error, Result};
use crate::store::StoreError;
use crate::store::machines::{self as store, DiskRow, MachineRow};
use crate::store::os as os_store;
use crate::store::rules::{self as rule_store, RuleRow};
use crate::vocab::TargetDisk;

/// Rules a server keeps.
pub const MAX_RULES: u64 = 200;

/// How a rule picks the install disk among the machine's disks with a serial or WWN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskRule {
    SmallestNonRotational,
    LargestNonRotational,
    Smallest,
    Largest,
    /// The first disk whose model contains `disk_model`.
    Model,
}

impl DiskRule {
    fn as_str(self) -> &'static str {
        match self {
            DiskRule::SmallestNonRotational => "smallest_non_rotational",
            DiskRule::LargestNonRotational => "largest_non_rotational",
            DiskRule::Smallest => "smallest",
            DiskRule::Largest => "largest",
            DiskRule::Model => "model",
        }
    }

    fn parse(s: &str) -> Option<DiskRule> {
        [
            DiskRule::SmallestNonRotational,
            DiskRule::LargestNonRotational,
            DiskRule::Smallest,
            DiskRule::Largest,
            DiskRule::Model,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A rule as an operator writes it. Every condition is optional; all given must hold.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    /// 1–64 characters, unique.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// Lower goes first.
    #[serde(default)]
    #[schema(minimum = -1000000, maximum = 1000000)]
    pub priority: i64,
    /// The SMBIOS vendor contains this (case-insensitive).
    #[serde(default)]
    #[schema(max_length = 128)]
    pub vendor: Option<String>,
    /// The SMBIOS product contains this (case-insensitive).
    #[serde(default)]
    #[schema(max_length = 128)]
    pub product: Option<String>,
    /// The boot MAC starts with this, e.g. `52:54:00`.
    #[serde(default)]
    #[schema(pattern = "^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){0,5}$")]
    pub mac_prefix: Option<String>,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub min_cpu_threads: Option<u32>,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub min_memory_bytes: Option<u64>,
    /// The machine has a disk at least this big (it is also the smallest the rule picks).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub min_disk_bytes: Option<u64>,
    /// The OS to assign (a catalogue slug).
    pub os: String,
    pub disk_rule: DiskRule,
    /// For `disk_rule: model`: the model contains this.
    #[serde(default)]
    #[schema(max_length = 128)]
    pub disk_model: Option<String>,
    /// Assign at most this many machines.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_count: Option<u64>,
}

/// A rule as stored, with how often it was applied.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rule {
    pub id: i64,
    pub name: String,
    pub priority: i64,
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub mac_prefix: Option<String>,
    pub min_cpu_threads: Option<u32>,
    pub min_memory_bytes: Option<u64>,
    pub min_disk_bytes: Option<u64>,
    pub os: String,
    pub disk_rule: DiskRule,
    pub disk_model: Option<String>,
    pub max_count: Option<u64>,
    /// Machines this rule assigned so far.
    pub applied: u64,
}

impl From<RuleRow> for Rule {
    fn from(r: RuleRow) -> Rule {
        Rule {
            id: r.id,
            name: r.name,
            priority: r.priority,
            vendor: r.vendor,
            product: r.product,
            mac_prefix: r.mac_prefix,
            min_cpu_threads: r.min_cpu_threads,
            min_memory_bytes: r.min_memory_bytes,
            min_disk_bytes: r.min_disk_bytes,
            os: r.os_slug,
            disk_rule: DiskRule::parse(&r.disk_rule).unwrap_or(DiskRule::Smallest),
            disk_model: r.disk_model,
            max_count: r.max_count,
            applied: r.applied,
        }
    }
}

/// A text field: at most `max` characters as sent; blank means absent.
fn text(field: &'static str, v: Option<String>, max: usize) -> Result<Option<String>> {
    if v.as_ref().is_some_and(|s| s.chars().count() > max) {
        return Err(Error::invalid(
            field,
            format!("longer than {max} characters"),
        ));
    }
    Ok(v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
}

fn contains(have: Option<&str>, want: Option<&str>) -> bool {
    match want {
        None => true,
        Some(w) => have.is_some_and(|h| h.to_lowercase().contains(&w.to_lowercase())),
    }
}

/// The disk `rule` picks, by serial (or WWN when it has no serial).
fn pick_disk(rule: &RuleRow, disks: &[DiskRow]) -> Option<TargetDisk> {
    let mut usable: Vec<&DiskRow> = disks
        .iter()
        .filter(|d| d.serial.is_some() || d.wwn.is_some())
        .filter(|d| rule.min_disk_bytes.is_none_or(|m| d.size_bytes >= m))
        .collect();
    usable.sort_by_key(|d| d.size_bytes);
    let chosen = match DiskRule::parse(&rule.disk_rule)? {
        DiskRule::SmallestNonRotational => usable.into_iter().find(|d| d.rotational != Some(true)),
        DiskRule::LargestNonRotational => usable
            .into_iter()
            .rev()
            .find(|d| d.rotational != Some(true)),
        DiskRule::Smallest => usable.into_iter().next(),
        DiskRule::Largest => usable.into_iter().next_back(),
        DiskRule::Model => usable
            .into_iter()
            .find(|d| contains(d.model.as_deref(), rule.disk_model.as_deref())),
    }?;
    Some(match (&chosen.serial, &chosen.wwn) {
        (Some(s), _) => TargetDisk::Serial(s.clone()),
        (None, Some(w)) => TargetDisk::Wwn(w.clone()),
        (None, None) => return None,
    })
}

fn matches(rule: &RuleRow, m: &MachineRow, disks: &[DiskRow]) -> bool {
    contains(m.vendor.as_deref(), rule.vendor.as_deref())
        && contains(m.product.as_deref(), rule.product.as_deref())
        && rule
            .mac_prefix
            .as_deref()
            .is_none_or(|p| m.boot_mac.starts_with(&p.to_ascii_lowercase()))
        && rule
            .min_cpu_threads
            .is_none_or(|n| m.cpu_threads.is_some_and(|c| c >= n))
        && rule
            .min_memory_bytes
            .is_none_or(|n| m.memory_bytes.is_some_and(|b| b >= n))
        && rule
            .min_disk_bytes
            .is_none_or(|n| disks.iter().any(|d| d.size_bytes >= n))
        && rule.max_count.is_none_or(|max| rule.applied < max)
}

/// Applies the first matching rule to the just-registered machine `id` (in the
/// registration's transaction): assigned, with an event naming the rule.
pub(super) fn apply(conn: &Connection, log: &mut Log, id: &str, native: bool) -> Result<()> {
    let rules = rule_store::list(conn)?;
    if rules.is_empty() {
        return Ok(());
    }
    let m = store::get(conn, id)?.ok_or_else(|| Error::not_found(format!("machine {id}")))?;
    if m.state != State::Discovered {
        return Ok(());
    }
    let disks = store::disks(conn, id)?;
    for rule in rules.iter().filter(|r| matches(r, &m, &disks)) {
        let Some(disk) = pick_disk(rule, &disks) else {
            continue;
        };
        if native && super::native::check_native(conn, &rule.os_slug).is_err() {
            continue;
        }
        let to = lifecycle::next(m.state, lifecycle::Event::Assign)?;
        let mut status = status_of(&m);
        status.state = to;
        status.os_slug = Some(rule.os_slug.clone());
        status.target_disk = Some(disk.clone());
        store::set_status(conn, id, &status, log.now)?;
        rule_store::count_applied(conn, rule.id)?;
        let on = match &disk {
            TargetDisk::Serial(s) => format!("disk serial {s}"),
            TargetDisk::Wwn(w) => format!("disk WWN {w}"),
        };
        log.add(
            conn,
            id,
            MachineEvent::OsAssigned,
            Actor::System,
            Some((m.state, to)),
            format!("rule '{}' assigned {} on {on}", rule.name, rule.os_slug),
        )?;
        return Ok(());
    }
    Ok(())
}

impl Machines {
    pub async fn rules(&self) -> Result<Vec<Rule>> {
        let rows = self.db.read(rule_store::list).await?;
        Ok(rows.into_iter().map(Rule::from).collect())
    }

    pub async fn create_rule(&self, input: RuleInput) -> Result<Rule> {
        let name = text("name", Some(input.name), 64)?
            .ok_or_else(|| Error::invalid("name", "must not be empty"))?;
        if !(-1_000_000..=1_000_000).contains(&input.priority) {
            return Err(Error::invalid(
                "priority",
                "must be between -1000000 and 1000000",
            ));
        }
        let mac_prefix = match text("mac_prefix", input.mac_prefix, 17)? {
            Some(p) => {
                let ok = p
                    .split(':')
                    .all(|o| o.len() == 2 && o.chars().all(|c| c.is_ascii_hexdigit()))
                    && p.split(':').count() <= 6;
                if !ok {
                    return Err(Error::invalid(
                        "mac_prefix",
                        "1–6 hex octets separated by ':'",
                    ));
                }
                Some(p.to_ascii_lowercase())
            }
            None => None,
        };
        for (field, v) in [
            ("min_cpu_threads", input.min_cpu_threads.map(u64::from)),
            ("min_memory_bytes", input.min_memory_bytes),
            ("min_disk_bytes", input.min_disk_bytes),
            ("max_count", input.max_count),
        ] {
            if v == Some(0) {
                return Err(Error::invalid(field, "must be at least 1"));
            }
            if v.is_some_and(|v| v > i64::MAX as u64) {
                return Err(Error::invalid(field, "larger than 2^63-1"));
            }
        }
        let disk_model = text("disk_model", input.disk_model, 128)?;
        if input.disk_rule == DiskRule::Model && disk_model.is_none() {
            return Err(Error::invalid(
                "disk_model",
                "required with disk_rule model",
            ));
        }
        let row = RuleRow {
            id: 0,
            name,
            priority: input.priority,
            vendor: text("vendor", input.vendor, 128)?,
            product: text("product", input.product, 128)?,
            mac_prefix,
            min_cpu_threads: input.min_cpu_threads,
            min_memory_bytes: input.min_memory_bytes,
            min_disk_bytes: input.min_disk_bytes,
            os_slug: input.os,
            disk_rule: input.disk_rule.as_str().to_string(),
            disk_model,
            max_count: input.max_count,
            applied: 0,
            created_at: self.clock.now_ms(),
        };
        let native = self.settings.installer == crate::config::Installer::Native;
        self.db
            .write(move |tx| -> Result<Rule> {
                if os_store::get(tx, &row.os_slug)?.is_none() {
                    return Err(Error::unresolved(
                        "os",
                        format!("no OS '{}' in the catalogue", row.os_slug),
                    ));
                }
                if native {
                    super::native::check_native(tx, &row.os_slug)?;
                }
                if rule_store::count(tx)? >= MAX_RULES {
                    return Err(Error::Conflict(format!(
                        "a server keeps at most {MAX_RULES} rules"
                    )));
                }
                let id = rule_store::insert(tx, &row).map_err(|e: StoreError| {
                    if e.is_constraint() {
                        Error::Conflict(format!("a rule named '{}' exists", row.name))
                    } else {
                        e.into()
                    }
                })?;
                Ok(Rule::from(RuleRow { id, ..row }))
            })
            .await
    }

    pub async fn delete_rule(&self, id: i64) -> Result<()> {
        let deleted = self.db.write(move |tx| rule_store::delete(tx, id)).await?;
        if deleted {
            Ok(())
        } else {
            Err(Error::not_found(format!("rule {id}")))
        }
    }
}
