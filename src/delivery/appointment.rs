//! The agenda's e-mails: to the executive when an appointment is proposed (or moved, or
//! cancelled by a secretary), with **Confirm** and **Cancel** links; to the client when it
//! is confirmed or cancelled, with the appointment as an `.ics` attachment. Pure: the
//! worker reads the appointment and signs the links; this writes the words (French for a
//! company whose language is `fr`, English otherwise), every text escaped or made one line
//! where it goes.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::compose::{Email, html, one_line};
use crate::agenda::{Span, Status, ics};
use crate::store::agenda::AppointmentRow;

/// Who the e-mail is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// The executive: what to confirm or cancel.
    Executive,
    /// The client: confirmed or cancelled.
    Client,
}

/// What an appointment's e-mail shows.
#[derive(Debug, Clone)]
pub struct AppointmentView<'a> {
    /// The appointment as it now stands.
    pub row: &'a AppointmentRow,
    /// Its time.
    pub span: Span,
    /// The company's name.
    pub company: &'a str,
    /// The executive's name.
    pub executive: &'a str,
    /// The company's language (`fr`, `en`).
    pub language: &'a str,
    /// The company's time zone.
    pub timezone: &'a TimeZone,
    /// For the executive: the Confirm link (while it is proposed and not started).
    pub confirm: Option<String>,
    /// For the executive: the Cancel link.
    pub cancel: Option<String>,
    /// When the e-mail is made (the attachment's stamp).
    pub now: Timestamp,
}

/// The e-mail for `to`.
pub fn appointment_email(v: &AppointmentView, to: Recipient) -> Email {
    let fr = v.language == "fr";
    let when = format!(
        "{}–{}",
        v.timezone
            .to_datetime(v.span.starts)
            .strftime("%Y-%m-%d %H:%M"),
        v.timezone.to_datetime(v.span.ends).strftime("%H:%M")
    );
    let status = v.row.status();
    let headline = match (to, status, fr) {
        (Recipient::Executive, Some(Status::Proposed), true) => "Rendez-vous à confirmer",
        (Recipient::Executive, Some(Status::Proposed), false) => "Appointment to confirm",
        (Recipient::Executive, Some(Status::Cancelled), true)
        | (Recipient::Client, Some(Status::Cancelled), true) => "Rendez-vous annulé",
        (Recipient::Executive, Some(Status::Cancelled), false)
        | (Recipient::Client, Some(Status::Cancelled), false) => "Appointment cancelled",
        (Recipient::Client, _, true) => "Rendez-vous confirmé",
        (Recipient::Client, _, false) => "Appointment confirmed",
        (Recipient::Executive, _, true) => "Nouveau rendez-vous",
        (Recipient::Executive, _, false) => "New appointment",
    };
    let subject = match to {
        Recipient::Executive => one_line(
            &format!("[{}] {headline} – {}, {when}", v.company, v.row.client.name),
            200,
        ),
        Recipient::Client => one_line(
            &format!("{headline} – {}, {when} ({})", v.executive, v.company),
            200,
        ),
    };
    let label = |fr_text: &'static str, en: &'static str| if fr { fr_text } else { en };
    let mut lines: Vec<(&str, String)> = vec![
        (label("Quand", "When"), when.clone()),
        (label("Avec", "With"), v.executive.to_string()),
    ];
    if to == Recipient::Executive {
        lines.push((label("Client", "Client"), v.row.client.name.clone()));
        for (l, value) in [
            (label("Téléphone", "Phone"), &v.row.client.phone),
            (label("E-mail", "E-mail"), &v.row.client.email),
        ] {
            if !value.is_empty() {
                lines.push((l, value.clone()));
            }
        }
        lines.push((label("Pris par", "Booked by"), v.row.booked_by.clone()));
    }
    for (l, value) in [
        (label("Adresse", "Address"), &v.row.client.address),
        (label("Motif", "Reason"), &v.row.client.reason),
    ] {
        if !value.is_empty() {
            lines.push((l, value.clone()));
        }
    }
    if let Some(why) = v.row.cancel_reason.as_deref().filter(|w| !w.is_empty()) {
        lines.push((
            label("Motif d'annulation", "Why cancelled"),
            why.to_string(),
        ));
    }
    let mut links: Vec<(&str, &str)> = Vec::new();
    if let Some(confirm) = &v.confirm {
        links.push((label("Confirmer", "Confirm"), confirm));
    }
    if let Some(cancel) = &v.cancel {
        links.push((label("Annuler", "Cancel"), cancel));
    }

    let mut text = format!("{headline}\n\n");
    for (l, value) in &lines {
        text.push_str(&format!(
            "{l}: {}\n",
            value.replace("\r\n", "\n").replace('\n', "\n    ")
        ));
    }
    for (l, url) in &links {
        text.push_str(&format!("\n{l}: {}\n", one_line(url, 2000)));
    }
    text.push_str(&format!("-- \n{}\n", one_line(v.company, 80)));

    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body style=\"font-family: sans-serif\">\n<h2>{}</h2>\n<table cellpadding=\"4\">\n",
        html(&subject),
        html(headline)
    );
    for (l, value) in &lines {
        page.push_str(&format!(
            "<tr><th align=\"left\" valign=\"top\">{}</th><td>{}</td></tr>\n",
            html(l),
            html(value).replace('\n', "<br>")
        ));
    }
    page.push_str("</table>\n");
    for (l, url) in &links {
        page.push_str(&format!(
            "<p><a href=\"{}\">{}</a></p>\n",
            html(&one_line(url, 2000)),
            html(l)
        ));
    }
    page.push_str(&format!(
        "<p><small>{}</small></p>\n</body></html>\n",
        html(v.company)
    ));

    let attachment = (to == Recipient::Client).then(|| {
        let calendar = ics::calendar(
            v.company,
            &[ics::Entry {
                uid: v.row.uid.clone(),
                sequence: v.row.sequence,
                status: status.unwrap_or(Status::Confirmed),
                span: v.span,
                summary: format!("{} ({})", v.executive, v.company),
                description: v.row.client.reason.clone(),
                location: Some(v.row.client.address.clone()).filter(|a| !a.is_empty()),
            }],
            v.now,
        );
        ("rendez-vous.ics".to_string(), calendar.into_bytes())
    });
    Email {
        subject,
        text,
        html: page,
        attachment,
    }
}

