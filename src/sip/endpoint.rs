//! The SIP endpoint task: reads every message, matches it to a transaction or a call,
//! answers what needs no call (OPTIONS, errors, unknown methods), admits or refuses new
//! calls, and writes everything calls ask it to send. One task owns the transaction
//! table and the map of live calls, so neither needs a lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::admission::{self, Admission};
use super::message::{Echo, Method, Request, SipMessage};
use super::parse::{Rejection, parse};
use super::transaction::{Incoming, Output, Transactions, TxKey};
use super::{CallId, Peer, Transport, write};
use crate::metrics::Metrics;

/// What the endpoint tells a call.
#[derive(Debug)]
pub enum ToCall {
    /// The INVITE that starts the call, or a later request inside its dialog. Boxed, like
    /// `Leg`, to keep every message small: each call's channel allocates room for 32 of them
    /// when it is made (issue 16: 2.3 KB less per live call).
    Request(Box<ForCall>),
    /// CANCEL for the pending INVITE (the CANCEL itself is already answered).
    Cancel,
    /// The ACK for our 2xx.
    Ack,
    /// No ACK came for our 2xx.
    AckTimeout,
    /// Our request (BYE) got its final answer, or gave up.
    RequestDone,
    /// News of one of the call's outbound INVITEs (to a secretary or an executive).
    Leg(Box<LegEvent>),
    /// The server is stopping.
    Shutdown,
}

/// A request for a call, with what answering it needs.
#[derive(Debug)]
pub struct ForCall {
    /// The request.
    pub request: Box<Request>,
    /// Its server transaction, to answer with [`Input::Respond`] (none for ACK).
    pub key: TxKey,
    /// Where it came from.
    pub peer: Peer,
}

/// What happened to an outbound INVITE.
#[derive(Debug)]
pub enum LegEvent {
    /// 180/183.
    Provisional {
        /// The leg's Call-ID.
        call_id: CallId,
        /// The status.
        status: u16,
    },
    /// 2xx (again for each retransmission: each needs its ACK).
    Answered {
        /// The leg's Call-ID.
        call_id: CallId,
        /// The response.
        response: Box<super::message::Response>,
    },
    /// Refused (already ACKed) or timed out (408).
    Failed {
        /// The leg's Call-ID.
        call_id: CallId,
        /// The final status.
        status: u16,
        /// A 401/407's challenge (true: from a proxy).
        challenge: Option<(bool, String)>,
    },
}

/// What the endpoint is asked to do.
#[derive(Debug)]
pub enum Input {
    /// A message from a TCP connection (already framed).
    Stream {
        /// Connection and address.
        peer: Peer,
        /// The message bytes.
        data: Vec<u8>,
        /// Held while the message is handled: the connection's next one waits for it.
        credit: Credit,
    },
    /// A TCP connection is ready; its writer.
    TcpOpened {
        /// Connection id.
        id: u64,
        /// Bytes to write on it.
        writer: mpsc::Sender<Vec<u8>>,
    },
    /// A TCP connection closed.
    TcpClosed {
        /// Connection id.
        id: u64,
    },
    /// Answer a server transaction.
    Respond {
        /// The transaction.
        key: TxKey,
        /// The status (final or not).
        status: u16,
        /// The response bytes.
        bytes: Vec<u8>,
    },
    /// Send an in-dialog request in a new client transaction.
    Request {
        /// The dialog.
        call_id: CallId,
        /// Where to.
        peer: Peer,
        /// The Via branch used in `bytes`.
        branch: String,
        /// The request bytes.
        bytes: Vec<u8>,
    },
    /// Send an INVITE for a call's outbound leg; what happens to it goes to the call.
    Invite {
        /// The leg's own Call-ID.
        leg: CallId,
        /// The call it belongs to.
        owner: CallId,
        /// Where to.
        peer: Peer,
        /// The Via branch used in `bytes`.
        branch: String,
        /// The request bytes.
        bytes: Vec<u8>,
        /// What the transaction needs to ACK a refusal itself.
        ack: super::transaction::InviteAck,
    },
    /// A call the server places itself (for a task): its requests and its legs' news
    /// go to `calls`, as an inbound call's do; [`Input::CallEnded`] forgets it.
    Attach {
        /// The call's own key (no dialog has it: it owns only outbound legs).
        call_id: CallId,
        /// Where its news goes.
        calls: mpsc::UnboundedSender<ToCall>,
    },
    /// Send bytes outside any transaction (the ACK for a 2xx, RFC 3261 §13.2.2.4).
    Send {
        /// Where to.
        peer: Peer,
        /// The message.
        bytes: Vec<u8>,
    },
    /// A call is over; forget it.
    CallEnded(CallId),
    /// Refuse new calls and ask live ones to hang up.
    Drain,
    /// Stop the task.
    Stop,
}

