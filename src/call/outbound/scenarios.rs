//! Scenario tests of the outbound machine, with a fake desk and a fake clock.
//!
//! Each test plays one situation a caller, a secretary or an executive lives through and
//! checks what they would notice: whose phone rings, what stops ringing, what the call's
//! machine is told and what the call's timeline records. Outputs are read as short lines
//! (`invite 0 alice at sip:…`, `cancel 1`, `news GaveUp`) and the timeline as event kinds.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::*;
use crate::dialplan::{ExecutiveId, parse_str};
use crate::distribution::State;
use crate::dnd::Dnd;

/// One company: Marie at two URIs, Paul at an account, a number and a URI, Jean at a
/// number (through the trunk) and a URI, Luc at an account and a number. The route names
/// a URI a REFER may go to.
const PLAN: &str = r#"
[company]
id = "acme"
name = "ACME"
numbers = ["+33180000001"]

[executives.marie]
name = "Marie"
reach = ["sip:marie@192.0.2.1", "sip:marie-mobile@192.0.2.2"]

[executives.paul]
name = "Paul"
reach = ["user:paul", "tel:+33622222222", "sip:paul@192.0.2.3"]

[executives.jean]
name = "Jean"
reach = ["tel:+33611111111", "sip:jean@192.0.2.4"]

[executives.luc]
name = "Luc"
reach = ["user:luc", "tel:+33633333333"]

[[route]]
name = "r"
steps = [{ transfer = { to = "sip:desk@192.0.2.9" } }]
"#;

/// The call's row id.
const CALL: i64 = 1;

/// Our SIP host: secretaries' To URIs name it.
const LOCAL_IP: &str = "192.0.2.100";
/// The trunk's proxy, for the tests that have one.
const TRUNK: &str = "192.0.2.50:5060";

// ---------------------------------------------------------------------- the fake desk

/// The desk as the machine reads it: the secretaries and their states, and the phones
/// each account has registered.
#[derive(Default)]
struct FakeDesk {
    team: Vec<Candidate>,
    phones: HashMap<String, Vec<Target>>,
    /// Executives under do-not-disturb, until when (unix ms).
    dnd: HashMap<String, u64>,
}

impl FakeDesk {
    /// Adds a free secretary (`assigned` to the company, or overflow only) with one phone.
    fn secretary(mut self, name: &str, assigned: bool, idle_since: u64) -> Self {
        self.team.push(Candidate {
            username: name.to_string(),
            assigned,
            selected: true,
            state: State::Available { idle_since },
        });
        let host = format!("192.0.2.{}", 10 + self.team.len());
        self.phone(name, &host)
    }

    /// Registers one more phone for an account, at `host` (port 5060).
    fn phone(mut self, account: &str, host: &str) -> Self {
        let addr: SocketAddr = format!("{host}:5060").parse().unwrap();
        self.phones
            .entry(account.to_string())
            .or_default()
            .push(Target {
                uri: format!("sip:{account}@{host}"),
                peer: Peer {
                    transport: Transport::Udp,
                    addr,
                },
            });
        self
    }

    fn set(&mut self, name: &str, state: State) {
        if let Some(c) = self.team.iter_mut().find(|c| c.username == name) {
            c.state = state;
        }
    }
}

impl Roster for FakeDesk {
    fn candidates(
        &self,
        _company: &str,
        who: &[String],
        _group: Option<&str>,
        _now_ms: u64,
    ) -> Vec<Candidate> {
        self.team
            .iter()
            .map(|c| Candidate {
                selected: who.is_empty() || who.contains(&c.username),
                ..c.clone()
            })
            .collect()
    }

    fn phones(&self, account: &str, _now_ms: u64) -> Vec<Target> {
        self.phones.get(account).cloned().unwrap_or_default()
    }

    fn do_not_disturb(&self, executive: &str, now_ms: u64) -> Option<Dnd> {
        let ms = |ms: u64| jiff::Timestamp::from_millisecond(ms as i64).unwrap();
        let until = *self.dnd.get(executive)?;
        let dnd = Dnd {
            since: ms(0),
            until: ms(until),
            set_by: executive.to_string(),
        };
        dnd.applies_at(ms(now_ms)).then_some(dnd)
    }
}

// ---------------------------------------------------------------------- the driver

/// One call's outbound side, the desk it reads, and the time.
struct Scenario {
    machine: OutboundMachine,
    desk: FakeDesk,
    start: Now,
    now: Now,
    /// Secretaries another call takes between our offer and our claim.
    taken: Vec<String>,
}

impl Scenario {
    fn new(desk: FakeDesk) -> Scenario {
        Scenario::build(PLAN, desk, None)
    }

    fn with_trunk(desk: FakeDesk) -> Scenario {
        let proxy: SocketAddr = TRUNK.parse().unwrap();
        let trunk = TrunkRoute {
            proxy,
            domain: proxy.ip().to_string(),
        };
        Scenario::build(PLAN, desk, Some(trunk))
    }

    fn build(plan: &str, desk: FakeDesk, trunk: Option<TrunkRoute>) -> Scenario {
        let company = parse_str(plan).unwrap_or_else(|e| panic!("{e:?}"));
        let start = Now {
            instant: Instant::now(),
            unix_ms: 1_000_000,
        };
        Scenario {
            machine: OutboundMachine::new(
                Arc::new(company),
                CALL,
                LOCAL_IP.parse().unwrap(),
                trunk,
            ),
            desk,
            start,
            now: start,
            taken: Vec::new(),
        }
    }

    /// `d` after the start.
    fn at(&self, d: Duration) -> Instant {
        self.start.later(d).instant
    }

    /// Everything the machine asked for since last time, answering each claim as the
    /// desk would (the phones, or none when another call took the secretary) and keeping
    /// the desk's states in step.
    fn outputs(&mut self) -> Vec<Output> {
        let mut seen = Vec::new();
        while let Some(output) = self.machine.poll_output() {
            match &output {
                Output::Claim { secretary } => {
                    let phones = if let Some(i) = self.taken.iter().position(|s| s == secretary) {
                        self.taken.remove(i);
                        self.desk.set(secretary, State::OnCall);
                        Vec::new()
                    } else {
                        self.desk.set(secretary, State::Ringing);
                        self.desk.phones(secretary, self.now.unix_ms)
                    };
                    self.machine
                        .on_claimed(&self.desk, secretary, phones, self.now);
                }
                Output::Release { secretary } => {
                    let idle_since = self.now.unix_ms;
                    self.desk.set(secretary, State::Available { idle_since });
                }
                Output::DeskAnswered { secretary } => self.desk.set(secretary, State::OnCall),
                Output::DeskFinished { secretary } => {
                    let until = self.now.unix_ms + 30_000;
                    self.desk.set(secretary, State::WrapUp { until });
                }
                _ => {}
            }
            seen.push(output);
        }
        seen
    }

    fn offer(&mut self, step: SecretaryStep) -> Vec<Output> {
        self.machine.offer_secretaries(&self.desk, step, self.now);
        self.outputs()
    }

    fn transfer(&mut self, executive: &str, screening: bool, mode: ReachMode) -> Vec<Output> {
        let to = TransferTarget::Executive(ExecutiveId(executive.to_string()));
        self.machine
            .transfer(&self.desk, &to, 20, screening, mode, self.now);
        self.outputs()
    }

