//! Who to ring for a `secretary` step: a pure decision over the secretaries' states, so
//! that strategies (ring-all, longest-idle), assignment and overflow are tested without
//! a phone. [`Hunt`] carries one `secretary` step from its first ring to an answer or
//! giving up; the call task executes what it decides.

use std::time::{Duration, Instant};

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
    fn free(&self) -> Option<u64> {
        match self.state {
            State::Available { idle_since } => Some(idle_since),
            // A wrap-up that is over arrives as `Available` (`desk::Activity::effective`).
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

/// Decides an offer for the team as it is now. `overflow` is whether the step has an
/// `overflow_after`; without it, only assigned secretaries are offered the call.
pub fn offer(candidates: &[Candidate], strategy: Strategy, overflow: bool) -> Offer {
    let mut free: Vec<(&Candidate, u64)> = candidates
        .iter()
        .filter(|c| c.selected)
        .filter_map(|c| c.free().map(|since| (c, since)))
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
pub fn any_available(candidates: &[Candidate]) -> bool {
    candidates
        .iter()
        .any(|c| c.selected && c.assigned && c.free().is_some())
}

/// What a [`Hunt`] says to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Ring these secretaries now (they are counted as ringing from now on).
    Ring(Vec<String>),
    /// Keep waiting: someone is ringing.
    Wait,
    /// Nobody is ringing and nobody is free, but someone who could take the call will be
    /// (on a call, in wrap-up, ringing for another caller): wait in the queue.
    Queue,
    /// Nobody is ringing and nobody is left who could take the call, or the step's time is
    /// up.
    GiveUp,
}

/// How long a secretary who declined a caller (or whose phone failed) is not offered that
/// caller again; others still are.
pub const DECLINE_BACKOFF: Duration = Duration::from_secs(30);

/// One `secretary` step in progress: who rings, who declined, when the offer widens to
/// every secretary and when the step gives up.
#[derive(Debug, Clone)]
pub struct Hunt {
    strategy: Strategy,
    deadline: Instant,
    overflow_at: Option<Instant>,
    /// Whether the overflow has happened (so its instant no longer wakes us).
    overflowed: bool,
    /// Who declined, and until when they are not offered this caller again.
    declined: Vec<(String, Instant)>,
    /// Who was free but went to another caller (a lost claim): not asked again until the
    /// desk changes ([`Hunt::desk_changed`]).
    passed: Vec<String>,
    ringing: Vec<String>,
}

impl Hunt {
    /// A step that lasts `timeout` and overflows after `overflow_after`, when set.
    pub fn new(
        strategy: Strategy,
        timeout: Duration,
        overflow_after: Option<Duration>,
        now: Instant,
    ) -> Hunt {
        Hunt {
            strategy,
            deadline: now + timeout,
            overflow_at: overflow_after.map(|d| now + d),
            overflowed: false,
            declined: Vec::new(),
            passed: Vec::new(),
            ringing: Vec::new(),
        }
    }

    fn declined_now(&self, username: &str, now: Instant) -> bool {
        self.declined
            .iter()
            .any(|(who, until)| who == username && *until > now)
    }

    /// Decides whom to ring given the team as it is now (the desk already says whether a
    /// wrap-up is over). A secretary who declined is not rung again for
    /// [`DECLINE_BACKOFF`]; when nobody is free the caller queues while someone who could
    /// take the call is registered.
    pub fn next(&mut self, team: &[Candidate], now: Instant) -> Next {
        if now >= self.deadline {
            return Next::GiveUp;
        }
        let open: Vec<Candidate> = team
            .iter()
            .filter(|c| !self.declined_now(&c.username, now) && !self.passed.contains(&c.username))
            .filter(|c| !self.ringing.contains(&c.username))
            .cloned()
            .collect();
        let o = offer(&open, self.strategy, self.overflow_at.is_some());
        let assigned = |n: &String| team.iter().any(|c| &c.username == n && c.assigned);
        let (mut names, mut others): (Vec<String>, Vec<String>) =
            o.now.into_iter().partition(|n| assigned(n));
        others.extend(o.overflow);
        if self.overflow_at.is_some_and(|at| now >= at) {
            self.overflowed = true;
            names.extend(others);
        } else if names.is_empty() && self.ringing.is_empty() {
            // Nobody assigned is free (and none rings for this caller): overflow at once
            // rather than ring nobody.
            names = others;
        }
        if self.strategy == Strategy::LongestIdle {
            // One at a time: the next only when the one ringing declines.
            if self.ringing.is_empty() {
                names.truncate(1);
            } else {
                names.clear();
            }
        }
        self.ringing.extend(names.iter().cloned());
        match (names.is_empty(), self.ringing.is_empty()) {
            (false, _) => Next::Ring(names),
            (true, false) => Next::Wait,
            (true, true) if self.someone_could_come(team, now) => Next::Queue,
            (true, true) => Next::GiveUp,
        }
    }

    /// Whether a registered secretary who could take this call, and has not declined it, is
    /// busy for now (or was passed over): worth queueing for.
    fn someone_could_come(&self, team: &[Candidate], now: Instant) -> bool {
        team.iter().any(|c| {
            c.selected
                && (c.assigned || self.overflow_at.is_some())
                && c.state != State::Unregistered
                && !self.declined_now(&c.username, now)
        })
    }

    /// This secretary declined, did not answer or could not be reached: not offered this
    /// caller again for [`DECLINE_BACKOFF`].
    pub fn failed(&mut self, username: &str, now: Instant) {
        self.ringing.retain(|u| u != username);
        self.declined
            .push((username.to_string(), now + DECLINE_BACKOFF));
    }

    /// This secretary went to another caller before we could ring her.
    pub fn lost(&mut self, username: &str) {
        self.ringing.retain(|u| u != username);
        self.passed.push(username.to_string());
    }

    /// The desk changed (someone freed up, registered, or a caller ahead left): everyone
    /// passed over may be asked again.
    pub fn desk_changed(&mut self) {
        self.passed.clear();
    }

    /// Whether the step's offer has widened to every secretary.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Who is ringing now.
    pub fn ringing(&self) -> &[String] {
        &self.ringing
    }

    /// When [`Hunt::next`] must be asked again: the overflow (until it has happened),
    /// then the end of the step.
    pub fn poll_timeout(&self) -> Instant {
        match self.overflow_at {
            Some(at) if !self.overflowed && at < self.deadline => at,
            _ => self.deadline,
        }
    }

    /// Whether the step's time is up.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }
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
        let o = offer(&team, Strategy::RingAll, false);
        assert_eq!(o.now, vec!["alice", "bea"]);
        assert!(o.overflow.is_empty(), "no overflow unless the plan asks");
        let o = offer(&team, Strategy::RingAll, true);
        assert_eq!(
            o.now,
            vec!["alice", "bea"],
            "in wrap-up is busy: the desk hands over a finished one as available"
        );
        assert_eq!(o.overflow, vec!["fred"]);
    }

    #[test]
    fn longest_idle_offers_one_and_overflow_fills_an_empty_team() {
        let team = [
            c("alice", true, State::Available { idle_since: 300 }),
            c("bea", true, State::Available { idle_since: 100 }),
            c("fred", false, State::Available { idle_since: 0 }),
        ];
        assert_eq!(offer(&team, Strategy::LongestIdle, true).now, vec!["bea"]);
        let busy = [
            c("alice", true, State::OnCall),
            c("fred", false, State::Available { idle_since: 0 }),
        ];
        let o = offer(&busy, Strategy::RingAll, true);
        assert_eq!((o.now, o.overflow), (vec!["fred".to_string()], vec![]));
        assert!(
            !any_available(&busy),
            "only assigned secretaries count as available"
        );
        assert!(offer(&busy, Strategy::RingAll, false).now.is_empty());
    }

    #[test]
    fn a_step_naming_secretaries_only_offers_them() {
        let mut team = [
            c("alice", true, State::Available { idle_since: 1 }),
            c("bea", true, State::Available { idle_since: 2 }),
        ];
        team[0].selected = false;
        assert_eq!(offer(&team, Strategy::RingAll, false).now, vec!["bea"]);
    }

    #[test]
    fn a_hunt_moves_on_when_one_declines_and_gives_up_when_nobody_is_left() {
        let t0 = Instant::now();
        let team = [
            c("alice", true, State::Available { idle_since: 100 }),
            c("bea", true, State::Available { idle_since: 200 }),
        ];
        let mut h = Hunt::new(Strategy::LongestIdle, Duration::from_secs(30), None, t0);
        assert_eq!(h.next(&team, t0), Next::Ring(vec!["alice".into()]));
        assert_eq!(h.next(&team, t0), Next::Wait, "one at a time");
        h.failed("alice", t0);
        assert_eq!(h.next(&team, t0), Next::Ring(vec!["bea".into()]));
        h.failed("bea", t0);
        assert_eq!(h.next(&team, t0), Next::GiveUp, "each offered once");
    }

    #[test]
    fn with_everyone_busy_the_caller_queues_until_someone_frees_up() {
        let t0 = Instant::now();
        let busy = [
            c("alice", true, State::OnCall),
            c("bea", true, State::WrapUp { until: 5_000 }),
            c("eve", true, State::Unregistered),
        ];
        let mut h = Hunt::new(Strategy::LongestIdle, Duration::from_secs(20), None, t0);
        assert_eq!(h.next(&busy, t0), Next::Queue);
        let bea_free = [
            c("alice", true, State::OnCall),
            c("bea", true, State::Available { idle_since: 5_000 }),
        ];
        assert_eq!(
            h.next(&bea_free, t0 + Duration::from_secs(3)),
            Next::Ring(vec!["bea".into()])
        );
        let nobody = [c("eve", true, State::Unregistered)];
        let mut h = Hunt::new(Strategy::RingAll, Duration::from_secs(20), None, t0);
        assert_eq!(
            h.next(&nobody, t0),
            Next::GiveUp,
            "nobody registered: no point waiting"
        );
        assert_eq!(
            h.next(&busy, t0 + Duration::from_secs(20)),
            Next::GiveUp,
            "the wait runs out"
        );
    }

    #[test]
    fn a_lost_claim_waits_for_the_desk_and_a_decline_for_its_backoff() {
        let t0 = Instant::now();
        let team = [c("alice", true, State::Available { idle_since: 100 })];
        let mut h = Hunt::new(Strategy::RingAll, Duration::from_secs(120), None, t0);
        assert_eq!(h.next(&team, t0), Next::Ring(vec!["alice".into()]));
        h.lost("alice");
        assert_eq!(h.next(&team, t0), Next::Queue, "she went to a caller ahead");
        h.desk_changed();
        assert_eq!(h.next(&team, t0), Next::Ring(vec!["alice".into()]));
        h.failed("alice", t0);
        let later = t0 + DECLINE_BACKOFF;
        assert_eq!(
            h.next(&team, later - Duration::from_millis(1)),
            Next::GiveUp,
            "the only secretary declined"
        );
        assert_eq!(h.next(&team, later), Next::Ring(vec!["alice".into()]));
    }

    #[test]
    fn a_hunt_overflows_after_its_delay_and_ends_at_its_timeout() {
        let t0 = Instant::now();
        let team = [
            c("alice", true, State::Available { idle_since: 100 }),
            c("fred", false, State::Available { idle_since: 0 }),
        ];
        let mut h = Hunt::new(
            Strategy::RingAll,
            Duration::from_secs(30),
            Some(Duration::from_secs(10)),
            t0,
        );
        assert_eq!(h.next(&team, t0), Next::Ring(vec!["alice".into()]));
        assert_eq!(h.poll_timeout(), t0 + Duration::from_secs(10));
        let t10 = t0 + Duration::from_secs(10);
        assert_eq!(
            h.poll_timeout(),
            t10,
            "still due when the overflow instant has come, until next() has run"
        );
        // alice is ringing, so no longer free; fred joins at the overflow.
        let team = [c("alice", true, State::Ringing), team[1].clone()];
        assert_eq!(h.next(&team, t10), Next::Ring(vec!["fred".into()]));
        assert_eq!(h.ringing(), ["alice", "fred"]);
        assert_eq!(h.poll_timeout(), t0 + Duration::from_secs(30));
        let t30 = t0 + Duration::from_secs(30);
        assert!(h.expired(t30));
        assert_eq!(h.next(&team, t30), Next::GiveUp);
    }
}
