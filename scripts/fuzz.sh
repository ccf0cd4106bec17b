#!/usr/bin/env bash
# Runs every libFuzzer target of a `make fuzz` build for SECONDS each, one after another, from
# its seed corpus (tests/fuzz/corpus/<target>, never written to: new inputs go to
# BUILD/fuzz-corpus/<target>), and prints one line per target: executions, coverage (libFuzzer's
# `cov:` edges and `ft:` features) and the corpus size. A crash stops that target; its input is
# kept in BUILD/fuzz-crashes/<target>/ to be added to the seed corpus as a regression test.
# Usage: scripts/fuzz.sh BUILD [SECONDS] [TARGET...]
set -uo pipefail
build=${1:?usage: scripts/fuzz.sh BUILD [SECONDS] [TARGET...]}
seconds=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
src=$(cd "$(dirname "$0")/.." && pwd)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for d in "$src"/tests/fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
fi
failed=0
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz: $bin is missing (make fuzz builds it)" >&2; failed=1; continue; }
  work="$build/fuzz-corpus/$t"
  crashes="$build/fuzz-crashes/$t"
  mkdir -p "$work" "$crashes"
  log="$build/fuzz-$t.log"
  seeds=("$src/tests/fuzz/corpus/$t")
  [ "$t" = seccomp_profile ] && seeds+=("$src/tests/testdata/seccomp")
  "$bin" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$crashes/" \
    -rss_limit_mb=4096 -timeout=20 "$work" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*$')
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*$')
  corpus=$(find "$work" -type f | wc -l)
  if [ $rc -ne 0 ]; then
    failed=1
    echo "$t: FAILED (exit $rc) after ${execs:-?} executions; see $log and $crashes/"
  else
    echo "$t: ${execs:-?} executions in ${seconds}s, cov ${cov:-?} edges, ft ${ft:-?} features, corpus $corpus new inputs"
  fi
done
exit $failed
