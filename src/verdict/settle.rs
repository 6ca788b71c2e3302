//! The settle stage: a mismatch seen while writes are in flight may be lag, not an inconsistency. Each one
//! is persisted as pending, re-checked by key on both sides during the settle window, and reported (into
//! the outbox) only if it still holds when the window ends. One that resolves is counted, not reported.
//! Binlog mode's entries carry the versions the base went through and are judged by them instead
//! ([`versioned`], rule in [`crate::verdict::versions`]).
//!
//! Pending re-checks live in the state store, so a crash or restart keeps them; a feed may move its
//! checkpoint past a key as soon as [`Settle::submit`] returned for it.
//!
//! A feed may submit a key again while a pass re-checks it (between the pass's reads and its commit,
//! which lasts minutes while a full outbox blocks the report). The pass therefore removes or updates an
//! entry only if it is still the one it re-checked (a compare-and-swap on the stored bytes); a newer
//! entry for the key stays and gets its own window.
//!
//! Poll mode's entries keep what their re-checks observed of the base and are judged by that instead of
//! the deadline ([`crate::verdict::observed`]); a later mismatch of a pending poll key keeps its entry,
//! its window and its observations, and only marks the entry changed for the compare-and-swap.

use crate::clock::now_ms;
use crate::deliver::event::{Mismatch, Mode};
use crate::deliver::ledger::Ledger;
use crate::deliver::metrics::Stats;
use crate::deliver::state::Store;
use crate::error::Result;
use crate::key::Key;
use crate::mysql::db::{Db, Row};
use crate::mysql::schema::{PlanSet, TablePlan};
use crate::verdict::check::{check_keys, observe_keys};
use crate::verdict::observed::{Observed, Reading};
use crate::verdict::versions::Versions;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

// How entries are stored (a versioned record), and binlog entries (judged by the base's versions,
// re-checked on the other side only).
mod pass;
mod record;
pub mod versioned;

/// A mismatching key with what its rows looked like, when the reader can tell (poll mode's rule).
pub type Observation = (Key, Mismatch, Option<Reading>);

/// How a pass re-reads a batch of keys: on both sides ([`Recheck::check`]), with what the rows looked like
/// ([`Recheck::observe`], poll entries), or on the other side only ([`Recheck::other_rows`], binlog
/// entries, whose base side is their versions). Production uses [`BothSides`]; the seam lets a unit test
/// run a pass with a deterministic interleaving (a submit landing during the re-check's reads) and with
/// rows of its choosing.
pub trait Recheck: Send + Sync {
    fn check<'a>(&'a self, plan: &'a TablePlan, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<(Key, Mismatch)>>>;
    /// The other side's rows with these keys (those that exist), as [`Db::read_keys`] reads them.
    fn other_rows<'a>(&'a self, plan: &'a TablePlan, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<Row>>>;

    /// Like [`Recheck::check`], with what each mismatching key's rows looked like, for poll mode's rule
    /// ([`crate::verdict::observed`]). A reader that cannot tell gives `None`: its entries are then
    /// judged by their deadline, as other modes' are.
    fn observe<'a>(&'a self, plan: &'a TablePlan, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<Observation>>> {
        Box::pin(async move { Ok(self.check(plan, keys).await?.into_iter().map(|(k, m)| (k, m, None)).collect()) })
    }
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

    fn other_rows<'a>(&'a self, plan: &'a TablePlan, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<Row>>> {
        Box::pin(self.other.read_keys(plan, keys))
    }

    fn observe<'a>(&'a self, plan: &'a TablePlan, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<Observation>>> {
        Box::pin(async move {
            let found = observe_keys(&self.base, &self.other, plan, keys).await?;
            Ok(found.into_iter().map(|(k, m, r)| (k, m, Some(r))).collect())
        })
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
    /// Binlog mode: the versions the base went through ([`crate::verdict::versions`]); re-checks then
    /// read the other side only. `None`: re-checked on both sides.
    pub versions: Option<Versions>,
    /// Poll mode: what its re-checks observed of the base (its settle rule, [`crate::verdict::observed`]).
    /// `None` for other modes, and for poll entries stored before it existed (judged by the deadline).
    pub observed: Option<Observed>,
}

