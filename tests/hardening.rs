//! An attacker on the network (another loopback address, 127.0.0.2) against the real
//! server: what it must not be able to do to other people's calls, and the bounds on what
//! callers control. Raw SIP over UDP, so that every header is the test's to forge.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;

const NUMBER: &str = "+33180000001";

/// A raw SIP user agent on one UDP socket.
struct Ua {
    sock: UdpSocket,
    server: SocketAddr,
}

impl Ua {
    fn on(ip: &str, server: SocketAddr) -> Ua {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        Ua { sock, server }
    }

    fn local(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    fn send(&self, text: &str) {
        self.sock.send_to(text.as_bytes(), self.server).unwrap();
    }

    /// The next message within `wait`.
    fn recv(&self, wait: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 65536];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// The final response to what was just sent (provisional ones skipped).
    fn final_response(&self) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let msg = self.recv(Duration::from_millis(500))?;
            if msg.starts_with("SIP/2.0 ") && status(&msg).is_some_and(|s| s >= 200) {
                return Some(msg);
            }
        }
        None
    }

    /// Sends a request and returns its final status.
    fn ask(&self, text: &str) -> Option<u16> {
        self.send(text);
        self.final_response().and_then(|r| status(&r))
    }
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn tag_of(value: &str) -> Option<String> {
    value
        .split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .map(str::to_string)
}

/// A request inside (or claiming) a dialog, from `ua`.
#[allow(clippy::too_many_arguments)]
fn in_dialog(
    ua: &Ua,
    method: &str,
    cseq: u32,
    call_id: &str,
    from_tag: &str,
    to_tag: &str,
    extra: &str,
    body: &str,
) -> String {
    let local = ua.local();
    format!(
        "{method} sip:{NUMBER}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{method}{cseq}{}\r\n\
         From: <sip:+33612345678@{local}>;tag={from_tag}\r\nTo: <sip:{NUMBER}@{server}>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContact: <sip:caller@{local}>\r\n\
         {extra}Content-Length: {}\r\n\r\n{body}",
        fastrand::u32(..),
        body.len(),
        server = ua.server,
    )
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=sendrecv\r\n"
    )
}

/// An answered call from `ua`: (Call-ID, our From tag, the server's To tag).
fn answered_call(
    ua: &Ua,
    display: &str,
    max_forwards: u8,
    rtp_port: u16,
) -> (String, String, String) {
    let call_id = format!("hardening-{}@test", fastrand::u64(..));
    let from_tag = format!("caller{}", fastrand::u32(..));
    let local = ua.local();
    let body = sdp(&local.ip().to_string(), rtp_port);
    let invite = format!(
        "INVITE sip:{NUMBER}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKinv{}\r\n\
         From: {display}<sip:+33612345678@{local}>;tag={from_tag}\r\nTo: <sip:{NUMBER}@{server}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: {max_forwards}\r\nContact: <sip:caller@{local}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        fastrand::u32(..),
        body.len(),
        server = ua.server,
    );
    ua.send(&invite);
    let ok = ua.final_response().expect("an answer to the INVITE");
    assert_eq!(status(&ok), Some(200), "{ok}");
    let to_tag = tag_of(header(&ok, "To").unwrap()).expect("a To tag");
    ua.send(&in_dialog(
        ua, "ACK", 1, &call_id, &from_tag, &to_tag, "", "",
    ));
    (call_id, from_tag, to_tag)
}

/// An answered call from a new caller on 127.0.0.1, its RTP socket kept open.
fn plain_call(setup: &Setup) -> (Ua, UdpSocket) {
    let caller = Ua::on("127.0.0.1", setup.addr());
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    answered_call(&caller, "", 70, rtp.local_addr().unwrap().port());
    (caller, rtp)
}

/// RTP packets arriving on `sock` within `wait`.
fn packets(sock: &UdpSocket, wait: Duration) -> usize {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + wait;
    let mut n = 0;
    while Instant::now() < deadline {
        if sock.recv_from(&mut buf).is_ok() {
            n += 1;
        }
    }
    n
}

fn greeting_setup() -> Setup {
    Setup::new(&[(
        "acme.toml",
        &plan(
            "acme",
            NUMBER,
            r#"[{ play = "tone/long.wav" }, { hangup = {} }]"#,
        ),
    )])
}

#[test]
fn a_stranger_who_knows_the_call_id_cannot_end_move_or_transfer_the_call() {
    let setup = greeting_setup();
    let _server = setup.start();
    let caller = Ua::on("127.0.0.1", setup.addr());
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (call_id, from_tag, to_tag) =
        answered_call(&caller, "", 70, caller_rtp.local_addr().unwrap().port());
    assert!(
        packets(&caller_rtp, Duration::from_millis(500)) > 10,
        "the greeting plays"
    );

    let attacker = Ua::on("127.0.0.2", setup.addr());
    let attacker_rtp = UdpSocket::bind("127.0.0.2:0").unwrap();
    let stolen = sdp("127.0.0.2", attacker_rtp.local_addr().unwrap().port());
    let stolen_offer = "Content-Type: application/sdp\r\n".to_string();
    // Knows only the Call-ID.
    assert_eq!(
        attacker.ask(&in_dialog(
            &attacker, "BYE", 2, &call_id, "guess", "guess", "", ""
        )),
        Some(481)
    );
    // Knows the whole dialog (sniffed), but is not the caller.
    for (method, extra, body) in [
        ("BYE", String::new(), String::new()),
        ("INVITE", stolen_offer, stolen),
        (
            "REFER",
            "Refer-To: <sip:+33699999999@127.0.0.2>\r\n".to_string(),
            String::new(),
        ),
    ] {
        assert_eq!(
            attacker.ask(&in_dialog(
                &attacker, method, 3, &call_id, &from_tag, &to_tag, &extra, &body
            )),
            Some(481),
            "{method} from another address"
        );
    }
    // The caller's right tags, swapped: not the dialog either.
    assert_eq!(
        caller.ask(&in_dialog(
            &caller, "BYE", 4, &call_id, &to_tag, &from_tag, "", ""
        )),
        Some(481)
    );

    // The call goes on, its audio where it was.
    assert!(
        packets(&caller_rtp, Duration::from_millis(500)) > 10,
        "the caller still hears"
    );
    assert_eq!(
        packets(&attacker_rtp, Duration::from_millis(300)),
        0,
        "nothing was redirected"
    );
    let calls = setup.calls();
    assert_eq!(calls.len(), 1);
    assert!(!calls[0].ended, "still live: {calls:?}");

    // The real caller hangs up.
    assert_eq!(
        caller.ask(&in_dialog(
            &caller, "BYE", 5, &call_id, &from_tag, &to_tag, "", ""
        )),
        Some(200)
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].outcome.as_deref(), Some("abandoned"));
    let events = setup.events(calls[0].id);
    assert!(!events.iter().any(|e| e == "reinvite"), "{events:?}");
}

