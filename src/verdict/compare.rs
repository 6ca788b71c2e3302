//! The compare core: pure row comparison and value normalisation, no I/O.
//!
//! Values are compared by what they mean, not by how a side happens to store them:
//! - integers of any width or signedness, and DECIMAL of any scale, compare as exact decimal numbers
//!   (`5`, `5.0` and `5.000` are equal);
//! - an integer or DECIMAL against a FLOAT or DOUBLE compares exactly too, never through a rounding f64:
//!   the float converts to its exact decimal value. One allowance keeps a DECIMAL migrated to DOUBLE from
//!   differing on every row: a decimal of at most 15 significant digits (6 for FLOAT) equals the float
//!   nearest to it, because a double holds that many digits faithfully (no two such decimals share a
//!   nearest double, so no difference can hide behind it). `0.1` equals DOUBLE `0.1`, while
//!   `12345678901234567.89` differs from `12345678901234568` and `9007199254740993` from
//!   `9007199254740992`;
//! - DATETIME, TIMESTAMP and DATE compare as instants with microseconds, TIME as a signed duration, so
//!   the number of fractional digits a column declares does not matter (`.5` equals `.500000`);
//! - JSON compares as JSON values: key order, whitespace and `1` vs `1.0` do not matter;
//! - NULL equals NULL and nothing else;
//! - everything else (CHAR, VARCHAR, TEXT, BLOB, BINARY, ENUM, SET, BIT) compares byte for byte, whatever
//!   the column's collation says, because a collation that calls `a` and `A` equal would hide a real
//!   difference in the migrated data.
//!
//! Values arrive typed from the binary protocol, but every kind also accepts its text form, so rows read
//! through the text protocol or decoded from a binlog compare the same way.

use crate::mysql::kind::Kind;
use mysql_async::Value;
use std::borrow::Cow;

/// A value in its canonical form for one kind.
#[derive(Debug)]
enum Canon<'a> {
    Null,
    /// exact decimal text: no sign on zero, no leading zeros, no trailing fractional zeros
    Num(String),
    /// the value, and whether it is single precision (a FLOAT, widened exactly)
    Float(f64, bool),
    /// (year, month, day, hour, minute, second, microsecond)
    Instant((u16, u8, u8, u8, u8, u8, u32)),
    /// signed microseconds
    Duration(i128),
    Json(serde_json::Value),
    Bytes(Cow<'a, [u8]>),
}

/// The outcome of comparing one row on the base side with the same key on the other side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Equal,
    /// on the base side, not on the other
    TargetMissing,
    /// on the other side, not on the base
    BaseMissing,
    /// on both sides; the indexes of the compared columns that differ
    Neq(Vec<usize>),
}

/// Compares the compared columns of two rows. `kinds[i]` is (base kind, other kind) of column `i`;
/// `base[i]` and `other[i]` are its values.
pub fn compare_rows(kinds: &[(Kind, Kind)], base: Option<&[Value]>, other: Option<&[Value]>) -> Outcome {
    match (base, other) {
        (None, None) => Outcome::Equal,
        (Some(_), None) => Outcome::TargetMissing,
        (None, Some(_)) => Outcome::BaseMissing,
        (Some(b), Some(o)) => {
            let differing: Vec<usize> = kinds
                .iter()
                .enumerate()
                .filter(|(i, (kb, ko))| match (b.get(*i), o.get(*i)) {
                    (Some(vb), Some(vo)) => !values_equal(vb, *kb, vo, *ko),
                    (None, None) => false,
                    _ => true,
                })
                .map(|(i, _)| i)
                .collect();
            if differing.is_empty() {
                Outcome::Equal
            } else {
                Outcome::Neq(differing)
            }
        }
    }
}

