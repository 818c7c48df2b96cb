//! The console in a real browser: Debian's `chromium`, headless, driven through
//! `chromedriver`'s W3C WebDriver API (plain HTTP and JSON, spoken here). Chromium makes
//! requests of its own, so the test re-runs itself inside a network namespace that has
//! nothing but loopback (`unshare -n`), where the server, the driver and the browser all
//! live. A screenshot of the board is saved under `target/artefacts/`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use common::*;

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
    browser.log_in(web, "alice", "alice");
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

/// Spam: while a call rings alice, she marks the caller as spam on the card; the card then
/// says the number is blocked, the company's block list shows it, and the caller's next
/// call takes the blocked route without ringing her. "Retirer" lifts the block.
#[test]
fn marking_a_caller_spam_on_the_card_sends_their_next_call_down_the_blocked_route() {
    if !inside_loopback_only_namespace(
        "marking_a_caller_spam_on_the_card_sends_their_next_call_down_the_blocked_route",
    ) {
        return;
    }
    let steps = r#"[{ secretary = { timeout = 15 } }, { play = "tone/a.wav" }, { hangup = {} }]"#;
    let plan = plan("acme", "+33180000001", steps).replace(
        "[[route]]",
        "[[route]]\nname = \"indésirables\"\nwhen = { caller = \"blocked\" }\n\
         steps = [{ reject = { code = 603 } }]\ncategory = \"spam\"\n\n[[route]]",
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
        "\n[web]\nlisten = \"{web}\"\n[registrar]\nkeepalive_seconds = 0\n\
         [[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\nha1_md5 = \"{alice}\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n"
    ));
    std::fs::write(setup.config(), config).unwrap();
    let _server = setup.start();

    let browser = Browser::start(&setup.dir.path().join("chromium"));
    browser.log_in(web, "alice", "alice");
    browser.wait_for(
        "the block list, empty",
        "return document.getElementById('blocked-rows').textContent === 'aucun numéro bloqué'",
    );

    let port = register_phone_port(setup.addr(), "alice", "alice");
    let (_rtp, rtp_port) = rtp_socket();
    let args = ["-key", "username", "alice", "-key", "rtp_port", &rtp_port];
    let args = [&args[..], &["-key", "offer", "0", "-d", "3000"]].concat();
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
    assert!(browser.text("#card-spam").is_empty(), "not blocked yet");
    browser.type_into("#spam-reason", "démarchage <b>insistant</b>");
    browser.click("#spam-button");
    browser.wait_for(
        "the card saying the number is blocked",
        "return !document.getElementById('card-spam').hidden",
    );
    let said = browser.text("#card-spam");
    assert!(
        said.starts_with("Numéro bloqué pour acme company")
            && said.ends_with(" par alice : démarchage <b>insistant</b>"),
        "{said}"
    );
    assert_eq!(
        browser.eval("return document.getElementById('spam-form').hidden"),
        json!(true),
        "no second block"
    );
    browser.wait_for(
        "the number in the block list",
        "return document.getElementById('blocked-rows').textContent.includes('+33612345678')",
    );
    assert_eq!(
        browser.eval("return document.querySelectorAll('#blocked-rows b').length"),
        json!(0),
        "the reason is text"
    );
    browser.screenshot(&repo().join("target/artefacts/console-spam.png"));
    assert_sipp_ok(&caller.join().unwrap());
    assert_sipp_ok(&finish(phone));

    // The next call from that number: refused by the plan's route for blocked callers.
    let out = sipp(
        "declined.xml",
        setup.addr(),
        &[
            "-s",
            "+33180000001",
            "-key",
            "caller",
            "+33612345678",
            "-key",
            "rtp_port",
            &rtp_port,
            "-key",
            "offer",
            "0",
        ],
    );
    assert_sipp_ok(&out);
    let calls = setup.wait_calls(|c| c.len() == 2 && c[1].ended);
    assert_eq!(calls[1].route.as_deref(), Some("indésirables"));
    let events = setup.events(calls[1].id);
    assert!(events.iter().any(|e| e == "blocked"), "{events:?}");
    assert!(
        !events.iter().any(|e| e == "secretary-offered"),
        "{events:?}"
    );

    // Lifted from the list: the row stays, with who lifted it.
    browser.click("#blocked-rows button");
    browser.wait_for(
        "the block list, empty again",
        "return document.getElementById('blocked-rows').textContent === 'aucun numéro bloqué'",
    );
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let lifted: (String, Option<String>) = conn
        .query_row(
            "SELECT added_by, removed_by FROM blocked_numbers",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(lifted, ("alice".into(), Some("alice".into())));
}