    fn ringing(&mut self, leg: usize) -> Vec<Output> {
        self.machine.on_ringing(LegId(leg), 180);
        self.outputs()
    }

    fn failed(&mut self, leg: usize, status: u16) -> Vec<Output> {
        self.machine
            .on_failed(&self.desk, LegId(leg), status, false, self.now);
        self.outputs()
    }

    /// The trunk asks for credentials (407 with a challenge we can answer).
    fn challenged(&mut self, leg: usize) -> Vec<Output> {
        self.machine
            .on_failed(&self.desk, LegId(leg), 407, true, self.now);
        self.outputs()
    }

    fn answered(&mut self, leg: usize) -> Vec<Output> {
        self.machine
            .on_answered(&self.desk, LegId(leg), true, self.now);
        self.outputs()
    }

    /// A 2xx whose SDP we cannot use.
    fn answered_unusable(&mut self, leg: usize) -> Vec<Output> {
        self.machine
            .on_answered(&self.desk, LegId(leg), false, self.now);
        self.outputs()
    }

    fn digit(&mut self, leg: usize, key: char) -> Vec<Output> {
        self.machine.on_digit(LegId(leg), key);
        self.outputs()
    }

    fn bye(&mut self, leg: usize) -> Vec<Output> {
        self.machine.on_bye(LegId(leg));
        self.outputs()
    }

    fn refer(&mut self, leg: usize, refer_to: Option<&str>) -> (u16, Vec<Output>) {
        let status = self
            .machine
            .on_refer(&self.desk, LegId(leg), refer_to, self.now);
        (status, self.outputs())
    }

    /// `secretary` presses the console's transfer button for `executive`.
    fn console(
        &mut self,
        secretary: &str,
        executive: &str,
    ) -> (Result<(), TransferRefused>, Vec<Output>) {
        let asked = self
            .machine
            .on_console_transfer(&self.desk, secretary, executive, self.now);
        (asked, self.outputs())
    }

    /// Moves the clock to `d` after the start and fires the machine's timer.
    fn desk_changed(&mut self, d: Duration) -> Vec<Output> {
        self.now = self.start.later(d);
        self.machine.on_desk_changed(&self.desk, self.now);
        self.outputs()
    }

    fn timeout_at(&mut self, d: Duration) -> Vec<Output> {
        self.now = self.start.later(d);
        self.machine.on_timeout(&self.desk, self.now);
        self.outputs()
    }

    fn end(&mut self) -> Vec<Output> {
        self.machine.end(self.now);
        self.outputs()
    }

    /// Alice (alone at the desk) has answered the caller on leg 0.
    fn talking_to_alice() -> Scenario {
        Scenario::talking_to_alice_with(PLAN)
    }

    /// The same, for a company with this plan.
    fn talking_to_alice_with(plan: &str) -> Scenario {
        let mut s = Scenario::build(
            plan,
            FakeDesk::default().secretary("alice", true, 100),
            None,
        );
        s.offer(ring_all(30));
        let out = s.answered(0);
        assert!(out.contains(&Output::News(News::Answered)));
        assert_eq!(s.machine.connected_to(), Some("alice"));
        s
    }
}

// ---------------------------------------------------------------------- reading outputs

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ring_all(timeout: u32) -> SecretaryStep {
    SecretaryStep {
        timeout,
        who: Vec::new(),
        group: None,
        strategy: Strategy::RingAll,
        overflow_after: None,
        priority: 0,
        hold: false,
        announce_every: None,
    }
}

fn longest_idle(timeout: u32) -> SecretaryStep {
    SecretaryStep {
        strategy: Strategy::LongestIdle,
        ..ring_all(timeout)
    }
}

/// What the shell is asked to do, one line each, the timeline left out.
fn actions(outputs: &[Output]) -> Vec<String> {
    let flag = |on: bool, text: &str| if on { text.to_string() } else { String::new() };
    outputs
        .iter()
        .filter_map(|o| {
            Some(match o {
                // The queue's bookkeeping has its own helper (`queue_actions`).
                Output::Event(_)
                | Output::JoinQueue(_)
                | Output::UpdateQueue(_)
                | Output::LeaveQueue => return None,
                Output::Hold => "hold".to_string(),
                Output::QueueAnnouncement => "queue-announcement".to_string(),
                Output::News(news) => format!("news {news:?}"),
                Output::Claim { secretary } => format!("claim {secretary}"),
                Output::Release { secretary } => format!("release {secretary}"),
                Output::DeskAnswered { secretary } => format!("desk-answered {secretary}"),
                Output::DeskFinished { secretary } => format!("desk-finished {secretary}"),
                Output::Invite {
                    leg, who, target, ..
                } => format!("invite {} {who} at {}", leg.0, target.uri),
                Output::Authenticate { leg } => format!("authenticate {}", leg.0),
                Output::Cancel { leg } => format!("cancel {}", leg.0),
                Output::Bye { leg } => format!("bye {}", leg.0),
                Output::Open { leg } => format!("open {}", leg.0),
                Output::Bridge { leg } => format!("bridge {}", leg.0),
                Output::Announce { leg } => format!("announce {}", leg.0),
                Output::StopAnnouncement { leg } => format!("stop-announcement {}", leg.0),
                Output::Close { leg } => format!("close {}", leg.0),
                Output::Ringback => "ringback".to_string(),
                Output::Notify { leg, sipfrag, last } => {
                    format!("notify {} {sipfrag}{}", leg.0, flag(*last, " (last)"))
                }
                Output::Handled { by, transfer } => {
                    format!("handled {by}{}", flag(*transfer, " (transfer)"))
                }
            })
        })
        .collect()
}

/// The timeline's kinds, in order.
fn events(outputs: &[Output]) -> Vec<&'static str> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.kind()),
            _ => None,
        })
        .collect()
}

/// Whether the timeline got exactly this event (kind and details).
fn recorded(outputs: &[Output], event: CallEvent) -> bool {
    outputs.contains(&Output::Event(event))
}

