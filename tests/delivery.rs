//! Messages reach the executive by e-mail, through the real server, its SQLite outbox and a
//! real SMTP server (Debian's aiosmtpd, started by each test on loopback, saving every
//! message it accepts: tests/smtp_sink.py). Calls are SIPp callers leaving voicemails.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ACME: &str = "+33180000001";
const VIP: &str = "+33622222222";
const EVIL: &str = "+33633333333";
const OTHER: &str = "+33644444444";

/// ACME's plan: VIPs (Syndic Martin, and a contact whose name tries to add a Bcc header)
/// leave urgent voicemails, everyone else normal ones; Marie gets urgent messages by
/// e-mail at once and normal ones in her daily summary at `digest`.
fn plan(digest: &str) -> String {
    format!(
        r#"[company]
id = "acme"
name = "ACME Plomberie"
numbers = ["{ACME}"]
timezone = "Europe/Paris"

[executives.marie]
name = "Marie Durand"
reach = ["sip:marie@192.0.2.1"]
email = "marie@acme.example"
deliver = [
  {{ category = "urgent", to = ["email"], when = "now" }},
  {{ category = "normal", to = ["email"], when = "{digest}" }},
  {{ category = "spam", to = [], when = "never" }},
]

[contacts]
vip = [
  {{ number = "{VIP}", name = "Syndic Martin" }},
  {{ number = "{EVIL}", name = "Syndic\r\nBcc: x@evil.example" }},
]

[[route]]
name = "clients VIP"
when = {{ caller = "vip" }}
steps = [{{ voicemail = {{ prompt = "tone/short.wav", max_seconds = 60 }} }}]
category = "urgent"

[[route]]
name = "tous"
steps = [{{ voicemail = {{ prompt = "tone/short.wav", max_seconds = 60 }} }}]
"#
    )
}

/// A setup with ACME's plan and `[smtp]` pointing at `smtp_port` (nothing listens there
/// until the test starts the SMTP server); retries every second or two.
fn setup(digest: &str, smtp_port: u16) -> Setup {
    let setup = Setup::new(&[("acme.toml", &plan(digest))]);
    write_tone(&setup.dir.path().join("sounds/tone/short.wav"), 600.0, 0.5);
    write_tone_pcap(&setup.dir.path().join("tone.pcap"), 1000.0, 3.0);
    setup.add_config_lines(
        "smtp",
        &format!(
            "server = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\nfrom = \"Permanence <permanence@secretariat.example>\""
        ),
    );
    setup.add_config_lines("delivery", "retry_first_seconds = 1\nretry_max_seconds = 2");
    setup
}

/// A real SMTP server (aiosmtpd) on 127.0.0.1:`port`, saving messages under `dir`.
struct Smtp {
    child: Child,
}

