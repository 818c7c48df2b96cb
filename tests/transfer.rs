//! The console's transfer button over real HTTP, with SIPp phones (issue 12): alice takes
//! a call on her phone, presses "Transférer" for marie in the console, marie's phone rings
//! and takes the caller, and the card says it connected. Refused: someone else's call, an
//! executive the company does not have or cannot reach, a call she is no longer on. Then
//! the same button pressed in a real browser (`common::browser`).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use common::*;

/// acme: alice's calls, executives marie (her phone, `user:marie`) and paul (an account
/// that never registers); bob, a second secretary without a phone; a minute of wrap-up,
/// so that alice's card stays on the board after her leg ends.
fn setup_transfer() -> (Setup, SocketAddr) {
    let steps = r#"[{ secretary = { timeout = 15 } }, { hangup = {} }]"#;
    let (setup, web) = setup(steps);
    let plan = plan("acme", "+33180000001", steps).replace(
        "[[route]]",
        "[executives.marie]\nname = \"Marie Durand\"\nreach = [\"user:marie\"]\n\n\
         [executives.paul]\nname = \"Paul\"\nreach = [\"user:paul\"]\n\n[[route]]",
    );
    std::fs::write(
        setup.config().parent().unwrap().join("dialplans/acme.toml"),
        &plan,
    )
    .unwrap();
    let bob = permanence::auth::ha1(permanence::auth::Algorithm::Md5, "bob", "permanence", "bob");
    let config = std::fs::read_to_string(setup.config()).unwrap().replace(
        "[registrar]",
        "[distribution]\nwrap_up_seconds = 60\n[registrar]",
    );
    std::fs::write(
        setup.config(),
        format!(
            "{config}\n[[secretaries]]\nname = \"Bob\"\nusername = \"bob\"\nha1_md5 = \"{bob}\"\n\
             ha1_sha256 = \"\"\ncompanies = [\"acme\"]\n"
        ),
    )
    .unwrap();
    (setup, web)
}

/// Logs in; the `Cookie` header's value.
fn session(web: SocketAddr, user: &str) -> String {
    let (status, cookie, body) = login(web, user, user);
    assert_eq!(status, 200, "{body}");
    cookie.unwrap().split(';').next().unwrap().to_string()
}

