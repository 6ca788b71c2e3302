//! Poll mode and the reverse sweep against the real MariaDB pair.

use crate::harness::*;
use serde_json::json;

fn config(p: &Pair, settle: &str, batch: usize) {
    p.config(
        "",
        &format!(
            "[check]\nsettle = \"{settle}\"\nbatch_size = {batch}\n[poll]\ninterval = \"100ms\"\nsweep = \"1h\"\n[[table]]\nname = \"t\"\nutime = \"utime\"\n"
        ),
    );
}

async fn polling(p: &Pair) -> Incr {
    let incr = Incr::start(p, &["--mode", "poll"]);
    incr.wait_ready().await;
    incr
}

async fn pair(tag: &str, utime_type: &str) -> Pair {
    let p = Pair::new(tag).await;
    p.both(&format!("CREATE TABLE t (id INT PRIMARY KEY, v INT, utime {utime_type} NOT NULL, KEY (utime))")).await;
    p
}

/// utime values for the two column types, `n` steps after a base time.
fn ut(utime_type: &str, n: u32) -> String {
    if utime_type == "BIGINT" {
        format!("{}", 1_795_000_000_000u64 + u64::from(n))
    } else {
        format!("TIMESTAMPADD(MICROSECOND, {}, '2026-11-21 10:00:00')", n * 1000)
    }
}

