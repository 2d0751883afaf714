#!/usr/bin/env bash
# tests/cli/pipetest.sh BUILD_DIR SRC_DIR sqlite|pg — `cpbridge test` end to
# end: the example cases in pipelines/demo-cases pass against the demo
# pipeline's database (sqlite: pipelines/demo.cfg; pg: its twin
# tests/fixtures/pipelines/demo-pg.cfg in a fresh database of the
# CPB_TEST_PG cluster), before and after a real run has staged orders; the
# real database is untouched (sqlite: the file's checksum; pg: row counts
# and no schema left behind); a wrong expectation exits 1 with the
# expected-versus-actual diagnostic; a saved page of two orders passes;
# bad case files are "not ok" naming the file, exit 65; usage 64, missing
# input 66, SQL Server refused 78. pg without CPB_TEST_PG: exit 77 (skip).
set -u
build=$1
src=$2
mode=$3
bin="$build/core/cpbridge"
cases="$src/pipelines/demo-cases"
tmp=$(mktemp -d)
pass=0
fail=0
pgdb=
cleanup() {
  if [[ -n "$pgdb" ]]; then
    psql -X -q -d "$admin_db" -c "DROP DATABASE IF EXISTS $pgdb" >/dev/null 2>&1
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

ok() {
  pass=$((pass + 1))
}
bad() {
  fail=$((fail + 1))
  printf 'FAIL: %s\n' "$*" >&2
}

# expect CODE PATTERN... -- ARGS...: the exit code and every pattern (fixed
# strings) in stdout+stderr of `cpbridge ARGS`.
expect() {
  local code=$1
  shift
  local patterns=()
  while [[ $1 != "--" ]]; do
    patterns+=("$1")
    shift
  done
  shift
  local out got missing=
  out=$("$bin" "$@" 2>&1)
  got=$?
  for p in "${patterns[@]}"; do
    grep -qF -- "$p" <<<"$out" || missing+=" \"$p\""
  done
  if [[ $got -eq $code && -z "$missing" ]]; then
    ok
  else
    bad "cpbridge $*: want exit $code, got $got; missing:${missing:- none}"
    printf '%s\n' "$out" >&2
  fi
}

case $mode in
sqlite)
  export CPB_DEMO_DB="$tmp/demo.db"
  pipeline="$src/pipelines/demo.cfg"
  "$bin" db init "$pipeline" --demo >/dev/null || {
    echo "pipetest: db init failed" >&2
    exit 1
  }
  snapshot() { sha256sum "$CPB_DEMO_DB" | cut -d' ' -f1; }
  ;;
pg)
  if [[ -z "${CPB_TEST_PG:-}" ]]; then
    echo "pipetest: CPB_TEST_PG is not set (tests/services/pg.sh start DIR; . DIR/env): skipped"
    exit 77
  fi
  field() { sed -n "s/.*[;^]*$1=\([^;]*\).*/\1/Ip" <<<";$CPB_TEST_PG"; }
  export PGHOST PGPORT PGUSER PGPASSWORD
  PGHOST=$(field Server)
  PGPORT=$(field Port)
  PGUSER=$(field Uid)
  PGPASSWORD=$(field Pwd)
  admin_db=$(field Database)
  pgdb="pipetest_$$"
  psql -X -q -d "$admin_db" -c "CREATE DATABASE $pgdb" >/dev/null || exit 1
  real_pg=$CPB_TEST_PG
  export CPB_TEST_PG
  CPB_TEST_PG=$(sed "s/\(^\|;\)Database=[^;]*/\1Database=$pgdb/I" <<<"$real_pg")
  pipeline="$src/tests/fixtures/pipelines/demo-pg.cfg"
  "$bin" db init "$pipeline" --demo >/dev/null || {
    echo "pipetest: db init failed" >&2
    exit 1
  }
  # Every table's row count, QTY_ON_SO's sum and the schemas: what a case
  # must leave as it found it.
  snapshot() {
    psql -X -A -t -d "$pgdb" -c "SELECT string_agg(schema_name, ',' ORDER BY schema_name)
      FROM information_schema.schemata" \
      -c "SELECT (SELECT COUNT(*) FROM USER_ORDER_STAGING), (SELECT COUNT(*) FROM PS_DOC_HDR),
      (SELECT COUNT(*) FROM PS_DOC_LIN), (SELECT SUM(QTY_ON_SO) FROM IM_INV),
      (SELECT COUNT(*) FROM USER_SYNC_LOG), (SELECT COUNT(*) FROM USER_ORDER_EVENT),
      (SELECT SUM(NEXT_VAL) FROM USER_DOC_COUNTER)" 2>&1
  }
  ;;
