//! `compare`: binlog mode and poll mode side by side on the same table under a generated workload, so
//! users see what binlog mode buys them.
//!
//! Each mode runs as its own `incr` child process (so its CPU time and its queries on the base are its
//! own) against a table `bv_compare` that this command creates in both databases. The workload writes
//! rows to the source at a steady rate and mirrors each to the target after `lag`: those mismatches are
//! transient and must not be reported. Every 50th row is never mirrored (`target_missing`) and every
//! 50th (offset) is changed on the source only after it was mirrored (`neq`): those are permanent and
//! must be found. The report gives, per mode, detection latency (injecting commit → event, minus the
//! settle window), recall, false alarms, base queries and rows read per second, and CPU time.

use crate::config::Config;
use crate::db::{quote_ident, Db};
use crate::error::{Error, Result, Side};
use crate::event::now_ms;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

pub const TABLE: &str = "bv_compare";

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
    pub cpu_s: f64,
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
}

fn child_config(cfg: &Config, dir: &Path, settle: Duration, server_id: u32, interval: Duration) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "base = \"{}\"\n[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[[table]]\nname = \"{TABLE}\"\nutime = \"utime\"\n\
         [check]\nsettle = \"{}ms\"\n[binlog]\nserver_id = {server_id}\n[poll]\ninterval = \"{}ms\"\nsweep = \"1h\"\n\
         [sink]\nkind = \"file\"\npath = \"{}\"\n[state]\ndir = \"{}\"\n",
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
    std::fs::write(&config, child_config(cfg, &dir, cfg.check.settle, server_id, cfg.poll.interval))
        .map_err(|e| Error::Config(format!("--out {}: {e}", out.display())))?;
    let exe = std::env::current_exe().map_err(|e| Error::Config(format!("cannot find this program: {e}")))?;
    let mut child = Command::new(exe)
        .args(["--config"])
        .arg(&config)
        .args(["incr", "--mode", mode])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
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
    Ok(Runner { mode, child, log, events: dir.join("events.jsonl") })
}

impl Runner {
    fn log_has(&self, needle: &str) -> bool {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|l| l.contains(needle))
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

    fn stop(mut self) -> (f64, String) {
        let cpu = self.cpu_s();
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        let end = Instant::now() + Duration::from_secs(5);
        while !self.log_has("base load:") && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
        (cpu, log)
    }
}

/// Parses `base load: N queries, M rows read`.
fn base_load(log: &str) -> (u64, u64) {
    let Some(line) = log.lines().rev().find(|l| l.contains("base load:")) else { return (0, 0) };
    let nums: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    (nums.first().copied().unwrap_or(0), nums.get(1).copied().unwrap_or(0))
}

async fn exec(db: &Db, sql: &str, params: Vec<mysql_async::Value>) -> Result<()> {
    db.rows(sql, params, "running the compare workload").await.map(|_| ())
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
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::Config(format!("--out {}: {e}", opts.out.display())))?;
    let runners = vec![
        spawn("binlog", cfg, &opts.out, cfg.binlog.server_id + 1)?,
        spawn("poll", cfg, &opts.out, cfg.binlog.server_id + 2)?,
    ];
    let ready = Instant::now() + Duration::from_secs(60);
    while !(runners[0].log_has("tailing the binlog") && runners[1].log_has("polling")) {
        if Instant::now() > ready {
            let logs: Vec<String> = runners.into_iter().map(|r| r.stop().1).collect();
            return Err(Error::Config(format!("the validators did not start:\n{}", logs.join("\n"))));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(duration = ?opts.duration, rate = opts.rate, lag = ?opts.lag, "workload running");
    // id → commit time (ms) of the write that made it permanently inconsistent
    let injected: Arc<Mutex<HashMap<i64, u64>>> = Arc::default();
    let started = Instant::now();
    let step = Duration::from_secs_f64(1.0 / f64::from(opts.rate.max(1)));
    let mut mirrors = tokio::task::JoinSet::new();
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
        r.map_err(|e| Error::Config(format!("workload task failed: {e}")))??;
    }
    let load_secs = started.elapsed().as_secs_f64();
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
    for r in runners {
        let events = r.events();
        let mode = r.mode;
        let (cpu_s, log) = r.stop();
        let (queries, rows) = base_load(&log);
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
            cpu_s,
        });
    }
    write_report(opts, &results, settle_ms)?;
    Ok(results)
}

/// The terminal table (also the report's table).
pub fn table(results: &[ModeResult]) -> String {
    let mut s = String::from(
        "| mode | latency p50 / p95 / p99 / max (ms) | recall | false alarms | base queries/s | base rows read/s | CPU (s) |\n|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {} | {} / {} / {} / {} | {}/{} ({:.0}%) | {} | {:.1} | {:.1} | {:.2} |\n",
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
            r.cpu_s,
        ));
    }
    s
}

/// Latency distributions as cumulative curves, one per mode.
pub fn svg(results: &[ModeResult]) -> String {
    let (w, h, pad) = (640.0, 360.0, 50.0);
    let max = results.iter().filter_map(|r| r.latencies_ms.last()).copied().max().unwrap_or(1).max(1) as f64;
    let colors = ["#1f77b4", "#d62728"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\">Detection latency, cumulative (minus the settle window)</text>\n\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">latency (ms), axis to {max:.0}</text>\n\
         <text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">share of injected rows</text>\n",
        w / 2.0,
        h - pad,
        w - pad,
        h - pad,
        h - pad,
        w / 2.0,
        h - 12.0,
        h / 2.0,
        h / 2.0,
    );
    for (i, r) in results.iter().enumerate() {
        let n = r.latencies_ms.len().max(1) as f64;
        let points: Vec<String> = r
            .latencies_ms
            .iter()
            .enumerate()
            .map(|(j, l)| {
                let x = pad + (*l as f64 / max) * (w - 2.0 * pad);
                let y = (h - pad) - ((j + 1) as f64 / n) * (h - 2.0 * pad);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let c = colors[i % colors.len()];
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n",
            points.join(" ")
        ));
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{} (p99 {} ms)</text>\n",
            w - pad - 150.0,
            h - pad - 20.0 - 16.0 * i as f64,
            r.mode,
            r.pct(0.99)
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn write_report(opts: &Options, results: &[ModeResult], settle_ms: u64) -> Result<()> {
    let md = format!(
        "# binlog mode vs poll mode\n\nWorkload: {} s at {} rows/s, target lagging by {} ms; every 50th row never mirrored \
         (`target_missing`) and every 50th changed on the source only (`neq`); all other mismatches are lag and must not be \
         reported. Settle window {} ms, subtracted from latencies.\n\n{}\n![latency distributions](latency.svg)\n",
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
    write("latency.svg", &svg(results))
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
            cpu_s: 0.5,
        }
    }

    #[test]
    fn table_and_chart() {
        let res = vec![r("binlog", vec![5, 6, 7, 40]), r("poll", vec![300, 400, 900])];
        let t = table(&res);
        assert!(t.contains("| binlog | 7 / 40 / 40 / 40 | 4/4 (100%) | 0 |"), "{t}");
        assert!(t.contains("| poll | 400 / 900 / 900 / 900 | 3/4 (75%) |"), "{t}");
        let s = svg(&res);
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("binlog (p99 40 ms)"));
        assert_eq!(base_load("x\nbase load: 12 queries, 3400 rows read"), (12, 3400));
    }
}
