// The tile loop of the attention kernels: one tile of query rows against
// the keys of one split, with the online softmax of FlashAttention-2
// (Dao, 2023) on transposed tiles (kernels.hpp).
//
// A softmax state holds, per query row, the running maximum m of the
// scaled scores, the sum l of e^(s − m) and the unnormalised output
// Oᵀ = Σ e^(s − m)·v. States of consecutive splits are merged by
// merge_state in split order, and finish() divides by l. A tile whose keys
// are all masked for a row leaves that row's state unchanged, bit for bit,
// because e^0 is exactly 1 and e^−∞ exactly 0. Skipping fully masked tiles
// therefore changes no result.
#pragma once

#include "../core/parallel.hpp"
#include "../core/simd.hpp"
#include "kernels.hpp"
#include "layout.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

namespace tessera::attention::detail {

template <class T>
using aligned_vector = std::vector<T, xsimd::aligned_allocator<T, 64>>;

// The keys and values of one (batch, KV head) in a contiguous [batch,
// heads, tokens, dim] layout.
struct contiguous_keys {
    tensor_view<const float> keys;
    tensor_view<const float> values;

    std::size_t count(std::size_t) const { return keys.tokens; }

    void rows(std::size_t b, std::size_t head, std::size_t j0, std::size_t n, const float** key_rows,
              const float** value_rows) const
    {
        for (std::size_t j = 0; j < n; ++j) {
            key_rows[j] = keys.row(b, head, j0 + j);
            value_rows[j] = values.row(b, head, j0 + j);
        }
    }
};

// The keys and values of one sequence in a paged cache: key j of sequence
// b is token j mod block_size of cache block table[b][j / block_size].
struct paged_keys {
    tensor_view<const float> keys;    // [blocks, kv heads, block_size, dim]
    tensor_view<const float> values;  // [blocks, kv heads, block_size, value dim]
    matrix_view<const std::int32_t> table;
    vector_view<const std::int32_t> lengths;

    std::size_t count(std::size_t b) const { return static_cast<std::size_t>(lengths[b]); }

    void rows(std::size_t b, std::size_t head, std::size_t j0, std::size_t n, const float** key_rows,
              const float** value_rows) const
    {
        const std::size_t block_size = keys.tokens;
        for (std::size_t j = 0; j < n; ++j) {
            const std::size_t key = j0 + j;
            const auto block = static_cast<std::size_t>(table(b, key / block_size));
            key_rows[j] = keys.row(block, head, key % block_size);
            value_rows[j] = values.row(block, head, key % block_size);
        }
    }
};

// Threads for a call of `work` multiply-adds: one below 2^20, where
// starting and joining a parallel region costs more than the work (and a
// busy machine can hold one thread up for milliseconds). Results do not
// depend on it.
inline int threads_for(double work)
{
    return work < 1048576.0 ? 1 : max_threads();
}

// The parameters that every tile of one call shares.
struct problem {
    std::size_t dim = 0;
    std::size_t value_dim = 0;
    float scale = 1.0f;
    mask_pattern pattern{};
    mask_view<float> additive{};
    mask_view<std::uint8_t> allowed{};
    std::optional<std::int64_t> query_position{};
};

// Per-row data of a tile of query rows; lanes at or beyond `count` are
// padding (zero queries that see every key).
template <class A>
struct row_tile {
    static constexpr std::size_t rows = kernels::tile_shape<A>::rows;

    std::size_t count = 0;
    visible_keys visible[rows];
    const float* additive[rows] = {};
    const std::uint8_t* allowed[rows] = {};
};

// The softmax state of a tile's rows: m and l per lane, Oᵀ [value_dim × rows].
template <class A>
struct softmax_state {
    aligned_vector<float> m;
    aligned_vector<float> l;
    aligned_vector<float> ot;

    void reset(std::size_t value_dim)
    {
        constexpr std::size_t rows = kernels::tile_shape<A>::rows;
        m.assign(rows, -std::numeric_limits<float>::infinity());
        l.assign(rows, 0.0f);
        ot.assign(value_dim * rows, 0.0f);
    }
};

// Buffers of one thread.
template <class A>
struct tile_scratch {
    static constexpr std::size_t rows = kernels::tile_shape<A>::rows;
    static constexpr std::size_t key_block = kernels::tile_shape<A>::key_block;
    static constexpr std::size_t lanes = kernels::tile_shape<A>::lanes;
    // Keys rounded up to whole register blocks (wide tiles) or whole batches
    // (narrow tiles, decode.hpp); the rounded part points at zero_row.
    static constexpr std::size_t by_blocks = (kernels::tile_shape<A>::keys + key_block - 1) / key_block * key_block;
    static constexpr std::size_t by_lanes = (kernels::tile_shape<A>::keys + lanes - 1) / lanes * lanes;
    static constexpr std::size_t padded_keys = by_blocks > by_lanes ? by_blocks : by_lanes;

