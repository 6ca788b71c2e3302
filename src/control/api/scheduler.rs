//! Owns the running validations of `serve`: at most one full pass and one incremental validation.
//!
//! Every start and stop holds one lock for its whole duration, including waiting for the previous run to
//! wind down and save its checkpoint. The original design assigned its cancel function outside its lock,
//! so a stop racing a start could cancel nothing or the wrong run; here a request sees either the state
//! before another request or the state after it, never one in between.

use crate::clock::{now_ms, rfc3339_ms as rfc3339};
use crate::engine::Engine;
use crate::error::Error;
use crate::feed::binlog::StartPoint;
use crate::feed::full::{run_full, FullOptions};
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

struct Job {
    cancel: watch::Sender<bool>,
    handle: JoinHandle<()>,
    started_ms: u64,
    detail: String,
}

impl Job {
    fn running(&self) -> bool {
        !self.handle.is_finished()
    }

    /// Asks the job to stop and waits until it has (checkpoint saved, checks in flight persisted).
    async fn stop(self) {
        let _ = self.cancel.send(true);
        let _ = self.handle.await;
    }
}

/// Stops the job in `slot` if it runs (waiting until it has); a conflict saying `idle` if none does.
async fn stop_running(slot: &mut Option<Job>, idle: &str) -> Result<(), Refusal> {
    match slot.take() {
        Some(job) if job.running() => {
            job.stop().await;
            Ok(())
        }
        _ => Err(Refusal::Conflict(idle.into())),
    }
}

#[derive(Default)]
struct Jobs {
    full: Option<Job>,
    incr: Option<Job>,
}

/// Why a request was refused; maps to an HTTP status.
#[derive(Debug)]
pub enum Refusal {
    /// 409: conflicts with what runs
    Conflict(String),
    /// 400: the request itself is wrong
    Invalid(String),
}

pub struct Scheduler {
    engine: Engine,
    jobs: Mutex<Jobs>,
    /// Results written by finished jobs, read by `status`.
    results: std::sync::Mutex<(Option<serde_json::Value>, Option<String>)>,
    /// Signalled (with a stored permit) when an incremental validation ends, for `incr` to follow it.
    incr_ended: tokio::sync::Notify,
    /// The error the last incremental validation ended with, typed, for `incr` to exit with it.
    incr_failure: std::sync::Mutex<Option<Error>>,
}

/// What `/incr/start` asks for.
#[derive(Debug, Default, Clone)]
pub struct IncrRequest {
    pub mode: String,
    pub utime_ms: Option<u64>,
    pub interval_ms: Option<u64>,
}

