//! `permanence simulate`: the route decision and the call machine the server uses, driven
//! with a pretend clock and pretend answers, printing what would happen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::machine::{CallMachine, Capabilities, Command};
use crate::dialplan::{self, CallFacts, Caller, Company, SoundName, TransferTarget};
use crate::dnd::Dnd;
use crate::line::LineOverride;
use crate::number::E164;

/// What the simulated call meets.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The caller.
    pub caller: Caller,
    /// The number dialled (default: the company's first).
    pub dialled: Option<E164>,
    /// When.
    pub at: jiff::Timestamp,
    /// Keys the caller presses, one per menu prompt, in order.
    pub digits: Vec<char>,
    /// Whether a secretary is available (and answers), or when one frees up.
    pub secretaries: Secretaries,
    /// Whether an executive answers a transfer.
    pub executive_answers: bool,
    /// How long a voicemail waits for the caller's first word (the server's setting).
    pub no_speech: Option<Duration>,
    /// How long each sound lasts (from the loaded sounds); others count 3 s.
    pub sound_lengths: std::collections::HashMap<crate::dialplan::SoundName, Duration>,
    /// The company's block of the caller's number, when the records hold one.
    pub block: Option<crate::blocklist::BlockEntry>,
    /// The company's line switched by hand (from the records, or imagined), if any; it
    /// decides `open` conditions only while it applies at `at`.
    pub line: Option<LineOverride>,
    /// Executives who asked not to be disturbed (from the records, or imagined), by id: a
    /// transfer to one skips them while it applies, as the server's does.
    pub dnd: Vec<(String, Dnd)>,
}

/// The secretaries as the simulated call finds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secretaries {
    /// One is free and answers.
    Available,
    /// Nobody is there (none registered): a `secretary` step gives up at once.
    None,
    /// Everyone is on a call: the caller queues, and one frees up after this long (never,
    /// within the step, when `None`).
    Busy(Option<Duration>),
}

/// Lines describing the decision and the steps, for a person to read.
pub fn simulate(company: &Arc<Company>, scenario: &Scenario) -> Vec<String> {
    let mut lines = Vec::new();
    let Some(index) = describe_decision(company, scenario, &mut lines) else {
        return lines;
    };
    Run::new(company, scenario, index, lines).drive()
}

/// Writes how each route fared and which one runs; None when none matches (the call is
/// refused, and there is nothing to run).
fn describe_decision(
    company: &Company,
    scenario: &Scenario,
    lines: &mut Vec<String>,
) -> Option<usize> {
    let dialled = scenario
        .dialled
        .clone()
        .or_else(|| company.numbers.first().cloned());
    let facts = CallFacts {
        caller: &scenario.caller,
        dialled: dialled.as_ref(),
        now: scenario.at,
        secretary_available: scenario.secretaries == Secretaries::Available,
        on_block_list: scenario.block.is_some(),
        line: scenario.line.as_ref(),
    };
    let (verdicts, local) = dialplan::explain(company, &facts);
    lines.push(format!(
        "company {} ({}), caller {}, local time {local}",
        company.id, company.name, scenario.caller
    ));
    describe_spam(company, scenario, lines);
    if let Some(line) = &scenario.line {
        lines.push(describe_line(company, line, scenario.at));
    }
    for v in &verdicts {
        lines.push(format!(
            "  route `{}`: {} — {}",
            v.route,
            if v.matched { "MATCHES" } else { "skipped" },
            v.why
        ));
    }
    let decision = dialplan::decide(company, &facts);
    let Some(index) = decision.index else {
        lines.push("no route matches: the call is refused (480)".into());
        return None;
    };
    if let Some(name) = decision.contact_name {
        lines.push(format!("  caller is the contact \"{name}\""));
    }
    if let Some(line) = scenario.line.as_ref().filter(|_| decision.by_line) {
        // The event the server's timeline would show.
        let event = line.event();
        lines.push(format!("  ({} {})", event.kind(), event.data()));
    }
    let route = &company.routes[index];
    lines.push(format!(
        "route `{}` (category {}):",
        route.name,
        route.category.as_str()
    ));
    Some(index)
}

