// Scaled dot-product attention, O = softmax(scale·Q·Kᵀ + mask)·V, tiled
// with an online softmax so that the score matrix is never stored.
//
//   scaled_dot_product        contiguous Q, K, V [batch, heads, tokens, dim]
//                             (tensor_view strides), with optional row
//                             log-sum-exp and head-averaged probabilities
//   paged_scaled_dot_product  K and V in a paged cache addressed through a
//                             block table, for prefill and decode
//
// Shapes: Q [B, H, Lq, D], K [B, Hkv, Lk, D], V [B, Hkv, Lk, Dv], out
// [B, H, Lq, Dv]. Hkv divides H, and query head h reads KV head
// h / (H / Hkv): grouped-query attention, multi-query when Hkv = 1. The
// masks are the pattern, the additive mask and the boolean mask of
// `options` (layout.hpp), all applied together.
//
// Numerical contract
// - fp32 storage and arithmetic. The queries are multiplied by the scale
//   once, which is exact for the default scale of head dims 16, 64 and 256.
//   Each score is then a dot product with one fma per element in order
//   (kernels.hpp), plus the additive mask. Probabilities use e^x within
//   about 2 ulp. A row's sum and output accumulate in float over tiles of
//   64 or 66 keys, and splits of 8 tiles are merged exactly, each rescaled
//   by e^(m_split − m). To first order, against the double reference,
//     |out − ref| ≤ (4·(D + 2)·2^-24·S + 2^-20 + 2·(Lk + 4)·2^-24)·Σ_j p_j·|v_j|,
//   S being the largest Σ_c |scale·q_c·k_c| + |mask| over the row's visible
//   keys. The rounding of the float scores, which e^x turns into relative
//   errors, usually dominates. The last term is the worst case of the float
//   sums over Lk keys (the output and l). The tests hold random inputs to
//   1e-5·Σ_j p_j·|v_j|, and a real MiniLM layer (S about 60) measures 6e-6
//   (docs/accuracy.md).
//   NOTE: that score error assumes normal floats. Where scale·q_c, a partial
//   sum or the added mask rounds to a subnormal, a score carries up to
//   2^-150·(Σ_c |k_c| + D + 2) more, which matters only for tiny queries
//   against huge keys (q_c near 1e-41 with k_c near 1e38 gives about 1e-6).
// - A masked score (pattern, boolean mask, or an additive −∞) is never
//   used: a NaN or ∞ in the key or value of a masked key does not reach
//   the row. A probability below 2^-126 of the row maximum (a logit more
//   than about 87 below it) is 0, and its key is left out in the same way.
// - A fully masked row (every key masked, or no keys) outputs zeros and a
//   log-sum-exp of −∞; its head-averaged probabilities are 0.
// - NaN in Q, K or V, or a NaN or +∞ additive mask entry, makes the rows
//   that see it NaN (output and log-sum-exp) and no others. Finite logits
//   never overflow: ±1e4 after scaling is fine, since only differences to
//   the row maximum are exponentiated.
// - log_sum_exp is m + ln Σ e^(x − m) over the row's visible scaled
//   logits x, natural log, in float. Its error is about that of the largest
//   score, (D + 2)·2^-24·S, plus the rounding of the sum l, up to
//   (Lk + 4)·2^-24, and a few ulp of the result; the tests hold it to
//   1e-5·(1 + |lse|).
// - head_mean_probabilities[b·Lq + i][j] = (1/H)·Σ_h p_h[i][j], recomputed
//   from the saved row maxima and sums in a second pass, so memory stays
//   O(B·H·Lq) besides the output; p_h = e^(x − m)/l per element, with a
//   relative error of about 2·(D + 2)·2^-24·S + 2^-21 to first order; the
//   tests hold it to 1e-5·p + 1e-12.
// - Results are the same bits for any number of OpenMP threads, and the
//   paged and contiguous layouts of the same keys give the same bits. Other
//   archs may differ in the last bits.
//
// Errors (tessera::invalid_argument, naming the function and parameter):
// shapes that do not match, H not a multiple of Hkv, dims of 0, token
// counts of 2^31 or more, strides that make rows overlap, a scale that is
// not finite, a group of 0, a query_position beyond ±2^31, outputs that
// overlap an input or each other,
// null pointers with non-empty shapes, block tables whose used entries
// fall outside the cache, sequence lengths that are negative or longer
// than the block table row. Outputs are untouched on error.
#pragma once

