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

/// What the server answers to a message of RFC 4475 / RFC 5118 (see
/// tests/sip-torture/README.md), as README.md's "What the server answers" promises.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Answered with exactly this final status.
    Status(u16),
    /// A response, or a message that cannot be answered: dropped without a word.
    Dropped,
}

fn torture_expectations() -> Vec<(&'static str, Expect)> {
    use Expect::*;
    // Valid requests get what any such request gets: OPTIONS 200, REGISTER the registrar's
    // 401 challenge, an INVITE for a number no company has 404, a request inside a dialog
    // we do not know 481, an unknown method 501, a known one we do not serve 405.
    // Malformed requests get 400 (505 for another SIP version, 416 for an unknown URI
    // scheme, 420 for an unsupported Require, 415/406 for bodies we cannot read).
    let mut v = vec![
        ("rfc4475/wsinv", Status(481)), // its To has a tag: a dialog we never made
        ("rfc4475/intmeth", Status(501)),
        ("rfc4475/esc01", Status(404)),
        ("rfc4475/escnull", Status(401)),
        ("rfc4475/esc02", Status(501)),
        ("rfc4475/lwsdisp", Status(200)),
        ("rfc4475/longreq", Status(404)),
        ("rfc4475/dblreq", Status(401)),
        ("rfc4475/semiuri", Status(200)),
        ("rfc4475/transports", Status(200)),
        ("rfc4475/mpart01", Status(405)), // MESSAGE
        ("rfc4475/unreason", Dropped),
        ("rfc4475/noreason", Dropped),
        ("rfc4475/badinv01", Status(400)),
        ("rfc4475/clerr", Status(400)),
        ("rfc4475/ncl", Status(400)),
        ("rfc4475/scalar02", Status(400)),
        ("rfc4475/scalarlg", Dropped),
        ("rfc4475/quotbal", Status(400)),
        ("rfc4475/ltgtruri", Status(400)),
        ("rfc4475/lwsruri", Status(400)),
        ("rfc4475/lwsstart", Status(400)),
        ("rfc4475/trws", Status(400)),
        ("rfc4475/escruri", Status(400)),
        ("rfc4475/baddate", Status(400)),
        ("rfc4475/regbadct", Status(400)),
        ("rfc4475/badaspec", Status(400)),
        ("rfc4475/baddn", Status(400)),
        ("rfc4475/badvers", Status(505)),
        ("rfc4475/mismatch01", Status(400)),
        ("rfc4475/mismatch02", Status(400)),
        ("rfc4475/bigcode", Dropped),
        ("rfc4475/badbranch", Status(200)),
        ("rfc4475/insuf", Status(400)),
        ("rfc4475/unkscm", Status(416)),
        // `soap.beep:` is registered but not a scheme we serve: 416 as well.
        ("rfc4475/novelsc", Status(416)),
        ("rfc4475/unksm2", Status(401)),
        ("rfc4475/bext01", Status(420)),
        ("rfc4475/invut", Status(415)),
        ("rfc4475/regaut01", Status(401)),
        ("rfc4475/multi01", Status(400)),
        ("rfc4475/mcl01", Status(400)),
        ("rfc4475/bcast", Dropped),
        ("rfc4475/zeromf", Status(200)), // Max-Forwards 0 is for proxies; we are the UAS
        ("rfc4475/cparam01", Status(401)),
        ("rfc4475/cparam02", Status(401)),
        ("rfc4475/regescrt", Status(401)),
        ("rfc4475/sdp01", Status(406)),
        ("rfc4475/inv2543", Status(404)),
        ("rfc5118/ipv6-good", Status(401)),
        ("rfc5118/port-ambiguous", Status(401)),
        ("rfc5118/port-unambiguous", Status(401)),
        ("rfc5118/ipv6-in-sdp", Status(404)),
        ("rfc5118/mult-ip-in-header", Status(481)), // BYE with a To tag
        ("rfc5118/mult-ip-in-sdp", Status(404)),
        ("rfc5118/ipv4-mapped-ipv6", Status(404)),
        ("rfc5118/via-received-param-with-delim", Status(481)), // BYE with a To tag
        ("rfc5118/via-received-param-no-delim", Status(200)),
        ("rfc5118/ipv6-correct-abnf-2-colons", Status(200)),
        ("rfc5118/ipv6-bad", Status(400)),
    ];
    // RFC 5118 §4.10: three colons follow an ABNF bug; we side with the corrected ABNF and refuse.
    v.push(("rfc5118/ipv6-bug-abnf-3-colons", Status(400)));
    v
}

