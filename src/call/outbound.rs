//! A call's outbound side. For a `secretary` step: ringing secretaries (who, in which
//! order, until when: [`Hunt`]), taking the first answer, cancelling the others. For a
//! `transfer` step or a secretary's REFER: calling an executive's reach list (registered
//! phones, SIP URIs, numbers through the trunk with digest credentials), letting the
//! executive accept or refuse (screening), and only ever calling what the company allows.
//! Then bridging the audio and ending the other leg when the call ends. The call task owns
//! one [`Outbound`] and tells its machine what came of it.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::context::CallContext;
use super::leg::{Invitation, Leg, LegState, Role};
use crate::desk;
use crate::dialplan::{Company, ReachMode, SoundName, Step, Strategy, TransferTarget};
use crate::distribution::{Hunt, Next};
use crate::media::engine::StreamSpec;
use crate::media::{MediaEvent, StreamId};
use crate::sdp::{self, Codec, LocalMedia, Negotiated};
use crate::sip::endpoint::{Input, LegEvent};
use crate::sip::message::{Method, Request, Response};
use crate::sip::transaction::TxKey;
use crate::sip::{CallId, Peer, Transport, write};
use crate::store::{self, CallRowId, Record};

/// Writes the answer to a request inside a leg: status, extra headers, SDP body.
type Reply<'a> = dyn Fn(u16, &[(&str, &str)], Option<&[u8]>) -> Input + 'a;

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

/// How long an executive has to press 1 or 2 after the announcement starts.
const SCREENING_WAIT: Duration = Duration::from_secs(20);
/// How long a REFER's target may ring.
const REFER_TIMEOUT: Duration = Duration::from_secs(30);

/// A `secretary` step in progress.
struct Offer {
    hunt: Hunt,
    company: String,
    who: Vec<String>,
    group: Option<String>,
}

/// A `transfer` step (or a REFER) in progress.
struct Transfer {
    /// The executive id or URI, as the records name it.
    label: String,
    /// Reach entries per attempt: one each in order, or all at once.
    attempts: Vec<Vec<String>>,
    next: usize,
    timeout: Duration,
    deadline: Option<Instant>,
    screening: bool,
    /// The secretary who asked for it (REFER), and whether they are still on the line.
    referred_by: Option<String>,
}

/// An executive who answered and hears the announcement.
struct Screening {
    call_id: CallId,
    stream: StreamId,
    local: LocalMedia,
    negotiated: Negotiated,
    deadline: Instant,
}

/// The leg the caller is talking to.
struct Connected {
    call_id: CallId,
    role: Role,
    who: String,
    stream: StreamId,
    local: LocalMedia,
    negotiated: Negotiated,
}

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
}

/// Every outbound leg of one call.
pub struct Outbound {
    caller: Caller,
    owner: CallId,
    legs: Vec<Leg>,
    offer: Option<Offer>,
    transfer: Option<Transfer>,
    screening: Option<Screening>,
    connected: Option<Connected>,
    /// Our RTP socket for the next leg's media, bound with its first INVITE.
    socket: Option<(UdpSocket, u16)>,
    session_id: u64,
    /// Our SRTP key for legs to phones on TLS (made when first needed).
    srtp_key: Option<String>,
    events: mpsc::UnboundedSender<(StreamId, MediaEvent)>,
}

impl Outbound {
    /// Nothing rung yet. Media events of the other legs go to `events`.
    pub fn new(
        caller: Caller,
        owner: CallId,
        events: mpsc::UnboundedSender<(StreamId, MediaEvent)>,
    ) -> Outbound {
        Outbound {
            caller,
            owner,
            legs: Vec::new(),
            offer: None,
            transfer: None,
            screening: None,
            connected: None,
            socket: None,
            session_id: fastrand::u64(..u64::MAX / 2),
            srtp_key: None,
            events,
        }
    }

    /// Whether this stream is one of the other legs'.
    pub fn owns_stream(&self, stream: StreamId) -> bool {
        self.connected.as_ref().is_some_and(|c| c.stream == stream)
            || self.screening.as_ref().is_some_and(|s| s.stream == stream)
    }

    /// Whether this Call-ID is one of our legs'.
    pub fn owns_call_id(&self, call_id: &CallId) -> bool {
        self.legs.iter().any(|l| &l.call_id == call_id)
    }

    /// Who the caller talks to.
    pub fn connected_to(&self) -> Option<&str> {
        self.connected.as_ref().map(|c| c.who.as_str())
    }

    fn event(&self, ctx: &CallContext, kind: &'static str, data: serde_json::Value) {
        event(ctx, self.caller.row, kind, data);
    }

    // ------------------------------------------------------------------ secretaries

