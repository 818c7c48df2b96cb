//! What an e-mail says: the subject, a plain-text part and an HTML part with every field
//! of the message, the company's fields, the call's time and outcome, and the voicemail
//! attached (or named, when too large); the daily summary; a webhook's JSON body. Pure:
//! built from plain data that the worker read.
//!
//! Everything here came from outside (callers, secretaries, plans): a subject or a name
//! is made one line (no CR/LF can ever start a header), the HTML part escapes every text,
//! and bodies keep only line breaks and tabs among control characters.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::dialplan::Category;

/// The company, as an e-mail names it.
#[derive(Debug, Clone)]
pub struct CompanyView {
    /// Its id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// `fr`, `en`: the language of the e-mail's fixed words (French for `fr`, else English).
    pub language: String,
    /// Its time zone: every time is written in it.
    pub timezone: TimeZone,
}

/// The voicemail, as an e-mail carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Voicemail {
    /// None recorded.
    None,
    /// Attached: file name, WAV bytes, length in ms.
    Attached {
        /// The attachment's file name.
        name: String,
        /// The WAV file.
        bytes: Vec<u8>,
        /// Its length.
        ms: i64,
    },
    /// Over the size cap, or unreadable: named, to be heard on the console.
    OnConsole {
        /// Its length.
        ms: i64,
    },
}

/// Everything an e-mail about one message says.
#[derive(Debug, Clone)]
pub struct MessageView {
    /// The message's id.
    pub message_id: i64,
    /// The call's id.
    pub call_id: i64,
    /// The company.
    pub company: CompanyView,
    /// The executive it is for: (id, display name).
    pub executive: Option<(String, String)>,
    /// Its category now.
    pub category: Category,
    /// `new`, `read`, `done`, `filed`.
    pub status: String,
    /// The caller's number (or what the caller's URI said).
    pub caller: String,
    /// The caller's name as the secretary wrote it.
    pub written_name: Option<String>,
    /// The caller's name in the company's contact lists.
    pub contact_name: Option<String>,
    /// The display name the caller's phone sent.
    pub display_name: Option<String>,
    /// The caller's own company.
    pub caller_company: Option<String>,
    /// The number to call back.
    pub callback: Option<String>,
    /// What it is about.
    pub about: Option<String>,
    /// The company's extra fields: (label, value), in the card's order.
    pub fields: Vec<(String, String)>,
    /// When the call came.
    pub started_at: Timestamp,
    /// How it ended (`voicemail`, `secretary`…), None while it lasts.
    pub outcome: Option<String>,
    /// The route it took.
    pub route: Option<String>,
    /// The secretary who took it.
    pub handled_by: Option<String>,
    /// Who it was transferred to.
    pub transferred_to: Option<String>,
    /// The secretary who wrote the message.
    pub written_by: Option<String>,
    /// The voicemail.
    pub voicemail: Voicemail,
    /// The executive page's link, when there is one.
    pub link: Option<String>,
}

/// An e-mail's content (addresses are the worker's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// One line, never empty.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
    /// A WAV to attach: file name and bytes.
    pub attachment: Option<(String, Vec<u8>)>,
}

/// The fixed words of an e-mail, in the company's language.
struct Words {
    category: fn(Category) -> &'static str,
    outcome: fn(&str) -> Option<&'static str>,
    date: &'static str,
    for_whom: &'static str,
    from: &'static str,
    callback: &'static str,
    about: &'static str,
    received: &'static str,
    outcome_label: &'static str,
    route: &'static str,
    taken_by: &'static str,
    transferred_to: &'static str,
    written_by: &'static str,
    voicemail: &'static str,
    attached: &'static str,
    on_console: &'static str,
    see: &'static str,
    message_on_console: &'static str,
    unknown_caller: &'static str,
    in_progress: &'static str,
    summary: &'static str,
    summary_intro: &'static str,
    spam_count: fn(usize) -> String,
    messages: fn(usize) -> String,
    message_number: &'static str,
    tasks_open: &'static str,
    tasks_finished: &'static str,
    overdue: &'static str,
    due: &'static str,
    task_kind: fn(&str) -> &'static str,
    task_status: fn(&str) -> &'static str,
}

