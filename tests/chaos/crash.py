#!/usr/bin/python3
"""crash.py - crash recovery: a pipeline that reads a WooCommerce store,
applies the orders to Counterpoint and writes their status back, hit by
SIGKILL at random points, by its database connections being killed, or by
the store failing mid-page; afterwards nothing may be lost, duplicated or
drifted.

    crash.py --scenario kill|dbdrop|store [--db pg|sqlite] [--orders N]
             [--kills K] [--seed S] [--build DIR] [--keep]

The pipeline: source-woo (the stand-in tests/servers/woo_standin.py serving
N generated orders, OAuth over http, 50 per page) -> validate ->
create-order -> update-qty -> sync-status (status "completed" and a note
naming the ticket, after the commit). Lease 10 s (the shortest allowed),
batch 10.

  kill    K runs (default 40) are killed with SIGKILL after a random delay,
          each restarted at once. Each run is frozen (SIGSTOP) before the
          kill and the moment classified from the database: during the fetch
          (orders still unstaged), mid-batch (PENDING orders under its
          lease), inside a transaction (PostgreSQL: its backend has one
          open) and between the commit and sync-status (APPLIED orders with
          the write-back due, under its lease). Each class must be hit.
  dbdrop  (PostgreSQL) while runs go, every connection to the database is
          terminated again and again (pg_terminate_backend, every 0.2-0.8 s).
  store   the store fails mid-page: a short read on page 3, a PHP warning
          before the JSON on page 5, the maintenance page (503, Retry-After)
          on page 2 and a 500 on some status write-backs; every fault must be
          hit.
N is 3,000 by default; a sanitizer build (CPB_SANITIZE) caps it at 1,000.
Then the backlog is drained without trouble and checked: the invariants of
chaoslib.check_invariants (with sync-status recorded done once per applied
order), and in the store every applied order shows exactly one status
change to completed and one cpbridge note naming its ticket, and no other
order was touched.
Exit status 0 when every invariant holds, 1 otherwise.
"""

import argparse
import os
import random
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaoslib as C  # noqa: E402

LEASE_S = 10


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", choices=("kill", "dbdrop", "store"), required=True)
    p.add_argument("--db", choices=("pg", "sqlite"), default="pg")
    p.add_argument("--orders", type=int, default=0)
    p.add_argument("--kills", type=int, default=40)
    p.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "777")))
    p.add_argument("--build", default=C.default_build())
    p.add_argument("--keep", action="store_true")
    return p.parse_args(argv)


def owner_of(pid):
    return "%s:%d" % (C.hostname(), pid)


def classify_kill(db, pid, total):
    """What the stopped (SIGSTOP) run was doing, seen from the database;
    "holding-lock" when it froze holding the SQLite file's lock."""
    try:
        return classify_frozen(db, pid, total)
    except C.Locked:
        return ["holding-lock"]


def classify_frozen(db, pid, total):
    owner = owner_of(pid)
    staged = db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING", timeout=3)
    batch = db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'PENDING'"
                      " AND LEASE_TOKEN IS NOT NULL AND LEASE_OWNER = '%s'" % owner, timeout=3)
    after = db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'APPLIED'"
                      " AND AFTER_PENDING = 1 AND LEASE_TOKEN IS NOT NULL AND"
                      " LEASE_OWNER = '%s'" % owner, timeout=3)
    kinds = []
    if staged < total:
        kinds.append("fetch")
    if batch:
        kinds.append("mid-batch")
    if after:
        kinds.append("after-commit")
    if db.dialect == "postgresql" and db.scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND"
            " pid <> pg_backend_pid() AND backend_type = 'client backend' AND"
            " application_name <> '%s' AND xact_start IS NOT NULL" % C.CHECKER_APP) > 0:
        kinds.append("in-transaction")
    return kinds or ["idle"]


def scenario_kill(a, runs, db, pipeline, total, checks, rng):
    """K runs, each stopped after a random delay, classified, and killed."""
    hits = dict((k, 0) for k in ("fetch", "mid-batch", "in-transaction", "after-commit",
                                 "holding-lock", "idle", "ended"))
    for k in range(a.kills):
        staged = db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING")
        if staged >= total and C.outstanding(db) == 0:
            break
        proc = runs.start(pipeline, "k%02d" % k)
        if k < 3:
            delay = rng.uniform(0.05, 1.0)    # early: the fetch
        else:
            # Anywhere in the orders' work, once a run has staged them all.
            end = time.monotonic() + 60
            while staged < total and proc.poll() is None and time.monotonic() < end:
                time.sleep(0.05)
                staged = db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING")
            delay = rng.uniform(0.05, 0.6)
        try:
            proc.wait(timeout=delay)
        except C.subprocess.TimeoutExpired:
            pass
        if proc.poll() is None:
            # Freeze it, see what it was doing, then kill it where it stood.
            proc.send_signal(signal.SIGSTOP)
            kinds = classify_kill(db, proc.pid, total)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            for kind in kinds:
                hits[kind] += 1
            runs.finish(proc, killed=True)
        else:
            runs.finish(proc)
            hits["ended"] += 1
    C.log("kill moments: %s" % hits)
    wanted = {"fetch": "during the fetch", "mid-batch": "with claimed orders in hand",
              "after-commit": "between commit and sync-status"}
    if db.dialect == "postgresql":
        wanted["in-transaction"] = "inside a database transaction"
    for kind, what in wanted.items():
        checks.check(hits[kind] > 0, "no kill landed %s (moments: %s)" % (what, hits))


