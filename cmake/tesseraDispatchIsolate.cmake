# Rename the shared inline code of one arch library of tessera_add_runtime_dispatch, in place.
# tesseraDispatch.cmake runs this script with `cmake -P` after the library is built.
#
# Variables (-D): ARCHIVE (the static library), ARCH (sse2, sse4_1, avx2 or avx512bw), NM,
# OBJCOPY and READELF (binutils or their LLVM equivalents).
#
# Renamed, with the suffix ".tessera_<ARCH>":
#   - every function the library defines with external linkage (nm types T, W and i), because
#     each of them was compiled with the arch's flags;
#   - every vtable and VTT (_ZTV, _ZTT), because they hold the addresses of such functions;
#   - every COMDAT group signature that is not kept below, such as the C5/D5 groups that hold
#     constructors and destructors, because the linker merges groups by signature.
# Kept:
#   - the kernel entry points, tessera::dispatch::kernels::<family><Arch> and its members,
#     which the rest of the program calls and which only this library defines;
#   - data: static variables, their guards and typeinfo. They stay shared so that, for example,
#     the error handler installed by set_error_handler() holds in the arch code too. Such data
#     must not hold the address of a renamed function, or a baseline caller could reach the
#     arch copy through it.
cmake_minimum_required(VERSION 3.16)

foreach(var IN ITEMS ARCHIVE ARCH NM OBJCOPY READELF)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "tesseraDispatchIsolate.cmake: missing required variable ${var}")
  endif()
endforeach()

set(suffix ".tessera_${ARCH}")
set(entry_prefix "_ZN7tessera8dispatch7kernels")

# Run a tool and return its standard output in the variable named by out_var.
function(run_tool out_var)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE errors)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "tesseraDispatchIsolate.cmake: '${ARGN}' failed (${result}): ${errors}")
  endif()
  set(${out_var} "${output}" PARENT_SCOPE)
endfunction()

# Read the defined symbols of ARCHIVE as two lists: external code symbols and vtables that are
# not entry points (code_var), and external data symbols and entry points (kept_var). Local
# symbols go to local_var.
function(read_symbols code_var kept_var local_var)
  run_tool(listing "${NM}" --defined-only -P "${ARCHIVE}")
  string(REPLACE "\n" ";" lines "${listing}")
  set(code "")
  set(kept "")
  set(local "")
  foreach(line IN LISTS lines)
    # POSIX format: "name type [value [size]]". Member headers ("lib.a[unit.o]:") do not match.
    if(NOT line MATCHES "^([^ ]+) ([A-Za-z]) ")
      continue()
    endif()
    set(name "${CMAKE_MATCH_1}")
    set(type "${CMAKE_MATCH_2}")
    if(type MATCHES "^[a-tv-z]$")
      list(APPEND local "${name}")
    elseif(name MATCHES "^${entry_prefix}")
      list(APPEND kept "${name}")
    elseif(type MATCHES "^[TWi]$" OR name MATCHES "^_ZT[VT]")
      list(APPEND code "${name}")
    else()
      list(APPEND kept "${name}")
    endif()
  endforeach()
  set(${code_var} "${code}" PARENT_SCOPE)
  set(${kept_var} "${kept}" PARENT_SCOPE)
  set(${local_var} "${local}" PARENT_SCOPE)
endfunction()

# Return the COMDAT group signatures of ARCHIVE.
function(read_group_signatures out_var)
  run_tool(listing "${READELF}" -gW "${ARCHIVE}")
  string(REGEX MATCHALL "COMDAT group section \\[ *[0-9]+\\] `[^']*' \\[[^]\n]+\\]" groups "${listing}")
  set(signatures "")
  foreach(group IN LISTS groups)
    string(REGEX REPLACE ".* \\[([^]]+)\\]$" "\\1" signature "${group}")
    list(APPEND signatures "${signature}")
  endforeach()
  list(REMOVE_DUPLICATES signatures)
  set(${out_var} "${signatures}" PARENT_SCOPE)
endfunction()

read_symbols(code kept local)
read_group_signatures(signatures)

set(renamed ${code})
foreach(signature IN LISTS signatures)
  if(NOT signature IN_LIST kept)
    list(APPEND renamed "${signature}")
  endif()
endforeach()
list(REMOVE_DUPLICATES renamed)
list(FILTER renamed EXCLUDE REGEX "${suffix}$")

set(map "")
foreach(name IN LISTS renamed)
  string(APPEND map "${name} ${name}${suffix}\n")
endforeach()
set(map_file "${ARCHIVE}.renamed-symbols.txt")
file(WRITE "${map_file}" "${map}")
if(renamed)
  run_tool(ignored "${OBJCOPY}" "--redefine-syms=${map_file}" "${ARCHIVE}" "${ARCHIVE}.tmp")
  file(RENAME "${ARCHIVE}.tmp" "${ARCHIVE}")
endif()

# Check the result: no external function without the suffix except entry points, at least one
# entry point, and no static initializer, which would run arch code at start-up on any CPU.
read_symbols(code_after kept_after local_after)
set(unrenamed ${code_after})
list(FILTER unrenamed EXCLUDE REGEX "${suffix}$")
if(unrenamed)
  message(FATAL_ERROR "tesseraDispatchIsolate.cmake: ${ARCHIVE} still defines shared code: ${unrenamed}")
endif()
set(entry_points ${kept_after})
list(FILTER entry_points INCLUDE REGEX "^${entry_prefix}")
if(NOT entry_points)
  message(FATAL_ERROR "tesseraDispatchIsolate.cmake: ${ARCHIVE} defines no tessera::dispatch::kernels entry point")
endif()
set(initializers ${local_after})
list(FILTER initializers INCLUDE REGEX "^_GLOBAL__sub_I")
if(initializers)
  message(FATAL_ERROR
    "tesseraDispatchIsolate.cmake: ${ARCHIVE} has static initializers (${initializers}), which "
    "would run ${ARCH} code at start-up on every CPU. A header included by the dispatch units "
    "defines a variable with a dynamic initializer.")
endif()
list(LENGTH renamed renamed_count)
list(LENGTH entry_points entry_count)
message(STATUS "tessera dispatch ${ARCH}: ${entry_count} entry points, ${renamed_count} symbols renamed")