const FRENCH: Words = Words {
    category: |c| match c {
        Category::Urgent => "URGENT",
        Category::Normal => "Message",
        Category::Low => "Pour information",
        Category::Spam => "Indésirable",
    },
    outcome: |o| {
        Some(match o {
            "voicemail" => "message vocal",
            "secretary" => "pris par une secrétaire",
            "transferred" => "transféré",
            "no-message" => "appel manqué (rien dit au répondeur)",
            "abandoned" => "appel manqué (raccroché)",
            "completed" => "annonce écoutée",
            "rejected" => "refusé",
            "failed" => "échec technique",
            "interrupted" => "interrompu (redémarrage du serveur)",
            _ => return None,
        })
    },
    date: "%d/%m/%Y %H:%M",
    for_whom: "Pour",
    from: "De la part de",
    callback: "Rappeler au",
    about: "Objet",
    received: "Appel reçu",
    outcome_label: "Issue",
    route: "Parcours",
    taken_by: "Pris par",
    transferred_to: "Transféré à",
    written_by: "Message écrit par",
    voicemail: "Message vocal",
    attached: "joint",
    on_console: "trop long pour être joint : à écouter sur la console",
    see: "Voir le message",
    message_on_console: "Le message est aussi sur la console de la permanence.",
    unknown_caller: "Numéro masqué",
    in_progress: "appel en cours",
    summary: "Résumé du",
    summary_intro: "Les messages reçus pour vous depuis le dernier résumé :",
    spam_count: |n| format!("{n} appel(s) indésirable(s) écarté(s)."),
    messages: |n| format!("{n} message(s)"),
    message_number: "message",
    tasks_open: "Suivis en cours",
    tasks_finished: "Suivis terminés depuis le dernier résumé",
    overdue: "EN RETARD",
    due: "échéance",
    task_kind: |k| match k {
        "callback" => "Rappel",
        "invoice" => "Relance facture",
        "quote" => "Suivi de devis",
        _ => "Autre",
    },
    task_status: |s| match s {
        "open" => "à faire",
        "in_progress" => "en cours",
        "done" => "fait",
        _ => "abandonné",
    },
};

const ENGLISH: Words = Words {
    category: |c| match c {
        Category::Urgent => "URGENT",
        Category::Normal => "Message",
        Category::Low => "For information",
        Category::Spam => "Spam",
    },
    outcome: |o| {
        Some(match o {
            "voicemail" => "voicemail",
            "secretary" => "taken by a secretary",
            "transferred" => "transferred",
            "no-message" => "missed call (said nothing at the voicemail)",
            "abandoned" => "missed call (hung up)",
            "completed" => "heard the greeting",
            "rejected" => "refused",
            "failed" => "technical failure",
            "interrupted" => "interrupted (server restart)",
            _ => return None,
        })
    },
    date: "%Y-%m-%d %H:%M",
    for_whom: "For",
    from: "From",
    callback: "Call back on",
    about: "About",
    received: "Call received",
    outcome_label: "Outcome",
    route: "Route",
    taken_by: "Taken by",
    transferred_to: "Transferred to",
    written_by: "Message written by",
    voicemail: "Voicemail",
    attached: "attached",
    on_console: "too long to attach: listen to it on the console",
    see: "See the message",
    message_on_console: "The message is also on the secretariat's console.",
    unknown_caller: "Withheld number",
    in_progress: "call in progress",
    summary: "Summary of",
    summary_intro: "The messages for you since the last summary:",
    spam_count: |n| format!("{n} unwanted call(s) set aside."),
    messages: |n| format!("{n} message(s)"),
    message_number: "message",
    tasks_open: "Open follow-ups",
    tasks_finished: "Follow-ups finished since the last summary",
    overdue: "OVERDUE",
    due: "due",
    task_kind: |k| match k {
        "callback" => "Callback",
        "invoice" => "Invoice chase",
        "quote" => "Quote follow-up",
        _ => "Other",
    },
    task_status: |s| match s {
        "open" => "to do",
        "in_progress" => "in progress",
        "done" => "done",
        _ => "abandoned",
    },
};

