//! Urgent calls reach executives: SIPp plays the caller, the executive's phone, a
//! secretary who transfers, and a provider's trunk that demands credentials.

mod common;

use std::net::UdpSocket;
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;

/// acme with executive marie reached at `reach`, the route `steps`, alice as secretary,
/// and `extra` config (a trunk). No keep-alives: SIPp phones play one scenario each.
fn setup(reach: &[String], steps: &str, extra: &str) -> Setup {
    let reach = reach
        .iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let plan = format!(
        "[company]\nid = \"acme\"\nname = \"ACME Plomberie\"\nnumbers = [\"+33180000001\"]\n\n\
         [executives.marie]\nname = \"Marie Durand\"\nreach = [{reach}]\n\n\
         [[route]]\nname = \"main\"\nsteps = {steps}\n"
    );
    let setup = Setup::new(&[("acme.toml", &plan)]);
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let team = "\n[registrar]\nkeepalive_seconds = 0\n\
        [[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\n\
        ha1_md5 = \"f5311f8276f6090e9cd6e52b1b126248\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n";
    std::fs::write(setup.config(), format!("{config}{team}{extra}")).unwrap();
    setup
}

fn transferred_to(setup: &Setup, call: i64) -> Option<String> {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    conn.query_row(
        "SELECT transferred_to FROM calls WHERE id = ?1",
        [call],
        |r| r.get(0),
    )
    .unwrap()
}

fn executive_phone(port: u16, rtp: &UdpSocket, key: &str, pcap: &std::path::Path) -> Child {
    sipp_phone(
        "executive.xml",
        port,
        &[
            "-key",
            "username",
            "marie",
            "-key",
            "rtp_port",
            &rtp.local_addr().unwrap().port().to_string(),
            "-key",
            "offer",
            "0",
            "-key",
            "key_pcap",
            &dtmf_pcap(key),
            "-key",
            "audio_pcap",
            pcap.to_str().unwrap(),
        ],
    )
}

/// The executive hears the announcement, presses 1 and is put through: each side hears
/// the other; the call is `transferred` to marie and filed urgent.
#[test]
fn a_screened_executive_who_presses_1_is_bridged_with_audio_both_ways() {
    let exec_port = free_port();
    let setup = setup(
        &[format!("sip:marie@127.0.0.1:{exec_port}")],
        r#"[{ transfer = { to = "marie", timeout = 15, screening = true } }, { hangup = {} }]"#,
        "",
    );
    let server = setup.start();
    let exec_pcap = setup.dir.path().join("exec.pcap");
    write_tone_pcap(&exec_pcap, 600.0, 2.0);
    let caller_pcap = setup.dir.path().join("caller.pcap");
    write_tone_pcap(&caller_pcap, 1000.0, 3.0);
    let exec_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut exec = executive_phone(exec_port, &exec_rtp, "1", &exec_pcap);
    wait_sipp_phone_ready(&mut exec, exec_port);
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = caller_rtp.local_addr().unwrap().port().to_string();
    let addr = setup.addr();
    let pcap = caller_pcap.to_str().unwrap().to_string();
    let caller = std::thread::spawn(move || {
        sipp_call(
            "talk_hangup.xml",
            addr,
            "+33180000001",
            &port,
            "0",
            &["-key", "audio_pcap", &pcap],
        )
    });
    let heard_by_exec = std::thread::spawn(move || hear(&exec_rtp, Duration::from_secs(15)).1);
    let (_, heard_by_caller) = hear(&caller_rtp, Duration::from_secs(15));
    let heard_by_exec = heard_by_exec.join().unwrap();
    assert_sipp_ok(&caller.join().unwrap());
    assert_sipp_ok(&finish(exec));

    // The executive first hears the announcement (speech), then the caller's 1 kHz tone.
    let tail = &heard_by_exec[heard_by_exec.len().saturating_sub(8000)..];
    let f = tone_frequency(tail);
    assert!(
        (950.0..1050.0).contains(&f),
        "the executive heard {f} Hz at the end\n{}",
        server.log()
    );
    let f = tone_frequency(&heard_by_caller[..heard_by_caller.len().min(8000)]);
    assert!(
        (570.0..630.0).contains(&f),
        "the caller heard {f} Hz, not the executive's 600 Hz"
    );

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("transferred"));
    assert_eq!(
        transferred_to(&setup, calls[0].id).as_deref(),
        Some("marie")
    );
    let timeline = setup.events(calls[0].id);
    for kind in [
        "transfer",
        "executive-answered",
        "screening-key",
        "executive-accepted",
        "transferred",
    ] {
        assert!(
            timeline.iter().any(|e| e == kind),
            "{kind} missing: {timeline:?}"
        );
    }
    assert_eq!(message_of(&setup, calls[0].id).0, "urgent");
}

