//! The thin binary: parse the command line, load the config, start telemetry, call the library, and map
//! the outcome to SPEC.md's exit codes (0 ok, 1 inconsistencies found, 2 could not run or finish).

mod cli;

use binlog_validator::control::doctor;
use binlog_validator::deliver::metrics::Stats;
use binlog_validator::engine::Running;
use binlog_validator::feed::full::{run_full, FullOptions, Strategy};
use binlog_validator::{Config, Error};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::watch;

/// Reading rows allocates once per value; mimalloc makes full mode about a third faster than glibc's
/// allocator (measured with scripts/bench-full.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "binlog-validator", version, about = "Data-consistency validation for online MySQL migrations")]
struct Cli {
    /// Configuration file (TOML); every key can also come from BV_* environment variables.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One full-parity pass over the configured tables, then exit (0 clean, 1 inconsistencies, 2 failed).
    Full {
        /// Only these tables (comma-separated).
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        /// Forget an interrupted pass and start over.
        #[arg(long)]
        restart: bool,
        /// How ranges are compared: `rows` streams every row of both sides, `summary` compares per-chunk
        /// digests and bisects the chunks that differ, `auto` chooses per table and chunk by measurement.
        #[arg(long, default_value = "auto", value_parser = ["rows", "summary", "auto"])]
        strategy: String,
    },
    /// Incremental validation until SIGINT/SIGTERM.
    Incr {
        #[arg(long, default_value = "binlog", value_parser = ["binlog", "poll"])]
        mode: String,
    },
    /// The HTTP control API.
    Serve,
    /// The reverse sweep on its own: rows on the other side that the base lacks (exit 0/1/2 as `full`).
    Sweep {
        /// Only these tables (comma-separated).
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
    },
    /// Preflight: connectivity, privileges, binlog settings, table keys.
    Doctor,
    /// Asks the running validator (its HTTP API, from http.listen and http.token) whether it is safe to
    /// switch: exit 0 clean, 1 inconsistencies open (listed in --out), 2 not reached in time.
    Cutover {
        /// `now` (the base's position at the call), a binlog position file:pos, or a GTID position/set.
        #[arg(long, default_value = "now")]
        until: String,
        /// How long to wait for validation to get there.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Where the open rows are written, one JSON object a line.
        #[arg(long, default_value = "cutover-open.jsonl")]
        out: PathBuf,
    },
    /// Binlog and poll modes side by side under a generated workload; writes a report.
    Compare {
        /// How long the workload runs.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Rows written per second.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// How far the target trails the source (transient mismatches).
        #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
        lag: std::time::Duration,
        /// Folder for report.md, latency.svg and each mode's events.
        #[arg(long, default_value = "compare-report")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BV_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, Error> {
    let (path, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("./binlog-validator.toml"), false),
    };
    // BV_LOG and BV_DIGEST_DIALECT (a troubleshooting switch, read where the digest is planned) are not
    // configuration keys.
    let not_config = ["BV_LOG", "BV_DIGEST_DIALECT"];
    Config::load(
        &path,
        explicit,
        std::env::vars().filter(|(k, _)| k.starts_with("BV_") && !not_config.contains(&k.as_str())),
    )
}

