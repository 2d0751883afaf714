#!/usr/bin/python3
"""bench_store.py - the store side of cpbridge: figures, not pass/fail
timings (run with /usr/bin/python3; tests/load/bench_store.sh is the usual
entry point).

    bench_store.sh                   1, 60 and 1,000 orders x 0, 50 and
                                     300 ms of store latency, once each
    bench_store.sh --quick           1 and 60 orders x 0 and 50 ms
    bench_store.sh --orders 60 --latency 300 --reps 3

Options: --orders LIST and --latency LIST (comma-separated; orders and
milliseconds), --reps N (runs per case, default 1; with more, figures are
the median and min..max), --build DIR (default: the checkout's build; needs
core/cpbridge and stages/), --json FILE (every raw measurement), --keep
(leave the scratch directory), --connections N (sets sync-status's
`connections` option; without it the pipeline has no such line),
--store-workers N (passed to the stand-in as --workers), --seed N (the
generator's seed, default 1).

Why: a WooCommerce store that takes 300 ms to answer each request makes
the write-back the bottleneck of a run, not the database. sync-status 1.0
made four requests per order, one after another (read the order, PUT its
status, read its notes, POST the note: 0.7 orders/s at 300 ms); 1.1 reads
and sets the statuses of up to 100 orders in two requests and posts the
notes `connections` at a time (docs/PERFORMANCE.md has both).

What is measured, per case and run (everything fresh each time: a new
stand-in, tests/servers/woo_standin.py over plain http with OAuth 1.0a as
the tests use it, holding the N generated orders, status "processing",
distinct ids and numbers, SKUs of the demo catalogue (tests/load/
gen_orders.py, no invalid ones); a new SQLite demo database from
`cpbridge db init PIPELINE --demo`):
  - one `cpbridge run PIPELINE --json` of source-woo -> validate ->
    create-order -> update-qty -> sync-status under /usr/bin/time -v: wall
    seconds around the process and orders/s = N / wall, end to end (read
    from the store and staged, applied, status and note written back);
    peak RSS;
  - the store's latency L is set on the stand-in (POST /_latency, or, on a
    stand-in without it, a "slow" fault with delay_ms = L on every API
    request; the machine line says which);
  - the requests the store saw (GET /_stats, or counted from the request
    log GET /_requests on a stand-in without /_stats: said in the output):
    in total and per order, and the write-back requests per order (all but
    source-woo's GET /orders list pages, told from sync-status's
    GET /orders?include= status reads by the request log); by route; the
    most requests in flight at once when /_stats reports it;
  - "one-at-a-time bound": what a client that sent these requests one
    after the other could reach at best, N / (requests x L), for
    comparison (a client with requests in flight at once can beat it);
  - time in sync-status per order, from USER_SYNC_LOG.STAGE_TIMINGS;
  - correctness, after each run: the --json summary counts every order
    applied and its after-commit work done; every staging row APPLIED with
    nothing due; and in the store (GET /_orders/{id}, with "notes") each
    order is "completed", with exactly one "Order status changed" note and
    exactly one cpbridge note, naming the order's ticket. A run that breaks
    any of these is marked in the table and the script exits 1.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench as B  # noqa: E402  (the database benchmark: shared helpers)

sh = B.sh
summary = B.summary
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
PY = "/usr/bin/python3"
GEN = os.path.join(HERE, "gen_orders.py")
WOO_STANDIN = os.path.join(ROOT, "tests", "servers", "woo_standin.py")
# source-woo's id: the demo customer map (USER_CUSTOMER_MAP) is keyed by it.
SOURCE_ID = "samples"
SYNC_ID = "sync-status"
BATCH = 50
LINES = (1, 3)
API_PREFIX = "/wp-json/wc/v3"
LIST_ROUTE = "GET /orders"
# sync-status reading the statuses of many orders at once: GET /orders?include=...
INCLUDE_ROUTE = "GET /orders?include="


def log(msg):
    sys.stderr.write("bench_store: %s\n" % msg)
    sys.stderr.flush()


def die(msg):
    log(msg)
    sys.exit(1)


def int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of integers: %r" % text)
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("a comma-separated list of integers >= 0: %r" % text)
    return values


# ---------------------------------------------------------------------------
# Statistics


def fmt(s, digits=0):
    """'12.3' for one run, '12.3 (12.0..12.9)' for several."""
    if s is None:
        return "-"
    f = "%%.%df" % digits
    if s["n"] == 1 or s["min"] == s["max"]:
        return f % s["median"]
    return "%s (%s..%s)" % (f % s["median"], f % s["min"], f % s["max"])


# ---------------------------------------------------------------------------
# The stand-in


def route_of(method, path):
    """'PUT /wp-json/wc/v3/orders/123?x' -> 'PUT /orders/{id}' (the keys of
    /_stats' by_route)."""
    path = path.split("?", 1)[0]
    if path.startswith(API_PREFIX):
        path = path[len(API_PREFIX):]
    path = re.sub(r"/\d+(?=/|$)", "/{id}", path.rstrip("/") or "/")
    return "%s %s" % (method.upper(), path)


class Store:
    """tests/servers/woo_standin.py with the generated orders, its latency
    set by whatever means this version of it has."""

    def __init__(self, scratch, label, orders_file, latency_ms, workers=None):
        self.dir = scratch
        port_file = os.path.join(scratch, label + ".port")
        self.log_path = os.path.join(scratch, label + ".woo.log")
        self.log = open(self.log_path, "w", encoding="utf-8")
        cmd = [PY, WOO_STANDIN, "--port-file", port_file, "--orders", orders_file]
        if workers:
            cmd += ["--workers", str(workers)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        end = time.monotonic() + 60
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.close()
                raise RuntimeError("the WooCommerce stand-in did not start (exit %s); see %s"
                                   % (self.proc.returncode, self.log_path))
            time.sleep(0.05)
        with open(port_file, encoding="utf-8") as fh:
            self.port = int(fh.read().strip())
        self.url = "http://127.0.0.1:%d" % self.port
        self.latency_ms = latency_ms
        self.workers = workers
        self.latency_via = self.set_latency(latency_ms)
        self.stats_via = self.reset_stats()

    def call(self, method, path, body=None, missing_ok=False):
        """A control request; its JSON answer, or None on 404 with
        missing_ok (a control endpoint this stand-in does not have)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            if missing_ok and err.code == 404:
                err.read()
                return None
            raise RuntimeError("stand-in %s %s: HTTP %d %s" % (method, path, err.code,
                                                                err.read()[:300]))

    def set_latency(self, ms):
        got = self.call("POST", "/_latency", {"latency_ms": ms}, missing_ok=True)
        if got is not None:
            now = self.call("GET", "/_latency")
            if int(now.get("latency_ms", -1)) != ms:
                raise RuntimeError("the stand-in's latency is %r after setting %d ms" % (now, ms))
            self.workers = now.get("workers")
            return "/_latency"
        if ms:
            self.call("POST", "/_fault", {"kind": "slow", "delay_ms": ms, "times": -1,
                                          "path_regex": ""})
        return "slow fault"

    def reset_stats(self):
        self.call("DELETE", "/_requests")
        if self.call("DELETE", "/_stats", missing_ok=True) is not None:
            return "/_stats"
        return "/_requests"

    def stats(self):
        """{"requests": n, "by_route": {...}, ...}: the counters of /_stats
        when the stand-in has it, and by_route always from the request log,
        where source-woo's list pages ("GET /orders") can be told from
        sync-status's status reads ("GET /orders?include=", the same route
        in /_stats)."""
        got = {}
        if self.stats_via == "/_stats":
            got = self.call("GET", "/_stats")
            got["stats_by_route"] = got.pop("by_route", {})
        by_route = {}
        entries = self.call("GET", "/_requests")
        for rec in entries:
            route = route_of(rec.get("method", "?"), rec.get("path", "?"))
            if route == LIST_ROUTE:
                params = rec.get("params")
                if not isinstance(params, dict):
                    params = urllib.parse.parse_qs(rec.get("query") or "")
                if "include" in params:
                    route = INCLUDE_ROUTE
            by_route[route] = by_route.get(route, 0) + 1
        got["by_route"] = by_route
        got["logged"] = len(entries)
        if "requests" in got and got["requests"] != len(entries):
            log("  warning: /_stats counts %d requests, the request log %d"
                % (got["requests"], len(entries)))
        got.setdefault("requests", len(entries))
        return got

    def order(self, order_id):
        return self.call("GET", "/_orders/%d" % order_id)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.cpbridge = os.path.join(self.build, "core", "cpbridge")
        self.stages = os.path.join(self.build, "stages")
        for path in (self.cpbridge, self.stages, WOO_STANDIN):
            if not os.path.exists(path):
                die("%s is missing: build first (scripts/build.sh)" % path)
        self.env = dict(os.environ)
        self.env["CPBRIDGE_STAGE_PATH"] = self.stages
        if args.connections is not None:
            described = sh([self.cpbridge, "stages", "--describe", "sync-status"], env=self.env)
            if not re.search(r"^\s*connections \(", described, re.M):
                die("--connections: the sync-status of %s has no `connections` option"
                    % self.build)
        self.scratch = tempfile.mkdtemp(prefix="cpbridge-bench-store.")
        self.generated = {}
        self.results = {"machine": {}, "cases": []}
        self.failed = False
        self.last_cpu = 0.0

    def close(self):
        if self.args.keep:
            log("kept %s" % self.scratch)
        else:
            shutil.rmtree(self.scratch, ignore_errors=True)

    # -- inputs ------------------------------------------------------------

    def orders(self, count):
        """Generate (once) `count` valid orders as one array file; (file,
        manifest)."""
        if count not in self.generated:
            base = os.path.join(self.scratch, "orders-%d" % count)
            sh([PY, GEN, "--count", str(count), "--lines", str(LINES[0]), "--lines-max",
                str(LINES[1]), "--seed", str(self.args.seed), "--invalid-share", "0",
                "--out", base, "--format", "array", "--manifest", base + ".manifest.json"])
            with open(base + ".manifest.json", encoding="utf-8") as fh:
                manifest = json.load(fh)
            ids = [o["id"] for o in manifest["orders"]]
            if len(set(ids)) != count or len(set(o["number"] for o in manifest["orders"])) != count:
                raise RuntimeError("the generator repeated an order id or number")
            self.generated[count] = (os.path.join(base, "orders.json"), manifest)
        return self.generated[count]

    def pipeline(self, label, db_path, store):
        connections = ""
        if self.args.connections is not None:
            connections = " connections = %d;" % self.args.connections
        path = os.path.join(self.scratch, label + ".cfg")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("""# %s - written by tests/load/bench_store.py.
name = "bench-store";
stage_dirs = [ "%s" ];
database = { dialect = "sqlite"; connection = "Driver=SQLite3;Database=%s;Timeout=2000;JournalMode=WAL;FKSupport=1"; };
run = { batch = %d; lease = "2m"; lock_file = "%s"; };
log = { level = "info"; format = "text"; };
stages = (
  { stage = "source-woo"; id = "%s"; options = { url = "%s"; consumer_key = "ck_test";
      consumer_secret = "cs_test"; statuses = [ "processing" ]; per_page = 100;
      max_pages = 1000; }; },
  { stage = "validate"; options = { store = "WEB"; allow_walk_in = true; price_check = "warn"; }; },
  { stage = "create-order"; options = { store = "WEB"; station = "WEB-01"; pay_code = "EC_WOOCOMM"; }; },
  { stage = "update-qty"; options = { column = "QTY_ON_SO"; }; },
  { stage = "sync-status"; id = "%s"; options = { url = "%s"; consumer_key = "ck_test";
      consumer_secret = "cs_test"; source = "%s"; status = "completed";%s }; }
);
""" % (os.path.basename(path), self.stages, db_path, BATCH,
                os.path.join(self.scratch, label + ".lock"), SOURCE_ID, store.url, SYNC_ID,
                store.url, SOURCE_ID, connections))
        return path

    def timed(self, cmd, label):
        """Run cmd under /usr/bin/time -v: (wall seconds, peak RSS KiB,
        exit status, stdout, log file)."""
        time_file = os.path.join(self.scratch, label + ".time")
        err_file = os.path.join(self.scratch, label + ".log")
        with open(err_file, "w", encoding="utf-8") as err:
            t0 = time.monotonic()
            res = subprocess.run(["/usr/bin/time", "-v", "-o", time_file] + cmd,
                                 stdout=subprocess.PIPE, stderr=err, text=True, env=self.env)
            wall = time.monotonic() - t0
        rss = None
        cpu = 0.0
        with open(time_file, encoding="utf-8") as fh:
            for line in fh:
                if "Maximum resident set size" in line:
                    rss = int(line.rsplit(":", 1)[1])
                if "User time (seconds)" in line or "System time (seconds)" in line:
                    cpu += float(line.rsplit(":", 1)[1])
        self.last_cpu = cpu
        return wall, rss, res.returncode, res.stdout, err_file

    # -- one measurement -----------------------------------------------------

    def run_once(self, count, latency, rep):
        orders_file, manifest = self.orders(count)
        label = "run-%d-%d-%d" % (count, latency, rep)
        db_path = os.path.join(self.scratch, label + ".db")
        store = Store(self.scratch, label, orders_file, latency, self.args.store_workers)
        try:
            cfg = self.pipeline(label, db_path, store)
            sh([self.cpbridge, "db", "init", cfg, "--demo"], env=self.env)
            wall, rss, code, out, err_file = self.timed([self.cpbridge, "run", cfg, "--json"],
                                                        label)
            stats = store.stats()
            problems = self.verify(count, manifest, db_path, store, code, out, err_file)
            for key in ("status_changes", "notes_added"):
                if key in stats and stats[key] != count:
                    problems.append("/_stats counts %s %s for %d orders" % (key, stats[key],
                                                                           count))
            timings = {}
            rows = query(db_path, "SELECT STAGE_TIMINGS FROM USER_SYNC_LOG ORDER BY LOG_ID DESC")
            if rows and rows[0][0]:
                timings = json.loads(rows[0][0])
        finally:
            store.close()
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(db_path + suffix) and not self.args.keep:
                    os.unlink(db_path + suffix)
        by_route = stats.get("by_route", {})
        total = int(stats.get("requests", sum(by_route.values())))
        # source-woo's list pages: stats() counts the GET /orders with
        # include= (the write-back's status reads) under INCLUDE_ROUTE.
        pages = int(by_route.get(LIST_ROUTE, 0))
        sync_ms = float(timings.get(SYNC_ID, {}).get("ms", 0.0))
        run = {
            "orders": count, "latency_ms": latency, "rep": rep, "exit": code,
            "wall": wall, "orders_per_s": count / wall, "rss_kb": rss, "cpu": self.last_cpu,
            "requests": total, "requests_per_order": total / count, "list_pages": pages,
            "writeback_per_order": (total - pages) / count,
            "by_route": by_route, "stats_by_route": stats.get("stats_by_route"),
            "max_in_flight": stats.get("max_in_flight"),
            "status_changes": stats.get("status_changes"),
            "notes_added": stats.get("notes_added"),
            "batch_items": stats.get("batch_items"),
            "store_bound_orders_per_s": (count / (total * latency / 1000.0)
                                         if latency and total else None),
            "sync_ms_per_order": sync_ms / count,
            "stage_timings": timings,
            "latency_via": store.latency_via, "stats_via": store.stats_via,
            "store_workers": store.workers,
            "problems": problems, "log": err_file,
        }
        if problems:
            self.failed = True
            for p in problems:
                log("  INCORRECT: %s" % p)
        log("  run %d: %.2f s, %.2f orders/s, %d requests (%.2f/order, write-back %.2f/order),"
            " %s KiB, %s" % (rep + 1, wall, run["orders_per_s"], total, run["requests_per_order"],
                             run["writeback_per_order"], rss,
                             "correct" if not problems else "%d problem(s)" % len(problems)))
        return run

    def verify(self, count, manifest, db_path, store, code, out, err_file):
        """Everything that must hold after the run; a list of problems."""
        problems = []
        try:
            counts = json.loads(out)["counts"]
        except (ValueError, KeyError, TypeError):
            return ["no --json summary (exit %d); see %s" % (code, err_file)]
        if code != 0:
            problems.append("exit %d; see %s" % (code, err_file))
        if counts.get("applied") != count:
            problems.append("the summary counts %s applied of %d (%s)" % (counts.get("applied"),
                                                                         count, counts))
        if "after_done" in counts and counts["after_done"] != count:
            problems.append("the summary counts %s after-commit done of %d"
                            % (counts["after_done"], count))
        rows = dict((r[0], r) for r in query(
            db_path, "SELECT EXT_ORDER_ID, STATUS, AFTER_PENDING, CP_TKT_NO"
                     " FROM USER_ORDER_STAGING"))
        if len(rows) != count:
            problems.append("%d staging rows for %d orders" % (len(rows), count))
        bad_db, bad_store = [], []
        for order in manifest["orders"]:
            ext = str(order["id"])
            row = rows.get(ext)
            if row is None or row[1] != "APPLIED" or str(row[2]) != "0":
                bad_db.append("%s: %s" % (ext, row[1:3] if row else "not staged"))
            got = store.order(order["id"])
            notes = [n.get("note", "") for n in got.get("notes", [])]
            changes = [n for n in notes if n.startswith("Order status changed")]
            ours = [n for n in notes if "cpbridge" in n]
            tkt = row[3] if row is not None and row[3] else None
            if (got.get("status") != "completed" or len(changes) != 1 or len(ours) != 1
                    or tkt is None or tkt not in ours[0]):
                bad_store.append("%s: status %s, %d status change(s), %d cpbridge note(s)"
                                 % (ext, got.get("status"), len(changes), len(ours)))
        if bad_db:
            problems.append("%d order(s) not APPLIED with nothing due: %s"
                            % (len(bad_db), "; ".join(bad_db[:5])))
        if bad_store:
            problems.append("%d order(s) wrong in the store: %s"
                            % (len(bad_store), "; ".join(bad_store[:5])))
        return problems

    def case(self, count, latency, reps):
        log("%d order(s), store latency %d ms, %d run(s)" % (count, latency, reps))
        runs = [self.run_once(count, latency, rep) for rep in range(reps)]

        def pick(key):
            values = [r[key] for r in runs if r[key] is not None]
            return summary(values) if values else None

        c = {"orders": count, "latency_ms": latency, "runs": runs,
             "correct": not any(r["problems"] for r in runs)}
        for key in ("wall", "orders_per_s", "rss_kb", "requests", "requests_per_order",
                    "writeback_per_order", "list_pages", "max_in_flight",
                    "store_bound_orders_per_s", "sync_ms_per_order", "cpu"):
            c[key] = pick(key)
        self.results["cases"].append(c)
        return c

    # -- the machine -----------------------------------------------------------

    def machine(self):
        info = B.machine_info(self.build, ["libsqlite3-0", "libsqliteodbc", "libcurl4"])
        info["host"] = socket.gethostname()
        info["build"] = self.build
        info["connections"] = self.args.connections
        self.results["machine"] = info
        return info


def query(db_path, sql):
    with sqlite3.connect(db_path, timeout=60) as db:
        return [tuple("" if v is None else v for v in row) for row in db.execute(sql)]


# ---------------------------------------------------------------------------
# Reports


def print_machine(m):
    print("### Machine\n")
    print("- CPU: %s, %d cores (nproc); RAM %.1f GiB; Debian %s; kernel %s" % (
        m.get("cpu", "?"), m["nproc"], m["ram_gib"], m["debian"], m["kernel"]))
    if m.get("packages"):
        print("- " + "; ".join("%s %s" % kv for kv in sorted(m["packages"].items())))
    print("- cpbridge build %s: %s, sanitizers %s; source %s" % (
        m["build"], m["build_type"], m["sanitize"], m.get("source", "?")))
    print("- sync-status connections: %s" % (m["connections"] if m["connections"] is not None
                                             else "not set (the stage's default)"))


def print_cases(cases, machine):
    runs = [r for c in cases for r in c["runs"]]
    vias = sorted(set(r["latency_via"] for r in runs))
    stats = sorted(set(r["stats_via"] for r in runs))
    workers = sorted(set(str(r["store_workers"]) for r in runs))
    print("- store latency set with: %s; store workers: %s (0 or None: no limit);"
          " counters from: %s%s; routes from the request log" % (
              ", ".join(vias), ", ".join(workers), ", ".join(stats),
              " (this stand-in has no /_stats: requests counted from the request log,"
              " no in-flight figures)" if "/_requests" in stats else ""))
    print("\n### Store side: source-woo -> validate -> create-order -> update-qty -> sync-status"
          " (SQLite demo database)\n")
    print("| orders | latency ms | runs | wall s | orders/s | one-at-a-time bound orders/s |"
          " requests | requests/order | write-back req/order | list pages | max in flight |"
          " sync-status ms/order | peak RSS MiB | correct |")
    print("|---:|---:|---:|---|---|---|---|---|---|---|---|---|---|---|")
    for c in cases:
        rss = None
        if c["rss_kb"] is not None:
            rss = dict(c["rss_kb"])
            for k in ("median", "min", "max"):
                rss[k] = rss[k] / 1024.0
        ops = c["orders_per_s"]["median"]
        print("| %d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            c["orders"], c["latency_ms"], len(c["runs"]), fmt(c["wall"], 2),
            fmt(c["orders_per_s"], 2 if ops < 100 else 0), fmt(c["store_bound_orders_per_s"], 2),
            fmt(c["requests"]), fmt(c["requests_per_order"], 2), fmt(c["writeback_per_order"], 2),
            fmt(c["list_pages"]), fmt(c["max_in_flight"]), fmt(c["sync_ms_per_order"], 1),
            fmt(rss, 1), "yes" if c["correct"] else "NO"))
    routes = {}
    for r in runs:
        for k in r["by_route"]:
            routes.setdefault(k, None)
    if routes:
        print("\n### Requests per order by route (median over runs)\n")
        names = sorted(routes)
        print("| orders | latency ms | " + " | ".join(names) + " |")
        print("|---:|---:|" + "---:|" * len(names))
        for c in cases:
            cells = []
            for name in names:
                per = [r["by_route"].get(name, 0) / r["orders"] for r in c["runs"]]
                cells.append("%.2f" % statistics.median(per))
            print("| %d | %d | %s |" % (c["orders"], c["latency_ms"], " | ".join(cells)))
    bad = [r for r in runs if r["problems"]]
    if bad:
        print("\n### Incorrect runs\n")
        for r in bad:
            print("- %d orders at %d ms, run %d: %s" % (r["orders"], r["latency_ms"],
                                                        r["rep"] + 1, "; ".join(r["problems"])))


def main(argv):
    p = argparse.ArgumentParser(
        description="cpbridge store-side benchmark (figures, not pass/fail).")
    p.add_argument("--orders", type=int_list, default=[1, 60, 1000],
                   help="order counts, comma-separated (default 1,60,1000)")
    p.add_argument("--latency", type=int_list, default=[0, 50, 300],
                   help="store latencies in ms, comma-separated (default 0,50,300)")
    p.add_argument("--quick", action="store_true",
                   help="1 and 60 orders at 0 and 50 ms only")
    p.add_argument("--reps", type=int, default=1, help="runs per case (default 1)")
    p.add_argument("--build", default=os.path.join(ROOT, "build"), help="build directory")
    p.add_argument("--json", help="write every measurement here")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--connections", type=int,
                   help="sync-status's `connections` option (left out when not given)")
    p.add_argument("--store-workers", type=int,
                   help="passed to the stand-in as --workers (left out when not given)")
    p.add_argument("--seed", type=int, default=1, help="generator seed")
    args = p.parse_args(argv[1:])
    if args.quick:
        args.orders, args.latency = [1, 60], [0, 50]
    if 0 in args.orders:
        p.error("--orders: every count must be at least 1")
    if args.reps < 1:
        p.error("--reps must be at least 1")

    def on_term(signum, frame):
        raise KeyboardInterrupt()

    # timeout(1) and CI send SIGTERM: stop the stand-in and print what was
    # measured, as on ^C.
    signal.signal(signal.SIGTERM, on_term)
    bench = Bench(args)
    code = 0
    try:
        info = bench.machine()
        for count in args.orders:
            for latency in args.latency:
                bench.case(count, latency, args.reps)
        if bench.failed:
            code = 1
    except (RuntimeError, OSError) as err:
        log("failed: %s" % err)
        code = 1
    except KeyboardInterrupt:
        log("interrupted")
        code = 130
    finally:
        if bench.results["cases"]:
            if code and not bench.failed:
                log("the cases measured before it stopped:")
            print_machine(bench.results["machine"])
            print_cases(bench.results["cases"], bench.results["machine"])
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(bench.results, fh, indent=1)
        bench.close()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
