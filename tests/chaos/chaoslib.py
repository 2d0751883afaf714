#!/usr/bin/python3
"""chaoslib.py - what the chaos tests share (run them with /usr/bin/python3):
the tools of a build tree, a scratch directory, the two databases (a fresh
SQLite file, or a fresh database in a throwaway PostgreSQL cluster - the one
CPB_TEST_PG names, else one started here with tests/services/pg.sh),
pipeline files, `cpbridge run` processes (their exit codes and logs checked
for crashes and sanitizer reports), draining a backlog, and the invariants
every scenario ends with:

  - every order of the generator's manifest has exactly one staging row;
    valid ones are APPLIED, the invalid ones INVALID; nothing PENDING or DEAD;
    each APPLIED order has exactly one 'applied' audit event (written in the
    order's transaction), the others none;
  - PS_DOC_HDR has one document per APPLIED order and nothing else: no
    duplicate DOC_ID, TKT_NO or REF (the web order number), and each APPLIED
    row points at its own document;
  - IM_INV.QTY_ON_SO moved by exactly the valid orders' quantities per item
    and location (from the manifest), which is also what PS_DOC_LIN and
    USER_ORDER_INV say;
  - with an after-commit stage: every APPLIED order has it recorded done once
    and none is still due.

Nothing here is a mock: the engine, its stages, the databases and the store
stand-in are the real ones.
"""

import collections
import decimal
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
GEN_ORDERS = os.path.join(SRC, "tests", "load", "gen_orders.py")
WOO_STANDIN = os.path.join(SRC, "tests", "servers", "woo_standin.py")
PG_SH = os.path.join(SRC, "tests", "services", "pg.sh")
PSQL = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"

D = decimal.Decimal
# application_name of the tests' own psql sessions (never terminated).
CHECKER_APP = "cpb-chaos-check"
T0 = time.monotonic()

# Markers of a crash or a sanitizer report in a run's stderr.
CRASH_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                 "SUMMARY: UndefinedBehaviorSanitizer", "Segmentation fault")
# Exit codes a run may end with in these tests: OK, ATTENTION (invalid orders
# are expected), the database lost or busy (UNAVAILABLE), the host lock
# (TEMPFAIL, never expected: each runner has its own lock file).
RUN_OK_CODES = (0, 1, 69)