    /// Starts a `secretary` step.
    #[allow(clippy::too_many_arguments)]
    pub fn offer_secretaries(
        &mut self,
        ctx: &CallContext,
        timeout: u32,
        who: Vec<String>,
        group: Option<String>,
        strategy: Strategy,
        overflow_after: Option<u32>,
        now: Instant,
    ) -> News {
        self.offer = Some(Offer {
            hunt: Hunt::new(
                strategy,
                Duration::from_secs(u64::from(timeout)),
                overflow_after.map(|s| Duration::from_secs(u64::from(s))),
                now,
            ),
            company: self.caller.company.id.0.clone(),
            who,
            group,
        });
        self.advance(ctx, now)
    }

    /// Rings whoever the hunt says, or gives up.
    fn advance(&mut self, ctx: &CallContext, now: Instant) -> News {
        loop {
            let Some(offer) = &mut self.offer else {
                return News::Nothing;
            };
            let now_ms = desk::now_ms();
            let team =
                ctx.desk
                    .candidates(&offer.company, &offer.who, offer.group.as_deref(), now_ms);
            match offer.hunt.next(&team, now_ms, now) {
                Next::Wait => return News::Nothing,
                Next::GiveUp => return self.give_up(ctx, "nobody-left"),
                Next::Ring(names) => {
                    let mut rang = false;
                    for name in names {
                        if self.ring_secretary(ctx, &name) {
                            rang = true;
                        } else if let Some(o) = &mut self.offer {
                            o.hunt.failed(&name);
                        }
                    }
                    if rang {
                        return News::Nothing;
                    }
                    // Everyone chosen was taken meanwhile: ask again.
                }
            }
        }
    }

    /// Sends INVITEs to every registered phone of this secretary.
    fn ring_secretary(&mut self, ctx: &CallContext, username: &str) -> bool {
        let Some(bindings) = ctx.desk.claim(username, self.caller.row, desk::now_ms()) else {
            return false;
        };
        let targets: Vec<(String, Peer)> = bindings
            .into_iter()
            .map(|b| (b.contact, b.source))
            .collect();
        let to_uri = format!("sip:{username}@{}", ctx.local_sip.ip());
        if self.invite(ctx, Role::Secretary, username, &to_uri, &targets) == 0 {
            ctx.desk.release(username);
            return false;
        }
        true
    }

    fn give_up(&mut self, ctx: &CallContext, why: &'static str) -> News {
        self.offer = None;
        self.cancel_ringing(ctx, None);
        self.event(
            ctx,
            "secretary-unanswered",
            serde_json::json!({ "why": why }),
        );
        News::GaveUp
    }

