// Gamma correction y = x^γ: public API.
//
// Low-light enhancement networks such as the one of Wang et al., "Low-Light
// Image Enhancement with Illumination-Aware Gamma Correction and Complete
// Image Modelling Network" (ICCV 2023), predict a gamma map and brighten an
// image with y = x^γ, computing the power by a truncated Taylor series.
// This header applies such a correction to a whole image:
//
//   gamma_correct(expansion, in, gamma, out)
//       in, out: planar_image<float> [C, H, W], interleaved_image<float>
//       [H, W, C], or interleaved 8- or 16-bit images (uint8_t, uint16_t);
//       gamma: a gamma_map (per image, channel, pixel, or pixel and channel);
//       expansion: taylor_series<N>, log2_exp2_series<N>, exact_pow, or
//       lookup_table (integer images with a per-image or per-channel γ).
//   gamma_correct_backward(expansion, x, gamma, grad_y, grad_x, grad_gamma)
//       the gradients of the truncated series (taylor_series<N> or
//       log2_exp2_series<N>) for float images: grad_x = grad_y·∂y/∂x and
//       grad_gamma = Σ grad_y·∂y/∂γ over the samples that share each γ.
// expansions.hpp defines the expansions and their error bounds, image.hpp
// the views and gamma maps, lut.hpp the reusable gamma_lut.
//
// Numerical contract
// - Input rules, for every expansion: x ≤ 0 gives 0 (negative x is
//   clamped to 0, and x = 0 gives 0 for every γ > 0), x = +Inf gives +Inf,
//   and a NaN x gives NaN. The gradients are 0 for x ≤ 0 and x = +Inf and
//   NaN for a NaN x.
// - γ must be positive, finite and not subnormal (at least 2^-126). Every
//   γ, per-pixel maps included, is checked before any output is written,
//   so a call that raises leaves the output untouched. For a per-pixel map
//   that check is one extra read of the map.
// - Aliasing: out may be the same view as in (in place). No other overlap
//   between an output and any input is allowed, the γ map included.
// - taylor_series<N>: with one γ per run (per image, or per channel of a
//   planar image) the float kernels use Horner's rule on coefficients
//   C(γ, n) rounded to float; with a γ per sample, the nested form
//   1 + a_1 t (1 + a_2 t (...)). Interleaved images with a γ per pixel and
//   2 to L channels (L lanes, AVX2 or AVX-512) use Horner's rule on
//   coefficients built in float from the same a_n. All differ from
//   reference::taylor_series (computed in double) by at most
//   taylor_rounding_bound(N)·Σ_n |C(γ, n)(x − 1)^n| + 2^-24·|y|.
//   Against x^γ its error on (0, 1] is at most taylor_series_error_bound
//   (N, γ) (expansions.hpp), approached near x = 0 when γ < 1. For x in
//   (1, 2] the series converges (slowly at x = 2), with error about
//   |C(γ, N+1)|·(x − 1)^(N+1) below 2. For x > 2 it diverges. At x ≥ 2 the
//   kernels return the value of the polynomial.
//   NOTE: there the rounding of the per-sample forms can exceed the bound
//   above, because a_n = γ·(1/n) − (n − 1)/n need not be exactly 0 for an
//   integer γ = n − 1 (it is for γ = 1, 2 and 3, not for γ = 5), and large
//   powers of x − 1 amplify that.
// - log2_exp2_series<N>: the float kernels differ from the double
//   reference::log2_exp2_series by at most 2^-24·(8 + 4|γ·log2 x|)·|y| +
//   2^-149. The 4|z| covers about five roundings of z = γ·log2 x (of s,
//   the log2 coefficients and the products), scaled by ln 2.
//   The exception is a z within that rounding of a half-integer: float and
//   double may then round z to neighbouring k, and the results differ by
//   up to twice the truncation error of 2^f,
//   2·log2_exp2_fraction_error(N)·|y|. Against x^γ on (0, 1] the error is
//   at most log2_exp2_error_bound(N, γ_max) either way. For x > 1 the
//   result is x^γ·(1 + ε) with |ε| at most that bound plus
//   2^-22·|γ·log2 x|, because splitting x into exponent and mantissa works
//   the same in every binade.
//   Results that underflow round to a subnormal or 0, results that
//   overflow give +Inf.
// - exact_pow: y = x^γ by std::pow in double precision, rounded once to
//   float or to the integer code.
// - lookup_table builds a gamma_lut (lut.hpp) on every call. Build one
//   yourself to reuse it across images.
// - Integer images: x = code / max_code (max_code = 255 or 65535), and
//   the result is stored as round_half_even(clamp(y·max_code, 0,
//   max_code)), a NaN y giving 0. With exact_pow and lookup_table the
//   codes equal reference::exact_pow_code exactly. With the series the
//   float result is rounded, so a code can differ from the rounding of the
//   double reference where y·max_code lies within the bounds above of a
//   rounding tie. The difference is 1 code, or more at a k tie of
//   log2_exp2_series.
// - Backward: the float kernels differ from reference::*_gradients by
//   rounding of the same order as the forward pass (tested with a
//   tolerance scaled by the sum of term magnitudes). Per-image and
//   per-channel γ gradients are accumulated in double per image row, then
//   over rows in order. Per-pixel ones add the channels in order in float,
//   the same in both layouts. grad_x may be the same view as grad_y.
// - An empty image writes nothing; gradient sums over no sample are 0.
// - A forward pass over float images whose traffic is at least
//   tessera::streaming_threshold() bytes writes its output with streaming
//   stores (core/stream.hpp). The values are the same either way.
// - Results do not depend on the number of OpenMP threads.
//
// Errors: shapes that do not match, strides that make rows or planes
// overlap, a null pointer with a non-empty shape, a non-positive or
// non-finite γ, a per-pixel-channel map whose layout differs from the
// image's, and lookup_table with a per-pixel map raise
// tessera::invalid_argument naming the function, parameter and values.
#pragma once

