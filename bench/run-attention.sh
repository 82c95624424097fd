#!/usr/bin/env bash
# Build the attention benchmark, run it with the PyTorch peers and regenerate the attention
# sections of docs/benchmarks.md.
#
# Usage: bench/run-attention.sh [THREADS...]   (default: 1 and the CPU count)
#
# For each thread count it runs bench/attention_bench: tessera, the plain Eigen version, the
# reference on the smallest shapes, a memcpy of the decode cache and the peak-FMA loop. Then, when
# python3 can import torch, it runs bench/attention_peers.py (PyTorch's
# scaled_dot_product_attention and the plain torch formula) with the same thread count. Without
# torch the peers are skipped with a message. bench/report.py then writes one section per thread
# count.
#
# Environment:
#   BUILD_DIR     CMake build folder (default build/attention-bench)
#   CMAKE_ARGS    extra configure arguments, split at spaces
#   REPETITIONS   repetitions of each C++ benchmark, interleaved at random (default 3)
#   MIN_TIME      minimum seconds of one C++ repetition and of each Python peer (default 0.5)
#   FILTER        regular expression passed to attention_bench's --benchmark_filter and to
#                 attention_peers.py's --workloads, for example "l512_d128|decode" (default: all).
#                 Without peak_fp32 in the match, % of peak uses the loop run once at startup.
#                 With torch present, the filter must match a workload of attention_peers.py (it
#                 has no grouped-query decode), or that script stops with an error.
#   ALL           set to 1 to add prefill_h32_l4096_* to both programs (0.27 TFLOP per call of
#                 the full d128 workload, and 64 MiB of Eigen scores per thread)
#   OUTPUT        page to write (default docs/benchmarks.md)
# With the defaults and torch installed, one run took about 13 minutes on a 2-core AVX2 machine,
# threads 1 and 2 together. ALL=1 adds about 0.6 TFLOP per implementation and thread count.
# NOTE: peak memory is an estimate, about 2 GB from the PyTorch peers and about 8 GB with ALL=1.
set -euo pipefail

repository=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repository"

build_dir=${BUILD_DIR:-build/attention-bench}
repetitions=${REPETITIONS:-3}
min_time=${MIN_TIME:-0.5}
output_page=${OUTPUT:-docs/benchmarks.md}
read -r -a extra_cmake_arguments <<< "${CMAKE_ARGS:-}"
filter=${FILTER:-}
bench_extra=(--benchmark_filter="$filter")
peers_extra=(--workloads "$filter")
if [ "${ALL:-0}" = "1" ]; then
    bench_extra+=(--tessera_all)
    peers_extra+=(--all)
fi
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
build_command=(cmake --build "$build_dir" --target attention_bench)
echo "run-attention.sh: configuring: ${configure_command[*]}"
"${configure_command[@]}"
echo "run-attention.sh: building: ${build_command[*]}"
"${build_command[@]}"

# The compiler command line of attention_bench.cpp, with this repository's path shortened to
# '.', so that the page records the flags CMake chose (-march=native when TESSERA_NATIVE is ON).
compile_command=$(python3 - "$build_dir/compile_commands.json" "$repository" <<'PYTHON'
import json
import sys

path, repository = sys.argv[1], sys.argv[2]
with open(path, encoding="utf-8") as handle:
    entries = json.load(handle)
for entry in entries:
    if entry["file"].endswith("bench/attention_bench.cpp"):
        print(entry["command"].replace(repository, "."))
        break
else:
    sys.exit(f"run-attention.sh: {path} has no entry for bench/attention_bench.cpp")
PYTHON
)

have_torch=0
if python3 -c "import torch" 2>/dev/null; then
    have_torch=1
else
    echo "run-attention.sh: python3 cannot import torch, so the PyTorch peers are skipped"
fi

results=()
for threads in "${thread_counts[@]}"; do
    json="$build_dir/attention_threads${threads}.json"
    echo "run-attention.sh: running attention_bench with $threads thread(s), writing $json"
    OMP_NUM_THREADS="$threads" "$build_dir/bench/attention_bench" --tessera_threads="$threads" \
        "${bench_extra[@]}" \
        --benchmark_repetitions="$repetitions" --benchmark_min_time="$min_time" \
        --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=false \
        --benchmark_out="$json" --benchmark_out_format=json
    results+=("$json")

    if [ "$have_torch" = "1" ]; then
        peers_json="$build_dir/attention_peers_threads${threads}.json"
        echo "run-attention.sh: running attention_peers.py with $threads thread(s), writing $peers_json"
        python3 bench/attention_peers.py --threads "$threads" --min-time "$min_time" "${peers_extra[@]}" \
            --out "$peers_json"
        results+=("$peers_json")
    fi
done

python3 bench/report.py --output "$output_page" \
    --build-command "${configure_command[*]} && ${build_command[*]}, which compiles with: $compile_command" \
    "${results[@]}"
