//! Spam (issue 12): a number a secretary blocks through the console, or an operator with
//! `permanence blocked`, takes the blocked route on its next call and never rings a
//! secretary; the ARCEP telemarketing ranges are labelled or refused as the plan says.
//! Real server, real SIPp calls, real HTTP, the real SQLite file.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const ACME: &str = "+33180000001";
const COLD: &str = "+33180000002";
/// The number `sipp_call` calls from.
const CALLER: &str = "+33612345678";

/// ACME's plan with a route for blocked callers first (refused, filed as spam).
fn guarded(steps: &str) -> String {
    plan("acme", ACME, steps).replace(
        "[[route]]",
        "[[route]]\nname = \"indésirables\"\nwhen = { caller = \"blocked\" }\n\
         steps = [{ reject = { code = 603 } }]\ncategory = \"spam\"\n\n[[route]]",
    )
}

/// The console's setup (alice serves acme) with these plans instead of the default one.
fn console_setup(plans: &[(&str, &str)]) -> (Setup, std::net::SocketAddr) {
    let (setup, web) = web::setup("[{ hangup = {} }]");
    for (name, text) in plans {
        std::fs::write(setup.dir.path().join("dialplans").join(name), text).unwrap();
    }
    (setup, web)
}

fn session(web: std::net::SocketAddr) -> String {
    let (status, cookie, body) = web::login(web, "alice", "alice");
    assert_eq!(status, 200, "{body}");
    cookie.unwrap().split(';').next().unwrap().to_string()
}

/// A SIPp call to `number` from `from`, answered or refused as the scenario expects.
fn call_from(scenario: &str, setup: &Setup, number: &str, from: &str) -> Output {
    let (_rtp, rtp_port) = rtp_socket();
    sipp(
        scenario,
        setup.addr(),
        &[
            "-s", number, "-key", "caller", from, "-key", "rtp_port", &rtp_port, "-key", "offer",
            "0",
        ],
    )
}

/// Runs `call` while listening on alice's phone port; the INVITEs that reached it.
fn invites_to(
    phone: &UdpSocket,
    call: impl FnOnce() -> Output + Send + 'static,
) -> (usize, Output) {
    let caller = std::thread::spawn(call);
    let mut invites = 0;
    let mut buf = [0u8; 8192];
    while !caller.is_finished() {
        if let Ok(n) = phone.recv(&mut buf) {
            invites += usize::from(buf[..n].starts_with(b"INVITE "));
        }
    }
    (invites, caller.join().unwrap())
}

/// Alice's phone: registered, its port held by the test so that an INVITE lands here
/// (and is never answered).
fn alices_phone(setup: &Setup) -> UdpSocket {
    let port = register_phone_port(setup.addr(), "alice", "alice");
    let phone = bind_udp_port_patiently(port);
    phone
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    phone
}

