//! One tokio task per call: it owns the call's state, executes what the
//! [`CallMachine`] decides and feeds it what happens. Nothing here decides.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::Instrument;

use super::context::CallContext;
use super::control::Control;
use super::machine::{CallMachine, Capabilities, Command};
use super::outbound::{Caller as OutboundCaller, News, Outbound};
use crate::dialplan::{self, CallFacts, Caller, Category, Company, Route, SoundName};
use crate::event::CallEvent;
use crate::inbox;
use crate::line::LineOverride;
use crate::media::engine::StreamSpec;
use crate::media::recording::{Heard, Recorder, write_progressively};
use crate::media::{MediaEvent, StreamId};
use crate::number::Dialled;
use crate::sdp::{self, LocalMedia, Negotiated};
use crate::sip::endpoint::{ForCall, Input, ToCall};
use crate::sip::message::{Method, Request};
use crate::sip::transaction::TxKey;
use crate::sip::write::{self, DialogHeaders};
use crate::sip::{CallId, Peer};
use crate::snapshot::Snapshot;
use crate::store::{self, Outcome, Record};

/// How long a new call waits for its row to be committed before it is refused (the
/// database refuses writes: a full disk).
const COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What this server's calls can do: everything.
const SERVER_CAPABILITIES: Capabilities = Capabilities {
    dtmf: true,
    secretaries: true,
    transfer: true,
    voicemail: true,
};

/// Runs a call from its INVITE to its record.
pub async fn run(ctx: Arc<CallContext>, call_id: CallId, mut rx: mpsc::UnboundedReceiver<ToCall>) {
    if let Some(ToCall::Request(first)) = rx.recv().await {
        let ForCall { request, key, peer } = *first;
        let span = tracing::info_span!("call", call_id = %call_id, company = tracing::field::Empty);
        Call::start(&ctx, request, key, peer, rx)
            .instrument(span)
            .await;
    }
    let _ = ctx.endpoint.send(Input::CallEnded(call_id));
}

struct Call<'a> {
    ctx: &'a CallContext,
    id: store::CallRowId,
    /// When the INVITE arrived, for the inbox's rule on missed calls.
    started: Instant,
    /// The company's id, once the number is known to be one of its.
    company: Option<String>,
    /// What the inbox needs at the end: the message's category as it stands, and whether
    /// the caller can be called back. None: no company, so no message.
    message: Option<(Category, bool)>,
    /// The company's delivery rules, for the message the call may leave.
    deliver: Option<crate::delivery::Rules>,
    invite: Box<Request>,
    key: TxKey,
    peer: Peer,
    tag: String,
    bye_cseq: u32,
}

impl<'a> Call<'a> {
    /// Routes a new call, writes its first row and waits for it to be committed, then
    /// runs it; or refuses it (404: no company, 480: no route, 503: row not written).
    async fn start(
        ctx: &'a CallContext,
        invite: Box<Request>,
        key: TxKey,
        peer: Peer,
        rx: mpsc::UnboundedReceiver<ToCall>,
    ) {
        let snapshot = ctx.snapshot();
        let dialled = invite.uri_user.as_deref().and_then(Dialled::parse);
        let company = dialled
            .as_ref()
            .and_then(|d| snapshot.plans.lookup(d))
            .cloned();
        let dialled_text = dialled_text(&invite, dialled.as_ref(), company.as_deref());
        let mut call = Call::new(ctx, invite, key, peer, company.as_deref());
        call.deliver = company.as_ref().map(|c| crate::delivery::Rules {
            company: Arc::clone(c),
            webhooks: Arc::clone(&ctx.webhooks),
        });
        let caller = call.caller(company.as_deref());
        let block = call.block(company.as_deref(), caller.as_ref());
        let decision = call.decide(
            company.as_deref(),
            caller.as_ref(),
            dialled.as_ref(),
            block.is_some(),
        );
        let route = company
            .as_ref()
            .zip(decision.as_ref())
            .and_then(|(c, (i, _, _))| c.routes.get(*i));
        call.message = caller.as_ref().map(|caller| {
            (
                route.map(|r| r.category).unwrap_or_default(),
                matches!(caller, Caller::Number(_)),
            )
        });
        if company.is_none() && call.unknown_number_flood() {
            // Counted in `floods`, not one row each: a scan of numbers must not fill the
            // records (nor the disk) with calls that never reached anyone.
            call.respond(404, None);
            return;
        }
        call.write_started(company.as_deref(), dialled_text, route);
        let Some(company) = company else {
            call.refuse_unknown_number();
            return;
        };
        tracing::Span::current().record("company", company.id.0.as_str());
        let Some((route, contact_name, line)) = decision else {
            call.refuse_no_route();
            return;
        };
        if let Some(name) = contact_name {
            call.event(CallEvent::Contact { name });
        }
        call.spam_events(&company, caller.as_ref(), block);
        if let Some(line) = line {
            // Why this call took the closed (or open) route whatever the hours say.
            call.event(line.event());
        }
        if !call.row_committed().await {
            return;
        }
        call.run(&snapshot, &company, route, rx).await;
    }

