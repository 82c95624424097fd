// Row traversal shared by the gamma-correction passes.
//
// The passes cut an image into rows h (the unit of parallel work) and each
// row into runs of contiguous samples: one run per channel for planar
// images, and the whole row, cut into segments, for interleaved ones.
// gamma_reader hands out the γ of each run as a constant or as one float
// per sample. For an interleaved image with a per-pixel map it expands
// each γ over the pixel's channels into a scratch buffer.
#pragma once

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/stream.hpp"
#include "image.hpp"
#include "kernels.hpp"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <vector>

namespace tessera::imaging {

namespace detail {

inline constexpr const char* forward_name = "tessera::imaging::gamma_correct";
inline constexpr const char* backward_name = "tessera::imaging::gamma_correct_backward";

template <class Expansion>
struct is_series : std::false_type {
};
template <int Order>
struct is_series<taylor_series<Order>> : std::true_type {
};
template <int Order>
struct is_series<log2_exp2_series<Order>> : std::true_type {
};

// γ must be finite and positive, and not subnormal: below the smallest
// normal float, γ·log2 x and the series coefficients lose their precision.
inline bool valid_gamma(float gamma)
{
    return gamma >= std::numeric_limits<float>::min() && gamma < std::numeric_limits<float>::infinity();
}

inline constexpr const char* gamma_requirement = " must be positive, finite and not subnormal, got ";

inline void check_gamma_value(float gamma, const char* function, const char* name)
{
    if (!valid_gamma(gamma)) {
        raise_invalid_argument(function, name, gamma_requirement, gamma);
    }
}

// Returns whether every γ of n consecutive values is valid. The loop does
// not stop early, so that the compiler can vectorise it.
inline bool all_valid_gammas(const float* values, std::size_t n)
{
    bool valid = true;
    for (std::size_t i = 0; i < n; ++i) {
        valid &= valid_gamma(values[i]);
    }
    return valid;
}

// Raises naming the first γ of a per_pixel or per_pixel_channel map that
// valid_gamma rejects, with its position in the image. The map's shape must
// already match `shape`. Other kinds are not checked here.
inline void check_gamma_map_values(const gamma_map& gamma, const image_shape& shape, const char* function,
                                   const char* name)
{
    if (gamma.kind != gamma_kind::per_pixel && gamma.kind != gamma_kind::per_pixel_channel) {
        return;
    }
    const bool per_pixel = gamma.kind == gamma_kind::per_pixel;
    const std::size_t planes = !per_pixel && shape.planar ? shape.channels : 1;
    const std::size_t count = per_pixel || shape.planar ? shape.width : shape.width * shape.channels;
    if (count == 0 || shape.height == 0) {
        return;  // no γ at all, however many rows or planes an empty map claims
    }
    for (std::size_t c = 0; c < planes; ++c) {
        for (std::size_t h = 0; h < shape.height; ++h) {
            const float* row = per_pixel      ? gamma.map.row(h)
                               : shape.planar ? gamma.planar.row(c, h)
                                              : gamma.interleaved.row(h);
            if (all_valid_gammas(row, count)) {
                continue;
            }
            const std::size_t i = static_cast<std::size_t>(
                std::find_if(row, row + count, [](float value) { return !valid_gamma(value); }) - row);
            if (per_pixel) {
                raise_invalid_argument(function, name, gamma_requirement, row[i], " at (h, w) = (", h, ", ", i, ")");
            }
            if (shape.planar) {
                raise_invalid_argument(function, name, gamma_requirement, row[i], " at (c, h, w) = (", c, ", ", h,
                                       ", ", i, ")");
            }
            raise_invalid_argument(function, name, gamma_requirement, row[i], " at (h, w, c) = (", h, ", ",
                                   i / shape.channels, ", ", i % shape.channels, ")");
        }
    }
}

// Samples per segment of an interleaved row: a multiple of the channel
// count, so segments start at pixel boundaries, and about 1024 samples, so
// the scratch buffers stay in L1. Up to 64 channels it is also a multiple of
// 16 floats, so a segment that starts aligned leaves the next one aligned.
// Pixels of more than 1024 channels get a segment each.
inline std::size_t interleaved_segment(std::size_t channels)
{
    if (channels <= 64) {
        return 16 * channels * (64 / channels);
    }
    return channels * std::max<std::size_t>(1, 1024 / channels);
}

// Hands out the γ of each run of samples. Planar images have one run per
// channel and row; interleaved images one run per row, cut into segments.
template <class Arch>
class gamma_reader {
public:
    gamma_reader(const gamma_map& gamma, const image_shape& shape) : gamma_(gamma), shape_(shape)
    {
        segment_ = shape.planar ? shape.width : interleaved_segment(shape.channels);
        if (!shape.planar && shape.channels > 1 && gamma.kind == gamma_kind::per_channel) {
            // Segments start at multiples of the channel count, so one pattern serves all.
            pattern_.resize(segment_);
            for (std::size_t i = 0; i < segment_; ++i) {
                pattern_[i] = gamma.values[i % shape.channels];
            }
        }
    }

