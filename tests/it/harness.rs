//! Test harness: per-test databases on the real MariaDB pair that scripts/testenv.sh starts, a config
//! writer, the binary runner, and readers for the events a run produced (file sink or Kafka topic).
//!
//! The servers are never faked or skipped: without the environment of scripts/test.sh, every
//! integration test fails with a message that says how to start it.

use mysql_async::prelude::Queryable;
use serde_json::Value as J;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: integration tests need the real MariaDB pair and broker; run scripts/test.sh, which starts them")
    })
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_binlog-validator")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh database of the same name on both servers, with a temp dir for state and events.
pub struct Pair {
    pub db: String,
    pub dir: tempfile::TempDir,
    source_server: String,
    target_server: String,
}

impl Pair {
    pub async fn new(tag: &str) -> Pair {
        Pair::new_with_source(tag, &server_url(Side::Source)).await
    }

    /// A pair whose source is another server (one a test restarts or purges).
    pub async fn new_with_source(tag: &str, source_server: &str) -> Pair {
        Pair::new_with_servers(tag, source_server, &server_url(Side::Target)).await
    }

    /// A pair on other servers than the shared ones.
    pub async fn new_with_servers(tag: &str, source_server: &str, target_server: &str) -> Pair {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let db = format!("t_{tag}_{}_{n}", std::process::id());
        for (side, url) in [(Side::Source, source_server.to_string()), (Side::Target, target_server.to_string())] {
            let mut conn = mysql_async::Conn::from_url(&url)
                .await
                .unwrap_or_else(|e| panic!("cannot reach the {side:?} test server at {url}: {e}; run scripts/test.sh"));
            conn.query_drop(format!("DROP DATABASE IF EXISTS `{db}`")).await.unwrap();
            conn.query_drop(format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4")).await.unwrap();
            conn.disconnect().await.unwrap();
        }
        Pair {
            source_server: source_server.to_string(),
            target_server: target_server.to_string(),
            dir: tempfile::tempdir().unwrap(),
            db,
        }
    }

    pub fn url(&self, side: Side) -> String {
        let server = if side == Side::Source { &self.source_server } else { &self.target_server };
        // A server URL may carry parameters (`?require_ssl=true`); the database goes before them.
        match server.split_once('?') {
            Some((server, params)) => format!("{server}/{}?{params}", self.db),
            None => format!("{server}/{}", self.db),
        }
    }

    /// Runs SQL on one side, on a fresh connection (so a restarted server needs no special care).
    pub async fn exec(&self, side: Side, sql: &str) {
        let mut conn = mysql_async::Conn::from_url(self.url(side)).await.unwrap_or_else(|e| panic!("{side:?}: {e}"));
        conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{side:?}: {sql}: {e}"));
        let _ = conn.disconnect().await;
    }

    /// The first column of the first row of a query on the source.
    pub async fn source_value(&self, sql: &str) -> String {
        let mut conn = mysql_async::Conn::from_url(self.url(Side::Source)).await.unwrap();
        let row: Option<mysql_async::Row> = conn.query_first(sql).await.unwrap();
        let _ = conn.disconnect().await;
        row.and_then(|r| r.get::<String, _>(0)).unwrap_or_default()
    }

    pub async fn both(&self, sql: &str) {
        self.exec(Side::Source, sql).await;
        self.exec(Side::Target, sql).await;
    }

    /// Writes a config: connections, state dir and (unless `extra` has a [sink]) a file sink, then `extra`.
    /// `top` goes before every table (for `base = ...`).
    pub fn config(&self, top: &str, extra: &str) -> PathBuf {
        let mut text = format!(
            "{top}\n[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[state]\ndir = \"{}\"\n",
            self.url(Side::Source),
            self.url(Side::Target),
            self.dir.path().join("state").display()
        );
        if !extra.contains("[sink]") {
            text.push_str(&format!("[sink]\nkind = \"file\"\npath = \"{}\"\n", self.events_path().display()));
        }
        text.push_str(extra);
        let path = self.dir.path().join("binlog-validator.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn events_path(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    /// Runs the binary with the config written by [`Pair::config`].
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs the binary, killing it if it has not exited after `limit` (the output then shows it ran on).
    pub fn run_for(&self, args: &[&str], limit: Duration) -> Output {
        let mut child = self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let end = Instant::now() + limit;
        while child.try_wait().unwrap().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    }

    /// Runs the binary with `BV_LOG=log`, sends SIGINT once a stderr line contains `needle`, and returns
    /// its exit code with the lines it wrote after that.
    pub fn interrupt_when(&self, args: &[&str], log: &str, needle: &str) -> (Option<i32>, Vec<String>) {
        use std::io::BufRead;
        let mut child = self.command(args).env("BV_LOG", log).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut lines = stderr.lines().map_while(Result::ok);
        assert!(lines.any(|l| l.contains(needle)), "`{needle}` never appeared");
        let st = Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap();
        assert!(st.success());
        let rest: Vec<String> = lines.collect();
        (child.wait().unwrap().code(), rest)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--config").arg(self.dir.path().join("binlog-validator.toml")).args(args);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("BV_")) {
            c.env_remove(k);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Events the file sink received, as (type, key) pairs, plus the raw objects.
    pub fn events(&self) -> Vec<J> {
        match std::fs::read_to_string(self.events_path()) {
            Ok(text) => text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn server_url(side: Side) -> String {
    env_var(if side == Side::Source { "BVT_SOURCE_URL" } else { "BVT_TARGET_URL" })
}

/// (type, key as JSON text) of each event: what tests compare against the injected set.
pub fn kinds_and_keys(events: &[J]) -> BTreeSet<(String, String)> {
    events.iter().map(|e| (e["type"].as_str().unwrap_or("?").to_string(), e["key"].to_string())).collect()
}

pub fn expect(items: &[(&str, J)]) -> BTreeSet<(String, String)> {
    items.iter().map(|(t, k)| (t.to_string(), k.to_string())).collect()
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Asserts a run failed the way SPEC.md says bad input must: exit 2, one `error:` line that contains
/// every fragment, and no panic or backtrace.
pub fn assert_clean_failure(out: &Output, fragments: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "expected exit 2; output:\n{}", text(out));
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "panic: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    for f in fragments {
        assert!(errors[0].contains(f), "`{f}` missing from: {}", errors[0]);
    }
}

/// Runs the test environment script (to start or stop a dedicated server or broker).
pub fn testenv(args: &[&str]) {
    let script = env_var("BVT_TESTENV");
    let st = Command::new("bash").arg(script).args(args).status().unwrap();
    assert!(st.success(), "testenv {args:?} failed");
}

/// A running `incr` process whose stderr is collected line by line, and the address of its HTTP API.
pub struct Incr {
    pub child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// (port, token) of its API: the config's `[http]`, else a free loopback port the harness gave it.
    api: (u16, Option<String>),
}

impl Incr {
    pub fn start(pair: &Pair, args: &[&str]) -> Incr {
        let mut all = vec!["incr"];
        all.extend_from_slice(args);
        Incr::start_command(pair, &all)
    }

    /// Any long-running command (`serve`, `incr`), its stderr collected. Without an `[http]` in the
    /// config it serves its API on a free loopback port, so tests follow it through `/status` and
    /// `/stats`, never through its log.
    pub fn start_command(pair: &Pair, args: &[&str]) -> Incr {
        let config = std::fs::read_to_string(pair.dir.path().join("binlog-validator.toml")).unwrap_or_default();
        let mut command = pair.command(args);
        let api = match config.parse::<toml::Table>().ok().and_then(|t| t.get("http").cloned()) {
            Some(http) => {
                let listen = http.get("listen").and_then(|l| l.as_str()).unwrap_or("127.0.0.1:8080").to_string();
                let port = listen.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(8080);
                (port, http.get("token").and_then(|t| t.as_str()).map(str::to_string))
            }
            None => {
                let port = free_port();
                command.env("BV_HTTP_LISTEN", format!("127.0.0.1:{port}"));
                (port, None)
            }
        };
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Incr { child, lines, api }
    }

    /// GET on its API: the `data` of the answer, or `None` while it does not answer.
    pub fn api_data(&self, path: &str) -> Option<J> {
        let (port, token) = &self.api;
        std::net::TcpStream::connect(("127.0.0.1", *port)).ok()?;
        let (status, body) = http(*port, "GET", path, None, token.as_deref());
        (status == 200).then(|| serde_json::from_str::<J>(&body).ok().map(|b| b["data"].clone())).flatten()
    }

    /// Waits until its API answers (`serve` and `incr` alike).
    pub async fn wait_api(&self) {
        eventually(Duration::from_secs(60), "the validator's API to answer", || async { self.api_data("/status") })
            .await
            .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", self.log()));
    }

    /// Waits until its incremental validation runs (`/status`: its start position is fixed then, so a
    /// write from now on is seen).
    pub async fn wait_ready(&self) {
        let what = "the validator's incremental validation to run";
        eventually(Duration::from_secs(60), what, || async {
            self.api_data("/status").filter(|s| s["incr"]["running"] == true).map(|_| ())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", self.log()));
    }

    /// Waits until `/stats` at the JSON `pointer` holds a number for which `ok` is true; returns it.
    pub async fn wait_stat(&self, pointer: &str, what: &str, ok: impl Fn(f64) -> bool) -> f64 {
        eventually(Duration::from_secs(60), what, || async {
            self.api_data("/stats").and_then(|s| s.pointer(pointer).and_then(J::as_f64)).filter(|v| ok(*v))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", self.log()))
    }

    /// Waits until a mismatch waits out its settle window (`/stats` `pending_rechecks`).
    pub async fn wait_pending(&self) {
        self.wait_stat("/pending_rechecks", "a mismatch pending in its settle window", |n| n >= 1.0).await;
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let code = self.child.wait().unwrap().code();
        // The reader thread sees EOF after the exit; give it a moment to drain the pipe.
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end && !self.log().contains("stopped") && code == Some(0) {
            std::thread::sleep(Duration::from_millis(20));
        }
        (code, self.log())
    }

    /// Waits until the process exits by itself (within `timeout`); its exit status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        let r = eventually(timeout, "the validator to exit", || {
            let done = child.try_wait().unwrap();
            async move { done }
        })
        .await;
        r.unwrap_or_else(|e| panic!("{e}\nlog:\n{}", self.log()))
    }

    /// SIGKILL (by dropping).
    pub fn kill9(self) {}
}

impl Drop for Incr {
    /// A test that fails half-way must not leave its validator running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pair {
    /// Waits until the events include every expected (type, key) pair; returns all events by then.
    pub async fn wait_events(&self, expected: &BTreeSet<(String, String)>) -> Vec<J> {
        let r = eventually(Duration::from_secs(60), "the expected events", || async {
            let ev = self.events();
            kinds_and_keys(&ev).is_superset(expected).then_some(ev)
        })
        .await;
        r.unwrap_or_else(|e| {
            panic!("{e}: expected {expected:?}\ngot {:?}", kinds_and_keys(&self.events()));
        })
    }
}

/// Polls `f` until it returns Some, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= end {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on loopback (bound and released; a tiny race no test here minds).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request with `Connection: close`: (status, body).
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}
