//! The callers waiting for a secretary, across every company: who is ahead of whom, and
//! whether a given caller may be offered a given secretary now. A pure decision over plain
//! data (like `distribution`), kept by the desk under its lock so that two calls racing for
//! the secretary who just became free are settled in queue order, not by who woke first.
//!
//! Order: a higher route `priority` first, then the caller who has waited longest. A
//! caller blocks those behind only for the secretaries it could take itself (assigned to
//! its company or reached by its overflow, selected by its step, not declined by her), and
//! only while nobody rings for it: a caller whose longest-idle offer rings one secretary
//! does not hold back the next caller from another.

use std::cmp::Ordering;

/// One caller in a `secretary` step, from the step's start to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The call's row id.
    pub call: i64,
    /// The company called.
    pub company: String,
    /// The route's priority (higher first).
    pub priority: u8,
    /// When the step started (unix ms): who has waited longest.
    pub since_ms: u64,
    /// Only these secretaries (the step's `who`; empty: anyone).
    pub who: Vec<String>,
    /// Only this group.
    pub group: Option<String>,
    /// Whether the step's overflow has widened the offer to every secretary.
    pub overflowed: bool,
    /// Secretaries who declined this caller, and until when (unix ms) they are not offered
    /// it again.
    pub declined: Vec<(String, u64)>,
    /// Whether a secretary is being rung for it now.
    pub offering: bool,
}

/// A secretary as the queue sees her.
#[derive(Debug, Clone, Copy)]
pub struct Seat<'a> {
    /// SIP username.
    pub username: &'a str,
    /// Companies she answers for.
    pub companies: &'a [String],
    /// Her groups.
    pub groups: &'a [String],
}

impl Waiting {
    /// Whether this caller could be offered `seat` (leaving aside whether she is free).
    pub fn could_take(&self, seat: Seat, now_ms: u64) -> bool {
        let selected = match (self.who.is_empty(), &self.group) {
            (true, None) => true,
            (false, _) => self.who.iter().any(|w| w == seat.username),
            (true, Some(g)) => seat.groups.iter().any(|x| x == g),
        };
        let assigned = seat.companies.iter().any(|c| c == &self.company);
        let declined = self
            .declined
            .iter()
            .any(|(who, until)| who == seat.username && *until > now_ms);
        selected && (assigned || self.overflowed) && !declined
    }
}

/// Queue order: higher priority first, then earlier arrival, then the lower call id.
pub fn ahead(a: &Waiting, b: &Waiting) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then(a.since_ms.cmp(&b.since_ms))
        .then(a.call.cmp(&b.call))
}

/// Whether `call` may be offered `seat` now: no caller ahead of it that nobody is ringing
/// for could take her. A call not in the queue may always be offered.
pub fn may_offer(queue: &[Waiting], call: i64, seat: Seat, now_ms: u64) -> bool {
    let Some(me) = queue.iter().find(|w| w.call == call) else {
        return true;
    };
    !queue.iter().any(|other| {
        other.call != call
            && ahead(other, me) == Ordering::Less
            && !other.offering
            && other.could_take(seat, now_ms)
    })
}

/// Which waiting callers to wake now that `free` secretaries can take a call: for each,
/// the first caller in line who could take her and whom nobody rings for. Only they try
/// to claim her, so a secretary freeing up wakes one caller, not the whole queue.
/// `queue` must be in queue order ([`ahead`]).
pub fn to_wake(queue: &[Waiting], free: &[Seat], now_ms: u64) -> Vec<i64> {
    let mut calls: Vec<i64> = Vec::new();
    for seat in free {
        let first = queue
            .iter()
            .find(|w| !w.offering && w.could_take(*seat, now_ms));
        if let Some(w) = first
            && !calls.contains(&w.call)
        {
            calls.push(w.call);
        }
    }
    calls
}

/// Where a caller goes so that `queue` stays in queue order.
pub fn position(queue: &[Waiting], waiting: &Waiting) -> usize {
    queue.partition_point(|w| ahead(w, waiting) == Ordering::Less)
}

/// One company's line, for `permanence queue` and the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The company.
    pub company: String,
    /// Its callers in queue order: call id and how long they have waited (ms).
    pub callers: Vec<(i64, u64)>,
}

impl Line {
    /// The longest wait (ms).
    pub fn longest_ms(&self) -> u64 {
        self.callers.iter().map(|(_, w)| *w).max().unwrap_or(0)
    }
}

