#!/usr/bin/python3
"""bench.py - cpbridge benchmarks: figures, not pass/fail timings (run with
/usr/bin/python3; tests/load/bench.sh is the usual entry point).

    bench.sh --quick    1,000 orders x 5 lines on SQLite and PostgreSQL, once
    bench.sh --full     1,000 and 10,000 orders x 1, 5 and 20 lines on both,
                        3 runs each (5 for the 1,000-order cases), the floor
                        for each case, peak RSS, an array-file RSS probe and
                        the idle start-up time (20 runs)
    bench.sh --profile  200 orders x 5 lines under callgrind on both
                        databases: statement counts per order and the top
                        costs (and network syscalls on PostgreSQL)

    bench.sh --case ORDERS:LINES [--reps N]   one case, e.g. --case 10000:5
    bench.sh --merge A.json B.json ...        pool the runs of several --json
                                              files (sessions) into one table

Options: --build DIR (default: build; needs core/cpbridge, stages/ and
tests/load/floor: scripts/build.sh builds them), --db sqlite|postgresql|both
(default both), --json FILE (every raw measurement), --keep (leave the
scratch directory), --seed N (the generator's seed, default 1).

What is measured, per case (a fresh database each time: a new SQLite file,
or a new PostgreSQL database in a throwaway cluster this script starts and
stops with tests/services/pg.sh):
  - `cpbridge run` end to end: source-file reads the generated files (one
    order per file), stages them, and validate, create-order and update-qty
    apply each order in its own transaction; wall time around the process,
    orders/s = orders / wall time; the --json summary's counts are checked
    (every valid order applied, the invalid ones held);
  - per-stage time per order from USER_SYNC_LOG.STAGE_TIMINGS; the part of
    the run outside the stages (claims, reading the order back, marking it
    applied, the audit events, commits) is "engine";
  - peak RSS from /usr/bin/time -v;
  - the floor (tests/load/floor: the same rows, fewest statements, one
    transaction per order, prepared statements reused) on another fresh
    database; the ratio is cpbridge's median wall time over the floor's.
Every figure is reported as the median with its spread (min..max and
(max-min)/median); never a single run, except in --quick (one run).
"""

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
PY = "/usr/bin/python3"
GEN = os.path.join(HERE, "gen_orders.py")
PG_SH = os.path.join(ROOT, "tests", "services", "pg.sh")
STAGES = ("samples", "validate", "create-order", "update-qty")
INVALID_SHARE = 0.05
BATCH = 100


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


def die(msg):
    log(msg)
    sys.exit(1)


def sh(cmd, **kw):
    """Run a command (a list); its stdout as text. Raises on failure."""
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if res.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(cmd[:3]), res.returncode,
                                                 res.stderr.strip()[-800:]))
    return res.stdout


