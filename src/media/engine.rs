//! The RTP engine: one thread paces every outgoing stream on a 4-slot wheel of 5 ms ticks.
//!
//! A stream is placed in the slot after the one being processed when it opens and is
//! served every 20 ms from then on, so its packets keep an exact 20 ms spacing from one
//! absolute clock (`epoch + tick · 5 ms`): no per-call timers, no drift under load, and the
//! load of many calls spreads over the slots. 5 ms rather than 1 ms ticks: a fifth of the
//! wake-ups for the same spacing, which matters on a 2-core machine. The visits also read
//! the stream's socket until the caller's first RTP packet says where it really is
//! (symmetric RTP for callers behind NAT).

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::latch::{Latch, Verdict};
use super::sound::Sound;
use crate::rtp::{FRAME_SAMPLES, Packetizer};
use crate::sdp::Codec;

/// Slots in the wheel: the 20 ms packet interval in ticks.
const SLOTS: u64 = 4;
/// One tick, in microseconds.
const TICK_MICROS: u64 = 5_000;
/// Beyond this lateness the engine stops catching up and re-anchors its clock (a stall
/// of the whole process, e.g. suspended): bursting seconds of audio helps no one.
const MAX_CATCH_UP: Duration = Duration::from_millis(200);
/// Largest datagram read from a peer; the kernel truncates larger ones (G.711 at 20 ms is 172).
const READ_BUFFER: usize = 2048;
/// Datagrams read per stream per visit; a caller sends one per 20 ms.
const MAX_READS_PER_VISIT: usize = 16;
/// Until latched, the socket is read every this many visits (100 ms): soon enough to
/// follow a caller behind NAT, without a read syscall per packet sent.
const LATCH_POLL_VISITS: u32 = 5;

/// Identifies a stream in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(u64);

/// What the engine tells a call about its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// The sound asked for has been sent completely.
    PlaybackDone,
    /// The first RTP packet from the peer came from this address; we now send there.
    Latched(SocketAddr),
    /// A keypress (RFC 4733), while listening.
    Digit(crate::dtmf::Digit),
    /// 20 ms (or what the packet held) of the caller's audio, decoded, while recording.
    Audio(Vec<i16>),
    /// A bridged stream received no RTP for the bridge's timeout (the phone vanished).
    RtpTimeout,
}

enum Command {
    Open(Box<Stream>),
    Play {
        id: StreamId,
        sound: Arc<Sound>,
        times: u32,
        then: Option<Arc<Sound>>,
    },
    Stop {
        id: StreamId,
    },
    Remote {
        id: StreamId,
        addr: SocketAddr,
    },
    Codec {
        id: StreamId,
        codec: Codec,
        payload_type: u8,
    },
    Listen {
        id: StreamId,
        digits: bool,
        audio: bool,
    },
    Close {
        id: StreamId,
    },
    Bridge {
        a: StreamId,
        b: StreamId,
        timeout: Option<Duration>,
    },
    Hold {
        id: StreamId,
        music: Option<Arc<Sound>>,
    },
}

/// Handle to the engine thread, shared by every call.
#[derive(Clone)]
pub struct MediaHandle {
    tx: mpsc::Sender<Command>,
    inner: Arc<Shared>,
}

struct Shared {
    next_id: AtomicU64,
    lag_micros: AtomicU64,
    relayed: AtomicU64,
    port_cursor: AtomicU32,
    ip: IpAddr,
    port_min: u16,
    port_max: u16,
}

/// Parameters of a new stream.
pub struct StreamSpec {
    /// Our bound RTP socket.
    pub socket: UdpSocket,
    /// Where to send until the peer's packets have proved where it is (`latch`).
    pub remote: SocketAddr,
    /// Where the call's SIP comes from: RTP from that IP may be the peer behind NAT.
    pub signalling: IpAddr,
    /// The negotiated codec.
    pub codec: Codec,
    /// Numbering state (SSRC, initial sequence and timestamp, payload type).
    pub packetizer: Packetizer,
    /// The peer's telephone-event payload type, if negotiated.
    pub telephone_event: Option<u8>,
    /// Where to report [`MediaEvent`]s.
    pub events: UnboundedSender<(StreamId, MediaEvent)>,
    /// SRTP keys, when the stream is encrypted (a phone on TLS with SDES keys).
    pub srtp: Option<crate::srtp::Srtp>,
}

