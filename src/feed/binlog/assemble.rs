//! Binlog events → whole transactions. Pure (no I/O), so the live stream and captured binlog files go
//! through exactly the same code, and every rule below is unit-testable.
//!
//! What it accounts for, so that no change of a tracked table slips through unseen:
//! - rows events of tracked tables, plain or MariaDB-compressed (`log_bin_compress`, types 166-171), and
//!   the inner events of a MySQL transaction payload (`binlog_transaction_compression`), whose own
//!   `log_pos` is 0: the payload's end position stands for their transaction's end;
//! - transaction boundaries (XID, COMMIT, DDL, XA steps), which carry the position after them;
//! - XA: rows of `XA START … XA PREPARE` are not visible until `XA COMMIT`; they are held (durably, by
//!   the checker) under their XID and released for checking when `XA COMMIT` or `XA ROLLBACK` arrives,
//!   however many transactions commit in between;
//! - DDL on tracked tables (schema refresh, and a durable full re-check after TRUNCATE, DROP, CREATE or a
//!   RENAME onto the name);
//! - GTIDs: MariaDB's `domain-server-seq` state and MySQL's executed GTID set.

use super::compressed;
use super::decode::{ddl, maria_gtid, rows_event_keys, Ddl};
use super::history::{Compared, NoImage};
use super::shape::{DecodeError, TableShape};
use crate::key::Key;
use crate::mysql::position::{BinlogPos, Checkpoint, GtidSet, MariaGtids};
use mysql_async::binlog::events::{Event, EventData, QueryEvent, RotateEvent, TableMapEvent};
use mysql_async::binlog::EventType;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const MARIADB_GTID_EVENT: u8 = 162;
const MARIADB_GTID_LIST_EVENT: u8 = 163;
const XA_PREPARE_LOG_EVENT: u8 = 38;
const MARIADB_BINLOG_CHECKPOINT_EVENT: u8 = 161;

/// Row changes of one or more transactions: the keys to check and how many changes they stand for,
/// by table, and what the row images say each key went through.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Txn {
    pub keys: BTreeMap<String, Vec<Key>>,
    pub changes: BTreeMap<String, u64>,
    /// Not stored with a held XA transaction: its keys are checked on both sides after a restart.
    #[serde(skip)]
    pub images: super::history::Histories,
}

impl Txn {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.changes.is_empty()
    }

    pub fn merge(&mut self, other: Txn) {
        for (t, k) in other.keys {
            self.keys.entry(t).or_default().extend(k);
        }
        for (t, n) in other.changes {
            *self.changes.entry(t).or_default() += n;
        }
        super::history::merge(&mut self.images, other.images);
    }

    pub fn change_count(&self) -> u64 {
        self.changes.values().sum()
    }
}

/// What the tracked tables are: name → key columns, in the base's database.
#[derive(Clone, Default)]
pub struct Tracked {
    pub database: String,
    pub tables: HashMap<String, Vec<String>>,
    /// The tables' plans, when rows events should also yield each key's versions from the row images
    /// (binlog mode); without them only keys are taken.
    pub plans: Option<Arc<crate::mysql::schema::PlanSet>>,
}

/// The end of a transaction (or of a statement that is its own transaction).
#[derive(Debug, Default)]
pub struct Boundary {
    /// Keys to check now.
    pub txn: Txn,
    /// Changes seen but deliberately not checked because they precede the requested start time.
    pub before_start: Txn,
    /// The position right after this transaction; `None` when the stream gave no usable position
    /// (the checkpoint then stays where it is).
    pub end: Option<Checkpoint>,
    /// DDL on tracked tables (one statement may touch several).
    pub ddl: Vec<Ddl>,
    /// XA PREPARE: keys held under this record id (`xid@file:pos`) until the XA transaction ends.
    pub hold: Option<(String, Txn)>,
    /// XA COMMIT/ROLLBACK: this record's held keys are in `txn`; the record goes once the checkpoint
    /// passes.
    pub release: Option<String>,
    /// XA COMMIT/ROLLBACK of a transaction prepared before this validator saw it: its XID.
    pub unknown_xa: Option<String>,
    /// Event time (seconds since the epoch).
    pub ts: u32,
    /// Every base commit up to this time (ms) has been read with this boundary.
    pub horizon_ms: u64,
}

