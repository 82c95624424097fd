# Replay the vcpkg overlay port ports/tessera without vcpkg, then build a consumer against the
# result. ctest runs this script with `cmake -P` (CMake 3.19 or newer, for string(JSON)).
#
# 1. Validate ports/tessera/vcpkg.json and the root vcpkg.json: the fields vcpkg requires (a
#    lowercase name, exactly one version field, dependencies as names or objects with a name)
#    and a version equal to project(tessera VERSION) in CMakeLists.txt.
# 2. Run portfile.cmake with the vcpkg functions it calls defined here to do what vcpkg's do:
#    configure with the port's options, install, move the CMake package to share/tessera
#    (config fixup) and install the copyright file.
# 3. Check the layout of the package folder and build the find_package consumer against it.
#
# Variables (-D): SOURCE_DIR, WORK_DIR (emptied first), CONSUMER_SOURCE_DIR, INITIAL_CACHE,
# GENERATOR, and BUILD_TYPE.
cmake_minimum_required(VERSION 3.19)

foreach(var IN ITEMS SOURCE_DIR WORK_DIR CONSUMER_SOURCE_DIR INITIAL_CACHE GENERATOR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_vcpkg_port.cmake: missing required variable ${var}")
  endif()
endforeach()

function(run_step description)
  message(STATUS "${description}")
  execute_process(COMMAND ${ARGN} COMMAND_ECHO STDOUT RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${description} failed (exit status: ${result})")
  endif()
endfunction()

# --- 1. The manifests. -----------------------------------------------------------------------

file(READ "${SOURCE_DIR}/CMakeLists.txt" cmake_lists)
if(NOT cmake_lists MATCHES "project\\(tessera[ \t\r\n]+VERSION[ \t\r\n]+([0-9]+\\.[0-9]+\\.[0-9]+)")
  message(FATAL_ERROR "No 'project(tessera VERSION x.y.z' in ${SOURCE_DIR}/CMakeLists.txt")
endif()
set(project_version "${CMAKE_MATCH_1}")

function(check_manifest path)
  file(READ "${path}" manifest)
  string(JSON name ERROR_VARIABLE error GET "${manifest}" name)
  if(error OR NOT name MATCHES "^[a-z0-9]+(-[a-z0-9]+)*$")
    message(FATAL_ERROR "${path}: 'name' must be lowercase letters, digits and dashes, got '${name}' ${error}")
  endif()
  set(version_fields "")
  foreach(field IN ITEMS version version-semver version-date version-string)
    string(JSON value ERROR_VARIABLE error GET "${manifest}" ${field})
    if(NOT error)
      list(APPEND version_fields ${field})
      set(version "${value}")
    endif()
  endforeach()
  list(LENGTH version_fields version_count)
  if(NOT version_count EQUAL 1)
    message(FATAL_ERROR "${path}: exactly one version field is required, found '${version_fields}'")
  endif()
  if(NOT version STREQUAL project_version)
    message(FATAL_ERROR "${path}: version ${version} differs from CMakeLists.txt (${project_version})")
  endif()
  string(JSON description ERROR_VARIABLE error GET "${manifest}" description)
  if(error OR description STREQUAL "")
    message(FATAL_ERROR "${path}: 'description' is missing or empty")
  endif()
  string(JSON count ERROR_VARIABLE error LENGTH "${manifest}" dependencies)
  if(error)
    message(FATAL_ERROR "${path}: 'dependencies' must be an array: ${error}")
  endif()
  set(names "")
  math(EXPR last "${count} - 1")
  foreach(index RANGE ${last})
    string(JSON type TYPE "${manifest}" dependencies ${index})
    if(type STREQUAL "STRING")
      string(JSON dependency GET "${manifest}" dependencies ${index})
    elseif(type STREQUAL "OBJECT")
      string(JSON dependency ERROR_VARIABLE error GET "${manifest}" dependencies ${index} name)
      if(error)
        message(FATAL_ERROR "${path}: dependency ${index} has no 'name'")
      endif()
    else()
      message(FATAL_ERROR "${path}: dependency ${index} is a ${type}, not a name or an object")
    endif()
    if(NOT dependency MATCHES "^[a-z0-9]+(-[a-z0-9]+)*$")
      message(FATAL_ERROR "${path}: dependency name '${dependency}' is not a valid port name")
    endif()
    list(APPEND names "${dependency}")
  endforeach()
  set(dependency_names "${names}" PARENT_SCOPE)
  message(STATUS "${path}: name ${name}, version ${version}, dependencies ${names}")
endfunction()

check_manifest("${SOURCE_DIR}/ports/tessera/vcpkg.json")
foreach(required IN ITEMS xsimd eigen3 vcpkg-cmake vcpkg-cmake-config)
  if(NOT required IN_LIST dependency_names)
    message(FATAL_ERROR "ports/tessera/vcpkg.json: the port must depend on ${required}")
  endif()
endforeach()
check_manifest("${SOURCE_DIR}/vcpkg.json")

# --- 2. The portfile, with vcpkg's functions replayed. -----------------------------------------

file(REMOVE_RECURSE "${WORK_DIR}")
set(PORT tessera)
set(CURRENT_PACKAGES_DIR "${WORK_DIR}/packages/tessera_x64-linux")
set(CURRENT_BUILDTREES_DIR "${WORK_DIR}/buildtrees/tessera")
if(NOT DEFINED BUILD_TYPE OR BUILD_TYPE STREQUAL "")
  set(BUILD_TYPE Release)
endif()

# vcpkg_cmake_configure: configure the release build tree (the port sets
# VCPKG_BUILD_TYPE=release, so there is no debug tree) with the port's options, the outer
# build's compiler and dependency locations (INITIAL_CACHE) and CMAKE_BUILD_TYPE=Release.
function(vcpkg_cmake_configure)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "SOURCE_PATH" "OPTIONS;OPTIONS_RELEASE;OPTIONS_DEBUG")
  if(NOT VCPKG_BUILD_TYPE STREQUAL "release")
    message(FATAL_ERROR "portfile.cmake: a header-only port must set VCPKG_BUILD_TYPE to release")
  endif()
  run_step("vcpkg_cmake_configure"
    "${CMAKE_COMMAND}" -S "${arg_SOURCE_PATH}" -B "${CURRENT_BUILDTREES_DIR}/x64-linux-rel" -G "${GENERATOR}"
    -C "${INITIAL_CACHE}" "-DCMAKE_BUILD_TYPE=Release" "-DCMAKE_INSTALL_PREFIX=${CURRENT_PACKAGES_DIR}"
    ${arg_OPTIONS} ${arg_OPTIONS_RELEASE})
endfunction()

# vcpkg_cmake_install: build the install target of that tree.
function(vcpkg_cmake_install)
  run_step("vcpkg_cmake_install"
    "${CMAKE_COMMAND}" --build "${CURRENT_BUILDTREES_DIR}/x64-linux-rel" --target install)
endfunction()

# vcpkg_cmake_config_fixup: the package files must end up in share/<port>, with no absolute
# path of the build machine inside them.
function(vcpkg_cmake_config_fixup)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "CONFIG_PATH;PACKAGE_NAME" "")
  if(NOT arg_PACKAGE_NAME)
    set(arg_PACKAGE_NAME "${PORT}")
  endif()
  set(from "${CURRENT_PACKAGES_DIR}/${arg_CONFIG_PATH}")
  set(to "${CURRENT_PACKAGES_DIR}/share/${arg_PACKAGE_NAME}")
  if(NOT EXISTS "${from}/${arg_PACKAGE_NAME}Config.cmake")
    message(FATAL_ERROR "vcpkg_cmake_config_fixup: no ${arg_PACKAGE_NAME}Config.cmake in ${from}")
  endif()
  if(NOT from STREQUAL to)
    file(MAKE_DIRECTORY "${to}")
    file(GLOB files "${from}/*")
    file(COPY ${files} DESTINATION "${to}")
    file(REMOVE_RECURSE "${from}")
  endif()
  file(GLOB cmake_files "${to}/*.cmake")
  foreach(file IN LISTS cmake_files)
    file(READ "${file}" content)
    string(FIND "${content}" "${CURRENT_PACKAGES_DIR}" position)
    if(NOT position EQUAL -1)
      message(FATAL_ERROR "vcpkg_cmake_config_fixup: ${file} contains the absolute path ${CURRENT_PACKAGES_DIR}")
    endif()
  endforeach()
