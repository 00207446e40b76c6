//! The wire protocol between engines and the broker, shared by the `broker`
//! guest and `scalelab swarm engines` so that both sides agree by
//! construction.
//!
//! ASCII, fields separated by `:`:
//! - engine -> broker: `NewEngine:<id>:0`, then `HeartBeat:<id>:<n>` with
//!   n = 1, 2, 3, ...
//! - broker -> engine: `SUCCESS:Registered`, `FAILLED:Duplicate Engine ID <id>`
//!   (misspelt on purpose: existing engines match it), `DOWORK:<ms>`,
//!   `KILL:<code>`.
//!
//! Existing engines send no delimiter: each TCP read is one message, and under
//! load two can arrive merged (`HeartBeat:e1:3HeartBeat:e1:4`). Our engines end
//! messages with `\n`. [`split`] accepts all of it: it splits on `\n` and at
//! every message keyword, and keeps an incomplete tail for the next read.

/// Longest message accepted, in bytes; longer data is malformed.
pub const MAX_MESSAGE: usize = 256;

/// Keywords that start an engine -> broker message.
const ENGINE_KEYWORDS: [&str; 2] = ["NewEngine:", "HeartBeat:"];
/// Keywords that start a broker -> engine message.
const BROKER_KEYWORDS: [&str; 4] = ["SUCCESS:", "FAILLED:", "DOWORK:", "KILL:"];

/// A message from an engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineMessage {
    /// `NewEngine:<id>:<n>` (n is 0 from existing engines).
    NewEngine { id: String, n: u64 },
    /// `HeartBeat:<id>:<n>`.
    HeartBeat { id: String, n: u64 },
}

/// A message from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerMessage {
    Registered,
    Duplicate { id: String },
    DoWork { ms: u64 },
    Kill { code: i64 },
}

/// What [`split`] made of some bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split<M> {
    /// Complete messages, in order.
    pub messages: Vec<M>,
    /// Pieces that are not messages (garbage, oversized, bad fields), lossily
    /// decoded for logs, in order.
    pub malformed: Vec<String>,
    /// Messages that followed another one without a delimiter and were split off.
    pub merged: usize,
    /// An incomplete last message to prepend to the next read.
    pub rest: Vec<u8>,
    /// The data ended inside an oversized message (already counted as
    /// malformed): skip the rest of it with [`resume_point`] on the next read.
    pub discarding: bool,
}

/// Splits engine -> broker data (a pending tail from the last read, then the
/// new read). `delimits`: this peer has been seen ending its messages with
/// `\n` (see [`delimits`]).
///
/// From a peer not known to delimit, an unterminated tail that parses as a
/// whole message is complete: existing engines send no delimiter. From a
/// peer that delimits, an unterminated tail waits for its `\n` (or the next
/// message): a read may end inside a number (`HeartBeat:e1:12` of
/// `HeartBeat:e1:123\n`), and taking it as complete would be a wrong count.
/// An engine that delimits only sometimes has its undelimited messages
/// handled one read late, except a count of 0 (its registration), which no
/// further digit can follow.
/// A tail that could still become a message (`HeartBe`, `HeartBeat:e1:`)
/// waits in [`Split::rest`] for the next read.
pub fn split(data: &[u8], delimits: bool) -> Split<EngineMessage> {
    split_with(data, &ENGINE_KEYWORDS, parse_engine, delimits)
}

/// Whether `data` shows its sender ends messages with `\n`. The first
/// message of an engine (`NewEngine:<id>:0`) ends in a one-digit count, so
/// no read can cut it ambiguously before the sender is known.
pub fn delimits(data: &[u8]) -> bool {
    data.contains(&b'\n')
}

