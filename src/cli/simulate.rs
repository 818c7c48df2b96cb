//! `permanence simulate`: which route a call would take and what would happen, from the
//! plans alone (no network, a pretend clock).

use std::path::PathBuf;

use anyhow::Context;

use permanence::call::simulate;
use permanence::config::Config;
use permanence::dialplan::{Caller, Company};
use permanence::dnd::Dnd;
use permanence::line::{LineOverride, LineState, parse_until};
use permanence::terminal::safe;

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
    /// Whether an executive answers a transfer: "answers", "no-answer", or "dnd" (every
    /// executive asked not to be disturbed). Without "dnd", the do-not-disturb in force in
    /// the records applies.
    #[arg(long, default_value = "answers")]
    executive: String,
    /// The company's line closed by hand from the call's time until this one (local time
    /// "YYYY-MM-DD HH:MM", or with an offset), whatever the hours say.
    #[arg(long, value_name = "TIME", conflicts_with_all = ["open_until", "hours_only"])]
    closed_until: Option<String>,
    /// The company's line open by hand from the call's time until this one.
    #[arg(long, value_name = "TIME", conflicts_with = "hours_only")]
    open_until: Option<String>,
    /// The reason given with --closed-until or --open-until.
    #[arg(long, default_value = "simulated")]
    line_reason: String,
    /// Let the hours decide alone, leaving out a line switched by hand in the records.
    #[arg(long)]
    hours_only: bool,
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
    let at = match &args.at {
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
    let line = line(&args, &config, company, at)?;
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
        ["answers", "no-answer", "dnd"].contains(&executive.as_str()),
        "--executive: expected answers, no-answer or dnd"
    );
    let dnd = dnd(&config, company, at, executive == "dnd");
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
        line,
        dnd,
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

/// The company's line as the simulated call finds it: imagined (`--closed-until`,
/// `--open-until`, from the call's time on), none (`--hours-only`), or else the override in
/// force now in the records, if any.
fn line(
    args: &Args,
    config: &Config,
    company: &Company,
    at: jiff::Timestamp,
) -> anyhow::Result<Option<LineOverride>> {
    let imagined = match (&args.closed_until, &args.open_until) {
        (Some(text), _) => Some(("--closed-until", text, LineState::Closed)),
        (None, Some(text)) => Some(("--open-until", text, LineState::Open)),
        (None, None) => None,
    };
    if let Some((flag, text, state)) = imagined {
        let until =
            parse_until(text, &company.timezone).with_context(|| format!("{flag} `{text}`"))?;
        return Ok(Some(LineOverride {
            state,
            since: at,
            until,
            reason: args.line_reason.clone(),
            set_by: "simulate".to_string(),
        }));
    }
    if args.hours_only {
        return Ok(None);
    }
    let recorded = match permanence::store::current_lines(
        &config.database_path(),
        jiff::Timestamp::now(),
    ) {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!(
                "warning: the records' lines switched by hand cannot be read ({e}): the hours decide"
            );
            Vec::new()
        }
    };
    // Text from the records is shown on a terminal: made safe to print.
    Ok(recorded
        .into_iter()
        .find(|(id, _)| *id == company.id)
        .map(|(_, mut line)| {
            line.reason = safe(&line.reason).into_owned();
            line.set_by = safe(&line.set_by).into_owned();
            line
        }))
}

/// The executives' do-not-disturb as the simulated call finds it: imagined for each of the
/// company's executives (`--executive dnd`, a day from the call's time), else what the
/// records hold in force now (none, with a warning, if they cannot be read).
fn dnd(
    config: &Config,
    company: &Company,
    at: jiff::Timestamp,
    imagined: bool,
) -> Vec<(String, Dnd)> {
    if imagined {
        let until = at + jiff::SignedDuration::from_hours(24);
        return company
            .executives
            .keys()
            .map(|id| {
                let dnd = Dnd {
                    since: at,
                    until,
                    set_by: "simulate".to_string(),
                };
                (id.0.clone(), dnd)
            })
            .collect();
    }
    permanence::store::current_dnd(&config.database_path(), jiff::Timestamp::now())
        .unwrap_or_else(|e| {
            eprintln!(
                "warning: the records' do-not-disturb cannot be read ({e}): every executive is called"
            );
            Vec::new()
        })
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