/// True when `a` (of kind `ka`) and `b` (of kind `kb`) mean the same value.
pub fn values_equal(a: &Value, ka: Kind, b: &Value, kb: Kind) -> bool {
    // Identical values mean the same thing under every rule below; most rows take this path.
    if a == b {
        return true;
    }
    // JSON on either side decides the interpretation: a JSON column migrated to TEXT still holds JSON.
    let (ka, kb) = if ka == Kind::Json || kb == Kind::Json { (Kind::Json, Kind::Json) } else { (ka, kb) };
    match (canon(a, ka), canon(b, kb)) {
        (Canon::Null, Canon::Null) => true,
        (Canon::Num(x), Canon::Num(y)) => x == y,
        (Canon::Float(x, _), Canon::Float(y, _)) => x == y,
        (Canon::Instant(x), Canon::Instant(y)) => x == y,
        (Canon::Duration(x), Canon::Duration(y)) => x == y,
        (Canon::Json(x), Canon::Json(y)) => json_equal(&x, &y),
        (Canon::Bytes(x), Canon::Bytes(y)) => x == y,
        // Numbers against floats (a DECIMAL or BIGINT migrated to DOUBLE): exactly, see the module doc.
        (Canon::Num(x), Canon::Float(y, single)) | (Canon::Float(y, single), Canon::Num(x)) => {
            decimal_equals_float(&x, y, single)
        }
        // Any other pair of different shapes (e.g. a value that did not parse as its kind, which
        // falls back to bytes) is equal only if the text is identical.
        (x, y) => matches!((text_of(&x), text_of(&y)), (Some(p), Some(q)) if p == q),
    }
}

