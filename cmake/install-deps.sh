#!/usr/bin/env bash
# Install the Debian or Ubuntu packages that building and testing tessera needs, skipping the
# ones already installed. It runs apt-get as root, or through sudo for other users.
#
# Usage: cmake/install-deps.sh
# With CXX set to a clang compiler, clang and libomp-dev (OpenMP) are added, and libclang-rt-dev
# (the sanitizer and libFuzzer runtimes) where the distribution has that package; g++ brings its
# own libgomp and sanitizer runtimes.
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
# Installed when the package index knows them: Debian 12 moved clang's runtimes into
# libclang-rt-dev, which apt installs only as a recommendation, while older releases ship them
# inside clang's own packages.
optional_packages=()
if [[ "$(basename -- "${CXX:-}")" == clang* ]]; then
  packages+=(clang libomp-dev)
  optional_packages+=(libclang-rt-dev)
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: dpkg-query or apt-get not found, so packages are not installed." >&2
  echo "install-deps: install the equivalents of these Debian packages yourself: ${packages[*]}" >&2
  exit 0
fi

installed() {
  [[ "$(dpkg-query --show --showformat='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# Adds to `missing` the optional packages that are not installed but known to apt.
add_known_optional_packages() {
  for package in "${optional_packages[@]}"; do
    if ! installed "$package" && apt-cache show "$package" >/dev/null 2>&1; then
      missing+=("$package")
    fi
  done
}

missing=()
for package in "${packages[@]}"; do
  if ! installed "$package"; then
    missing+=("$package")
  fi
done
add_known_optional_packages

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

# The package index may have been empty before the update, so look for the optional ones again.
missing=()
add_known_optional_packages
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps: installing optional packages: ${missing[*]}"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install --yes --no-install-recommends "${missing[@]}"
fi
