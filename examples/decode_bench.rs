//! Binlog decoding throughput: streams a binlog range from a server (non-blocking: it ends at the end of
//! the binlog) and decodes every rows event of one table. Prints rows, seconds, rows/s.
//!
//!   cargo run --release --example decode_bench -- URL FILE POS TABLE [keys|values|images|versions]
//!
//! `keys` (default) is the key of every row change, from the row-image scanner (falling back to the full
//! parser). `values` also decodes every value of every row image with `mysql_common`'s row parser, as a
//! general-purpose binlog reader does. `images` decodes every value of every image normalised to the
//! binary protocol's form (`rows_event_images`). `versions` is binlog mode's own path: every value of
//! every image normalised, each before-image digested and each key's latest image and versions kept
//! (`history::record`, every column but the first compared, batches of 1000 keys).
//! (scripts/bench-binlog.sh runs it beside python-mysql-replication on the same binlog.)

use binlog_validator::feed::binlog::decode::{rows_event_images, rows_event_keys};
use binlog_validator::feed::binlog::history::{self, Compared, Histories};
use binlog_validator::feed::binlog::shape::TableShape;
use binlog_validator::mysql::kind::Kind;
use futures_util::StreamExt;
use mysql_async::binlog::events::EventData;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Opts};
use std::collections::HashMap;
use std::time::Instant;

// The allocator of binlog-validator itself, so each path is measured as the binary would run it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (url, file, pos, table, mode) = match args.as_slice() {
        [_, url, file, pos, table] => (url, file, pos, table, "keys"),
        [_, url, file, pos, table, mode] if ["keys", "values", "images", "versions"].contains(&mode.as_str()) => {
            (url, file, pos, table, mode.as_str())
        }
        _ => {
            eprintln!("usage: decode_bench URL FILE POS TABLE [keys|values|images|versions]");
            std::process::exit(2);
        }
    };
    let opts = Opts::from_url(url)?;
    // Only the table of the URL's database: other databases may have tables of the same name.
    let database = opts.db_name().unwrap_or_default().to_string();
    let mut conn = Conn::new(opts).await?;
    // The compared columns and their kinds, as a plan has them (the same types on both sides).
    let types: Vec<(String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (&database, table),
        )
        .await?;
    let compared: Vec<String> = types.iter().skip(1).map(|(c, _)| c.clone()).collect();
    let kinds: Vec<(Kind, Kind)> =
        types.iter().skip(1).map(|(_, t)| (Kind::from_data_type(t), Kind::from_data_type(t))).collect();
    let (mut hist, mut keys): (Histories, Vec<_>) = Default::default();
    // As binlog mode's reader: MariaDB sends its own GTID events instead of failing on those it cannot
    // turn into old-style events (a user variable, harmless on MySQL).
    conn.query_drop("SET @mariadb_slave_capability = 4").await?;
    let request = BinlogStreamRequest::new(9_999)
        .with_filename(file.as_bytes())
        .with_pos(pos.parse::<u64>()?)
        .with_non_blocking();
    let mut stream = conn.get_binlog_stream(request).await?;
    let mut shapes: HashMap<u64, (TableShape, Vec<String>)> = HashMap::new();
    let (mut rows, mut values) = (0u64, 0u64);
    let started = Instant::now();
    while let Some(event) = stream.next().await {
        let event = event?;
        let Some(EventData::RowsEvent(data)) = event.read_data()? else { continue };
        let Some(tme) = stream.get_tme(data.table_id()) else { continue };
        if tme.table_name() != table.as_str() || tme.database_name() != database {
            continue;
        }
        let (shape, key) = match shapes.entry(data.table_id()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let shape = TableShape::new(tme)?;
                let key = vec![shape.names[0].clone()];
                v.insert((shape, key))
            }
        };
        if mode == "versions" {
            let cols = Compared { columns: &compared, kinds: &kinds };
            match history::record(&data, shape, cols, key, &mut hist, &mut keys)? {
                Ok(n) => rows += n,
                Err(why) => return Err(format!("the images cannot serve: {}", why.as_str()).into()),
            }
            history::stamp(&mut hist, 1);
            if keys.len() >= 1000 {
                values += hist.values().map(|t| t.keys.len() as u64).sum::<u64>();
                hist.clear();
                keys.clear();
            }
            continue;
        }
        if mode == "images" {
            // The images carry the keys: one pass over the event, as binlog mode will make.
            for (before, after) in rows_event_images(&data, tme, shape)? {
                rows += 1;
                for img in before.iter().chain(after.iter()) {
                    values += img.iter().filter(|v| v.is_some()).count() as u64;
                }
            }
            continue;
        }
        let (_, n) = match binlog_validator::feed::binlog::image::keys(&data, shape, key) {
            Some(fast) => fast?,
            None => rows_event_keys(&data, tme, shape, key)?,
        };
        rows += n;
        if mode != "values" {
            continue;
        }
        for r in data.rows(tme) {
            let (before, after) = r?;
            for row in before.iter().chain(after.iter()) {
                values += shape.values(row).iter().filter(|v| v.is_some()).count() as u64;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{rows} {secs:.3} {:.0} {values}", rows as f64 / secs);
    Ok(())
}
