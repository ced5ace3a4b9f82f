//! The subcommands other than `serve`: operator chores on the database (`admin`) and the
//! Tinkerbell backend from the command line (`tinkerbell`). `main.rs` parses and calls these.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::auth::{Auth, Scope};
use crate::clock::SystemClock;
use crate::config::{AdminCommand, Config, OsCommand, TinkerbellCommand};
use crate::store::Db;
use crate::tinkerbell::templates::TemplateSettings;

/// `dragonfly admin ...`: account and token chores on the database directly.
pub async fn admin(cmd: AdminCommand) -> anyhow::Result<()> {
    let path = match &cmd {
        AdminCommand::SetPassword { db, .. } | AdminCommand::CreateToken { db, .. } => {
            db.db.clone()
        }
    };
    let db = {
        let p = path.clone();
        tokio::task::spawn_blocking(move || Db::open(&p))
            .await
            .context("database task failed")?
            .with_context(|| format!("--db {}", path.display()))?
    };
    let auth = Auth::new(db, Arc::new(SystemClock));
    match cmd {
        AdminCommand::SetPassword { username, .. } => {
            let password = read_password(&username)?;
            auth.set_password(&username, &password)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("password of {username} set; their sessions were ended");
        }
        AdminCommand::CreateToken { name, scope, .. } => {
            let scope = if scope == "read" {
                Scope::Read
            } else {
                Scope::Admin
            };
            let (token, secret) = auth
                .create_token(&name, scope, "cli")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "created API token {} ({:?}); its secret, shown once:",
                token.id, token.scope
            );
            println!("{secret}");
        }
    }
    Ok(())
}

/// `dragonfly os refresh`: one line per entry; the exit code is 1 when any failed.
pub async fn os(cmd: OsCommand, out: &mut (dyn Write + Send)) -> anyhow::Result<u8> {
    let OsCommand::Refresh { os, db, .. } = cmd;
    let path = db.db.clone();
    let db = tokio::task::spawn_blocking(move || Db::open(&db.db))
        .await
        .context("database task failed")?
        .with_context(|| format!("--db {}", path.display()))?;
    let catalogue = crate::machines::catalogue::Catalogue::new(db, Arc::new(SystemClock));
    let results = match os {
        Some(slug) => {
            let r = catalogue.refresh(&slug).await.map_err(|e| e.to_string());
            if let Err(e) = &r {
                if e.ends_with("not found") {
                    bail!("--os {slug}: no such OS in the catalogue");
                }
            }
            vec![(slug, r)]
        }
        None => catalogue
            .refresh_all()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    if results.is_empty() {
        writeln!(out, "no OS entry has a checksum_url; nothing to refresh")?;
    }
    let mut failed = 0;
    for (slug, r) in results {
        match r {
            Ok(r) => {
                let sum = r.os.sha512.or(r.os.sha256).unwrap_or_default();
                let what = if r.changed { "new" } else { "unchanged" };
                writeln!(out, "{slug}: {} {what} {sum}", r.algorithm)?;
            }
            Err(e) => {
                failed += 1;
                writeln!(out, "{slug}: failed: {e}")?;
            }
        }
    }
    Ok(u8::from(failed > 0))
}

/// From the terminal (twice), or else the first line of standard input.
fn read_password(username: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {username}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the two passwords differ; nothing changed");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

/// `dragonfly tinkerbell ...`; returns the process exit code (0 when all is well).
pub async fn tinkerbell(
    cmd: &TinkerbellCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<u8> {
    match cmd {
        TinkerbellCommand::Manifests {
            namespace,
            deploy,
            image,
            ..
        } => {
            let ns = &namespace.tinkerbell_namespace;
            let mut text = crate::tinkerbell::rbac::manifests(ns);
            if *deploy {
                text.push_str(&crate::tinkerbell::deploy::manifests(ns, image));
            }
            out.write_all(text.as_bytes())?;
            Ok(0)
        }
        TinkerbellCommand::Check { tinkerbell, .. } => {
            crate::provision::check(tinkerbell, out).await
        }
        TinkerbellCommand::Render {
            mac,
            os,
            db,
            namespace,
            workflow,
            hookos,
            ..
        } => {
            if !db.db.exists() {
                bail!("no database at {} (--db)", db.db.display());
            }
            let mut config = Config::offline(&db.db);
            config.hookos.console = hookos.hookos_console.clone();
            // Nothing is served: the base URL only appears in instructions, never rendered.
            let state =
                crate::build_state(&config, "http://127.0.0.1".into(), Arc::new(SystemClock))
                    .await?;
            let settings =
                TemplateSettings::from_args(workflow)?.with_console(&hookos.hookos_console);
            let text = crate::provision::render(
                &state.machines,
                &state.catalogue,
                mac,
                os.as_deref(),
                &settings,
                &namespace.tinkerbell_namespace,
            )
            .await?;
            out.write_all(text.as_bytes())?;
            Ok(0)
        }
    }
}

/// `dragonfly dhcp ...`: returns the exit status.
pub async fn dhcp(
    cmd: crate::config::DhcpCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<u8> {
    match cmd {
        crate::config::DhcpCommand::Probe {
            interface,
            wait_secs,
            client,
            mac,
        } => {
            if !(1..=60).contains(&wait_secs) {
                anyhow::bail!("--wait-secs must be between 1 and 60");
            }
            let mac = match mac {
                None => None,
                Some(m) => Some(mac_bytes(&m).map_err(|e| anyhow::anyhow!("--mac: {e}"))?),
            };
            let wait = std::time::Duration::from_secs(wait_secs);
            let offers = crate::boot::dhcp::probe::probe(&interface, wait, client, mac).await?;
            for o in &offers {
                writeln!(
                    out,
                    "{} {}{}",
                    o.server,
                    o.address,
                    o.boot_file
                        .as_deref()
                        .map(|f| format!(" {f}"))
                        .unwrap_or_default()
                )?;
            }
            Ok(if offers.is_empty() { 1 } else { 0 })
        }
    }
}

fn mac_bytes(text: &str) -> anyhow::Result<[u8; 6]> {
    let m = dragonfly_proto::normalize_mac(text)?;
    let mut b = [0u8; 6];
    for (i, part) in m.split(':').enumerate().take(6) {
        b[i] = u8::from_str_radix(part, 16)?;
    }
    Ok(b)
}
