//! Cache-aware routing: which instance last served a conversation's
//! leading messages. A model server keeps the KV cells of what it read
//! (its prefix cache), so the next turn of a conversation, or a new one
//! with the same system prompt, is answered fastest by the instance that
//! read its beginning. [`prefix_keys`] names those beginnings (hashes of
//! the leading messages, or of a prompt's leading text, per user and
//! model) and [`Affinity`] remembers the instance each was last sent to.

use paddock_core::{InstanceId, ModelId, UserId};
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

/// Prefixes remembered; past that the oldest half is forgotten.
const MAX_ENTRIES: usize = 50_000;

/// Leading bytes of a plain prompt that name its prefixes: a long one (a
/// conversation so far) and a short one (its system text).
const PROMPT_PREFIXES: [usize; 2] = [4096, 512];

/// The instance each prefix was last routed to.
#[derive(Debug, Default)]
pub struct Affinity {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// Prefix key → (instance, when it was recorded, in `tick`s).
    map: HashMap<u64, (InstanceId, u64)>,
    tick: u64,
}

impl Affinity {
    /// The instance the most specific known key of `keys` was last routed to.
    pub fn lookup(&self, keys: &[u64]) -> Option<InstanceId> {
        let entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .find_map(|k| entries.map.get(k))
            .map(|(id, _)| id.clone())
    }

    /// Remembers that `keys` were routed to `instance`.
    pub fn record(&self, keys: &[u64], instance: &InstanceId) {
        if keys.is_empty() {
            return;
        }
        let mut entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        entries.tick += 1;
        let tick = entries.tick;
        for &k in keys {
            entries.map.insert(k, (instance.clone(), tick));
        }
        if entries.map.len() > MAX_ENTRIES {
            let keep_after = tick.saturating_sub((MAX_ENTRIES / 2 / keys.len()) as u64);
            entries.map.retain(|_, (_, t)| *t > keep_after);
        }
    }
}

#[derive(Deserialize)]
struct Leading<'a> {
    #[serde(default)]
    messages: Option<FirstTwo>,
    #[serde(default, borrow)]
    prompt: Option<Cow<'a, str>>,
}

/// The first two elements of a list, the rest skipped unread.
struct FirstTwo(Vec<Value>);

impl<'de> Deserialize<'de> for FirstTwo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FirstTwo;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstTwo, A::Error> {
                let mut first = Vec::with_capacity(2);
                while first.len() < 2 {
                    match seq.next_element::<Value>()? {
                        Some(v) => first.push(v),
                        None => return Ok(FirstTwo(first)),
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstTwo(first))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The prefixes of a generation request, most specific first: for a chat,
/// its first two messages and its first message (a system prompt, or the
/// conversation's opening); for a prompt, its leading 4 KiB and 512 bytes.
/// Empty when the body names none.
pub fn prefix_keys(user: &UserId, model: &ModelId, body: &[u8]) -> Vec<u64> {
    let Ok(leading) = serde_json::from_slice::<Leading<'_>>(body) else {
        return Vec::new();
    };
    let key = |parts: &[&str]| {
        let mut h = DefaultHasher::new();
        user.as_str().hash(&mut h);
        model.as_str().hash(&mut h);
        parts.hash(&mut h);
        h.finish()
    };
    if let Some(FirstTwo(messages)) = leading.messages {
        let text: Vec<String> = messages.iter().map(Value::to_string).collect();
        let text: Vec<&str> = text.iter().map(String::as_str).collect();
        return (1..=text.len()).rev().map(|n| key(&text[..n])).collect();
    }
    let Some(prompt) = leading.prompt.as_deref() else {
        return Vec::new();
    };
    let mut keys = Vec::with_capacity(PROMPT_PREFIXES.len());
    for limit in PROMPT_PREFIXES {
        let mut end = prompt.len().min(limit);
        while !prompt.is_char_boundary(end) {
            end -= 1;
        }
        let k = key(&[&prompt[..end]]);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(body: &str) -> Vec<u64> {
        prefix_keys(&UserId::new("u1"), &ModelId::new("m:1"), body.as_bytes())
    }

    #[test]
    fn a_conversation_keeps_its_keys_from_turn_to_turn() {
        let turn1 = keys(
            r#"{"model":"m:1","messages":[{"role":"system","content":"S"},{"role":"user","content":"Q1"}]}"#,
        );
        let turn2 = keys(
            r#"{"model":"m:1","messages":[{"role":"system","content":"S"},{"role":"user","content":"Q1"},{"role":"assistant","content":"A1"},{"role":"user","content":"Q2"}],"stream":true}"#,
        );
        assert_eq!(turn1.len(), 2);
        assert_eq!(turn1, turn2);
        // Another conversation with the same system prompt shares the last.
        let other = keys(
            r#"{"model":"m:1","messages":[{"role":"system","content":"S"},{"role":"user","content":"Q9"}]}"#,
        );
        assert_ne!(other[0], turn1[0]);
        assert_eq!(other[1], turn1[1]);
        // Another user's or model's same conversation is not the same.
        let body = br#"{"model":"m:1","messages":[{"role":"system","content":"S"}]}"#;
        assert_ne!(
            prefix_keys(&UserId::new("u2"), &ModelId::new("m:1"), body),
            prefix_keys(&UserId::new("u1"), &ModelId::new("m:1"), body)
        );
    }

    #[test]
    fn a_prompt_is_named_by_its_leading_text() {
        let long = "x".repeat(600);
        let a = keys(&format!(r#"{{"prompt":"{long} first"}}"#));
        let b = keys(&format!(r#"{{"prompt":"{long} second"}}"#));
        assert_eq!(a.len(), 2);
        assert_ne!(a[0], b[0]);
        assert_eq!(a[1], b[1]);
        assert_eq!(keys(r#"{"prompt":"short"}"#).len(), 1);
        assert!(keys(r#"{"model":"m:1"}"#).is_empty());
        assert!(keys("not json").is_empty());
    }

    #[test]
    fn the_latest_route_of_a_prefix_is_remembered() {
        let a = Affinity::default();
        let (i1, i2) = (InstanceId::new("i-1"), InstanceId::new("i-2"));
        assert_eq!(a.lookup(&[1, 2]), None);
        a.record(&[1, 2], &i1);
        a.record(&[3, 2], &i2);
        assert_eq!(a.lookup(&[1, 2]), Some(i1));
        assert_eq!(a.lookup(&[9, 2]), Some(i2.clone()));
        for k in 0..(MAX_ENTRIES as u64) {
            a.record(&[100 + k], &i2);
        }
        assert!(a.inner.lock().unwrap().map.len() <= MAX_ENTRIES);
        assert_eq!(a.lookup(&[1]), None, "the oldest are forgotten first");
    }
}
