//! Which deliveries a message makes: the executive it is for (or the company's default
//! one), that executive's rule for the message's category, and the channels the rule
//! names, each a row of the outbox. Pure: plain data in, plain data out.
//!
//! A delivery is keyed by the message event that caused it (`message:ID:CATEGORY:EXECUTIVE`)
//! and its channel and target, so that the same event never enqueues twice: editing a
//! message that was already delivered sends nothing new unless its category or its
//! executive changed (a new event, delivered by the new rule).

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;

use crate::config::WebhookConfig;
use crate::dialplan::{Category, Company, Executive, ExecutiveId};

/// An e-mail address as the plans and the config may write it: `local@domain.tld`, ASCII,
/// no quoting, no comments, no display name; bounded (RFC 5321 §4.5.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Checks an address; the error says what was expected.
    pub fn parse(text: &str) -> Result<EmailAddress, String> {
        let expected = "expected an e-mail address such as marie@acme.example";
        let Some((local, domain)) = text.rsplit_once('@') else {
            return Err(format!("no @; {expected}"));
        };
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .split('.')
                .all(|part| !part.is_empty() && part.chars().all(atext));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = domain.len() <= 253
            && labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if text.len() > 254 || !local_ok || !domain_ok {
            return Err(format!(
                "`{}` is not usable; {expected}",
                text.escape_debug()
            ));
        }
        Ok(EmailAddress(text.to_string()))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a rule sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// An e-mail to the executive's `email`.
    Email,
    /// A signed POST to each webhook configured for the company (or for all).
    Webhook,
}

impl Channel {
    /// Reads a channel's name as plans write it.
    pub fn parse(word: &str) -> Option<Channel> {
        match word {
            "email" => Some(Channel::Email),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

/// When a rule delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// As soon as the message is saved (or its call ends).
    Now,
    /// In the executive's daily summary at this local time (the company's time zone).
    Digest(Time),
    /// Not at all: the message stays on the console.
    Never,
}

impl When {
    /// `now`, `never` or `digest HH:MM` (seconds allowed: `digest 18:30:15`).
    pub fn parse(text: &str) -> Result<When, String> {
        let expected = "expected \"now\", \"digest HH:MM\" (the summary's local time) or \"never\"";
        match text.trim() {
            "now" => Ok(When::Now),
            "never" => Ok(When::Never),
            other => {
                let Some(time) = other.strip_prefix("digest ") else {
                    return Err(format!("`{}`: {expected}", text.escape_debug()));
                };
                let time = time.trim();
                let shaped = matches!(time.len(), 5 | 8)
                    && time.char_indices().all(|(i, c)| {
                        if i % 3 == 2 {
                            c == ':'
                        } else {
                            c.is_ascii_digit()
                        }
                    });
                match time.parse::<Time>() {
                    Ok(t) if shaped => Ok(When::Digest(t)),
                    _ => Err(format!(
                        "`{}` is not a time of day; {expected}",
                        text.escape_debug()
                    )),
                }
            }
        }
    }
}

/// An executive's rule for one category of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRule {
    /// The category it applies to.
    pub category: Category,
    /// The channels (empty only with `Never`).
    pub to: Vec<Channel>,
    /// When.
    pub when: When,
}

/// What a row of the outbox sends through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outlet {
    /// An e-mail of its own.
    Email,
    /// A webhook POST.
    Webhook,
    /// A line in the executive's next daily summary: the row waits (`held`) until the
    /// summary is made, then is folded into it.
    Digest,
}

impl Outlet {
    /// The word stored in the outbox's `channel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outlet::Email => "email",
            Outlet::Webhook => "webhook",
            Outlet::Digest => "digest",
        }
    }

    /// The status a new row of this kind starts with.
    pub fn first_status(self) -> &'static str {
        match self {
            Outlet::Digest => "held",
            Outlet::Email | Outlet::Webhook => "pending",
        }
    }
}

/// One delivery a message event makes: a row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The event that caused it; with `outlet` and `target`, its unique key.
    pub event: String,
    /// How it goes.
    pub outlet: Outlet,
    /// The e-mail address or the webhook URL.
    pub target: String,
    /// The executive it is for.
    pub executive: ExecutiveId,
    /// When to send it first: at once, or the summary's time.
    pub due: Timestamp,
}

