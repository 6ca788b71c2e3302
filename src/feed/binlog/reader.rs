//! The replica connection: reads events, turns rows events of tracked tables into keys, cuts batches at
//! transaction boundaries, notices stalls (heartbeat plus read timeout), and reconnects with backoff from
//! the last boundary it handed over, so no change is lost or skipped across a dropped connection.

use super::assemble::{Assembler, Boundary, Step, Tracked};
use super::batch::Batch;
use super::decode::Ddl;
use super::start::{binary_logs, Start};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::mysql::position::{BinlogPos, GtidSet};
use futures_util::StreamExt;
use mysql_async::binlog::EventType;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The server sends a heartbeat after this much silence…
const HEARTBEAT: Duration = Duration::from_secs(1);
/// …so this much silence means the stream is stalled.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A batch is handed over at most this long after its first key; when first checks wait part of the
/// settle window ([`super::hold`]), at most half of that wait instead: those batches are merged there
/// anyway, and fewer hand-overs wake fewer tasks.
const FLUSH_AFTER: Duration = Duration::from_millis(5);

pub struct Reader {
    engine: Engine,
    start: Start,
    tx: mpsc::Sender<Batch>,
    shutdown: watch::Receiver<bool>,
    assembler: Assembler,
    /// whole transactions not yet handed to the checker, and since when
    batch: Batch,
    batch_since: Option<Instant>,
    flush_after: Duration,
    /// How long a caught-up reader sleeps between reads: an eighth of the first check's wait. A version's
    /// time is when it was read, so this (not the hand-over age) bounds how much later a report can come.
    pace: Duration,
    /// The runtime that owns the engine's connection pools: their queries run there, not on the reader's
    /// own thread (a pooled connection opened here would be bound to this thread's runtime).
    main: tokio::runtime::Handle,
}

enum Ended {
    Shutdown,
}

impl Reader {
    /// `held` are the prepared XA transactions an earlier run recorded.
    pub fn new(
        engine: Engine,
        start: Start,
        held: std::collections::BTreeMap<String, super::assemble::Txn>,
        tx: mpsc::Sender<Batch>,
        shutdown: watch::Receiver<bool>,
    ) -> Reader {
        let tracked = Tracked {
            database: engine.base.database.clone(),
            // By the base side's names: the binlog is the base's.
            tables: engine.plans.all().iter().map(|p| (p.name.clone(), p.key.clone())).collect(),
            // The row images stand for the base side: each key's versions come with it.
            plans: Some(engine.plans.clone()),
        };
        let mut assembler = Assembler::new(tracked, start.pos.file.clone(), held, start.skip_before);
        // The GTID state at the start; from then on the assembler keeps it, across reconnects too (a
        // reconnect resumes at the last boundary taken, whose state the assembler holds).
        if let Some(g) = &start.gtids {
            assembler.maria = g.clone();
        }
        if let Some(g) = &start.mysql_gtids {
            assembler.mysql = g.clone();
        }
        let delay = super::hold::first_check_delay(engine.cfg.check.settle);
        let (flush_after, pace) = (FLUSH_AFTER.max(delay / 2), FLUSH_AFTER.max(delay / 8));
        let main = tokio::runtime::Handle::current();
        let batch = Batch::default();
        Reader { engine, start, tx, shutdown, assembler, batch, batch_since: None, flush_after, pace, main }
    }