/// What the endpoint holds while it handles one message from a TCP or TLS connection;
/// dropping it lets that connection (and the others) hand over the next one.
#[derive(Debug)]
pub struct Credit {
    _connection: tokio::sync::OwnedSemaphorePermit,
    _total: tokio::sync::OwnedSemaphorePermit,
}

impl Credit {
    /// The connection's share and the total's, held together.
    pub fn new(
        connection: tokio::sync::OwnedSemaphorePermit,
        total: tokio::sync::OwnedSemaphorePermit,
    ) -> Credit {
        Credit {
            _connection: connection,
            _total: total,
        }
    }
}

/// Starts a call task for an admitted INVITE; the receiver carries the INVITE first.
pub type SpawnCall = Arc<dyn Fn(CallId, mpsc::UnboundedReceiver<ToCall>) + Send + Sync>;

/// Bounds the endpoint applies to new calls.
#[derive(Clone)]
pub struct AdmissionPolicy {
    /// Calls at once.
    pub max_calls: usize,
    /// Calls at once from one source address (0: no limit).
    pub max_calls_per_source: usize,
    /// Seconds for Retry-After.
    pub retry_after: u32,
    /// True when the media engine is too late to take more streams.
    pub media_overloaded: Arc<dyn Fn() -> bool + Send + Sync>,
    /// New INVITEs per second from one address (0: no limit); more get 503, that address
    /// only.
    pub max_invites_per_second_per_source: u32,
    /// Addresses the rate limit does not apply to (the trunk brings everyone's calls).
    pub rate_exempt: Vec<std::net::IpAddr>,
    /// Whether the records are being written: a call we could not record is not taken.
    pub store: crate::store::Health,
}

/// How to answer a new server transaction: its key, the request's headers to copy back,
/// and our To tag.
struct Reply {
    key: TxKey,
    echo: Echo,
    tag: String,
    now: Instant,
}

/// Everything the endpoint task needs.
pub struct Endpoint {
    udp: Option<Arc<UdpSocket>>,
    inputs: mpsc::UnboundedReceiver<Input>,
    transactions: Transactions,
    /// New INVITEs per source in the current second.
    invites: crate::pike::Pike,
    calls: HashMap<CallId, mpsc::UnboundedSender<ToCall>>,
    /// Outbound legs' Call-IDs → the call that owns them.
    legs: HashMap<CallId, CallId>,
    /// Secretaries' registrations, published for call distribution.
    desk: Option<Arc<crate::desk::Desk>>,
    /// When set, new calls are taken only from these addresses (the trunk's).
    inbound_only: Option<Vec<std::net::IpAddr>>,
    /// Our registration with the trunk, and our address for its Via and Contact.
    trunk: Option<(crate::trunk::Registration, SocketAddr)>,
    /// Live calls per source address, and each call's source, for `max_calls_per_source`.
    per_source: HashMap<std::net::IpAddr, usize>,
    call_sources: HashMap<CallId, std::net::IpAddr>,
    tcp: HashMap<u64, mpsc::Sender<Vec<u8>>>,
    spawn: SpawnCall,
    admission: AdmissionPolicy,
    draining: bool,
    live: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    max_message: usize,
    registrar: Option<(crate::registrar::Registrar, crate::store::Writer)>,
    /// OPTIONS keep-alives to registered contacts: interval, and our address for Via.
    keepalive: Option<(std::time::Duration, SocketAddr)>,
    /// Keep-alives in flight: their Call-ID → (username, contact).
    keepalives: HashMap<CallId, (String, String)>,
}

