// Initial grid sizes s1 and zero points for FlexRound and round-to-nearest.
//
// FlexRound starts from δ1 = log s1 and δ2 = δ3 = δ4 = 0, which is plain
// round-to-nearest on the grid of step s1; learning then moves away from
// it. Two ways to pick s1 (and zp for the asymmetric grid) are provided,
// per tensor (s1 of size 1) or per output row (s1 of size rows):
//
// init_grid_minmax: the grid covers the observed range, extended to
//   include 0 so that zero is exactly representable.
//     symmetric:  s1 = max|W| / qmax,            qmax = 2^(b-1) − 1
//     asymmetric: s1 = (max − min) / (2^b − 1),  zp = round(−min / s1)
// init_grid_search: the same formulas on the shrunken range
//   [α·min, α·max] for α = 1, 1 − h, 1 − 2h, …, min_shrink (h chosen so
//   there are `steps` candidates), keeping the α with the smallest sum of
//   squared rounding errors Σ (W − s1·(c − zp))². Ties keep the larger α.
//   Each candidate's errors are formed with W and s1 scaled by the power of
//   two that brings s1 into [1, 2), so they neither underflow nor overflow
//   in float for tiny or huge weights. W·2^k therefore gets s1·2^k and the
//   same zero points as W wherever those s1 are normal.
//
// A row (or tensor) whose range is 0 gets s1 = 1 and zp = 0, because every
// grid represents zeros exactly. s1 is kept within [FLT_MIN, FLT_MAX], so a
// range of subnormal weights or one near FLT_MAX still gives a valid grid.
// W must be finite: NaN or ±Inf raises tessera::invalid_argument.
#pragma once

#include "../core/arch.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/view.hpp"
#include "kernels.hpp"
#include "params.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace tessera::quant {

struct grid_search_options {
    int steps = 100;          // number of shrink factors tried
    float min_shrink = 0.2f;  // smallest α, in (0, 1]
};

