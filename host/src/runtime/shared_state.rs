//! The key/value store behind the `state` interface: one per host process,
//! shared by every instance of every guest, and kept across guest swaps.
//!
//! Guests keep nothing that must survive in their linear memory, so this is
//! where a session guest's registrations and counters live. A `BTreeMap`
//! under one mutex: operations are short, and `list-prefix` needs key order.

use prometheus::IntGauge;
use std::collections::BTreeMap;
use std::sync::Mutex;

pub struct SharedState {
    entries: Mutex<BTreeMap<String, Vec<u8>>>,
    /// `scalelab_state_keys`, kept equal to the number of keys.
    keys: IntGauge,
}

impl SharedState {
    pub fn new(keys: IntGauge) -> SharedState {
        SharedState { entries: Mutex::new(BTreeMap::new()), keys }
    }

    fn count(&self, entries: &BTreeMap<String, Vec<u8>>) {
        self.keys.set(entries.len() as i64);
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.entries.lock().unwrap().get(key).cloned()
    }

    pub fn set(&self, key: String, value: Vec<u8>) {
        let mut entries = self.entries.lock().unwrap();
        entries.insert(key, value);
        self.count(&entries);
    }

    pub fn delete(&self, key: &str) -> bool {
        let mut entries = self.entries.lock().unwrap();
        let existed = entries.remove(key).is_some();
        self.count(&entries);
        existed
    }

    /// Adds `delta` to the decimal integer at `key` (absent or not a number
    /// counts as 0) and returns the result, saturating at the `i64` bounds.
    pub fn increment(&self, key: &str, delta: i64) -> i64 {
        let mut entries = self.entries.lock().unwrap();
        let current = entries.get(key).and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let next = current.saturating_add(delta);
        entries.insert(key.to_string(), next.to_string().into_bytes());
        self.count(&entries);
        next
    }

    /// Sets `key` only when it has no value; true when it was set.
    pub fn insert_if_absent(&self, key: String, value: Vec<u8>) -> bool {
        let mut entries = self.entries.lock().unwrap();
        if entries.contains_key(&key) {
            return false;
        }
        entries.insert(key, value);
        self.count(&entries);
        true
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn list_prefix(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let entries = self.entries.lock().unwrap();
        entries
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_behave_as_the_wit_documents() {
        let keys = IntGauge::new("keys", "keys").unwrap();
        let state = SharedState::new(keys.clone());
        assert_eq!(state.get("a"), None);
        assert!(state.insert_if_absent("a/1".into(), b"x".to_vec()));
        assert!(!state.insert_if_absent("a/1".into(), b"y".to_vec()));
        assert_eq!(state.get("a/1"), Some(b"x".to_vec()));
        state.set("a/2".into(), b"z".to_vec());
        state.set("b/1".into(), b"w".to_vec());
        let listed: Vec<String> = state.list_prefix("a/").into_iter().map(|(k, _)| k).collect();
        assert_eq!(listed, ["a/1", "a/2"]);
        assert_eq!(state.increment("n", 5), 5);
        assert_eq!(state.increment("n", -2), 3);
        assert_eq!(state.get("n"), Some(b"3".to_vec()));
        assert_eq!(state.increment("a/1", 1), 1, "a non-number counts as 0");
        assert!(state.delete("a/2"));
        assert!(!state.delete("a/2"));
        assert_eq!(keys.get(), 3);
    }
}
