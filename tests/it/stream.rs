//! Binlog mode sees every change or says loudly what it did not check: compressed events, XA
//! transactions, TRUNCATE / RENAME / DROP of tracked tables, checks that fail, and the accounting of
//! every row change.

use crate::binlog::{config, tailing, OwnServer};
use crate::harness::*;
use mysql_async::prelude::Queryable;
use serde_json::json;
use std::time::Duration;

async fn conn(p: &Pair, side: Side) -> mysql_async::Conn {
    mysql_async::Conn::from_url(p.url(side)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_binlog_events_are_decoded_and_checked() {
    let port = 23073;
    let _server = OwnServer::start_as("bl_compress", port, "base-compressed");
    let p = Pair::new_with_source("bl_compress", &format!("mysql://bv:bv@127.0.0.1:{port}")).await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT, s VARCHAR(300))").await;
    p.both("INSERT INTO t VALUES (3, 3, NULL), (4, 4, REPEAT('d', 120)), (5, 5, NULL)").await;
    config(&p, "200ms", &["t"]);
    let incr = tailing(&p).await;
    // Nine bytes of row data stay under the 10-byte threshold; the others are compressed.
    p.exec(Side::Source, "INSERT INTO t VALUES (1, 1, NULL)").await;
    p.exec(Side::Source, "INSERT INTO t VALUES (2, 2, REPEAT('x', 200))").await;
    p.exec(Side::Source, "UPDATE t SET s = REPEAT('y', 150) WHERE id = 3").await;
    p.exec(Side::Source, "DELETE FROM t WHERE id = 4").await;
    // A compressed query event: the plan must follow the ALTER (the target's first, so no race).
    let alter = "ALTER TABLE t ADD COLUMN w INT NULL COMMENT 'long enough to be compressed'";
    p.exec(Side::Target, alter).await;
    p.exec(Side::Source, alter).await;
    p.exec(Side::Source, "UPDATE t SET w = 7 WHERE id = 5").await;
    let expected = expect(&[
        ("target_missing", json!({"id": 1})),
        ("target_missing", json!({"id": 2})),
        ("neq", json!({"id": 3})),
        ("base_missing", json!({"id": 4})),
        ("neq", json!({"id": 5})),
    ]);
    let events = p.wait_events(&expected).await;
    assert_eq!(kinds_and_keys(&events), expected);
    assert_eq!(events.iter().find(|e| e["id"] == 5).unwrap()["columns"], json!(["w"]));
    // The server really wrote compressed events, of both kinds.
    let mut c = conn(&p, Side::Source).await;
    let kinds: Vec<String> = c
        .query_map("SHOW BINLOG EVENTS", |r: mysql_async::Row| r.get::<String, _>(2).unwrap_or_default())
        .await
        .unwrap();
    assert!(kinds.iter().any(|k| k.contains("compressed") && k.contains("rows")), "{kinds:?}");
    assert!(kinds.iter().any(|k| k.contains("Query_compressed")), "{kinds:?}");
    assert!(kinds.iter().any(|k| k.starts_with("Write_rows")), "small rows stay plain: {kinds:?}");
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("not checked: none"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn xa_rows_are_judged_at_commit_or_rollback_even_across_a_restart() {
    let p = Pair::new("bl_xa").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    config(&p, "200ms", &["t"]);
    let incr = tailing(&p).await;
    let mut x1 = conn(&p, Side::Source).await;
    for q in ["XA START 'x1'", "INSERT INTO t VALUES (1, 1)", "XA END 'x1'", "XA PREPARE 'x1'"] {
        x1.query_drop(q).await.unwrap();
    }
    // The second one is rolled back, but the target got its row (a double write that went through).
    let mut x2 = conn(&p, Side::Source).await;
    for q in ["XA START 'x2'", "INSERT INTO t VALUES (2, 2)", "XA END 'x2'", "XA PREPARE 'x2'"] {
        x2.query_drop(q).await.unwrap();
    }
    p.exec(Side::Target, "INSERT INTO t VALUES (2, 2)").await;
    // Transactions commit after the prepares; once this one is reported, the prepares are behind the
    // checkpoint too.
    p.exec(Side::Source, "INSERT INTO t VALUES (100, 100)").await;
    p.wait_events(&expect(&[("target_missing", json!({"id": 100}))])).await;
    // Killed while both are prepared: the held keys must survive in the state store.
    incr.kill9();
    let incr = tailing(&p).await;
    x1.query_drop("XA COMMIT 'x1'").await.unwrap();
    x2.query_drop("XA ROLLBACK 'x2'").await.unwrap();
    p.exec(Side::Source, "INSERT INTO t VALUES (101, 101)").await;
    let expected = expect(&[
        ("target_missing", json!({"id": 100})),
        ("target_missing", json!({"id": 1})),
        ("base_missing", json!({"id": 2})),
        ("target_missing", json!({"id": 101})),
    ]);
    let events = p.wait_events(&expected).await;
    assert_eq!(kinds_and_keys(&events), expected);
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("prepared XA transactions from an earlier run"), "{log}");
}

/// Lines of the events file (cheap enough to poll while hundreds of thousands arrive).
fn event_lines(p: &Pair) -> usize {
    std::fs::read(p.events_path()).map(|b| b.iter().filter(|c| **c == b'\n').count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncate_then_sigkill_still_reports_every_row_left_on_the_target() {
    const ROWS: usize = 300_000;
    let p = Pair::new("bl_truncate").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.both(&format!("INSERT INTO t SELECT seq, seq FROM seq_1_to_{ROWS}")).await;
    config(&p, "0s", &["t"]);
    let incr = tailing(&p).await;
    p.exec(Side::Source, "TRUNCATE TABLE t").await;
    // The worst moment: the re-check is recorded and the checkpoint may be past the TRUNCATE.
    incr.wait_stat("/table_rechecks_pending", "the table re-check to be recorded", |n| n >= 1.0).await;
    incr.kill9();
    let incr = Incr::start(&p, &[]);
    eventually(Duration::from_secs(300), "an event for every row left on the target", || async {
        (event_lines(&p) >= ROWS).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {} events\n{}", event_lines(&p), incr.log()));
    let events = p.events();
    let keys: std::collections::BTreeSet<i64> = events.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert_eq!(keys.len(), ROWS, "every row once at least");
    assert_eq!((keys.first().copied(), keys.last().copied()), (Some(1), Some(ROWS as i64)));
    assert!(events.iter().all(|e| e["type"] == "base_missing" && e["table"] == "t" && e["mode"] == "full"));
    incr.wait_stat("/table_rechecks_pending", "the table re-check to finish", |n| n == 0.0).await;
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_onto_and_drop_create_of_tracked_tables_recheck_them() {
    let p = Pair::new("bl_rename").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.both("INSERT INTO t VALUES (1, 1), (2, 2), (3, 3)").await;
    p.both("CREATE TABLE u (id INT PRIMARY KEY, v INT)").await;
    p.both("INSERT INTO u VALUES (1, 1), (2, 2)").await;
    config(&p, "200ms", &["t", "u"]);
    let incr = tailing(&p).await;
    // gh-ost's cut-over, on the source only: the ghost table differs in rows 2, 3 and 4.
    p.exec(Side::Source, "CREATE TABLE t_gho (id INT PRIMARY KEY, v INT)").await;
    p.exec(Side::Source, "INSERT INTO t_gho VALUES (1, 1), (2, 20), (4, 4)").await;
    p.exec(Side::Source, "RENAME TABLE t TO t_del, t_gho TO t").await;
    // DROP and CREATE on the source only: u comes back empty.
    p.exec(Side::Source, "DROP TABLE u").await;
    p.exec(Side::Source, "CREATE TABLE u (id INT PRIMARY KEY, v INT)").await;
    let expected = expect(&[
        ("neq", json!({"id": 2})),
        ("base_missing", json!({"id": 3})),
        ("target_missing", json!({"id": 4})),
        ("base_missing", json!({"id": 1})),
        ("base_missing", json!({"id": 2})),
    ]);
    let events = p.wait_events(&expected).await;
    assert_eq!(kinds_and_keys(&events), expected);
    let tables: std::collections::BTreeSet<(String, String)> =
        events.iter().map(|e| (e["table"].as_str().unwrap_or("").to_string(), e["key"].to_string())).collect();
    assert!(tables.contains(&("u".into(), json!({"id": 1}).to_string())), "{tables:?}");
    assert!(tables.contains(&("t".into(), json!({"id": 2}).to_string())), "{tables:?}");
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_column_dropped_on_the_target_only_is_noticed_and_validation_goes_on() {
    let p = Pair::new("bl_dropcol").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT, w INT)").await;
    config(&p, "200ms", &["t"]);
    let incr = tailing(&p).await;
    p.exec(Side::Target, "ALTER TABLE t DROP COLUMN w").await;
    p.exec(Side::Source, "INSERT INTO t VALUES (1, 1, 1)").await;
    p.exec(Side::Target, "INSERT INTO t VALUES (2, 20)").await;
    p.exec(Side::Source, "INSERT INTO t VALUES (2, 2, 2)").await;
    let expected = expect(&[("target_missing", json!({"id": 1})), ("neq", json!({"id": 2}))]);
    let events = p.wait_events(&expected).await;
    assert_eq!(kinds_and_keys(&events), expected);
    assert_eq!(events.iter().find(|e| e["id"] == 2).unwrap()["columns"], json!(["v"]));
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("plan was refreshed"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_check_that_fails_for_good_stops_the_mode_naming_the_table() {
    let p = Pair::new("bl_checkfail").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.both("CREATE TABLE g (id INT PRIMARY KEY, v INT)").await;
    config(&p, "200ms", &["t", "g"]);
    let incr = tailing(&p).await;
    p.exec(Side::Source, "INSERT INTO t VALUES (1, 1)").await;
    p.wait_events(&expect(&[("target_missing", json!({"id": 1}))])).await;
    // The table goes from the target, then a change on the source: the check cannot read it.
    p.exec(Side::Target, "DROP TABLE g").await;
    p.exec(Side::Source, "INSERT INTO g VALUES (1, 1)").await;
    let mut incr = incr;
    let status = incr.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(2), "{}", incr.log());
    let log = incr.log();
    let error = log.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line: {log}"));
    assert!(error.contains("table `g`") && error.contains("recreate it"), "{error}");
    assert!(log.contains("checkpoint"), "the checkpoint is saved on the way out: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_before_a_start_time_are_counted_as_not_checked() {
    let p = Pair::new("bl_account").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.exec(Side::Source, "INSERT INTO t VALUES (1, 1)").await;
    // A start time in a later second than that change (binlog timestamps have whole seconds).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let start_ms = (now.as_secs() + 1) * 1000;
    eventually(Duration::from_secs(5), "the start time to pass", || async {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        (t >= start_ms).then_some(())
    })
    .await
    .unwrap();
    p.exec(Side::Source, "INSERT INTO t VALUES (2, 2)").await;
    p.config(
        "",
        &format!(
            "[check]\nsettle = \"200ms\"\n[binlog]\nserver_id = {}\nstart = \"{start_ms}\"\n[[table]]\nname = \"t\"\n",
            crate::binlog::server_id()
        ),
    );
    let incr = Incr::start(&p, &[]);
    let expected = expect(&[("target_missing", json!({"id": 2}))]);
    let events = p.wait_events(&expected).await;
    assert_eq!(kinds_and_keys(&events), expected, "the change before the start time is not checked");
    incr.wait_stat("/row_changes/not_checked/0/count", "a change counted as not checked", |n| n >= 1.0).await;
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("not checked: 1 of `t` (before_start)"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_image_without_the_key_stops_the_mode_with_the_fix() {
    let p = Pair::new("bl_minimal").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, code VARCHAR(10) NOT NULL UNIQUE, v INT)").await;
    p.both("INSERT INTO t VALUES (1, 'a', 1)").await;
    p.config(
        "",
        &format!(
            "[check]\nsettle = \"200ms\"\n[binlog]\nserver_id = {}\n[[table]]\nname = \"t\"\nkey = [\"code\"]\n",
            crate::binlog::server_id()
        ),
    );
    let mut incr = tailing(&p).await;
    // One session writes minimal images: the primary key before, the changed column after; no `code`.
    let mut c = conn(&p, Side::Source).await;
    c.query_drop("SET SESSION binlog_row_image = 'MINIMAL'").await.unwrap();
    c.query_drop("UPDATE t SET v = 2 WHERE id = 1").await.unwrap();
    let status = incr.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(2), "{}", incr.log());
    let log = incr.log();
    let error = log.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line: {log}"));
    assert!(error.contains("`t`") && error.contains("binlog_row_image=FULL"), "{error}");
}
