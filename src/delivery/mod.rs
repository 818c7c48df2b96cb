//! Messages reaching the executive (issue 13): one module per channel.

pub mod webhook;
