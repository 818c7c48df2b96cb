//! `permanence agenda`: one day of the executives' agendas (appointments, then the free
//! slots), read from the records and the plans; `--feed` prints an executive's calendar
//! feed address instead.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use permanence::agenda::{self, Span, Status, stamp};
use permanence::config::Config;
use permanence::executive_link::LinkKey;
use permanence::store::agenda::{AppointmentRow, appointments};
use permanence::terminal::safe;

/// `agenda`'s flags.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = "config/permanence.toml")]
    config: PathBuf,
    /// Only this executive (their id in the plans: `[executives.ID]`).
    #[arg(long)]
    executive: Option<String>,
    /// The day (YYYY-MM-DD, in each company's time zone); today by default.
    #[arg(long)]
    day: Option<jiff::civil::Date>,
    /// Print the executive's calendar feed address (needs --executive).
    #[arg(long, requires = "executive")]
    feed: bool,
}

/// Prints the day, or the feed's address.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let plans = super::plans::load(&config)?;
    let wanted = args.executive.as_deref().map(str::trim);
    let mut found = false;
    let now = jiff::Timestamp::now();
    if args.feed {
        let executive = wanted.unwrap_or_default();
        let known = plans.companies().iter().any(|c| {
            c.executives
                .contains_key(&permanence::dialplan::ExecutiveId(executive.to_string()))
        });
        if !known {
            bail!("no executive `{}` in the plans", safe(executive));
        }
        let Some(base) = config.web.public_base() else {
            bail!("no address to link to: set [web] public_url (or [web] listen)");
        };
        let key = LinkKey::load_or_create(&config.paths.data)?;
        let token = agenda::link::sign_feed(&key, executive, now);
        out!("{}/ics/{token}", base.trim_end_matches('/'));
        return Ok(());
    }
    let db = config.database_path();
    for company in plans.companies() {
        for (id, executive) in &company.executives {
            if wanted.is_some_and(|w| w != id.0) {
                continue;
            }
            let Some(a) = &executive.agenda else { continue };
            found = true;
            let tz = &company.timezone;
            let day = args.day.unwrap_or_else(|| tz.to_datetime(now).date());
            let start = |d: jiff::civil::Date| {
                tz.to_ambiguous_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
                    .compatible()
                    .context("a day outside the time zone's range")
            };
            let from = start(day)?;
            let to = start(day.tomorrow().context("a day out of range")?)?;
            let rows: Vec<AppointmentRow> = if db.exists() {
                let wide = jiff::SignedDuration::from_hours(24);
                appointments(
                    &db,
                    Some(&company.id.0),
                    Some(&id.0),
                    &stamp(from - wide),
                    &stamp(to + wide),
                )?
            } else {
                Vec::new()
            };
            out!(
                "{} ({}) · {} · {day} ({})",
                safe(&executive.name),
                safe(&id.0),
                safe(&company.name),
                safe(&company.timezone_name)
            );
            let (from_s, to_s) = (stamp(from), stamp(to));
            let mut any = false;
            for r in rows
                .iter()
                .filter(|r| r.starts_at >= from_s && r.starts_at < to_s)
            {
                any = true;
                let when = r.span().map_or_else(
                    || safe(&r.starts_at).into_owned(),
                    |s| {
                        format!(
                            "{}-{}",
                            tz.to_datetime(s.starts).strftime("%H:%M"),
                            tz.to_datetime(s.ends).strftime("%H:%M")
                        )
                    },
                );
                out!(
                    "  {when}  {:<9}  {}  {}  {}  (booked by {})",
                    safe(&r.status),
                    safe(&r.client.name),
                    safe(&r.client.phone),
                    safe(&r.client.reason),
                    safe(&r.booked_by)
                );
            }
            if !any {
                out!("  no appointments");
            }
            let busy: Vec<Span> = rows
                .iter()
                .filter(|r| r.status().is_some_and(Status::holds_time))
                .filter_map(AppointmentRow::span)
                .collect();
            let free = agenda::free_slots(a, &company.hours, tz, day, &busy, now);
            let free: Vec<String> = free
                .iter()
                .map(|s| tz.to_datetime(s.starts).strftime("%H:%M").to_string())
                .collect();
            if free.is_empty() {
                out!("  free: none");
            } else {
                out!("  free: {}", free.join(" "));
            }
        }
    }
    if !found {
        match wanted {
            Some(w) => bail!("no executive `{}` with an agenda in the plans", safe(w)),
            None => bail!("no executive has an agenda in the plans"),
        }
    }
    Ok(())
}