#[test]
fn max_forwards_zero_is_a_loop_and_our_legs_count_down_the_callers_hops() {
    let setup = Setup::new(&[(
        "acme.toml",
        &plan(
            "acme",
            NUMBER,
            r#"[{ secretary = { timeout = 2 } }, { hangup = {} }]"#,
        ),
    )]);
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(
        setup.config(),
        format!(
            "{config}\n[registrar]\nkeepalive_seconds = 0\n[[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\n\
             ha1_md5 = \"f5311f8276f6090e9cd6e52b1b126248\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n"
        ),
    )
    .unwrap();
    let _server = setup.start();

    // alice's phone: a raw socket that registers with digest.
    let phone = Ua::on("127.0.0.1", setup.addr());
    let register = |cseq: u32, auth: &str| {
        let local = phone.local();
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreg{cseq}\r\n\
             From: <sip:alice@127.0.0.1>;tag=reg\r\nTo: <sip:alice@127.0.0.1>\r\nCall-ID: reg-hardening\r\n\
             CSeq: {cseq} REGISTER\r\nContact: <sip:alice@{local}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    phone.send(&register(1, ""));
    let challenge = phone.final_response().unwrap();
    let answer = permanence::auth::answer_challenge(
        header(&challenge, "WWW-Authenticate").unwrap(),
        "alice",
        "alice",
        "REGISTER",
        "sip:127.0.0.1",
        "abcdef",
    )
    .unwrap();
    assert_eq!(
        phone.ask(&register(2, &format!("Authorization: {answer}\r\n"))),
        Some(200)
    );

    // No hops left: refused before any call starts.
    let caller = Ua::on("127.0.0.1", setup.addr());
    let local = caller.local();
    let body = sdp("127.0.0.1", 9);
    let invite = |mf: u8, call_id: &str| {
        format!(
            "INVITE sip:{NUMBER}@{} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}\r\n\
             From: <sip:+33612345678@{local}>;tag=mf\r\nTo: <sip:{NUMBER}@{}>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: {mf}\r\nContact: <sip:caller@{local}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            setup.addr(),
            setup.addr(),
            body.len()
        )
    };
    assert_eq!(caller.ask(&invite(0, "mf0")), Some(483));
    assert!(setup.calls().is_empty(), "no call was placed");

    // Ten hops left: alice's phone is rung with nine.
    caller.send(&invite(10, "mf10"));
    let ring = loop {
        let msg = phone
            .recv(Duration::from_secs(5))
            .expect("alice's phone rings");
        if msg.starts_with("INVITE ") {
            break msg;
        }
    };
    assert_eq!(header(&ring, "Max-Forwards"), Some("9"), "{ring}");
}

/// What a caller writes in their display name is data: escaped where a person reads it,
/// exact in JSON, and a line break (which SIP forbids there) is refused.
#[test]
fn a_callers_name_cannot_drive_the_operators_terminal_or_forge_a_row() {
    let setup = greeting_setup();
    let server = setup.start();
    let caller = Ua::on("127.0.0.1", setup.addr());
    // An escaped line feed in a quoted display name: not SIP (RFC 3261 §25.1).
    let local = caller.local();
    let body = sdp("127.0.0.1", 9);
    let forged = format!(
        "INVITE sip:{NUMBER}@{} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKlf\r\n\
         From: \"Jo\\\n    42  2026-12-01 10:00:00  acme  +33600000000  urgent\" <sip:+33612345678@{local}>;tag=lf\r\n\
         To: <sip:{NUMBER}@{}>\r\nCall-ID: lf@test\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
         Contact: <sip:caller@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        setup.addr(),
        setup.addr(),
        body.len()
    );
    assert_eq!(caller.ask(&forged), Some(400));

    // An escape sequence (legal as quoted-pairs) that would clear the screen and retitle
    // the window.
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (call_id, from_tag, to_tag) = answered_call(
        &caller,
        "\"Evil\\\u{1b}[2J\\\u{1b}]0;pwned\\\u{7}\" ",
        70,
        rtp.local_addr().unwrap().port(),
    );
    assert_eq!(
        caller.ask(&in_dialog(
            &caller, "BYE", 2, &call_id, &from_tag, &to_tag, "", ""
        )),
        Some(200)
    );
    setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    drop(server);

    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(setup.config())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    for args in [&["messages", "--all"][..], &["messages", "show", "1"]] {
        let table = cli(args);
        assert!(
            !table.iter().any(|b| *b == 0x1b || *b == 0x07),
            "{args:?}: raw control bytes reach the terminal"
        );
        let text = String::from_utf8_lossy(&table);
        assert!(
            text.contains("Evil\\u{1b}[2J"),
            "{args:?}: shown escaped: {text}"
        );
    }
    let json = String::from_utf8(cli(&["messages", "--all", "--json"])).unwrap();
    let m: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(
        m["caller_name"].as_str(),
        Some("Evil\u{1b}[2J\u{1b}]0;pwned\u{7}"),
        "JSON keeps the exact name"
    );
}

fn rtp_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An RFC 4733 payload for key 1: the end bit, volume 10, a growing duration.
fn key_one(end: u8, i: u16) -> [u8; 4] {
    let [hi, lo] = (160 * (i + 1)).to_be_bytes();
    [1, end | 10, hi, lo]
}

/// The server's RTP port in a 200's SDP.
fn media_port(answer: &str) -> u16 {
    answer
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("an m=audio line")
}

/// The RTP range a test server uses, from its config.
fn rtp_range(setup: &Setup) -> std::ops::RangeInclusive<u16> {
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let value = |key: &str| -> u16 {
        config
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_start_matches('=').trim().parse().ok())
            .unwrap()
    };
    value("rtp_port_min")..=value("rtp_port_max")
}

