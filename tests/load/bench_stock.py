#!/usr/bin/python3
"""bench_stock.py - the stock pipeline (source-cp-stock -> push-woo-stock):
figures, not pass/fail timings (run with /usr/bin/python3).

    bench_stock.py                         1,000 and 5,000 SKUs x 0 and 100 ms
                                           of store latency, 3 runs each
    bench_stock.py --items 2000 --latency 300 --reps 5 --connections 8

Options: --items LIST, --latency LIST (comma-separated; SKUs, ms), --reps N
(default 3; figures are the median and min..max), --db sqlite|pg (default
sqlite), --connections N (push-woo-stock's `connections`, default 4),
--build DIR (default: the checkout's build), --keep.

Each case and run starts fresh: a stand-in (tests/servers/woo_standin.py,
OAuth 1.0a over http) with products P1.., every 10th variable with 4
variations, answering every API request after the latency; a new demo
database whose Counterpoint items are those SKUs (the variable parents
excepted) with random quantities at MAIN; run.batch 1000. Three
`cpbridge run --json` per run, each timed around the process:
  1. the first push: every SKU (ids resolved by SKU, the variations
     through the variable products' listing, then the batch writes);
  2. a sale of 10 % of the SKUs (IM_INV.QTY_ON_SO + 1): only those pushed,
     ids from the records' cache;
  3. nothing changed: nothing sent.
Per push: wall seconds, items pushed per second (the store's stock_changes
/ wall), and requests per 1,000 changed items (GET /_stats requests x 1000
/ items pushed), by kind (catalog reads, batch writes). Every run's result
is checked in the store (each SKU's stock equals the available quantity):
a wrong one is marked and the script exits 1.
"""

import argparse
import os
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "chaos"))
import chaoslib as C  # noqa: E402
import stocklib as S  # noqa: E402


def int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of integers: %r" % text)
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("integers >= 0: %r" % text)
    return values


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int_list, default=[1000, 5000])
    p.add_argument("--latency", type=int_list, default=[0, 100])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--db", choices=("sqlite", "pg"), default="sqlite")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--build", default=C.default_build())
    p.add_argument("--keep", action="store_true")
    return p.parse_args(argv)


def timed_push(runs, st, pipeline, tag):
    st.call("DELETE", "/_stats")
    t0 = time.monotonic()
    runs.run(pipeline, tag)
    wall = time.monotonic() - t0
    stats = st.call("GET", "/_stats")
    routes = stats.get("by_route", {})
    writes = sum(n for r, n in routes.items() if r.startswith("POST "))
    pushed = stats.get("stock_changes", 0)
    return {"wall": wall, "pushed": pushed, "requests": stats.get("requests", 0),
            "writes": writes, "reads": stats.get("requests", 0) - writes,
            "per_s": pushed / wall if wall > 0 else 0.0,
            "req_per_1000": stats.get("requests", 0) * 1000.0 / pushed if pushed else 0.0}


def one_run(a, tools, count, latency, rep, failures):
    name = "bench-stock-%d-%d-%d" % (count, latency, rep)
    checks = C.Checks()
    scratch = C.Scratch(name, keep=a.keep)
    db = C.Postgres(name) if a.db == "pg" else C.Sqlite(scratch)
    rng = random.Random(rep + 1)
    st = None
    try:
        st = S.store(scratch)
        skus = S.seed_store(st, max(10, int(count / 1.3) // 10 * 10))
        pipeline = C.write_pipeline(scratch.path("stock.cfg"), tools, db,
                                    S.stages(st, connections=a.connections), batch=1000,
                                    name="stock")
        C.db_init(tools, pipeline, scratch)
        qty = S.seed_cp(db, skus, rng)
        st.call("POST", "/_latency", {"latency_ms": latency})
        runs = C.Runs(tools, scratch, checks)
        out = {"skus": len(skus)}
        out["first"] = timed_push(runs, st, pipeline, "first")
        checks.check(not S.wrong_in_store(st, qty), "first push: store wrong")
        sold = rng.sample(skus, max(1, len(skus) // 10))
        S.sell(db, qty, sold)
        out["sale"] = timed_push(runs, st, pipeline, "sale")
        checks.check(not S.wrong_in_store(st, qty), "after the sale: store wrong")
        out["idle"] = timed_push(runs, st, pipeline, "idle")
        checks.check(out["idle"]["requests"] == 0, "an idle run sent requests")
        if not checks.ok():
            failures.append("%s: %s" % (name, "; ".join(checks.failures)))
        scratch.close(not checks.ok())
        return out
    finally:
        if st is not None:
            st.close()
        db.close()


def med(values, digits=0):
    f = "%%.%df" % digits
    m = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return f % m
    return "%s (%s..%s)" % (f % m, f % min(values), f % max(values))


def main(argv):
    a = parse_args(argv)
    tools = C.Tools(a.build)
    failures = []
    rows = []
    for count in a.items:
        for latency in a.latency:
            got = [one_run(a, tools, count, latency, rep, failures) for rep in range(a.reps)]
            rows.append((count, latency, got))
            C.log("%d SKUs, %d ms: done" % (count, latency))
    print("stock pipeline, %s, connections %d, %d run(s) per case (median (min..max))"
          % (a.db, a.connections, a.reps))
    print("| SKUs | latency ms | push | items pushed | wall s | items/s | requests"
          " | req/1000 items | reads | writes |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for count, latency, got in rows:
        for phase in ("first", "sale", "idle"):
            v = [g[phase] for g in got]
            print("| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                got[0]["skus"], latency, phase, med([x["pushed"] for x in v]),
                med([x["wall"] for x in v], 2), med([x["per_s"] for x in v]),
                med([x["requests"] for x in v]),
                med([x["req_per_1000"] for x in v], 1) if phase != "idle" else "-",
                med([x["reads"] for x in v]), med([x["writes"] for x in v])))
    for f in failures:
        print("FAILED: %s" % f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
