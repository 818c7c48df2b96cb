//! Per-source request counting, as Kamailio's pike module does: how many requests of one
//! kind an address sent in the current window, and whether that is too many. One policy
//! (the endpoint's admission, the call's records) decides what to do about it.
//!
//! Pure: times are milliseconds passed in; memory is bounded however many addresses send.

use std::collections::HashMap;
use std::net::IpAddr;

/// Most addresses counted at once; beyond, counts of past windows are dropped first.
const MAX_TRACKED: usize = 10_000;

/// What one more request from an address means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// Within the limit.
    Allowed,
    /// Over the limit. `first`: the first such request in this window (log it once).
    Over {
        /// Whether it is the first over the limit in this window.
        first: bool,
    },
}

/// Counts per address over fixed windows.
#[derive(Debug)]
pub struct Pike {
    limit: u32,
    window_ms: u64,
    /// Window start and count, by address.
    counts: HashMap<IpAddr, (u64, u32)>,
}

impl Pike {
    /// At most `limit` requests per address per `window_ms` (0: no limit).
    pub fn new(limit: u32, window_ms: u64) -> Pike {
        Pike {
            limit,
            window_ms: window_ms.max(1),
            counts: HashMap::new(),
        }
    }

    /// Counts one request from `source` at `now_ms`. Over the limit, the request after
    /// the window's last allowed one is `first`, and the ones after it are not.
    pub fn hit(&mut self, source: IpAddr, now_ms: u64) -> Hit {
        if self.limit == 0 {
            return Hit::Allowed;
        }
        if self.counts.len() >= MAX_TRACKED && !self.counts.contains_key(&source) {
            let window = self.window_ms;
            self.counts
                .retain(|_, (start, _)| now_ms.saturating_sub(*start) < window);
            if self.counts.len() >= MAX_TRACKED {
                self.counts.clear();
            }
        }
        let entry = self.counts.entry(source).or_insert((now_ms, 0));
        if now_ms.saturating_sub(entry.0) >= self.window_ms {
            *entry = (now_ms, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 <= self.limit {
            Hit::Allowed
        } else {
            Hit::Over {
                first: entry.1 == self.limit + 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn over_the_limit_within_a_window_then_allowed_again() {
        let mut p = Pike::new(3, 1000);
        let a = ip("203.0.113.1");
        assert_eq!(p.hit(a, 0), Hit::Allowed);
        assert_eq!(p.hit(a, 10), Hit::Allowed);
        assert_eq!(p.hit(a, 20), Hit::Allowed);
        assert_eq!(p.hit(a, 30), Hit::Over { first: true });
        assert_eq!(p.hit(a, 40), Hit::Over { first: false });
        assert_eq!(
            p.hit(ip("198.51.100.2"), 50),
            Hit::Allowed,
            "others are not"
        );
        assert_eq!(p.hit(a, 1000), Hit::Allowed, "a new window");
    }

    #[test]
    fn zero_is_no_limit_and_memory_stays_bounded() {
        let mut off = Pike::new(0, 1000);
        assert!((0..10_000).all(|t| off.hit(ip("203.0.113.1"), t) == Hit::Allowed));
        let mut p = Pike::new(5, 1000);
        for i in 0..30_000u32 {
            p.hit(IpAddr::from(i.to_be_bytes()), u64::from(i));
        }
        assert!(p.counts.len() <= MAX_TRACKED);
    }
}
