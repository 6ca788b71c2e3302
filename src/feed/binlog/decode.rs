//! Binlog event decoding shared by the live stream and the captured-file tests: rows events → keys (and
//! values), MariaDB GTID events, DDL recognition.
//!
//! Every value comes out normalised to the form the binary protocol gives for the same row
//! ([`super::normal`]), so keys find their rows and images compare like rows read back.

use super::shape::{pair_keys, DecodeError, Image, TableShape};
use crate::key::Key;
use mysql_async::binlog::events::{RowsEventData, TableMapEvent};

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
