//! A company's line switched by hand: **closed until** a time (the office closed
//! unexpectedly) or **open until** a time (the team stays late), with the reason. While it
//! is in force, routing treats the company as closed or open whatever its hours say (the
//! `open = true/false` conditions); at its `until` it ends by itself.
//!
//! Pure: no clock is read, the shell passes the instant. [`LineOverride::new`] checks a
//! request (the time in the future and within [`MAX_AHEAD`], the reason one bounded
//! line); [`LineOverride::applies_at`] says whether it is in force; [`Lines`] holds each
//! company's current override for the server, and never hands out one whose time is over.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::dialplan::CompanyId;
use crate::event::CallEvent;
use crate::schedule::{Openness, Reason};

/// How far ahead an override may end: a product decision (a fortnight covers a closure
/// for works or a holiday week; anything longer belongs in the plan's `[hours] closed`).
pub const MAX_AHEAD: jiff::SignedDuration = jiff::SignedDuration::from_hours(14 * 24);

/// The longest reason, in characters.
pub const MAX_REASON: usize = 120;

/// The longest `until` text looked at (an RFC 3339 time with a zone name fits).
const MAX_UNTIL_TEXT: usize = 64;

/// Which way the line is switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineState {
    /// Closed, whatever the hours say.
    Closed,
    /// Open, whatever the hours say.
    Open,
}

impl LineState {
    /// The word stored and shown (`closed`, `open`).
    pub fn as_str(self) -> &'static str {
        match self {
            LineState::Closed => "closed",
            LineState::Open => "open",
        }
    }

    /// Reads the word back.
    pub fn parse(word: &str) -> Option<LineState> {
        match word {
            "closed" => Some(LineState::Closed),
            "open" => Some(LineState::Open),
            _ => None,
        }
    }
}

/// Why a requested override is refused; each names the request's field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Neither `closed` nor `open`.
    #[error("`closed` or `open`")]
    State,
    /// Not a time we read.
    #[error("a time like 2026-11-30T18:00 (the company's time zone) or 2026-11-30T18:00:00+01:00")]
    UntilFormat,
    /// Not after now.
    #[error("a time in the future")]
    UntilPast,
    /// Beyond [`MAX_AHEAD`].
    #[error("at most 14 days ahead")]
    UntilTooFar,
    /// Empty, too long, or more than one line.
    #[error("a reason of 1 to 120 characters, on one line")]
    Reason,
}

impl LineError {
    /// The field of the request it is about.
    pub fn field(&self) -> &'static str {
        match self {
            LineError::State => "state",
            LineError::UntilFormat | LineError::UntilPast | LineError::UntilTooFar => "until",
            LineError::Reason => "reason",
        }
    }
}

/// Reads an end time: with an explicit offset (`2026-11-30T18:00:00+01:00`, `…Z`) it is
/// that instant; without one (`2026-11-30T18:00`, `2026-11-30 18:00`) it is the company's
/// local time in `tz` (a time skipped by a daylight-saving change is read as jiff's
/// "compatible" rule does: moved forward by the gap).
pub fn parse_until(text: &str, tz: &TimeZone) -> Result<Timestamp, LineError> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_UNTIL_TEXT {
        return Err(LineError::UntilFormat);
    }
    if let Ok(instant) = text.parse::<Timestamp>() {
        return Ok(instant);
    }
    let civil: jiff::civil::DateTime = text.parse().map_err(|_| LineError::UntilFormat)?;
    tz.to_timestamp(civil).map_err(|_| LineError::UntilFormat)
}

/// A company's line switched closed or open until a time: plain data, as routing and the
/// records see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineOverride {
    /// Closed or open.
    pub state: LineState,
    /// When it was set (it does not apply before).
    pub since: Timestamp,
    /// When it ends by itself (it does not apply from then on).
    pub until: Timestamp,
    /// Why, in the secretary's words (one line).
    pub reason: String,
    /// Who set it.
    pub set_by: String,
}

impl LineOverride {
    /// An override set at `now`, checked: `until` after `now` and at most [`MAX_AHEAD`]
    /// later, the reason trimmed, 1 to [`MAX_REASON`] characters without control
    /// characters.
    pub fn new(
        state: LineState,
        until: Timestamp,
        reason: &str,
        set_by: &str,
        now: Timestamp,
    ) -> Result<LineOverride, LineError> {
        let reason = reason.trim();
        if reason.is_empty()
            || reason.chars().count() > MAX_REASON
            || reason.chars().any(char::is_control)
        {
            return Err(LineError::Reason);
        }
        if until <= now {
            return Err(LineError::UntilPast);
        }
        if now.duration_until(until) > MAX_AHEAD {
            return Err(LineError::UntilTooFar);
        }
        Ok(LineOverride {
            state,
            since: now,
            until,
            reason: reason.to_string(),
            set_by: set_by.to_string(),
        })
    }

