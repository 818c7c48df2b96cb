//! Callers a company does not want: the built-in contact lists `blocked` (the plan's own
//! entries plus the numbers the secretaries blocked, which the server passes in as a fact)
//! and `telemarketing` (the ranges ARCEP reserved for telemarketing in 2023), and the rule
//! that a blocked caller only ever takes a route written for blocked callers, or else the
//! built-in refusal. Pure: membership is decided from plain data.

use super::contacts::{Caller, ListId, Membership};
use super::{Category, Company, Condition, Route, Step};

/// The name of the built-in list of blocked callers (`when = { caller = "blocked" }`).
pub const BLOCKED: &str = "blocked";
/// The name of the built-in list of ARCEP's telemarketing ranges.
pub const TELEMARKETING: &str = "telemarketing";
/// The name the built-in refusal is recorded under (`calls.route`).
pub const BUILT_IN_ROUTE: &str = "blocked (built-in)";
/// The built-in refusal's status: 603 Decline (RFC 3261 §21.6.2), what the demo plans
/// answer spam with: the caller is told the call is not wanted, not that nobody is there.
pub const BUILT_IN_STATUS: u16 = 603;

/// The number ranges ARCEP reserved for telemarketing (decision 2022-1583, in force since
/// 1 January 2023), as E.164 prefixes: 01 62, 01 63, 02 70, 02 71, 03 77, 03 78, 04 24,
/// 04 25, 05 68, 05 69, 09 48, 09 49, and overseas 09 475 to 09 479.
pub const ARCEP_RANGES: &[&str] = &[
    "+33162", "+33163", "+33270", "+33271", "+33377", "+33378", "+33424", "+33425", "+33568",
    "+33569", "+33948", "+33949", "+339475", "+339476", "+339477", "+339478", "+339479",
];

/// What a company does with callers from the telemarketing ranges (`[company]
/// telemarketing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Telemarketing {
    /// Routed as anyone else; the card and the timeline say where the call comes from.
    #[default]
    Label,
    /// Treated as blocked: the route for blocked callers, or the built-in refusal.
    Refuse,
    /// Routed as anyone else, and not pointed out.
    Accept,
}

impl Telemarketing {
    /// The word written in plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Telemarketing::Label => "label",
            Telemarketing::Refuse => "refuse",
            Telemarketing::Accept => "accept",
        }
    }
}

/// Whether a caller's number is in one of ARCEP's telemarketing ranges. A number read in
/// the company's country, so `0162…` and `+33162…` alike for a French company.
pub fn in_telemarketing_range(caller: &Caller) -> bool {
    match caller {
        Caller::Number(n) => ARCEP_RANGES.iter().any(|p| n.as_str().starts_with(p)),
        Caller::Anonymous | Caller::Other(_) => false,
    }
}

/// The ids of the built-in lists in a company's [`Contacts`](super::Contacts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltInLists {
    /// `blocked`: the plan's entries, the block list, and refused telemarketing.
    pub blocked: ListId,
    /// `telemarketing`: ARCEP's ranges.
    pub telemarketing: ListId,
}

impl Company {
    /// The lists a caller belongs to for this company: the plan's own, `telemarketing`
    /// when the number is in ARCEP's ranges, and `blocked` when the plan lists them there,
    /// when the company blocked the number (`on_block_list`, read by the shell), or when
    /// the company refuses telemarketing.
    pub fn membership(&self, caller: &Caller, on_block_list: bool) -> Membership {
        let mut m = self.contacts.membership(caller);
        let telemarketing = in_telemarketing_range(caller);
        if telemarketing {
            m.lists.insert(self.lists.telemarketing);
        }
        if on_block_list || (telemarketing && self.telemarketing == Telemarketing::Refuse) {
            m.lists.insert(self.lists.blocked);
        }
        m
    }

    /// Whether these lists make the caller blocked.
    pub fn is_blocked(&self, membership: &Membership) -> bool {
        membership.lists.contains(&self.lists.blocked)
    }

    /// Whether the card and the timeline point the caller out as telemarketing: in a
    /// range, and the company did not choose to accept them silently.
    pub fn labels_telemarketing(&self, caller: &Caller) -> bool {
        self.telemarketing != Telemarketing::Accept && in_telemarketing_range(caller)
    }
}

/// Whether a route is written for blocked callers: its condition asks for the `blocked`
/// list without negating it (`caller = "blocked"`, alone or within `all`/`any`). A blocked
/// caller takes only such routes.
pub fn for_blocked(condition: &Condition, blocked: ListId) -> bool {
    names(condition, blocked, true)
}

fn names(condition: &Condition, list: ListId, positive: bool) -> bool {
    match condition {
        Condition::CallerIn(l) => *l == list && positive,
        Condition::All(cs) | Condition::Any(cs) => cs.iter().any(|c| names(c, list, positive)),
        Condition::Not(c) => names(c, list, !positive),
        _ => false,
    }
}

/// The route a blocked caller takes when the plan has none for them (or none that holds
/// now): refused with 603, the message filed as spam. Appended after the plan's routes,
/// so that the call machine runs it like any route.
pub(super) fn built_in_route(blocked: ListId) -> Route {
    Route {
        name: BUILT_IN_ROUTE.to_string(),
        when: Condition::CallerIn(blocked),
        steps: vec![Step::Reject {
            code: BUILT_IN_STATUS,
        }],
        category: Category::Spam,
        priority: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::{Country, E164};

    fn n(s: &str) -> Caller {
        Caller::Number(E164::parse(s).unwrap())
    }

    #[test]
    fn the_arcep_ranges_in_national_and_international_form() {
        let fr = Country::from_code("FR").unwrap();
        for national in [
            "0162000000",
            "0163123456",
            "0270999999",
            "0271000001",
            "0377000000",
            "0378000000",
            "0424000000",
            "0425000000",
            "0568000000",
            "0569000000",
            "0948000000",
            "0949000000",
            "0947500000",
            "0947999999",
        ] {
            let caller = Caller::from_user(Some(national), None, fr);
            assert!(in_telemarketing_range(&caller), "{national}");
            let intl = format!("+33{}", &national[1..]);
            assert!(in_telemarketing_range(&n(&intl)), "{intl}");
        }
        for other in [
            "+33612345678",
            "+33161000000",
            "+33947400000",
            "+33180000001",
            "+44162000000",
            "+3316",
        ] {
            assert!(!in_telemarketing_range(&n(other)), "{other}");
        }
        assert!(!in_telemarketing_range(&Caller::Anonymous));
        assert!(!in_telemarketing_range(&Caller::Other("0162".into())));
    }

    #[test]
    fn a_route_is_for_blocked_callers_when_it_asks_for_them_without_negating() {
        let blocked = ListId(1);
        let vip = ListId(0);
        let caller_in = |l| Condition::CallerIn(l);
        assert!(for_blocked(&caller_in(blocked), blocked));
        assert!(!for_blocked(&caller_in(vip), blocked));
        assert!(!for_blocked(&Condition::Always, blocked));
        assert!(for_blocked(
            &Condition::Any(vec![Condition::CallerAnonymous, caller_in(blocked)]),
            blocked
        ));
        assert!(for_blocked(
            &Condition::All(vec![Condition::Open(false), caller_in(blocked)]),
            blocked
        ));
        assert!(!for_blocked(
            &Condition::Not(Box::new(caller_in(blocked))),
            blocked
        ));
        assert!(for_blocked(
            &Condition::Not(Box::new(Condition::Not(Box::new(caller_in(blocked))))),
            blocked
        ));
    }
}
