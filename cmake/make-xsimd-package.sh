#!/usr/bin/env bash
# Write a minimal CMake package (xsimdConfig.cmake and xsimdConfigVersion.cmake) for a folder of
# xsimd headers that came without one, such as the copy bundled in a Python wheel. The package
# defines the INTERFACE target `xsimd`, as xsimd's own package does, and takes its version from
# xsimd/config/xsimd_config.hpp.
#
# Usage: cmake/make-xsimd-package.sh INCLUDE_DIR PACKAGE_DIR
#   INCLUDE_DIR  folder that contains xsimd/xsimd.hpp
#   PACKAGE_DIR  output folder of the two files, to pass to CMake as -Dxsimd_DIR=PACKAGE_DIR
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 INCLUDE_DIR PACKAGE_DIR" >&2
  exit 2
fi
include_dir="$(realpath -e -- "$1")"
package_dir="$(realpath -m -- "$2")"

config_header="$include_dir/xsimd/config/xsimd_config.hpp"
if [[ ! -f "$include_dir/xsimd/xsimd.hpp" || ! -f "$config_header" ]]; then
  echo "make-xsimd-package: $include_dir does not contain xsimd/xsimd.hpp and" \
       "xsimd/config/xsimd_config.hpp" >&2
  exit 1
fi

# Read one XSIMD_VERSION_* number from the config header.
read_version_part() {
  sed -n "s/^#define XSIMD_VERSION_$1 \\([0-9][0-9]*\\).*/\\1/p" "$config_header"
}
major="$(read_version_part MAJOR)"
minor="$(read_version_part MINOR)"
patch="$(read_version_part PATCH)"
if [[ -z "$major" || -z "$minor" || -z "$patch" ]]; then
  echo "make-xsimd-package: no XSIMD_VERSION_MAJOR/MINOR/PATCH defines in $config_header" >&2
  exit 1
fi
version="$major.$minor.$patch"

mkdir -p -- "$package_dir"
cat > "$package_dir/xsimdConfig.cmake" <<CONFIG
# xsimd $version headers in $include_dir, packaged by tessera's cmake/make-xsimd-package.sh.
if(NOT TARGET xsimd)
  add_library(xsimd INTERFACE IMPORTED)
  set_target_properties(xsimd PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "$include_dir"
    INTERFACE_COMPILE_FEATURES cxx_std_14)
endif()
set(xsimd_INCLUDE_DIRS "$include_dir")
CONFIG

# CMake writes the version file itself, with the same SameMajorVersion rule as xsimd's package.
version_script="$(mktemp)"
trap 'rm -f -- "$version_script"' EXIT
cat > "$version_script" <<'SCRIPT'
include(CMakePackageConfigHelpers)
write_basic_package_version_file("${OUTPUT}"
  VERSION "${VERSION}"
  COMPATIBILITY SameMajorVersion
  ARCH_INDEPENDENT)
SCRIPT
cmake -DOUTPUT="$package_dir/xsimdConfigVersion.cmake" -DVERSION="$version" -P "$version_script"

echo "make-xsimd-package: wrote the CMake package of xsimd $version to $package_dir"
