//! Transactions (RFC 3261 §17) as a sans-IO state machine: the endpoint feeds it
//! messages and the time, and drains what to send and what to tell the calls.
//!
//! Server INVITE transactions include the RFC 6026 "Accepted" state: a 2xx is
//! retransmitted here until its ACK arrives, so calls never run a timer for it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::message::{Method, Request, Response};
use super::{CallId, Peer};

/// Timer base values (RFC 3261 §17.1.1.1, table 4): T1 = 500 ms RTT estimate,
/// T2 = 4 s cap on non-INVITE retransmission interval, T4 = 5 s maximum network lifetime.
#[derive(Debug, Clone, Copy)]
pub struct TimerValues {
    /// RTT estimate.
    pub t1: Duration,
    /// Maximum retransmission interval.
    pub t2: Duration,
    /// Maximum time a message stays in the network.
    pub t4: Duration,
}

impl Default for TimerValues {
    fn default() -> Self {
        TimerValues {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// Identifies a transaction: the top Via branch (or RFC 2543 fields) and its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxKey {
    id: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Invite,
    Cancel,
    NonInvite,
    Client,
    ClientInvite,
}

impl TxKey {
    /// The key of a request's server transaction. ACK and CANCEL map to the INVITE's id.
    fn for_request(req: &Request, peer: &Peer) -> TxKey {
        let kind = match req.method {
            Method::Invite | Method::Ack => Kind::Invite,
            Method::Cancel => Kind::Cancel,
            _ => Kind::NonInvite,
        };
        let id = match &req.branch {
            // RFC 3261 §17.2.3: branch + sent-by (here: the source) identify the transaction.
            Some(b) if b.starts_with("z9hG4bK") => format!("{b}|{}", peer.addr),
            // RFC 2543 peers: Call-ID, From tag, CSeq number and the top Via.
            _ => format!(
                "{}|{}|{}|{}",
                req.call_id,
                req.from.tag.as_deref().unwrap_or(""),
                req.cseq.seq,
                req.echo.via.first().map(String::as_str).unwrap_or("")
            ),
        };
        TxKey { id, kind }
    }

    /// The key of an INVITE client transaction we started with this branch (a CANCEL for
    /// it shares the branch but is a transaction of its own, [`TxKey::client`]).
    pub fn client_invite(branch: &str) -> TxKey {
        TxKey {
            id: branch.to_string(),
            kind: Kind::ClientInvite,
        }
    }

    /// The key of a client transaction we started with this branch.
    pub fn client(branch: &str) -> TxKey {
        TxKey {
            id: branch.to_string(),
            kind: Kind::Client,
        }
    }
}

#[derive(Debug)]
enum State {
    /// INVITE or non-INVITE without a final response yet.
    Proceeding,
    /// Final non-2xx sent; retransmitting until ACK (INVITE) or absorbing retransmissions.
    Completed,
    /// 2xx to INVITE sent; retransmitting until the ACK (RFC 6026).
    Accepted,
    /// ACK received for a non-2xx: absorb further ACKs for T4.
    Confirmed,
    /// Client transaction waiting for a final response.
    Calling,
}

#[derive(Debug)]
struct Transaction {
    peer: Peer,
    call_id: CallId,
    state: State,
    last: Option<Vec<u8>>,
    interval: Duration,
    retransmit_at: Option<Instant>,
    expire_at: Option<Instant>,
    cseq: u32,
    /// For our INVITEs: how to ACK a refusal.
    ack: Option<Box<InviteAck>>,
}

/// What a request means once matched against the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A new request for the transaction user; answer it with [`Transactions::respond`].
    New(TxKey),
    /// A retransmission, already answered from the table (or still being worked on).
    Absorbed,
    /// The ACK for a 2xx we sent: the dialog is confirmed.
    AckFor2xx(CallId),
    /// An ACK that matches nothing we know (late, or for a transaction already gone).
    StrayAck,
    /// A CANCEL: answered 200 here when it matched; the INVITE, if still pending, is named.
    Cancel {
        /// The CANCEL's own transaction (already answered).
        cancel: TxKey,
        /// The INVITE it cancels, when still without a final response.
        invite: Option<TxKey>,
    },
}

/// Something for the endpoint to do after handling input or time.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Put these bytes on the wire to this peer.
    Send(Peer, Vec<u8>),
    /// No ACK came for our 2xx within 64·T1: the call must end with BYE (RFC 3261 §13.3.1.4).
    AckTimeout(CallId),
    /// Our request got its final response.
    Response {
        /// The dialog it belongs to.
        call_id: CallId,
        /// The final status.
        status: u16,
        /// A 401/407's challenge (true: from a proxy), e.g. for our REGISTER to a trunk.
        challenge: Option<(bool, String)>,
    },
    /// Our request got no final response within 64·T1 (Timer F).
    RequestTimeout(CallId),
    /// Our INVITE got a provisional response (the phone rings).
    InviteProvisional {
        /// The outbound leg's Call-ID.
        call_id: CallId,
        /// 180, 183…
        status: u16,
    },
    /// Our INVITE was answered (also for each retransmitted 2xx, which needs its ACK again,
    /// RFC 6026 §8.4). The transaction user sends the ACK.
    InviteAnswered {
        /// The outbound leg's Call-ID.
        call_id: CallId,
        /// The 2xx, with its SDP answer, To tag and Contact.
        response: Box<Response>,
    },
    /// Our INVITE was refused (already acknowledged here) or timed out (Timer B: 408).
    InviteFailed {
        /// The outbound leg's Call-ID.
        call_id: CallId,
        /// The final status.
        status: u16,
        /// A 401/407's digest challenge (proxy or not), to try again with credentials.
        challenge: Option<(bool, String)>,
    },
}

