//! How each chunk of a table is compared: the strategy the user chose, or `auto`'s choice by measured
//! cost per row (summaries when the other side is remote or the link is the bottleneck, streamed rows when
//! both are near), and the size of summary chunks by time (`full.chunk_time`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How ranges are compared (`full --strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Stream every row of both sides and compare in the client (exact; fastest when both sides are near).
    Rows,
    /// Compare per-chunk summaries computed by each server and bisect the chunks that differ down to ranges
    /// small enough to stream (little traffic: for a remote side or a slow link).
    Summary,
    /// Start each range with summaries when the other side is remote and with rows when it is local, then
    /// keep whichever is measured faster per row (difference density included).
    #[default]
    Auto,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "rows" => Some(Strategy::Rows),
            "summary" => Some(Strategy::Summary),
            "auto" => Some(Strategy::Auto),
            _ => None,
        }
    }
}

/// A table's strategy is measured again every this many chunks.
const PROBE_EVERY: u64 = 64;
/// How much cheaper per row the other strategy must measure before `auto` leaves the one it started with.
const SWITCH_GAIN: f64 = 2.0;
/// Summary chunk sizes stay within these bounds (rows).
const MIN_SUMMARY_ROWS: u64 = 1_000;
const MAX_SUMMARY_ROWS: u64 = 2_000_000;

/// Chooses each chunk's strategy for one table (shared by the walkers of its segments), and sizes its
/// summary chunks by time.
#[derive(Clone)]
pub struct Chooser {
    strategy: Strategy,
    state: Arc<Mutex<ChoiceState>>,
    chunk_time: Duration,
    /// how many of the table's chunks share what a probe had to itself (see `with_workers`)
    share: f64,
}

struct ChoiceState {
    /// the strategy started with: summaries when a side is remote
    prefer_summary: bool,
    /// seconds and rows measured of each strategy (rows, summary), both decaying: their ratio is the cost
    /// per row, weighted by rows, so that a chunk of a few rows (a gap in the keys, the open end of a
    /// table) does not stand for a whole table's rows
    cost: [Option<(f64, f64)>; 2],
    chunks: u64,
    summary_rows: u64,
    /// summaries are the table's strategy now (not only measured now and then)
    summary_best: bool,
    /// the size of a summary chunk that only measures: small, so that probing a slower strategy is cheap
    probe_rows: u64,
    /// base rows per unit of a single integer key, as the last summary chunks found (smoothed)
    density: Option<f64>,
}

impl Chooser {
    pub fn new(strategy: Strategy, remote: bool, chunk_rows: usize, chunk_time: Duration) -> Chooser {
        let state = ChoiceState {
            prefer_summary: match strategy {
                Strategy::Rows => false,
                Strategy::Summary => true,
                Strategy::Auto => remote,
            },
            cost: [None, None],
            chunks: 0,
            summary_rows: (chunk_rows as u64 * 4).clamp(MIN_SUMMARY_ROWS, MAX_SUMMARY_ROWS),
            summary_best: strategy == Strategy::Summary || (strategy == Strategy::Auto && remote),
            probe_rows: (chunk_rows as u64).clamp(MIN_SUMMARY_ROWS, MAX_SUMMARY_ROWS),
            density: None,
        };
        Chooser { strategy, state: Arc::new(Mutex::new(state)), chunk_time, share: 1.0 }
    }

