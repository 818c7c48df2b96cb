//! The browser phone's media: one WebRTC peer connection per secretary whose console has
//! the phone on, negotiated once over the console's WebSocket and kept while the page is
//! there. Each call she takes is then bridged into it by the engine (a `StreamIo::Browser`
//! stream), so answering costs no ICE or DTLS handshake.
//!
//! The protocol work (ICE-lite, DTLS-SRTP, RTP in and out) is webrtc-rs's sans-IO `rtc`
//! crate; this module is its shell: one tokio task per phone owning the UDP socket, the
//! clock and the peer connection. Only what completed ICE is ever sent media (the crate
//! sends RTP on the selected pair only), the browser's DTLS certificate must match the
//! fingerprint of its offer, and a phone exists only for a logged-in secretary's socket.
//!
//! While her phone is connected, the desk counts it as one of her phones (a binding whose
//! contact is [`contact`]); a ring is a message on her page ([`PhoneNote::Ring`]), her
//! answer comes back through the console to the call's task.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::marshal::{Marshal, Unmarshal};
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::sync::mpsc;

use super::engine::MediaHandle;
use crate::desk::Desk;
use crate::registrar::Binding;
use crate::sdp::Codec;
use crate::sip::{Peer, Transport};
use crate::store::CallRowId;

/// The contact a browser phone has on the desk: not a SIP URI, so no SIP phone has it.
pub fn contact(username: &str) -> String {
    format!("webrtc:{username}")
}

/// Whether a desk binding is a browser phone's.
pub fn is_contact(uri: &str) -> bool {
    uri.starts_with("webrtc:")
}

/// Largest offer a page may send (Chrome's audio-only offer is about 3 KB).
pub const MAX_OFFER: usize = 12 * 1024;

/// Packets waiting between the phone's task and the engine, each way: a second of audio.
const LINK_BACKLOG: usize = 64;

/// Until the browser completes ICE and DTLS, the phone is not on the desk; past this it
/// is given up (the page is told).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// A connected browser sends audio every 20 ms while the phone is on, and ICE consent
/// checks every 5 s or so (RFC 7675 §5.1: 4 to 6 s): this long without a datagram, the
/// page or its network is gone and the phone leaves the desk (a tab that closes cleanly
/// is noticed at once, by its WebSocket).
const SILENCE_LIMIT: Duration = Duration::from_secs(8);

/// Why a phone could not be turned on.
#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    /// The offer is not one we can answer (no audio, no G.711, malformed, too large).
    #[error("the browser's offer cannot be answered: {0}")]
    Offer(String),
    /// No UDP port was free for it.
    #[error("no UDP port for the browser phone")]
    NoPort,
    /// The browser phone is not served (no console).
    #[error("the browser phone is off on this server")]
    Off,
}

/// What the phone tells the page (through her WebSocket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneNote {
    /// ICE and DTLS completed: the phone is on her desk.
    Connected,
    /// The peer connection failed or closed: the phone is off the desk.
    Lost,
    /// A call rings her browser.
    Ring {
        /// This ring's number (her answer names it).
        ring: u64,
        /// The call's row id.
        call: CallRowId,
        /// `ACME Plomberie · +33612345678`.
        caller: String,
        /// A call she placed herself from a task (the ring names the customer she is
        /// about to call), not a caller for a company.
        outgoing: bool,
    },
    /// The ring stopped (the caller hung up, another phone answered, time-out).
    Cancelled {
        /// The ring's number.
        ring: u64,
    },
    /// The call she answered is over.
    HungUp {
        /// The ring's number.
        ring: u64,
    },
}

/// What the engine's stream for a browser leg holds: plain RTP to and from her peer
/// connection's task.
pub struct BrowserLink {
    /// Where her browser is (the address that completed ICE).
    pub peer: SocketAddr,
    /// The codec the browser's answer agreed.
    pub codec: Codec,
    /// Its payload type.
    pub payload_type: u8,
    /// The telephone-event payload type, when agreed.
    pub telephone_event: Option<u8>,
    to_phone: mpsc::Sender<ToPhone>,
    from_phone: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl BrowserLink {
    /// Hands one plain RTP packet to the phone (dropped if the phone is gone or behind).
    pub fn send(&self, packet: &[u8]) {
        let _ = self.to_phone.try_send(ToPhone::Rtp(packet.to_vec()));
    }

    /// The next plain RTP packet from the browser, copied into `buf`; its length.
    pub fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        let packet = self.from_phone.try_recv().ok()?;
        let n = packet.len().min(buf.len());
        buf[..n].copy_from_slice(&packet[..n]);
        Some(n)
    }
}

