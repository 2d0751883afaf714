#!/usr/bin/env bash
# scripts/demo.sh — the README's first command: install what is missing,
# build, create a fresh demo database (SQLite through the SQLite3 ODBC
# driver, with the Counterpoint development subset and demo data), and run
# the demo pipeline (pipelines/demo.cfg) over the sample orders in
# pipelines/samples/, then the stock pipeline (pipelines/demo-stock.cfg)
# against a local WooCommerce stand-in. Its output says what happened to
# each order and what the store's stock became.
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
# The stock pipeline (pipelines/demo-stock.cfg) after the orders: a local
# WooCommerce stand-in gets one product per published demo SKU, then gets
# what Counterpoint has available, the demo orders' lines deducted.
rm -f var/woo.port
/usr/bin/python3 tests/servers/woo_standin.py --port-file var/woo.port --key ck_demo \
    --secret cs_demo >var/woo-standin.log 2>&1 &
woo=$!
trap 'kill "$woo" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [[ -s var/woo.port ]] && break; sleep 0.1; done
export CPB_DEMO_WOO_URL="http://127.0.0.1:$(cat var/woo.port)"
/usr/bin/python3 - "$CPB_DEMO_WOO_URL" var/demo.db <<'PY'
import json, sqlite3, sys, urllib.request
rows = sqlite3.connect(sys.argv[2]).execute(
    "SELECT DISTINCT COALESCE(m.SKU, i.ITEM_NO) FROM IM_ITEM i LEFT JOIN USER_ITEM_MAP m"
    " ON m.ITEM_NO = i.ITEM_NO WHERE i.IS_ECOMM_ITEM = 'Y'")
body = json.dumps([{"sku": r[0], "stock_quantity": 0} for r in rows]).encode()
urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/_products", body,
                                              {"Content-Type": "application/json"}))
PY
set +e
"$bin" run pipelines/demo-stock.cfg
stock_code=$?
set -e
echo
echo "demo: the store's stock now: $(/usr/bin/python3 -c 'import json, sys, urllib.request
print(json.dumps(json.load(urllib.request.urlopen(sys.argv[1] + "/_products"))["stock"]))' \
    "$CPB_DEMO_WOO_URL")"
echo "demo: stock pipeline exit code $stock_code"
echo
echo "demo: exit code $code (0 all applied, 1 some orders held for review: see above)"
echo "demo: the database is var/demo.db; try: sqlite3 var/demo.db 'SELECT STATUS, COUNT(*) FROM USER_ORDER_STAGING GROUP BY STATUS'"
if [[ $code -gt 1 ]]; then
  exit "$code"
fi
if [[ $stock_code -gt 1 ]]; then
  exit "$stock_code"
fi