/// Where the data after an oversized message starts: after the first `\n`
/// or at the first message keyword; `None` when all of `data` still belongs
/// to the oversized message.
pub fn resume_point(data: &[u8]) -> Option<usize> {
    let newline = data.iter().position(|&b| b == b'\n').map(|i| i + 1);
    let keyword = ENGINE_KEYWORDS.iter().filter_map(|k| find_all(data, k.as_bytes()).next()).min();
    match (newline, keyword) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Splits broker -> engine data, as [`split`] (brokers send no delimiter).
pub fn split_replies(data: &[u8]) -> Split<BrokerMessage> {
    split_with(data, &BROKER_KEYWORDS, parse_broker, false)
}

fn split_with<M>(data: &[u8], keywords: &[&str], parse: fn(&str) -> Option<M>, delimits: bool) -> Split<M> {
    let mut out = Split { messages: Vec::new(), malformed: Vec::new(), merged: 0, rest: Vec::new(), discarding: false };
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    // The piece after the last `\n` (or all of it without one) is unterminated.
    let tail = lines.pop().unwrap_or_default();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() {
            split_line(line, keywords, parse, &mut out);
        }
    }
    if tail.is_empty() {
        return out;
    }
    if tail.len() > MAX_MESSAGE {
        out.malformed.push(describe(tail));
        out.discarding = true;
        return out;
    }
    // The tail: complete when it parses; kept for the next read when it may
    // still become a message.
    let pieces = pieces(tail, keywords);
    let (last, whole) = pieces.split_last().expect("a non-empty tail has a piece");
    // From a peer that delimits, only a count of 0 (`NewEngine:<id>:0`, which
    // an engine sends before it waits for the reply) cannot be cut short.
    let unambiguous = !delimits || last.ends_with(b":0");
    let last_complete = unambiguous && std::str::from_utf8(last).ok().and_then(parse).is_some();
    if last_complete {
        split_line(tail, keywords, parse, &mut out);
    } else if could_become_message(last, keywords) {
        let head_len: usize = whole.iter().map(|p| p.len()).sum();
        if head_len > 0 {
            split_line(&tail[..head_len], keywords, parse, &mut out);
            out.merged += 1;
        }
        out.rest = last.to_vec();
    } else {
        split_line(tail, keywords, parse, &mut out);
    }
    out
}

/// One delimited line: split at keywords, parse each piece.
fn split_line<M>(line: &[u8], keywords: &[&str], parse: fn(&str) -> Option<M>, out: &mut Split<M>) {
    if line.len() > MAX_MESSAGE * 8 {
        out.malformed.push(describe(line));
        return;
    }
    let pieces = pieces(line, keywords);
    out.merged += pieces.iter().filter(|p| starts_with_keyword(p, keywords)).count().saturating_sub(1);
    for piece in pieces {
        match std::str::from_utf8(piece).ok().filter(|_| piece.len() <= MAX_MESSAGE).and_then(parse) {
            Some(message) => out.messages.push(message),
            None => out.malformed.push(describe(piece)),
        }
    }
}

/// Cuts `line` before every keyword, keeping any leading garbage as a piece.
fn pieces<'a>(line: &'a [u8], keywords: &[&str]) -> Vec<&'a [u8]> {
    let mut starts: Vec<usize> = keywords.iter().flat_map(|k| find_all(line, k.as_bytes())).collect();
    starts.sort_unstable();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    starts.push(line.len());
    starts.windows(2).map(|w| &line[w[0]..w[1]]).filter(|p| !p.is_empty()).collect()
}

fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack.windows(needle.len()).enumerate().filter(move |(_, w)| *w == needle).map(|(i, _)| i)
}

fn starts_with_keyword(piece: &[u8], keywords: &[&str]) -> bool {
    keywords.iter().any(|k| piece.starts_with(k.as_bytes()))
}

/// True when appending bytes to `piece` could make it a message: it is a
/// keyword's prefix, or a keyword followed by printable field characters.
fn could_become_message(piece: &[u8], keywords: &[&str]) -> bool {
    if piece.len() > MAX_MESSAGE {
        return false;
    }
    keywords.iter().any(|k| {
        let k = k.as_bytes();
        if piece.len() < k.len() {
            k.starts_with(piece)
        } else {
            piece.starts_with(k) && piece[k.len()..].iter().all(|b| b.is_ascii_graphic() || *b == b' ')
        }
    })
}

