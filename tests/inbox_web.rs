//! The console's messages inbox over real HTTP, on real calls and the real SQLite file:
//! filters and search, pages, a message's page, edits and status changes kept with who
//! and when, the voicemail served with byte ranges, and each secretary kept to the
//! companies she serves.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};

use common::*;

const ACME: &str = "+33180000001";
const ACME_VOICEMAIL: &str = "+33180000003";
const OTHER: &str = "+33180000002";

/// acme (two numbers: one plays a greeting, one takes a voicemail) served by alice; other
/// served by bob.
fn setup() -> (Setup, SocketAddr) {
    let acme = format!(
        "[company]\nid = \"acme\"\nname = \"ACME Plomberie\"\nnumbers = [\"{ACME}\", \"{ACME_VOICEMAIL}\"]\n\n\
         [executives.marie]\nname = \"Marie Durand\"\nreach = [\"sip:marie@192.0.2.1\"]\n\n\
         [card]\nfields = [{{ name = \"address\", label = \"Adresse\" }}]\n\n\
         [[route]]\nname = \"vm\"\nwhen = {{ dialled = \"{ACME_VOICEMAIL}\" }}\n\
         steps = [{{ voicemail = {{ prompt = \"tone/short.wav\", max_seconds = 60 }} }}]\n\n\
         [[route]]\nname = \"main\"\nsteps = [{{ play = \"tone/short.wav\" }}, {{ hangup = {{}} }}]\n"
    );
    let other = plan(
        "other",
        OTHER,
        r#"[{ play = "tone/short.wav" }, { hangup = {} }]"#,
    );
    let setup = Setup::new(&[("acme.toml", &acme), ("other.toml", &other)]);
    write_tone(&setup.dir.path().join("sounds/tone/short.wav"), 600.0, 0.5);
    write_tone_pcap(&setup.dir.path().join("tone.pcap"), 1000.0, 2.0);
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ha1 = |user: &str| {
        permanence::auth::ha1(permanence::auth::Algorithm::Md5, user, "permanence", user)
    };
    let mut config = std::fs::read_to_string(setup.config()).unwrap();
    config.push_str(&format!(
        "\n[web]\nlisten = \"{web}\"\n[registrar]\nkeepalive_seconds = 0\n\
         [[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\nha1_md5 = \"{}\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n\
         [[secretaries]]\nname = \"Bob\"\nusername = \"bob\"\nha1_md5 = \"{}\"\nha1_sha256 = \"\"\ncompanies = [\"other\"]\n",
        ha1("alice"),
        ha1("bob")
    ));
    std::fs::write(setup.config(), config).unwrap();
    (setup, web)
}

fn session(web: SocketAddr, user: &str) -> String {
    let (status, cookie, body) = login(web, user, user);
    assert_eq!(status, 200, "{body}");
    cookie.unwrap().split(';').next().unwrap().to_string()
}

/// GET as JSON: status and body.
fn get(web: SocketAddr, cookie: &str, path: &str) -> (u16, Value) {
    let (status, _, body) = http(web, "GET", path, &[("Cookie", cookie)], "");
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, value)
}

/// POST a JSON body: status and body.
fn post(web: SocketAddr, cookie: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, answer) = http(
        web,
        "POST",
        path,
        &[JSON, ("Cookie", cookie)],
        &body.to_string(),
    );
    let value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{path}: {e}: {answer}"));
    (status, value)
}

/// The calls a list answer holds, in order.
fn calls(list: &Value) -> Vec<i64> {
    list["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages: {list}"))
        .iter()
        .map(|m| m["call"].as_i64().unwrap())
        .collect()
}

/// One HTTP/1.1 exchange whose body may be binary.
fn http_bytes(
    web: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(web).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    // Chunked answers are not expected: every recording answer says its length.
    (status, headers, body)
}

/// Four real calls: a greeting on acme's main number (filed), a voicemail on its other
/// number (new, with a recording), a greeting on other's, and one more on acme's from
/// another number. Returns their call ids in that order.
fn four_calls(setup: &Setup) -> [i64; 4] {
    let tone = setup.dir.path().join("tone.pcap").display().to_string();
    assert_sipp_ok(&sipp_call("call.xml", setup.addr(), ACME, "9", "0", &[]));
    assert_sipp_ok(&sipp_call(
        "voicemail_hangup.xml",
        setup.addr(),
        ACME_VOICEMAIL,
        "9",
        "0 101",
        &["-key", "audio_pcap", &tone],
    ));
    assert_sipp_ok(&sipp_call("call.xml", setup.addr(), OTHER, "9", "0", &[]));
    assert_sipp_ok(&sipp(
        "call.xml",
        setup.addr(),
        &[
            "-s",
            ACME,
            "-key",
            "caller",
            "+33700000042",
            "-key",
            "rtp_port",
            "9",
            "-key",
            "offer",
            "0",
        ],
    ));
    let rows = setup.wait_calls(|c| c.len() == 4 && c.iter().all(|c| c.ended));
    let ids: Vec<i64> = rows.iter().map(|c| c.id).collect();
    [ids[0], ids[1], ids[2], ids[3]]
}

