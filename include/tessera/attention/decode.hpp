// Narrow tiles: the attention of a few query rows (decode), with the lanes
// along the keys instead of along the rows.
//
// A wide tile (tiles.hpp) puts one query row in each lane, so a single
// decode row would leave 7 of 8 (or 15 of 16) lanes idle. When a (batch, KV
// head) has at most narrow_rows<A> rows (grouped heads × queries), each row
// instead computes its scores N keys at a time as dot products along the
// head dim, and accumulates its output along the value dim. The keys and
// values of a tile are read once for all rows of the group.
//
// Per row the operations are fixed by the row and the key positions alone:
//   s_j = halving_sum(Σ_c fma over whole batches) + tail products in order
//   (the halving tree of core/halving_sum.hpp),
//   l = l·α + halving_sum(Σ p over batches of N keys), o_d = α·o_d + Σ_j p_j·v_jd
//   with one fma per key in order,
// and the splits are those of the wide path, merged in order. Which path a
// call takes depends only on its shape, so results still do not depend on
// the thread count or on paged versus contiguous keys. The two paths may
// differ in the last bits of a row.
#pragma once

#include "../core/extents.hpp"
#include "../core/halving_sum.hpp"
#include "../core/parallel.hpp"
#include "../core/simd.hpp"
#include "kernels.hpp"
#include "layout.hpp"
#include "tiles.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace tessera::attention::detail {

// Rows up to which a (batch, KV head) takes the narrow path: a quarter of a
// wide tile (4 rows on AVX2, 8 on AVX-512), where a wide tile would idle
// three quarters of its lanes.
template <class A>
inline constexpr std::size_t narrow_rows = kernels::tile_shape<A>::rows / 4;

// The softmax state of one narrow row: m, l and o [value_dim], stored
// contiguously in a slot of value_dim + 2 floats.
struct narrow_row_state {
    float* m;
    float* l;
    float* o;
};

inline narrow_row_state row_state(float* slot)
{
    return {slot, slot + 1, slot + 2};
}

inline void reset_row_state(float* slot, std::size_t value_dim)
{
    slot[0] = -std::numeric_limits<float>::infinity();
    slot[1] = 0.0f;
    std::fill(slot + 2, slot + 2 + value_dim, 0.0f);
}

// e^x of one float through the batch exp, so scalars and lanes agree.
template <class A>
float exp_scalar(float x)
{
    alignas(64) float lanes[xsimd::batch<float, A>::size];
    kernels::exp<A>(xsimd::batch<float, A>(x)).store_aligned(lanes);
    return lanes[0];
}

// s[j] = q · keys[j] for j < padded (a multiple of the lane count).
template <class A>
void narrow_scores(const float* q, const float* const* keys, std::size_t padded, std::size_t dim, float* s)
{
    using batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = batch::size;
    const std::size_t whole = dim / lanes * lanes;
    for (std::size_t j = 0; j < padded; j += lanes) {
        batch acc[lanes];
        for (std::size_t t = 0; t < lanes; ++t) {
            acc[t] = batch(0.0f);
        }
        for (std::size_t c = 0; c < whole; c += lanes) {
            const batch qv = batch::load_unaligned(q + c);
            for (std::size_t t = 0; t < lanes; ++t) {
                acc[t] = xsimd::fma(batch::load_unaligned(keys[j + t] + c), qv, acc[t]);
            }
        }
        simd::halving_sums<A, lanes>(acc, s + j);
        for (std::size_t t = 0; t < lanes; ++t) {
            for (std::size_t c = whole; c < dim; ++c) {
                s[j + t] = std::fma(q[c], keys[j + t][c], s[j + t]);
            }
        }
    }
}

