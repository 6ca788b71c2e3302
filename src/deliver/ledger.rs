//! The inconsistency ledger: every reported row stays open in the state store until a later check finds
//! it equal on both sides; then it is closed (and, with `sink.resolved_events`, a `resolved` event keyed
//! like the row's earlier events follows them). The cutover gate answers from it.
//!
//! Rows are opened in the same flush as the events that report them (so a crash never leaves a reported
//! row out of the ledger), closed by any check that finds the key equal (binlog and poll modes on every
//! change of the row, the settle stage when a pending mismatch resolves), and re-checked in the
//! background at a bounded rate. The ledger is bounded: past `state.ledger_max` open rows a reported row
//! is counted as untracked, with a warning, and the cutover gate never answers "clean" while any is.

use crate::clock::now_ms;
use crate::deliver::event::{Event, EventType, Mismatch, Mode};
use crate::deliver::metrics::Stats;
use crate::deliver::state::Store;
use crate::error::Result;
use crate::key::Key;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// One open inconsistency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenRow {
    pub table: String,
    pub key_columns: Vec<String>,
    pub key: Key,
    pub kind: EventType,
    pub columns: Vec<String>,
    pub mode: Mode,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

impl OpenRow {
    /// As the cutover gate lists it (the event's JSON shape, plus when it was first and last seen).
    pub fn to_json(&self) -> serde_json::Value {
        let key: serde_json::Map<String, serde_json::Value> =
            self.key_columns.iter().cloned().zip(self.key.0.iter().map(|v| v.to_json())).collect();
        serde_json::json!({
            "table": self.table,
            "key": key,
            "type": self.kind.as_str(),
            "columns": self.columns,
            "mode": self.mode.as_str(),
            "first_seen": crate::clock::rfc3339_ms(self.first_seen_ms),
            "last_seen": crate::clock::rfc3339_ms(self.last_seen_ms),
        })
    }
}

#[derive(Serialize, Deserialize)]
enum LedgerRecord {
    V1(OpenRow),
}

/// Rows reported but not recorded because the ledger was full (a progress record: survives restarts).
const UNTRACKED: &str = "ledger/untracked";

#[derive(Serialize, Deserialize)]
enum UntrackedRecord {
    V1(u64),
}

fn id(table: &str, key: &Key) -> Vec<u8> {
    let mut k = table.as_bytes().to_vec();
    k.push(0);
    k.extend(key.canonical());
    k
}

/// What the ledger needs from the configuration.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// `state.ledger_max`: open rows kept
    pub max: usize,
    /// `sink.resolved_events`
    pub resolved_events: bool,
    /// `sink.outbox_max`
    pub outbox_max: usize,
    /// `SRC` or `DST`
    pub direction: &'static str,
}

pub struct Ledger {
    store: Arc<Store>,
    stats: Arc<Stats>,
    cfg: LedgerConfig,
}

impl Ledger {
    pub fn new(store: Arc<Store>, stats: Arc<Stats>, cfg: LedgerConfig) -> Ledger {
        stats.ledger_open.store(store.ledger_len() as i64, Relaxed);
        Ledger { store, stats, cfg }
    }

    fn count(&self) {
        self.stats.ledger_open.store(self.store.ledger_len() as i64, Relaxed);
    }

    /// Opens (or refreshes) the rows these events report. Not flushed: the caller flushes with the
    /// events themselves.
    pub fn open(&self, events: &[Event]) -> Result<()> {
        let mut rows = Vec::with_capacity(events.len());
        let mut untracked = 0u64;
        for e in events.iter().filter(|e| e.kind != EventType::Resolved) {
            let id = id(&e.table, &e.key);
            let first = match self.store.ledger_get::<LedgerRecord>(&id)? {
                Some(LedgerRecord::V1(old)) => old.first_seen_ms,
                None if self.store.ledger_len() + rows.len() >= self.cfg.max => {
                    untracked += 1;
                    continue;
                }
                None => e.detected_at_ms,
            };
            let row = OpenRow {
                table: e.table.clone(),
                key_columns: e.key_columns.clone(),
                key: e.key.clone(),
                kind: e.kind,
                columns: e.columns.clone(),
                mode: e.mode,
                first_seen_ms: first,
                last_seen_ms: e.detected_at_ms,
            };
            rows.push((id, LedgerRecord::V1(row)));
        }
        self.store.ledger_put(&rows)?;
        self.count();
        if untracked > 0 {
            let n = self.untracked()? + untracked;
            self.store.put_lazy(UNTRACKED, &UntrackedRecord::V1(n))?;
            tracing::warn!(
                limit = self.cfg.max,
                untracked = n,
                "the inconsistency ledger is full: reported rows are no longer tracked, and the cutover gate will not answer clean; fix the open rows, or raise state.ledger_max"
            );
        }
        Ok(())
    }

