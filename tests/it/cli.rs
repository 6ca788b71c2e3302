//! Bad input: exit 2 and one clear message that names the problem and the fix; never a panic.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn unknown_table() {
    let p = Pair::new("cli_unknown").await;
    p.config("", "[[table]]\nname = \"nope\"\n");
    assert_clean_failure(&p.run(&["full"]), &["`nope`", "does not exist", "source side"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn table_missing_on_the_other_side() {
    let p = Pair::new("cli_oneside").await;
    p.exec(Side::Source, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    p.config("", "[[table]]\nname = \"t\"\n");
    assert_clean_failure(&p.run(&["full"]), &["`t`", "does not exist", "target side"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn table_without_a_key() {
    let p = Pair::new("cli_nokey").await;
    p.both("CREATE TABLE nokey (a INT, b INT)").await;
    p.config("", "[[table]]\nname = \"nokey\"\n");
    assert_clean_failure(&p.run(&["full"]), &["`nokey`", "no primary key", "key = ["]);
    // The fix the message names works: a configured key (NOT NULL and unique, or it is refused too).
    p.both("INSERT INTO nokey VALUES (1, 1)").await;
    p.config("", "[check]\nsettle = \"100ms\"\n[[table]]\nname = \"nokey\"\nkey = [\"a\"]\n");
    assert_clean_failure(&p.run(&["full"]), &["`nokey`", "`a` may hold NULL"]);
    p.both("ALTER TABLE nokey MODIFY a INT NOT NULL, ADD UNIQUE KEY (a)").await;
    p.config("", "[check]\nsettle = \"100ms\"\n[[table]]\nname = \"nokey\"\nkey = [\"a\"]\n");
    let out = p.run(&["full"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server() {
    let p = Pair::new("cli_down").await;
    let cfg = format!(
        "[source]\nurl = \"mysql://bv:bv@127.0.0.1:1/{}\"\n[target]\nurl = \"{}\"\n[[table]]\nname = \"t\"\n",
        p.db,
        p.url(Side::Target)
    );
    std::fs::write(p.dir.path().join("binlog-validator.toml"), cfg).unwrap();
    let out = p.run(&["full"]);
    assert_clean_failure(&out, &["cannot connect to the source database", "127.0.0.1:1", "source.url"]);
    assert!(!text(&out).contains("bv:bv"), "credentials leaked: {}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_config() {
    let p = Pair::new("cli_bad").await;
    std::fs::write(p.dir.path().join("binlog-validator.toml"), "[source\nurl = 3").unwrap();
    assert_clean_failure(&p.run(&["full"]), &["config file"]);
    p.config("", "[[table]]\nname = \"t\"\n[check]\nbatch_size = \"many\"\n");
    assert_clean_failure(&p.run(&["full"]), &["batch_size"]);
    let missing = p.command(&["full"]).arg("--config").arg("/nonexistent/bv.toml").output().unwrap();
    assert_clean_failure(&missing, &["/nonexistent/bv.toml"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_overrides_supply_the_urls() {
    let p = Pair::new("cli_env").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY)").await;
    let cfg = format!(
        "[source]\nurl = \"mysql://wrong:wrong@127.0.0.1:1/x\"\n[state]\ndir = \"{}\"\n[sink]\nkind = \"file\"\npath = \"{}\"\n[[table]]\nname = \"t\"\n",
        p.dir.path().join("state").display(),
        p.events_path().display()
    );
    std::fs::write(p.dir.path().join("binlog-validator.toml"), cfg).unwrap();
    let out = p
        .command(&["full"])
        .env("BV_SOURCE_URL", p.url(Side::Source))
        .env("BV_TARGET_URL", p.url(Side::Target))
        .env("BV_CHECK_SETTLE", "100ms")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_each_check() {
    let p = Pair::new("cli_doctor").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.both("CREATE TABLE nokey (v INT)").await;
    p.config("", "[[table]]\nname = \"t\"\n[[table]]\nname = \"nokey\"\n");
    let out = p.run(&["doctor"]);
    let s = text(&out);
    assert_eq!(out.status.code(), Some(2), "{s}");
    for line in ["ok   source binlog_format: ROW", "ok   source binlog_row_metadata: FULL", "ok   table t: key (id)"] {
        assert!(s.contains(line), "missing `{line}` in:\n{s}");
    }
    assert!(s.contains("FAIL table nokey") && s.contains("no primary key"), "{s}");
}
