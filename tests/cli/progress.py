#!/usr/bin/python3
"""progress.py BUILD SRC — `cpbridge run`'s progress line, through the built
binary: on a pseudo-terminal one status line is drawn and redrawn on stderr
and ends with the run's real counts, every log line starts on a line of its
own (the status line erased first, drawn again after), and the line is
erased at the end; off a terminal (a pipe), with --json, under systemd
(JOURNAL_STREAM) and with TERM=dumb, stderr has no trace of it. Exit 0 when
every check holds, 1 otherwise."""

import os
import pty
import re
import select
import subprocess
import sys
import tempfile

ERASE = "\r\033[K"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug) ")
STATUS = re.compile(r"^staged (\d+) \| applied (\d+) \| invalid (\d+) \| retry (\d+) \|"
                    r" (\d+)/(\d+) \| \d+ orders/s \| ETA (-|\d+:\d\d)$")
failures = []


def check(ok, msg):
    if not ok:
        failures.append(msg)
        print("FAIL: " + msg)


def run_pty(argv, env):
    """argv with stderr (and stdout) on a pseudo-terminal; returns its bytes."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    out = b""
    while True:
        try:
            r, _, _ = select.select([fd], [], [], 120)
            if not r:
                break
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


def main():
    build, src = sys.argv[1], sys.argv[2]
    cpb = os.path.join(build, "core", "cpbridge")
    tmp = tempfile.mkdtemp(prefix="cpb-progress-")
    db = os.path.join(tmp, "p.db")
    orders = os.path.join(tmp, "orders")
    subprocess.run(["/usr/bin/python3", os.path.join(src, "tests/load/gen_orders.py"),
                    "--count", "3000", "--lines", "3", "--seed", "5", "--invalid-share",
                    "0.02", "--out", orders], check=True, stdout=subprocess.DEVNULL)
    cfg = os.path.join(tmp, "p.cfg")

    def pipeline(path_db):
        with open(cfg, "w", encoding="utf-8") as f:
            f.write("""name = "progress";
stage_dirs = [ "%s" ];
database = { dialect = "sqlite"; connection = "Driver=SQLite3;Database=%s;Timeout=5000"; };
run = { lock_file = "%s"; batch = 50; };
stages = (
  { stage = "source-file"; id = "gen"; options = { path = "%s"; }; },
  { stage = "validate"; options = { store = "WEB"; allow_walk_in = true; price_check = "warn"; }; },
  { stage = "create-order"; options = { store = "WEB"; station = "WEB-01"; pay_code = "EC_WOOCOMM"; }; },
  { stage = "update-qty"; }
);
""" % (os.path.join(build, "stages"), path_db, os.path.join(tmp, "lock"), orders))

    def fresh(name):
        path = os.path.join(tmp, name)
        pipeline(path)
        subprocess.run([cpb, "db", "init", cfg, "--demo"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    env = dict(os.environ, TERM="xterm")
    for k in ("INVOCATION_ID", "JOURNAL_STREAM"):
        env.pop(k, None)

    # On a terminal: the line.
    fresh("tty.db")
    code, text = run_pty([cpb, "run", cfg, "--log-level", "info"], env)
    check(code in (0, 1), "the run on a terminal exited %d" % code)
    statuses = []
    anywhere = re.compile(STAMP.pattern[1:])
    for raw in text.replace("\r\n", "\n").split("\n"):
        # Each piece between erasures is one thing: a status line, a log line
        # (which starts the piece), or the summary. Mixed text is not.
        for part in raw.split(ERASE):
            if STATUS.match(part):
                statuses.append(part)
                continue
            check("orders/s |" not in part, "status text mixed into other text: %r" % part[:160])
            m = anywhere.search(part)
            check(m is None or m.start() == 0,
                  "a log line does not start its line: %r" % part[:160])
    check(len(statuses) >= 2, "the status line was drawn %d time(s), not redrawn" % len(statuses))
    if statuses:
        last = STATUS.match(statuses[-1])
        staged, applied, invalid = int(last.group(1)), int(last.group(2)), int(last.group(3))
        check(staged == 3000, "the last status line says staged %d, not 3000" % staged)
        check(applied + invalid >= 2900, "the last status line says applied %d, invalid %d"
              % (applied, invalid))
    # The end: no status line left after the last erase.
    tail = text.split(ERASE)[-1]
    check(not STATUS.match(tail.strip()), "the status line was left on the screen: %r" % tail)

    # Off a terminal, with --json, under systemd, TERM=dumb: nothing.
    cases = [("pipe", None, env, [cpb, "run", cfg]),
             ("--json", "pty", env, [cpb, "run", cfg, "--json"]),
             ("systemd", "pty", dict(env, JOURNAL_STREAM="8:1234"), [cpb, "run", cfg]),
             ("TERM=dumb", "pty", dict(env, TERM="dumb"), [cpb, "run", cfg])]
    for name, how, e, argv in cases:
        fresh("%s.db" % re.sub(r"\W", "_", name))
        if how == "pty":
            code, out = run_pty(argv, e)
        else:
            res = subprocess.run(argv, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
            code, out = res.returncode, res.stderr
        check(code in (0, 1), "%s: the run exited %d" % (name, code))
        check("\033[K" not in out and "orders/s |" not in out,
              "%s: a progress line was drawn" % name)
    if failures:
        print("progress: %d check(s) failed" % len(failures))
        return 1
    print("progress: ok (%d status lines drawn on the terminal)" % len(statuses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
