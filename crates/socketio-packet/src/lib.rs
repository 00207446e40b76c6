//! Engine.IO 4 / Socket.IO 5 packets as text WebSocket frames or HTTP
//! long-polling payloads, both ways (the host's transports and `scalelab
//! swarm sockets` share this code, and `fuzz/` fuzzes `parse` and
//! `payload_packets`).
//!
//! Engine.IO: `0` open, `1` close, `2` ping, `3` pong, `4` message, `5`
//! upgrade, `6` noop; `2probe`/`3probe` test a WebSocket before a polling
//! client upgrades to it. A long-polling payload is packets joined by the
//! record separator `\x1e`. A message
//! carries a Socket.IO packet: `40` connect, `41` disconnect, `42` event
//! (`42["name",args...]`, optionally with an ack id: `4217["name"]`),
//! `43` ack, `44` connect error. Only the main namespace (`/`) is served;
//! binary packets are not supported.

/// A parsed packet, borrowing its payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{...}`: the server's open packet (its JSON).
    Open(&'a str),
    /// `1`: the peer closes the Engine.IO session.
    Close,
    /// `2`, `3`.
    Ping,
    Pong,
    /// `2probe`: a client tests the WebSocket it wants to upgrade to.
    Probe,
    /// `3probe`: the server's answer to a probe.
    ProbeAnswer,
    /// `5`: the client moves to the probed WebSocket.
    Upgrade,
    /// `6`: nothing (the server ends a pending poll with it).
    Noop,
    /// `40` or `40{...}`: connect to the main namespace (with the auth or sid JSON).
    Connect(&'a str),
    /// `41`.
    Disconnect,
    /// `42[...]`: an event; `data` is the JSON array `["name", args...]`.
    Event {
        ack: Option<u64>,
        data: &'a str,
    },
    /// `44{...}`: the server refused the connect.
    ConnectError(&'a str),
}

/// Parses one text frame; the error says what is wrong, for the log.
pub fn parse(text: &str) -> Result<Packet<'_>, String> {
    let mut chars = text.chars();
    let packet = match chars.next() {
        Some('0') => Packet::Open(&text[1..]),
        Some('1') => Packet::Close,
        Some('2') if text.len() == 1 => Packet::Ping,
        Some('3') if text.len() == 1 => Packet::Pong,
        Some('2') if &text[1..] == "probe" => Packet::Probe,
        Some('3') if &text[1..] == "probe" => Packet::ProbeAnswer,
        Some('4') => return parse_socketio(&text[1..]),
        Some('5') if text.len() == 1 => Packet::Upgrade,
        Some('6') if text.len() == 1 => Packet::Noop,
        _ => return Err(format!("not an Engine.IO packet: {}", shorten(text))),
    };
    Ok(packet)
}

fn parse_socketio(text: &str) -> Result<Packet<'_>, String> {
    let (kind, rest) = text.split_at_checked(1).ok_or("an empty Socket.IO packet")?;
    if rest.starts_with('/') {
        return Err(format!("namespace {} is not served (only /)", rest.split(',').next().unwrap_or(rest)));
    }
    match kind {
        "0" => Ok(Packet::Connect(rest)),
        "1" => Ok(Packet::Disconnect),
        "4" => Ok(Packet::ConnectError(rest)),
        "2" => {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let ack = if digits > 0 { Some(rest[..digits].parse().map_err(|_| "a bad ack id")?) } else { None };
            let data = &rest[digits..];
            if !is_event(data) {
                return Err(format!("an event that is not [\"name\", ...]: {}", shorten(data)));
            }
            Ok(Packet::Event { ack, data })
        }
        "5" | "6" => Err("binary packets are not supported".into()),
        _ => Err(format!("an unsupported Socket.IO packet: {}", shorten(text))),
    }
}

/// A JSON array whose first element is a string.
fn is_event(data: &str) -> bool {
    matches!(serde_json::from_str::<Vec<serde_json::Value>>(data).as_deref(), Ok([serde_json::Value::String(_), ..]))
}

fn shorten(text: &str) -> String {
    let cut: String = text.chars().take(60).collect();
    if cut.len() < text.len() { format!("{cut}...") } else { cut }
}

/// The event frame for `data` (`["name", args...]`).
///
/// Written with two copies rather than `format!`: the host builds one of
/// these for every event it sends (two per tracker client-tick), and the
/// formatting machinery cost about 500 instructions a frame.
pub fn event(data: &str) -> String {
    let mut frame = String::with_capacity(2 + data.len());
    frame.push_str("42");
    frame.push_str(data);
    frame
}

/// The event frame for `data` as a guest wrote it, bytes that should be
/// UTF-8 text: valid text is framed as it is (checked once, with the
/// standard library's fast check), and each invalid sequence becomes
/// U+FFFD, since a WebSocket text frame must be UTF-8.
pub fn event_from_bytes(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(text) => event(text),
        Err(_) => event(&String::from_utf8_lossy(data)),
    }
}

/// The largest payload a client may send in one request or frame
/// (announced in the open packet as `maxPayload`).
pub const MAX_PAYLOAD: usize = 1_000_000;

/// The server's open packet. `upgrade` announces the WebSocket to a
/// long-polling client (a WebSocket client has nothing to upgrade to).
pub fn open(sid: &str, upgrade: bool, ping_interval_ms: u128, ping_timeout_ms: u128) -> String {
    let upgrades = if upgrade { "[\"websocket\"]" } else { "[]" };
    format!(
        "0{{\"sid\":\"{sid}\",\"upgrades\":{upgrades},\"pingInterval\":{ping_interval_ms},\"pingTimeout\":{ping_timeout_ms},\"maxPayload\":{MAX_PAYLOAD}}}"
    )
}

