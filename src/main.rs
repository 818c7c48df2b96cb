//! The `permanence` command: serve, check the plans, read the records.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use permanence::config::Config;
use permanence::{server, store};

#[derive(Parser)]
#[command(
    name = "permanence",
    version,
    about = "SIP call-handling server for remote secretariats"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Configuration file.
        #[arg(long, default_value = "config/permanence.toml")]
        config: PathBuf,
    },
    /// Check the dial plans and sounds without starting anything.
    Check {
        /// Configuration file.
        #[arg(long, default_value = "config/permanence.toml")]
        config: PathBuf,
    },
    /// List recent calls from the records.
    Calls {
        /// Configuration file.
        #[arg(long, default_value = "config/permanence.toml")]
        config: PathBuf,
        /// How many calls, newest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
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
        Command::Check { config } => {
            let config = Config::load(&config)?;
            let snapshot = server::load_snapshot(&config)?;
            println!("ok: {} companies", snapshot.plans.companies().len());
            Ok(())
        }
        Command::Calls {
            config,
            limit,
            json,
        } => {
            let config = Config::load(&config)?;
            let calls = store::recent_calls(&config.database_path(), limit)?;
            if json {
                for c in &calls {
                    println!("{}", serde_json::to_string(c)?);
                }
            } else {
                print_calls(&calls);
            }
            Ok(())
        }
    }
}

fn print_calls(calls: &[store::CallRow]) {
    let time = |t: &Option<String>| {
        t.as_deref()
            .map_or("-".to_string(), |t| t.get(11..19).unwrap_or(t).to_string())
    };
    println!(
        "{:>5}  {:<10}  {:<16}  {:<16}  {:<10}  {:<8}  {:<8}  {:<8}  OUTCOME",
        "ID", "COMPANY", "CALLER", "DIALLED", "DATE", "START", "ANSWER", "END"
    );
    for c in calls {
        println!(
            "{:>5}  {:<10}  {:<16}  {:<16}  {:<10}  {:<8}  {:<8}  {:<8}  {}",
            c.id,
            c.company.as_deref().unwrap_or("-"),
            c.caller,
            c.dialled,
            c.started_at.get(..10).unwrap_or(&c.started_at),
            time(&Some(c.started_at.clone())),
            time(&c.answered_at),
            time(&c.ended_at),
            c.outcome.as_deref().unwrap_or("(live)")
        );
    }
}

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
