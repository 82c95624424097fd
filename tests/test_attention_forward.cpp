// Tests of attention::scaled_dot_product against the double reference, on
// every arch: mask patterns, alignments, tails, head dims, grouped-query
// layouts, mask views, strides, log-sum-exp, head-averaged maps, and the
// contract's sentences on masked rows, NaN, large logits and threads.
#include "attention_support.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace tessera;
using namespace tessera::test;
using attention::alignment;
using attention::mask_pattern;

namespace {

constexpr double tolerance = 1e-5;
constexpr float nan_value = std::numeric_limits<float>::quiet_NaN();
constexpr float infinity = std::numeric_limits<float>::infinity();

struct shape {
    std::size_t batch, heads, kv_heads, queries, keys, dim, value_dim;
};

std::string describe(const shape& s)
{
    return "B " + std::to_string(s.batch) + ", H " + std::to_string(s.heads) + "/" + std::to_string(s.kv_heads) +
           ", Lq " + std::to_string(s.queries) + ", Lk " + std::to_string(s.keys) + ", D " + std::to_string(s.dim) +
           ", Dv " + std::to_string(s.value_dim);
}

// Runs one problem on arch A with every output and checks it against the
// reference; also checks that nothing outside the outputs was written.
template <class A>
void check_problem(attention_problem& p, const attention::options& opts, const attention::reference::result& ref)
{
    const std::size_t rows = p.q.batch * p.q.heads * p.q.tokens;
    guarded_buffer<float> lse(rows, 1);
    guarded_matrix<float> map(p.q.batch * p.q.tokens, p.k.tokens, p.k.tokens + 3, 2);
    p.run<A>(opts, vector_view<float>(lse.data(), rows), map.view());

    std::string first;
    const std::size_t out_errors = count_output_errors(p.out.values(), ref, tolerance, first);
    INFO(first);
    CHECK(out_errors == 0);

    std::vector<float> lse_values(lse.data(), lse.data() + rows);
    const std::size_t lse_errors = count_lse_errors(lse_values, ref, tolerance, first);
    INFO(first);
    CHECK(lse_errors == 0);

    const std::size_t map_errors = count_map_errors(map.dense(), ref, tolerance, first);
    INFO(first);
    CHECK(map_errors == 0);

    CHECK(p.out.outside_intact());
    CHECK(lse.guards_intact());
    CHECK(map.outside_intact());
}

void run_on_every_arch(const shape& s, const attention::options& opts, std::mt19937& rng, bool bthd = false,
                       std::size_t pad = 0, std::size_t offset = 0)
{
    attention_problem p(s.batch, s.heads, s.kv_heads, s.queries, s.keys, s.dim, s.value_dim, rng, bthd, pad, offset);
    const auto ref = p.reference(opts);
    INFO(describe(s));
    for_each_arch([&](auto arch) { check_problem<decltype(arch)>(p, opts, ref); });
}

} // namespace

TEST_CASE("attention matches the reference for every mask pattern", "[attention]")
{
    std::mt19937 rng(101);
    const std::vector<std::pair<const char*, mask_pattern>> patterns = {
        {"none", mask_pattern::none()},
        {"causal top-left", mask_pattern::causal(alignment::top_left)},
        {"causal bottom-right", mask_pattern::causal(alignment::bottom_right)},
        {"sliding window 37 left", mask_pattern::sliding_window(37, 0)},
        {"sliding window 5 left 9 right bottom-right", mask_pattern::sliding_window(5, 9, alignment::bottom_right)},
        {"block-local 16", mask_pattern::block_local(16)},
        {"block-local 7 with 3 global", mask_pattern::block_local(7, 3)},
        {"spatio-temporal 20 patches, 1 frame back", mask_pattern::spatio_temporal(20, 1, 0, 1)},
        {"spatio-temporal 9 patches, 2 frames both ways", mask_pattern::spatio_temporal(9, 2, 2)},
    };
    // Query and key counts below, equal to and above a tile, across split
    // boundaries (512 keys), shorter and longer queries than keys.
    const std::vector<std::pair<std::size_t, std::size_t>> lengths = {
        {1, 1}, {17, 40}, {40, 17}, {64, 64}, {100, 100}, {33, 700}, {130, 70}, {5, 1100}};
    for (const auto& [name, pattern] : patterns) {
        for (const auto& [queries, keys] : lengths) {
            INFO("pattern " << name);
            attention::options opts;
            opts.pattern = pattern;
            run_on_every_arch({1, 2, 2, queries, keys, 24, 24}, opts, rng);
        }
    }
}

