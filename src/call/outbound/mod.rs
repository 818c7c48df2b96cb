//! A call's outbound side. The decisions (whom to ring, the first answer wins, reach
//! attempts, screening, REFER policy) are [`machine::OutboundMachine`]'s; this shell carries
//! out its [`Output`]s: it writes and sends the legs' SIP messages, binds and opens their
//! audio, claims and frees secretaries on the desk, and writes the records. The call task
//! owns one [`Outbound`] and tells its machine what came of it.

pub mod machine;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use self::machine::{LegId, OutboundMachine, Output, QueueChange, Roster, SecretaryStep, Target};
pub use self::machine::{News, TransferRefused};
use super::browser_ring::BrowserRing;
use super::context::CallContext;
use super::control::BrowserAction;
use super::leg::{Invitation, Leg, Role};
use crate::clock::Now;
use crate::desk::Desk;
use crate::dialplan::{Company, ReachMode, SoundName, Strategy, TransferTarget};
use crate::distribution::Candidate;
use crate::dnd::Dnd;
use crate::media::engine::StreamSpec;
use crate::media::{MediaEvent, StreamId};
use crate::sdp::{self, Codec, LocalMedia, Negotiated};
use crate::sip::endpoint::{Input, LegEvent};
use crate::sip::message::{Method, Request, Response};
use crate::sip::transaction::TxKey;
use crate::sip::write::{self, Ids};
use crate::sip::{CallId, Peer};
use crate::store::{self, CallRowId, Record};

/// Answers a request inside a leg: status, extra headers, SDP body.
type Reply<'a> = dyn Fn(u16, &[(&str, &str)], Option<&[u8]>) + 'a;

/// Fixed facts about the call that every outbound INVITE carries.
pub struct Caller {
    /// The call's row id.
    pub row: CallRowId,
    /// Display name for the phones: `ACME Plomberie · +33612345678`.
    pub display: String,
    /// The caller's number (our From user on the legs).
    pub number: String,
    /// The company's plan (executives, allowed destinations).
    pub company: Arc<Company>,
    /// The caller's stream.
    pub stream: StreamId,
    /// The caller's codec, offered first.
    pub codec: Codec,
    /// The screening announcement (`sounds/default/screening-<lang>.wav`).
    pub announcement: SoundName,
    /// Max-Forwards for our legs: the caller's less one (70 less one without it).
    pub max_forwards: u8,
    /// The route's priority in the secretaries' queue.
    pub priority: u8,
}

/// An answered leg's audio.
struct LegMedia {
    stream: StreamId,
    /// A SIP leg's SDP (a re-INVITE changes it); none for a browser leg.
    sdp: Option<(LocalMedia, Negotiated)>,
}

/// The machine reads the desk (secretaries, registered phones) and the executives'
/// do-not-disturb through the call's context.
impl Roster for CallContext {
    fn candidates(
        &self,
        company: &str,
        who: &[String],
        group: Option<&str>,
        now_ms: u64,
    ) -> Vec<Candidate> {
        Desk::candidates(&self.desk, company, who, group, now_ms)
    }

    fn phones(&self, account: &str, now_ms: u64) -> Vec<Target> {
        targets(self.desk.bindings(account, now_ms))
    }

    fn do_not_disturb(&self, executive: &str, now_ms: u64) -> Option<Dnd> {
        let now = jiff::Timestamp::from_millisecond(i64::try_from(now_ms).ok()?).ok()?;
        self.dnd.current(executive, now)
    }
}

fn targets(bindings: Vec<crate::registrar::Binding>) -> Vec<Target> {
    bindings
        .into_iter()
        .map(|b| Target {
            uri: b.contact,
            peer: b.source,
        })
        .collect()
}

