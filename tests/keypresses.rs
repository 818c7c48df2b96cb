//! Keypresses, menus and voicemail, with SIPp as the caller.

mod common;

use std::time::{Duration, Instant};

use common::*;

const NUMBER: &str = "+33180000001";

fn menu_plan(extra_steps: &str) -> String {
    format!(
        "[company]\nid = \"acme\"\nname = \"ACME\"\nnumbers = [\"{NUMBER}\"]\n\n[steplists]\n\
         sales = [{{ play = \"tone/short.wav\" }}, {{ hangup = {{}} }}]\n\
         urgent = [{{ category = \"urgent\" }}, {{ play = \"tone/short.wav\" }}, {{ hangup = {{}} }}]\n\n\
         [[route]]\nname = \"menu\"\nsteps = [{{ menu = {{ prompt = \"tone/a.wav\", timeout = 1, retries = 1, choices = {{ \"1\" = \"sales\", \"2\" = \"urgent\" }} }} }}{extra_steps}]\n"
    )
}

fn setup(plan: &str) -> Setup {
    let setup = Setup::new(&[("acme.toml", plan)]);
    write_tone(&setup.dir.path().join("sounds/tone/short.wav"), 600.0, 0.5);
    setup
}

fn wait_events(setup: &Setup, call: i64, kind: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events = setup.events(call);
        if events.iter().any(|e| e == kind) || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_key_sent_as_rfc4733_events_chooses_the_menu_branch_during_the_prompt() {
    let setup = setup(&menu_plan(""));
    let _server = setup.start();
    let pcap = dtmf_pcap("2");
    let out = sipp_call(
        "dtmf.xml",
        setup.addr(),
        NUMBER,
        "9",
        "0 101",
        &["-key", "digit_pcap", &pcap],
    );
    assert_sipp_ok(&out);
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    let events = wait_events(&setup, calls[0].id, "menu-choice");
    assert!(
        events.contains(&"digit".to_string()) && events.contains(&"menu-choice".to_string()),
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| *e == "digit").count(),
        1,
        "ten packets of one press are one digit: {events:?}"
    );
    assert_eq!(
        message_of(&setup, calls[0].id).0,
        "urgent",
        "branch 2 filed the message as urgent"
    );
    assert_eq!(calls[0].outcome.as_deref(), Some("completed"));
}

#[test]
fn a_key_sent_as_sip_info_chooses_the_menu_branch() {
    let setup = setup(&menu_plan(""));
    let _server = setup.start();
    let out = sipp_call(
        "info.xml",
        setup.addr(),
        NUMBER,
        "9",
        "0 101",
        &["-key", "key", "2"],
    );
    assert_sipp_ok(&out);
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert!(wait_events(&setup, calls[0].id, "menu-choice").contains(&"menu-choice".to_string()));
    assert_eq!(message_of(&setup, calls[0].id).0, "urgent");
}

#[test]
fn a_menu_without_an_answer_retries_then_falls_through() {
    let setup = setup(&menu_plan(
        ", { play = \"tone/short.wav\" }, { hangup = {} }",
    ));
    let _server = setup.start();
    let out = sipp_call("call.xml", setup.addr(), NUMBER, "9", "0 101", &[]);
    assert_sipp_ok(&out);
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    let events = wait_events(&setup, calls[0].id, "menu-failed");
    assert_eq!(
        events.iter().filter(|e| *e == "menu-timeout").count(),
        2,
        "first try and one retry: {events:?}"
    );
    assert!(events.contains(&"menu-failed".to_string()), "{events:?}");
    assert_eq!(message_of(&setup, calls[0].id).0, "normal");
    assert_eq!(calls[0].outcome.as_deref(), Some("completed"));
}

/// The dominant frequency of a signal, by counting zero crossings.
fn frequency(samples: &[i16]) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / 8000.0)
}

