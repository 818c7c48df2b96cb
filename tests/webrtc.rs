//! The browser phone in a real Chromium: the page turns its phone on (one peer connection
//! negotiated over the console's WebSocket, ICE-lite and DTLS-SRTP with the server), a
//! SIPp caller rings it, the test clicks answer, and both sides hear each other: the page
//! measures the caller's 1 kHz with Web Audio, the caller's capture decodes to the fake
//! microphone's 600 Hz. Chromium runs in a network namespace with nothing but loopback.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::browser::*;
use common::*;
use serde_json::Value;

/// Runs `test` inside a fresh network namespace with loopback and one private link (a
/// veth pair, both ends inside): Chromium gathers no ICE candidate on loopback alone.
/// Nothing leaves the namespace. True when already inside.
fn inside_private_namespace(test: &str) -> bool {
    if std::env::var_os(IN_NETNS).is_some() {
        return true;
    }
    let status = std::process::Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip link set lo up && ip link add pv0 type veth peer name pv1 && \
             ip addr add 10.99.0.1/24 dev pv0 && ip link set pv0 up && ip link set pv1 up && \
             exec \"$@\"",
            "sh",
        ])
        .arg(std::env::current_exe().unwrap())
        // `--include-ignored`: the benchmark's test is ignored unless asked for.
        .args([
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(IN_NETNS, "1")
        .status()
        .expect("unshare (util-linux) and ip (iproute2)");
    assert!(
        status.success(),
        "the test failed inside its network namespace"
    );
    false
}

/// Alice serves acme; the plan rings her, then hangs up.
fn phone_setup(extra_media: &str) -> (Setup, SocketAddr) {
    let (setup, web) = common::web::setup(r#"[{ secretary = { timeout = 20 } }, { hangup = {} }]"#);
    if !extra_media.is_empty() {
        setup.add_config_lines("media", extra_media);
    }
    (setup, web)
}

/// The usual start: [`phone_setup`] with `extra_media`, the server started, Chromium with
/// its fake microphone logged in as alice and her browser phone connected.
fn phone_ready(extra_media: &str) -> (Setup, SocketAddr, Server, Browser) {
    let (setup, web) = phone_setup(extra_media);
    let server = setup.start();
    let browser = browser_with_microphone(&setup);
    phone_on(&browser, web, &server);
    (setup, web, server, browser)
}

/// Chromium with a fake microphone playing a 600 Hz tone, no permission prompt, audio
/// allowed to play without a click.
fn browser_with_microphone(setup: &Setup) -> Browser {
    let mic = setup.dir.path().join("mic-600.wav");
    write_tone(&mic, 600.0, 60.0);
    Browser::start_with(
        &setup.dir.path().join("chromium"),
        &[
            "--use-fake-ui-for-media-stream".into(),
            "--use-fake-device-for-media-stream".into(),
            format!("--use-file-for-fake-audio-capture={}", mic.display()),
            "--autoplay-policy=no-user-gesture-required".into(),
        ],
    )
}

/// Logs alice in and turns her browser phone on; returns once it is connected.
fn phone_on(browser: &Browser, web: SocketAddr, server: &Server) {
    browser.log_in(web, "alice", "alice");
    browser.wait_for(
        "the board",
        "return !document.getElementById('board').hidden",
    );
    browser.click("#phone-on");
    let deadline = Instant::now() + Duration::from_secs(15);
    while browser.text("#phone-state") != "prêt" {
        assert!(
            Instant::now() < deadline,
            "the browser phone did not connect: {}\n{}\n{}",
            browser.text("#phone-state"),
            browser.eval("return phone.pc && [phone.pc.iceConnectionState, phone.pc.connectionState, phone.pc.localDescription.sdp, phone.pc.remoteDescription && phone.pc.remoteDescription.sdp].join('\\n')"),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Her phones as the board shows them (the seats table's third column).
fn phones_on_board(web: SocketAddr, cookie: &str) -> Option<u64> {
    let (_, _, body) = common::web::http(web, "GET", "/api/board", &[("Cookie", cookie)], "");
    let board: Value = serde_json::from_str(&body).ok()?;
    board["seats"]
        .as_array()?
        .iter()
        .find(|s| s["username"] == "alice")?["phones"]
        .as_u64()
}

/// What the page hears: the loudest frequency and its level, polled until it is near
/// `hz` (or 10 s pass); the last reading.
fn page_hears(browser: &Browser, hz: f64) -> (f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = (0.0, -200.0);
    while Instant::now() < deadline {
        let heard = browser.eval("return window.phoneHears()");
        if let (Some(f), Some(db)) = (heard["hz"].as_f64(), heard["db"].as_f64()) {
            last = (f, db);
            if (f - hz).abs() < 50.0 && db > -70.0 {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

fn artefact(name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    println!("screenshot: {}", path.display());
    path
}

/// A SIPp caller to ACME (`talk.xml`) streaming a `hz` PCMU tone for `seconds`, offering
/// `payloads`; the socket its RTP arrives on.
fn call_acme_with_tone(
    setup: &Setup,
    name: &str,
    hz: f64,
    seconds: f64,
    payloads: &str,
) -> (std::thread::JoinHandle<std::process::Output>, UdpSocket) {
    let pcap = setup.dir.path().join(format!("{name}.pcap"));
    write_tone_pcap_as(&pcap, hz, seconds, 0);
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rtp.local_addr().unwrap().port().to_string();
    let addr = setup.addr();
    let payloads = payloads.to_string();
    let caller = std::thread::spawn(move || {
        let pcap = pcap.to_str().unwrap();
        sipp_call(
            "talk.xml",
            addr,
            "+33180000001",
            &port,
            &payloads,
            &["-key", "audio_pcap", pcap],
        )
    });
    (caller, rtp)
}

/// Waits for the page's ring.
fn wait_ringing(browser: &Browser) {
    browser.wait_for(
        "the browser phone to ring",
        "return !document.getElementById('phone-ring').hidden",
    );
}

/// Asserts the page hears the far end's 1 kHz.
fn assert_page_hears_1_khz(browser: &Browser, server: &Server, what: &str) {
    let (hz, db) = page_hears(browser, 1000.0);
    assert!(
        (950.0..1050.0).contains(&hz) && db > -70.0,
        "{what}: the page heard {hz} Hz at {db} dB, not the far end's 1 kHz\n{}",
        server.log()
    );
}

/// Asserts what an RTP socket heard (see `hear`) was more than `min_packets` packets of a
/// tone within 30 Hz of `hz`.
fn assert_heard(
    heard: (usize, Vec<i16>),
    min_packets: usize,
    hz: f64,
    what: &str,
    server: &Server,
) {
    let (packets, audio) = heard;
    assert!(
        packets > min_packets,
        "{what} heard {packets} packets\n{}",
        server.log()
    );
    let f = tone_frequency(&audio[audio.len() / 4..audio.len() * 3 / 4]);
    assert!(
        (hz - 30.0..hz + 30.0).contains(&f),
        "{what} heard {f} Hz, not {hz} Hz"
    );
}

/// Who the records say handled a call.
fn handled_by(setup: &Setup, call: i64) -> Option<String> {
    rusqlite::Connection::open(setup.db())
        .unwrap()
        .query_row("SELECT handled_by FROM calls WHERE id = ?1", [call], |r| {
            r.get(0)
        })
        .unwrap()
}

#[test]
fn a_call_rings_the_browser_phone_and_both_sides_hear_each_other() {
    if !inside_private_namespace("a_call_rings_the_browser_phone_and_both_sides_hear_each_other") {
        return;
    }
    let (setup, _, server, browser) = phone_ready("");

    let (caller, caller_rtp) = call_acme_with_tone(&setup, "caller", 1000.0, 20.0, "0");
    wait_ringing(&browser);
    assert!(
        browser.text("#phone-caller").contains("+33"),
        "the ring names the caller: {}",
        browser.text("#phone-caller")
    );
    // The caller gets no RTP before she answers (the plan answers nobody first): its first
    // packet is the browser's microphone arriving.
    let heard_by_caller = std::thread::spawn(move || {
        caller_rtp
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let first = caller_rtp
            .peek_from(&mut [0u8; 2048])
            .ok()
            .map(|_| Instant::now());
        (first, hear(&caller_rtp, Duration::from_secs(30)))
    });
    let clicked = Instant::now();
    browser.click("#phone-answer");
    // The page hears the caller once its analyser's loudest frequency is 1 kHz: polled
    // every 10 ms for this figure (benches/README.md, "answer click to two-way audio").
    let page_heard = loop {
        let heard = browser.eval("return window.phoneHears()");
        if let (Some(f), Some(db)) = (heard["hz"].as_f64(), heard["db"].as_f64())
            && (f - 1000.0).abs() < 50.0
            && db > -70.0
        {
            break clicked.elapsed();
        }
        if clicked.elapsed() > Duration::from_secs(10) {
            break Duration::MAX;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_page_hears_1_khz(&browser, &server, "the call");
    browser.screenshot(&artefact("webrtc-in-call.png"));
    // Two more seconds of the secretary's voice for the caller, then she hangs up.
    std::thread::sleep(Duration::from_secs(2));
    browser.click("#phone-hangup");

    let out = caller.join().unwrap();
    assert_sipp_ok(&out);
    let (caller_first, heard) = heard_by_caller.join().unwrap();
    assert_heard(
        heard,
        100,
        600.0,
        "the caller (the browser's microphone)",
        &server,
    );
    let caller_heard = caller_first.map(|at| at.saturating_duration_since(clicked));
    println!(
        "answer click to two-way audio: the page hears the caller after {page_heard:?}, the caller's first packet after {caller_heard:?}"
    );

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("secretary"));
    assert_eq!(
        handled_by(&setup, calls[0].id).as_deref(),
        Some("alice"),
        "the row names alice"
    );
    let timeline = setup.events(calls[0].id);
    for kind in ["secretary-answered", "secretary-hung-up", "bye-sent"] {
        assert!(
            timeline.iter().any(|e| e == kind),
            "{kind} missing from {timeline:?}"
        );
    }
    browser.wait_for(
        "the phone to be free again",
        "return document.getElementById('phone-call').hidden",
    );
}

/// Closing the page mid-call: her browser phone leaves the desk within seconds (no call is
/// offered to a dead page), and the call, whose secretary side went silent, ends by the
/// RTP time-out; the row says so.
#[test]
fn closing_the_page_mid_call_takes_the_phone_off_and_ends_the_call_by_rtp_timeout() {
    if !inside_private_namespace(
        "closing_the_page_mid_call_takes_the_phone_off_and_ends_the_call_by_rtp_timeout",
    ) {
        return;
    }
    let (setup, web) = phone_setup("rtp_timeout_seconds = 3");
    let server = setup.start();
    let (status, cookie, _) = common::web::login(web, "alice", "alice");
    assert_eq!(status, 200);
    let cookie = cookie.unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    assert_eq!(phones_on_board(web, &cookie), Some(0), "no phone yet");
    let browser = browser_with_microphone(&setup);
    phone_on(&browser, web, &server);
    assert_eq!(
        phones_on_board(web, &cookie),
        Some(1),
        "her browser is one of her phones"
    );

    let (caller, _rtp) = call_acme_with_tone(&setup, "caller", 1000.0, 30.0, "0");
    wait_ringing(&browser);
    browser.click("#phone-answer");
    assert_page_hears_1_khz(&browser, &server, "in the call");

    let closed = Instant::now();
    browser.go("about:blank");
    let deadline = Instant::now() + Duration::from_secs(5);
    while phones_on_board(web, &cookie) != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the closed page's phone stayed on the desk"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let off_after = closed.elapsed();

    let out = caller.join().unwrap();
    assert_sipp_ok(&out);
    let ended_after = closed.elapsed();
    assert!(
        ended_after < Duration::from_secs(8),
        "the call ended {ended_after:?} after the page closed (RTP time-out 3 s)\n{}",
        server.log()
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("secretary"));
    let timeline = setup.events(calls[0].id);
    assert!(
        timeline.iter().any(|e| e == "rtp-timeout"),
        "the row says the audio stopped: {timeline:?}"
    );
    println!(
        "phone off the desk {off_after:?} after the page closed; call ended after {ended_after:?}"
    );
}

/// One call taken in the browser: a SIPp caller streaming 1 kHz rings the page, the test
/// clicks answer; the page must hear ~1 kHz and the caller ~600 Hz (the fake microphone)
/// before she hangs up.
fn answered_call_with_audio_both_ways(
    setup: &Setup,
    browser: &Browser,
    server: &Server,
    which: &str,
) {
    let name = format!("caller-{which}");
    let (caller, caller_rtp) = call_acme_with_tone(setup, &name, 1000.0, 20.0, "0");
    wait_ringing(browser);
    let heard_by_caller = std::thread::spawn(move || hear(&caller_rtp, Duration::from_secs(30)));
    browser.click("#phone-answer");
    assert_page_hears_1_khz(browser, server, &format!("{which} call"));
    std::thread::sleep(Duration::from_secs(2));
    browser.click("#phone-hangup");
    assert_sipp_ok(&caller.join().unwrap());
    assert_heard(
        heard_by_caller.join().unwrap(),
        100,
        600.0,
        &format!("{which} call: the caller"),
        server,
    );
    browser.wait_for(
        "the phone to be free again",
        "return document.getElementById('phone-call').hidden",
    );
}

/// The peer connection lasts across calls: two calls in a row on one browser phone both
/// have audio both ways (each call's stream starts its own RTP numbering; the browser
/// must be sent one continuous sequence or its SRTP drops the second call's audio).
#[test]
fn two_calls_in_a_row_on_one_browser_phone_both_have_audio_both_ways() {
    if !inside_private_namespace(
        "two_calls_in_a_row_on_one_browser_phone_both_have_audio_both_ways",
    ) {
        return;
    }
    let (setup, web) = phone_setup("");
    setup.add_config_lines("distribution", "wrap_up_seconds = 0");
    let server = setup.start();
    let browser = browser_with_microphone(&setup);
    phone_on(&browser, web, &server);
    answered_call_with_audio_both_ways(&setup, &browser, &server, "first");
    // The first call's sound is gone from the page before the second rings.
    let hung_up = Instant::now();
    loop {
        let heard = browser.eval("return window.phoneHears()");
        if heard["db"].as_f64().is_none_or(|db| db < -70.0) {
            break;
        }
        assert!(
            hung_up.elapsed() < Duration::from_secs(8),
            "the page still hears something between calls: {heard}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("silent {:?} after the first call", hung_up.elapsed());
    answered_call_with_audio_both_ways(&setup, &browser, &server, "second");
    answered_call_with_audio_both_ways(&setup, &browser, &server, "third");
    let calls = setup.wait_calls(|c| c.len() == 3 && c.iter().all(|c| c.outcome.is_some()));
    assert!(
        calls
            .iter()
            .all(|c| c.outcome.as_deref() == Some("secretary")),
        "{calls:?}"
    );
}

/// A registered SIP phone of alice's running `scenario` (SIPp), once it has bound its port:
/// with the browser phone on, she has two phones.
fn alice_sip_phone(setup: &Setup, scenario: &str, args: &[&str]) -> std::process::Child {
    let port = register_phone_port(setup.addr(), "alice", "alice");
    let mut all = vec!["-key", "username", "alice"];
    all.extend_from_slice(args);
    let mut child = sipp_phone(scenario, port, &all);
    wait_sipp_phone_ready(&mut child, port);
    child
}

/// Records the type of every phone message the page is handed, in `window.phoneSeen`.
fn record_phone_messages(browser: &Browser) {
    browser.eval(
        "const handle = window.phoneMessage; window.phoneSeen = [];\
         window.phoneMessage = (m) => { window.phoneSeen.push(m.type); handle(m); }; return true",
    );
}

fn phone_messages_seen(browser: &Browser) -> Vec<String> {
    browser
        .eval("return window.phoneSeen")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Her browser phone and her SIP phone both ring; she answers in the browser: the SIP
/// phone gets CANCEL (its scenario fails without one), and the call is hers in the browser
/// with audio both ways.
#[test]
fn both_her_phones_ring_and_the_browser_answering_first_cancels_the_sip_phone() {
    if !inside_private_namespace(
        "both_her_phones_ring_and_the_browser_answering_first_cancels_the_sip_phone",
    ) {
        return;
    }
    let (setup, _, server, browser) = phone_ready("");
    let sip_phone = alice_sip_phone(&setup, "secretary_cancelled.xml", &[]);

    let (caller, caller_rtp) = call_acme_with_tone(&setup, "caller", 1000.0, 20.0, "0");
    wait_ringing(&browser);
    let heard_by_caller = std::thread::spawn(move || hear(&caller_rtp, Duration::from_secs(30)));
    browser.click("#phone-answer");

    // The SIP phone's scenario ends only after CANCEL, 200, 487 and the server's ACK.
    let sip_out = finish(sip_phone);
    assert_sipp_ok(&sip_out);

    assert_page_hears_1_khz(&browser, &server, "answered in the browser");
    std::thread::sleep(Duration::from_secs(2));
    browser.click("#phone-hangup");
    assert_sipp_ok(&caller.join().unwrap());
    assert_heard(
        heard_by_caller.join().unwrap(),
        100,
        600.0,
        "the caller (the browser's microphone)",
        &server,
    );

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("secretary"));
    assert_eq!(
        handled_by(&setup, calls[0].id).as_deref(),
        Some("alice"),
        "the row names alice"
    );
    let timeline = setup.events(calls[0].id);
    for kind in ["secretary-answered", "secretary-cancelled"] {
        assert!(
            timeline.iter().any(|e| e == kind),
            "{kind} missing from {timeline:?}"
        );
    }
}

/// Both her phones ring and the SIP phone answers first: the page is told (its ring
/// stops, it never goes into the call), the caller hears the SIP phone (400 Hz) and not
/// the browser's microphone (600 Hz), and the page hears nothing of the caller.
#[test]
fn both_her_phones_ring_and_the_sip_phone_answering_first_stops_the_page_ringing() {
    if !inside_private_namespace(
        "both_her_phones_ring_and_the_sip_phone_answering_first_stops_the_page_ringing",
    ) {
        return;
    }
    let (setup, _, server, browser) = phone_ready("");
    record_phone_messages(&browser);

    let desk_pcap = setup.dir.path().join("desk.pcap");
    write_tone_pcap_as(&desk_pcap, 400.0, 2.5, 0);
    let (_desk_rtp, desk_port) = rtp_socket();
    let sip_phone = alice_sip_phone(
        &setup,
        "secretary.xml",
        &[
            "-key",
            "rtp_port",
            &desk_port,
            "-key",
            "offer",
            "0",
            "-key",
            "audio_pcap",
            desk_pcap.to_str().unwrap(),
        ],
    );

    let (caller, caller_rtp) = call_acme_with_tone(&setup, "caller", 1000.0, 10.0, "0");
    let heard_by_caller = std::thread::spawn(move || hear(&caller_rtp, Duration::from_secs(30)));

    // While the SIP phone's call lasts (3 s after its answer), the page must not hear
    // the caller.
    let mut loudest_near_1k = -200.0f64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let heard = browser.eval("return window.phoneHears()");
        if let (Some(f), Some(db)) = (heard["hz"].as_f64(), heard["db"].as_f64())
            && (f - 1000.0).abs() < 50.0
        {
            loudest_near_1k = loudest_near_1k.max(db);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_sipp_ok(&finish(sip_phone));
    assert_sipp_ok(&caller.join().unwrap());
    assert_heard(
        heard_by_caller.join().unwrap(),
        50,
        400.0,
        "the caller (the SIP phone's 400 Hz, not the browser's 600 Hz)",
        &server,
    );
    assert!(
        loudest_near_1k < -70.0,
        "the page heard the caller's 1 kHz at {loudest_near_1k} dB though the SIP phone answered"
    );

    let seen = phone_messages_seen(&browser);
    assert!(
        seen.iter().any(|t| t == "ring"),
        "the browser phone rang too: {seen:?}\n{}",
        server.log()
    );
    assert!(
        seen.iter().any(|t| t == "ring-cancelled"),
        "the page was told its ring is over: {seen:?}"
    );
    browser.wait_for(
        "the ring to stop on the page",
        "return document.getElementById('phone-ring').hidden \
         && document.getElementById('phone-call').hidden",
    );
    assert_eq!(browser.text("#phone-state"), "prêt");

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("secretary"));
    let timeline = setup.events(calls[0].id);
    assert!(
        timeline.iter().any(|e| e == "secretary-answered"),
        "{timeline:?}"
    );
}

/// Every RTP packet the caller receives for up to `max` (or 1.5 s of quiet after the
/// first): payload type and payload, in order.
fn capture(sock: &UdpSocket, max: Duration) -> Vec<(u8, Vec<u8>)> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let start = Instant::now();
    let mut last = Instant::now();
    let mut packets = Vec::new();
    let mut buf = [0u8; 2048];
    while start.elapsed() < max
        && (packets.is_empty() || last.elapsed() < Duration::from_millis(1500))
    {
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && n > 12
        {
            last = Instant::now();
            packets.push((buf[1] & 0x7f, buf[12..n].to_vec()));
        }
    }
    packets
}

/// Hold: the caller hears the company's hold music (the very bytes of
/// `sounds/default/hold.wav` in µ-law) and then the secretary again; a key pressed on the
/// page's keypad reaches the caller as an RFC 4733 telephone-event.
#[test]
fn hold_plays_music_to_the_caller_and_the_keypad_sends_rfc_4733() {
    if !inside_private_namespace("hold_plays_music_to_the_caller_and_the_keypad_sends_rfc_4733") {
        return;
    }
    let (setup, _, server, browser) = phone_ready("");

    let (caller, caller_rtp) = call_acme_with_tone(&setup, "caller", 1000.0, 30.0, "0 101");
    wait_ringing(&browser);
    let heard = std::thread::spawn(move || capture(&caller_rtp, Duration::from_secs(40)));
    browser.click("#phone-answer");
    assert_page_hears_1_khz(&browser, &server, "in the call");

    browser.click("#phone-hold");
    std::thread::sleep(Duration::from_secs(2));
    browser.screenshot(&artefact("webrtc-on-hold.png"));
    browser.click("#phone-hold");
    std::thread::sleep(Duration::from_millis(1500));
    browser.click("#phone-keypad button:nth-child(5)");
    std::thread::sleep(Duration::from_secs(1));
    browser.click("#phone-hangup");
    let hung_up = Instant::now();
    assert_sipp_ok(&caller.join().unwrap());
    let packets = heard.join().unwrap();
    assert!(
        hung_up.elapsed() < Duration::from_secs(5),
        "the caller still heard something {:?} after the hang-up",
        hung_up.elapsed()
    );

    let audio: Vec<u8> = packets
        .iter()
        .filter(|(pt, _)| *pt == 0)
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    let hold: Vec<u8> = hound::WavReader::open(repo().join("sounds/default/hold.wav"))
        .unwrap()
        .into_samples::<i16>()
        .map(|s| permanence::g711::linear_to_ulaw(s.unwrap()))
        .collect();
    let music = &hold[800..1600];
    let at = audio
        .windows(music.len())
        .position(|w| w == music)
        .unwrap_or_else(|| panic!("the caller never heard the hold music\n{}", server.log()));
    // The last second before the music (which starts 800 samples before `at`).
    let start = at.saturating_sub(800 + 8000);
    let before: Vec<i16> = audio[start..at.saturating_sub(800)]
        .iter()
        .map(|&b| permanence::g711::ulaw_to_linear(b))
        .collect();
    let f = tone_frequency(&before);
    assert!(
        (570.0..630.0).contains(&f),
        "before hold: {f} Hz ({} samples before the music)",
        at
    );
    // After the resume, the secretary's 600 Hz again (the last second of the call).
    let after: Vec<i16> = audio[audio.len() - 8000..]
        .iter()
        .map(|&b| permanence::g711::ulaw_to_linear(b))
        .collect();
    let f = tone_frequency(&after);
    assert!((570.0..630.0).contains(&f), "after hold: {f} Hz");

    let events: Vec<&Vec<u8>> = packets
        .iter()
        .filter(|(pt, _)| *pt == 101)
        .map(|(_, p)| p)
        .collect();
    assert!(
        events.iter().any(|p| p.first() == Some(&5)),
        "no telephone-event for key 5 among {} events\n{}",
        events.len(),
        server.log()
    );
}

/// The signalling is hostile input like the rest: a message that is not understood, an
/// offer that is not SDP, an answer to a ring she never had and an oversized message get
/// an error or nothing, never a phone or a crash; and no phone ever reaches the desk.
#[test]
fn hostile_signalling_gets_errors_and_no_phone() {
    let (setup, web) = phone_setup("");
    let server = setup.start();
    let (status, cookie, _) = common::web::login(web, "alice", "alice");
    assert_eq!(status, 200);
    let cookie = cookie.unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let origin = format!("http://{web}");
    let mut live = common::web::Live::open(web, &cookie, &origin).unwrap();
    live.next_board();

    live.send_text(r#"{"type":"answer","ring":1}"#);
    live.send_text(r#"{"type":"call-everyone"}"#);
    let reply = live.next_not_board().unwrap();
    assert_eq!(reply["type"], "error", "{reply}");
    live.send_text(r#"{"type":"phone-on","sdp":"<script>alert(1)</script>"}"#);
    let reply = live.next_not_board().unwrap();
    assert_eq!(reply["type"], "phone-error", "{reply}");
    let opus_only = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\n\
        a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 93:5D:06:08:69:11:83:E8:19:EE:57:32:FE:68:73:88:74:53:BC:21:70:32:03:B1:94:08:31:31:1B:E7:2F:0D\r\n\
        a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";
    let message = serde_json::json!({ "type": "phone-on", "sdp": opus_only }).to_string();
    live.send_text(&message);
    let reply = live.next_not_board().unwrap();
    assert_eq!(reply["type"], "phone-error", "{reply}");
    assert_eq!(phones_on_board(web, &cookie), Some(0));

    // Larger than any offer: the socket is closed.
    let huge = format!(r#"{{"type":"phone-on","sdp":"{}"}}"#, "a".repeat(64 * 1024));
    live.send_text(&huge);
    assert!(
        live.next_not_board().is_none(),
        "an oversized message closes the socket"
    );
    assert_eq!(phones_on_board(web, &cookie), Some(0));
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Calling out from a task with her browser phone on: the call rings her page, whose
/// card says it is her own call to the customer (not a caller for the company); she
/// answers there, the server dials the customer through the trunk (SIPp,
/// `trunk_callee.xml`, which fails itself unless it sees acme's number), and each side
/// hears the other: the customer her fake microphone's 600 Hz, the page the customer's
/// 1 kHz. Her hang-up on the page ends the customer's side too; the row is outbound, for
/// the task, handled by alice.
#[test]
fn a_task_call_rings_the_browser_phone_and_bridges_it_with_the_customer() {
    if !inside_private_namespace(
        "a_task_call_rings_the_browser_phone_and_bridges_it_with_the_customer",
    ) {
        return;
    }
    let (setup, web) = phone_setup("");
    let acme = "[company]\nid = \"acme\"\nname = \"ACME Plomberie\"\n\
                numbers = [\"+33180000001\", \"+33180000002\"]\ncaller_id = \"+33180000002\"\n\n\
                [[route]]\nname = \"main\"\nsteps = [{ hangup = {} }]\n";
    std::fs::write(setup.dir.path().join("dialplans/acme.toml"), acme).unwrap();
    let trunk_port = free_port();
    let mut config = std::fs::read_to_string(setup.config()).unwrap();
    config.push_str(&format!(
        "\n[trunk]\nproxy = \"127.0.0.1:{trunk_port}\"\ndomain = \"sip.provider.example\"\n"
    ));
    std::fs::write(setup.config(), config).unwrap();
    let server = setup.start();
    let browser = browser_with_microphone(&setup);
    phone_on(&browser, web, &server);

    // The customer (the trunk): answers, says 1 kHz, waits for the server's BYE.
    let (customer_rtp, customer_rtp_port) = rtp_socket();
    let customer_voice = setup.dir.path().join("customer.pcap");
    write_tone_pcap(&customer_voice, 1000.0, 20.0);
    let mut trunk = sipp_phone(
        "trunk_callee.xml",
        trunk_port,
        &[
            "-key",
            "rtp_port",
            &customer_rtp_port,
            "-key",
            "audio_pcap",
            customer_voice.to_str().unwrap(),
        ],
    );
    wait_sipp_phone_ready(&mut trunk, trunk_port);

    let (status, cookie, body) = common::web::login(web, "alice", "alice");
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let post = |path: &str, body: &str| {
        let (status, _, body) = common::web::http(
            web,
            "POST",
            path,
            &[("Cookie", cookie.as_str()), common::web::JSON],
            body,
        );
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    let (status, body) = post(
        "/api/tasks",
        r#"{"company":"acme","kind":"callback","customer":"Mme Lefèvre","phone":"06 11 22 33 44"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let task = body["task"]["id"].as_i64().unwrap();
    let (status, body) = post(
        &format!("/api/tasks/{task}/call"),
        r#"{"number":"0611223344"}"#,
    );
    assert_eq!(status, 202, "{body}\n{}", server.log());
    let call = body["call"].as_i64().unwrap();

    wait_ringing(&browser);
    let kind = browser.text("#phone-ring-kind");
    let whom = browser.text("#phone-caller");
    browser.screenshot(&artefact("webrtc-callout-ring.png"));
    assert!(
        kind.contains("Votre appel"),
        "the card says it is her own call: {kind}"
    );
    assert!(
        whom.contains("Mme Lefèvre") && whom.contains("+33611223344") && whom.contains("ACME"),
        "the card names the customer, the number and the company: {whom}"
    );
    assert!(
        browser.eval("return document.getElementById('phone-hold').hidden") == Value::Bool(true),
        "no hold button on her own call"
    );

    let customer_hears = std::thread::spawn(move || hear(&customer_rtp, Duration::from_secs(30)));
    browser.click("#phone-answer");

    assert_page_hears_1_khz(&browser, &server, "the customer");
    browser.screenshot(&artefact("webrtc-callout-talking.png"));
    std::thread::sleep(Duration::from_secs(2));
    browser.click("#phone-hangup");

    // Her hang-up ends the customer's side: the trunk gets the BYE its scenario waits for.
    assert_sipp_ok(&finish(trunk));
    assert_heard(
        customer_hears.join().unwrap(),
        100,
        600.0,
        "the customer (the browser's microphone)",
        &server,
    );

    assert_eq!(
        setup.ended_outbound_row(call),
        (
            Some("acme".into()),
            "outbound".into(),
            Some(task),
            Some("alice".into()),
            Some("secretary".into()),
            "+33611223344".into(),
            "+33180000002".into()
        )
    );
    browser.wait_for(
        "the phone to be free again",
        "return document.getElementById('phone-call').hidden",
    );
}

/// The card's transfer button on a call taken in the browser: marie's SIP phone takes the
/// caller and hears them (1 kHz), the page's call ends, the card says it connected, and
/// the records say alice took it and put it through to marie.
#[test]
fn a_call_taken_in_the_browser_is_transferred_with_the_cards_button() {
    if !inside_private_namespace("a_call_taken_in_the_browser_is_transferred_with_the_cards_button")
    {
        return;
    }
    let (setup, web) = phone_setup("");
    let plan_path = setup.dir.path().join("dialplans/acme.toml");
    let plan = std::fs::read_to_string(&plan_path).unwrap().replace(
        "[[route]]",
        "[executives.marie]\nname = \"Marie Durand\"\nreach = [\"user:marie\"]\n\n[[route]]",
    );
    std::fs::write(&plan_path, plan).unwrap();
    let server = setup.start();
    let browser = browser_with_microphone(&setup);
    phone_on(&browser, web, &server);
    let port = register_phone_port(setup.addr(), "marie", "marie");
    let (mut marie, marie_rtp) = listening_phone(&setup, port, "marie");
    wait_sipp_phone_ready(&mut marie, port);

    // A caller who talks (1 kHz) and hangs up 4 s after the answer (`talk_hangup.xml`).
    let pcap = setup.dir.path().join("caller.pcap");
    write_tone_pcap(&pcap, 1000.0, 4.0);
    let addr = setup.addr();
    let caller = std::thread::spawn(move || {
        let (_rtp, port) = rtp_socket();
        sipp_call(
            "talk_hangup.xml",
            addr,
            "+33180000001",
            &port,
            "0",
            &["-key", "audio_pcap", pcap.to_str().unwrap()],
        )
    });
    wait_ringing(&browser);
    browser.click("#phone-answer");
    assert_page_hears_1_khz(&browser, &server, "before the transfer");

    let marie_hears = std::thread::spawn(move || hear(&marie_rtp, Duration::from_secs(10)));
    let button = "#transfer-buttons button[data-executive=marie]";
    browser.wait_for(
        "marie's button, live while alice talks",
        &format!(
            "const b = document.querySelector('{button}'); return b && !b.hidden && !b.disabled"
        ),
    );
    browser.click(button);
    browser.wait_for(
        "the transfer's result",
        "return document.getElementById('transfer-result').textContent.endsWith('connecté')",
    );
    browser.wait_for(
        "the browser's call to end once marie has the caller",
        "return document.getElementById('phone-call').hidden",
    );
    browser.screenshot(&artefact("webrtc-transferred.png"));

    assert_sipp_ok(&caller.join().unwrap());
    assert_sipp_ok(&finish(marie));
    assert_heard(
        marie_hears.join().unwrap(),
        25,
        1000.0,
        "marie (the caller's 1 kHz)",
        &server,
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("transferred"));
    let transferred_to: Option<String> = rusqlite::Connection::open(setup.db())
        .unwrap()
        .query_row(
            "SELECT transferred_to FROM calls WHERE id = ?1",
            [calls[0].id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        (handled_by(&setup, calls[0].id), transferred_to),
        (Some("alice".into()), Some("marie".into())),
        "alice took it in the browser and put it through to marie"
    );
    let timeline = setup.events(calls[0].id);
    for kind in [
        "secretary-answered",
        "console-transfer",
        "executive-answered",
    ] {
        assert!(
            timeline.iter().any(|e| e == kind),
            "{kind} missing from {timeline:?}"
        );
    }
}

/// A stall of the server longer than ICE's 5 s "disconnected" (a loaded machine; here
/// SIGSTOP for 6 s) does not take the browser phone off the desk: the browser's checks
/// wait in the socket and are read first. The page sends no audio meanwhile (its track
/// taken off the sender), so only ICE's consent checks come, every 4 to 6 s, as from an
/// idle phone that sends nothing. A call after it rings the page and has audio.
#[test]
fn a_six_second_stall_of_the_server_keeps_the_browser_phone_on() {
    if !inside_private_namespace("a_six_second_stall_of_the_server_keeps_the_browser_phone_on") {
        return;
    }
    let (setup, web, server, browser) = phone_ready("");
    let (status, cookie, _) = common::web::login(web, "alice", "alice");
    assert_eq!(status, 200);
    let cookie = cookie.unwrap().split(';').next().unwrap().to_string();

    browser.eval("return phone.pc.getSenders()[0].replaceTrack(null).then(() => true)");
    let pid = server.pid().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    std::thread::sleep(Duration::from_secs(6));
    signal("-CONT");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        phones_on_board(web, &cookie),
        Some(1),
        "the browser phone left the desk after the stall\n{}",
        server.log()
    );
    assert!(
        !server.log().contains("browser phone went silent"),
        "{}",
        server.log()
    );
    browser.eval(
        "return phone.pc.getSenders()[0].replaceTrack(phone.mic.getAudioTracks()[0]).then(() => true)",
    );

    let (caller, caller_rtp) = call_acme_with_tone(&setup, "caller", 1000.0, 20.0, "0");
    wait_ringing(&browser);
    let heard_by_caller = std::thread::spawn(move || hear(&caller_rtp, Duration::from_secs(30)));
    browser.click("#phone-answer");
    assert_page_hears_1_khz(&browser, &server, "after the stall");
    std::thread::sleep(Duration::from_secs(2));
    browser.click("#phone-hangup");
    assert_sipp_ok(&caller.join().unwrap());
    assert_heard(
        heard_by_caller.join().unwrap(),
        50,
        600.0,
        "the caller (the browser's microphone)",
        &server,
    );
}
