//! The first check of a change waits a fraction of the settle window ([`first_check_delay`]).
//!
//! Checked the moment it commits, every change on a lagging target is a mismatch first: a pending entry
//! persisted (an fsync), re-checked and resolved a moment later, and a hot row's entry rewritten by every
//! batch that changes it. Held for part of the window, most changes find the target caught up (nothing
//! to persist), and the batches read meanwhile are checked as one: a hot row's versions of that time are
//! merged before its entry is written once. Latency does not grow with it: a row found different keeps
//! the times its versions were superseded on the base, and the settle rule reports by those
//! ([`crate::verdict::versions`]), not by when the check ran.
//!
//! Batches leave in the order they came (the checkpoint still moves behind them only), each once it has
//! been held for the delay, together with the batches after it held for at least half of it. A batch
//! with DDL is merged with none (its plan change separates the images before and after it). On shutdown
//! everything held leaves at once.

use super::batch::Batch;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How long the first check of a change waits: a quarter of the settle window, at most 500 ms (none
/// without a window: every mismatch is then reported at once and there is no lag to wait out).
pub fn first_check_delay(settle: Duration) -> Duration {
    (settle / 4).min(Duration::from_millis(500))
}

/// Forwards batches from `rx` to `tx`, each `delay` after it arrived, merging those due together up to
/// `max_keys` keys. Ends when `rx` closes (after forwarding what it holds) or `tx` does.
pub async fn run(
    mut rx: mpsc::Receiver<Batch>,
    tx: mpsc::Sender<Batch>,
    delay: Duration,
    max_keys: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut held: VecDeque<(Instant, Batch)> = VecDeque::new();
    let (mut open, mut watching) = (true, true);
    loop {
        let now = Instant::now();
        let hurry = !open || *shutdown.borrow();
        for b in due(&mut held, now, delay, max_keys, hurry) {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        if !open && held.is_empty() {
            return;
        }
        let next = held.front().map(|(at, _)| *at + delay);
        tokio::select! {
            got = rx.recv(), if open => match got {
                Some(b) => held.push_back((Instant::now(), b)),
                None => open = false,
            },
            _ = tokio::time::sleep_until(next.unwrap_or(now)), if next.is_some() => {}
            // A dropped sender means no shutdown will come: stop watching rather than wake forever.
            r = shutdown.changed(), if watching && !*shutdown.borrow() => watching = r.is_ok(),
        }
    }
}

/// Takes the batches due at `now` off the front of `held`, merged: the first once held for `delay`,
/// with those after it held for half of it (all of them when `hurry`).
fn due(
    held: &mut VecDeque<(Instant, Batch)>,
    now: Instant,
    delay: Duration,
    max_keys: usize,
    hurry: bool,
) -> Vec<Batch> {
    let mut out = Vec::new();
    while held.front().is_some_and(|(at, _)| hurry || *at + delay <= now) {
        let Some((_, mut b)) = held.pop_front() else { break };
        while let Some((at, next)) = held.front() {
            let ripe = hurry || *at + delay / 2 <= now;
            if !ripe || b.ddl || next.ddl || b.key_count() + next.key_count() > max_keys {
                break;
            }
            if let Some((_, next)) = held.pop_front() {
                b.absorb(next);
            }
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{Key, KeyVal};
    use crate::mysql::position::{BinlogPos, Checkpoint};

    fn batch(id: i64, pos: u64) -> Batch {
        let mut b = Batch::default();
        b.txn.keys.insert("t".into(), vec![Key(vec![KeyVal::Int(id)])]);
        b.txn.changes.insert("t".into(), 1);
        b.end = Some(Checkpoint { pos: BinlogPos::new("mysql-bin.000001", pos), gtid: None });
        b
    }

    fn ids(b: &Batch) -> Vec<String> {
        b.txn.keys["t"].iter().map(|k| k.to_string()).collect()
    }

    /// The stage running with `delay`: its input, its output, its shutdown switch and its task.
    fn stage(
        delay: Duration,
    ) -> (mpsc::Sender<Batch>, mpsc::Receiver<Batch>, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, out_rx) = mpsc::channel(4);
        let (stop, shutdown) = watch::channel(false);
        (in_tx, out_rx, stop, tokio::spawn(run(in_rx, out_tx, delay, 1000, shutdown)))
    }

    #[test]
    fn the_delay_is_a_fraction_of_the_window() {
        assert_eq!(first_check_delay(Duration::ZERO), Duration::ZERO);
        assert_eq!(first_check_delay(Duration::from_secs(1)), Duration::from_millis(250));
        assert_eq!(first_check_delay(Duration::from_secs(60)), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn batches_wait_for_the_delay_and_leave_merged_in_order() {
        let delay = Duration::from_millis(200);
        let (in_tx, mut out_rx, _stop, _stage) = stage(delay);
        let t0 = Instant::now();
        in_tx.send(batch(1, 100)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        in_tx.send(batch(2, 200)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        in_tx.send(batch(3, 300)).await.unwrap();
        let first = out_rx.recv().await.unwrap();
        assert_eq!(Instant::now() - t0, delay, "the oldest batch leaves once held for the delay");
        // Batch 2 was held 140 ms (over half the delay) and goes with it; batch 3 (80 ms) waits.
        assert_eq!(ids(&first), vec!["1", "2"]);
        assert_eq!(first.end.as_ref().unwrap().pos.pos, 200, "the merged batch ends where its last part does");
        assert_eq!(first.txn.changes["t"], 2);
        let second = out_rx.recv().await.unwrap();
        assert_eq!(Instant::now() - t0, Duration::from_millis(320));
        assert_eq!(ids(&second), vec!["3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ddl_batch_is_merged_with_none_and_the_key_bound_holds() {
        let mut held = VecDeque::new();
        let now = Instant::now();
        let mut ddl = batch(2, 200);
        ddl.ddl = true;
        for b in [batch(1, 100), ddl, batch(3, 300), batch(4, 400), batch(5, 500)] {
            held.push_back((now, b));
        }
        let out = due(&mut held, now + Duration::from_secs(1), Duration::from_millis(200), 2, false);
        let got: Vec<Vec<String>> = out.iter().map(ids).collect();
        assert_eq!(got, vec![vec!["1"], vec!["2"], vec!["3", "4"], vec!["5"]]);
        assert!(held.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn everything_held_leaves_at_once_on_shutdown_or_when_the_reader_ends() {
        let delay = Duration::from_secs(60);
        let (in_tx, mut out_rx, stop, stage) = stage(delay);
        let t0 = Instant::now();
        in_tx.send(batch(1, 100)).await.unwrap();
        in_tx.send(batch(2, 200)).await.unwrap();
        tokio::task::yield_now().await;
        stop.send_replace(true);
        let b = out_rx.recv().await.unwrap();
        assert_eq!(ids(&b), vec!["1", "2"]);
        assert!(Instant::now() - t0 < delay, "not held for the delay on shutdown");
        in_tx.send(batch(3, 300)).await.unwrap();
        drop(in_tx);
        assert_eq!(ids(&out_rx.recv().await.unwrap()), vec!["3"]);
        assert!(out_rx.recv().await.is_none(), "the stage ends with the reader");
        stage.await.unwrap();
    }
}
