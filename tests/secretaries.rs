//! Calls reach secretaries' phones: SIPp plays both the caller and the secretaries
//! (registered with digest authentication first); the server rings, cancels, bridges
//! the audio and ends both legs.

mod common;

use std::net::UdpSocket;
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;

/// Two secretaries serving acme (alice / alice, bob / bob), no keep-alives (a SIPp phone
/// plays one scenario and would take an OPTIONS for a call), 2 s of wrap-up.
fn setup(steps: &str) -> Setup {
    let setup = Setup::new(&[("acme.toml", &plan("acme", "+33180000001", steps))]);
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let team = "\n[registrar]\nkeepalive_seconds = 0\n[distribution]\nwrap_up_seconds = 2\n\
        [[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\n\
        ha1_md5 = \"f5311f8276f6090e9cd6e52b1b126248\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n\
        [[secretaries]]\nname = \"Bob\"\nusername = \"bob\"\n\
        ha1_md5 = \"HA1BOB\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n";
    let bob = permanence::auth::ha1(permanence::auth::Algorithm::Md5, "bob", "permanence", "bob");
    std::fs::write(
        setup.config(),
        format!("{config}{}", team.replace("HA1BOB", &bob)),
    )
    .unwrap();
    setup
}

/// A registered SIPp phone for `user` running `scenario`.
fn phone(setup: &Setup, user: &str, scenario: &str, args: &[&str]) -> Child {
    let port = free_port();
    register_from(setup.addr(), port, user, user);
    let mut all = vec!["-key", "username", user];
    all.extend_from_slice(args);
    sipp_phone(scenario, port, &all)
}

fn events(setup: &Setup, call: i64) -> Vec<String> {
    setup.events(call)
}

