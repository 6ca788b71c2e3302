//! Row images straight from rows-event bytes. `mysql_common`'s row parser decodes, and allocates, every
//! value of every row with its column metadata; binlog mode needs the key, and later every value. This
//! walks each image by the columns' encoded lengths and decodes only the columns asked for, each
//! normalised ([`super::normal`]) by [`value`], the one decoder the keys and the images share. Anything
//! it does not know (a partial JSON update, an unknown column type) returns `None` and the caller uses
//! the full parser.

use super::shape::{pair_keys, DecodeError, Image, TableShape};
use crate::key::{Key, KeyVal};
use mysql_async::binlog::events::RowsEventData;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::Value;
use mysql_common::io::ParseBuf;
use mysql_common::proto::MyDeserialize;

/// Bytes of a DECIMAL with this many digits in one part (integer or fraction).
fn decimal_part(digits: usize) -> usize {
    const REST: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
    digits / 9 * 4 + REST[digits % 9]
}

fn le(data: &[u8], n: usize) -> Option<usize> {
    Some(data.get(..n)?.iter().rev().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
}

/// The encoded length of one non-NULL value, length prefix included.
pub fn value_len(t: ColumnType, meta: &[u8], data: &[u8]) -> Option<usize> {
    use ColumnType::*;
    let m0 = || meta.first().copied().map(usize::from);
    let m1 = || meta.get(1).copied().map(usize::from);
    let prefixed = |max: usize| -> Option<usize> {
        let n = if max < 256 { 1 } else { 2 };
        Some(n + le(data, n)?)
    };
    Some(match t {
        MYSQL_TYPE_TINY | MYSQL_TYPE_YEAR => 1,
        MYSQL_TYPE_SHORT => 2,
        MYSQL_TYPE_INT24 | MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE | MYSQL_TYPE_TIME => 3,
        MYSQL_TYPE_LONG | MYSQL_TYPE_FLOAT | MYSQL_TYPE_TIMESTAMP => 4,
        MYSQL_TYPE_LONGLONG | MYSQL_TYPE_DOUBLE | MYSQL_TYPE_DATETIME => 8,
        MYSQL_TYPE_TIMESTAMP2 => 4 + m0()?.div_ceil(2),
        MYSQL_TYPE_DATETIME2 => 5 + m0()?.div_ceil(2),
        MYSQL_TYPE_TIME2 => 3 + m0()?.div_ceil(2),
        MYSQL_TYPE_NEWDECIMAL => {
            let (precision, scale) = (m0()?, m1()?);
            decimal_part(precision.checked_sub(scale)?) + decimal_part(scale)
        }
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => prefixed(m0()? | (m1()? << 8))?,
        MYSQL_TYPE_BIT => m1()? + usize::from(m0()? > 0),
        // The table map's real type (its metadata: the real type, then the pack length).
        MYSQL_TYPE_ENUM | MYSQL_TYPE_SET => m1()?,
        MYSQL_TYPE_STRING => {
            let (real, b1) = (m0()?, m1()?);
            if real == MYSQL_TYPE_ENUM as usize || real == MYSQL_TYPE_SET as usize {
                b1
            } else {
                let max = if real & 0x30 != 0x30 { b1 | (((real & 0x30) ^ 0x30) << 4) } else { b1 };
                prefixed(max)?
            }
        }
        MYSQL_TYPE_BLOB
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_GEOMETRY
        | MYSQL_TYPE_JSON
        | MYSQL_TYPE_VECTOR => {
            let n = m0()?;
            n + le(data, n)?
        }
        _ => return None,
    })
}

/// One non-NULL value of column `col` from its encoded bytes, normalised; `None` when it cannot be
/// decoded here (a partial JSON update).
pub fn value(shape: &TableShape, col: usize, t: ColumnType, meta: &[u8], bytes: &[u8]) -> Option<Value> {
    if t == ColumnType::MYSQL_TYPE_TIME2 {
        return super::normal::time2(bytes, meta.first().copied().unwrap_or(0));
    }
    let ctx = (t, meta, shape.is_unsigned(col), false);
    match BinlogValue::deserialize(ctx, &mut ParseBuf(bytes)).ok()? {
        BinlogValue::Value(v) => Some(shape.fix(col, v)),
        // MySQL's binary JSON, as text through the JSON DOM (which also renders opaque values).
        BinlogValue::Jsonb(v) => {
            let dom = v.parse().ok()?;
            Some(Value::Bytes(serde_json::Value::from(dom).to_string().into_bytes()))
        }
        BinlogValue::JsonDiff(_) => None,
    }
}

/// Walks the rows of a rows event: for each row change, its before and after image, each decoded by
/// `image` (given which columns the image holds) from the front of the remaining bytes. `None` when this
/// event needs the full parser.
fn walk<T>(
    ev: &RowsEventData<'_>,
    shape: &TableShape,
    mut image: impl FnMut(&mut &[u8], &Columns) -> Option<T>,
    mut row: impl FnMut(Option<T>, Option<T>) -> Option<()>,
) -> Option<()> {
    let n = shape.names.len();
    if matches!(ev, RowsEventData::PartialUpdateRowsEvent(_)) || ev.num_columns() as usize != n {
        return None;
    }
    let before = ev.columns_before_image().map(|bits| Columns::new(n, |i| bits.get(i).is_some_and(|x| *x)));
    let after = ev.columns_after_image().map(|bits| Columns::new(n, |i| bits.get(i).is_some_and(|x| *x)));
    let mut buf = ev.rows_data();
    while !buf.is_empty() {
        let b = match &before {
            Some(cols) => Some(image(&mut buf, cols)?),
            None => None,
        };
        let a = match &after {
            Some(cols) => Some(image(&mut buf, cols)?),
            None => None,
        };
        row(b, a)?;
    }
    Some(())
}

/// The columns a row image holds (the event's column bitmap, read once per event).
struct Columns {
    present: Vec<bool>,
    count: usize,
}

impl Columns {
    fn new(n: usize, present: impl Fn(usize) -> bool) -> Columns {
        let present: Vec<bool> = (0..n).map(present).collect();
        let count = present.iter().filter(|p| **p).count();
        Columns { present, count }
    }
}

/// The keys of a rows event, or `None` when this event needs the full parser.
pub fn keys(
    ev: &RowsEventData<'_>,
    shape: &TableShape,
    key_cols: &[String],
) -> Option<Result<(Vec<Key>, u64), DecodeError>> {
    if !shape.named {
        return None;
    }
    let key_idx: Vec<usize> = key_cols.iter().map(|c| shape.index_of(c)).collect::<Option<_>>()?;
    // A JSON key (never a real one: JSON cannot be indexed) is the full parser's to refuse.
    if key_idx.iter().any(|k| matches!(shape.column_type(*k), Some((ColumnType::MYSQL_TYPE_JSON, _)))) {
        return None;
    }
    let mut keys = Vec::new();
    let mut changes = 0;
    let mut failed = None;
    let key_of = |buf: &mut &[u8], cols: &Columns| -> Option<Option<Key>> {
        let img = decode_image(buf, cols, shape, &|c| key_idx.contains(&c))?;
        let parts: Option<Vec<KeyVal>> = key_idx.iter().map(|k| img[*k].as_ref().map(KeyVal::from)).collect();
        Some(parts.map(Key))
    };
    walk(ev, shape, key_of, |b, a| {
        changes += 1;
        if let Err(e) = pair_keys(shape, key_cols, b.flatten(), a.flatten(), &mut keys) {
            failed.get_or_insert(e);
        }
        Some(())
    })?;
    Some(match failed {
        Some(e) => Err(e),
        None => Ok((keys, changes)),
    })
}

/// Every row change of a rows event as its (before, after) images, every value decoded and normalised;
/// `None` when this event needs the full parser.
#[allow(clippy::type_complexity)]
pub fn images(ev: &RowsEventData<'_>, shape: &TableShape) -> Option<Vec<(Option<Image>, Option<Image>)>> {
    images_of(ev, shape, &|_| true)
}

/// [`images`] with only the columns `wanted` says decoded (the others `None`), as binlog mode takes
/// the key and compared columns.
#[allow(clippy::type_complexity)]
pub fn images_of(
    ev: &RowsEventData<'_>,
    shape: &TableShape,
    wanted: &dyn Fn(usize) -> bool,
) -> Option<Vec<(Option<Image>, Option<Image>)>> {
    let mut out = Vec::new();
    walk(
        ev,
        shape,
        |buf, present| decode_image(buf, present, shape, wanted),
        |b, a| {
            out.push((b, a));
            Some(())
        },
    )?;
    Some(out)
}

/// Reads one row image from the front of `buf`, decoding the columns `wanted` says; the others (and
/// those the image leaves out) are `None`, NULL is `Some(NULL)`. `None` when the image cannot be walked.
fn decode_image(buf: &mut &[u8], cols: &Columns, shape: &TableShape, wanted: &dyn Fn(usize) -> bool) -> Option<Image> {
    let nulls = buf.get(..cols.count.div_ceil(8))?;
    let mut rest = &buf[nulls.len()..];
    let mut out: Image = vec![None; cols.present.len()];
    let mut p = 0;
    for ((col, slot), present) in out.iter_mut().enumerate().zip(&cols.present) {
        if !present {
            continue;
        }
        let is_null = nulls[p / 8] & (1 << (p % 8)) != 0;
        p += 1;
        if is_null {
            *slot = Some(Value::NULL);
            continue;
        }
        let (t, meta) = shape.column_type(col)?;
        let len = value_len(t, meta, rest)?;
        let bytes = rest.get(..len)?;
        if wanted(col) {
            *slot = Some(value(shape, col, t, meta, bytes)?);
        }
        rest = &rest[len..];
    }
    *buf = rest;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        use ColumnType::*;
        assert_eq!(value_len(MYSQL_TYPE_NEWDECIMAL, &[12, 2], &[]), Some(6)); // 10 int digits: 4+1, 2 frac: 1
        assert_eq!(value_len(MYSQL_TYPE_NEWDECIMAL, &[20, 6], &[]), Some(10));
        assert_eq!(value_len(MYSQL_TYPE_VARCHAR, &[100, 0], &[3, b'a', b'b', b'c']), Some(4));
        assert_eq!(value_len(MYSQL_TYPE_VARCHAR, &[0, 4], &[3, 0, b'a', b'b', b'c']), Some(5));
        assert_eq!(value_len(MYSQL_TYPE_DATETIME2, &[6], &[]), Some(8));
        assert_eq!(value_len(MYSQL_TYPE_TIME2, &[0], &[]), Some(3));
        assert_eq!(value_len(MYSQL_TYPE_BLOB, &[2], &[5, 0]), Some(7));
        assert_eq!(value_len(MYSQL_TYPE_BIT, &[2, 1], &[]), Some(2));
        assert_eq!(value_len(MYSQL_TYPE_STRING, &[MYSQL_TYPE_ENUM as u8, 1], &[]), Some(1));
        assert_eq!(value_len(MYSQL_TYPE_VARCHAR, &[100, 0], &[]), None, "truncated data is not walked");
    }
}