/// A malformed piece as a log-safe string (lossy, control characters escaped, cut short).
fn describe(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(64)];
    let mut text: String = String::from_utf8_lossy(shown).escape_debug().collect();
    if bytes.len() > shown.len() {
        text.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    text
}

/// `<id>:<n>` with a non-empty id without `:` or spaces and a decimal n.
fn id_and_count(fields: &str) -> Option<(String, u64)> {
    let (id, n) = fields.split_once(':')?;
    let id_ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    let n_ok = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    if !id_ok || !n_ok {
        return None;
    }
    Some((id.to_string(), n.parse().ok()?))
}

fn parse_engine(text: &str) -> Option<EngineMessage> {
    if let Some(fields) = text.strip_prefix("NewEngine:") {
        let (id, n) = id_and_count(fields)?;
        return Some(EngineMessage::NewEngine { id, n });
    }
    let (id, n) = id_and_count(text.strip_prefix("HeartBeat:")?)?;
    Some(EngineMessage::HeartBeat { id, n })
}

fn parse_broker(text: &str) -> Option<BrokerMessage> {
    let text = text.trim_end();
    if text == "SUCCESS:Registered" {
        return Some(BrokerMessage::Registered);
    }
    if let Some(id) = text.strip_prefix("FAILLED:Duplicate Engine ID ") {
        return Some(BrokerMessage::Duplicate { id: id.to_string() });
    }
    if let Some(ms) = text.strip_prefix("DOWORK:") {
        return ms.parse().ok().map(|ms| BrokerMessage::DoWork { ms });
    }
    let code = text.strip_prefix("KILL:")?;
    code.parse().ok().map(|code| BrokerMessage::Kill { code })
}

impl EngineMessage {
    /// The message as our engines send it: `\n`-terminated.
    pub fn encode(&self) -> String {
        match self {
            EngineMessage::NewEngine { id, n } => format!("NewEngine:{id}:{n}\n"),
            EngineMessage::HeartBeat { id, n } => format!("HeartBeat:{id}:{n}\n"),
        }
    }
}

