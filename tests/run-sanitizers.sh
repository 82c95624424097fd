#!/usr/bin/env bash
# The sanitizer runs, one CMake preset each (CMakePresets.json), each in build/<preset>,
# deleted first:
#   asan   the unit tests and the examples under AddressSanitizer (the default compiler),
#   ubsan  the same under UndefinedBehaviorSanitizer, with -fno-sanitize-recover,
#   tsan   the threaded unit tests and the concurrent-call test under ThreadSanitizer (clang,
#          libomp and its archer tool),
#   fuzz   every libFuzzer target (clang) for a bounded, seeded number of inputs from its
#          committed corpus; tests/fuzz/run-fuzzers.sh runs them for longer.
# The header checks and packaging tests compile and install code without running kernels, so
# only tests/run-tests.sh runs them.
#
# Usage: tests/run-sanitizers.sh [PRESET ...]     (default: asan ubsan tsan fuzz)
set -euo pipefail

source_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
jobs="$(nproc)"
cd -- "$source_dir"

presets=("$@")
if [[ ${#presets[@]} -eq 0 ]]; then
  presets=(asan ubsan tsan fuzz)
fi

for preset in "${presets[@]}"; do
  case "$preset" in
    asan | ubsan) compiler="${CXX:-g++}" ;;
    tsan | fuzz) compiler=clang++ ;;
    *)
      echo "run-sanitizers: unknown preset '$preset', expected asan, ubsan, tsan or fuzz" >&2
      exit 2
      ;;
  esac
  CXX="$compiler" "$source_dir/cmake/install-deps.sh"

  build_dir="$source_dir/build/$preset"
  rm -rf -- "$build_dir"
  echo "== run-sanitizers: $preset in $build_dir"
  SECONDS=0
  CXX="$compiler" cmake --preset "$preset"
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset" -j "$jobs"
  echo "== run-sanitizers: $preset passed in $SECONDS s"
done