fn board(web: SocketAddr, session: &str) -> serde_json::Value {
    let (status, _, body) = http(web, "GET", "/api/board", &[("Cookie", session)], "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The board, once `ready` holds (10 s at most).
fn board_when(
    web: SocketAddr,
    session: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let b = board(web, session);
        if ready(&b) {
            return b;
        }
        assert!(Instant::now() < deadline, "never came: {b}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn my_seat(board: &serde_json::Value) -> serde_json::Value {
    board["seats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["me"] == true)
        .cloned()
        .unwrap_or_default()
}

/// POSTs a transfer of `call` to `executive` with this session: status and JSON body.
fn press(web: SocketAddr, session: &str, call: i64, executive: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "executive": executive }).to_string();
    let path = format!("/api/calls/{call}/transfer");
    let (status, _, body) = http(web, "POST", &path, &[JSON, ("Cookie", session)], &body);
    (status, serde_json::from_str(&body).unwrap_or_default())
}

/// A phone of `user`'s (registered, SIPp) that answers and waits for our BYE.
fn phone(setup: &Setup, user: &str) -> (std::process::Child, std::net::UdpSocket) {
    let port = register_phone_port(setup.addr(), user, user);
    let (mut child, sink) = listening_phone(setup, port, user);
    wait_sipp_phone_ready(&mut child, port);
    (child, sink)
}

/// A caller who talks (1 kHz) for 4 s once answered, then hangs up; SIPp's output.
fn caller(setup: &Setup) -> std::thread::JoinHandle<std::process::Output> {
    let pcap = setup.dir.path().join("caller.pcap");
    write_tone_pcap(&pcap, 1000.0, 4.0);
    let addr = setup.addr();
    let pcap = pcap.to_str().unwrap().to_string();
    std::thread::spawn(move || {
        let (_rtp, port) = rtp_socket();
        sipp_call(
            "talk_hangup.xml",
            addr,
            "+33180000001",
            &port,
            "0",
            &["-key", "audio_pcap", &pcap],
        )
    })
}

#[test]
fn a_secretary_transfers_her_call_to_an_executive_from_the_console() {
    let (setup, web) = setup_transfer();
    let server = setup.start();
    let alice = session(web, "alice");
    let bob = session(web, "bob");
    let (marie_phone, marie_hears) = phone(&setup, "marie");
    let (alice_phone, _alice_hears) = phone(&setup, "alice");
    let caller = caller(&setup);
    let heard_by_marie = std::thread::spawn(move || hear(&marie_hears, Duration::from_secs(15)));

    let on_call = board_when(web, &alice, |b| {
        my_seat(b)["state"] == "on-call" && !b["card"].is_null()
    });
    let call = on_call["card"]["call"]["id"].as_i64().unwrap();
    let executives = on_call["card"]["executives"].as_array().unwrap().clone();
    let transferable = |id: &str| {
        executives
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["transferable"].clone())
    };
    assert_eq!(transferable("marie"), Some(true.into()), "{executives:?}");
    assert_eq!(
        transferable("paul"),
        Some(false.into()),
        "paul has no phone registered"
    );
    assert!(on_call["card"]["transfer"].is_null());

    // Refused, and nothing rings: not bob's call; not one of acme's executives; paul
    // cannot be reached; a control character; another site; nobody logged in.
    let (status, body) = press(web, &bob, call, "marie");
    assert_eq!(status, 403, "{body}");
    for executive in ["nobody", "paul", "ma\nrie"] {
        let (status, body) = press(web, &alice, call, executive);
        assert_eq!(status, 422, "{executive}: {body}");
        assert_eq!(body["field"], "executive", "{body}");
    }
    let path = format!("/api/calls/{call}/transfer");
    let marie = r#"{"executive":"marie"}"#;
    let foreign = [
        JSON,
        ("Cookie", alice.as_str()),
        ("Origin", "http://evil.example"),
    ];
    assert_eq!(http(web, "POST", &path, &foreign, marie).0, 403);
    assert_eq!(http(web, "POST", &path, &[JSON], marie).0, 401);
    assert!(
        !setup.events(call).iter().any(|e| e == "executive-offered"),
        "a refused transfer rang someone: {:?}",
        setup.events(call)
    );

    // Alice presses the button for marie: marie's phone rings and takes the caller.
    let (status, body) = press(web, &alice, call, "marie");
    assert_eq!(status, 200, "{body}\n{}", server.log());
    assert_eq!(body["state"], "ringing");
    let connected = board_when(web, &alice, |b| {
        b["card"]["transfer"]["state"] == "connected"
    });
    assert_eq!(connected["card"]["transfer"]["to"], "marie");
    assert_eq!(connected["card"]["transfer"]["by"], "alice");
    assert_eq!(
        my_seat(&connected)["state"],
        "wrap-up",
        "her leg ended when marie took the caller"
    );
    // Her call is marie's now.
    let (status, body) = press(web, &alice, call, "marie");
    assert_eq!(status, 409, "{body}");

    assert_sipp_ok(&caller.join().unwrap());
    assert_sipp_ok(&finish(alice_phone));
    assert_sipp_ok(&finish(marie_phone));
    let (packets, audio) = heard_by_marie.join().unwrap();
    assert!(
        packets >= 50,
        "marie heard {packets} packets of the caller\n{}",
        server.log()
    );
    let f = tone_frequency(&audio);
    assert!(
        (950.0..1050.0).contains(&f),
        "marie heard {f} Hz, not the caller's 1 kHz"
    );

    let calls = setup.wait_calls(|c| c.iter().any(|c| c.id == call && c.outcome.is_some()));
    let row = calls.iter().find(|c| c.id == call).unwrap();
    assert_eq!(row.outcome.as_deref(), Some("transferred"));
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let (handled_by, transferred_to): (Option<String>, Option<String>) = conn
        .query_row(
            "SELECT handled_by, transferred_to FROM calls WHERE id = ?1",
            [call],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(handled_by.as_deref(), Some("alice"));
    assert_eq!(transferred_to.as_deref(), Some("marie"));
    let timeline = setup.events(call);
    let at = |kind: &str| {
        timeline
            .iter()
            .position(|e| e == kind)
            .unwrap_or_else(|| panic!("no {kind} in {timeline:?}"))
    };
    assert!(at("console-transfer") < at("executive-offered"));
    assert!(at("executive-answered") < at("transferred"));
    assert_eq!(
        timeline
            .iter()
            .filter(|e| *e == "console-transfer-refused")
            .count(),
        2,
        "nobody and paul, refused by the call: {timeline:?}"
    );
    assert!(!timeline.iter().any(|e| e == "refer"));

    // The call is over: still refused, for her (409) and for bob (403); no such call: 404.
    assert_eq!(press(web, &alice, call, "marie").0, 409);
    assert_eq!(press(web, &bob, call, "marie").0, 403);
    assert_eq!(press(web, &alice, call + 1000, "marie").0, 404);
}

/// The card in Chromium: a "Transférer" button for marie (none for paul, who has no
/// phone), pressed while alice talks to the caller; the card then says it connected.
#[test]
fn the_transfer_button_in_chromium_shows_that_the_call_connected() {
    if !inside_loopback_only_namespace(
        "the_transfer_button_in_chromium_shows_that_the_call_connected",
    ) {
        return;
    }
    let (setup, web) = setup_transfer();
    let _server = setup.start();
    let browser = Browser::start(&setup.dir.path().join("chromium"));
    browser.log_in(web, "alice", "alice");
    browser.wait_for(
        "the board",
        "return !document.getElementById('board').hidden",
    );
    let (marie_phone, _marie_hears) = phone(&setup, "marie");
    let (alice_phone, _alice_hears) = phone(&setup, "alice");
    let caller = caller(&setup);

    let marie = "#transfer-buttons button[data-executive=marie]";
    browser.wait_for(
        "marie's button, live once alice talks",
        &format!(
            "const b = document.querySelector('{marie}'); return b && !b.hidden && !b.disabled"
        ),
    );
    assert_eq!(browser.text(marie), "Transférer à Marie Durand");
    assert_eq!(
        browser.eval(
            "return document.querySelector('#transfer-buttons button[data-executive=paul]').hidden"
        ),
        json!(true),
        "no button for whom nothing can ring"
    );
    browser.click(marie);
    browser.wait_for(
        "the transfer's result",
        "return document.getElementById('transfer-result').textContent.endsWith('connecté')",
    );
    assert_eq!(
        browser.text("#transfer-result"),
        "Transfert vers marie : connecté"
    );
    assert_eq!(
        browser.eval(&format!(
            "return document.querySelector('{marie}').disabled"
        )),
        json!(true),
        "the caller is marie's now"
    );

    assert_sipp_ok(&caller.join().unwrap());
    assert_sipp_ok(&finish(alice_phone));
    assert_sipp_ok(&finish(marie_phone));
}