impl BrokerMessage {
    /// The message as the broker sends it: without a delimiter, as existing
    /// brokers do (existing engines compare whole reads).
    pub fn encode(&self) -> String {
        match self {
            BrokerMessage::Registered => "SUCCESS:Registered".to_string(),
            BrokerMessage::Duplicate { id } => format!("FAILLED:Duplicate Engine ID {id}"),
            BrokerMessage::DoWork { ms } => format!("DOWORK:{ms}"),
            BrokerMessage::Kill { code } => format!("KILL:{code}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(id: &str, n: u64) -> EngineMessage {
        EngineMessage::HeartBeat { id: id.into(), n }
    }

    #[test]
    fn one_undelimited_read_is_one_message() {
        let s = split(b"NewEngine:e1:0", false);
        assert_eq!(s.messages, vec![EngineMessage::NewEngine { id: "e1".into(), n: 0 }]);
        assert!(s.malformed.is_empty() && s.rest.is_empty() && s.merged == 0);
    }

    #[test]
    fn merged_messages_are_split_and_counted() {
        let s = split(b"HeartBeat:e1:3HeartBeat:e1:4", false);
        assert_eq!(s.messages, vec![hb("e1", 3), hb("e1", 4)]);
        assert_eq!(s.merged, 1);
        let s = split(b"HeartBeat:e1:3HeartBeat:e1:4HeartBeat:e1:5\n", false);
        assert_eq!(s.messages, vec![hb("e1", 3), hb("e1", 4), hb("e1", 5)]);
        assert_eq!(s.merged, 2);
    }

    #[test]
    fn newline_terminated_messages_split_without_counting_as_merged() {
        let s = split(b"HeartBeat:a:1\nHeartBeat:a:2\r\n", false);
        assert_eq!(s.messages, vec![hb("a", 1), hb("a", 2)]);
        assert_eq!(s.merged, 0);
    }

    #[test]
    fn from_a_peer_that_delimits_a_tail_waits_for_its_newline() {
        // A read that ends inside a count must not be taken as a message.
        let s = split(b"HeartBeat:a:1\nHeartBeat:a:12", true);
        assert_eq!(s.messages, vec![hb("a", 1)]);
        assert_eq!(s.rest, b"HeartBeat:a:12");
        let mut next = s.rest.clone();
        next.extend_from_slice(b"3\n");
        assert_eq!(split(&next, true).messages, vec![hb("a", 123)]);
        assert!(delimits(b"NewEngine:a:0\n") && !delimits(b"NewEngine:a:0"));
        // A registration (count 0) cannot be cut short: it is complete as it is.
        assert_eq!(split(b"NewEngine:b:0", true).messages, vec![EngineMessage::NewEngine { id: "b".into(), n: 0 }]);
        // An undelimited heartbeat is handled with the next message.
        let s = split(b"HeartBeat:a:5", true);
        assert!(s.messages.is_empty());
        let mut next = s.rest;
        next.extend_from_slice(b"HeartBeat:a:6");
        assert_eq!(split(&next, true).messages, vec![hb("a", 5)]);
    }

    #[test]
    fn a_half_sent_message_waits_for_the_rest() {
        let s = split(b"HeartBeat:a:1\nHeartBe", false);
        assert_eq!(s.messages, vec![hb("a", 1)]);
        assert_eq!(s.rest, b"HeartBe");
        let mut next = s.rest.clone();
        next.extend_from_slice(b"at:a:2\n");
        assert_eq!(split(&next, false).messages, vec![hb("a", 2)]);
        // From a peer not known to delimit, a tail that parses is complete.
        assert_eq!(split(b"HeartBeat:a:1\nHeartBeat:a:2", false).messages, vec![hb("a", 1), hb("a", 2)]);
        // A merged complete message before an incomplete one is delivered.
        let s = split(b"HeartBeat:a:1HeartBeat:a", false);
        assert_eq!((s.messages, s.rest, s.merged), (vec![hb("a", 1)], b"HeartBeat:a".to_vec(), 1));
    }

    #[test]
    fn garbage_and_oversized_data_are_malformed() {
        let s = split(b"hello\nHeartBeat:a:x\nHeartBeat::1\nHeartBeat:a:1\n", false);
        assert_eq!(s.messages, vec![hb("a", 1)]);
        assert_eq!(s.malformed, vec!["hello", "HeartBeat:a:x", "HeartBeat::1"]);
        let big = vec![b'x'; MAX_MESSAGE + 1];
        let s = split(&big, false);
        assert_eq!(s.malformed.len(), 1);
        assert!(s.malformed[0].ends_with("(257 bytes)"), "{:?}", s.malformed);
        assert!(s.rest.is_empty());
        let mut long = b"HeartBeat:".to_vec();
        long.extend(vec![b'a'; MAX_MESSAGE]);
        assert!(split(&long, false).rest.is_empty());
        let s = split(b"junkHeartBeat:a:1", false);
        assert_eq!((s.messages, s.malformed), (vec![hb("a", 1)], vec!["junk".to_string()]));
        assert!(split(b"\xff\xfe", false).malformed.len() == 1);
        // The rest of an oversized message, in later reads, is skipped.
        assert!(split(&big, false).discarding);
        assert_eq!(resume_point(b"xxxx"), None);
        assert_eq!(resume_point(b"xx\nHeartBeat:a:1"), Some(3));
        assert_eq!(resume_point(b"xxHeartBeat:a:1"), Some(2));
    }

    #[test]
    fn replies_round_trip_and_split() {
        let all = [
            BrokerMessage::Registered,
            BrokerMessage::Duplicate { id: "e-7".into() },
            BrokerMessage::DoWork { ms: 50000 },
            BrokerMessage::Kill { code: 3 },
        ];
        let joined: String = all.iter().map(BrokerMessage::encode).collect();
        assert_eq!(split_replies(joined.as_bytes()).messages, all.to_vec());
        assert_eq!(BrokerMessage::Duplicate { id: "x".into() }.encode(), "FAILLED:Duplicate Engine ID x");
        assert_eq!(hb("e", 2).encode(), "HeartBeat:e:2\n");
    }
}