/// What one event meant.
#[derive(Debug)]
pub enum Step {
    Nothing,
    Boundary(Box<Boundary>),
}

pub struct Assembler {
    tracked: Tracked,
    /// table id → the table map event's bytes and the table's shape (None for an untracked table). A
    /// transaction's table map repeats the last one's bytes as long as the table is unchanged, so its
    /// shape is built once, not per transaction.
    shapes: HashMap<u64, (Vec<u8>, Option<Arc<TableShape>>)>,
    /// binlog files the server lists (to cut the fake rotate's checksum bytes)
    known_files: Vec<String>,
    pub file: String,
    pub maria: MariaGtids,
    pub mysql: GtidSet,
    txn: Txn,
    txn_maria: Option<(u32, u32, u64)>,
    txn_mysql: Option<([u8; 16], u64)>,
    /// end of the transaction payload whose inner events are being read
    payload_end: Option<u64>,
    /// the XID of the XA transaction whose events are being read (between XA START and XA PREPARE)
    xa_open: Option<String>,
    /// prepared XA transactions, by XID: their record's id (`xid@file:pos` of the prepare) and keys
    held: BTreeMap<String, (String, Txn)>,
    skip_before: Option<u32>,
    /// inside a transaction's events (from its GTID, BEGIN or first table map to its end)
    in_txn: bool,
    /// When the event being fed was read (ms since the epoch; 0: unknown, as for files): the reader sets it.
    pub read_ms: u64,
    /// MySQL's commit timestamp of the open transaction (µs; 0: none)
    txn_commit_us: u64,
}

impl Assembler {
    /// `held` are prepared XA transactions recorded by an earlier run, by record id (`xid@file:pos`).
    pub fn new(tracked: Tracked, file: String, held: BTreeMap<String, Txn>, skip_before: Option<u32>) -> Self {
        let held = held.into_iter().map(|(id, t)| (split_record(&id).0.to_string(), (id, t))).collect();
        Assembler {
            tracked,
            shapes: HashMap::new(),
            known_files: Vec::new(),
            file,
            maria: MariaGtids::default(),
            mysql: GtidSet::default(),
            txn: Txn::default(),
            txn_maria: None,
            txn_mysql: None,
            payload_end: None,
            xa_open: None,
            held,
            skip_before,
            in_txn: false,
            read_ms: 0,
            txn_commit_us: 0,
        }
    }

    /// A new connection: table ids are per connection; an unfinished transaction is read again.
    pub fn reconnected(&mut self, known_files: Vec<String>, file: String) {
        self.shapes.clear();
        self.known_files = known_files;
        self.file = file;
        self.txn = Txn::default();
        self.txn_maria = None;
        self.txn_mysql = None;
        self.payload_end = None;
        self.xa_open = None;
        self.in_txn = false;
        self.txn_commit_us = 0;
    }

    /// The key columns of a tracked table changed (DDL).
    pub fn set_key_columns(&mut self, table: &str, key: Vec<String>) {
        if let Some(k) = self.tracked.tables.get_mut(table) {
            *k = key;
        }
    }

    /// Whether the events read last are inside a transaction (its boundary not read yet).
    pub fn in_transaction(&self) -> bool {
        self.in_txn
    }

