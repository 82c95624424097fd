// SIMD micro-kernels of the retrieval scores: blocks of dot products.
//
// Every dot product q · d of two rows of length dim is computed the same
// way, whichever kernel or block shape computes it:
//   1. acc = fma(q[c..c+N), d[c..c+N), acc) over the whole batches of
//      N = batch<float, A>::size lanes, in order of c;
//   2. the lanes of acc are added by halving: lane i + lane i + N/2, then
//      i + N/4, down to one value (halving_sum, or halving_sums for many
//      accumulators with the same additions);
//   3. the remaining dim mod N elements are added with std::fma in order.
// So a score does not depend on where its pair sits in a block, on the
// block shape or on the thread that computes it, and score(), search(),
// rerank_passages() and the cosine norms agree bit for bit on one arch.
// Different archs have different N and may differ in the last bits.
#pragma once

#include "../core/config.hpp"
#include "../core/simd.hpp"

#include <cmath>
#include <cstddef>
#include <type_traits>

namespace tessera::retrieval::kernels {

// Adds the lanes of x by halving (see the file comment).
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

// Rows per register block: queries × documents accumulators plus one batch
// per query row and one document batch must fit in the vector registers
// (32 with AVX-512, 16 otherwise).
template <class A>
struct block_shape {
#if XSIMD_WITH_AVX512F
    static constexpr bool wide = std::is_base_of_v<xsimd::avx512f, A>;
#else
    static constexpr bool wide = false;
#endif
    static constexpr std::size_t queries = wide ? 4 : 2;
    static constexpr std::size_t documents = wide ? 6 : 4;
};

// out[i * Docs + j] = q[i] · d[j] for i < Queries, j < Docs, each computed
// as the file comment describes.
template <class A, std::size_t Queries, std::size_t Docs>
TESSERA_ALWAYS_INLINE void dot_block(const float* const* q, const float* const* d, std::size_t dim, float* out)
{
    using float_batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = float_batch::size;

    // acc[i * Docs + j] accumulates q[i] · d[j].
    float_batch acc[Queries * Docs];
    for (auto& sum : acc) {
        sum = float_batch(0.0f);
    }

    std::size_t c = 0;
    for (; c + lanes <= dim; c += lanes) {
        float_batch query[Queries];
        for (std::size_t i = 0; i < Queries; ++i) {
            query[i] = float_batch::load_unaligned(q[i] + c);
        }
        for (std::size_t j = 0; j < Docs; ++j) {
            const float_batch document = float_batch::load_unaligned(d[j] + c);
            for (std::size_t i = 0; i < Queries; ++i) {
                acc[i * Docs + j] = xsimd::fma(query[i], document, acc[i * Docs + j]);
            }
        }
    }

    halving_sums<A, Queries * Docs>(acc, out);
    if (c < dim) {
        for (std::size_t i = 0; i < Queries; ++i) {
            for (std::size_t j = 0; j < Docs; ++j) {
                float sum = out[i * Docs + j];
                for (std::size_t t = c; t < dim; ++t) {
                    sum = std::fma(q[i][t], d[j][t], sum);
                }
                out[i * Docs + j] = sum;
            }
        }
    }
}

// x · x, computed as dot_block computes any pair.
template <class A>
float self_dot(const float* x, std::size_t dim)
{
    float out;
    dot_block<A, 1, 1>(&x, &x, dim, &out);
    return out;
}

// Cosine from a dot product and the two norms: 0 when either norm is 0,
// so a zero vector never scores NaN.
TESSERA_ALWAYS_INLINE float cosine_from(float dot, float query_norm, float document_norm)
{
    if (query_norm == 0.0f || document_norm == 0.0f) {
        return 0.0f;
    }
    return dot / (query_norm * document_norm);
}

// Calls dot_block with Queries = `queries` (1 .. Max) chosen at run time,
// for the last query rows of a matrix.
template <class A, std::size_t Max, std::size_t Docs>
TESSERA_ALWAYS_INLINE void dot_block_rows(std::size_t queries, const float* const* q, const float* const* d,
                                          std::size_t dim, float* out)
{
    if constexpr (Max >= 1) {
        if (queries == Max) {
            dot_block<A, Max, Docs>(q, d, dim, out);
        } else {
            dot_block_rows<A, Max - 1, Docs>(queries, q, d, dim, out);
        }
    }
}

} // namespace tessera::retrieval::kernels
