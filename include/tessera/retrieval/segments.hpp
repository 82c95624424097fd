// Ragged batches of embeddings and the pooling operations over them.
//
// A ragged batch is stored in CSR form: a row-major matrix of embeddings
// [rows × dim] with a row stride, and offsets[n_segments + 1] where segment
// i owns rows offsets[i] .. offsets[i + 1] − 1. Offsets start at 0 and never
// decrease, and the last one is at most the row count (rows after it belong
// to no segment). Offsets may be int32_t, int64_t, uint32_t or std::size_t.
//
// A padded batch is the layout that transformer encoders return:
// [batch × tokens × dim] with an attention mask [batch × tokens], where a
// zero mask entry marks padding.
#pragma once

#include "../core/error.hpp"
#include "../core/extents.hpp"
#include "../core/view.hpp"

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace tessera::retrieval {

// The operation that turns a segment's rows x_0 .. x_{n−1} into one vector.
enum class pooling_op {
    mean,           // Σ x / n
    weighted_mean,  // Σ w·x / Σ w, with one weight per row (positions 1..T in the padded layout)
    sum,            // Σ x
    max,            // element-wise maximum
    first,          // x_0 (the [CLS] token in the padded layout)
    last,           // x_{n−1} (the last unmasked token in the padded layout)
    mean_sqrt_len,  // Σ x / √n
};

inline const char* to_string(pooling_op op)
{
    switch (op) {
    case pooling_op::mean: return "mean";
    case pooling_op::weighted_mean: return "weighted_mean";
    case pooling_op::sum: return "sum";
    case pooling_op::max: return "max";
    case pooling_op::first: return "first";
    case pooling_op::last: return "last";
    case pooling_op::mean_sqrt_len: return "mean_sqrt_len";
    }
    return "unknown";
}

struct pooling_options {
    pooling_op op = pooling_op::mean;
    bool normalize_rows = false;    // L2-normalise every input row before pooling
    bool normalize_result = false;  // L2-normalise every pooled vector
};

// A strided view of a padded batch [batch × tokens × dim]: element
// (b, t, c) is data[b * batch_stride + t * token_stride + c].
template <class T>
struct padded_view {
    T* data = nullptr;
    std::size_t batch = 0;
    std::size_t tokens = 0;
    std::size_t dim = 0;
    std::size_t token_stride = 0;  // in elements, at least dim
    std::size_t batch_stride = 0;  // in elements, at least (tokens − 1) * token_stride + dim

    constexpr padded_view() = default;

    // A dense batch: tokens and sequences follow each other without gaps.
    constexpr padded_view(T* pointer, std::size_t batch_count, std::size_t token_count, std::size_t dims)
        : data(pointer), batch(batch_count), tokens(token_count), dim(dims), token_stride(dims),
          batch_stride(token_count * dims)
    {
    }

    constexpr padded_view(T* pointer, std::size_t batch_count, std::size_t token_count, std::size_t dims,
                          std::size_t token_step, std::size_t batch_step)
        : data(pointer), batch(batch_count), tokens(token_count), dim(dims), token_stride(token_step),
          batch_stride(batch_step)
    {
    }

    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    constexpr padded_view(padded_view<U> other)
        : data(other.data), batch(other.batch), tokens(other.tokens), dim(other.dim),
          token_stride(other.token_stride), batch_stride(other.batch_stride)
    {
    }

    constexpr bool empty() const { return batch == 0 || tokens == 0 || dim == 0; }
    constexpr T* token(std::size_t b, std::size_t t) const { return data + b * batch_stride + t * token_stride; }

    // The rows of sequence b as a matrix [tokens × dim].
    constexpr matrix_view<T> sequence(std::size_t b) const
    {
        return matrix_view<T>(data + b * batch_stride, tokens, dim, token_stride);
    }
};

namespace detail {

template <class Offset>
constexpr bool is_offset_type =
    std::is_same_v<Offset, std::int32_t> || std::is_same_v<Offset, std::int64_t> ||
    std::is_same_v<Offset, std::uint32_t> || std::is_same_v<Offset, std::uint64_t> ||
    std::is_same_v<Offset, std::size_t>;

// Validates CSR offsets over a matrix of `rows` rows: at least one entry,
// offsets[0] == 0, non-decreasing, and no entry above `rows`.
template <class Offset>
void check_offsets(vector_view<const Offset> offsets, std::size_t rows, const char* function, const char* name)
{
    static_assert(is_offset_type<Offset>, "offsets are int32_t, int64_t, uint32_t, uint64_t or std::size_t");
    if (offsets.size == 0) {
        raise_invalid_argument(function, name, " must have n_segments + 1 >= 1 entries, got none");
    }
    tessera::detail::check_view(offsets, function, name);
    if (offsets[0] != 0) {
        raise_invalid_argument(function, name, "[0] must be 0, got ", offsets[0]);
    }
    for (std::size_t i = 1; i < offsets.size; ++i) {
        if (offsets[i] < offsets[i - 1]) {
            raise_invalid_argument(function, name, " must be non-decreasing, but ", name, "[", i, "] = ", offsets[i],
                                   " < ", name, "[", i - 1, "] = ", offsets[i - 1]);
        }
    }
    // Non-decreasing from 0, so every entry is non-negative and the last is the largest.
    const auto last = static_cast<std::uint64_t>(offsets[offsets.size - 1]);
    if (last > rows) {
        raise_invalid_argument(function, name, "[", offsets.size - 1, "] = ", last, " exceeds the row count ", rows);
    }
}

// Validates a padded view the way check_view validates a matrix.
template <class T>
void check_padded_view(const padded_view<T>& view, const char* function, const char* name)
{
    if (view.empty()) {
        return;
    }
    if (view.data == nullptr) {
        raise_invalid_argument(function, name, " is null but has shape [", view.batch, ", ", view.tokens, ", ",
                               view.dim, "]");
    }
    if (view.tokens > 1 && view.token_stride < view.dim) {
        raise_invalid_argument(function, name, ".token_stride must be at least dim (", view.dim, "), got ",
                               view.token_stride);
    }
    const std::size_t last_token = checked_mul(view.tokens - 1, view.token_stride, function, name);
    const std::size_t sequence_extent = checked_add(last_token, view.dim, function, name);
    if (view.batch > 1 && view.batch_stride < sequence_extent) {
        raise_invalid_argument(function, name, ".batch_stride must be at least (tokens - 1) * token_stride + dim (",
                               sequence_extent, "), got ", view.batch_stride);
    }
    const std::size_t last_sequence = checked_mul(view.batch - 1, view.batch_stride, function, name);
    checked_mul(checked_add(last_sequence, sequence_extent, function, name), sizeof(T), function, name);
}

} // namespace detail

} // namespace tessera::retrieval
