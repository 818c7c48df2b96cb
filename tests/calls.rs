//! Calls end to end: the real server, called by SIPp over UDP and TCP.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;

const NUMBER: &str = "+33180000001";

fn greeting_plan() -> String {
    plan(
        "acme",
        NUMBER,
        r#"[{ play = "tone/a.wav" }, { hangup = {} }]"#,
    )
}

/// Calls with SIPp, the SDP pointing at a socket of ours, and checks the RTP we get.
fn call_and_check_rtp(setup: &Setup, offer: &str, expected_pt: u8, transport: &str) {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp_port = sink.local_addr().unwrap().port().to_string();
    let addr = setup.addr();
    let offer = offer.to_string();
    let transport = transport.to_string();
    let caller = std::thread::spawn(move || {
        sipp_call(
            "call.xml",
            addr,
            NUMBER,
            &rtp_port,
            &offer,
            &["-t", &transport],
        )
    });
    let packets = collect_rtp(&sink, Duration::from_millis(800), Duration::from_secs(20));
    assert_sipp_ok(&caller.join().unwrap());

    // 3.5 s of greeting: 175 packets of 20 ms.
    assert!(packets.len() >= 150, "only {} RTP packets", packets.len());
    assert_eq!(packets.len(), 175, "a 3.5 s sound is exactly 175 packets");
    let first = packets[0];
    assert!(first.marker, "marker bit on the first packet");
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.pt, expected_pt, "packet {i} payload type");
        assert_eq!(p.ssrc, first.ssrc, "one SSRC per stream");
        assert_eq!(p.len, 12 + 160, "20 ms of G.711 per packet");
        assert_eq!(
            p.seq,
            first.seq.wrapping_add(i as u16),
            "consecutive sequence numbers"
        );
        assert_eq!(
            p.ts,
            first.ts.wrapping_add(160 * i as u32),
            "timestamps advance 160 per packet"
        );
        if i > 0 {
            assert!(!p.marker, "marker only on the first packet");
        }
    }
    // Paced in real time: the span of 174 intervals is 3.48 s, within scheduling noise.
    let span = packets.last().unwrap().at - first.at;
    assert!(
        span >= Duration::from_millis(3400) && span <= Duration::from_millis(3700),
        "174 intervals took {span:?}, expected about 3.48 s"
    );
    let mut gaps: Vec<Duration> = packets.windows(2).map(|w| w[1].at - w[0].at).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        median >= Duration::from_millis(18) && median <= Duration::from_millis(22),
        "median spacing {median:?}"
    );
}

#[test]
fn greeting_arrives_as_paced_rtp_in_the_first_offered_codec_and_the_call_is_recorded() {
    let setup = Setup::new(&[("acme.toml", &greeting_plan())]);
    let _server = setup.start();
    call_and_check_rtp(&setup, "8 0 101", 8, "u1");
    call_and_check_rtp(&setup, "0 8 101", 0, "u1");
    let calls = setup.wait_calls(|c| c.len() == 2 && c.iter().all(|c| c.ended));
    assert_eq!(calls.len(), 2);
    for c in &calls {
        assert_eq!(c.company.as_deref(), Some("acme"));
        assert_eq!(c.dialled, NUMBER);
        assert_eq!(c.caller, "+33612345678");
        assert!(c.answered);
        assert_eq!(c.outcome.as_deref(), Some("completed"));
    }
    let events = setup.events(calls[0].id);
    assert!(
        events.contains(&"play".to_string()) && events.contains(&"bye-sent".to_string()),
        "{events:?}"
    );
}

#[test]
fn a_call_over_tcp_gets_the_greeting() {
    let setup = Setup::new(&[("acme.toml", &greeting_plan())]);
    let _server = setup.start();
    call_and_check_rtp(&setup, "0 101", 0, "t1");
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].outcome.as_deref(), Some("completed"));
}

#[test]
fn cancel_while_ringing_gives_487_and_an_abandoned_row() {
    let setup = Setup::new(&[(
        "acme.toml",
        &plan("acme", NUMBER, r#"[{ ring = 5 }, { play = "tone/a.wav" }]"#),
    )]);
    let _server = setup.start();
    let out = sipp_call("cancel.xml", setup.addr(), NUMBER, "9", "0", &[]);
    assert_sipp_ok(&out);
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].outcome.as_deref(), Some("abandoned"));
    assert!(!calls[0].answered);
    assert!(setup.events(calls[0].id).contains(&"cancelled".to_string()));
}

#[test]
fn an_unknown_number_gets_404_and_a_row() {
    let setup = Setup::new(&[("acme.toml", &greeting_plan())]);
    let _server = setup.start();
    let out = sipp_call("notfound.xml", setup.addr(), "+33199999999", "9", "0", &[]);
    assert_sipp_ok(&out);
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].company, None);
    assert_eq!(calls[0].dialled, "+33199999999");
    assert_eq!(calls[0].outcome.as_deref(), Some("rejected"));
}