/// What a settle pass needs of every entry, read without the rest of its record (a hot row's entry holds
/// many versions, and most entries are not due).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub mode: Mode,
    pub first_seen_ms: u64,
    pub next_check_ms: u64,
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
    ledger: Arc<Ledger>,
    /// per mode: first-seen time of the oldest pending entry (u64::MAX: none), for validated-through
    oldest: [AtomicU64; 3],
    /// held while the marks and the pending entries they describe change
    mark: tokio::sync::Mutex<()>,
    stats: Arc<Stats>,
    wake: Notify,
    /// When the pass wakes by itself (ms; u64::MAX while a pass runs): a new entry due before then wakes
    /// it, one due later does not (a batch of new entries every few milliseconds would otherwise run a
    /// pass for each). Sequentially consistent: a submitter stores its entry, then reads this; the pass
    /// sets it to MAX, then reads the entries. Either the submitter sees MAX and wakes the pass, or the
    /// pass sees the entry (weaker orderings would allow neither, and the entry to wait a whole nap).
    nap_until: AtomicU64,
    /// Signalled after each pass, so waiters can see the pending set shrink.
    passed: Notify,
    /// Binlog mode: every base commit up to this time (ms) has been read and handed to this stage.
    binlog_horizon: AtomicU64,
}

/// What the settle stage needs to know besides its store and readers.
#[derive(Clone, Debug)]
pub struct SettleConfig {
    /// `check.settle`: how long a mismatch may be lag
    pub window: Duration,
    /// keys re-read per query
    pub batch_size: usize,
    /// `sink.outbox_max`
    pub outbox_max: usize,
    /// `SRC` or `DST`
    pub direction: &'static str,
}

impl Settle {
    pub fn new(
        store: Arc<Store>,
        base: Arc<Db>,
        other: Arc<Db>,
        plans: Arc<PlanSet>,
        cfg: SettleConfig,
        ledger: Arc<Ledger>,
        stats: Arc<Stats>,
    ) -> Settle {
        let recheck = Arc::new(BothSides { base, other });
        Settle::with_recheck(store, recheck, plans, cfg, ledger, stats)
    }

    /// A settle stage whose re-checks read through `recheck`.
    pub fn with_recheck(
        store: Arc<Store>,
        recheck: Arc<dyn Recheck>,
        plans: Arc<PlanSet>,
        cfg: SettleConfig,
        ledger: Arc<Ledger>,
        stats: Arc<Stats>,
    ) -> Settle {
        // A few re-checks per window; never busier than every 50 ms, never idler than every 2 s.
        let interval = (cfg.window / 4).clamp(Duration::from_millis(50), Duration::from_secs(2));
        stats.pending.store(store.pending_len() as i64, Relaxed);
        // An unreadable pending tree marks nothing as pending (0): validated-through then waits for the
        // first pass, which reads it again.
        let marks = heads(&store).map(|all| oldest_marks(&all)).unwrap_or([0; 3]);
        let oldest = marks.map(AtomicU64::new);
        Settle {
            store,
            recheck,
            plans,
            window: cfg.window,
            interval,
            batch_size: cfg.batch_size,
            outbox_max: cfg.outbox_max,
            direction: cfg.direction,
            ledger,
            oldest,
            mark: tokio::sync::Mutex::new(()),
            stats,
            wake: Notify::new(),
            nap_until: AtomicU64::new(u64::MAX),
            passed: Notify::new(),
            binlog_horizon: AtomicU64::new(0),
        }
    }

    /// When the oldest pending mismatch of `mode` was first seen (ms), if any is pending: no verdict of
    /// that mode seen before this time is still open.
    pub fn oldest_pending(&self, mode: Mode) -> Option<u64> {
        Some(self.oldest[mode.index()].load(Relaxed)).filter(|t| *t != u64::MAX)
    }