    std::size_t segment() const { return segment_; }

    // Whether source() writes into the caller's buffer (of segment() floats).
    bool needs_buffer() const
    {
        return !shape_.planar && shape_.channels > 1 && gamma_.kind == gamma_kind::per_pixel;
    }

    // γ of samples [begin, begin + count) of run `channel` (planar) or of
    // row h (interleaved, where channel is ignored). For interleaved rows
    // `begin` is a pixel boundary, and for a per-channel γ also a multiple
    // of segment().
    kernels::gamma_source source(std::size_t h, std::size_t channel, std::size_t begin, std::size_t count,
                                 float* buffer) const
    {
        switch (gamma_.kind) {
        case gamma_kind::per_image:
            return {nullptr, gamma_.image_gamma()};
        case gamma_kind::per_channel:
            if (shape_.planar || shape_.channels == 1) {
                return {nullptr, gamma_.values[shape_.planar ? channel : 0]};
            }
            return {pattern_.data(), 0.0f};
        case gamma_kind::per_pixel:
            if (shape_.planar || shape_.channels == 1) {
                return {gamma_.map.row(h) + begin, 0.0f};
            }
            expand_pixels(gamma_.map.row(h) + begin / shape_.channels, count / shape_.channels, buffer);
            return {buffer, 0.0f};
        case gamma_kind::per_pixel_channel:
        default:
            if (shape_.planar) {
                return {gamma_.planar.row(channel, h) + begin, 0.0f};
            }
            return {gamma_.interleaved.row(h) + begin, 0.0f};
        }
    }

    // Raises naming the first γ of the map that valid_gamma rejects.
    [[noreturn]] void raise_invalid(const char* function, const char* name) const
    {
        check_gamma_map_values(gamma_, shape_, function, name);
        raise_invalid_argument(function, name, " contains an invalid γ");
    }

private:
    void expand_pixels(const float* gammas, std::size_t pixels, float* buffer) const
    {
        kernels::expand_pixels_run<Arch>{}(gammas, pixels, shape_.channels, buffer);
    }

    const gamma_map& gamma_;
    image_shape shape_;
    std::size_t segment_ = 0;
    std::vector<float> pattern_;
};

// Checks the γ map's extents and every γ in it, so that an invalid γ
// raises before any output is written.
inline void check_gamma(const gamma_map& gamma, const image_shape& shape, const char* function)
{
    check_gamma_shape(gamma, shape, function, "gamma");
    check_gamma_map_values(gamma, shape, function, "gamma");
    if (gamma.kind == gamma_kind::per_image) {
        check_gamma_value(gamma.image_gamma(), function, "gamma");
    } else if (gamma.kind == gamma_kind::per_channel) {
        for (std::size_t c = 0; c < gamma.values.size; ++c) {
            if (!valid_gamma(gamma.values[c])) {
                raise_invalid_argument(function, "gamma[", c, "]", gamma_requirement, gamma.values[c]);
            }
        }
    }
}

inline image_shape shape_of(const planar_image<const float>& image)
{
    return {image.channels, image.height, image.width, true};
}

template <class T>
image_shape shape_of(const interleaved_image<T>& image)
{
    return {image.channels, image.height, image.width, false};
}

// Runs body(h, chunk_scratch) over the image rows in shape-fixed chunks and
// raises through `reader` when any chunk saw an invalid γ. body returns
// false when it read an invalid γ.
template <class Reader, class Body>
void for_each_image_row(const image_shape& shape, const Reader& reader, std::size_t scratch_floats,
                        bool stream, const char* function, Body&& body)
{
    const std::size_t row_samples = shape.width * shape.channels;
    const std::size_t chunk_rows = rows_per_chunk(shape.height, row_samples);
    std::vector<unsigned char> chunk_valid(chunk_count(shape.height, chunk_rows), 1);
    parallel_for_chunks(shape.height, chunk_rows, [&](std::size_t chunk, std::size_t begin, std::size_t end) {
        std::vector<float> scratch(scratch_floats);
        bool valid = true;
        for (std::size_t h = begin; h < end; ++h) {
            valid = body(h, scratch.data()) && valid;
        }
        if (stream) {
            simd::stream_fence();
        }
        chunk_valid[chunk] = valid ? 1 : 0;
    });
    if (std::find(chunk_valid.begin(), chunk_valid.end(), 0) != chunk_valid.end()) {
        reader.raise_invalid(function, "gamma");
    }
}

} // namespace detail

} // namespace tessera::imaging