/// The inbox in the browser: a voicemail from a phone whose display name is shaped like
/// markup, and a note written from the message's page holding `</script><b>x</b>`, are
/// shown literally in the list and on the page (no element made of them); the recording
/// loads in the page's player (with her session, by ranges); she marks it done there.
#[test]
fn the_inbox_shows_hostile_text_as_text_plays_the_voicemail_and_marks_it_done() {
    if !inside_loopback_only_namespace(
        "the_inbox_shows_hostile_text_as_text_plays_the_voicemail_and_marks_it_done",
    ) {
        return;
    }
    let steps = r#"[{ voicemail = { prompt = "tone/short.wav", max_seconds = 60 } }]"#;
    let setup = Setup::new(&[("acme.toml", &plan("acme", "+33180000001", steps))]);
    write_tone(&setup.dir.path().join("sounds/tone/short.wav"), 600.0, 0.5);
    let tone = setup.dir.path().join("tone.pcap");
    write_tone_pcap(&tone, 1000.0, 2.0);
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
         [[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\nha1_md5 = \"{alice}\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n"
    ));
    std::fs::write(setup.config(), config).unwrap();
    let _server = setup.start();

    let display = "<img src=x onerror=alert(1)>";
    assert_sipp_ok(&sipp_call(
        "voicemail_named.xml",
        setup.addr(),
        "+33180000001",
        "9",
        "0 101",
        &[
            "-key",
            "audio_pcap",
            &tone.display().to_string(),
            "-key",
            "caller_display",
            display,
        ],
    ));
    let call = setup.wait_calls(|c| c.len() == 1 && c[0].ended)[0].id;
    let deadline = Instant::now() + Duration::from_secs(10);
    while message_of(&setup, call).2.is_none() {
        assert!(Instant::now() < deadline, "the recording never ended");
        std::thread::sleep(Duration::from_millis(100));
    }

    let browser = Browser::start(&setup.dir.path().join("chromium"));
    browser.log_in(web, "alice", "alice");
    browser.wait_for(
        "the voicemail in the inbox",
        "return document.querySelectorAll('#inbox-list tr').length === 1",
    );
    assert_eq!(
        browser.text("#inbox-list .who"),
        display,
        "the phone's name, as text"
    );
    assert_eq!(browser.text("#inbox-list .status"), "nouveau");
    let no_markup = "return document.querySelectorAll('img, b').length";
    assert_eq!(browser.eval(no_markup), json!(0));

    browser.click("#inbox-list a.who");
    browser.wait_for(
        "the message's page",
        "return !document.getElementById('message-view').hidden",
    );
    assert_eq!(browser.text("#mv-caller-display"), display);
    browser.wait_for(
        "the recording in the player",
        "return document.getElementById('mv-audio').duration > 1",
    );

    let note = "</script><b>x</b>";
    browser.click("#mv-edit-box summary");
    browser.type_into("#e-about", note);
    browser.click("#mv-edit button");
    browser.wait_for(
        "the saved note",
        &format!(
            "return document.getElementById('mv-about').textContent === {}",
            serde_json::to_string(note).unwrap()
        ),
    );
    assert_eq!(
        browser.eval(no_markup),
        json!(0),
        "no element made of the note"
    );
    assert!(browser.text("#mv-history").contains("alice"));

    browser.click("#mv-done");
    browser.wait_for(
        "done",
        "return document.getElementById('mv-status').textContent === 'traité'",
    );
    browser.screenshot(&repo().join("target/artefacts/console-message.png"));
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let status: String = conn
        .query_row(
            "SELECT status FROM messages WHERE call_id = ?1",
            [call],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "done");
    let changes: Vec<String> = conn
        .prepare("SELECT changed_by FROM message_changes WHERE call_id = ?1 ORDER BY id")
        .unwrap()
        .query_map([call], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        changes,
        ["alice", "alice"],
        "the edit and the status, each kept"
    );

    browser.click("#mv-back");
    browser.wait_for(
        "the list again, with the note",
        &format!(
            "return !document.getElementById('inbox').hidden && \
             document.querySelector('#inbox-list .about')?.textContent === {}",
            serde_json::to_string(note).unwrap()
        ),
    );
    assert_eq!(browser.text("#inbox-list .status"), "traité");
    assert_eq!(browser.text("#inbox-list .who"), display);
    assert_eq!(browser.eval(no_markup), json!(0));
    browser.screenshot(&repo().join("target/artefacts/console-inbox.png"));
}
