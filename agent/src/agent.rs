//! The protocol loop: register (retrying until the server answers), then obey instructions,
//! heartbeating in between. Every wait is bounded and logged; nothing the server sends can
//! make the agent panic or stop talking — unknown instructions are refused and reported,
//! garbage answers are retried.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dragonfly_proto::{
    HardwareReport, Heartbeat, InstallPlan, Instruction, PROTOCOL_VERSION, Phase, RegisterRequest,
    RegisterResponse, WriteProgress,
};

use crate::backoff::{self, Backoff};
use crate::client::{CallError, Client};
use crate::host::{Cmd, Host};
use crate::install;
use crate::inventory::Inventory;

/// What happens once a reboot, power-off or kexec was issued and the call came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterTerminal {
    /// A real machine: it should be gone by now. Wait `grace`, then try harder (SysRq), then
    /// report the failure and keep heartbeating.
    Wait,
    /// Dry run and tests: return the outcome to the caller.
    Stop,
    /// The simulator: the fake machine "rebooted"; register again after a short pause.
    Restart,
}

/// Counters shared with whoever watches the agent (the simulator prints them).
#[derive(Debug, Default)]
pub struct Counters {
    pub registrations: AtomicU64,
    pub heartbeats: AtomicU64,
    pub failures: AtomicU64,
    pub terminal: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Where `sys/firmware/efi` is looked up (UEFI machines reboot instead of kexec).
    pub root: PathBuf,
    /// Stop after carrying out the first instruction (a `wait` is not slept).
    pub once: bool,
    pub after_terminal: AfterTerminal,
    /// How long a machine gets to go away after `reboot -f` and friends returned.
    pub grace: Duration,
    /// Where the downloaded `ipxe.lkrn` goes.
    pub scratch_dir: PathBuf,
    /// Prefix of every log line (the simulator's machine name).
    pub tag: String,
    /// Log only failures, not every registration and instruction (the simulator, where a
    /// thousand machines would drown the terminal).
    pub quiet: bool,
    /// This machine's secret from its boot script (`dragonfly.machine=`): proof of identity
    /// at registration.
    pub machine_secret: Option<String>,
    /// Set from outside to end [`Agent::run`] at the next step.
    pub stop: Option<Arc<AtomicBool>>,
    pub counters: Option<Arc<Counters>>,
}

impl AgentOptions {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            once: false,
            after_terminal: AfterTerminal::Wait,
            grace: Duration::from_secs(60),
            scratch_dir: std::env::temp_dir(),
            tag: String::new(),
            quiet: false,
            machine_secret: None,
            stop: None,
            counters: None,
        }
    }
}

/// How [`Agent::run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Rebooting,
    PoweringOff,
    Chainloading,
    /// `--once` and the server said wait.
    Waiting {
        seconds: u32,
    },
    /// `--once` and the server sent an instruction this agent does not know.
    Refused,
    /// `--once` and the instruction could not be carried out.
    Failed(String),
    /// The stop flag was set.
    Stopped,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Rebooting => f.write_str("rebooting"),
            Outcome::PoweringOff => f.write_str("powering off"),
            Outcome::Chainloading => f.write_str("chainloading into iPXE"),
            Outcome::Waiting { seconds } => write!(f, "told to wait {seconds} s"),
            Outcome::Refused => f.write_str("refused an unknown instruction"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
            Outcome::Stopped => f.write_str("stopped"),
        }
    }
}

/// What obeying one instruction led to.
#[derive(Debug)]
enum Step {
    Next(Instruction),
    Reregister,
    Reinventory,
    Done(Outcome),
}

/// Produces the hardware report (again, for `reinventory`).
pub type ReportSource = Box<dyn FnMut() -> HardwareReport + Send>;

pub struct Agent<H: Host> {
    client: Client,
    host: H,
    inventory: ReportSource,
    opts: AgentOptions,
    backoff: Backoff,
    /// The token of the last registration: proof of identity when registering again.
    last_token: Option<String>,
}

impl<H: Host> Agent<H> {
    pub fn new(
        client: Client,
        host: H,
        inventory: ReportSource,
        opts: AgentOptions,
        backoff: Backoff,
    ) -> Self {
        Self {
            client,
            host,
            inventory,
            opts,
            backoff,
            last_token: None,
        }
    }

    /// The host, for tests that inspect what was done.
    pub fn host(&self) -> &H {
        &self.host
    }

