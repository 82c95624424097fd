// Runtime dispatch of the FlexRound quantization kernels (tessera::quant).
//
// Each function below checks its arguments, runs tessera::quant's function
// of the same name on the best arch that the CPU supports (runtime.hpp) and
// returns that arch. Results are those of the statically dispatched
// function on that arch. Code types are int8_t (symmetric grid) and uint8_t
// (asymmetric grid), as in flexround.hpp. flexround_learner is a class
// and is not dispatched. NOTE: it runs on default_arch, the arch of the
// flags that the program is compiled with.
//
// The kernels are compiled by tessera_add_runtime_dispatch(<target>), whose
// FAMILIES list must include `quant`. A program that includes this header
// without it fails to link with undefined tessera::dispatch::kernels::quant
// symbols.
#pragma once

#include "../quant/flexround.hpp"
#include "runtime.hpp"

#include <cstdint>

namespace tessera::dispatch {

namespace kernels {

// The entry points compiled once per arch. Every member is defined below,
// outside the class, so that it is not inline (see runtime.hpp).
template <class Arch>
struct quant {
    using scales = ::tessera::quant::flexround_scales;
    using gradients = ::tessera::quant::flexround_gradients;
    using grid = ::tessera::quant::quant_grid;

    static void fake_quantize(matrix_view<const float> w, const scales& s, const grid& g, matrix_view<float> w_hat,
                              matrix_view<std::uint8_t> mask);
    static void fake_quantize(matrix_view<const float> w, const scales& s, const grid& g, matrix_view<float> w_hat,
                              matrix_view<std::uint8_t> mask, matrix_view<std::int8_t> codes);
    static void fake_quantize(matrix_view<const float> w, const scales& s, const grid& g, matrix_view<float> w_hat,
                              matrix_view<std::uint8_t> mask, matrix_view<std::uint8_t> codes);
    static void flexround_backward(matrix_view<const float> w, const scales& s, const grid& g,
                                   matrix_view<const float> grad_w_hat, const gradients& grads);
    static void quantize(matrix_view<const float> w, matrix_view<const float> scale, const grid& g,
                         matrix_view<std::int8_t> codes);
    static void quantize(matrix_view<const float> w, matrix_view<const float> scale, const grid& g,
                         matrix_view<std::uint8_t> codes);
    static void quantize(matrix_view<const float> w, vector_view<const float> scale, const grid& g,
                         matrix_view<std::int8_t> codes);
    static void quantize(matrix_view<const float> w, vector_view<const float> scale, const grid& g,
                         matrix_view<std::uint8_t> codes);
    static void quantize_packed4(matrix_view<const float> w, matrix_view<const float> scale,
                                 vector_view<const float> scale_vector, const grid& g,
                                 matrix_view<std::uint8_t> packed);
    static void dequantize(matrix_view<const std::int8_t> codes, vector_view<const float> s1, const grid& g,
                           matrix_view<float> out);
    static void dequantize(matrix_view<const std::uint8_t> codes, vector_view<const float> s1, const grid& g,
                           matrix_view<float> out);
    static void dequantize_packed4(matrix_view<const std::uint8_t> packed, std::size_t cols,
                                   vector_view<const float> s1, const grid& g, matrix_view<float> out);
};

template <class Arch>
void quant<Arch>::fake_quantize(matrix_view<const float> w, const scales& s, const grid& g, matrix_view<float> w_hat,
                                matrix_view<std::uint8_t> mask)
{
    ::tessera::quant::fake_quantize<Arch>(w, s, g, w_hat, mask);
}

template <class Arch>
void quant<Arch>::fake_quantize(matrix_view<const float> w, const scales& s, const grid& g, matrix_view<float> w_hat,
                                matrix_view<std::uint8_t> mask, matrix_view<std::int8_t> codes)
{
    ::tessera::quant::fake_quantize<Arch>(w, s, g, w_hat, mask, codes);
}

template <class Arch>
void quant<Arch>::fake_quantize(matrix_view<const float> w, const scales& s, const grid& g, matrix_view<float> w_hat,
                                matrix_view<std::uint8_t> mask, matrix_view<std::uint8_t> codes)
{
    ::tessera::quant::fake_quantize<Arch>(w, s, g, w_hat, mask, codes);
}

template <class Arch>
void quant<Arch>::flexround_backward(matrix_view<const float> w, const scales& s, const grid& g,
                                     matrix_view<const float> grad_w_hat, const gradients& grads)
{
    ::tessera::quant::flexround_backward<Arch>(w, s, g, grad_w_hat, grads);
}

template <class Arch>
void quant<Arch>::quantize(matrix_view<const float> w, matrix_view<const float> scale, const grid& g,
                           matrix_view<std::int8_t> codes)
{
    ::tessera::quant::quantize<Arch>(w, scale, g, codes);
}

template <class Arch>
void quant<Arch>::quantize(matrix_view<const float> w, matrix_view<const float> scale, const grid& g,
                           matrix_view<std::uint8_t> codes)
{
    ::tessera::quant::quantize<Arch>(w, scale, g, codes);
}

template <class Arch>
void quant<Arch>::quantize(matrix_view<const float> w, vector_view<const float> scale, const grid& g,
                           matrix_view<std::int8_t> codes)
{
    ::tessera::quant::quantize<Arch>(w, scale, g, codes);
}

template <class Arch>
void quant<Arch>::quantize(matrix_view<const float> w, vector_view<const float> scale, const grid& g,
                           matrix_view<std::uint8_t> codes)
{
    ::tessera::quant::quantize<Arch>(w, scale, g, codes);
}

template <class Arch>
void quant<Arch>::quantize_packed4(matrix_view<const float> w, matrix_view<const float> scale,
                                   vector_view<const float> scale_vector, const grid& g,
                                   matrix_view<std::uint8_t> packed)
{
    ::tessera::quant::quantize_packed4<Arch>(w, scale, scale_vector, g, packed);
}

template <class Arch>
void quant<Arch>::dequantize(matrix_view<const std::int8_t> codes, vector_view<const float> s1, const grid& g,
                             matrix_view<float> out)
{
    ::tessera::quant::dequantize<Arch>(codes, s1, g, out);
}

template <class Arch>
void quant<Arch>::dequantize(matrix_view<const std::uint8_t> codes, vector_view<const float> s1, const grid& g,
                             matrix_view<float> out)
{
    ::tessera::quant::dequantize<Arch>(codes, s1, g, out);
}

template <class Arch>
void quant<Arch>::dequantize_packed4(matrix_view<const std::uint8_t> packed, std::size_t cols,
                                     vector_view<const float> s1, const grid& g, matrix_view<float> out)
{
    ::tessera::quant::dequantize_packed4<Arch>(packed, cols, s1, g, out);
}

} // namespace kernels

namespace quant {

using ::tessera::quant::flexround_gradients;
using ::tessera::quant::flexround_scales;
using ::tessera::quant::quant_grid;

// fake_quantize of flexround.hpp: Ŵ, and optionally the clamp mask.
inline arch fake_quantize(matrix_view<const float> w, const flexround_scales& scales, const quant_grid& grid,
                          matrix_view<float> w_hat, matrix_view<std::uint8_t> mask = {})
{
    return run([&](auto a) { kernels::quant<decltype(a)>::fake_quantize(w, scales, grid, w_hat, mask); });
}

// fake_quantize with int8 codes (symmetric grid).
inline arch fake_quantize(matrix_view<const float> w, const flexround_scales& scales, const quant_grid& grid,
                          matrix_view<float> w_hat, matrix_view<std::uint8_t> mask, matrix_view<std::int8_t> codes)
{
    return run([&](auto a) { kernels::quant<decltype(a)>::fake_quantize(w, scales, grid, w_hat, mask, codes); });
}

// fake_quantize with uint8 codes (asymmetric grid).
inline arch fake_quantize(matrix_view<const float> w, const flexround_scales& scales, const quant_grid& grid,
                          matrix_view<float> w_hat, matrix_view<std::uint8_t> mask, matrix_view<std::uint8_t> codes)
{
    return run([&](auto a) { kernels::quant<decltype(a)>::fake_quantize(w, scales, grid, w_hat, mask, codes); });
}

// flexround_backward of flexround.hpp: the straight-through gradients.
inline arch flexround_backward(matrix_view<const float> w, const flexround_scales& scales, const quant_grid& grid,
                               matrix_view<const float> grad_w_hat, const flexround_gradients& grads)
{
    return run([&](auto a) { kernels::quant<decltype(a)>::flexround_backward(w, scales, grid, grad_w_hat, grads); });
}

// quantize of flexround.hpp with an element-wise S, int8 or uint8 codes.
inline arch quantize(matrix_view<const float> w, matrix_view<const float> scale, const quant_grid& grid,
                     matrix_view<std::int8_t> codes)
{
    return run([&](auto a) { kernels::quant<decltype(a)>::quantize(w, scale, grid, codes); });
}

inline arch quantize(matrix_view<const float> w, matrix_view<const float> scale, const quant_grid& grid,
                     matrix_view<std::uint8_t> codes)
{
    return run([&](auto a) { kernels::quant<decltype(a)>::quantize(w, scale, grid, codes); });
}

// quantize with one S per tensor or per row.
inline arch quantize(matrix_view<const float> w, vector_view<const float> scale, const quant_grid& grid,
                     matrix_view<std::int8_t> codes)
{
    return run([&](auto a) { kernels::quant<decltype(a)>::quantize(w, scale, grid, codes); });
}

inline arch quantize(matrix_view<const float> w, vector_view<const float> scale, const quant_grid& grid,
                     matrix_view<std::uint8_t> codes)
{
    return run([&](auto a) { kernels::quant<decltype(a)>::quantize(w, scale, grid, codes); });
}

// quantize_packed4 of flexround.hpp: 4-bit codes, two to a byte.
inline arch quantize_packed4(matrix_view<const float> w, matrix_view<const float> scale,
                             vector_view<const float> scale_vector, const quant_grid& grid,
                             matrix_view<std::uint8_t> packed)
{
    return run([&](auto a) { kernels::quant<decltype(a)>::quantize_packed4(w, scale, scale_vector, grid, packed); });
}

// dequantize of flexround.hpp: s1 · (c − zp).
inline arch dequantize(matrix_view<const std::int8_t> codes, vector_view<const float> s1, const quant_grid& grid,
                       matrix_view<float> out)
{
    return run([&](auto a) { kernels::quant<decltype(a)>::dequantize(codes, s1, grid, out); });
}

inline arch dequantize(matrix_view<const std::uint8_t> codes, vector_view<const float> s1, const quant_grid& grid,
                       matrix_view<float> out)
{
    return run([&](auto a) { kernels::quant<decltype(a)>::dequantize(codes, s1, grid, out); });
}

// dequantize_packed4 of flexround.hpp.
inline arch dequantize_packed4(matrix_view<const std::uint8_t> packed, std::size_t cols, vector_view<const float> s1,
                               const quant_grid& grid, matrix_view<float> out)
{
    return run([&](auto a) { kernels::quant<decltype(a)>::dequantize_packed4(packed, cols, s1, grid, out); });
}

} // namespace quant

} // namespace tessera::dispatch

// The kernel class specializations of this family for one arch.
#define TESSERA_DISPATCH_QUANT_KERNELS(ACTION, ARCH) ACTION(::tessera::dispatch::kernels::quant<ARCH>)

TESSERA_DISPATCH_FOR_EACH_ARCH(TESSERA_DISPATCH_QUANT_KERNELS, TESSERA_DISPATCH_DECLARE)