/// Every outbound leg of one call.
pub struct Outbound {
    caller: Caller,
    owner: CallId,
    machine: OutboundMachine,
    legs: BTreeMap<LegId, Leg>,
    /// Legs to secretaries' browser phones: whose phone and the ring's number.
    browser: BTreeMap<LegId, BrowserRing>,
    /// Answers received and usable, until the machine says to open them.
    answers: BTreeMap<LegId, Negotiated>,
    media: BTreeMap<LegId, LegMedia>,
    /// The trunk's answer to a challenge, until the machine says to send it.
    credentials: BTreeMap<LegId, (&'static str, String)>,
    /// Our RTP socket for the next leg's media, bound with its first INVITE.
    socket: Option<(UdpSocket, u16)>,
    session_id: u64,
    /// Our SRTP key for legs to phones on TLS (made when first needed).
    srtp_key: Option<String>,
    events: mpsc::UnboundedSender<(StreamId, MediaEvent)>,
    /// Tags and branches for the legs (each leg gets a generator of its own).
    ids: Ids,
    /// The desk, to take the caller out of its queue however the call ends.
    desk: Arc<Desk>,
    /// Notified by the desk when this caller is first in line for a secretary who freed up.
    wake: Arc<tokio::sync::Notify>,
}

impl Outbound {
    /// Nothing rung yet. Media events of the other legs go to `events`.
    pub fn new(
        ctx: &CallContext,
        caller: Caller,
        owner: CallId,
        events: mpsc::UnboundedSender<(StreamId, MediaEvent)>,
    ) -> Outbound {
        let machine = OutboundMachine::new(
            Arc::clone(&caller.company),
            caller.row,
            ctx.local_sip.ip(),
            ctx.trunk_route(),
        );
        Outbound {
            caller,
            owner,
            machine,
            legs: BTreeMap::new(),
            browser: BTreeMap::new(),
            answers: BTreeMap::new(),
            media: BTreeMap::new(),
            credentials: BTreeMap::new(),
            socket: None,
            session_id: fastrand::u64(..u64::MAX / 2),
            srtp_key: None,
            events,
            ids: Ids::fresh(),
            desk: Arc::clone(&ctx.desk),
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Whether this stream is one of the other legs'.
    pub fn owns_stream(&self, stream: StreamId) -> bool {
        self.leg_of_stream(stream).is_some()
    }

    fn leg_of_stream(&self, stream: StreamId) -> Option<LegId> {
        self.media
            .iter()
            .find(|(_, m)| m.stream == stream)
            .map(|(leg, _)| *leg)
    }

    fn leg_of_call_id(&self, call_id: &CallId) -> Option<LegId> {
        self.legs
            .iter()
            .find(|(_, l)| &l.call_id == call_id)
            .map(|(leg, _)| *leg)
    }

    /// Whether this Call-ID is one of our legs'.
    pub fn owns_call_id(&self, call_id: &CallId) -> bool {
        self.leg_of_call_id(call_id).is_some()
    }

    /// Who the caller talks to.
    pub fn connected_to(&self) -> Option<&str> {
        self.machine.connected_to()
    }

    /// When [`Outbound::on_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.machine.poll_timeout()
    }

    /// Starts a `secretary` step. `answered`: the caller hears hold music if they queue.
    #[allow(clippy::too_many_arguments)]
    pub fn offer_secretaries(
        &mut self,
        ctx: &CallContext,
        timeout: u32,
        who: Vec<String>,
        group: Option<String>,
        strategy: Strategy,
        overflow_after: Option<u32>,
        answered: bool,
        now: Instant,
    ) -> News {
        let step = SecretaryStep {
            timeout,
            who,
            group,
            strategy,
            overflow_after,
            priority: self.caller.priority,
            hold: answered,
            announce_every: self
                .caller
                .company
                .queue
                .announcement
                .as_ref()
                .map(|(_, e)| *e),
        };
        self.machine.offer_secretaries(ctx, step, clock(now));
        self.run(ctx, now)
    }

    /// Starts a `transfer` step.
    pub fn transfer(
        &mut self,
        ctx: &CallContext,
        to: &TransferTarget,
        timeout: u32,
        screening: bool,
        mode: ReachMode,
        now: Instant,
    ) -> News {
        self.machine
            .transfer(ctx, to, timeout, screening, mode, clock(now));
        self.run(ctx, now)
    }

    /// The secretary asks from the console to put the caller through to an executive:
    /// whether it started (or why not), and what came of it for the call's machine.
    pub fn console_transfer(
        &mut self,
        ctx: &CallContext,
        secretary: &str,
        executive: &str,
        now: Instant,
    ) -> (Result<(), TransferRefused>, News) {
        let asked = self
            .machine
            .on_console_transfer(ctx, secretary, executive, clock(now));
        (asked, self.run(ctx, now))
    }

    /// A keypress from one of the other legs (the executive being screened).
    pub fn on_digit(&mut self, ctx: &CallContext, stream: StreamId, key: char) -> News {
        if let Some(leg) = self.leg_of_stream(stream) {
            self.machine.on_digit(leg, key);
        }
        self.run(ctx, Instant::now())
    }

    /// A step's overflow or end, an attempt's end, or an executive who said nothing.
    pub fn on_timeout(&mut self, ctx: &CallContext, now: Instant) -> News {
        self.machine.on_timeout(ctx, clock(now));
        self.run(ctx, now)
    }

    /// The call is over: CANCEL what rings, BYE who answered, close the other streams,
    /// start the secretary's wrap-up.
    pub fn end(&mut self, ctx: &CallContext) {
        let now = Instant::now();
        self.machine.end(clock(now));
        self.run(ctx, now);
    }

    /// The desk changed: a caller waiting for a secretary tries again.
    pub fn on_desk_changed(&mut self, ctx: &CallContext, now: Instant) -> News {
        self.machine.on_desk_changed(ctx, clock(now));
        self.run(ctx, now)
    }

    /// Whether [`Outbound::on_desk_changed`] matters now (a caller waiting for a secretary).
    pub fn wants_desk_changes(&self) -> bool {
        self.machine.wants_desk_changes()
    }

    /// Notified when the desk wants this caller to try again (see [`Outbound::on_desk_changed`]).
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.wake)
    }

