//! Binlog entries of the settle stage: their base side is the versions the row images gave
//! ([`crate::verdict::versions`] holds the rule), so their re-checks read the other side only; one read of
//! both sides confirms a row just before it is reported.

use super::{Concluded, Pending, Settle};
use crate::clock::now_ms;
use crate::deliver::event::{Mismatch, Mode};
use crate::error::Result;
use crate::key::{Key, KeyVal};
use crate::mysql::db::Row;
use crate::mysql::schema::TablePlan;
use crate::verdict::check::row_identity;
use crate::verdict::compare::digest::{digest, Side};
use crate::verdict::compare::{compare_rows, Outcome};
use crate::verdict::versions::{columns_of, Judgement, Sighting, Version, Versions};
use mysql_async::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

/// One key of a binlog batch as its check found it: the difference from its latest image (`None`: the
/// other side showed that very version), the versions the batch saw: the latest (compared columns in
/// plan order; `None`: absent) and the older ones, oldest first; and what the check read of the other
/// side, as a sighting to judge a pending entry by.
pub struct Seen {
    pub key: Key,
    pub mismatch: Option<Mismatch>,
    pub current: Option<Vec<Value>>,
    pub older: Vec<Version>,
    pub sighted: Option<Sighted>,
}

/// The other side's row as a batch's check read it. It is as good a look as a pass's: a pending key
/// changed by the batch is judged by it when its versions are added, so a hot row (in every batch) needs
/// no look of the pass's own until it falls due for a report.
#[derive(Clone, Copy, Debug)]
pub struct Sighted {
    /// digest of the other side's row (`None`: absent)
    pub other: Option<u64>,
    /// before the read began (ms): lag is measured from it
    pub now: u64,
    /// after the read ended (ms)
    pub seen_ms: u64,
    /// every base commit up to this time is in this batch or an earlier one
    pub horizon: u64,
}

impl Seen {
    fn versions(self) -> Versions {
        let current = self.current.map(|v| v.into_iter().map(owned).collect());
        Versions::new(current, self.older)
    }
}

/// A value as stored, moved rather than copied.
fn owned(v: Value) -> KeyVal {
    match v {
        Value::Bytes(b) => KeyVal::Bytes(b),
        other => KeyVal::from(&other),
    }
}

impl Settle {
    /// Binlog mode: every base commit up to `ms` has been read and its verdicts handed over (called in
    /// batch order; a heartbeat of an idle stream moves it too). Sightings of unknown versions after it
    /// wait for it ([`crate::verdict::versions`]).
    pub fn binlog_read_through(&self, ms: u64) {
        self.binlog_horizon.fetch_max(ms, Relaxed);
    }

    /// Whether any re-check is pending (cheap): a key found equal needs no bookkeeping unless its entry
    /// may exist.
    pub fn any_pending(&self) -> bool {
        !self.store.pending_is_empty()
    }

