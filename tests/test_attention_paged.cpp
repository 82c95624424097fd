// Tests of attention::paged_scaled_dot_product: a paged cache gives the same
// bits as the same keys stored contiguously, for prefill and decode, any
// block size and block order, and any thread count.
#include "attention_support.hpp"

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

using namespace tessera;
using namespace tessera::test;
using attention::alignment;
using attention::mask_pattern;

namespace {

// Sequences of random keys, stored both contiguously (one tensor each) and
// in a shuffled paged cache of layout [blocks, block_size, kv heads, dim]
// (vLLM's order), with two unused blocks.
struct paged_fixture {
    std::size_t kv_heads, dim, value_dim, block_size;
    std::vector<std::int32_t> lengths;
    std::vector<std::vector<float>> keys, values;  // per sequence, [kv heads, length, dim]
    std::vector<float> key_cache, value_cache;
    std::vector<std::int32_t> table;
    std::size_t blocks = 0;
    std::size_t table_cols = 0;

    paged_fixture(std::vector<std::int32_t> sequence_lengths, std::size_t heads, std::size_t d, std::size_t dv,
                  std::size_t block, std::mt19937& rng)
        : kv_heads(heads), dim(d), value_dim(dv), block_size(block), lengths(std::move(sequence_lengths))
    {
        for (std::int32_t length : lengths) {
            table_cols = std::max(table_cols, (static_cast<std::size_t>(length) + block - 1) / block);
            blocks += (static_cast<std::size_t>(length) + block - 1) / block;
        }
        blocks += 2;
        table_cols += 1;  // an unused column that contains an invalid entry
        std::vector<std::int32_t> order(blocks);
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng);

        key_cache.assign(blocks * block * heads * d, 0.0f);
        value_cache.assign(blocks * block * heads * dv, 0.0f);
        table.assign(lengths.size() * table_cols, -1);
        std::size_t next = 0;
        for (std::size_t b = 0; b < lengths.size(); ++b) {
            const auto length = static_cast<std::size_t>(lengths[b]);
            keys.emplace_back(heads * length * d);
            values.emplace_back(heads * length * dv);
            for (float& x : keys.back()) {
                x = uniform(rng, -1.5f, 1.5f);
            }
            for (float& x : values.back()) {
                x = uniform(rng, -1.0f, 1.0f);
            }
            for (std::size_t j = 0; j < length; ++j) {
                if (j % block == 0) {
                    table[b * table_cols + j / block] = order[next++];
                }
                const auto slot = static_cast<std::size_t>(table[b * table_cols + j / block]);
                for (std::size_t h = 0; h < heads; ++h) {
                    std::copy_n(keys.back().data() + (h * length + j) * d, d,
                                key_cache.data() + ((slot * block + j % block) * heads + h) * d);
                    std::copy_n(values.back().data() + (h * length + j) * dv, dv,
                                value_cache.data() + ((slot * block + j % block) * heads + h) * dv);
                }
            }
        }
    }

    attention::paged_cache cache() const
    {
        attention::paged_cache c;
        c.keys = {key_cache.data(), blocks, kv_heads, block_size, dim, block_size * kv_heads * dim, dim,
                  kv_heads * dim};
        c.values = {value_cache.data(), blocks, kv_heads, block_size, value_dim, block_size * kv_heads * value_dim,
                    value_dim, kv_heads * value_dim};
        c.block_table = {table.data(), lengths.size(), table_cols};
        c.lengths = {lengths.data(), lengths.size()};
        return c;
    }
};

} // namespace

