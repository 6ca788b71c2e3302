#!/usr/bin/env bash
# The local test environment: two MariaDB servers on private ports with their own data directories (the
# base one with log_bin, binlog_format=ROW, binlog_row_metadata=FULL) and a Kafka-protocol broker (nisshi).
#
#   scripts/testenv.sh ensure                      install what is missing (MariaDB from Debian, nisshi from crates.io)
#   scripts/testenv.sh ensure-mariadb              install MariaDB only
#   scripts/testenv.sh up                          start the source/target pair and the broker; write .testenv/env
#   scripts/testenv.sh down                        stop everything this script started
#   scripts/testenv.sh start-mariadb NAME PORT base|base-compressed|plain
#   scripts/testenv.sh start-tls-mariadb NAME PORT  a base server that accepts only TLS, with a private CA made
#                                                  here by openssl under $DIR/NAME/tls (see start_tls_mariadb)
#   scripts/testenv.sh stop-mariadb NAME
#   scripts/testenv.sh start-broker NAME PORT
#   scripts/testenv.sh stop-broker NAME
#   scripts/testenv.sh destroy NAME                stop a server or broker and delete its data
#
# Everything lives under $BV_TESTENV_DIR (default: .testenv in the repository).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${BV_TESTENV_DIR:-$ROOT/.testenv}
# Fixed ports stay below Linux's ephemeral range (32768-60999): a port in it can be taken at any moment
# as the local end of some client connection, and the server then fails to bind.
SOURCE_PORT=${BV_TEST_SOURCE_PORT:-23061}
TARGET_PORT=${BV_TEST_TARGET_PORT:-23062}
BROKER_PORT=${BV_TEST_BROKER_PORT:-19092}
NISSHI_VERSION=0.8.1
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf 'testenv: %s\n' "$*" >&2; }
die() { printf 'testenv: error: %s\n' "$*" >&2; exit 1; }

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}

ensure_mariadb() {
  if ! command -v mariadbd >/dev/null 2>&1 || ! command -v mariadb >/dev/null 2>&1 \
    || ! command -v openssl >/dev/null 2>&1; then
    log "installing MariaDB (and openssl, for the TLS server's certificates) from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq mariadb-server mariadb-client openssl >/dev/null
  fi
}

ensure() {
  ensure_mariadb
  if ! command -v nisshi >/dev/null 2>&1; then
    log "building the nisshi broker $NISSHI_VERSION (about 12 minutes, once per machine)"
    cargo install nisshi --version "$NISSHI_VERSION" --locked --no-default-features \
      --features dynostore,libsql --ignore-rust-version
  fi
}

