//! Opening hours of a client company: weekly ranges, public holidays, closed
//! dates and exceptional openings.
//!
//! Pure: no clock is read. The shell turns the current instant into the
//! company's local civil time with [`local_time`] and asks [`Hours::at`].
//! Everything is evaluated on local civil time, so a DST change needs no
//! special case: "09:00" means 09:00 on the wall clock whatever the offset.
//! A local time skipped by a spring-forward never comes out of
//! [`local_time`]; a local time repeated by a fall-back is simply evaluated
//! twice, with the same answer both times.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

/// Minutes in a day: the value of "24:00", the only end that is not a time of day.
const DAY_END: u16 = 24 * 60;

/// Day names in Monday-first order, matching `Weekday::to_monday_zero_offset`.
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// What went wrong while parsing a schedule entry. Every message quotes the
/// whole entry (so the operator can find it in the configuration), names the
/// faulty part and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// A weekly range without days or without a time range.
    #[error("`{text}`: expected days then a time range, like `mon-fri 09:00-12:30`")]
    WeeklyFormat {
        /// The whole entry.
        text: String,
    },
    /// An empty item in a day list (`mon,,fri`, `-fri`).
    #[error("`{text}`: missing day; expected days like `mon-fri` or `mon,wed,fri`")]
    MissingDay {
        /// The whole entry.
        text: String,
    },
    /// A day name that is not one of the seven abbreviations.
    #[error("`{text}`: unknown day `{day}`; expected mon, tue, wed, thu, fri, sat or sun")]
    UnknownDay {
        /// The whole entry.
        text: String,
        /// The offending day name, as written.
        day: String,
    },
    /// A time range without its `-` separator.
    #[error("`{text}`: invalid time range `{range}`; expected HH:MM-HH:MM")]
    TimeRangeFormat {
        /// The whole entry.
        text: String,
        /// The offending time range.
        range: String,
    },
    /// A time that is not HH:MM within a day.
    #[error("`{text}`: invalid time `{time}`; expected HH:MM from 00:00 to 24:00")]
    InvalidTime {
        /// The whole entry.
        text: String,
        /// The offending time.
        time: String,
    },
    /// A time range whose end is not after its start.
    #[error("`{text}`: end before start; expected the end `{end}` to be after the start `{start}`")]
    EndBeforeStart {
        /// The whole entry.
        text: String,
        /// The start, as written.
        start: String,
        /// The end, as written.
        end: String,
    },
    /// A date that is not a real YYYY-MM-DD calendar date.
    #[error("`{text}`: invalid date `{date}`; expected YYYY-MM-DD")]
    InvalidDate {
        /// The whole entry.
        text: String,
        /// The offending date.
        date: String,
    },
    /// A date range whose last day precedes its first.
    #[error(
        "`{text}`: end before start; expected the last day {last} to be on or after the first day {first}"
    )]
    DateRangeReversed {
        /// The whole entry.
        text: String,
        /// The first day.
        first: Date,
        /// The last day.
        last: Date,
    },
    /// An exceptional opening without a date or without a time range.
    #[error("`{text}`: expected a date then a time range, like `2026-12-26 09:00-12:00`")]
    SlotFormat {
        /// The whole entry.
        text: String,
    },
}

/// A time-of-day range in minutes since midnight, start inclusive, end
/// exclusive; `end` may be [`DAY_END`] so that a range can reach midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Minutes {
    start: u16,
    end: u16,
}

impl Minutes {
    /// Parses `HH:MM-HH:MM`; `whole` is the entry quoted by errors.
    fn parse(range: &str, whole: &str) -> Result<Minutes, ScheduleError> {
        let Some((start_text, end_text)) = range.split_once('-') else {
            return Err(ScheduleError::TimeRangeFormat {
                text: whole.to_owned(),
                range: range.to_owned(),
            });
        };
        let time = |t: &str| {
            parse_time(t).ok_or_else(|| ScheduleError::InvalidTime {
                text: whole.to_owned(),
                time: t.to_owned(),
            })
        };
        let start = time(start_text)?;
        let end = time(end_text)?;
        // An empty range would never match and is surely a typo; "24:00" as a
        // start lands here too, since nothing can end after it.
        if end <= start {
            return Err(ScheduleError::EndBeforeStart {
                text: whole.to_owned(),
                start: start_text.to_owned(),
                end: end_text.to_owned(),
            });
        }
        Ok(Minutes { start, end })
    }

    fn contains(self, local: DateTime) -> bool {
        let minute = minute_of_day(local);
        self.start <= minute && minute < self.end
    }
}

impl fmt::Display for Minutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", HhMm(self.start), HhMm(self.end))
    }
}

/// Formats minutes since midnight as `HH:MM` (1440 gives `24:00`).
struct HhMm(u16);

impl fmt::Display for HhMm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// Parses `HH:MM` (or `H:MM`) into minutes since midnight, `24:00` included.
fn parse_time(text: &str) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(hours) || hours.len() > 2 || !all_digits(minutes) || minutes.len() != 2 {
        return None;
    }
    let hours: u16 = hours.parse().ok()?;
    let minutes: u16 = minutes.parse().ok()?;
    // Two digits at most each, so this cannot overflow; the day-end check
    // admits 24:00 but rejects 24:01 and 25:00.
    let total = hours * 60 + minutes;
    if minutes > 59 || total > DAY_END {
        return None;
    }
    Some(total)
}

/// Minutes since local midnight; seconds are ignored, so 12:29:59 is still in
/// a range ending at 12:30.
fn minute_of_day(local: DateTime) -> u16 {
    // hour() and minute() are 0..=23 and 0..=59, never negative.
    local.hour().unsigned_abs() as u16 * 60 + local.minute().unsigned_abs() as u16
}

/// Splits `DAYS HH:MM-HH:MM` (or `DATE HH:MM-HH:MM`) at the first
/// whitespace-separated token that starts with a digit, dropping all
/// whitespace, so `mon, wed 09:00 - 12:00` reads like `mon,wed 09:00-12:00`.
fn split_head_and_times(text: &str) -> (String, String) {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let at = tokens
        .iter()
        .position(|t| t.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(tokens.len());
    (tokens[..at].concat(), tokens[at..].concat())
}

/// Parses a day abbreviation into its Monday-first index.
fn parse_day(name: &str, whole: &str) -> Result<usize, ScheduleError> {
    if name.is_empty() {
        return Err(ScheduleError::MissingDay {
            text: whole.to_owned(),
        });
    }
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .ok_or_else(|| ScheduleError::UnknownDay {
            text: whole.to_owned(),
            day: name.to_owned(),
        })
}

/// A weekday set and a time-of-day range: `mon-fri 09:00-12:30`,
/// `sat 10:00-12:00`, `mon,wed,fri 14:00-18:00`, `sun 00:00-24:00`.
///
/// Day names are `mon` … `sun`, case-insensitive; a day range may wrap past
/// Sunday (`fri-mon` is Friday to Monday). The start is inclusive, the end
/// exclusive, and `24:00` is allowed as an end (end of day). The entry's
/// text is kept, trimmed, for display; two ranges are equal only if written
/// alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WeeklyRange {
    /// Indexed Monday-first (0 = Monday … 6 = Sunday).
    days: [bool; 7],
    minutes: Minutes,
    text: String,
}

