//! The executive's page over real HTTP (issue 13): a link from `permanence executive-links
//! create` opens their messages (their companies' only), one message with its recording
//! and a `tel:` link, "handled" by a POST from the page (a GET changes nothing, a
//! cross-site POST is refused); a tampered, expired or revoked link gets 403; and
//! do-not-disturb set on the page makes the next transfer skip them (their phone never
//! rings, the timeline says `executive-dnd`) while the console's card shows it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

const ACME: &str = "+33180000001";
const PUBLIC: &str = "https://permanence.example";

/// acme (marie and paul; a short tone, a transfer to marie, then alice, then hang up) and globex (marie)
/// name marie; initech does not. The console on, alice serving acme; no keep-alives (raw
/// phones would take an OPTIONS for a call); missed calls count from the first second.
fn page_setup() -> (Setup, SocketAddr) {
    let (setup, web) = setup("[{ hangup = {} }]");
    let dir = setup.config().parent().unwrap().to_path_buf();
    let marie = "[executives.marie]\nname = \"Marie <Durand>\"\nreach = [\"user:marie\"]\n";
    let acme = format!(
        "[company]\nid = \"acme\"\nname = \"ACME Plomberie\"\nnumbers = [\"{ACME}\"]\ntimezone = \"Europe/Paris\"\n\n\
         {marie}\n[executives.paul]\nname = \"Paul\"\nreach = [\"user:paul\"]\n\n\
         [card]\nfields = [{{ name = \"address\", label = \"Adresse <i>\" }}]\n\n\
         [[route]]\nname = \"main\"\nsteps = [{{ play = \"tone/short.wav\" }}, \
         {{ transfer = {{ to = \"marie\", timeout = 5 }} }}, \
         {{ secretary = {{ timeout = 5 }} }}, {{ hangup = {{}} }}]\n"
    );
    let globex = format!(
        "[company]\nid = \"globex\"\nname = \"Globex\"\nnumbers = [\"+33180000002\"]\n\n{marie}\n\
         [[route]]\nname = \"main\"\nsteps = [{{ hangup = {{}} }}]\n"
    );
    let initech = plan("initech", "+33180000003", "[{ hangup = {} }]");
    write_tone(&dir.join("sounds/tone/short.wav"), 440.0, 0.2);
    for (file, text) in [
        ("acme.toml", acme),
        ("globex.toml", globex),
        ("initech.toml", initech),
    ] {
        std::fs::write(dir.join("dialplans").join(file), text).unwrap();
    }
    let config = std::fs::read_to_string(setup.config())
        .unwrap()
        .replace("[web]\n", &format!("[web]\npublic_url = \"{PUBLIC}/\"\n"));
    std::fs::write(setup.config(), config).unwrap();
    (setup, web)
}

/// `permanence executive-links …` with the setup's config.
fn links(setup: &Setup, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("executive-links")
        .args(args)
        .arg("--config")
        .arg(setup.config())
        .output()
        .unwrap()
}

/// A new link to `executive`'s page (extra flags: `--seconds`…): its path on the console.
fn link(setup: &Setup, executive: &str, extra: &[&str]) -> String {
    let mut args = vec!["create", "--executive", executive];
    args.extend_from_slice(extra);
    let out = links(setup, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap();
    let path = url
        .trim()
        .strip_prefix(PUBLIC)
        .unwrap_or_else(|| panic!("the link starts with public_url: {url}"));
    assert!(path.starts_with("/x/"), "{path}");
    path.to_string()
}

fn get(web: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    http(web, "GET", path, &[], "")
}

/// A POST of the page's form, as the browser sends it from the page (same origin).
fn post_form(web: SocketAddr, path: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    let origin = format!("http://{web}");
    http(
        web,
        "POST",
        path,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", &origin),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        body,
    )
}

/// One GET with extra headers, the body kept as bytes (a recording): status, headers.
fn get_bytes(web: SocketAddr, path: &str, headers: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(web).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, raw[end + 4..].to_vec())
}

