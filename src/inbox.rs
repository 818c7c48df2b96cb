//! What a message's status means, and which calls leave one that needs a person's attention.
//!
//! Every call that reaches a company keeps its `calls` and `messages` rows. The inbox (the
//! messages listed by default) holds what someone must read or act on: a voicemail with the
//! caller's voice, a message a secretary wrote, an urgent transfer, a missed call from a
//! real number (someone rang and gave up: to call back). The rest is `filed`: kept, counted,
//! searchable, but not put in front of anyone.
//!
//! Also what the console's inbox decides without the records: what a status becomes when
//! a secretary writes the message, and the instants a day filter means in a company's own
//! time zone.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::dialplan::Category;
use crate::store::Outcome;

/// A message's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Needs attention: nobody has read it yet.
    New,
    /// Someone read it.
    Read,
    /// Someone dealt with it.
    Done,
    /// Kept for the record, never needed attention (spam refused, a greeting heard to its
    /// end, a call abandoned within seconds).
    Filed,
}

impl Status {
    /// Every status, in the order a person works through them.
    pub const ALL: [Status; 4] = [Status::New, Status::Read, Status::Done, Status::Filed];

    /// The word stored in SQLite and typed on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Read => "read",
            Status::Done => "done",
            Status::Filed => "filed",
        }
    }

    /// Reads a status word.
    pub fn parse(word: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

/// What the inbox looks at when a call ends.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    /// How the call ended.
    pub outcome: Outcome,
    /// The message's category then.
    pub category: Category,
    /// Whether the caller gave a number that can be called back.
    pub caller_has_number: bool,
    /// From the INVITE to the end, in whole seconds.
    pub seconds: u64,
}

/// The status a call's message takes when the call ends.
///
/// `missed_call_seconds`: a caller who gave up (hung up, or said nothing at the voicemail)
/// after at least this long left a missed call to return; shorter is a wrong number or a
/// change of mind.
pub fn status_at_end(call: &Ended, missed_call_seconds: u64) -> Status {
    if call.category == Category::Spam {
        return Status::Filed;
    }
    let missed = || call.caller_has_number && call.seconds >= missed_call_seconds;
    let needs_attention = match call.outcome {
        // The caller's voice is in the recording.
        Outcome::Voicemail => true,
        // An executive took it: the urgent ones are what they want to see again.
        Outcome::Transferred => call.category == Category::Urgent,
        // Someone rang and gave up, or never got through whole.
        Outcome::Abandoned | Outcome::NoMessage | Outcome::Failed | Outcome::Interrupted => {
            missed()
        }
        // A secretary took it: the message is hers to write (writing it makes it `new`).
        Outcome::Secretary => false,
        // The plan ran to its end (a greeting), or refused the call.
        Outcome::Completed | Outcome::Rejected => false,
    };
    if needs_attention {
        Status::New
    } else {
        Status::Filed
    }
}

/// The status a message takes when a secretary saves it (`current` is its status then).
///
/// Writing a message is what puts a call she took in front of people (`filed` becomes
/// `new`), unless she files it as spam; a message already read or done stays so (an edit
/// is not new news).
pub fn status_after_writing(current: Status, category: Category) -> Status {
    match (category, current) {
        (Category::Spam, _) => Status::Filed,
        (_, Status::Filed) => Status::New,
        (_, status) => status,
    }
}

/// One end of a time filter: a day (as the company lives it) or an exact instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// A calendar day, `2026-11-27`: read in each company's own time zone.
    Day(Date),
    /// An instant, RFC 3339 with its offset (`2026-11-27T09:00:00+01:00`).
    Instant(Timestamp),
}

impl When {
    /// Reads a date or an RFC 3339 instant.
    pub fn parse(text: &str) -> Option<When> {
        // jiff reads a date out of a longer datetime too: a day is exactly `YYYY-MM-DD`.
        let shaped_as_day = text.len() == 10
            && text.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if shaped_as_day {
            return text.parse::<Date>().ok().map(When::Day);
        }
        text.parse::<Timestamp>().ok().map(When::Instant)
    }

