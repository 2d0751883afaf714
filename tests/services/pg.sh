#!/usr/bin/env bash
# tests/services/pg.sh — a throwaway PostgreSQL 15 cluster for the tests.
#   pg.sh start DIR   create and start a cluster under DIR (data, socket, log,
#                     password) on a free 127.0.0.1 port, create database
#                     "cpbtest" owned by user "app", and write DIR/env with
#                     CPB_TEST_PG (ODBC connection string) and PG* variables
#                     for `source DIR/env`.
#   pg.sh stop DIR    stop it at once (immediate) and remove DIR.
# Both are idempotent: start on a running cluster changes nothing and
# succeeds (a stopped or half-made one is rebuilt), stop on a missing one
# succeeds. Only a directory pg.sh made (or an empty one) is ever removed. Durability is off (-N, fsync=off):
# throwaway data only. As root the server runs as the postgres user.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PY=/usr/bin/python3
DB=cpbtest
USER_NAME=app
MARKER=.cpbtest-pg

die() {
  echo "pg.sh: $*" >&2
  exit 1
}

usage() {
  echo "usage: pg.sh start|stop DIR" >&2
  exit 64
}

(($# == 2)) || usage
cmd=$1
dir=$2
[[ -n "$dir" ]] || usage

as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  id -u postgres >/dev/null 2>&1 || die "running as root but there is no postgres user"
  as_pg=(runuser -u postgres --)
fi

free_port() {
  "$PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

is_running() {
  [[ -f "$dir/data/postmaster.pid" ]] &&
    "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

# True when DIR was made by this script (or is an empty directory), so
# removing it cannot destroy anything else.
is_ours() {
  [[ -f "$dir/$MARKER" ]] || [[ -d "$dir" && -z "$(ls -A -- "$dir")" ]]
}

do_stop() {
  if [[ ! -e "$dir" ]]; then
    return 0
  fi
  is_ours || die "$dir was not made by pg.sh (no $MARKER): not removing it"
  if [[ -d "$dir/data" ]] && is_running; then
    "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
      die "could not stop the cluster in $dir/data (see $dir/server.log)"
  fi
  rm -rf -- "$dir" || die "could not remove $dir"
}

do_start() {
  [[ -x "$PGBIN/initdb" ]] || die "PostgreSQL 15 is not installed ($PGBIN/initdb missing)"
  [[ -x "$PY" ]] || die "$PY is missing"
  if [[ -f "$dir/env" ]] && is_running; then
    return 0
  fi
  if [[ -e "$dir" ]]; then
    # A half-made or stopped cluster: start over.
    do_stop
  fi
  mkdir -p -- "$dir" || die "could not create $dir"
  : >"$dir/$MARKER"
  dir=$(cd -- "$dir" && pwd -P)
  chmod 700 "$dir"
  if ((${#as_pg[@]} > 0)); then
    chown postgres "$dir"
    runuser -u postgres -- test -x "$dir" ||
      die "the postgres user cannot reach $dir: choose a directory under /tmp"
  fi
  # The socket path must fit in sun_path (107 bytes).
  ((${#dir} < 80)) || die "directory path too long for a unix socket: $dir"

  local pw
  pw=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  (umask 077 && printf '%s\n' "$pw" >"$dir/pw")
  if ((${#as_pg[@]} > 0)); then
    chown postgres "$dir/pw"
  fi

  if ! "${as_pg[@]}" "$PGBIN/initdb" -D "$dir/data" -U "$USER_NAME" --pwfile="$dir/pw" -E UTF8 \
    --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 -N >"$dir/initdb.log" 2>&1; then
    die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
  fi

  local port="" try started=0
  for try in 1 2 3; do
    port=$(free_port) || die "could not find a free port"
    if "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      >/dev/null 2>&1; then
      started=1
      break
    fi
    if ! grep -q -e "Address already in use" -e "could not bind" "$dir/server.log" 2>/dev/null; then
      break
    fi
    : >"$dir/server.log"
  done
  if ((started == 0)); then
    die "the server did not start (try $try): $(tail -n 5 "$dir/server.log" 2>/dev/null)"
  fi

  if ! "${as_pg[@]}" "$PGBIN/createdb" -h "$dir" -p "$port" -U "$USER_NAME" "$DB" \
    >"$dir/createdb.log" 2>&1; then
    die "createdb failed: $(tail -n 5 "$dir/createdb.log")"
  fi

  local tmp="$dir/env.tmp"
  (
    umask 077
    cat >"$tmp" <<ENV
export CPB_TEST_PG='Driver=PostgreSQL Unicode;Server=127.0.0.1;Port=$port;Database=$DB;Uid=$USER_NAME;Pwd=$pw'
export PGHOST=127.0.0.1
export PGPORT=$port
export PGUSER=$USER_NAME
export PGPASSWORD=$pw
export PGDATABASE=$DB
ENV
  )
  mv -f -- "$tmp" "$dir/env"
}

case "$cmd" in
start) do_start ;;
stop) do_stop ;;
*) usage ;;
esac