impl Smtp {
    fn start(port: u16, dir: &Path) -> Smtp {
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "smtp_sink.Save"])
            .arg(dir)
            .env("PYTHONPATH", repo().join("tests"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's python3-aiosmtpd is installed (tests/run.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Smtp { child }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as the SMTP server took it: the envelope and the parsed MIME.
#[derive(Debug)]
struct Mail {
    to: Vec<String>,
    accepted: f64,
    message: serde_json::Value,
}

impl Mail {
    fn subject(&self) -> &str {
        self.message["subject"].as_str().unwrap_or("")
    }

    fn part(&self, content_type: &str) -> &serde_json::Value {
        self.message["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["type"] == content_type)
            .unwrap_or_else(|| panic!("no {content_type} part: {:#}", self.message))
    }

    fn text(&self) -> &str {
        self.part("text/plain")["text"].as_str().unwrap()
    }

    fn header_names(&self) -> Vec<String> {
        self.message["raw_header_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_ascii_lowercase())
            .collect()
    }
}

/// Every message saved under `dir`, in the order they were accepted.
fn mails(dir: &Path) -> Vec<Mail> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|x| x == "eml"));
    let mut mails: Vec<Mail> = files
        .iter()
        .map(|eml| {
            let envelope: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(eml.with_extension("json")).unwrap())
                    .unwrap();
            let out = Command::new("/usr/bin/python3")
                .arg(repo().join("tests/smtp_sink.py"))
                .arg(eml)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            Mail {
                to: envelope["to"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect(),
                accepted: envelope["accepted"].as_f64().unwrap(),
                message: serde_json::from_slice(&out.stdout).unwrap(),
            }
        })
        .collect();
    mails.sort_by(|a, b| a.accepted.total_cmp(&b.accepted));
    mails
}

/// Waits until `dir` holds `n` messages (or the deadline), then returns them all.
fn wait_mails(dir: &Path, n: usize, within: Duration) -> Vec<Mail> {
    let deadline = Instant::now() + within;
    loop {
        let count = std::fs::read_dir(dir)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
                })
                .count()
            })
            .unwrap_or(0);
        if count >= n || Instant::now() > deadline {
            return mails(dir);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A caller leaving a 3 s voicemail at ACME.
fn voicemail(setup: &Setup, caller: &str) {
    let tone = setup.dir.path().join("tone.pcap").display().to_string();
    let out = sipp(
        "voicemail_hangup.xml",
        setup.addr(),
        &[
            "-s",
            ACME,
            "-key",
            "caller",
            caller,
            "-key",
            "rtp_port",
            "9",
            "-key",
            "offer",
            "0 101",
            "-key",
            "audio_pcap",
            &tone,
        ],
    );
    assert_sipp_ok(&out);
}

/// (channel, status, attempts) of every outbox row, oldest first.
fn outbox(setup: &Setup) -> Vec<(String, String, i64)> {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let mut stmt = conn
        .prepare("SELECT channel, status, attempts FROM outbox ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn an_urgent_voicemail_is_emailed_at_once_with_both_parts_and_the_recording() {
    let smtp_port = free_port();
    let setup = setup("digest 18:30", smtp_port);
    let inbox = setup.dir.path().join("smtp");
    let _smtp = Smtp::start(smtp_port, &inbox);
    let server = setup.start();

    voicemail(&setup, VIP);
    let mail = wait_mails(&inbox, 1, Duration::from_secs(30));
    assert_eq!(mail.len(), 1, "one e-mail:\n{}", server.log());
    let mail = &mail[0];
    assert_eq!(
        mail.subject(),
        "[ACME Plomberie] URGENT – Syndic Martin (+33 6 22 22 22 22)"
    );
    assert_eq!(mail.to, ["marie@acme.example"]);
    let text = mail.text();
    for needle in [
        "Pour: Marie Durand",
        "De la part de: Syndic Martin +33 6 22 22 22 22",
        "Issue: message vocal",
        "Parcours: clients VIP",
        "(Europe/Paris)",
        "Message vocal: joint (call-1.wav, 0:0",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    let html = mail.part("text/html")["text"].as_str().unwrap();
    assert!(
        html.contains("<th align=\"left\" valign=\"top\">Pour</th><td>Marie Durand</td>"),
        "{html}"
    );
    let wav = mail.part("audio/wav");
    assert_eq!(wav["filename"], "call-1.wav");
    assert_eq!(wav["head"], "RIFF");
    let (_, recording, ms, _) = message_of(&setup, 1);
    let size = std::fs::metadata(recording.unwrap()).unwrap().len();
    assert_eq!(wav["size"].as_u64(), Some(size), "the whole recording");
    assert!(ms.unwrap() > 2000);
    assert_eq!(outbox(&setup), [("email".into(), "sent".into(), 1)]);

    // A contact name that tries to add a header: the e-mail carries it as text only.
    voicemail(&setup, EVIL);
    let mails = wait_mails(&inbox, 2, Duration::from_secs(30));
    assert_eq!(mails.len(), 2);
    let evil = &mails[1];
    assert_eq!(
        evil.to,
        ["marie@acme.example"],
        "no one else in the envelope"
    );
    let names = evil.header_names();
    assert!(!names.iter().any(|n| n == "bcc" || n == "cc"), "{names:?}");
    assert_eq!(
        evil.subject(),
        "[ACME Plomberie] URGENT – Syndic Bcc: x@evil.example (+33 6 33 33 33 33)"
    );
    assert!(
        evil.text()
            .contains("De la part de: Syndic Bcc: x@evil.example")
    );
    // Nothing more comes: each message was sent once.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(mails_count(&inbox), 2);
}

fn mails_count(dir: &Path) -> usize {
    mails(dir).len()
}

#[test]
fn a_normal_message_waits_for_the_daily_summary() {
    // The summary a few seconds from now, in the company's time zone (seconds are
    // allowed in the plan for this).
    let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let due = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(35);
    let local = paris.to_datetime(due).strftime("%H:%M:%S").to_string();
    let smtp_port = free_port();
    let setup = setup(&format!("digest {local}"), smtp_port);
    let inbox = setup.dir.path().join("smtp");
    let _smtp = Smtp::start(smtp_port, &inbox);
    let server = setup.start();
    // ACME's follow-ups, as the console leaves them: an invoice still to chase, overdue,
    // and a callback done an hour ago with its outcome.
    {
        let conn = rusqlite::Connection::open(setup.db()).unwrap();
        let hour_ago = format!(
            "{:.3}",
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)
        );
        conn.execute(
            "INSERT INTO tasks (id, company, kind, status, customer, amount_cents, invoice, due, outcome,
                created_by, created_at, updated_by, updated_at, done_at)
             VALUES (1, 'acme', 'invoice', 'open', 'Dupont SA', 120000, 'F-101', '2020-01-31', '',
                     'alice', ?1, 'alice', ?1, NULL),
                    (2, 'acme', 'callback', 'done', 'Mme Lefèvre', NULL, NULL, NULL, 'Rappelée : RDV mardi',
                     'alice', ?1, 'alice', ?1, ?1)",
            [hour_ago],
        )
        .unwrap();
    }

    // One after the other (SIPp processes started together can pick the same ports).
    for caller in [OTHER, "+33655555555"] {
        voicemail(&setup, caller);
    }
    let held = || {
        outbox(&setup)
            .iter()
            .filter(|(c, s, _)| c == "digest" && s == "held")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while held() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(held(), 2, "{:?}\n{}", outbox(&setup), server.log());
    assert!(
        jiff::Timestamp::now() < due,
        "the calls took longer than the summary's delay"
    );
    assert_eq!(mails_count(&inbox), 0, "nothing before the summary's time");

    let mails = wait_mails(&inbox, 1, Duration::from_secs(40));
    assert_eq!(mails.len(), 1, "{}", server.log());
    let sent_at = mails[0].accepted;
    assert!(
        sent_at >= due.as_millisecond() as f64 / 1000.0 - 1.0,
        "not before its time"
    );
    let summary = &mails[0];
    assert!(
        summary.subject().starts_with("[ACME Plomberie] Résumé du ")
            && summary.subject().ends_with(" – 2 message(s)"),
        "{}",
        summary.subject()
    );
    let text = summary.text();
    assert!(text.contains("Message (2)"), "{text}");
    assert!(
        text.contains("+33 6 44 44 44 44") && text.contains("+33 6 55 55 55 55"),
        "{text}"
    );
    assert!(
        summary.part("text/html")["text"]
            .as_str()
            .unwrap()
            .contains("<h3>Message (2)</h3>")
    );
    // The company's follow-ups: what is open (overdue marked), what was finished since.
    assert!(
        text.contains("Suivis en cours (1)")
            && text.contains("Relance facture – Dupont SA – F-101 1200.00 – échéance 2020-01-31 [à faire] EN RETARD"),
        "{text}"
    );
    assert!(
        text.contains("Suivis terminés depuis le dernier résumé (1)")
            && text.contains("Rappel – Mme Lefèvre [fait] – Rappelée : RDV mardi"),
        "{text}"
    );
    let rows = outbox(&setup);
    assert_eq!(
        rows,
        [
            ("digest".into(), "digested".into(), 0),
            ("digest".into(), "digested".into(), 0),
            ("email".into(), "sent".into(), 1),
        ]
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(mails_count(&inbox), 1, "one summary");
}

#[test]
fn e_mails_wait_for_a_server_that_is_down_and_arrive_once_across_a_restart() {
    let smtp_port = free_port();
    let setup = setup("digest 18:30", smtp_port);
    let inbox = setup.dir.path().join("smtp");
    let mut server = setup.start();

    // Three urgent voicemails while nothing listens on the SMTP port. One after the other:
    // SIPp processes started together can pick the same free ports (it binds its media
    // port and the one two above).
    for caller in ["+33622222222", "+33633333333", "+33622222222"] {
        voicemail(&setup, caller);
    }
    let tried = || {
        outbox(&setup)
            .iter()
            .filter(|(_, s, a)| s == "pending" && *a >= 1)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tried() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(tried(), 3, "{:?}\n{}", outbox(&setup), server.log());
    assert!(server.log().contains("deliveries: failed; will retry"));

    // Restarted while they wait; then the SMTP server comes up.
    assert!(server.terminate().success());
    let server = setup.start();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(mails_count(&inbox), 0);
    let _smtp = Smtp::start(smtp_port, &inbox);
    let mails = wait_mails(&inbox, 3, Duration::from_secs(30));
    assert_eq!(mails.len(), 3, "{}", server.log());
    std::thread::sleep(Duration::from_secs(4));
    let mails = mails_count(&inbox);
    assert_eq!(mails, 3, "each once");
    let rows = outbox(&setup);
    assert!(
        rows.iter()
            .all(|(c, s, a)| c == "email" && s == "sent" && *a >= 2),
        "{rows:?}"
    );
}

#[test]
fn a_message_a_secretary_saves_is_emailed_and_an_edit_sends_again_only_for_a_new_category() {
    use common::web::{JSON, http, login};
    let steps = r#"[{ secretary = { timeout = 10 } }, { play = "tone/a.wav" }, { hangup = {} }]"#;
    let (setup, web) = common::web::setup(steps);
    let plan = common::plan("acme", ACME, steps).replace(
        "[[route]]",
        "[executives.marie]\nname = \"Marie Durand\"\nreach = [\"sip:marie@192.0.2.1\"]\nemail = \"marie@acme.example\"\n\
         deliver = [{ category = \"urgent\", to = [\"email\"], when = \"now\" }, { category = \"normal\", to = [\"email\"], when = \"digest 03:00\" }]\n\n\
         [card]\nfields = [{ name = \"address\", label = \"Adresse de l'intervention\", required = true }]\n\n[[route]]",
    );
    std::fs::write(setup.dir.path().join("dialplans/acme.toml"), plan).unwrap();
    let smtp_port = free_port();
    setup.add_config_lines(
        "smtp",
        &format!("server = \"localhost\"\nport = {smtp_port}\nsecurity = \"none\"\nfrom = \"permanence@secretariat.example\""),
    );
    let inbox = setup.dir.path().join("smtp");
    let _smtp = Smtp::start(smtp_port, &inbox);
    let server = setup.start();
    let (_, cookie, _) = login(web, "alice", "alice");
    let session = cookie.unwrap().split(';').next().unwrap().to_string();

    // Alice's phone takes a call and talks 2 s.
    let (_rtp, rtp_port) = rtp_socket();
    let port = register_phone_port(setup.addr(), "alice", "alice");
    let mut phone = sipp_phone(
        "queue_secretary.xml",
        port,
        &[
            "-key", "username", "alice", "-key", "rtp_port", &rtp_port, "-key", "offer", "0", "-d",
            "2000",
        ],
    );
    wait_sipp_phone_ready(&mut phone, port);
    assert_sipp_ok(&sipp_call(
        "call.xml",
        setup.addr(),
        ACME,
        &rtp_port,
        "0",
        &[],
    ));
    assert_sipp_ok(&finish(phone));
    let call = setup.wait_calls(|c| c.len() == 1 && c[0].ended)[0].id;
    assert!(mails(&inbox).is_empty(), "nothing she has not written");

    let form = |name: &str, category: &str| {
        format!(
            "{{\"caller_name\":\"{name}\",\"callback\":\"+33 6 12 34 56 78\",\"about\":\"Fuite <b>au 3e</b>\",\
             \"category\":\"{category}\",\"fields\":{{\"address\":\"3 rue des Lilas\"}}}}"
        )
    };
    let save = |body: &str| {
        http(
            web,
            "POST",
            &format!("/api/messages/{call}"),
            &[JSON, ("Cookie", &session)],
            body,
        )
        .0
    };
    // A line break in a name never gets that far.
    assert_eq!(save(&form("Jean\\r\\nBcc: x@evil.example", "urgent")), 422);
    assert_eq!(save(&form("Jean <Dupont>", "urgent")), 200);
    let mail = wait_mails(&inbox, 1, Duration::from_secs(20));
    assert_eq!(mail.len(), 1, "{}", server.log());
    assert_eq!(
        mail[0].subject(),
        "[acme company] URGENT – Jean <Dupont> (+33 6 12 34 56 78)"
    );
    let text = mail[0].text();
    for needle in [
        "Objet: Fuite <b>au 3e</b>",
        "Adresse de l'intervention: 3 rue des Lilas",
        "Rappeler au: +33 6 12 34 56 78",
        "Message écrit par: alice",
        "Pris par: alice",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    let html = mail[0].part("text/html")["text"].as_str().unwrap();
    assert!(
        html.contains("Jean &lt;Dupont&gt;") && html.contains("Fuite &lt;b&gt;au 3e&lt;/b&gt;"),
        "{html}"
    );
    assert!(!html.contains("<b>au 3e"));
    // The e-mail links to Marie's page for this message, and the link opens it.
    let prefix = format!("http://{web}/x/");
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no link to the executive's page in:\n{text}"));
    assert!(link.ends_with(&format!("/messages/{call}")), "{link}");
    let (status, _, page) = http(web, "GET", &link[prefix.len() - 3..], &[], "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("3 rue des Lilas"), "{page}");

    // Saved again as urgent: nothing new. Re-filed as normal: a line for the summary, no
    // e-mail now.
    assert_eq!(save(&form("Jean Dupont", "urgent")), 200);
    assert_eq!(save(&form("Jean Dupont", "normal")), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while outbox(&setup).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        outbox(&setup),
        [
            ("email".into(), "sent".into(), 1),
            ("digest".into(), "held".into(), 0)
        ]
    );
    assert_eq!(mails_count(&inbox), 1);

    // The operator's view.
    let out = Command::new(BIN)
        .args(["deliveries", "--json", "--config"])
        .arg(setup.config())
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["status"], "sent");
    assert_eq!(rows[1]["target"], "marie@acme.example");
    assert_eq!(rows[0]["status"], "held");
}

#[test]
fn a_delivery_given_up_is_listed_and_retried_by_hand() {
    let smtp_port = free_port();
    let setup = setup("digest 18:30", smtp_port);
    setup.add_config_lines("delivery", "give_up_hours = 1");
    let inbox = setup.dir.path().join("smtp");
    let server = setup.start();
    voicemail(&setup, VIP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !outbox(&setup).iter().any(|(_, _, a)| *a >= 1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its window ran out (moved back by hand: a day is too long for a test).
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    conn.execute(
        "UPDATE outbox SET retry_since = '2000-01-01T00:00:00.000Z'",
        [],
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while outbox(&setup)[0].1 != "failed" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(outbox(&setup)[0].1, "failed", "{}", server.log());
    assert!(server.log().contains("deliveries: given up"));

    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("deliveries")
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
    };
    let (ok, list, _) = cli(&["--failed"]);
    assert!(ok);
    assert!(
        list.contains("failed") && list.contains("marie@acme.example"),
        "{list}"
    );
    assert!(
        list.contains("Connection refused") || list.contains("connection"),
        "{list}"
    );
    let (ok, _, err) = cli(&["retry", "99"]);
    assert!(!ok && err.contains("no failed delivery 99"), "{err}");

    let _smtp = Smtp::start(smtp_port, &inbox);
    let (ok, said, _) = cli(&["retry", "1"]);
    assert!(ok, "{said}");
    assert!(said.contains("queued again"), "{said}");
    let mails = wait_mails(&inbox, 1, Duration::from_secs(20));
    assert_eq!(
        mails.len(),
        1,
        "the running server sent it:\n{}",
        server.log()
    );
    let (_, list, _) = cli(&[]);
    assert!(list.contains(" sent "), "{list}");
}

/// One POST a webhook receiver got: its `webhook-id`, whether its signature verified, its
/// body.
#[derive(Debug, Clone)]
struct Posted {
    id: String,
    verified: bool,
    body: serde_json::Value,
}

/// A webhook receiver on loopback: reads each request, verifies its Standard Webhooks
/// signature with `secret`, and answers 500 to the first `failures` requests, 200 after.
fn webhook_receiver(
    secret: &str,
    failures: usize,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Posted>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/permanence", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (log, secret) = (std::sync::Arc::clone(&seen), secret.to_string());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
            }
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let mut body = vec![0; header("content-length").parse().unwrap_or(0)];
            reader.read_exact(&mut body).unwrap();
            let verified = permanence::delivery::webhook::verify(
                &secret,
                &header("webhook-id"),
                &header("webhook-timestamp"),
                &header("webhook-signature"),
                &body,
                jiff::Timestamp::now(),
            )
            .is_ok();
            let n = {
                let mut log = log.lock().unwrap();
                log.push(Posted {
                    id: header("webhook-id"),
                    verified,
                    body: serde_json::from_slice(&body).unwrap_or_default(),
                });
                log.len()
            };
            let status = if n <= failures {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (url, seen)
}

#[test]
fn a_webhook_that_fails_twice_is_tried_three_times_and_delivered_once() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (url, seen) = webhook_receiver(secret, 2);
    let smtp_port = free_port();
    let setup = setup("digest 18:30", smtp_port);
    let plan = plan("digest 18:30").replace(
        r#"{ category = "urgent", to = ["email"], when = "now" }"#,
        r#"{ category = "urgent", to = ["webhook"], when = "now" }"#,
    );
    std::fs::write(setup.dir.path().join("dialplans/acme.toml"), plan).unwrap();
    std::fs::write(
        setup.config(),
        std::fs::read_to_string(setup.config()).unwrap()
            + &format!(
                "\n[[webhooks]]\nurl = \"{url}\"\nsecret = \"{secret}\"\ncompany = \"acme\"\n"
            ),
    )
    .unwrap();
    let server = setup.start();

    voicemail(&setup, VIP);
    let deadline = Instant::now() + Duration::from_secs(30);
    while outbox(&setup).first().is_none_or(|(_, s, _)| s != "sent") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        outbox(&setup),
        [("webhook".into(), "sent".into(), 3)],
        "{}",
        server.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "three attempts, then no more: {seen:?}");
    assert!(
        seen.iter().all(|p| p.verified),
        "every attempt signed: {seen:?}"
    );
    let id = &seen[0].id;
    assert!(id.starts_with("message:1:urgent:marie"), "{id}");
    assert!(seen.iter().all(|p| &p.id == id), "one idempotency key");
    let body = &seen[2].body;
    assert_eq!(body["company"]["name"], "ACME Plomberie");
    assert_eq!(body["message"]["caller_name"], "Syndic Martin");
    assert_eq!(body["message"]["category"], "urgent");
    assert_eq!(body["call"]["outcome"], "voicemail");
}
