//! Permanence: a SIP call-handling server for remote secretariats.
//!
//! The pure core (`dialplan`, `number`, `sdp`, `g711`, `rtp`, `call::machine`,
//! `sip::parse`, `sip::transaction`) decides; the shell (`sip::endpoint`,
//! `sip::transport`, `media::engine`, `store`, `server`) does I/O.

pub mod agenda;
pub mod auth;
pub mod bans;
pub mod blocklist;
pub mod call;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod desk;
pub mod dialplan;
pub mod distribution;
pub mod dnd;
pub mod dtmf;
pub mod event;
pub mod executive_link;
pub mod followup;
pub mod g711;
pub mod inbox;
pub mod line;
pub mod media;
pub mod metrics;
pub mod number;
pub mod pike;
pub mod queue;
pub mod registrar;
pub mod reload;
pub mod report;
pub mod rtp;
pub mod schedule;
pub mod sdp;
pub mod server;
pub mod session;
pub mod sip;
pub mod snapshot;
pub mod srtp;
pub mod store;
pub mod terminal;
pub mod trunk;
pub mod web;
