//! A message's properties: what RocketMQ sends as `key \u1 value \u2 …`, held as one text buffer
//! and a sorted index into it.
//!
//! Why not a `BTreeMap<String, String>`: every pulled message's properties are decoded (six or so
//! per message: UNIQ_KEY, KEYS, TAGS, WAIT, MIN_OFFSET, MAX_OFFSET…), and a map of owned strings
//! cost two allocations per entry plus tree nodes — 4,700 instructions a message, more than a
//! quarter of what our consumer spends on one (callgrind, `consume-bench` row a'). Here a decoded
//! message costs two allocations: a copy of the text and the index.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Range;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use super::message::{NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR, property};

/// A message's user and system properties.
///
/// Ordered by key (as a `BTreeMap` would be) so that encoding is deterministic: byte-exact golden
/// tests and round-trip properties depend on it, while Java's `HashMap` order carries no meaning.
/// Equality, hashing, `Debug` and serde see the entries only, never how the text is laid out.
#[derive(Clone, Default)]
pub struct Properties {
    /// The keys' and values' text. Replaced or removed entries leave their text behind until
    /// [`Properties::compact_if_sparse`] drops it.
    text: String,
    /// One per key, sorted by key.
    entries: Vec<Entry>,
    /// Bytes of `text` that replaced and removed entries left behind. (A decoded text's
    /// separators are not counted: two bytes an entry, bounded by the entries.)
    dead: usize,
}

/// Where an entry's key and value are in the text.
#[derive(Debug, Clone)]
struct Entry {
    key: Range<usize>,
    value: Range<usize>,
}

impl Entry {
    fn key<'t>(&self, text: &'t str) -> &'t str {
        &text[self.key.clone()]
    }

    fn value<'t>(&self, text: &'t str) -> &'t str {
        &text[self.value.clone()]
    }
}

/// A property that would not survive the wire: decoding its encoding would drop or change it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("property {key:?} cannot be encoded: {reason}")]
pub struct InvalidProperty {
    pub key: String,
    pub reason: &'static str,
}