    /// Whether it is in force at `now`: from when it was set, until (excluded) its end.
    pub fn applies_at(&self, now: Timestamp) -> bool {
        self.since <= now && now < self.until
    }

    /// The company's openness while it applies, with the reason and the local end time
    /// (in the company's `tz`) as the cause.
    pub fn openness(&self, tz: &TimeZone) -> Openness {
        let reason = Reason::Line {
            until: tz.to_datetime(self.until),
            why: self.reason.clone(),
        };
        match self.state {
            LineState::Closed => Openness::Closed(reason),
            LineState::Open => Openness::Open(reason),
        }
    }

    /// The timeline's entry for a call it routed (`until` as the records write times).
    pub fn event(&self) -> CallEvent {
        CallEvent::LineOverride {
            state: self.state.as_str().to_string(),
            until: format!("{:.3}", self.until),
            reason: self.reason.clone(),
            by: self.set_by.clone(),
        }
    }
}

/// Each company's current override, in memory: loaded from the records at start, changed
/// by the console, read by every call's routing. An override whose time is over is never
/// returned (and is forgotten when next looked at): it ends without anyone acting.
#[derive(Debug, Default)]
pub struct Lines {
    current: Mutex<HashMap<CompanyId, LineOverride>>,
}

impl Lines {
    /// The overrides the records hold as current.
    pub fn new(loaded: impl IntoIterator<Item = (CompanyId, LineOverride)>) -> Lines {
        Lines {
            current: Mutex::new(loaded.into_iter().collect()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<CompanyId, LineOverride>> {
        // A holder never panics while holding the lock; if one did, the map is still whole.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The company's override in force at `now`, if any.
    pub fn current(&self, company: &CompanyId, now: Timestamp) -> Option<LineOverride> {
        let mut map = self.map();
        let line = map.get(company)?;
        if now >= line.until {
            map.remove(company);
            return None;
        }
        line.applies_at(now).then(|| line.clone())
    }

    /// Puts `new` in force for the company, or ends its override (`None`), and returns
    /// the override that was in force at `now`. `record` runs under the same lock with
    /// that override, so that the records receive changes in the order they took effect.
    pub fn replace(
        &self,
        company: &CompanyId,
        new: Option<LineOverride>,
        now: Timestamp,
        record: impl FnOnce(Option<&LineOverride>),
    ) -> Option<LineOverride> {
        let mut map = self.map();
        let previous = match new {
            Some(line) => map.insert(company.clone(), line),
            None => map.remove(company),
        }
        .filter(|line| line.applies_at(now));
        record(previous.as_ref());
        previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Hours;

    fn paris() -> TimeZone {
        TimeZone::get("Europe/Paris").expect("tzdb has Europe/Paris")
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a valid instant")
    }

    fn line(state: LineState, since: &str, until: &str) -> LineOverride {
        LineOverride::new(state, at(until), "dégât des eaux", "alice", at(since)).unwrap()
    }

    #[test]
    fn until_is_an_instant_when_it_says_its_offset_else_the_companys_local_time() {
        let tz = paris();
        assert_eq!(
            parse_until("2026-11-30T18:00:00+01:00", &tz),
            Ok(at("2026-11-30T17:00:00Z"))
        );
        assert_eq!(
            parse_until("2026-11-30T17:00:00Z", &tz),
            Ok(at("2026-11-30T17:00:00Z"))
        );
        // Winter (UTC+1) and summer (UTC+2) in Paris.
        assert_eq!(
            parse_until("2026-11-30T18:00", &tz),
            Ok(at("2026-11-30T17:00:00Z"))
        );
        assert_eq!(
            parse_until(" 2026-07-01 18:00 ", &tz),
            Ok(at("2026-07-01T16:00:00Z"))
        );
        for bad in [
            "",
            "tomorrow",
            "18:00",
            "2026-11-31T18:00",
            "2026-11-30T25:00",
            &"9".repeat(200),
        ] {
            assert_eq!(parse_until(bad, &tz), Err(LineError::UntilFormat), "{bad}");
        }
    }

    #[test]
    fn a_request_is_refused_naming_the_field_at_fault() {
        let now = at("2026-11-30T09:00:00Z");
        let new = |until: &str, reason: &str| {
            LineOverride::new(LineState::Closed, at(until), reason, "alice", now)
        };
        assert_eq!(new("2026-11-30T09:00:00Z", "x"), Err(LineError::UntilPast));
        assert_eq!(new("2026-11-30T08:00:00Z", "x"), Err(LineError::UntilPast));
        assert!(new("2026-12-14T09:00:00Z", "x").is_ok(), "14 days exactly");
        assert_eq!(
            new("2026-12-14T09:00:01Z", "x"),
            Err(LineError::UntilTooFar)
        );
        assert_eq!(new("2026-11-30T10:00:00Z", "  "), Err(LineError::Reason));
        assert_eq!(
            new("2026-11-30T10:00:00Z", "a\nb"),
            Err(LineError::Reason),
            "one line"
        );
        assert_eq!(
            new("2026-11-30T10:00:00Z", &"é".repeat(121)),
            Err(LineError::Reason)
        );
        let ok = new("2026-11-30T10:00:00Z", &format!(" {} ", "é".repeat(120))).unwrap();
        assert_eq!(ok.reason.chars().count(), 120, "trimmed");
        assert_eq!(ok.since, now);
        assert_eq!(LineError::UntilTooFar.field(), "until");
        assert_eq!(LineError::Reason.field(), "reason");
        assert_eq!(LineError::State.field(), "state");
    }

    #[test]
    fn an_override_applies_from_when_it_is_set_until_its_end_excluded() {
        let closed = line(
            LineState::Closed,
            "2026-11-30T09:00:00Z",
            "2026-11-30T17:00:00Z",
        );
        assert!(!closed.applies_at(at("2026-11-30T08:59:59Z")));
        assert!(closed.applies_at(at("2026-11-30T09:00:00Z")));
        assert!(closed.applies_at(at("2026-11-30T16:59:59.999Z")));
        assert!(!closed.applies_at(at("2026-11-30T17:00:00Z")));
    }

    #[test]
    fn it_wins_over_the_hours_both_ways_and_says_why() {
        let tz = paris();
        let hours = Hours {
            open: vec!["mon-fri 09:00-18:00".parse().unwrap()],
            ..Hours::default()
        };
        // Monday 30 November 2026, 10:00 in Paris: open by the hours.
        let monday = tz.to_datetime(at("2026-11-30T09:00:00Z"));
        assert!(hours.is_open(monday));
        let closed = line(
            LineState::Closed,
            "2026-11-30T08:30:00Z",
            "2026-11-30T13:00:00Z",
        );
        let openness = closed.openness(&tz);
        assert!(!openness.is_open());
        assert_eq!(
            openness.to_string(),
            "closed: line switched by hand until 2026-11-30 14:00 (dégât des eaux)"
        );
        // 20:00 in Paris: closed by the hours, open by hand.
        let evening = tz.to_datetime(at("2026-11-30T19:00:00Z"));
        assert!(!hours.is_open(evening));
        let open = line(
            LineState::Open,
            "2026-11-30T16:30:00Z",
            "2026-11-30T21:00:00Z",
        );
        assert!(open.openness(&tz).is_open());
    }

    #[test]
    fn the_current_override_ends_by_itself_and_a_new_one_replaces_it() {
        let acme = CompanyId("acme".into());
        let closed = line(
            LineState::Closed,
            "2026-11-30T09:00:00Z",
            "2026-11-30T09:00:05Z",
        );
        let lines = Lines::new([(acme.clone(), closed.clone())]);
        assert_eq!(
            lines.current(&acme, at("2026-11-30T09:00:04Z")),
            Some(closed.clone())
        );
        assert_eq!(
            lines.current(&CompanyId("globex".into()), at("2026-11-30T09:00:04Z")),
            None
        );
        assert_eq!(
            lines.current(&acme, at("2026-11-30T09:00:05Z")),
            None,
            "over at its end"
        );
        assert_eq!(
            lines.current(&acme, at("2026-11-30T09:00:04Z")),
            None,
            "and forgotten"
        );

        let now = at("2026-11-30T10:00:00Z");
        let mut recorded = Vec::new();
        let first = line(
            LineState::Closed,
            "2026-11-30T10:00:00Z",
            "2026-11-30T12:00:00Z",
        );
        let replaced = lines.replace(&acme, Some(first.clone()), now, |p| {
            recorded.push(p.cloned())
        });
        assert_eq!(replaced, None);
        let second = line(
            LineState::Open,
            "2026-11-30T10:00:00Z",
            "2026-11-30T20:00:00Z",
        );
        let replaced = lines.replace(&acme, Some(second.clone()), now, |p| {
            recorded.push(p.cloned())
        });
        assert_eq!(replaced, Some(first.clone()));
        assert_eq!(lines.current(&acme, now), Some(second.clone()));
        let ended = lines.replace(&acme, None, now, |p| recorded.push(p.cloned()));
        assert_eq!(ended, Some(second.clone()));
        assert_eq!(lines.current(&acme, now), None, "ended: the hours decide");
        assert_eq!(lines.replace(&acme, None, now, |_| {}), None);
        assert_eq!(recorded, vec![None, Some(first), Some(second)]);
    }
}
