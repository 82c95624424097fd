# Configure, build and run one consumer project of tessera. ctest runs this script with `cmake -P`.
#
# Variables (-D):
#   CONSUMER_SOURCE_DIR  the consumer project
#   CONSUMER_BINARY_DIR  its build folder, emptied first
#   INITIAL_CACHE        cache file passed to the consumer's configure step with -C
#   GENERATOR, GENERATOR_PLATFORM, GENERATOR_TOOLSET, CONFIG   those of the outer build
#   TESSERA_BUILD_DIR, INSTALL_PREFIX   optional: install that build tree into this prefix first
#                                       and check that the consumer found tessera there

cmake_minimum_required(VERSION 3.16)

foreach(var IN ITEMS CONSUMER_SOURCE_DIR CONSUMER_BINARY_DIR INITIAL_CACHE GENERATOR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: missing required variable ${var}")
  endif()
endforeach()

set(config_args "")
if(NOT "${CONFIG}" STREQUAL "")
  set(config_args --config "${CONFIG}")
endif()

# Run one command, echoing it, and stop the script if it fails.
function(run_step description)
  message(STATUS "${description}")
  execute_process(COMMAND ${ARGN} COMMAND_ECHO STDOUT RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${description} failed (exit status: ${result})")
  endif()
endfunction()

if(DEFINED INSTALL_PREFIX)
  if(NOT DEFINED TESSERA_BUILD_DIR)
    message(FATAL_ERROR "run_consumer.cmake: INSTALL_PREFIX is set but TESSERA_BUILD_DIR is not")
  endif()
  file(REMOVE_RECURSE "${INSTALL_PREFIX}")
  run_step("Installing ${TESSERA_BUILD_DIR} into ${INSTALL_PREFIX}"
    "${CMAKE_COMMAND}" --install "${TESSERA_BUILD_DIR}" --prefix "${INSTALL_PREFIX}" ${config_args})
endif()

file(REMOVE_RECURSE "${CONSUMER_BINARY_DIR}")
set(generator_args -G "${GENERATOR}")
if(NOT "${GENERATOR_PLATFORM}" STREQUAL "")
  list(APPEND generator_args -A "${GENERATOR_PLATFORM}")
endif()
if(NOT "${GENERATOR_TOOLSET}" STREQUAL "")
  list(APPEND generator_args -T "${GENERATOR_TOOLSET}")
endif()
run_step("Configuring ${CONSUMER_SOURCE_DIR}"
  "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${CONSUMER_BINARY_DIR}"
  ${generator_args} -C "${INITIAL_CACHE}")

if(DEFINED INSTALL_PREFIX)
  # A tessera installed elsewhere on the machine must not satisfy the test.
  file(STRINGS "${CONSUMER_BINARY_DIR}/CMakeCache.txt" tessera_dir_line REGEX "^tessera_DIR:")
  string(REGEX REPLACE "^tessera_DIR:[A-Z]+=" "" tessera_dir "${tessera_dir_line}")
  get_filename_component(real_prefix "${INSTALL_PREFIX}" REALPATH)
  get_filename_component(real_tessera_dir "${tessera_dir}" REALPATH)
  string(FIND "${real_tessera_dir}/" "${real_prefix}/" prefix_position)
  if(NOT prefix_position EQUAL 0)
    message(FATAL_ERROR
      "The consumer found tessera in '${tessera_dir}', outside the test prefix ${INSTALL_PREFIX}.")
  endif()
  message(STATUS "The consumer found tessera in ${tessera_dir}")
endif()

run_step("Building ${CONSUMER_BINARY_DIR}"
  "${CMAKE_COMMAND}" --build "${CONSUMER_BINARY_DIR}" ${config_args})

# Single-config generators put the program in the build folder, multi-config ones in a
# per-configuration folder below it.
set(program "")
foreach(candidate IN ITEMS
    "${CONSUMER_BINARY_DIR}/tessera_consumer"
    "${CONSUMER_BINARY_DIR}/tessera_consumer.exe"
    "${CONSUMER_BINARY_DIR}/${CONFIG}/tessera_consumer"
    "${CONSUMER_BINARY_DIR}/${CONFIG}/tessera_consumer.exe")
  if(EXISTS "${candidate}" AND NOT IS_DIRECTORY "${candidate}")
    set(program "${candidate}")
    break()
  endif()
endforeach()
if(program STREQUAL "")
  message(FATAL_ERROR "The consumer program tessera_consumer was not found in ${CONSUMER_BINARY_DIR}")
endif()
run_step("Running ${program}" "${program}")
