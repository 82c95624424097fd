// FlexRound quantization: public API.
//
// FlexRound (Lee et al., ICML 2023) learns how to round each weight by
// dividing it by a learned, element-wise scale before rounding:
//
//     Ŵ = s1 · clamp(round(W / S), qmin, qmax),   S = exp(δ1 + δ2 + δ3 + δ4).
//
// params.hpp defines the terms (grid size s1, the log-space scales δ1..δ4,
// the symmetric and asymmetric integer grids). This header provides:
//   fake_quantize        the forward: Ŵ, and optionally the mask and codes
//   flexround_backward   the straight-through gradients of δ1..δ4
//   quantize             integer codes for a given S, as int8 or uint8
//   quantize_packed4     4-bit codes packed two to a byte
//   dequantize, dequantize_packed4   s1 · (c − zp) back to float
// init.hpp chooses s1 and zp. learner.hpp learns δ1..δ4 from calibration data.
//
// Numerical contract
// - round() is round half to even and W / S is an IEEE division, never a
//   multiplication by 1/S, so given the same S the codes equal PyTorch's
//   torch.round(W / S) bit for bit. Kernels assume the default
//   floating-point environment (round to nearest, no flush to zero).
// - Given S, every kernel is bit-identical to the scalar reference in
//   reference.hpp on every arch: quantize, quantize_packed4, dequantize,
//   dequantize_packed4, and Ŵ = s1 · q.
// - From δ, the SIMD path computes S = exp(log S) with xsimd::exp and the
//   reference with std::exp. They differ by at most max_exp_ulp (below)
//   units in the last place while S is a normal float. s1 = exp(δ1) is
//   computed with std::exp on both paths. So where S is a normal float on
//   both paths, u = W / S differs by at most max_tie_window_ulp ulp, and a
//   code can differ from the reference only where u lies that close to a
//   rounding tie k + 1/2, and then by exactly 1. Elsewhere in that range
//   Ŵ, the mask and the codes are bit-identical.
// - Outside it (log S below about −87.3 or above 88.376) xsimd::exp gives 0
//   or +Inf where std::exp may still give a subnormal or finite S, and the
//   codes of the two paths can differ by more than 1. S = 0 from a finite
//   δ gives u = W / 0: ±Inf (saturated codes) or NaN for W = 0 (the NaN
//   policy below). No argument check rejects such δ2, δ3 or δ4, because
//   that would cost a pass over δ2.
// - The mask is inclusive at both ends and taken on round(u) itself. A
//   PyTorch FlexRound written with torch.clamp differs at elements that
//   round exactly to qmin or qmax: torch.clamp passes no gradient there
//   (seen with torch 2.15).
// - E = ∂δ2 is bit-identical to the reference wherever u is. Gradient sums
//   (δ1, δ3, δ4) are accumulated in float and may differ from the
//   double-precision reference by at most (n + 3)·(2^-24·Σ|term| + 2^-150)
//   for n summed terms: n roundings of the running sums and three of the
//   products that form a term, each off by at most half an ulp, which is
//   2^-150 for a subnormal result. δ1 takes two more roundings, s1 = exp(δ1)
//   in float and its product with the sum, so its bound is
//   (n + 5)·(2^-24·Σ|term| + 2^-150). Where S differs (see above), each term
//   also carries an error of up to (max_exp_ulp + 1)·2^-23·|G·s1·u| through u.
//   For δ1 that is large next to the term G·s1·(q − u) itself.
//   NOTE: the float terms and running sums can overflow where the double
//   reference does not. Where the finite terms of Σ|E| (δ3, δ4) or of
//   Σ|G·(q − m·u)| (δ1, summed before the factor s1) add up to more than
//   FLT_MAX, a sum can be ±Inf or NaN whatever the reference is.
// - W = ±Inf saturates to qmax or qmin (Ŵ = s1 · qmax, mask 0, its E = 0).
// - NaN policy: a NaN in W or δ makes u NaN; then Ŵ is NaN, the mask is 0,
//   the stored code is the zero point (an integer holds no NaN), and E and
//   every gradient sum that includes the element are NaN.
// - An empty W (zero rows or columns) writes no element; gradient sums
//   over no element are written as 0.
// - A call that reads and writes at least tessera::streaming_threshold()
//   bytes writes its main output with streaming stores (core/stream.hpp).
//   The values are the same either way.
// - Results do not depend on the number of OpenMP threads: rows are split
//   into chunks fixed by the shape, and sums are combined in chunk order.
//
// Errors: mismatched shapes, bits outside [2, 8], zero points outside the
// grid, s1 non-positive or non-finite, a null pointer with a non-zero
// size, and a code type that does not match the scheme (int8 for the
// symmetric grid, uint8 for the asymmetric one) raise
// tessera::invalid_argument naming the function, parameter and values.
#pragma once

