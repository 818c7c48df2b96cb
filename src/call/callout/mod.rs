//! Calls placed for a company from one of its tasks (the console's "call" button). The
//! decisions are [`machine::CallOut`]'s; this shell carries them out: it rings the
//! secretary's phones (her registered SIP phones, and her browser phone when it is on: a
//! ring on her page saying it is her own call, answered there), then dials the customer
//! through the trunk presenting the company's `caller_id` (From and P-Asserted-Identity),
//! bridges the two in the engine, and writes the records: a `calls` row with
//! `direction = outbound` linked to the task, its timeline, and the task's attempt.
//!
//! Nothing but [`start`] places such a call, and only the console's handler calls it, for
//! a logged-in secretary, a task of a company she serves, and the task's own number.

pub mod machine;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use self::machine::{CallOut, Output, Side};
use super::browser_ring::BrowserRing;
use super::context::CallContext;
use super::control::{BrowserAction, Control};
use super::leg::{Invitation, Leg, Role};
use super::outbound::machine::TrunkRoute;
use crate::dialplan::Company;
use crate::event::CallEvent;
use crate::media::engine::StreamSpec;
use crate::media::{MediaEvent, StreamId};
use crate::number::E164;
use crate::registrar::Binding;
use crate::sdp::{self, Codec, LocalMedia, Negotiated};
use crate::sip::endpoint::{ForCall, Input, LegEvent, ToCall};
use crate::sip::message::{Method, Request};
use crate::sip::transaction::TxKey;
use crate::sip::write::{self, Ids};
use crate::sip::{CallId, Peer, Transport};
use crate::store::{self, CallRowId, Record};

/// What the console checked and decided before the call starts.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The call's row (allocated, not yet written).
    pub row: CallRowId,
    /// The task it is for.
    pub task: i64,
    /// The company it is placed for.
    pub company: Arc<Company>,
    /// The secretary who asked, already claimed on the desk (ringing).
    pub secretary: String,
    /// Her phones, from the claim.
    pub phones: Vec<Binding>,
    /// The customer's number (the task's).
    pub number: E164,
    /// The customer's name, shown on her phone.
    pub customer: String,
    /// The number presented to the customer (the company's `caller_id`).
    pub caller_id: E164,
    /// Where numbers are sent.
    pub trunk: TrunkRoute,
}

/// Writes the call's first records and starts its task.
pub fn start(ctx: Arc<CallContext>, plan: Plan) {
    let owner = CallId(format!(
        "callout-{}-{}@permanence",
        plan.row,
        write::new_tag()
    ));
    let at = store::now_text();
    ctx.store.write(Record::CallStarted {
        id: plan.row,
        // No message row: nobody called the company; `CallPlaced` names it.
        company: None,
        dialled: plan.number.to_string(),
        caller: plan.caller_id.to_string(),
        caller_name: None,
        route: Some(format!("task {}", plan.task)),
        category: "normal",
        sip_call_id: owner.0.clone(),
        at: at.clone(),
    });
    ctx.store.write(Record::CallPlaced {
        id: plan.row,
        company: plan.company.id.0.clone(),
        task: plan.task,
        at,
    });
    tokio::spawn(run(ctx, plan, owner));
}

/// One leg's audio once answered.
struct Audio {
    stream: StreamId,
    /// A SIP leg's SDP (a re-INVITE changes it); none for her browser phone.
    sdp: Option<(LocalMedia, Negotiated)>,
}

/// One of her phones being rung.
enum HerLeg {
    /// A registered SIP phone (boxed: a dialog is ten times a ring's size).
    Sip(Box<Leg>),
    /// Her browser phone.
    Browser(BrowserRing),
}

impl HerLeg {
    fn sip(&self) -> Option<&Leg> {
        match self {
            HerLeg::Sip(leg) => Some(leg.as_ref()),
            HerLeg::Browser(_) => None,
        }
    }
}

