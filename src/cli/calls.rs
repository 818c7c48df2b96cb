//! `permanence calls`: recent calls from the records.

use std::path::PathBuf;

use permanence::config::Config;
use permanence::store;
use permanence::terminal::safe;

/// `calls`' flags.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = "config/permanence.toml")]
    config: PathBuf,
    /// How many calls, newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints the latest calls, as a table or JSON lines.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let calls = store::recent_calls(&config.database_path(), args.limit)?;
    if args.json {
        for c in &calls {
            out!("{}", serde_json::to_string(c)?);
        }
    } else {
        print_calls(&calls);
    }
    Ok(())
}

/// The calls as a table with a header line; times of day in UTC, talk time in seconds.
fn print_calls(calls: &[store::CallRow]) {
    let time = |t: &Option<String>| {
        t.as_deref()
            .map_or("-".to_string(), |t| t.get(11..19).unwrap_or(t).to_string())
    };
    out!(
        "{:>5}  {:<10}  {:<16}  {:<16}  {:<10}  {:<8}  {:<8}  {:<8}  {:<12}  {:>6}  OUTCOME",
        "ID",
        "COMPANY",
        "CALLER",
        "DIALLED",
        "DATE",
        "START",
        "ANSWER",
        "END",
        "HANDLED BY",
        "TALK"
    );
    for c in calls {
        let by = c
            .handled_by
            .clone()
            .or_else(|| c.transferred_to.as_ref().map(|t| format!("→{t}")))
            .map_or_else(|| "-".into(), |by| safe(&by).into_owned());
        let talk = c
            .handled_at
            .as_deref()
            .zip(c.ended_at.as_deref())
            .and_then(|(a, e)| {
                let a: jiff::Timestamp = a.parse().ok()?;
                let e: jiff::Timestamp = e.parse().ok()?;
                Some(format!("{}s", (e - a).as_secs()))
            })
            .unwrap_or_else(|| "-".into());
        out!(
            "{:>5}  {:<10}  {:<16}  {:<16}  {:<10}  {:<8}  {:<8}  {:<8}  {:<12}  {:>6}  {}",
            c.id,
            c.company.as_deref().unwrap_or("-"),
            safe(&c.caller),
            safe(&c.dialled),
            c.started_at.get(..10).unwrap_or(&c.started_at),
            time(&Some(c.started_at.clone())),
            time(&c.answered_at),
            time(&c.ended_at),
            by,
            talk,
            c.outcome.as_deref().unwrap_or("(live)")
        );
    }
}