/// Every company's waiting callers, in queue order, companies by name.
pub fn lines(queue: &[Waiting], now_ms: u64) -> Vec<Line> {
    let mut sorted: Vec<&Waiting> = queue.iter().collect();
    sorted.sort_by(|a, b| ahead(a, b));
    let mut lines: Vec<Line> = Vec::new();
    for w in sorted {
        let wait = now_ms.saturating_sub(w.since_ms);
        match lines.iter_mut().find(|l| l.company == w.company) {
            Some(line) => line.callers.push((w.call, wait)),
            None => lines.push(Line {
                company: w.company.clone(),
                callers: vec![(w.call, wait)],
            }),
        }
    }
    lines.sort_by(|a, b| a.company.cmp(&b.company));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(call: i64, company: &str, since_ms: u64) -> Waiting {
        Waiting {
            call,
            company: company.into(),
            priority: 0,
            since_ms,
            who: Vec::new(),
            group: None,
            overflowed: false,
            declined: Vec::new(),
            offering: false,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_caller_who_has_waited_longest_gets_the_secretary_who_frees_up() {
        let companies = names(&["acme"]);
        let alice = Seat {
            username: "alice",
            companies: &companies,
            groups: &[],
        };
        let queue = [waiting(2, "acme", 2_000), waiting(1, "acme", 1_000)];
        assert!(may_offer(&queue, 1, alice, 5_000));
        assert!(!may_offer(&queue, 2, alice, 5_000), "1 arrived first");
        assert!(may_offer(&queue, 3, alice, 5_000), "not queued: no rule");
    }

    #[test]
    fn priority_goes_before_arrival() {
        let companies = names(&["acme"]);
        let alice = Seat {
            username: "alice",
            companies: &companies,
            groups: &[],
        };
        let mut vip = waiting(2, "acme", 9_000);
        vip.priority = 5;
        let queue = [waiting(1, "acme", 1_000), vip];
        assert!(may_offer(&queue, 2, alice, 10_000));
        assert!(!may_offer(&queue, 1, alice, 10_000));
    }

    #[test]
    fn a_secretary_serving_two_companies_takes_the_oldest_caller_of_either() {
        let both = names(&["acme", "globex"]);
        let only_globex = names(&["globex"]);
        let alice = Seat {
            username: "alice",
            companies: &both,
            groups: &[],
        };
        let bob = Seat {
            username: "bob",
            companies: &only_globex,
            groups: &[],
        };
        let queue = [waiting(1, "acme", 1_000), waiting(2, "globex", 2_000)];
        assert!(
            !may_offer(&queue, 2, alice, 3_000),
            "acme's caller is older"
        );
        assert!(may_offer(&queue, 1, alice, 3_000));
        assert!(
            may_offer(&queue, 2, bob, 3_000),
            "bob cannot take acme's caller, so it does not hold globex's back"
        );
    }

    #[test]
    fn a_caller_being_offered_or_declined_does_not_hold_the_others_back() {
        let companies = names(&["acme"]);
        let alice = Seat {
            username: "alice",
            companies: &companies,
            groups: &[],
        };
        let mut first = waiting(1, "acme", 1_000);
        first.offering = true;
        let queue = [first.clone(), waiting(2, "acme", 2_000)];
        assert!(may_offer(&queue, 2, alice, 3_000), "someone rings for 1");
        first.offering = false;
        first.declined = vec![("alice".into(), 10_000)];
        let queue = [first, waiting(2, "acme", 2_000)];
        assert!(may_offer(&queue, 2, alice, 3_000), "alice declined 1");
        assert!(
            !may_offer(&queue, 2, alice, 10_000),
            "for a while only: then 1 is ahead again"
        );
    }

    #[test]
    fn a_step_naming_secretaries_or_a_group_only_claims_them() {
        let companies = names(&["acme"]);
        let day = names(&["day"]);
        let alice = Seat {
            username: "alice",
            companies: &companies,
            groups: &day,
        };
        let mut only_bob = waiting(1, "acme", 1_000);
        only_bob.who = names(&["bob"]);
        let mut night = waiting(2, "acme", 1_500);
        night.group = Some("night".into());
        let queue = [only_bob, night, waiting(3, "acme", 2_000)];
        assert!(may_offer(&queue, 3, alice, 3_000));
    }

    #[test]
    fn overflow_lets_a_caller_claim_secretaries_of_other_companies() {
        let globex = names(&["globex"]);
        let carol = Seat {
            username: "carol",
            companies: &globex,
            groups: &[],
        };
        let mut acme = waiting(1, "acme", 1_000);
        let queue = [acme.clone(), waiting(2, "globex", 2_000)];
        assert!(may_offer(&queue, 2, carol, 3_000), "no overflow yet");
        acme.overflowed = true;
        let queue = [acme, waiting(2, "globex", 2_000)];
        assert!(!may_offer(&queue, 2, carol, 3_000));
    }

    #[test]
    fn a_freed_secretary_wakes_only_the_first_caller_who_could_take_her() {
        let acme = names(&["acme"]);
        let globex = names(&["globex"]);
        let alice = Seat {
            username: "alice",
            companies: &acme,
            groups: &[],
        };
        let bob = Seat {
            username: "bob",
            companies: &globex,
            groups: &[],
        };
        let mut queue = Vec::new();
        for w in [
            waiting(3, "acme", 3_000),
            waiting(1, "acme", 1_000),
            waiting(2, "globex", 2_000),
            waiting(4, "acme", 4_000),
        ] {
            let at = position(&queue, &w);
            queue.insert(at, w);
        }
        let order: Vec<i64> = queue.iter().map(|w| w.call).collect();
        assert_eq!(order, [1, 2, 3, 4], "kept in queue order");
        assert_eq!(to_wake(&queue, &[alice], 5_000), [1]);
        assert_eq!(to_wake(&queue, &[alice, bob], 5_000), [1, 2]);
        queue[0].offering = true;
        assert_eq!(to_wake(&queue, &[alice], 5_000), [3], "someone rings for 1");
        assert!(to_wake(&queue, &[], 5_000).is_empty());
    }

    #[test]
    fn lines_show_each_company_in_order_with_the_longest_wait() {
        let mut vip = waiting(3, "acme", 4_000);
        vip.priority = 1;
        let queue = [waiting(1, "acme", 1_000), waiting(2, "globex", 2_000), vip];
        let lines = lines(&queue, 10_000);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].company, "acme");
        assert_eq!(lines[0].callers, vec![(3, 6_000), (1, 9_000)]);
        assert_eq!(lines[0].longest_ms(), 9_000);
        assert_eq!(lines[1].callers, vec![(2, 8_000)]);
    }
}
