//! Calls reach secretaries' phones: SIPp plays both the caller and the secretaries
//! (registered with digest authentication first); the server rings, cancels, bridges
//! the audio and ends both legs.

mod common;

use std::net::{SocketAddr, UdpSocket};
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

/// A registered SIPp phone for `user` running `scenario`, once it has bound its port
/// (an INVITE sent from now on reaches it).
fn phone(setup: &Setup, user: &str, scenario: &str, args: &[&str]) -> Child {
    let port = register_phone_port(setup.addr(), user, user);
    let mut all = vec!["-key", "username", user];
    all.extend_from_slice(args);
    let mut child = sipp_phone(scenario, port, &all);
    wait_sipp_phone_ready(&mut child, port);
    child
}

/// `listening_phone` for `user`, registered, once it has bound its port.
fn ready_listening_phone(setup: &Setup, user: &str) -> (Child, UdpSocket) {
    let port = register_phone_port(setup.addr(), user, user);
    let (mut child, heard) = listening_phone(setup, port, user);
    wait_sipp_phone_ready(&mut child, port);
    (child, heard)
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
    // Both have been idle since the server started: the tie goes by name, so alice is
    // offered the call first.
    let alice = phone(&setup, "alice", "secretary_busy.xml", &[]);
    let bob = phone(&setup, "bob", "secretary_cancelled.xml", &[]);
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

/// The same with baresip registered over TLS (SIP over TLS, RFC 3261 §26, with a
/// certificate the test makes and baresip trusts) and demanding SRTP for its audio
/// (`mediaenc=srtp-mand`, SDES keys, RFC 4568): registration, the call to it and its hang-up
/// travel on its TLS connection, and the audio both ways is encrypted between it and us
/// (baresip refuses a plain offer and drops what does not authenticate).
#[test]
fn a_real_softphone_baresip_registered_over_tls_takes_a_call() {
    baresip_takes_a_call("tls");
}

fn baresip_takes_a_call(transport: &str) {
    let setup = setup(r#"[{ secretary = { timeout = 15 } }, { hangup = {} }]"#);
    let home = setup.dir.path().join("baresip");
    let dumps = home.join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    // Over TLS the server listens on a port of its own, with a certificate baresip trusts.
    let mut ca = String::new();
    let mut media_encryption = "";
    let mut registrar = setup.addr();
    if transport == "tls" {
        let (cert, key) = make_certificate(setup.dir.path());
        let tls_port = free_port();
        registrar.set_port(tls_port);
        let config = std::fs::read_to_string(setup.config()).unwrap();
        std::fs::write(
            setup.config(),
            config.replacen(
                "[sip]\n",
                &format!(
                    "[sip]\ntls_listen = \"127.0.0.1:{tls_port}\"\ntls_certificate = \"{}\"\ntls_key = \"{}\"\n",
                    cert.display(),
                    key.display()
                ),
                1,
            ),
        )
        .unwrap();
        ca = format!("sip_cafile\t{}\nmodule\tsrtp.so\n", cert.display());
        media_encryption = ";mediaenc=srtp-mand";
    }
    let server = setup.start();
    let mic = home.join("mic.wav");
    write_tone(&mic, 600.0, 30.0);
    std::fs::write(
        home.join("accounts"),
        format!(
            "<sip:alice@{registrar};transport={transport}>;auth_pass=alice;regint=120;answermode=auto{media_encryption}\n",
        ),
    )
    .unwrap();
    let sip_port = free_port();
    std::fs::write(
        home.join("config"),
        format!(
            "sip_listen\t127.0.0.1:{sip_port}\n{ca}module_path\t/usr/lib/baresip/modules\n\
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
    // The call's end hangs up baresip's leg; its decoded dump is complete once closed
    // (the WAV header then counts the samples).
    setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && !std::fs::read_dir(&dumps).unwrap().any(|e| {
            let p = e.unwrap().path();
            p.to_string_lossy().ends_with("dec.wav")
                && hound::WavReader::open(&p).is_ok_and(|r| r.len() > 8000)
        })
    {
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let (alice, _heard) = ready_listening_phone(&setup, "alice");
    let pcap = setup.dir.path().join("caller.pcap");
    write_tone_pcap(&pcap, 1000.0, 0.5);
    assert_eq!(wait_registration_rows(&setup, "alice", 1).len(), 1);
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
    // Her 2 s of wrap-up end by themselves.
    let deadline = Instant::now() + Duration::from_secs(10);
    while secretary_state(&setup, "alice") != "available" {
        assert!(Instant::now() < deadline, "alice stayed in wrap-up");
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let (bob, _heard) = ready_listening_phone(&setup, "bob");
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

// ---------------------------------------------------------------------------------------
// Raw phones (issue 19): the test plays the secretaries' phones and the caller message by
// message, so it sees exactly what reaches each of them.

const WAIT: Duration = Duration::from_secs(10);

/// alice's phone on a socket the test keeps, registered; its RTP socket.
fn raw_secretary(setup: &Setup, user: &str) -> (RawSipPhone, UdpSocket) {
    let phone = RawSipPhone::bind(setup.addr());
    phone.register(user, user);
    (phone, UdpSocket::bind("127.0.0.1:0").unwrap())
}

/// A raw caller (+33612345678) dialling acme, offering PCMU and telephone-event 101 on
/// its own RTP socket (from which it also sends, as phones do).
fn raw_call(setup: &Setup) -> (RawSipPhone, UdpSocket, RawSipInvite) {
    let caller = RawSipPhone::bind(setup.addr());
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let offer = raw_sdp(rtp.local_addr().unwrap(), &[0], Some(101), "sendrecv", 1);
    let invite = caller.invite("+33180000001", "+33612345678", &offer);
    (caller, rtp, invite)
}

/// The secretary's phone rings and answers `invite` (PCMU on `rtp`, telephone-event if
/// `te`), then takes the server's ACK: her side of the dialog.
fn answer_leg(
    phone: &mut RawSipPhone,
    invite: &RawSipMessage,
    rtp: &UdpSocket,
    te: Option<u8>,
) -> RawSipDialog {
    let tag = format!("s{}", fastrand::u32(..));
    phone.respond(invite, 180, Some(&tag), &[], None);
    let answer = raw_sdp(rtp.local_addr().unwrap(), &[0], te, "sendrecv", 1);
    phone.respond(invite, 200, Some(&tag), &[], Some(&answer));
    let ack = phone.wait_request_in("ACK", invite.call_id(), WAIT);
    assert!(ack.is_some(), "no ACK for the secretary's 200");
    RawSipDialog::callee(invite, &tag)
}

/// The RTP address the SDP of `message` names.
fn sdp_rtp(message: &RawSipMessage) -> SocketAddr {
    let body = message.body();
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap_or_else(|| panic!("no c= line: {}", message.text))
        .trim();
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no m=audio line: {}", message.text));
    format!("{ip}:{port}").parse().unwrap()
}

/// Hangs up a connected call from the secretary's side and answers the caller's BYE.
fn secretary_hangs_up(
    phone: &mut RawSipPhone,
    dialog: &mut RawSipDialog,
    caller: &mut RawSipPhone,
    caller_call_id: &str,
) {
    let bye = dialog.request(phone.addr(), "BYE", &[], None);
    phone.send(&bye);
    let ok = phone.wait_final(&dialog.call_id, "BYE", WAIT);
    assert_eq!(
        ok.and_then(|m| m.status()),
        Some(200),
        "her BYE is answered"
    );
    let bye = caller.wait_request_in("BYE", caller_call_id, WAIT);
    let bye = bye.expect("the caller is hung up when the secretary hangs up");
    caller.respond(&bye, 200, None, &[], None);
}

/// Waits until the call's row is complete (its outcome written: its events are too).
fn wait_ended(setup: &Setup, row: i64) {
    let calls = setup.wait_calls(|c| c.iter().any(|r| r.id == row && r.outcome.is_some()));
    assert!(
        calls.iter().any(|r| r.id == row && r.outcome.is_some()),
        "call {row} never ended: {calls:?}"
    );
}

/// Registrations are stored and restored at start: a secretary registered before the
/// server was killed (kill -9) is rung by the restarted server, at her phone's socket,
/// without registering again.
#[test]
fn a_secretary_registered_before_a_crash_is_rung_after_the_restart() {
    let setup = setup(r#"[{ secretary = { timeout = 10 } }, { hangup = {} }]"#);
    let mut server = setup.start();
    let (mut alice, _alice_rtp) = raw_secretary(&setup, "alice");
    let rows = wait_registration_rows(&setup, "alice", 1);
    assert_eq!(
        rows.len(),
        1,
        "the registration is stored: {rows:?}\n{}",
        server.log()
    );
    assert_eq!(rows[0].1, alice.addr().to_string(), "{rows:?}");
    server.kill();
    let server = setup.start();

    let (mut caller, _rtp, invite) = raw_call(&setup);
    let leg = alice.wait_request("INVITE", WAIT);
    let Some(leg) = leg else {
        panic!(
            "the restarted server did not ring alice's phone at {}\n{}",
            alice.addr(),
            server.log()
        );
    };
    assert!(
        leg.first_line()
            .starts_with(&format!("INVITE sip:alice@{} ", alice.addr())),
        "rung at her registered contact: {}",
        leg.first_line()
    );
    let row = wait_call_row_by_sip_call_id(&setup, &invite.call_id).expect("the call's row");
    assert_eq!(
        leg.header("X-Permanence-Call"),
        Some(row.to_string().as_str()),
        "the INVITE is for the call placed after the restart"
    );
    // She declines; the plan goes on and the caller gets its answer.
    alice.respond(&leg, 486, Some("busy"), &[], None);
    assert!(
        alice.wait_request_in("ACK", leg.call_id(), WAIT).is_some(),
        "486 is ACKed"
    );
    let outcome = caller.invite_outcome(&invite, WAIT);
    assert!(outcome.is_some(), "the caller got a final answer");
    if let Some((_, Some(mut dialog))) = outcome {
        let bye = dialog.request(caller.addr(), "BYE", &[], None);
        caller.send(&bye);
    }
    wait_ended(&setup, row);
    let timeline = events(&setup, row);
    assert!(
        timeline.iter().any(|e| e == "secretary-declined"),
        "{timeline:?}"
    );
}

/// What the secretary's phone shows: the From display name is exactly `<company name> ·
/// <caller's number>`, the From user the caller's number, `X-Permanence-Company` the
/// company id and `X-Permanence-Call` the id of the call's row.
#[test]
fn the_secretarys_phone_shows_company_and_caller_and_the_calls_row_id() {
    let setup = setup(r#"[{ secretary = { timeout = 10 } }, { hangup = {} }]"#);
    let plan = setup.dir.path().join("dialplans/acme.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(text.contains("name = \"acme company\""), "{text}");
    std::fs::write(
        &plan,
        text.replace("name = \"acme company\"", "name = \"ACME Plomberie\""),
    )
    .unwrap();
    let server = setup.start();
    let (mut alice, _alice_rtp) = raw_secretary(&setup, "alice");
    let (mut caller, _rtp, invite) = raw_call(&setup);
    let leg = alice
        .wait_request("INVITE", WAIT)
        .unwrap_or_else(|| panic!("alice was not rung\n{}", server.log()));

    let from = leg.header("From").unwrap();
    let (display, addr) = from.split_once('<').unwrap_or(("", from));
    assert_eq!(
        display.trim(),
        "\"ACME Plomberie · +33612345678\"",
        "From: {from}"
    );
    assert!(
        addr.starts_with("sip:+33612345678@"),
        "the From user is the caller's number: {from}"
    );
    assert_eq!(leg.header("X-Permanence-Company"), Some("acme"));
    let row = wait_call_row_by_sip_call_id(&setup, &invite.call_id).expect("the call's row");
    assert_eq!(
        leg.header("X-Permanence-Call"),
        Some(row.to_string().as_str()),
        "X-Permanence-Call names the call's row"
    );
    let rows = setup.calls();
    assert!(
        rows.iter()
            .any(|c| c.id == row && c.caller == "+33612345678")
    );

    alice.respond(&leg, 603, Some("no"), &[], None);
    let _ = alice.wait_request_in("ACK", leg.call_id(), WAIT);
    let outcome = caller.invite_outcome(&invite, WAIT);
    if let Some((_, Some(mut dialog))) = outcome {
        let bye = dialog.request(caller.addr(), "BYE", &[], None);
        caller.send(&bye);
    }
}

/// Wrap-up as the secretary lives it: after she hangs up, a call placed during her
/// `wrap_up_seconds` does not ring her phone (the step falls through to the next one);
/// a call placed after it does.
#[test]
fn a_secretary_in_wrap_up_is_not_rung_and_is_rung_once_it_is_over() {
    let setup =
        setup(r#"[{ secretary = { timeout = 1 } }, { play = "tone/a.wav" }, { hangup = {} }]"#);
    let config = std::fs::read_to_string(setup.config()).unwrap();
    assert!(config.contains("wrap_up_seconds = 2\n"));
    std::fs::write(
        setup.config(),
        config.replace("wrap_up_seconds = 2\n", "wrap_up_seconds = 3\n"),
    )
    .unwrap();
    let server = setup.start();
    let (mut alice, alice_rtp) = raw_secretary(&setup, "alice");

    // 1. She takes a call and hangs up: wrap-up starts no earlier than her BYE.
    let (mut caller, _rtp, first) = raw_call(&setup);
    let leg = alice
        .wait_request("INVITE", WAIT)
        .unwrap_or_else(|| panic!("alice was not rung\n{}", server.log()));
    let mut dialog = answer_leg(&mut alice, &leg, &alice_rtp, None);
    let (_, caller_dialog) = caller.invite_outcome(&first, WAIT).expect("answered");
    assert!(caller_dialog.is_some(), "the caller is put through");
    let hung_up = Instant::now();
    secretary_hangs_up(&mut alice, &mut dialog, &mut caller, &first.call_id);
    // Her BYE was answered: wrap-up started, and ends by then at the latest.
    let wrap_up_over = Instant::now() + Duration::from_secs(3);

    // 2. During wrap-up: the step gives up at once (or waits out its 1 s, still inside
    //    her 3 s), the tone plays; her phone never sees this call's INVITE.
    let (mut second_caller, _rtp2, second) = raw_call(&setup);
    assert!(
        hung_up.elapsed() < Duration::from_secs(2),
        "the second call must start well inside the wrap-up; it took {:?}",
        hung_up.elapsed()
    );
    let (answer, _) = second_caller
        .invite_outcome(&second, WAIT)
        .expect("the second call is answered by the next step");
    assert_eq!(answer.status(), Some(200));
    let bye = second_caller.wait_request_in("BYE", &second.call_id, Duration::from_secs(15));
    let bye = bye.expect("the second call ends after the tone");
    second_caller.respond(&bye, 200, None, &[], None);
    alice.listen(Duration::from_millis(200));
    let mut rung: Vec<String> = alice
        .received
        .iter()
        .filter(|m| m.method() == Some("INVITE") && m.call_id() != leg.call_id())
        .map(|m| {
            let call = m.header("X-Permanence-Call").unwrap_or_default();
            format!("{} (X-Permanence-Call: {call})", m.first_line())
        })
        .collect();
    rung.dedup();
    assert!(
        rung.is_empty(),
        "the call placed during her wrap-up rang alice: {rung:?}"
    );
    let second_row = wait_call_row_by_sip_call_id(&setup, &second.call_id).unwrap();
    wait_ended(&setup, second_row);
    let timeline = events(&setup, second_row);
    assert!(
        timeline.iter().any(|e| e == "secretary-unanswered")
            && !timeline.iter().any(|e| e == "secretary-offered"),
        "{timeline:?}"
    );

    // 3. After wrap-up: she is rung again.
    std::thread::sleep(
        (wrap_up_over + Duration::from_millis(300)).saturating_duration_since(Instant::now()),
    );
    let (mut third_caller, _rtp3, third) = raw_call(&setup);
    let leg = alice.wait_request("INVITE", WAIT);
    let leg = leg.unwrap_or_else(|| panic!("alice was not rung after wrap-up\n{}", server.log()));
    let third_row = wait_call_row_by_sip_call_id(&setup, &third.call_id).unwrap();
    assert_eq!(
        leg.header("X-Permanence-Call"),
        Some(third_row.to_string().as_str())
    );
    alice.respond(&leg, 486, Some("busy"), &[], None);
    let _ = alice.wait_request_in("ACK", leg.call_id(), WAIT);
    let (answer, _) = third_caller.invite_outcome(&third, WAIT).expect("answered");
    assert_eq!(answer.status(), Some(200), "the tone step answers");
}

/// Ring-all to two phones: alice answers first; bob's phone answers too, late (after the
/// server's CANCEL, answered or ignored). Bob's 200 gets an ACK, then a BYE in his dialog,
/// and alice's conversation goes on, audio both ways, until she hangs up.
fn late_answer_is_acked_then_hung_up(bob_answers_the_cancel: bool) {
    let setup =
        setup(r#"[{ secretary = { timeout = 20, strategy = "ring-all" } }, { hangup = {} }]"#);
    let server = setup.start();
    let (mut alice, alice_rtp) = raw_secretary(&setup, "alice");
    let (mut bob, bob_rtp) = raw_secretary(&setup, "bob");
    let (mut caller, caller_rtp, invite) = raw_call(&setup);
    let a_leg = alice
        .wait_request("INVITE", WAIT)
        .unwrap_or_else(|| panic!("alice was not rung\n{}", server.log()));
    let b_leg = bob
        .wait_request("INVITE", WAIT)
        .unwrap_or_else(|| panic!("bob was not rung\n{}", server.log()));
    let b_tag = "bobslate";
    bob.respond(&b_leg, 180, Some(b_tag), &[], None);

    let mut a_dialog = answer_leg(&mut alice, &a_leg, &alice_rtp, None);
    let (answer, caller_dialog) = caller.invite_outcome(&invite, WAIT).expect("answered");
    assert!(caller_dialog.is_some(), "{}", answer.text);
    let cancel = bob.wait_request_in("CANCEL", b_leg.call_id(), WAIT);
    let cancel = cancel.expect("bob's ringing phone gets CANCEL once alice answered");
    if bob_answers_the_cancel {
        bob.respond(&cancel, 200, None, &[], None);
    }
    // Bob's phone had already picked up: its 200 crosses the CANCEL.
    let b_answer = raw_sdp(bob_rtp.local_addr().unwrap(), &[0], None, "sendrecv", 1);
    bob.respond(&b_leg, 200, Some(b_tag), &[], Some(&b_answer));
    let ack = bob.wait_request_in("ACK", b_leg.call_id(), WAIT);
    let ack = ack.unwrap_or_else(|| panic!("bob's late 200 was not ACKed\n{}", server.log()));
    assert_eq!(ack.cseq(), (1, "ACK".to_string()), "{}", ack.text);
    assert_eq!(ack.tag_of("To").as_deref(), Some(b_tag), "{}", ack.text);
    let bye = bob.wait_request_in("BYE", b_leg.call_id(), WAIT);
    let bye = bye.unwrap_or_else(|| panic!("bob's late answer was not hung up\n{}", server.log()));
    assert!(bye.at >= ack.at, "ACK first, then BYE");
    assert_eq!(bye.tag_of("To").as_deref(), Some(b_tag), "{}", bye.text);
    assert!(
        bye.first_line()
            .starts_with(&format!("BYE sip:phone@{} ", bob.addr())),
        "BYE goes to the Contact of bob's 200: {}",
        bye.first_line()
    );
    bob.respond(&bye, 200, None, &[], None);

    // Alice's conversation is untouched: no BYE for her, audio both ways.
    let a_remote = sdp_rtp(&a_leg);
    let caller_remote = sdp_rtp(&answer);
    let voice = send_rtp_frames(&alice_rtp, a_remote, 0xa11ce, tone_frames(600.0, 1.5, 0, 0));
    let talk = send_rtp_frames(
        &caller_rtp,
        caller_remote,
        0xca11,
        tone_frames(1000.0, 1.5, 0, 0),
    );
    let heard_by_alice = {
        let sock = alice_rtp.try_clone().unwrap();
        std::thread::spawn(move || hear(&sock, Duration::from_secs(5)))
    };
    let (caller_packets, caller_audio) = hear(&caller_rtp, Duration::from_secs(5));
    let (alice_packets, alice_audio) = heard_by_alice.join().unwrap();
    voice.join().unwrap();
    talk.join().unwrap();
    assert!(
        caller_packets >= 50,
        "the caller heard {caller_packets} packets\n{}",
        server.log()
    );
    let f = tone_frequency(&caller_audio);
    assert!((570.0..630.0).contains(&f), "the caller heard {f} Hz");
    assert!(alice_packets >= 50, "alice heard {alice_packets} packets");
    let f = tone_frequency(&alice_audio);
    assert!((950.0..1050.0).contains(&f), "alice heard {f} Hz");
    alice.listen(Duration::from_millis(100));
    assert!(
        !alice.received.iter().any(|m| m.method() == Some("BYE")),
        "alice's call was hung up"
    );

    secretary_hangs_up(&mut alice, &mut a_dialog, &mut caller, &invite.call_id);
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("secretary"));
    assert_eq!(handled(&setup, calls[0].id).0.as_deref(), Some("alice"));
}

#[test]
fn a_late_200_from_a_cancelled_phone_gets_ack_then_bye() {
    late_answer_is_acked_then_hung_up(true);
}

#[test]
fn a_late_200_from_a_phone_ignoring_the_cancel_gets_ack_then_bye() {
    late_answer_is_acked_then_hung_up(false);
}

/// The secretary puts the caller on hold (re-INVITE `a=sendonly`) and takes them back
/// (`a=sendrecv`): both get 200 with the mirrored direction, and after the resume each
/// side hears the other again.
#[test]
fn a_secretary_can_hold_and_resume_and_the_conversation_goes_on() {
    let setup = setup(r#"[{ secretary = { timeout = 10 } }, { hangup = {} }]"#);
    let server = setup.start();
    let (mut alice, alice_rtp) = raw_secretary(&setup, "alice");
    let (mut caller, caller_rtp, invite) = raw_call(&setup);
    let leg = alice
        .wait_request("INVITE", WAIT)
        .unwrap_or_else(|| panic!("alice was not rung\n{}", server.log()));
    let mut dialog = answer_leg(&mut alice, &leg, &alice_rtp, None);
    let (answer, caller_dialog) = caller.invite_outcome(&invite, WAIT).expect("answered");
    assert!(caller_dialog.is_some(), "{}", answer.text);
    let to_alice = sdp_rtp(&leg);
    let to_caller = sdp_rtp(&answer);

    // Before the hold: the caller hears her.
    send_rtp_frames(&alice_rtp, to_alice, 0xa11ce, tone_frames(600.0, 0.5, 0, 0))
        .join()
        .unwrap();
    let (before, _) = hear(&caller_rtp, Duration::from_secs(3));
    assert!(
        before >= 10,
        "the caller heard {before} packets before the hold"
    );

    // Hold.
    let alice_sdp = alice_rtp.local_addr().unwrap();
    let hold = dialog.request(
        alice.addr(),
        "INVITE",
        &[],
        Some(&raw_sdp(alice_sdp, &[0], None, "sendonly", 2)),
    );
    alice.send(&hold);
    let held = alice.wait_final(&dialog.call_id, "INVITE", WAIT);
    let held = held.unwrap_or_else(|| panic!("no answer to the hold\n{}", server.log()));
    assert_eq!(held.status(), Some(200), "{}", held.text);
    assert!(
        held.body().contains("a=recvonly") || held.body().contains("a=inactive"),
        "the answer to a=sendonly: {}",
        held.body()
    );
    alice.send(&dialog.ack(alice.addr(), dialog.cseq));
    std::thread::sleep(Duration::from_millis(1000));

    // Resume.
    let resume = dialog.request(
        alice.addr(),
        "INVITE",
        &[],
        Some(&raw_sdp(alice_sdp, &[0], None, "sendrecv", 3)),
    );
    alice.send(&resume);
    let resumed = alice.wait_final(&dialog.call_id, "INVITE", WAIT);
    let resumed = resumed.unwrap_or_else(|| panic!("no answer to the resume\n{}", server.log()));
    assert_eq!(resumed.status(), Some(200), "{}", resumed.text);
    assert!(
        resumed.body().contains("a=sendrecv"),
        "the answer to a=sendrecv: {}",
        resumed.body()
    );
    alice.send(&dialog.ack(alice.addr(), dialog.cseq));

    // After the resume: audio both ways again.
    drain_udp(&caller_rtp);
    drain_udp(&alice_rtp);
    let voice = send_rtp_frames(
        &alice_rtp,
        to_alice,
        0xa11ce,
        tone_frames(600.0, 1.5, 0, 8000),
    );
    let talk = send_rtp_frames(
        &caller_rtp,
        to_caller,
        0xca11,
        tone_frames(1000.0, 1.5, 0, 0),
    );
    let heard_by_alice = {
        let sock = alice_rtp.try_clone().unwrap();
        std::thread::spawn(move || hear(&sock, Duration::from_secs(5)))
    };
    let (packets, audio) = hear(&caller_rtp, Duration::from_secs(5));
    let (alice_packets, alice_audio) = heard_by_alice.join().unwrap();
    voice.join().unwrap();
    talk.join().unwrap();
    assert!(
        packets >= 50,
        "after the resume the caller heard {packets} packets of alice's 75\n{}",
        server.log()
    );
    let f = tone_frequency(&audio);
    assert!((570.0..630.0).contains(&f), "the caller heard {f} Hz");
    assert!(
        alice_packets >= 50,
        "after the resume alice heard {alice_packets} packets of the caller's 75"
    );
    let f = tone_frequency(&alice_audio);
    assert!((950.0..1050.0).contains(&f), "alice heard {f} Hz");

    secretary_hangs_up(&mut alice, &mut dialog, &mut caller, &invite.call_id);
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("secretary"));
}

/// The caller offers telephone-event 101 and presses 5 while talking to alice: RFC 4733
/// packets reach her phone when its answer accepted telephone-event, and none when it
/// did not (her audio still arrives).
fn key_presses_reach_the_secretary(her_answer_has_telephone_event: bool) {
    let setup = setup(r#"[{ secretary = { timeout = 10 } }, { hangup = {} }]"#);
    let server = setup.start();
    let (mut alice, alice_rtp) = raw_secretary(&setup, "alice");
    let (mut caller, caller_rtp, invite) = raw_call(&setup);
    let leg = alice
        .wait_request("INVITE", WAIT)
        .unwrap_or_else(|| panic!("alice was not rung\n{}", server.log()));
    assert!(
        leg.body().contains("telephone-event/8000"),
        "the server offers telephone-event to her phone: {}",
        leg.body()
    );
    let te = her_answer_has_telephone_event.then_some(101);
    let mut dialog = answer_leg(&mut alice, &leg, &alice_rtp, te);
    let (answer, _) = caller.invite_outcome(&invite, WAIT).expect("answered");
    assert!(
        answer.body().contains("a=rtpmap:101 telephone-event/8000"),
        "the caller may send telephone-events: {}",
        answer.body()
    );
    let to_caller = sdp_rtp(&answer);
    let mut frames = tone_frames(1000.0, 0.6, 0, 0);
    frames.extend(key_press_frames(101, 5, 30 * 160));
    frames.extend(tone_frames(1000.0, 0.6, 0, 40 * 160));
    let sender = send_rtp_frames(&caller_rtp, to_caller, 0xca11, frames);
    let got = collect_rtp_payloads(
        &alice_rtp,
        Duration::from_millis(800),
        Duration::from_secs(6),
    );
    sender.join().unwrap();
    let audio = got.iter().filter(|(pt, _)| *pt == 0).count();
    let events: Vec<&Vec<u8>> = got
        .iter()
        .filter(|(pt, _)| *pt == 101)
        .map(|(_, p)| p)
        .collect();
    let others: Vec<u8> = got
        .iter()
        .map(|(pt, _)| *pt)
        .filter(|pt| *pt != 0 && *pt != 101)
        .collect();
    assert!(
        audio >= 40,
        "alice heard {audio} audio packets of 60\n{}",
        server.log()
    );
    assert!(others.is_empty(), "unexpected payload types {others:?}");
    if her_answer_has_telephone_event {
        assert!(
            events.len() >= 5,
            "alice's phone got {} telephone-event packets of 8",
            events.len()
        );
        assert!(
            events.iter().all(|p| p.first() == Some(&5)),
            "the key is 5: {events:?}"
        );
        assert!(
            events
                .iter()
                .any(|p| p.get(1).is_some_and(|b| b & 0x80 != 0)),
            "the end of the press arrives: {events:?}"
        );
    } else {
        assert!(
            events.is_empty(),
            "alice's phone did not accept telephone-event yet got {} such packets",
            events.len()
        );
    }
    secretary_hangs_up(&mut alice, &mut dialog, &mut caller, &invite.call_id);
}

#[test]
fn telephone_events_reach_a_secretary_whose_phone_accepted_them() {
    key_presses_reach_the_secretary(true);
}

#[test]
fn telephone_events_never_reach_a_secretary_whose_phone_did_not_accept_them() {
    key_presses_reach_the_secretary(false);
}