/// Pressing 2 refuses: the executive's leg ends and the plan's next step runs.
#[test]
fn a_screened_executive_who_presses_2_sends_the_call_to_the_next_step() {
    let exec_port = free_port();
    let setup = setup(
        &[format!("sip:marie@127.0.0.1:{exec_port}")],
        r#"[{ transfer = { to = "marie", timeout = 15, screening = true } }, { play = "tone/a.wav" }, { hangup = {} }]"#,
        "",
    );
    let _server = setup.start();
    let pcap = setup.dir.path().join("exec.pcap");
    write_tone_pcap(&pcap, 600.0, 0.5);
    let exec_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut exec = sipp_phone(
        "executive_refuses.xml",
        exec_port,
        &[
            "-key",
            "username",
            "marie",
            "-key",
            "rtp_port",
            &exec_rtp.local_addr().unwrap().port().to_string(),
            "-key",
            "offer",
            "0",
            "-key",
            "key_pcap",
            &dtmf_pcap("2"),
        ],
    );
    wait_sipp_phone_ready(&mut exec, exec_port);
    let (_rtp, port) = rtp_socket();
    assert_sipp_ok(&sipp_call(
        "call.xml",
        setup.addr(),
        "+33180000001",
        &port,
        "0",
        &[],
    ));
    assert_sipp_ok(&finish(exec));
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("completed"));
    assert_eq!(transferred_to(&setup, calls[0].id), None);
    let timeline = setup.events(calls[0].id);
    let i = timeline
        .iter()
        .position(|e| e == "executive-refused")
        .expect("refused");
    assert!(timeline[i..].iter().any(|e| e == "play"), "{timeline:?}");
}

/// Sequential reach: the first phone rings out its attempt (CANCEL), the second answers.
#[test]
fn a_sequential_reach_list_rings_the_second_phone_when_the_first_does_not_answer() {
    let (first, second) = (free_port(), free_port());
    let setup = setup(
        &[
            format!("sip:marie@127.0.0.1:{first}"),
            format!("sip:marie@127.0.0.1:{second}"),
        ],
        r#"[{ transfer = { to = "marie", timeout = 2 } }, { hangup = {} }]"#,
        "",
    );
    let _server = setup.start();
    let mut silent = sipp_phone(
        "secretary_cancelled.xml",
        first,
        &["-key", "username", "marie"],
    );
    let (mut answers, _heard) = listening_phone(&setup, second, "marie");
    wait_sipp_phone_ready(&mut silent, first);
    wait_sipp_phone_ready(&mut answers, second);
    let (_rtp, port) = rtp_socket();
    assert_sipp_ok(&sipp_call(
        "bye.xml",
        setup.addr(),
        "+33180000001",
        &port,
        "0",
        &[],
    ));
    assert_sipp_ok(&finish(silent));
    assert_sipp_ok(&finish(answers));
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("transferred"));
    let order: Vec<String> = setup
        .events(calls[0].id)
        .into_iter()
        .filter(|e| e.starts_with("executive-") || e == "transferred")
        .collect();
    assert_eq!(
        order,
        [
            "executive-offered",
            "executive-ringing",
            "executive-cancelled",
            "executive-offered",
            "executive-ringing",
            "executive-answered",
            "transferred"
        ],
    );
}

/// alice's phone, registered, running `scenario` (a REFER to `refer_to`) with `extra`
/// SIPp arguments, listening for audio on the returned socket; ready when it returns.
fn secretary_phone(
    setup: &Setup,
    scenario: &str,
    refer_to: &str,
    extra: &[&str],
) -> (Child, UdpSocket) {
    let port = register_phone_port(setup.addr(), "alice", "alice");
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp_port = rtp.local_addr().unwrap().port().to_string();
    let mut args = vec![
        "-key", "username", "alice", "-key", "rtp_port", &rtp_port, "-key", "offer", "0", "-key",
        "refer_to", refer_to,
    ];
    args.extend_from_slice(extra);
    let mut phone = sipp_phone(scenario, port, &args);
    wait_sipp_phone_ready(&mut phone, port);
    (phone, rtp)
}

/// marie's phone (SIPp, `scenario`) on `port`: answers with PCMU and says `seconds` of
/// `hz` (`audio_pcap`); what she hears lands on the returned socket.
fn executive_saying(
    setup: &Setup,
    scenario: &str,
    port: u16,
    hz: f64,
    seconds: f64,
) -> (Child, UdpSocket) {
    let pcap = setup.dir.path().join(format!("marie-{port}.pcap"));
    write_tone_pcap(&pcap, hz, seconds);
    let (sink, sink_port) = rtp_socket();
    let mut phone = sipp_phone(
        scenario,
        port,
        &[
            "-key",
            "username",
            "marie",
            "-key",
            "rtp_port",
            &sink_port,
            "-key",
            "offer",
            "0",
            "-key",
            "audio_pcap",
            pcap.to_str().unwrap(),
        ],
    );
    wait_sipp_phone_ready(&mut phone, port);
    (phone, sink)
}

