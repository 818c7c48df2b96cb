//! A call placed for a company from one of its tasks, as decisions: ring the secretary's
//! phones; the first to answer wins and the others are cancelled; then dial the customer
//! through the trunk while she hears ringback; bridge when they answer; either side's
//! hang-up ends the other. Pure: inputs with the time, [`Output`]s drained by the shell.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::followup::AttemptResult;
use crate::store::Outcome;

/// How long her phones ring before the call is given up: a secretary who clicked "call"
/// is at her desk; 30 s is the plans' usual `secretary` timeout.
pub const HER_RING: Duration = Duration::from_secs(30);
/// How long the customer's phone rings: past a minute a mobile's voicemail has long
/// answered, and a fixed line that rings on is nobody's.
pub const CUSTOMER_RING: Duration = Duration::from_secs(60);

/// One of her phones (its index among the INVITEs sent to her bindings).
pub type Phone = usize;

/// Which side of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The secretary's phone that answered.
    Her,
    /// The customer, through the trunk.
    Customer,
}

/// Where the call stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Her phones ring (those still ringing).
    RingingHer(BTreeSet<Phone>),
    /// She answered on this phone; the customer's phone rings.
    Dialling(Phone),
    /// Both talk.
    Talking(Phone),
    /// Over.
    Over,
}

/// What the shell does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Ring each of her phones.
    InviteHer(Vec<Phone>),
    /// CANCEL the INVITE to this phone of hers.
    CancelHer(Phone),
    /// BYE this phone of hers (answered).
    ByeHer(Phone),
    /// Open her answered phone's audio and mark her on the call (desk).
    OpenHer(Phone),
    /// Ringback on her audio while the customer's phone rings.
    Ringback,
    /// INVITE the customer through the trunk.
    InviteCustomer,
    /// CANCEL the customer's INVITE.
    CancelCustomer,
    /// BYE the customer.
    ByeCustomer,
    /// Open the customer's audio, bridge it with hers, record that she handled the call.
    Bridge,
    /// The call is over: its outcome, the task's attempt (None: she never answered, so no
    /// attempt was made), and whether she talked (wrap-up) or not (available again).
    Finished {
        /// The calls row's outcome.
        outcome: Outcome,
        /// The attempt to log on the task.
        attempt: Option<AttemptResult>,
        /// She answered her phone: wrap-up rather than release.
        wrap_up: bool,
    },
}

/// One call placed for a task.
#[derive(Debug)]
pub struct CallOut {
    stage: Stage,
    deadline: Option<Instant>,
    outputs: VecDeque<Output>,
}