    /// Runs the reader on a thread of its own, with a single-threaded runtime, until it ends.
    ///
    /// Why a thread: a quiet stream's events arrive one commit at a time, and a runtime waiting on the
    /// socket wakes for each (a context switch apiece, most of binlog mode's CPU on a quiet stream). Here
    /// a caught-up reader sleeps the thread itself between reads (see [`Reader::stream_once`]), so no
    /// runtime watches the socket meanwhile: the events wait in the socket's buffer and are read together.
    pub fn spawn(self) -> impl std::future::Future<Output = Result<()>> {
        let (done, result) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new().name("binlog-reader".into()).spawn(move || {
            let ended = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(self.run()),
                Err(e) => Err(Error::Internal(format!("cannot start the binlog reader's runtime: {e}"))),
            };
            let _ = done.send(ended);
        });
        async move {
            thread.map_err(|e| Error::Internal(format!("cannot start the binlog reader's thread: {e}")))?;
            // A dropped sender without a result: the thread panicked.
            result.await.unwrap_or_else(|_| Err(Error::Binlog("the binlog reader failed".into())))
        }
    }

    /// Reads until shutdown or a definite error, reconnecting after transient failures.
    pub async fn run(mut self) -> Result<()> {
        let mut backoff = crate::retry::Backoff::new(crate::retry::Policy::RECONNECT);
        loop {
            let connected_at = Instant::now();
            let result = self.stream_once().await;
            // Whole transactions read before a failure are checked, not read again.
            if self.hand_over().await.is_err() {
                return Ok(());
            }
            match result {
                Ok(Ended::Shutdown) | Err(Error::Interrupted) => return Ok(()),
                Err(e) if e.is_transient() => {
                    // A connection that held for a while starts the delays over.
                    if connected_at.elapsed() > Duration::from_secs(30) {
                        backoff.reset();
                    }
                    tracing::warn!(error = %e, resume = %self.start.pos, "binlog stream interrupted; reconnecting");
                    if !backoff.wait(&mut self.shutdown).await {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect(&self) -> Result<BinlogStream> {
        let side = self.engine.base.side;
        // The side's URL and TLS settings (ssl_mode, ssl_ca, client certificate), as for its pools.
        let connector = crate::mysql::tls::Connector::new(side, self.engine.cfg.endpoint(side))?;
        let mut conn = connector.conn(|o| o.max_allowed_packet(Some(1 << 30))).await?;
        let setup = |e| Error::db(side, "preparing the replica connection", e);
        conn.query_drop(format!("SET @master_heartbeat_period = {}", HEARTBEAT.as_nanos())).await.map_err(setup)?;
        if self.start.mariadb {
            // Capability 4: send MariaDB GTID events, which carry the transaction's GTID.
            conn.query_drop("SET @mariadb_slave_capability = 4").await.map_err(setup)?;
        }
        let mut file = self.start.pos.file.clone();
        let mut pos = self.start.pos.pos;
        let mut request = BinlogStreamRequest::new(self.engine.cfg.binlog.server_id);
        if self.start.by_gtid {
            file.clear();
            pos = 4;
            if self.start.mariadb {
                let state = self.start.gtids.as_ref().map(ToString::to_string).unwrap_or_default();
                conn.exec_drop("SET @slave_connect_state = ?", (state,)).await.map_err(setup)?;
            } else if let Some(set) = &self.start.mysql_gtids {
                // COM_BINLOG_DUMP_GTID: the server sends every transaction not in the set.
                request = request.with_gtid().with_gtid_set(sids(set));
            }
        }
        let request = request.with_filename(file.as_bytes()).with_pos(pos);
        conn.get_binlog_stream(request).await.map_err(|e| stream_error(side, &self.start.pos, e))
    }

    async fn stream_once(&mut self) -> Result<Ended> {
        let mut stream = self.connect().await?;
        let base = self.engine.base.clone();
        let known_files = self.on_main(async move { binary_logs(&base).await }).await.unwrap_or_default();
        self.assembler.reconnected(known_files, self.start.pos.file.clone());
        loop {
            // Caught up (nothing buffered): read again a moment later rather than as each event arrives.
            // A quiet stream's events come one commit at a time, each waking the reader on its own;
            // paced, they are read together. The thread itself sleeps (it runs nothing else, see
            // [`Reader::spawn`]), so nothing watches the socket meanwhile. A version's time is when it
            // was read, so a later read can only make the other side's lag look smaller: a report may
            // come up to a pace later, never a false one. Under sustained load the stream always has data
            // and is not paced.
            let ready = futures_util::FutureExt::now_or_never(stream.next());
            if ready.is_none() {
                std::thread::sleep(self.pace);
                if *self.shutdown.borrow() {
                    self.hand_over().await?;
                    return Ok(Ended::Shutdown);
                }
            }
            let next = match ready {
                // An event read without waiting: a signalled shutdown is seen by a version check (a select
                // on the shutdown watch would register and drop a waiter for every event).
                Some(r) => {
                    if self.shutdown.has_changed().unwrap_or(true) {
                        self.hand_over().await?;
                        return Ok(Ended::Shutdown);
                    }
                    Ok(r)
                }
                None => {
                    let wait = match self.batch_since {
                        Some(t) => self.flush_after.saturating_sub(t.elapsed()),
                        None => READ_TIMEOUT,
                    };
                    tokio::select! {
                        _ = self.shutdown.changed() => {
                            self.hand_over().await?;
                            return Ok(Ended::Shutdown);
                        }
                        r = tokio::time::timeout(wait, stream.next()) => r,
                    }
                }
            };
            let event = match next {
                Err(_) if self.batch_since.is_some() => {
                    self.hand_over().await?;
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
            if header.event_type_raw() == EventType::HEARTBEAT_EVENT as u8 {
                self.engine.stats.binlog_lag_ms.store(0, Relaxed);
                // Idle and caught up: every commit so far has been read. The mark travels behind the
                // batches before it, so the settle stage learns it once their verdicts are in.
                if !self.assembler.in_transaction() {
                    self.batch.horizon_ms = self.batch.horizon_ms.max(crate::clock::now_ms());
                    self.hand_over().await?;
                }
            } else if ts > 0 {
                let lag = crate::clock::now_ms() as i64 - i64::from(ts) * 1000;
                self.engine.stats.binlog_lag_ms.store(lag.max(0), Relaxed);
            }
            self.assembler.read_ms = crate::clock::now_ms();
            let step =
                self.assembler.feed(&event, |id| stream.get_tme(id)).map_err(|e| Error::Binlog(e.to_string()))?;
            let Step::Boundary(b) = step else {
                if header.event_type_raw() == EventType::ROTATE_EVENT as u8 {
                    if let Ok(re) = event.read_event::<mysql_async::binlog::events::RotateEvent<'_>>() {
                        self.start.pos = BinlogPos::new(self.assembler.file.clone(), re.position());
                    }
                }
                if self.batch_since.is_some_and(|t| t.elapsed() >= self.flush_after) {
                    self.hand_over().await?;
                }
                continue;
            };
            let ddl = !b.ddl.is_empty();
            self.take(*b).await?;
            if ddl {
                self.hand_over().await?;
            }
            if self.batch.key_count() >= self.engine.cfg.check.batch_size {
                self.hand_over().await?;
            }
            // Under a sustained stream the read never times out: hand over on age here too.
            if self.batch_since.is_some_and(|t| t.elapsed() >= self.flush_after) {
                self.hand_over().await?;
            }
        }
    }

    /// Adds a finished transaction to the batch; a DDL on a tracked table refreshes its plan first.
    async fn take(&mut self, b: Boundary) -> Result<()> {
        if let Some(end) = &b.end {
            self.start.pos = end.pos.clone();
            // Past the first boundary the stream is resumed by file and position, not by GTID.
            self.start.by_gtid = false;
        }
        if !b.ddl.is_empty() {
            // Transactions before the DDL are handed over first (the plan is replaced below, so checks
            // still in flight may already use the new one: a column added or dropped is then compared or
            // left out a few batches early, never a change missed).
            self.hand_over().await?;
            for d in &b.ddl {
                self.on_ddl(d).await;
            }
        }
        self.batch.add(b);
        self.engine.stats.xa_held.store(self.assembler.held_count() as i64, Relaxed);
        if self.batch_since.is_none() {
            self.batch_since = Some(Instant::now());
        }
        Ok(())
    }

    async fn on_ddl(&mut self, d: &Ddl) {
        let e = &self.engine;
        let t = d.table();
        tracing::info!(table = %t, "schema change seen in the binlog; re-reading the table's columns");
        let now = Some(Instant::now());
        let (engine, table) = (e.clone(), t.to_string());
        let refreshed = self.on_main(async move {
            let e = &engine;
            crate::mysql::schema::refresh_quietly(&e.cfg, &e.plans, &e.base, &e.other, &table, now).await
        });
        match refreshed.await {
            Ok(warnings) => warnings.iter().for_each(|w| tracing::warn!("{w}")),
            Err(err) => {
                tracing::warn!(table = %t, error = %err, "cannot refresh the table's plan; keeping the old one")
            }
        }
        // The key may have changed with the table: later rows events are read with the new one.
        if let Some(plan) = e.plans.get(t) {
            self.assembler.set_key_columns(t, plan.key.clone());
        }
        if let Some(reason) = d.recheck_reason() {
            tracing::info!(table = %t, reason, "every row of the table will be re-checked by a full pass");
        }
    }

    /// Runs `work` (queries on the engine's pools) on the main runtime and waits for it.
    async fn on_main<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.main.spawn(work).await.unwrap_or_else(|e| Err(Error::Internal(format!("a query task failed: {e}"))))
    }

    /// Sends the batch to the checker (waiting while it is busy: backpressure).
    async fn hand_over(&mut self) -> Result<()> {
        self.batch_since = None;
        if self.batch.is_empty() {
            return Ok(());
        }
        let b = std::mem::take(&mut self.batch);
        // The checker goes away only when it stopped (shutdown or a definite error it reports itself):
        // stop reading then, rather than stream on into nothing.
        self.tx.send(b).await.map_err(|_| Error::Interrupted)
    }
}

/// Classifies a stream error: error 1236 (the binlog is not available) is definite, with its own message.
/// A MySQL GTID set in the form COM_BINLOG_DUMP_GTID takes.
fn sids(set: &GtidSet) -> Vec<mysql_common::packets::Sid<'static>> {
    set.0
        .iter()
        .map(|(uuid, ranges)| {
            mysql_common::packets::Sid::new(*uuid)
                .with_intervals(ranges.iter().map(|&(a, b)| mysql_common::packets::GnoInterval::new(a, b)).collect())
        })
        .collect()
}

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
