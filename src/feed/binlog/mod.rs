//! Binlog mode: tails the base's binlog as a replica, turns every row change of a tracked table into keys
//! and the versions its row images show ([`history`]), checks each key's latest image against the other
//! side (reading nothing on the base), and checkpoints the position.
//!
//! Two stages joined by a bounded channel, so a slow check applies backpressure to the stream:
//! - the [`reader`] feeds events through the [`assemble`]r into [`Batch`]es of whole transactions,
//!   carrying the position right after the last of them;
//! - the checker (here) records what must outlive the checkpoint (held XA transactions, table re-checks),
//!   checks each batch's keys, hands the verdicts to the settle stage in batch order (which persists
//!   them), and only then saves the batch's position as the checkpoint. Batches are handled in order, so the checkpoint never
//!   passes a change whose check is not done or durable, and never moves backward.
//!
//! Every row change of a tracked table is accounted for: checked, held (a prepared XA transaction), or
//! counted as not checked with a reason. A check that fails definitely stops the mode with the table,
//! the problem and the fix, and the reader stops with it.

pub mod assemble;
pub mod batch;
pub mod compressed;
pub mod decode;
pub mod history;
mod hold;
pub mod image;
pub mod normal;
pub mod reader;
pub mod recheck;
pub mod shape;
mod start;

#[cfg(test)]
mod fixtures;

