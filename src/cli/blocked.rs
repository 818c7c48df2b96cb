//! `permanence blocked`: the numbers each company blocked (spam), listed, added or
//! removed. The running server notices within a couple of seconds.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use permanence::blocklist;
use permanence::config::Config;
use permanence::dialplan::Company;
use permanence::store;
use permanence::terminal::safe;

/// `blocked`'s flags.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = "config/permanence.toml", global = true)]
    config: PathBuf,
    #[command(subcommand)]
    action: Action,
}

/// What to do with the block lists.
#[derive(Subcommand)]
enum Action {
    /// The blocked numbers, newest first.
    List {
        /// Only this company.
        #[arg(long)]
        company: Option<String>,
        /// Lifted blocks too (who lifted them, when).
        #[arg(long)]
        all: bool,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Block a number for a company: its calls take the plan's route for blocked
    /// callers, or are refused (603).
    Add {
        /// Company id.
        company: String,
        /// The number (+33612345678, or 0612345678 in the company's country).
        number: String,
        /// Why (kept with the block).
        #[arg(long)]
        reason: String,
    },
    /// Lift a company's block of a number (the block stays in the records, marked lifted).
    Remove {
        /// Company id.
        company: String,
        /// The number.
        number: String,
    },
}

/// Who the records say made a change from here.
const BY: &str = "cli";

/// Lists, adds or removes, as the action says.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    match args.action {
        Action::List { company, all, json } => {
            list(&config.database_path(), company.as_deref(), all, json)
        }
        Action::Add {
            company,
            number,
            reason,
        } => add(&config, &company, &number, &reason),
        Action::Remove { company, number } => remove(&config, &company, &number),
    }
}

/// Blocks a number, checked like the console's (a whole number read in the company's
/// country, a one-line reason); a number blocked already stays as it was.
fn add(config: &Config, company: &str, number: &str, reason: &str) -> anyhow::Result<()> {
    let company = company_of(config, company)?;
    let number = number_of(&company, number)?;
    let reason =
        blocklist::reason(reason).map_err(|e| anyhow::anyhow!("--reason: expected {e}"))?;
    let (row, added) = store::block_number(
        &config.database_path(),
        &company.id.0,
        number.as_str(),
        &reason,
        BY,
    )?;
    if added {
        out!("{}: {} blocked (id {})", row.company, row.number, row.id);
    } else {
        out!(
            "{}: {} was already blocked since {} by {} ({})",
            row.company,
            row.number,
            row.added_at,
            safe(&row.added_by),
            safe(&row.reason)
        );
    }
    Ok(())
}

/// Lifts a block; an error when the number is not blocked.
fn remove(config: &Config, company: &str, number: &str) -> anyhow::Result<()> {
    let company = company_of(config, company)?;
    let number = number_of(&company, number)?;
    let row = store::unblock_number(&config.database_path(), &company.id.0, number.as_str(), BY)?
        .with_context(|| format!("{}: {number} is not blocked", company.id))?;
    out!(
        "{}: {} no longer blocked (id {})",
        row.company,
        row.number,
        row.id
    );
    Ok(())
}

/// A number as the company reads it.
fn number_of(company: &Company, text: &str) -> anyhow::Result<permanence::number::E164> {
    blocklist::number(text, company.country)
        .map_err(|e| anyhow::anyhow!("NUMBER `{}`: expected {e}", safe(text)))
}

/// The company, from the dial plans (its country reads national numbers).
fn company_of(config: &Config, id: &str) -> anyhow::Result<std::sync::Arc<Company>> {
    let plans = super::plans::load(config)?;
    plans.company(id).cloned().with_context(|| {
        let known: Vec<&str> = plans.companies().iter().map(|c| c.id.0.as_str()).collect();
        format!(
            "no company `{}`; expected one of {}",
            safe(id),
            known.join(", ")
        )
    })
}

/// The blocks as a table (or JSON lines), newest first.
fn list(db: &Path, company: Option<&str>, all: bool, json: bool) -> anyhow::Result<()> {
    let rows = if db.exists() {
        store::blocked_numbers(db, company, all)?
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
        "{:>4}  {:<10}  {:<16}  {:<19}  {:<10}  {}REASON",
        "ID",
        "COMPANY",
        "NUMBER",
        "ADDED (UTC)",
        "BY",
        if all {
            "LIFTED (UTC)         BY          "
        } else {
            ""
        }
    );
    let time = |t: &str| t.get(..19).unwrap_or(t).replace('T', " ");
    for row in &rows {
        let lifted = if all {
            format!(
                "{:<19}  {:<10}  ",
                row.removed_at
                    .as_deref()
                    .map(time)
                    .unwrap_or_else(|| "-".into()),
                safe(row.removed_by.as_deref().unwrap_or("-"))
            )
        } else {
            String::new()
        };
        out!(
            "{:>4}  {:<10}  {:<16}  {:<19}  {:<10}  {lifted}{}",
            row.id,
            safe(&row.company),
            safe(&row.number),
            time(&row.added_at),
            safe(&row.added_by),
            safe(&row.reason)
        );
    }
    Ok(())
}