TEST_CASE("attention head dims from 16 to 256, value dims and tails", "[attention]")
{
    std::mt19937 rng(102);
    for (std::size_t dim : {16, 20, 32, 48, 64, 80, 96, 112, 128, 256}) {
        attention::options opts;
        opts.pattern = mask_pattern::causal(alignment::bottom_right);
        run_on_every_arch({1, 2, 1, 45, 77, dim, dim}, opts, rng);
    }
    for (std::size_t value_dim : {1, 5, 13, 40}) {
        run_on_every_arch({2, 2, 2, 19, 66, 64, value_dim}, {}, rng);
    }
}

TEST_CASE("attention with grouped-query and multi-query heads", "[attention]")
{
    std::mt19937 rng(103);
    attention::options causal;
    causal.pattern = mask_pattern::causal();
    run_on_every_arch({2, 6, 2, 21, 50, 32, 32}, causal, rng);
    run_on_every_arch({1, 8, 1, 3, 600, 64, 64}, causal, rng);
    run_on_every_arch({1, 4, 4, 30, 30, 16, 16}, {}, rng);
    attention::options scaled;
    scaled.scale = 0.37f;
    run_on_every_arch({1, 12, 3, 1, 130, 48, 48}, scaled, rng);
}

TEST_CASE("attention on strided, token-major and unaligned tensors", "[attention]")
{
    std::mt19937 rng(104);
    attention::options opts;
    opts.pattern = mask_pattern::sliding_window(20, 3);
    run_on_every_arch({2, 4, 2, 37, 59, 40, 40}, opts, rng, true, 0, 0);
    run_on_every_arch({2, 4, 2, 37, 59, 40, 40}, opts, rng, false, 3, 1);
    run_on_every_arch({1, 3, 1, 70, 20, 24, 24}, opts, rng, true, 5, 3);
}

TEST_CASE("attention with additive and boolean masks", "[attention]")
{
    std::mt19937 rng(105);
    const shape s{2, 3, 3, 23, 90, 32, 32};

    // A full [B, H, Lq, Lk] additive mask with −∞ entries and one fully masked row.
    std::vector<float> additive(s.batch * s.heads * s.queries * s.keys);
    for (float& x : additive) {
        x = uniform(rng, 0.0f, 1.0f) < 0.2f ? -infinity : uniform(rng, -3.0f, 3.0f);
    }
    for (std::size_t j = 0; j < s.keys; ++j) {
        additive[(1 * s.heads + 2) * s.queries * s.keys + 4 * s.keys + j] = -infinity;
    }
    attention::options full;
    full.additive = {additive.data(), s.heads * s.queries * s.keys, s.queries * s.keys, s.keys};
    full.pattern = mask_pattern::causal(alignment::bottom_right);
    run_on_every_arch(s, full, rng);

    // A boolean [Lq, Lk] mask broadcast over batch and heads.
    std::vector<std::uint8_t> allowed(s.queries * s.keys);
    for (auto& x : allowed) {
        x = uniform(rng, 0.0f, 1.0f) < 0.7f ? 1 : 0;
    }
    attention::options broadcast;
    broadcast.allowed = {allowed.data(), 0, 0, s.keys};
    run_on_every_arch(s, broadcast, rng);

    // A key-padding mask, one row per sequence, with bool storage, together
    // with an additive row bias broadcast over heads.
    std::vector<char> padding_storage(s.batch * s.keys);
    bool* padding = reinterpret_cast<bool*>(padding_storage.data());
    for (std::size_t b = 0; b < s.batch; ++b) {
        for (std::size_t j = 0; j < s.keys; ++j) {
            padding[b * s.keys + j] = j < s.keys - 11 * (b + 1);
        }
    }
    std::vector<float> bias(s.batch * s.queries * s.keys);
    for (float& x : bias) {
        x = uniform(rng, -1.0f, 1.0f);
    }
    attention::options padded;
    padded.allowed = attention::bool_mask(padding, s.keys, 0, 0);
    padded.additive = {bias.data(), s.queries * s.keys, 0, s.keys};
    padded.pattern = mask_pattern::block_local(10, 2);
    run_on_every_arch(s, padded, rng);
}

