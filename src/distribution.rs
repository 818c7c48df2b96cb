//! Who to ring for a `secretary` step: a pure decision over the secretaries' states, so
//! that strategies (ring-all, longest-idle), assignment and overflow are tested without
//! a phone. The call task will execute it when call distribution is wired (issue 4).

use crate::dialplan::Strategy;

/// What a secretary is doing, as far as distribution cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Registered and free since this instant (unix milliseconds).
    Available {
        /// When they last became free.
        idle_since: u64,
    },
    /// Being offered a call.
    Ringing,
    /// Talking.
    OnCall,
    /// Writing up the last call until this instant (unix milliseconds).
    WrapUp {
        /// End of wrap-up.
        until: u64,
    },
    /// No registered phone.
    Unregistered,
}

/// One secretary as distribution sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// SIP username.
    pub username: String,
    /// Whether they are assigned to the calling company (others only get overflow).
    pub assigned: bool,
    /// Whether the step's `who` / `group` selects them (true when the step names nobody).
    pub selected: bool,
    /// Their state.
    pub state: State,
}

impl Candidate {
    fn free(&self, now: u64) -> Option<u64> {
        match self.state {
            State::Available { idle_since } => Some(idle_since),
            State::WrapUp { until } if until <= now => Some(until),
            _ => None,
        }
    }
}

/// Whom to offer the call to now, in order (ring-all: everyone at once; longest-idle: the
/// first, then the next when they decline), and whether overflow widens the offer later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Usernames to ring now, most idle first.
    pub now: Vec<String>,
    /// Usernames to add when the overflow delay passes (not assigned to the company).
    pub overflow: Vec<String>,
}

/// Decides an offer at `now` (unix milliseconds). `overflow` is whether the step has an
/// `overflow_after`; without it, only assigned secretaries are offered the call.
pub fn offer(candidates: &[Candidate], strategy: Strategy, overflow: bool, now: u64) -> Offer {
    let mut free: Vec<(&Candidate, u64)> = candidates
        .iter()
        .filter(|c| c.selected)
        .filter_map(|c| c.free(now).map(|since| (c, since)))
        .collect();
    // Most idle first; ties by name so the order is stable.
    free.sort_by(|(a, sa), (b, sb)| sa.cmp(sb).then_with(|| a.username.cmp(&b.username)));
    let (assigned, others): (Vec<_>, Vec<_>) = free.into_iter().partition(|(c, _)| c.assigned);
    let pick = |list: Vec<(&Candidate, u64)>| -> Vec<String> {
        let names = list.into_iter().map(|(c, _)| c.username.clone());
        match strategy {
            Strategy::RingAll => names.collect(),
            Strategy::LongestIdle => names.take(1).collect(),
        }
    };
    let mut now_list = pick(assigned);
    let mut overflow_list = if overflow { pick(others) } else { Vec::new() };
    if now_list.is_empty() {
        // Nobody assigned is free: overflow at once rather than ring nobody.
        now_list = std::mem::take(&mut overflow_list);
    }
    Offer {
        now: now_list,
        overflow: overflow_list,
    }
}

/// Whether any selected secretary could take a call now: the plans' `secretary_available`.
pub fn any_available(candidates: &[Candidate], now: u64) -> bool {
    candidates
        .iter()
        .any(|c| c.selected && c.assigned && c.free(now).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, assigned: bool, state: State) -> Candidate {
        Candidate {
            username: name.into(),
            assigned,
            selected: true,
            state,
        }
    }

    #[test]
    fn ring_all_rings_every_free_assigned_secretary_most_idle_first() {
        let team = [
            c("bea", true, State::Available { idle_since: 500 }),
            c("alice", true, State::Available { idle_since: 100 }),
            c("carl", true, State::OnCall),
            c("dora", true, State::WrapUp { until: 2_000 }),
            c("eve", true, State::Unregistered),
            c("fred", false, State::Available { idle_since: 0 }),
        ];
        let o = offer(&team, Strategy::RingAll, false, 1_000);
        assert_eq!(o.now, vec!["alice", "bea"]);
        assert!(o.overflow.is_empty(), "no overflow unless the plan asks");
        let o = offer(&team, Strategy::RingAll, true, 3_000);
        assert_eq!(o.now, vec!["alice", "bea", "dora"], "wrap-up over");
        assert_eq!(o.overflow, vec!["fred"]);
    }

    #[test]
    fn longest_idle_offers_one_and_overflow_fills_an_empty_team() {
        let team = [
            c("alice", true, State::Available { idle_since: 300 }),
            c("bea", true, State::Available { idle_since: 100 }),
            c("fred", false, State::Available { idle_since: 0 }),
        ];
        assert_eq!(
            offer(&team, Strategy::LongestIdle, true, 1_000).now,
            vec!["bea"]
        );
        let busy = [
            c("alice", true, State::OnCall),
            c("fred", false, State::Available { idle_since: 0 }),
        ];
        let o = offer(&busy, Strategy::RingAll, true, 1_000);
        assert_eq!((o.now, o.overflow), (vec!["fred".to_string()], vec![]));
        assert!(
            !any_available(&busy, 1_000),
            "only assigned secretaries count as available"
        );
        assert!(offer(&busy, Strategy::RingAll, false, 1_000).now.is_empty());
    }

    #[test]
    fn a_step_naming_secretaries_only_offers_them() {
        let mut team = [
            c("alice", true, State::Available { idle_since: 1 }),
            c("bea", true, State::Available { idle_since: 2 }),
        ];
        team[0].selected = false;
        assert_eq!(offer(&team, Strategy::RingAll, false, 10).now, vec!["bea"]);
    }
}
