//! The HTTP control API of `serve`, driven over real HTTP against the real MariaDB pair.

use crate::harness::*;
use serde_json::{json, Value as J};
use std::time::Duration;

const TOKEN: &str = "s3cret-token";

struct Server {
    incr: Incr,
    port: u16,
}

impl Server {
    async fn start(p: &Pair, settle: &str) -> Server {
        Server::start_with(p, settle, "").await
    }

    /// With `more` appended to the config (more tables, [full] settings).
    async fn start_with(p: &Pair, settle: &str, more: &str) -> Server {
        let port = free_port();
        p.config(
            "",
            &format!(
                "[check]\nsettle = \"{settle}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n[binlog]\nserver_id = {}\n[[table]]\nname = \"t\"\n{more}",
                30_000 + port as u32 % 10_000
            ),
        );
        let incr = Incr::start_command(p, &["serve"]);
        incr.wait_api().await;
        Server { incr, port }
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, J) {
        let (status, text) = http(self.port, method, path, body, Some(TOKEN));
        let json = serde_json::from_str(&text).unwrap_or(J::Null);
        (status, json)
    }
}

async fn pair() -> Pair {
    let p = Pair::new("api").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.both("INSERT INTO t SELECT seq, seq FROM seq_1_to_100").await;
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_with_the_token_enforced() {
    let p = pair().await;
    p.exec(Side::Target, "DELETE FROM t WHERE id = 5").await;
    let s = Server::start(&p, "100ms").await;

    assert_eq!(http(s.port, "GET", "/healthz", None, None).0, 200, "healthz needs no token");
    for path in ["/status", "/stats", "/metrics", "/openapi.json"] {
        assert_eq!(http(s.port, "GET", path, None, None).0, 401, "{path} without a token");
        assert_eq!(http(s.port, "GET", path, None, Some("wrong")).0, 401, "{path} with a wrong token");
    }
    assert_eq!(http(s.port, "POST", "/full/start", Some("{}"), None).0, 401);

    let (code, body) = s.call("POST", "/full/start", Some(r#"{"tables": ["t"]}"#));
    assert_eq!((code, &body["code"]), (200, &json!(0)), "{body}");
    let status = eventually(Duration::from_secs(30), "the full pass to finish", || async {
        let (_, b) = s.call("GET", "/status", None);
        (b["data"]["full"]["last"]["outcome"] == "finished").then_some(b)
    })
    .await
    .unwrap();
    assert_eq!(status["data"]["full"]["last"]["events"]["target_missing"], 1, "{status}");
    p.wait_events(&expect(&[("target_missing", json!({"id": 5}))])).await;

    let (code, stats) = s.call("GET", "/stats", None);
    assert_eq!(code, 200);
    let d = &stats["data"];
    assert_eq!(d["full_validation_runs"], 1, "{stats}");
    assert_eq!(d["events"]["target_missing"], 1);
    assert!(d["rows_checked"].as_u64().unwrap() >= 100);
    for k in ["incr_validation_runs", "transient_mismatches_resolved", "undelivered_events"] {
        assert!(d.get(k).is_some(), "{k} missing from {stats}");
    }

    let (code, text) = http(s.port, "GET", "/metrics", None, Some(TOKEN));
    assert_eq!(code, 200);
    let mut samples = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in `{line}`"));
        samples.insert(name.to_string(), v);
    }
    assert_eq!(samples.get("bv_events_total{table=\"t\",type=\"target_missing\"}"), Some(&1.0), "{text}");
    assert!(samples["bv_rows_checked_total"] >= 100.0);
    for m in [
        "bv_outbox_size",
        "bv_recheck_queue_size",
        "bv_binlog_lag_seconds",
        "bv_poll_cursor_lag_seconds",
        "bv_checkpoint_age_seconds",
        "bv_mismatches_resolved_total",
    ] {
        assert!(samples.contains_key(m), "{m} missing:\n{text}");
    }
    let (code, doc) = s.call("GET", "/openapi.json", None);
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(s.call("GET", "/nope", None).0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_ill_typed_bodies_get_400_with_the_reason() {
    let p = pair().await;
    let s = Server::start(&p, "100ms").await;
    for (path, body, needle) in [
        ("/incr/start", "{", "invalid request body"),
        ("/incr/start", r#"{"utime": "yesterday"}"#, "invalid type"),
        ("/incr/start", r#"{"mode": "sideways"}"#, "mode"),
        ("/incr/start", r#"{"interval": -5}"#, "interval"),
        ("/incr/start", r#"{"utime": -1}"#, "utime"),
        ("/incr/start", r#"{"bogus": 1}"#, "unknown field"),
        ("/full/start", r#"{"tables": "t"}"#, "invalid type"),
        ("/full/start", r#"{"tables": ["nope"]}"#, "`nope`"),
        ("/full/start", "[]", "invalid"),
    ] {
        let (code, b) = s.call("POST", path, Some(body));
        assert_eq!(code, 400, "{path} {body}: {b}");
        assert_eq!(b["code"], 400);
        assert!(b["msg"].as_str().unwrap().contains(needle), "{path} {body}: {b}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_full_pass_at_a_time_and_stop_conflicts() {
    let p = pair().await;
    p.exec(Side::Target, "UPDATE t SET v = 0 WHERE id = 7").await;
    // A long settle window keeps the pass running while it waits to report.
    let s = Server::start(&p, "30s").await;
    assert_eq!(s.call("POST", "/full/start", None).0, 200);
    let (code, b) = s.call("POST", "/full/start", None);
    assert_eq!(code, 409, "{b}");
    assert_eq!(s.call("POST", "/full/stop", None).0, 200);
    assert_eq!(s.call("POST", "/full/stop", None).0, 409);
    assert_eq!(s.call("POST", "/incr/stop", None).0, 409);
    let (_, st) = s.call("GET", "/status", None);
    assert_eq!(st["data"]["full"]["running"], false, "{st}");
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_start_restart_stop_and_concurrent_requests() {
    let p = pair().await;
    let s = Server::start(&p, "200ms").await;
    let (code, b) = s.call("POST", "/incr/start", Some(r#"{"mode": "binlog"}"#));
    assert_eq!(code, 200, "{b}");
    let (code, b) = s.call("POST", "/incr/start", None);
    assert_eq!((code, b["msg"].as_str().unwrap()), (200, "incremental validation restarted"));
    // Rapid and concurrent start/stop from many clients.
    let port = s.port;
    let threads: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let (path, body) = if i % 2 == 0 { ("/incr/start", Some("{}")) } else { ("/incr/stop", None) };
                http(port, "POST", path, body, Some(TOKEN)).0
            })
        })
        .collect();
    for t in threads {
        let code = t.join().unwrap();
        assert!(code == 200 || code == 409, "unexpected status {code}");
    }
    // Whatever order they ran in, the state is coherent: one start later, exactly one validation runs.
    let _ = s.call("POST", "/incr/stop", None);
    assert_eq!(s.call("POST", "/incr/start", None).0, 200);
    let (_, st) = s.call("GET", "/status", None);
    assert_eq!(st["data"]["incr"]["running"], true, "{st}");
    p.exec(Side::Source, "INSERT INTO t VALUES (1000, 1)").await;
    p.wait_events(&expect(&[("target_missing", json!({"id": 1000}))])).await;
    let (code, b) = s.call("POST", "/incr/stop", None);
    assert_eq!(code, 200);
    assert!(b["data"]["checkpoint"].as_str().unwrap().starts_with("mysql-bin."), "{b}");
    let (_, st) = s.call("GET", "/status", None);
    assert_eq!(st["data"]["incr"]["running"], false);
    // SIGTERM: graceful stop.
    let (code, log) = s.incr.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error() {
    let p = pair().await;
    let s = Server::start(&p, "100ms").await;
    let out = std::process::Command::new("schemathesis")
        .args(["run", &format!("http://127.0.0.1:{}/openapi.json", s.port)])
        // /cutover long-polls and answers 503 by contract when its point is not reached in time.
        .args(["--checks", "not_a_server_error", "--max-examples", "25", "--exclude-path", "/cutover", "-H"])
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .output()
        .expect("schemathesis is not installed: scripts/test.sh installs it (pip install schemathesis)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    assert_eq!(http(s.port, "GET", "/healthz", None, None).0, 200, "the server must still be up");
}

/// A full pass's summary counts its own events only, not those binlog mode reports meanwhile in the same
/// process.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_pass_summary_counts_only_its_own_events() {
    let p = Pair::new("api_own").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.both("INSERT INTO t SELECT seq, seq FROM seq_1_to_50000").await;
    p.exec(Side::Target, "UPDATE t SET v = 0 WHERE id = 7").await;
    p.both("CREATE TABLE u (id INT PRIMARY KEY, v INT)").await;
    let s = Server::start_with(&p, "2s", "[[table]]\nname = \"u\"\n[full]\nparallel = 1\nchunk_rows = 20\n").await;
    assert_eq!(s.call("POST", "/incr/start", Some(r#"{"mode": "binlog"}"#)).0, 200);
    s.incr.wait_ready().await;
    p.exec(Side::Source, "INSERT INTO u VALUES (1, 1)").await;
    s.incr.wait_pending().await;
    // The pass (2,500 chunks) runs while binlog mode's mismatch ends its window and is reported.
    assert_eq!(s.call("POST", "/full/start", Some(r#"{"tables": ["t"]}"#)).0, 200);
    let last = eventually(Duration::from_secs(120), "the full pass to finish", || async {
        let (_, st) = s.call("GET", "/status", None);
        let last = st["data"]["full"]["last"].clone();
        (last["outcome"] == "finished").then_some(last)
    })
    .await
    .unwrap();
    let (_, stats) = s.call("GET", "/stats", None);
    assert_eq!(stats["data"]["events"]["target_missing"], 1, "binlog mode reported its row: {stats}");
    assert_eq!(last["events"], json!({"target_missing": 0, "neq": 1, "base_missing": 0}), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_says_when_max_load_holds_a_full_pass_back() {
    let p = pair().await;
    // Threads_running counts the statement that reads it, so a limit of 0 always holds the pass.
    let s = Server::start_with(&p, "100ms", "[full]\nmax_load = \"Threads_running=0\"\n").await;
    assert_eq!(s.call("POST", "/full/start", Some("{}")).0, 200);
    let held = eventually(Duration::from_secs(20), "status to show the pass held back", || async {
        let (_, j) = s.call("GET", "/status", None);
        j["data"]["full"]["held"].as_str().filter(|h| h.contains("max_load: Threads_running")).map(str::to_string)
    })
    .await;
    assert!(held.is_ok(), "{held:?}");
    assert_eq!(s.call("GET", "/status", None).1["data"]["full"]["running"], true);
    assert_eq!(s.call("POST", "/full/stop", None).0, 200);
    let cleared = eventually(Duration::from_secs(10), "the held note to clear", || async {
        let (_, j) = s.call("GET", "/status", None);
        j["data"]["full"]["held"].is_null().then_some(())
    })
    .await;
    assert!(cleared.is_ok(), "{cleared:?}");
    let _ = s.incr.stop();
}
