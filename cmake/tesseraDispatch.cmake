# tessera_add_runtime_dispatch: runtime choice of the instruction set for a program that uses
# tessera through the headers tessera/dispatch/<family>.hpp.
#
#   tessera_add_runtime_dispatch(<target> [FAMILIES <family>...])
#
# For every arch of TESSERA_DISPATCH_ARCHS (sse2, sse4_1, avx2, avx512bw) the function compiles
# the kernels of each family (default: TESSERA_DISPATCH_FAMILIES, every family) in a generated
# translation unit with that arch's flags, collects them in a static library per arch and links
# those into <target>. The rest of <target> needs no -march flags: the dispatch headers call
# the best arch that the CPU supports. x86-64 with GCC or clang on ELF (Linux) only.
#
# One-definition rule. A translation unit compiled with -mavx512bw also contains inline
# functions that are not templated on the arch (argument checks, std::vector, Eigen, xsimd),
# compiled with AVX-512 instructions. The linker keeps one copy of each inline function for the
# whole program, so without a guard a baseline caller could end up running that AVX-512 copy
# and stop with SIGILL on an older CPU. After each arch library is built,
# tesseraDispatchIsolate.cmake renames every function, vtable and COMDAT group that it
# defines, except the kernel entry points of tessera::dispatch::kernels, by appending
# ".tessera_<arch>". The arch code then calls only its own copies. Data (static variables,
# typeinfo) keeps its name, so state such as the error handler stays shared.

include_guard(GLOBAL)

# The kernel families that tessera/dispatch/ provides, one header tessera/dispatch/<family>.hpp
# each, defining TESSERA_DISPATCH_<FAMILY>_KERNELS. Add a new family here.
set(TESSERA_DISPATCH_FAMILIES quant imaging retrieval attention)

# The archs of tessera::dispatch::dispatch_archs, with their xsimd type and their compiler flags
# TESSERA_DISPATCH_FLAGS_<arch>. A static build with the same flags gives the same results.
set(TESSERA_DISPATCH_ARCHS sse2 sse4_1 avx2 avx512bw)
set(_tessera_dispatch_type_sse2 "::xsimd::sse2")
set(_tessera_dispatch_type_sse4_1 "::xsimd::sse4_1")
set(_tessera_dispatch_type_avx2 "::xsimd::fma3<::xsimd::avx2>")
set(_tessera_dispatch_type_avx512bw "::xsimd::avx512bw")
set(TESSERA_DISPATCH_FLAGS_sse2 -msse2)
set(TESSERA_DISPATCH_FLAGS_sse4_1 -msse4.1)
set(TESSERA_DISPATCH_FLAGS_avx2 -mavx2 -mfma)
set(TESSERA_DISPATCH_FLAGS_avx512bw -mavx512f -mavx512cd -mavx512dq -mavx512bw -mavx2 -mfma)

set(_TESSERA_DISPATCH_MODULE_DIR "${CMAKE_CURRENT_LIST_DIR}")

function(tessera_add_runtime_dispatch target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "FAMILIES")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "tessera_add_runtime_dispatch: unknown arguments: ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT TARGET "${target}")
    message(FATAL_ERROR "tessera_add_runtime_dispatch: ${target} is not a target")
  endif()
  if(NOT TARGET tessera::tessera)
    message(FATAL_ERROR
      "tessera_add_runtime_dispatch: the target tessera::tessera does not exist. Call "
      "find_package(tessera) or add_subdirectory(<tessera>) first.")
  endif()

  set(families ${arg_FAMILIES})
  if(NOT families)
    set(families ${TESSERA_DISPATCH_FAMILIES})
  endif()
  foreach(family IN LISTS families)
    if(NOT family IN_LIST TESSERA_DISPATCH_FAMILIES)
      message(FATAL_ERROR
        "tessera_add_runtime_dispatch: unknown family '${family}'. The families are: "
        "${TESSERA_DISPATCH_FAMILIES}.")
    endif()
  endforeach()

  if(NOT CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    message(FATAL_ERROR
      "tessera_add_runtime_dispatch: the arch list is for x86-64, and this build targets "
      "${CMAKE_SYSTEM_PROCESSOR}. Build with the flags of your target CPU instead.")
  endif()
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "^(GNU|Clang)$")
    message(FATAL_ERROR
      "tessera_add_runtime_dispatch: needs GCC or clang, got ${CMAKE_CXX_COMPILER_ID}.")
  endif()
  foreach(tool IN ITEMS CMAKE_NM CMAKE_OBJCOPY CMAKE_READELF)
    if(NOT ${tool} OR NOT EXISTS "${${tool}}")
      message(FATAL_ERROR
        "tessera_add_runtime_dispatch: ${tool} is not set, and it is needed to keep the arch "
        "objects' inline functions apart. Install binutils or set ${tool}.")
    endif()
  endforeach()

  get_target_property(target_type "${target}" TYPE)
  set(unit_dir "${CMAKE_CURRENT_BINARY_DIR}/${target}_tessera_dispatch")
  foreach(arch IN LISTS TESSERA_DISPATCH_ARCHS)
    set(sources "")
    foreach(family IN LISTS families)
      string(TOUPPER "${family}" TESSERA_DISPATCH_FAMILY_MACRO)
      set(TESSERA_DISPATCH_FAMILY "${family}")
      set(TESSERA_DISPATCH_ARCH_NAME "${arch}")
      set(TESSERA_DISPATCH_ARCH_TYPE "${_tessera_dispatch_type_${arch}}")
      set(unit "${unit_dir}/${family}_${arch}.cpp")
      configure_file("${_TESSERA_DISPATCH_MODULE_DIR}/tesseraDispatchUnit.cpp.in" "${unit}" @ONLY)
      list(APPEND sources "${unit}")
    endforeach()

    set(library "${target}_tessera_${arch}")
    add_library(${library} STATIC ${sources})
    target_link_libraries(${library} PRIVATE tessera::tessera)
    # The consumer's own definitions and options (for example -fno-exceptions or
    # TESSERA_USE_OPENMP=0) must hold in the arch units too, or tessera's configuration macros
    # would differ between the units of one program.
    target_compile_definitions(${library} PRIVATE $<TARGET_PROPERTY:${target},COMPILE_DEFINITIONS>)
    target_compile_options(${library} PRIVATE
      $<TARGET_PROPERTY:${target},COMPILE_OPTIONS> ${TESSERA_DISPATCH_FLAGS_${arch}})
    # Link-time optimisation would hand the linker compiler IR, which the renaming step cannot
    # read and which would be compiled again without the arch flags.
    set_target_properties(${library} PROPERTIES INTERPROCEDURAL_OPTIMIZATION OFF)
    if(target_type MATCHES "^(SHARED_LIBRARY|MODULE_LIBRARY)$")
      set_target_properties(${library} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    endif()
    add_custom_command(TARGET ${library} POST_BUILD
      COMMAND "${CMAKE_COMMAND}"
        "-DARCHIVE=$<TARGET_FILE:${library}>"
        "-DARCH=${arch}"
        "-DNM=${CMAKE_NM}"
        "-DOBJCOPY=${CMAKE_OBJCOPY}"
        "-DREADELF=${CMAKE_READELF}"
        -P "${_TESSERA_DISPATCH_MODULE_DIR}/tesseraDispatchIsolate.cmake"
      COMMENT "Renaming the shared inline functions of the ${arch} kernels of ${target}"
      VERBATIM)
    target_link_libraries(${target} PRIVATE ${library})
  endforeach()
  target_link_libraries(${target} PRIVATE tessera::tessera)
endfunction()
