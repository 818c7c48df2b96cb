//! Golden tests of `permanence check`: each broken plan under tests/plans/broken gives
//! exactly the errors in its `.expected` file (file:line:column: what; what was expected).
//! After a deliberate change of wording, regenerate with
//! `permanence check --config tests/plans/permanence.toml tests/plans/broken/X.toml 2> tests/plans/broken/X.expected`
//! and read the diff.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_permanence");

fn check(target: &str) -> (bool, String) {
    let out = Command::new(BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check", "--config", "tests/plans/permanence.toml", target])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_broken_plan_is_refused_with_its_expected_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans/broken");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "expected"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 14, "the broken plans are all there");
    let mut failures = Vec::new();
    for expected_file in cases {
        let stem = expected_file
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let target = if dir.join(&stem).is_dir() {
            format!("tests/plans/broken/{stem}")
        } else {
            format!("tests/plans/broken/{stem}.toml")
        };
        let expected = std::fs::read_to_string(&expected_file).unwrap();
        let (ok, stderr) = check(&target);
        if ok {
            failures.push(format!("{target}: accepted"));
        } else if stderr != expected {
            failures.push(format!(
                "{target}:\n--- expected\n{expected}--- got\n{stderr}"
            ));
        }
        for line in expected.lines().skip(1) {
            assert!(
                line.trim_start().starts_with(&target),
                "each error names the file: {line}"
            );
            assert!(
                line.contains("expected"),
                "each error says what was expected: {line}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_shipped_demo_plans_pass_the_check() {
    let out = Command::new(BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 2 companies"));
}
