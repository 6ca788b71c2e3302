//! Binlog event decoding shared by the live stream and the captured-file tests: rows events → keys (and
//! values), MariaDB GTID events, DDL recognition.
//!
//! Every value comes out normalised to the form the binary protocol gives for the same row
//! ([`super::normal`]), so keys find their rows and images compare like rows read back.

use super::normal::Charset;
use crate::key::{Key, KeyVal};
use mysql_async::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, RowsEventData, TableMapEvent};
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

/// Every row change of a rows event as its (before, after) images, each value in the form the binary
/// protocol gives for the same row ([`super::normal`]). The image walker decodes them; an event it
/// cannot walk (a partial JSON update) goes through `mysql_common`'s row parser, normalised the same way.
#[allow(clippy::type_complexity)]
pub fn rows_event_images(
    ev: &RowsEventData<'_>,
    tme: &TableMapEvent<'_>,
    shape: &TableShape,
) -> Result<Vec<(Option<Image>, Option<Image>)>, DecodeError> {
    if let Some(images) = super::image::images(ev, shape) {
        return Ok(images);
    }
    let mut out = Vec::new();
    for r in ev.rows(tme) {
        let (before, after) = r.map_err(|e| DecodeError::Rows { table: shape.table.clone(), source: e })?;
        out.push((before.as_ref().map(|row| shape.values(row)), after.as_ref().map(|row| shape.values(row))));
    }
    Ok(out)
}

/// Keys touched by one rows event: for updates both the before and the after key, so a key-changing
/// update checks the old key and the new one. Returns the keys and the number of row changes.
pub fn rows_event_keys(
    ev: &RowsEventData<'_>,
    tme: &TableMapEvent<'_>,
    shape: &TableShape,
    key_cols: &[String],
) -> Result<(Vec<Key>, u64), DecodeError> {
    let mut keys = Vec::new();
    let mut changes = 0;
    for r in ev.rows(tme) {
        let (before, after) = r.map_err(|e| DecodeError::Rows { table: shape.table.clone(), source: e })?;
        changes += 1;
        let before_key = before.as_ref().map(|row| shape.key(row, key_cols)).transpose()?.flatten();
        let after_key = after.as_ref().map(|row| shape.key(row, key_cols)).transpose()?.flatten();
        pair_keys(shape, key_cols, before_key, after_key, &mut keys)?;
    }
    Ok((keys, changes))
}

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

/// A MariaDB GTID event (type 162): (domain, sequence number); the server id is in the event header.
pub fn maria_gtid(data: &[u8]) -> Option<(u32, u64)> {
    let seq = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    Some((domain, seq))
}

/// What a statement does to a tracked table, as far as validation cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Ddl {
    /// The table's columns or key may have changed: re-read its schema.
    Altered(String),
    /// Every row is gone at once: re-check the table with a full pass.
    Truncated(String),
    /// Another table took the name (CREATE, RENAME onto it: the cut-over of gh-ost and
    /// pt-online-schema-change): re-read the schema and re-check every row.
    Replaced(String),
    /// The table is gone (DROP, RENAME away): its rows are re-checked once a table of that name is back.
    Dropped(String),
}

impl Ddl {
    pub fn table(&self) -> &str {
        match self {
            Ddl::Altered(t) | Ddl::Truncated(t) | Ddl::Replaced(t) | Ddl::Dropped(t) => t,
        }
    }

    /// Why every row of the table must be re-checked, if it must.
    pub fn recheck_reason(&self) -> Option<&'static str> {
        match self {
            Ddl::Altered(_) => None,
            Ddl::Truncated(_) => Some("truncate"),
            Ddl::Replaced(_) => Some("replaced"),
            Ddl::Dropped(_) => Some("dropped"),
        }
    }
}

/// A table name as written in a statement, without quotes and schema.
fn bare(w: &str) -> String {
    let w = w.trim_matches(|c: char| c == ';' || c == ',' || c == '(' || c.is_whitespace());
    let name = match w.rsplit_once('.') {
        Some((_, n)) => n,
        None => w,
    };
    name.trim_matches('`').to_string()
}