#include "../core/arch.hpp"
#include "../core/error.hpp"
#include "../core/extents.hpp"
#include "../core/parallel.hpp"
#include "../core/stream.hpp"
#include "../core/view.hpp"
#include "backward.hpp"
#include "expansions.hpp"
#include "image.hpp"
#include "kernels.hpp"
#include "lut.hpp"
#include "reference.hpp"
#include "rows.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace tessera::imaging {

// The factor of the rounding bound of taylor_series<N> against its double
// reference: at most three roundings per order (the nested form's two
// multiply-adds and a product; Horner's rule needs one, plus the rounding
// of each coefficient), each relative to the magnitude of the terms.
constexpr double taylor_rounding_bound(int order)
{
    return (3.0 * order + 2.0) / 16777216.0;
}

namespace detail {

// The run kernel of an expansion: the SIMD kernel of a series, or the
// scalar double-precision exact_pow.
template <class Arch, class Expansion>
struct float_run {
    bool operator()(const float* x, kernels::gamma_source gamma, float* y, std::size_t n, bool stream) const
    {
        if constexpr (is_series<Expansion>::value) {
            return kernels::gamma_run<Arch, Expansion>{}(x, gamma, y, n, stream);
        } else {
            bool valid = true;
            for (std::size_t i = 0; i < n; ++i) {
                const float g = gamma.values == nullptr ? gamma.constant : gamma.values[i];
                valid = valid && valid_gamma(g);
                y[i] = static_cast<float>(reference::exact_pow(x[i], g));
            }
            return valid;
        }
    }
};

// Validates the arguments of a forward pass and returns the image's shape.
template <class Image, class MutableImage>
image_shape check_forward(const Image& in, const gamma_map& gamma, const MutableImage& out)
{
    check_image(in, forward_name, "in");
    check_same_shape(out, in, forward_name, "out", "in");
    const image_shape shape = shape_of(in);
    check_gamma(gamma, shape, forward_name);
    return shape;
}

template <class Arch, class Expansion>
void forward_planar(const planar_image<const float>& in, const gamma_map& gamma, const planar_image<float>& out)
{
    const image_shape shape = check_forward(in, gamma, out);
    if (in.empty()) {
        return;
    }

    const gamma_reader<Arch> reader(gamma, shape);
    const bool stream = is_series<Expansion>::value && streams_output(2 * in.channels * in.height * in.width * sizeof(float));
    for_each_image_row(shape, reader, 0, stream, forward_name, [&](std::size_t h, float*) {
        bool valid = true;
        for (std::size_t c = 0; c < in.channels; ++c) {
            const kernels::gamma_source source = reader.source(h, c, 0, in.width, nullptr);
            valid = float_run<Arch, Expansion>{}(in.row(c, h), source, out.row(c, h), in.width, stream) && valid;
        }
        return valid;
    });
}

// The fused per-pixel kernel of an expansion, where there is one.
template <class Arch, class Expansion>
struct has_pixel_run : std::false_type {
};

template <class Arch, int Order>
struct has_pixel_run<Arch, taylor_series<Order>>
    : std::bool_constant<kernels::taylor_pixel_run<Arch, Order>::supported()> {
};

template <class Arch, class Expansion>
struct pixel_run;

template <class Arch, int Order>
struct pixel_run<Arch, taylor_series<Order>> : kernels::taylor_pixel_run<Arch, Order> {
};

template <class Arch, class Expansion>
void forward_interleaved(const interleaved_image<const float>& in, const gamma_map& gamma,
                         const interleaved_image<float>& out)
{
    const image_shape shape = check_forward(in, gamma, out);
    if (in.empty()) {
        return;
    }

    const gamma_reader<Arch> reader(gamma, shape);
    const std::size_t row_length = in.row_length();
    const std::size_t segment = reader.segment();
    const bool stream = is_series<Expansion>::value && streams_output(2 * in.height * row_length * sizeof(float));
    const std::size_t scratch = reader.needs_buffer() ? segment : 0;
    for_each_image_row(shape, reader, scratch, stream, forward_name, [&](std::size_t h, float* buffer) {
        bool valid = true;
        for (std::size_t begin = 0; begin < row_length; begin += segment) {
            std::size_t start = begin;
            const std::size_t end = std::min(begin + segment, row_length);
            if constexpr (has_pixel_run<Arch, Expansion>::value) {
                if (gamma.kind == gamma_kind::per_pixel) {
                    const auto done = pixel_run<Arch, Expansion>{}(in.row(h) + begin, gamma.map.row(h) + begin / in.channels,
                                                                   out.row(h) + begin, (end - begin) / in.channels,
                                                                   in.channels, stream);
                    valid = done.valid && valid;
                    start += done.pixels * in.channels;
                }
            }
            if (start < end) {
                const kernels::gamma_source source = reader.source(h, 0, start, end - start, buffer);
                valid = float_run<Arch, Expansion>{}(in.row(h) + start, source, out.row(h) + start, end - start,
                                                     stream) &&
                        valid;
            }
        }
        return valid;
    });
}

// Integer samples go through float buffers of one segment: codes to x,
// the float run, y to codes. exact_pow instead computes each code from the
// code in double precision, like the lookup table.
template <class Arch, class Expansion, class Code>
void forward_codes(const interleaved_image<const Code>& in, const gamma_map& gamma, const interleaved_image<Code>& out)
{
    const image_shape shape = check_forward(in, gamma, out);
    if (in.empty()) {
        return;
    }

    const gamma_reader<Arch> reader(gamma, shape);
    const std::size_t row_length = in.row_length();
    const std::size_t segment = reader.segment();
    constexpr float max_code = static_cast<float>(std::numeric_limits<Code>::max());
    for_each_image_row(shape, reader, 4 * segment, false, forward_name, [&](std::size_t h, float* scratch) {
        float* gamma_buffer = scratch;
        float* x = scratch + segment;
        float* y = scratch + 2 * segment;
        float* codes = scratch + 3 * segment;
        const Code* in_row = in.row(h);
        Code* out_row = out.row(h);
        bool valid = true;
        for (std::size_t begin = 0; begin < row_length; begin += segment) {
            const std::size_t count = std::min(segment, row_length - begin);
            const kernels::gamma_source source = reader.source(h, 0, begin, count, gamma_buffer);
            if constexpr (is_series<Expansion>::value) {
                for (std::size_t i = 0; i < count; ++i) {
                    x[i] = static_cast<float>(in_row[begin + i]) / max_code;
                }
                valid = kernels::gamma_run<Arch, Expansion>{}(x, source, y, count, false) && valid;
                kernels::codes_from_float_run<Arch>{}(y, codes, count, max_code);
                for (std::size_t i = 0; i < count; ++i) {
                    out_row[begin + i] = static_cast<Code>(codes[i]);
                }
            } else {
                for (std::size_t i = 0; i < count; ++i) {
                    const float g = source.values == nullptr ? source.constant : source.values[i];
                    valid = valid && valid_gamma(g);
                    out_row[begin + i] = reference::exact_pow_code<Code>(in_row[begin + i], g);
                }
            }
        }
        return valid;
    });
}

template <class Arch, class Code>
void forward_lookup(const interleaved_image<const Code>& in, const gamma_map& gamma, const interleaved_image<Code>& out)
{
    check_forward(in, gamma, out);
    // Checked before the empty-image return, so that the kind is rejected for every shape.
    if (gamma.kind != gamma_kind::per_image && gamma.kind != gamma_kind::per_channel) {
        raise_invalid_argument(forward_name, "lookup_table needs a per_image or per_channel gamma, got ",
                               to_string(gamma.kind));
    }
    if (in.empty()) {
        return;
    }
    if (gamma.kind == gamma_kind::per_image) {
        gamma_lut<Code>(vector_view<const float>(&gamma.stored_value, 1), in.channels).template apply<Arch>(in, out);
    } else {
        gamma_lut<Code>(gamma.values, in.channels).template apply<Arch>(in, out);
    }
}

} // namespace detail