/// Headers an answer must carry besides its status: what tells the peer why.
fn torture_headers(name: &str) -> &'static [&'static str] {
    match name {
        "rfc4475/bext01" => &["Unsupported: nothingSupportsThis, nothingSupportsThisEither"],
        "rfc4475/invut" | "rfc4475/sdp01" => &["Accept: application/sdp"],
        "rfc4475/mpart01" => &["Allow: INVITE"],
        "rfc4475/escnull"
        | "rfc4475/dblreq"
        | "rfc4475/unksm2"
        | "rfc4475/regaut01"
        | "rfc4475/cparam01"
        | "rfc4475/cparam02"
        | "rfc4475/regescrt"
        | "rfc5118/ipv6-good"
        | "rfc5118/port-ambiguous"
        | "rfc5118/port-unambiguous" => &["WWW-Authenticate: Digest"],
        _ => &[],
    }
}

fn torture_dir() -> PathBuf {
    repo().join("tests/sip-torture")
}

fn first_answer(sock: &UdpSocket, wait: Duration) -> Option<u16> {
    final_answer(sock, wait).and_then(|text| status_of(text.as_bytes()))
}

/// The first final response (or unparsable datagram) that arrives within `wait`.
fn final_answer(sock: &UdpSocket, wait: Duration) -> Option<String> {
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => match status_of(&buf[..n]) {
                // Provisional answers are not the verdict.
                Some(s) if s < 200 => continue,
                _ => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            },
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn every_torture_message_gets_the_answer_the_readme_promises_and_the_server_survives() {
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
        let wait = match expect {
            Expect::Dropped => 400,
            Expect::Status(_) => 2000,
        };
        let answer = final_answer(&sock, Duration::from_millis(wait));
        let status = answer.as_deref().and_then(|a| status_of(a.as_bytes()));
        match (expect, &answer) {
            (Expect::Dropped, None) => {}
            (Expect::Status(want), Some(text)) if status == Some(want) => {
                for header in torture_headers(name) {
                    if !text.contains(header) {
                        failures.push(format!("{name}: {want} without `{header}`:\n{text}"));
                    }
                }
            }
            _ => failures.push(format!(
                "{name}: expected {expect:?}, got {:?}",
                answer
                    .as_deref()
                    .map(|a| a.lines().next().unwrap_or_default())
            )),
        }
        if name == "rfc4475/dblreq" {
            // The datagram carries an INVITE after the REGISTER's body: ignored, not answered.
            sock.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut buf = [0u8; 65536];
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                failures.push(format!(
                    "{name}: the trailing octets were answered: {}",
                    String::from_utf8_lossy(&buf[..n])
                ));
            }
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

/// Our 200 to a request the server sent us (a BYE): its Via, From, To, Call-ID and CSeq.
fn ok_to(request: &str) -> String {
    let copied: Vec<&str> = request
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| {
            let name = l.split(':').next().unwrap_or_default().trim();
            ["via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"]
                .contains(&name.to_ascii_lowercase().as_str())
        })
        .collect();
    format!(
        "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
        copied.join("\r\n")
    )
}

/// Reads SIP messages on `sock` for up to `within`, until one whose first line starts with
/// `prefix`; returns it and every message read before it.
fn read_until(sock: &UdpSocket, prefix: &str, within: Duration) -> (Option<String>, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut before = Vec::new();
    let mut buf = [0u8; 65536];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            break;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with(prefix) {
            return (Some(text), before);
        }
        before.push(text);
    }
    (None, before)
}

