//! The HTTP control API of `serve` (SPEC.md): JSON in, `{"code", "msg", "data"}` out, with a matching
//! HTTP status; `/metrics` in the Prometheus text format; `/openapi.json` describing it all.
//!
//! Bound to loopback by default. With `http.token` set, every request but `/healthz` needs
//! `Authorization: Bearer <token>`, compared in constant time.

pub mod client;
pub mod cutover;
pub mod scheduler;

use crate::deliver::metrics;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use scheduler::{IncrRequest, Refusal, Scheduler};
use serde::Deserialize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

const OPENAPI: &str = include_str!("openapi.json");

#[derive(Clone)]
struct App {
    scheduler: Arc<Scheduler>,
    token: Option<Arc<str>>,
    /// Turns true when the server is stopping: long-polls (the cutover gate) answer at once then.
    stopping: tokio::sync::watch::Receiver<bool>,
}

fn reply(status: StatusCode, msg: impl Into<String>, data: serde_json::Value) -> Response {
    let code = if status.is_success() { 0 } else { status.as_u16() };
    let body = serde_json::json!({"code": code, "msg": msg.into(), "data": data});
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn refused(r: Refusal) -> Response {
    match r {
        Refusal::Conflict(m) => reply(StatusCode::CONFLICT, m, serde_json::Value::Null),
        Refusal::Invalid(m) => reply(StatusCode::BAD_REQUEST, m, serde_json::Value::Null),
    }
}

/// Parses an optional JSON body into `T`, or says what is wrong with it.
fn body<T: for<'de> Deserialize<'de> + Default>(bytes: &Bytes) -> Result<T, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid request body: {e}"))?;
    if !value.is_object() {
        return Err("invalid request body: it must be a JSON object".into());
    }
    serde_json::from_value(value).map_err(|e| format!("invalid request body: {e}"))
}