/// Says when the caller is unwanted: on the company's block list (who, when, why), or in
/// a telemarketing range (and what the company does with those).
fn describe_spam(company: &Company, scenario: &Scenario, lines: &mut Vec<String>) {
    if let Some(b) = &scenario.block {
        lines.push(format!(
            "  caller is on {}'s block list since {} (by {}: {}): blocked callers take only routes for `{}`, or are refused ({})",
            company.id,
            b.added_at,
            crate::terminal::safe(&b.added_by),
            crate::terminal::safe(&b.reason),
            dialplan::BLOCKED,
            dialplan::BUILT_IN_STATUS,
        ));
    }
    if dialplan::in_telemarketing_range(&scenario.caller) {
        let what = match company.telemarketing {
            dialplan::Telemarketing::Refuse => "refused as blocked",
            dialplan::Telemarketing::Label => "routed as usual, pointed out on the card",
            dialplan::Telemarketing::Accept => "routed as usual",
        };
        lines.push(format!(
            "  caller is in an ARCEP telemarketing range: telemarketing = \"{}\", {what}",
            company.telemarketing.as_str()
        ));
    }
}

/// A simulated call under way: the machine, the pretend clock, what the scenario has
/// still to give, and the transcript so far.
struct Run<'a> {
    company: &'a Company,
    scenario: &'a Scenario,
    machine: CallMachine,
    start: Instant,
    now: Instant,
    /// Keys not pressed yet.
    digits: std::slice::Iter<'a, char>,
    /// A leg being rung: whether it answers, and its timeout in seconds.
    pending_leg: Option<(bool, u32)>,
    /// A `secretary` step waiting in the queue: when a secretary frees up, and the step's
    /// time-out.
    queued: Option<(Option<Duration>, u32)>,
    /// The sound playing now, and how long it takes.
    playing: Option<Duration>,
    lines: Vec<String>,
}

impl<'a> Run<'a> {
    /// A call running route `index`, with the transcript so far in `lines`.
    fn new(
        company: &'a Arc<Company>,
        scenario: &'a Scenario,
        index: usize,
        lines: Vec<String>,
    ) -> Self {
        let machine = CallMachine::new(
            Arc::clone(company),
            index,
            Capabilities::ALL,
            scenario.at,
            scenario.no_speech,
        );
        let start = Instant::now();
        Run {
            company,
            scenario,
            machine,
            start,
            now: start,
            digits: scenario.digits.iter(),
            pending_leg: None,
            queued: None,
            playing: None,
            lines,
        }
    }

    /// Seconds since the call began, on the pretend clock.
    fn elapsed(&self) -> u64 {
        (self.now - self.start).as_secs()
    }

    /// The executive's do-not-disturb in force at this point of the call, if any.
    fn dnd_now(&self, executive: &str) -> Option<Dnd> {
        let elapsed = jiff::SignedDuration::from_secs(i64::try_from(self.elapsed()).ok()?);
        let now = self.scenario.at.checked_add(elapsed).ok()?;
        self.scenario
            .dnd
            .iter()
            .find(|(id, d)| id == executive && d.applies_at(now))
            .map(|(_, d)| d.clone())
    }

    /// Runs the call to its end, printing each command, and returns the transcript.
    fn drive(mut self) -> Vec<String> {
        self.machine.start(self.now);
        // Bounded: a plan is finite, but a simulation must end even if one were not.
        for _ in 0..1000 {
            let mut progressed = false;
            while let Some(command) = self.machine.poll_command() {
                if self.print_command(command) {
                    return self.lines;
                }
                progressed = true;
            }
            self.feed(progressed);
        }
        self.lines
            .push("(simulation stopped after 1000 steps)".into());
        self.lines
    }

