//! The summary strategy's walk, and the per-table choice between it and streaming rows.
//!
//! A summary chunk is the base's next `n` keys (found by a walk of the key index alone, which also yields
//! the chunk's bucket cut points): both servers summarise the chunk per bucket in one statement each
//! (`summary::summarise`), equal buckets pass, and a differing bucket is cut again on the base's index and
//! summarised again, until it holds few enough rows to stream through the compare core. `n` is resized
//! after every chunk so that a chunk takes about `full.chunk_time`.

use super::{Step, Walker};
use crate::deliver::event::Mismatch;
use crate::error::Result;
use crate::feed::full::summary::{int_of, max_buckets, max_key, summarise, walk_keys};
use crate::feed::full::Strategy;
use crate::key::{Key, KeyVal};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Levels of bisection before a differing range is streamed whatever its size.
const MAX_DEPTH: u32 = 4;
/// A table's strategy is measured again every this many chunks.
const PROBE_EVERY: u64 = 64;
/// How much cheaper per row the other strategy must measure before `auto` leaves the one it started with.
const SWITCH_GAIN: f64 = 2.0;
/// Summary chunk sizes stay within these bounds (rows).
const MIN_SUMMARY_ROWS: u64 = 1_000;
const MAX_SUMMARY_ROWS: u64 = 2_000_000;

type Found = Vec<(Key, Mismatch)>;
/// A range's settling, boxed because it recurses.
type Settling<'a> = Pin<Box<dyn Future<Output = Result<(Found, u64)>> + Send + 'a>>;

