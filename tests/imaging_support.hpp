// Helpers shared by the gamma-correction tests.
//
// - test_image<T> is a planar or interleaved image with chosen row and
//   plane padding inside a guarded_buffer, so tests can check that no pass
//   writes padding or guards. Its elements start out as sentinel bytes.
// - gamma_storage stores a γ map of each kind for a shape and returns the γ
//   of any sample.
// - taylor_tolerance and log2_exp2_tolerance are the float-versus-double
//   bounds that gamma.hpp states.
#pragma once

#include "test_support.hpp"

#include <tessera/imaging/gamma.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace tessera::test {

struct image_layout {
    std::size_t channels;
    std::size_t height;
    std::size_t width;
    bool planar;
    std::size_t row_padding = 0;    // elements after each row
    std::size_t plane_padding = 0;  // elements after each plane (planar only)
    std::size_t offset = 0;         // elements past a 64-byte boundary
};

template <class T>
class test_image {
public:
    explicit test_image(const image_layout& layout)
        : layout_(layout),
          row_stride_(layout.planar ? layout.width + layout.row_padding
                                    : layout.width * layout.channels + layout.row_padding),
          plane_stride_(layout.planar ? layout.height * row_stride_ + layout.plane_padding : 0),
          buffer_(std::max<std::size_t>(1, layout.planar ? layout.channels * plane_stride_ : layout.height * row_stride_),
                  layout.offset)
    {
    }

    std::size_t channels() const { return layout_.channels; }
    std::size_t height() const { return layout_.height; }
    std::size_t width() const { return layout_.width; }
    bool planar() const { return layout_.planar; }

    std::size_t index(std::size_t c, std::size_t h, std::size_t w) const
    {
        return layout_.planar ? c * plane_stride_ + h * row_stride_ + w : h * row_stride_ + w * layout_.channels + c;
    }

    T& at(std::size_t c, std::size_t h, std::size_t w) { return buffer_[index(c, h, w)]; }
    const T& at(std::size_t c, std::size_t h, std::size_t w) const { return buffer_[index(c, h, w)]; }

    imaging::planar_image<T> planar_view()
    {
        return {buffer_.data(), layout_.channels, layout_.height, layout_.width, row_stride_, plane_stride_};
    }
    imaging::planar_image<const T> planar_view() const
    {
        return {buffer_.data(), layout_.channels, layout_.height, layout_.width, row_stride_, plane_stride_};
    }
    imaging::interleaved_image<T> interleaved_view()
    {
        return {buffer_.data(), layout_.height, layout_.width, layout_.channels, row_stride_};
    }
    imaging::interleaved_image<const T> interleaved_view() const
    {
        return {buffer_.data(), layout_.height, layout_.width, layout_.channels, row_stride_};
    }

    // True when nothing outside the samples (padding, guards) was written.
    bool outside_intact() const
    {
        if (!buffer_.guards_intact()) {
            return false;
        }
        std::vector<bool> inside(buffer_.size(), false);
        for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) { inside[index(c, h, w)] = true; });
        for (std::size_t i = 0; i < buffer_.size(); ++i) {
            if (!inside[i] && !buffer_.element_untouched(i)) {
                return false;
            }
        }
        return true;
    }

    template <class Body>
    void for_each_sample(Body&& body) const
    {
        for (std::size_t c = 0; c < layout_.channels; ++c) {
            for (std::size_t h = 0; h < layout_.height; ++h) {
                for (std::size_t w = 0; w < layout_.width; ++w) {
                    body(c, h, w);
                }
            }
        }
    }

private:
    image_layout layout_;
    std::size_t row_stride_;
    std::size_t plane_stride_;
    guarded_buffer<T> buffer_;
};

