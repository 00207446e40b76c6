//! The broker's splitter of TCP reads into heartbeat messages: any bytes,
//! with or without delimiters seen, split without a panic, and what is kept
//! for the next read is bounded and taken from the read's end.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, &[u8])| {
    let (delimits, data) = input;
    let split = heartbeat::split(data, delimits || heartbeat::delimits(data));
    assert!(data.ends_with(&split.rest), "the kept rest is the read's tail");
    assert!(split.rest.len() <= heartbeat::MAX_MESSAGE, "the kept rest is bounded");
    for message in &split.messages {
        // Every accepted message encodes to a line that splits back to itself.
        let line = format!("{}\n", message.encode());
        let again = heartbeat::split(line.as_bytes(), true);
        assert_eq!(again.messages.as_slice(), std::slice::from_ref(message));
    }
    let _ = heartbeat::resume_point(data);
    let _ = heartbeat::split_replies(data);
});
