#!/usr/bin/env bash
# Build and run the FlexRound example, flexround_quantize, in Release mode. Missing Debian or
# Ubuntu packages are installed first (cmake/install-deps.sh). Arguments are passed on to the
# example.
#
# Usage: examples/run-demo.sh [arguments of flexround_quantize...]
# Environment:
#   TESSERA_DEMO_BUILD_DIR  build folder (default: build/demo in the source tree); kept between
#                           runs, so a second run only rebuilds what changed.
set -euo pipefail

source_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
build_dir="${TESSERA_DEMO_BUILD_DIR:-$source_dir/build/demo}"
build_dir="$(realpath -m -- "$build_dir")"
example=flexround_quantize

"$source_dir/cmake/install-deps.sh"

if [[ ! -f "$source_dir/examples/$example.cpp" ]]; then
  echo "run-demo: examples/$example.cpp not found in $source_dir" >&2
  exit 1
fi

echo "run-demo: configuring $build_dir"
cmake -S "$source_dir" -B "$build_dir" \
  -DCMAKE_BUILD_TYPE=Release \
  -DTESSERA_BUILD_EXAMPLES=ON \
  -DTESSERA_BUILD_TESTS=OFF \
  -DTESSERA_BUILD_BENCHMARKS=OFF

echo "run-demo: building $example"
cmake --build "$build_dir" --target "$example" -j "$(nproc)"

echo "run-demo: running $example${*:+ $*}"
exec "$build_dir/examples/$example" "$@"