#include "../core/arch.hpp"
#include "../core/error.hpp"
#include "../core/extents.hpp"
#include "../core/parallel.hpp"
#include "../core/stream.hpp"
#include "../core/view.hpp"
#include "kernels.hpp"
#include "params.hpp"
#include "reference.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace tessera::quant {

// Largest difference, in units in the last place, between xsimd::exp and
// std::exp for arguments x <= 88.3762 whose std::exp is a normal float.
// Measured over every such float (2,237,623,540 of them) on sse2, sse4.1,
// avx2 and avx512bw with xsimd 8.1 by the hidden test "xsimd exp bound on
// every float". The test "xsimd exp error bound" rechecks a sample on every
// run. Above 88.3762 xsimd::exp returns +Inf where std::exp is still finite.
inline constexpr int max_exp_ulp = 2;

// Largest difference, in ulp of u, between u = W / S on the SIMD path and
// on the reference path: an error of k ulp in S is at most k·2^-23 relative,
// and with the division's rounding that is up to 2k + 1 ulp of u when S
// and u sit in different binades.
inline constexpr int max_tie_window_ulp = 2 * max_exp_ulp + 1;

namespace detail {

using tessera::detail::requested;

template <class Code>
void check_code_type(const quant_grid& grid, const char* function, const char* name)
{
    static_assert(std::is_same_v<Code, std::int8_t> || std::is_same_v<Code, std::uint8_t>,
                  "codes are int8_t (symmetric grid) or uint8_t (asymmetric grid)");
    if (std::is_same_v<Code, std::int8_t> != grid.is_symmetric()) {
        raise_invalid_argument(function, name, " must be int8_t for the symmetric grid and uint8_t for the ",
                               "asymmetric grid; got ", std::is_same_v<Code, std::int8_t> ? "int8_t" : "uint8_t",
                               " for the ", grid.is_symmetric() ? "symmetric" : "asymmetric", " grid");
    }
}

// Validates a per-tensor or per-row vector of grid sizes (s1 or S).
inline void check_grid_sizes(vector_view<const float> sizes, std::size_t rows, const char* function,
                             const char* name)
{
    if (sizes.size != 1 && sizes.size != rows) {
        raise_invalid_argument(function, name, " must have size 1 or rows (", rows, "), got ", sizes.size);
    }
    check_view(sizes, function, name);
    for (std::size_t i = 0; i < sizes.size; ++i) {
        if (!(sizes[i] > 0.0f) || !std::isfinite(sizes[i])) {
            raise_invalid_argument(function, name, "[", i, "] must be positive and finite, got ", sizes[i]);
        }
    }
}

inline void check_scales(matrix_view<const float> w, const flexround_scales& scales, const char* function)
{
    check_view(w, function, "w");
    if (scales.delta1.size != 1 && scales.delta1.size != w.rows) {
        raise_invalid_argument(function, "scales.delta1 must have size 1 or rows (", w.rows, "), got ",
                               scales.delta1.size);
    }
    check_view(scales.delta1, function, "scales.delta1");
    for (std::size_t i = 0; i < scales.delta1.size; ++i) {
        const float s1 = std::exp(scales.delta1[i]);
        if (!(s1 > 0.0f) || !std::isfinite(s1)) {
            raise_invalid_argument(function, "s1 = exp(scales.delta1[", i, "]) must be positive and finite, got exp(",
                                   scales.delta1[i], ") = ", s1);
        }
    }
    check_shape(scales.delta2, w.rows, w.cols, function, "scales.delta2");
    if (!scales.delta3.empty()) {
        check_size(scales.delta3, w.rows, function, "scales.delta3");
    }
    if (scales.kernel_size == 0) {
        raise_invalid_argument(function, "scales.kernel_size must be positive, got 0");
    }
    if (!scales.delta4.empty()) {
        if (w.cols % scales.kernel_size != 0) {
            raise_invalid_argument(function, "w.cols (", w.cols, ") must be a multiple of scales.kernel_size (",
                                   scales.kernel_size, ")");
        }
        check_size(scales.delta4, w.cols / scales.kernel_size, function, "scales.delta4");
    }
}

inline kernels::row_grid make_row_grid(const flexround_scales& scales, const quant_grid& grid, std::size_t row)
{
    const float delta1 = scales.delta1[scales.delta1.size == 1 ? 0 : row];
    kernels::row_grid result;
    result.s1 = std::exp(delta1);
    result.delta1 = delta1;
    result.has_delta3 = !scales.delta3.empty();
    result.delta3 = result.has_delta3 ? scales.delta3[row] : 0.0f;
    result.qmin = static_cast<float>(grid.qmin(row));
    result.qmax = static_cast<float>(grid.qmax(row));
    result.zero_point = grid.zero_point(row);
    return result;
}

inline kernels::row_grid make_row_grid(const quant_grid& grid, std::size_t row)
{
    kernels::row_grid result{};
    result.qmin = static_cast<float>(grid.qmin(row));
    result.qmax = static_cast<float>(grid.qmax(row));
    result.zero_point = grid.zero_point(row);
    return result;
}

// δ4 expanded to one value per column (column j gets δ4[j / K]), or the
// caller's δ4 itself when K = 1. Empty when δ4 is absent.
class expanded_delta4 {
public:
    explicit expanded_delta4(const flexround_scales& scales, std::size_t cols)
    {
        if (scales.delta4.empty() || scales.kernel_size == 1) {
            data_ = scales.delta4.data;
            return;
        }
        storage_.resize(cols);
        for (std::size_t j = 0; j < cols; ++j) {
            storage_[j] = scales.delta4[j / scales.kernel_size];
        }
        data_ = storage_.data();
    }