/// The webhook's JSON body for the executive's system: the appointment as it stands, and
/// the Confirm and Cancel links when there are some.
pub fn webhook_body(event: &str, v: &AppointmentView) -> Vec<u8> {
    let r = v.row;
    let body = serde_json::json!({
        "type": "appointment",
        "event": event,
        "company": { "id": r.company, "name": v.company },
        "executive": { "id": r.executive, "name": v.executive },
        "appointment": {
            "uid": r.uid,
            "status": r.status,
            "sequence": r.sequence,
            "starts_at": r.starts_at,
            "ends_at": r.ends_at,
            "client": r.client,
            "booked_by": r.booked_by,
            "call_id": r.call_id,
            "cancelled_by": r.cancelled_by,
            "cancel_reason": r.cancel_reason,
        },
        "confirm": v.confirm,
        "cancel": v.cancel,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agenda::Client;

    fn row(status: &str) -> AppointmentRow {
        AppointmentRow {
            id: 1,
            uid: "u1@permanence".into(),
            company: "acme".into(),
            executive: "marie".into(),
            starts_at: "2026-12-07T08:00:00Z".into(),
            ends_at: "2026-12-07T08:30:00Z".into(),
            status: status.into(),
            sequence: 1,
            call_id: None,
            message_id: None,
            client: Client {
                name: "Jean <b>\r\nBcc: x@evil.example".into(),
                phone: "06 12".into(),
                email: "jean@example.com".into(),
                address: "1 rue X".into(),
                reason: "fuite".into(),
            },
            booked_by: "alice".into(),
            booked_at: "2026-12-01T08:00:00Z".into(),
            cancelled_by: None,
            cancelled_at: None,
            cancel_reason: None,
        }
    }

    #[test]
    fn the_executive_gets_both_links_and_the_client_an_ics() {
        let tz = TimeZone::get("Europe/Paris").unwrap();
        let r = row("proposed");
        let view = AppointmentView {
            row: &r,
            span: r.span().unwrap(),
            company: "ACME",
            executive: "Marie",
            language: "fr",
            timezone: &tz,
            confirm: Some("https://p.example/a/c".into()),
            cancel: Some("https://p.example/a/x".into()),
            now: "2026-12-01T08:00:00Z".parse().unwrap(),
        };
        let e = appointment_email(&view, Recipient::Executive);
        assert!(
            e.subject
                .starts_with("[ACME] Rendez-vous à confirmer – Jean <b> Bcc"),
            "{}",
            e.subject
        );
        assert!(!e.subject.contains('\n'));
        assert!(
            e.subject.contains("2026-12-07 09:00–09:30"),
            "{}",
            e.subject
        );
        assert!(
            e.text.contains("Confirmer: https://p.example/a/c"),
            "{}",
            e.text
        );
        assert!(e.html.contains("Jean &lt;b&gt;"), "{}", e.html);
        assert!(e.attachment.is_none());

        let r = row("confirmed");
        let view = AppointmentView {
            row: &r,
            confirm: None,
            cancel: None,
            ..view
        };
        let e = appointment_email(&view, Recipient::Client);
        assert!(
            e.subject.starts_with("Rendez-vous confirmé – Marie"),
            "{}",
            e.subject
        );
        let (name, ics) = e.attachment.expect("an .ics");
        assert_eq!(name, "rendez-vous.ics");
        let ics = String::from_utf8(ics).unwrap();
        assert!(
            ics.contains("STATUS:CONFIRMED") && ics.contains("UID:u1@permanence"),
            "{ics}"
        );
        // The client is not shown the executive's links nor who booked it.
        assert!(
            !e.text.contains("alice") && !e.text.contains("/a/"),
            "{}",
            e.text
        );
    }
}