TEST_CASE("attention fully masked rows output zeros and a log-sum-exp of minus infinity", "[attention]")
{
    std::mt19937 rng(106);
    // Bottom-right causal with more queries than keys: the first 30 rows see nothing.
    attention::options opts;
    opts.pattern = mask_pattern::causal(alignment::bottom_right);
    attention_problem p(1, 2, 2, 50, 20, 16, 16, rng);
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<float> lse(2 * 50, 1.0f);
        std::vector<float> map(50 * 20, 1.0f);
        p.run<A>(opts, vector_view<float>(lse.data(), lse.size()), matrix_view<float>(map.data(), 50, 20));
        const auto out = p.out.values();
        for (std::size_t h = 0; h < 2; ++h) {
            for (std::size_t i = 0; i < 30; ++i) {
                CHECK(lse[h * 50 + i] == -infinity);
                for (std::size_t d = 0; d < 16; ++d) {
                    CHECK(same_bits(out[(h * 50 + i) * 16 + d], 0.0f));
                }
                for (std::size_t j = 0; j < 20; ++j) {
                    CHECK(map[i * 20 + j] == 0.0f);
                }
            }
            CHECK(std::isfinite(lse[h * 50 + 30]));
        }
    });

    // No keys at all: every row is fully masked.
    attention_problem empty(1, 2, 1, 5, 0, 16, 8, rng);
    for_each_arch([&](auto arch) {
        std::vector<float> lse(10, 1.0f);
        empty.run<decltype(arch)>({}, vector_view<float>(lse.data(), lse.size()));
        for (float x : empty.out.values()) {
            CHECK(same_bits(x, 0.0f));
        }
        for (float x : lse) {
            CHECK(x == -infinity);
        }
        CHECK(empty.out.outside_intact());
    });
}

TEST_CASE("attention NaN reaches the rows that see it and no others", "[attention]")
{
    std::mt19937 rng(107);
    attention::options causal;
    causal.pattern = mask_pattern::causal();
    const std::size_t L = 90;
    const std::size_t D = 16;
    for_each_arch([&](auto arch) {
        using A = decltype(arch);

        // NaN in query row 7 of head 1: that row only.
        attention_problem p(1, 2, 2, L, L, D, D, rng);
        p.q.at(0, 1, 7, 3) = nan_value;
        p.run<A>(causal);
        auto out = p.out.values();
        for (std::size_t h = 0; h < 2; ++h) {
            for (std::size_t i = 0; i < L; ++i) {
                const bool expect_nan = h == 1 && i == 7;
                CHECK(std::isnan(out[(h * L + i) * D]) == expect_nan);
            }
        }

        // NaN in key 40 and ∞ in value 70 of head 0. Causal rows before 40
        // never see them and stay finite, and the rows from 40 on are NaN.
        attention_problem r(1, 1, 1, L, L, D, D, rng);
        r.k.at(0, 0, 40, 0) = nan_value;
        r.v.at(0, 0, 70, 5) = infinity;
        r.run<A>(causal);
        out = r.out.values();
        for (std::size_t i = 0; i < L; ++i) {
            bool any_nan = false;
            for (std::size_t d = 0; d < D; ++d) {
                any_nan = any_nan || std::isnan(out[i * D + d]);
            }
            CHECK(any_nan == (i >= 40));
        }

        // NaN in a value and a key hidden by a boolean mask from every row
        // but row 3: only row 3 is NaN.
        attention_problem s(1, 1, 1, 20, 60, D, D, rng);
        s.v.at(0, 0, 50, 2) = nan_value;
        s.k.at(0, 0, 51, 2) = infinity;
        std::vector<std::uint8_t> allowed(20 * 60, 1);
        for (std::size_t i = 0; i < 20; ++i) {
            allowed[i * 60 + 50] = i == 3;
            allowed[i * 60 + 51] = 0;
        }
        attention::options masked;
        masked.allowed = {allowed.data(), 0, 0, 60};
        s.run<A>(masked);
        out = s.out.values();
        for (std::size_t i = 0; i < 20; ++i) {
            CHECK(std::isnan(out[i * D + 2]) == (i == 3));
            CHECK(std::isfinite(out[i * D + 0]));
        }
    });
}

