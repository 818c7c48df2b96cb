//! A call's outbound side: ringing secretaries for a `secretary` step (who, in which
//! order, until when: [`Hunt`]), taking the first answer, cancelling the others, bridging
//! the audio, and ending the other leg when the call ends. The call task owns one
//! [`Outbound`] and tells its machine what came of it.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::leg::{Invitation, Leg, LegState};
use super::task::CallContext;
use crate::desk;
use crate::dialplan::Strategy;
use crate::distribution::{Hunt, Next};
use crate::media::engine::StreamSpec;
use crate::media::{MediaEvent, StreamId};
use crate::rtp::Packetizer;
use crate::sdp::{self, Codec, LocalMedia, Negotiated};
use crate::sip::endpoint::{Input, LegEvent};
use crate::sip::message::{Method, Request};
use crate::sip::transaction::TxKey;
use crate::sip::{CallId, Peer, write};
use crate::store::{self, CallRowId, Record};

/// What became of the outbound side, for the call's machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    /// Nothing the machine needs to know.
    Nothing,
    /// Someone answered: the caller is bridged to them.
    Answered,
    /// Nobody took the call: the plan's next step.
    GaveUp,
    /// The person the caller talked to hung up (or their audio stopped).
    HungUp,
}

/// A `secretary` step in progress.
struct Offer {
    hunt: Hunt,
    company: String,
    who: Vec<String>,
    group: Option<String>,
}

/// The leg the caller is talking to.
struct Connected {
    call_id: CallId,
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
    /// The company's id (X-Permanence-Company).
    pub company: String,
    /// The caller's stream and codec.
    pub stream: StreamId,
    /// The caller's codec, offered first.
    pub codec: Codec,
}

/// Every outbound leg of one call.
pub struct Outbound {
    caller: Caller,
    owner: CallId,
    legs: Vec<Leg>,
    offer: Option<Offer>,
    connected: Option<Connected>,
    /// Our RTP socket for the other side, bound with the first INVITE.
    socket: Option<(UdpSocket, u16)>,
    session_id: u64,
    events: mpsc::UnboundedSender<(StreamId, MediaEvent)>,
}

