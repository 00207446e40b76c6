//! The key/value store behind the `state` interface: one per host process,
//! shared by every instance of every guest, and kept across guest swaps.
//!
//! Guests keep nothing that must survive in their linear memory, so this is
//! where a session guest's registrations and counters live. A `BTreeMap`
//! under one mutex: operations are short, and `list-prefix` needs key order.
//!
//! A guest cannot grow the host's memory without bound through it: one entry
//! (key plus value) holds at most `--state-max-value` bytes and all entries
//! together at most `--state-max-bytes`. A write over either is refused with
//! a [`StateLimit`], which traps the guest's call with that message.

use prometheus::IntGauge;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

/// The bounds of the store, in bytes (keys plus values).
#[derive(Debug, Clone, Copy)]
pub struct StateLimits {
    /// Largest entry: a key and its value.
    pub max_entry: usize,
    /// Largest total of every entry.
    pub max_total: usize,
}

/// A write the limits refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLimit {
    /// One entry larger than `max_entry`.
    Entry { key: String, bytes: usize, max: usize },
    /// The store would hold more than `max_total`.
    Total { key: String, held: usize, bytes: usize, max: usize },
}

impl fmt::Display for StateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLimit::Entry { key, bytes, max } => write!(
                f,
                "state limit: the entry {key:?} would hold {bytes} bytes (key and value), over the {max} of --state-max-value"
            ),
            StateLimit::Total { key, held, bytes, max } => write!(
                f,
                "state limit: the shared state holds {held} bytes; writing {bytes} more for {key:?} would pass the {max} of --state-max-bytes"
            ),
        }
    }
}

impl std::error::Error for StateLimit {}

struct Entries {
    map: BTreeMap<String, Vec<u8>>,
    /// Sum of every key's and value's length, checked against `max_total`.
    bytes: usize,
}

pub struct SharedState {
    entries: Mutex<Entries>,
    limits: StateLimits,
    /// `scalelab_state_keys`, kept equal to the number of keys.
    keys: IntGauge,
    /// `scalelab_state_bytes`, kept equal to the bytes held.
    bytes: IntGauge,
}

impl SharedState {
    pub fn new(limits: StateLimits, keys: IntGauge, bytes: IntGauge) -> SharedState {
        SharedState { entries: Mutex::new(Entries { map: BTreeMap::new(), bytes: 0 }), limits, keys, bytes }
    }

    fn count(&self, entries: &Entries) {
        self.keys.set(entries.map.len() as i64);
        self.bytes.set(entries.bytes as i64);
    }

    /// The bytes the store holds once `key`'s entry (of `old` bytes, 0 when
    /// absent) becomes `bytes` long, key and value, if the limits allow it.
    fn room(&self, held: usize, key: &str, old: usize, bytes: usize) -> Result<usize, StateLimit> {
        if bytes > self.limits.max_entry {
            return Err(StateLimit::Entry { key: key.to_string(), bytes, max: self.limits.max_entry });
        }
        let others = held - old;
        if others + bytes > self.limits.max_total {
            return Err(StateLimit::Total { key: key.to_string(), held, bytes, max: self.limits.max_total });
        }
        Ok(others + bytes)
    }

    /// Stores `value` at `key` if the limits allow it.
    fn put(&self, entries: &mut Entries, key: String, value: Vec<u8>) -> Result<(), StateLimit> {
        let old = entries.map.get(&key).map_or(0, |v| key.len() + v.len());
        entries.bytes = self.room(entries.bytes, &key, old, key.len() + value.len())?;
        entries.map.insert(key, value);
        self.count(entries);
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.entries.lock().unwrap().map.get(key).cloned()
    }

    pub fn set(&self, key: String, value: Vec<u8>) -> Result<(), StateLimit> {
        let mut entries = self.entries.lock().unwrap();
        self.put(&mut entries, key, value)
    }

    pub fn delete(&self, key: &str) -> bool {
        let mut entries = self.entries.lock().unwrap();
        let Some(value) = entries.map.remove(key) else { return false };
        entries.bytes -= key.len() + value.len();
        self.count(&entries);
        true
    }