/// The call's shell state: its legs, sockets and streams.
struct Shell {
    ctx: Arc<CallContext>,
    plan: Plan,
    owner: CallId,
    her: Vec<Option<HerLeg>>,
    her_socket: Option<(UdpSocket, u16)>,
    /// The phone that answered first, and its SDP (none for the browser).
    her_answer: Option<(usize, Option<Negotiated>)>,
    her_audio: Option<Audio>,
    /// The phone of hers whose audio is open.
    answered_on: Option<usize>,
    customer: Option<Leg>,
    customer_socket: Option<(UdpSocket, u16)>,
    customer_answer: Option<Negotiated>,
    customer_audio: Option<Audio>,
    /// The trunk's challenge was answered once already.
    authenticated: bool,
    /// The customer's phone rings (its first provisional response is in the timeline).
    customer_ringing: bool,
    events: mpsc::UnboundedSender<(StreamId, MediaEvent)>,
    ids: Ids,
    session_id: u64,
    answered: bool,
}

async fn run(ctx: Arc<CallContext>, plan: Plan, owner: CallId) {
    let span = tracing::info_span!("callout", call = plan.row, task = plan.task, company = %plan.company.id);
    let _entered = span.enter();
    let (calls, mut inbox) = mpsc::unbounded_channel();
    let _ = ctx.endpoint.send(Input::Attach {
        call_id: owner.clone(),
        calls,
    });
    // Her clicks on her browser phone reach this call by its row, as for a caller's.
    let registry = Arc::clone(&ctx);
    let (_console, mut controls) = registry.controls.register(plan.row);
    let (events, mut media) = mpsc::unbounded_channel();
    let mut machine = CallOut::new(plan.phones.len(), Instant::now());
    let mut shell = Shell {
        ctx,
        plan,
        owner,
        her: Vec::new(),
        her_socket: None,
        her_answer: None,
        her_audio: None,
        answered_on: None,
        customer: None,
        customer_socket: None,
        customer_answer: None,
        customer_audio: None,
        authenticated: false,
        customer_ringing: false,
        events,
        ids: Ids::fresh(),
        session_id: fastrand::u64(..u64::MAX / 2),
        answered: false,
    };
    tracing::info!(secretary = %shell.plan.secretary, "calling out for a task");
    shell.execute(&mut machine);
    while !machine.is_over() {
        let deadline = machine.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = inbox.recv() => match message {
                Some(ToCall::Leg(event)) => shell.on_leg_event(&mut machine, *event),
                Some(ToCall::Request(message)) => {
                    let ForCall { request, key, peer } = *message;
                    shell.on_request(&mut machine, &request, key, peer)
                }
                Some(ToCall::Shutdown) | None => {
                    shell.event(CallEvent::ServerStopping {});
                    machine.handle_shutdown();
                }
                Some(_) => {}
            },
            Some((stream, event)) = media.recv() => {
                if matches!(event, MediaEvent::RtpTimeout) {
                    let side = if shell.customer_audio.as_ref().is_some_and(|a| a.stream == stream) {
                        Side::Customer
                    } else {
                        Side::Her
                    };
                    tracing::warn!(?side, "no audio any more: hanging up");
                    shell.event(CallEvent::RtpTimeout {});
                    machine.handle_hang_up(side);
                }
            }
            Some(control) = controls.recv() => shell.on_control(&mut machine, *control),
            () = sleep => machine.handle_timeout(Instant::now()),
        }
        shell.execute(&mut machine);
    }
    for audio in [shell.her_audio.take(), shell.customer_audio.take()]
        .into_iter()
        .flatten()
    {
        shell.ctx.media.close(audio.stream);
    }
    let _ = shell
        .ctx
        .endpoint
        .send(Input::CallEnded(shell.owner.clone()));
}