#[test]
fn national_and_00_forms_of_the_number_reach_the_company() {
    let setup = Setup::new(&[("acme.toml", &greeting_plan())]);
    let _server = setup.start();
    for dialled in ["0180000001", "0033180000001"] {
        // call.xml succeeds only on a 200 and our BYE at the plan's end.
        let out = sipp_call("call.xml", setup.addr(), dialled, "9", "0", &[]);
        assert_sipp_ok(&out);
    }
    let calls = setup.wait_calls(|c| c.len() == 2 && c.iter().all(|c| c.ended));
    assert_eq!(calls.len(), 2, "one row per call: {calls:?}");
    for c in &calls {
        assert_eq!(
            (
                c.company.as_deref(),
                c.dialled.as_str(),
                c.outcome.as_deref()
            ),
            (Some("acme"), NUMBER, Some("completed")),
            "the company's call, the number stored as E.164: {c:?}"
        );
        assert!(c.answered, "{c:?}");
    }
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let messages: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE company = 'acme'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(messages, 2, "one message per call for the company");
}

#[test]
fn no_codec_in_common_gets_488() {
    let setup = Setup::new(&[("acme.toml", &greeting_plan())]);
    let _server = setup.start();
    let out = sipp(
        "nocodec.xml",
        setup.addr(),
        &[
            "-s",
            NUMBER,
            "-key",
            "caller",
            "+33612345678",
            "-key",
            "rtp_port",
            "9",
        ],
    );
    assert_sipp_ok(&out);
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].outcome.as_deref(), Some("failed"));
}

#[test]
fn the_caller_hanging_up_mid_greeting_ends_the_call_and_its_audio() {
    let setup = Setup::new(&[(
        "acme.toml",
        &plan("acme", NUMBER, r#"[{ play = "tone/long.wav" }]"#),
    )]);
    let _server = setup.start();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sink.local_addr().unwrap().port().to_string();
    let addr = setup.addr();
    // bye.xml hangs up 1.5 s after its ACK; meanwhile the greeting plays.
    let caller = std::thread::spawn(move || sipp_call("bye.xml", addr, NUMBER, &port, "0", &[]));
    sink.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut during = 0;
    while !caller.is_finished() {
        if sink.recv_from(&mut buf).is_ok() {
            during += 1;
        }
    }
    assert_sipp_ok(&caller.join().unwrap());
    // SIPp is done once our 200 to its BYE has arrived: 1.5 s of greeting before that.
    assert!(
        during >= 50,
        "the greeting was heard before the BYE: {during} packets"
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].outcome.as_deref(), Some("abandoned"));
    // What was already on its way is drained; then nothing more comes.
    std::thread::sleep(Duration::from_millis(100));
    sink.set_nonblocking(true).unwrap();
    while sink.recv_from(&mut buf).is_ok() {}
    sink.set_nonblocking(false).unwrap();
    let late = collect_rtp(
        &sink,
        Duration::from_millis(1000),
        Duration::from_millis(1000),
    );
    assert_eq!(late.len(), 0, "{} packets after the BYE", late.len());
}

#[test]
fn a_reinvite_is_answered_and_the_greeting_goes_on() {
    let setup = Setup::new(&[("acme.toml", &greeting_plan())]);
    let _server = setup.start();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sink.local_addr().unwrap().port().to_string();
    let addr = setup.addr();
    let caller =
        std::thread::spawn(move || sipp_call("reinvite.xml", addr, NUMBER, &port, "0", &[]));
    let packets = collect_rtp(&sink, Duration::from_millis(800), Duration::from_secs(20));
    assert_sipp_ok(&caller.join().unwrap());
    assert_eq!(
        packets.len(),
        175,
        "the whole greeting despite the re-INVITE"
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].outcome.as_deref(), Some("completed"));
    assert!(setup.events(calls[0].id).contains(&"reinvite".to_string()));
}

#[test]
fn options_gets_200() {
    let setup = Setup::new(&[("acme.toml", &greeting_plan())]);
    let _server = setup.start();
    assert_sipp_ok(&sipp("options.xml", setup.addr(), &["-s", "anything"]));
    assert_sipp_ok(&sipp(
        "options.xml",
        setup.addr(),
        &["-s", "anything", "-t", "t1"],
    ));
}

/// Through a proxy that record-routes: our 200 copies the Record-Route and our BYE follows
/// it as Route (RFC 3261 §12.1.1, §12.2.1.1); the SIPp scenario checks both headers.
#[test]
fn a_record_routed_call_gets_record_route_back_and_a_routed_bye() {
    let setup = Setup::new(&[("acme.toml", &greeting_plan())]);
    let _server = setup.start();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp_port = sink.local_addr().unwrap().port().to_string();
    assert_sipp_ok(&sipp_call(
        "call_rr.xml",
        setup.addr(),
        NUMBER,
        &rtp_port,
        "0",
        &[],
    ));
}
