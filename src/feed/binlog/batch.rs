//! A batch: whole transactions handed from the reader to the checker, with the position right after the
//! last of them and what must outlive the checkpoint (held XA transactions, table re-checks).

use super::assemble::{Boundary, Txn};
use crate::mysql::position::Checkpoint;

/// Whole transactions, and the position after the last of them.
#[derive(Debug, Default)]
pub struct Batch {
    /// keys to check now
    pub txn: Txn,
    /// changes deliberately not checked: they precede the requested start time
    pub before_start: Txn,
    pub end: Option<Checkpoint>,
    /// the base's commit time of the transaction at `end` (seconds since the epoch)
    pub end_ts: u32,
    /// tables whose every row must be re-checked (TRUNCATE, DROP, CREATE, RENAME onto the name), and why
    pub rechecks: Vec<(String, &'static str)>,
    /// prepared XA transactions to hold durably, by record id (`xid@file:pos`)
    pub holds: Vec<(String, Txn)>,
    /// records whose held keys are in `txn`; they go once the checkpoint has passed this batch
    pub releases: Vec<String>,
    /// XA transactions ended here that were prepared before this validator saw them
    pub unknown_xa: Vec<String>,
    /// every base commit up to this time (ms) is in this batch or an earlier one (a heartbeat of an idle
    /// stream moves it with no change at all)
    pub horizon_ms: u64,
    /// a transaction here changed a tracked table's schema (its batch is merged with no other, see
    /// [`super::hold`])
    pub ddl: bool,
}

impl Batch {
    pub fn key_count(&self) -> usize {
        self.txn.keys.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.txn.is_empty()
            && self.before_start.is_empty()
            && self.end.is_none()
            && self.rechecks.is_empty()
            && self.holds.is_empty()
            && self.releases.is_empty()
            && self.unknown_xa.is_empty()
            && self.horizon_ms == 0
            && !self.ddl
    }

    /// Adds one finished transaction.
    pub fn add(&mut self, b: Boundary) {
        self.ddl |= !b.ddl.is_empty();
        self.txn.merge(b.txn);
        self.before_start.merge(b.before_start);
        for d in &b.ddl {
            if let Some(reason) = d.recheck_reason() {
                self.rechecks.push((d.table().to_string(), reason));
            }
        }
        if let Some(h) = b.hold {
            self.holds.push(h);
        }
        if let Some(r) = b.release {
            self.releases.push(r);
        }
        if let Some(x) = b.unknown_xa {
            self.unknown_xa.push(x);
        }
        if b.end.is_some() {
            self.end = b.end;
            self.end_ts = b.ts;
        }
        self.horizon_ms = self.horizon_ms.max(b.horizon_ms);
    }

    /// Adds the batch that followed this one, as if the reader had made them one.
    pub fn absorb(&mut self, later: Batch) {
        self.txn.merge(later.txn);
        self.before_start.merge(later.before_start);
        self.rechecks.extend(later.rechecks);
        self.holds.extend(later.holds);
        self.releases.extend(later.releases);
        self.unknown_xa.extend(later.unknown_xa);
        if later.end.is_some() {
            self.end = later.end;
            self.end_ts = later.end_ts;
        }
        self.horizon_ms = self.horizon_ms.max(later.horizon_ms);
        self.ddl |= later.ddl;
    }
}
