//! Browser phones for benches/webrtc.sh: N secretaries, each logged into the console over
//! HTTP with her live board open (one WebSocket), whose phone is a WebRTC peer connection
//! made by the same `rtc` crate as the server's, as a browser would make it: the offer
//! (PCMU, PCMA, telephone-event; one host candidate on 127.0.0.1) goes out as `phone-on`,
//! then full ICE (controlling, against the server's ICE-lite) and DTLS (client) with the
//! server. When a `ring` arrives the phone sends `answer` at once, notes when, and from
//! then on sends the server a 1 kHz PCMU tone every 20 ms, echoing nothing. Per call it
//! measures answer sent → first RTP packet from the server (the caller's audio), and
//! counts the packets received and sent.
//!
//! Each phone is one tokio task owning its UDP socket (its own port, as a browser has),
//! its WebSocket and its sans-IO peer connection, like the server's `PhoneTask`; the
//! tasks share a runtime of `--threads` threads (1 by default: the server needs the rest).
//!
//! Usage: webrtc_client --web 127.0.0.1:17081 --secretaries 50 --prefix s --password pw
//!                      --rtp-port 40000 --seconds 60 [--threads 1] [--per-call FILE]
//! Phone i (1-based) binds 127.0.0.1:(rtp-port + i). Prints `READY` once every phone is
//! connected (ICE and DTLS done, the server says `connected`), then runs until every
//! phone's call has been hung up or `--seconds` more pass, and prints one `RESULT {json}`
//! line.
//! `--per-call` writes one line per answered call: secretary, answer → first audio (ms),
//! packets received and sent, how long the call lasted (answer → `hung-up`), packets
//! received per second of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT, MediaEngine,
};
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

#[path = "shared/console_web.rs"]
mod console_web;
use console_web::{Frame, Frames, login, open_live, text_frame};

/// A browser sends a G.711 frame every 20 ms.
const PTIME: Duration = Duration::from_millis(20);

/// How long the phones have to connect before the run is given up (the server gives a
/// phone 20 s).
const CONNECT_LIMIT: Duration = Duration::from_secs(30);

