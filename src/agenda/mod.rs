//! An executive's agenda: the slots a secretary may book (`agenda = { slots, length,
//! buffer, needs_confirmation }` in the plan), which of them are free on a day, and whether
//! a booking may be made.
//!
//! Pure: no clock is read (`now` is an argument), no database. The store repeats the
//! overlap check inside the writer's transaction ([`Span::window`]), so two secretaries
//! clicking at once cannot both win; this module is what offers the slots and explains a
//! refusal.
//!
//! Slots are computed on the company's local civil time ("09:00" on the wall clock, DST or
//! not) and handed out as instants. The company's holidays and closed dates close the
//! agenda too; its weekly opening hours do not (an executive may see clients when the line
//! is closed).

pub mod ics;
pub mod link;

use std::fmt;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::schedule::{Hours, WeeklyRange};

/// Shortest appointment accepted in a plan, in minutes.
pub const MIN_LENGTH: u16 = 5;
/// Longest appointment accepted in a plan, in minutes (a working day).
pub const MAX_LENGTH: u16 = 8 * 60;
/// Longest buffer accepted between two appointments, in minutes.
pub const MAX_BUFFER: u16 = 4 * 60;

/// An executive's bookable time, as the plan gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agenda {
    /// Weekly ranges in which appointments may lie (start and end inside one range).
    pub slots: Vec<WeeklyRange>,
    /// Length of an appointment, in minutes.
    pub length: u16,
    /// Free minutes kept between two appointments.
    pub buffer: u16,
    /// Whether a booking waits for the executive (`proposed`) or stands at once
    /// (`confirmed`).
    pub needs_confirmation: bool,
}

/// Where an appointment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Booked by a secretary, waiting for the executive.
    Proposed,
    /// The executive (or the plan) agreed.
    Confirmed,
    /// Called off, by whom and why recorded with the change.
    Cancelled,
    /// It took place.
    Done,
}