/// Someone sprays an RTP packet at every port of the range, over and over, while a call
/// starts: the call's audio still goes to the caller alone.
#[test]
fn spraying_every_rtp_port_does_not_steal_a_calls_audio() {
    let setup = greeting_setup();
    let _server = setup.start();
    let range = rtp_range(&setup);
    let sprayer = UdpSocket::bind("127.0.0.2:0").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spraying = {
        let stop = std::sync::Arc::clone(&stop);
        let sprayer = sprayer.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut seq = 0u16;
            // Bounded: at most 10 s, a few hundred packets a round.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                for port in range.clone().step_by(2) {
                    let p = rtp_packet(0, seq, u32::from(seq) * 160, 0x5eed, &[0xff; 160]);
                    let _ = sprayer.send_to(&p, ("127.0.0.1", port));
                }
                seq = seq.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let caller = Ua::on("127.0.0.1", setup.addr());
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (call_id, from_tag, to_tag) =
        answered_call(&caller, "", 70, caller_rtp.local_addr().unwrap().port());
    let heard = packets(&caller_rtp, Duration::from_secs(2));
    sprayer
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut stolen = 0;
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if sprayer.recv_from(&mut buf).is_ok() {
            stolen += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spraying.join().unwrap();
    assert!(
        heard > 80,
        "the caller hears the greeting: {heard} packets in 2 s"
    );
    assert_eq!(stolen, 0, "the sprayer got none of the call's audio");
    let events = setup.events(1);
    assert!(
        !events.iter().any(|e| e == "rtp-latched"),
        "no latching to the sprayer: {events:?}"
    );
    caller.ask(&in_dialog(
        &caller, "BYE", 2, &call_id, &from_tag, &to_tag, "", "",
    ));
}

/// Once the caller's stream is known, keys sent by someone else do not choose a menu
/// branch; the caller's own do.
#[test]
fn injected_keys_from_another_address_do_not_choose_a_menu_branch() {
    let setup = Setup::new(&[(
        "acme.toml",
        &format!(
            "[company]\nid = \"acme\"\nname = \"ACME\"\nnumbers = [\"{NUMBER}\"]\n\
             [steplists]\nurgent = [{{ category = \"urgent\" }}, {{ hangup = {{}} }}]\n\
             [[route]]\nname = \"menu\"\n\
             steps = [{{ menu = {{ prompt = \"tone/long.wav\", timeout = 10, choices = {{ \"1\" = \"urgent\" }} }} }}, {{ hangup = {{}} }}]\n"
        ),
    )]);
    let _server = setup.start();
    let caller = Ua::on("127.0.0.1", setup.addr());
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = caller.local();
    let rtp_port = caller_rtp.local_addr().unwrap().port();
    let body = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    );
    caller.send(&format!(
        "INVITE sip:{NUMBER}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKmenu\r\n\
         From: <sip:+33612345678@{local}>;tag=menu\r\nTo: <sip:{NUMBER}@{server}>\r\nCall-ID: menu@test\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:caller@{local}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len(),
        server = setup.addr(),
    ));
    let ok = caller.final_response().unwrap();
    let to_tag = tag_of(header(&ok, "To").unwrap()).unwrap();
    caller.send(&in_dialog(
        &caller,
        "ACK",
        1,
        "menu@test",
        "menu",
        &to_tag,
        "",
        "",
    ));
    let server_rtp = SocketAddr::from(([127, 0, 0, 1], media_port(&ok)));

    // The caller's own audio: its stream is learnt.
    for seq in 0..10u16 {
        let p = rtp_packet(0, seq, u32::from(seq) * 160, 0xca11, &[0xff; 160]);
        caller_rtp.send_to(&p, server_rtp).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // Someone else sends key 1, as a full press, from another address.
    let attacker = UdpSocket::bind("127.0.0.2:0").unwrap();
    for (i, end) in [(0u16, 0u8), (1, 0), (2, 0x80), (3, 0x80)] {
        let p = rtp_packet(101, 500 + i, 90_000, 0xbad, &key_one(end, i));
        attacker.send_to(&p, server_rtp).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let events = setup.events(1);
    assert!(
        !events.iter().any(|e| e == "digit" || e == "menu-choice"),
        "an injected key was taken: {events:?}"
    );
    // The caller's own key 1 is.
    for (i, end) in [(0u16, 0u8), (1, 0), (2, 0x80), (3, 0x80)] {
        let p = rtp_packet(101, 10 + i, 1600, 0xca11, &key_one(end, i));
        caller_rtp.send_to(&p, server_rtp).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert!(calls[0].ended, "key 1 led to the hang-up");
    let events = setup.events(calls[0].id);
    assert!(events.iter().any(|e| e == "menu-choice"), "{events:?}");
    assert_eq!(message_of(&setup, calls[0].id).0, "urgent");
}

/// The process is paused for 1.5 s (a stall) just as its only call ends: new calls must be
/// taken again at once, not refused with 503 until a restart.
#[test]
fn a_stall_as_the_last_call_ends_heals_by_itself() {
    let setup = Setup::new(&[(
        "acme.toml",
        &plan(
            "acme",
            NUMBER,
            r#"[{ play = "tone/short.wav" }, { hangup = {} }]"#,
        ),
    )]);
    write_tone(&setup.dir.path().join("sounds/tone/short.wav"), 440.0, 1.0);
    let server = setup.start();
    let (caller, _rtp) = plain_call(&setup);
    std::thread::sleep(Duration::from_millis(800));
    let pid = server.pid().to_string();
    let signal = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    std::thread::sleep(Duration::from_millis(1500));
    signal("-CONT");
    // The greeting ends, the server hangs up: answer its BYE.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(msg) = caller.recv(Duration::from_millis(200))
            && msg.starts_with("BYE ")
        {
            let reply = format!(
                "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
                msg.lines()
                    .filter(|l| ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                        .iter()
                        .any(|h| l.starts_with(h)))
                    .collect::<Vec<_>>()
                    .join("\r\n")
            );
            caller.send(&reply);
            break;
        }
    }
    setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    // Within a second, calls are taken again.
    std::thread::sleep(Duration::from_millis(1000));
    let (_next, _rtp) = plain_call(&setup);
}

/// A broken plan is refused once, then left alone until a file changes again: the watcher
/// does not retry it several times a second (nor re-read files that did not change).
#[test]
fn a_broken_plan_is_retried_only_when_a_file_changes_again() {
    let setup = greeting_setup();
    let _server = setup.start();
    let plan_file = setup.dir.path().join("dialplans/acme.toml");
    let good = std::fs::read_to_string(&plan_file).unwrap();
    let reloads = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = setup.reloads();
            if r.len() >= n || Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    std::fs::write(
        &plan_file,
        good.replace("tone/long.wav", "tone/missing.wav"),
    )
    .unwrap();
    assert_eq!(reloads(1)[0].1, "refused");
    std::thread::sleep(Duration::from_secs(3));
    let after = setup.reloads();
    assert_eq!(after.len(), 1, "refused once, not retried: {after:?}");

    // Fixed (differently from the plan in force, which never stopped serving).
    std::fs::write(&plan_file, good.replace("tone/long.wav", "tone/a.wav")).unwrap();
    let r = reloads(2);
    assert_eq!((r.len(), r[1].1.as_str()), (2, "accepted"), "{r:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(setup.reloads().len(), 2, "nothing more once accepted");
}

/// alice's phone, registering from `phone` with digest: returns the 200 and the
/// Authorization header it sent (what an eavesdropper would capture).
fn register_alice(phone: &Ua, password: &str, cseq: u32, extra: &str) -> (Option<u16>, String) {
    let local = phone.local();
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreg{cseq}x{}\r\n\
             From: <sip:alice@127.0.0.1>;tag=reg{cseq}\r\nTo: <sip:alice@127.0.0.1>\r\nCall-ID: reg-{local}\r\n\
             CSeq: {cseq} REGISTER\r\n{extra}{auth}Content-Length: 0\r\n\r\n",
            fastrand::u32(..)
        )
    };
    phone.send(&register(cseq, ""));
    let challenge = phone.final_response().expect("a challenge");
    assert_eq!(status(&challenge), Some(401), "{challenge}");
    let answer = permanence::auth::answer_challenge(
        header(&challenge, "WWW-Authenticate").unwrap(),
        "alice",
        password,
        "REGISTER",
        "sip:127.0.0.1",
        &format!("{:08x}", fastrand::u32(..)),
    )
    .unwrap();
    let auth = format!("Authorization: {answer}\r\n");
    let status = phone.ask(&register(cseq + 1, &auth));
    (status, auth)
}

fn alice_setup() -> Setup {
    let setup = greeting_setup();
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(
        setup.config(),
        format!(
            "{config}\n[registrar]\nkeepalive_seconds = 0\n[[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\n\
             ha1_md5 = \"f5311f8276f6090e9cd6e52b1b126248\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n"
        ),
    )
    .unwrap();
    setup
}

fn registrations(setup: &Setup) -> Vec<String> {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let mut stmt = conn
        .prepare("SELECT contact FROM registrations ORDER BY contact")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A REGISTER captured on the wire, played again from elsewhere (here to unregister every
/// phone of alice's with `Contact: *`), is refused; the phone itself goes on registering.
#[test]
fn a_captured_register_cannot_be_replayed() {
    let setup = alice_setup();
    let _server = setup.start();
    let phone = Ua::on("127.0.0.1", setup.addr());
    let contact = format!("Contact: <sip:alice@{}>\r\nExpires: 600\r\n", phone.local());
    let (status, captured) = register_alice(&phone, "alice", 1, &contact);
    assert_eq!(status, Some(200));

    let attacker = Ua::on("127.0.0.2", setup.addr());
    let local = attacker.local();
    let replay = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreplay\r\n\
         From: <sip:alice@127.0.0.1>;tag=evil\r\nTo: <sip:alice@127.0.0.1>\r\nCall-ID: evil\r\n\
         CSeq: 7 REGISTER\r\nContact: *\r\nExpires: 0\r\n{captured}Content-Length: 0\r\n\r\n"
    );
    assert_eq!(attacker.ask(&replay), Some(401), "a replay is challenged");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        registrations(&setup).len(),
        1,
        "alice's phone is still registered"
    );
    // The phone re-registers as phones do.
    assert_eq!(register_alice(&phone, "alice", 3, &contact).0, Some(200));
}

/// Guessing alice's password from one address gets that address banned (403, logged once,
/// listed by `permanence bans`); alice's phone elsewhere still registers.
#[test]
fn a_password_guesser_is_banned_and_the_secretary_is_not() {
    let setup = alice_setup();
    let server = setup.start();
    let attacker = Ua::on("127.0.0.2", setup.addr());
    let mut statuses = Vec::new();
    for i in 0..12 {
        let (status, _) = register_alice(&attacker, &format!("guess{i}"), 10 + 2 * i, "");
        statuses.push(status);
        if status == Some(403) {
            break;
        }
    }
    assert_eq!(
        statuses.last(),
        Some(&Some(403)),
        "banned after the tenth wrong password: {statuses:?}"
    );
    assert_eq!(statuses.len(), 10, "{statuses:?}");
    // Banned: refused at once, without a challenge.
    let local = attacker.local();
    let plain = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbanned\r\n\
         From: <sip:alice@127.0.0.1>;tag=b\r\nTo: <sip:alice@127.0.0.1>\r\nCall-ID: banned\r\n\
         CSeq: 99 REGISTER\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(attacker.ask(&plain), Some(403));

    let phone = Ua::on("127.0.0.1", setup.addr());
    let contact = format!("Contact: <sip:alice@{}>\r\nExpires: 600\r\n", phone.local());
    assert_eq!(register_alice(&phone, "alice", 1, &contact).0, Some(200));

    let log = server.log();
    assert_eq!(
        log.matches("banned: repeated wrong credentials").count(),
        1,
        "one line per ban:\n{log}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let bans = loop {
        let out = std::process::Command::new(BIN)
            .args(["bans", "--json", "--config"])
            .arg(setup.config())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !text.is_empty() || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let ban: serde_json::Value = serde_json::from_str(bans.lines().next().unwrap()).unwrap();
    assert_eq!(
        (
            ban["source"].as_str(),
            ban["username"].as_str(),
            ban["failures"].as_u64()
        ),
        (Some("127.0.0.2"), Some("alice"), Some(10))
    );
}

fn options(call_id: &str, cseq: u32, local: SocketAddr, transport: &str) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{call_id}{cseq}\r\n\
         From: <sip:flood@127.0.0.1>;tag=f\r\nTo: <sip:127.0.0.1>\r\nCall-ID: {call_id}\r\n\
         CSeq: {cseq} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The answers to a TCP OPTIONS on a fresh connection, within `wait`.
fn tcp_options_answered(server: SocketAddr, from: &str, wait: Duration) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&server, wait) else {
        return false;
    };
    let _ = from;
    let local = s.local_addr().unwrap();
    use std::io::{Read, Write};
    s.set_read_timeout(Some(wait)).unwrap();
    if s.write_all(options("legit-tcp", 1, local, "TCP").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 4096];
    matches!(s.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"SIP/2.0 200"))
}

