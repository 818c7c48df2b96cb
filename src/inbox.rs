//! What a message's status means, and which calls leave one that needs a person's attention.
//!
//! Every call that reaches a company keeps its `calls` and `messages` rows. The inbox (the
//! messages listed by default) holds what someone must read or act on: a voicemail with the
//! caller's voice, a message a secretary wrote, an urgent transfer, a missed call from a
//! real number (someone rang and gave up: to call back). The rest is `filed`: kept, counted,
//! searchable, but not put in front of anyone.

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
    fn status_words_read_back() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("lost"), None);
    }
}