async fn permanent_found_and_lag_ignored(utime_type: &str) {
    let p = pair(&format!("poll_{}", utime_type.to_lowercase().replace(['(', ')'], "")), utime_type).await;
    config(&p, "2s", 100);
    let incr = polling(&p).await;
    p.exec(Side::Source, &format!("INSERT INTO t VALUES (1, 1, {})", ut(utime_type, 1))).await; // target_missing
    p.both(&format!("INSERT INTO t VALUES (2, 2, {})", ut(utime_type, 2))).await;
    p.exec(Side::Source, &format!("UPDATE t SET v = 20, utime = {} WHERE id = 2", ut(utime_type, 3))).await; // neq
    p.exec(Side::Source, &format!("INSERT INTO t VALUES (3, 3, {})", ut(utime_type, 4))).await;
    incr.wait_pending().await;
    p.exec(Side::Target, &format!("INSERT INTO t VALUES (3, 3, {})", ut(utime_type, 4))).await; // lag: resolves
    let expected = expect(&[("target_missing", json!({"id": 1})), ("neq", json!({"id": 2}))]);
    let events = p.wait_events(&expected).await;
    // id 3's window (2 s) ended before id 2's last re-check could report: nothing else may show up.
    assert_eq!(kinds_and_keys(&events), expected);
    assert!(events.iter().all(|e| e["mode"] == "poll"));
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bigint_utime_finds_permanent_differences_and_ignores_lag() {
    permanent_found_and_lag_ignored("BIGINT").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn datetime_utime_finds_permanent_differences_and_ignores_lag() {
    permanent_found_and_lag_ignored("DATETIME(3)").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_sharing_one_utime_are_all_checked_once() {
    let p = pair("poll_same", "BIGINT").await;
    config(&p, "100ms", 10);
    // 25 rows with one utime, more than two pages of 10: none lost, none re-read forever.
    let rows: Vec<String> = (1..=25).map(|i| format!("({i}, {i}, 1795000000000)")).collect();
    p.exec(Side::Source, &format!("INSERT INTO t VALUES {}", rows.join(","))).await;
    let incr = polling(&p).await;
    let expected: Vec<(&str, serde_json::Value)> = (1..=25).map(|i| ("target_missing", json!({"id": i}))).collect();
    let events = p.wait_events(&expect(&expected)).await;
    assert_eq!(events.len(), 25, "each row reported once: {events:?}");
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn resumes_from_the_cursor_after_sigkill() {
    let p = pair("poll_kill", "BIGINT").await;
    config(&p, "100ms", 5);
    p.exec(Side::Source, "INSERT INTO t VALUES (1, 1, 1795000000001)").await;
    let incr = polling(&p).await;
    p.wait_events(&expect(&[("target_missing", json!({"id": 1}))])).await;
    incr.kill9();
    // Written while it is down.
    p.exec(Side::Source, "INSERT INTO t VALUES (2, 2, 1795000000002)").await;
    let incr = polling(&p).await;
    let expected = expect(&[("target_missing", json!({"id": 1})), ("target_missing", json!({"id": 2}))]);
    p.wait_events(&expected).await;
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_finds_hard_deletes() {
    let p = pair("poll_sweep", "BIGINT").await;
    p.both("INSERT INTO t SELECT seq, seq, 1795000000000 + seq FROM seq_1_to_50").await;
    p.exec(Side::Source, "DELETE FROM t WHERE id IN (10, 49)").await; // a hard delete polling cannot see
    p.config("", "[check]\nsettle = \"100ms\"\n[full]\nchunk_rows = 7\n[[table]]\nname = \"t\"\nutime = \"utime\"\n");
    let out = p.run(&["sweep"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        kinds_and_keys(&p.events()),
        expect(&[("base_missing", json!({"id": 10})), ("base_missing", json!({"id": 49}))])
    );
    // In poll mode it runs every poll.sweep, here at once.
    let p2 = pair("poll_sweep2", "BIGINT").await;
    p2.both("INSERT INTO t VALUES (1, 1, 1), (2, 2, 2)").await;
    p2.exec(Side::Source, "DELETE FROM t WHERE id = 2").await;
    p2.config("", "[check]\nsettle = \"100ms\"\n[poll]\nsweep = \"0s\"\ninterval = \"100ms\"\n[[table]]\nname = \"t\"\nutime = \"utime\"\n");
    let incr = polling(&p2).await;
    p2.wait_events(&expect(&[("base_missing", json!({"id": 2}))])).await;
    incr.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_without_utime_is_refused_for_poll_mode() {
    let p = Pair::new("poll_noutime").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY)").await;
    p.config("", "[[table]]\nname = \"t\"\n");
    let out = p.run_for(&["incr", "--mode", "poll"], std::time::Duration::from_secs(60));
    assert_clean_failure(&out, &["`t`", "utime"]);
}

/// Rows committed after a poll with the cursor's utime and a smaller key, or a second older (commit
/// skew), are inside the re-read overlap: each is found once, and rows already checked are not reported
/// again however many rounds re-read them.
#[tokio::test(flavor = "multi_thread")]
async fn rows_committed_behind_the_cursor_within_the_overlap_are_found_once() {
    let p = pair("poll_overlap", "DATETIME").await;
    config(&p, "100ms", 100);
    let incr = polling(&p).await;
    p.exec(Side::Source, "INSERT INTO t VALUES (10, 10, '2026-11-21 10:00:00')").await;
    p.wait_events(&expect(&[("target_missing", json!({"id": 10}))])).await;
    // The cursor is at (10:00:00, 10) now.
    p.exec(Side::Source, "INSERT INTO t VALUES (5, 5, '2026-11-21 10:00:00'), (6, 6, '2026-11-21 10:00:00')").await;
    p.exec(Side::Source, "INSERT INTO t VALUES (7, 7, '2026-11-21 09:59:59')").await;
    let mut want: Vec<(&str, serde_json::Value)> =
        [10, 5, 6, 7].iter().map(|i| ("target_missing", json!({"id": i}))).collect();
    p.wait_events(&expect(&want)).await;
    // A later row moves the cursor on; the rounds that read it re-read the overlap too.
    p.exec(Side::Source, "INSERT INTO t VALUES (20, 20, '2026-11-21 10:00:01')").await;
    want.push(("target_missing", json!({"id": 20})));
    p.wait_events(&expect(&want)).await;
    p.exec(Side::Source, "INSERT INTO t VALUES (30, 30, '2026-11-21 10:00:09')").await;
    want.push(("target_missing", json!({"id": 30})));
    let events = p.wait_events(&expect(&want)).await;
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(events.len(), 6, "each row reported once: {:?}", kinds_and_keys(&events));
}
