#!/usr/bin/env bash
# Build the examples in Release mode and run them with their default arguments:
# flexround_quantize (FlexRound on three layers of all-MiniLM-L6-v2), then lowlight_enhance
# (gamma correction of a darkened photograph), which writes its PNG files to
# $TESSERA_DEMO_BUILD_DIR/lowlight, then document_retrieval (document vectors, search and
# passage reranking on embedded documentation pages), then attention_layer (a real MiniLM
# self-attention layer and spatio-temporal attention over 8 synthetic video frames). Missing
# Debian or Ubuntu packages are installed first (cmake/install-deps.sh).
#
# Usage: examples/run-demo.sh                          run the four examples
#        examples/run-demo.sh EXAMPLE [arguments...]   run one example, flexround_quantize,
#                                                      lowlight_enhance, document_retrieval or
#                                                      attention_layer, with these arguments
#        examples/run-demo.sh --option [arguments...]  run flexround_quantize with these arguments
# lowlight_enhance writes to the same folder unless the arguments give another --out.
# Environment:
#   TESSERA_DEMO_BUILD_DIR  build folder (default: build/demo in the source tree); kept between
#                           runs, so a second run only rebuilds what changed.
set -euo pipefail

source_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
build_dir="${TESSERA_DEMO_BUILD_DIR:-$source_dir/build/demo}"
build_dir="$(realpath -m -- "$build_dir")"
lowlight_out="$build_dir/lowlight"

examples=(flexround_quantize lowlight_enhance document_retrieval attention_layer)
arguments=()
if [[ $# -gt 0 ]]; then
  case "$1" in
    flexround_quantize | lowlight_enhance | document_retrieval | attention_layer)
      examples=("$1")
      shift
      ;;
    -*)
      examples=(flexround_quantize)
      ;;
    *)
      echo "run-demo: unknown example '$1'; choose flexround_quantize, lowlight_enhance," \
        "document_retrieval or attention_layer" >&2
      exit 2
      ;;
  esac
  arguments=("$@")
fi

"$source_dir/cmake/install-deps.sh"

for example in "${examples[@]}"; do
  if [[ ! -f "$source_dir/examples/$example.cpp" ]]; then
    echo "run-demo: examples/$example.cpp not found in $source_dir" >&2
    exit 1
  fi
done

echo "run-demo: configuring $build_dir"
cmake -S "$source_dir" -B "$build_dir" \
  -DCMAKE_BUILD_TYPE=Release \
  -DTESSERA_BUILD_EXAMPLES=ON \
  -DTESSERA_BUILD_TESTS=OFF \
  -DTESSERA_BUILD_BENCHMARKS=OFF

# The examples that this build folder has; CMake skips lowlight_enhance when libpng is missing.
configured="$(sed -n 's/^TESSERA_EXAMPLES_BUILT:INTERNAL=//p' "$build_dir/CMakeCache.txt")"
for example in "${examples[@]}"; do
  if [[ ";$configured;" == *";$example;"* ]]; then
    continue
  fi
  if [[ "$example" == lowlight_enhance ]]; then
    echo "run-demo: CMake skipped lowlight_enhance because it did not find libpng; install libpng-dev" >&2
  else
    echo "run-demo: CMake did not configure $example in $build_dir" >&2
  fi
  exit 1
done

echo "run-demo: building ${examples[*]}"
cmake --build "$build_dir" --target "${examples[@]}" -j "$(nproc)"

for example in "${examples[@]}"; do
  command=("$build_dir/examples/$example")
  if [[ "$example" == lowlight_enhance ]]; then
    mkdir -p -- "$lowlight_out"
    command+=(--out "$lowlight_out")
  fi
  # Arguments go only to a single selected example; several examples run with their defaults.
  if [[ ${#examples[@]} -eq 1 ]]; then
    command+=("${arguments[@]}")
  fi
  echo "run-demo: running ${command[*]}"
  "${command[@]}"
  echo
done
