//! Type conformance: the row images binlog mode decodes from the live MariaDB binlog must equal, value by
//! value, the rows the binary protocol reads back (the base side of the compare core), and the keys it
//! extracts must find their rows. Every MariaDB column type, with its edge values and NULL.

use crate::harness::*;
use binlog_validator::config::{Endpoint, TableConfig};
use binlog_validator::error::Side as DbSide;
use binlog_validator::feed::binlog::decode::{rows_event_images, rows_event_keys};
use binlog_validator::feed::binlog::shape::{Image, TableShape};
use binlog_validator::key::Key;
use binlog_validator::mysql::db::{Db, Row};
use binlog_validator::mysql::schema;
use binlog_validator::verdict::check::row_identity;
use binlog_validator::verdict::compare::digest::{digest, Side as DigestSide};
use binlog_validator::verdict::compare::values_equal;
use futures_util::StreamExt;
use mysql_async::binlog::events::EventData;
use mysql_async::prelude::Queryable;
use mysql_async::BinlogStreamRequest;
use std::collections::BTreeMap;
use std::time::Duration;

/// The table with every type as a compared column: (column, type).
const COLUMNS: &[(&str, &str)] = &[
    ("ti", "TINYINT"),
    ("tiu", "TINYINT UNSIGNED"),
    ("si", "SMALLINT"),
    ("siu", "SMALLINT UNSIGNED"),
    ("mi", "MEDIUMINT"),
    ("miu", "MEDIUMINT UNSIGNED"),
    ("i", "INT"),
    ("iu", "INT UNSIGNED"),
    ("bi", "BIGINT"),
    ("biu", "BIGINT UNSIGNED"),
    ("d52", "DECIMAL(5,2)"),
    ("d189", "DECIMAL(18,9)"),
    ("d6530", "DECIMAL(65,30)"),
    ("d100", "DECIMAL(10,0)"),
    ("f", "FLOAT"),
    ("dbl", "DOUBLE"),
    ("b1", "BIT(1)"),
    ("b12", "BIT(12)"),
    ("b64", "BIT(64)"),
    ("y", "YEAR"),
    ("dt", "DATE"),
    ("dt0", "DATETIME"),
    ("dt1", "DATETIME(1)"),
    ("dt2", "DATETIME(2)"),
    ("dt3", "DATETIME(3)"),
    ("dt4", "DATETIME(4)"),
    ("dt5", "DATETIME(5)"),
    ("dt6", "DATETIME(6)"),
    ("ts0", "TIMESTAMP NULL"),
    ("ts1", "TIMESTAMP(1) NULL"),
    ("ts2", "TIMESTAMP(2) NULL"),
    ("ts3", "TIMESTAMP(3) NULL"),
    ("ts4", "TIMESTAMP(4) NULL"),
    ("ts5", "TIMESTAMP(5) NULL"),
    ("ts6", "TIMESTAMP(6) NULL"),
    ("tm0", "TIME"),
    ("tm1", "TIME(1)"),
    ("tm2", "TIME(2)"),
    ("tm3", "TIME(3)"),
    ("tm4", "TIME(4)"),
    ("tm5", "TIME(5)"),
    ("tm6", "TIME(6)"),
    ("cu", "CHAR(10) CHARACTER SET utf8mb4"),
    ("vu", "VARCHAR(300) CHARACTER SET utf8mb4"),
    ("cub", "CHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
    ("vub", "VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
    ("cl", "CHAR(10) CHARACTER SET latin1"),
    ("vl", "VARCHAR(20) CHARACTER SET latin1"),
    ("clb", "CHAR(10) CHARACTER SET latin1 COLLATE latin1_bin"),
    ("vlb", "VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_bin"),
    ("cg", "CHAR(10) CHARACTER SET gbk"),
    ("vg", "VARCHAR(300) CHARACTER SET gbk"),
    ("cgb", "CHAR(10) CHARACTER SET gbk COLLATE gbk_bin"),
    ("vgb", "VARCHAR(20) CHARACTER SET gbk COLLATE gbk_bin"),
    ("bn", "BINARY(8)"),
    ("vb", "VARBINARY(16)"),
    ("tt", "TINYTEXT"),
    ("tx", "TEXT"),
    ("mt", "MEDIUMTEXT"),
    ("lt", "LONGTEXT"),
    ("txl", "TEXT CHARACTER SET latin1"),
    ("txg", "TEXT CHARACTER SET gbk"),
    ("tb", "TINYBLOB"),
    ("bl", "BLOB"),
    ("mb", "MEDIUMBLOB"),
    ("lb", "LONGBLOB"),
    ("e", "ENUM('a','b','ç','中')"),
    ("el", "ENUM('x','é') CHARACTER SET latin1"),
    ("s", "SET('x','y','z','é','中')"),
    ("sl", "SET('p','ü') CHARACTER SET latin1"),
    ("j", "JSON"),
    // After YEAR and every other numeric column: its signedness bit must still line up.
    ("u_last", "BIGINT UNSIGNED"),
    // Other character sets the server converts for a utf8mb4 connection.
    ("vsj", "VARCHAR(20) CHARACTER SET sjis"),
    ("vb5", "VARCHAR(20) CHARACTER SET big5"),
    ("vkr", "VARCHAR(20) CHARACTER SET euckr"),
    ("vcy", "VARCHAR(20) CHARACTER SET cp1251"),
    ("vl2", "VARCHAR(20) CHARACTER SET latin2"),
    ("vgr", "VARCHAR(20) CHARACTER SET greek"),
    ("vuj", "VARCHAR(20) CHARACTER SET ujis"),
    ("v16", "VARCHAR(20) CHARACTER SET utf16"),
    ("vu2", "VARCHAR(20) CHARACTER SET ucs2"),
    ("v32", "VARCHAR(20) CHARACTER SET utf32"),
    ("v16l", "VARCHAR(20) CHARACTER SET utf16le"),
];

/// Rows of the all-types table, as SQL literals in COLUMNS order: lows, highs, zeros and odd values.
fn rows() -> Vec<Vec<&'static str>> {
    let low = vec![
        "-128",
        "0",
        "-32768",
        "0",
        "-8388608",
        "0",
        "-2147483648",
        "0",
        "-9223372036854775808",
        "0",
        "-999.99",
        "-999999999.999999999",
        "-99999999999999999999999999999999999.999999999999999999999999999999",
        "-9999999999",
        "-3.40282e38",
        "-1.7976931348623157e308",
        "b'0'",
        "b'0'",
        "b'0'",
        "1901",
        "'1000-01-01'",
        "'1000-01-01 00:00:00'",
        "'1000-01-01 00:00:00.1'",
        "'1000-01-01 00:00:00.01'",
        "'1000-01-01 00:00:00.001'",
        "'1000-01-01 00:00:00.0001'",
        "'1000-01-01 00:00:00.00001'",
        "'1000-01-01 00:00:00.000001'",
        "'1970-01-01 00:00:01'",
        "'1970-01-01 00:00:01.1'",
        "'1970-01-01 00:00:01.01'",
        "'1970-01-01 00:00:01.001'",
        "'1970-01-01 00:00:01.0001'",
        "'1970-01-01 00:00:01.00001'",
        "'1970-01-01 00:00:01.000001'",
        "'-838:59:59'",
        "'-838:59:58.9'",
        "'-838:59:58.99'",
        "'-838:59:58.999'",
        "'-838:59:58.9999'",
        "'-838:59:58.99999'",
        "'-838:59:58.999999'",
        "''",
        "''",
        "'a  '",
        "' a'",
        "'café'",
        "'€'",
        "'ÿ'",
        "'Ab '",
        "'中文'",
        "'汉字 '",
        "'中'",
        "'a'",
        "x'00'",
        "x'00'",
        "''",
        "''",
        "''",
        "''",
        "'é'",
        "'中'",
        "''",
        "x'00'",
        "x'0000'",
        "x'00ff00'",
        "'a'",
        "'x'",
        "''",
        "''",
        "'null'",
        "18446744073709551615",
        "'テスト'",
        "'中文'",
        "'한국어'",
        "'Привет'",
        "'łść'",
        "'αβγ'",
        "'日本'",
        "'ü😀'",
        "'ü'",
        "'😀'",
        "'ü😀'",
    ];
    let high = vec![
        "127",
        "255",
        "32767",
        "65535",
        "8388607",
        "16777215",
        "2147483647",
        "4294967295",
        "9223372036854775807",
        "18446744073709551615",
        "999.99",
        "999999999.999999999",
        "99999999999999999999999999999999999.999999999999999999999999999999",
        "9999999999",
        "3.40282e38",
        "1.7976931348623157e308",
        "b'1'",
        "b'111111111111'",
        "b'1111111111111111111111111111111111111111111111111111111111111111'",
        "2155",
        "'9999-12-31'",
        "'9999-12-31 23:59:59'",
        "'9999-12-31 23:59:59.9'",
        "'9999-12-31 23:59:59.99'",
        "'9999-12-31 23:59:59.999'",
        "'9999-12-31 23:59:59.9999'",
        "'9999-12-31 23:59:59.99999'",
        "'9999-12-31 23:59:59.999999'",
        "'2038-01-19 03:14:07'",
        "'2038-01-19 03:14:07.9'",
        "'2038-01-19 03:14:07.99'",
        "'2038-01-19 03:14:07.999'",
        "'2038-01-19 03:14:07.9999'",
        "'2038-01-19 03:14:07.99999'",
        "'2038-01-19 03:14:07.999999'",
        "'838:59:59'",
        "'838:59:58.9'",
        "'838:59:58.99'",
        "'838:59:58.999'",
        "'838:59:58.9999'",
        "'838:59:58.99999'",
        "'838:59:58.999999'",
        "'😀中文ü'",
        "REPEAT('键', 300)",
        "'Zz'",
        "'😀 '",
        "'ÿÿÿÿÿÿÿÿÿÿ'",
        "'Œœ€‚ƒ'",
        "'‰'",
        "'Ÿ'",
        "'汉字汉字汉字'",
        "REPEAT('汉', 300)",
        "'€'",
        "'ab汉'",
        "x'ffffffffffffffff'",
        "x'ffffffffffffffffffffffffffffffff'",
        "REPEAT('t', 255)",
        "REPEAT('文', 20000)",
        "REPEAT('m', 70000)",
        "REPEAT('l', 100000)",
        "REPEAT('ÿ', 1000)",
        "REPEAT('中', 1000)",
        "REPEAT(x'ff', 255)",
        "REPEAT(x'00', 65535)",
        "REPEAT(x'01', 70000)",
        "REPEAT(x'02', 100000)",
        "'中'",
        "'é'",
        "'x,y,z,é,中'",
        "'p,ü'",
        r#"'{"a": [1, 2.5, "x", null, true], "b": {"c": -1e300}, "u": "ü中"}'"#,
        "9223372036854775808",
        "'ｱｲｳ'",
        "'繁體'",
        "'가'",
        "'ёЁ'",
        "'Ž'",
        "'Ω'",
        "'ー'",
        "'中'",
        "'中'",
        "'ü'",
        "'x'",
    ];
    let zero = vec![
        "0",
        "0",
        "0",
        "0",
        "-1",
        "1",
        "-1",
        "1",
        "-1",
        "1",
        "0",
        "-0.000000001",
        "0.000000000000000000000000000001",
        "0",
        "0.1",
        "0.1",
        "b'1'",
        "b'101'",
        "b'1000000000000000000000000000000000000000000000000000000000000000'",
        "0000",
        "'0000-00-00'",
        "'0000-00-00 00:00:00'",
        "'0000-00-00 00:00:00.0'",
        "'2024-02-29 12:00:00.5'",
        "'2024-02-29 12:00:00.5'",
        "'2024-02-29 12:00:00.5'",
        "'2024-02-29 12:00:00.5'",
        "'2024-02-29 12:00:00.000500'",
        "'0000-00-00 00:00:00'",
        "'2024-02-29 12:00:00.5'",
        "'2024-02-29 12:00:00.5'",
        "'2024-02-29 12:00:00.5'",
        "'2024-02-29 12:00:00.5'",
        "'2024-02-29 12:00:00.5'",
        "'2024-02-29 12:00:00.000500'",
        "'00:00:00'",
        "'-00:00:00.5'",
        "'-00:00:00.05'",
        "'25:00:00.001'",
        "'-25:00:00.0001'",
        "'100:00:00.00001'",
        "'-00:00:00.000001'",
        "'ü'",
        "'a\\0b'",
        "'A'",
        "'a'",
        "' '",
        "'x '",
        "'ÀÁ'",
        "'Ü'",
        "'ー'",
        "'¥'",
        "'·'",
        "'a '",
        "x'6100'",
        "x'610000'",
        "'\\0'",
        "'文 '",
        "' '",
        "'l\\nl'",
        "'café'",
        "'汉字'",
        "x'00'",
        "x'ff'",
        "x'00'",
        "x'00'",
        "0",
        "2",
        "'y,x'",
        "'ü'",
        "'[1, {\"k\": \"v\"}, 3.0]'",
        "0",
        "''",
        "'a'",
        "'b'",
        "'c'",
        "'d'",
        "'e'",
        "'f'",
        "'g'",
        "''",
        "'h'",
        "'i'",
    ];
    vec![low, high, zero]
}

/// Tables whose one column is the primary key: (name, type, values).
fn key_tables() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        ("k_ti", "TINYINT", vec!["-128", "0", "127"]),
        ("k_tiu", "TINYINT UNSIGNED", vec!["0", "255"]),
        ("k_si", "SMALLINT", vec!["-32768", "32767"]),
        ("k_siu", "SMALLINT UNSIGNED", vec!["65535"]),
        ("k_mi", "MEDIUMINT", vec!["-8388608", "-1", "8388607"]),
        ("k_miu", "MEDIUMINT UNSIGNED", vec!["0", "16777215"]),
        ("k_i", "INT", vec!["-2147483648", "2147483647"]),
        ("k_iu", "INT UNSIGNED", vec!["4294967295"]),
        ("k_bi", "BIGINT", vec!["-9223372036854775808", "9223372036854775807"]),
        ("k_biu", "BIGINT UNSIGNED", vec!["0", "18446744073709551615"]),
        ("k_d52", "DECIMAL(5,2)", vec!["-999.99", "-0.01", "0", "0.5", "999.99"]),
        (
            "k_d6530",
            "DECIMAL(65,30)",
            vec!["-1.5", "99999999999999999999999999999999999.999999999999999999999999999999"],
        ),
        ("k_d100", "DECIMAL(10,0)", vec!["-9999999999", "0", "42"]),
        ("k_f", "FLOAT", vec!["-1.5", "0", "1.5", "1e30"]),
        ("k_dbl", "DOUBLE", vec!["-1.7976931348623157e308", "0.1", "1.7976931348623157e308"]),
        ("k_bit", "BIT(12)", vec!["b'0'", "b'101'", "b'111111111111'"]),
        ("k_y", "YEAR", vec!["0000", "1901", "2024", "2155"]),
        ("k_dt", "DATE", vec!["'0000-00-00'", "'1000-01-01'", "'9999-12-31'"]),
        ("k_dt0", "DATETIME", vec!["'1000-01-01 00:00:00'", "'9999-12-31 23:59:59'"]),
        ("k_dt3", "DATETIME(3)", vec!["'2024-02-29 12:00:00.5'", "'9999-12-31 23:59:59.999'"]),
        ("k_dt6", "DATETIME(6)", vec!["'1000-01-01 00:00:00.000001'", "'9999-12-31 23:59:59.999999'"]),
        ("k_ts0", "TIMESTAMP", vec!["'0000-00-00 00:00:00'", "'1970-01-01 00:00:01'", "'2038-01-19 03:14:07'"]),
        ("k_ts3", "TIMESTAMP(3)", vec!["'2024-02-29 12:00:00.5'", "'2038-01-19 03:14:07.999'"]),
        ("k_ts6", "TIMESTAMP(6)", vec!["'1970-01-01 00:00:01.000001'", "'2038-01-19 03:14:07.999999'"]),
        ("k_tm0", "TIME", vec!["'-838:59:59'", "'00:00:00'", "'838:59:59'"]),
        ("k_tm3", "TIME(3)", vec!["'-25:00:00.001'", "'-00:00:00.5'", "'100:00:00.001'"]),
        ("k_tm6", "TIME(6)", vec!["'-838:59:58.999999'", "'-00:00:00.000001'", "'838:59:58.999999'"]),
        ("k_cu", "CHAR(10) CHARACTER SET utf8mb4", vec!["''", "'a'", "'b  '", "'😀中文ü'"]),
        ("k_vu", "VARCHAR(40) CHARACTER SET utf8mb4", vec!["''", "'a'", "'键'", "'😀 x'"]),
        ("k_cub", "CHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", vec!["'a'", "'A'", "'ü'"]),
        ("k_vub", "VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", vec!["'a'", "'A'", "'😀'"]),
        ("k_cl", "CHAR(10) CHARACTER SET latin1", vec!["'café'", "'€'", "'ÿ'", "'Œ'"]),
        ("k_vl", "VARCHAR(20) CHARACTER SET latin1", vec!["'café'", "'‰'", "'x'"]),
        ("k_clb", "CHAR(10) CHARACTER SET latin1 COLLATE latin1_bin", vec!["'é'", "'E'"]),
        ("k_cg", "CHAR(10) CHARACTER SET gbk", vec!["'中文'", "'汉'", "'a'"]),
        ("k_vg", "VARCHAR(20) CHARACTER SET gbk", vec!["'中文'", "'汉字 '", "'¥'"]),
        ("k_vgb", "VARCHAR(20) CHARACTER SET gbk COLLATE gbk_bin", vec!["'中'", "'ー'"]),
        ("k_bn", "BINARY(8)", vec!["x'00'", "x'61'", "x'6162000000000001'", "x'ffffffffffffffff'"]),
        ("k_vb", "VARBINARY(16)", vec!["x''", "x'00'", "x'0000'", "x'6100'"]),
        ("k_e", "ENUM('a','b','ç','中')", vec!["''", "'a'", "'ç'", "'中'"]),
        ("k_el", "ENUM('x','é') CHARACTER SET latin1", vec!["'x'", "'é'"]),
        ("k_s", "SET('x','y','z','é','中')", vec!["''", "'x'", "'x,z'", "'x,y,z,é,中'"]),
        ("k_sl", "SET('p','ü') CHARACTER SET latin1", vec!["'p'", "'p,ü'"]),
    ]
}