/// What a phone hears, 200 ms (10 packets) at a time, as (loudness: mean absolute sample,
/// dominant frequency), until `quiet` without a packet after the first one, or `max`.
fn hear_chunks(sock: &UdpSocket, quiet: Duration, max: Duration) -> Vec<(f64, f64)> {
    let frames: Vec<Vec<i16>> = collect_rtp_payloads(sock, quiet, max)
        .into_iter()
        .filter_map(|(pt, payload)| {
            let decode = match pt {
                0 => permanence::g711::ulaw_to_linear,
                8 => permanence::g711::alaw_to_linear,
                _ => return None,
            };
            Some(payload.iter().map(|&b| decode(b)).collect())
        })
        .collect();
    frames
        .chunks(10)
        .map(|chunk| {
            let samples = chunk.concat();
            let level = samples.iter().map(|&s| f64::from(s).abs()).sum::<f64>()
                / samples.len().max(1) as f64;
            (level, tone_frequency(&samples))
        })
        .collect()
}

/// Indices of the loud chunks whose frequency is within `range`.
fn chunks_at(chunks: &[(f64, f64)], range: std::ops::Range<f64>) -> Vec<usize> {
    chunks
        .iter()
        .enumerate()
        .filter(|(_, (level, f))| *level > 1000.0 && range.contains(f))
        .map(|(i, _)| i)
        .collect()
}