/// The message, as the rules look at it.
#[derive(Debug, Clone, Copy)]
pub struct MessageFacts<'a> {
    /// Its id (`messages.id`).
    pub id: i64,
    /// Its category now.
    pub category: Category,
    /// The executive the secretary chose, if any.
    pub for_executive: Option<&'a str>,
    /// When the change happened.
    pub at: Timestamp,
}

/// What an outbox row keeps of the plan it was decided under (the JSON in `payload`): the
/// worker composes from it and from the records, whatever plan is in force when it sends,
/// and a company or an executive removed meanwhile still gets its message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payload {
    /// The company's display name.
    pub company_name: String,
    /// Its language (`fr`, `en`): the e-mail's fixed words.
    pub language: String,
    /// Its time zone's IANA name: the e-mail's times.
    pub timezone: String,
    /// The executive's display name.
    pub executive_name: String,
    /// The company's extra message fields: (name, label), in the card's order.
    #[serde(default)]
    pub fields: Vec<(String, String)>,
    /// For a daily summary: its time (RFC 3339); none for a message's own delivery.
    #[serde(default)]
    pub summary_due: Option<String>,
}

impl Payload {
    /// What the rows for this company and executive keep.
    pub fn new(company: &Company, executive: &ExecutiveId) -> Payload {
        Payload {
            company_name: company.name.clone(),
            language: company.language.clone(),
            timezone: company.timezone_name.clone(),
            executive_name: company
                .executives
                .get(executive)
                .map_or_else(|| executive.0.clone(), |e| e.name.clone()),
            fields: company
                .card
                .fields
                .iter()
                .map(|f| (f.name.clone(), f.label.clone()))
                .collect(),
            summary_due: None,
        }
    }
}

/// The key of a message event: the same message with the same category for the same
/// executive is one event, however often it is saved.
pub fn event_key(message: i64, category: Category, executive: &ExecutiveId) -> String {
    format!("message:{message}:{}:{}", category.as_str(), executive.0)
}

/// The executive a message is for: the one the secretary chose, when the plan still has
/// them; otherwise the company's default executive.
pub fn executive_for<'c>(
    company: &'c Company,
    for_executive: Option<&str>,
) -> Option<(&'c ExecutiveId, &'c Executive)> {
    let chosen = for_executive.and_then(|id| company.executives.iter().find(|(k, _)| k.0 == id));
    chosen.or_else(|| {
        let id = company.default_executive.as_ref()?;
        company.executives.get_key_value(id)
    })
}

/// The webhooks that receive this company's messages: those for every company and its own.
pub fn webhooks_for<'w>(
    company: &str,
    hooks: &'w [WebhookConfig],
) -> impl Iterator<Item = &'w WebhookConfig> {
    hooks
        .iter()
        .filter(move |h| h.company.as_deref().is_none_or(|c| c == company))
}

/// The deliveries a message event makes under the company's rules.
pub fn deliveries(
    company: &Company,
    webhooks: &[WebhookConfig],
    message: &MessageFacts,
) -> Vec<Delivery> {
    let Some((id, executive)) = executive_for(company, message.for_executive) else {
        return Vec::new();
    };
    let Some(rule) = executive
        .deliver
        .iter()
        .find(|r| r.category == message.category)
    else {
        return Vec::new();
    };
    let event = event_key(message.id, message.category, id);
    let make = |outlet, target: &str, due| Delivery {
        event: event.clone(),
        outlet,
        target: target.to_string(),
        executive: id.clone(),
        due,
    };
    let mut out = Vec::new();
    for channel in &rule.to {
        match (channel, rule.when) {
            (_, When::Never) => {}
            (Channel::Email, When::Now) => {
                if let Some(email) = &executive.email {
                    out.push(make(Outlet::Email, email.as_str(), message.at));
                }
            }
            (Channel::Email, When::Digest(time)) => {
                if let Some(email) = &executive.email {
                    let due = next_digest(message.at, time, &company.timezone);
                    out.push(make(Outlet::Digest, email.as_str(), due));
                }
            }
            // `check` refuses webhooks in a summary: a summary is an e-mail.
            (Channel::Webhook, When::Digest(_)) => {}
            (Channel::Webhook, When::Now) => {
                for hook in webhooks_for(&company.id.0, webhooks) {
                    out.push(make(Outlet::Webhook, &hook.url, message.at));
                }
            }
        }
    }
    out
}

