//! Binlog mode takes the base side from the row images: on the hot path it reads the target only, and
//! where an image cannot stand for the base (binlog_row_image=MINIMAL) it reads both sides, counted by
//! table and reason, with a warning naming the fix.

use crate::harness::*;
use crate::lagging::{start, UtimeType, Workload, TABLE};
use serde_json::{json, Value as J};
use std::time::Duration;

/// `/stats`' data.
fn stats(port: u16) -> J {
    let (status, body) = http(port, "GET", "/stats", None, None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<J>(&body).unwrap()["data"].clone()
}

fn count(s: &J, name: &str) -> u64 {
    s[name].as_u64().unwrap_or_else(|| panic!("/stats has no {name}: {s}"))
}

/// The lagging tests' config with the HTTP API on `port` (`/stats` tells the load on the base).
fn config(p: &Pair, port: u16, settle: &str, table: &str) {
    p.config(
        "",
        &format!(
            "[check]\nsettle = \"{settle}\"\n[binlog]\nserver_id = {}\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[table]]\nname = \"{table}\"\n",
            crate::binlog::server_id()
        ),
    );
}

/// Hot rows on a target 300 ms late: every change is checked, many of them wait out the settle window,
/// and not one row is read on the base from the moment binlog mode tails the binlog until every pending
/// row has settled.
#[tokio::test(flavor = "multi_thread")]
async fn binlog_mode_reads_no_base_rows_on_the_hot_path() {
    let p = Pair::new("img_load").await;
    let w = Workload { run_for: Duration::from_secs(5), ..Workload::lag_only(1..=4, UtimeType::BigintMs) };
    w.create(&p).await;
    let port = free_port();
    config(&p, port, "1s", TABLE);
    let incr = start(&p, "binlog").await;
    // Start-up reads (the binlog file list, read once the stream is connected) are done once a change
    // written after the start has been checked; the same statement on both sides leaves them equal.
    p.both(&format!("INSERT INTO {TABLE} VALUES (1000000, 0, 'same', 0)")).await;
    eventually(Duration::from_secs(30), "the stream read and checked", || async {
        let s = stats(port);
        (s["row_changes"]["checked"].as_u64().unwrap_or(0) >= 1).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}\n{}", stats(port), incr.log()));
    let before = stats(port);
    let ran = w.clone().run(&p).await;
    assert!(ran.writes >= 200, "too few writes: {ran:?}");
    // Every change read and judged, every pending row settled.
    let after = eventually(Duration::from_secs(30), "every change checked and settled", || async {
        let s = stats(port);
        let changes = s["row_changes"]["checked"].as_u64().unwrap_or(0);
        (changes > ran.writes * 4 && count(&s, "pending_rechecks") == 0).then_some(s)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}\n{}", stats(port), incr.log()));
    assert!(incr.log().contains("settle window"), "the lag was never seen:\n{}", incr.log());
    assert_eq!(count(&after, "base_rows_read"), count(&before, "base_rows_read"), "base rows read: {after}");
    assert_eq!(count(&after, "base_queries"), count(&before, "base_queries"), "base queries: {after}");
    assert_eq!(after["base_reads_fallback"], json!([]), "{after}");
    assert_eq!(count(&after, "confirm_overturned"), 0, "{after}");
    assert!(p.events().is_empty(), "lag only: {:?}", kinds_and_keys(&p.events()));
    let (_, metrics) = http(port, "GET", "/metrics", None, None);
    assert!(metrics.contains("bv_base_rows_read_total "), "{metrics}");
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// With `binlog_row_image=MINIMAL` an update's images leave the unchanged columns out: those changes are
/// checked by reading both sides (a real difference is still reported), counted by table and reason, and
/// the log names the fix once.
#[tokio::test(flavor = "multi_thread")]
async fn minimal_row_images_fall_back_to_base_reads_counted() {
    let p = Pair::new("img_min").await;
    p.both("CREATE TABLE m (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(20) NOT NULL)").await;
    p.both("INSERT INTO m VALUES (1, 1, 'a'), (2, 1, 'b')").await;
    let port = free_port();
    config(&p, port, "200ms", "m");
    let incr = crate::binlog::tailing(&p).await;
    let mut src = mysql_async::Conn::from_url(p.url(Side::Source)).await.unwrap();
    use mysql_async::prelude::Queryable;
    src.query_drop("SET SESSION binlog_row_image = 'MINIMAL'").await.unwrap();
    // Row 1 changes on the source only: a real difference. Row 2 changes alike on both sides.
    src.query_drop("UPDATE m SET v = 2 WHERE id IN (1, 2)").await.unwrap();
    p.exec(Side::Target, "UPDATE m SET v = 2 WHERE id = 2").await;
    let _ = src.disconnect().await;
    p.wait_events(&expect(&[("neq", json!({"id": 1}))])).await;
    let s = stats(port);
    let fallback = s["base_reads_fallback"].as_array().cloned().unwrap_or_default();
    assert_eq!(fallback, vec![json!({"table": "m", "reason": "row_image_partial", "count": 2})], "{s}");
    assert!(count(&s, "base_rows_read") > 0, "{s}");
    let log = incr.log();
    assert_eq!(log.matches("binlog_row_image=FULL").count(), 1, "one warning with the fix:\n{log}");
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}
