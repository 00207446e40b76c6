//! Wire formats that both the serving side and the load clients speak, so
//! that the two agree by construction.

pub mod socketio;
