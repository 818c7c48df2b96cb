//! An executive's appointments as an iCalendar (RFC 5545) document, for the feed a
//! calendar application subscribes to: one VEVENT per appointment with a stable UID (the
//! appointment's), SEQUENCE (raised by each change a calendar must notice: a move, a
//! confirmation, a cancellation) and STATUS (TENTATIVE while proposed, CONFIRMED,
//! CANCELLED). Text is escaped and lines folded by the `icalendar` crate.
//!
//! Pure: the document's stamp (`now`) is an argument. Every event is given its DTSTAMP
//! and UID, so the crate never falls back on its own clock or a random UUID.

use icalendar::{Calendar, Component, Event, EventLike, EventStatus};
use jiff::Timestamp;

use super::{Span, Status};

/// One appointment as the calendar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Stable identifier (the same in every version of the feed and every e-mail).
    pub uid: String,
    /// Raised by each change.
    pub sequence: u32,
    /// Where it stands (`done` shows as confirmed: it took place).
    pub status: Status,
    /// When.
    pub span: Span,
    /// One line: who and why.
    pub summary: String,
    /// The details (the client's phone, e-mail, the reason).
    pub description: String,
    /// The client's address, if given.
    pub location: Option<String>,
}

/// RFC 5545's UTC date-time form (`20261207T080000Z`).
fn utc(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// The iCalendar text for `entries`, named `name` (the executive), stamped `now`.
pub fn calendar(name: &str, entries: &[Entry], now: Timestamp) -> String {
    let mut cal = Calendar::new();
    cal.name(name);
    for e in entries {
        let status = match e.status {
            Status::Proposed => EventStatus::Tentative,
            Status::Confirmed | Status::Done => EventStatus::Confirmed,
            Status::Cancelled => EventStatus::Cancelled,
        };
        let mut event = Event::new();
        event
            .uid(&e.uid)
            .sequence(e.sequence)
            .add_property("DTSTAMP", utc(now))
            .add_property("DTSTART", utc(e.span.starts))
            .add_property("DTEND", utc(e.span.ends))
            .summary(&e.summary)
            .description(&e.description)
            .status(status);
        if let Some(location) = &e.location {
            event.location(location);
        }
        cal.push(event.done());
    }
    cal.done().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_carries_uid_sequence_status_and_escaped_text() {
        let span = Span {
            starts: Timestamp::from_second(1_796_000_000).expect("valid"),
            ends: Timestamp::from_second(1_796_001_800).expect("valid"),
        };
        let text = calendar(
            "Marie Durand",
            &[Entry {
                uid: "abc@permanence".into(),
                sequence: 2,
                status: Status::Proposed,
                span,
                summary: "Jean; Dupont, leak\nBEGIN:VEVENT".into(),
                description: "call first".into(),
                location: Some("1 rue X".into()),
            }],
            span.starts,
        );
        assert!(text.contains("UID:abc@permanence"), "{text}");
        assert!(text.contains("SEQUENCE:2"), "{text}");
        assert!(text.contains("STATUS:TENTATIVE"), "{text}");
        // The caller's line break is escaped, never a line of its own.
        assert_eq!(
            text.lines().filter(|l| *l == "BEGIN:VEVENT").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("Jean\\; Dupont\\, leak\\nBEGIN:VEVENT"),
            "{text}"
        );
    }
}