    /// The ledger this stage opens rows in when it reports them.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
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
                versions: None,
                observed: (mode == Mode::Poll).then(Observed::default),
            })
            .collect();
        if window == 0 {
            // No window to wait out: the caller has just checked, so report at once (one fsync, no re-read).
            let plan = self.plans.get(table);
            let key_cols = plan.map(|p| p.key.clone()).unwrap_or_default();
            return self.report(&key_cols, &items, now).await;
        }
        // A key pending already keeps when it was first seen (its window restarts: a row that keeps
        // changing is judged anew): the change behind it has no verdict yet, and validated-through must
        // not pass it.
        let mut items = items;
        for p in &mut items {
            if let Some(old) = self.store.pending_get::<Pending>(&p.table, &p.key)? {
                // ---- poll mode's rule (observed.rs): a later mismatch keeps the entry, its window and
                // what was observed; its bytes change, so a pass that read the entry before cannot drop it.
                if let (Mode::Poll, Some(seen)) = (p.mode, &old.observed) {
                    let observed = Some(seen.resubmitted());
                    *p = Pending { last: p.last.clone(), observed, ..old };
                    continue;
                }
                // ---- end of poll mode's rule
                p.first_seen_ms = p.first_seen_ms.min(old.first_seen_ms);
            }
        }
        let count = items.len();
        // The mark and the entries move together, so a pass never publishes a mark without them.
        let _mark = self.mark.lock().await;
        self.oldest[mode.index()].fetch_min(now, Relaxed);
        self.store.pending_put(&items).await?;
        tracing::info!(table, count, mode = mode.as_str(), "mismatches wait out the settle window");
        // The gauge is refreshed by the pass this wakes (counting a sled tree walks all of it).
        self.stats.pending.fetch_add(count as i64, Relaxed);
        self.wake_by(items.iter().map(|p| p.next_check_ms).min().unwrap_or(now));
        Ok(())
    }

    /// Binlog mode: when an entry still waiting is looked at again: an interval after `now`, rounded up
    /// to a multiple of half an interval. The looks of entries found at different moments (hot rows',
    /// every few milliseconds) then fall due together and share a pass and a read, instead of a pass
    /// each. A report's due time is not rounded: callers take the earlier of the two. (Poll mode's
    /// looks are not rounded: its rule reports from what its looks observed, so a later look is a later
    /// report.)
    fn next_look(&self, now: u64) -> u64 {
        let interval = self.interval.as_millis() as u64;
        let grid = (interval / 2).max(1);
        (now + interval).div_ceil(grid) * grid
    }

    /// Wakes the pass if it would sleep past `due_ms` (a notification while a pass runs is kept, so the
    /// next pass starts right after it and sees the new entries).
    fn wake_by(&self, due_ms: u64) {
        if due_ms < self.nap_until.load(SeqCst) {
            self.wake.notify_one();
        }
    }

    /// Number of pending re-checks of a mode.
    pub fn pending_of(&self, mode: Mode) -> Result<usize> {
        Ok(heads(&self.store)?.iter().filter(|h| h.mode == mode).count())
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
    /// Every few seconds it also re-checks some open ledger rows (a bounded number each time).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut ledger_due = tokio::time::Instant::now();
        let mut backoff = crate::retry::Backoff::new(crate::retry::Policy::QUERY);
        let mut ledger_after: Option<Vec<u8>> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            if tokio::time::Instant::now() >= ledger_due {
                ledger_due = tokio::time::Instant::now() + LEDGER_EVERY;
                match self.ledger_pass(ledger_after.take()).await {
                    Ok(next) => ledger_after = next,
                    Err(e) => tracing::warn!(error = %e, "re-checking open ledger rows failed; retrying later"),
                }
            }
            // Sleep until the earliest entry is due (a report is not held back by a fixed tick), at
            // most one interval; after a failure, one interval before retrying.
            let nap = match self.pass().await {
                Ok(next) => {
                    backoff.reset();
                    match next {
                        Some(due_ms) => Duration::from_millis(due_ms.saturating_sub(now_ms())).min(self.interval),
                        None => Duration::from_secs(2),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "settle re-check failed; retrying");
                    backoff.next_delay()
                }
            };
            self.passed.notify_waiters();
            self.nap_until.store(now_ms().saturating_add(nap.as_millis() as u64), SeqCst);
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
            self.nap_until.store(u64::MAX, SeqCst);
        }
    }

    /// Re-checks up to [`LEDGER_ROWS`] open ledger rows after the row id `after` (round robin over
    /// passes): equal ones close, the others are marked seen now. Returns where the next pass starts.
    async fn ledger_pass(&self, after: Option<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        if self.ledger.open_count() == 0 {
            return Ok(None);
        }
        // A page of the tree, not all of it: the ledger may hold up to `state.ledger_max` rows.
        let (rows, next) = self.ledger.open_page(after.as_deref(), LEDGER_ROWS)?;
        // Reads both sides: named, so the base queries it makes can be told from the others (db.rs).
        let span = tracing::info_span!("ledger re-check");
        tracing::Instrument::instrument(self.recheck_rows(rows.iter()), span).await?;
        Ok(next)
    }

    /// Re-checks every open ledger row now (the cutover gate, before it answers).
    pub async fn recheck_open_rows(&self) -> Result<()> {
        let rows = self.ledger.open_rows()?;
        self.recheck_rows(rows.iter()).await
    }

    async fn recheck_rows(&self, rows: impl Iterator<Item = &crate::deliver::ledger::OpenRow>) -> Result<()> {
        let mut by_table: HashMap<String, Vec<Key>> = HashMap::new();
        for r in rows {
            by_table.entry(r.table.clone()).or_default().push(r.key.clone());
        }
        for (table, keys) in by_table {
            let Some(plan) = self.plans.get(&table) else { continue };
            for chunk in keys.chunks(self.batch_size) {
                let differ = self.recheck.check(&plan, chunk).await?;
                self.ledger.checked(&table, chunk, &differ).await?;
            }
        }
        Ok(())
    }
}

