//! The shape of a tracked table as the binlog's table map describes it (column names, types, metadata,
//! character sets, ENUM/SET members), what decoding a rows event against it may fail with, and the
//! normalisation of a decoded value to the binary protocol's form ([`TableShape::fix`], by the rules of
//! [`super::normal`]). Shared by the image walker ([`super::image`]) and the full parser ([`super::decode`]).

use super::normal::{timestamp_of, Charset};
use crate::key::{Key, KeyVal};
use mysql_async::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::Value;

/// A problem that makes the binlog unusable as configured; stops binlog mode with this message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("table `{table}`: the binlog has no column names (binlog_row_metadata=MINIMAL); binlog mode needs binlog_row_metadata=FULL on the base: SET GLOBAL binlog_row_metadata = 'FULL' (and in my.cnf)")]
    MinimalMetadata { table: String },
    #[error("table `{table}`: key column `{column}` is missing from the row image; binlog mode needs binlog_row_image=FULL on the base")]
    MissingKeyColumn { table: String, column: String },
    #[error("table `{table}`: cannot decode a rows event: {source}")]
    Rows {
        table: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot decode {what}: {source}")]
    Event {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("table `{table}`: a rows event arrived without its table map")]
    NoTableMap { table: String },
    #[error("the base wrote an INCIDENT event at {at}: events are missing from its binlog there ({detail}); changes around it cannot be checked from the binlog: run `binlog-validator full`, then start binlog mode after that position")]
    Incident { at: String, detail: String },
    #[error("a compressed transaction (payload ending at {at}) could not be read: its events never arrived; the stream cannot be trusted past it: run `binlog-validator full` and restart binlog mode")]
    UnreadPayload { at: String },
}

/// What a table map says about each column, computed once per table map.
#[derive(Debug, Clone)]
pub struct TableShape {
    pub database: String,
    pub table: String,
    /// column names; `@0`, `@1`… when the binlog has none (binlog_row_metadata=MINIMAL)
    pub names: Vec<String>,
    /// whether `names` came from the binlog
    pub named: bool,
    pub(super) types: Vec<Option<ColumnType>>,
    meta: Vec<Vec<u8>>,
    pub(super) unsigned: Vec<bool>,
    /// how each text column's bytes become UTF-8 (ENUM and SET members included)
    charset: Vec<Charset>,
    /// the members of each ENUM and SET column, in UTF-8, in definition order
    members: Vec<Option<Vec<Vec<u8>>>>,
}

