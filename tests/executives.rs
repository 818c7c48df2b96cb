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
    let exec = executive_phone(exec_port, &exec_rtp, "1", &exec_pcap);
    std::thread::sleep(Duration::from_millis(300));
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
    let exec = sipp_phone(
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
    std::thread::sleep(Duration::from_millis(300));
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
    let silent = sipp_phone(
        "secretary_cancelled.xml",
        first,
        &["-key", "username", "marie"],
    );
    let (answers, _heard) = listening_phone(&setup, second, "marie");
    std::thread::sleep(Duration::from_millis(300));
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

fn secretary_phone(setup: &Setup, scenario: &str, refer_to: &str) -> Child {
    let port = free_port();
    register_from(setup.addr(), port, "alice", "alice");
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    sipp_phone(
        scenario,
        port,
        &[
            "-key",
            "username",
            "alice",
            "-key",
            "rtp_port",
            &rtp.local_addr().unwrap().port().to_string(),
            "-key",
            "offer",
            "0",
            "-key",
            "refer_to",
            refer_to,
        ],
    )
}

/// alice answers and transfers the caller to marie (REFER): NOTIFYs tell her how it went,
/// her leg ends, the caller talks to marie; the record says who transferred to whom.
#[test]
fn a_secretary_transfers_the_caller_to_an_executive_with_refer() {
    let exec_port = free_port();
    let setup = setup(
        &[format!("sip:marie@127.0.0.1:{exec_port}")],
        r#"[{ secretary = { timeout = 15 } }, { hangup = {} }]"#,
        "",
    );
    let _server = setup.start();
    let pcap = setup.dir.path().join("caller.pcap");
    write_tone_pcap(&pcap, 1000.0, 1.0);
    let (marie, _heard) = listening_phone(&setup, exec_port, "marie");
    let alice = secretary_phone(&setup, "secretary_refer.xml", "sip:marie@127.0.0.1");
    std::thread::sleep(Duration::from_millis(300));
    let (_rtp, port) = rtp_socket();
    let out = sipp_call(
        "talk_hangup.xml",
        setup.addr(),
        "+33180000001",
        &port,
        "0",
        &["-key", "audio_pcap", pcap.to_str().unwrap()],
    );
    assert_sipp_ok(&out);
    assert_sipp_ok(&finish(alice));
    assert_sipp_ok(&finish(marie));
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
    let alice = secretary_phone(
        &setup,
        "secretary_refer_refused.xml",
        "sip:+33899999999@127.0.0.1",
    );
    std::thread::sleep(Duration::from_millis(300));
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
    let trunk = sipp_phone(
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
    std::thread::sleep(Duration::from_millis(300));
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
    let trunk = sipp_phone(
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
    std::thread::sleep(Duration::from_millis(300));
    let server = setup.start();
    let out = finish(trunk);
    assert_sipp_ok(&out);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("registered with the trunk") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        server.log().contains("registered with the trunk"),
        "{}",
        server.log()
    );
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
    let port = free_port();
    register_from(setup.addr(), port, "marie", "marie");
    let (marie, _heard) = listening_phone(&setup, port, "marie");
    std::thread::sleep(Duration::from_millis(300));
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
    let desk_phone = sipp_phone(
        "secretary_cancelled.xml",
        first,
        &["-key", "username", "marie"],
    );
    let (mobile, _heard) = listening_phone(&setup, second, "marie");
    std::thread::sleep(Duration::from_millis(300));
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
