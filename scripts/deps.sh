#!/usr/bin/env bash
# scripts/deps.sh — install what cpbridge needs on Debian 12, if missing.
#   scripts/deps.sh          build and run: compiler, libraries, ODBC drivers
#   scripts/deps.sh --test   also what the tests start: PostgreSQL 15, the
#                            SMTP receiver (python3-aiosmtpd), clang for the
#                            fuzzers, openssl for test certificates,
#                            chromium and python3-html5lib for the report
# Runs apt-get only when a package is missing; needs root (or sudo) then.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libconfig-dev unixodbc-dev unixodbc
      libcurl4-openssl-dev libjansson-dev libssl-dev libcunit1-dev libmicrohttpd-dev
      libsqliteodbc odbc-postgresql tdsodbc sqlite3 python3 ca-certificates)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(postgresql-15 postgresql-client-15 python3-aiosmtpd openssl clang
         libclang-rt-14-dev dpkg-dev file chromium python3-html5lib)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
