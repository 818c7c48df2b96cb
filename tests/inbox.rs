//! The inbox holds what needs attention: real calls through the real server, then
//! `permanence messages` as the person who reads them would run it.

mod common;

use std::time::{Duration, Instant};

use common::*;

const SPAM: &str = "+33180000011";
const GREETING: &str = "+33180000012";
const VOICEMAIL: &str = "+33180000013";
const RINGING: &str = "+33180000014";

fn setup() -> Setup {
    let company = |id: &str, number: &str, steps: &str, category: &str| {
        format!(
            "[company]\nid = \"{id}\"\nname = \"{id}\"\nnumbers = [\"{number}\"]\n\n\
             [[route]]\nname = \"main\"\nsteps = {steps}\ncategory = \"{category}\"\n"
        )
    };
    let setup = Setup::new(&[
        (
            "spam.toml",
            &company("spam", SPAM, "[{ reject = { code = 603 } }]", "spam"),
        ),
        (
            "greeting.toml",
            &company(
                "greeting",
                GREETING,
                r#"[{ play = "tone/a.wav" }, { hangup = {} }]"#,
                "normal",
            ),
        ),
        (
            "vm.toml",
            &company(
                "vm",
                VOICEMAIL,
                r#"[{ voicemail = { prompt = "tone/short.wav", max_seconds = 60 } }]"#,
                "normal",
            ),
        ),
        (
            "ringing.toml",
            &company("ringing", RINGING, "[{ ring = 30 }]", "normal"),
        ),
    ]);
    write_tone(&setup.dir.path().join("sounds/tone/short.wav"), 600.0, 0.5);
    write_tone_pcap(&setup.dir.path().join("tone.pcap"), 1000.0, 3.0);
    setup
}

fn messages(setup: &Setup, args: &[&str]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(BIN)
        .args(["messages", "--json", "--config"])
        .arg(setup.config())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (company, status, outcome) of every message, oldest first.
fn listed(rows: &[serde_json::Value]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = rows
        .iter()
        .map(|m| {
            (
                m["company"].as_str().unwrap_or("").to_string(),
                m["status"].as_str().unwrap_or("").to_string(),
                m["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.reverse();
    v
}

#[test]
fn the_inbox_lists_what_needs_attention_and_files_the_rest() {
    let setup = setup();
    let _server = setup.start();
    let tone = setup.dir.path().join("tone.pcap").display().to_string();

    // Refused as spam; a greeting heard to its end; a caller who gives up after half a
    // second of ringing: nothing for anyone to do.
    assert!(
        !sipp_call("call.xml", setup.addr(), SPAM, "9", "0", &[])
            .status
            .success()
    );
    assert_sipp_ok(&sipp_call(
        "call.xml",
        setup.addr(),
        GREETING,
        "9",
        "0",
        &[],
    ));
    assert_sipp_ok(&sipp_call(
        "cancel.xml",
        setup.addr(),
        RINGING,
        "9",
        "0",
        &[],
    ));
    // A voicemail with a voice in it.
    assert_sipp_ok(&sipp_call(
        "voicemail_hangup.xml",
        setup.addr(),
        VOICEMAIL,
        "9",
        "0 101",
        &["-key", "audio_pcap", &tone],
    ));
    // A caller who says nothing at all (no RTP): the server ends it 5 s after the beep,
    // long before the 60 s maximum, as a missed call to return.
    let started = Instant::now();
    assert_sipp_ok(&sipp_call(
        "call.xml",
        setup.addr(),
        VOICEMAIL,
        "9",
        "0",
        &[],
    ));
    let silent_for = started.elapsed();
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(15)).contains(&silent_for),
        "prompt, beep, 5 s of nothing, goodbye: {silent_for:?}"
    );
    let calls = setup.wait_calls(|c| c.len() == 5 && c.iter().all(|c| c.ended));
    let outcomes: Vec<_> = calls
        .iter()
        .map(|c| c.outcome.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        outcomes,
        [
            "rejected",
            "completed",
            "abandoned",
            "voicemail",
            "no-message"
        ]
    );
    assert!(
        setup
            .events(calls[4].id)
            .contains(&"recording-stopped".to_string()),
        "{:?}",
        setup.events(calls[4].id)
    );

    let want = |rows: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
        rows.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect()
    };
    assert_eq!(
        listed(&messages(&setup, &[])),
        want(&[("vm", "new", "voicemail"), ("vm", "new", "no-message")]),
        "the inbox"
    );
    assert_eq!(
        listed(&messages(&setup, &["--all"])),
        want(&[
            ("spam", "filed", "rejected"),
            ("greeting", "filed", "completed"),
            ("ringing", "filed", "abandoned"),
            ("vm", "new", "voicemail"),
            ("vm", "new", "no-message"),
        ]),
        "every call keeps its message"
    );
    assert_eq!(messages(&setup, &["--status", "filed"]).len(), 3);
}