/// Chooses each chunk's strategy for one table (shared by the walkers of its segments), and sizes its
/// summary chunks by time.
#[derive(Clone)]
pub struct Chooser {
    strategy: Strategy,
    state: Arc<Mutex<ChoiceState>>,
    chunk_time: Duration,
    remote: bool,
    /// how many of the table's chunks share the link when they all stream rows (see `with_workers`)
    link_share: f64,
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
        Chooser { strategy, state: Arc::new(Mutex::new(state)), chunk_time, remote, link_share: 1.0 }
    }

    /// `workers` chunks of the table run at once. Across a network, a rows chunk measured among summary
    /// chunks had the link to itself, while rows chunks on every worker would share it: there rows must
    /// measure this many times cheaper again before `auto` leaves summaries. (Measured: with 4 workers
    /// across a 100 Mbit/s link, one rows probe of 5,000 rows measured as cheap per row as the summary
    /// chunks around it, and the table then streamed at the link's speed, 1.5x slower than summaries.)
    pub fn with_workers(mut self, workers: usize) -> Chooser {
        self.link_share = if self.remote { workers.max(1) as f64 } else { 1.0 };
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
                    ([Some(rows), Some(summary)], true) => summary < rows * SWITCH_GAIN * self.link_share,
                    ([Some(rows), Some(summary)], false) => summary * SWITCH_GAIN < rows,
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
    fn found_density(&self, rows: u64, span: i128) {
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

    fn summary_rows(&self) -> u64 {
        let s = self.state();
        if s.summary_best {
            s.summary_rows
        } else {
            s.summary_rows.min(s.probe_rows)
        }
    }
}

impl Walker {
    /// One chunk by summary: the base's next keys bound it, both sides summarise it per bucket, and the
    /// differing buckets are bisected.
    pub(super) async fn summary_step(&self, lo: Option<&Key>) -> Result<Step> {
        let limit = self.chooser.summary_rows();
        let density = self.chooser.state().density;
        if let (true, Some(l), Some(density)) = (self.plan.integer_key, lo.and_then(int_of), density) {
            return self.value_step(l, density, limit).await;
        }
        let started = Instant::now();
        let walk =
            walk_keys(&self.engine.base, &self.plan, lo, self.hi.as_ref(), limit, self.bucket_rows(limit)).await?;
        let walked = started.elapsed();
        let more = walk.count >= limit && walk.last.is_some();
        let hi = if more { walk.last.clone() } else { self.hi.clone() };
        let buckets = walk.cuts.len() + 1;
        if let (Some(l), Some(last)) = (lo.and_then(int_of), walk.last.as_ref().and_then(int_of)) {
            self.chooser.found_density(walk.count, last - l);
        }
        let (found, rows) = self.settle_range(lo.cloned(), hi.clone(), walk.cuts, 0).await?;
        tracing::debug!(
            table = %self.plan.name, rows, buckets, walk_ms = walked.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64, "summary chunk"
        );
        Ok(Step { hi, more, found, rows, next: None, last_base: walk.last })
    }

    /// One chunk by summary on a single integer key, without walking the index: the chunk and its
    /// buckets are cut by key value, sized by the density the table's earlier chunks found. Where keys
    /// are spread unevenly a bucket may hold more rows than planned; if it differs, it is walked and cut
    /// again like any large bucket. (A walk of the base's key index costs about a third of the summary
    /// statement's own server time per row.)
    async fn value_step(&self, lo: i128, density: f64, limit: u64) -> Result<Step> {
        let started = Instant::now();
        let span = ((limit as f64 / density).ceil() as i128).max(1);
        // The segment's end, or for the last (open) segment the base's largest key.
        let top = match &self.hi {
            Some(h) => int_of(h),
            None => max_key(&self.engine.base, &self.plan, Some(&int_key(lo)), None).await?.as_ref().and_then(int_of),
        };
        let (hi, more, upper) = match top {
            Some(top) if lo + span < top => (Some(int_key(lo + span)), true, lo + span),
            Some(top) => (self.hi.clone(), false, top),
            None => (self.hi.clone(), false, lo + 1),
        };
        let buckets = (limit.div_ceil(self.bucket_rows(limit))).clamp(1, max_buckets(&self.plan)) as i128;
        let width = ((upper - lo) / buckets).max(1);
        let cuts: Vec<Key> = (1..buckets).map(|i| lo + i * width).take_while(|c| *c < upper).map(int_key).collect();
        let n = cuts.len() + 1;
        let (found, rows) = self.settle_range(Some(int_key(lo)), hi.clone(), cuts, 0).await?;
        if more {
            self.chooser.found_density(rows, upper - lo);
        }
        tracing::debug!(
            table = %self.plan.name, rows, buckets = n, total_ms = started.elapsed().as_millis() as u64,
            "summary chunk by key value"
        );
        Ok(Step { hi, more, found, rows, next: None, last_base: None })
    }

    /// Summarises `(lo, hi]` cut at `cuts` on both sides and settles each bucket: equal ones pass, small
    /// differing ones are streamed, larger ones are cut again.
    fn settle_range(&self, lo: Option<Key>, hi: Option<Key>, cuts: Vec<Key>, depth: u32) -> Settling<'_> {
        Box::pin(async move {
            let plan = &self.plan;
            let started = Instant::now();
            let (blo, bhi, bcuts) = (lo.as_ref(), hi.as_ref(), &cuts);
            let timed = |db| async move {
                let r = summarise(db, plan, blo, bhi, bcuts).await;
                (r, started.elapsed())
            };
            let ((b, tb), (o, to)) = tokio::join!(timed(&self.engine.base), timed(&self.engine.other));
            let (b, o) = (b?, o?);
            let differing = b.iter().zip(&o).filter(|(b, o)| b != o).count();
            tracing::debug!(
                table = %plan.name, depth, buckets = b.len(), differing, base_ms = tb.as_millis() as u64,
                other_ms = to.as_millis() as u64, "summarised"
            );
            self.throttle.charge(b.iter().map(|s| s.count).sum(), o.iter().map(|s| s.count).sum());
            let stream_rows = self.stream_rows();
            let (mut found, mut rows) = (Vec::new(), 0);
            // Differing buckets are settled concurrently: each costs round trips, not server work.
            let mut settling: Vec<Settling<'_>> = Vec::new();
            for (i, (bs, os)) in b.iter().zip(&o).enumerate() {
                if bs == os {
                    rows += bs.count;
                    continue;
                }
                let blo = if i == 0 { lo.clone() } else { cuts.get(i - 1).cloned() };
                let bhi = if i == cuts.len() { hi.clone() } else { cuts.get(i).cloned() };
                if bs.count <= stream_rows || depth >= MAX_DEPTH {
                    let counts = (bs.count, os.count);
                    settling.push(Box::pin(async move { self.stream_bucket(blo, bhi, counts).await }));
                } else {
                    let limit = bs.count + bs.count / 2 + 64;
                    let step = self.bucket_rows(bs.count);
                    settling.push(Box::pin(async move {
                        let sub = walk_keys(&self.engine.base, plan, blo.as_ref(), bhi.as_ref(), limit, step).await?;
                        self.settle_range(blo, bhi, sub.cuts, depth + 1).await
                    }));
                }
            }
            for (f, r) in futures_util::future::try_join_all(settling).await? {
                found.extend(f);
                rows += r;
            }
            Ok((found, rows))
        })
    }

    /// Differing buckets of at most this many base rows are streamed rather than bisected again: small,
    /// so that few rows cross the network per difference.
    fn stream_rows(&self) -> u64 {
        (self.chunk as u64 / 64).max(16)
    }

    /// Rows per bucket when summarising `rows` rows: as few as the key's bucket limit allows, down to
    /// `stream_rows`, so that a differing bucket is usually streamed at once.
    fn bucket_rows(&self, rows: u64) -> u64 {
        rows.div_ceil(max_buckets(&self.plan)).max(self.stream_rows())
    }

    /// Streams a differing bucket through the compare core. When both sides' counts fit one page, both
    /// are read at once (one round trip of latency instead of two); a bucket that grew since it was
    /// summarised is streamed page by page.
    async fn stream_bucket(&self, lo: Option<Key>, hi: Option<Key>, counts: (u64, u64)) -> Result<(Found, u64)> {
        let page = self.chunk;
        if counts.0.max(counts.1) >= page as u64 {
            return self.stream_range(lo.as_ref(), hi.as_ref()).await;
        }
        let (lo, hi) = (lo.as_ref(), hi.as_ref());
        let (b, o) = tokio::join!(
            self.engine.base.read_range(&self.plan, lo, hi, page),
            self.engine.other.read_range(&self.plan, lo, hi, page)
        );
        let (b, o) = (b?, o?);
        if b.len() >= page || o.len() >= page {
            return self.stream_range(lo, hi).await;
        }
        let base_count = b.len() as u64;
        let mut matcher = super::Matcher::new(&self.plan, b);
        matcher.other_rows(&self.plan, &o);
        let (found, rows) = matcher.finish(&self.plan);
        self.throttle.charge(base_count, o.len() as u64);
        Ok((found, rows))
    }

    /// Streams `(lo, hi]` of both sides through the compare core, `chunk` base rows at a time.
    async fn stream_range(&self, lo: Option<&Key>, hi: Option<&Key>) -> Result<(Found, u64)> {
        let started = Instant::now();
        let (mut found, mut rows) = (Vec::new(), 0);
        let mut plo = lo.cloned();
        loop {
            let page = self.engine.base.read_range(&self.plan, plo.as_ref(), hi, self.chunk).await?;
            let more = page.len() == self.chunk;
            let phi = match page.last() {
                Some(last) if more => Some(crate::verdict::check::row_key(&self.plan, last)),
                _ => hi.cloned(),
            };
            let base_count = page.len() as u64;
            let (f, r) = self.compare_chunk(&self.engine.other, plo.as_ref(), phi.as_ref(), page).await?;
            self.throttle.charge(base_count, r);
            found.extend(f);
            rows += r;
            if !more {
                tracing::debug!(table = %self.plan.name, rows, ms = started.elapsed().as_millis() as u64, "streamed");
                return Ok((found, rows));
            }
            plo = phi;
        }
    }
}

/// A single integer key (signed where it fits, as a BIGINT UNSIGNED above that).
fn int_key(v: i128) -> Key {
    Key(vec![match i64::try_from(v) {
        Ok(i) => KeyVal::Int(i),
        Err(_) => KeyVal::UInt(u64::try_from(v).unwrap_or(u64::MAX)),
    }])
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
        let local4 = Chooser::new(Strategy::Auto, false, 5000, Duration::from_millis(500)).with_workers(4);
        local4.pick();
        local4.measured(false, 100 * MS, 1000);
        local4.pick();
        local4.measured(true, 40 * MS, 1000);
        assert!(local4.pick(), "near sides share no link: summaries 2.5x cheaper are taken");
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
