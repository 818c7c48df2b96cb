//! Which route a call takes: a pure function of (company plan, call facts, instant).
//! The server and `permanence simulate` both call [`decide`]; `simulate` also asks for
//! the reasons, which are computed only when asked so that a decision stays cheap.
//!
//! A blocked caller (in the `blocked` list: the plan's entries, the company's block list,
//! refused telemarketing) takes only a route written for blocked callers
//! ([`for_blocked`](super::for_blocked)); the plan's last route, the built-in refusal, is
//! one, so a blocked caller never falls through to a route that could ring a secretary.

use std::cell::OnceCell;

use jiff::civil::DateTime;

use super::contacts::{Caller, Membership};
use super::{Company, Condition, Route, for_blocked};
use crate::line::LineOverride;
use crate::number::E164;
use crate::schedule::{self, Openness};

/// What is known about a call when it arrives.
#[derive(Debug, Clone)]
pub struct CallFacts<'a> {
    /// Who calls.
    pub caller: &'a Caller,
    /// The number dialled.
    pub dialled: Option<&'a E164>,
    /// When (the shell reads the clock, not this module).
    pub now: jiff::Timestamp,
    /// Whether at least one secretary could take the call.
    pub secretary_available: bool,
    /// Whether the caller's number is on the company's block list (the shell looks it up).
    pub on_block_list: bool,
    /// The company's line switched by hand (closed or open until a time), if any: while
    /// it applies at `now`, it answers `open` conditions instead of the hours.
    pub line: Option<&'a LineOverride>,
}

/// The chosen route.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// The route, if any matched.
    pub route: Option<&'a Route>,
    /// Its position.
    pub index: Option<usize>,
    /// The contact's name, if the caller is a named contact.
    pub contact_name: Option<String>,
    /// Whether the line's override answered an `open` condition on the way to this
    /// route (the call's timeline says so).
    pub by_line: bool,
}

/// Why a route matched or not, for `simulate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteVerdict {
    /// The route's name.
    pub route: String,
    /// Whether it matched.
    pub matched: bool,
    /// The condition, evaluated, in words.
    pub why: String,
}

struct Context<'a> {
    company: &'a Company,
    facts: &'a CallFacts<'a>,
    membership: Membership,
    /// Whether the caller is blocked: only routes for blocked callers may take them.
    blocked: bool,
    local: DateTime,
    openness: OnceCell<Openness>,
}

impl<'a> Context<'a> {
    fn new(company: &'a Company, facts: &'a CallFacts<'a>) -> Self {
        let membership = company.membership(facts.caller, facts.on_block_list);
        Context {
            company,
            facts,
            blocked: company.is_blocked(&membership),
            membership,
            local: schedule::local_time(facts.now, &company.timezone),
            openness: OnceCell::new(),
        }
    }

    /// Whether a route may take this caller at all: any route for a caller who is not
    /// blocked; for a blocked one, only routes written for blocked callers.
    fn admits(&self, route: &Route) -> bool {
        !self.blocked || for_blocked(&route.when, self.company.lists.blocked)
    }

    fn openness(&self) -> &Openness {
        self.openness.get_or_init(|| match self.line() {
            Some(line) => line.openness(&self.company.timezone),
            None => self.company.hours.at(self.local),
        })
    }

    /// The line's override, when it applies now.
    fn line(&self) -> Option<&LineOverride> {
        self.facts.line.filter(|l| l.applies_at(self.facts.now))
    }

    /// Whether an `open` condition was answered by the line's override.
    fn by_line(&self) -> bool {
        self.openness.get().is_some() && self.line().is_some()
    }

    fn eval(&self, condition: &Condition) -> bool {
        match condition {
            Condition::Always => true,
            Condition::CallerIn(list) => self.membership.lists.contains(list),
            Condition::CallerAnonymous => *self.facts.caller == Caller::Anonymous,
            Condition::CallerMatches(p) => p.matches(self.facts.caller),
            Condition::Dialled(n) => self.facts.dialled == Some(n),
            Condition::Open(want) => matches!(self.openness(), Openness::Open(_)) == *want,
            Condition::At(ranges) => ranges.iter().any(|r| r.contains(self.local)),
            Condition::SecretaryAvailable(want) => self.facts.secretary_available == *want,
            Condition::All(cs) => cs.iter().all(|c| self.eval(c)),
            Condition::Any(cs) => cs.iter().any(|c| self.eval(c)),
            Condition::Not(c) => !self.eval(c),
        }
    }

