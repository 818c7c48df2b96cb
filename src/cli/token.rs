//! `permanence token`: API tokens with which a script acts as a secretary.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use permanence::config::Config;
use permanence::session;
use permanence::store;
use permanence::terminal::safe;

/// `token`'s flags.
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
    /// Make a token for a secretary and print it (once: only its hash is kept).
    Create {
        /// The secretary it acts as.
        #[arg(long)]
        username: String,
        /// What it is for (shown by `list`).
        #[arg(long)]
        label: String,
        /// Days until it expires.
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u16).range(1..=366))]
        days: u16,
    },
    /// Every token: number, secretary, label, and whether it is live.
    List,
    /// Revoke a token at once (its number from `list`).
    Revoke {
        /// The token's number.
        id: i64,
    },
}

/// Creates, lists or revokes tokens.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let db = config.database_path();
    match args.action {
        Action::Create {
            username,
            label,
            days,
        } => {
            if !config.secretaries.iter().any(|s| s.username == username) {
                bail!(
                    "{username:?} is not a secretary in {}",
                    args.config.display()
                );
            }
            let label = label.trim();
            if label.is_empty() || label.chars().count() > 80 || label.chars().any(char::is_control)
            {
                bail!("--label: 1 to 80 characters, on one line");
            }
            let token = session::new_token().context("no randomness for a token")?;
            let expires_at = jiff::Timestamp::now().as_second() + i64::from(days) * 86_400;
            let id =
                store::create_token(&db, &session::hash_id(&token), &username, label, expires_at)?;
            eprintln!("token {id} for {username}, valid {days} days; shown only now:");
            out!("{token}");
        }
        Action::List => {
            let now = jiff::Timestamp::now().as_second();
            out!(
                "{:>4}  {:<12}  {:<10}  {:<19}  LABEL",
                "ID",
                "USERNAME",
                "STATE",
                "EXPIRES (UTC)"
            );
            for t in store::tokens(&db)? {
                let state = match (&t.revoked_at, t.expires_at > now) {
                    (Some(_), _) => "revoked",
                    (None, true) => "live",
                    (None, false) => "expired",
                };
                let expires = jiff::Timestamp::from_second(t.expires_at)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                out!(
                    "{:>4}  {:<12}  {state:<10}  {expires:<19}  {}",
                    t.id,
                    safe(&t.username),
                    safe(&t.label)
                );
            }
        }
        Action::Revoke { id } => {
            if !store::revoke_token(&db, id)? {
                bail!("no live token {id}");
            }
            out!("token {id} revoked");
        }
    }
    Ok(())
}
