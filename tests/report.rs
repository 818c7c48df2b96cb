//! The billing report against a scripted day of real calls (SIPp): one taken by a
//! secretary (her SIPp phone answers and talks 3 s), one voicemail, one greeting heard to
//! the end; a call just before the month's first local midnight and one just after (the
//! company's time zone decides), and a task done. `permanence report` (text and CSV) and
//! the console's `/api/report` give the same figures, and they match the rows.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::web::{JSON, http, login};
use common::*;

const PLAN: &str = "[company]\nid = \"acme\"\nname = \"ACME, \\\"Plomberie\\\"\"\n\
    numbers = [\"+33180000001\", \"+33180000002\", \"+33180000003\"]\ntimezone = \"Europe/Paris\"\n\n\
    [[route]]\nname = \"voicemail\"\nwhen = { dialled = \"+33180000002\" }\n\
    steps = [{ voicemail = { prompt = \"tone/short.wav\", max_seconds = 30 } }]\ncategory = \"low\"\n\n\
    [[route]]\nname = \"greeting\"\nwhen = { dialled = \"+33180000003\" }\n\
    steps = [{ play = \"tone/short.wav\" }, { hangup = {} }]\n\n\
    [[route]]\nname = \"main\"\nsteps = [{ secretary = { timeout = 20 } }, { hangup = {} }]\n";

fn setup() -> (Setup, SocketAddr) {
    let setup = Setup::new(&[("acme.toml", PLAN)]);
    write_tone(&setup.dir.path().join("sounds/tone/short.wav"), 600.0, 0.5);
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    setup.add_config_lines(
        "registrar",
        &format!(
            "keepalive_seconds = 0\n\n[web]\nlisten = \"{web}\"\n\n[[secretaries]]\nname = \"Alice\"\n\
             username = \"alice\"\nha1_md5 = \"f5311f8276f6090e9cd6e52b1b126248\"\nha1_sha256 = \"\"\n\
             companies = [\"acme\"]"
        ),
    );
    (setup, web)
}

fn report(setup: &Setup, month: &str, csv: bool) -> String {
    let mut args = vec!["report", "--company", "acme", "--month", month];
    if csv {
        args.push("--csv");
    }
    cli_for(setup, &args)
}

