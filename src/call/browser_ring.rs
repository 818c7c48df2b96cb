//! A leg to a secretary's browser phone, carried out the same way by both call shells
//! (a caller's [`super::outbound`] and a task's [`super::callout`]): a ring on her page,
//! stopped or hung up there; once she answers, her peer connection opened as one of the
//! call's streams in the engine. Her clicks come back through [`super::control`].

use tokio::sync::mpsc;

use super::context::CallContext;
use crate::media::{MediaEvent, StreamId};
use crate::store::CallRowId;

/// One ring of her browser phone for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserRing {
    who: String,
    ring: u64,
}

impl BrowserRing {
    /// Rings `who`'s browser for `call`, showing `display` (`outgoing`: a call she placed
    /// from a task); None when her phone is not connected.
    pub fn ring(
        ctx: &CallContext,
        who: &str,
        call: CallRowId,
        display: &str,
        outgoing: bool,
    ) -> Option<BrowserRing> {
        let ring = ctx.phones.ring(who, call, display, outgoing)?;
        Some(BrowserRing {
            who: who.to_string(),
            ring,
        })
    }

    /// Whether her click (`secretary`, `ring`) is about this ring: only her own.
    pub fn is(&self, secretary: &str, ring: u64) -> bool {
        self.who == secretary && self.ring == ring
    }

    /// Whether her answer can carry audio (her phone is still connected).
    pub fn usable(&self, ctx: &CallContext) -> bool {
        ctx.phones.is_connected(&self.who)
    }

    /// The ring stopped without her answer.
    pub fn cancel(&self, ctx: &CallContext) {
        ctx.phones.cancel(&self.who, self.ring);
    }

    /// The call she answered is over.
    pub fn hang_up(&self, ctx: &CallContext) {
        ctx.phones.hang_up(&self.who, self.ring);
    }

    /// Her browser's audio as a stream of the call (events to `events`); None when her
    /// phone went away meanwhile.
    pub fn open(
        &self,
        ctx: &CallContext,
        events: mpsc::UnboundedSender<(StreamId, MediaEvent)>,
    ) -> Option<StreamId> {
        let link = ctx.phones.attach(&self.who)?;
        Some(ctx.media.open_browser(link, events))
    }
}