TEST_CASE("paged attention equals contiguous attention bit for bit", "[attention][paged]")
{
    std::mt19937 rng(201);
    const std::size_t heads = 4;
    const std::size_t kv_heads = 2;
    const std::size_t dim = 32;
    const std::size_t value_dim = 24;
    const std::vector<std::pair<const char*, mask_pattern>> patterns = {
        {"none", mask_pattern::none()},
        {"causal bottom-right", mask_pattern::causal(alignment::bottom_right)},
        {"sliding window bottom-right", mask_pattern::sliding_window(300, 0, alignment::bottom_right)},
    };
    for (std::size_t block_size : {1, 5, 16}) {
        const paged_fixture fixture({100, 0, 777, 1030}, kv_heads, dim, value_dim, block_size, rng);
        const std::size_t batch = fixture.lengths.size();
        for (std::size_t queries : {1, 4, 37}) {
            std::vector<float> q(batch * heads * queries * dim);
            for (float& x : q) {
                x = uniform(rng, -1.5f, 1.5f);
            }
            for (const auto& [name, pattern] : patterns) {
                INFO("block size " << block_size << ", queries " << queries << ", pattern " << name);
                attention::options opts;
                opts.pattern = pattern;
                for_each_arch([&](auto arch) {
                    using A = decltype(arch);
                    for (int threads : {1, 2}) {
                        INFO(threads << " threads");
                        with_threads(threads, [&] {
                            std::vector<float> out(batch * heads * queries * value_dim, 9.0f);
                            std::vector<float> lse(batch * heads * queries, 9.0f);
                            attention::paged_scaled_dot_product<A>(
                                attention::tensor_view<const float>(q.data(), batch, heads, queries, dim),
                                fixture.cache(),
                                attention::tensor_view<float>(out.data(), batch, heads, queries, value_dim), opts,
                                vector_view<float>(lse.data(), lse.size()));

                            for (std::size_t b = 0; b < batch; ++b) {
                                const auto length = static_cast<std::size_t>(fixture.lengths[b]);
                                std::vector<float> expected(heads * queries * value_dim, 7.0f);
                                std::vector<float> expected_lse(heads * queries, 7.0f);
                                attention::scaled_dot_product<A>(
                                    attention::tensor_view<const float>(q.data() + b * heads * queries * dim, 1, heads,
                                                                        queries, dim),
                                    attention::tensor_view<const float>(fixture.keys[b].data(), 1, kv_heads, length,
                                                                        dim),
                                    attention::tensor_view<const float>(fixture.values[b].data(), 1, kv_heads, length,
                                                                        value_dim),
                                    attention::tensor_view<float>(expected.data(), 1, heads, queries, value_dim), opts,
                                    vector_view<float>(expected_lse.data(), expected_lse.size()));
                                for (std::size_t i = 0; i < expected.size(); ++i) {
                                    REQUIRE(same_bits(out[b * expected.size() + i], expected[i]));
                                }
                                for (std::size_t i = 0; i < expected_lse.size(); ++i) {
                                    REQUIRE(same_bits(lse[b * expected_lse.size() + i], expected_lse[i]));
                                }
                            }
                        });
                    }
                });
            }
        }
    }
}

TEST_CASE("paged decode matches the reference", "[attention][paged]")
{
    std::mt19937 rng(202);
    const paged_fixture fixture({1500, 64}, 1, 64, 64, 16, rng);
    const std::size_t heads = 8;
    std::vector<float> q(2 * heads * 2 * 64);
    for (float& x : q) {
        x = uniform(rng, -1.5f, 1.5f);
    }
    attention::options opts;
    opts.pattern = mask_pattern::causal(alignment::bottom_right);
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<float> out(2 * heads * 2 * 64);
        attention::paged_scaled_dot_product<A>(attention::tensor_view<const float>(q.data(), 2, heads, 2, 64),
                                               fixture.cache(), attention::tensor_view<float>(out.data(), 2, heads, 2, 64),
                                               opts);
        for (std::size_t b = 0; b < 2; ++b) {
            const auto length = static_cast<std::size_t>(fixture.lengths[b]);
            const auto ref = attention::reference::scaled_dot_product(
                attention::tensor_view<const float>(q.data() + b * heads * 2 * 64, 1, heads, 2, 64),
                attention::tensor_view<const float>(fixture.keys[b].data(), 1, 1, length, 64),
                attention::tensor_view<const float>(fixture.values[b].data(), 1, 1, length, 64), opts);
            const std::vector<float> got(out.begin() + static_cast<std::ptrdiff_t>(b * heads * 2 * 64),
                                         out.begin() + static_cast<std::ptrdiff_t>((b + 1) * heads * 2 * 64));
            std::string first;
            const std::size_t errors = count_output_errors(got, ref, 1e-5, first);
            INFO(first);
            CHECK(errors == 0);
        }
    });
}

