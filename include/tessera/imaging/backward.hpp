// Gamma correction, backward pass of the truncated series.
//
// For y = f_N(x, γ), the truncated expansion of x^γ (taylor_series<N> or
// log2_exp2_series<N>), and the upstream gradient grad_y = ∂loss/∂y:
//   grad_x = grad_y · ∂f_N/∂x, one value per sample, laid out like x;
//   grad_gamma = Σ grad_y · ∂f_N/∂γ over the samples that share each γ:
//     per_image           one float, the sum over every sample;
//     per_channel         one float per channel;
//     per_pixel           a [H, W] map, the sum over the pixel's channels;
//     per_pixel_channel   one value per sample, laid out like x.
// These are the exact derivatives of the polynomial the forward pass
// evaluates, not of x^γ, so a network trained with the approximation gets
// the gradients of what it computes. For log2_exp2_series the integer k
// of z = k + f is held fixed, since it is piecewise constant.
//
// Contract: the input rules of gamma.hpp (0 for x ≤ 0 and x = +Inf, NaN
// for a NaN x) apply to both gradients. The per-sample values differ from
// reference::taylor_series_gradients and reference::log2_exp2_series_gradients
// (double) by float rounding.
// NOTE: a per-sample value is grad_y times ∂f_N/∂x or ∂f_N/∂γ formed in
// float from y. Where y or that derivative exceeds FLT_MAX, or for
// taylor_series<N> where its terms do, about
// (N + 1)·(γ + 1)·Σ|C(γ, n)(x − 1)^n|, the value is ±Inf or NaN, even where
// the true derivative or its product with grad_y would fit (for example
// x = 1.00914 and γ = 1e4, where y ≈ 3e39 but y·ln x ≈ 3e37, or grad_y = 0).
// Per-image and per-channel sums are accumulated in double per image row and
// then over rows in order, and per-pixel sums add the channels in order in
// float, so no sum depends on the thread count or the layout. grad_x may be
// the same view as grad_y; no other output may overlap an input.
// Every γ, per-pixel maps included, is validated before any output is
// written, so a call that raises leaves grad_x and grad_gamma untouched.
#pragma once

#include "../core/arch.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/view.hpp"
#include "expansions.hpp"
#include "image.hpp"
#include "kernels.hpp"
#include "rows.hpp"

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

namespace tessera::imaging {

namespace detail {

template <class T>
T* row_of(const planar_image<T>& image, std::size_t channel, std::size_t h)
{
    return image.row(channel, h);
}

template <class T>
T* row_of(const interleaved_image<T>& image, std::size_t, std::size_t h)
{
    return image.row(h);
}

inline void check_gradient_output(const gamma_gradient& grad_gamma, const gamma_map& gamma, const image_shape& shape)
{
    if (grad_gamma.kind != gamma.kind) {
        const int kind_value = static_cast<int>(grad_gamma.kind);
        if (kind_value < 0 || kind_value > static_cast<int>(gamma_kind::per_pixel_channel)) {
            raise_invalid_argument(backward_name, "grad_gamma.kind is not a gamma_kind value: ", kind_value);
        }
        raise_invalid_argument(backward_name, "grad_gamma must be of the kind of gamma (", to_string(gamma.kind),
                               "), got ", to_string(grad_gamma.kind));
    }
    check_gamma_shape(grad_gamma, shape, backward_name, "grad_gamma");
    if (grad_gamma.kind == gamma_kind::per_image && grad_gamma.value == nullptr) {
        raise_invalid_argument(backward_name, "grad_gamma is a per_image gradient with a null pointer");
    }
}

// Reduces the per-sample γ gradients of one run into grad_gamma, or into
// the row's double sums for per-image and per-channel γ.
struct gamma_gradient_sink {
    const gamma_gradient& grad_gamma;
    image_shape shape;

