//! The secretaries' desk: who is registered where, and who is free, ringing, on a call or
//! writing up the last one. Shared by the SIP endpoint (which learns registrations) and
//! the call tasks (which offer calls), behind one short lock: every operation is a few
//! map lookups. Each change of activity is written to the store, so that
//! `permanence secretaries` (another process) shows it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use std::sync::Arc;

use tokio::sync::{Notify, broadcast, watch};

use crate::distribution::{Candidate, State};
use crate::queue::{self, Waiting};
use crate::registrar::{Binding, Secretary};
use crate::store::{self, Record, Writer};

/// What a secretary is doing. Times are unix milliseconds (wall clock, like the records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Free since then.
    Available {
        /// When they last became free.
        since: u64,
    },
    /// Being offered a call; `since` is kept so that a missed call does not reset idleness.
    Ringing {
        /// When they last became free.
        since: u64,
        /// The call offered.
        call: i64,
    },
    /// Talking.
    OnCall {
        /// The call.
        call: i64,
    },
    /// Writing up the last call until then.
    WrapUp {
        /// End of wrap-up.
        until: u64,
        /// The call written up.
        call: i64,
    },
    /// On pause (lunch, admin work): offered no calls until she comes back.
    Paused {
        /// Since when.
        since: u64,
    },
}

impl Activity {
    /// What it means at `now_ms`: a wrap-up that is over is availability since its end.
    /// The one place that rule lives: the desk, distribution and the CLI all ask here.
    pub fn effective(self, now_ms: u64) -> Activity {
        match self {
            Activity::WrapUp { until, .. } if until <= now_ms => {
                Activity::Available { since: until }
            }
            other => other,
        }
    }

    /// Its name in the records and on screens.
    pub fn name(self) -> &'static str {
        match self {
            Activity::Available { .. } => "available",
            Activity::Ringing { .. } => "ringing",
            Activity::OnCall { .. } => "on-call",
            Activity::WrapUp { .. } => "wrap-up",
            Activity::Paused { .. } => "paused",
        }
    }

    /// The call it is about, if any.
    pub fn call(self) -> Option<i64> {
        match self {
            Activity::Available { .. } | Activity::Paused { .. } => None,
            Activity::Ringing { call, .. }
            | Activity::OnCall { call }
            | Activity::WrapUp { call, .. } => Some(call),
        }
    }

    /// Reads one back from a `secretary_states` row (another process: the CLI). `since`
    /// is when the row was written; `None` for a name this version does not know.
    pub fn from_record(
        name: &str,
        call: Option<i64>,
        until_ms: Option<i64>,
        since: u64,
    ) -> Option<Activity> {
        let call = call.unwrap_or_default();
        Some(match name {
            "available" => Activity::Available { since },
            "ringing" => Activity::Ringing { since, call },
            "on-call" => Activity::OnCall { call },
            "paused" => Activity::Paused { since },
            "wrap-up" => Activity::WrapUp {
                until: until_ms.map_or(0, |u| u.max(0) as u64),
                call,
            },
            _ => return None,
        })
    }

    /// As distribution sees it, for a secretary with or without a live phone.
    fn state(self, registered: bool, now_ms: u64) -> State {
        match (registered, self.effective(now_ms)) {
            (false, _) => State::Unregistered,
            (true, Activity::Available { since }) => State::Available { idle_since: since },
            (true, Activity::Ringing { .. }) => State::Ringing,
            (true, Activity::OnCall { .. }) => State::OnCall,
            (true, Activity::WrapUp { until, .. }) => State::WrapUp { until },
            // Not coming back by herself: nobody queues for a paused secretary.
            (true, Activity::Paused { .. }) => State::Unregistered,
        }
    }
}

/// One secretary as the desk sees them now: what a board shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatView {
    /// SIP username.
    pub username: String,
    /// Display name.
    pub name: String,
    /// Companies they answer for.
    pub companies: Vec<String>,
    /// Their groups.
    pub groups: Vec<String>,
    /// Live registered phones.
    pub phones: usize,
    /// What they are doing ([`Activity::effective`] at the time asked).
    pub activity: Activity,
    /// Why she is on pause, when she is.
    pub pause_reason: Option<String>,
}

