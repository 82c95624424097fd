// SIMD kernels of segment pooling, one segment at a time.
//
// A segment is a list of row pointers with an optional double factor per
// row (a weight, an inverse norm or both). The kernels accumulate in double
// in registers, a block of columns at a time, divide and write the float
// output (pooled_output). They trust their caller: no argument checks, no
// allocation, no threads (pooling.hpp does those).
//
// Every output element is accumulated over the rows in row order, exactly
// as the reference does, and divided with the reference's bits
// (divide_by). Each term is exact in double: a float, the
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
// multiplied by factors[r] unless factors is null. The kernels prefetch
// `prefetch` bytes ahead of what they read (see prefetch_ahead).
struct segment_rows {
    const float* const* rows;
    const double* factors;
    std::size_t count;
    std::size_t prefetch;
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

// Asks the cache for the `bytes` bytes that begin `far` bytes after p into
// L2, and for those prefetch_near bytes after p into L1. The rows of a
// segment, and the segments of a thread, are usually consecutive, so these
// addresses hold the rows that come next. They may lie past the end of
// the input: a prefetch never faults, and the address is formed as an
// integer, not as a pointer past its array.
inline constexpr std::size_t prefetch_near = 4096;
inline constexpr std::size_t cache_line = 64;

TESSERA_ALWAYS_INLINE void prefetch_ahead(const float* p, std::size_t bytes, std::size_t far)
{
#if defined(__GNUC__) || defined(__clang__)
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    for (std::size_t line = 0; line < bytes; line += cache_line) {
        __builtin_prefetch(reinterpret_cast<const void*>(address + far + line), 0, 2);
        __builtin_prefetch(reinterpret_cast<const void*>(address + prefetch_near + line), 0, 3);
    }
#else
    (void)p;
    (void)bytes;
    (void)far;
#endif
}

// Returns the L2 prefetch distance for rows of `dim` floats: 32 rows
// ahead, within [8 KiB, 128 KiB]. On a Xeon with AVX-512, 32 rows beat 21
// and 48 at dims 384 and 768, and a fixed 32 KiB lost 5% at dim 768.
inline std::size_t prefetch_distance(std::size_t dim)
{
    constexpr std::size_t rows_ahead = 32;
    constexpr std::size_t low = 8192;
    constexpr std::size_t high = 131072;
    return dim > high / (rows_ahead * sizeof(float)) ? high
                                                     : std::max(low, rows_ahead * dim * sizeof(float));
}

// Accumulator batches held in registers per column block. Sums use 8 on
// every arch; on AVX-512, 16 and 24 were slower and 4 no faster. Max
// blocks use 16 where the arch has 32 vector registers (AVX-512), else 8.
inline constexpr std::size_t sum_block_batches = 8;
template <class A>
inline constexpr std::size_t max_block_batches = sizeof(xsimd::batch<float, A>) >= 64 ? 16 : 8;

// Returns whether float(q) equals float(x) in every lane, for every
// double x within 16 ulps of q. Rounding a double to float keeps its top 24
// significant bits and rounds on the 29 bits below them. So the result
// can change only where those bits cross 2^28, the midpoint between two
// floats. Values outside the normal float range, including 0, Inf and
// NaN, are never called stable.
template <class A>
TESSERA_ALWAYS_INLINE bool float_rounding_is_stable(const xsimd::batch<double, A>& q)
{
    using int_batch = xsimd::batch<std::int64_t, A>;
    constexpr std::int64_t midpoint = std::int64_t{1} << 28;
    constexpr std::int64_t margin = 16;

    const int_batch bits = simd::bitwise_cast<std::int64_t>(q);
    const int_batch exponent = (bits >> 52) & int_batch(0x7FF);
    const int_batch dropped = bits & int_batch((std::int64_t{1} << 29) - 1);
    // 1023 − 126 and 1023 + 127: the binades of normal floats.
    const auto normal = (exponent >= int_batch(897)) & (exponent <= int_batch(1150));
    const auto far_from_midpoint = (dropped < int_batch(midpoint - margin)) | (dropped > int_batch(midpoint + margin));
    return xsimd::all(normal & far_from_midpoint);
}

// Division of pooled sums by a segment's divisor, with the bits of a
// double division once rounded to float. A vector division costs about
// 16 cycles per batch, so it is avoided where the result is the same:
// - a power-of-two divisor (1 for sums and max) is a multiplication by
//   its exact reciprocal r;
// - otherwise, when only the float result is needed, q = sum·r is within
//   2^-51 relative, so within 4 ulps, of the correctly rounded quotient.
//   Where float_rounding_is_stable(q) holds, both round to the same
//   float. Other batches (q near a midpoint, which short sums of floats
//   often are, or a value that is 0, tiny, huge or not finite) are
//   divided.
// With exact_double set, every quotient is the correctly rounded double.
template <class A>
class divide_by {
public:
    using double_batch = xsimd::batch<double, A>;

