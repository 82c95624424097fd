// Non-owning views of caller-owned arrays.
//
// vector_view is a pointer and a length. matrix_view is a pointer, a number
// of rows and columns, and a row stride in elements: the elements of a row
// are contiguous, and row r starts at data + r * row_stride. A row stride
// larger than the column count describes a padded buffer or a crop of a
// larger matrix. Views never allocate and never own their memory.
#pragma once

#include "error.hpp"
#include "extents.hpp"

#include <cstddef>
#include <type_traits>

namespace tessera {

template <class T>
struct vector_view {
    T* data = nullptr;
    std::size_t size = 0;

    constexpr vector_view() = default;
    constexpr vector_view(T* pointer, std::size_t length) : data(pointer), size(length) {}

    // A view of const elements can be made from a view of mutable ones.
    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    constexpr vector_view(vector_view<U> other) : data(other.data), size(other.size)
    {
    }

    constexpr bool empty() const { return size == 0; }
    constexpr T& operator[](std::size_t i) const { return data[i]; }
};

template <class T>
struct matrix_view {
    T* data = nullptr;
    std::size_t rows = 0;
    std::size_t cols = 0;
    std::size_t row_stride = 0;  // in elements, at least cols

    constexpr matrix_view() = default;

    // A dense row-major matrix: the row stride equals the column count.
    constexpr matrix_view(T* pointer, std::size_t row_count, std::size_t col_count)
        : data(pointer), rows(row_count), cols(col_count), row_stride(col_count)
    {
    }

    constexpr matrix_view(T* pointer, std::size_t row_count, std::size_t col_count, std::size_t stride)
        : data(pointer), rows(row_count), cols(col_count), row_stride(stride)
    {
    }

    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    constexpr matrix_view(matrix_view<U> other)
        : data(other.data), rows(other.rows), cols(other.cols), row_stride(other.row_stride)
    {
    }

    constexpr bool empty() const { return rows == 0 || cols == 0; }
    constexpr std::size_t size() const { return rows * cols; }
    constexpr T* row(std::size_t r) const { return data + r * row_stride; }
    constexpr T& operator()(std::size_t r, std::size_t c) const { return data[r * row_stride + c]; }
};

namespace detail {

// Whether an optional output was passed: only a default-constructed view
// (null and empty) means "not requested", so a view of the wrong shape is
// reported instead of silently skipped.
template <class T>
constexpr bool requested(const matrix_view<T>& view)
{
    return view.data != nullptr || view.rows != 0 || view.cols != 0;
}

template <class T>
constexpr bool requested(const vector_view<T>& view)
{
    return view.data != nullptr || view.size != 0;
}

// Validates a view argument: a null pointer is allowed only for an empty
// view, the row stride must cover a row, and the last element's offset must
// fit in std::size_t. `function` and `name` go into the message.
template <class T>
void check_view(const matrix_view<T>& view, const char* function, const char* name)
{
    if (view.empty()) {
        return;
    }
    if (view.data == nullptr) {
        raise_invalid_argument(function, name, " is null but has shape [", view.rows, ", ", view.cols, "]");
    }
    if (view.rows > 1 && view.row_stride < view.cols) {
        raise_invalid_argument(function, name, ".row_stride must be at least cols (", view.cols, "), got ",
                               view.row_stride);
    }
    // The extent in bytes must fit too, or pointer arithmetic would wrap.
    const std::size_t last_row = checked_mul(view.rows - 1, view.row_stride, function, name);
    checked_mul(checked_add(last_row, view.cols, function, name), sizeof(T), function, name);
}

template <class T>
void check_view(const vector_view<T>& view, const char* function, const char* name)
{
    if (view.size != 0 && view.data == nullptr) {
        raise_invalid_argument(function, name, " is null but has size ", view.size);
    }
    // As for a matrix, the extent in bytes must fit.
    checked_mul(view.size, sizeof(T), function, name);
}

// Raises unless `view` has exactly the given shape.
template <class T>
void check_shape(const matrix_view<T>& view, std::size_t rows, std::size_t cols, const char* function,
                 const char* name)
{
    if (view.rows != rows || view.cols != cols) {
        raise_invalid_argument(function, name, " must have shape [", rows, ", ", cols, "], got [", view.rows,
                               ", ", view.cols, "]");
    }
    check_view(view, function, name);
}

template <class T>
void check_size(const vector_view<T>& view, std::size_t size, const char* function, const char* name)
{
    if (view.size != size) {
        raise_invalid_argument(function, name, " must have size ", size, ", got ", view.size);
    }
    check_view(view, function, name);
}

// The byte range [begin, end) that a view's elements span.
struct byte_range {
    const unsigned char* begin = nullptr;
    const unsigned char* end = nullptr;
};

template <class T>
byte_range span_of(const matrix_view<T>& view)
{
    if (view.empty()) {
        return {};
    }
    const auto* begin = reinterpret_cast<const unsigned char*>(view.data);
    return {begin, begin + ((view.rows - 1) * view.row_stride + view.cols) * sizeof(T)};
}

template <class T>
byte_range span_of(const vector_view<T>& view)
{
    const auto* begin = reinterpret_cast<const unsigned char*>(view.data);
    return {begin, begin + view.size * sizeof(T)};
}

// Raises when an output's bytes overlap an input's. The check is on the
// spanned ranges, so an output interleaved with an input's row padding is
// rejected too.
inline void check_disjoint(byte_range output, byte_range input, const char* function, const char* output_name,
                           const char* input_name)
{
    if (output.begin == output.end || input.begin == input.end) {
        return;
    }
    if (output.begin < input.end && input.begin < output.end) {
        raise_invalid_argument(function, output_name, " must not overlap ", input_name);
    }
}

} // namespace detail

} // namespace tessera
