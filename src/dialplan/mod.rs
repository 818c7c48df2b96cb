//! Dial plans: one TOML file per client company, loaded into an immutable [`Plans`]
//! snapshot that calls read and never change. The language is documented for operators
//! in `docs/dialplan.md`.
//!
//! Pure: `load` reads files into types that cannot express an invalid plan; `decide`
//! picks a route from (plan, call facts, instant) and says why.

mod contacts;
mod decide;
mod load;
mod reach;
mod spam;

pub use contacts::{Caller, Contacts, ListId, Membership};
pub use decide::{CallFacts, Decision, RouteVerdict, decide, explain};
#[cfg(test)]
pub(crate) use load::parse_str;
pub use load::{PlanError, load_dir, load_files};
pub use reach::{ReachEntry, allowed_refer, direct_address, screens_transfers_to};
pub use spam::{
    ARCEP_RANGES, BLOCKED, BUILT_IN_ROUTE, BUILT_IN_STATUS, BuiltInLists, TELEMARKETING,
    Telemarketing, for_blocked, in_telemarketing_range,
};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::number::{Country, Dialled, E164};
use crate::schedule::{Hours, WeeklyRange};

/// A client company's identifier, as written in its plan (`acme`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CompanyId(pub String);

impl std::fmt::Display for CompanyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the executive should read a call's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Needs the executive now.
    Urgent,
    /// An ordinary message.
    #[default]
    Normal,
    /// Can wait.
    Low,
    /// Set aside.
    Spam,
}

impl Category {
    /// The word stored in SQLite and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Urgent => "urgent",
            Category::Normal => "normal",
            Category::Low => "low",
            Category::Spam => "spam",
        }
    }

    /// Reads the stored word back.
    pub fn parse(word: &str) -> Option<Category> {
        [
            Category::Urgent,
            Category::Normal,
            Category::Low,
            Category::Spam,
        ]
        .into_iter()
        .find(|c| c.as_str() == word)
    }
}

/// A sound, named by its path under the sounds directory (`acme/welcome.wav`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SoundName(pub String);

/// The name of a step list (`[steplists]`), the target of `goto` and menu choices.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepListName(pub String);

/// An executive's identifier in a plan (`marie`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecutiveId(pub String);

/// How the `secretary` step offers a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Every available secretary rings at once; the first to answer wins.
    #[default]
    RingAll,
    /// The secretary idle for the longest rings first.
    LongestIdle,
}

/// How `transfer` calls an executive's reach list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReachMode {
    /// One after the other, each with the step's timeout.
    #[default]
    Sequential,
    /// All at once.
    Simultaneous,
}

/// Where a transfer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// One of the company's executives (their reach list).
    Executive(ExecutiveId),
    /// A SIP URI the plan names.
    Uri(String),
}

/// A menu: prompt, then a digit chooses a step list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    /// Played before waiting for a digit.
    pub prompt: SoundName,
    /// Digit → step list.
    pub choices: BTreeMap<char, StepListName>,
    /// Seconds to wait for a digit after the prompt.
    pub timeout: u32,
    /// Further attempts after a timeout or a wrong digit.
    pub retries: u32,
    /// Played after a timeout or a wrong digit, before trying again.
    pub invalid: Option<SoundName>,
}

/// One thing a call does, in order. A step that cannot complete falls through to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send 180 Ringing and wait before answering.
    Ring {
        /// How long to ring.
        seconds: u32,
    },
    /// Answer if needed, then play a sound `times` times.
    Play {
        /// The sound.
        sound: SoundName,
        /// How many times in a row (at least 1).
        times: u32,
    },
    /// A keypad menu.
    Menu(Menu),
    /// Offer the call to secretaries.
    Secretary {
        /// Seconds before giving up.
        timeout: u32,
        /// Only these secretaries (empty: all who serve the company).
        who: Vec<String>,
        /// Or this group.
        group: Option<String>,
        /// How to ring them.
        strategy: Strategy,
        /// Seconds after which every secretary is offered the call, when set.
        overflow_after: Option<u32>,
    },
    /// Call an executive or a URI.
    Transfer {
        /// Where.
        to: TransferTarget,
        /// Seconds per attempt.
        timeout: u32,
        /// Announce the call and let the executive accept (1) or refuse (2).
        screening: bool,
        /// Reach list order.
        mode: ReachMode,
    },
    /// Record a message.
    Voicemail {
        /// Played before the beep (default: the company language's prompt).
        prompt: Option<SoundName>,
        /// Longest recording, seconds.
        max_seconds: u32,
    },
    /// Refuse (before the answer) or end the call.
    Reject {
        /// SIP status, 400–699.
        code: u16,
    },
    /// End the call.
    Hangup,
    /// Continue with a step list (never returns).
    Goto(StepListName),
    /// File the message under this category from now on.
    Category(Category),
}

