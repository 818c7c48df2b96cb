//! Every shell command that README.md and docs/*.md show is run here, as written, against a
//! copy of the shipped demo (config/, dialplans/, sounds/), and what the text says it does is
//! checked. A command the docs gain without a check here fails the test: a doc example that
//! does not work is a bug.
//!
//! `cargo run --release -- ARGS` is run as `permanence ARGS` with the binary this suite built
//! (the same program; a second, release build would only cost minutes). Commands run with
//! `bash -c` in the demo copy, so quoting, pipes and relative paths are the reader's.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, repo};

/// One command from a ```sh block, continuation lines joined, comment dropped.
#[derive(Debug)]
struct Documented {
    file: &'static str,
    command: String,
}

fn documented(file: &'static str) -> Vec<Documented> {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && trimmed == "```sh";
            continue;
        }
        if !in_sh || trimmed.is_empty() {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let command = strip_comment(&pending)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        commands.push(Documented { file, command });
        pending.clear();
    }
    commands
}

/// Drops a trailing `# comment` that is outside quotes.
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && (i == 0 || line[..i].ends_with(' ')) => {
                return line[..i].trim_end();
            }
            _ => {}
        }
    }
    line
}

/// A copy of the shipped demo where the documented commands run, with `permanence` on PATH.
struct Demo {
    dir: tempfile::TempDir,
    server: Option<Child>,
}

impl Demo {
    fn new() -> Demo {
        let dir = tempfile::TempDir::new().unwrap();
        for sub in ["config", "dialplans", "sounds", "tests/scenarios"] {
            copy_dir(&repo().join(sub), &dir.path().join(sub));
        }
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(BIN, bin.join("permanence")).unwrap();
        Demo { dir, server: None }
    }