TEST_CASE("attention additive NaN reaches only its row", "[attention]")
{
    // A NaN or +∞ additive entry makes its row's output and log-sum-exp NaN and leaves the
    // other rows finite, on the wide path (30 query rows) and the narrow path (1 row).
    std::mt19937 rng(115);
    const std::size_t keys = 100;
    for (std::size_t queries : {30, 1}) {
        INFO(queries << " query rows");
        attention_problem p(1, 2, 1, queries, keys, 16, 16, rng);
        // One [queries × keys] matrix per head.
        std::vector<float> additive(2 * queries * keys, 0.0f);
        std::vector<bool> expect_nan(2 * queries, false);
        auto poison = [&](std::size_t head, std::size_t row, std::size_t key, float value) {
            additive[(head * queries + row) * keys + key] = value;
            expect_nan[head * queries + row] = true;
        };
        poison(1, 0, 70, infinity);
        if (queries > 1) {
            poison(0, 4, 10, nan_value);
            poison(1, 17, 99, infinity);
        }
        attention::options opts;
        opts.additive = {additive.data(), 0, queries * keys, keys};

        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<float> lse(2 * queries, 1.0f);
            p.run<A>(opts, vector_view<float>(lse.data(), lse.size()));
            const auto out = p.out.values();
            for (std::size_t row = 0; row < 2 * queries; ++row) {
                INFO("head " << row / queries << ", row " << row % queries);
                CHECK(std::isnan(lse[row]) == expect_nan[row]);
                for (std::size_t d = 0; d < 16; ++d) {
                    CHECK(std::isnan(out[row * 16 + d]) == expect_nan[row]);
                    CHECK((std::isfinite(out[row * 16 + d]) || expect_nan[row]));
                }
            }
        });
    }
}

TEST_CASE("attention skips underflowing keys", "[attention]")
{
    // With scale 1, q = 10·e0 and k_j = ±10·e0 the logits are +100 and −100. e^(−200) is far
    // below 2^-126, so the keys with logit −100 get probability 0 and are left out. NaN and ∞
    // in their values must not reach the output, which must have the bits of the same problem
    // with finite values there. Keys 1 and 67 lie in the first and second tile of 64 or 66 keys.
    std::mt19937 rng(116);
    const std::size_t dim = 16;
    const std::size_t keys = 70;
    for (std::size_t queries : {20, 1}) {
        INFO(queries << " query rows");
        attention_problem p(1, 1, 1, queries, keys, dim, dim, rng);
        for (std::size_t i = 0; i < queries; ++i) {
            for (std::size_t d = 0; d < dim; ++d) {
                p.q.at(0, 0, i, d) = d == 0 ? 10.0f : 0.0f;
            }
        }
        for (std::size_t j = 0; j < keys; ++j) {
            const float first = j % 2 == 0 ? 10.0f : -10.0f;  // odd keys get logit −100
            p.k.at(0, 0, j, 0) = first;
            for (std::size_t d = 1; d < dim; ++d) {
                p.k.at(0, 0, j, d) = 0.0f;
            }
        }
        attention::options opts;
        opts.scale = 1.0f;

        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            p.v.at(0, 0, 1, 3) = 0.25f;
            p.v.at(0, 0, 67, 7) = -0.5f;
            p.run<A>(opts);
            const auto finite_out = p.out.values();

            p.v.at(0, 0, 1, 3) = nan_value;
            p.v.at(0, 0, 67, 7) = infinity;
            p.run<A>(opts);
            const auto out = p.out.values();
            for (std::size_t i = 0; i < out.size(); ++i) {
                INFO("row " << i / dim << ", element " << i % dim);
                CHECK(same_bits(out[i], finite_out[i]));
            }
        });
    }
}

TEST_CASE("attention logits of plus or minus 1e4 do not overflow", "[attention]")
{
    std::mt19937 rng(108);
    attention_problem p(1, 2, 2, 40, 70, 16, 16, rng);
    // Queries of ±100 and keys of ±6.25 in 16 dims: scaled logits up to 1e4 in magnitude.
    for (std::size_t h = 0; h < 2; ++h) {
        for (std::size_t i = 0; i < 40; ++i) {
            for (std::size_t d = 0; d < 16; ++d) {
                p.q.at(0, h, i, d) = (h == 0 ? 100.0f : -100.0f) * (uniform(rng, 0.0f, 1.0f) < 0.5f ? 1.0f : -1.0f);
            }
        }
        for (std::size_t j = 0; j < 70; ++j) {
            for (std::size_t d = 0; d < 16; ++d) {
                p.k.at(0, h, j, d) = uniform(rng, -6.25f, 6.25f);
            }
        }
    }
    attention::options opts;
    opts.scale = 1.0f;
    opts.pattern = mask_pattern::sliding_window(30, 30);
    const auto ref = p.reference(opts);
    double largest = 0.0;
    for (double x : ref.lse) {
        largest = std::max(largest, std::abs(x));
    }
    REQUIRE(largest > 2000.0);
    // The float score itself is rounded by |logit|·2^-24, which e^x turns
    // into a relative error of that size: the contract's bound for large logits.
    const double bound = tolerance + 8.0 * largest * std::ldexp(1.0, -24);
    for_each_arch([&](auto arch) {
        std::vector<float> lse(80);
        p.run<decltype(arch)>(opts, vector_view<float>(lse.data(), lse.size()));
        std::string first;
        const auto values = p.out.values();
        for (float x : values) {
            REQUIRE(std::isfinite(x));
        }
        const std::size_t out_errors = count_output_errors(values, ref, bound, first);
        INFO(first);
        CHECK(out_errors == 0);
        const std::size_t lse_errors = count_lse_errors(lse, ref, bound, first);
        INFO(first);
        CHECK(lse_errors == 0);
    });
}