fn message_form(about: &str, category: &str) -> Value {
    json!({
        "caller_name": "Jean Martin", "caller_company": "Syndic Martin",
        "callback": "+33 6 12 34 56 78", "about": about, "for_executive": "marie",
        "category": category, "fields": { "address": "3 rue des Lilas" }
    })
}

/// The list: her companies only, the inbox's statuses by default, each filter, the text
/// search over what was written and what the call said, dates read in the company's time
/// zone, pages, and bad parameters named.
#[test]
fn the_inbox_lists_her_companies_messages_with_filters_search_and_pages() {
    let (setup, web) = setup();
    let _server = setup.start();
    let [greeting, voicemail, others, stranger] = four_calls(&setup);
    let alice = session(web, "alice");
    let bob = session(web, "bob");

    let (status, list) = get(web, &alice, "/api/messages");
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        calls(&list),
        [voicemail],
        "the greetings are filed: not in the inbox"
    );
    assert_eq!(
        list["companies"],
        json!([{ "id": "acme", "name": "ACME Plomberie" }])
    );
    let m = &list["messages"][0];
    assert_eq!(
        (
            m["company_name"].as_str(),
            m["status"].as_str(),
            m["recording"].as_bool()
        ),
        (Some("ACME Plomberie"), Some("new"), Some(true))
    );
    let (_, all) = get(web, &alice, "/api/messages?status=all");
    assert_eq!(
        calls(&all),
        [stranger, voicemail, greeting],
        "never other's call"
    );
    let (_, bobs) = get(web, &bob, "/api/messages?status=all");
    assert_eq!(calls(&bobs), [others]);
    let (status, refused) = get(web, &alice, "/api/messages?company=other");
    assert_eq!(status, 403);
    assert_eq!(refused["field"], "company");

    // Writing a message on a call she took puts it in the inbox; any secretary of the
    // company may (an edit later), nobody else.
    let (status, _) = post(
        web,
        &alice,
        &format!("/api/messages/{greeting}"),
        &message_form("Fuite au 3e, 50% d'eau", "urgent"),
    );
    assert_eq!(status, 200);
    let (status, _) = post(
        web,
        &bob,
        &format!("/api/messages/{greeting}"),
        &message_form("pas à moi", "low"),
    );
    assert_eq!(status, 403, "bob does not serve acme");
    let (status, _) = post(
        web,
        &bob,
        &format!("/api/messages/{others}"),
        &json!({ "caller_name": "", "callback": "", "about": "Devis toiture", "category": "normal" }),
    );
    assert_eq!(status, 200);

    let (_, list) = get(web, &alice, "/api/messages");
    assert_eq!(
        calls(&list),
        [voicemail, greeting],
        "written: now in the inbox"
    );
    let search = |q: &str| calls(&get(web, &alice, &format!("/api/messages?status=all&q={q}")).1);
    assert_eq!(search("lilas"), [greeting], "a company field, any case");
    assert_eq!(search("Syndic"), [greeting], "the caller's company");
    assert_eq!(search("50%25"), [greeting], "a percent sign is literal");
    assert_eq!(search("%25"), [greeting]);
    assert_eq!(
        search("_"),
        Vec::<i64>::new(),
        "an underscore is literal too"
    );
    assert_eq!(search("%2B337000"), [stranger], "the caller's number");
    assert_eq!(search("12345678"), [voicemail, greeting]);
    assert_eq!(
        search("Devis"),
        Vec::<i64>::new(),
        "other's note is not hers to find"
    );
    let (_, urgent) = get(web, &alice, "/api/messages?category=urgent");
    assert_eq!(calls(&urgent), [greeting]);
    let (_, filed) = get(web, &alice, "/api/messages?status=filed&company=acme");
    assert_eq!(calls(&filed), [stranger]);

    // Pages: newest first, `next` is the `before` of the following page.
    let (_, first) = get(web, &alice, "/api/messages?status=all&limit=2");
    assert_eq!(calls(&first), [stranger, voicemail]);
    assert_eq!(first["next"], json!(voicemail));
    let (_, second) = get(
        web,
        &alice,
        &format!("/api/messages?status=all&limit=2&before={voicemail}"),
    );
    assert_eq!(calls(&second), [greeting]);
    assert_eq!(second["next"], Value::Null);

    // Days are the company's: a call at 23:30 UTC on 9 February is on the 10th in Paris.
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    conn.execute(
        "UPDATE messages SET created_at = '2020-02-09T23:30:00.000Z' WHERE call_id = ?1",
        [greeting],
    )
    .unwrap();
    let (status, day) = get(
        web,
        &alice,
        "/api/messages?status=all&from=2020-02-10&to=2020-02-10",
    );
    assert_eq!(status, 200, "{day}");
    assert_eq!(calls(&day), [greeting]);
    let (_, before) = get(web, &alice, "/api/messages?status=all&to=2020-02-09");
    assert_eq!(calls(&before), Vec::<i64>::new(), "not on the 9th in Paris");
    let (_, instant) = get(
        web,
        &alice,
        "/api/messages?status=all&from=2020-02-09T23:00:00Z&to=2020-02-10T00:00:00Z",
    );
    assert_eq!(calls(&instant), [greeting], "an exact window, in UTC");

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("status=archived", "status"),
        ("category=vip", "category"),
        ("from=27/11/2026", "from"),
        ("from=2026-11-28&to=2026-11-27", "to"),
        ("before=-3", "before"),
        ("q=a%0Ab", "q"),
        ("sort=asc", "sort"),
        ("q=a&q=b", "q"),
    ] {
        let (status, body) = get(web, &alice, &format!("/api/messages?{query}"));
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    let (status, _, _) = http(web, "GET", "/api/messages", &[], "");
    assert_eq!(status, 401);
}