/// The To URI and the target of leg `leg`'s INVITE.
fn invite(outputs: &[Output], leg: usize) -> (String, Target) {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Invite {
                leg: l,
                to_uri,
                target,
                ..
            } if l.0 == leg => Some((to_uri.clone(), target.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no INVITE for leg {leg} in {outputs:?}"))
}

fn secretary_unanswered(why: &str) -> CallEvent {
    CallEvent::SecretaryUnanswered {
        why: why.to_string(),
    }
}

fn transfer_failed(to: &str, why: &str) -> CallEvent {
    CallEvent::TransferFailed {
        to: to.to_string(),
        why: why.to_string(),
    }
}

fn executive_refused(why: &str) -> CallEvent {
    CallEvent::ExecutiveRefused {
        executive: "marie".to_string(),
        why: why.to_string(),
    }
}

// ---------------------------------------------------------------------- secretaries

#[test]
fn ring_all_first_answer_wins_and_the_others_stop_ringing() {
    let mut s = Scenario::new(
        FakeDesk::default()
            .secretary("alice", true, 100)
            .secretary("bea", true, 200),
    );
    let out = s.offer(ring_all(30));
    assert_eq!(
        actions(&out),
        [
            "claim alice",
            "claim bea",
            "invite 0 alice at sip:alice@192.0.2.11",
            "invite 1 bea at sip:bea@192.0.2.12",
        ]
    );
    assert_eq!(events(&out), ["secretary-offered", "secretary-offered"]);
    let (to_uri, target) = invite(&out, 0);
    assert_eq!(to_uri, "sip:alice@192.0.2.100", "the To names our host");
    assert_eq!(
        target.peer.addr,
        "192.0.2.11:5060".parse::<std::net::SocketAddr>().unwrap()
    );

    assert_eq!(events(&s.ringing(0)), ["secretary-ringing"]);
    assert_eq!(events(&s.ringing(1)), ["secretary-ringing"]);

    let out = s.answered(1);
    assert_eq!(
        actions(&out),
        [
            "open 1",
            "cancel 0",
            "release alice",
            "bridge 1",
            "desk-answered bea",
            "handled bea",
            "news Answered",
        ]
    );
    assert_eq!(events(&out), ["secretary-answered", "secretary-cancelled"]);
    assert_eq!(s.machine.connected_to(), Some("bea"));
    assert_eq!(s.machine.poll_timeout(), None, "the step is over");

    // Alice picked up just as her phone was cancelled: she is hung up on, quietly.
    let out = s.answered(0);
    assert_eq!(actions(&out), ["bye 0"]);
    assert!(events(&out).is_empty(), "{out:?}");
    assert_eq!(s.machine.connected_to(), Some("bea"));
    assert_eq!(s.machine.leg_state(LegId(0)), Some(LegState::Done));
}

#[test]
fn longest_idle_rings_one_at_a_time_and_never_twice_the_one_who_declined() {
    let mut s = Scenario::new(
        FakeDesk::default()
            .secretary("alice", true, 100)
            .secretary("bea", true, 200)
            .secretary("carl", true, 50),
    );
    let mut all = Vec::new();

    let out = s.offer(longest_idle(60));
    assert_eq!(
        actions(&out),
        ["claim carl", "invite 0 carl at sip:carl@192.0.2.13"],
        "the longest idle rings alone"
    );
    all.extend(out);

    let out = s.failed(0, 486);
    assert_eq!(
        actions(&out),
        [
            "release carl",
            "claim alice",
            "invite 1 alice at sip:alice@192.0.2.11"
        ]
    );
    assert_eq!(events(&out), ["secretary-declined", "secretary-offered"]);
    assert!(recorded(
        &out,
        CallEvent::Declined {
            role: Role::Secretary,
            to: "carl".into(),
            status: 486
        }
    ));
    all.extend(out);

    // Carl is free again at the desk, yet the next offer goes to Bea.
    let out = s.failed(1, 486);
    assert_eq!(
        actions(&out),
        [
            "release alice",
            "claim bea",
            "invite 2 bea at sip:bea@192.0.2.12"
        ]
    );
    all.extend(out);

    let out = s.failed(2, 603);
    assert_eq!(actions(&out), ["release bea", "news GaveUp"]);
    assert_eq!(events(&out), ["secretary-declined", "secretary-unanswered"]);
    assert!(recorded(&out, secretary_unanswered("nobody-left")));
    all.extend(out);

    let claims: Vec<String> = actions(&all)
        .into_iter()
        .filter(|a| a.starts_with("claim"))
        .collect();
    assert_eq!(
        claims,
        ["claim carl", "claim alice", "claim bea"],
        "each rung once"
    );
    assert_eq!(s.machine.poll_timeout(), None);
}

#[test]
fn a_secretary_taken_by_another_call_meanwhile_is_skipped_for_the_next() {
    let mut s = Scenario::new(
        FakeDesk::default()
            .secretary("alice", true, 100)
            .secretary("bea", true, 200),
    );
    s.taken.push("alice".into());
    let out = s.offer(longest_idle(30));
    assert_eq!(
        actions(&out),
        [
            "claim alice",
            "claim bea",
            "invite 0 bea at sip:bea@192.0.2.12"
        ],
        "no phone of Alice rings, and she is not ours to release"
    );
    assert_eq!(events(&out), ["secretary-offered"]);
}

#[test]
fn ring_all_whose_every_claim_is_lost_waits_for_the_next_free_secretary() {
    let mut s = Scenario::new(
        FakeDesk::default()
            .secretary("alice", true, 100)
            .secretary("bea", true, 200),
    );
    s.taken = vec!["alice".into(), "bea".into()];
    let out = s.offer(ring_all(30));
    assert_eq!(actions(&out), ["claim alice", "claim bea"]);
    assert_eq!(
        events(&out),
        ["queued"],
        "both went to other calls: the caller waits"
    );
    s.desk.set(
        "bea",
        State::Available {
            idle_since: 1_000_500,
        },
    );
    let out = s.desk_changed(secs(4));
    assert_eq!(
        actions(&out),
        ["claim bea", "invite 0 bea at sip:bea@192.0.2.12"]
    );
}

#[test]
fn a_secretary_whose_answer_has_unusable_audio_is_hung_up_on_and_the_next_rings() {
    let mut s = Scenario::new(
        FakeDesk::default()
            .secretary("alice", true, 100)
            .secretary("bea", true, 200),
    );
    s.offer(longest_idle(30));
    let out = s.answered_unusable(0);
    assert_eq!(
        actions(&out),
        [
            "bye 0",
            "release alice",
            "claim bea",
            "invite 1 bea at sip:bea@192.0.2.12"
        ]
    );
    assert_eq!(events(&out), ["unusable-answer", "secretary-offered"]);
    assert_eq!(s.machine.connected_to(), None);
}

#[test]
fn a_step_that_times_out_stops_every_phone_and_gives_up() {
    let mut s = Scenario::new(
        FakeDesk::default()
            .secretary("alice", true, 100)
            .secretary("bea", true, 200),
    );
    s.offer(ring_all(30));
    s.ringing(0);
    assert_eq!(s.machine.poll_timeout(), Some(s.at(secs(30))));

    assert!(s.timeout_at(secs(29)).is_empty(), "not yet");
    let out = s.timeout_at(secs(30));
    assert_eq!(
        actions(&out),
        [
            "cancel 0",
            "cancel 1",
            "release alice",
            "release bea",
            "news GaveUp"
        ]
    );
    assert_eq!(
        events(&out),
        [
            "secretary-cancelled",
            "secretary-cancelled",
            "secretary-unanswered"
        ]
    );
    assert!(recorded(&out, secretary_unanswered("timeout")));
    assert_eq!(s.machine.poll_timeout(), None);

    // The phones' 487s to our CANCELs change nothing.
    assert!(s.failed(0, 487).is_empty());
    assert!(s.failed(1, 487).is_empty());
}

#[test]
fn overflow_offers_the_call_to_a_secretary_of_another_company_at_its_instant() {
    let mut s = Scenario::new(
        FakeDesk::default()
            .secretary("alice", true, 100)
            .secretary("fred", false, 0),
    );
    let step = SecretaryStep {
        overflow_after: Some(10),
        ..ring_all(30)
    };
    let out = s.offer(step);
    assert_eq!(
        actions(&out),
        ["claim alice", "invite 0 alice at sip:alice@192.0.2.11"],
        "Fred, though idle longer, is not assigned to ACME"
    );
    assert_eq!(s.machine.poll_timeout(), Some(s.at(secs(10))));

    assert!(s.timeout_at(secs(9)).is_empty());
    let out = s.timeout_at(secs(10));
    assert_eq!(
        actions(&out),
        ["claim fred", "invite 1 fred at sip:fred@192.0.2.12"]
    );
    assert_eq!(
        s.machine.poll_timeout(),
        Some(s.at(secs(30))),
        "then the step's end"
    );
    assert_eq!(s.machine.leg_state(LegId(0)), Some(LegState::Calling));
}

// ---------------------------------------------------------------------- executives

#[test]
fn sequential_reach_rings_each_entry_in_turn_then_gives_up() {
    let mut s = Scenario::new(FakeDesk::default());
    let out = s.transfer("marie", false, ReachMode::Sequential);
    assert_eq!(actions(&out), ["invite 0 marie at sip:marie@192.0.2.1"]);
    assert_eq!(events(&out), ["transfer", "executive-offered"]);
    let (to_uri, target) = invite(&out, 0);
    assert_eq!(to_uri, "sip:marie@192.0.2.1");
    assert_eq!(
        target.peer.addr,
        "192.0.2.1:5060".parse::<std::net::SocketAddr>().unwrap()
    );
    assert_eq!(s.machine.poll_timeout(), Some(s.at(secs(20))));

    s.ringing(0);
    assert!(s.timeout_at(secs(19)).is_empty());
    let out = s.timeout_at(secs(20));
    assert_eq!(
        actions(&out),
        ["cancel 0", "invite 1 marie at sip:marie-mobile@192.0.2.2"]
    );
    assert_eq!(events(&out), ["executive-cancelled", "executive-offered"]);
    assert_eq!(s.machine.poll_timeout(), Some(s.at(secs(40))));

    // Her desk phone picked up just too late: hung up on, the mobile keeps ringing.
    let out = s.answered(0);
    assert_eq!(actions(&out), ["bye 0"]);
    assert!(events(&out).is_empty());
    assert_eq!(s.machine.leg_state(LegId(1)), Some(LegState::Calling));

    let out = s.failed(1, 480);
    assert_eq!(actions(&out), ["news GaveUp"]);
    assert_eq!(events(&out), ["executive-declined", "transfer-failed"]);
    assert!(recorded(&out, transfer_failed("marie", "unanswered")));
    assert_eq!(s.machine.poll_timeout(), None);
}

#[test]
fn simultaneous_reach_rings_every_phone_and_the_first_answer_stops_the_others() {
    let mut s = Scenario::new(FakeDesk::default());
    let out = s.transfer("marie", false, ReachMode::Simultaneous);
    assert_eq!(
        actions(&out),
        [
            "invite 0 marie at sip:marie@192.0.2.1",
            "invite 1 marie at sip:marie-mobile@192.0.2.2"
        ]
    );
    assert_eq!(
        events(&out),
        ["transfer", "executive-offered", "executive-offered"]
    );
    s.ringing(0);
    let out = s.answered(1);
    assert_eq!(
        actions(&out),
        [
            "open 1",
            "cancel 0",
            "bridge 1",
            "handled marie (transfer)",
            "news Answered"
        ]
    );
    assert_eq!(
        events(&out),
        ["executive-answered", "executive-cancelled", "transferred"]
    );
    assert_eq!(s.machine.connected_to(), Some("marie"));
}

#[test]
fn a_simultaneous_phone_that_declines_leaves_the_others_ringing() {
    let mut s = Scenario::new(FakeDesk::default());
    s.transfer("marie", false, ReachMode::Simultaneous);
    let out = s.failed(0, 486);
    assert!(actions(&out).is_empty(), "{out:?}");
    assert_eq!(events(&out), ["executive-declined"]);
    let out = s.failed(1, 603);
    assert_eq!(actions(&out), ["news GaveUp"]);
    assert!(recorded(&out, transfer_failed("marie", "unanswered")));
}

#[test]
fn a_reach_entry_that_rings_nowhere_is_recorded_and_the_next_is_called() {
    // Paul's account has no phone registered, and there is no trunk for his number.
    let mut s = Scenario::new(FakeDesk::default());
    let out = s.transfer("paul", false, ReachMode::Sequential);
    assert_eq!(actions(&out), ["invite 0 paul at sip:paul@192.0.2.3"]);
    assert_eq!(
        events(&out),
        [
            "transfer",
            "executive-unreachable",
            "executive-unreachable",
            "executive-offered"
        ]
    );
    for reach in ["user:paul", "tel:+33622222222"] {
        let unreachable = CallEvent::ExecutiveUnreachable {
            executive: "paul".into(),
            reach: reach.into(),
        };
        assert!(recorded(&out, unreachable), "{reach}: {out:?}");
    }
    assert_eq!(s.machine.poll_timeout(), Some(s.at(secs(20))));
}

#[test]
fn an_account_reach_rings_every_phone_the_account_registered() {
    let desk = FakeDesk::default()
        .phone("paul", "192.0.2.31")
        .phone("paul", "192.0.2.32");
    let mut s = Scenario::new(desk);
    let out = s.transfer("paul", false, ReachMode::Sequential);
    assert_eq!(
        actions(&out),
        [
            "invite 0 paul at sip:paul@192.0.2.31",
            "invite 1 paul at sip:paul@192.0.2.32"
        ]
    );
    // One phone declining is not the attempt's end.
    let out = s.failed(0, 486);
    assert!(actions(&out).is_empty(), "{out:?}");
    let out = s.answered(1);
    assert!(actions(&out).contains(&"bridge 1".to_string()), "{out:?}");
}

#[test]
fn a_trunk_challenge_is_answered_once_then_counts_as_a_decline() {
    let mut s = Scenario::with_trunk(FakeDesk::default());
    let out = s.transfer("jean", false, ReachMode::Sequential);
    assert_eq!(
        actions(&out),
        ["invite 0 jean at sip:+33611111111@192.0.2.50"]
    );
    let (_, target) = invite(&out, 0);
    assert_eq!(
        target.peer.addr,
        TRUNK.parse::<std::net::SocketAddr>().unwrap(),
        "numbers go through the trunk"
    );

    let out = s.challenged(0);
    assert_eq!(actions(&out), ["authenticate 0"]);
    assert_eq!(events(&out), ["trunk-authenticated"]);
    assert!(recorded(
        &out,
        CallEvent::TrunkAuthenticated {
            to: "jean".into(),
            status: 407
        }
    ));
    assert_eq!(s.machine.leg_state(LegId(0)), Some(LegState::Calling));

    let out = s.challenged(0);
    assert_eq!(actions(&out), ["invite 1 jean at sip:jean@192.0.2.4"]);
    assert_eq!(events(&out), ["executive-declined", "executive-offered"]);
    assert!(recorded(
        &out,
        CallEvent::Declined {
            role: Role::Executive,
            to: "jean".into(),
            status: 407
        }
    ));
}

// ---------------------------------------------------------------------- screening

/// Marie, screened, answered her first phone (leg 0) five seconds in.
fn marie_screening() -> Scenario {
    let mut s = Scenario::new(FakeDesk::default());
    s.transfer("marie", true, ReachMode::Sequential);
    s.now = s.start.later(secs(5));
    let out = s.answered(0);
    assert_eq!(
        actions(&out),
        ["open 0", "announce 0"],
        "no bridge before she accepts"
    );
    assert_eq!(events(&out), ["executive-answered"]);
    assert_eq!(s.machine.screened(), Some(LegId(0)));
    assert_eq!(s.machine.connected_to(), None);
    s
}

#[test]
fn a_screened_executive_hears_the_announcement_and_takes_the_caller_with_1() {
    let mut s = marie_screening();
    assert_eq!(
        s.machine.poll_timeout(),
        Some(s.at(secs(5) + SCREENING_WAIT))
    );
    let out = s.digit(0, '1');
    assert_eq!(
        actions(&out),
        [
            "stop-announcement 0",
            "bridge 0",
            "handled marie (transfer)",
            "news Answered"
        ]
    );
    assert_eq!(
        events(&out),
        ["screening-key", "executive-accepted", "transferred"]
    );
    assert_eq!(s.machine.connected_to(), Some("marie"));
    assert_eq!(s.machine.screened(), None);
}

#[test]
fn a_screened_executive_refuses_with_2_and_the_plan_goes_on() {
    let mut s = marie_screening();
    let out = s.digit(0, '2');
    assert_eq!(actions(&out), ["bye 0", "close 0", "news GaveUp"]);
    assert_eq!(
        events(&out),
        ["screening-key", "executive-refused", "transfer-failed"]
    );
    assert!(recorded(&out, executive_refused("declined")));
    assert!(recorded(&out, transfer_failed("marie", "refused")));
    assert_eq!(s.machine.poll_timeout(), None);
}

#[test]
fn a_screened_executive_who_presses_nothing_is_refused_after_the_wait() {
    let mut s = marie_screening();
    assert!(s.timeout_at(secs(5) + SCREENING_WAIT - secs(1)).is_empty());
    let out = s.timeout_at(secs(5) + SCREENING_WAIT);
    assert_eq!(actions(&out), ["bye 0", "close 0", "news GaveUp"]);
    assert_eq!(events(&out), ["executive-refused", "transfer-failed"]);
    assert!(recorded(&out, executive_refused("no-answer")));
}

#[test]
fn a_screened_executive_hanging_up_during_the_announcement_refuses() {
    let mut s = marie_screening();
    let out = s.bye(0);
    assert_eq!(
        actions(&out),
        ["close 0", "news GaveUp"],
        "no BYE to who hung up"
    );
    assert_eq!(events(&out), ["executive-refused", "transfer-failed"]);
    assert!(recorded(&out, executive_refused("hung-up")));
}

#[test]
fn keys_from_a_leg_not_screened_mean_nothing() {
    let mut s = marie_screening();
    assert!(s.digit(1, '1').is_empty());
    assert_eq!(s.machine.screened(), Some(LegId(0)));
}

// ---------------------------------------------------------------------- REFER

#[test]
fn a_secretary_refer_rings_the_executive_then_hands_the_caller_over() {
    let mut s = Scenario::talking_to_alice();
    let (status, out) = s.refer(0, Some("sip:marie@192.0.2.1"));
    assert_eq!(status, 202);
    assert_eq!(
        actions(&out),
        [
            "notify 0 SIP/2.0 100 Trying",
            "invite 1 marie at sip:marie@192.0.2.1"
        ]
    );
    assert_eq!(events(&out), ["refer", "transfer", "executive-offered"]);
    assert!(recorded(
        &out,
        CallEvent::Transfer {
            to: "marie".into(),
            screening: false,
            by: Some("alice".into())
        }
    ));
    assert_eq!(
        s.machine.connected_to(),
        Some("alice"),
        "the caller stays with Alice meanwhile"
    );
    assert_eq!(s.machine.poll_timeout(), Some(s.at(REFER_TIMEOUT)));

    let out = s.answered(1);
    assert_eq!(
        actions(&out),
        [
            "open 1",
            "notify 0 SIP/2.0 200 OK (last)",
            "bye 0",
            "close 0",
            "desk-finished alice",
            "bridge 1",
            "handled marie (transfer)",
            "news Transferred",
        ]
    );
    assert_eq!(
        events(&out),
        ["executive-answered", "bye-sent", "transferred"]
    );
    assert!(recorded(
        &out,
        CallEvent::Transferred {
            to: "marie".into(),
            by: Some("alice".into())
        }
    ));
    assert_eq!(s.machine.connected_to(), Some("marie"));
}

#[test]
fn a_refer_to_a_destination_the_company_does_not_allow_is_refused() {
    let mut s = Scenario::talking_to_alice();
    let (status, out) = s.refer(0, Some("sip:+33999999999@evil.example"));
    assert_eq!(status, 403);
    assert!(actions(&out).is_empty(), "nobody rings: {out:?}");
    assert!(recorded(
        &out,
        CallEvent::ReferRefused {
            by: "alice".into(),
            to: Some("sip:+33999999999@evil.example".into()),
            status: 403
        }
    ));

    let (status, out) = s.refer(0, None);
    assert_eq!(status, 400, "no Refer-To");
    assert!(actions(&out).is_empty());
    assert_eq!(events(&out), ["refer-refused"]);
    assert_eq!(s.machine.connected_to(), Some("alice"));
}

#[test]
fn a_second_refer_while_the_first_rings_is_refused() {
    let mut s = Scenario::talking_to_alice();
    assert_eq!(s.refer(0, Some("sip:marie@192.0.2.1")).0, 202);
    let (status, out) = s.refer(0, Some("sip:desk@192.0.2.9"));
    assert_eq!(status, 403);
    assert!(actions(&out).is_empty(), "{out:?}");
    assert_eq!(events(&out), ["refer-refused"]);
    assert_eq!(s.machine.leg_state(LegId(1)), Some(LegState::Calling));
    assert_eq!(s.machine.leg_state(LegId(2)), None, "nothing else rang");
}

#[test]
fn a_blind_transfer_keeps_the_caller_on_ringback_until_the_executive_fails() {
    let mut s = Scenario::talking_to_alice();
    assert_eq!(s.refer(0, Some("sip:marie@192.0.2.1")).0, 202);

    let out = s.bye(0);
    assert_eq!(
        actions(&out),
        ["close 0", "desk-finished alice", "ringback"],
        "the call goes on without Alice"
    );
    assert_eq!(events(&out), ["secretary-hung-up"]);
    assert_eq!(s.machine.connected_to(), None);

    // Marie's reach list is tried in turn, as for a transfer step.
    let out = s.failed(1, 486);
    assert_eq!(
        actions(&out),
        ["invite 2 marie at sip:marie-mobile@192.0.2.2"]
    );
    let out = s.failed(2, 480);
    assert_eq!(actions(&out), ["news HungUp"]);
    assert_eq!(events(&out), ["executive-declined", "transfer-failed"]);
}

#[test]
fn a_blind_transfer_the_executive_answers_connects_the_caller() {
    let mut s = Scenario::talking_to_alice();
    s.refer(0, Some("sip:marie@192.0.2.1"));
    s.bye(0);
    let out = s.answered(1);
    assert_eq!(
        actions(&out),
        [
            "open 1",
            "bridge 1",
            "handled marie (transfer)",
            "news Transferred"
        ]
    );
}

#[test]
fn a_refer_nobody_answers_leaves_the_caller_with_the_secretary() {
    let mut s = Scenario::talking_to_alice();
    assert_eq!(s.refer(0, Some("sip:desk@192.0.2.9")).0, 202);
    let out = s.timeout_at(REFER_TIMEOUT);
    assert_eq!(
        actions(&out),
        [
            "cancel 1",
            "notify 0 SIP/2.0 480 Temporarily Unavailable (last)"
        ]
    );
    assert_eq!(events(&out), ["executive-cancelled", "transfer-failed"]);
    assert_eq!(s.machine.connected_to(), Some("alice"));
    assert_eq!(
        s.refer(0, Some("sip:marie@192.0.2.1")).0,
        202,
        "she may try again"
    );
}

// ---------------------------------------------------------------------- the console's button

#[test]
fn a_console_transfer_rings_the_executive_then_hands_the_caller_over_without_notify() {
    let mut s = Scenario::talking_to_alice();
    let (asked, out) = s.console("alice", "marie");
    assert_eq!(asked, Ok(()));
    assert_eq!(
        actions(&out),
        ["invite 1 marie at sip:marie@192.0.2.1"],
        "no NOTIFY: her phone subscribed to nothing"
    );
    assert_eq!(
        events(&out),
        ["console-transfer", "transfer", "executive-offered"]
    );
    assert!(recorded(
        &out,
        CallEvent::Transfer {
            to: "marie".into(),
            screening: false,
            by: Some("alice".into())
        }
    ));
    assert_eq!(s.machine.connected_to(), Some("alice"));
    assert_eq!(s.machine.poll_timeout(), Some(s.at(REFER_TIMEOUT)));

    let out = s.answered(1);
    assert_eq!(
        actions(&out),
        [
            "open 1",
            "bye 0",
            "close 0",
            "desk-finished alice",
            "bridge 1",
            "handled marie (transfer)",
            "news Transferred",
        ]
    );
    assert!(recorded(
        &out,
        CallEvent::Transferred {
            to: "marie".into(),
            by: Some("alice".into())
        }
    ));
    assert_eq!(s.machine.connected_to(), Some("marie"));
    // The caller is Marie's now: Alice's button does nothing more.
    let (asked, out) = s.console("alice", "jean");
    assert_eq!(asked, Err(TransferRefused::NotConnected));
    assert!(actions(&out).is_empty(), "{out:?}");
}

#[test]
fn a_console_transfer_for_a_call_that_is_not_hers_rings_nobody() {
    let mut s = Scenario::talking_to_alice();
    let (asked, out) = s.console("bea", "marie");
    assert_eq!(asked, Err(TransferRefused::NotHers));
    assert!(actions(&out).is_empty(), "nobody rings: {out:?}");
    assert!(recorded(
        &out,
        CallEvent::ConsoleTransferRefused {
            by: "bea".into(),
            to: "marie".into(),
            why: "not-hers".into()
        }
    ));
    assert_eq!(s.machine.connected_to(), Some("alice"));
}

#[test]
fn a_console_transfer_to_an_unknown_or_unreachable_executive_rings_nobody() {
    let mut s = Scenario::talking_to_alice();
    for (executive, why) in [
        ("nobody", TransferRefused::UnknownExecutive),
        (
            "sip:+33999999999@evil.example",
            TransferRefused::UnknownExecutive,
        ),
        // An account with no phone registered, a number with no trunk.
        ("luc", TransferRefused::Unreachable),
    ] {
        let (asked, out) = s.console("alice", executive);
        assert_eq!(asked, Err(why), "{executive}");
        assert!(actions(&out).is_empty(), "nobody rings: {out:?}");
        assert_eq!(events(&out), ["console-transfer-refused"]);
    }
    assert_eq!(s.machine.connected_to(), Some("alice"));

    // Once Luc's phone registers, he can be reached.
    s.desk = std::mem::take(&mut s.desk).phone("luc", "192.0.2.77");
    let (asked, out) = s.console("alice", "luc");
    assert_eq!(asked, Ok(()));
    assert_eq!(actions(&out), ["invite 1 luc at sip:luc@192.0.2.77"]);
}

#[test]
fn a_console_transfer_needs_her_to_be_talking_to_the_caller_and_no_transfer_under_way() {
    let mut s = Scenario::talking_to_alice();
    assert_eq!(s.console("alice", "marie").0, Ok(()));
    let (asked, out) = s.console("alice", "jean");
    assert_eq!(asked, Err(TransferRefused::InProgress));
    assert!(actions(&out).is_empty(), "{out:?}");
    assert_eq!(s.machine.leg_state(LegId(2)), None, "nothing else rang");

    // She hangs up while Marie's phone rings (blind): the caller is no longer hers.
    s.bye(0);
    assert_eq!(
        s.console("alice", "jean").0,
        Err(TransferRefused::NotConnected)
    );

    // The call is over.
    let mut s = Scenario::talking_to_alice();
    s.end();
    let (asked, out) = s.console("alice", "marie");
    assert_eq!(asked, Err(TransferRefused::NotConnected));
    assert!(actions(&out).is_empty(), "{out:?}");
}

#[test]
fn a_console_transfer_nobody_answers_leaves_the_caller_with_her_without_notify() {
    let mut s = Scenario::talking_to_alice();
    assert_eq!(s.console("alice", "marie").0, Ok(()));
    // Marie's reach list in turn, each entry for the REFER's time.
    let out = s.timeout_at(REFER_TIMEOUT);
    assert_eq!(
        actions(&out),
        ["cancel 1", "invite 2 marie at sip:marie-mobile@192.0.2.2"]
    );
    let out = s.failed(2, 486);
    assert!(actions(&out).is_empty(), "no NOTIFY, no news: {out:?}");
    assert!(recorded(&out, transfer_failed("marie", "unanswered")));
    assert_eq!(s.machine.connected_to(), Some("alice"));
    assert_eq!(s.console("alice", "jean").0, Ok(()), "she may try again");
}

/// The company's plan screens its transfers to Marie: so does the console's.
const SCREENED_MARIE: &str = r#"[{ transfer = { to = "marie", screening = true } }]"#;

#[test]
fn a_console_transfer_is_screened_when_the_plans_transfer_to_that_executive_is() {
    let plan = PLAN.replace(
        r#"[{ transfer = { to = "sip:desk@192.0.2.9" } }]"#,
        SCREENED_MARIE,
    );
    let mut s = Scenario::talking_to_alice_with(&plan);
    let (asked, out) = s.console("alice", "marie");
    assert_eq!(asked, Ok(()));
    assert!(recorded(
        &out,
        CallEvent::Transfer {
            to: "marie".into(),
            screening: true,
            by: Some("alice".into())
        }
    ));
    let out = s.answered(1);
    assert_eq!(
        actions(&out),
        ["open 1", "announce 1"],
        "Alice keeps the caller while Marie is asked"
    );
    assert_eq!(s.machine.connected_to(), Some("alice"));

    // Marie says no: the caller stays with Alice.
    let out = s.digit(1, '2');
    assert_eq!(actions(&out), ["bye 1", "close 1"]);
    assert!(recorded(&out, transfer_failed("marie", "refused")));
    assert_eq!(s.machine.connected_to(), Some("alice"));

    // Asked again, Marie says yes: Alice's leg ends and the caller is Marie's.
    assert_eq!(s.console("alice", "marie").0, Ok(()));
    s.answered(2);
    let out = s.digit(2, '1');
    assert_eq!(
        actions(&out),
        [
            "stop-announcement 2",
            "bye 0",
            "close 0",
            "desk-finished alice",
            "bridge 2",
            "handled marie (transfer)",
            "news Transferred",
        ]
    );
    assert_eq!(s.machine.connected_to(), Some("marie"));
}

// ---------------------------------------------------------------------- the end

#[test]
fn the_call_ending_while_secretaries_ring_stops_every_phone() {
    let mut s = Scenario::new(
        FakeDesk::default()
            .secretary("alice", true, 100)
            .secretary("bea", true, 200),
    );
    s.offer(ring_all(30));
    s.ringing(1);
    let out = s.end();
    assert_eq!(
        actions(&out),
        ["cancel 0", "cancel 1", "release alice", "release bea"]
    );
    assert_eq!(events(&out), ["secretary-cancelled", "secretary-cancelled"]);
    assert_eq!(s.machine.poll_timeout(), None);
    // Bea answered as the CANCEL crossed: hung up on, no news.
    assert_eq!(actions(&s.answered(1)), ["bye 1"]);
}

#[test]
fn the_call_ending_while_talking_to_a_secretary_ends_her_leg_and_starts_her_wrap_up() {
    let mut s = Scenario::talking_to_alice();
    let out = s.end();
    assert_eq!(actions(&out), ["bye 0", "close 0", "desk-finished alice"]);
    assert_eq!(events(&out), ["bye-sent"]);
    assert_eq!(s.machine.connected_to(), None);
}

#[test]
fn a_secretary_hanging_up_tells_the_call_and_is_not_sent_a_bye() {
    let mut s = Scenario::talking_to_alice();
    let out = s.bye(0);
    assert_eq!(actions(&out), ["news HungUp"]);
    assert_eq!(events(&out), ["secretary-hung-up"]);
    let out = s.end();
    assert_eq!(actions(&out), ["close 0", "desk-finished alice"]);
}

#[test]
fn an_unusable_answer_from_one_phone_leaves_the_others_ringing() {
    // Marie on two phones at once: the desk phone answers with audio we cannot use.
    let mut s = Scenario::new(FakeDesk::default());
    s.transfer("marie", false, ReachMode::Simultaneous);
    s.ringing(1);
    let out = s.answered_unusable(0);
    assert_eq!(actions(&out), ["bye 0"], "her mobile still rings");
    assert_eq!(events(&out), ["unusable-answer"]);
    assert_eq!(s.machine.leg_state(LegId(1)), Some(LegState::Ringing));
    let out = s.answered(1);
    assert!(
        actions(&out).contains(&"news Answered".to_string()),
        "{out:?}"
    );

    // Alice on two phones, longest-idle: Bea is not rung while Alice's other phone rings.
    let mut s = Scenario::new(
        FakeDesk::default()
            .secretary("alice", true, 100)
            .phone("alice", "192.0.2.99")
            .secretary("bea", true, 200),
    );
    s.offer(longest_idle(30));
    assert_eq!(actions(&s.answered_unusable(0)), ["bye 0"]);
    let out = s.answered(1);
    assert!(
        actions(&out).contains(&"desk-answered alice".to_string()),
        "{out:?}"
    );
    assert!(!actions(&out).iter().any(|a| a.contains("bea")), "{out:?}");
}

#[test]
fn a_secretary_is_called_at_a_bracketed_ipv6_host() {
    let company = parse_str(PLAN).unwrap_or_else(|e| panic!("{e:?}"));
    let mut m = OutboundMachine::new(
        Arc::new(company),
        CALL,
        "2001:db8::1".parse().unwrap(),
        None,
    );
    let desk = FakeDesk::default().secretary("alice", true, 100);
    let now = Now {
        instant: Instant::now(),
        unix_ms: 1_000_000,
    };
    m.offer_secretaries(&desk, ring_all(30), now);
    while let Some(output) = m.poll_output() {
        if let Output::Claim { secretary } = &output {
            m.on_claimed(&desk, secretary, desk.phones(secretary, 0), now);
        }
        if let Output::Invite { to_uri, .. } = output {
            assert_eq!(to_uri, "sip:alice@[2001:db8::1]");
            return;
        }
    }
    panic!("alice was not rung");
}

// ---------------------------------------------------------------------- the queue

/// The queue's bookkeeping outputs, one line each.
fn queue_actions(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::JoinQueue(w) => Some(format!(
                "join {} {} priority {} since {}",
                w.call, w.company, w.priority, w.since_ms
            )),
            Output::UpdateQueue(QueueChange::Offering(on)) => Some(format!("offering {on}")),
            Output::UpdateQueue(QueueChange::Declined {
                secretary,
                until_ms,
            }) => Some(format!("declined {secretary} until {until_ms}")),
            Output::UpdateQueue(QueueChange::Overflowed) => Some("overflowed".into()),
            Output::LeaveQueue => Some("leave".into()),
            _ => None,
        })
        .collect()
}