TEST_CASE("attention results do not depend on the thread count", "[attention][threads]")
{
    std::mt19937 rng(109);
    // Prefill (many tiles), decode (one tile, splits spread over threads)
    // and a grouped-query decode of a few tokens.
    const std::vector<shape> shapes = {
        {1, 4, 2, 100, 1300, 32, 32}, {1, 1, 1, 1, 3000, 64, 64}, {2, 8, 2, 3, 1500, 48, 24}};
    for (const shape& s : shapes) {
        INFO(describe(s));
        attention_problem p(s.batch, s.heads, s.kv_heads, s.queries, s.keys, s.dim, s.value_dim, rng);
        attention::options opts;
        opts.pattern = mask_pattern::sliding_window(900, 0, alignment::bottom_right);
        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<std::vector<float>> outs;
            std::vector<std::vector<float>> lses;
            for (int threads : {1, 2, 3}) {
                with_threads(threads, [&] {
                    std::vector<float> lse(s.batch * s.heads * s.queries);
                    p.run<A>(opts, vector_view<float>(lse.data(), lse.size()));
                    outs.push_back(p.out.values());
                    lses.push_back(lse);
                });
            }
            for (std::size_t t = 1; t < outs.size(); ++t) {
                for (std::size_t i = 0; i < outs[0].size(); ++i) {
                    REQUIRE(same_bits(outs[0][i], outs[t][i]));
                }
                for (std::size_t i = 0; i < lses[0].size(); ++i) {
                    REQUIRE(same_bits(lses[0][i], lses[t][i]));
                }
            }
        });
    }
}

TEST_CASE("attention query tile bands keep row bits", "[attention][threads]")
{
    // 1100 keys of dims 128 and 128 take 1.07 MiB per head, more than the 1 MiB
    // above which forward() runs bands of up to 4 query tiles side by side,
    // split by split (band_tiles in attention.hpp). 230 queries of 2 query
    // heads per KV head make 15 tiles of 32 rows on AVX-512 and 29 of 16 on
    // AVX2, so the last band is short. Each row must keep the bits that it
    // gets from a call of 5 queries (10 rows, one tile and so no band), and
    // match the reference.
    std::mt19937 rng(113);
    const shape s{1, 2, 1, 230, 1100, 128, 128};
    INFO(describe(s));
    run_on_every_arch(s, attention::options{}, rng);

    attention_problem p(s.batch, s.heads, s.kv_heads, s.queries, s.keys, s.dim, s.value_dim, rng);
    const attention::tensor_view<const float> q = p.q.const_view();
    constexpr std::size_t slice = 5;
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<float> alone(s.heads * s.queries * s.value_dim);
        for (std::size_t first = 0; first < s.queries; first += slice) {
            const attention::tensor_view<const float> part(q.row(0, 0, first), 1, s.heads, slice, s.dim,
                                                           q.batch_stride, q.head_stride, q.token_stride);
            std::vector<float> out(s.heads * slice * s.value_dim);
            attention::scaled_dot_product<A>(part, p.k.const_view(), p.v.const_view(),
                                             attention::tensor_view<float>(out.data(), 1, s.heads, slice, s.value_dim));
            for (std::size_t h = 0; h < s.heads; ++h) {
                std::copy_n(out.data() + h * slice * s.value_dim, slice * s.value_dim,
                            alone.data() + (h * s.queries + first) * s.value_dim);
            }
        }
        for (int threads : {1, 2, 3}) {
            INFO(threads << " threads");
            with_threads(threads, [&] {
                p.run<A>(attention::options{});
                const std::vector<float> banded = p.out.values();
                for (std::size_t i = 0; i < banded.size(); ++i) {
                    REQUIRE(same_bits(banded[i], alone[i]));
                }
            });
        }
    });
}

