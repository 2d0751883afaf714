#!/usr/bin/python3
"""bench_report.py - how long `cpbridge report` takes and how big its page
is for a large period (figures, not pass/fail; docs/PERFORMANCE.md):

    bench_report.py [--build DIR] [--orders 100000] [--repeat 5]
                    [--db sqlite|pg|both]

Seeds a fresh database (`cpbridge db init`, then one INSERT ... SELECT each
in SQL, so seeding takes seconds) with N orders spread over the last 6.9
days: 97 % APPLIED with an 'applied' event carrying per-step timings the
way the runner writes them, 2 % INVALID, 1 % DEAD, each with its audit
events, and a 'staged' event per order, as a real run leaves them. Then runs
`cpbridge report` (HTML to a file) and `cpbridge report --json` --repeat
times each and prints the median and min..max wall time, the peak RSS
(the largest of the cpbridge processes it ran, from getrusage) and the size
of the page. The dead-letter list is capped (200 shown), so the page stays
small however many orders there are.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "chaos"))
import chaoslib  # noqa: E402

# One statement per table and dialect; :N is the number of orders. The
# orders are i = 1..N, order i applied i * 6 s before now (N = 100,000
# covers 6.9 days), placed i % 3600 s before it was applied.
SQL = {
    "sqlite": [
        """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :N)
INSERT INTO USER_ORDER_STAGING (SOURCE, EXT_ORDER_ID, STATUS, PAYLOAD, PAYLOAD_HASH,
  NEXT_ATTEMPT_DT, RECEIVED_DT, UPDATED_DT, ORDER_DT, APPLIED_DT, BILL_NAM, LAST_ERROR_CODE,
  LAST_ERROR, ATTEMPTS)
SELECT 'bench', CAST(i AS TEXT), st, '{}', 'h', t, t, t,
  strftime('%Y-%m-%d %H:%M:%f', t, '-' || (i % 3600) || ' seconds'),
  CASE WHEN st = 'APPLIED' THEN t END, 'Customer ' || i,
  CASE st WHEN 'INVALID' THEN 'item.unknown' WHEN 'DEAD' THEN 'db.retryable' END,
  CASE st WHEN 'INVALID' THEN 'validate: line 1 SKU ''X-' || i || ''' matches no item'
          WHEN 'DEAD' THEN 'deadlock victim, 3 attempts' END,
  CASE st WHEN 'DEAD' THEN 3 ELSE 1 END
FROM (SELECT i, strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (i * 6) || ' seconds') AS t,
        CASE WHEN i % 50 = 0 THEN 'INVALID' WHEN i % 100 = 1 THEN 'DEAD' ELSE 'APPLIED' END
          AS st FROM n)""",
        """INSERT INTO USER_ORDER_EVENT (STAGING_ID, EVENT_DT, KIND, STATUS_FROM, STATUS_TO)
SELECT STAGING_ID, RECEIVED_DT, 'staged', NULL, 'PENDING' FROM USER_ORDER_STAGING""",
        """INSERT INTO USER_ORDER_EVENT (STAGING_ID, EVENT_DT, KIND, STATUS_FROM, STATUS_TO,
  CODE, MESSAGE, DURATION_MS)
SELECT STAGING_ID, UPDATED_DT, lower(STATUS), 'PENDING', STATUS, LAST_ERROR_CODE,
  CASE WHEN STATUS = 'APPLIED' THEN printf('validate %.1f ms, create-order %.1f ms,'
    || ' update-qty %.1f ms', (STAGING_ID % 40) / 10.0 + 0.3, (STAGING_ID % 90) / 10.0 + 1.1,
    (STAGING_ID % 25) / 10.0 + 0.4) ELSE LAST_ERROR END,
  CASE WHEN STATUS = 'APPLIED' THEN 4 + STAGING_ID % 11 END
FROM USER_ORDER_STAGING""",
    ],
    "postgresql": [
        """INSERT INTO USER_ORDER_STAGING (SOURCE, EXT_ORDER_ID, STATUS, PAYLOAD, PAYLOAD_HASH,
  NEXT_ATTEMPT_DT, RECEIVED_DT, UPDATED_DT, ORDER_DT, APPLIED_DT, BILL_NAM, LAST_ERROR_CODE,
  LAST_ERROR, ATTEMPTS)
SELECT 'bench', i::text, st, '{}', 'h', t, t, t, t - make_interval(secs => i % 3600),
  CASE WHEN st = 'APPLIED' THEN t END, 'Customer ' || i,
  CASE st WHEN 'INVALID' THEN 'item.unknown' WHEN 'DEAD' THEN 'db.retryable' END,
  CASE st WHEN 'INVALID' THEN 'validate: line 1 SKU ''X-' || i || ''' matches no item'
          WHEN 'DEAD' THEN 'deadlock victim, 3 attempts' END,
  CASE st WHEN 'DEAD' THEN 3 ELSE 1 END
