//! `permanence deliveries`: the outbox (e-mails, webhook POSTs, daily summaries and the
//! lines held for them), newest first; `retry ID` puts a failed one back in the queue,
//! which the running server picks up within a second.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use permanence::config::Config;
use permanence::store;
use permanence::terminal::safe;

/// `deliveries`' flags.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = "config/permanence.toml", global = true)]
    config: PathBuf,
    /// Only the deliveries that were given up.
    #[arg(long)]
    failed: bool,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(subcommand)]
    action: Option<Action>,
}

/// What to do with a delivery.
#[derive(Subcommand)]
enum Action {
    /// Try a failed delivery again (now, with a fresh `[delivery] give_up_hours`).
    Retry {
        /// Its id (the first column of the list).
        id: i64,
    },
}

/// Lists the outbox, or retries one delivery.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let db = config.database_path();
    match args.action {
        Some(Action::Retry { id }) => retry(&db, id),
        None => list(&db, args.failed, args.json, args.limit),
    }
}

/// Puts a failed delivery back; an error when there is no failed delivery with this id.
fn retry(db: &Path, id: i64) -> anyhow::Result<()> {
    let row = store::retry_delivery(db, id, jiff::Timestamp::now())?.with_context(|| {
        format!("no failed delivery {id}; expected an id from `permanence deliveries --failed`")
    })?;
    out!(
        "{}: {} to {} queued again (the server sends it within a second)",
        row.id,
        row.channel,
        safe(&row.target)
    );
    Ok(())
}

/// The outbox as a table (or JSON lines).
fn list(db: &Path, failed: bool, json: bool, limit: usize) -> anyhow::Result<()> {
    let rows = if db.exists() {
        store::deliveries(db, failed, limit)?
    } else {
        Vec::new()
    };
    if json {
        for row in &rows {
            out!("{}", serde_json::to_string(row)?);
        }
        return Ok(());
    }
    out!(
        "{:>5}  {:<9}  {:<7}  {:<28}  {:<16}  {:>3}  {:<19}  {:<19}  LAST ERROR",
        "ID",
        "STATUS",
        "CHANNEL",
        "TO",
        "FOR",
        "TRY",
        "QUEUED (UTC)",
        "NEXT/SENT (UTC)"
    );
    let time = |t: &str| t.get(..19).unwrap_or(t).replace('T', " ");
    for row in &rows {
        let when = match row.status.as_str() {
            "sent" => row.sent_at.as_deref().map(time).unwrap_or_default(),
            "pending" | "held" => time(&row.next_attempt),
            "digested" => row
                .digest_id
                .map(|d| format!("in summary {d}"))
                .unwrap_or_default(),
            _ => "-".into(),
        };
        let who = format!(
            "{}/{}",
            row.company,
            row.executive.as_deref().unwrap_or("-")
        );
        let target: String = safe(&row.target).chars().take(28).collect();
        out!(
            "{:>5}  {:<9}  {:<7}  {:<28}  {:<16}  {:>3}  {:<19}  {:<19}  {}",
            row.id,
            row.status,
            row.channel,
            target,
            safe(&who),
            row.attempts,
            time(&row.created_at),
            when,
            safe(row.last_error.as_deref().unwrap_or(""))
        );
    }
    Ok(())
}