#[test]
fn the_monthly_report_matches_a_scripted_day_of_calls() {
    let (setup, web) = setup();
    let server = setup.start();
    let addr = setup.addr();

    // 1. A caller talks to alice, who hangs up after 3 s.
    let port = register_phone_port(addr, "alice", "alice");
    let voice = setup.dir.path().join("voice.pcap");
    write_tone_pcap(&voice, 600.0, 0.5);
    // secretary.xml answers, talks, and hangs up 3 s after the ACK.
    let (alice, _alice_rtp) = talking_secretary(port, "alice", &voice);
    let (_rtp, rtp_port) = rtp_socket();
    let caller = sipp_call(
        "talk.xml",
        addr,
        "+33180000001",
        &rtp_port,
        "0",
        &["-key", "audio_pcap", voice.to_str().unwrap()],
    );
    assert_sipp_ok(&caller);
    assert_sipp_ok(&finish(alice));

    // 2. A voicemail (5 s of tone, then #).
    let tone = setup.dir.path().join("tone.pcap");
    write_tone_pcap(&tone, 1000.0, 5.0);
    let pound = dtmf_pcap("#");
    let out = sipp_call(
        "voicemail.xml",
        addr,
        "+33180000002",
        "9",
        "0 101",
        &[
            "-key",
            "audio_pcap",
            tone.to_str().unwrap(),
            "-key",
            "end_pcap",
            &pound,
        ],
    );
    assert_sipp_ok(&out);

    // 3. The greeting, heard to the end.
    let (_rtp3, rtp_port3) = rtp_socket();
    assert_sipp_ok(&sipp_call(
        "call.xml",
        addr,
        "+33180000003",
        &rtp_port3,
        "0",
        &[],
    ));
    let calls = setup.wait_calls(|c| c.len() == 3 && c.iter().all(|c| c.ended));
    let outcomes: Vec<&str> = calls.iter().filter_map(|c| c.outcome.as_deref()).collect();
    assert!(
        outcomes.contains(&"secretary")
            && outcomes.contains(&"voicemail")
            && outcomes.contains(&"completed"),
        "{outcomes:?}\n{}",
        server.log()
    );

    // The month in Paris, and two calls around its first midnight: the one a minute
    // before belongs to the previous month.
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let today = tz.to_datetime(jiff::Timestamp::now()).date();
    let first = today.first_of_month();
    let midnight = tz
        .to_timestamp(first.to_datetime(jiff::civil::Time::midnight()))
        .unwrap();
    let month = format!("{:04}-{:02}", first.year(), first.month());
    let at = |t: jiff::Timestamp| format!("{t:.3}");
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    conn.execute(
        "INSERT INTO calls (id, company, dialled, caller, started_at, ended_at, outcome, sip_call_id)
         VALUES (9001, 'acme', '+33180000001', '+33655555555', ?1, ?1, 'abandoned', 'before'),
                (9002, 'acme', '+33180000001', '+33655555555', ?2, ?2, 'abandoned', 'after')",
        [
            at(midnight - jiff::SignedDuration::from_mins(1)),
            at(midnight),
        ],
    )
    .unwrap();
    // Appointments as the agenda stores them (whole seconds, UTC): one half an hour before
    // midnight (last month), one at midnight sharp (this month), one cancelled (not counted).
    let stamp = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    for (uid, starts, status) in [
        (
            "before",
            midnight - jiff::SignedDuration::from_mins(30),
            "confirmed",
        ),
        ("at", midnight, "proposed"),
        (
            "off",
            midnight + jiff::SignedDuration::from_hours(1),
            "cancelled",
        ),
    ] {
        conn.execute(
            "INSERT INTO appointments (uid, company, executive, starts_at, ends_at, status,
             client_name, booked_by, booked_at, updated_at)
             VALUES (?1, 'acme', 'marie', ?2, ?3, ?4, 'Client', 'alice', ?2, ?2)",
            [
                uid,
                &stamp(starts),
                &stamp(starts + jiff::SignedDuration::from_mins(30)),
                status,
            ],
        )
        .unwrap();
    }

    // A task done through the console, and one still open.
    let (status, cookie, body) = login(web, "alice", "alice");
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.unwrap();
    for (kind, customer) in [("other", "Done"), ("other", "Still open")] {
        let form = format!(r#"{{"company":"acme","kind":"{kind}","customer":"{customer}"}}"#);
        let (status, _, body) = http(
            web,
            "POST",
            "/api/tasks",
            &[("Cookie", &cookie), JSON],
            &form,
        );
        assert_eq!(status, 201, "{body}");
        if customer == "Done" {
            let id =
                serde_json::from_str::<serde_json::Value>(&body).unwrap()["task"]["id"].clone();
            let (status, _, body) = http(
                web,
                "POST",
                &format!("/api/tasks/{id}"),
                &[("Cookie", &cookie), JSON],
                r#"{"status":"done"}"#,
            );
            assert_eq!(status, 200, "{body}");
        }
    }

    // What the rows say alice spent on the call: from her answer to its end.
    let seconds: f64 = conn
        .query_row(
            "SELECT (julianday(ended_at) - julianday(handled_at)) * 86400 FROM calls WHERE handled_by = 'alice'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!((2.5..10.0).contains(&seconds), "she talked {seconds} s");
    let minutes = (seconds.round() as u64).div_ceil(60);
    assert_eq!(minutes, 1);

    let csv = report(&setup, &month, true);
    let expected = format!(
        "company,month,item,value\n\
         acme,{month},calls,4\n\
         acme,{month},answered,1\n\
         acme,{month},outcome:abandoned,1\n\
         acme,{month},outcome:completed,1\n\
         acme,{month},outcome:secretary,1\n\
         acme,{month},outcome:voicemail,1\n\
         acme,{month},category:low,1\n\
         acme,{month},category:normal,2\n\
         acme,{month},secretary_minutes,{minutes}\n\
         acme,{month},messages,1\n\
         acme,{month},appointments,1\n\
         acme,{month},tasks_done,1\n\
         acme,{month},outbound_calls,0\n"
    );
    assert_eq!(csv, expected);

    let text = report(&setup, &month, false);
    assert!(
        text.starts_with(&format!("ACME, \"Plomberie\" (acme) — {month}\n")),
        "{text}"
    );
    assert!(
        text.contains("calls                          4\n"),
        "{text}"
    );
    assert!(
        text.contains("tasks_done                     1\n"),
        "{text}"
    );

    // The console gives the same, as JSON and as the same CSV file.
    let path = format!("/api/report?company=acme&month={month}");
    let (status, _, body) = http(web, "GET", &path, &[("Cookie", &cookie)], "");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["calls"], 4);
    assert_eq!(json["answered"], 1);
    assert_eq!(json["by_outcome"]["voicemail"], 1);
    assert_eq!(json["secretary_minutes"], minutes);
    assert_eq!(json["messages"], 1);
    assert_eq!(json["tasks_done"], 1);
    assert_eq!(json["appointments"], 1);
    let (status, headers, body) = http(
        web,
        "GET",
        &format!("{path}&format=csv"),
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(body, expected);
    assert!(
        web::header(&headers, "content-disposition")
            .is_some_and(|d| d.contains(&format!("acme-{month}.csv"))),
        "{headers:?}"
    );

    // The previous month has only the call a minute before midnight.
    let previous = first.yesterday().unwrap();
    let previous = format!("{:04}-{:02}", previous.year(), previous.month());
    let csv = report(&setup, &previous, true);
    assert!(csv.contains(&format!("acme,{previous},calls,1\n")), "{csv}");
    assert!(
        csv.contains(&format!("acme,{previous},outcome:abandoned,1\n")),
        "{csv}"
    );
    assert!(
        csv.contains(&format!("acme,{previous},appointments,1\n")),
        "{csv}"
    );

    // Refusals: a bad month, a company she does not serve, no session.
    let (status, _, body) = http(
        web,
        "GET",
        "/api/report?company=acme&month=2026-13",
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(status, 422, "{body}");
    let (status, _, _) = http(web, "GET", &path, &[], "");
    assert_eq!(status, 401);
    let out = Command::new(BIN)
        .args(["report", "--company", "acme", "--month", "november"])
        .arg("--config")
        .arg(setup.config())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM"));
}
