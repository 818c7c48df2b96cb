//! `permanence messages`: the messages that need attention, one with its call's timeline,
//! or a change of status.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use permanence::config::Config;
use permanence::store;
use permanence::terminal::safe;

/// `messages`' flags: the list's filters, or an action on one message.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = "config/permanence.toml", global = true)]
    config: PathBuf,
    /// Only this company.
    #[arg(long)]
    company: Option<String>,
    /// Only this category: urgent, normal, low or spam.
    #[arg(long)]
    category: Option<String>,
    /// Only this status: new, read, done or filed (default: all but filed).
    #[arg(long)]
    status: Option<String>,
    /// Filed messages too (spam, greetings heard to the end, calls dropped within
    /// seconds), which the list leaves out by default.
    #[arg(long)]
    all: bool,
    /// Only messages since this date ("2026-11-27") or time (RFC 3339, UTC).
    #[arg(long)]
    since: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// JSON lines instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: Option<Action>,
}

/// What to do with one message (without an action, the list).
#[derive(Subcommand)]
enum Action {
    /// One message with its call's timeline.
    Show {
        /// Message id.
        id: i64,
    },
    /// Change a message's status.
    Mark {
        /// Message id.
        id: i64,
        /// read, done, new or filed.
        status: String,
    },
}

/// Lists the messages, shows one, or marks one, as the action says.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let db = config.database_path();
    match args.action {
        None => list(&db, args),
        Some(Action::Show { id }) => show(&db, id, args.json),
        Some(Action::Mark { id, status }) => mark(&db, id, &status),
    }
}

/// The list, newest first, filtered by the flags (checked before the database is read).
fn list(db: &Path, args: Args) -> anyhow::Result<()> {
    if let Some(c) = &args.category {
        anyhow::ensure!(
            ["urgent", "normal", "low", "spam"].contains(&c.as_str()),
            "--category: expected urgent, normal, low or spam"
        );
    }
    if let Some(s) = &args.status {
        anyhow::ensure!(
            permanence::inbox::Status::parse(s).is_some(),
            "--status: expected new, read, done or filed"
        );
    }
    if let Some(s) = &args.since {
        let valid = s.parse::<jiff::civil::Date>().is_ok() || s.parse::<jiff::Timestamp>().is_ok();
        anyhow::ensure!(
            valid,
            "--since `{s}`: expected a date (2026-11-27) or an RFC 3339 time"
        );
    }
    let filter = store::MessageFilter {
        company: args.company,
        category: args.category,
        status: args.status,
        include_filed: args.all,
        // Stored times are RFC 3339 UTC with milliseconds: an exact time is
        // compared in that form (a date compares as its midnight already).
        since: args.since.map(|s| {
            s.parse::<jiff::Timestamp>()
                .map_or(s, |t| format!("{t:.3}"))
        }),
        limit: args.limit,
    };
    let rows = store::list_messages(db, &filter)?;
    if args.json {
        for m in &rows {
            out!("{}", serde_json::to_string(m)?);
        }
    } else {
        print_messages(&rows);
    }
    Ok(())
}

/// One message, then its call's events (time of day to the millisecond, kind, data).
fn show(db: &Path, id: i64, json: bool) -> anyhow::Result<()> {
    let (m, events) =
        store::message_with_timeline(db, id)?.with_context(|| format!("no message {id}"))?;
    if json {
        out!(
            "{}",
            serde_json::json!({ "message": m, "timeline": events })
        );
    } else {
        print_messages(std::slice::from_ref(&m));
        out!();
        for e in events {
            out!(
                "  {}  {:<18} {}",
                e.at.get(11..23).unwrap_or(&e.at),
                e.kind,
                e.data
            );
        }
    }
    Ok(())
}

/// Sets one message's status, once it is known to be one of the four.
fn mark(db: &Path, id: i64, status: &str) -> anyhow::Result<()> {
    let Some(parsed) = permanence::inbox::Status::parse(status) else {
        anyhow::bail!("status: expected read, done, new or filed");
    };
    anyhow::ensure!(store::mark_message(db, id, parsed)?, "no message {id}");
    out!("message {id}: {status}");
    Ok(())
}

/// The messages as a table with a header line.
fn print_messages(rows: &[store::MessageRow]) {
    out!(
        "{:>5}  {:<19}  {:<10}  {:<22}  {:<8}  {:<6}  {:<11}  {:>7}  RECORDING",
        "ID",
        "TIME (UTC)",
        "COMPANY",
        "CALLER",
        "CATEGORY",
        "STATUS",
        "OUTCOME",
        "SECONDS"
    );
    for m in rows {
        // The caller's number and name are theirs to choose: shown, never obeyed.
        let caller = match &m.caller_name {
            Some(name) => format!("{} ({})", safe(&m.caller), safe(name)),
            None => safe(&m.caller).into_owned(),
        };
        let seconds = m
            .recording_ms
            .map_or("-".to_string(), |ms| format!("{:.1}", ms as f64 / 1000.0));
        let recording = match (&m.recording, m.recording_empty) {
            (Some(path), _) => safe(path).into_owned(),
            (None, true) => "(empty: no audio)".to_string(),
            (None, false) => "-".to_string(),
        };
        out!(
            "{:>5}  {:<19}  {:<10}  {:<22}  {:<8}  {:<6}  {:<11}  {:>7}  {}",
            m.id,
            m.created_at
                .get(..19)
                .unwrap_or(&m.created_at)
                .replace('T', " "),
            m.company,
            caller,
            m.category,
            m.status,
            m.outcome.as_deref().unwrap_or("(live)"),
            seconds,
            recording
        );
    }
}