/// The events of a call as (kind, time, data).
fn timeline_at(setup: &Setup, call: i64) -> Vec<(String, jiff::Timestamp, String)> {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let mut stmt = conn
        .prepare("SELECT kind, at, data FROM events WHERE call_id = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([call], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .map(|(kind, at, data)| (kind, at.parse().expect("RFC 3339 time"), data))
    .collect()
}

/// alice answers and transfers the caller to marie (REFER): NOTIFYs tell her how it went,
/// her leg ends, and the caller and marie hear each other (the caller's 1 kHz reaches
/// marie, marie's 600 Hz reaches the caller); the record says who transferred to whom.
#[test]
fn a_secretary_transfers_the_caller_to_an_executive_with_refer() {
    let exec_port = free_port();
    let setup = setup(
        &[format!("sip:marie@127.0.0.1:{exec_port}")],
        r#"[{ secretary = { timeout = 15 } }, { hangup = {} }]"#,
        "",
    );
    let server = setup.start();
    // The caller talks from alice's answer until it hangs up (4 s): through the transfer.
    let pcap = setup.dir.path().join("caller.pcap");
    write_tone_pcap(&pcap, 1000.0, 4.0);
    let (marie, marie_hears) =
        executive_saying(&setup, "secretary_listens.xml", exec_port, 600.0, 2.0);
    // alice says nothing: whatever the caller hears comes from marie.
    let (alice, _alice_hears) =
        secretary_phone(&setup, "secretary_refer.xml", "sip:marie@127.0.0.1", &[]);
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = caller_rtp.local_addr().unwrap().port().to_string();
    let addr = setup.addr();
    let pcap = pcap.to_str().unwrap().to_string();
    let caller = std::thread::spawn(move || {
        sipp_call(
            "talk_hangup.xml",
            addr,
            "+33180000001",
            &port,
            "0",
            &["-key", "audio_pcap", &pcap],
        )
    });
    let heard_by_marie = std::thread::spawn(move || hear(&marie_hears, Duration::from_secs(15)));
    let (caller_packets, heard_by_caller) = hear(&caller_rtp, Duration::from_secs(15));
    let (marie_packets, heard_by_marie) = heard_by_marie.join().unwrap();
    assert_sipp_ok(&caller.join().unwrap());
    assert_sipp_ok(&finish(alice));
    assert_sipp_ok(&finish(marie));

    assert!(
        marie_packets >= 50,
        "marie heard {marie_packets} packets of the caller after the transfer\n{}",
        server.log()
    );
    let f = tone_frequency(&heard_by_marie);
    assert!(
        (950.0..1050.0).contains(&f),
        "marie heard {f} Hz, not the caller's 1 kHz"
    );
    assert!(
        caller_packets >= 50,
        "the caller heard {caller_packets} packets of marie's 100\n{}",
        server.log()
    );
    let f = tone_frequency(&heard_by_caller);
    assert!(
        (570.0..630.0).contains(&f),
        "the caller heard {f} Hz, not marie's 600 Hz"
    );

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("transferred"));
    assert_eq!(
        transferred_to(&setup, calls[0].id).as_deref(),
        Some("marie")
    );
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let refer: String = conn
        .query_row(
            "SELECT data FROM events WHERE call_id = ?1 AND kind = 'refer'",
            [calls[0].id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(refer.contains("\"by\":\"alice\""), "{refer}");
    assert_eq!(message_of(&setup, calls[0].id).0, "urgent");
}

/// A blind transfer: alice REFERs the caller to marie and hangs up at once; marie's phone
/// rings 3 s. Meanwhile the caller is not left in silence: it hears the ringback tone
/// (440 Hz), which stops when marie answers and her voice (600 Hz) comes through.
#[test]
fn in_a_blind_transfer_the_caller_hears_ringback_until_the_executive_answers() {
    let exec_port = free_port();
    let setup = setup(
        &[format!("sip:marie@127.0.0.1:{exec_port}")],
        r#"[{ secretary = { timeout = 15 } }, { hangup = {} }]"#,
        "",
    );
    let server = setup.start();
    let (marie, _marie_hears) =
        executive_saying(&setup, "executive_answers_late.xml", exec_port, 600.0, 2.0);
    let (alice, _alice_hears) = secretary_phone(
        &setup,
        "secretary_refer_blind.xml",
        "sip:marie@127.0.0.1",
        &[],
    );
    let (caller, caller_rtp) = talking_caller(&setup, "+33180000001", 1000.0);
    let heard = hear_chunks(
        &caller_rtp,
        Duration::from_millis(1500),
        Duration::from_secs(20),
    );
    assert_sipp_ok(&caller.join().unwrap());
    assert_sipp_ok(&finish(alice));
    assert_sipp_ok(&finish(marie));

    let ringback = chunks_at(&heard, 415.0..465.0);
    let marie_voice = chunks_at(&heard, 570.0..630.0);
    assert!(
        ringback.len() >= 4,
        "the caller heard no ringback while marie's phone rang: {heard:?}\n{}",
        server.log()
    );
    assert!(
        !marie_voice.is_empty(),
        "the caller never heard marie: {heard:?}\n{}",
        server.log()
    );
    assert!(
        ringback.iter().max() < marie_voice.iter().min(),
        "ringback goes on after marie answered: {heard:?}"
    );

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("transferred"));
    assert_eq!(
        transferred_to(&setup, calls[0].id).as_deref(),
        Some("marie")
    );
    let timeline = setup.events(calls[0].id);
    let at = |kind: &str| {
        timeline
            .iter()
            .position(|e| e == kind)
            .unwrap_or_else(|| panic!("{kind} missing: {timeline:?}"))
    };
    assert!(
        at("refer") < at("secretary-hung-up") && at("secretary-hung-up") < at("transferred"),
        "alice left before marie answered: {timeline:?}"
    );
}

/// alice REFERs the caller to marie, whose phone is busy (486): alice is told by a final
/// NOTIFY whose sipfrag is a failure (checked by the scenario), her leg stays up and the
/// caller stays with her: it hears her voice (600 Hz, sent only after that NOTIFY) and the
/// call ends when she hangs up, as hers.
#[test]
fn a_refer_to_a_busy_executive_is_reported_by_notify_and_the_caller_stays_with_the_secretary() {
    let exec_port = free_port();
    let setup = setup(
        &[format!("sip:marie@127.0.0.1:{exec_port}")],
        r#"[{ secretary = { timeout = 15 } }, { hangup = {} }]"#,
        "",
    );
    let server = setup.start();
    let mut marie = sipp_phone(
        "secretary_busy.xml",
        exec_port,
        &["-key", "username", "marie"],
    );
    wait_sipp_phone_ready(&mut marie, exec_port);
    let alice_pcap = setup.dir.path().join("alice.pcap");
    write_tone_pcap(&alice_pcap, 600.0, 1.5);
    let (alice, _alice_hears) = secretary_phone(
        &setup,
        "secretary_refer_fails.xml",
        "sip:marie@127.0.0.1",
        &["-key", "audio_pcap", alice_pcap.to_str().unwrap()],
    );
    let (caller, caller_rtp) = talking_caller(&setup, "+33180000001", 1000.0);
    let (packets, heard) = hear(&caller_rtp, Duration::from_secs(15));
    assert_sipp_ok(&finish(alice));
    assert_sipp_ok(&caller.join().unwrap());
    assert_sipp_ok(&finish(marie));

    assert!(
        packets >= 50,
        "the caller heard {packets} packets of alice after the failed transfer\n{}",
        server.log()
    );
    let f = tone_frequency(&heard);
    assert!(
        (570.0..630.0).contains(&f),
        "the caller heard {f} Hz, not alice's 600 Hz"
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("secretary"));
    assert_eq!(transferred_to(&setup, calls[0].id), None);
    let timeline = setup.events(calls[0].id);
    for kind in ["refer", "executive-declined", "transfer-failed"] {
        assert!(
            timeline.iter().any(|e| e == kind),
            "{kind} missing: {timeline:?}"
        );
    }
    assert!(!timeline.iter().any(|e| e == "transferred"), "{timeline:?}");
}

/// A REFER sent by the caller on its own leg is not a secretary's transfer: 405, nobody is
/// dialled (not even an allowed destination, marie), and the call goes on (the greeting
/// keeps playing, the caller's BYE is answered 200).
#[test]
fn a_refer_from_the_caller_on_its_own_leg_gets_405_and_dials_nobody() {
    let marie = UdpSocket::bind("127.0.0.1:0").unwrap();
    let marie_addr = marie.local_addr().unwrap();
    let setup = setup(
        &[format!("sip:marie@{marie_addr}")],
        r#"[{ play = "tone/long.wav" }, { hangup = {} }]"#,
        "",
    );
    let server = setup.start();
    let mut caller = RawSipPhone::bind(setup.addr());
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let offer = raw_sdp(rtp.local_addr().unwrap(), &[0], None, "sendrecv", 1);
    let invite = caller.invite("+33180000001", "+33612345678", &offer);
    let (answer, dialog) = caller
        .invite_outcome(&invite, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no answer to the INVITE\n{}", server.log()));
    assert_eq!(answer.status(), Some(200), "{}", answer.text);
    let mut dialog = dialog.unwrap();
    let (greeting, _) = hear(&rtp, Duration::from_millis(500));
    assert!(greeting > 0, "no greeting before the REFER");

    let refer_to = format!("<sip:marie@{marie_addr}>");
    let refer = dialog.request(
        caller.addr(),
        "REFER",
        &[
            ("Refer-To", refer_to.as_str()),
            ("Referred-By", "<sip:+33612345678@127.0.0.1>"),
        ],
        None,
    );
    caller.send(&refer);
    let refused = caller
        .wait_final(&invite.call_id, "REFER", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no answer to the REFER\n{}", server.log()));
    assert_eq!(refused.status(), Some(405), "{}", refused.text);
    assert!(refused.header("Allow").is_some(), "{}", refused.text);

    // The greeting goes on.
    drain_udp(&rtp);
    let still = collect_rtp(&rtp, Duration::from_millis(300), Duration::from_secs(1));
    assert!(
        still.len() >= 25,
        "the greeting stopped after the REFER: {} packets in 1 s",
        still.len()
    );
    // Nobody was dialled.
    marie
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    assert!(
        marie.recv_from(&mut buf).is_err(),
        "the caller's REFER dialled marie"
    );
    let bye = dialog.request(caller.addr(), "BYE", &[], None);
    caller.send(&bye);
    let ok = caller
        .wait_final(&invite.call_id, "BYE", Duration::from_secs(5))
        .expect("an answer to BYE");
    assert_eq!(ok.status(), Some(200), "{}", ok.text);

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("abandoned"));
    let timeline = setup.events(calls[0].id);
    assert!(
        !timeline
            .iter()
            .any(|e| e == "refer" || e == "transfer" || e == "executive-offered"),
        "{timeline:?}"
    );
}

/// Screening: marie answers but presses nothing. 20 s after her answer her leg gets BYE
/// (her phone would otherwise hold the caller forever), even though the step's timeout is
/// 15 s, and the plan goes on to its next step.
#[test]
fn a_screened_executive_who_presses_nothing_is_hung_up_after_20_s_and_the_plan_goes_on() {
    let exec_port = free_port();
    let setup = setup(
        &[format!("sip:marie@127.0.0.1:{exec_port}")],
        r#"[{ transfer = { to = "marie", timeout = 15, screening = true } }, { play = "tone/a.wav" }, { hangup = {} }]"#,
        "",
    );
    let server = setup.start();
    let (mut marie, _marie_hears) = listening_phone(&setup, exec_port, "marie");
    wait_sipp_phone_ready(&mut marie, exec_port);
    let started = Instant::now();
    let (_rtp, port) = rtp_socket();
    assert_sipp_ok(&sipp_call(
        "call.xml",
        setup.addr(),
        "+33180000001",
        &port,
        "0",
        &[],
    ));
    // Her phone got BYE (the scenario waits for it).
    assert_sipp_ok(&finish(marie));
    assert!(
        started.elapsed() < Duration::from_secs(32),
        "the call took {:?}",
        started.elapsed()
    );

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("completed"));
    assert_eq!(transferred_to(&setup, calls[0].id), None);
    let timeline = timeline_at(&setup, calls[0].id);
    let find = |kind: &str| {
        timeline
            .iter()
            .position(|(k, _, _)| k == kind)
            .unwrap_or_else(|| panic!("{kind} missing: {timeline:?}\n{}", server.log()))
    };
    let (answered, refused) = (find("executive-answered"), find("executive-refused"));
    assert!(
        timeline[refused].2.contains("no-answer"),
        "{:?}",
        timeline[refused]
    );
    let waited = timeline[refused]
        .1
        .duration_since(timeline[answered].1)
        .as_secs_f64();
    assert!(
        (19.5..22.0).contains(&waited),
        "marie's leg ended {waited:.2} s after her answer, not 20 s"
    );
    assert!(
        !timeline.iter().any(|(k, _, _)| k == "screening-key"),
        "{timeline:?}"
    );
    assert!(
        timeline[refused..].iter().any(|(k, _, _)| k == "play"),
        "the plan did not go on: {timeline:?}"
    );
}

/// A REFER to a number the company does not list gets 403; nothing is dialled and the
/// caller stays with the secretary.
#[test]
fn a_refer_to_a_destination_the_company_does_not_allow_gets_403() {
    let trunk = UdpSocket::bind("127.0.0.1:0").unwrap();
    let setup = setup(
        &["+33611111111".to_string()],
        r#"[{ secretary = { timeout = 15 } }, { hangup = {} }]"#,
        &format!("[trunk]\nproxy = \"{}\"\n", trunk.local_addr().unwrap()),
    );
    let _server = setup.start();
    let (alice, _alice_hears) = secretary_phone(
        &setup,
        "secretary_refer_refused.xml",
        "sip:+33899999999@127.0.0.1",
        &[],
    );
    let (_rtp, port) = rtp_socket();
    let pcap = setup.dir.path().join("tone.pcap");
    write_tone_pcap(&pcap, 600.0, 0.5);
    assert_sipp_ok(&sipp_call(
        "talk.xml",
        setup.addr(),
        "+33180000001",
        &port,
        "0",
        &["-key", "audio_pcap", pcap.to_str().unwrap()],
    ));
    assert_sipp_ok(&finish(alice));
    trunk
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        trunk.recv_from(&mut buf).is_err(),
        "something was sent to the trunk"
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("secretary"));
    assert_eq!(transferred_to(&setup, calls[0].id), None);
    assert!(
        setup
            .events(calls[0].id)
            .iter()
            .any(|e| e == "refer-refused")
    );
}

