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
#include "../core/halving_sum.hpp"
#include "../core/simd.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace tessera::retrieval::kernels {

using simd::halving_sum;
using simd::halving_sums;

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

// Returns the dot products of a document row with the N query rows of one
// transposed group (N = batch<float, A>::size): queries[c * N + l] is
// element c of query l, and lane l of the result is query l · document with
// dot_block's bits. Lane l of acc[r] is lane r of dot_block's accumulator
// for query l, so adding acc[r + N/2] to acc[r], then acc[r + N/4] and so
// on is halving_sum for all N queries at once. The tail uses std::fma, as
// dot_block does, because xsimd::fma is not fused in every build.
template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> transposed_dots(const float* queries, const float* document,
                                                             std::size_t dim)
{
    using float_batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = float_batch::size;

    float_batch acc[lanes];
    for (auto& sum : acc) {
        sum = float_batch(0.0f);
    }
    std::size_t c = 0;
    for (; c + lanes <= dim; c += lanes) {
        for (std::size_t r = 0; r < lanes; ++r) {
            const float_batch query = float_batch::load_aligned(queries + (c + r) * lanes);
            acc[r] = xsimd::fma(query, float_batch(document[c + r]), acc[r]);
        }
    }

    for (std::size_t width = lanes / 2; width >= 1; width /= 2) {
        for (std::size_t r = 0; r < width; ++r) {
            acc[r] += acc[r + width];
        }
    }
    if (c == dim) {
        return acc[0];
    }
    alignas(A::alignment()) float dots[lanes];
    acc[0].store_aligned(dots);
    for (; c < dim; ++c) {
        for (std::size_t l = 0; l < lanes; ++l) {
            dots[l] = std::fma(queries[c * lanes + l], document[c], dots[l]);
        }
    }
    return float_batch::load_aligned(dots);
}

// Asks the cache to load the dim floats at row into L1, one request per
// 64-byte line. A prefetch never faults, so row may be any address.
TESSERA_ALWAYS_INLINE void prefetch_row(const float* row, std::size_t dim)
{
#if defined(__GNUC__) || defined(__clang__)
    const auto address = reinterpret_cast<std::uintptr_t>(row);
    for (std::size_t offset = 0; offset < dim * sizeof(float); offset += 64) {
        __builtin_prefetch(reinterpret_cast<const void*>(address + offset), 0, 3);
    }
#else
    (void)row;
    (void)dim;
#endif
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