#include "../core/arch.hpp"
#include "../core/error.hpp"
#include "../core/extents.hpp"
#include "../core/parallel.hpp"
#include "../core/view.hpp"
#include "kernels.hpp"
#include "decode.hpp"
#include "layout.hpp"
#include "tiles.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <vector>

namespace tessera::attention {

namespace detail {

using tessera::detail::byte_range;
using tessera::detail::check_disjoint;
using tessera::detail::check_shape;
using tessera::detail::check_size;
using tessera::detail::check_view;
using tessera::detail::requested;
using tessera::detail::span_of;

// Token counts stay below 2^31 so that positions and key indices fit the
// int32 block tables and every product of two of them fits int64.
inline constexpr std::size_t max_tokens = (std::size_t(1) << 31) - 1;

template <class T>
byte_range span_of(const tensor_view<T>& t)
{
    if (t.empty()) {
        return {};
    }
    const auto* begin = reinterpret_cast<const unsigned char*>(t.data);
    const std::size_t last =
        (t.batch - 1) * t.batch_stride + (t.heads - 1) * t.head_stride + (t.tokens - 1) * t.token_stride + t.dim;
    return {begin, begin + last * sizeof(T)};
}

// Validates a tensor view: non-null when not empty, rows that do not
// overlap inside a head, and an extent that fits std::size_t bytes.
template <class T>
void check_tensor(const tensor_view<T>& t, const char* function, const char* name)
{
    if (t.dim == 0) {
        raise_invalid_argument(function, name, ".dim must be at least 1, got 0");
    }
    if (t.tokens > max_tokens) {
        raise_invalid_argument(function, name, ".tokens must be below 2^31, got ", t.tokens);
    }
    if (t.empty()) {
        return;
    }
    if (t.data == nullptr) {
        raise_invalid_argument(function, name, " is null but has shape [", t.batch, ", ", t.heads, ", ", t.tokens,
                               ", ", t.dim, "]");
    }
    if (t.tokens > 1 && t.token_stride < t.dim) {
        raise_invalid_argument(function, name, ".token_stride must be at least dim (", t.dim, "), got ",
                               t.token_stride);
    }
    std::size_t last = checked_mul(t.batch - 1, t.batch_stride, function, name);
    last = checked_add(last, checked_mul(t.heads - 1, t.head_stride, function, name), function, name);
    last = checked_add(last, checked_mul(t.tokens - 1, t.token_stride, function, name), function, name);
    checked_mul(checked_add(last, t.dim, function, name), sizeof(T), function, name);
}

// Raises unless the rows of an output tensor are disjoint, so that no two
// rows, and no two threads, write the same element. Taken in order of
// increasing stride, each axis of more than one index must step past all
// that the smaller axes span. That accepts the [batch, heads, tokens, dim]
// and [batch, tokens, heads, dim] layouts and every padded form of them.
// The tensor must have passed check_tensor, which bounds every sum below.
template <class T>
void check_output_rows(const tensor_view<T>& t, const char* function, const char* name)
{
    if (t.empty()) {
        return;
    }
    struct axis {
        std::size_t count;
        std::size_t stride;
        const char* stride_name;
    };
    axis axes[] = {{t.tokens, t.token_stride, ".token_stride"},
                   {t.heads, t.head_stride, ".head_stride"},
                   {t.batch, t.batch_stride, ".batch_stride"}};
    std::stable_sort(std::begin(axes), std::end(axes), [](const axis& a, const axis& b) { return a.stride < b.stride; });
    std::size_t span = t.dim;  // elements spanned by one index of the next axis
    for (const axis& a : axes) {
        if (a.count <= 1) {
            continue;
        }
        if (a.stride < span) {
            raise_invalid_argument(function, name, a.stride_name, " must be at least ", span,
                                   " so that the rows of ", name, " do not overlap, got ", a.stride);
        }
        span += (a.count - 1) * a.stride;
    }
}

// Validates a mask view read at rows (b, h, i) < (batch, heads, queries)
// and keys < keys; returns the byte range it spans.
template <class T>
byte_range check_mask(const mask_view<T>& mask, std::size_t batch, std::size_t heads, std::size_t queries,
                      std::size_t keys, const char* function, const char* name)
{
    if (!mask.requested() || batch == 0 || heads == 0 || queries == 0 || keys == 0) {
        return {};
    }
    if (mask.row_stride != 0 && queries > 1 && mask.row_stride < keys) {
        raise_invalid_argument(function, name, ".row_stride must be 0 (broadcast) or at least the key count (", keys,
                               "), got ", mask.row_stride);
    }
    std::size_t last = checked_mul(batch - 1, mask.batch_stride, function, name);
    last = checked_add(last, checked_mul(heads - 1, mask.head_stride, function, name), function, name);
    last = checked_add(last, checked_mul(queries - 1, mask.row_stride, function, name), function, name);
    last = checked_mul(checked_add(last, keys, function, name), sizeof(T), function, name);
    const auto* begin = reinterpret_cast<const unsigned char*>(mask.data);
    return {begin, begin + last};
}

inline void check_options(const options& opts, std::size_t dim, const char* function, float& scale)
{
    scale = opts.scale ? *opts.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(dim)));
    if (!std::isfinite(scale)) {
        raise_invalid_argument(function, "options.scale must be finite, got ", scale);
    }
    if (opts.pattern.group == 0) {
        raise_invalid_argument(function, "options.pattern.group must be at least 1, got 0");
    }
    if (opts.query_position && (*opts.query_position >= std::int64_t(1) << 31 ||
                                *opts.query_position <= -(std::int64_t(1) << 31))) {
        raise_invalid_argument(function, "options.query_position must be within ±2^31, got ", *opts.query_position);
    }
    if (opts.pattern.align != alignment::top_left && opts.pattern.align != alignment::bottom_right) {
        raise_invalid_argument(function, "options.pattern.align must be top_left or bottom_right, got ",
                               static_cast<int>(opts.pattern.align));
    }
}

