// Tensors, masks and options of the attention family.
//
// tensor_view is a strided [batch, heads, tokens, dim] view whose last axis
// is contiguous. The three outer strides are free, so the same type covers
// PyTorch's [batch, heads, tokens, dim], the [batch, tokens, heads, dim]
// that projections produce (bthd below) and the blocks of a paged KV cache.
//
// mask_pattern describes the structural masks by one rule. Query row i has
// the position p = i + offset, offset being 0 for top_left alignment and
// keys − queries for bottom_right; key j has the position j. With g global
// tokens and groups of G tokens, a position x ≥ g lies in group
// ⌊(x − g) / G⌋. Key j is visible from query i when
//   - the query is global (0 ≤ p < g), or the key is global (j < g), or
//   - group(p) − before ≤ group(j) ≤ group(p) + after.
// The named patterns set the parameters:
//   none                 every key visible
//   causal               G = 1, before unbounded, after 0: j ≤ p
//   sliding_window(l, r) G = 1: p − l ≤ j ≤ p + r
//   block_local(w, g)    G = w, before = after = 0: the token's block of w,
//                        plus g leading global tokens
//   spatio_temporal(P, b, a, g)  G = P patches per frame: the frames from b
//                        before to a after the query's frame, plus g global
//                        tokens (tokens = g + frames·P)
// top_left is PyTorch's alignment (is_causal). bottom_right is that of
// FlashAttention-2, vLLM and llama.cpp, where the last query row is the
// last key. options::query_position sets the offset directly. Groups are
// floors, so a row with p < 0 has a negative group. Under causal only the
// global keys are visible to it, and a window reaching forward (after > 0)
// reaches the first keys, as FlashAttention's windows do.
#pragma once

#include "../core/error.hpp"
#include "../core/extents.hpp"
#include "../core/view.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>

namespace tessera::attention {

template <class T>
struct tensor_view {
    T* data = nullptr;
    std::size_t batch = 0;
    std::size_t heads = 0;
    std::size_t tokens = 0;
    std::size_t dim = 0;
    // Strides in elements; the dim axis has stride 1.
    std::size_t batch_stride = 0;
    std::size_t head_stride = 0;
    std::size_t token_stride = 0;

    constexpr tensor_view() = default;

    // A dense [batch, heads, tokens, dim] tensor.
    constexpr tensor_view(T* pointer, std::size_t batch_count, std::size_t head_count, std::size_t token_count,
                          std::size_t dim_count)
        : data(pointer), batch(batch_count), heads(head_count), tokens(token_count), dim(dim_count),
          batch_stride(head_count * token_count * dim_count), head_stride(token_count * dim_count),
          token_stride(dim_count)
    {
    }

    constexpr tensor_view(T* pointer, std::size_t batch_count, std::size_t head_count, std::size_t token_count,
                          std::size_t dim_count, std::size_t batch_step, std::size_t head_step, std::size_t token_step)
        : data(pointer), batch(batch_count), heads(head_count), tokens(token_count), dim(dim_count),
          batch_stride(batch_step), head_stride(head_step), token_stride(token_step)
    {
    }

    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    constexpr tensor_view(tensor_view<U> other)
        : data(other.data), batch(other.batch), heads(other.heads), tokens(other.tokens), dim(other.dim),
          batch_stride(other.batch_stride), head_stride(other.head_stride), token_stride(other.token_stride)
    {
    }

    constexpr bool empty() const { return batch == 0 || heads == 0 || tokens == 0 || dim == 0; }
    constexpr T* row(std::size_t b, std::size_t h, std::size_t t) const
    {
        return data + b * batch_stride + h * head_stride + t * token_stride;
    }
};

// A dense [batch, tokens, heads, dim] buffer seen as [batch, heads, tokens, dim].
template <class T>
constexpr tensor_view<T> bthd(T* pointer, std::size_t batch, std::size_t tokens, std::size_t heads, std::size_t dim)
{
    return tensor_view<T>(pointer, batch, heads, tokens, dim, tokens * heads * dim, dim, heads * dim);
}

enum class alignment {
    top_left,      // query i has position i
    bottom_right,  // query i has position i + keys − queries
};

inline const char* to_string(alignment a)
{
    return a == alignment::top_left ? "top_left" : "bottom_right";
}

struct mask_pattern {
    static constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();

    std::size_t group = 1;          // G, tokens per group, at least 1
    std::size_t before = unbounded;  // groups visible before the query's group
    std::size_t after = unbounded;   // groups visible after it
    std::size_t global_tokens = 0;  // g leading tokens that see and are seen by all
    attention::alignment align = alignment::top_left;

    static constexpr mask_pattern none() { return {}; }

    static constexpr mask_pattern causal(alignment a = alignment::top_left) { return {1, unbounded, 0, 0, a}; }

    static constexpr mask_pattern sliding_window(std::size_t left, std::size_t right = 0,
                                                 alignment a = alignment::top_left)
    {
        return {1, left, right, 0, a};
    }

    static constexpr mask_pattern block_local(std::size_t block, std::size_t global = 0)
    {
        return {block, 0, 0, global, alignment::top_left};
    }

    static constexpr mask_pattern spatio_temporal(std::size_t patches_per_frame, std::size_t frames_before,
                                                  std::size_t frames_after, std::size_t global = 0)
    {
        return {patches_per_frame, frames_before, frames_after, global, alignment::top_left};
    }

