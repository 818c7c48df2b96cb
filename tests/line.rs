//! A company's line switched by hand from the console (issue 12): "closed until" sends the
//! next calls down the plan's closed route whatever the hours say, "open until" the other
//! way; each change is recorded with who and when, ends by itself at its time or early by
//! hand, survives a restart, and `simulate` shows the one in the records.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

const ACME: &str = "+33180000001";
const NIGHT: &str = "+33180000002";
const GLOBEX: &str = "+33180000003";

/// Two routes, named for what the hours (or the line) say: `open`, else `closed`.
fn plan_with_hours(id: &str, number: &str, hours: &str) -> String {
    format!(
        "[company]\nid = \"{id}\"\nname = \"{id} company\"\nnumbers = [\"{number}\"]\ntimezone = \"Europe/Paris\"\n\
         {hours}\n\
         [[route]]\nname = \"open\"\nwhen = {{ open = true }}\nsteps = [{{ play = \"tone/short.wav\" }}, {{ hangup = {{}} }}]\n\
         [[route]]\nname = \"closed\"\nsteps = [{{ play = \"tone/short.wav\" }}, {{ hangup = {{}} }}]\n"
    )
}

/// The console on, alice serving acme (no hours: always open) and night (always closed);
/// globex (always open) is not hers.
fn line_setup() -> (Setup, SocketAddr) {
    let (setup, web) = setup("[{ hangup = {} }]");
    let dir = setup.config().parent().unwrap().to_path_buf();
    write_tone(&dir.join("sounds/tone/short.wav"), 440.0, 0.2);
    let plans = [
        ("acme.toml", plan_with_hours("acme", ACME, "")),
        (
            "night.toml",
            plan_with_hours(
                "night",
                NIGHT,
                "[hours]\nclosed = [\"2000-01-01..2999-12-31\"]\n",
            ),
        ),
        ("globex.toml", plan_with_hours("globex", GLOBEX, "")),
    ];
    for (file, text) in plans {
        std::fs::write(dir.join("dialplans").join(file), text).unwrap();
    }
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let config = config.replace(
        "companies = [\"acme\"]",
        "companies = [\"acme\", \"night\"]",
    );
    std::fs::write(setup.config(), config).unwrap();
    (setup, web)
}

/// A SIPp call to `number`, the `n`th of the test: the route it took and its call id.
fn call(setup: &Setup, number: &str, n: usize) -> (String, i64) {
    let (_rtp, rtp_port) = rtp_socket();
    assert_sipp_ok(&sipp_call(
        "call.xml",
        setup.addr(),
        number,
        &rtp_port,
        "0",
        &[],
    ));
    let calls = setup.wait_calls(|c| c.len() == n && c[n - 1].ended);
    assert_eq!(calls.len(), n, "{calls:?}");
    let last = &calls[n - 1];
    (last.route.clone().unwrap_or_default(), last.id)
}

