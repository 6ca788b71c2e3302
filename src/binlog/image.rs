//! Keys straight from row-image bytes. `mysql_common`'s row parser decodes, and allocates, every value of
//! every row; binlog mode needs only the key. This walks each image, skips the other columns by their
//! encoded length, and decodes only the key columns (with `mysql_common`'s own value decoder, so values
//! come out exactly as the full parser would give them). Anything it does not know (a partial JSON
//! update, an unknown column type) returns `None` and the caller uses the full parser.

use super::decode::{pair_keys, DecodeError, TableShape};
use crate::key::{Key, KeyVal};
use mysql_async::binlog::events::RowsEventData;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
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

/// The keys of a rows event, or `None` when this event needs the full parser.
pub fn keys(
    ev: &RowsEventData<'_>,
    shape: &TableShape,
    key_cols: &[String],
) -> Option<Result<(Vec<Key>, u64), DecodeError>> {
    if matches!(ev, RowsEventData::PartialUpdateRowsEvent(_)) || !shape.named {
        return None;
    }
    let key_idx: Vec<usize> = key_cols.iter().map(|c| shape.index_of(c)).collect::<Option<_>>()?;
    let n = ev.num_columns() as usize;
    if n != shape.names.len() {
        return None;
    }
    let before = ev.columns_before_image();
    let after = ev.columns_after_image();
    let mut buf = ev.rows_data();
    let mut keys = Vec::new();
    let mut changes = 0;
    while !buf.is_empty() {
        let b = match before {
            Some(bits) => image_key(&mut buf, |i| bits.get(i).is_some_and(|x| *x), n, shape, &key_idx)?,
            None => None,
        };
        let a = match after {
            Some(bits) => image_key(&mut buf, |i| bits.get(i).is_some_and(|x| *x), n, shape, &key_idx)?,
            None => None,
        };
        changes += 1;
        if let Err(e) = pair_keys(shape, key_cols, b, a, &mut keys) {
            return Some(Err(e));
        }
    }
    Some(Ok((keys, changes)))
}

/// Reads one row image from the front of `buf`; returns its key (None when the image leaves it out).
/// The outer `None` means the image could not be walked.
fn image_key(
    buf: &mut &[u8],
    present: impl Fn(usize) -> bool,
    n: usize,
    shape: &TableShape,
    key_idx: &[usize],
) -> Option<Option<Key>> {
    let count = (0..n).filter(|i| present(*i)).count();
    let nulls = buf.get(..count.div_ceil(8))?;
    let mut rest = &buf[nulls.len()..];
    let mut parts: Vec<Option<KeyVal>> = vec![None; key_idx.len()];
    let mut p = 0;
    for col in 0..n {
        if !present(col) {
            continue;
        }
        let is_null = nulls[p / 8] & (1 << (p % 8)) != 0;
        p += 1;
        let slot = key_idx.iter().position(|k| *k == col);
        if is_null {
            if let Some(s) = slot {
                parts[s] = Some(KeyVal::Null);
            }
            continue;
        }
        let (t, meta) = shape.column_type(col)?;
        let len = value_len(t, meta, rest)?;
        let bytes = rest.get(..len)?;
        if let Some(s) = slot {
            let ctx = (t, meta, shape.is_unsigned(col), false);
            match BinlogValue::deserialize(ctx, &mut ParseBuf(bytes)).ok()? {
                BinlogValue::Value(v) => parts[s] = Some(KeyVal::from(&shape.fix(col, v))),
                _ => return None,
            }
        }
        rest = &rest[len..];
    }
    *buf = rest;
    Some(parts.into_iter().collect::<Option<Vec<_>>>().map(Key))
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
