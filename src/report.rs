//! The billing report: what the secretariat did for a company in a month, the figures it
//! invoices on (calls answered by outcome and category, minutes its secretaries spent on
//! them, messages taken, appointments booked, tasks done), as text or CSV.
//!
//! Pure: the month and its bounds in the company's time zone, and the rendering. The
//! counting is SQL, in `store::report`.

use std::collections::BTreeMap;

use jiff::civil::Date;

/// A calendar month (`2026-11`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    /// Its first day.
    pub first: Date,
}

/// Why a month was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a month as YYYY-MM (2026-11), got {0:?}")]
pub struct BadMonth(pub String);

impl Month {
    /// Reads `YYYY-MM`.
    pub fn parse(text: &str) -> Result<Month, BadMonth> {
        let bad = || BadMonth(text.chars().take(20).collect());
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !(y.chars().chain(m.chars())).all(|c| c.is_ascii_digit())
        {
            return Err(bad());
        }
        let y: i16 = y.parse().map_err(|_| bad())?;
        let m: i8 = m.parse().map_err(|_| bad())?;
        let first = Date::new(y, m, 1).map_err(|_| bad())?;
        Ok(Month { first })
    }

    /// The first day of the next month.
    pub fn next(self) -> Date {
        self.first.last_of_month().tomorrow().unwrap_or(self.first)
    }

    /// The month's bounds as stored times (UTC, milliseconds, like `store::now_text`):
    /// midnight of its first day and of the next month's, in the company's time zone.
    pub fn bounds(self, tz: &jiff::tz::TimeZone) -> Option<(String, String)> {
        let at = |d: Date| {
            tz.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
                .ok()
                .map(|t| format!("{t:.3}"))
        };
        Some((at(self.first)?, at(self.next())?))
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.first.year(), self.first.month())
    }
}

/// One company's month, as counted from the records.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// The company's id.
    pub company: String,
    /// The company's name.
    pub name: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Calls received (every call to its numbers that started in the month).
    pub calls: u64,
    /// Calls a person took: a secretary, or an executive they were put through to.
    pub answered: u64,
    /// Calls by outcome (`secretary`, `transferred`, `voicemail`…).
    pub by_outcome: BTreeMap<String, u64>,
    /// Calls by their message's category (`urgent`, `normal`, `low`, `spam`).
    pub by_category: BTreeMap<String, u64>,
    /// Seconds the secretaries spent on calls (from their answer to the call's end).
    pub secretary_seconds: u64,
    /// Messages written by a secretary or left as voicemail.
    pub messages: u64,
    /// Appointments booked in the month (None: the agenda is not in this database).
    pub appointments: Option<u64>,
    /// Tasks finished in the month.
    pub tasks_done: u64,
    /// Calls placed for the company (outbound, from its tasks).
    pub outbound_calls: u64,
}

impl Report {
    /// Minutes handled by secretaries, rounded up to the next whole minute for the month.
    pub fn secretary_minutes(&self) -> u64 {
        self.secretary_seconds.div_ceil(60)
    }

    /// The lines of the report: (label, value), in the order shown and exported.
    pub fn lines(&self) -> Vec<(String, String)> {
        let mut lines = vec![
            ("calls".to_string(), self.calls.to_string()),
            ("answered".to_string(), self.answered.to_string()),
        ];
        for (outcome, n) in &self.by_outcome {
            lines.push((format!("outcome:{outcome}"), n.to_string()));
        }
        for (category, n) in &self.by_category {
            lines.push((format!("category:{category}"), n.to_string()));
        }
        lines.push((
            "secretary_minutes".to_string(),
            self.secretary_minutes().to_string(),
        ));
        lines.push(("messages".to_string(), self.messages.to_string()));
        lines.push((
            "appointments".to_string(),
            self.appointments
                .map_or_else(|| "-".to_string(), |n| n.to_string()),
        ));
        lines.push(("tasks_done".to_string(), self.tasks_done.to_string()));
        lines.push((
            "outbound_calls".to_string(),
            self.outbound_calls.to_string(),
        ));
        lines
    }

    /// For a terminal: a title, then one aligned line per figure. The company's name comes
    /// from a plan; `safe` makes it printable (the caller passes `terminal::safe`).
    pub fn text(&self, safe: impl Fn(&str) -> String) -> String {
        let mut out = format!(
            "{} ({}) — {}\n",
            safe(&self.name),
            safe(&self.company),
            self.month
        );
        for (label, value) in self.lines() {
            out.push_str(&format!("{label:<24}{value:>8}\n"));
        }
        out
    }

    /// As CSV: `company,month,item,value`, one figure a row (a spreadsheet sums them).
    pub fn csv(&self) -> String {
        let mut out = String::from("company,month,item,value\n");
        for (label, value) in self.lines() {
            out.push_str(&format!(
                "{},{},{},{}\n",
                csv_field(&self.company),
                self.month,
                csv_field(&label),
                value
            ));
        }
        out
    }
}

/// A CSV field quoted when it needs to be, and defused when a spreadsheet would read it as
/// a formula (`=`, `+`, `-`, `@` first: OWASP's CSV injection advice).
pub fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_their_bounds_in_paris() {
        let m = Month::parse("2026-11").unwrap();
        assert_eq!(m.to_string(), "2026-11");
        let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let (from, to) = m.bounds(&tz).unwrap();
        // Paris is UTC+1 in November and December.
        assert_eq!(from, "2026-10-31T23:00:00.000Z");
        assert_eq!(to, "2026-11-30T23:00:00.000Z");
        let (from, _) = Month::parse("2026-04").unwrap().bounds(&tz).unwrap();
        assert_eq!(from, "2026-03-31T22:00:00.000Z");
        assert_eq!(
            Month::parse("2026-12").unwrap().next(),
            jiff::civil::date(2027, 1, 1)
        );
        for bad in [
            "2026-13",
            "2026-1",
            "26-11",
            "2026/11",
            "",
            "2026-11-01",
            "２０２６-11",
        ] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_and_csv() {
        let mut r = Report {
            company: "acme".into(),
            name: "ACME, \"Plomberie\"".into(),
            month: "2026-11".into(),
            calls: 3,
            answered: 2,
            secretary_seconds: 61,
            messages: 2,
            tasks_done: 1,
            ..Report::default()
        };
        r.by_outcome.insert("secretary".into(), 2);
        r.by_category.insert("normal".into(), 3);
        assert_eq!(r.secretary_minutes(), 2);
        let csv = r.csv();
        assert!(
            csv.starts_with("company,month,item,value\nacme,2026-11,calls,3\n"),
            "{csv}"
        );
        assert!(csv.contains("acme,2026-11,outcome:secretary,2\n"));
        assert!(csv.contains("acme,2026-11,appointments,-\n"));
        let text = r.text(|s| s.to_string());
        assert!(text.contains("secretary_minutes              2"), "{text}");
    }

    #[test]
    fn csv_fields_cannot_be_formulas() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
