//! What happens during a call, as typed values: the call's timeline in the store, the
//! `simulate` transcript, and later the console's board and delivery all read these.
//! Each event has a fixed kind (`secretary-answered`) and JSON details, serialised here
//! and nowhere else.

use serde::Serialize;

/// Whom an outbound leg calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A secretary's phone (a `secretary` step).
    Secretary,
    /// An executive's phone or number (a `transfer` step or a REFER).
    Executive,
    /// A task's customer, called through the trunk (a call placed from a task).
    Customer,
}

/// One entry of a call's timeline.
///
/// Serialised untagged: the variant is the event's kind ([`CallEvent::kind`]), its fields
/// are the details ([`CallEvent::data`]). A variant without details is written `Name {}`
/// so that its details are `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CallEvent {
    // ----------------------------------------------------------------- the plan
    /// The dialled number belongs to no company.
    UnknownNumber { uri: String },
    /// No route of the company's plan matches the call.
    NoRoute {},
    /// The company's line was switched by hand (`closed` or `open` until a time, RFC 3339
    /// UTC) when the call was routed, and that decided an `open` condition.
    LineOverride {
        state: String,
        until: String,
        reason: String,
        by: String,
    },
    /// The caller is in the company's contacts under this name.
    Contact { name: String },
    /// The company blocked the caller's number: who did, why, since when.
    Blocked {
        by: String,
        reason: String,
        since: String,
    },
    /// The caller's number is in an ARCEP telemarketing range; the company's policy
    /// (`label` or `refuse`) says what became of the call.
    Telemarketing { policy: String },
    /// A step this server cannot run yet: the plan falls through.
    StepUnavailable { step: String, why: String },
    /// A step skipped because it no longer applies.
    StepSkipped { step: String, why: String },
    /// The caller hears ringback for this long before the plan goes on.
    Ringing { seconds: u32 },
    /// A sound plays to the caller.
    Play { sound: String, times: u32 },
    /// A menu's prompt plays.
    Menu { prompt: String },
    /// The caller chose a menu entry.
    MenuChoice { digit: String, list: String },
    /// The caller pressed a key the menu does not know.
    MenuInvalid { digit: String },
    /// The menu waited in vain for a key.
    MenuTimeout {},
    /// The menu gave up after its attempts.
    MenuFailed {},
    /// The plan jumped to a named list of steps.
    Goto { list: String },
    /// A transfer step skipped: the executive is outside their hours (company time).
    ExecutiveOffHours { executive: String, local: String },
    /// An executive not called: they set do-not-disturb from their page, until this time
    /// (RFC 3339 UTC). A plan's transfer step goes on with the next step.
    ExecutiveDnd { executive: String, until: String },
    /// The voicemail prompt plays; recording follows.
    Voicemail { prompt: String, max_seconds: u32 },
    /// The plan refuses the call with this status.
    Reject { code: u16 },
    /// The goodbye sound plays before we hang up.
    Goodbye { sound: String },
    // ----------------------------------------------------------------- the caller's leg
    /// We could not accept the caller's offer.
    OfferRefused { why: String, status: u16 },
    /// The caller cancelled before we answered.
    Cancelled {},
    /// The caller hung up.
    CallerHungUp {},
    /// The caller sent BYE.
    ByeReceived {},
    /// We sent BYE (to the caller, or to the leg named `to`).
    ByeSent {
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// Our BYE was never answered.
    ByeUnanswered {},
    /// The caller never acknowledged our answer.
    NoAck {},
    /// The server stops: the call ends now.
    ServerStopping {},
    /// A re-INVITE (hold, resume, new address) was accepted.
    Reinvite {},
    /// A re-INVITE was refused.
    ReinviteRefused { why: String },
    /// A key, by RTP (RFC 4733, with its timestamp) or by SIP INFO.
    Digit {
        key: String,
        via: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        rtp_timestamp: Option<u32>,
    },
    /// Audio from this address is accepted as the peer's (for the leg named `leg`).
    RtpLatched {
        from: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        leg: Option<String>,
    },
    /// No audio for too long: the call is cut.
    RtpTimeout {},
    /// The recording stopped for this reason after this many milliseconds.
    RecordingStopped { reason: String, ms: i64 },
    /// The recording could not be saved.
    RecordingLost { error: String, ms: i64 },
    // ----------------------------------------------------------------- outbound legs
    /// A phone is rung.
    Offered {
        #[serde(skip)]
        role: Role,
        to: String,
        contact: String,
        via: String,
    },
    /// A phone rings (a provisional response).
    LegRinging {
        #[serde(skip)]
        role: Role,
        to: String,
        status: u16,
    },
    /// A phone answered.
    Answered {
        #[serde(skip)]
        role: Role,
        to: String,
    },
    /// A phone refused or failed.
    Declined {
        #[serde(skip)]
        role: Role,
        to: String,
        status: u16,
    },
    /// We stopped ringing a phone.
    LegCancelled {
        #[serde(skip)]
        role: Role,
        to: String,
    },
    /// The person the caller talked to hung up.
    HungUp {
        #[serde(skip)]
        role: Role,
        to: String,
    },
    /// The provider asked for credentials; the INVITE went again with them.
    TrunkAuthenticated { to: String, status: u16 },
    /// A phone answered with SDP we cannot use.
    UnusableAnswer { to: String },
    /// No secretary took the call.
    SecretaryUnanswered { why: String },
    /// Nobody was free: the caller waits in the company's queue.
    Queued {},
    /// The caller's wait ended (`answered`, `timeout`, `nobody-left`, `hung-up`) after
    /// this many milliseconds.
    Dequeued { wait_ms: u64, why: String },
    /// An executive (or URI) is being called.
    Transfer {
        to: String,
        screening: bool,
        by: Option<String>,
    },
    /// A reach entry that rings nowhere now.
    ExecutiveUnreachable { executive: String, reach: String },
    /// The transfer reached nobody, or was refused.
    TransferFailed { to: String, why: String },
    /// The screened executive pressed a key.
    ScreeningKey { key: String },
    /// The screened executive accepted.
    ExecutiveAccepted { executive: String },
    /// The screened executive refused, said nothing, or hung up.
    ExecutiveRefused { executive: String, why: String },
    /// The caller is connected to the executive.
    Transferred { to: String, by: Option<String> },
    /// A secretary wrote (or edited) the call's message in the console.
    MessageWritten { by: String, category: String },
    /// Someone changed the message's status in the inbox (`done`, back to `new`…).
    MessageStatus { by: String, status: String },
    /// A secretary's REFER was accepted.
    Refer { by: String, to: String },
    /// A secretary's REFER was refused.
    ReferRefused {
        by: String,
        to: Option<String>,
        status: u16,
    },
    /// A secretary asked from the console to put the caller through to an executive.
    ConsoleTransfer { by: String, to: String },
    /// The console's transfer was refused, and why (`not-hers`, `not-connected`,
    /// `in-progress`, `unknown-executive`, `unreachable`, `dnd`).
    ConsoleTransferRefused { by: String, to: String, why: String },
    /// An appointment booked from this call changed (`booked`, `confirmed`, `cancelled`,
    /// `moved`, `done`): who, and when it now starts (RFC 3339 UTC).
    Appointment {
        uid: String,
        what: String,
        starts: String,
        by: String,
    },
}

