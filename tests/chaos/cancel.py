#!/usr/bin/python3
"""cancel.py - store cancellations after apply, under run.store_cancel =
"rollback", hit by SIGKILL: every cancelled order leaves Counterpoint once,
its inventory given back exactly, and gets exactly one note in the store.

    cancel.py [--db pg|sqlite] [--orders N] [--cancel M] [--kills K]
              [--seed S] [--build DIR] [--keep]

The pipeline of crash.py (source-woo against the stand-in -> validate ->
create-order -> update-qty -> sync-status), with store_cancel = "rollback".
N orders (default 600) are applied and written back; then M of them
(default 200) are set to "cancelled" in the store, in K/2 waves, and K runs
(default 20) are killed with SIGKILL: after each wave, one as soon as it is
rolling that wave back, and one once it holds orders rolled back and not yet
noted, after a random delay; each is frozen first and the moment classified: while rolling back (APPLIED orders still marked
STORE_CANCELLED) and between a rollback and its note (ROLLED_BACK orders with
the note due). Both must be hit. Then the rest is drained and checked:
  - each cancelled order is ROLLED_BACK, with one 'rollback' event coded
    store.rollback; its document is gone from PS_DOC_*; every other valid
    order is APPLIED with its document;
  - IM_INV.QTY_ON_SO of each item is what it was before plus the lines of
    the valid orders not cancelled (from the generator's manifest);
  - in the store, each cancelled order is still cancelled and has exactly one
    "Removed from Counterpoint" note naming its ticket;
  - `cpbridge drift` finds nothing.
Exit status 0 when every check holds, 1 otherwise.
"""

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaoslib as C  # noqa: E402

LEASE_S = 10


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", choices=("pg", "sqlite"), default="pg")
    p.add_argument("--orders", type=int, default=600)
    p.add_argument("--cancel", type=int, default=200)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "4242")))
    p.add_argument("--build", default=C.default_build())
    p.add_argument("--keep", action="store_true")
    return p.parse_args(argv)


def classify(db):
    try:
        return classify_frozen(db)
    except C.Locked:
        return ["holding-lock"]


def classify_frozen(db):
    kinds = []
    if db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'APPLIED'"
                 " AND STORE_CANCELLED = 1", timeout=3) > 0:
        kinds.append("rolling-back")
    if db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'ROLLED_BACK'"
                 " AND AFTER_PENDING = 1", timeout=3) > 0:
        kinds.append("note-due")
    return kinds or ["idle"]


def settled(db, n):
    """Every cancelled order rolled back and noted."""
    return db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'ROLLED_BACK'"
                     " AND AFTER_PENDING = 0") >= n


