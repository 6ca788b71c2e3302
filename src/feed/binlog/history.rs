//! Row images as the base side. For each key of a tracked table a batch keeps what the binlog says the
//! base went through: the latest version (its compared columns, normalised like the binary protocol's
//! values, in the plan's order; or absent after a delete or a key-changing update) and every version it
//! had before in the batch, as a digest of its compared columns with the time it stopped being current.
//! The checker compares the latest version with the other side's row and reads nothing on the base.
//!
//! A version stops being current when its transaction commits: every version a transaction supersedes is
//! stamped with `min(time the commit event was read, the commit time's upper bound)` — MySQL 8's GTID
//! event gives the commit time in microseconds, MariaDB only seconds (`timestamp*1000 + 999`). When the
//! reader is caught up the read time is within milliseconds of the commit; when it is behind, the bound
//! keeps a version from looking younger than it is, which would hide lag; it can only look older by the
//! rest of its second, never by more.
//!
//! Memory: a batch holds its keys already; per key this adds the latest version and 16 bytes per older
//! version, not every image.

use super::shape::{pair_keys, DecodeError, TableShape};
use crate::key::{Key, KeyVal};
use crate::mysql::kind::Kind;
use crate::mysql::schema::TablePlan;
use crate::verdict::compare::digest::{digest, Side};
use crate::verdict::versions::Version;
use mysql_async::binlog::events::RowsEventData;
use mysql_async::consts::ColumnType;
use mysql_async::Value;
use std::collections::{BTreeMap, HashMap};

/// The supersession time of a version whose transaction has not committed yet.
const UNSTAMPED: u64 = u64::MAX;

/// Why a key's images cannot stand for the base side (its checks then read both sides, counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NoImage {
    /// An image leaves compared columns out: `binlog_row_image` is MINIMAL or NOBLOB.
    Partial,
    /// The event needs the full row parser (a partial JSON update, a column type the walker does not know).
    Parser,
    /// The table map lacks column names (`binlog_row_metadata` MINIMAL) or a column the plan compares
    /// (the plan was refreshed after DDL the stream has not reached yet, or the reverse).
    Plan,
    /// The keys came without images: a prepared XA transaction restored from the state store.
    Missing,
}

impl NoImage {
    pub fn as_str(self) -> &'static str {
        match self {
            NoImage::Partial => "row_image_partial",
            NoImage::Parser => "full_parser",
            NoImage::Plan => "plan_columns",
            NoImage::Missing => "no_images",
        }
    }

    /// What the operator can do about it.
    pub fn fix(self) -> &'static str {
        match self {
            NoImage::Partial => "set binlog_row_image=FULL on the base",
            NoImage::Parser => "nothing (rare events: partial JSON updates); if it persists, report it",
            NoImage::Plan => "set binlog_row_metadata=FULL on the base; after DDL it passes once both sides agree",
            NoImage::Missing => "nothing: only XA transactions prepared before a restart",
        }
    }
}

/// What a batch knows about one key.
#[derive(Clone, Debug, PartialEq)]
pub enum History {
    Known {
        /// compared columns in plan order; `None`: absent on the base
        latest: Option<Vec<Value>>,
        /// the versions before it, oldest first
        older: Vec<Version>,
    },
    Unknown(NoImage),
}

impl History {}

/// One table's keys, with the plan columns their values follow.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableHistory {
    /// the plan's compared columns and kinds when the images were read: `latest` follows them, and the
    /// digests were taken with them
    pub compared: Vec<String>,
    pub kinds: Vec<(Kind, Kind)>,
    /// the plan changed within the batch (DDL): the keys' values follow different layouts
    pub mixed: bool,
    pub keys: HashMap<Vec<u8>, History>,
}

impl TableHistory {
    /// Whether the values follow `plan`'s columns.
    pub fn follows(&self, plan: &TablePlan) -> bool {
        !self.mixed && self.compared == plan.compared && self.kinds == plan.kinds
    }

    fn adopt(&mut self, compared: &[String], kinds: &[(Kind, Kind)]) {
        if self.keys.is_empty() && !self.mixed {
            self.compared = compared.to_vec();
            self.kinds = kinds.to_vec();
        } else if self.compared != compared || self.kinds != kinds {
            self.mixed = true;
        }
    }
}

/// Per table.
pub type Histories = BTreeMap<String, TableHistory>;

