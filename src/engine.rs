//! The connected pieces every mode shares: both databases, the table plans, the state store, the settle
//! stage and the outbox drain. Modes differ only in how they find keys to check.

use crate::config::Config;
use crate::deliver::metrics::Stats;
use crate::deliver::sink::{drain, AnySink};
use crate::deliver::state::Store;
use crate::error::{Result, Side};
use crate::mysql::db::Db;
use crate::mysql::schema::{plan_all, PlanSet};
use crate::verdict::settle::Settle;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Clone)]
pub struct Engine {
    pub cfg: Arc<Config>,
    pub base: Arc<Db>,
    pub other: Arc<Db>,
    pub plans: Arc<PlanSet>,
    pub store: Arc<Store>,
    pub settle: Arc<Settle>,
    pub stats: Arc<Stats>,
    /// Held for the whole of a full pass: passes (a user's, a table re-check) run one at a time.
    pub full_gate: Arc<tokio::sync::Mutex<()>>,
    /// Wakes the table re-check runner when a new re-check is recorded.
    pub recheck_wake: Arc<tokio::sync::Notify>,
    /// Binlog mode's checkpoint, published as it moves (the API, `incr` and metrics read it here).
    pub checkpoint: Arc<watch::Sender<Option<crate::mysql::position::Checkpoint>>>,
    /// Binlog mode's validated-through position, published as it moves (the cutover gate waits on it).
    pub validated: Arc<watch::Sender<Option<crate::mysql::position::Validated>>>,
    /// Poll mode's last round that caught up with every table: (started, finished), ms since the epoch.
    pub poll_rounds: Arc<watch::Sender<Option<(u64, u64)>>>,
}

/// An engine with its background tasks (settle re-checks, outbox drain) running.
pub struct Running {
    pub engine: Engine,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Connects both sides and opens a pool on each, sized for `conns` concurrent queries.
pub async fn connect(cfg: &Config, conns: usize) -> Result<(Db, Db)> {
    let base_side = cfg.base_side();
    let (base, other) = tokio::join!(
        Db::connect(base_side, cfg.endpoint(base_side), conns),
        Db::connect(base_side.other(), cfg.endpoint(base_side.other()), conns)
    );
    Ok((base?, other?))
}

impl Running {
    /// Connects, plans every table (failing with the fix when one is unusable), opens the state store,
    /// and starts the settle stage and the outbox drain.
    pub async fn start(cfg: Config, stats: Arc<Stats>) -> Result<Running> {
        let conns = cfg.full.parallel * 2 + 4;
        let (base, other) = connect(&cfg, conns).await?;
        let plans = Arc::new(PlanSet::new(plan_all(&cfg, &base, &other).await?));
        std::fs::create_dir_all(&cfg.state.dir).map_err(|e| {
            crate::error::Error::Config(format!(
                "state.dir {}: cannot create it: {e}; fix state.dir",
                cfg.state.dir.display()
            ))
        })?;
        let store = Arc::new(Store::open(&cfg.state.dir)?);
        // Older pending records become the newest version before settle's first compare-and-swap.
        store.pending_upgrade::<crate::verdict::settle::Pending>()?;
        let sink = AnySink::from_config(&cfg.sink)?;
        let (base, other) = (Arc::new(base), Arc::new(other));
        let ledger_cfg = crate::deliver::ledger::LedgerConfig {
            max: cfg.state.ledger_max,
            resolved_events: cfg.sink.resolved_events,
            outbox_max: cfg.sink.outbox_max,
            direction: cfg.direction(),
        };
        let ledger = Arc::new(crate::deliver::ledger::Ledger::new(store.clone(), stats.clone(), ledger_cfg));
        let settle_cfg = crate::verdict::settle::SettleConfig {
            window: cfg.check.settle,
            batch_size: cfg.check.batch_size,
            outbox_max: cfg.sink.outbox_max,
            direction: cfg.direction(),
        };
        let settle = Arc::new(Settle::new(
            store.clone(),
            base.clone(),
            other.clone(),
            plans.clone(),
            settle_cfg,
            ledger,
            stats.clone(),
        ));
        if store.outbox_len() > 0 {
            tracing::info!(undelivered = store.outbox_len(), "sending events left undelivered by an earlier run first");
        }
        let (tx, rx) = watch::channel(false);
        let tasks = vec![tokio::spawn(drain(store.clone(), sink, rx.clone())), tokio::spawn(settle.clone().run(rx))];
        let engine = Engine {
            cfg: Arc::new(cfg),
            base,
            other,
            plans,
            store,
            settle,
            stats,
            full_gate: Arc::default(),
            recheck_wake: Arc::default(),
            checkpoint: Arc::new(watch::channel(None).0),
            validated: Arc::new(watch::channel(None).0),
            poll_rounds: Arc::new(watch::channel(None).0),
        };
        Ok(Running { engine, shutdown: tx, tasks })
    }

    /// Stops the background tasks. Pending re-checks and undelivered events stay in the store.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

impl Engine {
    /// The binlog checkpoint as text (`file:pos (gtid …)`), or empty before binlog mode saved one.
    pub fn checkpoint_text(&self) -> String {
        self.checkpoint.borrow().as_ref().map(ToString::to_string).unwrap_or_default()
    }

    /// The plans of the named tables (all of them when `names` is empty); an unknown name is an error
    /// that says how to fix it.
    pub fn select_tables(&self, names: &[String]) -> Result<Vec<Arc<crate::mysql::schema::TablePlan>>> {
        if names.is_empty() {
            return Ok(self.plans.all());
        }
        names
            .iter()
            .map(|t| {
                self.plans.get(t).ok_or_else(|| {
                    crate::error::Error::Config(format!(
                        "table `{t}` is not configured; add a [[table]] for it or drop it from --tables"
                    ))
                })
            })
            .collect()
    }

    /// At the end of a one-shot run: waits for the settle window of `mode`'s last mismatches to end and
    /// for their events to go out. Returns (mismatches still pending, events still undelivered).
    pub async fn finish(&self, mode: crate::deliver::event::Mode) -> Result<(usize, usize)> {
        let wait = self.cfg.check.settle + self.cfg.check.drain_timeout;
        let unsettled = self.settle.wait_settled(mode, wait).await?;
        let undelivered = self.store.outbox_wait_empty(self.cfg.check.drain_timeout).await;
        // A sink that refuses events for good ends the run with its fix, not with "not yet delivered".
        self.store.sink_refused()?;
        Ok((unsettled, undelivered))
    }

    pub fn side(&self, side: Side) -> &Db {
        if self.base.side == side {
            &self.base
        } else {
            &self.other
        }
    }
}
