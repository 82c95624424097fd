// Segment pooling: ragged passage or token embeddings into one vector each.
//
//   segment_pool  CSR segments of a row-major matrix (segments.hpp)
//   padded_pool   a padded batch [batch × tokens × dim] with an attention
//                 mask, with the semantics of sentence-transformers' Pooling
//
// Each pooled vector is computed from the segment's rows x_0 .. x_{n−1} as
// pooling_op describes, after replacing every row by x / ‖x‖ when
// options.normalize_rows is set, and is divided by its own L2 norm when
// options.normalize_result is set.
//
// Numerical contract
// - Sums, weights and maxima are computed in double, row by row in row
//   order, and rounded to float once at the end. Every op, with and
//   without normalisation, is bit-identical to reference.hpp on every arch,
//   except for the sign and payload bits of a NaN result.
// - normalize_rows multiplies row r by w_r/‖x_r‖ (w_r = 1 unless weighted),
//   a factor rounded toward zero to 29 significant bits (relative error
//   below 2^-28) so that every product is exact in double.
//   normalize_result divides the pooled vector by the norm of its float
//   rounding. Squared norms are summed in double in a fixed order.
// - An empty segment pools to a zero vector for every op. The optional
//   `counts` output receives each segment's row count, so empty segments
//   can be found. weighted_mean with a weight sum of 0 also gives zeros.
// - A zero row normalises to a zero row, and a zero pooled vector stays
//   zero under normalize_result. A row or result with an infinite norm
//   normalises to 0 in its finite elements and NaN in its infinite ones
//   (x · (1/∞)), as in the reference.
// - NaN propagates: a NaN in a row makes the elements computed from it NaN
//   (with normalize_rows that is the whole pooled vector, because the row's
//   norm is NaN), in that segment's output only. max returns NaN for an
//   element when any of its values is NaN. first and last read one row.
// - max keeps the earlier row on ties, so of −0 and +0 the first one seen
//   is returned.
// - Results do not depend on the number of OpenMP threads: each segment is
//   computed by one thread from its own rows.
//
// padded_pool follows sentence-transformers 6.3.0's Pooling module (its
// modes cls, max, mean, mean_sqrt_len_tokens, weightedmean and lasttoken
// are first, max, mean, mean_sqrt_len, weighted_mean and last here) for
// masks of 0 and 1, with f the first and l the last unmasked token:
// - mean, mean_sqrt_len and sum use the unmasked tokens; an all-masked
//   sequence gives zeros (sentence-transformers divides by the mask sum
//   clamped at 1e-9).
// - weighted_mean weighs token t by t + 1 − f. So left and right padding
//   of the same tokens give the same vector, and masked tokens inside the
//   sequence still count as positions.
// - max ignores masked tokens; an all-masked sequence gives −∞.
// - first returns token f and last token l. In an all-masked sequence,
//   first returns token 0 and last returns token 0 times 0 (±0, or NaN
//   where token 0 is NaN or infinite).
// Masked tokens are never read, except token 0 of an all-masked sequence.
// sentence-transformers multiplies them by 0 instead, which gives NaN in
// the mean modes when a padding value is NaN or infinite; with finite
// padding the results agree up to float rounding (it sums in float).
//
// Errors (tessera::invalid_argument, naming the function and parameter):
// offsets that are empty, do not start at 0, decrease or exceed the row
// count; an output of the wrong shape; weights that are missing for
// weighted_mean, given for another op, of the wrong size, negative or not
// finite; attention mask entries other than 0 and 1; an op outside
// pooling_op; outputs that overlap an input or each other; null pointers
// with non-zero sizes. Overlap is judged on the byte ranges that views span,
// so an output placed in the row padding of a strided input is rejected too.
#pragma once

#include "../core/arch.hpp"
#include "../core/error.hpp"
#include "../core/extents.hpp"
#include "../core/parallel.hpp"
#include "../core/view.hpp"
#include "pooling_kernels.hpp"
#include "segments.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace tessera::retrieval {