    /// A new call: its row id, its tag, and the company the number belongs to, if any.
    fn new(
        ctx: &'a CallContext,
        invite: Box<Request>,
        key: TxKey,
        peer: Peer,
        company: Option<&Company>,
    ) -> Self {
        Call {
            ctx,
            id: ctx.ids.next(),
            started: Instant::now(),
            company: company.map(|c| c.id.0.clone()),
            message: None,
            deliver: None,
            tag: write::new_tag(),
            invite,
            key,
            peer,
            bye_cseq: 0,
        }
    }

    /// Who calls, as the company's contacts see it (None: no company).
    fn caller(&self, company: Option<&Company>) -> Option<Caller> {
        company.map(|c| {
            Caller::from_user(
                self.invite.from.user.as_deref(),
                self.invite.from.display.as_deref(),
                c.country,
            )
        })
    }

    /// The company's route for this call, the caller's contact name, and the line's
    /// override when it decided an `open` condition, if a route matches.
    fn decide(
        &self,
        company: Option<&Company>,
        caller: Option<&Caller>,
        dialled: Option<&Dialled>,
        on_block_list: bool,
    ) -> Option<(usize, Option<String>, Option<LineOverride>)> {
        let dialled_e164 = match dialled {
            Some(Dialled::International(n)) => Some(n.clone()),
            Some(Dialled::National(n)) => company.and_then(|c| c.country.to_e164(n)),
            None => None,
        };
        let (company, caller) = company.zip(caller)?;
        let now = jiff::Timestamp::now();
        let line = self.ctx.lines.current(&company.id, now);
        let facts = CallFacts {
            caller,
            dialled: dialled_e164.as_ref(),
            now,
            secretary_available: self
                .ctx
                .desk
                .any_available(&company.id.0, crate::clock::unix_ms()),
            on_block_list,
            line: line.as_ref(),
        };
        let d = dialplan::decide(company, &facts);
        let line = line.filter(|_| d.by_line);
        d.index.map(|i| (i, d.contact_name, line))
    }

    /// The caller's block by the company, in the block list in force (looked up here, in
    /// the shell, and given to the decision as a fact).
    fn block(
        &self,
        company: Option<&Company>,
        caller: Option<&Caller>,
    ) -> Option<crate::blocklist::BlockEntry> {
        let (company, caller) = company.zip(caller)?;
        self.ctx
            .blocked
            .get()
            .blocking(&company.id.0, caller)
            .cloned()
    }

    /// The timeline says why a caller is unwanted: the company blocked the number (who,
    /// when, why), or it is in a telemarketing range the company points out.
    fn spam_events(
        &self,
        company: &Company,
        caller: Option<&Caller>,
        block: Option<crate::blocklist::BlockEntry>,
    ) {
        if let Some(b) = block {
            self.event(CallEvent::Blocked {
                by: b.added_by,
                reason: b.reason,
                since: b.added_at,
            });
        }
        if caller.is_some_and(|c| company.labels_telemarketing(c)) {
            self.event(CallEvent::Telemarketing {
                policy: company.telemarketing.as_str().to_string(),
            });
        }
    }

    /// The call's first row: who called what, and the route it takes.
    fn write_started(&self, company: Option<&Company>, dialled: String, route: Option<&Route>) {
        self.write(Record::CallStarted {
            id: self.id,
            company: company.map(|c| c.id.0.clone()),
            dialled,
            caller: self
                .invite
                .from
                .user
                .clone()
                .unwrap_or_else(|| self.invite.from.uri.clone()),
            caller_name: self.invite.from.display.clone(),
            route: route.map(|r| r.name.clone()),
            category: route.map(|r| r.category).unwrap_or_default().as_str(),
            sip_call_id: self.invite.call_id.0.clone(),
            at: store::now_text(),
        });
    }