enum ToPhone {
    /// Plain RTP from the engine, to protect and send.
    Rtp(Vec<u8>),
    /// A call's stream wants the browser's audio.
    Attach(std::sync::mpsc::SyncSender<Vec<u8>>),
}

/// What the codec negotiation gave, once the answer is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Agreed {
    codec: Codec,
    payload_type: u8,
    telephone_event: Option<u8>,
}

/// One phone's shared part: the registry finds it by username.
struct Phone {
    generation: u64,
    to_task: mpsc::Sender<ToPhone>,
    page: mpsc::UnboundedSender<PhoneNote>,
    agreed: Agreed,
    /// Set once ICE and DTLS completed: where the browser is.
    connected: Option<SocketAddr>,
    /// Rings shown on her page, and their calls.
    rings: HashMap<u64, CallRowId>,
}

/// Every secretary's browser phone, by username.
pub struct Phones {
    live: Mutex<HashMap<String, Phone>>,
    desk: Arc<Desk>,
    media: MediaHandle,
    /// What ICE candidates advertise (the server's address as browsers reach it).
    public: IpAddr,
    next: AtomicU64,
}

impl std::fmt::Debug for Phones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phones")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A phone on; it goes off (task ended, desk binding removed) when this drops.
pub struct PhoneGuard {
    phones: Arc<Phones>,
    username: String,
    generation: u64,
}

impl Drop for PhoneGuard {
    fn drop(&mut self) {
        self.phones.forget(&self.username, self.generation);
    }
}

