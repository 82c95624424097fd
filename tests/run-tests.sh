#!/usr/bin/env bash
# Build tessera's unit and packaging tests from an empty build folder in Release mode and run
# them with ctest. Missing Debian or Ubuntu packages are installed first (cmake/install-deps.sh),
# and Conan 2 from PyPI into build/conan-<version> (cmake/install-conan.sh).
# The examples and benchmarks keep their top-level default (ON), so they are compiled too and a
# compile error in them fails the run. ctest runs only the tests.
#
# Usage: tests/run-tests.sh [extra cmake configure arguments...]
# Environment:
#   TESSERA_BUILD_DIR  build folder (default: build/ci in the source tree). The script deletes
#                      it first when it is a tessera build folder, and stops when it is a
#                      non-empty folder of anything else.
#   TESSERA_TEST_MATRIX  0 skips tests/run-matrix.sh (the g++/clang++ × C++17/C++20 matrix),
#                      which otherwise runs after ctest.
#   TESSERA_TEST_SANITIZERS  0 skips tests/run-sanitizers.sh (the asan, ubsan, tsan and fuzz
#                      presets), which otherwise runs last.
#   CMAKE_GENERATOR, CXX and the other variables that cmake reads are honoured.
set -euo pipefail

source_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
build_dir="${TESSERA_BUILD_DIR:-$source_dir/build/ci}"
build_dir="$(realpath -m -- "$build_dir")"
jobs="$(nproc)"

"$source_dir/cmake/install-deps.sh"
# Conan 2 for the test package.conan, pinned and installed from PyPI.
conan="$("$source_dir/cmake/install-conan.sh")"

if [[ -e "$build_dir" ]]; then
  if [[ -f "$build_dir/CMakeCache.txt" ]] &&
     grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$source_dir" "$build_dir/CMakeCache.txt"; then
    echo "run-tests: removing the previous build in $build_dir"
    rm -rf -- "$build_dir"
  elif [[ -n "$(ls -A -- "$build_dir")" ]]; then
    echo "run-tests: $build_dir is not empty and is not a tessera build folder." >&2
    echo "run-tests: remove it, or choose another folder with TESSERA_BUILD_DIR." >&2
    exit 1
  fi
fi

echo "run-tests: configuring $build_dir"
cmake -S "$source_dir" -B "$build_dir" \
  -DCMAKE_BUILD_TYPE=Release \
  -DTESSERA_BUILD_TESTS=ON \
  -DTESSERA_CONAN="$conan" \
  "$@"

echo "run-tests: building with $jobs jobs"
cmake --build "$build_dir" -j "$jobs"

echo "run-tests: running ctest with $jobs jobs"
(cd -- "$build_dir" && ctest --output-on-failure -j "$jobs")

# The compiler and standard matrix (g++ and clang++, C++17 and C++20).
if [[ "${TESSERA_TEST_MATRIX:-1}" != 0 ]]; then
  echo "run-tests: running the compiler and standard matrix (tests/run-matrix.sh)"
  "$source_dir/tests/run-matrix.sh"
fi

# The sanitizer presets: AddressSanitizer, UndefinedBehaviorSanitizer, ThreadSanitizer and the
# bounded fuzz runs.
if [[ "${TESSERA_TEST_SANITIZERS:-1}" != 0 ]]; then
  echo "run-tests: running the sanitizer presets (tests/run-sanitizers.sh)"
  "$source_dir/tests/run-sanitizers.sh"
fi
