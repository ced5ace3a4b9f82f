//! `dragonfly-agent simulate`: many fake machines in one process, for load-testing the server
//! without VMs. Each is the real protocol loop on its own thread, with a report taken from a
//! fixture tree (or this machine) and made unique by its index: boot MAC, SMBIOS serial and
//! UUID. Commands (kexec, reboot) are only counted; after one, the fake machine registers
//! again, as a real one would after its reboot.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dragonfly_proto::HardwareReport;

use crate::agent::{AfterTerminal, Agent, AgentOptions, Counters};
use crate::backoff::{Backoff, Rng};
use crate::client::Client;
use crate::host::{Cmd, Host};
use crate::inventory::Inventory;

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub server: String,
    pub enrollment_secret: Option<String>,
    pub count: u32,
    /// A directory of fixture trees (each subdirectory a root); `None` uses `root`.
    pub fixtures: Option<PathBuf>,
    pub root: PathBuf,
    /// Stop after this long; `None` runs until the process is killed.
    pub duration: Option<Duration>,
    /// Spread the machines' first registrations over this long.
    pub ramp: Duration,
    /// How often to print the counters.
    pub report_every: Duration,
}

/// Totals at the end of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimTotals {
    pub registrations: u64,
    pub heartbeats: u64,
    pub failures: u64,
    pub terminal: u64,
}

/// The reports the fake machines are made from: one per fixture tree under `fixtures`, or
/// this machine's own.
pub fn templates(fixtures: Option<&Path>, root: &Path) -> Result<Vec<HardwareReport>, String> {
    let Some(dir) = fixtures else {
        let (report, errors) = Inventory::collect_lenient(root);
        for e in errors {
            crate::log!("inventory: {e}");
        }
        return Ok(vec![report]);
    };
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut roots: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("proc").is_dir() || p.join("sys").is_dir())
        .collect();
    roots.sort();
    if roots.is_empty() {
        return Err(format!(
            "{}: no fixture trees (directories holding proc/ or sys/)",
            dir.display()
        ));
    }
    roots
        .iter()
        .map(|r| Inventory::collect(r).map_err(|e| e.to_string()))
        .collect()
}

/// The simulated MAC of NIC `nic` of machine `index`: locally administered, unique per
/// (index, nic) for up to 2^32 machines and 16 NICs each.
pub fn sim_mac(index: u32, nic: usize) -> String {
    let b = index.to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        0xd0 + (nic as u8 & 0x0f),
        b[0],
        b[1],
        b[2],
        b[3]
    )
}

/// `template` made into machine `index`: unique MACs (the boot NIC gets NIC slot 0), SMBIOS
/// system/board/chassis serials and system UUID, disk serials.
pub fn personalise(template: &HardwareReport, index: u32) -> HardwareReport {
    let mut r = template.clone();
    let boot = r.nics.iter().position(|n| n.boot).unwrap_or(0);
    let mut slot = 1;
    for (i, nic) in r.nics.iter_mut().enumerate() {
        if i == boot {
            nic.mac = sim_mac(index, 0);
        } else {
            nic.mac = sim_mac(index, slot);
            slot += 1;
        }
    }
    r.boot_mac = sim_mac(index, 0);
    r.smbios.system.serial = Some(format!("SIM-{index:08}"));
    r.smbios.system.uuid = Some(format!("5d1f0000-0000-4000-8000-{index:012x}"));
    r.smbios.baseboard.serial = Some(format!("SIM-BOARD-{index:08}"));
    r.smbios.chassis.serial = Some(format!("SIM-CHASSIS-{index:08}"));
    for (i, d) in r.disks.iter_mut().enumerate() {
        d.serial = Some(format!("SIM-{index:08}-DISK-{i}"));
    }
    r
}

/// Commands are counted by the agent, not run; sleeps end early when the run stops.
struct SimHost {
    stop: Arc<AtomicBool>,
}

impl Host for SimHost {
    fn run(&mut self, _cmd: &Cmd) -> Result<(), String> {
        Ok(())
    }

    fn sysrq(&mut self, _key: char) -> Result<(), String> {
        Ok(())
    }

    fn sleep(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(100)));
        }
    }

    fn is_dry_run(&self) -> bool {
        // No ipxe.lkrn downloads: a thousand threads would only measure this disk.
        true
    }
}

/// Runs the simulation; returns the totals when `duration` elapses.
pub fn run(opts: &SimOptions) -> Result<SimTotals, String> {
    let templates = templates(opts.fixtures.as_deref(), &opts.root)?;
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let mut handles = Vec::new();
    crate::log!(
        "simulating {} machines against {} from {} template(s)",
        opts.count,
        opts.server,
        templates.len()
    );
    let started = Instant::now();
    for index in 0..opts.count {
        let report = personalise(&templates[index as usize % templates.len()], index);
        let client = Client::new(&opts.server, opts.enrollment_secret.clone());
        let host = SimHost { stop: stop.clone() };
        let mut agent_opts = AgentOptions::new(&opts.root);
        agent_opts.after_terminal = AfterTerminal::Restart;
        agent_opts.tag = format!("sim-{index}");
        agent_opts.quiet = true;
        agent_opts.stop = Some(stop.clone());
        agent_opts.counters = Some(counters.clone());
        // Machine i starts at i/count of the ramp.
        let delay = opts
            .ramp
            .mul_f64(f64::from(index) / f64::from(opts.count.max(1)));
        let seed = Rng::seed_from_clock(u64::from(index));
        let stop_t = stop.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sim-{index}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut host_for_delay = SimHost { stop: stop_t };
                host_for_delay.sleep(delay);
                let source: crate::agent::ReportSource = Box::new(move || report.clone());
                let mut agent = Agent::new(
                    client,
                    host,
                    source,
                    agent_opts,
                    Backoff::standard(Rng::new(seed)),
                );
                agent.run();
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                return Err(format!("starting machine {index}: {e}"));
            }
        }
    }
    let totals = || SimTotals {
        registrations: counters.registrations.load(Ordering::Relaxed),
        heartbeats: counters.heartbeats.load(Ordering::Relaxed),
        failures: counters.failures.load(Ordering::Relaxed),
        terminal: counters.terminal.load(Ordering::Relaxed),
    };
    let mut next_report = started + opts.report_every;
    loop {
        let now = Instant::now();
        if opts.duration.is_some_and(|d| now >= started + d) {
            break;
        }
        if now >= next_report {
            let t = totals();
            crate::log!(
                "after {} s: {} registrations, {} heartbeats, {} failures, {} reboots/chainloads",
                now.duration_since(started).as_secs(),
                t.registrations,
                t.heartbeats,
                t.failures,
                t.terminal
            );
            next_report += opts.report_every;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    // Machines notice the stop between calls; one inside a long-polled heartbeat is not
    // waited for past a deadline (the process ends it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while handles.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = handles.iter().filter(|h| !h.is_finished()).count();
    if left > 0 {
        crate::log!("{left} machines still inside a request at the end; not waiting for them");
    }
    Ok(totals())
}
