//! One call's behaviour as a pure state machine: it runs the route's steps and turns
//! what happens (timers, end of a sound, digits, CANCEL, BYE, shutdown) into
//! [`Command`]s that the call task executes. It never reads the clock or touches a
//! socket. `permanence simulate` drives the same machine with a pretend clock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dialplan::{
    Category, Company, Menu, ReachMode, SoundName, Step, StepListName, Strategy, TransferTarget,
};
use crate::event::CallEvent;
use crate::store::Outcome;

/// Named timers of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// End of a `ring` step (plan's seconds).
    Ring,
    /// A menu's wait for a digit (plan's `timeout`).
    MenuDigit,
    /// The longest a voicemail may last (plan's `max_seconds`).
    RecordingMax,
    /// No word from the caller since the beep (`media.voicemail_initial_silence_seconds`,
    /// 5 s by default: a product decision, so that a silent line is not held for minutes).
    NoSpeech,
    /// Give up waiting for the answer to our BYE: Timer F (64·T1 = 32 s) keeps the
    /// transaction trying, but the call's record need not wait that long.
    ByeAnswer,
}

/// How long we wait for the BYE's answer before closing the record anyway.
const BYE_ANSWER_WAIT: Duration = Duration::from_secs(4);

/// Which steps this server can carry out. A step it cannot is logged and falls through,
/// as a step that cannot complete does (until the issue that builds it lands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Receiving keypresses (menus).
    pub dtmf: bool,
    /// Offering calls to secretaries.
    pub secretaries: bool,
    /// Calling executives.
    pub transfer: bool,
    /// Recording messages.
    pub voicemail: bool,
}

impl Capabilities {
    /// What the server does today.
    pub const SERVER: Capabilities = Capabilities {
        dtmf: false,
        secretaries: false,
        transfer: false,
        voicemail: false,
    };
    /// Everything, for simulation.
    pub const ALL: Capabilities = Capabilities {
        dtmf: true,
        secretaries: true,
        transfer: true,
        voicemail: true,
    };
}

/// Side effects for the call task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send 180 Ringing.
    Ringing,
    /// Send 200 OK with our SDP; media may start.
    Answer,
    /// Play a sound on our RTP stream (replacing what plays).
    Play {
        /// The sound.
        sound: SoundName,
        /// How many times.
        times: u32,
    },
    /// Stop the sound (a digit interrupted a prompt).
    StopPlaying,
    /// Offer the call to secretaries; answer with [`CallMachine::handle_leg_result`].
    OfferSecretaries {
        /// Seconds.
        timeout: u32,
        /// Named secretaries, if any.
        who: Vec<String>,
        /// Group, if any.
        group: Option<String>,
        /// Ring-all or longest-idle.
        strategy: Strategy,
        /// Seconds before every secretary is offered the call, when set.
        overflow_after: Option<u32>,
    },
    /// Call an executive or URI; answer with [`CallMachine::handle_leg_result`].
    Transfer {
        /// Where.
        to: TransferTarget,
        /// Seconds per attempt.
        timeout: u32,
        /// Whether the executive must accept.
        screening: bool,
        /// One reach entry after the other, or all at once.
        mode: ReachMode,
    },
    /// Start recording the caller (after the beep).
    StartRecording {
        /// Longest recording; the machine's timer enforces it.
        max_seconds: u32,
    },
    /// Stop recording and keep what was recorded (possibly nothing).
    StopRecording {
        /// `hash`, `silence`, `max-length` or `hang-up`.
        reason: &'static str,
    },
    /// Refuse the INVITE with a final status.
    Reject(u16),
    /// Send BYE.
    SendBye,
    /// The message is now filed under this category.
    Category(Category),
    /// Add an entry to the call's timeline.
    Event(CallEvent),
    /// The call is over; write this outcome and release everything.
    End(Outcome),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Running through steps.
    Steps,
    /// 180 sent, waiting for the ring timer.
    Ringing,
    /// A sound is playing.
    Playing,
    /// A menu prompt (or its invalid-choice prompt) is playing.
    MenuPrompt { menu: Menu, attempts_left: u32 },
    /// Waiting for a menu digit.
    MenuWait { menu: Menu, attempts_left: u32 },
    /// Secretaries or an executive are being called.
    Leg { outcome: Outcome },
    /// Talking to whoever answered.
    Connected { outcome: Outcome },
    /// A menu's invalid-choice prompt is playing; the menu prompt follows.
    MenuInvalid { menu: Menu, attempts_left: u32 },
    /// The voicemail prompt is playing (a key skips it).
    VoicemailPrompt { max_seconds: u32 },
    /// The beep before recording.
    VoicemailBeep { max_seconds: u32 },
    /// Recording a message.
    Recording,
    /// Saying goodbye after a message, then hanging up.
    Goodbye,
    /// BYE sent, waiting for its answer.
    HangingUp,
    /// Over.
    Ended,
}

