#!/usr/bin/env bash
# Runs every test against real servers: installs what is missing (MariaDB, the nisshi broker, schemathesis
# from PyPI for the API fuzz test), starts the MariaDB pair and the broker on private ports, runs the whole
# test suite, and stops them again.
# A missing or unreachable server fails the integration tests; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/testenv.sh ensure
command -v schemathesis >/dev/null 2>&1 || pip install --quiet --root-user-action=ignore schemathesis
trap 'scripts/testenv.sh down' EXIT
scripts/testenv.sh up
set -a
. .testenv/env
set +a
cargo test --locked "$@"