struct Args {
    web: SocketAddr,
    secretaries: u16,
    prefix: String,
    password: String,
    rtp_port: u16,
    seconds: u64,
    threads: usize,
    per_call: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        web: "127.0.0.1:17081".parse().expect("address"),
        secretaries: 50,
        prefix: "s".into(),
        password: "pw".into(),
        rtp_port: 40000,
        seconds: 60,
        threads: 1,
        per_call: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes --bench (no value) to every bench target.
        if flag == "--bench" {
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--web" => a.web = value.parse().expect("--web address"),
            "--secretaries" => a.secretaries = value.parse().expect("--secretaries number"),
            "--prefix" => a.prefix = value,
            "--password" => a.password = value,
            "--rtp-port" => a.rtp_port = value.parse().expect("--rtp-port number"),
            "--seconds" => a.seconds = value.parse().expect("--seconds number"),
            "--threads" => a.threads = value.parse().expect("--threads number"),
            "--per-call" => a.per_call = Some(value),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(a.threads >= 1, "--threads: at least 1");
    assert!(
        u32::from(a.rtp_port) + u32::from(a.secretaries) <= 65535,
        "--rtp-port + --secretaries must stay below 65536"
    );
    a
}

/// What one phone saw, handed back when its task ends.
#[derive(Default)]
struct Leg {
    user: String,
    /// `phone-on` sent → the server's `connected`.
    connect: Option<Duration>,
    calls: Vec<Call>,
    /// Why the phone stopped early, if it did.
    error: Option<String>,
}

/// One call the phone answered.
struct Call {
    answered: Instant,
    /// Answer sent → first RTP packet from the server.
    first_audio: Option<Duration>,
    received: u64,
    sent: u64,
    /// Answer sent → `hung-up` from the console.
    lasted: Option<Duration>,
}

impl Call {
    /// Packets from the server per second of call (NaN if it was not hung up).
    fn received_per_s(&self) -> f64 {
        self.lasted
            .map_or(f64::NAN, |d| self.received as f64 / d.as_secs_f64())
    }
}

/// Counters the main thread watches while the phones run.
#[derive(Default)]
struct Progress {
    connected: AtomicUsize,
    failed: AtomicUsize,
    hung_up: AtomicUsize,
}

fn main() {
    let a = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let tone = Bytes::from(tone_1khz());
    let progress = Arc::new(Progress::default());
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::new();
    // Logins and upgrades one after the other (plain blocking HTTP), each phone starting
    // as soon as its page is open.
    for i in 1..=a.secretaries {
        let user = format!("{}{}", a.prefix, i);
        let cookie = login(a.web, &user, &a.password);
        let ws = open_live(a.web, &cookie);
        ws.set_nonblocking(true).expect("non-blocking socket");
        let udp = std::net::UdpSocket::bind(("127.0.0.1", a.rtp_port + i)).expect("phone port");
        udp.set_nonblocking(true).expect("non-blocking socket");
        let _inside = runtime.enter();
        let ws = TcpStream::from_std(ws).expect("tokio stream");
        let udp = UdpSocket::from_std(udp).expect("tokio socket");
        tasks.push(runtime.spawn(phone(
            user,
            ws,
            udp,
            tone.clone(),
            Arc::clone(&progress),
            stop.clone(),
        )));
    }
    let n = usize::from(a.secretaries);
    let connect_by = Instant::now() + CONNECT_LIMIT;
    while progress.connected.load(Ordering::Relaxed) + progress.failed.load(Ordering::Relaxed) < n
        && Instant::now() < connect_by
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let all_connected = progress.connected.load(Ordering::Relaxed) == n;
    if all_connected {
        eprintln!("{n} browser phones connected");
        println!("READY");
    } else {
        eprintln!(
            "only {} of {n} browser phones connected",
            progress.connected.load(Ordering::Relaxed)
        );
    }
    // Every phone takes one call (as many calls as secretaries): done once each has been
    // hung up, or at the deadline (counted from now: logging hundreds in takes a while).
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    while all_connected && progress.hung_up.load(Ordering::Relaxed) < n && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = stop_tx.send(true);
    let legs: Vec<Leg> = tasks
        .into_iter()
        .map(|t| runtime.block_on(t).unwrap_or_default())
        .collect();
    report(&legs, a.per_call.as_deref());
    if !all_connected {
        std::process::exit(1);
    }
}

/// Prints the RESULT line (and writes the per-call lines).
fn report(legs: &[Leg], per_call: Option<&str>) {
    let calls: Vec<(&str, &Call)> = legs
        .iter()
        .flat_map(|l| l.calls.iter().map(move |c| (l.user.as_str(), c)))
        .collect();
    if let Some(path) = per_call {
        let mut lines =
            String::from("secretary answer_to_audio_ms received sent seconds received_per_s\n");
        for (user, c) in &calls {
            let ms = c
                .first_audio
                .map_or("-".to_string(), |d| format!("{:.2}", ms(d)));
            let seconds = c
                .lasted
                .map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64()));
            lines.push_str(&format!(
                "{user} {ms} {} {} {seconds} {:.1}\n",
                c.received,
                c.sent,
                c.received_per_s()
            ));
        }
        std::fs::write(path, lines).expect("--per-call file written");
    }
    for leg in legs.iter().filter(|l| l.error.is_some()) {
        eprintln!("{}: {}", leg.user, leg.error.as_deref().unwrap_or(""));
    }
    let sorted = |values: &mut dyn Iterator<Item = f64>| {
        let mut v: Vec<f64> = values.filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let audio = sorted(&mut calls.iter().filter_map(|(_, c)| c.first_audio.map(ms)));
    let connect = sorted(&mut legs.iter().filter_map(|l| l.connect.map(ms)));
    let rates = sorted(&mut calls.iter().map(|(_, c)| c.received_per_s()));
    // JSON has no NaN: a figure with nothing behind it is null.
    let q = |v: &[f64], p: f64, digits: i32| {
        let x = pct(v, p);
        (!x.is_nan()).then(|| (x * 10f64.powi(digits)).round() / 10f64.powi(digits))
    };
    let result = serde_json::json!({
        "phones": legs.len(),
        "connected": connect.len(),
        "connect_p50_ms": q(&connect, 0.5, 1),
        "connect_p95_ms": q(&connect, 0.95, 1),
        "answered": calls.len(),
        "with_audio": audio.len(),
        "hung_up": rates.len(),
        "answer_to_audio_p50_ms": q(&audio, 0.5, 2),
        "answer_to_audio_p95_ms": q(&audio, 0.95, 2),
        "answer_to_audio_max_ms": q(&audio, 1.0, 2),
        "received": calls.iter().map(|(_, c)| c.received).sum::<u64>(),
        "sent": calls.iter().map(|(_, c)| c.sent).sum::<u64>(),
        "received_per_s_min": q(&rates, 0.0, 1),
        "received_per_s_p50": q(&rates, 0.5, 1),
    });
    println!("RESULT {result}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p` quantile of sorted values (nearest rank); NaN when there are none.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// 20 ms of a 1 kHz tone in µ-law: 8 samples a period, so every packet is the same.
fn tone_1khz() -> Vec<u8> {
    (0..160)
        .map(|n| {
            let phase = std::f64::consts::TAU * f64::from(n) / 8.0;
            permanence::g711::linear_to_ulaw((phase.sin() * 8000.0) as i16)
        })
        .collect()
}

/// A browser's peer connection with one audio track (PCMU, PCMA, telephone-event at
/// 8 kHz), full ICE, no interceptors (the server uses none either); its sender and SSRC.
fn peer_connection() -> Result<(RTCPeerConnection, RTCRtpSenderId, u32), String> {
    let e = |e: rtc::shared::error::Error| e.to_string();
    let mut media_engine = MediaEngine::default();
    let codec = |mime: &str, payload_type: u8| RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate: 8000,
            // As browsers write it: `PCMU/8000`, the channel count left out.
            channels: 0,
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
        media_engine
            .register_codec(c, RtpCodecKind::Audio)
            .map_err(e)?;
    }
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media_engine)
        .with_interceptor_registry(Registry::new())
        .build(Instant::now())
        .map_err(e)?;
    let ssrc = fastrand::u32(..);
    let track = MediaStreamTrack::new(
        "bench".to_owned(),
        "bench-audio".to_owned(),
        "bench-audio".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            // No codec named: the offer lists every codec registered above.
            ..Default::default()
        }],
    );
    let sender = pc.add_track(track).map_err(e)?;
    Ok((pc, sender, ssrc))
}

