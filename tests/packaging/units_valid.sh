#!/bin/sh
# units_valid.sh — CTest `units_valid`: checks the scheduling files in
# packaging/ without installing them.
#  - the Task Scheduler XML is well-formed, follows the 1.2 schema's element
#    order in its trigger, and says what the README promises (every 5
#    minutes, run logged on or not, IgnoreNew, 30-minute limit, the command);
#  - the systemd units (the run service and timer, and the webhook
#    receiver cpbridge-serve@.service) pass `systemd-analyze verify` without
#    a single warning, keep their sandbox (`systemd-analyze security`
#    exposure at most 2.5), and carry the settings the package documents;
#  - the cron file has no active job and a well-formed template line;
#  - the Debian maintainer scripts parse (and pass shellcheck when present),
#    and prerm stops the receivers too.
# Each checker is first shown a broken copy, to prove it can fail here.
#
# usage: units_valid.sh SOURCE_DIR CPBRIDGE_BINARY
set -eu

[ $# -eq 2 ] || {
    echo "usage: units_valid.sh SOURCE_DIR CPBRIDGE_BINARY" >&2
    exit 2
}
src=$1
case $2 in
/*) bin=$2 ;;
*) bin=$(pwd)/$2 ;;
esac
pkg=$src/packaging
py=/usr/bin/python3
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
ok() {
    echo "ok: $*"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cpb-units.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

# ------------------------------------------------------------ Windows XML --
xml=$pkg/windows/cpbridge-task.xml
cat >"$tmp/check_task.py" <<'EOF'
import sys
import xml.dom.minidom
from xml.parsers.expat import ExpatError

NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"
# triggerBaseType is an xs:sequence; timeTriggerType appends RandomDelay.
TRIGGER_ORDER = ["Enabled", "StartBoundary", "EndBoundary", "Repetition",
                 "ExecutionTimeLimit", "RandomDelay"]


def children(node, name=None):
    return [c for c in node.childNodes
            if c.nodeType == c.ELEMENT_NODE and c.namespaceURI == NS
            and (name is None or c.localName == name)]


def one(node, *path):
    for name in path:
        found = children(node, name)
        if len(found) != 1:
            raise LookupError("expected one <%s>, found %d" % (name, len(found)))
        node = found[0]
    return node


def text(node, *path):
    el = one(node, *path)
    return "".join(c.data for c in el.childNodes if c.nodeType == c.TEXT_NODE).strip()


def main(path):
    try:
        doc = xml.dom.minidom.parse(path)
    except (ExpatError, OSError) as e:
        print("not well-formed XML: %s" % e)
        return 1
    task = doc.documentElement
    problems = []
    if task.localName != "Task" or task.namespaceURI != NS:
        problems.append("root element is not <Task xmlns=\"%s\">" % NS)
    if task.getAttribute("version") != "1.2":
        problems.append("Task version is %r, not '1.2'" % task.getAttribute("version"))
    expect = [
        (("Triggers", "TimeTrigger", "Repetition", "Interval"), "PT5M"),
        (("Triggers", "TimeTrigger", "Repetition", "StopAtDurationEnd"), "false"),
        (("Principals", "Principal", "LogonType"), "Password"),
        (("Settings", "MultipleInstancesPolicy"), "IgnoreNew"),
        (("Settings", "ExecutionTimeLimit"), "PT30M"),
        (("Settings", "Enabled"), "true"),
        (("Actions", "Exec", "Arguments"), "run C:\\ProgramData\\cpbridge\\orders.cfg"),
    ]
    for path, want in expect:
        try:
            got = text(task, *path)
        except LookupError as e:
            problems.append("%s: %s" % ("/".join(path), e))
            continue
        if got != want:
            problems.append("%s is %r, not %r" % ("/".join(path), got, want))
    try:
        command = text(task, "Actions", "Exec", "Command").strip('"')
        if not command.lower().endswith("\\cpbridge.exe"):
            problems.append("Exec/Command %r does not run cpbridge.exe" % command)
        trigger = one(task, "Triggers", "TimeTrigger")
        if children(one(trigger, "Repetition"), "Duration"):
            problems.append("the repetition has a Duration: it must repeat indefinitely")
        names = [c.localName for c in children(trigger)]
        ranks = [TRIGGER_ORDER.index(n) if n in TRIGGER_ORDER else -1 for n in names]
        if -1 in ranks or ranks != sorted(ranks):
            problems.append("TimeTrigger children %s are not in schema order %s"
                            % (names, TRIGGER_ORDER))
    except LookupError as e:
        problems.append(str(e))
    for p in problems:
        print(p)
    return 1 if problems else 0


sys.exit(main(sys.argv[1]))
EOF

# The checker must reject a truncated file and a wrong interval.
head -c 600 "$xml" >"$tmp/truncated.xml"
sed 's|<Interval>PT5M</Interval>|<Interval>PT15M</Interval>|' "$xml" >"$tmp/interval.xml"
if "$py" "$tmp/check_task.py" "$tmp/truncated.xml" >/dev/null ||
    "$py" "$tmp/check_task.py" "$tmp/interval.xml" >/dev/null; then
    fail "the Task Scheduler checker accepts a broken file"
fi
if out=$("$py" "$tmp/check_task.py" "$xml" 2>&1); then
    ok "windows/cpbridge-task.xml is well-formed and complete"
else
    fail "windows/cpbridge-task.xml: $out"
fi

# ---------------------------------------------------------------- systemd --
service=$pkg/systemd/cpbridge@.service
timer=$pkg/systemd/cpbridge@.timer
serve=$pkg/systemd/cpbridge-serve@.service

# Settings the package documents (PACKAGING.md); each must appear as a line.
need_lines() {
    file=$1
    shift
    for line in "$@"; do
        if ! grep -qxF -- "$line" "$file"; then
            fail "$(basename "$file") lacks the line '$line'"
        fi
    done
}
need_lines "$service" "Type=oneshot" "User=cpbridge" \
    "ExecStart=/usr/bin/cpbridge run /etc/cpbridge/%i.cfg" "SuccessExitStatus=1 75" \
    "ProtectSystem=strict" "ProtectHome=true" "NoNewPrivileges=true" "PrivateTmp=true" \
    "PrivateDevices=true" "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" \
    "CapabilityBoundingSet=" "SystemCallFilter=@system-service" "StateDirectory=cpbridge"
need_lines "$timer" "OnBootSec=2min" "OnUnitActiveSec=5min" "Persistent=true" \
    "RandomizedDelaySec=30s" "WantedBy=timers.target"
need_lines "$serve" "Type=simple" "User=cpbridge" "Group=cpbridge" \
    "ExecStart=/usr/bin/cpbridge serve /etc/cpbridge/%i.cfg" "Restart=on-failure" \
    "RestartPreventExitStatus=64 66 78" "KillSignal=SIGTERM" "TimeoutStopSec=10min" \
    "ProtectSystem=strict" "ReadWritePaths=/var/lib/cpbridge -/var/lib/prometheus/node-exporter" \
    "ProtectHome=true" "NoNewPrivileges=true" "PrivateTmp=true" "PrivateDevices=true" \
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" "CapabilityBoundingSet=" \
    "MemoryDenyWriteExecute=true" "SystemCallFilter=@system-service" \
    "StateDirectory=cpbridge" "RuntimeDirectoryPreserve=yes" "WantedBy=multi-user.target"
if grep -q '^ExecStartPost=' "$service"; then
    fail "cpbridge@.service has an ExecStartPost= (the design has none)"
fi
if grep -q '^\[Install\]' "$service"; then
    fail "cpbridge@.service has an [Install] section: only the timer is enabled"
fi

if command -v systemd-analyze >/dev/null 2>&1; then
    units=$tmp/units
    mkdir "$units"
    # verify insists that ExecStart's program exists: use the built one.
    sed "s|/usr/bin/cpbridge|$bin|" "$service" >"$units/cpbridge@.service"
    cp "$timer" "$units/cpbridge@.timer"
    sed "s|/usr/bin/cpbridge|$bin|" "$serve" >"$units/cpbridge-serve@.service"
    # A misspelled key must be reported, or this check proves nothing.
    sed 's/^ProtectSystem=/ProtectSystm=/' "$units/cpbridge@.service" >"$units/broken@.service"
    out=$(systemd-analyze verify --man=no --generators=no "$units/broken@ci.service" 2>&1 || true)
    if [ -z "$out" ]; then
        fail "systemd-analyze verify does not report a misspelled key here"
    fi
    rm -f "$units/broken@.service"
    if out=$(systemd-analyze verify --man=no --generators=no "$units/cpbridge@ci.service" \
        "$units/cpbridge@ci.timer" "$units/cpbridge-serve@ci.service" 2>&1) && [ -z "$out" ]; then
        ok "systemd-analyze verify: no warnings"
    else
        fail "systemd-analyze verify: ${out:-non-zero exit}"
    fi
    # Exposure on systemd's 0..100 scale (printed as 0.0..10.0).
    if systemd-analyze security --offline=true --man=no --threshold=25 \
        "$units/cpbridge@ci.service" >"$tmp/security.txt" 2>&1; then
        ok "systemd-analyze security: $(tail -n 1 "$tmp/security.txt")"
    else
        fail "systemd-analyze security: exposure above 2.5: $(tail -n 1 "$tmp/security.txt")"
    fi
    if systemd-analyze security --offline=true --man=no --threshold=25 \
        "$units/cpbridge-serve@ci.service" >"$tmp/security-serve.txt" 2>&1; then
        ok "systemd-analyze security: $(tail -n 1 "$tmp/security-serve.txt")"
    else
        fail "systemd-analyze security: exposure above 2.5: $(tail -n 1 "$tmp/security-serve.txt")"
    fi
else
    echo "note: systemd-analyze not installed: the units were not verified"
fi

# ------------------------------------------------------------------- cron --
cron=$pkg/cron/cpbridge
if [ -n "$(tail -c 1 "$cron")" ]; then
    fail "cron/cpbridge does not end with a newline (cron ignores the last line)"
fi
active=$(grep -Ev '^[[:space:]]*(#|$)|^[A-Z_]+=' "$cron" || true)
if [ -n "$active" ]; then
    fail "cron/cpbridge has an active job (it ships commented out): $active"
fi
template=$(grep -E '^#[[:space:]]*\*/5' "$cron" || true)
if [ "$(printf '%s\n' "$template" | grep -c .)" -ne 1 ]; then
    fail "cron/cpbridge: expected exactly one commented '*/5' job line"