    /// Adds `delta` to the decimal integer at `key` (absent or not a number
    /// counts as 0) and returns the result, saturating at the `i64` bounds.
    ///
    /// A counter that exists is rewritten in place, with one search of the
    /// map and no allocation: a shared counter (the tracker's ticks) is
    /// incremented on every client-tick, under the one lock every session
    /// takes. For the same reason the gauges are written only when the bytes
    /// held change (a new digit): each is a cache line every core would
    /// otherwise take in turn at every increment.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, StateLimit> {
        let mut guard = self.entries.lock().unwrap();
        let entries = &mut *guard;
        let Some(value) = entries.map.get_mut(key) else {
            self.put(entries, key.to_string(), delta.to_string().into_bytes())?;
            return Ok(delta);
        };
        let current = std::str::from_utf8(value).ok().and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let next = current.saturating_add(delta);
        let mut digits = itoa::Buffer::new();
        let text = digits.format(next).as_bytes();
        let held = entries.bytes;
        entries.bytes = self.room(held, key, key.len() + value.len(), key.len() + text.len())?;
        if value.capacity() > SMALL_VALUE {
            // A large value (of something that was not a counter) gives its
            // memory back: the limits count lengths, not capacities.
            *value = text.to_vec();
        } else {
            value.clear();
            value.extend_from_slice(text);
        }
        if entries.bytes != held {
            self.bytes.set(entries.bytes as i64);
        }
        Ok(next)
    }

    /// Sets `key` only when it has no value; true when it was set.
    pub fn insert_if_absent(&self, key: String, value: Vec<u8>) -> Result<bool, StateLimit> {
        let mut entries = self.entries.lock().unwrap();
        if entries.map.contains_key(&key) {
            return Ok(false);
        }
        self.put(&mut entries, key, value)?;
        Ok(true)
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn list_prefix(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let entries = self.entries.lock().unwrap();
        entries
            .map
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Largest capacity a counter's value keeps when rewritten in place.
const SMALL_VALUE: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn state(max_entry: usize, max_total: usize) -> (SharedState, IntGauge, IntGauge) {
        let keys = IntGauge::new("keys", "keys").unwrap();
        let bytes = IntGauge::new("bytes", "bytes").unwrap();
        (SharedState::new(StateLimits { max_entry, max_total }, keys.clone(), bytes.clone()), keys, bytes)
    }

    #[test]
    fn operations_behave_as_the_wit_documents() {
        let (state, keys, bytes) = state(1 << 20, 1 << 20);
        assert_eq!(state.get("a"), None);
        assert!(state.insert_if_absent("a/1".into(), b"x".to_vec()).unwrap());
        assert!(!state.insert_if_absent("a/1".into(), b"y".to_vec()).unwrap());
        assert_eq!(state.get("a/1"), Some(b"x".to_vec()));
        state.set("a/2".into(), b"z".to_vec()).unwrap();
        state.set("b/1".into(), b"w".to_vec()).unwrap();
        let listed: Vec<String> = state.list_prefix("a/").into_iter().map(|(k, _)| k).collect();
        assert_eq!(listed, ["a/1", "a/2"]);
        assert_eq!(state.increment("n", 5), Ok(5));
        assert_eq!(state.increment("n", -2), Ok(3));
        assert_eq!(state.get("n"), Some(b"3".to_vec()));
        assert_eq!(state.increment("a/1", 1), Ok(1), "a non-number counts as 0");
        assert!(state.delete("a/2"));
        assert!(!state.delete("a/2"));
        assert_eq!(keys.get(), 3);
        assert_eq!(bytes.get(), ["a/1", "1", "b/1", "w", "n", "3"].iter().map(|s| s.len()).sum::<usize>() as i64);
    }

    #[test]
    fn counters_saturate_and_are_rewritten_in_place_within_the_limits() {
        let (state, keys, bytes) = state(21, 1 << 20);
        assert_eq!(state.increment("n", i64::MAX), Ok(i64::MAX));
        assert_eq!(state.increment("n", 1), Ok(i64::MAX), "saturates at the top");
        assert_eq!(state.get("n"), Some(i64::MAX.to_string().into_bytes()));
        assert_eq!(state.increment("m", i64::MIN), Ok(i64::MIN));
        assert_eq!(state.increment("m", -1), Ok(i64::MIN), "and at the bottom");
        assert_eq!(state.get("m"), Some(b"-9223372036854775808".to_vec()));
        assert_eq!((keys.get(), bytes.get()), (2, 1 + 19 + 1 + 20));
        // A rewrite that would pass the entry limit is refused and leaves the
        // counter as it was.
        state.set("ab".into(), b"1".to_vec()).unwrap();
        let refused = state.increment("ab", i64::MIN).unwrap_err();
        assert_eq!(refused, StateLimit::Entry { key: "ab".into(), bytes: 22, max: 21 });
        assert_eq!((state.get("ab"), bytes.get()), (Some(b"1".to_vec()), 41 + 3));
        assert_eq!(state.increment("ab", 41), Ok(42));
        assert_eq!((state.get("ab"), keys.get(), bytes.get()), (Some(b"42".to_vec()), 3, 41 + 4));
    }

    #[test]
    fn a_large_value_turned_counter_gives_its_memory_back() {
        let (state, _, bytes) = state(1 << 20, 1 << 20);
        state.set("big".into(), vec![b'x'; 100_000]).unwrap();
        assert_eq!(state.increment("big", 3), Ok(3), "not a number: counts as 0");
        assert_eq!(bytes.get(), 4);
        let entries = state.entries.lock().unwrap();
        assert!(entries.map["big"].capacity() <= SMALL_VALUE, "{}", entries.map["big"].capacity());
    }

    #[test]
    fn writes_over_the_limits_are_refused_and_change_nothing() {
        let (state, keys, bytes) = state(16, 40);
        let entry = state.set("k".into(), vec![0; 16]).unwrap_err();
        assert_eq!(entry, StateLimit::Entry { key: "k".into(), bytes: 17, max: 16 });
        assert!(entry.to_string().contains("--state-max-value"), "{entry}");
        state.set("a".into(), vec![1; 15]).unwrap();
        state.set("b".into(), vec![2; 15]).unwrap();
        let total = state.insert_if_absent("c".into(), vec![3; 15]).unwrap_err();
        assert_eq!(total, StateLimit::Total { key: "c".into(), held: 32, bytes: 16, max: 40 });
        assert!(total.to_string().contains("--state-max-bytes"), "{total}");
        assert!(state.increment("counter/with/a/long/key", 1).is_err());
        assert_eq!((keys.get(), bytes.get()), (2, 32));
        // Replacing a value counts only the difference; deleting frees it.
        state.set("a".into(), vec![1; 5]).unwrap();
        state.set("c".into(), vec![3; 15]).unwrap();
        assert!(state.delete("b"));
        assert_eq!((keys.get(), bytes.get()), (2, 22));
        assert_eq!(state.increment("n", 7), Ok(7));
        assert_eq!(bytes.get(), 24);
    }
}
