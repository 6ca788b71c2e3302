//! Transient failures in the middle of a pass: full mode retries the failed chunk with the one retry
//! policy instead of giving the whole pass up.

use crate::binlog::OwnServer;
use crate::harness::*;
use serde_json::json;
use std::time::Duration;

/// The target restarts while a full pass (started through the API, held to a few seconds by
/// `full.rate`) walks the table: every chunk that failed is retried, the pass finishes, and it reports
/// exactly the injected differences. Before chunks were retried, the pass failed at the restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_pass_survives_a_target_restart() {
    let port = 23074;
    let target = OwnServer::start_as("full_restart", port, "plain");
    let source = std::env::var("BVT_SOURCE_URL").expect("run scripts/test.sh");
    let p = Pair::new_with_servers("full_restart", &source, &format!("mysql://bv:bv@127.0.0.1:{port}")).await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.both("INSERT INTO t SELECT seq, seq FROM seq_1_to_60000").await;
    p.exec(Side::Target, "UPDATE t SET v = -1 WHERE id IN (10, 30000, 59990)").await;
    p.exec(Side::Target, "DELETE FROM t WHERE id = 44444").await;
    let api = free_port();
    p.config(
        "",
        &format!(
            "[check]\nsettle = \"0s\"\n[http]\nlisten = \"127.0.0.1:{api}\"\n[full]\nparallel = 1\nchunk_rows = 500\nrate = 10000\n[[table]]\nname = \"t\"\n"
        ),
    );
    let server = Incr::start_command(&p, &["serve"]);
    server.wait_api().await;
    assert_eq!(http(api, "POST", "/full/start", Some("{}"), None).0, 200);
    // Under way: some rows are checked, most are not (60,000 rows at 10,000 a second).
    server.wait_stat("/rows_checked", "the pass to be under way", |n| n > 0.0).await;
    target.restart_as(port, "plain");
    let last = eventually(Duration::from_secs(120), "the pass to end", || async {
        server.api_data("/status").map(|s| s["full"]["last"].clone()).filter(|l| !l.is_null())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", server.log()));
    assert_eq!(last["outcome"], "finished", "{last}\nlog:\n{}", server.log());
    assert!(server.log().contains("retrying"), "the restart was seen and retried:\n{}", server.log());
    let expected = expect(&[
        ("neq", json!({"id": 10})),
        ("neq", json!({"id": 30000})),
        ("neq", json!({"id": 59990})),
        ("target_missing", json!({"id": 44444})),
    ]);
    assert_eq!(kinds_and_keys(&p.wait_events(&expected).await), expected);
}