    fn describe(&self, condition: &Condition) -> String {
        let verdict = |ok: bool| if ok { "yes" } else { "no" };
        match condition {
            Condition::Always => "no condition: matches every call".into(),
            Condition::CallerIn(list) => {
                let name = self.company.contacts.name(*list);
                format!(
                    "caller {} in list `{name}`: {}",
                    self.facts.caller,
                    verdict(self.eval(condition))
                )
            }
            Condition::CallerAnonymous => {
                format!("caller anonymous: {}", verdict(self.eval(condition)))
            }
            Condition::CallerMatches(p) => {
                let p = match p {
                    super::contacts::Pattern::Exact(n) => n.to_string(),
                    super::contacts::Pattern::Prefix(s) => format!("{s}*"),
                };
                format!(
                    "caller {} matches {p}: {}",
                    self.facts.caller,
                    verdict(self.eval(condition))
                )
            }
            Condition::Dialled(n) => format!("dialled {n}: {}", verdict(self.eval(condition))),
            Condition::Open(want) => format!(
                "office {} at {} ({}): {}",
                if *want { "open" } else { "closed" },
                self.local.strftime("%a %Y-%m-%d %H:%M"),
                self.openness(),
                verdict(self.eval(condition))
            ),
            Condition::At(ranges) => format!(
                "local time {} within {}: {}",
                self.local.strftime("%a %H:%M"),
                ranges
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
                verdict(self.eval(condition))
            ),
            Condition::SecretaryAvailable(want) => format!(
                "{}: {}",
                if *want {
                    "a secretary is available"
                } else {
                    "no secretary is available"
                },
                verdict(self.eval(condition))
            ),
            Condition::All(cs) => format!(
                "all of [{}]",
                cs.iter()
                    .map(|c| self.describe(c))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Condition::Any(cs) => format!(
                "any of [{}]",
                cs.iter()
                    .map(|c| self.describe(c))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Condition::Not(c) => format!("not ({})", self.describe(c)),
        }
    }
}

/// Picks the first route whose condition holds.
pub fn decide<'a>(company: &'a Company, facts: &CallFacts) -> Decision<'a> {
    let ctx = Context::new(company, facts);
    let found = company
        .routes
        .iter()
        .enumerate()
        .find(|(_, r)| ctx.admits(r) && ctx.eval(&r.when));
    Decision {
        route: found.map(|(_, r)| r),
        index: found.map(|(i, _)| i),
        contact_name: ctx.membership.name.clone(),
        by_line: ctx.by_line(),
    }
}