    constexpr bool is_none() const { return before == unbounded && after == unbounded; }
};

// An optional per-score mask of shape [batch, heads, queries, keys] with
// contiguous keys. A stride of 0 broadcasts along its axis, so one [queries
// × keys] matrix or one key-padding row per sequence needs no copies.
template <class T>
struct mask_view {
    const T* data = nullptr;
    std::size_t batch_stride = 0;
    std::size_t head_stride = 0;
    std::size_t row_stride = 0;

    constexpr mask_view() = default;
    constexpr mask_view(const T* pointer, std::size_t batch_step, std::size_t head_step, std::size_t row_step)
        : data(pointer), batch_stride(batch_step), head_stride(head_step), row_stride(row_step)
    {
    }

    constexpr bool requested() const { return data != nullptr; }
    constexpr const T* row(std::size_t b, std::size_t h, std::size_t i) const
    {
        return data + b * batch_stride + h * head_stride + i * row_stride;
    }
};

// A boolean mask stored as bool (PyTorch's attn_mask convention: true means
// the key is visible) read as bytes.
inline mask_view<std::uint8_t> bool_mask(const bool* pointer, std::size_t batch_stride, std::size_t head_stride,
                                         std::size_t row_stride)
{
    static_assert(sizeof(bool) == 1, "bool masks need one-byte bool");
    return {reinterpret_cast<const std::uint8_t*>(pointer), batch_stride, head_stride, row_stride};
}

struct options {
    mask_pattern pattern{};
    // Multiplies q · k; 1/√dim when empty. Must be finite.
    std::optional<float> scale{};
    // Added to the scaled score; −∞ masks the key whatever the score is.
    mask_view<float> additive{};
    // Nonzero: the key is visible; 0: masked.
    mask_view<std::uint8_t> allowed{};
    // The position of query row 0, replacing the pattern's alignment: for a
    // slice of a longer query sequence (chunked prefill, or a few rows of a
    // spatio-temporal layout). |position| must be below 2^31.
    std::optional<std::int64_t> query_position{};
};

namespace detail {

// Keys [0, global) and [begin, end) are visible from a query row, or all
// keys when `all`. begin ≥ global.
struct visible_keys {
    bool all = false;
    std::int64_t global = 0;
    std::int64_t begin = 0;
    std::int64_t end = 0;

    // How many of the keys [j0, j1) are visible.
    std::int64_t count(std::int64_t j0, std::int64_t j1) const
    {
        if (all) {
            return j1 - j0;
        }
        const std::int64_t in_global = std::max<std::int64_t>(0, std::min(j1, global) - j0);
        const std::int64_t in_band = std::max<std::int64_t>(0, std::min(j1, end) - std::max(j0, begin));
        return in_global + in_band;
    }

    bool contains(std::int64_t j) const { return all || j < global || (j >= begin && j < end); }
};

// floor(a / b) for b > 0.
inline std::int64_t floor_div(std::int64_t a, std::int64_t b)
{
    const std::int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

// The keys visible from a query at `position` among `keys` keys. Positions
// and key counts are below 2^32 in magnitude (token counts below 2^31), so
// a group saturated at 2^40 and before/after saturated at 2^60 select the
// same keys as the exact values, and no product overflows.
inline visible_keys visible_from(const mask_pattern& pattern, std::int64_t position, std::int64_t keys)
{
    constexpr std::size_t group_limit = std::size_t(1) << 40;
    constexpr std::size_t reach_limit = std::size_t(1) << 60;

    visible_keys v;
    v.global = static_cast<std::int64_t>(std::min<std::size_t>(pattern.global_tokens, keys));
    if (pattern.is_none() ||
        (position >= 0 && static_cast<std::size_t>(position) < pattern.global_tokens)) {
        v.all = true;
        return v;
    }

    const auto g = static_cast<std::int64_t>(std::min<std::size_t>(pattern.global_tokens, group_limit));
    const auto group = static_cast<std::int64_t>(std::min(pattern.group, group_limit));
    const std::int64_t query_group = floor_div(position - g, group);
    // Groups that hold at least one key; none when the global tokens take them all.
    const std::int64_t key_groups = keys > g ? (keys - g + group - 1) / group : 0;

    std::int64_t first = 0;  // first visible key group
    if (pattern.before != mask_pattern::unbounded) {
        const auto before = static_cast<std::int64_t>(std::min(pattern.before, reach_limit));
        first = std::clamp<std::int64_t>(query_group - before, 0, key_groups);
    }
    std::int64_t last = key_groups;  // one past the last visible key group
    if (pattern.after != mask_pattern::unbounded) {
        const auto after = static_cast<std::int64_t>(std::min(pattern.after, reach_limit));
        last = std::clamp<std::int64_t>(query_group + after + 1, 0, key_groups);
    }

    v.begin = std::min(keys, g + first * group);
    v.end = std::max(v.begin, std::min(keys, g + last * group));
    return v;
}

// The position of query row 0: `first` when given, else 0 for top_left and
// keys − queries for bottom_right.
inline std::int64_t position_offset(alignment a, std::optional<std::int64_t> first, std::size_t queries,
                                    std::size_t keys)
{
    if (first) {
        return *first;
    }
    return a == alignment::top_left ? 0 : static_cast<std::int64_t>(keys) - static_cast<std::int64_t>(queries);
}

} // namespace detail

} // namespace tessera::attention