/// What a re-check decided for its entries.
#[derive(Default)]
struct Concluded {
    /// to report (with the mismatch last seen)
    report: Vec<Pending>,
    /// the entries as read, of those reported (removed if unchanged)
    reported: Vec<Pending>,
    resolved: Vec<Pending>,
    /// (as read, as kept)
    keep: Vec<(Pending, Pending)>,
}

/// How often open ledger rows are re-checked in the background, and how many at a time.
const LEDGER_EVERY: Duration = Duration::from_secs(5);
const LEDGER_ROWS: usize = 500;

/// What a pass needs of every pending entry.
fn heads(store: &Store) -> Result<Vec<Head>> {
    Ok(store.pending_scan::<Pending>(|_| false)?.0)
}

/// Per mode: when the oldest of `entries` was first seen (u64::MAX: none).
fn oldest_marks(entries: &[Head]) -> [u64; 3] {
    let mut marks = [u64::MAX; 3];
    for p in entries {
        let m = &mut marks[p.mode.index()];
        *m = (*m).min(p.first_seen_ms);
    }
    marks
}

/// Poll mode's rule as wired in here (observed.rs has the rule's own tests).
#[cfg(test)]
mod poll_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::event::EventType;
    use crate::key::KeyVal;
    use std::sync::{Mutex, OnceLock, Weak};

    pub(super) fn plan() -> TablePlan {
        TablePlan::for_test(&["v"])
    }

    pub(super) fn key(i: i64) -> Key {
        Key(vec![KeyVal::Int(i)])
    }

    pub(super) fn mismatch(kind: EventType) -> Mismatch {
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

        fn other_rows<'a>(&'a self, _: &'a TablePlan, _: &'a [Key]) -> BoxFuture<'a, Result<Vec<Row>>> {
            Box::pin(async { Ok(Vec::new()) })
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
            versions: None,
            observed: None,
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
        let stats = Arc::new(Stats::default());
        let cfg =
            SettleConfig { window: Duration::from_secs(3600), batch_size: 100, outbox_max: 100, direction: "SRC" };
        let lc = crate::deliver::ledger::LedgerConfig {
            max: 1000,
            resolved_events: false,
            outbox_max: 100,
            direction: "SRC",
        };
        let ledger = Arc::new(Ledger::new(store.clone(), stats.clone(), lc));
        let settle = Arc::new(Settle::with_recheck(
            store.clone(),
            recheck.clone(),
            Arc::new(PlanSet::new(vec![plan()])),
            cfg,
            ledger,
            stats,
        ));
        recheck.settle.set(Arc::downgrade(&settle)).ok();
        settle.pass().await.unwrap();

        let reported: Vec<Key> = store.outbox_peek(10).unwrap().into_iter().map(|(_, e)| e.key).collect();
        assert_eq!(reported, vec![key(1)], "key 1's window ended while it still differed");
        let mut left: Vec<(i64, EventType)> = store
            .pending_all::<Pending>()
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