/// Ten connections pipelining OPTIONS as fast as they can, none reading its answers: the
/// server's memory stays bounded and a caller on UDP or on another TCP connection is still
/// answered at once.
#[test]
fn a_tcp_flood_is_slowed_down_not_buffered_and_others_are_served() {
    let setup = greeting_setup();
    let server = setup.start();
    let pid = server.pid();
    let before = rss_kib(pid);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flooders: Vec<_> = (0..10)
        .map(|i| {
            let (stop, sent) = (stop.clone(), sent.clone());
            let addr = setup.addr();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let local = s.local_addr().unwrap();
                let burst: String = (0..50)
                    .map(|k| options(&format!("flood{i}"), k, local, "TCP"))
                    .collect();
                let deadline = Instant::now() + Duration::from_secs(12);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    match s.write(burst.as_bytes()) {
                        Ok(n) => {
                            sent.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let mut peak = 0;
    let legit = Ua::on("127.0.0.1", setup.addr());
    for round in 0..6 {
        peak = peak.max(rss_kib(pid));
        let started = Instant::now();
        assert_eq!(
            legit.ask(&options("legit-udp", round, legit.local(), "UDP")),
            Some(200),
            "UDP during the flood"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert!(
            tcp_options_answered(setup.addr(), "127.0.0.1", Duration::from_secs(2)),
            "a new TCP connection during the flood"
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    let mib = sent.load(std::sync::atomic::Ordering::Relaxed) / (1 << 20);
    eprintln!("flood: {mib} MiB offered, RSS {before} KiB before, peak {peak} KiB");
    assert!(
        peak < before + 64 * 1024,
        "RSS bounded: {before} KiB before, {peak} KiB during the flood ({mib} MiB offered)"
    );
    assert_eq!(
        legit.ask(&options("after", 1, legit.local(), "UDP")),
        Some(200)
    );
}

/// A thousand OPTIONS pipelined on one connection, then read: every one is answered
/// (a reliable transport must not lose answers), in order.
#[test]
fn every_pipelined_request_on_tcp_is_answered() {
    use std::io::{Read, Write};
    let setup = greeting_setup();
    let _server = setup.start();
    let mut s = std::net::TcpStream::connect(setup.addr()).unwrap();
    let local = s.local_addr().unwrap();
    let all: String = (1..=1000)
        .map(|k| options("pipe", k, local, "TCP"))
        .collect();
    let started = Instant::now();
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(all.as_bytes()).unwrap())
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let count = String::from_utf8_lossy(&got).matches("SIP/2.0 200").count();
        if count >= 1000 {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    writer.join().unwrap();
    let text = String::from_utf8_lossy(&got);
    eprintln!(
        "pipelined: 1000 OPTIONS answered in {:?}",
        started.elapsed()
    );
    assert_eq!(text.matches("SIP/2.0 200").count(), 1000);
    assert!(text.contains("CSeq: 1000 OPTIONS"));
}

/// Slowloris: connections that send a byte now and then hold no slot for long, and one
/// address cannot take every connection.
#[test]
fn slow_senders_and_connection_hogs_are_cut_off() {
    use std::io::{Read, Write};
    let setup = greeting_setup();
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(
        setup.config(),
        config.replace(
            "[limits]\n",
            "[limits]\ntcp_message_seconds = 2\nmax_tcp_connections_per_source = 5\nmax_tcp_connections = 8\n",
        ),
    )
    .unwrap();
    let _server = setup.start();

    // One byte every 300 ms: closed about 2 s after the message began.
    let mut slow = std::net::TcpStream::connect(setup.addr()).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = Instant::now();
    let mut closed_after = None;
    for b in b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKslow\r\n"
        .iter()
    {
        if slow.write_all(&[*b]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(0) = slow.read(&mut buf) {
            closed_after = Some(started.elapsed());
            break;
        }
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let closed_after = closed_after.expect("the slow connection is closed");
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(5)).contains(&closed_after),
        "{closed_after:?}"
    );

    // Five connections from 127.0.0.2 at most; the sixth is closed at once.
    let connect_from = |ip: &str| {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::new(ip.parse().unwrap(), 0).into())
            .unwrap();
        socket.connect(&setup.addr().into()).unwrap();
        std::net::TcpStream::from(socket)
    };
    let hogs: Vec<_> = (0..5).map(|_| connect_from("127.0.0.2")).collect();
    let mut sixth = connect_from("127.0.0.2");
    sixth
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        matches!(sixth.read(&mut buf), Ok(0) | Err(_)),
        "the sixth connection from one address is closed"
    );
    assert!(
        tcp_options_answered(setup.addr(), "127.0.0.1", Duration::from_secs(2)),
        "others still connect"
    );
    drop(hogs);
}

/// Sends an INVITE from `ua` to `number`, outside any dialog (answers: [`statuses`]).
fn send_invite(ua: &Ua, number: &str, call_id: &str) {
    let local = ua.local();
    let body = sdp(&local.ip().to_string(), 9);
    ua.send(&format!(
        "INVITE sip:{number}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}\r\n\
         From: <sip:+33612345678@{local}>;tag={call_id}\r\nTo: <sip:{number}@{server}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:caller@{local}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len(),
        server = ua.server,
    ));
}

/// Collects the first non-100 status of each Call-ID answered on `ua` within `wait`.
fn statuses(ua: &Ua, wait: Duration) -> std::collections::HashMap<String, u16> {
    let mut out = std::collections::HashMap::new();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let Some(msg) = ua.recv(Duration::from_millis(200)) else {
            continue;
        };
        let (Some(code), Some(call_id)) = (status(&msg), header(&msg, "Call-ID")) else {
            continue;
        };
        if code != 100 {
            out.entry(call_id.to_string()).or_insert(code);
        }
    }
    out
}

/// One address sending INVITEs as fast as it can gets 503 beyond its share, and only it:
/// a caller elsewhere is taken at once.
#[test]
fn an_invite_flood_is_refused_to_its_source_only() {
    let setup = Setup::new(&[("acme.toml", &plan("acme", NUMBER, "[{ ring = 30 }]"))]);
    let _server = setup.start();
    let flooder = Ua::on("127.0.0.2", setup.addr());
    for i in 0..100 {
        send_invite(&flooder, NUMBER, &format!("flood-{i}"));
    }
    let caller = Ua::on("127.0.0.1", setup.addr());
    send_invite(&caller, NUMBER, "legit");
    let flood = statuses(&flooder, Duration::from_secs(2));
    let legit = statuses(&caller, Duration::from_millis(500));
    let refused = flood.values().filter(|s| **s == 503).count();
    let taken = flood.values().filter(|s| **s == 180).count();
    assert!(
        refused >= 60 && (20..=40).contains(&taken),
        "20 a second taken, the rest 503: {taken} taken, {refused} refused"
    );
    assert_eq!(
        legit.get("legit"),
        Some(&180),
        "the legitimate caller rings"
    );
}

/// Someone dialling through a range of numbers nobody has: the first of a minute are
/// recorded, the rest only counted, so the records cannot be flooded.
#[test]
fn a_scan_of_unknown_numbers_is_counted_not_recorded_one_by_one() {
    let setup = greeting_setup();
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(
        setup.config(),
        config.replace(
            "[limits]\n",
            "[limits]\nmax_invites_per_second_per_source = 0\nunknown_number_rows_per_minute = 20\n",
        ),
    )
    .unwrap();
    let _server = setup.start();
    let scanner = Ua::on("127.0.0.2", setup.addr());
    for i in 0..60 {
        send_invite(&scanner, &format!("+3319000{i:04}"), &format!("scan-{i}"));
    }
    let answers = statuses(&scanner, Duration::from_secs(3));
    assert_eq!(answers.len(), 60, "every scan gets its answer");
    assert!(answers.values().all(|s| *s == 404), "{answers:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (rows, counted) = loop {
        let conn = rusqlite::Connection::open(setup.db()).unwrap();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM calls", [], |r| r.get(0))
            .unwrap();
        let counted: i64 = conn
            .query_row(
                "SELECT coalesce(sum(count), 0) FROM floods WHERE source = '127.0.0.2'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if rows + counted >= 60 || Instant::now() > deadline {
            break (rows, counted);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // A minute boundary may fall in the scan: then two minutes' worth are recorded.
    assert!((20..=40).contains(&rows), "{rows} rows");
    assert_eq!(rows + counted, 60, "{rows} rows, {counted} counted");
}

/// Runs `command` inside the server's mount namespace (where its data directory is a
/// small tmpfs), returning its stdout.
fn in_server_namespace(pid: u32, command: &[&str]) -> String {
    let out = std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "--"])
        .args(command)
        .output()
        .expect("nsenter (util-linux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The disk fills during a call: the call's end is kept in memory, new calls get 503 (not
/// taken without a record), one loud log line; when space returns everything is written
/// and calls are taken again. The data directory is a 4 MiB tmpfs in a mount namespace of
/// the server's own (this needs root, as CI has).
#[test]
fn a_full_disk_refuses_new_calls_keeps_the_records_and_recovers() {
    let setup = greeting_setup();
    let data = setup.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let data = data.display().to_string();
    let server = setup.start_with(&[
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount -t tmpfs -o size=4m tmpfs \"$0\" && exec \"$@\"",
        &data,
    ]);
    let pid = server.pid();
    let db = format!("{data}/permanence.db");
    let query = |sql: &str| in_server_namespace(pid, &["sqlite3", &db, sql]);
    let caller = Ua::on("127.0.0.1", setup.addr());
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (call_id, from_tag, to_tag) =
        answered_call(&caller, "", 70, rtp.local_addr().unwrap().port());
    assert_eq!(query("SELECT count(*) FROM calls").trim(), "1");

    // Fill the disk, then end the call: its end cannot be written.
    in_server_namespace(
        pid,
        &["dd", "if=/dev/zero", &format!("of={data}/fill"), "bs=64k"],
    );
    assert_eq!(
        caller.ask(&in_dialog(
            &caller, "BYE", 2, &call_id, &from_tag, &to_tag, "", ""
        )),
        Some(200)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("cannot write records") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let next = Ua::on("127.0.0.1", setup.addr());
    send_invite(&next, NUMBER, "while-full");
    assert_eq!(
        statuses(&next, Duration::from_secs(3)).get("while-full"),
        Some(&503),
        "no call taken that could not be recorded"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        server.log().matches("cannot write records").count(),
        1,
        "logged once"
    );

    // Space returns: what waited is written, calls are taken again.
    in_server_namespace(pid, &["rm", "-f", &format!("{data}/fill")]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("records are being written again") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        query("SELECT outcome FROM calls WHERE id = 1").trim(),
        "abandoned",
        "the call's end, kept while the disk was full"
    );
    let (_again, _rtp) = plain_call(&setup);
}

/// Someone deletes the data directory while calls come in: the server notices, says so,
/// and records the next calls in a new database rather than into a deleted file.
#[test]
fn a_deleted_data_directory_is_noticed_and_recreated() {
    let setup = greeting_setup();
    let server = setup.start();
    std::fs::remove_dir_all(setup.dir.path().join("data")).unwrap();
    let (_caller, _rtp) = plain_call(&setup);
    let calls = setup.wait_calls(|c| !c.is_empty());
    assert_eq!(calls.len(), 1, "the call is in the new database");
    assert!(
        server.log().contains("deleted while running"),
        "{}",
        server.log()
    );
}

/// A caller leaving a message at `ua`'s end: sends a 1 kHz tone as PCMU RTP to the server's
/// media port for `seconds`, from `rtp`, paced at 20 ms.
fn speak(rtp: &UdpSocket, to: SocketAddr, seconds: f64) {
    let frames = (seconds * 50.0) as u16;
    for seq in 0..frames {
        let payload: Vec<u8> = (0..160)
            .map(|i| {
                let n = f64::from(seq) * 160.0 + f64::from(i);
                let s = (n * 1000.0 * 2.0 * std::f64::consts::PI / 8000.0).sin() * 12000.0;
                permanence::g711::linear_to_ulaw(s as i16)
            })
            .collect();
        let _ = rtp.send_to(
            &rtp_packet(0, seq, u32::from(seq) * 160, 0x5eaf, &payload),
            to,
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn voicemail_setup() -> Setup {
    let setup = Setup::new(&[(
        "acme.toml",
        &plan(
            "acme",
            NUMBER,
            r#"[{ voicemail = { prompt = "tone/short.wav", max_seconds = 60 } }]"#,
        ),
    )]);
    write_tone(&setup.dir.path().join("sounds/tone/short.wav"), 440.0, 0.3);
    setup
}

/// Answers the voicemail and returns (Call-ID, tags, the server's media address).
fn call_voicemail(ua: &Ua, rtp: &UdpSocket) -> SocketAddr {
    let local = ua.local();
    let port = rtp.local_addr().unwrap().port();
    let body = sdp("127.0.0.1", port);
    ua.send(&format!(
        "INVITE sip:{NUMBER}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKvm\r\n\
         From: <sip:+33612345678@{local}>;tag=vm\r\nTo: <sip:{NUMBER}@{server}>\r\nCall-ID: vm@test\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:caller@{local}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len(),
        server = ua.server,
    ));
    let ok = ua.final_response().unwrap();
    let to_tag = tag_of(header(&ok, "To").unwrap()).unwrap();
    ua.send(&in_dialog(ua, "ACK", 1, "vm@test", "vm", &to_tag, "", ""));
    SocketAddr::from(([127, 0, 0, 1], media_port(&ok)))
}

/// A caller reaching the voicemail and speaking a 1 kHz tone for `seconds`, in the
/// background: its SIP side (kept alive) and the thread that talks.
fn leaving_a_message(setup: &Setup, seconds: f64) -> (Ua, std::thread::JoinHandle<()>) {
    let caller = Ua::on("127.0.0.1", setup.addr());
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let media = call_voicemail(&caller, &rtp);
    let talking = std::thread::spawn(move || speak(&rtp, media, seconds));
    (caller, talking)
}

/// kill -9 while a caller is leaving a message: at the next start the recording is made
/// whole (what was said up to a second before the kill), linked to its message with its
/// length, and plays back the caller's voice.
#[test]
fn a_message_being_recorded_survives_a_kill() {
    let setup = voicemail_setup();
    let mut server = setup.start();
    let (_caller, talking) = leaving_a_message(&setup, 5.0);
    std::thread::sleep(Duration::from_millis(3800));
    server.kill();
    talking.join().unwrap();
    let _restarted = setup.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (path, ms) = loop {
        let m = message_of(&setup, 1);
        if m.2.is_some() || Instant::now() > deadline {
            break (m.1, m.2);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ms = ms.expect("the length is recorded at the next start");
    assert!(
        (1500..4000).contains(&ms),
        "{ms} ms of about 3 s said before the kill"
    );
    let samples: Vec<i16> = hound::WavReader::open(path.expect("linked to its message"))
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect();
    assert_eq!(samples.len() as i64 / 8, ms);
    let hz = tone_frequency(&samples[samples.len() / 2..]);
    assert!((900.0..1100.0).contains(&hz), "the caller's 1 kHz: {hz} Hz");
    assert_eq!(setup.calls()[0].outcome.as_deref(), Some("interrupted"));
}

/// SIGTERM while a caller is leaving a message: the server hangs up and keeps what was
/// said, with its length, before it exits.
#[test]
fn a_message_being_recorded_is_kept_when_the_server_stops() {
    let setup = voicemail_setup();
    let mut server = setup.start();
    let (_caller, talking) = leaving_a_message(&setup, 4.0);
    std::thread::sleep(Duration::from_millis(3000));
    assert!(server.terminate().success());
    talking.join().unwrap();
    let (_, path, ms, empty) = message_of(&setup, 1);
    let ms = ms.expect("the length is recorded before the exit");
    assert!((1000..3500).contains(&ms) && !empty, "{ms} ms");
    assert!(std::path::Path::new(&path.expect("kept")).exists());
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let reason: String = conn
        .query_row(
            "SELECT data FROM events WHERE kind = 'recording-stopped'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(reason.contains("shutdown"), "{reason}");
}

/// When every TCP slot is taken, the connection idle the longest gives way to a new one
/// (rather than the newcomer, a real phone, being refused by idle hogs).
#[test]
fn a_full_tcp_table_closes_its_idlest_connection_for_a_newcomer() {
    use std::io::Read;
    let setup = greeting_setup();
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(
        setup.config(),
        config.replace("[limits]\n", "[limits]\nmax_tcp_connections = 2\n"),
    )
    .unwrap();
    let _server = setup.start();
    let idle: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(setup.addr()).unwrap())
        .collect();
    // Idle long enough to be evictable (5 s).
    std::thread::sleep(Duration::from_millis(5500));
    assert!(
        tcp_options_answered(setup.addr(), "127.0.0.1", Duration::from_secs(2)),
        "the newcomer is served"
    );
    let closed = idle
        .into_iter()
        .filter(|s| {
            let mut s = s.try_clone().unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut buf = [0u8; 16];
            matches!(s.read(&mut buf), Ok(0))
        })
        .count();
    assert_eq!(closed, 1, "the idlest one made room, the other stays");
}

/// kill -9 right after a burst of calls was answered: every call that got its 200 OK is in
/// the records at the next start (marked interrupted).
#[test]
fn every_answered_call_is_in_the_records_after_a_kill() {
    let setup = greeting_setup();
    let mut server = setup.start();
    let caller = Ua::on("127.0.0.1", setup.addr());
    let local = caller.local();
    for i in 0..15 {
        let body = sdp("127.0.0.1", 9);
        caller.send(&format!(
            "INVITE sip:{NUMBER}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKburst{i}\r\n\
             From: <sip:+33612345678@{local}>;tag=b{i}\r\nTo: <sip:{NUMBER}@{server}>\r\nCall-ID: burst-{i}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:caller@{local}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len(),
            server = setup.addr(),
        ));
    }
    // Count the 200s, then kill the instant the last one arrives.
    let mut answered = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.len() < 15 && Instant::now() < deadline {
        if let Some(msg) = caller.recv(Duration::from_millis(200))
            && status(&msg) == Some(200)
        {
            answered.insert(header(&msg, "Call-ID").unwrap_or("").to_string());
        }
    }
    server.kill();
    assert_eq!(answered.len(), 15, "every call was answered");
    let _restarted = setup.start();
    let calls = setup.wait_calls(|c| c.len() >= 15);
    assert_eq!(calls.len(), 15, "a row for every answered call: {calls:?}");
    assert!(
        calls
            .iter()
            .all(|c| c.outcome.as_deref() == Some("interrupted")),
        "{calls:?}"
    );
}
