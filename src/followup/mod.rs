//! Follow-ups: the tasks a secretariat does for a company besides taking messages
//! (calling a customer back, chasing an unpaid invoice, following up a quote), their
//! statuses and attempts, and the order the console shows them in.
//!
//! Pure: plain data and checks. What a secretary or a CSV file sends is checked here into a
//! [`NewTask`] (numbers through `number`, amounts as integer cents, dates as calendar days)
//! before anything is written; [`import`] reads a CSV of unpaid invoices all or nothing.

pub mod import;

use std::cmp::Ordering;

use jiff::civil::Date;

use crate::number::{Country, Dialled, E164};

/// The longest customer name, invoice number or one-line text (characters).
pub const MAX_LINE: usize = 120;
/// The longest notes or outcome (characters).
pub const MAX_NOTES: usize = 2000;
/// The largest amount accepted: 1 billion in the currency, in cents.
pub const MAX_CENTS: i64 = 100_000_000_000;

/// What a task is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Call the customer back.
    Callback,
    /// Chase an unpaid invoice.
    Invoice,
    /// Follow up a quote.
    Quote,
    /// Anything else.
    Other,
}

impl Kind {
    /// Every kind, in the order the console lists them.
    pub const ALL: [Kind; 4] = [Kind::Callback, Kind::Invoice, Kind::Quote, Kind::Other];

    /// The word stored and sent by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Callback => "callback",
            Kind::Invoice => "invoice",
            Kind::Quote => "quote",
            Kind::Other => "other",
        }
    }

    /// Reads the word back.
    pub fn parse(word: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Nobody has started on it.
    Open,
    /// Someone is on it (an attempt was made, or she said so).
    InProgress,
    /// Finished.
    Done,
    /// Given up.
    Abandoned,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 4] = [
        Status::Open,
        Status::InProgress,
        Status::Done,
        Status::Abandoned,
    ];

    /// The word stored and sent by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::InProgress => "in_progress",
            Status::Done => "done",
            Status::Abandoned => "abandoned",
        }
    }

    /// Reads the word back.
    pub fn parse(word: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == word)
    }

    /// Whether something remains to be done.
    pub fn is_open(self) -> bool {
        matches!(self, Status::Open | Status::InProgress)
    }
}

/// What came of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The customer was reached.
    Reached,
    /// Nobody answered.
    NoAnswer,
    /// Busy.
    Busy,
    /// A message was left on their voicemail.
    Voicemail,
    /// The number is wrong.
    WrongNumber,
    /// An e-mail or letter was sent.
    Written,
    /// Anything else (the note says what).
    Other,
}

impl AttemptResult {
    /// Every result.
    pub const ALL: [AttemptResult; 7] = [
        AttemptResult::Reached,
        AttemptResult::NoAnswer,
        AttemptResult::Busy,
        AttemptResult::Voicemail,
        AttemptResult::WrongNumber,
        AttemptResult::Written,
        AttemptResult::Other,
    ];

    /// The word stored and sent by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Reached => "reached",
            AttemptResult::NoAnswer => "no_answer",
            AttemptResult::Busy => "busy",
            AttemptResult::Voicemail => "voicemail",
            AttemptResult::WrongNumber => "wrong_number",
            AttemptResult::Written => "written",
            AttemptResult::Other => "other",
        }
    }

    /// Reads the word back.
    pub fn parse(word: &str) -> Option<AttemptResult> {
        AttemptResult::ALL.into_iter().find(|r| r.as_str() == word)
    }
}

