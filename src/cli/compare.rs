//! `compare` (part of the command-line program, not of the library): binlog mode and poll mode side by side on the same table under a generated workload, so
//! users see what binlog mode buys them.
//!
//! Each mode runs as its own `incr` child process (so its CPU time and its queries on the base are its
//! own) against a table `bv_compare` that this command creates in both databases. The workload writes
//! rows to the source at a steady rate and mirrors each to the target after `lag`: those mismatches are
//! transient and must not be reported. Every 50th row is never mirrored (`target_missing`) and every
//! 50th (offset) is changed on the source only after it was mirrored (`neq`): those are permanent and
//! must be found. Three hot rows are updated every 10 ms on the source and replayed on the target `lag`
//! later in order (the same statements and values); half-way through, one hot row's target copy stops
//! receiving them: an inconsistency of a row still being written, which a mode finds either while the
//! writes go on or only after they stop. The report gives, per mode, detection latency (injecting commit
//! → event, minus the settle window), recall, false alarms, base queries and rows read per second and per
//! row change written (from the workload's start, so the validators' own start-up is not counted), CPU
//! time, and when the hot row was reported. Each child's log is kept beside its events (`incr.log`;
//! `BV_LOG` is passed on, e.g. `binlog_validator::mysql::db=debug` names every query's purpose).

use binlog_validator::clock::now_ms;
use binlog_validator::config::Config;
use binlog_validator::error::{Error, Result, Side};
use binlog_validator::mysql::db::{quote_ident, Db};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

pub const TABLE: &str = "bv_compare";

/// The hot rows' ids (beyond any id the steady workload reaches); the first one's target copy stops.
const HOT: [i64; 3] = [1_000_000_001, 1_000_000_002, 1_000_000_003];
const HOT_EVERY: Duration = Duration::from_millis(10);

#[derive(Clone, Debug)]
pub struct Options {
    pub duration: Duration,
    /// rows written per second
    pub rate: u32,
    /// how long the target trails the source
    pub lag: Duration,
    pub out: PathBuf,
}

/// One mode's figures.
#[derive(Debug, Clone)]
pub struct ModeResult {
    pub mode: &'static str,
    pub latencies_ms: Vec<u64>,
    pub injected: usize,
    pub found: usize,
    pub false_alarms: usize,
    pub queries_per_s: f64,
    pub rows_per_s: f64,
    /// base queries and rows read per row change the workload wrote to the source
    pub queries_per_change: f64,
    pub rows_per_change: f64,
    pub cpu_s: f64,
    /// the stopped hot row: reported how long after its divergence (ms), and whether the writes still went on
    pub hot: Option<(u64, bool)>,
}

impl ModeResult {
    fn pct(&self, p: f64) -> u64 {
        let v = &self.latencies_ms;
        if v.is_empty() {
            return 0;
        }
        v[((v.len() - 1) as f64 * p).round() as usize]
    }
}

struct Runner {
    mode: &'static str,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    events: PathBuf,
    /// where its HTTP API listens: readiness and base load are read there, not from its log
    api: String,
}

fn child_config(cfg: &Config, dir: &Path, settle: Duration, server_id: u32, interval: Duration, api: &str) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "base = \"{}\"\n[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[[table]]\nname = \"{TABLE}\"\nutime = \"utime\"\n\
         [check]\nsettle = \"{}ms\"\n[binlog]\nserver_id = {server_id}\n[poll]\ninterval = \"{}ms\"\nsweep = \"1h\"\n\
         [sink]\nkind = \"file\"\npath = \"{}\"\n[state]\ndir = \"{}\"\n[http]\nlisten = \"{api}\"\n",
        cfg.base,
        esc(&cfg.source.url),
        esc(&cfg.target.url),
        settle.as_millis(),
        interval.as_millis(),
        esc(&dir.join("events.jsonl").display().to_string()),
        esc(&dir.join("state").display().to_string()),
    )
}

