#!/usr/bin/env bash
# Build bench/gamma_accuracy, run it and regenerate the measured tables of
# the "Gamma correction" section of docs/accuracy.md.
#
# Usage: bench/run-accuracy.sh [GAMMA_ACCURACY_OPTIONS...]
#
# The options go to gamma_accuracy unchanged (see gamma_accuracy --help),
# for example --arch sse2 or --stride 4. The program's Markdown output
# replaces the lines between the two "gamma_accuracy output" markers of the
# page, and its JSON output goes to BUILD_DIR/gamma_accuracy.json. When a
# measured error exceeds its bound, the page still gets the tables (which
# list the violations) and the script exits with status 1.
#
# Environment:
#   BUILD_DIR   CMake build folder (default build/gamma-accuracy). The
#               configuration needs Google Benchmark, because
#               gamma_accuracy is built with the benchmarks.
#   OUTPUT      page to update (default docs/accuracy.md)
# With the default sampling one run took 25 to 45 s on a busy 2-core machine.
set -euo pipefail

repository=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repository"

build_dir=${BUILD_DIR:-build/gamma-accuracy}
output_page=${OUTPUT:-docs/accuracy.md}
begin_marker='<!-- BEGIN gamma_accuracy output: regenerate with bench/run-accuracy.sh -->'
end_marker='<!-- END gamma_accuracy output -->'

if ! grep -qxF "$begin_marker" "$output_page" || ! grep -qxF "$end_marker" "$output_page"; then
    echo "run-accuracy.sh: $output_page is missing the marker lines '$begin_marker' and '$end_marker'" >&2
    exit 2
fi

cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DTESSERA_BUILD_TESTS=OFF \
    -DTESSERA_BUILD_EXAMPLES=OFF -DTESSERA_BUILD_BENCHMARKS=ON
cmake --build "$build_dir" --target gamma_accuracy

tables="$build_dir/gamma_accuracy.md"
json="$build_dir/gamma_accuracy.json"
echo "run-accuracy.sh: running gamma_accuracy, writing $tables and $json"
status=0
"$build_dir/bench/gamma_accuracy" --markdown "$tables" --json "$@" > "$json" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
    echo "run-accuracy.sh: gamma_accuracy failed with status $status, so $output_page is unchanged" >&2
    exit "$status"
fi

# Keep everything outside the markers and put the new tables between them.
updated=$(mktemp)
awk -v begin="$begin_marker" -v end="$end_marker" -v tables="$tables" '
    $0 == begin { print; print ""; while ((getline line < tables) > 0) print line; print ""; skipping = 1; next }
    $0 == end { skipping = 0 }
    !skipping { print }
' "$output_page" > "$updated"
# Copy instead of moving, so the page keeps its permissions rather than mktemp's 0600.
cat "$updated" > "$output_page"
rm "$updated"
echo "run-accuracy.sh: updated $output_page"
exit "$status"
