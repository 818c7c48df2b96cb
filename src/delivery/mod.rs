//! Messages reach the executive: through an outbox of deliveries (one SQLite row each,
//! written in the same transaction as the message change that caused it) and a worker
//! that sends them with retries.
//!
//! Pure: `rules` (which deliveries a message makes), `backoff` (when to try again, when to
//! give up), `digest` (which held messages make which daily summary), `compose` (an
//! e-mail's subject, text and HTML, a webhook's body). Shell: `worker` (the thread that
//! sends what is due), `email` (SMTP through lettre), `webhook` (signed POSTs).

pub mod appointment;
pub mod backoff;
pub mod compose;
pub mod digest;
pub mod email;
pub mod rules;
pub mod webhook;
pub mod worker;

use std::sync::Arc;

use crate::config::WebhookConfig;
use crate::dialplan::Company;

/// The delivery rules in force for one company when a record was made: its plan (its
/// executives, their rules, the default executive, its time zone) and the webhooks. The
/// records that may deliver carry it, so that the store writes the deliveries in the same
/// transaction as the change, decided by the rules the change was made under.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The company's plan.
    pub company: Arc<Company>,
    /// Every configured webhook (those for this company are picked by `rules::webhooks_for`).
    pub webhooks: Arc<[WebhookConfig]>,
}

/// How e-mails link to the executive's page: the console's public address and the key
/// links are signed with. None when the console is not served (no address to give).
#[derive(Clone)]
pub struct Links {
    /// `[web] public_url`, or the console's own address.
    pub base: String,
    /// The server's signing key (`data/executive-links.key`).
    pub key: Arc<crate::executive_link::LinkKey>,
}

impl Links {
    /// The executive's page made at `now` for an e-mail: one message's page, or their list
    /// (a summary).
    pub fn to(&self, executive: &str, call: Option<i64>, now: jiff::Timestamp) -> String {
        let list = crate::executive_link::link(&self.base, &self.key, executive, now);
        match call {
            Some(call) => format!("{list}/messages/{call}"),
            None => list,
        }
    }
}
