//! The outbound side's decisions, without I/O: whom to ring for a `secretary` step and
//! when to give up, which of an executive's reach entries to call in turn, what the
//! screened executive's key means, whether a secretary's REFER (or her console's transfer
//! button) is allowed, and when a leg's end ends the call. It takes what happened (a claim's result, a leg's answer or
//! failure, a key, a BYE, a timer) and gives [`Output`]s for the shell to carry out, in
//! order. Like [`crate::call::machine`], it never reads a clock: every input brings [`Now`].

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Now;
use crate::dialplan::{
    Company, Executive, ExecutiveId, ReachEntry, ReachMode, Strategy, TransferTarget,
    allowed_refer, screens_transfers_to,
};
use crate::distribution::{Candidate, DECLINE_BACKOFF, Hunt, Next};
use crate::dnd::Dnd;
use crate::event::{CallEvent, Role};
use crate::queue::Waiting;
use crate::sip::{Peer, Transport};

/// How long an executive has to press 1 or 2 after the announcement starts.
pub const SCREENING_WAIT: Duration = Duration::from_secs(20);
/// How long a REFER's target may ring (each reach entry: the console's transfer too).
pub const REFER_TIMEOUT: Duration = Duration::from_secs(30);

/// One outbound INVITE and the dialog it makes, numbered in the order they were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LegId(pub usize);

/// Where one INVITE goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Request-URI.
    pub uri: String,
    /// Where to send it.
    pub peer: Peer,
}

/// What the machine may read of the desk: who could take a call, where an account's
/// phones are registered, and which executives asked not to be disturbed. Claims go out as
/// [`Output::Claim`], because another call may have taken the secretary meanwhile.
pub trait Roster {
    /// Every secretary as distribution sees them for a step of `company`.
    fn candidates(
        &self,
        company: &str,
        who: &[String],
        group: Option<&str>,
        now_ms: u64,
    ) -> Vec<Candidate>;
    /// The live registered phones of an account (`user:NAME` reach entries).
    fn phones(&self, account: &str, now_ms: u64) -> Vec<Target>;
    /// The executive's do-not-disturb in force (set from their page), if any.
    fn do_not_disturb(&self, executive: &str, now_ms: u64) -> Option<Dnd>;
}

/// The SIP trunk numbers go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRoute {
    /// Where INVITEs for numbers are sent.
    pub proxy: std::net::SocketAddr,
    /// The Request-URI's host for a number (the proxy's address without a domain).
    pub domain: String,
}

/// What became of the outbound side, for the call's machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    /// Nothing the machine needs to know.
    Nothing,
    /// Someone answered (and accepted): the caller is bridged to them.
    Answered,
    /// Nobody took the call (or the executive refused it): the plan's next step.
    GaveUp,
    /// The person the caller talked to hung up (or their audio stopped).
    HungUp,
    /// A secretary's REFER connected the caller to an executive.
    Transferred,
}

/// Why the console's transfer was refused; the web layer gives each its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransferRefused {
    /// She never had this call.
    #[error("not a call of yours")]
    NotHers,
    /// She had it, but the caller no longer talks to her.
    #[error("you are no longer on this call")]
    NotConnected,
    /// She already sent the caller to an executive, who has not answered yet.
    #[error("a transfer of this call is already under way")]
    InProgress,
    /// Not one of the company's executives.
    #[error("not one of the company's executives")]
    UnknownExecutive,
    /// None of the executive's reach entries rings anywhere now.
    #[error("this executive cannot be reached now")]
    Unreachable,
    /// The executive asked not to be disturbed (from their page), until a time.
    #[error("this executive asked not to be disturbed")]
    DoNotDisturb,
    /// A call she placed from a task: nobody called the company, nobody to put through.
    #[error("a call placed from a task is not transferred")]
    PlacedCall,
}

impl TransferRefused {
    /// As the timeline records it.
    pub fn code(self) -> &'static str {
        match self {
            TransferRefused::NotHers => "not-hers",
            TransferRefused::NotConnected => "not-connected",
            TransferRefused::InProgress => "in-progress",
            TransferRefused::UnknownExecutive => "unknown-executive",
            TransferRefused::Unreachable => "unreachable",
            TransferRefused::DoNotDisturb => "dnd",
            TransferRefused::PlacedCall => "placed-call",
        }
    }
}

/// A `secretary` step as the plan gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretaryStep {
    /// Seconds before the step gives up.
    pub timeout: u32,
    /// Only these secretaries (empty: anyone assigned).
    pub who: Vec<String>,
    /// Only this group.
    pub group: Option<String>,
    /// Ring-all or longest-idle.
    pub strategy: Strategy,
    /// Seconds before every secretary is offered the call.
    pub overflow_after: Option<u32>,
    /// The route's priority in the queue (higher first).
    pub priority: u8,
    /// Whether the caller, already answered, hears hold music while queued (a caller not
    /// yet answered hears ringback from their own network).
    pub hold: bool,
    /// Play the queue announcement every this long while queued.
    pub announce_every: Option<Duration>,
}

