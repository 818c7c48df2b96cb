//! Calls: the pure [`machine`] that runs a route's steps, and the [`task`] that drives
//! it for one call, wired to SIP, media and the store.

pub mod browser_ring;
pub mod callout;
pub mod context;
pub mod control;
pub mod leg;
pub mod machine;
pub mod outbound;
pub mod task;

pub use context::CallContext;
pub mod simulate;