/// The offer, with our one host candidate in it.
fn offer(pc: &mut RTCPeerConnection, local: SocketAddr) -> Result<String, String> {
    let e = |e: rtc::shared::error::Error| e.to_string();
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .map_err(e)?;
    pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().map_err(e)?)
        .map_err(e)?;
    let offer = pc.create_offer(None).map_err(e)?;
    pc.set_local_description(Instant::now(), offer).map_err(e)?;
    pc.local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| "no offer".to_string())
}

/// One browser phone: signalling on `ws`, media on `udp`, until told to stop.
async fn phone(
    user: String,
    ws: TcpStream,
    udp: UdpSocket,
    tone: Bytes,
    progress: Arc<Progress>,
    stop: watch::Receiver<bool>,
) -> Leg {
    let mut leg = Leg {
        user,
        ..Leg::default()
    };
    let mut p = match Phone::new(ws, udp, tone, Arc::clone(&progress)) {
        Ok(p) => p,
        Err(error) => {
            progress.failed.fetch_add(1, Ordering::Relaxed);
            leg.error = Some(error);
            return leg;
        }
    };
    if let Err(error) = p.run(&mut leg, stop).await {
        leg.error = Some(error);
    }
    if leg.connect.is_none() {
        progress.failed.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(call) = p.call.take() {
        leg.calls.push(call);
    }
    leg
}

struct Phone {
    ws: TcpStream,
    frames: Frames,
    udp: UdpSocket,
    local: SocketAddr,
    pc: RTCPeerConnection,
    sender: RTCRtpSenderId,
    ssrc: u32,
    tone: Bytes,
    progress: Arc<Progress>,
    started: Instant,
    /// The call in progress (answered, not yet hung up), and when its next packet is due.
    call: Option<Call>,
    next_packet: Instant,
    seq: u16,
    timestamp: u32,
}

impl Phone {
    fn new(
        ws: TcpStream,
        udp: UdpSocket,
        tone: Bytes,
        progress: Arc<Progress>,
    ) -> Result<Phone, String> {
        let local = udp.local_addr().map_err(|e| e.to_string())?;
        let (pc, sender, ssrc) = peer_connection()?;
        Ok(Phone {
            ws,
            frames: Frames::default(),
            udp,
            local,
            pc,
            sender,
            ssrc,
            tone,
            progress,
            started: Instant::now(),
            call: None,
            next_packet: Instant::now(),
            seq: fastrand::u16(..),
            timestamp: fastrand::u32(..),
        })
    }

    async fn run(&mut self, leg: &mut Leg, mut stop: watch::Receiver<bool>) -> Result<(), String> {
        let sdp = offer(&mut self.pc, self.local)?;
        self.started = Instant::now();
        self.send_json(&serde_json::json!({ "type": "phone-on", "sdp": sdp }))
            .await?;
        let mut tcp = vec![0u8; 64 * 1024];
        let mut udp = vec![0u8; 2048];
        loop {
            self.drain()?;
            let now = Instant::now();
            let mut wake = self
                .pc
                .poll_timeout()
                .unwrap_or(now + Duration::from_secs(1))
                .min(now + Duration::from_secs(1));
            if self.call.is_some() {
                wake = wake.min(self.next_packet);
            }
            tokio::select! {
                read = self.ws.read(&mut tcp) => match read {
                    Ok(0) | Err(_) => return Err("the console closed the WebSocket".into()),
                    Ok(n) => {
                        self.frames.push(&tcp[..n]);
                        while let Some(frame) = self.frames.next() {
                            match frame {
                                Frame::Text(text) => self.on_message(&text, leg).await?,
                                Frame::Close => return Err("the console closed the WebSocket".into()),
                            }
                        }
                    }
                },
                read = self.udp.recv_from(&mut udp) => {
                    if let Ok((n, from)) = read {
                        let _ = self.pc.handle_read(TaggedBytesMut {
                            now: Instant::now(),
                            transport: TransportContext {
                                local_addr: self.local,
                                peer_addr: from,
                                ecn: None,
                                transport_protocol: TransportProtocol::UDP,
                            },
                            message: BytesMut::from(&udp[..n]),
                        });
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    let _ = self.pc.handle_timeout(Instant::now());
                }
                _ = stop.changed() => return Ok(()),
            }
            if self.call.is_some() && Instant::now() >= self.next_packet {
                self.send_audio();
            }
        }
    }

    /// One message from the console: the board is skipped unread, the phone's own are
    /// acted on (a ring is answered at once).
    async fn on_message(&mut self, text: &[u8], leg: &mut Leg) -> Result<(), String> {
        // Keys are written in order: a board's "type" comes last, after the whole board.
        if text.ends_with(br#""type":"board"}"#) {
            return Ok(());
        }
        let message: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
        match message["type"].as_str().unwrap_or("") {
            "phone-answer" => {
                let sdp = message["sdp"].as_str().unwrap_or("").to_string();
                let answer = RTCSessionDescription::answer(sdp).map_err(|e| e.to_string())?;
                self.pc
                    .set_remote_description(Instant::now(), answer)
                    .map_err(|e| e.to_string())?;
            }
            "phone-error" => return Err(format!("offer refused: {}", message["error"])),
            "phone" => match message["state"].as_str() {
                Some("connected") => {
                    leg.connect = Some(self.started.elapsed());
                    self.progress.connected.fetch_add(1, Ordering::Relaxed);
                }
                _ => return Err(format!("phone went off: {message}")),
            },
            "ring" => {
                let ring = message["ring"].as_u64().unwrap_or(0);
                self.send_json(&serde_json::json!({ "type": "answer", "ring": ring }))
                    .await?;
                let answered = Instant::now();
                if let Some(call) = self.call.replace(Call {
                    answered,
                    first_audio: None,
                    received: 0,
                    sent: 0,
                    lasted: None,
                }) {
                    leg.calls.push(call);
                }
                self.next_packet = answered;
            }
            "hung-up" => {
                if let Some(mut call) = self.call.take() {
                    call.lasted = Some(call.answered.elapsed());
                    leg.calls.push(call);
                    self.progress.hung_up.fetch_add(1, Ordering::Relaxed);
                }
            }
            // A ring that stopped before the answer (another phone won, the caller left).
            "ring-cancelled" => {}
            other => return Err(format!("unexpected message {other}: {message}")),
        }
        Ok(())
    }

    async fn send_json(&mut self, message: &serde_json::Value) -> Result<(), String> {
        self.ws
            .write_all(&text_frame(message.to_string().as_bytes()))
            .await
            .map_err(|e| format!("WebSocket write: {e}"))
    }

    /// The next 20 ms of tone. A phone that fell more than a few packets behind (the
    /// machine was busy) starts again from now rather than sending a burst.
    fn send_audio(&mut self) {
        let now = Instant::now();
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker: self.call.as_ref().is_some_and(|c| c.sent == 0),
                payload_type: 0,
                sequence_number: self.seq,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: self.tone.clone(),
        };
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(160);
        if let Some(mut sender) = self.pc.rtp_sender(self.sender)
            && sender.write_rtp(now, packet).is_ok()
            && let Some(call) = &mut self.call
        {
            call.sent += 1;
        }
        self.next_packet += PTIME;
        if self.next_packet + 3 * PTIME < now {
            self.next_packet = now + PTIME;
        }
    }

    /// Sends what the peer connection wrote, takes its events and the server's RTP.
    fn drain(&mut self) -> Result<(), String> {
        while let Some(out) = self.pc.poll_write() {
            let _ = self.udp.try_send_to(&out.message, out.transport.peer_addr);
        }
        while let Some(event) = self.pc.poll_event() {
            // Disconnected is not the end, for a browser either: the connection comes
            // back when the server is heard again (no audio for 5 s after a call ended,
            // say, while the page has not yet been told).
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                state @ (RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed),
            ) = event
            {
                return Err(format!("peer connection {state}"));
            }
        }
        while let Some(message) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(..) = message.message
                && let Some(call) = &mut self.call
            {
                call.received += 1;
                if call.first_audio.is_none() {
                    call.first_audio = Some(call.answered.elapsed());
                }
            }
        }
        Ok(())
    }
}
