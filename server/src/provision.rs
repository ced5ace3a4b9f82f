//! The glue between the machine domain and the Tinkerbell backend, the one module allowed
//! to import both.
//!
//! Machine events from the hub become cluster writes: a registration applies the Hardware,
//! an OS assignment or reimage the Template and Workflow, a cancel deletes the Workflow, a
//! delete the Workflow and the Hardware. Workflow updates from the follower become
//! lifecycle calls on [`Machines`] with [`Actor::Tinkerbell`].

mod command;
mod facts;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::clock::{Clock, SystemClock};
use crate::error::Error as DomainError;
use crate::machines::catalogue::Catalogue;
use crate::machines::{Actor, Change, ListQuery, MachineDetail, MachineEvent, Machines, State};
use crate::tinkerbell::objects;
use crate::tinkerbell::resources::{Hardware, Template, Workflow};
use crate::tinkerbell::templates::OsFacts;
use crate::tinkerbell::writer::Applied;
use crate::tinkerbell::{
    self, BootSignal, FollowOptions, INSTALL_ANNOTATION, Phase, Tinkerbell, WorkflowUpdate,
};
pub use command::{check, render};
pub use facts::{facts, os_facts};

/// How often a failed cluster write is tried before the machine is marked failed.
const ATTEMPTS: u32 = 3;

/// Starts the glue with the system clock and default timings.
pub fn spawn(tink: Tinkerbell, machines: Machines, catalogue: Catalogue) -> JoinHandle<()> {
    let opts = FollowOptions {
        final_action_timeout: tink.final_action_timeout(),
        reconcile_every: tink.reconcile_every(),
        ..FollowOptions::default()
    };
    spawn_with(tink, machines, catalogue, Arc::new(SystemClock), opts)
}

/// [`spawn`] with an explicit clock and follower options (tests use short backoffs).
pub fn spawn_with(
    tink: Tinkerbell,
    machines: Machines,
    catalogue: Catalogue,
    clock: Arc<dyn Clock>,
    opts: FollowOptions,
) -> JoinHandle<()> {
    // Subscribe before anything else runs, so no change published after spawn is missed.
    let events = machines.subscribe();
    let glue = Glue {
        tink,
        machines,
        catalogue,
        clock,
        reconcile_every: opts.reconcile_every.max(Duration::from_secs(1)),
    };
    tokio::spawn(async move {
        let mut glue = glue;
        match glue.machines.instance_id().await {
            Ok(id) => glue.tink = glue.tink.clone().with_instance(&id),
            Err(e) => tracing::warn!(error = %e, "no instance id: Tinkerbell objects unlabelled"),
        }
        let (boot_tx, boot_rx) = mpsc::unbounded_channel();
        let updates = tinkerbell::follow::follow(
            glue.tink.workflow_api(),
            UnboundedReceiverStream::new(boot_rx),
            glue.clock.clone(),
            opts,
        );
        tokio::join!(glue.on_events(events, boot_tx), glue.on_updates(updates));
    })
}

#[derive(Clone)]
struct Glue {
    tink: Tinkerbell,
    machines: Machines,
    catalogue: Catalogue,
    clock: Arc<dyn Clock>,
    reconcile_every: Duration,
}

/// Why a cluster write for a machine did not happen.
#[derive(Debug, thiserror::Error)]
enum GlueError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Tinkerbell(#[from] tinkerbell::Error),
}

impl GlueError {
    fn is_transient(&self) -> bool {
        match self {
            GlueError::Tinkerbell(e) => e.is_transient(),
            GlueError::Domain(_) => false,
        }
    }
}

/// Conflicts (an illegal transition) and unknown machines are expected after restarts and
/// races; anything else is worth a warning.
fn log_domain(result: Result<impl Sized, DomainError>, what: &str, machine: &str) {
    match result {
        Ok(_) => {}
        Err(DomainError::Conflict(m)) => {
            tracing::debug!(%machine, "Tinkerbell {what} ignored: {m}");
        }
        Err(DomainError::NotFound(m)) => {
            tracing::debug!(%machine, "Tinkerbell {what} ignored: {m} not found");
        }
        Err(e) => tracing::warn!(%machine, error = %e, "Tinkerbell {what} not recorded"),
    }
}

