#!/usr/bin/env bash
# Full-mode benchmark: a ROWS-row (default 1M), 10-column table pair with 300 injected differences (100 of
# each type), checked by `binlog-validator full` (default strategy, and each strategy), by
# `pt-table-sync --print` and (remote mode) by `reladiff` on the same data, runs alternating. Reports the
# median wall time of each, its ratio to pt-table-sync, the CPU time it cost each MariaDB server (median,
# from /proc: what a tool costs production, and on a machine running both servers what bounds it), its
# own CPU time, and peak RSS; checks that every tool found exactly the 300 differences. Two tables: `t` (ids 1..ROWS) and `s`, the same rows plus 100 stray ids near
# 2*ROWS (keys not spread evenly).
#
#   scripts/bench-full.sh                      # local: both servers on loopback, ROWS=1000000 RUNS=5
#   ROWS=100000 RUNS=3 scripts/bench-full.sh
#   REMOTE=1 scripts/bench-full.sh             # the target behind a shaped link (RATE, default 100mbit)
#
# Remote mode needs root (or CAP_NET_ADMIN), iproute2 (`ip netns`, veth) and `tc` with the tbf qdisc: it
# makes the network namespace $NS with a veth pair 10.200.0.1/30 (here) - 10.200.0.2/30 (inside), shapes
# each direction with `tc qdisc ... tbf rate $RATE`, runs the target's MariaDB inside the namespace, and
# removes all of it at exit. It installs reladiff from PyPI (pip) when missing. NS, VETH (name prefix of the
# pair, default bvb) and NET (the /30's first three octets, default 10.200.0) move it out of another's way.
#
# Ports and the server directory can be moved off the test servers' (23061/23062, .testenv):
#   BENCH_SRC_PORT=23121 BENCH_DST_PORT=23122 BV_TESTENV_DIR=/tmp/bench-env scripts/bench-full.sh
# Between changes, a subset: TABLES (default "t s"), TOOLS (default "bv rows summary pt", plus reladiff in
# remote mode), and BASE_BIN, another build of binlog-validator run as the tool `base` (default strategy)
# alternating with this one (add `base` to TOOLS):
#   TABLES=t TOOLS="bv base summary pt" BASE_BIN=/tmp/bv-main scripts/bench-full.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
RUNS=${RUNS:-5}
TABLES=${TABLES:-t s}
BASE_BIN=${BASE_BIN:-}
REMOTE=${REMOTE:-0}
RATE=${RATE:-100mbit}
NS=${NS:-bvbench}
SRC=${BENCH_SRC_PORT:-23061}
DST=${BENCH_DST_PORT:-23062}
DIR=${BV_TESTENV_DIR:-.testenv}
OUT=$DIR/bench
# The veth pair's names and addresses (remote mode), movable so that two benchmarks can run at once.
VETH=${VETH:-bvb}
NET=${NET:-10.200.0}
SRC_HOST=127.0.0.1
DST_HOST=127.0.0.1
DST_NAME=target
mysql_() { mariadb --no-defaults -ubv -pbv "$@"; }

scripts/testenv.sh ensure-mariadb
command -v pt-table-sync >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq percona-toolkit >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

if [ "$REMOTE" = 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "REMOTE=1 needs root (ip netns, veth, tc)" >&2; exit 2; }
  command -v reladiff >/dev/null || pip install -q 'reladiff[mysql]'
  DST_HOST=$NET.2
  DST_NAME=target-net
  cleanup() {
    scripts/testenv.sh stop-mariadb $DST_NAME || true
    ip netns del "$NS" 2>/dev/null || true
    ip link del ${VETH}0 2>/dev/null || true
  }
  trap cleanup EXIT
  cleanup
  ip netns add "$NS"
  ip link add ${VETH}0 type veth peer name ${VETH}1
  ip link set ${VETH}1 netns "$NS"
  ip addr add $NET.1/30 dev ${VETH}0
  ip link set ${VETH}0 up
  ip netns exec "$NS" ip addr add $NET.2/30 dev ${VETH}1
  ip netns exec "$NS" ip link set ${VETH}1 up
  ip netns exec "$NS" ip link set lo up
  tc qdisc add dev ${VETH}0 root tbf rate "$RATE" burst 256kb latency 50ms
  ip netns exec "$NS" tc qdisc add dev ${VETH}1 root tbf rate "$RATE" burst 256kb latency 50ms
  echo "link: $NET.1 <-> $NET.2 ($NS), $RATE each way" >&2