    divide_by(double divisor, bool exact_double)
        : divisor_(divisor), reciprocal_(1.0 / divisor)
    {
        int exponent = 0;
        const bool usable = std::isnormal(divisor) && std::isnormal(reciprocal_);
        exact_reciprocal_ = usable && std::frexp(divisor, &exponent) == 0.5;
        checked_reciprocal_ = usable && !exact_reciprocal_ && !exact_double;
    }

    TESSERA_ALWAYS_INLINE double_batch operator()(const double_batch& sum) const
    {
        if (exact_reciprocal_) {
            return sum * double_batch(reciprocal_);
        }
        if (checked_reciprocal_) {
            const double_batch product = sum * double_batch(reciprocal_);
            if (float_rounding_is_stable<A>(product)) {
                return product;
            }
        }
        return sum / double_batch(divisor_);
    }

    double operator()(double sum) const { return sum / divisor_; }

private:
    double divisor_;
    double reciprocal_;
    bool exact_reciprocal_ = false;
    bool checked_reciprocal_ = false;
};

// The destination of a pooled segment: out[c] = float(divide(pooled[c])),
// and also acc[c] = divide(pooled[c]) when acc is not null (normalize_result
// needs the quotients again).
template <class A>
struct pooled_output {
    divide_by<A> divide;
    double* acc;
    float* out;

    TESSERA_ALWAYS_INLINE void store(std::size_t c, const xsimd::batch<double, A>& pooled) const
    {
        const xsimd::batch<double, A> value = divide(pooled);
        if (acc != nullptr) {
            value.store_unaligned(acc + c);
        }
        store_narrowed<A>(out + c, value);
    }