namespace detail {

using tessera::detail::check_shape;
using tessera::detail::check_size;
using tessera::detail::check_view;
using tessera::detail::byte_range;
using tessera::detail::check_disjoint;
using tessera::detail::requested;
using tessera::detail::span_of;

// Per-thread buffers reused across the segments of a chunk.
struct pooling_scratch {
    std::vector<double> acc;
    std::vector<const float*> rows;
    std::vector<double> factors;
};

// A segment's rows, the divisor of its sum, and whether it is empty.
struct pooled_segment {
    kernels::segment_rows rows;
    double divisor;  // 1 for sum, max, first and last
    bool empty;      // no row at all: the output is zeros
};

// Fills scratch.factors with w_r/‖x_r‖ truncated to 29 bits when rows are
// normalised (w_r = 1 without weights), or with the weights alone; returns
// null when every factor would be 1.
template <class Arch, class Weight>
const double* row_factors(pooling_scratch& scratch, std::size_t count, std::size_t dim, const Weight* weights,
                          bool normalize_rows)
{
    if (!normalize_rows && weights == nullptr) {
        return nullptr;
    }
    scratch.factors.resize(count);
    for (std::size_t r = 0; r < count; ++r) {
        double factor = weights != nullptr ? static_cast<double>(weights[r]) : 1.0;
        if (normalize_rows) {
            const double inverse = kernels::inverse_norm(kernels::squared_norm<Arch>(scratch.rows[r], dim));
            factor = kernels::truncate_factor(factor * inverse);
        }
        scratch.factors[r] = factor;
    }
    return scratch.factors.data();
}

// Pools one segment into out[0 .. dim): the rows are in scratch.rows.
template <class Arch>
void pool_rows(pooling_scratch& scratch, const pooled_segment& segment, pooling_op op, bool normalize_result,
               std::size_t dim, float* out)
{
    if (segment.empty) {
        std::fill(out, out + dim, 0.0f);
        return;
    }
    double* acc = scratch.acc.data();
    const kernels::segment_rows& rows = segment.rows;
    // The quotients are kept in acc only when normalize_result needs them.
    const kernels::pooled_output<Arch> output{kernels::divide_by<Arch>(segment.divisor, normalize_result),
                                              normalize_result ? acc : nullptr, out};
    switch (op) {
    case pooling_op::max:
        kernels::max_rows<Arch>{}(rows, dim, output);
        break;
    case pooling_op::first:
    case pooling_op::last: {
        // One row, scaled by its factor: a copy unless rows are normalised.
        const std::size_t r = op == pooling_op::first ? 0 : rows.count - 1;
        const float* row = rows.rows[r];
        for (std::size_t c = 0; c < dim; ++c) {
            const double value = static_cast<double>(row[c]);
            acc[c] = rows.factors != nullptr ? value * rows.factors[r] : value;
        }
        kernels::finish_pooled<Arch>(acc, dim, false, out);
        break;
    }
    default:
        kernels::sum_rows<Arch>{}(rows, dim, output);
        break;
    }
    if (normalize_result) {
        kernels::normalize_pooled<Arch>(acc, dim, out);
    }
}

// Segments per parallel chunk: at least ~64K input elements per chunk and
// at most 256 chunks. Each segment is pooled alone, so the split never
// changes a result.
// NOTE: one segment runs on one thread, so a batch of a few very long
// segments uses few threads.
inline std::size_t segments_per_chunk(std::size_t segments, std::size_t rows, std::size_t dim)
{
    const std::size_t elements_per_segment = std::max<std::size_t>(1, rows / std::max<std::size_t>(segments, 1) * dim);
    const std::size_t by_work = std::max<std::size_t>(1, 65536 / elements_per_segment);
    return std::max(by_work, chunk_count(segments, 256));
}

inline void check_op(const pooling_options& options, const char* function)
{
    const auto value = static_cast<int>(options.op);
    if (value < static_cast<int>(pooling_op::mean) || value > static_cast<int>(pooling_op::mean_sqrt_len)) {
        raise_invalid_argument(function, "options.op must be a pooling_op, got the value ", value);
    }
}

inline void check_weights(vector_view<const float> weights, pooling_op op, std::size_t rows, const char* function)
{
    if (op != pooling_op::weighted_mean) {
        if (requested(weights)) {
            raise_invalid_argument(function, "weights are used only by pooling_op::weighted_mean, but op is ",
                                   to_string(op));
        }
        return;
    }
    if (!requested(weights) && rows != 0) {
        raise_invalid_argument(function, "weights are required for pooling_op::weighted_mean (one per row, ", rows,
                               " in all)");
    }
    check_size(weights, rows, function, "weights");
    for (std::size_t r = 0; r < rows; ++r) {
        if (!(weights[r] >= 0.0f) || !std::isfinite(weights[r])) {
            raise_invalid_argument(function, "weights[", r, "] must be finite and non-negative, got ", weights[r]);
        }
    }
}

} // namespace detail

