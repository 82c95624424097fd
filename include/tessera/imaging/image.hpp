// Image views and gamma maps of the imaging family.
//
// An image is a caller-owned array of `channels` × `height` × `width`
// samples in one of two layouts:
//   planar_image       [C, H, W]: sample (c, h, w) at data[c·plane_stride + h·row_stride + w]
//   interleaved_image  [H, W, C]: sample (h, w, c) at data[h·row_stride + w·C + c]
// Strides are in elements. A row stride larger than the row (W for planar,
// W·C for interleaved) describes a padded buffer or a crop of a larger
// image. Float samples are normalised to [0, 1]; 8- and 16-bit samples
// represent code / 255 and code / 65535.
//
// A gamma map assigns a γ to each sample:
//   per_image           one γ for every sample
//   per_channel         γ[c], one per channel
//   per_pixel           a [H, W] map with a row stride, shared by the channels of a pixel
//   per_pixel_channel   one γ per sample, laid out like the image (planar or interleaved)
// gamma_gradient has the same four kinds and receives ∂loss/∂γ in the
// backward pass: the sum of the per-sample gradients over the samples that
// share each γ.
#pragma once

#include "../core/error.hpp"
#include "../core/extents.hpp"
#include "../core/view.hpp"

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace tessera::imaging {

template <class T>
struct planar_image {
    T* data = nullptr;
    std::size_t channels = 0;
    std::size_t height = 0;
    std::size_t width = 0;
    std::size_t row_stride = 0;    // elements between (c, h, w) and (c, h + 1, w), at least width
    std::size_t plane_stride = 0;  // elements between (c, h, w) and (c + 1, h, w)

    constexpr planar_image() = default;

    // A dense image: rows of `width` and planes of height · width elements.
    constexpr planar_image(T* pointer, std::size_t channel_count, std::size_t height_, std::size_t width_)
        : data(pointer), channels(channel_count), height(height_), width(width_), row_stride(width_),
          plane_stride(height_ * width_)
    {
    }

    constexpr planar_image(T* pointer, std::size_t channel_count, std::size_t height_, std::size_t width_,
                           std::size_t row_stride_, std::size_t plane_stride_)
        : data(pointer), channels(channel_count), height(height_), width(width_), row_stride(row_stride_),
          plane_stride(plane_stride_)
    {
    }

    // A view of const samples can be made from a view of mutable ones.
    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    constexpr planar_image(planar_image<U> other)
        : data(other.data), channels(other.channels), height(other.height), width(other.width),
          row_stride(other.row_stride), plane_stride(other.plane_stride)
    {
    }

    constexpr bool empty() const { return channels == 0 || height == 0 || width == 0; }
    constexpr T* row(std::size_t c, std::size_t h) const { return data + c * plane_stride + h * row_stride; }
};

template <class T>
struct interleaved_image {
    T* data = nullptr;
    std::size_t height = 0;
    std::size_t width = 0;
    std::size_t channels = 0;
    std::size_t row_stride = 0;  // elements between (h, w, c) and (h + 1, w, c), at least width · channels

    constexpr interleaved_image() = default;

    // A dense image: rows of width · channels elements.
    constexpr interleaved_image(T* pointer, std::size_t height_, std::size_t width_, std::size_t channel_count)
        : data(pointer), height(height_), width(width_), channels(channel_count), row_stride(width_ * channel_count)
    {
    }

    constexpr interleaved_image(T* pointer, std::size_t height_, std::size_t width_, std::size_t channel_count,
                                std::size_t row_stride_)
        : data(pointer), height(height_), width(width_), channels(channel_count), row_stride(row_stride_)
    {
    }

    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    constexpr interleaved_image(interleaved_image<U> other)
        : data(other.data), height(other.height), width(other.width), channels(other.channels),
          row_stride(other.row_stride)
    {
    }

    constexpr bool empty() const { return channels == 0 || height == 0 || width == 0; }
    constexpr std::size_t row_length() const { return width * channels; }
    constexpr T* row(std::size_t h) const { return data + h * row_stride; }
};

enum class gamma_kind { per_image, per_channel, per_pixel, per_pixel_channel };

inline const char* to_string(gamma_kind kind)
{
    switch (kind) {
    case gamma_kind::per_image: return "per_image";
    case gamma_kind::per_channel: return "per_channel";
    case gamma_kind::per_pixel: return "per_pixel";
    case gamma_kind::per_pixel_channel: return "per_pixel_channel";
    }
    return "unknown";
}

// Which γ (or which γ gradient, for T = float) belongs to each sample.
// Build one with the static functions below. Only the fields of its kind
// are used: `value` for per_image, `values` for per_channel, `map` for
// per_pixel, and `planar` or `interleaved` for per_pixel_channel.
template <class T>
struct basic_gamma_map {
    gamma_kind kind = gamma_kind::per_image;
    T* value = nullptr;
    vector_view<T> values;
    matrix_view<T> map;
    planar_image<T> planar;
    interleaved_image<T> interleaved;
    bool is_planar = false;

    // One γ for the whole image. For the forward pass the value is copied,
    // so `gamma` may be a temporary there.
    static basic_gamma_map per_image(T& gamma)
    {
        basic_gamma_map result;
        result.kind = gamma_kind::per_image;
        result.value = &gamma;
        return result;
    }

    static basic_gamma_map per_channel(vector_view<T> gammas)
    {
        basic_gamma_map result;
        result.kind = gamma_kind::per_channel;
        result.values = gammas;
        return result;
    }

    // A [height, width] map; map(h, w) applies to every channel of pixel (h, w).
    static basic_gamma_map per_pixel(matrix_view<T> gammas)
    {
        basic_gamma_map result;
        result.kind = gamma_kind::per_pixel;
        result.map = gammas;
        return result;
    }

    // One γ per sample, for planar images.
    static basic_gamma_map per_pixel_channel(planar_image<T> gammas)
    {
        basic_gamma_map result;
        result.kind = gamma_kind::per_pixel_channel;
        result.planar = gammas;
        result.is_planar = true;
        return result;
    }

    // One γ per sample, for interleaved images.
    static basic_gamma_map per_pixel_channel(interleaved_image<T> gammas)
    {
        basic_gamma_map result;
        result.kind = gamma_kind::per_pixel_channel;
        result.interleaved = gammas;
        return result;
    }
};

// The γ argument of the forward and backward passes. per_image copies its
// value, so gamma_map::per_image(0.5f) is fine.
struct gamma_map : basic_gamma_map<const float> {
    float stored_value = 1.0f;

    gamma_map() = default;
    gamma_map(const basic_gamma_map<const float>& other) : basic_gamma_map<const float>(other)
    {
        if (kind == gamma_kind::per_image && value != nullptr) {
            stored_value = *value;
        }
        value = nullptr;
    }
    gamma_map(const gamma_map& other) : basic_gamma_map<const float>(other), stored_value(other.stored_value)
    {
        value = nullptr;
    }
    gamma_map& operator=(const gamma_map& other)
    {
        basic_gamma_map<const float>::operator=(other);
        stored_value = other.stored_value;
        value = nullptr;
        return *this;
    }

    static gamma_map per_image(float gamma)
    {
        gamma_map result;
        result.kind = gamma_kind::per_image;
        result.stored_value = gamma;
        return result;
    }
    static gamma_map per_channel(vector_view<const float> gammas)
    {
        return basic_gamma_map<const float>::per_channel(gammas);
    }
    static gamma_map per_pixel(matrix_view<const float> gammas)
    {
        return basic_gamma_map<const float>::per_pixel(gammas);
    }
    static gamma_map per_pixel_channel(planar_image<const float> gammas)
    {
        return basic_gamma_map<const float>::per_pixel_channel(gammas);
    }
    static gamma_map per_pixel_channel(interleaved_image<const float> gammas)
    {
        return basic_gamma_map<const float>::per_pixel_channel(gammas);
    }

    float image_gamma() const { return stored_value; }
};

// The ∂loss/∂γ output of the backward pass, of the same kind as the γ map.
using gamma_gradient = basic_gamma_map<float>;

namespace detail {

// Validates an image view: null only when empty, row and plane strides
// that keep rows and planes apart, and an extent whose byte size fits.
template <class T>
void check_image(const planar_image<T>& image, const char* function, const char* name)
{
    if (image.empty()) {
        return;
    }
    if (image.data == nullptr) {
        raise_invalid_argument(function, name, " is null but has shape [", image.channels, ", ", image.height, ", ",
                               image.width, "]");
    }
    if (image.height > 1 && image.row_stride < image.width) {
        raise_invalid_argument(function, name, ".row_stride must be at least width (", image.width, "), got ",
                               image.row_stride);
    }
    const std::size_t last_row = checked_mul(image.height - 1, image.row_stride, function, name);
    const std::size_t plane_extent = checked_add(last_row, image.width, function, name);
    if (image.channels > 1 && image.plane_stride < plane_extent) {
        raise_invalid_argument(function, name, ".plane_stride must be at least (height - 1) * row_stride + width (",
                               plane_extent, "), got ", image.plane_stride);
    }
    const std::size_t last_plane = checked_mul(image.channels - 1, image.plane_stride, function, name);
    checked_mul(checked_add(last_plane, plane_extent, function, name), sizeof(T), function, name);
}

template <class T>
void check_image(const interleaved_image<T>& image, const char* function, const char* name)
{
    if (image.empty()) {
        return;
    }
    if (image.data == nullptr) {
        raise_invalid_argument(function, name, " is null but has shape [", image.height, ", ", image.width, ", ",
                               image.channels, "]");
    }
    const std::size_t row_length = checked_mul(image.width, image.channels, function, name);
    if (image.height > 1 && image.row_stride < row_length) {
        raise_invalid_argument(function, name, ".row_stride must be at least width * channels (", row_length,
                               "), got ", image.row_stride);
    }
    const std::size_t last_row = checked_mul(image.height - 1, image.row_stride, function, name);
    checked_mul(checked_add(last_row, row_length, function, name), sizeof(T), function, name);
}

template <class T, class U>
void check_same_shape(const planar_image<T>& image, const planar_image<U>& reference, const char* function,
                      const char* name, const char* reference_name)
{
    if (image.channels != reference.channels || image.height != reference.height || image.width != reference.width) {
        raise_invalid_argument(function, name, " must have the shape of ", reference_name, " [", reference.channels,
                               ", ", reference.height, ", ", reference.width, "], got [", image.channels, ", ",
                               image.height, ", ", image.width, "]");
    }
    check_image(image, function, name);
}

template <class T, class U>
void check_same_shape(const interleaved_image<T>& image, const interleaved_image<U>& reference,
                      const char* function, const char* name, const char* reference_name)
{
    if (image.channels != reference.channels || image.height != reference.height || image.width != reference.width) {
        raise_invalid_argument(function, name, " must have the shape of ", reference_name, " [", reference.height,
                               ", ", reference.width, ", ", reference.channels, "], got [", image.height, ", ",
                               image.width, ", ", image.channels, "]");
    }
    check_image(image, function, name);
}

// Shape of the image a gamma map is checked against.
struct image_shape {
    std::size_t channels;
    std::size_t height;
    std::size_t width;
    bool planar;
};

// Validates the extents of a gamma map (or gradient) against an image.
// The γ values themselves are checked where they are read.
template <class T>
void check_gamma_shape(const basic_gamma_map<T>& gamma, const image_shape& shape, const char* function,
                       const char* name)
{
    switch (gamma.kind) {
    case gamma_kind::per_image:
        break;
    case gamma_kind::per_channel:
        tessera::detail::check_size(gamma.values, shape.channels, function, name);
        break;
    case gamma_kind::per_pixel:
        tessera::detail::check_shape(gamma.map, shape.height, shape.width, function, name);
        break;
    case gamma_kind::per_pixel_channel:
        if (shape.planar != gamma.is_planar) {
            raise_invalid_argument(function, name, " is a per_pixel_channel map in ",
                                   gamma.is_planar ? "planar" : "interleaved", " layout, but the image is ",
                                   shape.planar ? "planar" : "interleaved");
        }
        if (shape.planar) {
            check_same_shape(gamma.planar, planar_image<const float>(nullptr, shape.channels, shape.height,
                                                                     shape.width),
                             function, name, "the image");
        } else {
            check_same_shape(gamma.interleaved, interleaved_image<const float>(nullptr, shape.height, shape.width,
                                                                               shape.channels),
                             function, name, "the image");
        }
        break;
    default:
        raise_invalid_argument(function, name, ".kind is not a gamma_kind value: ", static_cast<int>(gamma.kind));
    }
}

} // namespace detail

} // namespace tessera::imaging