impl Endpoint {
    /// Builds the endpoint around its sockets and channels.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        udp: Option<Arc<UdpSocket>>,
        inputs: mpsc::UnboundedReceiver<Input>,
        spawn: SpawnCall,
        admission: AdmissionPolicy,
        live: Arc<AtomicUsize>,
        metrics: Arc<Metrics>,
        max_message: usize,
        timers: super::transaction::TimerValues,
    ) -> Self {
        Endpoint {
            udp,
            inputs,
            transactions: Transactions::new(timers),
            invites: crate::pike::Pike::new(admission.max_invites_per_second_per_source, 1000),
            calls: HashMap::new(),
            legs: HashMap::new(),
            desk: None,
            inbound_only: None,
            trunk: None,
            per_source: HashMap::new(),
            call_sources: HashMap::new(),
            tcp: HashMap::new(),
            spawn,
            admission,
            draining: false,
            live,
            metrics,
            max_message,
            registrar: None,
            keepalive: None,
            keepalives: HashMap::new(),
        }
    }

    /// Sends OPTIONS to every registered contact at this interval and drops the contacts
    /// that do not answer (RFC 3261 §11; any answer, even an error, means alive).
    pub fn with_keepalive(mut self, every: std::time::Duration, local: SocketAddr) -> Self {
        self.keepalive = (!every.is_zero()).then_some((every, local));
        self
    }

    fn send_keepalives(&mut self) {
        let (Some((registrar, _)), Some((_, local))) = (&self.registrar, self.keepalive) else {
            return;
        };
        let unix = unix_now();
        let now = Instant::now();
        for (username, binding) in registrar.all_bindings(unix) {
            let branch = write::new_branch();
            let call_id = format!("{KEEPALIVE}{}@permanence", write::new_tag());
            let dialog = write::DialogHeaders {
                remote_target: binding.contact.clone(),
                local: format!("<sip:permanence@{local}>;tag={}", write::new_tag()),
                remote: format!("<sip:{username}@{}>", local.ip()),
                call_id: call_id.clone(),
                route: Vec::new(),
            };
            let bytes = write::in_dialog_request(
                &dialog,
                &Method::Options,
                1,
                &local.to_string(),
                binding.source.transport_token(),
                &branch,
                &[],
            );
            self.keepalives
                .insert(CallId(call_id.clone()), (username, binding.contact));
            self.transactions.send_request(
                TxKey::client(&branch),
                CallId(call_id),
                binding.source,
                bytes,
                now,
            );
        }
    }

    /// A keep-alive got no answer at all: the phone is gone.
    fn keepalive_lost(&mut self, call_id: &CallId) {
        let Some((username, contact)) = self.keepalives.remove(call_id) else {
            return;
        };
        let (username, contact) = (username.as_str(), contact.as_str());
        let Some((registrar, store)) = &mut self.registrar else {
            return;
        };
        if registrar.remove(username, contact) {
            tracing::info!(username, contact, "contact dropped: no answer to OPTIONS");
            let unix = unix_now();
            save_bindings(
                registrar,
                store,
                self.desk.as_deref(),
                &self.metrics,
                username,
                unix,
            );
        }
    }

    /// Serves REGISTER with this registrar, writing bindings through to the store and
    /// publishing them on the desk for call distribution.
    pub fn with_registrar(
        mut self,
        registrar: crate::registrar::Registrar,
        store: crate::store::Writer,
        desk: Arc<crate::desk::Desk>,
    ) -> Self {
        let now = unix_now();
        let mut by_user: HashMap<String, Vec<crate::registrar::Binding>> = HashMap::new();
        for (user, binding) in registrar.all_bindings(now) {
            by_user.entry(user).or_default().push(binding);
        }
        for (user, bindings) in by_user {
            desk.set_bindings(&user, bindings);
        }
        self.registrar = Some((registrar, store));
        self.desk = Some(desk);
        self
    }

    /// Registers with the trunk (and keeps the registration up), from `local`.
    pub fn with_trunk_registration(
        mut self,
        registration: crate::trunk::Registration,
        local: SocketAddr,
    ) -> Self {
        self.trunk = Some((registration, local));
        self
    }

    /// Whether this Call-ID is that of our registration with the trunk.
    fn is_trunk_registration(&self, call_id: &CallId) -> bool {
        self.trunk
            .as_ref()
            .is_some_and(|(r, _)| r.call_id() == call_id.0)
    }

    fn trunk_due(&self) -> Option<Instant> {
        self.trunk.as_ref().and_then(|(r, _)| r.poll_timeout())
    }

    fn register_with_trunk(&mut self, authorization: Option<(String, Vec<u8>)>) {
        let Some((registration, local)) = &mut self.trunk else {
            return;
        };
        let (branch, bytes) = match authorization {
            Some(ready) => ready,
            None => registration.register(*local, None),
        };
        let peer = Peer {
            transport: Transport::Udp,
            addr: registration.proxy,
        };
        let call_id = CallId(registration.call_id().to_string());
        self.transactions.send_request(
            TxKey::client(&branch),
            call_id,
            peer,
            bytes,
            Instant::now(),
        );
    }

    /// Takes new calls only from these addresses (the trunk's); others get 403.
    pub fn with_inbound_only(mut self, addresses: Vec<std::net::IpAddr>) -> Self {
        self.inbound_only = Some(addresses);
        self
    }

    /// The call that owns this Call-ID: its own, or one of its outbound legs'.
    fn owner(&self, call_id: &CallId) -> Option<&mpsc::UnboundedSender<ToCall>> {
        self.calls
            .get(call_id)
            .or_else(|| self.legs.get(call_id).and_then(|o| self.calls.get(o)))
    }

    fn to_leg_owner(&self, call_id: &CallId, event: LegEvent) {
        match self.legs.get(call_id).and_then(|o| self.calls.get(o)) {
            Some(call) => {
                let _ = call.send(ToCall::Leg(Box::new(event)));
            }
            None => tracing::debug!(%call_id, "news of an outbound INVITE whose call has ended"),
        }
    }

    fn register(&mut self, request: &Request, key: &TxKey, peer: Peer, now: Instant) {
        use crate::registrar::{Answer, Register};
        let Some((registrar, store)) = &mut self.registrar else {
            let bytes = write::response(
                &request.echo,
                405,
                Some(&write::new_tag()),
                &[("Allow", write::ALLOW)],
                None,
            );
            self.transactions.respond(key, 405, bytes, now);
            return;
        };
        let unix = unix_now();
        let facts = Register {
            to_user: request.to.user.as_deref(),
            authorization: request.authorization.as_deref(),
            contacts: &request.contacts,
            star: request.contact_star,
            expires: request.expires,
            uri: &request.uri,
            source: peer,
        };
        let answer = registrar.register(&facts, unix);
        record_bans(registrar, store, &self.metrics);
        let tag = write::new_tag();
        let (status, headers): (u16, Vec<(&str, String)>) = match &answer {
            Answer::Challenge(values) => (
                401,
                values
                    .iter()
                    .map(|v| ("WWW-Authenticate", v.clone()))
                    .collect(),
            ),
            Answer::TooBrief(min) => (423, vec![("Min-Expires", min.to_string())]),
            Answer::Bad => (400, Vec::new()),
            Answer::Forbidden => (403, Vec::new()),
            Answer::TooMany => {
                tracing::warn!(peer = %peer.addr, "REGISTER refused: too many contacts for one user");
                (403, Vec::new())
            }
            Answer::Banned => (403, Vec::new()),
            Answer::Ok(list) => (
                200,
                list.iter()
                    .map(|(c, left)| ("Contact", format!("<{c}>;expires={left}")))
                    .collect(),
            ),
        };
        if let (Answer::Ok(_), Some(user)) = (&answer, request.to.user.as_deref()) {
            tracing::info!(user, peer = %peer.addr, "registered");
            save_bindings(
                registrar,
                store,
                self.desk.as_deref(),
                &self.metrics,
                user,
                unix,
            );
        }
        let extra: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let bytes = write::response(&request.echo, status, Some(&tag), &extra, None);
        self.transactions.respond(key, status, bytes, now);
    }

    /// Runs until [`Input::Stop`].
    pub async fn run(mut self) {
        // One byte more than the cap tells an oversized datagram from a full one.
        let mut buf = vec![0u8; self.max_message + 1];
        let udp = self.udp.clone();
        let mut keepalive = self
            .keepalive
            .map(|(every, _)| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
        loop {
            let deadline = match (self.transactions.poll_timeout(), self.trunk_due()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // Unbiased: whichever is ready, in random order, so that a flood on one side
            // (TCP messages arrive as inputs) cannot starve UDP, timers or keep-alives.
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(Input::Stop) | None => break,
                    Some(input) => self.on_input(input),
                },
                received = recv_udp(udp.as_deref(), &mut buf) => {
                    match received {
                        Ok((n, from)) => self.on_datagram(&buf[..n], from),
                        Err(e) => tracing::debug!(error = %e, "UDP receive error"),
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    let now = Instant::now();
                    self.transactions.handle_timeout(now);
                    if self.trunk_due().is_some_and(|at| at <= now) {
                        self.register_with_trunk(None);
                    }
                }
                _ = tick(keepalive.as_mut()) => self.send_keepalives(),
            }
            self.flush();
        }
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Stream { peer, data, credit } => {
                self.on_message(&data, peer);
                drop(credit);
            }
            Input::TcpOpened { id, writer } => {
                self.tcp.insert(id, writer);
            }
            Input::TcpClosed { id } => {
                self.tcp.remove(&id);
            }
            Input::Respond { key, status, bytes } => {
                self.transactions
                    .respond(&key, status, bytes, Instant::now())
            }
            Input::Request {
                call_id,
                peer,
                branch,
                bytes,
            } => self.transactions.send_request(
                TxKey::client(&branch),
                call_id,
                peer,
                bytes,
                Instant::now(),
            ),
            Input::Invite {
                leg,
                owner,
                peer,
                branch,
                bytes,
                ack,
            } => {
                self.legs.insert(leg.clone(), owner);
                self.transactions
                    .send_invite(&branch, leg, peer, bytes, ack, Instant::now());
            }
            Input::Send { peer, bytes } => self.send(peer, bytes),
            Input::Attach { call_id, calls } => {
                if self.draining {
                    let _ = calls.send(ToCall::Shutdown);
                }
                self.calls.insert(call_id, calls);
                self.live.store(self.calls.len(), Ordering::Relaxed);
            }
            Input::CallEnded(call_id) => {
                self.calls.remove(&call_id);
                if !self.legs.is_empty() {
                    self.legs.retain(|_, owner| *owner != call_id);
                }
                if let Some(ip) = self.call_sources.remove(&call_id)
                    && let Some(n) = self.per_source.get_mut(&ip)
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.per_source.remove(&ip);
                    }
                }
                self.live.store(self.calls.len(), Ordering::Relaxed);
            }
            Input::Drain => {
                self.draining = true;
                for call in self.calls.values() {
                    let _ = call.send(ToCall::Shutdown);
                }
            }
            Input::Stop => {}
        }
    }

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr) {
        let peer = Peer {
            transport: Transport::Udp,
            addr: from,
        };
        // Keep-alives (RFC 5626 §3.5.1: CRLF) carry nothing.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        if data.len() > self.max_message {
            self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, "datagram over the size limit dropped");
            return;
        }
        self.on_message(data, peer);
    }

    fn on_message(&mut self, data: &[u8], peer: Peer) {
        match parse(data) {
            Ok(SipMessage::Request(request)) => self.on_request(request, peer),
            Ok(SipMessage::Response(response)) => {
                if !self.transactions.on_response(&response, Instant::now()) {
                    self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %peer.addr, status = response.status, "stray response dropped");
                }
            }
            Err(Rejection {
                why,
                answer: Some((status, echo)),
            }) => {
                self.metrics
                    .malformed_answered
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %peer.addr, %why, status, "malformed request answered");
                self.send(
                    peer,
                    write::response(&echo, status, Some(&write::new_tag()), &[], None),
                );
            }
            Err(Rejection { why, answer: None }) => {
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %peer.addr, %why, "malformed message dropped");
            }
        }
    }

    fn on_request(&mut self, request: Box<Request>, peer: Peer) {
        let now = Instant::now();
        let Some(key) = self.new_transaction(&request, peer, now) else {
            return;
        };
        let reply = Reply {
            key,
            echo: request.echo.clone(),
            tag: write::new_tag(),
            now,
        };
        // Inside a dialog: the call owns it (its own dialog or one of its legs').
        if request.to.tag.is_some() {
            self.in_dialog(request, peer, &reply);
            return;
        }
        if self.screened_out(&request, &reply) {
            return;
        }
        match request.method {
            Method::Invite => self.on_invite(request, peer, reply),
            Method::Register => self.register(&request, &reply.key, peer, now),
            Method::Options => self.answer(
                &reply,
                200,
                &[
                    ("Allow", write::ALLOW),
                    ("Accept", "application/sdp"),
                    ("Supported", ""),
                ],
            ),
            Method::Bye | Method::Info | Method::Prack | Method::Update => {
                self.answer(&reply, 481, &[])
            }
            Method::Other(_) => self.answer(&reply, 501, &[("Allow", write::ALLOW)]),
            _ => self.answer(&reply, 405, &[("Allow", write::ALLOW)]),
        }
    }

    /// The transaction layer's part: a new server transaction's key, or `None` when the
    /// request was a retransmission, an ACK or a CANCEL (handled here).
    fn new_transaction(&mut self, request: &Request, peer: Peer, now: Instant) -> Option<TxKey> {
        match self.transactions.on_request(request, peer, now) {
            Incoming::Absorbed | Incoming::StrayAck => None,
            Incoming::AckFor2xx(call_id) => {
                if let Some(call) = self.calls.get(&call_id) {
                    let _ = call.send(ToCall::Ack);
                }
                None
            }
            Incoming::Cancel { cancel, invite } => {
                let found = invite.is_some() && self.calls.contains_key(&request.call_id);
                let status = if found { 200 } else { 481 };
                self.transactions.respond(
                    &cancel,
                    status,
                    write::response(&request.echo, status, Some(&write::new_tag()), &[], None),
                    now,
                );
                if found && let Some(call) = self.calls.get(&request.call_id) {
                    let _ = call.send(ToCall::Cancel);
                }
                None
            }
            Incoming::New(key) => Some(key),
        }
    }

    /// Answers a new server transaction.
    fn answer(&mut self, reply: &Reply, status: u16, extra: &[(&str, &str)]) {
        let bytes = write::response(&reply.echo, status, Some(&reply.tag), extra, None);
        self.transactions
            .respond(&reply.key, status, bytes, reply.now);
    }

    /// Hands a request inside a dialog to the call that owns it, or answers 481.
    fn in_dialog(&mut self, request: Box<Request>, peer: Peer, reply: &Reply) {
        let Some(call) = self.owner(&request.call_id) else {
            self.answer(reply, 481, &[]);
            return;
        };
        let call_id = request.call_id.clone();
        let key = reply.key.clone();
        let message = ToCall::Request(Box::new(ForCall { request, key, peer }));
        if call.send(message).is_err() {
            self.calls.remove(&call_id);
            self.answer(reply, 481, &[]);
        }
    }

    /// Answers what [`screen`] refuses; true if it did.
    fn screened_out(&mut self, request: &Request, reply: &Reply) -> bool {
        let Some(status) = screen(request) else {
            return false;
        };
        self.metrics
            .malformed_answered
            .fetch_add(1, Ordering::Relaxed);
        match status {
            420 => {
                let unsupported = request.require.join(", ");
                self.answer(reply, 420, &[("Unsupported", &unsupported)]);
            }
            415 | 406 => self.answer(reply, status, &[("Accept", "application/sdp")]),
            _ => self.answer(reply, status, &[]),
        }
        true
    }

    /// A new INVITE: gathers the facts, lets [`admission::decide`] decide, carries it out.
    fn on_invite(&mut self, request: Box<Request>, peer: Peer, reply: Reply) {
        let facts = self.admission_facts(&request, peer);
        match admission::decide(&facts) {
            Admission::Accept { .. } => self.start_call(request, peer, reply),
            Admission::Challenge { challenges, .. } => {
                let headers: Vec<(&str, &str)> = challenges
                    .iter()
                    .map(|c| ("WWW-Authenticate", c.as_str()))
                    .collect();
                self.answer(&reply, 401, &headers);
            }
            Admission::Refuse { status, reason } => self.refuse(
                &request,
                peer,
                &reply,
                status,
                reason,
                facts.load.from_source,
            ),
        }
    }

    /// What admission needs to know. The registrar and the flood counter remember being
    /// asked, so each is asked only when the checks before it let the INVITE through.
    fn admission_facts(&mut self, request: &Request, peer: Peer) -> admission::Facts {
        let source = peer.addr.ip();
        let invite = admission::Invite {
            merged: self.calls.contains_key(&request.call_id),
            no_hops_left: request.max_forwards == Some(0),
        };
        let sender = admission::Sender {
            account_required: self
                .inbound_only
                .as_ref()
                .is_some_and(|allowed| !allowed.contains(&source)),
            rate_exempt: self.admission.rate_exempt.contains(&source),
        };
        let ahead = invite.refusal().is_none();
        let auth = if ahead && sender.account_required {
            self.authenticate_invite(request, peer)
        } else {
            admission::Auth::NotAsked
        };
        let counted = ahead && !sender.rate_exempt && admission::gate(&sender, &auth).is_ok();
        let flood = counted.then(|| self.invites.hit(source, unix_millis()));
        let load = admission::Load {
            draining: self.draining,
            live_calls: self.calls.len(),
            max_calls: self.admission.max_calls,
            from_source: self.per_source.get(&source).copied().unwrap_or(0),
            max_calls_per_source: self.admission.max_calls_per_source,
            store_writing: self.admission.store.is_writing(),
            media_late: (self.admission.media_overloaded)(),
        };
        admission::Facts {
            invite,
            sender,
            auth,
            flood,
            load,
        }
    }

    /// Not the trunk: only someone with an account (a secretary or an executive calling
    /// in) may bring a call, after digest authentication.
    fn authenticate_invite(&mut self, request: &Request, peer: Peer) -> admission::Auth {
        use admission::Auth;
        let metrics = &self.metrics;
        let Some((registrar, store)) = self.registrar.as_mut() else {
            return Auth::NoAccounts;
        };
        let verdict = registrar.authenticate_request(
            request.authorization.as_deref(),
            "INVITE",
            &request.uri,
            peer.addr.ip(),
            unix_now(),
        );
        record_bans(registrar, store, metrics);
        match verdict {
            Ok(user) => {
                tracing::info!(user, source = %peer.addr, "authenticated INVITE from outside the trunk");
                Auth::Account(user)
            }
            // The registrar answers a banned source without a challenge.
            Err(challenges) if challenges.is_empty() => Auth::Banned,
            Err(challenges) => Auth::Unproven {
                challenges,
                offered: request.authorization.is_some(),
            },
        }
    }

    /// Answers a refused INVITE, with its log line and metric.
    fn refuse(
        &mut self,
        request: &Request,
        peer: Peer,
        reply: &Reply,
        status: u16,
        reason: admission::Reason,
        from_source: usize,
    ) {
        use admission::Reason;
        if let Some(why) = reason.refusal() {
            self.metrics.refused(why);
        }
        match reason {
            Reason::Merged | Reason::TooManyHops => {}
            Reason::Banned | Reason::NoAccount => {
                tracing::warn!(source = %peer.addr, uri = %request.uri, "INVITE from outside the trunk refused: 403");
            }
            Reason::Flood { first } => {
                if first {
                    tracing::warn!(
                        source = %peer.addr.ip(),
                        limit = self.admission.max_invites_per_second_per_source,
                        "INVITE flood: 503 to this address for the rest of the second"
                    );
                }
            }
            Reason::Busy(why) => {
                tracing::warn!(
                    live = self.calls.len(),
                    from_source,
                    source = %peer.addr.ip(),
                    why = why.as_str(),
                    "INVITE refused: 503"
                );
            }
        }
        if status == 503 {
            let retry = self.admission.retry_after.to_string();
            self.answer(reply, status, &[("Retry-After", &retry)]);
        } else {
            self.answer(reply, status, &[]);
        }
    }

    /// Takes an admitted INVITE: 100 Trying, then a call task that gets the INVITE first.
    fn start_call(&mut self, request: Box<Request>, peer: Peer, reply: Reply) {
        // 100 Trying at once (RFC 3261 §17.2.1), so the caller stops retransmitting.
        self.answer(&reply, 100, &[]);
        let (tx, rx) = mpsc::unbounded_channel();
        let call_id = request.call_id.clone();
        let key = reply.key;
        let _ = tx.send(ToCall::Request(Box::new(ForCall { request, key, peer })));
        self.calls.insert(call_id.clone(), tx);
        *self.per_source.entry(peer.addr.ip()).or_default() += 1;
        self.call_sources.insert(call_id.clone(), peer.addr.ip());
        self.live.store(self.calls.len(), Ordering::Relaxed);
        (self.spawn)(call_id, rx);
    }

    fn flush(&mut self) {
        while let Some(output) = self.transactions.poll_output() {
            match output {
                Output::Send(peer, bytes) => self.send(peer, bytes),
                Output::AckTimeout(call_id) => {
                    if let Some(call) = self.calls.get(&call_id) {
                        let _ = call.send(ToCall::AckTimeout);
                    }
                }
                Output::InviteProvisional { call_id, status } => {
                    let event = LegEvent::Provisional {
                        call_id: call_id.clone(),
                        status,
                    };
                    self.to_leg_owner(&call_id, event);
                }
                Output::InviteAnswered { call_id, response } => {
                    let event = LegEvent::Answered {
                        call_id: call_id.clone(),
                        response,
                    };
                    self.to_leg_owner(&call_id, event);
                }
                Output::InviteFailed {
                    call_id,
                    status,
                    challenge,
                } => {
                    let event = LegEvent::Failed {
                        call_id: call_id.clone(),
                        status,
                        challenge,
                    };
                    self.to_leg_owner(&call_id, event);
                }
                Output::RequestTimeout(call_id) if self.keepalives.contains_key(&call_id) => {
                    self.keepalive_lost(&call_id)
                }
                Output::Response {
                    call_id,
                    status,
                    challenge,
                } if self.is_trunk_registration(&call_id) => {
                    let again = self.trunk.as_mut().and_then(|(r, local)| {
                        r.on_response(
                            status,
                            challenge.as_ref(),
                            *local,
                            Instant::now(),
                            &write::new_tag(),
                        )
                    });
                    if again.is_some() {
                        self.register_with_trunk(again);
                    }
                }
                Output::RequestTimeout(call_id) if self.is_trunk_registration(&call_id) => {
                    if let Some((r, _)) = &mut self.trunk {
                        r.on_timeout(Instant::now());
                    }
                }
                Output::Response { call_id, .. } if self.keepalives.contains_key(&call_id) => {
                    self.keepalives.remove(&call_id);
                }
                Output::Response { call_id, .. } | Output::RequestTimeout(call_id) => {
                    if let Some(call) = self.calls.get(&call_id) {
                        let _ = call.send(ToCall::RequestDone);
                    }
                }
            }
        }
    }

    fn send(&self, peer: Peer, bytes: Vec<u8>) {
        match peer.transport {
            Transport::Udp => {
                if let Some(udp) = &self.udp
                    && let Err(e) = udp.try_send_to(&bytes, peer.addr)
                {
                    tracing::debug!(error = %e, to = %peer.addr, "UDP send failed");
                }
            }
            Transport::Tcp(id) | Transport::Tls(id) => match self.tcp.get(&id) {
                Some(writer) => {
                    if writer.try_send(bytes).is_err() {
                        tracing::debug!(to = %peer.addr, "TCP connection backlogged or closed; message dropped");
                    }
                }
                None => tracing::debug!(to = %peer.addr, "TCP connection gone; message dropped"),
            },
        }
    }
}

