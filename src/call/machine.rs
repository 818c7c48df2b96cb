//! One call's behaviour as a pure state machine: it runs the route's steps and turns
//! what happens (timers, end of a sound, CANCEL, BYE, shutdown) into [`Command`]s that
//! the call task executes. It never reads the clock or touches a socket.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::dialplan::{SoundName, Step};
use crate::store::Outcome;

/// Named timers of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// End of a `ring` step (plan's seconds).
    Ring,
    /// Give up waiting for the answer to our BYE: 64·T1 = 32 s is Timer F, but the call's
    /// record should not wait that long; the transaction layer keeps retrying meanwhile.
    ByeAnswer,
}

/// How long we wait for the BYE's answer before closing the record anyway.
const BYE_ANSWER_WAIT: Duration = Duration::from_secs(4);

/// Side effects for the call task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send 180 Ringing.
    Ringing,
    /// Send 200 OK with our SDP; media may start.
    Answer,
    /// Play a sound on our RTP stream.
    Play {
        /// The sound.
        sound: SoundName,
        /// How many times.
        times: u32,
    },
    /// Refuse the INVITE with a final status.
    Reject(u16),
    /// Send BYE.
    SendBye,
    /// Add an entry to the call's timeline.
    Event(&'static str, String),
    /// The call is over; write this outcome and release everything.
    End(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Running through steps.
    Steps,
    /// 180 sent, waiting for the ring timer.
    Ringing,
    /// A sound is playing.
    Playing,
    /// BYE sent, waiting for its answer.
    HangingUp,
    /// Over.
    Ended,
}

/// The state of one call.
#[derive(Debug)]
pub struct CallMachine {
    steps: Vec<Step>,
    next: usize,
    phase: Phase,
    answered: bool,
    /// The outcome to write once the BYE we sent is answered.
    pending_outcome: Outcome,
    timer: Option<(Timer, Instant)>,
    out: VecDeque<Command>,
}

impl CallMachine {
    /// A call that will run `steps`.
    pub fn new(steps: Vec<Step>) -> Self {
        CallMachine {
            steps,
            next: 0,
            phase: Phase::Steps,
            answered: false,
            pending_outcome: Outcome::Completed,
            timer: None,
            out: VecDeque::new(),
        }
    }

    /// Whether the caller has been answered.
    pub fn is_answered(&self) -> bool {
        self.answered
    }

    /// Whether the call is over.
    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Starts the first step.
    pub fn start(&mut self, now: Instant) {
        self.run_steps(now);
    }

    fn run_steps(&mut self, now: Instant) {
        while self.phase == Phase::Steps {
            let Some(step) = self.steps.get(self.next).cloned() else {
                // A plan that runs out of steps hangs up.
                self.hang_up(Outcome::Completed, now);
                return;
            };
            self.next += 1;
            match step {
                Step::Ring { seconds } => {
                    if self.answered {
                        // Ringing after the answer means nothing to the caller.
                        self.out.push_back(Command::Event(
                            "step-skipped",
                            r#"{"step":"ring","why":"already answered"}"#.into(),
                        ));
                        continue;
                    }
                    self.out.push_back(Command::Ringing);
                    self.out.push_back(Command::Event(
                        "ringing",
                        format!(r#"{{"seconds":{seconds}}}"#),
                    ));
                    self.phase = Phase::Ringing;
                    self.timer = Some((Timer::Ring, now + Duration::from_secs(u64::from(seconds))));
                }
                Step::Play { sound, times } => {
                    self.answer();
                    self.out.push_back(Command::Event(
                        "play",
                        serde_json::json!({ "sound": sound.0, "times": times }).to_string(),
                    ));
                    self.out.push_back(Command::Play { sound, times });
                    self.phase = Phase::Playing;
                }
                Step::Hangup => self.hang_up(Outcome::Completed, now),
            }
        }
    }

    fn answer(&mut self) {
        if !self.answered {
            self.answered = true;
            self.out.push_back(Command::Answer);
        }
    }

    fn hang_up(&mut self, outcome: Outcome, now: Instant) {
        if self.answered {
            self.out.push_back(Command::SendBye);
            self.pending_outcome = outcome;
            self.phase = Phase::HangingUp;
            self.timer = Some((Timer::ByeAnswer, now + BYE_ANSWER_WAIT));
        } else {
            // A plan that ends before answering refuses the call: 480 says "try later"
            // without implying the number is wrong.
            self.out.push_back(Command::Reject(480));
            self.end(if outcome == Outcome::Completed {
                Outcome::Rejected
            } else {
                outcome
            });
        }
    }

    fn end(&mut self, outcome: Outcome) {
        self.phase = Phase::Ended;
        self.timer = None;
        self.out.push_back(Command::End(outcome));
    }

    /// When the machine next needs [`CallMachine::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer.map(|(_, at)| at)
    }

    /// Fires the pending timer if due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some((timer, at)) = self.timer else {
            return;
        };
        if at > now {
            return;
        }
        self.timer = None;
        match (timer, self.phase) {
            (Timer::Ring, Phase::Ringing) => {
                self.phase = Phase::Steps;
                self.run_steps(now);
            }
            (Timer::ByeAnswer, Phase::HangingUp) => {
                self.out
                    .push_back(Command::Event("bye-unanswered", "{}".into()));
                self.end(self.pending_outcome);
            }
            _ => {}
        }
    }

    /// The sound asked for has finished.
    pub fn handle_playback_done(&mut self, now: Instant) {
        if self.phase == Phase::Playing {
            self.phase = Phase::Steps;
            self.run_steps(now);
        }
    }

    /// The caller sent CANCEL before the answer (the task answers 487).
    pub fn handle_cancel(&mut self) {
        if !self.answered && self.phase != Phase::Ended {
            self.out.push_back(Command::Event("cancelled", "{}".into()));
            self.out.push_back(Command::Reject(487));
            self.end(Outcome::Abandoned);
        }
    }

    /// The caller hung up (BYE, already answered 200 by the task).
    pub fn handle_bye(&mut self) {
        match self.phase {
            Phase::Ended => {}
            // Both sides hung up at once: ours was the plan's end.
            Phase::HangingUp => self.end(self.pending_outcome),
            _ => {
                self.out
                    .push_back(Command::Event("caller-hung-up", "{}".into()));
                self.end(Outcome::Abandoned);
            }
        }
    }

    /// Our BYE was answered (any final status) or its transaction gave up.
    pub fn handle_bye_answered(&mut self) {
        if self.phase == Phase::HangingUp {
            self.end(self.pending_outcome);
        }
    }

    /// No ACK arrived for our 200 OK (RFC 3261 §13.3.1.4): hang up, the call failed.
    pub fn handle_ack_timeout(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Ended | Phase::HangingUp) {
            self.out.push_back(Command::Event("no-ack", "{}".into()));
            self.hang_up(Outcome::Failed, now);
        }
    }

    /// The server is stopping: hang up now, recording the call as interrupted.
    pub fn handle_shutdown(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Ended | Phase::HangingUp) {
            self.out
                .push_back(Command::Event("server-stopping", "{}".into()));
            if self.answered {
                self.hang_up(Outcome::Interrupted, now);
            } else {
                self.out.push_back(Command::Reject(503));
                self.end(Outcome::Interrupted);
            }
        }
    }

    /// The next command to execute.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(m: &mut CallMachine) -> Vec<Command> {
        std::iter::from_fn(|| m.poll_command())
            .filter(|c| !matches!(c, Command::Event(..)))
            .collect()
    }

    fn play(name: &str) -> Step {
        Step::Play {
            sound: SoundName(name.into()),
            times: 1,
        }
    }

    #[test]
    fn ring_then_play_then_hangup() {
        let t0 = Instant::now();
        let mut m = CallMachine::new(vec![Step::Ring { seconds: 2 }, play("a.wav"), Step::Hangup]);
        m.start(t0);
        assert_eq!(drain(&mut m), vec![Command::Ringing]);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        m.handle_timeout(t0 + Duration::from_secs(1));
        assert_eq!(drain(&mut m), vec![], "not yet");
        m.handle_timeout(t0 + Duration::from_secs(2));
        assert_eq!(
            drain(&mut m),
            vec![
                Command::Answer,
                Command::Play {
                    sound: SoundName("a.wav".into()),
                    times: 1
                }
            ]
        );
        m.handle_playback_done(t0 + Duration::from_secs(5));
        assert_eq!(drain(&mut m), vec![Command::SendBye]);
        m.handle_bye_answered();
        assert_eq!(drain(&mut m), vec![Command::End(Outcome::Completed)]);
        assert!(m.is_ended());
    }

    #[test]
    fn cancel_while_ringing_gives_487_and_abandoned() {
        let t0 = Instant::now();
        let mut m = CallMachine::new(vec![Step::Ring { seconds: 5 }, play("a.wav")]);
        m.start(t0);
        drain(&mut m);
        m.handle_cancel();
        assert_eq!(
            drain(&mut m),
            vec![Command::Reject(487), Command::End(Outcome::Abandoned)]
        );
        m.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(drain(&mut m), vec![], "a cancelled call does nothing more");
    }

    #[test]
    fn caller_bye_during_greeting_is_abandoned_and_cancel_after_answer_is_ignored() {
        let t0 = Instant::now();
        let mut m = CallMachine::new(vec![play("a.wav"), Step::Hangup]);
        m.start(t0);
        drain(&mut m);
        m.handle_cancel();
        assert_eq!(drain(&mut m), vec![]);
        m.handle_bye();
        assert_eq!(drain(&mut m), vec![Command::End(Outcome::Abandoned)]);
    }

    #[test]
    fn steps_running_out_hang_up_and_unanswered_end_rejects() {
        let t0 = Instant::now();
        let mut m = CallMachine::new(vec![Step::Ring { seconds: 1 }]);
        m.start(t0);
        drain(&mut m);
        m.handle_timeout(t0 + Duration::from_secs(1));
        assert_eq!(
            drain(&mut m),
            vec![Command::Reject(480), Command::End(Outcome::Rejected)]
        );
    }

    #[test]
    fn unanswered_bye_still_ends_the_record_and_no_ack_fails() {
        let t0 = Instant::now();
        let mut m = CallMachine::new(vec![play("a.wav")]);
        m.start(t0);
        drain(&mut m);
        m.handle_ack_timeout(t0 + Duration::from_secs(32));
        assert_eq!(drain(&mut m), vec![Command::SendBye]);
        m.handle_timeout(t0 + Duration::from_secs(36));
        assert_eq!(drain(&mut m), vec![Command::End(Outcome::Failed)]);
    }

    #[test]
    fn shutdown_interrupts() {
        let t0 = Instant::now();
        let mut m = CallMachine::new(vec![Step::Ring { seconds: 9 }]);
        m.start(t0);
        drain(&mut m);
        m.handle_shutdown(t0);
        assert_eq!(
            drain(&mut m),
            vec![Command::Reject(503), Command::End(Outcome::Interrupted)]
        );
    }
}