/// The call's message once its recording is saved (written off the signalling thread).
fn wait_recording(setup: &Setup, call: i64) -> (String, Option<String>, Option<i64>, bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = message_of(setup, call);
        if m.1.is_some() || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn voicemail_setup() -> Setup {
    let plan = format!(
        "[company]\nid = \"acme\"\nname = \"ACME\"\nnumbers = [\"{NUMBER}\"]\n\n[[route]]\nname = \"message\"\n\
         steps = [{{ voicemail = {{ prompt = \"tone/short.wav\", max_seconds = 30 }} }}]\ncategory = \"low\"\n"
    );
    let setup = setup(&plan);
    write_tone_pcap(&setup.dir.path().join("tone.pcap"), 1000.0, 5.0);
    setup
}

#[test]
fn a_voicemail_records_the_callers_tone_until_hash_then_says_goodbye() {
    let setup = voicemail_setup();
    let _server = setup.start();
    let tone = setup.dir.path().join("tone.pcap").display().to_string();
    let pound = dtmf_pcap("#");
    let out = sipp_call(
        "voicemail.xml",
        setup.addr(),
        NUMBER,
        "9",
        "0 101",
        &["-key", "audio_pcap", &tone, "-key", "end_pcap", &pound],
    );
    assert_sipp_ok(&out);
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].outcome.as_deref(), Some("voicemail"));
    let events = wait_events(&setup, calls[0].id, "recording-stopped");
    assert!(
        events.contains(&"recording-stopped".to_string()),
        "{events:?}"
    );
    let (category, path, ms, empty) = wait_recording(&setup, calls[0].id);
    assert_eq!(category, "low");
    assert!(!empty);
    let path = path.expect("a recording path");
    let samples: Vec<i16> = hound::WavReader::open(&path)
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect();
    let seconds = samples.len() as f64 / 8000.0;
    assert!(
        (4.8..7.0).contains(&seconds),
        "about 5 s of tone plus the lead-in: {seconds} s"
    );
    assert_eq!(ms.unwrap(), samples.len() as i64 / 8);
    // The loudest second is the tone: 1 kHz.
    let loud: Vec<i16> = samples
        .chunks(8000)
        .max_by_key(|c| c.iter().map(|s| i64::from(s.unsigned_abs())).sum::<i64>())
        .unwrap()
        .to_vec();
    let hz = frequency(&loud);
    assert!(
        (950.0..1050.0).contains(&hz),
        "the recording carries the 1 kHz tone: {hz} Hz"
    );
    // '#' ended it, and the caller heard goodbye before our BYE.
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let reason: String = conn
        .query_row(
            "SELECT data FROM events WHERE call_id = ?1 AND kind = 'recording-stopped'",
            [calls[0].id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(reason.contains("\"hash\""), "{reason}");
    let at = |kind: &str| {
        events
            .iter()
            .position(|e| e == kind)
            .unwrap_or_else(|| panic!("{kind} in {events:?}"))
    };
    assert!(
        at("recording-stopped") < at("goodbye") && at("goodbye") < at("bye-sent"),
        "{events:?}"
    );
}

#[test]
fn hanging_up_mid_message_keeps_the_recording_and_the_message() {
    let setup = voicemail_setup();
    let _server = setup.start();
    let tone = setup.dir.path().join("tone.pcap").display().to_string();
    let out = sipp_call(
        "voicemail_hangup.xml",
        setup.addr(),
        NUMBER,
        "9",
        "0 101",
        &["-key", "audio_pcap", &tone],
    );
    assert_sipp_ok(&out);
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].outcome.as_deref(), Some("voicemail"));
    let (_, path, ms, empty) = wait_recording(&setup, calls[0].id);
    assert!(!empty);
    assert!(std::path::Path::new(&path.expect("kept")).exists());
    let ms = ms.unwrap();
    assert!(
        (2000..4500).contains(&ms),
        "about 3 s recorded before the hang-up: {ms} ms"
    );
}