    /// News of one of our INVITEs.
    pub fn on_leg_event(&mut self, ctx: &CallContext, event: LegEvent, now: Instant) -> News {
        match event {
            LegEvent::Provisional { call_id, status } => {
                if let Some(leg) = self.leg_of_call_id(&call_id) {
                    self.machine.on_ringing(leg, status);
                }
            }
            LegEvent::Answered { call_id, response } => {
                if let Some(leg) = self.leg_of_call_id(&call_id) {
                    self.on_answer(ctx, leg, &response, now);
                }
            }
            LegEvent::Failed {
                call_id,
                status,
                challenge,
            } => {
                if let Some(leg) = self.leg_of_call_id(&call_id) {
                    let challenged = self.prepare_credentials(ctx, leg, challenge);
                    self.machine
                        .on_failed(ctx, leg, status, challenged, clock(now));
                }
            }
        }
        self.run(ctx, now)
    }

    /// What she did on her browser phone about one of this call's rings.
    pub fn on_browser(
        &mut self,
        ctx: &CallContext,
        secretary: &str,
        ring: u64,
        action: BrowserAction,
        now: Instant,
    ) -> News {
        let leg = self
            .browser
            .iter()
            .find(|(_, b)| b.is(secretary, ring))
            .map(|(leg, _)| *leg);
        let Some(leg) = leg else {
            return News::Nothing;
        };
        let connected = self.machine.connected().is_some_and(|(c, ..)| c == leg);
        match action {
            BrowserAction::Answer => {
                let usable = self.browser.get(&leg).is_some_and(|b| b.usable(ctx));
                self.machine.on_answered(ctx, leg, usable, clock(now));
            }
            BrowserAction::Decline => self.machine.on_failed(ctx, leg, 603, false, clock(now)),
            BrowserAction::HangUp if connected => self.machine.on_bye(leg),
            BrowserAction::HangUp => self.machine.on_failed(ctx, leg, 487, false, clock(now)),
            BrowserAction::Hold(on) if connected => {
                let music = on.then(|| self.sound(ctx, &self.caller.company.queue.music));
                ctx.media.hold(self.caller.stream, music);
            }
            BrowserAction::Hold(_) => {}
        }
        self.run(ctx, now)
    }

