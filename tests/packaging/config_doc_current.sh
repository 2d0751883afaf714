#!/bin/sh
# config_doc_current.sh — CTest `config_doc_current`: regenerates the
# configuration reference from the built binary and stages into the build
# tree and fails, showing the difference, when the committed
# docs/CONFIGURATION.md is not the same.
#
# usage: config_doc_current.sh SOURCE_DIR BUILD_DIR
set -eu

[ $# -eq 2 ] || {
    echo "usage: config_doc_current.sh SOURCE_DIR BUILD_DIR" >&2
    exit 2
}
src=$1
build=$2
fresh=$build/CONFIGURATION.md

sh "$src/scripts/gen-config-doc.sh" "$build" "$fresh"
if [ ! -f "$src/docs/CONFIGURATION.md" ]; then
    echo "FAIL: docs/CONFIGURATION.md is missing: run scripts/gen-config-doc.sh build" >&2
    exit 1
fi
if ! diff -u "$src/docs/CONFIGURATION.md" "$fresh"; then
    echo "FAIL: docs/CONFIGURATION.md is out of date (diff above: committed, then" \
        "generated): run scripts/gen-config-doc.sh build" >&2
    exit 1
fi
echo "docs/CONFIGURATION.md is current"
