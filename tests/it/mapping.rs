//! A table validated under another name on the target, with a renamed column: `target_name` and
//! `columns`, in full and binlog modes; events name the base side's table and columns.

use crate::binlog::server_id;
use crate::harness::*;
use serde_json::json;

async fn pair() -> Pair {
    let p = Pair::new("mapping").await;
    p.exec(Side::Source, "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(50), nick VARCHAR(20))").await;
    p.exec(Side::Target, "CREATE TABLE users_v2 (id INT PRIMARY KEY, mail VARCHAR(50), nick VARCHAR(20))").await;
    p.exec(Side::Source, "INSERT INTO users VALUES (1, 'a', 'x'), (2, 'b', 'y'), (3, 'c', 'z'), (7, 'g', 'q')").await;
    p.exec(Side::Target, "INSERT INTO users_v2 VALUES (1, 'a', 'x'), (2, 'B', 'y'), (4, 'd', 'w'), (7, 'g', 'q')")
        .await;
    p
}

const TABLE: &str = "[[table]]\nname = \"users\"\ntarget_name = \"users_v2\"\ncolumns = { email = \"mail\" }\n";

#[tokio::test(flavor = "multi_thread")]
async fn full_mode_finds_all_three_types_under_another_name_and_column() {
    let p = pair().await;
    p.config("", &format!("[check]\nsettle = \"0s\"\n{TABLE}"));
    let doctor = p.run(&["doctor"]);
    let out = text(&doctor);
    assert!(out.contains("`users_v2`") && out.contains("email = mail"), "doctor shows the mapping: {out}");
    let run = p.run(&["full"]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let events = p.events();
    let expected =
        expect(&[("target_missing", json!({"id": 3})), ("neq", json!({"id": 2})), ("base_missing", json!({"id": 4}))]);
    assert_eq!(kinds_and_keys(&events), expected);
    assert!(events.iter().all(|e| e["table"] == "users"), "events name the base table: {events:?}");
    assert_eq!(events.iter().find(|e| e["id"] == 2).unwrap()["columns"], json!(["email"]));
    // The summary strategy digests each side by its own column names.
    std::fs::remove_file(p.events_path()).unwrap();
    let run = p.run(&["full", "--restart", "--strategy", "summary"]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert_eq!(kinds_and_keys(&p.events()), expected, "{}", text(&run));
}

#[tokio::test(flavor = "multi_thread")]
async fn binlog_mode_finds_all_three_types_under_another_name_and_column() {
    let p = pair().await;
    p.config("", &format!("[check]\nsettle = \"200ms\"\n[binlog]\nserver_id = {}\n{TABLE}", server_id()));
    let incr = crate::binlog::tailing(&p).await;
    p.exec(Side::Source, "INSERT INTO users VALUES (5, 'e', 'v')").await; // target_missing
    p.exec(Side::Source, "UPDATE users SET email = 'A' WHERE id = 1").await; // neq on email (mail)
    p.exec(Side::Source, "DELETE FROM users WHERE id = 7").await; // base_missing
    p.exec(Side::Target, "UPDATE users_v2 SET nick = 'qq' WHERE id = 2").await; // not in the binlog: unseen
    let expected =
        expect(&[("target_missing", json!({"id": 5})), ("neq", json!({"id": 1})), ("base_missing", json!({"id": 7}))]);
    let events = p.wait_events(&expected).await;
    assert_eq!(kinds_and_keys(&events), expected);
    assert!(events.iter().all(|e| e["table"] == "users"));
    assert_eq!(events.iter().find(|e| e["id"] == 1).unwrap()["columns"], json!(["email"]));
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
}