    /// Prepared XA transactions whose keys are held.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Feeds one event; `tme` looks up the table map of a table id (the stream's own).
    pub fn feed<'a>(
        &mut self,
        event: &Event,
        tme: impl Fn(u64) -> Option<&'a TableMapEvent<'static>>,
    ) -> Result<Step, DecodeError> {
        let header = event.header();
        let t = header.event_type_raw();
        // A payload's own events (log_pos 0) follow it at once; a positioned event instead means the
        // payload could not be read (mysql_async drops one it cannot decompress) and its rows are gone.
        if self.payload_end.is_some() && header.log_pos() != 0 && t != EventType::HEARTBEAT_EVENT as u8 {
            let at = format!("{}:{}", self.file, self.payload_end.unwrap_or(0));
            return Err(DecodeError::UnreadPayload { at });
        }
        let mut query: Option<(String, String)> = None;
        match t {
            t if t == EventType::ROTATE_EVENT as u8 => {
                let re: RotateEvent<'_> = event.read_event().map_err(io("a rotate event"))?;
                self.file = rotate_name(re.name_raw(), &self.known_files);
                if !re.is_fake() {
                    self.shapes.clear();
                }
                return Ok(Step::Nothing);
            }
            t if t == EventType::TABLE_MAP_EVENT as u8 => {
                let m: TableMapEvent<'_> = event.read_event().map_err(io("a table map"))?;
                self.in_txn = true;
                if self.shapes.get(&m.table_id()).is_some_and(|(raw, _)| raw.as_slice() == event.data()) {
                    return Ok(Step::Nothing);
                }
                let name = m.table_name();
                let tracked = m.database_name() == self.tracked.database && self.tracked.tables.contains_key(&*name);
                let shape = if tracked { Some(Arc::new(TableShape::new(&m)?)) } else { None };
                self.shapes.insert(m.table_id(), (event.data().to_vec(), shape));
                return Ok(Step::Nothing);
            }
            t if t == EventType::TRANSACTION_PAYLOAD_EVENT as u8 => {
                // The stream hands the payload's inner events over next; they carry log_pos 0.
                self.payload_end = Some(u64::from(header.log_pos()));
                return Ok(Step::Nothing);
            }
            t if is_rows_event(t) => {
                self.rows(event, &tme)?;
                return Ok(Step::Nothing);
            }
            t if t == EventType::INCIDENT_EVENT as u8 => {
                let detail = String::from_utf8_lossy(event.data().get(3..).unwrap_or_default()).into_owned();
                return Err(DecodeError::Incident { at: format!("{}:{}", self.file, header.log_pos()), detail });
            }
            t if compressed::is_compressed_rows(t) => {
                // Only tracked tables' rows are inflated (the table id leads the event's data).
                let id = event.data().get(..6).map(|b| b.iter().rev().fold(0u64, |a, x| (a << 8) | u64::from(*x)));
                if !id.is_some_and(|id| matches!(self.shapes.get(&id), Some((_, Some(_))))) {
                    return Ok(Step::Nothing);
                }
                let plain = compressed::rows_event(event)?;
                self.rows(&plain, &tme)?;
                return Ok(Step::Nothing);
            }
            t if t == EventType::QUERY_EVENT as u8 => {
                let q: QueryEvent<'_> = event.read_event().map_err(io("a query event"))?;
                query = Some((q.schema().into_owned(), q.query().into_owned()));
            }
            compressed::QUERY_COMPRESSED_EVENT => query = Some(compressed::query(event)?),
            MARIADB_GTID_EVENT => {
                if let Some((domain, seq)) = maria_gtid(event.data()) {
                    self.txn_maria = Some((domain, header.server_id(), seq));
                }
                self.in_txn = true;
                return Ok(Step::Nothing);
            }
            MARIADB_GTID_LIST_EVENT => {
                if let Some(list) = maria_gtid_list(event.data()) {
                    self.maria = list;
                }
                return Ok(self.between_transactions(header.log_pos(), header.timestamp()));
            }
            t if t == EventType::GTID_EVENT as u8 || t == EventType::GTID_TAGGED_LOG_EVENT as u8 => {
                if let Ok(Some(EventData::GtidEvent(g))) = event.read_data() {
                    self.txn_mysql = Some((g.sid(), g.gno()));
                    self.txn_commit_us = g.immediate_commit_timestamp();
                }
                self.in_txn = true;
                return Ok(Step::Nothing);
            }
            t if t == EventType::ANONYMOUS_GTID_EVENT as u8 => {
                self.in_txn = true;
                return Ok(Step::Nothing);
            }
            t if t == EventType::PREVIOUS_GTIDS_EVENT as u8 => {
                if let Ok(Some(EventData::PreviousGtidsEvent(p))) = event.read_data() {
                    for sid in p.sids() {
                        for i in sid.intervals() {
                            self.mysql.add_range(sid.uuid(), i.start(), i.end());
                        }
                    }
                }
                return Ok(self.between_transactions(header.log_pos(), header.timestamp()));
            }
            t if t == EventType::FORMAT_DESCRIPTION_EVENT as u8 || t == MARIADB_BINLOG_CHECKPOINT_EVENT => {
                return Ok(self.between_transactions(header.log_pos(), header.timestamp()));
            }
            t if t == EventType::XID_EVENT as u8 => {}
            XA_PREPARE_LOG_EVENT => {}
            _ => return Ok(Step::Nothing),
        }
        let mut b = Boundary { ts: header.timestamp(), ..Boundary::default() };
        if let Some((schema, text)) = query {
            match classify(&text) {
                Stmt::Open => {
                    self.in_txn = true;
                    return Ok(Step::Nothing);
                }
                Stmt::XaStart(xid) => {
                    self.xa_open = Some(xid);
                    return Ok(Step::Nothing);
                }
                Stmt::XaEnd(xid) => {
                    // A prepared XA transaction ends: its rows are visible now (commit) or gone (rollback),
                    // and either way the base decides. Keys held since an earlier run are released too.
                    match self.held.remove(&xid) {
                        Some((id, mut held)) => {
                            if is_rollback(&text) {
                                // The prepared images are what the base never kept: its keys are read on
                                // both sides, the base deciding.
                                let tables: Vec<(String, Vec<Key>)> =
                                    held.keys.iter().map(|(t, k)| (t.clone(), k.clone())).collect();
                                for (table, keys) in tables {
                                    super::history::unknown(&mut held.images, &table, &keys, NoImage::RolledBack);
                                }
                            }
                            self.txn.merge(held);
                            b.release = Some(id);
                        }
                        // Prepared before this validator's start (or its records): its rows were never
                        // seen, so they cannot be checked here. Loud, and counted.
                        None if self.txn.is_empty() => b.unknown_xa = Some(xid),
                        // One phase: the rows are in this very transaction.
                        None => {}
                    }
                }
                Stmt::Other => {
                    if schema == self.tracked.database || mentions(&text, &self.tracked.database) {
                        let names: Vec<String> = self.tracked.tables.keys().cloned().collect();
                        b.ddl = ddl(&text, &names);
                    }
                }
            }
        }
        if t == XA_PREPARE_LOG_EVENT {
            // The rows are not visible until XA COMMIT: hold them under their XID (from the event itself;
            // MariaDB writes no XA START query, its GTID event carries the XA flag).
            let Some(xid) = xa_prepare_xid(event.data()).or_else(|| self.xa_open.take()) else {
                return Err(DecodeError::Event {
                    what: "an XA PREPARE event",
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, "its XID cannot be read"),
                });
            };
            // Keyed by the prepare's position too: an XID may be reused once its transaction ended.
            let id = format!("{xid}@{}:{}", self.file, header.log_pos());
            let held = std::mem::take(&mut self.txn);
            self.held.insert(xid, (id.clone(), held.clone()));
            b.hold = Some((id, held));
        }
        self.xa_open = None;
        self.in_txn = false;
        if let Some((d, s, n)) = self.txn_maria.take() {
            self.maria.update(d, s, n);
        }
        if let Some((sid, gno)) = self.txn_mysql.take() {
            self.mysql.add(sid, gno);
        }
        // Every version this transaction superseded stopped being current at its commit (a held XA
        // transaction's at its XA COMMIT: its rows were not visible before).
        let commit_us = std::mem::take(&mut self.txn_commit_us);
        let at = super::history::commit_ms(self.read_ms, b.ts, commit_us);
        super::history::stamp(&mut self.txn.images, at);
        b.horizon_ms = super::history::read_through_ms(self.read_ms, b.ts, commit_us);
        let txn = std::mem::take(&mut self.txn);
        if self.skip_before.is_some_and(|s| b.ts < s) && b.hold.is_none() {
            // Before the requested start: neither its rows nor its DDL are judged (the plans are current).
            b.before_start = txn;
            b.ddl.clear();
        } else {
            b.txn = txn;
        }
        let log_pos = match u64::from(header.log_pos()) {
            0 => self.payload_end.take(),
            p => Some(p),
        };
        b.end = log_pos.map(|p| Checkpoint { pos: BinlogPos::new(self.file.clone(), p), gtid: self.gtid_text() });
        Ok(Step::Boundary(Box::new(b)))
    }

    /// An event between transactions (a new file's header, a GTID list, a binlog checkpoint): nothing to
    /// check, but the position moves past it, so an idle stream's checkpoint reaches the base's position
    /// (the cutover gate waits for exactly that).
    fn between_transactions(&self, log_pos: u32, ts: u32) -> Step {
        if self.in_txn || log_pos == 0 {
            return Step::Nothing;
        }
        let end = Checkpoint { pos: BinlogPos::new(self.file.clone(), u64::from(log_pos)), gtid: self.gtid_text() };
        let horizon_ms = super::history::read_through_ms(self.read_ms, ts, 0);
        Step::Boundary(Box::new(Boundary { end: Some(end), ts, horizon_ms, ..Boundary::default() }))
    }

    /// The GTID state as stored in a checkpoint: MariaDB's list or MySQL's set.
    fn gtid_text(&self) -> Option<String> {
        if !self.maria.0.is_empty() {
            Some(self.maria.to_string())
        } else if !self.mysql.is_empty() {
            Some(self.mysql.to_string())
        } else {
            None
        }
    }

    /// Adds the keys of a rows event of a tracked table to the open transaction.
    fn rows<'a>(
        &mut self,
        event: &Event,
        tme: &impl Fn(u64) -> Option<&'a TableMapEvent<'static>>,
    ) -> Result<(), DecodeError> {
        let Some(EventData::RowsEvent(data)) = event.read_data().map_err(io("a rows event"))? else {
            return Ok(());
        };
        let Some((_, Some(shape))) = self.shapes.get(&data.table_id()) else { return Ok(()) };
        let Some(key_cols) = self.tracked.tables.get(&shape.table) else { return Ok(()) };
        let plan = self.tracked.plans.as_ref().and_then(|p| p.get(&shape.table));
        let mut no_image = None;
        if let Some(plan) = plan {
            let table = shape.table.clone();
            let keys = self.txn.keys.entry(table.clone()).or_default();
            match super::history::record(&data, shape, Compared::of(&plan), key_cols, &mut self.txn.images, keys)? {
                Ok(changes) => {
                    *self.txn.changes.entry(table).or_default() += changes;
                    return Ok(());
                }
                Err(why) => no_image = Some(why),
            }
        }
        let decoded = match super::image::keys(&data, shape, key_cols) {
            Some(fast) => fast,
            None => {
                let Some(m) = tme(data.table_id()) else {
                    return Err(DecodeError::NoTableMap { table: shape.table.clone() });
                };
                rows_event_keys(&data, m, shape, key_cols)
            }
        };
        let (keys, changes) = decoded?;
        if let Some(why) = no_image {
            super::history::unknown(&mut self.txn.images, &shape.table, &keys, why);
        }
        self.txn.keys.entry(shape.table.clone()).or_default().extend(keys);
        *self.txn.changes.entry(shape.table.clone()).or_default() += changes;
        Ok(())
    }
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> DecodeError {
    move |source| DecodeError::Event { what, source }
}

