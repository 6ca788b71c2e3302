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
pub const CHECKPOINT_AGE: &str = "bv_checkpoint_age_seconds";
pub const POLL_CURSOR_LAG: &str = "bv_poll_cursor_lag_seconds";

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
    /// when the checkpoint last moved (ms since the epoch; 0 = never)
    pub checkpoint_ms: AtomicU64,
    /// reported events by (table, type)
    by_table: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), u64>>,
    /// poll mode: how far the cursor is behind the newest utime, in ms (valid while `polling`)
    pub poll_lag_ms: AtomicI64,
    pub polling: std::sync::atomic::AtomicBool,
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
        self.checkpoint_ms.store(crate::event::now_ms(), Relaxed);
    }

    /// Counts a reported event.
    pub fn reported(&self, table: &str, t: EventType) {
        self.event(t).fetch_add(1, Relaxed);
        *self.by_table.lock().unwrap_or_else(|e| e.into_inner()).entry((table.to_string(), t.as_str())).or_default() +=
            1;
    }

    pub fn checkpoint(&self) -> String {
        self.checkpoint.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn events_total(&self) -> u64 {
        EventType::ALL.iter().map(|t| self.event(*t).load(Relaxed)).sum()
    }
}

/// Escapes a label value for the Prometheus text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// All metrics in the Prometheus text exposition format.
pub fn render(s: &Stats, outbox: usize) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    metric(ROWS_CHECKED, "counter", "Rows compared on both sides.", one(s.rows_checked.load(Relaxed) as f64));
    let by_table = s.by_table.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut events: Vec<(String, f64)> =
        by_table.iter().map(|((t, k), n)| (format!("{{table=\"{}\",type=\"{k}\"}}", label(t)), *n as f64)).collect();
    if events.is_empty() {
        events = EventType::ALL.iter().map(|k| (format!("{{table=\"\",type=\"{}\"}}", k.as_str()), 0.0)).collect();
    }
    metric(EVENTS, "counter", "Inconsistencies reported, by table and type.", events);
    metric(
        RESOLVED,
        "counter",
        "Mismatches that resolved within the settle window.",
        one(s.resolved.load(Relaxed) as f64),
    );
    metric(PENDING, "gauge", "Mismatches waiting for their settle window.", one(s.pending.load(Relaxed) as f64));
    metric(OUTBOX, "gauge", "Events not yet acknowledged by the sink.", one(outbox as f64));
    metric(FULL_RUNS, "counter", "Full validation runs started.", one(s.full_runs.load(Relaxed) as f64));
    metric(INCR_RUNS, "counter", "Incremental validation runs started.", one(s.incr_runs.load(Relaxed) as f64));
    metric(
        BINLOG_CHANGES,
        "counter",
        "Row changes of tracked tables seen in the binlog.",
        one(s.binlog_changes.load(Relaxed) as f64),
    );
    metric(
        BINLOG_LAG,
        "gauge",
        "Seconds behind the base's newest binlog event.",
        one(s.binlog_lag_ms.load(Relaxed) as f64 / 1000.0),
    );
    let poll = if s.polling.load(Relaxed) { s.poll_lag_ms.load(Relaxed) as f64 / 1000.0 } else { -1.0 };
    metric(
        POLL_CURSOR_LAG,
        "gauge",
        "Seconds the poll cursor is behind the newest utime (-1: not polling).",
        one(poll),
    );
    let at = s.checkpoint_ms.load(Relaxed);
    let age = if at == 0 { -1.0 } else { crate::event::now_ms().saturating_sub(at) as f64 / 1000.0 };
    metric(CHECKPOINT_AGE, "gauge", "Seconds since the checkpoint last moved (-1: never).", one(age));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let s = Stats::default();
        s.reported("users", EventType::Neq);
        s.reported("a\"b", EventType::TargetMissing);
        let text = render(&s, 3);
        assert!(text.contains("bv_events_total{table=\"users\",type=\"neq\"} 1"), "{text}");
        assert!(text.contains("bv_events_total{table=\"a\\\"b\",type=\"target_missing\"} 1"), "{text}");
        assert!(text.contains("bv_outbox_size 3"));
        assert!(text.contains("# TYPE bv_rows_checked_total counter"));
        assert!(text.contains("bv_checkpoint_age_seconds -1"));
    }
}