    /// Binlog mode's verdicts of one batch, in batch order. A differing key becomes pending with its
    /// versions; a key pending already gets the new versions added (its window never restarts, its entry
    /// is never lost); a pending key the check found equal to its newest version is resolved. The entries
    /// are stored, not waited for on disk: they reach it no later than the checkpoint written after them.
    pub async fn submit_versions(&self, table: &str, seen: Vec<Seen>) -> Result<()> {
        self.store.sink_refused()?;
        if seen.is_empty() {
            return Ok(());
        }
        let window = self.window.as_millis() as u64;
        if window == 0 {
            let found = seen.into_iter().filter_map(|s| Some((s.key, s.mismatch?))).collect();
            return self.submit(table, Mode::Binlog, found).await;
        }
        let now = now_ms();
        let look = self.next_look(now).min(now + window);
        let plan = self.plans.get(table);
        let columns = plan.as_deref().map_or(0, columns_of);
        let versions = |s: Seen| Versions { columns, ..s.versions() };
        // The entries are read and written under the lock a pass's mark update takes, so two batches'
        // merges cannot interleave. A pass's conclusion (a compare-and-swap on the entry it read) does not
        // take it: one landing between the read and the write below is overwritten by the merged entry, so
        // a reported entry may come back and be reported again (the ledger suppresses the repeat); a
        // resolved one is judged again. Nothing is lost either way.
        let _mark = self.mark.lock().await;
        // No entry pending: the keys found equal need nothing (binlog entries are only made here, under
        // this lock, so none can appear for them meanwhile).
        let any = self.any_pending();
        let seen = seen.into_iter().filter(|s| any || s.mismatch.is_some());
        let (mut put, mut gone, mut added, mut lagging) = (Vec::new(), Vec::new(), 0i64, Vec::new());
        for mut s in seen {
            let old = self.store.pending_get::<Pending>(table, &s.key)?;
            match (old, s.mismatch.take()) {
                (None, None) => {}
                (None, Some(last)) => {
                    added += 1;
                    put.push(Pending {
                        table: table.to_string(),
                        key: s.key.clone(),
                        mode: Mode::Binlog,
                        first_seen_ms: now,
                        deadline_ms: now + window,
                        next_check_ms: look,
                        last,
                        versions: Some(versions(s)),
                        observed: None,
                    });
                }
                (Some(old), m) => match old.versions.clone() {
                    Some(mut v) => {
                        let (key, sighted) = (s.key.clone(), s.sighted);
                        v.merge(versions(s));
                        let Some(m) = m else {
                            // The other side showed the newest version the base has had: resolved.
                            gone.push(old);
                            continue;
                        };
                        let next_check_ms = match (sighted, plan.as_deref()) {
                            (Some(o), Some(plan)) if v.columns == columns => {
                                let (next, known) = self.judge_sighted(plan, &mut v, o, old.first_seen_ms);
                                if known {
                                    lagging.push(key);
                                }
                                next
                            }
                            _ => old.next_check_ms.min(look),
                        };
                        put.push(Pending { last: m, next_check_ms, versions: Some(v), ..old });
                    }
                    // An entry re-checked on both sides (an earlier release's, or one whose images could not
                    // serve) becomes a versioned one and keeps when it was first seen.
                    None => {
                        if let Some(last) = m {
                            put.push(Pending { last, versions: Some(versions(s)), ..old });
                        }
                    }
                },
            }
        }
        if !lagging.is_empty() && self.ledger.open_count() > 0 {
            self.ledger.close_equal(table, &lagging, &[]).await?;
        }
        let resolved = self.store.pending_remove_if_unchanged(&gone)?;
        self.stats.resolved.fetch_add(resolved as u64, Relaxed);
        if put.is_empty() {
            return Ok(());
        }
        self.oldest[Mode::Binlog.index()].fetch_min(now, Relaxed);
        // Not waited for on disk: the checkpoint past this batch is written after these entries, so it
        // never reaches the disk without them (the store recovers a prefix of its writes), and a crash
        // before then reads the batch again. Waiting for the disk here cost an fsync per batch.
        self.store.pending_put_lazy(&put)?;
        if added > 0 {
            tracing::info!(table, count = added, mode = "binlog", "mismatches wait out the settle window");
        }
        self.stats.pending.fetch_add(added - resolved as i64, Relaxed);
        // Only an entry due sooner than the pass knows needs it awake: a new one, or one whose sighting
        // calls for a report (a hot row's entry is merged into by every batch, its look put off each time).
        if let Some(due) = put.iter().map(|p| p.next_check_ms).min() {
            self.wake_by(due);
        }
        Ok(())
    }

    /// Judges a pending entry by what a batch's check read of the other side, as a pass's look would
    /// ([`Self::recheck_versions`]). Returns when to look next, and whether the other side showed a version
    /// the entry knows (it only lags). A report is the pass's to make (it reads again and confirms it), so
    /// an entry that calls for one falls due now.
    fn judge_sighted(&self, plan: &TablePlan, v: &mut Versions, o: Sighted, first_seen_ms: u64) -> (u64, bool) {
        let window = self.window.as_millis() as u64;
        let current: Option<Vec<Value>> = v.current.as_ref().map(|c| c.iter().map(Value::from).collect());
        let sighting = Sighting {
            is_current: false,
            other: o.other,
            current: current.as_ref().map(|c| digest(&plan.kinds, Side::Base, c)),
            now: o.now,
            seen_ms: o.seen_ms,
            horizon: o.horizon,
        };
        let known = v.knows(o.other);
        // Judging consumes the suspects it rules on (the only thing it changes): a report leaves them for
        // the pass, whose own judgement must find the same evidence.
        let suspects = v.suspects.clone();
        match v.judge(sighting, first_seen_ms, window) {
            Judgement::Keep { due_ms } => {
                v.prune(o.now, window);
                (self.next_look(o.now).min(due_ms), known)
            }
            Judgement::Report | Judgement::Resolved => {
                v.suspects = suspects;
                (o.now, known)
            }
        }
    }

