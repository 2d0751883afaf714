#!/usr/bin/python3
"""report_test.py - `cpbridge report` end to end, on SQLite or PostgreSQL:

    report_test.py --db sqlite|pg [--build DIR] [--png FILE]

1. Seeds a database the real way: generated orders (a tenth of them
   invalid, one with hostile markup in its customer name and SKU) go
   through `cpbridge run` with the Counterpoint steps; then the times are
   spread over the last six days (one applied order eight days back, out of
   the period), two invalid orders are made DEAD, two applied orders are
   flagged changed in the store, and a FAILED run with hostile text in its
   message is logged.
2. Runs `cpbridge report --json` and `cpbridge report -o FILE.html`.
3. Validates the HTML with a real parser (html5lib, strict: any parse
   error fails) and checks every figure against values computed here from
   the raw rows (independent SQL and Python, not the engine's SQL): orders
   per hour (the chart's bars), per-day placed-to-applied median/p95/max,
   per-stage median/p95 from the event messages, counts per state, the dead
   letters with their commands, the failed run, the changed orders; and the
   JSON carries the same figures.
4. Renders the page in headless Chromium (Debian's chromium): a PNG
   screenshot (copied to --png when given), and the DOM (--dump-dom) must
   hold the three SVG charts and no <script> or <img> element: the hostile
   text is only text.

PostgreSQL: the CPB_TEST_PG cluster when set, else one started here
(chaoslib.Postgres, as the chaos tests do). Exits non-zero on any failure.
"""

import argparse
import datetime
import html.parser
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "chaos"))
import chaoslib  # noqa: E402

HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_SKU = "<img src=x onerror=alert(2)>"
HOSTILE_RUN = "</td></tr></table><script>alert(3)</script><b onmouseover=alert(4)>x</b>"
EPOCH = datetime.datetime(1970, 1, 1)


def parse_ts(text):
    """A database timestamp ('YYYY-MM-DD HH:MM:SS[.fff]') as a naive UTC datetime."""
    text = text.strip().replace("T", " ").rstrip("Z")
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.datetime.strptime(text, fmt)
        except ValueError:
            pass
    raise ValueError("not a timestamp: %r" % text)