fn is_rows_event(t: u8) -> bool {
    use EventType::*;
    [
        WRITE_ROWS_EVENT,
        UPDATE_ROWS_EVENT,
        DELETE_ROWS_EVENT,
        WRITE_ROWS_EVENT_V1,
        UPDATE_ROWS_EVENT_V1,
        DELETE_ROWS_EVENT_V1,
        PARTIAL_UPDATE_ROWS_EVENT,
    ]
    .iter()
    .any(|e| *e as u8 == t)
}

fn mentions(text: &str, database: &str) -> bool {
    text.to_ascii_lowercase().contains(&database.to_ascii_lowercase())
}

/// What a query event means for transaction boundaries.
#[derive(Debug, PartialEq)]
enum Stmt {
    /// Opens or continues a transaction (BEGIN, SAVEPOINT, ROLLBACK TO): no boundary.
    Open,
    /// `XA START xid` or `XA END xid`: the rows read belong to that XA transaction.
    XaStart(String),
    /// `XA COMMIT xid` / `XA ROLLBACK xid` of a prepared transaction.
    XaEnd(String),
    /// Anything else ends a transaction: COMMIT, ROLLBACK, DDL.
    Other,
}

fn classify(q: &str) -> Stmt {
    let upper = q.trim_start().to_ascii_uppercase();
    let rest = |verb: &str| xid_of(q.trim_start()[verb.len()..].trim());
    if upper.starts_with("BEGIN") || upper.starts_with("SAVEPOINT") || upper.starts_with("ROLLBACK TO") {
        Stmt::Open
    } else if upper.starts_with("XA START") || upper.starts_with("XA BEGIN") {
        Stmt::XaStart(rest("XA START"))
    } else if upper.starts_with("XA END") {
        Stmt::XaStart(rest("XA END"))
    } else if upper.starts_with("XA COMMIT") {
        Stmt::XaEnd(rest("XA COMMIT"))
    } else if upper.starts_with("XA ROLLBACK") {
        Stmt::XaEnd(rest("XA ROLLBACK"))
    } else {
        Stmt::Other
    }
}

