//! Binlog-mode load benchmark: while `binlog-validator incr` runs against the pair, writes a sustained
//! load for SECONDS (WRITERS concurrent writers, ROWS rows per transaction, to the source and then the
//! target), leaving every 50th row out of the target. Then waits for the validator to report each of
//! those, and prints: row changes written per second, detection latency from the source commit to the
//! event (`detected_at`) at p50/p95/p99/max, and how long after the load the last one was reported.
//!
//!   cargo run --release --example latency_bench -- SOURCE_URL TARGET_URL EVENTS_FILE SECONDS WRITERS ROWS
//! (scripts/bench-latency.sh starts the validator and runs this.)

use binlog_validator::clock::now_ms;
use mysql_async::prelude::Queryable;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, source, target, events, seconds, writers, per_txn] = args.as_slice() else {
        eprintln!("usage: latency_bench SOURCE_URL TARGET_URL EVENTS_FILE SECONDS WRITERS ROWS");
        std::process::exit(2);
    };
    let (seconds, writers, per_txn): (u64, u64, u64) = (seconds.parse()?, writers.parse()?, per_txn.parse()?);
    let source = mysql_async::Pool::new(source.as_str());
    let target = mysql_async::Pool::new(target.as_str());
    let injected = Arc::new(std::sync::Mutex::new(HashMap::<u64, u64>::new()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (source, target, injected) = (source.clone(), target.clone(), injected.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = source.get_conn().await?;
            let mut t = target.get_conn().await?;
            let mut n = 0u64;
            let insert = |rows: usize| format!("INSERT INTO load_t (id, v) VALUES {}", vec!["(?, ?)"; rows].join(", "));
            while Instant::now() < deadline {
                let ids: Vec<u64> = (0..per_txn).map(|i| w * 1_000_000_000 + n + i).collect();
                n += per_txn;
                let params = |ids: &[u64]| {
                    ids.iter().flat_map(|id| [(*id).into(), (*id).into()]).collect::<Vec<mysql_async::Value>>()
                };
                s.exec_drop(insert(ids.len()), params(&ids)).await?;
                let committed = now_ms();
                let mirrored: Vec<u64> = ids.iter().copied().filter(|id| id % 50 != 7).collect();
                {
                    let mut inj = injected.lock().unwrap();
                    for id in ids.iter().filter(|id| *id % 50 == 7) {
                        inj.insert(*id, committed);
                    }
                }
                if !mirrored.is_empty() {
                    t.exec_drop(insert(mirrored.len()), params(&mirrored)).await?;
                }
            }
            Ok::<u64, mysql_async::Error>(n)
        }));
    }
    let mut written = 0;
    for t in tasks {
        written += t.await??;
    }
    let load_secs = started.elapsed().as_secs_f64();
    let load_end = now_ms();
    let injected = injected.lock().unwrap().clone();
    // Wait until every injected row was reported.
    let wait_until = Instant::now() + Duration::from_secs(120);
    let mut detected: HashMap<u64, u64> = HashMap::new();
    while detected.len() < injected.len() && Instant::now() < wait_until {
        detected.clear();
        for line in std::fs::read_to_string(events).unwrap_or_default().lines() {
            let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let (Some(id), Some(at)) = (e["id"].as_u64(), e["detected_at"].as_str()) else { continue };
            // Only injected rows count: an event for another row (a check that raced its mirror write,
            // with settle 0) must not end the wait early.
            if !injected.contains_key(&id) {
                continue;
            }
            if let Ok(t) = humantime::parse_rfc3339(at) {
                let ms = t.duration_since(UNIX_EPOCH)?.as_millis() as u64;
                detected.entry(id).or_insert(ms);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let false_alarms = std::fs::read_to_string(events)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["id"].as_u64().is_some_and(|id| !injected.contains_key(&id)))
        .count();
    eprintln!("events for rows that were not injected: {false_alarms}");
    let mut lat: Vec<u64> =
        injected.iter().filter_map(|(id, commit)| detected.get(id).map(|d| d.saturating_sub(*commit))).collect();
    lat.sort_unstable();
    let last = injected.keys().filter_map(|id| detected.get(id)).max().copied().unwrap_or(load_end);
    println!(
        "{written} {:.0} {} {} {} {} {} {} {}",
        written as f64 / load_secs,
        injected.len(),
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        last.saturating_sub(load_end)
    );
    Ok(())
}
