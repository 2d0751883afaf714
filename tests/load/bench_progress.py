#!/usr/bin/python3
"""bench_progress.py [--build DIR] [--reps N] — what run's progress line
costs: the same 1,000 orders x 3 lines on SQLite, N times (default 5) each
with stderr on a pseudo-terminal (the line drawn) and on a pipe (none),
alternating; prints the median wall time of each and their ratio."""

import argparse
import os
import pty
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    cpb = os.path.join(a.build, "core", "cpbridge")
    tmp = tempfile.mkdtemp(prefix="cpb-bench-progress-")
    orders = os.path.join(tmp, "orders")
    subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tests/load/gen_orders.py"), "--count",
                    "1000", "--lines", "3", "--seed", "9", "--out", orders], check=True,
                   stdout=subprocess.DEVNULL)
    env = dict(os.environ, TERM="xterm")
    env.pop("INVOCATION_ID", None)
    env.pop("JOURNAL_STREAM", None)
    times = {"terminal": [], "pipe": []}
    for rep in range(a.reps):
        for how in ("terminal", "pipe"):
            db = os.path.join(tmp, "%s-%d.db" % (how, rep))
            cfg = os.path.join(tmp, "%s-%d.cfg" % (how, rep))
            with open(cfg, "w", encoding="utf-8") as f:
                f.write('name = "bench-progress";\nstage_dirs = [ "%s" ];\n'
                        'database = { dialect = "sqlite"; connection = "Driver=SQLite3;'
                        'Database=%s;Timeout=5000"; };\nrun = { lock_file = "%s"; };\n'
                        'stages = ( { stage = "source-file"; id = "gen"; options = { path = "%s";'
                        ' }; }, { stage = "validate"; options = { store = "WEB"; allow_walk_in ='
                        ' true; price_check = "warn"; }; }, { stage = "create-order"; options ='
                        ' { store = "WEB"; station = "WEB-01"; pay_code = "EC_WOOCOMM"; }; },'
                        ' { stage = "update-qty"; } );\n'
                        % (os.path.join(a.build, "stages"), db, cfg + ".lock", orders))
            subprocess.run([cpb, "db", "init", cfg, "--demo"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            argv = [cpb, "run", cfg]
            t0 = time.monotonic()
            if how == "terminal":
                pid, fd = pty.fork()
                if pid == 0:
                    os.execve(cpb, argv, env)
                while True:
                    try:
                        if not os.read(fd, 65536):
                            break
                    except OSError:
                        break
                os.waitpid(pid, 0)
                os.close(fd)
            else:
                subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, check=False)
            times[how].append(time.monotonic() - t0)
    mt, mp = statistics.median(times["terminal"]), statistics.median(times["pipe"])
    print("1000 orders x 3 lines, SQLite, %d runs each (median, min..max):" % a.reps)
    for how in ("terminal", "pipe"):
        v = times[how]
        print("  %-8s %.3f s (%.3f..%.3f)" % (how, statistics.median(v), min(v), max(v)))
    print("  ratio terminal/pipe: %.3f" % (mt / mp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
