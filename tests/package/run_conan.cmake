# Run `conan create` on tessera's recipe offline: a fresh Conan home without remotes, and a
# profile whose [platform_requires] takes xsimd and Eigen from this build's dependencies. ctest
# runs this script with `cmake -P`.
#
# Variables (-D):
#   CONAN           the conan 2 executable
#   SOURCE_DIR      tessera's source folder (conanfile.py, test_package/)
#   WORK_DIR        scratch folder, emptied first: the recipe copy, the profile and CONAN_HOME
#   COMPILER_ID, COMPILER_VERSION, CXX_COMPILER   those of the outer build
#   BUILD_TYPE      the outer build type (Release when empty)
#   XSIMD_VERSION, XSIMD_DIR, XSIMD_INCLUDE_DIRS, EIGEN_VERSION, EIGEN_DIR, EIGEN_INCLUDE_DIRS
cmake_minimum_required(VERSION 3.16)

foreach(var IN ITEMS CONAN SOURCE_DIR WORK_DIR COMPILER_ID COMPILER_VERSION CXX_COMPILER XSIMD_VERSION
                     EIGEN_VERSION)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_conan.cmake: missing required variable ${var}")
  endif()
endforeach()

function(run_step description)
  message(STATUS "${description}")
  execute_process(COMMAND ${ARGN} COMMAND_ECHO STDOUT RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${description} failed (exit status: ${result})")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(recipe_dir "${WORK_DIR}/recipe")
file(MAKE_DIRECTORY "${recipe_dir}")
# A copy, so that conan's test_package build folder stays out of the source tree.
foreach(item IN ITEMS conanfile.py CMakeLists.txt LICENSE cmake include test_package)
  file(COPY "${SOURCE_DIR}/${item}" DESTINATION "${recipe_dir}")
endforeach()

# Conan's setting names for the outer compiler.
if(COMPILER_ID STREQUAL "GNU")
  set(conan_compiler gcc)
elseif(COMPILER_ID STREQUAL "Clang")
  set(conan_compiler clang)
else()
  message(FATAL_ERROR "run_conan.cmake: no Conan profile for the compiler ${COMPILER_ID}")
endif()
string(REGEX MATCH "^[0-9]+" compiler_major "${COMPILER_VERSION}")
if(BUILD_TYPE STREQUAL "")
  set(BUILD_TYPE Release)
endif()

# The system packages are not Conan packages, so nothing passes their include folders on:
# the profile adds them to the compiler flags, and the recipe's CMake build gets their
# package folders.
set(include_flags "")
foreach(dir IN LISTS XSIMD_INCLUDE_DIRS EIGEN_INCLUDE_DIRS)
  string(APPEND include_flags "\"-I${dir}\", ")
endforeach()
string(REGEX REPLACE ", $" "" include_flags "${include_flags}")
set(extra_variables "")
if(XSIMD_DIR)
  string(APPEND extra_variables "\"xsimd_DIR\": \"${XSIMD_DIR}\", ")
endif()
if(EIGEN_DIR)
  string(APPEND extra_variables "\"Eigen3_DIR\": \"${EIGEN_DIR}\", ")
endif()
string(REGEX REPLACE ", $" "" extra_variables "${extra_variables}")

set(profile "${WORK_DIR}/profile")
file(WRITE "${profile}" "[settings]
os=Linux
arch=x86_64
compiler=${conan_compiler}
compiler.version=${compiler_major}
compiler.libcxx=libstdc++11
compiler.cppstd=17
build_type=${BUILD_TYPE}

[platform_requires]
xsimd/${XSIMD_VERSION}
eigen/${EIGEN_VERSION}

[conf]
tools.build:compiler_executables={\"cpp\": \"${CXX_COMPILER}\"}
tools.build:cxxflags=[${include_flags}]
tools.cmake.cmaketoolchain:extra_variables={${extra_variables}}
")

set(ENV{CONAN_HOME} "${WORK_DIR}/conan-home")
# A new Conan home lists Conan Center as a remote; remove it so that nothing can be fetched.
run_step("Removing the default remotes" "${CONAN}" remote remove "*")
run_step("Creating the tessera package offline"
  "${CONAN}" create "${recipe_dir}" --profile:all "${profile}" --no-remote --build=missing)