/// A message in the records as an ended call left it, written before the server starts
/// (its call ids follow the highest).
fn fixture(
    conn: &rusqlite::Connection,
    id: i64,
    company: &str,
    caller: &str,
    display: &str,
    status: &str,
    for_executive: Option<&str>,
) {
    conn.execute(
        "INSERT INTO calls (id, company, dialled, caller, caller_name, started_at, ended_at, outcome, sip_call_id)
         VALUES (?1, ?2, '+33180000001', ?3, ?4, '2026-11-30T09:00:00.000Z', '2026-11-30T09:01:00.000Z', 'voicemail', ?5)",
        rusqlite::params![id, company, caller, display, format!("fixture-{id}")],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO messages (call_id, company, caller, category, status, for_executive, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'urgent', ?4, ?5, '2026-11-30T09:00:00.000Z', '2026-11-30T09:01:00.000Z')",
        rusqlite::params![id, company, caller, status, for_executive],
    )
    .unwrap();
}

fn status_of_message(setup: &Setup, call: i64) -> String {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    conn.query_row(
        "SELECT status FROM messages WHERE call_id = ?1",
        [call],
        |r| r.get(0),
    )
    .unwrap()
}

fn count(setup: &Setup, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_link_opens_their_companies_messages_and_only_a_post_from_the_page_changes_one() {
    let (setup, web) = page_setup();
    {
        let conn = permanence::store::open_connection(&setup.db()).unwrap();
        fixture(
            &conn,
            1,
            "acme",
            "+33612345678",
            "<img src=x onerror=alert(1)>",
            "new",
            None,
        );
        conn.execute(
            "UPDATE messages SET note = '</script><script>alert(2)</script>', callback = '06 12 34 56 78',
                 fields = '{\"address\":\"3 rue des <b>Lilas</b>\"}',
                 recording = 'recordings/acme/2026-11-30/call-1.wav' WHERE call_id = 1",
            [],
        )
        .unwrap();
        fixture(
            &conn,
            2,
            "globex",
            "+33622222222",
            "Globex caller",
            "new",
            None,
        );
        fixture(
            &conn,
            3,
            "initech",
            "+33633333333",
            "Initech caller",
            "new",
            None,
        );
        fixture(
            &conn,
            4,
            "acme",
            "+33644444444",
            "For Paul",
            "new",
            Some("paul"),
        );
        fixture(
            &conn,
            5,
            "acme",
            "+33655555555",
            "Filed spam",
            "filed",
            None,
        );
        fixture(
            &conn,
            6,
            "acme",
            "+33666666666",
            "Done before",
            "done",
            Some("marie"),
        );
    }
    let wav = setup
        .dir
        .path()
        .join("data/recordings/acme/2026-11-30/call-1.wav");
    write_tone(&wav, 440.0, 1.0);
    let wav_len = std::fs::metadata(&wav).unwrap().len();
    let _server = setup.start();
    let page = link(&setup, "marie", &[]);

    let (status, headers, list) = get(web, &page);
    assert_eq!(status, 200, "{list}");
    let csp = header(&headers, "content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "no script at all: {csp}"
    );
    assert_eq!(header(&headers, "referrer-policy"), Some("same-origin"));
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert!(list.contains("<h1>Marie &lt;Durand&gt;</h1>"), "{list}");
    assert!(list.contains("ACME Plomberie · Globex"), "{list}");
    assert!(
        list.contains("&lt;img src=x onerror=alert(1)&gt;") && !list.contains("<img"),
        "hostile text shown as text: {list}"
    );
    assert!(list.contains("Globex caller"), "another company of hers");
    for hidden in ["Initech caller", "For Paul", "Filed spam"] {
        assert!(!list.contains(hidden), "{hidden} shown: {list}");
    }
    assert!(list.contains("À traiter (2)"), "{list}");
    assert!(
        list.contains("Traités (1)") && list.contains("Done before"),
        "{list}"
    );
    let token = page.trim_start_matches("/x/");
    assert!(
        list.contains(&format!("href=\"{token}/messages/1\"")),
        "links relative to the page: {list}"
    );

    let (status, _, one) = get(web, &format!("{page}/messages/1"));
    assert_eq!(status, 200, "{one}");
    assert!(one.contains("href=\"tel:0612345678\""), "{one}");
    assert!(
        one.contains("&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;")
            && !one.contains("<script"),
        "{one}"
    );
    assert!(
        one.contains("<dt>Adresse &lt;i&gt;</dt><dd>3 rue des &lt;b&gt;Lilas&lt;/b&gt;</dd>"),
        "the company's field under its label: {one}"
    );
    assert!(one.contains("<audio controls preload=\"none\" src=\"1/recording\">"));
    assert!(one.contains("<form method=\"post\" action=\"1/handled\">"));
    for (call, why) in [
        ("3", "initech's"),
        ("4", "paul's"),
        ("5", "filed"),
        ("x", "no call"),
    ] {
        let (status, _, body) = get(web, &format!("{page}/messages/{call}"));
        assert_eq!(status, 404, "{why}: {body}");
    }

    // The recording, whole and by range (a player seeks).
    let recording = format!("{page}/messages/1/recording");
    let (status, head, body) = get_bytes(web, &recording, "");
    assert_eq!(status, 200, "{head}");
    assert_eq!(body.len() as u64, wav_len);
    assert!(head.contains("content-type: audio/wav"), "{head}");
    assert!(head.contains("accept-ranges: bytes"), "{head}");
    let (status, head, body) = get_bytes(web, &recording, "Range: bytes=44-143\r\n");
    assert_eq!(status, 206, "{head}");
    assert_eq!(body.len(), 100);
    assert!(
        head.contains(&format!("content-range: bytes 44-143/{wav_len}")),
        "{head}"
    );
    assert_eq!(body, std::fs::read(&wav).unwrap()[44..144]);
    let (status, _, _) = get_bytes(web, &recording, "Range: bytes=99999999-\r\n");
    assert_eq!(status, 416);
    let (status, _, _) = get_bytes(web, &format!("{page}/messages/2/recording"), "");
    assert_eq!(status, 404, "no recording");

    // Nothing above changed anything.
    assert_eq!(status_of_message(&setup, 1), "new");
    assert_eq!(count(&setup, "SELECT count(*) FROM events"), 0);

    // A POST from another site is refused; from the page, the message is handled.
    let (status, _, _) = http(
        web,
        "POST",
        &format!("{page}/messages/1/handled"),
        &[
            ("Origin", "http://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        "",
    );
    assert_eq!(status, 403);
    assert_eq!(status_of_message(&setup, 1), "new");
    let (status, headers, _) = post_form(web, &format!("{page}/messages/1/handled"), "");
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("../1"));
    assert_eq!(status_of_message(&setup, 1), "done");
    assert_eq!(
        setup.events(1),
        ["message-status"],
        "the timeline says who and when"
    );
    let (status, _, _) = post_form(web, &format!("{page}/messages/3/handled"), "");
    assert_eq!(status, 404, "not hers to handle");
    assert_eq!(status_of_message(&setup, 3), "new");
    let (_, _, one) = get(web, &format!("{page}/messages/1"));
    assert!(!one.contains("action=\"1/handled\""), "done: no button");
    let (_, _, list) = get(web, &page);
    assert!(
        list.contains("À traiter (1)") && list.contains("Traités (2)"),
        "{list}"
    );
}

#[test]
fn tampered_expired_and_revoked_links_get_a_plain_403() {
    let (setup, web) = page_setup();
    let mut server = setup.start();
    let key = setup.dir.path().join("data/executive-links.key");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "made private at first start");
    }
    let good = link(&setup, "marie", &[]);
    assert_eq!(get(web, &good).0, 200);

    let forbidden = |path: &str, why: &str| {
        let (status, headers, body) = get(web, path);
        assert_eq!(status, 403, "{why}: {body}");
        assert!(body.contains("Lien non valable"), "{body}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/html; charset=utf-8")
        );
    };
    // One character changed in the middle of the token.
    let mut tampered: Vec<char> = good.chars().collect();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    forbidden(&tampered, "tampered");
    forbidden(&format!("{tampered}/messages/1"), "tampered, a message");
    forbidden("/x/nonsense", "not a token");
    let (status, _, _) = post_form(web, &format!("{tampered}/dnd"), "minutes=60");
    assert_eq!(status, 403, "no change with a tampered link");

    let short = link(&setup, "marie", &["--seconds", "1"]);
    std::thread::sleep(Duration::from_millis(1500));
    forbidden(&short, "expired");

    let out = links(&setup, &["create", "--executive", "nobody"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no executive `nobody`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = links(&setup, &["revoke", "--executive", "marie"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    forbidden(&good, "revoked, seen at the next request");
    let fresh = link(&setup, "marie", &[]);
    assert_eq!(get(web, &fresh).0, 200, "a link made after the revocation");
    assert!(
        !server.log().contains(fresh.trim_start_matches("/x/")),
        "a link is never logged"
    );

    // A key others may read stops the start.
    server.terminate();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let refused = setup.start_fails();
    assert!(refused.contains("chmod 600"), "{refused}");
}

/// A caller (SIPp) dialling acme, in the background.
fn caller(setup: &Setup) -> std::thread::JoinHandle<Output> {
    let addr = setup.addr();
    std::thread::spawn(move || {
        let (_rtp, port) = rtp_socket();
        sipp_call("call.xml", addr, ACME, &port, "0", &[])
    })
}

fn session(web: SocketAddr) -> String {
    let (status, cookie, body) = login(web, "alice", "alice");
    assert_eq!(status, 200, "{body}");
    cookie.unwrap().split(';').next().unwrap().to_string()
}

/// The board's card once it is there (10 s at most).
fn card(web: SocketAddr, session: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, body) = http(web, "GET", "/api/board", &[("Cookie", session)], "");
        let board: serde_json::Value = serde_json::from_str(&body).unwrap();
        if !board["card"].is_null() {
            return board["card"].clone();
        }
        assert!(Instant::now() < deadline, "no card: {board}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn do_not_disturb_set_on_the_page_makes_the_next_transfer_skip_the_executive() {
    let (setup, web) = page_setup();
    let mut server = setup.start();
    let mut marie = RawSipPhone::bind(setup.addr());
    marie.register("marie", "marie");
    let mut alice = RawSipPhone::bind(setup.addr());
    alice.register("alice", "alice");
    let alice_session = session(web);
    let page = link(&setup, "marie", &[]);
    let token = page.trim_start_matches("/x/").to_string();

    for (body, why) in [
        ("until=tomorrow", "not a time"),
        ("until=2000-01-01T10%3A00", "in the past"),
        ("until=2099-01-01T10%3A00", "too far"),
        ("", "nothing asked"),
    ] {
        let (status, _, page) = post_form(web, &format!("{page}/dnd"), body);
        assert_eq!(status, 422, "{why}: {page}");
    }
    let (status, headers, _) = post_form(web, &format!("{page}/dnd"), "minutes=60");
    assert_eq!(status, 303);
    assert_eq!(
        header(&headers, "location"),
        Some(format!("../{token}").as_str())
    );
    let (_, _, list) = get(web, &page);
    assert!(list.contains("Ne pas déranger jusqu'au"), "{list}");
    assert!(list.contains("Reprendre les appels"), "{list}");

    // The call skips marie: her phone never rings; alice's does, with marie's
    // do-not-disturb on the card.
    let call = caller(&setup);
    let invite = alice
        .wait_request("INVITE", Duration::from_secs(10))
        .expect("alice's phone rings");
    let card = card(web, &alice_session);
    let executive = |id: &str| {
        card["executives"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .cloned()
            .unwrap()
    };
    assert!(
        executive("marie")["dnd"]["until_local"].is_string(),
        "{card}"
    );
    assert_eq!(executive("marie")["transferable"], false);
    assert!(executive("paul")["dnd"].is_null());
    alice.respond(&invite, 486, Some("alice-busy"), &[], None);
    assert_sipp_ok(&call.join().unwrap());
    marie.listen(Duration::from_millis(500));
    assert!(
        !marie.received.iter().any(|m| m.method() == Some("INVITE")),
        "marie's phone rang\n{}",
        server.log()
    );
    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    let timeline = setup.events(calls[0].id);
    assert!(
        timeline.iter().any(|e| e == "executive-dnd"),
        "{timeline:?}"
    );
    assert!(
        !timeline
            .iter()
            .any(|e| e == "transfer" || e == "executive-offered"),
        "{timeline:?}"
    );
    let (set_by, ended): (String, Option<String>) = rusqlite::Connection::open(setup.db())
        .unwrap()
        .query_row(
            "SELECT set_by, ended_by FROM executive_dnd ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((set_by.as_str(), ended), ("marie", None));

    // It survives a restart; ended from the page, marie is called again.
    server.terminate();
    let _server = setup.start();
    let (_, _, list) = get(web, &page);
    assert!(list.contains("Ne pas déranger jusqu'au"), "kept: {list}");
    let (status, _, _) = post_form(web, &format!("{page}/dnd"), "clear=1");
    assert_eq!(status, 303);
    let (_, _, list) = get(web, &page);
    assert!(!list.contains("Reprendre les appels"), "{list}");
    marie.register("marie", "marie");
    alice.register("alice", "alice");
    let call = caller(&setup);
    let invite = marie
        .wait_request("INVITE", Duration::from_secs(10))
        .expect("marie's phone rings again");
    marie.respond(&invite, 486, Some("marie-busy"), &[], None);
    let invite = alice
        .wait_request("INVITE", Duration::from_secs(10))
        .expect("then alice's");
    alice.respond(&invite, 486, Some("alice-busy-2"), &[], None);
    assert_sipp_ok(&call.join().unwrap());
    let calls = setup.wait_calls(|c| c.len() == 2 && c[1].ended);
    let timeline = setup.events(calls[1].id);
    assert!(
        timeline.iter().any(|e| e == "executive-offered"),
        "{timeline:?}"
    );
    assert!(
        !timeline.iter().any(|e| e == "executive-dnd"),
        "{timeline:?}"
    );
    assert_eq!(
        count(
            &setup,
            "SELECT count(*) FROM executive_dnd WHERE ended_by = 'marie'"
        ),
        1
    );
}

/// In Chromium at a phone's width: the page's plain forms post from the page (the browser
/// names our origin, which the console's cross-site check wants), the hostile name stays
/// text in the DOM, and do-not-disturb and "handled" take effect. A screenshot is saved
/// under `target/artefacts/`.
#[test]
fn in_chromium_the_page_works_by_its_forms_alone() {
    if !inside_loopback_only_namespace("in_chromium_the_page_works_by_its_forms_alone") {
        return;
    }
    let (setup, web) = page_setup();
    {
        let conn = permanence::store::open_connection(&setup.db()).unwrap();
        fixture(
            &conn,
            1,
            "acme",
            "+33612345678",
            "<img src=x onerror=alert(1)>",
            "new",
            None,
        );
        conn.execute(
            "UPDATE messages SET note = 'Fuite au 3e </script>', callback = '06 12 34 56 78'
             WHERE call_id = 1",
            [],
        )
        .unwrap();
    }
    let _server = setup.start();
    let page = link(&setup, "marie", &[]);
    let browser = Browser::start(&setup.dir.path().join("chromium"));
    browser.command(
        "POST",
        "/window/rect",
        Some(serde_json::json!({ "width": 390, "height": 844 })),
    );
    browser.go(&format!("http://{web}{page}"));
    browser.wait_for("the list", "return document.querySelector('h1') !== null");
    assert_eq!(
        browser.text("ul.messages li strong"),
        "<img src=x onerror=alert(1)>",
        "the name as text"
    );
    assert_eq!(
        browser.eval("return document.querySelectorAll('img').length"),
        serde_json::json!(0)
    );

    browser.click("form.quick button[value='60']");
    browser.wait_for(
        "do not disturb on",
        "return document.querySelector('.dnd.on') !== null",
    );
    assert_eq!(
        count(
            &setup,
            "SELECT count(*) FROM executive_dnd WHERE ended_at IS NULL"
        ),
        1
    );
    std::fs::create_dir_all(repo().join("target/artefacts")).unwrap();
    browser.screenshot(&repo().join("target/artefacts/executive-page.png"));

    browser.click("ul.messages a");
    browser.wait_for(
        "the message",
        "return document.querySelector('a.call') !== null",
    );
    assert_eq!(
        browser.eval(
            "return [...document.querySelectorAll('dt')].find((t) => t.textContent === 'Objet')\
             .nextElementSibling.textContent"
        ),
        serde_json::json!("Fuite au 3e </script>")
    );
    assert_eq!(
        browser.eval("return document.querySelector('a.call').getAttribute('href')"),
        serde_json::json!("tel:0612345678")
    );
    browser.click("form[action$='handled'] button");
    browser.wait_for(
        "the message handled",
        "return document.querySelector(\"form[action$='handled']\") === null \
         && document.body.textContent.includes('traité')",
    );
    assert_eq!(status_of_message(&setup, 1), "done");
    browser.click("p a");
    browser.wait_for(
        "the list again",
        "return document.querySelector('.dnd.on') !== null",
    );
    browser.click(".dnd.on button");
    browser.wait_for(
        "do not disturb off",
        "return document.querySelector('form.quick') !== null",
    );
    assert_eq!(
        count(
            &setup,
            "SELECT count(*) FROM executive_dnd WHERE ended_by = 'marie'"
        ),
        1
    );
}