// Query tiles of one head group that a task of forward() runs side by side,
// split by split, so that each split's keys and values come from memory
// once for the band and from L2 for its other tiles. That pays where a
// head's keys and values do not fit in L2 (1 to 2 MiB on current x86 server
// cores). On a Xeon with AVX-512 and 2 MiB of L2, bands of 4 tiles took h8
// l2048 d128 from 132 to 116–123 ms and l4096 from 549 to 473–499 ms, and
// cost up to 7% at sequence 512. Smaller heads therefore keep one tile per
// task, as do calls with too few tiles to give each thread a band.
// NOTE: the 1 MiB threshold and the band of 4 are measured only on that
// Xeon. An AVX2 machine, with tiles of 16 rows, may prefer other values.
inline std::size_t band_tiles(const row_layout& layout, const problem& pr, std::size_t max_keys, int threads)
{
    constexpr double l2_bytes = 1 << 20;
    constexpr std::size_t max_band = 4;
    const double head_bytes = static_cast<double>(max_keys) * static_cast<double>(pr.dim + pr.value_dim) * 4.0;
    if (head_bytes <= l2_bytes) {
        return 1;
    }
    const std::size_t per_group = layout.tiles_per_head_group();
    const std::size_t groups = layout.batch * layout.kv_heads;
    const std::size_t bands_needed_per_group = chunk_count(static_cast<std::size_t>(std::max(threads, 1)), groups);
    return std::clamp<std::size_t>(per_group / bands_needed_per_group, 1, max_band);
}