fn dequeued(wait_ms: u64, why: &str) -> CallEvent {
    CallEvent::Dequeued {
        wait_ms,
        why: why.into(),
    }
}

/// Alice and Bea both on calls: a caller of ACME arrives, answered, with hold music.
fn everyone_busy(step: SecretaryStep) -> (Scenario, Vec<Output>) {
    let mut desk = FakeDesk::default()
        .secretary("alice", true, 100)
        .secretary("bea", true, 200);
    desk.set("alice", State::OnCall);
    desk.set("bea", State::OnCall);
    let mut s = Scenario::new(desk);
    let out = s.offer(SecretaryStep {
        hold: true,
        priority: 3,
        ..step
    });
    (s, out)
}

#[test]
fn with_everyone_busy_the_caller_waits_with_music_and_the_first_free_secretary_rings() {
    let (mut s, out) = everyone_busy(longest_idle(60));
    assert_eq!(
        queue_actions(&out),
        ["join 1 acme priority 3 since 1000000"],
        "in the queue from the step's start, with the route's priority"
    );
    assert_eq!(actions(&out), ["hold"]);
    assert_eq!(events(&out), ["queued"]);
    assert!(s.machine.wants_desk_changes());

    s.desk.set(
        "bea",
        State::Available {
            idle_since: 1_007_000,
        },
    );
    let out = s.desk_changed(secs(7));
    assert_eq!(
        actions(&out),
        ["claim bea", "invite 0 bea at sip:bea@192.0.2.12"]
    );
    assert_eq!(queue_actions(&out), ["offering true"]);
    let out = s.answered(0);
    assert_eq!(queue_actions(&out), ["leave"]);
    assert!(recorded(&out, dequeued(7_000, "answered")), "{out:?}");
    assert!(!s.machine.wants_desk_changes());
}