fn text_of(c: &Canon<'_>) -> Option<Vec<u8>> {
    match c {
        Canon::Bytes(b) => Some(b.to_vec()),
        Canon::Num(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

fn canon(v: &Value, kind: Kind) -> Canon<'_> {
    if let Value::NULL = v {
        return Canon::Null;
    }
    match kind {
        Kind::Int | Kind::Decimal => match v {
            Value::Int(i) => Canon::Num(i.to_string()),
            Value::UInt(u) => Canon::Num(u.to_string()),
            Value::Bytes(b) => match std::str::from_utf8(b).ok().and_then(normalize_decimal) {
                Some(s) => Canon::Num(s),
                None => Canon::Bytes(Cow::Borrowed(b)),
            },
            Value::Float(f) => Canon::Float(f64::from(*f), true),
            Value::Double(d) => Canon::Float(*d, false),
            other => canon(other, Kind::Bytes),
        },
        Kind::Float | Kind::Double => match v {
            Value::Float(f) => Canon::Float(f64::from(*f), true),
            Value::Double(d) => Canon::Float(*d, false),
            // An integer in a float column stays exact (`as f64` would round above 2^53).
            Value::Int(i) => Canon::Num(i.to_string()),
            Value::UInt(u) => Canon::Num(u.to_string()),
            Value::Bytes(b) => match std::str::from_utf8(b).ok().and_then(|s| s.trim().parse::<f64>().ok()) {
                Some(f) if kind == Kind::Float => Canon::Float(f64::from(f as f32), true),
                Some(f) => Canon::Float(f, false),
                None => Canon::Bytes(Cow::Borrowed(b)),
            },
            other => canon(other, Kind::Bytes),
        },
        Kind::DateTime => match v {
            Value::Date(y, mo, d, h, mi, s, us) => Canon::Instant((*y, *mo, *d, *h, *mi, *s, *us)),
            Value::Bytes(b) => match std::str::from_utf8(b).ok().and_then(parse_datetime) {
                Some(t) => Canon::Instant(t),
                None => Canon::Bytes(Cow::Borrowed(b)),
            },
            other => canon(other, Kind::Bytes),
        },
        Kind::Time => match v {
            Value::Time(neg, d, h, mi, s, us) => Canon::Duration(time_micros(*neg, *d, *h, *mi, *s, *us)),
            Value::Bytes(b) => match std::str::from_utf8(b).ok().and_then(parse_time) {
                Some(t) => Canon::Duration(t),
                None => Canon::Bytes(Cow::Borrowed(b)),
            },
            other => canon(other, Kind::Bytes),
        },
        Kind::Json => match v {
            Value::Bytes(b) => match serde_json::from_slice::<serde_json::Value>(b) {
                Ok(j) => Canon::Json(j),
                Err(_) => Canon::Bytes(Cow::Borrowed(b)),
            },
            Value::Int(i) => Canon::Json((*i).into()),
            Value::UInt(u) => Canon::Json((*u).into()),
            Value::Double(d) => Canon::Json(serde_json::Value::from(*d)),
            other => canon(other, Kind::Bytes),
        },
        Kind::Bytes => match v {
            Value::Bytes(b) => Canon::Bytes(Cow::Borrowed(b)),
            // A typed value in a byte-compared column: compare its text form.
            Value::Int(i) => Canon::Bytes(Cow::Owned(i.to_string().into_bytes())),
            Value::UInt(u) => Canon::Bytes(Cow::Owned(u.to_string().into_bytes())),
            Value::Float(f) => Canon::Bytes(Cow::Owned(f.to_string().into_bytes())),
            Value::Double(d) => Canon::Bytes(Cow::Owned(d.to_string().into_bytes())),
            Value::Date(..) | Value::Time(..) => {
                Canon::Bytes(Cow::Owned(crate::key::KeyVal::from(v).to_string().into_bytes()))
            }
            Value::NULL => Canon::Null,
        },
    }
}

fn time_micros(neg: bool, days: u32, h: u8, mi: u8, s: u8, us: u32) -> i128 {
    let m = ((i128::from(days) * 24 + i128::from(h)) * 3600 + i128::from(mi) * 60 + i128::from(s)) * 1_000_000
        + i128::from(us);
    if neg {
        -m
    } else {
        m
    }
}

/// True when the normalised decimal `d` means the float `y` (`single`: a FLOAT widened to f64): `y` is
/// exactly `d`, or `d` has at most 15 (FLOAT: 6) significant digits and `y` is the float nearest to it.
fn decimal_equals_float(d: &str, y: f64, single: bool) -> bool {
    if !y.is_finite() {
        return false;
    }
    // Either rule needs `y` to be the float nearest to `d` (an exact value is its own nearest); this
    // cheap test settles most pairs. Rust's parse rounds correctly.
    let nearest =
        if single { d.parse::<f32>().is_ok_and(|p| f64::from(p) == y) } else { d.parse::<f64>().is_ok_and(|p| p == y) };
    if !nearest {
        return false;
    }
    let (faithful_digits, normal) =
        if single { (f32::DIGITS, (y as f32).is_normal()) } else { (f64::DIGITS, y.is_normal()) };
    if (normal || y == 0.0) && significant_digits(d) <= faithful_digits as usize {
        return true;
    }
    exact_decimal(y).is_some_and(|x| x == d)
}

/// Significant digits of decimal text (`-0.00120` has 2, `1200` has 2).
fn significant_digits(d: &str) -> usize {
    let digits: String = d.chars().filter(char::is_ascii_digit).collect();
    digits.trim_start_matches('0').trim_end_matches('0').len()
}

/// The exact decimal value of a finite double, normalised like [`normalize_decimal`] (every double is
/// `m * 2^e`, a finite decimal). `None` for NaN and infinities.
pub fn exact_decimal(y: f64) -> Option<String> {
    if !y.is_finite() {
        return None;
    }
    let bits = y.to_bits();
    let neg = bits >> 63 == 1;
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    // y = m * 2^e
    let (mut m, mut e) = if exp == 0 { (frac, -1074) } else { (frac | (1u64 << 52), exp - 1075) };
    if m == 0 {
        return Some("0".into());
    }
    while m % 2 == 0 && e < 0 {
        m /= 2;
        e += 1;
    }
    // Little-endian limbs of base 10^9.
    const BASE: u64 = 1_000_000_000;
    let mut limbs: Vec<u64> = Vec::new();
    let mut rest = m;
    while rest > 0 {
        limbs.push(rest % BASE);
        rest /= BASE;
    }
    let mul = |limbs: &mut Vec<u64>, f: u64| {
        let mut carry = 0u64;
        for l in limbs.iter_mut() {
            let p = *l * f + carry;
            *l = p % BASE;
            carry = p / BASE;
        }
        while carry > 0 {
            limbs.push(carry % BASE);
            carry /= BASE;
        }
    };
    // m * 2^e for e >= 0; for e < 0, m * 5^-e shifted -e decimal places (m / 2^k = m * 5^k / 10^k).
    let (mut left, factor_max, factor_one, chunk) =
        if e >= 0 { (e, 1u64 << 29, 2u64, 29) } else { (-e, 1_220_703_125u64, 5u64, 13) };
    while left >= chunk {
        mul(&mut limbs, factor_max);
        left -= chunk;
    }
    for _ in 0..left {
        mul(&mut limbs, factor_one);
    }
    let mut digits = String::with_capacity(limbs.len() * 9);
    for (i, l) in limbs.iter().rev().enumerate() {
        if i == 0 {
            digits.push_str(&l.to_string());
        } else {
            digits.push_str(&format!("{l:09}"));
        }
    }
    let text = if e >= 0 {
        digits
    } else {
        let shift = (-e) as usize;
        let padded =
            if digits.len() <= shift { format!("{}{digits}", "0".repeat(shift + 1 - digits.len())) } else { digits };
        let (int, fr) = padded.split_at(padded.len() - shift);
        format!("{int}.{fr}")
    };
    normalize_decimal(&format!("{}{text}", if neg { "-" } else { "" }))
}

/// Normalises decimal text: `-0012.3400` → `-12.34`, `0.000` → `0`, `+5` → `5`. None if not a number.
pub fn normalize_decimal(s: &str) -> Option<String> {
    let s = s.trim();
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut out = String::with_capacity(int.len() + frac.len() + 3);
    if int.is_empty() && frac.is_empty() {
        return Some("0".into());
    }
    if neg {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

/// Parses `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` (also with `T`).
fn parse_datetime(s: &str) -> Option<(u16, u8, u8, u8, u8, u8, u32)> {
    let s = s.trim();
    let (date, time) = match s.find([' ', 'T']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut d = date.split('-');
    let y = d.next()?.parse().ok()?;
    let mo = d.next()?.parse().ok()?;
    let day = d.next()?.parse().ok()?;
    if d.next().is_some() {
        return None;
    }
    let (h, mi, sec, us) = match time {
        None => (0, 0, 0, 0),
        Some(t) => {
            let micros = parse_time(t)?;
            if !(0..86_400_000_000).contains(&micros) {
                return None;
            }
            let secs = (micros / 1_000_000) as u32;
            ((secs / 3600) as u8, (secs / 60 % 60) as u8, (secs % 60) as u8, (micros % 1_000_000) as u32)
        }
    };
    Some((y, mo, day, h, mi, sec, us))
}

/// Parses `[-]HHH:MM:SS[.ffffff]` to signed microseconds.
fn parse_time(s: &str) -> Option<i128> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let mut parts = hms.split(':');
    let h: i128 = parts.next()?.parse().ok()?;
    let m: i128 = parts.next()?.parse().ok()?;
    let sec: i128 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || frac.len() > 6 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut us: i128 = 0;
    for (i, c) in frac.bytes().enumerate() {
        us += i128::from(c - b'0') * 10i128.pow(5 - i as u32);
    }
    let total = ((h * 60 + m) * 60 + sec) * 1_000_000 + us;
    Some(if neg { -total } else { total })
}

/// JSON equality by value: objects ignore key order, numbers compare numerically (`1` equals `1.0`).
pub fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x == y;
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x == y;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            }
        }
        (J::Array(x), J::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q)),
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

pub mod digest;

#[cfg(test)]
mod tests;
