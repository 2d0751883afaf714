#!/usr/bin/env bash
# scripts/demo.sh — the README's first command: install what is missing,
# build, create a fresh demo database (SQLite through the SQLite3 ODBC
# driver, with the Counterpoint development subset and demo data), and run
# the demo pipeline (pipelines/demo.cfg) over the sample orders in
# pipelines/samples/. Its output says what happened to each order.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build >/dev/null
mkdir -p var
rm -f var/demo.db var/demo.db-wal var/demo.db-shm
bin=build/core/cpbridge
"$bin" db init pipelines/demo.cfg --demo
set +e
"$bin" run pipelines/demo.cfg
code=$?
set -e
echo
echo "demo: exit code $code (0 all applied, 1 some orders held for review: see above)"
echo "demo: the database is var/demo.db; try: sqlite3 var/demo.db 'SELECT STATUS, COUNT(*) FROM USER_ORDER_STAGING GROUP BY STATUS'"
if [[ $code -gt 1 ]]; then
  exit "$code"
fi
