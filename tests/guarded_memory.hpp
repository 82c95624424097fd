// Guarded memory for tests and fuzz targets: buffers whose elements are surrounded by sentinel
// bytes, so that a write outside a kernel's outputs is noticed afterwards.
//
// - guarded_buffer and guarded_matrix surround outputs (and the padding of strided rows)
//   with sentinel bytes. They place the first element at a chosen offset from a 64-byte
//   boundary, so callers can pass unaligned pointers.
// - same_bits compares object representations, and ulp_distance counts the floats between two
//   values.
//
// Nothing here depends on Catch2, so the libFuzzer targets in tests/fuzz use it too.
#pragma once

#include <tessera/core/view.hpp>

#include <cstddef>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace tessera::test {

// ---------------------------------------------------------------------------------------------
// Guarded memory

// The sentinel byte at position i of a guard. It varies with i so that a write of a shifted
// copy of the guard would still be noticed.
inline unsigned char sentinel_byte(std::size_t i)
{
    return static_cast<unsigned char>(0xA5u ^ ((i * 0x3Bu) & 0xFFu));
}

// A heap array of `count` elements of T surrounded by `guard_bytes` sentinel bytes on each
// side. The first element sits `offset` elements past a 64-byte boundary, so an offset of 1 to
// 3 floats gives a pointer that no SIMD arch considers aligned. T must be trivially copyable.
template <class T>
class guarded_buffer {
public:
    static constexpr std::size_t guard_bytes = 256;
    static constexpr std::size_t boundary = 64;

    explicit guarded_buffer(std::size_t count, std::size_t offset = 0) : count_(count)
    {
        const std::size_t data_bytes = count * sizeof(T);
        storage_size_ = guard_bytes + boundary + offset * sizeof(T) + data_bytes + guard_bytes;
        storage_ = std::make_unique<unsigned char[]>(storage_size_);

        // The first multiple of `boundary` at least guard_bytes into the storage.
        const auto base = reinterpret_cast<std::uintptr_t>(storage_.get());
        const std::uintptr_t aligned = (base + guard_bytes + boundary - 1) / boundary * boundary;
        begin_ = static_cast<std::size_t>(aligned - base) + offset * sizeof(T);
        end_ = begin_ + data_bytes;

        for (std::size_t i = 0; i < storage_size_; ++i) {
            storage_[i] = sentinel_byte(i);
        }
    }

    T* data() { return reinterpret_cast<T*>(storage_.get() + begin_); }
    const T* data() const { return reinterpret_cast<const T*>(storage_.get() + begin_); }
    std::size_t size() const { return count_; }
    T& operator[](std::size_t i) { return data()[i]; }
    const T& operator[](std::size_t i) const { return data()[i]; }

    // Returns true when every byte outside the elements still contains its sentinel.
    bool guards_intact() const
    {
        for (std::size_t i = 0; i < begin_; ++i) {
            if (storage_[i] != sentinel_byte(i)) {
                return false;
            }
        }
        for (std::size_t i = end_; i < storage_size_; ++i) {
            if (storage_[i] != sentinel_byte(i)) {
                return false;
            }
        }
        return true;
    }

    // Returns true when element i still contains the sentinel bytes written at
    // construction, that is, when nothing has written to it.
    bool element_untouched(std::size_t i) const
    {
        const std::size_t first = begin_ + i * sizeof(T);
        for (std::size_t b = first; b < first + sizeof(T); ++b) {
            if (storage_[b] != sentinel_byte(b)) {
                return false;
            }
        }
        return true;
    }

private:
    std::unique_ptr<unsigned char[]> storage_;
    std::size_t storage_size_ = 0;
    std::size_t begin_ = 0;  // byte offset of element 0 in storage_
    std::size_t end_ = 0;    // byte offset one past the last element
    std::size_t count_ = 0;
};

// Returns true when no element or guard byte of the buffer has been written.
template <class T>
bool untouched(const guarded_buffer<T>& buffer)
{
    for (std::size_t i = 0; i < buffer.size(); ++i) {
        if (!buffer.element_untouched(i)) {
            return false;
        }
    }
    return buffer.guards_intact();
}

