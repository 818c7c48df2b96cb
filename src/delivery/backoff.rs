//! When a delivery that failed is tried again: exponential back-off from
//! `[delivery] retry_first_seconds`, doubling up to `retry_max_seconds`, until
//! `give_up_hours` after it was queued (or retried by hand); then it is `failed`.

use jiff::{SignedDuration, Timestamp};

/// The retry settings (`[delivery]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The wait after the first failure.
    pub first: SignedDuration,
    /// The longest wait.
    pub max: SignedDuration,
    /// How long after it was queued a delivery is given up.
    pub give_up_after: SignedDuration,
}

impl Policy {
    /// From the config.
    pub fn from_config(c: &crate::config::DeliveryConfig) -> Policy {
        Policy {
            first: SignedDuration::from_secs(i64::from(c.retry_first_seconds.max(1))),
            max: SignedDuration::from_secs(i64::from(c.retry_max_seconds.max(1))),
            give_up_after: SignedDuration::from_hours(i64::from(c.give_up_hours.max(1))),
        }
    }

    /// When a delivery queued now is given up.
    pub fn give_up_at(&self, queued: Timestamp) -> Timestamp {
        queued.saturating_add(self.give_up_after).unwrap_or(queued)
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again then.
    RetryAt(Timestamp),
    /// Mark it failed: its time is up, or the receiver refused it for good.
    GiveUp,
}

/// After the `attempts`-th failed attempt (1 for the first) at `now`: the wait doubles from
/// `first` up to `max`; the last retry is at `give_up_at` itself, and a failure then (or a
/// refusal that retrying cannot change) gives up.
pub fn after_failure(
    policy: &Policy,
    attempts: u32,
    now: Timestamp,
    give_up_at: Timestamp,
    retryable: bool,
) -> Next {
    if !retryable || now >= give_up_at {
        return Next::GiveUp;
    }
    let doublings = attempts.saturating_sub(1).min(30);
    let wait = policy
        .first
        .checked_mul(1 << doublings)
        .unwrap_or(policy.max)
        .min(policy.max);
    let at = now.saturating_add(wait).unwrap_or(give_up_at);
    Next::RetryAt(at.min(give_up_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::from_config(&crate::config::DeliveryConfig::default())
    }

    #[test]
    fn waits_double_up_to_an_hour_and_stop_after_a_day() {
        let p = policy();
        let queued: Timestamp = "2026-11-27T09:00:00Z".parse().unwrap();
        let give_up = p.give_up_at(queued);
        assert_eq!(give_up, "2026-11-28T09:00:00Z".parse().unwrap());
        let mut now = queued;
        let mut waits = Vec::new();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match after_failure(&p, attempts, now, give_up, true) {
                Next::RetryAt(at) => {
                    waits.push((at - now).as_secs());
                    now = at;
                }
                Next::GiveUp => break,
            }
        }
        assert_eq!(&waits[..8], [30, 60, 120, 240, 480, 960, 1920, 3600]);
        assert!(waits[8..].iter().all(|w| *w <= 3600));
        assert_eq!(now, give_up, "the last attempt is at the 24 h mark");
        assert_eq!(attempts, waits.len() as u32 + 1);
        assert!((30..40).contains(&attempts), "{attempts} attempts in a day");
    }

    #[test]
    fn a_refusal_for_good_is_not_retried() {
        let p = policy();
        let now: Timestamp = "2026-11-27T09:00:00Z".parse().unwrap();
        assert_eq!(
            after_failure(&p, 1, now, p.give_up_at(now), false),
            Next::GiveUp
        );
        assert_eq!(
            after_failure(&p, 1_000, now, p.give_up_at(now), true),
            Next::RetryAt(now + SignedDuration::from_secs(3600)),
            "many attempts do not overflow"
        );
    }
}
