// Scalar reference implementations of the FlexRound kernels.
//
// These functions define the semantics that the SIMD kernels reproduce, and
// the tests compare every kernel against them. They are written to read
// like the formulas in params.hpp, not to be fast: one element at a time,
// single-threaded, sums accumulated in double. They assume valid arguments
// (the public functions in flexround.hpp check them) and shapes that the
// caller has already matched.
#pragma once

#include "params.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tessera::quant::reference {

// Rounds to the nearest integer, ties to even, in any floating-point
// rounding mode: round() breaks ties away from zero, so a tie is redone as
// twice the rounded half. NaN and ±Inf are returned unchanged.
inline float round_half_even(float x)
{
    float rounded = std::round(x);
    if (std::fabs(rounded - x) == 0.5f) {
        rounded = 2.0f * std::round(0.5f * x);
    }
    return rounded;
}

// The quantities of one weight element that the forward and backward need.
struct element_state {
    float u;        // W / S, the unrounded position on the grid
    float rounded;  // round_half_even(u)
    float q;        // rounded clamped to [qmin, qmax]; NaN when u is NaN
    bool in_range;  // m = 1[qmin <= round(u) <= qmax]; false for NaN
};

inline element_state evaluate_element(float w, float scale, float qmin, float qmax)
{
    element_state state;
    state.u = w / scale;  // a true division, as torch.round(W / S) does
    state.rounded = round_half_even(state.u);
    state.in_range = qmin <= state.rounded && state.rounded <= qmax;
    // Written with comparisons, as torch.clamp is, so that NaN passes
    // through and a rounded −0 stays −0 even when a bound is 0.
    state.q = state.rounded < qmin ? qmin : (state.rounded > qmax ? qmax : state.rounded);
    return state;
}

// log S = δ1 + δ2 + δ3 + δ4 for element (row, col), added left to right.
inline float log_scale(const flexround_scales& scales, std::size_t row, std::size_t col)
{
    float log_s = scales.delta1[scales.delta1.size == 1 ? 0 : row] + scales.delta2(row, col);
    if (!scales.delta3.empty()) {
        log_s += scales.delta3[row];
    }
    if (!scales.delta4.empty()) {
        log_s += scales.delta4[col / scales.kernel_size];
    }
    return log_s;
}

// s1 = exp(δ1) of a row.
inline float grid_size(const flexround_scales& scales, std::size_t row)
{
    return std::exp(scales.delta1[scales.delta1.size == 1 ? 0 : row]);
}

// The stored code of a clamped value: q + zp, with NaN stored as zp.
inline std::int32_t code_of(float q, std::int32_t zero_point)
{
    return std::isnan(q) ? zero_point : static_cast<std::int32_t>(q) + zero_point;
}

// Fake-quantize forward: w_hat = s1 · q. The optional outputs (empty views
// are skipped) receive the mask m and the codes q + zp.
template <class Code = std::int8_t>
void fake_quantize(matrix_view<const float> w, const flexround_scales& scales, const quant_grid& grid,
                   matrix_view<float> w_hat, matrix_view<std::uint8_t> mask = {}, matrix_view<Code> codes = {})
{
    for (std::size_t r = 0; r < w.rows; ++r) {
        const float s1 = grid_size(scales, r);
        const auto qmin = static_cast<float>(grid.qmin(r));
        const auto qmax = static_cast<float>(grid.qmax(r));
        for (std::size_t c = 0; c < w.cols; ++c) {
            const float scale = std::exp(log_scale(scales, r, c));
            const element_state e = evaluate_element(w(r, c), scale, qmin, qmax);
            w_hat(r, c) = s1 * e.q;
            if (!mask.empty()) {
                mask(r, c) = e.in_range ? 1 : 0;
            }
            if (!codes.empty()) {
                codes(r, c) = static_cast<Code>(code_of(e.q, grid.zero_point(r)));
            }
        }
    }
}

// Straight-through backward of fake_quantize given G = ∂L/∂Ŵ:
//   E = −G·s1·m·u,  ∂δ2 = E,  ∂δ3[r] = Σ_row E,  ∂δ4[i] = Σ over rows and
//   the K taps of channel i of E,  ∂δ1 = s1·Σ G·(q − m·u) per tensor or row.
// m·u keeps a NaN u, so NaN propagates into every gradient it touches.
inline void flexround_backward(matrix_view<const float> w, const flexround_scales& scales, const quant_grid& grid,
                               matrix_view<const float> grad_w_hat, const flexround_gradients& grads)
{
    std::vector<double> delta1_sum(scales.delta1.size, 0.0);
    std::vector<double> delta4_sum(scales.delta4.size, 0.0);

    for (std::size_t r = 0; r < w.rows; ++r) {
        const float s1 = grid_size(scales, r);
        const auto qmin = static_cast<float>(grid.qmin(r));
        const auto qmax = static_cast<float>(grid.qmax(r));
        double row_sum = 0.0;
        for (std::size_t c = 0; c < w.cols; ++c) {
            const float scale = std::exp(log_scale(scales, r, c));
            const element_state e = evaluate_element(w(r, c), scale, qmin, qmax);
            const float g = grad_w_hat(r, c);
            const float masked_u = (e.in_range || std::isnan(e.u)) ? e.u : 0.0f;
            // −(G·s1·m·u) with the sign on s1, which gives the same bits
            // (zeros included) as the SIMD path.
            const float grad_e = g * -s1 * masked_u;

            grads.delta2(r, c) = grad_e;
            row_sum += grad_e;
            if (!scales.delta4.empty()) {
                delta4_sum[c / scales.kernel_size] += grad_e;
            }
            delta1_sum[scales.delta1.size == 1 ? 0 : r] += static_cast<double>(g) * (e.q - masked_u);
        }
        if (!scales.delta3.empty()) {
            grads.delta3[r] = static_cast<float>(row_sum);
        }
    }

    for (std::size_t i = 0; i < delta1_sum.size(); ++i) {
        grads.delta1[i] = static_cast<float>(std::exp(scales.delta1[i]) * delta1_sum[i]);
    }
    for (std::size_t i = 0; i < delta4_sum.size(); ++i) {
        grads.delta4[i] = static_cast<float>(delta4_sum[i]);
    }
}