    const float* data() const { return data_; }

private:
    std::vector<float> storage_;
    const float* data_ = nullptr;
};

template <class Arch, class Code>
void fake_quantize_impl(matrix_view<const float> w, const flexround_scales& scales, const quant_grid& grid,
                        matrix_view<float> w_hat, matrix_view<std::uint8_t> mask, matrix_view<Code> codes)
{
    constexpr const char* function = "tessera::quant::fake_quantize";
    check_scales(w, scales, function);
    check_grid(grid, w.rows, function);
    check_shape(w_hat, w.rows, w.cols, function, "w_hat");
    if (requested(mask)) {
        check_shape(mask, w.rows, w.cols, function, "mask");
    }
    if (requested(codes)) {
        check_code_type<Code>(grid, function, "codes");
        check_shape(codes, w.rows, w.cols, function, "codes");
    }
    if (w.empty()) {
        return;
    }

    const expanded_delta4 delta4(scales, w.cols);
    // Reads W and δ2, writes Ŵ.
    const bool stream = streams_output(3 * w.size() * sizeof(float));
    parallel_for_chunks(w.rows, rows_per_chunk(w.rows, w.cols), [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t r = begin; r < end; ++r) {
            const typename kernels::fake_quantize_row<Arch>::row_pointers row{
                w.row(r), scales.delta2.row(r), delta4.data(), w_hat.row(r),
                requested(mask) ? mask.row(r) : nullptr, requested(codes) ? codes.row(r) : nullptr};
            kernels::fake_quantize_row<Arch>{}(row, w.cols, make_row_grid(scales, grid, r), stream);
        }
        simd::stream_fence();
    });
}

} // namespace detail

// Fake-quantize forward: w_hat = s1 · clamp(round(W / S), qmin, qmax).
// A `mask` other than the default empty view must have the shape of W and
// receives m = 1[qmin <= round(W / S) <= qmax] as bytes 0 or 1. w_hat may
// be w itself (the same memory and stride).
template <class Arch = default_arch>
void fake_quantize(matrix_view<const float> w, const flexround_scales& scales, const quant_grid& grid,
                   matrix_view<float> w_hat, matrix_view<std::uint8_t> mask = {})
{
    // No codes are written, so the code type is only a placeholder.
    detail::fake_quantize_impl<Arch>(w, scales, grid, w_hat, mask, matrix_view<std::int8_t>{});
}

