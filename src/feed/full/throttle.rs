//! Full mode's protection of production servers: `full.max_load` (pause between chunks while a status
//! variable such as `Threads_running` is above its limit on either side) and `full.rate` (rows read per
//! second per side). What holds the pass back is published in `Stats::full_held`, which the progress line
//! and `/status` show.

use crate::deliver::metrics::Stats;
use crate::error::{Error, Result};
use crate::mysql::db::Db;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the load is looked at while it is below the limit, and how long a held pass waits between
/// looks: a few statements per second at most, whatever the number of chunks.
const LOAD_EVERY: Duration = Duration::from_millis(500);
const HELD_WAIT: Duration = Duration::from_millis(250);

pub struct Throttle {
    max_load: Option<(String, u64)>,
    rate: u64,
    started: Instant,
    /// rows read so far by this pass on the base and on the other side
    rows: [AtomicU64; 2],
    last_look: Mutex<Option<Instant>>,
    stats: Arc<Stats>,
}

impl Throttle {
    pub fn new(max_load: Option<(String, u64)>, rate: u64, stats: Arc<Stats>) -> Throttle {
        Throttle {
            max_load,
            rate,
            started: Instant::now(),
            rows: Default::default(),
            last_look: Mutex::new(None),
            stats,
        }
    }

    /// Counts rows read (or summarised) on each side.
    pub fn charge(&self, base: u64, other: u64) {
        self.rows[0].fetch_add(base, Relaxed);
        self.rows[1].fetch_add(other, Relaxed);
    }

    /// Waits before the next chunk while either side is over `max_load` or the pass is ahead of `rate`.
    pub async fn wait(&self, base: &Db, other: &Db, shutdown: &watch::Receiver<bool>) -> Result<()> {
        let mut shutdown = shutdown.clone();
        loop {
            let held = match self.over_load(base, other).await? {
                Some(why) => Some((why, HELD_WAIT)),
                None => self.ahead_of_rate().map(|d| (format!("rate: full.rate = {} rows/s per side", self.rate), d)),
            };
            let Some((why, wait)) = held else {
                self.set_held(String::new());
                return Ok(());
            };
            self.set_held(why);
            // Pacing, not synchronisation: the pass is held back on purpose for this long.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return Err(Error::Interrupted),
            }
        }
    }

    fn set_held(&self, why: String) {
        let mut held = self.stats.full_held.lock().unwrap_or_else(|e| e.into_inner());
        if *held != why {
            if !why.is_empty() {
                tracing::info!("full pass held back: {why}");
            }
            *held = why;
        }
    }

    /// How long to wait so that neither side has been read faster than `rate`.
    fn ahead_of_rate(&self) -> Option<Duration> {
        if self.rate == 0 {
            return None;
        }
        let most = self.rows[0].load(Relaxed).max(self.rows[1].load(Relaxed));
        let due = Duration::from_secs_f64(most as f64 / self.rate as f64);
        let wait = due.checked_sub(self.started.elapsed())?;
        (wait > Duration::from_millis(5)).then_some(wait.min(Duration::from_secs(1)))
    }

    /// Why the load is too high (`None` when it is not, or when it was looked at very recently).
    async fn over_load(&self, base: &Db, other: &Db) -> Result<Option<String>> {
        let Some((var, limit)) = &self.max_load else { return Ok(None) };
        {
            let mut last = self.last_look.lock().unwrap_or_else(|e| e.into_inner());
            let held = !self.stats.full_held.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
            if !held && last.is_some_and(|t| t.elapsed() < LOAD_EVERY) {
                return Ok(None);
            }
            *last = Some(Instant::now());
        }
        for db in [base, other] {
            // SHOW takes no placeholder; the name was checked to be letters, digits and `_` only.
            let sql = format!("SHOW GLOBAL STATUS LIKE '{var}'");
            let rows = db.rows(&sql, vec![], "reading the load for full.max_load").await?;
            let value = match rows.first().and_then(|r| r.get(1)) {
                Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(v) => crate::key::KeyVal::from(v).to_string(),
                None => String::new(),
            };
            let Ok(n) = value.trim().parse::<f64>() else {
                return Err(Error::Config(format!(
                    "full.max_load names `{var}`, which the {} side does not report as a numeric status variable; \
                     use one of SHOW GLOBAL STATUS, e.g. Threads_running",
                    db.side
                )));
            };
            if n > *limit as f64 {
                return Ok(Some(format!("max_load: {var} = {n} on the {} side, above {limit}", db.side)));
            }
        }
        Ok(None)
    }
}
