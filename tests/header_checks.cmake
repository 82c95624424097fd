# Each public header on its own: one generated translation unit per header that includes it
# twice (so a missing include or include guard shows) and compiles it with
# -Wall -Wextra -Wpedantic -Werror, once with exceptions and once with -fno-exceptions (the
# error-handler path). The glob picks up every header under include/tessera/, a new family
# folder included, when CMake configures.

file(GLOB TESSERA_PUBLIC_HEADERS CONFIGURE_DEPENDS
  RELATIVE "${PROJECT_SOURCE_DIR}/include"
  "${PROJECT_SOURCE_DIR}/include/tessera/*.hpp"
  "${PROJECT_SOURCE_DIR}/include/tessera/*/*.hpp")
if(NOT TESSERA_PUBLIC_HEADERS)
  message(FATAL_ERROR "tessera: no header found under ${PROJECT_SOURCE_DIR}/include/tessera")
endif()

set(_tessera_header_dir "${CMAKE_CURRENT_BINARY_DIR}/header_checks")
set(_tessera_header_units "")
foreach(header IN LISTS TESSERA_PUBLIC_HEADERS)
  string(MAKE_C_IDENTIFIER "${header}" unit_name)
  set(unit "${_tessera_header_dir}/${unit_name}.cpp")
  set(content "// Generated: ${header} on its own, included twice.\n#include <${header}>\n#include <${header}>\n")
  # Write only on change, so that a new configure does not rebuild every unit.
  if(EXISTS "${unit}")
    file(READ "${unit}" old_content)
  else()
    set(old_content "")
  endif()
  if(NOT old_content STREQUAL content)
    file(WRITE "${unit}" "${content}")
  endif()
  list(APPEND _tessera_header_units "${unit}")
endforeach()
list(LENGTH TESSERA_PUBLIC_HEADERS _tessera_header_count)
message(STATUS "tessera: checking ${_tessera_header_count} public headers on their own")

# OBJECT libraries: the units are compiled by the normal build, so an error fails the build.
foreach(variant IN ITEMS exceptions no_exceptions)
  add_library(tessera_headers_${variant} OBJECT ${_tessera_header_units})
  target_link_libraries(tessera_headers_${variant} PRIVATE tessera::tessera)
  tessera_add_program_flags(tessera_headers_${variant})
  target_compile_options(tessera_headers_${variant} PRIVATE
    "$<$<CXX_COMPILER_ID:GNU,Clang,AppleClang>:-Werror>")
  if(variant STREQUAL "no_exceptions")
    target_compile_options(tessera_headers_${variant} PRIVATE
      "$<$<CXX_COMPILER_ID:GNU,Clang,AppleClang>:-fno-exceptions>")
  endif()
endforeach()
unset(_tessera_header_dir)
unset(_tessera_header_units)
unset(_tessera_header_count)