namespace detail {

struct value_range {
    float low = 0.0f;   // min(min W, 0)
    float high = 0.0f;  // max(max W, 0)
};

inline value_range row_range(const float* row, std::size_t n, std::size_t r, const char* function)
{
    value_range range;
    for (std::size_t c = 0; c < n; ++c) {
        if (!std::isfinite(row[c])) {
            raise_invalid_argument(function, "w must be finite, got w(", r, ", ", c, ") = ", row[c]);
        }
        range.low = std::min(range.low, row[c]);
        range.high = std::max(range.high, row[c]);
    }
    return range;
}

struct grid_choice {
    float s1 = 1.0f;
    std::int32_t zero_point = 0;
};

// Rounds a grid size to float, kept within [FLT_MIN, FLT_MAX] so that the
// kernels accept it even for ranges near 0 or near FLT_MAX.
inline float representable_grid_size(double s1)
{
    const double low = static_cast<double>(std::numeric_limits<float>::min());
    const double high = static_cast<double>(std::numeric_limits<float>::max());
    return static_cast<float>(std::min(std::max(s1, low), high));
}

inline grid_choice grid_for_range(value_range range, int bits, quant_scheme scheme)
{
    // In double, so that max − min of two finite floats cannot overflow.
    grid_choice choice;
    if (scheme == quant_scheme::symmetric) {
        const double max_abs = std::max(-static_cast<double>(range.low), static_cast<double>(range.high));
        const double qmax = (1 << (bits - 1)) - 1;
        if (max_abs > 0.0) {
            choice.s1 = representable_grid_size(max_abs / qmax);
        }
        return choice;
    }

    const double code_max = (1 << bits) - 1;
    const double width = static_cast<double>(range.high) - static_cast<double>(range.low);
    if (width > 0.0) {
        choice.s1 = representable_grid_size(width / code_max);
        const double zero_point = std::nearbyint(-static_cast<double>(range.low) / choice.s1);
        choice.zero_point = static_cast<std::int32_t>(std::min(std::max(zero_point, 0.0), code_max));
    }
    return choice;
}

// The rows of group g: one group for per-tensor, one row per group otherwise.
struct row_group {
    std::size_t begin;
    std::size_t end;
};

inline row_group group_rows(std::size_t group, std::size_t groups, std::size_t rows)
{
    return groups == 1 ? row_group{0, rows} : row_group{group, group + 1};
}

// The range of each group of rows (one group per tensor or one per row),
// computed before any output is written, so that a non-finite weight
// raises with s1 and zero_points untouched.
inline std::vector<value_range> group_ranges(matrix_view<const float> w, std::size_t groups, const char* function)
{
    std::vector<value_range> ranges(groups);
    if (w.cols == 0) {
        // A W without columns has no weights, however many rows it claims, and the row loop
        // could run SIZE_MAX times.
        return ranges;
    }
    for (std::size_t group = 0; group < groups; ++group) {
        const row_group rows = group_rows(group, groups, w.rows);
        for (std::size_t r = rows.begin; r < rows.end; ++r) {
            const value_range row = row_range(w.row(r), w.cols, r, function);
            ranges[group].low = std::min(ranges[group].low, row.low);
            ranges[group].high = std::max(ranges[group].high, row.high);
        }
    }
    return ranges;
}

inline void check_init_arguments(matrix_view<const float> w, int bits, quant_scheme scheme, vector_view<float> s1,
                                 vector_view<std::int32_t> zero_points, const char* function)
{
    check_view(w, function, "w");
    if (bits < 2 || bits > 8) {
        raise_invalid_argument(function, "bits must be in [2, 8], got ", bits);
    }
    if (scheme != quant_scheme::symmetric && scheme != quant_scheme::asymmetric) {
        raise_invalid_argument(function, "scheme must be symmetric or asymmetric, got the value ",
                               static_cast<int>(scheme));
    }
    if (s1.size != 1 && s1.size != w.rows) {
        raise_invalid_argument(function, "s1 must have size 1 or rows (", w.rows, "), got ", s1.size);
    }
    check_view(s1, function, "s1");
    const std::size_t expected_zero_points = scheme == quant_scheme::symmetric ? 0 : s1.size;
    if (zero_points.size != expected_zero_points) {
        raise_invalid_argument(function, "zero_points must have size ", expected_zero_points, " (",
                               scheme == quant_scheme::symmetric ? "symmetric grid" : "same as s1", "), got ",
                               zero_points.size);
    }
    check_view(zero_points, function, "zero_points");
}

// Σ (w·scale − s·q)² of one row in double, q rounded and clamped in float as grid_error_row
// does.
inline double row_error_in_double(const float* w, std::size_t n, float step, float scale, float qmin, float qmax)
{
    double sum = 0.0;
    for (std::size_t c = 0; c < n; ++c) {
        const double scaled = static_cast<double>(w[c]) * scale;
        const float q = std::min(std::max(std::nearbyint(static_cast<float>(scaled) / step), qmin), qmax);
        const double error = scaled - static_cast<double>(step) * q;
        sum += error * error;
    }
    return sum;
}

template <class Arch>
double grid_error(matrix_view<const float> w, row_group group, grid_choice choice, int bits, quant_scheme scheme)
{
    const float qmin = scheme == quant_scheme::symmetric ? -static_cast<float>(1 << (bits - 1))
                                                         : -static_cast<float>(choice.zero_point);
    const float qmax = scheme == quant_scheme::symmetric ? static_cast<float>((1 << (bits - 1)) - 1)
                                                         : static_cast<float>((1 << bits) - 1 - choice.zero_point);
    double error = 0.0;
    if (w.cols == 0) {
        return error;  // no weights, and a row loop that could run SIZE_MAX times, as in group_ranges
    }

    // W and s1 are multiplied by the power of two that brings s1 into [1, 2). That is exact, so
    // where nothing overflows or underflows every rounding and sum is that of the unscaled
    // values. For weights near either end of the float range it keeps the squared errors from
    // overflowing to +Inf or underflowing to 0, where candidates would tie.
    int exponent = 0;
    std::frexp(choice.s1, &exponent);
    const float scale = std::ldexp(1.0f, 1 - exponent);
    const float step = choice.s1 * scale;
    for (std::size_t r = group.begin; r < group.end; ++r) {
        double row_error = kernels::grid_error_row<Arch>{}(w.row(r), w.cols, step, scale, qmin, qmax);
        if (std::isinf(row_error)) {
            // Weights far outside the grid (a tiny options.min_shrink) can still overflow the
            // float lanes. W is finite, so +Inf always means such an overflow, and the row is
            // summed again in double.
            row_error = row_error_in_double(w.row(r), w.cols, step, scale, qmin, qmax);
        }
        error += row_error;
    }
    return std::ldexp(error, 2 * (exponent - 1));
}

} // namespace detail