#[test]
fn a_queued_caller_sleeps_until_the_desk_wakes_it() {
    let mut desk = FakeDesk::default().secretary("alice", true, 100);
    desk.set("alice", State::WrapUp { until: 1_002_500 });
    let mut s = Scenario::new(desk);
    let out = s.offer(ring_all(60));
    assert_eq!(events(&out), ["queued"]);
    assert_eq!(
        s.machine.poll_timeout(),
        Some(s.at(secs(60))),
        "no timer but the step's end: the desk wakes the first caller in line"
    );
    s.desk.set(
        "alice",
        State::Available {
            idle_since: 1_002_500,
        },
    );
    let out = s.desk_changed(Duration::from_millis(2_500));
    assert_eq!(
        actions(&out),
        ["claim alice", "invite 0 alice at sip:alice@192.0.2.11"]
    );
}

#[test]
fn a_queued_caller_whose_wait_runs_out_goes_to_the_next_step_with_the_wait_recorded() {
    let (mut s, _) = everyone_busy(ring_all(20));
    assert_eq!(s.machine.poll_timeout(), Some(s.at(secs(20))));
    let out = s.timeout_at(secs(20));
    assert_eq!(queue_actions(&out), ["leave"]);
    assert!(recorded(&out, dequeued(20_000, "timeout")));
    assert!(recorded(&out, secretary_unanswered("timeout")));
    assert_eq!(actions(&out), ["news GaveUp"]);
}