// o[d0 + v·N + …] = alpha·o + Σ_j p[j]·values[j][…] for Vectors batches of
// columns; with SkipZero a key whose p is exactly 0 is left out.
template <class A, std::size_t Vectors, bool SkipZero>
void narrow_value_block(const float* const* values, std::size_t d0, const float* p, std::size_t count, float alpha,
                        float* o)
{
    using batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = batch::size;
    batch acc[Vectors];
    for (std::size_t k = 0; k < Vectors; ++k) {
        acc[k] = batch::load_unaligned(o + d0 + k * lanes) * batch(alpha);
    }
    for (std::size_t j = 0; j < count; ++j) {
        if (SkipZero && p[j] == 0.0f) {
            continue;
        }
        const batch weight(p[j]);
        const float* row = values[j] + d0;
        for (std::size_t k = 0; k < Vectors; ++k) {
            acc[k] = xsimd::fma(weight, batch::load_unaligned(row + k * lanes), acc[k]);
        }
    }
    for (std::size_t k = 0; k < Vectors; ++k) {
        acc[k].store_unaligned(o + d0 + k * lanes);
    }
}

template <class A, bool SkipZero, std::size_t Vectors>
void narrow_value_tail(const float* const* values, std::size_t d0, std::size_t remaining, const float* p,
                       std::size_t count, float alpha, float* o)
{
    if constexpr (Vectors > 0) {
        if (remaining == Vectors) {
            narrow_value_block<A, Vectors, SkipZero>(values, d0, p, count, alpha, o);
        } else {
            narrow_value_tail<A, SkipZero, Vectors - 1>(values, d0, remaining, p, count, alpha, o);
        }
    }
}

// The output update of one narrow row over all value_dim columns: blocks
// of 8 batches, then fewer, then the columns past the last whole batch one
// by one.
template <class A, bool SkipZero>
void narrow_values(const float* const* values, std::size_t value_dim, const float* p, std::size_t count, float alpha,
                   float* o)
{
    constexpr std::size_t lanes = xsimd::batch<float, A>::size;
    constexpr std::size_t block = 8;
    const std::size_t batches = value_dim / lanes;
    std::size_t k = 0;
    for (; k + block <= batches; k += block) {
        narrow_value_block<A, block, SkipZero>(values, k * lanes, p, count, alpha, o);
    }
    narrow_value_tail<A, SkipZero, block - 1>(values, k * lanes, batches - k, p, count, alpha, o);
    for (std::size_t d = batches * lanes; d < value_dim; ++d) {
        float acc = o[d] * alpha;
        for (std::size_t j = 0; j < count; ++j) {
            if (!(SkipZero && p[j] == 0.0f)) {
                acc = std::fma(p[j], values[j][d], acc);
            }
        }
        o[d] = acc;
    }
}