use crate::deliver::event::{Mismatch, Mode};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::mysql::db::Row;
use crate::mysql::position::{Checkpoint, CheckpointRecord};
use crate::mysql::schema::TablePlan;
use crate::verdict::check::{check_keys, row_identity};
use crate::verdict::compare::compare_rows;
use crate::verdict::compare::digest::{digest, Side};
use crate::verdict::settle::versioned::{Seen, Sighted};
use assemble::Txn;
use futures_util::StreamExt;
use history::{History, NoImage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub use batch::Batch;
pub use start::{current_position, resolve_start, saved_checkpoint, Start, StartPoint, CHECKPOINT};

/// State-store prefix of prepared XA transactions whose keys wait for XA COMMIT/ROLLBACK.
const XA_PREFIX: &str = "binlog/xa/";

#[derive(Serialize, Deserialize)]
enum XaRecord {
    V1(Txn),
}

/// Prepared XA transactions recorded by earlier runs, by record id (`xid@file:pos`). When an XID has
/// two records (a crash between a reused XID's new prepare and the old one's removal), the newer
/// prepare's stands and the older one is dropped: its commit is behind the checkpoint.
fn held_transactions(engine: &Engine) -> Result<BTreeMap<String, Txn>> {
    let mut by_xid: BTreeMap<String, (crate::mysql::position::BinlogPos, String, Txn)> = BTreeMap::new();
    for (name, XaRecord::V1(t)) in engine.store.scan::<XaRecord>(XA_PREFIX)? {
        let id = name[XA_PREFIX.len()..].to_string();
        let (xid, at) = assemble::split_record(&id);
        let at = crate::mysql::position::BinlogPos::parse(at)
            .unwrap_or_else(|| crate::mysql::position::BinlogPos::new("", 0));
        let xid = xid.to_string();
        match by_xid.get(&xid) {
            Some((older, old_id, _)) if *older < at => {
                engine.store.remove(&format!("{XA_PREFIX}{old_id}"))?;
                by_xid.insert(xid, (at, id, t));
            }
            Some(_) => engine.store.remove(&name)?,
            None => {
                by_xid.insert(xid, (at, id, t));
            }
        }
    }
    Ok(by_xid.into_values().map(|(_, id, t)| (id, t)).collect())
}

/// Runs binlog mode until `shutdown` turns true or a definite error. `override_start` (a time, from the
/// API's `utime`) applies only when there is no checkpoint.
pub async fn run(engine: &Engine, override_start: Option<StartPoint>, shutdown: watch::Receiver<bool>) -> Result<()> {
    let start = resolve_start(engine, override_start).await?;
    run_from(engine, start, shutdown).await
}

/// Runs binlog mode from an already resolved start (resolve first when the caller must know the
/// position is fixed before it answers, as `/incr/start` does).
pub async fn run_from(engine: &Engine, start: start::Start, shutdown: watch::Receiver<bool>) -> Result<()> {
    tracing::info!(start = %start.pos, "tailing the binlog");
    let held = held_transactions(engine)?;
    if !held.is_empty() {
        tracing::info!(count = held.len(), "prepared XA transactions from an earlier run wait for their XA COMMIT");
    }
    engine.stats.xa_held.store(held.len() as i64, Relaxed);
    // Table re-checks recorded by an earlier run (a TRUNCATE seen just before a crash) resume now.
    let rechecks = tokio::spawn(recheck::run(engine.clone(), shutdown.clone()));
    let (tx, rx) = mpsc::channel(4);
    // The first check of a change waits part of the settle window (see `hold`).
    let delay = hold::first_check_delay(engine.cfg.check.settle);
    let (rx, holding) = if delay.is_zero() {
        (rx, None)
    } else {
        let (held_tx, held_rx) = mpsc::channel(4);
        let max_keys = engine.cfg.check.batch_size;
        (held_rx, Some(tokio::spawn(hold::run(rx, held_tx, delay, max_keys, shutdown.clone()))))
    };
    // Checkpoints waiting to be validated-through: the saved one first (pending entries of an earlier
    // run, first seen before now, hold it back until they have a verdict).
    let behind: Behind = Default::default();
    if let Some(c) = saved_checkpoint(engine)? {
        lock(&behind).push_back((c, crate::clock::now_ms(), 0));
    }
    let publishing = tokio::spawn(publish_validated(engine.clone(), behind.clone(), shutdown.clone()));
    // The reader stops when the checker does (its channel closes), whatever the reason.
    let reader = reader::Reader::new(engine.clone(), start, held, tx, shutdown.clone());
    let reading = reader.spawn();
    let checked = match check_batches(engine, rx, shutdown, &behind).await {
        // Stopped while a check was being retried: that batch stays behind the checkpoint.
        Err(Error::Interrupted) => Ok(()),
        other => other,
    };
    let read = reading.await;
    if let Some(h) = holding {
        let _ = h.await;
    }
    engine.recheck_wake.notify_one();
    rechecks.abort();
    let _ = rechecks.await;
    publishing.abort();
    let _ = publishing.await;
    engine.stats.warn_not_checked();
    checked.and(read)
}

/// Checks batches in order and advances the checkpoint behind them.
async fn check_batches(
    engine: &Engine,
    mut rx: mpsc::Receiver<Batch>,
    shutdown: watch::Receiver<bool>,
    behind: &Behind,
) -> Result<()> {
    let mut last = saved_checkpoint(engine)?;
    let result = check_in_order(engine, &mut rx, &shutdown, &mut last, behind).await;
    // Close the channel first, so a reader waiting to hand over a batch stops instead of waiting.
    rx.close();
    engine.store.flush().await?;
    result
}

async fn check_in_order(
    engine: &Engine,
    rx: &mut mpsc::Receiver<Batch>,
    shutdown: &watch::Receiver<bool>,
    last: &mut Option<Checkpoint>,
    behind: &Behind,
) -> Result<()> {
    // Several batches are checked at once, but `buffered` yields them in the order they came, so the
    // checkpoint still only ever moves behind every batch before it.
    let batches = futures_util::stream::poll_fn(|cx| rx.poll_recv(cx));
    let mut checked = batches.map(|batch| check_batch(engine, shutdown, batch)).buffered(CHECKS_IN_FLIGHT);
    // Pending entries are not waited for on disk: the checkpoint written after them carries them there.
    // Until a checkpoint is on disk, a crash would restart from a new `binlog.start` (such as `now`) and
    // skip the changes whose entries were lost, so the first one is written durably, entries first.
    let mut durable = last.is_some();
    while let Some(done) = checked.next().await {
        let Checked { horizon_ms, end, end_ts, releases, verdicts } = done?;
        // Before the checkpoint passes the batch: its verdicts are stored first.
        settle_in_order(engine, verdicts).await?;
        if !durable {
            engine.store.flush().await?;
        }
        engine.settle.binlog_read_through(horizon_ms);
        if let Some(end) = end {
            if last.as_ref().is_none_or(|l| end.pos > l.pos) {
                {
                    let mut q = lock(behind);
                    if q.len() >= BEHIND_MAX {
                        // Bounded: a middle entry goes (validated-through then moves in larger steps,
                        // never past a change without a verdict).
                        let middle = q.len() / 2;
                        q.remove(middle);
                    }
                    q.push_back((end.clone(), crate::clock::now_ms(), u64::from(end_ts) * 1000));
                }
                // Written after this batch's pending entries and events, so whenever it reaches the disk
                // they are there too (sled recovers a prefix of its writes; events were flushed already);
                // it need not wait for the disk itself (sled flushes it within its interval, and on
                // shutdown). Only the first one waits (above).
                if durable {
                    engine.store.put_lazy(CHECKPOINT, &CheckpointRecord::V1(end.clone()))?;
                } else {
                    engine.store.put(CHECKPOINT, &CheckpointRecord::V1(end.clone())).await?;
                    durable = true;
                }
                engine.stats.checkpoint_ms.store(crate::clock::now_ms(), Relaxed);
                engine.checkpoint.send_replace(Some(end.clone()));
                *last = Some(end);
            }
        }
        // After the checkpoint: sled recovers a prefix of its writes, so a removal that survives a crash
        // has the checkpoint past the XA COMMIT with it; one that does not is simply redone.
        for id in releases {
            engine.store.remove(&format!("{XA_PREFIX}{id}"))?;
        }
    }
    Ok(())
}

/// Checkpoints kept waiting to become validated-through, at most.
const BEHIND_MAX: usize = 10_000;

/// Checkpoints not yet validated-through: (position, when it was saved, base commit time in ms).
type Behind = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<(Checkpoint, u64, u64)>>>;

fn lock(b: &Behind) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(Checkpoint, u64, u64)>> {
    b.lock().unwrap_or_else(|e| e.into_inner())
}

/// Publishes the validated-through position: the newest checkpoint saved before the oldest mismatch
/// still pending in binlog mode was first seen (so every change up to it has a final verdict), and
/// before any table re-check still to run.
async fn publish_validated(engine: Engine, behind: Behind, mut shutdown: watch::Receiver<bool>) {
    loop {
        let oldest = engine.settle.oldest_pending(Mode::Binlog).unwrap_or(u64::MAX);
        let floor =
            recheck::pending(&engine).ok().and_then(|r| r.into_iter().filter_map(|r| r.from).map(|c| c.pos).min());
        let mut newest = None;
        {
            let mut q = lock(&behind);
            while let Some((at, saved_ms, _)) = q.front() {
                if *saved_ms >= oldest || floor.as_ref().is_some_and(|f| at.pos >= *f) {
                    break;
                }
                newest = q.pop_front();
            }
        }
        if let Some((at, _, commit_ms)) = newest {
            engine.validated.send_replace(Some(crate::mysql::position::Validated { at, commit_ms }));
        }
        // Caught up with every saved checkpoint: as far behind as the reader; else since the validated
        // transaction's commit.
        let caught_up = lock(&behind).is_empty();
        let lag = match engine.validated.borrow().as_ref() {
            Some(_) if caught_up => engine.stats.binlog_lag_ms.load(Relaxed),
            Some(v) if v.commit_ms > 0 => crate::clock::now_ms().saturating_sub(v.commit_ms) as i64,
            _ => -1,
        };
        engine.stats.validated_lag_ms.store(lag, Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Batches checked concurrently.
const CHECKS_IN_FLIGHT: usize = 4;

/// What one batch's checks found, for the settle stage and the checkpoint (applied in batch order).
struct Checked {
    horizon_ms: u64,
    end: Option<Checkpoint>,
    end_ts: u32,
    releases: Vec<String>,
    verdicts: Vec<Verdicts>,
}

/// One table's verdicts in a batch.
struct Verdicts {
    table: String,
    /// keys read on both sides: the mismatching ones
    found: Vec<(Key, Mismatch)>,
    /// keys judged by their row images
    seen: Vec<Seen>,
}

/// Records what must outlive the checkpoint and checks one batch's keys: a key whose row images stand
/// for the base is compared with its latest image, reading the other side only; the others are read on
/// both sides (counted, with a warning naming the fix). Several batches are checked at once; their
/// verdicts go to the settle stage in batch order ([`settle_in_order`]), because a pending row's versions
/// must be added in the order the base went through them.
async fn check_batch(engine: &Engine, shutdown: &watch::Receiver<bool>, batch: Batch) -> Result<Checked> {
    let stats = &engine.stats;
    let horizon = batch.horizon_ms;
    stats.changes_seen.fetch_add(batch.txn.change_count() + batch.before_start.change_count(), Relaxed);
    for (id, txn) in &batch.holds {
        engine.store.put(&format!("{XA_PREFIX}{id}"), &XaRecord::V1(txn.clone())).await?;
        stats.changes_seen.fetch_add(txn.change_count(), Relaxed);
    }
    for xid in &batch.unknown_xa {
        tracing::warn!(xid = %xid, "an XA transaction prepared before binlog mode started was committed or rolled back: its rows were never seen here; run `full` on the tables it may have changed");
        stats.not_checked("(XA prepared before start)", crate::deliver::metrics::NotChecked::XaBeforeStart, 1);
    }
    for (table, reason) in &batch.rechecks {
        recheck::record(engine, table, reason, batch.end.as_ref()).await?;
    }
    for (table, n) in &batch.before_start.changes {
        stats.not_checked(table, crate::deliver::metrics::NotChecked::BeforeStart, *n);
    }
    let mut images = batch.txn.images;
    let mut verdicts = Vec::new();
    for (table, keys) in batch.txn.keys {
        let changes = batch.txn.changes.get(&table).copied().unwrap_or(0);
        let Some(mut plan) = engine.plans.get(&table) else {
            stats.not_checked(&table, crate::deliver::metrics::NotChecked::NoPlan, changes);
            continue;
        };
        if replan_due(&plan) {
            plan = look_again(engine, plan).await;
        }
        let mut dedup = HashSet::new();
        let keys: Vec<Key> = keys.into_iter().filter(|k| dedup.insert(k.canonical())).collect();
        let th = images.remove(&table);
        let mut v = Verdicts { table: table.clone(), found: Vec::new(), seen: Vec::new() };
        let key_count = keys.len() as u64;
        let (imaged, mut both) = split_by_images(stats, &table, &plan, keys, th.as_ref());
        let mut hist = th.map(|t| t.keys).unwrap_or_default();
        let mut covered = false;
        for (i, chunk) in imaged.chunks(engine.cfg.check.batch_size).enumerate() {
            let read = |p: Arc<TablePlan>| async move { engine.other.read_keys(&p, chunk).await };
            let before = plan.clone();
            // Lag is measured from before the read (never more than the other side really lagged).
            let now = crate::clock::now_ms();
            let Some(rows) = read_checked(engine, shutdown, &table, &mut plan, read).await? else {
                covered = true;
                continue;
            };
            if !Arc::ptr_eq(&before, &plan) {
                // The plan changed under the check (DDL): the images follow the old columns.
                let rest: Vec<Key> = imaged[i * engine.cfg.check.batch_size..].to_vec();
                stats.base_read_fallback(&table, NoImage::Plan.as_str(), NoImage::Plan.fix(), rest.len() as u64);
                both.extend(rest);
                break;
            }
            let seen_ms = crate::clock::now_ms();
            let index: HashMap<Vec<u8>, Row> = rows.into_iter().map(|r| (row_identity(&plan, &r), r)).collect();
            let k = plan.key.len();
            let mut differ = Vec::new();
            for key in chunk {
                let c = key.canonical();
                let Some(History::Known { latest, older }) = hist.remove(&c) else { continue };
                let other = index.get(&c).map(|r| &r[k.min(r.len())..]);
                let m = Mismatch::from_outcome(&plan, compare_rows(&plan.kinds, latest.as_deref(), other));
                if let Some(m) = &m {
                    differ.push((key.clone(), m.clone()));
                }
                // What the other side showed, for a pending entry of this key to be judged by.
                let sighted = m.is_some().then(|| Sighted {
                    other: other.map(|o| digest(&plan.kinds, Side::Other, o)),
                    now,
                    seen_ms,
                    horizon,
                });
                v.seen.push(Seen { key: key.clone(), mismatch: m, current: latest, older, sighted });
            }
            // A change of a row reported earlier re-checks it: equal now, it closes in the ledger.
            engine.settle.ledger().checked(&table, chunk, &differ).await?;
        }
        for chunk in both.chunks(engine.cfg.check.batch_size) {
            // Named, so its base queries can be told from the others (db.rs).
            let span = tracing::info_span!("no row image");
            let read = |p: Arc<TablePlan>| {
                let span = span.clone();
                async move {
                    tracing::Instrument::instrument(check_keys(&engine.base, &engine.other, &p, chunk), span).await
                }
            };
            let Some(found) = read_checked(engine, shutdown, &table, &mut plan, read).await? else {
                covered = true;
                continue;
            };
            engine.settle.ledger().checked(&table, chunk, &found).await?;
            v.found.extend(found);
        }
        stats.rows_checked.fetch_add(key_count, Relaxed);
        if covered {
            stats.not_checked(&table, crate::deliver::metrics::NotChecked::CoveredByRecheck, changes);
        } else {
            stats.changes_checked.fetch_add(changes, Relaxed);
        }
        verdicts.push(v);
    }
    if !batch.rechecks.is_empty() {
        engine.recheck_wake.notify_one();
    }
    let horizon_ms = batch.horizon_ms;
    Ok(Checked { horizon_ms, end: batch.end, end_ts: batch.end_ts, releases: batch.releases, verdicts })
}

/// Hands a batch's verdicts to the settle stage (called in batch order).
async fn settle_in_order(engine: &Engine, verdicts: Vec<Verdicts>) -> Result<()> {
    for v in verdicts {
        engine.settle.submit(&v.table, Mode::Binlog, v.found).await?;
        engine.settle.submit_versions(&v.table, v.seen).await?;
    }
    Ok(())
}

/// Splits a table's keys into those whose row images stand for the base and those read on both sides;
/// the latter are counted by reason.
fn split_by_images(
    stats: &crate::deliver::metrics::Stats,
    table: &str,
    plan: &TablePlan,
    keys: Vec<Key>,
    th: Option<&history::TableHistory>,
) -> (Vec<Key>, Vec<Key>) {
    let mut why: BTreeMap<NoImage, u64> = BTreeMap::new();
    let (mut imaged, mut both) = (Vec::new(), Vec::new());
    for key in keys {
        let reason = match th {
            None => Some(NoImage::Missing),
            Some(t) if !t.follows(plan) => Some(NoImage::Plan),
            Some(t) => match t.keys.get(&key.canonical()) {
                Some(History::Known { .. }) => None,
                Some(History::Unknown(r)) => Some(*r),
                None => Some(NoImage::Missing),
            },
        };
        match reason {
            None => imaged.push(key),
            Some(r) => {
                *why.entry(r).or_default() += 1;
                both.push(key);
            }
        }
    }
    for (r, n) in why {
        stats.base_read_fallback(table, r.as_str(), r.fix(), n);
    }
    (imaged, both)
}

/// Runs one read of a check, retrying transient failures. `None`: the table is gone from a side (a
/// RENAME or DROP in flight) and a full re-check of it is recorded, which covers these rows once the
/// table is back. A definite failure refreshes the plan when the table's schema changed on a side (the
/// read goes on with the new plan), else stops binlog mode naming the table, the problem and the fix.
async fn read_checked<T, F, Fut>(
    engine: &Engine,
    shutdown: &watch::Receiver<bool>,
    table: &str,
    plan: &mut Arc<TablePlan>,
    read: F,
) -> Result<Option<T>>
where
    F: Fn(Arc<TablePlan>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    loop {
        let p = plan.clone();
        let check = || read(p.clone());
        match crate::retry::retry(crate::retry::Policy::QUERY, shutdown, "a binlog check", check).await {
            Ok(x) => return Ok(Some(x)),
            Err(e) if e.server_code() == Some(1146) && recheck_recorded(engine, table)? => return Ok(None),
            Err(e) => *plan = replan(engine, plan, e).await?,
        }
    }
}

/// Whether a full re-check of `table` is recorded.
fn recheck_recorded(engine: &Engine, table: &str) -> Result<bool> {
    Ok(recheck::pending(engine)?.iter().any(|r| r.table == table))
}

/// How long after DDL on the base a column on one side only is looked for again at every batch (the other
/// side replays the DDL late), and how often after that.
const DDL_CATCH_UP: Duration = Duration::from_secs(60);
const ONE_SIDED_RECHECK: Duration = Duration::from_secs(10);

/// Whether a table's plan leaves out columns that may have appeared on the other side since.
fn replan_due(plan: &crate::mysql::schema::TablePlan) -> bool {
    !plan.one_sided.is_empty()
        && (plan.ddl_at.is_some_and(|t| t.elapsed() < DDL_CATCH_UP) || plan.loaded_at.elapsed() >= ONE_SIDED_RECHECK)
}

/// Reads the table's schemas again; the new plan, or the old one when they cannot be read.
async fn look_again(
    engine: &Engine,
    plan: std::sync::Arc<crate::mysql::schema::TablePlan>,
) -> std::sync::Arc<crate::mysql::schema::TablePlan> {
    let e = engine;
    if crate::mysql::schema::refresh_quietly(&e.cfg, &e.plans, &e.base, &e.other, &plan.name, None).await.is_err() {
        return plan;
    }
    match e.plans.get(&plan.name) {
        Some(new) => {
            if new.compared != plan.compared {
                tracing::info!(table = %plan.name, columns = ?new.compared, "both sides have the same columns again; comparing them");
            }
            new
        }
        None => plan,
    }
}

/// A definite check failure: when the table's schema changed on a side (a column dropped or renamed
/// on the target only), the plan is refreshed and, if the table is still comparable, the check goes on
/// with the new plan. Anything else stops binlog mode naming the table, the problem and the fix.
async fn replan(
    engine: &Engine,
    plan: &crate::mysql::schema::TablePlan,
    e: Error,
) -> Result<std::sync::Arc<crate::mysql::schema::TablePlan>> {
    if matches!(e, Error::Interrupted) {
        return Err(e);
    }
    let table = plan.name.clone();
    let code = e.server_code();
    if matches!(code, Some(1054 | 1146)) {
        let refreshed =
            crate::mysql::schema::refresh(&engine.cfg, &engine.plans, &engine.base, &engine.other, &table).await;
        if let (Ok(()), Some(new)) = (refreshed, engine.plans.get(&table)) {
            if new.compared != plan.compared || new.key != plan.key {
                tracing::warn!(
                    table = %table,
                    before = ?plan.compared,
                    after = ?new.compared,
                    "the table's columns changed on a side; its plan was refreshed and validation goes on"
                );
                return Ok(new);
            }
        }
    }
    let fix = match code {
        Some(1054) => "its columns differ between the sides now; make them agree, or list the column in `ignore`",
        Some(1146) => "it is missing on a side; recreate it or remove its [[table]]",
        Some(1267 | 1270 | 1271) => {
            "its key's character set or collation cannot be compared between the sides; give the key the same character set on both sides, or configure another key"
        }
        _ => "fix the problem above and start again; the checkpoint is saved before this change",
    };
    Err(Error::Check { table, problem: e.to_string(), fix: fix.to_string() })
}
