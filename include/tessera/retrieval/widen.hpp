// Loads of float data as double batches, and double-to-float stores.
//
// The pooling kernels accumulate in double. A batch<double, A> has half as
// many lanes as batch<float, A>, so each load reads that many floats and
// converts them exactly. xsimd 8.1 has no portable widening load, so the x86
// archs use their conversion instructions and other archs a scalar loop.
#pragma once

#include "../core/config.hpp"
#include "../core/simd.hpp"

#include <cstddef>
#include <type_traits>

namespace tessera::retrieval::kernels {

// Loads batch<double, A>::size floats from p (no alignment needed) as doubles.
template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<double, A> load_widened(const float* p)
{
    using double_batch = xsimd::batch<double, A>;
#if defined(__SSE2__) || defined(_M_X64)
    if constexpr (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>) {
        return double_batch(_mm512_cvtps_pd(_mm256_loadu_ps(p)));
    } else if constexpr (XSIMD_WITH_AVX && std::is_base_of_v<xsimd::avx, A>) {
        return double_batch(_mm256_cvtps_pd(_mm_loadu_ps(p)));
    } else if constexpr (std::is_base_of_v<xsimd::sse2, A>) {
        const __m128i low_pair = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
        return double_batch(_mm_cvtps_pd(_mm_castsi128_ps(low_pair)));
    }
#endif
    alignas(A::alignment()) double values[double_batch::size];
    for (std::size_t i = 0; i < double_batch::size; ++i) {
        values[i] = static_cast<double>(p[i]);
    }
    return double_batch::load_aligned(values);
}

// Rounds the lanes of x to float and stores them at p (no alignment needed).
template <class A>
TESSERA_ALWAYS_INLINE void store_narrowed(float* p, const xsimd::batch<double, A>& x)
{
#if defined(__SSE2__) || defined(_M_X64)
    if constexpr (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>) {
        _mm256_storeu_ps(p, _mm512_cvtpd_ps(x));
        return;
    } else if constexpr (XSIMD_WITH_AVX && std::is_base_of_v<xsimd::avx, A>) {
        _mm_storeu_ps(p, _mm256_cvtpd_ps(x));
        return;
    } else if constexpr (std::is_base_of_v<xsimd::sse2, A>) {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_castps_si128(_mm_cvtpd_ps(x)));
        return;
    }
#endif
    using double_batch = xsimd::batch<double, A>;
    alignas(A::alignment()) double values[double_batch::size];
    x.store_aligned(values);
    for (std::size_t i = 0; i < double_batch::size; ++i) {
        p[i] = static_cast<float>(values[i]);
    }
}

} // namespace tessera::retrieval::kernels
