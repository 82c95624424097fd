#!/usr/bin/env bash
# Install the Debian or Ubuntu packages that building and testing tessera needs, skipping the
# ones already installed. It runs apt-get as root, or through sudo for other users.
#
# Usage: cmake/install-deps.sh
# With CXX set to a clang compiler, clang and libomp-dev (OpenMP) are added; g++ brings its own
# libgomp.
set -euo pipefail

packages=(
  cmake
  g++
  make
  libxsimd-dev
  xtl-dev
  libeigen3-dev
  catch2
  libbenchmark-dev
  libpng-dev
)
if [[ "$(basename -- "${CXX:-}")" == clang* ]]; then
  packages+=(clang libomp-dev)
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: dpkg-query or apt-get not found, so packages are not installed." >&2
  echo "install-deps: install the equivalents of these Debian packages yourself: ${packages[*]}" >&2
  exit 0
fi

missing=()
for package in "${packages[@]}"; do
  status="$(dpkg-query --show --showformat='${Status}' "$package" 2>/dev/null || true)"
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$package")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all required packages are installed (${packages[*]})."
  exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-deps: these packages are missing: ${missing[*]}" >&2
  echo "install-deps: run this script as root, install sudo, or install them yourself." >&2
  exit 1
fi

echo "install-deps: installing missing packages: ${missing[*]}"
"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install --yes --no-install-recommends "${missing[@]}"