/// Milliseconds since the Unix epoch, for per-second counts.
fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch: registrations are stored and compared in wall time.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Logs the bans the registrar just decided, once each, and records them.
fn record_bans(
    registrar: &mut crate::registrar::Registrar,
    store: &crate::store::Writer,
    metrics: &Metrics,
) {
    for ban in registrar.take_bans() {
        metrics.bans.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            source = %ban.source,
            failures = ban.failures,
            user = ban.username,
            until = ban.until,
            "banned: repeated wrong credentials"
        );
        store.write(crate::store::Record::Ban {
            source: ban.source.to_string(),
            username: ban.username,
            failures: ban.failures,
            until: ban.until as i64,
            at: crate::store::now_text(),
        });
    }
}

/// Writes a user's current bindings through to the store and the desk.
fn save_bindings(
    registrar: &crate::registrar::Registrar,
    store: &crate::store::Writer,
    desk: Option<&crate::desk::Desk>,
    metrics: &Metrics,
    username: &str,
    now: u64,
) {
    metrics
        .registrations
        .store(registrar.all_bindings(now).len(), Ordering::Relaxed);
    let current = registrar.bindings(username, now);
    if let Some(desk) = desk {
        desk.set_bindings(username, current.clone());
    }
    let bindings = current
        .iter()
        .map(|b| {
            (
                b.contact.clone(),
                b.source.addr.to_string(),
                b.source.transport_token(),
                b.expires_at as i64,
                registrar.instance(username, &b.contact).map(str::to_string),
            )
        })
        .collect();
    store.write(crate::store::Record::Bindings {
        username: username.to_string(),
        bindings,
    });
}

