#!/usr/bin/env bash
# tests/load/bench.sh — cpbridge's benchmarks (figures, not pass/fail):
#   bench.sh --quick     1,000 orders x 5 lines on SQLite and PostgreSQL, once
#   bench.sh --full      the whole matrix, repeated (docs/PERFORMANCE.md)
#   bench.sh --profile   callgrind on 200 orders, statement counts per order
# Options: --build DIR (default build), --json FILE, --keep, --seed N,
# --db sqlite|postgresql|both. Needs a build (scripts/build.sh) with
# core/cpbridge, stages/ and tests/load/floor. The work is in bench.py,
# run with Debian's interpreter (the first python3 on PATH may lack its
# packages).
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/bench.py" "$@"
