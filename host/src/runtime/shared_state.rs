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

    /// Stores `value` at `key` if the limits allow it.
    fn put(&self, entries: &mut Entries, key: String, value: Vec<u8>) -> Result<(), StateLimit> {
        let bytes = key.len() + value.len();
        if bytes > self.limits.max_entry {
            return Err(StateLimit::Entry { key, bytes, max: self.limits.max_entry });
        }
        let old = entries.map.get(&key).map_or(0, |v| key.len() + v.len());
        let held = entries.bytes - old;
        if held + bytes > self.limits.max_total {
            return Err(StateLimit::Total { key, held: entries.bytes, bytes, max: self.limits.max_total });
        }
        entries.map.insert(key, value);
        entries.bytes = held + bytes;
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
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, StateLimit> {
        let mut entries = self.entries.lock().unwrap();
        let current =
            entries.map.get(key).and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let next = current.saturating_add(delta);
        self.put(&mut entries, key.to_string(), next.to_string().into_bytes())?;
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
