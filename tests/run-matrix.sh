#!/usr/bin/env bash
# The compiler and standard matrix: build the unit tests and the header checks (every public
# header alone with -Wall -Wextra -Wpedantic -Werror, with and without -fno-exceptions) with
# g++ and clang++ as C++17 and C++20, and run the unit tests. tests/run-tests.sh already covers
# g++ with the default standard (C++17), so that entry is skipped unless given explicitly. The
# packaging tests, examples and benchmarks are left to tests/run-tests.sh.
#
# Usage: tests/run-matrix.sh [COMPILER:STANDARD ...]     (default: g++:20 clang++:17 clang++:20)
# Environment:
#   TESSERA_MATRIX_DIR  parent folder of the build folders (default: build/matrix in the
#                       source tree); each entry builds in <dir>/<compiler>-cxx<standard>,
#                       deleted first.
set -euo pipefail

source_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
matrix_dir="$(realpath -m -- "${TESSERA_MATRIX_DIR:-$source_dir/build/matrix}")"
jobs="$(nproc)"

entries=("$@")
if [[ ${#entries[@]} -eq 0 ]]; then
  entries=(g++:20 clang++:17 clang++:20)
fi

for entry in "${entries[@]}"; do
  compiler="${entry%%:*}"
  standard="${entry##*:}"
  if [[ "$compiler" == "$entry" || ! "$standard" =~ ^(17|20)$ ]]; then
    echo "run-matrix: invalid entry '$entry', expected COMPILER:STANDARD with STANDARD 17 or 20" >&2
    exit 2
  fi

  # clang needs its own packages (clang, libomp-dev); install-deps.sh adds them for CXX=clang*.
  CXX="$compiler" "$source_dir/cmake/install-deps.sh"

  build_dir="$matrix_dir/$compiler-cxx$standard"
  rm -rf -- "$build_dir"
  echo "== run-matrix: $compiler, C++$standard, in $build_dir"
  SECONDS=0
  CXX="$compiler" cmake -S "$source_dir" -B "$build_dir" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_STANDARD="$standard" \
    -DCMAKE_CXX_STANDARD_REQUIRED=ON \
    -DCMAKE_CXX_EXTENSIONS=OFF \
    -DTESSERA_BUILD_TESTS=ON \
    -DTESSERA_BUILD_EXAMPLES=OFF \
    -DTESSERA_BUILD_BENCHMARKS=OFF
  cmake --build "$build_dir" -j "$jobs"
  (cd -- "$build_dir" && ctest --output-on-failure -j "$jobs" --label-exclude package)
  echo "== run-matrix: $compiler, C++$standard passed in $SECONDS s"
done
