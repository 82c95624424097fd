// SIMD building blocks of the attention kernels: a vector exp and the two
// register-blocked micro-kernels of a tile.
//
// A tile contains up to tile_shape::rows query rows, one per SIMD lane:
// vector v of a tile line covers rows v·N … v·N + N−1 for N lanes. Scores
// are stored transposed, one line per key and one lane per query (Sᵀ), and
// the output accumulator is transposed too, one line per output column
// (Oᵀ). Every reduction of the softmax then runs across lines, lane by
// lane, and each query row gets exactly the same operations whichever lane
// or tile it sits in:
//   Sᵀ[j][i] = Σ_c K[j][c]·Qᵀ[c][i]   one fma per c, in order of c
//   Oᵀ[d][i] = α[i]·Oᵀ[d][i] + Σ_j V[j][d]·Pᵀ[j][i]   one fma per j, in order of j
// so a row's result depends only on the row, never on the rows it shares a
// tile with, the tile count or the thread that runs it.
#pragma once

#include "../core/config.hpp"
#include "../core/simd.hpp"

#include <cstddef>
#include <cstdint>
#include <limits>

namespace tessera::attention::kernels {

// exp<A, true> returns 0 below this argument.
inline constexpr float flush_below = -87.33f;

// Register blocking of an arch: `key_block` keys (or output columns) by
// two vectors of queries. 8×2 accumulators fill half of AVX-512's 32
// registers; 6×2 leave room for the operands in the 16 of AVX and SSE.
template <class A>
struct tile_shape {
    static constexpr std::size_t lanes = xsimd::batch<float, A>::size;
    static constexpr std::size_t vectors = 2;
    static constexpr std::size_t rows = lanes * vectors;  // query rows per tile
    static constexpr std::size_t key_block = lanes >= 16 ? 8 : 6;
    // Keys per tile, the multiple of key_block nearest 64 (66 or 64): Sᵀ
    // and Pᵀ of a tile take keys·rows floats (8 KiB on AVX-512), and the
    // tile's key and value rows stay in L1 or L2.
    static constexpr std::size_t keys = (64 + key_block / 2) / key_block * key_block;
    // Keys per split, 8 tiles. The keys are cut into splits whose softmax
    // states are merged in order (attention.hpp), whichever thread computes
    // them; decode spreads the splits over threads.
    static constexpr std::size_t split = 8 * keys;
};

// e^x for x ≤ 88 (and NaN), within about 2 units in the last place for
// x ≥ −87.33. With Flush, results below 2^-126 (x < −87.33, −∞ included)
// are exactly 0, which a masked key relies on; without it the caller
// guarantees x ≥ −87.33. x = n·ln 2 + r with n = round(x·log2 e) and
// |r| ≤ ln 2 / 2; e^r is the degree-7 polynomial of Cephes' expf (S. L.
// Moshier), and 2^n is built in the exponent bits: adding 1.5·2^23 + 127 to
// x·log2 e rounds it to an integer n and leaves n + 127 in the low bits.
template <class A, bool Flush = true>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> exp(const xsimd::batch<float, A>& x)
{
    using batch = xsimd::batch<float, A>;

    const batch shifter(12583039.0f);  // 1.5·2^23 + 127
    const batch rounded = xsimd::fma(x, batch(1.44269504088896341f), shifter);
    const batch n = rounded - shifter;

    // r = x − n·ln 2, with ln 2 split into a part exact in n·ln2_high and a correction.
    batch r = xsimd::fma(n, batch(-0.693359375f), x);
    r = xsimd::fma(n, batch(2.12194440e-4f), r);

    batch p(1.9875691500e-4f);
    p = xsimd::fma(p, r, batch(1.3981999507e-3f));
    p = xsimd::fma(p, r, batch(8.3334519073e-3f));
    p = xsimd::fma(p, r, batch(4.1665795894e-2f));
    p = xsimd::fma(p, r, batch(1.6666665459e-1f));
    p = xsimd::fma(p, r, batch(5.0000001201e-1f));
    p = xsimd::fma(p, r * r, r + batch(1.0f));

    const batch scale = simd::bitwise_cast<float>(simd::bitwise_cast<std::int32_t>(rounded) << 23);
    if constexpr (Flush) {
        return xsimd::select(x < batch(flush_below), batch(0.0f), p * scale);
    } else {
        return p * scale;
    }
}

// Running lane-wise maximum and minimum of the scores of a tile, over its
// two query vectors.
template <class A>
struct score_range {
    xsimd::batch<float, A> max[2];
    xsimd::batch<float, A> min[2];