/// An INVITE for an outside number from someone who is not the trunk dials nothing: 404
/// by default. When only the trunk may bring calls in, anyone else is challenged (401)
/// and only an account holder (alice, authenticated) gets through.
#[test]
fn no_open_relay_an_outside_number_is_never_dialled() {
    let trunk = UdpSocket::bind("127.0.0.1:0").unwrap();
    let trunk_addr = trunk.local_addr().unwrap();
    for (only_trunk, status) in [(false, 404), (true, 401)] {
        let setup = setup(
            &["+33611111111".to_string()],
            r#"[{ play = "tone/a.wav" }, { hangup = {} }]"#,
            // The provider's calls would come from 127.0.0.9: every test peer is elsewhere.
            &format!(
                "[trunk]\nproxy = \"{trunk_addr}\"\naddresses = [\"127.0.0.9\"]\n\
                 inbound_only_from_trunk = {only_trunk}\n"
            ),
        );
        let _server = setup.start();
        let sock = UdpSocket::bind("127.0.0.2:0").unwrap();
        let local = sock.local_addr().unwrap();
        let numbers = if only_trunk {
            vec!["+447700900123", "+33180000001"]
        } else {
            vec!["+447700900123", "+33611111111"]
        };
        for (i, number) in numbers.iter().enumerate() {
            let invite = format!(
                "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKrelay{i}\r\n\
                 From: <sip:fraud@{local}>;tag=f\r\nTo: <sip:{number}@127.0.0.1>\r\nCall-ID: relay-{i}\r\n\
                 CSeq: 1 INVITE\r\nContact: <sip:fraud@{local}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            sock.send_to(invite.as_bytes(), setup.addr()).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut buf = [0u8; 4096];
            let mut final_status = None;
            while final_status.is_none() {
                let (n, _) = sock.recv_from(&mut buf).expect("an answer");
                final_status = status_of(&buf[..n]).filter(|s| *s >= 200);
            }
            assert_eq!(
                final_status,
                Some(status),
                "{number}, only trunk: {only_trunk}"
            );
        }
        if only_trunk {
            // A secretary's account may still call a company's number from anywhere.
            let (_rtp, port) = rtp_socket();
            let out = sipp_call(
                "call_auth.xml",
                setup.addr(),
                "+33180000001",
                &port,
                "0",
                &["-au", "alice", "-ap", "alice"],
            );
            assert_sipp_ok(&out);
        }
        trunk
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 2048];
        assert!(
            trunk.recv_from(&mut buf).is_err(),
            "nothing may reach the trunk"
        );
    }
}