impl WeeklyRange {
    /// Parses `DAYS HH:MM-HH:MM`, where DAYS is a comma-separated list of days
    /// or day ranges.
    pub fn parse(text: &str) -> Result<WeeklyRange, ScheduleError> {
        let whole = text.trim();
        let (days_text, times_text) = split_head_and_times(whole);
        if days_text.is_empty() || times_text.is_empty() {
            return Err(ScheduleError::WeeklyFormat {
                text: whole.to_owned(),
            });
        }
        let mut days = [false; 7];
        for item in days_text.split(',') {
            match item.split_once('-') {
                Some((first, last)) => {
                    let first = parse_day(first, whole)?;
                    let last = parse_day(last, whole)?;
                    // Walk forward from the first day, wrapping past Sunday,
                    // so that `fri-mon` means the weekend and not Mon–Fri.
                    let span = (last + 7 - first) % 7;
                    for offset in 0..=span {
                        days[(first + offset) % 7] = true;
                    }
                }
                None => days[parse_day(item, whole)?] = true,
            }
        }
        let minutes = Minutes::parse(&times_text, whole)?;
        Ok(WeeklyRange {
            days,
            minutes,
            text: whole.to_owned(),
        })
    }

    /// Whether `local` falls on one of the days and within the time range
    /// (start inclusive, end exclusive).
    pub fn contains(&self, local: DateTime) -> bool {
        let day = local.weekday().to_monday_zero_offset().unsigned_abs() as usize;
        self.days.get(day).copied().unwrap_or(false) && self.minutes.contains(local)
    }

    /// The days covered, Monday-first (index 0 = Monday … 6 = Sunday).
    pub fn days(&self) -> [bool; 7] {
        self.days
    }

    /// Start of the range, in minutes since midnight (inclusive).
    pub fn start_minute(&self) -> u16 {
        self.minutes.start
    }

    /// End of the range, in minutes since midnight (exclusive; 1440 = 24:00).
    pub fn end_minute(&self) -> u16 {
        self.minutes.end
    }

    /// The entry as written (trimmed).
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl FromStr for WeeklyRange {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<WeeklyRange, ScheduleError> {
        WeeklyRange::parse(text)
    }
}

impl fmt::Display for WeeklyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a strict `YYYY-MM-DD` calendar date; `whole` is the entry quoted by
/// errors. Done by hand rather than with jiff's parser, which also accepts
/// other ISO 8601 shapes that a configuration should not.
fn parse_date(text: &str, whole: &str) -> Result<Date, ScheduleError> {
    let invalid = || ScheduleError::InvalidDate {
        text: whole.to_owned(),
        date: text.to_owned(),
    };
    let mut parts = text.split('-');
    let (Some(year), Some(month), Some(day), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let digits = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(year, 4) || !digits(month, 2) || !digits(day, 2) {
        return Err(invalid());
    }
    let year: i16 = year.parse().map_err(|_| invalid())?;
    let month: i8 = month.parse().map_err(|_| invalid())?;
    let day: i8 = day.parse().map_err(|_| invalid())?;
    // Date::new rejects month 13, February 30 and the like.
    Date::new(year, month, day).map_err(|_| invalid())
}

/// A closed day or an inclusive range of days: `2026-12-24` or
/// `2026-08-01..2026-08-15`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateRange {
    /// First closed day.
    pub first: Date,
    /// Last closed day (inclusive; equal to `first` for a single day).
    pub last: Date,
}

impl DateRange {
    /// Parses `YYYY-MM-DD` or `YYYY-MM-DD..YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<DateRange, ScheduleError> {
        let whole = text.trim();
        let (first, last) = match whole.split_once("..") {
            Some((first, last)) => (
                parse_date(first.trim(), whole)?,
                parse_date(last.trim(), whole)?,
            ),
            None => {
                let day = parse_date(whole, whole)?;
                (day, day)
            }
        };
        if last < first {
            return Err(ScheduleError::DateRangeReversed {
                text: whole.to_owned(),
                first,
                last,
            });
        }
        Ok(DateRange { first, last })
    }

    /// Whether `d` is within the range, both ends included.
    pub fn contains(&self, d: Date) -> bool {
        self.first <= d && d <= self.last
    }
}

impl FromStr for DateRange {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<DateRange, ScheduleError> {
        DateRange::parse(text)
    }
}

impl fmt::Display for DateRange {
    /// Writes the form it was parsed from: one date, or `FIRST..LAST`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}..{}", self.first, self.last)
        }
    }
}

/// An exceptional opening: one date and a time range, `2026-12-26 09:00-12:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    /// The day of the opening.
    pub date: Date,
    minutes: Minutes,
}

impl Slot {
    /// Parses `YYYY-MM-DD HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<Slot, ScheduleError> {
        let whole = text.trim();
        let mut tokens = whole.split_whitespace();
        let date_text = tokens.next().unwrap_or("");
        let times_text: String = tokens.collect();
        if date_text.is_empty() || times_text.is_empty() {
            return Err(ScheduleError::SlotFormat {
                text: whole.to_owned(),
            });
        }
        let date = parse_date(date_text, whole)?;
        let minutes = Minutes::parse(&times_text, whole)?;
        Ok(Slot { date, minutes })
    }

    /// Whether `local` is on the slot's date and within its time range (start
    /// inclusive, end exclusive).
    pub fn contains(&self, local: DateTime) -> bool {
        local.date() == self.date && self.minutes.contains(local)
    }

    /// Start of the slot, in minutes since midnight (inclusive).
    pub fn start_minute(&self) -> u16 {
        self.minutes.start
    }

    /// End of the slot, in minutes since midnight (exclusive; 1440 = 24:00).
    pub fn end_minute(&self) -> u16 {
        self.minutes.end
    }
}

impl FromStr for Slot {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Slot, ScheduleError> {
        Slot::parse(text)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.date, self.minutes)
    }
}

/// Easter Sunday of a Gregorian year, by the anonymous Gregorian computus
/// (Meeus/Jones/Butcher). `None` before 1583, the first full year of the
/// Gregorian calendar (earlier dates were reckoned otherwise), and beyond
/// the years jiff can represent.
pub fn easter_sunday(year: i16) -> Option<Date> {
    if year < 1583 {
        return None;
    }
    let y = i32::from(year);
    // Position in the 19-year Metonic cycle of lunar phases.
    let a = y % 19;
    let (century, year_in_century) = (y / 100, y % 100);
    // Gregorian leap-year correction: century years not divisible by 400.
    let (leap_centuries, century_rest) = (century / 4, century % 4);
    // Lunar correction: the moon drifts about 8 days in 2500 years.
    let f = (century + 8) / 25;
    let g = (century - f + 1) / 3;
    // Epact: days from the equinox to the paschal full moon, modulo 30.
    let h = (19 * a + century - leap_centuries - g + 15) % 30;
    let (i, k) = (year_in_century / 4, year_in_century % 4);
    // Days from the paschal full moon to the following Sunday.
    let l = (32 + 2 * century_rest + 2 * i - h - k) % 7;
    // Corrects the rare cases where the full moon would be placed too late.
    let m = (a + 11 * h + 22 * l) / 451;
    let n = h + l - 7 * m + 114;
    let month = i8::try_from(n / 31).ok()?;
    let day = i8::try_from(n % 31 + 1).ok()?;
    Date::new(year, month, day).ok()
}

