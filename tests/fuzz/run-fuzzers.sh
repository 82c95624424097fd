#!/usr/bin/env bash
# Run every libFuzzer target for a fixed time and print its counts. The targets come from the
# fuzz preset (build/fuzz, configured and built here when missing). Each target starts from its
# committed corpus (tests/fuzz/corpus/<family>) and adds new inputs to build/fuzz-runs/<family>/
# corpus, which later runs reuse. Crash inputs and logs go to build/fuzz-runs/<family>.
#
# Usage: tests/fuzz/run-fuzzers.sh [SECONDS [FAMILY ...]]   (default: 1800 s, every target)
# Environment: TESSERA_FUZZ_JOBS  targets run at the same time (default: nproc); each one uses
#              one thread, with OMP_NUM_THREADS=1.
# Exit status: 1 when a target found a crash, 0 otherwise.
set -euo pipefail

source_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)"
seconds="${1:-1800}"
shift || true
if [[ ! "$seconds" =~ ^[0-9]+$ || "$seconds" -eq 0 ]]; then
  echo "run-fuzzers: SECONDS must be a positive whole number, got '$seconds'" >&2
  exit 2
fi

build_dir="$source_dir/build/fuzz"
runs_dir="$source_dir/build/fuzz-runs"
cd -- "$source_dir"
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  CXX=clang++ "$source_dir/cmake/install-deps.sh"
  cmake --preset fuzz
fi
cmake --build --preset fuzz -j "$(nproc)"

families=("$@")
if [[ ${#families[@]} -eq 0 ]]; then
  for source in "$source_dir"/tests/fuzz/fuzz_*.cpp; do
    name="$(basename -- "$source" .cpp)"
    families+=("${name#fuzz_}")
  done
fi

run_one() {
  local family="$1"
  local target="$build_dir/tests/fuzz/tessera_fuzz_$family"
  local dir="$runs_dir/$family"
  if [[ ! -x "$target" ]]; then
    echo "run-fuzzers: $target was not built; is tests/fuzz/fuzz_$family.cpp a fuzz target?" >&2
    return 1
  fi
  mkdir -p -- "$dir/corpus"
  # -artifact_prefix keeps crash files out of the working folder; -print_final_stats gives the
  # counts that the summary reads.
  (cd -- "$dir" && OMP_NUM_THREADS=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$target" -max_total_time="$seconds" -max_len=4096 -timeout=60 -rss_limit_mb=4096 \
      -print_final_stats=1 -artifact_prefix="$dir/" corpus "$source_dir/tests/fuzz/corpus/$family" \
      >"$dir/fuzz.log" 2>&1) || true
}

echo "run-fuzzers: ${families[*]} for $seconds s each, logs in $runs_dir/<family>/fuzz.log"
max_jobs="${TESSERA_FUZZ_JOBS:-$(nproc)}"
for family in "${families[@]}"; do
  while [[ "$(jobs -rp | wc -l)" -ge "$max_jobs" ]]; do
    wait -n || true
  done
  run_one "$family" &
done
wait

status=0
printf '%-10s %14s %10s %8s %8s\n' family executions exec/s corpus crashes
for family in "${families[@]}"; do
  dir="$runs_dir/$family"
  log="$dir/fuzz.log"
  # libFuzzer pads these values with a varying number of spaces.
  executions="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || true)"
  rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || true)"
  corpus="$(find "$dir/corpus" -type f | wc -l)"
  crashes="$(find "$dir" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)"
  printf '%-10s %14s %10s %8s %8s\n' "$family" "${executions:-?}" "${rate:-?}" "$corpus" "$crashes"
  if [[ "$crashes" -gt 0 || -z "$executions" ]]; then
    status=1
  fi
done
exit "$status"
