//! `dragonfly-agent`: the command line. Everything else is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dragonfly_agent::agent::{AfterTerminal, Agent, AgentOptions, Outcome, ReportSource};
use dragonfly_agent::backoff::{Backoff, Rng};
use dragonfly_agent::client::Client;
use dragonfly_agent::cmdline::KernelCmdline;
use dragonfly_agent::host::{DryRunHost, Host, SystemHost};
use dragonfly_agent::inventory::Inventory;
use dragonfly_agent::{config, log, sim};

/// Reports this machine's hardware to a Dragonfly server and follows its instructions.
#[derive(Debug, Parser)]
#[command(name = "dragonfly-agent", version, about)]
struct Cli {
    /// Server base URL (default: `dragonfly.url=` on the kernel command line).
    #[arg(long, global = true, value_name = "URL", env = config::URL_ENV)]
    server: Option<String>,
    /// Read the hardware under this root instead of `/` (a fixture tree).
    #[arg(long, global = true, value_name = "PATH", default_value = "/")]
    root: PathBuf,
    /// Enrollment secret (default: `dragonfly.secret=` on the kernel command line).
    #[arg(
        long,
        value_name = "SECRET",
        env = "DRAGONFLY_ENROLLMENT_SECRET",
        hide_env_values = true
    )]
    enrollment_secret: Option<String>,
    /// Print the commands it would run (kexec, reboot) instead of running them.
    #[arg(long)]
    dry_run: bool,
    /// Exit after carrying out the first instruction.
    #[arg(long)]
    once: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the hardware report as JSON and exit.
    Inventory,
    /// Run many fake machines against a server (load test).
    Simulate {
        /// How many machines.
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// A directory of fixture trees to build the machines from (default: this machine).
        #[arg(long, value_name = "DIR")]
        fixtures: Option<PathBuf>,
        /// Stop after this many seconds (default: run until killed).
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
        /// Spread the first registrations over this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        ramp: u64,
    },
    /// Write an OS image to a block device (or file) the way an install does: stream,
    /// decompress, verify the SHA-256, the first MiB last. No seed, no server. For checking
    /// a mirror's image by hand and for benchmarks.
    WriteImage {
        /// http URL of the image file.
        #[arg(long)]
        url: String,
        /// raw, raw.gz, raw.xz, raw.zst or qcow2.
        #[arg(long, value_parser = parse_format)]
        format: dragonfly_proto::ImageFormat,
        /// SHA-256 of the file as published (hex); this or --sha512 is required.
        #[arg(long, required_unless_present = "sha512")]
        sha256: Option<String>,
        /// SHA-512 of the file as published (hex).
        #[arg(long)]
        sha512: Option<String>,
        /// The block device (or an existing file) to write.
        #[arg(long, value_name = "PATH")]
        device: PathBuf,
    },
}

fn parse_format(s: &str) -> Result<dragonfly_proto::ImageFormat, String> {
    dragonfly_proto::ImageFormat::parse(s)
        .map_err(|_| "one of raw, raw.gz, raw.xz, raw.zst".to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            log!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Some(Command::Inventory) => {
            let report = Inventory::collect(&cli.root).map_err(|e| e.to_string())?;
            let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
            println!("{json}");
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::WriteImage {
            url,
            format,
            sha256,
            sha512,
            device,
        }) => {
            let size = std::fs::File::open(&device)
                .and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)))
                .map_err(|e| format!("--device {}: {e}", device.display()))?;
            let client = dragonfly_agent::client::Client::new("http://localhost", None);
            let mut source = dragonfly_agent::install::Resuming::open(
                client.image_agent(),
                &url,
                Box::new(|line| log!("{line}")),
            )
            .map_err(|e| format!("--url {url}: {e}"))?;
            let total = source.length();
            let started = std::time::Instant::now();
            let written = dragonfly_agent::install::write_image(
                &mut source,
                &dragonfly_proto::ImageSource {
                    url: url.clone(),
                    format,
                    sha256,
                    sha512,
                    size: None,
                },
                total,
                &device,
                // No seed is added here: the whole device is the image's.
                size + dragonfly_agent::install::SEED_BYTES,
                &mut |p| {
                    log!(
                        "written {} MiB at {:.1} MB/s",
                        p.written >> 20,
                        p.bytes_per_sec as f64 / 1e6
                    )
                },
            )
            .map_err(|e| e.to_string())?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "wrote {} bytes ({} downloaded of {}) to {} in {secs:.2} s ({:.1} MB/s); {} verified",
                written.written,
                written.downloaded,
                total.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
                device.display(),
                written.written as f64 / secs.max(0.001) / 1e6,
                written.checksum
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Simulate {
            count,
            fixtures,
            duration,
            ramp,
        }) => {
            let server = server(
                &cli.root,
                cli.server.as_deref(),
                cli.enrollment_secret.as_deref(),
            )?;
            let totals = sim::run(&sim::SimOptions {
                server: server.url,
                enrollment_secret: server.enrollment_secret,
                count,
                fixtures,
                root: cli.root,
                duration: duration.map(Duration::from_secs),
                ramp: Duration::from_secs(ramp),
                report_every: Duration::from_secs(5),
            })?;
            println!(
                "{} registrations, {} heartbeats, {} failures, {} reboots/chainloads",
                totals.registrations, totals.heartbeats, totals.failures, totals.terminal
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let server = server(
                &cli.root,
                cli.server.as_deref(),
                cli.enrollment_secret.as_deref(),
            )?;
            log!(
                "dragonfly-agent {} talking to {} (from {})",
                dragonfly_agent::VERSION,
                server.url,
                server.source
            );
            let client = Client::new(&server.url, server.enrollment_secret);
            let mut opts = AgentOptions::new(&cli.root);
            opts.once = cli.once;
            opts.machine_secret = server.machine_secret;
            let outcome = if cli.dry_run {
                opts.after_terminal = AfterTerminal::Stop;
                agent_loop(client, DryRunHost, opts)
            } else {
                agent_loop(client, SystemHost::new(cli.root.clone()), opts)
            };
            log!("done: {outcome}");
            Ok(match outcome {
                Outcome::Failed(_) => ExitCode::FAILURE,
                _ => ExitCode::SUCCESS,
            })
        }
    }
}

fn server(
    root: &std::path::Path,
    flag: Option<&str>,
    secret: Option<&str>,
) -> Result<config::ServerConfig, String> {
    let cmdline = KernelCmdline::read(root)
        .map_err(|e| format!("reading {}: {e}", root.join("proc/cmdline").display()))?;
    // clap already folded DRAGONFLY_URL into the flag.
    config::discover(&cmdline, flag, None, secret).map_err(|e| e.to_string())
}

fn agent_loop<H: Host>(client: Client, host: H, opts: AgentOptions) -> Outcome {
    let root = opts.root.clone();
    let source: ReportSource = Box::new(move || {
        let (report, errors) = Inventory::collect_lenient(&root);
        for e in &errors {
            log!("inventory: {e} (that section is left out)");
        }
        if report.boot_mac.is_empty() {
            log!("inventory: no network interface found; the server may refuse the report");
        }
        log!(
            "inventory: boot MAC {}, {} NICs, {} disks, {} PCI functions, serial {}",
            if report.boot_mac.is_empty() {
                "none"
            } else {
                &report.boot_mac
            },
            report.nics.len(),
            report.disks.len(),
            report.pci.len(),
            report.smbios.system.serial.as_deref().unwrap_or("none")
        );
        report
    });
    let backoff = Backoff::standard(Rng::new(Rng::seed_from_clock(0)));
    Agent::new(client, host, source, opts, backoff).run()
}