    /// ACKs a 2xx (every retransmission too) and tells the machine whether the answer can
    /// be used.
    fn on_answer(&mut self, ctx: &CallContext, leg: LegId, response: &Response, now: Instant) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        let ack = l.answered(response);
        let _ = ctx.endpoint.send(Input::Send {
            peer: l.peer,
            bytes: ack,
        });
        let usable = match sdp::negotiate(&response.body) {
            Ok(negotiated) if self.socket.is_some() => {
                self.answers.insert(leg, negotiated);
                true
            }
            _ => false,
        };
        self.machine.on_answered(ctx, leg, usable, clock(now));
    }

    /// When the provider challenged the INVITE and we have credentials for it: the
    /// header to send again with (RFC 3261 §22.2).
    fn prepare_credentials(
        &mut self,
        ctx: &CallContext,
        leg: LegId,
        challenge: Option<(bool, String)>,
    ) -> bool {
        let (Some((proxy, challenge)), Some(trunk), Some(l)) =
            (challenge, &ctx.trunk, self.legs.get(&leg))
        else {
            return false;
        };
        let Some((header, answer)) =
            trunk.answer_invite_challenge(proxy, &challenge, l.target(), &self.ids.tag())
        else {
            return false;
        };
        self.credentials.insert(leg, (header, answer));
        true
    }

    /// A request inside one of our legs' dialogs.
    pub fn on_request(
        &mut self,
        ctx: &CallContext,
        request: &Request,
        key: TxKey,
        peer: Peer,
        now: Instant,
    ) -> News {
        let tag = write::new_tag();
        let reply = |status: u16, extra: &[(&str, &str)], body: Option<&[u8]>| {
            let bytes = write::response(
                &request.echo,
                status,
                Some(&tag),
                extra,
                body.map(|b| ("application/sdp", b)),
            );
            let _ = ctx.endpoint.send(Input::Respond {
                key: key.clone(),
                status,
                bytes,
            });
        };
        if request.method == Method::Ack {
            // An ACK is never answered (ours to a leg's 2xx go the other way).
            return News::Nothing;
        }
        let leg = self
            .legs
            .iter()
            .find(|(_, l)| l.owns(request, peer))
            .map(|(leg, _)| *leg);
        let Some(leg) = leg else {
            // Only the Call-ID matched: not this dialog (wrong tags, or another address).
            tracing::warn!(source = %peer.addr, method = %request.method, "request outside any leg's dialog: 481");
            reply(481, &[], None);
            return News::Nothing;
        };
        let connected = self.machine.connected().is_some_and(|(c, ..)| c == leg);
        let screened = self.machine.screened() == Some(leg);
        match request.method {
            Method::Bye => {
                reply(200, &[], None);
                self.machine.on_bye(leg);
            }
            Method::Refer if connected => {
                let status =
                    self.machine
                        .on_refer(ctx, leg, request.refer_to.as_deref(), clock(now));
                reply(status, &[], None);
            }
            Method::Invite if connected => self.reinvite(ctx, leg, request, peer, &reply),
            Method::Info if screened => {
                reply(200, &[], None);
                if let Some(key) =
                    crate::dtmf::key_from_info(request.content_type.as_deref(), &request.body)
                {
                    self.machine.on_digit(leg, key);
                }
            }
            Method::Info | Method::Options | Method::Notify => reply(200, &[], None),
            _ => reply(405, &[("Allow", write::ALLOW)], None),
        }
        self.run(ctx, now)
    }

    /// Hold, resume or a new address from the phone the caller talks to.
    fn reinvite(
        &mut self,
        ctx: &CallContext,
        leg: LegId,
        request: &Request,
        peer: Peer,
        reply: &Reply,
    ) {
        let Some(m) = self.media.get_mut(&leg) else {
            return;
        };
        let Some((local, negotiated)) = &mut m.sdp else {
            return reply(488, &[], None);
        };
        if ctx
            .reoffer(m.stream, local, negotiated, &request.body)
            .is_err()
        {
            return reply(488, &[], None);
        }
        let answer = sdp::write_answer(local, negotiated);
        let contact = peer.contact("permanence@", ctx.local_sip, ctx.local_tls);
        reply(200, &[("Contact", &contact)], Some(answer.as_bytes()));
    }

    // ------------------------------------------------------------------ the shell

    /// Carries out what the machine decided, in order, feeding back what only doing it
    /// can tell (a claim's result, an INVITE that could not go out). Returns the news for
    /// the call's machine.
    fn run(&mut self, ctx: &CallContext, now: Instant) -> News {
        let mut news = News::Nothing;
        while let Some(output) = self.machine.poll_output() {
            match output {
                Output::News(n) => news = n,
                Output::Claim { secretary } => {
                    let phones = ctx
                        .desk
                        .claim(&secretary, self.caller.row, crate::clock::unix_ms())
                        .map(targets)
                        .unwrap_or_default();
                    self.machine.on_claimed(ctx, &secretary, phones, clock(now));
                }
                Output::Release { secretary } => {
                    ctx.desk.release(&secretary, crate::clock::unix_ms())
                }
                Output::DeskAnswered { secretary } => {
                    ctx.desk
                        .answered(&secretary, self.caller.row, crate::clock::unix_ms())
                }
                Output::DeskFinished { secretary } => {
                    ctx.desk
                        .finished(&secretary, self.caller.row, crate::clock::unix_ms())
                }
                Output::Invite {
                    leg,
                    role,
                    who,
                    to_uri,
                    target,
                } => {
                    if !self.invite(ctx, leg, role, &who, &to_uri, &target) {
                        self.machine.on_failed(ctx, leg, 503, false, clock(now));
                    }
                }
                Output::Event(event) => self.record(
                    ctx,
                    Record::Event {
                        id: self.caller.row,
                        event,
                        at: store::now_text(),
                    },
                ),
                Output::JoinQueue(waiting) => ctx.desk.join_queue(waiting, Arc::clone(&self.wake)),
                Output::UpdateQueue(change) => self.update_queue(ctx, change),
                Output::LeaveQueue => ctx.desk.leave_queue(self.caller.row),
                Output::Handled { by, transfer } => self.record(
                    ctx,
                    Record::Handled {
                        id: self.caller.row,
                        by,
                        transfer,
                        at: store::now_text(),
                    },
                ),
                other => self.execute_leg(ctx, other),
            }
        }
        news
    }

    fn record(&self, ctx: &CallContext, record: Record) {
        ctx.store.write(record);
    }

    fn update_queue(&self, ctx: &CallContext, change: QueueChange) {
        ctx.desk.update_queue(self.caller.row, |w| match change {
            QueueChange::Offering(offering) => w.offering = offering,
            QueueChange::Declined {
                secretary,
                until_ms,
            } => w.declined.push((secretary, until_ms)),
            QueueChange::Overflowed => w.overflowed = true,
        });
    }

    /// The outputs about one leg's signalling or audio.
    fn execute_leg(&mut self, ctx: &CallContext, output: Output) {
        if let Some(output) = self.execute_browser(ctx, output) {
            self.execute_sip_leg(ctx, output);
        }
    }

    /// The outputs about a browser leg, carried out on her phone and in the engine;
    /// the others are given back.
    fn execute_browser(&mut self, ctx: &CallContext, output: Output) -> Option<Output> {
        let leg = match &output {
            Output::Cancel { leg } | Output::Bye { leg } | Output::Open { leg } => *leg,
            Output::Authenticate { leg } | Output::Notify { leg, .. } => {
                if self.browser.contains_key(leg) {
                    return None;
                }
                return Some(output);
            }
            _ => return Some(output),
        };
        let Some(browser) = self.browser.get(&leg) else {
            return Some(output);
        };
        match output {
            Output::Cancel { .. } => browser.cancel(ctx),
            Output::Bye { .. } => browser.hang_up(ctx),
            Output::Open { .. } => {
                if let Some(stream) = browser.open(ctx, self.events.clone()) {
                    self.media.insert(leg, LegMedia { stream, sdp: None });
                }
            }
            _ => {}
        }
        None
    }

    fn execute_sip_leg(&mut self, ctx: &CallContext, output: Output) {
        match output {
            Output::Authenticate { leg } => self.authenticate(ctx, leg),
            Output::Cancel { leg } => self.send(ctx, leg, Leg::cancel),
            Output::Bye { leg } => {
                self.answers.remove(&leg);
                self.send(ctx, leg, Leg::bye)
            }
            Output::Notify { leg, sipfrag, last } => self.notify(ctx, leg, sipfrag, last),
            Output::Open { leg } => self.open(ctx, leg),
            Output::Bridge { leg } => {
                if let Some(m) = self.media.get(&leg) {
                    ctx.media
                        .bridge(self.caller.stream, m.stream, ctx.rtp_timeout);
                }
            }
            Output::Announce { leg } => {
                if let Some(m) = self.media.get(&leg) {
                    ctx.media
                        .play(m.stream, self.sound(ctx, &self.caller.announcement), 2);
                    ctx.media.listen(m.stream, true, false);
                }
            }
            Output::StopAnnouncement { leg } => {
                if let Some(m) = self.media.get(&leg) {
                    ctx.media.stop(m.stream);
                    ctx.media.listen(m.stream, false, false);
                }
            }
            Output::Close { leg } => {
                if let Some(m) = self.media.remove(&leg) {
                    ctx.media.close(m.stream);
                }
            }
            Output::Hold => {
                let music = self.sound(ctx, &self.caller.company.queue.music);
                ctx.media.play(self.caller.stream, music, 1000);
            }
            Output::QueueAnnouncement => {
                if let Some((announcement, _)) = &self.caller.company.queue.announcement {
                    let first = self.sound(ctx, announcement);
                    let then = self.sound(ctx, &self.caller.company.queue.music);
                    ctx.media.play_then(self.caller.stream, first, then);
                }
            }
            Output::Ringback => {
                let ringback =
                    crate::dialplan::default_sound("ringback", &self.caller.company.language);
                if let Some(sound) = ctx.snapshot().sounds.get(&ringback) {
                    ctx.media.play(self.caller.stream, Arc::clone(sound), 1000);
                }
            }
            _ => {}
        }
    }

    /// A loaded sound, or a second of silence when the snapshot lacks it (the screening
    /// announcement is loaded with the plan whenever a step screens).
    fn sound(&self, ctx: &CallContext, name: &SoundName) -> Arc<crate::media::Sound> {
        match ctx.snapshot().sounds.get(name) {
            Some(s) => Arc::clone(s),
            None => Arc::new(crate::media::Sound::from_samples(&[0; 8000])),
        }
    }

    /// Sends one in-dialog request the leg writes (CANCEL, BYE).
    fn send(&mut self, ctx: &CallContext, leg: LegId, write: fn(&mut Leg) -> (String, Vec<u8>)) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        let (branch, bytes) = write(l);
        let _ = ctx.endpoint.send(Input::Request {
            call_id: l.call_id.clone(),
            peer: l.peer,
            branch,
            bytes,
        });
    }

    /// The same INVITE again, with the credentials computed for the challenge.
    fn authenticate(&mut self, ctx: &CallContext, leg: LegId) {
        let (Some(l), Some((header, answer))) =
            (self.legs.get_mut(&leg), self.credentials.remove(&leg))
        else {
            return;
        };
        let (bytes, ack) = l.invite_with_credentials(header, &answer);
        let _ = ctx.endpoint.send(Input::Invite {
            leg: l.call_id.clone(),
            owner: self.owner.clone(),
            peer: l.peer,
            branch: l.branch().to_string(),
            bytes,
            ack,
        });
    }

    /// Sends the REFER's progress to the secretary's phone (RFC 3515 §2.4.5 sipfrag).
    fn notify(&mut self, ctx: &CallContext, leg: LegId, sipfrag: &str, last: bool) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        let state = if last {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let (branch, bytes) = l.request(
            &Method::Notify,
            &[("Event", "refer"), ("Subscription-State", state)],
            Some(("message/sipfrag;version=2.0", sipfrag.as_bytes())),
        );
        let _ = ctx.endpoint.send(Input::Request {
            call_id: l.call_id.clone(),
            peer: l.peer,
            branch,
            bytes,
        });
    }

    /// Opens an answered leg's audio on the socket its INVITE offered.
    fn open(&mut self, ctx: &CallContext, leg: LegId) {
        let (Some(negotiated), Some((socket, port)), Some(l)) = (
            self.answers.remove(&leg),
            self.socket.take(),
            self.legs.get(&leg),
        ) else {
            return;
        };
        // An answer with SRTP uses our key and theirs; one we cannot pair is plain.
        let srtp_key = negotiated.srtp.as_ref().and(self.srtp_key.clone());
        let srtp = negotiated.srtp_with(srtp_key.as_deref());
        let spec =
            StreamSpec::negotiated(socket, &negotiated, l.peer.addr.ip(), self.events.clone());
        let stream = ctx.media.open(spec.encrypted(srtp));
        let local = LocalMedia {
            ip: ctx.media.ip(),
            port,
            session_id: self.session_id,
            version: 1,
            srtp_key,
        };
        self.media.insert(
            leg,
            LegMedia {
                stream,
                sdp: Some((local, negotiated)),
            },
        );
    }

    /// Sends one INVITE; false when it could not go out (no RTP port).
    fn invite(
        &mut self,
        ctx: &CallContext,
        id: LegId,
        role: Role,
        who: &str,
        to_uri: &str,
        target: &Target,
    ) -> bool {
        if crate::media::webrtc::is_contact(&target.uri) {
            // Her browser phone: a ring on her page, answered from there.
            return match BrowserRing::ring(ctx, who, self.caller.row, &self.caller.display, false) {
                Some(ring) => {
                    self.browser.insert(id, ring);
                    true
                }
                None => false,
            };
        }
        let Some(port) = self.reserve_socket(ctx) else {
            return false;
        };
        // A phone on TLS gets SRTP (SDES): its audio is as private as its signalling.
        if self.srtp_key.is_none() && target.peer.is_secure() {
            self.srtp_key = crate::srtp::new_inline_key();
        }
        let srtp_key = self.srtp_key.clone().filter(|_| target.peer.is_secure());
        let offer = sdp::write_offer(
            &LocalMedia {
                ip: ctx.media.ip(),
                port,
                session_id: self.session_id,
                version: 1,
                srtp_key,
            },
            self.caller.codec,
        );
        let row = self.caller.row.to_string();
        let company = self.caller.company.id.0.clone();
        let headers = [
            ("X-Permanence-Company", company.as_str()),
            ("X-Permanence-Call", row.as_str()),
        ];
        let (leg, bytes, ack) = Leg::invite(&Invitation {
            role,
            who: who.to_string(),
            target: target.uri.clone(),
            peer: target.peer,
            to_uri: to_uri.to_string(),
            display: &self.caller.display,
            from_user: &self.caller.number,
            local_sip: target.peer.local_for(ctx.local_sip, ctx.local_tls),
            headers: &headers,
            sdp: &offer,
            max_forwards: self.caller.max_forwards,
            ids: self.ids.fork(),
        });
        let _ = ctx.endpoint.send(Input::Invite {
            leg: leg.call_id.clone(),
            owner: self.owner.clone(),
            peer: leg.peer,
            branch: leg.branch().to_string(),
            bytes,
            ack,
        });
        self.legs.insert(id, leg);
        true
    }

    fn reserve_socket(&mut self, ctx: &CallContext) -> Option<u16> {
        if let Some((_, port)) = &self.socket {
            return Some(*port);
        }
        match ctx.media.bind() {
            Ok((socket, port)) => {
                self.socket = Some((socket, port));
                Some(port)
            }
            Err(e) => {
                tracing::error!(error = %e, "no RTP port for the outbound leg");
                None
            }
        }
    }
}

/// Both clocks at `now` (the wall clock read here, at the edge).
fn clock(now: Instant) -> Now {
    Now {
        instant: now,
        unix_ms: crate::clock::unix_ms(),
    }
}

impl Drop for Outbound {
    /// However the call ends (even a task that fails), its caller leaves the queue: a
    /// stale entry would hold the callers behind it back.
    fn drop(&mut self) {
        self.desk.leave_queue(self.caller.row);
    }
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("legs", &self.legs.len())
            .field("connected", &self.connected_to())
            .finish_non_exhaustive()
    }
}