fn spawn(mode: &'static str, cfg: &Config, out: &Path, server_id: u32) -> Result<Runner> {
    let dir = out.join(mode);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::Config(format!("--out {}: {e}", out.display())))?;
    let config = dir.join("binlog-validator.toml");
    // A free loopback port for its API (bound and released here; the child binds it right away).
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| Error::Config(format!("no free loopback port for the {mode} validator's API: {e}")))?
        .to_string();
    std::fs::write(&config, child_config(cfg, &dir, cfg.check.settle, server_id, cfg.poll.interval, &api))
        .map_err(|e| Error::Config(format!("--out {}: {e}", out.display())))?;
    let exe = std::env::current_exe().map_err(|e| Error::Config(format!("cannot find this program: {e}")))?;
    let mut child = Command::new(exe)
        .args(["--config"])
        .arg(&config)
        .args(["incr", "--mode", mode])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(std::env::var("BV_LOG").ok().map(|l| ("BV_LOG", l)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Config(format!("cannot start the {mode} validator: {e}")))?;
    let log = Arc::new(Mutex::new(Vec::new()));
    if let Some(stderr) = child.stderr.take() {
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(std::result::Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
    }
    Ok(Runner { mode, child, log, events: dir.join("events.jsonl"), api })
}

impl Runner {
    /// Whether its validation runs (its API answers, and the start position is fixed before it does).
    async fn ready(&self) -> bool {
        match binlog_validator::control::api::client::get(&self.api, "/status", None, Duration::from_secs(5)).await {
            Ok(a) => a.body["data"]["incr"]["running"] == true,
            Err(_) => false,
        }
    }

    /// Queries and rows read on the base so far.
    async fn base_load(&self) -> (u64, u64) {
        match binlog_validator::control::api::client::get(&self.api, "/stats", None, Duration::from_secs(5)).await {
            Ok(a) => {
                let d = &a.body["data"];
                (d["base_queries"].as_u64().unwrap_or(0), d["base_rows_read"].as_u64().unwrap_or(0))
            }
            Err(_) => (0, 0),
        }
    }

    /// CPU seconds used so far (user + system), from /proc.
    fn cpu_s(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        let ticks: f64 = [11, 12].iter().filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok())).sum();
        ticks / 100.0
    }

    /// Detection time (ms) of each reported key.
    fn events(&self) -> HashMap<i64, (String, u64)> {
        let mut out = HashMap::new();
        for line in std::fs::read_to_string(&self.events).unwrap_or_default().lines() {
            let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let (Some(id), Some(kind), Some(at)) = (e["id"].as_i64(), e["type"].as_str(), e["detected_at"].as_str())
            else {
                continue;
            };
            if let Ok(t) = humantime::parse_rfc3339(at) {
                let ms = t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
                out.entry(id).or_insert((kind.to_string(), ms));
            }
        }
        out
    }

    /// SIGTERM; its CPU time until then, and its log (also written beside its events).
    fn stop(mut self) -> (f64, String) {
        let cpu = self.cpu_s();
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
        if let Some(dir) = self.events.parent() {
            let _ = std::fs::write(dir.join("incr.log"), &log);
        }
        (cpu, log)
    }
}

async fn exec(db: &Db, sql: &str, params: Vec<mysql_async::Value>) -> Result<()> {
    db.rows(sql, params, "running the compare workload").await.map(|_| ())
}