/// Through a provider that demands digest credentials (a SIPp stand-in answering 407),
/// the leg to the executive's number authenticates and connects.
#[test]
fn a_leg_through_the_trunk_answers_its_digest_challenge_and_connects() {
    let trunk_port = free_port();
    let setup = setup(
        &["+33611111111".to_string()],
        r#"[{ transfer = { to = "marie", timeout = 10 } }, { hangup = {} }]"#,
        &format!(
            "[trunk]\nproxy = \"127.0.0.1:{trunk_port}\"\ndomain = \"trunk.example.com\"\n\
             username = \"acct42\"\npassword = \"s3cret\"\n"
        ),
    );
    let server = setup.start();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut trunk = sipp_phone(
        "trunk.xml",
        trunk_port,
        &[
            "-key",
            "username",
            "trunk",
            "-key",
            "rtp_port",
            &sink.local_addr().unwrap().port().to_string(),
            "-key",
            "offer",
            "0",
            "-key",
            "trunk_user",
            "acct42",
            "-key",
            "trunk_password",
            "s3cret",
        ],
    );
    wait_sipp_phone_ready(&mut trunk, trunk_port);
    let (_rtp, port) = rtp_socket();
    let caller = sipp_call("bye.xml", setup.addr(), "+33180000001", &port, "0", &[]);
    let trunk = finish(trunk);
    assert_sipp_ok(&trunk);
    assert!(caller.status.success(), "{}", server.log());
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("transferred"));
    let timeline = setup.events(calls[0].id);
    assert!(
        timeline.iter().any(|e| e == "trunk-authenticated"),
        "{timeline:?}"
    );
}