TEST_CASE("paged decode runs heads in bands", "[attention][paged]")
{
    // A decode call over a paged cache runs its KV heads in bands, tile by tile
    // across the band (decode.hpp, band_heads). The bands depend on the thread
    // count: 40 heads make bands of 32 and 8 on one thread, 14, 14 and 12 on
    // three; 5 heads make one band, or bands of 3 and 2, or 2, 2 and 1. Every
    // split must still give each head the bits of one head at a time, which
    // is what the contiguous layout runs.
    std::mt19937 rng(203);
    for (std::size_t kv_heads : {5, 40}) {
        for (std::size_t group : {1, 2}) {
            const std::size_t dim = kv_heads == 5 ? 48 : 16;
            const paged_fixture fixture({1100}, kv_heads, dim, dim, 16, rng);
            const std::size_t heads = kv_heads * group;
            std::vector<float> q(heads * dim);
            for (float& x : q) {
                x = uniform(rng, -1.5f, 1.5f);
            }
            for_each_arch([&](auto arch) {
                using A = decltype(arch);
                std::vector<float> expected(heads * dim, 7.0f);
                attention::scaled_dot_product<A>(
                    attention::tensor_view<const float>(q.data(), 1, heads, 1, dim),
                    attention::tensor_view<const float>(fixture.keys[0].data(), 1, kv_heads, 1100, dim),
                    attention::tensor_view<const float>(fixture.values[0].data(), 1, kv_heads, 1100, dim),
                    attention::tensor_view<float>(expected.data(), 1, heads, 1, dim));
                for (int threads : {1, 2, 3}) {
                    INFO(kv_heads << " KV heads, group " << group << ", " << threads << " threads");
                    with_threads(threads, [&] {
                        std::vector<float> out(heads * dim, 9.0f);
                        attention::paged_scaled_dot_product<A>(
                            attention::tensor_view<const float>(q.data(), 1, heads, 1, dim), fixture.cache(),
                            attention::tensor_view<float>(out.data(), 1, heads, 1, dim));
                        for (std::size_t i = 0; i < out.size(); ++i) {
                            REQUIRE(same_bits(out[i], expected[i]));
                        }
                    });
                }
            });
        }
    }
}

TEST_CASE("paged bits independent of other sequences", "[attention][paged]")
{
    // Found by tests/fuzz/fuzz_attention.cpp. A sequence shorter than the longest one of a paged
    // batch has empty key splits at the end, and merging an empty softmax state is not an exact
    // identity: fma(0, 0, −0) is +0. Sequence 0 below spans two splits (512 or 528 keys each,
    // depending on the arch), and its output is −0. Its first 528 keys have logit 0 and value
    // +0. The others have logit −0.7 and value +0, except one of −2^-149, whose weighted value
    // rounds to −0 when the second split is merged. Sequence 1 is long enough for a third
    // split, which sequence 0 does not have.
    const std::size_t block = 100;
    const std::int32_t lengths[2] = {600, 1100};
    const std::size_t blocks = 17;  // sequence 0 in blocks 0..5, sequence 1 in blocks 6..16
    std::vector<float> keys(blocks * block, 0.0f);
    std::vector<float> values(blocks * block, 0.0f);
    for (std::size_t j = 528; j < 600; ++j) {
        keys[j] = -0.7f;
    }
    values[540] = -std::numeric_limits<float>::denorm_min();
    for (std::size_t j = 0; j < 1100; ++j) {
        keys[600 + j] = 0.01f * static_cast<float>(j % 7);
        values[600 + j] = 1.0f;
    }
    std::vector<std::int32_t> table(2 * 11, 0);
    for (std::int32_t b = 0; b < 6; ++b) {
        table[static_cast<std::size_t>(b)] = b;
    }
    for (std::int32_t b = 0; b < 11; ++b) {
        table[11 + static_cast<std::size_t>(b)] = 6 + b;
    }
    attention::paged_cache cache;
    cache.keys = attention::tensor_view<const float>(keys.data(), blocks, 1, block, 1);
    cache.values = attention::tensor_view<const float>(values.data(), blocks, 1, block, 1);
    cache.block_table = matrix_view<const std::int32_t>(table.data(), 2, 11);
    cache.lengths = vector_view<const std::int32_t>(lengths, 2);
    const float q[2] = {1.0f, 1.0f};
    attention::options opts;
    opts.scale = 1.0f;

    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (int threads : {1, 2}) {
            INFO(threads << " threads");
            with_threads(threads, [&] {
                float paged[2] = {7.0f, 7.0f};
                attention::paged_scaled_dot_product<A>(attention::tensor_view<const float>(q, 2, 1, 1, 1), cache,
                                                       attention::tensor_view<float>(paged, 2, 1, 1, 1), opts);
                float alone = 7.0f;
                attention::scaled_dot_product<A>(attention::tensor_view<const float>(q, 1, 1, 1, 1),
                                                 attention::tensor_view<const float>(keys.data(), 1, 1, 600, 1),
                                                 attention::tensor_view<const float>(values.data(), 1, 1, 600, 1),
                                                 attention::tensor_view<float>(&alone, 1, 1, 1, 1), opts);
                CAPTURE(paged[0], alone, std::signbit(paged[0]), std::signbit(alone));
                CHECK(same_bits(paged[0], alone));
            });
        }
    });
}
