//! Decoding of binlogs captured from MySQL 8 and 9 and MariaDB (`../shared/fixtures/binlogs`), servers
//! the test machines cannot run, through the same decoding path the live stream uses ([`TableShape`] and
//! [`rows_event_keys`], [`rows_event_images`]), values normalised as the live stream normalises them.
//! Compressed transactions are expanded as the live stream expands them.

use super::decode::{rows_event_images, rows_event_keys};
use super::shape::{DecodeError, TableShape};
use crate::key::Key;
use mysql_async::binlog::events::{EventData, OptionalMetaExtractor, TableMapEvent, TransactionPayloadEvent};
use mysql_async::binlog::EventType;
use mysql_async::Value;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::BinlogFile;
use std::io::BufReader;
use std::path::PathBuf;

/// One decoded rows event.
#[derive(Debug)]
struct Change {
    table: String,
    /// the keys binlog mode would check, or why it refuses the event
    keys: Result<Vec<Key>, String>,
    /// every row image (before and after), by column name
    rows: Vec<Vec<(String, Option<Value>)>>,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/binlogs").join(name)
}

/// The key columns of a table map: its primary key, or the first column when it declares none.
fn key_columns(tme: &TableMapEvent<'_>, shape: &TableShape) -> Vec<String> {
    let pk: Vec<usize> = OptionalMetaExtractor::new(tme.iter_optional_meta())
        .map(|m| m.iter_primary_key().filter_map(Result::ok).map(|i| i as usize).collect())
        .unwrap_or_default();
    let idx = if pk.is_empty() { vec![0] } else { pk };
    idx.into_iter().filter_map(|i| shape.names.get(i).cloned()).collect()
}

/// Decodes every rows event of a captured file; a decoding error is returned as such.
fn decode(name: &str) -> Result<Vec<Change>, DecodeError> {
    let path = fixture(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; the shared fixtures must sit beside the repository (../shared)", path.display())
    });
    let mut binlog = BinlogFile::new(BinlogVersion::Version4, BufReader::new(file)).expect("binlog header");
    let mut out = Vec::new();
    while let Some(event) = binlog.next() {
        let event = event.expect("event");
        if event.header().event_type_raw() == EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
            let tpe: TransactionPayloadEvent<'_> = event.read_event().expect("payload");
            let mut payload = tpe.decompressed().expect("decompress");
            while let Some(inner) = binlog.reader_mut().read_decompressed(&mut payload).expect("inner event") {
                rows(&binlog, &inner, &mut out)?;
            }
        } else {
            rows(&binlog, &event, &mut out)?;
        }
    }
    Ok(out)
}

fn rows<T: std::io::BufRead>(
    binlog: &BinlogFile<T>,
    event: &mysql_async::binlog::events::Event,
    out: &mut Vec<Change>,
) -> Result<(), DecodeError> {
    let Ok(Some(EventData::RowsEvent(data))) = event.read_data() else { return Ok(()) };
    let tme = binlog.reader().get_tme(data.table_id()).expect("table map before rows");
    let shape = TableShape::new(tme)?;
    let key_cols = key_columns(tme, &shape);
    let keys = match rows_event_keys(&data, tme, &shape, &key_cols) {
        Ok((keys, _)) => Ok(keys),
        Err(e) => Err(e.to_string()),
    };
    // The fast key scanner, where it applies, must agree with the full parser exactly.
    if let Some(fast) = super::image::keys(&data, &shape, &key_cols) {
        let fast = fast.map(|(k, _)| k).map_err(|e| e.to_string());
        assert_eq!(fast, keys, "fast and full key decoding differ for `{}`", shape.table);
    }
    // Every image through binlog mode's path; the image walker, where it applies, must agree with
    // `mysql_common`'s row parser normalised the same way.
    let decoded = rows_event_images(&data, tme, &shape)?;
    let mut full = Vec::new();
    for r in data.rows(tme) {
        let (before, after) = r.map_err(|e| DecodeError::Rows { table: shape.table.clone(), source: e })?;
        full.push((before.map(|row| shape.values(&row)), after.map(|row| shape.values(&row))));
    }
    assert_eq!(decoded, full, "image walker and row parser differ for `{}`", shape.table);
    let mut images = Vec::new();
    for (before, after) in decoded {
        for img in before.into_iter().chain(after) {
            images.push(shape.names.iter().cloned().zip(img).collect());
        }
    }
    out.push(Change { table: shape.table.clone(), keys, rows: images });
    Ok(())
}

