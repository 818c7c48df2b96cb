//! E-mail through SMTP with lettre (rustls with the `ring` provider; no native-tls): one
//! transport per server, with lettre's connection pool, built inside the delivery
//! worker's runtime. The e-mail's content is `compose`'s; here it becomes MIME: a
//! `multipart/alternative` of the plain text and the HTML, inside `multipart/mixed` when
//! a voicemail is attached.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::compose::{Email, one_line};
use crate::config::{SmtpConfig, SmtpSecurity};

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
            .timeout(Some(Duration::from_secs(smtp.timeout_seconds)));
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
                    ContentType::parse("audio/wav")
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
