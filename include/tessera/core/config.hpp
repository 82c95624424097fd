// Library version and configuration macros.
//
// Each macro below can be defined by the user before any tessera header is
// included. The definition given here is used only when none was provided.
#pragma once

#define TESSERA_VERSION_MAJOR 0
#define TESSERA_VERSION_MINOR 1
#define TESSERA_VERSION_PATCH 0

// TESSERA_EXCEPTIONS is 1 when argument errors throw tessera::invalid_argument
// and 0 when they call the replaceable error handler instead (see error.hpp).
// It follows the compiler's exception setting unless the user defines it.
#ifndef TESSERA_EXCEPTIONS
#  if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#    define TESSERA_EXCEPTIONS 1
#  else
#    define TESSERA_EXCEPTIONS 0
#  endif
#endif

// TESSERA_USE_OPENMP is 1 when kernels may split work across OpenMP threads.
// It is on whenever the consumer compiles with OpenMP, and a user can define
// it to 0 to keep every kernel on the calling thread.
#ifndef TESSERA_USE_OPENMP
#  ifdef _OPENMP
#    define TESSERA_USE_OPENMP 1
#  else
#    define TESSERA_USE_OPENMP 0
#  endif
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define TESSERA_ALWAYS_INLINE inline __attribute__((always_inline))
#  define TESSERA_RESTRICT __restrict__
#elif defined(_MSC_VER)
#  define TESSERA_ALWAYS_INLINE __forceinline
#  define TESSERA_RESTRICT __restrict
#else
#  define TESSERA_ALWAYS_INLINE inline
#  define TESSERA_RESTRICT
#endif