/// One change on the desk, as broadcast to watchers ([`Desk::subscribe`]). A wrap-up's
/// end is not a change: watchers compute it from `until` ([`Activity::effective`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskChange {
    /// Whose seat.
    pub username: String,
    /// Their activity now.
    pub activity: Activity,
    /// Their live registered phones now.
    pub phones: usize,
    /// When (unix milliseconds).
    pub at_ms: u64,
}

/// How far a slow watcher may fall behind before it misses changes (and should ask
/// [`Desk::view`] again).
const WATCH_BACKLOG: usize = 256;

/// Everything behind the desk's one lock: the seats, and the callers waiting for them.
#[derive(Debug, Default)]
struct Floor {
    seats: BTreeMap<String, Seat>,
    /// In queue order ([`queue::ahead`]).
    queue: Vec<Waiting>,
    /// How to wake each waiting caller's task.
    wakers: BTreeMap<i64, Arc<Notify>>,
}

#[derive(Debug)]
struct Seat {
    secretary: Secretary,
    bindings: Vec<Binding>,
    /// Her browser phone while her console has it connected (`media::webrtc`).
    browser: Option<Binding>,
    activity: Activity,
    /// Why she is on pause (shown on the board).
    pause_reason: Option<String>,
}

/// Every configured secretary's registrations and activity.
pub struct Desk {
    floor: Mutex<Floor>,
    /// Other accounts' phones (executives): registered, never offered secretary calls.
    others: Mutex<BTreeMap<String, Vec<Binding>>>,
    wrap_up_ms: u64,
    store: Option<Writer>,
    watch: broadcast::Sender<DeskChange>,
    /// Bumped on every change, so that queued calls wake up and try again.
    changes: watch::Sender<u64>,
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
                        browser: None,
                        activity: Activity::Available { since: now_ms },
                        pause_reason: None,
                    },
                )
            })
            .collect();
        let desk = Desk {
            floor: Mutex::new(Floor {
                seats,
                queue: Vec::new(),
                wakers: BTreeMap::new(),
            }),
            changes: watch::channel(0).0,
            others: Mutex::new(BTreeMap::new()),
            wrap_up_ms,
            store,
            watch: broadcast::channel(WATCH_BACKLOG).0,
        };
        for s in secretaries {
            desk.record(&s.username, Activity::Available { since: now_ms });
        }
        desk
    }

    fn floor(&self) -> std::sync::MutexGuard<'_, Floor> {
        // No code panics while holding the lock; if some did, the data is still whole.
        self.floor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a seat's new activity to the store (for the CLI, another process).
    fn record(&self, username: &str, activity: Activity) {
        if let Some(store) = &self.store {
            store.write(Record::SecretaryState {
                username: username.to_string(),
                state: activity.name(),
                call: activity.call(),
                until_ms: match activity {
                    Activity::WrapUp { until, .. } => Some(until as i64),
                    _ => None,
                },
                at: store::now_text(),
            });
        }
    }

    /// Tells watchers about a seat that changed.
    fn publish(&self, seat: &Seat, now_ms: u64) {
        if self.watch.receiver_count() == 0 {
            return;
        }
        let _ = self.watch.send(DeskChange {
            username: seat.secretary.username.clone(),
            activity: seat.activity,
            phones: seat.phones(now_ms).count(),
            at_ms: now_ms,
        });
    }

    /// Every change from now on: activity and registrations.
    pub fn subscribe(&self) -> broadcast::Receiver<DeskChange> {
        self.watch.subscribe()
    }

    /// Every secretary as they are at `now_ms`, in username order.
    pub fn view(&self, now_ms: u64) -> Vec<SeatView> {
        self.floor()
            .seats
            .values()
            .map(|seat| SeatView {
                username: seat.secretary.username.clone(),
                name: seat.secretary.name.clone(),
                companies: seat.secretary.companies.clone(),
                groups: seat.secretary.groups.clone(),
                phones: seat.phones(now_ms).count(),
                activity: seat.activity.effective(now_ms),
                pause_reason: seat.pause_reason.clone(),
            })
            .collect()
    }

    /// A secretary's registered contacts changed (REGISTER, expiry, dead keep-alive).
    pub fn set_bindings(&self, username: &str, bindings: Vec<Binding>) {
        let now_ms = crate::clock::unix_ms();
        let mut floor = self.floor();
        if let Some(seat) = floor.seats.get_mut(username) {
            seat.bindings = bindings;
            self.publish(seat, now_ms);
            drop(floor);
            // Outside the lock: dispatching takes it again.
            self.dispatch(now_ms);
            return;
        }
        drop(floor);
        let mut others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        others.insert(username.to_string(), bindings);
    }

    /// A secretary's browser phone came on (`Some`) or went off: one more of her phones,
    /// which registrations do not replace.
    pub fn set_browser(&self, username: &str, binding: Option<Binding>) {
        let now_ms = crate::clock::unix_ms();
        let mut floor = self.floor();
        if let Some(seat) = floor.seats.get_mut(username) {
            seat.browser = binding;
            self.publish(seat, now_ms);
            drop(floor);
            self.dispatch(now_ms);
        }
    }

    /// Anyone's live registered phones (an executive's, for a `user:NAME` reach entry).
    pub fn bindings(&self, username: &str, now_ms: u64) -> Vec<Binding> {
        if let Some(seat) = self.floor().seats.get(username) {
            return seat.phones(now_ms).cloned().collect();
        }
        let others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        others
            .get(username)
            .map(|b| live(b, now_ms).cloned().collect())
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
        self.floor()
            .seats
            .values()
            .map(|seat| {
                let s = &seat.secretary;
                let registered = seat.phones(now_ms).next().is_some();
                Candidate {
                    username: s.username.clone(),
                    assigned: s.companies.iter().any(|c| c == company),
                    selected: match (who.is_empty(), group) {
                        (true, None) => true,
                        (false, _) => who.contains(&s.username),
                        (true, Some(g)) => s.groups.iter().any(|x| x == g),
                    },
                    state: seat.activity.state(registered, now_ms),
                }
            })
            .collect()
    }

    /// Whether an assigned secretary could take a call of `company` now.
    pub fn any_available(&self, company: &str, now_ms: u64) -> bool {
        crate::distribution::any_available(&self.candidates(company, &[], None, now_ms))
    }

    /// Changes a seat's activity when `change` says so (it gets the effective activity),
    /// then records and publishes it. Returns what `change` returned.
    fn change<T>(
        &self,
        username: &str,
        now_ms: u64,
        change: impl FnOnce(&Seat, &[Waiting], Activity) -> Option<(Activity, T)>,
    ) -> Option<T> {
        let mut floor = self.floor();
        let Floor { seats, queue, .. } = &mut *floor;
        let seat = seats.get_mut(username)?;
        let (activity, result) = change(seat, queue, seat.activity.effective(now_ms))?;
        seat.activity = activity;
        self.publish(seat, now_ms);
        drop(floor);
        self.record(username, activity);
        match activity {
            // Someone free: the first caller in line for her tries to claim her.
            Activity::Available { .. } => self.dispatch(now_ms),
            // The desk's clock must now wake at the end of this wrap-up.
            Activity::WrapUp { .. } => self.changed(),
            // A claim, an answer or a pause only makes someone busier.
            Activity::Ringing { .. } | Activity::OnCall { .. } | Activity::Paused { .. } => {}
        }
        Some(result)
    }

    /// Marks a free secretary as ringing for `call` and returns where to ring them;
    /// `None` when they were taken (or unregistered) meanwhile.
    pub fn claim(&self, username: &str, call: i64, now_ms: u64) -> Option<Vec<Binding>> {
        self.change(username, now_ms, |seat, queue, activity| {
            let Activity::Available { since } = activity else {
                return None;
            };
            let s = &seat.secretary;
            let her = queue::Seat {
                username: &s.username,
                companies: &s.companies,
                groups: &s.groups,
            };
            if !queue::may_offer(queue, call, her, now_ms) {
                // A caller ahead in the queue may take her: it goes first.
                return None;
            }
            let phones: Vec<Binding> = seat.phones(now_ms).cloned().collect();
            (!phones.is_empty()).then_some((Activity::Ringing { since, call }, phones))
        })
    }

    /// The offer to this secretary ended without them taking the call.
    pub fn release(&self, username: &str, now_ms: u64) {
        self.change(username, now_ms, |_, _, activity| match activity {
            Activity::Ringing { since, .. } => Some((Activity::Available { since }, ())),
            _ => None,
        });
    }

    /// The secretary took the call.
    pub fn answered(&self, username: &str, call: i64, now_ms: u64) {
        self.change(username, now_ms, |_, _, _| {
            Some((Activity::OnCall { call }, ()))
        });
    }

    /// The secretary's call ended: wrap-up starts.
    pub fn finished(&self, username: &str, call: i64, now_ms: u64) {
        let until = now_ms + self.wrap_up_ms;
        self.change(username, now_ms, |_, _, _| {
            Some((Activity::WrapUp { until, call }, ()))
        });
    }

    /// She goes on pause (`reason` shown on the board): offered no calls. Not while she
    /// is ringing or on a call (false then).
    pub fn pause(&self, username: &str, reason: &str, now_ms: u64) -> bool {
        let paused = self.change(username, now_ms, |_, _, activity| match activity {
            Activity::Available { .. } | Activity::WrapUp { .. } | Activity::Paused { .. } => {
                Some((Activity::Paused { since: now_ms }, ()))
            }
            Activity::Ringing { .. } | Activity::OnCall { .. } => None,
        });
        if paused.is_some()
            && let Some(seat) = self.floor().seats.get_mut(username)
        {
            seat.pause_reason = Some(reason.to_string());
        }
        paused.is_some()
    }

    /// She is back from pause: available (and the first caller in line is woken).
    pub fn resume(&self, username: &str, now_ms: u64) -> bool {
        if let Some(seat) = self.floor().seats.get_mut(username) {
            seat.pause_reason = None;
        }
        self.change(username, now_ms, |_, _, activity| match activity {
            Activity::Paused { .. } => Some((Activity::Available { since: now_ms }, ())),
            _ => None,
        })
        .is_some()
    }

    /// She saved the message of `call`: her wrap-up for it ends now (the next caller
    /// may be offered to her at once). False when she is not in that call's wrap-up.
    pub fn end_wrap_up(&self, username: &str, call: i64, now_ms: u64) -> bool {
        self.change(username, now_ms, |_, _, activity| match activity {
            Activity::WrapUp { call: c, .. } if c == call => {
                Some((Activity::Available { since: now_ms }, ()))
            }
            _ => None,
        })
        .is_some()
    }

    /// Wakes the desk's clock ([`Desk::changes`]): a wrap-up started.
    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A counter bumped when a wrap-up starts: the desk's clock ([`Desk::run_clock`])
    /// waits on it to know when to wake again.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Wakes the first caller in line for each secretary free now (`queue::to_wake`).
    pub fn dispatch(&self, now_ms: u64) {
        let floor = self.floor();
        let free: Vec<queue::Seat> = floor
            .seats
            .values()
            .filter(|seat| {
                matches!(seat.activity.effective(now_ms), Activity::Available { .. })
                    && seat.phones(now_ms).next().is_some()
            })
            .map(|seat| queue::Seat {
                username: &seat.secretary.username,
                companies: &seat.secretary.companies,
                groups: &seat.secretary.groups,
            })
            .collect();
        for call in queue::to_wake(&floor.queue, &free, now_ms) {
            if let Some(waker) = floor.wakers.get(&call) {
                waker.notify_one();
            }
        }
    }

    /// When the earliest wrap-up in progress ends (unix ms), if any.
    pub fn next_wrap_up_end(&self, now_ms: u64) -> Option<u64> {
        self.floor()
            .seats
            .values()
            .filter_map(|seat| match seat.activity {
                Activity::WrapUp { until, .. } if until > now_ms => Some(until),
                _ => None,
            })
            .min()
    }

    /// The desk's clock: a wrap-up's end frees a secretary without anyone telling the
    /// desk, so this wakes at each end (and every second, as a safety net) and wakes the
    /// callers in line. Runs until the task is dropped.
    pub async fn run_clock(self: Arc<Self>) {
        let mut changes = self.changes();
        loop {
            let now_ms = crate::clock::unix_ms();
            let wait = self
                .next_wrap_up_end(now_ms)
                .map_or(1_000, |end| end - now_ms)
                .min(1_000);
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {
                    self.dispatch(crate::clock::unix_ms());
                }
            }
        }
    }

    /// A caller's `secretary` step starts: it takes its place in the queue, and `waker`
    /// is notified when it is first in line for a secretary who frees up.
    pub fn join_queue(&self, waiting: Waiting, waker: Arc<Notify>) {
        let mut floor = self.floor();
        floor.queue.retain(|w| w.call != waiting.call);
        floor.wakers.insert(waiting.call, waker);
        let at = queue::position(&floor.queue, &waiting);
        floor.queue.insert(at, waiting);
    }

    /// Changes a queued caller's entry (offering, declined, overflowed).
    pub fn update_queue(&self, call: i64, update: impl FnOnce(&mut Waiting)) {
        let mut floor = self.floor();
        let Some(w) = floor.queue.iter_mut().find(|w| w.call == call) else {
            return;
        };
        let (offering, declined) = (w.offering, w.declined.len());
        update(w);
        let holds_back_less = (!offering && w.offering) || w.declined.len() > declined;
        drop(floor);
        if holds_back_less {
            // Those behind may now take a secretary this caller no longer holds back.
            self.dispatch(crate::clock::unix_ms());
        }
    }

    /// The caller's step ended (answered, gave up, hung up): it leaves the queue.
    pub fn leave_queue(&self, call: i64) {
        let mut floor = self.floor();
        let Some(at) = floor.queue.iter().position(|w| w.call == call) else {
            return;
        };
        let left = floor.queue.remove(at);
        floor.wakers.remove(&call);
        drop(floor);
        if !left.offering {
            // It held others back (nobody rang for it): they may go now.
            self.dispatch(crate::clock::unix_ms());
        }
    }

    /// Every company's waiting callers, in queue order.
    pub fn queue(&self, now_ms: u64) -> Vec<queue::Line> {
        queue::lines(&self.floor().queue, now_ms)
    }
}

