#!/usr/bin/python3
"""stocklib.py - what the stock pipeline's chaos test (stock_kill.py) and
benchmark (tests/load/bench_stock.py) share, on top of chaoslib.py: a
WooCommerce stand-in seeded with products and variations, the same SKUs as
Counterpoint items with quantities at MAIN (IM_ITEM, IM_INV, the demo's own
items unpublished), the pipeline source-cp-stock -> push-woo-stock, what
the store should show, and the engine's record states.
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaoslib as C  # noqa: E402

# The engine's record table (migration 004) and the states of a record.
RECORDS = "USER_RECORD_STAGING"


def store(scratch):
    """A stand-in with no orders."""
    empty = scratch.path("no-orders")
    os.makedirs(empty, exist_ok=True)
    return C.Store(scratch, empty)


def seed_store(st, products, every=10, variations=4, prefix="P"):
    """products P1..Pn, every `every`-th variable with `variations`
    variations; returns the SKUs Counterpoint has: the simple products and
    the variations (a variable parent is no item of its own)."""
    ids = st.call("POST", "/_products", {"seed": products, "sku_prefix": prefix,
                                         "variations": variations, "every": every})["ids"]
    parents = set(sku.split("-")[0] for sku in ids if "-" in sku)
    return sorted((sku for sku in ids if sku not in parents), key=lambda s: (len(s), s))


def exec_sql(db, sql):
    """Run statements (separated by ';') on the test database, committed."""
    if db.dialect == "postgresql":
        db.psql(sql)
        return
    import sqlite3
    con = sqlite3.connect(db.path, timeout=60)
    try:
        con.executescript(sql)
        con.commit()
    finally:
        con.close()


def values(rows):
    return ", ".join("(%s)" % ", ".join(
        "'%s'" % v if isinstance(v, str) else str(v) for v in row) for row in rows)


def seed_cp(db, skus, rng):
    """Every SKU an item (ITEM_NO = SKU, published) with random quantities
    at MAIN; the demo's items unpublished. Returns {sku: [on hand,
    committed, on SO]}."""
    qty = {}
    exec_sql(db, "UPDATE IM_ITEM SET IS_ECOMM_ITEM = 'N'")
    for at in range(0, len(skus), 500):
        chunk = skus[at:at + 500]
        rows_i, rows_v = [], []
        for sku in chunk:
            q = [rng.randint(0, 60), rng.randint(0, 4), rng.randint(0, 4)]
            qty[sku] = q
            rows_i.append((sku, sku, "A", "Y"))
            rows_v.append((sku, "MAIN", q[0], q[1], q[2]))
        exec_sql(db, "INSERT INTO IM_ITEM (ITEM_NO, DESCR, STAT, IS_ECOMM_ITEM) VALUES %s;"
                     " INSERT INTO IM_INV (ITEM_NO, LOC_ID, QTY_ON_HND, QTY_COMMIT, QTY_ON_SO)"
                     " VALUES %s" % (values(rows_i), values(rows_v)))
    return qty


def sell(db, qty, skus, units=1):
    """A sale of `units` of each SKU, as update-qty books it (QTY_ON_SO)."""
    for sku in skus:
        qty[sku][2] += units
    for at in range(0, len(skus), 500):
        inlist = ", ".join("'%s'" % s for s in skus[at:at + 500])
        exec_sql(db, "UPDATE IM_INV SET QTY_ON_SO = QTY_ON_SO + %d WHERE LOC_ID = 'MAIN' AND"
                     " ITEM_NO IN (%s)" % (units, inlist))


def expected(q):
    return max(0, q[0] - q[1] - q[2])


def stages(st, connections=4, batch_size=100):
    return ("""
  { stage = "source-cp-stock"; id = "cp"; options = { locations = [ "MAIN" ]; }; },
  { stage = "push-woo-stock"; id = "shop-stock"; options = { url = "%s";
      consumer_key = "ck_test"; consumer_secret = "cs_test"; timeout = "10s"; max_tries = 2;
      connections = %d; batch_size = %d; }; }""" % (st.url, connections, batch_size))


def wrong_in_store(st, qty):
    """SKUs whose stock in the store is not what Counterpoint has available
    (a list of (sku, store, expected))."""
    snap = st.call("GET", "/_products")
    bad = []
    for sku, q in qty.items():
        got = snap["stock"].get(sku)
        if got != expected(q) or snap["manage_stock"].get(sku) is not True:
            bad.append((sku, got, expected(q)))
    return bad


def record_counts(db):
    return dict((row[0], int(row[1])) for row in db.rows(
        "SELECT STATUS, COUNT(*) FROM %s GROUP BY STATUS" % RECORDS))


def pending(db):
    return db.scalar("SELECT COUNT(*) FROM %s WHERE STATUS = 'PENDING'" % RECORDS)


def settle(runs, db, pipeline, tag, deadline_s=180, checks=None):
    """Run until no record is PENDING (waiting out backoffs and the leases
    of killed runs). Returns the number of runs."""
    import time
    end = time.monotonic() + deadline_s
    n = 0
    while True:
        runs.run(pipeline, tag)
        n += 1
        left = pending(db)
        if left == 0:
            return n
        if time.monotonic() > end:
            if checks is not None:
                checks.fail("%d record(s) still pending after %d s: %s"
                            % (left, deadline_s, record_counts(db)))
            return n
        time.sleep(0.5)