impl Properties {
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of `key`'s entry, or where it would go.
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.key(&self.text).cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| self.entries[i].value(&self.text))
    }

    /// Appends `s` to the text: its range.
    fn push_text(&mut self, s: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(s);
        start..self.text.len()
    }

    /// Inserts or replaces a property, returning the old value.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Option<String> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let old = match self.find(key) {
            Ok(i) => {
                let old = self.entries[i].value(&self.text).to_owned();
                self.dead += old.len();
                self.entries[i].value = self.push_text(value);
                Some(old)
            }
            Err(i) => {
                let entry = Entry { key: self.push_text(key), value: self.push_text(value) };
                self.entries.insert(i, entry);
                None
            }
        };
        self.compact_if_sparse();
        old
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.find(key).ok()?;
        let e = self.entries.remove(i);
        self.dead += e.key.len() + e.value.len();
        let old = e.value(&self.text).to_owned();
        self.compact_if_sparse();
        Some(old)
    }

    /// Rewrites the text without what replaced and removed entries left behind once that is
    /// more than half of it, so a map that is edited again and again stays bounded.
    fn compact_if_sparse(&mut self) {
        if self.dead <= self.text.len() / 2 + 32 {
            return;
        }
        let mut text = String::with_capacity(self.text.len() - self.dead);
        for e in &mut self.entries {
            let key = text.len()..text.len() + e.key.len();
            text.push_str(e.key(&self.text));
            let value = text.len()..text.len() + e.value.len();
            text.push_str(e.value(&self.text));
            *e = Entry { key, value };
        }
        self.text = text;
        self.dead = 0;
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter { text: &self.text, entries: self.entries.iter() }
    }

    /// The entries as a map of owned strings (for JSON output and fixtures).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    /// The wire form (`messageProperties2String`): `key \u1 value \u2` per entry, trailing
    /// separator included because Java producers write one and brokers compare raw strings in a
    /// few places (e.g. the appended `__CRC32#`).
    ///
    /// Writes every entry as Java does, even ones [`Properties::validate`] rejects; the record
    /// encoders validate first so they never emit such bytes.
    pub fn encode(&self) -> String {
        let len = self.entries.iter().map(|e| e.key.len() + e.value.len() + 2).sum();
        let mut out = String::with_capacity(len);
        for (key, value) in self.iter() {
            out.push_str(key);
            out.push(NAME_VALUE_SEPARATOR);
            out.push_str(value);
            out.push(PROPERTY_SEPARATOR);
        }
        out
    }

    /// Parses the wire form exactly as `string2messageProperties` does, including its silent
    /// skipping: a segment without `\u1`, with an empty key or with an empty value is dropped
    /// rather than failing the message, because the Java client delivers such messages.
    ///
    /// Java also drops segments shorter than 3 chars; that rule is implied here, as a segment
    /// with a non-empty key, the separator and a non-empty value has at least 3 chars. A value
    /// may contain `\u1` (only the first one splits). A repeated key keeps its last value.
    pub fn decode(s: &str) -> Self {
        // One search for both separators (ASCII, so every position found is a character
        // boundary). `split` and `split_once` on chars were ~1,600 instructions a message (a
        // memchr call per separator on short runs), a byte loop ~1,400.
        const PROPERTY: u8 = PROPERTY_SEPARATOR as u8;
        const NAME_VALUE: u8 = NAME_VALUE_SEPARATOR as u8;
        let mut entries = Vec::with_capacity(8);
        let mut push = |start: usize, separator: Option<usize>, end: usize| {
            if let Some(sep) = separator
                && sep > start
                && end > sep + 1
            {
                entries.push(Entry { key: start..sep, value: sep + 1..end });
            }
        };
        let (mut start, mut separator) = (0, None);
        let bytes = s.as_bytes();
        for i in memchr::memchr2_iter(NAME_VALUE, PROPERTY, bytes) {
            if bytes[i] == PROPERTY {
                push(start, separator, i);
                (start, separator) = (i + 1, None);
            } else if separator.is_none() {
                separator = Some(i);
            }
        }
        push(start, separator, s.len());
        let mut p = Self { text: s.to_owned(), entries, dead: 0 };
        p.sort_keeping_last();
        p
    }

    /// Sorts the entries by key; of entries with the same key, the last one stays.
    fn sort_keeping_last(&mut self) {
        let text = self.text.as_str();
        // Stable, so equal keys keep their order and the last of a run is the last written.
        self.entries.sort_by(|a, b| a.key(text).cmp(b.key(text)));
        // `dedup_by` hands (current, previous kept): the current one's value wins.
        let mut dead = 0;
        self.entries.dedup_by(|current, kept| {
            let same = current.key(text) == kept.key(text);
            if same {
                dead += kept.key.len() + kept.value.len();
                kept.value = current.value.clone();
            }
            same
        });
        self.dead += dead;
    }

    /// Checks that [`Properties::decode`] of [`Properties::encode`] gives back exactly `self`.
    pub fn validate(&self) -> Result<(), InvalidProperty> {
        for (key, value) in self.iter() {
            let reason = if key.is_empty() {
                Some("empty key")
            } else if key.contains(NAME_VALUE_SEPARATOR) || key.contains(PROPERTY_SEPARATOR) {
                Some("key contains a separator (\\u1 or \\u2)")
            } else if value.is_empty() {
                Some("empty value")
            } else if value.contains(PROPERTY_SEPARATOR) {
                Some("value contains the property separator \\u2")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(InvalidProperty { key: key.to_owned(), reason });
            }
        }
        Ok(())
    }

    /// The TAGS property; subscription filtering compares it verbatim.
    pub fn tags(&self) -> Option<&str> {
        self.get(property::TAGS)
    }

    /// The KEYS property split on spaces, skipping empty pieces as `Message.getKeys` users do.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.get(property::KEYS)
            .unwrap_or_default()
            .split(property::KEY_SEPARATOR)
            .filter(|k| !k.is_empty())
    }

    pub fn uniq_key(&self) -> Option<&str> {
        self.get(property::UNIQ_KEY)
    }

    /// DELAY as a level; 0 ("not delayed") when absent or not a number, where Java would throw
    /// from deep inside the send path.
    pub fn delay_level(&self) -> i32 {
        self.get(property::DELAY).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }

    /// WAIT: only an explicit "false" (any case, like `Boolean.parseBoolean`) turns it off.
    pub fn wait_store_msg_ok(&self) -> bool {
        self.get(property::WAIT).is_none_or(|v| v.eq_ignore_ascii_case("true"))
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Properties {}

impl Hash for Properties {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for entry in self.iter() {
            entry.hash(state);
        }
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Properties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer).map(Self::from)
    }
}