fn handled(setup: &Setup, call: i64) -> (Option<String>, Option<String>) {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    conn.query_row(
        "SELECT handled_by, handled_at FROM calls WHERE id = ?1",
        [call],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// The caller (PCMU, 1 kHz) reaches alice (PCMA, 600 Hz): each hears the other's tone,
/// converted between laws; alice hangs up and the caller gets BYE.
#[test]
fn a_call_reaches_a_registered_secretary_with_audio_both_ways() {
    let setup = setup(r#"[{ secretary = { timeout = 20 } }, { hangup = {} }]"#);
    let server = setup.start();
    let caller_pcap = setup.dir.path().join("caller.pcap");
    write_tone_pcap_as(&caller_pcap, 1000.0, 2.5, 0);
    let alice_pcap = setup.dir.path().join("alice.pcap");
    write_tone_pcap_as(&alice_pcap, 600.0, 2.5, 8);
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let alice_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let alice = phone(
        &setup,
        "alice",
        "secretary.xml",
        &[
            "-key",
            "rtp_port",
            &alice_rtp.local_addr().unwrap().port().to_string(),
            "-key",
            "offer",
            "8",
            "-key",
            "audio_pcap",
            alice_pcap.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let addr = setup.addr();
    let caller_port = caller_rtp.local_addr().unwrap().port().to_string();
    let pcap = caller_pcap.to_str().unwrap().to_string();
    let caller = std::thread::spawn(move || {
        sipp_call(
            "talk.xml",
            addr,
            "+33180000001",
            &caller_port,
            "0",
            &["-key", "audio_pcap", &pcap],
        )
    });
    let heard_by_alice = std::thread::spawn(move || hear(&alice_rtp, Duration::from_secs(10)));
    let (caller_packets, caller_audio) = hear(&caller_rtp, Duration::from_secs(10));
    let (alice_packets, alice_audio) = heard_by_alice.join().unwrap();
    assert_sipp_ok(&finish(alice));
    assert_sipp_ok(&caller.join().unwrap());

    assert!(
        (100..=160).contains(&alice_packets),
        "alice heard {alice_packets} packets of the caller's 125\n{}",
        server.log()
    );
    assert!(
        (100..=160).contains(&caller_packets),
        "the caller heard {caller_packets} packets of alice's 125"
    );
    let f = tone_frequency(&alice_audio);
    assert!(
        (950.0..1050.0).contains(&f),
        "alice heard {f} Hz, not the caller's 1 kHz"
    );
    let f = tone_frequency(&caller_audio);
    assert!(
        (570.0..630.0).contains(&f),
        "the caller heard {f} Hz, not alice's 600 Hz"
    );

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("secretary"));
    let (by, at) = handled(&setup, calls[0].id);
    assert_eq!(by.as_deref(), Some("alice"));
    assert!(at.is_some(), "answer time recorded");
    let timeline = events(&setup, calls[0].id);
    for kind in [
        "secretary-offered",
        "secretary-ringing",
        "secretary-answered",
        "secretary-hung-up",
        "bye-sent",
    ] {
        assert!(
            timeline.iter().any(|e| e == kind),
            "{kind} missing from {timeline:?}"
        );
    }
}

/// Nobody registered: the step gives up at once and the plan goes on.
#[test]
fn with_no_secretary_available_the_next_step_runs() {
    let setup =
        setup(r#"[{ secretary = { timeout = 20 } }, { play = "tone/a.wav" }, { hangup = {} }]"#);
    let _server = setup.start();
    let (_rtp, port) = rtp_socket();
    let started = Instant::now();
    assert_sipp_ok(&sipp_call(
        "call.xml",
        setup.addr(),
        "+33180000001",
        &port,
        "0",
        &[],
    ));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "did not wait for the step's 20 s"
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("completed"));
    let timeline = events(&setup, calls[0].id);
    assert!(
        timeline.iter().any(|e| e == "secretary-unanswered"),
        "{timeline:?}"
    );
    assert!(timeline.iter().any(|e| e == "play"), "{timeline:?}");
}

/// Ring-all: alice and bob ring; alice answers, bob's phone gets CANCEL.
#[test]
fn ring_all_gives_the_call_to_the_first_answer_and_cancels_the_other() {
    let setup =
        setup(r#"[{ secretary = { timeout = 20, strategy = "ring-all" } }, { hangup = {} }]"#);
    let _server = setup.start();
    let pcap = setup.dir.path().join("tone.pcap");
    write_tone_pcap(&pcap, 600.0, 1.0);
    let (_sink, sink_port) = rtp_socket();
    let bob = phone(&setup, "bob", "secretary_cancelled.xml", &[]);
    let alice = phone(
        &setup,
        "alice",
        "secretary.xml",
        &[
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
    std::thread::sleep(Duration::from_millis(300));
    let (_rtp, port) = rtp_socket();
    let out = sipp_call(
        "talk.xml",
        setup.addr(),
        "+33180000001",
        &port,
        "0",
        &["-key", "audio_pcap", pcap.to_str().unwrap()],
    );
    assert_sipp_ok(&out);
    assert_sipp_ok(&finish(alice));
    assert_sipp_ok(&finish(bob));
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(handled(&setup, calls[0].id).0.as_deref(), Some("alice"));
    let timeline = events(&setup, calls[0].id);
    assert!(
        timeline.iter().any(|e| e == "secretary-cancelled"),
        "{timeline:?}"
    );
}

/// The caller hangs up while the secretary's phone rings: it gets CANCEL, the call is
/// abandoned, and alice is free again.
#[test]
fn a_caller_hanging_up_while_it_rings_cancels_the_secretary() {
    let setup = setup(r#"[{ secretary = { timeout = 20 } }, { hangup = {} }]"#);
    let _server = setup.start();
    let alice = phone(&setup, "alice", "secretary_cancelled.xml", &[]);
    std::thread::sleep(Duration::from_millis(300));
    let (_rtp, port) = rtp_socket();
    assert_sipp_ok(&sipp_call(
        "cancel.xml",
        setup.addr(),
        "+33180000001",
        &port,
        "0",
        &[],
    ));
    assert_sipp_ok(&finish(alice));
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("abandoned"));
    let out = std::process::Command::new(BIN)
        .args(["secretaries", "--json", "--config"])
        .arg(setup.config())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let alice_line = text.lines().find(|l| l.contains("\"alice\"")).unwrap();
    assert!(alice_line.contains("\"available\""), "{alice_line}");
}

/// Longest-idle: the first secretary declines (486), the next one is rung and answers;
/// a step that nobody answers in time goes on to the next step.
#[test]
fn a_declined_call_goes_to_the_next_secretary_and_a_timeout_to_the_next_step() {
    let setup = setup(
        r#"[{ secretary = { timeout = 3, strategy = "longest-idle" } }, { play = "tone/a.wav" }, { hangup = {} }]"#,
    );
    let _server = setup.start();
    // alice registers first, so she has been idle longest and is offered the call first.
    let alice = phone(&setup, "alice", "secretary_busy.xml", &[]);
    std::thread::sleep(Duration::from_millis(50));
    let bob = phone(&setup, "bob", "secretary_cancelled.xml", &[]);
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
    assert_sipp_ok(&finish(alice));
    assert_sipp_ok(&finish(bob));
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("completed"));
    let timeline = events(&setup, calls[0].id);
    let order: Vec<&str> = timeline
        .iter()
        .map(String::as_str)
        .filter(|e| e.starts_with("secretary-") || *e == "play")
        .collect();
    assert_eq!(
        order,
        [
            "secretary-offered",
            "secretary-declined",
            "secretary-offered",
            "secretary-ringing",
            "secretary-cancelled",
            "secretary-unanswered",
            "play"
        ],
        "{timeline:?}"
    );
}

/// baresip, a real softphone, registers as alice and answers by itself: the caller's
/// 1 kHz tone is in what baresip decoded (its sndfile dump), baresip's 600 Hz
/// microphone (a WAV) reaches the caller, and the caller's hang-up ends baresip's leg.
#[test]
fn a_real_softphone_baresip_takes_a_call_with_audio_both_ways() {
    baresip_takes_a_call("udp");
}

/// The same with baresip registered over TCP: the server calls it back on the connection
/// it registered on.
#[test]
fn a_real_softphone_baresip_registered_over_tcp_takes_a_call() {
    baresip_takes_a_call("tcp");
}

fn baresip_takes_a_call(transport: &str) {
    let setup = setup(r#"[{ secretary = { timeout = 15 } }, { hangup = {} }]"#);
    let server = setup.start();
    let home = setup.dir.path().join("baresip");
    let dumps = home.join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    let mic = home.join("mic.wav");
    write_tone(&mic, 600.0, 30.0);
    std::fs::write(
        home.join("accounts"),
        format!(
            "<sip:alice@{};transport={transport}>;auth_pass=alice;regint=120;answermode=auto\n",
            server.addr
        ),
    )
    .unwrap();
    let sip_port = free_port();
    std::fs::write(
        home.join("config"),
        format!(
            "sip_listen\t127.0.0.1:{sip_port}\nmodule_path\t/usr/lib/baresip/modules\n\
             module\tg711.so\nmodule\taufile.so\nmodule\tsndfile.so\nmodule\tausine.so\n\
             module_app\taccount.so\nmodule_app\tmenu.so\n\
             audio_source\taufile,{}\naudio_player\tausine,nil\nsnd_path\t{}\n\
             rtp_ports\t40000-40999\n",
            mic.display(),
            dumps.display()
        ),
    )
    .unwrap();
    let mut baresip = std::process::Command::new("baresip")
        .arg("-f")
        .arg(&home)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("baresip is installed (Debian package baresip-core)");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::process::Command::new(BIN)
            .args(["secretaries", "--json", "--config"])
            .arg(setup.config())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("\"alice\"") && l.contains("\"available\""))
        {
            let wanted = format!("\"transport\":\"{}\"", transport.to_ascii_uppercase());
            assert!(
                line.contains(&wanted),
                "registered over another transport: {line}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "baresip did not register: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pcap = setup.dir.path().join("caller.pcap");
    write_tone_pcap(&pcap, 1000.0, 3.0);
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = caller_rtp.local_addr().unwrap().port().to_string();
    let addr = setup.addr();
    let pcap_arg = pcap.to_str().unwrap().to_string();
    let caller = std::thread::spawn(move || {
        sipp_call(
            "talk_hangup.xml",
            addr,
            "+33180000001",
            &port,
            "0",
            &["-key", "audio_pcap", &pcap_arg],
        )
    });
    let (packets, heard) = hear(&caller_rtp, Duration::from_secs(12));
    let out = caller.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let _ = baresip.kill();
    let baresip_out = baresip.wait_with_output().unwrap();
    let baresip_log = format!(
        "{}{}",
        String::from_utf8_lossy(&baresip_out.stdout),
        String::from_utf8_lossy(&baresip_out.stderr)
    );
    assert_sipp_ok(&out);
    assert!(
        packets > 100,
        "the caller heard {packets} packets\n{baresip_log}\n{}",
        server.log()
    );
    let f = tone_frequency(&heard[heard.len() / 4..]);
    assert!(
        (570.0..630.0).contains(&f),
        "the caller heard {f} Hz, not baresip's 600 Hz"
    );

    // sndfile writes what baresip decoded (the caller's voice) to a *-dec.wav dump.
    let decoded = std::fs::read_dir(&dumps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("dec.wav"))
        .unwrap_or_else(|| panic!("no decoded dump in {}\n{baresip_log}", dumps.display()));
    let samples: Vec<i16> = hound::WavReader::open(&decoded)
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect();
    let loud: Vec<i16> = samples.iter().copied().filter(|s| s.abs() > 2000).collect();
    assert!(
        loud.len() > 8000,
        "baresip heard {} loud samples",
        loud.len()
    );
    let f = tone_frequency(&samples[samples.len() / 4..samples.len() / 2]);
    assert!(
        (950.0..1050.0).contains(&f),
        "baresip heard {f} Hz, not the caller's 1 kHz"
    );

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("secretary"));
    assert!(
        events(&setup, calls[0].id).iter().any(|e| e == "bye-sent"),
        "baresip's leg was hung up"
    );
}

fn secretary_state(setup: &Setup, user: &str) -> String {
    let out = std::process::Command::new(BIN)
        .args(["secretaries", "--json", "--config"])
        .arg(setup.config())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains(&format!("\"username\":\"{user}\"")))
        .unwrap_or_else(|| panic!("{user} not listed: {text}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["state"].as_str().unwrap().to_string()
}

/// Both phones go quiet after half a second: after `rtp_timeout_seconds` the server ends
/// the conversation, hangs up both sides and records why; alice then wraps up.
#[test]
fn a_conversation_whose_audio_stops_is_ended_and_the_secretary_wraps_up() {
    let setup = setup(r#"[{ secretary = { timeout = 15 } }, { hangup = {} }]"#);
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(
        setup.config(),
        config.replacen("[media]\n", "[media]\nrtp_timeout_seconds = 2\n", 1),
    )
    .unwrap();
    let _server = setup.start();
    let alice_port = free_port();
    register_from(setup.addr(), alice_port, "alice", "alice");
    let (alice, _heard) = listening_phone(&setup, alice_port, "alice");
    let pcap = setup.dir.path().join("caller.pcap");
    write_tone_pcap(&pcap, 1000.0, 0.5);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(secretary_state(&setup, "alice"), "available");
    let (_rtp, port) = rtp_socket();
    let started = Instant::now();
    let out = sipp_call(
        "talk.xml",
        setup.addr(),
        "+33180000001",
        &port,
        "0",
        &["-key", "audio_pcap", pcap.to_str().unwrap()],
    );
    assert_sipp_ok(&out);
    assert_sipp_ok(&finish(alice));
    let took = started.elapsed();
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(6)).contains(&took),
        "ended after {took:?}"
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("secretary"));
    assert!(
        events(&setup, calls[0].id)
            .iter()
            .any(|e| e == "rtp-timeout"),
        "{:?}",
        events(&setup, calls[0].id)
    );
    assert_eq!(secretary_state(&setup, "alice"), "wrap-up");
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(secretary_state(&setup, "alice"), "available");
}

/// Overflow: alice (assigned to acme) rings alone; after `overflow_after` bob (who serves
/// another company) rings too and answers; alice's phone gets CANCEL.
#[test]
fn after_overflow_after_seconds_secretaries_of_other_companies_ring_too() {
    let setup = setup(r#"[{ secretary = { timeout = 15, overflow_after = 2 } }, { hangup = {} }]"#);
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let (head, bob) = config.split_once("name = \"Bob\"").unwrap();
    let bob = bob.replacen("companies = [\"acme\"]", "companies = [\"globex\"]", 1);
    std::fs::write(setup.config(), format!("{head}name = \"Bob\"{bob}")).unwrap();
    let _server = setup.start();
    let alice = phone(&setup, "alice", "secretary_cancelled.xml", &[]);
    let bob_port = free_port();
    register_from(setup.addr(), bob_port, "bob", "bob");
    let (bob, _heard) = listening_phone(&setup, bob_port, "bob");
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
    assert_sipp_ok(&finish(alice));
    assert_sipp_ok(&finish(bob));
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(handled(&setup, calls[0].id).0.as_deref(), Some("bob"));
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let offers: Vec<(String, String)> = conn
        .prepare("SELECT data, at FROM events WHERE call_id = ?1 AND kind = 'secretary-offered' ORDER BY id")
        .unwrap()
        .query_map([calls[0].id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(offers.len(), 2, "{offers:?}");
    assert!(
        offers[0].0.contains("\"alice\"") && offers[1].0.contains("\"bob\""),
        "{offers:?}"
    );
    let at = |t: &str| t.parse::<jiff::Timestamp>().unwrap();
    let gap = at(&offers[1].1) - at(&offers[0].1);
    assert!(
        gap.as_secs() >= 1 && gap.as_secs() <= 3,
        "bob rang {gap:?} after alice"
    );
}