fn words(language: &str) -> &'static Words {
    if language == "fr" { &FRENCH } else { &ENGLISH }
}

/// Text made safe for a header: every control character (CR and LF among them) and
/// Unicode line or paragraph separator becomes a space, runs of spaces shrink to one,
/// and it is cut to `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    let mut space = false;
    for c in text.chars() {
        let c = if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if space || out.is_empty() {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        out.push(c);
        if out.chars().count() >= max {
            break;
        }
    }
    out.trim_end().to_string()
}

/// Text for a body: line breaks and tabs kept, other control characters dropped.
fn body_text(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// HTML-escapes text (element content and quoted attribute values alike).
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in body_text(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A French number grouped as people write it (`+33 6 22 22 22 22`); others as given.
pub fn readable_number(number: &str) -> String {
    let number = one_line(number, 64);
    match number.strip_prefix("+33") {
        Some(rest) if rest.len() == 9 && rest.bytes().all(|b| b.is_ascii_digit()) => {
            let (first, pairs) = rest.split_at(1);
            let pairs: Vec<&str> = (0..4).map(|i| &pairs[i * 2..i * 2 + 2]).collect();
            format!("+33 {first} {}", pairs.join(" "))
        }
        _ => number,
    }
}

/// Who called, as the e-mail names them: the secretary's words, else the contact lists',
/// else what their phone said.
fn caller_name(v: &MessageView) -> Option<String> {
    [&v.written_name, &v.contact_name, &v.display_name]
        .into_iter()
        .flatten()
        .map(|n| one_line(n, 120))
        .find(|n| !n.is_empty())
}

/// The caller's number, readable, or "withheld".
fn caller_number(v: &MessageView, w: &Words) -> String {
    let n = one_line(&v.caller, 64);
    if n.is_empty() || n.eq_ignore_ascii_case("anonymous") {
        w.unknown_caller.to_string()
    } else {
        readable_number(&n)
    }
}

/// `[ACME Plomberie] URGENT – Syndic Martin (+33 6 22 22 22 22)`
pub fn subject(v: &MessageView) -> String {
    let w = words(&v.company.language);
    let number = caller_number(v, w);
    let who = match caller_name(v) {
        Some(name) => format!("{name} ({number})"),
        None => number,
    };
    one_line(
        &format!(
            "[{}] {} – {who}",
            one_line(&v.company.name, 80),
            (w.category)(v.category)
        ),
        200,
    )
}

fn local(at: Timestamp, v: &CompanyView, w: &Words) -> String {
    v.timezone.to_datetime(at).strftime(w.date).to_string()
}

fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

/// The message's lines: (label, value), in the order an executive reads them.
fn lines(v: &MessageView, w: &Words) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |label: &str, value: Option<String>| {
        if let Some(value) = value.filter(|x| !x.trim().is_empty()) {
            out.push((label.to_string(), value));
        }
    };
    push(
        w.for_whom,
        v.executive.as_ref().map(|(_, name)| name.clone()),
    );
    let who = match (caller_name(v), &v.caller_company) {
        (Some(name), Some(company)) if !company.trim().is_empty() => {
            format!("{name} — {company}")
        }
        (Some(name), _) => name,
        (None, Some(company)) => company.clone(),
        (None, None) => String::new(),
    };
    push(
        w.from,
        Some(format!("{who} {}", caller_number(v, w)).trim().to_string()),
    );
    push(w.callback, v.callback.as_deref().map(readable_number));
    push(w.about, v.about.clone());
    for (label, value) in &v.fields {
        push(label, Some(value.clone()));
    }
    push(
        w.received,
        Some(format!(
            "{} ({})",
            local(v.started_at, &v.company, w),
            v.company.timezone.iana_name().unwrap_or("UTC")
        )),
    );
    let outcome = match &v.outcome {
        Some(o) => (w.outcome)(o).map_or_else(|| o.clone(), str::to_string),
        None => w.in_progress.to_string(),
    };
    push(w.outcome_label, Some(outcome));
    push(w.route, v.route.clone());
    push(w.taken_by, v.handled_by.clone());
    push(w.transferred_to, v.transferred_to.clone());
    push(w.written_by, v.written_by.clone());
    match &v.voicemail {
        Voicemail::None => {}
        Voicemail::Attached { name, ms, .. } => push(
            w.voicemail,
            Some(format!("{} ({name}, {})", w.attached, duration(*ms))),
        ),
        Voicemail::OnConsole { ms } => push(
            w.voicemail,
            Some(format!("{} ({})", w.on_console, duration(*ms))),
        ),
    }
    out
}

/// The e-mail for one message.
pub fn message_email(v: &MessageView) -> Email {
    let w = words(&v.company.language);
    let subject = subject(v);
    let lines = lines(v, w);
    let footer = format!(
        "{} · {} {} · {}",
        one_line(&v.company.name, 80),
        w.message_number,
        v.message_id,
        v.company.id
    );

    let mut text = format!("{subject}\n\n");
    for (label, value) in &lines {
        let value = body_text(value).replace('\n', "\n    ");
        text.push_str(&format!("{}: {value}\n", one_line(label, 80)));
    }
    text.push('\n');
    match &v.link {
        Some(link) => text.push_str(&format!("{}: {}\n", w.see, one_line(link, 2000))),
        None => text.push_str(&format!("{}\n", w.message_on_console)),
    }
    text.push_str(&format!("-- \n{footer}\n"));

    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body style=\"font-family: sans-serif\">\n<h2>{}</h2>\n<table cellpadding=\"4\">\n",
        html(&subject),
        html(&subject)
    );
    for (label, value) in &lines {
        page.push_str(&format!(
            "<tr><th align=\"left\" valign=\"top\">{}</th><td>{}</td></tr>\n",
            html(&one_line(label, 80)),
            html(value).replace('\n', "<br>")
        ));
    }
    page.push_str("</table>\n");
    match &v.link {
        Some(link) => page.push_str(&format!(
            "<p><a href=\"{}\">{}</a></p>\n",
            html(&one_line(link, 2000)),
            html(w.see)
        )),
        None => page.push_str(&format!("<p>{}</p>\n", html(w.message_on_console))),
    }
    page.push_str(&format!(
        "<p><small>{}</small></p>\n</body></html>\n",
        html(&footer)
    ));

    let attachment = match &v.voicemail {
        Voicemail::Attached { name, bytes, .. } => Some((name.clone(), bytes.clone())),
        _ => None,
    };
    Email {
        subject,
        text,
        html: page,
        attachment,
    }
}