    // ------------------------------------------------------------------ executives

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
        self.start_transfer(
            ctx,
            to,
            Duration::from_secs(u64::from(timeout)),
            screening,
            mode,
            None,
            now,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn start_transfer(
        &mut self,
        ctx: &CallContext,
        to: &TransferTarget,
        timeout: Duration,
        screening: bool,
        mode: ReachMode,
        referred_by: Option<String>,
        now: Instant,
    ) -> News {
        let (label, reach) = match to {
            TransferTarget::Executive(id) => (
                id.0.clone(),
                self.caller
                    .company
                    .executives
                    .get(id)
                    .map(|e| e.reach.clone())
                    .unwrap_or_default(),
            ),
            TransferTarget::Uri(uri) => (uri.clone(), vec![uri.clone()]),
        };
        // The executive's hours were checked by the call's machine (`CallMachine`), so that
        // `simulate` decides the same way.
        let attempts = match mode {
            ReachMode::Sequential => reach.into_iter().map(|r| vec![r]).collect(),
            ReachMode::Simultaneous => vec![reach],
        };
        self.event(
            ctx,
            "transfer",
            serde_json::json!({ "to": label, "screening": screening, "by": referred_by }),
        );
        tracing::info!(to = %label, screening, by = ?referred_by, "calling the executive");
        self.transfer = Some(Transfer {
            label,
            attempts,
            next: 0,
            timeout,
            deadline: None,
            screening,
            referred_by,
        });
        self.next_attempt(ctx, now)
    }

    /// Calls the next reach entry (or all of them), skipping what cannot be reached.
    fn next_attempt(&mut self, ctx: &CallContext, now: Instant) -> News {
        loop {
            let Some(t) = &mut self.transfer else {
                return News::Nothing;
            };
            let Some(entries) = t.attempts.get(t.next).cloned() else {
                return self.transfer_failed(ctx, "unanswered");
            };
            t.next += 1;
            t.deadline = Some(now + t.timeout);
            let label = t.label.clone();
            let mut rang = 0;
            for entry in &entries {
                let targets = self.resolve(ctx, entry);
                if targets.is_empty() {
                    self.event(
                        ctx,
                        "executive-unreachable",
                        serde_json::json!({ "executive": label, "reach": entry }),
                    );
                    continue;
                }
                let to_uri = targets[0].0.clone();
                rang += self.invite(ctx, Role::Executive, &label, &to_uri, &targets);
            }
            if rang > 0 {
                return News::Nothing;
            }
        }
    }

    /// Where a reach entry rings: the phones an account registered (`user:NAME`), a SIP
    /// URI with an IP address (sent there), or a number or other URI (through the trunk).
    fn resolve(&self, ctx: &CallContext, entry: &str) -> Vec<(String, Peer)> {
        if let Some(user) = entry.strip_prefix("user:") {
            return ctx
                .desk
                .bindings(user, desk::now_ms())
                .into_iter()
                .map(|b| (b.contact, b.source))
                .collect();
        }
        let udp = |addr| Peer {
            transport: Transport::Udp,
            addr,
        };
        if let Some(number) = entry.strip_prefix("tel:") {
            return match &ctx.trunk {
                Some(trunk) => {
                    let domain = trunk
                        .domain
                        .clone()
                        .unwrap_or_else(|| trunk.proxy.to_string());
                    vec![(format!("sip:{number}@{domain}"), udp(trunk.proxy))]
                }
                None => Vec::new(),
            };
        }
        match direct_address(entry) {
            Some(addr) => vec![(entry.to_string(), udp(addr))],
            None => match &ctx.trunk {
                Some(trunk) => vec![(entry.to_string(), udp(trunk.proxy))],
                None => Vec::new(),
            },
        }
    }

    /// The transfer found nobody (or was refused): the plan's next step, or for a REFER,
    /// the secretary keeps the caller.
    fn transfer_failed(&mut self, ctx: &CallContext, why: &'static str) -> News {
        let Some(t) = self.transfer.take() else {
            return News::Nothing;
        };
        self.cancel_ringing(ctx, None);
        self.event(
            ctx,
            "transfer-failed",
            serde_json::json!({ "to": t.label, "why": why }),
        );
        match t.referred_by {
            None => News::GaveUp,
            Some(_) => {
                let sipfrag = if why == "refused" {
                    "SIP/2.0 603 Decline"
                } else {
                    "SIP/2.0 480 Temporarily Unavailable"
                };
                self.notify_referrer(ctx, sipfrag, true);
                if self.connected.is_some() {
                    // The secretary is still there: the caller stays with them.
                    News::Nothing
                } else {
                    News::HungUp
                }
            }
        }
    }

    /// Sends the REFER's progress to the secretary's phone (RFC 3515 §2.4.5 sipfrag).
    fn notify_referrer(&mut self, ctx: &CallContext, sipfrag: &str, last: bool) {
        let Some(c) = &self.connected else {
            return;
        };
        if c.role != Role::Secretary {
            return;
        }
        let Some(leg) = self.legs.iter_mut().find(|l| l.call_id == c.call_id) else {
            return;
        };
        let state = if last {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let (branch, bytes) = leg.request(
            &Method::Notify,
            &[("Event", "refer"), ("Subscription-State", state)],
            Some(("message/sipfrag;version=2.0", sipfrag.as_bytes())),
        );
        let _ = ctx.endpoint.send(Input::Request {
            call_id: leg.call_id.clone(),
            peer: leg.peer,
            branch,
            bytes,
        });
    }

    /// A keypress from the executive being screened: 1 accepts, anything else refuses.
    pub fn on_digit(&mut self, ctx: &CallContext, stream: StreamId, key: char) -> News {
        if !self.screening.as_ref().is_some_and(|s| s.stream == stream) {
            return News::Nothing;
        }
        self.screen(ctx, key)
    }

    fn screen(&mut self, ctx: &CallContext, key: char) -> News {
        let Some(s) = self.screening.take() else {
            return News::Nothing;
        };
        self.event(
            ctx,
            "screening-key",
            serde_json::json!({ "key": key.to_string() }),
        );
        if key == '1' {
            ctx.media.stop(s.stream);
            ctx.media.listen(s.stream, false, false);
            let who = self
                .transfer
                .as_ref()
                .map(|t| t.label.clone())
                .unwrap_or_default();
            self.event(
                ctx,
                "executive-accepted",
                serde_json::json!({ "executive": who }),
            );
            return self.connect_executive(ctx, s.call_id, s.stream, s.local, s.negotiated);
        }
        self.refuse(ctx, s, "declined")
    }

    /// The executive refused (2), said nothing, or hung up: end their leg, go on.
    fn refuse(&mut self, ctx: &CallContext, s: Screening, why: &'static str) -> News {
        if let Some(index) = self.legs.iter().position(|l| l.call_id == s.call_id)
            && self.legs[index].state == LegState::Answered
        {
            self.send_bye(ctx, index);
        }
        ctx.media.close(s.stream);
        let who = self
            .transfer
            .as_ref()
            .map(|t| t.label.clone())
            .unwrap_or_default();
        self.event(
            ctx,
            "executive-refused",
            serde_json::json!({ "executive": who, "why": why }),
        );
        self.transfer_failed(ctx, "refused")
    }

    /// The executive takes the caller: bridge them (ending the secretary's leg first when a
    /// REFER brought them).
    fn connect_executive(
        &mut self,
        ctx: &CallContext,
        call_id: CallId,
        stream: StreamId,
        local: LocalMedia,
        negotiated: Negotiated,
    ) -> News {
        // The other phones were cancelled when this one answered.
        let Some(t) = self.transfer.take() else {
            return News::Nothing;
        };
        let referred = t.referred_by.is_some();
        if referred {
            self.notify_referrer(ctx, "SIP/2.0 200 OK", true);
            self.end_connected(ctx, true);
        }
        ctx.media
            .bridge(self.caller.stream, stream, ctx.rtp_timeout);
        self.connected = Some(Connected {
            call_id,
            role: Role::Executive,
            who: t.label.clone(),
            stream,
            local,
            negotiated,
        });
        tracing::info!(executive = %t.label, "executive connected");
        self.event(
            ctx,
            "transferred",
            serde_json::json!({ "to": t.label, "by": t.referred_by }),
        );
        ctx.store.write(Record::Handled {
            id: self.caller.row,
            by: t.label,
            transfer: true,
            at: store::now_text(),
        });
        if referred {
            News::Transferred
        } else {
            News::Answered
        }
    }

    /// Whether a secretary may send this call to `uri`: one of the company's executives
    /// (by id, or any of their reach entries) or a destination the plan's transfer steps
    /// name. Nothing else: no open relay.
    fn allowed_refer(&self, uri: &str) -> Option<TransferTarget> {
        let company = &self.caller.company;
        let bare = uri.split(';').next().unwrap_or(uri);
        let user = bare
            .split_once(':')
            .map(|(_, rest)| rest)
            .and_then(|rest| rest.split('@').next())
            .unwrap_or_default();
        for (id, exec) in &company.executives {
            let same_number = |r: &String| {
                r.strip_prefix("tel:")
                    .is_some_and(|n| !user.is_empty() && n == user)
            };
            if user == id.0 || exec.reach.iter().any(|r| r == bare || same_number(r)) {
                return Some(TransferTarget::Executive(id.clone()));
            }
        }
        let named_in_plan = company
            .routes
            .iter()
            .flat_map(|r| r.steps.iter())
            .chain(company.steplists.values().flatten())
            .any(|s| matches!(s, Step::Transfer { to: TransferTarget::Uri(u), .. } if u == bare));
        named_in_plan.then(|| TransferTarget::Uri(bare.to_string()))
    }

    // ------------------------------------------------------------------ legs

    /// Sends one INVITE per target; returns how many went out.
    fn invite(
        &mut self,
        ctx: &CallContext,
        role: Role,
        who: &str,
        to_uri: &str,
        targets: &[(String, Peer)],
    ) -> usize {
        let Some(port) = self.reserve_socket(ctx) else {
            return 0;
        };
        // A phone on TLS gets SRTP (SDES): its audio is as private as its signalling.
        if self.srtp_key.is_none() && targets.iter().any(|(_, p)| p.is_secure()) {
            self.srtp_key = crate::srtp::new_inline_key();
        }
        let offer_for = |srtp_key: Option<String>| {
            sdp::write_offer(
                &LocalMedia {
                    ip: ctx.media.ip(),
                    port,
                    session_id: self.session_id,
                    version: 1,
                    srtp_key,
                },
                self.caller.codec,
            )
        };
        let (plain, secure) = (offer_for(None), offer_for(self.srtp_key.clone()));
        let row = self.caller.row.to_string();
        let company = self.caller.company.id.0.clone();
        let headers = [
            ("X-Permanence-Company", company.as_str()),
            ("X-Permanence-Call", row.as_str()),
        ];
        for (target, peer) in targets {
            let (leg, bytes, ack) = Leg::invite(&Invitation {
                role,
                who: who.to_string(),
                target: target.clone(),
                peer: *peer,
                to_uri: to_uri.to_string(),
                display: &self.caller.display,
                from_user: &self.caller.number,
                local_sip: peer.local_for(ctx.local_sip, ctx.local_tls),
                headers: &headers,
                sdp: if peer.is_secure() { &secure } else { &plain },
                max_forwards: self.caller.max_forwards,
            });
            self.event(
                ctx,
                kind(role, Happening::Offered),
                serde_json::json!({ "to": who, "contact": target, "via": peer.addr.to_string() }),
            );
            tracing::info!(role = ?role, who, contact = %target, "ringing");
            let _ = ctx.endpoint.send(Input::Invite {
                leg: leg.call_id.clone(),
                owner: self.owner.clone(),
                peer: leg.peer,
                branch: leg.branch().to_string(),
                bytes,
                ack,
            });
            self.legs.push(leg);
        }
        targets.len()
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

    /// News of one of our INVITEs.
    pub fn on_leg_event(&mut self, ctx: &CallContext, event: LegEvent, now: Instant) -> News {
        match event {
            LegEvent::Provisional { call_id, status } => {
                if let Some(leg) = self.legs.iter_mut().find(|l| l.call_id == call_id)
                    && leg.state == LegState::Calling
                {
                    leg.state = LegState::Ringing;
                    let (role, who) = (leg.role, leg.who.clone());
                    self.event(
                        ctx,
                        kind(role, Happening::Ringing),
                        serde_json::json!({ "to": who, "status": status }),
                    );
                }
                News::Nothing
            }
            LegEvent::Answered { call_id, response } => {
                self.on_answer(ctx, &call_id, &response, now)
            }
            LegEvent::Failed {
                call_id,
                status,
                challenge,
            } => self.on_failure(ctx, &call_id, status, challenge, now),
        }
    }

    fn on_failure(
        &mut self,
        ctx: &CallContext,
        call_id: &CallId,
        status: u16,
        challenge: Option<(bool, String)>,
        now: Instant,
    ) -> News {
        let Some(index) = self.legs.iter().position(|l| &l.call_id == call_id) else {
            return News::Nothing;
        };
        if self.legs[index].state == LegState::Done {
            // Our CANCEL's 487, or a fork that lost.
            return News::Nothing;
        }
        if let (Some((proxy, challenge)), Some(trunk)) = (challenge, &ctx.trunk)
            && !self.legs[index].authenticated
            && let (Some(user), Some(password)) = (&trunk.username, &trunk.password)
        {
            // The provider wants credentials (RFC 3261 §22.2): the same INVITE with them.
            let leg = &mut self.legs[index];
            let uri = leg.target().to_string();
            if let Some(answer) = crate::auth::answer_challenge(
                &challenge,
                user,
                password,
                "INVITE",
                &uri,
                &write::new_tag(),
            ) {
                let header = if proxy {
                    "Proxy-Authorization"
                } else {
                    "Authorization"
                };
                leg.authenticated = true;
                let (bytes, ack) = leg.invite_with_credentials(header, &answer);
                let _ = ctx.endpoint.send(Input::Invite {
                    leg: leg.call_id.clone(),
                    owner: self.owner.clone(),
                    peer: leg.peer,
                    branch: leg.branch().to_string(),
                    bytes,
                    ack,
                });
                let who = leg.who.clone();
                self.event(
                    ctx,
                    "trunk-authenticated",
                    serde_json::json!({ "to": who, "status": status }),
                );
                return News::Nothing;
            }
        }
        let leg = &mut self.legs[index];
        leg.state = LegState::Done;
        let (role, who) = (leg.role, leg.who.clone());
        self.event(
            ctx,
            kind(role, Happening::Declined),
            serde_json::json!({ "to": who, "status": status }),
        );
        let still_ringing = self.legs.iter().any(|l| {
            l.role == role
                && l.who == who
                && matches!(l.state, LegState::Calling | LegState::Ringing)
        });
        if still_ringing {
            return News::Nothing;
        }
        match role {
            Role::Secretary if self.offer.is_some() => {
                ctx.desk.release(&who);
                if let Some(o) = &mut self.offer {
                    o.hunt.failed(&who);
                }
                self.advance(ctx, now)
            }
            Role::Executive if self.transfer.is_some() && self.screening.is_none() => {
                self.next_attempt(ctx, now)
            }
            _ => News::Nothing,
        }
    }

    fn on_answer(
        &mut self,
        ctx: &CallContext,
        call_id: &CallId,
        response: &Response,
        now: Instant,
    ) -> News {
        let Some(index) = self.legs.iter().position(|l| &l.call_id == call_id) else {
            return News::Nothing;
        };
        let was = self.legs[index].state;
        let ack = self.legs[index].answered(response);
        let peer = self.legs[index].peer;
        let _ = ctx.endpoint.send(Input::Send { peer, bytes: ack });
        if was == LegState::Answered {
            // A retransmitted 2xx: our ACK again, nothing else.
            return News::Nothing;
        }
        let (role, who) = (self.legs[index].role, self.legs[index].who.clone());
        let pending = match role {
            Role::Secretary => self.offer.is_some() && self.connected.is_none(),
            Role::Executive => self.transfer.is_some() && self.screening.is_none(),
        };
        let winner = pending && was != LegState::Done;
        let negotiated = sdp::negotiate(&response.body);
        let (true, Ok(negotiated), Some((socket, port))) = (winner, negotiated, self.socket.take())
        else {
            // Too late (another answered, or the caller left), or an answer we cannot use.
            self.send_bye(ctx, index);
            if winner {
                self.event(ctx, "unusable-answer", serde_json::json!({ "to": who }));
                return match role {
                    Role::Secretary => {
                        ctx.desk.release(&who);
                        if let Some(o) = &mut self.offer {
                            o.hunt.failed(&who);
                        }
                        self.advance(ctx, now)
                    }
                    Role::Executive => self.next_attempt(ctx, now),
                };
            }
            return News::Nothing;
        };
        // An answer with SRTP uses our key and theirs; one we cannot pair is plain.
        let srtp_key = negotiated.srtp.as_ref().and(self.srtp_key.clone());
        let srtp = negotiated.srtp_with(srtp_key.as_deref());
        let stream = ctx.media.open(
            StreamSpec::negotiated(
                socket,
                &negotiated,
                self.legs[index].peer.addr.ip(),
                self.events.clone(),
            )
            .encrypted(srtp),
        );
        let local = LocalMedia {
            ip: ctx.media.ip(),
            port,
            session_id: self.session_id,
            version: 1,
            srtp_key,
        };
        self.event(
            ctx,
            kind(role, Happening::Answered),
            serde_json::json!({ "to": who }),
        );
        // First to answer wins: the others stop ringing.
        self.cancel_ringing(ctx, Some(&who));
        if role == Role::Executive {
            let screening = self.transfer.as_ref().is_some_and(|t| t.screening);
            if screening {
                // Ask before connecting: the caller must not land in a mobile's voicemail.
                ctx.media.play(stream, self.announcement(ctx), 2);
                ctx.media.listen(stream, true, false);
                self.screening = Some(Screening {
                    call_id: call_id.clone(),
                    stream,
                    local,
                    negotiated,
                    deadline: now + SCREENING_WAIT,
                });
                return News::Nothing;
            }
            return self.connect_executive(ctx, call_id.clone(), stream, local, negotiated);
        }
        ctx.media
            .bridge(self.caller.stream, stream, ctx.rtp_timeout);
        ctx.desk.answered(&who, self.caller.row);
        self.connected = Some(Connected {
            call_id: call_id.clone(),
            role,
            who: who.clone(),
            stream,
            local,
            negotiated,
        });
        self.offer = None;
        tracing::info!(secretary = %who, "secretary answered");
        ctx.store.write(Record::Handled {
            id: self.caller.row,
            by: who,
            transfer: false,
            at: store::now_text(),
        });
        News::Answered
    }

    fn announcement(&self, ctx: &CallContext) -> Arc<crate::media::Sound> {
        let snapshot = ctx.snapshot();
        match snapshot.sounds.get(&self.caller.announcement) {
            Some(s) => Arc::clone(s),
            // Loaded with the plan whenever a step screens; a REFER never screens.
            None => Arc::new(crate::media::Sound::from_samples(&[0; 8000])),
        }
    }

    /// When [`Outbound::on_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let times = [
            self.offer.as_ref().map(|o| o.hunt.poll_timeout()),
            self.transfer.as_ref().and_then(|t| t.deadline),
            self.screening.as_ref().map(|s| s.deadline),
        ];
        times.into_iter().flatten().min()
    }

    /// A step's overflow or end, an attempt's end, or an executive who said nothing.
    pub fn on_timeout(&mut self, ctx: &CallContext, now: Instant) -> News {
        if let Some(s) = self.screening.take_if(|s| s.deadline <= now) {
            return self.refuse(ctx, s, "no-answer");
        }
        if self.screening.is_none()
            && let Some(t) = &self.transfer
            && t.deadline.is_some_and(|d| d <= now)
        {
            // Only this attempt's phones ring: a secretary's leg, if any, is answered.
            self.cancel_ringing(ctx, None);
            return self.next_attempt(ctx, now);
        }
        match &self.offer {
            Some(o) if o.hunt.expired(now) => self.give_up(ctx, "timeout"),
            Some(o) if o.hunt.poll_timeout() <= now => self.advance(ctx, now),
            _ => News::Nothing,
        }
    }

    /// CANCEL every leg still ringing, freeing those secretaries (except `winner`, who is
    /// now busy with this call).
    fn cancel_ringing(&mut self, ctx: &CallContext, winner: Option<&str>) {
        let mut released: Vec<String> = Vec::new();
        for index in 0..self.legs.len() {
            let leg = &self.legs[index];
            if matches!(leg.state, LegState::Calling | LegState::Ringing) {
                if leg.role == Role::Secretary
                    && Some(leg.who.as_str()) != winner
                    && !released.contains(&leg.who)
                {
                    released.push(leg.who.clone());
                }
                self.cancel_leg(ctx, index);
            }
        }
        for who in released {
            ctx.desk.release(&who);
        }
    }

    fn cancel_leg(&mut self, ctx: &CallContext, index: usize) {
        let leg = &mut self.legs[index];
        let (branch, bytes) = leg.cancel();
        let (role, who, call_id, peer) = (leg.role, leg.who.clone(), leg.call_id.clone(), leg.peer);
        let _ = ctx.endpoint.send(Input::Request {
            call_id,
            peer,
            branch,
            bytes,
        });
        self.event(
            ctx,
            kind(role, Happening::Cancelled),
            serde_json::json!({ "to": who }),
        );
    }

    fn send_bye(&mut self, ctx: &CallContext, index: usize) {
        let leg = &mut self.legs[index];
        let (branch, bytes) = leg.bye();
        let _ = ctx.endpoint.send(Input::Request {
            call_id: leg.call_id.clone(),
            peer: leg.peer,
            branch,
            bytes,
        });
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
        let reply = |status: u16, extra: &[(&str, &str)], body: Option<&[u8]>| Input::Respond {
            key: key.clone(),
            status,
            bytes: write::response(
                &request.echo,
                status,
                Some(&tag),
                extra,
                body.map(|b| ("application/sdp", b)),
            ),
        };
        if request.method == Method::Ack {
            // An ACK is never answered (ours to a leg's 2xx go the other way).
            return News::Nothing;
        }
        if !self.legs.iter().any(|l| l.owns(request, peer)) {
            // Only the Call-ID matched: not this dialog (wrong tags, or another address).
            tracing::warn!(source = %peer.addr, method = %request.method, "request outside any leg's dialog: 481");
            let _ = ctx.endpoint.send(reply(481, &[], None));
            return News::Nothing;
        }
        let is_connected = self
            .connected
            .as_ref()
            .is_some_and(|c| c.call_id == request.call_id);
        let is_screened = self
            .screening
            .as_ref()
            .is_some_and(|s| s.call_id == request.call_id);
        match request.method {
            Method::Bye => {
                let _ = ctx.endpoint.send(reply(200, &[], None));
                if let Some(leg) = self.legs.iter_mut().find(|l| l.call_id == request.call_id) {
                    leg.state = LegState::Done;
                }
                if is_screened && let Some(s) = self.screening.take() {
                    return self.refuse(ctx, s, "hung-up");
                }
                if !is_connected {
                    return News::Nothing;
                }
                let (role, who) = self
                    .connected
                    .as_ref()
                    .map(|c| (c.role, c.who.clone()))
                    .unwrap_or((Role::Secretary, String::new()));
                self.event(
                    ctx,
                    kind(role, Happening::HungUp),
                    serde_json::json!({ "to": who }),
                );
                if self
                    .transfer
                    .as_ref()
                    .is_some_and(|t| t.referred_by.is_some())
                {
                    // Blind transfer: the secretary hangs up once the REFER is accepted; the
                    // caller waits (ringback) for the executive.
                    self.end_connected(ctx, false);
                    let snapshot = ctx.snapshot();
                    let ringback =
                        crate::dialplan::default_sound("ringback", &self.caller.company.language);
                    if let Some(sound) = snapshot.sounds.get(&ringback) {
                        ctx.media.play(self.caller.stream, Arc::clone(sound), 1000);
                    }
                    return News::Nothing;
                }
                News::HungUp
            }
            Method::Refer if is_connected => self.on_refer(ctx, request, &reply, now),
            Method::Invite if is_connected => {
                // Hold, resume or a new address from the other phone.
                let Some(c) = &mut self.connected else {
                    return News::Nothing;
                };
                let reoffer = ctx.reoffer(c.stream, &mut c.local, &mut c.negotiated, &request.body);
                if reoffer.is_err() {
                    let _ = ctx.endpoint.send(reply(488, &[], None));
                    return News::Nothing;
                }
                let answer = sdp::write_answer(&c.local, &c.negotiated);
                let contact = peer.contact("permanence@", ctx.local_sip, ctx.local_tls);
                let _ = ctx.endpoint.send(reply(
                    200,
                    &[("Contact", &contact)],
                    Some(answer.as_bytes()),
                ));
                News::Nothing
            }
            Method::Ack => News::Nothing,
            Method::Info if is_screened => {
                let _ = ctx.endpoint.send(reply(200, &[], None));
                match crate::dtmf::key_from_info(request.content_type.as_deref(), &request.body) {
                    Some(key) => self.screen(ctx, key),
                    None => News::Nothing,
                }
            }
            Method::Info | Method::Options | Method::Notify => {
                let _ = ctx.endpoint.send(reply(200, &[], None));
                News::Nothing
            }
            _ => {
                let _ = ctx
                    .endpoint
                    .send(reply(405, &[("Allow", write::ALLOW)], None));
                News::Nothing
            }
        }
    }

    /// A secretary asks (REFER, RFC 3515) to send the caller elsewhere.
    fn on_refer(
        &mut self,
        ctx: &CallContext,
        request: &Request,
        reply: &Reply,
        now: Instant,
    ) -> News {
        let by = self.connected_to().unwrap_or_default().to_string();
        let is_secretary = self
            .connected
            .as_ref()
            .is_some_and(|c| c.role == Role::Secretary);
        let target = request.refer_to.as_deref();
        let allowed = target.and_then(|t| self.allowed_refer(t));
        let (Some(uri), Some(to), true, None) = (target, allowed, is_secretary, &self.transfer)
        else {
            let status = if target.is_none() { 400 } else { 403 };
            tracing::warn!(
                by = %by,
                refer_to = target.unwrap_or("(none)"),
                status,
                "transfer refused: not a destination this company allows"
            );
            self.event(
                ctx,
                "refer-refused",
                serde_json::json!({ "by": by, "to": target, "status": status }),
            );
            let _ = ctx.endpoint.send(reply(status, &[], None));
            return News::Nothing;
        };
        let _ = ctx.endpoint.send(reply(202, &[], None));
        self.event(ctx, "refer", serde_json::json!({ "by": by, "to": uri }));
        self.notify_referrer(ctx, "SIP/2.0 100 Trying", false);
        self.start_transfer(
            ctx,
            &to,
            REFER_TIMEOUT,
            false,
            ReachMode::Sequential,
            Some(by),
            now,
        )
    }

    /// Ends the leg the caller talks to (BYE unless `bye` is false because they hung up),
    /// closes its stream and starts a secretary's wrap-up.
    fn end_connected(&mut self, ctx: &CallContext, bye: bool) {
        let Some(c) = self.connected.take() else {
            return;
        };
        if let Some(index) = self.legs.iter().position(|l| l.call_id == c.call_id)
            && self.legs[index].state == LegState::Answered
            && bye
        {
            self.event(ctx, "bye-sent", serde_json::json!({ "to": c.who }));
            self.send_bye(ctx, index);
        }
        ctx.media.close(c.stream);
        if c.role == Role::Secretary {
            ctx.desk.finished(&c.who, self.caller.row, desk::now_ms());
        }
    }

    /// The call is over (either side hung up, or the plan moved on): CANCEL what rings,
    /// BYE who answered, close the other streams, start the secretary's wrap-up.
    pub fn end(&mut self, ctx: &CallContext) {
        self.offer = None;
        self.transfer = None;
        self.cancel_ringing(ctx, None);
        if let Some(s) = self.screening.take() {
            if let Some(index) = self.legs.iter().position(|l| l.call_id == s.call_id)
                && self.legs[index].state == LegState::Answered
            {
                self.send_bye(ctx, index);
            }
            ctx.media.close(s.stream);
        }
        self.end_connected(ctx, true);
    }
}

/// The address of a `sip:user@IP[:port]` URI, when its host is an IP address (sent there
/// directly; any other host goes through the trunk).
fn direct_address(uri: &str) -> Option<SocketAddr> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let hostport = rest.rsplit('@').next()?.split(';').next()?;
    if let Ok(addr) = hostport.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip: IpAddr = hostport
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, 5060))
}

