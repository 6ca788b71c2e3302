//! Poll mode, the original design's incremental mode done right: a keyset walk over `(utime, key)` on the
//! base, `check.batch_size` rows at a time, sleeping `poll.interval` when caught up.
//!
//! A cursor alone loses rows: one committed after a poll with the cursor's utime and a smaller key, or
//! with a slightly older utime (a transaction that committed late, a writer's clock behind another's),
//! sorts before the cursor. So every round re-reads a trailing overlap, the rows with utime at or after
//! the cursor's utime minus `poll.skew` and the column's precision, and checks only the `(utime, key)`
//! pairs it has not checked yet: nothing within the overlap is lost, and nothing is re-read forever (the
//! overlap moves with the cursor, and the set of checked pairs is trimmed to it). The cursor is
//! checkpointed per table, behind checks that are done or durable; after a restart the overlap is
//! checked once more.
//!
//! Polling cannot see hard deletes, so poll mode also runs the reverse sweep every `poll.sweep`: a keyset
//! walk over the other side that reports rows missing on the base as `base_missing`.
//!
//! A known limit of any utime poller: a row committed later than `poll.skew` behind a utime already read
//! (a long transaction), or updated again with the very same utime after its pair was checked, is not
//! seen until the next full pass.

use crate::calendar::civil_from_days;
use crate::clock::now_ms;
use crate::deliver::event::Mode;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::key::{Key, KeyVal};
use crate::mysql::db::{push_tuple_params, quote_ident, tuple_predicate, Db};
use crate::mysql::kind::Kind;
use crate::mysql::schema::{ticks, TablePlan, Utime};
use crate::verdict::check::check_keys;
use mysql_async::Value;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
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

/// One page of changed rows in `(utime, key)` order: after `after` (a pair read earlier in this round),
/// or else from utime `from` on.
async fn page(
    db: &Db,
    plan: &TablePlan,
    utime: &str,
    after: Option<&(KeyVal, Key)>,
    from: &Value,
    limit: usize,
) -> Result<Vec<(KeyVal, Key)>> {
    let mut cols = vec![utime.to_string()];
    cols.extend(plan.key.iter().cloned());
    let list = cols.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    let mut params = Vec::new();
    let filter = match after {
        Some((u, k)) => {
            let mut parts = vec![u.clone()];
            parts.extend(k.0.iter().cloned());
            push_tuple_params(&mut params, &Key(parts));
            tuple_predicate(&cols, ">", ">")
        }
        None => {
            params.push(from.clone());
            format!("{} >= ?", quote_ident(utime))
        }
    };
    let sql = format!("SELECT {list} FROM {} WHERE {filter} ORDER BY {list} LIMIT {limit}", quote_ident(&plan.name));
    let rows = db.rows(&sql, params, &format!("polling `{}`", plan.name)).await?;
    Ok(rows.into_iter().map(|r| (KeyVal::from(&r[0]), Key::from_values(&r[1..]))).collect())
}

/// The inverse of [`ticks`] for the column's kind.
fn from_ticks(kind: Kind, t: i64) -> Value {
    match kind {
        Kind::DateTime => {
            let t = t.max(0);
            let (days, rest) = (t.div_euclid(86_400_000_000), t.rem_euclid(86_400_000_000));
            let (y, mo, d) = civil_from_days(days);
            let secs = rest / 1_000_000;
            Value::Date(
                y.clamp(0, 9999) as u16,
                mo as u8,
                d as u8,
                (secs / 3600) as u8,
                (secs / 60 % 60) as u8,
                (secs % 60) as u8,
                (rest % 1_000_000) as u32,
            )
        }
        _ => Value::Int(t),
    }
}

/// One table's polling state between rounds.
#[derive(Default)]
pub struct TableState {
    loaded: bool,
    cursor: Option<Cursor>,
    /// `(utime, key)` pairs checked within the overlap: ticks → canonical keys.
    checked: BTreeMap<i64, HashSet<Vec<u8>>>,
    /// Where a round that ran out of its page budget continues.
    resume: Option<(KeyVal, Key)>,
}

