//! The inconsistency event of SPEC.md, as stored in the outbox and as sent.

use crate::clock::rfc3339_ms;
use crate::key::Key;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    TargetMissing,
    Neq,
    BaseMissing,
    /// Not an inconsistency: a reported row was found equal again (`sink.resolved_events`). Last, so
    /// outbox records written before it existed decode unchanged.
    Resolved,
}

impl EventType {
    /// The three inconsistency types.
    pub const ALL: [EventType; 3] = [EventType::TargetMissing, EventType::Neq, EventType::BaseMissing];
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TargetMissing => "target_missing",
            EventType::Neq => "neq",
            EventType::BaseMissing => "base_missing",
            EventType::Resolved => "resolved",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    Binlog,
    Poll,
    Full,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Binlog, Mode::Poll, Mode::Full];

    /// The mode's place in [`Mode::ALL`], for per-mode arrays.
    pub fn index(self) -> usize {
        match self {
            Mode::Binlog => 0,
            Mode::Poll => 1,
            Mode::Full => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Binlog => "binlog",
            Mode::Poll => "poll",
            Mode::Full => "full",
        }
    }
}

/// One inconsistency. Stored with postcard in the outbox; rendered as JSON only when sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventType,
    /// `SRC` or `DST`
    pub direction: String,
    pub table: String,
    pub key_columns: Vec<String>,
    pub key: Key,
    pub mode: Mode,
    /// differing columns (for `neq`)
    pub columns: Vec<String>,
    pub detected_at_ms: u64,
}

/// A verdict that is not `Equal`: what kind of inconsistency, and for `neq` which columns.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mismatch {
    pub kind: EventType,
    pub columns: Vec<String>,
}

impl Event {
    /// `id` of SPEC.md: the key's value when the key is one integer column, else null.
    pub fn id(&self) -> serde_json::Value {
        match self.key.0.as_slice() {
            [only] => only.as_integer().unwrap_or(serde_json::Value::Null),
            _ => serde_json::Value::Null,
        }
    }

    pub fn key_json(&self) -> serde_json::Value {
        let map = self.key_columns.iter().cloned().zip(self.key.0.iter().map(|v| v.to_json())).collect();
        serde_json::Value::Object(map)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id(),
            "type": self.kind.as_str(),
            "direction": self.direction,
            "table": self.table,
            "key": self.key_json(),
            "mode": self.mode.as_str(),
            "columns": self.columns,
            "detected_at": rfc3339_ms(self.detected_at_ms),
        })
    }

    /// The Kafka message key: table and key, so every event of one row lands in one partition in order.
    pub fn message_key(&self) -> String {
        format!("{}:{}", self.table, self.key_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyVal;

    #[test]
    fn json_shape_matches_the_spec() {
        let e = Event {
            kind: EventType::Neq,
            direction: "SRC".into(),
            table: "users".into(),
            key_columns: vec!["id".into()],
            key: Key(vec![KeyVal::Int(42)]),
            mode: Mode::Binlog,
            columns: vec!["email".into()],
            detected_at_ms: 1_795_255_200_123,
        };
        let j = e.to_json();
        assert_eq!(j["id"], 42);
        assert_eq!(j["type"], "neq");
        assert_eq!(j["key"], serde_json::json!({"id": 42}));
        assert_eq!(j["detected_at"], "2026-11-21T10:00:00.123Z");
        assert_eq!(e.message_key(), r#"users:{"id":42}"#);
        let composite = Event {
            key_columns: vec!["a".into(), "b".into()],
            key: Key(vec![KeyVal::Int(1), KeyVal::Bytes(b"x".to_vec())]),
            ..e
        };
        assert_eq!(composite.to_json()["id"], serde_json::Value::Null);
    }
}