def scenario_dbdrop(a, runs, db, pipeline, total, checks, rng):
    stop = threading.Event()
    killed = [0, 0]

    def terminator():
        while not stop.is_set():
            time.sleep(rng.uniform(0.2, 0.8))
            try:
                n = db.terminate_others()
            except (RuntimeError, OSError) as err:
                C.log("terminate: %s" % err)
                continue
            killed[0] += 1
            killed[1] += n

    t = threading.Thread(target=terminator, daemon=True)
    t.start()
    end = time.monotonic() + 60
    n = 0
    try:
        while time.monotonic() < end and (
                n == 0 or C.outstanding(db) > 0 or
                db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING") < total):
            runs.run(pipeline, "d%02d" % n)
            n += 1
    finally:
        stop.set()
        t.join()
    lost = runs.count_logs(r"database connection was lost")
    unrecorded = runs.count_logs(r"could not record completion")
    C.log("%d runs under connection kills: %d rounds terminated %d backend(s); %d run(s) saw"
          " the connection go %d time(s); %d write-back(s) done but not recorded"
          % (n, killed[0], killed[1], lost[0], lost[1], unrecorded[1]))
    checks.check(killed[1] > 0, "no database connection was ever terminated")
    checks.check(lost[1] > 0, "no run ever noticed its connection go")


def scenario_store(a, runs, db, pipeline, store, total, checks):
    faults = [
        {"path_regex": "/orders$", "method": "GET", "kind": "short_read", "page": 3, "times": 2},
        {"path_regex": "/orders$", "method": "GET", "kind": "malformed_json", "page": 5,
         "times": 1},
        {"path_regex": "/orders$", "method": "GET", "kind": "status", "status": 503,
         "retry_after": "1", "page": 2, "times": 3},
        # The write-back: a whole batch refused, items the batch refused
        # retryably (each then goes by the single PUT, which fails too),
        # notes whose answers are cut (made, but the outcome unknown) and
        # notes the store rate-limits.
        {"path_regex": "/orders/batch$", "method": "POST", "kind": "status", "status": 500,
         "times": 3},
        {"kind": "batch_item", "status": 500, "times": 6},
        {"path_regex": "/orders/[0-9]+$", "method": "PUT", "kind": "status", "status": 500,
         "times": 3},
        {"path_regex": "/orders/[0-9]+/notes$", "method": "POST", "kind": "truncated",
         "times": 3},
        {"path_regex": "/orders/[0-9]+/notes$", "method": "POST", "kind": "status",
         "status": 429, "retry_after": "1", "times": 3},
    ]
    store.fault(faults)
    n = 0
    end = time.monotonic() + 120
    while time.monotonic() < end:
        summary = runs.run(pipeline, "s%02d" % n)
        n += 1
        left = store.call("GET", "/_fault")
        staged = db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING")
        if not left and staged >= total and C.outstanding(db) == 0:
            break
        if (summary or {}).get("counts", {}).get("claimed", 0) == 0:
            time.sleep(0.5)
    left = store.call("GET", "/_fault")
    source_failed = sum(1 for s in runs.summaries if s.get("source_failed"))
    after_retry = db.scalar("SELECT COUNT(*) FROM USER_ORDER_EVENT WHERE KIND = 'after.retry'")
    C.log("%d runs under store faults: %d with the source failed, %d write-back retries;"
          " faults not used up: %s" % (n, source_failed, after_retry, left))
    checks.check(not left, "store faults never hit: %s" % left)
    checks.check(source_failed >= 3, "only %d run(s) saw the source fail" % source_failed)
    checks.check(after_retry > 0, "no write-back was ever retried")


def main(argv):
    a = parse_args(argv)
    started = time.monotonic()
    tools = C.Tools(a.build)
    if a.scenario == "dbdrop" and a.db != "pg":
        raise SystemExit("crash.py: --scenario dbdrop needs --db pg")
    total = a.orders or 3000
    if tools.sanitized:
        total = min(total, 1000)  # the sanitizer build is 3-5 times slower
    name = "crash-%s-%s" % (a.scenario, a.db)
    checks = C.Checks()
    scratch = C.Scratch(name, keep=a.keep)
    db = C.Postgres(name) if a.db == "pg" else C.Sqlite(scratch)
    rng = random.Random(a.seed)
    store = None
    try:
        orders_dir, manifest = C.generate(scratch, total, a.seed, start_id=5000)
        store = C.Store(scratch, orders_dir)
        source, sync = C.woo_stages(store)
        pipeline = C.write_pipeline(scratch.path("woo.cfg"), tools, db,
                                    "\n  " + source + "," + C.CP_STEPS + "," + sync,
                                    lease="%ds" % LEASE_S, batch=10)
        C.db_init(tools, pipeline, scratch)
        inv0 = C.inventory(db)
        runs = C.Runs(tools, scratch, checks)
        C.log("%s: %d orders in the store, %s%s" % (name, total, db.dialect,
                                                    ", sanitizer build" if tools.sanitized
                                                    else ""))
        if a.scenario == "kill":
            scenario_kill(a, runs, db, pipeline, total, checks, rng)
        elif a.scenario == "dbdrop":
            scenario_dbdrop(a, runs, db, pipeline, total, checks, rng)
        else:
            scenario_store(a, runs, db, pipeline, store, total, checks)

        t_drain = time.monotonic()
        n = C.drain(runs, db, pipeline, "drain", deadline_s=180, checks=checks)
        C.log("drained in %.1f s (%d runs); %s" % (time.monotonic() - t_drain, n, runs.report()))
        C.check_invariants(db, manifest, inv0, checks, after_stage="sync-status")
        C.check_store(store, db, manifest, checks)
        return C.finish(name, checks, scratch, started, "(%d orders, %s)" % (total,
                                                                             runs.report()))
    finally:
        if store is not None:
            store.close()
        db.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
