#!/usr/bin/env bash
# scripts/check-layers.sh [ROOT] — the include rule of core/ (see
# core/CMakeLists.txt): a file in core/<layer>/ includes headers of its own
# layer and of the layers below it, spelled from core/ ("lib/buf.h"); the
# layers from the top are cli, engine, services, lib; cpbridge/stage.h is
# open to all. Stages (plugins/) include no engine header at all: only
# <cpbridge/stage.h> and headers under plugins/ (their own folder,
# plugins/common, or a stage whose sources they share, as sync-status
# shares source-woo's WooCommerce client).
# Prints every break as FILE:LINE: message and exits 1 when there is one.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

layers=(cli engine services lib)
rank() {
  local i
  for i in "${!layers[@]}"; do
    if [[ ${layers[$i]} == "$1" ]]; then
      echo "$i"
      return
    fi
  done
  echo -1
}

bad=0
report() {
  echo "$1: $2" >&2
  bad=1
}

for layer in "${layers[@]}"; do
  mine=$(rank "$layer")
  for f in core/"$layer"/*.[ch]; do
    [[ -e $f ]] || continue
    while IFS=: read -r line text; do
      inc=${text#*\"}
      inc=${inc%%\"*}
      case $inc in
        cpbridge/stage.h) continue ;;
        */*) ;;
        *)
          report "$f:$line" "\"$inc\": spell core headers from core/ (\"$layer/$inc\")"
          continue
          ;;
      esac
      theirs=$(rank "${inc%%/*}")
      if [[ $theirs -lt 0 ]]; then
        report "$f:$line" "\"$inc\" is not in a layer of core/"
      elif [[ ! -f core/$inc ]]; then
        report "$f:$line" "\"$inc\" does not exist"
      elif [[ $theirs -lt $mine ]]; then
        report "$f:$line" "$layer/ may not include \"$inc\" (${inc%%/*}/ is above it)"
      fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" || true)
  done
done

for f in $(find plugins -name '*.[ch]' | sort); do
  dir=$(dirname "$f")
  while IFS=: read -r line text; do
    inc=${text#*\"}
    inc=${inc%%\"*}
    if [[ -f $dir/$inc ]] || compgen -G "plugins/*/$inc" >/dev/null; then
      continue
    fi
    report "$f:$line" "\"$inc\": stages include <cpbridge/stage.h> and headers under plugins/ only"
  done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" || true)
  if grep -n '#[[:space:]]*include[[:space:]]*<\(cli\|engine\|services\|lib\)/' "$f" >/dev/null; then
    report "$f" "includes an engine header"
  fi
done

if [[ $bad -ne 0 ]]; then
  echo "check-layers: the include rule is broken (core/CMakeLists.txt)" >&2
  exit 1
fi
echo "check-layers: core/ layers and stage includes are clean"
