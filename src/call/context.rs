//! What every call shares: the plans in force, the media engine, the store, the endpoint,
//! the desk and the settings a call needs. Below both the call task and its outbound side,
//! which each hold a reference to it.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::media::{MediaHandle, StreamId};
use crate::sdp::{self, LocalMedia, Negotiated};
use crate::sip::endpoint::Input;
use crate::snapshot::Snapshot;
use crate::store::{CallIds, Writer};

/// What every call task shares.
pub struct CallContext {
    /// The current snapshot; a call takes one at its start and keeps it.
    pub snapshot: RwLock<Arc<Snapshot>>,
    /// The RTP engine.
    pub media: MediaHandle,
    /// Records.
    pub store: Writer,
    /// Call row ids.
    pub ids: CallIds,
    /// The SIP endpoint.
    pub endpoint: mpsc::UnboundedSender<Input>,
    /// Our SIP address, for Contact and Via.
    pub local_sip: SocketAddr,
    /// Our SIP over TLS address, when it listens.
    pub local_tls: Option<SocketAddr>,
    /// The data directory: recordings go under `recordings/` there, and are recorded by
    /// their path relative to it, so that any reader finds them wherever it runs.
    pub data: std::path::PathBuf,
    /// Seconds of quiet after speech that end a recording.
    pub silence_seconds: u32,
    /// Quiet from the beep on that ends a recording nobody speaks into.
    pub no_speech: Option<std::time::Duration>,
    /// A caller who gives up after this long left a missed call (`[inbox]`).
    pub missed_call_seconds: u64,
    /// Calls to unknown numbers per source and minute that get a row of their own.
    pub unknown_numbers: std::sync::Mutex<crate::pike::Pike>,
    /// Counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Secretaries: registrations and activity.
    pub desk: Arc<crate::desk::Desk>,
    /// How long a bridged leg may send no RTP before the call is ended.
    pub rtp_timeout: Option<std::time::Duration>,
    /// The SIP trunk for numbers, if any.
    pub trunk: Option<crate::config::TrunkConfig>,
    /// The live calls the console may ask something of, by row id.
    pub controls: crate::call::control::Controls,
    /// Secretaries' browser phones (rung like registered phones).
    pub phones: Arc<crate::media::webrtc::Phones>,
    /// The numbers each company blocked, in force (the console changes it; the CLI too).
    pub blocked: Arc<crate::blocklist::live::Live>,
    /// Companies' lines switched by hand (closed or open until a time), for routing.
    pub lines: Arc<crate::line::Lines>,
    /// Executives who asked not to be disturbed (from their page), until when.
    pub dnd: Arc<crate::dnd::InForce>,
    /// The webhooks messages are POSTed to (`[[webhooks]]`), for the delivery rules.
    pub webhooks: Arc<[crate::config::WebhookConfig]>,
}

impl CallContext {
    /// Where numbers are sent, as the outbound machine reads it.
    pub fn trunk_route(&self) -> Option<crate::call::outbound::machine::TrunkRoute> {
        self.trunk
            .as_ref()
            .map(|t| crate::call::outbound::machine::TrunkRoute {
                proxy: t.proxy,
                domain: t.domain.clone().unwrap_or_else(|| t.proxy.to_string()),
            })
    }

    /// The plans and sounds in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => Arc::clone(&s),
            // A writer never panics while holding the lock; if one did, the data is still whole.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Applies a new offer inside a dialog (a re-INVITE: hold, codec or address change) to a
    /// stream: the codec and where to send follow it; our SDP version goes up when our side
    /// changes (RFC 3264 §8). An empty body (no new offer) changes nothing.
    pub fn reoffer(
        &self,
        stream: StreamId,
        local: &mut LocalMedia,
        current: &mut Negotiated,
        body: &[u8],
    ) -> Result<(), sdp::SdpError> {
        if body.is_empty() {
            return Ok(());
        }
        let n = sdp::negotiate(body)?;
        if n.codec != current.codec || n.payload_type != current.payload_type {
            self.media.set_codec(stream, n.codec, n.payload_type);
            local.version += 1;
        }
        if n.remote_rtp != current.remote_rtp {
            self.media.set_remote(stream, n.remote_rtp);
        }
        *current = n;
        Ok(())
    }
}