    /// Re-checks binlog entries by reading the other side only and judging what it shows against the
    /// entries' versions. Returns when the earliest entry kept falls due.
    /// `horizon`: how far the binlog had been read when `items` were read from the store (loaded before
    /// them, so every version up to it is in them).
    pub(super) async fn recheck_versions(
        &self,
        plan: &TablePlan,
        items: &[Pending],
        horizon: u64,
    ) -> Result<Option<u64>> {
        let keys: Vec<Key> = items.iter().map(|p| p.key.clone()).collect();
        // Lag is measured from before the read (never more than the other side really lagged); a sighting
        // of an unknown version waits for the binlog to be read through after it.
        let now = now_ms();
        let rows = self.recheck.other_rows(plan, &keys).await?;
        let seen_ms = now_ms();
        let index: HashMap<Vec<u8>, Row> = rows.into_iter().map(|r| (row_identity(plan, &r), r)).collect();
        let k = plan.key.len();
        let window = self.window.as_millis() as u64;
        let mut c = Concluded::default();
        let mut confirm = Vec::new();
        // Rows the other side shows in a version the base held within the window: they only lag, so a
        // row reported earlier closes in the ledger (a hot row that diverges again is then reported again).
        let mut lagging = Vec::new();
        for p in items {
            let Some(v) = &p.versions else { continue };
            let other = index.get(&p.key.canonical()).map(|r| &r[k.min(r.len())..]);
            let current: Option<Vec<Value>> = v.current.as_ref().map(|c| c.iter().map(Value::from).collect());
            let outcome = compare_rows(&plan.kinds, current.as_deref(), other);
            let sighting = Sighting {
                is_current: outcome == Outcome::Equal,
                other: other.map(|o| digest(&plan.kinds, Side::Other, o)),
                current: current.as_ref().map(|c| digest(&plan.kinds, Side::Base, c)),
                now,
                seen_ms,
                horizon,
            };
            let mut v = v.clone();
            let known = v.knows(sighting.other);
            match v.judge(sighting, p.first_seen_ms, window) {
                Judgement::Resolved => c.resolved.push(p.clone()),
                Judgement::Keep { due_ms } => {
                    if known {
                        lagging.push(p.key.clone());
                    }
                    v.prune(now, window);
                    let last = Mismatch::from_outcome(plan, outcome).unwrap_or_else(|| p.last.clone());
                    let next_check_ms = self.next_look(now).min(due_ms);
                    c.keep.push((p.clone(), Pending { last, next_check_ms, versions: Some(v), ..p.clone() }));
                }
                Judgement::Report => confirm.push(p.clone()),
            }
        }
        self.ledger.close_equal(&plan.name, &lagging, &[]).await?;
        if !confirm.is_empty() {
            self.confirm(plan, confirm, &mut c).await?;
        }
        self.conclude(plan, now, c).await
    }

    /// The one read of both sides just before binlog entries are reported: a row equal now has resolved
    /// and is not reported (counted, and its key logged: a steady count points at a decoding bug); a row
    /// the ledger holds open with the same difference is not reported again (the sink knows; see the
    /// README's "hot rows"); the others are reported with the difference read now.
    async fn confirm(&self, plan: &TablePlan, items: Vec<Pending>, c: &mut Concluded) -> Result<()> {
        let keys: Vec<Key> = items.iter().map(|p| p.key.clone()).collect();
        let still: HashMap<Vec<u8>, Mismatch> =
            tracing::Instrument::instrument(self.recheck.check(plan, &keys), tracing::info_span!("confirming read"))
                .await?
                .into_iter()
                .map(|(k, m)| (k.canonical(), m))
                .collect();
        for p in items {
            match still.get(&p.key.canonical()) {
                None => {
                    self.stats.confirm_overturned.fetch_add(1, Relaxed);
                    tracing::warn!(
                        table = %plan.name,
                        key = %p.key,
                        "the row images judged this row different and both sides read equal just before the report; not reported"
                    );
                    c.resolved.push(p);
                }
                Some(m) if self.ledger.open_as(&plan.name, &p.key, m)? => {
                    self.ledger.still_open(&plan.name, &[(p.key.clone(), m.clone())])?;
                    self.stats.reports_already_open.fetch_add(1, Relaxed);
                    c.reported.push(p);
                }
                Some(m) => {
                    c.report.push(Pending { last: m.clone(), ..p.clone() });
                    c.reported.push(p);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{key, plan};
    use super::super::{Recheck, SettleConfig};
    use super::*;
    use crate::deliver::event::EventType;
    use crate::deliver::ledger::{Ledger, LedgerConfig};
    use crate::deliver::metrics::Stats;
    use crate::deliver::state::Store;
    use crate::mysql::schema::PlanSet;
    use futures_util::future::BoxFuture;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// The other side as a script: its rows, and what a read of both sides finds.
    #[derive(Default)]
    struct Scripted {
        other: Mutex<Vec<Row>>,
        both: Mutex<Vec<(Key, Mismatch)>>,
    }

    impl Recheck for Scripted {
        fn check<'a>(&'a self, _: &'a TablePlan, _: &'a [Key]) -> BoxFuture<'a, Result<Vec<(Key, Mismatch)>>> {
            Box::pin(async move { Ok(self.both.lock().unwrap().clone()) })
        }

        fn other_rows<'a>(&'a self, _: &'a TablePlan, _: &'a [Key]) -> BoxFuture<'a, Result<Vec<Row>>> {
            Box::pin(async move { Ok(self.other.lock().unwrap().clone()) })
        }
    }