TEST_CASE("attention head-averaged map thread independent", "[attention][threads]")
{
    std::mt19937 rng(117);
    const shape s{2, 4, 2, 70, 900, 32, 32};
    attention_problem p(s.batch, s.heads, s.kv_heads, s.queries, s.keys, s.dim, s.value_dim, rng);
    attention::options opts;
    opts.pattern = mask_pattern::sliding_window(600, 0, alignment::bottom_right);
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<std::vector<float>> maps;
        for (int threads : {1, 2, 3}) {
            with_threads(threads, [&] {
                std::vector<float> map(s.batch * s.queries * s.keys, -7.0f);
                p.run<A>(opts, {}, matrix_view<float>(map.data(), s.batch * s.queries, s.keys));
                maps.push_back(map);
            });
        }
        for (std::size_t t = 1; t < maps.size(); ++t) {
            INFO("1 thread against " << t + 1);
            std::size_t differing = 0;
            for (std::size_t i = 0; i < maps[0].size(); ++i) {
                differing += same_bits(maps[0][i], maps[t][i]) ? 0 : 1;
            }
            CHECK(differing == 0);
        }
    });
}

TEST_CASE("attention scale exact for power-of-four dims", "[attention][contract]")
{
    // The default scale 1/√D is a power of two for D = 16, 64 and 256, so
    // the contract promises that scaling the queries is exact there. Then moving
    // the scale from the queries to the keys changes no product and no sum,
    // and the two calls must agree bit for bit, on the wide path (40 queries)
    // and on the narrow one (1 query). With D = 32 the scale rounds, and the
    // same comparison finds differing bits.
    std::mt19937 rng(118);
    for (std::size_t dim : {16, 64, 256}) {
        for (std::size_t queries : {1, 40}) {
            const shape s{1, 2, 2, queries, 150, dim, dim};
            INFO(describe(s));
            attention_problem p(s.batch, s.heads, s.kv_heads, s.queries, s.keys, s.dim, s.value_dim, rng);
            const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
            std::vector<float> scaled_keys(s.kv_heads * s.keys * s.dim);
            for (std::size_t h = 0; h < s.kv_heads; ++h) {
                for (std::size_t j = 0; j < s.keys; ++j) {
                    for (std::size_t c = 0; c < s.dim; ++c) {
                        scaled_keys[(h * s.keys + j) * s.dim + c] = scale * p.k.at(0, h, j, c);
                    }
                }
            }
            attention::options unscaled;
            unscaled.scale = 1.0f;

            for_each_arch([&](auto arch) {
                using A = decltype(arch);
                std::vector<float> lse(s.heads * s.queries);
                p.run<A>(attention::options{}, vector_view<float>(lse.data(), lse.size()));
                const std::vector<float> expected = p.out.values();

                std::vector<float> out(s.heads * s.queries * s.value_dim, 7.0f);
                std::vector<float> moved_lse(s.heads * s.queries, 7.0f);
                attention::scaled_dot_product<A>(
                    p.q.const_view(),
                    attention::tensor_view<const float>(scaled_keys.data(), 1, s.kv_heads, s.keys, s.dim),
                    p.v.const_view(), attention::tensor_view<float>(out.data(), 1, s.heads, s.queries, s.value_dim),
                    unscaled, vector_view<float>(moved_lse.data(), moved_lse.size()));
                for (std::size_t i = 0; i < out.size(); ++i) {
                    REQUIRE(same_bits(out[i], expected[i]));
                }
                for (std::size_t i = 0; i < lse.size(); ++i) {
                    REQUIRE(same_bits(moved_lse[i], lse[i]));
                }
            });
        }
    }
}

TEST_CASE("attention with no queries, no batch or no heads", "[attention]")
{
    std::mt19937 rng(110);
    for (const shape& s : {shape{1, 2, 2, 0, 10, 16, 16}, shape{0, 2, 2, 5, 10, 16, 16}, shape{1, 0, 1, 5, 10, 16, 16}}) {
        INFO(describe(s));
        attention_problem p(s.batch, s.heads, s.kv_heads, s.queries, s.keys, s.dim, s.value_dim, rng);
        for_each_arch([&](auto arch) {
            p.run<decltype(arch)>({});
            CHECK(p.out.outside_intact());
        });
    }
}