impl TableState {
    /// The `(utime, key)` pairs of a page not checked yet, each once (a key may show up twice in a page
    /// when its utime changed between pages).
    fn fresh(&self, rows: Vec<(KeyVal, Key)>) -> Vec<(Option<i64>, Key)> {
        let mut fresh = Vec::new();
        let mut in_page = HashSet::new();
        for (ut, key) in rows {
            let t = ticks(&ut);
            let c = key.canonical();
            let done = t.is_some_and(|t| self.checked.get(&t).is_some_and(|s| s.contains(&c)));
            if !done && in_page.insert((t, c)) {
                fresh.push((t, key));
            }
        }
        fresh
    }

    /// Records `fresh` as checked and moves the cursor to `last` (the page's last pair) if that is ahead
    /// of it: a late row inside the overlap sorts before the cursor, which never moves back. Pairs that
    /// fell behind the overlap are forgotten (no round reads them again). Returns the new cursor, if it
    /// moved.
    fn checked_through(
        &mut self,
        fresh: Vec<(Option<i64>, Key)>,
        last: &(KeyVal, Key),
        overlap: i64,
    ) -> Option<Cursor> {
        for (t, k) in fresh {
            if let Some(t) = t {
                self.checked.entry(t).or_default().insert(k.canonical());
            }
        }
        let ahead = match (&self.cursor, ticks(&last.0)) {
            (Some(c), Some(t)) => ticks(&c.utime).is_none_or(|ct| t >= ct),
            _ => true,
        };
        let moved = ahead.then(|| Cursor { utime: last.0.clone(), key: last.1.clone() });
        if let Some(next) = &moved {
            self.cursor = Some(next.clone());
        }
        if let Some(ct) = self.cursor.as_ref().and_then(|c| ticks(&c.utime)) {
            self.checked = self.checked.split_off(&ct.saturating_sub(overlap));
        }
        moved
    }
}

/// The overlap behind the cursor, in the column's ticks: its precision plus `poll.skew`.
fn overlap(u: &Utime, skew: Duration) -> i64 {
    let skew = match u.kind {
        Kind::DateTime => skew.as_micros(),
        _ => skew.as_millis(),
    };
    u.step.saturating_add(i64::try_from(skew).unwrap_or(i64::MAX))
}

