//! Full mode's summary strategy against the real MariaDB pair: exactly the injected differences, also
//! those a linear checksum cancels or a collation hides; the digest SQL on every column type; the
//! fallback to rows where types differ; balanced segments on skewed, string and composite keys; and
//! `max_load`/`rate` holding a pass back.

use crate::full::TYPES;
use crate::harness::*;
use binlog_validator::mysql::digest::{row_digest_sql, row_digest_twice_sql, Dialect, DigestColumn};
use binlog_validator::mysql::kind::Kind;
use mysql_async::prelude::Queryable;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const FAST: &str = "[check]\nsettle = \"200ms\"\n";

async fn conn(p: &Pair, side: Side) -> mysql_async::Conn {
    mysql_async::Conn::from_url(p.url(side)).await.unwrap()
}

/// `id -> value` of one query (first column the id) on one side.
async fn by_id(p: &Pair, side: Side, sql: &str) -> BTreeMap<i64, Option<String>> {
    let mut c = conn(p, side).await;
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let rows: Vec<(i64, Option<String>)> = c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = c.disconnect().await;
    rows.into_iter().collect()
}

/// The digest expression for a table's columns as the server describes them in `dialect` (with the user
/// variable, and built twice without it).
async fn digest_sql(p: &Pair, table: &str, dialect: Dialect) -> (String, String) {
    let mut c = conn(p, Side::Source).await;
    let cols: Vec<(String, String, String)> = c
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, IS_NULLABLE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (p.db.clone(), table),
        )
        .await
        .unwrap();
    let _ = c.disconnect().await;
    let cols: Vec<DigestColumn> = cols
        .iter()
        .map(|(n, t, null)| DigestColumn { name: n, kind: Kind::from_data_type(t), nullable: null == "YES" })
        .collect();
    (row_digest_sql(dialect, &cols), row_digest_twice_sql(dialect, &cols))
}

#[tokio::test(flavor = "multi_thread")]
async fn summary_finds_exactly_the_injected_differences_even_those_a_linear_checksum_cancels() {
    exactly_the_injected_differences("sum", None, "MariaDb").await;
}

/// The same pass with the digest forced to the dialect MySQL 8 runs too (`BV_DIGEST_DIALECT=common`).
#[tokio::test(flavor = "multi_thread")]
async fn summary_in_the_common_dialect_finds_exactly_the_injected_differences() {
    let p = exactly_the_injected_differences("sumc", Some("common"), "Common").await;
    let out = p.command(&["full", "--strategy", "summary"]).env("BV_DIGEST_DIALECT", "mysql8").output().unwrap();
    assert_clean_failure(&out, &["BV_DIGEST_DIALECT", "`common`"]);
}