/// The first summary at `time` (local, in `tz`) strictly after `at`. A local time that
/// does not exist that day (the spring-forward gap) is taken as the instant after the gap;
/// one that happens twice (autumn) as the first (jiff's "compatible" rule).
pub fn next_digest(at: Timestamp, time: Time, tz: &TimeZone) -> Timestamp {
    let mut day = tz.to_datetime(at).date();
    for _ in 0..3 {
        if let Ok(candidate) = tz.to_timestamp(day.to_datetime(time))
            && candidate > at
        {
            return candidate;
        }
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    // Only at the end of jiff's calendar: a day later, in UTC terms.
    at + jiff::SignedDuration::from_hours(24)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialplan::parse_str;

    fn company(executives: &str) -> Company {
        parse_str(&format!(
            "[company]\nid = \"acme\"\nname = \"ACME Plomberie\"\nnumbers = [\"+33180000001\"]\ntimezone = \"Europe/Paris\"\n\n{executives}\n[[route]]\nname = \"r\"\nsteps = [{{ hangup = {{}} }}]\n"
        ))
        .unwrap()
    }

    const MARIE: &str = r#"[executives.marie]
name = "Marie"
reach = ["sip:marie@192.0.2.1"]
email = "marie@acme.example"
deliver = [
  { category = "urgent", to = ["email", "webhook"], when = "now" },
  { category = "normal", to = ["email"], when = "digest 18:30" },
  { category = "spam", to = [], when = "never" },
]
"#;

    fn hook(url: &str, company: Option<&str>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            secret: "whsec_x".into(),
            company: company.map(Into::into),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn an_urgent_message_goes_now_by_email_and_to_the_company_s_webhooks() {
        let acme = company(MARIE);
        let hooks = [
            hook("https://all.example/hook", None),
            hook("https://acme.example/hook", Some("acme")),
            hook("https://globex.example/hook", Some("globex")),
        ];
        let now = at("2026-11-27T09:00:00Z");
        let got = deliveries(
            &acme,
            &hooks,
            &MessageFacts {
                id: 7,
                category: Category::Urgent,
                for_executive: None,
                at: now,
            },
        );
        let got: Vec<_> = got
            .iter()
            .map(|d| (d.event.as_str(), d.outlet, d.target.as_str(), d.due))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "message:7:urgent:marie",
                    Outlet::Email,
                    "marie@acme.example",
                    now
                ),
                (
                    "message:7:urgent:marie",
                    Outlet::Webhook,
                    "https://all.example/hook",
                    now
                ),
                (
                    "message:7:urgent:marie",
                    Outlet::Webhook,
                    "https://acme.example/hook",
                    now
                ),
            ]
        );
    }

    #[test]
    fn a_normal_message_waits_for_the_summary_and_spam_goes_nowhere() {
        let acme = company(MARIE);
        let facts = |category, at| MessageFacts {
            id: 8,
            category,
            for_executive: Some("marie"),
            at,
        };
        // 10:00 in Paris (UTC+1 in November): the summary at 18:30 Paris, 17:30 UTC.
        let d = deliveries(
            &acme,
            &[],
            &facts(Category::Normal, at("2026-11-27T09:00:00Z")),
        );
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].outlet, d[0].due),
            (Outlet::Digest, at("2026-11-27T17:30:00Z"))
        );
        assert_eq!(d[0].outlet.first_status(), "held");
        // After 18:30: tomorrow's.
        let d = deliveries(
            &acme,
            &[],
            &facts(Category::Normal, at("2026-11-27T17:30:00Z")),
        );
        assert_eq!(d[0].due, at("2026-11-28T17:30:00Z"));
        assert!(
            deliveries(
                &acme,
                &[],
                &facts(Category::Spam, at("2026-11-27T09:00:00Z"))
            )
            .is_empty()
        );
        assert!(
            deliveries(
                &acme,
                &[],
                &facts(Category::Low, at("2026-11-27T09:00:00Z"))
            )
            .is_empty(),
            "no rule for the category: nothing"
        );
    }

    #[test]
    fn a_message_for_nobody_goes_to_the_default_executive() {
        let two = format!(
            "{MARIE}\n[executives.bob]\nname = \"Bob\"\nreach = [\"sip:bob@192.0.2.2\"]\nemail = \"bob@acme.example\"\ndeliver = [{{ category = \"urgent\", to = [\"email\"], when = \"now\" }}]\n"
        );
        let acme = company(&two);
        let urgent = |for_executive| MessageFacts {
            id: 9,
            category: Category::Urgent,
            for_executive,
            at: at("2026-11-27T09:00:00Z"),
        };
        // The first executive in the file is the default: marie, although bob sorts first.
        let d = deliveries(&acme, &[], &urgent(None));
        assert_eq!(d[0].target, "marie@acme.example");
        let d = deliveries(&acme, &[], &urgent(Some("bob")));
        assert_eq!(d[0].target, "bob@acme.example");
        assert_eq!(d[0].event, "message:9:urgent:bob");
        // An executive the plan no longer has: the default one.
        let d = deliveries(&acme, &[], &urgent(Some("gone")));
        assert_eq!(d[0].target, "marie@acme.example");

        let plan = format!(
            "[company]\nid = \"acme\"\nname = \"A\"\nnumbers = [\"+33180000001\"]\ndefault_executive = \"bob\"\n\n{two}\n[[route]]\nname = \"r\"\nsteps = [{{ hangup = {{}} }}]\n"
        );
        let acme = parse_str(&plan).unwrap();
        assert_eq!(
            deliveries(&acme, &[], &urgent(None))[0].target,
            "bob@acme.example"
        );
    }

    #[test]
    fn the_summary_time_is_local_and_right_across_daylight_saving_changes() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let t = |h, m| Time::new(h, m, 0, 0).unwrap();
        // The night clocks go forward (2026-03-29, 02:00 → 03:00): 18:30 is UTC+2.
        assert_eq!(
            next_digest(at("2026-03-29T08:00:00Z"), t(18, 30), &paris),
            at("2026-03-29T16:30:00Z")
        );
        // The day before, UTC+1.
        assert_eq!(
            next_digest(at("2026-03-28T08:00:00Z"), t(18, 30), &paris),
            at("2026-03-28T17:30:00Z")
        );
        // A summary at 02:30, which does not exist that night: just after the gap (03:30 CEST).
        assert_eq!(
            next_digest(at("2026-03-28T22:00:00Z"), t(2, 30), &paris),
            at("2026-03-29T01:30:00Z")
        );
        // Clocks go back (2026-10-25, 03:00 → 02:00): 02:30 happens twice, the first is taken.
        assert_eq!(
            next_digest(at("2026-10-24T22:00:00Z"), t(2, 30), &paris),
            at("2026-10-25T00:30:00Z")
        );
        // And 18:30 that day is UTC+1 again.
        assert_eq!(
            next_digest(at("2026-10-25T08:00:00Z"), t(18, 30), &paris),
            at("2026-10-25T17:30:00Z")
        );
    }

    #[test]
    fn addresses_and_times_are_checked() {
        for good in ["marie@acme.example", "m.durand+urgent@mail.acme.fr"] {
            assert!(EmailAddress::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "marie",
            "marie@acme",
            "@acme.example",
            "ma rie@acme.example",
            "marie@acme.example\r\nBcc: x@evil.example",
            "marie@-acme.example",
            "m..d@acme.example",
            "\"m\"@acme.example",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(When::parse("now"), Ok(When::Now));
        assert_eq!(When::parse("never"), Ok(When::Never));
        assert_eq!(
            When::parse("digest 18:30"),
            Ok(When::Digest(Time::new(18, 30, 0, 0).unwrap()))
        );
        assert_eq!(
            When::parse("digest 07:05:09"),
            Ok(When::Digest(Time::new(7, 5, 9, 0).unwrap()))
        );
        for bad in [
            "later",
            "digest",
            "digest 25:00",
            "digest 8:30",
            "digest 18h30",
            "digest 18:30:00.5",
        ] {
            assert!(When::parse(bad).is_err(), "{bad}");
        }
    }
}
