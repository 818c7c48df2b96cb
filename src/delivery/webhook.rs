//! Webhook deliveries: a JSON POST signed per Standard Webhooks. Not built yet: this stub
//! has the signature the outbox worker calls and says every attempt should be retried,
//! so webhook rows wait in the outbox (and fail after `[delivery] give_up_hours`).

use crate::config::WebhookConfig;

/// Why a webhook POST did not go through.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Sending webhooks is not built into this server yet.
    #[error("webhooks are not built yet")]
    NotBuilt,
}

impl WebhookError {
    /// Whether trying again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            WebhookError::NotBuilt => true,
        }
    }
}

/// POSTs `body` to the hook, `id` as its idempotency key (`webhook-id`), signed at `now`.
pub async fn send(
    hook: &WebhookConfig,
    id: &str,
    body: &[u8],
    now: jiff::Timestamp,
) -> Result<(), WebhookError> {
    let _ = (hook, id, body, now);
    Err(WebhookError::NotBuilt)
}