/// Injects differences a linear checksum cancels or a collation hides, runs `full --strategy summary`
/// with `BV_DIGEST_DIALECT` set to `forced` (unset when `None`), and checks exactly those are found, by
/// summaries in the `dialect` the run logged. Returns the pair for further runs.
async fn exactly_the_injected_differences(db: &str, forced: Option<&str>, dialect: &str) -> Pair {
    let p = Pair::new(db).await;
    p.both(
        "CREATE TABLE s (id INT PRIMARY KEY, name VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci, \
         code CHAR(2), n INT)",
    )
    .await;
    p.both("INSERT INTO s SELECT seq, CONCAT('name', seq), 'x1', seq FROM seq_1000_to_6999").await;
    // Two rows whose changes flip the same bits at the same offset ('1' ^ '2' = '5' ^ '6' = 0x03): an XOR
    // of CRC32s over the rows cannot see them (checked below), a sum of products of two CRC32s does.
    p.both("UPDATE s SET code = 'y5' WHERE id = 2000").await;
    p.exec(Side::Target, "UPDATE s SET code = 'x2' WHERE id = 1500").await;
    p.exec(Side::Target, "UPDATE s SET code = 'y6' WHERE id = 2000").await;
    // A case-only change in a case-insensitive column: the collation calls them equal, we do not.
    p.exec(Side::Target, "UPDATE s SET name = 'NAME4000' WHERE id = 4000").await;
    p.exec(Side::Target, "DELETE FROM s WHERE id IN (1000, 5555)").await;
    p.exec(Side::Target, "UPDATE s SET n = NULL WHERE id = 6999").await;
    p.exec(Side::Target, "INSERT INTO s VALUES (1, 'a', 'x1', 1), (3500000, 'b', 'x1', 2)").await;
    p.exec(Side::Source, "DELETE FROM s WHERE id = 3000").await;

    let crc = "SELECT CAST(BIT_XOR(CRC32(CONCAT_WS('#', id, name, code, n))) AS CHAR) FROM s WHERE id IN (1500, 2000)";
    let (src, tgt) = (
        by_id(&p, Side::Source, &format!("SELECT 0, ({crc})")).await,
        by_id(&p, Side::Target, &format!("SELECT 0, ({crc})")).await,
    );
    assert_eq!(src, tgt, "the two changes must cancel in a CRC32/BIT_XOR checksum");

    p.config("", &format!("{FAST}[full]\nchunk_rows = 40\nparallel = 2\nsplit_rows = 1\n[[table]]\nname = \"s\"\n"));
    let mut cmd = p.command(&["full", "--strategy", "summary"]);
    cmd.env("BV_LOG", "binlog_validator::mysql::schema=debug");
    if let Some(d) = forced {
        cmd.env("BV_DIGEST_DIALECT", d);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let logged = format!("summary digest dialect dialect={dialect}");
    assert!(text(&out).contains(&logged), "`{logged}` not logged: {}", text(&out));
    assert_eq!(
        kinds_and_keys(&p.events()),
        expect(&[
            ("neq", json!({"id": 1500})),
            ("neq", json!({"id": 2000})),
            ("neq", json!({"id": 4000})),
            ("neq", json!({"id": 6999})),
            ("target_missing", json!({"id": 1000})),
            ("target_missing", json!({"id": 5555})),
            ("base_missing", json!({"id": 1})),
            ("base_missing", json!({"id": 3000})),
            ("base_missing", json!({"id": 3500000})),
        ]),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("(strategy: summary)"), "{}", text(&out));
    let name = p.events().into_iter().find(|e| e["id"] == 4000).unwrap();
    assert_eq!(name["columns"], json!(["name"]));
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_sql_tells_apart_every_difference_of_every_column_type() {
    let p = Pair::new("dig").await;
    let cols: Vec<String> = TYPES.iter().map(|t| format!("`{}` {}", t.0, t.1)).collect();
    p.both(&format!(
        "CREATE TABLE types (id INT PRIMARY KEY, ci VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci, {})",
        cols.join(", ")
    ))
    .await;
    let names: Vec<&str> = TYPES.iter().map(|t| t.0).collect();
    let values: Vec<&str> = TYPES.iter().map(|t| t.3).collect();
    let insert = |id: usize| {
        format!("INSERT INTO types (id, ci, {}) VALUES ({id}, 'Straße ', {})", names.join(", "), values.join(", "))
    };
    p.both(&insert(1)).await;
    p.both("INSERT INTO types (id) VALUES (2)").await;
    let mut differ = Vec::new();
    for (k, t) in TYPES.iter().enumerate() {
        p.both(&insert(100 + k)).await;
        p.exec(Side::Target, &format!("UPDATE types SET `{}` = {} WHERE id = {}", t.0, t.4, 100 + k)).await;
        differ.push((100 + k) as i64);
    }
    // Differences a collation or a short float text would hide, and NULL against empty.
    let tricky = [
        "ci = 'STRASSE '",
        "ci = 'Straße'",
        "ci = 'straße '",
        "f = 1.0000001",
        "g = 0.30000000000000004",
        "vb = NULL",
        "vb = 0x00",
        "t = ''",
    ];
    for (i, set) in tricky.iter().enumerate() {
        let id = 300 + i;
        p.both(&insert(id)).await;
        p.both(&format!("UPDATE types SET f = 1, g = 0.3, vb = '', t = NULL WHERE id = {id}")).await;
        p.exec(Side::Target, &format!("UPDATE types SET {set} WHERE id = {id}")).await;
        differ.push(id as i64);
    }
    // Both dialects: the common one (what MySQL 8 runs) and MariaDB's own.
    for dialect in [Dialect::Common, Dialect::MariaDb] {
        let (digest, twice) = digest_sql(&p, "types", dialect).await;
        let sql = format!("SELECT id, CAST({digest} AS CHAR) FROM types ORDER BY id");
        let (src, tgt) = (by_id(&p, Side::Source, &sql).await, by_id(&p, Side::Target, &sql).await);
        // Without the user variable (the serialisation built twice), the same values.
        let sql = format!("SELECT id, CAST({twice} AS CHAR) FROM types ORDER BY id");
        assert_eq!(
            by_id(&p, Side::Source, &sql).await,
            src,
            "{dialect:?}: the digest with and without the user variable"
        );
        assert_eq!(src.len(), 2 + TYPES.len() + tricky.len());
        for (id, d) in &src {
            assert!(d.as_deref().is_some_and(|d| d.parse::<u64>().is_ok()), "row {id}: digest {d:?} is not a u64");
            let same = tgt.get(id) == Some(d);
            assert_eq!(same, !differ.contains(id), "{dialect:?}, row {id}: digests {d:?} vs {:?}", tgt.get(id));
        }
        // Summed, as the strategy does: exact and order-independent.
        let sum = format!("SELECT 0, CAST(SUM({digest}) AS CHAR) FROM types WHERE id < 3");
        assert_eq!(by_id(&p, Side::Source, &sum).await, by_id(&p, Side::Target, &sum).await);
    }

    // And the whole strategy on this table finds exactly those rows.
    p.config("", &format!("{FAST}[full]\nchunk_rows = 4\n[[table]]\nname = \"types\"\n"));
    let out = p.run(&["full", "--strategy", "summary"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let expected: Vec<(&str, serde_json::Value)> = differ.iter().map(|id| ("neq", json!({ "id": id }))).collect();
    assert_eq!(kinds_and_keys(&p.events()), expect(&expected), "{}", text(&out));
    assert!(text(&out).contains("(strategy: summary)"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_serialisation_is_unambiguous() {
    // Rows whose values run together in a plain comma-joined text: a separator inside a string, a NULL in
    // one column or the next, NULL against empty, a string that looks like a length field.
    let p = Pair::new("digser").await;
    // A NOT NULL column (no bit in the NULL masks) and a DOUBLE (its 8 bytes in MariaDB's dialect, which
    // may hold the separator: 0x2C in 1.0000000000000098's lowest byte).
    p.both(
        "CREATE TABLE u (id INT PRIMARY KEY, s1 VARCHAR(10), s2 VARCHAR(10), n1 INT, n2 INT, \
         k INT NOT NULL, d DOUBLE)",
    )
    .await;
    let pairs = [
        ("'a,b', 'c', 1, 1, 7, NULL", "'a', 'b,c', 1, 1, 7, NULL"),
        ("'a', 'b', 1, NULL, 7, NULL", "'a', 'b', NULL, 1, 7, NULL"),
        ("'a', '', 1, 1, 7, NULL", "'a', NULL, 1, 1, 7, NULL"),
        ("'1,x', NULL, 1, 1, 7, NULL", "'1', 'x', 1, 1, 7, NULL"),
        ("'', 'x', 1, 1, 7, NULL", "NULL, 'x', 1, 1, 7, NULL"),
        ("'a', 'b', 12, 3, 7, NULL", "'a', 'b', 1, 23, 7, NULL"),
        ("'a', 'b', 1, 1, 7, NULL", "'a', 'b', 1, 1, 7, 0"),
        ("'a', 'b', 1, 1, 7, 1", "'a', 'b', 1, 1, 7, 1.0000000000000002"),
        ("'a', 'b', 1, 1, 7, 1.0000000000000098", "'a', 'b', 1, 1, 7, 1.00000000000001"),
        ("'a', 'b', 1, 1, 12, NULL", "'a', 'b', 1, 1, 1, NULL"),
        ("'a', NULL, 1, 1, 7, 0.5", "'a', '', 1, 1, 7, 0.5"),
    ];
    for (i, (src, tgt)) in pairs.iter().enumerate() {
        p.exec(Side::Source, &format!("INSERT INTO u VALUES ({i}, {src})")).await;
        p.exec(Side::Target, &format!("INSERT INTO u VALUES ({i}, {tgt})")).await;
    }
    for dialect in [Dialect::Common, Dialect::MariaDb] {
        let (digest, _) = digest_sql(&p, "u", dialect).await;
        let sql = format!("SELECT id, CAST({digest} AS CHAR) FROM u ORDER BY id");
        let (src, tgt) = (by_id(&p, Side::Source, &sql).await, by_id(&p, Side::Target, &sql).await);
        assert_eq!(src.len(), pairs.len());
        for (id, d) in &src {
            assert_ne!(
                tgt.get(id),
                Some(d),
                "{dialect:?}, row {id}: {:?} and {:?} digest alike",
                pairs[*id as usize].0,
                pairs[*id as usize].1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn summary_chunks_cut_by_key_value_reach_both_ends_of_unsigned_64_bit_keys() {
    // Dense runs around 2^63 and at the top of BIGINT UNSIGNED with a wide gap between: chunks and
    // buckets cut by key value must neither overflow nor leave a key out.
    let p = Pair::new("sumu64").await;
    p.both("CREATE TABLE big (id BIGINT UNSIGNED PRIMARY KEY, v INT)").await;
    p.both("INSERT INTO big SELECT 9223372036854775807 - 1500 + seq, seq FROM seq_1_to_3000").await;
    p.both("INSERT INTO big SELECT 18446744073709551615 - 1000 + seq, seq FROM seq_1_to_1000").await;
    p.both("INSERT INTO big SELECT seq, seq FROM seq_1_to_1000").await;
    p.exec(Side::Target, "UPDATE big SET v = 0 WHERE id IN (500, 9223372036854775807, 9223372036854775808)").await;
    p.exec(Side::Target, "DELETE FROM big WHERE id IN (18446744073709551615, 18446744073709551000)").await;
    p.exec(Side::Target, "INSERT INTO big VALUES (9223372036854777407, 1), (1001, 1)").await;
    p.config("", &format!("{FAST}[full]\nparallel = 2\nsplit_rows = 1\nchunk_rows = 40\n[[table]]\nname = \"big\"\n"));
    let out = p.command(&["full", "--strategy", "summary"]).env("BV_LOG", "binlog_validator=debug").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        kinds_and_keys(&p.events()),
        expect(&[
            ("neq", json!({"id": 500})),
            ("neq", json!({"id": 9223372036854775807u64})),
            ("neq", json!({"id": 9223372036854775808u64})),
            ("target_missing", json!({"id": 18446744073709551615u64})),
            ("target_missing", json!({"id": 18446744073709551000u64})),
            ("base_missing", json!({"id": 9223372036854777407u64})),
            ("base_missing", json!({"id": 1001})),
        ]),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("summary chunk by key value"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn summary_falls_back_to_rows_where_column_types_differ() {
    let p = Pair::new("sumfb").await;
    p.exec(Side::Source, "CREATE TABLE t (id INT PRIMARY KEY, d DECIMAL(10,2))").await;
    p.exec(Side::Target, "CREATE TABLE t (id INT PRIMARY KEY, d DECIMAL(12,4))").await;
    p.both("INSERT INTO t SELECT seq, seq / 4 FROM seq_1_to_500").await;
    p.exec(Side::Target, "UPDATE t SET d = d + 0.0001 WHERE id = 77").await;
    p.config("", &format!("{FAST}[[table]]\nname = \"t\"\n"));
    let out = p.run(&["full", "--strategy", "summary"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(kinds_and_keys(&p.events()), expect(&[("neq", json!({"id": 77}))]));
    assert!(text(&out).contains("(strategy: rows)"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn skewed_string_and_composite_keys_split_into_balanced_segments() {
    let p = Pair::new("skew").await;
    p.both("CREATE TABLE k (id BIGINT PRIMARY KEY, v INT)").await;
    p.both("INSERT INTO k SELECT seq, seq FROM seq_1_to_3000").await;
    p.both("INSERT INTO k SELECT 9000000000000000000 + seq, seq FROM seq_1_to_5").await;
    p.both("CREATE TABLE c (a VARCHAR(10), b INT, v INT, PRIMARY KEY (a, b))").await;
    // Segments are sized from the server's row estimate: make it exact.
    p.both("ANALYZE TABLE k").await;
    p.both("INSERT INTO c SELECT CONCAT('k', seq % 7), seq, seq FROM seq_1_to_2000").await;
    p.exec(Side::Target, "UPDATE k SET v = 0 WHERE id IN (2, 2999, 9000000000000000003)").await;
    p.exec(Side::Target, "DELETE FROM c WHERE a = 'k3' AND b = 3").await;
    p.exec(Side::Target, "INSERT INTO c VALUES ('k9', 1, 1), ('a', 1, 1)").await;
    for strategy in ["rows", "summary", "auto"] {
        let _ = std::fs::remove_file(p.events_path());
        p.config(
            "",
            &format!(
                "{FAST}[full]\nparallel = 3\nsplit_rows = 1\nchunk_rows = 50\n[[table]]\nname = \"k\"\n[[table]]\nname = \"c\"\n"
            ),
        );
        let out = p
            .command(&["full", "--restart", "--strategy", strategy])
            .env("BV_LOG", "binlog_validator=debug")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{strategy}: {}", text(&out));
        assert_eq!(
            kinds_and_keys(&p.events()),
            expect(&[
                ("neq", json!({"id": 2})),
                ("neq", json!({"id": 2999})),
                ("neq", json!({"id": 9000000000000000003i64})),
                ("target_missing", json!({"a": "k3", "b": 3})),
                ("base_missing", json!({"a": "k9", "b": 1})),
                ("base_missing", json!({"a": "a", "b": 1})),
            ]),
            "{strategy}: {}",
            text(&out)
        );
        // 3 workers x 4 segments each: every segment of the skewed table holds about 3005 / 12 rows.
        let log = text(&out);
        let mut per_segment: BTreeMap<String, u64> = BTreeMap::new();
        for line in log.lines().filter(|l| l.contains("chunk done") && l.contains("table=k ")) {
            let field = |name: &str| line.split(&format!("{name}=")).nth(1).and_then(|r| r.split_whitespace().next());
            if let (Some(seg), Some(rows)) = (field("segment"), field("rows").and_then(|r| r.parse().ok())) {
                per_segment.insert(seg.to_string(), rows);
            }
        }
        assert!(per_segment.len() >= 10, "{strategy}: segments {per_segment:?}");
        if strategy == "summary" {
            // After the first walks, integer-key chunks are cut by key value (no walk of the index).
            assert!(log.lines().any(|l| l.contains("summary chunk by key value") && l.contains("table=k ")), "{log}");
        }
        let most = per_segment.values().max().copied().unwrap_or(0);
        assert!(most <= 3005 / 12 + 60, "{strategy}: an unbalanced segment: {per_segment:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn max_load_holds_the_pass_back_and_rate_paces_it() {
    let p = Pair::new("load").await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.both("INSERT INTO t SELECT seq, seq FROM seq_1_to_1000").await;
    // Threads_running counts the statement that reads it, so a limit of 0 is always exceeded.
    p.config("", &format!("{FAST}[full]\nmax_load = \"Threads_running=0\"\n[[table]]\nname = \"t\"\n"));
    let out = p.run_for(&["full"], Duration::from_secs(4));
    assert_ne!(out.status.code(), Some(0), "a pass over max_load must not finish: {}", text(&out));
    assert!(text(&out).contains("held back: max_load: Threads_running"), "{}", text(&out));
    assert!(!text(&out).contains("rows compared"), "{}", text(&out));

    p.config("", &format!("{FAST}[full]\nmax_load = \"Threads_running=10000\"\nrate = 1000\nchunk_rows = 100\n[[table]]\nname = \"t\"\n"));
    let started = Instant::now();
    let out = p.run(&["full", "--restart", "--strategy", "rows"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // 1000 rows at 1000 rows/s per side: at least about a second (the last chunk is not waited for).
    assert!(started.elapsed() >= Duration::from_millis(850), "rate not applied: {:?}", started.elapsed());
    assert!(text(&out).contains("held back: rate"), "{}", text(&out));

    p.config("", &format!("{FAST}[full]\nmax_load = \"Threads_running\"\n[[table]]\nname = \"t\"\n"));
    assert_clean_failure(&p.run(&["full"]), &["full.max_load", "Threads_running=25"]);
}