/// The call's `line-override` entries' details.
fn line_events(setup: &Setup, call: i64) -> Vec<serde_json::Value> {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let mut stmt = conn
        .prepare("SELECT data FROM events WHERE call_id = ?1 AND kind = 'line-override'")
        .unwrap();
    stmt.query_map([call], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
        .collect()
}

/// `line_overrides` rows: (company, state, reason, set_by, ended_by).
fn override_rows(setup: &Setup) -> Vec<(String, String, String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let mut stmt = conn
        .prepare("SELECT company, state, reason, set_by, ended_by FROM line_overrides ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Paris wall-clock time `ahead` from now, as the console's time field sends it.
fn paris_in(ahead: Duration) -> String {
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let at = jiff::Timestamp::now() + jiff::SignedDuration::try_from(ahead).unwrap();
    tz.to_datetime(at).strftime("%Y-%m-%dT%H:%M").to_string()
}

fn session(web: SocketAddr) -> String {
    let (status, cookie, body) = login(web, "alice", "alice");
    assert_eq!(status, 200, "{body}");
    cookie.unwrap().split(';').next().unwrap().to_string()
}

fn request(
    web: SocketAddr,
    session: &str,
    method: &str,
    company: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let path = format!("/api/companies/{company}/line");
    let (status, _, body) = http(web, method, &path, &[JSON, ("Cookie", session)], body);
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn switch(state: &str, until: &str, reason: &str) -> String {
    serde_json::json!({ "state": state, "until": until, "reason": reason }).to_string()
}

#[test]
fn closed_until_sends_calls_to_the_closed_route_until_it_is_ended_or_runs_out() {
    let (setup, web) = line_setup();
    let _server = setup.start();
    let alice = session(web);

    let (route, first) = call(&setup, ACME, 1);
    assert_eq!(route, "open", "no hours: always open");
    assert!(line_events(&setup, first).is_empty());

    // Closed until an hour from now, Paris time (the company's zone: no offset given).
    let until = paris_in(Duration::from_secs(3600));
    let (status, line) = request(
        web,
        &alice,
        "POST",
        "acme",
        &switch("closed", &until, "dégât des eaux <b>"),
    );
    assert_eq!(status, 200, "{line}");
    assert_eq!(line["open"], false);
    assert_eq!(line["hours"]["open"], true, "the hours still say open");
    assert_eq!(line["override"]["state"], "closed");
    assert_eq!(line["override"]["until_local"], until.replace('T', " "));
    assert_eq!(line["override"]["reason"], "dégât des eaux <b>");
    assert_eq!(line["override"]["set_by"], "alice");
    let (status, shown) = request(web, &alice, "GET", "acme", "");
    assert_eq!((status, &shown), (200, &line));
    let (_, _, board) = http(web, "GET", "/api/board", &[("Cookie", &alice)], "");
    let board: serde_json::Value = serde_json::from_str(&board).unwrap();
    assert_eq!(board["lines"][0]["company"], "acme");
    assert_eq!(board["lines"][0]["override"]["state"], "closed");
    assert_eq!(board["lines"][1]["company"], "night");

    let (route, closed) = call(&setup, ACME, 2);
    assert_eq!(route, "closed");
    let events = line_events(&setup, closed);
    assert_eq!(events.len(), 1, "the timeline says why");
    assert_eq!(events[0]["state"], "closed");
    assert_eq!(events[0]["reason"], "dégât des eaux <b>");
    assert_eq!(events[0]["by"], "alice");
    assert_eq!(events[0]["until"], line["override"]["until"]);

    // Ended early: the hours decide again.
    let (status, line) = request(web, &alice, "DELETE", "acme", "");
    assert_eq!(status, 200, "{line}");
    assert!(line["override"].is_null());
    assert_eq!(line["open"], true);
    let (status, _) = request(web, &alice, "DELETE", "acme", "");
    assert_eq!(status, 404, "nothing left to end");
    let (route, _) = call(&setup, ACME, 3);
    assert_eq!(route, "open");

    // Closed for a few seconds, with an explicit offset: it ends by itself.
    let end = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
    let (status, line) = request(
        web,
        &alice,
        "POST",
        "acme",
        &switch("closed", &format!("{end:.0}"), "réunion"),
    );
    assert_eq!(status, 200, "{line}");
    let (route, _) = call(&setup, ACME, 4);
    assert_eq!(route, "closed", "before its end");
    let wait = jiff::Timestamp::now().duration_until(end);
    if wait.is_positive() {
        std::thread::sleep(Duration::try_from(wait).unwrap() + Duration::from_millis(300));
    }
    let (route, after) = call(&setup, ACME, 5);
    assert_eq!(route, "open", "after its end, without anyone acting");
    assert!(line_events(&setup, after).is_empty());
    let (_, line) = request(web, &alice, "GET", "acme", "");
    assert!(line["override"].is_null(), "{line}");

    // Every change is in the records, with who and when.
    assert_eq!(
        override_rows(&setup),
        vec![
            (
                "acme".to_string(),
                "closed".to_string(),
                "dégât des eaux <b>".to_string(),
                "alice".to_string(),
                Some("alice".to_string())
            ),
            (
                "acme".to_string(),
                "closed".to_string(),
                "réunion".to_string(),
                "alice".to_string(),
                None
            ),
        ]
    );
}

#[test]
fn open_until_survives_a_restart_and_only_her_companies_lines_are_hers() {
    let (setup, web) = line_setup();
    let mut server = setup.start();
    let alice = session(web);

    // Bad requests name the field, and change nothing.
    let soon = paris_in(Duration::from_secs(3600));
    let past = paris_in(Duration::ZERO).replace("T", " ");
    let far = paris_in(Duration::from_secs(15 * 24 * 3600));
    for (body, field) in [
        (switch("ajar", &soon, "x"), "state"),
        (switch("open", "tomorrow", "x"), "until"),
        (switch("open", "2026-02-30T10:00", "x"), "until"),
        (switch("open", &past, "x"), "until"),
        (switch("open", &far, "x"), "until"),
        (switch("open", &soon, " "), "reason"),
        (switch("open", &soon, "one\nline"), "reason"),
        (switch("open", &soon, &"x".repeat(121)), "reason"),
        (
            "{\"state\":\"open\",\"until\":1,\"reason\":\"x\"}".to_string(),
            "until",
        ),
    ] {
        let (status, answer) = request(web, &alice, "POST", "night", &body);
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
    }
    let (status, _) = request(web, &alice, "POST", "night", "{\"state\":\"open\"}");
    assert_eq!(status, 422);
    let (status, _) = request(
        web,
        &alice,
        "POST",
        "night",
        &switch("open", &soon, "x").replace('}', ",\"by\":\"bob\"}"),
    );
    assert_eq!(status, 422, "no unknown fields");

    // Not her company, not logged in, another site: refused.
    for method in ["GET", "POST", "DELETE"] {
        let (status, _) = request(web, &alice, method, "globex", &switch("closed", &soon, "x"));
        assert_eq!(status, 403, "{method} globex");
        let (status, _) = request(web, &alice, method, "nope", &switch("closed", &soon, "x"));
        assert_eq!(status, 403, "{method} an unknown company");
    }
    let (status, _) = request(web, "permanence_session=forged", "GET", "night", "");
    assert_eq!(status, 401);
    let (status, _, _) = http(
        web,
        "POST",
        "/api/companies/night/line",
        &[JSON, ("Cookie", &alice), ("Origin", "http://evil.example")],
        &switch("open", &soon, "x"),
    );
    assert_eq!(status, 403, "cross-site");
    let (status, _, _) = http(
        web,
        "DELETE",
        "/api/companies/night/line",
        &[("Cookie", &alice), ("Sec-Fetch-Site", "cross-site")],
        "",
    );
    assert_eq!(status, 403, "cross-site");
    assert!(override_rows(&setup).is_empty(), "nothing written");
    let (route, _) = call(&setup, NIGHT, 1);
    assert_eq!(route, "closed", "night is closed by its hours");

    // The team stays late: open until an hour from now.
    let (status, line) = request(
        web,
        &alice,
        "POST",
        "night",
        &switch("open", &soon, "inventaire"),
    );
    assert_eq!(status, 200, "{line}");
    assert_eq!(
        (line["open"].clone(), line["hours"]["open"].clone()),
        (true.into(), false.into())
    );
    let (route, id) = call(&setup, NIGHT, 2);
    assert_eq!(route, "open");
    assert_eq!(line_events(&setup, id)[0]["state"], "open");

    // A restart keeps it: it is loaded from the records.
    server.terminate();
    let _server = setup.start();
    let (route, _) = call(&setup, NIGHT, 3);
    assert_eq!(route, "open", "still open by hand after a restart");
    let (route, _) = call(&setup, GLOBEX, 4);
    assert_eq!(route, "open", "another company's line is untouched");

    // simulate reads the override from the records, or leaves it out when asked.
    let simulate = |extra: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(["simulate", "--config"])
            .arg(setup.config())
            .args(["--company", "night", "--from", "+33612345678"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = simulate(&[]);
    assert!(
        out.contains(&format!(
            "line open until {}, set by alice: inventaire (in force",
            soon.replace('T', " ")
        )),
        "{out}"
    );
    assert!(out.contains("route `open`: MATCHES"), "{out}");
    assert!(out.contains("(line-override {"), "{out}");
    let out = simulate(&["--hours-only"]);
    assert!(out.contains("route `closed`: MATCHES"), "{out}");
    assert!(!out.contains("line open"), "{out}");
}

/// In Chromium: her companies' lines are on the board; she closes acme's until a time with
/// a reason shaped like markup (shown as text), sees a refusal named, and ends it early.
#[test]
fn she_switches_a_line_from_the_console_in_chromium() {
    if !inside_loopback_only_namespace("she_switches_a_line_from_the_console_in_chromium") {
        return;
    }
    let (setup, web) = line_setup();
    let _server = setup.start();
    let browser = Browser::start(&setup.dir.path().join("chromium"));
    browser.log_in(web, "alice", "alice");
    let acme = "#line-list li[data-company=acme]";
    browser.wait_for(
        "her companies' lines",
        "return document.querySelectorAll('#line-list li').length === 2",
    );
    let state = format!("{acme} .line-state");
    assert!(
        browser
            .text(&state)
            .starts_with("ouverte selon les horaires"),
        "{}",
        browser.text(&state)
    );
    assert_eq!(
        browser.text("#line-list li[data-company=night] .line-state"),
        "fermée selon les horaires (closed dates 2000-01-01..2999-12-31)"
    );

    // A reason of spaces passes the page but not the server: the field is named.
    let until = paris_in(Duration::from_secs(2 * 3600));
    browser.eval(&format!(
        "document.querySelector('{acme} input[name=until]').value = '{until}'"
    ));
    browser.type_into(&format!("{acme} input[name=reason]"), "   ");
    browser.click(&format!("{acme} button[type=submit]"));
    browser.wait_for(
        "the refusal",
        &format!("return document.querySelector('{acme} .error').textContent.length > 0"),
    );
    assert!(
        browser
            .text(&format!("{acme} .error"))
            .ends_with("(reason)"),
        "{}",
        browser.text(&format!("{acme} .error"))
    );

    let reason = "<img src=x onerror=\"document.title='pwned'\">";
    browser.type_into(&format!("{acme} input[name=reason]"), reason);
    browser.click(&format!("{acme} button[type=submit]"));
    browser.wait_for(
        "closed by hand",
        &format!("return document.querySelector('{state}').textContent.startsWith('fermée jusqu')"),
    );
    assert_eq!(
        browser.text(&state),
        format!(
            "fermée jusqu'au {} (Europe/Paris) — {reason} — par alice",
            until.replace('T', " ")
        )
    );
    assert_eq!(
        browser.eval("return document.querySelectorAll('img').length"),
        serde_json::json!(0)
    );
    assert_ne!(
        browser.eval("return document.title"),
        serde_json::json!("pwned")
    );
    assert_eq!(browser.text(&format!("{acme} .error")), "");
    browser.screenshot(&repo().join("target/artefacts/console-lines.png"));
    let rows = override_rows(&setup);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].2.as_str(), rows[0].3.as_str()), (reason, "alice"));

    browser.click(&format!("{acme} .line-end"));
    browser.wait_for(
        "the hours again",
        &format!(
            "return document.querySelector('{state}').textContent.startsWith('ouverte selon')"
        ),
    );
    assert_eq!(
        override_rows(&setup)[0].4.as_deref(),
        Some("alice"),
        "ended by her"
    );
}
