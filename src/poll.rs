//! Poll mode, the original design's incremental mode done right: a keyset cursor over `(utime, key)` on
//! the base, `check.batch_size` rows at a time, sleeping `poll.interval` when caught up. Rows that share
//! one utime value are neither lost (the key breaks the tie) nor re-read forever (the cursor moves past
//! them). The cursor is checkpointed per table, behind checks that are done or durable.
//!
//! Polling cannot see hard deletes, so poll mode also runs the reverse sweep every `poll.sweep`: a keyset
//! walk over the other side that reports rows missing on the base as `base_missing`.
//!
//! A known limit of any utime poller: a row committed late with a utime older than the cursor (a long
//! transaction, a skewed clock) is not seen until the next full pass.

use crate::check::check_keys;
use crate::compare::Kind;
use crate::db::{push_tuple_params, quote_ident, tuple_predicate, Db};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::event::{now_ms, Mode};
use crate::key::{Key, KeyVal};
use crate::schema::TablePlan;
use mysql_async::Value;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where polling of one table resumes: the last (utime, key) checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cursor {
    pub utime: KeyVal,
    pub key: Key,
}

#[derive(Serialize, Deserialize)]
enum CursorRecord {
    V1(Cursor),
}

fn cursor_name(table: &str) -> String {
    format!("poll/cursor/{table}")
}

/// The first utime to poll from when a table has no cursor: `since` (ms since the epoch) in the
/// column's own type.
fn since_value(kind: Kind, since_ms: i64) -> Value {
    match kind {
        Kind::DateTime => {
            let t = std::time::UNIX_EPOCH + Duration::from_millis(since_ms.max(0) as u64);
            let s = humantime::format_rfc3339_micros(t).to_string();
            // `2026-11-21T10:00:00.123000Z` → the DATETIME text MySQL compares against (session is UTC).
            Value::Bytes(s.trim_end_matches('Z').replacen('T', " ", 1).into_bytes())
        }
        _ => Value::Int(since_ms),
    }
}

/// One page of changed keys after the cursor (or from `since` when there is none).
async fn page(
    db: &Db,
    plan: &TablePlan,
    utime: &str,
    cursor: Option<&Cursor>,
    since: &Value,
    limit: usize,
) -> Result<Vec<(KeyVal, Key)>> {
    let mut cols = vec![utime.to_string()];
    cols.extend(plan.key.iter().cloned());
    let list = cols.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    let mut params = Vec::new();
    let filter = match cursor {
        Some(c) => {
            let mut parts = vec![c.utime.clone()];
            parts.extend(c.key.0.iter().cloned());
            push_tuple_params(&mut params, &Key(parts));
            tuple_predicate(&cols, ">", ">")
        }
        None => {
            params.push(since.clone());
            format!("{} >= ?", quote_ident(utime))
        }
    };
    let sql = format!("SELECT {list} FROM {} WHERE {filter} ORDER BY {list} LIMIT {limit}", quote_ident(&plan.name));
    let rows = db.rows(&sql, params, &format!("polling `{}`", plan.name)).await?;
    Ok(rows.into_iter().map(|r| (KeyVal::from(&r[0]), Key::from_values(&r[1..]))).collect())
}

