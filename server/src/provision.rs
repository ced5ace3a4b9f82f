//! The glue between the machine domain and the Tinkerbell backend, the one module allowed
//! to import both.
//!
//! Machine events from the hub become cluster writes: a registration applies the Hardware,
//! an OS assignment or reimage the Template and Workflow, a cancel deletes the Workflow, a
//! delete the Workflow and the Hardware. Workflow updates from the follower become
//! lifecycle calls on [`Machines`] with [`Actor::Tinkerbell`].

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use dragonfly_proto::{Firmware, HardwareReport, normalize_mac};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::Error as DomainError;
use crate::events::{EventHub, Published};
use crate::machines::{
    Actor, ListQuery, MachineDetail, Machines, OsImage, State, TargetDisk, catalogue,
};
use crate::store::Db;
use crate::tinkerbell::disks::DiskRef;
use crate::tinkerbell::objects::{self, MachineFacts};
use crate::tinkerbell::templates::{OsFacts, TemplateSettings};
use crate::tinkerbell::{
    self, BootSignal, FollowOptions, Phase, Tinkerbell, TinkerbellArgs, TinkerbellCommand,
    WorkflowUpdate,
};

/// The hub event the boot face publishes each time a known machine asks for its boot
/// script (`Machines::note(.., "netboot", ..)`), with the machine in its JSON. After the final
/// action of a workflow started, it is the sign that the machine rebooted.
pub const PXE_BOOT_EVENT: &str = "netboot";

/// How often a failed cluster write is tried before the machine is marked failed.
const ATTEMPTS: u32 = 3;

/// Starts the glue with the system clock and default timings.
pub fn spawn(tink: Tinkerbell, machines: Machines, hub: EventHub) -> JoinHandle<()> {
    let opts = FollowOptions {
        final_action_timeout: tink.final_action_timeout(),
        ..FollowOptions::default()
    };
    spawn_with(tink, machines, hub, Arc::new(SystemClock), opts)
}