impl Shell {
    /// Carries out what the machine decided.
    fn execute(&mut self, machine: &mut CallOut) {
        while let Some(output) = machine.poll_output() {
            match output {
                Output::InviteHer(phones) => {
                    for phone in phones {
                        let sent = self.invite_her(phone);
                        if let (Some(leg), Some(binding)) = (&sent, self.plan.phones.get(phone)) {
                            let via = match leg {
                                HerLeg::Sip(leg) => leg.peer.addr.to_string(),
                                HerLeg::Browser(_) => "browser".to_string(),
                            };
                            self.event(CallEvent::Offered {
                                role: Role::Secretary,
                                to: self.plan.secretary.clone(),
                                contact: binding.contact.clone(),
                                via,
                            });
                        }
                        self.her.push(sent);
                        if self.her[phone].is_none() {
                            machine.handle_her_failure(phone);
                        }
                    }
                }
                Output::CancelHer(phone) => {
                    self.event(CallEvent::LegCancelled {
                        role: Role::Secretary,
                        to: self.party(Role::Secretary),
                    });
                    self.send_her(phone, Leg::cancel, BrowserRing::cancel);
                }
                Output::ByeHer(phone) => {
                    self.event(CallEvent::ByeSent {
                        to: Some(self.plan.secretary.clone()),
                    });
                    self.send_her(phone, Leg::bye, BrowserRing::hang_up);
                }
                Output::OpenHer(phone) => self.open_her(phone),
                Output::Ringback => self.ringback(),
                Output::InviteCustomer => {
                    if !self.invite_customer() {
                        machine.handle_customer_failure(503);
                    }
                }
                Output::CancelCustomer => {
                    self.event(CallEvent::LegCancelled {
                        role: Role::Customer,
                        to: self.party(Role::Customer),
                    });
                    self.send_customer(Leg::cancel);
                }
                Output::ByeCustomer => {
                    self.event(CallEvent::ByeSent {
                        to: Some(self.plan.number.to_string()),
                    });
                    self.send_customer(Leg::bye);
                }
                Output::Bridge => self.bridge(),
                Output::Finished {
                    outcome,
                    attempt,
                    wrap_up,
                } => self.finished(outcome, attempt, wrap_up),
            }
        }
    }

    /// One entry of the call's timeline, as for a caller's call.
    fn event(&self, event: CallEvent) {
        self.ctx.store.write(Record::Event {
            id: self.plan.row,
            event,
            at: store::now_text(),
        });
    }

    /// Whom a side's events name: her username, or the number dialled for the customer.
    fn party(&self, role: Role) -> String {
        match role {
            Role::Customer => self.plan.number.to_string(),
            Role::Secretary | Role::Executive => self.plan.secretary.clone(),
        }
    }

    fn bind(&self) -> Option<(UdpSocket, u16)> {
        match self.ctx.media.bind() {
            Ok(bound) => Some(bound),
            Err(e) => {
                tracing::error!(error = %e, "no RTP port for a call placed for a task");
                None
            }
        }
    }

    fn offer(&self, port: u16, codec: Codec) -> String {
        sdp::write_offer(
            &LocalMedia {
                ip: self.ctx.media.ip(),
                port,
                session_id: self.session_id,
                version: 1,
                srtp_key: None,
            },
            codec,
        )
    }

    /// Rings one of her phones: it shows the customer (name and number) she is about to
    /// call for the company.
    fn invite_her(&mut self, phone: usize) -> Option<HerLeg> {
        let binding = self.plan.phones.get(phone)?.clone();
        let display = format!(
            "{} · {}",
            self.plan.company.name,
            if self.plan.customer.is_empty() {
                self.plan.number.as_str()
            } else {
                &self.plan.customer
            }
        );
        if crate::media::webrtc::is_contact(&binding.contact) {
            // Her page has room to say whom she calls, and for which company.
            let whom = if self.plan.customer.is_empty() {
                self.plan.number.to_string()
            } else {
                format!("{} ({})", self.plan.customer, self.plan.number)
            };
            let display = format!("{whom} pour {}", self.plan.company.name);
            return BrowserRing::ring(
                &self.ctx,
                &self.plan.secretary,
                self.plan.row,
                &display,
                true,
            )
            .map(HerLeg::Browser);
        }
        if self.her_socket.is_none() {
            self.her_socket = self.bind();
        }
        let port = self.her_socket.as_ref()?.1;
        let offer = self.offer(port, Codec::Pcmu);
        let to_uri = match self.ctx.local_sip.ip() {
            std::net::IpAddr::V4(ip) => format!("sip:{}@{ip}", self.plan.secretary),
            std::net::IpAddr::V6(ip) => format!("sip:{}@[{ip}]", self.plan.secretary),
        };
        let (row, task) = (self.plan.row.to_string(), self.plan.task.to_string());
        let headers = [
            ("X-Permanence-Company", self.plan.company.id.0.as_str()),
            ("X-Permanence-Call", row.as_str()),
            ("X-Permanence-Task", task.as_str()),
        ];
        let (leg, bytes, ack) = Leg::invite(&Invitation {
            role: Role::Secretary,
            who: self.plan.secretary.clone(),
            target: binding.contact.clone(),
            peer: binding.source,
            to_uri,
            display: &display,
            from_user: self.plan.number.as_str(),
            local_sip: binding
                .source
                .local_for(self.ctx.local_sip, self.ctx.local_tls),
            headers: &headers,
            sdp: &offer,
            max_forwards: 70,
            ids: self.ids.fork(),
        });
        let _ = self.ctx.endpoint.send(Input::Invite {
            leg: leg.call_id.clone(),
            owner: self.owner.clone(),
            peer: leg.peer,
            branch: leg.branch().to_string(),
            bytes,
            ack,
        });
        Some(HerLeg::Sip(Box::new(leg)))
    }

