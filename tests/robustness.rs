//! Bad input, retransmissions, NAT, crashes and stops: the server answers clearly,
//! makes one call per INVITE, and loses no record.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

const NUMBER: &str = "+33180000001";

fn greeting_setup(steps: &str) -> Setup {
    Setup::new(&[("acme.toml", &plan("acme", NUMBER, steps))])
}

/// What RFC 4475 / RFC 5118 expect of a message (see tests/sip-torture/README.md).
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A valid request: answered, and not as malformed (no 400 / 505).
    Accept,
    /// Invalid: an error response or nothing, never success.
    Reject,
    /// Valid syntax answered with exactly this status.
    Status(u16),
    /// A response: nothing to answer; the server must just survive it.
    Response,
}

fn torture_expectations() -> Vec<(&'static str, Expect)> {
    use Expect::*;
    let mut v = vec![
        ("rfc4475/wsinv", Accept),
        ("rfc4475/intmeth", Status(501)),
        ("rfc4475/esc01", Accept),
        ("rfc4475/escnull", Accept),
        ("rfc4475/esc02", Status(501)),
        ("rfc4475/lwsdisp", Accept),
        ("rfc4475/longreq", Accept),
        ("rfc4475/dblreq", Accept),
        ("rfc4475/semiuri", Accept),
        ("rfc4475/transports", Accept),
        ("rfc4475/mpart01", Accept),
        ("rfc4475/unreason", Response),
        ("rfc4475/noreason", Response),
        ("rfc4475/badinv01", Reject),
        ("rfc4475/clerr", Reject),
        ("rfc4475/ncl", Reject),
        ("rfc4475/scalar02", Reject),
        ("rfc4475/scalarlg", Response),
        ("rfc4475/quotbal", Reject),
        ("rfc4475/ltgtruri", Reject),
        ("rfc4475/lwsruri", Reject),
        ("rfc4475/lwsstart", Reject),
        ("rfc4475/trws", Reject),
        ("rfc4475/escruri", Reject),
        ("rfc4475/baddate", Reject),
        ("rfc4475/regbadct", Reject),
        ("rfc4475/badaspec", Reject),
        ("rfc4475/baddn", Reject),
        ("rfc4475/badvers", Status(505)),
        ("rfc4475/mismatch01", Reject),
        ("rfc4475/mismatch02", Reject),
        ("rfc4475/bigcode", Response),
        ("rfc4475/badbranch", Accept),
        ("rfc4475/insuf", Status(400)),
        ("rfc4475/unkscm", Status(416)),
        ("rfc4475/novelsc", Accept),
        ("rfc4475/unksm2", Accept),
        ("rfc4475/bext01", Status(420)),
        ("rfc4475/invut", Status(415)),
        ("rfc4475/regaut01", Accept),
        ("rfc4475/multi01", Status(400)),
        ("rfc4475/mcl01", Status(400)),
        ("rfc4475/bcast", Response),
        ("rfc4475/zeromf", Accept),
        ("rfc4475/cparam01", Accept),
        ("rfc4475/cparam02", Accept),
        ("rfc4475/regescrt", Accept),
        ("rfc4475/sdp01", Status(406)),
        ("rfc4475/inv2543", Accept),
    ];
    for f in [
        "ipv6-good",
        "port-ambiguous",
        "port-unambiguous",
        "ipv6-in-sdp",
        "mult-ip-in-header",
        "mult-ip-in-sdp",
        "ipv4-mapped-ipv6",
        "via-received-param-with-delim",
        "via-received-param-no-delim",
        "ipv6-correct-abnf-2-colons",
    ] {
        v.push((Box::leak(format!("rfc5118/{f}").into_boxed_str()), Accept));
    }
    v.push(("rfc5118/ipv6-bad", Reject));
    // RFC 5118 §4.10: three colons follow an ABNF bug; we side with the corrected ABNF and refuse.
    v.push(("rfc5118/ipv6-bug-abnf-3-colons", Reject));
    v
}

fn torture_dir() -> PathBuf {
    repo().join("tests/sip-torture")
}

