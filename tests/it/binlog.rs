//! Binlog mode against the real MariaDB pair: every change of a tracked table on the source is checked,
//! lag is tolerated, crashes and server restarts lose nothing, DDL and odd key types are handled.

use crate::harness::*;
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static SERVER_IDS: AtomicU32 = AtomicU32::new(0);

/// Starts `incr` and waits until it tails the binlog (its start position is fixed by then).
pub async fn tailing(p: &Pair) -> Incr {
    let incr = Incr::start(p, &[]);
    incr.wait_ready().await;
    incr
}

/// A replica server id no other test uses at the same time.
pub fn server_id() -> u32 {
    20_000 + (std::process::id() % 1000) * 64 + SERVER_IDS.fetch_add(1, Ordering::Relaxed)
}

pub fn config(p: &Pair, settle: &str, tables: &[&str]) {
    let mut extra = format!("[check]\nsettle = \"{settle}\"\n[binlog]\nserver_id = {}\n", server_id());
    for t in tables {
        extra.push_str(&format!("[[table]]\nname = \"{t}\"\n"));
    }
    p.config("", &extra);
}

#[tokio::test(flavor = "multi_thread")]
async fn catches_all_types_including_key_changing_updates_and_composite_keys() {
    let p = Pair::new("bl_types").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.both("CREATE TABLE ck (a VARCHAR(10), b INT, v INT, PRIMARY KEY (a, b))").await;
    p.both("CREATE TABLE untracked (id INT PRIMARY KEY)").await;
    p.both("INSERT INTO t VALUES (3, 3), (4, 4), (6, 6)").await;
    config(&p, "300ms", &["t", "ck"]);
    let incr = tailing(&p).await;

    p.exec(Side::Source, "INSERT INTO t VALUES (1, 1)").await; // target_missing
    p.exec(Side::Source, "INSERT INTO t VALUES (2, 2)").await;
    p.exec(Side::Target, "INSERT INTO t VALUES (2, 20)").await; // neq
    p.exec(Side::Source, "DELETE FROM t WHERE id = 3").await; // base_missing
    p.exec(Side::Source, "UPDATE t SET id = 40 WHERE id = 4").await; // 4 base_missing, 40 target_missing
    p.both("UPDATE t SET v = 60 WHERE id = 6").await; // consistent: no event
    p.exec(Side::Source, "INSERT INTO ck VALUES ('x', 1, 1), ('y', 2, 2)").await;
    p.exec(Side::Target, "INSERT INTO ck VALUES ('y', 2, 2)").await; // ('x',1) target_missing
    p.exec(Side::Source, "INSERT INTO untracked VALUES (1)").await; // ignored
    p.exec(Side::Source, "INSERT INTO t VALUES (999, 0)").await; // sentinel
    let expected = expect(&[
        ("target_missing", json!({"id": 1})),
        ("neq", json!({"id": 2})),
        ("base_missing", json!({"id": 3})),
        ("base_missing", json!({"id": 4})),
        ("target_missing", json!({"id": 40})),
        ("target_missing", json!({"a": "x", "b": 1})),
        ("target_missing", json!({"id": 999})),
    ]);
    let events = p.wait_events(&expected).await;
    assert_eq!(kinds_and_keys(&events), expected, "no false alarms");
    assert!(events.iter().all(|e| e["mode"] == "binlog" && e["direction"] == "SRC"));
    assert_eq!(events.iter().find(|e| e["id"] == 2).unwrap()["columns"], json!(["v"]));
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("stopped; checkpoint mysql-bin."), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lag_that_resolves_within_the_settle_window_is_not_reported() {
    let p = Pair::new("bl_lag").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    config(&p, "3s", &["t"]);
    let incr = tailing(&p).await;
    p.exec(Side::Source, "INSERT INTO t VALUES (1, 1)").await;
    // The validator has seen the mismatch; now the lagging write arrives.
    incr.wait_pending().await;
    p.exec(Side::Target, "INSERT INTO t VALUES (1, 1)").await;
    p.exec(Side::Source, "INSERT INTO t VALUES (2, 2)").await; // a permanent one, seen later
    let events = p.wait_events(&expect(&[("target_missing", json!({"id": 2}))])).await;
    assert_eq!(kinds_and_keys(&events), expect(&[("target_missing", json!({"id": 2}))]));
    incr.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_in_a_write_burst_loses_nothing() {
    let p = Pair::new("bl_kill").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    config(&p, "200ms", &["t"]);
    let mut expected = Vec::new();
    let burst = |from: usize, to: usize| {
        let mut source = Vec::new();
        let mut target = Vec::new();
        for i in from..to {
            source.push(format!("({i}, {i})"));
            if i % 50 != 7 {
                target.push(format!("({i}, {i})"));
            }
        }
        (source, target)
    };
    for i in 0..1500 {
        if i % 50 == 7 {
            expected.push(("target_missing", json!({"id": i})));
        }
    }
    let incr = tailing(&p).await;
    // Before the crash: 500 rows in 50 transactions.
    for chunk in (0..500).step_by(10) {
        let (s, t) = burst(chunk, chunk + 10);
        p.exec(Side::Source, &format!("INSERT INTO t VALUES {}", s.join(","))).await;
        if !t.is_empty() {
            p.exec(Side::Target, &format!("INSERT INTO t VALUES {}", t.join(","))).await;
        }
        if chunk == 250 {
            incr.wait_pending().await;
        }
    }
    incr.kill9();
    // While it is down, and after it is back.
    for chunk in (500..1000).step_by(10) {
        let (s, t) = burst(chunk, chunk + 10);
        p.exec(Side::Source, &format!("INSERT INTO t VALUES {}", s.join(","))).await;
        p.exec(Side::Target, &format!("INSERT INTO t VALUES {}", t.join(","))).await;
    }
    let incr = Incr::start(&p, &[]);
    for chunk in (1000..1500).step_by(10) {
        let (s, t) = burst(chunk, chunk + 10);
        p.exec(Side::Source, &format!("INSERT INTO t VALUES {}", s.join(","))).await;
        p.exec(Side::Target, &format!("INSERT INTO t VALUES {}", t.join(","))).await;
    }
    let expected = expect(&expected);
    let events = p.wait_events(&expected).await;
    assert_eq!(kinds_and_keys(&events), expected, "every inconsistency, and nothing else");
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// Keys whose image form differs from what the server returns (TIMESTAMP, YEAR, ENUM, SET, gbk text,
/// BIT) once found no row on either side, so the change counted as checked and equal: a silent miss.
#[tokio::test(flavor = "multi_thread")]
async fn keys_decoded_from_images_find_their_rows_on_both_sides() {
    let p = Pair::new("bl_imgkeys").await;
    let tables = [
        ("ts", "TIMESTAMP(3)", "'2024-02-29 12:00:00.5'", "'2024-03-01 00:00:00'"),
        ("y", "YEAR", "2024", "1999"),
        ("e", "ENUM('a','b','c')", "'b'", "'c'"),
        ("s", "SET('x','y','z')", "'x,y'", "'z'"),
        ("g", "VARCHAR(10) CHARACTER SET gbk", "'中文'", "'汉字'"),
        ("b", "BIT(8)", "b'101'", "b'11'"),
    ];
    for (t, ty, _, _) in tables {
        p.both(&format!("CREATE TABLE {t} (id {ty} NOT NULL PRIMARY KEY, v INT)")).await;
    }
    config(&p, "200ms", &tables.map(|t| t.0));
    let incr = tailing(&p).await;
    for (t, _, both, source_only) in tables {
        p.exec(Side::Target, &format!("INSERT INTO {t} VALUES ({both}, 2)")).await;
        p.exec(Side::Source, &format!("INSERT INTO {t} VALUES ({both}, 1), ({source_only}, 1)")).await;
    }
    let expected = expect(&[
        ("neq", json!({"id": "2024-02-29 12:00:00.500000"})),
        ("target_missing", json!({"id": "2024-03-01 00:00:00"})),
        ("neq", json!({"id": 2024})),
        ("target_missing", json!({"id": 1999})),
        ("neq", json!({"id": "b"})),
        ("target_missing", json!({"id": "c"})),
        ("neq", json!({"id": "x,y"})),
        ("target_missing", json!({"id": "z"})),
        ("neq", json!({"id": "中文"})),
        ("target_missing", json!({"id": "汉字"})),
        ("neq", json!({"id": "\u{5}"})),
        ("target_missing", json!({"id": "\u{3}"})),
    ]);
    let events = p.wait_events(&expected).await;
    assert_eq!(kinds_and_keys(&events), expected);
    incr.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn key_values_of_awkward_types_are_decoded_exactly() {
    let p = Pair::new("bl_keys").await;
    p.both("CREATE TABLE mi (id MEDIUMINT PRIMARY KEY, v INT)").await;
    p.both("CREATE TABLE bin (id BINARY(4) PRIMARY KEY, v INT)").await;
    p.both("CREATE TABLE l1 (id VARCHAR(10) CHARACTER SET latin1 PRIMARY KEY, v INT)").await;
    p.both("CREATE TABLE dt (id DATETIME(6) PRIMARY KEY, v INT)").await;
    p.both("CREATE TABLE tm (id TIME(6) PRIMARY KEY, v INT)").await;
    p.both("CREATE TABLE big (id BIGINT UNSIGNED PRIMARY KEY, v INT)").await;
    config(&p, "200ms", &["mi", "bin", "l1", "dt", "tm", "big"]);
    let incr = tailing(&p).await;
    for sql in [
        "INSERT INTO mi VALUES (-8388608, 1), (-1, 1)",
        "INSERT INTO bin VALUES (0x61000000, 1), (0x00000000, 1)",
        "INSERT INTO l1 VALUES ('café', 1)",
        "INSERT INTO dt VALUES ('2026-11-21 10:00:00.000001', 1)",
        "INSERT INTO tm VALUES ('-838:59:58.999999', 1), ('-00:00:00.5', 1)",
        "INSERT INTO big VALUES (18446744073709551615, 1)",
    ] {
        p.exec(Side::Source, sql).await;
    }
    let expected = expect(&[
        ("target_missing", json!({"id": -8388608})),
        ("target_missing", json!({"id": -1})),
        ("target_missing", json!({"id": "a\u{0}\u{0}\u{0}"})),
        ("target_missing", json!({"id": "\u{0}\u{0}\u{0}\u{0}"})),
        ("target_missing", json!({"id": "café"})),
        ("target_missing", json!({"id": "2026-11-21 10:00:00.000001"})),
        ("target_missing", json!({"id": "-838:59:58.999999"})),
        ("target_missing", json!({"id": "-00:00:00.500000"})),
        ("target_missing", json!({"id": 18446744073709551615u64})),
    ]);
    let events = p.wait_events(&expected).await;
    assert_eq!(kinds_and_keys(&events), expected);
    incr.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn ddl_mid_stream_and_a_20_mb_row() {
    let p = Pair::new("bl_ddl").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT, b LONGBLOB)").await;
    config(&p, "200ms", &["t"]);
    let incr = tailing(&p).await;
    p.both("INSERT INTO t VALUES (1, 1, NULL)").await;
    p.both("ALTER TABLE t ADD COLUMN w VARCHAR(10) NULL").await;
    p.exec(Side::Source, "UPDATE t SET w = 'new' WHERE id = 1").await;
    let big = format!("REPEAT('x', {})", 20 * 1024 * 1024);
    // The target's copy lands first, so the check sees the difference, not lag.
    p.exec(Side::Target, &format!("INSERT INTO t (id, v, b) VALUES (2, 2, CONCAT({big}, 'y'))")).await;
    p.exec(Side::Source, &format!("INSERT INTO t (id, v, b) VALUES (2, 2, {big})")).await;
    let expected = expect(&[("neq", json!({"id": 1})), ("neq", json!({"id": 2}))]);
    let events = p.wait_events(&expected).await;
    assert_eq!(kinds_and_keys(&events), expected);
    let cols = |id: i64| events.iter().find(|e| e["id"] == id).unwrap()["columns"].clone();
    assert_eq!(cols(1), json!(["w"]), "the new column is compared after the ALTER");
    assert_eq!(cols(2), json!(["b"]));
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// A dedicated base server for tests that restart or purge it, or need other settings.
pub struct OwnServer {
    name: String,
}

impl OwnServer {
    fn start(tag: &str, port: u16) -> OwnServer {
        OwnServer::start_as(tag, port, "base")
    }
    /// `role` as scripts/testenv.sh start-mariadb takes it (`base`, `base-compressed`).
    pub fn start_as(tag: &str, port: u16, role: &str) -> OwnServer {
        let name = format!("{tag}-{}", std::process::id());
        testenv(&["start-mariadb", &name, &port.to_string(), role]);
        OwnServer { name }
    }
    pub fn stop(&self) {
        testenv(&["stop-mariadb", &self.name]);
    }
    pub fn restart(&self, port: u16) {
        self.restart_as(port, "base");
    }
    pub fn restart_as(&self, port: u16, role: &str) {
        self.stop();
        testenv(&["start-mariadb", &self.name, &port.to_string(), role]);
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        testenv(&["destroy", &self.name]);
    }
}

async fn own_pair(tag: &str, port: u16) -> (OwnServer, Pair) {
    let server = OwnServer::start(tag, port);
    let p = Pair::new_with_source(tag, &format!("mysql://bv:bv@127.0.0.1:{port}")).await;
    (server, p)
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnects_after_a_source_restart_and_misses_nothing() {
    let port = 23071;
    let (server, p) = own_pair("bl_restart", port).await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    config(&p, "200ms", &["t"]);
    let incr = tailing(&p).await;
    p.exec(Side::Source, "INSERT INTO t VALUES (1, 1)").await;
    p.wait_events(&expect(&[("target_missing", json!({"id": 1}))])).await;
    server.restart(port);
    p.exec(Side::Source, "INSERT INTO t VALUES (2, 2)").await;
    let expected = expect(&[("target_missing", json!({"id": 1})), ("target_missing", json!({"id": 2}))]);
    let events = p.wait_events(&expected).await;
    assert_eq!(kinds_and_keys(&events), expected);
    let (code, log) = incr.stop();
    assert!(log.contains("reconnecting"), "{log}");
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purged_binlog_stops_with_a_clear_message() {
    let port = 23072;
    let (_server, p) = own_pair("bl_purge", port).await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    config(&p, "200ms", &["t"]);
    let incr = tailing(&p).await;
    p.exec(Side::Source, "INSERT INTO t VALUES (1, 1)").await;
    p.wait_events(&expect(&[("target_missing", json!({"id": 1}))])).await;
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
    let checkpoint_file = log.split("checkpoint ").nth(1).and_then(|s| s.split(':').next()).unwrap().to_string();
    p.exec(Side::Source, "FLUSH BINARY LOGS").await;
    p.exec(Side::Source, "INSERT INTO t VALUES (2, 2)").await;
    p.exec(Side::Source, "FLUSH BINARY LOGS").await;
    // The server keeps a file a replica is reading: wait until our dump thread is gone.
    let dumps = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'";
    eventually(Duration::from_secs(30), "the replica connection to close", || async {
        (p.source_value(dumps).await == "0").then_some(())
    })
    .await
    .unwrap();
    // MariaDB also keeps a file until its binlog checkpoint (InnoDB durably committed it) moves on.
    let newest = p.source_value("SHOW MASTER STATUS").await;
    eventually(Duration::from_secs(30), "the purge of the checkpoint's file", || async {
        p.exec(Side::Source, &format!("PURGE BINARY LOGS TO '{newest}'")).await;
        (p.source_value("SHOW BINARY LOGS").await == newest).then_some(())
    })
    .await
    .unwrap();
    let out = p.run_for(&["incr"], Duration::from_secs(60));
    assert_clean_failure(&out, &[&checkpoint_file, "full"]);
}