    /// INVITEs the customer through the trunk, presenting the company's number.
    fn invite_customer(&mut self) -> bool {
        self.customer_socket = self.bind();
        let Some((_, port)) = &self.customer_socket else {
            return false;
        };
        let codec = self
            .her_audio
            .as_ref()
            .and_then(|a| a.sdp.as_ref())
            .map_or(Codec::Pcmu, |(_, n)| n.codec);
        let offer = self.offer(*port, codec);
        let trunk = &self.plan.trunk;
        let target = format!("sip:{}@{}", self.plan.number, trunk.domain);
        // RFC 3325: the identity the trunk passes on (most providers read it, or From).
        let asserted = format!("<sip:{}@{}>", self.plan.caller_id, trunk.domain);
        let row = self.plan.row.to_string();
        let headers = [
            ("P-Asserted-Identity", asserted.as_str()),
            ("X-Permanence-Call", row.as_str()),
        ];
        let peer = Peer {
            transport: Transport::Udp,
            addr: trunk.proxy,
        };
        let (leg, bytes, ack) = Leg::invite(&Invitation {
            role: Role::Customer,
            who: self.plan.number.to_string(),
            target: target.clone(),
            peer,
            to_uri: target,
            display: &self.plan.company.name,
            from_user: self.plan.caller_id.as_str(),
            local_sip: self.ctx.local_sip,
            headers: &headers,
            sdp: &offer,
            max_forwards: 70,
            ids: self.ids.fork(),
        });
        let _ = self.ctx.endpoint.send(Input::Invite {
            leg: leg.call_id.clone(),
            owner: self.owner.clone(),
            peer: leg.peer,
            branch: leg.branch().to_string(),
            bytes,
            ack,
        });
        self.event(CallEvent::Offered {
            role: Role::Customer,
            to: self.plan.number.to_string(),
            contact: leg.target().to_string(),
            via: trunk.proxy.to_string(),
        });
        self.customer = Some(leg);
        true
    }

    fn send(&self, leg: &mut Leg, write: fn(&mut Leg) -> (String, Vec<u8>)) {
        let (branch, bytes) = write(leg);
        let _ = self.ctx.endpoint.send(Input::Request {
            call_id: leg.call_id.clone(),
            peer: leg.peer,
            branch,
            bytes,
        });
    }

    /// Cancels or ends one of her phones: `write` for a SIP phone, `browser` for hers.
    fn send_her(
        &mut self,
        phone: usize,
        write: fn(&mut Leg) -> (String, Vec<u8>),
        browser: fn(&BrowserRing, &CallContext),
    ) {
        match self.her.get_mut(phone).and_then(Option::take) {
            Some(HerLeg::Sip(mut leg)) => {
                self.send(&mut leg, write);
                self.her[phone] = Some(HerLeg::Sip(leg));
            }
            Some(HerLeg::Browser(ring)) => {
                browser(&ring, &self.ctx);
                self.her[phone] = Some(HerLeg::Browser(ring));
            }
            None => {}
        }
    }

    fn send_customer(&mut self, write: fn(&mut Leg) -> (String, Vec<u8>)) {
        if let Some(mut leg) = self.customer.take() {
            self.send(&mut leg, write);
            self.customer = Some(leg);
        }
    }

