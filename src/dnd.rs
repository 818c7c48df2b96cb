//! Do not disturb: an executive asks, from their page, not to be called until a time.
//! Until then the plans' `transfer` steps skip them (the next step runs), the console's
//! transfer button and a secretary's REFER are refused, and the console's card says so;
//! at that time it ends by itself.
//!
//! An executive is one person across the plans: the same id (`[executives.marie]`) in two
//! companies' plans is the same Marie, with one page and one do-not-disturb.
//!
//! Pure: no clock is read, the shell passes the instant. [`Dnd::new`] checks a request;
//! [`InForce`] holds each executive's current one for the server (loaded from the records
//! at start, changed by the page), and never hands out one whose time is over.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;

use crate::event::CallEvent;

/// How far ahead it may end: a product decision (a month covers a holiday; beyond, the
/// plan's reach list or hours are the place).
pub const MAX_AHEAD: jiff::SignedDuration = jiff::SignedDuration::from_hours(31 * 24);

/// Why a requested do-not-disturb is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DndError {
    /// Not a time we read.
    #[error("a time like 2026-11-30T18:00")]
    UntilFormat,
    /// Not after now.
    #[error("a time in the future")]
    UntilPast,
    /// Beyond [`MAX_AHEAD`].
    #[error("at most 31 days ahead")]
    UntilTooFar,
}

/// An executive's do-not-disturb: plain data, as the call's decisions and the records see
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnd {
    /// When it was set (it does not apply before).
    pub since: Timestamp,
    /// When it ends by itself (it does not apply from then on).
    pub until: Timestamp,
    /// Who set it (the executive's id, from their page).
    pub set_by: String,
}

impl Dnd {
    /// One set at `now` until `until`, checked: after `now`, at most [`MAX_AHEAD`] later.
    pub fn new(until: Timestamp, set_by: &str, now: Timestamp) -> Result<Dnd, DndError> {
        if until <= now {
            return Err(DndError::UntilPast);
        }
        if now.duration_until(until) > MAX_AHEAD {
            return Err(DndError::UntilTooFar);
        }
        Ok(Dnd {
            since: now,
            until,
            set_by: set_by.to_string(),
        })
    }

    /// Whether it is in force at `now`: from when it was set until (excluded) its end.
    pub fn applies_at(&self, now: Timestamp) -> bool {
        self.since <= now && now < self.until
    }

    /// The timeline's entry for a call that skipped this executive (`until` as the records
    /// write times).
    pub fn event(&self, executive: &str) -> CallEvent {
        CallEvent::ExecutiveDnd {
            executive: executive.to_string(),
            until: format!("{:.3}", self.until),
        }
    }
}

/// Each executive's current do-not-disturb, in memory: loaded from the records at start,
/// changed by their page, read by every call that would ring them. One whose time is over
/// is never returned (and is forgotten when next looked at).
#[derive(Debug, Default)]
pub struct InForce {
    current: Mutex<HashMap<String, Dnd>>,
}