/// The hot rows for `duration`: each write on the source, then on the target once its commit is `lag`
/// old (the replayer waits for the head of its queue). From half-way the target copy of `HOT[0]` gets
/// no more writes. Returns when it diverged (the first write it missed), when the writes ended (ms), and
/// how many row changes it wrote to the source.
async fn hot_rows(source: Arc<Db>, target: Arc<Db>, duration: Duration, lag: Duration) -> Result<(u64, u64, u64)> {
    let t = quote_ident(TABLE);
    let update = move |ids: &[i64]| {
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        format!("UPDATE {t} SET v = ?, utime = ? WHERE id IN ({})", ids.join(", "))
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, String, i64, i64)>();
    let replay = tokio::spawn(async move {
        while let Some((due, sql, v, u)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            exec(&target, &sql, vec![v.into(), u.into()]).await?;
        }
        Ok::<(), Error>(())
    });
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(HOT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut v, mut utime, mut diverged, mut ended) = (0i64, 0i64, None, now_ms());
    while started.elapsed() < duration {
        tick.tick().await;
        v += 1;
        // The same utime on both sides, growing with every write (poll mode's premise).
        utime = (now_ms() as i64).max(utime + 1);
        exec(&source, &update(&HOT), vec![v.into(), utime.into()]).await?;
        let committed = tokio::time::Instant::now();
        ended = now_ms();
        let replayed = if started.elapsed() >= duration / 2 {
            diverged.get_or_insert(ended);
            &HOT[1..]
        } else {
            &HOT[..]
        };
        // The replayer ends only when this sender is dropped.
        let _ = tx.send((committed + lag, update(replayed), v, utime));
    }
    drop(tx);
    replay.await.map_err(|e| Error::Internal(format!("the hot-row replayer failed: {e}")))??;
    Ok((diverged.unwrap_or(ended), ended, v as u64 * HOT.len() as u64))
}