    fn open(&self, socket: UdpSocket, port: u16, negotiated: Negotiated, peer: Peer) -> Audio {
        let spec = StreamSpec::negotiated(socket, &negotiated, peer.addr.ip(), self.events.clone());
        let stream = self.ctx.media.open(spec);
        let local = LocalMedia {
            ip: self.ctx.media.ip(),
            port,
            session_id: self.session_id,
            version: 1,
            srtp_key: None,
        };
        Audio {
            stream,
            sdp: Some((local, negotiated)),
        }
    }

    /// Her answered phone's audio; she is on this call now (the board shows it).
    fn open_her(&mut self, phone: usize) {
        let Some((answered, negotiated)) = self.her_answer.take() else {
            return;
        };
        if answered != phone {
            return;
        }
        let audio = match (self.her.get(phone), negotiated) {
            (Some(Some(HerLeg::Sip(leg))), Some(negotiated)) => {
                let peer = leg.peer;
                let Some((socket, port)) = self.her_socket.take() else {
                    return;
                };
                self.open(socket, port, negotiated, peer)
            }
            (Some(Some(HerLeg::Browser(ring))), None) => {
                // The socket bound for her SIP phones is not needed: it closes here.
                self.her_socket = None;
                let Some(stream) = ring.open(&self.ctx, self.events.clone()) else {
                    tracing::warn!("her browser phone went away as she answered");
                    return;
                };
                Audio { stream, sdp: None }
            }
            _ => return,
        };
        self.her_audio = Some(audio);
        self.answered_on = Some(phone);
        self.event(CallEvent::Answered {
            role: Role::Secretary,
            to: self.party(Role::Secretary),
        });
        self.ctx
            .desk
            .answered(&self.plan.secretary, self.plan.row, crate::clock::unix_ms());
    }

    fn ringback(&self) {
        let Some(audio) = &self.her_audio else {
            return;
        };
        let ringback = crate::dialplan::default_sound("ringback", &self.plan.company.language);
        if let Some(sound) = self.ctx.snapshot().sounds.get(&ringback) {
            self.ctx.media.play(audio.stream, Arc::clone(sound), 1000);
        }
    }

    /// The customer answered: their audio, bridged with hers; the records say she handled
    /// the call from now.
    fn bridge(&mut self) {
        let (Some(negotiated), Some((socket, port)), Some(leg)) = (
            self.customer_answer.take(),
            self.customer_socket.take(),
            self.customer.as_ref(),
        ) else {
            return;
        };
        let audio = self.open(socket, port, negotiated, leg.peer);
        if let Some(her) = &self.her_audio {
            self.ctx.media.stop(her.stream);
            self.ctx
                .media
                .bridge(her.stream, audio.stream, self.ctx.rtp_timeout);
        }
        self.customer_audio = Some(audio);
        self.answered = true;
        self.event(CallEvent::Answered {
            role: Role::Customer,
            to: self.party(Role::Customer),
        });
        let at = store::now_text();
        self.ctx.store.write(Record::CallAnswered {
            id: self.plan.row,
            at: at.clone(),
        });
        self.ctx.store.write(Record::Handled {
            id: self.plan.row,
            by: self.plan.secretary.clone(),
            transfer: false,
            at,
        });
        tracing::info!("customer answered: bridged");
    }

    fn finished(
        &mut self,
        outcome: store::Outcome,
        attempt: Option<crate::followup::AttemptResult>,
        wrap_up: bool,
    ) {
        let at = store::now_text();
        self.ctx.store.write(Record::CallEnded {
            id: self.plan.row,
            outcome,
            status: None,
            at: at.clone(),
            deliver: None,
        });
        if let Some(result) = attempt {
            self.ctx.store.write(store::attempt(
                self.plan.task,
                result,
                String::new(),
                Some(self.plan.row),
                &self.plan.secretary,
                at,
            ));
        }
        let now = crate::clock::unix_ms();
        if wrap_up {
            self.ctx
                .desk
                .finished(&self.plan.secretary, self.plan.row, now);
        } else {
            self.ctx.desk.release(&self.plan.secretary, now);
        }
        tracing::info!(
            outcome = outcome.as_str(),
            attempt = attempt.map(|a| a.as_str()),
            "call placed for a task ended"
        );
    }

