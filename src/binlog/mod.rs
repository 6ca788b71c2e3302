//! Binlog mode: tails the base's binlog as a replica, turns every row change of a tracked table into keys,
//! checks them on both sides, and checkpoints the position.
//!
//! Two stages joined by a bounded channel, so a slow check applies backpressure to the stream:
//! - the [`reader`] turns events into [`Batch`]es of keys that end at a transaction boundary, carrying the
//!   position right after that boundary;
//! - the checker (here) checks each batch's keys, hands mismatches to the settle stage (which persists
//!   them), and only then saves the batch's position as the checkpoint. Batches are handled in order, so
//!   the checkpoint never passes a change whose check is not done or durable, and never moves backward.

pub mod decode;
pub mod image;
pub mod reader;
mod start;

#[cfg(test)]
mod fixtures;

use crate::check::check_keys;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::event::Mode;
use crate::key::Key;
use crate::position::{Checkpoint, CheckpointRecord};
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub use start::{resolve_start, Start, StartPoint};

/// State-store name of the binlog checkpoint.
pub const CHECKPOINT: &str = "binlog/checkpoint";

/// Keys of whole transactions, and the position after the last of them.
#[derive(Debug, Default)]
pub struct Batch {
    pub keys: HashMap<String, Vec<Key>>,
    pub end: Option<Checkpoint>,
}

impl Batch {
    pub fn key_count(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }
}

/// The saved checkpoint, if any.
pub fn saved_checkpoint(engine: &Engine) -> Result<Option<Checkpoint>> {
    Ok(engine.store.get::<CheckpointRecord>(CHECKPOINT)?.map(|CheckpointRecord::V1(c)| c))
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
    let (tx, rx) = mpsc::channel(4);
    let reader = reader::Reader::new(engine.clone(), start, tx, shutdown.clone());
    let reading = tokio::spawn(reader.run());
    let checked = match check_batches(engine, rx, shutdown).await {
        // Stopped while a check was being retried: that batch stays behind the checkpoint.
        Err(Error::Interrupted) => Ok(()),
        other => other,
    };
    let read = reading.await.unwrap_or_else(|e| Err(Error::Binlog(format!("the binlog reader failed: {e}"))));
    checked.and(read)
}

/// Checks batches in order and advances the checkpoint behind them.
async fn check_batches(engine: &Engine, mut rx: mpsc::Receiver<Batch>, shutdown: watch::Receiver<bool>) -> Result<()> {
    let mut last = saved_checkpoint(engine)?;
    let result = check_in_order(engine, &mut rx, &shutdown, &mut last).await;
    engine.store.flush().await?;
    result
}

async fn check_in_order(
    engine: &Engine,
    rx: &mut mpsc::Receiver<Batch>,
    shutdown: &watch::Receiver<bool>,
    last: &mut Option<Checkpoint>,
) -> Result<()> {
    // Several batches are checked at once, but `buffered` yields them in the order they came, so the
    // checkpoint still only ever moves behind every batch before it.
    let batches = futures_util::stream::poll_fn(|cx| rx.poll_recv(cx));
    let mut checked = batches.map(|batch| check_batch(engine, shutdown, batch)).buffered(CHECKS_IN_FLIGHT);
    while let Some(end) = checked.next().await {
        if let Some(end) = end? {
            if last.as_ref().is_none_or(|l| end.pos > l.pos) {
                // Written after this batch's pending entries and events were flushed, so whenever it
                // reaches the disk it is behind durable work; it need not wait for the disk itself
                // (sled flushes it within its interval, and on shutdown).
                engine.store.put_lazy(CHECKPOINT, &CheckpointRecord::V1(end.clone()))?;
                engine.stats.set_checkpoint(end.to_string());
                *last = Some(end);
            }
        }
    }
    Ok(())
}

/// Batches checked concurrently.
const CHECKS_IN_FLIGHT: usize = 4;

/// Checks one batch's keys and hands mismatches to the settle stage; returns the batch's end position.
async fn check_batch(engine: &Engine, shutdown: &watch::Receiver<bool>, batch: Batch) -> Result<Option<Checkpoint>> {
    for (table, keys) in batch.keys {
        let Some(plan) = engine.plans.get(&table) else { continue };
        let mut seen = HashSet::new();
        let keys: Vec<Key> = keys.into_iter().filter(|k| seen.insert(k.canonical())).collect();
        for chunk in keys.chunks(engine.cfg.check.batch_size) {
            let found = retry(shutdown, || check_keys(&engine.base, &engine.other, &plan, chunk)).await?;
            engine.settle.submit(&table, Mode::Binlog, found).await?;
        }
        engine.stats.rows_checked.fetch_add(keys.len() as u64, Relaxed);
    }
    Ok(batch.end)
}

/// Retries a transient failure with backoff until it succeeds, fails definitely, or shutdown is asked
/// (then the batch stays unchecked and the checkpoint stays behind it).
async fn retry<T, F, Fut>(shutdown: &watch::Receiver<bool>, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match f().await {
            Err(e) if e.is_transient() => {
                if *shutdown.borrow() {
                    return Err(Error::Interrupted);
                }
                tracing::warn!(error = %e, "check failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}