// Sets s1 (and zp for the asymmetric grid) from the range of W, per
// tensor when s1 has size 1 and per row when it has size rows.
// zero_points must be empty for the symmetric grid and match s1 otherwise.
inline void init_grid_minmax(matrix_view<const float> w, int bits, quant_scheme scheme, vector_view<float> s1,
                             vector_view<std::int32_t> zero_points)
{
    constexpr const char* function = "tessera::quant::init_grid_minmax";
    detail::check_init_arguments(w, bits, scheme, s1, zero_points, function);

    const std::vector<detail::value_range> ranges = detail::group_ranges(w, s1.size, function);
    for (std::size_t group = 0; group < s1.size; ++group) {
        const detail::grid_choice choice = detail::grid_for_range(ranges[group], bits, scheme);
        s1[group] = choice.s1;
        if (!zero_points.empty()) {
            zero_points[group] = choice.zero_point;
        }
    }
}

// Sets s1 (and zp) by searching shrunken ranges for the smallest sum of
// squared rounding errors; see the header comment for the candidates.
template <class Arch = default_arch>
void init_grid_search(matrix_view<const float> w, int bits, quant_scheme scheme, vector_view<float> s1,
                      vector_view<std::int32_t> zero_points, grid_search_options options = {})
{
    constexpr const char* function = "tessera::quant::init_grid_search";
    detail::check_init_arguments(w, bits, scheme, s1, zero_points, function);
    if (options.steps < 1) {
        raise_invalid_argument(function, "options.steps must be at least 1, got ", options.steps);
    }
    if (!(options.min_shrink > 0.0f && options.min_shrink <= 1.0f)) {
        raise_invalid_argument(function, "options.min_shrink must be in (0, 1], got ", options.min_shrink);
    }

    // Ranges first, on the calling thread, so that a non-finite weight
    // raises before any parallel work starts.
    const std::vector<detail::value_range> ranges = detail::group_ranges(w, s1.size, function);

    // Each group is searched by one thread, so the choice is the same for
    // any thread count.
    const std::size_t groups_per_chunk = std::max<std::size_t>(1, 16384 / std::max<std::size_t>(w.cols, 1));
    parallel_for_chunks(s1.size, groups_per_chunk, [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t group = begin; group < end; ++group) {
            const detail::row_group rows = detail::group_rows(group, s1.size, w.rows);
            detail::grid_choice best = detail::grid_for_range(ranges[group], bits, scheme);
            double best_error = detail::grid_error<Arch>(w, rows, best, bits, scheme);
            for (int step = 1; step < options.steps; ++step) {
                const float shrink = 1.0f - (1.0f - options.min_shrink) * static_cast<float>(step) /
                                                static_cast<float>(std::max(options.steps - 1, 1));
                const detail::value_range shrunk{shrink * ranges[group].low, shrink * ranges[group].high};
                const detail::grid_choice candidate = detail::grid_for_range(shrunk, bits, scheme);
                const double error = detail::grid_error<Arch>(w, rows, candidate, bits, scheme);
                if (error < best_error) {
                    best = candidate;
                    best_error = error;
                }
            }
            s1[group] = best.s1;
            if (!zero_points.empty()) {
                zero_points[group] = best.zero_point;
            }
        }
    });
}

} // namespace tessera::quant