    /// Writes one command's line (if it has one); true when the call has ended.
    fn print_command(&mut self, command: Command) -> bool {
        let t = self.elapsed();
        match command {
            Command::Ringing => self.lines.push(format!("  {t:>4}s  ring (180 Ringing)")),
            Command::Answer => self.lines.push(format!("  {t:>4}s  answer")),
            Command::Play { sound, times } => self.print_play(t, &sound, times),
            Command::StopPlaying => self.lines.push(format!("  {t:>4}s  (prompt interrupted)")),
            Command::OfferSecretaries {
                timeout,
                who,
                group,
                ..
            } => self.print_offer(t, &who, group, timeout),
            Command::Transfer {
                to,
                timeout,
                screening,
                ..
            } => {
                if let TransferTarget::Executive(id) = &to
                    && let Some(dnd) = self.dnd_now(&id.0)
                {
                    // The outbound side calls nobody and the plan goes on at once.
                    let event = dnd.event(&id.0);
                    self.lines.push(format!(
                        "  {t:>4}s  transfer to {} skipped: do not disturb ({} {})",
                        id.0,
                        event.kind(),
                        event.data()
                    ));
                    self.machine.handle_leg_result(false, self.now);
                    return false;
                }
                let to = describe_target(self.company, to);
                let screening = if screening { ", screened" } else { "" };
                self.lines.push(format!(
                    "  {t:>4}s  transfer to {to}, {timeout} s per attempt{screening}"
                ));
                self.pending_leg = Some((self.scenario.executive_answers, timeout));
            }
            Command::StartRecording { max_seconds } => {
                self.lines.push(format!(
                    "  {t:>4}s  record the caller, up to {max_seconds} s"
                ));
            }
            Command::StopRecording { reason } => {
                self.lines.push(format!(
                    "  {t:>4}s  stop recording ({reason}), keep the message"
                ));
            }
            Command::Reject(code) => self.lines.push(format!("  {t:>4}s  refuse with {code}")),
            Command::SendBye => self.lines.push(format!("  {t:>4}s  hang up")),
            Command::Category(c) => self
                .lines
                .push(format!("  {t:>4}s  file the message as {}", c.as_str())),
            Command::Event(event) => match event.kind() {
                "menu-choice"
                | "menu-invalid"
                | "menu-timeout"
                | "menu-failed"
                | "goto"
                | "step-skipped"
                | "executive-off-hours" => {
                    self.lines
                        .push(format!("  {t:>4}s  ({} {})", event.kind(), event.data()))
                }
                // The rest repeat what the commands already say.
                _ => {}
            },
            Command::End(outcome) => {
                self.lines.push(format!("outcome: {}", outcome.as_str()));
                return true;
            }
        }
        false
    }

    /// Writes a `play` line and notes how long the sound lasts (3 s when unknown), for
    /// the clock to move on when it ends.
    fn print_play(&mut self, t: u64, sound: &SoundName, times: u32) {
        let length = self
            .scenario
            .sound_lengths
            .get(sound)
            .copied()
            .unwrap_or(Duration::from_secs(3));
        self.playing = Some(length * times);
        let times = if times > 1 {
            format!(" ×{times}")
        } else {
            String::new()
        };
        self.lines
            .push(format!("  {t:>4}s  play {}{times}", sound.0));
    }

    /// Feeds the machine what the scenario says happens next: a key, speech, a timer, or
    /// the outside world's answer when nothing else is pending.
    fn feed(&mut self, progressed: bool) {
        if self.machine.wants_digit() {
            match self.digits.next().copied() {
                Some(d) => {
                    let t = self.elapsed();
                    self.lines.push(format!("  {t:>4}s  caller presses {d}"));
                    self.machine.handle_digit(d, self.now);
                    return;
                }
                None => {
                    // No key: the prompt plays to its end, then the menu's wait runs.
                    self.now += self.playing.take().unwrap_or_default();
                    self.machine.handle_playback_done(self.now);
                }
            }
        }
        if self.machine.is_recording() {
            // The caller speaks for a while, then stops.
            self.now += Duration::from_secs(20);
            let t = self.elapsed();
            self.lines
                .push(format!("  {t:>4}s  (the caller speaks, then falls silent)"));
            self.machine.handle_speech();
            self.machine.handle_silence();
            return;
        }
        if let Some(at) = self.machine.poll_timeout() {
            self.now = self.now.max(at);
            self.machine.handle_timeout(self.now);
            return;
        }
        if !progressed {
            self.wait_outside();
        }
    }