    /// Refuses a call to a number that is no company's: 404.
    fn refuse_unknown_number(&self) {
        tracing::info!(uri = %self.invite.uri, "no company for this number: 404");
        self.event(CallEvent::UnknownNumber {
            uri: self.invite.uri.to_string(),
        });
        self.respond(404, None);
        self.finish(Outcome::Rejected);
    }

    /// Refuses a call that none of the company's routes matches: 480.
    fn refuse_no_route(&self) {
        tracing::info!("no route matches this call: 480");
        self.event(CallEvent::NoRoute {});
        self.respond(480, None);
        self.finish(Outcome::Rejected);
    }

    /// Waits for the call's row to be committed; false (the call refused with 503) if it
    /// is not in time.
    async fn row_committed(&self) -> bool {
        // The call's row must be on disk before anything answers it: a crash after our
        // 200 leaves a call in the records (marked interrupted at the next start).
        let committed = tokio::time::timeout(COMMIT_WAIT, self.ctx.store.committed()).await;
        if matches!(committed, Ok(Ok(()))) {
            return true;
        }
        tracing::error!("the call's row could not be written in time: 503");
        self.ctx
            .metrics
            .refused(crate::metrics::Refusal::RowNotWritten);
        self.respond(503, None);
        self.finish(Outcome::Failed);
        false
    }

    /// Sets up the caller's media and the outbound side, then feeds the machine what
    /// happens (SIP, legs, media, timers) and executes its commands until it ends.
    async fn run(
        &mut self,
        snapshot: &Snapshot,
        company: &Arc<Company>,
        route: usize,
        mut rx: mpsc::UnboundedReceiver<ToCall>,
    ) {
        let Some(negotiated) = self.negotiate() else {
            return;
        };
        // `media_tx` is held until the call ends: the media channel never closes under
        // a running call (a closed one would read as a shutdown).
        let Some((mut media, media_tx, mut media_rx)) = self.open_media(negotiated) else {
            return;
        };
        let mut outbound = self.outbound(company, route, &media, media_tx.clone());
        let wake = outbound.waker();
        // The console reaches this call by its row id until the call ends.
        let (_console, mut controls) = self.ctx.controls.register(self.id);
        let mut machine = CallMachine::new(
            Arc::clone(company),
            route,
            SERVER_CAPABILITIES,
            jiff::Timestamp::now(),
            self.ctx.no_speech,
        );
        machine.start(Instant::now());
        loop {
            while let Some(command) = machine.poll_command() {
                let news = self.execute(command, snapshot, company, &mut media, &mut outbound);
                self.tell(&mut machine, &mut outbound, news);
            }
            if machine.is_ended() {
                break;
            }
            self.listen(&machine, &mut media);
            let machine_deadline = machine.poll_timeout();
            let deadline = match (machine_deadline, outbound.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                message = rx.recv() => {
                    self.on_message(message, &mut machine, &mut outbound, &mut media);
                }
                event = media_rx.recv() => {
                    self.on_media(event, &mut machine, &mut outbound, &mut media);
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.on_timeout(&mut machine, &mut outbound);
                }
                () = wake.notified(), if outbound.wants_desk_changes() => {
                    // This caller is first in line for a secretary who just freed up.
                    let news = outbound.on_desk_changed(self.ctx, Instant::now());
                    self.tell(&mut machine, &mut outbound, news);
                }
                Some(control) = controls.recv() => {
                    self.on_control(*control, &mut machine, &mut outbound);
                }
            }
        }
        outbound.end(self.ctx);
        self.ctx.media.close(media.stream);
    }

    /// The caller's offer, negotiated; None if it is refused (the call is then over).
    fn negotiate(&self) -> Option<Negotiated> {
        match sdp::negotiate(&self.invite.body) {
            Ok(n) => Some(n),
            Err(e) => {
                // An INVITE without an offer (delayed offer) is not supported yet: 488 too.
                let status = if self.invite.body.is_empty() {
                    488
                } else {
                    e.sip_status()
                };
                tracing::info!(error = %e, status, "offer refused");
                self.event(CallEvent::OfferRefused {
                    why: e.to_string(),
                    status,
                });
                self.respond(status, None);
                self.finish(Outcome::Failed);
                None
            }
        }
    }

