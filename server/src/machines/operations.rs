//! Everything else that happens to a machine: lifecycle transitions (operators, the boot
//! flow, Tinkerbell), details and tags, queued actions, deletion, and the read side.

use rusqlite::Connection;

use super::{
    Actor, Committed, DiskView, Event, EventView, ListQuery, Log, Machine, MachineDetail,
    MachineEvent, MachinePage, MachineUpdate, Machines, NicView, QueuedAction, State, TargetDisk,
    lifecycle, load, status_of, validate_hostname, validate_tag,
};
use crate::error::{Error, Result};
use crate::secrets::random_secret;
use crate::store::events as event_store;
use crate::store::machines::{self as store, ListFilter, MachineRow, Status};
use crate::store::os as os_store;
use dragonfly_proto::{Instruction, Phase};

/// At most one PXE boot of a machine is logged in this window.
pub const PXE_BOOT_WINDOW_MS: i64 = 5_000;

impl Machines {
    /// Applies one lifecycle event on behalf of an operator, the boot flow or Tinkerbell.
    /// `adjust` edits the status columns after the transition (OS, disk, progress...).
    async fn transition<F>(
        &self,
        id: &str,
        event: Event,
        actor: Actor,
        kind: MachineEvent,
        message: String,
        adjust: F,
    ) -> Result<Machine>
    where
        F: FnOnce(&Connection, &MachineRow, &mut Status) -> Result<()> + Send + 'static,
    {
        let now = self.clock.now_ms();
        let id = id.to_string();
        let change = self
            .db
            .write(move |tx| -> Result<_> {
                let m = load(tx, &id)?;
                let from = m.state;
                let to = lifecycle::next(from, event)?;
                if matches!(event, Event::Assign | Event::Reimage) {
                    // A secret read from a boot script before the machine was chosen for
                    // an install no longer proves anything.
                    crate::store::registrations::set_boot_secret(tx, &id, &random_secret(32))?;
                }
                let mut status = status_of(&m);
                status.state = to;
                adjust(tx, &m, &mut status)?;
                if !matches!(event, Event::Start | Event::Progress) {
                    // A new, withdrawn or finished install: the last one's phone-home token
                    // is never trusted again.
                    store::set_install(tx, &id, None, None)?;
                }
                store::set_status(tx, &id, &status, now)?;
                let mut log = Log::new(now);
                log.add(tx, &id, kind, actor, Some((from, to)), message)?;
                Ok(Committed {
                    events: log.events,
                    machine: Some(load(tx, &id)?),
                })
            })
            .await?;
        let view = change.machine.clone().map(|m| self.view(m));
        self.publish(change);
        view.ok_or_else(|| Error::Internal("transition lost its machine".into()))
    }

    /// Assigns an OS (and optionally the install disk) to a machine.
    pub async fn assign(&self, id: &str, os: String, disk: Option<TargetDisk>) -> Result<Machine> {
        let message = match &disk {
            Some(TargetDisk::Serial(s)) => format!("{os} on disk serial {s}"),
            Some(TargetDisk::Wwn(w)) => format!("{os} on disk WWN {w}"),
            None => os.clone(),
        };
        let native = self.settings.installer == crate::config::Installer::Native;
        self.transition(
            id,
            Event::Assign,
            Actor::Operator,
            MachineEvent::OsAssigned,
            message,
            move |tx, m, st| {
                check_os(tx, &os)?;
                if native {
                    super::native::check_native(tx, &os)?;
                }
                st.os_slug = Some(os);
                st.target_disk = check_disk(tx, &m.id, disk)?;
                st.progress = None;
                st.status_message = None;
                Ok(())
            },
        )
        .await
    }

    /// Installs the OS again: the assigned one, or `os` when given.
    pub async fn reimage(
        &self,
        id: &str,
        os: Option<String>,
        disk: Option<TargetDisk>,
    ) -> Result<Machine> {
        let native = self.settings.installer == crate::config::Installer::Native;
        self.transition(
            id,
            Event::Reimage,
            Actor::Operator,
            MachineEvent::Reimaged,
            os.clone().unwrap_or_default(),
            move |tx, m, st| {
                let slug = os.or_else(|| m.os_slug.clone()).ok_or_else(|| {
                    Error::unresolved("os", "the machine has no OS assigned; name one")
                })?;
                check_os(tx, &slug)?;
                if native {
                    super::native::check_native(tx, &slug)?;
                }
                st.os_slug = Some(slug);
                if disk.is_some() {
                    st.target_disk = check_disk(tx, &m.id, disk)?;
                }
                st.progress = None;
                st.status_message = None;
                Ok(())
            },
        )
        .await
    }