impl CallEvent {
    /// The kind stored in `events.kind`: stable, kebab-case.
    pub fn kind(&self) -> &'static str {
        use CallEvent as E;
        use Role::{Customer as C, Executive as X, Secretary as S};
        match self {
            E::UnknownNumber { .. } => "unknown-number",
            E::NoRoute {} => "no-route",
            E::LineOverride { .. } => "line-override",
            E::Contact { .. } => "contact",
            E::Blocked { .. } => "blocked",
            E::Telemarketing { .. } => "telemarketing",
            E::StepUnavailable { .. } => "step-unavailable",
            E::StepSkipped { .. } => "step-skipped",
            E::Ringing { .. } => "ringing",
            E::Play { .. } => "play",
            E::Menu { .. } => "menu",
            E::MenuChoice { .. } => "menu-choice",
            E::MenuInvalid { .. } => "menu-invalid",
            E::MenuTimeout {} => "menu-timeout",
            E::MenuFailed {} => "menu-failed",
            E::Goto { .. } => "goto",
            E::ExecutiveOffHours { .. } => "executive-off-hours",
            E::ExecutiveDnd { .. } => "executive-dnd",
            E::Voicemail { .. } => "voicemail",
            E::Reject { .. } => "reject",
            E::Goodbye { .. } => "goodbye",
            E::OfferRefused { .. } => "offer-refused",
            E::Cancelled {} => "cancelled",
            E::CallerHungUp {} => "caller-hung-up",
            E::ByeReceived {} => "bye-received",
            E::ByeSent { .. } => "bye-sent",
            E::ByeUnanswered {} => "bye-unanswered",
            E::NoAck {} => "no-ack",
            E::ServerStopping {} => "server-stopping",
            E::Reinvite {} => "reinvite",
            E::ReinviteRefused { .. } => "reinvite-refused",
            E::Digit { .. } => "digit",
            E::RtpLatched { .. } => "rtp-latched",
            E::RtpTimeout {} => "rtp-timeout",
            E::RecordingStopped { .. } => "recording-stopped",
            E::RecordingLost { .. } => "recording-lost",
            E::Offered { role: S, .. } => "secretary-offered",
            E::Offered { role: X, .. } => "executive-offered",
            E::Offered { role: C, .. } => "customer-offered",
            E::LegRinging { role: S, .. } => "secretary-ringing",
            E::LegRinging { role: X, .. } => "executive-ringing",
            E::LegRinging { role: C, .. } => "customer-ringing",
            E::Answered { role: S, .. } => "secretary-answered",
            E::Answered { role: X, .. } => "executive-answered",
            E::Answered { role: C, .. } => "customer-answered",
            E::Declined { role: S, .. } => "secretary-declined",
            E::Declined { role: X, .. } => "executive-declined",
            E::Declined { role: C, .. } => "customer-declined",
            E::LegCancelled { role: S, .. } => "secretary-cancelled",
            E::LegCancelled { role: X, .. } => "executive-cancelled",
            E::LegCancelled { role: C, .. } => "customer-cancelled",
            E::HungUp { role: S, .. } => "secretary-hung-up",
            E::HungUp { role: X, .. } => "executive-hung-up",
            E::HungUp { role: C, .. } => "customer-hung-up",
            E::TrunkAuthenticated { .. } => "trunk-authenticated",
            E::UnusableAnswer { .. } => "unusable-answer",
            E::SecretaryUnanswered { .. } => "secretary-unanswered",
            E::Queued {} => "queued",
            E::Dequeued { .. } => "dequeued",
            E::Transfer { .. } => "transfer",
            E::ExecutiveUnreachable { .. } => "executive-unreachable",
            E::TransferFailed { .. } => "transfer-failed",
            E::ScreeningKey { .. } => "screening-key",
            E::ExecutiveAccepted { .. } => "executive-accepted",
            E::ExecutiveRefused { .. } => "executive-refused",
            E::Transferred { .. } => "transferred",
            E::MessageWritten { .. } => "message-written",
            E::MessageStatus { .. } => "message-status",
            E::Refer { .. } => "refer",
            E::ReferRefused { .. } => "refer-refused",
            E::ConsoleTransfer { .. } => "console-transfer",
            E::ConsoleTransferRefused { .. } => "console-transfer-refused",
            E::Appointment { .. } => "appointment",
        }
    }

    /// The details as a JSON object, keys sorted.
    pub fn data(&self) -> String {
        // Through `Value` (a sorted map) so that every kind's keys come out in one order.
        serde_json::to_value(self).map_or_else(|_| "{}".to_string(), |v| v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_details_are_what_the_timeline_stored_before() {
        let e = CallEvent::MenuChoice {
            digit: "2".into(),
            list: "message".into(),
        };
        assert_eq!(e.kind(), "menu-choice");
        assert_eq!(e.data(), r#"{"digit":"2","list":"message"}"#);
        assert_eq!(CallEvent::MenuTimeout {}.data(), "{}");
        let offered = CallEvent::Offered {
            role: Role::Executive,
            to: "marie".into(),
            contact: "sip:marie@127.0.0.1".into(),
            via: "127.0.0.1:5070".into(),
        };
        assert_eq!(offered.kind(), "executive-offered");
        assert_eq!(
            offered.data(),
            r#"{"contact":"sip:marie@127.0.0.1","to":"marie","via":"127.0.0.1:5070"}"#,
            "the role is in the kind, not repeated in the details"
        );
        let by = CallEvent::Transfer {
            to: "marie".into(),
            screening: false,
            by: None,
        };
        assert_eq!(by.data(), r#"{"by":null,"screening":false,"to":"marie"}"#);
        let info = CallEvent::Digit {
            key: "5".into(),
            via: "info".into(),
            rtp_timestamp: None,
        };
        assert_eq!(info.data(), r#"{"key":"5","via":"info"}"#);
    }
}