/// [`spawn`] with an explicit clock and follower options (tests use short backoffs).
pub fn spawn_with(
    tink: Tinkerbell,
    machines: Machines,
    hub: EventHub,
    clock: Arc<dyn Clock>,
    opts: FollowOptions,
) -> JoinHandle<()> {
    // Subscribe before anything else runs, so no event published after spawn is missed.
    let events = hub.subscribe();
    let glue = Glue {
        tink,
        machines,
        clock,
    };
    tokio::spawn(async move {
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

/// Facts for the Tinkerbell builders from a machine of the domain.
pub fn facts(m: &MachineDetail) -> MachineFacts {
    let (nics, disks) = match &m.hardware {
        Some(r) => (r.nics.clone(), r.disks.clone()),
        None => (
            m.nics
                .iter()
                .map(|n| dragonfly_proto::Nic {
                    name: n.name.clone(),
                    mac: n.mac.clone(),
                    addresses: n.addresses.clone(),
                    boot: n.boot,
                    ..Default::default()
                })
                .collect(),
            m.disks
                .iter()
                .map(|d| dragonfly_proto::Disk {
                    name: d.name.clone(),
                    size_bytes: d.size_bytes,
                    model: d.model.clone(),
                    serial: d.serial.clone(),
                    wwn: d.wwn.clone(),
                    rotational: d.rotational,
                    transport: d
                        .transport
                        .as_ref()
                        .and_then(|t| serde_json::from_value(Value::String(t.clone())).ok()),
                })
                .collect(),
        ),
    };
    let uefi = match m.hardware.as_ref().and_then(|r| r.firmware) {
        Some(f) => f == Firmware::Uefi,
        None => m.machine.firmware.as_deref() == Some("uefi"),
    };
    MachineFacts {
        id: m.machine.id.clone(),
        mac: m.machine.boot_mac.clone(),
        hostname: m.machine.hostname.clone(),
        arch: m.machine.arch.clone(),
        uefi,
        nics,
        disks,
        target: m.machine.target_disk.as_ref().map(disk_ref),
    }
}

fn disk_ref(t: &TargetDisk) -> DiskRef {
    match t {
        TargetDisk::Serial(s) => DiskRef::Serial(s.clone()),
        TargetDisk::Wwn(w) => DiskRef::Wwn(w.clone()),
    }
}

pub fn os_facts(os: &OsImage) -> OsFacts {
    OsFacts {
        slug: os.slug.clone(),
        name: os.name.clone(),
        family: os.family.clone(),
        version: os.version.clone(),
        arch: os.arch.clone(),
        image_url: os.image_url.clone(),
    }
}

#[derive(Clone)]
struct Glue {
    tink: Tinkerbell,
    machines: Machines,
    clock: Arc<dyn Clock>,
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
        catalogue::get(self.machines.db(), slug)
            .await
            .ok()
            .map(|os| os_facts(&os))
    }

    /// Applies the Hardware of a (re)registered or edited machine. With an OS assigned, the
    /// install disk stays first, so an edit during an install does not move it.
    async fn register(&self, id: &str) -> Result<(), GlueError> {
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
        Ok(())
    }

    /// Applies the Hardware (install disk first), the OS's Template and the Workflow.
    /// `catch_up`: after a restart, keep a workflow that is already running.
    async fn install(&self, id: &str, catch_up: bool) -> Result<(), GlueError> {
        let m = self.machines.get(id).await?;
        let Some(slug) = m.machine.os.clone() else {
            return Ok(());
        };
        let os = os_facts(&catalogue::get(self.machines.db(), &slug).await?);
        let f = facts(&m);
        let ns = self.tink.namespace();
        let hw = objects::hardware(&f, Some(&os), ns)?;
        let template = objects::template(&os, self.tink.settings(), ns)?;
        let wf = objects::workflow(&f, &os, ns)?;
        self.tink.apply_hardware(&hw).await?;
        self.tink.apply_template(&template).await?;
        let applied = if catch_up {
            self.tink.ensure_workflow(&wf).await?
        } else {
            self.tink.start_workflow(&wf).await?
        };
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
            .with_retries("Tinkerbell workflow", id, || self.install(id, false))
            .await;
        if let Err(e) = r {
            tracing::warn!(machine = %id, error = %e, "cannot start the Tinkerbell workflow");
            let message = format!("Tinkerbell: {e}");
            log_domain(
                self.machines
                    .finish_install(id, Actor::Tinkerbell, false, message)
                    .await,
                "failure",
                id,
            );
        }
    }

    async fn on_event(&self, p: &Published, boots: &mpsc::UnboundedSender<BootSignal>) {
        let Some(id) = p.machine_id.as_deref() else {
            return;
        };
        match p.kind.as_str() {
            "registered" | "reregistered" | "updated" => {
                let r = self
                    .with_retries("Tinkerbell Hardware", id, || self.register(id))
                    .await;
                if let Err(e) = r {
                    tracing::warn!(machine = %id, error = %e, "cannot apply the Tinkerbell Hardware");
                }
            }
            "os_assigned" | "reimaged" => self.on_install_event(id).await,
            "cancelled" => {
                if let Err(e) = self.tink.delete_workflows(id).await {
                    tracing::warn!(machine = %id, error = %e, "cannot delete the Tinkerbell workflow");
                }
            }
            "deleted" => {
                let r = async {
                    self.tink.delete_workflows(id).await?;
                    self.tink.delete_hardware(id).await
                }
                .await;
                if let Err(e) = r {
                    tracing::warn!(machine = %id, error = %e, "cannot delete the Tinkerbell objects");
                }
            }
            PXE_BOOT_EVENT => {
                let mac = serde_json::from_str::<Value>(&p.json).ok().and_then(|v| {
                    v.pointer("/machine/boot_mac")
                        .and_then(Value::as_str)
                        .and_then(|m| normalize_mac(m).ok())
                });
                if let Some(mac) = mac {
                    let _ = boots.send(BootSignal {
                        mac,
                        at_ms: self.clock.now_ms(),
                    });
                }
            }
            _ => {}
        }
    }

    /// Brings the cluster in line with the store: every machine's Hardware, and a Workflow
    /// for every machine waiting for its install. Runs at start and after missed events.
    async fn reconcile(&self) {
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
                let r = match m.state {
                    State::Assigned => self.install(&m.id, true).await,
                    _ => self.register(&m.id).await,
                };
                if let Err(e) = r {
                    tracing::warn!(machine = %m.id, error = %e, "Tinkerbell reconcile");
                }
            }
            if list.items.is_empty() || u64::from(page) * 200 >= list.total {
                break;
            }
            page += 1;
        }
    }

    async fn on_events(
        &self,
        mut events: tokio::sync::broadcast::Receiver<Published>,
        boots: mpsc::UnboundedSender<BootSignal>,
    ) {
        self.reconcile().await;
        loop {
            match events.recv().await {
                Ok(p) => self.on_event(&p, &boots).await,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "Tinkerbell glue fell behind the event hub; reconciling"
                    );
                    self.reconcile().await;
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

/// The objects `dragonfly tinkerbell render` prints for the machine with boot MAC `mac`,
/// read from the store (nothing is written).
pub async fn render(
    db: &Db,
    mac: &str,
    os: Option<&str>,
    settings: &TemplateSettings,
    namespace: &str,
) -> anyhow::Result<String> {
    use crate::store::{machines as machine_store, os as os_store};
    let mac = normalize_mac(mac).map_err(|e| anyhow::anyhow!("--mac {mac:?}: {e}"))?;
    let wanted = os.map(str::to_string);
    let key = mac.clone();
    let (row, report, os_row) = db
        .read(move |c| -> Result<_, crate::store::StoreError> {
            let Some(row) = machine_store::by_boot_mac(c, &key)? else {
                return Ok((None, None, None));
            };
            let report = machine_store::latest_report(c, &row.id)?.map(|(_, j)| j);
            let slug = wanted.or_else(|| row.os_slug.clone());
            let os_row = match slug {
                Some(s) => os_store::get(c, &s)?.map(Ok).unwrap_or(Err(s)),
                None => Err(String::new()),
            };
            Ok((Some(row), report, Some(os_row)))
        })
        .await?;
    let Some(row) = row else {
        bail!("no machine with boot MAC {mac} in the database");
    };
    let os_row = match os_row {
        Some(Ok(o)) => o,
        Some(Err(s)) if s.is_empty() => {
            bail!("machine {mac} has no OS assigned: name one with --os")
        }
        Some(Err(s)) => bail!("no OS '{s}' in the catalogue"),
        None => bail!("no OS"),
    };
    let report: Option<HardwareReport> = match report {
        Some(j) => Some(serde_json::from_str(&j).context("the stored hardware report")?),
        None => None,
    };
    let target: Option<TargetDisk> = match &row.target_disk {
        Some(t) => serde_json::from_str(t).ok(),
        None => None,
    };
    let facts = MachineFacts {
        id: row.id.clone(),
        mac: row.boot_mac.clone(),
        hostname: row.hostname.clone(),
        arch: row.arch.clone(),
        uefi: report
            .as_ref()
            .and_then(|r| r.firmware)
            .map_or(row.firmware.as_deref() == Some("uefi"), |f| {
                f == Firmware::Uefi
            }),
        nics: report.as_ref().map(|r| r.nics.clone()).unwrap_or_default(),
        disks: report.as_ref().map(|r| r.disks.clone()).unwrap_or_default(),
        target: target.as_ref().map(disk_ref),
    };
    let os = os_facts(&OsImage::from(os_row));
    let hw = objects::hardware(&facts, Some(&os), namespace)?;
    let t = objects::template(&os, settings, namespace)?;
    let wf = objects::workflow(&facts, &os, namespace)?;
    Ok(objects::render_yaml(&hw, &t, &wf)?)
}

/// Runs `dragonfly tinkerbell ...`; returns the process exit code (0 when all is well).
pub async fn run_command(
    cmd: &TinkerbellCommand,
    args: &TinkerbellArgs,
    config: &Config,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<u8> {
    match cmd {
        TinkerbellCommand::Manifests => {
            out.write_all(tinkerbell::rbac::manifests(&args.tinkerbell_namespace).as_bytes())?;
            Ok(0)
        }
        TinkerbellCommand::Render { mac, os } => {
            if !config.db.exists() {
                bail!("no database at {} (--db)", config.db.display());
            }
            let path = config.db.clone();
            let db = tokio::task::spawn_blocking(move || Db::open(&path))
                .await
                .context("database task failed")?
                .with_context(|| format!("--db {}", config.db.display()))?;
            let settings = TemplateSettings::from_args(args)?.with_console(&config.hookos.console);
            let text = render(
                &db,
                mac,
                os.as_deref(),
                &settings,
                &args.tinkerbell_namespace,
            )
            .await?;
            out.write_all(text.as_bytes())?;
            Ok(0)
        }
        TinkerbellCommand::Check => {
            let mut a = args.clone();
            if a.tinkerbell == tinkerbell::Mode::Off {
                bail!("--tinkerbell off: nothing to check");
            }
            a.tinkerbell = tinkerbell::Mode::On;
            let Some(tink) = tinkerbell::connect(&a).await? else {
                bail!("no Kubernetes configuration found");
            };
            let report = tinkerbell::rbac::check(&tink).await;
            for line in &report.lines {
                writeln!(out, "{line}")?;
            }
            for line in &report.missing {
                writeln!(out, "{line}")?;
            }
            if report.missing.is_empty() {
                writeln!(
                    out,
                    "all good: Dragonfly can drive Tinkerbell in namespace {}",
                    tink.namespace()
                )?;
                Ok(0)
            } else {
                writeln!(out, "{} problem(s) found", report.missing.len())?;
                Ok(1)
            }
        }
    }
}
