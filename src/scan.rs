//! Full mode: whole-table parity in both directions.
//!
//! Each table's key space is cut into segments (numerically, for large tables with one integer key, so
//! segments run concurrently), and each segment is walked in chunks: the base side's next `chunk_rows`
//! rows define the chunk `(lo, hi]`, and the other side's rows in that same range are streamed in pages and
//! matched against them by exact key. Other-side rows with no base row are `base_missing`, base rows left
//! unmatched are `target_missing`, matched pairs go through the compare core. The first chunk has no lower
//! bound and the last no upper bound, so other-side rows before or after every base key are found too.
//!
//! Chunk boundaries are evaluated by each server with its own collation, so no client-side ordering of
//! strings is needed; matching inside a chunk is byte-exact. That needs both servers to order the key
//! alike. When they do not (a key column whose collation or charset differs between the sides), bounds
//! chosen on the base would not line up on the other side, so the walk changes shape: the base's chunks
//! are looked up on the other side by exact key (`target_missing`, `neq`), and afterwards the other side
//! is walked in its own order and looked up on the base by exact key (`base_missing`). Each side is then
//! read about twice, but every verdict is exact whatever the two collations are.
//!
//! Memory is bounded by a few chunks per segment whatever the table size. Finished chunks are recorded in the state store (only after their mismatches
//! are durable as pending re-checks), so an interrupted pass resumes where it stopped.

use crate::check::{row_identity, row_key, verdict, Mismatch};
use crate::db::{Db, Row};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::event::{EventType, Mode};
use crate::key::{Key, KeyVal};
use crate::schema::TablePlan;
use indicatif::ProgressBar;
use mysql_async::Value;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

/// How ranges are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Stream every row of both sides and compare in the client (exact; measured fastest on one host).
    Rows,
}

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
    let (segments, resumed) = match existing {
        Some(RunRecord::V1 { tables, segments }) if tables == names => (segments, true),
        _ => {
            store.clear(&prefix).await?;
            let mut segments = Vec::new();
            for p in &plans {
                segments.extend(split(engine, p).await?);
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
    let rows: HashMap<String, Arc<AtomicU64>> =
        names.iter().map(|n| (n.clone(), Arc::new(AtomicU64::new(0)))).collect();
    let sem = Arc::new(Semaphore::new(engine.cfg.full.parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, seg) in segments.into_iter().enumerate() {
        let (start, done_rows) = match store.get::<SegmentRecord>(&seg_name(i))? {
            Some(SegmentRecord::V1 { done_to, finished, rows: r }) => {
                rows[&seg.table].fetch_add(r, Relaxed);
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
            rows: rows[&seg.table].clone(),
            done_rows,
            bar: bar.clone(),
            shutdown: shutdown.clone(),
        };
        let sem = sem.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            walker.walk(start).await
        });
    }
    let mut first_err = None;
    while let Some(res) = tasks.join_next().await {
        let res = res.unwrap_or_else(|e| Err(Error::Sink(format!("a scan task failed: {e}"))));
        if let Err(e) = res {
            if first_err.is_none() {
                first_err = Some(e);
                tasks.abort_all();
            }
        }
    }
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
        tables: names.iter().map(|n| TableSummary { table: n.clone(), rows: rows[n].load(Relaxed) }).collect(),
        events: EventType::ALL.iter().copied().zip(events).collect(),
        resolved: engine.stats.resolved.load(Relaxed) - resolved_before,
        unsettled,
        undelivered,
        resumed,
        elapsed: started.elapsed(),
    })
}