impl Outbound {
    /// Nothing rung yet. Media events of the other leg go to `events`.
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
            connected: None,
            socket: None,
            session_id: fastrand::u64(..u64::MAX / 2),
            events,
        }
    }

    /// Whether this stream is the other leg's.
    pub fn owns_stream(&self, stream: StreamId) -> bool {
        self.connected.as_ref().is_some_and(|c| c.stream == stream)
    }

    /// Whether this Call-ID is one of our legs'.
    pub fn owns_call_id(&self, call_id: &CallId) -> bool {
        self.legs.iter().any(|l| &l.call_id == call_id)
    }

    /// Who the caller talks to.
    pub fn connected_to(&self) -> Option<&str> {
        self.connected.as_ref().map(|c| c.who.as_str())
    }

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
            company: self.caller.company.clone(),
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
                        if self.ring(ctx, &name) {
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
    fn ring(&mut self, ctx: &CallContext, username: &str) -> bool {
        let Some(bindings) = ctx.desk.claim(username, self.caller.row, desk::now_ms()) else {
            return false;
        };
        let Some(port) = self.reserve_socket(ctx) else {
            ctx.desk.release(username);
            return false;
        };
        let offer = sdp::write_offer(
            &LocalMedia {
                ip: ctx.media.ip(),
                port,
                session_id: self.session_id,
                version: 1,
            },
            self.caller.codec,
        );
        let row = self.caller.row.to_string();
        let headers = [
            ("X-Permanence-Company", self.caller.company.as_str()),
            ("X-Permanence-Call", row.as_str()),
        ];
        for binding in bindings {
            let (leg, bytes, ack) = Leg::invite(&Invitation {
                who: username.to_string(),
                target: binding.contact.clone(),
                peer: binding.source,
                to_uri: format!("sip:{username}@{}", ctx.local_sip.ip()),
                display: &self.caller.display,
                from_user: &self.caller.number,
                local_sip: ctx.local_sip,
                headers: &headers,
                sdp: &offer,
            });
            event(
                ctx,
                self.caller.row,
                "secretary-offered",
                serde_json::json!({ "secretary": username, "contact": binding.contact, "to": binding.source.addr.to_string() }),
            );
            tracing::info!(secretary = username, contact = %binding.contact, "ringing secretary");
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

    /// News of one of our INVITEs.
    pub fn on_leg_event(&mut self, ctx: &CallContext, event: LegEvent, now: Instant) -> News {
        match event {
            LegEvent::Provisional { call_id, status } => {
                if let Some(leg) = self.legs.iter_mut().find(|l| l.call_id == call_id)
                    && leg.state == LegState::Calling
                {
                    leg.state = LegState::Ringing;
                    let who = leg.who.clone();
                    self::event(
                        ctx,
                        self.caller.row,
                        "secretary-ringing",
                        serde_json::json!({ "secretary": who, "status": status }),
                    );
                }
                News::Nothing
            }
            LegEvent::Answered { call_id, response } => {
                self.on_answer(ctx, &call_id, &response, now)
            }
            LegEvent::Failed { call_id, status } => {
                let Some(leg) = self.legs.iter_mut().find(|l| l.call_id == call_id) else {
                    return News::Nothing;
                };
                if leg.state == LegState::Done {
                    // Our CANCEL's 487, or a fork that lost.
                    return News::Nothing;
                }
                leg.state = LegState::Done;
                let who = leg.who.clone();
                self::event(
                    ctx,
                    self.caller.row,
                    "secretary-declined",
                    serde_json::json!({ "secretary": who, "status": status }),
                );
                let still_ringing = self.legs.iter().any(|l| {
                    l.who == who && matches!(l.state, LegState::Calling | LegState::Ringing)
                });
                if still_ringing || self.offer.is_none() {
                    return News::Nothing;
                }
                ctx.desk.release(&who);
                if let Some(o) = &mut self.offer {
                    o.hunt.failed(&who);
                }
                self.advance(ctx, now)
            }
        }
    }

    fn on_answer(
        &mut self,
        ctx: &CallContext,
        call_id: &CallId,
        response: &crate::sip::Response,
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
        let winner = self.offer.is_some() && self.connected.is_none() && was != LegState::Done;
        let negotiated = sdp::negotiate(&response.body);
        let (true, Ok(negotiated), Some((socket, port))) = (winner, negotiated, self.socket.take())
        else {
            // Too late (another answered, or the caller left), or an answer we cannot use.
            let who = self.legs[index].who.clone();
            self.send_bye(ctx, index);
            if winner {
                self::event(
                    ctx,
                    self.caller.row,
                    "secretary-unusable-answer",
                    serde_json::json!({ "secretary": who }),
                );
                ctx.desk.release(&who);
                if let Some(o) = &mut self.offer {
                    o.hunt.failed(&who);
                }
                return self.advance(ctx, now);
            }
            return News::Nothing;
        };
        let who = self.legs[index].who.clone();
        let stream = ctx.media.open(StreamSpec {
            socket,
            remote: negotiated.remote_rtp,
            codec: negotiated.codec,
            packetizer: Packetizer::new(
                fastrand::u32(..),
                negotiated.payload_type,
                fastrand::u16(..),
                fastrand::u32(..),
            ),
            telephone_event: negotiated.telephone_event,
            events: self.events.clone(),
        });
        ctx.media
            .bridge(self.caller.stream, stream, ctx.rtp_timeout);
        ctx.desk.answered(&who, self.caller.row);
        self.connected = Some(Connected {
            call_id: call_id.clone(),
            who: who.clone(),
            stream,
            local: LocalMedia {
                ip: ctx.media.ip(),
                port,
                session_id: self.session_id,
                version: 1,
            },
            negotiated,
        });
        self.offer = None;
        tracing::info!(secretary = %who, "secretary answered");
        event(
            ctx,
            self.caller.row,
            "secretary-answered",
            serde_json::json!({ "secretary": who }),
        );
        ctx.store.write(Record::Handled {
            id: self.caller.row,
            by: who.clone(),
            transfer: false,
            at: store::now_text(),
        });
        // First to answer wins: the others stop ringing.
        self.cancel_ringing(ctx, Some(&who));
        News::Answered
    }

    /// When [`Outbound::on_timeout`] is due.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        self.offer.as_ref().map(|o| o.hunt.poll_timeout(now))
    }

    /// The step's overflow or its end.
    pub fn on_timeout(&mut self, ctx: &CallContext, now: Instant) -> News {
        match &self.offer {
            Some(o) if o.hunt.expired(now) => self.give_up(ctx, "timeout"),
            Some(_) => self.advance(ctx, now),
            None => News::Nothing,
        }
    }

    fn give_up(&mut self, ctx: &CallContext, why: &'static str) -> News {
        self.offer = None;
        self.cancel_ringing(ctx, None);
        event(
            ctx,
            self.caller.row,
            "secretary-unanswered",
            serde_json::json!({ "why": why }),
        );
        News::GaveUp
    }

    /// CANCEL every leg still ringing (except the winner's other phones' owner, who is
    /// now busy with this call), freeing those secretaries.
    fn cancel_ringing(&mut self, ctx: &CallContext, winner: Option<&str>) {
        let mut released: Vec<String> = Vec::new();
        for leg in &mut self.legs {
            if matches!(leg.state, LegState::Calling | LegState::Ringing) {
                let (branch, bytes) = leg.cancel();
                event(
                    ctx,
                    self.caller.row,
                    "secretary-cancelled",
                    serde_json::json!({ "secretary": leg.who }),
                );
                let _ = ctx.endpoint.send(Input::Request {
                    call_id: leg.call_id.clone(),
                    peer: leg.peer,
                    branch,
                    bytes,
                });
                if Some(leg.who.as_str()) != winner && !released.contains(&leg.who) {
                    released.push(leg.who.clone());
                }
            }
        }
        for who in released {
            ctx.desk.release(&who);
        }
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

    /// A request inside one of our legs' dialogs. Returns its answer's bytes and what it means.
    pub fn on_request(
        &mut self,
        ctx: &CallContext,
        request: &Request,
        key: TxKey,
        _peer: Peer,
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
        let is_connected = self
            .connected
            .as_ref()
            .is_some_and(|c| c.call_id == request.call_id);
        match request.method {
            Method::Bye => {
                let _ = ctx.endpoint.send(reply(200, &[], None));
                if let Some(leg) = self.legs.iter_mut().find(|l| l.call_id == request.call_id) {
                    leg.state = LegState::Done;
                }
                if is_connected {
                    let who = self.connected_to().unwrap_or_default().to_string();
                    event(
                        ctx,
                        self.caller.row,
                        "secretary-hung-up",
                        serde_json::json!({ "secretary": who }),
                    );
                    return News::HungUp;
                }
                News::Nothing
            }
            Method::Invite if is_connected => {
                // Hold, resume or a new address from the secretary's phone.
                let Some(c) = &mut self.connected else {
                    return News::Nothing;
                };
                if !request.body.is_empty() {
                    match sdp::negotiate(&request.body) {
                        Ok(n) => {
                            if n.codec != c.negotiated.codec
                                || n.payload_type != c.negotiated.payload_type
                            {
                                ctx.media.set_codec(c.stream, n.codec, n.payload_type);
                                c.local.version += 1;
                            }
                            if n.remote_rtp != c.negotiated.remote_rtp {
                                ctx.media.set_remote(c.stream, n.remote_rtp);
                            }
                            c.negotiated = n;
                        }
                        Err(_) => {
                            let _ = ctx.endpoint.send(reply(488, &[], None));
                            return News::Nothing;
                        }
                    }
                }
                let answer = sdp::write_answer(&c.local, &c.negotiated);
                let contact = format!("<sip:permanence@{}>", ctx.local_sip);
                let _ = ctx.endpoint.send(reply(
                    200,
                    &[("Contact", &contact)],
                    Some(answer.as_bytes()),
                ));
                News::Nothing
            }
            Method::Ack => News::Nothing,
            Method::Info | Method::Options => {
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

    /// The call is over (either side hung up, or the plan moved on): CANCEL what rings,
    /// BYE who answered, close the other stream, start the secretary's wrap-up.
    pub fn end(&mut self, ctx: &CallContext) {
        self.offer = None;
        self.cancel_ringing(ctx, None);
        if let Some(c) = self.connected.take() {
            if let Some(index) = self.legs.iter().position(|l| l.call_id == c.call_id)
                && self.legs[index].state == LegState::Answered
            {
                event(
                    ctx,
                    self.caller.row,
                    "bye-sent",
                    serde_json::json!({ "to": c.who }),
                );
                self.send_bye(ctx, index);
            }
            ctx.media.close(c.stream);
            ctx.desk.finished(&c.who, self.caller.row, desk::now_ms());
        }
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