// Runs the rows of a narrow tile over keys [begin, end) of one (batch, KV
// head). `queries` contains the scaled query rows, [tile.count × dim], and
// `slots` one state of value_dim + 2 floats per row.
template <class A, class Keys>
void run_narrow(const problem& pr, const Keys& keys, std::size_t b, std::size_t kv_head, const row_tile<A>& tile,
                const float* queries, std::size_t begin, std::size_t end, tile_scratch<A>& scratch, float* slots)
{
    using batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = kernels::tile_shape<A>::lanes;
    constexpr std::size_t rows = kernels::tile_shape<A>::rows;
    constexpr float masked = -std::numeric_limits<float>::infinity();
    const bool masks = pr.additive.requested() || pr.allowed.requested();
    const std::size_t slot = pr.value_dim + 2;
    float* s = scratch.s.data();

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
        const std::size_t padded = (n + lanes - 1) / lanes * lanes;
        for (std::size_t j = n; j < padded; ++j) {
            scratch.key_rows[j] = scratch.zero_row.data();
        }
        int finite_values = -1;  // unknown until a row needs it

        for (std::size_t i = 0; i < tile.count; ++i) {
            narrow_scores<A>(queries + i * pr.dim, scratch.key_rows, padded, pr.dim, s);
            if (bias != nullptr) {
                for (std::size_t j = 0; j < n; ++j) {
                    const float b_ij = bias[j * rows + i];
                    s[j] = b_ij == masked ? masked : s[j] + b_ij;
                }
            }
            for (std::size_t j = n; j < padded; ++j) {
                s[j] = masked;
            }

            // The tile's maximum: a lane-wise max over batches, then over lanes in order.
            batch largest(masked);
            for (std::size_t j = 0; j < padded; j += lanes) {
                largest = xsimd::max(largest, batch::load_unaligned(s + j));
            }
            alignas(64) float lane_max[lanes];
            largest.store_aligned(lane_max);
            float tile_max = masked;
            for (std::size_t t = 0; t < lanes; ++t) {
                tile_max = std::max(tile_max, lane_max[t]);
            }

            narrow_row_state state = row_state(slots + i * slot);
            const float m_new = std::max(*state.m, tile_max);
            const float m_use = m_new == masked ? 0.0f : m_new;
            const float factor = exp_scalar<A>(*state.m - m_use);
            batch sum(0.0f);
            for (std::size_t j = 0; j < padded; j += lanes) {
                const batch p = kernels::exp<A>(batch::load_unaligned(s + j) - batch(m_use));
                p.store_unaligned(s + j);
                sum += p;
            }
            *state.l = std::fma(*state.l, factor, simd::halving_sum(sum));
            *state.m = m_new;

            bool zeros = false;
            for (std::size_t j = 0; j < n && !zeros; ++j) {
                zeros = s[j] == 0.0f;
            }
            if (zeros && finite_values < 0) {
                finite_values = values_finite<A>(scratch.value_rows, n, pr.value_dim) ? 1 : 0;
            }
            if (zeros && finite_values == 0) {
                narrow_values<A, true>(scratch.value_rows, pr.value_dim, s, n, factor, state.o);
            } else {
                narrow_values<A, false>(scratch.value_rows, pr.value_dim, s, n, factor, state.o);
            }
        }
    }
}

// total ← total ⊕ part for one narrow row, as merge_state does for lanes.
template <class A>
void merge_row_state(float* total, const float* part, std::size_t value_dim)
{
    using batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = batch::size;
    constexpr float masked = -std::numeric_limits<float>::infinity();
    const float m = std::max(total[0], part[0]);
    const float m_use = m == masked ? 0.0f : m;
    const float a = exp_scalar<A>(total[0] - m_use);
    const float c = exp_scalar<A>(part[0] - m_use);
    total[1] = std::fma(part[1], c, total[1] * a);
    total[0] = m;

    float* o = total + 2;
    const float* o2 = part + 2;
    std::size_t d = 0;
    for (; d + lanes <= value_dim; d += lanes) {
        const batch merged =
            xsimd::fma(batch::load_unaligned(o2 + d), batch(c), batch::load_unaligned(o + d) * batch(a));
        merged.store_unaligned(o + d);
    }
    for (; d < value_dim; ++d) {
        o[d] = std::fma(o2[d], c, o[d] * a);
    }
}

// Writes a finished narrow row as finish() does for a wide tile.
inline void finish_row(const float* state, std::size_t value_dim, float* out, float* lse, float* stats_m,
                       float* stats_l)
{
    const float m = state[0];
    const float l = state[1];
    for (std::size_t d = 0; d < value_dim; ++d) {
        out[d] = l == 0.0f ? 0.0f : state[2 + d] / l;
    }
    if (lse != nullptr) {
        *lse = l == 0.0f ? -std::numeric_limits<float>::infinity() : m + std::log(l);
    }
    if (stats_m != nullptr) {
        *stats_m = m;
        *stats_l = l;
    }
}