fi

scripts/testenv.sh start-mariadb source "$SRC" base
if [ "$REMOTE" = 1 ]; then
  BV_MARIADB_NETNS=$NS BV_MARIADB_BIND=$DST_HOST BV_MARIADB_CLIENT=$NET.1 \
    scripts/testenv.sh start-mariadb $DST_NAME "$DST" plain
else
  scripts/testenv.sh start-mariadb $DST_NAME "$DST" plain
fi
cargo build --release --locked --quiet
mkdir -p "$OUT"
SRC_=(-h$SRC_HOST -P$SRC)
DST_=(-h$DST_HOST -P$DST)

loaded=$(mysql_ "${DST_[@]}" -N -e "SELECT n FROM bench.loaded" 2>/dev/null || true)
if [ "$loaded" != "$ROWS" ]; then
  echo "loading $ROWS rows on each side..." >&2
  for side in SRC_ DST_; do
    declare -n conn=$side
    mysql_ "${conn[@]}" -e "DROP DATABASE IF EXISTS bench; CREATE DATABASE bench CHARACTER SET utf8mb4"
    mysql_ "${conn[@]}" bench -e "
      SET SESSION sql_log_bin = 0;
      CREATE TABLE t (id BIGINT PRIMARY KEY, a INT, b BIGINT, c VARCHAR(64), d VARCHAR(255), e DECIMAL(12,2),
        f DOUBLE, g DATETIME(6), h TEXT, i DATE);
      INSERT INTO t SELECT seq, seq % 1000, seq * 7919, CONCAT('name-', seq), REPEAT(MD5(seq), 3), seq / 100,
        seq / 7, TIMESTAMPADD(MICROSECOND, seq * 1001, '2026-01-01'), CONCAT('text ', seq, ' ', MD5(seq)),
        DATE_ADD('2000-01-01', INTERVAL seq % 9000 DAY) FROM seq_1_to_$ROWS;"
  done
  unset -n conn
  # 100 of each type, spread over the key space.
  mysql_ "${DST_[@]}" bench -e "
    SET SESSION sql_log_bin = 0;
    DELETE FROM t WHERE id % ($ROWS DIV 100) = 1 LIMIT 100;
    UPDATE t SET d = CONCAT(d, 'x') WHERE id % ($ROWS DIV 100) = 2 LIMIT 100;
    INSERT INTO t SELECT $ROWS + seq * 11, 0, 0, 'extra', '', 0, 0, '2026-01-01', '', '2026-01-01' FROM seq_1_to_100;"
  # The skewed table: the same rows (so the same differences) plus 100 stray ids near 2*ROWS on both sides.
  for side in SRC_ DST_; do
    declare -n conn=$side
    mysql_ "${conn[@]}" bench -e "
      SET SESSION sql_log_bin = 0;
      CREATE TABLE s LIKE t;
      INSERT INTO s SELECT * FROM t;
      INSERT INTO s SELECT 2 * $ROWS + seq * 3, 1, 1, 'stray', '', 0, 0, '2026-01-01', '', '2026-01-01' FROM seq_1_to_100;
      ANALYZE TABLE t, s;
      CREATE TABLE loaded (n BIGINT); INSERT INTO loaded VALUES ($ROWS);" >/dev/null
  done
  unset -n conn
fi