impl Glue {
    async fn with_retries<F, Fut>(&self, what: &str, machine: &str, f: F) -> Result<(), GlueError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), GlueError>>,
    {
        let mut wait = Duration::from_secs(1);
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!(%machine, error = %e, attempt, "{what} failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The catalogue entry of the machine's OS, if it has one that still exists.
    async fn os_of(&self, m: &MachineDetail) -> Option<OsFacts> {
        let slug = m.machine.os.as_deref()?;
        self.catalogue.get(slug).await.ok().map(|os| os_facts(&os))
    }

    /// Applies the Hardware of a (re)registered or edited machine. With an OS assigned, the
    /// install disk stays first, so an edit during an install does not move it.
    async fn register(&self, id: &str) -> Result<(), GlueError> {
        self.apply_hardware(id).await.map(|_| ())
    }

    async fn apply_hardware(&self, id: &str) -> Result<(&'static str, String, Applied), GlueError> {
        let m = self.machines.get(id).await?;
        let f = facts(&m);
        let ns = self.tink.namespace();
        let os = self.os_of(&m).await;
        let hw = match objects::hardware(&f, os.as_ref(), ns) {
            Ok(hw) => hw,
            // No usable install disk: the install says so; the registration still counts.
            Err(tinkerbell::Error::Invalid(_)) => objects::hardware(&f, None, ns)?,
            Err(e) => return Err(e.into()),
        };
        let applied = self.tink.apply_hardware(&hw).await?;
        tracing::debug!(machine = %id, hardware = %hw.name(), ?applied, "Tinkerbell Hardware");
        Ok((Hardware::KIND, hw.name().to_string(), applied))
    }

    /// Reconciliation of an assigned or installing machine: its Hardware, Template and
    /// Workflow exist with Dragonfly's content; an existing Workflow of this install is kept
    /// in any state. An installing machine whose Workflow is gone is not installed again (it
    /// may have finished and been cleaned up, and the disk hold a working system): its install
    /// fails, saying why.
    async fn restore_install(
        &self,
        id: &str,
        state: State,
    ) -> Result<Vec<(&'static str, String, Applied)>, GlueError> {
        let Some((_, hw, template, wf)) = self.install_objects(id).await? else {
            return Ok(Vec::new());
        };
        if state == State::Installing
            && self
                .tink
                .workflow_api()
                .get_opt(wf.name())
                .await
                .map_err(tinkerbell::Error::from)?
                .is_none()
        {
            self.fail_install(
                id,
                format!(
                    "Tinkerbell Workflow {} was deleted while installing: not started again",
                    wf.name()
                ),
            )
            .await;
            return Ok(Vec::new());
        }
        Ok(vec![
            (
                Hardware::KIND,
                hw.name().to_string(),
                self.tink.apply_hardware(&hw).await?,
            ),
            (
                Template::KIND,
                template.name().to_string(),
                self.tink.apply_template(&template).await?,
            ),
            (
                Workflow::KIND,
                wf.name().to_string(),
                self.tink.restore_workflow(&wf).await?,
            ),
        ])
    }

    /// Puts what reconciliation repaired on the machine's timeline.
    async fn note_repairs(&self, id: &str, repairs: Vec<(&'static str, String, Applied)>) {
        for (kind, name, applied) in repairs {
            let message = match applied {
                Applied::Unchanged => continue,
                Applied::Created => format!(
                    "Tinkerbell {kind} {name} re-created: it was missing from the cluster{}",
                    if kind == Workflow::KIND {
                        " (or was an earlier install's)"
                    } else {
                        ""
                    }
                ),
                Applied::Updated => {
                    format!("Tinkerbell {kind} {name} restored: it had been changed in the cluster")
                }
            };
            tracing::info!(machine = %id, "{message}");
            log_domain(
                self.machines
                    .note(
                        id,
                        MachineEvent::ClusterRepaired,
                        Actor::Tinkerbell,
                        message,
                    )
                    .await,
                "repair",
                id,
            );
        }
    }

    /// The Hardware (install disk first), the OS's Template and the Workflow of a machine
    /// with an OS assigned, and the OS's slug; `None` without an OS.
    async fn install_objects(
        &self,
        id: &str,
    ) -> Result<Option<(String, Hardware, Template, Workflow)>, GlueError> {
        let m = self.machines.get(id).await?;
        let Some(slug) = m.machine.os.clone() else {
            return Ok(None);
        };
        let os = os_facts(&self.catalogue.get(&slug).await?);
        let f = facts(&m);
        let ns = self.tink.namespace();
        let hw = objects::hardware(&f, Some(&os), ns)?;
        let template = objects::template(&os, self.tink.settings(), ns)?;
        let mut wf = objects::workflow(&f, &os, ns)?;
        if let Some(install) = self.machines.install_generation(id).await? {
            wf.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(INSTALL_ANNOTATION.into(), install.to_string());
        }
        Ok(Some((slug, hw, template, wf)))
    }

    /// Applies the Hardware, the Template and a new Workflow.
    async fn install(&self, id: &str) -> Result<(), GlueError> {
        let Some((slug, hw, template, wf)) = self.install_objects(id).await? else {
            return Ok(());
        };
        self.tink.apply_hardware(&hw).await?;
        self.tink.apply_template(&template).await?;
        let applied = self.tink.start_workflow(&wf).await?;
        tracing::info!(
            machine = %id,
            workflow = %wf.name(),
            template = %template.name(),
            ?applied,
            "Tinkerbell workflow for {slug}"
        );
        Ok(())
    }

    async fn on_install_event(&self, id: &str) {
        let r = self
            .with_retries("Tinkerbell workflow", id, || self.install(id))
            .await;
        if let Err(e) = r {
            tracing::warn!(machine = %id, error = %e, "cannot start the Tinkerbell workflow");
            self.fail_install(id, format!("Tinkerbell: {e}")).await;
        }
    }

    async fn fail_install(&self, id: &str, message: String) {
        log_domain(
            self.machines
                .finish_install(id, Actor::Tinkerbell, false, message)
                .await,
            "failure",
            id,
        );
    }

    async fn on_event(&self, change: &Change, boots: &mpsc::UnboundedSender<BootSignal>) {
        let id = change.machine_id.as_str();
        match change.kind() {
            MachineEvent::Registered | MachineEvent::Reregistered | MachineEvent::Updated => {
                let r = self
                    .with_retries("Tinkerbell Hardware", id, || self.register(id))
                    .await;
                if let Err(e) = r {
                    tracing::warn!(machine = %id, error = %e, "cannot apply the Tinkerbell Hardware");
                }
            }
            MachineEvent::OsAssigned | MachineEvent::Reimaged => self.on_install_event(id).await,
            MachineEvent::Cancelled => {
                if let Err(e) = self.tink.delete_workflows(id).await {
                    tracing::warn!(machine = %id, error = %e, "cannot delete the Tinkerbell workflow");
                }
            }
            MachineEvent::Deleted => {
                let r = async {
                    self.tink.delete_workflows(id).await?;
                    self.tink.delete_hardware(id).await
                }
                .await;
                if let Err(e) = r {
                    tracing::warn!(machine = %id, error = %e, "cannot delete the Tinkerbell objects");
                }
            }
            // After the final action of a workflow started, a PXE boot is the sign that the
            // machine rebooted.
            MachineEvent::PxeBoot => {
                if let Some(m) = &change.machine {
                    let _ = boots.send(BootSignal {
                        mac: m.boot_mac.clone(),
                        at_ms: self.clock.now_ms(),
                    });
                }
            }
            MachineEvent::HardwareChanged
            | MachineEvent::IdentityMismatch
            | MachineEvent::InstallStarted
            | MachineEvent::InstallProgress
            | MachineEvent::InstallWritten
            | MachineEvent::InstallSucceeded
            | MachineEvent::InstallFailed
            | MachineEvent::InstructionQueued
            | MachineEvent::Chainloading
            | MachineEvent::StateChanged
            | MachineEvent::RegistrationHeld
            | MachineEvent::RegistrationApproved
            | MachineEvent::RegistrationRejected
            | MachineEvent::ClusterRepaired
            | MachineEvent::Status => {}
        }
    }

    /// Brings what Dragonfly owns in the cluster in line with the store: every machine's
    /// Hardware; the Template and Workflow of every machine assigned or installing (an
    /// existing Workflow kept in any state: one that finished meanwhile is the follower's to
    /// apply); no Hardware or Workflow of a deleted machine, no Workflow of a machine without
    /// an install. Each repair is an event on the machine's timeline. Runs at start, every
    /// `reconcile_every`, and after missed events.
    async fn reconcile(&self) {
        let mut known: HashMap<String, State> = HashMap::new();
        let mut page = 1;
        loop {
            let q = ListQuery {
                page,
                per_page: 200,
                ..Default::default()
            };
            let list = match self.machines.list(q).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list machines to reconcile Tinkerbell");
                    return;
                }
            };
            for m in &list.items {
                known.insert(m.id.clone(), m.state);
                let r = match m.state {
                    State::Assigned | State::Installing => {
                        self.restore_install(&m.id, m.state).await
                    }
                    _ => self.apply_hardware(&m.id).await.map(|r| vec![r]),
                };
                match r {
                    Ok(repairs) => self.note_repairs(&m.id, repairs).await,
                    Err(e) => tracing::warn!(machine = %m.id, error = %e, "Tinkerbell reconcile"),
                }
            }
            if list.items.is_empty() || u64::from(page) * 200 >= list.total {
                break;
            }
            page += 1;
        }
        self.sweep(&known).await;
    }

    /// Deletes this Dragonfly's Hardware and Workflows of machines that are gone, and its
    /// Workflows of machines without an install. A machine the listing did not show (it may
    /// have moved between pages) is looked up before anything of it is deleted.
    async fn sweep(&self, known: &HashMap<String, State>) {
        let owned = match self.tink.owned().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the Tinkerbell objects to sweep");
                return;
            }
        };
        for (kind, name, id) in owned {
            let state = match known.get(&id) {
                Some(s) => Some(*s),
                None => match self.machines.get(&id).await {
                    Ok(d) => Some(d.machine.state),
                    Err(DomainError::NotFound(_)) => None,
                    Err(e) => {
                        tracing::warn!(machine = %id, error = %e, "sweep: cannot look the machine up");
                        continue;
                    }
                },
            };
            let why = match state {
                None => "its machine is gone",
                Some(State::Discovered) if kind == Workflow::KIND => "the machine has no install",
                Some(_) => continue,
            };
            match self.tink.delete_owned(kind, &name).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(machine = %id, error = %e, "cannot delete Tinkerbell {kind} {name}");
                    continue;
                }
            }
            let message = format!("Tinkerbell {kind} {name} deleted: {why}");
            tracing::info!(machine = %id, "{message}");
            if state.is_some() {
                log_domain(
                    self.machines
                        .note(
                            &id,
                            MachineEvent::ClusterRepaired,
                            Actor::Tinkerbell,
                            message,
                        )
                        .await,
                    "repair",
                    &id,
                );
            }
        }
    }

    async fn on_events(
        &self,
        mut events: tokio::sync::broadcast::Receiver<Arc<Change>>,
        boots: mpsc::UnboundedSender<BootSignal>,
    ) {
        self.reconcile().await;
        let mut every = tokio::time::interval_at(
            tokio::time::Instant::now() + self.reconcile_every,
            self.reconcile_every,
        );
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let received = tokio::select! {
                r = events.recv() => r,
                _ = every.tick() => {
                    self.reconcile().await;
                    continue;
                }
            };
            match received {
                Ok(p) => self.on_event(&p, &boots).await,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "Tinkerbell glue fell behind the event hub; reconciling"
                    );
                    self.reconcile().await;
                    every.reset();
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    async fn on_updates(&self, updates: impl futures_util::Stream<Item = WorkflowUpdate>) {
        let mut updates = std::pin::pin!(updates);
        while let Some(u) = updates.next().await {
            self.on_update(u).await;
        }
    }

    async fn on_update(&self, u: WorkflowUpdate) {
        let machine = match (&u.machine_id, &u.mac) {
            (Some(id), _) => self.machines.get(id).await.ok().map(|d| d.machine),
            (None, Some(mac)) => self.machines.by_mac(mac).await.ok().flatten(),
            (None, None) => None,
        };
        let Some(m) = machine else {
            tracing::debug!(workflow = %u.workflow, "workflow of no known machine");
            return;
        };
        // A finished Workflow of an earlier install of this machine says nothing of this one.
        if let (Some(w), Ok(Some(current))) =
            (u.install, self.machines.install_generation(&m.id).await)
        {
            if w != current {
                tracing::debug!(workflow = %u.workflow, machine = %m.id, "workflow of an earlier install; ignored");
                return;
            }
        }
        if u.os.is_some() && u.os != m.os {
            tracing::debug!(
                workflow = %u.workflow,
                machine = %m.id,
                "workflow for another OS than the machine's; ignored"
            );
            return;
        }
        // Tinkerbell may be first to say the install began (before any boot script was served).
        let needs_start = m.state == State::Assigned;
        let message = format!("Tinkerbell workflow {}", u.workflow);
        match u.phase {
            Phase::Pending => {}
            Phase::Running { progress, action } => {
                if needs_start {
                    log_domain(
                        self.machines
                            .start_install(&m.id, Actor::Tinkerbell, format!("{message} running"))
                            .await,
                        "start",
                        &m.id,
                    );
                }
                log_domain(
                    self.machines
                        .report_progress(&m.id, Actor::Tinkerbell, progress, action)
                        .await,
                    "progress",
                    &m.id,
                );
            }
            Phase::Succeeded => {
                if needs_start {
                    log_domain(
                        self.machines
                            .start_install(&m.id, Actor::Tinkerbell, format!("{message} running"))
                            .await,
                        "start",
                        &m.id,
                    );
                }
                log_domain(
                    self.machines
                        .finish_install(
                            &m.id,
                            Actor::Tinkerbell,
                            true,
                            format!("{message} succeeded"),
                        )
                        .await,
                    "success",
                    &m.id,
                );
            }
            Phase::Failed { message } => log_domain(
                self.machines
                    .finish_install(&m.id, Actor::Tinkerbell, false, message)
                    .await,
                "failure",
                &m.id,
            ),
        }
    }
}