/// Runs the comparison and writes the report. Returns both modes' results.
pub async fn run(cfg: &Config, opts: &Options) -> Result<Vec<ModeResult>> {
    let (source, target) =
        tokio::join!(Db::connect(Side::Source, &cfg.source, 8), Db::connect(Side::Target, &cfg.target, 8));
    let (source, target) = (Arc::new(source?), Arc::new(target?));
    let t = quote_ident(TABLE);
    for db in [&source, &target] {
        exec(db, &format!("DROP TABLE IF EXISTS {t}"), vec![]).await?;
        exec(
            db,
            &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, v BIGINT, utime BIGINT NOT NULL, KEY (utime))"),
            vec![],
        )
        .await?;
    }
    let hot: Vec<String> = HOT.iter().map(|id| format!("({id}, 0, 0)")).collect();
    for db in [&source, &target] {
        exec(db, &format!("INSERT INTO {t} VALUES {}", hot.join(", ")), vec![]).await?;
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::Config(format!("--out {}: {e}", opts.out.display())))?;
    let runners = vec![
        spawn("binlog", cfg, &opts.out, cfg.binlog.server_id + 1)?,
        spawn("poll", cfg, &opts.out, cfg.binlog.server_id + 2)?,
    ];
    let ready = Instant::now() + Duration::from_secs(60);
    while !(runners[0].ready().await && runners[1].ready().await) {
        if Instant::now() > ready {
            let logs: Vec<String> = runners.into_iter().map(|r| r.stop().1).collect();
            return Err(Error::Config(format!("the validators did not start:\n{}", logs.join("\n"))));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(duration = ?opts.duration, rate = opts.rate, lag = ?opts.lag, "workload running");
    // The base load from here on is the workload's (start-up reads schemas and positions).
    let mut load_before = Vec::new();
    for r in &runners {
        load_before.push(r.base_load().await);
    }
    // id → commit time (ms) of the write that made it permanently inconsistent
    let injected: Arc<Mutex<HashMap<i64, u64>>> = Arc::default();
    let started = Instant::now();
    let step = Duration::from_secs_f64(1.0 / f64::from(opts.rate.max(1)));
    let mut mirrors = tokio::task::JoinSet::new();
    let hot = tokio::spawn(hot_rows(source.clone(), target.clone(), opts.duration, opts.lag));
    let mut id: i64 = 0;
    while started.elapsed() < opts.duration {
        id += 1;
        let utime = now_ms() as i64;
        exec(&source, &format!("INSERT INTO {t} VALUES (?, ?, ?)"), vec![id.into(), id.into(), utime.into()]).await?;
        let committed = now_ms();
        if id % 50 == 7 {
            injected.lock().unwrap_or_else(|e| e.into_inner()).insert(id, committed);
        } else {
            let (source, target, injected, t, lag) =
                (source.clone(), target.clone(), injected.clone(), t.clone(), opts.lag);
            mirrors.spawn(async move {
                // The target trails the source: a transient mismatch the validators must not report.
                tokio::time::sleep(lag).await;
                exec(&target, &format!("INSERT INTO {t} VALUES (?, ?, ?)"), vec![id.into(), id.into(), utime.into()])
                    .await?;
                if id % 50 == 33 {
                    let u = now_ms() as i64;
                    exec(&source, &format!("UPDATE {t} SET v = -v, utime = ? WHERE id = ?"), vec![u.into(), id.into()])
                        .await?;
                    injected.lock().unwrap_or_else(|e| e.into_inner()).insert(id, now_ms());
                }
                Ok::<(), Error>(())
            });
        }
        let next = started + step * id as u32;
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
    while let Some(r) = mirrors.join_next().await {
        r.map_err(|e| Error::Internal(format!("a compare workload task failed: {e}")))??;
    }
    let (hot_diverged, hot_ended, hot_changes) =
        hot.await.map_err(|e| Error::Internal(format!("the hot-row workload failed: {e}")))??;
    // Row changes written to the source: the inserts, the `neq` updates, the hot rows' updates.
    let changes = (id + (id + 17) / 50) as u64 + hot_changes;
    let load_secs = started.elapsed().as_secs_f64();
    injected.lock().unwrap_or_else(|e| e.into_inner()).insert(HOT[0], hot_diverged);
    let injected = injected.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // Give both modes time to report everything: settle window, a poll interval, and some slack.
    let wait_until = Instant::now() + cfg.check.settle + cfg.poll.interval * 2 + Duration::from_secs(20);
    while Instant::now() < wait_until
        && !runners.iter().all(|r| {
            let ev = r.events();
            injected.keys().all(|k| ev.contains_key(k))
        })
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settle_ms = cfg.check.settle.as_millis() as u64;
    let mut results = Vec::new();
    for (r, (q0, r0)) in runners.into_iter().zip(load_before) {
        let events = r.events();
        let mode = r.mode;
        let (queries, rows) = r.base_load().await;
        let (queries, rows) = (queries.saturating_sub(q0), rows.saturating_sub(r0));
        let (cpu_s, _) = r.stop();
        let mut latencies: Vec<u64> = injected
            .iter()
            .filter_map(|(id, commit)| {
                events.get(id).map(|(_, at)| at.saturating_sub(*commit).saturating_sub(settle_ms))
            })
            .collect();
        latencies.sort_unstable();
        results.push(ModeResult {
            mode,
            found: latencies.len(),
            latencies_ms: latencies,
            injected: injected.len(),
            false_alarms: events.keys().filter(|k| !injected.contains_key(k)).count(),
            queries_per_s: queries as f64 / load_secs,
            rows_per_s: rows as f64 / load_secs,
            queries_per_change: queries as f64 / changes.max(1) as f64,
            rows_per_change: rows as f64 / changes.max(1) as f64,
            cpu_s,
            hot: events.get(&HOT[0]).map(|(_, at)| (at.saturating_sub(hot_diverged), *at < hot_ended)),
        });
    }
    write_report(opts, &results, settle_ms)?;
    Ok(results)
}

/// The terminal table (also the report's table).
pub fn table(results: &[ModeResult]) -> String {
    let mut s = String::from(
        "| mode | latency p50 / p95 / p99 / max (ms) | recall | false alarms | base queries/s | base rows read/s | base queries / rows read per row change | CPU (s) | hot row stopped on the target: reported after (ms) |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {} | {} / {} / {} / {} | {}/{} ({:.0}%) | {} | {:.1} | {:.1} | {:.4} / {:.4} | {:.2} | {} |\n",
            r.mode,
            r.pct(0.5),
            r.pct(0.95),
            r.pct(0.99),
            r.latencies_ms.last().copied().unwrap_or(0),
            r.found,
            r.injected,
            if r.injected == 0 { 100.0 } else { 100.0 * r.found as f64 / r.injected as f64 },
            r.false_alarms,
            r.queries_per_s,
            r.rows_per_s,
            r.queries_per_change,
            r.rows_per_change,
            r.cpu_s,
            match r.hot {
                Some((ms, true)) => format!("{ms} (while written)"),
                Some((ms, false)) => format!("{ms} (after the writes stopped)"),
                None => "not reported".to_string(),
            },
        ));
    }
    s
}