/// A daily summary: the messages held for one executive until its time.
#[derive(Debug, Clone)]
pub struct DigestView {
    /// The company.
    pub company: CompanyView,
    /// The executive's display name.
    pub executive: String,
    /// The summary's time.
    pub due: Timestamp,
    /// The messages, in any order (grouped and sorted here).
    pub messages: Vec<MessageView>,
    /// The executive page's link, when there is one.
    pub link: Option<String>,
    /// The company's follow-ups: open ones, and those finished since the last summary.
    pub tasks: Vec<TaskLine>,
}

/// A follow-up task as a summary lists it (texts as stored: they are escaped here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLine {
    /// `callback`, `invoice`, `quote`, `other`.
    pub kind: String,
    /// `open`, `in_progress`, `done`, `abandoned`.
    pub status: String,
    /// The customer's name.
    pub customer: String,
    /// Their number.
    pub phone: Option<String>,
    /// The invoice and its amount (`F-101 1200.00`).
    pub invoice: Option<String>,
    /// Due day (`YYYY-MM-DD`).
    pub due: Option<String>,
    /// Whether it is overdue.
    pub overdue: bool,
    /// What came of it.
    pub outcome: String,
}

/// The summary's follow-ups section: open tasks, then finished ones with their outcome.
fn task_section(tasks: &[TaskLine], w: &Words, text: &mut String, page: &mut String) {
    let open: Vec<&TaskLine> = tasks
        .iter()
        .filter(|t| matches!(t.status.as_str(), "open" | "in_progress"))
        .collect();
    let finished: Vec<&TaskLine> = tasks
        .iter()
        .filter(|t| !matches!(t.status.as_str(), "open" | "in_progress"))
        .collect();
    for (heading, these) in [(w.tasks_open, open), (w.tasks_finished, finished)] {
        if these.is_empty() {
            continue;
        }
        let heading = format!("{heading} ({})", these.len());
        text.push_str(&format!("\n{heading}\n"));
        page.push_str(&format!("<h3>{}</h3>\n<ul>\n", html(&heading)));
        for t in these {
            let mut line = format!(
                "{} – {}",
                (w.task_kind)(&t.kind),
                one_line(&t.customer, 120)
            );
            if let Some(phone) = &t.phone {
                line.push_str(&format!(" ({})", readable_number(phone)));
            }
            if let Some(invoice) = &t.invoice {
                line.push_str(&format!(" – {}", one_line(invoice, 160)));
            }
            if let Some(due) = &t.due {
                line.push_str(&format!(" – {} {}", w.due, one_line(due, 10)));
            }
            line.push_str(&format!(" [{}]", (w.task_status)(&t.status)));
            if t.overdue {
                line.push_str(&format!(" {}", w.overdue));
            }
            if !t.outcome.trim().is_empty() {
                line.push_str(&format!(" – {}", one_line(&t.outcome, 300)));
            }
            text.push_str(&format!("  - {line}\n"));
            page.push_str(&format!("<li>{}</li>\n", html(&line)));
        }
        page.push_str("</ul>\n");
    }
}