impl Phones {
    /// Phones whose sockets bind on the media address (from the RTP range) and whose
    /// candidates advertise `public` (the media address when not set).
    pub fn new(desk: Arc<Desk>, media: MediaHandle, public: Option<IpAddr>) -> Phones {
        let public = public.unwrap_or(media.ip());
        Phones {
            live: Mutex::new(HashMap::new()),
            desk,
            media,
            public,
            next: AtomicU64::new(1),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Phone>> {
        // Each use is one map operation: a panic elsewhere cannot leave it half-changed.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Turns `username`'s browser phone on with the page's offer: returns the answer to
    /// send back, and the guard that keeps the phone while her page is there. A phone she
    /// already had (another tab, a reload) is replaced.
    pub fn start(
        self: &Arc<Self>,
        username: &str,
        offer: &str,
        page: mpsc::UnboundedSender<PhoneNote>,
    ) -> Result<(PhoneGuard, String), PhoneError> {
        if offer.len() > MAX_OFFER {
            return Err(PhoneError::Offer("too large".into()));
        }
        let (socket, port) = self.media.bind().map_err(|_| PhoneError::NoPort)?;
        let local = socket.local_addr().map_err(|_| PhoneError::NoPort)?;
        let ssrc = fastrand::u32(..);
        let (mut pc, sender) =
            peer_connection(ssrc).map_err(|e| PhoneError::Offer(e.to_string()))?;
        let offer = RTCSessionDescription::offer(g711_only(offer))
            .map_err(|e| PhoneError::Offer(e.to_string()))?;
        let now = Instant::now();
        pc.set_remote_description(now, offer)
            .map_err(|e| PhoneError::Offer(e.to_string()))?;
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: self.public.to_string(),
                port,
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(|e| PhoneError::Offer(e.to_string()))?;
        let init = RTCIceCandidate::from(&candidate)
            .to_json()
            .map_err(|e| PhoneError::Offer(e.to_string()))?;
        pc.add_local_candidate(init)
            .map_err(|e| PhoneError::Offer(e.to_string()))?;
        let answer = pc
            .create_answer(None)
            .map_err(|e| PhoneError::Offer(e.to_string()))?;
        pc.set_local_description(now, answer)
            .map_err(|e| PhoneError::Offer(e.to_string()))?;
        let answer = pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| PhoneError::Offer("no answer".into()))?;
        let agreed = agreed(&answer).ok_or_else(|| PhoneError::Offer("no PCMU or PCMA".into()))?;
        let socket = tokio::net::UdpSocket::from_std(socket).map_err(|_| PhoneError::NoPort)?;
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        let (to_task, rx) = mpsc::channel(LINK_BACKLOG);
        let old = self.live().insert(
            username.to_string(),
            Phone {
                generation,
                to_task,
                page: page.clone(),
                agreed,
                connected: None,
                rings: HashMap::new(),
            },
        );
        if old.is_some_and(|o| o.connected.is_some()) {
            self.desk.set_browser(username, None);
        }
        let task = PhoneTask {
            phones: Arc::clone(self),
            username: username.to_string(),
            generation,
            pc,
            sender,
            ssrc,
            socket,
            local,
            page,
            attached: None,
            peer: None,
            last_from: None,
            rtp_in: 0,
            outgoing: Continuity::default(),
        };
        tokio::spawn(task.run(rx));
        tracing::info!(secretary = username, %local, codec = ?agreed.codec, "browser phone negotiated");
        Ok((
            PhoneGuard {
                phones: Arc::clone(self),
                username: username.to_string(),
                generation,
            },
            answer,
        ))
    }

    /// The phone of this generation is gone: off the registry and the desk.
    fn forget(&self, username: &str, generation: u64) {
        let mut live = self.live();
        if live
            .get(username)
            .is_some_and(|p| p.generation == generation)
        {
            let phone = live.remove(username);
            drop(live);
            if phone.is_some_and(|p| p.connected.is_some()) {
                self.desk.set_browser(username, None);
            }
            tracing::info!(secretary = username, "browser phone off");
        }
    }

    /// ICE and DTLS completed with the browser at `peer`: the phone goes on her desk.
    fn connected(&self, username: &str, generation: u64, peer: SocketAddr) {
        let mut live = self.live();
        let Some(phone) = live
            .get_mut(username)
            .filter(|p| p.generation == generation)
        else {
            return;
        };
        phone.connected = Some(peer);
        let _ = phone.page.send(PhoneNote::Connected);
        drop(live);
        tracing::info!(secretary = username, %peer, "browser phone connected");
        self.desk.set_browser(
            username,
            Some(Binding {
                contact: contact(username),
                source: Peer {
                    transport: Transport::Udp,
                    addr: peer,
                },
                expires_at: u64::MAX,
            }),
        );
    }

    /// Rings her browser for `call` (`outgoing`: one she placed from a task); the ring's
    /// number, or None when her phone is not connected.
    pub fn ring(
        &self,
        username: &str,
        call: CallRowId,
        caller: &str,
        outgoing: bool,
    ) -> Option<u64> {
        let mut live = self.live();
        let phone = live.get_mut(username)?;
        phone.connected?;
        let ring = self.next.fetch_add(1, Ordering::Relaxed);
        phone.rings.insert(ring, call);
        phone
            .page
            .send(PhoneNote::Ring {
                ring,
                call,
                caller: caller.to_string(),
                outgoing,
            })
            .ok()?;
        Some(ring)
    }

    /// The ring stopped without her answer.
    pub fn cancel(&self, username: &str, ring: u64) {
        if let Some(phone) = self.live().get_mut(username)
            && phone.rings.remove(&ring).is_some()
        {
            let _ = phone.page.send(PhoneNote::Cancelled { ring });
        }
    }

    /// The call she answered is over (hung up by the other side, or ended).
    pub fn hang_up(&self, username: &str, ring: u64) {
        if let Some(phone) = self.live().get_mut(username)
            && phone.rings.remove(&ring).is_some()
        {
            let _ = phone.page.send(PhoneNote::HungUp { ring });
        }
    }

    /// Which call a ring on her phone belongs to (only her own rings).
    pub fn call_of(&self, username: &str, ring: u64) -> Option<CallRowId> {
        self.live().get(username)?.rings.get(&ring).copied()
    }

    /// Whether her browser phone is connected.
    pub fn is_connected(&self, username: &str) -> bool {
        self.live()
            .get(username)
            .is_some_and(|p| p.connected.is_some())
    }

    /// The engine's end of her phone for one call: its audio from now on goes to the
    /// returned link (the previous call's, if any, is cut).
    pub fn attach(&self, username: &str) -> Option<BrowserLink> {
        let live = self.live();
        let phone = live.get(username)?;
        let peer = phone.connected?;
        let (tx, from_phone) = std::sync::mpsc::sync_channel(LINK_BACKLOG);
        phone.to_task.try_send(ToPhone::Attach(tx)).ok()?;
        Some(BrowserLink {
            peer,
            codec: phone.agreed.codec,
            payload_type: phone.agreed.payload_type,
            telephone_event: phone.agreed.telephone_event,
            to_phone: phone.to_task.clone(),
            from_phone,
        })
    }
}

/// A peer connection as the server side of a browser phone: ICE-lite, DTLS server,
/// one audio track of ours (PCMU, PCMA, telephone-event), no interceptors (no NACK or
/// reports: G.711 at 20 ms needs neither).
fn peer_connection(
    ssrc: u32,
) -> Result<(RTCPeerConnection, RTCRtpSenderId), rtc::shared::error::Error> {
    let setting_engine = SettingEngineBuilder::new()
        .with_lite(true)
        .with_answering_dtls_role(RTCDtlsRole::Server)
        .build();
    let mut media_engine = MediaEngine::default();
    let codec = |mime: &str, payload_type: u8| RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate: 8000,
            channels: 1,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        },
        payload_type,
    };
    for c in [
        codec(MIME_TYPE_PCMU, 0),
        codec(MIME_TYPE_PCMA, 8),
        codec(MIME_TYPE_TELEPHONE_EVENT, 101),
    ] {
        media_engine.register_codec(c, RtpCodecKind::Audio)?;
    }
    let config = RTCConfigurationBuilder::new().build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(config)
        .with_setting_engine(setting_engine)
        .with_media_engine(media_engine)
        .with_interceptor_registry(Registry::new())
        .build(Instant::now())?;
    let track = MediaStreamTrack::new(
        "permanence".to_owned(),
        "permanence-audio".to_owned(),
        "permanence-audio".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: codec(MIME_TYPE_PCMU, 0).rtp_codec,
            ..Default::default()
        }],
    );
    let sender = pc.add_track(track)?;
    Ok((pc, sender))
}