/// What the shell does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Tell the call's machine.
    News(News),
    /// Mark a free secretary as ringing for this call; answer with
    /// [`OutboundMachine::on_claimed`] (no phones when they were taken meanwhile).
    Claim { secretary: String },
    /// The secretary was offered the call and did not take it: free again.
    Release { secretary: String },
    /// The secretary took the call.
    DeskAnswered { secretary: String },
    /// The secretary's call ended: their wrap-up starts.
    DeskFinished { secretary: String },
    /// Send an INVITE (our media offer inside); a send that fails locally comes back as
    /// [`OutboundMachine::on_failed`].
    Invite {
        leg: LegId,
        role: Role,
        who: String,
        to_uri: String,
        target: Target,
    },
    /// Send the leg's INVITE again with the trunk's credentials (RFC 3261 §22.2).
    Authenticate { leg: LegId },
    /// CANCEL the leg's INVITE.
    Cancel { leg: LegId },
    /// BYE the leg's dialog.
    Bye { leg: LegId },
    /// Open the answered leg's audio (from its SDP answer).
    Open { leg: LegId },
    /// Connect the caller's audio to the leg's.
    Bridge { leg: LegId },
    /// Play the screening announcement to the leg and listen for its keys.
    Announce { leg: LegId },
    /// Stop the announcement.
    StopAnnouncement { leg: LegId },
    /// Close the leg's audio.
    Close { leg: LegId },
    /// Ringback to the caller while a blind transfer rings.
    Ringback,
    /// Tell the referring secretary's phone how its REFER goes (RFC 3515 sipfrag).
    Notify {
        leg: LegId,
        sipfrag: &'static str,
        last: bool,
    },
    /// Add to the call's timeline.
    Event(CallEvent),
    /// Record who took the call.
    Handled { by: String, transfer: bool },
    /// Take the caller's place in the desk's queue (from the step's start).
    JoinQueue(Waiting),
    /// Update the caller's place in the queue.
    UpdateQueue(QueueChange),
    /// Leave the queue (answered, gave up, the call ended).
    LeaveQueue,
    /// Hold music to the caller, looped.
    Hold,
    /// The queue announcement to the caller, then the hold music again.
    QueueAnnouncement,
}

/// A change of the caller's entry in the desk's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueChange {
    /// Someone rings for the caller (they do not hold others back), or nobody does.
    Offering(bool),
    /// This secretary declined the caller: not offered them again until then (unix ms).
    Declined { secretary: String, until_ms: u64 },
    /// The step's offer widened to every secretary.
    Overflowed,
}

/// Where a leg stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    /// INVITE sent, no final answer.
    Calling,
    /// 180/183 received.
    Ringing,
    /// 2xx received and ACKed: a dialog.
    Answered,
    /// CANCEL or BYE sent, or the far end hung up: nothing more to do.
    Done,
}

#[derive(Debug, Clone)]
struct LegInfo {
    role: Role,
    who: String,
    state: LegState,
    authenticated: bool,
}

/// The leg the caller talks to.
#[derive(Debug, Clone)]
struct Connected {
    leg: LegId,
    role: Role,
    who: String,
}

/// A `secretary` step in progress.
#[derive(Debug)]
struct Hunting {
    hunt: Hunt,
    who: Vec<String>,
    group: Option<String>,
    /// Claims asked for and not yet answered.
    claims: usize,
    /// Whether any of this round's claims rang a phone.
    rang: bool,
    /// Since when the caller has been waiting with nobody free, if they have.
    queued_since: Option<Now>,
    /// Whether a caller already answered hears hold music while queued.
    hold: bool,
    /// A periodic announcement while queued: every this long, next at (once queued).
    announce: Option<(Duration, Option<Instant>)>,
    /// Whether the desk's queue knows someone rings for this caller.
    offering: bool,
    /// Whether the desk's queue knows the offer widened to everyone.
    overflowed: bool,
}

/// A `transfer` step (or a REFER) in progress.
#[derive(Debug)]
struct Transfer {
    /// The executive id or URI, as the records name it.
    label: String,
    /// Reach entries per attempt: one each in order, or all at once.
    attempts: Vec<Vec<ReachEntry>>,
    next: usize,
    timeout: Duration,
    deadline: Option<Instant>,
    screening: bool,
    /// The secretary who asked for it (REFER or console).
    referred_by: Option<String>,
    /// That secretary's leg, while they are still on the line.
    secretary: Option<Connected>,
    /// Whether her phone asked by REFER and is told how it goes (NOTIFY, RFC 3515); a
    /// transfer from the console has no subscription to notify.
    notify: bool,
}

/// An executive who answered and hears the announcement.
#[derive(Debug)]
struct Screening {
    leg: LegId,
    deadline: Instant,
}

/// Where the outbound side stands; each stage carries what it needs.
#[derive(Debug, Default)]
enum Stage {
    /// Nothing rung, or everything over.
    #[default]
    Idle,
    /// Secretaries are being rung.
    Hunting(Hunting),
    /// The caller talks to someone.
    Talking(Connected),
    /// An executive's reach entries are being called.
    Transferring(Transfer),
    /// The executive answered and is asked whether to take the call.
    Screening(Transfer, Screening),
}

/// The outbound side of one call.
#[derive(Debug)]
pub struct OutboundMachine {
    company: Arc<Company>,
    /// The call's row id (its place in the desk's queue).
    call: i64,
    /// Our SIP host, for a secretary's To URI.
    local_ip: IpAddr,
    trunk: Option<TrunkRoute>,
    legs: Vec<LegInfo>,
    stage: Stage,
    out: VecDeque<Output>,
}

