//! Reloading dial plans while calls are up.

mod common;

use std::time::{Duration, Instant};

use common::*;

const NUMBER: &str = "+33180000001";

fn plan_named(route: &str, steps: &str) -> String {
    plan("acme", NUMBER, steps).replace("name = \"main\"", &format!("name = \"{route}\""))
}

fn wait_reloads(setup: &Setup, n: usize) -> Vec<(String, String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = setup.reloads();
        if r.len() >= n || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn call(addr: std::net::SocketAddr, calls: &str) -> std::process::Output {
    sipp_call(
        "call.xml",
        addr,
        NUMBER,
        "9",
        "0",
        &["-m", calls, "-r", "10"],
    )
}

#[test]
fn a_reload_during_live_calls_drops_none_and_only_new_calls_use_the_new_plan() {
    let setup = Setup::new(&[(
        "acme.toml",
        &plan_named("v1", r#"[{ play = "tone/a.wav" }, { hangup = {} }]"#),
    )]);
    let server = setup.start();
    let plan_file = setup.dir.path().join("dialplans/acme.toml");

    // Three calls on v1, still playing their 3.5 s greeting when the plan changes.
    let live = {
        let addr = setup.addr();
        std::thread::spawn(move || call(addr, "3"))
    };
    let answered = setup.wait_calls(|c| c.len() == 3 && c.iter().all(|c| c.answered));
    assert_eq!(answered.len(), 3);
    std::fs::write(
        &plan_file,
        plan_named(
            "v2",
            r#"[{ ring = 1 }, { play = "tone/a.wav" }, { hangup = {} }]"#,
        ),
    )
    .unwrap();
    server.hangup_signal();
    let reloads = wait_reloads(&setup, 1);
    assert_eq!(reloads[0].1, "accepted", "{reloads:?}");
    assert!(
        reloads[0].2.contains("acme.toml"),
        "the changed file is recorded: {reloads:?}"
    );

    // A new call takes v2 while the old ones finish on v1.
    assert_sipp_ok(&call(setup.addr(), "1"));
    assert_sipp_ok(&live.join().unwrap());
    let calls = setup.wait_calls(|c| c.len() == 4 && c.iter().all(|c| c.ended));
    let routes: Vec<_> = calls
        .iter()
        .map(|c| {
            (
                c.route.clone().unwrap_or_default(),
                c.outcome.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        vec![
            ("v1".to_string(), "completed".to_string()),
            ("v1".to_string(), "completed".to_string()),
            ("v1".to_string(), "completed".to_string()),
            ("v2".to_string(), "completed".to_string()),
        ]
    );
    assert!(
        setup.events(calls[3].id).contains(&"ringing".to_string()),
        "the new call rang, as v2 says"
    );
    assert!(
        !setup.events(calls[0].id).contains(&"ringing".to_string()),
        "the old calls did not"
    );

    // An invalid plan is refused: v2 stays in force.
    std::fs::write(
        &plan_file,
        plan_named("v3", r#"[{ play = "tone/missing.wav" }]"#),
    )
    .unwrap();
    server.hangup_signal();
    let reloads = wait_reloads(&setup, 2);
    let refused = reloads
        .iter()
        .find(|r| r.1 == "refused")
        .unwrap_or_else(|| panic!("{reloads:?}"));
    assert!(
        refused.3.contains("acme.toml:8:") && refused.3.contains("tone/missing.wav"),
        "{refused:?}"
    );
    assert_sipp_ok(&call(setup.addr(), "1"));
    let calls = setup.wait_calls(|c| c.len() == 5 && c.iter().all(|c| c.ended));
    assert_eq!(calls[4].route.as_deref(), Some("v2"));
    assert!(
        server
            .log()
            .contains("dial plans refused; the previous plans stay in force"),
        "{}",
        server.log()
    );
}

#[test]
fn editing_a_plan_file_reloads_it_without_a_signal() {
    let setup = Setup::new(&[("acme.toml", &plan_named("v1", r#"[{ hangup = {} }]"#))]);
    let _server = setup.start();
    std::fs::write(
        setup.dir.path().join("dialplans/acme.toml"),
        plan_named("v2", r#"[{ hangup = {} }]"#),
    )
    .unwrap();
    let reloads = wait_reloads(&setup, 1);
    assert_eq!(
        reloads.first().map(|r| (r.0.as_str(), r.1.as_str())),
        Some(("watch", "accepted")),
        "{reloads:?}"
    );
}

/// SIGHUP on its own reloads: nothing is edited (so the file watcher has nothing to say),
/// and the reload is recorded with the trigger `signal`.
#[test]
fn sighup_alone_reloads_the_plans_and_records_the_signal() {
    let setup = Setup::new(&[("acme.toml", &plan_named("v1", r#"[{ hangup = {} }]"#))]);
    let server = setup.start();
    // Whatever the watcher might report about files written before the start.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        setup.reloads().is_empty(),
        "no reload without a trigger: {:?}",
        setup.reloads()
    );
    server.hangup_signal();
    let reloads = wait_reloads(&setup, 1);
    assert_eq!(
        reloads
            .iter()
            .map(|r| (r.0.as_str(), r.1.as_str()))
            .collect::<Vec<_>>(),
        [("signal", "accepted")],
        "{reloads:?}\n{}",
        server.log()
    );
    assert_eq!(reloads[0].2, "[]", "no file changed: {reloads:?}");
    // A second signal is a second reload.
    server.hangup_signal();
    let reloads = wait_reloads(&setup, 2);
    assert_eq!(reloads.len(), 2, "{reloads:?}");
    assert!(reloads.iter().all(|r| r.0 == "signal"), "{reloads:?}");
}

/// The data directory inside a watched one (here under `sounds/`): what the server writes
/// there on every call (SQLite, its journal) is not a plan, so it reloads nothing. Before,
/// each call's records woke the watcher and the server re-read every plan and decoded every
/// sound again, under load several times a second.
#[test]
fn writes_under_the_data_directory_reload_nothing() {
    let setup = Setup::new(&[(
        "acme.toml",
        &plan_named("v1", r#"[{ play = "tone/a.wav" }, { hangup = {} }]"#),
    )]);
    let config = std::fs::read_to_string(setup.config()).unwrap();
    assert!(config.contains("data = \"data\""), "{config}");
    std::fs::write(
        setup.config(),
        config.replace("data = \"data\"", "data = \"sounds/data\""),
    )
    .unwrap();
    let db = setup.dir.path().join("sounds/data/permanence.db");
    let reloads = || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = conn
            .prepare("SELECT trigger, result, changed FROM reloads ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<(String, String, String)>>()
    };
    let server = setup.start();
    // Three calls written to SQLite from start to end, one after the other.
    assert_sipp_ok(&call(setup.addr(), "3"));
    // Longer than the watcher's debounce (400 ms) after the last write.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(reloads(), [], "{}", server.log());
    assert!(
        !server.log().contains("dial plans reloaded"),
        "{}",
        server.log()
    );

    // The watcher still sees a plan edited, and names only that file.
    std::fs::write(
        setup.dir.path().join("dialplans/acme.toml"),
        plan_named("v2", r#"[{ hangup = {} }]"#),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while reloads().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = reloads();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        ("watch", "accepted")
    );
    assert!(
        seen[0].2.contains("acme.toml") && !seen[0].2.contains("permanence.db"),
        "only the plan changed: {seen:?}"
    );
}
