// FlexRound parameters: the integer grid and the log-space scales.
//
// FlexRound (Lee et al., "FlexRound: Learnable Rounding based on
// Element-wise Division for Post-Training Quantization", ICML 2023)
// quantizes a weight matrix W of shape [C_out, C_in * K] as
//
//     Ŵ = s1 · clamp(round(W / S), qmin, qmax),   S = s1 · S2 · s3 · s4,
//
// and learns the factors in log space: S = exp(δ1 + δ2 + δ3 + δ4) with
//     δ1 = log s1   the grid size, one per tensor or one per output row;
//     δ2 = log S2   the element-wise division factor, shape of W;
//     δ3 = log s3   the output-channel factor, one per row (optional);
//     δ4 = log s4   the input-channel factor, one per input channel
//                   (optional; used for convolution weights).
// A linear weight is [C_out, C_in] with K = 1. A convolution weight
// [C_out, C_in, kh, kw] is viewed as [C_out, C_in * K] with K = kh * kw,
// so column j of a row belongs to input channel j / K.
//
// The integer grid has b bits, 2 <= b <= 8. The symmetric grid is
// [qmin, qmax] = [-2^(b-1), 2^(b-1) - 1]. The asymmetric grid has an
// integer zero point zp in [0, 2^b - 1], per tensor or per row, and is
// [-zp, 2^b - 1 - zp]; its stored codes are c = q + zp in [0, 2^b - 1] and
// dequantize to s1 · (c - zp).
#pragma once

#include "../core/error.hpp"
#include "../core/view.hpp"

#include <cstddef>
#include <cstdint>

namespace tessera::quant {

enum class quant_scheme {
    symmetric,   // codes q in [-2^(b-1), 2^(b-1) - 1], stored as int8
    asymmetric,  // codes c = q + zp in [0, 2^b - 1], stored as uint8
};

// The integer grid: bit width, scheme and, for the asymmetric scheme, the
// zero points (one for the tensor or one per row). The zero points are a
// view of caller-owned memory.
struct quant_grid {
    int bits = 8;
    quant_scheme scheme = quant_scheme::symmetric;
    vector_view<const std::int32_t> zero_points = {};

    static quant_grid symmetric(int bits) { return {bits, quant_scheme::symmetric, {}}; }
    static quant_grid asymmetric(int bits, vector_view<const std::int32_t> zero_points)
    {
        return {bits, quant_scheme::asymmetric, zero_points};
    }

    bool is_symmetric() const { return scheme == quant_scheme::symmetric; }

    // The zero point of a row: 0 for the symmetric grid.
    std::int32_t zero_point(std::size_t row) const
    {
        if (is_symmetric()) {
            return 0;
        }
        return zero_points.size == 1 ? zero_points[0] : zero_points[row];
    }

    // Bounds of the clamped value q for a row (before adding zp).
    std::int32_t qmin(std::size_t row) const
    {
        return is_symmetric() ? -(std::int32_t{1} << (bits - 1)) : -zero_point(row);
    }
    std::int32_t qmax(std::size_t row) const
    {
        return is_symmetric() ? (std::int32_t{1} << (bits - 1)) - 1 : (std::int32_t{1} << bits) - 1 - zero_point(row);
    }
};

// The log-space FlexRound scales of one weight matrix with `rows` rows and
// `cols` columns. delta1 has size 1 (per tensor) or rows (per row), and
// delta2 has shape [rows, cols]. delta3 is empty or has size rows, and
// delta4 is empty or has size cols / kernel_size.
struct flexround_scales {
    vector_view<const float> delta1;
    matrix_view<const float> delta2;
    vector_view<const float> delta3 = {};
    vector_view<const float> delta4 = {};
    std::size_t kernel_size = 1;  // K = kh * kw for a convolution weight, 1 for a linear one
};

// Gradient buffers matching flexround_scales. Each non-empty buffer is
// overwritten, not accumulated into. delta3 and delta4 must be empty
// exactly when the corresponding scale is.
struct flexround_gradients {
    vector_view<float> delta1;
    matrix_view<float> delta2;
    vector_view<float> delta3 = {};
    vector_view<float> delta4 = {};
};

namespace detail {

using tessera::detail::check_shape;
using tessera::detail::check_size;
using tessera::detail::check_view;

// Validates the grid for a tensor with `rows` rows.
inline void check_grid(const quant_grid& grid, std::size_t rows, const char* function)
{
    if (grid.bits < 2 || grid.bits > 8) {
        raise_invalid_argument(function, "grid.bits must be in [2, 8], got ", grid.bits);
    }
    if (grid.scheme != quant_scheme::symmetric && grid.scheme != quant_scheme::asymmetric) {
        raise_invalid_argument(function, "grid.scheme must be symmetric or asymmetric, got the value ",
                               static_cast<int>(grid.scheme));
    }
    if (grid.is_symmetric()) {
        if (!grid.zero_points.empty()) {
            raise_invalid_argument(function, "grid.zero_points must be empty for the symmetric scheme, got ",
                                   grid.zero_points.size, " values");
        }
        return;
    }
    if (grid.zero_points.size != 1 && grid.zero_points.size != rows) {
        raise_invalid_argument(function, "grid.zero_points must have size 1 or rows (", rows, "), got ",
                               grid.zero_points.size);
    }
    check_view(grid.zero_points, function, "grid.zero_points");
    const std::int32_t code_max = (std::int32_t{1} << grid.bits) - 1;
    for (std::size_t i = 0; i < grid.zero_points.size; ++i) {
        const std::int32_t zp = grid.zero_points[i];
        if (zp < 0 || zp > code_max) {
            raise_invalid_argument(function, "grid.zero_points[", i, "] must be in [0, ", code_max, "] for ",
                                   grid.bits, " bits, got ", zp);
        }
    }
}

} // namespace detail

} // namespace tessera::quant
