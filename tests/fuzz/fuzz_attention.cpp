// libFuzzer target of the block attention family (tessera/attention/attention.hpp).
//
// Each input becomes one call of scaled_dot_product or paged_scaled_dot_product on one usable
// arch. Shapes include grouped and multi-query heads, Lq ≠ Lk, Dv ≠ D and empty extents, and the
// tensors are strided and unaligned in guarded buffers. Every mask pattern and alignment,
// query_position, additive and boolean masks with broadcast strides, the optional log-sum-exp and
// the head-averaged map are drawn, with values that include NaN, ±∞, subnormals and ties. About
// one input in four also injects an argument error: a stride below a row, a shape mismatch, a
// non-finite scale, overlapping outputs, a null pointer, a huge extent, a block table entry
// outside the cache, and so on.
//
// The target stops with a message (TESSERA_FUZZ_CHECK) when:
// - a call that must be rejected is accepted, or a valid call is rejected;
// - a rejected call wrote to an output, or any call wrote outside its outputs or to an input;
// - a result leaves the contract of attention.hpp against reference.hpp's double reference:
//   the error bound (4(D+2)·2^-24·S + 2^-20)·Σp|v| of each output, the log-sum-exp bound,
//   the head-averaged probabilities, zeros and −∞ for fully masked rows, NaN in exactly the
//   rows that see a NaN;
// - two threads give other bits than one, or the paged cache other bits than the same keys
//   stored contiguously.
//
// Replay a crash with OMP_NUM_THREADS=1 build/tests/fuzz/tessera_fuzz_attention crash-<sha1>.
#include <tessera/attention/attention.hpp>

// The double reference and the guarded buffers run slow loops whose branches are not library
// code, so libFuzzer's coverage instrumentation (comparison tracing above all) is left out of
// them. They come after attention.hpp, so that the library code they include keeps it.
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#include "fuzz_support.hpp"

#include <tessera/attention/reference.hpp>
#pragma clang attribute pop

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace att = tessera::attention;
namespace fz = tessera::fuzz;
using tessera::matrix_view;
using tessera::vector_view;
using tessera::test::guarded_buffer;
using tessera::test::same_bits;

constexpr float infinity = std::numeric_limits<float>::infinity();
constexpr std::size_t max_tokens = (std::size_t(1) << 31) - 1;

// Multiply-adds of the double reference (B·H·Lq·Lk·(D + Dv)) allowed per call, so that an input
// runs in a few milliseconds under the sanitizers. Decode shapes get more, enough for the thread
// and split paths, which start at 2^20 multiply-adds.
constexpr std::size_t work_budget = 300000;
constexpr std::size_t decode_work_budget = 1200000;

// ---------------------------------------------------------------------------------------------
// Guarded tensors

// A [batch, heads, tokens, dim] tensor with drawn strides in a guarded buffer.
struct fuzz_tensor {
    std::size_t batch = 0;
    std::size_t heads = 0;
    std::size_t tokens = 0;
    std::size_t dim = 0;
    std::size_t batch_stride = 0;
    std::size_t head_stride = 0;
    std::size_t token_stride = 0;
    std::size_t span = 0;  // elements from the first to one past the last
    std::unique_ptr<guarded_buffer<float>> buffer;

    bool empty() const { return batch == 0 || heads == 0 || tokens == 0 || dim == 0; }
    float* data() { return buffer->data(); }
    const float* data() const { return buffer->data(); }

    att::tensor_view<float> view()
    {
        return {data(), batch, heads, tokens, dim, batch_stride, head_stride, token_stride};
    }
    att::tensor_view<const float> const_view() const
    {
        return {data(), batch, heads, tokens, dim, batch_stride, head_stride, token_stride};
    }
    std::size_t index(std::size_t b, std::size_t h, std::size_t t) const
    {
        return b * batch_stride + h * head_stride + t * token_stride;
    }

    // Writes values in (b, h, t, c) order; with broadcast strides later values overwrite.
    TESSERA_FUZZ_NO_COVERAGE void fill(const std::vector<float>& values)
    {
        if (empty()) {
            return;
        }
        std::size_t k = 0;
        for (std::size_t b = 0; b < batch; ++b) {
            for (std::size_t h = 0; h < heads; ++h) {
                for (std::size_t t = 0; t < tokens; ++t) {
                    float* row = data() + index(b, h, t);
                    for (std::size_t c = 0; c < dim; ++c) {
                        row[c] = values[k++];
                    }
                }
            }
        }
    }

    std::size_t element_count() const { return empty() ? 0 : batch * heads * tokens * dim; }

    // Returns true when no element, padding or guard has been written.
    bool untouched() const { return tessera::test::untouched(*buffer); }

    // Whether each buffer element is a tensor element.
    TESSERA_FUZZ_NO_COVERAGE std::vector<char> inside() const
    {
        std::vector<char> mask(buffer->size(), 0);
        for (std::size_t b = 0; b < batch && !empty(); ++b) {
            for (std::size_t h = 0; h < heads; ++h) {
                for (std::size_t t = 0; t < tokens; ++t) {
                    std::fill_n(mask.begin() + static_cast<std::ptrdiff_t>(index(b, h, t)), dim, 1);
                }
            }
        }
        return mask;
    }

    // Poisons the padding and the guards while `region` lives.
    void poison_outside(fz::poisoned_region& region) const
    {
        const std::vector<char> mask = inside();
        region.add_outside(*buffer, [&](std::size_t i) { return mask[i] != 0; });
    }

    // Returns true when the guards and every buffer element that is no tensor element still
    // contain their sentinels.
    bool outside_intact() const
    {
        const std::vector<char> mask = inside();
        return fz::intact_outside(*buffer, [&](std::size_t i) { return mask[i] != 0; });
    }
};

// Draws a layout for a tensor of the given shape: [b, h, t, d] or token-major [b, t, h, d]
// order, 0 to 3 padding elements per row and 0 to 3 floats off a 64-byte boundary. Inputs
// sometimes get a batch or head stride of 0, so that every batch or head reads one tensor.
fuzz_tensor make_tensor(FuzzedDataProvider& input, std::size_t batch, std::size_t heads, std::size_t tokens,
                        std::size_t dim, bool is_input)
{
    const auto flags = input.ConsumeIntegral<std::uint8_t>();
    fuzz_tensor t;
    t.batch = batch;
    t.heads = heads;
    t.tokens = tokens;
    t.dim = dim;
    const std::size_t row = dim + (flags >> 1) % 4;
    const std::size_t offset = (flags >> 3) % 4;
    if ((flags & 1) == 0) {
        t.token_stride = row;
        t.head_stride = tokens * row;
        t.batch_stride = heads * t.head_stride;
    } else {
        t.head_stride = row;
        t.token_stride = heads * row;
        t.batch_stride = tokens * t.token_stride;
    }
    if (is_input && (flags >> 5) % 8 == 1) {
        t.batch_stride = 0;
    }
    if (is_input && (flags >> 5) % 8 == 2) {
        t.head_stride = 0;
    }

    if (!t.empty()) {
        t.span = (batch - 1) * t.batch_stride + (heads - 1) * t.head_stride + (tokens - 1) * t.token_stride + dim;
    }
    t.buffer = std::make_unique<guarded_buffer<float>>(std::max<std::size_t>(t.span, 1), offset);
    return t;
}

// The rules of check_tensor in attention.hpp: whether a call must reject this tensor view.
bool tensor_invalid(const att::tensor_view<const float>& t)
{
    if (t.dim == 0 || t.tokens > max_tokens) {
        return true;
    }
    if (t.empty()) {
        return false;
    }
    if (t.data == nullptr || (t.tokens > 1 && t.token_stride < t.dim)) {
        return true;
    }
    const unsigned __int128 last = static_cast<unsigned __int128>(t.batch - 1) * t.batch_stride +
                                   static_cast<unsigned __int128>(t.heads - 1) * t.head_stride +
                                   static_cast<unsigned __int128>(t.tokens - 1) * t.token_stride + t.dim;
    return last * sizeof(float) > std::numeric_limits<std::size_t>::max();
}

// ---------------------------------------------------------------------------------------------
// Masks