/// A message's page (call, timeline, history), an edit later, mark done and back: every
/// change kept with who and when, in the same write as the change; another company's
/// message is not found.
#[test]
fn edits_and_status_changes_are_kept_with_who_and_when() {
    let (setup, web) = setup();
    let _server = setup.start();
    let [greeting, voicemail, others, _] = four_calls(&setup);
    let alice = session(web, "alice");
    let bob = session(web, "bob");
    let path = format!("/api/messages/{voicemail}");

    let (status, page) = get(web, &alice, &path);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["message"]["status"], "new");
    assert_eq!(page["call"]["route"], "vm");
    assert_eq!(page["call"]["outcome"], "voicemail");
    assert_eq!(page["company"]["executives"][0]["id"], "marie");
    assert_eq!(page["company"]["fields"][0]["name"], "address");
    let kinds: Vec<&str> = page["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"voicemail"), "{kinds:?}");
    assert_eq!(page["history"], json!([]));

    let (status, _) = post(web, &alice, &path, &message_form("Fuite", "normal"));
    assert_eq!(status, 200);
    let (status, _) = post(web, &alice, &path, &message_form("Fuite au 3e", "normal"));
    assert_eq!(status, 200);
    let (status, page) = post(
        web,
        &alice,
        &format!("{path}/status"),
        &json!({ "status": "done" }),
    );
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["message"]["status"], "done", "answered once on disk");
    let history = page["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(history[0]["by"], "alice");
    assert_eq!(
        history[0]["what"]["about"],
        json!({ "from": null, "to": "Fuite" })
    );
    assert_eq!(
        history[1]["what"],
        json!({ "about": { "from": "Fuite", "to": "Fuite au 3e" } }),
        "only what changed"
    );
    assert_eq!(
        history[2]["what"],
        json!({ "status": { "from": "new", "to": "done" } })
    );
    let last = page["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "message-status");
    assert_eq!(last["data"], json!({ "by": "alice", "status": "done" }));
    let (_, done) = get(web, &alice, "/api/messages?status=done");
    assert_eq!(calls(&done), [voicemail]);

    // The rows themselves: who, when (stored time), what, one per change.
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let rows: Vec<(String, String, String)> = conn
        .prepare("SELECT changed_by, at, what FROM message_changes WHERE call_id = ?1 ORDER BY id")
        .unwrap()
        .query_map([voicemail], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter().all(|r| r.0 == "alice" && r.1.ends_with('Z')),
        "{rows:?}"
    );
    let (status_now, updated_at): (String, String) = conn
        .query_row(
            "SELECT status, updated_at FROM messages WHERE call_id = ?1",
            [voicemail],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(status_now, "done");
    assert_eq!(
        updated_at, rows[2].1,
        "the change and its record: one write"
    );

    // Back to new; the same status again changes nothing and keeps nothing.
    for _ in 0..2 {
        let (status, _) = post(
            web,
            &alice,
            &format!("{path}/status"),
            &json!({ "status": "new" }),
        );
        assert_eq!(status, 200);
    }
    let (_, page) = get(web, &alice, &path);
    assert_eq!(page["history"].as_array().unwrap().len(), 4);

    // Refusals: bad status, unknown field, another site, another company, no such call.
    for body in [json!({ "status": "archived" }), json!({ "state": "done" })] {
        let (status, answer) = post(web, &alice, &format!("{path}/status"), &body);
        assert_eq!(status, 422, "{answer}");
    }
    let (status, _, _) = http(
        web,
        "POST",
        &format!("{path}/status"),
        &[JSON, ("Cookie", &alice), ("Origin", "http://evil.example")],
        r#"{"status":"done"}"#,
    );
    assert_eq!(status, 403, "cross-site");
    let (status, _) = post(
        web,
        &bob,
        &format!("{path}/status"),
        &json!({ "status": "done" }),
    );
    assert_eq!(
        status, 404,
        "bob does not serve acme: not found, like no message"
    );
    let (status, _) = get(web, &bob, &path);
    assert_eq!(status, 404);
    let (status, _) = get(web, &alice, &format!("/api/messages/{others}"));
    assert_eq!(status, 404);
    let (status, _) = get(web, &alice, "/api/messages/99999");
    assert_eq!(status, 404);
    let (status, body) = get(web, &alice, "/api/messages/1x");
    assert_eq!((status, body["field"].as_str()), (422, Some("call")));
    let (_, page) = get(web, &alice, &path);
    assert_eq!(
        page["message"]["status"], "new",
        "nothing refused was written"
    );
    assert_eq!(page["history"].as_array().unwrap().len(), 4);
    let (_, greeting_page) = get(web, &alice, &format!("/api/messages/{greeting}"));
    assert_eq!(greeting_page["message"]["status"], "filed");

    // `permanence messages mark` (by message id) is a change like the others.
    let id: i64 = conn
        .query_row(
            "SELECT id FROM messages WHERE call_id = ?1",
            [voicemail],
            |r| r.get(0),
        )
        .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["messages", "mark", &id.to_string(), "done", "--config"])
        .arg(setup.config())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (_, page) = get(web, &alice, &path);
    let history = page["history"].as_array().unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(history[4]["by"], "cli");
    assert_eq!(page["message"]["status"], "done");
}

/// The voicemail: whole and by ranges, byte for byte the file; 416 past its end; only to
/// a logged-in secretary of its company; never a file outside data/recordings.
#[test]
fn the_recording_is_served_by_ranges_to_her_companys_secretaries_only() {
    let (setup, web) = setup();
    let _server = setup.start();
    let [greeting, voicemail, _, _] = four_calls(&setup);
    let alice = session(web, "alice");
    let bob = session(web, "bob");
    // The file is complete once its length is recorded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let recording = loop {
        let (_, recording, ms, _) = message_of(&setup, voicemail);
        if ms.is_some() {
            break recording.expect("a recording");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the recording never ended"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let file = std::fs::read(recording).unwrap();
    let len = file.len();
    assert!(len > 10_000, "{len} bytes");
    let path = format!("/api/recordings/{voicemail}");
    let cookie = ("Cookie", alice.as_str());

    let (status, headers, body) = http_bytes(web, &path, &[cookie]);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("audio/wav"));
    assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));
    assert_eq!(body, file, "the whole file");

    for (range, from, to) in [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len - 1),
        ("bytes=-10", len - 10, len - 1),
        ("bytes=1000-999999999", 1000, len - 1),
    ] {
        let (status, headers, body) = http_bytes(web, &path, &[cookie, ("Range", range)]);
        assert_eq!(status, 206, "{range}");
        assert_eq!(
            header(&headers, "content-range"),
            Some(format!("bytes {from}-{to}/{len}").as_str()),
            "{range}"
        );
        assert_eq!(body, &file[from..=to], "{range}");
    }
    let (status, headers, _) =
        http_bytes(web, &path, &[cookie, ("Range", &format!("bytes={len}-"))]);
    assert_eq!(status, 416);
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes */{len}").as_str())
    );

    let (status, _, _) = http_bytes(web, &path, &[]);
    assert_eq!(status, 401, "not logged in");
    let (status, _, body) = http_bytes(web, &path, &[("Cookie", &bob)]);
    assert_eq!(status, 404, "bob does not serve acme");
    assert!(!body.starts_with(b"RIFF"));
    let (status, _, _) = http_bytes(web, &format!("/api/recordings/{greeting}"), &[cookie]);
    assert_eq!(status, 404, "no recording");

    // A row pointing out of data/recordings (by `..`, or by a link) serves nothing.
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let link = setup.dir.path().join("data/recordings/escape.wav");
    std::os::unix::fs::symlink(setup.db(), &link).unwrap();
    for hostile in [
        "recordings/../permanence.db",
        "recordings/escape.wav",
        "/etc/passwd",
        "permanence.db",
    ] {
        conn.execute(
            "UPDATE messages SET recording = ?1 WHERE call_id = ?2",
            rusqlite::params![hostile, voicemail],
        )
        .unwrap();
        let (status, _, body) = http_bytes(web, &path, &[cookie]);
        assert_eq!(status, 404, "{hostile}");
        assert!(!body.starts_with(b"SQLite format"), "{hostile}");
    }
}
