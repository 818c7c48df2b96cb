//! The secretaries' desk: who is registered where, and who is free, ringing, on a call or
//! writing up the last one. Shared by the SIP endpoint (which learns registrations) and
//! the call tasks (which offer calls), behind one short lock: every operation is a few
//! map lookups. Each change of activity is written to the store, so that
//! `permanence secretaries` (another process) shows it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::distribution::{Candidate, State};
use crate::registrar::{Binding, Secretary};
use crate::store::{self, Record, Writer};

/// What a secretary is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activity {
    /// Free since (unix ms).
    Idle { since: u64 },
    /// Being offered a call; `since` is kept so that a missed call does not reset idleness.
    Ringing { since: u64 },
    /// Talking.
    OnCall,
    /// Writing up until (unix ms).
    WrapUp { until: u64 },
}

#[derive(Debug)]
struct Seat {
    secretary: Secretary,
    bindings: Vec<Binding>,
    activity: Activity,
}

/// Every configured secretary's registrations and activity.
pub struct Desk {
    seats: Mutex<BTreeMap<String, Seat>>,
    /// Other accounts' phones (executives): registered, never offered secretary calls.
    others: Mutex<BTreeMap<String, Vec<Binding>>>,
    wrap_up_ms: u64,
    store: Option<Writer>,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desk")
            .field("wrap_up_ms", &self.wrap_up_ms)
            .finish_non_exhaustive()
    }
}

impl Desk {
    /// A desk for these secretaries, all free, none registered yet.
    pub fn new(
        secretaries: &[Secretary],
        wrap_up_ms: u64,
        store: Option<Writer>,
        now_ms: u64,
    ) -> Desk {
        let seats = secretaries
            .iter()
            .map(|s| {
                (
                    s.username.clone(),
                    Seat {
                        secretary: s.clone(),
                        bindings: Vec::new(),
                        activity: Activity::Idle { since: now_ms },
                    },
                )
            })
            .collect();
        let desk = Desk {
            seats: Mutex::new(seats),
            others: Mutex::new(BTreeMap::new()),
            wrap_up_ms,
            store,
        };
        for s in secretaries {
            desk.record(&s.username, "available", None, None);
        }
        desk
    }

