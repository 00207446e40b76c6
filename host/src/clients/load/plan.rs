//! What to send: request templates picked by weight, from the command line
//! or a scenario file (the `load-plan` crate, kept apart so that it can be
//! fuzzed without the host).

pub use load_plan::{Plan, Template};
