#!/usr/bin/env bash
# Build the gamma-correction benchmark, run it and regenerate its sections
# of docs/benchmarks.md.
#
# Usage: bench/run-gamma.sh [THREADS...]   (default: 1 and the CPU count)
#
# It configures the project with CMake, so that gamma_bench links SLEEF and
# OpenCV's core module exactly when bench/CMakeLists.txt finds them, and
# builds only the gamma_bench target. For each thread count it runs the
# 3840 x 2160 benchmark and writes BUILD_DIR/gamma_threads<N>.json. Then
# bench/report.py turns the JSON files into one section per run plus a
# table of the gamma targets over all runs.
#
# Environment:
#   BUILD_DIR     CMake build folder (default build/gamma-bench)
#   CMAKE_ARGS    extra configure arguments, split at spaces, for example
#                 "-DTESSERA_BENCH_SLEEF=OFF -DTESSERA_BENCH_OPENCV=OFF"
#   REPETITIONS   repetitions of each benchmark, interleaved at random (default 8)
#   MIN_TIME      minimum seconds of one repetition (default 0.1)
#   OUTPUT        page to write (default docs/benchmarks.md)
# With the defaults, one thread count takes about 2 minutes on a busy
# 2-core machine, plus about 2 minutes for the first build.
set -euo pipefail

repository=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repository"

build_dir=${BUILD_DIR:-build/gamma-bench}
repetitions=${REPETITIONS:-8}
min_time=${MIN_TIME:-0.1}
output_page=${OUTPUT:-docs/benchmarks.md}
read -r -a extra_cmake_arguments <<< "${CMAKE_ARGS:-}"
if [ "$#" -gt 0 ]; then
    thread_counts=("$@")
else
    cpus=$(nproc)
    thread_counts=(1)
    if [ "$cpus" -gt 1 ]; then
        thread_counts+=("$cpus")
    fi
fi

configure_command=(cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DTESSERA_BUILD_BENCHMARKS=ON
    -DTESSERA_BUILD_TESTS=OFF -DTESSERA_BUILD_EXAMPLES=OFF -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
    "${extra_cmake_arguments[@]}")
build_command=(cmake --build "$build_dir" --target gamma_bench)
echo "run-gamma.sh: configuring: ${configure_command[*]}"
"${configure_command[@]}"
echo "run-gamma.sh: building: ${build_command[*]}"
"${build_command[@]}"

# The compiler command line of gamma_bench.cpp, with this repository's path
# shortened to '.', so that the page records the flags CMake chose.
compile_command=$(python3 - "$build_dir/compile_commands.json" "$repository" <<'PYTHON'
import json
import sys

path, repository = sys.argv[1], sys.argv[2]
with open(path, encoding="utf-8") as handle:
    entries = json.load(handle)
for entry in entries:
    if entry["file"].endswith("bench/gamma_bench.cpp"):
        print(entry["command"].replace(repository, "."))
        break
else:
    sys.exit(f"run-gamma.sh: {path} has no entry for bench/gamma_bench.cpp")
PYTHON
)

program="$build_dir/bench/gamma_bench"
outputs=()
for threads in "${thread_counts[@]}"; do
    output="$build_dir/gamma_threads$threads.json"
    echo "run-gamma.sh: running with $threads thread(s), writing $output"
    OMP_NUM_THREADS=$threads "$program" "--tessera_threads=$threads" \
        "--benchmark_min_time=$min_time" \
        "--benchmark_repetitions=$repetitions" \
        "--benchmark_enable_random_interleaving=true" \
        "--benchmark_format=console" \
        "--benchmark_display_aggregates_only=true" \
        "--benchmark_out_format=json" \
        "--benchmark_out=$output"
    outputs+=("$output")
done

python3 bench/report.py --output "$output_page" \
    --build-command "${configure_command[*]} && ${build_command[*]}, which compiles with: $compile_command" \
    "${outputs[@]}"