/// Where the machine is in the plan.
#[derive(Debug, Clone)]
enum List {
    Route(usize),
    Named(StepListName),
}

/// The state of one call.
#[derive(Debug)]
pub struct CallMachine {
    company: Arc<Company>,
    list: List,
    next: usize,
    phase: Phase,
    answered: bool,
    capabilities: Capabilities,
    /// The outcome to write once the BYE we sent is answered.
    pending_outcome: Outcome,
    /// Whether the plan chose the message's category (the route's own, or a `category`
    /// step): a transferred call is otherwise filed as urgent.
    category_set: bool,
    /// Whether the caller said anything into the voicemail: a recording of nothing is not
    /// a message.
    spoke: bool,
    /// How long a voicemail waits for the first word; None: until its maximum.
    no_speech: Option<Duration>,
    /// When the recording under way reaches its maximum.
    recording_max_at: Option<Instant>,
    /// The wall-clock time of the call's start and the instant it was (set by `start`), so
    /// that decisions on hours (an executive's) follow the call's own clock.
    wall_start: jiff::Timestamp,
    started: Option<Instant>,
    timer: Option<(Timer, Instant)>,
    out: VecDeque<Command>,
}

impl CallMachine {
    /// A call that runs route `route` of `company`, which started at `wall_start`; a
    /// voicemail nobody speaks into ends after `no_speech`.
    pub fn new(
        company: Arc<Company>,
        route: usize,
        capabilities: Capabilities,
        wall_start: jiff::Timestamp,
        no_speech: Option<Duration>,
    ) -> Self {
        let category_set = company
            .routes
            .get(route)
            .is_some_and(|r| r.category != Category::default());
        CallMachine {
            company,
            list: List::Route(route),
            next: 0,
            phase: Phase::Steps,
            answered: false,
            capabilities,
            pending_outcome: Outcome::Completed,
            category_set,
            spoke: false,
            no_speech,
            recording_max_at: None,
            wall_start,
            started: None,
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

    /// Whether the machine waits for a keypress (for simulation).
    pub fn wants_digit(&self) -> bool {
        matches!(
            self.phase,
            Phase::MenuWait { .. } | Phase::MenuPrompt { .. }
        )
    }

    /// Starts the first step.
    pub fn start(&mut self, now: Instant) {
        self.started = Some(now);
        self.run_steps(now);
    }

    /// The company's local time at `now`.
    fn local_time(&self, now: Instant) -> jiff::civil::DateTime {
        let elapsed = self
            .started
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        let wall = jiff::SignedDuration::try_from(elapsed)
            .ok()
            .and_then(|d| self.wall_start.checked_add(d).ok())
            .unwrap_or(self.wall_start);
        crate::schedule::local_time(wall, &self.company.timezone)
    }

    fn current_step(&self) -> Option<Step> {
        let steps = match &self.list {
            List::Route(i) => self.company.routes.get(*i).map(|r| &r.steps),
            List::Named(name) => self.company.steplists.get(name),
        };
        steps.and_then(|s| s.get(self.next)).cloned()
    }

    fn event(&mut self, event: CallEvent) {
        self.out.push_back(Command::Event(event));
    }

    fn unavailable(&mut self, step: &'static str) {
        self.event(CallEvent::StepUnavailable {
            step: step.to_string(),
            why: "not supported by this server yet".to_string(),
        });
    }

    /// Runs steps until one waits for something (a timer, a sound, a leg) or ends the call.
    fn run_steps(&mut self, now: Instant) {
        while self.phase == Phase::Steps {
            let Some(step) = self.current_step() else {
                // A list that runs out of steps hangs up.
                self.hang_up(Outcome::Completed, now);
                return;
            };
            self.next += 1;
            // A step that falls through leaves the phase at `Steps`, so the loop goes on
            // with the next one; a step that waits moves the phase on and the loop stops.
            match step {
                Step::Ring { seconds } => self.step_ring(seconds, now),
                Step::Play { sound, times } => self.step_play(sound, times),
                Step::Menu(menu) => self.step_menu(menu),
                Step::Secretary {
                    timeout,
                    who,
                    group,
                    strategy,
                    overflow_after,
                } => self.step_secretary(timeout, who, group, strategy, overflow_after),
                Step::Transfer {
                    to,
                    timeout,
                    screening,
                    mode,
                } => self.step_transfer(to, timeout, screening, mode, now),
                Step::Voicemail {
                    prompt,
                    max_seconds,
                } => self.step_voicemail(prompt, max_seconds),
                Step::Reject { code } => self.step_reject(code, now),
                Step::Hangup => self.hang_up(Outcome::Completed, now),
                Step::Goto(list) => self.goto(list),
                Step::Category(category) => {
                    self.category_set = true;
                    self.out.push_back(Command::Category(category));
                }
            }
        }
    }

    /// A `ring` step: 180 and the ring timer, or nothing once the caller is answered.
    fn step_ring(&mut self, seconds: u32, now: Instant) {
        if self.answered {
            // Ringing after the answer means nothing to the caller.
            self.event(CallEvent::StepSkipped {
                step: "ring".to_string(),
                why: "already answered".to_string(),
            });
            return;
        }
        self.out.push_back(Command::Ringing);
        self.event(CallEvent::Ringing { seconds });
        self.phase = Phase::Ringing;
        self.timer = Some((Timer::Ring, now + Duration::from_secs(u64::from(seconds))));
    }

    /// A `play` step: answers if needed and plays the sound.
    fn step_play(&mut self, sound: SoundName, times: u32) {
        self.answer();
        self.event(CallEvent::Play {
            sound: sound.0.clone(),
            times,
        });
        self.out.push_back(Command::Play { sound, times });
        self.phase = Phase::Playing;
    }

    /// A `menu` step: answers and plays the prompt, then waits for a key (falls through
    /// when keys cannot be received).
    fn step_menu(&mut self, menu: Menu) {
        if !self.capabilities.dtmf {
            self.unavailable("menu");
            return;
        }
        self.answer();
        self.event(CallEvent::Menu {
            prompt: menu.prompt.0.clone(),
        });
        self.out.push_back(Command::Play {
            sound: menu.prompt.clone(),
            times: 1,
        });
        let attempts_left = menu.retries;
        self.phase = Phase::MenuPrompt {
            menu,
            attempts_left,
        };
    }

    /// A `secretary` step: offers the call (falls through when secretaries cannot be
    /// offered calls).
    fn step_secretary(
        &mut self,
        timeout: u32,
        who: Vec<String>,
        group: Option<String>,
        strategy: Strategy,
        overflow_after: Option<u32>,
    ) {
        if !self.capabilities.secretaries {
            self.unavailable("secretary");
            return;
        }
        self.wait_for_leg();
        self.out.push_back(Command::OfferSecretaries {
            timeout,
            who,
            group,
            strategy,
            overflow_after,
        });
        self.phase = Phase::Leg {
            outcome: Outcome::Secretary,
        };
    }

    /// A `transfer` step: calls the executive or URI (falls through when transfers are not
    /// supported, or when the executive is off hours).
    fn step_transfer(
        &mut self,
        to: TransferTarget,
        timeout: u32,
        screening: bool,
        mode: ReachMode,
        now: Instant,
    ) {
        if !self.capabilities.transfer {
            self.unavailable("transfer");
            return;
        }
        // A plan's transfer respects the executive's hours (a secretary's REFER
        // does not come through here: she has decided, and talks to the caller).
        if let TransferTarget::Executive(id) = &to
            && let Some(exec) = self.company.executives.get(id)
        {
            let local = self.local_time(now);
            if !exec.accepts_at(local) {
                self.event(CallEvent::ExecutiveOffHours {
                    executive: id.0.clone(),
                    local: local.to_string(),
                });
                return;
            }
        }
        self.wait_for_leg();
        self.out.push_back(Command::Transfer {
            to,
            timeout,
            screening,
            mode,
        });
        self.phase = Phase::Leg {
            outcome: Outcome::Transferred,
        };
    }

    /// A `voicemail` step: answers and plays the prompt before the beep (falls through
    /// when recording is not supported).
    fn step_voicemail(&mut self, prompt: Option<SoundName>, max_seconds: u32) {
        if !self.capabilities.voicemail {
            self.unavailable("voicemail");
            return;
        }
        self.answer();
        let prompt = prompt.unwrap_or_else(|| self.default_sound("voicemail"));
        self.event(CallEvent::Voicemail {
            prompt: prompt.0.clone(),
            max_seconds,
        });
        self.out.push_back(Command::Play {
            sound: prompt,
            times: 1,
        });
        self.phase = Phase::VoicemailPrompt { max_seconds };
    }

    /// A `reject` step: refuses a caller still ringing, hangs up on an answered one.
    fn step_reject(&mut self, code: u16, now: Instant) {
        self.event(CallEvent::Reject { code });
        if self.answered {
            self.hang_up(Outcome::Rejected, now);
        } else {
            self.out.push_back(Command::Reject(code));
            self.end(Outcome::Rejected);
        }
    }

    /// What the caller hears while someone is rung: their own phone's ringback (180)
    /// before the answer, our ringback tone after it.
    fn wait_for_leg(&mut self) {
        if self.answered {
            let sound = self.default_sound("ringback");
            // Looped for longer than any step may last.
            self.out.push_back(Command::Play { sound, times: 1000 });
        } else {
            self.out.push_back(Command::Ringing);
        }
    }

    /// A sound every server ships, in the company's language (`default/voicemail-fr.wav`).
    fn default_sound(&self, what: &str) -> SoundName {
        crate::dialplan::default_sound(what, &self.company.language)
    }

    fn start_recording(&mut self, max_seconds: u32, now: Instant) {
        self.out.push_back(Command::StartRecording { max_seconds });
        let max_at = now + Duration::from_secs(u64::from(max_seconds));
        self.recording_max_at = Some(max_at);
        self.timer = Some(match self.no_speech {
            Some(wait) if now + wait < max_at => (Timer::NoSpeech, now + wait),
            _ => (Timer::RecordingMax, max_at),
        });
        self.phase = Phase::Recording;
    }

    fn stop_recording(&mut self, reason: &'static str) {
        self.timer = None;
        self.out.push_back(Command::StopRecording { reason });
        let goodbye = self.default_sound("goodbye");
        self.event(CallEvent::Goodbye {
            sound: goodbye.0.clone(),
        });
        self.out.push_back(Command::Play {
            sound: goodbye,
            times: 1,
        });
        self.phase = Phase::Goodbye;
    }

    fn goto(&mut self, list: StepListName) {
        self.event(CallEvent::Goto {
            list: list.0.clone(),
        });
        self.list = List::Named(list);
        self.next = 0;
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
        match (timer, self.phase.clone()) {
            (Timer::Ring, Phase::Ringing) => {
                self.phase = Phase::Steps;
                self.run_steps(now);
            }
            (
                Timer::MenuDigit,
                Phase::MenuWait {
                    menu,
                    attempts_left,
                },
            ) => {
                self.event(CallEvent::MenuTimeout {});
                self.menu_retry(menu, attempts_left, now);
            }
            (Timer::RecordingMax, Phase::Recording) => self.stop_recording("max-length"),
            (Timer::NoSpeech, Phase::Recording) => self.stop_recording("no-speech"),
            (Timer::ByeAnswer, Phase::HangingUp) => {
                self.event(CallEvent::ByeUnanswered {});
                self.end(self.pending_outcome);
            }
            _ => {}
        }
    }

    fn menu_retry(&mut self, menu: Menu, attempts_left: u32, now: Instant) {
        if attempts_left == 0 {
            // No valid choice after every attempt: the menu falls through.
            self.event(CallEvent::MenuFailed {});
            self.phase = Phase::Steps;
            self.run_steps(now);
            return;
        }
        let attempts_left = attempts_left - 1;
        // One sound at a time: the invalid-choice prompt, then (when it ends) the menu again.
        match menu.invalid.clone() {
            Some(invalid) => {
                self.out.push_back(Command::Play {
                    sound: invalid,
                    times: 1,
                });
                self.phase = Phase::MenuInvalid {
                    menu,
                    attempts_left,
                };
            }
            None => {
                self.out.push_back(Command::Play {
                    sound: menu.prompt.clone(),
                    times: 1,
                });
                self.phase = Phase::MenuPrompt {
                    menu,
                    attempts_left,
                };
            }
        }
    }

    /// The sound asked for has finished.
    pub fn handle_playback_done(&mut self, now: Instant) {
        match self.phase.clone() {
            Phase::Playing => {
                self.phase = Phase::Steps;
                self.run_steps(now);
            }
            Phase::MenuPrompt {
                menu,
                attempts_left,
            } => {
                self.timer = Some((
                    Timer::MenuDigit,
                    now + Duration::from_secs(u64::from(menu.timeout)),
                ));
                self.phase = Phase::MenuWait {
                    menu,
                    attempts_left,
                };
            }
            Phase::MenuInvalid {
                menu,
                attempts_left,
            } => {
                self.out.push_back(Command::Play {
                    sound: menu.prompt.clone(),
                    times: 1,
                });
                self.phase = Phase::MenuPrompt {
                    menu,
                    attempts_left,
                };
            }
            Phase::VoicemailPrompt { max_seconds } => {
                let beep = self.default_sound("beep");
                self.out.push_back(Command::Play {
                    sound: beep,
                    times: 1,
                });
                self.phase = Phase::VoicemailBeep { max_seconds };
            }
            Phase::VoicemailBeep { max_seconds } => self.start_recording(max_seconds, now),
            Phase::Goodbye => self.hang_up(self.message_outcome(), now),
            _ => {}
        }
    }

    /// A keypress (RFC 4733 or SIP INFO). During a menu prompt it interrupts the prompt.
    pub fn handle_digit(&mut self, digit: char, now: Instant) {
        match self.phase {
            // A key skips the voicemail prompt; `#` ends the recording.
            Phase::VoicemailPrompt { max_seconds } => {
                self.out.push_back(Command::StopPlaying);
                let beep = self.default_sound("beep");
                self.out.push_back(Command::Play {
                    sound: beep,
                    times: 1,
                });
                self.phase = Phase::VoicemailBeep { max_seconds };
                return;
            }
            Phase::Recording if digit == '#' => {
                self.stop_recording("hash");
                return;
            }
            _ => {}
        }
        let (Phase::MenuPrompt {
            menu,
            attempts_left,
        }
        | Phase::MenuInvalid {
            menu,
            attempts_left,
        }
        | Phase::MenuWait {
            menu,
            attempts_left,
        }) = self.phase.clone()
        else {
            return;
        };
        if matches!(
            self.phase,
            Phase::MenuPrompt { .. } | Phase::MenuInvalid { .. }
        ) {
            self.out.push_back(Command::StopPlaying);
        }
        self.timer = None;
        match menu.choices.get(&digit) {
            Some(list) => {
                self.event(CallEvent::MenuChoice {
                    digit: digit.to_string(),
                    list: list.0.clone(),
                });
                self.phase = Phase::Steps;
                self.goto(list.clone());
                self.run_steps(now);
            }
            None => {
                self.event(CallEvent::MenuInvalid {
                    digit: digit.to_string(),
                });
                self.menu_retry(menu, attempts_left, now);
            }
        }
    }

    /// The secretaries or the executive answered (true) or not (false: next step).
    pub fn handle_leg_result(&mut self, answered: bool, now: Instant) {
        if let Phase::Leg { outcome } = self.phase {
            if answered {
                self.answer();
                if outcome == Outcome::Transferred {
                    self.file_transfer();
                }
                self.phase = Phase::Connected { outcome };
            } else {
                if self.answered {
                    self.out.push_back(Command::StopPlaying);
                }
                self.phase = Phase::Steps;
                self.run_steps(now);
            }
        }
    }

    /// A transferred call is urgent unless the plan said otherwise.
    fn file_transfer(&mut self) {
        if !self.category_set {
            self.category_set = true;
            self.out.push_back(Command::Category(Category::Urgent));
        }
    }

    /// A secretary transferred the caller (REFER) and the executive took the call.
    pub fn handle_transferred(&mut self) {
        if let Phase::Connected { .. } = self.phase {
            self.file_transfer();
            self.phase = Phase::Connected {
                outcome: Outcome::Transferred,
            };
        }
    }

    /// The person the caller talked to hung up.
    pub fn handle_leg_hangup(&mut self, now: Instant) {
        if let Phase::Connected { outcome } = self.phase {
            self.hang_up(outcome, now);
        }
    }

    /// The caller has been silent for the configured time after speaking.
    pub fn handle_silence(&mut self) {
        if self.phase == Phase::Recording {
            self.stop_recording("silence");
        }
    }

    /// The caller's voice was heard in the recording: it may now run to its maximum.
    pub fn handle_speech(&mut self) {
        if self.phase == Phase::Recording && !self.spoke {
            self.spoke = true;
            if let (Some((Timer::NoSpeech, _)), Some(max_at)) = (self.timer, self.recording_max_at)
            {
                self.timer = Some((Timer::RecordingMax, max_at));
            }
        }
    }

    /// A voicemail with the caller's voice is a message; one without is not.
    fn message_outcome(&self) -> Outcome {
        if self.spoke {
            Outcome::Voicemail
        } else {
            Outcome::NoMessage
        }
    }

    /// Whether the caller's keypresses matter now.
    pub fn wants_digits(&self) -> bool {
        matches!(
            self.phase,
            Phase::MenuPrompt { .. }
                | Phase::MenuWait { .. }
                | Phase::MenuInvalid { .. }
                | Phase::VoicemailPrompt { .. }
                | Phase::Recording
        )
    }

    /// Whether someone is being rung for this call.
    pub fn is_offering(&self) -> bool {
        matches!(self.phase, Phase::Leg { .. })
    }

    /// Whether the caller talks to someone.
    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected { .. })
    }