    /// Nothing pending: the current step waits on the outside world (a leg answers or
    /// not, a sound ends).
    fn wait_outside(&mut self) {
        if let Some((free_after, timeout)) = self.queued.take() {
            return self.wait_in_queue(free_after, timeout);
        }
        if let Some((answered, timeout)) = self.pending_leg.take() {
            // An answer comes after a few seconds of ringing; no answer takes the whole timeout.
            self.now += Duration::from_secs(if answered { 5 } else { u64::from(timeout) });
            let t = self.elapsed();
            self.machine.handle_leg_result(answered, self.now);
            if answered {
                self.lines.push(format!(
                    "  {t:>4}s  answered: conversation, then they hang up"
                ));
                self.machine.handle_leg_hangup(self.now);
            } else {
                self.lines.push(format!("  {t:>4}s  no answer: next step"));
            }
            return;
        }
        self.now += self.playing.take().unwrap_or(Duration::from_secs(3));
        self.machine.handle_playback_done(self.now);
        self.machine.handle_bye_answered();
    }
}

impl Run<'_> {
    /// A `secretary` step's line, and what the scenario's secretaries will do: answer,
    /// not be there, or be busy (the caller queues).
    fn print_offer(&mut self, t: u64, who: &[String], group: Option<String>, timeout: u32) {
        let whom = describe_whom(who, group);
        self.lines
            .push(format!("  {t:>4}s  offer to {whom} for {timeout} s"));
        match self.scenario.secretaries {
            Secretaries::Busy(free_after) => {
                let music = if self.machine.is_answered() {
                    " with hold music"
                } else {
                    ", hearing ringback"
                };
                self.lines.push(format!(
                    "  {t:>4}s  everyone is busy: the caller waits in the queue{music}"
                ));
                self.queued = Some((free_after, timeout));
            }
            available => {
                self.pending_leg = Some((available == Secretaries::Available, timeout));
            }
        }
    }

    /// A queued caller: a secretary frees up within the step's time (and answers), or the
    /// wait runs out and the plan goes on.
    fn wait_in_queue(&mut self, free_after: Option<Duration>, timeout: u32) {
        let limit = Duration::from_secs(u64::from(timeout));
        match free_after.filter(|w| *w < limit) {
            Some(wait) => {
                self.now += wait;
                let t = self.elapsed();
                self.lines.push(format!(
                    "  {t:>4}s  a secretary frees up after {} s in the queue and is rung",
                    wait.as_secs()
                ));
                self.pending_leg = Some((true, timeout));
                self.wait_outside();
            }
            None => {
                self.now += limit;
                let t = self.elapsed();
                self.lines.push(format!(
                    "  {t:>4}s  the wait runs out after {timeout} s in the queue: next step"
                ));
                self.machine.handle_leg_result(false, self.now);
            }
        }
    }
}

/// The line's override as the simulated call finds it: in force (the hours do not decide
/// `open` conditions) or not at that time.
fn describe_line(company: &Company, line: &LineOverride, at: jiff::Timestamp) -> String {
    let until = company
        .timezone
        .to_datetime(line.until)
        .strftime("%Y-%m-%d %H:%M");
    let what = format!(
        "line {} until {until}, set by {}: {}",
        line.state.as_str(),
        line.set_by,
        line.reason
    );
    if line.applies_at(at) {
        format!("{what} (in force: it decides whether the office is open)")
    } else {
        format!("{what} (not in force at this time: the hours decide)")
    }
}

/// Whom an offer rings: the named secretaries, a group, or all of the company's.
fn describe_whom(who: &[String], group: Option<String>) -> String {
    match (who.is_empty(), group) {
        (false, _) => who.join(", "),
        (true, Some(g)) => format!("group {g}"),
        (true, None) => "the company's secretaries".into(),
    }
}

/// How a transfer's target reads: an executive with where they are reached, or the URI.
fn describe_target(company: &Company, to: TransferTarget) -> String {
    match to {
        TransferTarget::Executive(e) => {
            let reach = company
                .executives
                .get(&e)
                .map(|x| {
                    let reach: Vec<String> = x.reach.iter().map(ToString::to_string).collect();
                    reach.join(", ")
                })
                .unwrap_or_default();
            format!("executive {} ({reach})", e.0)
        }
        TransferTarget::Uri(u) => u,
    }
}
