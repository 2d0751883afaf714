#!/usr/bin/python3
"""concurrent.py - several `cpbridge run` processes drain one backlog of the
same database at once, and a runner killed with SIGKILL mid-batch has its
leased orders taken over by the others once the lease expires.

    concurrent.py --db pg|sqlite [--orders N] [--runners K] [--kill]
                  [--full] [--seed S] [--build DIR] [--keep]

Scenario:
  1. a fresh database (`cpbridge db init --demo`), IM_INV noted;
  2. N generated orders (tests/load/gen_orders.py, 5 % invalid on purpose);
  3. runner 1 runs the whole pipeline, source-file included, and stages
     the backlog; once every order is staged, runners 2..K start: runner 2
     with the same pipeline (its re-read of every file is idempotent: it must
     stage nothing), the others with a pipeline without the source. Each
     runner loops `cpbridge run` until no order is left;
  4. --kill: the pipeline's lease is 10 s (the shortest allowed); while the
     runners work, one run that holds leased orders is killed with SIGKILL;
     its runner starts again only after its lease has expired, and the
     orders it held must be applied by someone (attempts counted twice);
  5. the invariants of chaoslib.check_invariants, and for the killed run's
     orders the takeover above.
On SQLite the runners are serialized by the database (Timeout=10000 in the
connection string); runs that report busy are counted and must stay correct.

Backlog: --orders, else 10,000 on PostgreSQL and 3,000 on SQLite; --full
makes it 12,000. A sanitizer build (CPB_SANITIZE) caps it at 2,000 unless
--full is given.
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


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", choices=("pg", "sqlite"), required=True)
    p.add_argument("--orders", type=int, default=0, help="backlog size (default per --db)")
    p.add_argument("--runners", type=int, default=4)
    p.add_argument("--kill", action="store_true", help="SIGKILL one runner mid-batch")
    p.add_argument("--full", action="store_true", help="12,000 orders")
    p.add_argument("--sqlite-timeout", type=int, default=10000,
                   help="SQLite busy timeout in ms (Timeout= of the connection string)")
    p.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "4242")))
    p.add_argument("--build", default=C.default_build())
    p.add_argument("--keep", action="store_true", help="keep the scratch directory on failure")
    return p.parse_args(argv)


class Fleet:
    """K runner loops, each a thread running `cpbridge run` until the
    database has nothing left to do."""

    def __init__(self, runs, db, checks):
        self.runs = runs
        self.db = db
        self.checks = checks
        self.lock = threading.Lock()
        self.current = {}          # runner index -> live Popen
        self.hold_until = {}       # runner index -> monotonic time it may run again
        self.threads = []
        self.stop = threading.Event()
        self.deadline = time.monotonic() + 900
        self.per_runner = {}

    def loop(self, idx, pipeline):
        runs = 0
        while not self.stop.is_set():
            wait = self.hold_until.get(idx, 0) - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, 0.5))
                continue
            proc = self.runs.start(pipeline, "r%d" % idx)
            with self.lock:
                self.current[idx] = proc
            proc.wait()
            with self.lock:
                self.current.pop(idx, None)
                killed = getattr(proc, "chaos_killed", False)
            summary = self.runs.finish(proc, killed=killed)
            runs += 1
            if killed:
                continue
            claimed = (summary or {}).get("counts", {}).get("claimed", 0)
            if claimed == 0:
                if C.outstanding(self.db) == 0 and not self.any_held():
                    break
                if time.monotonic() > self.deadline:
                    self.checks.fail("runner %d: orders still to do after 900 s: %s"
                                     % (idx, C.state_counts(self.db)))
                    break
                time.sleep(0.5)
        self.per_runner[idx] = runs

    def any_held(self):
        return any(t > time.monotonic() for t in self.hold_until.values())

    def start(self, idx, pipeline):
        t = threading.Thread(target=self.loop, args=(idx, pipeline), daemon=True)
        t.start()
        self.threads.append(t)

    def join(self):
        for t in self.threads:
            t.join()


def owner_of(pid):
    return "%s:%d" % (C.hostname(), pid)


def leased_by(db, pid):
    """{id: lease end} of the PENDING orders a run still holds."""
    return dict((r[0], r[1]) for r in db.rows(
        "SELECT EXT_ORDER_ID, LEASE_UNTIL FROM USER_ORDER_STAGING WHERE STATUS = 'PENDING'"
        " AND LEASE_TOKEN IS NOT NULL AND LEASE_OWNER = '%s'" % owner_of(pid)))


def kill_one(fleet, db, rng, lease_s, checks):
    """Wait until some run holds leased orders mid-batch, SIGKILL it, keep
    its runner off for the lease. Returns {id: lease end} of the orders it
    held when it died."""
    end = time.monotonic() + 120
    while time.monotonic() < end:
        with fleet.lock:
            live = [(i, p) for i, p in fleet.current.items() if i != 1 and p.poll() is None]
        rng.shuffle(live)
        for idx, proc in live:
            held = leased_by(db, proc.pid)
            if len(held) >= 2:
                # Hold the runner back past the lease before the kill, so
                # its loop cannot start a new run that takes the orders back.
                fleet.hold_until[idx] = time.monotonic() + lease_s + 2
                proc.chaos_killed = True
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                after = leased_by(db, proc.pid)
                C.log("killed runner %d (pid %d) holding %d leased order(s)"
                      % (idx, proc.pid, len(after)))
                return after
        time.sleep(0.05)
    checks.fail("no run was ever seen holding leased orders: nothing was killed")
    return {}


def main(argv):
    a = parse_args(argv)
    started = C.time.monotonic()
    tools = C.Tools(a.build)
    count = a.orders or (12000 if a.full else (10000 if a.db == "pg" else 3000))
    if tools.sanitized and not a.full:
        count = min(count, 2000)  # the sanitizer build is 3-5 times slower
    name = "concurrent-%s%s" % (a.db, "-kill" if a.kill else "")
    checks = C.Checks()
    scratch = C.Scratch(name, keep=a.keep)
    db = C.Postgres(name) if a.db == "pg" else C.Sqlite(scratch, a.sqlite_timeout)
    rng = random.Random(a.seed)
    lease_s = 10 if a.kill else 120
    try:
        orders_dir, manifest = C.generate(scratch, count, a.seed)
        C.log("%s: %d orders, %d runners, %s%s" % (name, count, a.runners, db.dialect,
                                                   ", sanitizer build" if tools.sanitized
                                                   else ""))
        with_source = C.write_pipeline(
            scratch.path("with-source.cfg"), tools, db,
            "\n  " + C.source_file(orders_dir) + "," + C.CP_STEPS, lease="%ds" % lease_s)
        without = C.write_pipeline(scratch.path("steps-only.cfg"), tools, db, C.CP_STEPS,
                                   lease="%ds" % lease_s)
        C.db_init(tools, with_source, scratch)
        inv0 = C.inventory(db)
        runs = C.Runs(tools, scratch, checks)
        fleet = Fleet(runs, db, checks)

        t_stage = time.monotonic()
        fleet.start(1, with_source)
        while db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING") < count:
            if not fleet.threads[0].is_alive():
                break
            time.sleep(0.1)
        staged = db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING")
        checks.check(staged == count, "runner 1 staged %d of %d orders" % (staged, count))
        C.log("staged %d orders in %.1f s; starting runners 2..%d"
              % (staged, time.monotonic() - t_stage, a.runners))
        for idx in range(2, a.runners + 1):
            fleet.start(idx, with_source if idx == 2 else without)

        held = {}
        if a.kill:
            held = kill_one(fleet, db, rng, lease_s, checks)
        fleet.join()
        C.log("drained in %.1f s; %s; runs per runner %s; applied per run %s"
              % (time.monotonic() - t_stage, runs.report(), fleet.per_runner,
                 [s.get("counts", {}).get("applied", 0) for s in runs.summaries]))

        rows = C.check_invariants(db, manifest, inv0, checks)
        restaged = sum(s.get("counts", {}).get("staged", 0) for s in runs.summaries)
        checks.check(restaged == count,
                     "the runs staged %d orders in all for %d: a re-read staged again"
                     % (restaged, count))
        applied_runs = sum(s.get("counts", {}).get("applied", 0) for s in runs.summaries)
        applied = sum(1 for r in rows.values() if r[1] == "APPLIED")
        if not a.kill:
            checks.check(applied_runs == applied,
                         "the runs report %d applied orders, the database %d"
                         % (applied_runs, applied))
        if a.kill:
            checks.check(len(held) >= 2, "the killed run held %d orders" % len(held))
            kinds = dict((str(o["id"]), o["kind"]) for o in manifest["orders"])
            for ext in held:
                r = rows.get(ext)
                if r is None:
                    continue
                checks.check(r[1] == ("APPLIED" if kinds[ext] == "valid" else "INVALID"),
                             "order %s held by the killed run ended %s" % (ext, r[1]))
                checks.check(int(r[4]) >= 2, "order %s held by the killed run has %s attempt(s):"
                             " its claim was not counted" % (ext, r[4]))
            # Nobody touched them before their lease ran out.
            done = db.rows("SELECT s.EXT_ORDER_ID, MIN(e.EVENT_DT) FROM USER_ORDER_EVENT e JOIN"
                           " USER_ORDER_STAGING s ON s.STAGING_ID = e.STAGING_ID WHERE"
                           " e.KIND IN ('applied', 'invalid') GROUP BY s.EXT_ORDER_ID")
            done = dict(done)
            early = [ext for ext, until in held.items()
                     if done.get(ext) is None or C.parse_ts(done[ext]) < C.parse_ts(until)]
            checks.check(not early, "%d order(s) of the killed run were finished before its"
                         " lease ran out (or never): %s"
                         % (len(early), [(e, held[e], done.get(e)) for e in early[:3]]))
            C.log("the killed run's %d orders were finished by other runs after their lease"
                  % len(held))
        return C.finish(name, checks, scratch, started, "(%d orders, %s)" % (count,
                                                                             runs.report()))
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