    /// Withdraws an assignment or stops following an install; the machine goes back to
    /// Discovered.
    pub async fn cancel(&self, id: &str) -> Result<Machine> {
        self.transition(
            id,
            Event::Cancel,
            Actor::Operator,
            MachineEvent::Cancelled,
            String::new(),
            |_, _, st| {
                st.os_slug = None;
                st.target_disk = None;
                st.progress = None;
                st.phase = None;
                st.status_message = None;
                Ok(())
            },
        )
        .await
    }

    /// The machine entered its installer: its boot script was served (`Actor::Boot`) or an
    /// installer said so.
    pub async fn start_install(&self, id: &str, actor: Actor, message: String) -> Result<Machine> {
        self.transition(
            id,
            Event::Start,
            actor,
            MachineEvent::InstallStarted,
            message,
            |_, _, st| {
                st.phase = Some(Phase::Installing);
                st.progress = Some(st.progress.unwrap_or(0));
                Ok(())
            },
        )
        .await
    }

    /// Progress from an installer (Tinkerbell workflow status).
    pub async fn report_progress(
        &self,
        id: &str,
        actor: Actor,
        progress: u8,
        action: String,
    ) -> Result<Machine> {
        self.transition(
            id,
            Event::Progress,
            actor,
            MachineEvent::InstallProgress,
            action.clone(),
            move |_, _, st| {
                st.progress = Some(progress.min(100));
                st.status_message = Some(action);
                Ok(())
            },
        )
        .await
    }

    /// The installer finished (`ok`) or failed with `message`.
    pub async fn finish_install(
        &self,
        id: &str,
        actor: Actor,
        ok: bool,
        message: String,
    ) -> Result<Machine> {
        let (event, kind) = if ok {
            (Event::Succeed, MachineEvent::InstallSucceeded)
        } else {
            (Event::Fail, MachineEvent::InstallFailed)
        };
        self.transition(id, event, actor, kind, message.clone(), move |_, _, st| {
            st.phase = Some(if ok { Phase::Installed } else { Phase::Failed });
            if ok {
                st.progress = Some(100);
            }
            st.status_message = Some(message);
            Ok(())
        })
        .await
    }

    /// Logs that machine `id` PXE-booted and was served `script`, best effort (the script
    /// is served even when the log cannot be written). Boot scripts are fetched without
    /// credentials, as often as anyone likes: a boot served the same script as the last one
    /// logged within [`PXE_BOOT_WINDOW_MS`] is not logged again. Returns whether it was.
    pub async fn pxe_boot(&self, id: &str, script: &'static str) -> bool {
        self.boot_step(id, script, format!("PXE boot: served {script}"))
            .await
    }

