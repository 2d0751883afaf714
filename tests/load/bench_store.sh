#!/usr/bin/env bash
# tests/load/bench_store.sh — the store-side benchmark (figures, not pass/fail; options: bench_store.py).
exec /usr/bin/python3 "$(dirname "$0")/bench_store.py" "$@"