# Both tables through both servers' buffer pools before anything is timed: a freshly started server
# (the target, in remote mode) otherwise charges its first reads to whichever tool runs first.
for side in SRC_ DST_; do
  declare -n conn=$side
  mysql_ "${conn[@]}" bench -N -e "SELECT COUNT(*), SUM(LENGTH(d) + LENGTH(h)) FROM t; SELECT COUNT(*), SUM(LENGTH(d) + LENGTH(h)) FROM s" >/dev/null
done
unset -n conn

config() {
  cat >"$OUT/bv.toml" <<EOF
[source]
url = "mysql://bv:bv@$SRC_HOST:$SRC/bench"
[target]
url = "mysql://bv:bv@$DST_HOST:$DST/bench"
[[table]]
name = "t"
[[table]]
name = "s"
[check]
settle = "0s"
[sink]
kind = "file"
path = "$OUT/events.jsonl"
[state]
dir = "$OUT/state"
EOF
}
config

# Both servers' CPU seconds so far (user + system), "source target": what a tool costs the servers.
server_cpu() {
  local out=""
  for name in source $DST_NAME; do
    out+=" $(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$(cat "$DIR/$name/pid")/stat")"
  done
  echo "$out"
}

# timed CMD...: runs it under /usr/bin/time; writes "seconds peak-KB source-CPU-s target-CPU-s client-CPU-s"
# to $OUT/timed
timed() {
  local before after
  before=$(server_cpu)
  /usr/bin/time -f "%e %M %U %S" -o "$OUT/time" "$@" || true
  after=$(server_cpu)
  tail -1 "$OUT/time" | awk -v b="$before" -v a="$after" \
    '{split(b, x); split(a, y); printf "%s %s %.2f %.2f %.2f\n", $1, $2, y[1] - x[1], y[2] - x[2], $3 + $4}' >"$OUT/timed"
}

# run_bv TABLE [ARGS...]: prints what `timed` measured (BIN: the build to run, default this one's; LABEL:
# its name in the strategy file)
run_bv() {
  local table=$1
  shift
  rm -rf "$OUT/state" "$OUT/events.jsonl"
  # The binary refuses unknown BV_* variables; BV_TESTENV_DIR is this script's.
  timed env -u BV_TESTENV_DIR "${BIN:-target/release/binlog-validator}" --config "$OUT/bv.toml" full \
    --tables "$table" "$@" 2>"$OUT/bv.log"
  local n
  n=$(wc -l <"$OUT/events.jsonl")
  [ "$n" = 300 ] || { echo "binlog-validator $* found $n differences in $table, expected 300 (see $OUT/bv.log)" >&2; exit 1; }
  grep -o 'strategy: [a-z0-9 ,]*' "$OUT/bv.log" >"$OUT/strategy.$table.${LABEL:-${1:-auto}}.${2:-}" || true
  cat "$OUT/timed"
}

run_pt() {
  timed pt-table-sync --print --no-check-triggers \
    h=$SRC_HOST,P=$SRC,u=bv,p=bv,D=bench,t="$1" h=$DST_HOST,P=$DST,u=bv,p=bv >"$OUT/pt.sql" 2>"$OUT/pt.log"
  local n
  n=$(grep -cE '^(DELETE|REPLACE|INSERT|UPDATE)' "$OUT/pt.sql" || true)
  [ "$n" = 300 ] || { echo "pt-table-sync printed $n statements for $1, expected 300 (see $OUT/pt.log)" >&2; exit 1; }
  cat "$OUT/timed"
}