endfunction()

# vcpkg_install_copyright: share/<port>/copyright.
function(vcpkg_install_copyright)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "" "FILE_LIST")
  file(MAKE_DIRECTORY "${CURRENT_PACKAGES_DIR}/share/${PORT}")
  set(text "")
  foreach(file IN LISTS arg_FILE_LIST)
    file(READ "${file}" content)
    string(APPEND text "${content}")
  endforeach()
  file(WRITE "${CURRENT_PACKAGES_DIR}/share/${PORT}/copyright" "${text}")
endfunction()

include("${SOURCE_DIR}/ports/tessera/portfile.cmake")

# --- 3. The package layout and a consumer. -----------------------------------------------------

foreach(path IN ITEMS
    include/tessera/tessera.hpp
    include/tessera/dispatch/runtime.hpp
    share/tessera/tesseraConfig.cmake
    share/tessera/tesseraConfigVersion.cmake
    share/tessera/tesseraTargets.cmake
    share/tessera/tesseraDispatch.cmake
    share/tessera/copyright)
  if(NOT EXISTS "${CURRENT_PACKAGES_DIR}/${path}")
    message(FATAL_ERROR "The port did not install ${path} into ${CURRENT_PACKAGES_DIR}")
  endif()
endforeach()
foreach(path IN ITEMS debug lib bin)
  if(EXISTS "${CURRENT_PACKAGES_DIR}/${path}")
    message(FATAL_ERROR "A header-only port must not leave ${path}/ in ${CURRENT_PACKAGES_DIR}")
  endif()
endforeach()

set(consumer_cache "${WORK_DIR}/consumer-cache.cmake")
file(READ "${INITIAL_CACHE}" cache)
file(WRITE "${consumer_cache}" "${cache}"
  "set(tessera_DIR [==[${CURRENT_PACKAGES_DIR}/share/tessera]==] CACHE PATH \"\")\n")
set(consumer_dir "${WORK_DIR}/consumer")
run_step("Configuring the consumer against the port"
  "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${consumer_dir}" -G "${GENERATOR}" -C "${consumer_cache}")
run_step("Building the consumer" "${CMAKE_COMMAND}" --build "${consumer_dir}")
run_step("Running the consumer" "${consumer_dir}/tessera_consumer")
