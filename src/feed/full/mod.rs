//! Full mode: whole-table parity in both directions (the command `full`, the sweep, table re-checks).
//!
//! Each large table is cut into segments holding about equal numbers of rows (every `n`-th key of the
//! base, found by walks of its key index, so skewed, sparse, composite and string keys split as well as
//! dense integers), a few per worker; the segments form one queue that `full.parallel` workers drain.
//! Each segment is walked in chunks, each chunk compared by one of two strategies (see [`Strategy`]):
//! - **rows**: the base side's next `chunk_rows` rows define the chunk `(lo, hi]`, and the other side's
//!   rows in that same range are streamed in pages and matched against them by exact key. Other-side rows
//!   with no base row are `base_missing`, base rows left unmatched are `target_missing`, matched pairs go
//!   through the compare core.
//! - **summary** (`bisect`): both servers reduce the chunk to per-bucket counts and digest sums
//!   ([`summary`]); equal buckets pass, differing ones are bisected down to ranges small enough to
//!   stream as above. Chunks are sized to take about `full.chunk_time`.
//!
//! The first chunk has no lower bound and the last no upper bound, so other-side rows before or after
//! every base key are found too.
//!
//! Chunk boundaries are evaluated by each server with its own collation, so no client-side ordering of
//! strings is needed; matching inside a chunk is byte-exact. That needs both servers to order the key
//! alike. When they do not (a key column whose collation or charset differs between the sides), bounds
//! chosen on the base would not line up on the other side, so the walk changes shape: the base's chunks
//! are looked up on the other side by exact key (`target_missing`, `neq`), and afterwards the other side
//! is walked in its own order and looked up on the base by exact key (`base_missing`). Each side is then
//! read about twice, but every verdict is exact whatever the two collations are.
//!
//! Between chunks, `full.max_load` and `full.rate` may hold the pass back ([`throttle`]). Memory is
//! bounded by a few chunks per worker whatever the table size. Finished chunks are recorded per segment
//! in the state store (only after their mismatches are durable as pending re-checks), so an interrupted
//! pass resumes each segment where it stopped and skips the finished ones.

use crate::deliver::event::{EventType, Mismatch, Mode};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::mysql::db::{Db, Row};
use crate::mysql::schema::TablePlan;
use crate::retry::{retry, Policy};
use crate::verdict::check::{row_identity, row_key, verdict};
use indicatif::ProgressBar;
use matcher::Matcher;
use mysql_async::Value;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use throttle::Throttle;
use tokio::sync::{watch, Semaphore};

mod bisect;
mod choose;
mod matcher;
pub mod summary;
pub mod throttle;

pub use choose::Strategy;

#[derive(Clone, Debug, Default)]
pub struct FullOptions {
    /// Only these tables (default: all configured).
    pub tables: Vec<String>,
    /// Forget an interrupted pass and start over.
    pub restart: bool,
    pub progress_bar: bool,
    /// Which pass this is (`main` for a user's `full` when empty; `recheck/<table>` for a table re-check):
    /// each pass keeps its own progress, so one never clears or resumes another's.
    pub run: String,
    pub strategy: Strategy,
}

