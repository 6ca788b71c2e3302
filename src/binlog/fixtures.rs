//! Decoding of binlogs captured from MySQL 8 and 9 and MariaDB (`../shared/fixtures/binlogs`), servers
//! the test machines cannot run, through the same decoding path the live stream uses ([`TableShape`] and
//! [`rows_event_keys`]). Compressed transactions are expanded as the live stream expands them.

use super::decode::{rows_event_keys, DecodeError, TableShape};
use crate::key::Key;
use mysql_async::binlog::events::{EventData, OptionalMetaExtractor, TableMapEvent, TransactionPayloadEvent};
use mysql_async::binlog::EventType;
use mysql_async::Value;
use mysql_common::binlog::{BinlogFile, BinlogVersion};
use std::io::BufReader;
use std::path::PathBuf;

/// One decoded rows event.
#[derive(Debug)]
struct Change {
    table: String,
    keys: Vec<Key>,
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

fn rows<T>(binlog: &BinlogFile<T>, event: &mysql_async::binlog::events::Event, out: &mut Vec<Change>) -> Result<(), DecodeError> {
    let Ok(Some(EventData::RowsEvent(data))) = event.read_data() else { return Ok(()) };
    let tme = binlog.reader().get_tme(data.table_id()).expect("table map before rows");
    let shape = TableShape::new(tme)?;
    let key_cols = key_columns(tme, &shape);
    let (keys, _) = rows_event_keys(&data, tme, &shape, &key_cols)?;
    let mut images = Vec::new();
    for r in data.rows(tme) {
        let (before, after) = r.map_err(|e| DecodeError::Rows { table: shape.table.clone(), source: e })?;
        for row in before.iter().chain(after.iter()) {
            images.push(shape.names.iter().cloned().zip(shape.values(row)).collect());
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

fn dump(changes: &[Change]) -> String {
    changes.iter().map(|c| format!("{} keys={:?} rows={:?}", c.table, c.keys, c.rows)).collect::<Vec<_>>().join("\n")
}

#[test]
fn dump_all_fixtures_for_inspection() {
    for f in [
        "json.binlog.000001",
        "json-opaque.binlog",
        "vector.binlog",
        "mysql-enum-string-set.000001",
        "mysql_type_bit.000001",
        "binlog-invisible-columns.000001",
        "time_issue.000001",
        "transaction_compression.000001",
        "mariadb-bin.000001",
        "minimal_row_metadata.000001",
    ] {
        match decode(f) {
            Ok(c) => eprintln!("== {f}\n{}", dump(&c)),
            Err(e) => eprintln!("== {f}: ERROR {e}"),
        }
    }
    let _ = column;
}