/// Every value of a column across a file's row images.
fn column(changes: &[Change], table: &str, col: &str) -> Vec<Option<Value>> {
    changes
        .iter()
        .filter(|c| c.table == table)
        .flat_map(|c| c.rows.iter())
        .filter_map(|r| r.iter().find(|(n, _)| n == col).map(|(_, v)| v.clone()))
        .collect()
}

fn text(v: &Option<Value>) -> Option<String> {
    match v {
        Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn ints(keys: &[Key]) -> Vec<i64> {
    keys.iter()
        .filter_map(|k| match k.0.as_slice() {
            [crate::key::KeyVal::Int(i)] => Some(*i),
            _ => None,
        })
        .collect()
}

const FULL_NEEDED: &str = "binlog_row_metadata=FULL";

#[test]
fn json_documents_and_partial_json_updates() {
    let c = decode("json.binlog.000001").unwrap();
    let docs: Vec<serde_json::Value> =
        column(&c, "t", "@1").iter().filter_map(text).map(|t| serde_json::from_str(&t).unwrap()).collect();
    assert_eq!(docs[0], serde_json::json!({"age": 24, "data": "xxxxxxxxxx", "name": "Joe"}));
    assert!(docs.contains(&serde_json::json!({"age": 41, "data": "zzzzzzzzzz", "name": "Pete"})));
    // PARTIAL_UPDATE_ROWS_EVENT: the after-image carries a JSON diff, not a document; the other columns decode.
    let ages = column(&c, "t", "@3");
    let partial = c.iter().flat_map(|ch| &ch.rows).filter(|r| r[1].1.is_none() && r[3].1.is_some()).count();
    assert_eq!(partial, 6, "six partial JSON updates");
    assert!(ages.contains(&Some(Value::Int(42))));
    // The capture has minimal row metadata: binlog mode refuses it with the fix.
    assert!(c.iter().all(|ch| ch.keys.as_ref().is_err_and(|e| e.contains(FULL_NEEDED))));
}

#[test]
fn opaque_values_inside_json() {
    let c = decode("json-opaque.binlog").unwrap();
    let docs: Vec<String> = column(&c, "test", "a").iter().filter_map(text).collect();
    assert_eq!(
        docs,
        vec![
            r#"{"a":"base64:type15:VQ=="}"#,
            r#"{"b":"2012-03-18"}"#,
            r#"{"c":"2012-03-18 11:30:45.000000"}"#,
            r#"{"c":"87:31:46.654321"}"#,
            r#"{"d":"123.456"}"#,
            r#"{"e":"9.00"}"#,
            r#"{"e":[0,1,true,false]}"#,
            r#"{"e":null}"#,
        ]
    );
}

#[test]
fn vector_columns() {
    let c = decode("vector.binlog").unwrap();
    let foo: Vec<&Change> = c.iter().filter(|ch| ch.table == "foo").collect();
    assert_eq!(ints(foo[0].keys.as_ref().unwrap()), vec![1, 2]);
    for v in column(&c, "bar", "vector_column2").iter().filter_map(|v| match v {
        Some(Value::Bytes(b)) => Some(b.clone()),
        _ => None,
    }) {
        assert_eq!(v.len() % 4, 0, "a VECTOR is packed float32");
        let first = f32::from_le_bytes(v[..4].try_into().unwrap());
        assert!(first.is_finite());
    }
    assert_eq!(text(&column(&c, "bar", "foo")[1]).as_deref(), Some("bar"));
}

#[test]
fn enum_set_bit_and_invisible_columns() {
    let c = decode("mysql-enum-string-set.000001").unwrap();
    // The image holds index 1 and bitmap 0b101; the table map's value lists turn them into what the
    // server returns.
    assert_eq!(text(&column(&c, "t", "f3")[0]).as_deref(), Some("var1"), "ENUM as its member");
    assert_eq!(text(&column(&c, "t", "f4")[0]).as_deref(), Some("one,three"), "SET as its members");
    assert_eq!(text(&column(&c, "t", "f4")[2]).as_deref(), Some("two,four"));
    assert_eq!(text(&column(&c, "t", "f1")[2]).as_deref(), Some("field1"));
    let bit = decode("mysql_type_bit.000001").unwrap();
    assert_eq!(column(&bit, "foo", "a"), vec![Some(Value::Bytes(vec![4]))]);
    let inv = decode("binlog-invisible-columns.000001").unwrap();
    assert_eq!(
        inv[0].rows[0].iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["f1", "f2", "f3", "f4", "f5", "f6"]
    );
    assert_eq!(column(&inv, "t1", "f6")[0], Some(Value::Int(6_000_000_000)));
    assert_eq!(column(&inv, "t1", "f3")[3], Some(Value::Int(-333)));
}

#[test]
fn negative_time() {
    let c = decode("time_issue.000001").unwrap();
    // -507:48:27 is 21 days and 3 hours, negative.
    assert_eq!(column(&c, "t", "@0"), vec![Some(Value::Time(true, 21, 3, 48, 27, 0))]);
}

#[test]
fn compressed_transactions_are_expanded() {
    let c = decode("transaction_compression.000001").unwrap();
    assert_eq!(column(&c, "tb1", "@0"), vec![Some(Value::Int(1))]);
}

#[test]
fn minimal_row_metadata_is_refused_with_the_fix() {
    let c = decode("minimal_row_metadata.000001").unwrap();
    let err = c[0].keys.as_ref().unwrap_err();
    assert!(err.contains(FULL_NEEDED) && err.contains("SET GLOBAL"), "{err}");
    // Values still decode by position.
    assert_eq!(column(&c, "t1", "@4")[0], Some(Value::Int(3_230_202_323)));
}

#[test]
fn mariadb_rows_and_gtid_events() {
    let c = decode("mariadb-bin.000001").unwrap();
    let keys: Vec<i64> = c.iter().flat_map(|ch| ints(ch.keys.as_ref().unwrap())).collect();
    assert_eq!(keys, vec![62, 63]);
    assert!(text(&column(&c, "outbox", "event")[0]).unwrap().starts_with("{\"foo\":1"));
    let file = std::fs::File::open(fixture("mariadb-bin.000001")).unwrap();
    let binlog = BinlogFile::new(BinlogVersion::Version4, BufReader::new(file)).unwrap();
    let gtids: Vec<(u32, u64)> = binlog
        .filter_map(Result::ok)
        .filter(|e| e.header().event_type_raw() == 162)
        .filter_map(|e| super::decode::maria_gtid(e.data()))
        .collect();
    assert!(!gtids.is_empty(), "the capture holds MariaDB GTID events");
    assert!(gtids.windows(2).all(|w| w[0].1 < w[1].1), "sequence numbers increase: {gtids:?}");
}

/// Runs a captured file through the [`Assembler`](super::assemble::Assembler) exactly as the live stream
/// feeds it (a transaction payload first, then its inner events), tracking `tables` of `database` (name,
/// key columns). Returns every boundary.
fn assemble(name: &str, database: &str, tables: &[(&str, &[&str])]) -> Vec<super::assemble::Boundary> {
    use super::assemble::{Assembler, Step, Tracked};
    let tracked = Tracked {
        database: database.into(),
        tables: tables.iter().map(|(t, k)| (t.to_string(), k.iter().map(|c| c.to_string()).collect())).collect(),
        plans: None,
    };
    let mut a = Assembler::new(tracked, name.into(), Default::default(), None);
    let file = std::fs::File::open(fixture(name)).expect("fixture");
    let mut binlog = BinlogFile::new(BinlogVersion::Version4, BufReader::new(file)).expect("binlog header");
    let mut out = Vec::new();
    let mut feed = |binlog: &BinlogFile<_>, a: &mut Assembler, e: &mysql_async::binlog::events::Event| {
        if let Step::Boundary(b) = a.feed(e, |id| binlog.reader().get_tme(id)).expect("event") {
            out.push(*b);
        }
    };
    while let Some(event) = binlog.next() {
        let event = event.expect("event");
        feed(&binlog, &mut a, &event);
        if event.header().event_type_raw() == EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
            let tpe: TransactionPayloadEvent<'_> = event.read_event().expect("payload");
            let mut payload = tpe.decompressed().expect("decompress");
            while let Some(inner) = binlog.reader_mut().read_decompressed(&mut payload).expect("inner event") {
                feed(&binlog, &mut a, &inner);
            }
        }
    }
    out
}

#[test]
fn a_compressed_transaction_ends_at_its_payload() {
    // The payload (log_pos 431) carries the table map, the rows and the XID, each with log_pos 0. (The
    // capture has minimal row metadata, which binlog mode refuses for a tracked table: `tb1` is not
    // tracked here, and the transaction's boundary is what is tested.)
    let b = assemble("transaction_compression.000001", "test", &[("other", &["id"])]);
    // The file's header events move the position too (an idle stream's checkpoint keeps up), then the
    // one transaction.
    let ends: Vec<u64> = b.iter().filter_map(|b| b.end.as_ref().map(|c| c.pos.pos)).collect();
    assert_eq!(ends.len(), b.len(), "every boundary has a position: {b:?}");
    assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");
    let end = b.last().and_then(|b| b.end.as_ref()).expect("the transaction's end has a position");
    assert_eq!(end.pos.pos, 431, "the checkpoint after the payload is the payload's end");
    let gtid = end.gtid.clone().unwrap_or_default();
    assert!(crate::mysql::position::GtidSet::parse(&gtid).is_some(), "the previous-GTIDs set carries on: {gtid}");
}

#[test]
fn mysql_gtid_sets_are_tracked_into_the_checkpoint() {
    // Five transactions of one server: the set grows 1, 1-2, … 1-5 with each boundary.
    let b = assemble("binlog-invisible-columns.000001", "test", &[("t1", &["f3"])]);
    let sets: Vec<String> = b.iter().filter_map(|b| b.end.as_ref().and_then(|c| c.gtid.clone())).collect();
    assert_eq!(sets.last().map(String::as_str), Some("97c7af02-4c50-11ec-acd8-681842034964:1-5"), "{sets:?}");
    assert_eq!(sets.first().map(String::as_str), Some("97c7af02-4c50-11ec-acd8-681842034964:1"));
    let ends: Vec<u64> = b.iter().filter_map(|b| b.end.as_ref().map(|c| c.pos.pos)).collect();
    assert!(ends.windows(2).all(|w| w[0] < w[1]), "positions increase: {ends:?}");
    let bit = assemble("mysql_type_bit.000001", "test", &[("foo", &["a"])]);
    let last = bit.iter().rev().find_map(|b| b.end.as_ref().and_then(|c| c.gtid.clone()));
    assert_eq!(last.as_deref(), Some("fbda2ad0-7c46-11ec-ae30-4ef7efc81a2a:1-3"));
}

#[test]
fn mariadb_gtids_and_rows_through_the_assembler() {
    let b = assemble("mariadb-bin.000001", "toddy_test", &[("outbox", &["id"])]);
    let keys: Vec<i64> = b.iter().flat_map(|b| b.txn.keys.get("outbox").map(|k| ints(k)).unwrap_or_default()).collect();
    assert_eq!(keys, vec![62, 63]);
    let gtid = b.last().and_then(|b| b.end.as_ref()).and_then(|c| c.gtid.clone()).unwrap_or_default();
    assert!(crate::mysql::position::MariaGtids::parse(&gtid).is_some(), "{gtid}");
}