#[test]
fn messages_are_listed_shown_and_marked_for_the_people_who_read_them() {
    let setup = voicemail_setup();
    let server = setup.start();
    let tone = setup.dir.path().join("tone.pcap").display().to_string();
    assert_sipp_ok(&sipp_call(
        "voicemail_hangup.xml",
        setup.addr(),
        NUMBER,
        "9",
        "0 101",
        &["-key", "audio_pcap", &tone],
    ));
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    wait_recording(&setup, calls[0].id);
    drop(server);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("messages")
            .args(["--config"])
            .arg(setup.config())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let table = cli(&[]);
    assert!(
        table.lines().next().unwrap().contains("CATEGORY"),
        "{table}"
    );
    let row = table.lines().nth(1).expect("one message");
    for want in ["acme", "+33612345678", "low", "new", "voicemail", ".wav"] {
        assert!(row.contains(want), "{want} in {row}");
    }
    assert!(
        cli(&["--category", "urgent"]).lines().nth(1).is_none(),
        "filtered out"
    );
    let shown = cli(&["show", "1"]);
    assert!(
        shown.contains("recording-stopped") && shown.contains("voicemail "),
        "the timeline: {shown}"
    );
    assert_eq!(cli(&["mark", "1", "done"]).trim(), "message 1: done");
    let json = cli(&["--status", "done", "--json"]);
    let m: serde_json::Value =
        serde_json::from_str(json.lines().next().expect("one line")).unwrap();
    assert_eq!(
        (
            m["status"].as_str(),
            m["category"].as_str(),
            m["recording_empty"].as_bool()
        ),
        (Some("done"), Some("low"), Some(false))
    );
    assert!(m["recording_ms"].as_i64().unwrap() > 1000);
    let bad = std::process::Command::new(BIN)
        .args(["messages", "mark", "1", "lost", "--config"])
        .arg(setup.config())
        .output()
        .unwrap();
    assert!(!bad.status.success(), "an unknown status is refused");
}

/// Barge-in: a key pressed during the menu's 3.5 s prompt cuts it short. The caller
/// presses 2 one second after the answer; the branch's 0.5 s sound and our BYE follow at
/// once, so the call lasts well under the prompt's length (it would take at least 4 s if
/// the prompt played to its end before the key counted, 9 s if the key were lost).
#[test]
fn a_key_pressed_during_the_menu_prompt_stops_it_at_once() {
    let setup = setup(&menu_plan(""));
    let _server = setup.start();
    let pcap = dtmf_pcap("2");
    let started = Instant::now();
    let out = sipp_call(
        "dtmf.xml",
        setup.addr(),
        NUMBER,
        "9",
        "0 101",
        &["-key", "digit_pcap", &pcap],
    );
    let took = started.elapsed();
    assert_sipp_ok(&out);
    assert!(
        took < Duration::from_millis(3600),
        "the call took {took:?}: the prompt was not cut short by the key"
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert!(wait_events(&setup, calls[0].id, "menu-choice").contains(&"menu-choice".to_string()));
    assert_eq!(message_of(&setup, calls[0].id).0, "urgent");
}

/// What the caller hears, packet by packet: arrival time and zero crossings of the 160
/// samples (a 440 Hz prompt has about 17, the 600 Hz branch sound about 24, silence 0).
fn heard_tones(sock: &std::net::UdpSocket, max: Duration) -> Vec<(Instant, usize)> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let start = Instant::now();
    let mut last = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while start.elapsed() < max && (out.is_empty() || last.elapsed() < Duration::from_secs(1)) {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if n <= 12 || buf[1] & 0x7f != 0 {
            continue;
        }
        last = Instant::now();
        let samples: Vec<i16> = buf[12..n]
            .iter()
            .map(|&b| permanence::g711::ulaw_to_linear(b))
            .collect();
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        out.push((last, crossings));
    }
    out
}