def kill_runs(a, runs, db, pipeline, store, waves, checks, rng):
    """Kill runs while the cancellations of each wave are rolled back and
    noted: a wave is sent before every other run (the one killed while it
    rolls back), so each such run has orders of its own to roll back."""
    hits = collections.Counter()
    done = 0
    for k in range(a.kills):
        if k % 2 == 0 and k // 2 < len(waves):
            for ext in waves[k // 2]:
                store.call("POST", "/_orders/%s/touch" % ext, {"status": "cancelled"})
            done += len(waves[k // 2])
        if settled(db, done) and done == sum(len(w) for w in waves):
            break
        rolled0 = db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'ROLLED_BACK'")
        proc = runs.start(pipeline, "k%02d" % k)
        if k % 2 == 0:
            # Wait until this run is rolling orders back: one more rolled
            # back, others still waiting for it (one query a look).
            end = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < end:
                row = db.rows("SELECT (SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE"
                              " STATUS = 'ROLLED_BACK'), (SELECT COUNT(*) FROM"
                              " USER_ORDER_STAGING WHERE STATUS = 'APPLIED' AND"
                              " STORE_CANCELLED = 1)")[0]
                if int(row[0]) > rolled0 and int(row[1]) > 0:
                    break
                time.sleep(0.002)
        else:
            # Wait until this run holds orders rolled back and not yet noted
            # (a sanitizer build is slow to get there).
            owner = "%s:%d" % (C.hostname(), proc.pid)
            end = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < end and db.scalar(
                    "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'ROLLED_BACK'"
                    " AND AFTER_PENDING = 1 AND LEASE_OWNER = '%s'" % owner) == 0:
                time.sleep(0.01)
        if k % 2:
            try:
                proc.wait(timeout=rng.uniform(0.02, 0.4))
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            proc.send_signal(signal.SIGSTOP)
            for kind in classify(db):
                hits[kind] += 1
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            runs.finish(proc, killed=True)
        else:
            runs.finish(proc)
            hits["ended"] += 1
    C.log("kill moments: %s" % dict(hits))
    checks.check(hits["rolling-back"] > 0, "no kill landed while orders were being rolled back")
    checks.check(hits["note-due"] > 0, "no kill landed between a rollback and its note")


def check_outcome(db, store, tools, scratch, pipeline, manifest, cancelled, inv0, checks):
    rows = dict((r[0], r) for r in db.rows(
        "SELECT EXT_ORDER_ID, STATUS, CP_DOC_ID, CP_TKT_NO, AFTER_PENDING FROM USER_ORDER_STAGING"))
    docs = set(r[0] for r in db.rows("SELECT DOC_ID FROM PS_DOC_HDR"))
    rollbacks = collections.Counter(r[0] for r in db.rows(
        "SELECT s.EXT_ORDER_ID FROM USER_ORDER_EVENT e JOIN USER_ORDER_STAGING s"
        " ON s.STAGING_ID = e.STAGING_ID WHERE e.KIND = 'rollback' AND e.CODE = 'store.rollback'"))
    bad = []
    for order in manifest["orders"]:
        ext = str(order["id"])
        row = rows.get(ext)
        if order["kind"] != "valid":
            continue
        if ext in cancelled:
            if row is None or row[1] != "ROLLED_BACK" or int(row[4] or 0) != 0 \
                    or rollbacks[ext] != 1 or row[2] in docs:
                bad.append("%s: %s, %d rollback event(s), document %s"
                           % (ext, row[1:] if row else None, rollbacks[ext],
                              "still there" if row and row[2] in docs else "gone"))
        elif row is None or row[1] != "APPLIED" or row[2] not in docs:
            bad.append("%s (not cancelled): %s" % (ext, row[1:] if row else None))
    checks.check(not bad, "%d order(s) wrong: %s" % (len(bad), "; ".join(bad[:6])))

    # Inventory: what it was, plus the lines of the valid orders not cancelled.
    want = collections.Counter()
    for order in manifest["orders"]:
        if order["kind"] == "valid" and str(order["id"]) not in cancelled:
            for item, qty in order["lines"]:
                want[(item, "MAIN")] += C.D(qty)
    inv = C.inventory(db)
    wrong = ["%s: %s, expected %s" % (k, inv.get(k), inv0.get(k, 0) + want[k])
             for k in set(inv) | set(want) if inv.get(k, 0) != inv0.get(k, 0) + want[k]]
    checks.check(not wrong, "IM_INV.QTY_ON_SO wrong for %d item(s): %s"
                 % (len(wrong), "; ".join(sorted(wrong)[:6])))

    # The store: cancelled, one removal note naming the ticket.
    bad = []
    for ext in sorted(cancelled):
        got = store.call("GET", "/_orders/%s" % ext)
        notes = [n.get("note", "") for n in got.get("notes", [])]
        removed = [n for n in notes if n.startswith("Removed from Counterpoint")]
        tkt = (rows.get(ext) or (None,) * 4)[3] or "?"
        if got.get("status") != "cancelled" or len(removed) != 1 or tkt not in removed[0]:
            bad.append("%s: %s, %d removal note(s)" % (ext, got.get("status"), len(removed)))
    checks.check(not bad, "%d cancelled order(s) wrong in the store: %s"
                 % (len(bad), "; ".join(bad[:6])))

    env = C.run_env(tools, scratch, "drift")
    res = subprocess.run([tools.cpbridge, "drift", pipeline], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=300)
    checks.check(res.returncode == 0, "cpbridge drift exited %d: %s%s"
                 % (res.returncode, res.stdout[-600:], res.stderr[-300:]))


def main(argv):
    a = parse_args(argv)
    started = time.monotonic()
    tools = C.Tools(a.build)
    total = a.orders
    name = "cancel-%s" % a.db
    checks = C.Checks()
    scratch = C.Scratch(name, keep=a.keep)
    db = C.Postgres(name) if a.db == "pg" else C.Sqlite(scratch)
    rng = random.Random(a.seed)
    store = None
    try:
        orders_dir, manifest = C.generate(scratch, total, a.seed, start_id=8000)
        store = C.Store(scratch, orders_dir)
        source, sync = C.woo_stages(store)
        pipeline = C.write_pipeline(scratch.path("woo.cfg"), tools, db,
                                    "\n  " + source + "," + C.CP_STEPS + "," + sync,
                                    lease="%ds" % LEASE_S, batch=10,
                                    run_extra='store_cancel = "rollback";')
        C.db_init(tools, pipeline, scratch)
        inv0 = C.inventory(db)
        runs = C.Runs(tools, scratch, checks)
        C.drain(runs, db, pipeline, "apply", deadline_s=180, checks=checks)
        valid = [str(o["id"]) for o in manifest["orders"] if o["kind"] == "valid"]
        picked = rng.sample(valid, min(a.cancel, len(valid)))
        cancelled = set(picked)
        nwaves = max(1, a.kills // 2)
        waves = [sorted(picked[i::nwaves]) for i in range(nwaves)]
        # A store that answers in 10 ms keeps the notes in flight long enough
        # for kills to land between a rollback and its note.
        store.call("POST", "/_latency", {"latency_ms": 10})
        C.log("%s: %d orders applied, %d cancelled in the store, %s" % (name, len(valid),
                                                                       len(cancelled), db.dialect))
        # A wave of cancellations before every other kill.
        kill_runs(a, runs, db, pipeline, store, waves, checks, rng)
        n = C.drain(runs, db, pipeline, "drain", deadline_s=180, checks=checks)
        C.log("drained (%d runs); %s" % (n, runs.report()))
        check_outcome(db, store, tools, scratch, pipeline, manifest, cancelled, inv0, checks)
        return C.finish(name, checks, scratch, started, "(%d orders, %d cancelled, %s)"
                        % (total, len(cancelled), runs.report()))
    finally:
        if store is not None:
            store.close()
        db.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
