//! The console in a real browser: Debian's `chromium`, headless, driven through
//! `chromedriver`'s W3C WebDriver API (plain HTTP and JSON, spoken here). Chromium makes
//! requests of its own, so the test re-runs itself inside a network namespace that has
//! nothing but loopback (`unshare -n`), where the server, the driver and the browser all
//! live. A screenshot of the board is saved under `target/artefacts/`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use common::*;

/// Set in the re-run inside the network namespace.
const IN_NETNS: &str = "PERMANENCE_TEST_NETNS";

/// Runs `test` (this binary's test of that name) inside a fresh network namespace with
/// only loopback up; true when already inside (then the caller goes on).
fn inside_loopback_only_namespace(test: &str) -> bool {
    if std::env::var_os(IN_NETNS).is_some() {
        return true;
    }
    let status = Command::new("unshare")
        .args(["-n", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .status()
        .expect("unshare (util-linux)");
    assert!(
        status.success(),
        "the test failed inside its network namespace"
    );
    false
}

/// One HTTP request with a JSON body to `addr`: the JSON answer.
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver keeps the connection open: read the head, then Content-Length bytes.
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection closed mid-head"
        );
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {head}"))
}

/// A browser session through chromedriver.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    fn start(profile: &std::path::Path) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--window-size=1100,900", "--no-first-run",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let answer = call(addr, "POST", "/session", Some(&capabilities));
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_string();
        Browser {
            driver,
            addr,
            session,
        }
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let answer = call(self.addr, method, &path, body.as_ref());
        assert!(
            answer["value"].get("error").is_none(),
            "{method} {path}: {answer}"
        );
        answer["value"].clone()
    }

    fn go(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs a script in the page; its return value.
    fn eval(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    fn element(&self, css: &str) -> String {
        let found = self.command(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.command("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.command("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Waits (10 s at most) until `script` returns true.
    fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.eval(script) != Value::Bool(true) {
            assert!(Instant::now() < deadline, "waited in vain for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self, css: &str) -> String {
        let script = format!("return document.querySelector({css:?})?.textContent ?? null");
        self.eval(&script).as_str().unwrap_or_default().to_string()
    }

    fn screenshot(&self, path: &std::path::Path) {
        let png = self.command("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = std::panic::catch_unwind(|| call(self.addr, "DELETE", &path, None));
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Alice logs in (a wrong password first), sees the board with her name shown as text,
/// goes on pause with a hostile-looking reason that stays text, and the board follows.
#[test]
fn a_secretary_uses_the_console_in_chromium() {
    if !inside_loopback_only_namespace("a_secretary_uses_the_console_in_chromium") {
        return;
    }
    let setup = Setup::new(&[(
        "acme.toml",
        &plan("acme", "+33180000001", r#"[{ hangup = {} }]"#),
    )]);
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let alice = permanence::auth::ha1(
        permanence::auth::Algorithm::Md5,
        "alice",
        "permanence",
        "alice",
    );
    let mut config = std::fs::read_to_string(setup.config()).unwrap();
    config.push_str(&format!(
        "\n[web]\nlisten = \"{web}\"\n[registrar]\nkeepalive_seconds = 0\n\
         [[secretaries]]\nname = \"Alice <b>Martin</b>\"\nusername = \"alice\"\nha1_md5 = \"{alice}\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n"
    ));
    std::fs::write(setup.config(), config).unwrap();
    let _server = setup.start();
    let _phone = register_phone_port(setup.addr(), "alice", "alice");

    let browser = Browser::start(&setup.dir.path().join("chromium"));
    browser.go(&format!("http://{web}/"));
    browser.wait_for(
        "the login form",
        "return !document.getElementById('login').hidden",
    );

    browser.type_into("#username", "alice");
    browser.type_into("#password", "wrong");
    browser.click("#login button");
    browser.wait_for(
        "the refusal",
        "return document.getElementById('login-error').textContent.length > 0",
    );
    assert_eq!(browser.text("#login-error"), "wrong username or password");

    browser.type_into("#password", "alice");
    browser.click("#login button");
    browser.wait_for(
        "the board",
        "return !document.getElementById('board').hidden",
    );
    assert_eq!(
        browser.eval("return getComputedStyle(document.getElementById('login')).display"),
        json!("none"),
        "the login form is gone once logged in"
    );
    browser.wait_for(
        "her row",
        "return document.querySelectorAll('#seats tr').length === 1",
    );
    assert_eq!(browser.text("#seats td"), "Alice <b>Martin</b> (moi)");
    assert_eq!(
        browser.eval("return document.querySelectorAll('#seats b').length"),
        json!(0),
        "a name is text, never markup"
    );
    assert_eq!(browser.text("#my-state"), "disponible");

    let hostile = "<img src=x onerror=\"document.title='pwned'\"></script>";
    browser.type_into("#reason", hostile);
    browser.click("#pause button");
    browser.wait_for(
        "the pause",
        "return document.getElementById('my-state').textContent.startsWith('en pause')",
    );
    assert_eq!(browser.text("#my-state"), format!("en pause : {hostile}"));
    assert_eq!(
        browser.eval("return document.querySelectorAll('img').length"),
        json!(0)
    );
    assert_ne!(browser.eval("return document.title"), json!("pwned"));

    let artefact = repo().join("target/artefacts/console-board.png");
    browser.screenshot(&artefact);
    assert!(std::fs::metadata(&artefact).unwrap().len() > 5_000);

    browser.click("#resume");
    browser.wait_for(
        "back from pause",
        "return document.getElementById('my-state').textContent === 'disponible'",
    );
}

/// A call rings alice's (SIPp) phone: the company's card is on her screen while it rings,
/// with the caller's name from the contacts shown as text even when it is shaped like
/// markup, and their earlier call; after the call she writes the message in the form and
/// saves: the call's row has it, written by her, and her long wrap-up ends at the save.
#[test]
fn the_card_is_on_screen_when_the_call_rings_and_the_message_is_saved_from_it() {
    if !inside_loopback_only_namespace(
        "the_card_is_on_screen_when_the_call_rings_and_the_message_is_saved_from_it",
    ) {
        return;
    }
    let steps = r#"[{ secretary = { timeout = 15 } }, { play = "tone/a.wav" }, { hangup = {} }]"#;
    let plan = plan("acme", "+33180000001", steps)
        .replace(
            "name = \"acme company\"",
            "name = \"ACME Plomberie\"\nanswer_as = \"ACME Plomberie, bonjour !\"",
        )
        .replace(
            "[[route]]",
            "[executives.marie]\nname = \"Marie Durand\"\nreach = [\"sip:marie@192.0.2.1\"]\n\n\
             [contacts]\nvip = [{ number = \"+33612345678\", name = \"<img src=x onerror=alert(1)>\" }]\n\n\
             [card]\ninstructions = \"Fuite d'eau : urgent, passer à Marie.\"\n\
             fields = [{ name = \"address\", label = \"Adresse de l'intervention\", required = true }]\n\n[[route]]",
        );
    let setup = Setup::new(&[("acme.toml", &plan)]);
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let alice = permanence::auth::ha1(
        permanence::auth::Algorithm::Md5,
        "alice",
        "permanence",
        "alice",
    );
    let mut config = std::fs::read_to_string(setup.config()).unwrap();
    config.push_str(&format!(
        "\n[web]\nlisten = \"{web}\"\n[registrar]\nkeepalive_seconds = 0\n[distribution]\nwrap_up_seconds = 120\n\
         [[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\nha1_md5 = \"{alice}\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n"
    ));
    std::fs::write(setup.config(), config).unwrap();
    let _server = setup.start();

    // The caller rang once before, when nobody was there.
    let (_rtp, rtp_port) = rtp_socket();
    assert_sipp_ok(&sipp_call(
        "call.xml",
        setup.addr(),
        "+33180000001",
        &rtp_port,
        "0",
        &[],
    ));

    let browser = Browser::start(&setup.dir.path().join("chromium"));
    browser.go(&format!("http://{web}/"));
    browser.wait_for(
        "the login form",
        "return !document.getElementById('login').hidden",
    );
    browser.type_into("#username", "alice");
    browser.type_into("#password", "alice");
    browser.click("#login button");
    browser.wait_for(
        "the board",
        "return !document.getElementById('board').hidden",
    );

    let port = register_phone_port(setup.addr(), "alice", "alice");
    let args = ["-key", "username", "alice", "-key", "rtp_port", &rtp_port];
    let args = [&args[..], &["-key", "offer", "0", "-d", "4000"]].concat();
    let mut phone = sipp_phone("queue_secretary.xml", port, &args);
    wait_sipp_phone_ready(&mut phone, port);
    let addr = setup.addr();
    let caller_port = rtp_port.clone();
    let caller = std::thread::spawn(move || {
        sipp_call("call.xml", addr, "+33180000001", &caller_port, "0", &[])
    });

    browser.wait_for(
        "the card",
        "return !document.getElementById('call-card').hidden",
    );
    assert_eq!(browser.text("#card-company"), "ACME Plomberie");
    assert_eq!(
        browser.text("#card-answer-as"),
        "« ACME Plomberie, bonjour ! »"
    );
    assert_eq!(
        browser.text("#card-instructions"),
        "Fuite d'eau : urgent, passer à Marie."
    );
    assert_eq!(
        browser.text("#card-caller"),
        "<img src=x onerror=alert(1)> — +33612345678 (vip)",
        "the contact's name is text"
    );
    assert_eq!(
        browser.eval("return document.querySelectorAll('img').length"),
        json!(0)
    );
    assert_eq!(
        browser.eval("return document.querySelectorAll('#card-history li').length"),
        json!(1),
        "the earlier call"
    );
    let artefact = repo().join("target/artefacts/console-card.png");
    browser.screenshot(&artefact);

    assert_sipp_ok(&caller.join().unwrap());
    assert_sipp_ok(&finish(phone));
    browser.wait_for(
        "her wrap-up",
        "return document.getElementById('my-state').textContent.startsWith(\"fin d'appel\")",
    );
    browser.type_into("#m-about", "Fuite sous l'évier </script>");
    browser.type_into("input[data-field=address]", "3 rue des Lilas");
    browser.eval(
        "document.getElementById('m-category').value = 'urgent'; \
         document.getElementById('m-for').value = 'marie'; return true",
    );
    browser.click("#message button");
    browser.wait_for(
        "the next call (wrap-up over)",
        "return document.getElementById('my-state').textContent === 'disponible'",
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    let row = loop {
        let conn = rusqlite::Connection::open(setup.db()).unwrap();
        let row: Option<(String, String, String, String, String)> = conn
            .query_row(
                "SELECT note, callback, category, fields, written_by FROM messages
                 WHERE written_by IS NOT NULL ORDER BY call_id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .ok();
        if let Some(row) = row {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "the message never reached its row"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(row.0, "Fuite sous l'évier </script>");
    assert_eq!(row.1, "+33612345678", "the callback number was prefilled");
    assert_eq!(row.2, "urgent");
    assert_eq!(row.3, r#"{"address":"3 rue des Lilas"}"#);
    assert_eq!(row.4, "alice");
}
