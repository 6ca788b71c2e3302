//! The settle stage with poll entries: a later mismatch keeps the entry and its window, and a pass judges
//! poll entries by what was observed (observed.rs), not by their deadline. Re-checks answer from a script.

use super::tests::{key, mismatch, plan};
use super::*;
use crate::deliver::event::EventType;
use crate::verdict::observed::{Run, Seen};

/// Re-check reads that answer from a script: every scripted key differs, with the reading given.
struct Scripted(Vec<(Key, Reading)>);

impl Recheck for Scripted {
    fn check<'a>(&'a self, _: &'a TablePlan, _: &'a [Key]) -> BoxFuture<'a, Result<Vec<(Key, Mismatch)>>> {
        Box::pin(async move { Ok(self.0.iter().map(|(k, _)| (k.clone(), mismatch(EventType::Neq))).collect()) })
    }

    fn other_rows<'a>(&'a self, _: &'a TablePlan, _: &'a [Key]) -> BoxFuture<'a, Result<Vec<Row>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn observe<'a>(&'a self, _: &'a TablePlan, _: &'a [Key]) -> BoxFuture<'a, Result<Vec<Observation>>> {
        Box::pin(async move {
            Ok(self.0.iter().map(|(k, r)| (k.clone(), mismatch(EventType::Neq), Some(r.clone()))).collect())
        })
    }
}

fn settle(store: &Arc<Store>, script: Vec<(Key, Reading)>) -> Settle {
    let stats = Arc::new(Stats::default());
    let cfg = SettleConfig { window: Duration::from_secs(1), batch_size: 100, outbox_max: 100, direction: "SRC" };
    let lc =
        crate::deliver::ledger::LedgerConfig { max: 1000, resolved_events: false, outbox_max: 100, direction: "SRC" };
    let ledger = Arc::new(Ledger::new(store.clone(), stats.clone(), lc));
    let plans = Arc::new(PlanSet::new(vec![plan()]));
    Settle::with_recheck(store.clone(), Arc::new(Scripted(script)), plans, cfg, ledger, stats)
}

/// Both sides present, column 0 differing, the other side's utime `other_utime`.
fn differing(other_utime: i64) -> Reading {
    let seen = |d: u64, u: i64| Some(Seen { digest: d, columns: vec![d], utime: Some(u) });
    Reading { base: seen(1, 100), other: seen(2, other_utime), differing: vec![0] }
}

fn entry(k: i64, mode: Mode, deadline_ms: u64, observed: Option<Observed>) -> Pending {
    Pending {
        table: "t".into(),
        key: key(k),
        mode,
        first_seen_ms: 0,
        deadline_ms,
        next_check_ms: 0,
        last: mismatch(EventType::Neq),
        versions: None,
        observed,
    }
}

fn reported(store: &Store) -> Vec<Key> {
    store.outbox_peek(10).unwrap().into_iter().map(|(_, e)| e.key).collect()
}

#[tokio::test]
async fn a_later_poll_mismatch_keeps_the_entry_its_window_and_what_was_observed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let s = settle(&store, vec![]);
    s.submit("t", Mode::Poll, vec![(key(1), mismatch(EventType::TargetMissing))]).await.unwrap();
    let first = store.pending_get::<Pending>("t", &key(1)).unwrap().unwrap();
    assert_eq!(first.observed, Some(Observed::default()));
    // What a pass would have recorded meanwhile.
    let seen = Observed { runs: vec![Run { digest: Some(1), utime: Some(5), first_ms: 7 }], ..Observed::default() };
    let watched = Pending { observed: Some(seen.clone()), ..first.clone() };
    store.pending_put(std::slice::from_ref(&watched)).await.unwrap();
    s.submit("t", Mode::Poll, vec![(key(1), mismatch(EventType::Neq))]).await.unwrap();
    let again = store.pending_get::<Pending>("t", &key(1)).unwrap().unwrap();
    assert_eq!(
        (again.first_seen_ms, again.deadline_ms, again.next_check_ms),
        (first.first_seen_ms, first.deadline_ms, first.next_check_ms),
        "the window is not restarted"
    );
    assert_eq!(again.last.kind, EventType::Neq, "the latest mismatch is the one reported");
    let kept = again.observed.unwrap();
    assert_eq!(kept.runs, seen.runs);
    assert_eq!(kept.submits, 1, "the stored entry changed, so a pass that read it before cannot drop it");
}

#[tokio::test]
async fn a_pass_judges_poll_entries_by_what_was_observed_not_by_their_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let far = now_ms() + 3_600_000;
    // 1: poll, deadline passed, but a first observation bounds nothing yet: kept.
    // 2: full mode, deadline passed: reported as before.
    // 3: poll, deadline far away, but the base held utime 100 since long ago and the other side shows 50.
    let long_ago =
        Observed { runs: vec![Run { digest: Some(1), utime: Some(100), first_ms: 1 }], ..Observed::default() };
    store
        .pending_put(&[
            entry(1, Mode::Poll, 0, Some(Observed::default())),
            entry(2, Mode::Full, 0, None),
            entry(3, Mode::Poll, far, Some(long_ago)),
        ])
        .await
        .unwrap();
    let s = settle(&store, vec![(key(1), differing(100)), (key(2), differing(100)), (key(3), differing(50))]);
    let before = now_ms();
    s.pass().await.unwrap();
    let mut got = reported(&store);
    got.sort_by_key(|k| k.canonical());
    assert_eq!(got, vec![key(2), key(3)]);
    let left = store.pending_all::<Pending>().unwrap();
    assert_eq!(left.len(), 1);
    let one = &left[0];
    assert_eq!(one.key, key(1));
    assert_eq!(one.observed.as_ref().map(|o| o.runs.len()), Some(1), "the observation was kept");
    // Not the deadline (past): one re-check interval (a quarter window) after the pass.
    assert!(one.next_check_ms >= before + 250, "re-checked again an interval later, not at once");
}