// Pools CSR segment i (rows offsets[i] .. offsets[i+1] − 1 of `rows`) into
// row i of `out` [n_segments × dim]. `weights` (one per row of `rows`) is
// required by pooling_op::weighted_mean and rejected otherwise. `counts`,
// when given, receives each segment's row count.
template <class Arch = default_arch, class Offset>
void segment_pool(matrix_view<const float> rows, vector_view<Offset> offsets, matrix_view<float> out,
                  const pooling_options& options = {}, vector_view<const float> weights = {},
                  vector_view<std::remove_const_t<Offset>> counts = {})
{
    using offset_type = std::remove_const_t<Offset>;
    constexpr const char* function = "tessera::retrieval::segment_pool";
    const vector_view<const offset_type> bounds(offsets.data, offsets.size);

    detail::check_op(options, function);
    detail::check_view(rows, function, "rows");
    detail::check_offsets(bounds, rows.rows, function, "offsets");
    const std::size_t segments = bounds.size - 1;
    detail::check_shape(out, segments, rows.cols, function, "out");
    detail::check_weights(weights, options.op, rows.rows, function);
    if (detail::requested(counts)) {
        detail::check_size(counts, segments, function, "counts");
        detail::check_disjoint(detail::span_of(counts), detail::span_of(bounds), function, "counts", "offsets");
        detail::check_disjoint(detail::span_of(counts), detail::span_of(rows), function, "counts", "rows");
        detail::check_disjoint(detail::span_of(counts), detail::span_of(weights), function, "counts", "weights");
        detail::check_disjoint(detail::span_of(counts), detail::span_of(out), function, "counts", "out");
    }
    detail::check_disjoint(detail::span_of(out), detail::span_of(rows), function, "out", "rows");
    detail::check_disjoint(detail::span_of(out), detail::span_of(weights), function, "out", "weights");
    detail::check_disjoint(detail::span_of(out), detail::span_of(bounds), function, "out", "offsets");

    if (detail::requested(counts)) {
        for (std::size_t i = 0; i < segments; ++i) {
            counts[i] = static_cast<offset_type>(bounds[i + 1] - bounds[i]);
        }
    }
    const std::size_t dim = rows.cols;
    if (segments == 0 || dim == 0) {
        return;
    }

    const auto used_rows = static_cast<std::size_t>(bounds[segments]);
    const std::size_t chunk = detail::segments_per_chunk(segments, used_rows, dim);
    parallel_for_chunks(segments, chunk, [&](std::size_t, std::size_t begin, std::size_t end) {
        detail::pooling_scratch scratch;
        scratch.acc.resize(dim);
        for (std::size_t i = begin; i < end; ++i) {
            const auto first = static_cast<std::size_t>(bounds[i]);
            const std::size_t count = static_cast<std::size_t>(bounds[i + 1]) - first;
            scratch.rows.resize(count);
            for (std::size_t r = 0; r < count; ++r) {
                scratch.rows[r] = rows.row(first + r);
            }

            const float* segment_weights = options.op == pooling_op::weighted_mean ? weights.data + first : nullptr;
            detail::pooled_segment segment{};
            segment.rows.rows = scratch.rows.data();
            segment.rows.count = count;
            segment.rows.prefetch = kernels::prefetch_distance(dim);
            segment.rows.factors =
                detail::row_factors<Arch>(scratch, count, dim, segment_weights, options.normalize_rows);
            segment.empty = count == 0;
            segment.divisor = 1.0;
            switch (options.op) {
            case pooling_op::mean:
                segment.divisor = static_cast<double>(count);
                break;
            case pooling_op::mean_sqrt_len:
                segment.divisor = std::sqrt(static_cast<double>(count));
                break;
            case pooling_op::weighted_mean: {
                double weight_sum = 0.0;
                for (std::size_t r = 0; r < count; ++r) {
                    weight_sum += static_cast<double>(segment_weights[r]);
                }
                segment.divisor = weight_sum;
                segment.empty = segment.empty || weight_sum == 0.0;
                break;
            }
            default:
                break;
            }
            detail::pool_rows<Arch>(scratch, segment, options.op, options.normalize_result, dim, out.row(i));
        }
    });
}