fn first_answer(sock: &UdpSocket, wait: Duration) -> Option<u16> {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => match status_of(&buf[..n]) {
                // Provisional answers are not the verdict.
                Some(s) if s < 200 => continue,
                other => return other,
            },
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn every_torture_message_gets_the_answer_the_rfcs_expect_and_the_server_survives() {
    let setup = greeting_setup(r#"[{ play = "tone/a.wav" }]"#);
    let server = setup.start();
    let mut failures = Vec::new();
    let expectations = torture_expectations();
    let files = std::fs::read_dir(torture_dir().join("rfc4475"))
        .unwrap()
        .count()
        + std::fs::read_dir(torture_dir().join("rfc5118"))
            .unwrap()
            .count();
    assert_eq!(
        expectations.len(),
        files,
        "every torture file has an expectation"
    );
    for (name, expect) in expectations {
        let path = torture_dir().join(if name.starts_with("rfc4475") {
            format!("{name}.dat")
        } else {
            name.to_string()
        });
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.send_to(&bytes, server.addr).unwrap();
        let wait = if matches!(expect, Expect::Response | Expect::Reject) {
            400
        } else {
            2000
        };
        let answer = first_answer(&sock, Duration::from_millis(wait));
        let ok = match (expect, answer) {
            (Expect::Accept, Some(s)) => s != 400 && s != 505,
            (Expect::Accept, None) => false,
            (Expect::Reject, Some(s)) => s >= 400,
            (Expect::Reject, None) => true,
            (Expect::Status(want), got) => got == Some(want),
            (Expect::Response, got) => got.is_none(),
        };
        if !ok {
            failures.push(format!("{name}: expected {expect:?}, got {answer:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n--- server log ---\n{}",
        failures.join("\n"),
        server.log()
    );
    assert_eq!(
        options_status(server.addr),
        Some(200),
        "the server still answers after the torture"
    );
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

fn invite(local: SocketAddr, call_id: &str, branch: &str, rtp_port: u16) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    format!(
        "INVITE sip:{NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
         From: <sip:+33612345678@127.0.0.1>;tag=caller\r\nTo: <sip:{NUMBER}@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@{local}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// Reads SIP messages until one whose first line starts with `prefix`.
fn wait_for(sock: &UdpSocket, prefix: &str) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 65536];
    loop {
        let (n, _) = sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("waiting for {prefix}: {e}"));
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with(prefix) {
            return text;
        }
    }
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

#[test]
fn a_retransmitted_invite_never_makes_a_second_call() {
    let setup = greeting_setup(r#"[{ ring = 1 }, { play = "tone/a.wav" }]"#);
    let server = setup.start();
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sip.local_addr().unwrap();
    let msg = invite(local, "retrans-1", "z9hG4bKretrans", 9);
    for _ in 0..3 {
        sip.send_to(msg.as_bytes(), server.addr).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for(&sip, "SIP/2.0 200");
    let calls = setup.wait_calls(|c| !c.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(setup.calls().len(), 1, "one INVITE, one call: {calls:?}");
}

#[test]
fn without_ack_the_200_is_retransmitted_then_the_call_ends_with_bye() {
    // Timer H is 32 s: we check the retransmissions and leave the BYE to the unit test.
    let setup = greeting_setup(r#"[{ play = "tone/long.wav" }]"#);
    let server = setup.start();
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sip.local_addr().unwrap();
    sip.send_to(
        invite(local, "noack-1", "z9hG4bKnoack", 9).as_bytes(),
        server.addr,
    )
    .unwrap();
    let start = Instant::now();
    wait_for(&sip, "SIP/2.0 200");
    wait_for(&sip, "SIP/2.0 200");
    wait_for(&sip, "SIP/2.0 200");
    let elapsed = start.elapsed();
    // T1 = 500 ms, then 1 s: the third copy comes about 1.5 s after the first.
    assert!(
        elapsed >= Duration::from_millis(1300) && elapsed < Duration::from_millis(3000),
        "{elapsed:?}"
    );
}

#[test]
fn rtp_follows_the_caller_to_where_its_packets_come_from() {
    let setup = greeting_setup(r#"[{ play = "tone/long.wav" }]"#);
    let server = setup.start();
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sip.local_addr().unwrap();
    // The SDP names a port nobody reads (the caller is behind NAT); its RTP comes from `nat`.
    let advertised = UdpSocket::bind("127.0.0.1:0").unwrap();
    let nat = UdpSocket::bind("127.0.0.1:0").unwrap();
    sip.send_to(
        invite(
            local,
            "nat-1",
            "z9hG4bKnat",
            advertised.local_addr().unwrap().port(),
        )
        .as_bytes(),
        server.addr,
    )
    .unwrap();
    let ok = wait_for(&sip, "SIP/2.0 200");
    let to_tag = header(&ok, "To").to_string();
    let ack = format!(
        "ACK sip:{NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKnatack\r\nFrom: <sip:+33612345678@127.0.0.1>;tag=caller\r\n\
         To: {to_tag}\r\nCall-ID: nat-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sip.send_to(ack.as_bytes(), server.addr).unwrap();
    let body = &ok[ok.find("\r\n\r\n").unwrap() + 4..];
    let port: u16 = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        !collect_rtp(
            &advertised,
            Duration::from_millis(100),
            Duration::from_millis(500)
        )
        .is_empty(),
        "RTP first goes to the SDP address"
    );
    let mut rtp = vec![0x80u8, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
    rtp.extend_from_slice(&[0xFF; 160]);
    nat.send_to(&rtp, SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap();
    let followed = collect_rtp(&nat, Duration::from_millis(200), Duration::from_millis(800));
    assert!(
        followed.len() >= 10,
        "after the caller's first packet, RTP goes where it came from ({} packets)",
        followed.len()
    );
    let calls = setup.wait_calls(|c| c.len() == 1);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !setup
        .events(calls[0].id)
        .contains(&"rtp-latched".to_string())
    {
        assert!(
            Instant::now() < deadline,
            "latching recorded in the timeline"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn unknown_methods_get_501_and_unsupported_known_ones_405() {
    let setup = greeting_setup(r#"[{ play = "tone/a.wav" }]"#);
    let server = setup.start();
    for (method, want) in [("FROBNICATE", 501), ("SUBSCRIBE", 405), ("BYE", 481)] {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = sock.local_addr().unwrap();
        let msg = format!(
            "{method} sip:{NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{method}\r\nFrom: <sip:a@127.0.0.1>;tag=a\r\n\
             To: <sip:{NUMBER}@127.0.0.1>\r\nCall-ID: m-{method}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(msg.as_bytes(), server.addr).unwrap();
        let answer = wait_for(&sock, "SIP/2.0");
        assert_eq!(
            status_of(answer.as_bytes()),
            Some(want),
            "{method}: {answer}"
        );
        if want != 481 {
            assert!(answer.contains("Allow: INVITE"), "{answer}");
        }
    }
}

#[test]
fn oversized_messages_are_refused_and_the_server_goes_on() {
    let setup = greeting_setup(r#"[{ play = "tone/a.wav" }]"#);
    let server = setup.start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sock.local_addr().unwrap();
    let big = format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbig\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n\
         Call-ID: big\r\nCSeq: 1 OPTIONS\r\nX-Padding: {}\r\nContent-Length: 0\r\n\r\n",
        "x".repeat(40_000)
    );
    sock.send_to(big.as_bytes(), server.addr).unwrap();
    assert_eq!(
        first_answer(&sock, Duration::from_millis(500)),
        None,
        "an oversized datagram is dropped"
    );
    // Over TCP the connection that sent it is closed.
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    tcp.write_all(big.as_bytes()).unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    assert!(
        rest.is_empty() || status_of(&rest).is_some_and(|s| s >= 400),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(options_status(server.addr), Some(200));
}

#[test]
fn a_killed_server_leaves_the_call_marked_interrupted_at_the_next_start() {
    let setup = greeting_setup(r#"[{ play = "tone/long.wav" }]"#);
    let mut server = setup.start();
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    sip.send_to(
        invite(sip.local_addr().unwrap(), "kill-1", "z9hG4bKkill", 9).as_bytes(),
        server.addr,
    )
    .unwrap();
    wait_for(&sip, "SIP/2.0 200");
    let live = setup.wait_calls(|c| c.len() == 1);
    assert_eq!(live[0].outcome, None, "the row exists while the call is up");
    server.kill();
    let _server = setup.start();
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].outcome.as_deref(), Some("interrupted"));
    assert!(
        setup
            .events(calls[0].id)
            .contains(&"interrupted".to_string())
    );
}

#[test]
fn a_graceful_stop_hangs_up_live_calls_and_completes_their_rows() {
    let setup = greeting_setup(r#"[{ play = "tone/long.wav" }]"#);
    let mut server = setup.start();
    let addr = server.addr;
    let caller = std::thread::spawn(move || sipp_call("call.xml", addr, NUMBER, "9", "0", &[]));
    setup.wait_calls(|c| c.len() == 1 && c[0].answered);
    let status = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    // call.xml ends successfully only if it received our BYE.
    assert_sipp_ok(&caller.join().unwrap());
    let calls = setup.calls();
    assert_eq!(calls[0].outcome.as_deref(), Some("interrupted"));
    assert!(calls[0].ended);
}

#[test]
fn a_number_claimed_twice_stops_the_start_naming_both_files() {
    let setup = Setup::new(&[
        (
            "acme.toml",
            &plan("acme", NUMBER, r#"[{ play = "tone/a.wav" }]"#),
        ),
        (
            "bravo.toml",
            &plan(
                "bravo",
                "0033 1 80 00 00 01",
                r#"[{ play = "tone/a.wav" }]"#,
            ),
        ),
    ]);
    let err = setup.start_fails();
    assert!(
        err.contains("acme.toml:") && err.contains("bravo.toml:"),
        "{err}"
    );
    assert!(err.contains("+33180000001"), "{err}");
}

#[test]
fn a_missing_or_unplayable_sound_stops_the_start_naming_the_file() {
    let setup = greeting_setup(r#"[{ play = "tone/nope.wav" }]"#);
    let err = setup.start_fails();
    assert!(
        err.contains("acme.toml:8:10:") && err.contains("tone/nope.wav"),
        "{err}"
    );

    let setup = greeting_setup(r#"[{ play = "tone/cd.wav" }]"#);
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w =
        hound::WavWriter::create(setup.dir.path().join("sounds/tone/cd.wav"), spec).unwrap();
    w.write_sample(0i16).unwrap();
    w.write_sample(0i16).unwrap();
    w.finalize().unwrap();
    let err = setup.start_fails();
    assert!(
        err.contains("cd.wav") && err.contains("44100 Hz") && err.contains("expected 8000 Hz mono"),
        "{err}"
    );
}

#[test]
fn check_reports_every_broken_plan_with_location() {
    let setup = Setup::new(&[
        (
            "acme.toml",
            &plan(
                "acme",
                NUMBER,
                r#"[{ play = "tone/a.wav" }, { dance = {} }]"#,
            ),
        ),
        (
            "bravo.toml",
            &plan("bravo", "not-a-number", r#"[{ play = "tone/a.wav" }]"#),
        ),
    ]);
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(setup.config())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("acme.toml:8:37:") && err.contains("unknown variant `dance`, expected one of"),
        "{err}"
    );
    assert!(
        err.contains("bravo.toml:4:12:") && err.contains("expected E.164"),
        "{err}"
    );
}

/// A server with a long greeting and these lines added to `[limits]`.
fn limited_setup(limits: &str) -> Setup {
    let setup = greeting_setup(r#"[{ play = "tone/long.wav" }]"#);
    let text = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(
        setup.config(),
        text.replace("[limits]\n", &format!("[limits]\n{limits}\n")),
    )
    .unwrap();
    setup
}

/// Sends an INVITE from a new socket on `ip` and returns the socket.
fn invite_from(ip: &str, server: std::net::SocketAddr, call_id: &str) -> UdpSocket {
    let sock = UdpSocket::bind((ip, 0)).unwrap();
    let msg = invite(
        sock.local_addr().unwrap(),
        call_id,
        &format!("z9hG4bK{call_id}"),
        9,
    );
    sock.send_to(msg.as_bytes(), server).unwrap();
    sock
}

#[test]
fn beyond_max_calls_a_new_call_gets_503_with_retry_after() {
    let setup = limited_setup("max_calls = 1\nretry_after_seconds = 7");
    let server = setup.start();
    let first = invite_from("127.0.0.1", server.addr, "full-1");
    wait_for(&first, "SIP/2.0 200");
    let second = invite_from("127.0.0.1", server.addr, "full-2");
    let refused = wait_for(&second, "SIP/2.0 5");
    assert!(refused.starts_with("SIP/2.0 503"), "{refused}");
    assert_eq!(header(&refused, "Retry-After"), "7");
    // The log is read by another thread: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !server.log().contains("INVITE refused: 503") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.log().contains("INVITE refused: 503"),
        "the refusal is logged"
    );
}

#[test]
fn one_source_cannot_take_more_than_its_share_of_lines() {
    let setup = limited_setup("max_calls_per_source = 1");
    let server = setup.start();
    let first = invite_from("127.0.0.1", server.addr, "src-1");
    wait_for(&first, "SIP/2.0 200");
    // Same address, another port: still the same source.
    let second = invite_from("127.0.0.1", server.addr, "src-2");
    assert!(wait_for(&second, "SIP/2.0 5").starts_with("SIP/2.0 503"));
    // Another address on this machine is a different source.
    let other = invite_from("127.0.0.2", server.addr, "src-3");
    assert!(wait_for(&other, "SIP/2.0 200").starts_with("SIP/2.0 200"));
}
