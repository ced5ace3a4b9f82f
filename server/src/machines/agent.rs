//! The agent side of the machine domain: registration and heartbeats.

use dragonfly_proto::{
    HardwareReport, Heartbeat, Instruction, Phase, RegisterRequest, RegisterResponse,
};

use super::{
    Actor, AgentMachine, Change, Committed, Event, Log, MachineEvent, Machines, State, identity,
    lifecycle, load, new_token, status_of, token_hash,
};
use crate::error::{Error, Result};
use crate::store::machines as store;

impl Machines {
    /// Registers (or re-registers) a machine from its agent's report. Idempotent per machine:
    /// concurrent registrations of one machine serialise on the store's writer.
    pub async fn register(&self, mut req: RegisterRequest) -> Result<RegisterResponse> {
        identity::normalise(&mut req.report)?;
        if req.agent_version.len() > 64 {
            return Err(Error::invalid("agent_version", "longer than 64 bytes"));
        }
        let token = new_token();
        let hash = token_hash(&token);
        let now = self.clock.now_ms();
        let this = self.clone();
        // Everything that needs only the report is worked out here, on the request's task:
        // the single writer thread does only the database work.
        let ident = identity::identity(&req.report, &req.agent_version);
        let report_json =
            serde_json::to_string(&req.report).map_err(|e| Error::Internal(e.to_string()))?;
        let digest = identity::digest(&req.report);
        let nic_rows = identity::nic_rows(&req.report);
        let disk_rows = identity::disk_rows(&req.report);
        let (resp, done) = self
            .db
            .write(move |tx| -> Result<_> {
                let report = &req.report;
                let mut log = Log::new(now);
                let id = match identity::find_existing(tx, &ident, report)? {
                    Some((existing, matched)) => {
                        let id = existing.id.clone();
                        let conflicts = identity::identity_conflicts(&existing, &ident);
                        if !conflicts.is_empty() {
                            let how = match matched {
                                identity::MatchedBy::BootMac => "boot MAC",
                                identity::MatchedBy::OtherNic => "another NIC's MAC",
                                identity::MatchedBy::Uuid => "SMBIOS UUID",
                                identity::MatchedBy::Serial => "serial and vendor",
                            };
                            log.add(
                                tx,
                                &id,
                                MachineEvent::IdentityMismatch,
                                Actor::Agent,
                                None,
                                format!("matched by {how}; {}", conflicts.join("; ")),
                            )?;
                        }
                        store::update_identity(tx, &id, &ident, &hash, now)?;
                        match store::latest_report(tx, &id)? {
                            Some((old_digest, old_json)) if old_digest != digest => {
                                let summary = serde_json::from_str::<HardwareReport>(&old_json)
                                    .map(|old| identity::diff(&old, report).join("; "))
                                    .unwrap_or_else(|_| "hardware report changed".into());
                                log.add(
                                    tx,
                                    &id,
                                    MachineEvent::HardwareChanged,
                                    Actor::Agent,
                                    None,
                                    summary,
                                )?;
                                store::insert_report(tx, &id, &digest, &report_json, now)?;
                            }
                            Some(_) => {}
                            None => store::insert_report(tx, &id, &digest, &report_json, now)?,
                        }
                        log.add(
                            tx,
                            &id,
                            MachineEvent::Reregistered,
                            Actor::Agent,
                            None,
                            format!("agent {}", req.agent_version),
                        )?;
                        id
                    }
                    None => {
                        // Time-ordered (UUIDv7): new machines append to the id index
                        // instead of dirtying a random page of it on every registration.
                        let id = uuid::Uuid::now_v7().to_string();
                        store::insert(tx, &id, &ident, State::Discovered, &hash, now)?;
                        store::insert_report(tx, &id, &digest, &report_json, now)?;
                        log.add(
                            tx,
                            &id,
                            MachineEvent::Registered,
                            Actor::Agent,
                            Some((State::Discovered, State::Discovered)),
                            format!("boot MAC {}", ident.boot_mac),
                        )?;
                        id
                    }
                };
                store::replace_nics(tx, &id, &nic_rows)?;
                store::replace_disks(tx, &id, &disk_rows)?;
                let m = load(tx, &id)?;
                let instruction = this.instruction_for(tx, &m)?;
                let resp = RegisterResponse {
                    machine_id: id,
                    token,
                    heartbeat_secs: this.settings.heartbeat_secs,
                    instruction,
                };
                Ok((
                    resp,
                    Committed {
                        events: log.events,
                        machine: Some(m),
                    },
                ))
            })
            .await?;
        self.publish(done);
        Ok(resp)
    }