/// The browser's offer with only what we answer in its audio line: PCMU, PCMA and
/// telephone-event at 8 kHz (the crate would otherwise pair our telephone-event with
/// Chrome's 48 kHz one, which G.711 cannot carry).
fn g711_only(offer: &str) -> String {
    let mut keep: Vec<String> = Vec::new();
    let mut drop: Vec<String> = Vec::new();
    for line in offer.lines() {
        if let Some(map) = line.trim_end().strip_prefix("a=rtpmap:")
            && let Some((pt, name)) = map.split_once(' ')
        {
            let name = encoding(name);
            if ["pcmu/8000", "pcma/8000", "telephone-event/8000"].contains(&name.as_str()) {
                keep.push(pt.to_string());
            } else {
                drop.push(pt.to_string());
            }
        }
    }
    let mut out = String::with_capacity(offer.len());
    for line in offer.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=audio ") {
            let mut parts = m.split_whitespace();
            let (port, proto) = (parts.next().unwrap_or("9"), parts.next().unwrap_or(""));
            let formats: Vec<&str> = parts
                .filter(|f| keep.iter().any(|k| k == f) || matches!(*f, "0" | "8"))
                .collect();
            out.push_str(&format!("m=audio {port} {proto} {}\r\n", formats.join(" ")));
            continue;
        }
        let about = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .and_then(|rest| rest.split([' ', ':']).next());
        if about.is_some_and(|pt| drop.iter().any(|d| d == pt)) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// An `a=rtpmap` encoding as compared here: lower case, without a channel count of one
/// (`PCMU/8000/1` is `PCMU/8000`: RFC 8866 §6.6 lets it be written or left out).
fn encoding(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    match name.strip_suffix("/1") {
        Some(mono) if mono.matches('/').count() == 1 => mono.to_string(),
        _ => name,
    }
}

