//! A 64-bit digest of a row's compared columns, taken on the compare core's canonical form, so that when
//! both sides give a column the same kind, equal digests mean the compare core calls the rows equal (up to
//! a hash collision): `5` and `5.000` in a DECIMAL, JSON with its keys in another order, `.5` and
//! `.500000` in a DATETIME(6) digest alike. Settle keeps older versions of a row as these digests
//! ([`crate::verdict::versions`]), so the digest is stable across processes and releases (xxh3).
//!
//! Where the kinds differ (a DECIMAL migrated to DOUBLE) numbers digest as the float they round to, the
//! compare core's own first test; a digest match then says "the same value as far as the float holds",
//! enough to recognise a lagging version, and the current version is always judged by the compare core.

use super::{canon, Canon, Kind};
use mysql_async::Value;
use std::hash::Hasher;

/// Which side's kinds a row's values have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Base,
    Other,
}

/// The digest of a row's compared columns (`values[i]` of column `i`, `kinds[i]` its (base, other) kinds).
pub fn digest(kinds: &[(Kind, Kind)], side: Side, values: &[Value]) -> u64 {
    let mut h = twox_hash::XxHash3_64::default();
    for (i, (kb, ko)) in kinds.iter().enumerate() {
        let Some(v) = values.get(i) else {
            h.write_u8(0xff);
            continue;
        };
        let json = *kb == Kind::Json || *ko == Kind::Json;
        let floats = |k: Kind| matches!(k, Kind::Float | Kind::Double);
        let mixed = floats(*kb) != floats(*ko);
        let single = *kb == Kind::Float || *ko == Kind::Float;
        let kind = if json {
            Kind::Json
        } else if side == Side::Base {
            *kb
        } else {
            *ko
        };
        write(&mut h, &canon(v, kind), mixed, single);
    }
    h.finish()
}

fn write(h: &mut impl Hasher, c: &Canon<'_>, mixed: bool, single: bool) {
    match c {
        Canon::Null => h.write_u8(0),
        // A number that a float on the other side could equal: as that float.
        Canon::Num(s) if mixed => match float_of(s, single) {
            Some(f) => float(h, f),
            None => text(h, s.as_bytes()),
        },
        // Numbers and bytes share a tag: the compare core falls back to comparing their text.
        Canon::Num(s) => text(h, s.as_bytes()),
        Canon::Bytes(b) => text(h, b),
        Canon::Float(f, _) => float(h, *f),
        Canon::Instant((y, mo, d, hh, mi, s, us)) => {
            h.write_u8(3);
            h.write_u16(*y);
            h.write(&[*mo, *d, *hh, *mi, *s]);
            h.write_u32(*us);
        }
        Canon::Duration(us) => {
            h.write_u8(4);
            h.write_i128(*us);
        }
        Canon::Json(j) => {
            h.write_u8(5);
            json(h, j);
        }
    }
}

fn text(h: &mut impl Hasher, b: &[u8]) {
    h.write_u8(1);
    h.write_u64(b.len() as u64);
    h.write(b);
}

fn float(h: &mut impl Hasher, f: f64) {
    h.write_u8(2);
    // -0.0 == 0.0 for the compare core.
    h.write_u64(if f == 0.0 { 0 } else { f.to_bits() });
}

fn float_of(s: &str, single: bool) -> Option<f64> {
    if single {
        s.parse::<f32>().ok().map(f64::from)
    } else {
        s.parse::<f64>().ok()
    }
}