// KV heads that one task of forward_narrow runs side by side, tile by
// tile. A paged cache stores all KV heads of a block inside the block (as
// [blocks, kv heads, block_size, dim] or vLLM's [blocks, block_size, kv
// heads, dim]), so a band of heads reads each block as one run of memory.
// One head at a time would read a piece of block_size rows from each block
// instead (8 KiB every 256 KiB for 32 heads of dim 128), and the hardware
// prefetcher would start again at each piece. On a Xeon with AVX-512, 32
// heads of dim 128 over 4096 keys, bands took a decode call from 7.5–8.6 ms
// to 6.3–7.1 ms on one thread. A contiguous layout already stores each head
// as one run and keeps one head per task. Bands are cut so that every
// thread gets one, and hold at most 32 heads or 64 KiB of softmax states.
template <class Keys>
std::size_t band_heads(const row_layout& layout, const problem& pr, int threads)
{
    if constexpr (!std::is_same_v<Keys, paged_keys>) {
        (void)layout;
        (void)pr;
        (void)threads;
        return 1;
    } else {
        const std::size_t state_bytes = layout.group * layout.queries * (pr.value_dim + 2) * sizeof(float);
        const std::size_t max_band = std::clamp<std::size_t>(65536 / std::max<std::size_t>(state_bytes, 1), 1, 32);
        const std::size_t per_thread = chunk_count(layout.kv_heads, chunk_count(std::max(threads, 1), layout.batch));
        return std::max<std::size_t>(1, std::min(max_band, per_thread));
    }
}

