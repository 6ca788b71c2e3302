//! The replica connection: reads events, turns rows events of tracked tables into keys, cuts batches at
//! transaction boundaries, notices stalls (heartbeat plus read timeout), and reconnects with backoff from
//! the last boundary it handed over, so no change is lost or skipped across a dropped connection.

use super::decode::{ddl, maria_gtid, rows_event_keys, Ddl, TableShape};
use super::start::{binary_logs, Start};
use super::Batch;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::position::{BinlogPos, Checkpoint, MariaGtids};
use futures_util::StreamExt;
use mysql_async::binlog::events::{Event, QueryEvent, RotateEvent};
use mysql_async::binlog::EventType;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The server sends a heartbeat after this much silence…
const HEARTBEAT: Duration = Duration::from_secs(1);
/// …so this much silence means the stream is stalled.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A batch is handed over at most this long after its first key.
const FLUSH_AFTER: Duration = Duration::from_millis(5);

const MARIADB_GTID_EVENT: u8 = 162;
const MARIADB_GTID_LIST_EVENT: u8 = 163;

pub struct Reader {
    engine: Engine,
    start: Start,
    tx: mpsc::Sender<Batch>,
    shutdown: watch::Receiver<bool>,
    /// tracked tables by table id: the table's shape, or None for an untracked table
    shapes: HashMap<u64, Option<Arc<TableShape>>>,
    /// whole transactions not yet handed to the checker, and since when
    batch: Batch,
    batch_since: Option<Instant>,
}

enum Ended {
    Shutdown,
}

impl Reader {
    pub fn new(engine: Engine, start: Start, tx: mpsc::Sender<Batch>, shutdown: watch::Receiver<bool>) -> Reader {
        Reader { engine, start, tx, shutdown, shapes: HashMap::new(), batch: Batch::default(), batch_since: None }
    }