// The same, also writing the integer codes q + zp: int8_t for the
// symmetric grid, uint8_t for the asymmetric one.
template <class Arch = default_arch, class Code>
void fake_quantize(matrix_view<const float> w, const flexround_scales& scales, const quant_grid& grid,
                   matrix_view<float> w_hat, matrix_view<std::uint8_t> mask, matrix_view<Code> codes)
{
    detail::fake_quantize_impl<Arch>(w, scales, grid, w_hat, mask, codes);
}

// Straight-through backward of fake_quantize. Given G = ∂L/∂Ŵ it writes
//   ∂δ2 = E = −G·s1·m·u                      (shape of W),
//   ∂δ3[r] = Σ_j E[r, j]                     (when δ3 is present),
//   ∂δ4[i] = Σ_r Σ_{j : j / K = i} E[r, j]   (when δ4 is present),
//   ∂δ1 = s1·Σ G·(q − m·u)                   (over the tensor or each row),
// with u = W / S, q the clamped rounded value and m the in-range mask.
// W is frozen, so no gradient is computed for it.
template <class Arch = default_arch>
void flexround_backward(matrix_view<const float> w, const flexround_scales& scales, const quant_grid& grid,
                        matrix_view<const float> grad_w_hat, const flexround_gradients& grads)
{
    constexpr const char* function = "tessera::quant::flexround_backward";
    detail::check_scales(w, scales, function);
    detail::check_grid(grid, w.rows, function);
    detail::check_shape(grad_w_hat, w.rows, w.cols, function, "grad_w_hat");
    detail::check_size(grads.delta1, scales.delta1.size, function, "grads.delta1");
    detail::check_shape(grads.delta2, w.rows, w.cols, function, "grads.delta2");
    detail::check_size(grads.delta3, scales.delta3.size, function, "grads.delta3");
    detail::check_size(grads.delta4, scales.delta4.size, function, "grads.delta4");

    if (w.empty()) {
        // Sums over no element are 0, and E has no element to write.
        std::fill(grads.delta1.data, grads.delta1.data + grads.delta1.size, 0.0f);
        std::fill(grads.delta3.data, grads.delta3.data + grads.delta3.size, 0.0f);
        std::fill(grads.delta4.data, grads.delta4.data + grads.delta4.size, 0.0f);
        return;
    }

    const std::size_t chunk_rows = rows_per_chunk(w.rows, w.cols, 64);
    const std::size_t chunks = chunk_count(w.rows, chunk_rows);
    const bool has_delta4 = !scales.delta4.empty();
    std::vector<float> row_sum_e(w.rows);
    std::vector<float> row_sum_s1(w.rows);
    std::vector<float> column_sums(has_delta4 ? checked_mul(chunks, w.cols, function, "workspace") : 0, 0.0f);

    const detail::expanded_delta4 delta4(scales, w.cols);
    // Reads W, δ2 and G, writes E.
    const bool stream = streams_output(4 * w.size() * sizeof(float));
    if (!w.empty()) {
        parallel_for_chunks(w.rows, chunk_rows, [&](std::size_t chunk, std::size_t begin, std::size_t end) {
            float* chunk_columns = has_delta4 ? column_sums.data() + chunk * w.cols : nullptr;
            for (std::size_t r = begin; r < end; ++r) {
                const typename kernels::flexround_backward_row<Arch>::row_pointers row{
                    w.row(r), scales.delta2.row(r), delta4.data(), grad_w_hat.row(r), grads.delta2.row(r),
                    chunk_columns};
                const auto sums = kernels::flexround_backward_row<Arch>{}(
                    row, w.cols, detail::make_row_grid(scales, grid, r), stream);
                row_sum_e[r] = sums.grad_e;
                row_sum_s1[r] = sums.grad_s1;
            }
            simd::stream_fence();
        });
    }

    // Combine the per-row and per-chunk partial sums in a fixed order.
    for (std::size_t r = 0; r < grads.delta3.size; ++r) {
        grads.delta3[r] = row_sum_e[r];
    }
    if (grads.delta1.size == 1) {
        double total = 0.0;
        for (std::size_t r = 0; r < w.rows; ++r) {
            total += row_sum_s1[r];
        }
        grads.delta1[0] = static_cast<float>(std::exp(scales.delta1[0]) * total);
    } else {
        for (std::size_t r = 0; r < w.rows; ++r) {
            grads.delta1[r] = std::exp(scales.delta1[r]) * row_sum_s1[r];
        }
    }
    if (has_delta4) {
        for (std::size_t i = 0; i < grads.delta4.size; ++i) {
            double total = 0.0;
            for (std::size_t chunk = 0; chunk < chunks; ++chunk) {
                const float* columns = column_sums.data() + chunk * w.cols + i * scales.kernel_size;
                for (std::size_t tap = 0; tap < scales.kernel_size; ++tap) {
                    total += columns[tap];
                }
            }
            grads.delta4[i] = static_cast<float>(total);
        }
    }
}