    aligned_vector<float> qt;     // [dim × rows] transposed queries
    aligned_vector<float> s;      // [padded_keys × rows] scores, then probabilities
    aligned_vector<float> bias;   // [key_tile × rows] 0, −∞ or the additive mask
    aligned_vector<float> alpha;  // [rows] rescale factors of a tile
    std::vector<float> zero_row;  // [dim] zeros, read in place of keys past the end of a tile
    const float* key_rows[padded_keys] = {};
    const float* value_rows[kernels::tile_shape<A>::keys] = {};
    softmax_state<A> split;
    softmax_state<A> total;
    std::vector<float> scaled_queries;  // [rows × dim] for narrow tiles

    void prepare(std::size_t dim, std::size_t value_dim)
    {
        qt.assign(dim * rows, 0.0f);
        s.assign(padded_keys * rows, 0.0f);
        bias.assign(kernels::tile_shape<A>::keys * rows, 0.0f);
        alpha.assign(rows, 0.0f);
        zero_row.assign(dim, 0.0f);
        split.reset(value_dim);
        total.reset(value_dim);
    }
};

// Writes the transposed, scaled queries of a tile: qt[c·rows + i] =
// scale·query_rows[i][c] rounded to float, with zero columns for padding
// lanes. Scaling the queries once saves a multiply per score; for the
// default scale of a power-of-4 head dim it is exact.
template <class A>
void pack_queries(const float* const* query_rows, std::size_t count, std::size_t dim, float scale, float* qt)
{
    constexpr std::size_t rows = kernels::tile_shape<A>::rows;
    for (std::size_t i = 0; i < rows; ++i) {
        if (i < count) {
            const float* q = query_rows[i];
            for (std::size_t c = 0; c < dim; ++c) {
                qt[c * rows + i] = scale * q[c];
            }
        } else {
            for (std::size_t c = 0; c < dim; ++c) {
                qt[c * rows + i] = 0.0f;
            }
        }
    }
}

enum class tile_kind {
    empty,    // every key of the tile is masked for every row: skipped
    full,     // every key is visible to every row and no mask view is given
    partial,  // a bias tile is needed
};

// Classifies keys [j0, j0 + n) for the rows of a tile by the pattern alone.
template <class A>
tile_kind classify(const row_tile<A>& tile, std::int64_t j0, std::int64_t n)
{
    bool any = false;
    bool all = true;
    for (std::size_t i = 0; i < tile.count; ++i) {
        const std::int64_t seen = tile.visible[i].count(j0, j0 + n);
        any = any || seen > 0;
        all = all && seen == n;
    }
    if (!any) {
        return tile_kind::empty;
    }
    return all ? tile_kind::full : tile_kind::partial;
}

// Fills bias[j·rows + i] for keys [j0, j0 + n): −∞ where the pattern or the
// boolean mask hides the key, else the additive mask's value (0 without
// one). Returns false when every valid row has every key masked.
template <class A>
bool build_bias(const row_tile<A>& tile, std::size_t j0, std::size_t n, float* bias)
{
    constexpr std::size_t rows = kernels::tile_shape<A>::rows;
    constexpr float masked = -std::numeric_limits<float>::infinity();
    bool any = false;
    for (std::size_t i = 0; i < rows; ++i) {
        if (i >= tile.count) {
            for (std::size_t j = 0; j < n; ++j) {
                bias[j * rows + i] = 0.0f;
            }
            continue;
        }
        const visible_keys& visible = tile.visible[i];
        const float* additive = tile.additive[i];
        const std::uint8_t* allowed = tile.allowed[i];
        for (std::size_t j = 0; j < n; ++j) {
            const std::size_t key = j0 + j;
            float value = visible.contains(static_cast<std::int64_t>(key)) ? 0.0f : masked;
            if (additive != nullptr && value == 0.0f) {
                value = additive[key];
            }
            if (allowed != nullptr && allowed[key] == 0) {
                value = masked;
            }
            any = any || value != masked;
            bias[j * rows + i] = value;
        }
    }
    return any;
}

// True when every element of the n value rows is finite.
template <class A>
bool values_finite(const float* const* value_rows, std::size_t n, std::size_t value_dim)
{
    using batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = batch::size;
    // x·0 is 0 for a finite x and NaN for ±∞ or NaN, so one NaN check covers both.
    batch acc(0.0f);
    float tail = 0.0f;
    for (std::size_t j = 0; j < n; ++j) {
        const float* row = value_rows[j];
        std::size_t d = 0;
        for (; d + lanes <= value_dim; d += lanes) {
            acc = xsimd::fma(batch::load_unaligned(row + d), batch(0.0f), acc);
        }
        for (; d < value_dim; ++d) {
            tail += row[d] * 0.0f;
        }
    }
    return !xsimd::any(xsimd::isnan(acc)) && !std::isnan(tail);
}

// Adds the bias to the scores of a tile in place (x = s + b, or −∞ where b
// is −∞ whatever s is) and returns their lane-wise maximum in tile_max.
template <class A>
void add_bias(float* s, const float* bias, std::size_t n, xsimd::batch<float, A>* tile_max)
{
    using batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = kernels::tile_shape<A>::lanes;
    constexpr std::size_t rows = kernels::tile_shape<A>::rows;
    const batch masked(-std::numeric_limits<float>::infinity());
    for (std::size_t v = 0; v < kernels::tile_shape<A>::vectors; ++v) {
        const std::size_t lane = v * lanes;
        batch largest = masked;
        for (std::size_t j = 0; j < n; ++j) {
            const batch b = batch::load_aligned(bias + j * rows + lane);
            const batch x = xsimd::select(b == masked, masked, batch::load_aligned(s + j * rows + lane) + b);
            x.store_aligned(s + j * rows + lane);
            largest = xsimd::max(largest, x);
        }
        tile_max[v] = largest;
    }
}

// The new running maximum m_new = max(m, tile_max) of each lane, and the
// value m_use subtracted before exponentiating: 0 for a row that has seen
// no key yet (m_new = −∞), so that its probabilities are e^−∞ = 0 rather
// than e^(−∞+∞) = NaN.
template <class A>
void running_max(const softmax_state<A>& state, const xsimd::batch<float, A>* tile_max, xsimd::batch<float, A>* m_new,
                 xsimd::batch<float, A>* m_use)
{
    using batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = kernels::tile_shape<A>::lanes;
    const batch masked(-std::numeric_limits<float>::infinity());
    for (std::size_t v = 0; v < kernels::tile_shape<A>::vectors; ++v) {
        m_new[v] = xsimd::max(batch::load_aligned(state.m.data() + v * lanes), tile_max[v]);
        m_use[v] = xsimd::select(m_new[v] == masked, batch(0.0f), m_new[v]);
    }
}

// The online softmax update of one tile whose scores x are in s: writes
// p = e^(x − m_use) over s, the factors e^(m_old − m_use) to alpha, and the
// new m and l = l·alpha + Σ p to the state. With CountZeros, returns whether
// some p is exactly 0.
template <class A, bool Flush, bool CountZeros>
bool exponentiate(float* s, std::size_t n, const xsimd::batch<float, A>* m_new, const xsimd::batch<float, A>* m_use,
                  softmax_state<A>& state, float* alpha)
{
    using batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = kernels::tile_shape<A>::lanes;
    constexpr std::size_t rows = kernels::tile_shape<A>::rows;
    const batch zero(0.0f);

    auto zeros = zero != zero;
    for (std::size_t v = 0; v < kernels::tile_shape<A>::vectors; ++v) {
        const std::size_t lane = v * lanes;
        const batch factor = kernels::exp<A>(batch::load_aligned(state.m.data() + lane) - m_use[v]);
        batch sum(0.0f);
        for (std::size_t j = 0; j < n; ++j) {
            const batch p = kernels::exp<A, Flush>(batch::load_aligned(s + j * rows + lane) - m_use[v]);
            p.store_aligned(s + j * rows + lane);
            sum += p;
            if constexpr (CountZeros) {
                zeros = zeros | (p == zero);
            }
        }
        const batch l = batch::load_aligned(state.l.data() + lane);
        xsimd::fma(l, factor, sum).store_aligned(state.l.data() + lane);
        m_new[v].store_aligned(state.m.data() + lane);
        factor.store_aligned(alpha + lane);
    }
    return xsimd::any(zeros);
}

// Runs the tile's rows over keys [begin, end) of one (batch, KV head) into
// `state`, which the caller has reset or carries over.
template <class A, class Keys>
void run_keys(const problem& pr, const Keys& keys, std::size_t b, std::size_t kv_head, const row_tile<A>& tile,
              std::size_t begin, std::size_t end, tile_scratch<A>& scratch, softmax_state<A>& state)
{
    using batch = xsimd::batch<float, A>;
    constexpr std::size_t key_block = kernels::tile_shape<A>::key_block;
    constexpr std::size_t rows = kernels::tile_shape<A>::rows;
    const bool masks = pr.additive.requested() || pr.allowed.requested();

    for (std::size_t j0 = begin; j0 < end; j0 += kernels::tile_shape<A>::keys) {
        const std::size_t n = std::min(kernels::tile_shape<A>::keys, end - j0);
        const tile_kind kind = classify(tile, static_cast<std::int64_t>(j0), static_cast<std::int64_t>(n));
        if (kind == tile_kind::empty) {
            continue;
        }
        const float* bias = nullptr;
        if (kind == tile_kind::partial || masks) {
            if (!build_bias(tile, j0, n, scratch.bias.data())) {
                continue;
            }
            bias = scratch.bias.data();
        }

        keys.rows(b, kv_head, j0, n, scratch.key_rows, scratch.value_rows);
        const std::size_t padded = (n + key_block - 1) / key_block * key_block;
        for (std::size_t j = n; j < padded; ++j) {
            scratch.key_rows[j] = scratch.zero_row.data();
        }
        kernels::score_range<A> range;
        range.reset();
        for (std::size_t j = 0; j < padded; j += key_block) {
            kernels::score_block<A, key_block>(scratch.key_rows + j, scratch.qt.data(), pr.dim,
                                               scratch.s.data() + j * rows, n - std::min(n, j), range);
        }

        batch m_new[2];
        batch m_use[2];
        bool zeros;
        if (bias != nullptr) {
            batch tile_max[2];
            add_bias<A>(scratch.s.data(), bias, n, tile_max);
            running_max<A>(state, tile_max, m_new, m_use);
            zeros = exponentiate<A, true, true>(scratch.s.data(), n, m_new, m_use, state, scratch.alpha.data());
        } else {
            // Without masks a probability is 0 only by underflow, which the
            // tile's smallest score predicts. A NaN minimum may hide one, so
            // it counts as a possible underflow too.
            running_max<A>(state, range.max, m_new, m_use);
            const batch limit(kernels::flush_below);
            zeros = xsimd::any((range.min[0] - m_use[0] < limit) | (range.min[1] - m_use[1] < limit) |
                               xsimd::isnan(range.min[0]) | xsimd::isnan(range.min[1]));
            if (zeros) {
                exponentiate<A, true, false>(scratch.s.data(), n, m_new, m_use, state, scratch.alpha.data());
            } else {
                exponentiate<A, false, false>(scratch.s.data(), n, m_new, m_use, state, scratch.alpha.data());
            }
        }

        if (zeros && !values_finite<A>(scratch.value_rows, n, pr.value_dim)) {
            kernels::value_columns<A, true>(scratch.value_rows, pr.value_dim, scratch.s.data(), n,
                                            scratch.alpha.data(), state.ot.data());
        } else {
            kernels::value_columns<A, false>(scratch.value_rows, pr.value_dim, scratch.s.data(), n,
                                             scratch.alpha.data(), state.ot.data());
        }
    }
}

// total ← total ⊕ part: the exact merge of two softmax states,
// m = max(m₁, m₂), l = l₁·e^(m₁−m) + l₂·e^(m₂−m), Oᵀ likewise.
template <class A>
void merge_state(softmax_state<A>& total, const float* part_m, const float* part_l, const float* part_ot,
                 std::size_t value_dim)
{
    using batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = kernels::tile_shape<A>::lanes;
    constexpr std::size_t rows = kernels::tile_shape<A>::rows;
    const batch masked(-std::numeric_limits<float>::infinity());

    for (std::size_t v = 0; v < kernels::tile_shape<A>::vectors; ++v) {
        const std::size_t lane = v * lanes;
        const batch m1 = batch::load_aligned(total.m.data() + lane);
        const batch m2 = batch::load_aligned(part_m + lane);
        const batch m = xsimd::max(m1, m2);
        const batch m_use = xsimd::select(m == masked, batch(0.0f), m);
        const batch a = kernels::exp<A>(m1 - m_use);
        const batch c = kernels::exp<A>(m2 - m_use);

        const batch l1 = batch::load_aligned(total.l.data() + lane);
        const batch l2 = batch::load_aligned(part_l + lane);
        xsimd::fma(l2, c, l1 * a).store_aligned(total.l.data() + lane);
        m.store_aligned(total.m.data() + lane);
        for (std::size_t d = 0; d < value_dim; ++d) {
            float* o = total.ot.data() + d * rows + lane;
            const batch o2 = batch::load_aligned(part_ot + d * rows + lane);
            xsimd::fma(o2, c, batch::load_aligned(o) * a).store_aligned(o);
        }
    }
}

// Writes the finished rows: out_rows[i][d] = Oᵀ[d][i] / l[i], 0 when l is 0
// (a fully masked row), and log_sum_exp[i] = m + ln l (−∞ when l is 0).
template <class A>
void finish(const softmax_state<A>& state, std::size_t count, std::size_t value_dim, float* const* out_rows,
            float* const* lse, float* const* stats_m, float* const* stats_l)
{
    constexpr std::size_t rows = kernels::tile_shape<A>::rows;
    for (std::size_t i = 0; i < count; ++i) {
        const float l = state.l[i];
        const float m = state.m[i];
        float* out = out_rows[i];
        if (l == 0.0f) {
            for (std::size_t d = 0; d < value_dim; ++d) {
                out[d] = 0.0f;
            }
        } else {
            for (std::size_t d = 0; d < value_dim; ++d) {
                out[d] = state.ot[d * rows + i] / l;
            }
        }
        if (lse[i] != nullptr) {
            *lse[i] = l == 0.0f ? -std::numeric_limits<float>::infinity() : m + std::log(l);
        }
        if (stats_m[i] != nullptr) {
            *stats_m[i] = m;
            *stats_l[i] = l;
        }
    }
}

// The layout of query rows. The rows of one (batch, KV head) are the
// group's heads × queries, head-major, cut into tiles of tile_shape::rows.
// Row r is query r mod Lq of head kv_head·group + r / Lq.
struct row_layout {
    std::size_t batch = 0;
    std::size_t heads = 0;
    std::size_t kv_heads = 0;
    std::size_t group = 0;
    std::size_t queries = 0;
    std::size_t rows_per_tile = 0;

