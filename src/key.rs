//! Row keys: the values of a table's key columns, owned and serialisable so they can sit in the state
//! store (pending re-checks, full-pass progress) and in events.
//!
//! Two keys are the same row when their *canonical* encodings are equal: integers compare by value
//! whatever their width or signedness (an `INT` on one side and a `BIGINT UNSIGNED` on the other name the
//! same row), strings and binary values compare byte for byte.

use mysql_async::Value;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::hash::{Hash, Hasher};

/// One key column's value. Mirrors `mysql_async::Value`, which has no serde support.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum KeyVal {
    Null,
    Int(i64),
    UInt(u64),
    Bytes(Vec<u8>),
    Float(f32),
    Double(f64),
    /// year, month, day, hour, minute, second, microsecond
    Date(u16, u8, u8, u8, u8, u8, u32),
    /// negative, days, hours, minutes, seconds, microseconds
    Time(bool, u32, u8, u8, u8, u32),
}

impl From<&Value> for KeyVal {
    fn from(v: &Value) -> Self {
        match v {
            Value::NULL => KeyVal::Null,
            Value::Int(i) => KeyVal::Int(*i),
            Value::UInt(u) => KeyVal::UInt(*u),
            Value::Bytes(b) => KeyVal::Bytes(b.clone()),
            Value::Float(f) => KeyVal::Float(*f),
            Value::Double(d) => KeyVal::Double(*d),
            Value::Date(y, mo, d, h, mi, s, us) => KeyVal::Date(*y, *mo, *d, *h, *mi, *s, *us),
            Value::Time(n, d, h, mi, s, us) => KeyVal::Time(*n, *d, *h, *mi, *s, *us),
        }
    }
}

impl From<&KeyVal> for Value {
    fn from(v: &KeyVal) -> Self {
        match v {
            KeyVal::Null => Value::NULL,
            KeyVal::Int(i) => Value::Int(*i),
            KeyVal::UInt(u) => Value::UInt(*u),
            KeyVal::Bytes(b) => Value::Bytes(b.clone()),
            KeyVal::Float(f) => Value::Float(*f),
            KeyVal::Double(d) => Value::Double(*d),
            KeyVal::Date(y, mo, d, h, mi, s, us) => Value::Date(*y, *mo, *d, *h, *mi, *s, *us),
            KeyVal::Time(n, d, h, mi, s, us) => Value::Time(*n, *d, *h, *mi, *s, *us),
        }
    }
}

/// Appends a self-delimiting canonical encoding of one key value: equal values, equal bytes.
fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::NULL => out.push(0),
        Value::Int(i) => {
            out.push(1);
            out.extend_from_slice(&i128::from(*i).to_be_bytes());
        }
        Value::UInt(u) => {
            out.push(1);
            out.extend_from_slice(&i128::from(*u).to_be_bytes());
        }
        Value::Bytes(b) => {
            out.push(2);
            out.extend_from_slice(&(b.len() as u64).to_be_bytes());
            out.extend_from_slice(b);
        }
        Value::Float(f) => {
            out.push(3);
            out.extend_from_slice(&f64::from(*f).to_bits().to_be_bytes());
        }
        Value::Double(d) => {
            out.push(3);
            out.extend_from_slice(&d.to_bits().to_be_bytes());
        }
        Value::Date(y, mo, d, h, mi, s, us) => {
            out.push(4);
            out.extend_from_slice(&y.to_be_bytes());
            out.extend_from_slice(&[*mo, *d, *h, *mi, *s]);
            out.extend_from_slice(&us.to_be_bytes());
        }
        Value::Time(n, d, h, mi, s, us) => {
            out.push(5);
            let micros = ((i128::from(*d) * 24 + i128::from(*h)) * 3600 + i128::from(*mi) * 60 + i128::from(*s))
                * 1_000_000
                + i128::from(*us);
            let micros = if *n { -micros } else { micros };
            out.extend_from_slice(&micros.to_be_bytes());
        }
    }
}

/// The canonical bytes of a key given as the values read from a row (no `Key` needs building).
pub fn canonical_of(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 * values.len());
    for v in values {
        encode(v, &mut out);
    }
    out
}