    /// The first instant it covers in `tz`: a day's local midnight (or the first instant
    /// after it, when midnight falls in a DST gap).
    pub fn start(self, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            When::Day(day) => tz.to_timestamp(day.into()).ok(),
            When::Instant(t) => Some(t),
        }
    }

    /// The first instant after it in `tz` (an exclusive bound): the next day's local
    /// midnight, so that `to = 2026-11-27` includes that whole day; an instant is its own
    /// end.
    pub fn end(self, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            When::Day(day) => When::Day(day.tomorrow().ok()?).start(tz),
            When::Instant(t) => Some(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(outcome: Outcome, category: Category, seconds: u64) -> Ended {
        Ended {
            outcome,
            category,
            caller_has_number: true,
            seconds,
        }
    }

    #[test]
    fn the_inbox_holds_what_needs_attention_and_files_the_rest() {
        use Category::*;
        use Outcome::*;
        let cases = [
            (
                ended(Voicemail, Normal, 40),
                Status::New,
                "a message with a voice",
            ),
            (ended(Voicemail, Spam, 40), Status::Filed, "spam stays out"),
            (ended(Rejected, Spam, 0), Status::Filed, "refused as spam"),
            (
                ended(Completed, Normal, 12),
                Status::Filed,
                "a greeting heard to its end",
            ),
            (
                ended(Abandoned, Normal, 2),
                Status::Filed,
                "gave up within seconds",
            ),
            (
                ended(Abandoned, Normal, 20),
                Status::New,
                "gave up after ringing: call back",
            ),
            (
                ended(NoMessage, Normal, 30),
                Status::New,
                "silent at the beep: call back",
            ),
            (
                ended(Transferred, Urgent, 90),
                Status::New,
                "an urgent transfer",
            ),
            (
                ended(Transferred, Normal, 90),
                Status::Filed,
                "a routine transfer",
            ),
            (
                ended(Secretary, Normal, 90),
                Status::Filed,
                "taken, nothing written yet",
            ),
            (
                ended(Interrupted, Normal, 30),
                Status::New,
                "cut by a restart: call back",
            ),
        ];
        for (call, want, why) in cases {
            assert_eq!(status_at_end(&call, 5), want, "{why}");
        }
    }

    #[test]
    fn a_withheld_number_cannot_be_called_back_but_its_voicemail_still_counts() {
        let mut call = ended(Outcome::Abandoned, Category::Normal, 60);
        call.caller_has_number = false;
        assert_eq!(status_at_end(&call, 5), Status::Filed);
        call.outcome = Outcome::Voicemail;
        assert_eq!(status_at_end(&call, 5), Status::New);
    }

    #[test]
    fn writing_a_message_puts_it_in_front_of_people_unless_it_is_spam() {
        use Category::*;
        assert_eq!(status_after_writing(Status::Filed, Normal), Status::New);
        assert_eq!(status_after_writing(Status::New, Urgent), Status::New);
        assert_eq!(
            status_after_writing(Status::Done, Low),
            Status::Done,
            "an edit of a message dealt with does not reopen it"
        );
        assert_eq!(status_after_writing(Status::Read, Normal), Status::Read);
        assert_eq!(status_after_writing(Status::New, Spam), Status::Filed);
        assert_eq!(status_after_writing(Status::Done, Spam), Status::Filed);
    }

    #[test]
    fn a_day_is_read_in_the_companys_time_zone() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let day = When::parse("2026-11-27").unwrap();
        assert_eq!(
            day.start(&paris).unwrap().to_string(),
            "2026-11-26T23:00:00Z",
            "midnight in Paris is 23:00 UTC the day before in winter"
        );
        assert_eq!(day.end(&paris).unwrap().to_string(), "2026-11-27T23:00:00Z");
        assert_eq!(
            day.start(&TimeZone::UTC).unwrap().to_string(),
            "2026-11-27T00:00:00Z"
        );
        // The day the clocks go forward has 23 hours.
        let spring = When::parse("2026-03-29").unwrap();
        let seconds =
            spring.end(&paris).unwrap().as_second() - spring.start(&paris).unwrap().as_second();
        assert_eq!(seconds, 23 * 3600);
    }

    #[test]
    fn an_instant_is_exact_and_anything_else_is_refused() {
        let t = When::parse("2026-11-27T09:30:00+01:00").unwrap();
        let paris = TimeZone::get("Europe/Paris").unwrap();
        assert_eq!(t.start(&paris), t.end(&TimeZone::UTC));
        assert_eq!(t.start(&paris).unwrap().to_string(), "2026-11-27T08:30:00Z");
        for bad in [
            "",
            "27/11/2026",
            "2026-13-01",
            "2026-11-27T09:30",
            "yesterday",
            "9999-12-31x",
        ] {
            assert_eq!(When::parse(bad), None, "{bad}");
        }
        assert_eq!(
            When::parse("9999-12-31").unwrap().end(&TimeZone::UTC),
            None,
            "no day after the last one"
        );
    }

    #[test]
    fn status_words_read_back() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("lost"), None);
    }
}