def fmt_ts(when):
    return when.strftime("%Y-%m-%d %H:%M:%S.") + "%03d" % (when.microsecond // 1000)


def ms_of(when):
    delta = when - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def nearest_rank(sorted_values, p):
    n = len(sorted_values)
    rank = max(1, -(-n * p // 100))
    return sorted_values[rank - 1]


class Db:
    """Reads and writes the seeded database outside the engine."""

    def __init__(self, kind, scratch):
        self.kind = kind
        if kind == "sqlite":
            self.inner = chaoslib.Sqlite(scratch)
        else:
            self.inner = chaoslib.Postgres("report")
        self.dialect = self.inner.dialect
        self.conn = self.inner.conn

    def rows(self, sql):
        return self.inner.rows(sql)

    def execute(self, statements):
        if self.kind == "sqlite":
            con = sqlite3.connect(self.inner.path, timeout=60)
            try:
                for sql in statements:
                    con.execute(sql)
                con.commit()
            finally:
                con.close()
        else:
            self.inner.psql("BEGIN; %s; COMMIT" % "; ".join(statements))

    def close(self):
        self.inner.close()


def quote(text):
    return "'" + text.replace("'", "''") + "'"


def seed(tools, scratch, db, checks):
    orders_dir, _ = chaoslib.generate(scratch, 80, seed=14, invalid_share=0.1)
    hostile = None
    for name in sorted(os.listdir(orders_dir)):
        path = os.path.join(orders_dir, name)
        with open(path, encoding="utf-8") as handle:
            order = json.load(handle)
        if any(str(l.get("sku", "")).startswith("NOPE-") for l in order["line_items"]):
            for line in order["line_items"]:
                if str(line.get("sku", "")).startswith("NOPE-"):
                    line["sku"] = HOSTILE_SKU
            order["billing"]["first_name"] = HOSTILE_NAME
            order["billing"]["last_name"] = "X"
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(order, handle)
            hostile = order["id"]
            break
    checks.check(hostile is not None, "the generator gave no unknown-SKU order to make hostile")
    pipeline = chaoslib.write_pipeline(scratch.path("report.cfg"), tools, db,
                                       chaoslib.source_file(orders_dir) + "," + chaoslib.CP_STEPS,
                                       name="reportdemo")
    chaoslib.db_init(tools, pipeline, scratch)
    runs = chaoslib.Runs(tools, scratch, checks)
    chaoslib.drain(runs, db.inner, pipeline, "seed", deadline_s=120, checks=checks)

    now = datetime.datetime.utcnow()
    statements = []
    applied = db.rows("SELECT STAGING_ID, APPLIED_DT FROM USER_ORDER_STAGING"
                      " WHERE STATUS = 'APPLIED' ORDER BY STAGING_ID")
    for k, (sid, _) in enumerate(applied):
        sid = int(sid)
        back = datetime.timedelta(hours=(k * 7) % 140 + 1, minutes=(k * 11) % 60)
        if k == 3:
            back = datetime.timedelta(days=8)  # out of the 7-day period
        new_applied = now - back
        placed = new_applied - datetime.timedelta(seconds=(k * 97) % 5400 + 5)
        statements.append("UPDATE USER_ORDER_STAGING SET APPLIED_DT = %s, ORDER_DT = %s"
                          " WHERE STAGING_ID = %d" % (quote(fmt_ts(new_applied)),
                                                     quote(fmt_ts(placed)), sid))
        statements.append("UPDATE USER_ORDER_EVENT SET EVENT_DT = %s WHERE STAGING_ID = %d"
                          " AND KIND = 'applied'" % (quote(fmt_ts(new_applied)), sid))
    held = db.rows("SELECT STAGING_ID, EXT_ORDER_ID FROM USER_ORDER_STAGING WHERE"
                   " STATUS = 'INVALID' ORDER BY STAGING_ID")
    for k, (sid, _) in enumerate(held):
        sid = int(sid)
        when = now - datetime.timedelta(hours=(k * 13) % 120 + 2)
        statements.append("UPDATE USER_ORDER_EVENT SET EVENT_DT = %s WHERE STAGING_ID = %d"
                          " AND STATUS_TO = 'INVALID'" % (quote(fmt_ts(when)), sid))
    for sid in [int(r[0]) for r in held if r[1] != str(hostile)][:2]:
        statements.append("UPDATE USER_ORDER_STAGING SET STATUS = 'DEAD', LAST_ERROR_CODE ="
                          " 'db.retryable', LAST_ERROR = 'deadlock, 3 attempts' WHERE"
                          " STAGING_ID = %d" % sid)
        statements.append("UPDATE USER_ORDER_EVENT SET STATUS_TO = 'DEAD', KIND = 'dead'"
                          " WHERE STAGING_ID = %d AND STATUS_TO = 'INVALID'" % sid)
    for sid in [int(r[0]) for r in applied[5:7]]:
        statements.append("UPDATE USER_ORDER_STAGING SET CHANGED_AFTER_APPLY = 1"
                          " WHERE STAGING_ID = %d" % sid)
    started = now - datetime.timedelta(days=2)
    statements.append(
        "INSERT INTO USER_SYNC_LOG (RUN_ID, PIPELINE, HOST_NAM, STARTED_DT, ENDED_DT, RESULT,"
        " EXIT_CODE, MESSAGE) VALUES ('run-failed-1', 'reportdemo', 'host1', %s, %s, 'FAILED',"
        " 69, %s)" % (quote(fmt_ts(started)), quote(fmt_ts(started + datetime.timedelta(
            seconds=3))), quote(HOSTILE_RUN)))
    db.execute(statements)
    return pipeline, hostile


class Strict(html.parser.HTMLParser):
    """Well-formedness as written: every element closed, in order; and the
    page's figures: the chart groups' data-* attributes, table cells."""

    VOID = {"meta", "br", "hr", "img", "input", "link"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []
        self.errors = []
        self.buckets = []
        self.tables = {}
        self.cards = {}
        self._table = None
        self._row = None
        self._cell = None
        self._card = None
        self.tags = set()
        self.handlers = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        self.handlers.extend("%s %s" % (tag, k) for k in a if k.lower().startswith("on"))
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "g" and a.get("class") == "bucket":
            self.buckets.append(a)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id"), [])
        if tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        if tag in ("td", "th") and self._row is not None:
            self._cell = [a, ""]
            self._row.append(self._cell)
        if tag == "div" and "card" in (a.get("class") or ""):
            self._card = a.get("id")

    def handle_startendtag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "g":
            self.errors.append("empty <g/>")

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("</%s> closes %s" % (tag, self.stack[-1:] or "nothing"))
            return
        self.stack.pop()
        if tag == "table":
            self._table = None
        if tag == "tr":
            self._row = None
        if tag in ("td", "th"):
            self._cell = None
        if tag == "div":
            self._card = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell[1] += data
        if self._card is not None and self.stack and self.stack[-1] == "b":
            self.cards[self._card] = data


def check_html_strict(checks, text):
    try:
        import html5lib
    except ImportError:
        return checks.fail("python3-html5lib is missing: scripts/deps.sh --test installs it")
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    try:
        parser.parse(text)
    except Exception as err:  # html5lib raises ParseError with the position
        return checks.fail("html5lib (strict) refuses the page: %s" % err)
    return True


def expected(db, now_ms, since_ms):
    """The figures, computed here from raw rows."""
    exp = {}
    hourly = {}
    for dt, to in db.rows("SELECT EVENT_DT, STATUS_TO FROM USER_ORDER_EVENT WHERE STATUS_TO IN"
                          " ('APPLIED', 'INVALID', 'DEAD')"):
        ms = ms_of(parse_ts(dt))
        if since_ms <= ms <= now_ms:
            start = ms // 3600000 * 3600000
            hourly.setdefault(start, {"APPLIED": 0, "INVALID": 0, "DEAD": 0})[to] += 1
    exp["hourly"] = hourly
    per_day = {}
    for applied, placed in db.rows("SELECT APPLIED_DT, ORDER_DT FROM USER_ORDER_STAGING WHERE"
                                   " APPLIED_DT IS NOT NULL AND ORDER_DT IS NOT NULL"):
        a = ms_of(parse_ts(applied))
        if since_ms <= a <= now_ms:
            per_day.setdefault(a // 86400000, []).append(a - ms_of(parse_ts(placed)))
    exp["days"] = {}
    for day, values in per_day.items():
        values.sort()
        label = (EPOCH + datetime.timedelta(days=day)).strftime("%Y-%m-%d")
        exp["days"][label] = (len(values), nearest_rank(values, 50), nearest_rank(values, 95),
                              values[-1])
    stages = {}
    total = []
    for msg, dur, dt in db.rows("SELECT MESSAGE, DURATION_MS, EVENT_DT FROM USER_ORDER_EVENT"
                                " WHERE KIND = 'applied'"):
        if not since_ms <= ms_of(parse_ts(dt)) <= now_ms:
            continue
        for stage, number in re.findall(r"([^,]+?) (\d+(?:\.\d)?) ms", msg or ""):
            stages.setdefault(stage.strip(), []).append(round(float(number) * 10) * 100)
        if dur is not None:
            total.append(int(dur) * 1000)
    exp["stages"] = {}
    for stage, values in list(stages.items()) + [("transaction", total)]:
        values.sort()
        exp["stages"][stage] = (len(values), nearest_rank(values, 50), nearest_rank(values, 95),
                                values[-1])
    exp["states"] = {s: int(n) for s, n in db.rows(
        "SELECT STATUS, COUNT(*) FROM USER_ORDER_STAGING GROUP BY STATUS")}
    exp["dlq"] = sorted(int(r[0]) for r in db.rows(
        "SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE STATUS IN ('DEAD', 'INVALID')"))
    exp["changed"] = sorted(int(r[0]) for r in db.rows(
        "SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE STATUS = 'APPLIED' AND"
        " CHANGED_AFTER_APPLY = 1"))
    exp["failed_runs"] = [r[0] for r in db.rows(
        "SELECT RUN_ID FROM USER_SYNC_LOG WHERE RESULT = 'FAILED'")]
    return exp


def check_figures(checks, page, report, exp, pipeline):
    # Orders per hour: the chart's bars, and the JSON.
    got = {}
    for a in page.buckets:
        start = ms_of(parse_ts(a["data-start"]))
        got[start] = {"APPLIED": int(a["data-applied"]), "INVALID": int(a["data-invalid"]),
                      "DEAD": int(a["data-dead"])}
    checks.check(got == exp["hourly"], "orders per hour: page %r, rows %r"
                 % (sorted(got.items()), sorted(exp["hourly"].items())))
    jgot = {ms_of(parse_ts(b["start"])): {"APPLIED": b["applied"], "INVALID": b["invalid"],
                                          "DEAD": b["dead"]} for b in report["per_bucket"]}
    checks.check(jgot == exp["hourly"], "orders per hour in the JSON differ from the rows")
    checks.check(len(exp["hourly"]) >= 20, "the seed spread too few hours: %d"
                 % len(exp["hourly"]))
    totals = {k: sum(v[k] for v in exp["hourly"].values()) for k in ("APPLIED", "INVALID",
                                                                      "DEAD")}
    for key in ("applied", "invalid", "dead"):
        checks.check(page.cards.get("period-" + key) == str(totals[key.upper()]),
                     "period card %s: %r, rows %d" % (key, page.cards.get("period-" + key),
                                                       totals[key.upper()]))
    checks.check(totals["DEAD"] == 2, "the seed should give 2 dead, rows say %d"
                 % totals["DEAD"])
    # Placed to applied per day.
    rows = page.tables.get("latency-table", [])[1:]
    got_days = {}
    for cells in rows:
        got_days[cells[0][1]] = (int(cells[1][0]["data-v"]), int(cells[2][0]["data-ms"]),
                                 int(cells[3][0]["data-ms"]), int(cells[4][0]["data-ms"]))
    # SQLite computes through julianday: allow 1 ms of rounding.
    same = set(got_days) == set(exp["days"]) and all(
        got_days[d][0] == exp["days"][d][0] and
        all(abs(got_days[d][i] - exp["days"][d][i]) <= 1 for i in (1, 2, 3))
        for d in got_days)
    checks.check(same, "placed to applied per day: page %r, rows %r"
                 % (sorted(got_days.items()), sorted(exp["days"].items())))
    checks.check(len(exp["days"]) >= 5, "the seed spread too few days: %d" % len(exp["days"]))
    # Per stage.
    got_stages = {}
    for cells in page.tables.get("stage-table", [])[1:]:
        got_stages[cells[0][1]] = (int(cells[1][0]["data-v"]), int(cells[2][0]["data-us"]),
                                   int(cells[3][0]["data-us"]), int(cells[4][0]["data-us"]))
    checks.check(got_stages == exp["stages"], "per-stage latency: page %r, rows %r"
                 % (got_stages, exp["stages"]))
    checks.check({"validate", "create-order", "update-qty"} <= set(got_stages),
                 "stages missing from the table: %r" % sorted(got_stages))
    # States.
    for state in ("PENDING", "APPLIED", "INVALID", "DEAD", "CANCELLED", "ROLLED_BACK"):
        checks.check(page.cards.get("state-" + state) == str(exp["states"].get(state, 0)),
                     "state %s: page %r, rows %d" % (state, page.cards.get("state-" + state),
                                                     exp["states"].get(state, 0)))
    # Dead letters, their commands; changed orders; the failed run.
    dlq = page.tables.get("dead_letters-table", [])[1:]
    checks.check(sorted(int(c[0][1]) for c in dlq) == exp["dlq"],
                 "dead letters: page %r, rows %r" % ([c[0][1] for c in dlq], exp["dlq"]))
    for cells in dlq:
        cmd = "cpbridge dlq %s retry %s" % (pipeline, cells[0][1])
        checks.check(cells[-1][1] == cmd, "dead letter %s: command %r, want %r"
                     % (cells[0][1], cells[-1][1], cmd))
        checks.check(cells[6][1] not in ("", "-"), "dead letter %s without a reason"
                     % cells[0][1])
    changed = page.tables.get("changed-table", [])[1:]
    checks.check(sorted(int(c[0][1]) for c in changed) == exp["changed"],
                 "changed orders: page %r, rows %r" % ([c[0][1] for c in changed],
                                                       exp["changed"]))
    runs = page.tables.get("runs-table", [])[1:]
    checks.check([c[5][1] for c in runs] == exp["failed_runs"], "failed runs: page %r, rows %r"
                 % ([c[5][1] for c in runs], exp["failed_runs"]))
    checks.check(any(c[4][1] == HOSTILE_RUN for c in runs),
                 "the failed run's hostile message is not shown as text")
    checks.check(report["dead_letters"]["count"] == len(exp["dlq"]), "JSON dead letter count")
    checks.check(report["orders"].get("DEAD") == exp["states"].get("DEAD", 0), "JSON DEAD count")


def check_hostile(checks, text, page):
    checks.check("<script" not in text.lower(), "the page holds a <script tag")
    checks.check("<img" not in text.lower(), "the page holds an <img tag")
    checks.check(not page.handlers, "event handler attributes in the markup: %r"
                 % page.handlers[:5])
    joined = "".join(page.text)
    checks.check(HOSTILE_NAME in joined, "the hostile customer name is not shown as text")
    checks.check(HOSTILE_SKU in joined, "the hostile SKU is not shown as text (in its message)")
    checks.check("script" not in page.tags and "img" not in page.tags,
                 "the parser found script/img elements: %r" % sorted(page.tags))


def chromium(checks, scratch, html_path, png):
    exe = shutil.which("chromium")
    if exe is None:
        return checks.fail("chromium is missing: scripts/deps.sh --test installs it")
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--user-data-dir=" + scratch.path("chromium-profile"),
            "--allow-file-access-from-files", "--virtual-time-budget=3000"]
    shot = scratch.path("report.png")
    url = "file://" + html_path
    res = subprocess.run(base + ["--screenshot=" + shot, "--window-size=1100,2600", url],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    checks.check(res.returncode == 0 and os.path.exists(shot),
                 "chromium --screenshot failed (%d): %s" % (res.returncode, res.stderr[-800:]))
    if os.path.exists(shot):
        with open(shot, "rb") as handle:
            head = handle.read(8)
        checks.check(head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(shot) > 20000,
                     "the screenshot is not a PNG of a drawn page (%d bytes)"
                     % os.path.getsize(shot))
    if png:
        # The README's picture: the top of the page (summary and charts).
        res = subprocess.run(base + ["--screenshot=" + png, "--window-size=1000,1500", url],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=120)
        checks.check(res.returncode == 0 and os.path.exists(png), "chromium --screenshot of %s"
                     % png)
    phone = scratch.path("report-phone.png")
    res = subprocess.run(base + ["--screenshot=" + phone, "--window-size=390,2400", url],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    checks.check(res.returncode == 0 and os.path.exists(phone), "chromium at phone width failed")
    res = subprocess.run(base + ["--dump-dom", url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=120)
    dom = res.stdout
    checks.check(res.returncode == 0 and "</html>" in dom,
                 "chromium --dump-dom failed (%d): %s" % (res.returncode, res.stderr[-800:]))
    for chart in ("chart-outcomes", "chart-latency", "chart-stages"):
        checks.check(re.search(r'<svg[^>]* id="%s"' % chart, dom) is not None,
                     "the rendered DOM has no <svg id=%s>" % chart)
    checks.check(len(re.findall(r'<g class="bucket"', dom)) > 0, "no bars in the rendered chart")
    checks.check(re.search(r"<script", dom, re.I) is None, "the rendered DOM has a <script>")
    checks.check(re.search(r"<img", dom, re.I) is None, "the rendered DOM has an <img>")
    checks.check("&lt;script&gt;alert(1)&lt;/script&gt;" in dom,
                 "the hostile name is not text in the rendered DOM")


def check_cli(checks, tools, scratch, pipeline, env):
    """Exit codes and messages of the command line (docs/CLI.md)."""
    cases = [
        (["--help"], 0, "usage: cpbridge report PIPELINE"),
        (["--since", "30m"], 64, "--since wants a period from 1h to 366d"),
        (["--since", "367d"], 64, "--since wants a period"),
        (["--since", "week"], 64, "--since wants a period"),
        (["--limit", "3"], 64, "does not apply"),
        (["-o"], 64, "needs a value"),
        (["-o", scratch.path("no-such-dir", "r.html")], 74, "cannot write"),
    ]
    for extra, code, text in cases:
        res = subprocess.run([tools.cpbridge, "report", pipeline] + extra, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=60)
        checks.check(res.returncode == code and text in res.stdout + res.stderr,
                     "report %s: exit %d (want %d), output %r" % (" ".join(extra),
                                                                  res.returncode, code,
                                                                  (res.stdout + res.stderr)[-300:]))
    res = subprocess.run([tools.cpbridge, "report", scratch.path("missing.cfg")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    checks.check(res.returncode == 66, "report of a missing pipeline file exited %d"
                 % res.returncode)
    res = subprocess.run([tools.cpbridge, "report", pipeline, "--since", "24h", "--json"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=60)
    ok = res.returncode == 0
    if ok:
        short = json.loads(res.stdout)
        ok = (short["period"] == "1d" and ms_of(parse_ts(short["generated"])) -
              ms_of(parse_ts(short["since"])) == 86400000 and
              all(ms_of(parse_ts(b["start"])) >= ms_of(parse_ts(short["since"])) - 3600000
                  for b in short["per_bucket"]))
    checks.check(ok, "report --since 24h --json: exit %d, %s" % (res.returncode,
                                                                  res.stderr[-300:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "pg"), required=True)
    ap.add_argument("--build", default=chaoslib.default_build())
    ap.add_argument("--png", help="copy the screenshot here (docs/report.png)")
    args = ap.parse_args()
    tools = chaoslib.Tools(args.build)
    checks = chaoslib.Checks()
    scratch = chaoslib.Scratch("report-" + args.db)
    db = Db(args.db, scratch)
    try:
        pipeline, _ = seed(tools, scratch, db, checks)
        env = chaoslib.run_env(tools, scratch, "report")
        res = subprocess.run([tools.cpbridge, "report", pipeline, "--json"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=120)
        checks.check(res.returncode == 0, "report --json exited %d: %s"
                     % (res.returncode, res.stderr))
        report = json.loads(res.stdout)
        out = scratch.path("report.html")
        res = subprocess.run([tools.cpbridge, "report", pipeline, "-o", out], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=120)
        checks.check(res.returncode == 0 and res.stdout == "",
                     "report -o exited %d: %s" % (res.returncode, res.stderr))
        with open(out, encoding="utf-8") as handle:
            text = handle.read()
        page = Strict()
        page.feed(text)
        page.close()
        checks.check(not page.errors and not page.stack, "the page is not well formed: %r %r"
                     % (page.errors[:5], page.stack))
        check_html_strict(checks, text)
        now_ms = ms_of(parse_ts(report["generated"]))
        since_ms = ms_of(parse_ts(report["since"]))
        checks.check(now_ms - since_ms == 7 * 86400000, "the default period is not 7d")
        exp = expected(db, now_ms + 999, since_ms)
        check_figures(checks, page, report, exp, pipeline)
        check_hostile(checks, text, page)
        check_cli(checks, tools, scratch, pipeline, env)
        chromium(checks, scratch, out, args.png)
        chaoslib.log("report: %d bytes of HTML, %d bars, %d days, %d stages" % (
            len(text), len(page.buckets), len(exp["days"]), len(exp["stages"])))
    finally:
        db.close()
        scratch.close(not checks.ok())
    if not checks.ok():
        sys.stderr.write("report_test: %d check(s) failed\n" % len(checks.failures))
        return 1
    chaoslib.log("report_test (%s): ok" % args.db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
