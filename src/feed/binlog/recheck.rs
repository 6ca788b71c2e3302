//! Durable whole-table re-checks. A TRUNCATE, DROP, CREATE or RENAME onto a tracked table changes every
//! row at once, and the binlog carries no row for it: the table's rows must be compared again by a full
//! pass. The need is recorded in the state store before the checkpoint moves past the statement
//! ([`record`]), the pass runs through the same one-at-a-time gate as every full pass, with its own
//! progress records (so it never clears or overwrites a user's interrupted `full`), it resumes after a
//! restart, and the record is removed only when the pass has finished.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::feed::full::{run_full, FullOptions};
use crate::mysql::position::Checkpoint;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::watch;

const PREFIX: &str = "recheck/";
/// Which record a table's re-check pass was started for.
const PREFIX_RUN: &str = "recheck-run/";

/// A table whose every row needs checking again.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Recheck {
    pub table: String,
    pub reason: String,
    /// The binlog position of the statement that made it necessary.
    pub from: Option<Checkpoint>,
    pub recorded_ms: u64,
}

#[derive(Serialize, Deserialize)]
enum RecheckRecord {
    V1(Recheck),
}

/// Records, durably, that `table` needs a full re-check (a later statement on the same table replaces
/// the record: one pass after the last of them covers all).
pub async fn record(engine: &Engine, table: &str, reason: &str, from: Option<&Checkpoint>) -> Result<()> {
    let r = Recheck {
        table: table.to_string(),
        reason: reason.to_string(),
        from: from.cloned(),
        recorded_ms: crate::clock::now_ms(),
    };
    engine.store.put(&format!("{PREFIX}{table}"), &RecheckRecord::V1(r)).await?;
    tracing::info!(table, reason, "re-check of every row recorded");
    Ok(())
}

/// The re-checks still to do.
pub fn pending(engine: &Engine) -> Result<Vec<Recheck>> {
    Ok(engine.store.scan::<RecheckRecord>(PREFIX)?.into_iter().map(|(_, RecheckRecord::V1(r))| r).collect())
}

/// Runs recorded re-checks until `shutdown`: when woken (a new record) and at start, one table at a
/// time. A table that does not exist on a side yet (dropped, not yet created again) keeps its record and
/// is tried again at the next wake or after a while.
pub async fn run(engine: Engine, mut shutdown: watch::Receiver<bool>) {
    loop {
        let wake = engine.recheck_wake.notified();
        let mut retry_later = false;
        match pending(&engine) {
            Ok(list) => {
                engine.stats.rechecks_pending.store(list.len() as i64, std::sync::atomic::Ordering::Relaxed);
                for r in list {
                    if *shutdown.borrow() {
                        return;
                    }
                    match one(&engine, &r, shutdown.clone()).await {
                        Ok(true) => {}
                        Ok(false) => retry_later = true,
                        Err(Error::Interrupted) => return,
                        Err(e) => {
                            retry_later = true;
                            tracing::warn!(table = %r.table, error = %e, "the table's re-check failed; it stays recorded and is tried again");
                        }
                    }
                }
            }
            Err(e) => {
                retry_later = true;
                tracing::warn!(error = %e, "cannot read the recorded re-checks");
            }
        }
        // What is still recorded after the passes (not what was before them): the gauge must reach 0
        // when the last re-check finished, not at the next wake.
        if let Ok(left) = pending(&engine) {
            engine.stats.rechecks_pending.store(left.len() as i64, std::sync::atomic::Ordering::Relaxed);
        }
        let nap = if retry_later { Duration::from_secs(10) } else { Duration::from_secs(3600) };
        tokio::select! {
            _ = wake => {}
            _ = tokio::time::sleep(nap) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One re-check; `Ok(false)` when the table is not there to check yet.
async fn one(engine: &Engine, r: &Recheck, shutdown: watch::Receiver<bool>) -> Result<bool> {
    let e = engine;
    let configured = e.cfg.tables.iter().any(|t| t.name == r.table || t.table_on(e.base.side) == r.table);
    if !configured {
        tracing::warn!(table = %r.table, "a recorded re-check is for a table no longer configured; dropped");
        e.store.remove(&format!("{PREFIX}{}", r.table))?;
        e.store.remove(&format!("{PREFIX_RUN}{}", r.table))?;
        return Ok(true);
    }
    if let Err(err) = crate::mysql::schema::refresh(&e.cfg, &e.plans, &e.base, &e.other, &r.table).await {
        tracing::info!(table = %r.table, error = %err, "re-check waits: the table cannot be compared yet");
        return Ok(false);
    }
    tracing::info!(table = %r.table, reason = %r.reason, "re-checking every row of the table");
    // An interrupted pass for this very record resumes; a pass begun for an older record starts over.
    let marker = format!("{PREFIX_RUN}{}", r.table);
    let same = engine.store.get::<u64>(&marker)? == Some(r.recorded_ms);
    if !same {
        engine.store.put(&marker, &r.recorded_ms).await?;
    }
    let opts = FullOptions {
        tables: vec![r.table.clone()],
        restart: !same,
        progress_bar: false,
        run: format!("recheck/{}", r.table),
        ..Default::default()
    };
    let summary = run_full(engine, &opts, shutdown).await?;
    if summary.unsettled > 0 {
        // Mismatches still in their settle window are not final verdicts: the record stays, so
        // validated-through stays before the statement, and the pass runs again.
        tracing::warn!(table = %r.table, unsettled = summary.unsettled, "the table's re-check ended with verdicts still pending; it stays recorded");
        return Ok(false);
    }
    engine.store.remove(&marker)?;
    // Only the record this pass answered: a newer statement on the table (recorded meanwhile) stays.
    let name = format!("{PREFIX}{}", r.table);
    if engine.store.get::<RecheckRecord>(&name)?.is_some_and(|RecheckRecord::V1(now)| now == *r) {
        engine.store.remove(&name)?;
        engine.store.flush().await?;
    }
    tracing::info!(table = %r.table, "table re-check finished");
    Ok(true)
}
