//! The wasm runtime: everything between a guest file and a finished call,
//! and nothing that touches a socket. It compiles and caches guests
//! (`engine`, `cache`, a compile in a child process: `compile_child`), links
//! them once (`guest`), keeps warm instances and runs every call on one
//! under the deadline and memory cap (`instances`, `call`, `state`), holds
//! the guest being served and switches it (`active`, `live`), runs a guest's
//! one-time `setup`, and provides the host services guests import
//! (`bindings`, `services`, `shared_state`, `declared_metrics`,
//! `session_table`, `sql`, `request_head`, `whole_response`).
//!
//! The invariant: a guest keeps nothing that must last in its instance.
//! Any warm instance may serve any call, a failed one is dropped, and what
//! lasts lives in `Services`, which belong to the process, not to a guest.

pub mod active;
pub mod bindings;
pub mod cache;
pub mod call;
pub mod call_slots;
pub mod compile_child;
pub mod declared_metrics;
pub mod engine;
pub mod guest;
pub mod idle;
pub mod instances;
pub mod live;
pub mod request_head;
pub mod services;
pub mod session_table;
pub mod setup;
pub mod shared_state;
pub mod sql;
pub mod state;
pub mod whole_response;
