//! A target that lags: the source receives writes, and the target replays exactly the same statements
//! with the same values (computed once by the workload, never a NOW() evaluated per side) 300 ms late and
//! in order. Hot rows are updated every 10 ms for 10+ seconds. Two knobs make a hot row diverge while the
//! writes go on: its target copy stops receiving updates from a chosen time, or the target's copy gets a
//! different value in a column the writes never touch. The workload records when each divergence started,
//! so a test can hold each report's `detected_at` against it (issue 12's "Done when").
//!
//! The replayer waits for the deadline of the write at the head of its queue (commit time + lag): that
//! wait is the workload itself, not synchronisation. Tests wait on conditions (an event appearing, the
//! workload finishing).

use crate::harness::*;
use mysql_async::prelude::Queryable;
use serde_json::{json, Value as J};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The type of the hot table's `utime` column (poll mode's cursor column; binlog mode compares it).
#[derive(Clone, Copy, Debug)]
pub enum UtimeType {
    /// BIGINT milliseconds since the epoch
    BigintMs,
    /// DATETIME(3)
    Datetime3,
}

/// The workload: which rows are hot, how often, how long, how late the target is, and the divergences.
#[derive(Clone, Debug)]
pub struct Workload {
    pub hot: Vec<i64>,
    /// every hot row is updated once per tick
    pub every: Duration,
    /// how long the source receives writes
    pub run_for: Duration,
    /// how long after its source commit each write is applied to the target
    pub lag: Duration,
    pub utime: UtimeType,
    /// From this time (after the start) the target stops receiving updates for these keys.
    pub stop_replay: Option<(Duration, Vec<i64>)>,
    /// At this time the target's copy of this key gets `note = 'diverged'` (the writes never touch `note`).
    pub diverge: Option<(Duration, i64)>,
}

/// What a run did, as times of the source's clock (the validator runs on the same machine).
#[derive(Debug)]
pub struct Ran {
    /// commit time of the last write on the source
    pub ended: SystemTime,
    /// per diverged key: when its divergence started (the first source write not replayed for it, or the
    /// commit of the diverging write on the target)
    pub diverged: BTreeMap<i64, SystemTime>,
    /// writes committed on the source
    pub writes: u64,
    /// the worst delay of a replayed write beyond its deadline (how much more than `lag` the target lagged)
    pub worst_late: Duration,
}

/// How much later than `lag` the replayer may apply a write before a lag-only run proves nothing: the
/// target then trails by up to 900 ms, still inside the 1 s window.
const MAX_LATE: Duration = Duration::from_millis(600);

/// The table every lagging test uses.
pub const TABLE: &str = "hot";

impl Workload {
    /// `hot` rows updated every 10 ms for 12 s, replayed 300 ms late, no divergence.
    pub fn lag_only(hot: impl IntoIterator<Item = i64>, utime: UtimeType) -> Workload {
        Workload {
            hot: hot.into_iter().collect(),
            every: Duration::from_millis(10),
            run_for: Duration::from_secs(12),
            lag: Duration::from_millis(300),
            utime,
            stop_replay: None,
            diverge: None,
        }
    }

    /// Creates the table on both sides with the hot rows, equal on both.
    pub async fn create(&self, p: &Pair) {
        let ut = match self.utime {
            UtimeType::BigintMs => "BIGINT",
            UtimeType::Datetime3 => "DATETIME(3)",
        };
        p.both(&format!(
            "CREATE TABLE {TABLE} (id INT PRIMARY KEY, v BIGINT NOT NULL, note VARCHAR(20) NOT NULL, \
             utime {ut} NOT NULL, KEY (utime))"
        ))
        .await;
        let first = self.utime_sql(utime_ms(SystemTime::now()) - 60_000);
        let rows: Vec<String> = self.hot.iter().map(|k| format!("({k}, 0, 'same', {first})")).collect();
        p.both(&format!("INSERT INTO {TABLE} VALUES {}", rows.join(", "))).await;
    }