fn bad_request(msg: impl Into<String>) -> Response {
    reply(StatusCode::BAD_REQUEST, msg, serde_json::Value::Null)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FullStart {
    #[serde(default)]
    tables: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IncrStart {
    utime: Option<i64>,
    interval: Option<i64>,
    mode: Option<String>,
}

async fn full_start(State(app): State<App>, bytes: Bytes) -> Response {
    let req: FullStart = match body(&bytes) {
        Ok(r) => r,
        Err(msg) => return bad_request(msg),
    };
    match app.scheduler.start_full(req.tables).await {
        Ok(tables) => reply(StatusCode::OK, "full validation started", serde_json::json!({"tables": tables})),
        Err(r) => refused(r),
    }
}

async fn full_stop(State(app): State<App>) -> Response {
    match app.scheduler.stop_full().await {
        Ok(()) => reply(StatusCode::OK, "full validation stopped; finished ranges are saved", serde_json::Value::Null),
        Err(r) => refused(r),
    }
}

async fn incr_start(State(app): State<App>, bytes: Bytes) -> Response {
    let req: IncrStart = match body(&bytes) {
        Ok(r) => r,
        Err(msg) => return bad_request(msg),
    };
    if req.utime.is_some_and(|u| u < 0) {
        return bad_request("utime must be milliseconds since the epoch, not negative");
    }
    if req.interval.is_some_and(|i| i <= 0) {
        return bad_request("interval must be a positive number of milliseconds");
    }
    let mode = req.mode.unwrap_or_else(|| "binlog".into());
    if mode != "binlog" && mode != "poll" {
        return bad_request("mode must be \"binlog\" or \"poll\"");
    }
    let r = IncrRequest { mode, utime_ms: req.utime.map(|u| u as u64), interval_ms: req.interval.map(|i| i as u64) };
    match app.scheduler.start_incr(r).await {
        Ok(msg) => reply(StatusCode::OK, msg, serde_json::Value::Null),
        Err(r) => refused(r),
    }
}

async fn incr_stop(State(app): State<App>) -> Response {
    match app.scheduler.stop_incr().await {
        Ok(()) => {
            let checkpoint = app.scheduler.engine().checkpoint_text();
            reply(StatusCode::OK, "incremental validation stopped", serde_json::json!({"checkpoint": checkpoint}))
        }
        Err(r) => refused(r),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CutoverRequest {
    until: Option<String>,
    timeout_ms: Option<i64>,
}

/// Open rows listed in one answer at most (the CLI writes them to a file; all are in the ledger).
const CUTOVER_LISTED: usize = 100_000;

async fn cutover(State(app): State<App>, bytes: Bytes) -> Response {
    let req: CutoverRequest = match body(&bytes) {
        Ok(r) => r,
        Err(msg) => return bad_request(msg),
    };
    let until = match cutover::Until::parse(req.until.as_deref().unwrap_or("now")) {
        Ok(u) => u,
        Err(msg) => return bad_request(msg),
    };
    let timeout = match req.timeout_ms {
        None => std::time::Duration::from_secs(60),
        Some(t) if (0..=86_400_000).contains(&t) => std::time::Duration::from_millis(t as u64),
        Some(_) => return bad_request("timeout_ms must be between 0 and 86400000"),
    };
    let engine = app.scheduler.engine();
    let poll = app.scheduler.incr_mode().await.as_deref() == Some("poll");
    if poll && until != cutover::Until::Now {
        return bad_request("poll mode runs: it has no binlog positions, ask for until = \"now\"");
    }
    let mut stopping = app.stopping.clone();
    let answer = tokio::select! {
        a = cutover::gate(engine, until, timeout, poll) => a,
        _ = stopping.wait_for(|s| *s) => {
            return reply(StatusCode::SERVICE_UNAVAILABLE, "the validator is stopping; ask again once it runs", serde_json::Value::Null);
        }
    };
    match answer {
        Ok(a) => {
            let open: Vec<serde_json::Value> = a.open.iter().take(CUTOVER_LISTED).map(|r| r.to_json()).collect();
            let msg = if a.clean() { "clean" } else { "inconsistencies are open" };
            reply(
                StatusCode::OK,
                msg,
                serde_json::json!({
                    "clean": a.clean(),
                    "until": a.until.to_string(),
                    "validated_through": a.validated.to_json(),
                    "open_count": a.open.len(),
                    "untracked": a.untracked,
                    "open": open,
                }),
            )
        }
        Err(cutover::NotReached::Timeout { until, validated }) => {
            let running = app.scheduler.incr_mode().await;
            let hint = match running.as_deref() {
                Some(_) => "validation has not reached it yet",
                None => "binlog mode is not running; start it (POST /incr/start)",
            };
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not reached within the timeout: {hint}"),
                serde_json::json!({
                    "waiting_for": until.to_string(),
                    "validated_through": crate::mysql::position::Validated::json_of(&validated),
                    "pending_rechecks": engine.stats.pending.load(Relaxed),
                    "table_rechecks_pending": engine.stats.rechecks_pending.load(Relaxed).max(0),
                }),
            )
        }
        Err(cutover::NotReached::Failed(e)) => {
            reply(StatusCode::SERVICE_UNAVAILABLE, format!("the gate failed: {e}"), serde_json::Value::Null)
        }
    }
}

async fn status(State(app): State<App>) -> Response {
    reply(StatusCode::OK, "ok", app.scheduler.status().await)
}

fn stats_json(app: &App) -> serde_json::Value {
    let e = app.scheduler.engine();
    let s = &e.stats;
    serde_json::json!({
        "full_validation_runs": s.full_runs.load(Relaxed),
        "incr_validation_runs": s.incr_runs.load(Relaxed),
        "rows_checked": s.rows_checked.load(Relaxed),
        "events": {
            "target_missing": s.target_missing.load(Relaxed),
            "neq": s.neq.load(Relaxed),
            "base_missing": s.base_missing.load(Relaxed),
        },
        "transient_mismatches_resolved": s.resolved.load(Relaxed),
        "pending_rechecks": s.pending.load(Relaxed),
        "undelivered_events": e.store.outbox_len(),
        "binlog_row_changes": s.changes_seen.load(Relaxed),
        "row_changes": {
            "seen": s.changes_seen.load(Relaxed),
            "checked": s.changes_checked.load(Relaxed),
            "held_in_prepared_xa": s.xa_held.load(Relaxed).max(0),
            "not_checked": s.not_checked_counts().iter().map(|(t, w, n)| serde_json::json!({"table": t, "reason": w, "count": n})).collect::<Vec<_>>(),
        },
        "table_rechecks_pending": s.rechecks_pending.load(Relaxed).max(0),
        "open_ledger_rows": e.settle.ledger().open_count(),
        "base_queries": e.base.queries.load(Relaxed),
        "base_rows_read": e.base.rows_read.load(Relaxed),
        "base_reads_fallback": s.base_read_fallback_counts().iter().map(|(t, w, n)| serde_json::json!({"table": t, "reason": w, "count": n})).collect::<Vec<_>>(),
        "confirm_overturned": s.confirm_overturned.load(Relaxed),
        "reports_already_open": s.reports_already_open.load(Relaxed),
        "ledger_rows_closed": s.ledger_closed.load(Relaxed),
        "resolved_events": s.resolved_sent.load(Relaxed),
        "binlog_lag_seconds": s.binlog_lag_ms.load(Relaxed) as f64 / 1000.0,
    })
}

async fn stats(State(app): State<App>) -> Response {
    reply(StatusCode::OK, "ok", stats_json(&app))
}

async fn prometheus(State(app): State<App>) -> Response {
    let e = app.scheduler.engine();
    let base = metrics::Load { queries: e.base.queries.load(Relaxed), rows: e.base.rows_read.load(Relaxed) };
    let text = metrics::render(&e.stats, e.store.outbox_len(), base);
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn healthz() -> Response {
    reply(StatusCode::OK, "ok", serde_json::Value::Null)
}

async fn openapi() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found() -> Response {
    reply(StatusCode::NOT_FOUND, "no such endpoint; see /openapi.json", serde_json::Value::Null)
}

/// Equal-length comparison that does not stop at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(token: &str, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    let Some(given) = value.strip_prefix("Bearer ") else { return false };
    constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

async fn auth(State(app): State<App>, req: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        if req.uri().path() != "/healthz" && !authorized(token, req.headers()) {
            return reply(StatusCode::UNAUTHORIZED, "missing or wrong bearer token", serde_json::Value::Null);
        }
    }
    next.run(req).await
}

/// The API's router.
pub fn router(
    scheduler: Arc<Scheduler>,
    token: Option<String>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let app = App { scheduler, token: token.filter(|t| !t.is_empty()).map(Arc::from), stopping };
    Router::new()
        .route("/full/start", post(full_start))
        .route("/full/stop", post(full_stop))
        .route("/incr/start", post(incr_start))
        .route("/incr/stop", post(incr_stop))
        .route("/status", get(status))
        .route("/stats", get(stats))
        .route("/metrics", get(prometheus))
        .route("/healthz", get(healthz))
        .route("/cutover", post(cutover))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .with_state(app)
}

/// Serves until `shutdown` resolves, then stops every validation (checkpoints saved).
pub async fn serve(
    scheduler: Arc<Scheduler>,
    listen: &str,
    token: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        crate::Error::Config(format!("http.listen = \"{listen}\": cannot listen there: {e}; pick a free address"))
    })?;
    tracing::info!(%listen, "HTTP API listening");
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    axum::serve(listener, router(scheduler.clone(), token, stopping))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| crate::Error::Config(format!("HTTP server failed: {e}")))?;
    scheduler.stop_all().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer secret".parse().unwrap());
        assert!(authorized("secret", &h));
        h.insert(header::AUTHORIZATION, "Basic secret".parse().unwrap());
        assert!(!authorized("secret", &h));
    }

    #[test]
    fn the_openapi_document_is_json_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        for path in [
            "/full/start",
            "/full/stop",
            "/incr/start",
            "/incr/stop",
            "/status",
            "/stats",
            "/metrics",
            "/healthz",
            "/cutover",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
    }
}