// The forward pass over all tiles. Each tile's keys are cut into splits of
// kernels::tile_shape<A>::split keys, and split states are merged in split
// order. With fewer tiles than threads, each (tile, split) pair is a task
// and the states are merged afterwards. Otherwise each task runs the splits
// of a band of tiles (band_tiles) in order. Both give the same bits. A sequence shorter than the
// longest one of a paged batch has empty splits at the end, which are
// skipped: merging an empty state is not an exact identity (fma(0, 0, −0)
// is +0), and a sequence's bits must not depend on the other lengths.
template <class A, class Keys>
void forward(const tensor_view<const float>& q, const Keys& keys, const row_layout& layout, const problem& pr,
             const outputs& out)
{
    using scratch_type = tile_scratch<A>;
    constexpr std::size_t rows = kernels::tile_shape<A>::rows;
    const std::size_t tiles = layout.tiles();
    if (tiles == 0) {
        return;
    }
    std::size_t max_keys = 0;
    for (std::size_t b = 0; b < layout.batch; ++b) {
        max_keys = std::max(max_keys, keys.count(b));
    }
    const std::size_t splits = std::max<std::size_t>(1, chunk_count(max_keys, kernels::tile_shape<A>::split));
    const double work = static_cast<double>(layout.batch * layout.heads * layout.queries) *
                        static_cast<double>(max_keys) * static_cast<double>(pr.dim + pr.value_dim);
    const int threads = threads_for(work);
    if (layout.group * layout.queries <= narrow_rows<A>) {
        forward_narrow<A>(q, keys, layout, pr, out, splits, threads);
        return;
    }
    std::vector<scratch_type> scratch(static_cast<std::size_t>(std::max(threads, 1)));

    auto prepare_tile = [&](scratch_type& s, const tile_rows<A, Keys>& t) {
        if (s.qt.size() != pr.dim * rows || s.split.ot.size() != pr.value_dim * rows) {
            s.prepare(pr.dim, pr.value_dim);
        }
        pack_queries<A>(t.query_rows, t.tile.count, pr.dim, pr.scale, s.qt.data());
    };
    auto split_range = [&](std::size_t b, std::size_t split) {
        const std::size_t count = keys.count(b);
        const std::size_t begin = std::min(count, split * kernels::tile_shape<A>::split);
        return std::pair<std::size_t, std::size_t>(begin, std::min(count, begin + kernels::tile_shape<A>::split));
    };

    const bool split_tasks = threads > 1 && tiles < static_cast<std::size_t>(threads) && splits > 1;
    if (!split_tasks) {
        const std::size_t band = band_tiles(layout, pr, max_keys, threads);
        const std::size_t per_group = layout.tiles_per_head_group();
        const std::size_t bands_per_group = chunk_count(per_group, band);
        std::vector<std::vector<scratch_type>> band_scratch(scratch.size());
        parallel_for_tasks(tiles / per_group * bands_per_group, threads, [&](int thread, std::size_t task) {
            std::vector<scratch_type>& band_states = band_scratch[static_cast<std::size_t>(thread)];
            band_states.resize(band);
            const std::size_t group_first = task / bands_per_group * per_group;
            const std::size_t first = group_first + task % bands_per_group * band;
            const std::size_t count = std::min(band, group_first + per_group - first);
            std::vector<tile_rows<A, Keys>> members;
            members.reserve(count);
            for (std::size_t g = 0; g < count; ++g) {
                members.emplace_back(layout, first + g, q, out, pr, keys);
                prepare_tile(band_states[g], members[g]);
                band_states[g].total.reset(pr.value_dim);
            }

            const std::size_t b = members.front().b;
            for (std::size_t split = 0; split < splits; ++split) {
                const auto [begin, end] = split_range(b, split);
                if (begin == end) {
                    continue;
                }
                for (std::size_t g = 0; g < count; ++g) {
                    scratch_type& s = band_states[g];
                    const tile_rows<A, Keys>& t = members[g];
                    s.split.reset(pr.value_dim);
                    run_keys<A>(pr, keys, t.b, t.kv_head, t.tile, begin, end, s, s.split);
                    merge_state<A>(s.total, s.split.m.data(), s.split.l.data(), s.split.ot.data(), pr.value_dim);
                }
            }
            for (std::size_t g = 0; g < count; ++g) {
                const tile_rows<A, Keys>& t = members[g];
                finish<A>(band_states[g].total, t.tile.count, pr.value_dim, t.out_rows, t.lse, t.stats_m, t.stats_l);
            }
        });
        return;
    }

    // Decode: one task per (tile, split), each state stored in its slot.
    const std::size_t slot = (pr.value_dim + 2) * rows;
    aligned_vector<float> states(checked_mul(checked_mul(tiles, splits, "attention", "states"), slot, "attention",
                                             "states"));
    parallel_for_tasks(tiles * splits, threads, [&](int thread, std::size_t task) {
        scratch_type& s = scratch[static_cast<std::size_t>(thread)];
        const std::size_t index = task / splits;
        const std::size_t split = task % splits;
        const tile_rows<A, Keys> t(layout, index, q, out, pr, keys);
        prepare_tile(s, t);
        const auto [begin, end] = split_range(t.b, split);
        s.split.reset(pr.value_dim);
        run_keys<A>(pr, keys, t.b, t.kv_head, t.tile, begin, end, s, s.split);
        float* state = states.data() + task * slot;
        std::copy(s.split.m.begin(), s.split.m.end(), state);
        std::copy(s.split.l.begin(), s.split.l.end(), state + rows);
        std::copy(s.split.ot.begin(), s.split.ot.end(), state + 2 * rows);
    });
    parallel_for_tasks(tiles, threads, [&](int thread, std::size_t index) {
        scratch_type& s = scratch[static_cast<std::size_t>(thread)];
        const tile_rows<A, Keys> t(layout, index, q, out, pr, keys);
        if (s.total.ot.size() != pr.value_dim * rows) {
            s.prepare(pr.dim, pr.value_dim);
        }
        s.total.reset(pr.value_dim);
        for (std::size_t split = 0; split < splits; ++split) {
            const auto [begin, end] = split_range(t.b, split);
            if (begin == end) {
                continue;
            }
            const float* state = states.data() + (index * splits + split) * slot;
            merge_state<A>(s.total, state, state + rows, state + 2 * rows, pr.value_dim);
        }
        finish<A>(s.total, t.tile.count, pr.value_dim, t.out_rows, t.lse, t.stats_m, t.stats_l);
    });
}

