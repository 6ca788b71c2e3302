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
    fn comparison_is_symmetric(x in any::<i32>(), y in any::<i32>()) {
        let (a, c) = (b(&x.to_string()), Value::Int(i64::from(y)));
        prop_assert_eq!(values_equal(&a, Kind::Decimal, &c, Kind::Int), values_equal(&c, Kind::Int, &a, Kind::Decimal));
        prop_assert_eq!(values_equal(&a, Kind::Decimal, &c, Kind::Int), x == y);
    }
}