// The per-tensor (size 1) or per-row S of row r.
inline float given_scale(vector_view<const float> scale_vector, std::size_t r)
{
    return scale_vector[scale_vector.size == 1 ? 0 : r];
}

// Integer codes c = clamp(round(W / S), qmin, qmax) + zp for a given S:
// an element-wise scale matrix, or (when `scale` is empty) the per-tensor
// or per-row scale vector `scale_vector`. NaN W is stored as zp.
template <class Code>
void quantize(matrix_view<const float> w, matrix_view<const float> scale, vector_view<const float> scale_vector,
              const quant_grid& grid, matrix_view<Code> codes)
{
    for (std::size_t r = 0; r < w.rows; ++r) {
        const auto qmin = static_cast<float>(grid.qmin(r));
        const auto qmax = static_cast<float>(grid.qmax(r));
        for (std::size_t c = 0; c < w.cols; ++c) {
            const float s = scale.empty() ? given_scale(scale_vector, r) : scale(r, c);
            const element_state e = evaluate_element(w(r, c), s, qmin, qmax);
            codes(r, c) = static_cast<Code>(code_of(e.q, grid.zero_point(r)));
        }
    }
}

// The same codes packed two to a byte: element 2k of a row in the low
// nibble of byte k, element 2k+1 in the high nibble, each row starting on
// a byte. An odd row leaves the high nibble of its last byte zero.
// Symmetric codes are stored as 4-bit two's complement.
inline void quantize_packed4(matrix_view<const float> w, matrix_view<const float> scale,
                             vector_view<const float> scale_vector, const quant_grid& grid,
                             matrix_view<std::uint8_t> packed)
{
    std::vector<std::int32_t> row_codes(w.cols);
    for (std::size_t r = 0; r < w.rows; ++r) {
        const auto qmin = static_cast<float>(grid.qmin(r));
        const auto qmax = static_cast<float>(grid.qmax(r));
        for (std::size_t c = 0; c < w.cols; ++c) {
            const float s = scale.empty() ? given_scale(scale_vector, r) : scale(r, c);
            row_codes[c] = code_of(evaluate_element(w(r, c), s, qmin, qmax).q, grid.zero_point(r));
        }
        for (std::size_t k = 0; k < packed.cols; ++k) {
            const std::int32_t low = row_codes[2 * k] & 0x0F;
            const std::int32_t high = 2 * k + 1 < w.cols ? row_codes[2 * k + 1] & 0x0F : 0;
            packed(r, k) = static_cast<std::uint8_t>(low | (high << 4));
        }
    }
}

// Dequantize: out = s1 · (c − zp), with s1 per tensor or per row.
template <class Code>
void dequantize(matrix_view<const Code> codes, vector_view<const float> s1, const quant_grid& grid,
                matrix_view<float> out)
{
    for (std::size_t r = 0; r < codes.rows; ++r) {
        const float grid_step = s1[s1.size == 1 ? 0 : r];
        for (std::size_t c = 0; c < codes.cols; ++c) {
            out(r, c) = grid_step * static_cast<float>(static_cast<std::int32_t>(codes(r, c)) - grid.zero_point(r));
        }
    }
}

// Returns element `col` of a packed row as its code: a 4-bit two's
// complement value for the symmetric grid, 0..15 for the asymmetric one.
inline std::int32_t unpack4(const std::uint8_t* packed_row, std::size_t col, bool is_signed)
{
    const std::int32_t nibble = (packed_row[col / 2] >> (4 * (col % 2))) & 0x0F;
    return is_signed && nibble >= 8 ? nibble - 16 : nibble;
}

inline void dequantize_packed4(matrix_view<const std::uint8_t> packed, std::size_t cols, vector_view<const float> s1,
                               const quant_grid& grid, matrix_view<float> out)
{
    for (std::size_t r = 0; r < packed.rows; ++r) {
        const float grid_step = s1[s1.size == 1 ? 0 : r];
        for (std::size_t c = 0; c < cols; ++c) {
            const std::int32_t code = unpack4(packed.row(r), c, grid.is_symmetric());
            out(r, c) = grid_step * static_cast<float>(code - grid.zero_point(r));
        }
    }
}

} // namespace tessera::quant::reference
