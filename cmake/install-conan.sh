#!/usr/bin/env bash
# Install the pinned Conan 2 release from PyPI into a virtual environment and print the path of
# its conan executable. An environment that already has that release is reused.
#
# Usage: cmake/install-conan.sh [VENV_DIR]   (default: build/conan-<version> in the source tree)
set -euo pipefail

conan_version=2.34.0
source_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
venv_dir="$(realpath -m -- "${1:-$source_dir/build/conan-$conan_version}")"
conan="$venv_dir/bin/conan"

if [[ -x "$conan" ]] && "$conan" --version 2>/dev/null | grep -qxF "Conan version $conan_version"; then
  echo "$conan"
  exit 0
fi

rm -rf -- "$venv_dir"
if ! python3 -m venv "$venv_dir" >&2; then
  echo "install-conan: 'python3 -m venv' failed. On Debian or Ubuntu install python3-venv." >&2
  exit 1
fi
if ! "$venv_dir/bin/python" -m pip install --quiet "conan==$conan_version" >&2; then
  echo "install-conan: installing conan==$conan_version from PyPI failed." >&2
  exit 1
fi
echo "$conan"
