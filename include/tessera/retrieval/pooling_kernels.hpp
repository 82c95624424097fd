// SIMD kernels of segment pooling, one segment at a time.
//
// A segment is a list of row pointers with an optional double factor per
// row (a weight, an inverse norm or both). The kernels accumulate in double
// into a caller-provided buffer of `dim` doubles and then finish the pooled
// vector from it. They trust their caller: no argument checks, no
// allocation, no threads (pooling.hpp does those).
//
// Every output element is accumulated over the rows in row order, exactly
// as the reference does. Each term is exact in double: a float, the
// product of a float and a float weight, or the product of a float and a
// factor truncated to 29 bits (truncate_factor). Squared norms are split
// into a fixed set of partial sums (squared_norm). So every result is
// bit-identical to reference.hpp on every arch, whether or not the
// compiler fuses multiplies and adds.
#pragma once

#include "../core/config.hpp"
#include "../core/simd.hpp"
#include "widen.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

namespace tessera::retrieval::kernels {

// The rows of one segment: row r starts at rows[r], and its values are
// multiplied by factors[r] unless factors is null.
struct segment_rows {
    const float* const* rows;
    const double* factors;
    std::size_t count;
};

// Number of partial sums of a squared norm (see squared_norm).
inline constexpr std::size_t norm_partials = 16;

// 1 / ‖x‖ from a squared norm: 0 for a zero vector, so that it normalises
// to zero; NaN stays NaN, and an infinite norm gives 0.
inline double inverse_norm(double squared)
{
    return squared == 0.0 ? 0.0 : 1.0 / std::sqrt(squared);
}

// Rounds a row factor toward zero to 29 significant bits, so that its
// product with any float (24 bits) is exact in double. Products then give
// the same sums with and without FMA contraction, on every arch and in the
// reference. The relative change is below 2^-28.
inline double truncate_factor(double factor)
{
    std::uint64_t bits;
    std::memcpy(&bits, &factor, sizeof bits);
    bits &= ~((std::uint64_t{1} << 24) - 1);
    std::memcpy(&factor, &bits, sizeof bits);
    return factor;
}

// acc[c] = Σ_r factors[r] · rows[r][c] for c < dim, summed in row order.
// Rows are read one after another, each from start to end: that single
// sequential stream is what the hardware prefetcher follows best (reading
// a block of columns from every row in turn measured about 40% slower).
// The running sums stay in `acc`, which is small enough for the L1 cache.
template <class A>
struct sum_rows {
    void operator()(const segment_rows& segment, std::size_t dim, double* acc) const
    {
        using double_batch = xsimd::batch<double, A>;
        constexpr std::size_t lanes = double_batch::size;

        std::fill(acc, acc + dim, 0.0);
        for (std::size_t r = 0; r < segment.count; ++r) {
            const float* row = segment.rows[r];
            const bool scaled = segment.factors != nullptr;
            const double factor = scaled ? segment.factors[r] : 1.0;
            const double_batch factor_batch(factor);
            std::size_t c = 0;
            for (; c + 2 * lanes <= dim; c += 2 * lanes) {
                double_batch low = load_widened<A>(row + c);
                double_batch high = load_widened<A>(row + c + lanes);
                if (scaled) {
                    low *= factor_batch;
                    high *= factor_batch;
                }
                (double_batch::load_unaligned(acc + c) + low).store_unaligned(acc + c);
                (double_batch::load_unaligned(acc + c + lanes) + high).store_unaligned(acc + c + lanes);
            }
            for (; c < dim; ++c) {
                const double value = static_cast<double>(row[c]);
                acc[c] += scaled ? value * factor : value;
            }
        }
    }
};

// acc[c] = max_r factors[r] · rows[r][c], or NaN when any of those values
// is NaN: a NaN replaces the running maximum and no number replaces a NaN.
// Ties keep the earlier row, so of −0 and +0 the first one seen is
// returned. Rows are read sequentially, as in sum_rows.
template <class A>
struct max_rows {
    void operator()(const segment_rows& segment, std::size_t dim, double* acc) const
    {
        using double_batch = xsimd::batch<double, A>;
        constexpr std::size_t lanes = double_batch::size;

        std::fill(acc, acc + dim, -std::numeric_limits<double>::infinity());
        auto update = [](double_batch value, double* destination) {
            const double_batch maximum = double_batch::load_unaligned(destination);
            xsimd::select((value > maximum) | xsimd::isnan(value), value, maximum).store_unaligned(destination);
        };
        for (std::size_t r = 0; r < segment.count; ++r) {
            const float* row = segment.rows[r];
            const bool scaled = segment.factors != nullptr;
            const double factor = scaled ? segment.factors[r] : 1.0;
            const double_batch factor_batch(factor);
            std::size_t c = 0;
            for (; c + 2 * lanes <= dim; c += 2 * lanes) {
                double_batch low = load_widened<A>(row + c);
                double_batch high = load_widened<A>(row + c + lanes);
                if (scaled) {
                    low *= factor_batch;
                    high *= factor_batch;
                }
                update(low, acc + c);
                update(high, acc + c + lanes);
            }
            for (; c < dim; ++c) {
                double value = static_cast<double>(row[c]);
                if (scaled) {
                    value *= factor;
                }
                if (value > acc[c] || std::isnan(value)) {
                    acc[c] = value;
                }
            }
        }
    }
};

// Σ_c x[c]² in double, split into norm_partials partial sums: partial i adds
// the squares of x[c] with c ≡ i (mod 16) in index order, and the partials
// are then added from 0 to 15. The square of a float is exact in double, so
// the result is the same on every arch, with or without FMA contraction,
// and equals reference::squared_norm.
template <class A>
double squared_norm(const float* x, std::size_t dim)
{
    using double_batch = xsimd::batch<double, A>;
    constexpr std::size_t lanes = double_batch::size;
    static_assert(norm_partials % lanes == 0, "the partial sums must fill whole batches");
    constexpr std::size_t batches = norm_partials / lanes;

    double_batch sums[batches];
    for (auto& sum : sums) {
        sum = double_batch(0.0);
    }
    std::size_t c = 0;
    for (; c + norm_partials <= dim; c += norm_partials) {
        for (std::size_t k = 0; k < batches; ++k) {
            const double_batch value = load_widened<A>(x + c + k * lanes);
            sums[k] += value * value;
        }
    }

    alignas(A::alignment()) double partials[norm_partials];
    for (std::size_t k = 0; k < batches; ++k) {
        sums[k].store_aligned(partials + k * lanes);
    }
    for (std::size_t i = 0; c < dim; ++c, ++i) {
        const double value = static_cast<double>(x[c]);
        partials[i] += value * value;
    }
    double total = 0.0;
    for (double partial : partials) {
        total += partial;
    }
    return total;
}

// out[c] = acc[c] / divisor rounded to float. When `normalize` is set, out
// is then rescaled: out[c] = acc[c] / divisor · (1 / ‖out‖), with the norm
// taken of the rounded values so that it is exact up to its final sum.
// A divisor of 1 divides exactly, so sums pass unchanged.
template <class A>
void finish_pooled(double* acc, std::size_t dim, double divisor, bool normalize, float* out)
{
    using double_batch = xsimd::batch<double, A>;
    constexpr std::size_t lanes = double_batch::size;

    const double_batch divisor_batch(divisor);
    std::size_t c = 0;
    for (; c + lanes <= dim; c += lanes) {
        const double_batch value = double_batch::load_unaligned(acc + c) / divisor_batch;
        value.store_unaligned(acc + c);
        store_narrowed<A>(out + c, value);
    }
    for (; c < dim; ++c) {
        acc[c] /= divisor;
        out[c] = static_cast<float>(acc[c]);
    }
    if (!normalize) {
        return;
    }

    const double scale = inverse_norm(squared_norm<A>(out, dim));
    const double_batch scale_batch(scale);
    c = 0;
    for (; c + lanes <= dim; c += lanes) {
        store_narrowed<A>(out + c, double_batch::load_unaligned(acc + c) * scale_batch);
    }
    for (; c < dim; ++c) {
        out[c] = static_cast<float>(acc[c] * scale);
    }
}

} // namespace tessera::retrieval::kernels
