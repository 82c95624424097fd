# Check that runtime dispatch covers every kernel family: each folder include/tessera/<family>/
# other than core/ and dispatch/ must be listed in TESSERA_DISPATCH_FAMILIES
# (cmake/tesseraDispatch.cmake) and have the header include/tessera/dispatch/<family>.hpp that
# defines TESSERA_DISPATCH_<FAMILY>_KERNELS. ctest runs this script with `cmake -P`.
#
# Variables (-D): SOURCE_DIR, tessera's source folder.
cmake_minimum_required(VERSION 3.16)

include("${SOURCE_DIR}/cmake/tesseraDispatch.cmake")

file(GLOB entries LIST_DIRECTORIES true "${SOURCE_DIR}/include/tessera/*")
set(failures "")
foreach(entry IN LISTS entries)
  if(NOT IS_DIRECTORY "${entry}")
    continue()
  endif()
  get_filename_component(family "${entry}" NAME)
  if(family STREQUAL "core" OR family STREQUAL "dispatch")
    continue()
  endif()
  if(NOT family IN_LIST TESSERA_DISPATCH_FAMILIES)
    list(APPEND failures "the family ${family} is missing from TESSERA_DISPATCH_FAMILIES in cmake/tesseraDispatch.cmake")
  endif()
  set(header "${SOURCE_DIR}/include/tessera/dispatch/${family}.hpp")
  string(TOUPPER "${family}" upper)
  if(NOT EXISTS "${header}")
    list(APPEND failures "include/tessera/dispatch/${family}.hpp does not exist")
  else()
    file(READ "${header}" content)
    if(NOT content MATCHES "#define TESSERA_DISPATCH_${upper}_KERNELS\\(ACTION, ARCH\\)")
      list(APPEND failures "include/tessera/dispatch/${family}.hpp does not define TESSERA_DISPATCH_${upper}_KERNELS(ACTION, ARCH)")
    endif()
  endif()
endforeach()

if(failures)
  string(REPLACE ";" "\n  " failures "${failures}")
  message(FATAL_ERROR "Runtime dispatch does not cover every family:\n  ${failures}")
endif()
message(STATUS "Runtime dispatch covers the families ${TESSERA_DISPATCH_FAMILIES}")