    fn settle(dir: &std::path::Path, window: Duration) -> (Arc<Settle>, Arc<Scripted>, Arc<Store>, Arc<Stats>) {
        let store = Arc::new(Store::open(dir).unwrap());
        let stats = Arc::new(Stats::default());
        let lc = LedgerConfig { max: 100, resolved_events: false, outbox_max: 100, direction: "SRC" };
        let ledger = Arc::new(Ledger::new(store.clone(), stats.clone(), lc));
        let cfg = SettleConfig { window, batch_size: 100, outbox_max: 100, direction: "SRC" };
        let script = Arc::new(Scripted::default());
        let plans = Arc::new(PlanSet::new(vec![plan()]));
        let s = Settle::with_recheck(store.clone(), script.clone(), plans, cfg, ledger, stats.clone());
        (Arc::new(s), script, store, stats)
    }

    fn d(v: i64) -> Option<u64> {
        Some(digest(&plan().kinds, Side::Base, &[Value::Int(v)]))
    }

    /// A history of `v` values `from..to` superseded at `at + i`, the last one current.
    fn seen(k: i64, m: Option<Mismatch>, from: i64, to: i64, at: u64) -> Seen {
        let older = (from..to).map(|v| Version { digest: d(v), superseded_ms: at + (v - from) as u64 }).collect();
        Seen { key: key(k), mismatch: m, current: Some(vec![Value::Int(to)]), older, sighted: None }
    }

    /// The event of a row reported as differing in `v` (to open it in the ledger).
    fn reported(k: i64) -> crate::deliver::event::Event {
        crate::deliver::event::Event {
            kind: EventType::Neq,
            direction: "SRC".into(),
            table: "t".into(),
            key_columns: vec!["id".into()],
            key: key(k),
            mode: Mode::Binlog,
            columns: vec!["v".into()],
            detected_at_ms: 1,
        }
    }

    fn neq() -> Option<Mismatch> {
        Some(Mismatch { kind: EventType::Neq, columns: vec!["v".into()] })
    }