/// The summary's e-mail: the messages grouped by category, urgent first, each with its
/// time, caller, number to call back and what it is about; spam last, as a count.
pub fn digest_email(d: &DigestView) -> Email {
    let w = words(&d.company.language);
    let day = d
        .company
        .timezone
        .to_datetime(d.due)
        .strftime(if w.date.starts_with("%d") {
            "%d/%m/%Y"
        } else {
            "%Y-%m-%d"
        })
        .to_string();
    let counted = d
        .messages
        .iter()
        .filter(|m| m.category != Category::Spam)
        .count();
    let spam = d.messages.len() - counted;
    let subject = one_line(
        &format!(
            "[{}] {} {day} – {}",
            one_line(&d.company.name, 80),
            w.summary,
            (w.messages)(counted)
        ),
        200,
    );
    let mut text = format!("{subject}\n\n{}\n", w.summary_intro);
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body style=\"font-family: sans-serif\">\n<h2>{}</h2>\n<p>{}</p>\n",
        html(&subject),
        html(&subject),
        html(w.summary_intro)
    );
    for category in [Category::Urgent, Category::Normal, Category::Low] {
        let mut these: Vec<&MessageView> = d
            .messages
            .iter()
            .filter(|m| m.category == category)
            .collect();
        if these.is_empty() {
            continue;
        }
        these.sort_by_key(|m| (m.started_at, m.message_id));
        let heading = format!("{} ({})", (w.category)(category), these.len());
        text.push_str(&format!("\n{heading}\n"));
        page.push_str(&format!("<h3>{}</h3>\n<ul>\n", html(&heading)));
        for m in these {
            let time = d
                .company
                .timezone
                .to_datetime(m.started_at)
                .strftime("%H:%M")
                .to_string();
            let who = match caller_name(m) {
                Some(name) => format!("{name} ({})", caller_number(m, w)),
                None => caller_number(m, w),
            };
            let callback = m
                .callback
                .as_deref()
                .filter(|c| !c.trim().is_empty())
                .map(|c| format!(" – {} {}", w.callback, readable_number(c)))
                .unwrap_or_default();
            let about = m
                .about
                .as_deref()
                .map(|a| format!(" – {}", one_line(a, 300)))
                .unwrap_or_default();
            let outcome = m
                .outcome
                .as_deref()
                .and_then(w.outcome)
                .map(|o| format!(" [{o}]"))
                .unwrap_or_default();
            let line = format!("{time} {who}{callback}{about}{outcome}");
            text.push_str(&format!("  - {line}\n"));
            page.push_str(&format!("<li>{}</li>\n", html(&line)));
        }
        page.push_str("</ul>\n");
    }
    if spam > 0 {
        text.push_str(&format!("\n{}\n", (w.spam_count)(spam)));
        page.push_str(&format!(
            "<p><small>{}</small></p>\n",
            html(&(w.spam_count)(spam))
        ));
    }
    task_section(&d.tasks, w, &mut text, &mut page);
    text.push('\n');
    match &d.link {
        Some(link) => {
            text.push_str(&format!("{}\n", one_line(link, 2000)));
            page.push_str(&format!(
                "<p><a href=\"{}\">{}</a></p>\n",
                html(&one_line(link, 2000)),
                html(&one_line(link, 2000))
            ));
        }
        None => {
            text.push_str(&format!("{}\n", w.message_on_console));
            page.push_str(&format!("<p>{}</p>\n", html(w.message_on_console)));
        }
    }
    text.push_str(&format!(
        "-- \n{} · {}\n",
        one_line(&d.company.name, 80),
        one_line(&d.executive, 80)
    ));
    page.push_str("</body></html>\n");
    Email {
        subject,
        text,
        html: page,
        attachment: None,
    }
}