/// With `register = true` the server registers with the provider at start, answering its
/// digest challenge (a SIPp stand-in checks the credentials).
#[test]
fn the_server_registers_with_the_trunk_using_digest_credentials() {
    let trunk_port = free_port();
    let setup = setup(
        &["+33611111111".to_string()],
        r#"[{ hangup = {} }]"#,
        &format!(
            "[trunk]\nproxy = \"127.0.0.1:{trunk_port}\"\ndomain = \"trunk.example.com\"\n\
             username = \"acct42\"\npassword = \"s3cret\"\nregister = true\n"
        ),
    );
    let mut trunk = sipp_phone(
        "trunk_register.xml",
        trunk_port,
        &[
            "-key",
            "trunk_user",
            "acct42",
            "-key",
            "trunk_password",
            "s3cret",
        ],
    );
    wait_sipp_phone_ready(&mut trunk, trunk_port);
    let server = setup.start();
    let out = finish(trunk);
    assert_sipp_ok(&out);
    let log = server.wait_for_log_line("registered with the trunk", Duration::from_secs(5));
    assert!(log.contains("registered with the trunk"), "{log}");
}

/// An executive with an account registers a phone like a secretary; `user:marie` in the
/// reach list rings it where it registered from.
#[test]
fn a_registered_executive_phone_is_reached_through_user_entries() {
    let ha1 = permanence::auth::ha1(
        permanence::auth::Algorithm::Md5,
        "marie",
        "permanence",
        "marie",
    );
    let setup = setup(
        &["user:marie".to_string()],
        r#"[{ transfer = { to = "marie", timeout = 10 } }, { hangup = {} }]"#,
        &format!(
            "[[executives]]\nname = \"Marie\"\nusername = \"marie\"\nha1_md5 = \"{ha1}\"\nha1_sha256 = \"\"\n"
        ),
    );
    let _server = setup.start();
    let port = register_phone_port(setup.addr(), "marie", "marie");
    let (mut marie, _heard) = listening_phone(&setup, port, "marie");
    wait_sipp_phone_ready(&mut marie, port);
    let (_rtp, rtp_port) = rtp_socket();
    assert_sipp_ok(&sipp_call(
        "bye.xml",
        setup.addr(),
        "+33180000001",
        &rtp_port,
        "0",
        &[],
    ));
    assert_sipp_ok(&finish(marie));
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("transferred"));
    // Her phone is listed as an executive's, with no seat at the desk.
    let out = std::process::Command::new(BIN)
        .args(["secretaries", "--json", "--config"])
        .arg(setup.config())
        .output()
        .unwrap();
    let marie: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["username"] == "marie")
        .expect("marie is listed");
    assert_eq!(
        (marie["role"].as_str(), marie["state"].as_str()),
        (Some("executive"), Some("registered")),
        "{marie}"
    );
}