    /// A utime as an SQL literal of the column's type.
    pub fn utime_sql(&self, ms: i64) -> String {
        match self.utime {
            UtimeType::BigintMs => ms.to_string(),
            UtimeType::Datetime3 => {
                let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
                let s = humantime::format_rfc3339_millis(t).to_string();
                format!("'{}'", s.trim_end_matches('Z').replacen('T', " ", 1))
            }
        }
    }

    /// Runs the workload to its end and until the target has replayed every write it replays.
    pub async fn run(self, p: &Pair) -> Ran {
        let (source, target) = (p.url(Side::Source), p.url(Side::Target));
        let mut src = mysql_async::Conn::from_url(&source).await.expect("source");
        let mut dst_direct = mysql_async::Conn::from_url(&target).await.expect("target");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, String)>();
        let replayer = tokio::spawn(replay(target, rx));

        let started = SystemTime::now();
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut seq, mut last_ms, mut writes) = (0i64, 0i64, 0u64);
        let mut diverged = BTreeMap::new();
        let mut diverge = self.diverge;
        let mut ended = started;
        let hot_list = |keys: &[i64]| keys.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        while t0.elapsed() < self.run_for {
            tick.tick().await;
            seq += 1;
            // Strictly increasing per row, as poll mode's cursor column must be.
            last_ms = utime_ms(SystemTime::now()).max(last_ms + 1);
            let set = format!("UPDATE {TABLE} SET v = {seq}, utime = {} WHERE id IN ", self.utime_sql(last_ms));
            src.query_drop(format!("{set}({})", hot_list(&self.hot))).await.expect("source write");
            let committed = Instant::now();
            ended = SystemTime::now();
            writes += 1;
            // The keys whose target copy still receives this write.
            let stopped: &[i64] = match &self.stop_replay {
                Some((from, keys)) if committed - t0 >= *from => keys,
                _ => &[],
            };
            for k in stopped {
                diverged.entry(*k).or_insert(ended);
            }
            let replayed: Vec<i64> = self.hot.iter().copied().filter(|k| !stopped.contains(k)).collect();
            if !replayed.is_empty() {
                tx.send((committed + self.lag, format!("{set}({})", hot_list(&replayed)))).expect("replayer runs");
            }
            if let Some((at, key)) = diverge {
                if committed - t0 >= at {
                    let sql = format!("UPDATE {TABLE} SET note = 'diverged' WHERE id = {key}");
                    dst_direct.query_drop(sql).await.expect("target write");
                    diverged.insert(key, SystemTime::now());
                    diverge = None;
                }
            }
        }
        drop(tx);
        let worst_late = replayer.await.expect("replayer");
        let _ = src.disconnect().await;
        let _ = dst_direct.disconnect().await;
        Ran { ended, diverged, writes, worst_late }
    }
}

/// Applies each queued write to the target when its deadline comes, in order; returns the worst lateness.
async fn replay(target: String, mut rx: tokio::sync::mpsc::UnboundedReceiver<(Instant, String)>) -> Duration {
    let mut dst = mysql_async::Conn::from_url(&target).await.expect("target");
    let mut worst = Duration::ZERO;
    while let Some((due, sql)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        worst = worst.max(due.elapsed());
        dst.query_drop(sql).await.expect("target replay");
    }
    let _ = dst.disconnect().await;
    worst
}

fn utime_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The config the lagging tests use: settle 1 s, the hot table with its utime column, a file sink.
pub fn config(p: &Pair) {
    p.config(
        "",
        &format!(
            "[check]\nsettle = \"1s\"\n[binlog]\nserver_id = {}\n[poll]\ninterval = \"100ms\"\nsweep = \"1h\"\n\
             [[table]]\nname = \"{TABLE}\"\nutime = \"utime\"\n",
            crate::binlog::server_id()
        ),
    );
}

/// Starts the validator in `mode` and waits until it follows the source.
pub async fn start(p: &Pair, mode: &str) -> Incr {
    let incr = Incr::start(p, &["--mode", mode]);
    incr.wait_ready().await;
    incr
}

