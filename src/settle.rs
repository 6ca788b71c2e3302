//! The settle stage: a mismatch seen while writes are in flight may be lag, not an inconsistency. Each one
//! is persisted as pending, re-checked by key on both sides during the settle window, and reported (into
//! the outbox) only if it still holds when the window ends. One that resolves is counted, not reported.
//!
//! Pending re-checks live in the state store, so a crash or restart keeps them; a feed may move its
//! checkpoint past a key as soon as [`Settle::submit`] returned for it.
//!
//! A feed may submit a key again while a pass re-checks it (between the pass's reads and its commit,
//! which lasts minutes while a full outbox blocks the report). The pass therefore removes or updates an
//! entry only if it is still the one it re-checked (a compare-and-swap on the stored bytes); a newer
//! entry for the key stays and gets its own window.

use crate::check::{check_keys, Mismatch};
use crate::db::Db;
use crate::error::Result;
use crate::event::{now_ms, Event, Mode};
use crate::key::Key;
use crate::metrics::Stats;
use crate::schema::{PlanSet, TablePlan};
use crate::state::Store;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How a pass re-reads a batch of keys on both sides. Production uses [`BothSides`]; the seam lets a unit
/// test run a pass with a deterministic interleaving (a submit landing during the re-check's reads).
pub trait Recheck: Send + Sync {
    fn check<'a>(&'a self, plan: &'a TablePlan, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<(Key, Mismatch)>>>;
}

/// Re-checks by reading both databases ([`check_keys`]).
pub struct BothSides {
    pub base: Arc<Db>,
    pub other: Arc<Db>,
}

impl Recheck for BothSides {
    fn check<'a>(&'a self, plan: &'a TablePlan, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<(Key, Mismatch)>>> {
        Box::pin(check_keys(&self.base, &self.other, plan, keys))
    }
}

/// A mismatch waiting for its settle window to end.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    pub table: String,
    pub key: Key,
    pub mode: Mode,
    pub first_seen_ms: u64,
    pub deadline_ms: u64,
    pub next_check_ms: u64,
    pub last: Mismatch,
}

pub struct Settle {
    store: Arc<Store>,
    recheck: Arc<dyn Recheck>,
    plans: Arc<PlanSet>,
    window: Duration,
    interval: Duration,
    batch_size: usize,
    outbox_max: usize,
    direction: &'static str,
    stats: Arc<Stats>,
    wake: Notify,
    /// Signalled after each pass, so waiters can see the pending set shrink.
    passed: Notify,
}