# start_mariadb NAME PORT ROLE [MARIADBD-ARG...]
start_mariadb() {
  local name=$1 port=$2 role=$3
  shift 3
  local extra=("$@")
  local d=$DIR/$name
  command -v mariadbd >/dev/null 2>&1 || die "mariadbd is not installed; run scripts/testenv.sh ensure"
  mkdir -p "$d"
  running "$name" "$port" && return 0
  if [ ! -d "$d/data/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$d/data" --user=root \
      --auth-root-authentication-method=normal --skip-test-db >"$d/install.log" 2>&1 \
      || die "mariadb-install-db failed for $name; see $d/install.log"
  fi
  # BV_MARIADB_BIND / BV_MARIADB_NETNS: the remote benchmark's server listens on a veth address inside a
  # network namespace (scripts/bench-full.sh REMOTE=1); everything else uses loopback.
  local bind=${BV_MARIADB_BIND:-127.0.0.1} netns=()
  [ -n "${BV_MARIADB_NETNS:-}" ] && netns=(ip netns exec "$BV_MARIADB_NETNS")
  local args=(--no-defaults --datadir="$d/data" --port="$port" --bind-address="$bind"
    --socket="$d/sock" --pid-file="$d/pid" --log-error="$d/error.log" --user=root
    --server-id="$port" --skip-name-resolve --max-allowed-packet=1G
    --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=2 --innodb-log-file-size=256M
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci)
  if [ "$role" = base ] || [ "$role" = base-compressed ]; then
    args+=(--log-bin="$d/data/mysql-bin" --binlog-format=ROW --binlog-row-image=FULL
      --binlog-row-metadata=FULL --sync-binlog=0 --expire-logs-days=2)
  fi
  if [ "$role" = base-compressed ]; then
    # Compressed rows and query events (types 165-171) for every event over 10 bytes, the smallest
    # threshold MariaDB allows, so small rows stay plain and larger ones are compressed.
    args+=(--log-bin-compress=ON --log-bin-compress-min-len=10)
  fi
  args+=("${extra[@]}")
  nohup "${netns[@]}" mariadbd "${args[@]}" >"$d/stdout.log" 2>&1 &
  echo $! >"$d/pid"
  wait_for 60 mariadb-admin --no-defaults --socket="$d/sock" -uroot ping \
    || die "$name did not start on port $port; see $d/error.log"
  mariadb --no-defaults --socket="$d/sock" -uroot -e "
    CREATE USER IF NOT EXISTS 'bv'@'127.0.0.1' IDENTIFIED BY 'bv';
    GRANT ALL PRIVILEGES ON *.* TO 'bv'@'127.0.0.1' WITH GRANT OPTION;
    CREATE USER IF NOT EXISTS 'bv'@'localhost' IDENTIFIED BY 'bv';
    GRANT ALL PRIVILEGES ON *.* TO 'bv'@'localhost' WITH GRANT OPTION;
    CREATE USER IF NOT EXISTS 'bv'@'${BV_MARIADB_CLIENT:-127.0.0.1}' IDENTIFIED BY 'bv';
    GRANT ALL PRIVILEGES ON *.* TO 'bv'@'${BV_MARIADB_CLIENT:-127.0.0.1}' WITH GRANT OPTION;"
  log "$name ($role) up on $bind:$port${BV_MARIADB_NETNS:+ (network namespace $BV_MARIADB_NETNS)}"
}

# A private CA and the certificates the TLS tests use, all made here (nothing secret leaves $1):
#   ca.pem/ca.key            the CA that issues the others
#   server.pem/server.key    the server's certificate, for IP 127.0.0.1 only (so `localhost` does not match it)
#   client.pem/client.key    a client certificate for the X509 account (CN=bvx)
#   other-ca.pem             an unrelated CA (a wrong ssl_ca)
make_certs() {
  local t=$1
  command -v openssl >/dev/null 2>&1 || die "openssl is not installed; run scripts/testenv.sh ensure"
  [ -f "$t/client.pem" ] && return 0
  mkdir -p "$t"
  local key=(genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)
  local ca_ext=(-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign")
  openssl "${key[@]}" -out "$t/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$t/ca.key" -subj "/CN=binlog-validator test CA" -days 3650 "${ca_ext[@]}" -out "$t/ca.pem"
  openssl "${key[@]}" -out "$t/other-ca.key" 2>/dev/null
  openssl req -x509 -new -key "$t/other-ca.key" -subj "/CN=unrelated CA" -days 3650 "${ca_ext[@]}" -out "$t/other-ca.pem"
  local who
  for who in server client; do
    openssl "${key[@]}" -out "$t/$who.key" 2>/dev/null
    local cn=127.0.0.1 ext="subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth"
    if [ "$who" = client ]; then
      cn=bvx ext="extendedKeyUsage=clientAuth"
    fi
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$ext" >"$t/$who.ext"
    openssl req -new -key "$t/$who.key" -subj "/CN=$cn" -out "$t/$who.csr"
    openssl x509 -req -in "$t/$who.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial -days 3650 \
      -extfile "$t/$who.ext" -out "$t/$who.pem" 2>/dev/null
  done
  chmod 600 "$t"/*.key
}

# A base server that refuses plain TCP connections (require_secure_transport=ON; its Unix socket stays
# usable for setup), with the certificates of make_certs, the usual `bv` account (password only) and `bvx`
# (password x509-pass) that must also present a client certificate from the CA (REQUIRE X509).
start_tls_mariadb() {
  local name=$1 port=$2
  local t=$DIR/$name/tls
  make_certs "$t"
  start_mariadb "$name" "$port" base --ssl-ca="$t/ca.pem" --ssl-cert="$t/server.pem" --ssl-key="$t/server.key" \
    --require-secure-transport=ON
  mariadb --no-defaults --socket="$DIR/$name/sock" -uroot -e "
    CREATE USER IF NOT EXISTS 'bvx'@'127.0.0.1' IDENTIFIED BY 'x509-pass' REQUIRE X509;
    GRANT ALL PRIVILEGES ON *.* TO 'bvx'@'127.0.0.1';"
  log "$name accepts only TLS; its CA and client certificate are in $t"
}

# Whether a process runs (a zombie, which no parent reaps here, does not).
alive() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $stat != Z* ]]
}

# Whether instance NAME already runs (then says so).
running() {
  local pidfile=$DIR/$1/pid
  if [ -f "$pidfile" ] && alive "$(cat "$pidfile")"; then
    log "$1 already running on port $2"
    return 0
  fi
  return 1
}

stop_pidfile() {
  local pidfile=$1
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  if alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    local end=$((SECONDS + 60))
    while alive "$pid" && [ $SECONDS -lt $end ]; do sleep 0.1; done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$pidfile"
}

stop_mariadb() { stop_pidfile "$DIR/$1/pid"; }

# Stops an instance and deletes its data (for the throw-away servers of single tests).
destroy() {
  stop_pidfile "$DIR/$1/pid"
  rm -rf "${DIR:?}/$1"
}

start_broker() {
  local name=$1 port=$2
  local d=$DIR/$name
  command -v nisshi >/dev/null 2>&1 || die "nisshi is not installed; run scripts/testenv.sh ensure"
  mkdir -p "$d"
  running "$name" "$port" && return 0
  # Its sqlite path is relative to the working directory, and it reads .env and LISTENER_URL-style
  # variables: run it from its own folder with a clean environment and explicit flags.
  (cd "$d" && exec env -i PATH="$PATH" HOME="$HOME" RUST_LOG=warn nohup nisshi broker \
    --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "sqlite://nisshi.db" --group-initial-rebalance-delay 0s >"$d/broker.log" 2>&1) &
  echo $! >"$d/pid"
  wait_for 60 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" || die "broker $name did not start on port $port; see $d/broker.log"
  log "broker $name up on 127.0.0.1:$port"
}

stop_broker() { stop_pidfile "$DIR/$1/pid"; }

up() {
  mkdir -p "$DIR"
  start_mariadb source "$SOURCE_PORT" base
  start_mariadb target "$TARGET_PORT" plain
  start_broker broker "$BROKER_PORT"
  cat >"$DIR/env" <<EOF
BVT_SOURCE_URL=mysql://bv:bv@127.0.0.1:$SOURCE_PORT
BVT_TARGET_URL=mysql://bv:bv@127.0.0.1:$TARGET_PORT
BVT_BROKERS=127.0.0.1:$BROKER_PORT
BVT_TESTENV=$ROOT/scripts/testenv.sh
BVT_TESTENV_DIR=$DIR
EOF
}

down() {
  for p in "$DIR"/*/pid; do
    [ -e "$p" ] && stop_pidfile "$p"
  done
  return 0
}

cmd=${1:-}
shift || true
case "$cmd" in
  ensure) ensure ;;
  ensure-mariadb) ensure_mariadb ;;
  up) up ;;
  down) down ;;
  start-mariadb) start_mariadb "$@" ;;
  start-tls-mariadb) start_tls_mariadb "$@" ;;
  stop-mariadb) stop_mariadb "$@" ;;
  start-broker) start_broker "$@" ;;
  stop-broker) stop_broker "$@" ;;
  destroy) destroy "$@" ;;
  *) die "usage: $0 ensure|up|down|start-mariadb NAME PORT base|plain|start-tls-mariadb NAME PORT|stop-mariadb NAME|start-broker NAME PORT|stop-broker NAME" ;;
esac