impl Status {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Proposed => "proposed",
            Status::Confirmed => "confirmed",
            Status::Cancelled => "cancelled",
            Status::Done => "done",
        }
    }

    /// The status a stored word names.
    pub fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "proposed" => Status::Proposed,
            "confirmed" => Status::Confirmed,
            "cancelled" => Status::Cancelled,
            "done" => Status::Done,
            _ => return None,
        })
    }

    /// Whether it still takes its time in the agenda.
    pub fn holds_time(self) -> bool {
        matches!(self, Status::Proposed | Status::Confirmed)
    }

    /// Whether a change to `to` may follow: what is cancelled or done stays so; a
    /// confirmed appointment is not proposed again (a move re-proposes it, which is not a
    /// status change of its own); only a confirmed one can be done.
    pub fn may_become(self, to: Status) -> bool {
        matches!(
            (self, to),
            (Status::Proposed, Status::Confirmed | Status::Cancelled)
                | (Status::Confirmed, Status::Cancelled | Status::Done)
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stretch of time taken by an appointment: start inclusive, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    /// When it starts.
    pub starts: Timestamp,
    /// When it ends.
    pub ends: Timestamp,
}

impl Span {
    /// The time no other appointment may touch: the span widened by `buffer` minutes on
    /// each side. Two appointments conflict when one starts inside the other's window.
    pub fn window(self, buffer: u16) -> Span {
        let b = SignedDuration::from_mins(i64::from(buffer));
        Span {
            starts: self.starts.checked_sub(b).unwrap_or(self.starts),
            ends: self.ends.checked_add(b).unwrap_or(self.ends),
        }
    }

    /// Whether `other` lies closer than `buffer` minutes to this one (or overlaps it).
    pub fn conflicts(self, other: Span, buffer: u16) -> bool {
        let w = self.window(buffer);
        other.starts < w.ends && w.starts < other.ends
    }
}

/// Why a booking is refused; each says what the secretary can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookingError {
    /// The start is not later than now.
    #[error("this time is in the past; choose one of the free slots")]
    Past,
    /// A public holiday closes the company that day.
    #[error("{0} is a public holiday for this company; choose another day")]
    Holiday(&'static str),
    /// A closed date of the plan covers the day.
    #[error("the company is closed that day; choose another day")]
    Closed,
    /// Not the start of one of the agenda's slots.
    #[error("not one of the executive's slots; choose one of the free slots")]
    NotASlot,
    /// Another appointment (or its buffer) takes the time.
    #[error("this slot is already taken; choose another free slot")]
    Taken,
}

impl BookingError {
    /// Whether the refusal is a conflict with another booking (409) rather than a bad
    /// request (422).
    pub fn is_conflict(&self) -> bool {
        matches!(self, BookingError::Taken)
    }
}

/// The agenda's slots on `date` (local to `tz`), whatever is booked: every start from
/// each range's beginning, one appointment plus its buffer apart, that fits before the
/// range's end. Empty on the company's holidays and closed dates. Sorted, no duplicates.
pub fn day_slots(agenda: &Agenda, hours: &Hours, tz: &TimeZone, date: Date) -> Vec<Span> {
    if closed_on(hours, date).is_some() || agenda.length == 0 {
        return Vec::new();
    }
    let weekday = date.weekday().to_monday_zero_offset().unsigned_abs() as usize;
    let step = agenda.length + agenda.buffer;
    let mut out = Vec::new();
    for range in &agenda.slots {
        if !range.days().get(weekday).copied().unwrap_or(false) {
            continue;
        }
        let mut minute = range.start_minute();
        while minute + agenda.length <= range.end_minute() {
            if let Some(span) = span_at(tz, date, minute, agenda.length) {
                out.push(span);
            }
            minute += step;
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The slots of `date` a secretary may offer at `now`: the day's slots that start after
/// `now` and conflict with none of `busy` (the executive's appointments that hold time).
pub fn free_slots(
    agenda: &Agenda,
    hours: &Hours,
    tz: &TimeZone,
    date: Date,
    busy: &[Span],
    now: Timestamp,
) -> Vec<Span> {
    day_slots(agenda, hours, tz, date)
        .into_iter()
        .filter(|s| s.starts > now && !busy.iter().any(|b| s.conflicts(*b, agenda.buffer)))
        .collect()
}

/// Whether an appointment may start at `starts`: later than `now`, on a day the company
/// is not closed, at one of the agenda's slots, clear of `busy`. The span it takes, or why
/// not.
pub fn check_booking(
    agenda: &Agenda,
    hours: &Hours,
    tz: &TimeZone,
    starts: Timestamp,
    busy: &[Span],
    now: Timestamp,
) -> Result<Span, BookingError> {
    if starts <= now {
        return Err(BookingError::Past);
    }
    let date = tz.to_datetime(starts).date();
    match closed_on(hours, date) {
        Some(Some(name)) => return Err(BookingError::Holiday(name)),
        Some(None) => return Err(BookingError::Closed),
        None => {}
    }
    let span = day_slots(agenda, hours, tz, date)
        .into_iter()
        .find(|s| s.starts == starts)
        .ok_or(BookingError::NotASlot)?;
    if busy.iter().any(|b| span.conflicts(*b, agenda.buffer)) {
        return Err(BookingError::Taken);
    }
    Ok(span)
}

/// Who an appointment is for and what it is about, checked ([`Client::checked`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Client {
    /// The client's name.
    pub name: String,
    /// Their phone number (empty: none).
    pub phone: String,
    /// Their e-mail address (empty: none).
    pub email: String,
    /// Their address (empty: none).
    pub address: String,
    /// What the appointment is about (empty: not said).
    pub reason: String,
}

/// A client's field that cannot be taken: which, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct FieldError {
    /// The field's name in the API (`client.name`…).
    pub field: &'static str,
    /// What was expected.
    pub why: String,
}

impl Client {
    /// The client's fields trimmed and checked: a name (1 to 100 characters), a phone
    /// (digits, spaces and `+ . - ( )`, at most 30), an e-mail address we could send to,
    /// an address and a reason (at most 300 and 500 characters, line breaks allowed).
    /// No other control characters anywhere: these texts reach pages, e-mails, calendar
    /// files and terminals.
    pub fn checked(self) -> Result<Client, FieldError> {
        let name = text("client.name", &self.name, 100, false)?;
        if name.is_empty() {
            return Err(FieldError {
                field: "client.name",
                why: "expected the client's name".into(),
            });
        }
        let phone = text("client.phone", &self.phone, 30, false)?;
        if !phone
            .chars()
            .all(|c| c.is_ascii_digit() || " +.-()".contains(c))
        {
            return Err(FieldError {
                field: "client.phone",
                why: "expected a phone number (digits, spaces, + . - ( ))".into(),
            });
        }
        let email = text("client.email", &self.email, 254, false)?;
        if !email.is_empty() {
            crate::delivery::rules::EmailAddress::parse(&email).map_err(|why| FieldError {
                field: "client.email",
                why,
            })?;
        }
        Ok(Client {
            name,
            phone,
            email,
            address: text("client.address", &self.address, 300, true)?,
            reason: text("client.reason", &self.reason, 500, true)?,
        })
    }
}

/// The most characters a cancellation's reason may have.
pub const MAX_REASON: usize = 300;

/// A cancellation's reason as given (by a secretary or on the executive's page): trimmed,
/// at most [`MAX_REASON`] characters on one line, no control characters or bidi overrides
/// (it reaches pages, e-mails and terminals).
pub fn cancel_reason(raw: &str) -> Result<String, FieldError> {
    text("why", raw, MAX_REASON, false)
}

/// A field trimmed, at most `max` characters, without control characters (line breaks
/// allowed when `lines`; bidi overrides never).
fn text(field: &'static str, raw: &str, max: usize, lines: bool) -> Result<String, FieldError> {
    let t = raw.trim();
    if t.chars().count() > max {
        return Err(FieldError {
            field,
            why: format!("at most {max} characters"),
        });
    }
    let bad = |c: char| {
        (c.is_control() && !(lines && c == '\n'))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if t.chars().any(bad) {
        return Err(FieldError {
            field,
            why: "control characters are not accepted".into(),
        });
    }
    Ok(t.replace("\r\n", "\n"))
}

/// An instant as stored and compared in the records: whole seconds, UTC, so that text
/// order is time order.
pub fn stamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Whether the company is closed on `date`: `Some(Some(name))` for a public holiday,
/// `Some(None)` for a closed date of the plan.
fn closed_on(hours: &Hours, date: Date) -> Option<Option<&'static str>> {
    if let Some(name) = hours.holidays.and_then(|c| c.holiday(date)) {
        return Some(Some(name));
    }
    hours
        .closed
        .iter()
        .any(|r| r.contains(date))
        .then_some(None)
}

/// The appointment starting `minute` minutes after local midnight of `date`. A local time
/// that a spring-forward skips is taken as the instant after the gap (jiff's compatible
/// rule), like any calendar application.
fn span_at(tz: &TimeZone, date: Date, minute: u16, length: u16) -> Option<Span> {
    let hour = i8::try_from(minute / 60).ok()?;
    let min = i8::try_from(minute % 60).ok()?;
    let local = date.at(hour, min, 0, 0);
    let starts = tz.to_ambiguous_timestamp(local).compatible().ok()?;
    let ends = starts
        .checked_add(SignedDuration::from_mins(i64::from(length)))
        .ok()?;
    Some(Span { starts, ends })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{DateRange, HolidayCalendar};
    use jiff::civil::date;

    fn paris() -> TimeZone {
        TimeZone::get("Europe/Paris").expect("tzdb has Paris")
    }

    fn agenda(slots: &[&str], length: u16, buffer: u16) -> Agenda {
        Agenda {
            slots: slots
                .iter()
                .map(|s| WeeklyRange::parse(s).expect("valid range"))
                .collect(),
            length,
            buffer,
            needs_confirmation: true,
        }
    }

    fn local(d: Date, h: i8, m: i8) -> Timestamp {
        paris()
            .to_ambiguous_timestamp(d.at(h, m, 0, 0))
            .compatible()
            .expect("valid local time")
    }

    fn starts(spans: &[Span]) -> Vec<String> {
        spans
            .iter()
            .map(|s| paris().to_datetime(s.starts).strftime("%H:%M").to_string())
            .collect()
    }

    #[test]
    fn a_cancellation_reason_is_one_short_plain_line() {
        assert_eq!(cancel_reason("  Malade  ").unwrap(), "Malade");
        assert_eq!(cancel_reason("").unwrap(), "");
        assert!(cancel_reason(&"x".repeat(MAX_REASON)).is_ok());
        assert!(cancel_reason(&"x".repeat(MAX_REASON + 1)).is_err());
        assert!(cancel_reason("two\nlines").is_err());
        assert!(cancel_reason("\u{1b}[2J").is_err());
        assert!(cancel_reason("abc\u{202e}fed").is_err(), "a bidi override");
    }

    #[test]
    fn a_day_is_cut_into_appointments_and_buffers_that_fit_the_ranges() {
        // Monday 7 December 2026.
        let a = agenda(&["mon-fri 09:00-12:00", "mon-fri 14:00-17:30"], 30, 10);
        let day = day_slots(&a, &Hours::default(), &paris(), date(2026, 12, 7));
        assert_eq!(
            starts(&day),
            [
                "09:00", "09:40", "10:20", "11:00", // 11:40 would end at 12:10
                "14:00", "14:40", "15:20", "16:00", "16:40"
            ]
        );
        assert_eq!(
            day[0].ends.duration_since(day[0].starts),
            SignedDuration::from_mins(30)
        );
        // Saturday: no range.
        assert!(day_slots(&a, &Hours::default(), &paris(), date(2026, 12, 12)).is_empty());
    }

    #[test]
    fn holidays_and_closed_dates_close_the_agenda() {
        let a = agenda(&["mon-sun 09:00-12:00"], 60, 0);
        let hours = Hours {
            holidays: Some(HolidayCalendar::France),
            closed: vec![DateRange::parse("2026-12-24").expect("valid date")],
            ..Hours::default()
        };
        assert!(day_slots(&a, &hours, &paris(), date(2026, 12, 25)).is_empty());
        assert!(day_slots(&a, &hours, &paris(), date(2026, 12, 24)).is_empty());
        assert_eq!(day_slots(&a, &hours, &paris(), date(2026, 12, 23)).len(), 3);
        let now = local(date(2026, 12, 1), 8, 0);
        assert_eq!(
            check_booking(
                &a,
                &hours,
                &paris(),
                local(date(2026, 12, 25), 9, 0),
                &[],
                now
            ),
            Err(BookingError::Holiday("Noël"))
        );
        assert_eq!(
            check_booking(
                &a,
                &hours,
                &paris(),
                local(date(2026, 12, 24), 9, 0),
                &[],
                now
            ),
            Err(BookingError::Closed)
        );
    }

    #[test]
    fn free_slots_leave_out_the_past_and_what_is_booked_with_its_buffer() {
        let a = agenda(&["mon-fri 09:00-12:00"], 30, 10);
        let d = date(2026, 12, 7);
        let now = local(d, 9, 0); // 09:00 itself is not offered: it is not later than now
        let booked = Span {
            starts: local(d, 10, 20),
            ends: local(d, 10, 50),
        };
        let free = free_slots(&a, &Hours::default(), &paris(), d, &[booked], now);
        assert_eq!(starts(&free), ["09:40", "11:00"]);
        // A booking made elsewhere, off the grid (09:45-10:15), blocks 09:40 (overlap) and
        // 10:20 (inside its buffer) but not 11:00.
        let odd = Span {
            starts: local(d, 9, 45),
            ends: local(d, 10, 15),
        };
        let free = free_slots(&a, &Hours::default(), &paris(), d, &[odd], now);
        assert_eq!(starts(&free), ["11:00"]);
    }

    #[test]
    fn a_booking_is_checked_against_the_grid_the_clock_and_the_others() {
        let a = agenda(&["mon-fri 09:00-12:00"], 30, 10);
        let d = date(2026, 12, 7);
        let now = local(d, 8, 0);
        let h = Hours::default();
        let ok = check_booking(&a, &h, &paris(), local(d, 9, 40), &[], now).expect("free slot");
        assert_eq!(ok.ends, local(d, 10, 10));
        assert_eq!(
            check_booking(&a, &h, &paris(), local(d, 9, 45), &[], now),
            Err(BookingError::NotASlot)
        );
        assert_eq!(
            check_booking(&a, &h, &paris(), local(d, 9, 40), &[], local(d, 9, 40)),
            Err(BookingError::Past)
        );
        let taken = check_booking(&a, &h, &paris(), local(d, 9, 40), &[ok], now);
        assert_eq!(taken, Err(BookingError::Taken));
        assert!(taken.unwrap_err().is_conflict());
        // The next slot is clear of 9:40's buffer.
        assert!(check_booking(&a, &h, &paris(), local(d, 10, 20), &[ok], now).is_ok());
    }

    #[test]
    fn slots_follow_the_wall_clock_across_a_dst_change() {
        // 29 March 2026: Paris goes from UTC+1 to UTC+2 at 02:00.
        let a = agenda(&["sun 09:00-10:00"], 60, 0);
        let day = day_slots(&a, &Hours::default(), &paris(), date(2026, 3, 29));
        assert_eq!(stamp(day[0].starts), "2026-03-29T07:00:00Z");
        let day = day_slots(&a, &Hours::default(), &paris(), date(2026, 3, 22));
        assert_eq!(stamp(day[0].starts), "2026-03-22T08:00:00Z");
    }

    #[test]
    fn windows_and_conflicts() {
        let d = date(2026, 12, 7);
        let a = Span {
            starts: local(d, 9, 0),
            ends: local(d, 9, 30),
        };
        let b = Span {
            starts: local(d, 9, 40),
            ends: local(d, 10, 10),
        };
        assert!(!a.conflicts(b, 10));
        assert!(a.conflicts(b, 11));
        assert!(a.conflicts(a, 0));
        assert_eq!(stamp(a.window(10).starts), "2026-12-07T07:50:00Z");
    }

    #[test]
    fn a_client_is_trimmed_and_hostile_text_refused() {
        let client = |name: &str, phone: &str, email: &str| Client {
            name: name.into(),
            phone: phone.into(),
            email: email.into(),
            address: " 1 rue de la Paix\nParis ".into(),
            reason: "fuite".into(),
        };
        let ok = client(" Jean Dupont ", "+33 6 12 34 56 78", "jean@example.com")
            .checked()
            .expect("valid");
        assert_eq!(ok.name, "Jean Dupont");
        assert_eq!(ok.address, "1 rue de la Paix\nParis");
        let field = |c: Client| c.checked().unwrap_err().field;
        assert_eq!(field(client("", "", "")), "client.name");
        assert_eq!(field(client("Jean\u{1b}[2J", "", "")), "client.name");
        assert_eq!(field(client("Jean\nX", "", "")), "client.name");
        assert_eq!(field(client("Jean\u{202e}", "", "")), "client.name");
        assert_eq!(field(client("Jean", "06;rm", "")), "client.phone");
        assert_eq!(
            field(client("Jean", "", "jean@x\r\nBcc: y@z.fr")),
            "client.email"
        );
        assert_eq!(field(client(&"x".repeat(101), "", "")), "client.name");
    }

    #[test]
    fn statuses_move_forward_only() {
        use Status::*;
        assert!(Proposed.may_become(Confirmed));
        assert!(Confirmed.may_become(Cancelled));
        assert!(!Confirmed.may_become(Confirmed));
        assert!(!Cancelled.may_become(Confirmed));
        assert!(!Done.may_become(Cancelled));
        assert!(!Proposed.may_become(Done));
        for s in [Proposed, Confirmed, Cancelled, Done] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("maybe"), None);
    }
}