#[test]
fn a_caller_hanging_up_while_queued_leaves_the_queue_with_the_wait() {
    let (mut s, _) = everyone_busy(ring_all(60));
    s.now = s.start.later(secs(12));
    let out = s.end();
    assert_eq!(queue_actions(&out), ["leave"]);
    assert!(recorded(&out, dequeued(12_000, "hung-up")));
    assert!(
        actions(&out).is_empty(),
        "nobody rang, nobody to cancel: {out:?}"
    );
}

#[test]
fn the_announcement_interrupts_the_music_every_so_often_while_queued() {
    let (mut s, _) = everyone_busy(SecretaryStep {
        announce_every: Some(secs(30)),
        ..ring_all(120)
    });
    assert_eq!(s.machine.poll_timeout(), Some(s.at(secs(30))));
    let out = s.timeout_at(secs(30));
    assert_eq!(actions(&out), ["queue-announcement"]);
    assert_eq!(s.machine.poll_timeout(), Some(s.at(secs(60))));
}

#[test]
fn a_secretary_who_declines_is_not_offered_the_caller_again_for_a_while() {
    let mut s = Scenario::new(
        FakeDesk::default()
            .secretary("alice", true, 100)
            .secretary("bea", true, 200),
    );
    s.desk.set("bea", State::OnCall);
    s.offer(longest_idle(120));
    let out = s.failed(0, 486);
    assert_eq!(
        queue_actions(&out),
        ["declined alice until 1030000", "offering false"],
        "the desk's queue learns it too, so she does not hold callers behind back"
    );
    assert_eq!(
        events(&out),
        ["secretary-declined", "queued"],
        "bea may still free up"
    );
    s.desk.set(
        "bea",
        State::Available {
            idle_since: 1_005_000,
        },
    );
    let out = s.desk_changed(secs(5));
    assert_eq!(
        actions(&out),
        ["claim bea", "invite 1 bea at sip:bea@192.0.2.12"],
        "alice is free again but declined: bea rings"
    );
}

