//! The `permanence` command: serve, check the plans, read the records.
//!
//! This file only starts logging and turns the outcome into an exit code; the commands
//! and their flags are in `cli`, one module per subcommand.

mod cli;

fn main() -> std::process::ExitCode {
    init_logging();
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain, no backtrace: this is for the operator.
            eprintln!("permanence: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (stdout is the commands' output), `info` unless `RUST_LOG` says otherwise.
fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: log files and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