impl FullOptions {
    fn prefix(&self) -> String {
        let run = if self.run.is_empty() { "main" } else { &self.run };
        format!("full/{run}/")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Segment {
    table: String,
    lo: Option<Key>,
    hi: Option<Key>,
}

#[derive(Serialize, Deserialize)]
enum RunRecord {
    V1 { tables: Vec<String>, segments: Vec<Segment> },
}

#[derive(Serialize, Deserialize)]
enum SegmentRecord {
    V1 { done_to: Option<Key>, finished: bool, rows: u64 },
}

/// Events the pass reported before it was interrupted (by type, in `EventType::ALL` order), so a resumed
/// pass answers for the whole pass.
#[derive(Serialize, Deserialize)]
enum EventsRecord {
    V1([u64; 3]),
}

#[derive(Debug, Default)]
pub struct TableSummary {
    pub table: String,
    pub rows: u64,
    /// chunks compared by summaries and by streaming rows: which strategy the table used
    pub summary_chunks: u64,
    pub rows_chunks: u64,
}

impl TableSummary {
    /// `summary`, `rows`, or both with their chunk counts.
    pub fn strategy(&self) -> String {
        match (self.summary_chunks, self.rows_chunks) {
            (0, _) => "rows".into(),
            (_, 0) => "summary".into(),
            (s, r) => format!("summary {s} chunks, rows {r} chunks"),
        }
    }
}

/// A table's counters, shared by the walkers of its segments.
#[derive(Default)]
struct Counters {
    rows: AtomicU64,
    summary_chunks: AtomicU64,
    rows_chunks: AtomicU64,
}

#[derive(Debug, Default)]
pub struct FullSummary {
    pub tables: Vec<TableSummary>,
    pub events: Vec<(EventType, u64)>,
    pub resolved: u64,
    /// mismatches still in their settle window when the run stopped waiting
    pub unsettled: usize,
    /// events not yet acknowledged by the sink
    pub undelivered: usize,
    pub resumed: bool,
    pub elapsed: Duration,
}

impl FullSummary {
    pub fn events_total(&self) -> u64 {
        self.events.iter().map(|(_, n)| n).sum()
    }
}

/// One full pass over the configured tables.
pub async fn run_full(engine: &Engine, opts: &FullOptions, shutdown: watch::Receiver<bool>) -> Result<FullSummary> {
    let plans = engine.select_tables(&opts.tables)?;
    let _one_at_a_time = engine.full_gate.lock().await;
    let started = Instant::now();
    let names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    let store = &engine.store;
    let prefix = opts.prefix();
    let (run_name, events_name) = (format!("{prefix}run"), format!("{prefix}events"));
    let seg_name = |i: usize| format!("{prefix}seg/{i:06}");
    let existing = if opts.restart { None } else { store.get::<RunRecord>(&run_name)? };
    // Rows per key value of each table whose split measured it (a single integer key).
    let mut densities: HashMap<String, (u64, i128)> = HashMap::new();
    let (segments, resumed) = match existing {
        Some(RunRecord::V1 { tables, segments }) if tables == names => (segments, true),
        _ => {
            store.clear(&prefix).await?;
            let mut segments = Vec::new();
            for p in &plans {
                let (segs, density) = split(engine, p).await?;
                segments.extend(segs);
                densities.extend(density.map(|d| (p.name.clone(), d)));
            }
            store.put(&run_name, &RunRecord::V1 { tables: names.clone(), segments: segments.clone() }).await?;
            (segments, false)
        }
    };
    let earlier = match store.get::<EventsRecord>(&events_name)? {
        Some(EventsRecord::V1(n)) if resumed => n,
        _ => [0; 3],
    };
    if resumed {
        tracing::info!("resuming an interrupted full pass (use --restart to start over)");
    }
    // Only this pass's own events count: not those of binlog or poll mode in the same process.
    let events_before: Vec<u64> = EventType::ALL.iter().map(|t| engine.stats.events_of(Mode::Full, *t)).collect();
    let events_so_far = || -> [u64; 3] {
        let mut n = earlier;
        for (i, t) in EventType::ALL.iter().enumerate() {
            n[i] += engine.stats.events_of(Mode::Full, *t) - events_before[i];
        }
        n
    };
    let resolved_before = engine.stats.resolved.load(Relaxed);
    engine.stats.full_runs.fetch_add(1, Relaxed);

    let bar = if opts.progress_bar { Some(progress_bar(engine, &plans).await) } else { None };
    let counters: HashMap<String, Arc<Counters>> = names.iter().map(|n| (n.clone(), Arc::default())).collect();
    let throttle = Arc::new(Throttle::new(engine.cfg.full.max_load(), engine.cfg.full.rate, engine.stats.clone()));
    let remote = is_remote(&engine.other.addr) || is_remote(&engine.base.addr);
    let full = &engine.cfg.full;
    let choosers: HashMap<String, choose::Chooser> = names
        .iter()
        .map(|n| {
            let chooser = choose::Chooser::new(opts.strategy, remote, full.chunk_rows, full.chunk_time)
                .with_workers(full.parallel);
            // Summary chunks are cut by key value from the start (no walk of the key index per segment).
            if let Some((rows, span)) = densities.get(n) {
                chooser.found_density(*rows, *span);
            }
            (n.clone(), chooser)
        })
        .collect();
    // The segments form one work queue: `parallel` permits, handed out in order (the semaphore is
    // fair), so every worker takes the next unfinished segment as soon as it is free.
    let sem = Arc::new(Semaphore::new(engine.cfg.full.parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, seg) in segments.into_iter().enumerate() {
        let (start, done_rows) = match store.get::<SegmentRecord>(&seg_name(i))? {
            Some(SegmentRecord::V1 { done_to, finished, rows: r }) => {
                counters[&seg.table].rows.fetch_add(r, Relaxed);
                if finished {
                    continue;
                }
                (done_to.or(seg.lo.clone()), r)
            }
            None => (seg.lo.clone(), 0),
        };
        let Some(plan) = plans.iter().find(|p| p.name == seg.table).cloned() else {
            continue;
        };
        let walker = Walker {
            engine: engine.clone(),
            plan,
            record: seg_name(i),
            hi: seg.hi,
            chunk: engine.cfg.full.chunk_rows,
            counters: counters[&seg.table].clone(),
            done_rows,
            bar: bar.clone(),
            shutdown: shutdown.clone(),
            chooser: choosers[&seg.table].clone(),
            throttle: throttle.clone(),
        };
        let sem = sem.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            walker.walk(start).await
        });
    }
    let mut first_err = None;
    while let Some(res) = tasks.join_next().await {
        let res = res.unwrap_or_else(|e| Err(Error::Internal(format!("a scan task failed: {e}"))));
        if let Err(e) = res {
            if first_err.is_none() {
                first_err = Some(e);
                tasks.abort_all();
            }
        }
    }
    engine.stats.full_held.lock().unwrap_or_else(|e| e.into_inner()).clear();
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some(e) = first_err {
        // Keep what the interrupted pass finished (progress records are written lazily).
        store.put_lazy(&events_name, &EventsRecord::V1(events_so_far()))?;
        store.flush().await?;
        return Err(e);
    }
    // Every chunk is done; let the settle window of the last mismatches end and their events go out.
    let (unsettled, undelivered) = engine.finish(Mode::Full).await?;
    let events = events_so_far();
    store.clear(&prefix).await?;
    Ok(FullSummary {
        tables: names
            .iter()
            .map(|n| {
                let c = &counters[n];
                TableSummary {
                    table: n.clone(),
                    rows: c.rows.load(Relaxed),
                    summary_chunks: c.summary_chunks.load(Relaxed),
                    rows_chunks: c.rows_chunks.load(Relaxed),
                }
            })
            .collect(),
        events: EventType::ALL.iter().copied().zip(events).collect(),
        resolved: engine.stats.resolved.load(Relaxed) - resolved_before,
        unsettled,
        undelivered,
        resumed,
        elapsed: started.elapsed(),
    })
}

/// A server not on this host (its traffic crosses a network): not loopback, not a local socket.
fn is_remote(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']);
    !(host.is_empty() || host == "localhost" || host.starts_with("127.") || host == "::1" || host.starts_with('/'))
}

#[cfg(test)]
#[test]
fn remote_means_not_this_host() {
    assert!(!is_remote("127.0.0.1:3306"));
    assert!(!is_remote("localhost:3306"));
    assert!(!is_remote("[::1]:3306"));
    assert!(is_remote("10.200.0.2:3306"));
    assert!(is_remote("db.example.com:3306"));
}

async fn progress_bar(engine: &Engine, plans: &[Arc<TablePlan>]) -> ProgressBar {
    let mut total = 0;
    for p in plans {
        total += estimate_rows(&engine.base, &p.name).await.unwrap_or(0);
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {per_sec}  eta {eta}  {msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// The server's row estimate (information_schema), cheap and approximate.
async fn estimate_rows(db: &Db, table: &str) -> Result<u64> {
    let rows = db
        .rows(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            vec![db.database.clone().into(), table.into()],
            "estimating rows",
        )
        .await?;
    Ok(match rows.first().and_then(|r| r.first()) {
        Some(Value::UInt(n)) => *n,
        Some(Value::Int(n)) => (*n).max(0) as u64,
        _ => 0,
    })
}

/// Segments per worker: enough that workers finishing early find more work in the queue.
const SEGMENTS_PER_WORKER: u64 = 4;

/// Splits a large table into segments holding about equal numbers of rows, whatever the key's type or
/// distribution: the boundaries are every `n`-th key of the base, found by walks of its key index alone.
/// Small tables, and keys the two servers order differently (walked by lookup), are one segment.
/// On a single integer key, also the rows per key value between the first and the last boundary (rows,
/// span), which the summary strategy cuts chunks by.
async fn split(engine: &Engine, plan: &TablePlan) -> Result<(Vec<Segment>, Option<(u64, i128)>)> {
    let whole = vec![Segment { table: plan.name.clone(), lo: None, hi: None }];
    let workers = engine.cfg.full.parallel as u64;
    if !plan.ordered_alike || workers < 2 {
        return Ok((whole, None));
    }
    let estimate = estimate_rows(&engine.base, &plan.name).await?;
    if estimate < engine.cfg.full.split_rows {
        return Ok((whole, None));
    }
    let step = estimate.div_ceil(workers * SEGMENTS_PER_WORKER).max(1);
    let mut segs = Vec::new();
    let mut prev: Option<Key> = None;
    while let Some(b) = crate::feed::full::summary::nth_key(&engine.base, plan, prev.as_ref(), None, step).await? {
        segs.push(Segment { table: plan.name.clone(), lo: prev.take(), hi: Some(b.clone()) });
        prev = Some(b);
    }
    segs.push(Segment { table: plan.name.clone(), lo: prev, hi: None });
    let int = |k: Option<&Option<Key>>| k.and_then(|k| k.as_ref()).and_then(crate::feed::full::summary::int_of);
    let density = match (plan.integer_key, int(segs.first().map(|s| &s.hi)), int(segs.last().map(|s| &s.lo))) {
        (true, Some(first), Some(last)) if last > first => Some((step * (segs.len() as u64 - 2), last - first)),
        _ => None,
    };
    Ok((segs, density))
}

/// What one chunk did.
struct Step {
    /// the chunk's upper bound (the segment's when it is the last)
    hi: Option<Key>,
    /// more chunks follow in this segment
    more: bool,
    found: Vec<(Key, Mismatch)>,
    rows: u64,
    /// the next chunk's base rows, read ahead while this one was compared (rows strategy), and the limit
    /// they were read with
    next: Option<(Vec<Row>, usize)>,
    /// the last base key of this chunk (for a walk by lookup's record)
    last_base: Option<Key>,
}

/// Walks one segment chunk by chunk.
struct Walker {
    engine: Engine,
    plan: Arc<TablePlan>,
    /// the name of this segment's progress record
    record: String,
    hi: Option<Key>,
    chunk: usize,
    counters: Arc<Counters>,
    done_rows: u64,
    bar: Option<ProgressBar>,
    shutdown: watch::Receiver<bool>,
    chooser: choose::Chooser,
    throttle: Arc<Throttle>,
}

impl Walker {
    async fn walk(mut self, mut lo: Option<Key>) -> Result<()> {
        let summaries = self.plan.digest.is_some() && self.plan.ordered_alike;
        let mut ahead: Option<(Vec<Row>, usize)> = None;
        loop {
            self.throttle.wait(&self.engine.base, &self.engine.other, &self.shutdown).await?;
            if let Some(b) = &self.bar {
                b.set_message(self.engine.stats.full_held.lock().unwrap_or_else(|e| e.into_inner()).clone());
            }
            let by_summary = summaries && self.chooser.pick();
            let started = Instant::now();
            // Base rows read ahead for a rows chunk are dropped when this chunk goes by summary.
            let read_ahead = ahead.take();
            // A transient failure (a dropped connection, a lock wait) retries the chunk with the one
            // policy; nothing of a failed attempt was submitted, so the retry repeats it whole.
            let step = if by_summary {
                retry(Policy::QUERY, &self.shutdown, "a full-mode chunk", || self.summary_step(lo.as_ref())).await?
            } else {
                let mut read_ahead = Some(read_ahead);
                let attempt = || self.rows_step(lo.as_ref(), read_ahead.take().flatten());
                retry(Policy::QUERY, &self.shutdown, "a full-mode chunk", attempt).await?
            };
            self.chooser.measured(by_summary, started.elapsed(), step.rows);
            let counter = if by_summary { &self.counters.summary_chunks } else { &self.counters.rows_chunks };
            counter.fetch_add(1, Relaxed);
            // A walk by lookup records its last base key even after the last chunk (whose `hi` is the
            // open end), so a resume during its walk of the other side does not redo the base side.
            let done_to = match &step.last_base {
                Some(last) if !step.more && !self.plan.ordered_alike => Some(last.clone()),
                None if !self.plan.ordered_alike => lo.clone(),
                _ => step.hi.clone(),
            };
            self.engine.settle.submit(&self.plan.name, Mode::Full, step.found).await?;
            self.done_rows += step.rows;
            self.counters.rows.fetch_add(step.rows, Relaxed);
            self.engine.stats.rows_checked.fetch_add(step.rows, Relaxed);
            if let Some(b) = &self.bar {
                b.inc(step.rows);
            }
            // A walk by lookup is finished only after its walk of the other side, below.
            let finished = !step.more && self.plan.ordered_alike;
            let rec = SegmentRecord::V1 { done_to: done_to.clone(), finished, rows: self.done_rows };
            // Mismatches of this chunk are durable (submit flushed them); the record itself may lag.
            self.engine.store.put_lazy(&self.record, &rec)?;
            tracing::debug!(table = %self.plan.name, segment = %self.record, rows = self.done_rows, by_summary, "chunk done");
            if !step.more {
                if self.plan.ordered_alike {
                    return Ok(());
                }
                return self.walk_other_side(done_to).await;
            }
            ahead = step.next;
            lo = step.hi;
            if *self.shutdown.borrow() {
                return Err(Error::Interrupted);
            }
        }
    }

    /// One chunk by streaming: the base's next `chunk` rows define `(lo, hi]`, the other side's rows in it
    /// are streamed and matched. The next base chunk is read meanwhile.
    async fn rows_step(&self, lo: Option<&Key>, ahead: Option<(Vec<Row>, usize)>) -> Result<Step> {
        let (base, other) = (&self.engine.base, &self.engine.other);
        let (base_rows, limit) = match ahead {
            Some(read) => read,
            None => {
                let limit = self.chooser.rows_limit(self.chunk);
                (base.read_range(&self.plan, lo, self.hi.as_ref(), limit).await?, limit)
            }
        };
        let more = base_rows.len() == limit;
        let last_base = base_rows.last().map(|r| row_key(&self.plan, r));
        let hi = if more { last_base.clone() } else { self.hi.clone() };
        let base_count = base_rows.len() as u64;
        let next = async {
            if more {
                let limit = self.chooser.rows_limit(self.chunk);
                let rows = base.read_range(&self.plan, hi.as_ref(), self.hi.as_ref(), limit).await?;
                Ok(Some((rows, limit)))
            } else {
                Ok(None)
            }
        };
        let this = self.compare_chunk(other, lo, hi.as_ref(), base_rows);
        let (next, this) = tokio::join!(next, this);
        let (found, rows) = this?;
        self.throttle.charge(base_count, rows);
        Ok(Step { hi, more, found, rows, next: next?, last_base })
    }

    /// The second half of a walk by lookup: the other side in its own order, each row looked up on the
    /// base by exact key; those the base lacks are `base_missing`. Not resumable on its own: an
    /// interrupted one is walked again from the start.
    async fn walk_other_side(mut self, done_to: Option<Key>) -> Result<()> {
        let found = crate::feed::poll::sweep_table(&self.engine, &self.plan, Mode::Full, &self.shutdown).await? as u64;
        if *self.shutdown.borrow() {
            return Err(Error::Interrupted);
        }
        self.done_rows += found;
        self.counters.rows.fetch_add(found, Relaxed);
        self.engine.stats.rows_checked.fetch_add(found, Relaxed);
        let rec = SegmentRecord::V1 { done_to, finished: true, rows: self.done_rows };
        self.engine.store.put_lazy(&self.record, &rec)?;
        Ok(())
    }

    /// Matches the other side's rows in `(lo, hi]` against this chunk's base rows.
    async fn compare_chunk(
        &self,
        other: &Db,
        lo: Option<&Key>,
        hi: Option<&Key>,
        base_rows: Vec<Row>,
    ) -> Result<(Vec<(Key, Mismatch)>, u64)> {
        let plan = &self.plan;
        if !plan.ordered_alike {
            return self.compare_by_key(other, base_rows).await;
        }
        // A page a little larger than a full chunk takes the other side's rows of any base chunk (a full
        // one, or a probe's fifth) in one query when the two sides hold about as many rows there (the
        // usual case), with no second query to find the range exhausted.
        let page = self.chunk + self.chunk / 8 + 16;
        let mut matcher = Matcher::new(base_rows);
        let mut olo = lo.cloned();
        loop {
            let mut last: Option<Row> = None;
            let n = other
                .each_in_range(plan, olo.as_ref(), hi, page, |r| {
                    matcher.other_row(plan, &r);
                    last = Some(r);
                })
                .await?;
            match last {
                Some(last) if n == page => olo = Some(row_key(plan, &last)),
                _ => break,
            }
        }
        Ok(matcher.finish(plan))
    }

    /// Looks this chunk's base rows up on the other side by exact key (the walk by lookup).
    async fn compare_by_key(&self, other: &Db, base_rows: Vec<Row>) -> Result<(Vec<(Key, Mismatch)>, u64)> {
        let plan = &self.plan;
        let keys: Vec<Key> = base_rows.iter().map(|r| row_key(plan, r)).collect();
        let found_other: HashMap<Vec<u8>, Row> =
            other.read_keys(plan, &keys).await?.into_iter().map(|r| (row_identity(plan, &r), r)).collect();
        let mut found = Vec::new();
        for (b, k) in base_rows.iter().zip(keys) {
            if let Some(m) = verdict(plan, Some(b), found_other.get(&row_identity(plan, b))) {
                found.push((k, m));
            }
        }
        Ok((found, base_rows.len() as u64))
    }
}