    /// `workers` chunks of the table run at once, and a probe of the other strategy had to itself what
    /// they would all share: that strategy must measure this many times cheaper again before `auto`
    /// leaves the one it started with.
    /// - Across a network, a rows chunk measured among summary chunks had the link to itself, while rows
    ///   chunks on every worker would share it. (Measured: with 4 workers across a 100 Mbit/s link, one
    ///   rows probe of 5,000 rows measured as cheap per row as the summary chunks around it, and the
    ///   table then streamed at the link's speed, 1.5x slower than summaries.)
    /// - With both servers on this host, a summary chunk measured among rows chunks had the servers' CPU
    ///   to itself (a summary moves the work from the client to the servers, which here share the same
    ///   cores), while summaries on every worker would share it. (Measured on 2 cores with 4 workers:
    ///   summary probes measured more than twice as cheap per row as the rows chunks around them, `auto`
    ///   switched, and the pass took 0.38x of pt-table-sync's time where rows took 0.32x.)
    pub fn with_workers(mut self, workers: usize) -> Chooser {
        self.share = workers.max(1) as f64;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ChoiceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the next chunk goes by summary. `auto` keeps the cheaper strategy per row as measured,
    /// trying the other one on the table's second chunk and every `PROBE_EVERY` chunks after, so a change
    /// in difference density or link speed changes the choice.
    pub fn pick(&self) -> bool {
        let mut s = self.state();
        match self.strategy {
            Strategy::Rows => false,
            Strategy::Summary => true,
            Strategy::Auto => {
                s.chunks += 1;
                // Chunks run concurrently and share the link and the servers' CPU, so one chunk's time is
                // a noisy measure: leave the strategy the placement suggests only for a clear gain.
                let per_row = |c: Option<(f64, f64)>| c.map(|(secs, rows)| secs / rows.max(1.0));
                let best = match ([per_row(s.cost[0]), per_row(s.cost[1])], s.prefer_summary) {
                    ([Some(rows), Some(summary)], true) => summary < rows * SWITCH_GAIN * self.share,
                    ([Some(rows), Some(summary)], false) => summary * SWITCH_GAIN * self.share < rows,
                    _ => s.prefer_summary,
                };
                s.summary_best = best;
                if s.chunks == 2 || s.chunks.is_multiple_of(PROBE_EVERY) {
                    !best
                } else {
                    best
                }
            }
        }
    }

    /// Records how long a chunk took; resizes summary chunks toward `chunk_time`.
    pub fn measured(&self, by_summary: bool, took: Duration, rows: u64) {
        let mut s = self.state();
        let (secs, n) = (took.as_secs_f64(), rows as f64);
        let slot = &mut s.cost[usize::from(by_summary)];
        *slot = Some(match *slot {
            Some((old_secs, old_rows)) => (old_secs * 0.7 + secs, old_rows * 0.7 + n),
            None => (secs, n),
        });
        if by_summary && s.summary_best && rows > 0 {
            let target = self.chunk_time.as_secs_f64();
            let scale = (target / took.as_secs_f64().max(1e-6)).clamp(0.5, 4.0);
            s.summary_rows = ((s.summary_rows as f64 * scale) as u64).clamp(MIN_SUMMARY_ROWS, MAX_SUMMARY_ROWS);
        }
    }

    /// Records how many base rows a span of integer keys held.
    pub(super) fn found_density(&self, rows: u64, span: i128) {
        if span <= 0 {
            return;
        }
        let d = (rows.max(1) as f64 / span as f64).max(1e-12);
        let mut s = self.state();
        s.density = Some(match s.density {
            Some(old) => old * 0.5 + d * 0.5,
            None => d,
        });
    }

    /// Rows per key value seen so far (single integer keys), for cutting chunks by key value.
    pub(super) fn density(&self) -> Option<f64> {
        self.state().density
    }

    /// Base rows per chunk streamed as rows: `chunk_rows`, or a fifth of it for a probe while summaries
    /// are the table's strategy (across a link, a full-size probe streams the other side's rows while
    /// summaries would not; a fifth still measures its throughput, not its round trips).
    pub(super) fn rows_limit(&self, chunk_rows: usize) -> usize {
        if self.state().summary_best {
            (chunk_rows / 5).max(MIN_SUMMARY_ROWS as usize).min(chunk_rows)
        } else {
            chunk_rows
        }
    }

    pub(super) fn summary_rows(&self) -> u64 {
        let s = self.state();
        if s.summary_best {
            s.summary_rows
        } else {
            s.summary_rows.min(s.probe_rows)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn auto_starts_by_where_the_other_side_is_and_keeps_the_cheaper_strategy() {
        let remote = Chooser::new(Strategy::Auto, true, 5000, Duration::from_millis(500));
        assert!(remote.pick(), "a remote side starts with summaries");
        remote.measured(true, 100 * MS, 1000);
        assert!(!remote.pick(), "the second chunk tries rows");
        remote.measured(false, 10 * MS, 1000);
        assert!(!remote.pick(), "rows measured ten times cheaper per row: kept");
        let near = Chooser::new(Strategy::Auto, true, 5000, Duration::from_millis(500));
        near.pick();
        near.measured(true, 100 * MS, 1000);
        near.pick();
        near.measured(false, 70 * MS, 1000);
        assert!(near.pick(), "rows only a little cheaper: the remote side keeps summaries");
        assert_eq!(near.rows_limit(5000), 1000, "a rows probe among summaries streams a fifth of a chunk");
        assert_eq!(remote.rows_limit(5000), 5000, "rows as the table's strategy stream whole chunks");
        let shared = Chooser::new(Strategy::Auto, true, 5000, Duration::from_millis(500)).with_workers(4);
        shared.pick();
        shared.measured(true, 100 * MS, 1000);
        shared.pick();
        shared.measured(false, 20 * MS, 1000);
        assert!(shared.pick(), "4 workers would share the link: rows 5x cheaper alone is not enough");
        shared.measured(false, Duration::ZERO, 1000);
        shared.measured(false, Duration::ZERO, 1000);
        shared.measured(false, Duration::ZERO, 1000);
        assert!(!shared.pick(), "rows far cheaper even when shared: left");
        let gap = Chooser::new(Strategy::Auto, true, 5000, Duration::from_millis(500)).with_workers(4);
        gap.pick();
        gap.measured(true, 400 * MS, 20_000);
        gap.pick();
        gap.measured(false, 100 * MS, 5_000);
        gap.measured(true, 50 * MS, 1);
        assert!(gap.pick(), "a summary chunk of one row (a gap in the keys) does not make summaries look dear");
        let local4 = |summary_ms: u64| {
            let c = Chooser::new(Strategy::Auto, false, 5000, Duration::from_millis(500)).with_workers(4);
            c.pick();
            c.measured(false, 100 * MS, 1000);
            c.pick();
            c.measured(true, Duration::from_millis(summary_ms), 1000);
            c.pick()
        };
        assert!(!local4(40), "4 workers would share the servers' cores: summaries 2.5x cheaper alone are not taken");
        assert!(local4(10), "summaries far cheaper even when shared: taken");
        let local = Chooser::new(Strategy::Auto, false, 5000, Duration::from_millis(500));
        assert!(!local.pick(), "a local side starts with rows");
        local.measured(false, 100 * MS, 1000);
        assert!(local.pick(), "the second chunk tries summaries");
        local.measured(true, 300 * MS, 1000);
        let picks: Vec<bool> = (3..=PROBE_EVERY).map(|_| local.pick()).collect();
        assert!(picks[..picks.len() - 1].iter().all(|s| !s), "rows stay while cheaper");
        assert!(picks[picks.len() - 1], "every PROBE_EVERY chunks the other is measured again");
        local.measured(true, MS, 5_000);
        assert_eq!(local.summary_rows(), 5_000, "a probe is one rows chunk's size and does not resize the chunks");
        for fixed in [Strategy::Rows, Strategy::Summary] {
            let c = Chooser::new(fixed, true, 5000, Duration::from_millis(500));
            assert!((0..5).all(|_| c.pick() == (fixed == Strategy::Summary)));
        }
    }

    #[test]
    fn summary_chunks_are_sized_by_time() {
        let c = Chooser::new(Strategy::Summary, true, 5000, Duration::from_millis(500));
        assert_eq!(c.summary_rows(), 20_000);
        c.measured(true, 125 * MS, 20_000);
        assert_eq!(c.summary_rows(), 80_000, "a quick chunk grows (at most 4x per chunk)");
        c.measured(true, 1000 * MS, 80_000);
        assert_eq!(c.summary_rows(), 40_000, "a slow one shrinks");
    }
}
