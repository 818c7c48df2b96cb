//! Callers waiting in line for a secretary (issue 17), with real peers: SIPp secretaries
//! who take call after call, SIPp callers arriving faster than they are served. What is
//! asserted is what the records (and the caller's ear) say.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A company whose plan runs `steps`, served by these secretaries (password = username),
/// each with `wrap_up` seconds of wrap-up.
fn setup(steps: &str, secretaries: &[&str], wrap_up: u32) -> Setup {
    let setup = Setup::new(&[("acme.toml", &plan("acme", "+33180000001", steps))]);
    let mut config = std::fs::read_to_string(setup.config()).unwrap();
    config.push_str(&format!(
        "\n[registrar]\nkeepalive_seconds = 0\n[distribution]\nwrap_up_seconds = {wrap_up}\n"
    ));
    for user in secretaries {
        let ha1 = permanence::auth::ha1(permanence::auth::Algorithm::Md5, user, "permanence", user);
        config.push_str(&format!(
            "[[secretaries]]\nname = \"{user}\"\nusername = \"{user}\"\nha1_md5 = \"{ha1}\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n"
        ));
    }
    std::fs::write(setup.config(), config).unwrap();
    setup
}

/// A registered SIPp secretary who answers every call and hangs up after `talk_ms`.
fn secretary(setup: &Setup, user: &str, talk_ms: u32) -> Child {
    let port = register_phone_port(setup.addr(), user, user);
    let talk = talk_ms.to_string();
    let (_rtp, rtp_port) = rtp_socket();
    let mut child = Command::new("sipp")
        .arg("-sf")
        .arg(repo().join("tests/scenarios/queue_secretary.xml"))
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-mp",
            &free_media_ports_on(std::net::Ipv4Addr::LOCALHOST.into()).to_string(),
            "-d",
            &talk,
        ])
        .args(["-key", "username", user, "-key", "rtp_port", &rtp_port])
        .args(["-key", "offer", "0", "-nostdin"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp is installed (Debian package sip-tester)");
    wait_sipp_phone_ready(&mut child, port);
    child
}

/// `count` SIPp callers, one every `every_ms`, each waiting for our BYE (`call.xml`).
fn callers(setup: &Setup, count: u32, every_ms: u32) -> Child {
    let (_rtp, rtp_port) = rtp_socket();
    Command::new("sipp")
        .arg("-sf")
        .arg(repo().join("tests/scenarios/call.xml"))
        .args(["-m", &count.to_string(), "-l", &count.to_string()])
        .args(["-r", "1", "-rp", &every_ms.to_string()])
        .args(["-i", "127.0.0.1", "-p", &free_port().to_string()])
        .args([
            "-mp",
            &free_media_ports_on(std::net::Ipv4Addr::LOCALHOST.into()).to_string(),
            "-s",
            "+33180000001",
        ])
        .args([
            "-key",
            "caller",
            "+33612345678",
            "-key",
            "rtp_port",
            &rtp_port,
        ])
        .args([
            "-key",
            "offer",
            "0",
            "-timeout",
            "150s",
            "-timeout_error",
            "-nostdin",
        ])
        .arg(setup.addr().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp is installed (Debian package sip-tester)")
}

/// One timeline entry: call, kind, details, when.
struct Entry {
    call: i64,
    kind: String,
    data: String,
    at: jiff::Timestamp,
}

fn timeline(setup: &Setup) -> Vec<Entry> {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let mut stmt = conn
        .prepare("SELECT call_id, kind, data, at FROM events ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        let at: String = r.get(3)?;
        Ok(Entry {
            call: r.get(0)?,
            kind: r.get(1)?,
            data: r.get(2)?,
            at: at.parse().unwrap(),
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn to(entry: &Entry) -> String {
    let data: serde_json::Value = serde_json::from_str(&entry.data).unwrap();
    data["to"].as_str().unwrap_or_default().to_string()
}

fn wait_ms(entry: &Entry) -> u64 {
    let data: serde_json::Value = serde_json::from_str(&entry.data).unwrap();
    data["wait_ms"].as_u64().unwrap()
}

/// The busy morning of the issue: three secretaries (each call about 6 s, then 2 s of
/// wrap-up), twelve callers arriving every 2.5 s at a plan with a 20 s longest-idle step
/// then voicemail. Every caller reaches a secretary, the longest-waiting first, and no
/// secretary is rung during her wrap-up.
#[test]
fn a_busy_morning_every_caller_reaches_a_secretary_in_arrival_order() {
    let setup = setup(
        r#"[{ secretary = { timeout = 20, strategy = "longest-idle" } }, { voicemail = {} }]"#,
        &["alice", "bob", "carol"],
        2,
    );
    let server = setup.start();
    let team: Vec<Child> = ["alice", "bob", "carol"]
        .iter()
        .map(|user| secretary(&setup, user, 6_000))
        .collect();
    let out = callers(&setup, 12, 2_500).wait_with_output().unwrap();
    for mut phone in team {
        let _ = phone.kill();
        let _ = phone.wait();
    }
    assert_sipp_ok(&out);
    let calls = setup.wait_calls(|c| c.len() == 12 && c.iter().all(|c| c.outcome.is_some()));
    assert_eq!(calls.len(), 12, "{}", server.log());
    let events = timeline(&setup);
    let of = |call: i64, kind: &str| -> Vec<&Entry> {
        events
            .iter()
            .filter(|e| e.call == call && e.kind == kind)
            .collect()
    };

    // Every caller was answered by a secretary; nobody fell to voicemail.
    for call in &calls {
        assert_eq!(
            of(call.id, "secretary-answered").len(),
            1,
            "call {} did not reach a secretary: {:?}",
            call.id,
            setup.events(call.id)
        );
        assert!(of(call.id, "voicemail").is_empty());
    }
    let queued: Vec<i64> = calls
        .iter()
        .map(|c| c.id)
        .filter(|&id| !of(id, "queued").is_empty())
        .collect();
    assert!(
        queued.len() >= 3,
        "the morning is busy enough that callers wait: only {queued:?} queued"
    );
    for &id in &queued {
        let dequeued = of(id, "dequeued");
        assert_eq!(dequeued.len(), 1, "call {id}");
        assert!(
            dequeued[0].data.contains("\"answered\""),
            "{}",
            dequeued[0].data
        );
        assert!(wait_ms(dequeued[0]) < 20_000);
    }

    // The longest-waiting caller is served first: callers are offered in arrival order.
    let offered: Vec<(i64, jiff::Timestamp)> = calls
        .iter()
        .map(|c| (c.id, of(c.id, "secretary-offered")[0].at))
        .collect();
    for pair in offered.windows(2) {
        assert!(
            pair[0].1 <= pair[1].1,
            "call {} arrived before call {} but was offered a secretary after it: {offered:?}",
            pair[0].0,
            pair[1].0
        );
    }

    // No secretary is rung during her 2 s of wrap-up after hanging up.
    let mut hung_up: BTreeMap<String, Vec<jiff::Timestamp>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == "secretary-hung-up") {
        hung_up.entry(to(e)).or_default().push(e.at);
    }
    for e in events.iter().filter(|e| e.kind == "secretary-offered") {
        for end in hung_up.get(&to(e)).into_iter().flatten() {
            let after = e.at.duration_since(*end);
            assert!(
                after.is_negative() || after >= jiff::SignedDuration::from_millis(1_900),
                "{} was rung {after:?} after hanging up, inside her wrap-up",
                to(e)
            );
        }
    }
}

/// `permanence queue` against this test's server, its standard output.
fn queue_command(setup: &Setup, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_permanence"))
        .current_dir(setup.config().parent().unwrap())
        .arg("queue")
        .arg("--config")
        .arg(setup.config())
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Alice, alone at the desk, busy with a first caller for `talk_ms`; returns her phone
/// and the first caller (waiting for our BYE) once she has answered.
fn alice_busy(setup: &Setup, talk_ms: u32) -> (Child, Child) {
    let alice = secretary(setup, "alice", talk_ms);
    let first = callers(setup, 1, 1_000);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !timeline(setup)
        .iter()
        .any(|e| e.kind == "secretary-answered")
    {
        assert!(
            Instant::now() < deadline,
            "alice never answered the first call"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (alice, first)
}

/// A caller answered by a greeting, then queued behind a busy secretary, hears the hold
/// music (not ringback), hangs up after a while: `abandoned`, the wait recorded, and the
/// secretary is not rung for them when she frees up.
#[test]
fn a_caller_hanging_up_while_queued_is_abandoned_with_the_wait_and_never_rung() {
    let setup = setup(
        r#"[{ play = "tone/a.wav" }, { secretary = { timeout = 30 } }, { hangup = {} }]"#,
        &["alice"],
        1,
    );
    let server = setup.start();
    let (mut alice, first) = alice_busy(&setup, 12_000);
    let (rtp, rtp_port) = rtp_socket();
    let listener = std::thread::spawn(move || hear(&rtp, Duration::from_secs(12)));
    let addr = setup.addr();
    let caller = std::thread::spawn(move || {
        let extra = ["-d", "9000"];
        sipp_call(
            "bye_after_pause.xml",
            addr,
            "+33180000001",
            &rtp_port,
            "0",
            &extra,
        )
    });

    // While they wait, the operator sees them in `permanence queue`.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !timeline(&setup).iter().any(|e| e.kind == "queued") {
        assert!(Instant::now() < deadline, "the second caller never queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1_100));
    let table = queue_command(&setup, &[]);
    assert!(table.starts_with("acme: 1 waiting, longest "), "{table}");
    assert!(
        table.contains("call 2 ") && table.contains("+33612345678"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(queue_command(&setup, &["--json"]).trim()).unwrap();
    assert_eq!(
        (json["call"].as_i64(), json["company"].as_str()),
        (Some(2), Some("acme"))
    );
    assert!(json["wait_ms"].as_u64().unwrap() >= 1_000, "{json}");

    assert_sipp_ok(&caller.join().unwrap());
    // The records are written a moment after the hang-up.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut table = queue_command(&setup, &[]);
    while table.trim() != "nobody is waiting" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        table = queue_command(&setup, &[]);
    }
    assert_eq!(
        table.trim(),
        "nobody is waiting",
        "a caller who hung up is no longer waiting"
    );
    let (_, audio) = listener.join().unwrap();
    assert_sipp_ok(&first.wait_with_output().unwrap());
    // Alice's call is over and her wrap-up too: had the second caller still been
    // queued, she would be rung now.
    std::thread::sleep(Duration::from_millis(1_500));
    let _ = alice.kill();
    let _ = alice.wait();

    let calls = setup.wait_calls(|c| c.len() == 2 && c.iter().all(|c| c.outcome.is_some()));
    let second = &calls[1];
    assert_eq!(
        second.outcome.as_deref(),
        Some("abandoned"),
        "{}",
        server.log()
    );
    let events = timeline(&setup);
    let mine: Vec<&Entry> = events.iter().filter(|e| e.call == second.id).collect();
    let dequeued = mine
        .iter()
        .find(|e| e.kind == "dequeued")
        .expect("dequeued");
    assert!(dequeued.data.contains("\"hung-up\""), "{}", dequeued.data);
    let wait = wait_ms(dequeued);
    assert!(
        (3_500..=7_500).contains(&wait),
        "9 s call less the 3.5 s greeting: waited {wait} ms"
    );
    assert!(
        !mine.iter().any(|e| e.kind == "secretary-offered"),
        "{:?}",
        setup.events(second.id)
    );

    // What the caller heard after the greeting: the hold music's notes (C, E, G…), not a
    // steady 440 Hz ringback.
    let music = &audio[(4 * 8_000).min(audio.len())..];
    assert!(
        music.len() >= 3 * 8_000,
        "only {} samples of music",
        music.len()
    );
    let notes: Vec<f64> = music
        .chunks(2_000)
        .map(tone_frequency)
        .filter(|f| *f > 150.0)
        .collect();
    let distinct = notes.iter().fold(Vec::<f64>::new(), |mut seen, f| {
        if !seen.iter().any(|s| (s - f).abs() < 30.0) {
            seen.push(*f);
        }
        seen
    });
    assert!(
        distinct.len() >= 3 && distinct.iter().any(|f| (f - 440.0).abs() > 50.0),
        "the caller heard {distinct:?} Hz, not the hold music"
    );
}

/// With the only secretary busy, a step whose wait runs out goes on to the next step
/// (here a tone), and the records say how long the caller waited.
#[test]
fn a_queued_caller_whose_wait_runs_out_goes_to_the_next_step() {
    let setup = setup(
        r#"[{ secretary = { timeout = 3 } }, { play = "tone/a.wav" }, { hangup = {} }]"#,
        &["alice"],
        1,
    );
    let _server = setup.start();
    let (mut alice, first) = alice_busy(&setup, 9_000);
    let (_rtp, rtp_port) = rtp_socket();
    let started = Instant::now();
    let out = sipp_call(
        "call.xml",
        setup.addr(),
        "+33180000001",
        &rtp_port,
        "0",
        &[],
    );
    assert_sipp_ok(&out);
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "3 s wait + 3.5 s tone"
    );
    assert_sipp_ok(&first.wait_with_output().unwrap());
    let _ = alice.kill();
    let _ = alice.wait();

    let calls = setup.wait_calls(|c| c.len() == 2 && c.iter().all(|c| c.outcome.is_some()));
    let second = calls[1].id;
    let kinds = setup.events(second);
    let position = |kind: &str| kinds.iter().position(|k| k == kind);
    let (Some(q), Some(d), Some(u), Some(p)) = (
        position("queued"),
        position("dequeued"),
        position("secretary-unanswered"),
        position("play"),
    ) else {
        panic!("{kinds:?}");
    };
    assert!(q < d && d < u && u < p, "{kinds:?}");
    let events = timeline(&setup);
    let dequeued = events
        .iter()
        .find(|e| e.call == second && e.kind == "dequeued")
        .unwrap();
    assert!(dequeued.data.contains("\"timeout\""), "{}", dequeued.data);
    assert!(
        (2_800..=4_000).contains(&wait_ms(dequeued)),
        "{}",
        dequeued.data
    );
    assert_eq!(calls[1].outcome.as_deref(), Some("completed"));
}
