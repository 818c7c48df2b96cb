//! Calls placed for a company from one of its tasks (the console's "call" button).

pub mod machine;