    void store(std::size_t c, double pooled) const
    {
        const double value = divide(pooled);
        if (acc != nullptr) {
            acc[c] = value;
        }
        out[c] = static_cast<float>(value);
    }
};

// Pools columns [column, column + K·L) of a segment, K double batches of
// L lanes: Σ_r factors[r] · rows[r][c], added in row order in registers.
template <class A, std::size_t K>
TESSERA_ALWAYS_INLINE void sum_block(const segment_rows& segment, std::size_t column, const pooled_output<A>& output)
{
    using double_batch = xsimd::batch<double, A>;
    constexpr std::size_t lanes = double_batch::size;

    double_batch sums[K];
    for (auto& sum : sums) {
        sum = double_batch(0.0);
    }
    for (std::size_t r = 0; r < segment.count; ++r) {
        const float* source = segment.rows[r] + column;
        prefetch_ahead(source, K * lanes * sizeof(float), segment.prefetch);
        if (segment.factors != nullptr) {
            const double_batch factor(segment.factors[r]);
            for (std::size_t k = 0; k < K; ++k) {
                sums[k] += load_widened<A>(source + k * lanes) * factor;
            }
        } else {
            for (std::size_t k = 0; k < K; ++k) {
                sums[k] += load_widened<A>(source + k * lanes);
            }
        }
    }
    for (std::size_t k = 0; k < K; ++k) {
        output.store(column + k * lanes, sums[k]);
    }
}

// Pools Σ_r factors[r] · rows[r][c] for c < dim into `output`, each
// element summed in row order. The columns go in blocks of
// sum_block_batches, and each block reads a slice of every row of the
// segment in turn: the loads of many rows are in flight at once and the
// sums stay in registers. The previous kernel read each row from start to
// end into sums kept in memory. On a Xeon with AVX-512 (100 000 rows of
// 384 floats), the blocks and the prefetches took the mean from 0.6× to
// 0.9× the speed of Eigen's float sum.
// NOTE: an earlier test on a Zen 4 found column blocks slower than whole
// rows, but without the prefetches; this kernel is not measured there.
template <class A>
struct sum_rows {
    void operator()(const segment_rows& segment, std::size_t dim, const pooled_output<A>& output) const
    {
        constexpr std::size_t lanes = xsimd::batch<double, A>::size;
        constexpr std::size_t block = sum_block_batches * lanes;

        std::size_t c = 0;
        for (; c + block <= dim; c += block) {
            sum_block<A, sum_block_batches>(segment, c, output);
        }
        for (; c + lanes <= dim; c += lanes) {
            sum_block<A, 1>(segment, c, output);
        }
        for (; c < dim; ++c) {
            double sum = 0.0;
            for (std::size_t r = 0; r < segment.count; ++r) {
                const double value = static_cast<double>(segment.rows[r][c]);
                sum += segment.factors != nullptr ? value * segment.factors[r] : value;
            }
            output.store(c, sum);
        }
    }
};

// Returns the running maximum of one batch. A NaN replaces it and no
// number replaces a NaN, and ties keep the running value.
template <class T, class A>
TESSERA_ALWAYS_INLINE xsimd::batch<T, A> max_update(const xsimd::batch<T, A>& maximum,
                                                    const xsimd::batch<T, A>& value)
{
    return xsimd::select((value > maximum) | xsimd::isnan(value), value, maximum);
}

// Pools columns [column, column + K·L) of unscaled rows, K float batches
// of L lanes: max_r rows[r][c]. The maximum of floats is a float, so no
// widening is needed until the output.
template <class A, std::size_t K>
TESSERA_ALWAYS_INLINE void max_block(const segment_rows& segment, std::size_t column, const pooled_output<A>& output)
{
    using float_batch = xsimd::batch<float, A>;
    using double_batch = xsimd::batch<double, A>;
    constexpr std::size_t lanes = float_batch::size;

    float_batch maxima[K];
    for (auto& maximum : maxima) {
        maximum = float_batch(-std::numeric_limits<float>::infinity());
    }
    for (std::size_t r = 0; r < segment.count; ++r) {
        const float* source = segment.rows[r] + column;
        prefetch_ahead(source, K * lanes * sizeof(float), segment.prefetch);
        for (std::size_t k = 0; k < K; ++k) {
            maxima[k] = max_update(maxima[k], float_batch::load_unaligned(source + k * lanes));
        }
    }
    alignas(A::alignment()) float values[K * lanes];
    for (std::size_t k = 0; k < K; ++k) {
        maxima[k].store_aligned(values + k * lanes);
    }
    for (std::size_t i = 0; i < K * lanes; i += double_batch::size) {
        output.store(column + i, load_widened<A>(values + i));
    }
}

// Pools the same columns of scaled rows, in double:
// max_r factors[r] · rows[r][c].
template <class A, std::size_t K>
TESSERA_ALWAYS_INLINE void max_scaled_block(const segment_rows& segment, std::size_t column,
                                            const pooled_output<A>& output)
{
    using double_batch = xsimd::batch<double, A>;
    constexpr std::size_t lanes = double_batch::size;

    double_batch maxima[K];
    for (auto& maximum : maxima) {
        maximum = double_batch(-std::numeric_limits<double>::infinity());
    }
    for (std::size_t r = 0; r < segment.count; ++r) {
        const float* source = segment.rows[r] + column;
        prefetch_ahead(source, K * lanes * sizeof(float), segment.prefetch);
        const double_batch factor(segment.factors[r]);
        for (std::size_t k = 0; k < K; ++k) {
            maxima[k] = max_update(maxima[k], load_widened<A>(source + k * lanes) * factor);
        }
    }
    for (std::size_t k = 0; k < K; ++k) {
        output.store(column + k * lanes, maxima[k]);
    }
}

// Pools max_r factors[r] · rows[r][c] for c < dim into `output`, or NaN
// when any of those values is NaN: a NaN replaces the running maximum and
// no number replaces a NaN. Ties keep the earlier row, so of −0 and +0
// the first one seen is returned. Columns go in blocks, as in sum_rows.
template <class A>
struct max_rows {
    void operator()(const segment_rows& segment, std::size_t dim, const pooled_output<A>& output) const
    {
        std::size_t c = 0;
        if (segment.factors == nullptr) {
            constexpr std::size_t lanes = xsimd::batch<float, A>::size;
            for (; c + max_block_batches<A> * lanes <= dim; c += max_block_batches<A> * lanes) {
                max_block<A, max_block_batches<A>>(segment, c, output);
            }
            for (; c + lanes <= dim; c += lanes) {
                max_block<A, 1>(segment, c, output);
            }
        } else {
            constexpr std::size_t lanes = xsimd::batch<double, A>::size;
            for (; c + max_block_batches<A> * lanes <= dim; c += max_block_batches<A> * lanes) {
                max_scaled_block<A, max_block_batches<A>>(segment, c, output);
            }
            for (; c + lanes <= dim; c += lanes) {
                max_scaled_block<A, 1>(segment, c, output);
            }
        }
        for (; c < dim; ++c) {
            double maximum = -std::numeric_limits<double>::infinity();
            for (std::size_t r = 0; r < segment.count; ++r) {
                double value = static_cast<double>(segment.rows[r][c]);
                if (segment.factors != nullptr) {
                    value *= segment.factors[r];
                }
                if (value > maximum || std::isnan(value)) {
                    maximum = value;
                }
            }
            output.store(c, maximum);
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

// Rescales a pooled vector to unit length: out[c] = acc[c] · (1 / ‖out‖),
// where acc has the pooled values in double and out the same values
// rounded to float. The norm is taken of the rounded values, so that it is exact up
// to its final sum.
template <class A>
void normalize_pooled(const double* acc, std::size_t dim, float* out)
{
    using double_batch = xsimd::batch<double, A>;
    constexpr std::size_t lanes = double_batch::size;

    const double scale = inverse_norm(squared_norm<A>(out, dim));
    const double_batch scale_batch(scale);
    std::size_t c = 0;
    for (; c + lanes <= dim; c += lanes) {
        store_narrowed<A>(out + c, double_batch::load_unaligned(acc + c) * scale_batch);
    }
    for (; c < dim; ++c) {
        out[c] = static_cast<float>(acc[c] * scale);
    }
}

// Writes out[c] = pooled[c] rounded to float, for pooled values already
// in acc (first, last and the all-masked padded cases), then calls
// normalize_pooled when `normalize` is set.
template <class A>
void finish_pooled(const double* acc, std::size_t dim, bool normalize, float* out)
{
    using double_batch = xsimd::batch<double, A>;
    constexpr std::size_t lanes = double_batch::size;

    std::size_t c = 0;
    for (; c + lanes <= dim; c += lanes) {
        store_narrowed<A>(out + c, double_batch::load_unaligned(acc + c));
    }
    for (; c < dim; ++c) {
        out[c] = static_cast<float>(acc[c]);
    }
    if (normalize) {
        normalize_pooled<A>(acc, dim, out);
    }
}

} // namespace tessera::retrieval::kernels