// The second pass: head-averaged probabilities from the saved m and l.
// One task per (batch, tile of queries); for each key tile the heads are
// added in head order, then divided by H.
template <class A>
void head_mean_pass(const tensor_view<const float>& q, const contiguous_keys& keys, const row_layout& layout,
                    const problem& pr, const float* stats_m, const float* stats_l, matrix_view<float> map)
{
    using batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = kernels::tile_shape<A>::lanes;
    constexpr std::size_t rows = kernels::tile_shape<A>::rows;
    constexpr std::size_t key_block = kernels::tile_shape<A>::key_block;
    const std::size_t key_count = keys.count(0);
    const std::size_t query_tiles = chunk_count(layout.queries, rows);
    const std::size_t tasks = layout.batch * query_tiles;
    const int threads = threads_for(static_cast<double>(layout.batch * layout.heads * layout.queries) *
                                    static_cast<double>(key_count) * static_cast<double>(pr.dim));
    const std::int64_t offset = position_offset(pr.pattern.align, pr.query_position, layout.queries, key_count);
    const bool masks = pr.additive.requested() || pr.allowed.requested();

    struct map_scratch {
        tile_scratch<A> tile;
        aligned_vector<float> qt_heads;  // [H × dim × rows]
        aligned_vector<float> sum;       // [key_tile × rows]
    };
    std::vector<map_scratch> scratch(static_cast<std::size_t>(std::max(threads, 1)));

    parallel_for_tasks(tasks, threads, [&](int thread, std::size_t task) {
        map_scratch& s = scratch[static_cast<std::size_t>(thread)];
        if (s.tile.qt.size() != pr.dim * rows) {
            s.tile.prepare(pr.dim, pr.value_dim);
        }
        s.qt_heads.resize(layout.heads * pr.dim * rows);
        s.sum.resize(kernels::tile_shape<A>::keys * rows);

        const std::size_t b = task / query_tiles;
        const std::size_t first = (task % query_tiles) * rows;
        const std::size_t count = std::min(rows, layout.queries - first);
        const float* query_rows[rows] = {};
        for (std::size_t h = 0; h < layout.heads; ++h) {
            for (std::size_t i = 0; i < count; ++i) {
                query_rows[i] = q.row(b, h, first + i);
            }
            pack_queries<A>(query_rows, count, pr.dim, pr.scale, s.qt_heads.data() + h * pr.dim * rows);
        }
        row_tile<A> tile;
        tile.count = count;
        for (std::size_t i = 0; i < count; ++i) {
            tile.visible[i] = visible_from(pr.pattern, static_cast<std::int64_t>(first + i) + offset,
                                           static_cast<std::int64_t>(key_count));
        }

        const batch masked(-std::numeric_limits<float>::infinity());
        const batch inverse_heads(static_cast<float>(1.0 / static_cast<double>(layout.heads)));
        for (std::size_t j0 = 0; j0 < key_count; j0 += kernels::tile_shape<A>::keys) {
            const std::size_t n = std::min(kernels::tile_shape<A>::keys, key_count - j0);
            std::fill(s.sum.begin(), s.sum.end(), 0.0f);
            const tile_kind kind = classify(tile, static_cast<std::int64_t>(j0), static_cast<std::int64_t>(n));
            for (std::size_t h = 0; h < layout.heads && kind != tile_kind::empty; ++h) {
                const float* bias = nullptr;
                if (kind == tile_kind::partial || masks) {
                    for (std::size_t i = 0; i < count; ++i) {
                        tile.additive[i] = pr.additive.requested() ? pr.additive.row(b, h, first + i) : nullptr;
                        tile.allowed[i] = pr.allowed.requested() ? pr.allowed.row(b, h, first + i) : nullptr;
                    }
                    if (!build_bias(tile, j0, n, s.tile.bias.data())) {
                        continue;
                    }
                    bias = s.tile.bias.data();
                }
                keys.rows(b, h / layout.group, j0, n, s.tile.key_rows, s.tile.value_rows);
                const std::size_t padded = (n + key_block - 1) / key_block * key_block;
                for (std::size_t j = n; j < padded; ++j) {
                    s.tile.key_rows[j] = s.tile.zero_row.data();
                }
                const float* qt = s.qt_heads.data() + h * pr.dim * rows;
                kernels::score_range<A> range;
                range.reset();
                for (std::size_t j = 0; j < padded; j += key_block) {
                    kernels::score_block<A, key_block>(s.tile.key_rows + j, qt, pr.dim, s.tile.s.data() + j * rows,
                                                       n - std::min(n, j), range);
                }

                // Per-lane m and l of head h; padding lanes get l = 0.
                alignas(64) float m_lanes[rows];
                alignas(64) float l_lanes[rows];
                for (std::size_t i = 0; i < rows; ++i) {
                    const std::size_t flat = (b * layout.heads + h) * layout.queries + first + i;
                    m_lanes[i] = i < count ? stats_m[flat] : 0.0f;
                    l_lanes[i] = i < count ? stats_l[flat] : 0.0f;
                }
                for (std::size_t v = 0; v < kernels::tile_shape<A>::vectors; ++v) {
                    const std::size_t lane = v * lanes;
                    const batch m = batch::load_aligned(m_lanes + lane);
                    const batch l = batch::load_aligned(l_lanes + lane);
                    const batch m_use = xsimd::select(m == masked, batch(0.0f), m);
                    const auto empty = l == batch(0.0f);
                    for (std::size_t j = 0; j < n; ++j) {
                        batch x = batch::load_aligned(s.tile.s.data() + j * rows + lane);
                        if (bias != nullptr) {
                            const batch bj = batch::load_aligned(bias + j * rows + lane);
                            x = xsimd::select(bj == masked, masked, x + bj);
                        }
                        const batch p = xsimd::select(empty, batch(0.0f), kernels::exp<A>(x - m_use) / l);
                        float* acc = s.sum.data() + j * rows + lane;
                        (batch::load_aligned(acc) + p).store_aligned(acc);
                    }
                }
            }

            for (std::size_t j = 0; j < n; ++j) {
                for (std::size_t v = 0; v < kernels::tile_shape<A>::vectors; ++v) {
                    float* acc = s.sum.data() + j * rows + v * lanes;
                    (batch::load_aligned(acc) * inverse_heads).store_aligned(acc);
                }
            }
            for (std::size_t i = 0; i < count; ++i) {
                float* row = map.row(b * layout.queries + first + i) + j0;
                for (std::size_t j = 0; j < n; ++j) {
                    row[j] = s.sum[j * rows + i];
                }
            }
        }
    });
}

} // namespace detail