    /// Opens the caller's stream on a port of ours, with the channel its events come on;
    /// None if that is not possible (the call is then over).
    fn open_media(&self, negotiated: Negotiated) -> Option<(Media, MediaTx, MediaRx)> {
        let (socket, port) = match self.ctx.media.bind() {
            Ok(bound) => bound,
            Err(e) => {
                tracing::error!(error = %e, "no RTP port: 503");
                self.respond(503, None);
                self.finish(Outcome::Failed);
                return None;
            }
        };
        // An offer with SRTP (SDES) is answered with a key of ours.
        let srtp_key = negotiated
            .srtp
            .as_ref()
            .and_then(|_| crate::srtp::new_inline_key());
        let srtp = negotiated.srtp_with(srtp_key.as_deref());
        if negotiated.srtp.is_some() && srtp.is_none() {
            tracing::error!("no random source for an SRTP key: 488");
            self.respond(488, None);
            self.finish(Outcome::Failed);
            return None;
        }
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        let stream = self.ctx.media.open(
            StreamSpec::negotiated(socket, &negotiated, self.peer.addr.ip(), media_tx.clone())
                .encrypted(srtp),
        );
        let media = Media {
            stream,
            local: LocalMedia {
                ip: self.ctx.media.ip(),
                port,
                session_id: fastrand::u64(..u64::MAX / 2),
                version: 1,
                srtp_key,
            },
            negotiated,
            recording: None,
            listening: (false, false),
            answered: false,
        };
        Some((media, media_tx, media_rx))
    }