/// The executive's account registers a phone like a secretary but has no seat at the desk:
/// a `secretary` step never rings it, even though her account lists the company and she is
/// the only one registered. The step finds nobody and falls through; the next step (a
/// transfer to her) proves that her phone was reachable all along: it is the only INVITE
/// she gets.
#[test]
fn an_executives_phone_is_never_offered_a_secretary_call() {
    let ha1 = permanence::auth::ha1(
        permanence::auth::Algorithm::Md5,
        "marie",
        "permanence",
        "marie",
    );
    let setup = setup(
        &["user:marie".to_string()],
        r#"[{ secretary = { timeout = 5 } }, { transfer = { to = "marie", timeout = 5 } }, { play = "tone/a.wav" }, { hangup = {} }]"#,
        &format!(
            "[[executives]]\nname = \"Marie\"\nusername = \"marie\"\nha1_md5 = \"{ha1}\"\n\
             ha1_sha256 = \"\"\ncompanies = [\"acme\"]\n"
        ),
    );
    let server = setup.start();
    let mut marie = RawSipPhone::bind(setup.addr());
    marie.register("marie", "marie");
    assert_eq!(
        wait_registration_rows(&setup, "marie", 1).len(),
        1,
        "marie's phone is registered"
    );
    let addr = setup.addr();
    let (_rtp, port) = rtp_socket();
    let caller =
        std::thread::spawn(move || sipp_call("call.xml", addr, "+33180000001", &port, "0", &[]));
    // Her phone rings once: the transfer step's INVITE. She is busy: the plan goes on.
    let invite = marie
        .wait_request("INVITE", Duration::from_secs(15))
        .unwrap_or_else(|| panic!("the transfer never rang marie\n{}", server.log()));
    marie.respond(&invite, 486, Some("busy"), &[], None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !caller.is_finished() && Instant::now() < deadline {
        marie.listen(Duration::from_millis(100));
    }
    assert_sipp_ok(&caller.join().unwrap());
    let invites: std::collections::BTreeSet<&str> = marie
        .received
        .iter()
        .filter(|m| m.method() == Some("INVITE"))
        .map(|m| m.call_id())
        .collect();
    assert_eq!(
        invites.len(),
        1,
        "marie's phone got more than the transfer's INVITE: {invites:?}"
    );

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("completed"));
    let timeline = setup.events(calls[0].id);
    assert!(
        !timeline.iter().any(|e| e.starts_with("secretary-offered")),
        "an executive was offered a secretary call: {timeline:?}"
    );
    let at = |kind: &str| {
        timeline
            .iter()
            .position(|e| e == kind)
            .unwrap_or_else(|| panic!("{kind} missing: {timeline:?}"))
    };
    assert!(
        at("secretary-unanswered") < at("executive-offered")
            && at("executive-declined") < at("play"),
        "{timeline:?}"
    );
}

/// Simultaneous reach: both of marie's phones ring at once; the one that answers gets the
/// caller and the other gets CANCEL.
#[test]
fn a_simultaneous_reach_list_rings_every_phone_and_cancels_the_others() {
    let (first, second) = (free_port(), free_port());
    let setup = setup(
        &[
            format!("sip:marie@127.0.0.1:{first}"),
            format!("sip:marie@127.0.0.1:{second}"),
        ],
        r#"[{ transfer = { to = "marie", timeout = 10, mode = "simultaneous" } }, { hangup = {} }]"#,
        "",
    );
    let _server = setup.start();
    let mut desk_phone = sipp_phone(
        "secretary_cancelled.xml",
        first,
        &["-key", "username", "marie"],
    );
    let (mut mobile, _heard) = listening_phone(&setup, second, "marie");
    wait_sipp_phone_ready(&mut desk_phone, first);
    wait_sipp_phone_ready(&mut mobile, second);
    let (_rtp, port) = rtp_socket();
    let started = Instant::now();
    assert_sipp_ok(&sipp_call(
        "bye.xml",
        setup.addr(),
        "+33180000001",
        &port,
        "0",
        &[],
    ));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "did not wait for an attempt to time out"
    );
    assert_sipp_ok(&finish(desk_phone));
    assert_sipp_ok(&finish(mobile));
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("transferred"));
    let timeline = setup.events(calls[0].id);
    let offered = timeline
        .iter()
        .take_while(|e| *e != "executive-answered")
        .filter(|e| *e == "executive-offered")
        .count();
    assert_eq!(offered, 2, "both rang before the answer: {timeline:?}");
    assert!(
        timeline.iter().any(|e| e == "executive-cancelled"),
        "{timeline:?}"
    );
}
