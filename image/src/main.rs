//! `dragonfly-image`: the parts of `image/build.sh` that need exact control over bytes —
//! the reproducible initramfs, the kexec patch of `ipxe.lkrn` and `manifest.json`.

mod initramfs;
mod lkrn;
mod manifest;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "dragonfly-image", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a staging directory as a reproducible zstd-compressed newc cpio archive.
    Initramfs {
        /// The staging directory: its contents become the archive's root.
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// The `.zst` file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Add a device node: PATH:c|b:MAJOR:MINOR:MODE (e.g. dev/console:c:5:1:600).
        #[arg(long = "node", value_name = "SPEC")]
        nodes: Vec<initramfs::Node>,
        /// The mtime of every entry.
        #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
        mtime: u32,
        /// zstd level (19 is the highest without --ultra's large windows, which the kernel's
        /// decompressor would have to allocate).
        #[arg(long, default_value_t = 19)]
        level: i32,
    },
    /// Make Debian's ipxe.lkrn restart the PIC and PIT before iPXE runs (needed after kexec).
    PatchLkrn {
        #[arg(value_name = "IN")]
        input: PathBuf,
        #[arg(value_name = "OUT")]
        output: PathBuf,
    },
    /// Write BOOT_DIR/manifest.json describing the artefact.
    Manifest {
        #[arg(long, value_name = "DIR")]
        boot_dir: PathBuf,
        /// The kernel release (`uname -r`) of vmlinuz.
        #[arg(long, value_name = "RELEASE")]
        kernel: String,
        /// A Debian package the artefact was built from, as NAME=VERSION (repeatable).
        #[arg(long = "package", value_name = "NAME=VERSION")]
        packages: Vec<String>,
        #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
        source_date_epoch: u64,
        /// Whose kernel, modules and busybox: `debian` or `alpine`.
        #[arg(long, default_value = "debian")]
        flavour: String,
        /// What hardware the kernel drives: `any`, or why not (e.g. virtual machines only).
        #[arg(long, default_value = "any")]
        hardware: String,
        /// Where the flavour's files came from (e.g. the Alpine source used).
        #[arg(long)]
        source: Option<String>,
    },
    /// List the entries of a `.zst` initramfs.
    List {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dragonfly-image: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Initramfs {
            root,
            out,
            nodes,
            mtime,
            level,
        } => {
            let entries = initramfs::collect(&root, &nodes)?;
            let raw = initramfs::write(&entries, mtime, level, &out)?;
            let packed = fs::metadata(&out)?.len();
            println!(
                "{}: {} entries, {raw} bytes, {packed} compressed",
                out.display(),
                entries.len()
            );
        }
        Command::PatchLkrn { input, output } => {
            let mut image = fs::read(&input).with_context(|| input.display().to_string())?;
            let patched =
                lkrn::patch(&mut image).map_err(|e| anyhow!("{}: {e}", input.display()))?;
            fs::write(&output, &image).with_context(|| output.display().to_string())?;
            println!("{}: {patched}", output.display());
        }
        Command::Manifest {
            boot_dir,
            kernel,
            packages,
            source_date_epoch,
            flavour,
            hardware,
            source,
        } => {
            let mut map = BTreeMap::new();
            for p in &packages {
                let (name, version) = p
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--package {p:?}: expected NAME=VERSION"))?;
                map.insert(name.to_string(), version.to_string());
            }
            let m = manifest::build(manifest::Inputs {
                boot_dir: &boot_dir,
                kernel,
                source_date_epoch,
                packages: map,
                flavour,
                hardware,
                source,
            })?;
            let path = boot_dir.join(manifest::FILE_NAME);
            fs::write(&path, manifest::to_json(&m)?).with_context(|| path.display().to_string())?;
            println!("{}: version {}", path.display(), m.version);
        }
        Command::List { file } => {
            for e in initramfs::read(&file)? {
                println!("{:06o} {:>9} {}", e.mode, e.data.len(), e.path);
            }
        }
    }
    Ok(())
}