/// What the transaction layer needs to acknowledge a non-2xx final response to our INVITE
/// itself (RFC 3261 §17.1.1.3: same Request-URI, Via, From, Call-ID and CSeq number; the
/// response's To).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteAck {
    /// Request-URI of the INVITE.
    pub request_uri: String,
    /// The INVITE's Via value (with its branch).
    pub via: String,
    /// From.
    pub from: String,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
}

impl InviteAck {
    fn bytes(&self, to: &str) -> Vec<u8> {
        format!(
            "ACK {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
            self.request_uri, self.via, self.from, self.call_id, self.cseq
        )
        .into_bytes()
    }
}

/// All transactions of one endpoint, with their timers.
#[derive(Debug, Default)]
pub struct Transactions {
    timers: TimerValues,
    table: HashMap<TxKey, Transaction>,
    accepted: HashMap<(CallId, u32), TxKey>,
    wakeups: BinaryHeap<Reverse<(Instant, u64, TxKey)>>,
    sequence: u64,
    outputs: VecDeque<Output>,
}

impl Transactions {
    /// An empty table with the given timer values.
    pub fn new(timers: TimerValues) -> Self {
        Transactions {
            timers,
            ..Default::default()
        }
    }

    /// How many transactions are alive (for metrics and tests).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no transaction is alive.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn wake(&mut self, at: Instant, key: &TxKey) {
        self.sequence += 1;
        self.wakeups.push(Reverse((at, self.sequence, key.clone())));
    }

    /// Matches a request against the table.
    pub fn on_request(&mut self, req: &Request, peer: Peer, now: Instant) -> Incoming {
        let key = TxKey::for_request(req, &peer);
        match req.method {
            Method::Ack => {
                if let Some(tx) = self.table.get_mut(&key)
                    && matches!(tx.state, State::Completed | State::Confirmed)
                {
                    if matches!(tx.state, State::Completed) {
                        tx.state = State::Confirmed;
                        tx.retransmit_at = None;
                        // Timer I: absorb ACK retransmissions (T4; zero on reliable transports).
                        let linger = if peer.is_unreliable() {
                            self.timers.t4
                        } else {
                            Duration::ZERO
                        };
                        tx.expire_at = Some(now + linger);
                        self.wake(now + linger, &key);
                    }
                    return Incoming::Absorbed;
                }
                match self.accepted.remove(&(req.call_id.clone(), req.cseq.seq)) {
                    Some(invite) => {
                        self.table.remove(&invite);
                        Incoming::AckFor2xx(req.call_id.clone())
                    }
                    None => Incoming::StrayAck,
                }
            }
            Method::Cancel => {
                if let Some(tx) = self.table.get(&key) {
                    if let Some(last) = &tx.last {
                        self.outputs.push_back(Output::Send(tx.peer, last.clone()));
                    }
                    return Incoming::Absorbed;
                }
                let invite_key = TxKey {
                    id: key.id.clone(),
                    kind: Kind::Invite,
                };
                let invite = self
                    .table
                    .get(&invite_key)
                    .filter(|tx| matches!(tx.state, State::Proceeding))
                    .map(|_| invite_key);
                self.insert(&key, req, peer, now);
                Incoming::Cancel {
                    cancel: key,
                    invite,
                }
            }
            _ => {
                if let Some(tx) = self.table.get(&key) {
                    if let Some(last) = &tx.last {
                        self.outputs.push_back(Output::Send(tx.peer, last.clone()));
                    }
                    return Incoming::Absorbed;
                }
                self.insert(&key, req, peer, now);
                Incoming::New(key)
            }
        }
    }

    fn insert(&mut self, key: &TxKey, req: &Request, peer: Peer, now: Instant) {
        // A transaction that never gets a final response still goes away (64·T1 + margin).
        let expire = now + self.timers.t1 * 64 + Duration::from_secs(180);
        self.table.insert(
            key.clone(),
            Transaction {
                peer,
                call_id: req.call_id.clone(),
                state: State::Proceeding,
                last: None,
                interval: self.timers.t1,
                retransmit_at: None,
                expire_at: Some(expire),
                cseq: req.cseq.seq,
                ack: None,
            },
        );
        self.wake(expire, key);
    }

    /// Sends a response in a server transaction: queued for the wire, remembered for
    /// retransmissions, and the transaction moved on if it is final.
    pub fn respond(&mut self, key: &TxKey, status: u16, bytes: Vec<u8>, now: Instant) {
        let timers = self.timers;
        let Some(tx) = self.table.get_mut(key) else {
            return;
        };
        if !matches!(tx.state, State::Proceeding) {
            return; // a final response was already sent
        }
        self.outputs.push_back(Output::Send(tx.peer, bytes.clone()));
        tx.last = Some(bytes);
        if status < 200 {
            return;
        }
        let unreliable = tx.peer.is_unreliable();
        let (retransmit, expire) = match (key.kind, status) {
            (Kind::Invite, 200..=299) => {
                tx.state = State::Accepted;
                self.accepted
                    .insert((tx.call_id.clone(), tx.cseq), key.clone());
                // RFC 3261 §13.3.1.4: retransmit the 2xx on any transport... over UDP only here,
                // since a reliable transport does not lose it; the ACK wait is 64·T1 either way.
                (unreliable.then(|| now + timers.t1), now + timers.t1 * 64)
            }
            (Kind::Invite, _) => {
                tx.state = State::Completed;
                // Timer G retransmits (UDP), Timer H bounds the wait for ACK.
                (unreliable.then(|| now + timers.t1), now + timers.t1 * 64)
            }
            _ => {
                tx.state = State::Completed;
                // Timer J: absorb request retransmissions for 64·T1 on UDP.
                (
                    None,
                    now + if unreliable {
                        timers.t1 * 64
                    } else {
                        Duration::ZERO
                    },
                )
            }
        };
        tx.retransmit_at = retransmit;
        tx.expire_at = Some(expire);
        tx.interval = timers.t1;
        if let Some(at) = retransmit {
            self.wake(at, key);
        }
        self.wake(expire, key);
    }

    /// Starts a client transaction for a request we send (e.g. BYE).
    pub fn send_request(
        &mut self,
        key: TxKey,
        call_id: CallId,
        peer: Peer,
        bytes: Vec<u8>,
        now: Instant,
    ) {
        self.start_client(key, call_id, peer, bytes, None, now);
    }

    /// Starts an INVITE client transaction (RFC 3261 §17.1.1): retransmitted with Timer A
    /// over UDP, given up after Timer B (64·T1).
    pub fn send_invite(
        &mut self,
        branch: &str,
        call_id: CallId,
        peer: Peer,
        bytes: Vec<u8>,
        ack: InviteAck,
        now: Instant,
    ) {
        self.start_client(
            TxKey::client_invite(branch),
            call_id,
            peer,
            bytes,
            Some(Box::new(ack)),
            now,
        );
    }

    /// Sends a request and keeps it for retransmission (Timer E or A over UDP) until it is
    /// answered or 64·T1 passes (Timer F or B).
    fn start_client(
        &mut self,
        key: TxKey,
        call_id: CallId,
        peer: Peer,
        bytes: Vec<u8>,
        ack: Option<Box<InviteAck>>,
        now: Instant,
    ) {
        let t1 = self.timers.t1;
        self.outputs.push_back(Output::Send(peer, bytes.clone()));
        let retransmit_at = peer.is_unreliable().then(|| now + t1);
        let expire = now + t1 * 64;
        let cseq = ack.as_ref().map_or(0, |a| a.cseq);
        self.table.insert(
            key.clone(),
            Transaction {
                peer,
                call_id,
                state: State::Calling,
                last: Some(bytes),
                interval: t1,
                retransmit_at,
                expire_at: Some(expire),
                cseq,
                ack,
            },
        );
        if let Some(at) = retransmit_at {
            self.wake(at, &key);
        }
        self.wake(expire, &key);
    }

    fn on_invite_response(&mut self, key: TxKey, resp: &Response, now: Instant) -> bool {
        let t1 = self.timers.t1;
        let Some(tx) = self.table.get_mut(&key) else {
            return false;
        };
        let call_id = tx.call_id.clone();
        match (&tx.state, resp.status) {
            (State::Calling | State::Proceeding, 100..=199) => {
                tx.state = State::Proceeding;
                tx.retransmit_at = None;
                if resp.status > 100 {
                    self.outputs.push_back(Output::InviteProvisional {
                        call_id,
                        status: resp.status,
                    });
                }
            }
            (State::Calling | State::Proceeding | State::Accepted, 200..=299) => {
                // Accepted: keep the transaction 64·T1 to hand retransmitted 2xx up for re-ACK.
                if !matches!(tx.state, State::Accepted) {
                    tx.state = State::Accepted;
                    tx.retransmit_at = None;
                    tx.expire_at = Some(now + t1 * 64);
                    self.wake(now + t1 * 64, &key);
                }
                self.outputs.push_back(Output::InviteAnswered {
                    call_id,
                    response: Box::new(resp.clone()),
                });
            }
            (State::Calling | State::Proceeding, _) => {
                let ack = tx
                    .ack
                    .as_ref()
                    .map(|a| a.bytes(&resp.to))
                    .unwrap_or_default();
                self.outputs.push_back(Output::Send(tx.peer, ack.clone()));
                self.outputs.push_back(Output::InviteFailed {
                    call_id,
                    status: resp.status,
                    challenge: resp.challenge.clone(),
                });
                tx.state = State::Completed;
                tx.last = Some(ack);
                tx.retransmit_at = None;
                // Timer D: absorb retransmitted finals (32 s on UDP, none on TCP).
                let linger = if tx.peer.is_unreliable() {
                    Duration::from_secs(32)
                } else {
                    Duration::ZERO
                };
                tx.expire_at = Some(now + linger);
                self.wake(now + linger, &key);
            }
            (State::Completed, 300..) => {
                if let Some(ack) = &tx.last {
                    self.outputs.push_back(Output::Send(tx.peer, ack.clone()));
                }
            }
            _ => {}
        }
        true
    }

    /// Matches a response to one of our client transactions. Returns false for strays.
    pub fn on_response(&mut self, resp: &Response, now: Instant) -> bool {
        let Some(branch) = &resp.branch else {
            return false;
        };
        if resp.cseq.method == Method::Invite {
            return self.on_invite_response(TxKey::client_invite(branch), resp, now);
        }
        let key = TxKey::client(branch);
        if resp.status < 200 {
            return self.table.contains_key(&key);
        }
        match self.table.remove(&key) {
            Some(tx) => {
                self.outputs.push_back(Output::Response {
                    call_id: tx.call_id,
                    status: resp.status,
                    challenge: resp.challenge.clone(),
                });
                true
            }
            None => false,
        }
    }

    /// When the next timer is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.wakeups.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _, _))) = self.wakeups.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, _, key))) = self.wakeups.pop() else {
                break;
            };
            self.fire(&key, now);
        }
    }

    fn fire(&mut self, key: &TxKey, now: Instant) {
        let t2 = self.timers.t2;
        let Some(tx) = self.table.get_mut(key) else {
            return;
        };
        if tx.expire_at.is_some_and(|at| at <= now) {
            let Some(tx) = self.table.remove(key) else {
                return;
            };
            match tx.state {
                State::Accepted => {
                    self.accepted.remove(&(tx.call_id.clone(), tx.cseq));
                    self.outputs.push_back(Output::AckTimeout(tx.call_id));
                }
                State::Calling | State::Proceeding if key.kind == Kind::ClientInvite => {
                    // Timer B: nobody answered our INVITE at all.
                    self.outputs.push_back(Output::InviteFailed {
                        call_id: tx.call_id,
                        status: 408,
                        challenge: None,
                    });
                }
                State::Calling => self.outputs.push_back(Output::RequestTimeout(tx.call_id)),
                _ => {}
            }
            return;
        }
        if let Some(at) = tx.retransmit_at
            && at <= now
        {
            if let Some(last) = &tx.last {
                self.outputs.push_back(Output::Send(tx.peer, last.clone()));
            }
            // Timers G and E double up to T2 (RFC 3261 §17.2.1, §17.1.2.2); Timer A
            // doubles without a cap until Timer B ends it (§17.1.1.2).
            tx.interval = if key.kind == Kind::ClientInvite {
                tx.interval * 2
            } else {
                (tx.interval * 2).min(t2)
            };
            let next = now + tx.interval;
            tx.retransmit_at = Some(next);
            self.wake(next, key);
        }
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::SipMessage;
    use crate::sip::parse::parse;
    use crate::sip::{Transport, write};

    fn peer(transport: Transport) -> Peer {
        Peer {
            transport,
            addr: "127.0.0.1:5070".parse().unwrap(),
        }
    }

    fn request(method: &str, branch: &str, cseq: u32) -> Request {
        let text = format!(
            "{method} sip:+33180000001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
             From: <sip:a@x>;tag=f\r\nTo: <sip:b@y>\r\nCall-ID: cid\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes()).unwrap() {
            SipMessage::Request(r) => *r,
            SipMessage::Response(_) => unreachable!(),
        }
    }

    fn sends(t: &mut Transactions) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| t.poll_output())
            .filter_map(|o| match o {
                Output::Send(_, b) => Some(b),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn invite_retransmission_resends_last_response_without_a_new_call() {
        let mut t = Transactions::new(TimerValues::default());
        let now = Instant::now();
        let inv = request("INVITE", "z9hG4bK1", 1);
        let Incoming::New(key) = t.on_request(&inv, peer(Transport::Udp), now) else {
            panic!()
        };
        t.respond(
            &key,
            100,
            write::response(&inv.echo, 100, None, &[], None),
            now,
        );
        assert_eq!(sends(&mut t).len(), 1);
        assert_eq!(
            t.on_request(&inv, peer(Transport::Udp), now),
            Incoming::Absorbed
        );
        let resent = sends(&mut t);
        assert_eq!(resent.len(), 1);
        assert!(resent[0].starts_with(b"SIP/2.0 100"));
    }

    #[test]
    fn ok_is_retransmitted_with_doubling_until_ack_then_times_out() {
        let mut t = Transactions::new(TimerValues::default());
        let start = Instant::now();
        let inv = request("INVITE", "z9hG4bK2", 1);
        let Incoming::New(key) = t.on_request(&inv, peer(Transport::Udp), start) else {
            panic!()
        };
        t.respond(&key, 200, b"200".to_vec(), start);
        sends(&mut t);
        let mut at = Vec::new();
        while let Some(now) = t.poll_timeout() {
            t.handle_timeout(now);
            let out: Vec<Output> = std::iter::from_fn(|| t.poll_output()).collect();
            for o in out {
                match o {
                    Output::Send(..) => at.push((now - start).as_millis()),
                    Output::AckTimeout(c) => {
                        assert_eq!(c.0, "cid");
                        assert_eq!((now - start).as_secs(), 32);
                        assert_eq!(&at[..5], &[500, 1500, 3500, 7500, 11500]);
                        return;
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        panic!("no ACK timeout");
    }

    #[test]
    fn ack_for_2xx_confirms_and_stops_retransmission() {
        let mut t = Transactions::new(TimerValues::default());
        let now = Instant::now();
        let inv = request("INVITE", "z9hG4bK3", 7);
        let Incoming::New(key) = t.on_request(&inv, peer(Transport::Udp), now) else {
            panic!()
        };
        t.respond(&key, 200, b"200".to_vec(), now);
        let ack = request("ACK", "z9hG4bKother", 7);
        assert_eq!(
            t.on_request(&ack, peer(Transport::Udp), now),
            Incoming::AckFor2xx(CallId("cid".into()))
        );
        assert!(t.is_empty());
        assert_eq!(
            t.on_request(&ack, peer(Transport::Udp), now),
            Incoming::StrayAck
        );
    }

    #[test]
    fn cancel_names_the_pending_invite_and_a_final_answer_stops_it() {
        let mut t = Transactions::new(TimerValues::default());
        let now = Instant::now();
        let inv = request("INVITE", "z9hG4bK4", 1);
        let Incoming::New(key) = t.on_request(&inv, peer(Transport::Udp), now) else {
            panic!()
        };
        let cancel = request("CANCEL", "z9hG4bK4", 1);
        let Incoming::Cancel { invite, .. } = t.on_request(&cancel, peer(Transport::Udp), now)
        else {
            panic!()
        };
        assert_eq!(invite, Some(key.clone()));
        t.respond(&key, 487, b"487".to_vec(), now);
        let ack = request("ACK", "z9hG4bK4", 1);
        assert_eq!(
            t.on_request(&ack, peer(Transport::Udp), now),
            Incoming::Absorbed
        );
    }

    #[test]
    fn client_request_retransmits_until_answered_over_udp_only() {
        let mut t = Transactions::new(TimerValues::default());
        let now = Instant::now();
        t.send_request(
            TxKey::client("z9hG4bKbye"),
            CallId("cid".into()),
            peer(Transport::Tcp(1)),
            b"BYE".to_vec(),
            now,
        );
        sends(&mut t);
        t.handle_timeout(now + Duration::from_secs(2));
        assert!(sends(&mut t).is_empty(), "no retransmission over TCP");
        t.handle_timeout(now + Duration::from_secs(33));
        assert_eq!(
            t.poll_output(),
            Some(Output::RequestTimeout(CallId("cid".into())))
        );
    }

    fn response(status: u16, method: &str, branch: &str) -> Response {
        let text = format!(
            "SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\nFrom: <sip:p@127.0.0.1>;tag=ours\r\n\
             To: <sip:alice@192.0.2.9>;tag=hers\r\nCall-ID: leg-1\r\nCSeq: 1 {method}\r\nContact: <sip:alice@192.0.2.9:5062>\r\n\
             Content-Length: 3\r\n\r\nv=0"
        );
        match parse(text.as_bytes()).unwrap() {
            SipMessage::Response(r) => *r,
            SipMessage::Request(_) => unreachable!(),
        }
    }

    fn ack_info() -> InviteAck {
        InviteAck {
            request_uri: "sip:alice@192.0.2.9:5062".into(),
            via: "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKleg".into(),
            from: "<sip:p@127.0.0.1>;tag=ours".into(),
            call_id: "leg-1".into(),
            cseq: 1,
        }
    }

    #[test]
    fn our_invite_is_retransmitted_with_timer_a_until_timer_b() {
        let mut t = Transactions::new(TimerValues::default());
        let start = Instant::now();
        t.send_invite(
            "z9hG4bKleg",
            CallId("leg-1".into()),
            peer(Transport::Udp),
            b"INVITE".to_vec(),
            ack_info(),
            start,
        );
        sends(&mut t);
        let mut at = Vec::new();
        while let Some(now) = t.poll_timeout() {
            t.handle_timeout(now);
            for o in std::iter::from_fn(|| t.poll_output()) {
                match o {
                    Output::Send(..) => at.push((now - start).as_millis()),
                    Output::InviteFailed { status, .. } => {
                        assert_eq!(status, 408);
                        assert_eq!((now - start).as_secs(), 32, "Timer B = 64·T1");
                        assert_eq!(
                            at,
                            vec![500, 1500, 3500, 7500, 15500, 31500],
                            "Timer A doubles without a cap"
                        );
                        return;
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        panic!("no Timer B");
    }

    #[test]
    fn ringing_stops_retransmission_and_every_2xx_reaches_the_user() {
        let mut t = Transactions::new(TimerValues::default());
        let now = Instant::now();
        t.send_invite(
            "z9hG4bKleg",
            CallId("leg-1".into()),
            peer(Transport::Udp),
            b"INVITE".to_vec(),
            ack_info(),
            now,
        );
        sends(&mut t);
        assert!(t.on_response(&response(180, "INVITE", "z9hG4bKleg"), now));
        assert_eq!(
            t.poll_output(),
            Some(Output::InviteProvisional {
                call_id: CallId("leg-1".into()),
                status: 180
            })
        );
        t.handle_timeout(now + Duration::from_secs(2));
        assert!(sends(&mut t).is_empty(), "a provisional stops Timer A");
        for _ in 0..2 {
            assert!(t.on_response(&response(200, "INVITE", "z9hG4bKleg"), now));
            match t.poll_output() {
                Some(Output::InviteAnswered { response, .. }) => {
                    assert_eq!(
                        (response.to_tag.as_deref(), response.contact.as_deref()),
                        (Some("hers"), Some("sip:alice@192.0.2.9:5062"))
                    );
                    assert_eq!(response.body, b"v=0");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_refusal_is_acknowledged_here_and_again_for_its_retransmission() {
        let mut t = Transactions::new(TimerValues::default());
        let now = Instant::now();
        t.send_invite(
            "z9hG4bKleg",
            CallId("leg-1".into()),
            peer(Transport::Udp),
            b"INVITE".to_vec(),
            ack_info(),
            now,
        );
        sends(&mut t);
        assert!(t.on_response(&response(486, "INVITE", "z9hG4bKleg"), now));
        let out: Vec<Output> = std::iter::from_fn(|| t.poll_output()).collect();
        let Output::Send(_, ack) = &out[0] else {
            panic!("{out:?}")
        };
        let ack = String::from_utf8(ack.clone()).unwrap();
        assert!(
            ack.starts_with("ACK sip:alice@192.0.2.9:5062 SIP/2.0\r\n"),
            "{ack}"
        );
        assert!(
            ack.contains("branch=z9hG4bKleg")
                && ack.contains("To: <sip:alice@192.0.2.9>;tag=hers")
                && ack.contains("CSeq: 1 ACK"),
            "{ack}"
        );
        assert_eq!(
            out[1],
            Output::InviteFailed {
                call_id: CallId("leg-1".into()),
                status: 486,
                challenge: None,
            }
        );
        assert!(t.on_response(&response(486, "INVITE", "z9hG4bKleg"), now));
        assert_eq!(sends(&mut t).len(), 1, "the ACK again");
        // A CANCEL on the same branch is its own transaction.
        t.send_request(
            TxKey::client("z9hG4bKleg"),
            CallId("leg-1".into()),
            peer(Transport::Udp),
            b"CANCEL".to_vec(),
            now,
        );
        sends(&mut t);
        assert!(t.on_response(&response(200, "CANCEL", "z9hG4bKleg"), now));
        assert_eq!(
            t.poll_output(),
            Some(Output::Response {
                call_id: CallId("leg-1".into()),
                status: 200,
                challenge: None,
            })
        );
    }
}