    /// Reported rows the ledger could not record (it was full).
    pub fn untracked(&self) -> Result<u64> {
        Ok(self.store.get::<UntrackedRecord>(UNTRACKED)?.map_or(0, |UntrackedRecord::V1(n)| n))
    }

    pub fn open_count(&self) -> usize {
        self.store.ledger_len()
    }

    /// Up to `n` open rows after the row id `after` (round robin: `None` starts over); with the id to
    /// continue from.
    pub fn open_page(&self, after: Option<&[u8]>, n: usize) -> Result<(Vec<OpenRow>, Option<Vec<u8>>)> {
        let page = self.store.ledger_page::<LedgerRecord>(after, n)?;
        let next = if page.len() == n { page.last().map(|(id, _)| id.clone()) } else { None };
        Ok((page.into_iter().map(|(_, LedgerRecord::V1(r))| r).collect(), next))
    }

    /// Every open row.
    pub fn open_rows(&self) -> Result<Vec<OpenRow>> {
        Ok(self.store.ledger_all::<LedgerRecord>()?.into_iter().map(|LedgerRecord::V1(r)| r).collect())
    }

    /// Closes the rows of `table` among `checked` that the check found equal (not in `differ`). Cheap
    /// when the ledger is empty, which is the common case.
    pub async fn close_equal(&self, table: &str, checked: &[Key], differ: &[(Key, Mismatch)]) -> Result<usize> {
        if self.open_count() == 0 || checked.is_empty() {
            return Ok(0);
        }
        let differ: HashSet<Vec<u8>> = differ.iter().map(|(k, _)| k.canonical()).collect();
        let mut closing = Vec::new();
        for key in checked.iter().filter(|k| !differ.contains(&k.canonical())) {
            let id = id(table, key);
            if let Some(LedgerRecord::V1(row)) = self.store.ledger_get::<LedgerRecord>(&id)? {
                closing.push((id, row));
            }
        }
        if closing.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        if self.cfg.resolved_events {
            // Into the outbox before the row leaves the ledger: a crash in between sends it twice at most.
            let events: Vec<Event> = closing
                .iter()
                .map(|(_, r)| Event {
                    kind: EventType::Resolved,
                    direction: self.cfg.direction.to_string(),
                    table: r.table.clone(),
                    key_columns: r.key_columns.clone(),
                    key: r.key.clone(),
                    mode: r.mode,
                    columns: vec![],
                    detected_at_ms: now,
                })
                .collect();
            self.store.outbox_push(&events, self.cfg.outbox_max).await?;
            for e in &events {
                self.stats.reported(&e.table, e.mode, EventType::Resolved);
            }
        }
        let mut closed = 0;
        for (id, r) in closing {
            // Only the row as read: one re-opened meanwhile by a newer report stays open.
            if self.store.ledger_remove_if(&id, &LedgerRecord::V1(r.clone()))? {
                closed += 1;
                tracing::info!(table = %r.table, kind = r.kind.as_str(), "a reported row is equal again; closed in the ledger");
            }
        }
        self.stats.ledger_closed.fetch_add(closed as u64, Relaxed);
        self.count();
        Ok(closed)
    }

    /// What a check of `checked` keys of `table` means for the ledger: rows found equal close (see
    /// [`Ledger::close_equal`]), rows still different are marked seen now ([`Ledger::still_open`]).
    pub async fn checked(&self, table: &str, checked: &[Key], differ: &[(Key, Mismatch)]) -> Result<()> {
        self.close_equal(table, checked, differ).await?;
        self.still_open(table, differ)
    }

    /// Whether `table`'s row `key` is open already with this kind and these columns: a new event for it
    /// would only repeat what the sink was told.
    pub fn open_as(&self, table: &str, key: &Key, m: &Mismatch) -> Result<bool> {
        if self.open_count() == 0 {
            return Ok(false);
        }
        Ok(match self.store.ledger_get::<LedgerRecord>(&id(table, key))? {
            Some(LedgerRecord::V1(row)) => row.kind == m.kind && row.columns == m.columns,
            None => false,
        })
    }

