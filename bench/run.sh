#!/usr/bin/env bash
# Build the FlexRound benchmark, run it and regenerate docs/benchmarks.md.
#
# Usage: bench/run.sh [THREADS...]      (default: 1)
#
# For each thread count it runs the 4096 x 4096 benchmark and writes
# BUILD_DIR/flexround_threads<N>.json. With one thread it also runs the
# kernels alone on a 16 x 2048 weight, whose arrays fit in L2, to measure
# their compute rate without the memory limit. Then bench/report.py turns
# every JSON file into a section of the page (docs/benchmarks.md unless
# OUTPUT is set).
#
# Environment:
#   CXX           compiler (default g++)
#   BUILD_DIR     where the program and JSON files go (default build/flexround-bench)
#   REPETITIONS   repetitions of each benchmark, interleaved at random (default 8)
#   MIN_TIME      minimum CPU seconds of one repetition (default 0.1)
#   OUTPUT        page to write (default docs/benchmarks.md)
# One run with the defaults takes 2 to 4 minutes on a busy 2-core machine.
set -euo pipefail

repository=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repository"

cxx=${CXX:-g++}
build_dir=${BUILD_DIR:-build/flexround-bench}
repetitions=${REPETITIONS:-8}
min_time=${MIN_TIME:-0.1}
output_page=${OUTPUT:-docs/benchmarks.md}
if [ "$#" -gt 0 ]; then
    thread_counts=("$@")
else
    thread_counts=(1)
fi

eigen_flags=$(pkg-config --cflags eigen3 2>/dev/null || echo "-I/usr/include/eigen3")
mkdir -p "$build_dir"
program="$build_dir/flexround_bench"
build_command="$cxx -std=c++17 -O3 -march=native -fopenmp -Iinclude $eigen_flags bench/flexround_bench.cpp -lbenchmark -lpthread -o $program"
echo "run.sh: building: $build_command"
$build_command

common_flags=(
    "--benchmark_min_time=$min_time"
    "--benchmark_repetitions=$repetitions"
    "--benchmark_enable_random_interleaving=true"
    "--benchmark_format=console"
    "--benchmark_out_format=json"
)

outputs=()
for threads in "${thread_counts[@]}"; do
    output="$build_dir/flexround_threads$threads.json"
    echo "run.sh: running with $threads thread(s), writing $output"
    OMP_NUM_THREADS=$threads "$program" "--tessera_threads=$threads" "${common_flags[@]}" \
        "--benchmark_out=$output"
    outputs+=("$output")
done

if [[ " ${thread_counts[*]} " == *" 1 "* ]]; then
    output="$build_dir/flexround_in_cache.json"
    echo "run.sh: running the kernels on a 16 x 2048 weight, writing $output"
    OMP_NUM_THREADS=1 "$program" --tessera_threads=1 --tessera_shape=16x2048 "${common_flags[@]}" \
        '--benchmark_filter=/(tessera|reference|eigen)$' "--benchmark_out=$output"
    outputs+=("$output")
fi

python3 bench/report.py --output "$output_page" --build-command "$build_command" "${outputs[@]}"