namespace detail {

// Shared by the quantize overloads: `scale` is element-wise or empty, in
// which case `scale_vector` has one S per tensor or per row.
template <class Arch>
void quantize_impl(matrix_view<const float> w, matrix_view<const float> scale, vector_view<const float> scale_vector,
                   const quant_grid& grid, std::uint8_t* out, std::size_t out_stride, bool nibbles)
{
    if (w.empty()) {
        return;
    }
    // Reads W (and S when it is element-wise), writes the codes.
    const std::size_t read_bytes = (scale.empty() ? 1 : 2) * w.size() * sizeof(float);
    const bool stream = streams_output(read_bytes + (nibbles ? w.size() / 2 : w.size()));
    parallel_for_chunks(w.rows, rows_per_chunk(w.rows, w.cols), [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t r = begin; r < end; ++r) {
            kernels::given_scale row_scale;
            if (scale.empty()) {
                row_scale.value = scale_vector[scale_vector.size == 1 ? 0 : r];
            } else {
                row_scale.row = scale.row(r);
            }
            kernels::quantize_row<Arch>{}(w.row(r), row_scale, w.cols, make_row_grid(grid, r), out + r * out_stride,
                                          nibbles, stream);
        }
        simd::stream_fence();
    });
}

template <class Arch>
void dequantize_impl(const std::uint8_t* codes, std::size_t code_stride, std::size_t rows, std::size_t cols,
                     vector_view<const float> s1, const quant_grid& grid, bool nibbles, matrix_view<float> out)
{
    if (rows == 0 || cols == 0) {
        return;
    }
    // Reads the codes, writes floats.
    const bool stream = streams_output(rows * cols * sizeof(float) + (nibbles ? rows * cols / 2 : rows * cols));
    parallel_for_chunks(rows, rows_per_chunk(rows, cols), [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t r = begin; r < end; ++r) {
            kernels::dequantize_row<Arch>{}(codes + r * code_stride, cols, s1[s1.size == 1 ? 0 : r],
                                            grid.zero_point(r), grid.is_symmetric(), nibbles, out.row(r), stream);
        }
        simd::stream_fence();
    });
}

// Bytes of a packed row of `cols` 4-bit codes, without the overflow of
// (cols + 1) / 2 at cols = SIZE_MAX.
inline std::size_t packed_bytes(std::size_t cols)
{
    return cols / 2 + cols % 2;
}

inline void check_packed_grid(const quant_grid& grid, const char* function)
{
    if (grid.bits > 4) {
        raise_invalid_argument(function, "grid.bits must be in [2, 4] for packed 4-bit codes, got ", grid.bits);
    }
}

} // namespace detail

// Integer codes for an element-wise S: codes = clamp(round(W / S), qmin,
// qmax) + zp. S is not checked: S <= 0 or NaN gives what IEEE arithmetic
// gives (saturated codes, or the zero point for NaN), never undefined behaviour.
template <class Arch = default_arch, class Code>
void quantize(matrix_view<const float> w, matrix_view<const float> scale, const quant_grid& grid,
              matrix_view<Code> codes)
{
    constexpr const char* function = "tessera::quant::quantize";
    detail::check_view(w, function, "w");
    detail::check_shape(scale, w.rows, w.cols, function, "scale");
    detail::check_grid(grid, w.rows, function);
    detail::check_code_type<Code>(grid, function, "codes");
    detail::check_shape(codes, w.rows, w.cols, function, "codes");
    detail::quantize_impl<Arch>(w, scale, {}, grid, reinterpret_cast<std::uint8_t*>(codes.data), codes.row_stride,
                                false);
}