/// A webhook's JSON body: the event, the company, the executive and every field of the
/// message and its call (documented in docs/API.md, "Webhooks").
pub fn webhook_body(event: &str, v: &MessageView) -> Vec<u8> {
    let fields: serde_json::Map<String, serde_json::Value> = v
        .fields
        .iter()
        .map(|(label, value)| (label.clone(), serde_json::Value::from(value.as_str())))
        .collect();
    let voicemail = match &v.voicemail {
        Voicemail::None => serde_json::Value::Null,
        Voicemail::Attached { ms, .. } | Voicemail::OnConsole { ms } => {
            serde_json::json!({ "ms": ms })
        }
    };
    let body = serde_json::json!({
        "type": "message",
        "event": event,
        "company": { "id": v.company.id, "name": v.company.name },
        "executive": v.executive.as_ref().map(|(id, name)| serde_json::json!({ "id": id, "name": name })),
        "message": {
            "id": v.message_id,
            "category": v.category.as_str(),
            "status": v.status,
            "caller": v.caller,
            "caller_name": caller_name(v),
            "caller_company": v.caller_company,
            "callback": v.callback,
            "about": v.about,
            "fields": fields,
            "written_by": v.written_by,
            "voicemail": voicemail,
        },
        "call": {
            "id": v.call_id,
            "started_at": v.started_at.to_string(),
            "outcome": v.outcome,
            "route": v.route,
            "handled_by": v.handled_by,
            "transferred_to": v.transferred_to,
        },
        "link": v.link,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn view() -> MessageView {
        MessageView {
            message_id: 12,
            call_id: 40,
            company: CompanyView {
                id: "acme".into(),
                name: "ACME Plomberie".into(),
                language: "fr".into(),
                timezone: TimeZone::get("Europe/Paris").unwrap(),
            },
            executive: Some(("marie".into(), "Marie Durand".into())),
            category: Category::Urgent,
            status: "new".into(),
            caller: "+33622222222".into(),
            written_name: None,
            contact_name: Some("Syndic Martin".into()),
            display_name: Some("SM".into()),
            caller_company: None,
            callback: None,
            about: None,
            fields: vec![(
                "Adresse de l'intervention".into(),
                "3 rue <b>Haute</b>".into(),
            )],
            started_at: "2026-11-27T09:15:00Z".parse().unwrap(),
            outcome: Some("voicemail".into()),
            route: Some("clients VIP".into()),
            handled_by: None,
            transferred_to: None,
            written_by: None,
            voicemail: Voicemail::Attached {
                name: "call-40.wav".into(),
                bytes: b"RIFF".to_vec(),
                ms: 42_000,
            },
            link: None,
        }
    }

    #[test]
    fn the_subject_names_the_company_the_category_and_the_caller() {
        let v = view();
        assert_eq!(
            subject(&v),
            "[ACME Plomberie] URGENT – Syndic Martin (+33 6 22 22 22 22)"
        );
        let written = MessageView {
            written_name: Some("M. Martin".into()),
            category: Category::Normal,
            ..view()
        };
        assert_eq!(
            subject(&written),
            "[ACME Plomberie] Message – M. Martin (+33 6 22 22 22 22)"
        );
        let anonymous = MessageView {
            caller: "anonymous".into(),
            contact_name: None,
            display_name: None,
            ..view()
        };
        assert_eq!(
            subject(&anonymous),
            "[ACME Plomberie] URGENT – Numéro masqué"
        );
        let english = MessageView {
            company: CompanyView {
                language: "en".into(),
                ..view().company
            },
            category: Category::Low,
            caller: "+4420794600000".into(),
            ..view()
        };
        assert_eq!(
            subject(&english),
            "[ACME Plomberie] For information – Syndic Martin (+4420794600000)"
        );
    }

    #[test]
    fn a_line_break_in_any_field_never_reaches_a_header() {
        let v = MessageView {
            contact_name: Some("Syndic\r\nBcc: x@evil.example".into()),
            company: CompanyView {
                name: "ACME\nX-Evil: 1".into(),
                ..view().company
            },
            caller: "+336\r\n\u{2028}22".into(),
            ..view()
        };
        let s = subject(&v);
        assert!(!s.contains(['\r', '\n', '\u{2028}']), "{s:?}");
        assert_eq!(
            s,
            "[ACME X-Evil: 1] URGENT – Syndic Bcc: x@evil.example (+336 22)"
        );
    }

    #[test]
    fn both_parts_carry_every_field_and_the_html_escapes_them() {
        let v = MessageView {
            written_name: Some("Jean <script>alert(1)</script>".into()),
            caller_company: Some("Syndic & Co".into()),
            callback: Some("+33611111111".into()),
            about: Some("Fuite sous l'évier\nau 2e étage".into()),
            written_by: Some("alice".into()),
            handled_by: Some("alice".into()),
            outcome: Some("secretary".into()),
            ..view()
        };
        let e = message_email(&v);
        for needle in [
            "Pour: Marie Durand",
            "De la part de: Jean <script>alert(1)</script> — Syndic & Co +33 6 22 22 22 22",
            "Rappeler au: +33 6 11 11 11 11",
            "Objet: Fuite sous l'évier\n    au 2e étage",
            "Adresse de l'intervention: 3 rue <b>Haute</b>",
            "Appel reçu: 27/11/2026 10:15 (Europe/Paris)",
            "Issue: pris par une secrétaire",
            "Parcours: clients VIP",
            "Message écrit par: alice",
            "Message vocal: joint (call-40.wav, 0:42)",
            "Le message est aussi sur la console",
        ] {
            assert!(
                e.text.contains(needle),
                "text lacks {needle:?}:\n{}",
                e.text
            );
        }
        assert!(
            e.html
                .contains("Jean &lt;script&gt;alert(1)&lt;/script&gt; — Syndic &amp; Co"),
            "{}",
            e.html
        );
        assert!(e.html.contains("3 rue &lt;b&gt;Haute&lt;/b&gt;"));
        assert!(e.html.contains("Fuite sous l&#39;évier<br>au 2e étage"));
        assert!(!e.html.contains("<script>") && !e.html.contains("<b>Haute"));
        assert_eq!(e.attachment, Some(("call-40.wav".into(), b"RIFF".to_vec())));

        let big = MessageView {
            voicemail: Voicemail::OnConsole { ms: 400_000 },
            link: Some("https://p.example/x?t=1&u=\"2\"".into()),
            ..view()
        };
        let e = message_email(&big);
        assert!(e.attachment.is_none());
        assert!(e.text.contains("trop long pour être joint"), "{}", e.text);
        assert!(
            e.html
                .contains("href=\"https://p.example/x?t=1&amp;u=&quot;2&quot;\""),
            "{}",
            e.html
        );
    }

    #[test]
    fn the_summary_groups_by_category_urgent_first_and_counts_spam() {
        let at = |h: i8, m: i8, category, name: &str| MessageView {
            started_at: jiff::civil::date(2026, 11, 27)
                .at(h, m, 0, 0)
                .to_zoned_datetime(TimeZone::get("Europe/Paris").unwrap())
                .unwrap()
                .timestamp(),
            category,
            contact_name: Some(name.into()),
            voicemail: Voicemail::None,
            about: Some(format!("au sujet de {name}")),
            ..view()
        };
        let d = DigestView {
            company: view().company,
            executive: "Marie Durand".into(),
            due: "2026-11-27T17:30:00Z".parse().unwrap(),
            messages: vec![
                at(11, 0, Category::Normal, "Bernard"),
                at(9, 30, Category::Normal, "Alain"),
                at(10, 0, Category::Spam, "Spammeur"),
                at(16, 45, Category::Urgent, "Syndic Martin"),
                at(12, 0, Category::Spam, "Spammeur 2"),
            ],
            link: None,
            tasks: Vec::new(),
        };
        let e = digest_email(&d);
        assert_eq!(
            e.subject,
            "[ACME Plomberie] Résumé du 27/11/2026 – 3 message(s)"
        );
        let urgent = e.text.find("URGENT (1)").unwrap();
        let normal = e.text.find("Message (2)").unwrap();
        let alain = e.text.find("09:30 Alain").unwrap();
        let bernard = e.text.find("11:00 Bernard").unwrap();
        let spam = e.text.find("2 appel(s) indésirable(s)").unwrap();
        assert!(
            urgent < normal && normal < alain && alain < bernard && bernard < spam,
            "{}",
            e.text
        );
        assert!(!e.text.contains("Spammeur"), "spam only as a count");
        assert!(e.html.contains("<h3>URGENT (1)</h3>"));
        assert!(!e.text.contains("Suivis"), "no tasks, no section");
    }

    #[test]
    fn the_summary_lists_open_tasks_then_finished_ones_with_their_outcome() {
        let task = |kind: &str, status: &str, customer: &str, outcome: &str| TaskLine {
            kind: kind.into(),
            status: status.into(),
            customer: customer.into(),
            phone: Some("+33612345678".into()),
            invoice: None,
            due: Some("2026-11-20".into()),
            overdue: status == "open",
            outcome: outcome.into(),
        };
        let d = DigestView {
            company: view().company,
            executive: "Marie Durand".into(),
            due: "2026-11-27T17:30:00Z".parse().unwrap(),
            messages: Vec::new(),
            link: None,
            tasks: vec![
                task("invoice", "open", "Dupont <b>SA</b>", ""),
                task(
                    "callback",
                    "done",
                    "Mme Lefèvre",
                    "Rappelée, RDV pris\nmardi",
                ),
            ],
        };
        let e = digest_email(&d);
        let open = e.text.find("Suivis en cours (1)").unwrap();
        let done = e
            .text
            .find("Suivis terminés depuis le dernier résumé (1)")
            .unwrap();
        assert!(open < done, "{}", e.text);
        assert!(e.text.contains("Relance facture – Dupont <b>SA</b> (+33 6 12 34 56 78) – échéance 2026-11-20 [à faire] EN RETARD"), "{}", e.text);
        assert!(e.text.contains("Rappel – Mme Lefèvre (+33 6 12 34 56 78) – échéance 2026-11-20 [fait] – Rappelée, RDV pris mardi"), "{}", e.text);
        assert!(e.html.contains("Dupont &lt;b&gt;SA&lt;/b&gt;") && !e.html.contains("<b>SA"));
    }

    #[test]
    fn the_webhook_body_is_json_with_every_field() {
        let body = webhook_body("message:12:urgent:marie", &view());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["event"], "message:12:urgent:marie");
        assert_eq!(v["company"]["name"], "ACME Plomberie");
        assert_eq!(v["executive"]["id"], "marie");
        assert_eq!(v["message"]["caller_name"], "Syndic Martin");
        assert_eq!(
            v["message"]["fields"]["Adresse de l'intervention"],
            "3 rue <b>Haute</b>"
        );
        assert_eq!(v["message"]["voicemail"]["ms"], 42_000);
        assert_eq!(v["call"]["started_at"], "2026-11-27T09:15:00Z");
    }
}