    // samples: the per-sample gradients of run `channel` (planar) or of the
    // interleaved row segment that starts at sample `begin`.
    void add(std::size_t h, std::size_t channel, std::size_t begin, const float* samples, std::size_t count,
             double* row_sums) const
    {
        switch (grad_gamma.kind) {
        case gamma_kind::per_image:
            for (std::size_t i = 0; i < count; ++i) {
                row_sums[0] += samples[i];
            }
            break;
        case gamma_kind::per_channel:
            if (shape.planar) {
                for (std::size_t i = 0; i < count; ++i) {
                    row_sums[channel] += samples[i];
                }
            } else {
                // Segments start at a pixel boundary, so sample i is in channel i mod C.
                for (std::size_t i = 0; i < count; ++i) {
                    row_sums[i % shape.channels] += samples[i];
                }
            }
            break;
        case gamma_kind::per_pixel: {
            float* map_row = grad_gamma.map.row(h);
            if (shape.planar) {
                // Channels arrive in order 0, 1, ...: the first writes, the others add.
                for (std::size_t i = 0; i < count; ++i) {
                    map_row[i] = channel == 0 ? samples[i] : map_row[i] + samples[i];
                }
            } else {
                const std::size_t channels = shape.channels;
                // The same float additions in the same order as for planar images.
                for (std::size_t p = 0; p < count / channels; ++p) {
                    float sum = samples[p * channels];
                    for (std::size_t c = 1; c < channels; ++c) {
                        sum += samples[p * channels + c];
                    }
                    map_row[begin / channels + p] = sum;
                }
            }
            break;
        }
        case gamma_kind::per_pixel_channel:
        default:
            break;  // written directly by the kernel
        }
    }
};

template <class Arch, class Expansion, class Image, class MutableImage>
void backward_impl(const Image& x, const gamma_map& gamma, const Image& grad_y, const MutableImage& grad_x,
                   const gamma_gradient& grad_gamma)
{
    static_assert(is_series<Expansion>::value,
                  "gamma_correct_backward is defined for taylor_series<N> and log2_exp2_series<N>");
    check_image(x, backward_name, "x");
    check_same_shape(grad_y, x, backward_name, "grad_y", "x");
    check_same_shape(grad_x, x, backward_name, "grad_x", "x");
    const image_shape shape = shape_of(x);
    check_gamma(gamma, shape, backward_name);
    check_gradient_output(grad_gamma, gamma, shape);

    // Sums over no sample are 0.
    const std::size_t sum_slots = grad_gamma.kind == gamma_kind::per_image     ? 1
                                  : grad_gamma.kind == gamma_kind::per_channel ? shape.channels
                                                                               : 0;
    if (x.empty()) {
        for (std::size_t c = 0; c < sum_slots; ++c) {
            (grad_gamma.kind == gamma_kind::per_image ? *grad_gamma.value : grad_gamma.values[c]) = 0.0f;
        }
        // A map of no columns has nothing to zero, however many rows it claims.
        if (grad_gamma.kind == gamma_kind::per_pixel && shape.width != 0) {
            for (std::size_t h = 0; h < shape.height; ++h) {
                std::fill(grad_gamma.map.row(h), grad_gamma.map.row(h) + shape.width, 0.0f);
            }
        }
        return;
    }

    const gamma_reader<Arch> reader(gamma, shape);
    const std::size_t segment = reader.segment();
    const gamma_gradient_sink sink{grad_gamma, shape};
    std::vector<double> row_sums(checked_mul(shape.height, sum_slots, backward_name, "row sums"), 0.0);
    const bool direct = grad_gamma.kind == gamma_kind::per_pixel_channel;

    // Scratch: the expanded γ segment, then the per-sample γ gradients.
    for_each_image_row(shape, reader, 2 * segment, false, backward_name, [&](std::size_t h, float* scratch) {
        float* gamma_buffer = scratch;
        float* samples = scratch + segment;
        double* sums = sum_slots == 0 ? nullptr : row_sums.data() + h * sum_slots;
        bool valid = true;
        const std::size_t runs = shape.planar ? shape.channels : 1;
        const std::size_t run_length = shape.planar ? shape.width : shape.width * shape.channels;
        for (std::size_t run = 0; run < runs; ++run) {
            for (std::size_t begin = 0; begin < run_length; begin += segment) {
                const std::size_t count = std::min(segment, run_length - begin);
                const kernels::gamma_source source = reader.source(h, run, begin, count, gamma_buffer);
                float* gamma_out = samples;
                if (direct) {
                    gamma_out = (shape.planar ? grad_gamma.planar.row(run, h) : grad_gamma.interleaved.row(h)) + begin;
                }
                const auto* x_row = shape.planar ? row_of(x, run, h) : row_of(x, 0, h);
                const auto* grad_y_row = shape.planar ? row_of(grad_y, run, h) : row_of(grad_y, 0, h);
                float* grad_x_row = shape.planar ? row_of(grad_x, run, h) : row_of(grad_x, 0, h);
                valid = kernels::gamma_backward_run<Arch, Expansion>{}(x_row + begin, source, grad_y_row + begin,
                                                                       grad_x_row + begin, gamma_out, count) &&
                        valid;
                sink.add(h, run, begin, samples, direct ? 0 : count, sums);
            }
        }
        return valid;
    });

    // Rows in order, so the sums do not depend on the thread count.
    for (std::size_t slot = 0; slot < sum_slots; ++slot) {
        double total = 0.0;
        for (std::size_t h = 0; h < shape.height; ++h) {
            total += row_sums[h * sum_slots + slot];
        }
        (grad_gamma.kind == gamma_kind::per_image ? *grad_gamma.value : grad_gamma.values[slot]) =
            static_cast<float>(total);
    }
}

} // namespace detail

template <class Arch = default_arch, class Expansion>
void gamma_correct_backward(Expansion, const planar_image<const float>& x, const gamma_map& gamma,
                            const planar_image<const float>& grad_y, const planar_image<float>& grad_x,
                            const gamma_gradient& grad_gamma)
{
    detail::backward_impl<Arch, Expansion>(x, gamma, grad_y, grad_x, grad_gamma);
}

template <class Arch = default_arch, class Expansion>
void gamma_correct_backward(Expansion, const interleaved_image<const float>& x, const gamma_map& gamma,
                            const interleaved_image<const float>& grad_y, const interleaved_image<float>& grad_x,
                            const gamma_gradient& grad_gamma)
{
    detail::backward_impl<Arch, Expansion>(x, gamma, grad_y, grad_x, grad_gamma);
}

} // namespace tessera::imaging
