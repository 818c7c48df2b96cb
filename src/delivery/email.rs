//! E-mail through SMTP with lettre (rustls with the `ring` provider; no native-tls): one
//! transport per server, with lettre's connection pool, built inside the delivery
//! worker's runtime. The e-mail's content is `compose`'s; here it becomes MIME: a
//! `multipart/alternative` of the plain text and the HTML, inside `multipart/mixed` when
//! a voicemail is attached.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::compose::{Email, one_line};
use crate::config::{SmtpConfig, SmtpSecurity};

/// SMTP connections kept open to the server at most: the worker's sends at once. Each
/// e-mail waits on a few round trips (and on loopback, lettre's unbuffered writes meet
/// delayed ACKs: tens of ms), so throughput comes from sending several at once.
pub const CONNECTIONS: u32 = 16;

/// Why an e-mail did not go.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// The From or To address, or the message, cannot be written (retrying cannot help).
    #[error("cannot write the e-mail: {0}")]
    Build(String),
    /// The SMTP server could not be reached or refused (its reply, on one line).
    #[error("SMTP: {message}")]
    Smtp {
        /// What went wrong.
        message: String,
        /// Whether the server refused it for good (a 5xx reply).
        permanent: bool,
    },
}

impl EmailError {
    /// Whether trying again later may succeed: not for a message that cannot be written or
    /// that the server refused for good (5xx); yes for a server down, slow or busy (4xx).
    pub fn retryable(&self) -> bool {
        match self {
            EmailError::Build(_) => false,
            EmailError::Smtp { permanent, .. } => !permanent,
        }
    }
}

/// The SMTP server and the sender of every e-mail.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The domain of our Message-IDs (the sender's).
    domain: String,
}

impl Mailer {
    /// The transport `[smtp]` describes. Must be called inside a tokio runtime (the pool's
    /// clean-up task runs there).
    pub fn new(smtp: &SmtpConfig) -> Result<Mailer, EmailError> {
        let from: Mailbox = smtp
            .from
            .parse()
            .map_err(|e| EmailError::Build(format!("smtp.from: {e}")))?;
        let domain = from.email.domain().to_string();
        let builder = match smtp.security {
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.server),
            SmtpSecurity::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.server)
            }
            // `Config::load` allows it only towards a loopback server.
            SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                smtp.server.as_str(),
            )),
        }
        .map_err(|e| EmailError::Build(format!("smtp: {e}")))?;
        let mut builder = builder
            .port(smtp.port)
            .timeout(Some(Duration::from_secs(smtp.timeout_seconds)))
            .pool_config(PoolConfig::new().max_size(CONNECTIONS));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            domain,
        })
    }

    /// Sends one e-mail to `to` (named `to_name`), with `message_id` (unique per outbox
    /// row, so that a receiver may tell a re-sent copy from a new message).
    pub async fn send(
        &self,
        to_name: &str,
        to: &str,
        email: &Email,
        message_id: &str,
    ) -> Result<(), EmailError> {
        let message = self.message(to_name, to, email, message_id)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| EmailError::Smtp {
                message: one_line(&e.to_string(), 300),
                permanent: e.is_permanent(),
            })
    }

    /// The MIME message. Every header value is one line already (`compose::one_line`);
    /// lettre encodes non-ASCII text (RFC 2047) and the bodies (quoted-printable, base64).
    pub fn message(
        &self,
        to_name: &str,
        to: &str,
        email: &Email,
        message_id: &str,
    ) -> Result<Message, EmailError> {
        let address = to
            .parse()
            .map_err(|e| EmailError::Build(format!("to {}: {e}", one_line(to, 254))))?;
        let name = one_line(to_name, 80);
        let to = Mailbox::new((!name.is_empty()).then_some(name), address);
        let alternative = MultiPart::alternative_plain_html(email.text.clone(), email.html.clone());
        let body = match &email.attachment {
            Some((file, bytes)) => MultiPart::mixed().multipart(alternative).singlepart(
                Attachment::new(one_line(file, 100)).body(
                    bytes.clone(),
                    // A voicemail, or an appointment for the client's calendar.
                    ContentType::parse(if file.ends_with(".ics") {
                        "text/calendar; charset=utf-8"
                    } else {
                        "audio/wav"
                    })
                    .map_err(|e| EmailError::Build(e.to_string()))?,
                ),
            ),
            None => alternative,
        };
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(one_line(&email.subject, 200))
            .message_id(Some(format!(
                "<{}@{}>",
                one_line(message_id, 100),
                self.domain
            )))
            .multipart(body)
            .map_err(|e| EmailError::Build(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp() -> SmtpConfig {
        toml::from_str::<crate::config::Config>(
            "[smtp]\nserver = \"127.0.0.1\"\nsecurity = \"none\"\nfrom = \"Permanence <permanence@secretariat.example>\"\n",
        )
        .unwrap()
        .smtp
        .unwrap()
    }

    #[tokio::test]
    async fn a_line_break_in_a_name_or_subject_never_makes_a_header() {
        let mailer = Mailer::new(&smtp()).unwrap();
        let email = Email {
            subject: "[ACME] URGENT – Syndic\r\nBcc: x@evil.example".into(),
            text: "Bonjour\r\nBcc: y@evil.example\n".into(),
            html: "<p>x</p>".into(),
            attachment: Some(("call-1.wav".into(), b"RIFF\0\0\0\0WAVE".to_vec())),
        };
        let message = mailer
            .message(
                "Marie\r\nCc: z@evil.example",
                "marie@acme.example",
                &email,
                "permanence.1.x",
            )
            .unwrap();
        assert_eq!(
            message
                .envelope()
                .to()
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
            ["marie@acme.example"]
        );
        let raw = String::from_utf8_lossy(&message.formatted()).into_owned();
        let head = raw.split("\r\n\r\n").next().unwrap();
        for line in head.lines() {
            let name = line.split(':').next().unwrap_or("");
            assert!(
                !name.eq_ignore_ascii_case("bcc") && !name.eq_ignore_ascii_case("cc"),
                "{line}\n{head}"
            );
        }
        assert!(
            head.contains("Message-ID: <permanence.1.x@secretariat.example>"),
            "{head}"
        );
        assert!(raw.contains("multipart/mixed") && raw.contains("multipart/alternative"));
        assert!(raw.contains("Content-Type: audio/wav"), "{raw}");
        assert!(raw.contains("filename=\"call-1.wav\""), "{raw}");
    }

    #[test]
    fn only_a_refusal_for_good_is_not_retried() {
        assert!(!EmailError::Build("x".into()).retryable());
        let smtp = |permanent| EmailError::Smtp {
            message: "x".into(),
            permanent,
        };
        assert!(!smtp(true).retryable());
        assert!(smtp(false).retryable());
    }
}