    std::size_t tiles_per_head_group() const { return chunk_count(group * queries, rows_per_tile); }
    std::size_t tiles() const { return batch * kv_heads * tiles_per_head_group(); }
};

// The output pointers of a call. A null pointer is an output not requested.
struct outputs {
    tensor_view<float> out;
    float* lse = nullptr;      // [B, H, Lq] dense
    float* stats_m = nullptr;  // [B, H, Lq] dense, for the head-mean pass
    float* stats_l = nullptr;
};

// The rows, masks and output pointers of tile `index`.
template <class A, class Keys>
struct tile_rows {
    row_tile<A> tile;
    std::size_t b = 0;
    std::size_t kv_head = 0;
    const float* query_rows[kernels::tile_shape<A>::rows] = {};
    float* out_rows[kernels::tile_shape<A>::rows] = {};
    float* lse[kernels::tile_shape<A>::rows] = {};
    float* stats_m[kernels::tile_shape<A>::rows] = {};
    float* stats_l[kernels::tile_shape<A>::rows] = {};

    tile_rows(const row_layout& layout, std::size_t index, const tensor_view<const float>& q, const outputs& out,
              const problem& pr, const Keys& keys)
    {
        const std::size_t per_group = layout.tiles_per_head_group();
        const std::size_t group_index = index / per_group;
        const std::size_t first = (index % per_group) * layout.rows_per_tile;
        b = group_index / layout.kv_heads;
        kv_head = group_index % layout.kv_heads;

        const std::size_t key_count = keys.count(b);
        const std::int64_t offset = position_offset(pr.pattern.align, pr.query_position, layout.queries, key_count);
        tile.count = std::min(layout.rows_per_tile, layout.group * layout.queries - first);
        for (std::size_t i = 0; i < tile.count; ++i) {
            const std::size_t r = first + i;
            const std::size_t head = kv_head * layout.group + r / layout.queries;
            const std::size_t query = r % layout.queries;
            query_rows[i] = q.row(b, head, query);
            out_rows[i] = out.out.row(b, head, query);
            const std::size_t flat = (b * layout.heads + head) * layout.queries + query;
            lse[i] = out.lse != nullptr ? out.lse + flat : nullptr;
            stats_m[i] = out.stats_m != nullptr ? out.stats_m + flat : nullptr;
            stats_l[i] = out.stats_l != nullptr ? out.stats_l + flat : nullptr;
            tile.visible[i] = visible_from(pr.pattern, static_cast<std::int64_t>(query) + offset,
                                           static_cast<std::int64_t>(key_count));
            tile.additive[i] = pr.additive.requested() ? pr.additive.row(b, head, query) : nullptr;
            tile.allowed[i] = pr.allowed.requested() ? pr.allowed.row(b, head, query) : nullptr;
        }
    }
};

} // namespace tessera::attention::detail
