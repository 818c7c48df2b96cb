//! Brute force: a source address that keeps presenting wrong credentials is banned for a
//! while, as fail2ban or Kamailio's pike and htable do. While banned, its REGISTERs and
//! INVITEs get 403 without their credentials being looked at, so guessing a password at
//! full speed costs the attacker the ban time, not us a hash per guess.
//!
//! Pure: times are unix seconds passed in; memory is bounded however many addresses try.

use std::collections::HashMap;
use std::net::IpAddr;

/// Most addresses with failures being counted; beyond, the oldest counts are forgotten
/// (an attacker spreading over many addresses still meets each address's limit).
const MAX_TRACKED: usize = 10_000;

/// The rule, from `[registrar]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Wrong credentials from one address within `window_seconds` that ban it (0: never).
    pub max_failures: u32,
    /// The window failures are counted in.
    pub window_seconds: u64,
    /// How long a ban lasts.
    pub ban_seconds: u64,
}

/// A ban just decided, for the log and the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Who.
    pub source: IpAddr,
    /// Failures that led to it.
    pub failures: u32,
    /// Until when (unix seconds).
    pub until: u64,
    /// The username tried last.
    pub username: String,
}

/// Failures and bans by source address.
#[derive(Debug)]
pub struct Bans {
    policy: Policy,
    /// First failure of the current window, and the count in it.
    failures: HashMap<IpAddr, (u64, u32)>,
    banned: HashMap<IpAddr, u64>,
}

impl Bans {
    /// Bans under `policy`.
    pub fn new(policy: Policy) -> Bans {
        Bans {
            policy,
            failures: HashMap::new(),
            banned: HashMap::new(),
        }
    }

    /// Whether `source` is banned at `now`.
    pub fn is_banned(&self, source: IpAddr, now: u64) -> bool {
        self.banned.get(&source).is_some_and(|until| *until > now)
    }

    /// `source` presented wrong credentials for `username` at `now`: the ban this decides,
    /// if it is the one failure too many.
    pub fn failed(&mut self, source: IpAddr, username: &str, now: u64) -> Option<Ban> {
        if self.policy.max_failures == 0 {
            return None;
        }
        self.forget(now);
        let window = self.policy.window_seconds;
        let entry = self.failures.entry(source).or_insert((now, 0));
        if now.saturating_sub(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 < self.policy.max_failures {
            return None;
        }
        let failures = entry.1;
        self.failures.remove(&source);
        let until = now + self.policy.ban_seconds;
        self.banned.insert(source, until);
        Some(Ban {
            source,
            failures,
            until,
            username: username.to_string(),
        })
    }

    /// Credentials from `source` were right: its count starts again.
    pub fn succeeded(&mut self, source: IpAddr) {
        self.failures.remove(&source);
    }

    /// Drops what is over (ended bans, windows past), and the oldest counts when too many.
    fn forget(&mut self, now: u64) {
        if self.failures.len() < MAX_TRACKED && self.banned.len() < MAX_TRACKED {
            return;
        }
        let window = self.policy.window_seconds;
        self.failures
            .retain(|_, (start, _)| now.saturating_sub(*start) < window);
        self.banned.retain(|_, until| *until > now);
        if self.failures.len() >= MAX_TRACKED {
            let mut starts: Vec<u64> = self.failures.values().map(|(s, _)| *s).collect();
            starts.sort_unstable();
            let cut = starts[starts.len() / 2];
            self.failures.retain(|_, (start, _)| *start > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_failures: 5,
            window_seconds: 60,
            ban_seconds: 600,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_fifth_failure_in_a_minute_bans_the_source_for_ten_minutes() {
        let mut b = Bans::new(policy());
        let attacker = ip("203.0.113.9");
        for t in 0..4 {
            assert_eq!(b.failed(attacker, "alice", 100 + t), None);
        }
        let ban = b.failed(attacker, "alice", 104).unwrap();
        assert_eq!((ban.failures, ban.until), (5, 704));
        assert!(b.is_banned(attacker, 703));
        assert!(!b.is_banned(attacker, 704), "over after ten minutes");
        assert!(!b.is_banned(ip("198.51.100.1"), 200), "others are not");
    }

    #[test]
    fn failures_spread_over_more_than_the_window_do_not_add_up() {
        let mut b = Bans::new(policy());
        let typo = ip("198.51.100.1");
        for t in [0, 50, 100, 150, 200, 250, 300] {
            assert_eq!(b.failed(typo, "bob", t), None);
        }
    }

    #[test]
    fn a_success_resets_the_count_and_zero_turns_bans_off() {
        let mut b = Bans::new(policy());
        let phone = ip("198.51.100.1");
        for t in 0..4 {
            b.failed(phone, "bob", t);
        }
        b.succeeded(phone);
        assert_eq!(b.failed(phone, "bob", 5), None);
        let mut off = Bans::new(Policy {
            max_failures: 0,
            ..policy()
        });
        assert!((0..100).all(|t| off.failed(phone, "bob", t).is_none()));
    }

    #[test]
    fn memory_stays_bounded_under_a_spread_attack() {
        let mut b = Bans::new(policy());
        for i in 0..50_000u32 {
            b.failed(IpAddr::from(i.to_be_bytes()), "alice", u64::from(i / 1000));
        }
        assert!(b.failures.len() <= MAX_TRACKED);
    }
}