/// What separates the packets of a long-polling payload.
pub const RECORD_SEPARATOR: char = '\x1e';

/// The packets of a long-polling payload, in order (binary packets, `b...`,
/// come out as text that `parse` refuses).
pub fn payload_packets(payload: &str) -> impl Iterator<Item = &str> {
    payload.split(RECORD_SEPARATOR)
}

/// One long-polling payload holding `packets`, in order.
pub fn payload<'a>(packets: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, packet) in packets.into_iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEPARATOR);
        }
        out.push_str(packet);
    }
    out
}

/// A random session id, as socket.io servers make them.
pub fn new_sid() -> String {
    std::iter::repeat_with(fastrand::alphanumeric).take(20).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_parse() {
        assert_eq!(parse("2"), Ok(Packet::Ping));
        assert_eq!(parse("3"), Ok(Packet::Pong));
        assert_eq!(parse("40"), Ok(Packet::Connect("")));
        assert_eq!(parse("40{\"token\":1}"), Ok(Packet::Connect("{\"token\":1}")));
        assert_eq!(parse("41"), Ok(Packet::Disconnect));
        assert_eq!(parse("42[\"clock\",1]"), Ok(Packet::Event { ack: None, data: "[\"clock\",1]" }));
        assert_eq!(parse("4217[\"x\"]"), Ok(Packet::Event { ack: Some(17), data: "[\"x\"]" }));
        assert!(matches!(parse("0{\"sid\":\"a\"}"), Ok(Packet::Open(_))));
        for bad in ["", "9", "4", "42", "42{}", "42[1]", "42[\"a\"", "45[\"b\"]", "40/admin,", "hello"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(event("[\"a\"]"), "42[\"a\"]");
        assert!(open("sid", false, 25000, 20000).starts_with("0{\"sid\":\"sid\",\"upgrades\":[],\"pingInterval\":25000,"));
        assert!(open("sid", true, 1, 2).contains("\"upgrades\":[\"websocket\"]"));
        for (text, packet) in
            [("2probe", Packet::Probe), ("3probe", Packet::ProbeAnswer), ("5", Packet::Upgrade), ("6", Packet::Noop)]
        {
            assert_eq!(parse(text), Ok(packet), "{text}");
        }
        for bad in ["2probes", "5x", "66", "bAAAA"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(payload(["40", "42[\"a\"]"]), "40\u{1e}42[\"a\"]");
        assert_eq!(payload_packets("2\u{1e}40").collect::<Vec<_>>(), ["2", "40"]);
    }

    /// Found by `cargo xtask fuzz` (fuzz/artifacts/socketio_packet/crash-4946...):
    /// an empty first packet lost its separator when joined again.
    #[test]
    fn empty_packets_keep_their_separators() {
        let input = "\u{1e}42[e";
        assert_eq!(payload_packets(input).collect::<Vec<_>>(), ["", "42[e"]);
        assert_eq!(payload(payload_packets(input)), input);
        assert_eq!(payload(["", ""]), "\u{1e}");
        assert_eq!(new_sid().len(), 20);
    }

    #[test]
    fn a_guest_event_is_framed_as_written_with_invalid_bytes_replaced() {
        assert_eq!(event_from_bytes(b"[\"clock\",1]"), "42[\"clock\",1]");
        assert_eq!(event_from_bytes("[\"é\"]".as_bytes()), "42[\"é\"]");
        assert_eq!(event_from_bytes(b"[\"a\xff\"]"), "42[\"a\u{fffd}\"]");
        assert_eq!(event_from_bytes(b""), "42");
    }

    proptest::proptest! {
        /// Whatever bytes a guest sends, its frame is `42` and the bytes
        /// as `String::from_utf8_lossy` reads them.
        #[test]
        fn guest_bytes_frame_as_lossy_text(data in proptest::collection::vec(proptest::num::u8::ANY, 0..48)) {
            proptest::prop_assert_eq!(event_from_bytes(&data), format!("42{}", String::from_utf8_lossy(&data)));
        }

        /// Any text frame parses or is refused with a reason; never a panic.
        #[test]
        fn any_frame_parses_or_is_refused(text in "\\PC{0,64}", prefix in "[0-6]{0,2}") {
            let frame = format!("{prefix}{text}");
            if let Err(reason) = parse(&frame) {
                proptest::prop_assert!(!reason.is_empty());
            }
        }

        /// What `payload` joins, `payload_packets` splits back, whatever
        /// the packets hold (but the separator).
        #[test]
        fn payloads_round_trip(packets in proptest::collection::vec("[^\u{1e}]{0,16}", 1..8)) {
            let joined = payload(packets.iter().map(String::as_str));
            proptest::prop_assert_eq!(payload_packets(&joined).collect::<Vec<_>>(), packets);
        }

        /// What `event` frames, `parse` reads back.
        #[test]
        fn events_round_trip(name in "[a-z]{1,8}", value in proptest::num::i64::ANY) {
            let data = format!("[\"{name}\",{value}]");
            let frame = event(&data);
            proptest::prop_assert_eq!(parse(&frame), Ok(Packet::Event { ack: None, data: &data }));
        }
    }
}
