#!/usr/bin/env bash
# tests/fuzz/run.sh — build the libFuzzer targets with clang in their own
# build directory and run each one for SECONDS on a copy of its seed corpus.
#
#   tests/fuzz/run.sh SECONDS [TARGET...]
#
# TARGET defaults to every fuzzer (fuzz_order fuzz_config fuzz_http).
# Environment:
#   CPB_FUZZ_BUILD   build directory (default: <repo>/build-fuzz)
#   CPB_FUZZ_WORK    where corpora grow and crashes land (default:
#                    $CPB_FUZZ_BUILD/fuzz-work); kept between runs
#   CPB_FUZZ_JOBS    build parallelism (default 2)
# Each target runs with -max_total_time=SECONDS on a working corpus seeded
# from tests/fuzz/corpus/<name>/; new inputs stay in the working corpus, a
# crash, leak or timeout is written to $CPB_FUZZ_WORK/<target>/ and makes
# the script exit 1 after all targets ran. The last line of each target's
# output (execs/s, coverage) is printed. See tests/fuzz/README.md.
set -euo pipefail

usage() {
  echo "usage: run.sh SECONDS [fuzz_order|fuzz_config|fuzz_http ...]" >&2
  exit 64
}

(($# >= 1)) || usage
seconds=$1
shift
[[ "$seconds" =~ ^[0-9]+$ ]] && ((seconds > 0)) || usage

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd -- "$here/../.." && pwd -P)
build=${CPB_FUZZ_BUILD:-$repo/build-fuzz}
work=${CPB_FUZZ_WORK:-$build/fuzz-work}
jobs=${CPB_FUZZ_JOBS:-2}

targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(fuzz_order fuzz_config fuzz_http)
fi
for t in "${targets[@]}"; do
  case "$t" in
  fuzz_order | fuzz_config | fuzz_http) ;;
  *) usage ;;
  esac
done

command -v clang >/dev/null || {
  echo "run.sh: clang is not installed" >&2
  exit 69
}

mkdir -p -- "$build"
cmake -S "$repo" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCPB_FUZZ=ON >"$build/fuzz-configure.log" 2>&1 || {
  cat "$build/fuzz-configure.log" >&2
  exit 1
}
cmake --build "$build" -j"$jobs" --target "${targets[@]}" >"$build/fuzz-build.log" 2>&1 || {
  tail -n 40 "$build/fuzz-build.log" >&2
  exit 1
}

# Third-party leaks that are not cpbridge's (see lsan.supp).
export LSAN_OPTIONS="suppressions=$here/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

failed=0
for t in "${targets[@]}"; do
  name=${t#fuzz_}
  seeds="$here/corpus/$name"
  dir="$work/$t"
  mkdir -p "$dir/corpus"
  # Scratch files of the harness (fuzz_config's pipeline file); a timed
  # libFuzzer run ends with _Exit, so nothing else would remove them.
  rm -rf -- "$dir/tmp"
  mkdir -p "$dir/tmp"
  # The seeds are merged in every time, so a seed added later is used too.
  cp -n -- "$seeds"/* "$dir/corpus/" 2>/dev/null || true
  log="$dir/last-run.log"
  echo "== $t: ${seconds}s (corpus $dir/corpus, log $log)"
  # -timeout: one input taking longer than 10 s is a finding (a hang).
  # -rss_limit_mb: libFuzzer's default (2 GiB) is kept.
  if (cd "$dir" && TMPDIR="$dir/tmp" "$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$dir/" corpus >"$log" 2>&1); then
    grep -E '^(#[0-9]+.*(DONE|pulse|NEW|REDUCE)|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)' \
      "$log" | tail -n 4
  else
    failed=1
    echo "!! $t found a problem; reproducer(s):" >&2
    ls -1 "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* 2>/dev/null >&2 || true
    grep -E 'ERROR|SUMMARY|==[0-9]+==' "$log" | head -n 20 >&2 || true
  fi
done
exit "$failed"
