//! `permanence queue`: the callers waiting for a secretary now, per company.

use std::path::PathBuf;

use permanence::config::Config;
use permanence::store;
use permanence::terminal::safe;

/// `queue`'s flags.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = "config/permanence.toml")]
    config: PathBuf,
    /// JSON lines (one per waiting caller, with `wait_ms`) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints each company's waiting callers, longest wait first, and its longest wait.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let rows = store::waiting(&config.database_path())?;
    let now = jiff::Timestamp::now();
    let wait_ms = |at: &str| {
        at.parse::<jiff::Timestamp>()
            .map_or(0, |t| now.duration_since(t).as_millis().max(0) as u64)
    };
    if args.json {
        for row in &rows {
            let mut line = serde_json::to_value(row)?;
            line["wait_ms"] = wait_ms(&row.queued_at).into();
            out!("{line}");
        }
        return Ok(());
    }
    if rows.is_empty() {
        out!("nobody is waiting");
        return Ok(());
    }
    let mut companies: Vec<&str> = rows.iter().map(|r| r.company.as_str()).collect();
    companies.sort_unstable();
    companies.dedup();
    for company in companies {
        let mine: Vec<&store::WaitingRow> = rows.iter().filter(|r| r.company == company).collect();
        let longest = mine
            .iter()
            .map(|r| wait_ms(&r.queued_at))
            .max()
            .unwrap_or(0);
        out!(
            "{}: {} waiting, longest {}",
            safe(company),
            mine.len(),
            seconds(longest)
        );
        for r in mine {
            let name = r.caller_name.as_deref().map(safe).unwrap_or_default();
            out!(
                "  call {:<6}  {:<16}  {:<24}  waiting {}",
                r.call,
                safe(&r.caller),
                name,
                seconds(wait_ms(&r.queued_at))
            );
        }
    }
    Ok(())
}

fn seconds(ms: u64) -> String {
    format!("{} s", ms / 1000)
}