/// Public holidays by country.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HolidayCalendar {
    /// The eleven national public holidays of metropolitan France (without
    /// the Alsace-Moselle extras, Good Friday and St Stephen's Day).
    France,
}

impl HolidayCalendar {
    /// The calendar for an ISO 3166-1 alpha-2 country code, case-insensitive
    /// (`fr`, `FR`); `None` for a country we have no calendar for.
    pub fn from_code(code: &str) -> Option<HolidayCalendar> {
        if code.trim().eq_ignore_ascii_case("fr") {
            Some(HolidayCalendar::France)
        } else {
            None
        }
    }

    /// The holiday's name if `date` is one. Computed for any year (Easter by
    /// the Gregorian computus), never looked up in a list of years.
    pub fn holiday(&self, date: Date) -> Option<&'static str> {
        match self {
            HolidayCalendar::France => france_holiday(date),
        }
    }
}

fn france_holiday(date: Date) -> Option<&'static str> {
    let fixed = match (date.month(), date.day()) {
        (1, 1) => Some("Jour de l'an"),
        (5, 1) => Some("Fête du Travail"),
        (5, 8) => Some("Victoire 1945"),
        (7, 14) => Some("Fête nationale"),
        (8, 15) => Some("Assomption"),
        (11, 1) => Some("Toussaint"),
        (11, 11) => Some("Armistice"),
        (12, 25) => Some("Noël"),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let easter = easter_sunday(date.year())?;
    // Easter is in March or April and the movable feasts follow it by at most
    // 50 days, so they always fall in the same year: comparing days of the
    // year needs no date arithmetic that could fail.
    match date.day_of_year() - easter.day_of_year() {
        1 => Some("Lundi de Pâques"),
        39 => Some("Ascension"),
        50 => Some("Lundi de Pentecôte"),
        _ => None,
    }
}

/// A company's opening hours.
///
/// With no `open` ranges at all the office is always open, except on
/// holidays and closed dates: a company that declares only its holidays
/// should not be treated as never open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hours {
    /// Weekly opening ranges; open when any one matches.
    pub open: Vec<WeeklyRange>,
    /// Public holidays that close the office, if any.
    pub holidays: Option<HolidayCalendar>,
    /// Days the office is closed (vacations, bridges).
    pub closed: Vec<DateRange>,
    /// Exceptional openings; they override holidays and closed days.
    pub extra_open: Vec<Slot>,
}

/// Why the office is open or closed; each variant carries the rule that
/// decided, with its index in [`Hours`], so it can be printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A weekly range matched.
    WeeklyRange {
        /// Index in [`Hours::open`].
        index: usize,
        /// The range itself.
        range: WeeklyRange,
    },
    /// No weekly ranges are configured, so every ordinary day is open.
    NoWeeklyHours,
    /// An exceptional opening matched.
    ExtraOpen {
        /// Index in [`Hours::extra_open`].
        index: usize,
        /// The slot itself.
        slot: Slot,
    },
    /// The day is a public holiday, named.
    Holiday(&'static str),
    /// The day is in a closed date range.
    ClosedDate {
        /// Index in [`Hours::closed`].
        index: usize,
        /// The range itself.
        range: DateRange,
    },
    /// No weekly range covers the moment.
    OutsideHours,
    /// The line is switched by hand until a local time (`line::LineOverride`), whatever
    /// the rules above say.
    Line {
        /// When it ends, company time.
        until: DateTime,
        /// Why, as the secretary wrote it.
        why: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::WeeklyRange { range, .. } => write!(f, "{range}"),
            Reason::NoWeeklyHours => f.write_str("no weekly hours set"),
            Reason::ExtraOpen { slot, .. } => write!(f, "exceptional opening {slot}"),
            Reason::Holiday(name) => write!(f, "public holiday ({name})"),
            Reason::ClosedDate { range, .. } => write!(f, "closed dates {range}"),
            Reason::OutsideHours => f.write_str("outside opening hours"),
            Reason::Line { until, why } => write!(
                f,
                "line switched by hand until {} ({why})",
                until.strftime("%Y-%m-%d %H:%M")
            ),
        }
    }
}

/// Whether the office is open at a moment, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Openness {
    /// Open, for this reason.
    Open(Reason),
    /// Closed, for this reason.
    Closed(Reason),
}

impl Openness {
    /// Whether this is [`Openness::Open`].
    pub fn is_open(&self) -> bool {
        matches!(self, Openness::Open(_))
    }

    /// The reason, open or closed.
    pub fn reason(&self) -> &Reason {
        match self {
            Openness::Open(reason) | Openness::Closed(reason) => reason,
        }
    }
}

impl fmt::Display for Openness {
    /// `open: mon-fri 09:00-12:30`, `closed: public holiday (Noël)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Openness::Open(reason) => write!(f, "open: {reason}"),
            Openness::Closed(reason) => write!(f, "closed: {reason}"),
        }
    }
}

impl Hours {
    /// Decides at a local civil time. An exceptional open slot wins (it exists
    /// precisely to open on a day that would be closed); else a holiday or a
    /// closed date closes; else the weekly ranges decide, and no weekly
    /// ranges at all means open.
    pub fn at(&self, local: DateTime) -> Openness {
        if let Some((index, slot)) = self
            .extra_open
            .iter()
            .enumerate()
            .find(|(_, s)| s.contains(local))
        {
            return Openness::Open(Reason::ExtraOpen { index, slot: *slot });
        }
        let day = local.date();
        if let Some(name) = self.holidays.and_then(|calendar| calendar.holiday(day)) {
            return Openness::Closed(Reason::Holiday(name));
        }
        if let Some((index, range)) = self
            .closed
            .iter()
            .enumerate()
            .find(|(_, r)| r.contains(day))
        {
            return Openness::Closed(Reason::ClosedDate {
                index,
                range: *range,
            });
        }
        if self.open.is_empty() {
            return Openness::Open(Reason::NoWeeklyHours);
        }
        match self
            .open
            .iter()
            .enumerate()
            .find(|(_, r)| r.contains(local))
        {
            Some((index, range)) => Openness::Open(Reason::WeeklyRange {
                index,
                range: range.clone(),
            }),
            None => Openness::Closed(Reason::OutsideHours),
        }
    }

    /// Whether the office is open at a local civil time (see [`Hours::at`]).
    pub fn is_open(&self, local: DateTime) -> bool {
        self.at(local).is_open()
    }
}

