//! The `permanence` command's small promises (issue 10): errors said once and clearly,
//! every plan error in one `check`, keys checked, passwords kept off the command line,
//! executives' phones listed.

mod common;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn permanence(args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `hash-password` with `input` on standard input.
fn hash_password(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_missing_config_file_is_reported_once_with_its_path() {
    let out = permanence(&["check", "--config", "/nonexistent/permanence.toml"]);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
    assert!(text.contains("/nonexistent/permanence.toml"), "{text}");
}

#[test]
fn a_missing_plan_file_is_reported_without_a_bogus_position() {
    let out = permanence(&["check", "/nonexistent.toml"]);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("/nonexistent.toml: cannot read: No such file or directory"),
        "{text}"
    );
    assert!(!text.contains(":0:0"), "{text}");
}

#[test]
fn simulate_refuses_a_key_that_no_keypad_has() {
    let out = permanence(&["simulate", "--company", "acme", "--digits", "x9"]);
    assert!(!out.status.success(), "accepted: {}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("`x` is not a key"), "{text}");
    assert!(text.contains("0-9, *, # or A-D"), "{text}");
    // Every key of the keypad is still accepted (RFC 4733 events 0-15).
    let out = permanence(&[
        "simulate",
        "--company",
        "acme",
        "--at",
        "2026-12-25 10:30",
        "--digits",
        "0123456789*#ABCD",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn check_lists_a_plan_error_and_a_number_claimed_twice_in_one_run() {
    let hangup = r#"[{ hangup = {} }]"#;
    let setup = Setup::new(&[
        ("a.toml", &plan("acme", "+33180000001", hangup)),
        // Checked errors (a missing sound) and a number that acme has.
        (
            "b.toml",
            &plan(
                "bravo",
                "+33180000001",
                r#"[{ play = "tone/missing.wav" }, { hangup = {} }]"#,
            ),
        ),
        // An error the TOML reader refuses (an unknown step), and acme's number again.
        (
            "c.toml",
            &plan("charlie", "+33180000001", r#"[{ dance = 3 }]"#),
        ),
    ]);
    let config = setup.config();
    let out = permanence(&["check", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("sound `tone/missing.wav` not found"),
        "{text}"
    );
    assert!(text.contains("dance"), "{text}");
    assert!(
        text.contains("is claimed by company `acme`") && text.contains("and by company `bravo`"),
        "{text}"
    );
    assert!(text.contains("and by company `charlie`"), "{text}");
}

#[test]
fn hash_password_reads_the_password_from_standard_input() {
    // The demo secretary alice / alice, as in config/permanence.toml.
    let out = hash_password(&["--username", "alice"], "alice\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ha1_md5 = \"f5311f8276f6090e9cd6e52b1b126248\""),
        "{text}"
    );
    assert!(
        text.contains(
            "ha1_sha256 = \"f52248892499f9174e7650ae325757a37f17f88b54a3c1d30b5cec46667d69e0\""
        ),
        "{text}"
    );
    // No prompt when standard input is not a terminal.
    assert!(!stderr(&out).contains("Password"), "{}", stderr(&out));

    let out = hash_password(&["--username", "bob"], "secret\r\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let md5 = permanence::auth::Algorithm::Md5.hash("bob:permanence:secret");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("ha1_md5 = \"{md5}\"")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = hash_password(&["--username", "bob"], "");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no password"), "{}", stderr(&out));
}

#[test]
fn hash_password_refuses_a_password_on_the_command_line() {
    let out = hash_password(&["--username", "bob", "--password", "secret"], "");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--password"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

#[test]
fn secretaries_lists_executives_phones_marked_as_executives() {
    let setup = Setup::new(&[(
        "acme.toml",
        &plan("acme", "+33180000001", r#"[{ hangup = {} }]"#),
    )]);
    let marie = permanence::auth::ha1(
        permanence::auth::Algorithm::Md5,
        "marie",
        "permanence",
        "marie",
    );
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(
        setup.config(),
        format!(
            "{config}\n[registrar]\nkeepalive_seconds = 0\n\
             [[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\n\
             ha1_md5 = \"f5311f8276f6090e9cd6e52b1b126248\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n\
             [[executives]]\nname = \"Marie\"\nusername = \"marie\"\nha1_md5 = \"{marie}\"\nha1_sha256 = \"\"\n\
             [[executives]]\nname = \"Paul\"\nusername = \"paul\"\nha1_md5 = \"{marie}\"\nha1_sha256 = \"\"\n"
        ),
    )
    .unwrap();
    let _server = setup.start();
    let port = free_port();
    register_from(setup.addr(), port, "marie", "marie");

    let list = |json: bool| {
        let mut command = Command::new(BIN);
        command
            .args(["secretaries", "--config"])
            .arg(setup.config());
        if json {
            command.arg("--json");
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Registrations reach the store asynchronously.
    let deadline = Instant::now() + Duration::from_secs(15);
    let lines: Vec<serde_json::Value> = loop {
        let lines: Vec<serde_json::Value> = list(true)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines
            .iter()
            .any(|l| l["username"] == "marie" && l["state"] == "registered")
            || Instant::now() > deadline
        {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let names: Vec<_> = lines.iter().map(|l| l["username"].clone()).collect();
    assert_eq!(names, ["alice", "marie", "paul"], "{lines:?}");
    assert_eq!(lines[0]["role"], "secretary", "{lines:?}");
    assert_eq!(lines[0]["state"], "not registered", "{lines:?}");
    let marie = &lines[1];
    assert_eq!(marie["role"], "executive", "{marie}");
    assert_eq!(marie["state"], "registered", "{marie}");
    let contact = format!("sip:marie@127.0.0.1:{port}");
    assert_eq!(marie["registrations"][0]["contact"], contact, "{marie}");
    assert_eq!(lines[2]["role"], "executive", "{lines:?}");
    assert_eq!(lines[2]["state"], "not registered", "{lines:?}");

    let table = list(false);
    assert!(table.lines().next().unwrap().contains("ROLE"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("marie "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("executive") && row.contains("registered") && row.contains(&contact),
        "{row}"
    );
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A secretary (alice) takes a call and talks about 3 s before hanging up: `calls --json`
/// says who took it, when she answered and when it ended; the table's TALK column shows
/// the difference.
#[test]
fn calls_shows_who_took_a_call_and_how_long_they_talked() {
    let setup = Setup::new(&[(
        "acme.toml",
        &plan(
            "acme",
            "+33180000001",
            r#"[{ secretary = { timeout = 20 } }, { hangup = {} }]"#,
        ),
    )]);
    setup.add_config_lines(
        "registrar",
        "keepalive_seconds = 0\n\n[[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\n\
         ha1_md5 = \"f5311f8276f6090e9cd6e52b1b126248\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]",
    );
    let _server = setup.start();
    let port = free_port();
    register_from(setup.addr(), port, "alice", "alice");
    let voice = setup.dir.path().join("voice.pcap");
    write_tone_pcap(&voice, 600.0, 0.5);
    // secretary.xml answers, talks, and hangs up 3 s after the ACK.
    let (alice, _alice_rtp) = talking_secretary(port, "alice", &voice);
    let (_caller_rtp, caller_rtp_port) = rtp_socket();
    let caller = sipp_call(
        "talk.xml",
        setup.addr(),
        "+33180000001",
        &caller_rtp_port,
        "0",
        &["-key", "audio_pcap", voice.to_str().unwrap()],
    );
    assert_sipp_ok(&caller);
    assert_sipp_ok(&finish(alice));
    setup.wait_calls(|c| c.len() == 1 && c[0].ended);

    let lines = json_lines(&cli_for(&setup, &["calls", "--json"]));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let call = &lines[0];
    assert_eq!(call["outcome"], "secretary", "{call}");
    assert_eq!(call["handled_by"], "alice", "{call}");
    assert_eq!(call["company"], "acme", "{call}");
    let time = |field: &str| -> jiff::Timestamp {
        call[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field}: {call}"))
            .parse()
            .unwrap_or_else(|e| panic!("{field}: {e}: {call}"))
    };
    let talk = time("ended_at") - time("handled_at");
    let talk_ms = talk.as_millis() as f64;
    assert!(
        (2800.0..5000.0).contains(&talk_ms),
        "about 3 s of talk, not {talk_ms} ms: {call}"
    );
    // The caller is answered when alice answers: the same moment, to a few milliseconds
    // (her 200 comes first, then ours to the caller).
    assert!(
        (time("answered_at") - time("handled_at")).as_millis().abs() < 1000,
        "{call}"
    );
    assert!(time("answered_at") >= time("started_at"), "{call}");

    let table = cli_for(&setup, &["calls"]);
    let header = table.lines().next().unwrap();
    assert!(header.contains("TALK"), "{table}");
    let row = table
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no row: {table}"));
    let talk_column = format!(" {}s ", talk_ms as i64 / 1000);
    assert!(
        row.contains("alice") && row.contains(&talk_column) && row.ends_with("secretary"),
        "the row shows alice, {talk_column:?} of talk and the outcome: {row}"
    );
}

/// `messages --company` and `--since` leave out the rows they should, and only those.
#[test]
fn messages_filters_by_company_and_since_leave_out_the_other_rows() {
    let greeting = r#"[{ play = "tone/short.wav" }, { hangup = {} }]"#;
    let setup = Setup::new(&[
        ("acme.toml", &plan("acme", "+33180000001", greeting)),
        ("bravo.toml", &plan("bravo", "+33180000002", greeting)),
    ]);
    write_tone(&setup.dir.path().join("sounds/tone/short.wav"), 440.0, 0.3);
    let _server = setup.start();
    let call = |number: &str, calls: usize| {
        assert_sipp_ok(&sipp_call("call.xml", setup.addr(), number, "9", "0", &[]));
        setup.wait_calls(|c| c.len() == calls && c.iter().all(|c| c.ended));
    };
    call("+33180000001", 1);
    // The next calls start in a later second than the first.
    std::thread::sleep(Duration::from_millis(1100));
    call("+33180000002", 2);
    call("+33180000001", 3);

    // Greetings heard to the end are filed: --all lists them.
    let list = |args: &[&str]| {
        let mut all = vec!["messages", "--all", "--json"];
        all.extend_from_slice(args);
        json_lines(&cli_for(&setup, &all))
    };
    let everything = list(&[]);
    assert_eq!(everything.len(), 3, "{everything:?}");
    let companies = |rows: &[serde_json::Value]| -> Vec<String> {
        rows.iter()
            .map(|m| m["company"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(companies(&list(&["--company", "acme"])), ["acme", "acme"]);
    assert_eq!(companies(&list(&["--company", "bravo"])), ["bravo"]);
    assert!(list(&["--company", "globex"]).is_empty());

    // By date: today (UTC) keeps all, tomorrow none.
    let now = jiff::Timestamp::now();
    let today = now.strftime("%Y-%m-%d").to_string();
    let tomorrow = (now + jiff::SignedDuration::from_hours(24))
        .strftime("%Y-%m-%d")
        .to_string();
    assert_eq!(list(&["--since", &today]).len(), 3);
    assert!(list(&["--since", &tomorrow]).is_empty());

    // By time: from the second bravo's message was written in (RFC 3339, UTC), the first
    // acme call is left out, and the two later ones are kept.
    let bravo = everything.iter().find(|m| m["company"] == "bravo").unwrap();
    let created = bravo["created_at"].as_str().unwrap();
    let since = format!("{}Z", &created[..19]);
    let later = list(&["--since", &since]);
    assert_eq!(
        companies(&later),
        ["acme", "bravo"],
        "messages since {since} (bravo's was written at {created}): {later:?}"
    );
    assert_eq!(
        companies(&list(&["--company", "acme", "--since", &since])),
        ["acme"]
    );
}