impl From<BTreeMap<String, String>> for Properties {
    fn from(map: BTreeMap<String, String>) -> Self {
        map.into_iter().collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Properties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut p = Self::new();
        p.extend(iter);
        p
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Extend<(K, V)> for Properties {
    /// Appends, then sorts once (the last of a repeated key wins, as with `insert`).
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            let entry =
                Entry { key: self.push_text(k.as_ref()), value: self.push_text(v.as_ref()) };
            self.entries.push(entry);
        }
        self.sort_keeping_last();
        self.compact_if_sparse();
    }
}

/// The entries of a [`Properties`], in key order.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    text: &'a str,
    entries: std::slice::Iter<'a, Entry>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let e = self.entries.next()?;
        Some((e.key(self.text), e.value(self.text)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Properties {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &Properties) -> Vec<(&str, &str)> {
        p.iter().collect()
    }

    #[test]
    fn entries_stay_sorted_and_the_last_value_of_a_key_wins() {
        let mut p = Properties::decode("b\u{1}2\u{2}a\u{1}1\u{2}b\u{1}3\u{2}");
        assert_eq!(pairs(&p), [("a", "1"), ("b", "3")]);
        assert_eq!(p.insert("c", "4"), None);
        assert_eq!(p.insert("a", "5"), Some("1".to_owned()));
        assert_eq!(p.insert("0", "6"), None);
        assert_eq!(pairs(&p), [("0", "6"), ("a", "5"), ("b", "3"), ("c", "4")]);
        assert_eq!(p.remove("b"), Some("3".to_owned()));
        assert_eq!(p.remove("b"), None);
        assert_eq!((p.get("a"), p.get("b"), p.len()), (Some("5"), None, 3));
        let extended: Properties = [("y", "1"), ("x", "2"), ("y", "3")].into_iter().collect();
        assert_eq!(pairs(&extended), [("x", "2"), ("y", "3")]);
    }

    /// Equality, hashing and serde see the entries, not the text left behind by edits.
    #[test]
    fn equal_entries_are_equal_however_the_text_is_laid_out() {
        let mut edited = Properties::decode("a\u{1}old\u{2}gone\u{1}x\u{2}");
        edited.insert("a", "1");
        edited.remove("gone");
        let fresh: Properties = [("a", "1")].into_iter().collect();
        assert_eq!(edited, fresh);
        let hash = |p: &Properties| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            p.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&edited), hash(&fresh));
        assert_eq!(format!("{edited:?}"), r#"{"a": "1"}"#);
        assert_eq!(serde_json::to_string(&edited).unwrap(), r#"{"a":"1"}"#);
        let back: Properties = serde_json::from_str(r#"{"a":"1"}"#).unwrap();
        assert_eq!(back, fresh);
    }

    /// A property rewritten over and over does not grow the text without bound.
    #[test]
    fn edits_leave_bounded_garbage() {
        let mut p = Properties::new();
        for i in 0..10_000 {
            p.insert("counter", i.to_string());
            p.insert(format!("k{}", i % 4), "v");
            p.remove(&format!("k{}", (i + 2) % 4));
        }
        let live: usize = p.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert_eq!(p.text.len() - p.dead, live, "dead bytes are counted");
        assert!(p.text.len() <= 2 * live + 64 + 16, "{} bytes for {live} live", p.text.len());
        assert_eq!(p.get("counter"), Some("9999"));
    }
}