TEST_CASE("attention decode rows take the narrow path and match the reference", "[attention][decode]")
{
    std::mt19937 rng(111);
    // At most 2 rows per (batch, KV head), so every arch takes the narrow
    // path (decode.hpp): single tokens and pairs, grouped heads, key counts
    // from 0 to several splits, head and value dims with tails.
    const std::vector<std::pair<const char*, mask_pattern>> patterns = {
        {"none", mask_pattern::none()},
        {"causal bottom-right", mask_pattern::causal(alignment::bottom_right)},
        {"sliding window 100 left bottom-right", mask_pattern::sliding_window(100, 0, alignment::bottom_right)},
        {"block-local 50 with 2 global", mask_pattern::block_local(50, 2)},
    };
    for (const auto& [name, pattern] : patterns) {
        INFO("pattern " << name);
        attention::options opts;
        opts.pattern = pattern;
        for (std::size_t keys : {0, 1, 70, 600, 1300}) {
            run_on_every_arch({1, 1, 1, 1, keys, 64, 64}, opts, rng);
            run_on_every_arch({2, 4, 2, 1, keys, 20, 13}, opts, rng);
            run_on_every_arch({1, 2, 2, 2, keys, 48, 72}, opts, rng, true, 3, 1);
        }
    }

    // Mask views on the narrow path.
    const std::size_t keys = 300;
    std::vector<float> additive(2 * keys);
    std::vector<std::uint8_t> allowed(keys);
    for (float& x : additive) {
        x = uniform(rng, 0.0f, 1.0f) < 0.1f ? -infinity : uniform(rng, -2.0f, 2.0f);
    }
    for (auto& x : allowed) {
        x = uniform(rng, 0.0f, 1.0f) < 0.8f ? 1 : 0;
    }
    attention::options masked;
    masked.additive = {additive.data(), 0, keys, 0};  // one row per head, broadcast over batch
    masked.allowed = {allowed.data(), 0, 0, 0};       // one key-padding row for everything
    run_on_every_arch({2, 2, 1, 1, keys, 128, 128}, masked, rng);
}

TEST_CASE("attention decode rows keep NaN to the rows that see it", "[attention][decode]")
{
    std::mt19937 rng(112);
    const std::size_t D = 16;
    const std::size_t keys = 700;
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        // Two heads over one KV head: a NaN value hidden from head 0 by the
        // additive mask, an infinite key hidden from both.
        attention_problem p(1, 2, 1, 1, keys, D, D, rng);
        p.v.at(0, 0, 650, 4) = nan_value;
        p.k.at(0, 0, 20, 1) = infinity;
        std::vector<float> additive(2 * keys, 0.0f);
        additive[650] = -infinity;
        additive[20] = -infinity;
        additive[keys + 20] = -infinity;
        attention::options opts;
        opts.additive = {additive.data(), 0, keys, 0};
        p.run<A>(opts);
        const auto out = p.out.values();
        for (std::size_t d = 0; d < D; ++d) {
            CHECK(std::isfinite(out[d]));
            CHECK(std::isnan(out[D + d]) == (d == 4));
        }

        // A NaN query makes its own row NaN only.
        attention_problem r(1, 2, 1, 1, keys, D, D, rng);
        r.q.at(0, 1, 0, 0) = nan_value;
        r.run<A>({});
        const auto nan_out = r.out.values();
        CHECK(std::isfinite(nan_out[0]));
        CHECK(std::isnan(nan_out[D]));
    });
}