impl TableShape {
    pub fn new(tme: &TableMapEvent<'_>) -> Result<TableShape, DecodeError> {
        let table = tme.table_name().into_owned();
        let n = tme.columns_count() as usize;
        let bad = |e: std::io::Error| DecodeError::Rows { table: table.clone(), source: e };
        let meta_x = OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(bad)?;
        let names: Vec<String> = meta_x
            .iter_column_name()
            .map(|r| r.map(|c| c.name().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(bad)?;
        let named = names.len() == n;
        let names = if named { names } else { (0..n).map(|i| format!("@{i}")).collect() };
        let types: Vec<Option<ColumnType>> = (0..n).map(|i| tme.get_column_type(i).ok().flatten()).collect();
        let mut signedness = meta_x.iter_signedness();
        let mut charsets = meta_x.iter_charset();
        let mut enum_charsets = meta_x.iter_enum_and_set_charset();
        let mut unsigned = Vec::with_capacity(n);
        let mut charset = Vec::with_capacity(n);
        for t in &types {
            let t = t.unwrap_or(ColumnType::MYSQL_TYPE_NULL);
            unsigned.push(t.is_numeric_type() && signedness.next().unwrap_or(false));
            charset.push(if t.is_character_type() {
                charsets.next().and_then(Result::ok)
            } else if t.is_enum_or_set_type() {
                enum_charsets.next().and_then(Result::ok)
            } else {
                None
            });
        }
        let charset: Vec<Charset> = charset.into_iter().map(|c| c.map_or(Charset::Utf8, Charset::of)).collect();
        let (mut enums, mut sets) = (Vec::new(), Vec::new());
        for field in tme.iter_optional_meta() {
            match field.map_err(bad)? {
                OptionalMetadataField::EnumStrValue(x) => {
                    for list in x.iter_values() {
                        enums.push(
                            list.map_err(bad)?.values().iter().map(|v| v.value_raw().to_vec()).collect::<Vec<_>>(),
                        );
                    }
                }
                OptionalMetadataField::SetStrValue(x) => {
                    for list in x.iter_values() {
                        sets.push(
                            list.map_err(bad)?.values().iter().map(|v| v.value_raw().to_vec()).collect::<Vec<_>>(),
                        );
                    }
                }
                _ => {}
            }
        }
        let (mut enums, mut sets) = (enums.into_iter(), sets.into_iter());
        let members = types
            .iter()
            .zip(&charset)
            .map(|(t, cs)| {
                let list = match t {
                    Some(ColumnType::MYSQL_TYPE_ENUM) => enums.next(),
                    Some(ColumnType::MYSQL_TYPE_SET) => sets.next(),
                    _ => None,
                };
                list.map(|l| l.into_iter().map(|m| cs.to_utf8(&m).unwrap_or(m)).collect())
            })
            .collect();
        let meta = (0..n).map(|i| tme.get_column_metadata(i).unwrap_or(&[]).to_vec()).collect();
        Ok(TableShape {
            database: tme.database_name().into_owned(),
            table,
            names,
            named,
            types,
            meta,
            unsigned,
            charset,
            members,
        })
    }

    pub fn column_type(&self, i: usize) -> Option<(ColumnType, &[u8])> {
        Some((self.types.get(i).copied().flatten()?, self.meta.get(i)?.as_slice()))
    }

    pub fn is_unsigned(&self, i: usize) -> bool {
        self.unsigned.get(i).copied().unwrap_or(false)
    }

    pub fn index_of(&self, column: &str) -> Option<usize> {
        self.names.iter().position(|n| n.eq_ignore_ascii_case(column))
    }

    /// How column `i`'s text becomes UTF-8.
    pub fn charset(&self, i: usize) -> Charset {
        self.charset.get(i).copied().unwrap_or(Charset::Utf8)
    }

    /// The members of an ENUM or SET column.
    pub fn members(&self, i: usize) -> Option<&[Vec<u8>]> {
        self.members.get(i)?.as_deref()
    }

    /// The declared byte length of a CHAR/BINARY(N) column, from its two metadata bytes.
    pub(super) fn fixed_len(&self, i: usize) -> Option<usize> {
        let m = self.meta.get(i)?;
        let (b0, b1) = (*m.first()? as usize, *m.get(1)? as usize);
        if b0 == ColumnType::MYSQL_TYPE_ENUM as usize || b0 == ColumnType::MYSQL_TYPE_SET as usize {
            return None;
        }
        Some(if b0 & 0x30 != 0x30 { b1 | (((b0 & 0x30) ^ 0x30) << 4) } else { b1 })
    }

    /// The table column of each value of a row image (an image may hold only some columns).
    fn image_columns(&self, row: &BinlogRow) -> Vec<Option<usize>> {
        row.columns_ref().iter().map(|c| self.index_of(&c.name_str())).collect()
    }

    /// A row image's values by table column, repaired, with JSON as text. `None` for a column absent
    /// from the image or holding a partial JSON update.
    pub fn values(&self, row: &BinlogRow) -> Vec<Option<Value>> {
        let mut out = vec![None; self.names.len()];
        for (j, col) in self.image_columns(row).into_iter().enumerate() {
            let Some(i) = col else { continue };
            out[i] = match row.as_ref(j) {
                Some(BinlogValue::Value(v)) => Some(self.fix(i, v.clone())),
                // Through the JSON DOM, which also renders opaque values (DECIMAL, DATE… inside JSON).
                Some(BinlogValue::Jsonb(v)) => v
                    .clone()
                    .parse()
                    .ok()
                    .map(|dom| Value::Bytes(serde_json::Value::from(dom).to_string().into_bytes())),
                Some(BinlogValue::JsonDiff(_)) | None => None,
            };
        }
        out
    }

    /// The key of a row image by key-column name; `None` when the image leaves the key out (a minimal
    /// after-image of an update that did not change it).
    pub fn key(&self, row: &BinlogRow, key_cols: &[String]) -> Result<Option<Key>, DecodeError> {
        if !self.named {
            return Err(DecodeError::MinimalMetadata { table: self.table.clone() });
        }
        let cols = self.image_columns(row);
        let mut parts = Vec::with_capacity(key_cols.len());
        for c in key_cols {
            let Some(i) = self.index_of(c) else {
                return Err(DecodeError::MissingKeyColumn { table: self.table.clone(), column: c.clone() });
            };
            let Some(j) = cols.iter().position(|x| *x == Some(i)) else { return Ok(None) };
            match row.as_ref(j) {
                Some(BinlogValue::Value(v)) => parts.push(KeyVal::from(&self.fix(i, v.clone()))),
                _ => return Ok(None),
            }
        }
        Ok(Some(Key(parts)))
    }
}

/// A row image by table column: `None` for a column the image leaves out (a minimal image) or a
/// partial JSON update.
pub type Image = Vec<Option<Value>>;

/// The keys one row change touches: both for a key-changing update, one when they are the same (or an
/// image leaves the key out because it did not change). A change with no key at all is an error.
pub fn pair_keys(
    shape: &TableShape,
    key_cols: &[String],
    before: Option<Key>,
    after: Option<Key>,
    keys: &mut Vec<Key>,
) -> Result<(), DecodeError> {
    match (before, after) {
        (None, None) => {
            return Err(DecodeError::MissingKeyColumn { table: shape.table.clone(), column: key_cols.join(", ") })
        }
        (Some(b), Some(a)) if b == a => keys.push(a),
        (b, a) => keys.extend(b.into_iter().chain(a)),
    }
    Ok(())
}

impl TableShape {
    /// Normalises a value of column `i` as the shared decoder (`mysql_common`) gave it (see the module
    /// doc).
    pub fn fix(&self, i: usize, v: Value) -> Value {
        use ColumnType::*;
        let Some(t) = self.types.get(i).copied().flatten() else { return v };
        // Most values need nothing: say so before looking at them.
        match t {
            MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING | MYSQL_TYPE_BLOB
                if matches!(self.charset(i), Charset::Utf8 | Charset::Binary) =>
            {
                return v
            }
            MYSQL_TYPE_INT24
            | MYSQL_TYPE_TIMESTAMP
            | MYSQL_TYPE_TIMESTAMP2
            | MYSQL_TYPE_YEAR
            | MYSQL_TYPE_ENUM
            | MYSQL_TYPE_SET
            | MYSQL_TYPE_STRING
            | MYSQL_TYPE_VARCHAR
            | MYSQL_TYPE_VAR_STRING
            | MYSQL_TYPE_BLOB => {}
            _ => return v,
        }
        match (t, v) {
            (ColumnType::MYSQL_TYPE_INT24, Value::Int(x)) if !self.unsigned[i] && x > 0x7F_FFFF => {
                Value::Int(x - 0x100_0000)
            }
            (ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2, v) => timestamp_of(&v).unwrap_or(v),
            (ColumnType::MYSQL_TYPE_YEAR, Value::Bytes(b)) => {
                match std::str::from_utf8(&b).ok().and_then(|s| s.parse::<i64>().ok()) {
                    // The shared decoder adds 1900 to every byte, the year 0000's 0 included.
                    Some(1900) => Value::Int(0),
                    Some(y) => Value::Int(y),
                    None => Value::Bytes(b),
                }
            }
            (ColumnType::MYSQL_TYPE_ENUM, Value::Int(x)) => match usize::try_from(x) {
                // Index 0 is the empty string a non-strict server stores for an invalid member.
                Ok(0) => Value::Bytes(Vec::new()),
                Ok(x) => match self.members(i).and_then(|m| m.get(x - 1)) {
                    Some(s) => Value::Bytes(s.clone()),
                    None => Value::Int(x as i64),
                },
                Err(_) => Value::Int(x),
            },
            (ColumnType::MYSQL_TYPE_SET, Value::Bytes(bits)) => match self.members(i) {
                Some(members) => {
                    let mut out = Vec::new();
                    for (n, m) in members.iter().enumerate() {
                        if bits.get(n / 8).is_some_and(|byte| byte & (1 << (n % 8)) != 0) {
                            if !out.is_empty() {
                                out.push(b',');
                            }
                            out.extend_from_slice(m);
                        }
                    }
                    Value::Bytes(out)
                }
                None => Value::Bytes(bits),
            },
            (ColumnType::MYSQL_TYPE_STRING, Value::Bytes(mut b)) if self.charset(i) == Charset::Binary => {
                if let Some(len) = self.fixed_len(i) {
                    if b.len() < len {
                        b.resize(len, 0);
                    }
                }
                Value::Bytes(b)
            }
            (
                ColumnType::MYSQL_TYPE_STRING
                | ColumnType::MYSQL_TYPE_VARCHAR
                | ColumnType::MYSQL_TYPE_VAR_STRING
                | ColumnType::MYSQL_TYPE_BLOB,
                Value::Bytes(b),
            ) => match self.charset(i).to_utf8(&b) {
                Some(u) => Value::Bytes(u),
                None => Value::Bytes(b),
            },
            (_, v) => v,
        }
    }
}