impl InForce {
    /// The ones the records hold as current, by executive id.
    pub fn new(loaded: impl IntoIterator<Item = (String, Dnd)>) -> InForce {
        InForce {
            current: Mutex::new(loaded.into_iter().collect()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Dnd>> {
        // A holder never panics while holding the lock; if one did, the map is still whole.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The executive's do-not-disturb in force at `now`, if any.
    pub fn current(&self, executive: &str, now: Timestamp) -> Option<Dnd> {
        let mut map = self.map();
        let dnd = map.get(executive)?;
        if now >= dnd.until {
            map.remove(executive);
            return None;
        }
        dnd.applies_at(now).then(|| dnd.clone())
    }

    /// Puts `new` in force for the executive, or ends theirs (`None`), and returns the one
    /// that was in force at `now`. `record` runs under the same lock, so that the records
    /// receive changes in the order they took effect.
    pub fn replace(
        &self,
        executive: &str,
        new: Option<Dnd>,
        now: Timestamp,
        record: impl FnOnce(Option<&Dnd>),
    ) -> Option<Dnd> {
        let mut map = self.map();
        let previous = match new {
            Some(dnd) => map.insert(executive.to_string(), dnd),
            None => map.remove(executive),
        }
        .filter(|dnd| dnd.applies_at(now));
        record(previous.as_ref());
        previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a valid instant")
    }

    #[test]
    fn a_request_ends_in_the_future_within_a_month() {
        let now = at("2026-11-30T09:00:00Z");
        let dnd = Dnd::new(at("2026-11-30T18:00:00Z"), "marie", now).unwrap();
        assert_eq!(dnd.since, now);
        assert_eq!(dnd.set_by, "marie");
        assert_eq!(Dnd::new(now, "marie", now), Err(DndError::UntilPast));
        assert_eq!(
            Dnd::new(at("2026-11-30T08:00:00Z"), "marie", now),
            Err(DndError::UntilPast)
        );
        assert!(Dnd::new(at("2026-12-31T09:00:00Z"), "marie", now).is_ok());
        assert_eq!(
            Dnd::new(at("2026-12-31T09:00:01Z"), "marie", now),
            Err(DndError::UntilTooFar)
        );
    }

    #[test]
    fn it_applies_from_its_setting_until_its_end_then_is_forgotten() {
        let now = at("2026-11-30T09:00:00Z");
        let dnd = Dnd::new(at("2026-11-30T10:00:00Z"), "marie", now).unwrap();
        assert!(!dnd.applies_at(at("2026-11-30T08:59:59Z")));
        assert!(dnd.applies_at(now));
        assert!(dnd.applies_at(at("2026-11-30T09:59:59Z")));
        assert!(!dnd.applies_at(at("2026-11-30T10:00:00Z")));

        let in_force = InForce::new([("marie".to_string(), dnd.clone())]);
        assert_eq!(in_force.current("marie", now), Some(dnd.clone()));
        assert_eq!(in_force.current("paul", now), None);
        assert_eq!(in_force.current("marie", at("2026-11-30T10:00:00Z")), None);
        assert_eq!(
            in_force.current("marie", now),
            None,
            "forgotten once over, whatever time is asked about later"
        );
    }

    #[test]
    fn a_change_replaces_the_one_in_force_and_is_recorded_under_the_lock() {
        let now = at("2026-11-30T09:00:00Z");
        let in_force = InForce::default();
        let first = Dnd::new(at("2026-11-30T10:00:00Z"), "marie", now).unwrap();
        let mut seen = Vec::new();
        let previous =
            in_force.replace("marie", Some(first.clone()), now, |p| seen.push(p.cloned()));
        assert_eq!(previous, None);
        let later = Dnd::new(at("2026-11-30T12:00:00Z"), "marie", now).unwrap();
        let previous =
            in_force.replace("marie", Some(later.clone()), now, |p| seen.push(p.cloned()));
        assert_eq!(previous, Some(first.clone()));
        assert_eq!(in_force.current("marie", now), Some(later.clone()));
        let ended = in_force.replace("marie", None, now, |p| seen.push(p.cloned()));
        assert_eq!(ended, Some(later.clone()));
        assert_eq!(in_force.current("marie", now), None);
        assert_eq!(seen, vec![None, Some(first), Some(later)]);
        assert_eq!(
            in_force.replace("marie", None, now, |_| {}),
            None,
            "nothing to end"
        );
    }

    #[test]
    fn the_timeline_names_the_executive_and_the_end() {
        let now = at("2026-11-30T09:00:00Z");
        let dnd = Dnd::new(at("2026-11-30T10:00:00Z"), "marie", now).unwrap();
        let event = dnd.event("marie");
        assert_eq!(event.kind(), "executive-dnd");
        assert_eq!(
            event.data(),
            r#"{"executive":"marie","until":"2026-11-30T10:00:00.000Z"}"#
        );
    }
}
