//! Properties of the splitter over arbitrary input (proptest): it never
//! panics, and messages come back whole and in order however the stream is
//! cut into reads, at message boundaries, with or without delimiters.

use heartbeat::{EngineMessage, MAX_MESSAGE, delimits, resume_point, split, split_replies};
use proptest::prelude::*;

fn engine_message() -> impl Strategy<Value = EngineMessage> {
    ("[a-z0-9]{1,12}", any::<u32>(), any::<bool>()).prop_map(|(id, n, new)| {
        let n = u64::from(n);
        if new { EngineMessage::NewEngine { id, n } } else { EngineMessage::HeartBeat { id, n } }
    })
}

/// Feeds `reads` through `split` as the broker does (the rest of one read
/// before the next, skipping the remainder of an oversized message,
/// remembering whether the peer delimits).
fn feed(reads: &[Vec<u8>]) -> (Vec<EngineMessage>, usize) {
    let (mut messages, mut malformed, mut pending, mut discarding) = (Vec::new(), 0, Vec::new(), false);
    let mut delimited = false;
    for read in reads {
        delimited |= delimits(read);
        let mut data = std::mem::take(&mut pending);
        data.extend_from_slice(read);
        if discarding {
            match resume_point(&data) {
                Some(at) => drop(data.drain(..at)),
                None => continue,
            }
        }
        let out = split(&data, delimited);
        messages.extend(out.messages);
        malformed += out.malformed.len();
        pending = out.rest;
        discarding = out.discarding;
    }
    (messages, malformed)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2 * MAX_MESSAGE)) {
        for delimited in [false, true] {
            let out = split(&data, delimited);
            prop_assert!(out.rest.len() <= data.len());
        }
        let _ = split_replies(&data);
        if let Some(at) = resume_point(&data) {
            prop_assert!(at <= data.len());
        }
    }

    #[test]
    fn delimited_messages_survive_any_grouping_into_reads(
        messages in proptest::collection::vec(engine_message(), 1..20),
        groups in proptest::collection::vec(1usize..5, 1..20),
        delimited in any::<bool>(),
    ) {
        // Existing engines send no delimiter; ours end each message with `\n`.
        let encoded: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| {
                let text = m.encode();
                if delimited { text.into_bytes() } else { text.trim_end().as_bytes().to_vec() }
            })
            .collect();
        // Reads hold whole messages, one or several merged.
        let mut reads = Vec::new();
        let mut rest = encoded.as_slice();
        for size in groups.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let take = (*size).min(rest.len());
            reads.push(rest[..take].concat());
            rest = &rest[take..];
        }
        let (got, malformed) = feed(&reads);
        prop_assert_eq!(malformed, 0);
        prop_assert_eq!(got, messages);
    }

    #[test]
    fn messages_of_an_engine_that_delimits_survive_reads_cut_anywhere(
        id in "[a-z0-9]{1,12}",
        counts in proptest::collection::vec(any::<u32>(), 0..12),
        cuts in proptest::collection::vec(1usize..40, 1..30),
    ) {
        // As our engines send: NewEngine:<id>:0, then heartbeats, each with `\n`.
        let mut messages = vec![EngineMessage::NewEngine { id: id.clone(), n: 0 }];
        messages.extend(counts.iter().map(|n| EngineMessage::HeartBeat { id: id.clone(), n: u64::from(*n) }));
        let stream: Vec<u8> = messages.iter().flat_map(|m| m.encode().into_bytes()).collect();
        let mut reads = Vec::new();
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at >= stream.len() {
                break;
            }
            let end = (at + cut).min(stream.len());
            reads.push(stream[at..end].to_vec());
            at = end;
        }
        let (got, malformed) = feed(&reads);
        prop_assert_eq!(malformed, 0);
        prop_assert_eq!(got, messages);
    }
}
