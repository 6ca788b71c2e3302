//! `compare`: both modes side by side under the built-in workload, report checked for its figures.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn compare_reports_latency_recall_false_alarms_load_and_cpu_for_both_modes() {
    let p = Pair::new("compare").await;
    p.both("CREATE TABLE placeholder (id INT PRIMARY KEY)").await;
    p.config("", "[check]\nsettle = \"300ms\"\n[poll]\ninterval = \"200ms\"\n[binlog]\nserver_id = 9301\n[[table]]\nname = \"placeholder\"\n");
    let out_dir = p.dir.path().join("report");
    let out = p.run_for(
        &["compare", "--duration", "4s", "--rate", "50", "--lag", "30ms", "--out", out_dir.to_str().unwrap()],
        std::time::Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    for mode in ["binlog", "poll"] {
        let row = report.lines().find(|l| l.starts_with(&format!("| {mode} |"))).unwrap_or_else(|| panic!("{report}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | mode | latency | recall | false alarms | queries/s | rows/s | queries / rows per change | cpu | hot row |
        let lat: Vec<u64> = cells[2].split(" / ").map(|x| x.parse().unwrap()).collect();
        assert_eq!(lat.len(), 4, "{row}");
        assert!(lat[0] <= lat[1] && lat[1] <= lat[2] && lat[2] <= lat[3], "percentiles in order: {row}");
        assert!(cells[3].ends_with("(100%)"), "every injected inconsistency found: {row}");
        assert_eq!(cells[4], "0", "no false alarms from lag: {row}");
        assert!(cells[5].parse::<f64>().unwrap() > 0.0, "queries on the base counted: {row}");
        let per_change: Vec<f64> = cells[7].split(" / ").map(|x| x.parse().unwrap()).collect();
        assert_eq!(per_change.len(), 2, "{row}");
        assert!(cells[8].parse::<f64>().unwrap() >= 0.0, "{row}");
        // The hot row whose target copy stopped half-way (2 s in, while it is written every 10 ms).
        let hot = cells[9];
        assert!(hot.ends_with("(while written)") || hot.ends_with("(after the writes stopped)"), "{row}");
        if mode == "poll" {
            // Poll mode's settle rule (observed.rs) sees the copy's utime fall behind while the row is written.
            assert!(hot.ends_with("(while written)"), "{row}");
        }
    }
    let svg = std::fs::read_to_string(out_dir.join("latency.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() >= 2, "{svg}");
    assert!(
        svg.contains("binlog (p99") && svg.contains("poll (p99") && svg.contains("latency (ms)"),
        "legend and axes: {svg}"
    );
    assert!(text(&out).contains("| binlog |"), "the table is printed on the terminal");
}