/// When an event was detected.
pub fn detected_at(e: &J) -> SystemTime {
    let s = e["detected_at"].as_str().unwrap_or_else(|| panic!("no detected_at: {e}"));
    humantime::parse_rfc3339(s).unwrap_or_else(|err| panic!("detected_at {s}: {err}"))
}

/// The first event for `key` (a hot row's id), waiting for it until `timeout`.
pub async fn first_event_for(p: &Pair, key: i64, timeout: Duration) -> J {
    let want = json!({ "id": key });
    let r = eventually(timeout, &format!("an event for id {key}"), || async {
        p.events().into_iter().find(|e| e["key"] == want)
    })
    .await;
    r.unwrap_or_else(|e| panic!("{e}; events: {:?}", kinds_and_keys(&p.events())))
}

/// After a run: a row only the source has, whose report shows the validator has judged everything
/// written before it (its window ends after every hot row's last change). Returns every event by then.
pub async fn after_sentinel(p: &Pair, w: &Workload) -> Vec<J> {
    let ut = w.utime_sql(utime_ms(SystemTime::now()) + 1000);
    p.exec(Side::Source, &format!("INSERT INTO {TABLE} VALUES (1000000, 0, 'same', {ut})")).await;
    p.wait_events(&expect(&[("target_missing", json!({"id": 1_000_000}))])).await
}

/// How long after `from` the event came (negative: before).
pub fn millis_after(e: &J, from: SystemTime) -> i64 {
    let at = detected_at(e);
    match at.duration_since(from) {
        Ok(d) => d.as_millis() as i64,
        Err(b) => -(b.duration().as_millis() as i64),
    }
}

