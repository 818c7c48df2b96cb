//! Which route a call takes: a pure function of (company plan, call facts, instant).
//! The server and `permanence simulate` both call [`decide`]; `simulate` also asks for
//! the reasons, which are computed only when asked so that a decision stays cheap.

use std::cell::OnceCell;

use jiff::civil::DateTime;

use super::contacts::{Caller, Membership};
use super::{Company, Condition, Route};
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
    local: DateTime,
    openness: OnceCell<Openness>,
}

impl<'a> Context<'a> {
    fn new(company: &'a Company, facts: &'a CallFacts<'a>) -> Self {
        Context {
            company,
            facts,
            membership: company.contacts.membership(facts.caller),
            local: schedule::local_time(facts.now, &company.timezone),
            openness: OnceCell::new(),
        }
    }

    fn openness(&self) -> &Openness {
        self.openness
            .get_or_init(|| self.company.hours.at(self.local))
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
        .find(|(_, r)| ctx.eval(&r.when));
    Decision {
        route: found.map(|(_, r)| r),
        index: found.map(|(i, _)| i),
        contact_name: ctx.membership.name.clone(),
    }
}

/// The same decision, with every route considered up to the chosen one and why.
pub fn explain(company: &Company, facts: &CallFacts) -> (Vec<RouteVerdict>, String) {
    let ctx = Context::new(company, facts);
    let mut verdicts = Vec::new();
    for route in &company.routes {
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