    /// The outbound side (secretaries, transfers), nothing rung yet; its legs' media
    /// events come on `media_tx`.
    fn outbound(
        &self,
        company: &Arc<Company>,
        route: usize,
        media: &Media,
        media_tx: MediaTx,
    ) -> Outbound {
        let number = self
            .invite
            .from
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "anonymous".into());
        Outbound::new(
            self.ctx,
            OutboundCaller {
                row: self.id,
                display: format!("{} · {}", company.name, number),
                number,
                company: Arc::clone(company),
                stream: media.stream,
                codec: media.negotiated.codec,
                announcement: crate::dialplan::default_sound("screening", &company.language),
                max_forwards: self.invite.max_forwards.unwrap_or(70).saturating_sub(1),
                priority: company.routes.get(route).map_or(0, |r| r.priority),
            },
            self.invite.call_id.clone(),
            media_tx,
        )
    }

    /// Has the engine read the caller's digits and audio only while the machine wants
    /// them (a syscall per packet otherwise).
    fn listen(&self, machine: &CallMachine, media: &mut Media) {
        let listening = (machine.wants_digits(), machine.is_recording());
        if listening != media.listening {
            media.listening = listening;
            self.ctx
                .media
                .listen(media.stream, listening.0, listening.1);
        }
    }

    /// What the endpoint sends the call: the legs' SIP and events go to the outbound
    /// side, the caller's in-dialog requests and transaction news to the machine.
    fn on_message(
        &mut self,
        message: Option<ToCall>,
        machine: &mut CallMachine,
        outbound: &mut Outbound,
        media: &mut Media,
    ) {
        let now = Instant::now();
        match message {
            Some(ToCall::Request(message)) => {
                let ForCall { request, key, peer } = *message;
                if outbound.owns_call_id(&request.call_id) {
                    let news = outbound.on_request(self.ctx, &request, key, peer, now);
                    self.tell(machine, outbound, news);
                } else {
                    self.in_dialog(request, key, peer, machine, media)
                }
            }
            Some(ToCall::Leg(event)) => {
                let news = outbound.on_leg_event(self.ctx, *event, now);
                self.tell(machine, outbound, news);
            }
            Some(ToCall::Cancel) => machine.handle_cancel(),
            Some(ToCall::Ack) => {}
            Some(ToCall::AckTimeout) => machine.handle_ack_timeout(now),
            Some(ToCall::RequestDone) => machine.handle_bye_answered(),
            Some(ToCall::Shutdown) | None => machine.handle_shutdown(now),
        }
    }

    /// What the media engine reports. The legs' streams are the outbound side's, except
    /// for a silent stream, which ends the call whichever it is.
    fn on_media(
        &mut self,
        event: Option<(StreamId, MediaEvent)>,
        machine: &mut CallMachine,
        outbound: &mut Outbound,
        media: &mut Media,
    ) {
        match event {
            Some((_, MediaEvent::RtpTimeout)) => {
                tracing::info!("no RTP from one side of the conversation: ending it");
                self.event(CallEvent::RtpTimeout {});
                outbound.end(self.ctx);
                machine.handle_leg_hangup(Instant::now());
            }
            Some((id, MediaEvent::Digit(digit))) if outbound.owns_stream(id) => {
                let news = outbound.on_digit(self.ctx, id, digit.key);
                self.tell(machine, outbound, news);
            }
            Some((id, MediaEvent::PlaybackDone)) if outbound.owns_stream(id) => {}
            Some((id, MediaEvent::Latched(from))) if outbound.owns_stream(id) => {
                self.event(CallEvent::RtpLatched {
                    from: from.to_string(),
                    leg: outbound.connected_to().map(str::to_string),
                });
            }
            Some((_, MediaEvent::PlaybackDone)) => machine.handle_playback_done(Instant::now()),
            Some((_, MediaEvent::Latched(from))) => {
                self.event(CallEvent::RtpLatched {
                    from: from.to_string(),
                    leg: None,
                });
            }
            Some((_, MediaEvent::Digit(digit))) => {
                self.event(CallEvent::Digit {
                    key: digit.key.to_string(),
                    via: "rtp".to_string(),
                    rtp_timestamp: Some(digit.timestamp),
                });
                machine.handle_digit(digit.key, Instant::now());
            }
            Some((_, MediaEvent::Audio(samples))) => media.on_audio(samples, machine),
            None => machine.handle_shutdown(Instant::now()),
        }
    }

    /// What the console asks of this call; the answer goes back at once.
    fn on_control(&mut self, control: Control, machine: &mut CallMachine, outbound: &mut Outbound) {
        match control {
            Control::Transfer {
                secretary,
                executive,
                reply,
            } => {
                let (asked, news) =
                    outbound.console_transfer(self.ctx, &secretary, &executive, Instant::now());
                // The console may have stopped waiting; the transfer goes on regardless.
                let _ = reply.send(asked);
                self.tell(machine, outbound, news);
            }
            Control::Browser {
                secretary,
                ring,
                action,
            } => {
                let news = outbound.on_browser(self.ctx, &secretary, ring, action, Instant::now());
                self.tell(machine, outbound, news);
            }
        }
    }

    /// A deadline passed: the machine's, and the outbound side's if it was due.
    fn on_timeout(&mut self, machine: &mut CallMachine, outbound: &mut Outbound) {
        let now = Instant::now();
        machine.handle_timeout(now);
        if outbound.poll_timeout().is_some_and(|at| at <= now) {
            let news = outbound.on_timeout(self.ctx, now);
            self.tell(machine, outbound, news);
        }
    }

    /// Tells the machine what came of the outbound side.
    fn tell(&mut self, machine: &mut CallMachine, outbound: &mut Outbound, news: News) {
        let now = Instant::now();
        match news {
            News::Nothing => {}
            News::Answered => machine.handle_leg_result(true, now),
            News::GaveUp => machine.handle_leg_result(false, now),
            News::HungUp => {
                outbound.end(self.ctx);
                machine.handle_leg_hangup(now);
            }
            News::Transferred => machine.handle_transferred(),
        }
    }

    /// Does what the machine commands; what came of it on the outbound side, if anything.
    fn execute(
        &mut self,
        command: Command,
        snapshot: &Snapshot,
        company: &Company,
        media: &mut Media,
        outbound: &mut Outbound,
    ) -> News {
        match command {
            // SIP to the caller.
            Command::Ringing => self.respond(180, None),
            Command::Answer => self.answer(media),
            Command::Reject(status) => self.respond(status, None),
            Command::SendBye => self.send_bye(),
            // The caller's audio.
            Command::Play { sound, times } => self.play(snapshot, media, &sound, times),
            Command::StopPlaying => self.ctx.media.stop(media.stream),
            Command::StartRecording { max_seconds } => {
                media.recording = Some(self.start_recording(company, max_seconds));
            }
            Command::StopRecording { reason } => {
                if let Some(rec) = media.recording.take() {
                    self.finish_recording(rec, reason);
                }
            }
            // The records.
            Command::Category(category) => self.file_under(category),
            Command::Event(event) => self.machine_event(event),
            // The outbound side.
            Command::End(outcome) => {
                // Whoever was rung or talked to is released first (CANCEL, BYE, wrap-up).
                outbound.end(self.ctx);
                self.finish(outcome)
            }
            Command::OfferSecretaries {
                timeout,
                who,
                group,
                strategy,
                overflow_after,
            } => {
                return outbound.offer_secretaries(
                    self.ctx,
                    timeout,
                    who,
                    group,
                    strategy,
                    overflow_after,
                    media.answered,
                    Instant::now(),
                );
            }
            Command::Transfer {
                to,
                timeout,
                screening,
                mode,
            } => {
                return outbound.transfer(self.ctx, &to, timeout, screening, mode, Instant::now());
            }
        }
        News::Nothing
    }

    /// Answers the caller (200 with our SDP) and records when.
    fn answer(&self, media: &mut Media) {
        media.answered = true;
        let answer = sdp::write_answer(&media.local, &media.negotiated);
        self.respond(200, Some(answer.as_bytes()));
        self.write(Record::CallAnswered {
            id: self.id,
            at: store::now_text(),
        });
    }

    /// Plays a sound of the snapshot to the caller.
    fn play(&self, snapshot: &Snapshot, media: &Media, sound: &SoundName, times: u32) {
        match snapshot.sounds.get(sound) {
            Some(s) => self.ctx.media.play(media.stream, Arc::clone(s), times),
            None => tracing::error!(sound = %sound.0, "sound missing from the snapshot"),
        }
    }

    /// Files the call's message under another category, for the inbox and the records.
    fn file_under(&mut self, category: Category) {
        if let Some((filed, _)) = &mut self.message {
            *filed = category;
        }
        self.write(Record::Category {
            id: self.id,
            category: category.as_str(),
            at: store::now_text(),
        });
    }

    /// Records an event of the machine's.
    fn machine_event(&self, event: CallEvent) {
        if let CallEvent::StepUnavailable { step, .. } = &event {
            tracing::info!(step, "step not supported yet: falling through");
        }
        self.event(event)
    }

    /// A request in the caller's dialog (or claiming to be): BYE, re-INVITE, INFO, OPTIONS.
    fn in_dialog(
        &mut self,
        request: Box<Request>,
        key: TxKey,
        peer: Peer,
        machine: &mut CallMachine,
        media: &mut Media,
    ) {
        let reply = |status: u16, body: Option<&[u8]>, extra: &[(&str, &str)]| Input::Respond {
            key: key.clone(),
            status,
            bytes: write::response(
                &request.echo,
                status,
                Some(&self.tag),
                extra,
                body.map(|b| ("application/sdp", b)),
            ),
        };
        if request.method == Method::Ack {
            // An ACK is never answered; a stray one changes nothing.
            return;
        }
        if !self.owns(&request, peer) {
            // Only the Call-ID matched (RFC 3261 §12.2.2): a stranger must not end, move
            // or transfer someone else's call.
            tracing::warn!(source = %peer.addr, method = %request.method, "request outside the call's dialog: 481");
            let _ = self.ctx.endpoint.send(reply(481, None, &[]));
            return;
        }
        let input = match request.method {
            Method::Bye => {
                self.event(CallEvent::ByeReceived {});
                let r = reply(200, None, &[]);
                let _ = self.ctx.endpoint.send(r);
                machine.handle_bye();
                return;
            }
            Method::Invite => match self.reoffer(&request.body, media) {
                Ok(answer) => {
                    let contact = self.contact(peer);
                    reply(200, Some(answer.as_bytes()), &[("Contact", &contact)])
                }
                Err(e) => {
                    let _ = self.ctx.endpoint.send(reply(488, None, &[]));
                    self.event(CallEvent::ReinviteRefused { why: e.to_string() });
                    return;
                }
            },
            Method::Ack => return,
            Method::Info => {
                self.info_digit(&request, machine);
                reply(200, None, &[])
            }
            Method::Options => reply(200, None, &[]),
            _ => reply(405, None, &[("Allow", write::ALLOW)]),
        };
        let _ = self.ctx.endpoint.send(input);
    }

    /// Applies a re-INVITE's offer (hold, codec or address change) to the caller's stream,
    /// which keeps the audio going; our SDP answer, or why the offer is refused.
    fn reoffer(&self, body: &[u8], media: &mut Media) -> Result<String, sdp::SdpError> {
        self.ctx
            .reoffer(media.stream, &mut media.local, &mut media.negotiated, body)?;
        self.event(CallEvent::Reinvite {});
        Ok(sdp::write_answer(&media.local, &media.negotiated))
    }

    /// A keypress in a SIP INFO, from phones that send them so (RFC 6086 usage).
    fn info_digit(&self, request: &Request, machine: &mut CallMachine) {
        if let Some(key) =
            crate::dtmf::key_from_info(request.content_type.as_deref(), &request.body)
        {
            self.event(CallEvent::Digit {
                key: key.to_string(),
                via: "info".to_string(),
                rtp_timestamp: None,
            });
            machine.handle_digit(key, Instant::now());
        }
    }

    /// Whether a request is the caller's, in this call's dialog: both tags, and from the
    /// caller's address unless a proxy put itself in the path (Record-Route).
    fn owns(&self, request: &Request, from: Peer) -> bool {
        request.to.tag.as_deref() == Some(self.tag.as_str())
            && request.from.tag == self.invite.from.tag
            && (!self.invite.record_route.is_empty() || from.addr.ip() == self.peer.addr.ip())
    }

    fn contact(&self, peer: Peer) -> String {
        peer.contact("", self.ctx.local_sip, self.ctx.local_tls)
    }

    fn respond(&self, status: u16, sdp: Option<&[u8]>) {
        let contact = self.contact(self.peer);
        let extra: &[(&str, &str)] = if (101..300).contains(&status) {
            &[("Contact", &contact)]
        } else {
            &[]
        };
        let bytes = write::response(
            &self.invite.echo,
            status,
            Some(&self.tag),
            extra,
            sdp.map(|b| ("application/sdp", b)),
        );
        let _ = self.ctx.endpoint.send(Input::Respond {
            key: self.key.clone(),
            status,
            bytes,
        });
    }

    fn send_bye(&mut self) {
        self.bye_cseq += 1;
        let dialog = DialogHeaders {
            remote_target: self
                .invite
                .contact
                .clone()
                .unwrap_or_else(|| self.invite.from.uri.clone()),
            local: format!("{};tag={}", self.invite.echo.to, self.tag),
            route: self.invite.record_route.clone(),
            remote: self.invite.echo.from.clone(),
            call_id: self.invite.call_id.0.clone(),
        };
        let branch = write::new_branch();
        let bytes = write::in_dialog_request(
            &dialog,
            &Method::Bye,
            self.bye_cseq,
            &self
                .peer
                .local_for(self.ctx.local_sip, self.ctx.local_tls)
                .to_string(),
            self.peer.transport_token(),
            &branch,
            &[],
        );
        self.event(CallEvent::ByeSent { to: None });
        let _ = self.ctx.endpoint.send(Input::Request {
            call_id: self.invite.call_id.clone(),
            peer: self.peer,
            branch,
            bytes,
        });
    }

    fn event(&self, event: CallEvent) {
        self.write(Record::Event {
            id: self.id,
            event,
            at: store::now_text(),
        });
    }

    /// Whether this call to an unknown number is one too many from its source this minute;
    /// if so it is counted in the `floods` table instead of getting a row.
    fn unknown_number_flood(&self) -> bool {
        let now_ms = jiff::Timestamp::now().as_millisecond().max(0) as u64;
        let source = self.peer.addr.ip();
        let hit = self
            .ctx
            .unknown_numbers
            .lock()
            .map(|mut p| p.hit(source, now_ms));
        let Ok(crate::pike::Hit::Over { first }) = hit else {
            return false;
        };
        if first {
            tracing::warn!(%source, "calls to unknown numbers from this address: counted in `floods`, not recorded one by one, for this minute");
        }
        self.write(Record::Flood {
            source: source.to_string(),
            kind: "unknown-number",
            minute: (now_ms / 60_000 * 60) as i64,
            at: store::now_text(),
        });
        true
    }

    fn finish(&self, outcome: Outcome) {
        tracing::info!(outcome = outcome.as_str(), "call ended");
        self.ctx
            .metrics
            .call_ended(self.company.as_deref().unwrap_or(""), outcome.as_str());
        let status = self.message.map(|(category, caller_has_number)| {
            inbox::status_at_end(
                &inbox::Ended {
                    outcome,
                    category,
                    caller_has_number,
                    seconds: self.started.elapsed().as_secs(),
                },
                self.ctx.missed_call_seconds,
            )
            .as_str()
        });
        self.write(Record::CallEnded {
            id: self.id,
            outcome,
            status,
            at: store::now_text(),
            deliver: self.deliver.clone(),
        });
    }

    /// Opens the voicemail's WAV and links it to the message at once: the caller's audio
    /// is written as it comes, off the signalling thread, so that a crash keeps what was
    /// said (the next start repairs the file and its length).
    fn start_recording(&self, company: &Company, max_seconds: u32) -> Recording {
        let day = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
        let relative = std::path::Path::new("recordings")
            .join(&company.id.0)
            .join(day)
            .join(format!("call-{}.wav", self.id));
        let path = self.ctx.data.join(&relative);
        self.write(Record::RecordingStarted {
            id: self.id,
            path: relative.display().to_string(),
            at: store::now_text(),
        });
        let (frames, receive) = std::sync::mpsc::channel();
        let writer = tokio::task::spawn_blocking(move || write_progressively(&path, receive));
        Recording {
            recorder: Recorder::new(max_seconds, self.ctx.silence_seconds),
            frames,
            writer,
            relative,
        }
    }

    /// Closes the WAV and records how long it is. A recording with no audio (the caller
    /// hung up at the beep) keeps no file; one the disk refused is not claimed.
    fn finish_recording(&self, rec: Recording, reason: &'static str) {
        let ms = rec.recorder.samples() as i64 / 8;
        self.event(CallEvent::RecordingStopped {
            reason: reason.to_string(),
            ms,
        });
        let Recording {
            frames,
            writer,
            relative,
            ..
        } = rec;
        drop(frames);
        let store = self.ctx.store.clone();
        let data = self.ctx.data.clone();
        let id = self.id;
        tokio::spawn(async move {
            let path = data.join(&relative);
            let (path_kept, ms) = match writer.await {
                Ok(Ok(samples)) if samples > 0 => {
                    (Some(relative.display().to_string()), samples as i64 / 8)
                }
                Ok(Ok(_)) => {
                    let _ = tokio::fs::remove_file(&path).await;
                    (None, 0)
                }
                Ok(Err(e)) => {
                    tracing::error!(path = %path.display(), error = %e, "recording not saved: the caller's message is lost");
                    let _ = tokio::fs::remove_file(&path).await;
                    store.write(Record::Event {
                        id,
                        event: CallEvent::RecordingLost {
                            error: e.to_string(),
                            ms,
                        },
                        at: store::now_text(),
                    });
                    (None, 0)
                }
                Err(e) => {
                    tracing::error!(error = %e, "recording writer failed");
                    (None, 0)
                }
            };
            store.write(Record::Recording {
                id,
                path: path_kept,
                ms,
                at: store::now_text(),
            });
        });
    }

    fn write(&self, record: Record) {
        self.ctx.store.write(record);
    }
}