/// Checks one table's changes since its cursor (minus the overlap) until caught up (or `budget` pages).
/// Returns whether it is caught up.
async fn poll_table(
    engine: &Engine,
    plan: &TablePlan,
    st: &mut TableState,
    since_ms: i64,
    budget: usize,
) -> Result<bool> {
    let Some(u) = plan.utime.clone() else { return Ok(true) };
    let name = cursor_name(&plan.name);
    if !st.loaded {
        st.cursor = engine.store.get::<CursorRecord>(&name)?.map(|CursorRecord::V1(c)| c);
        st.loaded = true;
    }
    let overlap = overlap(&u, engine.cfg.poll.skew);
    // The round starts at the cursor's utime minus the overlap (or at `since` before any cursor).
    let from = match st.cursor.as_ref() {
        Some(c) => match ticks(&c.utime) {
            Some(t) => from_ticks(u.kind, t.saturating_sub(overlap)),
            None => Value::from(&c.utime),
        },
        None => since_value(u.kind, since_ms),
    };
    let batch = engine.cfg.check.batch_size;
    for _ in 0..budget {
        let rows = page(&engine.base, plan, &u.column, st.resume.as_ref(), &from, batch).await?;
        let Some(last) = rows.last().cloned() else {
            st.resume = None;
            return Ok(true);
        };
        let full = rows.len() == batch;
        let fresh = st.fresh(rows);
        let mut seen = HashSet::new();
        let keys: Vec<Key> = fresh.iter().map(|(_, k)| k.clone()).filter(|k| seen.insert(k.canonical())).collect();
        if !keys.is_empty() {
            let found = check_keys(&engine.base, &engine.other, plan, &keys).await?;
            engine.settle.ledger().checked(&plan.name, &keys, &found).await?;
            engine.settle.submit(&plan.name, Mode::Poll, found).await?;
            engine.stats.rows_checked.fetch_add(keys.len() as u64, Relaxed);
        }
        if let Some(next) = st.checked_through(fresh, &last, overlap) {
            // After the checks' mismatches are durable; it may reach the disk later, never earlier.
            engine.store.put_lazy(&name, &CursorRecord::V1(next.clone()))?;
            if let KeyVal::Int(ms) = next.utime {
                engine.stats.poll_lag_ms.store((now_ms() as i64 - ms).max(0), Relaxed);
            }
        }
        if !full {
            st.resume = None;
            return Ok(true);
        }
        st.resume = Some(last);
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
    let mut states: HashMap<String, TableState> = HashMap::new();
    let mut backoff = crate::retry::Backoff::new(crate::retry::Policy::QUERY);
    let result = loop {
        if *shutdown.borrow() {
            break Ok(());
        }
        let mut caught_up = true;
        let mut failure = None;
        let started = crate::clock::now_ms();
        for plan in &plans {
            let st = states.entry(plan.name.clone()).or_default();
            match poll_table(engine, plan, st, since, 16).await {
                Ok(done) => caught_up &= done,
                Err(e) => failure = Some(e),
            }
        }
        if caught_up && failure.is_none() {
            // Every row committed before `started` has been read and checked (the cutover gate's mark).
            engine.poll_rounds.send_replace(Some((started, crate::clock::now_ms())));
        }
        if failure.is_none() && last_sweep.elapsed() >= engine.cfg.poll.sweep {
            last_sweep = Instant::now();
            for plan in &plans {
                match sweep_table(engine, plan, Mode::Poll, &shutdown).await {
                    // Stopping: the loop ends at its next turn; the sweep runs again after a restart.
                    Ok(_) | Err(Error::Interrupted) => {}
                    Err(e) => failure = Some(e),
                }
            }
        }
        let nap = match failure {
            Some(e) if e.is_transient() => {
                tracing::warn!(error = %e, "polling failed; retrying");
                backoff.next_delay()
            }
            Some(e) => break Err(e),
            None => {
                backoff.reset();
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
/// (after the settle window, like every mismatch). Returns how many candidates it found, or
/// `Error::Interrupted` when asked to stop before the table's end (so an interrupted sweep is not taken
/// for a clean one).
pub async fn sweep_table(
    engine: &Engine,
    plan: &TablePlan,
    mode: Mode,
    shutdown: &watch::Receiver<bool>,
) -> Result<usize> {
    let chunk = engine.cfg.full.chunk_rows;
    let mut lo: Option<Key> = None;
    let mut candidates = 0;
    tracing::info!(table = %plan.name, "sweeping the other side for rows the base lacks");
    loop {
        if *shutdown.borrow() {
            return Err(Error::Interrupted);
        }
        let rows = engine.other.read_range(plan, lo.as_ref(), None, chunk).await?;
        let keys: Vec<Key> = rows.iter().map(|r| crate::verdict::check::row_key(plan, r)).collect();
        let present: HashSet<Vec<u8>> = engine
            .base
            .read_keys(plan, &keys)
            .await?
            .iter()
            .map(|r| crate::verdict::check::row_identity(plan, r))
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(utime: i64, id: i64) -> (KeyVal, Key) {
        (KeyVal::Int(utime), Key(vec![KeyVal::Int(id)]))
    }

    fn ids(fresh: &[(Option<i64>, Key)]) -> Vec<i64> {
        fresh.iter().map(|(_, k)| if let KeyVal::Int(i) = k.0[0] { i } else { -1 }).collect()
    }

    /// A round re-reads the overlap: pairs checked in an earlier round are skipped, a row committed late
    /// behind the cursor (same utime, smaller key; an older utime inside the overlap) is fresh once, and
    /// the cursor never moves back.
    #[test]
    fn the_overlap_is_checked_once_and_the_cursor_only_moves_forward() {
        let mut st = TableState::default();
        let first = vec![pair(1000, 1), pair(1000, 2), pair(1005, 3)];
        let fresh = st.fresh(first.clone());
        assert_eq!(ids(&fresh), vec![1, 2, 3]);
        let moved = st.checked_through(fresh, &pair(1005, 3), 10).expect("the first page moves the cursor");
        assert_eq!((ids(&st.fresh(first)), ticks(&moved.utime)), (vec![], Some(1005)));
        // The next round from 1005 - 10: a late row at 1000 with a smaller key, one at 998 (inside the
        // overlap), and the pairs already checked.
        let second = vec![pair(998, 9), pair(1000, 0), pair(1000, 1), pair(1000, 2), pair(1005, 3)];
        let fresh = st.fresh(second.clone());
        assert_eq!(ids(&fresh), vec![9, 0]);
        assert!(st.checked_through(fresh, &pair(1005, 3), 10).is_some(), "same place: not behind");
        assert_eq!(ids(&st.fresh(second)), Vec::<i64>::new(), "nothing is checked twice");
        // A page ending behind the cursor leaves it where it is.
        let fresh = st.fresh(vec![pair(1001, 7)]);
        assert!(st.checked_through(fresh, &pair(1001, 7), 10).is_none());
        assert_eq!(st.cursor.as_ref().and_then(|c| ticks(&c.utime)), Some(1005));
    }

    /// A key updated again (a new utime) is a new pair: checked again. Pairs behind the overlap are
    /// forgotten, so memory follows the overlap, not the table.
    #[test]
    fn a_new_utime_is_a_new_pair_and_old_pairs_are_forgotten() {
        let mut st = TableState::default();
        let fresh = st.fresh(vec![pair(100, 1)]);
        st.checked_through(fresh, &pair(100, 1), 5);
        assert_eq!(ids(&st.fresh(vec![pair(100, 1), pair(104, 1)])), vec![1], "utime 104 is new");
        let fresh = st.fresh(vec![pair(200, 2)]);
        st.checked_through(fresh, &pair(200, 2), 5);
        assert_eq!(st.checked.keys().copied().collect::<Vec<_>>(), vec![200], "pairs behind 195 are gone");
        // One key twice in a page (its utime changed between two reads) is one check per pair.
        assert_eq!(ids(&st.fresh(vec![pair(300, 5), pair(300, 5), pair(301, 5)])), vec![5, 5]);
    }

    #[test]
    fn datetime_ticks_round_trip_and_step_back_across_days() {
        for (y, mo, d) in
            [(2026u16, 11u8, 21u8), (2024, 2, 29), (2024, 3, 1), (2000, 1, 1), (1970, 1, 1), (9999, 12, 31)]
        {
            let v = KeyVal::Date(y, mo, d, 23, 59, 58, 999_999);
            assert_eq!(from_ticks(Kind::DateTime, ticks(&v).unwrap()), Value::from(&v));
        }
        let t = ticks(&KeyVal::Date(2024, 3, 1, 0, 0, 1, 0)).unwrap();
        assert_eq!(from_ticks(Kind::DateTime, t - 2_000_000), Value::Date(2024, 2, 29, 23, 59, 59, 0));
        let t = ticks(&KeyVal::Date(2027, 1, 1, 0, 0, 0, 5)).unwrap();
        assert_eq!(from_ticks(Kind::DateTime, t - 6), Value::Date(2026, 12, 31, 23, 59, 59, 999_999));
    }
}