*)
  echo "usage: pipetest.sh BUILD_DIR SRC_DIR sqlite|pg" >&2
  exit 64
  ;;
esac
export TMPDIR="$tmp/scratch"
mkdir -p "$TMPDIR"

leftovers() {
  if [[ -n "$(ls -A "$TMPDIR")" ]]; then
    bad "temporary files left behind: $(ls -A "$TMPDIR")"
    rm -rf "${TMPDIR:?}"/*
  else
    ok
  fi
}

# The examples pass, and the real database is as it was.
before=$(snapshot)
expect 0 "1..3" "ok 1 - applied-multi-line" "ok 2 - applied-single-line" \
  "ok 3 - invalid-unknown-sku" "# skipped after-commit stage 'sync-status'" \
  "staged as source 'samples'" -- test "$pipeline" "$cases"
[[ "$(snapshot)" == "$before" ]] && ok || bad "the real database changed: $before -> $(snapshot)"
leftovers

# A real run stages and applies the samples; the cases still pass (the
# copy's order-state tables start empty) and the run's data is untouched.
"$bin" run "$pipeline" >/dev/null 2>&1
rm -f "$TMPDIR"/cpbridge-*.lock # the real run's own lock
before=$(snapshot)
expect 0 "ok 1 - applied-multi-line" "ok 3 - invalid-unknown-sku" -- test "$pipeline" "$cases"
[[ "$(snapshot)" == "$before" ]] && ok || bad "the real database changed: $before -> $(snapshot)"
leftovers

# --keep leaves each copy, with the case's order in it, staged as --source.
out=$("$bin" test "$pipeline" "$cases" --keep --source other 2>&1)
where=$(sed -n 's/^#   kept the copy: //p' <<<"$out" | sed -n 2p)
case $mode in
sqlite)
  got=$(sqlite3 "$where" "SELECT SOURCE, EXT_ORDER_ID, STATUS FROM USER_ORDER_STAGING" 2>&1)
  rm -rf "${TMPDIR:?}"/cpbridge-test-*
  ;;
pg)
  schema=${where#schema }
  got=$(psql -X -A -t -d "$pgdb" -c "SELECT SOURCE, EXT_ORDER_ID, STATUS FROM $schema.USER_ORDER_STAGING" 2>&1)
  for s in $(sed -n 's/^#   kept the copy: schema //p' <<<"$out"); do
    psql -X -q -d "$pgdb" -c "DROP SCHEMA $s CASCADE" 2>/dev/null
  done
  rm -rf "${TMPDIR:?}"/cpbridge-test-*
  ;;
esac
[[ $got == "other|9001|APPLIED" ]] && ok || bad "--keep --source: the kept copy ($where) holds '$got'"
[[ "$(snapshot)" == "$before" ]] && ok || bad "the real database changed: $before -> $(snapshot)"
leftovers

# A wrong expectation: exit 1, the other cases still pass, expected vs actual.
wrong="$tmp/wrong"
cp -r "$cases" "$wrong"
sed -i 's/"QTY_SOLD": 1,/"QTY_SOLD": 5,/; s/"QTY_ON_SO": 1}/"QTY_ON_SO": 7}/' \
  "$wrong/applied-single-line.expect.json"
sed -i 's/"status": "INVALID"/"status": "APPLIED"/; /"reason"/d' \
  "$wrong/invalid-unknown-sku.expect.json"
expect 1 "ok 1 - applied-multi-line" "not ok 2 - applied-single-line" \
  "#   order 1 (9001) line 1 QTY_SOLD: expected 5.0000, got 1.0000" \
  "#   IM_INV HOODIE-M-GRY at MAIN: QTY_ON_SO expected to change by 7.0000, changed by 1.0000" \
  "not ok 3 - invalid-unknown-sku" \
  "#   order 1 (9003): expected APPLIED, got INVALID (item.unknown: " \
  "# 2 of 3 case(s) failed" -- test "$pipeline" "$wrong"
# The same as JUnit XML: one testcase per case, the two failures with their
# diagnostics; an unwritable report is exit 74.
"$bin" test "$pipeline" "$wrong" --junit "$tmp/junit.xml" >/dev/null 2>&1
/usr/bin/python3 - "$tmp/junit.xml" <<'EOF' && ok || bad "--junit: the report is wrong"
import sys
import xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot().find("testsuite")
cases = suite.findall("testcase")
assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "2", "0"), suite.attrib
assert [c.get("name") for c in cases] == ["applied-multi-line", "applied-single-line",
                                          "invalid-unknown-sku"]
assert cases[0].find("failure") is None
failure = cases[1].find("failure")
assert failure.get("message") == "order 1 (9001) line 1 QTY_SOLD: expected 5.0000, got 1.0000"
assert "QTY_ON_SO expected to change by 7.0000, changed by 1.0000" in failure.text
assert "expected APPLIED, got INVALID (item.unknown" in cases[2].find("failure").get("message")
EOF
expect 74 "cannot write the JUnit report $tmp/none/j.xml" -- test "$pipeline" "$cases" \
  --junit "$tmp/none/j.xml"
# ... also when cases failed: the report a CI reads is missing.
expect 74 "cannot write the JUnit report $tmp/none/j.xml" -- test "$pipeline" "$wrong" \
  --junit "$tmp/none/j.xml"
leftovers
# A line the expectation does not list is shown.
sed -i '/"LIN_SEQ_NO": 4/,/EXT_PRC/d; s/"EXT_PRC": "36.00"},/"EXT_PRC": "36.00"}/' \
  "$wrong/applied-multi-line.expect.json"
expect 1 "not ok 1 - applied-multi-line" \
  "#   order 1 (9002) line 4 not expected: ITEM_NO MUG-CER-350, QTY_SOLD 2" \
  "#   order 1 (9002): expected 3 PS_DOC_LIN row(s), got 4" -- test "$pipeline" "$wrong"
[[ "$(snapshot)" == "$before" ]] && ok || bad "the real database changed: $before -> $(snapshot)"
leftovers

# A saved API page of two orders, with one expectation each.
page="$tmp/page"
mkdir -p "$page"
/usr/bin/python3 - "$cases" "$page" <<'EOF'
import json, sys
cases, page = sys.argv[1], sys.argv[2]
orders = []
for name, new in (("applied-single-line", 9101), ("invalid-unknown-sku", 9102)):
    with open("%s/%s.json" % (cases, name), encoding="utf-8") as f:
        o = json.load(f)
    o["id"], o["number"] = new, str(new)
    orders.append(o)
with open(page + "/page.json", "w", encoding="utf-8") as f:
    json.dump(orders, f)
with open(page + "/page.expect.json", "w", encoding="utf-8") as f:
    json.dump([{"status": "APPLIED", "lines": [{"ITEM_NO": "HOODIE-M-GRY", "QTY_SOLD": "1.0"}],
                "inventory": [{"ITEM_NO": "HOODIE-M-GRY", "LOC_ID": "MAIN", "QTY_ON_SO": 1}]},
               {"status": "INVALID", "reason": "item.unknown"}], f)
EOF
expect 0 "1..1" "ok 1 - page" -- test "$pipeline" "$page"
echo '[{"status": "APPLIED"}]' >"$page/page.expect.json"
expect 1 "not ok 1 - page" "#   $page/page.json staged 2 order(s); $page/page.expect.json expects 1" \
  -- test "$pipeline" "$page"

# Bad case files: "not ok" naming the file, the good cases still run, 65.
badc="$tmp/bad"
cp -r "$cases" "$badc"
printf '{ "id": 1, nope' >"$badc/broken.json"
echo '{"status": "APPLIED"}' >"$badc/broken.expect.json"
cp "$cases/applied-single-line.json" "$badc/lonely.json"
echo '{"statsu": "APPLIED"}' >"$badc/typo.expect.json"
cp "$cases/applied-single-line.json" "$badc/typo.json"
echo '{"status": "APPLIED", "lines": [{"QTY_SOLD": 1.5}]}' >"$badc/real.expect.json"
cp "$cases/applied-single-line.json" "$badc/real.json"
echo '{"status": "INVALID"}' >"$badc/noreason.expect.json"
cp "$cases/applied-single-line.json" "$badc/noreason.json"
echo '{"status": "APPLIED", "lines": [{"QTY_SOLDD": 1}]}' >"$badc/col.expect.json"
cp "$cases/applied-single-line.json" "$badc/col.json"
echo '[1, 2' >"$badc/orphan.expect.json"
expect 65 "1..10" "ok 1 - applied-multi-line" "not ok 3 - broken" \
  "#   $badc/broken.json: not valid JSON at line 1" \
  "not ok 4 - col" "unknown key 'QTY_SOLDD' (did you mean 'QTY_SOLD'?)" \
  "not ok 6 - lonely" "#   $badc/lonely.json has no lonely.expect.json beside it" \
  "not ok 7 - noreason" "\"reason\" wants the reason code" \
  "not ok 8 - orphan" "#   $badc/orphan.expect.json has no orphan.json beside it" \
  "not ok 9 - real" "QTY_SOLD wants an integer or a decimal string" \
  "not ok 10 - typo" "unknown key 'statsu' (did you mean 'status'?)" \
  -- test "$pipeline" "$badc"
[[ "$(snapshot)" == "$before" ]] && ok || bad "the real database changed: $before -> $(snapshot)"
leftovers

# The command line.
expect 0 "usage: cpbridge test PIPELINE CASES_DIR" -- test --help
expect 64 "test wants a PIPELINE file and a CASES_DIR" -- test "$pipeline"
expect 64 "unknown log level 'loud'" -- test "$pipeline" "$cases" --log-level loud
expect 66 "cannot read the cases directory $tmp/none" -- test "$pipeline" "$tmp/none"
mkdir -p "$tmp/empty"
expect 66 "no cases in $tmp/empty" -- test "$pipeline" "$tmp/empty"
expect 66 "cannot read the pipeline file" -- test "$tmp/none.cfg" "$cases"
cat >"$tmp/mssql.cfg" <<'EOF'
name = "cp";
database = { dialect = "mssql"; connection = "Driver=FreeTDS;Server=127.0.0.1;Port=1"; };
stages = ( { stage = "source-file"; options = { path = "/tmp"; }; } );
EOF
expect 78 "Bail out! cpbridge test does not support SQL Server yet" -- test "$tmp/mssql.cfg" "$cases"
if [[ $mode == sqlite ]]; then
  # A database file that does not exist is not created by the copy.
  CPB_DEMO_DB="$tmp/nope.db" expect 69 "1..3" "Bail out! the database to copy (does its file exist?)" \
    -- test "$pipeline" "$cases"
  [[ ! -e "$tmp/nope.db" ]] && ok || bad "test created the missing database file"
fi
leftovers

echo "pipetest ($mode): $pass passed, $fail failed"
[[ $fail -eq 0 ]]
