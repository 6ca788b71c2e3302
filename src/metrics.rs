//! Counters kept for `/stats`, `/metrics` and run summaries, with every metric name defined here.

use crate::event::EventType;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

pub const ROWS_CHECKED: &str = "bv_rows_checked_total";
pub const EVENTS: &str = "bv_events_total";
pub const RESOLVED: &str = "bv_mismatches_resolved_total";
pub const PENDING: &str = "bv_recheck_queue_size";
pub const OUTBOX: &str = "bv_outbox_size";
pub const FULL_RUNS: &str = "bv_full_validation_runs_total";
pub const INCR_RUNS: &str = "bv_incr_validation_runs_total";
pub const BINLOG_CHANGES: &str = "bv_binlog_row_changes_total";
pub const BINLOG_LAG: &str = "bv_binlog_lag_seconds";

/// Process-wide counters. Cheap to bump from any task.
#[derive(Default, Debug)]
pub struct Stats {
    pub rows_checked: AtomicU64,
    pub target_missing: AtomicU64,
    pub neq: AtomicU64,
    pub base_missing: AtomicU64,
    pub resolved: AtomicU64,
    pub pending: AtomicI64,
    pub full_runs: AtomicU64,
    pub incr_runs: AtomicU64,
    /// row changes of tracked tables seen in the binlog
    pub binlog_changes: AtomicU64,
    /// seconds behind the base's newest event, in ms (0 when caught up)
    pub binlog_lag_ms: AtomicI64,
    checkpoint: std::sync::Mutex<String>,
}

impl Stats {
    pub fn event(&self, t: EventType) -> &AtomicU64 {
        match t {
            EventType::TargetMissing => &self.target_missing,
            EventType::Neq => &self.neq,
            EventType::BaseMissing => &self.base_missing,
        }
    }

    pub fn set_checkpoint(&self, c: String) {
        *self.checkpoint.lock().unwrap_or_else(|e| e.into_inner()) = c;
    }

    pub fn checkpoint(&self) -> String {
        self.checkpoint.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn events_total(&self) -> u64 {
        EventType::ALL.iter().map(|t| self.event(*t).load(Relaxed)).sum()
    }
}
