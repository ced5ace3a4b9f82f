//! The `dragonfly` binary: flags in, a bound socket, then the library's `serve`.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use dragonfly::config::{AdminCommand, Cli, Command, Config};
use tracing_subscriber::EnvFilter;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dragonfly: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Openapi) => {
            println!("{}", dragonfly::api::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Admin(cmd)) => {
            admin(&Config::resolve(&cli.serve)?, cmd)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Tinkerbell(cmd)) => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(
                    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
                )
                .init();
            let config = Config::resolve(&cli.serve)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let code = runtime.block_on(dragonfly::provision::run_command(
                &cmd,
                &config.tinkerbell,
                &config,
                &mut std::io::stdout(),
            ))?;
            Ok(ExitCode::from(code))
        }
        None | Some(Command::Serve) => {
            tracing_subscriber::fmt()
                .with_ansi(
                    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
                )
                .with_env_filter(
                    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
                )
                .init();
            let config = Config::resolve(&cli.serve)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                // Blocking-pool work is short (SQLite reads on 4 connections, file chunks,
                // a password hash): a small pool queues bursts instead of growing to
                // hundreds of idle threads, each with its own allocator heap.
                .max_blocking_threads(16)
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| {
                        format!("cannot listen on {} (--host/--port)", config.listen)
                    })?;
                dragonfly::serve(config, listener, shutdown_signal()).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `dragonfly admin ...`: account and token chores on the database directly.
fn admin(config: &Config, cmd: AdminCommand) -> anyhow::Result<()> {
    let db = dragonfly::store::Db::open(&config.db)
        .with_context(|| format!("--db {}", config.db.display()))?;
    let auth = dragonfly::auth::Auth::new(db, std::sync::Arc::new(dragonfly::clock::SystemClock));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cmd {
        AdminCommand::SetPassword { username } => {
            let password = if std::io::stdin().is_terminal() {
                let first = rpassword::prompt_password(format!("New password for {username}: "))?;
                let again = rpassword::prompt_password("Again: ")?;
                if first != again {
                    anyhow::bail!("the two passwords differ; nothing changed");
                }
                first
            } else {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_string()
            };
            runtime
                .block_on(auth.set_password(&username, &password))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("password of {username} set; their sessions were ended");
        }
        AdminCommand::CreateToken { name, scope } => {
            let scope = if scope == "read" {
                dragonfly::auth::Scope::Read
            } else {
                dragonfly::auth::Scope::Admin
            };
            let (token, secret) = runtime
                .block_on(auth.create_token(&name, scope, "cli"))
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

/// Resolves on Ctrl-C or SIGTERM (systemd's stop).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