/// Why a task's field was refused; [`TaskError::field`] names it for the console.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// Not one of the kinds.
    #[error("kind must be callback, invoice, quote or other")]
    Kind,
    /// Not one of the statuses.
    #[error("status must be open, in_progress, done or abandoned")]
    Status,
    /// Not a number of the company's country or an international one.
    #[error("not a telephone number")]
    Phone,
    /// A callback needs a number to call.
    #[error("a callback needs the customer's phone number")]
    PhoneMissing,
    /// Not an e-mail address.
    #[error("not an e-mail address")]
    Email,
    /// Not an amount (`1234.56`, `1 234,56`), or out of bounds.
    #[error("amount must be a positive sum with at most two decimals")]
    Amount,
    /// An invoice chase needs its amount and invoice number.
    #[error("an invoice chase needs the amount and the invoice number")]
    InvoiceMissing,
    /// Not a date (`2026-11-30` or `30/11/2026`).
    #[error("date must be YYYY-MM-DD or DD/MM/YYYY")]
    Date,
    /// A one-line text too long or with control characters.
    #[error("must be one line of at most {MAX_LINE} characters")]
    Line(&'static str),
    /// Notes too long or with control characters other than line breaks.
    #[error("must be at most {MAX_NOTES} characters")]
    Notes(&'static str),
    /// No name and no number: nobody to follow up.
    #[error("a task needs the customer's name or phone number")]
    Nobody,
    /// Not a secretary of the company.
    #[error("not a secretary of this company")]
    Assignee,
    /// Not one of the attempt results.
    #[error(
        "result must be one of reached, no_answer, busy, voicemail, wrong_number, written, other"
    )]
    Result,
}

impl TaskError {
    /// The field the console highlights.
    pub fn field(&self) -> &'static str {
        match self {
            TaskError::Kind => "kind",
            TaskError::Status => "status",
            TaskError::Phone | TaskError::PhoneMissing => "phone",
            TaskError::Email => "email",
            TaskError::Amount => "amount",
            TaskError::InvoiceMissing => "invoice",
            TaskError::Date => "due",
            TaskError::Line(f) | TaskError::Notes(f) => f,
            TaskError::Nobody => "customer",
            TaskError::Assignee => "assignee",
            TaskError::Result => "result",
        }
    }
}

/// A task as typed by a secretary or read from a CSV row: text, unchecked.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    /// `callback`, `invoice`, `quote` or `other`.
    pub kind: String,
    /// The customer's name.
    #[serde(default)]
    pub customer: String,
    /// The customer's phone number, in any usual form.
    #[serde(default)]
    pub phone: String,
    /// The customer's e-mail address.
    #[serde(default)]
    pub email: String,
    /// The amount (`1234.56`, `1 234,56 €`).
    #[serde(default)]
    pub amount: String,
    /// The invoice's number.
    #[serde(default)]
    pub invoice: String,
    /// When it is due (`2026-11-30`, `30/11/2026`), or empty.
    #[serde(default)]
    pub due: String,
    /// A secretary's username, or empty for anyone.
    #[serde(default)]
    pub assignee: String,
    /// Notes.
    #[serde(default)]
    pub notes: String,
}

/// A task checked and ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// What it is about.
    pub kind: Kind,
    /// The customer's name (may be empty when the number is known).
    pub customer: String,
    /// The number to call, E.164.
    pub phone: Option<E164>,
    /// The customer's e-mail address.
    pub email: Option<String>,
    /// The amount, in cents.
    pub amount_cents: Option<i64>,
    /// The invoice's number.
    pub invoice: Option<String>,
    /// When it is due.
    pub due: Option<Date>,
    /// Who should do it (None: anyone).
    pub assignee: Option<String>,
    /// Notes.
    pub notes: String,
}

impl Draft {
    /// Checks every field for a company of `country` served by `secretaries`.
    pub fn check(&self, country: Country, secretaries: &[&str]) -> Result<NewTask, TaskError> {
        let kind = Kind::parse(self.kind.trim()).ok_or(TaskError::Kind)?;
        let customer = line(&self.customer, "customer")?;
        let phone = optional(&self.phone, |t| phone(t, country))?;
        let email = optional(&self.email, email)?;
        let amount_cents = optional(&self.amount, cents)?;
        let invoice = optional(&self.invoice, |t| line(t, "invoice"))?;
        let due = optional(&self.due, date)?;
        let assignee = optional(&self.assignee, |t| assignee(t, secretaries))?;
        let notes = notes(&self.notes, "notes")?;
        if customer.is_empty() && phone.is_none() {
            return Err(TaskError::Nobody);
        }
        match kind {
            Kind::Callback if phone.is_none() => return Err(TaskError::PhoneMissing),
            Kind::Invoice if amount_cents.is_none() || invoice.is_none() => {
                return Err(TaskError::InvoiceMissing);
            }
            _ => {}
        }
        Ok(NewTask {
            kind,
            customer,
            phone,
            email,
            amount_cents,
            invoice,
            due,
            assignee,
            notes,
        })
    }
}