// The forward pass of a call whose (batch, KV head) groups have at most
// narrow_rows<A> rows: one tile per group. With at least as many groups as
// threads, each task runs the splits of a band of groups (band_heads) in
// order, tile by tile across the band. With fewer, each (group, split) pair
// is a task and the states are merged afterwards. Each row gets the same
// tiles and merges in the same order either way, and empty splits are
// skipped, as in forward() (attention.hpp).
template <class A, class Keys>
void forward_narrow(const tensor_view<const float>& q, const Keys& keys, const row_layout& layout, const problem& pr,
                    const outputs& out, std::size_t splits, int threads)
{
    using scratch_type = tile_scratch<A>;
    constexpr std::size_t key_tile = kernels::tile_shape<A>::keys;
    const std::size_t groups = layout.tiles();
    const std::size_t slot = pr.value_dim + 2;
    const std::size_t row_count = layout.group * layout.queries;
    const std::size_t group_floats = row_count * slot;
    std::vector<scratch_type> scratch(static_cast<std::size_t>(std::max(threads, 1)));
    std::vector<std::vector<float>> partial(scratch.size());

    auto split_range = [&](std::size_t b, std::size_t split) {
        const std::size_t count = keys.count(b);
        const std::size_t first = std::min(count, split * kernels::tile_shape<A>::split);
        return std::pair<std::size_t, std::size_t>(first, std::min(count, first + kernels::tile_shape<A>::split));
    };
    // Scales the query rows of a group into `queries` and resets its states.
    auto start_split = [&](scratch_type& s, const tile_rows<A, Keys>& t, float* queries, float* slots) {
        if (s.qt.size() != pr.dim * kernels::tile_shape<A>::rows) {
            s.prepare(pr.dim, pr.value_dim);
        }
        for (std::size_t i = 0; i < t.tile.count; ++i) {
            for (std::size_t c = 0; c < pr.dim; ++c) {
                queries[i * pr.dim + c] = pr.scale * t.query_rows[i][c];
            }
        }
        for (std::size_t i = 0; i < row_count; ++i) {
            reset_row_state(slots + i * slot, pr.value_dim);
        }
    };
    auto merge_group = [&](float* totals, const float* part) {
        for (std::size_t i = 0; i < row_count; ++i) {
            merge_row_state<A>(totals + i * slot, part + i * slot, pr.value_dim);
        }
    };
    auto finish_group = [&](const tile_rows<A, Keys>& t, const float* totals) {
        for (std::size_t i = 0; i < t.tile.count; ++i) {
            finish_row(totals + i * slot, pr.value_dim, t.out_rows[i], t.lse[i], t.stats_m[i], t.stats_l[i]);
        }
    };

    if (threads <= 1 || groups >= static_cast<std::size_t>(threads) || splits == 1) {
        const std::size_t band = band_heads<Keys>(layout, pr, threads);
        const std::size_t bands_per_batch = chunk_count(layout.kv_heads, band);
        parallel_for_tasks(layout.batch * bands_per_batch, threads, [&](int thread, std::size_t task) {
            scratch_type& s = scratch[static_cast<std::size_t>(thread)];
            const std::size_t first_head = task % bands_per_batch * band;
            const std::size_t count = std::min(band, layout.kv_heads - first_head);
            const std::size_t first_group = task / bands_per_batch * layout.kv_heads + first_head;
            std::vector<tile_rows<A, Keys>> members;
            members.reserve(count);
            for (std::size_t g = 0; g < count; ++g) {
                members.emplace_back(layout, first_group + g, q, out, pr, keys);
            }
            std::vector<float>& state = partial[static_cast<std::size_t>(thread)];
            state.resize(2 * count * group_floats);
            float* totals = state.data();
            float* part = state.data() + count * group_floats;
            for (std::size_t i = 0; i < count * row_count; ++i) {
                reset_row_state(totals + i * slot, pr.value_dim);
            }
            s.scaled_queries.resize(count * row_count * pr.dim);
            float* queries = s.scaled_queries.data();

            const std::size_t b = members.front().b;
            for (std::size_t split = 0; split < splits; ++split) {
                const auto [begin, end] = split_range(b, split);
                if (begin == end) {
                    continue;
                }
                for (std::size_t g = 0; g < count; ++g) {
                    start_split(s, members[g], queries + g * row_count * pr.dim, part + g * group_floats);
                }
                for (std::size_t j0 = begin; j0 < end; j0 += key_tile) {
                    const std::size_t j1 = std::min(end, j0 + key_tile);
                    for (std::size_t g = 0; g < count; ++g) {
                        run_narrow<A>(pr, keys, b, members[g].kv_head, members[g].tile,
                                      queries + g * row_count * pr.dim, j0, j1, s, part + g * group_floats);
                    }
                }
                for (std::size_t g = 0; g < count; ++g) {
                    merge_group(totals + g * group_floats, part + g * group_floats);
                }
            }
            for (std::size_t g = 0; g < count; ++g) {
                finish_group(members[g], totals + g * group_floats);
            }
        });
        return;
    }

    std::vector<float> states(checked_mul(checked_mul(groups * splits, row_count, "attention", "states"), slot,
                                          "attention", "states"));
    parallel_for_tasks(groups * splits, threads, [&](int thread, std::size_t task) {
        scratch_type& s = scratch[static_cast<std::size_t>(thread)];
        const tile_rows<A, Keys> t(layout, task / splits, q, out, pr, keys);
        float* slots = states.data() + task * group_floats;
        s.scaled_queries.resize(row_count * pr.dim);
        start_split(s, t, s.scaled_queries.data(), slots);
        const auto [begin, end] = split_range(t.b, task % splits);
        run_narrow<A>(pr, keys, t.b, t.kv_head, t.tile, s.scaled_queries.data(), begin, end, s, slots);
    });
    parallel_for_tasks(groups, threads, [&](int thread, std::size_t index) {
        std::vector<float>& totals = partial[static_cast<std::size_t>(thread)];
        totals.resize(row_count * slot);
        for (std::size_t i = 0; i < row_count; ++i) {
            reset_row_state(totals.data() + i * slot, pr.value_dim);
        }
        const tile_rows<A, Keys> t(layout, index, q, out, pr, keys);
        for (std::size_t split = 0; split < splits; ++split) {
            const auto [begin, end] = split_range(t.b, split);
            if (begin == end) {
                continue;
            }
            merge_group(totals.data(), states.data() + (index * splits + split) * group_floats);
        }
        finish_group(t, totals.data());
    });
}

} // namespace tessera::attention::detail
