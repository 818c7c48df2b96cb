//! `permanence simulate` on the shipped demo plans: the route chosen, why, and the steps.

use std::process::Command;

fn simulate(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_permanence"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("simulate")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn christmas_is_closed_and_the_menu_choice_takes_a_message() {
    let out = simulate(&[
        "--company",
        "acme",
        "--from",
        "+33612345678",
        "--at",
        "2026-12-25 10:30",
        "--digits",
        "2",
    ]);
    assert!(out.contains("closed: public holiday (Noël)"), "{out}");
    assert!(out.contains("route `fermé`: MATCHES"), "{out}");
    assert!(out.contains("caller presses 2"), "{out}");
    assert!(
        out.contains("menu-choice {\"digit\":\"2\",\"list\":\"message\"}"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("outcome: voicemail"), "{out}");
}

#[test]
fn office_hours_without_secretaries_fall_through_to_voicemail() {
    let out = simulate(&[
        "--company",
        "acme",
        "--from",
        "0612345678",
        "--at",
        "2026-11-30 10:00",
        "--secretaries",
        "none",
    ]);
    assert!(out.contains("route `heures d'ouverture`: MATCHES"), "{out}");
    assert!(
        out.contains("office open at Mon 2026-11-30 10:00 (open: mon-fri 09:00-12:30)"),
        "{out}"
    );
    assert!(out.contains("no answer: next step"), "{out}");
    assert!(out.trim_end().ends_with("outcome: voicemail"), "{out}");
}

#[test]
fn a_vip_is_named_and_goes_to_the_executive() {
    let out = simulate(&[
        "--company",
        "acme",
        "--from",
        "+33622222222",
        "--at",
        "2026-11-30 20:00",
    ]);
    assert!(
        out.contains("caller is the contact \"Syndic Martin\""),
        "{out}"
    );
    assert!(out.contains("file the message as urgent"), "{out}");
    assert!(out.contains("transfer to executive marie"), "{out}");
    assert!(out.trim_end().ends_with("outcome: transferred"), "{out}");

    // At 22:00 Marie's hours (until 21:00) are over: the secretaries take the call.
    let late = simulate(&[
        "--company",
        "acme",
        "--from",
        "+33622222222",
        "--at",
        "2026-11-30 22:00",
    ]);
    assert!(late.contains("(executive-off-hours"), "{late}");
    assert!(!late.contains("transfer to executive"), "{late}");
    assert!(
        late.contains("offer to the company's secretaries"),
        "{late}"
    );
    assert!(late.trim_end().ends_with("outcome: secretary"), "{late}");
}

#[test]
fn menu_without_a_keypress_retries_then_falls_through() {
    let out = simulate(&[
        "--company",
        "acme",
        "--from",
        "+33612345678",
        "--at",
        "2026-11-29 10:00",
    ]);
    assert_eq!(
        out.matches("play acme/closed-menu.wav").count(),
        3,
        "prompt, then 2 retries: {out}"
    );
    assert_eq!(out.matches("play acme/invalid.wav").count(), 2, "{out}");
    assert!(out.contains("menu-failed"), "{out}");
}

#[test]
fn withheld_numbers_are_refused_at_globex() {
    let out = simulate(&["--company", "globex", "--from", "anonymous"]);
    assert!(out.contains("refuse with 486"), "{out}");
    assert!(out.trim_end().ends_with("outcome: rejected"), "{out}");
}

/// A line switched by hand, imagined: closed on a Monday morning (the hours say open),
/// open on a Sunday (they say closed), and no longer in force after its time.
#[test]
fn a_line_closed_or_open_by_hand_decides_instead_of_the_hours_until_its_time() {
    let monday = [
        "--company",
        "acme",
        "--from",
        "+33612345678",
        "--at",
        "2026-11-30 10:00",
        "--secretaries",
        "none",
    ];
    let closed = simulate(
        &[
            &monday[..],
            &[
                "--closed-until",
                "2026-11-30 14:00",
                "--line-reason",
                "dégât des eaux",
            ],
        ]
        .concat(),
    );
    assert!(
        closed.contains(
            "line closed until 2026-11-30 14:00, set by simulate: dégât des eaux (in force"
        ),
        "{closed}"
    );
    assert!(
        closed.contains(
            "office open at Mon 2026-11-30 10:00 (closed: line switched by hand until 2026-11-30 14:00 (dégât des eaux)): no"
        ),
        "{closed}"
    );
    assert!(closed.contains("route `fermé`: MATCHES"), "{closed}");
    assert!(
        closed.contains(
            "(line-override {\"by\":\"simulate\",\"reason\":\"dégât des eaux\",\"state\":\"closed\",\"until\":\"2026-11-30T13:00:00.000Z\"})"
        ),
        "{closed}"
    );

    let open = simulate(&[
        "--company",
        "acme",
        "--from",
        "+33612345678",
        "--at",
        "2026-11-29 19:00",
        "--open-until",
        "2026-11-29T21:00:00+01:00",
    ]);
    assert!(
        open.contains("route `heures d'ouverture`: MATCHES"),
        "{open}"
    );

    let over = simulate(&[&monday[..], &["--closed-until", "2026-11-30 09:30"]].concat());
    assert!(
        over.contains("(not in force at this time: the hours decide)"),
        "{over}"
    );
    assert!(
        over.contains("route `heures d'ouverture`: MATCHES"),
        "{over}"
    );
    assert!(!over.contains("line-override"), "{over}");

    let refused = Command::new(env!("CARGO_BIN_EXE_permanence"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["simulate", "--company", "acme", "--closed-until", "demain"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--closed-until `demain`"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// A reader that goes away (`permanence simulate … | head -c0`) ends the command quietly:
/// exit 0 and no panic message, not Rust's broken-pipe panic (exit 101).
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_permanence"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["simulate", "--company", "acme", "--from", "+33612345678"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close our end before the command has loaded the plans and written anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

mod common;

/// The decisions a call's timeline shows, in order, from the server's events.
fn server_decisions(setup: &common::Setup, call: i64) -> Vec<&'static str> {
    setup
        .events(call)
        .iter()
        .filter_map(|kind| match kind.as_str() {
            "executive-off-hours" => Some("off-hours"),
            "transfer" => Some("transfer"),
            "play" => Some("play"),
            "bye-sent" => Some("hang up"),
            _ => None,
        })
        .collect()
}

/// The same decisions, from `permanence simulate`'s lines.
fn simulated_decisions(out: &str) -> Vec<&'static str> {
    out.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let what = line.split_once("s  ").map_or(line, |(_, rest)| rest);
            if what.starts_with("(executive-off-hours") {
                Some("off-hours")
            } else if what.starts_with("transfer to") {
                Some("transfer")
            } else if what.starts_with("play ") {
                Some("play")
            } else if what.starts_with("hang up") {
                Some("hang up")
            } else {
                None
            }
        })
        .collect()
}

/// `simulate` and the server take an executive's hours through the same code: for an
/// executive in and out of hours right now, a real call's timeline and the simulation of the
/// same call at the same minute agree step by step, and on the outcome.
#[test]
fn simulate_and_the_server_agree_on_an_executives_hours() {
    let now = jiff::Timestamp::now();
    let today = jiff::tz::TimeZone::UTC.to_datetime(now).date();
    let tomorrow = today.tomorrow().unwrap();
    let day = |d: jiff::civil::Date| d.strftime("%a").to_string().to_lowercase();
    let dead = common::free_port();
    for (hours, expect_transfer) in [
        // Tomorrow noon: certainly not now.
        (format!("{} 12:00-13:00", day(tomorrow)), false),
        (format!("{} 00:00-24:00", day(today)), true),
    ] {
        let text = format!(
            "[company]\nid = \"acme\"\nname = \"ACME\"\nnumbers = [\"+33180000001\"]\ntimezone = \"UTC\"\n\
             [executives.marie]\nname = \"Marie\"\nreach = [\"sip:marie@127.0.0.1:{dead}\"]\nhours = [\"{hours}\"]\n\
             [[route]]\nname = \"main\"\n\
             steps = [{{ transfer = {{ to = \"marie\", timeout = 2 }} }}, {{ play = \"tone/a.wav\" }}, {{ hangup = {{}} }}]\n"
        );
        let setup = common::Setup::new(&[("acme.toml", &text)]);
        let server = setup.start();
        common::assert_sipp_ok(&common::sipp_call(
            "call.xml",
            setup.addr(),
            "+33180000001",
            "9",
            "0",
            &[],
        ));
        let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
        drop(server);
        let served = server_decisions(&setup, calls[0].id);

        let at = jiff::tz::TimeZone::UTC
            .to_datetime(now)
            .strftime("%Y-%m-%d %H:%M")
            .to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_permanence"))
            .args(["simulate", "--config"])
            .arg(setup.config())
            .args([
                "--company",
                "acme",
                "--from",
                "+33612345678",
                "--at",
                &at,
                "--executive",
                "no-answer",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = String::from_utf8_lossy(&out.stdout);
        let simulated = simulated_decisions(&out);

        assert_eq!(served, simulated, "hours {hours}:\n{out}");
        assert_eq!(
            served.contains(&"transfer"),
            expect_transfer,
            "hours {hours}: {served:?}"
        );
        assert_eq!(
            served.contains(&"off-hours"),
            !expect_transfer,
            "hours {hours}: {served:?}"
        );
        assert_eq!(
            format!("outcome: {}", calls[0].outcome.as_deref().unwrap_or("?")),
            out.trim_end().lines().last().unwrap_or_default(),
            "hours {hours}"
        );
    }
}

/// Everyone busy: the caller waits in the queue (with hold music, since the greeting
/// answered them), and either a secretary frees up in time or the wait runs out.
#[test]
fn with_everyone_busy_the_caller_queues_until_one_frees_up_or_the_wait_runs_out() {
    let at = [
        "--company",
        "acme",
        "--at",
        "2026-12-02 10:00",
        "--secretaries",
        "busy",
    ];
    let served = simulate(&[&at[..], &["--free-after", "12"]].concat());
    assert!(
        served.contains("8s  everyone is busy: the caller waits in the queue with hold music"),
        "{served}"
    );
    assert!(
        served.contains("20s  a secretary frees up after 12 s in the queue and is rung"),
        "{served}"
    );
    assert!(
        served.trim_end().ends_with("outcome: secretary"),
        "{served}"
    );

    let unserved = simulate(&at);
    assert!(
        unserved.contains("38s  the wait runs out after 30 s in the queue: next step"),
        "{unserved}"
    );
    assert!(
        unserved.trim_end().ends_with("outcome: voicemail"),
        "{unserved}"
    );
}

#[test]
fn an_executive_under_do_not_disturb_is_skipped_and_the_plan_goes_on() {
    let out = simulate(&[
        "--company",
        "acme",
        "--from",
        "+33622222222",
        "--at",
        "2026-11-30 20:00",
        "--executive",
        "dnd",
    ]);
    // 20:00 in Paris is 19:00 UTC; imagined for a day.
    assert!(
        out.contains(
            "transfer to marie skipped: do not disturb (executive-dnd {\"executive\":\"marie\",\"until\":\"2026-12-01T19:00:00.000Z\"})"
        ),
        "{out}"
    );
    assert!(!out.contains("transfer to executive marie"), "{out}");
    assert!(out.contains("offer to the company's secretaries"), "{out}");
    assert!(out.trim_end().ends_with("outcome: secretary"), "{out}");
}