def log(msg):
    sys.stderr.write("chaos[+%6.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


class Checks:
    """Collects failed invariants, so one run reports all of them."""

    def __init__(self):
        self.failures = []
        self.lock = threading.Lock()

    def check(self, ok, msg):
        if not ok:
            with self.lock:
                self.failures.append(msg)
            log("FAIL: " + msg)
        return ok

    def fail(self, msg):
        return self.check(False, msg)

    def ok(self):
        return not self.failures


class Tools:
    """Paths of one build tree."""

    def __init__(self, build):
        self.build = os.path.abspath(build)
        self.cpbridge = os.path.join(self.build, "core", "cpbridge")
        self.stages = os.path.join(self.build, "stages")
        for path in (self.cpbridge, self.stages):
            if not os.path.exists(path):
                raise SystemExit("chaos: %s is missing: build the tree first" % path)
        self.sanitized = False
        cache = os.path.join(self.build, "CMakeCache.txt")
        if os.path.exists(cache):
            with open(cache, encoding="utf-8", errors="replace") as handle:
                self.sanitized = re.search(r"^CPB_SANITIZE:BOOL=ON$", handle.read(),
                                           re.M) is not None


def default_build():
    return os.environ.get("CPB_TEST_BUILD") or os.path.join(SRC, "build")


class Scratch:
    """A scratch directory, removed at the end unless the test failed and
    CHAOS_KEEP is set (or keep=True); CHAOS_KEEP=always keeps it anyway."""

    def __init__(self, name, keep=False):
        base = os.environ.get("TMPDIR") or "/tmp"
        self.dir = tempfile.mkdtemp(prefix="cpb-chaos-%s-" % name, dir=base)
        self.keep = keep or bool(os.environ.get("CHAOS_KEEP"))
        self.keep_always = os.environ.get("CHAOS_KEEP") == "always"

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def close(self, failed):
        if (failed and self.keep) or self.keep_always:
            log("kept %s" % self.dir)
            return
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Databases


def parse_odbc(conn):
    out = {}
    for part in conn.split(";"):
        if "=" in part:
            key, value = part.split("=", 1)
            out[key.strip().lower()] = value.strip()
    return out


class Postgres:
    """A fresh database in the CPB_TEST_PG cluster, or in a cluster of our
    own (pg.sh). Queries go through psql."""

    dialect = "postgresql"

    def __init__(self, name):
        self.own_dir = None
        given = os.environ.get("CPB_TEST_PG")
        if given:
            params = parse_odbc(given)
        else:
            self.own_dir = "/tmp/cpb-chaos-pg-%d" % os.getpid()
            subprocess.run(["bash", PG_SH, "start", self.own_dir], check=True)
            with open(os.path.join(self.own_dir, "env"), encoding="utf-8") as handle:
                text = handle.read()
            match = re.search(r"CPB_TEST_PG='([^']*)'", text)
            params = parse_odbc(match.group(1))
        self.host = params.get("server", "127.0.0.1")
        self.port = params.get("port", "5432")
        self.user = params.get("uid", "")
        self.password = params.get("pwd", "")
        self.admin_db = params.get("database", "postgres")
        self.db = "chaos_%s_%d" % (re.sub(r"[^a-z0-9_]", "_", name.lower()), os.getpid())
        self.psql("DROP DATABASE IF EXISTS %s" % self.db, db=self.admin_db)
        self.psql("CREATE DATABASE %s" % self.db, db=self.admin_db)
        self.conn = ("Driver=PostgreSQL Unicode;Server=%s;Port=%s;Database=%s;Uid=%s;Pwd=%s"
                     % (self.host, self.port, self.db, self.user, self.password))

    def env(self):
        env = dict(os.environ)
        env.update({"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
                    "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10",
                    "PGAPPNAME": CHECKER_APP})
        return env

    def psql(self, sql, db=None):
        res = subprocess.run(
            [PSQL, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
             "-d", db or self.db, "-c", sql],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env(),
            timeout=120)
        if res.returncode != 0:
            raise RuntimeError("psql: %s: %s" % (sql[:80], res.stderr.strip()))
        return [line.split("\t") for line in res.stdout.splitlines() if line != ""]

    def rows(self, sql, timeout=None):
        return [tuple(None if v == "" else v for v in row) for row in self.psql(sql)]

    def scalar(self, sql, timeout=None):
        rows = self.rows(sql)
        return int(D(rows[0][0])) if rows and rows[0][0] is not None else 0

    def terminate_others(self):
        """Terminate every connection to the test database but the checks'."""
        rows = self.psql("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
                         " WHERE datname = '%s' AND pid <> pg_backend_pid() AND"
                         " application_name <> '%s'" % (self.db, CHECKER_APP))
        return int(rows[0][0]) if rows else 0

    def close(self):
        try:
            self.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.db, db=self.admin_db)
        except (RuntimeError, subprocess.SubprocessError) as err:
            log("could not drop %s: %s" % (self.db, err))
        if self.own_dir:
            subprocess.run(["bash", PG_SH, "stop", self.own_dir], check=False)


class Locked(Exception):
    """The database stayed locked (by a frozen run) while it was read."""


class Sqlite:
    """A fresh SQLite file, written by the engine through the SQLite3 ODBC
    driver and read here with Python's sqlite3."""

    dialect = "sqlite"

    def __init__(self, scratch, timeout_ms=10000):
        self.path = scratch.path("chaos.sqlite")
        self.conn = ("Driver=SQLite3;Database=%s;Timeout=%d;JournalMode=WAL;FKSupport=1"
                     % (self.path, timeout_ms))

    def rows(self, sql, timeout=60):
        """Raises Locked when the file stays locked for timeout seconds (a
        run frozen with SIGSTOP can hold it: mid-commit, or recovering the
        WAL of a run killed before it)."""
        con = sqlite3.connect(self.path, timeout=timeout)
        try:
            return [tuple(None if v is None else str(v) for v in row)
                    for row in con.execute(sql).fetchall()]
        except sqlite3.OperationalError as err:
            if "locked" in str(err):
                raise Locked(str(err)) from err
            raise
        finally:
            con.close()

    def scalar(self, sql, timeout=60):
        rows = self.rows(sql, timeout)
        return int(D(rows[0][0])) if rows and rows[0][0] is not None else 0

    def close(self):
        pass


# ---------------------------------------------------------------------------
# Orders and pipelines