/// A route's condition. `Always` is a route without `when`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Matches every call.
    Always,
    /// The caller is in a contact list.
    CallerIn(ListId),
    /// The caller withheld their number.
    CallerAnonymous,
    /// The caller's number matches an exact number or a `prefix*`.
    CallerMatches(contacts::Pattern),
    /// The call came in on this number.
    Dialled(E164),
    /// The office is open (true) or closed (false).
    Open(bool),
    /// The local time is within one of these ranges.
    At(Vec<WeeklyRange>),
    /// At least one secretary is available (true) or none is (false).
    SecretaryAvailable(bool),
    /// Every condition holds.
    All(Vec<Condition>),
    /// At least one holds.
    Any(Vec<Condition>),
    /// It does not hold.
    Not(Box<Condition>),
}

/// A route: when it applies, what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The operator's name for it, recorded with the call.
    pub name: String,
    /// When it applies.
    pub when: Condition,
    /// What happens, in order.
    pub steps: Vec<Step>,
    /// How the call's message is filed (normal when unset).
    pub category: Category,
    /// Its callers' place in the secretaries' queue: higher first (0 to 9, default 0).
    pub priority: u8,
}

/// `[card]`: what the secretary sees when this company's call rings her, and the extra
/// things its messages must say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Card {
    /// What to say, what never to promise, whom to call for what.
    pub instructions: Option<String>,
    /// Extra message fields, in order.
    pub fields: Vec<CardField>,
}

/// One extra field of a company's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardField {
    /// Its key in the stored message (`a-z0-9_`).
    pub name: String,
    /// What the form shows.
    pub label: String,
    /// Whether a message cannot be saved without it.
    pub required: bool,
}

/// What a caller waiting in the secretaries' queue hears once answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Hold music, looped (`queue_sound`, default `default/hold.wav`).
    pub music: SoundName,
    /// An announcement and how often it interrupts the music (`queue_announcement`,
    /// `queue_announce_every`), when set.
    pub announcement: Option<(SoundName, std::time::Duration)>,
}

/// An executive of a company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executive {
    /// Display name.
    pub name: String,
    /// Where to call them, in order.
    pub reach: Vec<ReachEntry>,
    /// When they accept urgent calls (empty: always).
    pub hours: Vec<WeeklyRange>,
    /// Where their messages are e-mailed, if anywhere.
    pub email: Option<crate::delivery::rules::EmailAddress>,
    /// How their messages reach them, by category (`deliver`); a category without a
    /// rule stays on the console.
    pub deliver: Vec<crate::delivery::rules::DeliveryRule>,
    /// The slots secretaries may book for them (`agenda`), if any.
    pub agenda: Option<crate::agenda::Agenda>,
}

impl Executive {
    /// Whether they take urgent calls at this local time (always, without `hours`).
    pub fn accepts_at(&self, local: jiff::civil::DateTime) -> bool {
        self.hours.is_empty() || self.hours.iter().any(|r| r.contains(local))
    }
}

/// One client company's plan.
#[derive(Debug, Clone)]
pub struct Company {
    /// Identifier.
    pub id: CompanyId,
    /// Display name (`ACME Plomberie`).
    pub name: String,
    /// The numbers that reach it.
    pub numbers: Vec<E164>,
    /// Its country, for national number forms.
    pub country: Country,
    /// IANA time zone of its office.
    pub timezone: jiff::tz::TimeZone,
    /// The time zone's name as written.
    pub timezone_name: String,
    /// Language of its prompts (`fr`, `en`).
    pub language: String,
    /// What the secretary says on picking up.
    pub answer_as: String,
    /// Notes shown to the secretary.
    pub notes: Option<String>,
    /// Executives by id.
    pub executives: BTreeMap<ExecutiveId, Executive>,
    /// Who gets the messages that name no executive: `default_executive`, else the first
    /// executive in the file (none when the company has no executive).
    pub default_executive: Option<ExecutiveId>,
    /// Contact lists.
    pub contacts: Contacts,
    /// The built-in lists among them (`blocked`, `telemarketing`).
    pub lists: BuiltInLists,
    /// What it does with callers from the telemarketing ranges.
    pub telemarketing: Telemarketing,
    /// Opening hours.
    pub hours: Hours,
    /// Routes in order; the first that matches wins. The last is always the built-in
    /// refusal of blocked callers ([`BUILT_IN_ROUTE`]).
    pub routes: Vec<Route>,
    /// Named step lists.
    pub steplists: BTreeMap<StepListName, Vec<Step>>,
    /// What a caller waiting for a secretary hears.
    pub queue: QueueSettings,
    /// What the secretary's console shows and asks (`[card]`).
    pub card: Card,
    /// The number presented on calls placed for the company (`[company] caller_id`, one
    /// of its `numbers`); None: it places no calls.
    pub caller_id: Option<E164>,
    /// The file it came from.
    pub file: PathBuf,
}

