//! `dragonfly tinkerbell check|render`: the Tinkerbell backend from the command line, without
//! the server running.

use std::io::Write;

use anyhow::{Context, bail};
use dragonfly_proto::normalize_mac;

use super::{facts, os_facts};
use crate::error::Error;
use crate::machines::Machines;
use crate::machines::catalogue::Catalogue;
use crate::tinkerbell::objects;
use crate::tinkerbell::templates::TemplateSettings;
use crate::tinkerbell::{self, Mode, TinkerbellArgs};

/// The objects `dragonfly tinkerbell render` prints for the machine with boot MAC `mac`
/// (nothing is written).
pub async fn render(
    machines: &Machines,
    catalogue: &Catalogue,
    mac: &str,
    os: Option<&str>,
    settings: &TemplateSettings,
    namespace: &str,
) -> anyhow::Result<String> {
    let mac = normalize_mac(mac).map_err(|e| anyhow::anyhow!("--mac {mac:?}: {e}"))?;
    let Some(machine) = machines.by_mac(&mac).await? else {
        bail!("no machine with boot MAC {mac} in the database");
    };
    let detail = machines.get(&machine.id).await?;
    let Some(slug) = os.map(str::to_string).or(machine.os) else {
        bail!("machine {mac} has no OS assigned: name one with --os");
    };
    let os = match catalogue.get(&slug).await {
        Ok(os) => os_facts(&os),
        Err(Error::NotFound(_)) => bail!("no OS '{slug}' in the catalogue"),
        Err(e) => return Err(e).context("the OS catalogue"),
    };
    let f = facts(&detail);
    let hw = objects::hardware(&f, Some(&os), namespace)?;
    let t = objects::template(&os, settings, namespace)?;
    let wf = objects::workflow(&f, &os, namespace)?;
    Ok(objects::render_yaml(&hw, &t, &wf)?)
}

/// `dragonfly tinkerbell check`: connects as configured and lists what the RBAC lacks.
/// Returns the process exit code (0 when all is well).
pub async fn check(args: &TinkerbellArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<u8> {
    let mut a = args.clone();
    if a.cluster.tinkerbell == Mode::Off {
        bail!("--tinkerbell off: nothing to check");
    }
    a.cluster.tinkerbell = Mode::On;
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