/// `None` for an empty (or blank) field, else the field checked.
fn optional<T>(
    text: &str,
    check: impl FnOnce(&str) -> Result<T, TaskError>,
) -> Result<Option<T>, TaskError> {
    let text = text.trim();
    if text.is_empty() {
        Ok(None)
    } else {
        check(text).map(Some)
    }
}

/// A one-line text, trimmed: at most [`MAX_LINE`] characters, no control characters.
pub fn line(text: &str, field: &'static str) -> Result<String, TaskError> {
    let text = text.trim();
    if text.chars().count() > MAX_LINE || text.chars().any(char::is_control) {
        return Err(TaskError::Line(field));
    }
    Ok(text.to_string())
}

/// Notes or an outcome, trimmed: at most [`MAX_NOTES`] characters; line breaks and tabs
/// are the only control characters kept (a terminal or a page shows the rest as commands).
pub fn notes(text: &str, field: &'static str) -> Result<String, TaskError> {
    let text = text.trim();
    let bad = |c: char| c.is_control() && c != '\n' && c != '\r' && c != '\t';
    if text.chars().count() > MAX_NOTES || text.chars().any(bad) {
        return Err(TaskError::Notes(field));
    }
    Ok(text.to_string())
}

/// A phone number in the company's national form or international: E.164.
pub fn phone(text: &str, country: Country) -> Result<E164, TaskError> {
    if text.len() > 40 {
        return Err(TaskError::Phone);
    }
    match Dialled::parse(text).ok_or(TaskError::Phone)? {
        Dialled::International(n) => Ok(n),
        Dialled::National(n) => country.to_e164(&n).ok_or(TaskError::Phone),
    }
}

/// An e-mail address: one `@`, a local part and a dotted domain, no spaces, quotes or
/// brackets (it may end up in a header), at most 254 bytes (RFC 5321 §4.5.3.1.3).
pub fn email(text: &str) -> Result<String, TaskError> {
    let text = text.trim();
    let Some((local, domain)) = text.split_once('@') else {
        return Err(TaskError::Email);
    };
    let fine = |c: char| {
        c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '\'' | '!' | '#' | '%')
    };
    let ok = text.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && local.chars().all(fine)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    if ok {
        Ok(text.to_string())
    } else {
        Err(TaskError::Email)
    }
}

/// An amount in cents: digits with optional thousands separators (space, no-break space,
/// `'`) and a decimal comma or point with one or two decimals; a currency sign (`€`, `EUR`)
/// around it is allowed. Never a float: `0.1 + 0.2` does not belong in an invoice.
pub fn cents(text: &str) -> Result<i64, TaskError> {
    let text = text.trim();
    let text = text
        .trim_end_matches('€')
        .trim_end_matches("EUR")
        .trim_start_matches('€')
        .trim();
    let digits: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '\''))
        .collect();
    let (units, fraction) = match digits.rsplit_once([',', '.']) {
        Some((u, f)) => (u, f),
        None => (digits.as_str(), ""),
    };
    let all_digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if !all_digits(units)
        || units.len() > 12
        || (!fraction.is_empty() && (!all_digits(fraction) || fraction.len() > 2))
        || (digits.contains([',', '.']) && fraction.is_empty())
    {
        return Err(TaskError::Amount);
    }
    let units: i64 = units.parse().map_err(|_| TaskError::Amount)?;
    let fraction: i64 = match fraction.len() {
        0 => 0,
        1 => fraction.parse::<i64>().map_err(|_| TaskError::Amount)? * 10,
        _ => fraction.parse().map_err(|_| TaskError::Amount)?,
    };
    let total = units
        .checked_mul(100)
        .and_then(|u| u.checked_add(fraction))
        .ok_or(TaskError::Amount)?;
    if total > MAX_CENTS {
        return Err(TaskError::Amount);
    }
    Ok(total)
}

