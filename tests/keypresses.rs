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