/// Every company's plan: an immutable snapshot, swapped whole on reload.
#[derive(Debug, Default)]
pub struct Plans {
    companies: Vec<Arc<Company>>,
    by_number: HashMap<E164, Arc<Company>>,
    by_national: HashMap<String, Arc<Company>>,
}

impl Plans {
    /// Builds the lookup tables. Callers have already refused duplicate numbers.
    fn new(companies: Vec<Company>) -> Plans {
        let companies: Vec<Arc<Company>> = companies.into_iter().map(Arc::new).collect();
        let mut by_number = HashMap::new();
        let mut by_national = HashMap::new();
        for company in &companies {
            for number in &company.numbers {
                by_number.insert(number.clone(), Arc::clone(company));
                if let Some(national) = company.country.national_form(number) {
                    by_national.insert(national, Arc::clone(company));
                }
            }
        }
        Plans {
            companies,
            by_number,
            by_national,
        }
    }

    /// The company a dialled number reaches, in international or national form.
    pub fn lookup(&self, dialled: &Dialled) -> Option<&Arc<Company>> {
        match dialled {
            Dialled::International(n) => self.by_number.get(n),
            Dialled::National(n) => self.by_national.get(n),
        }
    }

    /// A company by id.
    pub fn company(&self, id: &str) -> Option<&Arc<Company>> {
        self.companies.iter().find(|c| c.id.0 == id)
    }

    /// All companies, in file order.
    pub fn companies(&self) -> &[Arc<Company>] {
        &self.companies
    }

    /// Every sound any plan uses, including the shipped ones its voicemail steps play.
    pub fn sounds(&self) -> Vec<SoundName> {
        let mut all: Vec<SoundName> = self
            .companies
            .iter()
            .flat_map(|c| {
                let steps = c.routes.iter().flat_map(|r| r.steps.iter());
                let steps: Vec<&Step> = steps.chain(c.steplists.values().flatten()).collect();
                let queued = steps.iter().any(|s| matches!(s, Step::Secretary { .. }));
                let queue = queued
                    .then(|| {
                        std::iter::once(c.queue.music.clone())
                            .chain(c.queue.announcement.iter().map(|(s, _)| s.clone()))
                    })
                    .into_iter()
                    .flatten();
                let step_sounds: Vec<SoundName> = steps
                    .into_iter()
                    .flat_map(|s| step_sounds(s, &c.language))
                    .collect();
                step_sounds.into_iter().chain(queue)
            })
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// A sound shipped under `sounds/default/`, in a language (`fr`, `en`; others use English):
/// the voicemail prompt, the beep and the goodbye that a `voicemail` step plays, and the
/// ringback a caller already answered hears while a secretary or an executive is rung.
pub fn default_sound(what: &str, language: &str) -> SoundName {
    let language = if language == "fr" { "fr" } else { "en" };
    if what == "beep" || what == "ringback" {
        SoundName(format!("default/{what}.wav"))
    } else {
        SoundName(format!("default/{what}-{language}.wav"))
    }
}

fn step_sounds(step: &Step, language: &str) -> Vec<SoundName> {
    match step {
        Step::Play { sound, .. } => vec![sound.clone()],
        Step::Menu(m) => std::iter::once(&m.prompt)
            .chain(m.invalid.as_ref())
            .cloned()
            .collect(),
        Step::Voicemail { prompt, .. } => {
            let mut v = vec![
                default_sound("beep", language),
                default_sound("goodbye", language),
            ];
            v.push(
                prompt
                    .clone()
                    .unwrap_or_else(|| default_sound("voicemail", language)),
            );
            v
        }
        Step::Secretary { .. } => vec![default_sound("ringback", language)],
        Step::Transfer { screening, .. } => {
            let mut v = vec![default_sound("ringback", language)];
            if *screening {
                v.push(default_sound("screening", language));
            }
            v
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_executive_takes_urgent_calls_only_within_their_hours() {
        let marie = Executive {
            name: "Marie".into(),
            reach: vec![ReachEntry::Number("+33611111111".into())],
            hours: vec![crate::schedule::WeeklyRange::parse("mon-sat 07:00-21:00").unwrap()],
            email: None,
            deliver: Vec::new(),
            agenda: None,
        };
        // 2026-11-28 is a Saturday.
        assert!(marie.accepts_at(jiff::civil::date(2026, 11, 28).at(20, 59, 0, 0)));
        assert!(!marie.accepts_at(jiff::civil::date(2026, 11, 28).at(21, 0, 0, 0)));
        assert!(
            !marie.accepts_at(jiff::civil::date(2026, 11, 29).at(12, 0, 0, 0)),
            "Sunday"
        );
        let always = Executive {
            hours: vec![],
            ..marie
        };
        assert!(always.accepts_at(jiff::civil::date(2026, 11, 29).at(3, 0, 0, 0)));
    }
}