    /// Reads until shutdown or a definite error, reconnecting after transient failures.
    pub async fn run(mut self) -> Result<()> {
        let mut backoff = Duration::from_millis(200);
        loop {
            let connected_at = Instant::now();
            let result = self.stream_once().await;
            // Whole transactions read before a failure are checked, not read again.
            self.hand_over().await;
            match result {
                Ok(Ended::Shutdown) => return Ok(()),
                Err(e) if e.is_transient() => {
                    if connected_at.elapsed() > Duration::from_secs(30) {
                        backoff = Duration::from_millis(200);
                    }
                    tracing::warn!(error = %e, resume = %self.start.pos, "binlog stream interrupted; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.changed() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect(&self) -> Result<BinlogStream> {
        let side = self.engine.base.side;
        // The side's URL and TLS settings (ssl_mode, ssl_ca, client certificate), as for its pools.
        let connector = crate::tls::Connector::new(side, self.engine.cfg.endpoint(side))?;
        let mut conn = connector.conn(|o| o.max_allowed_packet(Some(1 << 30))).await?;
        let setup = |e| Error::db(side, "preparing the replica connection", e);
        conn.query_drop(format!("SET @master_heartbeat_period = {}", HEARTBEAT.as_nanos())).await.map_err(setup)?;
        if self.start.mariadb {
            // Capability 4: send MariaDB GTID events, which carry the transaction's GTID.
            conn.query_drop("SET @mariadb_slave_capability = 4").await.map_err(setup)?;
        }
        let mut file = self.start.pos.file.clone();
        let mut pos = self.start.pos.pos;
        if self.start.by_gtid {
            let state = self.start.gtids.as_ref().map(ToString::to_string).unwrap_or_default();
            conn.exec_drop("SET @slave_connect_state = ?", (state,)).await.map_err(setup)?;
            file.clear();
            pos = 4;
        }
        let request =
            BinlogStreamRequest::new(self.engine.cfg.binlog.server_id).with_filename(file.as_bytes()).with_pos(pos);
        conn.get_binlog_stream(request).await.map_err(|e| stream_error(side, &self.start.pos, e))
    }

    async fn stream_once(&mut self) -> Result<Ended> {
        let mut stream = self.connect().await?;
        let known_files = binary_logs(&self.engine.base).await.unwrap_or_default();
        self.shapes.clear();
        let mut txn: HashMap<String, Vec<crate::key::Key>> = HashMap::new();
        let mut txn_gtid: Option<(u32, u32, u64)> = None;
        let mut file = self.start.pos.file.clone();
        let mut gtids = self.start.gtids.clone().unwrap_or_default();
        let tracked: Vec<String> = self.engine.cfg.tables.iter().map(|t| t.name.clone()).collect();
        let database = self.engine.base.database.clone();
        loop {
            let wait = match self.batch_since {
                Some(t) => FLUSH_AFTER.saturating_sub(t.elapsed()),
                None => READ_TIMEOUT,
            };
            let next = tokio::select! {
                _ = self.shutdown.changed() => {
                    self.hand_over().await;
                    return Ok(Ended::Shutdown);
                }
                r = tokio::time::timeout(wait, stream.next()) => r,
            };
            let event = match next {
                Err(_) if self.batch_since.is_some() => {
                    self.hand_over().await;
                    continue;
                }
                Err(_) => {
                    return Err(Error::Stalled(format!(
                        "no event or heartbeat from the base for {}s",
                        READ_TIMEOUT.as_secs()
                    )))
                }
                Ok(None) => return Err(Error::Stalled("the base closed the binlog stream".into())),
                Ok(Some(Err(e))) => return Err(stream_error(self.engine.base.side, &self.start.pos, e)),
                Ok(Some(Ok(ev))) => ev,
            };
            let header = event.header();
            let ts = header.timestamp();
            if ts > 0 && header.event_type_raw() != EventType::HEARTBEAT_EVENT as u8 {
                let lag = crate::event::now_ms() as i64 - i64::from(ts) * 1000;
                self.engine.stats.binlog_lag_ms.store(lag.max(0), Relaxed);
            }
            let mut boundary = false;
            match header.event_type_raw() {
                t if t == EventType::ROTATE_EVENT as u8 => {
                    let re: RotateEvent<'_> = event.read_event().map_err(decode_io)?;
                    file = rotate_name(re.name_raw(), &known_files);
                    if !re.is_fake() {
                        self.shapes.clear();
                    }
                    self.start.pos = BinlogPos::new(file.clone(), re.position());
                }
                t if t == EventType::TABLE_MAP_EVENT as u8 => {
                    let tme: mysql_async::binlog::events::TableMapEvent<'_> = event.read_event().map_err(decode_io)?;
                    let id = tme.table_id();
                    let name = tme.table_name();
                    let shape = if tme.database_name() == database && tracked.iter().any(|t| t == &name) {
                        Some(Arc::new(TableShape::new(&tme).map_err(|e| Error::Binlog(e.to_string()))?))
                    } else {
                        None
                    };
                    self.shapes.insert(id, shape);
                }
                t if is_rows_event(t) => {
                    self.rows(&stream, &event, &mut txn)?;
                }
                t if t == EventType::XID_EVENT as u8 => boundary = true,
                t if t == EventType::QUERY_EVENT as u8 => {
                    let q: QueryEvent<'_> = event.read_event().map_err(decode_io)?;
                    let text = q.query();
                    boundary = ends_transaction(&text);
                    if q.schema() == database || text.to_ascii_lowercase().contains(&database.to_ascii_lowercase()) {
                        if let Some(d) = ddl(&text, &tracked) {
                            self.hand_over().await;
                            self.on_ddl(d).await?;
                        }
                    }
                }
                MARIADB_GTID_EVENT => {
                    if let Some((domain, seq)) = maria_gtid(event.data()) {
                        txn_gtid = Some((domain, header.server_id(), seq));
                    }
                }
                MARIADB_GTID_LIST_EVENT => {
                    if let Some(list) = maria_gtid_list(event.data()) {
                        gtids = list;
                    }
                }
                t if t == EventType::HEARTBEAT_EVENT as u8 => {
                    self.engine.stats.binlog_lag_ms.store(0, Relaxed);
                }
                _ => {}
            }
            if boundary {
                if let Some((d, s, n)) = txn_gtid.take() {
                    gtids.update(d, s, n);
                }
                let skip = self.start.skip_before.is_some_and(|t| ts < t);
                if !skip {
                    for (table, keys) in txn.drain() {
                        self.batch.keys.entry(table).or_default().extend(keys);
                    }
                }
                txn.clear();
                let log_pos = u64::from(header.log_pos());
                if log_pos > 0 {
                    let end = Checkpoint {
                        pos: BinlogPos::new(file.clone(), log_pos),
                        gtid: (!gtids.0.is_empty()).then(|| gtids.to_string()),
                    };
                    self.start.pos = end.pos.clone();
                    self.start.gtids = Some(gtids.clone()).filter(|g| !g.0.is_empty());
                    self.start.by_gtid = false;
                    self.batch.end = Some(end);
                }
                if self.batch_since.is_none() {
                    self.batch_since = Some(Instant::now());
                }
                if self.batch.key_count() >= self.engine.cfg.check.batch_size {
                    self.hand_over().await;
                }
            }
            // Under a sustained stream the read never times out: hand over on age here too.
            if self.batch_since.is_some_and(|t| t.elapsed() >= FLUSH_AFTER) {
                self.hand_over().await;
            }
        }
    }

    /// Adds the keys of a rows event of a tracked table to the open transaction.
    fn rows(
        &self,
        stream: &BinlogStream,
        event: &Event,
        txn: &mut HashMap<String, Vec<crate::key::Key>>,
    ) -> Result<()> {
        let Some(mysql_async::binlog::events::EventData::RowsEvent(data)) = event.read_data().map_err(decode_io)?
        else {
            return Ok(());
        };
        let Some(Some(shape)) = self.shapes.get(&data.table_id()) else { return Ok(()) };
        let Some(plan) = self.engine.plans.get(&shape.table) else { return Ok(()) };
        let Some(tme) = stream.get_tme(data.table_id()) else {
            return Err(Error::Binlog(format!("rows event for `{}` without its table map", shape.table)));
        };
        let decoded = match super::image::keys(&data, shape, &plan.key) {
            Some(fast) => fast,
            None => rows_event_keys(&data, tme, shape, &plan.key),
        };
        let (keys, changes) = decoded.map_err(|e| Error::Binlog(e.to_string()))?;
        self.engine.stats.binlog_changes.fetch_add(changes, Relaxed);
        txn.entry(shape.table.clone()).or_default().extend(keys);
        Ok(())
    }

    async fn on_ddl(&self, d: Ddl) -> Result<()> {
        let e = &self.engine;
        match d {
            Ddl::Altered(t) => {
                tracing::info!(table = %t, "schema change seen in the binlog; re-reading the table's columns");
                if let Err(err) = crate::schema::refresh(&e.cfg, &e.plans, &e.base, &e.other, &t).await {
                    tracing::warn!(table = %t, error = %err, "cannot refresh the table's plan; keeping the old one");
                }
            }
            Ddl::Truncated(t) => {
                tracing::info!(table = %t, "TRUNCATE seen in the binlog; re-checking the table with a full pass");
                let engine = e.clone();
                let shutdown = self.shutdown.clone();
                tokio::spawn(async move {
                    let opts = crate::scan::FullOptions { tables: vec![t.clone()], restart: true, progress_bar: false };
                    if let Err(err) = crate::scan::run_full(&engine, &opts, shutdown).await {
                        tracing::warn!(table = %t, error = %err, "the full pass after TRUNCATE failed");
                    }
                });
            }
        }
        Ok(())
    }

    /// Sends the batch to the checker (waiting while it is busy: backpressure).
    async fn hand_over(&mut self) {
        self.batch_since = None;
        if self.batch.keys.is_empty() && self.batch.end.is_none() {
            return;
        }
        let b = std::mem::take(&mut self.batch);
        // The checker only goes away when binlog mode stops; nothing is left to do then.
        let _ = self.tx.send(b).await;
    }
}

fn is_rows_event(t: u8) -> bool {
    use EventType::*;
    [
        WRITE_ROWS_EVENT,
        UPDATE_ROWS_EVENT,
        DELETE_ROWS_EVENT,
        WRITE_ROWS_EVENT_V1,
        UPDATE_ROWS_EVENT_V1,
        DELETE_ROWS_EVENT_V1,
        PARTIAL_UPDATE_ROWS_EVENT,
    ]
    .iter()
    .any(|e| *e as u8 == t)
}

/// Whether a query event closes a transaction: COMMIT, and any statement that is its own transaction
/// (DDL); not BEGIN, SAVEPOINT, ROLLBACK TO or XA steps inside a transaction.
fn ends_transaction(q: &str) -> bool {
    let q = q.trim_start().to_ascii_uppercase();
    !(q.starts_with("BEGIN")
        || q.starts_with("SAVEPOINT")
        || q.starts_with("ROLLBACK TO")
        || q.starts_with("XA START")
        || q.starts_with("XA END"))
}

/// The file name of a rotate event. The first (fake) rotate of a stream arrives with the 4 checksum bytes
/// still attached to the name; they are cut when the name without them is a file the server lists, or
/// when the name is not text.
pub fn rotate_name(raw: &[u8], known: &[String]) -> String {
    if raw.len() > 4 {
        let cut = &raw[..raw.len() - 4];
        let cut_str = String::from_utf8_lossy(cut);
        if known.iter().any(|k| *k == cut_str) || std::str::from_utf8(raw).is_err() {
            return cut_str.into_owned();
        }
    }
    String::from_utf8_lossy(raw).into_owned()
}

/// MariaDB's GTID list event: the binlog state when the file began.
fn maria_gtid_list(data: &[u8]) -> Option<MariaGtids> {
    let count = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?) & 0x0fff_ffff;
    let mut g = MariaGtids::default();
    for i in 0..count as usize {
        let o = 4 + i * 16;
        let d = u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?);
        let s = u32::from_le_bytes(data.get(o + 4..o + 8)?.try_into().ok()?);
        let n = u64::from_le_bytes(data.get(o + 8..o + 16)?.try_into().ok()?);
        g.update(d, s, n);
    }
    Some(g)
}

fn decode_io(e: std::io::Error) -> Error {
    Error::Binlog(format!("cannot decode a binlog event: {e}"))
}

/// Classifies a stream error: error 1236 (the binlog is not available) is definite, with its own message.
fn stream_error(side: crate::error::Side, pos: &BinlogPos, e: mysql_async::Error) -> Error {
    if let mysql_async::Error::Server(s) = &e {
        if s.code == 1236 {
            let m = s.message.to_ascii_lowercase();
            if m.contains("purged") || m.contains("could not find") || m.contains("not find first log") {
                return Error::BinlogGone { file: pos.file.clone(), detail: s.message.clone() };
            }
            return Error::Binlog(format!("the base refused the binlog stream at {pos}: {}", s.message));
        }
    }
    Error::db(side, "reading the binlog", e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_rotate_checksum_bytes_are_cut() {
        let known = vec!["mysql-bin.000001".to_string()];
        assert_eq!(rotate_name(b"mysql-bin.000001\x01\x02\x03\x04", &known), "mysql-bin.000001");
        assert_eq!(rotate_name(b"mysql-bin.000001\xff\x02\x03\x04", &[]), "mysql-bin.000001");
        assert_eq!(rotate_name(b"mysql-bin.000002", &known), "mysql-bin.000002");
    }

    #[test]
    fn transaction_ends() {
        assert!(ends_transaction("COMMIT"));
        assert!(ends_transaction("ALTER TABLE t ADD c INT"));
        assert!(!ends_transaction("BEGIN"));
        assert!(!ends_transaction("SAVEPOINT a"));
    }

    #[test]
    fn gtid_list() {
        let mut d = 1u32.to_le_bytes().to_vec();
        d.extend(0u32.to_le_bytes());
        d.extend(1u32.to_le_bytes());
        d.extend(77u64.to_le_bytes());
        assert_eq!(maria_gtid_list(&d).unwrap().to_string(), "0-1-77");
    }
}