/// The codec an answer agreed: its audio m-line's first PCMU or PCMA format, and
/// telephone-event at 8 kHz if there.
fn agreed(answer: &str) -> Option<Agreed> {
    let mut formats: Vec<u8> = Vec::new();
    let mut maps: HashMap<u8, String> = HashMap::new();
    for line in answer.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=audio ") {
            formats = m
                .split_whitespace()
                .skip(2)
                .filter_map(|f| f.parse().ok())
                .collect();
        } else if let Some(map) = line.strip_prefix("a=rtpmap:")
            && let Some((pt, name)) = map.split_once(' ')
            && let Ok(pt) = pt.parse::<u8>()
        {
            maps.insert(pt, encoding(name));
        }
    }
    let name = |pt: &u8| {
        maps.get(pt).cloned().or(match pt {
            0 => Some("pcmu/8000".into()),
            8 => Some("pcma/8000".into()),
            _ => None,
        })
    };
    let (codec, payload_type) = formats.iter().find_map(|pt| match name(pt)?.as_str() {
        "pcmu/8000" => Some((Codec::Pcmu, *pt)),
        "pcma/8000" => Some((Codec::Pcma, *pt)),
        _ => None,
    })?;
    let telephone_event = formats
        .iter()
        .find(|pt| name(pt).as_deref() == Some("telephone-event/8000"))
        .copied();
    Some(Agreed {
        codec,
        payload_type,
        telephone_event,
    })
}

/// One phone's task: the socket, the clock and the peer connection.
struct PhoneTask {
    phones: Arc<Phones>,
    username: String,
    generation: u64,
    pc: RTCPeerConnection,
    sender: RTCRtpSenderId,
    ssrc: u32,
    socket: tokio::net::UdpSocket,
    local: SocketAddr,
    page: mpsc::UnboundedSender<PhoneNote>,
    /// The call stream that hears the browser now.
    attached: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    /// Where the browser is, once connected.
    peer: Option<SocketAddr>,
    /// The source of the last datagram the peer connection read.
    last_from: Option<SocketAddr>,
    /// RTP packets read from the browser (for the logs).
    rtp_in: u64,
    /// Keeps what the browser receives one continuous RTP stream across calls.
    outgoing: Continuity,
}

/// One SSRC towards the browser for the peer connection's whole life, while each call's
/// stream numbers its packets from its own random start: without rebasing, the second
/// call's first packet jumps the sequence by up to 2^16 and the timestamp by up to 2^32,
/// and the browser's SRTP (its rollover guess) and jitter buffer drop that call's audio.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Continuity {
    /// The last packet sent: its sequence number, timestamp and when.
    last: Option<(u16, u32, Instant)>,
    /// What to add to the current call's sequence numbers and timestamps; none until its
    /// first packet.
    shift: Option<(u16, u32)>,
}

impl Continuity {
    /// A new call's stream starts: its first packet follows on from the last one sent.
    fn new_call(&mut self) {
        self.shift = None;
    }

    /// The (sequence number, timestamp) to send a packet of the current call with.
    fn rebase(&mut self, seq: u16, ts: u32, now: Instant) -> (u16, u32) {
        let (seq_shift, ts_shift) = *self.shift.get_or_insert_with(|| match self.last {
            None => (0, 0),
            Some((last_seq, last_ts, at)) => {
                // The timestamp moves on by the time that passed (8 kHz), at least one
                // 20 ms packet, so the browser plays the gap as silence.
                let elapsed = u32::try_from(now.duration_since(at).as_millis() * 8)
                    .unwrap_or(u32::MAX / 2)
                    .max(160);
                (
                    last_seq.wrapping_add(1).wrapping_sub(seq),
                    last_ts.wrapping_add(elapsed).wrapping_sub(ts),
                )
            }
        });
        let out = (seq.wrapping_add(seq_shift), ts.wrapping_add(ts_shift));
        self.last = Some((out.0, out.1, now));
        out
    }
}

