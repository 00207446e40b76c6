//! How many bytes at the start of a string a JSON writer may copy as they
//! are, before the first byte it must escape: the scan at the heart of the
//! guests' JSON writers (`crates/httpbin-api`'s Python-compatible one,
//! `crates/todo-api`'s serde_json-compatible one).
//!
//! Both look at eight bytes at a time. In a wasm guest a loop step per byte
//! costs some thirty instructions (the match, the bounds check, the epoch
//! check at the loop header), and the strings these writers see (uuids,
//! header values, short tasks) are almost always one run. A word at a time
//! took the todo list's writer from about 650 to 350 instructions a task of
//! ten letters (callgrind, `checked` memory).
//!
//! The word tests come from "Bit Twiddling Hacks" (haszero, hasless). Each
//! may also fire on a plain byte that follows a byte it fires on, never on a
//! word of plain bytes alone, so a word that fires is finished byte by byte.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Whether some byte of `x` is zero (exact).
fn has_zero(x: u64) -> bool {
    x.wrapping_sub(ONES) & !x & HIGH != 0
}

/// Whether some byte of `x` is `byte`.
fn has_byte(x: u64, byte: u8) -> bool {
    has_zero(x ^ (ONES * u64::from(byte)))
}

/// Whether some byte of `x` is below 0x20, a control character (or, at most,
/// a byte after one).
fn has_control(x: u64) -> bool {
    x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0
}

/// The length of the longest prefix of `bytes` whose words pass `word_plain`,
/// then whose bytes pass `plain`.
fn run(bytes: &[u8], word_plain: impl Fn(u64) -> bool, plain: impl Fn(u8) -> bool) -> usize {
    let mut words = bytes.chunks_exact(8);
    let mut run = 0;
    for word in words.by_ref() {
        if !word_plain(u64::from_le_bytes(word.try_into().expect("eight bytes"))) {
            break;
        }
        run += 8;
    }
    run + bytes[run..].iter().position(|&b| !plain(b)).unwrap_or(bytes.len() - run)
}

/// Whether a writer with `ensure_ascii` (Python's `json`) writes this byte
/// as it is: printable ASCII but `"` and `\`.
pub fn is_printable_ascii(b: u8) -> bool {
    matches!(b, b' '..=b'~') && b != b'"' && b != b'\\'
}

/// How many bytes at the start of `bytes` are [`is_printable_ascii`].
pub fn printable_ascii(bytes: &[u8]) -> usize {
    run(
        bytes,
        |x| {
            // 0x80 and above, or 0x7f (which the added one carries into the
            // high bit).
            let high = (x | x.wrapping_add(ONES)) & HIGH != 0;
            !(has_control(x) || high || has_byte(x, b'"') || has_byte(x, b'\\'))
        },
        is_printable_ascii,
    )
}

/// Whether serde_json writes this byte of a string as it is: anything but a
/// control character (below 0x20), `"` and `\`. Non-ASCII and DEL pass.
pub fn is_unescaped(b: u8) -> bool {
    b >= 0x20 && b != b'"' && b != b'\\'
}

/// How many bytes at the start of `bytes` are [`is_unescaped`].
pub fn unescaped(bytes: &[u8]) -> usize {
    run(bytes, |x| !(has_control(x) || has_byte(x, b'"') || has_byte(x, b'\\')), is_unescaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytewise(bytes: &[u8], plain: fn(u8) -> bool) -> usize {
        bytes.iter().position(|&b| !plain(b)).unwrap_or(bytes.len())
    }

    proptest::proptest! {
        /// Eight bytes at a time finds the same run as one at a time; mostly
        /// plain bytes, so that runs are long and words mix both kinds.
        #[test]
        fn runs_are_found_as_bytewise(
            bytes in proptest::collection::vec(proptest::prop_oneof![8 => 0x20u8..0x7f, 1 => proptest::arbitrary::any::<u8>()], 0..48),
        ) {
            proptest::prop_assert_eq!(printable_ascii(&bytes), bytewise(&bytes, is_printable_ascii));
            proptest::prop_assert_eq!(unescaped(&bytes), bytewise(&bytes, is_unescaped));
        }
    }

    #[test]
    fn every_byte_value_ends_a_run_as_it_should() {
        for b in 0..=255u8 {
            for at in [0, 5, 7, 8, 13] {
                let mut text = *b"abcdefghijklmnop";
                text[at] = b;
                let expect = |plain: bool| if plain { 16 } else { at };
                assert_eq!(printable_ascii(&text), expect(is_printable_ascii(b)), "byte {b:#04x} at {at}");
                assert_eq!(unescaped(&text), expect(is_unescaped(b)), "byte {b:#04x} at {at}");
            }
        }
    }

    #[test]
    fn a_byte_after_one_that_fires_is_judged_alone() {
        // A control byte and then a byte one above it: the borrow of the
        // first may make the word test fire at the second too.
        assert_eq!(unescaped(b"abcdef\x1f!"), 6);
        assert_eq!(printable_ascii(b"abcdef\x7f\x80rest"), 6);
        assert_eq!(unescaped("abcdef\u{e9}\"xyz".as_bytes()), 8);
    }

    #[test]
    fn the_classes() {
        assert!(is_unescaped(0x7f) && !is_printable_ascii(0x7f));
        assert!(is_unescaped(0xc3) && !is_printable_ascii(0xc3));
        for b in [b'"', b'\\', b'\n', 0x00, 0x1f] {
            assert!(!is_unescaped(b) && !is_printable_ascii(b));
        }
    }
}