/// Latency distributions as cumulative curves, one per mode, drawn with plotters: axes with ticks, a
/// caption and a legend.
pub fn svg(results: &[ModeResult]) -> Result<String> {
    use plotters::prelude::*;
    let max = results.iter().filter_map(|r| r.latencies_ms.last()).copied().max().unwrap_or(1).max(1);
    let mut out = String::new();
    let fail = |e: &dyn std::fmt::Display| Error::Config(format!("cannot draw the latency chart: {e}"));
    {
        let root = SVGBackend::with_string(&mut out, (720, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Detection latency, cumulative (minus the settle window)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0u64..max + max / 20 + 1, 0f64..100f64)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("latency (ms)")
            .y_desc("share of injected rows (%)")
            .draw()
            .map_err(|e| fail(&e))?;
        for (i, r) in results.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let n = r.latencies_ms.len().max(1) as f64;
            let points = r.latencies_ms.iter().enumerate().map(|(j, l)| (*l, 100.0 * (j + 1) as f64 / n));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| fail(&e))?
                .label(format!("{} (p99 {} ms)", r.mode, r.pct(0.99)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(out)
}

fn write_report(opts: &Options, results: &[ModeResult], settle_ms: u64) -> Result<()> {
    let md = format!(
        "# binlog mode vs poll mode\n\nWorkload: {} s at {} rows/s, target lagging by {} ms; every 50th row never mirrored \
         (`target_missing`) and every 50th changed on the source only (`neq`); three hot rows updated every 10 ms and \
         replayed as late, one of whose target copy stops receiving the writes half-way (counted as injected, from the \
         first write it missed); all other mismatches are lag and must not be reported. Settle window {} ms, subtracted \
         from latencies.\n\n{}\n![latency distributions](latency.svg)\n",
        opts.duration.as_secs_f64(),
        opts.rate,
        opts.lag.as_millis(),
        settle_ms,
        table(results)
    );
    let write = |name: &str, text: &str| {
        std::fs::write(opts.out.join(name), text)
            .map_err(|e| Error::Config(format!("cannot write {}: {e}", opts.out.join(name).display())))
    };
    write("report.md", &md)?;
    write("latency.svg", &svg(results)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(mode: &'static str, lat: Vec<u64>) -> ModeResult {
        ModeResult {
            mode,
            found: lat.len(),
            latencies_ms: lat,
            injected: 4,
            false_alarms: 0,
            queries_per_s: 1.0,
            rows_per_s: 2.0,
            queries_per_change: 0.0,
            rows_per_change: 0.5,
            cpu_s: 0.5,
            hot: Some((1200, mode == "poll")),
        }
    }

    #[test]
    fn table_and_chart() {
        let res = vec![r("binlog", vec![5, 6, 7, 40]), r("poll", vec![300, 400, 900])];
        let t = table(&res);
        assert!(t.contains("| binlog | 7 / 40 / 40 / 40 | 4/4 (100%) | 0 |"), "{t}");
        assert!(t.contains("| poll | 400 / 900 / 900 / 900 | 3/4 (75%) |"), "{t}");
        assert!(t.contains("| 0.0000 / 0.5000 | 0.50 |"), "{t}");
        assert!(t.contains("| 1200 (while written) |\n") && t.contains("| 1200 (after the writes stopped) |\n"), "{t}");
        let s = svg(&res).unwrap();
        assert!(s.starts_with("<svg"), "{s}");
        assert!(s.matches("<polyline").count() >= 2, "a curve per mode: {s}");
        assert!(s.contains("binlog (p99 40 ms)") && s.contains("poll (p99 900 ms)"), "a legend: {s}");
        assert!(s.contains("latency (ms)") && s.contains("\n900\n"), "an axis with ticks up to the maximum: {s}");
    }
}