    /// Open rows of `table` among the `differ` keys, refreshed as still different (last seen now).
    pub fn still_open(&self, table: &str, differ: &[(Key, Mismatch)]) -> Result<()> {
        if self.open_count() == 0 {
            return Ok(());
        }
        let now = now_ms();
        let mut rows = Vec::new();
        for (key, m) in differ {
            let id = id(table, key);
            if let Some(LedgerRecord::V1(mut row)) = self.store.ledger_get::<LedgerRecord>(&id)? {
                row.kind = m.kind;
                row.columns = m.columns.clone();
                row.last_seen_ms = now;
                rows.push((id, LedgerRecord::V1(row)));
            }
        }
        self.store.ledger_put(&rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyVal;

    fn event(i: i64, kind: EventType) -> Event {
        Event {
            kind,
            direction: "SRC".into(),
            table: "t".into(),
            key_columns: vec!["id".into()],
            key: Key(vec![KeyVal::Int(i)]),
            mode: Mode::Binlog,
            columns: vec![],
            detected_at_ms: 1000 + i as u64,
        }
    }

    fn ledger(dir: &std::path::Path, max: usize, resolved: bool) -> (Arc<Store>, Ledger) {
        let store = Arc::new(Store::open(dir).unwrap());
        let cfg = LedgerConfig { max, resolved_events: resolved, outbox_max: 100, direction: "SRC" };
        let l = Ledger::new(store.clone(), Arc::default(), cfg);
        (store, l)
    }

    #[tokio::test]
    async fn rows_open_refresh_and_close_with_a_resolved_event() {
        let dir = tempfile::tempdir().unwrap();
        let (store, l) = ledger(dir.path(), 10, true);
        l.open(&[event(1, EventType::Neq), event(2, EventType::TargetMissing)]).unwrap();
        let mut again = event(1, EventType::Neq);
        again.detected_at_ms = 5000;
        l.open(&[again]).unwrap();
        let rows = l.open_rows().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].first_seen_ms, rows[0].last_seen_ms), (1001, 5000), "first seen is kept");
        // Key 1 is equal now, key 2 still differs.
        let keys = [event(1, EventType::Neq).key, event(2, EventType::Neq).key];
        let differ = [(keys[1].clone(), Mismatch { kind: EventType::TargetMissing, columns: vec![] })];
        assert_eq!(l.close_equal("t", &keys, &differ).await.unwrap(), 1);
        assert_eq!(l.open_rows().unwrap().len(), 1);
        let sent = store.outbox_peek(10).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].1.kind, sent[0].1.key.clone()), (EventType::Resolved, keys[0].clone()));
        // A resolved event never opens a row.
        l.open(&[event(9, EventType::Resolved)]).unwrap();
        assert_eq!(l.open_count(), 1);
    }

    #[tokio::test]
    async fn open_rows_page_round_robin() {
        let dir = tempfile::tempdir().unwrap();
        let (_, l) = ledger(dir.path(), 10, false);
        l.open(&(1..=5).map(|i| event(i, EventType::Neq)).collect::<Vec<_>>()).unwrap();
        let (first, next) = l.open_page(None, 2).unwrap();
        let (second, next) = l.open_page(next.as_deref(), 2).unwrap();
        let (third, next) = l.open_page(next.as_deref(), 2).unwrap();
        let keys: Vec<Key> = first.iter().chain(&second).chain(&third).map(|r| r.key.clone()).collect();
        assert_eq!(keys.len(), 5, "every row once");
        assert!(next.is_none(), "a short page ends the round; the next one starts over");
    }

    #[tokio::test]
    async fn a_full_ledger_counts_what_it_cannot_track_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, l) = ledger(dir.path(), 2, false);
            l.open(&[event(1, EventType::Neq), event(2, EventType::Neq), event(3, EventType::Neq)]).unwrap();
            assert_eq!((l.open_count(), l.untracked().unwrap()), (2, 1));
            store.flush().await.unwrap();
        }
        let (store, l) = ledger(dir.path(), 2, false);
        assert_eq!((l.open_count(), l.untracked().unwrap()), (2, 1), "kept across a restart");
        assert_eq!(store.outbox_len(), 0, "no resolved events unless asked for");
    }
}
