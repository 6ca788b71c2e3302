#!/usr/bin/env bash
# Full-mode benchmark: a ROWS-row (default 1M), 10-column table pair with 300 injected differences (100 of
# each type), checked by `binlog-validator full` and by `pt-table-sync --print` on the same data, runs
# alternating. Reports the median wall time of each, their ratio, and peak RSS; checks that both found
# the 300 differences.
#
#   scripts/bench-full.sh              # ROWS=1000000 RUNS=5
#   ROWS=100000 RUNS=3 scripts/bench-full.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
RUNS=${RUNS:-5}
SRC=23061
DST=23062
OUT=.testenv/bench
mysql_() { mariadb --no-defaults -h127.0.0.1 -ubv -pbv "$@"; }

scripts/testenv.sh ensure-mariadb
command -v pt-table-sync >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq percona-toolkit >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
scripts/testenv.sh start-mariadb source $SRC base
scripts/testenv.sh start-mariadb target $DST plain
cargo build --release --locked --quiet
mkdir -p $OUT

loaded=$(mysql_ -P$DST -N -e "SELECT n FROM bench.loaded" 2>/dev/null || true)
if [ "$loaded" != "$ROWS" ]; then
  echo "loading $ROWS rows on each side..." >&2
  for port in $SRC $DST; do
    mysql_ -P$port -e "DROP DATABASE IF EXISTS bench; CREATE DATABASE bench CHARACTER SET utf8mb4"
    mysql_ -P$port bench -e "
      SET SESSION sql_log_bin = 0;
      CREATE TABLE t (id BIGINT PRIMARY KEY, a INT, b BIGINT, c VARCHAR(64), d VARCHAR(255), e DECIMAL(12,2),
        f DOUBLE, g DATETIME(6), h TEXT, i DATE);
      INSERT INTO t SELECT seq, seq % 1000, seq * 7919, CONCAT('name-', seq), REPEAT(MD5(seq), 3), seq / 100,
        seq / 7, TIMESTAMPADD(MICROSECOND, seq * 1001, '2026-01-01'), CONCAT('text ', seq, ' ', MD5(seq)),
        DATE_ADD('2000-01-01', INTERVAL seq % 9000 DAY) FROM seq_1_to_$ROWS;"
  done
  # 100 of each type, spread over the key space.
  mysql_ -P$DST bench -e "
    SET SESSION sql_log_bin = 0;
    DELETE FROM t WHERE id % ($ROWS DIV 100) = 1 LIMIT 100;
    UPDATE t SET d = CONCAT(d, 'x') WHERE id % ($ROWS DIV 100) = 2 LIMIT 100;
    INSERT INTO t SELECT $ROWS + seq * 11, 0, 0, 'extra', '', 0, 0, '2026-01-01', '', '2026-01-01' FROM seq_1_to_100;
    CREATE TABLE loaded (n BIGINT); INSERT INTO loaded VALUES ($ROWS);"
  mysql_ -P$SRC bench -e "CREATE TABLE loaded (n BIGINT); INSERT INTO loaded VALUES ($ROWS)"
fi

cat >$OUT/bv.toml <<EOF
[source]
url = "mysql://bv:bv@127.0.0.1:$SRC/bench"
[target]
url = "mysql://bv:bv@127.0.0.1:$DST/bench"
[[table]]
name = "t"
[check]
settle = "0s"
[sink]
kind = "file"
path = "$OUT/events.jsonl"
[state]
dir = "$OUT/state"
EOF

run_bv() {
  rm -rf $OUT/state $OUT/events.jsonl
  /usr/bin/time -f "%e %M" -o $OUT/time target/release/binlog-validator --config $OUT/bv.toml full "$@" 2>$OUT/bv.log || true
  local n
  n=$(wc -l <$OUT/events.jsonl)
  [ "$n" = 300 ] || { echo "binlog-validator found $n differences, expected 300" >&2; exit 1; }
  tail -1 $OUT/time
}

run_pt() {
  /usr/bin/time -f "%e %M" -o $OUT/time pt-table-sync --print --no-check-triggers \
    h=127.0.0.1,P=$SRC,u=bv,p=bv,D=bench,t=t h=127.0.0.1,P=$DST,u=bv,p=bv >$OUT/pt.sql 2>$OUT/pt.log || true
  local n
  n=$(grep -cE '^(DELETE|REPLACE|INSERT|UPDATE)' $OUT/pt.sql || true)
  [ "$n" = 300 ] || { echo "pt-table-sync printed $n statements, expected 300 (see $OUT/pt.log)" >&2; exit 1; }
  tail -1 $OUT/time
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

: >$OUT/bv.times; : >$OUT/rows.times; : >$OUT/pt.times
for r in $(seq "$RUNS"); do
  run_bv >>$OUT/bv.times
  run_pt >>$OUT/pt.times
  run_bv --strategy rows >>$OUT/rows.times
  echo "run $r: full $(tail -1 $OUT/bv.times)  rows $(tail -1 $OUT/rows.times)  pt-table-sync $(tail -1 $OUT/pt.times)  (seconds, peak KB)" >&2
done
bv=$(cut -d' ' -f1 $OUT/bv.times | median)
rows=$(cut -d' ' -f1 $OUT/rows.times | median)
pt=$(cut -d' ' -f1 $OUT/pt.times | median)
bv_rss=$(cut -d' ' -f2 $OUT/bv.times | sort -n | tail -1)
rows_rss=$(cut -d' ' -f2 $OUT/rows.times | sort -n | tail -1)
pt_rss=$(cut -d' ' -f2 $OUT/pt.times | sort -n | tail -1)
cat <<EOF
| tool ($ROWS rows x 10 columns, 300 differences, median of $RUNS) | wall time | vs pt-table-sync | peak RSS |
|---|---|---|---|
| binlog-validator full | ${bv} s | $(awk "BEGIN {printf \"%.2f\", $bv/$pt}")x the time ($(awk "BEGIN {printf \"%.1f\", $pt/$bv}")x faster) | $((bv_rss / 1024)) MB |
| binlog-validator full --strategy rows | ${rows} s | $(awk "BEGIN {printf \"%.2f\", $rows/$pt}")x the time | $((rows_rss / 1024)) MB |
| pt-table-sync --print | ${pt} s | 1 | $((pt_rss / 1024)) MB |
EOF
