// The one place that spells xsimd names which changed between versions.
//
// tessera supports xsimd 8.1 (Debian 12) through 13.x and later. Code
// elsewhere in the library calls the wrappers below instead of the
// version-specific names:
//   8.1                                  9 and later
//   xsimd::hadd(x)                       xsimd::reduce_add(x)
//   xsimd::bitwise_cast<batch<T, A>>(x)  xsimd::bitwise_cast<T>(x)
//   available_architectures().avx2       available_architectures().has(avx2{})
#pragma once

#include "config.hpp"

#include <xsimd/xsimd.hpp>

#if defined(__SSE2__) || defined(_M_X64)
#  include <immintrin.h>
#endif

#include <cstdint>
#include <type_traits>

#if !defined(XSIMD_VERSION_MAJOR)
#  error "tessera needs xsimd 8.1 or later: XSIMD_VERSION_MAJOR is not defined"
#elif XSIMD_VERSION_MAJOR < 8 || (XSIMD_VERSION_MAJOR == 8 && XSIMD_VERSION_MINOR < 1)
#  error "tessera needs xsimd 8.1 or later"
#endif

#define TESSERA_XSIMD_LEGACY (XSIMD_VERSION_MAJOR < 9)

namespace tessera::simd {

template <class T, class A>
using batch = xsimd::batch<T, A>;

// Returns the sum of all lanes.
template <class T, class A>
TESSERA_ALWAYS_INLINE T reduce_add(const xsimd::batch<T, A>& x)
{
#if TESSERA_XSIMD_LEGACY
    return xsimd::hadd(x);
#else
    return xsimd::reduce_add(x);
#endif
}

// Reinterprets the bits of x as a batch of To with the same arch.
template <class To, class From, class A>
TESSERA_ALWAYS_INLINE xsimd::batch<To, A> bitwise_cast(const xsimd::batch<From, A>& x)
{
#if TESSERA_XSIMD_LEGACY
    return xsimd::bitwise_cast<xsimd::batch<To, A>>(x);
#else
    return xsimd::bitwise_cast<To>(x);
#endif
}

// Returns x < low ? low : (x > high ? high : x) lane by lane, so a NaN x
// and a −0 x equal to a +0 bound pass through unchanged. On x86 this is
// one MAXPS and one MINPS with the bound as the first operand: they
// return the second operand when either is NaN or both are equal.
template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> clamp(const xsimd::batch<float, A>& x, const xsimd::batch<float, A>& low,
                                                   const xsimd::batch<float, A>& high)
{
#if defined(__SSE2__) || defined(_M_X64)
    if constexpr (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>) {
        return _mm512_min_ps(high, _mm512_max_ps(low, x));
    } else if constexpr (XSIMD_WITH_AVX && std::is_base_of_v<xsimd::avx, A>) {
        return _mm256_min_ps(high, _mm256_max_ps(low, x));
    } else if constexpr (std::is_base_of_v<xsimd::sse2, A>) {
        return _mm_min_ps(high, _mm_max_ps(low, x));
    }
#endif
    return xsimd::select(x < low, low, xsimd::select(x > high, high, x));
}

// Returns true when the running CPU (and OS) can execute instructions of
// arch A. Whether the compiler enabled A is a separate, compile-time
// question: A::supported().
template <class A>
inline bool cpu_supports()
{
    const auto available = xsimd::available_architectures();
#if TESSERA_XSIMD_LEGACY
    // xsimd 8.1 exposes one bit field per arch and no generic query.
    if constexpr (std::is_same_v<A, xsimd::sse2>) return available.sse2;
    else if constexpr (std::is_same_v<A, xsimd::sse3>) return available.sse3;
    else if constexpr (std::is_same_v<A, xsimd::ssse3>) return available.ssse3;
    else if constexpr (std::is_same_v<A, xsimd::sse4_1>) return available.sse4_1;
    else if constexpr (std::is_same_v<A, xsimd::sse4_2>) return available.sse4_2;
    else if constexpr (std::is_same_v<A, xsimd::avx>) return available.avx;
    else if constexpr (std::is_same_v<A, xsimd::avx2>) return available.avx2;
    else if constexpr (std::is_same_v<A, xsimd::fma3<xsimd::avx2>>) return available.fma3_avx2;
    else if constexpr (std::is_same_v<A, xsimd::avx512f>) return available.avx512f;
    else if constexpr (std::is_same_v<A, xsimd::avx512cd>) return available.avx512cd;
    else if constexpr (std::is_same_v<A, xsimd::avx512dq>) return available.avx512dq;
    else if constexpr (std::is_same_v<A, xsimd::avx512bw>) return available.avx512bw;
    else return A::version() <= available.best;
#else
    return available.has(A{});
#endif
}

} // namespace tessera::simd