async fn progress_bar(engine: &Engine, plans: &[Arc<TablePlan>]) -> ProgressBar {
    let mut total = 0;
    for p in plans {
        total += estimate_rows(&engine.base, &p.name).await.unwrap_or(0);
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {per_sec}  eta {eta}") {
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

/// Splits a table into segments: numerically by the key for large tables with one integer key column,
/// else one segment covering everything.
async fn split(engine: &Engine, plan: &TablePlan) -> Result<Vec<Segment>> {
    let whole = vec![Segment { table: plan.name.clone(), lo: None, hi: None }];
    let n = engine.cfg.full.parallel as i128;
    // Keys ordered differently are walked by lookup, with one walk of the other side for the whole table.
    if !plan.integer_key
        || !plan.ordered_alike
        || n < 2
        || estimate_rows(&engine.base, &plan.name).await? < engine.cfg.full.split_rows
    {
        return Ok(whole);
    }
    let mut lo = i128::MAX;
    let mut hi = i128::MIN;
    for db in [&engine.base, &engine.other] {
        let k = crate::db::quote_ident(&plan.column_on(db.side, &plan.key[0]));
        let sql = format!("SELECT MIN({k}), MAX({k}) FROM {}", crate::db::quote_ident(plan.table_on(db.side)));
        let r = db.rows(&sql, vec![], "finding the key range").await?;
        if let Some(row) = r.first() {
            for (i, v) in row.iter().enumerate() {
                let x = match v {
                    Value::Int(x) => i128::from(*x),
                    Value::UInt(x) => i128::from(*x),
                    _ => continue,
                };
                if i == 0 {
                    lo = lo.min(x);
                } else {
                    hi = hi.max(x);
                }
            }
        }
    }
    if hi <= lo || hi - lo < n {
        return Ok(whole);
    }
    let bound = |x: i128| -> Key {
        Key(vec![match i64::try_from(x) {
            Ok(v) => KeyVal::Int(v),
            Err(_) => KeyVal::UInt(x as u64),
        }])
    };
    let mut segs = Vec::new();
    let mut prev: Option<Key> = None;
    for i in 1..n {
        let b = bound(lo + (hi - lo) * i / n);
        segs.push(Segment { table: plan.name.clone(), lo: prev.take(), hi: Some(b.clone()) });
        prev = Some(b);
    }
    segs.push(Segment { table: plan.name.clone(), lo: prev, hi: None });
    Ok(segs)
}

/// Walks one segment chunk by chunk.
struct Walker {
    engine: Engine,
    plan: Arc<TablePlan>,
    /// the name of this segment's progress record
    record: String,
    hi: Option<Key>,
    chunk: usize,
    rows: Arc<AtomicU64>,
    done_rows: u64,
    bar: Option<ProgressBar>,
    shutdown: watch::Receiver<bool>,
}

impl Walker {
    async fn walk(mut self, mut lo: Option<Key>) -> Result<()> {
        let (base, other) = (&self.engine.base, &self.engine.other);
        let mut base_rows = base.read_range(&self.plan, lo.as_ref(), self.hi.as_ref(), self.chunk).await?;
        loop {
            let more = base_rows.len() == self.chunk;
            let hi = match base_rows.last() {
                Some(last) if more => Some(row_key(&self.plan, last)),
                _ => self.hi.clone(),
            };
            // Read the next base chunk while the other side of this one is read and compared.
            let next = async {
                if more {
                    base.read_range(&self.plan, hi.as_ref(), self.hi.as_ref(), self.chunk).await.map(Some)
                } else {
                    Ok(None)
                }
            };
            // A walk by lookup records its last base key even after the last chunk (whose `hi` is the
            // open end), so a resume during its walk of the other side does not redo the base side.
            let done_to = match base_rows.last() {
                Some(last) if !more && !self.plan.ordered_alike => Some(row_key(&self.plan, last)),
                None if !self.plan.ordered_alike => lo.clone(),
                _ => hi.clone(),
            };
            let this = self.compare_chunk(other, lo.as_ref(), hi.as_ref(), base_rows);
            let (next, this) = tokio::join!(next, this);
            let (found, rows) = this?;
            self.engine.settle.submit(&self.plan.name, Mode::Full, found).await?;
            self.done_rows += rows;
            self.rows.fetch_add(rows, Relaxed);
            self.engine.stats.rows_checked.fetch_add(rows, Relaxed);
            if let Some(b) = &self.bar {
                b.inc(rows);
            }
            // A walk by lookup is finished only after its walk of the other side, below.
            let finished = !more && self.plan.ordered_alike;
            let rec = SegmentRecord::V1 { done_to: done_to.clone(), finished, rows: self.done_rows };
            // Mismatches of this chunk are durable (submit flushed them); the record itself may lag.
            self.engine.store.put_lazy(&self.record, &rec)?;
            tracing::debug!(table = %self.plan.name, segment = %self.record, rows = self.done_rows, "chunk done");
            match next? {
                Some(n) => base_rows = n,
                None if self.plan.ordered_alike => return Ok(()),
                None => return self.walk_other_side(done_to).await,
            }
            lo = hi;
            if *self.shutdown.borrow() {
                return Err(Error::Interrupted);
            }
        }
    }

    /// The second half of a walk by lookup: the other side in its own order, each row looked up on the
    /// base by exact key; those the base lacks are `base_missing`. Not resumable on its own: an
    /// interrupted one is walked again from the start.
    async fn walk_other_side(mut self, done_to: Option<Key>) -> Result<()> {
        let found = crate::poll::sweep_table(&self.engine, &self.plan, Mode::Full, &self.shutdown).await? as u64;
        if *self.shutdown.borrow() {
            return Err(Error::Interrupted);
        }
        self.done_rows += found;
        self.rows.fetch_add(found, Relaxed);
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
        let mut rows = base_rows.len() as u64;
        let mut base: HashMap<Vec<u8>, Row> = base_rows.into_iter().map(|r| (row_identity(plan, &r), r)).collect();
        let mut found = Vec::new();
        let mut olo = lo.cloned();
        loop {
            let page = other.read_range(plan, olo.as_ref(), hi, self.chunk).await?;
            let full = page.len() == self.chunk;
            for r in &page {
                let b = base.remove(&row_identity(plan, r));
                if b.is_none() {
                    rows += 1;
                }
                if let Some(m) = verdict(plan, b.as_ref(), Some(r)) {
                    found.push((row_key(plan, r), m));
                }
            }
            if !full {
                break;
            }
            olo = page.last().map(|r| row_key(plan, r));
        }
        for (_, r) in base {
            if let Some(m) = verdict(plan, Some(&r), None) {
                found.push((row_key(plan, &r), m));
            }
        }
        Ok((found, rows))
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
