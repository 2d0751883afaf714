#!/usr/bin/env bash
# scripts/build.sh — configure and build one build tree.
#   scripts/build.sh [DIR] [CMAKE ARGS...]   default DIR: build
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j "$jobs"