#[test]
fn a_refer_is_screened_when_the_plans_transfer_to_that_executive_is() {
    let plan = PLAN.replace(
        r#"[{ transfer = { to = "sip:desk@192.0.2.9" } }]"#,
        SCREENED_MARIE,
    );
    let mut s = Scenario::talking_to_alice_with(&plan);
    let (status, out) = s.refer(0, Some("sip:marie@192.0.2.1"));
    assert_eq!(status, 202);
    assert!(recorded(
        &out,
        CallEvent::Transfer {
            to: "marie".into(),
            screening: true,
            by: Some("alice".into())
        }
    ));
    let out = s.answered(1);
    assert_eq!(
        actions(&out),
        ["open 1", "announce 1"],
        "Marie is asked first, as when the plan transfers to her"
    );
    assert_eq!(s.machine.connected_to(), Some("alice"));
}

// ---------------------------------------------------------------------- do not disturb

/// Marie asked not to be disturbed until 10 minutes after the scenario's start.
fn marie_dnd(desk: &mut FakeDesk, start: Now) {
    desk.dnd.insert("marie".into(), start.unix_ms + 600_000);
}

fn marie_dnd_event(start: Now) -> CallEvent {
    let until = jiff::Timestamp::from_millisecond(start.unix_ms as i64 + 600_000).unwrap();
    CallEvent::ExecutiveDnd {
        executive: "marie".into(),
        until: format!("{until:.3}"),
    }
}