/// Recognises DDL on `tables` in a statement (case-insensitive, with or without backticks and a schema
/// prefix): one entry per tracked table it touches (`RENAME TABLE a TO a_old, b_new TO b` touches two).
pub fn ddl(query: &str, tables: &[String]) -> Vec<Ddl> {
    let q = query.trim_start().to_ascii_lowercase();
    let words: Vec<&str> = q.split_whitespace().collect();
    let Some(verb) = words.first().copied() else { return vec![] };
    if !matches!(verb, "alter" | "create" | "drop" | "rename" | "truncate") {
        return vec![];
    }
    let is = |w: &str, t: &str| bare(w) == t.to_ascii_lowercase();
    let touched = |t: &str| {
        q.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ';').any(|w| !w.is_empty() && is(w, t))
    };
    let renames = verb == "rename"
        || words.windows(2).any(|w| w[0] == "rename" && !matches!(w[1], "index" | "key" | "column" | "constraint"));
    // Partition maintenance removes or replaces rows without rows events.
    let partition = |op: &str| words.windows(2).any(|w| w[0] == op && w[1] == "partition");
    tables
        .iter()
        .filter(|t| touched(t))
        .map(|t| {
            let t = t.clone();
            // `RENAME TABLE a TO b, c TO d` and `ALTER TABLE a RENAME [TO|AS] b`: destinations follow TO/AS.
            let renamed_onto = words.windows(2).any(|w| matches!(w[0], "to" | "as") && is(w[1], &t));
            match verb {
                "truncate" => Ddl::Truncated(t),
                "drop" if words.get(1).is_some_and(|w| *w == "table") => Ddl::Dropped(t),
                "create" if words.iter().take(8).any(|w| *w == "table") => Ddl::Replaced(t),
                _ if renames && renamed_onto => Ddl::Replaced(t),
                _ if renames => Ddl::Dropped(t),
                _ if partition("truncate") || partition("drop") => Ddl::Truncated(t),
                _ if partition("exchange") || partition("reorganize") || partition("coalesce") => Ddl::Replaced(t),
                _ => Ddl::Altered(t),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_ddl_on_tracked_tables() {
        let t = vec!["users".to_string()];
        assert_eq!(ddl("ALTER TABLE `app`.`users` ADD COLUMN x INT", &t), vec![Ddl::Altered("users".into())]);
        assert_eq!(ddl("truncate users", &t), vec![Ddl::Truncated("users".into())]);
        assert_eq!(ddl("TRUNCATE TABLE app.users", &t), vec![Ddl::Truncated("users".into())]);
        assert!(ddl("ALTER TABLE users_archive ADD x INT", &t).is_empty());
        assert!(ddl("INSERT INTO users VALUES (1)", &t).is_empty());
        assert!(ddl("BEGIN", &t).is_empty());
        assert_eq!(ddl("DROP TABLE IF EXISTS `users`", &t), vec![Ddl::Dropped("users".into())]);
        assert_eq!(ddl("CREATE TABLE users (id INT PRIMARY KEY)", &t), vec![Ddl::Replaced("users".into())]);
        // gh-ost's cut-over: the tracked name is renamed away and the ghost table onto it.
        assert_eq!(
            ddl("RENAME TABLE `app`.`users` TO `app`.`_users_del`, `app`.`_users_gho` TO `app`.`users`", &t),
            vec![Ddl::Replaced("users".into())]
        );
        assert_eq!(ddl("RENAME TABLE users TO users_old", &t), vec![Ddl::Dropped("users".into())]);
        assert_eq!(ddl("ALTER TABLE users_new RENAME TO users", &t), vec![Ddl::Replaced("users".into())]);
        assert_eq!(ddl("CREATE INDEX i ON users (v)", &t), vec![Ddl::Altered("users".into())]);
        assert_eq!(ddl("ALTER TABLE users RENAME COLUMN a TO b", &t), vec![Ddl::Altered("users".into())]);
        assert_eq!(ddl("ALTER TABLE users TRUNCATE PARTITION p1", &t), vec![Ddl::Truncated("users".into())]);
        assert_eq!(
            ddl("ALTER TABLE users EXCHANGE PARTITION p1 WITH TABLE x", &t),
            vec![Ddl::Replaced("users".into())]
        );
        let two = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            ddl("RENAME TABLE a TO a_old, a_new TO a, b TO b_old, b_new TO b", &two),
            vec![Ddl::Replaced("a".into()), Ddl::Replaced("b".into())]
        );
        assert_eq!(ddl("DROP TABLE a, b", &two), vec![Ddl::Dropped("a".into()), Ddl::Dropped("b".into())]);
        assert_eq!(Ddl::Truncated("users".into()).recheck_reason(), Some("truncate"));
        assert_eq!(Ddl::Altered("users".into()).recheck_reason(), None);
    }

    #[test]
    fn maria_gtid_body() {
        let mut d = 42u64.to_le_bytes().to_vec();
        d.extend(7u32.to_le_bytes());
        d.push(0);
        assert_eq!(maria_gtid(&d), Some((7, 42)));
        assert_eq!(maria_gtid(&d[..5]), None);
    }
}