/// The bindings still live at `now_ms`.
impl Seat {
    /// Her live phones: registered ones, then her browser's.
    fn phones(&self, now_ms: u64) -> impl Iterator<Item = &Binding> {
        live(&self.bindings, now_ms).chain(self.browser.as_ref())
    }
}

fn live(bindings: &[Binding], now_ms: u64) -> impl Iterator<Item = &Binding> {
    bindings
        .iter()
        .filter(move |b| b.expires_at > now_ms / 1000)
}

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
        desk.answered("alice", 1, 1_500);
        assert!(!desk.any_available("acme", 2_000));
        desk.finished("alice", 1, 5_000);
        assert!(!desk.any_available("acme", 14_999), "in wrap-up");
        assert!(desk.any_available("acme", 15_000));
        assert!(desk.claim("alice", 3, 15_000).is_some());
        desk.release("alice", 15_000);
        assert!(
            desk.any_available("acme", 15_001),
            "a missed call frees them"
        );
    }

    #[test]
    fn watchers_see_every_change_and_the_view_shows_effective_activity() {
        let desk = Desk::new(&[secretary("alice", &["acme"])], 10_000, None, 0);
        let mut watch = desk.subscribe();
        // Registrations are published at the real time: this one outlives the test.
        desk.set_bindings("alice", vec![binding(u64::MAX / 2_000)]);
        let change = watch.try_recv().unwrap();
        assert_eq!(
            (change.phones, change.activity),
            (1, Activity::Available { since: 0 })
        );
        desk.claim("alice", 7, 1_000).unwrap();
        assert_eq!(
            watch.try_recv().unwrap().activity,
            Activity::Ringing { since: 0, call: 7 }
        );
        desk.answered("alice", 7, 2_000);
        desk.finished("alice", 7, 5_000);
        let kinds: Vec<&str> = std::iter::from_fn(|| watch.try_recv().ok())
            .map(|c| c.activity.name())
            .collect();
        assert_eq!(kinds, ["on-call", "wrap-up"]);
        let view = desk.view(14_999);
        assert_eq!(
            view[0].activity,
            Activity::WrapUp {
                until: 15_000,
                call: 7
            }
        );
        assert_eq!(view[0].phones, 1);
        assert_eq!(
            desk.view(15_000)[0].activity,
            Activity::Available { since: 15_000 },
            "a wrap-up that is over reads as available since its end, with no event needed"
        );
        assert!(
            watch.try_recv().is_err(),
            "reading the view changes nothing"
        );
    }

    fn waiting(call: i64, since_ms: u64) -> Waiting {
        Waiting {
            call,
            company: "acme".into(),
            priority: 0,
            since_ms,
            who: Vec::new(),
            group: None,
            overflowed: false,
            declined: Vec::new(),
            offering: false,
        }
    }

    #[test]
    fn a_secretary_freeing_up_wakes_the_first_caller_in_line_and_only_it_may_claim_her() {
        let desk = Desk::new(&[secretary("alice", &["acme"])], 1_000, None, 0);
        desk.set_bindings("alice", vec![binding(u64::MAX / 2_000)]);
        let now = crate::clock::unix_ms();
        desk.claim("alice", 9, now).unwrap();
        desk.answered("alice", 9, now);
        let (first, second) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        desk.join_queue(waiting(2, 2_000), Arc::clone(&second));
        desk.join_queue(waiting(1, 1_000), Arc::clone(&first));
        assert_eq!(desk.queue(3_000)[0].callers, vec![(1, 2_000), (2, 1_000)]);

        desk.finished("alice", 9, now);
        assert_eq!(desk.next_wrap_up_end(now), Some(now + 1_000));
        desk.dispatch(now + 1_000);
        let woken = |n: &Notify| {
            let notified = n.notified();
            tokio::pin!(notified);
            notified.as_mut().enable()
        };
        assert!(woken(&first), "the caller who waited longest");
        assert!(!woken(&second), "not the whole queue");
        assert!(
            desk.claim("alice", 2, now + 1_000).is_none(),
            "the caller behind cannot take her first"
        );
        assert!(desk.claim("alice", 1, now + 1_000).is_some());
        desk.leave_queue(1);
        desk.leave_queue(2);
        assert!(desk.queue(now).is_empty());
    }

    #[test]
    fn an_activity_read_back_from_the_records_means_the_same() {
        let wrap = Activity::from_record("wrap-up", Some(3), Some(9_000), 0).unwrap();
        assert_eq!(wrap.effective(8_999).name(), "wrap-up");
        assert_eq!(wrap.effective(9_000).name(), "available");
        assert_eq!(wrap.call(), Some(3));
        for a in [
            Activity::Available { since: 5 },
            Activity::Ringing { since: 5, call: 1 },
            Activity::OnCall { call: 1 },
        ] {
            assert_eq!(Activity::from_record(a.name(), a.call(), None, 5), Some(a));
        }
        assert_eq!(Activity::from_record("dancing", None, None, 0), None);
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
