//! Follow-ups through the console's HTTP API, against a real server and its SQLite file:
//! a CSV of unpaid invoices with one bad row is refused with that row's line and nothing
//! is imported; a task made by hand, from a message, worked on (an attempt, then done);
//! and another company's tasks are out of reach.

mod common;

use std::net::SocketAddr;

use common::web::{JSON, http, login, setup};
use common::*;
use serde_json::Value;

/// The console with acme (alice serves it) and `other`, a company she does not serve.
fn start() -> (Setup, SocketAddr, Server, String) {
    let (setup, web) = setup(r#"[{ hangup = {} }]"#);
    std::fs::write(
        setup.dir.path().join("dialplans/other.toml"),
        plan("other", "+33180000009", r#"[{ hangup = {} }]"#),
    )
    .unwrap();
    let server = setup.start();
    let (status, cookie, body) = login(web, "alice", "alice");
    assert_eq!(status, 200, "{body}");
    (setup, web, server, cookie.unwrap())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn get(web: SocketAddr, cookie: &str, path: &str) -> (u16, Value) {
    let (status, _, body) = http(web, "GET", path, &[("Cookie", cookie)], "");
    (
        status,
        if body.is_empty() {
            Value::Null
        } else {
            json(&body)
        },
    )
}

fn post(web: SocketAddr, cookie: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, _, body) = http(web, "POST", path, &[("Cookie", cookie), JSON], body);
    (
        status,
        if body.is_empty() {
            Value::Null
        } else {
            json(&body)
        },
    )
}

fn task_rows(setup: &Setup) -> i64 {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    conn.query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_csv_with_one_bad_row_reports_its_line_and_imports_nothing() {
    let (setup, web, _server, cookie) = start();
    // A French spreadsheet's export: `;`, a BOM, a decimal comma; line 4 has a number
    // that is not one.
    let bad = "\u{feff}Client;Téléphone;Facture;Montant;Échéance\n\
               Plomberie Martin;01 23 45 67 89;F-101;1 200,00;01/10/2026\n\
               Dupont SA;+33612345678;F-102;99,90;2099-12-15\n\
               Durand;appelez-moi;F-103;10,00;2099-12-20\n\
               Bernard;0698765432;F-104;45;2099-12-31\n";
    let import = |csv: &str| {
        let (status, _, body) = http(
            web,
            "POST",
            "/api/tasks/import?company=acme",
            &[("Cookie", &cookie), ("Content-Type", "text/csv")],
            csv,
        );
        (status, json(&body))
    };
    let (status, body) = import(bad);
    assert_eq!(status, 422, "{body}");
    let problems = body["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{body}");
    assert_eq!(problems[0]["line"], 4, "{body}");
    assert_eq!(problems[0]["field"], "phone", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("nothing was imported"),
        "{body}"
    );
    assert_eq!(task_rows(&setup), 0, "nothing half-imported");
    let (_, list) = get(web, &cookie, "/api/tasks?company=acme");
    assert_eq!(list["tasks"].as_array().unwrap().len(), 0, "{list}");

    // Fixed: the four rows come in, the overdue invoice first.
    let (status, body) = import(&bad.replace("appelez-moi", "06 11 22 33 44"));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["imported"], 4);
    assert_eq!(task_rows(&setup), 4);
    let (_, list) = get(web, &cookie, "/api/tasks?company=acme");
    let tasks = list["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4, "{list}");
    assert_eq!(tasks[0]["invoice"], "F-101", "{list}");
    assert_eq!(tasks[0]["overdue"], true);
    assert_eq!(tasks[0]["amount_cents"], 120000);
    assert_eq!(tasks[0]["amount"], "1200.00");
    assert_eq!(tasks[0]["phone"], "+33123456789");
    assert_eq!(tasks[0]["kind"], "invoice");
    let order: Vec<&str> = tasks
        .iter()
        .map(|t| t["invoice"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["F-101", "F-102", "F-103", "F-104"], "by due date");

    // A long file (about 60 KiB, beyond the console's usual 4 KiB bodies) is taken whole.
    let mut long = String::from("customer,phone,invoice,amount,due\n");
    for i in 0..1500 {
        long.push_str(&format!(
            "Client numéro {i},01 23 45 {:02} {:02},F-{i:05},{i}.{:02},2099-01-01\n",
            i / 100,
            i % 100,
            i % 100
        ));
    }
    assert!(long.len() > 50_000);
    let (status, body) = import(&long);
    assert_eq!(
        (status, &body["imported"]),
        (201, &Value::from(1500)),
        "{body}"
    );
    assert_eq!(task_rows(&setup), 1504);

    // Not for a company she does not serve, and not without a session.
    let (status, _, body) = http(
        web,
        "POST",
        "/api/tasks/import?company=other",
        &[("Cookie", &cookie), ("Content-Type", "text/csv")],
        "customer,invoice,amount\nX,F-1,1\n",
    );
    assert_eq!(status, 403, "{body}");
    let (status, _, _) = http(
        web,
        "POST",
        "/api/tasks/import?company=acme",
        &[("Content-Type", "text/csv")],
        "customer,invoice,amount\nX,F-1,1\n",
    );
    assert_eq!(status, 401);
    assert_eq!(task_rows(&setup), 1504);
}

#[test]
fn a_task_is_made_worked_on_and_finished_through_the_api() {
    let (setup, web, _server, cookie) = start();
    // A message of acme's (call 500) and one of other's (501), as calls leave them.
    {
        let conn = rusqlite::Connection::open(setup.db()).unwrap();
        conn.execute_batch(
            "INSERT INTO calls (id, company, dialled, caller, started_at, sip_call_id)
                VALUES (500, 'acme', '+33180000001', '+33611111111', '2026-11-02T09:00:00.000Z', 'a'),
                       (501, 'other', '+33180000009', '+33622222222', '2026-11-02T09:00:00.000Z', 'b');
             INSERT INTO messages (call_id, company, caller, category, created_at, updated_at)
                VALUES (500, 'acme', '+33611111111', 'normal', '2026-11-02T09:00:00.000Z', '2026-11-02T09:00:00.000Z'),
                       (501, 'other', '+33622222222', 'normal', '2026-11-02T09:00:00.000Z', '2026-11-02T09:00:00.000Z');",
        )
        .unwrap();
    }

    // "Call this caller back", from acme's message.
    let (status, body) = post(
        web,
        &cookie,
        "/api/tasks",
        r#"{"company":"acme","call":500,"kind":"callback","customer":"Mme Lefèvre","phone":"06 11 11 11 11","due":"2099-01-15","notes":"Fuite\nurgente"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let task = &body["task"];
    let id = task["id"].as_i64().unwrap();
    assert_eq!(task["call"], 500);
    assert_eq!(task["phone"], "+33611111111");
    assert_eq!(task["status"], "open");
    assert_eq!(task["created_by"], "alice");
    assert_eq!(task["notes"], "Fuite\nurgente");

    // Checked fields, each refusal naming its field; nothing written.
    for (form, field) in [
        (
            r#"{"company":"acme","kind":"callback","customer":"X","phone":"not a number"}"#,
            "phone",
        ),
        (
            r#"{"company":"acme","kind":"invoice","customer":"X","amount":"-3","invoice":"F"}"#,
            "amount",
        ),
        (
            r#"{"company":"acme","kind":"other","customer":"X","due":"31/02/2026"}"#,
            "due",
        ),
        (
            r#"{"company":"acme","kind":"other","customer":"X","email":"x@y.z\r\nBcc: a@b.c"}"#,
            "email",
        ),
        (
            r#"{"company":"acme","kind":"other","customer":"X","assignee":"mallory"}"#,
            "assignee",
        ),
        (
            r#"{"company":"acme","kind":"other","customer":"\u001b[2J"}"#,
            "customer",
        ),
        (
            r#"{"company":"acme","kind":"other","customer":"X","admin":true}"#,
            "",
        ),
    ] {
        let (status, body) = post(web, &cookie, "/api/tasks", form);
        assert_eq!(status, 422, "{form}: {body}");
        if !field.is_empty() {
            assert_eq!(body["field"], field, "{form}: {body}");
        }
    }
    // Another company's: its plan exists, she does not serve it; its message is not hers.
    let (status, _) = post(
        web,
        &cookie,
        "/api/tasks",
        r#"{"company":"other","kind":"other","customer":"X"}"#,
    );
    assert_eq!(status, 403);
    let (status, body) = post(
        web,
        &cookie,
        "/api/tasks",
        r#"{"company":"acme","call":501,"kind":"callback","phone":"0622222222"}"#,
    );
    assert_eq!(
        (status, body["field"].as_str()),
        (404, Some("call")),
        "{body}"
    );
    assert_eq!(task_rows(&setup), 1);

    // She tries: nobody answers. The task is in progress, the attempt logged.
    let (status, body) = post(
        web,
        &cookie,
        &format!("/api/tasks/{id}/attempts"),
        r#"{"result":"no_answer","note":"rappeler après 14 h"}"#,
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["task"]["status"], "in_progress");
    assert_eq!(body["task"]["attempts"], 1);
    assert_eq!(body["attempts"][0]["result"], "no_answer");
    assert_eq!(body["attempts"][0]["by"], "alice");
    assert_eq!(body["attempts"][0]["note"], "rappeler après 14 h");
    let (status, _) = post(
        web,
        &cookie,
        &format!("/api/tasks/{id}/attempts"),
        r#"{"result":"maybe"}"#,
    );
    assert_eq!(status, 422);

    // Done, with its outcome; the open list no longer has it, the full one does.
    let (status, body) = post(
        web,
        &cookie,
        &format!("/api/tasks/{id}"),
        r#"{"status":"done","outcome":"Rappelée, plombier envoyé"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["task"]["status"], "done");
    assert_eq!(body["task"]["outcome"], "Rappelée, plombier envoyé");
    assert!(body["task"]["done_at"].is_string(), "{body}");
    let (_, open) = get(web, &cookie, "/api/tasks?company=acme");
    assert_eq!(open["tasks"].as_array().unwrap().len(), 0, "{open}");
    let (_, all) = get(web, &cookie, "/api/tasks?company=acme&all=1");
    assert_eq!(all["tasks"][0]["id"], id, "{all}");
    let (status, body) = post(
        web,
        &cookie,
        &format!("/api/tasks/{id}"),
        r#"{"status":"finished"}"#,
    );
    assert_eq!((status, body["field"].as_str()), (422, Some("status")));

    // Another company's task (written by its own secretariat) is as good as absent.
    {
        let conn = rusqlite::Connection::open(setup.db()).unwrap();
        conn.execute(
            "INSERT INTO tasks (id, company, kind, customer, phone, created_by, created_at, updated_by, updated_at)
             VALUES (900, 'other', 'callback', 'Secret', '+33633333333', 'bob', 'x', 'bob', 'x')",
            [],
        )
        .unwrap();
    }
    let (status, _) = get(web, &cookie, "/api/tasks/900");
    assert_eq!(status, 404);
    let (status, _) = post(web, &cookie, "/api/tasks/900", r#"{"status":"done"}"#);
    assert_eq!(status, 404);
    let (status, _) = post(web, &cookie, "/api/tasks/900/call", "{}");
    assert_eq!(status, 404);
    let (status, _) = get(web, &cookie, "/api/tasks?company=other");
    assert_eq!(status, 403);

    // A page of another site cannot make her browser change a task.
    let (status, _, _) = http(
        web,
        "POST",
        &format!("/api/tasks/{id}"),
        &[("Cookie", &cookie), JSON, ("Origin", "http://evil.example")],
        r#"{"status":"open"}"#,
    );
    assert_eq!(status, 403);
    let (_, after) = get(web, &cookie, &format!("/api/tasks/{id}"));
    assert_eq!(after["task"]["status"], "done");
}

/// In Chromium: the task list shows the overdue task first and a customer's name shaped
/// like markup as text; a task made with the form appears; opening one and logging an
/// attempt puts it in progress.
#[test]
fn the_task_list_in_chromium() {
    if !inside_loopback_only_namespace("the_task_list_in_chromium") {
        return;
    }
    let (setup, web, _server, cookie) = start();
    let markup = "<img src=x onerror=\"document.title='pwned'\">";
    for form in [
        r#"{"company":"acme","kind":"quote","customer":"Later","due":"2099-06-01"}"#.to_string(),
        format!(
            r#"{{"company":"acme","kind":"invoice","customer":{},"amount":"120","invoice":"F-9","due":"2020-01-01"}}"#,
            serde_json::to_string(markup).unwrap()
        ),
    ] {
        let (status, body) = post(web, &cookie, "/api/tasks", &form);
        assert_eq!(status, 201, "{body}");
    }
    let browser = Browser::start(&setup.dir.path().join("chromium"));
    browser.log_in(web, "alice", "alice");
    browser.wait_for(
        "the task list",
        "return document.querySelectorAll('#t-list tr').length === 2",
    );
    assert_eq!(browser.text("#t-list tr:first-child td.customer"), markup);
    assert_eq!(
        browser.eval(
            "return document.querySelector('#t-list tr:first-child').classList.contains('overdue')"
        ),
        Value::Bool(true)
    );
    assert!(
        browser
            .text("#t-list tr:first-child td.status")
            .contains("en retard")
    );
    assert_eq!(
        browser.eval("return document.querySelectorAll('img').length"),
        Value::from(0)
    );

    // A callback made with the form.
    browser.eval("document.querySelector('#task-new').closest('details').open = true");
    browser.type_into("#tn-customer", "Mme Lefèvre");
    browser.type_into("#tn-phone", "06 12 34 56 78");
    browser.click("#task-new button[type=submit]");
    browser.wait_for(
        "the new task",
        "return document.querySelectorAll('#t-list tr').length === 3",
    );
    assert_eq!(browser.text("#tn-result"), "Tâche créée.");

    // Opened, an attempt logged: in progress.
    browser.eval(
        "location.hash = document.querySelector('#t-list tr:last-child td.customer a').getAttribute('href')",
    );
    browser.wait_for(
        "the task's page",
        "return !document.getElementById('task-view').hidden",
    );
    browser.eval("document.getElementById('ta-result').value = 'no_answer'");
    browser.type_into("#ta-note", "messagerie pleine");
    browser.click("#tv-attempt button[type=submit]");
    browser.wait_for(
        "the attempt",
        "return document.querySelectorAll('#tv-attempts li').length === 1",
    );
    assert!(
        browser
            .text("#tv-attempts li")
            .ends_with("alice : pas de réponse — messagerie pleine"),
        "{}",
        browser.text("#tv-attempts li")
    );
    assert_eq!(
        browser.eval("return document.getElementById('tv-status').value"),
        Value::from("in_progress")
    );
    assert_ne!(browser.eval("return document.title"), Value::from("pwned"));
    browser.screenshot(&repo().join("target/artefacts/console-tasks.png"));
}
