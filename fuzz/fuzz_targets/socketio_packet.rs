//! The Engine.IO / Socket.IO packet parser the host runs on every text frame
//! a client sends: any text parses or is refused with a reason, and an event
//! framed again parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socketio_packet::{Packet, event, parse};

fuzz_target!(|text: &str| {
    match parse(text) {
        Ok(Packet::Event { ack: None, data }) => assert_eq!(parse(&event(data)), Ok(Packet::Event { ack: None, data })),
        Ok(_) => {}
        Err(reason) => assert!(!reason.is_empty()),
    }
});
