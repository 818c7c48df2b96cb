//! Reading `dialplans/*.toml` into [`Plans`], refusing any plan that is wrong with
//! `file:line:column: what is wrong; what was expected`, every error at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor, value::MapAccessDeserializer};
use toml::Spanned;

use super::contacts::{Contacts, Pattern};
use super::spam::{self, BLOCKED, BuiltInLists, TELEMARKETING, Telemarketing};
use super::{
    Card, CardField, Category, Company, CompanyId, Condition, Executive, ExecutiveId, Menu, Plans,
    QueueSettings, ReachEntry, ReachMode, Route, SoundName, Step, StepListName, Strategy,
    TransferTarget,
};
use crate::delivery::rules::{Channel, DeliveryRule, EmailAddress, When};
use crate::number::{Country, E164};
use crate::schedule::{DateRange, HolidayCalendar, Hours, Slot, WeeklyRange};

/// One thing wrong in a plan, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when the error is about the whole file or directory).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // About the whole file or directory (cannot read it, no plan in it): no position.
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for PlanError {}

/// Longest ring we accept before answering; a trunk gives up long before (RFC 3261 Timer C is 3 min).
const MAX_RING_SECONDS: u32 = 120;
/// Longest any step may wait (secretary, transfer, menu): beyond, the caller has gone.
const MAX_WAIT_SECONDS: u32 = 600;
/// Longest voicemail recording.
const MAX_VOICEMAIL_SECONDS: u32 = 600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    company: RawCompany,
    #[serde(default)]
    executives: BTreeMap<String, Spanned<RawExecutive>>,
    #[serde(default)]
    contacts: BTreeMap<String, Spanned<Vec<Spanned<RawContact>>>>,
    #[serde(default)]
    hours: Option<RawHours>,
    #[serde(default, rename = "route")]
    routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    steplists: BTreeMap<String, Spanned<Vec<Spanned<RawStep>>>>,
    #[serde(default)]
    card: Option<Spanned<RawCard>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCard {
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    fields: Vec<Spanned<RawCardField>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCardField {
    name: String,
    label: String,
    #[serde(default)]
    required: bool,
}

/// Only the `[company]` table of a plan whose other parts do not parse: enough to check
/// its id and numbers against the other plans in the same run.
#[derive(Deserialize)]
struct CompanyOnly {
    company: RawCompany,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompany {
    id: Spanned<String>,
    name: String,
    numbers: Spanned<Vec<Spanned<String>>>,
    #[serde(default = "default_country")]
    country: Spanned<String>,
    #[serde(default = "default_timezone")]
    timezone: Spanned<String>,
    #[serde(default = "default_language")]
    language: String,
    answer_as: Option<String>,
    notes: Option<String>,
    /// Hold music for callers waiting for a secretary.
    queue_sound: Option<Spanned<String>>,
    /// Played between the music, every `queue_announce_every` seconds.
    queue_announcement: Option<Spanned<String>>,
    queue_announce_every: Option<Spanned<u32>>,
    /// What to do with callers from ARCEP's telemarketing ranges.
    #[serde(default)]
    telemarketing: Telemarketing,
    /// Who gets the messages that name no executive.
    default_executive: Option<Spanned<String>>,
    /// The number presented on calls placed for the company (one of `numbers`).
    caller_id: Option<Spanned<String>>,
}

fn default_country() -> Spanned<String> {
    Spanned::new(0..0, "FR".into())
}
fn default_timezone() -> Spanned<String> {
    Spanned::new(0..0, "Europe/Paris".into())
}
fn default_language() -> String {
    "fr".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecutive {
    name: String,
    reach: Vec<Spanned<String>>,
    #[serde(default)]
    hours: Vec<Spanned<String>>,
    email: Option<Spanned<String>>,
    #[serde(default)]
    deliver: Vec<Spanned<RawRule>>,
    agenda: Option<Spanned<RawAgenda>>,
}

/// `agenda = { slots = ["mon-fri 09:00-12:00"], length = 30, buffer = 10,
/// needs_confirmation = true }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgenda {
    slots: Vec<Spanned<String>>,
    #[serde(default = "default_agenda_length")]
    length: Spanned<u16>,
    #[serde(default = "default_agenda_buffer")]
    buffer: Spanned<u16>,
    #[serde(default = "default_needs_confirmation")]
    needs_confirmation: bool,
}

fn default_agenda_length() -> Spanned<u16> {
    Spanned::new(0..0, 30)
}
fn default_agenda_buffer() -> Spanned<u16> {
    Spanned::new(0..0, 0)
}
fn default_needs_confirmation() -> bool {
    true
}

/// `{ category = "urgent", to = ["email", "webhook"], when = "now" }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    category: Category,
    to: Vec<Spanned<String>>,
    when: Spanned<String>,
}

/// `"+33612345678"` or `{ number = "+33612345678", name = "Jean Dupont" }`.
struct RawContact {
    number: String,
    name: Option<String>,
}

impl<'de> Deserialize<'de> for RawContact {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            number: String,
            name: Option<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawContact;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number such as \"+33612345678\", a prefix such as \"+33899*\", \"anonymous\", or { number = \"…\", name = \"…\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawContact, E> {
                Ok(RawContact {
                    number: v.to_string(),
                    name: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawContact, A::Error> {
                let t = Table::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RawContact {
                    number: t.number,
                    name: t.name,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHours {
    #[serde(default)]
    open: Vec<Spanned<String>>,
    holidays: Option<Spanned<String>>,
    #[serde(default)]
    closed: Vec<Spanned<String>>,
    #[serde(default)]
    open_extra: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    when: Option<Spanned<RawWhen>>,
    steps: Vec<Spanned<RawStep>>,
    category: Option<Category>,
    priority: Option<Spanned<u8>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    caller: Option<Spanned<String>>,
    caller_matches: Option<Spanned<String>>,
    dialled: Option<Spanned<String>>,
    open: Option<bool>,
    at: Option<Vec<Spanned<String>>>,
    secretary_available: Option<bool>,
    all: Option<Vec<Spanned<RawWhen>>>,
    any: Option<Vec<Spanned<RawWhen>>>,
    not: Option<Box<Spanned<RawWhen>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum RawStep {
    Ring(u32),
    Play(RawPlay),
    Menu(RawMenu),
    Secretary(RawSecretary),
    Transfer(RawTransfer),
    Voicemail(RawVoicemail),
    Reject(RawReject),
    Hangup(Empty),
    Goto(String),
    Category(Category),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMenu {
    prompt: String,
    choices: BTreeMap<String, String>,
    #[serde(default = "default_menu_timeout")]
    timeout: u32,
    #[serde(default = "default_menu_retries")]
    retries: u32,
    invalid: Option<String>,
}
fn default_menu_timeout() -> u32 {
    5
}
fn default_menu_retries() -> u32 {
    2
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretary {
    #[serde(default = "default_secretary_timeout")]
    timeout: u32,
    #[serde(default)]
    who: Vec<String>,
    group: Option<String>,
    #[serde(default)]
    strategy: Strategy,
    overflow_after: Option<u32>,
}
fn default_secretary_timeout() -> u32 {
    30
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransfer {
    to: String,
    #[serde(default = "default_transfer_timeout")]
    timeout: u32,
    #[serde(default)]
    screening: bool,
    #[serde(default)]
    mode: ReachMode,
}
fn default_transfer_timeout() -> u32 {
    20
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVoicemail {
    prompt: Option<String>,
    #[serde(default = "default_voicemail_seconds")]
    max_seconds: u32,
}
fn default_voicemail_seconds() -> u32 {
    120
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReject {
    #[serde(default = "default_reject_code")]
    code: u16,
}
fn default_reject_code() -> u16 {
    603
}

/// `play = "acme/welcome.wav"` or `play = { sound = "acme/welcome.wav", times = 2 }`.
struct RawPlay {
    sound: String,
    times: u32,
}

impl<'de> Deserialize<'de> for RawPlay {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            sound: String,
            #[serde(default = "one")]
            times: u32,
        }
        fn one() -> u32 {
            1
        }
        struct PlayVisitor;
        impl<'de> Visitor<'de> for PlayVisitor {
            type Value = RawPlay;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sound path such as \"acme/welcome.wav\", or { sound = \"acme/welcome.wav\", times = 2 }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPlay, E> {
                Ok(RawPlay {
                    sound: v.to_string(),
                    times: 1,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawPlay, A::Error> {
                let t = Table::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RawPlay {
                    sound: t.sound,
                    times: t.times,
                })
            }
        }
        d.deserialize_any(PlayVisitor)
    }
}

/// Turns byte offsets into line and column for one file, and collects errors.
struct Checker<'a> {
    file: &'a Path,
    source: &'a str,
    /// Where sounds must exist; `None` only in unit tests of other modules.
    sounds: Option<&'a Path>,
    errors: Vec<PlanError>,
}

impl Checker<'_> {
    fn at(&self, span: Range<usize>, message: impl Into<String>) -> PlanError {
        let start = span.start.min(self.source.len());
        let before = &self.source[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        PlanError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let e = self.at(span, message);
        self.errors.push(e);
    }

    fn sound(&mut self, span: Range<usize>, name: &str) -> Option<SoundName> {
        let path = Path::new(name);
        if name.is_empty()
            || path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            self.error(span, format!("sound `{name}` must be a relative path inside the sounds directory, such as \"acme/welcome.wav\""));
            None
        } else if let Some(dir) = self.sounds
            && !dir.join(path).is_file()
        {
            self.error(
                span,
                format!(
                    "sound `{name}` not found; expected a WAV file at {}",
                    dir.join(path).display()
                ),
            );
            None
        } else {
            Some(SoundName(name.to_string()))
        }
    }
}

/// Loads every `*.toml` in `dir` (sorted by name). Sounds are checked under `sounds`.
pub fn load_dir(dir: &Path, sounds: &Path) -> Result<Plans, Vec<PlanError>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => {
            return Err(vec![whole(
                dir,
                format!("cannot read the dial plan directory: {e}"),
            )]);
        }
    };
    if files.is_empty() {
        return Err(vec![whole(
            dir,
            "no dial plan (*.toml) in this directory; expected one file per client company",
        )]);
    }
    files.sort();
    load_files(&files, sounds)
}

fn whole(path: &Path, message: impl Into<String>) -> PlanError {
    PlanError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: message.into(),
    }
}

/// Loads the given plan files together (numbers and ids must be unique across them).
/// Every error is listed at once: a plan with errors elsewhere still takes part in the
/// check of ids and numbers across files, as long as its `[company]` table parses.
pub fn load_files(files: &[PathBuf], sounds: &Path) -> Result<Plans, Vec<PlanError>> {
    let mut errors = Vec::new();
    let mut companies = Vec::new();
    let mut claimed = Vec::new();
    for file in files {
        match std::fs::read_to_string(file) {
            Ok(source) => {
                let (company, claims) = load_one(file, &source, Some(sounds));
                match company {
                    Ok(company) => companies.push(company),
                    Err(mut e) => errors.append(&mut e),
                }
                claimed.extend(claims);
            }
            Err(e) => errors.push(whole(file, format!("cannot read: {e}"))),
        }
    }

    // Across files: ids and numbers (also in national form) must each belong to one company.
    let mut ids: HashMap<&CompanyId, &PlanError> = HashMap::new();
    let mut numbers: HashMap<String, (&CompanyId, &PlanError)> = HashMap::new();
    for claims in &claimed {
        let id_at = &claims.id_at;
        if let Some(there) = ids.insert(&claims.id, id_at) {
            errors.push(PlanError {
                message: format!(
                    "company id `{}` is also used in {}:{}:{}; expected one id per company",
                    claims.id,
                    there.file.display(),
                    there.line,
                    there.column
                ),
                ..id_at.clone()
            });
        }
        for (number, here) in &claims.numbers {
            let keys = std::iter::once(number.to_string())
                .chain(claims.country.and_then(|c| c.national_form(number)));
            for key in keys {
                if let Some((other, there)) = numbers.get(&key) {
                    if *other == &claims.id {
                        continue;
                    }
                    errors.push(PlanError {
                        message: format!(
                            "number {key} is claimed by company `{other}` ({}:{}:{}) and by company `{}`; expected each number in one plan only",
                            there.file.display(),
                            there.line,
                            there.column,
                            claims.id
                        ),
                        ..here.clone()
                    });
                    break;
                }
                numbers.insert(key, (&claims.id, here));
            }
        }
    }
    // A number that reaches one of our companies would bring the transfer back to this
    // server, which would transfer it again: one INVITE would become hundreds of calls.
    for claims in &claimed {
        for (number, here) in &claims.reach {
            if let Some((owner, _)) = numbers.get(&number.to_string()) {
                errors.push(PlanError {
                    message: format!(
                        "reach {number} is a number of company `{owner}` on this server: the call would loop back here; expected a number or URI outside Permanence"
                    ),
                    ..here.clone()
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(Plans::new(companies))
    } else {
        errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        Err(errors)
    }
}

/// What a plan claims across files: its company id and the numbers that parsed, each with
/// where it is written. Kept even when the rest of the plan has errors.
struct Claims {
    id: CompanyId,
    id_at: PlanError,
    /// National forms are compared too when the country is known.
    country: Option<Country>,
    numbers: Vec<(E164, PlanError)>,
    /// Numbers its executives are reached at (through the trunk).
    reach: Vec<(E164, PlanError)>,
}

fn claims(
    ck: &Checker,
    c: &RawCompany,
    executives: &BTreeMap<String, Spanned<RawExecutive>>,
) -> Claims {
    let country = Country::from_code(c.country.get_ref());
    let mut numbers: Vec<(E164, PlanError)> = Vec::new();
    for n in c.numbers.get_ref() {
        if let Some(number) = E164::parse(n.get_ref())
            && !numbers.iter().any(|(m, _)| *m == number)
        {
            numbers.push((number, ck.at(n.span(), "")));
        }
    }
    let reach = executives
        .values()
        .flat_map(|e| &e.get_ref().reach)
        .filter_map(|r| {
            let text = r.get_ref();
            let number = match text.strip_prefix("tel:") {
                Some(n) => E164::parse(n),
                None => Pattern::parse(text, country?).and_then(|p| match p {
                    Pattern::Exact(n) => Some(n),
                    Pattern::Prefix(_) => None,
                }),
            }?;
            Some((number, ck.at(r.span(), "")))
        })
        .collect();
    Claims {
        id: CompanyId(c.id.get_ref().clone()),
        id_at: ck.at(c.id.span(), ""),
        country,
        numbers,
        reach,
    }
}

/// A plan from text, without checking that its sounds exist: for other modules' tests.
#[cfg(test)]
pub(crate) fn parse_str(source: &str) -> Result<Company, Vec<PlanError>> {
    load_one(Path::new("test.toml"), source, None).0
}

/// Parses and checks one file; also says what it claims across files, if its `[company]`
/// table parses.
fn load_one(
    file: &Path,
    source: &str,
    sounds: Option<&Path>,
) -> (Result<Company, Vec<PlanError>>, Option<Claims>) {
    let ck = Checker {
        file,
        source,
        sounds,
        errors: Vec::new(),
    };
    match toml::from_str::<RawPlan>(source) {
        Ok(raw) => {
            let claims = claims(&ck, &raw.company, &raw.executives);
            (check_plan(ck, raw), Some(claims))
        }
        Err(e) => {
            let message = e.message().trim().replace('\n', " ");
            let error = ck.at(e.span().unwrap_or(0..0), message);
            let claims = toml::from_str::<CompanyOnly>(source)
                .ok()
                .map(|only| claims(&ck, &only.company, &BTreeMap::new()));
            (Err(vec![error]), claims)
        }
    }
}

/// Checks a parsed plan into a company, or every error in it.
fn check_plan(mut ck: Checker, raw: RawPlan) -> Result<Company, Vec<PlanError>> {
    let file = ck.file;
    let c = raw.company;

    let id = c.id.get_ref();
    if id.is_empty()
        || !id
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_')
    {
        ck.error(
            c.id.span(),
            format!("invalid company id `{id}`; expected lower-case letters, digits, `-` or `_`"),
        );
    }
    let country = Country::from_code(c.country.get_ref());
    if country.is_none() {
        ck.error(
            c.country.span(),
            format!(
                "unknown country `{}`; expected one of {}",
                c.country.get_ref(),
                Country::known_codes()
            ),
        );
    }
    let country = country.unwrap_or(Country {
        code: "FR",
        calling_code: "33",
        trunk_prefix: Some("0"),
    });
    let timezone = match jiff::tz::TimeZone::get(c.timezone.get_ref()) {
        Ok(tz) => tz,
        Err(_) => {
            ck.error(
                c.timezone.span(),
                format!(
                    "unknown time zone `{}`; expected an IANA name such as \"Europe/Paris\"",
                    c.timezone.get_ref()
                ),
            );
            jiff::tz::TimeZone::UTC
        }
    };

    let mut numbers = Vec::new();
    let mut listed = BTreeSet::new();
    if c.numbers.get_ref().is_empty() {
        ck.error(
            c.numbers.span(),
            "no number; expected at least one E.164 number such as \"+33180000001\"",
        );
    }
    for n in c.numbers.get_ref() {
        match E164::parse(n.get_ref()) {
            Some(number) => {
                if !listed.insert(number.clone()) {
                    ck.error(n.span(), format!("number {number} is listed twice"));
                }
                numbers.push(number);
            }
            None => ck.error(
                n.span(),
                format!(
                    "`{}` is not an international number; expected E.164 such as \"+33180000001\"",
                    n.get_ref()
                ),
            ),
        }
    }

    // Executives.
    let mut executives = BTreeMap::new();
    for (eid, raw) in &raw.executives {
        let span = raw.span();
        let raw = raw.get_ref();
        if raw.reach.is_empty() {
            ck.error(
                span.clone(),
                format!("executive `{eid}` has no reach; expected SIP URIs or numbers to call"),
            );
        }
        let mut reach = Vec::new();
        for r in &raw.reach {
            let text = r.get_ref();
            if let Some(entry) = ReachEntry::parse(text) {
                reach.push(entry);
            } else if let Some(n) = Pattern::parse(text, country).and_then(|p| match p {
                Pattern::Exact(n) => Some(n),
                Pattern::Prefix(_) => None,
            }) {
                reach.push(ReachEntry::Number(n.to_string()));
            } else {
                ck.error(r.span(), format!("`{text}` is not reachable; expected a SIP URI (\"sip:marie@example.com\"), a number, or \"user:NAME\" for the phones an `[[executives]]` account registers"));
            }
        }
        let hours = weekly(&mut ck, &raw.hours);
        let (email, deliver) = delivery(&mut ck, eid, raw);
        let agenda = raw.agenda.as_ref().map(|a| agenda(&mut ck, eid, a));
        executives.insert(
            ExecutiveId(eid.clone()),
            Executive {
                name: raw.name.clone(),
                reach,
                hours,
                email,
                deliver,
                agenda,
            },
        );
    }
    let default_executive = default_executive(&mut ck, &c, &raw.executives);

    // Contacts.
    let mut contacts = Contacts::default();
    for (list, entries) in &raw.contacts {
        if list == TELEMARKETING {
            ck.error(
                entries.span(),
                format!("`{TELEMARKETING}` is a built-in list (ARCEP's telemarketing ranges; see `telemarketing` in [company]); expected another name for this list"),
            );
            continue;
        }
        let id = contacts.list(list);
        for entry in entries.get_ref() {
            let e = entry.get_ref();
            if e.number.eq_ignore_ascii_case("anonymous") {
                contacts.add_anonymous(id);
            } else if let Some(p) = Pattern::parse(&e.number, country) {
                contacts.add(id, p, e.name.clone());
            } else {
                ck.error(
                    entry.span(),
                    format!("`{}` is not a number; expected \"+33612345678\", a prefix \"+33899*\" or \"anonymous\"", e.number),
                );
            }
        }
    }

    // The built-in lists, after the plan's own: `blocked` adds to a plan's list of that name.
    let lists = BuiltInLists {
        blocked: contacts.list(BLOCKED),
        telemarketing: contacts.list(TELEMARKETING),
    };

    // Hours.
    let hours = match &raw.hours {
        Some(h) => {
            let holidays = h.holidays.as_ref().and_then(|code| {
                let cal = HolidayCalendar::from_code(code.get_ref());
                if cal.is_none() {
                    ck.error(
                        code.span(),
                        format!(
                            "unknown holiday calendar `{}`; expected \"fr\"",
                            code.get_ref()
                        ),
                    );
                }
                cal
            });
            let mut closed = Vec::new();
            for d in &h.closed {
                match DateRange::parse(d.get_ref()) {
                    Ok(r) => closed.push(r),
                    Err(e) => ck.error(d.span(), e.to_string()),
                }
            }
            let mut extra_open = Vec::new();
            for s in &h.open_extra {
                match Slot::parse(s.get_ref()) {
                    Ok(slot) => extra_open.push(slot),
                    Err(e) => ck.error(s.span(), e.to_string()),
                }
            }
            Hours {
                open: weekly(&mut ck, &h.open),
                holidays,
                closed,
                extra_open,
            }
        }
        None => Hours {
            open: Vec::new(),
            holidays: None,
            closed: Vec::new(),
            extra_open: Vec::new(),
        },
    };

    let scope = Scope {
        executives: &executives,
        contacts: &contacts,
        steplists: &raw.steplists,
        numbers: &numbers,
        country,
    };

    // Step lists, then routes.
    let mut steplists = BTreeMap::new();
    for (name, steps) in &raw.steplists {
        if steps.get_ref().is_empty() {
            ck.error(
                steps.span(),
                format!("step list `{name}` is empty; expected at least one step"),
            );
        }
        let built = build_steps(&mut ck, &scope, steps.get_ref());
        steplists.insert(StepListName(name.clone()), built);
    }
    let mut routes = Vec::new();
    if raw.routes.is_empty() {
        ck.error(0..0, "no [[route]]; expected at least one route with steps");
    }
    let mut catch_all: Option<(String, PlanError)> = None;
    for route in &raw.routes {
        let span = route.span();
        let r = route.get_ref();
        if let Some((name, at)) = &catch_all {
            ck.error(
                span.clone(),
                format!(
                    "route `{}` can never match: route `{name}` ({}:{}) before it matches every call; expected catch-all routes last",
                    r.name,
                    at.line,
                    at.column
                ),
            );
        }
        if r.steps.is_empty() {
            ck.error(
                span.clone(),
                format!("route `{}` has no steps; expected at least one", r.name),
            );
        }
        let when = match &r.when {
            Some(w) => condition(&mut ck, &scope, w),
            None => Condition::Always,
        };
        if when == Condition::Always && catch_all.is_none() {
            catch_all = Some((r.name.clone(), ck.at(span.clone(), "")));
        }
        let steps = build_steps(&mut ck, &scope, &r.steps);
        let priority = r.priority.as_ref().map_or(0, |p| *p.get_ref());
        if let Some(p) = &r.priority
            && priority > MAX_PRIORITY
        {
            ck.error(
                p.span(),
                format!("priority {priority} is out of range; expected 0 (the default) to {MAX_PRIORITY}, higher answered first"),
            );
        }
        if spam::for_blocked(&when, lists.blocked) && rings_secretaries(&steps, &steplists) {
            ck.error(
                span.clone(),
                format!("route `{}` takes blocked callers (caller = \"{BLOCKED}\") but can ring a secretary; expected steps that never reach one (reject, voicemail, hangup): a blocked caller must not reach a secretary", r.name),
            );
        }
        routes.push(Route {
            name: r.name.clone(),
            when,
            steps,
            category: r.category.unwrap_or_default(),
            priority,
        });
    }
    // A blocked caller for whom no route of the plan holds is refused.
    routes.push(spam::built_in_route(lists.blocked));

    // Loops: a step list that can only end by going back to itself never ends the call.
    let goto_of = |steps: &[Step]| -> Option<StepListName> {
        steps.iter().find_map(|s| match s {
            Step::Goto(t) => Some(t.clone()),
            _ => None,
        })
    };
    for (name, raw_steps) in &raw.steplists {
        let mut seen: Vec<StepListName> = Vec::new();
        let mut current = StepListName(name.clone());
        while let Some(next) = steplists.get(&current).and_then(|s| goto_of(s)) {
            if seen.contains(&current) {
                break;
            }
            seen.push(current.clone());
            if next.0 == *name {
                ck.error(
                    raw_steps.span(),
                    format!(
                        "step list `{name}` can never end the call: it always continues with goto back to itself ({}); expected a way out (hangup, voicemail, a step that completes, or the end of a list)",
                        seen.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(" → ")
                    ),
                );
                break;
            }
            current = next;
        }
    }
    // Menus whose every choice and whose fall-through come back to the menu's own list.
    for (name, raw_steps) in &raw.steplists {
        let Some(steps) = steplists.get(&StepListName(name.clone())) else {
            continue;
        };
        for step in steps {
            if let Step::Menu(menu) = step {
                let loops_back = |target: &StepListName| leads_back(&steplists, target, name);
                let fallthrough_back =
                    goto_of(steps).is_some_and(|t| leads_back(&steplists, &t, name));
                if !menu.choices.is_empty()
                    && menu.choices.values().all(loops_back)
                    && fallthrough_back
                {
                    ck.error(
                        raw_steps.span(),
                        format!("the menu in step list `{name}` has no way out: every choice and its time-out lead back to it; expected at least one choice or the time-out to go elsewhere"),
                    );
                }
            }
        }
    }

    let caller_id = caller_id(&mut ck, &c, &numbers);
    let queue = queue_settings(&mut ck, &c);
    let card = card(&mut ck, raw.card.as_ref());
    if !ck.errors.is_empty() {
        return Err(ck.errors);
    }
    Ok(Company {
        id: CompanyId(c.id.into_inner()),
        answer_as: c.answer_as.unwrap_or_else(|| c.name.clone()),
        name: c.name,
        numbers,
        country,
        timezone,
        timezone_name: c.timezone.into_inner(),
        language: c.language,
        notes: c.notes,
        executives,
        default_executive,
        contacts,
        lists,
        telemarketing: c.telemarketing,
        caller_id,
        hours,
        routes,
        steplists,
        queue,
        card,
        file: file.to_path_buf(),
    })
}

/// An executive's `email` and `deliver` rules: a usable address, known channels, a time
/// for each summary, one rule per category, and an address for every rule that e-mails.
fn delivery(
    ck: &mut Checker,
    eid: &str,
    raw: &RawExecutive,
) -> (Option<EmailAddress>, Vec<DeliveryRule>) {
    let email = raw
        .email
        .as_ref()
        .and_then(|e| match EmailAddress::parse(e.get_ref()) {
            Ok(address) => Some(address),
            Err(message) => {
                ck.error(e.span(), format!("executive `{eid}`: email {message}"));
                None
            }
        });
    let mut rules: Vec<DeliveryRule> = Vec::new();
    for rule in &raw.deliver {
        let (span, r) = (rule.span(), rule.get_ref());
        let mut to = Vec::new();
        for channel in &r.to {
            match Channel::parse(channel.get_ref()) {
                Some(c) if to.contains(&c) => ck.error(
                    channel.span(),
                    format!(
                        "channel `{}` is listed twice; expected each once",
                        channel.get_ref()
                    ),
                ),
                Some(c) => to.push(c),
                None => ck.error(
                    channel.span(),
                    format!(
                        "unknown channel `{}`; expected \"email\" or \"webhook\"",
                        channel.get_ref().escape_debug()
                    ),
                ),
            }
        }
        let when = match When::parse(r.when.get_ref()) {
            Ok(w) => w,
            Err(message) => {
                ck.error(r.when.span(), message);
                continue;
            }
        };
        match when {
            When::Never if !r.to.is_empty() => ck.error(
                r.when.span(),
                "when = \"never\" with channels; expected to = [] (or another `when`)",
            ),
            When::Now | When::Digest(_) if r.to.is_empty() => ck.error(
                span.clone(),
                "a rule that delivers to no channel; expected to = [\"email\"] or [\"webhook\"], or when = \"never\"",
            ),
            When::Digest(_) if to.contains(&Channel::Webhook) => ck.error(
                r.when.span(),
                "a daily summary is an e-mail; expected to = [\"email\"] with \"digest HH:MM\" (webhooks take when = \"now\")",
            ),
            _ => {}
        }
        if to.contains(&Channel::Email) && raw.email.is_none() {
            ck.error(
                span.clone(),
                format!("executive `{eid}` has rules that e-mail but no `email`; expected email = \"name@company.example\""),
            );
        }
        if rules.iter().any(|x| x.category == r.category) {
            ck.error(
                span.clone(),
                format!(
                    "a second rule for category `{}`; expected one rule per category",
                    r.category.as_str()
                ),
            );
            continue;
        }
        rules.push(DeliveryRule {
            category: r.category,
            to,
            when,
        });
    }
    (email, rules)
}

/// `caller_id`, which must be one of the company's own numbers: a secretariat presents
/// only what its client owns (presenting another's number is spoofing).
fn caller_id(ck: &mut Checker, c: &RawCompany, numbers: &[E164]) -> Option<E164> {
    let named = c.caller_id.as_ref()?;
    match E164::parse(named.get_ref()) {
        Some(n) if numbers.contains(&n) => Some(n),
        _ => {
            let known: Vec<&str> = numbers.iter().map(E164::as_str).collect();
            ck.error(
                named.span(),
                format!(
                    "caller_id `{}` is not one of this company's numbers; expected one of `numbers`: {}",
                    named.get_ref(),
                    list_or_none(&known)
                ),
            );
            None
        }
    }
}

/// `default_executive`, which must be one of the company's; without it, the first
/// executive in the file.
fn default_executive(
    ck: &mut Checker,
    c: &RawCompany,
    executives: &BTreeMap<String, Spanned<RawExecutive>>,
) -> Option<ExecutiveId> {
    if let Some(named) = &c.default_executive {
        if executives.contains_key(named.get_ref()) {
            return Some(ExecutiveId(named.get_ref().clone()));
        }
        let known: Vec<&str> = executives.keys().map(String::as_str).collect();
        ck.error(
            named.span(),
            format!(
                "unknown executive `{}`; expected one of [executives]: {}",
                named.get_ref(),
                list_or_none(&known)
            ),
        );
        return None;
    }
    executives
        .iter()
        .min_by_key(|(_, raw)| raw.span().start)
        .map(|(id, _)| ExecutiveId(id.clone()))
}

/// The longest card instructions (characters), and the most extra message fields.
const MAX_INSTRUCTIONS: usize = 4_000;
const MAX_FIELDS: usize = 20;

/// The secretary's card: instructions, and the extra fields this company's messages ask.
fn card(ck: &mut Checker, raw: Option<&Spanned<RawCard>>) -> Card {
    let Some(raw) = raw else {
        return Card::default();
    };
    let span = raw.span();
    let raw = raw.get_ref();
    if raw
        .instructions
        .as_ref()
        .is_some_and(|i| i.chars().count() > MAX_INSTRUCTIONS)
    {
        ck.error(
            span.clone(),
            format!(
                "card instructions are too long; expected at most {MAX_INSTRUCTIONS} characters"
            ),
        );
    }
    if raw.fields.len() > MAX_FIELDS {
        ck.error(
            span,
            format!(
                "the card has {} fields; expected at most {MAX_FIELDS}",
                raw.fields.len()
            ),
        );
    }
    let mut fields: Vec<CardField> = Vec::new();
    for f in &raw.fields {
        let (span, f) = (f.span(), f.get_ref());
        let name_ok = !f.name.is_empty()
            && f.name.len() <= 32
            && f.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            ck.error(
                span,
                format!(
                    "card field name `{}`; expected 1 to 32 of a-z, 0-9 and _",
                    f.name
                ),
            );
        } else if fields.iter().any(|x| x.name == f.name) {
            ck.error(
                span,
                format!(
                    "card field `{}` is named twice; expected each name once",
                    f.name
                ),
            );
        } else if f.label.trim().is_empty() || f.label.chars().count() > 80 {
            ck.error(
                span,
                format!(
                    "card field `{}`: its label must be 1 to 80 characters",
                    f.name
                ),
            );
        } else {
            fields.push(CardField {
                name: f.name.clone(),
                label: f.label.clone(),
                required: f.required,
            });
        }
    }
    Card {
        instructions: raw.instructions.clone().filter(|i| !i.trim().is_empty()),
        fields,
    }
}

/// The highest route priority.
const MAX_PRIORITY: u8 = 9;

/// What a caller waiting for a secretary hears: the company's music (or the shipped one),
/// and an announcement every so often when the plan asks.
fn queue_settings(ck: &mut Checker, c: &RawCompany) -> QueueSettings {
    let music = match &c.queue_sound {
        Some(s) => ck.sound(s.span(), s.get_ref()),
        None => None,
    }
    .unwrap_or_else(|| SoundName("default/hold.wav".into()));
    let every = c.queue_announce_every.as_ref().and_then(|e| {
        let seconds = *e.get_ref();
        if seconds < 10 {
            ck.error(
                e.span(),
                format!(
                    "queue_announce_every = {seconds} is too often; expected at least 10 seconds"
                ),
            );
            return None;
        }
        Some(std::time::Duration::from_secs(u64::from(seconds)))
    });
    let announcement = every.map(|every| {
        let sound = match &c.queue_announcement {
            Some(s) => ck.sound(s.span(), s.get_ref()),
            None => None,
        };
        let sound = sound.unwrap_or_else(|| super::default_sound("queue", &c.language));
        (sound, every)
    });
    if announcement.is_none()
        && let Some(s) = &c.queue_announcement
    {
        ck.error(
            s.span(),
            "queue_announcement without queue_announce_every; expected both (the seconds between announcements)",
        );
    }
    QueueSettings {
        music,
        announcement,
    }
}

/// Whether these steps can ring a secretary: a `secretary` step among them, or in a step
/// list they can go on to (goto, menu choices).
fn rings_secretaries(steps: &[Step], steplists: &BTreeMap<StepListName, Vec<Step>>) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&[Step]> = vec![steps];
    while let Some(steps) = todo.pop() {
        for step in steps {
            let next: Vec<&StepListName> = match step {
                Step::Secretary { .. } => return true,
                Step::Goto(target) => vec![target],
                Step::Menu(menu) => menu.choices.values().collect(),
                _ => Vec::new(),
            };
            for target in next {
                if seen.insert(target.clone())
                    && let Some(list) = steplists.get(target)
                {
                    todo.push(list);
                }
            }
        }
    }
    false
}

/// Whether following gotos from `start` comes back to the list `home`.
fn leads_back(
    steplists: &BTreeMap<StepListName, Vec<Step>>,
    start: &StepListName,
    home: &str,
) -> bool {
    let mut seen = BTreeSet::new();
    let mut current = start.clone();
    loop {
        if current.0 == home {
            return true;
        }
        if !seen.insert(current.clone()) {
            return false;
        }
        let next = steplists.get(&current).and_then(|steps| {
            steps.iter().find_map(|s| match s {
                Step::Goto(t) => Some(t.clone()),
                _ => None,
            })
        });
        match next {
            Some(n) => current = n,
            None => return false,
        }
    }
}

struct Scope<'a> {
    executives: &'a BTreeMap<ExecutiveId, Executive>,
    contacts: &'a Contacts,
    steplists: &'a BTreeMap<String, Spanned<Vec<Spanned<RawStep>>>>,
    numbers: &'a [E164],
    country: Country,
}

impl Scope<'_> {
    fn steplist(&self, ck: &mut Checker, span: Range<usize>, name: &str) -> Option<StepListName> {
        if self.steplists.contains_key(name) {
            Some(StepListName(name.to_string()))
        } else {
            let known: Vec<&str> = self.steplists.keys().map(String::as_str).collect();
            ck.error(
                span,
                format!(
                    "unknown step list `{name}`; expected one of [steplists]: {}",
                    list_or_none(&known)
                ),
            );
            None
        }
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "(none defined)".into()
    } else {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An executive's `agenda`: slots like hours, an appointment's length and the buffer
/// between two, each within bounds.
fn agenda(ck: &mut Checker, eid: &str, raw: &Spanned<RawAgenda>) -> crate::agenda::Agenda {
    use crate::agenda::{MAX_BUFFER, MAX_LENGTH, MIN_LENGTH};
    let a = raw.get_ref();
    if a.slots.is_empty() {
        ck.error(
            raw.span(),
            format!("executive `{eid}`'s agenda has no slots; expected ranges like \"mon-fri 09:00-12:00\""),
        );
    }
    let slots = weekly(ck, &a.slots);
    let length = *a.length.get_ref();
    let at = |s: &Spanned<u16>| {
        if s.span().is_empty() {
            raw.span()
        } else {
            s.span()
        }
    };
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
        ck.error(
            at(&a.length),
            format!("agenda length {length}: expected minutes from {MIN_LENGTH} to {MAX_LENGTH}"),
        );
    }
    let buffer = *a.buffer.get_ref();
    if buffer > MAX_BUFFER {
        ck.error(
            at(&a.buffer),
            format!("agenda buffer {buffer}: expected minutes from 0 to {MAX_BUFFER}"),
        );
    }
    for s in &a.slots {
        if let Ok(range) = WeeklyRange::parse(s.get_ref())
            && range.end_minute().saturating_sub(range.start_minute()) < length
        {
            ck.error(
                s.span(),
                format!("`{}` is shorter than one appointment ({length} minutes); expected a longer range or a shorter `length`", range.text()),
            );
        }
    }
    crate::agenda::Agenda {
        slots,
        length,
        buffer,
        needs_confirmation: a.needs_confirmation,
    }
}

fn weekly(ck: &mut Checker, texts: &[Spanned<String>]) -> Vec<WeeklyRange> {
    let mut out = Vec::new();
    for t in texts {
        match WeeklyRange::parse(t.get_ref()) {
            Ok(r) => out.push(r),
            Err(e) => ck.error(t.span(), e.to_string()),
        }
    }
    out
}

fn condition(ck: &mut Checker, scope: &Scope, when: &Spanned<RawWhen>) -> Condition {
    let span = when.span();
    let w = when.get_ref();
    let mut all = Vec::new();
    if let Some(list) = &w.caller {
        if list.get_ref() == "anonymous" {
            all.push(Condition::CallerAnonymous);
        } else if let Some(id) = scope.contacts.id(list.get_ref()) {
            all.push(Condition::CallerIn(id));
        } else {
            let known: Vec<&str> = scope
                .contacts
                .names()
                .iter()
                .map(String::as_str)
                .filter(|n| *n != BLOCKED && *n != TELEMARKETING)
                .collect();
            ck.error(
                list.span(),
                format!(
                    "unknown contact list `{}`; expected one of [contacts]: {} (or \"anonymous\", \"{BLOCKED}\", \"{TELEMARKETING}\"; use caller_matches for a number)",
                    list.get_ref(),
                    list_or_none(&known)
                ),
            );
        }
    }
    if let Some(p) = &w.caller_matches {
        match Pattern::parse(p.get_ref(), scope.country) {
            Some(p) => all.push(Condition::CallerMatches(p)),
            None => ck.error(
                p.span(),
                format!(
                    "`{}` is not a number pattern; expected \"+33612345678\" or \"+33899*\"",
                    p.get_ref()
                ),
            ),
        }
    }
    if let Some(d) = &w.dialled {
        match E164::parse(d.get_ref()) {
            Some(n) if scope.numbers.contains(&n) => all.push(Condition::Dialled(n)),
            Some(n) => ck.error(
                d.span(),
                format!("{n} is not one of this company's numbers; expected one of its `numbers`"),
            ),
            None => ck.error(
                d.span(),
                format!(
                    "`{}` is not a number; expected E.164 such as \"+33180000001\"",
                    d.get_ref()
                ),
            ),
        }
    }
    if let Some(open) = w.open {
        all.push(Condition::Open(open));
    }
    if let Some(at) = &w.at {
        all.push(Condition::At(weekly(ck, at)));
    }
    if let Some(s) = w.secretary_available {
        all.push(Condition::SecretaryAvailable(s));
    }
    if let Some(cs) = &w.all {
        all.push(Condition::All(
            cs.iter().map(|c| condition(ck, scope, c)).collect(),
        ));
    }
    if let Some(cs) = &w.any {
        all.push(Condition::Any(
            cs.iter().map(|c| condition(ck, scope, c)).collect(),
        ));
    }
    if let Some(c) = &w.not {
        all.push(Condition::Not(Box::new(condition(ck, scope, c))));
    }
    let keys = [
        w.caller.is_some(),
        w.caller_matches.is_some(),
        w.dialled.is_some(),
        w.open.is_some(),
        w.at.is_some(),
        w.secretary_available.is_some(),
        w.all.is_some(),
        w.any.is_some(),
        w.not.is_some(),
    ];
    if all.is_empty() && keys.contains(&true) {
        // Every condition written here was wrong (already reported): match nothing rather
        // than everything, so the route does not also look like a catch-all.
        return Condition::Any(Vec::new());
    }
    match all.len() {
        0 => {
            ck.error(span, "empty `when`; expected a condition such as { caller = \"vip\" } or { open = true }, or no `when` for a catch-all");
            Condition::Always
        }
        1 => all.pop().unwrap_or(Condition::Always),
        _ => Condition::All(all),
    }
}

fn build_steps(ck: &mut Checker, scope: &Scope, raw: &[Spanned<RawStep>]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut after_goto = false;
    for step in raw {
        let span = step.span();
        if after_goto {
            ck.error(span.clone(), "this step is never run: a goto before it does not return; expected goto as the last step");
            after_goto = false;
        }
        let wait = |ck: &mut Checker, what: &str, seconds: u32| {
            if seconds == 0 || seconds > MAX_WAIT_SECONDS {
                ck.error(
                    span.clone(),
                    format!("{what} = {seconds}; expected 1 to {MAX_WAIT_SECONDS} seconds"),
                );
            }
        };
        let built = match step.get_ref() {
            RawStep::Ring(seconds) => {
                if *seconds > MAX_RING_SECONDS {
                    ck.error(span.clone(), format!("ring for {seconds} s is too long; expected at most {MAX_RING_SECONDS} s"));
                }
                Some(Step::Ring { seconds: *seconds })
            }
            RawStep::Play(play) => {
                if !(1..=100).contains(&play.times) {
                    ck.error(
                        span.clone(),
                        format!("times = {}; expected 1 to 100", play.times),
                    );
                }
                ck.sound(span.clone(), &play.sound).map(|sound| Step::Play {
                    sound,
                    times: play.times,
                })
            }
            RawStep::Menu(m) => {
                wait(ck, "timeout", m.timeout);
                if m.retries > 10 {
                    ck.error(
                        span.clone(),
                        format!("retries = {}; expected 0 to 10", m.retries),
                    );
                }
                if m.choices.is_empty() {
                    ck.error(
                        span.clone(),
                        "menu without choices; expected choices = { \"1\" = \"a step list\", … }",
                    );
                }
                let prompt = ck.sound(span.clone(), &m.prompt);
                let invalid = m.invalid.as_ref().and_then(|s| ck.sound(span.clone(), s));
                let mut choices = BTreeMap::new();
                for (digit, target) in &m.choices {
                    let mut chars = digit.chars();
                    match (chars.next(), chars.next()) {
                        (Some(d), None) if d.is_ascii_digit() || d == '*' || d == '#' => {
                            if let Some(t) = scope.steplist(ck, span.clone(), target) {
                                choices.insert(d, t);
                            }
                        }
                        _ => ck.error(
                            span.clone(),
                            format!("menu choice `{digit}`; expected one key: 0-9, * or #"),
                        ),
                    }
                }
                prompt.map(|prompt| {
                    Step::Menu(Menu {
                        prompt,
                        choices,
                        timeout: m.timeout,
                        retries: m.retries,
                        invalid,
                    })
                })
            }
            RawStep::Secretary(s) => {
                wait(ck, "timeout", s.timeout);
                if let Some(o) = s.overflow_after
                    && o >= s.timeout
                {
                    ck.error(span.clone(), format!("overflow_after = {o} is not before timeout = {}; expected a smaller value", s.timeout));
                }
                Some(Step::Secretary {
                    timeout: s.timeout,
                    who: s.who.clone(),
                    group: s.group.clone(),
                    strategy: s.strategy,
                    overflow_after: s.overflow_after,
                })
            }
            RawStep::Transfer(t) => {
                wait(ck, "timeout", t.timeout);
                let to = if t.to.starts_with("sip:") || t.to.starts_with("sips:") {
                    Some(TransferTarget::Uri(t.to.clone()))
                } else if scope.executives.contains_key(&ExecutiveId(t.to.clone())) {
                    Some(TransferTarget::Executive(ExecutiveId(t.to.clone())))
                } else {
                    let known: Vec<&str> = scope.executives.keys().map(|k| k.0.as_str()).collect();
                    ck.error(
                        span.clone(),
                        format!("unknown executive `{}`; expected one of [executives]: {} or a sip: URI", t.to, list_or_none(&known)),
                    );
                    None
                };
                to.map(|to| Step::Transfer {
                    to,
                    timeout: t.timeout,
                    screening: t.screening,
                    mode: t.mode,
                })
            }
            RawStep::Voicemail(v) => {
                if v.max_seconds == 0 || v.max_seconds > MAX_VOICEMAIL_SECONDS {
                    ck.error(
                        span.clone(),
                        format!(
                            "max_seconds = {}; expected 1 to {MAX_VOICEMAIL_SECONDS}",
                            v.max_seconds
                        ),
                    );
                }
                let prompt = match &v.prompt {
                    Some(p) => match ck.sound(span.clone(), p) {
                        Some(s) => Some(s),
                        None => continue,
                    },
                    None => None,
                };
                Some(Step::Voicemail {
                    prompt,
                    max_seconds: v.max_seconds,
                })
            }
            RawStep::Reject(r) => {
                if !(400..=699).contains(&r.code) {
                    ck.error(
                        span.clone(),
                        format!(
                            "reject code {}; expected a SIP status from 400 to 699 (e.g. 486, 603)",
                            r.code
                        ),
                    );
                }
                Some(Step::Reject { code: r.code })
            }
            RawStep::Hangup(Empty {}) => Some(Step::Hangup),
            RawStep::Goto(target) => {
                after_goto = true;
                scope.steplist(ck, span.clone(), target).map(Step::Goto)
            }
            RawStep::Category(c) => Some(Step::Category(*c)),
        };
        steps.extend(built);
    }
    steps
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::Dialled;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    /// The mistakes loading `plans` must find, as the operator reads them.
    fn load_errors(plans: &Path, sounds: &Path) -> Vec<String> {
        load_dir(plans, sounds)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn fixture() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::TempDir::new().unwrap();
        let sounds = dir.path().join("sounds");
        std::fs::create_dir_all(sounds.join("a")).unwrap();
        std::fs::write(sounds.join("a/hello.wav"), b"RIFF").unwrap();
        std::fs::create_dir_all(dir.path().join("plans")).unwrap();
        (dir, sounds)
    }

    const GOOD: &str = r#"
[company]
id = "acme"
name = "ACME"
numbers = ["+33180000001"]

[[route]]
name = "all"
steps = [{ ring = 2 }, { play = "a/hello.wav" }, { play = { sound = "a/hello.wav", times = 2 } }, { hangup = {} }]
"#;

    #[test]
    fn loads_a_plan_and_finds_it_by_any_number_form() {
        let (dir, sounds) = fixture();
        write(&dir.path().join("plans"), "acme.toml", GOOD);
        let plans = load_dir(&dir.path().join("plans"), &sounds).unwrap();
        let c = plans
            .lookup(&Dialled::parse("0180000001").unwrap())
            .unwrap();
        assert_eq!(c.id.0, "acme");
        assert!(
            plans
                .lookup(&Dialled::parse("+33180000001").unwrap())
                .is_some()
        );
        assert!(
            plans
                .lookup(&Dialled::parse("+33180000002").unwrap())
                .is_none()
        );
        assert_eq!(c.routes[0].steps.len(), 4);
        assert_eq!(
            c.routes[0].steps[2],
            Step::Play {
                sound: SoundName("a/hello.wav".into()),
                times: 2
            }
        );
    }

    #[test]
    fn errors_carry_file_line_column_and_expectation() {
        let (dir, sounds) = fixture();
        let plans = dir.path().join("plans");
        write(
            &plans,
            "acme.toml",
            &GOOD.replace("a/hello.wav\" }, { play", "a/missing.wav\" }, { play"),
        );
        let errors = load_dir(&plans, &sounds).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let text = errors[0].to_string();
        assert!(text.contains("acme.toml:9:"), "{text}");
        assert!(text.contains("sound `a/missing.wav` not found"), "{text}");

        write(
            &plans,
            "acme.toml",
            &GOOD.replace("name = \"ACME\"", "name = \"ACME\"\ncolour = \"red\""),
        );
        let text = load_dir(&plans, &sounds).unwrap_err()[0].to_string();
        assert!(
            text.contains("acme.toml:5:1: unknown field `colour`, expected one of"),
            "{text}"
        );
    }

    #[test]
    fn a_plan_with_errors_still_takes_part_in_the_number_check() {
        let (dir, sounds) = fixture();
        let plans = dir.path().join("plans");
        write(&plans, "acme.toml", GOOD);
        // Checked errors (a missing sound), then an error the TOML reader refuses.
        let other = GOOD.replace("\"acme\"", "\"other\"");
        write(
            &plans,
            "other.toml",
            &other.replace("a/hello.wav\" }, { play", "a/missing.wav\" }, { play"),
        );
        write(
            &plans,
            "third.toml",
            &GOOD
                .replace("\"acme\"", "\"third\"")
                .replace("{ ring = 2 }", "{ dance = 2 }"),
        );
        let errors = load_errors(&plans, &sounds);
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].contains("and by company `other`"), "{errors:#?}");
        assert!(errors[1].contains("a/missing.wav"), "{errors:#?}");
        assert!(errors[2].contains("and by company `third`"), "{errors:#?}");
        assert!(errors[3].contains("unknown variant `dance`"), "{errors:#?}");
    }

    #[test]
    fn the_card_loads_and_its_mistakes_are_located() {
        let (dir, sounds) = fixture();
        let plans = dir.path().join("plans");
        let card = "[card]\ninstructions = \"Dire bonjour.\"\nfields = [{ name = \"address\", label = \"Adresse\", required = true }]\n\n[[route]]";
        write(&plans, "acme.toml", &GOOD.replace("[[route]]", card));
        let loaded = load_dir(&plans, &sounds).unwrap();
        let acme = loaded.company("acme").unwrap();
        assert_eq!(acme.card.instructions.as_deref(), Some("Dire bonjour."));
        assert_eq!(acme.card.fields[0].name, "address");
        assert!(acme.card.fields[0].required);

        let bad = "[card]\nfields = [{ name = \"Adresse!\", label = \"x\" }, { name = \"a\", label = \"\" }, { name = \"b\", label = \"B\" }, { name = \"b\", label = \"B\" }]\n\n[[route]]";
        write(&plans, "acme.toml", &GOOD.replace("[[route]]", bad));
        let errors = load_errors(&plans, &sounds);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].contains("acme.toml:8:11:")
                && errors[0].contains("card field name `Adresse!`"),
            "{errors:#?}"
        );
        assert!(
            errors[1].contains("its label must be 1 to 80 characters"),
            "{errors:#?}"
        );
        assert!(
            errors[2].contains("card field `b` is named twice"),
            "{errors:#?}"
        );
    }

    #[test]
    fn an_agenda_loads_and_its_mistakes_are_located() {
        let (dir, sounds) = fixture();
        let plans = dir.path().join("plans");
        let good = "[executives.marie]\nname = \"Marie\"\nreach = [\"sip:marie@example.com\"]\nagenda = { slots = [\"mon-fri 09:00-12:00\"], length = 45, buffer = 15, needs_confirmation = false }\n\n[[route]]";
        write(&plans, "acme.toml", &GOOD.replace("[[route]]", good));
        let loaded = load_dir(&plans, &sounds).unwrap();
        let marie = &loaded.company("acme").unwrap().executives[&ExecutiveId("marie".into())];
        let agenda = marie.agenda.as_ref().unwrap();
        assert_eq!((agenda.length, agenda.buffer), (45, 15));
        assert!(!agenda.needs_confirmation);
        assert_eq!(agenda.slots[0].text(), "mon-fri 09:00-12:00");

        let bad = "[executives.marie]\nname = \"Marie\"\nreach = [\"sip:marie@example.com\"]\nagenda = { slots = [\"mon-fry 09:00-12:00\", \"sat 09:00-09:20\"], length = 30, buffer = 500 }\n\n[[route]]";
        write(&plans, "acme.toml", &GOOD.replace("[[route]]", bad));
        let errors = load_errors(&plans, &sounds);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("acme.toml:10:21:") && e.contains("mon-fry")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("acme.toml:10:44:")
                    && e.contains("shorter than one appointment")),
            "{errors:#?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("agenda buffer 500")),
            "{errors:#?}"
        );
    }

    #[test]
    fn queue_settings_and_priorities_load_and_their_mistakes_are_located() {
        let (dir, sounds) = fixture();
        let plans = dir.path().join("plans");
        let good = GOOD
            .replace(
                "numbers = [\"+33180000001\"]",
                "numbers = [\"+33180000001\"]\nqueue_sound = \"a/hello.wav\"\nqueue_announce_every = 45",
            )
            .replace("name = \"all\"", "name = \"all\"\npriority = 7");
        write(&plans, "acme.toml", &good);
        let loaded = load_dir(&plans, &sounds).unwrap();
        let acme = loaded.company("acme").unwrap();
        assert_eq!(acme.queue.music.0, "a/hello.wav");
        assert_eq!(
            acme.queue.announcement,
            Some((
                SoundName("default/queue-fr.wav".into()),
                std::time::Duration::from_secs(45)
            ))
        );
        assert_eq!(acme.routes[0].priority, 7);

        let bad = GOOD
            .replace(
                "numbers = [\"+33180000001\"]",
                "numbers = [\"+33180000001\"]\nqueue_announcement = \"a/hello.wav\"\nqueue_sound = \"a/none.wav\"",
            )
            .replace("name = \"all\"", "name = \"all\"\npriority = 12");
        write(&plans, "acme.toml", &bad);
        let errors = load_errors(&plans, &sounds);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        let has = |at: &str, what: &str| errors.iter().any(|e| e.contains(at) && e.contains(what));
        assert!(
            has("acme.toml:7:", "sound `a/none.wav` not found"),
            "{errors:#?}"
        );
        assert!(
            has(
                "acme.toml:6:",
                "queue_announcement without queue_announce_every"
            ),
            "{errors:#?}"
        );
        assert!(
            has("acme.toml:11:", "priority 12 is out of range"),
            "{errors:#?}"
        );
    }

    #[test]
    fn an_executive_reached_at_one_of_our_own_numbers_is_a_loop() {
        let (dir, sounds) = fixture();
        let plans = dir.path().join("plans");
        write(&plans, "acme.toml", GOOD);
        let bravo = GOOD
            .replace("\"acme\"", "\"bravo\"")
            .replace("+33180000001", "+33180000002")
            .replace(
                "[[route]]",
                "[executives.boss]\nname = \"Boss\"\nreach = [\"sip:boss@192.0.2.1\", \"01 80 00 00 01\"]\n\n[[route]]",
            );
        write(&plans, "bravo.toml", &bravo);
        let errors = load_errors(&plans, &sounds);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains("bravo.toml:9:")
                && errors[0].contains("reach +33180000001 is a number of company `acme`")
                && errors[0].contains("loop"),
            "{errors:#?}"
        );
    }

    #[test]
    fn an_unreadable_file_has_no_position() {
        let (dir, sounds) = fixture();
        let missing = dir.path().join("missing.toml");
        let text = load_files(std::slice::from_ref(&missing), &sounds).unwrap_err()[0].to_string();
        assert!(
            text.starts_with(&format!("{}: cannot read: ", missing.display())),
            "{text}"
        );
    }

    #[test]
    fn a_number_claimed_twice_names_both_files() {
        let (dir, sounds) = fixture();
        let plans = dir.path().join("plans");
        write(&plans, "acme.toml", GOOD);
        write(
            &plans,
            "other.toml",
            &GOOD
                .replace("\"acme\"", "\"other\"")
                .replace("+33180000001", "0033 1 80 00 00 01"),
        );
        let text = load_dir(&plans, &sounds).unwrap_err()[0].to_string();
        assert!(
            text.starts_with(&format!("{}:5:", plans.join("other.toml").display())),
            "{text}"
        );
        assert!(
            text.contains(&format!("{}:5:", plans.join("acme.toml").display())),
            "{text}"
        );
    }

    #[test]
    fn caller_id_must_be_one_of_the_company_numbers() {
        let (dir, sounds) = fixture();
        let plans = dir.path().join("plans");
        write(
            &plans,
            "acme.toml",
            &GOOD.replace(
                "name = \"ACME\"",
                "name = \"ACME\"\ncaller_id = \"+33180000001\"",
            ),
        );
        let loaded = load_dir(&plans, &sounds).unwrap();
        assert_eq!(
            loaded
                .company("acme")
                .unwrap()
                .caller_id
                .as_ref()
                .map(E164::as_str),
            Some("+33180000001")
        );
        write(
            &plans,
            "acme.toml",
            &GOOD.replace(
                "name = \"ACME\"",
                "name = \"ACME\"\ncaller_id = \"+33199999999\"",
            ),
        );
        let errors = load_errors(&plans, &sounds);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains(&format!("{}:5:13", plans.join("acme.toml").display()))
                && errors[0].contains("not one of this company's numbers"),
            "{errors:?}"
        );
    }

    #[test]
    fn blocked_and_telemarketing_are_built_in_and_their_mistakes_are_located() {
        let (dir, sounds) = fixture();
        let plans = dir.path().join("plans");
        let errors = |text: &str| -> Vec<String> {
            write(&plans, "acme.toml", text);
            match load_dir(&plans, &sounds) {
                Ok(_) => Vec::new(),
                Err(e) => e.iter().map(|e| e.to_string()).collect(),
            }
        };
        // `caller = "blocked"` and `caller = "telemarketing"` need no [contacts]; the
        // built-in refusal comes after the plan's routes.
        let guarded = GOOD.replace(
            "[[route]]",
            "[[route]]\nname = \"spam\"\nwhen = { any = [{ caller = \"blocked\" }, { caller = \"telemarketing\" }] }\nsteps = [{ reject = { code = 486 } }]\n\n[[route]]",
        );
        write(&plans, "acme.toml", &guarded);
        let loaded = load_dir(&plans, &sounds).unwrap();
        let acme = loaded.company("acme").unwrap();
        assert_eq!(acme.telemarketing, Telemarketing::Label, "the default");
        let names: Vec<&str> = acme.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["spam", "all", spam::BUILT_IN_ROUTE]);

        let refuse = GOOD.replace(
            "name = \"ACME\"",
            "name = \"ACME\"\ntelemarketing = \"refuse\"",
        );
        write(&plans, "acme.toml", &refuse);
        let loaded = load_dir(&plans, &sounds).unwrap();
        assert_eq!(
            loaded.company("acme").unwrap().telemarketing,
            Telemarketing::Refuse
        );

        let wrong = errors(&GOOD.replace(
            "name = \"ACME\"",
            "name = \"ACME\"\ntelemarketing = \"block\"",
        ));
        assert_eq!(wrong.len(), 1, "{wrong:?}");
        assert!(wrong[0].contains("acme.toml:5:17:"), "{wrong:?}");
        assert!(
            wrong[0].contains("expected one of `label`, `refuse`, `accept`"),
            "{wrong:?}"
        );

        let own = errors(&GOOD.replace(
            "[[route]]",
            "[contacts]\ntelemarketing = [\"+33612345678\"]\n\n[[route]]",
        ));
        assert_eq!(own.len(), 1, "{own:?}");
        assert!(own[0].contains("acme.toml:8:17:"), "{own:?}");
        assert!(
            own[0].contains("`telemarketing` is a built-in list"),
            "{own:?}"
        );

        // A route for blocked callers that could ring a secretary, directly or by a goto.
        let ringing = GOOD.replace(
            "[[route]]",
            "[steplists]\nhelp = [{ secretary = { timeout = 10 } }]\n\n\
             [[route]]\nname = \"blocked, closed\"\nwhen = { caller = \"blocked\", open = false }\nsteps = [{ goto = \"help\" }]\n\n\
             [[route]]\nname = \"not blocked\"\nwhen = { not = { caller = \"blocked\" } }\nsteps = [{ secretary = { timeout = 10 } }]\n\n[[route]]",
        );
        let ringing = errors(&ringing);
        assert_eq!(
            ringing.len(),
            1,
            "only the route for blocked callers: {ringing:?}"
        );
        assert!(ringing[0].contains("acme.toml:10:1:"), "{ringing:?}");
        assert!(
            ringing[0].contains("route `blocked, closed` takes blocked callers"),
            "{ringing:?}"
        );

        let unknown = errors(&GOOD.replace(
            "name = \"all\"",
            "name = \"all\"\nwhen = { caller = \"friends\" }",
        ));
        assert!(
            unknown[0].contains("(or \"anonymous\", \"blocked\", \"telemarketing\";"),
            "{unknown:?}"
        );
        assert!(
            unknown[0].contains("[contacts]: (none defined)"),
            "{unknown:?}"
        );
    }
}