/// The same with the key sent as SIP INFO (the caller sends no RTP, so every packet of
/// ours reaches its SDP address): the prompt stops after about a second of its 3.5 s and
/// the branch's sound follows at once.
#[test]
fn a_key_sent_as_info_during_the_prompt_stops_it_and_the_branch_plays_at_once() {
    let setup = setup(&menu_plan(""));
    let _server = setup.start();
    let (sink, port) = rtp_socket();
    let addr = setup.addr();
    let caller = std::thread::spawn(move || {
        sipp_call(
            "info.xml",
            addr,
            NUMBER,
            &port,
            "0 101",
            &["-key", "key", "2"],
        )
    });
    let heard = heard_tones(&sink, Duration::from_secs(10));
    assert_sipp_ok(&caller.join().unwrap());
    let prompt: Vec<_> = heard
        .iter()
        .filter(|(_, c)| (14..=20).contains(c))
        .collect();
    let branch: Vec<_> = heard
        .iter()
        .filter(|(_, c)| (22..=26).contains(c))
        .collect();
    assert!(
        (25..=110).contains(&prompt.len()),
        "{} packets of the 175-packet prompt before the key (sent after 1 s)",
        prompt.len()
    );
    assert!(
        (20..=30).contains(&branch.len()),
        "the branch's 0.5 s sound: {} packets",
        branch.len()
    );
    let gap = branch[0].0 - prompt.last().unwrap().0;
    assert!(
        gap < Duration::from_millis(300),
        "the branch starts as the prompt stops, not {gap:?} later"
    );
    assert!(
        prompt.last().unwrap().0 < branch[0].0,
        "no prompt after the branch began"
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(message_of(&setup, calls[0].id).0, "urgent");
}

/// A voicemail set to end after 2 s of quiet following speech.
fn silence_voicemail_setup() -> Setup {
    let setup = voicemail_setup();
    setup.add_config_lines("media", "voicemail_silence_seconds = 2");
    setup
}

fn recording_stopped_reason(setup: &Setup, call: i64) -> String {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    conn.query_row(
        "SELECT data FROM events WHERE call_id = ?1 AND kind = 'recording-stopped'",
        [call],
        |r| r.get(0),
    )
    .unwrap_or_else(|e| panic!("no recording-stopped event: {e}: {:?}", setup.events(call)))
}

/// The caller speaks for 2 s, then their phone sends silence: after 2 s of it the server
/// stops recording (reason `silence`), says goodbye and hangs up, long before the 30 s
/// maximum; the message keeps the voice.
#[test]
fn a_voicemail_ends_on_silence_after_the_caller_has_spoken() {
    let setup = silence_voicemail_setup();
    let _server = setup.start();
    let pcap = setup.dir.path().join("speaks-then-silent.pcap");
    write_tone_then_silence_pcap(&pcap, 1000.0, 2.0, 12.0);
    let started = Instant::now();
    let out = sipp_call(
        "voicemail_speaks_then_waits.xml",
        setup.addr(),
        NUMBER,
        "9",
        "0 101",
        &["-key", "audio_pcap", pcap.to_str().unwrap()],
    );
    let took = started.elapsed();
    assert_sipp_ok(&out);
    // 1.5 s before speaking, 2 s of voice, 2 s of quiet, the goodbye.
    assert!(
        took < Duration::from_secs(15),
        "the server hung up {took:?} after the call began: not on 2 s of silence"
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].outcome.as_deref(), Some("voicemail"));
    let reason = recording_stopped_reason(&setup, calls[0].id);
    assert!(reason.contains("\"silence\""), "{reason}");
    let (_, path, ms, empty) = wait_recording(&setup, calls[0].id);
    assert!(!empty);
    assert!(path.is_some_and(|p| std::path::Path::new(&p).exists()));
    let ms = ms.unwrap();
    assert!(
        (2000..7000).contains(&ms),
        "the voice and the quiet that ended it: {ms} ms"
    );
}

/// The caller hangs up during the beep: no word, so not a voicemail but a missed call
/// (`no-message`) whose message says the recording is empty.
#[test]
fn hanging_up_at_the_beep_leaves_no_message_and_an_empty_recording() {
    let setup = voicemail_setup();
    let _server = setup.start();
    // The prompt is 0.5 s, the beep 0.4 s: hang up 1.5 s after the ACK, just after the
    // beep, having said nothing (SIPp sends no audio here). Right at the beep was too
    // tight for a loaded machine; the recording is as empty either way.
    let out = sipp_call(
        "bye_after_pause.xml",
        setup.addr(),
        NUMBER,
        "9",
        "0 101",
        &["-d", "1500"],
    );
    assert_sipp_ok(&out);
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls[0].outcome.as_deref(), Some("no-message"));
    let reason = recording_stopped_reason(&setup, calls[0].id);
    assert!(reason.contains("\"hang-up\""), "{reason}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let (_, path, ms, empty) = loop {
        let m = message_of(&setup, calls[0].id);
        if m.2.is_some() || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(empty, "recording_empty is set");
    assert_eq!(path, None, "no file for an empty recording");
    assert_eq!(ms, Some(0));
}