/// The same decision, with every route considered up to the chosen one and why.
pub fn explain(company: &Company, facts: &CallFacts) -> (Vec<RouteVerdict>, String) {
    let ctx = Context::new(company, facts);
    let mut verdicts = Vec::new();
    for route in &company.routes {
        if !ctx.admits(route) {
            verdicts.push(RouteVerdict {
                route: route.name.clone(),
                matched: false,
                why: format!(
                    "the caller is blocked and this route is not for blocked callers (caller = \"{}\")",
                    super::BLOCKED
                ),
            });
            continue;
        }
        let matched = ctx.eval(&route.when);
        verdicts.push(RouteVerdict {
            route: route.name.clone(),
            matched,
            why: ctx.describe(&route.when),
        });
        if matched {
            break;
        }
    }
    let local = format!(
        "{} ({})",
        ctx.local.strftime("%A %Y-%m-%d %H:%M"),
        company.timezone_name
    );
    (verdicts, local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialplan::parse_str;

    const PLAN: &str = r#"
[company]
id = "acme"
name = "ACME"
numbers = ["+33180000001", "+33180000009"]
timezone = "Europe/Paris"

[contacts]
vip = ["+33622222222", { number = "+33633333333", name = "Jean Dupont" }]
blocked = ["+33899*", "anonymous"]
friends = ["+336*"]

[hours]
open = ["mon-fri 09:00-12:30", "mon-fri 14:00-18:00"]
holidays = "fr"

[[route]]
name = "blocked"
when = { caller = "blocked" }
steps = [{ reject = { code = 603 } }]
category = "spam"

[[route]]
name = "vip"
when = { caller = "vip" }
steps = [{ hangup = {} }]

[[route]]
name = "second line, open, friend but not on a wednesday morning"
when = { dialled = "+33180000009", all = [{ open = true }, { caller_matches = "+336*" }], not = { at = ["wed 09:00-12:30"] } }
steps = [{ hangup = {} }]

[[route]]
name = "open or a secretary is there"
when = { any = [{ open = true }, { secretary_available = true }] }
steps = [{ hangup = {} }]

[[route]]
name = "closed"
steps = [{ hangup = {} }]
"#;

    fn route(caller: Caller, dialled: &str, at: &str, secretary: bool) -> String {
        let company = parse_str(PLAN).unwrap();
        let dialled = E164::parse(dialled).unwrap();
        let civil: jiff::civil::DateTime = at.parse().unwrap();
        let now = company.timezone.to_timestamp(civil).unwrap();
        let facts = CallFacts {
            caller: &caller,
            dialled: Some(&dialled),
            now,
            secretary_available: secretary,
            on_block_list: false,
            line: None,
        };
        let d = decide(&company, &facts);
        let (verdicts, _) = explain(&company, &facts);
        let name = d.route.map(|r| r.name.clone()).unwrap_or_default();
        assert_eq!(
            verdicts.last().map(|v| v.route.clone()),
            Some(name.clone()),
            "explain agrees with decide"
        );
        name
    }

    fn n(s: &str) -> Caller {
        Caller::Number(E164::parse(s).unwrap())
    }

    const MONDAY_10: &str = "2026-11-30T10:00";
    const SATURDAY_10: &str = "2026-11-28T10:00";

    #[test]
    fn lists_prefixes_and_anonymous_take_precedence_in_route_order() {
        assert_eq!(
            route(n("+33899123456"), "+33180000001", MONDAY_10, false),
            "blocked"
        );
        assert_eq!(
            route(Caller::Anonymous, "+33180000001", MONDAY_10, false),
            "blocked"
        );
        assert_eq!(
            route(n("+33622222222"), "+33180000001", SATURDAY_10, false),
            "vip"
        );
        assert_eq!(
            route(n("+33611111111"), "+33180000001", MONDAY_10, false),
            "open or a secretary is there"
        );
        assert_eq!(
            route(n("+33611111111"), "+33180000001", SATURDAY_10, false),
            "closed"
        );
        assert_eq!(
            route(
                Caller::Other("alice".into()),
                "+33180000001",
                SATURDAY_10,
                true
            ),
            "open or a secretary is there"
        );
    }

    #[test]
    fn all_any_not_and_dialled_number() {
        let friend_line = "second line, open, friend but not on a wednesday morning";
        assert_eq!(
            route(n("+33611111111"), "+33180000009", MONDAY_10, false),
            friend_line
        );
        assert_eq!(
            route(n("+33611111111"), "+33180000009", "2026-12-02T10:00", false),
            "open or a secretary is there",
            "wednesday morning"
        );
        assert_eq!(
            route(n("+33611111111"), "+33180000009", "2026-12-02T15:00", false),
            friend_line,
            "wednesday afternoon"
        );
        assert_eq!(
            route(n("+441234567890"), "+33180000009", MONDAY_10, false),
            "open or a secretary is there",
            "not a +336 number"
        );
    }

    #[test]
    fn holidays_close_the_office_including_easter_based_ones() {
        for (date, what) in [
            ("2026-12-25T10:00", "Christmas"),
            ("2026-04-06T10:00", "Easter Monday 2026"),
            ("2026-05-14T10:00", "Ascension 2026"),
            ("2026-05-25T10:00", "Whit Monday 2026"),
            ("2027-03-29T10:00", "Easter Monday 2027"),
            ("2028-06-05T10:00", "Whit Monday 2028"),
        ] {
            assert_eq!(
                route(n("+33611111111"), "+33180000001", date, false),
                "closed",
                "{what}"
            );
        }
        assert_eq!(
            route(n("+33611111111"), "+33180000001", "2026-04-07T10:00", false),
            "open or a secretary is there"
        );
    }

    #[test]
    fn opening_hours_follow_paris_time_across_daylight_saving_changes() {
        let company = parse_str(PLAN).unwrap();
        let caller = n("+33611111111");
        let dialled = E164::parse("+33180000001").unwrap();
        let at_utc = |s: &str| -> String {
            let facts = CallFacts {
                caller: &caller,
                dialled: Some(&dialled),
                now: s.parse().unwrap(),
                secretary_available: false,
                on_block_list: false,
                line: None,
            };
            decide(&company, &facts)
                .route
                .map(|r| r.name.clone())
                .unwrap_or_default()
        };
        // Friday 27 March 2026 (UTC+1): 08:30Z is 09:30 local, open. Monday 30 March (UTC+2):
        // 06:30Z is 08:30 local, closed; 07:30Z is 09:30, open.
        assert_eq!(
            at_utc("2026-03-27T08:30:00Z"),
            "open or a secretary is there"
        );
        assert_eq!(at_utc("2026-03-30T06:30:00Z"), "closed");
        assert_eq!(
            at_utc("2026-03-30T07:30:00Z"),
            "open or a secretary is there"
        );
        // Back to UTC+1 on Sunday 25 October: Monday 26 October 07:30Z is 08:30 local, closed.
        assert_eq!(
            at_utc("2026-10-23T07:30:00Z"),
            "open or a secretary is there"
        );
        assert_eq!(at_utc("2026-10-26T07:30:00Z"), "closed");
        assert_eq!(
            at_utc("2026-10-26T08:30:00Z"),
            "open or a secretary is there"
        );
    }

    #[test]
    fn named_contacts_are_reported() {
        let company = parse_str(PLAN).unwrap();
        let caller = n("+33633333333");
        let facts = CallFacts {
            caller: &caller,
            dialled: None,
            now: jiff::Timestamp::UNIX_EPOCH,
            secretary_available: false,
            on_block_list: false,
            line: None,
        };
        assert_eq!(
            decide(&company, &facts).contact_name.as_deref(),
            Some("Jean Dupont")
        );
    }

    const GUARDED: &str = r#"
[company]
id = "guarded"
name = "Guarded"
numbers = ["+33180000001"]
timezone = "Europe/Paris"
telemarketing = "TM"

[contacts]
vip = ["+33622222222"]

[hours]
open = ["mon-fri 09:00-18:00"]

[[route]]
name = "vip"
when = { caller = "vip" }
steps = [{ hangup = {} }]

[[route]]
name = "cold callers"
when = { caller = "telemarketing" }
steps = [{ voicemail = {} }]

[[route]]
name = "blocked, closed"
when = { all = [{ caller = "blocked" }, { open = false }] }
steps = [{ voicemail = {} }]

[[route]]
name = "everyone"
steps = [{ hangup = {} }]
"#;

    /// The route taken, and what `explain` said of each route (both must agree).
    fn guarded(
        policy: &str,
        caller: Caller,
        at: &str,
        on_block_list: bool,
    ) -> (String, Vec<RouteVerdict>) {
        let company = parse_str(&GUARDED.replace("TM", policy)).unwrap();
        let civil: jiff::civil::DateTime = at.parse().unwrap();
        let facts = CallFacts {
            caller: &caller,
            dialled: None,
            now: company.timezone.to_timestamp(civil).unwrap(),
            secretary_available: true,
            on_block_list,
            line: None,
        };
        let name = decide(&company, &facts)
            .route
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let (verdicts, _) = explain(&company, &facts);
        assert_eq!(
            verdicts.last().map(|v| v.route.as_str()),
            Some(name.as_str())
        );
        (name, verdicts)
    }

    #[test]
    fn a_blocked_caller_takes_only_a_route_for_blocked_callers_or_the_built_in_refusal() {
        let vip = || n("+33622222222");
        // Closed: the plan's route for blocked callers, although the VIP route comes first.
        let (route, verdicts) = guarded("label", vip(), SATURDAY_10, true);
        assert_eq!(route, "blocked, closed");
        assert!(!verdicts[0].matched);
        assert!(
            verdicts[0].why.contains("the caller is blocked"),
            "{verdicts:?}"
        );
        // Open: no route of the plan is for them now: the built-in refusal, never "everyone".
        let (route, _) = guarded("label", vip(), MONDAY_10, true);
        assert_eq!(route, crate::dialplan::BUILT_IN_ROUTE);
        let (route, _) = guarded("label", n("+33611111111"), MONDAY_10, true);
        assert_eq!(route, crate::dialplan::BUILT_IN_ROUTE);
        // Not blocked: the plan as written; the built-in route never takes them.
        assert_eq!(guarded("label", vip(), MONDAY_10, false).0, "vip");
        assert_eq!(
            guarded("label", n("+33611111111"), MONDAY_10, false).0,
            "everyone"
        );
        let company = parse_str(&GUARDED.replace("TM", "label")).unwrap();
        let last = company.routes.last().unwrap();
        assert_eq!(
            last.steps,
            vec![crate::dialplan::Step::Reject { code: 603 }]
        );
        assert_eq!(last.category, crate::dialplan::Category::Spam);
    }

    #[test]
    fn telemarketing_ranges_are_labelled_refused_or_accepted_as_the_plan_says() {
        let cold = || n("+33162000000");
        // label and accept: routed as anyone (here, by the plan's own telemarketing route).
        assert_eq!(guarded("label", cold(), MONDAY_10, false).0, "cold callers");
        assert_eq!(
            guarded("accept", cold(), MONDAY_10, false).0,
            "cold callers"
        );
        // refuse: blocked; closed, the plan's route for blocked callers; open, the refusal.
        assert_eq!(
            guarded("refuse", cold(), SATURDAY_10, false).0,
            "blocked, closed"
        );
        assert_eq!(
            guarded("refuse", cold(), MONDAY_10, false).0,
            crate::dialplan::BUILT_IN_ROUTE
        );
        // A number next to the ranges is nobody's concern.
        assert_eq!(
            guarded("refuse", n("+33161000000"), MONDAY_10, false).0,
            "everyone"
        );
        let labels = |policy: &str| {
            parse_str(&GUARDED.replace("TM", policy))
                .unwrap()
                .labels_telemarketing(&cold())
        };
        assert_eq!(
            (labels("label"), labels("refuse"), labels("accept")),
            (true, true, false)
        );
    }

    #[test]
    fn a_caller_no_route_takes_is_still_refused_for_want_of_a_route() {
        let company = parse_str(&PLAN.replace(
            "[[route]]\nname = \"closed\"\nsteps = [{ hangup = {} }]\n",
            "",
        ))
        .unwrap();
        let caller = n("+33611111111");
        let civil: jiff::civil::DateTime = SATURDAY_10.parse().unwrap();
        let facts = CallFacts {
            caller: &caller,
            dialled: None,
            now: company.timezone.to_timestamp(civil).unwrap(),
            secretary_available: false,
            on_block_list: false,
            line: None,
        };
        assert!(decide(&company, &facts).route.is_none());
    }

    #[test]
    fn the_lines_override_answers_open_conditions_until_it_ends() {
        use crate::line::{LineOverride, LineState};
        let company = parse_str(PLAN).unwrap();
        let caller = n("+33611111111");
        let dialled = E164::parse("+33180000001").unwrap();
        let at = |s: &str| -> jiff::Timestamp { s.parse().unwrap() };
        let decide_at = |now: &str, line: Option<&LineOverride>| {
            let facts = CallFacts {
                caller: &caller,
                dialled: Some(&dialled),
                now: at(now),
                secretary_available: false,
                on_block_list: false,
                line,
            };
            let d = decide(&company, &facts);
            let (verdicts, _) = explain(&company, &facts);
            let name = d.route.map(|r| r.name.clone()).unwrap_or_default();
            (name, d.by_line, verdicts.last().map(|v| v.why.clone()))
        };
        // Monday 30 November 2026, 10:00 in Paris: open by the hours.
        let closed = LineOverride::new(
            LineState::Closed,
            at("2026-11-30T10:00:00Z"),
            "inondation",
            "alice",
            at("2026-11-30T08:30:00Z"),
        )
        .unwrap();
        let (route, by_line, _) = decide_at("2026-11-30T09:00:00Z", Some(&closed));
        assert_eq!(route, "closed");
        assert!(by_line);
        let (verdicts, _) = explain(
            &company,
            &CallFacts {
                caller: &caller,
                dialled: Some(&dialled),
                now: at("2026-11-30T09:00:00Z"),
                secretary_available: false,
                on_block_list: false,
                line: Some(&closed),
            },
        );
        assert!(
            verdicts.iter().any(|v| v
                .why
                .contains("closed: line switched by hand until 2026-11-30 11:00 (inondation)")),
            "{verdicts:?}"
        );
        // At its end the hours decide again, by themselves.
        let (route, by_line, _) = decide_at("2026-11-30T10:00:00Z", Some(&closed));
        assert_eq!(
            (route.as_str(), by_line),
            ("open or a secretary is there", false)
        );
        // Open until 22:00 on a Saturday evening, closed by the hours.
        let open = LineOverride::new(
            LineState::Open,
            at("2026-11-28T21:00:00Z"),
            "inventaire",
            "alice",
            at("2026-11-28T17:00:00Z"),
        )
        .unwrap();
        assert_eq!(decide_at("2026-11-28T19:00:00Z", None).0, "closed");
        let (route, by_line, _) = decide_at("2026-11-28T19:00:00Z", Some(&open));
        assert_eq!(
            (route.as_str(), by_line),
            ("open or a secretary is there", true)
        );
        // A route decided before any `open` condition is not the override's doing.
        let vip = n("+33622222222");
        let facts = CallFacts {
            caller: &vip,
            dialled: Some(&dialled),
            now: at("2026-11-30T09:00:00Z"),
            secretary_available: false,
            on_block_list: false,
            line: Some(&closed),
        };
        let d = decide(&company, &facts);
        assert_eq!(d.route.map(|r| r.name.as_str()), Some("vip"));
        assert!(!d.by_line);
    }
}
