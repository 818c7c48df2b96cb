//! `permanence executive-links`: a link to an executive's page (what their e-mails carry),
//! and revoking every link of theirs made so far.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use permanence::config::Config;
use permanence::executive_link::{self, LinkKey};
use permanence::store;
use permanence::terminal::safe;

/// `executive-links`' flags.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = "config/permanence.toml", global = true)]
    config: PathBuf,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Print a link to the executive's page, starting with `[web] public_url`.
    Create {
        /// The executive (their id in the plans: `[executives.ID]`).
        #[arg(long)]
        executive: String,
        /// Days until it expires.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..=366))]
        days: u16,
        /// Seconds until it expires, instead of days (for tests of expiry).
        #[arg(long, hide = true, conflicts_with = "days", value_parser = clap::value_parser!(u32).range(1..))]
        seconds: Option<u32>,
    },
    /// Stop every link to the executive's page made until now (new ones work).
    Revoke {
        /// The executive (their id in the plans).
        #[arg(long)]
        executive: String,
    },
}

/// Creates a link or revokes them.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    match args.action {
        Action::Create {
            executive,
            days,
            seconds,
        } => create(&config, &executive, days, seconds),
        Action::Revoke { executive } => {
            let executive = checked_id(&executive)?;
            let db = config.database_path();
            store::revoke_links(&db, executive, jiff::Timestamp::now())?;
            if !names(&config)?.iter().any(|e| e == executive) {
                eprintln!(
                    "note: `{}` is not an executive in the plans now",
                    safe(executive)
                );
            }
            out!(
                "links to {}'s page made until now no longer open it",
                safe(executive)
            );
            Ok(())
        }
    }
}

fn create(config: &Config, executive: &str, days: u16, seconds: Option<u32>) -> anyhow::Result<()> {
    let executive = checked_id(executive)?;
    let known = names(config)?;
    if !known.iter().any(|e| e == executive) {
        bail!(
            "no executive `{}` in the plans; expected one of {}",
            safe(executive),
            known.join(", ")
        );
    }
    let Some(base) = config.web.public_base() else {
        bail!("no address to link to: set [web] public_url (or [web] listen)");
    };
    if config.web.public_url.is_none() {
        eprintln!(
            "note: [web] public_url is not set; the link uses the console's own address ({base})"
        );
    }
    let key = LinkKey::load_or_create(&config.paths.data)?;
    let now = jiff::Timestamp::now();
    let valid = match seconds {
        Some(s) => jiff::SignedDuration::from_secs(i64::from(s)),
        None => jiff::SignedDuration::from_hours(i64::from(days) * 24),
    };
    let expires = now.checked_add(valid).context("expiry out of range")?;
    eprintln!(
        "link to {}'s page, valid until {} UTC:",
        safe(executive),
        expires.strftime("%Y-%m-%d %H:%M:%S")
    );
    out!(
        "{}",
        executive_link::link_until(&base, &key, executive, now, expires)
    );
    Ok(())
}

/// An executive id as typed: one line, 1 to 64 characters.
fn checked_id(id: &str) -> anyhow::Result<&str> {
    let id = id.trim();
    if id.is_empty() || id.chars().count() > 64 || id.chars().any(char::is_control) {
        bail!("--executive: an id of 1 to 64 characters, on one line");
    }
    Ok(id)
}

/// Every executive id in the plans, each once, sorted.
fn names(config: &Config) -> anyhow::Result<Vec<String>> {
    let plans = super::plans::load(config)?;
    let mut ids: Vec<String> = plans
        .companies()
        .iter()
        .flat_map(|c| c.executives.keys().map(|id| id.0.clone()))
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}
