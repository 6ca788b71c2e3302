#!/usr/bin/env bash
# Binlog-mode load benchmark: starts the MariaDB pair, runs `binlog-validator incr` (release build,
# settle window 0 so the figure is the pipeline's own latency) and a sustained write load on both sides
# with an injected inconsistency every 50 rows, then reports write throughput, detection latency
# (source commit → event) p50/p95/p99/max, and how long the last report trailed the load.
#
#   scripts/bench-latency.sh                              # 20 s, 4 writers, 1 row per transaction
#   SECONDS_LOAD=20 WRITERS=4 ROWS=100 SETTLE_MS=1000 scripts/bench-latency.sh
# With SETTLE_MS > 0 the reported latency has the settle window subtracted.
#
# Besides latency it reports validated changes per second (changes written / (load time + how long the
# last report trailed the load)) and the base queries and rows the validator read per validated change
# (its /stats, read just before it stops).
#
# Ports and the server directory can be moved off the test servers' (23061/23062, .testenv), and another
# build of the validator run on the same load (an older commit's, side by side):
#   BENCH_SRC_PORT=23121 BENCH_DST_PORT=23122 BV_TESTENV_DIR=/tmp/bench-env scripts/bench-latency.sh
#   BENCH_BIN=../old/target/release/binlog-validator ROWS=100 SECONDS_LOAD=15 scripts/bench-latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECONDS_LOAD:-20}
WRITERS=${WRITERS:-4}
ROWS=${ROWS:-1}
SETTLE_MS=${SETTLE_MS:-0}
SRC=${BENCH_SRC_PORT:-23061}
DST=${BENCH_DST_PORT:-23062}
API=${BENCH_API_PORT:-$((SRC + 1000))}
OUT=${BV_TESTENV_DIR:-.testenv}/bench-latency
BIN=${BENCH_BIN:-target/release/binlog-validator}
mysql_() { mariadb --no-defaults -h127.0.0.1 -ubv -pbv "$@"; }

scripts/testenv.sh ensure-mariadb
scripts/testenv.sh start-mariadb source $SRC base
scripts/testenv.sh start-mariadb target $DST plain
[ -n "${BENCH_BIN:-}" ] || cargo build --release --locked --quiet
cargo build --release --locked --quiet --example latency_bench
rm -rf $OUT && mkdir -p $OUT
for port in $SRC $DST; do
  mysql_ -P$port -e "DROP DATABASE IF EXISTS bench_lat; CREATE DATABASE bench_lat;
    CREATE TABLE bench_lat.load_t (id BIGINT UNSIGNED PRIMARY KEY, v BIGINT)"
done
cat >$OUT/bv.toml <<EOF
[source]
url = "mysql://bv:bv@127.0.0.1:$SRC/bench_lat"
[target]
url = "mysql://bv:bv@127.0.0.1:$DST/bench_lat"
[[table]]
name = "load_t"
[check]
settle = "${SETTLE_MS}ms"
[binlog]
server_id = 9100
[sink]
kind = "file"
path = "$OUT/events.jsonl"
[state]
dir = "$OUT/state"
[http]
listen = "127.0.0.1:$API"
EOF
# BV_* variables are config overrides to the validator: the server directory's is not one.
env -u BV_TESTENV_DIR "$BIN" --config $OUT/bv.toml incr 2>$OUT/incr.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "tailing the binlog" $OUT/incr.log && break; sleep 0.1; done
read -r written rate injected found p50 p95 p99 max trail < <(target/release/examples/latency_bench \
  "mysql://bv:bv@127.0.0.1:$SRC/bench_lat" "mysql://bv:bv@127.0.0.1:$DST/bench_lat" $OUT/events.jsonl "$SECS" "$WRITERS" "$ROWS")
stats=$(curl -sf "http://127.0.0.1:$API/stats" || echo '{}')
kill -TERM $pid
wait $pid || true
read -r queries rows_read checked < <(python3 -c '
import json, sys
d = json.loads(sys.argv[1]).get("data", {})
print(d.get("base_queries", 0), d.get("base_rows_read", 0), d.get("row_changes", {}).get("checked", 0))' "$stats")
[ "$found" = "$injected" ] || { echo "only $found of $injected injected rows were reported" >&2; exit 1; }
minus() { echo $(( $1 > SETTLE_MS ? $1 - SETTLE_MS : 0 )); }
p50=$(minus "$p50"); p95=$(minus "$p95"); p99=$(minus "$p99"); max=$(minus "$max")
cat <<EOF
| binlog mode under load ($WRITERS writers x $ROWS rows per transaction, ${SECS}s, settle ${SETTLE_MS} ms) | value |
|---|---|
| row changes written to the source (and mirrored) | $written ($rate/s) |
| injected inconsistencies reported | $found of $injected |
| detection latency, commit to event, minus the settle window: p50 / p95 / p99 / max | $p50 / $p95 / $p99 / $max ms |
| last report after the load ended | $trail ms |
| validated changes per second: written / (load + last report's trail) | $(awk "BEGIN {printf \"%.0f\", $written / ($SECS + $trail / 1000)}") |
| base queries / rows read per validated change (row changes checked: $checked) | $(awk "BEGIN {c = $checked > 0 ? $checked : 1; printf \"%.4f / %.4f\", $queries / c, $rows_read / c}") |
EOF
