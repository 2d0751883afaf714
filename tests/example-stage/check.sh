#!/bin/bash
# check.sh — the CTest test example_stage_out_of_tree: proves a stage author
# can build a stage against an INSTALLED cpbridge with nothing but
# pkg-config and the example's Makefile.
#
#   check.sh BUILD_DIR EXAMPLE_SRC_DIR
#
# 1. install BUILD_DIR into a scratch root (DESTDIR=$tmp/root cmake
#    --install: the configured layout, every file under the scratch root,
#    nothing written to the real prefix even by absolute destinations;
#    not --prefix, which would leave the .pc and the stage directory
#    pointing at the configured prefix);
# 2. point pkg-config at the installed cpbridge-stage.pc
#    (PKG_CONFIG_PATH, and PKG_CONFIG_SYSROOT_DIR for the scratch root);
# 3. copy example.c and the Makefile out of the source tree and run make,
#    checking that the compiler took <cpbridge/stage.h> from the install;
# 4. check that example-tag.so exports exactly one dynamic symbol,
#    cpb_stage_entry;
# 5. load it: with the installed cpbridge when there is one
#    (`cpbridge stages --describe example-tag`), and always with loadcheck.c,
#    a tiny host compiled against the installed header that checks the
#    descriptor and runs init / process / fini.
set -u
umask 022

if [[ $# -ne 2 ]]; then
  echo "usage: check.sh BUILD_DIR EXAMPLE_SRC_DIR" >&2
  exit 64
fi
build=$1
src=$2
CC=${CC:-cc}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cpb-example.XXXXXX") || exit 1
cleanup() {
  if [[ -n "${CPB_TEST_KEEP:-}" ]]; then
    echo "check.sh: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

die() {
  echo "FAIL: $*" >&2
  exit 1
}

root="$tmp/root"
echo "== install $build into the scratch root $root"
if ! DESTDIR="$root" cmake --install "$build" >"$tmp/install.log" 2>&1; then
  tail -n 20 "$tmp/install.log" >&2
  die "cmake --install failed (is the build complete?)"
fi

header=$(find "$root" -path '*/include/cpbridge/stage.h' -print -quit)
[[ -n "$header" ]] || die "no cpbridge/stage.h installed under $root"
cmp -s "$header" "$src/../../core/include/cpbridge/stage.h" ||
  die "the installed $header differs from core/include/cpbridge/stage.h"
pc=$(find "$root" -name cpbridge-stage.pc -print -quit)
[[ -n "$pc" ]] || die "no cpbridge-stage.pc installed under $root"
cpbridge=$(find "$root" -path '*/bin/cpbridge' -type f -print -quit)
echo "   header $header"
echo "   pkg-config file $pc"

export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
PKG_CONFIG_SYSROOT_DIR="$root"
pkgconfig="pkg-config"
$pkgconfig --exists cpbridge-stage || die "pkg-config cannot read $pc"

echo "== build the example out of tree with its Makefile"
ex="$tmp/example"
mkdir -p "$ex"
cp "$src/example.c" "$src/Makefile" "$ex/" || die "cannot copy the example"
if ! make -C "$ex" PKG_CONFIG="$pkgconfig" >"$tmp/make.log" 2>&1; then
  cat "$tmp/make.log" >&2
  die "make failed"
fi
cat "$tmp/make.log"
so="$ex/example-tag.so"
[[ -f "$so" ]] || die "make did not produce $so"

# The compiler must have read the installed header, not another one.
cflags=$($pkgconfig --cflags cpbridge-stage)
# shellcheck disable=SC2086
used=$("$CC" -std=c11 $cflags -M "$ex/example.c" | tr -s ' \\' '\n\n' | grep 'cpbridge/stage\.h$' | head -n 1)
[[ -n "$used" && "$used" -ef "$header" ]] ||
  die "example.c was compiled against '$used', not the installed $header"
echo "   compiled against $used"

echo "== exported symbols"
syms=$(nm -D --defined-only "$so" | awk '{print $NF}' | sort -u)
echo "$syms" | sed 's/^/   /'
[[ "$syms" == "cpb_stage_entry" ]] ||
  die "$so must export exactly one dynamic symbol, cpb_stage_entry"

echo "== load through the installed header's ABI (loadcheck)"
# shellcheck disable=SC2086
if ! "$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror $cflags -o "$tmp/loadcheck" \
    "$src/loadcheck.c" $($pkgconfig --libs cpbridge-stage) -ldl >"$tmp/cc.log" 2>&1; then
  cat "$tmp/cc.log" >&2
  die "loadcheck.c does not compile against the installed header"
fi
"$tmp/loadcheck" "$so" "out-of-tree" || die "loadcheck refused or could not run $so"

if [[ -n "$cpbridge" && -x "$cpbridge" ]]; then
  echo "== cpbridge stages --describe example-tag"
  out=$(CPBRIDGE_STAGE_PATH="$ex" "$cpbridge" stages --describe example-tag 2>&1)
  rc=$?
  echo "$out" | sed 's/^/   /'
  [[ $rc -eq 0 ]] || die "cpbridge stages --describe example-tag exited with $rc"
  for word in example-tag tag priority; do
    grep -q -- "$word" <<<"$out" || die "the description does not mention '$word'"
  done
else
  echo "== no cpbridge program installed (core/cli/main.c not written yet): loadcheck only"
fi

echo "OK: example-tag built out of tree against the installed header and loaded"
