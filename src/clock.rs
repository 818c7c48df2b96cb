//! One reading of the time, passed into the pure modules by the shell that owns the
//! clock: a monotonic instant for timers and the wall clock (unix milliseconds) for what
//! people read (wrap-up ends, idle since). Tests make their own.

use std::time::{Duration, Instant};

/// Now, on both clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// For timers and deadlines.
    pub instant: Instant,
    /// Unix milliseconds, for times stored or shown.
    pub unix_ms: u64,
}

impl Now {
    /// The system's clocks, read once.
    pub fn system() -> Now {
        Now {
            instant: Instant::now(),
            unix_ms: unix_ms(),
        }
    }

    /// `d` later on both clocks (tests move time forward with it).
    pub fn later(self, d: Duration) -> Now {
        Now {
            instant: self.instant + d,
            unix_ms: self.unix_ms + d.as_millis() as u64,
        }
    }
}

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