/// A held transaction's record id (`xid@file:pos`) as its XID and the prepare's position (empty when
/// the id has none).
pub fn split_record(id: &str) -> (&str, &str) {
    id.rsplit_once('@').unwrap_or((id, ""))
}

/// The XID of an XA_PREPARE_LOG_EVENT (one-phase flag, format id, gtrid and bqual lengths, then both),
/// in the form the server writes in `XA COMMIT X'…',X'…',fmt`.
fn xa_prepare_xid(data: &[u8]) -> Option<String> {
    let format = u32::from_le_bytes(data.get(1..5)?.try_into().ok()?);
    let g = u32::from_le_bytes(data.get(5..9)?.try_into().ok()?) as usize;
    let b = u32::from_le_bytes(data.get(9..13)?.try_into().ok()?) as usize;
    let gtrid = data.get(13..13 + g)?;
    let bqual = data.get(13 + g..13 + g + b)?;
    let hex = |x: &[u8]| x.iter().map(|c| format!("{c:02X}")).collect::<String>();
    Some(format!("X'{}',X'{}',{format}", hex(gtrid), hex(bqual)))
}

/// An XID as the server writes it (`X'31',X'',1`), without a trailing `ONE PHASE`, spaces folded.
fn xid_of(s: &str) -> String {
    let s = s.trim().trim_end_matches(';');
    let upper = s.to_ascii_uppercase();
    let s = match upper.rfind("ONE PHASE") {
        Some(i) if upper[i..].trim() == "ONE PHASE" => &s[..i],
        _ => s,
    };
    // Servers write the hex digits in either case; compare them in one.
    s.split_whitespace().collect::<Vec<_>>().join("").to_ascii_uppercase()
}