/// A lagging run in which nothing diverges must report nothing but the sentinel.
async fn lag_only_is_not_reported(mode: &str, utime: UtimeType, tag: &str) {
    let p = Pair::new(tag).await;
    let w = Workload::lag_only(1..=8, utime);
    w.create(&p).await;
    config(&p);
    let incr = start(&p, mode).await;
    let ran = w.clone().run(&p).await;
    // The harness must have kept the target's lag well inside the window, or a report would be its fault.
    assert!(ran.worst_late < MAX_LATE, "the replayer fell behind by {:?} (a loaded machine?)", ran.worst_late);
    assert!(ran.writes >= 500, "too few writes to be hot: {ran:?}");
    let events = after_sentinel(&p, &w).await;
    // The validator did see the lag (mismatches that resolved), so silence means judgement.
    incr.wait_stat("/transient_mismatches_resolved", "lag mismatches resolved", |n| n >= 1.0).await;
    assert_eq!(
        kinds_and_keys(&events),
        expect(&[("target_missing", json!({"id": 1_000_000}))]),
        "hot rows on a target 300 ms late are lag, not inconsistencies ({ran:?})"
    );
    assert!(events.iter().all(|e| e["mode"] == mode));
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn binlog_hot_rows_on_a_lagging_target_are_not_reported() {
    lag_only_is_not_reported("binlog", UtimeType::BigintMs, "lag_bl").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn poll_hot_rows_on_a_lagging_target_are_not_reported_bigint_utime() {
    lag_only_is_not_reported("poll", UtimeType::BigintMs, "lag_poll_bi").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn poll_hot_rows_on_a_lagging_target_are_not_reported_datetime_utime() {
    lag_only_is_not_reported("poll", UtimeType::Datetime3, "lag_poll_dt").await;
}

/// Asserts that `key` was reported as `neq` (with `column` among the differing ones, if given) within
/// 2 s of its divergence and before the writes ended.
fn assert_reported_in_time(p: &Pair, ran: &Ran, key: i64, column: Option<&str>) {
    let want = json!({ "id": key });
    let events = p.events();
    let e = events.iter().find(|e| e["key"] == want).unwrap_or_else(|| panic!("id {key} was not reported"));
    let from = ran.diverged[&key];
    let after = millis_after(e, from);
    assert_eq!(e["type"], "neq", "{e}");
    if let Some(c) = column {
        assert!(e["columns"].as_array().is_some_and(|cs| cs.iter().any(|x| x == c)), "`{c}` differs: {e}");
    }
    assert!((0..=2000).contains(&after), "id {key} reported {after} ms after its divergence (at most 2000): {e}");
    assert!(detected_at(e) < ran.ended, "id {key} reported after the writes ended ({ran:?}): {e}");
}

/// Runs `w` in `mode` and waits, while it runs, for a report of each row it makes diverge: each must be
/// `neq` (with `column` among the differing columns, if given), within 2 s of its divergence and before
/// the writes end; no other hot row may be reported at all.
async fn diverged_rows_are_reported_while_written(mode: &str, tag: &str, w: Workload, column: Option<&str>) {
    let diverging: Vec<i64> =
        w.stop_replay.iter().flat_map(|(_, keys)| keys.clone()).chain(w.diverge.map(|(_, k)| k)).collect();
    let p = Pair::new(tag).await;
    w.create(&p).await;
    config(&p);
    let incr = start(&p, mode).await;
    let run = {
        let w = w.clone();
        let p = &p;
        async move { w.run(p).await }
    };
    // Reports are awaited while the workload runs; the workload's own end is the other condition.
    let wait = async {
        for k in &diverging {
            first_event_for(&p, *k, Duration::from_secs(40)).await;
        }
    };
    let (ran, ()) = tokio::join!(run, wait);
    for k in &diverging {
        assert_reported_in_time(&p, &ran, *k, column);
    }
    let events = after_sentinel(&p, &w).await;
    let keys: Vec<J> = events.iter().map(|e| e["key"].clone()).collect();
    for k in w.hot.iter().filter(|k| !diverging.contains(k)) {
        let late = ran.worst_late;
        assert!(
            !keys.contains(&json!({ "id": k })),
            "id {k} only lagged (up to {late:?} more): {:?}",
            kinds_and_keys(&events)
        );
    }
    assert!(events.iter().all(|e| e["mode"] == mode));
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// Hot rows 1 and 2 of 6 stop receiving updates on the target 4 s in; the writes go on for 8 s more.
async fn stopped_copies_are_reported_while_written(mode: &str, tag: &str) {
    let w = Workload {
        stop_replay: Some((Duration::from_secs(4), vec![1, 2])),
        ..Workload::lag_only(1..=6, UtimeType::BigintMs)
    };
    diverged_rows_are_reported_while_written(mode, tag, w, None).await;
}

/// Hot row 3 of 6 gets a different `note` on the target 4 s in (its copy still receives the writes).
async fn a_diverged_untouched_column_is_reported_while_written(mode: &str, tag: &str) {
    let w = Workload { diverge: Some((Duration::from_secs(4), 3)), ..Workload::lag_only(1..=6, UtimeType::BigintMs) };
    diverged_rows_are_reported_while_written(mode, tag, w, Some("note")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn binlog_hot_rows_whose_target_copy_stops_are_reported_while_written() {
    stopped_copies_are_reported_while_written("binlog", "lag_stop_bl").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn binlog_hot_row_with_a_diverged_untouched_column_is_reported_while_written() {
    a_diverged_untouched_column_is_reported_while_written("binlog", "lag_col_bl").await;
}

/// Poll mode keeps the same promise where its observations allow (see README, "What poll mode cannot
/// tell apart"): a stopped copy's utime falls behind, and `note` was held through every observation.
#[tokio::test(flavor = "multi_thread")]
async fn poll_hot_rows_whose_target_copy_stops_are_reported_while_written() {
    stopped_copies_are_reported_while_written("poll", "lag_stop_poll").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn poll_hot_row_with_a_diverged_untouched_column_is_reported_while_written() {
    a_diverged_untouched_column_is_reported_while_written("poll", "lag_col_poll").await;
}