impl Settle {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        base: Arc<Db>,
        other: Arc<Db>,
        plans: Arc<PlanSet>,
        window: Duration,
        batch_size: usize,
        outbox_max: usize,
        direction: &'static str,
        stats: Arc<Stats>,
    ) -> Settle {
        let recheck = Arc::new(BothSides { base, other });
        Settle::with_recheck(store, recheck, plans, window, batch_size, outbox_max, direction, stats)
    }

    /// A settle stage whose re-checks read through `recheck`.
    #[allow(clippy::too_many_arguments)]
    pub fn with_recheck(
        store: Arc<Store>,
        recheck: Arc<dyn Recheck>,
        plans: Arc<PlanSet>,
        window: Duration,
        batch_size: usize,
        outbox_max: usize,
        direction: &'static str,
        stats: Arc<Stats>,
    ) -> Settle {
        // A few re-checks per window; never busier than every 50 ms, never idler than every 2 s.
        let interval = (window / 4).clamp(Duration::from_millis(50), Duration::from_secs(2));
        stats.pending.store(store.pending_len() as i64, Relaxed);
        Settle {
            store,
            recheck,
            plans,
            window,
            interval,
            batch_size,
            outbox_max,
            direction,
            stats,
            wake: Notify::new(),
            passed: Notify::new(),
        }
    }

    /// Persists mismatches as pending re-checks. Returns once they are durable.
    /// Fails once the sink refuses events for good, so every feed stops with the fix.
    pub async fn submit(&self, table: &str, mode: Mode, found: Vec<(Key, Mismatch)>) -> Result<()> {
        self.store.sink_refused()?;
        if found.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let window = self.window.as_millis() as u64;
        let items: Vec<Pending> = found
            .into_iter()
            .map(|(key, last)| Pending {
                table: table.to_string(),
                key,
                mode,
                first_seen_ms: now,
                deadline_ms: now + window,
                next_check_ms: now + (self.interval.as_millis() as u64).min(window),
                last,
            })
            .collect();
        if window == 0 {
            // No window to wait out: the caller has just checked, so report at once (one fsync, no re-read).
            let plan = self.plans.get(table);
            let key_cols = plan.map(|p| p.key.clone()).unwrap_or_default();
            return self.report(&key_cols, &items, now).await;
        }
        let count = items.len();
        self.store.pending_put(&items).await?;
        tracing::info!(table, count, mode = mode.as_str(), "mismatches wait out the settle window");
        // The gauge is refreshed by the pass this wakes (counting a sled tree walks all of it).
        self.stats.pending.fetch_add(count as i64, Relaxed);
        self.wake.notify_one();
        Ok(())
    }

    /// Number of pending re-checks of a mode.
    pub fn pending_of(&self, mode: Mode) -> Result<usize> {
        Ok(self.store.pending_all()?.iter().filter(|p| p.mode == mode).count())
    }

    /// Waits until no re-check of `mode` is pending, or `timeout` passes. Returns what is left.
    pub async fn wait_settled(&self, mode: Mode, timeout: Duration) -> Result<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let passed = self.passed.notified();
            self.store.sink_refused()?;
            let left = self.pending_of(mode)?;
            if left == 0 {
                return Ok(0);
            }
            if tokio::time::timeout_at(deadline, passed).await.is_err() {
                return self.pending_of(mode);
            }
        }
    }

    /// Runs re-check passes until `shutdown` turns true. Transient failures are retried on the next pass.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            // Sleep until the earliest entry is due (a report is not held back by a fixed tick), at
            // most one interval; after a failure, one interval before retrying.
            let nap = match self.pass().await {
                Ok(Some(due_ms)) => Duration::from_millis(due_ms.saturating_sub(now_ms())).min(self.interval),
                Ok(None) => Duration::from_secs(2),
                Err(e) => {
                    tracing::warn!(error = %e, "settle re-check failed; retrying");
                    self.interval
                }
            };
            self.passed.notify_waiters();
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One pass: re-checks every pending entry that is due. Returns when the next entry falls due.
    async fn pass(&self) -> Result<Option<u64>> {
        let now = now_ms();
        let (due, later): (Vec<Pending>, Vec<Pending>) =
            self.store.pending_all()?.into_iter().partition(|p| p.next_check_ms <= now);
        let mut next = later.iter().map(|p| p.next_check_ms).min();
        let mut by_table: HashMap<String, Vec<Pending>> = HashMap::new();
        for p in due {
            by_table.entry(p.table.clone()).or_default().push(p);
        }
        for (table, items) in by_table {
            let Some(plan) = self.plans.get(&table) else {
                tracing::warn!(table = %table, "pending re-check for a table no longer configured; dropped");
                self.store.pending_remove_if_unchanged(&items)?;
                continue;
            };
            for chunk in items.chunks(self.batch_size) {
                if let Some(n) = self.recheck(&plan, chunk).await? {
                    next = Some(next.map_or(n, |m| m.min(n)));
                }
            }
        }
        self.stats.pending.store(self.store.pending_len() as i64, Relaxed);
        Ok(next)
    }

    /// Re-checks entries; reports those whose window ended, drops those that resolved. Returns when the
    /// earliest entry kept falls due.
    async fn recheck(&self, plan: &TablePlan, items: &[Pending]) -> Result<Option<u64>> {
        let keys: Vec<Key> = items.iter().map(|p| p.key.clone()).collect();
        let still: HashMap<Vec<u8>, Mismatch> =
            self.recheck.check(plan, &keys).await?.into_iter().map(|(k, m)| (k.canonical(), m)).collect();
        let now = now_ms();
        let (mut resolved, mut report, mut reported, mut keep) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for p in items {
            match still.get(&p.key.canonical()) {
                None => resolved.push(p.clone()),
                Some(m) if now >= p.deadline_ms => {
                    report.push(Pending { last: m.clone(), ..p.clone() });
                    reported.push(p.clone());
                }
                Some(m) => keep.push((
                    p.clone(),
                    Pending {
                        last: m.clone(),
                        next_check_ms: (now + self.interval.as_millis() as u64).min(p.deadline_ms),
                        ..p.clone()
                    },
                )),
            }
        }
        // Into the outbox first, then out of pending: a crash in between reports twice, never zero times.
        // Each entry leaves (or changes) only if it is still the one read above: a mismatch submitted for
        // the same key meanwhile is newer than these reads and must not vanish unreported.
        self.report(&plan.key, &report, now).await?;
        self.store.pending_remove_if_unchanged(&reported)?;
        let gone = self.store.pending_remove_if_unchanged(&resolved)?;
        self.stats.resolved.fetch_add(gone as u64, Relaxed);
        self.store.pending_replace_if_unchanged(&keep).await?;
        Ok(keep.iter().map(|(_, p)| p.next_check_ms).min())
    }

    /// Turns mismatches into events, stored durably in the outbox.
    async fn report(&self, key_columns: &[String], items: &[Pending], now: u64) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let events: Vec<Event> = items
            .iter()
            .map(|p| Event {
                kind: p.last.kind,
                direction: self.direction.to_string(),
                table: p.table.clone(),
                key_columns: key_columns.to_vec(),
                key: p.key.clone(),
                mode: p.mode,
                columns: p.last.columns.clone(),
                detected_at_ms: now,
            })
            .collect();
        self.store.outbox_push(&events, self.outbox_max).await?;
        for e in &events {
            self.stats.reported(&e.table, e.mode, e.kind);
            tracing::info!(table = %e.table, kind = e.kind.as_str(), "inconsistency reported");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Kind;
    use crate::event::EventType;
    use crate::key::KeyVal;
    use std::sync::{Mutex, OnceLock, Weak};

    fn plan() -> TablePlan {
        TablePlan {
            name: "t".into(),
            key: vec!["id".into()],
            compared: vec!["v".into()],
            kinds: vec![(Kind::Int, Kind::Int)],
            integer_key: true,
            ordered_alike: true,
            utime: None,
            one_sided: vec![],
            loaded_at: std::time::Instant::now(),
            ddl_at: None,
            digest: None,
        }
    }

    fn key(i: i64) -> Key {
        Key(vec![KeyVal::Int(i)])
    }

    fn mismatch(kind: EventType) -> Mismatch {
        Mismatch { kind, columns: vec![] }
    }

    /// Re-check reads that answer from a script and, while "reading", let a feed submit new mismatches
    /// for keys of the batch: the interleaving the race needs, without timing.
    struct Interleaved {
        settle: OnceLock<Weak<Settle>>,
        still: Vec<(Key, Mismatch)>,
        submitted_meanwhile: Mutex<Vec<(Key, Mismatch)>>,
    }

    impl Recheck for Interleaved {
        fn check<'a>(&'a self, _: &'a TablePlan, _: &'a [Key]) -> BoxFuture<'a, Result<Vec<(Key, Mismatch)>>> {
            Box::pin(async move {
                let found = std::mem::take(&mut *self.submitted_meanwhile.lock().unwrap());
                let settle = self.settle.get().and_then(Weak::upgrade).expect("settle is alive");
                settle.submit("t", Mode::Poll, found).await?;
                Ok(self.still.clone())
            })
        }
    }

    fn due(k: i64, kind: EventType, deadline_ms: u64) -> Pending {
        Pending {
            table: "t".into(),
            key: key(k),
            mode: Mode::Full,
            first_seen_ms: 0,
            deadline_ms,
            next_check_ms: 0,
            last: mismatch(kind),
        }
    }

    /// Key 1 is reported, key 2 resolved, key 3 kept by the pass; each was submitted again (as a new
    /// `base_missing`) while the pass read it. The new entries must all survive the pass.
    #[tokio::test]
    async fn a_mismatch_submitted_during_a_recheck_is_not_removed_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let far = now_ms() + 3_600_000;
        store
            .pending_put(&[due(1, EventType::Neq, 0), due(2, EventType::Neq, 0), due(3, EventType::Neq, far)])
            .await
            .unwrap();
        let recheck = Arc::new(Interleaved {
            settle: OnceLock::new(),
            still: vec![(key(1), mismatch(EventType::Neq)), (key(3), mismatch(EventType::Neq))],
            submitted_meanwhile: Mutex::new((1..=3).map(|i| (key(i), mismatch(EventType::BaseMissing))).collect()),
        });
        let settle = Arc::new(Settle::with_recheck(
            store.clone(),
            recheck.clone(),
            Arc::new(PlanSet::new(vec![plan()])),
            Duration::from_secs(3600),
            100,
            100,
            "SRC",
            Arc::new(Stats::default()),
        ));
        recheck.settle.set(Arc::downgrade(&settle)).ok();
        settle.pass().await.unwrap();

        let reported: Vec<Key> = store.outbox_peek(10).unwrap().into_iter().map(|(_, e)| e.key).collect();
        assert_eq!(reported, vec![key(1)], "key 1's window ended while it still differed");
        let mut left: Vec<(i64, EventType)> = store
            .pending_all()
            .unwrap()
            .into_iter()
            .map(|p| {
                (
                    match p.key.0[0] {
                        KeyVal::Int(i) => i,
                        _ => -1,
                    },
                    p.last.kind,
                )
            })
            .collect();
        left.sort_by_key(|(i, _)| *i);
        assert_eq!(
            left,
            vec![(1, EventType::BaseMissing), (2, EventType::BaseMissing), (3, EventType::BaseMissing)],
            "the entries submitted during the re-check must stay pending"
        );
    }
}