    /// The machine an agent token belongs to.
    pub async fn by_token(&self, token: &str) -> Result<AgentMachine> {
        let hash = token_hash(token);
        self.db
            .read(move |c| store::by_token_hash(c, &hash))
            .await?
            .map(AgentMachine)
            .ok_or_else(|| {
                Error::Unauthorized("unknown or replaced agent token; register again".into())
            })
    }

    /// Records a heartbeat from the agent of machine `current` (as just read with its token)
    /// and answers its next instruction.
    pub async fn heartbeat(&self, agent: &AgentMachine, hb: Heartbeat) -> Result<Instruction> {
        let current = &agent.0;
        if hb.progress.is_some_and(|p| p > 100) {
            return Err(Error::invalid("progress", "must be 0–100"));
        }
        if hb.message.as_deref().is_some_and(|m| m.len() > 1024) {
            return Err(Error::invalid("message", "longer than 1024 bytes"));
        }
        let now = self.clock.now_ms();
        // The common case: nothing but "still here". No write, no event.
        let quiet = matches!(hb.phase, Phase::Waiting)
            && current.phase == Some(Phase::Waiting)
            && hb.progress.is_none_or(|p| current.progress == Some(p))
            && hb
                .message
                .as_ref()
                .is_none_or(|m| current.status_message.as_ref() == Some(m))
            && current.pending_instruction.is_none();
        if quiet {
            self.seen().insert(current.id.clone(), now);
            return Ok(self.planned_instruction(current));
        }
        let id = current.id.clone();
        let this = self.clone();
        let (instruction, done) = self
            .db
            .write(move |tx| -> Result<_> {
                let m = load(tx, &id)?;
                store::touch(tx, &id, now)?;
                let mut log = Log::new(now);
                let from = m.state;
                let mut status = status_of(&m);
                let phase = Some(hb.phase);
                let changed_phase = status.phase != phase
                    || (hb.progress.is_some() && status.progress != hb.progress)
                    || (hb.message.is_some() && status.status_message != hb.message);
                status.phase = phase;
                if hb.progress.is_some() {
                    status.progress = hb.progress;
                }
                if hb.message.is_some() {
                    status.status_message = hb.message.clone();
                }
                let event = match hb.phase {
                    Phase::Installing if from == State::Installing => Some(Event::Progress),
                    Phase::Installing => Some(Event::Start),
                    Phase::Installed => Some(Event::Succeed),
                    Phase::Failed => Some(Event::Fail),
                    Phase::Waiting | Phase::Chainloading => None,
                };
                let mut to = from;
                if let Some(ev) = event {
                    match lifecycle::next(from, ev) {
                        Ok(next) => to = next,
                        Err(e) => {
                            tracing::warn!(machine = %id, "agent reported {:?}: {e}", hb.phase)
                        }
                    }
                }
                if to != from {
                    status.state = to;
                    let kind = match to {
                        State::Installing => MachineEvent::InstallStarted,
                        State::Installed => MachineEvent::InstallSucceeded,
                        State::Failed => MachineEvent::InstallFailed,
                        _ => MachineEvent::StateChanged,
                    };
                    log.add(
                        tx,
                        &id,
                        kind,
                        Actor::Agent,
                        Some((from, to)),
                        hb.message.clone().unwrap_or_default(),
                    )?;
                } else if hb.phase == Phase::Chainloading && m.phase != Some(Phase::Chainloading) {
                    log.add(
                        tx,
                        &id,
                        MachineEvent::Chainloading,
                        Actor::Agent,
                        None,
                        hb.message.clone().unwrap_or_default(),
                    )?;
                }
                if changed_phase || to != from {
                    store::set_status(tx, &id, &status, now)?;
                }
                let m = load(tx, &id)?;
                let instruction = this.instruction_for(tx, &m)?;
                // Only publish when something an observer can see changed.
                let machine = (changed_phase || to != from || !log.events.is_empty()).then_some(m);
                Ok((
                    instruction,
                    Committed {
                        events: log.events,
                        machine,
                    },
                ))
            })
            .await?;
        if let (Some(m), true) = (&done.machine, done.events.is_empty()) {
            self.send(Change {
                machine_id: m.id.clone(),
                event: None,
                machine: Some(self.view(m.clone())),
            });
        }
        self.publish(done);
        Ok(instruction)
    }

    /// The instruction for machine `id` right now, without consuming or changing anything
    /// but a queued one-shot instruction (used by long-polling heartbeats).
    pub async fn current_instruction(&self, id: &str) -> Result<Instruction> {
        let id = id.to_string();
        let this = self.clone();
        self.db
            .write(move |tx| {
                let m = load(tx, &id)?;
                this.instruction_for(tx, &m)
            })
            .await
    }
}