    /// Whether the caller's audio is being recorded.
    pub fn is_recording(&self) -> bool {
        self.phase == Phase::Recording
    }

    /// The caller sent CANCEL before the answer (the task answers 487).
    pub fn handle_cancel(&mut self) {
        if !self.answered && self.phase != Phase::Ended {
            self.event(CallEvent::Cancelled {});
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
            // A conversation or a message the caller ends is still what it was.
            Phase::Connected { outcome } => self.end(outcome),
            // A hang-up keeps what was recorded; at the beep, the message is empty but exists.
            Phase::Recording | Phase::VoicemailBeep { .. } => {
                self.out
                    .push_back(Command::StopRecording { reason: "hang-up" });
                self.end(self.message_outcome());
            }
            Phase::Goodbye => self.end(self.message_outcome()),
            _ => {
                self.event(CallEvent::CallerHungUp {});
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
            self.event(CallEvent::NoAck {});
            self.hang_up(Outcome::Failed, now);
        }
    }

    /// The server is stopping: hang up now, recording the call as interrupted.
    pub fn handle_shutdown(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Ended | Phase::HangingUp) {
            self.event(CallEvent::ServerStopping {});
            if self.phase == Phase::Recording {
                // What the caller said so far is kept.
                self.out
                    .push_back(Command::StopRecording { reason: "shutdown" });
            }
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
    use crate::dialplan::parse_str;

    fn machine(steps: &str, lists: &str, caps: Capabilities) -> CallMachine {
        let text = format!(
            "[company]\nid = \"t\"\nname = \"T\"\nnumbers = [\"+33100000000\"]\n[executives.marie]\nname = \"Marie\"\nreach = [\"sip:marie@x\"]\n\
             [steplists]\n{lists}\n[[route]]\nname = \"r\"\nsteps = {steps}\n"
        );
        let company = parse_str(&text).unwrap_or_else(|e| panic!("{e:?}"));
        CallMachine::new(
            Arc::new(company),
            0,
            caps,
            jiff::Timestamp::UNIX_EPOCH,
            Some(Duration::from_secs(5)),
        )
    }

    fn drain(m: &mut CallMachine) -> Vec<Command> {
        std::iter::from_fn(|| m.poll_command())
            .filter(|c| !matches!(c, Command::Event(..)))
            .collect()
    }

    fn events(m: &mut CallMachine) -> Vec<&'static str> {
        std::iter::from_fn(|| m.poll_command())
            .filter_map(|c| match c {
                Command::Event(e) => Some(e.kind()),
                _ => None,
            })
            .collect()
    }

    fn play(name: &str) -> Command {
        Command::Play {
            sound: SoundName(name.into()),
            times: 1,
        }
    }

    #[test]
    fn ring_then_play_then_hangup() {
        let t0 = Instant::now();
        let mut m = machine(
            r#"[{ ring = 2 }, { play = "a.wav" }, { hangup = {} }]"#,
            "",
            Capabilities::SERVER,
        );
        m.start(t0);
        assert_eq!(drain(&mut m), vec![Command::Ringing]);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        m.handle_timeout(t0 + Duration::from_secs(1));
        assert_eq!(drain(&mut m), vec![], "not yet");
        m.handle_timeout(t0 + Duration::from_secs(2));
        assert_eq!(drain(&mut m), vec![Command::Answer, play("a.wav")]);
        m.handle_playback_done(t0 + Duration::from_secs(5));
        assert_eq!(drain(&mut m), vec![Command::SendBye]);
        m.handle_bye_answered();
        assert_eq!(drain(&mut m), vec![Command::End(Outcome::Completed)]);
        assert!(m.is_ended());
    }

    #[test]
    fn cancel_while_ringing_gives_487_and_abandoned() {
        let t0 = Instant::now();
        let mut m = machine(
            r#"[{ ring = 5 }, { play = "a.wav" }]"#,
            "",
            Capabilities::SERVER,
        );
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
        let mut m = machine(
            r#"[{ play = "a.wav" }, { hangup = {} }]"#,
            "",
            Capabilities::SERVER,
        );
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
        let mut m = machine(r#"[{ ring = 1 }]"#, "", Capabilities::SERVER);
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
        let mut m = machine(r#"[{ play = "a.wav" }]"#, "", Capabilities::SERVER);
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
        let mut m = machine(r#"[{ ring = 9 }]"#, "", Capabilities::SERVER);
        m.start(t0);
        drain(&mut m);
        m.handle_shutdown(t0);
        assert_eq!(
            drain(&mut m),
            vec![Command::Reject(503), Command::End(Outcome::Interrupted)]
        );
    }

    #[test]
    fn steps_the_server_cannot_run_yet_fall_through_and_say_so() {
        let t0 = Instant::now();
        let mut m = machine(
            r#"[{ secretary = {} }, { transfer = { to = "marie" } }, { voicemail = {} }, { menu = { prompt = "m.wav", choices = { "1" = "x" } } }, { reject = { code = 486 } }]"#,
            "x = [{ hangup = {} }]",
            Capabilities::SERVER,
        );
        m.start(t0);
        let all: Vec<Command> = std::iter::from_fn(|| m.poll_command()).collect();
        let unavailable = all
            .iter()
            .filter(|c| matches!(c, Command::Event(CallEvent::StepUnavailable { .. })))
            .count();
        assert_eq!(unavailable, 4);
        assert_eq!(
            all.iter()
                .filter(|c| !matches!(c, Command::Event(..)))
                .cloned()
                .collect::<Vec<_>>(),
            vec![Command::Reject(486), Command::End(Outcome::Rejected)]
        );
    }

    #[test]
    fn menu_digit_runs_its_list_and_barge_in_stops_the_prompt() {
        let t0 = Instant::now();
        let mut m = machine(
            r#"[{ menu = { prompt = "m.wav", choices = { "1" = "sales", "2" = "support" } } }, { hangup = {} }]"#,
            "sales = [{ play = \"s.wav\" }]\nsupport = [{ category = \"urgent\" }, { play = \"u.wav\" }]",
            Capabilities::ALL,
        );
        m.start(t0);
        assert_eq!(drain(&mut m), vec![Command::Answer, play("m.wav")]);
        m.handle_digit('2', t0);
        assert_eq!(
            drain(&mut m),
            vec![
                Command::StopPlaying,
                Command::Category(Category::Urgent),
                play("u.wav")
            ]
        );
    }

    #[test]
    fn menu_retries_then_falls_through() {
        let t0 = Instant::now();
        let mut m = machine(
            r#"[{ menu = { prompt = "m.wav", invalid = "bad.wav", timeout = 3, retries = 1, choices = { "1" = "a" } } }, { play = "after.wav" }]"#,
            "a = [{ hangup = {} }]",
            Capabilities::ALL,
        );
        m.start(t0);
        drain(&mut m);
        m.handle_playback_done(t0);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(3)));
        m.handle_digit('9', t0 + Duration::from_secs(1));
        assert_eq!(drain(&mut m), vec![play("bad.wav")]);
        m.handle_playback_done(t0 + Duration::from_secs(2));
        assert_eq!(drain(&mut m), vec![play("m.wav")]);
        m.handle_playback_done(t0 + Duration::from_secs(2));
        m.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(
            drain(&mut m),
            vec![play("after.wav")],
            "no retries left: next step"
        );
        let _ = events(&mut m);
    }

    #[test]
    fn secretary_then_voicemail_outcomes() {
        let t0 = Instant::now();
        let mut m = machine(
            r#"[{ secretary = { timeout = 20 } }, { voicemail = {} }]"#,
            "",
            Capabilities::ALL,
        );
        m.start(t0);
        assert!(matches!(
            drain(&mut m)[..],
            [
                Command::Ringing,
                Command::OfferSecretaries { timeout: 20, .. }
            ]
        ));
        m.handle_leg_result(false, t0);
        assert_eq!(
            drain(&mut m),
            vec![Command::Answer, play("default/voicemail-fr.wav")]
        );
        m.handle_playback_done(t0);
        assert_eq!(drain(&mut m), vec![play("default/beep.wav")]);
        m.handle_playback_done(t0);
        assert_eq!(
            drain(&mut m),
            vec![Command::StartRecording { max_seconds: 120 }]
        );
        assert!(m.is_recording() && m.wants_digits());
        assert_eq!(
            m.poll_timeout(),
            Some(t0 + Duration::from_secs(5)),
            "a first word within 5 s"
        );
        m.handle_bye();
        assert_eq!(
            drain(&mut m),
            vec![
                Command::StopRecording { reason: "hang-up" },
                Command::End(Outcome::NoMessage)
            ],
            "hanging up at the beep ends the recording: no message"
        );

        let mut m = machine(
            r#"[{ secretary = {} }, { voicemail = {} }]"#,
            "",
            Capabilities::ALL,
        );
        m.start(t0);
        drain(&mut m);
        m.handle_leg_result(true, t0);
        assert_eq!(
            drain(&mut m),
            vec![Command::Answer],
            "a caller still ringing is answered when the secretary answers"
        );
        assert!(m.is_connected());
        m.handle_leg_hangup(t0);
        assert_eq!(drain(&mut m), vec![Command::SendBye]);
        m.handle_bye_answered();
        assert_eq!(drain(&mut m), vec![Command::End(Outcome::Secretary)]);
    }

    #[test]
    fn voicemail_ends_on_hash_silence_or_length_with_a_goodbye() {
        let t0 = Instant::now();
        for (how, reason) in [
            ("hash", "hash"),
            ("silence", "silence"),
            ("length", "max-length"),
        ] {
            let mut m = machine(
                r#"[{ voicemail = { prompt = "p.wav", max_seconds = 30 } }]"#,
                "",
                Capabilities::ALL,
            );
            m.start(t0);
            assert_eq!(drain(&mut m), vec![Command::Answer, play("p.wav")]);
            m.handle_digit('5', t0);
            assert_eq!(
                drain(&mut m),
                vec![Command::StopPlaying, play("default/beep.wav")],
                "a key skips the prompt"
            );
            m.handle_playback_done(t0);
            drain(&mut m);
            m.handle_speech();
            match how {
                "hash" => m.handle_digit('#', t0 + Duration::from_secs(5)),
                "silence" => m.handle_silence(),
                _ => m.handle_timeout(t0 + Duration::from_secs(30)),
            }
            assert_eq!(
                drain(&mut m),
                vec![
                    Command::StopRecording { reason },
                    play("default/goodbye-fr.wav")
                ],
                "{how}"
            );
            m.handle_playback_done(t0 + Duration::from_secs(40));
            assert_eq!(drain(&mut m), vec![Command::SendBye], "{how}");
            m.handle_bye_answered();
            assert_eq!(
                drain(&mut m),
                vec![Command::End(Outcome::Voicemail)],
                "{how}"
            );
        }
    }

    #[test]
    fn an_invalid_choice_prompt_plays_before_the_menu_again_not_over_it() {
        let t0 = Instant::now();
        let mut m = machine(
            r#"[{ menu = { prompt = "m.wav", invalid = "bad.wav", choices = { "1" = "a" } } }]"#,
            "a = [{ hangup = {} }]",
            Capabilities::ALL,
        );
        m.start(t0);
        drain(&mut m);
        m.handle_digit('7', t0);
        assert_eq!(drain(&mut m), vec![Command::StopPlaying, play("bad.wav")]);
        m.handle_playback_done(t0);
        assert_eq!(drain(&mut m), vec![play("m.wav")]);
        m.handle_digit('1', t0);
        assert_eq!(drain(&mut m), vec![Command::StopPlaying, Command::SendBye]);
    }

    #[test]
    fn an_executive_out_of_hours_is_skipped_by_the_calls_own_clock() {
        let text = "[company]\nid = \"t\"\nname = \"T\"\nnumbers = [\"+33100000000\"]\ntimezone = \"Europe/Paris\"\n\
                    [executives.marie]\nname = \"Marie\"\nreach = [\"sip:marie@x\"]\nhours = [\"mon-sat 07:00-21:00\"]\n\
                    [[route]]\nname = \"r\"\nsteps = [{ ring = 15 }, { transfer = { to = \"marie\" } }, { hangup = {} }]\n";
        let company = Arc::new(parse_str(text).unwrap_or_else(|e| panic!("{e:?}")));
        // Saturday 2026-11-28, 20:59:50 in Paris (UTC+1): still within her hours.
        let at = |h, m, s| {
            company
                .timezone
                .to_timestamp(jiff::civil::date(2026, 11, 28).at(h, m, s, 0))
                .unwrap()
        };
        let t0 = Instant::now();
        let mut early = CallMachine::new(
            Arc::clone(&company),
            0,
            Capabilities::ALL,
            at(20, 0, 0),
            None,
        );
        early.start(t0);
        drain(&mut early);
        early.handle_timeout(t0 + Duration::from_secs(15));
        assert!(matches!(
            drain(&mut early).as_slice(),
            [Command::Ringing, Command::Transfer { .. }]
        ));

        // The same call ten minutes later: the ring ends at 21:00:05, after her hours.
        let mut late = CallMachine::new(
            Arc::clone(&company),
            0,
            Capabilities::ALL,
            at(20, 59, 50),
            None,
        );
        late.start(t0);
        drain(&mut late);
        late.handle_timeout(t0 + Duration::from_secs(15));
        let commands: Vec<Command> = std::iter::from_fn(|| late.poll_command()).collect();
        assert!(
            commands.iter().any(
                |c| matches!(c, Command::Event(CallEvent::ExecutiveOffHours { local, .. }) if local.contains("21:00:05"))
            ),
            "{commands:?}"
        );
        assert!(
            !commands
                .iter()
                .any(|c| matches!(c, Command::Transfer { .. })),
            "nobody is called out of hours: {commands:?}"
        );
        assert!(
            commands.contains(&Command::Reject(480)),
            "the plan went on to hang up"
        );
    }

    #[test]
    fn a_voicemail_nobody_speaks_into_ends_early_and_is_no_message() {
        let t0 = Instant::now();
        let mut m = machine(
            r#"[{ voicemail = { prompt = "p.wav", max_seconds = 180 } }]"#,
            "",
            Capabilities::ALL,
        );
        m.start(t0);
        m.handle_playback_done(t0);
        m.handle_playback_done(t0);
        drain(&mut m);
        assert!(m.is_recording());
        assert_eq!(
            m.poll_timeout(),
            Some(t0 + Duration::from_secs(5)),
            "5 s for a first word, whether packets come or not"
        );
        m.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(
            drain(&mut m),
            vec![
                Command::StopRecording {
                    reason: "no-speech"
                },
                play("default/goodbye-fr.wav")
            ]
        );
        m.handle_playback_done(t0);
        m.handle_bye_answered();
        assert_eq!(
            drain(&mut m),
            vec![Command::SendBye, Command::End(Outcome::NoMessage)]
        );

        // A caller who speaks has the whole maximum.
        let mut m = machine(
            r#"[{ voicemail = { prompt = "p.wav", max_seconds = 180 } }]"#,
            "",
            Capabilities::ALL,
        );
        m.start(t0);
        m.handle_playback_done(t0);
        m.handle_playback_done(t0);
        drain(&mut m);
        m.handle_speech();
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(180)));
    }
}