/// A voicemail being recorded: what the caller said so far, and its file being written.
struct Recording {
    recorder: Recorder,
    frames: std::sync::mpsc::Sender<Vec<i16>>,
    writer: tokio::task::JoinHandle<Result<u64, hound::Error>>,
    relative: std::path::PathBuf,
}

/// Where the media engine sends the events of a call's streams (the caller's and the legs').
type MediaTx = mpsc::UnboundedSender<(StreamId, MediaEvent)>;
/// Where the call reads them.
type MediaRx = mpsc::UnboundedReceiver<(StreamId, MediaEvent)>;

struct Media {
    stream: StreamId,
    local: LocalMedia,
    negotiated: Negotiated,
    recording: Option<Recording>,
    /// What the engine reads from the caller: (digits, audio).
    listening: (bool, bool),
    /// Whether we answered the caller (200 sent).
    answered: bool,
}

impl Media {
    /// The caller's audio: kept in the voicemail being recorded, if any, whose recorder
    /// tells the machine when the caller starts speaking and falls silent.
    fn on_audio(&mut self, samples: Vec<i16>, machine: &mut CallMachine) {
        if let Some(rec) = &mut self.recording {
            let (keep, heard) = rec.recorder.push(&samples);
            if keep > 0 {
                let mut samples = samples;
                samples.truncate(keep);
                // The writer thread gone (disk error) is reported at the end.
                let _ = rec.frames.send(samples);
            }
            match heard {
                Heard::FirstSpeech => machine.handle_speech(),
                Heard::SilenceAfterSpeech => machine.handle_silence(),
                Heard::Listening => {}
            }
        }
    }
}

/// The number dialled as the call's row shows it: in E.164 when the company's country
/// makes it so, else as dialled (or the request URI, if its user part is no number).
fn dialled_text(invite: &Request, dialled: Option<&Dialled>, company: Option<&Company>) -> String {
    match (dialled, company) {
        (Some(Dialled::International(n)), _) => n.to_string(),
        (Some(Dialled::National(n)), Some(c)) => c
            .country
            .to_e164(n)
            .map_or_else(|| n.clone(), |e| e.to_string()),
        (Some(Dialled::National(n)), None) => n.clone(),
        (None, _) => invite
            .uri_user
            .clone()
            .unwrap_or_else(|| invite.uri.clone()),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(at) = deadline {
        tokio::time::sleep_until(at.into()).await;
    }
}