impl KeyVal {
    /// The value as JSON for events: numbers as numbers, text as strings, other bytes as `0x`-prefixed hex.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            KeyVal::Null => J::Null,
            KeyVal::Int(i) => J::from(*i),
            KeyVal::UInt(u) => J::from(*u),
            KeyVal::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => J::from(s),
                Err(_) => J::from(hex(b)),
            },
            KeyVal::Float(f) => J::from(f64::from(*f)),
            KeyVal::Double(d) => J::from(*d),
            KeyVal::Date(..) | KeyVal::Time(..) => J::from(self.to_string()),
        }
    }

    /// The integer value, when this is an integer (used for the event's `id`).
    pub fn as_integer(&self) -> Option<serde_json::Value> {
        match self {
            KeyVal::Int(i) => Some((*i).into()),
            KeyVal::UInt(u) => Some((*u).into()),
            _ => None,
        }
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("0x");
    for byte in b {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

impl fmt::Display for KeyVal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyVal::Null => f.write_str("NULL"),
            KeyVal::Int(i) => write!(f, "{i}"),
            KeyVal::UInt(u) => write!(f, "{u}"),
            KeyVal::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => f.write_str(s),
                Err(_) => f.write_str(&hex(b)),
            },
            KeyVal::Float(x) => write!(f, "{x}"),
            KeyVal::Double(x) => write!(f, "{x}"),
            KeyVal::Date(y, mo, d, h, mi, s, us) => {
                write!(f, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")?;
                if *us > 0 {
                    write!(f, ".{us:06}")?;
                }
                Ok(())
            }
            KeyVal::Time(n, d, h, mi, s, us) => {
                let hours = u64::from(*d) * 24 + u64::from(*h);
                write!(f, "{}{hours:02}:{mi:02}:{s:02}", if *n { "-" } else { "" })?;
                if *us > 0 {
                    write!(f, ".{us:06}")?;
                }
                Ok(())
            }
        }
    }
}

/// A row's key: one value per key column, in key-column order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Key(pub Vec<KeyVal>);

impl Key {
    pub fn from_values(values: &[Value]) -> Self {
        Key(values.iter().map(KeyVal::from).collect())
    }

    /// Canonical bytes: the identity of the row, used for maps and state-store keys.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 * self.0.len());
        for v in &self.0 {
            encode(&Value::from(v), &mut out);
        }
        out
    }

    pub fn params(&self) -> impl Iterator<Item = Value> + '_ {
        self.0.iter().map(Value::from)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.canonical() == other.canonical()
    }
}
impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical().hash(state)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() == 1 {
            return write!(f, "{}", self.0[0]);
        }
        f.write_str("(")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_of_any_width_are_the_same_key() {
        assert_eq!(Key(vec![KeyVal::Int(7)]), Key(vec![KeyVal::UInt(7)]));
        assert_ne!(Key(vec![KeyVal::Int(-1)]), Key(vec![KeyVal::UInt(u64::MAX)]));
    }

    #[test]
    fn bytes_compare_exactly_and_encoding_is_self_delimiting() {
        let a = Key(vec![KeyVal::Bytes(b"ab".to_vec()), KeyVal::Bytes(b"c".to_vec())]);
        let b = Key(vec![KeyVal::Bytes(b"a".to_vec()), KeyVal::Bytes(b"bc".to_vec())]);
        assert_ne!(a, b);
        assert_ne!(Key(vec![KeyVal::Bytes(b"A".to_vec())]), Key(vec![KeyVal::Bytes(b"a".to_vec())]));
    }

    #[test]
    fn json_rendering() {
        assert_eq!(KeyVal::UInt(u64::MAX).to_json(), serde_json::json!(u64::MAX));
        assert_eq!(KeyVal::Bytes(vec![0, 0xff]).to_json(), serde_json::json!("0x00ff"));
        assert_eq!(KeyVal::Bytes("键".as_bytes().to_vec()).to_json(), serde_json::json!("键"));
        assert_eq!(KeyVal::Time(true, 1, 2, 3, 4, 5).to_string(), "-26:03:04.000005");
    }
}