    /// Logs a step of machine `id`'s network boot (a boot script served, a DHCP answer),
    /// best effort, at most once per `key` within [`PXE_BOOT_WINDOW_MS`]: the requests
    /// behind it come without credentials, as often as anyone likes.
    pub async fn boot_step(&self, id: &str, key: &'static str, message: String) -> bool {
        let now = self.clock.now_ms();
        {
            let mut boots = self.boots.lock().unwrap_or_else(|p| p.into_inner());
            if boots
                .get(id)
                .is_some_and(|(at, last)| *last == key && now - at < PXE_BOOT_WINDOW_MS)
            {
                return false;
            }
            if boots.len() >= 100_000 {
                boots.retain(|_, (at, _)| now - *at < PXE_BOOT_WINDOW_MS);
            }
            boots.insert(id.to_string(), (now, key));
        }
        match self
            .note(id, MachineEvent::PxeBoot, Actor::Boot, message)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(machine = %id, error = %e, "PXE boot not logged");
                false
            }
        }
    }

    /// Appends an event that changes nothing else (a PXE boot, for instance).
    pub async fn note(
        &self,
        id: &str,
        kind: MachineEvent,
        actor: Actor,
        message: String,
    ) -> Result<()> {
        let now = self.clock.now_ms();
        let id = id.to_string();
        let change = self
            .db
            .write(move |tx| -> Result<_> {
                let m = load(tx, &id)?;
                let mut log = Log::new(now);
                log.add(tx, &id, kind, actor, None, message)?;
                Ok(Committed {
                    events: log.events,
                    machine: Some(m),
                })
            })
            .await?;
        self.publish(change);
        Ok(())
    }

    /// Queues a one-shot instruction for the machine's agent.
    pub async fn queue(&self, id: &str, action: QueuedAction) -> Result<Machine> {
        let now = self.clock.now_ms();
        let id = id.to_string();
        let change = self
            .db
            .write(move |tx| -> Result<_> {
                load(tx, &id)?;
                let instruction = match action {
                    QueuedAction::Reboot => Instruction::Reboot,
                    QueuedAction::Poweroff => Instruction::Poweroff,
                    QueuedAction::Reinventory => Instruction::Reinventory,
                };
                let json = serde_json::to_string(&instruction)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                store::set_pending_instruction(tx, &id, Some(&json))?;
                let mut log = Log::new(now);
                log.add(
                    tx,
                    &id,
                    MachineEvent::InstructionQueued,
                    Actor::Operator,
                    None,
                    action.as_str(),
                )?;
                Ok(Committed {
                    events: log.events,
                    machine: Some(load(tx, &id)?),
                })
            })
            .await?;
        let view = change.machine.clone().map(|m| self.view(m));
        self.publish(change);
        view.ok_or_else(|| Error::Internal("queue lost its machine".into()))
    }

    /// Updates hostname, tags and notes.
    pub async fn update(&self, id: &str, u: MachineUpdate) -> Result<Machine> {
        if let Some(Some(h)) = &u.hostname {
            if !h.is_empty() {
                validate_hostname(h)?;
            }
        }
        if let Some(tags) = &u.tags {
            if tags.len() > 64 {
                return Err(Error::invalid("tags", "at most 64 tags"));
            }
            for (i, t) in tags.iter().enumerate() {
                validate_tag(i, t)?;
            }
        }
        if u.notes.as_ref().is_some_and(|n| n.chars().count() > 4096) {
            return Err(Error::invalid("notes", "longer than 4096 characters"));
        }
        let now = self.clock.now_ms();
        let id = id.to_string();
        let change = self
            .db
            .write(move |tx| -> Result<_> {
                let m = load(tx, &id)?;
                let hostname = match u.hostname {
                    Some(h) => h.filter(|h| !h.is_empty()).map(|h| h.to_ascii_lowercase()),
                    None => m.hostname.clone(),
                };
                let notes = u.notes.unwrap_or_else(|| m.notes.clone());
                store::set_details(tx, &id, hostname.as_deref(), &notes, now)?;
                let mut what = Vec::new();
                if hostname != m.hostname {
                    what.push(format!(
                        "hostname {}",
                        hostname.as_deref().unwrap_or("(none)")
                    ));
                }
                if let Some(mut tags) = u.tags {
                    tags.sort();
                    tags.dedup();
                    if tags != m.tags {
                        what.push(format!("tags [{}]", tags.join(", ")));
                    }
                    store::set_tags(tx, &id, &tags)?;
                }
                if notes != m.notes {
                    what.push("notes".into());
                }
                let mut log = Log::new(now);
                if !what.is_empty() {
                    log.add(
                        tx,
                        &id,
                        MachineEvent::Updated,
                        Actor::Operator,
                        None,
                        what.join("; "),
                    )?;
                }
                Ok(Committed {
                    events: log.events,
                    machine: Some(load(tx, &id)?),
                })
            })
            .await?;
        let view = change.machine.clone().map(|m| self.view(m));
        self.publish(change);
        view.ok_or_else(|| Error::Internal("update lost its machine".into()))
    }

    /// Deletes a machine (its history stays in the event log).
    pub async fn delete(&self, id: &str) -> Result<()> {
        let now = self.clock.now_ms();
        let id = id.to_string();
        let change = self
            .db
            .write(move |tx| -> Result<_> {
                let m = load(tx, &id)?;
                store::delete(tx, &id)?;
                let mut log = Log::new(now);
                log.add(
                    tx,
                    &id,
                    MachineEvent::Deleted,
                    Actor::Operator,
                    None,
                    format!(
                        "{} ({})",
                        m.hostname.as_deref().unwrap_or("unnamed"),
                        m.boot_mac
                    ),
                )?;
                Ok(Committed {
                    events: log.events,
                    machine: None,
                })
            })
            .await?;
        self.publish(change);
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<MachineDetail> {
        self.flush_seen().await?;
        let id = id.to_string();
        let (row, nics, disks, report, events) = self
            .db
            .read(move |c| -> Result<_> {
                let m = load(c, &id)?;
                let nics = store::nics(c, &id)?;
                let disks = store::disks(c, &id)?;
                let report = store::latest_report(c, &id)?.map(|(_, j)| j);
                let events = event_store::list(c, Some(&id), None, 50)?;
                Ok((m, nics, disks, report, events))
            })
            .await?;
        Ok(MachineDetail {
            machine: self.view(row),
            nics: nics.into_iter().map(NicView::from).collect(),
            disks: disks.into_iter().map(DiskView::from).collect(),
            hardware: report.and_then(|j| serde_json::from_str(&j).ok()),
            events: events.into_iter().map(EventView::from).collect(),
        })
    }

    pub async fn by_mac(&self, mac: &str) -> Result<Option<Machine>> {
        let mac = mac.to_string();
        let row = self.db.read(move |c| store::by_boot_mac(c, &mac)).await?;
        Ok(row.map(|r| self.view(r)))
    }

    pub async fn list(&self, q: ListQuery) -> Result<MachinePage> {
        self.flush_seen().await?;
        let now = self.clock.now_ms();
        let per_page = q.per_page.clamp(1, 500);
        let page = q.page.max(1);
        let filter = ListFilter {
            states: q.states.clone(),
            seen_before: q.offline.filter(|o| *o).map(|_| self.offline_before(now)),
            tag: q.tag,
            search: q.search,
            sort: q.sort,
            descending: q.descending,
            limit: per_page,
            offset: (page - 1).saturating_mul(per_page),
        };
        let (rows, total) = self.db.read(move |c| store::list(c, &filter)).await?;
        let before = self.offline_before(now);
        Ok(MachinePage {
            items: rows
                .into_iter()
                .map(|r| Machine::from_row(r, before))
                .collect(),
            total,
            page,
            per_page,
        })
    }

    /// Counts per state and offline, for the dashboard and /metrics.
    pub async fn counts(&self) -> Result<(Vec<(State, u64)>, u64)> {
        self.flush_seen().await?;
        let before = self.offline_before(self.clock.now_ms());
        let (by_state, offline) = self
            .db
            .read(move |c| store::count_by_state(c, before))
            .await?;
        let mut out: Vec<(State, u64)> = State::ALL.iter().map(|s| (*s, 0)).collect();
        for (state, n) in by_state {
            if let Some(slot) = out.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = n;
            }
        }
        Ok((out, offline))
    }

    /// What to call each of these machines in a list of events: hostname, else boot MAC.
    /// Deleted machines are absent.
    pub async fn labels(
        &self,
        ids: Vec<String>,
    ) -> Result<std::collections::HashMap<String, String>> {
        Ok(self.db.read(move |c| store::labels(c, &ids)).await?)
    }

    pub async fn events(
        &self,
        machine: Option<String>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<EventView>> {
        let limit = limit.clamp(1, 500);
        let rows = self
            .db
            .read(move |c| event_store::list(c, machine.as_deref(), before, limit))
            .await?;
        Ok(rows.into_iter().map(EventView::from).collect())
    }
}

fn check_os(conn: &Connection, slug: &str) -> Result<()> {
    if os_store::get(conn, slug)?.is_none() {
        return Err(Error::unresolved(
            "os",
            format!("no OS '{slug}' in the catalogue"),
        ));
    }
    Ok(())
}

/// The chosen disk must be one the machine reported, named by serial or WWN.
fn check_disk(conn: &Connection, id: &str, disk: Option<TargetDisk>) -> Result<Option<TargetDisk>> {
    let Some(disk) = disk else { return Ok(None) };
    let disks = store::disks(conn, id)?;
    let found = disks.iter().any(|d| match &disk {
        TargetDisk::Serial(s) => d.serial.as_deref() == Some(s.as_str()),
        TargetDisk::Wwn(w) => d.wwn.as_deref() == Some(w.as_str()),
    });
    if !found {
        return Err(Error::unresolved(
            "target_disk",
            "the machine reported no disk with that serial or WWN",
        ));
    }
    Ok(Some(disk))
}
