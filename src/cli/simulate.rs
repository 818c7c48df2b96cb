//! `permanence simulate`: which route a call would take and what would happen, from the
//! plans alone (no network, a pretend clock).

use std::path::PathBuf;

use anyhow::Context;

use permanence::call::simulate;
use permanence::config::Config;
use permanence::dialplan::Caller;

/// `simulate`'s flags: the call to imagine.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = "config/permanence.toml")]
    config: PathBuf,
    /// Company id.
    #[arg(long)]
    company: String,
    /// Caller's number (or "anonymous").
    #[arg(long, default_value = "anonymous")]
    from: String,
    /// Dialled number (default: the company's first).
    #[arg(long)]
    dialled: Option<String>,
    /// Local time at the company, "YYYY-MM-DD HH:MM" (default: now).
    #[arg(long)]
    at: Option<String>,
    /// Keys pressed at menus, in order (e.g. "2" or "19"): 0-9, *, # and A-D.
    #[arg(long, default_value = "")]
    digits: String,
    /// The secretaries: "available" (one answers), "none" (nobody registered) or "busy"
    /// (everyone on a call: the caller queues).
    #[arg(long, default_value = "available")]
    secretaries: String,
    /// With --secretaries busy: seconds until a secretary frees up (default: not within
    /// the step's time, so the wait runs out).
    #[arg(long)]
    free_after: Option<u64>,
    /// Whether an executive answers a transfer: "answers" or "no-answer".
    #[arg(long, default_value = "answers")]
    executive: String,
}

/// Prints the simulated call, one line per decision.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let snapshot = permanence::snapshot::load(&config)?;
    let company = snapshot.plans.company(&args.company).with_context(|| {
        format!(
            "no company `{}` in {}",
            args.company,
            config.paths.dialplans.display()
        )
    })?;
    let at = match args.at {
        Some(text) => {
            let civil: jiff::civil::DateTime = text
                .trim()
                .replace(' ', "T")
                .parse()
                .with_context(|| format!("--at `{text}`: expected \"YYYY-MM-DD HH:MM\""))?;
            company.timezone.to_timestamp(civil).context("--at")?
        }
        None => jiff::Timestamp::now(),
    };
    let dialled = match args.dialled {
        Some(d) => Some(
            permanence::number::E164::parse(&d)
                .with_context(|| format!("--dialled `{d}`: expected E.164"))?,
        ),
        None => None,
    };
    let secretaries = args.secretaries;
    let executive = args.executive;
    let secretaries = match (secretaries.as_str(), args.free_after) {
        ("available", None) => simulate::Secretaries::Available,
        ("none", None) => simulate::Secretaries::None,
        ("busy", free_after) => {
            simulate::Secretaries::Busy(free_after.map(std::time::Duration::from_secs))
        }
        ("available" | "none", Some(_)) => {
            anyhow::bail!("--free-after: only with --secretaries busy")
        }
        (other, _) => anyhow::bail!("--secretaries `{other}`: expected available, none or busy"),
    };
    anyhow::ensure!(
        executive == "answers" || executive == "no-answer",
        "--executive: expected answers or no-answer"
    );
    let caller = Caller::from_user(Some(&args.from), None, company.country);
    let block = block_of(&config, &company.id.0, &caller)?;
    let scenario = simulate::Scenario {
        block,
        caller,
        dialled,
        at,
        digits: keys(&args.digits)?,
        secretaries,
        executive_answers: executive == "answers",
        sound_lengths: snapshot.sounds.lengths(),
        no_speech: config.media.no_speech(),
    };
    for line in simulate::simulate(company, &scenario) {
        out!("{line}");
    }
    Ok(())
}

/// The company's block of the caller's number, as the records hold it now (none when the
/// server never ran here: no records, nothing blocked).
fn block_of(
    config: &Config,
    company: &str,
    caller: &Caller,
) -> anyhow::Result<Option<permanence::blocklist::BlockEntry>> {
    let db = config.database_path();
    let Caller::Number(number) = caller else {
        return Ok(None);
    };
    if !db.exists() {
        return Ok(None);
    }
    let row = permanence::store::blocked_numbers(&db, Some(company), false)?
        .into_iter()
        .find(|row| row.number == number.as_str());
    Ok(row.map(|row| permanence::blocklist::BlockEntry {
        id: row.id,
        company: row.company,
        number: number.clone(),
        reason: row.reason,
        added_by: row.added_by,
        added_at: row.added_at,
    }))
}

/// `--digits`: the keys of a telephone keypad (RFC 4733 events 0–15); spaces are ignored,
/// `a`–`d` stand for `A`–`D`.
fn keys(digits: &str) -> anyhow::Result<Vec<char>> {
    digits
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c.to_ascii_uppercase() {
            k @ ('0'..='9' | '*' | '#' | 'A'..='D') => Ok(k),
            _ => anyhow::bail!(
                "--digits `{digits}`: `{c}` is not a key; expected keys 0-9, *, # or A-D"
            ),
        })
        .collect()
}
