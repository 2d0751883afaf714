#!/usr/bin/env bash
# tests/cli/cli.sh BUILD_DIR SRC_DIR — the command line as a person meets it:
# `cpbridge check` accepts the demo pipeline and rejects each broken
# pipeline with the right message and exit code; every command has --help;
# usage errors exit 64; `run` on a database without the schema exits 78 and
# `db init` then makes it runnable; a second run while one holds the lock
# exits 75.
set -u
build=$1
src=$2
bin="$build/core/cpbridge"
fix="$src/tests/fixtures/pipelines"
export CPB_FIXTURE_STAGES="$build/fixture-stages"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

# expect CODE PATTERN -- ARGS...: the exit code and a pattern in the output.
expect() {
  local code=$1 pattern=$2
  shift 3
  local out got
  out=$("$bin" "$@" 2>&1)
  got=$?
  if [[ $got -eq $code ]] && grep -qF -- "$pattern" <<<"$out"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    printf 'FAIL: cpbridge %s\n  want exit %s and "%s"\n  got exit %s:\n%s\n' "$*" "$code" \
      "$pattern" "$got" "$out" >&2
  fi
}

export CPB_DEMO_DB="$tmp/demo.db"
expect 0 "ok" -- check "$src/pipelines/demo.cfg"
expect 0 "source-file" -- check "$src/pipelines/demo.cfg"
expect 66 "cannot read the pipeline file" -- check "$tmp/nope.cfg"
expect 78 "missing-stage.cfg:5: " -- check "$fix/missing-stage.cfg"
expect 78 "source-fiel" -- check "$fix/missing-stage.cfg"
expect 78 "built for ABI 2.0" -- check "$fix/wrong-abi.cfg"
expect 78 "bad-option.cfg:5: stage 'source-file': option 'pattern'" -- check "$fix/bad-option.cfg"
expect 78 "did you mean 'pattern'?" -- check "$fix/unknown-option.cfg"
expect 78 "unknown-option.cfg:6: " -- check "$fix/unknown-option.cfg"
expect 0 "ok" -- check "$fix/unreachable-db.cfg"
expect 69 "" -- check "$fix/unreachable-db.cfg" --connect
expect 78 "syntax error" -- check "$src/tests/fixtures/config/bad-syntax.cfg"

# Help on every command, usage errors.
for verb in run check db stages; do
  expect 0 "usage: cpbridge $verb" -- "$verb" --help
done
expect 0 "Commands:" -- --help
expect 0 "stage ABI 1." -- version
expect 64 "did you mean 'check'" -- chekc
expect 64 "usage: cpbridge run" -- run
expect 64 "--limit wants a positive integer" -- run "$src/pipelines/demo.cfg" --limit 0
expect 64 "--since wants a UTC time" -- run "$src/pipelines/demo.cfg" --since yesterday
expect 64 "usage: cpbridge db" -- db

# A database without the schema; db init; then the run works.
expect 78 "db init" -- run "$src/pipelines/demo.cfg"
expect 0 "schema upgraded from version 0" -- db init "$src/pipelines/demo.cfg"
expect 0 "nothing to do" -- db init "$src/pipelines/demo.cfg"
expect 0 "Counterpoint demo subset" -- db init "$src/pipelines/demo.cfg" --demo
expect 0 "Counterpoint demo subset" -- db init "$src/pipelines/demo.cfg" --demo
expect 0 "ok" -- check "$src/pipelines/demo.cfg" --connect

# The demo run and the operations commands on its database: the samples give
# 8 applied and 4 invalid orders.
expect 1 "applied 8, invalid 4" -- run "$src/pipelines/demo.cfg"
expect 1 "CPBRIDGE WARNING" -- health "$src/pipelines/demo.cfg"
expect 0 "INVALID" -- status "$src/pipelines/demo.cfg"
expect 0 "2010" -- orders "$src/pipelines/demo.cfg" list --state INVALID
expect 0 "item.unknown" -- orders "$src/pipelines/demo.cfg" show samples:2010
expect 66 "" -- orders "$src/pipelines/demo.cfg" show 999999
expect 0 "2011" -- dlq "$src/pipelines/demo.cfg" list
expect 65 "" -- dlq "$src/pipelines/demo.cfg" retry samples:2001
expect 0 "PS_DOC_LIN" -- rollback "$src/pipelines/demo.cfg" samples:2001 --dry-run
expect 0 "APPLIED" -- orders "$src/pipelines/demo.cfg" show samples:2001
expect 0 "ROLLED_BACK" -- rollback "$src/pipelines/demo.cfg" samples:2001 --why "cli test"
expect 0 "ROLLED_BACK" -- orders "$src/pipelines/demo.cfg" show samples:2001
expect 0 "PENDING" -- dlq "$src/pipelines/demo.cfg" retry samples:2001 --why "cli test"
expect 0 "applied 1" -- run "$src/pipelines/demo.cfg"
expect 0 "CANCELLED" -- dlq "$src/pipelines/demo.cfg" cancel samples:2010 --why "test order"
expect 64 "--why" -- dlq "$src/pipelines/demo.cfg" cancel samples:2011
expect 0 "<h1>cpbridge report: demo</h1>" -- report "$src/pipelines/demo.cfg"
for verb in health status orders dlq rollback report; do
  expect 0 "usage: cpbridge $verb" -- "$verb" --help
done

# The lock: hold it with flock(1) while a run starts.
lock="${TMPDIR:-/tmp}/cpbridge-demo.lock"
if command -v flock >/dev/null; then
  flock "$lock" sleep 3 &
  holder=$!
  sleep 0.5
  expect 75 "holds" -- run "$src/pipelines/demo.cfg"
  wait "$holder"
fi

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