def machine_info(build, packages):
    """The machine and the build, for the figures' heading: CPU, cores, RAM,
    Debian and kernel, the versions of the Debian `packages`, the build's
    type and sanitizers (warned about when they slow the figures) and the
    source revision. Shared with bench_store.py."""
    info = {"nproc": os.cpu_count(), "kernel": platform.release()}
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as fh:
        kb = int(fh.readline().split()[1])
        info["ram_gib"] = round(kb / 1024 / 1024, 1)
    try:
        with open("/etc/debian_version", encoding="utf-8") as fh:
            info["debian"] = fh.read().strip()
    except OSError:
        info["debian"] = "?"
    try:
        pkgs = sh(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n"] + list(packages))
        info["packages"] = dict(line.split(" ", 1) for line in pkgs.splitlines() if line)
    except (RuntimeError, OSError):
        info["packages"] = {}
    cache = os.path.join(build, "CMakeCache.txt")
    info["build_type"] = "?"
    info["sanitize"] = "?"
    if os.path.exists(cache):
        with open(cache, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    info["build_type"] = line.split("=", 1)[1].strip()
                if line.startswith("CPB_SANITIZE:"):
                    info["sanitize"] = line.split("=", 1)[1].strip()
    if info["build_type"] == "Debug" or info["sanitize"] == "ON":
        log("warning: %s is a %s build (sanitizers %s): figures will be slow" %
            (build, info["build_type"], info["sanitize"]))
    try:
        info["source"] = sh(["git", "-C", ROOT, "describe", "--always", "--dirty"]).strip()
    except (RuntimeError, OSError):
        info["source"] = "?"
    return info


# ---------------------------------------------------------------------------
# Statistics


def summary(values):
    """Median, min, max and relative spread of a list of numbers."""
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    spread = (hi - lo) / med * 100 if med else 0.0
    return {"median": med, "min": lo, "max": hi, "spread_pct": spread, "n": len(values)}


def fmt(s, digits=0, unit=""):
    """'1234 (1200..1250, 4%)' or just the value for one run."""
    f = "%%.%df" % digits
    if s["n"] == 1:
        return (f % s["median"]) + unit
    return "%s%s (%s..%s, %.0f%%)" % (f % s["median"], unit, f % s["min"], f % s["max"],
                                      s["spread_pct"])


# ---------------------------------------------------------------------------
# The databases


class Postgres:
    """A throwaway PostgreSQL 15 cluster (tests/services/pg.sh)."""

    def __init__(self, scratch):
        self.dir = os.path.join(scratch, "pg")
        self.env = None
        self.serial = 0

    def start(self):
        sh(["bash", PG_SH, "start", self.dir])
        env = {}
        with open(os.path.join(self.dir, "env"), encoding="utf-8") as fh:
            for line in fh:
                m = re.match(r"export (\w+)=(?:'([^']*)'|(\S*))$", line.strip())
                if m:
                    env[m.group(1)] = m.group(2) if m.group(2) is not None else m.group(3)
        if "CPB_TEST_PG" not in env:
            raise RuntimeError("pg.sh wrote no connection string")
        self.env = env

    def stop(self):
        try:
            sh(["bash", PG_SH, "stop", self.dir])
        except RuntimeError as err:
            log("could not stop PostgreSQL: %s" % err)

    def psql(self, sql, db=None):
        env = dict(os.environ)
        env.update({k: v for k, v in self.env.items() if k.startswith("PG")})
        if db is not None:
            env["PGDATABASE"] = db
        return sh(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql], env=env)

    def create(self, label):
        self.serial += 1
        name = "bench_%s_%d" % (re.sub(r"\W", "_", label), self.serial)
        self.psql("CREATE DATABASE %s" % name)
        conn = re.sub(r"Database=[^;]*", "Database=" + name, self.env["CPB_TEST_PG"])
        return name, conn

    def drop(self, name):
        self.psql("DROP DATABASE IF EXISTS %s" % name)

    def version(self):
        return self.psql("SHOW server_version").strip()

    def round_trip_ms(self):
        """The latency of one `SELECT 1` round trip (pgbench, 1 s), or None
        without pgbench: on a virtual machine it varies over the day, and
        every statement costs at least one."""
        pgbench = os.path.join(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"), "pgbench")
        if not os.access(pgbench, os.X_OK):
            return None
        script = os.path.join(self.dir, "..", "select1.sql")
        with open(script, "w", encoding="utf-8") as fh:
            fh.write("SELECT 1;\n")
        env = dict(os.environ)
        env.update({k: v for k, v in self.env.items() if k.startswith("PG")})
        try:
            out = sh([pgbench, "-n", "-M", "prepared", "-f", script, "-T", "1", "-c", "1"],
                     env=env)
        except RuntimeError:
            return None
        m = re.search(r"latency average = ([\d.]+) ms", out)
        return float(m.group(1)) if m else None


class Database:
    """One fresh database for one measurement."""

    def __init__(self, kind, scratch, pg, label):
        self.kind = kind
        self.pg = pg
        if kind == "sqlite":
            self.path = os.path.join(scratch, label + ".db")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.unlink(self.path + suffix)
            self.conn = ("Driver=SQLite3;Database=%s;Timeout=2000;JournalMode=WAL;FKSupport=1"
                         % self.path)
            self.name = None
        else:
            self.name, self.conn = pg.create(label)

    def dialect(self):
        return "sqlite" if self.kind == "sqlite" else "postgresql"

    def query(self, sql):
        """Rows of a query (text values)."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.path) as db:
                return [tuple("" if v is None else str(v) for v in row)
                        for row in db.execute(sql)]
        out = self.pg.psql(sql, db=self.name)
        return [tuple(line.split("|")) for line in out.splitlines() if line]

    def drop(self):
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.unlink(self.path + suffix)
        else:
            self.pg.drop(self.name)


# ---------------------------------------------------------------------------
# Running things


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.cpbridge = os.path.join(self.build, "core", "cpbridge")
        self.floor = os.path.join(self.build, "tests", "load", "floor")
        self.stages = os.path.join(self.build, "stages")
        for path in (self.cpbridge, self.floor, self.stages):
            if not os.path.exists(path):
                die("%s is missing: build first (scripts/build.sh %s)" % (path, args.build))
        self.scratch = tempfile.mkdtemp(prefix="cpbridge-bench.")
        os.chmod(self.scratch, 0o755)  # the postgres user must reach pg/
        self.pg = Postgres(self.scratch)
        self.env = dict(os.environ)
        self.env["CPBRIDGE_STAGE_PATH"] = self.stages
        self.results = {"machine": {}, "cases": [], "startup": {}, "rss_array": {}}
        self.generated = {}

    def close(self):
        if self.pg.env is not None:
            self.pg.stop()
        if self.args.keep:
            log("kept %s" % self.scratch)
        else:
            shutil.rmtree(self.scratch, ignore_errors=True)

    # -- inputs ------------------------------------------------------------

    def orders(self, count, lines, fmt_="files"):
        """Generate (once) count orders of `lines` lines; their directory,
        floor file and manifest."""
        key = (count, lines, fmt_)
        if key not in self.generated:
            base = os.path.join(self.scratch, "orders-%d-%d-%s" % (count, lines, fmt_))
            t0 = time.monotonic()
            sh([PY, GEN, "--count", str(count), "--lines", str(lines), "--seed",
                str(self.args.seed), "--invalid-share", str(INVALID_SHARE), "--out",
                base, "--format", fmt_, "--manifest", base + ".manifest.json",
                "--floor", base + ".floor.tsv"])
            with open(base + ".manifest.json", encoding="utf-8") as fh:
                manifest = json.load(fh)
            valid = sum(1 for o in manifest["orders"] if o["kind"] == "valid")
            log("generated %d orders x %d lines (%s) in %.1f s" %
                (count, lines, fmt_, time.monotonic() - t0))
            self.generated[key] = (base, base + ".floor.tsv", valid)
        return self.generated[key]

    def pipeline(self, db, orders_dir, label):
        path = os.path.join(self.scratch, label + ".cfg")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("""name = "bench";
database = { dialect = "%s"; connection = "%s"; };
run = { batch = %d; lease = "2m"; lock_file = "%s"; };
log = { level = "info"; format = "text"; };
stages = (
  { stage = "source-file"; id = "samples"; options = { path = "%s"; }; },
  { stage = "validate"; options = { store = "WEB"; allow_walk_in = true; price_check = "warn"; }; },
  { stage = "create-order"; options = { store = "WEB"; station = "WEB-01"; pay_code = "EC_WOOCOMM"; }; },
  { stage = "update-qty"; options = { column = "QTY_ON_SO"; }; }
);
""" % (db.dialect(), db.conn, BATCH, os.path.join(self.scratch, label + ".lock"), orders_dir))
        return path

    def init_db(self, cfg):
        sh([self.cpbridge, "db", "init", cfg, "--demo"], env=self.env)

    def timed(self, cmd, label):
        """Run cmd under /usr/bin/time -v: (wall seconds, peak RSS KiB,
        exit status, stdout)."""
        rss_file = os.path.join(self.scratch, label + ".time")
        err_file = os.path.join(self.scratch, label + ".log")
        with open(err_file, "w", encoding="utf-8") as err:
            t0 = time.monotonic()
            res = subprocess.run(["/usr/bin/time", "-v", "-o", rss_file] + cmd,
                                 stdout=subprocess.PIPE, stderr=err, text=True, env=self.env)
            wall = time.monotonic() - t0
        rss = None
        cpu = 0.0
        with open(rss_file, encoding="utf-8") as fh:
            for line in fh:
                if "Maximum resident set size" in line:
                    rss = int(line.rsplit(":", 1)[1])
                if "User time (seconds)" in line or "System time (seconds)" in line:
                    cpu += float(line.rsplit(":", 1)[1])
        self.last_cpu = cpu
        return wall, rss, res.returncode, res.stdout, err_file

    # -- one measurement -----------------------------------------------------

    def run_cpbridge(self, kind, count, lines, rep):
        orders_dir, _, valid = self.orders(count, lines)
        label = "%s-%d-%d-%d" % (kind, count, lines, rep)
        db = Database(kind, self.scratch, self.pg, label)
        try:
            cfg = self.pipeline(db, orders_dir, label)
            self.init_db(cfg)
            wall, rss, code, out, err_file = self.timed([self.cpbridge, "run", cfg, "--json"],
                                                        label)
            try:
                counts = json.loads(out)["counts"]
            except (ValueError, KeyError):
                raise RuntimeError("no --json summary (exit %d); see %s" % (code, err_file))
            if counts["applied"] != valid or counts["applied"] + counts["invalid"] != count:
                raise RuntimeError("%s: applied %d and invalid %d of %d orders (%d valid);"
                                   " see %s" % (label, counts["applied"], counts["invalid"],
                                                count, valid, err_file))
            row = db.query("SELECT STAGE_TIMINGS, DURATION_MS FROM USER_SYNC_LOG"
                           " ORDER BY STARTED_DT DESC")[0]
            timings = json.loads(row[0])
            duration_ms = float(row[1])
        finally:
            db.drop()
        stages = {}
        for name in STAGES:
            t = timings.get(name, {"ms": 0.0, "calls": 0})
            stages[name] = t["ms"] / count
        stages["engine"] = max(0.0, duration_ms - sum(t["ms"] for t in timings.values())) / count
        return {"wall": wall, "rss_kb": rss, "orders_per_s": count / wall, "stage_ms": stages,
                "duration_ms": duration_ms, "exit": code, "cpu": self.last_cpu}

    def run_floor(self, kind, count, lines, rep):
        orders_dir, floor_file, valid = self.orders(count, lines)
        label = "floor-%s-%d-%d-%d" % (kind, count, lines, rep)
        db = Database(kind, self.scratch, self.pg, label)
        try:
            cfg = self.pipeline(db, orders_dir, label)
            self.init_db(cfg)
            wall, rss, code, out, err_file = self.timed(
                [self.floor, "--conn", db.conn, "--in", floor_file], label)
            if code != 0:
                raise RuntimeError("the floor failed (exit %d); see %s" % (code, err_file))
            stats = json.loads(out)
            if stats["applied"] != valid or stats["orders"] != count:
                raise RuntimeError("the floor wrote %d of %d orders" % (stats["orders"], count))
        finally:
            db.drop()
        return {"wall": wall, "rss_kb": rss, "orders_per_s": count / wall,
                "statements": stats["statements"], "cpu": self.last_cpu}

    def case(self, kind, count, lines, reps):
        log("%s: %d orders x %d lines, %d run(s)" % (kind, count, lines, reps))
        runs, floors = [], []
        for rep in range(reps):
            load = os.getloadavg()[0]
            rtt = self.pg.round_trip_ms() if kind == "postgresql" else None
            runs.append(self.run_cpbridge(kind, count, lines, rep))
            runs[-1]["loadavg"] = load
            runs[-1]["rtt_ms"] = rtt
            floors.append(self.run_floor(kind, count, lines, rep))
            log("  run %d: cpbridge %.2f s (%.0f orders/s, %d KiB, cpu %.2f s), floor %.2f s;"
                " load average before %.2f" %
                (rep + 1, runs[-1]["wall"], runs[-1]["orders_per_s"], runs[-1]["rss_kb"],
                 runs[-1]["cpu"], floors[-1]["wall"], load))
        c = summarize_case(kind, count, lines, runs, floors, [(runs, floors)])
        self.results["cases"].append(c)
        return c

    # -- idle start-up --------------------------------------------------------

    def startup(self, kind, runs):
        label = "idle-%s" % kind
        empty = os.path.join(self.scratch, "empty")
        os.makedirs(empty, exist_ok=True)
        db = Database(kind, self.scratch, self.pg, label)
        try:
            cfg = self.pipeline(db, empty, label)
            self.init_db(cfg)
            sh([self.cpbridge, "run", cfg], env=self.env)  # first run: warm caches
            hyperfine = shutil.which("hyperfine")
            times = []
            if hyperfine:
                export = os.path.join(self.scratch, label + ".hyperfine.json")
                sh([hyperfine, "--runs", str(runs), "--warmup", "1", "-N", "--export-json",
                    export, "%s run %s" % (self.cpbridge, cfg)], env=self.env)
                with open(export, encoding="utf-8") as fh:
                    times = json.load(fh)["results"][0]["times"]
                tool = "hyperfine"
            else:
                for _ in range(runs):
                    t0 = time.monotonic()
                    res = subprocess.run([self.cpbridge, "run", cfg], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, env=self.env)
                    times.append(time.monotonic() - t0)
                    if res.returncode != 0:
                        raise RuntimeError("an idle run exited %d" % res.returncode)
                tool = "loop"
        finally:
            db.drop()
        s = summary([t * 1000 for t in times])
        s["tool"] = tool
        self.results["startup"][kind] = s
        log("%s: idle run %s ms (%s, %d runs)" % (kind, fmt(s, 1), tool, runs))
        return s

    def rss_array(self, kind, count, lines):
        """Peak RSS when the same orders come as one array file."""
        orders_dir, _, valid = self.orders(count, lines, "array")
        label = "array-%s-%d-%d" % (kind, count, lines)
        db = Database(kind, self.scratch, self.pg, label)
        try:
            cfg = self.pipeline(db, orders_dir, label)
            self.init_db(cfg)
            wall, rss, code, out, _ = self.timed([self.cpbridge, "run", cfg, "--json"], label)
        finally:
            db.drop()
        self.results["rss_array"]["%s-%d-%d" % (kind, count, lines)] = {"rss_kb": rss,
                                                                       "wall": wall}
        log("%s: %d x %d lines from one array file: %d KiB peak" % (kind, count, lines, rss))

    # -- the machine -----------------------------------------------------------

    def machine(self):
        info = machine_info(self.build, ["libsqlite3-0", "libsqliteodbc", "odbc-postgresql",
                                         "libodbc2", "postgresql-15"])
        info["sqlite_runtime"] = sqlite3.sqlite_version
        self.results["machine"] = info
        return info

    # -- profile ---------------------------------------------------------------

    def profile(self, kind, count=200, lines=5):
        """Where the work goes for `count` orders: ODBC calls per order and
        instructions by library and by engine call (callgrind, both
        databases); on PostgreSQL also every statement the server saw
        (log_statement = all) and the network syscalls (strace -c), for
        cpbridge and for the floor."""
        orders_dir, floor_file, _ = self.orders(count, lines)
        out = {"orders": count, "lines": lines}
        for who in ("cpbridge", "floor"):
            for tool in (("callgrind", "strace") if kind == "postgresql" else ("callgrind",)):
                label = "profile-%s-%s-%s" % (kind, who, tool)
                db = Database(kind, self.scratch, self.pg, label)
                try:
                    if kind == "postgresql" and tool == "strace":
                        self.pg.psql("ALTER DATABASE %s SET log_statement = 'all'" % db.name)
                    cfg = self.pipeline(db, orders_dir, label)
                    self.init_db(cfg)
                    cmd = ([self.cpbridge, "run", cfg, "--log-level", "warn"] if who == "cpbridge"
                           else [self.floor, "--conn", db.conn, "--in", floor_file])
                    trace = os.path.join(self.scratch, label + ".out")
                    if tool == "callgrind":
                        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + trace] + cmd
                    else:
                        cmd = ["strace", "-f", "-c", "-o", trace] + cmd
                    server_log = os.path.join(self.pg.dir, "server.log")
                    offset = os.path.getsize(server_log) if kind == "postgresql" else 0
                    res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         text=True, env=self.env)
                    if res.returncode not in (0, 1):
                        raise RuntimeError("%s exited %d: %s" % (label, res.returncode,
                                                                 res.stderr[-500:]))
                    key = "%s_%s" % (who, tool)
                    if tool == "callgrind":
                        out[key] = callgrind_report(trace, count)
                    else:
                        out[key] = {"syscalls": strace_network(trace, count),
                                    "statements": server_statements(server_log, offset, count)}
                finally:
                    db.drop()
        return out


def callgrind_report(path, orders):
    """From a callgrind file: instructions by object (self cost), the
    engine's calls into libraries (count, inclusive share) and ODBC calls
    per order made by the program itself."""
    ids = {}
    cur = {"ob": "?", "fn": "?", "cob": None, "cfn": "?"}
    by_object = {}
    calls = {}
    costs = {}
    total = 0
    pending = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            m = re.match(r"(fn|cfn|ob|cob|fl|fi|fe|cfi|cfl)=(?:\((\d+)\))?\s*(.*)$", line)
            if m:
                key, ident, name = m.groups()
                space = {"fn": "fn", "cfn": "fn", "ob": "ob", "cob": "ob"}.get(key, "fl")
                if ident is not None:
                    if name:
                        ids[(space, ident)] = name
                    name = ids.get((space, ident), "?")
                if key in cur:
                    cur[key] = os.path.basename(name) if space == "ob" else name
                if key == "fn":
                    cur["cob"] = None
                continue
            if line.startswith("calls="):
                pending = int(line[6:].split()[0])
                continue
            if not line or not (line[0].isdigit() or line[0] in "+-*"):
                continue
            parts = line.split()
            if len(parts) < 2:
                continue
            cost = int(parts[1])
            if pending is not None:
                k = (cur["ob"], cur["fn"], cur["cob"] or cur["ob"], cur["cfn"])
                calls[k] = calls.get(k, 0) + pending
                costs[k] = costs.get(k, 0) + cost
                pending = None
                cur["cob"] = None
            else:
                by_object[cur["ob"]] = by_object.get(cur["ob"], 0) + cost
                total += cost
    engine = ("cpbridge", "floor", "source-file.so", "validate.so", "create-order.so",
              "update-qty.so")
    odbc = {}
    library_calls = []
    for (ob, fn, cob, cfn), n in calls.items():
        if ob not in engine or cob in engine:
            continue
        if cfn.startswith("SQL"):
            odbc[cfn] = odbc.get(cfn, 0) + n
        library_calls.append((costs[(ob, fn, cob, cfn)], n, "%s -> %s" % (fn, cfn)))
    library_calls.sort(reverse=True)
    return {
        "instructions": total,
        "instructions_per_order": total / orders,
        "by_object_pct": {k: v * 100.0 / total for k, v in
                          sorted(by_object.items(), key=lambda kv: -kv[1])[:10]},
        "odbc_per_order": {k: v / orders for k, v in sorted(odbc.items(), key=lambda kv: -kv[1])},
        "top_calls": [{"call": what, "calls": n, "pct": c * 100.0 / total}
                      for c, n, what in library_calls[:25]],
    }


def strace_network(path, orders):
    """sendto/recvfrom/poll counts per order from strace -c."""
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 5 and parts[-1] in ("sendto", "recvfrom", "poll"):
                try:
                    out[parts[-1]] = int(parts[3]) / orders
                except ValueError:
                    pass
    return out


def server_statements(path, offset, orders):
    """The statements PostgreSQL logged after offset, by text, per order."""
    counts = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        fh.seek(offset)
        for line in fh:
            m = re.search(r"LOG:  (?:statement|execute [^:]*): (.*)$", line)
            if not m:
                continue
            text = re.sub(r"_EXEC_SVP_0x[0-9a-f]+", "_EXEC_SVP_", m.group(1))
            text = re.sub(r"\"_PLAN0x[0-9a-f]+\"", "_PLAN", text)[:100]
            counts[text] = counts.get(text, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return {"total_per_order": sum(counts.values()) / orders,
            "by_text_per_order": [[text, n / orders] for text, n in ranked[:45]]}


# ---------------------------------------------------------------------------
# Reports


def summarize_case(kind, count, lines, runs, floors, sessions):
    """One case's figures from its runs; `sessions` lists (runs, floors)
    measured together, over which the ratio's range is taken."""
    c = {
        "db": kind, "orders": count, "lines": lines, "runs": runs, "floor": floors,
        "orders_per_s": summary([r["orders_per_s"] for r in runs]),
        "wall": summary([r["wall"] for r in runs]),
        "cpu_share": summary([r["cpu"] / r["wall"] for r in runs]),
        "rss_kb": summary([r["rss_kb"] for r in runs]),
        "floor_wall": summary([f["wall"] for f in floors]),
        "floor_orders_per_s": summary([f["orders_per_s"] for f in floors]),
        "floor_statements_per_order": floors[0]["statements"] / count,
        "loadavg": summary([r.get("loadavg", 0.0) for r in runs]),
        "rtt_ms": summary([r["rtt_ms"] for r in runs if r.get("rtt_ms") is not None])
        if any(r.get("rtt_ms") is not None for r in runs) else None,
        "stage_ms": {s: summary([r["stage_ms"][s] for r in runs])
                     for s in STAGES + ("engine",)},
    }
    c["ratio"] = c["wall"]["median"] / c["floor_wall"]["median"]
    # The ratio's range: every cpbridge run over every floor run measured
    # in the same session.
    ratios = [r["wall"] / f["wall"] for rs, fs in sessions for r in rs for f in fs]
    c["ratio_range"] = [min(ratios), max(ratios)]
    return c


def merge(paths):
    """Pool the cases of several --json result files (runs of the same case
    from different sessions)."""
    pooled = {}
    order = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            res = json.load(fh)
        for c in res.get("cases", []):
            key = (c["db"], c["orders"], c["lines"])
            if key not in pooled:
                pooled[key] = []
                order.append(key)
            pooled[key].append((c["runs"], c["floor"]))
    cases = []
    for key in order:
        sessions = pooled[key]
        runs = [r for rs, _ in sessions for r in rs]
        floors = [f for _, fs in sessions for f in fs]
        cases.append(summarize_case(key[0], key[1], key[2], runs, floors, sessions))
    return cases




def print_cases(cases):
    print("\n### End to end: orders/s (median, min..max, spread)\n")
    print("| database | orders | lines | runs | cpbridge orders/s | floor orders/s | ratio to floor"
          " (range) | peak RSS MiB | CPU/wall | load avg |")
    print("|---|---:|---:|---:|---|---|---|---|---:|---|")
    for c in cases:
        rss = dict(c["rss_kb"])
        for k in ("median", "min", "max"):
            rss[k] = rss[k] / 1024
        load = c["loadavg"]
        print("| %s | %d | %d | %d | %s | %s | %.1fx (%.1f..%.1f) | %s | %.2f | %.1f (%.1f..%.1f) |"
              % (c["db"], c["orders"], c["lines"], c["wall"]["n"], fmt(c["orders_per_s"]),
                 fmt(c["floor_orders_per_s"]), c["ratio"], c["ratio_range"][0],
                 c["ratio_range"][1], fmt(rss, 1), c["cpu_share"]["median"], load["median"],
                 load["min"], load["max"]))
    rtts = [c for c in cases if c.get("rtt_ms")]
    if rtts:
        print("\nPostgreSQL round trip (`SELECT 1`, pgbench) before the runs, ms: " + "; ".join(
            "%d x %d: %s" % (c["orders"], c["lines"], fmt(c["rtt_ms"], 3)) for c in rtts))
    print("\n### Time per order by stage, ms (median over runs)\n")
    print("| database | orders | lines | source-file + staging | validate | create-order |"
          " update-qty | engine (claim, reload, mark, events, commit) | floor statements/order |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in cases:
        s = c["stage_ms"]
        print("| %s | %d | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f |" % (
            c["db"], c["orders"], c["lines"], s["samples"]["median"], s["validate"]["median"],
            s["create-order"]["median"], s["update-qty"]["median"], s["engine"]["median"],
            c["floor_statements_per_order"]))


def print_profile(kind, prof):
    print("\n### Profile: %s, %d orders x %d lines\n" % (kind, prof["orders"], prof["lines"]))
    for who in ("cpbridge", "floor"):
        cg = prof["%s_callgrind" % who]
        print("%s: %.1f M instructions per order; ODBC calls per order: %s" % (
            who, cg["instructions_per_order"] / 1e6,
            ", ".join("%s %.1f" % kv for kv in cg["odbc_per_order"].items())))
        print("  instructions by object: " + ", ".join(
            "%s %.1f%%" % kv for kv in cg["by_object_pct"].items()))
        if who == "cpbridge":
            print("  the program's calls into libraries (inclusive share of all instructions):")
            for c in cg["top_calls"][:20]:
                print("    %5.1f%%  %8d calls  %s" % (c["pct"], c["calls"], c["call"]))
        st = prof.get("%s_strace" % who)
        if st:
            print("  network syscalls per order: %s" % ", ".join(
                "%s %.1f" % kv for kv in sorted(st["syscalls"].items())))
            print("  statements the server saw per order: %.1f" %
                  st["statements"]["total_per_order"])
            for text, n in st["statements"]["by_text_per_order"]:
                if n >= 0.02:
                    print("    %6.2f  %s" % (n, text))


def print_machine(m):
    print("### Machine\n")
    print("- CPU: %s, %d cores (nproc); RAM %.1f GiB; Debian %s; kernel %s" % (
        m.get("cpu", "?"), m["nproc"], m["ram_gib"], m["debian"], m["kernel"]))
    for name, version in sorted(m["packages"].items()):
        print("- %s %s" % (name, version))
    print("- SQLite runtime %s; PostgreSQL server %s" % (m["sqlite_runtime"],
                                                         m.get("pg_server", "-")))
    print("- cpbridge build: %s, sanitizers %s; source %s" % (m["build_type"], m["sanitize"],
                                                           m.get("source", "?")))


def main(argv):
    p = argparse.ArgumentParser(description="cpbridge benchmarks (figures, not pass/fail).")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="1,000 x 5 lines on both, once")
    mode.add_argument("--full", action="store_true", help="the whole matrix, repeated")
    mode.add_argument("--profile", action="store_true", help="callgrind on 200 x 5 lines")
    mode.add_argument("--merge", nargs="+", metavar="JSON",
                      help="pool the runs of several --json files and print the tables")
    mode.add_argument("--case", metavar="ORDERS:LINES",
                      help="one case, e.g. 10000:5 (with --reps, --db)")
    p.add_argument("--reps", type=int, default=3, help="runs per --case")
    p.add_argument("--build", default=os.path.join(ROOT, "build"), help="build directory")
    p.add_argument("--json", help="write every measurement here")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--seed", type=int, default=1, help="generator seed")
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    args = p.parse_args(argv[1:])
    if args.merge:
        print_cases(merge(args.merge))
        return 0

    bench = Bench(args)
    code = 0
    try:
        kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
        if "postgresql" in kinds:
            bench.pg.start()
        info = bench.machine()
        if "postgresql" in kinds:
            info["pg_server"] = bench.pg.version()
        print_machine(info)
        if args.profile:
            for kind in kinds:
                prof = bench.profile(kind)
                bench.results.setdefault("profile", {})[kind] = prof
                print_profile(kind, prof)
        elif args.case:
            m = re.fullmatch(r"(\d+):(\d+)", args.case)
            if not m:
                raise RuntimeError("--case wants ORDERS:LINES, e.g. 10000:5")
            for kind in kinds:
                bench.case(kind, int(m.group(1)), int(m.group(2)), max(1, args.reps))
            print_cases(bench.results["cases"])
        elif args.quick:
            for kind in kinds:
                bench.case(kind, 1000, 5, 1)
            print_cases(bench.results["cases"])
        else:
            for kind in kinds:
                for count in (1000, 10000):
                    for lines in (1, 5, 20):
                        bench.case(kind, count, lines, 5 if count == 1000 else 3)
                bench.rss_array(kind, 10000, 5)
                bench.startup(kind, 20)
            print_cases(bench.results["cases"])
            print("\n### Peak RSS: one array file of 10,000 orders x 5 lines\n")
            for key, v in bench.results["rss_array"].items():
                print("- %s: %.1f MiB" % (key, v["rss_kb"] / 1024))
            print("\n### Idle run (nothing to do), ms\n")
            for kind, s in bench.results["startup"].items():
                print("- %s: %s (%s, %d runs)" % (kind, fmt(s, 1), s["tool"], s["n"]))
    except (RuntimeError, OSError) as err:
        log("failed: %s" % err)
        code = 1
    finally:
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(bench.results, fh, indent=1)
        bench.close()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
