//! The socket.io wire format both the serving side and `scalelab swarm
//! sockets` speak: the packets (the `socketio-packet` crate, kept apart so
//! it can be fuzzed without the host) and the WebSocket settings both ends use.

pub use socketio_packet::*;

/// tungstenite's settings for both ends: its default 128 KiB read buffer is
/// zero-filled at every read attempt, which costs more than the events
/// themselves; our frames are small.
pub fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}
