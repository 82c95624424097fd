#!/usr/bin/env bash
# Build the retrieval benchmark, run it with the Python peers and regenerate the retrieval
# sections of docs/benchmarks.md.
#
# Usage: bench/run-retrieval.sh [THREADS...]   (default: 1 and the CPU count)
#
# For each thread count it runs bench/retrieval_bench (tessera, the reference, Eigen, memcpy and,
# when CMake found libfaiss-dev, FAISS) and then bench/retrieval_peers.py (torch.segment_reduce,
# numpy, the faiss-cpu wheel, NumKong or SimSIMD, PyTorch) with the same thread count. A Python
# peer whose package is missing is skipped with a message; without python3 and numpy the peers
# are skipped altogether. bench/report.py then writes one section per thread count.
#
# Environment:
#   BUILD_DIR     CMake build folder (default build/retrieval-bench)
#   REPETITIONS   repetitions of each C++ benchmark (default 3)
#   MIN_TIME      minimum seconds of one repetition (default 0.5)
#   OUTPUT        page to write (default docs/benchmarks.md)
# The search workloads allocate about 3.5 GB. One thread count takes about 5 minutes here.
set -euo pipefail

repository=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repository"

build_dir=${BUILD_DIR:-build/retrieval-bench}
repetitions=${REPETITIONS:-3}
min_time=${MIN_TIME:-0.5}
output_page=${OUTPUT:-docs/benchmarks.md}
if [ "$#" -gt 0 ]; then
    thread_counts=("$@")
else
    cpus=$(nproc)
    thread_counts=(1)
    if [ "$cpus" -gt 1 ]; then
        thread_counts+=("$cpus")
    fi
fi

cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DTESSERA_BUILD_BENCHMARKS=ON -DTESSERA_BUILD_TESTS=OFF \
    -DTESSERA_BUILD_EXAMPLES=OFF
cmake --build "$build_dir" --target retrieval_bench

results=()
for threads in "${thread_counts[@]}"; do
    json="$build_dir/retrieval_threads${threads}.json"
    echo "run-retrieval.sh: running retrieval_bench with $threads thread(s)"
    "$build_dir/bench/retrieval_bench" --tessera_threads="$threads" \
        --benchmark_repetitions="$repetitions" --benchmark_min_time="$min_time" \
        --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=false \
        --benchmark_out="$json" --benchmark_out_format=json
    results+=("$json")

    peers_json="$build_dir/retrieval_peers_threads${threads}.json"
    if python3 -c "import numpy" 2>/dev/null; then
        echo "run-retrieval.sh: running retrieval_peers.py with $threads thread(s)"
        OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" \
            python3 bench/retrieval_peers.py --threads "$threads" --out "$peers_json"
        results+=("$peers_json")
    else
        echo "run-retrieval.sh: python3 with numpy not found, so the Python peers are skipped"
    fi
done

python3 bench/report.py --output "$output_page" "${results[@]}"