impl Scheduler {
    pub fn new(engine: Engine) -> std::sync::Arc<Scheduler> {
        std::sync::Arc::new(Scheduler {
            engine,
            jobs: Mutex::new(Jobs::default()),
            results: Default::default(),
            incr_ended: tokio::sync::Notify::new(),
            incr_failure: std::sync::Mutex::new(None),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub async fn start_full(self: &std::sync::Arc<Self>, tables: Vec<String>) -> Result<Vec<String>, Refusal> {
        let mut jobs = self.jobs.lock().await;
        if jobs.full.as_ref().is_some_and(Job::running) {
            return Err(Refusal::Conflict(
                "a full validation is already running; stop it first (POST /full/stop)".into(),
            ));
        }
        for t in &tables {
            if self.engine.plans.get(t).is_none() {
                return Err(Refusal::Invalid(format!("table `{t}` is not configured")));
            }
        }
        let names = if tables.is_empty() {
            self.engine.plans.all().iter().map(|p| p.name.clone()).collect()
        } else {
            tables.clone()
        };
        let (cancel, rx) = watch::channel(false);
        let me = self.clone();
        let opts = FullOptions { tables, ..Default::default() };
        let handle = tokio::spawn(async move {
            let started = now_ms();
            let result = match run_full(&me.engine, &opts, rx).await {
                Ok(s) => serde_json::json!({
                    "finished_at": rfc3339(now_ms()),
                    "started_at": rfc3339(started),
                    "elapsed_ms": s.elapsed.as_millis() as u64,
                    "rows": s.tables.iter().map(|t| (t.table.clone(), serde_json::Value::from(t.rows))).collect::<serde_json::Map<_, _>>(),
                    "strategy": s.tables.iter().map(|t| (t.table.clone(), serde_json::Value::from(t.strategy()))).collect::<serde_json::Map<_, _>>(),
                    "events": s.events.iter().map(|(k, n)| (k.as_str().to_string(), serde_json::Value::from(*n))).collect::<serde_json::Map<_, _>>(),
                    "resolved": s.resolved,
                    "outcome": "finished",
                }),
                Err(Error::Interrupted) => serde_json::json!({"outcome": "stopped", "started_at": rfc3339(started)}),
                Err(e) => {
                    serde_json::json!({"outcome": "failed", "error": e.to_string(), "started_at": rfc3339(started)})
                }
            };
            me.results.lock().unwrap_or_else(|e| e.into_inner()).0 = Some(result);
        });
        jobs.full = Some(Job { cancel, handle, started_ms: now_ms(), detail: names.join(",") });
        Ok(names)
    }

    pub async fn stop_full(&self) -> Result<(), Refusal> {
        let mut jobs = self.jobs.lock().await;
        stop_running(&mut jobs.full, "no full validation is running").await
    }

    /// Starts incremental validation, replacing a running one (which stops and saves its checkpoint first).
    pub async fn start_incr(self: &std::sync::Arc<Self>, req: IncrRequest) -> Result<String, Refusal> {
        let mut jobs = self.jobs.lock().await;
        let replaced = stop_running(&mut jobs.incr, "").await.is_ok();
        // Fix the start position before answering: "started" means changes from now on are seen.
        let start = if req.mode == "binlog" {
            let s = crate::feed::binlog::resolve_start(&self.engine, req.utime_ms.map(StartPoint::Time))
                .await
                .map_err(|e| Refusal::Conflict(format!("cannot start binlog mode: {e}")))?;
            Some(s)
        } else {
            if let Some(p) = self.engine.plans.all().iter().find(|p| p.utime.is_none()) {
                return Err(Refusal::Invalid(format!("table `{}` has no utime column; poll mode needs one", p.name)));
            }
            None
        };
        let (cancel, rx) = watch::channel(false);
        let me = self.clone();
        me.results.lock().unwrap_or_else(|e| e.into_inner()).1 = None;
        self.engine.stats.incr_runs.fetch_add(1, Relaxed);
        let (since, interval) = (req.utime_ms.map(|u| u as i64), req.interval_ms.map(std::time::Duration::from_millis));
        let handle = tokio::spawn(async move {
            let result = match start {
                Some(start) => crate::feed::binlog::run_from(&me.engine, start, rx).await,
                None => crate::feed::poll::run(&me.engine, since, interval, rx).await,
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "incremental validation stopped");
                me.results.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(e.to_string());
                *me.incr_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
            me.incr_ended.notify_one();
        });
        jobs.incr = Some(Job { cancel, handle, started_ms: now_ms(), detail: req.mode.clone() });
        Ok(if replaced { "incremental validation restarted".into() } else { "incremental validation started".into() })
    }

    pub async fn stop_incr(&self) -> Result<(), Refusal> {
        let mut jobs = self.jobs.lock().await;
        stop_running(&mut jobs.incr, "no incremental validation is running").await
    }

    /// Stops everything (shutdown): checkpoints saved, undelivered events stay in the outbox.
    pub async fn stop_all(&self) {
        let mut jobs = self.jobs.lock().await;
        if let Some(j) = jobs.full.take() {
            j.stop().await;
        }
        if let Some(j) = jobs.incr.take() {
            j.stop().await;
        }
    }

    /// Waits until an incremental validation ends; its error, if it failed.
    pub async fn wait_incr_end(&self) -> Option<String> {
        self.incr_ended.notified().await;
        self.results.lock().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    /// The error the last incremental validation ended with, if it failed (once).
    pub fn take_incr_error(&self) -> Option<Error> {
        self.incr_failure.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The mode of the running incremental validation, if one runs.
    pub async fn incr_mode(&self) -> Option<String> {
        let jobs = self.jobs.lock().await;
        jobs.incr.as_ref().filter(|j| j.running()).map(|j| j.detail.clone())
    }

    pub async fn status(&self) -> serde_json::Value {
        let jobs = self.jobs.lock().await;
        let (last_full, incr_error) = self.results.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let stats = &self.engine.stats;
        let job = |j: &Option<Job>| match j {
            Some(j) if j.running() => {
                serde_json::json!({"running": true, "since": rfc3339(j.started_ms), "detail": j.detail})
            }
            _ => serde_json::json!({"running": false}),
        };
        let mut full = job(&jobs.full);
        let held = stats.full_held.lock().unwrap_or_else(|e| e.into_inner()).clone();
        full["held"] = if held.is_empty() { serde_json::Value::Null } else { held.into() };
        full["last"] = last_full.unwrap_or(serde_json::Value::Null);
        let mut incr = job(&jobs.incr);
        let checkpoint = self.engine.checkpoint_text();
        incr["checkpoint"] = if checkpoint.is_empty() { serde_json::Value::Null } else { checkpoint.into() };
        incr["lag_seconds"] = serde_json::json!(stats.binlog_lag_ms.load(Relaxed) as f64 / 1000.0);
        incr["error"] = incr_error.map(serde_json::Value::from).unwrap_or(serde_json::Value::Null);
        let validated = self.engine.validated.borrow().clone();
        incr["validated_through"] = crate::mysql::position::Validated::json_of(&validated);
        // The base's position now, and how far validation trails it (read with the jobs lock released).
        drop(jobs);
        if let Ok((base, _)) = crate::feed::binlog::current_position(&self.engine.base).await {
            let behind = match &validated {
                Some(v) if v.at.pos >= base => 0.0,
                Some(v) if v.commit_ms > 0 => now_ms().saturating_sub(v.commit_ms) as f64 / 1000.0,
                _ => -1.0,
            };
            incr["base_position"] = base.to_string().into();
            incr["validated_lag_seconds"] = serde_json::json!(behind);
        }
        serde_json::json!({"full": full, "incr": incr})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A job that, once asked to stop, takes a while (virtual time) to wind down, as a run saving its
    /// checkpoint does, and records that it finished.
    fn job(wound_down: Arc<AtomicBool>) -> Job {
        let (cancel, mut rx) = watch::channel(false);
        let handle = tokio::spawn(async move {
            let _ = rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            wound_down.store(true, Ordering::SeqCst);
        });
        Job { cancel, handle, started_ms: 0, detail: String::new() }
    }

    /// A stop returns only once the job has wound down, so a start that follows it (under the same
    /// lock) never runs beside the old job; a stop with nothing running is a conflict.
    #[tokio::test(start_paused = true)]
    async fn a_stop_waits_for_the_job_to_wind_down() {
        let done = Arc::new(AtomicBool::new(false));
        let mut slot = Some(job(done.clone()));
        assert!(stop_running(&mut slot, "idle").await.is_ok());
        assert!(done.load(Ordering::SeqCst), "stop returned before the job had wound down");
        assert!(slot.is_none());
        assert!(
            matches!(stop_running(&mut slot, "nothing runs").await, Err(Refusal::Conflict(m)) if m == "nothing runs")
        );
    }

    /// A job that already ended is not running: stopping it is a conflict, and it is cleared.
    #[tokio::test(start_paused = true)]
    async fn a_finished_job_is_not_running() {
        let (cancel, _rx) = watch::channel(false);
        let handle = tokio::spawn(async {});
        let j = Job { cancel, handle, started_ms: 0, detail: String::new() };
        while j.running() {
            tokio::task::yield_now().await;
        }
        let mut slot = Some(j);
        assert!(matches!(stop_running(&mut slot, "idle").await, Err(Refusal::Conflict(_))));
        assert!(slot.is_none());
    }
}
