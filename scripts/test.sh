#!/usr/bin/env bash
# scripts/test.sh — the README's second command and what CI runs: install
# what is missing, build twice (plain, and with AddressSanitizer +
# UndefinedBehaviorSanitizer; and the tests that use threads once more with
# ThreadSanitizer), start the servers the tests need (a
# throwaway PostgreSQL 15 on a free 127.0.0.1 port; the tests start their
# own HTTP, WooCommerce stand-in, webhook and SMTP servers), run every test
# in both builds (unit, stage, end-to-end, concurrency and crash tests, the
# package build), run each fuzz target briefly, run the demo, and stop
# everything again, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/deps.sh --test

jobs=$(nproc 2>/dev/null || echo 2)
scripts/build.sh build
scripts/build.sh build-asan -DCPB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
# ThreadSanitizer: only the tests labelled "threads" and what they load.
cmake -S . -B build-tsan -DCPB_TSAN=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
mapfile -t tsan_tests < <(cd build-tsan && ctest -N -L threads | sed -n 's/^ *Test *#[0-9]*: //p')
cmake --build build-tsan -j "$jobs" --target "${tsan_tests[@]}"

svc=$(mktemp -d /tmp/cpbridge-svc.XXXXXX)
chmod 755 "$svc"
cleanup() {
  "$root/tests/services/pg.sh" stop "$svc/pg" >/dev/null 2>&1 || true
  rm -rf "$svc"
}
trap cleanup EXIT INT TERM
tests/services/pg.sh start "$svc/pg"
# shellcheck disable=SC1091
. "$svc/pg/env"
export CPB_TEST_PG

status=0
for dir in build build-asan; do
  echo "== tests: $dir"
  if ! (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 600); then
    status=1
  fi
done
echo "== tests: build-tsan (ThreadSanitizer, label threads)"
if ! (cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
      ctest --output-on-failure -L threads --timeout 600); then
  status=1
fi
# The fuzz targets (libFuzzer, clang): a short run of each, 30 s; a
# finding fails the run (tests/fuzz/README.md documents longer runs).
echo "== fuzz: tests/fuzz/run.sh 30"
if ! tests/fuzz/run.sh 30; then
  echo "fuzz: FAILED" >&2
  status=1
fi

# The README's first command works too (it reuses the plain build).
echo "== demo: scripts/demo.sh"
if ! scripts/demo.sh >"$svc/demo.log" 2>&1; then
  cat "$svc/demo.log" >&2
  echo "demo: FAILED" >&2
  status=1
elif ! grep -q "applied 8, invalid 4" "$svc/demo.log"; then
  cat "$svc/demo.log" >&2
  echo "demo: unexpected result (want 8 applied, 4 invalid)" >&2
  status=1
elif ! grep -q "records: queued 59, done 59, retrying 0, dead 0" "$svc/demo.log" ||
  ! grep -q "demo: stock pipeline exit code 0" "$svc/demo.log"; then
  cat "$svc/demo.log" >&2
  echo "demo: the stock pipeline did not push the 59 published SKUs" >&2
  status=1
else
  tail -n 3 "$svc/demo.log"
fi

if [[ $status -ne 0 ]]; then
  echo "tests: FAILED" >&2
fi
exit $status
