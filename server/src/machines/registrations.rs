//! Registrations held for an operator: a claim on a known machine (past discovery, or
//! disagreeing with its identity) that did not prove it came from that machine. The operator
//! approves one (the next identical registration goes through once) or rejects it
//! (identical ones are refused) for a day.

use serde::Serialize;
use utoipa::ToSchema;

use super::{Actor, Committed, Log, MachineEvent, Machines, load};
use crate::clock::rfc3339;
use crate::error::{Error, Result};
use crate::store::registrations::{self as held, HeldRow};
use crate::vocab::Decision;

/// A registration that waits for an operator.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HeldRegistration {
    pub id: i64,
    /// The known machine it claims to be.
    pub machine_id: String,
    /// The boot MAC the claimant registered with.
    pub boot_mac: String,
    /// What the claimant reported: identity and NICs.
    pub summary: String,
    /// Why it was held.
    pub reason: String,
    pub agent_version: String,
    pub first_at: String,
    pub last_at: String,
    /// How often the claimant has tried.
    pub attempts: i64,
    /// `null` while it waits.
    pub decision: Option<Decision>,
}

impl From<HeldRow> for HeldRegistration {
    fn from(h: HeldRow) -> HeldRegistration {
        HeldRegistration {
            id: h.id,
            machine_id: h.machine_id,
            boot_mac: h.boot_mac,
            summary: h.summary,
            reason: h.reason,
            agent_version: h.agent_version,
            first_at: rfc3339(h.first_at),
            last_at: rfc3339(h.last_at),
            attempts: h.attempts,
            decision: h.decision,
        }
    }
}

impl Machines {
    /// Registrations waiting for an operator, newest first (of one machine when given).
    pub async fn held(&self, machine: Option<String>) -> Result<Vec<HeldRegistration>> {
        let rows = self
            .db
            .read(move |c| held::open(c, machine.as_deref(), 200))
            .await?;
        Ok(rows.into_iter().map(HeldRegistration::from).collect())
    }

    /// An operator's answer to held registration `id`.
    pub async fn decide(&self, id: i64, decision: Decision) -> Result<HeldRegistration> {
        let now = self.clock.now_ms();
        let (view, done) = self
            .db
            .write(move |tx| -> Result<_> {
                let row = held::get(tx, id)?
                    .ok_or_else(|| Error::not_found(format!("held registration {id}")))?;
                if let Some(d) = row.decision {
                    return Err(Error::Conflict(format!(
                        "held registration {id} was already {d}"
                    )));
                }
                held::decide(tx, id, decision, now)?;
                let mut log = Log::new(now);
                let (kind, what) = match decision {
                    Decision::Approved => (
                        MachineEvent::RegistrationApproved,
                        "its next registration is accepted",
                    ),
                    Decision::Rejected => (
                        MachineEvent::RegistrationRejected,
                        "identical registrations are refused",
                    ),
                };
                log.add(
                    tx,
                    &row.machine_id,
                    kind,
                    Actor::Operator,
                    None,
                    format!("registration from {} {decision}: {what}", row.boot_mac),
                )?;
                let machine = load(tx, &row.machine_id)?;
                let mut view = HeldRegistration::from(row);
                view.decision = Some(decision);
                Ok((
                    view,
                    Committed {
                        events: log.events,
                        machine: Some(machine),
                    },
                ))
            })
            .await?;
        self.publish(done);
        Ok(view)
    }

    /// The secret a known machine's boot script puts on its kernel command line.
    pub async fn boot_secret(&self, id: &str) -> Result<Option<String>> {
        let id = id.to_string();
        Ok(self.db.read(move |c| held::boot_secret(c, &id)).await?)
    }
}