/// A watch that turns true on SIGINT or SIGTERM.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("stopping: finishing checks in flight and saving progress");
        let _ = tx.send(true);
    });
    rx
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let cfg = load_config(&cli)?;
    match cli.command {
        Command::Full { tables, restart, strategy } => full(cfg, tables, restart, &strategy).await,
        Command::Doctor => {
            let checks = doctor::run(&cfg, true).await;
            for c in &checks {
                println!("{c}");
            }
            Ok(if checks.iter().all(|c| c.ok) { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Command::Incr { mode } => incr(cfg, &mode).await,
        Command::Cutover { until, timeout, out } => cutover(&cfg, &until, timeout, &out).await,
        Command::Serve => serve(cfg).await,
        Command::Sweep { tables } => sweep(cfg, tables).await,
        Command::Compare { duration, rate, lag, out } => {
            let opts = cli::compare::Options { duration, rate, lag, out: out.clone() };
            let results = cli::compare::run(&cfg, &opts).await?;
            println!("{}", cli::compare::table(&results));
            eprintln!("report: {}", out.join("report.md").display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The HTTP control API until SIGINT/SIGTERM; validations it started stop with their checkpoints saved.
async fn serve(cfg: Config) -> Result<ExitCode, Error> {
    let listen = cfg.http.listen().to_string();
    let token = cfg.http.token.clone();
    let mut shutdown = shutdown_signal();
    let running = Running::start(cfg, Arc::new(Stats::default())).await?;
    let scheduler = binlog_validator::control::api::scheduler::Scheduler::new(running.engine.clone());
    let signal = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    let result = binlog_validator::control::api::serve(scheduler, &listen, token, signal).await;
    running.stop().await;
    result?;
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Incremental validation until SIGINT/SIGTERM; the checkpoint is saved on the way out.
async fn incr(cfg: Config, mode: &str) -> Result<ExitCode, Error> {
    let checks = doctor::run(&cfg, mode == "binlog").await;
    let failed: Vec<&doctor::Check> = checks.iter().filter(|c| !c.ok).collect();
    if !failed.is_empty() {
        for c in &failed {
            eprintln!("{c}");
        }
        return Err(Error::Config(format!(
            "{} preflight check(s) failed (above); fix them and start again (`binlog-validator doctor` repeats the checks)",
            failed.len()
        )));
    }
    let shutdown = shutdown_signal();
    let stats = Arc::new(Stats::default());
    let api = cfg.http.listen.clone().map(|l| (l, cfg.http.token.clone()));
    let running = Running::start(cfg, stats.clone()).await?;
    let engine = running.engine.clone();
    let result = run_incr(&engine, mode, api, shutdown).await;
    running.stop().await;
    if mode != "poll" {
        // Also when binlog mode stopped on an error: what was seen, checked and not checked, and where
        // it will resume.
        eprintln!("{}", stats.accounting());
        if result.is_err() {
            eprintln!("checkpoint saved: {}", engine.checkpoint_text());
        }
    }
    result?;
    if mode == "poll" {
        eprintln!("stopped; poll cursors saved");
    } else {
        eprintln!("stopped; checkpoint {}", engine.checkpoint_text());
    }
    let (q, r) = (
        engine.base.queries.load(std::sync::atomic::Ordering::Relaxed),
        engine.base.rows_read.load(std::sync::atomic::Ordering::Relaxed),
    );
    eprintln!("base load: {q} queries, {r} rows read");
    Ok(ExitCode::SUCCESS)
}

/// `incr`'s validation, run as the scheduler's incremental job (the one mode dispatch `serve` uses too),
/// with the HTTP API beside it when `http.listen` is set (the cutover gate, `/status`). Ends when the
/// validation fails or on SIGINT/SIGTERM, the checkpoint saved either way.
async fn run_incr(
    engine: &binlog_validator::engine::Engine,
    mode: &str,
    api: Option<(String, Option<String>)>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    use binlog_validator::control::api::scheduler::{IncrRequest, Refusal, Scheduler};
    let scheduler = Scheduler::new(engine.clone());
    let request = IncrRequest { mode: mode.to_string(), ..IncrRequest::default() };
    scheduler.start_incr(request).await.map_err(|r| match r {
        Refusal::Conflict(m) | Refusal::Invalid(m) => Error::Config(m),
    })?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = match api {
        Some((listen, token)) => {
            let sched = scheduler.clone();
            tokio::spawn(async move {
                binlog_validator::control::api::serve(sched, &listen, token, async move {
                    let _ = stopped.await;
                })
                .await
            })
        }
        // No API: a server that never ends on its own.
        None => tokio::spawn(async move {
            let _ = stopped.await;
            Ok(())
        }),
    };
    let ended = tokio::select! {
        // A job replaced through the API (POST /incr/start) ends too: `incr` follows the new one.
        _ = async {
            loop {
                if scheduler.wait_incr_end().await.is_some() || scheduler.incr_mode().await.is_none() {
                    return;
                }
            }
        } => true,
        _ = shutdown.wait_for(|s| *s) => false,
        // The API could not start (address in use): stop the validation and say so.
        r = &mut server => {
            scheduler.stop_all().await;
            return r.unwrap_or_else(|e| Err(Error::Internal(format!("the HTTP API task failed: {e}"))));
        }
    };
    let _ = stop.send(());
    let served = server.await.unwrap_or_else(|e| Err(Error::Internal(format!("the HTTP API task failed: {e}"))));
    scheduler.stop_all().await;
    match scheduler.take_incr_error() {
        Some(e) if ended => Err(e),
        _ => served,
    }
}

/// The cutover gate's command-line client: asks the running validator, prints the answer, exits 0/1/2.
async fn cutover(
    cfg: &Config,
    until: &str,
    timeout: std::time::Duration,
    out: &std::path::Path,
) -> Result<ExitCode, Error> {
    binlog_validator::control::api::cutover::Until::parse(until).map_err(|m| Error::Config(format!("--until: {m}")))?;
    let body = serde_json::json!({"until": until, "timeout_ms": timeout.as_millis() as u64});
    let answer = binlog_validator::control::api::client::post(
        cfg.http.listen(),
        "/cutover",
        cfg.http.token.as_deref(),
        &body,
        timeout + std::time::Duration::from_secs(60),
    )
    .await?;
    let data = &answer.body["data"];
    let msg = answer.body["msg"].as_str().unwrap_or("");
    let validated = data["validated_through"]["position"].as_str().unwrap_or("nothing yet").to_string();
    match answer.status {
        200 if data["clean"] == true => {
            println!("clean: every change up to {} has a final verdict (validated through {validated}), and no inconsistency is open", data["until"].as_str().unwrap_or(until));
            Ok(ExitCode::SUCCESS)
        }
        200 => {
            let open = data["open"].as_array().cloned().unwrap_or_default();
            let mut by: std::collections::BTreeMap<(String, String), usize> = Default::default();
            for r in &open {
                *by.entry((r["table"].as_str().unwrap_or("?").into(), r["type"].as_str().unwrap_or("?").into()))
                    .or_default() += 1;
            }
            let mut text = String::new();
            for r in &open {
                text.push_str(&r.to_string());
                text.push('\n');
            }
            std::fs::write(out, text)
                .map_err(|e| Error::Config(format!("--out {}: cannot write the open rows: {e}", out.display())))?;
            println!(
                "NOT clean: {} open inconsistencies up to {} (validated through {validated}); listed in {}",
                data["open_count"],
                data["until"].as_str().unwrap_or(until),
                out.display()
            );
            for ((table, kind), n) in by {
                println!("  {table:<30} {kind:<16} {n:>8}");
            }
            if data["untracked"].as_u64().unwrap_or(0) > 0 {
                println!("  and {} reported rows the full ledger could not track", data["untracked"]);
            }
            Ok(ExitCode::from(1))
        }
        503 => {
            println!(
                "not reached within {}: {msg}; waiting for {}, validated through {validated}",
                humantime::format_duration(timeout),
                data["waiting_for"].as_str().unwrap_or(until)
            );
            Ok(ExitCode::from(2))
        }
        s => Err(Error::Config(format!("the validator refused the cutover request ({s}): {msg}"))),
    }
}

/// The reverse sweep on its own; reports after the settle window, then exits 0 (clean) or 1.
async fn sweep(cfg: Config, tables: Vec<String>) -> Result<ExitCode, Error> {
    let shutdown = shutdown_signal();
    let stats = Arc::new(Stats::default());
    let running = Running::start(cfg, stats.clone()).await?;
    let engine = running.engine.clone();
    let plans = engine.select_tables(&tables)?;
    let mut result = Ok(());
    for plan in &plans {
        if let Err(e) = binlog_validator::feed::poll::sweep_table(
            &engine,
            plan,
            binlog_validator::deliver::event::Mode::Poll,
            &shutdown,
        )
        .await
        {
            result = Err(e);
            break;
        }
    }
    let (unsettled, undelivered) = match &result {
        Ok(()) => engine.finish(binlog_validator::deliver::event::Mode::Poll).await?,
        Err(_) => (0, 0),
    };
    running.stop().await;
    if let Err(Error::Interrupted) = result {
        eprintln!("interrupted: the sweep did not reach the end of every table; run it again");
        return Ok(ExitCode::from(2));
    }
    result?;
    let found = stats.base_missing.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("sweep finished: {found} rows on the other side that the base lacks");
    if undelivered > 0 {
        eprintln!(
            "warning: {undelivered} events are not yet delivered; they stay in the outbox and go out at the next start"
        );
    }
    if unsettled > 0 {
        eprintln!("warning: {unsettled} mismatches were still being re-checked; they stay pending in the state store");
        return Ok(ExitCode::from(2));
    }
    Ok(if found > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn full(cfg: Config, tables: Vec<String>, restart: bool, strategy: &str) -> Result<ExitCode, Error> {
    let shutdown = shutdown_signal();
    let running = Running::start(cfg, Arc::new(Stats::default())).await?;
    let opts = FullOptions {
        tables,
        restart,
        progress_bar: std::io::stderr().is_terminal(),
        run: String::new(),
        strategy: Strategy::parse(strategy).unwrap_or_default(),
    };
    let result = run_full(&running.engine, &opts, shutdown).await;
    running.stop().await;
    let summary = match result {
        Ok(s) => s,
        Err(Error::Interrupted) => {
            eprintln!("interrupted: finished ranges are saved; run `binlog-validator full` again to resume, or add --restart to start over");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e),
    };
    eprintln!(
        "full pass finished in {:.1}s{}",
        summary.elapsed.as_secs_f64(),
        if summary.resumed { " (resumed)" } else { "" }
    );
    for t in &summary.tables {
        eprintln!("  {:<30} {:>12} rows compared  (strategy: {})", t.table, t.rows, t.strategy());
    }
    for (kind, n) in &summary.events {
        eprintln!("  {:<30} {:>12}", kind.as_str(), n);
    }
    eprintln!("  {:<30} {:>12}", "resolved within settle", summary.resolved);
    if summary.unsettled > 0 {
        eprintln!(
            "warning: {} mismatches were still being re-checked; they stay pending in the state store",
            summary.unsettled
        );
    }
    if summary.undelivered > 0 {
        eprintln!(
            "warning: {} events are not yet delivered; they stay in the outbox and go out at the next start",
            summary.undelivered
        );
    }
    if summary.unsettled > 0 {
        return Ok(ExitCode::from(2));
    }
    Ok(if summary.events_total() > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