/// A later batch's (or transaction's) histories after `into`'s.
pub fn merge(into: &mut Histories, later: Histories) {
    for (table, th) in later {
        let mine = into.entry(table).or_default();
        mine.adopt(&th.compared, &th.kinds);
        mine.mixed |= th.mixed;
        let mine = &mut mine.keys;
        for (k, h) in th.keys {
            match (mine.get_mut(&k), h) {
                (None, h) => {
                    mine.insert(k, h);
                }
                (Some(History::Known { latest, older }), History::Known { latest: l2, older: o2 }) => {
                    older.extend(o2);
                    *latest = l2;
                }
                (Some(slot @ History::Known { .. }), u @ History::Unknown(_)) => *slot = u,
                (Some(History::Unknown(_)), _) => {}
            }
        }
    }
}

/// Stamps every version superseded by the transaction just committed.
pub fn stamp(h: &mut Histories, at_ms: u64) {
    for th in h.values_mut() {
        for hist in th.keys.values_mut() {
            if let History::Known { older, .. } = hist {
                for v in older.iter_mut().rev().take_while(|v| v.superseded_ms == UNSTAMPED) {
                    v.superseded_ms = at_ms;
                }
            }
        }
    }
}

/// Marks keys as lacking images.
pub fn unknown(h: &mut Histories, table: &str, keys: &[Key], why: NoImage) {
    let m = &mut h.entry(table.to_string()).or_default().keys;
    for k in keys {
        m.insert(k.canonical(), History::Unknown(why));
    }
}

/// The commit time of a transaction as a version's supersession time (see the module doc): `read_ms`
/// when the event was read (0: unknown), `ts` the event's seconds, `commit_us` MySQL's microsecond
/// commit timestamp (0: none).
pub fn commit_ms(read_ms: u64, ts: u32, commit_us: u64) -> u64 {
    let bound = if commit_us > 0 { commit_us.div_ceil(1000) } else { u64::from(ts) * 1000 + 999 };
    if read_ms == 0 {
        bound
    } else {
        bound.min(read_ms)
    }
}

/// How far a transaction's commit lets the stream claim to have read the base's commits: its commit
/// time's lower bound (MariaDB's second began; MySQL's microseconds), or the read time if earlier.
pub fn read_through_ms(read_ms: u64, ts: u32, commit_us: u64) -> u64 {
    let low = if commit_us > 0 { commit_us / 1000 } else { u64::from(ts) * 1000 };
    if read_ms == 0 {
        low
    } else {
        low.min(read_ms)
    }
}

/// One image of a row change, as far as its compared columns go.
enum Img {
    Absent,
    Row(Vec<Value>),
    /// the image leaves a compared column out
    Partial,
}

/// The columns a table's versions are taken of: the plan's compared columns (base-side names) and their
/// (base, other) kinds.
#[derive(Clone, Copy)]
pub struct Compared<'a> {
    pub columns: &'a [String],
    pub kinds: &'a [(Kind, Kind)],
}