impl OutboundMachine {
    /// Nothing rung yet.
    pub fn new(
        company: Arc<Company>,
        call: i64,
        local_ip: IpAddr,
        trunk: Option<TrunkRoute>,
    ) -> Self {
        OutboundMachine {
            company,
            call,
            local_ip,
            trunk,
            legs: Vec::new(),
            stage: Stage::Idle,
            out: VecDeque::new(),
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The leg the caller talks to (a referring secretary's, while their transfer rings).
    pub fn connected(&self) -> Option<(LegId, Role, &str)> {
        let c = match &self.stage {
            Stage::Talking(c) => Some(c),
            Stage::Transferring(t) | Stage::Screening(t, _) => t.secretary.as_ref(),
            _ => None,
        };
        c.map(|c| (c.leg, c.role, c.who.as_str()))
    }

    /// Who the caller talks to.
    pub fn connected_to(&self) -> Option<&str> {
        self.connected().map(|(_, _, who)| who)
    }

    /// The executive's leg being screened.
    pub fn screened(&self) -> Option<LegId> {
        match &self.stage {
            Stage::Screening(_, s) => Some(s.leg),
            _ => None,
        }
    }

    /// Where a leg stands.
    pub fn leg_state(&self, leg: LegId) -> Option<LegState> {
        self.legs.get(leg.0).map(|l| l.state)
    }

    /// When [`OutboundMachine::on_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.stage {
            Stage::Hunting(h) => [
                Some(h.hunt.poll_timeout()),
                h.announce.and_then(|(_, at)| at),
            ]
            .into_iter()
            .flatten()
            .min(),
            Stage::Transferring(t) => t.deadline,
            Stage::Screening(_, s) => Some(s.deadline),
            _ => None,
        }
    }

    fn push(&mut self, output: Output) {
        self.out.push_back(output);
    }

    fn event(&mut self, event: CallEvent) {
        self.out.push_back(Output::Event(event));
    }

    fn news(&mut self, news: News) {
        self.out.push_back(Output::News(news));
    }

    // ------------------------------------------------------------------ secretaries

    /// Starts a `secretary` step.
    pub fn offer_secretaries(&mut self, roster: &dyn Roster, step: SecretaryStep, now: Now) {
        self.push(Output::JoinQueue(Waiting {
            call: self.call,
            company: self.company.id.0.clone(),
            priority: step.priority,
            since_ms: now.unix_ms,
            who: step.who.clone(),
            group: step.group.clone(),
            overflowed: false,
            declined: Vec::new(),
            offering: false,
        }));
        self.stage = Stage::Hunting(Hunting {
            hunt: Hunt::new(
                step.strategy,
                Duration::from_secs(u64::from(step.timeout)),
                step.overflow_after
                    .map(|s| Duration::from_secs(u64::from(s))),
                now.instant,
            ),
            who: step.who,
            group: step.group,
            claims: 0,
            rang: false,
            queued_since: None,
            hold: step.hold,
            announce: step.announce_every.map(|every| (every, None)),
            offering: false,
            overflowed: false,
        });
        self.advance(roster, now);
    }

    /// Asks the hunt whom to ring next, or gives up.
    fn advance(&mut self, roster: &dyn Roster, now: Now) {
        let company = self.company.id.0.clone();
        let Stage::Hunting(h) = &mut self.stage else {
            return;
        };
        if h.claims > 0 {
            return;
        }
        let team = roster.candidates(&company, &h.who, h.group.as_deref(), now.unix_ms);
        let next = h.hunt.next(&team, now.instant);
        if h.hunt.overflowed() && !h.overflowed {
            h.overflowed = true;
            self.push(Output::UpdateQueue(QueueChange::Overflowed));
        }
        match next {
            Next::Wait => {}
            Next::GiveUp if self.hunt_expired(now) => self.give_up("timeout", now),
            Next::GiveUp => self.give_up("nobody-left", now),
            Next::Queue => self.queue(now),
            Next::Ring(names) => {
                let Stage::Hunting(h) = &mut self.stage else {
                    return;
                };
                h.claims = names.len();
                h.rang = false;
                for secretary in names {
                    self.push(Output::Claim { secretary });
                }
            }
        }
    }

    fn hunt_expired(&self, now: Now) -> bool {
        matches!(&self.stage, Stage::Hunting(h) if h.hunt.expired(now.instant))
    }

    /// Nobody is free but someone will be: the caller waits (hold music once answered)
    /// until the desk wakes it ([`OutboundMachine::on_desk_changed`]): it does so for the
    /// first caller in line who could take a secretary who just freed up.
    fn queue(&mut self, now: Now) {
        let Stage::Hunting(h) = &mut self.stage else {
            return;
        };
        let offering = std::mem::replace(&mut h.offering, false);
        let first = h.queued_since.is_none();
        if first {
            h.queued_since = Some(now);
            if let Some((every, at)) = &mut h.announce {
                *at = Some(now.instant + *every);
            }
        }
        let hold = h.hold;
        if offering {
            self.push(Output::UpdateQueue(QueueChange::Offering(false)));
        }
        if first {
            self.event(CallEvent::Queued {});
            if hold {
                self.push(Output::Hold);
            }
        }
    }

    /// The desk's answer to [`Output::Claim`]: the secretary's phones, or none when they
    /// were taken (or unregistered) meanwhile.
    pub fn on_claimed(
        &mut self,
        roster: &dyn Roster,
        secretary: &str,
        phones: Vec<Target>,
        now: Now,
    ) {
        let Stage::Hunting(h) = &mut self.stage else {
            // The step ended meanwhile: the secretary is not needed.
            if !phones.is_empty() {
                self.push(Output::Release {
                    secretary: secretary.to_string(),
                });
            }
            return;
        };
        h.claims = h.claims.saturating_sub(1);
        if phones.is_empty() {
            // Taken by another call, or by a caller ahead in the queue: not a decline.
            h.hunt.lost(secretary);
        } else {
            h.rang = true;
        }
        let advance = h.claims == 0 && !h.rang;
        if !phones.is_empty() && !h.offering {
            h.offering = true;
            self.push(Output::UpdateQueue(QueueChange::Offering(true)));
        }
        // An IPv6 host is bracketed in a URI (RFC 3261 §25.1).
        let to_uri = match self.local_ip {
            IpAddr::V4(ip) => format!("sip:{secretary}@{ip}"),
            IpAddr::V6(ip) => format!("sip:{secretary}@[{ip}]"),
        };
        for target in phones {
            self.invite(Role::Secretary, secretary, &to_uri, target);
        }
        if advance {
            // Everyone chosen was taken meanwhile: ask again.
            self.advance(roster, now);
        }
    }

    fn give_up(&mut self, why: &str, now: Now) {
        if let Stage::Hunting(h) = std::mem::take(&mut self.stage) {
            self.leave_queue(&h, why, now);
        }
        self.cancel_ringing(None);
        self.event(CallEvent::SecretaryUnanswered {
            why: why.to_string(),
        });
        self.news(News::GaveUp);
    }

    /// The caller's `secretary` step ends: out of the queue, with how long they waited.
    fn leave_queue(&mut self, h: &Hunting, why: &str, now: Now) {
        self.push(Output::LeaveQueue);
        if let Some(since) = h.queued_since {
            self.event(CallEvent::Dequeued {
                wait_ms: now.unix_ms.saturating_sub(since.unix_ms),
                why: why.to_string(),
            });
        }
    }

    /// The desk changed (someone freed up or registered, a caller ahead left): a caller
    /// waiting for a secretary tries again.
    pub fn on_desk_changed(&mut self, roster: &dyn Roster, now: Now) {
        if let Stage::Hunting(h) = &mut self.stage
            && h.claims == 0
        {
            h.hunt.desk_changed();
            self.advance(roster, now);
        }
    }

    /// Whether the desk's changes matter now (a caller waiting for a secretary).
    pub fn wants_desk_changes(&self) -> bool {
        matches!(self.stage, Stage::Hunting(_))
    }

    // ------------------------------------------------------------------ executives

    /// Starts a `transfer` step (the executive's hours were checked by the call's machine,
    /// so that `simulate` decides the same way). An executive under do-not-disturb is not
    /// called: the plan goes on with its next step.
    pub fn transfer(
        &mut self,
        roster: &dyn Roster,
        to: &TransferTarget,
        timeout: u32,
        screening: bool,
        mode: ReachMode,
        now: Now,
    ) {
        if self.under_dnd(roster, to, now) {
            return self.news(News::GaveUp);
        }
        let timeout = Duration::from_secs(u64::from(timeout));
        let t = self.new_transfer(to, timeout, screening, mode, None);
        self.next_attempt(roster, t, now);
    }

    fn new_transfer(
        &mut self,
        to: &TransferTarget,
        timeout: Duration,
        screening: bool,
        mode: ReachMode,
        secretary: Option<Connected>,
    ) -> Transfer {
        let (label, reach) = match to {
            TransferTarget::Executive(id) => (
                id.0.clone(),
                self.company
                    .executives
                    .get(id)
                    .map(|e| e.reach.clone())
                    .unwrap_or_default(),
            ),
            TransferTarget::Uri(uri) => (
                uri.clone(),
                vec![ReachEntry::parse(uri).unwrap_or_else(|| ReachEntry::Uri(uri.clone()))],
            ),
        };
        let attempts = match mode {
            ReachMode::Sequential => reach.into_iter().map(|r| vec![r]).collect(),
            ReachMode::Simultaneous => vec![reach],
        };
        let referred_by = secretary.as_ref().map(|s| s.who.clone());
        self.event(CallEvent::Transfer {
            to: label.clone(),
            screening,
            by: referred_by.clone(),
        });
        tracing::info!(to = %label, screening, by = ?referred_by, "calling the executive");
        Transfer {
            label,
            attempts,
            next: 0,
            timeout,
            deadline: None,
            screening,
            notify: referred_by.is_some(),
            referred_by,
            secretary,
        }
    }

    /// Calls the next reach entry (or all of them), skipping what cannot be reached.
    fn next_attempt(&mut self, roster: &dyn Roster, mut t: Transfer, now: Now) {
        loop {
            let Some(entries) = t.attempts.get(t.next).cloned() else {
                return self.transfer_failed(t, "unanswered");
            };
            t.next += 1;
            t.deadline = Some(now.instant + t.timeout);
            let mut rang = false;
            for entry in &entries {
                let targets = self.resolve(roster, entry, now);
                let Some(first) = targets.first() else {
                    self.event(CallEvent::ExecutiveUnreachable {
                        executive: t.label.clone(),
                        reach: entry.to_string(),
                    });
                    continue;
                };
                let to_uri = first.uri.clone();
                for target in targets {
                    self.invite(Role::Executive, &t.label, &to_uri, target);
                    rang = true;
                }
            }
            if rang {
                self.stage = Stage::Transferring(t);
                return;
            }
        }
    }

    /// Whether `to` is an executive who set do-not-disturb; the timeline says so (with
    /// its end) when they did.
    fn under_dnd(&mut self, roster: &dyn Roster, to: &TransferTarget, now: Now) -> bool {
        let TransferTarget::Executive(id) = to else {
            return false;
        };
        let Some(dnd) = roster.do_not_disturb(&id.0, now.unix_ms) else {
            return false;
        };
        tracing::info!(executive = %id.0, until = %dnd.until, "executive not called: do not disturb");
        self.event(dnd.event(&id.0));
        true
    }

    fn resolve(&self, roster: &dyn Roster, entry: &ReachEntry, now: Now) -> Vec<Target> {
        resolve(roster, self.trunk.as_ref(), entry, now.unix_ms)
    }

    /// The transfer found nobody (or was refused): the plan's next step, or for a REFER,
    /// the secretary keeps the caller.
    fn transfer_failed(&mut self, t: Transfer, why: &str) {
        self.stage = Stage::Idle;
        self.cancel_ringing(None);
        self.event(CallEvent::TransferFailed {
            to: t.label,
            why: why.to_string(),
        });
        if t.referred_by.is_none() {
            return self.news(News::GaveUp);
        }
        let sipfrag = if why == "refused" {
            "SIP/2.0 603 Decline"
        } else {
            "SIP/2.0 480 Temporarily Unavailable"
        };
        match t.secretary {
            Some(secretary) => {
                // The secretary is still there: the caller stays with them.
                if t.notify {
                    self.push(Output::Notify {
                        leg: secretary.leg,
                        sipfrag,
                        last: true,
                    });
                }
                self.stage = Stage::Talking(secretary);
            }
            None => self.news(News::HungUp),
        }
    }

    /// A key from a leg: for the executive being screened, 1 accepts, anything else
    /// refuses.
    pub fn on_digit(&mut self, leg: LegId, key: char) {
        if self.screened() != Some(leg) {
            return;
        }
        let Stage::Screening(t, s) = std::mem::take(&mut self.stage) else {
            return;
        };
        self.event(CallEvent::ScreeningKey {
            key: key.to_string(),
        });
        if key == '1' {
            self.push(Output::StopAnnouncement { leg: s.leg });
            self.event(CallEvent::ExecutiveAccepted {
                executive: t.label.clone(),
            });
            return self.connect_executive(t, s.leg);
        }
        self.refuse(t, s, "declined");
    }

    /// The executive refused (2), said nothing, or hung up: end their leg, go on.
    fn refuse(&mut self, t: Transfer, s: Screening, why: &str) {
        self.bye_if_answered(s.leg);
        self.push(Output::Close { leg: s.leg });
        self.event(CallEvent::ExecutiveRefused {
            executive: t.label.clone(),
            why: why.to_string(),
        });
        self.transfer_failed(t, "refused");
    }

    /// The executive takes the caller: bridge them (ending the secretary's leg first when a
    /// REFER brought them). The other phones were cancelled when this one answered.
    fn connect_executive(&mut self, mut t: Transfer, leg: LegId) {
        let referred = t.referred_by.is_some();
        if let Some(secretary) = t.secretary.take() {
            if t.notify {
                self.push(Output::Notify {
                    leg: secretary.leg,
                    sipfrag: "SIP/2.0 200 OK",
                    last: true,
                });
            }
            self.end_connected(secretary, true);
        }
        self.push(Output::Bridge { leg });
        tracing::info!(executive = %t.label, "executive connected");
        self.stage = Stage::Talking(Connected {
            leg,
            role: Role::Executive,
            who: t.label.clone(),
        });
        self.event(CallEvent::Transferred {
            to: t.label.clone(),
            by: t.referred_by,
        });
        self.push(Output::Handled {
            by: t.label,
            transfer: true,
        });
        self.news(if referred {
            News::Transferred
        } else {
            News::Answered
        });
    }

    /// A secretary asks (REFER, RFC 3515) to send the caller elsewhere. Returns the status
    /// to answer the REFER with, which goes out before this call's outputs. An executive
    /// under do-not-disturb is not called: the NOTIFY says 480 and the caller stays.
    pub fn on_refer(
        &mut self,
        roster: &dyn Roster,
        leg: LegId,
        refer_to: Option<&str>,
        now: Now,
    ) -> u16 {
        let talking = match &self.stage {
            Stage::Talking(c) if c.leg == leg && c.role == Role::Secretary => Some(c.clone()),
            _ => None,
        };
        let by = self.connected_to().unwrap_or_default().to_string();
        let allowed = refer_to.and_then(|uri| allowed_refer(&self.company, uri));
        let (Some(uri), Some(to), Some(secretary)) = (refer_to, allowed, talking) else {
            let status = if refer_to.is_none() { 400 } else { 403 };
            tracing::warn!(
                by = %by,
                refer_to = refer_to.unwrap_or("(none)"),
                status,
                "transfer refused: not a destination this company allows"
            );
            self.event(CallEvent::ReferRefused {
                by,
                to: refer_to.map(str::to_string),
                status,
            });
            return status;
        };
        self.event(CallEvent::Refer {
            by,
            to: uri.to_string(),
        });
        self.push(Output::Notify {
            leg,
            sipfrag: "SIP/2.0 100 Trying",
            last: false,
        });
        if self.under_dnd(roster, &to, now) {
            // As if nobody answered: the caller stays with her, her phone is told.
            self.push(Output::Notify {
                leg,
                sipfrag: "SIP/2.0 480 Temporarily Unavailable",
                last: true,
            });
            return 202;
        }
        // Screened as the plan's own transfer to that executive would be, like the console's
        // button: how she hands the call over does not change what the executive hears.
        let screening = match &to {
            TransferTarget::Executive(id) => screens_transfers_to(&self.company, id),
            TransferTarget::Uri(_) => false,
        };
        let t = self.new_transfer(
            &to,
            REFER_TIMEOUT,
            screening,
            ReachMode::Sequential,
            Some(secretary),
        );
        self.next_attempt(roster, t, now);
        202
    }

    /// A secretary asks from the console to put the caller through to one of the
    /// company's executives. Allowed as her REFER would be (she talks to the caller, the
    /// executive is the company's) and only when they have not asked not to be disturbed
    /// and one of their reach entries rings somewhere now; screened when the plan's
    /// transfer to them is. It then runs as her
    /// REFER does, without the NOTIFYs: the page reads how it goes from the timeline.
    pub fn on_console_transfer(
        &mut self,
        roster: &dyn Roster,
        secretary: &str,
        executive: &str,
        now: Now,
    ) -> Result<(), TransferRefused> {
        let asked = self.console_transfer(roster, secretary, executive, now);
        if let Err(why) = asked {
            tracing::warn!(by = %secretary, to = %crate::terminal::safe(executive), why = why.code(), "console transfer refused");
            self.event(CallEvent::ConsoleTransferRefused {
                by: secretary.to_string(),
                to: executive.to_string(),
                why: why.code().to_string(),
            });
        }
        asked
    }

    fn console_transfer(
        &mut self,
        roster: &dyn Roster,
        secretary: &str,
        executive: &str,
        now: Now,
    ) -> Result<(), TransferRefused> {
        let talking = self.on_the_line(secretary)?;
        let id = ExecutiveId(executive.to_string());
        let exec = self
            .company
            .executives
            .get(&id)
            .ok_or(TransferRefused::UnknownExecutive)?;
        if roster.do_not_disturb(&id.0, now.unix_ms).is_some() {
            return Err(TransferRefused::DoNotDisturb);
        }
        if !reachable(roster, self.trunk.as_ref(), exec, now.unix_ms) {
            return Err(TransferRefused::Unreachable);
        }
        self.event(CallEvent::ConsoleTransfer {
            by: secretary.to_string(),
            to: id.0.clone(),
        });
        let screening = screens_transfers_to(&self.company, &id);
        let mut t = self.new_transfer(
            &TransferTarget::Executive(id),
            REFER_TIMEOUT,
            screening,
            ReachMode::Sequential,
            Some(talking),
        );
        // Her phone subscribed to nothing: the page follows the timeline instead.
        t.notify = false;
        self.next_attempt(roster, t, now);
        Ok(())
    }

    /// The secretary's leg when the caller talks to her; else why she cannot transfer.
    fn on_the_line(&self, secretary: &str) -> Result<Connected, TransferRefused> {
        let hers = |c: &Connected| c.role == Role::Secretary && c.who == secretary;
        match &self.stage {
            Stage::Talking(c) if hers(c) && self.leg_state(c.leg) == Some(LegState::Answered) => {
                Ok(c.clone())
            }
            Stage::Transferring(t) | Stage::Screening(t, _)
                if t.secretary.as_ref().is_some_and(hers) =>
            {
                Err(TransferRefused::InProgress)
            }
            _ if self
                .legs
                .iter()
                .any(|l| l.role == Role::Secretary && l.who == secretary) =>
            {
                Err(TransferRefused::NotConnected)
            }
            _ => Err(TransferRefused::NotHers),
        }
    }

    // ------------------------------------------------------------------ legs

    fn invite(&mut self, role: Role, who: &str, to_uri: &str, target: Target) {
        let leg = LegId(self.legs.len());
        self.legs.push(LegInfo {
            role,
            who: who.to_string(),
            state: LegState::Calling,
            authenticated: false,
        });
        self.event(CallEvent::Offered {
            role,
            to: who.to_string(),
            contact: target.uri.clone(),
            via: target.peer.addr.to_string(),
        });
        tracing::info!(role = ?role, who, contact = %target.uri, "ringing");
        self.push(Output::Invite {
            leg,
            role,
            who: who.to_string(),
            to_uri: to_uri.to_string(),
            target,
        });
    }

    /// A provisional response to a leg's INVITE.
    pub fn on_ringing(&mut self, leg: LegId, status: u16) {
        let Some(info) = self.legs.get_mut(leg.0) else {
            return;
        };
        if info.state != LegState::Calling {
            return;
        }
        info.state = LegState::Ringing;
        let (role, to) = (info.role, info.who.clone());
        self.event(CallEvent::LegRinging { role, to, status });
    }

    /// A final failure of a leg's INVITE (or an INVITE that could not be sent:
    /// `status` 503). `challenged`: the provider asked for credentials we have.
    pub fn on_failed(
        &mut self,
        roster: &dyn Roster,
        leg: LegId,
        status: u16,
        challenged: bool,
        now: Now,
    ) {
        let Some(info) = self.legs.get_mut(leg.0) else {
            return;
        };
        if info.state == LegState::Done {
            // Our CANCEL's 487, or a fork that lost.
            return;
        }
        if challenged && !info.authenticated {
            info.authenticated = true;
            info.state = LegState::Calling;
            let to = info.who.clone();
            self.push(Output::Authenticate { leg });
            return self.event(CallEvent::TrunkAuthenticated { to, status });
        }
        info.state = LegState::Done;
        let (role, who) = (info.role, info.who.clone());
        self.event(CallEvent::Declined {
            role,
            to: who.clone(),
            status,
        });
        if !self.still_ringing(role, &who) {
            self.nobody_there(roster, role, &who, now);
        }
    }

    /// Whether another phone of `who` still rings.
    fn still_ringing(&self, role: Role, who: &str) -> bool {
        self.legs.iter().any(|l| {
            l.role == role
                && l.who == who
                && matches!(l.state, LegState::Calling | LegState::Ringing)
        })
    }

    /// Every phone of `who` failed (or answered with what we cannot use): the next one.
    fn nobody_there(&mut self, roster: &dyn Roster, role: Role, who: &str, now: Now) {
        match (role, std::mem::take(&mut self.stage)) {
            (Role::Secretary, Stage::Hunting(mut h)) => {
                h.hunt.failed(who, now.instant);
                self.stage = Stage::Hunting(h);
                self.push(Output::UpdateQueue(QueueChange::Declined {
                    secretary: who.to_string(),
                    until_ms: now.unix_ms + DECLINE_BACKOFF.as_millis() as u64,
                }));
                self.push(Output::Release {
                    secretary: who.to_string(),
                });
                self.advance(roster, now);
            }
            (Role::Executive, Stage::Transferring(t)) => self.next_attempt(roster, t, now),
            (_, stage) => self.stage = stage,
        }
    }

    /// A 2xx to a leg's INVITE (the shell has ACKed it). `usable`: its SDP answer can be
    /// used and we have a port for it. The first to answer wins; the others stop ringing.
    pub fn on_answered(&mut self, roster: &dyn Roster, leg: LegId, usable: bool, now: Now) {
        let Some(info) = self.legs.get_mut(leg.0) else {
            return;
        };
        let was = info.state;
        if was == LegState::Answered {
            // A retransmitted 2xx: the ACK again, nothing else.
            return;
        }
        info.state = LegState::Answered;
        let (role, who) = (info.role, info.who.clone());
        let pending = matches!(
            (role, &self.stage),
            (Role::Secretary, Stage::Hunting(_)) | (Role::Executive, Stage::Transferring(_))
        );
        let winner = pending && was != LegState::Done;
        if !(winner && usable) {
            // Too late (another answered, or the caller left), or an answer we cannot use.
            self.bye_if_answered(leg);
            if winner {
                self.event(CallEvent::UnusableAnswer { to: who.clone() });
                if !self.still_ringing(role, &who) {
                    self.nobody_there(roster, role, &who, now);
                }
            }
            return;
        }
        self.push(Output::Open { leg });
        self.event(CallEvent::Answered {
            role,
            to: who.clone(),
        });
        self.cancel_ringing(Some(&who));
        match (role, std::mem::take(&mut self.stage)) {
            (Role::Executive, Stage::Transferring(t)) if t.screening => {
                // Ask before connecting: the caller must not land in a mobile's voicemail.
                self.push(Output::Announce { leg });
                let deadline = now.instant + SCREENING_WAIT;
                self.stage = Stage::Screening(t, Screening { leg, deadline });
            }
            (Role::Executive, Stage::Transferring(t)) => self.connect_executive(t, leg),
            (_, stage) => {
                if let Stage::Hunting(h) = &stage {
                    self.leave_queue(h, "answered", now);
                }
                self.push(Output::Bridge { leg });
                self.push(Output::DeskAnswered {
                    secretary: who.clone(),
                });
                tracing::info!(secretary = %who, "secretary answered");
                self.stage = Stage::Talking(Connected {
                    leg,
                    role,
                    who: who.clone(),
                });
                self.push(Output::Handled {
                    by: who,
                    transfer: false,
                });
                self.news(News::Answered);
            }
        }
    }

    /// A BYE from a leg (the shell answered it).
    pub fn on_bye(&mut self, leg: LegId) {
        if let Some(info) = self.legs.get_mut(leg.0) {
            info.state = LegState::Done;
        }
        if self.screened() == Some(leg)
            && let Stage::Screening(t, s) = std::mem::take(&mut self.stage)
        {
            return self.refuse(t, s, "hung-up");
        }
        let Some((connected, role, who)) = self.connected() else {
            return;
        };
        if connected != leg {
            return;
        }
        let to = who.to_string();
        self.event(CallEvent::HungUp { role, to });
        let referring = match &mut self.stage {
            Stage::Transferring(t) | Stage::Screening(t, _) => t.secretary.take(),
            _ => None,
        };
        match referring {
            Some(secretary) => {
                // Blind transfer: the secretary hangs up once the REFER is accepted; the
                // caller waits (ringback) for the executive.
                self.end_connected(secretary, false);
                self.push(Output::Ringback);
            }
            None => self.news(News::HungUp),
        }
    }

    /// A step's overflow or end, an attempt's end, or an executive who said nothing.
    pub fn on_timeout(&mut self, roster: &dyn Roster, now: Now) {
        let due = |at: Instant| at <= now.instant;
        match std::mem::take(&mut self.stage) {
            Stage::Screening(t, s) if due(s.deadline) => self.refuse(t, s, "no-answer"),
            Stage::Transferring(t) if t.deadline.is_some_and(due) => {
                // Only this attempt's phones ring: a secretary's leg, if any, is answered.
                self.stage = Stage::Idle;
                self.cancel_ringing(None);
                self.next_attempt(roster, t, now);
            }
            Stage::Hunting(h) if h.hunt.expired(now.instant) => {
                self.stage = Stage::Hunting(h);
                self.give_up("timeout", now);
            }
            Stage::Hunting(mut h) => {
                if let Some((every, Some(at))) = h.announce
                    && due(at)
                {
                    h.announce = Some((every, Some(now.instant + every)));
                    if h.hold {
                        self.push(Output::QueueAnnouncement);
                    }
                }
                let overflow = due(h.hunt.poll_timeout());
                self.stage = Stage::Hunting(h);
                if overflow {
                    self.advance(roster, now);
                }
            }
            stage => self.stage = stage,
        }
    }

    /// CANCEL every leg still ringing, freeing those secretaries (except `winner`, who is
    /// now busy with this call).
    fn cancel_ringing(&mut self, winner: Option<&str>) {
        let mut released: Vec<String> = Vec::new();
        let mut cancelled = Vec::new();
        for (index, leg) in self.legs.iter_mut().enumerate() {
            if !matches!(leg.state, LegState::Calling | LegState::Ringing) {
                continue;
            }
            if leg.role == Role::Secretary
                && Some(leg.who.as_str()) != winner
                && !released.contains(&leg.who)
            {
                released.push(leg.who.clone());
            }
            leg.state = LegState::Done;
            cancelled.push((LegId(index), leg.role, leg.who.clone()));
        }
        for (leg, role, to) in cancelled {
            self.push(Output::Cancel { leg });
            self.event(CallEvent::LegCancelled { role, to });
        }
        for secretary in released {
            self.push(Output::Release { secretary });
        }
    }

    fn bye_if_answered(&mut self, leg: LegId) {
        if let Some(info) = self.legs.get_mut(leg.0)
            && info.state == LegState::Answered
        {
            info.state = LegState::Done;
            self.push(Output::Bye { leg });
        }
    }

    /// Ends the leg the caller talks to (BYE unless `bye` is false because they hung up),
    /// closes its audio and starts a secretary's wrap-up.
    fn end_connected(&mut self, c: Connected, bye: bool) {
        let answered = self.leg_state(c.leg) == Some(LegState::Answered);
        if answered && bye {
            self.event(CallEvent::ByeSent {
                to: Some(c.who.clone()),
            });
            self.bye_if_answered(c.leg);
        }
        self.push(Output::Close { leg: c.leg });
        if c.role == Role::Secretary {
            self.push(Output::DeskFinished { secretary: c.who });
        }
    }

    /// The call is over (either side hung up, or the plan moved on): CANCEL what rings,
    /// BYE who answered, close the other audio, start the secretary's wrap-up.
    pub fn end(&mut self, now: Now) {
        let stage = std::mem::take(&mut self.stage);
        if let Stage::Hunting(h) = &stage {
            self.leave_queue(h, "hung-up", now);
        }
        self.cancel_ringing(None);
        match stage {
            Stage::Screening(t, s) => {
                self.bye_if_answered(s.leg);
                self.push(Output::Close { leg: s.leg });
                if let Some(secretary) = t.secretary {
                    self.end_connected(secretary, true);
                }
            }
            Stage::Transferring(Transfer {
                secretary: Some(secretary),
                ..
            })
            | Stage::Talking(secretary) => self.end_connected(secretary, true),
            _ => {}
        }
    }
}

/// Where a reach entry rings now: the phones an account registered, a SIP URI with an IP
/// address (sent there), or a number or other URI (through the trunk, when there is one).
pub fn resolve(
    roster: &dyn Roster,
    trunk: Option<&TrunkRoute>,
    entry: &ReachEntry,
    now_ms: u64,
) -> Vec<Target> {
    let udp = |addr| Peer {
        transport: Transport::Udp,
        addr,
    };
    match entry {
        ReachEntry::Account(user) => roster.phones(user, now_ms),
        ReachEntry::Number(number) => trunk
            .iter()
            .map(|t| Target {
                uri: format!("sip:{number}@{}", t.domain),
                peer: udp(t.proxy),
            })
            .collect(),
        ReachEntry::Uri(uri) => entry
            .direct_address()
            .or(trunk.map(|t| t.proxy))
            .map(|addr| Target {
                uri: uri.clone(),
                peer: udp(addr),
            })
            .into_iter()
            .collect(),
    }
}

/// Whether one of an executive's reach entries rings somewhere now (the console offers
/// to transfer only to them).
pub fn reachable(
    roster: &dyn Roster,
    trunk: Option<&TrunkRoute>,
    executive: &Executive,
    now_ms: u64,
) -> bool {
    executive
        .reach
        .iter()
        .any(|entry| !resolve(roster, trunk, entry, now_ms).is_empty())
}

#[cfg(test)]
#[path = "scenarios.rs"]
mod scenarios;
