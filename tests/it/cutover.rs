//! The inconsistency ledger and the cutover gate, against the real pair and broker: reported rows stay
//! open until found equal (then a `resolved` event follows them on Kafka), the ledger survives SIGKILL,
//! and `cutover` answers 0 (clean), 1 (open rows, listed) or 2 (not reached in time).

use crate::binlog::server_id;
use crate::harness::*;
use crate::kafka::{consume, create_topic};
use serde_json::{json, Value as J};

const TOKEN: &str = "gate-token";

/// Config for `incr` in binlog mode with the HTTP API (so the gate can be asked); `sink` replaces the
/// file sink when given.
fn config(p: &Pair, port: u16, sink: &str) {
    p.config(
        "",
        &format!(
            "[check]\nsettle = \"300ms\"\n[binlog]\nserver_id = {}\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n{sink}[[table]]\nname = \"t\"\n",
            server_id()
        ),
    );
}

async fn incr_with_api(p: &Pair) -> Incr {
    let incr = Incr::start(p, &[]);
    incr.wait_ready().await;
    incr
}

/// Runs `cutover` with the test's config: (exit code, stdout).
fn cutover(p: &Pair, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["cutover", "--out"];
    let out = p.dir.path().join("open.jsonl");
    let out = out.to_str().unwrap().to_string();
    all.push(&out);
    all.extend_from_slice(args);
    let o = p.run(&all);
    (o.status.code(), text(&o))
}

