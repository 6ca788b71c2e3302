//! Counters kept for `/stats`, `/metrics` and run summaries, with every metric name defined here.

use crate::deliver::event::{EventType, Mode};
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
pub const CHANGES_CHECKED: &str = "bv_row_changes_checked_total";
pub const CHANGES_NOT_CHECKED: &str = "bv_row_changes_not_checked_total";
pub const XA_HELD: &str = "bv_xa_prepared_held";
pub const RECHECKS_PENDING: &str = "bv_table_rechecks_pending";
pub const LEDGER_OPEN: &str = "bv_ledger_open_rows";
pub const VALIDATED_LAG: &str = "bv_validated_through_lag_seconds";
pub const BASE_QUERIES: &str = "bv_base_queries_total";
pub const BASE_ROWS_READ: &str = "bv_base_rows_read_total";
pub const BASE_READS_FALLBACK: &str = "bv_base_reads_fallback_total";
pub const CONFIRM_OVERTURNED: &str = "bv_confirm_overturned_total";
pub const REPORTS_ALREADY_OPEN: &str = "bv_reports_already_open_total";

/// Why a row change of a tracked table was seen and not checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NotChecked {
    /// It precedes the start time asked for (`binlog.start` or the API's `utime`).
    BeforeStart,
    /// The table has no usable plan any more (its schema could not be read after DDL).
    NoPlan,
    /// An XA transaction prepared before binlog mode started (its rows were never in the stream read).
    XaBeforeStart,
    /// The table is missing on a side while a full re-check of it is recorded; that pass covers them.
    CoveredByRecheck,
}

impl NotChecked {
    pub const ALL: [NotChecked; 4] =
        [NotChecked::BeforeStart, NotChecked::NoPlan, NotChecked::XaBeforeStart, NotChecked::CoveredByRecheck];

    pub fn as_str(self) -> &'static str {
        match self {
            NotChecked::BeforeStart => "before_start",
            NotChecked::NoPlan => "no_plan",
            NotChecked::XaBeforeStart => "xa_prepared_before_start",
            NotChecked::CoveredByRecheck => "covered_by_recheck",
        }
    }
}

/// Process-wide counters. Cheap to bump from any task.
#[derive(Default, Debug)]
pub struct Stats {
    /// What holds a full pass back between chunks (`full.max_load`, `full.rate`); empty when nothing does.
    pub full_held: std::sync::Mutex<String>,
    pub rows_checked: AtomicU64,
    pub target_missing: AtomicU64,
    pub neq: AtomicU64,
    pub base_missing: AtomicU64,
    pub resolved: AtomicU64,
    /// `resolved` events sent for ledger rows found equal again
    pub resolved_sent: AtomicU64,
    /// ledger rows closed (found equal again after being reported)
    pub ledger_closed: AtomicU64,
    pub pending: AtomicI64,
    pub full_runs: AtomicU64,
    pub incr_runs: AtomicU64,
    /// row changes of tracked tables seen in the binlog
    pub changes_seen: AtomicU64,
    /// … of which checked (compared, with any mismatch pending or reported)
    pub changes_checked: AtomicU64,
    /// … not checked, by (table, reason)
    not_checked: std::sync::Mutex<std::collections::BTreeMap<(String, NotChecked), u64>>,
    /// prepared XA transactions whose changes wait for XA COMMIT/ROLLBACK
    pub xa_held: AtomicI64,
    /// tables waiting for a full re-check (after TRUNCATE, DROP, CREATE, RENAME)
    pub rechecks_pending: AtomicI64,
    /// rows open in the inconsistency ledger
    pub ledger_open: AtomicI64,
    /// how far binlog mode's validated-through position trails the base, in ms (-1: unknown)
    pub validated_lag_ms: AtomicI64,
    /// reported events by mode (binlog, poll, full) and type
    by_mode: [[AtomicU64; 4]; 3],
    /// seconds behind the base's newest event, in ms (0 when caught up)
    pub binlog_lag_ms: AtomicI64,
    /// when the checkpoint last moved (ms since the epoch; 0 = never)
    pub checkpoint_ms: AtomicU64,
    /// reported events by (table, type)
    by_table: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), u64>>,
    /// poll mode: how far the cursor is behind the newest utime, in ms (valid while `polling`)
    pub poll_lag_ms: AtomicI64,
    pub polling: std::sync::atomic::AtomicBool,
    /// binlog mode: keys checked by reading both sides because their row images could not stand for the
    /// base, by (table, reason)
    base_reads_fallback: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), u64>>,
    /// binlog mode: rows the images judged different that the confirming read of both sides found equal
    pub confirm_overturned: AtomicU64,
    /// binlog mode: reports left out because the ledger holds the row open with the same difference
    pub reports_already_open: AtomicU64,
}