    /// Which of her SIP phones a dialog is.
    fn her_phone(&self, call_id: &CallId) -> Option<usize> {
        self.her.iter().position(|l| {
            l.as_ref()
                .and_then(HerLeg::sip)
                .is_some_and(|l| &l.call_id == call_id)
        })
    }

    fn is_customer(&self, call_id: &CallId) -> bool {
        self.customer
            .as_ref()
            .is_some_and(|l| &l.call_id == call_id)
    }

    fn on_leg_event(&mut self, machine: &mut CallOut, event: LegEvent) {
        match event {
            LegEvent::Provisional { call_id, status } => {
                if self.is_customer(&call_id) && !self.customer_ringing {
                    self.customer_ringing = true;
                    self.event(CallEvent::LegRinging {
                        role: Role::Customer,
                        to: self.plan.number.to_string(),
                        status,
                    });
                }
            }
            LegEvent::Answered { call_id, response } => {
                if let Some(phone) = self.her_phone(&call_id) {
                    let Some(Some(HerLeg::Sip(leg))) = self.her.get_mut(phone) else {
                        return;
                    };
                    let ack = leg.answered(&response);
                    let peer = leg.peer;
                    let _ = self.ctx.endpoint.send(Input::Send { peer, bytes: ack });
                    let usable = match sdp::negotiate(&response.body) {
                        Ok(n) if self.her_answer.is_none() && self.her_audio.is_none() => {
                            self.her_answer = Some((phone, Some(n)));
                            true
                        }
                        Ok(_) => true,
                        Err(_) => false,
                    };
                    machine.handle_her_answer(phone, usable, Instant::now());
                } else if self.is_customer(&call_id) {
                    let Some(leg) = self.customer.as_mut() else {
                        return;
                    };
                    let ack = leg.answered(&response);
                    let peer = leg.peer;
                    let _ = self.ctx.endpoint.send(Input::Send { peer, bytes: ack });
                    if self.customer_audio.is_some() {
                        return;
                    }
                    let usable = match sdp::negotiate(&response.body) {
                        Ok(n) => {
                            self.customer_answer = Some(n);
                            true
                        }
                        Err(_) => false,
                    };
                    machine.handle_customer_answer(usable);
                }
            }
            LegEvent::Failed {
                call_id,
                status,
                challenge,
            } => {
                if let Some(phone) = self.her_phone(&call_id) {
                    self.declined(Role::Secretary, status);
                    machine.handle_her_failure(phone);
                } else if self.is_customer(&call_id) {
                    if matches!(status, 401 | 407) && self.authenticate(challenge) {
                        self.event(CallEvent::TrunkAuthenticated {
                            to: self.plan.number.to_string(),
                            status,
                        });
                        return;
                    }
                    tracing::info!(status, "the customer's number did not answer");
                    self.declined(Role::Customer, status);
                    machine.handle_customer_failure(status);
                }
            }
        }
    }

    /// One side hung up (BYE, or her button on the page).
    fn hung_up(&self, side: Side) {
        let role = match side {
            Side::Her => Role::Secretary,
            Side::Customer => Role::Customer,
        };
        self.event(CallEvent::HungUp {
            role,
            to: self.party(role),
        });
    }

    /// A phone refused or failed with `status`.
    fn declined(&self, role: Role, status: u16) {
        self.event(CallEvent::Declined {
            role,
            to: self.party(role),
            status,
        });
    }