else
    set -f # split the cron line into its fields, without globbing '*'
    # shellcheck disable=SC2046
    set -- $(printf '%s\n' "$template" | sed 's/^#[[:space:]]*//')
    set +f
    if [ "$1 $2 $3 $4 $5" != "*/5 * * * *" ] || [ "$6" != cpbridge ] ||
        [ "$7" != /usr/bin/cpbridge ] || [ "$8" != run ]; then
        fail "cron/cpbridge: the job line is not '*/5 * * * * cpbridge /usr/bin/cpbridge run ...'"
    fi
    case "$template" in
    *%*) fail "cron/cpbridge: '%' in a cron command is a newline: escape it" ;;
    *flock*) fail "cron/cpbridge: cpbridge locks itself; no flock" ;;
    *"| /usr/bin/logger -t cpbridge-"*) ok "cron/cpbridge template line" ;;
    *) fail "cron/cpbridge: the job does not log through logger -t cpbridge-NAME" ;;
    esac
fi

# ---------------------------------------------------- maintainer scripts --
for s in postinst prerm postrm; do
    f=$pkg/debian/$s
    if [ ! -x "$f" ]; then
        fail "debian/$s is missing or not executable"
        continue
    fi
    if ! sh -n "$f"; then
        fail "debian/$s does not parse"
    fi
    if command -v shellcheck >/dev/null 2>&1 && ! shellcheck -s sh "$f"; then
        fail "debian/$s: shellcheck"
    fi
done
grep -q 'adduser --quiet --system' "$pkg/debian/postinst" ||
    fail "debian/postinst does not create the system user"
grep -q "'cpbridge-serve@\*\.service'" "$pkg/debian/prerm" ||
    fail "debian/prerm does not stop the webhook receivers (cpbridge-serve@*.service)"
if grep -Eq 'systemctl[^#]*(enable|start)' "$pkg/debian/postinst"; then
    fail "debian/postinst enables or starts a unit (timers are left to the operator)"
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all scheduling files valid"