impl Stats {
    pub fn event(&self, t: EventType) -> &AtomicU64 {
        match t {
            EventType::TargetMissing => &self.target_missing,
            EventType::Neq => &self.neq,
            EventType::BaseMissing => &self.base_missing,
            EventType::Resolved => &self.resolved_sent,
        }
    }

    /// Counts a reported event.
    pub fn reported(&self, table: &str, mode: Mode, t: EventType) {
        self.event(t).fetch_add(1, Relaxed);
        self.by_mode[mode.index()][type_index(t)].fetch_add(1, Relaxed);
        *self.by_table.lock().unwrap_or_else(|e| e.into_inner()).entry((table.to_string(), t.as_str())).or_default() +=
            1;
    }

    /// Events of one mode and type reported so far.
    pub fn events_of(&self, mode: Mode, t: EventType) -> u64 {
        self.by_mode[mode.index()][type_index(t)].load(Relaxed)
    }

    /// Counts row changes seen and deliberately not checked; the log says so once per table and reason.
    pub fn not_checked(&self, table: &str, why: NotChecked, n: u64) {
        if n == 0 {
            return;
        }
        let mut m = self.not_checked.lock().unwrap_or_else(|e| e.into_inner());
        let slot = m.entry((table.to_string(), why)).or_default();
        if *slot == 0 {
            tracing::warn!(table, reason = why.as_str(), "row changes of a tracked table are not checked");
        }
        *slot += n;
    }

    /// Counts keys checked on both sides because their row images could not stand for the base; the log
    /// says so once per table and reason, with the fix.
    pub fn base_read_fallback(&self, table: &str, reason: &'static str, fix: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        let mut m = self.base_reads_fallback.lock().unwrap_or_else(|e| e.into_inner());
        let slot = m.entry((table.to_string(), reason)).or_default();
        if *slot == 0 {
            tracing::warn!(table, reason, fix, "binlog mode reads this table's changed rows on the base too: its row images cannot stand for the base side");
        }
        *slot += n;
    }

    /// Base-read fallback counts by (table, reason).
    pub fn base_read_fallback_counts(&self) -> Vec<(String, &'static str, u64)> {
        let m = self.base_reads_fallback.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|((t, w), n)| (t.clone(), *w, *n)).collect()
    }

    /// Not-checked counts by (table, reason).
    pub fn not_checked_counts(&self) -> Vec<(String, &'static str, u64)> {
        let m = self.not_checked.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|((t, w), n)| (t.clone(), w.as_str(), *n)).collect()
    }

    /// The accounting of row changes in one line, as `incr` prints it when it stops.
    pub fn accounting(&self) -> String {
        let not: Vec<String> =
            self.not_checked_counts().iter().map(|(t, w, n)| format!("{n} of `{t}` ({w})")).collect();
        format!(
            "row changes: {} seen, {} checked, not checked: {}; {} prepared XA transactions held for their commit",
            self.changes_seen.load(Relaxed),
            self.changes_checked.load(Relaxed),
            if not.is_empty() { "none".to_string() } else { not.join(", ") },
            self.xa_held.load(Relaxed).max(0),
        )
    }

    /// A warning naming every table and reason with changes not checked (at the end of a run).
    pub fn warn_not_checked(&self) {
        for (table, reason, n) in self.not_checked_counts() {
            tracing::warn!(table = %table, reason, count = n, "row changes were seen and not checked");
        }
    }

    pub fn events_total(&self) -> u64 {
        EventType::ALL.iter().map(|t| self.event(*t).load(Relaxed)).sum()
    }
}

fn type_index(t: EventType) -> usize {
    match t {
        EventType::TargetMissing => 0,
        EventType::Neq => 1,
        EventType::BaseMissing => 2,
        EventType::Resolved => 3,
    }
}

/// Escapes a label value for the Prometheus text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Load one side's pool put on its server: statements run and rows read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    pub queries: u64,
    pub rows: u64,
}

