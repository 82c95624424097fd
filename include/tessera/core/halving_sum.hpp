// Sums of the lanes of float batches by a fixed halving tree, one batch at
// a time or many at once with a transposing reduction. Kernels that must
// give the same bits whichever block computes a sum use these.
#pragma once

#include "config.hpp"
#include "simd.hpp"

#include <cstddef>
#include <type_traits>

namespace tessera::simd {

// Adds the lanes of x by halving: lane i + lane i + N/2, then i + N/4,
// down to one value. The tree is fixed, so the sum of a batch does not
// depend on where or how often it is computed.
template <class A>
TESSERA_ALWAYS_INLINE float halving_sum(const xsimd::batch<float, A>& x)
{
#if defined(__SSE2__) || defined(_M_X64)
    if constexpr (std::is_base_of_v<xsimd::sse2, A> || (XSIMD_WITH_AVX && std::is_base_of_v<xsimd::avx, A>) ||
                  (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>)) {
        __m128 quarter;
        if constexpr (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>) {
            const __m512 v = x;
            const __m256 low = _mm512_castps512_ps256(v);
            const __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
            const __m256 half = _mm256_add_ps(low, high);
            quarter = _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
        } else if constexpr (XSIMD_WITH_AVX && std::is_base_of_v<xsimd::avx, A>) {
            const __m256 v = x;
            quarter = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        } else {
            quarter = x;
        }
        const __m128 pair = _mm_add_ps(quarter, _mm_movehl_ps(quarter, quarter));
        return _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)));
    }
#endif
    constexpr std::size_t lanes = xsimd::batch<float, A>::size;
    alignas(A::alignment()) float values[lanes];
    x.store_aligned(values);
    for (std::size_t width = lanes / 2; width >= 1; width /= 2) {
        for (std::size_t i = 0; i < width; ++i) {
            values[i] += values[i + width];
        }
    }
    return values[0];
}

// sums[k] = halving_sum(x[k]) for k < Count, with the same additions in the
// same tree, but for whole groups of batches at once on AVX-512 (16 batches)
// and AVX (8): each level adds the two halves of two batches and packs the
// results into one, so a group costs about 3 instructions per batch
// instead of 8. The last partial group is padded with zero batches.
template <class A, std::size_t Count>
TESSERA_ALWAYS_INLINE void halving_sums(const xsimd::batch<float, A>* x, float* sums)
{
    std::size_t k = 0;
#if defined(__SSE2__) || defined(_M_X64)
    if constexpr (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>) {
        // Lane L of the packed result is the sum of batch group[L] of the group.
        constexpr int order[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
        for (; k < Count; k += 16) {
            // Pairs whose batches are all padding are skipped at each level.
            const std::size_t live = Count - k < 16 ? Count - k : 16;
            __m512 level[16];
            for (std::size_t i = 0; i < 16; ++i) {
                level[i] = i < live ? __m512(x[k + i]) : _mm512_setzero_ps();
            }
            for (std::size_t i = 0; i < (live + 1) / 2; ++i) {  // lane j + lane j + 8
                level[i] = _mm512_add_ps(_mm512_shuffle_f32x4(level[2 * i], level[2 * i + 1], 0x44),
                                         _mm512_shuffle_f32x4(level[2 * i], level[2 * i + 1], 0xEE));
            }
            for (std::size_t i = (live + 1) / 2; i < 8; ++i) {
                level[i] = _mm512_setzero_ps();
            }
            for (std::size_t i = 0; i < (live + 3) / 4; ++i) {  // lane j + lane j + 4
                level[i] = _mm512_add_ps(_mm512_shuffle_f32x4(level[2 * i], level[2 * i + 1], 0x88),
                                         _mm512_shuffle_f32x4(level[2 * i], level[2 * i + 1], 0xDD));
            }
            for (std::size_t i = (live + 3) / 4; i < 4; ++i) {
                level[i] = _mm512_setzero_ps();
            }
            for (std::size_t i = 0; i < 2; ++i) {  // lane j + lane j + 2
                const __m512d low = _mm512_castps_pd(level[2 * i]);
                const __m512d high = _mm512_castps_pd(level[2 * i + 1]);
                level[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(low, high)),
                                         _mm512_castpd_ps(_mm512_unpackhi_pd(low, high)));
            }
            const __m512 packed = _mm512_add_ps(_mm512_shuffle_ps(level[0], level[1], 0x88),  // lane j + lane j + 1
                                                _mm512_shuffle_ps(level[0], level[1], 0xDD));
            alignas(64) float lanes[16];
            _mm512_store_ps(lanes, packed);
            for (std::size_t lane = 0; lane < 16; ++lane) {
                const std::size_t index = k + static_cast<std::size_t>(order[lane]);
                if (index < Count) {
                    sums[index] = lanes[lane];
                }
            }
        }
        return;
    } else if constexpr (XSIMD_WITH_AVX && std::is_base_of_v<xsimd::avx, A>) {
        constexpr int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
        for (; k < Count; k += 8) {
            __m256 level[8];
            for (std::size_t i = 0; i < 8; ++i) {
                level[i] = k + i < Count ? __m256(x[k + i]) : _mm256_setzero_ps();
            }
            for (std::size_t i = 0; i < 4; ++i) {  // lane j + lane j + 4
                level[i] = _mm256_add_ps(_mm256_permute2f128_ps(level[2 * i], level[2 * i + 1], 0x20),
                                         _mm256_permute2f128_ps(level[2 * i], level[2 * i + 1], 0x31));
            }
            for (std::size_t i = 0; i < 2; ++i) {  // lane j + lane j + 2
                const __m256d low = _mm256_castps_pd(level[2 * i]);
                const __m256d high = _mm256_castps_pd(level[2 * i + 1]);
                level[i] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(low, high)),
                                         _mm256_castpd_ps(_mm256_unpackhi_pd(low, high)));
            }
            const __m256 packed = _mm256_add_ps(_mm256_shuffle_ps(level[0], level[1], 0x88),  // lane j + lane j + 1
                                                _mm256_shuffle_ps(level[0], level[1], 0xDD));
            alignas(32) float lanes[8];
            _mm256_store_ps(lanes, packed);
            for (std::size_t lane = 0; lane < 8; ++lane) {
                const std::size_t index = k + static_cast<std::size_t>(order[lane]);
                if (index < Count) {
                    sums[index] = lanes[lane];
                }
            }
        }
        return;
    }
#endif
    for (; k < Count; ++k) {
        sums[k] = halving_sum<A>(x[k]);
    }
}

} // namespace tessera::simd
