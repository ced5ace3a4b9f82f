//! `dragonfly tinkerbell check|manifests|render`: the Tinkerbell backend from the command
//! line, without the server running.

use std::io::Write;

use anyhow::{Context, bail};
use dragonfly_proto::{Firmware, HardwareReport, normalize_mac};

use super::{disk_ref, os_facts};
use crate::config::Config;
use crate::machines::OsImage;
use crate::store::Db;
use crate::tinkerbell::objects::{self, MachineFacts};
use crate::tinkerbell::templates::TemplateSettings;
use crate::tinkerbell::{self, TinkerbellArgs, TinkerbellCommand};

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
    let facts = MachineFacts {
        id: row.id.clone(),
        mac: row.boot_mac.clone(),
        hostname: row.hostname.clone(),
        arch: row.arch.clone(),
        uefi: report
            .as_ref()
            .and_then(|r| r.firmware)
            .map_or(row.firmware == Some(Firmware::Uefi), |f| {
                f == Firmware::Uefi
            }),
        nics: report.as_ref().map(|r| r.nics.clone()).unwrap_or_default(),
        disks: report.as_ref().map(|r| r.disks.clone()).unwrap_or_default(),
        target: row.target_disk.as_ref().map(disk_ref),
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