    void reset()
    {
        for (std::size_t v = 0; v < 2; ++v) {
            max[v] = xsimd::batch<float, A>(-std::numeric_limits<float>::infinity());
            min[v] = xsimd::batch<float, A>(std::numeric_limits<float>::infinity());
        }
    }
};

// Sᵀ lines of KeyBlock keys: s[r·rows + i] = Σ_c keys[r][c]·qt[c·rows + i]
// for c < dim. qt is the tile's transposed queries, [dim × rows]. The first
// `valid` lines also update `range` (the others are padding keys).
template <class A, std::size_t KeyBlock>
TESSERA_ALWAYS_INLINE void score_block(const float* const* keys, const float* qt, std::size_t dim, float* s,
                                       std::size_t valid, score_range<A>& range)
{
    using batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = tile_shape<A>::lanes;
    constexpr std::size_t rows = tile_shape<A>::rows;

    batch acc[KeyBlock][2];
    for (std::size_t r = 0; r < KeyBlock; ++r) {
        acc[r][0] = batch(0.0f);
        acc[r][1] = batch(0.0f);
    }

    for (std::size_t c = 0; c < dim; ++c) {
        const batch q0 = batch::load_aligned(qt + c * rows);
        const batch q1 = batch::load_aligned(qt + c * rows + lanes);
        for (std::size_t r = 0; r < KeyBlock; ++r) {
            const batch k(keys[r][c]);
            acc[r][0] = xsimd::fma(k, q0, acc[r][0]);
            acc[r][1] = xsimd::fma(k, q1, acc[r][1]);
        }
    }

    for (std::size_t r = 0; r < KeyBlock; ++r) {
        acc[r][0].store_aligned(s + r * rows);
        acc[r][1].store_aligned(s + r * rows + lanes);
        if (r < valid) {
            range.max[0] = xsimd::max(range.max[0], acc[r][0]);
            range.max[1] = xsimd::max(range.max[1], acc[r][1]);
            range.min[0] = xsimd::min(range.min[0], acc[r][0]);
            range.min[1] = xsimd::min(range.min[1], acc[r][1]);
        }
    }
}

// Oᵀ lines d0 … d0 + Columns − 1: ot[d·rows + i] = alpha[i]·ot[d·rows + i]
// + Σ_j values[j][d]·pt[j·rows + i] for j < count. With SkipZero, a term
// whose probability is exactly 0 is left out, so that a masked key whose
// value is NaN or infinite cannot turn 0·v into NaN. The other terms get
// the same fma and the same bits.
template <class A, std::size_t Columns, bool SkipZero>
TESSERA_ALWAYS_INLINE void value_block(const float* const* values, std::size_t d0, const float* pt, std::size_t count,
                                       const float* alpha, float* ot)
{
    using batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = tile_shape<A>::lanes;
    constexpr std::size_t rows = tile_shape<A>::rows;

    const batch alpha0 = batch::load_aligned(alpha);
    const batch alpha1 = batch::load_aligned(alpha + lanes);
    batch acc[Columns][2];
    for (std::size_t r = 0; r < Columns; ++r) {
        acc[r][0] = batch::load_aligned(ot + (d0 + r) * rows) * alpha0;
        acc[r][1] = batch::load_aligned(ot + (d0 + r) * rows + lanes) * alpha1;
    }

    for (std::size_t j = 0; j < count; ++j) {
        const batch p0 = batch::load_aligned(pt + j * rows);
        const batch p1 = batch::load_aligned(pt + j * rows + lanes);
        const float* row = values[j] + d0;
        if constexpr (SkipZero) {
            const auto live0 = p0 != batch(0.0f);
            const auto live1 = p1 != batch(0.0f);
            for (std::size_t r = 0; r < Columns; ++r) {
                const batch v(row[r]);
                acc[r][0] = xsimd::select(live0, xsimd::fma(v, p0, acc[r][0]), acc[r][0]);
                acc[r][1] = xsimd::select(live1, xsimd::fma(v, p1, acc[r][1]), acc[r][1]);
            }
        } else {
            for (std::size_t r = 0; r < Columns; ++r) {
                const batch v(row[r]);
                acc[r][0] = xsimd::fma(v, p0, acc[r][0]);
                acc[r][1] = xsimd::fma(v, p1, acc[r][1]);
            }
        }
    }

    for (std::size_t r = 0; r < Columns; ++r) {
        acc[r][0].store_aligned(ot + (d0 + r) * rows);
        acc[r][1].store_aligned(ot + (d0 + r) * rows + lanes);
    }
}

// value_block for `remaining` (at most Columns) columns from d0.
template <class A, bool SkipZero, std::size_t Columns>
void value_tail(const float* const* values, std::size_t d0, std::size_t remaining, const float* pt, std::size_t count,
                const float* alpha, float* ot)
{
    if constexpr (Columns > 0) {
        if (remaining == Columns) {
            value_block<A, Columns, SkipZero>(values, d0, pt, count, alpha, ot);
        } else {
            value_tail<A, SkipZero, Columns - 1>(values, d0, remaining, pt, count, alpha, ot);
        }
    }
}

// value_block over all value_dim output columns: blocks of key_block
// columns, the last two narrowed to share the remainder, since a block of
// 1 or 2 columns has too few accumulators to keep the FMA units busy.
template <class A, bool SkipZero>
void value_columns(const float* const* values, std::size_t value_dim, const float* pt, std::size_t count,
                   const float* alpha, float* ot)
{
    constexpr std::size_t block = tile_shape<A>::key_block;
    std::size_t whole = value_dim / block;
    std::size_t rest = value_dim % block;
    if (rest != 0 && whole > 0) {
        --whole;
        rest += block;
    }
    std::size_t d = 0;
    for (std::size_t i = 0; i < whole; ++i, d += block) {
        value_block<A, block, SkipZero>(values, d, pt, count, alpha, ot);
    }
    if (rest > block) {
        const std::size_t first = (rest + 1) / 2;
        value_tail<A, SkipZero, block>(values, d, first, pt, count, alpha, ot);
        d += first;
        rest -= first;
    }
    value_tail<A, SkipZero, block>(values, d, rest, pt, count, alpha, ot);
}

} // namespace tessera::attention::kernels