    fn command(&self, line: &str) -> Command {
        let line = line.replace("cargo run --release -- ", "permanence ");
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &line])
            .current_dir(self.dir.path())
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.dir.path().join("bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("RUST_LOG", "warn");
        cmd
    }

    fn run(&self, line: &str) -> (Output, String) {
        let out = self.command(line).stdin(Stdio::null()).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`{line}` failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        (out, stdout)
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("data/permanence.db")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Runs one documented command and checks what the docs say of it.
fn check(demo: &mut Demo, doc: &Documented) {
    let c = doc.command.as_str();
    match c {
        "cargo run --release -- serve" => {
            // The demo config listens on 127.0.0.1:5060, UDP and TCP, and keeps its records
            // in data/permanence.db.
            let child = demo
                .command(c)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            demo.server = Some(child);
            let addr = "127.0.0.1:5060".parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while common::options_status(addr) != Some(200) {
                assert!(
                    Instant::now() < deadline,
                    "the demo server answers OPTIONS on 127.0.0.1:5060 (is another server using that port?)"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(std::net::TcpStream::connect(addr).is_ok(), "TCP too");
            assert!(demo.db().exists(), "records in data/permanence.db");
        }
        "tests/run.sh" => {
            // This very suite; CI runs exactly it.
            let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
            assert!(ci.contains("bash tests/run.sh"), "{ci}");
        }
        _ if c.starts_with("sipp -sf tests/scenarios/call.xml") => {
            // A silent caller to ACME: whatever the hour, the server hangs up within a
            // minute and the call is a missed call (`no-message`), in the inbox.
            let started = Instant::now();
            demo.run(c);
            assert!(started.elapsed() < Duration::from_secs(90));
            // The row is completed by the writer thread just after the BYE.
            let conn = rusqlite::Connection::open(demo.db()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            let ended = loop {
                let row: (String, Option<String>) = conn
                    .query_row(
                        "SELECT company, outcome FROM calls ORDER BY id DESC LIMIT 1",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .unwrap();
                if row.1.is_some() || Instant::now() > deadline {
                    break row;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            assert_eq!(ended, ("acme".to_string(), Some("no-message".to_string())));
        }
        "cargo run --release -- messages" => {
            let (_, out) = demo.run(c);
            assert!(
                out.lines().next().unwrap_or("").contains("CATEGORY"),
                "{out}"
            );
            let row = out
                .lines()
                .nth(1)
                .unwrap_or_else(|| panic!("the missed call: {out}"));
            for want in ["acme", "+33612345678", "new", "no-message"] {
                assert!(row.contains(want), "{want} in {row}");
            }
        }
        "cargo run --release -- messages --all" => {
            let (_, out) = demo.run(c);
            assert!(out.lines().count() >= 2, "{out}");
        }
        _ if c.starts_with("cargo run --release -- messages --company acme --category urgent") => {
            let (_, out) = demo.run(c);
            assert!(
                out.lines().next().unwrap_or("").contains("CATEGORY"),
                "{out}"
            );
            assert!(
                out.lines()
                    .skip(1)
                    .all(|l| l.contains("acme") && l.contains("urgent")),
                "{out}"
            );
        }
        "cargo run --release -- messages show 1" => {
            let (_, out) = demo.run(c);
            for want in ["+33612345678", "recording-stopped", "no-speech", "bye-sent"] {
                assert!(out.contains(want), "{want} in the timeline:\n{out}");
            }
        }
        "cargo run --release -- messages mark 1 done" => {
            let (_, out) = demo.run(c);
            assert_eq!(out.trim(), "message 1: done");
        }
        "cargo run --release -- messages --json" => {
            let (_, out) = demo.run(c);
            let rows = json_lines(&out);
            assert_eq!(rows[0]["id"], 1, "{out}");
            assert_eq!(rows[0]["status"], "done", "marked just before: {out}");
        }
        "cargo run --release -- calls" => {
            let (_, out) = demo.run(c);
            assert!(
                out.lines().next().unwrap_or("").contains("OUTCOME"),
                "{out}"
            );
            assert!(
                out.lines().nth(1).is_some_and(|l| l.contains("acme")),
                "{out}"
            );
        }
        "cargo run --release -- calls --json" => {
            let (_, out) = demo.run(c);
            let rows = json_lines(&out);
            assert_eq!(
                (rows[0]["company"].as_str(), rows[0]["outcome"].as_str()),
                (Some("acme"), Some("no-message"))
            );
        }
        "cargo run --release -- check" | "permanence check" => {
            let (_, out) = demo.run(c);
            assert_eq!(out.trim(), "ok: 2 companies in 2 files");
        }
        "permanence check dialplans/acme.toml new.toml" => {
            // "these files together": a new company's plan, checked beside ACME's.
            let new = std::fs::read_to_string(demo.dir.path().join("dialplans/globex.toml"))
                .unwrap()
                .replace("id = \"globex\"", "id = \"bravo\"")
                .replace("+33180000002", "+33180000003");
            std::fs::write(demo.dir.path().join("new.toml"), new).unwrap();
            let (_, out) = demo.run(c);
            assert_eq!(out.trim(), "ok: 2 companies in 2 files");
        }
        _ if c.ends_with(
            "simulate --company acme --from +33612345678 --at \"2026-12-25 10:30\" --digits 2",
        ) =>
        {
            // Christmas: closed; key 2 at the menu takes a message.
            let (_, out) = demo.run(c);
            assert!(out.contains("closed: public holiday (Noël)"), "{out}");
            assert!(out.contains("route `fermé`: MATCHES"), "{out}");
            assert!(out.contains("caller presses 2"), "{out}");
            assert!(out.trim_end().ends_with("outcome: voicemail"), "{out}");
        }
        "permanence simulate --company acme --from 0622222222 --secretaries none --executive no-answer" =>
        {
            // A VIP in national form; nobody answers: voicemail.
            let (_, out) = demo.run(c);
            assert!(
                out.contains("caller is the contact \"Syndic Martin\""),
                "{out}"
            );
            assert!(out.contains("route `clients VIP`: MATCHES"), "{out}");
            assert!(out.trim_end().ends_with("outcome: voicemail"), "{out}");
        }
        _ if c.starts_with("curl -s http://127.0.0.1:9090/metrics") => {
            // The demo serves metrics; the call placed above is counted.
            let (_, out) = demo.run(c);
            assert!(
                out.contains("# TYPE permanence_calls_total counter"),
                "{out}"
            );
            assert!(
                out.contains("permanence_calls_total{company=\"acme\",outcome=\"no-message\"} 1"),
                "{out}"
            );
            assert!(out.contains("permanence_store_writing 1"), "{out}");
        }
        "permanence queue" => {
            // Nobody calls the demo while this runs: nobody waits.
            let (_, out) = demo.run(c);
            assert_eq!(out.trim(), "nobody is waiting");
        }
        "permanence simulate --company acme --at \"2026-12-02 10:00\" --secretaries busy --free-after 12" =>
        {
            // Office hours, everyone busy: the caller queues (answered by the greeting,
            // so with music) and is served when a secretary frees up 12 s later.
            let (_, out) = demo.run(c);
            assert!(
                out.contains("everyone is busy: the caller waits in the queue with hold music"),
                "{out}"
            );
            assert!(out.contains("a secretary frees up after 12 s"), "{out}");
            assert!(out.trim_end().ends_with("outcome: secretary"), "{out}");
        }
        _ if c.contains("http://127.0.0.1:8080/api/login") => {
            // The demo's alice logs in to the console.
            let (_, out) = demo.run(c);
            assert!(out.contains("\"username\":\"alice\""), "{out}");
            assert!(
                std::fs::read_to_string(demo.dir.path().join("cookies.txt"))
                    .unwrap()
                    .contains("permanence_session"),
                "the session cookie is kept"
            );
        }
        "permanence token create --username alice --label \"agenda sync\" > token.txt" => {
            // A token for alice, printed once; the curl after it uses it.
            let (_, _) = demo.run(c);
            let token = std::fs::read_to_string(demo.dir.path().join("token.txt")).unwrap();
            assert!(token.trim().starts_with("pmt_"), "{token}");
        }
        "permanence token list" => {
            let (_, out) = demo.run(c);
            assert!(
                out.lines().any(|l| l.contains("alice")
                    && l.contains("live")
                    && l.contains("agenda sync")),
                "{out}"
            );
        }
        _ if c.contains("http://127.0.0.1:8080/api/board") => {
            // With the cookie: the board, alice among the secretaries.
            let (_, out) = demo.run(c);
            let board: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(board["me"], "alice", "{out}");
            assert!(out.contains("\"seats\""), "{out}");
        }
        "cargo run --release -- bans" => {
            // Nobody was banned in the demo: the table's header alone.
            let (_, out) = demo.run(c);
            assert!(out.starts_with("AT (UTC)"), "{out}");
            assert_eq!(out.lines().count(), 1, "{out}");
        }
        _ if c.starts_with("sqlite3 data/permanence.db") => {
            let (_, out) = demo.run(c);
            assert!(out.lines().any(|l| l.contains("bye-sent")), "{out}");
        }
        _ if c.contains("hash-password --username bob") => {
            let (_, out) = demo.run(c);
            let md5 = permanence::auth::ha1(
                permanence::auth::Algorithm::Md5,
                "bob",
                "permanence",
                "their password",
            );
            assert!(out.contains("username = \"bob\""), "{out}");
            assert!(out.contains(&format!("ha1_md5 = \"{md5}\"")), "{out}");
        }
        "cargo run --release -- blocked add acme 0699887766 --reason \"démarchage insistant\"" => {
            // The national form is read in ACME's country and stored in E.164.
            let (_, out) = demo.run(c);
            assert!(out.contains("acme: +33699887766 blocked (id "), "{out}");
        }
        "cargo run --release -- blocked list" => {
            let (_, out) = demo.run(c);
            assert!(out.lines().next().unwrap_or("").contains("REASON"), "{out}");
            let row = out
                .lines()
                .nth(1)
                .unwrap_or_else(|| panic!("the block: {out}"));
            for want in ["acme", "+33699887766", "cli", "démarchage insistant"] {
                assert!(row.contains(want), "{want} in {row}");
            }
        }
        "cargo run --release -- blocked remove acme 0699887766" => {
            let (_, out) = demo.run(c);
            assert!(
                out.contains("acme: +33699887766 no longer blocked"),
                "{out}"
            );
            let (_, list) = demo.run("permanence blocked list --all --json");
            let rows = json_lines(&list);
            assert_eq!(
                rows[0]["removed_by"], "cli",
                "the lifted block is kept: {list}"
            );
        }
        "cargo run --release -- executive-links create --executive marie" => {
            // Without [web] public_url, the demo's link starts with the console's address.
            let (_, out) = demo.run(c);
            assert!(out.trim().starts_with("http://127.0.0.1:8080/x/"), "{out}");
        }
        _ if c.contains("executive-links create --executive marie)\"") => {
            // The link opens marie's page on the running demo.
            let (_, out) = demo.run(c);
            assert_eq!(out.trim(), "<h1>Marie Durand</h1>");
        }
        "cargo run --release -- executive-links revoke --executive marie" => {
            let (_, out) = demo.run(c);
            assert_eq!(
                out.trim(),
                "links to marie's page made until now no longer open it"
            );
        }
        "cargo run --release -- agenda --executive marie --day 2030-12-02" => {
            // Marie's demo agenda on a Monday: nothing booked, her slots free.
            let (_, out) = demo.run(c);
            assert!(
                out.starts_with(
                    "Marie Durand (marie) · ACME Plomberie · 2030-12-02 (Europe/Paris)"
                ),
                "{out}"
            );
            assert!(out.contains("no appointments"), "{out}");
            assert!(
                out.contains("free: 09:00 09:40 10:20 11:00 14:00 14:40 15:20 16:00 16:40"),
                "{out}"
            );
        }
        "cargo run --release -- agenda --executive marie --feed" => {
            // The feed's address answers a calendar on the running demo.
            let (_, out) = demo.run(c);
            let url = out.trim();
            assert!(url.starts_with("http://127.0.0.1:8080/ics/"), "{out}");
            let (_, feed) = demo.run(&format!("curl -s {url}"));
            assert!(feed.starts_with("BEGIN:VCALENDAR"), "{feed}");
        }
        "cargo run --release -- deliveries" => {
            // The outbox as a table (the demo has no [smtp]: whatever the calls above left
            // waits there).
            let (_, out) = demo.run(c);
            let header = out.lines().next().unwrap_or("");
            for column in ["ID", "STATUS", "CHANNEL", "TO", "LAST ERROR"] {
                assert!(header.contains(column), "{column} in {out}");
            }
        }
        "cargo run --release -- deliveries --failed --json" => {
            let (_, out) = demo.run(c);
            for row in json_lines(&out) {
                assert_eq!(row["status"], "failed", "{out}");
            }
        }
        "cargo run --release -- deliveries retry 12" => {
            // The demo has no failed delivery 12: refused, saying what was expected.
            let out = demo.command(c).stdin(Stdio::null()).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{err}");
            assert!(
                err.contains(
                    "no failed delivery 12; expected an id from `permanence deliveries --failed`"
                ),
                "{err}"
            );
        }
        _ if c.starts_with("cargo run --release -- report --company acme --month") => {
            // This month's figures for ACME as CSV: the demo's calls so far are in it (the
            // SIPp caller above left a missed call).
            let (_, out) = demo.run(c);
            let mut lines = out.lines();
            assert_eq!(lines.next(), Some("company,month,item,value"), "{out}");
            let value = |item: &str| -> u64 {
                out.lines()
                    .find_map(|l| {
                        let mut f = l.split(',');
                        (f.next() == Some("acme") && f.nth(1) == Some(item))
                            .then(|| f.next().and_then(|v| v.parse().ok()))
                            .flatten()
                    })
                    .unwrap_or_else(|| panic!("no {item}: {out}"))
            };
            assert!(value("calls") >= 1, "{out}");
            assert!(value("outcome:no-message") >= 1, "{out}");
            assert!(out.contains(",appointments,"), "{out}");
        }
        _ => panic!(
            "{}: `{c}` has no check in tests/docs.rs: say there what it must do",
            doc.file
        ),
    }
}

#[test]
fn every_command_in_the_readme_and_docs_does_what_the_text_says() {
    let mut files = vec!["README.md"];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    for d in docs {
        let name = format!("docs/{}", d.file_name().unwrap().to_string_lossy());
        files.push(Box::leak(name.into_boxed_str()));
    }
    let commands: Vec<Documented> = files.iter().flat_map(|f| documented(f)).collect();
    assert!(
        commands.len() >= 15,
        "the README's and docs' commands were found: {commands:#?}"
    );
    let mut demo = Demo::new();
    for doc in &commands {
        check(&mut demo, doc);
    }
}
