#!/usr/bin/env bash
# The demo: starts a local MariaDB pair, seeds two tables with known inconsistencies, runs a full-parity
# pass, and shows the events. Needs no broker (events go to a file; see the config to switch to Kafka).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/testenv.sh ensure-mariadb
scripts/testenv.sh start-mariadb source 23061 base
scripts/testenv.sh start-mariadb target 23062 plain
for port in 23061 23062; do
  mariadb --no-defaults -h127.0.0.1 -P"$port" -ubv -pbv -e "DROP DATABASE IF EXISTS demo; CREATE DATABASE demo CHARACTER SET utf8mb4"
  mariadb --no-defaults -h127.0.0.1 -P"$port" -ubv -pbv demo < fixtures/demo/schema.sql
  mariadb --no-defaults -h127.0.0.1 -P"$port" -ubv -pbv demo < fixtures/demo/seed.sql
done
mariadb --no-defaults -h127.0.0.1 -P23062 -ubv -pbv demo < fixtures/demo/drift.sql
rm -rf .testenv/demo && mkdir -p .testenv/demo
cargo build --locked --quiet
echo "== doctor"
target/debug/binlog-validator --config fixtures/demo/binlog-validator.toml doctor || true
echo "== full"
set +e
target/debug/binlog-validator --config fixtures/demo/binlog-validator.toml full
code=$?
set -e
echo "== exit status $code (0 = consistent, 1 = inconsistencies reported, 2 = could not finish)"
echo "== events (.testenv/demo/events.jsonl)"
cat .testenv/demo/events.jsonl
echo "== the servers keep running on 127.0.0.1:23061 (source) and :23062 (target), user bv/bv;"
echo "   stop them with: scripts/testenv.sh down"
[ "$code" = 1 ]
