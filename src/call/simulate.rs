//! `permanence simulate`: the route decision and the call machine the server uses, driven
//! with a pretend clock and pretend answers, printing what would happen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::machine::{CallMachine, Capabilities, Command};
use crate::dialplan::{self, CallFacts, Caller, Company, TransferTarget};
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
    /// Whether a secretary is available (and answers).
    pub secretaries: bool,
    /// Whether an executive answers a transfer.
    pub executive_answers: bool,
    /// How long a voicemail waits for the caller's first word (the server's setting).
    pub no_speech: Option<Duration>,
    /// How long each sound lasts (from the loaded sounds); others count 3 s.
    pub sound_lengths: std::collections::HashMap<crate::dialplan::SoundName, Duration>,
}

/// Lines describing the decision and the steps, for a person to read.
pub fn simulate(company: &Arc<Company>, scenario: &Scenario) -> Vec<String> {
    let dialled = scenario
        .dialled
        .clone()
        .or_else(|| company.numbers.first().cloned());
    let facts = CallFacts {
        caller: &scenario.caller,
        dialled: dialled.as_ref(),
        now: scenario.at,
        secretary_available: scenario.secretaries,
    };
    let mut lines = Vec::new();
    let (verdicts, local) = dialplan::explain(company, &facts);
    lines.push(format!(
        "company {} ({}), caller {}, local time {local}",
        company.id, company.name, scenario.caller
    ));
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
        return lines;
    };
    if let Some(name) = decision.contact_name {
        lines.push(format!("  caller is the contact \"{name}\""));
    }
    let route = &company.routes[index];
    lines.push(format!(
        "route `{}` (category {}):",
        route.name,
        route.category.as_str()
    ));

    let mut machine = CallMachine::new(
        Arc::clone(company),
        index,
        Capabilities::ALL,
        scenario.at,
        scenario.no_speech,
    );
    let start = Instant::now();
    let mut now = start;
    let mut digits = scenario.digits.iter().copied();
    let mut pending_leg: Option<(bool, u32)> = None;
    // The sound playing now, and how long it takes.
    let mut playing: Option<Duration> = None;
    machine.start(now);
    // Bounded: a plan is finite, but a simulation must end even if one were not.
    for _ in 0..1000 {
        let mut progressed = false;
        while let Some(command) = machine.poll_command() {
            let t = (now - start).as_secs();
            match command {
                Command::Ringing => lines.push(format!("  {t:>4}s  ring (180 Ringing)")),
                Command::Answer => lines.push(format!("  {t:>4}s  answer")),
                Command::Play { sound, times } => {
                    let length = scenario
                        .sound_lengths
                        .get(&sound)
                        .copied()
                        .unwrap_or(Duration::from_secs(3));
                    playing = Some(length * times);
                    let times = if times > 1 {
                        format!(" ×{times}")
                    } else {
                        String::new()
                    };
                    lines.push(format!("  {t:>4}s  play {}{times}", sound.0));
                }
                Command::StopPlaying => lines.push(format!("  {t:>4}s  (prompt interrupted)")),
                Command::OfferSecretaries {
                    timeout,
                    who,
                    group,
                    ..
                } => {
                    let whom = match (who.is_empty(), group) {
                        (false, _) => who.join(", "),
                        (true, Some(g)) => format!("group {g}"),
                        (true, None) => "the company's secretaries".into(),
                    };
                    lines.push(format!("  {t:>4}s  offer to {whom} for {timeout} s"));
                    pending_leg = Some((scenario.secretaries, timeout));
                }
                Command::Transfer {
                    to,
                    timeout,
                    screening,
                    ..
                } => {
                    let to = match to {
                        TransferTarget::Executive(e) => {
                            let reach = company
                                .executives
                                .get(&e)
                                .map(|x| {
                                    let reach: Vec<String> =
                                        x.reach.iter().map(ToString::to_string).collect();
                                    reach.join(", ")
                                })
                                .unwrap_or_default();
                            format!("executive {} ({reach})", e.0)
                        }
                        TransferTarget::Uri(u) => u,
                    };
                    let screening = if screening { ", screened" } else { "" };
                    lines.push(format!(
                        "  {t:>4}s  transfer to {to}, {timeout} s per attempt{screening}"
                    ));
                    pending_leg = Some((scenario.executive_answers, timeout));
                }
                Command::StartRecording { max_seconds } => {
                    lines.push(format!(
                        "  {t:>4}s  record the caller, up to {max_seconds} s"
                    ));
                }
                Command::StopRecording { reason } => {
                    lines.push(format!(
                        "  {t:>4}s  stop recording ({reason}), keep the message"
                    ));
                }
                Command::Reject(code) => lines.push(format!("  {t:>4}s  refuse with {code}")),
                Command::SendBye => lines.push(format!("  {t:>4}s  hang up")),
                Command::Category(c) => {
                    lines.push(format!("  {t:>4}s  file the message as {}", c.as_str()))
                }
                Command::Event(event) => match event.kind() {
                    "menu-choice"
                    | "menu-invalid"
                    | "menu-timeout"
                    | "menu-failed"
                    | "goto"
                    | "step-skipped"
                    | "executive-off-hours" => {
                        lines.push(format!("  {t:>4}s  ({} {})", event.kind(), event.data()))
                    }
                    _ => {}
                },
                Command::End(outcome) => {
                    lines.push(format!("outcome: {}", outcome.as_str()));
                    return lines;
                }
            }
            progressed = true;
        }
        // Feed the machine what the scenario says happens next.
        if machine.wants_digit() {
            match digits.next() {
                Some(d) => {
                    lines.push(format!(
                        "  {:>4}s  caller presses {d}",
                        (now - start).as_secs()
                    ));
                    machine.handle_digit(d, now);
                    continue;
                }
                None => {
                    // No key: the prompt plays to its end, then the menu's wait runs.
                    now += playing.take().unwrap_or_default();
                    machine.handle_playback_done(now);
                }
            }
        }
        if machine.is_recording() {
            // The caller speaks for a while, then stops.
            now += Duration::from_secs(20);
            lines.push(format!(
                "  {:>4}s  (the caller speaks, then falls silent)",
                (now - start).as_secs()
            ));
            machine.handle_speech();
            machine.handle_silence();
            continue;
        }
        if let Some(at) = machine.poll_timeout() {
            now = now.max(at);
            machine.handle_timeout(now);
            continue;
        }
        if !progressed {
            // Nothing pending: the current step waits on the outside world (a sound ends,
            // a leg answers or not).
            if let Some((answered, timeout)) = pending_leg.take() {
                // An answer comes after a few seconds of ringing; no answer takes the whole timeout.
                now += Duration::from_secs(if answered { 5 } else { u64::from(timeout) });
                let t = (now - start).as_secs();
                machine.handle_leg_result(answered, now);
                if answered {
                    lines.push(format!(
                        "  {t:>4}s  answered: conversation, then they hang up"
                    ));
                    machine.handle_leg_hangup(now);
                } else {
                    lines.push(format!("  {t:>4}s  no answer: next step"));
                }
                continue;
            }
            now += playing.take().unwrap_or(Duration::from_secs(3));
            machine.handle_playback_done(now);
            machine.handle_bye_answered();
        }
    }
    lines.push("(simulation stopped after 1000 steps)".into());
    lines
}