// Marks the lookup-table path of gamma_correct (integer images only).
struct lookup_table {
};

template <class Arch = default_arch, class Expansion>
void gamma_correct(Expansion, const planar_image<const float>& in, const gamma_map& gamma,
                   const planar_image<float>& out)
{
    static_assert(!std::is_same_v<Expansion, lookup_table>, "lookup_table is for 8- and 16-bit images");
    detail::forward_planar<Arch, Expansion>(in, gamma, out);
}

template <class Arch = default_arch, class Expansion>
void gamma_correct(Expansion, const interleaved_image<const float>& in, const gamma_map& gamma,
                   const interleaved_image<float>& out)
{
    static_assert(!std::is_same_v<Expansion, lookup_table>, "lookup_table is for 8- and 16-bit images");
    detail::forward_interleaved<Arch, Expansion>(in, gamma, out);
}

template <class Arch = default_arch, class Expansion>
void gamma_correct(Expansion, const interleaved_image<const std::uint8_t>& in, const gamma_map& gamma,
                   const interleaved_image<std::uint8_t>& out)
{
    if constexpr (std::is_same_v<Expansion, lookup_table>) {
        detail::forward_lookup<Arch>(in, gamma, out);
    } else {
        detail::forward_codes<Arch, Expansion>(in, gamma, out);
    }
}

template <class Arch = default_arch, class Expansion>
void gamma_correct(Expansion, const interleaved_image<const std::uint16_t>& in, const gamma_map& gamma,
                   const interleaved_image<std::uint16_t>& out)
{
    if constexpr (std::is_same_v<Expansion, lookup_table>) {
        detail::forward_lookup<Arch>(in, gamma, out);
    } else {
        detail::forward_codes<Arch, Expansion>(in, gamma, out);
    }
}

} // namespace tessera::imaging