// A γ map of one kind for a shape, with values drawn by a callback.
class gamma_storage {
public:
    template <class Draw>
    gamma_storage(imaging::gamma_kind kind, const image_layout& layout, Draw&& draw)
        : kind_(kind), layout_(layout), image_(layout)
    {
        switch (kind) {
        case imaging::gamma_kind::per_image:
            value_ = draw();
            break;
        case imaging::gamma_kind::per_channel:
            values_.resize(layout.channels);
            for (float& value : values_) {
                value = draw();
            }
            break;
        case imaging::gamma_kind::per_pixel:
            map_.resize(layout.height * (layout.width + 3));
            for (float& value : map_) {
                value = draw();
            }
            break;
        case imaging::gamma_kind::per_pixel_channel:
            image_.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) { image_.at(c, h, w) = draw(); });
            break;
        }
    }

    float gamma(std::size_t c, std::size_t h, std::size_t w) const
    {
        switch (kind_) {
        case imaging::gamma_kind::per_image: return value_;
        case imaging::gamma_kind::per_channel: return values_[c];
        case imaging::gamma_kind::per_pixel: return map_[h * (layout_.width + 3) + w];
        case imaging::gamma_kind::per_pixel_channel:
        default: return image_.at(c, h, w);
        }
    }

    // Overwrites the γ of sample (c, h, w) (for the map kinds).
    void set(std::size_t c, std::size_t h, std::size_t w, float value)
    {
        if (kind_ == imaging::gamma_kind::per_pixel) {
            map_[h * (layout_.width + 3) + w] = value;
        } else {
            image_.at(c, h, w) = value;
        }
    }

    imaging::gamma_map map() const
    {
        switch (kind_) {
        case imaging::gamma_kind::per_image: return imaging::gamma_map::per_image(value_);
        case imaging::gamma_kind::per_channel: return imaging::gamma_map::per_channel({values_.data(), values_.size()});
        case imaging::gamma_kind::per_pixel:
            // A row stride of width + 3: the map is a crop of a wider one.
            return imaging::gamma_map::per_pixel({map_.data(), layout_.height, layout_.width, layout_.width + 3});
        case imaging::gamma_kind::per_pixel_channel:
        default:
            if (layout_.planar) {
                return imaging::gamma_map::per_pixel_channel(image_.planar_view());
            }
            return imaging::gamma_map::per_pixel_channel(image_.interleaved_view());
        }
    }

private:
    imaging::gamma_kind kind_;
    image_layout layout_;
    float value_ = 1.0f;
    std::vector<float> values_;
    std::vector<float> map_;
    test_image<float> image_;
};

inline constexpr imaging::gamma_kind all_gamma_kinds[] = {
    imaging::gamma_kind::per_image, imaging::gamma_kind::per_channel, imaging::gamma_kind::per_pixel,
    imaging::gamma_kind::per_pixel_channel};

// Σ_n |C(γ, n)·(x − 1)^n|, the magnitude that float rounding of the Taylor series scales with.
inline double taylor_term_magnitude(double x, double gamma, int order)
{
    double sum = 0.0;
    for (int n = 0; n <= order; ++n) {
        sum += std::fabs(imaging::reference::binomial(gamma, n) * std::pow(x - 1.0, n));
    }
    return sum;
}

// The bound of gamma.hpp on |taylor_series float − double reference|.
inline double taylor_tolerance(double x, double gamma, int order, double reference)
{
    return imaging::taylor_rounding_bound(order) * taylor_term_magnitude(x, gamma, order) +
           std::ldexp(std::fabs(reference), -24) + std::numeric_limits<float>::denorm_min();
}

// The bound of gamma.hpp on |log2_exp2_series float − double reference|, with its exception
// for z = γ·log2 x next to a half-integer, where float and double may pick neighbouring k.
inline double log2_exp2_tolerance(double x, double gamma, double reference, int order)
{
    // z as the reference computes it, from the truncated series of log2 m.
    const bool finite = x > 0.0 && x < std::numeric_limits<double>::infinity();
    const double z = finite ? gamma * imaging::reference::split_log2(x, order).log2_x : 0.0;
    const double rounding = std::ldexp(8.0 + 4.0 * std::fabs(z), -24);
    double tolerance = rounding * std::fabs(reference) + std::numeric_limits<float>::denorm_min();
    const double distance_to_half = std::fabs(std::fabs(z - std::nearbyint(z)) - 0.5);
    if (distance_to_half <= rounding) {
        tolerance += 2.0 * imaging::log2_exp2_fraction_error(order) * std::fabs(reference);
    }
    return tolerance;
}

// Inputs x that exercise the special cases and the split into exponent and mantissa.
inline float adversarial_sample(std::mt19937& rng)
{
    static const float specials[] = {0.0f,
                                     -0.0f,
                                     -0.5f,
                                     -std::numeric_limits<float>::infinity(),
                                     std::numeric_limits<float>::infinity(),
                                     std::numeric_limits<float>::quiet_NaN(),
                                     1.0f,
                                     std::nextafter(1.0f, 0.0f),
                                     std::nextafter(1.0f, 2.0f),
                                     std::numeric_limits<float>::min(),
                                     std::numeric_limits<float>::denorm_min(),
                                     3e-39f,
                                     0.70710677f,
                                     0.70710683f,
                                     1.4142135f,
                                     1.5f,
                                     1.99f};
    const int kind = uniform_int(rng, 0, 9);
    if (kind == 0) {
        return specials[uniform_int(rng, 0, static_cast<int>(std::size(specials)) - 1)];
    }
    if (kind == 1) {
        // Any binade from 2^-149 to 1.
        return std::ldexp(uniform(rng, 1.0f, 2.0f), uniform_int(rng, -149, -1));
    }
    return uniform(rng, 0.0f, 1.0f);
}

} // namespace tessera::test