    /// Entries found at different moments are looked at again together (one pass, one read), never
    /// sooner than an interval after they were found, and at most half an interval later than that.
    #[tokio::test]
    async fn looks_again_fall_on_a_shared_grid() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _, store, _) = settle(dir.path(), Duration::from_secs(1));
        let interval = s.interval.as_millis() as u64;
        let looks: Vec<u64> = (0..interval).map(|dt| s.next_look(1_000_000 + dt)).collect();
        for (dt, look) in looks.iter().enumerate() {
            let found = 1_000_000 + dt as u64;
            assert!(*look >= found + interval && *look < found + interval + interval / 2, "{dt}: {look}");
        }
        let mut distinct = looks.clone();
        distinct.dedup();
        assert!(distinct.len() <= 3, "an interval's worth of finds shares at most three looks: {distinct:?}");
        // Entries stored by binlog mode take their looks from that grid.
        let now = now_ms();
        s.submit_versions("t", vec![seen(1, neq(), 0, 3, now - 100)]).await.unwrap();
        s.submit_versions("t", vec![seen(2, neq(), 0, 3, now - 97)]).await.unwrap();
        let due: Vec<u64> = store.pending_all::<Pending>().unwrap().iter().map(|p| p.next_check_ms).collect();
        assert_eq!(due.len(), 2);
        assert!(due[0].is_multiple_of(interval / 2) && due[1].is_multiple_of(interval / 2), "{due:?}");
    }

    /// A pending key changed again is judged by what the batch's check read of the other side: while it
    /// only lags, the pass's look is put off (a hot row needs none of its own); once the other side shows
    /// a version superseded longer than the window ago, the entry falls due at once, for the pass to
    /// read again and report.
    #[tokio::test]
    async fn a_batch_sighting_judges_the_pending_key_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _, store, _) = settle(dir.path(), Duration::from_secs(1));
        let now = now_ms();
        let showing = |v: i64| Sighted {
            other: Some(digest(&plan().kinds, Side::Other, &[Value::Int(v)])),
            now,
            seen_ms: now,
            horizon: now,
        };
        s.submit_versions("t", vec![seen(1, neq(), 0, 3, now - 5000)]).await.unwrap();
        // Pending for a while already, and due now.
        let stored = store.pending_get::<Pending>("t", &key(1)).unwrap().unwrap();
        let due_now = Pending { next_check_ms: now, first_seen_ms: now - 5000, ..stored };
        store.pending_put(&[due_now]).await.unwrap();
        // Changed again; the other side shows version 4, superseded a few milliseconds ago: it lags.
        let lags = Seen { sighted: Some(showing(4)), ..seen(1, neq(), 3, 6, now - 10) };
        s.submit_versions("t", vec![lags]).await.unwrap();
        let p = store.pending_get::<Pending>("t", &key(1)).unwrap().unwrap();
        assert!(
            p.next_check_ms >= now + s.interval.as_millis() as u64,
            "look put off: {} (now {now})",
            p.next_check_ms
        );
        // Changed again; the other side still shows version 0, superseded 5 s ago (no version of the
        // window any more): due now.
        let stale = Seen { sighted: Some(showing(0)), ..seen(1, neq(), 6, 7, now - 5) };
        s.submit_versions("t", vec![stale]).await.unwrap();
        let p = store.pending_get::<Pending>("t", &key(1)).unwrap().unwrap();
        assert!(p.next_check_ms <= now, "due at once: {} (now {now})", p.next_check_ms);
        let v = p.versions.clone().unwrap();
        let kept: Vec<Option<u64>> = v.older.iter().map(|x| x.digest).collect();
        assert_eq!(kept, (3..7).map(d).collect::<Vec<_>>(), "the window's versions kept, older ones pruned: {v:?}");
        assert_eq!(format!("{:?}", v.current), format!("{:?}", Some(vec![KeyVal::Int(7)])));
        assert_eq!(store.outbox_len(), 0, "the report is the pass's to make");
    }

    /// A batch's sighting of a version the base never held (a column the writes never touch differs) waits
    /// for the binlog to be read through it; when a later batch finds it ripe and due for a report, the
    /// evidence stays for the pass, which reports it.
    #[tokio::test]
    async fn a_report_a_batch_sighting_calls_for_is_made_by_the_next_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (s, script, store, _) = settle(dir.path(), Duration::from_secs(1));
        let now = now_ms();
        let unknown = Some(digest(&plan().kinds, Side::Other, &[Value::Int(99)]));
        // Pending for 5 s, since its first version was superseded.
        s.submit_versions("t", vec![seen(1, neq(), 0, 3, now - 5000)]).await.unwrap();
        let stored = store.pending_get::<Pending>("t", &key(1)).unwrap().unwrap();
        store.pending_put(&[Pending { first_seen_ms: now - 5000, ..stored }]).await.unwrap();
        // Seen before the binlog was read through it: a suspect, judged later.
        let early = Sighted { other: unknown, now: now - 3, seen_ms: now - 3, horizon: now - 4 };
        s.submit_versions("t", vec![Seen { sighted: Some(early), ..seen(1, neq(), 3, 4, now - 5) }]).await.unwrap();
        let p = store.pending_get::<Pending>("t", &key(1)).unwrap().unwrap();
        assert!(p.next_check_ms > now, "waiting for the binlog: {p:?}");
        // A later batch's horizon has passed it: due for a report now, the suspect left for the pass.
        // (Times in the past: the pass below reads the clock, and must find it due.)
        let later = Sighted { other: unknown, now: now - 2, seen_ms: now - 2, horizon: now - 2 };
        s.submit_versions("t", vec![Seen { sighted: Some(later), ..seen(1, neq(), 4, 5, now - 2) }]).await.unwrap();
        let p = store.pending_get::<Pending>("t", &key(1)).unwrap().unwrap();
        assert!(p.next_check_ms <= now, "due now: {p:?}");
        assert_eq!(p.versions.as_ref().map(|v| v.suspects.len()), Some(1), "{p:?}");
        s.binlog_read_through(now - 2);
        *script.other.lock().unwrap() = vec![vec![Value::Int(1), Value::Int(99)]];
        *script.both.lock().unwrap() = neq().map(|m| vec![(key(1), m)]).unwrap();
        s.pass().await.unwrap();
        assert_eq!(store.outbox_len(), 1, "reported by the pass");
        assert!(store.pending_is_empty());
    }

    #[tokio::test]
    async fn a_later_change_adds_versions_to_the_pending_entry_and_never_restarts_it() {
        let dir = tempfile::tempdir().unwrap();
        let (s, script, store, stats) = settle(dir.path(), Duration::from_secs(3600));
        let now = now_ms();
        s.submit_versions("t", vec![seen(1, neq(), 0, 3, now - 100)]).await.unwrap();
        let first = store.pending_get::<Pending>("t", &key(1)).unwrap().unwrap();
        s.submit_versions("t", vec![seen(1, neq(), 3, 6, now - 50)]).await.unwrap();
        let merged = store.pending_get::<Pending>("t", &key(1)).unwrap().unwrap();
        assert_eq!(merged.first_seen_ms, first.first_seen_ms, "the entry keeps when it was first seen");
        let v = merged.versions.clone().unwrap();
        assert_eq!(v.older.len(), 6, "every version of both batches: {v:?}");
        assert_eq!(v.floor_ms, now - 100, "the window is not restarted");
        assert_eq!(format!("{:?}", v.current), format!("{:?}", Some(vec![KeyVal::Int(6)])));
        // The other side shows version 2: lag within the window, kept without reading the base.
        *script.other.lock().unwrap() = vec![vec![Value::Int(1), Value::Int(2)]];
        let kept = Pending { next_check_ms: 0, ..merged };
        store.pending_put(&[kept]).await.unwrap();
        s.pass().await.unwrap();
        assert_eq!(store.pending_all::<Pending>().unwrap().len(), 1);
        assert_eq!(store.outbox_len(), 0);
        // A newer check finds the other side equal to the newest version: resolved.
        s.submit_versions("t", vec![seen(1, None, 6, 7, now - 10)]).await.unwrap();
        assert!(store.pending_is_empty());
        assert_eq!(stats.resolved.load(Relaxed), 1);
        // Verdicts come in batch order: a later batch's equal verdict resolves the entry, whatever the
        // clock read when its versions were stamped (a wall clock stepped back).
        s.submit_versions("t", vec![seen(2, neq(), 0, 3, now - 20)]).await.unwrap();
        s.submit_versions("t", vec![seen(2, None, 0, 1, now - 90)]).await.unwrap();
        assert!(store.pending_is_empty());
    }

    #[tokio::test]
    async fn a_report_is_confirmed_on_both_sides_and_not_repeated_while_open() {
        let dir = tempfile::tempdir().unwrap();
        let (s, script, store, stats) = settle(dir.path(), Duration::from_secs(1));
        // Three rows whose versions were superseded long ago; the other side shows a value never held.
        let entry = |k: i64| Pending {
            table: "t".into(),
            key: key(k),
            mode: Mode::Binlog,
            first_seen_ms: 1,
            deadline_ms: 1,
            next_check_ms: 0,
            last: neq().unwrap(),
            versions: Some(seen(k, neq(), 0, 3, 1).versions()),
            observed: None,
        };
        store.pending_put(&[entry(1), entry(2), entry(3)]).await.unwrap();
        *script.other.lock().unwrap() = (1..=3).map(|k| vec![Value::Int(k), Value::Int(99)]).collect();
        // Both sides read equal for key 1 now; keys 2 and 3 still differ, and key 3 is open already.
        *script.both.lock().unwrap() = vec![(key(2), neq().unwrap()), (key(3), neq().unwrap())];
        s.ledger().open(&[reported(3)]).unwrap();
        // The stream has not been read up to the re-check yet: the sightings wait as suspects.
        s.pass().await.unwrap();
        assert_eq!(store.outbox_len(), 0);
        let waiting = store.pending_all::<Pending>().unwrap();
        assert!(waiting.iter().all(|p| p.versions.as_ref().is_some_and(|v| v.suspects.len() == 1)), "{waiting:?}");
        // Read through now: judged, confirmed on both sides, reported.
        s.binlog_read_through(now_ms());
        let due: Vec<Pending> = waiting.into_iter().map(|p| Pending { next_check_ms: 0, ..p }).collect();
        store.pending_put(&due).await.unwrap();
        s.pass().await.unwrap();
        let sent: Vec<Key> = store.outbox_peek(10).unwrap().into_iter().map(|(_, e)| e.key).collect();
        assert_eq!(sent, vec![key(2)], "key 1 resolved at the confirming read, key 3 is open already");
        assert_eq!(stats.confirm_overturned.load(Relaxed), 1);
        assert_eq!(stats.reports_already_open.load(Relaxed), 1);
        assert!(store.pending_is_empty());
    }

    /// A hot row reported once and open in the ledger: when the other side is seen showing a version the
    /// base held within the window (it only lags), the row closes in the ledger, so a second divergence
    /// of the still-hot row is reported again instead of being taken for the open one.
    #[tokio::test]
    async fn a_lagging_sighting_closes_the_ledger_row_so_a_second_divergence_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (s, script, store, _) = settle(dir.path(), Duration::from_secs(1));
        s.ledger().open(&[reported(1)]).unwrap();
        let now = now_ms();
        s.submit_versions("t", vec![seen(1, neq(), 0, 5, now - 200)]).await.unwrap();
        s.binlog_read_through(now);
        // The other side shows version 3, superseded ~200 ms ago: lag within the window.
        *script.other.lock().unwrap() = vec![vec![Value::Int(1), Value::Int(3)]];
        let due: Vec<Pending> =
            store.pending_all::<Pending>().unwrap().into_iter().map(|p| Pending { next_check_ms: 0, ..p }).collect();
        store.pending_put(&due).await.unwrap();
        s.pass().await.unwrap();
        assert_eq!(s.ledger().open_count(), 0, "a row that only lags is consistent: its ledger row closes");
        assert_eq!(store.outbox_len(), 0);
        // It diverges again: a value never held, seen long after the entry's versions were superseded.
        let old = Pending {
            first_seen_ms: 1,
            versions: Some(seen(1, neq(), 0, 5, 1).versions()),
            next_check_ms: 0,
            ..store.pending_all::<Pending>().unwrap().remove(0)
        };
        store.pending_put(&[old]).await.unwrap();
        *script.other.lock().unwrap() = vec![vec![Value::Int(1), Value::Int(99)]];
        *script.both.lock().unwrap() = vec![(key(1), neq().unwrap())];
        s.binlog_read_through(now_ms() + 60_000);
        s.pass().await.unwrap();
        let sent: Vec<Key> = store.outbox_peek(10).unwrap().into_iter().map(|(_, e)| e.key).collect();
        assert_eq!(sent, vec![key(1)], "the second divergence is reported");
    }

    /// An entry whose versions follow other compared columns (DDL since) is judged on both sides: its
    /// digests say nothing about the other side's rows now.
    #[tokio::test]
    async fn versions_made_before_ddl_are_not_judged_by() {
        let dir = tempfile::tempdir().unwrap();
        let (s, script, store, stats) = settle(dir.path(), Duration::from_secs(1));
        let stale = Versions { columns: 42, ..seen(1, neq(), 0, 3, 1).versions() };
        let entry = Pending {
            table: "t".into(),
            key: key(1),
            mode: Mode::Binlog,
            first_seen_ms: 1,
            deadline_ms: 1,
            next_check_ms: 0,
            last: neq().unwrap(),
            versions: Some(stale),
            observed: None,
        };
        store.pending_put(&[entry]).await.unwrap();
        // By the stale versions the other side's 99 would be reported; both sides read equal now.
        *script.other.lock().unwrap() = vec![vec![Value::Int(1), Value::Int(99)]];
        s.binlog_read_through(now_ms() + 60_000);
        s.pass().await.unwrap();
        assert_eq!(store.outbox_len(), 0);
        assert!(store.pending_is_empty(), "resolved by the read of both sides");
        assert_eq!(stats.confirm_overturned.load(Relaxed), 0, "not judged by the versions at all");
    }
}