// Storage for the additive and boolean masks of a call, [batch, heads, queries, keys] with
// drawn broadcast strides.
struct mask_strides {
    std::size_t batch = 0;
    std::size_t head = 0;
    std::size_t row = 0;
    std::size_t span = 0;
};

struct mask_storage {
    std::size_t batch = 0;
    std::size_t heads = 0;
    std::size_t queries = 0;
    std::size_t keys = 0;
    std::unique_ptr<guarded_buffer<float>> additive;
    std::unique_ptr<guarded_buffer<std::uint8_t>> allowed;
    mask_strides additive_strides;
    mask_strides allowed_strides;
    std::vector<float> additive_before;
    std::vector<std::uint8_t> allowed_before;
};

// Poisons the elements of a mask buffer that no (b, h, i, j < keys) entry reads, and its guards.
template <class T>
void poison_mask(fz::poisoned_region& region, const mask_storage& masks, const guarded_buffer<T>& buffer,
                 const mask_strides& strides)
{
    std::vector<char> read(buffer.size(), 0);
    if (masks.batch != 0 && masks.heads != 0 && masks.queries != 0) {
        for (std::size_t b = 0; b < masks.batch; ++b) {
            for (std::size_t h = 0; h < masks.heads; ++h) {
                for (std::size_t i = 0; i < masks.queries; ++i) {
                    const std::size_t first = b * strides.batch + h * strides.head + i * strides.row;
                    std::fill_n(read.begin() + static_cast<std::ptrdiff_t>(first), masks.keys, 1);
                }
            }
        }
    }
    region.add_outside(buffer, [&](std::size_t i) { return read[i] != 0; });
}

void poison_masks(fz::poisoned_region& region, const mask_storage& masks)
{
    if (masks.additive) {
        poison_mask(region, masks, *masks.additive, masks.additive_strides);
    }
    if (masks.allowed) {
        poison_mask(region, masks, *masks.allowed, masks.allowed_strides);
    }
}

mask_strides draw_mask_strides(FuzzedDataProvider& input, std::size_t batch, std::size_t heads,
                               std::size_t queries, std::size_t keys)
{
    const auto flags = input.ConsumeIntegral<std::uint8_t>();
    const std::size_t width = keys + flags % 4;
    mask_strides s;
    s.row = (flags & 4) != 0 ? 0 : width;
    const std::size_t head_extent = s.row == 0 ? width : std::max<std::size_t>(queries, 1) * width;
    s.head = (flags & 8) != 0 ? 0 : head_extent;
    const std::size_t batch_extent = s.head == 0 ? head_extent : std::max<std::size_t>(heads, 1) * head_extent;
    s.batch = (flags & 16) != 0 ? 0 : batch_extent;
    if (batch == 0 || heads == 0 || queries == 0 || keys == 0) {
        s.span = 1;
    } else {
        s.span = (batch - 1) * s.batch + (heads - 1) * s.head + (queries - 1) * s.row + keys;
    }
    return s;
}

// Draws the pattern, scale, query position and masks of a call whose masks cover `keys` keys.
// Returns whether a drawn parameter must be rejected (a non-finite scale, a query position
// beyond ±2^31).
bool draw_options(FuzzedDataProvider& input, std::size_t batch, std::size_t heads, std::size_t queries,
                  std::size_t keys, att::options& opts, mask_storage& masks)
{
    bool invalid = false;
    masks.batch = batch;
    masks.heads = heads;
    masks.queries = queries;
    masks.keys = keys;
    const auto alignment_of = [](std::uint8_t bit) {
        return bit != 0 ? att::alignment::bottom_right : att::alignment::top_left;
    };
    const auto reach = [&input]() -> std::size_t {
        const auto selector = input.ConsumeIntegral<std::uint8_t>();
        switch (selector % 8) {
        case 0: return att::mask_pattern::unbounded;
        case 1: return att::mask_pattern::unbounded - 1;
        case 2: return std::size_t(1) << 61;
        default: return input.ConsumeIntegralInRange<std::size_t>(0, 160);
        }
    };

    const auto pattern_kind = input.ConsumeIntegral<std::uint8_t>();
    switch (pattern_kind % 8) {
    case 0:
        opts.pattern = att::mask_pattern::none();
        break;
    case 1:
        opts.pattern = att::mask_pattern::causal(att::alignment::top_left);
        break;
    case 2:
        opts.pattern = att::mask_pattern::causal(att::alignment::bottom_right);
        break;
    case 3: {
        const std::size_t left = reach();
        const std::size_t right = reach();
        opts.pattern = att::mask_pattern::sliding_window(left, right, alignment_of(pattern_kind & 8));
        break;
    }
    case 4: {
        const std::size_t block = input.ConsumeIntegralInRange<std::size_t>(1, 70);
        const std::size_t global = input.ConsumeIntegralInRange<std::size_t>(0, 20);
        opts.pattern = att::mask_pattern::block_local(block, global);
        break;
    }
    case 5: {
        const std::size_t patches = input.ConsumeIntegralInRange<std::size_t>(1, 40);
        const std::size_t before = input.ConsumeIntegralInRange<std::size_t>(0, 4);
        const std::size_t after = input.ConsumeIntegralInRange<std::size_t>(0, 4);
        const std::size_t global = input.ConsumeIntegralInRange<std::size_t>(0, 8);
        opts.pattern = att::mask_pattern::spatio_temporal(patches, before, after, global);
        break;
    }
    default: {
        // Any parameters, including groups and reaches large enough to saturate.
        const auto group_selector = input.ConsumeIntegral<std::uint8_t>();
        opts.pattern.group = group_selector < 16    ? std::size_t(1) << (40 + group_selector % 24)
                             : group_selector < 24 ? 0
                                                   : input.ConsumeIntegralInRange<std::size_t>(1, 90);
        invalid = invalid || opts.pattern.group == 0;
        opts.pattern.before = reach();
        opts.pattern.after = reach();
        const auto global_selector = input.ConsumeIntegral<std::uint8_t>();
        opts.pattern.global_tokens = global_selector < 8 ? att::mask_pattern::unbounded - global_selector
                                                         : input.ConsumeIntegralInRange<std::size_t>(0, 200);
        opts.pattern.align = alignment_of(pattern_kind & 8);
        if ((pattern_kind & 16) != 0 && (pattern_kind & 32) != 0) {
            opts.pattern.align = static_cast<att::alignment>(2 + (pattern_kind >> 6));
            invalid = true;
        }
        break;
    }
    }

    const auto scale_selector = input.ConsumeIntegral<std::uint8_t>();
    if (scale_selector >= 128) {
        const float scales[] = {1.0f, 0.125f, 0.5f, 2.0f, 10.0f, 1e-3f, 1e3f, 0.0f, -1.0f, 0.37f};
        opts.scale = scale_selector < 240 ? scales[scale_selector % 10] : fz::draw_float(input, 4.0f);
        invalid = invalid || !std::isfinite(*opts.scale);
    }

    const auto position_selector = input.ConsumeIntegral<std::uint8_t>();
    if (position_selector >= 160) {
        const std::int64_t limit = std::int64_t(1) << 31;
        const std::int64_t edges[] = {limit - 1, -(limit - 1), limit, -limit,
                                      std::numeric_limits<std::int64_t>::max(),
                                      std::numeric_limits<std::int64_t>::min()};
        opts.query_position = position_selector >= 248
                                  ? edges[position_selector % 6]
                                  : input.ConsumeIntegralInRange<std::int64_t>(-300, 300);
        invalid = invalid || *opts.query_position >= limit || *opts.query_position <= -limit;
    }

    const auto mask_selector = input.ConsumeIntegral<std::uint8_t>();
    if ((mask_selector & 3) == 1 || (mask_selector & 3) == 3) {
        const mask_strides s = draw_mask_strides(input, batch, heads, queries, keys);
        const fz::value_recipe recipe = fz::draw_recipe(input);
        const auto masked_share = input.ConsumeIntegral<std::uint8_t>();
        std::vector<float> values = fz::make_values(recipe, s.span);
        fz::splitmix64 stream(recipe.seed ^ 0x5bd1e995u);
        for (float& value : values) {
            if ((stream.next() & 255) < masked_share) {
                value = -infinity;
            }
        }
        masks.additive = std::make_unique<guarded_buffer<float>>(s.span, (mask_selector >> 4) % 4);
        masks.additive_strides = s;
        std::copy(values.begin(), values.end(), masks.additive->data());
        masks.additive_before = fz::snapshot(*masks.additive);
        opts.additive = {masks.additive->data(), s.batch, s.head, s.row};
    }
    if ((mask_selector & 3) >= 2) {
        const mask_strides s = draw_mask_strides(input, batch, heads, queries, keys);
        const auto visible_share = input.ConsumeIntegral<std::uint8_t>();
        const bool as_bool = (mask_selector & 4) != 0;
        masks.allowed = std::make_unique<guarded_buffer<std::uint8_t>>(s.span, (mask_selector >> 6) % 4);
        masks.allowed_strides = s;
        fz::splitmix64 stream(input.ConsumeIntegral<std::uint32_t>());
        for (std::size_t i = 0; i < s.span; ++i) {
            const std::uint64_t bits = stream.next();
            const bool visible = (bits & 255) < visible_share;
            // A uint8 mask may use any non-zero byte for a visible key, but a bool mask only 1.
            std::uint8_t entry = 0;
            if (visible) {
                entry = as_bool ? 1 : static_cast<std::uint8_t>(1 + (bits >> 8) % 255);
            }
            (*masks.allowed)[i] = entry;
        }
        masks.allowed_before = fz::snapshot(*masks.allowed);
        if (as_bool) {
            opts.allowed = att::bool_mask(reinterpret_cast<const bool*>(masks.allowed->data()), s.batch, s.head,
                                          s.row);
        } else {
            opts.allowed = {masks.allowed->data(), s.batch, s.head, s.row};
        }
    }
    return invalid;
}