    /// What the console asks of this call: her clicks on her browser phone's ring; a
    /// transfer is refused (nobody called the company).
    fn on_control(&mut self, machine: &mut CallOut, control: Control) {
        let (secretary, ring, action) = match control {
            Control::Transfer { reply, .. } => {
                let _ = reply.send(Err(super::outbound::machine::TransferRefused::PlacedCall));
                return;
            }
            Control::Browser {
                secretary,
                ring,
                action,
            } => (secretary, ring, action),
        };
        let found = self
            .her
            .iter()
            .position(|l| matches!(l, Some(HerLeg::Browser(b)) if b.is(&secretary, ring)));
        let (Some(phone), Some(Some(HerLeg::Browser(browser)))) =
            (found, found.and_then(|p| self.her.get(p)))
        else {
            return;
        };
        let on_it = self.her_audio.is_some() && self.answered_on == Some(phone);
        match action {
            BrowserAction::Answer => {
                let usable = browser.usable(&self.ctx);
                if usable && self.her_answer.is_none() && self.her_audio.is_none() {
                    self.her_answer = Some((phone, None));
                }
                machine.handle_her_answer(phone, usable, Instant::now());
            }
            BrowserAction::Decline => {
                self.declined(Role::Secretary, 603);
                machine.handle_her_failure(phone);
            }
            BrowserAction::HangUp if on_it => {
                self.hung_up(Side::Her);
                machine.handle_hang_up(Side::Her);
            }
            BrowserAction::HangUp => {
                self.declined(Role::Secretary, 487);
                machine.handle_her_failure(phone);
            }
            // She holds nobody: the customer is her own call (the page's button is moot).
            BrowserAction::Hold(_) => {}
        }
    }

    /// Answers the trunk's challenge once with its credentials (RFC 3261 §22.2).
    fn authenticate(&mut self, challenge: Option<(bool, String)>) -> bool {
        if self.authenticated {
            return false;
        }
        let (Some((proxy, challenge)), Some(trunk), Some(leg)) =
            (challenge, &self.ctx.trunk, self.customer.as_mut())
        else {
            return false;
        };
        let Some((header, answer)) =
            trunk.answer_invite_challenge(proxy, &challenge, leg.target(), &self.ids.tag())
        else {
            return false;
        };
        let (bytes, ack) = leg.invite_with_credentials(header, &answer);
        let _ = self.ctx.endpoint.send(Input::Invite {
            leg: leg.call_id.clone(),
            owner: self.owner.clone(),
            peer: leg.peer,
            branch: leg.branch().to_string(),
            bytes,
            ack,
        });
        self.authenticated = true;
        true
    }

    /// A request inside one of the legs' dialogs: a BYE ends that side; a re-INVITE
    /// (hold, resume) is applied to its stream.
    fn on_request(&mut self, machine: &mut CallOut, request: &Request, key: TxKey, peer: Peer) {
        if request.method == Method::Ack {
            return;
        }
        let tag = write::new_tag();
        let reply = |status: u16, extra: &[(&str, &str)], body: Option<&[u8]>| {
            let bytes = write::response(
                &request.echo,
                status,
                Some(&tag),
                extra,
                body.map(|b| ("application/sdp", b)),
            );
            let _ = self.ctx.endpoint.send(Input::Respond {
                key: key.clone(),
                status,
                bytes,
            });
        };
        let side = if self
            .customer
            .as_ref()
            .is_some_and(|l| l.owns(request, peer))
        {
            Side::Customer
        } else if self
            .her
            .iter()
            .flatten()
            .filter_map(HerLeg::sip)
            .any(|l| l.owns(request, peer))
        {
            Side::Her
        } else {
            tracing::warn!(source = %peer.addr, method = %request.method, "request outside the call's dialogs: 481");
            return reply(481, &[], None);
        };
        match request.method {
            Method::Bye => {
                reply(200, &[], None);
                self.hung_up(side);
                machine.handle_hang_up(side);
            }
            Method::Invite => {
                let audio = match side {
                    Side::Her => self.her_audio.as_mut(),
                    Side::Customer => self.customer_audio.as_mut(),
                };
                let Some((stream, Some((local, negotiated)))) =
                    audio.map(|a| (a.stream, a.sdp.as_mut()))
                else {
                    return reply(491, &[], None);
                };
                if self
                    .ctx
                    .reoffer(stream, local, negotiated, &request.body)
                    .is_err()
                {
                    return reply(488, &[], None);
                }
                let answer = sdp::write_answer(local, negotiated);
                let contact = peer.contact("permanence@", self.ctx.local_sip, self.ctx.local_tls);
                reply(200, &[("Contact", &contact)], Some(answer.as_bytes()));
            }
            Method::Info | Method::Options | Method::Notify => reply(200, &[], None),
            _ => reply(405, &[("Allow", write::ALLOW)], None),
        }
    }
}