fn open_rows(p: &Pair) -> Vec<J> {
    std::fs::read_to_string(p.dir.path().join("open.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gate_answers_clean_open_rows_or_not_reached_and_the_ledger_survives_sigkill() {
    let p = Pair::new("gate").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT, s VARCHAR(20))").await;
    let port = free_port();
    config(&p, port, "");
    let incr = incr_with_api(&p).await;
    // A live, mirrored workload: identical values on both sides (no NOW() evaluated per side).
    let writer = {
        let (src, dst) = (p.url(Side::Source), p.url(Side::Target));
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut s = mysql_async::Conn::from_url(src).await.unwrap();
            let mut d = mysql_async::Conn::from_url(dst).await.unwrap();
            for i in 0..400 {
                let q = format!("INSERT INTO t VALUES ({i}, {i}, 'row {i}') ON DUPLICATE KEY UPDATE v = v + 1");
                s.query_drop(&q).await.unwrap();
                d.query_drop(&q).await.unwrap();
            }
        })
    };
    writer.await.unwrap();
    // The load has stopped: everything up to the base's position now gets a verdict, and none is open.
    let (code, out) = cutover(&p, &["--until", "now", "--timeout", "60s"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("clean"), "{out}");

    // Two inconsistencies; one is fixed on the target later, the other stays.
    p.exec(Side::Source, "INSERT INTO t VALUES (1000, 1, 'only here')").await;
    p.exec(Side::Source, "UPDATE t SET s = 'changed' WHERE id = 7").await;
    p.wait_events(&expect(&[("target_missing", json!({"id": 1000})), ("neq", json!({"id": 7}))])).await;
    let (code, out) = cutover(&p, &["--timeout", "60s"]);
    assert_eq!(code, Some(1), "{out}");
    let listed: Vec<(String, J)> =
        open_rows(&p).iter().map(|r| (r["type"].as_str().unwrap().to_string(), r["key"].clone())).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&("target_missing".into(), json!({"id": 1000}))), "{listed:?}");
    assert!(listed.contains(&("neq".into(), json!({"id": 7}))), "{listed:?}");

    // The ledger survives SIGKILL; the row fixed on the target meanwhile closes, the other does not.
    incr.kill9();
    p.exec(Side::Target, "UPDATE t SET s = 'changed' WHERE id = 7").await;
    let incr = incr_with_api(&p).await;
    let (code, out) = cutover(&p, &["--timeout", "60s"]);
    assert_eq!(code, Some(1), "{out}");
    let listed: Vec<J> = open_rows(&p).iter().map(|r| r["key"].clone()).collect();
    assert_eq!(listed, vec![json!({"id": 1000})], "{out}");

    // A point validation cannot reach in time: exit 2 saying what it waits for.
    let (code, out) = cutover(&p, &["--until", "mysql-bin.999999:4", "--timeout", "1s"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("mysql-bin.999999:4"), "{out}");

    // Fixed on the target too: clean again.
    p.exec(Side::Target, "INSERT INTO t VALUES (1000, 1, 'only here')").await;
    let (code, out) = cutover(&p, &["--timeout", "60s"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_found_equal_again_closes_with_a_resolved_event_after_its_report_on_kafka() {
    let brokers = env_var("BVT_BROKERS");
    let p = Pair::new("resolved").await;
    let topic = format!("resolved-{}", p.db);
    create_topic(&brokers, &topic).await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.both("INSERT INTO t VALUES (1, 1), (2, 2)").await;
    let sink =
        format!("[sink]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\nresolved_events = true\n");
    let port = free_port();
    config(&p, port, &sink);
    let incr = incr_with_api(&p).await;
    p.exec(Side::Source, "UPDATE t SET v = 10 WHERE id = 1").await;
    p.exec(Side::Source, "UPDATE t SET v = 20 WHERE id = 2").await;
    let reported = consume(&brokers, &topic, 2);
    assert_eq!(reported.len(), 2, "{reported:?}");
    // Row 1 changes again on both sides (its check finds it equal); row 2 is fixed on the target only
    // (the background re-check finds it).
    p.both("UPDATE t SET v = 11 WHERE id = 1").await;
    p.exec(Side::Target, "UPDATE t SET v = 20 WHERE id = 2").await;
    let all = consume(&brokers, &topic, 4);
    assert_eq!(all.len(), 4, "{all:?}");
    for id in [1, 2] {
        let row: Vec<&(String, J)> = all.iter().filter(|(_, e)| e["id"] == id).collect();
        let kinds: Vec<&str> = row.iter().map(|(_, e)| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["neq", "resolved"], "row {id}, in its partition's order: {all:?}");
        assert_eq!(row[0].0, row[1].0, "the resolved event is keyed like the report");
    }
    let (code, out) = cutover(&p, &["--timeout", "60s"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_poll_mode_the_gate_waits_for_a_round_after_the_call() {
    let p = Pair::new("gate_poll").await;
    let ddl = "CREATE TABLE t (id INT PRIMARY KEY, v INT, utime DATETIME(3) NOT NULL)";
    p.both(ddl).await;
    p.both("INSERT INTO t VALUES (1, 1, '2026-01-01 00:00:00.000'), (2, 2, '2026-01-01 00:00:00.000')").await;
    let port = free_port();
    p.config(
        "",
        &format!(
            "[check]\nsettle = \"300ms\"\n[poll]\ninterval = \"100ms\"\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n[[table]]\nname = \"t\"\nutime = \"utime\"\n"
        ),
    );
    let incr = Incr::start(&p, &["--mode", "poll"]);
    incr.wait_api().await;
    let (code, out) = cutover(&p, &["--timeout", "60s"]);
    assert_eq!(code, Some(0), "{out}");
    p.exec(Side::Source, "UPDATE t SET v = 20, utime = '2026-01-02 00:00:00.000' WHERE id = 2").await;
    let (code, out) = cutover(&p, &["--timeout", "60s"]);
    assert_eq!(code, Some(1), "the change is found and still open: {out}");
    let listed: Vec<J> = open_rows(&p).iter().map(|r| r["key"].clone()).collect();
    assert_eq!(listed, vec![json!({"id": 2})]);
    let (code, out) = cutover(&p, &["--until", "mysql-bin.000001:4"]);
    assert_eq!(code, Some(2), "positions mean nothing to poll mode: {out}");
    incr.stop();
}