TEST_CASE("attention query_position places a slice of queries like the full sequence", "[attention]")
{
    std::mt19937 rng(113);
    const std::size_t L = 120;
    const std::size_t D = 32;
    attention_problem full(1, 2, 1, L, L, D, D, rng);
    const std::vector<std::pair<const char*, mask_pattern>> patterns = {
        {"causal", mask_pattern::causal()},
        {"spatio-temporal 17 patches", mask_pattern::spatio_temporal(17, 1, 1, 1)},
        {"sliding window bottom-right", mask_pattern::sliding_window(30, 2, alignment::bottom_right)},
    };
    for (const auto& [name, pattern] : patterns) {
        INFO("pattern " << name);
        attention::options opts;
        opts.pattern = pattern;
        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            full.run<A>(opts);
            const auto whole = full.out.values();
            const auto ref = full.reference(opts);

            // Rows [first, first + count) of the queries as a tensor of their own.
            for (const auto& [first, count] : {std::pair<std::size_t, std::size_t>{40, 50}, {7, 1}, {100, 2}}) {
                INFO("rows " << first << " to " << first + count);
                attention::options slice = opts;
                slice.query_position = static_cast<std::int64_t>(first);
                std::vector<float> out(2 * count * D);
                const auto q = full.q.const_view();
                attention::scaled_dot_product<A>(
                    attention::tensor_view<const float>(q.row(0, 0, first), 1, 2, count, D, 0, q.head_stride,
                                                        q.token_stride),
                    full.k.const_view(), full.v.const_view(),
                    attention::tensor_view<float>(out.data(), 1, 2, count, D), slice);
                for (std::size_t h = 0; h < 2; ++h) {
                    for (std::size_t i = 0; i < count; ++i) {
                        for (std::size_t d = 0; d < D; ++d) {
                            const std::size_t at = (h * L + first + i) * D + d;
                            const float got = out[(h * count + i) * D + d];
                            if (count > 8) {
                                // Wide tiles on every arch: a row's bits depend only on the row.
                                REQUIRE(same_bits(got, whole[at]));
                            } else {
                                REQUIRE(std::abs(got - ref.out[at]) <= tolerance * ref.weight[at]);
                            }
                        }
                    }
                }
            }
        });
    }
}

TEST_CASE("attention random shapes, patterns and masks match the reference", "[attention][random]")
{
    // Shapes, patterns, mask views and layouts drawn together, so that
    // combinations no hand-written case lists are compared with the
    // reference too: both paths, every pattern parameter, broadcast and
    // full masks, with and without query_position.
    std::mt19937 rng(114);
    auto draw = [&](int low, int high) { return static_cast<std::size_t>(uniform_int(rng, low, high)); };
    for (int trial = 0; trial < 150; ++trial) {
        const std::size_t kv_heads = draw(1, 3);
        const std::size_t heads = kv_heads * draw(1, 3);
        const std::size_t queries = uniform_int(rng, 0, 3) == 0 ? draw(1, 3) : draw(1, 90);
        const std::size_t keys = draw(0, 700);
        const shape s{draw(1, 2), heads, kv_heads, queries, keys, draw(1, 70), draw(1, 40)};

        attention::options opts;
        opts.pattern.group = draw(1, 12);
        opts.pattern.before = uniform_int(rng, 0, 2) == 0 ? mask_pattern::unbounded : draw(0, 40);
        opts.pattern.after = uniform_int(rng, 0, 2) == 0 ? mask_pattern::unbounded : draw(0, 40);
        opts.pattern.global_tokens = uniform_int(rng, 0, 1) == 0 ? 0 : draw(1, 5);
        opts.pattern.align = uniform_int(rng, 0, 1) == 0 ? alignment::top_left : alignment::bottom_right;
        if (uniform_int(rng, 0, 3) == 0) {
            opts.query_position = uniform_int(rng, -50, 700);
        }
        if (uniform_int(rng, 0, 3) == 0) {
            opts.scale = uniform(rng, -0.5f, 0.5f);
        }
        std::vector<float> additive(s.batch * s.heads * s.queries * std::max<std::size_t>(s.keys, 1));
        std::vector<std::uint8_t> allowed(additive.size());
        for (std::size_t i = 0; i < additive.size(); ++i) {
            additive[i] = uniform(rng, 0.0f, 1.0f) < 0.1f ? -infinity : uniform(rng, -2.0f, 2.0f);
            allowed[i] = uniform(rng, 0.0f, 1.0f) < 0.85f ? 1 : 0;
        }
        const std::size_t row = std::max<std::size_t>(s.keys, 1);
        const int masks = uniform_int(rng, 0, 3);
        if (masks == 1 || masks == 3) {
            opts.additive = {additive.data(), s.heads * s.queries * row, s.queries * row, row};
        }
        if (masks == 2 || masks == 3) {
            opts.allowed = {allowed.data(), 0, 0, uniform_int(rng, 0, 1) == 0 ? 0 : row};
        }
        INFO("trial " << trial << ", pattern group " << opts.pattern.group << " before " << opts.pattern.before
                      << " after " << opts.pattern.after << " global " << opts.pattern.global_tokens << " align "
                      << to_string(opts.pattern.align) << ", masks " << masks);
        run_on_every_arch(s, opts, rng, uniform_int(rng, 0, 1) == 1, draw(0, 3), draw(0, 3));
    }
}