bool masks_unchanged(const mask_storage& masks)
{
    return (!masks.additive || fz::unchanged(*masks.additive, masks.additive_before)) &&
           (!masks.allowed || fz::unchanged(*masks.allowed, masks.allowed_before));
}

// The options of sequence b alone: masks start at sequence b.
att::options options_of_sequence(const att::options& opts, std::size_t b)
{
    att::options sequence_options = opts;
    if (opts.additive.requested()) {
        sequence_options.additive.data = opts.additive.row(b, 0, 0);
    }
    if (opts.allowed.requested()) {
        sequence_options.allowed.data = opts.allowed.row(b, 0, 0);
    }
    return sequence_options;
}

// ---------------------------------------------------------------------------------------------
// The contract check against the double reference

constexpr double unit_roundoff = 0x1.0p-24;

struct column_summary {
    double lowest = std::numeric_limits<double>::infinity();
    double highest = -std::numeric_limits<double>::infinity();
    double absolute_sum = 0.0;
    double slack = 0.0;
    bool flushed_nonfinite = false;
};

// Checks out, log_sum_exp (dense [B·H·Lq], or null) and the head-averaged map (or null) of one
// call against reference::scaled_dot_product under the contract of attention.hpp.
//
// Beyond the reference, each row needs the logits x_j of its visible keys, to find S (the
// largest Σ_c |scale·q_c·k_c| + |mask|) and the keys whose probability may be flushed to 0
// (x_j − m below −87.33 within the error of the float logits). Such keys contribute up to their
// whole p_j·|v_j| to an output's error, and a NaN or ∞ in their value may or may not reach it.
// The error bound is first order in the logit error ε = (D + 2)·2^-24·S, so it is checked only
// where ε ≤ 1/4. Every finite output must also lie within the values of the row's visible keys
// (a convex combination), whatever ε is. Rows whose float logits may overflow (S ≥ 2^126, or
// scale·q_c beyond the float range) and outputs whose values sum to 2^125 or more are only
// checked for NaN.
TESSERA_FUZZ_NO_COVERAGE void check_reference(const att::tensor_view<const float>& q, const att::tensor_view<const float>& k,
                     const att::tensor_view<const float>& v, const att::options& opts,
                     const att::tensor_view<const float>& out, const float* lse, const float* map,
                     std::size_t map_stride, const char* where)
{
    const att::reference::result ref = att::reference::scaled_dot_product(q, k, v, opts);
    const std::size_t B = q.batch;
    const std::size_t H = q.heads;
    const std::size_t Lq = q.tokens;
    const std::size_t Lk = k.tokens;
    const std::size_t D = q.dim;
    const std::size_t Dv = v.dim;
    const std::size_t group = H / k.heads;
    const double scale = opts.scale ? static_cast<double>(*opts.scale)
                                    : static_cast<double>(static_cast<float>(1.0 / std::sqrt(static_cast<double>(D))));
    const std::int64_t offset = opts.query_position ? *opts.query_position
                                : opts.pattern.align == att::alignment::top_left
                                    ? 0
                                    : static_cast<std::int64_t>(Lk) - static_cast<std::int64_t>(Lq);
    const double minus_infinity = -std::numeric_limits<double>::infinity();
    const double subnormal_slack = (2.0 * static_cast<double>(Lk) + 8.0) * 0x1.0p-149;

    // Per map row (b, i): the bound of each key, and whether a head of the row is NaN or unchecked.
    std::vector<double> map_bound(map != nullptr ? B * Lq * Lk : 0, 0.0);
    std::vector<char> map_row_nan(map != nullptr ? B * Lq : 0, 0);
    std::vector<char> map_row_unchecked(map != nullptr ? B * Lq : 0, 0);

    std::vector<double> x(Lk);
    std::vector<char> kept(Lk);
    std::vector<double> probability(Lk);
    std::vector<column_summary> columns;
    for (std::size_t b = 0; b < B; ++b) {
        for (std::size_t h = 0; h < H; ++h) {
            const std::size_t kv = h / group;
            for (std::size_t i = 0; i < Lq; ++i) {
                const std::size_t flat = (b * H + h) * Lq + i;
                const float* qi = q.row(b, h, i);
                const float* got = out.row(b, h, i);
                const std::int64_t position = static_cast<std::int64_t>(i) + offset;

                // Logits and S, as the reference computes them, and K, the largest Σ_c |k_c| of a
                // visible key.
                double S = 0.0;
                double K = 0.0;
                bool overflow = false;
                for (std::size_t c = 0; c < D; ++c) {
                    overflow = overflow || !(std::abs(scale * static_cast<double>(qi[c])) < 0x1.0p127);
                }
                for (std::size_t j = 0; j < Lk; ++j) {
                    bool visible = att::reference::pattern_allows(opts.pattern, position, static_cast<std::int64_t>(j));
                    double bias = 0.0;
                    if (opts.additive.requested()) {
                        bias = opts.additive.row(b, h, i)[j];
                        visible = visible && bias != minus_infinity;
                    }
                    if (opts.allowed.requested()) {
                        visible = visible && opts.allowed.row(b, h, i)[j] != 0;
                    }
                    if (!visible) {
                        x[j] = minus_infinity;
                        continue;
                    }
                    const float* kj = k.row(b, kv, j);
                    double dot = 0.0;
                    double absolute = std::abs(bias);
                    double key_sum = 0.0;
                    for (std::size_t c = 0; c < D; ++c) {
                        const double product = static_cast<double>(qi[c]) * static_cast<double>(kj[c]);
                        dot += product;
                        absolute += std::abs(scale * product);
                        key_sum += std::abs(static_cast<double>(kj[c]));
                    }
                    x[j] = scale * dot + bias;
                    if (!(absolute < 0x1.0p126)) {
                        overflow = true;  // also for a NaN
                    }
                    S = std::max(S, absolute);
                    K = std::max(K, key_sum);
                }

                const double want_lse = ref.lse[flat];
                if (std::isnan(want_lse)) {
                    // A NaN or +∞ logit: the whole row is NaN.
                    for (std::size_t d = 0; d < Dv; ++d) {
                        TESSERA_FUZZ_CHECK(std::isnan(got[d]), where << ": row (" << b << ", " << h << ", " << i
                                                                    << ") sees a NaN logit but out[" << d
                                                                    << "] = " << got[d]);
                    }
                    if (lse != nullptr) {
                        TESSERA_FUZZ_CHECK(std::isnan(lse[flat]), where << ": row (" << b << ", " << h << ", " << i
                                                                         << ") sees a NaN logit but lse = "
                                                                         << lse[flat]);
                    }
                    if (map != nullptr) {
                        map_row_nan[b * Lq + i] = 1;
                    }
                    continue;
                }
                if (overflow) {
                    if (map != nullptr) {
                        map_row_unchecked[b * Lq + i] = 1;
                    }
                    continue;
                }
                if (want_lse == minus_infinity) {
                    // No visible key with a finite logit: zeros and −∞.
                    for (std::size_t d = 0; d < Dv; ++d) {
                        TESSERA_FUZZ_CHECK(got[d] == 0.0f, where << ": fully masked row (" << b << ", " << h << ", "
                                                                 << i << ") has out[" << d << "] = " << got[d]);
                    }
                    if (lse != nullptr) {
                        TESSERA_FUZZ_CHECK(lse[flat] == -infinity, where << ": fully masked row (" << b << ", " << h
                                                                         << ", " << i << ") has lse " << lse[flat]);
                    }
                    continue;
                }

                double m = minus_infinity;
                for (std::size_t j = 0; j < Lk; ++j) {
                    m = std::max(m, x[j]);
                }
                // The NOTE of attention.hpp: roundings to subnormal floats (of scale·q_c, the
                // partial sums and the bias) add up to 2^-150·(Σ_c |k_c| + D + 2) to a score.
                const double logit_error = (static_cast<double>(D) + 2.0) * unit_roundoff * S +
                                           0x1.0p-150 * (K + static_cast<double>(D) + 2.0);
                const double flush_margin = 8.0 * logit_error + 0x1.0p-10;
                for (std::size_t j = 0; j < Lk; ++j) {
                    kept[j] = x[j] != minus_infinity && x[j] - m > static_cast<double>(att::kernels::flush_below) +
                                                                       flush_margin;
                    probability[j] = x[j] == minus_infinity ? 0.0 : std::exp(x[j] - want_lse);
                }

                // The bound is first order in the logit error ε, so it is valid while
                // e^(2ε) − 1 ≤ 4ε with room to spare. Every output is a convex combination of the visible values,
                // whatever ε is.
                const bool first_order = logit_error <= 0.25;
                // The rounding of the float sums over the keys (the output sums and l), the
                // 2·(Lk + 4)·2^-24 term of attention.hpp's bound.
                const double summation_error = (static_cast<double>(Lk) + 4.0) * unit_roundoff;
                const double relative_bound = 4.0 * logit_error + 0x1.0p-20 + 2.0 * summation_error;
                // Per output column, over the visible keys: the range and the sum of |v| of the
                // finite values, the share of possibly flushed keys, and whether a possibly
                // flushed key has a NaN or ∞ value.
                columns.assign(Dv, column_summary{});
                for (std::size_t j = 0; j < Lk; ++j) {
                    if (x[j] == minus_infinity) {
                        continue;
                    }
                    const float* vj = v.row(b, kv, j);
                    for (std::size_t d = 0; d < Dv; ++d) {
                        column_summary& column = columns[d];
                        const double value = static_cast<double>(vj[d]);
                        if (!std::isfinite(value)) {
                            column.flushed_nonfinite = column.flushed_nonfinite || !kept[j];
                            continue;
                        }
                        column.absolute_sum += std::abs(value);
                        column.lowest = std::min(column.lowest, value);
                        column.highest = std::max(column.highest, value);
                        if (!kept[j]) {
                            column.slack += probability[j] * std::abs(value);
                        }
                    }
                }
                for (std::size_t d = 0; d < Dv; ++d) {
                    const double want = ref.out[flat * Dv + d];
                    const column_summary& column = columns[d];
                    const double lowest = column.lowest;
                    const double highest = column.highest;
                    if (column.flushed_nonfinite) {
                        continue;
                    }
                    if (std::isnan(want)) {
                        TESSERA_FUZZ_CHECK(std::isnan(got[d]), where << ": out(" << b << ", " << h << ", " << i << ", "
                                                                     << d << ") = " << got[d]
                                                                     << ", but a NaN or ±∞ pair of values makes it NaN");
                        continue;
                    }
                    if (!(column.absolute_sum < 0x1.0p125)) {
                        continue;  // the float sum of the finite values may overflow
                    }
                    if (std::isinf(want)) {
                        TESSERA_FUZZ_CHECK(static_cast<double>(got[d]) == want,
                                           where << ": out(" << b << ", " << h << ", " << i << ", " << d << ") = "
                                                 << got[d] << ", reference " << want);
                        continue;
                    }
                    // The output and l are both sums over the keys, each rounded up to about
                    // (Lk + 4) times, so the quotient may leave the range by twice that.
                    const double rounding =
                        2.0 * summation_error * std::max(std::abs(lowest), std::abs(highest)) + subnormal_slack;
                    const double got_value = static_cast<double>(got[d]);
                    TESSERA_FUZZ_CHECK(got_value >= lowest - rounding && got_value <= highest + rounding,
                                       where << ": out(" << b << ", " << h << ", " << i << ", " << d << ") = "
                                             << fz::exact(got[d]) << " lies outside the values ["
                                             << fz::exact(lowest) << ", " << fz::exact(highest)
                                             << "] of the visible keys by more than " << rounding << " (" << Lk
                                             << " keys)");
                    if (!first_order) {
                        continue;
                    }
                    const double bound = relative_bound * ref.weight[flat * Dv + d] + column.slack + subnormal_slack;
                    const double error = std::abs(got_value - want);
                    TESSERA_FUZZ_CHECK(error <= bound, where << ": out(" << b << ", " << h << ", " << i << ", " << d
                                                             << ") = " << got[d] << ", reference " << want
                                                             << ", error " << error << " above the bound " << bound
                                                             << " (S " << S << ", Σp|v| "
                                                             << ref.weight[flat * Dv + d] << ", " << Lk << " keys)");
                }

                if (lse != nullptr) {
                    const double error = std::abs(static_cast<double>(lse[flat]) - want_lse);
                    const double bound =
                        4.0 * logit_error + 0x1.0p-20 * (1.0 + std::abs(want_lse)) + summation_error;
                    TESSERA_FUZZ_CHECK(error <= bound, where << ": lse(" << b << ", " << h << ", " << i << ") = "
                                                             << fz::exact(lse[flat]) << ", reference "
                                                             << fz::exact(want_lse) << ", error " << error
                                                             << " above the bound " << bound << " (S " << S
                                                             << ", largest logit " << fz::exact(m) << ", " << Lk
                                                             << " keys, D " << D << ")");
                }

                if (map != nullptr && !first_order) {
                    // The map pass recomputes the scores, with the wide kernel even where the
                    // forward pass took the narrow one, so beyond first order e^(x − m) may even
                    // overflow.
                    map_row_unchecked[b * Lq + i] = 1;
                } else if (map != nullptr) {
                    // p_h with a relative error of 2·(D+2)·2^-24·S + 2^-21 plus the rounding of l,
                    // or any value up to p_h for a key that may be flushed, then averaged over H
                    // heads.
                    const double relative = 2.0 * logit_error + 0x1.0p-21 + summation_error;
                    double* bounds = map_bound.data() + (b * Lq + i) * Lk;
                    for (std::size_t j = 0; j < Lk; ++j) {
                        if (x[j] == minus_infinity) {
                            continue;
                        }
                        const double p = probability[j] / static_cast<double>(H);
                        bounds[j] += kept[j] ? relative * p : p;
                    }
                }
            }
        }
    }

    if (map == nullptr) {
        return;
    }
    for (std::size_t r = 0; r < B * Lq; ++r) {
        if (map_row_unchecked[r]) {
            continue;
        }
        for (std::size_t j = 0; j < Lk; ++j) {
            const float got = map[r * map_stride + j];
            const double want = ref.map[r * Lk + j];
            if (std::isnan(want)) {
                TESSERA_FUZZ_CHECK(std::isnan(got), where << ": map(" << r << ", " << j << ") = " << got
                                                          << ", but a head of the row is NaN");
                continue;
            }
            if (map_row_nan[r] && std::isnan(got)) {
                continue;  // a NaN head may turn its masked keys NaN too
            }
            const double bound = map_bound[r * Lk + j] + (static_cast<double>(H) + 2.0) * unit_roundoff * want +
                                 static_cast<double>(H + 1) * 0x1.0p-149;
            const double error = std::abs(static_cast<double>(got) - want);
            TESSERA_FUZZ_CHECK(error <= bound, where << ": map(" << r << ", " << j << ") = " << got << ", reference "
                                                     << want << ", error " << error << " above the bound " << bound);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shapes

struct shape {
    std::size_t batch = 1;
    std::size_t heads = 1;
    std::size_t kv_heads = 1;
    std::size_t queries = 1;
    std::size_t keys = 1;
    std::size_t dim = 1;
    std::size_t value_dim = 1;
};

// An output view of out's shape [batch, heads, queries, value_dim] placed on an input's memory,
// with batch and head strides of 0: it overlaps that input and its own rows, and every call
// must reject it.
att::tensor_view<float> out_view_into(const float* data, const shape& s)
{
    att::tensor_view<float> view(const_cast<float*>(data), 1, 1, 1, 1);
    view.batch = s.batch;
    view.heads = s.heads;
    view.tokens = s.queries;
    view.dim = s.value_dim;
    view.batch_stride = 0;
    view.head_stride = 0;
    view.token_stride = s.value_dim;
    return view;
}

// Draws a shape. Decode shapes have few query rows and up to 2200 keys, so that splits of 512
// or 528 keys are merged. The others have up to 150 tokens, so that tiles of 64 or 66 keys and
// tiles of query rows end in tails. Token counts shrink to the work budget.
shape draw_shape(FuzzedDataProvider& input)
{
    shape s;
    const bool decode = input.ConsumeIntegral<std::uint8_t>() < 32;
    s.batch = input.ConsumeIntegralInRange<std::size_t>(0, decode ? 2 : 3);
    s.kv_heads = input.ConsumeIntegralInRange<std::size_t>(1, 3);
    s.heads = s.kv_heads * input.ConsumeIntegralInRange<std::size_t>(1, 4);
    s.queries = input.ConsumeIntegralInRange<std::size_t>(0, decode ? 3 : 150);
    s.keys = input.ConsumeIntegralInRange<std::size_t>(0, decode ? 2200 : 150);
    s.dim = input.ConsumeIntegralInRange<std::size_t>(1, decode ? 96 : 80);
    s.value_dim = input.ConsumeIntegralInRange<std::size_t>(1, decode ? 96 : 80);

    const std::size_t budget = decode ? decode_work_budget : work_budget;
    const std::size_t rows = std::max<std::size_t>(1, s.batch * s.heads * s.queries);
    const std::size_t per_key = rows * (s.dim + s.value_dim);
    s.keys = std::min(s.keys, budget / per_key);
    const std::size_t per_query = std::max<std::size_t>(1, s.batch * s.heads * std::max<std::size_t>(s.keys, 1) *
                                                               (s.dim + s.value_dim));
    s.queries = std::min(s.queries, std::max<std::size_t>(1, budget / per_query));
    return s;
}

// Argument errors that an input may inject. Each is applied only where it makes the call
// invalid, and the case records whether it did.
enum class fault : std::uint8_t {
    none,
    token_stride_below_dim,
    heads_not_multiple,
    key_dim_mismatch,
    value_tokens_mismatch,
    out_dim_mismatch,
    batch_mismatch,
    lse_size,
    map_shape,
    map_row_stride,
    out_overlaps_q,
    lse_overlaps_out,
    null_query,
    mask_row_stride,
    huge_extent,
    kv_heads_zero,
    map_overlaps_mask,
    // paged only
    negative_length,
    length_beyond_table,
    entry_outside_cache,
    table_row_stride,
    table_rows,
    lengths_size,
    cache_blocks_mismatch,
    out_overlaps_cache,
    count,
};

fault draw_fault(FuzzedDataProvider& input)
{
    const auto selector = input.ConsumeIntegral<std::uint8_t>();
    if (selector < 192) {
        return fault::none;
    }
    return static_cast<fault>(1 + selector % (static_cast<int>(fault::count) - 1));
}

// Whether checked_product({a, b, c}) overflows: the library multiplies left to right, so a zero
// after an overflowing pair does not help.
bool product_overflows(std::size_t a, std::size_t b, std::size_t c)
{
    const unsigned __int128 ab = static_cast<unsigned __int128>(a) * b;
    return ab > std::numeric_limits<std::size_t>::max() ||
           ab * c > std::numeric_limits<std::size_t>::max();
}

// Runs call() again with 2 threads after it ran with 1, and requires compare() to find the
// outputs that save() stored from the first run.
template <class Call, class Save, class Compare>
void check_thread_counts(Call&& call, Save&& save, Compare&& compare, const char* where)
{
    save();
    fz::set_threads(2);
    const bool accepted_again = fz::accepted(where, call);
    fz::set_threads(1);
    TESSERA_FUZZ_CHECK(accepted_again, where << ": rejected with 2 threads after it was accepted with 1");
    TESSERA_FUZZ_CHECK(compare(), where << ": 2 threads gave other bits than 1 thread");
}

TESSERA_FUZZ_NO_COVERAGE std::vector<float> tensor_values(const fuzz_tensor& t)
{
    std::vector<float> values;
    if (t.empty()) {
        return values;
    }
    values.reserve(t.element_count());
    for (std::size_t b = 0; b < t.batch; ++b) {
        for (std::size_t h = 0; h < t.heads; ++h) {
            for (std::size_t i = 0; i < t.tokens; ++i) {
                const float* row = t.data() + t.index(b, h, i);
                values.insert(values.end(), row, row + t.dim);
            }
        }
    }
    return values;
}

bool same_float_bits(const std::vector<float>& a, const std::vector<float>& b)
{
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// ---------------------------------------------------------------------------------------------
// scaled_dot_product

template <class A>
void run_contiguous(FuzzedDataProvider& input, const fault injected)
{
    constexpr const char* where = "scaled_dot_product";
    const shape s = draw_shape(input);
    const std::size_t k_heads = injected == fault::kv_heads_zero ? 0 : s.kv_heads;

    fuzz_tensor q = make_tensor(input, s.batch, s.heads, s.queries, s.dim, true);
    fuzz_tensor k = make_tensor(input, s.batch, k_heads, s.keys, s.dim, true);
    fuzz_tensor v = make_tensor(input, s.batch, k_heads, s.keys, s.value_dim, true);
    fuzz_tensor out = make_tensor(input, s.batch, s.heads, s.queries, s.value_dim, false);
    const fz::value_recipe q_recipe = fz::draw_recipe(input);
    const fz::value_recipe k_recipe = fz::draw_recipe(input);
    const fz::value_recipe v_recipe = fz::draw_recipe(input);
    q.fill(fz::make_values(q_recipe, q.element_count()));
    k.fill(fz::make_values(k_recipe, k.element_count()));
    v.fill(fz::make_values(v_recipe, v.element_count()));

    att::options opts;
    mask_storage masks;
    bool invalid = draw_options(input, s.batch, s.heads, s.queries, s.keys, opts, masks);

    // Optional outputs: log_sum_exp [B·H·Lq] and the map [B·Lq × Lk] with a padded row stride.
    const auto output_flags = input.ConsumeIntegral<std::uint8_t>();
    const bool want_lse = (output_flags & 1) != 0;
    const bool want_map = (output_flags & 2) != 0;
    const std::size_t rows = s.batch * s.heads * s.queries;
    const std::size_t map_rows = s.batch * s.queries;
    const std::size_t map_stride = s.keys + (output_flags >> 2) % 4;
    guarded_buffer<float> lse_buffer(rows + 1, (output_flags >> 4) % 4);
    guarded_buffer<float> map_buffer(std::max<std::size_t>(1, map_rows * map_stride), (output_flags >> 6) % 4);
    vector_view<float> lse_view;
    matrix_view<float> map_view;
    if (want_lse) {
        lse_view = {lse_buffer.data(), rows};
    }
    if (want_map) {
        map_view = {map_buffer.data(), map_rows, s.keys, map_stride};
    }

    att::tensor_view<const float> q_view = q.const_view();
    att::tensor_view<const float> k_view = k.const_view();
    att::tensor_view<const float> v_view = v.const_view();
    att::tensor_view<float> out_view = out.view();

    // Inject the drawn argument error where it makes the call invalid.
    switch (injected) {
    case fault::token_stride_below_dim: {
        att::tensor_view<const float>* inputs[] = {&q_view, &k_view, &v_view};
        const auto target = input.ConsumeIntegral<std::uint8_t>() % 4;
        if (target < 3 && !inputs[target]->empty() && inputs[target]->tokens > 1) {
            inputs[target]->token_stride = inputs[target]->dim - 1;
            invalid = true;
        } else if (target == 3 && !out_view.empty() && out_view.tokens > 1) {
            out_view.token_stride = out_view.dim - 1;
            invalid = true;
        }
        break;
    }
    case fault::heads_not_multiple:
        if (s.kv_heads > 1) {
            q_view.heads += 1;
            out_view.heads += 1;
            invalid = true;
        }
        break;
    case fault::key_dim_mismatch:
        k_view.dim = k_view.dim > 1 ? k_view.dim - 1 : k_view.dim + 1;
        invalid = true;
        break;
    case fault::value_tokens_mismatch:
        v_view.tokens += 1;
        invalid = true;
        break;
    case fault::out_dim_mismatch:
        out_view.dim = out_view.dim > 1 ? out_view.dim - 1 : out_view.dim + 1;
        invalid = true;
        break;
    case fault::batch_mismatch:
        k_view.batch += 1;
        invalid = true;
        break;
    case fault::lse_size:
        lse_view = {lse_buffer.data(), rows + 1};
        invalid = true;
        break;
    case fault::map_shape:
        map_view = {map_buffer.data(), map_rows, s.keys + 1, map_stride + 1};
        invalid = true;
        break;
    case fault::map_row_stride:
        if (map_rows > 1 && s.keys > 0) {
            map_view = {map_buffer.data(), map_rows, s.keys, s.keys - 1};
            invalid = true;
        }
        break;
    case fault::out_overlaps_q:
        if (!q_view.empty() && !out_view.empty()) {
            // A view of q's own memory with the shape of out, inside q's buffer.
            out_view = out_view_into(q.data(), s);
            invalid = true;
        }
        break;
    case fault::lse_overlaps_out:
        if (rows > 0 && !out_view.empty()) {
            lse_view = {out.data(), rows};
            invalid = true;
        }
        break;
    case fault::null_query:
        if (!q_view.empty()) {
            q_view.data = nullptr;
            invalid = true;
        }
        break;
    case fault::mask_row_stride:
        if (opts.additive.requested() && s.batch > 0 && s.heads > 0 && s.queries > 1 && s.keys > 1) {
            opts.additive.row_stride = s.keys - 1;
            invalid = true;
        }
        break;
    case fault::kv_heads_zero:
        invalid = true;
        break;
    case fault::huge_extent: {
        // One extent of the problem becomes huge in every view that has it. The buffers stay
        // small, so a call must reject every view that is not empty before reading it.
        const std::size_t huge = fz::huge_extent(input.ConsumeIntegral<std::uint8_t>());
        switch (input.ConsumeIntegral<std::uint8_t>() % 6) {
        case 0: q_view.batch = k_view.batch = v_view.batch = out_view.batch = huge; break;
        case 1: q_view.heads = out_view.heads = huge - huge % s.kv_heads; break;
        case 2: q_view.tokens = out_view.tokens = huge; break;
        case 3: k_view.tokens = v_view.tokens = huge; break;
        case 4: q_view.dim = k_view.dim = huge; break;
        default: v_view.dim = out_view.dim = huge; break;
        }
        break;
    }
    case fault::map_overlaps_mask:
        if (opts.additive.requested() && map_rows > 0 && s.keys > 0 && s.heads > 0) {
            map_view = {masks.additive->data(), map_rows, s.keys, 0};
            map_view.row_stride = s.keys;
            invalid = true;
        }
        break;
    default:
        break;
    }
    invalid = invalid || tensor_invalid(q_view) || tensor_invalid(k_view) || tensor_invalid(v_view) ||
              tensor_invalid(out_view) || product_overflows(q_view.batch, q_view.heads, q_view.tokens);

    const std::vector<float> q_before = fz::snapshot(*q.buffer);
    const std::vector<float> k_before = fz::snapshot(*k.buffer);
    const std::vector<float> v_before = fz::snapshot(*v.buffer);
    const bool two_threads = input.ConsumeIntegral<std::uint8_t>() >= 192;

    auto call = [&] {
        att::scaled_dot_product<A>(q_view, k_view, v_view, out_view, opts, lse_view, map_view);
    };
    bool ok = false;
    {
        // Padding, guards, unread mask entries and unrequested outputs must not be touched.
        fz::poisoned_region region;
        q.poison_outside(region);
        k.poison_outside(region);
        v.poison_outside(region);
        out.poison_outside(region);
        poison_masks(region, masks);
        region.add_outside(lse_buffer, [&](std::size_t i) { return want_lse && i < rows; });
        region.add_outside(map_buffer,
                           [&](std::size_t i) { return want_map && i < map_rows * map_stride && i % map_stride < s.keys; });
        ok = fz::accepted(where, call);
    }

    TESSERA_FUZZ_CHECK(fz::unchanged(*q.buffer, q_before) && fz::unchanged(*k.buffer, k_before) &&
                           fz::unchanged(*v.buffer, v_before) && masks_unchanged(masks),
                       where << ": a call wrote to an input");
    if (!ok) {
        TESSERA_FUZZ_CHECK(invalid, where << ": a valid call was rejected (shape [" << s.batch << ", " << s.heads
                                          << ", " << s.queries << ", " << s.dim << "], keys " << s.keys
                                          << ", kv heads " << s.kv_heads << ", value dim " << s.value_dim << ")");
        TESSERA_FUZZ_CHECK(out.untouched() && tessera::test::untouched(lse_buffer) && tessera::test::untouched(map_buffer),
                           where << ": a rejected call wrote to an output");
        return;
    }
    TESSERA_FUZZ_CHECK(!invalid, where << ": an invalid call (fault " << static_cast<int>(injected)
                                       << ") was accepted");
    TESSERA_FUZZ_CHECK(out.outside_intact(), where << ": a write outside out's elements");
    TESSERA_FUZZ_CHECK(lse_buffer.guards_intact() && lse_buffer.element_untouched(rows),
                       where << ": a write outside log_sum_exp");
    if (!want_lse) {
        TESSERA_FUZZ_CHECK(tessera::test::untouched(lse_buffer), where << ": log_sum_exp written without being requested");
    }
    if (want_map) {
        for (std::size_t r = 0; r < map_rows; ++r) {
            for (std::size_t j = s.keys; j < map_stride; ++j) {
                TESSERA_FUZZ_CHECK(map_buffer.element_untouched(r * map_stride + j),
                                   where << ": a write to the row padding of the map");
            }
        }
        TESSERA_FUZZ_CHECK(map_buffer.guards_intact(), where << ": a write outside the map");
    } else {
        TESSERA_FUZZ_CHECK(tessera::test::untouched(map_buffer), where << ": the map written without being requested");
    }

    if (two_threads) {
        std::vector<float> first_out, first_lse, first_map;
        auto save = [&] {
            first_out = tensor_values(out);
            first_lse.assign(lse_buffer.data(), lse_buffer.data() + rows);
            first_map.assign(map_buffer.data(), map_buffer.data() + map_buffer.size());
        };
        auto compare = [&] {
            const std::vector<float> lse_now(lse_buffer.data(), lse_buffer.data() + rows);
            const std::vector<float> map_now(map_buffer.data(), map_buffer.data() + map_buffer.size());
            return same_float_bits(tensor_values(out), first_out) && same_float_bits(lse_now, first_lse) &&
                   same_float_bits(map_now, first_map);
        };
        check_thread_counts(call, save, compare, where);
    }

    if (q_view.empty() || out_view.empty()) {
        return;
    }
    check_reference(q_view, k_view, v_view, opts, out.const_view(), want_lse ? lse_buffer.data() : nullptr,
                    want_map ? map_buffer.data() : nullptr, map_stride, where);
}

// ---------------------------------------------------------------------------------------------
// paged_scaled_dot_product

template <class A>
void run_paged(FuzzedDataProvider& input, const fault injected)
{
    constexpr const char* where = "paged_scaled_dot_product";
    const shape s = draw_shape(input);
    const std::size_t batch = s.batch;
    const std::size_t block_size = input.ConsumeIntegralInRange<std::size_t>(1, 40);

    // Sequence lengths up to s.keys, and the blocks each one uses.
    std::vector<std::size_t> lengths(batch);
    std::size_t used_blocks = 0;
    std::size_t table_cols = 0;
    for (std::size_t b = 0; b < batch; ++b) {
        lengths[b] = input.ConsumeIntegralInRange<std::size_t>(0, s.keys);
        const std::size_t blocks = (lengths[b] + block_size - 1) / block_size;
        used_blocks += blocks;
        table_cols = std::max(table_cols, blocks);
    }
    const std::size_t longest = lengths.empty() ? 0 : *std::max_element(lengths.begin(), lengths.end());
    const auto table_flags = input.ConsumeIntegral<std::uint8_t>();
    table_cols += table_flags % 3;
    const std::size_t table_stride = table_cols + (table_flags >> 2) % 3;
    const std::size_t cache_blocks = used_blocks + (table_flags >> 4) % 4;

    // Keys and values in contiguous [batch, kv heads, longest, dim] tensors, copied into the cache.
    fuzz_tensor keys = make_tensor(input, batch, s.kv_heads, longest, s.dim, false);
    fuzz_tensor values = make_tensor(input, batch, s.kv_heads, longest, s.value_dim, false);
    const fz::value_recipe k_recipe = fz::draw_recipe(input);
    const fz::value_recipe v_recipe = fz::draw_recipe(input);
    const fz::value_recipe unused_recipe = fz::draw_recipe(input);
    keys.fill(fz::make_values(k_recipe, keys.element_count()));
    values.fill(fz::make_values(v_recipe, values.element_count()));

    fuzz_tensor key_cache = make_tensor(input, cache_blocks, s.kv_heads, block_size, s.dim, false);
    fuzz_tensor value_cache = make_tensor(input, cache_blocks, s.kv_heads, block_size, s.value_dim, false);
    // Slots no sequence uses (spare blocks, the tail of each last block) get their own values,
    // which may be NaN or ∞ and must not reach any output.
    key_cache.fill(fz::make_values(unused_recipe, key_cache.element_count()));
    value_cache.fill(fz::make_values(unused_recipe, value_cache.element_count()));

    std::vector<std::int32_t> order(cache_blocks);
    std::iota(order.begin(), order.end(), 0);
    fz::splitmix64 shuffle(input.ConsumeIntegral<std::uint32_t>());
    for (std::size_t i = cache_blocks; i > 1; --i) {
        std::swap(order[i - 1], order[shuffle.next() % i]);
    }
    guarded_buffer<std::int32_t> table(std::max<std::size_t>(1, (batch + 1) * table_stride), table_flags >> 6);
    const std::int32_t unused_entries[] = {-1, -7, static_cast<std::int32_t>(cache_blocks),
                                           std::numeric_limits<std::int32_t>::max(),
                                           std::numeric_limits<std::int32_t>::min(), 0};
    for (std::size_t i = 0; i < table.size(); ++i) {
        table[i] = unused_entries[shuffle.next() % 6];
    }
    std::size_t next_block = 0;
    for (std::size_t b = 0; b < batch; ++b) {
        for (std::size_t j = 0; j < lengths[b]; ++j) {
            if (j % block_size == 0) {
                table[b * table_stride + j / block_size] = order[next_block++];
            }
            const auto block = static_cast<std::size_t>(table[b * table_stride + j / block_size]);
            for (std::size_t h = 0; h < s.kv_heads; ++h) {
                std::copy_n(keys.data() + keys.index(b, h, j), s.dim,
                            key_cache.data() + key_cache.index(block, h, j % block_size));
                std::copy_n(values.data() + values.index(b, h, j), s.value_dim,
                            value_cache.data() + value_cache.index(block, h, j % block_size));
            }
        }
    }
    guarded_buffer<std::int32_t> length_buffer(batch + 1);
    for (std::size_t b = 0; b < batch; ++b) {
        length_buffer[b] = static_cast<std::int32_t>(lengths[b]);
    }

    fuzz_tensor q = make_tensor(input, s.batch, s.heads, s.queries, s.dim, true);
    fuzz_tensor out = make_tensor(input, s.batch, s.heads, s.queries, s.value_dim, false);
    q.fill(fz::make_values(fz::draw_recipe(input), q.element_count()));

    att::options opts;
    mask_storage masks;
    bool invalid = draw_options(input, batch, s.heads, s.queries, longest, opts, masks);
    const auto output_flags = input.ConsumeIntegral<std::uint8_t>();
    const bool want_lse = (output_flags & 1) != 0;
    const std::size_t rows = batch * s.heads * s.queries;
    guarded_buffer<float> lse_buffer(rows + 1, (output_flags >> 4) % 4);
    vector_view<float> lse_view;
    if (want_lse) {
        lse_view = {lse_buffer.data(), rows};
    }

    att::tensor_view<const float> q_view = q.const_view();
    att::tensor_view<float> out_view = out.view();
    att::paged_cache cache;
    cache.keys = key_cache.const_view();
    cache.values = value_cache.const_view();
    cache.block_table = {table.data(), batch, table_cols, table_stride};
    cache.lengths = {length_buffer.data(), batch};

    switch (injected) {
    case fault::token_stride_below_dim:
        if (!q_view.empty() && q_view.tokens > 1) {
            q_view.token_stride = q_view.dim - 1;
            invalid = true;
        }
        break;
    case fault::lse_size:
        lse_view = {lse_buffer.data(), rows + 1};
        invalid = true;
        break;
    case fault::lse_overlaps_out:
        if (rows > 0 && !out_view.empty()) {
            lse_view = {out.data(), rows};
            invalid = true;
        }
        break;
    case fault::null_query:
        if (!q_view.empty()) {
            q_view.data = nullptr;
            invalid = true;
        }
        break;
    case fault::mask_row_stride:
        if (opts.additive.requested() && batch > 0 && s.heads > 0 && s.queries > 1 && longest > 1) {
            opts.additive.row_stride = longest - 1;
            invalid = true;
        }
        break;
    case fault::negative_length:
        if (batch > 0) {
            length_buffer[input.ConsumeIntegral<std::uint8_t>() % batch] =
                -1 - static_cast<std::int32_t>(input.ConsumeIntegral<std::uint8_t>());
            invalid = true;
        }
        break;
    case fault::length_beyond_table:
        if (batch > 0) {
            length_buffer[input.ConsumeIntegral<std::uint8_t>() % batch] =
                static_cast<std::int32_t>(table_cols * block_size + 1);
            invalid = true;
        }
        break;
    case fault::entry_outside_cache:
        for (std::size_t b = 0; b < batch; ++b) {
            if (lengths[b] > 0) {
                const std::size_t used = (lengths[b] + block_size - 1) / block_size;
                table[b * table_stride + input.ConsumeIntegral<std::uint8_t>() % used] =
                    unused_entries[input.ConsumeIntegral<std::uint8_t>() % 5];
                invalid = true;
                break;
            }
        }
        break;
    case fault::table_row_stride:
        if (batch > 1 && table_cols > 0) {
            cache.block_table.row_stride = table_cols - 1;
            invalid = true;
        }
        break;
    case fault::table_rows:
        cache.block_table.rows = batch + 1;
        invalid = true;
        break;
    case fault::lengths_size:
        cache.lengths.size = batch + 1;
        invalid = true;
        break;
    case fault::cache_blocks_mismatch:
        cache.values.batch += 1;
        invalid = true;
        break;
    case fault::key_dim_mismatch:
        cache.keys.dim = cache.keys.dim > 1 ? cache.keys.dim - 1 : cache.keys.dim + 1;
        invalid = true;
        break;
    case fault::out_overlaps_cache:
        if (!out_view.empty() && !key_cache.empty()) {
            out_view = out_view_into(key_cache.data(), s);
            invalid = true;
        }
        break;
    case fault::kv_heads_zero:
        cache.keys.heads = 0;
        cache.values.heads = 0;
        invalid = true;
        break;
    case fault::huge_extent: {
        const std::size_t huge = fz::huge_extent(input.ConsumeIntegral<std::uint8_t>());
        switch (input.ConsumeIntegral<std::uint8_t>() % 7) {
        case 0:
            // cache.lengths cannot have a huge size, so this is invalid even with empty tensors.
            q_view.batch = out_view.batch = huge;
            invalid = true;
            break;
        case 1: q_view.heads = out_view.heads = huge - huge % s.kv_heads; break;
        case 2: q_view.tokens = out_view.tokens = huge; break;
        case 3: cache.keys.tokens = cache.values.tokens = huge; break;
        case 4: q_view.dim = cache.keys.dim = huge; break;
        case 5: cache.values.dim = out_view.dim = huge; break;
        default: cache.keys.batch = cache.values.batch = huge; break;
        }
        break;
    }
    default:
        break;
    }
    invalid = invalid || tensor_invalid(q_view) || tensor_invalid(cache.keys) || tensor_invalid(cache.values) ||
              tensor_invalid(out_view) || product_overflows(q_view.batch, q_view.heads, q_view.tokens);

    const std::vector<float> q_before = fz::snapshot(*q.buffer);
    const std::vector<float> key_cache_before = fz::snapshot(*key_cache.buffer);
    const std::vector<float> value_cache_before = fz::snapshot(*value_cache.buffer);
    const std::vector<std::int32_t> table_before = fz::snapshot(table);
    const std::vector<std::int32_t> lengths_before = fz::snapshot(length_buffer);
    const bool two_threads = input.ConsumeIntegral<std::uint8_t>() >= 192;

    auto call = [&] { att::paged_scaled_dot_product<A>(q_view, cache, out_view, opts, lse_view); };
    bool ok = false;
    {
        // Cache slots that hold no key of a sequence (spare blocks, the tail of each last block),
        // table padding, guards and unread mask entries must not be touched.
        std::vector<char> key_slots(key_cache.buffer->size(), 0);
        std::vector<char> value_slots(value_cache.buffer->size(), 0);
        for (std::size_t b = 0; b < batch; ++b) {
            for (std::size_t j = 0; j < lengths[b]; ++j) {
                const auto block = static_cast<std::size_t>(table[b * table_stride + j / block_size]);
                for (std::size_t h = 0; h < s.kv_heads && block < cache_blocks; ++h) {
                    std::fill_n(key_slots.begin() + static_cast<std::ptrdiff_t>(key_cache.index(block, h, j % block_size)),
                                s.dim, 1);
                    std::fill_n(value_slots.begin() +
                                    static_cast<std::ptrdiff_t>(value_cache.index(block, h, j % block_size)),
                                s.value_dim, 1);
                }
            }
        }
        fz::poisoned_region region;
        region.add_outside(*key_cache.buffer, [&](std::size_t i) { return key_slots[i] != 0; });
        region.add_outside(*value_cache.buffer, [&](std::size_t i) { return value_slots[i] != 0; });
        region.add_outside(table, [&](std::size_t i) { return table_stride != 0 && i % table_stride < table_cols; });
        region.add_outside(length_buffer, [&](std::size_t i) { return i < batch; });
        q.poison_outside(region);
        out.poison_outside(region);
        poison_masks(region, masks);
        region.add_outside(lse_buffer, [&](std::size_t i) { return want_lse && i < rows; });
        ok = fz::accepted(where, call);
    }

    TESSERA_FUZZ_CHECK(fz::unchanged(*q.buffer, q_before) && fz::unchanged(*key_cache.buffer, key_cache_before) &&
                           fz::unchanged(*value_cache.buffer, value_cache_before) && fz::unchanged(table, table_before) &&
                           fz::unchanged(length_buffer, lengths_before) && masks_unchanged(masks),
                       where << ": a call wrote to an input");
    if (!ok) {
        TESSERA_FUZZ_CHECK(invalid, where << ": a valid call was rejected (batch " << batch << ", heads " << s.heads
                                          << "/" << s.kv_heads << ", queries " << s.queries << ", longest sequence "
                                          << longest << ", block size " << block_size << ")");
        TESSERA_FUZZ_CHECK(out.untouched() && tessera::test::untouched(lse_buffer), where << ": a rejected call wrote to an output");
        return;
    }
    TESSERA_FUZZ_CHECK(!invalid, where << ": an invalid call (fault " << static_cast<int>(injected)
                                       << ") was accepted");
    TESSERA_FUZZ_CHECK(out.outside_intact(), where << ": a write outside out's elements");
    TESSERA_FUZZ_CHECK(lse_buffer.guards_intact() && lse_buffer.element_untouched(rows),
                       where << ": a write outside log_sum_exp");
    if (!want_lse) {
        TESSERA_FUZZ_CHECK(tessera::test::untouched(lse_buffer), where << ": log_sum_exp written without being requested");
    }

    if (two_threads) {
        std::vector<float> first_out, first_lse;
        auto save = [&] {
            first_out = tensor_values(out);
            first_lse.assign(lse_buffer.data(), lse_buffer.data() + rows);
        };
        auto compare = [&] {
            const std::vector<float> lse_now(lse_buffer.data(), lse_buffer.data() + rows);
            return same_float_bits(tensor_values(out), first_out) && same_float_bits(lse_now, first_lse);
        };
        check_thread_counts(call, save, compare, where);
    }

    // Each sequence against the same keys stored contiguously: the same bits, and the reference.
    for (std::size_t b = 0; b < batch && !q_view.empty(); ++b) {
        att::tensor_view<const float> q_one = q_view;
        q_one.data = q_view.row(b, 0, 0);
        q_one.batch = 1;
        att::tensor_view<const float> k_one = keys.const_view();
        k_one.data = keys.data() + keys.index(b, 0, 0);
        k_one.batch = 1;
        k_one.tokens = lengths[b];
        att::tensor_view<const float> v_one = values.const_view();
        v_one.data = values.data() + values.index(b, 0, 0);
        v_one.batch = 1;
        v_one.tokens = lengths[b];
        const att::options opts_one = options_of_sequence(opts, b);

        std::vector<float> expected(s.heads * s.queries * s.value_dim, 7.0f);
        std::vector<float> expected_lse(s.heads * s.queries, 7.0f);
        const att::tensor_view<float> expected_view(expected.data(), 1, s.heads, s.queries, s.value_dim);
        const bool contiguous_ok = fz::accepted("scaled_dot_product of one sequence", [&] {
            att::scaled_dot_product<A>(q_one, k_one, v_one, expected_view, opts_one,
                                       vector_view<float>(expected_lse.data(), expected_lse.size()));
        });
        TESSERA_FUZZ_CHECK(contiguous_ok, where << ": the contiguous call of sequence " << b << " was rejected");

        att::tensor_view<const float> got_one = out.const_view();
        got_one.data = out.data() + out.index(b, 0, 0);
        got_one.batch = 1;
        for (std::size_t h = 0; h < s.heads; ++h) {
            for (std::size_t i = 0; i < s.queries; ++i) {
                const float* got = got_one.row(0, h, i);
                const float* want = expected_view.row(0, h, i);
                TESSERA_FUZZ_CHECK(s.value_dim == 0 || std::memcmp(got, want, s.value_dim * sizeof(float)) == 0,
                                   where << ": sequence " << b << " (length " << lengths[b] << ") row (" << h << ", "
                                         << i << ") differs from the contiguous keys");
                if (want_lse) {
                    const float got_lse = lse_buffer[(b * s.heads + h) * s.queries + i];
                    TESSERA_FUZZ_CHECK(same_bits(got_lse, expected_lse[h * s.queries + i]),
                                       where << ": sequence " << b << " lse of row (" << h << ", " << i << ") = "
                                             << got_lse << ", contiguous " << expected_lse[h * s.queries + i]);
                }
            }
        }
        const float* lse_one = want_lse ? lse_buffer.data() + b * s.heads * s.queries : nullptr;
        check_reference(q_one, k_one, v_one, opts_one, got_one, lse_one, nullptr, 0, where);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    FuzzedDataProvider input(data, size);
    fz::set_threads(1);
    const auto mode = input.ConsumeIntegral<std::uint8_t>();
    const fault injected = draw_fault(input);
    fz::with_drawn_arch(input, [&](auto arch) {
        using A = decltype(arch);
        if (mode % 3 == 2) {
            run_paged<A>(input, injected);
        } else {
            run_contiguous<A>(input, injected);
        }
    });
    return 0;
}