/// The decoded images of one table, in binlog order, and the keys binlog mode extracted from them.
#[derive(Default)]
struct Decoded {
    images: Vec<Image>,
    keys: Vec<Key>,
    names: Vec<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn binlog_row_images_equal_the_rows_the_binary_protocol_reads() {
    let p = Pair::new("conform").await;
    let defs: Vec<String> = COLUMNS.iter().map(|(c, t)| format!("`{c}` {t}")).collect();
    p.exec(Side::Source, &format!("CREATE TABLE t (id INT PRIMARY KEY, m INT, {})", defs.join(", "))).await;
    for (name, ty, _) in key_tables() {
        p.exec(Side::Source, &format!("CREATE TABLE {name} (k {ty} NOT NULL PRIMARY KEY, v INT)")).await;
    }
    p.exec(Side::Source, "CREATE TABLE zz_end (id INT PRIMARY KEY)").await;

    let mut conn = mysql_async::Conn::from_url(p.url(Side::Source)).await.unwrap();
    let status: mysql_async::Row = conn.query_first("SHOW MASTER STATUS").await.unwrap().expect("binary logging is on");
    let (file, pos): (String, u64) = (status.get(0).unwrap(), status.get(1).unwrap());
    // Zero dates, ENUM index 0 and TIMESTAMPs in UTC: the edges the strict default mode refuses.
    conn.query_drop("SET sql_mode = '', time_zone = '+00:00', NAMES utf8mb4").await.unwrap();
    let cols: Vec<&str> = COLUMNS.iter().map(|(c, _)| *c).collect();
    for (n, row) in rows().iter().enumerate() {
        assert_eq!(row.len(), COLUMNS.len(), "row {n} has a value per column");
        let sql = format!("INSERT INTO t (id, {}) VALUES ({n}, {})", cols.join(", "), row.join(", "));
        conn.query_drop(&sql).await.unwrap_or_else(|e| panic!("row {n}: {e}"));
    }
    conn.query_drop("INSERT INTO t (id) VALUES (100)").await.unwrap(); // NULL everywhere
    conn.query_drop("UPDATE t SET m = 1").await.unwrap(); // before and after images of every row
    for (name, _, values) in key_tables() {
        let rows: Vec<String> = values.iter().map(|v| format!("({v}, NULL)")).collect();
        let sql = format!("INSERT INTO {name} VALUES {}", rows.join(", "));
        conn.query_drop(&sql).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        conn.query_drop(format!("UPDATE {name} SET v = 1")).await.unwrap();
    }
    conn.query_drop("INSERT INTO zz_end VALUES (1)").await.unwrap();
    let _ = conn.disconnect().await;

    let decoded = read_binlog(&p, &file, pos).await;

    let ep = Endpoint { url: p.url(Side::Source), ..Default::default() };
    let db = Db::connect(DbSide::Source, &ep, 2).await.unwrap();
    let mut failures = Vec::new();
    let mut tables: Vec<(&str, usize)> = vec![("t", 12)];
    tables.extend(key_tables().iter().map(|(name, _, v)| (*name, v.len() * 3)));
    for (table, images) in tables {
        let d = decoded.get(table).unwrap_or_else(|| panic!("no rows event of `{table}` in the binlog"));
        assert_eq!(d.images.len(), images, "`{table}`: one image per insert, two per update");
        check_table(&db, table, d, &mut failures).await;
    }
    db.disconnect().await;
    assert!(failures.is_empty(), "{} values differ:\n{}", failures.len(), failures.join("\n"));
}

/// Reads the binlog from `file:pos` up to the write to `zz_end`, decoding the rows events of the
/// test's database through binlog mode's own path.
async fn read_binlog(p: &Pair, file: &str, pos: u64) -> BTreeMap<String, Decoded> {
    let conn = mysql_async::Conn::from_url(p.url(Side::Source)).await.unwrap();
    let request = BinlogStreamRequest::new(crate::binlog::server_id()).with_filename(file.as_bytes()).with_pos(pos);
    let mut stream = conn.get_binlog_stream(request).await.unwrap();
    let mut out: BTreeMap<String, Decoded> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the write to zz_end reaches the binlog within 60s")
            .expect("the stream stays open")
            .expect("an event");
        let Ok(Some(EventData::RowsEvent(data))) = event.read_data() else { continue };
        let tme = stream.get_tme(data.table_id()).expect("a table map before its rows");
        if tme.database_name() != p.db {
            continue;
        }
        let shape = TableShape::new(tme).unwrap();
        if shape.table == "zz_end" {
            break;
        }
        let key_cols = if shape.table == "t" { vec!["id".to_string()] } else { vec!["k".to_string()] };
        // As the assembler does: the image walker, or the full parser for events it cannot walk. (The
        // full parser cannot be run on every event here: `mysql_common` overflows on a negative TIME(1)
        // or TIME(2) with a fraction, which the walker decodes itself.)
        let (keys, _) = match binlog_validator::feed::binlog::image::keys(&data, &shape, &key_cols) {
            Some(fast) => fast.unwrap(),
            None => rows_event_keys(&data, tme, &shape, &key_cols).unwrap(),
        };
        let d = out.entry(shape.table.clone()).or_default();
        d.names = shape.names.clone();
        d.keys.extend(keys);
        for (before, after) in rows_event_images(&data, tme, &shape).unwrap() {
            d.images.extend(before.into_iter().chain(after));
        }
    }
    out
}