/// The kind and details of a call's events.
fn events_of(setup: &Setup, call: i64) -> Vec<(String, Value)> {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let mut stmt = conn
        .prepare("SELECT kind, data FROM events WHERE call_id = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([call], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })
    .unwrap()
    .map(|r| {
        let (kind, data) = r.unwrap();
        (kind, serde_json::from_str(&data).unwrap())
    })
    .collect()
}

fn ended(setup: &Setup, n: usize) -> Vec<CallRow> {
    let calls = setup.wait_calls(|c| c.len() == n && c.iter().all(|c| c.ended));
    assert_eq!(calls.len(), n, "{calls:?}");
    calls
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn a_number_blocked_in_the_console_takes_the_blocked_route_and_never_rings_a_secretary() {
    let steps = r#"[{ secretary = { timeout = 3 } }, { play = "tone/a.wav" }, { hangup = {} }]"#;
    let globex = plan("globex", COLD, "[{ hangup = {} }]");
    let (setup, web) = console_setup(&[("acme.toml", &guarded(steps)), ("globex.toml", &globex)]);
    let server = setup.start();
    let phone = alices_phone(&setup);
    let cookie = session(web);
    let auth = [web::JSON, ("Cookie", cookie.as_str())];

    // The first call rings alice.
    let addr = setup.addr();
    let (invites, out) = invites_to(&phone, move || {
        let (_rtp, rtp_port) = rtp_socket();
        sipp_call("call.xml", addr, ACME, &rtp_port, "0", &[])
    });
    assert_sipp_ok(&out);
    assert!(invites > 0, "the first call rang alice");
    assert_eq!(ended(&setup, 1)[0].route.as_deref(), Some("main"));

    // What the console refuses, naming the field; nothing is written.
    let post = |headers: &[(&str, &str)], body: &str| {
        web::http(web, "POST", "/api/blocked", headers, body)
    };
    for (body, field) in [
        (
            r#"{"company":"acme","number":"+33899*","reason":"spam"}"#,
            "number",
        ),
        (
            r#"{"company":"acme","number":"<script>","reason":"spam"}"#,
            "number",
        ),
        (
            r#"{"company":"acme","number":"0612345678","reason":""}"#,
            "reason",
        ),
        (
            r#"{"company":"acme","number":"0612345678","reason":"a\nb"}"#,
            "reason",
        ),
        (
            r#"{"company":"nope","number":"0612345678","reason":"x"}"#,
            "company",
        ),
        (r#"{"company":"acme","number":"0612345678"}"#, "."),
    ] {
        let (status, _, answer) = post(&auth, body);
        assert_eq!(status, 422, "{body}: {answer}");
        if field != "." {
            assert_eq!(json(&answer)["field"], field, "{body}: {answer}");
        }
    }
    let long = format!(
        r#"{{"company":"acme","number":"0612345678","reason":"{}"}}"#,
        "x".repeat(201)
    );
    assert_eq!(json(&post(&auth, &long).2)["field"], "reason");
    let (status, _, _) = post(
        &auth,
        r#"{"company":"globex","number":"0612345678","reason":"x"}"#,
    );
    assert_eq!(status, 403, "globex is not a company alice serves");
    let (status, _, _) = post(
        &[web::JSON],
        r#"{"company":"acme","number":"0612345678","reason":"x"}"#,
    );
    assert_eq!(status, 401, "no session");
    let (status, _, _) = post(
        &[
            web::JSON,
            ("Cookie", &cookie),
            ("Origin", "http://evil.example"),
        ],
        r#"{"company":"acme","number":"0612345678","reason":"x"}"#,
    );
    assert_eq!(status, 403, "from another site");
    let (status, _, _) = web::http(web, "GET", "/api/blocked?company=globex", &auth, "");
    assert_eq!(status, 403);
    let (status, _, _) = web::http(web, "GET", "/api/blocked?company=../x", &auth, "");
    assert_eq!(status, 422);
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM blocked_numbers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "nothing half-written");

    // Alice blocks the number (national form, read in ACME's country).
    let (status, _, answer) = post(
        &auth,
        r#"{"company":"acme","number":"06 12 34 56 78","reason":"démarchage <b>agressif</b>"}"#,
    );
    assert_eq!(status, 201, "{answer}");
    let block = json(&answer)["blocked"].clone();
    assert_eq!(block["number"], CALLER);
    assert_eq!(block["added_by"], "alice");
    let (status, _, again) = post(
        &auth,
        r#"{"company":"acme","number":"+33612345678","reason":"encore"}"#,
    );
    assert_eq!(status, 200, "already blocked: {again}");
    assert_eq!(
        json(&again)["blocked"]["reason"],
        "démarchage <b>agressif</b>"
    );

    // The next call from that number takes the blocked route, and alice's phone is quiet.
    let (invites, out) = invites_to(&phone, {
        let setup_addr = setup.addr();
        move || {
            let (_rtp, rtp_port) = rtp_socket();
            sipp(
                "declined.xml",
                setup_addr,
                &[
                    "-s", ACME, "-key", "caller", CALLER, "-key", "rtp_port", &rtp_port, "-key",
                    "offer", "0",
                ],
            )
        }
    });
    assert_sipp_ok(&out);
    assert_eq!(invites, 0, "a blocked caller rang alice\n{}", server.log());
    let calls = ended(&setup, 2);
    assert_eq!(calls[1].route.as_deref(), Some("indésirables"));
    assert_eq!(calls[1].outcome.as_deref(), Some("rejected"));
    let events = events_of(&setup, calls[1].id);
    let blocked = events
        .iter()
        .find(|(k, _)| k == "blocked")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(blocked.1["by"], "alice");
    assert_eq!(blocked.1["reason"], "démarchage <b>agressif</b>");
    assert!(!events.iter().any(|(k, _)| k == "secretary-offered"));

    // The list, then the block lifted: the row stays, with who and when.
    let (status, _, list) = web::http(web, "GET", "/api/blocked?company=acme", &auth, "");
    assert_eq!(status, 200);
    let list = json(&list);
    assert_eq!(list["blocked"].as_array().unwrap().len(), 1, "{list}");
    let id = list["blocked"][0]["id"].as_i64().unwrap();
    let path = format!("/api/blocked/{id}");
    let (status, _, _) = web::http(web, "DELETE", &path, &[], "");
    assert_eq!(status, 401);
    let (status, _, _) = web::http(
        web,
        "DELETE",
        &path,
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "cross-site")],
        "",
    );
    assert_eq!(status, 403);
    let (status, _, answer) = web::http(web, "DELETE", &path, &[("Cookie", &cookie)], "");
    assert_eq!(status, 200, "{answer}");
    let (status, _, _) = web::http(web, "DELETE", &path, &[("Cookie", &cookie)], "");
    assert_eq!(status, 404, "lifted once");
    let (status, _, _) = web::http(web, "DELETE", "/api/blocked/x1", &[("Cookie", &cookie)], "");
    assert_eq!(status, 404);
    let (_, _, list) = web::http(web, "GET", "/api/blocked", &auth, "");
    assert_eq!(json(&list)["blocked"], Value::Array(Vec::new()));
    let lifted: (String, Option<String>) = conn
        .query_row(
            "SELECT added_by, removed_by FROM blocked_numbers WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(lifted, ("alice".into(), Some("alice".into())));

    // And the caller reaches alice again.
    let addr = setup.addr();
    let (invites, out) = invites_to(&phone, move || {
        let (_rtp, rtp_port) = rtp_socket();
        sipp_call("call.xml", addr, ACME, &rtp_port, "0", &[])
    });
    assert_sipp_ok(&out);
    assert!(invites > 0, "unblocked, the caller rings alice again");
    assert_eq!(ended(&setup, 3)[2].route.as_deref(), Some("main"));
}

fn cli(setup: &Setup, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("blocked")
        .args(args)
        .arg("--config")
        .arg(setup.config())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How many times the server has put a block list changed by another process in force.
fn reloads_seen(server: &Server) -> usize {
    server
        .log()
        .matches("block list changed in the records: in force now")
        .count()
}

/// Waits (3 s at most) until the server has taken `n` changes from the records; how long.
fn wait_reloads(server: &Server, n: usize) -> Duration {
    let started = Instant::now();
    while reloads_seen(server) < n {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the running server did not notice the CLI's change within 3 s:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

#[test]
fn the_cli_blocks_and_unblocks_and_the_running_server_follows_within_seconds() {
    // No route for blocked callers in this plan: the built-in refusal.
    let setup = Setup::new(&[(
        "acme.toml",
        &plan(
            "acme",
            ACME,
            r#"[{ play = "tone/a.wav" }, { hangup = {} }]"#,
        ),
    )]);
    let server = setup.start();

    let (ok, out, err) = cli(
        &setup,
        &["add", "acme", "06 12 34 56 78", "--reason", "robot"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("acme: +33612345678 blocked"), "{out}");
    let took = wait_reloads(&server, 1);
    eprintln!("the server took the CLI's block in {took:?}");
    let out = call_from("declined.xml", &setup, ACME, CALLER);
    assert_sipp_ok(&out);
    let calls = ended(&setup, 1);
    assert_eq!(calls[0].route.as_deref(), Some("blocked (built-in)"));
    let blocked = events_of(&setup, calls[0].id);
    assert!(
        blocked
            .iter()
            .any(|(k, d)| k == "blocked" && d["by"] == "cli"),
        "{blocked:?}"
    );

    // What the CLI refuses.
    for (args, says) in [
        (&["add", "acme", "+33899*", "--reason", "x"][..], "NUMBER"),
        (
            &["add", "acme", "0612345678", "--reason", ""][..],
            "--reason",
        ),
        (
            &["add", "nope", "0612345678", "--reason", "x"][..],
            "no company `nope`",
        ),
        (&["remove", "acme", "0699999999"][..], "is not blocked"),
    ] {
        let (ok, _, err) = cli(&setup, args);
        assert!(!ok && err.contains(says), "{args:?}: {err}");
    }

    let (ok, out, _) = cli(&setup, &["list", "--company", "acme", "--json"]);
    assert!(ok);
    let rows: Vec<Value> = out.lines().map(json).collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(
        (rows[0]["number"].as_str(), rows[0]["reason"].as_str()),
        (Some(CALLER), Some("robot"))
    );
    let (_, table, _) = cli(&setup, &["list"]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains(CALLER) && l.contains("robot")),
        "{table}"
    );

    let (ok, out, err) = cli(&setup, &["remove", "acme", CALLER]);
    assert!(ok, "{err}");
    assert!(out.contains("no longer blocked"), "{out}");
    wait_reloads(&server, 2);
    assert_sipp_ok(&call_from("call.xml", &setup, ACME, CALLER));
    assert_eq!(ended(&setup, 2)[1].route.as_deref(), Some("main"));
    let (_, all, _) = cli(&setup, &["list", "--all", "--json"]);
    let row: Value = json(all.lines().next().unwrap());
    assert_eq!(row["removed_by"], "cli", "the lifted block is kept: {all}");
}

#[test]
fn telemarketing_callers_are_labelled_or_refused_as_the_plan_says() {
    let steps = r#"[{ secretary = { timeout = 5 } }, { play = "tone/a.wav" }, { hangup = {} }]"#;
    let cold = plan(
        "cold",
        COLD,
        r#"[{ play = "tone/a.wav" }, { hangup = {} }]"#,
    )
    .replace("numbers = [", "telemarketing = \"refuse\"\nnumbers = [");
    let (setup, web) = console_setup(&[
        ("acme.toml", &plan("acme", ACME, steps)),
        ("cold.toml", &cold),
    ]);
    let _server = setup.start();
    let phone = alices_phone(&setup);
    let cookie = session(web);

    // Refused where the plan says so (the caller's national form, read in France).
    assert_sipp_ok(&call_from("declined.xml", &setup, COLD, "0162000000"));
    let calls = ended(&setup, 1);
    assert_eq!(calls[0].route.as_deref(), Some("blocked (built-in)"));
    let events = events_of(&setup, calls[0].id);
    assert!(
        events
            .iter()
            .any(|(k, d)| k == "telemarketing" && d["policy"] == "refuse"),
        "{events:?}"
    );

    // Labelled by default: the call rings alice, and her card says where it comes from.
    let addr = setup.addr();
    let caller = std::thread::spawn(move || {
        let (_rtp, rtp_port) = rtp_socket();
        sipp(
            "call.xml",
            addr,
            &[
                "-s",
                ACME,
                "-key",
                "caller",
                "+33948123456",
                "-key",
                "rtp_port",
                &rtp_port,
                "-key",
                "offer",
                "0",
            ],
        )
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let card = loop {
        let mut buf = [0u8; 8192];
        let _ = phone.recv(&mut buf);
        let (_, _, board) = web::http(web, "GET", "/api/board", &[("Cookie", &cookie)], "");
        let board = json(&board);
        if !board["card"].is_null() {
            break board["card"].clone();
        }
        assert!(Instant::now() < deadline, "no card: {board}");
    };
    assert_eq!(card["spam"]["telemarketing"], true, "{card}");
    assert_eq!(card["spam"]["blocked"], Value::Null);
    assert!(
        card["contact"]["lists"]
            .as_array()
            .unwrap()
            .contains(&Value::from("telemarketing")),
        "{card}"
    );
    assert_sipp_ok(&caller.join().unwrap());
    let calls = ended(&setup, 2);
    assert_eq!(calls[1].route.as_deref(), Some("main"));
    let events = events_of(&setup, calls[1].id);
    assert!(
        events
            .iter()
            .any(|(k, d)| k == "telemarketing" && d["policy"] == "label"),
        "{events:?}"
    );
    assert!(events.iter().any(|(k, _)| k == "secretary-offered"));
}
