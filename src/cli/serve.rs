//! `permanence serve`: the server, until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;

use permanence::config::Config;
use permanence::server;

/// `serve`'s flags.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = "config/permanence.toml")]
    config: PathBuf,
}

/// Loads the configuration and runs the server until a stop signal, then stops gracefully.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    // Signalling runs on one thread: a call costs tens of microseconds of it, and one
    // thread avoids waking other workers for every message (see docs/ARCHITECTURE.md).
    // RTP and SQLite have threads of their own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(server::run(config, shutdown_signal()))?;
    Ok(())
}

/// Completes at SIGTERM (what service managers send) or Ctrl-C, whichever comes first.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
