//! The `dragonfly` binary: the command line in, a bound socket, then the library's `serve`
//! (or one of the offline subcommands in `dragonfly::cli`).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use dragonfly::config::{Command, Config, ParseError, ServeArgs};
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
    let cli = match dragonfly::config::parse(std::env::args_os()) {
        Ok(cli) => cli,
        // clap prints help, versions and usage errors itself (exit status 2 for errors).
        Err(ParseError::Usage(e)) => e.exit(),
        Err(ParseError::File(e)) => return Err(e),
    };
    match cli.command {
        Some(Command::Openapi) => {
            println!("{}", dragonfly::api::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Admin(cmd)) => {
            current_thread()?.block_on(dragonfly::cli::admin(cmd))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Tinkerbell(cmd)) => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(
                    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
                )
                .init();
            let code = current_thread()?
                .block_on(dragonfly::cli::tinkerbell(&cmd, &mut std::io::stdout()))?;
            Ok(ExitCode::from(code))
        }
        Some(Command::Os(cmd)) => {
            let code =
                current_thread()?.block_on(dragonfly::cli::os(cmd, &mut std::io::stdout()))?;
            Ok(ExitCode::from(code))
        }
        Some(Command::Dhcp(cmd)) => {
            let code =
                current_thread()?.block_on(dragonfly::cli::dhcp(cmd, &mut std::io::stdout()))?;
            Ok(ExitCode::from(code))
        }
        Some(Command::Serve(args)) => serve(&args),
        None => serve(&cli.serve),
    }
}

fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let mut config = Config::resolve(args)?;
    // Every agent waiting in a long-poll holds a connection: take every descriptor the
    // system allows (systemd's LimitNOFILE), and size the connection cap to it.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(nofile) => {
            config.fit_descriptors(nofile);
            tracing::info!(
                nofile,
                max_connections = config.max_connections,
                per_address = config.max_connections_per_address,
                "connection limits"
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the descriptor limit"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking-pool work is short (SQLite reads on 4 connections, file chunks, a
        // password hash): a small pool queues bursts instead of growing to hundreds of idle
        // threads, each with its own allocator heap.
        .max_blocking_threads(16)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = bind(config.listen)
            .with_context(|| format!("cannot listen on {} (--host/--port)", config.listen))?;
        dragonfly::serve(config, listener, shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A listening socket with a deep accept queue: under a burst of connections (a rack
/// PXE-booting at once, or a flood) the kernel keeps up to 4,096 waiting, capped by
/// net.core.somaxconn, rather than dropping new SYNs, which costs a client a one-second
/// retransmit.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
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