/// Compares every decoded image of `table` with the row read back by its key.
async fn check_table(db: &Db, table: &str, d: &Decoded, failures: &mut Vec<String>) {
    let cfg = TableConfig {
        name: table.into(),
        key: None,
        utime: None,
        ignore: vec![],
        target_name: None,
        columns: Default::default(),
    };
    let s = schema::load(db, table).await.unwrap().expect("the table exists");
    let (plan, _) = schema::plan(&cfg, DbSide::Source, &s, &s).unwrap();
    let types: BTreeMap<String, String> = COLUMNS.iter().map(|(c, t)| (c.to_string(), t.to_string())).collect();
    let type_of = |c: &str| -> String {
        if table == "t" {
            types.get(c).cloned().unwrap_or_else(|| "INT".into())
        } else {
            key_tables().into_iter().find(|(n, _, _)| *n == table).map(|(_, t, _)| t.to_string()).unwrap_or_default()
        }
    };
    // As a key: every key binlog mode extracts finds its row (by SQL and by canonical identity).
    let read = match db.read_keys(&plan, &d.keys).await {
        Ok(rows) => rows,
        Err(e) => {
            failures.push(format!(
                "`{table}`.`{}` ({}) as a key: the lookup fails: {e}",
                plan.key[0],
                type_of(&plan.key[0])
            ));
            Vec::new()
        }
    };
    let by_key: BTreeMap<Vec<u8>, Row> = read.into_iter().map(|r| (row_identity(&plan, &r), r)).collect();
    for k in &d.keys {
        if !by_key.contains_key(&k.canonical()) {
            let col = &plan.key[0];
            failures.push(format!("`{table}`.`{col}` ({}) as a key: {k:?} finds no row", type_of(col)));
        }
    }
    // As compared columns: each value of each image equals the value read back.
    let all: Vec<Row> = db.read_range(&plan, None, None, 1000).await.unwrap();
    let names: Vec<&String> = plan.key.iter().chain(&plan.compared).collect();
    let key_at = d.names.iter().position(|n| *n == plan.key[0]).unwrap();
    for img in &d.images {
        let Some(Some(kv)) = img.get(key_at) else {
            failures.push(format!("`{table}`: an image without its key"));
            continue;
        };
        // The row whose identity (as the checker matches rows to keys) is the image's key.
        let identity = Key::from_values(std::slice::from_ref(kv)).canonical();
        let Some(row) = all.iter().find(|r| row_identity(&plan, r) == identity) else {
            failures.push(format!("`{table}`: no row read back for the image with key {}", short(kv)));
            continue;
        };
        for (j, name) in names.iter().enumerate() {
            // The marker column differs between before- and after-images by design.
            if (table == "t" && *name == "m") || (table != "t" && *name == "v") {
                continue;
            }
            let kind = s.columns.iter().find(|c| c.name == **name).unwrap().kind;
            let i = d.names.iter().position(|n| n == *name).unwrap();
            // Equal for the compare core, and alike for the digest settle keeps of older versions.
            let digest = |side, v: &mysql_async::Value| digest(&[(kind, kind)], side, std::slice::from_ref(v));
            let (ok, digests) = match &img[i] {
                Some(v) => (
                    values_equal(v, kind, &row[j], kind),
                    digest(DigestSide::Base, v) == digest(DigestSide::Other, &row[j]),
                ),
                None => (false, false),
            };
            if !ok || !digests {
                failures.push(format!(
                    "`{table}`.`{name}` ({}){}: binlog {} vs protocol {}",
                    if ok { " digest" } else { "" },
                    type_of(name),
                    img[i].as_ref().map(short).unwrap_or_else(|| "absent".into()),
                    short(&row[j])
                ));
            }
        }
    }
}

/// A value for a failure message, long strings cut.
fn short(v: &mysql_async::Value) -> String {
    let s = format!("{v:?}");
    if s.len() > 120 {
        format!("{}… ({} chars)", s.chars().take(100).collect::<String>(), s.len())
    } else {
        s
    }
}
