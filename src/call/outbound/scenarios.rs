//! Scenario tests of the outbound machine, with a fake desk and a fake clock.

use super::*;