/// Call-IDs of our keep-alive OPTIONS start with this.
const KEEPALIVE: &str = "keepalive-";

async fn tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn recv_udp(udp: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match udp {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(at) = deadline {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Checks that apply to any request outside a dialog before a call is involved
/// (RFC 3261 §8.2.2–8.2.3); returns the refusal status.
fn screen(request: &Request) -> Option<u16> {
    let scheme = request
        .uri
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !matches!(scheme.as_str(), "sip" | "sips" | "tel") {
        return Some(416);
    }
    if !matches!(request.method, Method::Ack | Method::Cancel) && !request.require.is_empty() {
        // We implement no extension that a peer may require.
        return Some(420);
    }
    if request.method == Method::Invite {
        if !request.body.is_empty()
            && request
                .content_type
                .as_deref()
                .is_some_and(|c| c != "application/sdp")
        {
            return Some(415);
        }
        if let Some(accept) = &request.accept {
            let ok = accept.is_empty()
                || accept
                    .split(',')
                    .map(|t| {
                        t.split(';')
                            .next()
                            .unwrap_or_default()
                            .trim()
                            .to_ascii_lowercase()
                    })
                    .any(|t| t == "application/sdp" || t == "application/*" || t == "*/*");
            if !ok {
                return Some(406);
            }
        }
    }
    None
}