    fn say(&self, args: fmt::Arguments<'_>) {
        crate::log::line(&self.opts.tag, args);
    }

    /// A routine line, left out when quiet.
    fn note(&self, args: fmt::Arguments<'_>) {
        if !self.opts.quiet {
            self.say(args);
        }
    }

    fn stopped(&self) -> bool {
        self.opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }

    fn count(&self, f: impl FnOnce(&Counters) -> &AtomicU64) {
        if let Some(c) = &self.opts.counters {
            f(c).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Registers and obeys until an outcome ends the loop (in production: never, the machine
    /// reboots or chainloads away).
    pub fn run(&mut self) -> Outcome {
        let mut report = (self.inventory)();
        loop {
            let Some(reg) = self.register(&report) else {
                return Outcome::Stopped;
            };
            match self.session(reg) {
                Step::Reregister | Step::Next(_) => {}
                Step::Reinventory => {
                    self.say(format_args!("collecting the inventory again"));
                    report = (self.inventory)();
                }
                Step::Done(outcome) => return outcome,
            }
            // A server that keeps answering 401 (or `reinventory`) must not turn the agent
            // into a registration loop at full speed.
            let pause = self.backoff.next_delay();
            self.host.sleep(pause);
        }
    }

    /// Registers, retrying until it works: fast with backoff while the server is unreachable
    /// or failing, slowly while it refuses. `None` only when stopped.
    fn register(&mut self, report: &HardwareReport) -> Option<RegisterResponse> {
        let req = RegisterRequest {
            agent_version: crate::VERSION.to_string(),
            protocol: PROTOCOL_VERSION,
            report: report.clone(),
            machine_secret: self.opts.machine_secret.clone(),
            previous_token: self.last_token.clone(),
        };
        loop {
            if self.stopped() {
                return None;
            }
            match self.client.register(&req) {
                Ok(r) => {
                    self.backoff.reset();
                    self.count(|c| &c.registrations);
                    self.note(format_args!(
                        "registered with {} as machine {}; instruction: {}",
                        self.client.base_url(),
                        r.machine_id,
                        describe(&r.instruction)
                    ));
                    return Some(r);
                }
                Err(e @ (CallError::Rejected { .. } | CallError::Unauthorized { .. })) => {
                    self.count(|c| &c.failures);
                    let d = self.backoff.jittered(backoff::SLOW);
                    self.say(format_args!(
                        "registration {e}; retrying in {} s",
                        d.as_secs()
                    ));
                    self.host.sleep(d);
                }
                Err(e) => {
                    self.count(|c| &c.failures);
                    let d = self.backoff.next_delay();
                    self.say(format_args!(
                        "registration attempt {} failed: {e}; retrying in {} ms",
                        self.backoff.attempts(),
                        d.as_millis()
                    ));
                    self.host.sleep(d);
                }
            }
        }
    }

    /// Obeys instructions with one token until re-registration or an outcome.
    fn session(&mut self, reg: RegisterResponse) -> Step {
        let token = reg.token;
        self.last_token = Some(token.clone());
        let every = Duration::from_secs(u64::from(reg.heartbeat_secs.clamp(1, 3600)));
        let mut instruction = reg.instruction;
        loop {
            if self.stopped() {
                return Step::Done(Outcome::Stopped);
            }
            match self.obey(&token, instruction, every) {
                Step::Next(next) => {
                    self.note(format_args!("instruction: {}", describe(&next)));
                    instruction = next;
                }
                other => return other,
            }
        }
    }

    fn obey(&mut self, token: &str, instruction: Instruction, every: Duration) -> Step {
        match instruction {
            Instruction::Wait { seconds } => {
                if self.opts.once {
                    return Step::Done(Outcome::Waiting { seconds });
                }
                // Long-poll for at most the period the server asked for (it caps at 60 s).
                // A server that answers early without news (an older one, or a zero wait)
                // must not turn this into a busy loop: sleep out the rest of the period.
                let period = Duration::from_secs(u64::from(seconds.clamp(1, 60)));
                let started = std::time::Instant::now();
                let step =
                    self.heartbeat_polling(token, Phase::Waiting, None, Some(seconds.clamp(1, 60)));
                if let Step::Next(Instruction::Wait { .. }) = &step {
                    let elapsed = started.elapsed();
                    if elapsed < period / 2 {
                        self.host.sleep(period - elapsed);
                    }
                }
                step
            }
            Instruction::Chainload {
                script_url,
                ipxe_lkrn_url,
            } => self.chainload(token, &script_url, &ipxe_lkrn_url),
            Instruction::Install(plan) => self.install(token, &plan),
            Instruction::Reboot => self.reboot(token),
            Instruction::Poweroff => self.poweroff(token),
            Instruction::Reinventory => Step::Reinventory,
            Instruction::Unknown => {
                self.say(format_args!(
                    "refused unknown instruction (a newer server?); still waiting"
                ));
                if self.opts.once {
                    return Step::Done(Outcome::Refused);
                }
                self.host.sleep(every);
                self.heartbeat(
                    token,
                    Phase::Waiting,
                    Some("refused unknown instruction".into()),
                )
            }
        }
    }

    /// Heartbeats until the server answers with an instruction (or asks to re-register).
    fn heartbeat(&mut self, token: &str, phase: Phase, message: Option<String>) -> Step {
        self.heartbeat_polling(token, phase, message, None)
    }

    /// [`Self::heartbeat`], long-polling up to `wait` seconds.
    fn heartbeat_polling(
        &mut self,
        token: &str,
        phase: Phase,
        message: Option<String>,
        wait: Option<u32>,
    ) -> Step {
        let hb = Heartbeat {
            phase,
            progress: None,
            message,
            write: None,
        };
        loop {
            if self.stopped() {
                return Step::Done(Outcome::Stopped);
            }
            match self.client.heartbeat(token, &hb, wait) {
                Ok(r) => {
                    self.backoff.reset();
                    self.count(|c| &c.heartbeats);
                    return Step::Next(r.instruction);
                }
                Err(CallError::Unauthorized { body }) => {
                    self.count(|c| &c.failures);
                    self.say(format_args!(
                        "heartbeat unauthorized ({body}); registering again"
                    ));
                    return Step::Reregister;
                }
                Err(CallError::Rejected { status: 404, body }) => {
                    self.count(|c| &c.failures);
                    self.say(format_args!(
                        "heartbeat: machine unknown to the server (404: {body}); registering again"
                    ));
                    return Step::Reregister;
                }
                Err(e @ CallError::Rejected { .. }) => {
                    self.count(|c| &c.failures);
                    let d = self.backoff.jittered(backoff::SLOW);
                    self.say(format_args!("heartbeat {e}; retrying in {} s", d.as_secs()));
                    self.host.sleep(d);
                }
                Err(e) => {
                    self.count(|c| &c.failures);
                    let d = self.backoff.next_delay();
                    self.say(format_args!(
                        "heartbeat attempt {} failed: {e}; retrying in {} ms",
                        self.backoff.attempts(),
                        d.as_millis()
                    ));
                    self.host.sleep(d);
                }
            }
        }
    }

    /// One status heartbeat before the agent goes away; its answer is not acted on and a
    /// failure is only logged (the machine is leaving either way).
    fn announce(&mut self, token: &str, phase: Phase, message: String) {
        self.say(format_args!("{message}"));
        // The server records what it is told: make a rehearsal visible as one.
        let message = if self.host.is_dry_run() {
            format!("dry run: {message}")
        } else {
            message
        };
        let hb = Heartbeat {
            phase,
            progress: None,
            message: Some(message),
            write: None,
        };
        match self.client.heartbeat(token, &hb, None) {
            Ok(_) => self.count(|c| &c.heartbeats),
            Err(e) => self.say(format_args!("could not report it: {e}")),
        }
    }

    /// A reboot, power-off or kexec call came back successfully. `Some` ends the obeying;
    /// `None` means the machine is still here after the grace period.
    fn after_success(&mut self, outcome: Outcome, what: &str) -> Option<Step> {
        self.count(|c| &c.terminal);
        match self.opts.after_terminal {
            AfterTerminal::Stop => Some(Step::Done(outcome)),
            AfterTerminal::Restart => {
                self.host.sleep(Duration::from_secs(1));
                Some(Step::Reregister)
            }
            AfterTerminal::Wait => {
                self.host.sleep(self.opts.grace);
                self.say(format_args!(
                    "still running {} s after {what}",
                    self.opts.grace.as_secs()
                ));
                None
            }
        }
    }

    /// Chainload into iPXE: on BIOS, kexec `ipxe.lkrn` with `dhcp && chain SCRIPT`; on UEFI
    /// (where `ipxe.lkrn` cannot run) or when kexec fails, reboot — the server's boot script
    /// for this machine already points onward.
    fn chainload(&mut self, token: &str, script_url: &str, lkrn_url: &str) -> Step {
        let script = self.client.absolute(script_url);
        let lkrn = self.client.absolute(lkrn_url);
        if Inventory::is_uefi(&self.opts.root) {
            self.announce(
                token,
                Phase::Chainloading,
                format!("UEFI firmware cannot kexec into ipxe.lkrn; rebooting to chain {script}"),
            );
            return self.reboot(token);
        }
        self.announce(token, Phase::Chainloading, format!("chainloading {script}"));
        let file = self
            .opts
            .scratch_dir
            .join(format!("dragonfly-ipxe-{}.lkrn", std::process::id()));
        if self.host.is_dry_run() {
            self.say(format_args!(
                "dry run: would download {lkrn} to {}",
                file.display()
            ));
        } else {
            match self.client.download(&lkrn, &file) {
                Ok(n) => self.say(format_args!("downloaded {lkrn} ({n} bytes)")),
                Err(e) => {
                    self.announce(
                        token,
                        Phase::Chainloading,
                        format!("kexec failed: downloading {lkrn}: {e}, rebooting"),
                    );
                    return self.reboot(token);
                }
            }
        }
        let load = kexec_load(&file, &script);
        let result = self
            .host
            .run(&load)
            .and_then(|()| self.host.run(&Cmd::new("kexec", ["-e"])));
        let why = match result {
            Ok(()) => match self.after_success(Outcome::Chainloading, "`kexec -e`") {
                Some(step) => return step,
                None => "still running after `kexec -e`".to_string(),
            },
            Err(e) => e,
        };
        self.announce(
            token,
            Phase::Chainloading,
            format!("kexec failed: {why}, rebooting"),
        );
        self.reboot(token)
    }

    /// The native install: checks the disk, streams the image onto it with progress in
    /// heartbeats, verifies it, adds the cloud-init seed, reports `written` and reboots into
    /// the installed system. A failure is reported and the agent stays, awaiting the operator.
    fn install(&mut self, token: &str, plan: &InstallPlan) -> Step {
        let disks = match crate::inventory::disks::read(&self.opts.root) {
            Ok(d) => d,
            Err(e) => return self.install_failed(token, format!("reading the disks: {e}")),
        };
        let disk = match install::preflight(plan, &disks) {
            Ok(d) => d.clone(),
            Err(e) => return self.install_failed(token, e.to_string()),
        };
        let device = self.opts.root.join("dev").join(&disk.name);
        let url = self.client.absolute(&plan.image.url);
        self.announce(
            token,
            Phase::Installing,
            format!(
                "writing {url} ({}) to {} ({})",
                install::format_name(plan.image.format),
                disk.name,
                plan.disk
            ),
        );
        if self.host.is_dry_run() {
            self.say(format_args!(
                "dry run: would write {url} to {}",
                device.display()
            ));
            return self.reboot(token);
        }
        let tag = self.opts.tag.clone();
        let mut source = match install::Resuming::open(
            self.client.image_agent(),
            &url,
            Box::new(move |line| crate::log::line(&tag, format_args!("{line}"))),
        ) {
            Ok(s) => s,
            Err(e) => return self.install_failed(token, format!("download failed: {e}")),
        };
        let file_len = source.length();
        let client = self.client.clone();
        let tag = self.opts.tag.clone();
        let mut progress = |p: WriteProgress| {
            let percent = p
                .total
                .filter(|t| *t > 0)
                .map(|t| (p.written.saturating_mul(100) / t).min(99) as u8);
            let message = format!(
                "writing: {} MiB{} at {:.1} MB/s",
                p.written >> 20,
                p.total
                    .map(|t| format!(" of {} MiB", t >> 20))
                    .unwrap_or_default(),
                p.bytes_per_sec as f64 / 1e6
            );
            crate::log::line(&tag, format_args!("{message}"));
            let hb = Heartbeat {
                phase: Phase::Installing,
                progress: percent,
                message: Some(message),
                write: Some(p),
            };
            // Progress is best-effort: a missed report must not stop the write.
            let _ = client.heartbeat(token, &hb, None);
        };
        let started = std::time::Instant::now();
        let written = match install::write_image(
            &mut source,
            &plan.image,
            file_len,
            &device,
            disk.size_bytes,
            &mut progress,
        ) {
            Ok(w) => w,
            Err(e) => return self.install_failed(token, e.to_string()),
        };
        if let Err(e) = install::add_seed(&device, &plan.seed) {
            return self.install_failed(token, format!("adding the cloud-init seed: {e}"));
        }
        let device_arg = device.display().to_string();
        if let Err(e) = self
            .host
            .run(&Cmd::new("blockdev", ["--rereadpt", device_arg.as_str()]))
        {
            self.say(format_args!(
                "re-reading the partition table: {e} (rebooting anyway)"
            ));
        }
        let secs = started.elapsed().as_secs_f64();
        self.announce(
            token,
            Phase::Written,
            format!(
                "wrote {} MiB to {} in {secs:.0} s ({:.1} MB/s), {} verified, seed added{}; \
                 rebooting into the installed system",
                written.written >> 20,
                disk.name,
                written.written as f64 / secs.max(0.001) / 1e6,
                written.checksum,
                match source.resumes() {
                    0 => String::new(),
                    n => format!(", download resumed {n} times"),
                }
            ),
        );
        self.reboot(token)
    }

    fn install_failed(&mut self, token: &str, message: String) -> Step {
        let message = format!("install failed: {message}");
        self.say(format_args!("{message}"));
        if self.opts.once {
            self.announce(token, Phase::Failed, message.clone());
            return Step::Done(Outcome::Failed(message));
        }
        self.heartbeat(token, Phase::Failed, Some(message))
    }

    fn reboot(&mut self, token: &str) -> Step {
        self.go_away(token, Outcome::Rebooting, Cmd::new("reboot", ["-f"]), 'b')
    }

    fn poweroff(&mut self, token: &str) -> Step {
        self.go_away(
            token,
            Outcome::PoweringOff,
            Cmd::new("poweroff", ["-f"]),
            'o',
        )
    }

    /// Runs `cmd`; when it fails or the machine is still here afterwards, SysRq `key`; when
    /// that fails too, reports the failure and keeps heartbeating.
    fn go_away(&mut self, token: &str, outcome: Outcome, cmd: Cmd, key: char) -> Step {
        let mut why = match self.host.run(&cmd) {
            Ok(()) => match self.after_success(outcome.clone(), &format!("`{cmd}`")) {
                Some(step) => return step,
                None => format!("still running after `{cmd}`"),
            },
            Err(e) => e,
        };
        self.say(format_args!("{why}; trying SysRq"));
        match self.host.sysrq(key) {
            Ok(()) => match self.after_success(outcome.clone(), "SysRq") {
                Some(step) => return step,
                None => why = format!("{why}; still running after SysRq"),
            },
            Err(e) => why = format!("{why}; SysRq: {e}"),
        }
        let message = format!("{outcome} failed: {why}");
        self.say(format_args!("{message}"));
        if self.opts.once {
            return Step::Done(Outcome::Failed(message));
        }
        self.heartbeat(token, Phase::Failed, Some(message))
    }
}

/// `kexec -c -l FILE --type=bzImage --real-mode --append="dhcp && chain SCRIPT"`: iPXE runs
/// its command line as a script. `-c` (kexec_load, not kexec_file_load) because `ipxe.lkrn`
/// is an old, non-relocatable bzImage that kexec_file_load refuses.
pub fn kexec_load(file: &Path, script_url: &str) -> Cmd {
    Cmd::new(
        "kexec",
        [
            "-c".to_string(),
            "-l".to_string(),
            file.display().to_string(),
            "--type=bzImage".to_string(),
            "--real-mode".to_string(),
            format!("--append=dhcp && chain {script_url}"),
        ],
    )
}

/// An instruction for the log.
pub fn describe(i: &Instruction) -> String {
    match i {
        Instruction::Wait { seconds } => format!("wait {seconds} s"),
        Instruction::Chainload { script_url, .. } => format!("chainload {script_url}"),
        Instruction::Install(plan) => format!(
            "install {} onto the disk with {}",
            plan.image.url, plan.disk
        ),
        Instruction::Reboot => "reboot".into(),
        Instruction::Poweroff => "power off".into(),
        Instruction::Reinventory => "collect the inventory again".into(),
        Instruction::Unknown => "unknown (refused)".into(),
    }
}
