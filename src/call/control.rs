//! What the console asks of a live call. The console knows a call by its row id (the desk
//! names the one a secretary is on); while a call's task runs, it registers a small
//! channel under that id, takes each request as one more input and answers on a oneshot.
//! The map is held only for a lookup; the call's state stays its task's own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::outbound::machine::TransferRefused;
use crate::store::CallRowId;

/// Requests waiting for one call's task: a few, since each is answered at once.
const BACKLOG: usize = 4;

/// How long the console waits for a call's answer (the task answers as soon as it runs).
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// One request to a live call.
#[derive(Debug)]
pub enum Control {
    /// Put the caller through to one of the company's executives, for this secretary.
    Transfer {
        /// Who asks (her SIP username, from her session).
        secretary: String,
        /// The executive's id in the company's plan.
        executive: String,
        /// Started, or why not.
        reply: oneshot::Sender<Result<(), TransferRefused>>,
    },
    /// What she did on her browser phone about a ring of this call.
    Browser {
        /// Whose phone (her SIP username, from her session).
        secretary: String,
        /// The ring's number (`media::webrtc::PhoneNote::Ring`).
        ring: u64,
        /// What she did.
        action: BrowserAction,
    },
}

/// What a secretary does on her browser phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserAction {
    /// Takes the call.
    Answer,
    /// Refuses it while it rings.
    Decline,
    /// Ends the call she took (or stops the ring).
    HangUp,
    /// Puts the caller on hold (music) or back.
    Hold(bool),
}

/// Why a request did not reach a decision, or the call's refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The call refused it.
    #[error(transparent)]
    Refused(#[from] TransferRefused),
    /// No live call by that id (it ended, or never was).
    #[error("the call is over")]
    Gone,
    /// The call did not take the request in time.
    #[error("the call is busy, try again")]
    Busy,
}

/// The live calls' channels, by row id.
#[derive(Debug, Default)]
pub struct Controls {
    /// Boxed: a channel allocates room for 32 requests when it is made, one per live call,
    /// and a console request is rare (issue 16: 1.5 KB less per live call).
    live: Mutex<HashMap<CallRowId, mpsc::Sender<Box<Control>>>>,
}

impl Controls {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<CallRowId, mpsc::Sender<Box<Control>>>> {
        // A panic elsewhere cannot leave the map half-changed: each use is one operation.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a call reachable by its row id until the returned registration drops.
    pub fn register(&self, call: CallRowId) -> (Registration<'_>, mpsc::Receiver<Box<Control>>) {
        let (tx, rx) = mpsc::channel(BACKLOG);
        self.live().insert(call, tx);
        (
            Registration {
                controls: self,
                call,
            },
            rx,
        )
    }

    /// Asks a live call to transfer its caller to `executive` for `secretary`.
    pub async fn transfer(
        &self,
        call: CallRowId,
        secretary: &str,
        executive: &str,
    ) -> Result<(), ControlError> {
        let (reply, answer) = oneshot::channel();
        let request = Control::Transfer {
            secretary: secretary.to_string(),
            executive: executive.to_string(),
            reply,
        };
        self.send(call, request)?;
        match tokio::time::timeout(ANSWER_WAIT, answer).await {
            Ok(Ok(decided)) => Ok(decided?),
            // The task ended without answering.
            Ok(Err(_)) => Err(ControlError::Gone),
            Err(_) => Err(ControlError::Busy),
        }
    }

    /// Tells a live call what she did on her browser phone (no answer: the call's news
    /// reach her page as rings, cancels and hang-ups).
    pub fn browser(
        &self,
        call: CallRowId,
        secretary: &str,
        ring: u64,
        action: BrowserAction,
    ) -> Result<(), ControlError> {
        self.send(
            call,
            Control::Browser {
                secretary: secretary.to_string(),
                ring,
                action,
            },
        )
    }

    fn send(&self, call: CallRowId, request: Control) -> Result<(), ControlError> {
        let tx = self.live().get(&call).cloned().ok_or(ControlError::Gone)?;
        tx.try_send(Box::new(request)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ControlError::Busy,
            mpsc::error::TrySendError::Closed(_) => ControlError::Gone,
        })
    }
}

/// A call reachable by the console; it no longer is once this drops (the call's end).
#[derive(Debug)]
pub struct Registration<'a> {
    controls: &'a Controls,
    call: CallRowId,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.controls.live().remove(&self.call);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_reaches_the_registered_call_and_its_answer_comes_back() {
        let controls = Controls::default();
        let (registration, mut rx) = controls.register(7);
        let call = async {
            match rx.recv().await.map(|c| *c) {
                Some(Control::Transfer {
                    secretary,
                    executive,
                    reply,
                }) => {
                    assert_eq!((secretary.as_str(), executive.as_str()), ("alice", "marie"));
                    let _ = reply.send(Err(TransferRefused::Unreachable));
                }
                Some(Control::Browser { .. }) => panic!("not a transfer"),
                None => panic!("no request"),
            }
        };
        let (asked, ()) = tokio::join!(controls.transfer(7, "alice", "marie"), call);
        assert_eq!(
            asked,
            Err(ControlError::Refused(TransferRefused::Unreachable))
        );
        drop(registration);
        assert_eq!(
            controls.transfer(7, "alice", "marie").await,
            Err(ControlError::Gone),
            "an ended call is gone"
        );
    }

    #[tokio::test]
    async fn an_unknown_call_and_a_task_that_drops_the_request_are_gone() {
        let controls = Controls::default();
        assert_eq!(
            controls.transfer(1, "alice", "marie").await,
            Err(ControlError::Gone)
        );
        let (_registration, mut rx) = controls.register(2);
        let call = async { drop(rx.recv().await) };
        let (asked, ()) = tokio::join!(controls.transfer(2, "alice", "marie"), call);
        assert_eq!(asked, Err(ControlError::Gone));
    }

    #[tokio::test]
    async fn a_call_that_does_not_answer_in_time_is_busy() {
        let controls = Controls::default();
        let (_registration, _rx) = controls.register(3);
        assert_eq!(
            controls.transfer(3, "alice", "marie").await,
            Err(ControlError::Busy)
        );
    }
}
