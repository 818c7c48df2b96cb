//! Media: sounds loaded once as G.711, and the RTP engine that paces every stream of
//! every call from one thread.

pub mod engine;
pub mod latch;
pub mod recording;
pub mod sound;
pub mod webrtc;

pub use engine::{MediaEvent, MediaHandle, StreamId};
pub use sound::{Sound, SoundError, Sounds};
