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
        "2026-11-30 22:00",
    ]);
    assert!(
        out.contains("caller is the contact \"Syndic Martin\""),
        "{out}"
    );
    assert!(out.contains("file the message as urgent"), "{out}");
    assert!(out.contains("transfer to executive marie"), "{out}");
    assert!(out.trim_end().ends_with("outcome: transferred"), "{out}");
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