/// What happened to a leg, for the timeline.
#[derive(Clone, Copy)]
enum Happening {
    Offered,
    Ringing,
    Answered,
    Declined,
    Cancelled,
    HungUp,
}

fn kind(role: Role, what: Happening) -> &'static str {
    match (role, what) {
        (Role::Secretary, Happening::Offered) => "secretary-offered",
        (Role::Secretary, Happening::Ringing) => "secretary-ringing",
        (Role::Secretary, Happening::Answered) => "secretary-answered",
        (Role::Secretary, Happening::Declined) => "secretary-declined",
        (Role::Secretary, Happening::Cancelled) => "secretary-cancelled",
        (Role::Secretary, Happening::HungUp) => "secretary-hung-up",
        (Role::Executive, Happening::Offered) => "executive-offered",
        (Role::Executive, Happening::Ringing) => "executive-ringing",
        (Role::Executive, Happening::Answered) => "executive-answered",
        (Role::Executive, Happening::Declined) => "executive-declined",
        (Role::Executive, Happening::Cancelled) => "executive-cancelled",
        (Role::Executive, Happening::HungUp) => "executive-hung-up",
    }
}

fn event(ctx: &CallContext, row: CallRowId, kind: &'static str, data: serde_json::Value) {
    ctx.store.write(Record::Event {
        id: row,
        kind,
        data: data.to_string(),
        at: store::now_text(),
    });
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("legs", &self.legs.len())
            .field("connected", &self.connected_to())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ip_hosts_are_called_directly() {
        assert_eq!(
            direct_address("sip:marie@127.0.0.1:5070"),
            Some("127.0.0.1:5070".parse().unwrap())
        );
        assert_eq!(
            direct_address("sip:marie@192.0.2.1;transport=udp"),
            Some("192.0.2.1:5060".parse().unwrap())
        );
        assert_eq!(direct_address("sip:+33611111111@trunk.example.com"), None);
        assert_eq!(direct_address("tel:+33611111111"), None);
    }
}