#[test]
fn a_plans_transfer_to_an_executive_under_dnd_rings_nobody_and_goes_on() {
    let mut s = Scenario::new(FakeDesk::default());
    marie_dnd(&mut s.desk, s.start);
    let out = s.transfer("marie", true, ReachMode::Sequential);
    assert_eq!(actions(&out), ["news GaveUp"], "nobody rings: {out:?}");
    assert_eq!(events(&out), ["executive-dnd"], "no transfer begun");
    assert!(recorded(&out, marie_dnd_event(s.start)));
    assert_eq!(s.machine.poll_timeout(), None);

    // Another executive is called as usual.
    let out = s.transfer("jean", false, ReachMode::Sequential);
    assert_eq!(
        actions(&out),
        ["invite 0 jean at sip:jean@192.0.2.4"],
        "others are called as usual"
    );
}

#[test]
fn once_dnd_is_over_the_executive_is_called_again() {
    let mut s = Scenario::new(FakeDesk::default());
    marie_dnd(&mut s.desk, s.start);
    s.now = s.start.later(secs(600));
    let out = s.transfer("marie", false, ReachMode::Sequential);
    assert_eq!(actions(&out), ["invite 0 marie at sip:marie@192.0.2.1"]);
    assert_eq!(events(&out), ["transfer", "executive-offered"]);
}

#[test]
fn the_console_cannot_transfer_to_an_executive_under_dnd() {
    let mut s = Scenario::talking_to_alice();
    marie_dnd(&mut s.desk, s.start);
    let (asked, out) = s.console("alice", "marie");
    assert_eq!(asked, Err(TransferRefused::DoNotDisturb));
    assert!(actions(&out).is_empty(), "nobody rings: {out:?}");
    assert!(recorded(
        &out,
        CallEvent::ConsoleTransferRefused {
            by: "alice".into(),
            to: "marie".into(),
            why: "dnd".into()
        }
    ));
    assert_eq!(s.machine.connected_to(), Some("alice"));
}

#[test]
fn a_refer_to_an_executive_under_dnd_is_told_480_and_the_caller_stays() {
    let mut s = Scenario::talking_to_alice();
    marie_dnd(&mut s.desk, s.start);
    let (status, out) = s.refer(0, Some("sip:marie@192.0.2.1"));
    assert_eq!(status, 202);
    assert_eq!(
        actions(&out),
        [
            "notify 0 SIP/2.0 100 Trying",
            "notify 0 SIP/2.0 480 Temporarily Unavailable (last)"
        ]
    );
    assert_eq!(events(&out), ["refer", "executive-dnd"]);
    assert_eq!(s.machine.connected_to(), Some("alice"));
    assert_eq!(s.machine.poll_timeout(), None);
    // She may still send the caller to someone the plan allows.
    assert_eq!(s.refer(0, Some("sip:desk@192.0.2.9")).0, 202);
}
