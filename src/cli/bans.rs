//! `permanence bans`: addresses banned for repeated wrong passwords.

use std::path::PathBuf;

use permanence::config::Config;
use permanence::store;
use permanence::terminal::safe;

/// `bans`' flags.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = "config/permanence.toml")]
    config: PathBuf,
    /// How many, newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints the latest bans, marking those still in force.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let now = jiff::Timestamp::now().as_second();
    let rows = store::bans(&config.database_path(), args.limit)?;
    if !args.json {
        out!(
            "{:<19}  {:<39}  {:<12}  {:>8}  UNTIL (UTC)",
            "AT (UTC)",
            "SOURCE",
            "USERNAME",
            "FAILURES"
        );
    }
    for b in &rows {
        if args.json {
            out!("{}", serde_json::to_string(b)?);
            continue;
        }
        let until = jiff::Timestamp::from_second(b.until)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let state = if b.until > now { " (in force)" } else { "" };
        out!(
            "{:<19}  {:<39}  {:<12}  {:>8}  {until}{state}",
            b.at.get(..19).unwrap_or(&b.at).replace('T', " "),
            b.source,
            safe(&b.username),
            b.failures
        );
    }
    Ok(())
}