// Attention over contiguous Q, K and V (see the file comment). Optional
// outputs: log_sum_exp, dense [B·H·Lq] in (b, h, i) order, and
// head_mean_probabilities, [B·Lq × Lk] with row b·Lq + i.
template <class Arch = default_arch>
void scaled_dot_product(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v,
                        tensor_view<float> out, const options& opts = {}, vector_view<float> log_sum_exp = {},
                        matrix_view<float> head_mean_probabilities = {})
{
    constexpr const char* function = "tessera::attention::scaled_dot_product";
    detail::check_tensor(q, function, "q");
    detail::check_tensor(k, function, "k");
    detail::check_tensor(v, function, "v");
    detail::check_tensor(out, function, "out");
    detail::check_output_rows(out, function, "out");
    if (k.batch != q.batch || v.batch != q.batch || out.batch != q.batch) {
        raise_invalid_argument(function, "q, k, v and out must have the same batch, got ", q.batch, ", ", k.batch,
                               ", ", v.batch, ", ", out.batch);
    }
    if (k.dim != q.dim) {
        raise_invalid_argument(function, "k.dim must equal q.dim (", q.dim, "), got ", k.dim);
    }
    if (v.heads != k.heads || v.tokens != k.tokens) {
        raise_invalid_argument(function, "v must have k's heads and tokens [", k.heads, ", ", k.tokens, "], got [",
                               v.heads, ", ", v.tokens, "]");
    }
    if (k.heads == 0 || q.heads % k.heads != 0) {
        raise_invalid_argument(function, "q.heads (", q.heads, ") must be a multiple of k.heads, got ", k.heads);
    }
    if (out.heads != q.heads || out.tokens != q.tokens || out.dim != v.dim) {
        raise_invalid_argument(function, "out must have shape [", q.batch, ", ", q.heads, ", ", q.tokens, ", ", v.dim,
                               "], got [", out.batch, ", ", out.heads, ", ", out.tokens, ", ", out.dim, "]");
    }
    float scale = 1.0f;
    detail::check_options(opts, q.dim, function, scale);
    const std::size_t rows = checked_product({q.batch, q.heads, q.tokens}, function, "log_sum_exp size");
    if (detail::requested(log_sum_exp)) {
        detail::check_size(log_sum_exp, rows, function, "log_sum_exp");
    }
    if (detail::requested(head_mean_probabilities)) {
        detail::check_shape(head_mean_probabilities, checked_mul(q.batch, q.tokens, function, "map rows"), k.tokens,
                            function, "head_mean_probabilities");
    }
    const auto additive = detail::check_mask(opts.additive, q.batch, q.heads, q.tokens, k.tokens, function,
                                             "options.additive");
    const auto allowed =
        detail::check_mask(opts.allowed, q.batch, q.heads, q.tokens, k.tokens, function, "options.allowed");

    const detail::byte_range inputs[] = {detail::span_of(q), detail::span_of(k), detail::span_of(v), additive,
                                         allowed};
    const char* input_names[] = {"q", "k", "v", "options.additive", "options.allowed"};
    const detail::byte_range outs[] = {detail::span_of(out), detail::span_of(log_sum_exp),
                                       detail::span_of(head_mean_probabilities)};
    const char* out_names[] = {"out", "log_sum_exp", "head_mean_probabilities"};
    for (std::size_t o = 0; o < 3; ++o) {
        for (std::size_t i = 0; i < 5; ++i) {
            detail::check_disjoint(outs[o], inputs[i], function, out_names[o], input_names[i]);
        }
        for (std::size_t p = o + 1; p < 3; ++p) {
            detail::check_disjoint(outs[o], outs[p], function, out_names[o], out_names[p]);
        }
    }

    detail::problem pr;
    pr.dim = q.dim;
    pr.value_dim = v.dim;
    pr.scale = scale;
    pr.pattern = opts.pattern;
    pr.additive = opts.additive;
    pr.allowed = opts.allowed;
    pr.query_position = opts.query_position;

    detail::row_layout layout;
    layout.batch = q.empty() ? 0 : q.batch;
    layout.heads = q.heads;
    layout.kv_heads = k.heads;
    layout.group = q.heads / k.heads;
    layout.queries = q.tokens;
    layout.rows_per_tile = kernels::tile_shape<Arch>::rows;

    const bool want_map = detail::requested(head_mean_probabilities) && !head_mean_probabilities.empty();
    std::vector<float> stats;
    detail::outputs targets;
    targets.out = out;
    targets.lse = detail::requested(log_sum_exp) ? log_sum_exp.data : nullptr;
    if (want_map) {
        stats.resize(2 * rows);
        targets.stats_m = stats.data();
        targets.stats_l = stats.data() + rows;
    }

    const detail::contiguous_keys keys{k, v};
    detail::forward<Arch>(q, keys, layout, pr, targets);
    if (want_map) {
        detail::head_mean_pass<Arch>(q, keys, layout, pr, targets.stats_m, targets.stats_l, head_mean_probabilities);
    }
}

