use super::*;
use proptest::prelude::*;

fn b(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

#[test]
fn integers_of_different_widths_and_decimals_of_different_scales() {
    assert!(values_equal(&Value::Int(5), Kind::Int, &Value::UInt(5), Kind::Int));
    assert!(values_equal(&Value::Int(5), Kind::Int, &b("5.000"), Kind::Decimal));
    assert!(values_equal(&b("12.30"), Kind::Decimal, &b("12.3"), Kind::Decimal));
    assert!(values_equal(&b("-0.00"), Kind::Decimal, &b("0"), Kind::Decimal));
    assert!(!values_equal(&b("12.31"), Kind::Decimal, &b("12.3"), Kind::Decimal));
    assert!(!values_equal(&Value::Int(-1), Kind::Int, &Value::UInt(u64::MAX), Kind::Int));
    assert!(values_equal(&Value::UInt(u64::MAX), Kind::Int, &b("18446744073709551615"), Kind::Int));
}

#[test]
fn floats_and_doubles() {
    assert!(values_equal(&Value::Float(1.5), Kind::Float, &Value::Double(1.5), Kind::Double));
    assert!(values_equal(&Value::Float(0.1), Kind::Float, &b("0.1"), Kind::Float));
    assert!(!values_equal(&Value::Double(0.1), Kind::Double, &Value::Double(0.2), Kind::Double));
    assert!(values_equal(&Value::Double(-0.0), Kind::Double, &Value::Double(0.0), Kind::Double));
}

#[test]
fn temporal_values_ignore_declared_fractional_digits() {
    let a = Value::Date(2026, 11, 21, 10, 0, 0, 500_000);
    assert!(values_equal(&a, Kind::DateTime, &b("2026-11-21 10:00:00.5"), Kind::DateTime));
    assert!(values_equal(&a, Kind::DateTime, &b("2026-11-21 10:00:00.500000"), Kind::DateTime));
    assert!(!values_equal(&a, Kind::DateTime, &b("2026-11-21 10:00:00.500001"), Kind::DateTime));
    let t = Value::Time(true, 1, 2, 3, 4, 500);
    assert!(values_equal(&t, Kind::Time, &b("-26:03:04.0005"), Kind::Time));
    assert!(!values_equal(&t, Kind::Time, &b("26:03:04.0005"), Kind::Time));
    assert!(values_equal(&Value::Date(2026, 1, 2, 0, 0, 0, 0), Kind::DateTime, &b("2026-01-02"), Kind::DateTime));
}

#[test]
fn json_by_value() {
    assert!(values_equal(&b(r#"{"a":1,"b":[1,2]}"#), Kind::Json, &b(r#"{ "b": [1, 2], "a": 1.0 }"#), Kind::Json));
    assert!(!values_equal(&b(r#"{"a":1}"#), Kind::Json, &b(r#"{"a":"1"}"#), Kind::Json));
    assert!(!values_equal(&b(r#"[1,2]"#), Kind::Json, &b(r#"[2,1]"#), Kind::Json));
    // A JSON column migrated to TEXT still compares as JSON.
    assert!(values_equal(&b(r#"{"a":1}"#), Kind::Json, &b(r#"{"a": 1}"#), Kind::Bytes));
}

#[test]
fn strings_are_byte_exact_whatever_the_collation() {
    assert!(!values_equal(&b("abc"), Kind::Bytes, &b("ABC"), Kind::Bytes));
    assert!(!values_equal(&b("a"), Kind::Bytes, &b("a "), Kind::Bytes));
    assert!(!values_equal(&Value::Bytes(vec![0, 0xff]), Kind::Bytes, &Value::Bytes(vec![0, 0xfe]), Kind::Bytes));
    assert!(values_equal(&b("😀键"), Kind::Bytes, &b("😀键"), Kind::Bytes));
}

#[test]
fn null_equals_only_null() {
    for k in [Kind::Int, Kind::Decimal, Kind::Float, Kind::DateTime, Kind::Time, Kind::Json, Kind::Bytes] {
        assert!(values_equal(&Value::NULL, k, &Value::NULL, k));
        assert!(!values_equal(&Value::NULL, k, &b("0"), k), "{k:?}");
        assert!(!values_equal(&b(""), k, &Value::NULL, k), "{k:?}");
    }
}

#[test]
fn unlike_shapes_are_different() {
    assert!(!values_equal(
        &Value::Date(2026, 1, 1, 0, 0, 0, 0),
        Kind::DateTime,
        &Value::Time(false, 0, 0, 0, 0, 0),
        Kind::Time
    ));
}

#[test]
fn rows() {
    let kinds = [(Kind::Int, Kind::Int), (Kind::Bytes, Kind::Bytes), (Kind::Json, Kind::Json)];
    let r1 = [Value::Int(1), b("x"), b("{}")];
    let r2 = [Value::UInt(1), b("y"), b("[]")];
    assert_eq!(compare_rows(&kinds, Some(&r1), Some(&r1)), Outcome::Equal);
    assert_eq!(compare_rows(&kinds, Some(&r1), Some(&r2)), Outcome::Neq(vec![1, 2]));
    assert_eq!(compare_rows(&kinds, Some(&r1), None), Outcome::TargetMissing);
    assert_eq!(compare_rows(&kinds, None, Some(&r1)), Outcome::BaseMissing);
}

#[test]
fn decimal_normalisation_rejects_garbage() {
    assert_eq!(normalize_decimal("+0012.3400").as_deref(), Some("12.34"));
    assert_eq!(normalize_decimal(".5").as_deref(), Some("0.5"));
    assert_eq!(normalize_decimal("1e5"), None);
    assert_eq!(normalize_decimal("-"), None);
    assert_eq!(normalize_decimal("."), None);
}

#[test]
fn numbers_against_floats_compare_exactly() {
    // The issue's pairs: equal through f64, different in fact.
    assert!(!values_equal(
        &b("12345678901234567.89"),
        Kind::Decimal,
        &Value::Double(12345678901234568.0),
        Kind::Double
    ));
    assert!(!values_equal(&Value::Int(9007199254740993), Kind::Int, &Value::Double(9007199254740992.0), Kind::Double));
    assert!(!values_equal(&Value::UInt(9007199254740993), Kind::Int, &b("9007199254740992"), Kind::Double));
    assert!(!values_equal(&Value::Double(9007199254740992.0), Kind::Double, &Value::Int(9007199254740993), Kind::Int));
    assert!(values_equal(&Value::Int(9007199254740992), Kind::Int, &Value::Double(9007199254740992.0), Kind::Double));
    // An integer in a float column is not rounded either.
    assert!(!values_equal(
        &Value::Int(9007199254740993),
        Kind::Double,
        &Value::Double(9007199254740992.0),
        Kind::Double
    ));
    // A decimal a double holds faithfully (at most 15 significant digits) equals its nearest double.
    assert!(values_equal(&b("0.10"), Kind::Decimal, &Value::Double(0.1), Kind::Double));
    assert!(values_equal(&b("1234567890123.45"), Kind::Decimal, &Value::Double(1234567890123.45), Kind::Double));
    assert!(!values_equal(&b("0.11"), Kind::Decimal, &Value::Double(0.1), Kind::Double));
    // The exact decimal of the double is equal too; one digit more is not.
    assert!(values_equal(
        &b("0.1000000000000000055511151231257827021181583404541015625"),
        Kind::Decimal,
        &Value::Double(0.1),
        Kind::Double
    ));
    assert!(!values_equal(
        &b("0.10000000000000000555111512312578270211815834045410156251"),
        Kind::Decimal,
        &Value::Double(0.1),
        Kind::Double
    ));
    // FLOAT holds 6 digits faithfully.
    assert!(values_equal(&b("0.1"), Kind::Decimal, &Value::Float(0.1), Kind::Float));
    assert!(!values_equal(&b("16777217"), Kind::Decimal, &Value::Float(16777216.0), Kind::Float));
    assert!(!values_equal(&Value::Int(1), Kind::Int, &Value::Double(f64::NAN), Kind::Double));
}

#[test]
fn exact_decimals_of_doubles() {
    assert_eq!(exact_decimal(0.1).unwrap(), "0.1000000000000000055511151231257827021181583404541015625");
    assert_eq!(exact_decimal(-2.5).unwrap(), "-2.5");
    assert_eq!(exact_decimal(-0.0).unwrap(), "0");
    assert_eq!(exact_decimal(2f64.powi(70)).unwrap(), "1180591620717411303424");
    assert_eq!(exact_decimal(5e-324).unwrap().len(), 2 + 323 + 751);
    assert_eq!(exact_decimal(f64::INFINITY), None);
}

/// `d` (a decimal with `scale` fractional digits, as the integer `n`) is exactly the double `y`,
/// decided in integer arithmetic: `n / 10^scale == m * 2^e`.
fn exactly(n: i128, scale: u32, y: f64) -> bool {
    if y == 0.0 {
        return n == 0;
    }
    let bits = y.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = (bits & ((1u64 << 52) - 1)) as i128;
    let (m, e) = if exp == 0 { (frac, -1074) } else { (frac | (1i128 << 52), exp - 1075) };
    let m = if y < 0.0 { -m } else { m };
    let ten = 10i128.pow(scale);
    // n * 2^-e == m * 10^scale   (e < 0)   or   n == m * 2^e * 10^scale   (e >= 0)
    if e < 0 {
        // Past 2^120 the left side outgrows anything the right side (below 2^60) can be.
        if -e > 120 {
            return false;
        }
        n.checked_mul(1i128 << -e) == m.checked_mul(ten)
    } else {
        m.checked_mul(1i128 << e).and_then(|x| x.checked_mul(ten)) == Some(n)
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z😀]{0,6}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Re-serialises with object keys in reverse order and spaces, to mimic another server's layout.
fn reorder(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .rev()
                .map(|(k, v)| format!("{} : {}", serde_json::to_string(k).unwrap(), reorder(v)))
                .collect();
            format!("{{ {} }}", parts.join(" , "))
        }
        serde_json::Value::Array(a) => format!("[ {} ]", a.iter().map(reorder).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

proptest! {
    #[test]
    fn integers_equal_across_widths(x in any::<i64>()) {
        prop_assert!(values_equal(&Value::Int(x), Kind::Int, &b(&x.to_string()), Kind::Decimal));
        if x >= 0 {
            prop_assert!(values_equal(&Value::Int(x), Kind::Int, &Value::UInt(x as u64), Kind::Int));
        }
    }

    #[test]
    fn decimal_scale_does_not_matter(int in any::<i64>(), frac in 0u32..1_000_000, pad in 0usize..6) {
        let text = format!("{int}.{frac:06}");
        let padded = format!("{text}{}", "0".repeat(pad));
        prop_assert!(values_equal(&b(&text), Kind::Decimal, &b(&padded), Kind::Decimal));
        let bumped = format!("{int}.{:06}", (frac + 1) % 1_000_000);
        prop_assert!(!values_equal(&b(&text), Kind::Decimal, &b(&bumped), Kind::Decimal));
    }

    #[test]
    fn json_layout_does_not_matter(v in json_value()) {
        let a = serde_json::to_string(&v).unwrap();
        let r = reorder(&v);
        prop_assert!(values_equal(&b(&a), Kind::Json, &b(&r), Kind::Json));
    }

    #[test]
    fn different_bytes_always_differ(x in prop::collection::vec(any::<u8>(), 0..32), y in prop::collection::vec(any::<u8>(), 0..32)) {
        prop_assert_eq!(values_equal(&Value::Bytes(x.clone()), Kind::Bytes, &Value::Bytes(y.clone()), Kind::Bytes), x == y);
    }

    #[test]
    fn datetime_text_and_binary_agree(y in 1000u16..9999, mo in 1u8..=12, d in 1u8..=28, h in 0u8..24, mi in 0u8..60, s in 0u8..60, us in 0u32..1_000_000) {
        let v = Value::Date(y, mo, d, h, mi, s, us);
        let text = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}");
        prop_assert!(values_equal(&v, Kind::DateTime, &b(&text), Kind::DateTime));
        prop_assert!(values_equal(&b(&text), Kind::DateTime, &v, Kind::DateTime));
    }

    #[test]
    fn integers_against_doubles_are_exact(x in any::<i64>(), u in any::<u64>(), nudge in -3i64..=3) {
        let y = x.saturating_add(nudge) as f64;
        // An integral double below 2^64 converts to i128 exactly; an integer of at most 15 significant
        // digits also equals the double nearest to it (the compare core's rule for DECIMAL → DOUBLE).
        let short = |digits: String| digits.trim_end_matches('0').len() <= 15;
        let expected = y as i128 == i128::from(x) || (short(x.unsigned_abs().to_string()) && y == x as f64);
        prop_assert_eq!(values_equal(&Value::Int(x), Kind::Int, &Value::Double(y), Kind::Double), expected);
        prop_assert_eq!(values_equal(&Value::Double(y), Kind::Double, &Value::Int(x), Kind::Int), expected);
        let z = u as f64;
        let expected = z as u128 == u128::from(u) || short(u.to_string());
        prop_assert_eq!(values_equal(&Value::UInt(u), Kind::Int, &Value::Double(z), Kind::Double), expected);
    }

    #[test]
    fn decimals_against_doubles_across_widths(int in any::<i64>(), frac in 0u32..100, width in 1u32..19) {
        // A DECIMAL(width+2, 2) value and the double the server stores for it.
        let int = int % 10i64.pow(width);
        let sign = if int < 0 { "-" } else { "" };
        let text = format!("{sign}{}.{frac:02}", int.unsigned_abs());
        let n = i128::from(int) * 100 + if int < 0 { -i128::from(frac) } else { i128::from(frac) };
        let y: f64 = text.parse().unwrap();
        let d = normalize_decimal(&text).unwrap();
        let faithful = significant_digits(&d) <= 15;
        prop_assert_eq!(values_equal(&b(&text), Kind::Decimal, &Value::Double(y), Kind::Double), faithful || exactly(n, 2, y), "{} vs {}", text, y);
        // The next double up is never equal.
        // The next double away from zero (the sign is its own bit, so one more is one step out).
        let up = f64::from_bits(y.to_bits() + 1);
        prop_assert!(!values_equal(&b(&text), Kind::Decimal, &Value::Double(up), Kind::Double) || exactly(n, 2, up));
    }

    #[test]
    fn every_double_equals_its_exact_decimal_only(bits in any::<u64>()) {
        let y = f64::from_bits(bits);
        prop_assume!(y.is_finite());
        let exact = exact_decimal(y).unwrap();
        prop_assert_eq!(exact.parse::<f64>().unwrap(), y);
        prop_assert!(values_equal(&b(&exact), Kind::Decimal, &Value::Double(y), Kind::Double));
        let longer = if exact.contains('.') { format!("{exact}1") } else { format!("{exact}.1") };
        prop_assert!(!values_equal(&b(&longer), Kind::Decimal, &Value::Double(y), Kind::Double), "{}", longer);
    }

    #[test]
    fn floats_equal_their_exact_decimal(bits in any::<u32>()) {
        let x = f32::from_bits(bits);
        prop_assume!(x.is_finite());
        let exact = exact_decimal(f64::from(x)).unwrap();
        prop_assert!(values_equal(&b(&exact), Kind::Decimal, &Value::Float(x), Kind::Float));
        prop_assert!(values_equal(&Value::Float(x), Kind::Float, &b(&exact), Kind::Decimal));
    }

    #[test]
    fn comparison_is_symmetric(x in any::<i32>(), y in any::<i32>()) {
        let (a, c) = (b(&x.to_string()), Value::Int(i64::from(y)));
        prop_assert_eq!(values_equal(&a, Kind::Decimal, &c, Kind::Int), values_equal(&c, Kind::Int, &a, Kind::Decimal));
        prop_assert_eq!(values_equal(&a, Kind::Decimal, &c, Kind::Int), x == y);
    }
}
