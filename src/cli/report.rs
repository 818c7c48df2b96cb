//! `permanence report`: a company's month as the secretariat invoices it (calls answered
//! by outcome and category, minutes handled, messages, appointments, tasks done), as text
//! or CSV.

use std::path::PathBuf;

use anyhow::Context;

use permanence::config::Config;
use permanence::report::Month;
use permanence::store;
use permanence::terminal::safe;

/// `report`'s flags.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = "config/permanence.toml")]
    config: PathBuf,
    /// Company id.
    #[arg(long)]
    company: String,
    /// The month, YYYY-MM (in the company's time zone).
    #[arg(long)]
    month: String,
    /// CSV (company,month,item,value) instead of a table.
    #[arg(long)]
    csv: bool,
}

/// Counts the month from the records and prints it.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let month = Month::parse(&args.month).map_err(|e| anyhow::anyhow!("--month: {e}"))?;
    let plans = super::plans::load(&config)?;
    let company = plans.company(&args.company).cloned().with_context(|| {
        format!(
            "--company: no dial plan has the company `{}`",
            safe(&args.company)
        )
    })?;
    let (from, to) = month
        .bounds(&company.timezone)
        .context("--month: out of the calendar's range")?;
    let report = store::report(
        &config.database_path(),
        &company.id.0,
        &company.name,
        &month.to_string(),
        (&from, &to),
    )?;
    if args.csv {
        out!("{}", report.csv().trim_end());
    } else {
        out!("{}", report.text(|s| safe(s).into_owned()).trim_end());
    }
    Ok(())
}
