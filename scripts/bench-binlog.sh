#!/usr/bin/env bash
# Binlog decoding benchmark: writes ROWS (default 1M) row changes of a 10-column table to the base's
# binlog, then reads that binlog range with binlog-validator's decoding path (examples/decode_bench.rs)
# and with python-mysql-replication (PyPI mysql-replication), runs alternating, and reports median rows/s
# of each and their ratio.
#
#   scripts/bench-binlog.sh
#   ROWS=200000 RUNS=3 scripts/bench-binlog.sh
#   BENCH_SRC_PORT=23121 BV_TESTENV_DIR=/tmp/bench-env scripts/bench-binlog.sh   # off the test servers' port and dir
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
RUNS=${RUNS:-3}
SRC=${BENCH_SRC_PORT:-23061}
OUT=${BV_TESTENV_DIR:-.testenv}/bench-binlog
mysql_() { mariadb --no-defaults -h127.0.0.1 -ubv -pbv -P$SRC "$@"; }

scripts/testenv.sh ensure-mariadb
python3 -c "import pymysqlreplication" 2>/dev/null || pip install --quiet "mysql-replication>=1.0"
scripts/testenv.sh start-mariadb source $SRC base
cargo build --release --locked --quiet --example decode_bench
mkdir -p $OUT

mysql_ -e "DROP DATABASE IF EXISTS bench_bl; CREATE DATABASE bench_bl CHARACTER SET utf8mb4"
mysql_ bench_bl -e "CREATE TABLE t (id BIGINT PRIMARY KEY, a INT, b BIGINT, c VARCHAR(64), d VARCHAR(255),
  e DECIMAL(12,2), f DOUBLE, g DATETIME(6), h TEXT, i DATE)"
read -r file pos _ < <(mysql_ -N -e "SHOW MASTER STATUS")
echo "writing $ROWS row changes to the binlog from $file:$pos..." >&2
step=10000
for ((from = 1; from <= ROWS; from += step)); do
  to=$((from + step - 1 < ROWS ? from + step - 1 : ROWS))
  mysql_ bench_bl -e "INSERT INTO t SELECT seq, seq % 1000, seq * 7919, CONCAT('name-', seq), REPEAT(MD5(seq), 3),
    seq / 100, seq / 7, TIMESTAMPADD(MICROSECOND, seq * 1001, '2026-01-01'), CONCAT('text ', seq),
    DATE_ADD('2000-01-01', INTERVAL seq % 9000 DAY) FROM seq_${from}_to_${to}"
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
: >$OUT/ours; : >$OUT/values; : >$OUT/images; : >$OUT/versions; : >$OUT/peer
for r in $(seq "$RUNS"); do
  target/release/examples/decode_bench "mysql://bv:bv@127.0.0.1:$SRC/bench_bl" "$file" "$pos" t keys >>$OUT/ours
  target/release/examples/decode_bench "mysql://bv:bv@127.0.0.1:$SRC/bench_bl" "$file" "$pos" t values >>$OUT/values
  target/release/examples/decode_bench "mysql://bv:bv@127.0.0.1:$SRC/bench_bl" "$file" "$pos" t images >>$OUT/images
  target/release/examples/decode_bench "mysql://bv:bv@127.0.0.1:$SRC/bench_bl" "$file" "$pos" t versions >>$OUT/versions
  python3 scripts/bench_decode_peer.py $SRC "$file" "$pos" t bench_bl >>$OUT/peer
  echo "run $r (rows, rows/s): keys $(tail -1 $OUT/ours | cut -d' ' -f1,3); all values $(tail -1 $OUT/values | cut -d' ' -f1,3); normalised images $(tail -1 $OUT/images | cut -d' ' -f1,3); versions $(tail -1 $OUT/versions | cut -d' ' -f1,3); python-mysql-replication $(tail -1 $OUT/peer | cut -d' ' -f1,3)" >&2
done
for f in ours values images versions peer; do
  n=$(cut -d' ' -f1 $OUT/$f | sort -u)
  [ "$n" = "$ROWS" ] || { echo "$f decoded $n rows, expected $ROWS" >&2; exit 1; }
done
ours=$(cut -d' ' -f3 $OUT/ours | median)
values=$(cut -d' ' -f3 $OUT/values | median)
images=$(cut -d' ' -f3 $OUT/images | median)
versions=$(cut -d' ' -f3 $OUT/versions | median)
peer=$(cut -d' ' -f3 $OUT/peer | median)
cat <<EOF
| decoder ($ROWS row changes, 10 columns, median of $RUNS) | rows/s | vs python-mysql-replication |
|---|---|---|
| binlog-validator: every value of every image, normalised, digested, kept per key (binlog mode's path) | $versions | $(awk "BEGIN {printf \"%.1f\", $versions/$peer}")x |
| binlog-validator: keys of every change | $ours | $(awk "BEGIN {printf \"%.1f\", $ours/$peer}")x |
| binlog-validator: every value of every image, normalised | $images | $(awk "BEGIN {printf \"%.1f\", $images/$peer}")x |
| binlog-validator: every value of every row image (mysql_common's row parser) | $values | $(awk "BEGIN {printf \"%.1f\", $values/$peer}")x |
| python-mysql-replication (every value) | $peer | 1 |
EOF
