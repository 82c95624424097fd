# vcpkg overlay port of tessera, header-only. Use it with
#   vcpkg install tessera --overlay-ports=<tessera>/ports
# The source is the repository that contains this port, so the port builds the checkout it
# came with.
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

# Headers only, so there is nothing to build twice.
set(VCPKG_BUILD_TYPE release)

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DTESSERA_BUILD_TESTS=OFF
        -DTESSERA_BUILD_BENCHMARKS=OFF
        -DTESSERA_BUILD_EXAMPLES=OFF
        -DTESSERA_NATIVE=OFF
        -DTESSERA_INSTALL_CMAKEDIR=share/tessera
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH share/tessera)

# A header-only package has no libraries, so the lib folders that the install step may create
# are empty.
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib")
set(VCPKG_POLICY_EMPTY_INCLUDE_FOLDER disabled)

vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