impl<'a> Compared<'a> {
    pub fn of(plan: &'a TablePlan) -> Compared<'a> {
        Compared { columns: &plan.compared, kinds: &plan.kinds }
    }
}

/// The keys of a rows event (added to `keys`) and each key's versions (added to `hist`), from its images.
/// `Err(why)` when the images cannot serve at all: then nothing was added and the caller takes the keys
/// the old way and marks them with `why`.
pub fn record(
    ev: &RowsEventData<'_>,
    shape: &TableShape,
    plan: Compared<'_>,
    key_cols: &[String],
    hist: &mut Histories,
    keys: &mut Vec<Key>,
) -> Result<Result<u64, NoImage>, DecodeError> {
    if !shape.named {
        return Ok(Err(NoImage::Plan));
    }
    let idx = |cols: &[String]| -> Option<Vec<usize>> { cols.iter().map(|c| shape.index_of(c)).collect() };
    let (Some(key_idx), Some(cmp_idx)) = (idx(key_cols), idx(plan.columns)) else {
        return Ok(Err(NoImage::Plan));
    };
    if cmp_idx.len() != plan.kinds.len() {
        return Ok(Err(NoImage::Plan));
    }
    // A JSON key (never a real one: JSON cannot be indexed) is the full parser's to refuse.
    if key_idx.iter().any(|k| matches!(shape.column_type(*k), Some((ColumnType::MYSQL_TYPE_JSON, _)))) {
        return Ok(Err(NoImage::Parser));
    }
    let mut wanted = vec![false; shape.names.len()];
    for i in key_idx.iter().chain(&cmp_idx) {
        wanted[*i] = true;
    }
    let Some(rows) = super::image::images_of(ev, shape, &|c| wanted.get(c).copied().unwrap_or(false)) else {
        return Ok(Err(NoImage::Parser));
    };
    let th = hist.entry(shape.table.clone()).or_default();
    th.adopt(plan.columns, plan.kinds);
    let table = &mut th.keys;
    let mut changes = 0;
    for (b, a) in rows {
        changes += 1;
        let key_of = |img: &super::shape::Image| -> Option<Key> {
            key_idx.iter().map(|k| img[*k].as_ref().map(KeyVal::from)).collect::<Option<Vec<_>>>().map(Key)
        };
        let values_of = |img: Option<&super::shape::Image>| match img {
            None => Img::Absent,
            Some(img) => match cmp_idx.iter().map(|c| img[*c].clone()).collect::<Option<Vec<Value>>>() {
                Some(v) => Img::Row(v),
                None => Img::Partial,
            },
        };
        let (kb, ka) = (b.as_ref().and_then(key_of), a.as_ref().and_then(key_of));
        let (vb, va) = (values_of(b.as_ref()), values_of(a.as_ref()));
        match (&kb, &ka) {
            (Some(x), Some(y)) if x == y => change(table, x, vb, va, plan.kinds),
            _ => {
                // A key-changing update: the old key goes absent, the new one appears.
                if let Some(x) = &kb {
                    change(table, x, vb, Img::Absent, plan.kinds);
                }
                if let Some(y) = &ka {
                    change(table, y, Img::Absent, va, plan.kinds);
                }
            }
        }
        pair_keys(shape, key_cols, kb, ka, keys)?;
    }
    Ok(Ok(changes))
}

fn change(table: &mut HashMap<Vec<u8>, History>, key: &Key, before: Img, after: Img, kinds: &[(Kind, Kind)]) {
    let slot = table.entry(key.canonical()).or_insert_with(|| History::Known { latest: None, older: Vec::new() });
    let History::Known { latest, older } = slot else { return };
    let (before, after) = match (before, after) {
        (Img::Partial, _) | (_, Img::Partial) => {
            *slot = History::Unknown(NoImage::Partial);
            return;
        }
        (Img::Absent, a) => (None, a),
        (Img::Row(b), a) => (Some(digest(kinds, Side::Base, &b)), a),
    };
    older.push(Version { digest: before, superseded_ms: UNSTAMPED });
    *latest = match after {
        Img::Row(v) => Some(v),
        Img::Absent | Img::Partial => None,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_times() {
        // MariaDB: seconds only; the read time when it is earlier than the second's end.
        assert_eq!(commit_ms(0, 10, 0), 10_999);
        assert_eq!(commit_ms(10_200, 10, 0), 10_200);
        // A reader behind: the bound.
        assert_eq!(commit_ms(50_000, 10, 0), 10_999);
        // MySQL 8's microseconds.
        assert_eq!(commit_ms(50_000, 10, 10_123_456), 10_124);
    }

    fn known(latest: i64, older: &[(Option<u64>, u64)]) -> History {
        History::Known {
            latest: Some(vec![Value::Int(latest)]),
            older: older.iter().map(|(d, t)| Version { digest: *d, superseded_ms: *t }).collect(),
        }
    }

    #[test]
    fn later_histories_add_versions_and_unknown_wins() {
        let mut a: Histories = BTreeMap::new();
        a.entry("t".into()).or_default().keys.insert(vec![1], known(1, &[(None, 5)]));
        a.entry("t".into()).or_default().keys.insert(vec![2], known(1, &[(None, 5)]));
        let mut b: Histories = BTreeMap::new();
        b.entry("t".into()).or_default().keys.insert(vec![1], known(2, &[(Some(9), UNSTAMPED)]));
        b.entry("t".into()).or_default().keys.insert(vec![2], History::Unknown(NoImage::Partial));
        stamp(&mut b, 7);
        merge(&mut a, b);
        assert_eq!(a["t"].keys[&vec![1]], known(2, &[(None, 5), (Some(9), 7)]));
        assert_eq!(a["t"].keys[&vec![2]], History::Unknown(NoImage::Partial));
        assert!(!a["t"].mixed);
    }
}