FROM (SELECT i, (now() AT TIME ZONE 'UTC') - make_interval(secs => i * 6) AS t,
        CASE WHEN i % 50 = 0 THEN 'INVALID' WHEN i % 100 = 1 THEN 'DEAD' ELSE 'APPLIED' END
          AS st FROM generate_series(1, :N) AS i) AS n""",
        """INSERT INTO USER_ORDER_EVENT (STAGING_ID, EVENT_DT, KIND, STATUS_FROM, STATUS_TO)
SELECT STAGING_ID, RECEIVED_DT, 'staged', NULL, 'PENDING' FROM USER_ORDER_STAGING""",
        """INSERT INTO USER_ORDER_EVENT (STAGING_ID, EVENT_DT, KIND, STATUS_FROM, STATUS_TO,
  CODE, MESSAGE, DURATION_MS)
SELECT STAGING_ID, UPDATED_DT, lower(STATUS), 'PENDING', STATUS, LAST_ERROR_CODE,
  CASE WHEN STATUS = 'APPLIED' THEN 'validate ' || to_char((STAGING_ID % 40) / 10.0 + 0.3,
    'FM990.0') || ' ms, create-order ' || to_char((STAGING_ID % 90) / 10.0 + 1.1, 'FM990.0')
    || ' ms, update-qty ' || to_char((STAGING_ID % 25) / 10.0 + 0.4, 'FM990.0') || ' ms'
    ELSE LAST_ERROR END,
  CASE WHEN STATUS = 'APPLIED' THEN 4 + STAGING_ID % 11 END
FROM USER_ORDER_STAGING""",
        "ANALYZE",
    ],
}


def seed(db, n):
    statements = [s.replace(":N", str(n)) for s in SQL[db.dialect]]
    if db.dialect == "sqlite":
        import sqlite3
        con = sqlite3.connect(db.path)
        for s in statements:
            con.execute(s)
        con.commit()
        con.execute("ANALYZE")
        con.close()
    else:
        for s in statements:
            db.psql(s)


def timed(cmd, env):
    t0 = time.monotonic()
    res = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, timeout=600)
    wall = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit("bench_report: %s exited %d: %s" % (cmd, res.returncode, res.stderr))
    return wall


def bench(tools, kind, n, repeat):
    scratch = chaoslib.Scratch("bench-report-" + kind)
    db = chaoslib.Sqlite(scratch) if kind == "sqlite" else chaoslib.Postgres("bench_report")
    try:
        pipeline = chaoslib.write_pipeline(scratch.path("bench.cfg"), tools, db,
                                           chaoslib.source_file(scratch.path("none")),
                                           name="bench")
        os.makedirs(scratch.path("none"), exist_ok=True)
        chaoslib.db_init(tools, pipeline, scratch)
        t0 = time.monotonic()
        seed(db, n)
        seeded = time.monotonic() - t0
        env = chaoslib.run_env(tools, scratch, "bench")
        out = scratch.path("report.html")
        html = [timed([tools.cpbridge, "report", pipeline, "-o", out], env)
                for _ in range(repeat)]
        js = [timed([tools.cpbridge, "report", pipeline, "--json"], env)
              for _ in range(repeat)]
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        size = os.path.getsize(out)
        events = db.scalar("SELECT COUNT(*) FROM USER_ORDER_EVENT")
        print("%-10s %7d orders, %7d events (seeded in %.1f s)" % (kind, n, events, seeded))
        for name, values in (("HTML", html), ("--json", js)):
            print("  report %-6s median %.3f s (min %.3f .. max %.3f, %d runs)"
                  % (name, statistics.median(values), min(values), max(values), len(values)))
        print("  page size %d bytes (%.1f KiB); peak RSS of a report run %.1f MiB"
              % (size, size / 1024.0, rss / 1024.0))
    finally:
        db.close()
        scratch.close(False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=chaoslib.default_build())
    ap.add_argument("--orders", type=int, default=100000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--db", choices=("sqlite", "pg", "both"), default="sqlite")
    args = ap.parse_args()
    tools = chaoslib.Tools(args.build)
    for kind in (("sqlite", "pg") if args.db == "both" else (args.db,)):
        bench(tools, kind, args.orders, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