impl CallOut {
    /// Rings her `phones` (at least one; the desk gave them).
    pub fn new(phones: usize, now: Instant) -> CallOut {
        let all: Vec<Phone> = (0..phones).collect();
        let mut out = CallOut {
            stage: Stage::RingingHer(all.iter().copied().collect()),
            deadline: Some(now + HER_RING),
            outputs: VecDeque::new(),
        };
        out.outputs.push_back(Output::InviteHer(all));
        if phones == 0 {
            out.finish(Outcome::Failed, None, false);
        }
        out
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`CallOut::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the call is over.
    pub fn is_over(&self) -> bool {
        self.stage == Stage::Over
    }

    fn finish(&mut self, outcome: Outcome, attempt: Option<AttemptResult>, wrap_up: bool) {
        self.stage = Stage::Over;
        self.deadline = None;
        self.outputs.push_back(Output::Finished {
            outcome,
            attempt,
            wrap_up,
        });
    }

    /// One of her phones answered (2xx with usable audio, or not).
    pub fn handle_her_answer(&mut self, phone: Phone, usable: bool, now: Instant) {
        match &self.stage {
            Stage::RingingHer(ringing) if ringing.contains(&phone) => {
                let others: Vec<Phone> = ringing.iter().copied().filter(|p| *p != phone).collect();
                for p in others {
                    self.outputs.push_back(Output::CancelHer(p));
                }
                if !usable {
                    self.outputs.push_back(Output::ByeHer(phone));
                    return self.finish(Outcome::Failed, None, false);
                }
                self.outputs.push_back(Output::OpenHer(phone));
                self.outputs.push_back(Output::Ringback);
                self.outputs.push_back(Output::InviteCustomer);
                self.stage = Stage::Dialling(phone);
                self.deadline = Some(now + CUSTOMER_RING);
            }
            // A second phone of hers answered too late (or a retransmission from the
            // winner, which the shell ACKs and ignores): end the loser.
            Stage::Dialling(p) | Stage::Talking(p) if *p == phone => {}
            _ => self.outputs.push_back(Output::ByeHer(phone)),
        }
    }

    /// One of her phones refused or failed.
    pub fn handle_her_failure(&mut self, phone: Phone) {
        if let Stage::RingingHer(ringing) = &mut self.stage {
            ringing.remove(&phone);
            if ringing.is_empty() {
                self.finish(Outcome::Abandoned, None, false);
            }
        }
    }

    /// The customer answered (usable audio or not).
    pub fn handle_customer_answer(&mut self, usable: bool) {
        match self.stage {
            Stage::Dialling(phone) if usable => {
                self.outputs.push_back(Output::Bridge);
                self.stage = Stage::Talking(phone);
                self.deadline = None;
            }
            Stage::Dialling(phone) => {
                self.outputs.push_back(Output::ByeCustomer);
                self.outputs.push_back(Output::ByeHer(phone));
                self.finish(Outcome::Failed, Some(AttemptResult::Other), true);
            }
            // A retransmitted 2xx once talking: the shell ACKs it.
            _ => {}
        }
    }

    /// The customer's INVITE failed with `status` (the trunk's challenge is handled by
    /// the shell before this).
    pub fn handle_customer_failure(&mut self, status: u16) {
        if let Stage::Dialling(phone) = self.stage {
            self.outputs.push_back(Output::ByeHer(phone));
            self.finish(Outcome::Failed, Some(attempt_for(status)), true);
        }
    }

    /// A BYE from one side (or its audio vanished).
    pub fn handle_hang_up(&mut self, side: Side) {
        match (self.stage.clone(), side) {
            (Stage::Dialling(_), Side::Her) => {
                self.outputs.push_back(Output::CancelCustomer);
                self.finish(Outcome::Abandoned, Some(AttemptResult::NoAnswer), true);
            }
            (Stage::Talking(_), Side::Her) => {
                self.outputs.push_back(Output::ByeCustomer);
                self.finish(Outcome::Secretary, Some(AttemptResult::Reached), true);
            }
            (Stage::Talking(phone), Side::Customer) => {
                self.outputs.push_back(Output::ByeHer(phone));
                self.finish(Outcome::Secretary, Some(AttemptResult::Reached), true);
            }
            _ => {}
        }
    }

    /// The server is stopping: end both sides now.
    pub fn handle_shutdown(&mut self) {
        match self.stage.clone() {
            Stage::RingingHer(ringing) => {
                for p in ringing {
                    self.outputs.push_back(Output::CancelHer(p));
                }
                self.finish(Outcome::Interrupted, None, false);
            }
            Stage::Dialling(phone) => {
                self.outputs.push_back(Output::CancelCustomer);
                self.outputs.push_back(Output::ByeHer(phone));
                self.finish(Outcome::Interrupted, Some(AttemptResult::Other), true);
            }
            Stage::Talking(phone) => {
                self.outputs.push_back(Output::ByeCustomer);
                self.outputs.push_back(Output::ByeHer(phone));
                self.finish(Outcome::Secretary, Some(AttemptResult::Reached), true);
            }
            Stage::Over => {}
        }
    }

    /// A ring ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        match self.stage.clone() {
            Stage::RingingHer(ringing) => {
                for p in ringing {
                    self.outputs.push_back(Output::CancelHer(p));
                }
                self.finish(Outcome::Abandoned, None, false);
            }
            Stage::Dialling(phone) => {
                self.outputs.push_back(Output::CancelCustomer);
                self.outputs.push_back(Output::ByeHer(phone));
                self.finish(Outcome::Failed, Some(AttemptResult::NoAnswer), true);
            }
            _ => self.deadline = None,
        }
    }
}

/// What a final failure of the customer's INVITE means for the task (RFC 3261 §21).
pub fn attempt_for(status: u16) -> AttemptResult {
    match status {
        486 | 600 => AttemptResult::Busy,
        404 | 484 | 604 => AttemptResult::WrongNumber,
        408 | 480 | 487 | 603 => AttemptResult::NoAnswer,
        _ => AttemptResult::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(c: &mut CallOut) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    #[test]
    fn she_answers_then_the_customer_then_the_customer_hangs_up() {
        let t0 = Instant::now();
        let mut c = CallOut::new(2, t0);
        assert_eq!(drain(&mut c), [Output::InviteHer(vec![0, 1])]);
        assert_eq!(c.poll_timeout(), Some(t0 + HER_RING));
        c.handle_her_answer(1, true, t0);
        assert_eq!(
            drain(&mut c),
            [
                Output::CancelHer(0),
                Output::OpenHer(1),
                Output::Ringback,
                Output::InviteCustomer
            ]
        );
        assert_eq!(c.poll_timeout(), Some(t0 + CUSTOMER_RING));
        // Her other phone answered as it was being cancelled: ended.
        c.handle_her_answer(0, true, t0);
        assert_eq!(drain(&mut c), [Output::ByeHer(0)]);
        c.handle_customer_answer(true);
        assert_eq!(drain(&mut c), [Output::Bridge]);
        assert_eq!(c.poll_timeout(), None);
        c.handle_hang_up(Side::Customer);
        assert_eq!(
            drain(&mut c),
            [
                Output::ByeHer(1),
                Output::Finished {
                    outcome: Outcome::Secretary,
                    attempt: Some(AttemptResult::Reached),
                    wrap_up: true
                }
            ]
        );
        assert!(c.is_over());
    }

    #[test]
    fn a_busy_customer_is_logged_busy_and_she_is_hung_up() {
        let t0 = Instant::now();
        let mut c = CallOut::new(1, t0);
        c.handle_her_answer(0, true, t0);
        drain(&mut c);
        c.handle_customer_failure(486);
        assert_eq!(
            drain(&mut c),
            [
                Output::ByeHer(0),
                Output::Finished {
                    outcome: Outcome::Failed,
                    attempt: Some(AttemptResult::Busy),
                    wrap_up: true
                }
            ]
        );
    }

    #[test]
    fn nobody_answers_her_phones() {
        let t0 = Instant::now();
        let mut c = CallOut::new(2, t0);
        drain(&mut c);
        c.handle_timeout(t0 + HER_RING - Duration::from_millis(1));
        assert!(drain(&mut c).is_empty());
        c.handle_timeout(t0 + HER_RING);
        assert_eq!(
            drain(&mut c),
            [
                Output::CancelHer(0),
                Output::CancelHer(1),
                Output::Finished {
                    outcome: Outcome::Abandoned,
                    attempt: None,
                    wrap_up: false
                }
            ]
        );
        let mut d = CallOut::new(1, t0);
        drain(&mut d);
        d.handle_her_failure(0);
        assert!(d.is_over());
    }

    #[test]
    fn she_hangs_up_while_the_customer_rings() {
        let t0 = Instant::now();
        let mut c = CallOut::new(1, t0);
        c.handle_her_answer(0, true, t0);
        drain(&mut c);
        c.handle_hang_up(Side::Her);
        assert_eq!(
            drain(&mut c),
            [
                Output::CancelCustomer,
                Output::Finished {
                    outcome: Outcome::Abandoned,
                    attempt: Some(AttemptResult::NoAnswer),
                    wrap_up: true
                }
            ]
        );
        c.handle_customer_answer(true);
        assert!(drain(&mut c).is_empty(), "nothing after the end");
    }

    #[test]
    fn statuses_to_attempts() {
        assert_eq!(attempt_for(600), AttemptResult::Busy);
        assert_eq!(attempt_for(404), AttemptResult::WrongNumber);
        assert_eq!(attempt_for(487), AttemptResult::NoAnswer);
        assert_eq!(attempt_for(503), AttemptResult::Other);
    }
}
