#!/usr/bin/python3
"""stock_kill.py - the stock pipeline (source-cp-stock -> push-woo-stock)
killed with SIGKILL in the middle of its pushes, and run again; afterwards
the store must show exactly what Counterpoint has available, and the items
pushed may exceed what had to be pushed by at most one round per kill.

    stock_kill.py [--db pg|sqlite] [--items N] [--kills K] [--seed S]
                  [--build DIR] [--keep]

The store: the stand-in (tests/servers/woo_standin.py, OAuth over http)
with products P1.., every 10th variable with 4 variations, 30 ms of latency
per request so a push takes a few seconds; Counterpoint: the same SKUs as
items with random quantities at MAIN (N SKUs, 3,000 by default; 1,000 in a
sanitizer build). The pipeline: run.batch 100 (a round is one claim of 100
records: a few batch requests), lease 10 s, retries after 1-2 s.

K runs (default 12) are each killed, restarted at once: the first two
after a random 0.2-1.5 s (reading, resolving ids), the others a random
0-0.4 s after the store received the run's first update, each of those
preceded by a sale of 300 random SKUs (a third of them at most;
IM_INV.QTY_ON_SO + 1, as update-qty books an order), so every run has
rounds to push and records are queued again while others are half
pushed. Each kill is classed by what
the store had received by then: "mid-push" (some but not all of the
queued quantities) must be hit at least 3 times. Then the runs go on until
no record is pending, and:
  - every SKU's stock in the store equals QTY_ON_HND - QTY_COMMIT -
    QTY_ON_SO (floored at 0), managed; every record DONE, none DEAD;
  - the store applied (GET /_stats stock_changes) at most the pushes the
    engine recorded done (USER_RECORD_EVENT 'done' rows, themselves at most
    N + the SKUs each sale changed) + K x 100: a kill repeats at most the
    round it interrupted;
  - one more run sends the store nothing.
Exit status 0 when all of that holds, 1 otherwise.
"""

import argparse
import os
import random
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaoslib as C  # noqa: E402
import stocklib as S  # noqa: E402

RUN_BATCH = 100


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", choices=("pg", "sqlite"), default="pg")
    p.add_argument("--items", type=int, default=0)
    p.add_argument("--kills", type=int, default=12)
    p.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "777")))
    p.add_argument("--build", default=C.default_build())
    p.add_argument("--keep", action="store_true")
    return p.parse_args(argv)


def kills(a, runs, db, st, pipeline, qty, checks, rng):
    """K killed runs; returns the item updates the sales added."""
    hits = {"mid-push": 0, "before-push": 0, "after-push": 0, "ended": 0}
    extra = 0
    for k in range(a.kills):
        if k >= 2:
            sold = rng.sample(sorted(qty), min(300, len(qty) // 3))
            changed = [s for s in sold if S.expected(qty[s]) > 0]  # at 0 it stays 0
            S.sell(db, qty, sold)
            extra += len(changed)
        before = st.call("GET", "/_stats")["stock_changes"]
        proc = runs.start(pipeline, "k%02d" % k)
        if k < 2:
            delay = rng.uniform(0.2, 1.5)  # early: reading, resolving ids
        else:
            # Once the store has received some of this run's updates.
            end = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < end and \
                    st.call("GET", "/_stats")["stock_changes"] == before:
                time.sleep(0.05)
            delay = rng.uniform(0.0, 0.4)
        try:
            proc.wait(timeout=delay)
        except C.subprocess.TimeoutExpired:
            pass
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            runs.finish(proc, killed=True)
            done = st.call("GET", "/_stats")["stock_changes"] - before
            left = len(S.wrong_in_store(st, qty))
            kind = "before-push" if done == 0 else "after-push" if left == 0 else "mid-push"
            hits[kind] += 1
        else:
            runs.finish(proc)
            hits["ended"] += 1
    C.log("kill moments: %s" % hits)
    checks.check(hits["mid-push"] >= 3, "fewer than 3 kills landed mid-push: %s" % hits)
    return extra, a.kills - hits["ended"]


def main(argv):
    a = parse_args(argv)
    started = time.monotonic()
    tools = C.Tools(a.build)
    total = a.items or 3000
    if tools.sanitized:
        total = min(total, 1000)
    name = "stock-kill-%s" % a.db
    checks = C.Checks()
    scratch = C.Scratch(name, keep=a.keep)
    db = C.Postgres(name) if a.db == "pg" else C.Sqlite(scratch)
    rng = random.Random(a.seed)
    st = None
    try:
        st = S.store(scratch)
        # products + products / 10 * 3 SKUs (the parents are no items).
        skus = S.seed_store(st, int(total / 1.3) // 10 * 10 or 10)
        pipeline = C.write_pipeline(scratch.path("stock.cfg"), tools, db, S.stages(st),
                                    lease="10s", batch=RUN_BATCH, max_attempts=20, base="1s",
                                    cap="2s", name="stock")
        C.db_init(tools, pipeline, scratch)
        qty = S.seed_cp(db, skus, rng)
        st.call("POST", "/_latency", {"latency_ms": 30})
        st.call("DELETE", "/_stats")
        runs = C.Runs(tools, scratch, checks)
        C.log("%s: %d SKUs, %s%s" % (name, len(skus), db.dialect,
                                     ", sanitizer build" if tools.sanitized else ""))
        extra, killed = kills(a, runs, db, st, pipeline, qty, checks, rng)

        t_settle = time.monotonic()
        n = S.settle(runs, db, pipeline, "settle", checks=checks)
        C.log("settled in %.1f s (%d runs); %s" % (time.monotonic() - t_settle, n,
                                                  runs.report()))
        bad = S.wrong_in_store(st, qty)
        checks.check(not bad, "%d SKU(s) wrong in the store: %s" % (len(bad), bad[:6]))
        counts = S.record_counts(db)
        checks.check(counts.get("DONE", 0) == len(skus) and len(counts) == 1,
                     "records not all DONE: %s" % counts)
        pushed = st.call("GET", "/_stats")["stock_changes"]
        done = db.scalar("SELECT COUNT(*) FROM USER_RECORD_EVENT WHERE KIND = 'done'")
        bound = done + killed * RUN_BATCH
        C.log("items pushed %d; recorded done %d (%d SKUs, sales changed %d); bound %d with %d"
              " kill(s)" % (pushed, done, len(skus), extra, bound, killed))
        checks.check(pushed >= len(skus), "only %d item updates for %d SKUs" % (pushed, len(skus)))
        checks.check(done <= len(skus) + extra, "%d pushes recorded, more than the %d changes"
                     % (done, len(skus) + extra))
        checks.check(pushed <= bound, "%d item updates, more than %d" % (pushed, bound))
        st.call("DELETE", "/_stats")
        runs.run(pipeline, "final")
        sent = st.call("GET", "/_stats")["requests"]
        checks.check(sent == 0, "a run with nothing changed sent %d request(s)" % sent)
        return C.finish(name, checks, scratch, started, "(%d SKUs, %s)" % (len(skus),
                                                                           runs.report()))
    finally:
        if st is not None:
            st.close()
        db.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