/// Converts an instant into the company's local civil time. The shell reads
/// the clock and passes the instant in, keeping this module pure.
pub fn local_time(instant: Timestamp, tz: &TimeZone) -> DateTime {
    tz.to_datetime(instant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{Weekday, date};

    fn at(d: Date, hour: i8, minute: i8) -> DateTime {
        d.at(hour, minute, 0, 0)
    }

    fn weekly(text: &str) -> WeeklyRange {
        WeeklyRange::parse(text).expect("valid weekly range")
    }

    fn days_of(text: &str) -> Vec<&'static str> {
        let range = weekly(text);
        DAY_NAMES
            .iter()
            .zip(range.days())
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect()
    }

    fn paris() -> TimeZone {
        TimeZone::get("Europe/Paris").expect("tzdb has Europe/Paris")
    }

    fn instant(text: &str) -> Timestamp {
        text.parse().expect("valid timestamp")
    }

    // ---- WeeklyRange parsing ----

    #[test]
    fn weekly_day_range() {
        let r = weekly("mon-fri 09:00-12:30");
        assert_eq!(r.days(), [true, true, true, true, true, false, false]);
        assert_eq!((r.start_minute(), r.end_minute()), (540, 750));
        assert_eq!(r.text(), "mon-fri 09:00-12:30");
        assert_eq!(r.to_string(), "mon-fri 09:00-12:30");
    }

    #[test]
    fn weekly_single_day_and_list() {
        assert_eq!(days_of("sat 10:00-12:00"), ["sat"]);
        assert_eq!(days_of("mon,wed,fri 14:00-18:00"), ["mon", "wed", "fri"]);
        assert_eq!(
            days_of("mon-tue,thu,sat-sun 14:00-18:00"),
            ["mon", "tue", "thu", "sat", "sun"]
        );
        // Same-day range is that one day, not the whole week.
        assert_eq!(days_of("wed-wed 08:00-09:00"), ["wed"]);
    }

    #[test]
    fn weekly_wrapping_day_range() {
        assert_eq!(days_of("fri-mon 08:00-20:00"), ["mon", "fri", "sat", "sun"]);
        assert_eq!(days_of("sun-tue 08:00-20:00"), ["mon", "tue", "sun"]);
        // Tuesday to Monday wraps all the way round.
        assert_eq!(days_of("tue-mon 08:00-20:00").len(), 7);
    }

    #[test]
    fn weekly_case_insensitive_and_whitespace_tolerant() {
        assert_eq!(
            days_of("MON-Fri 09:00-12:00"),
            ["mon", "tue", "wed", "thu", "fri"]
        );
        let r = weekly("  mon, wed ,fri   9:00 - 12:00 ");
        assert_eq!(r.days(), [true, false, true, false, true, false, false]);
        assert_eq!((r.start_minute(), r.end_minute()), (540, 720));
        assert_eq!(r.text(), "mon, wed ,fri   9:00 - 12:00");
        assert_eq!(
            "sun 00:00-24:00".parse::<WeeklyRange>(),
            WeeklyRange::parse("sun 00:00-24:00")
        );
    }

    #[test]
    fn weekly_24_00_end() {
        let r = weekly("sun 00:00-24:00");
        assert_eq!((r.start_minute(), r.end_minute()), (0, 1440));
        let sunday = date(2026, 3, 1);
        assert_eq!(sunday.weekday(), Weekday::Sunday);
        assert!(r.contains(at(sunday, 0, 0)));
        assert!(r.contains(sunday.at(23, 59, 59, 999_999_999)));
        assert!(!r.contains(at(date(2026, 3, 2), 0, 0)));
        assert!(!r.contains(at(date(2026, 2, 28), 23, 59)));
    }

    #[test]
    fn weekly_errors() {
        let cases: &[(&str, ScheduleError)] = &[
            ("", ScheduleError::WeeklyFormat { text: "".into() }),
            (
                "mon-fri",
                ScheduleError::WeeklyFormat {
                    text: "mon-fri".into(),
                },
            ),
            (
                "09:00-12:00",
                ScheduleError::WeeklyFormat {
                    text: "09:00-12:00".into(),
                },
            ),
            (
                "mon-fry 09:00-12:00",
                ScheduleError::UnknownDay {
                    text: "mon-fry 09:00-12:00".into(),
                    day: "fry".into(),
                },
            ),
            (
                "monday 09:00-12:00",
                ScheduleError::UnknownDay {
                    text: "monday 09:00-12:00".into(),
                    day: "monday".into(),
                },
            ),
            (
                "mon fri 09:00-12:00",
                ScheduleError::UnknownDay {
                    text: "mon fri 09:00-12:00".into(),
                    day: "monfri".into(),
                },
            ),
            (
                "mon,,fri 09:00-12:00",
                ScheduleError::MissingDay {
                    text: "mon,,fri 09:00-12:00".into(),
                },
            ),
            (
                "-fri 09:00-12:00",
                ScheduleError::MissingDay {
                    text: "-fri 09:00-12:00".into(),
                },
            ),
            (
                "mon, 09:00-12:00",
                ScheduleError::MissingDay {
                    text: "mon, 09:00-12:00".into(),
                },
            ),
            (
                "mon 09:00",
                ScheduleError::TimeRangeFormat {
                    text: "mon 09:00".into(),
                    range: "09:00".into(),
                },
            ),
            (
                "mon 09:00-25:00",
                ScheduleError::InvalidTime {
                    text: "mon 09:00-25:00".into(),
                    time: "25:00".into(),
                },
            ),
            (
                "mon 09:60-12:00",
                ScheduleError::InvalidTime {
                    text: "mon 09:60-12:00".into(),
                    time: "09:60".into(),
                },
            ),
            (
                "mon 09:00-24:01",
                ScheduleError::InvalidTime {
                    text: "mon 09:00-24:01".into(),
                    time: "24:01".into(),
                },
            ),
            (
                "mon 9h-12:00",
                ScheduleError::InvalidTime {
                    text: "mon 9h-12:00".into(),
                    time: "9h".into(),
                },
            ),
            (
                "mon 09:0-12:00",
                ScheduleError::InvalidTime {
                    text: "mon 09:0-12:00".into(),
                    time: "09:0".into(),
                },
            ),
            (
                "mon 009:00-12:00",
                ScheduleError::InvalidTime {
                    text: "mon 009:00-12:00".into(),
                    time: "009:00".into(),
                },
            ),
            (
                "mon 09:00-12:00-13:00",
                ScheduleError::InvalidTime {
                    text: "mon 09:00-12:00-13:00".into(),
                    time: "12:00-13:00".into(),
                },
            ),
            (
                "mon 12:00-09:00",
                ScheduleError::EndBeforeStart {
                    text: "mon 12:00-09:00".into(),
                    start: "12:00".into(),
                    end: "09:00".into(),
                },
            ),
            (
                "mon 12:00-12:00",
                ScheduleError::EndBeforeStart {
                    text: "mon 12:00-12:00".into(),
                    start: "12:00".into(),
                    end: "12:00".into(),
                },
            ),
            (
                "mon 24:00-24:00",
                ScheduleError::EndBeforeStart {
                    text: "mon 24:00-24:00".into(),
                    start: "24:00".into(),
                    end: "24:00".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(WeeklyRange::parse(text).as_ref(), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn error_messages_say_what_and_what_was_expected() {
        let message = |r: Result<WeeklyRange, ScheduleError>| r.expect_err("must fail").to_string();
        assert_eq!(
            message(WeeklyRange::parse("mon-fry 09:00-12:00")),
            "`mon-fry 09:00-12:00`: unknown day `fry`; expected mon, tue, wed, thu, fri, sat or sun"
        );
        assert_eq!(
            message(WeeklyRange::parse("mon 09:00-25:00")),
            "`mon 09:00-25:00`: invalid time `25:00`; expected HH:MM from 00:00 to 24:00"
        );
        assert_eq!(
            message(WeeklyRange::parse("mon 12:00-09:00")),
            "`mon 12:00-09:00`: end before start; expected the end `09:00` to be after the start `12:00`"
        );
        assert_eq!(
            message(WeeklyRange::parse("mon-fri")),
            "`mon-fri`: expected days then a time range, like `mon-fri 09:00-12:30`"
        );
        assert_eq!(
            DateRange::parse("2026-13-01")
                .expect_err("month 13")
                .to_string(),
            "`2026-13-01`: invalid date `2026-13-01`; expected YYYY-MM-DD"
        );
        assert_eq!(
            DateRange::parse("2026-08-15..2026-08-01")
                .expect_err("reversed")
                .to_string(),
            "`2026-08-15..2026-08-01`: end before start; expected the last day 2026-08-01 \
             to be on or after the first day 2026-08-15"
        );
        assert_eq!(
            Slot::parse("2026-12-26").expect_err("no times").to_string(),
            "`2026-12-26`: expected a date then a time range, like `2026-12-26 09:00-12:00`"
        );
    }

    // ---- DateRange and Slot parsing ----

    #[test]
    fn date_range_forms() {
        let one = DateRange::parse("2026-12-24").expect("single day");
        assert_eq!(
            (one.first, one.last),
            (date(2026, 12, 24), date(2026, 12, 24))
        );
        assert_eq!(one.to_string(), "2026-12-24");
        let span = DateRange::parse(" 2026-08-01 .. 2026-08-15 ").expect("range");
        assert_eq!(
            (span.first, span.last),
            (date(2026, 8, 1), date(2026, 8, 15))
        );
        assert_eq!(span.to_string(), "2026-08-01..2026-08-15");
        assert_eq!("2026-08-01..2026-08-15".parse::<DateRange>(), Ok(span));
        // A one-day range written as a range is allowed.
        assert!(DateRange::parse("2026-08-01..2026-08-01").is_ok());
        // Across a year end.
        let winter = DateRange::parse("2026-12-24..2027-01-02").expect("range");
        assert!(winter.contains(date(2026, 12, 31)) && winter.contains(date(2027, 1, 1)));
    }

    #[test]
    fn date_range_contains_both_ends() {
        let span = DateRange::parse("2026-08-01..2026-08-15").expect("range");
        assert!(!span.contains(date(2026, 7, 31)));
        assert!(span.contains(date(2026, 8, 1)));
        assert!(span.contains(date(2026, 8, 8)));
        assert!(span.contains(date(2026, 8, 15)));
        assert!(!span.contains(date(2026, 8, 16)));
    }

    #[test]
    fn date_errors() {
        let invalid = |whole: &str, part: &str| ScheduleError::InvalidDate {
            text: whole.into(),
            date: part.into(),
        };
        for text in [
            "",
            "2026-13-01",
            "2026-00-10",
            "2026-02-29",
            "2026-04-31",
            "2026-12-32",
            "2026-1-01",
            "26-01-01",
            "2026/01/01",
            "2026-01-01-01",
            "20260101",
            "2026-01-0a",
            "+2026-01-01",
            "2026-01-01T10:00",
        ] {
            assert_eq!(DateRange::parse(text), Err(invalid(text, text)), "{text:?}");
        }
        // Leap day exists in leap years only.
        assert!(DateRange::parse("2028-02-29").is_ok());
        assert_eq!(
            DateRange::parse("2026-08-01.."),
            Err(invalid("2026-08-01..", ""))
        );
        assert_eq!(
            DateRange::parse("2026-08-01..2026-08-32"),
            Err(invalid("2026-08-01..2026-08-32", "2026-08-32"))
        );
        assert_eq!(
            DateRange::parse("2026-08-15..2026-08-01"),
            Err(ScheduleError::DateRangeReversed {
                text: "2026-08-15..2026-08-01".into(),
                first: date(2026, 8, 15),
                last: date(2026, 8, 1),
            })
        );
    }

    #[test]
    fn slot_forms_and_contains() {
        let slot = Slot::parse("2026-12-26 09:00-12:00").expect("slot");
        assert_eq!(slot.date, date(2026, 12, 26));
        assert_eq!((slot.start_minute(), slot.end_minute()), (540, 720));
        assert_eq!(slot.to_string(), "2026-12-26 09:00-12:00");
        assert_eq!(" 2026-12-26  09:00 - 12:00 ".parse::<Slot>(), Ok(slot));
        assert!(!slot.contains(at(date(2026, 12, 26), 8, 59)));
        assert!(slot.contains(at(date(2026, 12, 26), 9, 0)));
        assert!(slot.contains(at(date(2026, 12, 26), 11, 59)));
        assert!(!slot.contains(at(date(2026, 12, 26), 12, 0)));
        assert!(!slot.contains(at(date(2026, 12, 27), 10, 0)));
        let late = Slot::parse("2026-12-31 18:00-24:00").expect("slot to midnight");
        assert_eq!(late.to_string(), "2026-12-31 18:00-24:00");
        assert!(late.contains(at(date(2026, 12, 31), 23, 59)));
        assert!(!late.contains(at(date(2027, 1, 1), 0, 0)));
    }

    #[test]
    fn slot_errors() {
        assert_eq!(
            Slot::parse(""),
            Err(ScheduleError::SlotFormat { text: "".into() })
        );
        assert_eq!(
            Slot::parse("2026-12-26"),
            Err(ScheduleError::SlotFormat {
                text: "2026-12-26".into()
            })
        );
        assert_eq!(
            Slot::parse("2026-12-32 09:00-12:00"),
            Err(ScheduleError::InvalidDate {
                text: "2026-12-32 09:00-12:00".into(),
                date: "2026-12-32".into(),
            })
        );
        assert_eq!(
            Slot::parse("2026-12-26 09:00"),
            Err(ScheduleError::TimeRangeFormat {
                text: "2026-12-26 09:00".into(),
                range: "09:00".into(),
            })
        );
        assert_eq!(
            Slot::parse("2026-12-26 09:00-24:30"),
            Err(ScheduleError::InvalidTime {
                text: "2026-12-26 09:00-24:30".into(),
                time: "24:30".into(),
            })
        );
        assert_eq!(
            Slot::parse("2026-12-26 12:00-09:00"),
            Err(ScheduleError::EndBeforeStart {
                text: "2026-12-26 12:00-09:00".into(),
                start: "12:00".into(),
                end: "09:00".into(),
            })
        );
    }

    // ---- Easter and French holidays ----

    const EASTERS: [(i16, i8, i8); 7] = [
        (2024, 3, 31),
        (2025, 4, 20),
        (2026, 4, 5),
        (2027, 3, 28),
        (2028, 4, 16),
        (2029, 4, 1),
        (2030, 4, 21),
    ];

    #[test]
    fn easter_known_dates() {
        for (year, month, day) in EASTERS {
            assert_eq!(easter_sunday(year), Some(date(year, month, day)), "{year}");
        }
        // Well-known extremes and a millennium.
        assert_eq!(easter_sunday(1818), Some(date(1818, 3, 22)));
        assert_eq!(easter_sunday(2285), Some(date(2285, 3, 22)));
        assert_eq!(easter_sunday(1943), Some(date(1943, 4, 25)));
        assert_eq!(easter_sunday(2038), Some(date(2038, 4, 25)));
        assert_eq!(easter_sunday(2000), Some(date(2000, 4, 23)));
    }

    #[test]
    fn easter_is_always_a_sunday_between_march_22_and_april_25() {
        for year in 1583..=9999 {
            let easter = easter_sunday(year).expect("Gregorian year");
            assert_eq!(easter.weekday(), Weekday::Sunday, "{year}");
            assert!(
                date(year, 3, 22) <= easter && easter <= date(year, 4, 25),
                "{year}: {easter}"
            );
        }
    }

    #[test]
    fn easter_out_of_range() {
        assert_eq!(easter_sunday(1582), None);
        assert_eq!(easter_sunday(0), None);
        assert_eq!(easter_sunday(-5), None);
        assert_eq!(easter_sunday(i16::MAX), None);
        assert!(easter_sunday(1583).is_some());
    }

    #[test]
    fn holiday_calendar_codes() {
        assert_eq!(
            HolidayCalendar::from_code("fr"),
            Some(HolidayCalendar::France)
        );
        assert_eq!(
            HolidayCalendar::from_code("FR"),
            Some(HolidayCalendar::France)
        );
        assert_eq!(
            HolidayCalendar::from_code("Fr"),
            Some(HolidayCalendar::France)
        );
        assert_eq!(HolidayCalendar::from_code("de"), None);
        assert_eq!(HolidayCalendar::from_code("fra"), None);
        assert_eq!(HolidayCalendar::from_code(""), None);
    }

    #[test]
    fn french_fixed_holidays_every_year() {
        let fr = HolidayCalendar::France;
        for year in 2024..=2030 {
            for (month, day, name) in [
                (1, 1, "Jour de l'an"),
                (5, 1, "Fête du Travail"),
                (5, 8, "Victoire 1945"),
                (7, 14, "Fête nationale"),
                (8, 15, "Assomption"),
                (11, 1, "Toussaint"),
                (11, 11, "Armistice"),
                (12, 25, "Noël"),
            ] {
                assert_eq!(
                    fr.holiday(date(year, month, day)),
                    Some(name),
                    "{year}-{month}-{day}"
                );
            }
            for (month, day) in [
                (1, 2),
                (4, 30),
                (5, 2),
                (5, 7),
                (7, 13),
                (7, 15),
                (8, 14),
                (11, 2),
                (11, 10),
                (12, 24),
                (12, 26),
                (12, 31),
            ] {
                assert_eq!(
                    fr.holiday(date(year, month, day)),
                    None,
                    "{year}-{month}-{day}"
                );
            }
        }
    }

    #[test]
    fn french_movable_holidays_2024_to_2030() {
        let fr = HolidayCalendar::France;
        // (Easter Monday, Ascension, Whit Monday), computed by hand from EASTERS.
        let known: [[(i16, i8, i8); 3]; 7] = [
            [(2024, 4, 1), (2024, 5, 9), (2024, 5, 20)],
            [(2025, 4, 21), (2025, 5, 29), (2025, 6, 9)],
            [(2026, 4, 6), (2026, 5, 14), (2026, 5, 25)],
            [(2027, 3, 29), (2027, 5, 6), (2027, 5, 17)],
            [(2028, 4, 17), (2028, 5, 25), (2028, 6, 5)],
            [(2029, 4, 2), (2029, 5, 10), (2029, 5, 21)],
            [(2030, 4, 22), (2030, 5, 30), (2030, 6, 10)],
        ];
        for [monday, ascension, whit] in known {
            let d = |(y, m, d): (i16, i8, i8)| date(y, m, d);
            assert_eq!(fr.holiday(d(monday)), Some("Lundi de Pâques"), "{monday:?}");
            assert_eq!(d(monday).weekday(), Weekday::Monday);
            assert_eq!(fr.holiday(d(ascension)), Some("Ascension"), "{ascension:?}");
            assert_eq!(d(ascension).weekday(), Weekday::Thursday);
            assert_eq!(fr.holiday(d(whit)), Some("Lundi de Pentecôte"), "{whit:?}");
            assert_eq!(d(whit).weekday(), Weekday::Monday);
        }
    }

    #[test]
    fn french_non_holidays_around_movable_feasts() {
        let fr = HolidayCalendar::France;
        for (year, month, day) in EASTERS {
            let easter = date(year, month, day);
            let shifted = |days: i64| {
                easter
                    .checked_add(jiff::Span::new().days(days))
                    .expect("in range")
            };
            // Good Friday, Holy Saturday and Easter Sunday are not national
            // holidays; neither are the days around Ascension and Whit Monday,
            // nor Whit Sunday itself.
            for offset in [-2, -1, 0, 2, 38, 40, 49, 51] {
                let d = shifted(offset);
                // A fixed holiday may fall there (2024: Easter+38 is 8 May).
                if matches!((d.month(), d.day()), (5, 1) | (5, 8)) {
                    continue;
                }
                assert_eq!(fr.holiday(d), None, "{d} (Easter{offset:+})");
            }
            assert_eq!(fr.holiday(shifted(1)), Some("Lundi de Pâques"));
            assert_eq!(fr.holiday(shifted(39)), Some("Ascension"));
            assert_eq!(fr.holiday(shifted(50)), Some("Lundi de Pentecôte"));
        }
    }

    #[test]
    fn french_holidays_far_years() {
        let fr = HolidayCalendar::France;
        // Computed, not listed: works well outside the tested decade.
        assert_eq!(fr.holiday(date(2285, 3, 23)), Some("Lundi de Pâques"));
        assert_eq!(fr.holiday(date(2038, 4, 26)), Some("Lundi de Pâques"));
        assert_eq!(fr.holiday(date(2038, 6, 3)), Some("Ascension"));
        assert_eq!(fr.holiday(date(2038, 6, 14)), Some("Lundi de Pentecôte"));
        assert_eq!(fr.holiday(date(9999, 12, 25)), Some("Noël"));
        // Before the Gregorian calendar only fixed dates are known.
        assert_eq!(fr.holiday(date(1500, 1, 1)), Some("Jour de l'an"));
        assert_eq!(fr.holiday(date(1500, 4, 20)), None);
    }

    // ---- Hours ----

    fn office() -> Hours {
        Hours {
            open: vec![
                weekly("mon-fri 09:00-12:30"),
                weekly("mon-fri 14:00-18:00"),
                weekly("sat 10:00-12:00"),
            ],
            holidays: Some(HolidayCalendar::France),
            closed: vec![DateRange::parse("2026-08-03..2026-08-14").expect("range")],
            extra_open: vec![Slot::parse("2026-12-26 09:00-12:00").expect("slot")],
        }
    }

    #[test]
    fn lunch_break_between_two_ranges() {
        let hours = office();
        let tuesday = date(2026, 3, 3);
        assert_eq!(tuesday.weekday(), Weekday::Tuesday);
        assert!(!hours.is_open(at(tuesday, 8, 59)));
        assert!(hours.is_open(at(tuesday, 9, 0)));
        assert!(hours.is_open(tuesday.at(12, 29, 59, 0)));
        assert!(!hours.is_open(at(tuesday, 12, 30)));
        assert!(!hours.is_open(at(tuesday, 13, 59)));
        assert!(hours.is_open(at(tuesday, 14, 0)));
        assert!(hours.is_open(at(tuesday, 17, 59)));
        assert!(!hours.is_open(at(tuesday, 18, 0)));
        assert_eq!(
            hours.at(at(tuesday, 10, 0)),
            Openness::Open(Reason::WeeklyRange {
                index: 0,
                range: weekly("mon-fri 09:00-12:30")
            })
        );
        assert_eq!(
            hours.at(at(tuesday, 15, 0)).to_string(),
            "open: mon-fri 14:00-18:00"
        );
        assert_eq!(
            hours.at(at(tuesday, 13, 0)),
            Openness::Closed(Reason::OutsideHours)
        );
        assert_eq!(
            hours.at(at(tuesday, 13, 0)).to_string(),
            "closed: outside opening hours"
        );
        // Saturday morning only, Sunday never.
        assert!(hours.is_open(at(date(2026, 3, 7), 11, 0)));
        assert!(!hours.is_open(at(date(2026, 3, 7), 15, 0)));
        assert!(!hours.is_open(at(date(2026, 3, 8), 11, 0)));
    }

    #[test]
    fn holiday_closes_a_working_day() {
        let hours = office();
        // Ascension 2026 is a Thursday.
        let ascension = at(date(2026, 5, 14), 10, 0);
        assert_eq!(
            hours.at(ascension),
            Openness::Closed(Reason::Holiday("Ascension"))
        );
        assert_eq!(
            hours.at(at(date(2026, 12, 25), 10, 0)).to_string(),
            "closed: public holiday (Noël)"
        );
        // Without a calendar, the same moment is an ordinary Thursday.
        let no_calendar = Hours {
            holidays: None,
            ..office()
        };
        assert!(no_calendar.is_open(ascension));
    }

    #[test]
    fn closed_date_range_inclusive_at_both_ends() {
        let hours = office();
        // 2026-07-31 is a Friday before the range, 2026-08-17 the Monday after.
        assert!(hours.is_open(at(date(2026, 7, 31), 10, 0)));
        let first = hours.at(at(date(2026, 8, 3), 10, 0));
        assert_eq!(
            first,
            Openness::Closed(Reason::ClosedDate {
                index: 0,
                range: DateRange {
                    first: date(2026, 8, 3),
                    last: date(2026, 8, 14)
                },
            })
        );
        assert_eq!(
            first.to_string(),
            "closed: closed dates 2026-08-03..2026-08-14"
        );
        assert!(!hours.is_open(at(date(2026, 8, 10), 10, 0)));
        assert!(!hours.is_open(at(date(2026, 8, 14), 17, 0)));
        assert!(hours.is_open(at(date(2026, 8, 17), 10, 0)));
    }

    #[test]
    fn holiday_reported_before_closed_date() {
        let hours = office();
        // 2026-08-15 (Assomption) is a Saturday: extend the closure over it.
        let hours = Hours {
            closed: vec![DateRange::parse("2026-08-10..2026-08-20").expect("range")],
            ..hours
        };
        assert_eq!(
            hours.at(at(date(2026, 8, 15), 10, 0)),
            Openness::Closed(Reason::Holiday("Assomption"))
        );
    }

    #[test]
    fn extra_open_beats_holiday_and_closed_date_and_weekly_hours() {
        let mut hours = office();
        // 2026-12-26 is a Saturday; normally open 10:00-12:00, the slot opens at 09:00.
        let boxing_day = date(2026, 12, 26);
        let early = hours.at(at(boxing_day, 9, 30));
        assert_eq!(
            early,
            Openness::Open(Reason::ExtraOpen {
                index: 0,
                slot: Slot::parse("2026-12-26 09:00-12:00").expect("slot")
            })
        );
        assert_eq!(
            early.to_string(),
            "open: exceptional opening 2026-12-26 09:00-12:00"
        );
        // Opening on Christmas Day and during the summer closure.
        hours
            .extra_open
            .push(Slot::parse("2026-12-25 10:00-11:00").expect("slot"));
        hours
            .extra_open
            .push(Slot::parse("2026-08-05 15:00-16:00").expect("slot"));
        assert!(hours.is_open(at(date(2026, 12, 25), 10, 30)));
        assert_eq!(
            hours.at(at(date(2026, 12, 25), 10, 30)).reason(),
            &Reason::ExtraOpen {
                index: 1,
                slot: Slot::parse("2026-12-25 10:00-11:00").expect("slot"),
            }
        );
        // Outside the slot the holiday still closes.
        assert_eq!(
            hours.at(at(date(2026, 12, 25), 11, 0)),
            Openness::Closed(Reason::Holiday("Noël"))
        );
        assert!(hours.is_open(at(date(2026, 8, 5), 15, 0)));
        assert!(!hours.is_open(at(date(2026, 8, 5), 14, 59)));
        // An extra slot on a Sunday, outside any weekly range.
        hours
            .extra_open
            .push(Slot::parse("2026-03-08 10:00-12:00").expect("slot"));
        assert!(hours.is_open(at(date(2026, 3, 8), 11, 0)));
    }

    #[test]
    fn no_weekly_ranges_means_always_open_except_closures() {
        let hours = Hours {
            holidays: Some(HolidayCalendar::France),
            closed: vec![DateRange::parse("2026-02-02").expect("day")],
            ..Hours::default()
        };
        assert_eq!(
            hours.at(at(date(2026, 3, 8), 3, 0)),
            Openness::Open(Reason::NoWeeklyHours)
        );
        assert_eq!(
            hours.at(at(date(2026, 3, 8), 3, 0)).to_string(),
            "open: no weekly hours set"
        );
        assert!(!hours.is_open(at(date(2026, 1, 1), 12, 0)));
        assert!(!hours.is_open(at(date(2026, 2, 2), 12, 0)));
        assert!(Hours::default().is_open(at(date(2026, 12, 25), 12, 0)));
    }

    #[test]
    fn wrapping_day_range_in_hours() {
        let hours = Hours {
            open: vec![weekly("fri-mon 08:00-20:00")],
            ..Hours::default()
        };
        // 2026-03-05 is a Thursday.
        let thursday = date(2026, 3, 5);
        assert_eq!(thursday.weekday(), Weekday::Thursday);
        let open_days: Vec<bool> = (0..7)
            .map(|n| {
                let d = thursday
                    .checked_add(jiff::Span::new().days(n))
                    .expect("in range");
                hours.is_open(at(d, 12, 0))
            })
            .collect();
        // Thu Fri Sat Sun Mon Tue Wed
        assert_eq!(open_days, [false, true, true, true, true, false, false]);
    }

    #[test]
    fn midnight_end_in_hours() {
        let hours = Hours {
            open: vec![weekly("sat 20:00-24:00"), weekly("sun 00:00-02:00")],
            ..Hours::default()
        };
        let saturday = date(2026, 3, 7);
        assert!(!hours.is_open(at(saturday, 19, 59)));
        assert!(hours.is_open(at(saturday, 23, 59)));
        assert!(hours.is_open(at(date(2026, 3, 8), 0, 0)));
        assert!(!hours.is_open(at(date(2026, 3, 8), 2, 0)));
        assert!(!hours.is_open(at(date(2026, 3, 6), 23, 59)));
    }

    // ---- Time zones and DST ----

    #[test]
    fn local_time_follows_paris_offsets() {
        let tz = paris();
        assert_eq!(
            local_time(instant("2026-01-15T07:30:00Z"), &tz),
            at(date(2026, 1, 15), 8, 30)
        );
        assert_eq!(
            local_time(instant("2026-07-15T07:30:00Z"), &tz),
            at(date(2026, 7, 15), 9, 30)
        );
        // Spring forward: one minute before 01:00Z it is 01:59 CET, at 01:00Z
        // it is already 03:00 CEST.
        assert_eq!(
            local_time(instant("2026-03-29T00:59:00Z"), &tz),
            at(date(2026, 3, 29), 1, 59)
        );
        assert_eq!(
            local_time(instant("2026-03-29T01:00:00Z"), &tz),
            at(date(2026, 3, 29), 3, 0)
        );
        // Fall back: 02:30 local happens twice, an hour apart.
        assert_eq!(
            local_time(instant("2026-10-25T00:30:00Z"), &tz),
            at(date(2026, 10, 25), 2, 30)
        );
        assert_eq!(
            local_time(instant("2026-10-25T01:30:00Z"), &tz),
            at(date(2026, 10, 25), 2, 30)
        );
        // Another zone, to show nothing is Paris-specific.
        let utc = TimeZone::UTC;
        assert_eq!(
            local_time(instant("2026-03-29T01:00:00Z"), &utc),
            at(date(2026, 3, 29), 1, 0)
        );
    }

    #[test]
    fn opening_across_spring_dst_change() {
        let tz = paris();
        let hours = Hours {
            open: vec![weekly("mon-sat 09:00-18:00")],
            ..Hours::default()
        };
        let open = |text: &str| hours.is_open(local_time(instant(text), &tz));
        assert_eq!(date(2026, 3, 28).weekday(), Weekday::Saturday);
        // Saturday, winter time (UTC+1): 07:30Z is 08:30, before opening.
        assert_eq!(
            local_time(instant("2026-03-28T07:30:00Z"), &tz),
            at(date(2026, 3, 28), 8, 30)
        );
        assert!(!open("2026-03-28T07:30:00Z"));
        assert!(open("2026-03-28T08:00:00Z"));
        // 16:30Z is 17:30 local: still open; 17:00Z is 18:00: closed.
        assert!(open("2026-03-28T16:30:00Z"));
        assert!(!open("2026-03-28T17:00:00Z"));
        // Sunday of the change: closed all day.
        assert!(!open("2026-03-29T08:00:00Z"));
        // Monday, summer time (UTC+2): the same 07:30Z is 09:30, open.
        assert_eq!(
            local_time(instant("2026-03-30T07:30:00Z"), &tz),
            at(date(2026, 3, 30), 9, 30)
        );
        assert!(open("2026-03-30T07:30:00Z"));
        assert!(open("2026-03-30T07:00:00Z"));
        assert!(!open("2026-03-30T06:59:00Z"));
        // 16:00Z is 18:00 local: closed an hour earlier in UTC than on Saturday.
        assert!(open("2026-03-30T15:59:00Z"));
        assert!(!open("2026-03-30T16:00:00Z"));
    }

    #[test]
    fn opening_across_autumn_dst_change() {
        let tz = paris();
        let hours = Hours {
            open: vec![weekly("mon-sat 09:00-18:00")],
            ..Hours::default()
        };
        let open = |text: &str| hours.is_open(local_time(instant(text), &tz));
        assert_eq!(date(2026, 10, 24).weekday(), Weekday::Saturday);
        // Saturday, summer time (UTC+2): 07:30Z is 09:30, open.
        assert_eq!(
            local_time(instant("2026-10-24T07:30:00Z"), &tz),
            at(date(2026, 10, 24), 9, 30)
        );
        assert!(open("2026-10-24T07:30:00Z"));
        assert!(!open("2026-10-24T06:59:00Z"));
        assert!(open("2026-10-24T15:59:00Z"));
        assert!(!open("2026-10-24T16:00:00Z"));
        // Sunday of the change: closed.
        assert!(!open("2026-10-25T09:00:00Z"));
        // Monday, winter time (UTC+1): the same 07:30Z is 08:30, closed.
        assert_eq!(
            local_time(instant("2026-10-26T07:30:00Z"), &tz),
            at(date(2026, 10, 26), 8, 30)
        );
        assert!(!open("2026-10-26T07:30:00Z"));
        assert!(open("2026-10-26T08:00:00Z"));
        assert!(open("2026-10-26T16:59:00Z"));
        assert!(!open("2026-10-26T17:00:00Z"));
    }

    #[test]
    fn repeated_and_skipped_hours_on_dst_sundays() {
        let tz = paris();
        let hours = Hours {
            open: vec![weekly("sun 02:00-03:00")],
            ..Hours::default()
        };
        let open = |text: &str| hours.is_open(local_time(instant(text), &tz));
        // October: 02:00-03:00 local happens twice, so the range is open for
        // two real hours.
        assert!(!open("2026-10-24T23:59:00Z"));
        assert!(open("2026-10-25T00:00:00Z"));
        assert!(open("2026-10-25T01:59:00Z"));
        assert!(!open("2026-10-25T02:00:00Z"));
        // March: 02:00-03:00 local does not exist, so the range never opens.
        assert!(!open("2026-03-29T00:59:00Z"));
        assert!(!open("2026-03-29T01:00:00Z"));
    }
}
