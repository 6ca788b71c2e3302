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
use crate::key::{Key, KeyVal};
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// Levels of bisection before a differing range is streamed whatever its size.
const MAX_DEPTH: u32 = 4;
type Found = Vec<(Key, Mismatch)>;
/// A range's settling, boxed because it recurses.
type Settling<'a> = Pin<Box<dyn Future<Output = Result<(Found, u64)>> + Send + 'a>>;

impl Walker {
    /// One chunk by summary: the base's next keys bound it, both sides summarise it per bucket, and the
    /// differing buckets are bisected.
    pub(super) async fn summary_step(&self, lo: Option<&Key>) -> Result<Step> {
        let limit = self.chooser.summary_rows();
        let density = self.chooser.density();
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
        let mut matcher = super::matcher::Matcher::new(b);
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
