//! The load clients in the same binary: `scalelab load` (HTTP, closed and
//! open model) and `scalelab swarm` (many long-lived TCP engines or
//! socket.io clients). They share nothing with the runtime; they speak the
//! wire formats of `protocol`, like the host.

pub mod load;
pub mod report;
pub mod scheduling;
pub mod swarm;