namespace detail {

template <class Mask>
constexpr bool is_mask_type = std::is_same_v<Mask, bool> || std::is_same_v<Mask, std::uint8_t> ||
                              std::is_same_v<Mask, std::int32_t> || std::is_same_v<Mask, std::int64_t> ||
                              std::is_same_v<Mask, float>;

} // namespace detail

// Pools each sequence b of a padded batch into row b of `out` [batch × dim],
// reading only the tokens whose attention_mask(b, t) is 1 (the rules are at
// the top of this file). `counts`, when given, receives each sequence's
// number of unmasked tokens. Mask entries must be 0 or 1.
template <class Arch = default_arch, class Mask>
void padded_pool(padded_view<const float> tokens, matrix_view<Mask> attention_mask, matrix_view<float> out,
                 const pooling_options& options = {}, vector_view<std::int64_t> counts = {})
{
    using mask_type = std::remove_const_t<Mask>;
    static_assert(detail::is_mask_type<mask_type>, "attention masks are bool, uint8_t, int32_t, int64_t or float");
    constexpr const char* function = "tessera::retrieval::padded_pool";
    const matrix_view<const mask_type> mask(attention_mask.data, attention_mask.rows, attention_mask.cols,
                                            attention_mask.row_stride);

    detail::check_op(options, function);
    detail::check_padded_view(tokens, function, "tokens");
    detail::check_shape(mask, tokens.batch, tokens.tokens, function, "attention_mask");
    detail::check_shape(out, tokens.batch, tokens.dim, function, "out");
    // A mask of no columns has no entry to check, however many rows it claims.
    for (std::size_t b = 0; b < mask.rows && mask.cols != 0; ++b) {
        for (std::size_t t = 0; t < mask.cols; ++t) {
            const mask_type value = mask(b, t);
            if (!(value == mask_type(0) || value == mask_type(1))) {
                raise_invalid_argument(function, "attention_mask(", b, ", ", t, ") must be 0 or 1, got ", +value);
            }
        }
    }
    detail::byte_range token_bytes;
    if (!tokens.empty()) {
        const auto* first = reinterpret_cast<const unsigned char*>(tokens.data);
        const std::size_t extent = (tokens.batch - 1) * tokens.batch_stride + (tokens.tokens - 1) * tokens.token_stride +
                                   tokens.dim;
        token_bytes = {first, first + extent * sizeof(float)};
    }
    detail::check_disjoint(detail::span_of(out), token_bytes, function, "out", "tokens");
    detail::check_disjoint(detail::span_of(out), detail::span_of(mask), function, "out", "attention_mask");
    if (detail::requested(counts)) {
        detail::check_size(counts, tokens.batch, function, "counts");
        detail::check_disjoint(detail::span_of(counts), token_bytes, function, "counts", "tokens");
        detail::check_disjoint(detail::span_of(counts), detail::span_of(mask), function, "counts", "attention_mask");
        detail::check_disjoint(detail::span_of(counts), detail::span_of(out), function, "counts", "out");
    }

    const std::size_t dim = tokens.dim;
    if (tokens.batch == 0) {
        return;
    }
    if (dim == 0) {
        // No element to write, and no token row to address.
        for (std::size_t b = 0; b < tokens.batch && detail::requested(counts); ++b) {
            std::int64_t unmasked = 0;
            for (std::size_t t = 0; t < tokens.tokens; ++t) {
                unmasked += mask(b, t) != mask_type(0) ? 1 : 0;
            }
            counts[b] = unmasked;
        }
        return;
    }
    parallel_for_chunks(tokens.batch, 1, [&](std::size_t, std::size_t begin, std::size_t end) {
        detail::pooling_scratch scratch;
        scratch.acc.resize(dim);
        std::vector<double> weights;
        for (std::size_t b = begin; b < end; ++b) {
            // f and l: the first and last unmasked tokens; f = 0 when there is none.
            std::size_t first = 0;
            std::size_t last = 0;
            std::size_t count = 0;
            scratch.rows.clear();
            weights.clear();
            for (std::size_t t = 0; t < tokens.tokens; ++t) {
                if (mask(b, t) == mask_type(0)) {
                    continue;
                }
                if (count == 0) {
                    first = t;
                }
                last = t;
                ++count;
                scratch.rows.push_back(tokens.token(b, t));
            }
            if (detail::requested(counts)) {
                counts[b] = static_cast<std::int64_t>(count);
            }
            float* destination = out.row(b);

            if (count == 0 && options.op != pooling_op::mean && options.op != pooling_op::mean_sqrt_len &&
                options.op != pooling_op::sum && options.op != pooling_op::weighted_mean) {
                // All masked: first returns token 0, last token 0 times 0, max −∞.
                for (std::size_t c = 0; c < dim; ++c) {
                    const double value = tokens.tokens == 0 ? 0.0 : static_cast<double>(tokens.token(b, 0)[c]);
                    scratch.acc[c] = options.op == pooling_op::first  ? value
                                     : options.op == pooling_op::last ? value * 0.0
                                                                      : -std::numeric_limits<double>::infinity();
                }
                if (options.op == pooling_op::first && options.normalize_rows && tokens.tokens != 0) {
                    const double inverse = kernels::inverse_norm(kernels::squared_norm<Arch>(tokens.token(b, 0), dim));
                    const double factor = kernels::truncate_factor(inverse);
                    for (std::size_t c = 0; c < dim; ++c) {
                        scratch.acc[c] *= factor;
                    }
                }
                kernels::finish_pooled<Arch>(scratch.acc.data(), dim, options.normalize_result, destination);
                continue;
            }

            const float* const* rows = scratch.rows.data();
            std::size_t row_count = count;
            const float* selected = nullptr;
            if (options.op == pooling_op::first || options.op == pooling_op::last) {
                selected = options.op == pooling_op::first ? tokens.token(b, first) : tokens.token(b, last);
                rows = &selected;
                row_count = 1;
                scratch.rows.assign(1, selected);
            }

            // Position weights t + 1 − f of the unmasked tokens, exact in double.
            double weight_sum = 0.0;
            if (options.op == pooling_op::weighted_mean) {
                for (std::size_t t = first; t <= last && count != 0; ++t) {
                    if (mask(b, t) != mask_type(0)) {
                        weights.push_back(static_cast<double>(t + 1 - first));
                        weight_sum += weights.back();
                    }
                }
            }

            detail::pooled_segment segment{};
            segment.rows.rows = rows;
            segment.rows.count = row_count;
            segment.rows.prefetch = kernels::prefetch_distance(dim);
            segment.rows.factors = detail::row_factors<Arch>(
                scratch, row_count, dim, options.op == pooling_op::weighted_mean ? weights.data() : nullptr,
                options.normalize_rows);
            segment.empty = count == 0;
            segment.divisor = 1.0;
            if (options.op == pooling_op::mean) {
                segment.divisor = static_cast<double>(count);
            } else if (options.op == pooling_op::mean_sqrt_len) {
                segment.divisor = std::sqrt(static_cast<double>(count));
            } else if (options.op == pooling_op::weighted_mean) {
                segment.divisor = weight_sum;
            }
            detail::pool_rows<Arch>(scratch, segment, options.op, options.normalize_result, dim, destination);
        }
    });
}

} // namespace tessera::retrieval