/// All metrics in the Prometheus text exposition format; `base` is the load on the base.
pub fn render(s: &Stats, outbox: usize, base: Load) -> String {
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
        one(s.changes_seen.load(Relaxed) as f64),
    );
    metric(
        CHANGES_CHECKED,
        "counter",
        "Row changes of tracked tables seen in the binlog and checked.",
        one(s.changes_checked.load(Relaxed) as f64),
    );
    let mut not: Vec<(String, f64)> = s
        .not_checked_counts()
        .iter()
        .map(|(t, w, n)| (format!("{{table=\"{}\",reason=\"{w}\"}}", label(t)), *n as f64))
        .collect();
    if not.is_empty() {
        not = NotChecked::ALL.iter().map(|w| (format!("{{table=\"\",reason=\"{}\"}}", w.as_str()), 0.0)).collect();
    }
    metric(CHANGES_NOT_CHECKED, "counter", "Row changes seen and not checked, by table and reason.", not);
    metric(
        XA_HELD,
        "gauge",
        "Prepared XA transactions whose changes wait for XA COMMIT or ROLLBACK.",
        one(s.xa_held.load(Relaxed).max(0) as f64),
    );
    metric(
        RECHECKS_PENDING,
        "gauge",
        "Tables waiting for a full re-check after TRUNCATE, DROP, CREATE or RENAME.",
        one(s.rechecks_pending.load(Relaxed).max(0) as f64),
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
    metric(
        LEDGER_OPEN,
        "gauge",
        "Reported rows still open in the inconsistency ledger.",
        one(s.ledger_open.load(Relaxed).max(0) as f64),
    );
    let vl = s.validated_lag_ms.load(Relaxed);
    metric(
        VALIDATED_LAG,
        "gauge",
        "Seconds binlog mode's validated-through position trails the base (-1: not known yet).",
        one(if vl < 0 { -1.0 } else { vl as f64 / 1000.0 }),
    );
    metric(BASE_QUERIES, "counter", "Statements run on the base.", one(base.queries as f64));
    metric(BASE_ROWS_READ, "counter", "Rows read from the base.", one(base.rows as f64));
    let fallback: Vec<(String, f64)> = s
        .base_read_fallback_counts()
        .iter()
        .map(|(t, w, n)| (format!("{{table=\"{}\",reason=\"{w}\"}}", label(t)), *n as f64))
        .collect();
    let fallback = if fallback.is_empty() { one(0.0) } else { fallback };
    metric(
        BASE_READS_FALLBACK,
        "counter",
        "Binlog mode: changed rows read on the base because their row images could not stand for it, by table and reason.",
        fallback,
    );
    metric(
        CONFIRM_OVERTURNED,
        "counter",
        "Binlog mode: rows the row images judged different and the confirming read of both sides found equal.",
        one(s.confirm_overturned.load(Relaxed) as f64),
    );
    metric(
        REPORTS_ALREADY_OPEN,
        "counter",
        "Binlog mode: reports left out because the ledger holds the row open with the same difference.",
        one(s.reports_already_open.load(Relaxed) as f64),
    );
    let at = s.checkpoint_ms.load(Relaxed);
    let age = if at == 0 { -1.0 } else { crate::clock::now_ms().saturating_sub(at) as f64 / 1000.0 };
    metric(CHECKPOINT_AGE, "gauge", "Seconds since the checkpoint last moved (-1: never).", one(age));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let s = Stats::default();
        s.reported("users", Mode::Binlog, EventType::Neq);
        s.reported("a\"b", Mode::Full, EventType::TargetMissing);
        s.not_checked("users", NotChecked::BeforeStart, 4);
        s.base_read_fallback("users", "row_image_partial", "set binlog_row_image=FULL", 2);
        let text = render(&s, 3, Load { queries: 5, rows: 7 });
        assert!(text.contains("bv_base_rows_read_total 7"), "{text}");
        assert!(
            text.contains("bv_base_reads_fallback_total{table=\"users\",reason=\"row_image_partial\"} 2"),
            "{text}"
        );
        assert!(text.contains("bv_events_total{table=\"users\",type=\"neq\"} 1"), "{text}");
        assert!(text.contains("bv_events_total{table=\"a\\\"b\",type=\"target_missing\"} 1"), "{text}");
        assert!(text.contains("bv_outbox_size 3"));
        assert!(text.contains("# TYPE bv_rows_checked_total counter"));
        assert!(text.contains("bv_checkpoint_age_seconds -1"));
        assert!(text.contains("bv_row_changes_not_checked_total{table=\"users\",reason=\"before_start\"} 4"), "{text}");
        assert_eq!(s.events_of(Mode::Full, EventType::TargetMissing), 1);
        assert_eq!(s.events_of(Mode::Binlog, EventType::TargetMissing), 0);
        assert!(s.accounting().contains("not checked: 4 of `users` (before_start);"), "{}", s.accounting());
    }
}