// A paged KV cache: key j of sequence b is token j mod block_size of cache
// block block_table[b][j / block_size], for j < lengths[b].
struct paged_cache {
    tensor_view<const float> keys;    // [blocks, kv heads, block_size, dim]
    tensor_view<const float> values;  // [blocks, kv heads, block_size, value dim]
    matrix_view<const std::int32_t> block_table;  // [batch × blocks per sequence]
    vector_view<const std::int32_t> lengths;      // [batch] keys per sequence
};

// Attention of q [B, H, Lq, D] against the paged cache; sequence b has
// lengths[b] keys, and bottom_right alignment puts the queries at its end.
// The masks' key axis runs over each sequence's keys.
template <class Arch = default_arch>
void paged_scaled_dot_product(tensor_view<const float> q, const paged_cache& cache, tensor_view<float> out,
                              const options& opts = {}, vector_view<float> log_sum_exp = {})
{
    constexpr const char* function = "tessera::attention::paged_scaled_dot_product";
    detail::check_tensor(q, function, "q");
    detail::check_tensor(cache.keys, function, "cache.keys");
    detail::check_tensor(cache.values, function, "cache.values");
    detail::check_tensor(out, function, "out");
    detail::check_output_rows(out, function, "out");
    const auto& kc = cache.keys;
    const auto& vc = cache.values;
    if (kc.dim != q.dim) {
        raise_invalid_argument(function, "cache.keys.dim must equal q.dim (", q.dim, "), got ", kc.dim);
    }
    if (vc.batch != kc.batch || vc.heads != kc.heads || vc.tokens != kc.tokens) {
        raise_invalid_argument(function, "cache.values must have cache.keys' blocks, heads and block size [",
                               kc.batch, ", ", kc.heads, ", ", kc.tokens, "], got [", vc.batch, ", ", vc.heads, ", ",
                               vc.tokens, "]");
    }
    if (kc.heads == 0 || q.heads % kc.heads != 0) {
        raise_invalid_argument(function, "q.heads (", q.heads, ") must be a multiple of cache.keys.heads, got ",
                               kc.heads);
    }
    if (out.batch != q.batch || out.heads != q.heads || out.tokens != q.tokens || out.dim != vc.dim) {
        raise_invalid_argument(function, "out must have shape [", q.batch, ", ", q.heads, ", ", q.tokens, ", ",
                               vc.dim, "], got [", out.batch, ", ", out.heads, ", ", out.tokens, ", ", out.dim, "]");
    }
    detail::check_size(cache.lengths, q.batch, function, "cache.lengths");
    detail::check_view(cache.block_table, function, "cache.block_table");
    if (cache.block_table.rows != q.batch) {
        raise_invalid_argument(function, "cache.block_table must have one row per sequence (", q.batch, "), got ",
                               cache.block_table.rows);
    }
    const std::size_t block_size = kc.tokens;
    std::size_t max_keys = 0;
    for (std::size_t b = 0; b < q.batch; ++b) {
        const std::int32_t length = cache.lengths[b];
        if (length < 0 || static_cast<std::size_t>(length) > cache.block_table.cols * block_size) {
            raise_invalid_argument(function, "cache.lengths[", b, "] must be in [0, ",
                                   cache.block_table.cols * block_size, "], got ", length);
        }
        const std::size_t used = chunk_count(static_cast<std::size_t>(length), block_size);
        for (std::size_t block = 0; block < used; ++block) {
            const std::int32_t entry = cache.block_table(b, block);
            if (entry < 0 || static_cast<std::size_t>(entry) >= kc.batch) {
                raise_invalid_argument(function, "cache.block_table[", b, "][", block, "] must be in [0, ", kc.batch,
                                       "), got ", entry);
            }
        }
        max_keys = std::max(max_keys, static_cast<std::size_t>(length));
    }
    float scale = 1.0f;
    detail::check_options(opts, q.dim, function, scale);
    const std::size_t rows = checked_product({q.batch, q.heads, q.tokens}, function, "log_sum_exp size");
    if (detail::requested(log_sum_exp)) {
        detail::check_size(log_sum_exp, rows, function, "log_sum_exp");
    }
    const auto additive =
        detail::check_mask(opts.additive, q.batch, q.heads, q.tokens, max_keys, function, "options.additive");
    const auto allowed =
        detail::check_mask(opts.allowed, q.batch, q.heads, q.tokens, max_keys, function, "options.allowed");

    const detail::byte_range inputs[] = {detail::span_of(q),
                                         detail::span_of(kc),
                                         detail::span_of(vc),
                                         detail::span_of(cache.block_table),
                                         detail::span_of(cache.lengths),
                                         additive,
                                         allowed};
    const char* input_names[] = {"q", "cache.keys", "cache.values", "cache.block_table", "cache.lengths",
                                 "options.additive", "options.allowed"};
    for (std::size_t i = 0; i < 7; ++i) {
        detail::check_disjoint(detail::span_of(out), inputs[i], function, "out", input_names[i]);
        detail::check_disjoint(detail::span_of(log_sum_exp), inputs[i], function, "log_sum_exp", input_names[i]);
    }
    detail::check_disjoint(detail::span_of(log_sum_exp), detail::span_of(out), function, "log_sum_exp", "out");

    detail::problem pr;
    pr.dim = q.dim;
    pr.value_dim = vc.dim;
    pr.scale = scale;
    pr.pattern = opts.pattern;
    pr.additive = opts.additive;
    pr.allowed = opts.allowed;
    pr.query_position = opts.query_position;

    detail::row_layout layout;
    layout.batch = q.empty() ? 0 : q.batch;
    layout.heads = q.heads;
    layout.kv_heads = kc.heads;
    layout.group = q.heads / kc.heads;
    layout.queries = q.tokens;
    layout.rows_per_tile = kernels::tile_shape<Arch>::rows;

    detail::outputs targets;
    targets.out = out;
    targets.lse = detail::requested(log_sum_exp) ? log_sum_exp.data : nullptr;
    const detail::paged_keys keys{kc, vc, cache.block_table, cache.lengths};
    detail::forward<Arch>(q, keys, layout, pr, targets);
}

} // namespace tessera::attention