impl StreamSpec {
    /// A stream for what SDP agreed with a peer, numbered from a random SSRC, sequence
    /// number and timestamp (RFC 3550 §5.1).
    pub fn negotiated(
        socket: UdpSocket,
        negotiated: &crate::sdp::Negotiated,
        signalling: IpAddr,
        events: UnboundedSender<(StreamId, MediaEvent)>,
    ) -> StreamSpec {
        StreamSpec {
            socket,
            remote: negotiated.remote_rtp,
            signalling,
            codec: negotiated.codec,
            packetizer: Packetizer::new(
                fastrand::u32(..),
                negotiated.payload_type,
                fastrand::u16(..),
                fastrand::u32(..),
            ),
            telephone_event: negotiated.telephone_event,
            events,
            srtp: None,
        }
    }

    /// The same stream, encrypted with these SRTP contexts.
    pub fn encrypted(self, srtp: Option<crate::srtp::Srtp>) -> StreamSpec {
        StreamSpec { srtp, ..self }
    }
}

impl MediaHandle {
    /// Starts the engine thread. RTP sockets bind on `ip` within `[port_min, port_max]`.
    pub fn start(ip: IpAddr, port_min: u16, port_max: u16) -> std::io::Result<MediaHandle> {
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Shared {
            next_id: AtomicU64::new(1),
            lag_micros: AtomicU64::new(0),
            relayed: AtomicU64::new(0),
            port_cursor: AtomicU32::new(0),
            ip,
            port_min,
            port_max,
        });
        let shared = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("rtp-engine".into())
            .spawn(move || run(rx, &shared))?;
        Ok(MediaHandle { tx, inner })
    }

    /// Binds an RTP socket on the next free even port of the range.
    pub fn bind(&self) -> std::io::Result<(UdpSocket, u16)> {
        let s = &self.inner;
        // Even ports only (RFC 3550 §11: RTP on even, RTCP on the next odd one).
        let first = s.port_min + (s.port_min & 1);
        let span = u32::from(s.port_max.saturating_sub(first)) / 2 + 1;
        for _ in 0..span {
            let n = s.port_cursor.fetch_add(1, Ordering::Relaxed) % span;
            let Ok(port) = u16::try_from(u32::from(first) + n * 2) else {
                continue;
            };
            match UdpSocket::bind((s.ip, port)) {
                Ok(socket) => {
                    socket.set_nonblocking(true)?;
                    return Ok((socket, port));
                }
                Err(e) if e.kind() == ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::new(
            ErrorKind::AddrInUse,
            "no free RTP port in the configured range",
        ))
    }

    /// The address RTP sockets bind to.
    pub fn ip(&self) -> IpAddr {
        self.inner.ip
    }

    /// How late the engine runs, smoothed over the last ticks: the admission signal for overload.
    pub fn lag(&self) -> Duration {
        Duration::from_micros(self.inner.lag_micros.load(Ordering::Relaxed))
    }

    /// RTP packets relayed between bridged streams since start (both directions).
    pub fn relayed(&self) -> u64 {
        self.inner.relayed.load(Ordering::Relaxed)
    }

    /// Hands a stream to the engine.
    pub fn open(&self, spec: StreamSpec) -> StreamId {
        let io = StreamIo::Rtp(RtpIo {
            socket: spec.socket,
            srtp: spec.srtp,
        });
        self.open_io(
            io,
            spec.remote,
            spec.signalling,
            spec.packetizer,
            spec.codec,
            spec.telephone_event,
            spec.events,
        )
    }

    /// Hands the engine a browser phone's audio for one call: the stream is paced,
    /// listened to and bridged like an RTP phone's, its packets going through the phone's
    /// peer connection (`media::webrtc`) instead of a socket of ours.
    pub fn open_browser(
        &self,
        link: super::webrtc::BrowserLink,
        events: UnboundedSender<(StreamId, MediaEvent)>,
    ) -> StreamId {
        let packetizer = Packetizer::new(
            fastrand::u32(..),
            link.payload_type,
            fastrand::u16(..),
            fastrand::u32(..),
        );
        let (peer, codec, telephone_event) = (link.peer, link.codec, link.telephone_event);
        let io = StreamIo::Browser(BrowserIo { link });
        self.open_io(
            io,
            peer,
            peer.ip(),
            packetizer,
            codec,
            telephone_event,
            events,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn open_io(
        &self,
        io: StreamIo,
        remote: SocketAddr,
        signalling: IpAddr,
        packetizer: Packetizer,
        codec: Codec,
        telephone_event: Option<u8>,
        events: UnboundedSender<(StreamId, MediaEvent)>,
    ) -> StreamId {
        let id = StreamId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let stream = Stream {
            id,
            io,
            remote,
            latch: Latch::new(remote, signalling),
            dropped: 0,
            visits: 0,
            listen_digits: false,
            listen_audio: false,
            telephone_event,
            payload_type: packetizer.payload_type(),
            dtmf: crate::dtmf::EventReceiver::default(),
            codec,
            packetizer,
            playing: None,
            events,
            bridge: None,
        };
        self.send(Command::Open(Box::new(stream)));
        id
    }

    /// Plays a sound `times` times, replacing whatever was playing.
    pub fn play(&self, id: StreamId, sound: Arc<Sound>, times: u32) {
        self.send(Command::Play {
            id,
            sound,
            times,
            then: None,
        });
    }

    /// Plays `first` once, then `then` in a loop (an announcement, then the hold music
    /// again), replacing whatever was playing. No `PlaybackDone` in between.
    pub fn play_then(&self, id: StreamId, first: Arc<Sound>, then: Arc<Sound>) {
        self.send(Command::Play {
            id,
            sound: first,
            times: 1,
            then: Some(then),
        });
    }

    /// Stops playing (the stream stays open).
    pub fn stop(&self, id: StreamId) {
        self.send(Command::Stop { id });
    }

    /// Changes where the stream sends (a re-INVITE moved the peer), unless latched.
    pub fn set_remote(&self, id: StreamId, addr: SocketAddr) {
        self.send(Command::Remote { id, addr });
    }

    /// Switches codec (a re-INVITE changed it); numbering continues.
    pub fn set_codec(&self, id: StreamId, codec: Codec, payload_type: u8) {
        self.send(Command::Codec {
            id,
            codec,
            payload_type,
        });
    }

    /// Reads the caller's packets every 20 ms and reports keypresses (`digits`) and
    /// decoded audio (`audio`). Off, the socket is only read until latched: most calls
    /// never need the caller's packets, and reading them costs a syscall each.
    pub fn listen(&self, id: StreamId, digits: bool, audio: bool) {
        self.send(Command::Listen { id, digits, audio });
    }

    /// Relays RTP between two streams in both directions, from the next tick: each
    /// packet goes out at once with the other stream's SSRC and numbering, its payload
    /// converted when the two legs use different laws (PCMU↔PCMA), telephone-events passed
    /// on when both legs negotiated them. Sounds stop. With a `timeout`, a side that
    /// sends nothing that long reports [`MediaEvent::RtpTimeout`].
    pub fn bridge(&self, a: StreamId, b: StreamId, timeout: Option<Duration>) {
        self.send(Command::Bridge { a, b, timeout });
    }

    /// Puts a bridged stream's peer on hold (`music`: it hears that in a loop, and neither
    /// side hears the other) or takes it off hold (`None`: the bridge relays again).
    pub fn hold(&self, id: StreamId, music: Option<Arc<Sound>>) {
        self.send(Command::Hold { id, music });
    }

    /// Closes the stream and its socket.
    pub fn close(&self, id: StreamId) {
        self.send(Command::Close { id });
    }

    fn send(&self, command: Command) {
        if self.tx.send(command).is_err() {
            tracing::error!("RTP engine has stopped");
        }
    }
}

struct Playing {
    sound: Arc<Sound>,
    position: usize,
    times_left: u32,
    /// Looped once `sound` is done.
    then: Option<Arc<Sound>>,
}

struct Stream {
    id: StreamId,
    io: StreamIo,
    remote: SocketAddr,
    latch: Latch,
    /// Packets from strangers (neither the peer nor a candidate for it), dropped.
    dropped: u64,
    visits: u32,
    listen_digits: bool,
    listen_audio: bool,
    telephone_event: Option<u8>,
    payload_type: u8,
    dtmf: crate::dtmf::EventReceiver,
    codec: Codec,
    packetizer: Packetizer,
    playing: Option<Playing>,
    events: UnboundedSender<(StreamId, MediaEvent)>,
    bridge: Option<Bridge>,
}

/// Where a stream's packets go out and come in, protected as its leg requires: the
/// engine's one seam between a stream (pacing, latching, listening, bridging, which all see
/// plain RTP) and its transport. Matched per packet: no allocation, no indirect call.
///
/// A browser (WebRTC) leg goes here as a second variant, holding its ICE agent and
/// DTLS-SRTP context behind the same `send` and `recv` (its spec carrying ICE credentials
/// and a DTLS fingerprint instead of a bound socket); the rest of the engine stays as is.
// The RTP variant (its SRTP contexts inline) is the common case: boxing it would add a
// pointer chase per packet to spare a few hundred bytes per browser stream.
#[allow(clippy::large_enum_variant)]
enum StreamIo {
    /// RTP on one of our UDP sockets, SRTP with SDES keys when the stream is encrypted.
    Rtp(RtpIo),
    /// A browser phone: plain RTP handed to and taken from its peer connection's task,
    /// which owns the socket, ICE and DTLS-SRTP.
    Browser(BrowserIo),
}

/// A browser leg's transport: the channels to the secretary's peer connection.
struct BrowserIo {
    link: super::webrtc::BrowserLink,
}

impl BrowserIo {
    fn send(&mut self, packet: &[u8]) {
        self.link.send(packet);
    }

    fn recv(&mut self, buf: &mut [u8]) -> Inbound {
        match self.link.recv(buf) {
            Some(len) => Inbound::Packet {
                len,
                from: self.link.peer,
            },
            None => Inbound::Empty,
        }
    }
}

/// An RTP leg's transport: our UDP socket, and its SRTP contexts when encrypted.
struct RtpIo {
    socket: UdpSocket,
    srtp: Option<crate::srtp::Srtp>,
}

/// What one read from a stream's transport gave.
enum Inbound {
    /// A plain RTP packet, its length at the start of the buffer, from this address.
    Packet { len: usize, from: SocketAddr },
    /// A datagram that is not the peer's (it failed SRTP authentication).
    Refused,
    /// Nothing more to read now.
    Empty,
}

impl StreamIo {
    /// Sends one packet to the peer, encrypted when the stream is.
    fn send(&mut self, remote: SocketAddr, packet: &mut Vec<u8>) {
        match self {
            StreamIo::Rtp(rtp) => rtp.send(remote, packet),
            StreamIo::Browser(browser) => browser.send(packet),
        }
    }

    /// Reads the next packet into `buf`, without blocking.
    fn recv(&mut self, buf: &mut [u8]) -> Inbound {
        match self {
            StreamIo::Rtp(rtp) => rtp.recv(buf),
            StreamIo::Browser(browser) => browser.recv(buf),
        }
    }
}

impl RtpIo {
    fn send(&mut self, remote: SocketAddr, packet: &mut Vec<u8>) {
        if let Some(srtp) = &mut self.srtp {
            srtp.send.protect(packet);
        }
        if let Err(e) = self.socket.send_to(packet, remote) {
            tracing::trace!(error = %e, %remote, "RTP send failed");
        }
    }

    /// An encrypted stream hears only what authenticates with the peer's key.
    fn recv(&mut self, buf: &mut [u8]) -> Inbound {
        let Ok((n, from)) = self.socket.recv_from(buf) else {
            return Inbound::Empty;
        };
        let len = match &mut self.srtp {
            Some(srtp) => match srtp.recv.unprotect(&mut buf[..n]) {
                Ok(len) => len,
                Err(_) => return Inbound::Refused,
            },
            None => n,
        };
        Inbound::Packet { len, from }
    }
}

/// One side of a bridge, held by each of the two streams.
struct Bridge {
    /// The other stream: what we read goes out there.
    to: StreamId,
    /// For packets arriving *into* this stream from the other one: the sender's SSRC and
    /// the offset from its timestamps to ours (set on its first packet).
    timing: Option<(u32, u32)>,
    /// Longest silence tolerated, and when we last heard from our peer.
    timeout: Option<Duration>,
    last_heard: Instant,
    timed_out: bool,
    /// On hold: nothing is relayed either way (the held side hears music).
    held: bool,
}

/// What a bridged stream read in one visit, to send on the other stream: payloads in one
/// buffer, reused from tick to tick.
#[derive(Default)]
struct Relayed {
    bytes: Vec<u8>,
    packets: Vec<RelayedPacket>,
}

struct RelayedPacket {
    event: bool,
    marker: bool,
    ssrc: u32,
    timestamp: u32,
    range: std::ops::Range<usize>,
}

impl Stream {
    /// One 20 ms visit: learn the peer's address, then send the next frame if playing.
    /// A bridged stream reads everything and leaves it in `relayed` for the other side.
    fn visit(
        &mut self,
        packet: &mut Vec<u8>,
        scratch: &mut [u8],
        relayed: &mut Relayed,
        now: Instant,
    ) {
        self.visits = self.visits.wrapping_add(1);
        let listening = self.listen_digits || self.listen_audio || self.bridge.is_some();
        if listening || (!self.latch.is_latched() && self.visits % LATCH_POLL_VISITS == 1) {
            self.read(scratch, relayed, now);
        }
        if let Some(b) = &mut self.bridge
            && let Some(limit) = b.timeout
            && !b.timed_out
            && now.saturating_duration_since(b.last_heard) > limit
        {
            b.timed_out = true;
            let _ = self.events.send((self.id, MediaEvent::RtpTimeout));
        }
        if self.bridge.is_some() && self.playing.is_none() {
            // The relay numbers what it sends; nothing to account for here.
            return;
        }
        self.send_next(packet);
    }

    /// Sends what the other side of the bridge read, in this stream's numbering and law.
    fn relay_in(
        &mut self,
        from_codec: Codec,
        from_event: Option<u8>,
        relayed: &Relayed,
        packet: &mut Vec<u8>,
    ) {
        let Some(bridge) = &mut self.bridge else {
            return;
        };
        if bridge.held {
            return;
        }
        // As large as any datagram we read: every payload can be converted.
        let mut converted = [0u8; READ_BUFFER];
        for p in &relayed.packets {
            let payload = &relayed.bytes[p.range.clone()];
            let (payload_type, body, samples): (u8, &[u8], u32) = if p.event {
                match (from_event, self.telephone_event) {
                    (Some(_), Some(ours)) => (ours, payload, 0),
                    _ => continue,
                }
            } else if from_codec == self.codec {
                (self.payload_type, payload, payload.len() as u32)
            } else {
                let out = &mut converted[..payload.len()];
                for (o, &b) in out.iter_mut().zip(payload) {
                    *o = transcode(from_codec, self.codec, b);
                }
                (self.payload_type, &*out, payload.len() as u32)
            };
            let offset = match bridge.timing {
                Some((ssrc, offset)) if ssrc == p.ssrc => offset,
                _ => {
                    // A new sender (or the first packet): continue our own timeline.
                    let offset = self.packetizer.timestamp().wrapping_sub(p.timestamp);
                    bridge.timing = Some((p.ssrc, offset));
                    offset
                }
            };
            self.packetizer.relay(
                payload_type,
                p.marker,
                p.timestamp.wrapping_add(offset),
                samples,
                body,
                packet,
            );
            self.io.send(self.remote, packet);
        }
    }

    /// Drains the socket; the `latch` decides which packets are the peer's and when its
    /// address becomes where we send. Once latched and unless listening or bridged, nothing
    /// reads the socket: the kernel drops what overflows.
    fn read(&mut self, scratch: &mut [u8], relayed: &mut Relayed, now: Instant) {
        for _ in 0..MAX_READS_PER_VISIT {
            let (n, from) = match self.io.recv(scratch) {
                Inbound::Packet { len, from } => (len, from),
                Inbound::Refused => {
                    self.dropped += 1;
                    continue;
                }
                Inbound::Empty => break,
            };
            // One parse per packet, for latching, listening and relaying alike.
            let Some(rtp) = crate::rtp::parse(&scratch[..n]) else {
                continue;
            };
            match self.latch.on_packet(from, rtp.ssrc, rtp.seq) {
                Verdict::Accept => {}
                Verdict::Latched(at) => {
                    self.remote = at;
                    let _ = self.events.send((self.id, MediaEvent::Latched(at)));
                }
                Verdict::Drop => {
                    self.dropped += 1;
                    continue;
                }
            }
            self.received(&rtp);
            if self.bridge.is_some() {
                self.keep_for_relay(&rtp, relayed, now);
            }
        }
    }

    fn keep_for_relay(&mut self, rtp: &crate::rtp::Received, relayed: &mut Relayed, now: Instant) {
        let event = Some(rtp.payload_type) == self.telephone_event;
        if !event && rtp.payload_type != self.payload_type {
            // Comfort noise or a codec we did not agree on: not ours to pass on.
            return;
        }
        if let Some(b) = &mut self.bridge {
            b.last_heard = now;
        }
        let start = relayed.bytes.len();
        relayed.bytes.extend_from_slice(rtp.payload);
        relayed.packets.push(RelayedPacket {
            event,
            marker: rtp.marker,
            ssrc: rtp.ssrc,
            timestamp: rtp.timestamp,
            range: start..relayed.bytes.len(),
        });
    }

    /// Keypresses and audio from one of the caller's packets, when listening.
    fn received(&mut self, rtp: &crate::rtp::Received) {
        if self.listen_digits && Some(rtp.payload_type) == self.telephone_event {
            if let Some(digit) = self.dtmf.on_packet(rtp.timestamp, rtp.payload) {
                let _ = self.events.send((self.id, MediaEvent::Digit(digit)));
            }
        } else if self.listen_audio && rtp.payload_type == self.payload_type {
            let decode = match self.codec {
                Codec::Pcmu => crate::g711::ulaw_to_linear,
                Codec::Pcma => crate::g711::alaw_to_linear,
            };
            let samples = rtp.payload.iter().map(|&b| decode(b)).collect();
            let _ = self.events.send((self.id, MediaEvent::Audio(samples)));
        }
    }

    fn send_next(&mut self, packet: &mut Vec<u8>) {
        let Some(playing) = &mut self.playing else {
            self.packetizer.skip(1);
            return;
        };
        let audio = playing.sound.encoded(self.codec);
        let frame = FRAME_SAMPLES as usize;
        let end = (playing.position + frame).min(audio.len());
        let chunk = &audio[playing.position..end];
        if chunk.len() == frame {
            self.packetizer.packet(chunk, packet);
        } else {
            // Pad the last frame with silence in the stream's law.
            let mut padded = [silence(self.codec); 160];
            padded[..chunk.len()].copy_from_slice(chunk);
            self.packetizer.packet(&padded, packet);
        }
        self.io.send(self.remote, packet);
        playing.position = end;
        if playing.position >= audio.len() {
            playing.times_left = playing.times_left.saturating_sub(1);
            if playing.times_left == 0
                && let Some(then) = playing.then.take()
            {
                playing.sound = then;
                playing.position = 0;
                playing.times_left = u32::MAX;
            } else if playing.times_left == 0 {
                self.playing = None;
                let _ = self.events.send((self.id, MediaEvent::PlaybackDone));
            } else {
                playing.position = 0;
            }
        }
    }
}

/// One G.711 byte from one law to the other (through linear, as G.711 Appendix
/// tables do).
fn transcode(from: Codec, to: Codec, byte: u8) -> u8 {
    match (from, to) {
        (Codec::Pcmu, Codec::Pcma) => {
            crate::g711::linear_to_alaw(crate::g711::ulaw_to_linear(byte))
        }
        (Codec::Pcma, Codec::Pcmu) => {
            crate::g711::linear_to_ulaw(crate::g711::alaw_to_linear(byte))
        }
        _ => byte,
    }
}

fn silence(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => 0xFF,
        Codec::Pcma => 0xD5,
    }
}

/// The engine's state: streams by id and the wheel of slots.
struct Wheel {
    streams: std::collections::HashMap<StreamId, (Stream, usize)>,
    slots: Vec<Vec<StreamId>>,
}

impl Wheel {
    fn apply(&mut self, command: Command, current_tick: u64) {
        match command {
            Command::Open(stream) => {
                // Serve it on the next tick, then every 20 ms.
                let slot = ((current_tick + 1) % SLOTS) as usize;
                self.slots[slot].push(stream.id);
                self.streams.insert(stream.id, (*stream, slot));
            }
            Command::Play {
                id,
                sound,
                times,
                then,
            } => {
                if let Some((s, _)) = self.streams.get_mut(&id) {
                    s.playing = Some(Playing {
                        sound,
                        position: 0,
                        times_left: times.max(1),
                        then,
                    });
                }
            }
            Command::Stop { id } => {
                if let Some((s, _)) = self.streams.get_mut(&id) {
                    s.playing = None;
                }
            }
            Command::Remote { id, addr } => {
                if let Some((s, _)) = self.streams.get_mut(&id) {
                    s.latch.signalled(addr);
                    // A latched peer stays where its packets come from (its SDP may name a
                    // private address behind NAT).
                    if !s.latch.is_latched() {
                        s.remote = addr;
                    }
                }
            }
            Command::Codec {
                id,
                codec,
                payload_type,
            } => {
                if let Some((s, _)) = self.streams.get_mut(&id) {
                    s.codec = codec;
                    s.payload_type = payload_type;
                    s.packetizer.set_payload_type(payload_type);
                }
            }
            Command::Listen { id, digits, audio } => {
                if let Some((s, _)) = self.streams.get_mut(&id) {
                    s.listen_digits = digits;
                    s.listen_audio = audio;
                }
            }
            Command::Close { id } => self.close(id),
            Command::Hold { id, music } => self.hold(id, music),
            Command::Bridge { a, b, timeout } => self.bridge(a, b, timeout),
        }
    }

    /// Forgets a stream, and unbridges its peer so that it does not relay into nothing.
    fn close(&mut self, id: StreamId) {
        if let Some((stream, slot)) = self.streams.remove(&id) {
            self.slots[slot].retain(|s| *s != id);
            if stream.dropped > 0 {
                tracing::info!(
                    dropped = stream.dropped,
                    peer = %stream.remote,
                    "RTP from other sources than the call's peer was dropped"
                );
            }
            if let Some(b) = stream.bridge
                && let Some((other, _)) = self.streams.get_mut(&b.to)
            {
                other.bridge = None;
            }
        }
    }

    /// Holds or resumes a bridge: both sides stop (or start again) relaying; the held
    /// stream plays `music` in a loop meanwhile.
    fn hold(&mut self, id: StreamId, music: Option<Arc<Sound>>) {
        let held = music.is_some();
        let Some(other) = self
            .streams
            .get(&id)
            .and_then(|(s, _)| s.bridge.as_ref().map(|b| b.to))
        else {
            return;
        };
        for this in [id, other] {
            if let Some((s, _)) = self.streams.get_mut(&this)
                && let Some(b) = &mut s.bridge
            {
                b.held = held;
            }
        }
        if let Some((s, _)) = self.streams.get_mut(&id) {
            s.playing = music.map(|sound| Playing {
                sound,
                position: 0,
                times_left: u32::MAX,
                then: None,
            });
        }
    }

    /// Bridges two streams both ways (nothing when either is gone): each stops playing and
    /// relays what it reads to the other.
    fn bridge(&mut self, a: StreamId, b: StreamId, timeout: Option<Duration>) {
        if !(self.streams.contains_key(&a) && self.streams.contains_key(&b)) {
            return;
        }
        let now = Instant::now();
        for (this, other) in [(a, b), (b, a)] {
            if let Some((s, _)) = self.streams.get_mut(&this) {
                s.playing = None;
                s.bridge = Some(Bridge {
                    to: other,
                    timing: None,
                    timeout,
                    last_heard: now,
                    timed_out: false,
                    held: false,
                });
            }
        }
    }

    /// Visits the streams of one slot, relaying at once what a bridged one read to its
    /// peer. The buffers are the engine's own, reused so that a tick allocates nothing.
    fn serve_slot(
        &mut self,
        slot: usize,
        now: Instant,
        packet: &mut Vec<u8>,
        scratch: &mut [u8],
        relayed: &mut Relayed,
        shared: &Shared,
    ) {
        for i in 0..self.slots[slot].len() {
            let id = self.slots[slot][i];
            relayed.bytes.clear();
            relayed.packets.clear();
            let Some((stream, _)) = self.streams.get_mut(&id) else {
                continue;
            };
            stream.visit(packet, scratch, relayed, now);
            if relayed.packets.is_empty() {
                continue;
            }
            let (codec, event) = (stream.codec, stream.telephone_event);
            let to = stream.bridge.as_ref().map(|b| b.to);
            if let Some(to) = to
                && let Some((other, _)) = self.streams.get_mut(&to)
            {
                other.relay_in(codec, event, relayed, packet);
                shared
                    .relayed
                    .fetch_add(relayed.packets.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

fn run(rx: mpsc::Receiver<Command>, shared: &Shared) {
    let mut wheel = Wheel {
        streams: Default::default(),
        slots: vec![Vec::new(); SLOTS as usize],
    };
    let mut packet = Vec::with_capacity(12 + 160);
    let mut scratch = vec![0u8; READ_BUFFER];
    let mut relayed = Relayed::default();
    let mut epoch = Instant::now();
    let mut tick: u64 = 0;
    let mut lag_ewma: u64 = 0;
    loop {
        if wheel.streams.is_empty() {
            // Idle: sleep until a command arrives instead of ticking. An idle engine is not
            // late: a figure left from before (a stall just as the last call ended) would
            // refuse the very call that wakes it up, for ever.
            lag_ewma = 0;
            shared.lag_micros.store(0, Ordering::Relaxed);
            match rx.recv() {
                Ok(command) => {
                    epoch = Instant::now();
                    tick = 0;
                    wheel.apply(command, tick);
                }
                Err(_) => return,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(command) => wheel.apply(command, tick),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let slot = (tick % SLOTS) as usize;
        let now = Instant::now();
        wheel.serve_slot(slot, now, &mut packet, &mut scratch, &mut relayed, shared);
        tick += 1;
        let due = epoch + Duration::from_micros(TICK_MICROS * tick);
        let now = Instant::now();
        // Admission reads a smoothed lateness (EWMA over about 16 ticks, 80 ms): one tick
        // delayed by the scheduler on a busy machine is not overload, a sustained delay is.
        // One stall (the process paused, a scheduler hiccup) counts as at most the catch-up
        // limit, so that the figure heals within tens of milliseconds of the engine running.
        let late = now.saturating_duration_since(due);
        lag_ewma = lag_ewma - lag_ewma / 16 + late.min(MAX_CATCH_UP).as_micros() as u64 / 16;
        shared.lag_micros.store(lag_ewma, Ordering::Relaxed);
        if let Some(wait) = due.checked_duration_since(now) {
            std::thread::sleep(wait);
        } else {
            if late > MAX_CATCH_UP {
                tracing::warn!(
                    late_ms = late.as_millis() as u64,
                    "RTP engine stalled; re-anchoring its clock"
                );
                epoch = now - Duration::from_micros(TICK_MICROS * tick);
            }
        }
    }
}