/// MariaDB's GTID list event: the binlog state when the file began.
pub fn maria_gtid_list(data: &[u8]) -> Option<MariaGtids> {
    let count = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?) & 0x0fff_ffff;
    let mut g = MariaGtids::default();
    for i in 0..count as usize {
        let o = 4 + i * 16;
        let d = u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?);
        let s = u32::from_le_bytes(data.get(o + 4..o + 8)?.try_into().ok()?);
        let n = u64::from_le_bytes(data.get(o + 8..o + 16)?.try_into().ok()?);
        g.update(d, s, n);
    }
    Some(g)
}

/// The file name of a rotate event. The first (fake) rotate of a stream arrives with the 4 checksum bytes
/// still attached to the name; they are cut when the name without them is a file the server lists, or
/// when the name is not text.
pub fn rotate_name(raw: &[u8], known: &[String]) -> String {
    if raw.len() > 4 {
        let cut = &raw[..raw.len() - 4];
        let cut_str = String::from_utf8_lossy(cut);
        if known.iter().any(|k| *k == cut_str) || std::str::from_utf8(raw).is_err() {
            return cut_str.into_owned();
        }
    }
    String::from_utf8_lossy(raw).into_owned()
}

/// Whether an XA end statement rolls the transaction back (`XA ROLLBACK xid`), not commits it.
fn is_rollback(text: &str) -> bool {
    text.trim_start().get(..11).is_some_and(|p| p.eq_ignore_ascii_case("XA ROLLBACK"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xa_rollback_is_told_from_a_commit() {
        assert!(is_rollback("XA ROLLBACK X'31',X'',1"));
        assert!(is_rollback("  xa rollback 'x'"));
        assert!(!is_rollback("XA COMMIT X'31',X'',1"));
        assert!(!is_rollback("XA"));
    }

    #[test]
    fn fake_rotate_checksum_bytes_are_cut() {
        let known = vec!["mysql-bin.000001".to_string()];
        assert_eq!(rotate_name(b"mysql-bin.000001\x01\x02\x03\x04", &known), "mysql-bin.000001");
        assert_eq!(rotate_name(b"mysql-bin.000001\xff\x02\x03\x04", &[]), "mysql-bin.000001");
        assert_eq!(rotate_name(b"mysql-bin.000002", &known), "mysql-bin.000002");
    }

    #[test]
    fn statements_and_xids() {
        assert_eq!(classify("BEGIN"), Stmt::Open);
        assert_eq!(classify("SAVEPOINT a"), Stmt::Open);
        assert_eq!(classify("COMMIT"), Stmt::Other);
        assert_eq!(classify("ROLLBACK"), Stmt::Other);
        assert_eq!(classify("ALTER TABLE t ADD c INT"), Stmt::Other);
        assert_eq!(classify("XA START X'31',X'',1"), Stmt::XaStart("X'31',X'',1".into()));
        assert_eq!(classify("XA END X'31',X'',1"), Stmt::XaStart("X'31',X'',1".into()));
        assert_eq!(classify("XA COMMIT X'31',X'',1"), Stmt::XaEnd("X'31',X'',1".into()));
        assert_eq!(classify("xa commit X'31', X'', 1 ONE PHASE"), Stmt::XaEnd("X'31',X'',1".into()));
        assert_eq!(classify("XA ROLLBACK X'31',X'',1"), Stmt::XaEnd("X'31',X'',1".into()));
    }

    #[test]
    fn xid_of_an_xa_prepare_event() {
        let mut d = vec![0u8];
        d.extend(1u32.to_le_bytes());
        d.extend(2u32.to_le_bytes());
        d.extend(1u32.to_le_bytes());
        d.extend(b"x1\xab");
        assert_eq!(xa_prepare_xid(&d).as_deref(), Some("X'7831',X'AB',1"));
        assert_eq!(xa_prepare_xid(&d[..14]), None, "truncated");
        // The same XID as the COMMIT statement writes it.
        assert_eq!(classify("XA COMMIT X'7831',X'ab',1"), Stmt::XaEnd(xa_prepare_xid(&d).unwrap()));
    }

    #[test]
    fn gtid_list() {
        let mut d = 1u32.to_le_bytes().to_vec();
        d.extend(0u32.to_le_bytes());
        d.extend(1u32.to_le_bytes());
        d.extend(77u64.to_le_bytes());
        assert_eq!(maria_gtid_list(&d).unwrap().to_string(), "0-1-77");
    }

    #[test]
    fn txns_merge_by_table() {
        let mut a = Txn::default();
        a.keys.insert("t".into(), vec![Key(vec![crate::key::KeyVal::Int(1)])]);
        a.changes.insert("t".into(), 1);
        let mut b = a.clone();
        b.changes.insert("u".into(), 2);
        a.merge(b);
        assert_eq!(a.keys["t"].len(), 2);
        assert_eq!(a.change_count(), 4);
    }
}