    fn seats(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Seat>> {
        // No code panics while holding the lock; if some did, the map is still whole.
        self.seats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, username: &str, state: &'static str, call: Option<i64>, until: Option<u64>) {
        if let Some(store) = &self.store {
            store.write(Record::SecretaryState {
                username: username.to_string(),
                state,
                call,
                until_ms: until.map(|u| u as i64),
                at: store::now_text(),
            });
        }
    }

    /// A secretary's registered contacts changed (REGISTER, expiry, dead keep-alive).
    pub fn set_bindings(&self, username: &str, bindings: Vec<Binding>) {
        if let Some(seat) = self.seats().get_mut(username) {
            seat.bindings = bindings;
            return;
        }
        let mut others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        others.insert(username.to_string(), bindings);
    }

    /// Anyone's live registered phones (an executive's, for a `user:NAME` reach entry).
    pub fn bindings(&self, username: &str, now_ms: u64) -> Vec<Binding> {
        let live = |b: &&Binding| b.expires_at > now_ms / 1000;
        if let Some(seat) = self.seats().get(username) {
            return seat.bindings.iter().filter(live).cloned().collect();
        }
        let others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        others
            .get(username)
            .map(|b| b.iter().filter(live).cloned().collect())
            .unwrap_or_default()
    }

    /// Everyone as distribution sees them for a step of `company` naming `who` or `group`.
    pub fn candidates(
        &self,
        company: &str,
        who: &[String],
        group: Option<&str>,
        now_ms: u64,
    ) -> Vec<Candidate> {
        let now_s = now_ms / 1000;
        self.seats()
            .values()
            .map(|seat| {
                let s = &seat.secretary;
                let registered = seat.bindings.iter().any(|b| b.expires_at > now_s);
                let state = match (registered, seat.activity) {
                    (false, _) => State::Unregistered,
                    (true, Activity::Idle { since }) => State::Available { idle_since: since },
                    (true, Activity::Ringing { .. }) => State::Ringing,
                    (true, Activity::OnCall) => State::OnCall,
                    (true, Activity::WrapUp { until }) => State::WrapUp { until },
                };
                Candidate {
                    username: s.username.clone(),
                    assigned: s.companies.iter().any(|c| c == company),
                    selected: match (who.is_empty(), group) {
                        (true, None) => true,
                        (false, _) => who.contains(&s.username),
                        (true, Some(g)) => s.groups.iter().any(|x| x == g),
                    },
                    state,
                }
            })
            .collect()
    }

    /// Whether an assigned secretary could take a call of `company` now.
    pub fn any_available(&self, company: &str, now_ms: u64) -> bool {
        crate::distribution::any_available(&self.candidates(company, &[], None, now_ms), now_ms)
    }

    /// Marks a free secretary as ringing for `call` and returns where to ring them;
    /// `None` when they were taken (or unregistered) meanwhile.
    pub fn claim(&self, username: &str, call: i64, now_ms: u64) -> Option<Vec<Binding>> {
        let mut seats = self.seats();
        let seat = seats.get_mut(username)?;
        let since = match seat.activity {
            Activity::Idle { since } => since,
            Activity::WrapUp { until } if until <= now_ms => until,
            _ => return None,
        };
        let live: Vec<Binding> = seat
            .bindings
            .iter()
            .filter(|b| b.expires_at > now_ms / 1000)
            .cloned()
            .collect();
        if live.is_empty() {
            return None;
        }
        seat.activity = Activity::Ringing { since };
        drop(seats);
        self.record(username, "ringing", Some(call), None);
        Some(live)
    }

    /// The offer to this secretary ended without them taking the call.
    pub fn release(&self, username: &str) {
        let mut seats = self.seats();
        if let Some(seat) = seats.get_mut(username)
            && let Activity::Ringing { since } = seat.activity
        {
            seat.activity = Activity::Idle { since };
            drop(seats);
            self.record(username, "available", None, None);
        }
    }

    /// The secretary took the call.
    pub fn answered(&self, username: &str, call: i64) {
        if let Some(seat) = self.seats().get_mut(username) {
            seat.activity = Activity::OnCall;
        }
        self.record(username, "on-call", Some(call), None);
    }

    /// The secretary's call ended: wrap-up starts.
    pub fn finished(&self, username: &str, call: i64, now_ms: u64) {
        let until = now_ms + self.wrap_up_ms;
        if let Some(seat) = self.seats().get_mut(username) {
            seat.activity = Activity::WrapUp { until };
        }
        self.record(username, "wrap-up", Some(call), Some(until));
    }
}

/// Unix milliseconds now: activity times are wall-clock, like the records.
pub use crate::clock::unix_ms as now_ms;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Peer, Transport};

    fn secretary(name: &str, companies: &[&str]) -> Secretary {
        Secretary {
            name: name.into(),
            username: name.into(),
            ha1_md5: String::new(),
            ha1_sha256: String::new(),
            companies: companies.iter().map(|c| c.to_string()).collect(),
            groups: vec!["day".into()],
        }
    }

    fn binding(expires_at: u64) -> Binding {
        Binding {
            contact: "sip:a@127.0.0.1:5070".into(),
            source: Peer {
                transport: Transport::Udp,
                addr: "127.0.0.1:5070".parse().unwrap(),
            },
            expires_at,
        }
    }

    #[test]
    fn a_secretary_rings_talks_wraps_up_then_is_free_again() {
        let desk = Desk::new(&[secretary("alice", &["acme"])], 10_000, None, 0);
        assert!(!desk.any_available("acme", 1_000), "not registered yet");
        desk.set_bindings("alice", vec![binding(3_600)]);
        assert!(desk.any_available("acme", 1_000));
        assert!(!desk.any_available("globex", 1_000), "not assigned");
        assert_eq!(desk.claim("alice", 1, 1_000).map(|b| b.len()), Some(1));
        assert_eq!(desk.claim("alice", 2, 1_000), None, "one offer at a time");
        desk.answered("alice", 1);
        assert!(!desk.any_available("acme", 2_000));
        desk.finished("alice", 1, 5_000);
        assert!(!desk.any_available("acme", 14_999), "in wrap-up");
        assert!(desk.any_available("acme", 15_000));
        assert!(desk.claim("alice", 3, 15_000).is_some());
        desk.release("alice");
        assert!(
            desk.any_available("acme", 15_001),
            "a missed call frees them"
        );
    }

    #[test]
    fn expired_registrations_and_groups_count() {
        let desk = Desk::new(&[secretary("alice", &["acme"])], 0, None, 0);
        desk.set_bindings("alice", vec![binding(10)]);
        assert!(desk.claim("alice", 1, 10_000).is_none(), "expired at 10 s");
        let c = desk.candidates("acme", &[], Some("night"), 5_000);
        assert!(!c[0].selected);
        let c = desk.candidates("acme", &[], Some("day"), 5_000);
        assert!(c[0].selected);
    }
}