impl PhoneTask {
    async fn run(mut self, mut rx: mpsc::Receiver<ToPhone>) {
        let mut buf = vec![0u8; 2048];
        let started = Instant::now();
        let mut last_heard = started;
        loop {
            if !self.drain() {
                break;
            }
            if self.peer.is_none() && started.elapsed() > CONNECT_TIMEOUT {
                tracing::warn!(secretary = %self.username, "browser phone did not connect");
                break;
            }
            if self.peer.is_some() && last_heard.elapsed() > SILENCE_LIMIT {
                // What waits in the socket counts: after a stall of this process (a
                // loaded machine, a debugger) the browser's datagrams are all queued.
                match self.socket.try_recv_from(&mut buf) {
                    Ok((n, from)) => {
                        last_heard = Instant::now();
                        self.on_datagram(&buf[..n], from);
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!(secretary = %self.username, "browser phone went silent");
                        break;
                    }
                }
            }
            let wake = self
                .pc
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
                .min(Instant::now() + Duration::from_secs(1));
            // Datagrams first: the connection's timers must not judge the browser gone
            // while its checks wait unread (after a stall, they are all queued at once).
            tokio::select! {
                biased;
                read = self.socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = read else { continue };
                    last_heard = Instant::now();
                    self.on_datagram(&buf[..n], from);
                }
                command = rx.recv() => match command {
                    None => break,
                    Some(ToPhone::Rtp(bytes)) => self.send_rtp(&bytes),
                    Some(ToPhone::Attach(tx)) => {
                        tracing::debug!(secretary = %self.username, "browser phone: attached to a call");
                        self.attached = Some(tx);
                        self.outgoing.new_call();
                    }
                },
                () = tokio::time::sleep_until(wake.into()) => {
                    let _ = self.pc.handle_timeout(Instant::now());
                }
            }
        }
        let _ = self.pc.close();
        self.drain();
        let _ = self.page.send(PhoneNote::Lost);
        self.phones.forget(&self.username, self.generation);
    }

    /// A datagram from the browser (or anyone: the connection checks it), to the
    /// connection.
    fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        if self.last_from.is_none() {
            tracing::debug!(secretary = %self.username, %from, "browser phone: first datagram");
        }
        self.last_from = Some(from);
        let _ = self.pc.handle_read(TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(datagram),
        });
    }

    /// Plain RTP from a call: our SSRC, then SRTP and out on the selected pair.
    fn send_rtp(&mut self, bytes: &[u8]) {
        if self.peer.is_none() {
            return;
        }
        let Ok(mut packet) = rtc::rtp::Packet::unmarshal(&mut &bytes[..]) else {
            return;
        };
        packet.header.ssrc = self.ssrc;
        let now = Instant::now();
        (packet.header.sequence_number, packet.header.timestamp) =
            self.outgoing
                .rebase(packet.header.sequence_number, packet.header.timestamp, now);
        if let Some(mut sender) = self.pc.rtp_sender(self.sender) {
            let _ = sender.write_rtp(now, packet);
        }
    }

    /// Sends what the peer connection wrote, takes its events and the browser's RTP;
    /// false once the connection is over.
    fn drain(&mut self) -> bool {
        while let Some(out) = self.pc.poll_write() {
            if let Err(e) = self
                .socket
                .try_send_to(&out.message, out.transport.peer_addr)
            {
                tracing::trace!(error = %e, "browser phone: send failed");
            }
        }
        let mut alive = true;
        while let Some(event) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                tracing::debug!(secretary = %self.username, %state, "browser phone state");
                match state {
                    RTCPeerConnectionState::Connected => {
                        // DTLS runs on the selected pair only: the datagram that
                        // completed it came from the address that completed ICE.
                        // Connected again after a `disconnected` spell from the same
                        // address: nothing changed for the desk or the page.
                        if let Some(peer) = self.last_from
                            && self.peer != Some(peer)
                        {
                            self.peer = Some(peer);
                            self.phones.connected(&self.username, self.generation, peer);
                        }
                    }
                    // ICE says `disconnected` after 5 s without a check, which a stall of
                    // this process also causes; the browser is judged gone by SILENCE_LIMIT
                    // instead, or when ICE gives up (`failed`).
                    RTCPeerConnectionState::Disconnected => {}
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        alive = false;
                    }
                    _ => {}
                }
            }
        }
        while let Some(message) = self.pc.poll_read() {
            if matches!(message.message, RTCMessage::RtpPacket(..)) {
                self.rtp_in = self.rtp_in.wrapping_add(1);
                if self.rtp_in % 500 == 1 {
                    tracing::debug!(secretary = %self.username, packets = self.rtp_in, attached = self.attached.is_some(), "browser phone: RTP from the browser");
                }
            }
            if let RTCMessage::RtpPacket(_, packet) = message.message
                && let Some(tx) = &self.attached
            {
                let Ok(bytes) = packet.marshal() else {
                    continue;
                };
                if let Err(std::sync::mpsc::TrySendError::Disconnected(_)) =
                    tx.try_send(bytes.to_vec())
                {
                    self.attached = None;
                }
            }
        }
        alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_names_the_codec_and_telephone_event() {
        let answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8 126\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\n";
        assert_eq!(
            agreed(answer),
            Some(Agreed {
                codec: Codec::Pcmu,
                payload_type: 0,
                telephone_event: Some(126)
            })
        );
        let pcma = "m=audio 9 UDP/TLS/RTP/SAVPF 8\r\na=rtpmap:8 PCMA/8000\r\n";
        assert_eq!(agreed(pcma).map(|a| a.codec), Some(Codec::Pcma));
        assert_eq!(
            agreed("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"),
            None
        );
        assert_eq!(agreed(""), None);
    }

    #[test]
    fn the_offer_keeps_only_g711_and_telephone_event_at_8_khz() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\na=rtcp-mux\r\n";
        let kept = g711_only(offer);
        assert!(
            kept.contains("m=audio 9 UDP/TLS/RTP/SAVPF 0 8 126\r\n"),
            "{kept}"
        );
        assert!(!kept.contains("opus") && !kept.contains("111") && !kept.contains("/48000"));
        assert!(
            kept.contains("a=rtcp-mux\r\n") && kept.contains("a=rtpmap:126 telephone-event/8000")
        );
    }

    #[test]
    fn the_browser_hears_one_continuous_stream_across_calls() {
        let start = Instant::now();
        let mut out = Continuity::default();
        // The first call goes out as the engine numbered it.
        assert_eq!(out.rebase(100, 5000, start), (100, 5000));
        assert_eq!(
            out.rebase(101, 5160, start + Duration::from_millis(20)),
            (101, 5160)
        );
        // The second call's stream starts anywhere; 2 s later it follows on: the next
        // sequence number, the timestamp 2 s (16,000 samples) on.
        out.new_call();
        let later = start + Duration::from_millis(2020);
        assert_eq!(
            out.rebase(65530, 4_000_000_000, later),
            (102, 5160 + 16_000)
        );
        // ... and keeps its own spacing, wrapping where the engine's numbers wrap.
        assert_eq!(
            out.rebase(65535, 4_000_000_800, later + Duration::from_millis(100)),
            (107, 5160 + 16_800)
        );
        assert_eq!(
            out.rebase(0, 4_000_000_960, later + Duration::from_millis(120)),
            (108, 5160 + 16_960)
        );
        // A call answered at once after the last still moves the clock one packet on.
        out.new_call();
        assert_eq!(
            out.rebase(7, 7, later + Duration::from_millis(120)),
            (109, 5160 + 16_960 + 160)
        );
    }

    #[test]
    fn a_channel_count_of_one_written_out_is_the_same_codec() {
        // RFC 8866 §6.6: the channel count may be written even when it is one.
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8 101\r\na=rtpmap:0 PCMU/8000/1\r\na=rtpmap:8 PCMA/8000/1\r\na=rtpmap:101 telephone-event/8000/1\r\n";
        let kept = g711_only(offer);
        assert!(
            kept.contains("m=audio 9 UDP/TLS/RTP/SAVPF 0 8 101\r\n")
                && kept.contains("a=rtpmap:0 PCMU/8000/1\r\n")
                && kept.contains("a=rtpmap:101 telephone-event/8000/1\r\n"),
            "{kept}"
        );
        assert_eq!(
            agreed(offer),
            Some(Agreed {
                codec: Codec::Pcmu,
                payload_type: 0,
                telephone_event: Some(101)
            })
        );
    }

    #[test]
    fn a_browser_contact_is_not_a_sip_uri() {
        assert!(is_contact(&contact("alice")));
        assert!(!is_contact("sip:alice@10.0.0.5"));
    }
}