// A [rows, cols] matrix with a row stride of at least cols, in a guarded_buffer of
// rows * row_stride elements. Elements start out as sentinel bytes. outside_intact() checks
// both the guards and the padding elements [cols, row_stride) of every row, which no kernel
// may write.
template <class T>
class guarded_matrix {
public:
    guarded_matrix(std::size_t rows, std::size_t cols, std::size_t row_stride, std::size_t offset = 0)
        : rows_(rows), cols_(cols), row_stride_(row_stride), buffer_(rows * row_stride, offset)
    {
        if (row_stride < cols) {
            throw std::logic_error("guarded_matrix: row_stride " + std::to_string(row_stride) +
                                   " is smaller than cols " + std::to_string(cols));
        }
    }

    // A dense matrix: the row stride equals the column count.
    guarded_matrix(std::size_t rows, std::size_t cols) : guarded_matrix(rows, cols, cols) {}

    std::size_t rows() const { return rows_; }
    std::size_t cols() const { return cols_; }
    std::size_t row_stride() const { return row_stride_; }
    T* data() { return buffer_.data(); }
    const T* data() const { return buffer_.data(); }

    T& operator()(std::size_t r, std::size_t c) { return buffer_[r * row_stride_ + c]; }
    const T& operator()(std::size_t r, std::size_t c) const { return buffer_[r * row_stride_ + c]; }

    matrix_view<T> view() { return {buffer_.data(), rows_, cols_, row_stride_}; }
    matrix_view<const T> view() const { return {buffer_.data(), rows_, cols_, row_stride_}; }
    matrix_view<const T> const_view() const { return view(); }

    bool outside_intact() const
    {
        if (!buffer_.guards_intact()) {
            return false;
        }
        for (std::size_t r = 0; r < rows_; ++r) {
            for (std::size_t c = cols_; c < row_stride_; ++c) {
                if (!buffer_.element_untouched(r * row_stride_ + c)) {
                    return false;
                }
            }
        }
        return true;
    }

    // Returns true when no element, padding or guard has been written.
    bool all_untouched() const
    {
        for (std::size_t i = 0; i < buffer_.size(); ++i) {
            if (!buffer_.element_untouched(i)) {
                return false;
            }
        }
        return buffer_.guards_intact();
    }

    // Copies the elements (not the padding) into a dense row-major vector.
    std::vector<T> dense() const
    {
        std::vector<T> out(rows_ * cols_);
        for (std::size_t r = 0; r < rows_; ++r) {
            for (std::size_t c = 0; c < cols_; ++c) {
                out[r * cols_ + c] = (*this)(r, c);
            }
        }
        return out;
    }

private:
    std::size_t rows_;
    std::size_t cols_;
    std::size_t row_stride_;
    guarded_buffer<T> buffer_;
};

// Returns true when a and b have the same object representation. Unlike ==, this
// distinguishes 0.0f from -0.0f and treats a NaN as equal to a NaN with the same payload.
template <class T>
bool same_bits(const T& a, const T& b)
{
    return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// Maps a float to an integer that increases with the float's value, with +0 and -0 both at 0,
// so that the difference of two mapped values counts the floats between them.
inline std::int64_t ordered_bits(float x)
{
    std::int32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    return bits < 0 ? -static_cast<std::int64_t>(bits & 0x7FFFFFFF) : static_cast<std::int64_t>(bits);
}

// Returns the number of representable floats between a and b (0 when they are equal, or both
// zero). A NaN on one side only gives the largest int64.
inline std::int64_t ulp_distance(float a, float b)
{
    if (std::isnan(a) || std::isnan(b)) {
        return std::isnan(a) && std::isnan(b) ? 0 : std::numeric_limits<std::int64_t>::max();
    }
    const std::int64_t difference = ordered_bits(a) - ordered_bits(b);
    return difference < 0 ? -difference : difference;
}

} // namespace tessera::test