// Integer codes for one S per tensor (size 1) or per row (size rows),
// as in plain round-to-nearest quantization where S = s1.
template <class Arch = default_arch, class Code>
void quantize(matrix_view<const float> w, vector_view<const float> scale, const quant_grid& grid,
              matrix_view<Code> codes)
{
    constexpr const char* function = "tessera::quant::quantize";
    detail::check_view(w, function, "w");
    detail::check_grid_sizes(scale, w.rows, function, "scale");
    detail::check_grid(grid, w.rows, function);
    detail::check_code_type<Code>(grid, function, "codes");
    detail::check_shape(codes, w.rows, w.cols, function, "codes");
    detail::quantize_impl<Arch>(w, {}, scale, grid, reinterpret_cast<std::uint8_t*>(codes.data), codes.row_stride,
                                false);
}

// 4-bit codes packed two to a byte (bits <= 4). Row r of `packed` has
// (cols + 1) / 2 bytes, with element 2k in the low nibble of byte k and
// element 2k + 1 in the high nibble. An odd row leaves its last high
// nibble zero.
// Symmetric codes are 4-bit two's complement, asymmetric codes 0..15.
// `scale` is element-wise, or default-constructed (empty) with
// `scale_vector` giving S per tensor or per row.
template <class Arch = default_arch>
void quantize_packed4(matrix_view<const float> w, matrix_view<const float> scale,
                      vector_view<const float> scale_vector, const quant_grid& grid, matrix_view<std::uint8_t> packed)
{
    constexpr const char* function = "tessera::quant::quantize_packed4";
    detail::check_view(w, function, "w");
    if (detail::requested(scale)) {
        detail::check_shape(scale, w.rows, w.cols, function, "scale");
        if (scale_vector.size != 0) {
            raise_invalid_argument(function, "scale and scale_vector are both given (scale_vector has size ",
                                   scale_vector.size, "): pass only one of them");
        }
    } else if (!w.empty()) {
        detail::check_grid_sizes(scale_vector, w.rows, function, "scale_vector");
    }
    detail::check_grid(grid, w.rows, function);
    detail::check_packed_grid(grid, function);
    detail::check_shape(packed, w.rows, detail::packed_bytes(w.cols), function, "packed");
    detail::quantize_impl<Arch>(w, scale, scale_vector, grid, packed.data, packed.row_stride, true);
}

// Dequantize: out = s1 · (c − zp), s1 per tensor (size 1) or per row.
template <class Arch = default_arch, class Code>
void dequantize(matrix_view<const Code> codes, vector_view<const float> s1, const quant_grid& grid,
                matrix_view<float> out)
{
    constexpr const char* function = "tessera::quant::dequantize";
    detail::check_view(codes, function, "codes");
    detail::check_grid(grid, codes.rows, function);
    detail::check_code_type<Code>(grid, function, "codes");
    if (!codes.empty()) {
        detail::check_grid_sizes(s1, codes.rows, function, "s1");
    }
    detail::check_shape(out, codes.rows, codes.cols, function, "out");
    detail::dequantize_impl<Arch>(reinterpret_cast<const std::uint8_t*>(codes.data), codes.row_stride, codes.rows,
                                  codes.cols, s1, grid, false, out);
}

// The same for a view of mutable codes.
template <class Arch = default_arch, class Code>
void dequantize(matrix_view<Code> codes, vector_view<const float> s1, const quant_grid& grid, matrix_view<float> out)
{
    dequantize<Arch>(matrix_view<const Code>(codes), s1, grid, out);
}

// Dequantize packed 4-bit codes of a [rows, cols] matrix. `packed` has
// (cols + 1) / 2 bytes per row, laid out as quantize_packed4 writes them.
template <class Arch = default_arch>
void dequantize_packed4(matrix_view<const std::uint8_t> packed, std::size_t cols, vector_view<const float> s1,
                        const quant_grid& grid, matrix_view<float> out)
{
    constexpr const char* function = "tessera::quant::dequantize_packed4";
    detail::check_view(packed, function, "packed");
    if (packed.cols != detail::packed_bytes(cols)) {
        raise_invalid_argument(function, "packed.cols must be (cols + 1) / 2 = ", detail::packed_bytes(cols),
                               " for cols = ", cols, ", got ", packed.cols);
    }
    detail::check_grid(grid, packed.rows, function);
    detail::check_packed_grid(grid, function);
    if (packed.rows != 0 && cols != 0) {
        detail::check_grid_sizes(s1, packed.rows, function, "s1");
    }
    detail::check_shape(out, packed.rows, cols, function, "out");
    detail::dequantize_impl<Arch>(packed.data, packed.row_stride, packed.rows, cols, s1, grid, true, out);
}

} // namespace tessera::quant