def generate(scratch, count, seed, lines=(1, 4), invalid_share=0.05, start_id=100000):
    """Write `count` orders (one file each) and their manifest; returns
    (orders dir, manifest)."""
    out = scratch.path("orders")
    manifest_path = scratch.path("manifest.json")
    subprocess.run([PY, GEN_ORDERS, "--count", str(count), "--lines", str(lines[0]),
                    "--lines-max", str(lines[1]), "--seed", str(seed), "--invalid-share",
                    str(invalid_share), "--out", out, "--start-id", str(start_id),
                    "--manifest", manifest_path], check=True)
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    return out, manifest


CP_STEPS = """
  { stage = "validate"; options = { store = "WEB"; allow_walk_in = true; price_check = "warn"; }; },
  { stage = "create-order"; options = { store = "WEB"; station = "WEB-01"; pay_code = "EC_WOOCOMM"; }; },
  { stage = "update-qty"; options = { column = "QTY_ON_SO"; }; }"""


def source_file(orders_dir):
    return '{ stage = "source-file"; id = "samples"; options = { path = "%s"; }; }' % orders_dir


def write_pipeline(path, tools, db, stages, lease="2m", batch=50, max_attempts=20, base="1s",
                   cap="2s", name="chaos", run_extra=""):
    """A pipeline file. Each process gets its own host lock through
    ${CHAOS_LOCK}, so several runners share one host. run_extra: more keys
    of the run block (e.g. 'store_cancel = "rollback";')."""
    text = """# %s - written by the chaos tests.
name = "%s";
stage_dirs = [ "%s" ];
database = { dialect = "%s"; connection = "%s"; login_timeout = "10s"; };
run = { batch = %d; lease = "%s"; lock_file = "${CHAOS_LOCK}"; %s};
retry = { max_attempts = %d; base = "%s"; cap = "%s"; };
log = { level = "info"; };
stages = (%s
);
""" % (os.path.basename(path), name, tools.stages, db.dialect, db.conn, batch,
       lease, run_extra + " " if run_extra else "", max_attempts, base, cap, stages)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def db_init(tools, pipeline, scratch):
    env = run_env(tools, scratch, "init")
    res = subprocess.run([tools.cpbridge, "db", "init", pipeline, "--demo"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if res.returncode != 0:
        raise SystemExit("chaos: db init failed (%d): %s" % (res.returncode, res.stderr))


def run_env(tools, scratch, tag):
    env = dict(os.environ)
    env["CHAOS_LOCK"] = scratch.path("lock-%s" % tag)
    env["CPBRIDGE_STAGE_PATH"] = tools.stages
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


# ---------------------------------------------------------------------------
# Runs


class Runs:
    """Starts `cpbridge run` processes and keeps what they said."""

    def __init__(self, tools, scratch, checks):
        self.tools = tools
        self.scratch = scratch
        self.checks = checks
        self.lock = threading.Lock()
        self.n = 0
        self.codes = collections.Counter()
        self.killed = 0
        self.busy = 0
        self.summaries = []

    def start(self, pipeline, tag, extra_env=None):
        """A new `cpbridge run --json` process (Popen) with its log file."""
        with self.lock:
            self.n += 1
            seq = self.n
        env = run_env(self.tools, self.scratch, tag)
        if extra_env:
            env.update(extra_env)
        err_path = self.scratch.path("run-%05d-%s.log" % (seq, tag))
        err = open(err_path, "w", encoding="utf-8")
        proc = subprocess.Popen([self.tools.cpbridge, "run", pipeline, "--json"], env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        err.close()
        proc.chaos_log = err_path
        proc.chaos_tag = tag
        return proc

    def finish(self, proc, timeout=600, killed=False):
        """Wait for a run; check its exit and log. Returns the --json
        summary (a dict) or None."""
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            self.checks.fail("run %s (pid %d) did not end within %d s (log %s)"
                             % (proc.chaos_tag, proc.pid, timeout, proc.chaos_log))
        with open(proc.chaos_log, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        rc = proc.returncode
        with self.lock:
            self.codes[rc] += 1
            if re.search(r"database is locked|SQLITE_BUSY|busy", text, re.I):
                self.busy += 1
            if killed:
                self.killed += 1
        for marker in CRASH_MARKERS:
            if marker in text:
                self.checks.fail("run %s (pid %d): %r in its log %s"
                                 % (proc.chaos_tag, proc.pid, marker, proc.chaos_log))
                break
        if killed and rc == -signal.SIGKILL:
            return None
        if rc not in RUN_OK_CODES:
            tail = "\n    ".join(text.strip().splitlines()[-6:])
            self.checks.fail("run %s (pid %d) exited %s (log %s):\n    %s"
                             % (proc.chaos_tag, proc.pid, rc, proc.chaos_log, tail))
        try:
            summary = json.loads(out) if out.strip() else None
        except ValueError:
            summary = None
        if summary is not None:
            with self.lock:
                self.summaries.append(summary)
        return summary

    def count_logs(self, pattern):
        """(runs whose log matches `pattern`, total matching lines)."""
        runs = lines = 0
        rx = re.compile(pattern)
        for name in sorted(os.listdir(self.scratch.dir)):
            if not (name.startswith("run-") and name.endswith(".log")):
                continue
            with open(self.scratch.path(name), encoding="utf-8", errors="replace") as handle:
                hits = sum(1 for line in handle if rx.search(line))
            runs += 1 if hits else 0
            lines += hits
        return runs, lines

    def run(self, pipeline, tag, extra_env=None, timeout=600):
        return self.finish(self.start(pipeline, tag, extra_env), timeout=timeout)

    def report(self):
        return "runs: %d, exit codes %s, killed %d, runs that logged busy %d" % (
            sum(self.codes.values()), dict(sorted(self.codes.items(), key=lambda kv: str(kv[0]))),
            self.killed, self.busy)


def outstanding(db):
    """Orders still PENDING, applied (or rolled back for their store) orders
    with after-commit work due, and applied orders the store cancelled that
    wait for run.store_cancel."""
    return db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'PENDING'"
                     " OR (STATUS IN ('APPLIED', 'ROLLED_BACK') AND AFTER_PENDING = 1)"
                     " OR (STATUS = 'APPLIED' AND STORE_CANCELLED = 1)")


def drain(runs, db, pipeline, tag, deadline_s=300, checks=None, extra_env=None):
    """Run the pipeline until no order is left to do (waiting out backoffs
    and leases of killed runners). Returns the number of runs."""
    end = time.monotonic() + deadline_s
    n = 0
    while True:
        summary = runs.run(pipeline, tag, extra_env=extra_env)
        n += 1
        left = outstanding(db)
        if left == 0:
            return n
        if time.monotonic() > end:
            if checks is not None:
                checks.fail("%d order(s) still to do after draining for %d s: %s"
                            % (left, deadline_s, state_counts(db)))
            return n
        claimed = (summary or {}).get("counts", {}).get("claimed", 0)
        if claimed == 0:
            time.sleep(0.5)


def state_counts(db):
    return dict((row[0], int(row[1])) for row in db.rows(
        "SELECT STATUS, COUNT(*) FROM USER_ORDER_STAGING GROUP BY STATUS"))


# ---------------------------------------------------------------------------
# Invariants


def inventory(db):
    """{(item, location): QTY_ON_SO}."""
    return dict(((row[0], row[1]), D(row[2])) for row in db.rows(
        "SELECT ITEM_NO, LOC_ID, QTY_ON_SO FROM IM_INV"))


def check_invariants(db, manifest, inv0, checks, after_stage=None, location="MAIN"):
    """The invariants listed at the top of this file. Returns the staging
    rows by external id, for scenario-specific checks."""
    orders = manifest["orders"]
    rows = db.rows("SELECT EXT_ORDER_ID, STATUS, CP_DOC_ID, CP_TKT_NO, ATTEMPTS, AFTER_PENDING,"
                   " STAGING_ID, LAST_ERROR_CODE FROM USER_ORDER_STAGING")
    by_ext = collections.defaultdict(list)
    for row in rows:
        by_ext[row[0]].append(row)
    checks.check(len(rows) == len(orders),
                 "%d staging rows for %d orders" % (len(rows), len(orders)))

    expected_qty = collections.Counter()
    wrong_state = []
    for order in orders:
        ext = str(order["id"])
        got = by_ext.get(ext, [])
        if len(got) != 1:
            checks.fail("order %s has %d staging rows" % (ext, len(got)))
            continue
        want = "APPLIED" if order["kind"] == "valid" else "INVALID"
        if got[0][1] != want:
            wrong_state.append("%s %s is %s (%s), expected %s"
                               % (order["kind"], ext, got[0][1], got[0][7], want))
        if order["kind"] == "valid":
            for item, qty in order["lines"]:
                expected_qty[(item, location)] += D(qty)
    checks.check(not wrong_state, "%d order(s) in the wrong state: %s"
                 % (len(wrong_state), "; ".join(wrong_state[:8])))

    states = state_counts(db)
    checks.check(states.get("PENDING", 0) == 0 and states.get("DEAD", 0) == 0,
                 "orders left PENDING or DEAD: %s" % states)

    applied = [r for r in rows if r[1] == "APPLIED"]
    docs = db.rows("SELECT DOC_ID, TKT_NO, REF FROM PS_DOC_HDR")
    checks.check(len(docs) == len(applied),
                 "PS_DOC_HDR has %d documents for %d APPLIED orders" % (len(docs), len(applied)))
    for col, name in ((0, "DOC_ID"), (1, "TKT_NO"), (2, "REF")):
        dup = [k for k, v in collections.Counter(d[col] for d in docs).items() if v > 1]
        checks.check(not dup, "duplicate %s in PS_DOC_HDR: %s" % (name, dup[:8]))
    doc_by_id = dict((d[0], d) for d in docs)
    numbers = dict((str(o["id"]), o["number"]) for o in orders)
    bad_link = []
    for r in applied:
        doc = doc_by_id.get(r[2])
        if doc is None or doc[1] != r[3] or doc[2] != numbers.get(r[0]):
            bad_link.append("%s -> doc %s tkt %s (%s)" % (r[0], r[2], r[3], doc))
    checks.check(not bad_link, "%d APPLIED order(s) not linked to their own document: %s"
                 % (len(bad_link), "; ".join(bad_link[:5])))
    checks.check(len(set(r[2] for r in applied)) == len(applied),
                 "two APPLIED orders share a CP_DOC_ID")
    # Applied exactly once: one 'applied' event (written in the order's
    # transaction) per APPLIED order, none for the others.
    events = dict((r[0], int(r[1])) for r in db.rows(
        "SELECT s.EXT_ORDER_ID, COUNT(*) FROM USER_ORDER_EVENT e JOIN USER_ORDER_STAGING s"
        " ON s.STAGING_ID = e.STAGING_ID WHERE e.KIND = 'applied' GROUP BY s.EXT_ORDER_ID"))
    not_once = [(r[0], events.get(r[0], 0)) for r in rows
                if events.get(r[0], 0) != (1 if r[1] == "APPLIED" else 0)]
    checks.check(not not_once, "%d order(s) not applied exactly once (applied events): %s"
                 % (len(not_once), not_once[:8]))

    inv = inventory(db)
    drift = []
    for key in set(inv) | set(inv0) | set(expected_qty):
        delta = inv.get(key, D(0)) - inv0.get(key, D(0))
        if delta != expected_qty.get(key, D(0)):
            drift.append("%s/%s moved %s, expected %s" % (key[0], key[1], delta,
                                                          expected_qty.get(key, 0)))
    checks.check(not drift, "IM_INV.QTY_ON_SO drift on %d item(s): %s"
                 % (len(drift), "; ".join(sorted(drift)[:8])))
    lin = dict(((r[0], r[1]), D(r[2])) for r in db.rows(
        "SELECT ITEM_NO, STK_LOC_ID, SUM(QTY_SOLD) FROM PS_DOC_LIN GROUP BY ITEM_NO, STK_LOC_ID"))
    checks.check(lin == dict((k, v) for k, v in expected_qty.items() if v != 0),
                 "PS_DOC_LIN quantities differ from the valid orders' lines")
    oinv = dict(((r[0], r[1]), D(r[2])) for r in db.rows(
        "SELECT ITEM_NO, LOC_ID, SUM(QTY) FROM USER_ORDER_INV GROUP BY ITEM_NO, LOC_ID"))
    checks.check(oinv == dict((k, v) for k, v in expected_qty.items() if v != 0),
                 "USER_ORDER_INV quantities differ from the valid orders' lines")

    if after_stage is not None:
        done = db.rows("SELECT s.EXT_ORDER_ID, COUNT(t.STAGE_ID) FROM USER_ORDER_STAGING s"
                       " LEFT JOIN USER_ORDER_STEP t ON t.STAGING_ID = s.STAGING_ID AND"
                       " t.STAGE_ID = '%s' WHERE s.STATUS = 'APPLIED'"
                       " GROUP BY s.EXT_ORDER_ID" % after_stage)
        not_once = [r for r in done if int(r[1]) != 1]
        checks.check(not not_once, "%d APPLIED order(s) without %s recorded done once: %s"
                     % (len(not_once), after_stage, not_once[:5]))
        due = db.scalar("SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'APPLIED'"
                        " AND AFTER_PENDING <> 0")
        checks.check(due == 0, "%d APPLIED order(s) with after-commit work due or given up"
                     % due)
    return dict((k, v[0]) for k, v in by_ext.items())


# ---------------------------------------------------------------------------
# The WooCommerce stand-in


# The stand-in answers with http.server, which writes the headers and the
# body of an answer in two segments; with Nagle's algorithm on, the second
# waits for the client's delayed ACK (40 ms), so every request takes ~44 ms
# and sync-status 1.0 (four requests an order) managed six orders a second.
# Real web servers turn Nagle off; this launcher does the same for the
# stand-in (TCP_NODELAY on every accepted connection) and runs it unchanged.
NODELAY_LAUNCHER = """
import runpy, socketserver, sys
socketserver.StreamRequestHandler.disable_nagle_algorithm = True
path = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(path, run_name="__main__")
"""


class Store:
    """tests/servers/woo_standin.py serving the generated orders."""

    def __init__(self, scratch, orders_dir):
        port_file = scratch.path("woo.port")
        self.log = open(scratch.path("woo.log"), "w", encoding="utf-8")
        self.proc = subprocess.Popen([PY, "-c", NODELAY_LAUNCHER, WOO_STANDIN, "--port-file",
                                      port_file, "--orders", orders_dir],
                                     stdout=self.log, stderr=self.log)
        end = time.monotonic() + 60
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit("chaos: the WooCommerce stand-in did not start (see %s)"
                                 % self.log.name)
            time.sleep(0.05)
        with open(port_file, encoding="utf-8") as handle:
            self.port = int(handle.read().strip())
        self.url = "http://127.0.0.1:%d" % self.port

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def fault(self, spec):
        return self.call("POST", "/_fault", spec)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def woo_stages(store, orders_first=True):
    """source-woo and sync-status against the stand-in (OAuth over http)."""
    source = ('{ stage = "source-woo"; id = "samples"; options = { url = "%s";'
              ' consumer_key = "ck_test"; consumer_secret = "cs_test"; per_page = 50;'
              ' max_pages = 1000; timeout = "10s"; max_tries = 2; }; }' % store.url)
    sync = (' { stage = "sync-status"; options = { url = "%s"; consumer_key = "ck_test";'
            ' consumer_secret = "cs_test"; timeout = "10s"; max_tries = 2; }; }' % store.url)
    return source, sync


def check_store(store, db, manifest, checks):
    """Every APPLIED order shows, in the store, one status change to
    completed and one cpbridge note naming its ticket; no other order was
    touched."""
    rows = dict((r[0], r) for r in db.rows(
        "SELECT EXT_ORDER_ID, STATUS, CP_TKT_NO FROM USER_ORDER_STAGING"))
    bad = []
    for order in manifest["orders"]:
        ext = str(order["id"])
        row = rows.get(ext)
        got = store.call("GET", "/_orders/%s" % ext)
        notes = [n.get("note", "") for n in got.get("notes", [])]
        changes = [n for n in notes if n.startswith("Order status changed")]
        ours = [n for n in notes if "cpbridge" in n]
        if row is not None and row[1] == "APPLIED":
            if got.get("status") != "completed" or len(changes) != 1 or len(ours) != 1 or \
                    (row[2] or "?") not in ours[0]:
                bad.append("%s: status %s, %d status change(s), %d cpbridge note(s) %s"
                           % (ext, got.get("status"), len(changes), len(ours), ours[:2]))
        elif changes or ours or got.get("status") != "processing":
            bad.append("%s (%s) was changed in the store: %s, %s"
                       % (ext, row[1] if row else "not staged", got.get("status"), notes[:2]))
    checks.check(not bad, "%d order(s) wrong in the store: %s" % (len(bad), "; ".join(bad[:6])))


# ---------------------------------------------------------------------------
# Entry


def parse_ts(text):
    """An engine timestamp as the database returns it ("2026-01-02 03:04:05.678",
    with a T or a space) -> datetime, for comparisons."""
    import datetime
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?",
                 text or "")
    if m is None:
        raise ValueError("not a timestamp: %r" % text)
    frac = int((m.group(7) or "0").ljust(6, "0"))
    return datetime.datetime(*[int(g) for g in m.groups()[:6]], frac)


def hostname():
    return socket.gethostname()


def finish(name, checks, scratch, started, extra=""):
    secs = time.monotonic() - started
    if checks.ok():
        log("%s: PASS in %.1f s %s" % (name, secs, extra))
        scratch.close(False)
        return 0
    log("%s: FAIL in %.1f s: %d invariant(s) broken %s" % (name, secs, len(checks.failures),
                                                          extra))
    for f in checks.failures:
        sys.stderr.write("  - %s\n" % f)
    scratch.close(True)
    return 1