/// Cents written back as an amount (`123456` → `1234.56`).
pub fn amount_text(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A calendar day: ISO (`2026-11-30`) or French (`30/11/2026`).
pub fn date(text: &str) -> Result<Date, TaskError> {
    let text = text.trim();
    if let Some((d, rest)) = text.split_once('/') {
        let (m, y) = rest.split_once('/').ok_or(TaskError::Date)?;
        let num = |s: &str, max: usize| -> Result<i16, TaskError> {
            if s.is_empty() || s.len() > max || !s.chars().all(|c| c.is_ascii_digit()) {
                return Err(TaskError::Date);
            }
            s.parse().map_err(|_| TaskError::Date)
        };
        let (d, m, y) = (num(d, 2)?, num(m, 2)?, num(y, 4)?);
        if y < 1000 {
            return Err(TaskError::Date);
        }
        let m = i8::try_from(m).map_err(|_| TaskError::Date)?;
        let d = i8::try_from(d).map_err(|_| TaskError::Date)?;
        return Date::new(y, m, d).map_err(|_| TaskError::Date);
    }
    if text.len() != 10 {
        return Err(TaskError::Date);
    }
    text.parse::<Date>().map_err(|_| TaskError::Date)
}

/// A secretary of the company, by username.
fn assignee(text: &str, secretaries: &[&str]) -> Result<String, TaskError> {
    secretaries
        .iter()
        .find(|s| **s == text)
        .map(|s| s.to_string())
        .ok_or(TaskError::Assignee)
}

/// Whether a task is overdue on `today` (the company's local day): still to do, and due
/// before today.
pub fn overdue(status: Status, due: Option<Date>, today: Date) -> bool {
    status.is_open() && due.is_some_and(|d| d < today)
}

/// The console's order: overdue first (the oldest due first), then the other open tasks
/// by due date (undated last), then finished ones; the newest first within a tie (`id`).
pub fn console_order(
    a: (Status, Option<Date>, i64),
    b: (Status, Option<Date>, i64),
    today: Date,
) -> Ordering {
    let rank = |(status, due, _): (Status, Option<Date>, i64)| {
        if overdue(status, due, today) {
            0
        } else if status.is_open() {
            1
        } else {
            2
        }
    };
    let due_order = |x: Option<Date>, y: Option<Date>| match (x, y) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    rank(a)
        .cmp(&rank(b))
        .then_with(|| {
            if rank(a) == 2 {
                Ordering::Equal
            } else {
                due_order(a.1, b.1)
            }
        })
        .then_with(|| b.2.cmp(&a.2))
}

/// The status a task takes after an attempt: an open task is now in progress; anything
/// else stays as it is (an attempt does not finish a task: she says when it is done).
pub fn after_attempt(status: Status) -> Status {
    match status {
        Status::Open => Status::InProgress,
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date as d;

    fn fr() -> Country {
        Country::from_code("FR").unwrap()
    }

    fn draft(kind: &str) -> Draft {
        Draft {
            kind: kind.into(),
            customer: "Mme Lefèvre".into(),
            phone: "06 12 34 56 78".into(),
            ..Draft::default()
        }
    }

    #[test]
    fn a_callback_reads_a_national_number() {
        let t = draft("callback").check(fr(), &["alice"]).unwrap();
        assert_eq!(t.kind, Kind::Callback);
        assert_eq!(t.phone.unwrap().as_str(), "+33612345678");
        assert_eq!(t.assignee, None);
    }

    #[test]
    fn each_kind_needs_its_fields() {
        let mut c = draft("callback");
        c.phone.clear();
        assert_eq!(c.check(fr(), &[]), Err(TaskError::PhoneMissing));
        let mut i = draft("invoice");
        i.amount = "120,50".into();
        assert_eq!(i.check(fr(), &[]), Err(TaskError::InvoiceMissing));
        i.invoice = "F-2026-11".into();
        let t = i.check(fr(), &[]).unwrap();
        assert_eq!(
            (t.amount_cents, t.invoice.as_deref()),
            (Some(12050), Some("F-2026-11"))
        );
        let mut nobody = draft("other");
        nobody.customer.clear();
        nobody.phone.clear();
        assert_eq!(nobody.check(fr(), &[]), Err(TaskError::Nobody));
        assert_eq!(draft("meeting").check(fr(), &[]), Err(TaskError::Kind));
    }

    #[test]
    fn an_assignee_must_serve_the_company() {
        let mut t = draft("callback");
        t.assignee = "mallory".into();
        assert_eq!(t.check(fr(), &["alice"]), Err(TaskError::Assignee));
        t.assignee = "alice".into();
        assert_eq!(
            t.check(fr(), &["alice"]).unwrap().assignee.as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn amounts_are_integer_cents() {
        for (text, want) in [
            ("12", 1200),
            ("12.5", 1250),
            ("1 234,56", 123456),
            ("1\u{a0}234,56 €", 123456),
            ("€ 99.99", 9999),
            ("1'000.00", 100000),
            ("0,01", 1),
        ] {
            assert_eq!(cents(text), Ok(want), "{text}");
        }
        for text in [
            "",
            "-5",
            "1.234",
            "12,",
            "abc",
            "1e3",
            "1,2,3",
            "9999999999999",
            "0x10",
        ] {
            assert_eq!(cents(text), Err(TaskError::Amount), "{text}");
        }
        assert_eq!(amount_text(123456), "1234.56");
        assert_eq!(amount_text(5), "0.05");
    }

    #[test]
    fn dates_iso_or_french() {
        assert_eq!(date("2026-11-30"), Ok(d(2026, 11, 30)));
        assert_eq!(date("30/11/2026"), Ok(d(2026, 11, 30)));
        assert_eq!(date("1/2/2027"), Ok(d(2027, 2, 1)));
        for bad in [
            "2026-02-30",
            "31/04/2026",
            "30/11/26",
            "tomorrow",
            "2026-1-1",
            "//",
        ] {
            assert_eq!(date(bad), Err(TaskError::Date), "{bad}");
        }
    }

    #[test]
    fn e_mail_addresses_that_cannot_break_a_header() {
        assert!(email("jean.dupont+factures@exemple.fr").is_ok());
        for bad in [
            "jean",
            "@exemple.fr",
            "jean@",
            "jean@exemple",
            "a b@exemple.fr",
            "jean@exemple.fr\r\nBcc: x@y.z",
            "\"x\"@exemple.fr",
            "jean@.fr",
        ] {
            assert_eq!(email(bad), Err(TaskError::Email), "{bad:?}");
        }
    }

    #[test]
    fn texts_are_bounded_and_without_controls() {
        assert_eq!(
            line("a\u{1b}[2J", "customer"),
            Err(TaskError::Line("customer"))
        );
        assert!(line(&"x".repeat(MAX_LINE + 1), "customer").is_err());
        assert_eq!(
            notes("line one\nline two", "notes").as_deref(),
            Ok("line one\nline two")
        );
        assert_eq!(notes("bell\u{7}", "notes"), Err(TaskError::Notes("notes")));
        assert_eq!(TaskError::Notes("outcome").field(), "outcome");
    }

    #[test]
    fn overdue_tasks_come_first() {
        let today = d(2026, 11, 15);
        let mut tasks = [
            (Status::Done, Some(d(2026, 11, 1)), 1),
            (Status::Open, None, 2),
            (Status::Open, Some(d(2026, 11, 20)), 3),
            (Status::InProgress, Some(d(2026, 11, 10)), 4),
            (Status::Open, Some(d(2026, 11, 5)), 5),
            (Status::Abandoned, None, 6),
            (Status::Open, Some(d(2026, 11, 15)), 7),
        ];
        tasks.sort_by(|a, b| console_order(*a, *b, today));
        let ids: Vec<i64> = tasks.iter().map(|t| t.2).collect();
        assert_eq!(ids, [5, 4, 7, 3, 2, 6, 1]);
        assert!(overdue(Status::Open, Some(d(2026, 11, 14)), today));
        assert!(!overdue(Status::Open, Some(today), today));
        assert!(!overdue(Status::Done, Some(d(2026, 1, 1)), today));
    }

    #[test]
    fn words_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for r in AttemptResult::ALL {
            assert_eq!(AttemptResult::parse(r.as_str()), Some(r));
        }
        assert_eq!(after_attempt(Status::Open), Status::InProgress);
        assert_eq!(after_attempt(Status::Done), Status::Done);
    }
}
