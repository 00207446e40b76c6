//! The Engine.IO / Socket.IO packet parser the host runs on every text frame
//! and every long-polling payload a client sends: any text parses or is
//! refused with a reason, an event framed again parses back to itself, and
//! a payload's packets joined again give the payload back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socketio_packet::{Packet, event, parse, payload, payload_packets};

fuzz_target!(|text: &str| {
    for packet in payload_packets(text) {
        match parse(packet) {
            Ok(Packet::Event { ack: None, data }) => assert_eq!(parse(&event(data)), Ok(Packet::Event { ack: None, data })),
            Ok(_) => {}
            Err(reason) => assert!(!reason.is_empty()),
        }
    }
    assert_eq!(payload(payload_packets(text)), text);
});