#[test]
fn without_ack_the_200_is_retransmitted_then_the_server_hangs_up_and_the_call_failed() {
    let setup = greeting_setup(r#"[{ play = "tone/long.wav" }]"#);
    // T1 = 50 ms: the ACK wait, 64·T1, is 3.2 s.
    setup.add_config_lines("sip", "t1_ms = 50");
    let server = setup.start();
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sip.local_addr().unwrap();
    sip.send_to(
        invite(local, "noack-1", "z9hG4bKnoack", 9).as_bytes(),
        server.addr,
    )
    .unwrap();
    let start = Instant::now();
    let (bye, before) = read_until(&sip, "BYE ", Duration::from_secs(10));
    let waited = start.elapsed();
    let bye = bye.unwrap_or_else(|| {
        panic!(
            "no BYE within 10 s of an unacknowledged 200 ({} messages: {:?})\n{}",
            before.len(),
            before
                .iter()
                .map(|m| m.lines().next().unwrap_or_default())
                .collect::<Vec<_>>(),
            server.log()
        )
    });
    let oks = before
        .iter()
        .filter(|m| m.starts_with("SIP/2.0 200"))
        .count();
    // Retransmitted at 50, 150, 350, 750, 1550 and 3150 ms after the first.
    assert!(
        oks >= 5,
        "the 200 is retransmitted while no ACK comes: {oks} copies"
    );
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(6),
        "BYE after 64·T1 (3.2 s), not {waited:?}"
    );
    assert!(bye.contains("Call-ID: noack-1"), "{bye}");
    sip.send_to(ok_to(&bye).as_bytes(), server.addr).unwrap();
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(
        calls[0].outcome.as_deref(),
        Some("failed"),
        "a call whose ACK never came failed"
    );
    let events = setup.events(calls[0].id);
    assert!(
        events.contains(&"no-ack".to_string()) && events.contains(&"bye-sent".to_string()),
        "{events:?}"
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
    // A few consecutive packets (one SSRC, sequence numbers in a row): the server's strict
    // latching takes four before it moves.
    for seq in 1..=4u8 {
        let mut rtp = vec![0x80u8, 0, 0, seq, 0, 0, 0, 160, 1, 2, 3, 4];
        rtp.extend_from_slice(&[0xFF; 160]);
        nat.send_to(&rtp, SocketAddr::from(([127, 0, 0, 1], port)))
            .unwrap();
    }
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
    // Over TCP the connection that sent it is closed: the peer sees the end of the
    // stream (or a reset, the server having left our bytes unread), within 3 s.
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let closed_kinds = [
        std::io::ErrorKind::ConnectionReset,
        std::io::ErrorKind::ConnectionAborted,
        std::io::ErrorKind::BrokenPipe,
    ];
    let mut answered = Vec::new();
    let closed = match tcp.write_all(big.as_bytes()) {
        Err(e) if closed_kinds.contains(&e.kind()) => true,
        Err(e) => panic!("writing to the server: {e}"),
        Ok(()) => loop {
            let mut buf = [0u8; 4096];
            match tcp.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => answered.extend_from_slice(&buf[..n]),
                Err(e) if closed_kinds.contains(&e.kind()) => break true,
                // Timed out: the connection is still open.
                Err(_) => break false,
            }
        },
    };
    assert!(
        closed,
        "the connection that sent an oversized message is still open after 3 s"
    );
    assert!(
        answered.is_empty() || status_of(&answered).is_some_and(|s| s >= 400),
        "{}",
        String::from_utf8_lossy(&answered)
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

/// The ACK for a 2xx received on a dialog made with [`invite`] (From tag `caller`).
fn ack_for(ok: &str, local: SocketAddr, call_id: &str) -> String {
    let to = header(ok, "To");
    format!(
        "ACK sip:{NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}ack\r\n\
         From: <sip:+33612345678@127.0.0.1>;tag=caller\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Nothing at all arrives on `sock` within `wait`.
fn assert_silent(sock: &UdpSocket, wait: Duration, what: &str) {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 65536];
    if let Ok((n, from)) = sock.recv_from(&mut buf) {
        panic!(
            "{what}: got from {from}:\n{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}

/// A phone behind NAT writes its private address in Via and Contact; the server must answer
/// where the packets really come from (as if every request carried `rport`).
#[test]
fn answers_and_our_bye_go_to_the_packets_source_not_to_a_via_that_lies() {
    let setup = greeting_setup(r#"[{ play = "tone/a.wav" }, { hangup = {} }]"#);
    let server = setup.start();
    let real = UdpSocket::bind("127.0.0.1:0").unwrap();
    // The address the phone believes it has: nobody reads there from outside.
    let claimed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let claimed_addr = claimed.local_addr().unwrap();

    let options = format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {claimed_addr};branch=z9hG4bKnatopt\r\n\
         From: <sip:nat@127.0.0.1>;tag=n\r\nTo: <sip:127.0.0.1>\r\nCall-ID: nat-options\r\n\
         CSeq: 1 OPTIONS\r\nContact: <sip:nat@{claimed_addr}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    real.send_to(options.as_bytes(), server.addr).unwrap();
    let answer = wait_for(&real, "SIP/2.0");
    assert_eq!(status_of(answer.as_bytes()), Some(200), "{answer}");

    // A whole call: INVITE and ACK from `real`, Via and Contact naming `claimed`.
    real.send_to(
        invite(claimed_addr, "nat-call", "z9hG4bKnatinv", 9).as_bytes(),
        server.addr,
    )
    .unwrap();
    let ok = wait_for(&real, "SIP/2.0 200");
    real.send_to(
        ack_for(&ok, claimed_addr, "nat-call").as_bytes(),
        server.addr,
    )
    .unwrap();
    // The plan hangs up after its 3.5 s greeting: the BYE too comes to the real address.
    let (bye, _) = read_until(&real, "BYE ", Duration::from_secs(10));
    let bye = bye.unwrap_or_else(|| panic!("no BYE at the source address\n{}", server.log()));
    real.send_to(ok_to(&bye).as_bytes(), server.addr).unwrap();
    assert_silent(
        &claimed,
        Duration::from_millis(100),
        "nothing goes to the address the Via claims",
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].outcome.as_deref(), Some("completed"));
}

/// SIGTERM: new calls are refused with 503 during the grace period, the live call gets our
/// BYE, its row says `interrupted`, and the server exits cleanly.
#[test]
fn a_stopping_server_refuses_new_calls_during_the_grace_and_hangs_up_the_live_one() {
    let setup = greeting_setup(r#"[{ play = "tone/long.wav" }]"#);
    let mut server = setup.start();
    let live = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = live.local_addr().unwrap();
    live.send_to(
        invite(local, "stop-live", "z9hG4bKstoplive", 9).as_bytes(),
        server.addr,
    )
    .unwrap();
    let ok = wait_for(&live, "SIP/2.0 200");
    live.send_to(ack_for(&ok, local, "stop-live").as_bytes(), server.addr)
        .unwrap();
    setup.wait_calls(|c| c.len() == 1 && c[0].answered);

    server.send_sigterm_no_wait();
    let (bye, _) = read_until(&live, "BYE ", Duration::from_secs(3));
    let bye = bye.unwrap_or_else(|| panic!("no BYE after SIGTERM\n{}", server.log()));
    assert!(bye.contains("Call-ID: stop-live"), "{bye}");
    // Our BYE is not answered yet: the server waits for it (grace: 3 s), and meanwhile
    // takes no new call.
    let late = invite_from("127.0.0.1", server.addr, "stop-late");
    let (refused, _) = read_until(&late, "SIP/2.0 5", Duration::from_secs(2));
    let refused = refused.unwrap_or_else(|| {
        panic!(
            "no 5xx for a call during the grace period\n{}",
            server.log()
        )
    });
    assert!(refused.starts_with("SIP/2.0 503"), "{refused}");
    assert!(refused.contains("Retry-After:"), "{refused}");
    live.send_to(ok_to(&bye).as_bytes(), server.addr).unwrap();

    let status = server.wait_for_exit_within(Duration::from_secs(10));
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let calls = setup.calls();
    let row = calls
        .iter()
        .find(|c| c.answered)
        .unwrap_or_else(|| panic!("{calls:?}"));
    assert!(row.ended, "{row:?}");
    assert_eq!(row.outcome.as_deref(), Some("interrupted"), "{calls:?}");
    assert!(calls.iter().all(|c| c.ended), "no row left open: {calls:?}");
}

/// The value of `key=N` in the log line that contains `line`.
fn logged_count(log: &str, line: &str, key: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains(line))?;
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn malformed_and_dropped_messages_are_counted_and_the_counts_logged_at_shutdown() {
    let setup = greeting_setup(r#"[{ play = "tone/a.wav" }]"#);
    let mut server = setup.start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sock.local_addr().unwrap();
    // Three malformed requests, each answered.
    for (file, want) in [("badinv01", 400), ("badvers", 505), ("unkscm", 416)] {
        let bytes = std::fs::read(torture_dir().join(format!("rfc4475/{file}.dat"))).unwrap();
        sock.send_to(&bytes, server.addr).unwrap();
        assert_eq!(
            first_answer(&sock, Duration::from_secs(2)),
            Some(want),
            "{file}"
        );
    }
    // Four messages dropped without a word: two stray responses, garbage, and a datagram
    // over the size limit.
    let stray = |n: u32| {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKstray{n}\r\nFrom: <sip:a@b>;tag=1\r\n\
             To: <sip:c@d>;tag=2\r\nCall-ID: stray-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let big = format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbig\r\nFrom: <sip:a@b>;tag=1\r\n\
         To: <sip:c@d>\r\nCall-ID: big\r\nCSeq: 1 OPTIONS\r\nX-Padding: {}\r\nContent-Length: 0\r\n\r\n",
        "x".repeat(20_000)
    );
    for message in [
        stray(1).into_bytes(),
        stray(2).into_bytes(),
        b"hello, is anybody there?\r\n\r\n".to_vec(),
        big.into_bytes(),
    ] {
        sock.send_to(&message, server.addr).unwrap();
    }
    assert_eq!(
        first_answer(&sock, Duration::from_millis(500)),
        None,
        "dropped messages are not answered"
    );
    // An OPTIONS after them: once it is answered, they have all been read.
    let options = format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKafter\r\nFrom: <sip:a@b>;tag=1\r\n\
         To: <sip:c@d>\r\nCall-ID: after\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(options.as_bytes(), server.addr).unwrap();
    assert_eq!(first_answer(&sock, Duration::from_secs(2)), Some(200));

    let status = server.terminate();
    assert!(status.success(), "{status}");
    let log = server.wait_for_log_line("malformed_answered=", Duration::from_secs(3));
    assert_eq!(
        (
            logged_count(&log, "stopped", "dropped"),
            logged_count(&log, "stopped", "malformed_answered")
        ),
        (Some(4), Some(3)),
        "the shutdown line counts what was dropped and what was refused:\n{log}"
    );
}

/// `limits.max_tcp_connections`: one connection over the limit is closed at once; the
/// ones already open go on.
#[test]
fn a_tcp_connection_over_the_limit_is_closed_at_once() {
    let setup = greeting_setup(r#"[{ play = "tone/a.wav" }]"#);
    setup.add_config_lines("limits", "max_tcp_connections = 1");
    let server = setup.start();
    let options = |n: u32| {
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKtcp{n}\r\nFrom: <sip:a@b>;tag=1\r\n\
             To: <sip:c@d>\r\nCall-ID: tcp-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let ask = |tcp: &mut TcpStream, n: u32| -> Option<u16> {
        tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        tcp.write_all(options(n).as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = tcp.read(&mut buf).ok()?;
        status_of(&buf[..n])
    };
    let mut first = TcpStream::connect(server.addr).unwrap();
    assert_eq!(
        ask(&mut first, 1),
        Some(200),
        "the first connection is served"
    );

    let mut second = TcpStream::connect(server.addr).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let read = second.read(&mut buf);
    assert!(
        matches!(read, Ok(0))
            || read.as_ref().is_err_and(|e| matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            )),
        "the connection over the limit is closed: {read:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed at once, not after {:?}",
        started.elapsed()
    );
    assert_eq!(ask(&mut first, 2), Some(200), "the open connection goes on");
    // Once the first is closed, a new connection is served again.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = TcpStream::connect(server.addr).unwrap();
        if ask(&mut again, 3) == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a connection is served again after the first closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn with_only_udp_configured_no_tcp_listener_is_opened() {
    let setup = greeting_setup(r#"[{ play = "tone/a.wav" }]"#);
    setup.add_config_lines("sip", "transports = [\"udp\"]");
    let server = setup.start();
    assert_eq!(options_status(server.addr), Some(200), "UDP is served");
    let tcp = TcpStream::connect_timeout(&server.addr, Duration::from_secs(2));
    assert!(
        tcp.as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "nothing listens on TCP {}: {tcp:?}",
        server.addr
    );
}

/// `media.address`: RTP comes from that address and the SDP answer names it.
#[test]
fn the_media_address_is_the_one_the_sdp_names_and_rtp_comes_from() {
    let setup = greeting_setup(r#"[{ play = "tone/a.wav" }, { hangup = {} }]"#);
    setup.add_config_lines("media", "address = \"127.0.0.2\"");
    let server = setup.start();
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sip.local_addr().unwrap();
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    sip.send_to(
        invite(
            local,
            "media-addr",
            "z9hG4bKmediaaddr",
            rtp.local_addr().unwrap().port(),
        )
        .as_bytes(),
        server.addr,
    )
    .unwrap();
    let ok = wait_for(&sip, "SIP/2.0 200");
    sip.send_to(ack_for(&ok, local, "media-addr").as_bytes(), server.addr)
        .unwrap();
    let body = &ok[ok.find("\r\n\r\n").unwrap() + 4..];
    assert!(
        body.lines().any(|l| l == "c=IN IP4 127.0.0.2"),
        "the SDP answer names the media address:\n{body}"
    );
    assert!(
        !body.contains("127.0.0.1"),
        "the SIP address is not advertised for media:\n{body}"
    );
    let port: u16 = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{body}"));
    let packets = collect_rtp(&rtp, Duration::from_millis(300), Duration::from_secs(2));
    assert!(packets.len() >= 20, "{} packets", packets.len());
    let from = SocketAddr::from(([127, 0, 0, 2], port));
    assert!(
        packets.iter().all(|p| p.from == from),
        "RTP comes from {from}: {:?}",
        packets.first().map(|p| p.from)
    );
}

/// README: an INVITE without SDP (a delayed offer) is answered 488 today.
#[test]
fn an_invite_without_sdp_gets_488() {
    let setup = greeting_setup(r#"[{ play = "tone/a.wav" }]"#);
    let server = setup.start();
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sip.local_addr().unwrap();
    let msg = format!(
        "INVITE sip:{NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKnosdp\r\n\
         From: <sip:+33612345678@127.0.0.1>;tag=caller\r\nTo: <sip:{NUMBER}@127.0.0.1>\r\nCall-ID: no-sdp\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@{local}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sip.send_to(msg.as_bytes(), server.addr).unwrap();
    let answer = final_answer(&sip, Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no answer\n{}", server.log()));
    assert_eq!(status_of(answer.as_bytes()), Some(488), "{answer}");
}

/// `media.rtp_timeout_seconds = 0` turns the RTP time-out off: a conversation in which
/// nobody sends audio for longer than the 30 s default goes on until someone hangs up.
#[test]
fn with_the_rtp_timeout_off_a_silent_conversation_is_not_cut() {
    let setup = greeting_setup(r#"[{ secretary = { timeout = 15 } }, { hangup = {} }]"#);
    setup.add_config_lines("media", "rtp_timeout_seconds = 0");
    setup.add_config_lines(
        "registrar",
        "keepalive_seconds = 0\n\n[[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\n\
         ha1_md5 = \"f5311f8276f6090e9cd6e52b1b126248\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]",
    );
    let server = setup.start();
    let alice_port = free_port();
    register_from(setup.addr(), alice_port, "alice", "alice");
    // Alice answers, says half a second, then nothing; she waits for our BYE.
    let (mut alice, _heard) = listening_phone(&setup, alice_port, "alice");
    wait_sipp_phone_ready(&mut alice, alice_port);
    let (_rtp, port) = rtp_socket();
    // The caller sends no audio at all and hangs up after 32 s: an RTP time-out (the
    // default's 30 s, or at once) would BYE it first, which fails the scenario.
    let started = Instant::now();
    let out = sipp_call(
        "bye_after_pause.xml",
        setup.addr(),
        NUMBER,
        &port,
        "0",
        &["-d", "32000"],
    );
    assert_sipp_ok(&out);
    assert!(
        started.elapsed() >= Duration::from_secs(32),
        "{:?}",
        started.elapsed()
    );
    assert_sipp_ok(&finish(alice));
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].outcome.as_deref(), Some("secretary"));
    let events = setup.events(calls[0].id);
    assert!(
        !events.iter().any(|e| e == "rtp-timeout") && events.iter().any(|e| e == "bye-received"),
        "the caller's BYE ended it, not a time-out: {events:?}\n{}",
        server.log()
    );
}