/// JSON as [`super::json_equal`] compares it: object keys in sorted order, integers by value whatever
/// their type, an integral float as that integer (`1` equals `1.0`).
fn json(h: &mut impl Hasher, j: &serde_json::Value) {
    use serde_json::Value as J;
    match j {
        J::Null => h.write_u8(0),
        J::Bool(b) => h.write(&[1, u8::from(*b)]),
        J::Number(n) => {
            let int = n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i128));
            match int {
                Some(i) => {
                    h.write_u8(2);
                    h.write_i128(i);
                }
                None => float(h, n.as_f64().unwrap_or(f64::NAN)),
            }
        }
        J::String(s) => text(h, s.as_bytes()),
        J::Array(a) => {
            h.write_u8(6);
            h.write_u64(a.len() as u64);
            a.iter().for_each(|x| json(h, x));
        }
        J::Object(o) => {
            h.write_u8(7);
            h.write_u64(o.len() as u64);
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            for k in keys {
                text(h, k.as_bytes());
                json(h, &o[k]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::compare::compare_rows;

    fn d(kinds: &[(Kind, Kind)], side: Side, v: Vec<Value>) -> u64 {
        digest(kinds, side, &v)
    }

    #[test]
    fn equal_for_the_compare_core_means_equal_digests() {
        let cases: Vec<(Kind, Value, Value)> = vec![
            (Kind::Decimal, Value::Bytes(b"5.000".to_vec()), Value::Bytes(b"5".to_vec())),
            (Kind::Int, Value::Int(7), Value::UInt(7)),
            (
                Kind::DateTime,
                Value::Date(2024, 1, 2, 3, 4, 5, 500_000),
                Value::Bytes(b"2024-01-02 03:04:05.5".to_vec()),
            ),
            (Kind::Time, Value::Time(true, 1, 2, 0, 0, 0), Value::Bytes(b"-26:00:00".to_vec())),
            (
                Kind::Json,
                Value::Bytes(br#"{"a":1,"b":[1.0]}"#.to_vec()),
                Value::Bytes(br#"{ "b": [1], "a": 1.0 }"#.to_vec()),
            ),
            (Kind::Double, Value::Double(-0.0), Value::Double(0.0)),
            (Kind::Bytes, Value::NULL, Value::NULL),
        ];
        for (k, a, b) in cases {
            let kinds = [(k, k)];
            assert_eq!(
                compare_rows(&kinds, Some(std::slice::from_ref(&a)), Some(std::slice::from_ref(&b))),
                crate::verdict::compare::Outcome::Equal
            );
            assert_eq!(d(&kinds, Side::Base, vec![a.clone()]), d(&kinds, Side::Other, vec![b.clone()]), "{a:?} {b:?}");
        }
    }

    #[test]
    fn differences_change_the_digest() {
        let k = [(Kind::Bytes, Kind::Bytes), (Kind::Int, Kind::Int)];
        let base = d(&k, Side::Base, vec![Value::Bytes(b"a".to_vec()), Value::Int(1)]);
        assert_ne!(base, d(&k, Side::Other, vec![Value::Bytes(b"A".to_vec()), Value::Int(1)]));
        assert_ne!(base, d(&k, Side::Other, vec![Value::Bytes(b"a".to_vec()), Value::Int(2)]));
        assert_ne!(base, d(&k, Side::Other, vec![Value::NULL, Value::Int(1)]));
        assert_ne!(base, d(&k, Side::Other, vec![Value::Bytes(b"a ".to_vec()), Value::Int(1)]));
        // Column boundaries count: ("ab", "") is not ("a", "b").
        let k2 = [(Kind::Bytes, Kind::Bytes), (Kind::Bytes, Kind::Bytes)];
        assert_ne!(
            d(&k2, Side::Base, vec![Value::Bytes(b"ab".to_vec()), Value::Bytes(vec![])]),
            d(&k2, Side::Base, vec![Value::Bytes(b"a".to_vec()), Value::Bytes(b"b".to_vec())])
        );
    }

    #[test]
    fn a_decimal_migrated_to_double_digests_as_the_float() {
        let k = [(Kind::Decimal, Kind::Double)];
        assert_eq!(
            d(&k, Side::Base, vec![Value::Bytes(b"0.10".to_vec())]),
            d(&k, Side::Other, vec![Value::Double(0.1)])
        );
        assert_ne!(
            d(&k, Side::Base, vec![Value::Bytes(b"0.2".to_vec())]),
            d(&k, Side::Other, vec![Value::Double(0.1)])
        );
    }
}