run_reladiff() {
  timed reladiff "mysql://bv:bv@$SRC_HOST:$SRC/bench" "$1" \
    "mysql://bv:bv@$DST_HOST:$DST/bench" "$1" -k id -c a -c b -c c -c d -c e -c f -c g -c h -c i \
    >"$OUT/reladiff.out" 2>"$OUT/reladiff.log"
  local n
  n=$(awk '$1 == "+" || $1 == "-" {sub(",", "", $2); print $2}' "$OUT/reladiff.out" | sort -u | wc -l)
  [ "$n" = 300 ] || { echo "reladiff found $n differing keys in $1, expected 300 (see $OUT/reladiff.log)" >&2; exit 1; }
  cat "$OUT/timed"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# bench TABLE: alternating runs of every tool on one table, then its Markdown rows.
bench() {
  local table=$1
  local tools=(bv rows summary pt)
  [ "$REMOTE" = 1 ] && tools+=(reladiff)
  [ -n "${TOOLS:-}" ] && read -ra tools <<<"$TOOLS"
  for tool in "${tools[@]}"; do : >"$OUT/$tool.times"; done
  for r in $(seq "$RUNS"); do
    # What ran before a tool matters: `full` right after pt-table-sync or reladiff measured 0.1-0.2 s
    # slower, with 0.1-0.2 s more system CPU, than the same work right after another `full`. So every
    # timed run follows the same untimed one (`full --strategy summary` of the table), and the order
    # turns each round.
    local others=() order=()
    for tool in "${tools[@]}"; do [ "$tool" = pt ] || others+=("$tool"); done
    for tool in "${tools[@]}"; do [ "$tool" = pt ] && order+=(pt); done
    local n=${#others[@]}
    for i in $(seq 0 $((n - 1))); do order+=("${others[$(((i + r - 1) % n))]}"); done
    for tool in "${order[@]}"; do
      LABEL=prepare run_bv "$table" --strategy summary >/dev/null
      case $tool in
        bv) run_bv "$table" >>"$OUT/bv.times" ;;
        base) BIN=$BASE_BIN LABEL=base run_bv "$table" >>"$OUT/base.times" ;;
        rows) run_bv "$table" --strategy rows >>"$OUT/rows.times" ;;
        summary) run_bv "$table" --strategy summary >>"$OUT/summary.times" ;;
        pt) run_pt "$table" >>"$OUT/pt.times" ;;
        reladiff) run_reladiff "$table" >>"$OUT/reladiff.times" ;;
      esac
    done
    local line="run $r ($table):"
    for tool in "${tools[@]}"; do line+="  $tool $(tail -1 "$OUT/$tool.times")"; done
    echo "$line  (seconds, peak KB, source, target and client CPU seconds)" >&2
  done
  local pt
  pt=$(cut -d' ' -f1 "$OUT/pt.times" | median)
  for tool in "${tools[@]}"; do
    local t rss name
    t=$(cut -d' ' -f1 "$OUT/$tool.times" | median)
    rss=$(cut -d' ' -f2 "$OUT/$tool.times" | sort -n | tail -1)
    local cpu_src cpu_dst cpu_client
    cpu_src=$(cut -d' ' -f3 "$OUT/$tool.times" | median)
    cpu_dst=$(cut -d' ' -f4 "$OUT/$tool.times" | median)
    cpu_client=$(cut -d' ' -f5 "$OUT/$tool.times" | median)
    case $tool in
      bv) name="binlog-validator full ($(cat "$OUT/strategy.$table.auto." 2>/dev/null | head -1))" ;;
      base) name="$BASE_BIN full ($(cat "$OUT/strategy.$table.base." 2>/dev/null | head -1))" ;;
      rows) name="binlog-validator full --strategy rows" ;;
      summary) name="binlog-validator full --strategy summary" ;;
      pt) name="pt-table-sync --print" ;;
      reladiff) name="reladiff (bisection factor 32, threshold 16384)" ;;
    esac
    echo "| $table | $name | ${t} s | $(awk "BEGIN {printf \"%.2f\", $t/$pt}")x | $cpu_src + $cpu_dst s | $cpu_client s | $((rss / 1024)) MB |"
  done
}

where="one machine"
[ "$REMOTE" = 1 ] && where="target behind a $RATE link"
echo "| table ($ROWS rows x 10 columns, 300 differences, $where, median of $RUNS) | tool | wall time | vs pt-table-sync | server CPU (source + target) | client CPU | peak RSS |"
echo "|---|---|---|---|---|---|---|"
for table in $TABLES; do bench "$table"; done
