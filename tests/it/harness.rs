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
    source: mysql_async::Pool,
    target: mysql_async::Pool,
}

impl Pair {
    pub async fn new(tag: &str) -> Pair {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let db = format!("t_{tag}_{}_{n}", std::process::id());
        for side in [Side::Source, Side::Target] {
            let url = server_url(side);
            let mut conn = mysql_async::Conn::from_url(&url)
                .await
                .unwrap_or_else(|e| panic!("cannot reach the {side:?} test server at {url}: {e}; run scripts/test.sh"));
            conn.query_drop(format!("DROP DATABASE IF EXISTS `{db}`")).await.unwrap();
            conn.query_drop(format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4")).await.unwrap();
            conn.disconnect().await.unwrap();
        }
        let pool = |side| mysql_async::Pool::new(format!("{}/{db}?", server_url(side)).as_str());
        Pair { source: pool(Side::Source), target: pool(Side::Target), dir: tempfile::tempdir().unwrap(), db }
    }

    pub fn url(&self, side: Side) -> String {
        format!("{}/{}", server_url(side), self.db)
    }

    pub async fn exec(&self, side: Side, sql: &str) {
        let pool = if side == Side::Source { &self.source } else { &self.target };
        let mut conn = pool.get_conn().await.unwrap();
        conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{side:?}: {sql}: {e}"));
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