/// Checks one table's changes after its cursor until caught up (or `budget` pages). Returns whether it
/// is caught up.
async fn poll_table(engine: &Engine, plan: &TablePlan, since_ms: i64, budget: usize) -> Result<bool> {
    let Some((utime, kind)) = plan.utime.clone() else { return Ok(true) };
    let name = cursor_name(&plan.name);
    let mut cursor = engine.store.get::<CursorRecord>(&name)?.map(|CursorRecord::V1(c)| c);
    let since = since_value(kind, since_ms);
    let batch = engine.cfg.check.batch_size;
    for _ in 0..budget {
        let rows = page(&engine.base, plan, &utime, cursor.as_ref(), &since, batch).await?;
        let Some((last_utime, last_key)) = rows.last().cloned() else { return Ok(true) };
        let mut seen = HashSet::new();
        let keys: Vec<Key> = rows.into_iter().map(|(_, k)| k).filter(|k| seen.insert(k.canonical())).collect();
        let found = check_keys(&engine.base, &engine.other, plan, &keys).await?;
        engine.settle.submit(&plan.name, Mode::Poll, found).await?;
        engine.stats.rows_checked.fetch_add(keys.len() as u64, Relaxed);
        let next = Cursor { utime: last_utime, key: last_key };
        // After the checks' mismatches are durable; it may reach the disk later, never earlier.
        engine.store.put_lazy(&name, &CursorRecord::V1(next.clone()))?;
        if let KeyVal::Int(ms) = next.utime {
            engine.stats.poll_lag_ms.store((now_ms() as i64 - ms).max(0), Relaxed);
        }
        cursor = Some(next);
        if keys.len() < batch {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Runs poll mode until `shutdown`: polls every table, sleeps `interval` when all are caught up, and
/// runs the reverse sweep every `poll.sweep`.
pub async fn run(
    engine: &Engine,
    since_ms: Option<i64>,
    interval: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let since = since_ms.unwrap_or(engine.cfg.poll.since);
    let interval = interval.unwrap_or(engine.cfg.poll.interval);
    let plans = engine.plans.all();
    if let Some(p) = plans.iter().find(|p| p.utime.is_none()) {
        return Err(Error::Config(format!(
            "table `{}` has no utime column; poll mode needs utime = \"...\" in its [[table]]",
            p.name
        )));
    }
    engine.stats.polling.store(true, Relaxed);
    tracing::info!(since, "polling");
    let mut last_sweep = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let result = loop {
        if *shutdown.borrow() {
            break Ok(());
        }
        let mut caught_up = true;
        let mut failure = None;
        for plan in &plans {
            match poll_table(engine, plan, since, 16).await {
                Ok(done) => caught_up &= done,
                Err(e) => failure = Some(e),
            }
        }
        if failure.is_none() && last_sweep.elapsed() >= engine.cfg.poll.sweep {
            last_sweep = Instant::now();
            for plan in &plans {
                if let Err(e) = sweep_table(engine, plan, Mode::Poll, &shutdown).await {
                    failure = Some(e);
                }
            }
        }
        let nap = match failure {
            Some(e) if e.is_transient() => {
                tracing::warn!(error = %e, "polling failed; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            }
            Some(e) => break Err(e),
            None => {
                backoff = Duration::from_millis(100);
                if caught_up {
                    engine.stats.poll_lag_ms.store(0, Relaxed);
                    interval
                } else {
                    Duration::ZERO
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = shutdown.changed() => {}
        }
    };
    engine.stats.polling.store(false, Relaxed);
    engine.store.flush().await?;
    result
}

/// The reverse sweep of one table: walks the other side in key order and reports rows the base lacks
/// (after the settle window, like every mismatch). Returns how many candidates it found.
pub async fn sweep_table(
    engine: &Engine,
    plan: &TablePlan,
    mode: Mode,
    shutdown: &watch::Receiver<bool>,
) -> Result<usize> {
    let chunk = engine.cfg.full.chunk_rows;
    let mut lo: Option<Key> = None;
    let mut candidates = 0;
    loop {
        if *shutdown.borrow() {
            return Ok(candidates);
        }
        let rows = engine.other.read_range(plan, lo.as_ref(), None, chunk).await?;
        let keys: Vec<Key> = rows.iter().map(|r| crate::check::row_key(plan, r)).collect();
        let present: HashSet<Vec<u8>> =
            engine.base.read_keys(plan, &keys).await?.iter().map(|r| crate::check::row_identity(plan, r)).collect();
        let missing: Vec<Key> = keys.iter().filter(|k| !present.contains(&k.canonical())).cloned().collect();
        if !missing.is_empty() {
            let found = check_keys(&engine.base, &engine.other, plan, &missing).await?;
            candidates += found.len();
            engine.settle.submit(&plan.name, mode, found).await?;
        }
        if rows.len() < chunk {
            return Ok(candidates);
        }
        lo = keys.last().cloned();
    }
}
